/**
 * Scheduling over HTTP on the real platform: playlists, schedules, overrides, preview and
 * timeline, device manifests with ETag/304, precise invalidation pushed down the live stream,
 * device downloads limited to the manifest, and deletion rules.
 */
import sharp from "sharp";
import type { Service } from "moleculer";
import { FormatRegistry, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { Manifest as ManifestSchema, OverridePage, OverrideView, PlaylistPage, PlaylistView, PreviewView, SchedulePage, ScheduleView, SchedulingExport, TimelineView } from "../../shared/contracts";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { connect, isEvent, open, type Block, type Stream } from "../helpers/sse";

interface Playlist {
	id: string;
	name: string;
	items: Array<{ id: string; contentId: string; durationMs: number; customDuration: boolean; name: string }>;
	totalDurationMs: number;
}

interface Manifest {
	displayId: string;
	etag: string;
	generatedAt: string;
	validUntil: string | null;
	timezone: string;
	source: string;
	playlist: { id: string; name: string } | null;
	schedule: { id: string; name: string } | null;
	items: Array<{ contentId: string; name: string; url: string; durationMs: number; sha256: string | null }>;
	layout: unknown;
	power: unknown;
}

interface Preview {
	at: string;
	localTime: string;
	timezone: string;
	source: string;
	playlist: { id: string; name: string } | null;
	schedule: { id: string; name: string } | null;
	candidates: Array<{ scheduleId: string; name: string; priority: number; matched: boolean; reason: string }>;
	validUntil: string | null;
}

afterEach(() => {
	for (const stream of open.splice(0)) stream.close();
});

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

/** The body is exactly what the action's published schema says: every field typed as declared, and none more. */
function expectShape(schema: TSchema, body: unknown): void {
	expect([...Value.Errors(schema, body)].map(e => `${e.path}: ${e.message}`)).toEqual([]);
	expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
}

describe("scheduling", () => {
	let p: Platform;
	let owner: Session & { password: string };
	let other: Session & { password: string };
	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "100" });
		owner = await register(p, newAccount("sched"));
		other = await register(p, newAccount("sched-other"));
	});
	afterAll(() => p.stop());

	/** Background recomputations finished (their events sent). */
	const settled = () => (p.broker.getLocalService("scheduling") as unknown as Service & { idle(): Promise<void> }).idle();

	async function webContent(s: Session, name: string, durationMs = 8000): Promise<string> {
		const res = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: as(s), json: { name, url: `https://example.com/${encodeURIComponent(name)}`, durationMs } });
		expect(res.status).toBe(201);
		return res.body.id;
	}

	async function imageContent(s: Session, name: string): Promise<{ id: string; sha256: string }> {
		const png = await sharp({ create: { width: 64, height: 32, channels: 3, background: { r: 10, g: 120, b: 30 } } }).png().toBuffer();
		const form = new FormData();
		form.append("name", name);
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "a.png");
		const res = await request<{ id: string; sha256: string }>(p.api("/content"), { method: "POST", headers: as(s), body: form });
		expect(res.status).toBe(201);
		return res.body;
	}

	async function playlist(s: Session, name: string, items: Array<{ contentId: string; durationMs?: number }>): Promise<Playlist> {
		const res = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(s), json: { name, items } });
		expect(res.status).toBe(201);
		return res.body;
	}

	async function schedule(s: Session, body: Record<string, unknown>): Promise<{ id: string; createdAt: string }> {
		const res = await request<{ id: string; createdAt: string }>(p.api("/schedules"), { method: "POST", headers: as(s), json: body });
		if (res.status !== 201) throw new Error(`schedule answered ${res.status}: ${res.text}`);
		return res.body;
	}

	const preview = (s: Session, displayId: string, at: string) => request<Preview>(p.api(`/displays/${displayId}/preview?at=${encodeURIComponent(at)}`), { headers: as(s) });

	const manifest = (token: string, etag?: string) =>
		request<Manifest>(p.api("/device/manifest"), { headers: { ...bearer(token), ...(etag ? { "If-None-Match": etag } : {}) } });

	const manifestEvents = (stream: Stream): Block[] => stream.blocks.filter(b => b.event === "manifest");

	describe("playlists", () => {
		it("items default to their content's duration; the total adds them up; item ids survive a PATCH that keeps them", async () => {
			const a = await webContent(owner, "Menu", 8000);
			const b = await webContent(owner, "Weather", 12_000);
			const list = await playlist(owner, "Morning", [{ contentId: a }, { contentId: b, durationMs: 5000 }, { contentId: a }]);
			expect(list.items.map(i => [i.contentId, i.durationMs, i.customDuration])).toEqual([
				[a, 8000, false],
				[b, 5000, true],
				[a, 8000, false]
			]);
			expect(list.totalDurationMs).toBe(21_000);

			const patched = await request<Playlist>(p.api(`/playlists/${list.id}`), {
				method: "PATCH",
				headers: as(owner),
				json: { items: [{ id: list.items[1].id, contentId: b }, { contentId: a, durationMs: 2000 }] }
			});
			expect(patched.status).toBe(200);
			expect(patched.body.items[0]).toMatchObject({ id: list.items[1].id, contentId: b, durationMs: 12_000, customDuration: false });
			expect(patched.body.items[1].id).not.toBe(list.items[0].id);
			expect(patched.body.totalDurationMs).toBe(14_000);

			// A content duration change shows in every playlist item that follows it.
			await request(p.api(`/content/${b}`), { method: "PATCH", headers: as(owner), json: { durationMs: 20_000 } });
			const read = await request<Playlist>(p.api(`/playlists/${list.id}`), { headers: as(owner) });
			expect(read.body.totalDurationMs).toBe(22_000);
		});

		it("unknown content or another tenant's content answers 422 naming the item, and nothing is stored", async () => {
			const mine = await webContent(owner, "Mine");
			const theirs = await webContent(other, "Theirs");
			const before = await request<{ total: number }>(p.api("/playlists"), { headers: as(owner) });
			for (const foreign of [theirs, "0190a8e2-7b1c-7c3d-8e4f-123456789abc"]) {
				const res = await request<ErrorBody>(p.api("/playlists"), { method: "POST", headers: as(owner), json: { name: "Bad", items: [{ contentId: mine }, { contentId: foreign }] } });
				expect(res.status).toBe(422);
				expect(res.body.error.type).toBe("VALIDATION_ERROR");
				expect(res.body.error.data).toEqual([expect.objectContaining({ field: "items[1].contentId" })]);
			}
			const after = await request<{ total: number }>(p.api("/playlists"), { headers: as(owner) });
			expect(after.body.total).toBe(before.body.total);
		});

		it("a playlist used by a schedule or a display answers 409 on delete; ?force=true removes it everywhere", async () => {
			const c = await webContent(owner, "Used");
			const list = await playlist(owner, "In use", [{ contentId: c }]);
			const { display } = await pairDisplay(p, owner);
			await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: list.id } });
			const sched = await schedule(owner, { name: "Uses it", playlistId: list.id, targets: { displayIds: [display.id] } });

			const refused = await request<ErrorBody>(p.api(`/playlists/${list.id}`), { method: "DELETE", headers: as(owner) });
			expect(refused.status).toBe(409);
			expect(refused.body.error).toMatchObject({ type: "CONFLICT", data: { schedules: [{ id: sched.id, name: "Uses it" }], displayIds: [display.id] } });
			expect((await request(p.api(`/playlists/${list.id}`), { headers: as(owner) })).status).toBe(200);

			const forced = await request(p.api(`/playlists/${list.id}?force=true`), { method: "DELETE", headers: as(owner) });
			expect(forced.status).toBe(204);
			expect((await request(p.api(`/playlists/${list.id}`), { headers: as(owner) })).status).toBe(404);
			expect((await request(p.api(`/schedules/${sched.id}`), { headers: as(owner) })).status).toBe(404);
			const shown = await request<{ defaultPlaylistId: string | null }>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(shown.body.defaultPlaylistId).toBeNull();
		});
	});

	describe("schedules", () => {
		it("rejects what cannot be a rule with 422 naming the field", async () => {
			const c = await webContent(owner, "Rule content");
			const list = await playlist(owner, "Rules", [{ contentId: c }]);
			const { display } = await pairDisplay(p, owner);
			const { display: foreign } = await pairDisplay(p, other);
			const foreignList = await playlist(other, "Theirs", []);
			const base = { name: "Rule", playlistId: list.id, targets: { displayIds: [display.id] } };
			const cases: Array<[Record<string, unknown>, string]> = [
				[{ playlistId: foreignList.id }, "playlistId"],
				[{ targets: {} }, "targets"],
				[{ targets: { displayIds: [foreign.id] } }, "targets.displayIds"],
				[{ excludeDisplayIds: [foreign.id] }, "excludeDisplayIds"],
				[{ targets: { groupIds: ["0190a8e2-7b1c-7c3d-8e4f-123456789abc"] } }, "targets.groupIds"],
				[{ startDate: "2026-02-30" }, "startDate"],
				[{ startDate: "2026-05-02", endDate: "2026-05-01" }, "endDate"],
				[{ startTime: "24:00" }, "startTime"],
				[{ endTime: "9:00" }, "endTime"],
				[{ daysOfWeek: [0] }, "daysOfWeek[0]"],
				[{ priority: -1 }, "priority"],
				[{ priority: 1.5 }, "priority"]
			];
			for (const [change, field] of cases) {
				const res = await request<ErrorBody>(p.api("/schedules"), { method: "POST", headers: as(owner), json: { ...base, ...change } });
				expect([res.status, JSON.stringify(change)]).toEqual([422, JSON.stringify(change)]);
				expect((res.body.error.data as Array<{ field: string }>).map(d => d.field)).toContain(field);
			}
		});

		it("lists the schedules that target a display (through its id, groups and tags, not its exclusions), best first", async () => {
			const c = await webContent(owner, "List content");
			const list = await playlist(owner, "List", [{ contentId: c }]);
			const group = await request<{ id: string }>(p.api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Floor 2" } });
			const { display } = await pairDisplay(p, owner, { tags: ["lobby"], groupIds: [group.body.id] });
			const byId = await schedule(owner, { name: "by id", playlistId: list.id, targets: { displayIds: [display.id] }, priority: 1 });
			const byGroup = await schedule(owner, { name: "by group", playlistId: list.id, targets: { groupIds: [group.body.id] }, priority: 3 });
			const byTag = await schedule(owner, { name: "by tag", playlistId: list.id, targets: { tags: ["lobby"] }, priority: 2 });
			await schedule(owner, { name: "excluded", playlistId: list.id, targets: { tags: ["lobby"] }, excludeDisplayIds: [display.id] });
			await schedule(owner, { name: "elsewhere", playlistId: list.id, targets: { tags: ["kitchen"] } });
			const res = await request<{ rows: Array<{ id: string }>; total: number }>(p.api(`/schedules?displayId=${display.id}`), { headers: as(owner) });
			expect(res.status).toBe(200);
			expect(res.body.rows.map(r => r.id)).toEqual([byGroup.id, byTag.id, byId.id]);
			expect(res.body.total).toBe(3);
			const paged = await request<{ rows: Array<{ id: string }>; total: number; page: number; pageSize: number; totalPages: number }>(p.api(`/schedules?displayId=${display.id}&page=2&pageSize=2`), { headers: as(owner) });
			expect(paged.body).toEqual({ rows: [{ ...paged.body.rows[0], id: byId.id }], total: 3, page: 2, pageSize: 2, totalPages: 2 });
			const byPlaylist = await request<{ total: number }>(p.api(`/schedules?playlistId=${list.id}`), { headers: as(owner) });
			expect(byPlaylist.body.total).toBe(5);
		});

		it("PATCH changes what it names, null clears a rule, and the preview follows", async () => {
			const c = await webContent(owner, "Patch content");
			const list = await playlist(owner, "Patch", [{ contentId: c }]);
			const { display } = await pairDisplay(p, owner, { timezone: "UTC" });
			const rule = await schedule(owner, { name: "Mornings", playlistId: list.id, targets: { displayIds: [display.id] }, startTime: "06:00", endTime: "12:00", daysOfWeek: [3, 1] });
			const at = "2026-12-07T15:00:00Z"; // a Monday afternoon
			expect((await preview(owner, display.id, at)).body.source).toBe("none");

			const patched = await request<{ name: string; startTime: string | null; endTime: string | null; daysOfWeek: number[] | null; priority: number; targets: unknown }>(p.api(`/schedules/${rule.id}`), {
				method: "PATCH",
				headers: as(owner),
				json: { name: "All day", startTime: null, endTime: null, daysOfWeek: [5, 1], priority: 7 }
			});
			expect(patched.status).toBe(200);
			expect(patched.body).toMatchObject({ name: "All day", startTime: null, endTime: null, daysOfWeek: [1, 5], priority: 7, targets: { displayIds: [display.id], groupIds: [], tags: [] } });
			expect((await preview(owner, display.id, at)).body).toMatchObject({ source: "schedule", schedule: { id: rule.id, name: "All day" } });

			const bad = await request<ErrorBody>(p.api(`/schedules/${rule.id}`), { method: "PATCH", headers: as(owner), json: { startDate: "2026-12-10", endDate: "2026-12-01" } });
			expect(bad.status).toBe(422);
			expect((bad.body.error.data as Array<{ field: string }>).map(d => d.field)).toEqual(["endDate"]);
			expect((await request<{ startDate: string | null }>(p.api(`/schedules/${rule.id}`), { headers: as(owner) })).body.startDate).toBeNull();

			expect((await request(p.api(`/schedules/${rule.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			expect((await request(p.api(`/schedules/${rule.id}`), { headers: as(owner) })).status).toBe(404);
			expect((await preview(owner, display.id, at)).body.source).toBe("none");
		});
	});

	describe("preview (the New York must-hold)", () => {
		let displayId: string;
		let workday: { id: string };
		let fallbackId: string;

		beforeAll(async () => {
			const c = await webContent(owner, "NY content");
			const fallback = await playlist(owner, "All day", [{ contentId: c }]);
			const office = await playlist(owner, "Office hours", [{ contentId: c }]);
			fallbackId = fallback.id;
			const { display } = await pairDisplay(p, owner, { timezone: "America/New_York", tags: ["ny"] });
			displayId = display.id;
			await request(p.api(`/displays/${displayId}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: fallback.id } });
			workday = await schedule(owner, { name: "Workday", playlistId: office.id, targets: { tags: ["ny"] }, daysOfWeek: [1, 2, 3, 4, 5], startTime: "09:00", endTime: "17:00", priority: 5 });
		});

		// [day, 08:59 local in UTC, 09:00 local in UTC, 17:00 local in UTC]
		const days: Array<[string, string, string, string]> = [
			["Friday before spring-forward (EST)", "2026-03-06T13:59:00Z", "2026-03-06T14:00:00Z", "2026-03-06T22:00:00.000Z"],
			["Monday after spring-forward (EDT)", "2026-03-09T12:59:00Z", "2026-03-09T13:00:00Z", "2026-03-09T21:00:00.000Z"],
			["Friday before fall-back (EDT)", "2026-10-30T12:59:00Z", "2026-10-30T13:00:00Z", "2026-10-30T21:00:00.000Z"],
			["Monday after fall-back (EST)", "2026-11-02T13:59:00Z", "2026-11-02T14:00:00Z", "2026-11-02T22:00:00.000Z"]
		];

		it.each(days)("%s: 08:59 plays the default until exactly 09:00, 09:00 plays the workday until 17:00", async (_, before, nine, five) => {
			const early = await preview(owner, displayId, before);
			expect(early.status).toBe(200);
			expect(early.body).toMatchObject({ timezone: "America/New_York", source: "default", playlist: { id: fallbackId, name: "All day" }, schedule: null, validUntil: new Date(nine).toISOString() });
			expect(early.body.localTime).toMatch(/T08:59:00[-+]\d{2}:\d{2}$/);
			expect(early.body.candidates).toEqual([expect.objectContaining({ scheduleId: workday.id, matched: false, reason: "outside 09:00–17:00" })]);

			const onTime = await preview(owner, displayId, nine);
			expect(onTime.body).toMatchObject({ source: "schedule", schedule: { id: workday.id, name: "Workday" }, validUntil: five });
			expect(onTime.body.localTime).toMatch(/T09:00:00[-+]\d{2}:\d{2}$/);
			expect(onTime.body.candidates).toEqual([expect.objectContaining({ scheduleId: workday.id, matched: true })]);
		});

		it("Friday 17:00 before spring-forward plays the default until Monday 09:00 EDT", async () => {
			const res = await preview(owner, displayId, "2026-03-06T22:00:00Z");
			expect(res.body).toMatchObject({ source: "default", validUntil: "2026-03-09T13:00:00.000Z" });
		});

		it("the timeline of the spring-forward weekend shows local segments", async () => {
			const res = await request<{ timezone: string; segments: Array<{ start: string; end: string; source: string; scheduleId: string | null; localStart: string }> }>(
				p.api(`/displays/${displayId}/timeline?from=2026-03-06T05:00:00Z&to=2026-03-10T04:00:00Z`),
				{ headers: as(owner) }
			);
			expect(res.status).toBe(200);
			expect(res.body.timezone).toBe("America/New_York");
			expect(res.body.segments.map(s => [s.start, s.end, s.source])).toEqual([
				["2026-03-06T05:00:00.000Z", "2026-03-06T14:00:00.000Z", "default"],
				["2026-03-06T14:00:00.000Z", "2026-03-06T22:00:00.000Z", "schedule"],
				["2026-03-06T22:00:00.000Z", "2026-03-09T13:00:00.000Z", "default"],
				["2026-03-09T13:00:00.000Z", "2026-03-09T21:00:00.000Z", "schedule"],
				["2026-03-09T21:00:00.000Z", "2026-03-10T04:00:00.000Z", "default"]
			]);
			expect(res.body.segments[3].localStart).toBe("2026-03-09T09:00:00-04:00");
		});

		it("a timeline longer than 31 days or ending before it starts answers 422", async () => {
			for (const q of ["from=2026-03-01T00:00:00Z&to=2026-04-02T00:00:00Z", "from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from=yesterday"]) {
				const res = await request<ErrorBody>(p.api(`/displays/${displayId}/timeline?${q}`), { headers: as(owner) });
				expect([q, res.status]).toEqual([q, 422]);
			}
		});
	});

	it("a deleted display or group leaves every schedule, power schedule and override naming it, so what a client reads it can send back", async () => {
		const c = await webContent(owner, "Leaving content");
		const list = await playlist(owner, "Leaving", [{ contentId: c }]);
		const [{ display: stays }, { display: goes }, { display: excluded }] = [await pairDisplay(p, owner), await pairDisplay(p, owner), await pairDisplay(p, owner)];
		const group = (await request<{ id: string }>(p.api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Leaving group" } })).body;
		const targets = { displayIds: [stays.id, goes.id], groupIds: [group.id], tags: ["leaving"] };
		const excludeDisplayIds = [excluded.id];
		const endsAt = new Date(Date.now() + 3600_000).toISOString();
		const rules = {
			schedules: (await request<{ id: string }>(p.api("/schedules"), { method: "POST", headers: as(owner), json: { name: "Leaving", playlistId: list.id, targets, excludeDisplayIds } })).body.id,
			"power-schedules": (await request<{ id: string }>(p.api("/power-schedules"), { method: "POST", headers: as(owner), json: { name: "Leaving", targets, excludeDisplayIds, startDate: "2099-01-01" } })).body.id,
			overrides: (await request<{ id: string }>(p.api("/overrides"), { method: "POST", headers: as(owner), json: { name: "Leaving", playlistId: list.id, targets, excludeDisplayIds, endsAt } })).body.id
		};
		for (const id of [goes.id, excluded.id]) expect((await request(p.api(`/displays/${id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await request(p.api(`/display-groups/${group.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		for (const [kind, id] of Object.entries(rules)) {
			let read: { targets: typeof targets; excludeDisplayIds: string[] } | undefined;
			for (let i = 0; i < 100; i++) {
				read = (await request<{ targets: typeof targets; excludeDisplayIds: string[] }>(p.api(`/${kind}/${id}`), { headers: as(owner) })).body;
				if (read.targets.displayIds.length === 1 && read.targets.groupIds.length === 0 && read.excludeDisplayIds.length === 0) break;
				await new Promise(resolve => setTimeout(resolve, 50));
			}
			expect([kind, read?.targets, read?.excludeDisplayIds]).toEqual([kind, { displayIds: [stays.id], groupIds: [], tags: ["leaving"] }, []]);
			const echoed = await request(p.api(`/${kind}/${id}`), { method: "PATCH", headers: as(owner), json: { targets: read?.targets, excludeDisplayIds: read?.excludeDisplayIds } });
			expect([kind, echoed.status]).toEqual([kind, 200]);
		}
		// The schedule still reaches the display that stays.
		const reaching = await request<{ rows: Array<{ id: string }> }>(p.api(`/schedules?displayId=${stays.id}`), { headers: as(owner) });
		expect(reaching.body.rows.map(r => r.id)).toContain(rules.schedules);
	});

	it("a burst of changes is one recomputation running and one waiting, not one each, and the last change wins", async () => {
		const c = await webContent(owner, "Burst content");
		const list = await playlist(owner, "Burst", [{ contentId: c }]);
		const { display, token } = await pairDisplay(p, owner);
		expect((await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: list.id } })).status).toBe(200);
		await settled();
		const service = p.broker.getLocalService("scheduling") as unknown as { recompute: (...args: unknown[]) => Promise<void> };
		const original = service.recompute;
		// The first recomputation is held until every change is stored, as a slow one (a big tenant) would be.
		let runs = 0;
		let release!: () => void;
		const held = new Promise<void>(resolve => (release = resolve));
		service.recompute = async function (this: unknown, ...args: unknown[]) {
			runs += 1;
			if (runs === 1) await held;
			return original.apply(this, args);
		};
		try {
			const first = await request(p.api(`/playlists/${list.id}`), { method: "PATCH", headers: as(owner), json: { name: "Burst start" } });
			expect(first.status).toBe(200);
			const renames = await Promise.all(Array.from({ length: 60 }, (_, i) => request(p.api(`/playlists/${list.id}`), { method: "PATCH", headers: as(owner), json: { name: `Burst ${i}` } })));
			expect(renames.every(r => r.status === 200)).toBe(true);
			release();
			await settled();
			// Written by hand: the held one, then the 60 changes made meanwhile as one.
			expect(runs).toBe(2);
		} finally {
			release();
			service.recompute = original;
		}
		const stored = await request<{ name: string }>(p.api(`/playlists/${list.id}`), { headers: as(owner) });
		const manifest = await request<Manifest>(p.api("/device/manifest"), { headers: bearer(token) });
		expect(manifest.body.playlist?.name).toBe(stored.body.name);
		expect(display.id).toBe(manifest.body.displayId);
	});

	it("a timeline of many short rules stops at 1 000 segments, says so, and goes on from where it stopped", async () => {
		const c = await webContent(owner, "Minute content");
		const list = await playlist(owner, "Minutes", [{ contentId: c }]);
		const { display } = await pairDisplay(p, owner, { timezone: "UTC" });
		// 40 one-minute windows a day: 80 segments a day, 2 480 over 31 days.
		for (let i = 0; i < 40; i++) {
			const at = `${String(Math.floor(i / 2)).padStart(2, "0")}:${i % 2 ? "30" : "00"}`;
			const end = `${String(Math.floor(i / 2)).padStart(2, "0")}:${i % 2 ? "31" : "01"}`;
			const made = await request(p.api("/schedules"), { method: "POST", headers: as(owner), json: { name: `Minute ${i}`, playlistId: list.id, targets: { displayIds: [display.id] }, startTime: at, endTime: end } });
			expect(made.status).toBe(201);
		}
		type Timeline = { from: string; to: string; truncated: boolean; segments: Array<{ start: string; end: string }> };
		const first = await request<Timeline>(p.api(`/displays/${display.id}/timeline?from=2027-01-01T00:00:00Z&to=2027-02-01T00:00:00Z`), { headers: as(owner) });
		expect(first.status).toBe(200);
		expect(first.body.segments).toHaveLength(1000);
		expect(first.body.truncated).toBe(true);
		expect(first.body.to).toBe(first.body.segments[999].end);
		// 80 a day (each window and the gap after it): 12 days are 960; 40 more are the windows 00:00
		// to 09:30 of 13 January and their gaps, the last gap ending at 10:00.
		expect(first.body.to).toBe("2027-01-13T10:00:00.000Z");
		const rest = await request<Timeline>(p.api(`/displays/${display.id}/timeline?from=${first.body.to}&to=2027-01-14T00:00:00Z`), { headers: as(owner) });
		expect(rest.body).toMatchObject({ truncated: false, to: "2027-01-14T00:00:00.000Z" });
		expect(rest.body.segments[0].start).toBe(first.body.to);
	});

	it("two matching schedules of equal priority: the newer wins, and the preview says why the other lost", async () => {
		const c = await webContent(owner, "Tie content");
		const list = await playlist(owner, "Tie", [{ contentId: c }]);
		const { display } = await pairDisplay(p, owner, { tags: ["tie"] });
		const older = await schedule(owner, { name: "Older", playlistId: list.id, targets: { tags: ["tie"] }, priority: 3 });
		const newer = await schedule(owner, { name: "Newer", playlistId: list.id, targets: { displayIds: [display.id] }, priority: 3 });
		expect(newer.createdAt > older.createdAt).toBe(true);
		for (let i = 0; i < 3; i++) {
			const res = await preview(owner, display.id, "2026-12-01T12:00:00Z");
			expect(res.body.schedule).toEqual({ id: newer.id, name: "Newer" });
			expect(res.body.candidates.find(x => x.scheduleId === older.id)).toMatchObject({ matched: true, reason: 'older than "Newer"' });
		}
	});

	describe("device manifest", () => {
		it("answers 304 to its own ETag; after its content is deleted the next fetch is 200 without it, and the live stream said so", async () => {
			const image = await imageContent(owner, "Poster");
			const web = await webContent(owner, "Board");
			const list = await playlist(owner, "Screen", [{ contentId: image.id, durationMs: 4000 }, { contentId: web }]);
			const { display, token } = await pairDisplay(p, owner, { tags: ["manifest"] });
			await schedule(owner, { name: "Always", playlistId: list.id, targets: { displayIds: [display.id] } });
			await settled();

			const first = await manifest(token);
			expect(first.status).toBe(200);
			const etag = first.headers.get("etag") ?? "";
			expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
			expect(first.body).toMatchObject({ displayId: display.id, etag, source: "schedule", playlist: { id: list.id, name: "Screen" }, validUntil: null });
			// API.md's manifest fields (and the override and layout, null here).
			expect(Object.keys(first.body).sort()).toEqual(["displayId", "etag", "generatedAt", "items", "layout", "override", "playlist", "power", "schedule", "source", "timezone", "validUntil"]);
			expect(first.body.layout).toBeNull();
			expect(first.body.power).toBeNull();
			expect(first.body.schedule).toEqual({ id: expect.any(String), name: "Always" });
			expect(Date.parse(first.body.generatedAt)).not.toBeNaN();
			expect(first.body.items).toEqual([
				expect.objectContaining({ contentId: image.id, name: "Poster", url: `/api/v1/device/content/${image.id}`, sha256: image.sha256, durationMs: 4000 }),
				expect.objectContaining({ contentId: web, name: "Board", url: "https://example.com/Board", durationMs: 8000 })
			]);

			const again = await manifest(token, etag);
			expect(again.status).toBe(304);
			expect(again.text).toBe("");
			expect(again.headers.get("etag")).toBe(etag);
			// The ETag does not move with time: a later fetch without it gives the same one.
			expect((await manifest(token)).headers.get("etag")).toBe(etag);

			const heartbeat = await request<{ manifestEtag: string | null }>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
			expect(heartbeat.body.manifestEtag).toBe(etag);

			// The screen may download what its manifest holds, and nothing else.
			expect((await fetch(p.api(`/device/content/${image.id}`), { headers: bearer(token) })).status).toBe(200);
			const stranger = await webContent(owner, "Not in the manifest");
			expect((await fetch(p.api(`/device/content/${stranger}`), { headers: bearer(token) })).status).toBe(404);

			const stream = await connect(p.url, token);
			const deleted = await request(p.api(`/content/${image.id}`), { method: "DELETE", headers: as(owner) });
			expect(deleted.status).toBe(204);

			const next = await manifest(token, etag);
			expect(next.status).toBe(200);
			expect(next.body.items.map(i => i.contentId)).toEqual([web]);
			expect(next.body.etag).not.toBe(etag);
			const event = await stream.waitFor(isEvent("manifest"));
			expect(JSON.parse(event.data ?? "")).toEqual({ etag: next.body.etag });
			expect((await request<Playlist>(p.api(`/playlists/${list.id}`), { headers: as(owner) })).body.items.map(i => i.contentId)).toEqual([web]);
			expect((await fetch(p.api(`/device/content/${image.id}`), { headers: bearer(token) })).status).toBe(404);
		});

		it("pushes a new ETag to exactly the displays a change affects", async () => {
			const c1 = await webContent(owner, "Lobby content");
			const c2 = await webContent(owner, "Kitchen content");
			const lobbyList = await playlist(owner, "Lobby", [{ contentId: c1 }]);
			const kitchenList = await playlist(owner, "Kitchen", [{ contentId: c2 }]);
			const lobby = await pairDisplay(p, owner, { tags: ["lobby-push"] });
			const kitchen = await pairDisplay(p, owner, { tags: ["kitchen-push"] });
			await settled();
			const lobbyStream = await connect(p.url, lobby.token);
			const kitchenStream = await connect(p.url, kitchen.token);

			// A schedule for the lobby tag: the lobby screen hears of it, the kitchen screen does not.
			await schedule(owner, { name: "Lobby", playlistId: lobbyList.id, targets: { tags: ["lobby-push"] } });
			const lobbyEvent = await lobbyStream.waitFor(isEvent("manifest"));
			expect(JSON.parse(lobbyEvent.data ?? "").etag).toBe((await manifest(lobby.token)).body.etag);

			// Then one for the kitchen: the first and only event the kitchen gets is this one.
			await schedule(owner, { name: "Kitchen", playlistId: kitchenList.id, targets: { tags: ["kitchen-push"] } });
			const kitchenEvent = await kitchenStream.waitFor(isEvent("manifest"));
			expect(JSON.parse(kitchenEvent.data ?? "").etag).toBe((await manifest(kitchen.token)).body.etag);
			await settled();
			expect(manifestEvents(kitchenStream)).toHaveLength(1);
			expect(manifestEvents(lobbyStream)).toHaveLength(1);

			// Editing the kitchen playlist reaches the kitchen only; a content rename reaches the lobby only.
			await request(p.api(`/playlists/${kitchenList.id}`), { method: "PATCH", headers: as(owner), json: { name: "Kitchen v2" } });
			await kitchenStream.waitFor(isEvent("manifest"), 5000, kitchenStream.blocks.indexOf(kitchenEvent) + 1);
			await request(p.api(`/content/${c1}`), { method: "PATCH", headers: as(owner), json: { name: "Lobby content v2" } });
			await lobbyStream.waitFor(isEvent("manifest"), 5000, lobbyStream.blocks.indexOf(lobbyEvent) + 1);
			await settled();
			expect(manifestEvents(kitchenStream)).toHaveLength(2);
			expect(manifestEvents(lobbyStream)).toHaveLength(2);
			expect((await manifest(lobby.token)).body.items[0].name).toBe("Lobby content v2");
			expect((await manifest(kitchen.token)).body.playlist?.name).toBe("Kitchen v2");

			// Retagging the kitchen screen into the lobby: it now plays the lobby schedule.
			const seen = kitchenStream.blocks.length;
			await request(p.api(`/displays/${kitchen.display.id}`), { method: "PATCH", headers: as(owner), json: { tags: ["lobby-push"] } });
			await kitchenStream.waitFor(isEvent("manifest"), 5000, seen);
			await settled();
			expect(manifestEvents(kitchenStream)).toHaveLength(3);
			expect(manifestEvents(lobbyStream)).toHaveLength(2);
			expect((await manifest(kitchen.token)).body.playlist?.id).toBe(lobbyList.id);
		});

		it("an override beats every schedule on every display of the tenant until it is ended", async () => {
			const c = await webContent(owner, "Evacuate");
			const alert = await playlist(owner, "Emergency", [{ contentId: c }]);
			const normal = await playlist(owner, "Normal", [{ contentId: await webContent(owner, "Normal content") }]);
			const screen = await pairDisplay(p, owner, { tags: ["override-test"] });
			await schedule(owner, { name: "High", playlistId: normal.id, targets: { tags: ["override-test"] }, priority: 1000 });
			await settled();
			const stream = await connect(p.url, screen.token);

			const endsAt = new Date(Date.now() + 3600_000).toISOString();
			const created = await request<{ id: string; status: string }>(p.api("/overrides"), { method: "POST", headers: as(owner), json: { name: "Fire drill", playlistId: alert.id, endsAt } });
			expect(created.status).toBe(201);
			expect(created.body.status).toBe("active");
			await stream.waitFor(isEvent("manifest"));
			const during = await manifest(screen.token);
			expect(during.body).toMatchObject({ source: "override", playlist: { id: alert.id }, validUntil: endsAt });

			expect((await request(p.api(`/overrides/${created.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			const after = await manifest(screen.token);
			expect(after.body).toMatchObject({ source: "schedule", playlist: { id: normal.id } });
			const shown = await request<{ status: string; endedAt: string | null }>(p.api(`/overrides/${created.body.id}`), { headers: as(owner) });
			expect(shown.body.status).toBe("ended");
			expect(shown.body.endedAt).not.toBeNull();

			const past = await request<ErrorBody>(p.api("/overrides"), { method: "POST", headers: as(owner), json: { name: "Late", playlistId: alert.id, endsAt: "2020-01-01T00:00:00Z" } });
			expect(past.status).toBe(422);

			// One planned for tomorrow and called off before it starts is listed as ended, never active.
			const tomorrow = Date.now() + 24 * 3600_000;
			const planned = await request<{ id: string; status: string }>(p.api("/overrides"), {
				method: "POST",
				headers: as(owner),
				json: { name: "Planned", playlistId: alert.id, targets: { tags: ["override-test"] }, startsAt: new Date(tomorrow).toISOString(), endsAt: new Date(tomorrow + 3600_000).toISOString() }
			});
			expect(planned.body.status).toBe("scheduled");
			const listed = async (status: string) => (await request<{ rows: Array<{ id: string }> }>(p.api(`/overrides?status=${status}&pageSize=100`), { headers: as(owner) })).body.rows.map(r => r.id);
			expect(await listed("scheduled")).toContain(planned.body.id);
			expect((await request(p.api(`/overrides/${planned.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			expect(await listed("scheduled")).not.toContain(planned.body.id);
			expect(await listed("ended")).toEqual(expect.arrayContaining([planned.body.id, created.body.id]));
			expect(await listed("active")).not.toContain(created.body.id);
			expect((await request(p.api(`/overrides/${planned.body.id}`), { method: "PATCH", headers: as(owner), json: { name: "Again" } })).status).toBe(409);
		});

		it("content outside its validity window is left out, and validUntil is its next edge", async () => {
			const c1 = await webContent(owner, "Always on");
			const c2 = await webContent(owner, "Later");
			const list = await playlist(owner, "Validity", [{ contentId: c1 }, { contentId: c2 }]);
			const screen = await pairDisplay(p, owner);
			await schedule(owner, { name: "Validity", playlistId: list.id, targets: { displayIds: [screen.display.id] } });
			const from = new Date(Date.now() + 3 * 3600_000).toISOString();
			expect((await request(p.api(`/content/${c2}`), { method: "PATCH", headers: as(owner), json: { validFrom: from } })).status).toBe(200);
			await settled();
			const res = await manifest(screen.token);
			expect(res.body.items.map(i => i.contentId)).toEqual([c1]);
			expect(res.body.validUntil).toBe(from);
		});
	});

	it("a tenant timezone change reaches the displays without their own zone; a rename reaches none", async () => {
		const c = await webContent(other, "Zone content");
		const list = await playlist(other, "Zone", [{ contentId: c }]);
		const floating = await pairDisplay(p, other, { tags: ["zone"] });
		const pinned = await pairDisplay(p, other, { tags: ["zone"], timezone: "Europe/Paris" });
		await schedule(other, { name: "Zone", playlistId: list.id, targets: { tags: ["zone"] } });
		await settled();
		const floatingStream = await connect(p.url, floating.token);
		const pinnedStream = await connect(p.url, pinned.token);
		expect((await request(p.api("/tenant"), { method: "PATCH", headers: as(other), json: { name: "Renamed org" } })).status).toBe(200);
		expect((await request(p.api("/tenant"), { method: "PATCH", headers: as(other), json: { settings: { timezone: "Asia/Tokyo" } } })).status).toBe(200);
		const event = await floatingStream.waitFor(isEvent("manifest"));
		const now = await manifest(floating.token);
		expect(now.body.timezone).toBe("Asia/Tokyo");
		expect(JSON.parse(event.data ?? "").etag).toBe(now.body.etag);
		await settled();
		expect(manifestEvents(floatingStream)).toHaveLength(1);
		expect(manifestEvents(pinnedStream)).toHaveLength(0);
		expect((await manifest(pinned.token)).body.timezone).toBe("Europe/Paris");
	});

	it("every answer is exactly its published response schema (and the deletes answer no body)", async () => {
		const image = await imageContent(owner, "Shape poster");
		const web = await webContent(owner, "Shape board");
		const created = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(owner), json: { name: "Shapes", items: [{ contentId: image.id, durationMs: 3000 }, { contentId: web }] } });
		expect(created.status).toBe(201);
		expectShape(PlaylistView, created.body);
		expectShape(PlaylistView, (await request(p.api(`/playlists/${created.body.id}`), { headers: as(owner) })).body);
		expectShape(PlaylistView, (await request(p.api(`/playlists/${created.body.id}`), { method: "PATCH", headers: as(owner), json: { name: "Shapes 2" } })).body);
		expectShape(PlaylistPage, (await request(p.api("/playlists?q=Shapes"), { headers: as(owner) })).body);

		const { display, token } = await pairDisplay(p, owner, { tags: ["shapes"], timezone: "Europe/Paris" });
		const sched = await request<{ id: string }>(p.api("/schedules"), {
			method: "POST",
			headers: as(owner),
			json: { name: "Shapes", playlistId: created.body.id, targets: { tags: ["shapes"] }, startDate: "2026-01-01", daysOfWeek: [2, 1], startTime: "08:00", endTime: "20:00" }
		});
		expect(sched.status).toBe(201);
		expectShape(ScheduleView, sched.body);
		expectShape(ScheduleView, (await request(p.api(`/schedules/${sched.body.id}`), { headers: as(owner) })).body);
		expectShape(ScheduleView, (await request(p.api(`/schedules/${sched.body.id}`), { method: "PATCH", headers: as(owner), json: { daysOfWeek: null, priority: 2 } })).body);
		expectShape(SchedulePage, (await request(p.api("/schedules"), { headers: as(owner) })).body);
		expectShape(SchedulePage, (await request(p.api(`/schedules?displayId=${display.id}`), { headers: as(owner) })).body);

		const override = await request<{ id: string }>(p.api("/overrides"), { method: "POST", headers: as(owner), json: { name: "Shapes", playlistId: created.body.id, endsAt: new Date(Date.now() + 3600_000).toISOString() } });
		expect(override.status).toBe(201);
		expectShape(OverrideView, override.body);
		const targeted = await request(p.api(`/overrides/${override.body.id}`), { method: "PATCH", headers: as(owner), json: { targets: { displayIds: [display.id] } } });
		expectShape(OverrideView, targeted.body);
		expectShape(OverrideView, (await request(p.api(`/overrides/${override.body.id}`), { headers: as(owner) })).body);
		expectShape(OverridePage, (await request(p.api("/overrides?status=active"), { headers: as(owner) })).body);

		expectShape(PreviewView, (await preview(owner, display.id, new Date().toISOString())).body);
		expectShape(PreviewView, (await preview(owner, display.id, "2026-12-01T12:00:00Z")).body);
		expectShape(TimelineView, (await request(p.api(`/displays/${display.id}/timeline`), { headers: as(owner) })).body);
		const played = await manifest(token);
		expect(played.status).toBe(200);
		expectShape(ManifestSchema, played.body);
		await settled();

		const exported = await p.broker.call("scheduling.exportTenantData", { tenantId: owner.tenant.id });
		expectShape(SchedulingExport, exported);

		for (const path of [`/overrides/${override.body.id}`, `/schedules/${sched.body.id}`, `/playlists/${created.body.id}`]) {
			const res = await request(p.api(path), { method: "DELETE", headers: as(owner) });
			expect([path, res.status, res.text]).toEqual([path, 204, ""]);
		}
		await settled();
	});

	it("another tenant's playlist, schedule, override and display answer 404", async () => {
		const c = await webContent(other, "Other");
		const list = await playlist(other, "Other", [{ contentId: c }]);
		const { display } = await pairDisplay(p, other);
		const sched = await schedule(other, { name: "Other", playlistId: list.id, targets: { displayIds: [display.id] } });
		const override = await request<{ id: string }>(p.api("/overrides"), { method: "POST", headers: as(other), json: { name: "Other", playlistId: list.id, endsAt: new Date(Date.now() + 60_000).toISOString() } });
		const paths = [
			`/playlists/${list.id}`,
			`/schedules/${sched.id}`,
			`/overrides/${override.body.id}`,
			`/displays/${display.id}/preview`,
			`/displays/${display.id}/timeline`
		];
		for (const path of paths) {
			const res = await request<ErrorBody>(p.api(path), { headers: as(owner) });
			expect([path, res.status, res.body.error?.type]).toEqual([path, 404, "NOT_FOUND"]);
		}
		for (const path of paths.slice(0, 3)) {
			const res = await request<ErrorBody>(p.api(path), { method: "DELETE", headers: as(owner) });
			expect([path, res.status]).toEqual([path, 404]);
		}
		expect((await request(p.api(`/playlists/${list.id}`), { headers: as(other) })).status).toBe(200);
	});
});
