/**
 * Analytics over time: weekly report emails (each week once, with its CSV), retention by month
 * partitions, and a stop that flushes what was accepted — on the embedded default (chDB).
 */
import fs from "node:fs";
import path from "node:path";
import { simpleParser } from "mailparser";
import { ChdbStore, loadChdb } from "../../services/analytics/store";
import { sql } from "../../services/analytics/sql";
import { playbackRows } from "../../services/analytics/records";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, startGateway, tempDir } from "../helpers/platform";
import { PLATFORM_SERVICES } from "../helpers/accounts";

interface AnalyticsInternals {
	store: { rows<T>(q: unknown): Promise<T[]>; insert(table: string, rows: object[]): Promise<void> };
	sendDueReports(now?: Date): Promise<number>;
	dropExpiredPartitions(now?: Date): Promise<string[]>;
	playbackBatcher: { flush(): Promise<void> };
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
const DAY = 86_400_000;

describe("weekly report emails and retention", () => {
	let p: Platform;
	let owner: Session;
	let analytics: AnalyticsInternals;
	let contentId: string;
	let token: string;

	beforeAll(async () => {
		p = await startTestPlatform({ ANALYTICS_BATCH_MS: "50" });
		analytics = p.broker.getLocalService("analytics") as unknown as AnalyticsInternals;
		owner = await register(p, newAccount("reports"));
		({ token } = await pairDisplay(p, owner, { name: "Window" }));
		const item = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Winter sale", url: "https://example.com/sale", durationMs: 15_000 } });
		contentId = item.body.id;
	}, 60_000);
	afterAll(() => p?.stop());

	/** Mail files (raw .eml) for `to`, parsed. */
	async function mailsTo(to: string) {
		const dir = path.join(p.dataDir, "mail");
		const files = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
		const parsed = await Promise.all(files.map(f => simpleParser(fs.readFileSync(path.join(dir, f)))));
		return parsed.filter(m => (Array.isArray(m.to) ? m.to : [m.to]).some(a => a?.text.includes(to)));
	}
	async function waitForMails(to: string, count: number) {
		for (let i = 0; i < 300; i++) {
			const mails = await mailsTo(to);
			if (mails.length >= count) return mails;
			await sleep(20);
		}
		throw new Error(`fewer than ${count} mails to ${to}`);
	}

	it("mails last week's plays by content once per week, with the whole table as CSV", async () => {
		// Monday 8:00 Berlin. "Now" is Monday 7 December 2026, 09:30 Berlin: the report covers 30 Nov – 6 Dec.
		const created = await request<{ id: string; nextRunAt: string; timezone: string }>(p.api("/analytics/reports"), {
			method: "POST",
			headers: bearer(owner.accessToken),
			json: { name: "Shop windows", recipients: ["marketing@example.com", "agency@example.org"], weekday: 1, hour: 8, timezone: "Europe/Berlin" }
		});
		expect(created.status).toBe(201);
		expect(created.body.timezone).toBe("Europe/Berlin");
		// Plays in that week (Tuesday 1 December, 12:00 UTC), one the week before (not in it).
		const at = (iso: string, i: number) => ({ eventId: `${iso}-${i}`, contentId, startedAt: new Date(Date.parse(iso) + i * 1000).toISOString(), durationMs: 15_000, completed: true });
		const rows = playbackRows({
			tenantId: owner.tenant.id,
			displayId: "d-report",
			displayName: "Window",
			groups: [],
			receivedAt: Date.now(),
			events: [...[0, 1, 2].map(i => at("2026-12-01T12:00:00Z", i)), at("2026-11-25T12:00:00Z", 0)].map(e => ({ ...e, startedAt: Date.parse(e.startedAt), contentName: "Winter sale", playlistId: null, scheduleId: null }))
		});
		await analytics.store.insert("playback_events", rows);
		// Pretend the schedule was made on 1 December: its first due run is Monday 7 December.
		const schedules = (p.broker.getLocalService("analytics") as unknown as { db: { report_schedules: { updateWhere(s: unknown, q: unknown, c: unknown): Promise<number> } } }).db.report_schedules;
		const { systemScope } = await import("../../mixins/db.mixin");
		await schedules.updateWhere(systemScope(owner.tenant.id), { _id: created.body.id }, { createdAt: "2026-12-01T00:00:00.000Z" });

		const monday = new Date("2026-12-07T08:30:00Z");
		expect(await analytics.sendDueReports(new Date("2026-12-07T06:59:00Z"))).toBe(0); // 07:59 in Berlin: not yet
		expect(await analytics.sendDueReports(monday)).toBe(2);
		expect(await analytics.sendDueReports(new Date(monday.getTime() + 3_600_000))).toBe(0); // the same week again: no
		const [mail] = await waitForMails("marketing@example.com", 1);
		await waitForMails("agency@example.org", 1);
		expect(mail.subject).toBe("Proof of play: Shop windows (30 Nov – 6 Dec 2026)");
		expect(mail.text).toContain("Winter sale");
		expect(mail.text).toContain("3 plays");
		expect(mail.attachments).toHaveLength(1);
		const csv = mail.attachments[0];
		expect(csv.filename).toBe("proof-of-play-2026-11-30.csv");
		expect(csv.contentType).toBe("text/csv");
		expect(csv.content.toString("utf8")).toBe(`"contentId","contentName","plays","durationMs","avgDurationMs","completionRate"\r\n"${contentId}","Winter sale",3,45000,15000,1\r\n`);

		// A week later the next one goes, once.
		expect(await analytics.sendDueReports(new Date(monday.getTime() + 7 * DAY))).toBe(2);
		await waitForMails("marketing@example.com", 2);
	});

	it("sends the last whole week at once on request, for admins only", async () => {
		const created = await request<{ id: string }>(p.api("/analytics/reports"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "On demand", recipients: ["boss@example.com"], weekday: 5, hour: 17 } });
		expect(created.status).toBe(201);
		const sent = await request<{ queued: number; periodStart: string; periodEnd: string }>(p.api(`/analytics/reports/${created.body.id}/send`), { method: "POST", headers: bearer(owner.accessToken) });
		expect(sent.status).toBe(202);
		expect(sent.body.queued).toBe(1);
		expect(Date.parse(sent.body.periodEnd) - Date.parse(sent.body.periodStart)).toBeGreaterThanOrEqual(7 * DAY - 3_600_000);
		await waitForMails("boss@example.com", 1);
		const list = await request<{ rows: Array<{ id: string; lastSentAt: string | null }>; total: number }>(p.api("/analytics/reports"), { headers: bearer(owner.accessToken) });
		expect(list.body.total).toBe(2);
		expect((await request(p.api(`/analytics/reports/${created.body.id}`), { method: "DELETE", headers: bearer(owner.accessToken) })).status).toBe(204);
		expect((await request(p.api(`/analytics/reports/${created.body.id}/send`), { method: "POST", headers: bearer(owner.accessToken) })).status).toBe(404);
	});

	it("mails a recipient once however it is spelled, and bounds sending on request", async () => {
		const created = await request<{ id: string; recipients: string[] }>(p.api("/analytics/reports"), {
			method: "POST",
			headers: bearer(owner.accessToken),
			json: { name: "Twice?", recipients: ["Shop@Example.com", "shop@example.com"], weekday: 2, hour: 9 }
		});
		expect(created.status).toBe(201);
		expect(created.body.recipients).toEqual(["shop@example.com"]);
		const send = () => request(p.api(`/analytics/reports/${created.body.id}/send`), { method: "POST", headers: bearer(owner.accessToken) });
		// Three an hour per report: it mails addresses the tenant typed, and must be no mailer for strangers.
		expect([(await send()).status, (await send()).status, (await send()).status, (await send()).status]).toEqual([202, 202, 202, 429]);
		await request(p.api(`/analytics/reports/${created.body.id}`), { method: "DELETE", headers: bearer(owner.accessToken) });
	});

	it("never passes 20 report emails per tenant, even when asked many times at once", async () => {
		const other = await register(p, newAccount("many-reports"));
		const answers = await Promise.all(
			Array.from({ length: 30 }, (_, i) => request(p.api("/analytics/reports"), { method: "POST", headers: bearer(other.accessToken), json: { name: `R${i}`, recipients: ["x@example.com"], weekday: 1, hour: 8 } }))
		);
		expect(answers.filter(a => a.status === 201)).toHaveLength(20);
		expect(answers.filter(a => a.status === 409)).toHaveLength(10);
	});

	it("refuses bad schedules with 422", async () => {
		const bad = [
			{ name: "x", recipients: [], weekday: 1, hour: 8 },
			{ name: "x", recipients: ["not-an-email"], weekday: 1, hour: 8 },
			{ name: "x", recipients: ["a@example.com"], weekday: 0, hour: 8 },
			{ name: "x", recipients: ["a@example.com"], weekday: 8, hour: 8 },
			{ name: "x", recipients: ["a@example.com"], weekday: 1, hour: 24 },
			{ name: "x", recipients: ["a@example.com"], weekday: 1, hour: 8, timezone: "Atlantis/Capital" },
			{ name: "x", recipients: Array.from({ length: 21 }, (_, i) => `r${i}@example.com`), weekday: 1, hour: 8 }
		];
		for (const json of bad) expect((await request(p.api("/analytics/reports"), { method: "POST", headers: bearer(owner.accessToken), json })).status).toBe(422);
	});

	it("drops month partitions older than the retention and keeps the rest", async () => {
		const old = Date.UTC(2020, 0, 15);
		const recent = Date.now() - DAY;
		const event = (eventId: string, startedAt: number) => ({ eventId, contentId, contentName: "Old", playlistId: null, scheduleId: null, startedAt, durationMs: 1, completed: true });
		await analytics.store.insert("playback_events", playbackRows({ tenantId: owner.tenant.id, displayId: "d-old", displayName: "Old", groups: [], receivedAt: Date.now(), events: [event("old", old), event("new", recent)] }));
		const dropped = await analytics.dropExpiredPartitions();
		expect(dropped).toContain("playback_events/202001");
		const left = await analytics.store.rows<{ event_id: string }>(sql`SELECT event_id FROM playback_events WHERE display_id = 'd-old' ORDER BY event_id`);
		expect(left.map(r => r.event_id)).toEqual(["new"]);
		expect(await analytics.dropExpiredPartitions()).toEqual([]);
		void token;
	});
});

describe("stopping the platform", () => {
	it("writes what it accepted before it lets go, even with a long batch delay", async () => {
		const chdb = loadChdb();
		if (!chdb.module) throw new Error(`chdb is a dependency of this suite: ${chdb.reason}`);
		const dataDir = tempDir();
		// Nothing would be written for a minute: only the stop's flush can store the batch.
		const p = await startGateway(PLATFORM_SERVICES, { DATA_DIR: dataDir, ANALYTICS_BATCH_MS: "60000", RATE_LIMIT_PER_MINUTE: "100000" });
		const platform = { ...p, dataDir, api: (x: string) => `${p.url}/api/v1${x}` };
		const owner = await register(platform, newAccount("flush"));
		const { token } = await pairDisplay(platform, owner, { name: "Flushed" });
		const item = await request<{ id: string }>(platform.api("/content/url"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "A", url: "https://example.com/", durationMs: 1000 } });
		const events = Array.from({ length: 25 }, (_, i) => ({ eventId: `f${i}`, contentId: item.body.id, startedAt: new Date().toISOString(), durationMs: 1000 }));
		expect((await request(platform.api("/device/playback"), { method: "POST", headers: bearer(token), json: { events } })).status).toBe(202);
		await sleep(100);
		await p.stop();
		const store = ChdbStore.open(chdb.module, path.join(dataDir, "analytics"));
		try {
			const [row] = await store.rows<{ n: number }>(sql`SELECT count() AS n FROM playback_events WHERE tenant_id = ${owner.tenant.id}`);
			expect(row.n).toBe(25);
		} finally {
			await store.close();
			fs.rmSync(dataDir, { recursive: true, force: true });
		}
	}, 60_000);
});
