/**
 * Analytics as customers use it, on the embedded default (chDB in-process): screens post proof
 * of play, admins read reports, the audit log and CSV exports. Expectations are counted by hand.
 */
import type { ServiceSchema } from "moleculer";
import DevicesService from "../../services/devices.service";
import { bearer, newAccount, pairDisplay, register, someClient, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { LEGACY_HEARTBEAT_CHANNEL } from "../../shared/channels";
import { sendToChannel } from "../../shared/contracts";
import { request } from "../helpers/platform";
import { untilValue } from "../helpers/until";

const SWEEP_MS = 100;
const FastDevices = { ...DevicesService, settings: { ...DevicesService.settings, sweepIntervalMs: SWEEP_MS } } as ServiceSchema;

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
interface PlaybackReport {
	rows: Array<{ key: string; name: string; plays: number; durationMs: number; avgDurationMs: number; completionRate: number }>;
	totals: { plays: number; durationMs: number };
	timezone: string;
}

const HOUR = 3_600_000;
const FROM = new Date(Date.now() - 24 * HOUR).toISOString();
const TO = new Date(Date.now() + HOUR).toISOString();

describe("analytics on the embedded default (chDB)", () => {
	let p: Platform;
	let owner: Session;
	let display: { id: string; name: string };
	let device: string;
	let menu: { id: string; name: string };
	let promo: { id: string; name: string };

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const api = (path: string) => p.api(path);
	const playback = (token: string, events: unknown[]) => request<{ accepted: number; duplicates: number }>(api("/device/playback"), { method: "POST", headers: bearer(token), json: { events } });
	const report = (s: Session, query: string) => request<PlaybackReport>(api(`/analytics/playback?from=${FROM}&to=${TO}&${query}`), { headers: as(s) });
	const plays = (n: number, prefix: string, contentId: string, durationMs = 10_000, startedAt = Date.now() - HOUR) =>
		Array.from({ length: n }, (_, i) => ({ eventId: `${prefix}-${i}`, contentId, startedAt: new Date(startedAt + i * 1000).toISOString(), durationMs, completed: i % 4 !== 0 }));

	async function content(s: Session, name: string): Promise<{ id: string; name: string }> {
		const res = await request<{ id: string; name: string }>(api("/content/url"), { method: "POST", headers: as(s), json: { name, url: "https://example.com/page", durationMs: 10_000 } });
		expect(res.status).toBe(201);
		return res.body;
	}

	beforeAll(async () => {
		p = await startTestPlatform({ ANALYTICS_BATCH_MS: "50" }, [FastDevices]);
		owner = await register(p, newAccount("analyst"));
		({ display, token: device } = await pairDisplay<{ id: string; name: string }>(p, owner, { name: "Foyer «Nord» 🎬" }));
		menu = await content(owner, "Menü des Tages 🍜");
		promo = await content(owner, "=HYPERLINK(\"http://evil\")");
	}, 60_000);
	afterAll(() => p?.stop());

	it("accepts a batch with 202, counts a repeated batch as duplicates and reports each play once", async () => {
		const batch = plays(40, "a", menu.id);
		const first = await playback(device, batch);
		expect(first.status).toBe(202);
		expect(first.body).toEqual({ accepted: 40, duplicates: 0 });
		const again = await playback(device, batch);
		expect(again.status).toBe(202);
		expect(again.body).toEqual({ accepted: 0, duplicates: 40 });
		// One event repeated inside a batch, and one new.
		const mixed = await playback(device, [...plays(1, "a", menu.id), ...plays(1, "b", promo.id, 4_000), ...plays(1, "b", promo.id, 4_000)]);
		expect(mixed.body).toEqual({ accepted: 1, duplicates: 2 });

		const res = await untilValue("the report to show 41 plays", () => report(owner, "groupBy=content"), r => r.body.totals?.plays === 41);
		expect(res.status).toBe(200);
		expect(res.body.rows).toEqual([
			// 40 plays of 10 s; every fourth (i = 0, 4, …, 36) did not complete: 30 of 40.
			{ key: menu.id, name: "Menü des Tages 🍜", plays: 40, durationMs: 400_000, avgDurationMs: 10_000, completionRate: 0.75 },
			{ key: promo.id, name: "=HYPERLINK(\"http://evil\")", plays: 1, durationMs: 4_000, avgDurationMs: 4_000, completionRate: 0 }
		]);
		expect(res.body.totals).toEqual({ plays: 41, durationMs: 404_000 });
		const byDisplay = await report(owner, "groupBy=display");
		expect(byDisplay.body.rows.map(r => [r.key, r.name, r.plays])).toEqual([[display.id, "Foyer «Nord» 🎬", 41]]);
	});

	it("shows 100 000 plays posted in 200 batches exactly, with their total duration", async () => {
		const bulk = await content(owner, "Bulk");
		let expectedMs = 0;
		for (let b = 0; b < 200; b++) {
			const events = Array.from({ length: 500 }, (_, i) => ({ eventId: `bulk-${b}-${i}`, contentId: bulk.id, startedAt: new Date(Date.now() - 2 * HOUR + i).toISOString(), durationMs: 1000 + ((b * 500 + i) % 7) }));
			expectedMs += events.reduce((n, e) => n + e.durationMs, 0);
			const res = await playback(device, events);
			expect(res.status).toBe(202);
			expect(res.body).toEqual({ accepted: 500, duplicates: 0 });
		}
		const res = await untilValue("100 000 plays", () => report(owner, `contentId=${bulk.id}`), r => r.body.totals?.plays >= 100_000, 60_000);
		expect(res.body.totals).toEqual({ plays: 100_000, durationMs: expectedMs });
	}, 120_000);

	it("still names content deleted after it played", async () => {
		const short = await content(owner, "Sommerfest 2026");
		expect((await playback(device, plays(3, "gone", short.id, 2_000))).status).toBe(202);
		await untilValue("the plays to arrive", () => report(owner, `groupBy=content&contentId=${short.id}`), r => r.body.totals?.plays === 3);
		expect((await request(api(`/content/${short.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const after = await report(owner, `groupBy=content&contentId=${short.id}`);
		expect(after.body.rows).toEqual([{ key: short.id, name: "Sommerfest 2026", plays: 3, durationMs: 6_000, avgDurationMs: 2_000, completionRate: 0.6667 }]);
	});

	it("refuses bad batches whole with 422 and stores nothing of them", async () => {
		const cases: unknown[] = [
			[],
			plays(501, "big", menu.id),
			[{ eventId: "x", contentId: menu.id, startedAt: "yesterday", durationMs: 1 }],
			[{ eventId: "has space", contentId: menu.id, startedAt: new Date().toISOString(), durationMs: 1 }],
			[{ eventId: "x", contentId: "' OR 1=1 --", startedAt: new Date().toISOString(), durationMs: 1 }],
			[{ eventId: "x", contentId: menu.id, startedAt: new Date().toISOString(), durationMs: -1 }],
			[{ eventId: "future", contentId: menu.id, startedAt: new Date(Date.now() + 48 * HOUR).toISOString(), durationMs: 1 }],
			[{ eventId: "ancient", contentId: menu.id, startedAt: "1999-01-01T00:00:00Z", durationMs: 1 }],
			[{ eventId: "x", contentId: menu.id, startedAt: new Date().toISOString(), durationMs: 1, extra: true }]
		];
		for (const events of cases) {
			const res = await playback(device, events as unknown[]);
			expect(res.status).toBe(422);
		}
		const user = await request(api("/device/playback"), { method: "POST", headers: as(owner), json: { events: plays(1, "u", menu.id) } });
		expect(user.status).toBe(401);
		const anonymous = await request(api("/device/playback"), { method: "POST", headers: someClient(), json: { events: plays(1, "u", menu.id) } });
		expect(anonymous.status).toBe(401);
		await sleep(200);
		const res = await report(owner, `groupBy=content&contentId=${menu.id}`);
		expect(res.body.totals.plays).toBe(40);
	});

	it("answers hours and days in the tenant's timezone, or the one asked for", async () => {
		const byDay = await report(owner, "groupBy=day&timezone=Pacific/Kiritimati");
		expect(byDay.status).toBe(200);
		expect(byDay.body.timezone).toBe("Pacific/Kiritimati");
		expect(byDay.body.rows.reduce((n, r) => n + r.plays, 0)).toBe(byDay.body.totals.plays);
		for (const r of byDay.body.rows) expect(r.key).toMatch(/^\d{4}-\d{2}-\d{2}$/);
		const byHour = await report(owner, "groupBy=hour");
		for (const r of byHour.body.rows) expect(r.key).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:00:00\.000Z$/);
		expect((await report(owner, "groupBy=day&timezone=Mars/Olympus")).status).toBe(422);
		// Any spelling Intl accepts is answered in the canonical one ClickHouse knows.
		const lower = await report(owner, "groupBy=day&timezone=europe/berlin");
		expect(lower.status).toBe(200);
		expect(lower.body.timezone).toBe("Europe/Berlin");
		expect((await report(owner, "groupBy=hour&timezone=utc")).body.timezone).toBe("UTC");
	});

	it("checks the range: to after from, at most 366 days", async () => {
		const q = (from: string, to: string) => request(api(`/analytics/playback?from=${from}&to=${to}`), { headers: as(owner) });
		expect((await q("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")).status).toBe(422);
		expect((await q("2025-01-01T00:00:00Z", "2026-01-03T00:00:00Z")).status).toBe(422);
		expect((await q("2025-01-02T00:00:00Z", "2026-01-03T00:00:00Z")).status).toBe(200);
		expect((await request(api("/analytics/playback"), { headers: as(owner) })).status).toBe(422);
	});

	it("never shows a tenant another tenant's plays, whatever it filters by", async () => {
		const other = await register(p, newAccount("rival"));
		const theirs = await pairDisplay(p, other, { name: "Rival screen" });
		const theirContent = await content(other, "Rival ad");
		expect((await playback(theirs.token, plays(7, "r", theirContent.id))).status).toBe(202);
		// A screen reporting another tenant's content id: stored under its own tenant, without that name.
		expect((await playback(theirs.token, plays(2, "steal", menu.id))).status).toBe(202);
		await untilValue("the rival's plays", () => report(other, "groupBy=content"), r => r.body.totals?.plays === 9);
		const rival = await report(other, "groupBy=content");
		expect(rival.body.rows.find(r => r.key === menu.id)).toEqual({ key: menu.id, name: "", plays: 2, durationMs: 20_000, avgDurationMs: 10_000, completionRate: 0.5 });
		for (const filter of [`displayId=${theirs.display.id}`, `contentId=${theirContent.id}`, "groupBy=group"]) {
			const mine = await report(owner, filter);
			expect(mine.status).toBe(200);
			expect(mine.body.rows.filter(r => r.name === "Rival ad" || r.key === theirContent.id)).toEqual([]);
		}
		const mine = await report(owner, `contentId=${theirContent.id}`);
		expect(mine.body.totals.plays).toBe(0);
		for (const hostile of ["' OR '1'='1", "x%27%20OR%201=1", "%00", "__proto__"]) {
			expect((await report(owner, `contentId=${hostile}`)).status).toBe(422);
			expect((await report(owner, `groupId=${hostile}`)).status).toBe(422);
		}
	});

	it("exports the raw plays as CSV with formula cells defused", async () => {
		const res = await fetch(api(`/analytics/playback/export?from=${FROM}&to=${TO}&contentId=${promo.id}`), { headers: as(owner) });
		expect(res.status).toBe(200);
		expect(res.headers.get("content-type")).toMatch(/^text\/csv/);
		expect(res.headers.get("content-disposition")).toMatch(/^attachment; filename="playback-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv"$/);
		const lines = (await res.text()).trim().split("\r\n");
		expect(lines[0]).toBe('"eventId","displayId","displayName","contentId","contentName","playlistId","scheduleId","startedAt","durationMs","completed","receivedAt"');
		expect(lines).toHaveLength(2);
		// Every text cell quoted (no `,` or `;` inside splits it); the formula defused with a `'`.
		const match = /^"b-0","([^"]+)","Foyer «Nord» 🎬","([^"]+)","'=HYPERLINK\(""http:\/\/evil""\)","","","([^"]+)",4000,false,"([^"]+)"$/.exec(lines[1]);
		expect(match).not.toBeNull();
		expect(match![1]).toBe(display.id);
		expect(match![2]).toBe(promo.id);
	});

	it("lists the audit log for admins, newest first, with filters; viewers get 403", async () => {
		const logs = await untilValue(
			"the pairing in the audit log",
			() => request<{ rows: Array<{ action: string; actor: { kind: string; id: string | null }; target: string | null; requestId: string | null }>; total: number }>(api("/audit-logs?action=display.*"), { headers: as(owner) }),
			r => r.body.rows?.some(row => row.action === "display.paired")
		);
		expect(logs.status).toBe(200);
		const paired = logs.body.rows.find(r => r.action === "display.paired")!;
		expect(paired.actor).toEqual({ kind: "user", id: owner.user.id });
		expect(paired.target).toBe(display.id);
		expect(logs.body.rows.every(r => r.action.startsWith("display."))).toBe(true);
		const deleted = await untilValue("the content deletion", () => request<{ rows: Array<{ action: string }>; total: number }>(api("/audit-logs?action=content.deleted"), { headers: as(owner) }), r => r.body.total === 1);
		expect(deleted.body.rows.map(r => r.action)).toEqual(["content.deleted"]);
		expect((await request(api("/audit-logs?actorId=nobody"), { headers: as(owner) })).body).toEqual({ rows: [], total: 0, page: 1, pageSize: 20, totalPages: 0 });
	});

	it("still stores a heartbeat an earlier version left on the single-heartbeat channel", async () => {
		// Before group commit, devices published one heartbeat per message on devices.heartbeat.
		// Before FROM, so the other tests' health figures for this display stay what they expect.
		const ts = new Date(Date.now() - 30 * HOUR).toISOString();
		await sendToChannel(p.broker, LEGACY_HEARTBEAT_CHANNEL, { tenantId: owner.tenant.id, displayId: display.id, ts, lastSeenAt: ts, metrics: { cpu: 77, memory: 10, disk: 10 }, appVersion: "1.0.0", currentContentId: null, uptimeSec: 5 });
		const from = new Date(Date.now() - 31 * HOUR).toISOString();
		const to = new Date(Date.now() - 29 * HOUR).toISOString();
		const health = await untilValue(
			"the legacy heartbeat in the health series",
			() => request<{ points: Array<{ cpu: number }> }>(api(`/analytics/health?from=${from}&to=${to}&interval=1h&displayId=${display.id}`), { headers: as(owner) }),
			r => r.body.points?.length === 1
		);
		expect(health.body.points[0].cpu).toBe(77);
	});

	it("turns heartbeats into a health series and online/offline transitions into uptime", async () => {
		const beat = (metrics: Record<string, number>) => request(api("/device/heartbeat"), { method: "POST", headers: bearer(device), json: { metrics, appVersion: "2.1.0" } });
		expect((await beat({ cpu: 20, memory: 40, disk: 60 })).status).toBe(200);
		expect((await beat({ cpu: 40, memory: 40, disk: 60, temperature: 50 })).status).toBe(200);
		const health = await untilValue(
			"two samples in the health series",
			() => request<{ points: Array<{ ts: string; cpu: number; memory: number; disk: number; temperature: number | null; displays: number }> }>(api(`/analytics/health?from=${FROM}&to=${TO}&interval=1d&displayId=${display.id}`), { headers: as(owner) }),
			r => r.body.points?.length === 1 && r.body.points[0].cpu === 30
		);
		expect(health.body.points[0]).toMatchObject({ cpu: 30, memory: 40, disk: 60, temperature: 50, displays: 1 });
		expect((await request(api(`/analytics/health?from=${FROM}&to=${TO}&interval=5m`), { headers: as(owner) })).status).toBe(200);
		// 5-minute points over a year would be 105 120 of them.
		expect((await request(api(`/analytics/health?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&interval=5m`), { headers: as(owner) })).status).toBe(422);

		const uptime = await untilValue(
			"the display online in the uptime report",
			() => request<{ rows: Array<{ displayId: string; name: string; uptimePct: number | null; onlineSec: number; offlineSec: number; outages: unknown[] }> }>(api(`/analytics/uptime?from=${FROM}&to=${TO}`), { headers: as(owner) }),
			r => r.body.rows?.length === 1
		);
		expect(uptime.body.rows[0]).toMatchObject({ displayId: display.id, name: "Foyer «Nord» 🎬", uptimePct: 100, offlineSec: 0, outages: [] });

		// A group filter takes the group's members now; with a display too, that display only if it is one.
		const group = await request<{ id: string }>(api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Entrances" } });
		const inGroup = () => request<{ rows: Array<{ displayId: string }> }>(api(`/analytics/uptime?from=${FROM}&to=${TO}&groupId=${group.body.id}&displayId=${display.id}`), { headers: as(owner) });
		expect((await inGroup()).body.rows).toEqual([]);
		expect((await request(api(`/analytics/uptime?from=${FROM}&to=${TO}&groupId=${group.body.id}`), { headers: as(owner) })).body).toMatchObject({ rows: [] });
		expect((await request(api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { groupIds: [group.body.id] } })).status).toBe(200);
		expect((await inGroup()).body.rows.map(r => r.displayId)).toEqual([display.id]);
	});

	it("is refused to viewers for the audit log and to anonymous callers everywhere", async () => {
		for (const path of [`/analytics/playback?from=${FROM}&to=${TO}`, `/analytics/uptime?from=${FROM}&to=${TO}`, `/analytics/health?from=${FROM}&to=${TO}`, "/audit-logs"]) {
			expect((await request(api(path), { headers: someClient() })).status).toBe(401);
		}
	});

	it("puts the audit log in the GDPR export and forgets every row when the tenant is deleted", async () => {
		const doomed = await register(p, newAccount("doomed"));
		const screen = await pairDisplay(p, doomed, { name: "Doomed" });
		const item = await content(doomed, "Doomed ad");
		expect((await playback(screen.token, plays(5, "d", item.id))).status).toBe(202);
		await untilValue("its plays", () => report(doomed, "groupBy=content"), r => r.body.totals?.plays === 5);
		const exported = await untilValue(
			"the pairing in the export",
			() => request<{ services: { analytics: { auditEvents: Array<{ action: string }>; truncated: boolean } } }>(api("/tenant/export"), { headers: as(doomed) }),
			r => r.status === 200 && r.body.services.analytics.auditEvents.some(e => e.action === "display.paired")
		);
		expect(exported.body.services.analytics.truncated).toBe(false);

		const analytics = p.broker.getLocalService("analytics") as unknown as { store: { rows(q: { text: string }): Promise<Array<{ n: number }>> } };
		const count = async (table: string) => (await analytics.store.rows({ text: `SELECT count() AS n FROM ${table} WHERE tenant_id = '${doomed.tenant.id}'` }))[0].n;
		expect(await count("playback_events")).toBe(5);
		const removed = await request(api("/tenant"), { method: "DELETE", headers: as(doomed), json: { confirm: doomed.tenant.name } });
		expect(removed.status).toBe(204);
		await untilValue("its rows to be gone", async () => Promise.all(["playback_events", "audit_events", "display_status"].map(count)), counts => counts.every(n => n === 0));
		// A record still on its channel when the tenant went lands afterwards: the retention job purges it.
		const late = { tenant_id: doomed.tenant.id, id: "late-record", ts: Date.now(), actor_kind: "user", actor_id: "", action: "late", target: "", ip: "", request_id: "", data: "{}" };
		await (analytics.store as unknown as { insert(t: string, rows: object[]): Promise<void> }).insert("audit_events", [late]);
		expect(await count("audit_events")).toBe(1);
		const service = analytics as unknown as { purgeLeftovers(): Promise<string[]> };
		expect(await service.purgeLeftovers()).toEqual([doomed.tenant.id]);
		await untilValue("the late record to be gone", () => count("audit_events"), n => n === 0);
		expect(await service.purgeLeftovers()).toEqual([]);
	});
});
