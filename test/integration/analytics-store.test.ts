/**
 * The analytics store contract: the same migrations, fixtures and queries on chDB (in-process,
 * always) and on a ClickHouse server (Debian's 18.16 in CI, whenever one is reachable), with the
 * same hand-written expectations — so both backends give identical answers.
 *
 * Also: the one escaping helper round-trips thousands of hostile strings through a real engine,
 * and nothing a filter carries reaches another tenant's rows.
 */
import fc from "fast-check";
import { appliedVersions, migrate, MIGRATIONS } from "../../services/analytics/migrations";
import { auditCount, auditPage, healthSeries, playbackExportChunk, playbackReport, playbackTotals, uptimeReport, type Window } from "../../services/analytics/queries";
import {
	auditEntry,
	auditRow,
	healthRow,
	playbackRow,
	playbackRows,
	statusRow,
	uptimeRow,
	type AuditResultRow,
	type ExportResultRow,
	type PlaybackResultRow,
	type UptimeResultRow
} from "../../services/analytics/records";
import { quote, Sql, sql, wellFormed } from "../../services/analytics/sql";
import { QueryTooHeavy, type AnalyticsStore } from "../../services/analytics/store";
import { describeOnEveryStore } from "../helpers/analytics-stores";

const MIN = 60_000;
const HOUR = 60 * MIN;
/** Saturday 28 March 2026, 22:00 UTC: Europe/Berlin moves to summer time the next night. */
const T0 = Date.UTC(2026, 2, 28, 22, 0);
const iso = (ms: number) => new Date(ms).toISOString();

function play(eventId: string, contentId: string, startedAt: number, durationMs: number, completed = true) {
	return { eventId, contentId, contentName: "", playlistId: null, scheduleId: null, startedAt, durationMs, completed };
}

/** Tenant t1: two displays, two content items, one replayed event; tenant t2 plays t1's content id 100 times. */
async function loadFixture(store: AnalyticsStore): Promise<void> {
	const lobby = { tenantId: "t1", displayId: "d1", displayName: "Lobby 🎬", groups: [{ id: "g1", name: "Ground floor" }], receivedAt: T0 + 3 * HOUR };
	const bar = { tenantId: "t1", displayId: "d2", displayName: "Bar", groups: [], receivedAt: T0 + 3 * HOUR };
	const named = (events: ReturnType<typeof play>[], names: Record<string, string>) => events.map(e => ({ ...e, contentName: names[e.contentId] ?? "" }));
	const menu = { c1: "Menu 'special' \\ \"quoted\"" };
	await store.insert("playback_events", playbackRows({ ...lobby, events: named([play("e1", "c1", T0, 10_000), play("e2", "c1", T0 + 30 * MIN, 10_000, false)], menu) }));
	// The same event again (a replayed batch) and a third play.
	await store.insert("playback_events", playbackRows({ ...lobby, events: named([play("e1", "c1", T0, 10_000), play("e3", "c1", T0 + 90 * MIN, 10_000)], menu) }));
	await store.insert("playback_events", playbackRows({ ...bar, events: named([play("e1", "c2", T0 + 5 * MIN, 5_000), play("e4", "c2", T0 + 65 * MIN, 5_000)], { c2: "<script>alert(1)</script>" }) }));
	const other = { tenantId: "t2", displayId: "x1", displayName: "Other", groups: [{ id: "g1", name: "Not yours" }], receivedAt: T0 };
	await store.insert("playback_events", playbackRows({ ...other, events: Array.from({ length: 100 }, (_, i) => play(`o${i}`, "c1", T0 + i * MIN, 1_000)) }));

	const status = (id: string, tenantId: string, displayId: string, name: string, online: boolean | null, at: number) => statusRow({ id, tenantId, displayId, name, online, at: iso(at) });
	await store.insert("display_status", [
		status("s1", "t1", "d1", "Lobby", true, T0),
		status("s2", "t1", "d1", "Lobby", false, T0 + HOUR),
		status("s3", "t1", "d1", "Lobby 🎬", true, T0 + 90 * MIN),
		status("s4", "t1", "d2", "Bar", true, T0),
		status("s5", "t1", "d2", "Bar", null, T0 + HOUR),
		status("s6", "t2", "x1", "Other", false, T0)
	]);
	// A redelivered transition.
	await store.insert("display_status", [status("s2", "t1", "d1", "Lobby", false, T0 + HOUR)]);

	const beat = (displayId: string, at: number, cpu: number, temperature?: number) =>
		healthRow({ tenantId: "t1", displayId, ts: iso(at), lastSeenAt: iso(at), metrics: { cpu, memory: 50, disk: 70, temperature }, appVersion: "1.0", currentContentId: null, uptimeSec: null });
	await store.insert("device_health", [beat("d1", T0 + MIN, 10, 40), beat("d1", T0 + 2 * MIN, 30), beat("d1", T0 + 6 * MIN, 50, 44), beat("d1", T0 + MIN, 10, 40)]);

	const record = (id: string, ts: number, action: string, actorId: string, tenantId = "t1") =>
		auditRow({ id, tenantId, ts: iso(ts), actor: { kind: "user", id: actorId }, action, target: "x", ip: "127.0.0.1", requestId: `r-${id}`, data: { n: id } });
	await store.insert("audit_events", [record("a1", T0, "display.paired", "u1"), record("a2", T0 + MIN, "display.deleted", "u2"), record("a3", T0 + 2 * MIN, "content.created", "u1"), record("a9", T0, "display.paired", "u1", "t2")]);
	await store.insert("audit_events", [record("a2", T0 + MIN, "display.deleted", "u2")]);
}

const W: Window = { tenantId: "t1", from: T0 - HOUR, to: T0 + 2 * HOUR };

describeOnEveryStore("analytics store contract", (open, backend) => {
	let store: AnalyticsStore;

	beforeAll(async () => {
		store = await open();
		await migrate(store);
		await loadFixture(store);
	});

	it("records every migration once; running them again (even twice at once) applies nothing", async () => {
		expect(await appliedVersions(store)).toEqual(MIGRATIONS.map(m => m.version));
		expect(await Promise.all([migrate(store), migrate(store)])).toEqual([[], []]);
		expect(await appliedVersions(store)).toEqual(MIGRATIONS.map(m => m.version));
	});

	it("counts plays by content exactly, a replayed event once, and never another tenant's plays", async () => {
		const rows = (await store.rows<PlaybackResultRow>(playbackReport(W, {}, "content", "UTC", 100))).map(r => playbackRow(r, null));
		expect(rows).toEqual([
			{ key: "c1", name: "Menu 'special' \\ \"quoted\"", plays: 3, durationMs: 30_000, avgDurationMs: 10_000, completionRate: 0.6667 },
			{ key: "c2", name: "<script>alert(1)</script>", plays: 2, durationMs: 10_000, avgDurationMs: 5_000, completionRate: 1 }
		]);
		expect(await store.rows(playbackTotals(W, {}))).toEqual([{ plays: 5, durationMs: 40_000, displays: 2, contents: 2 }]);
	});

	it("groups by display, group, hour and local day", async () => {
		const by = async (g: "display" | "group" | "hour" | "day", tz = "UTC") =>
			(await store.rows<PlaybackResultRow>(playbackReport(W, {}, g, tz, 100))).map(r => playbackRow(r, g === "hour" || g === "day" ? g : null)).map(r => [r.key, r.name, r.plays, r.durationMs]);
		expect(await by("display")).toEqual([
			["d1", "Lobby 🎬", 3, 30_000],
			["d2", "Bar", 2, 10_000]
		]);
		// d2 is in no group: its plays are in no group's row.
		expect(await by("group")).toEqual([["g1", "Ground floor", 3, 30_000]]);
		expect(await by("hour")).toEqual([
			[iso(T0), iso(T0), 3, 25_000],
			[iso(T0 + HOUR), iso(T0 + HOUR), 2, 15_000]
		]);
		expect(await by("day")).toEqual([["2026-03-28", "2026-03-28", 5, 40_000]]);
		// 22:00 UTC is 23:00 in Berlin; 23:05 UTC is already the 29th there.
		expect(await by("day", "Europe/Berlin")).toEqual([
			["2026-03-28", "2026-03-28", 3, 25_000],
			["2026-03-29", "2026-03-29", 2, 15_000]
		]);
	});

	it("filters by display, content and group within the tenant", async () => {
		const plays = async (f: Parameters<typeof playbackTotals>[1], w: Window = W) => (await store.rows<{ plays: number }>(playbackTotals(w, f)))[0].plays;
		expect(await plays({ displayIds: ["d2"] })).toBe(2);
		expect(await plays({ contentId: "c2" })).toBe(2);
		expect(await plays({ groupId: "g1" })).toBe(3);
		// t2's display and t2's group name reach nothing of t1, and t1's content id in t2 is t2's own.
		expect(await plays({ displayIds: ["x1"] })).toBe(0);
		expect(await plays({ contentId: "c1" }, { ...W, tenantId: "t2" })).toBe(100);
	});

	it("keeps hostile filter values as values: no other tenant's rows, no error", async () => {
		const hostile = ["t1' OR '1'='1", "t1\\' OR 1=1 --", "' UNION SELECT * FROM playback_events --", "t1\u0000", "%", "*"];
		for (const value of hostile) {
			expect((await store.rows<{ plays: number }>(playbackTotals({ ...W, tenantId: value }, {})))[0].plays).toBe(0);
			expect((await store.rows<{ plays: number }>(playbackTotals(W, { contentId: value, displayIds: [value], groupId: value })))[0].plays).toBe(0);
		}
	});

	it("takes a display filter of 10 000 ids (a big group's members: beyond ClickHouse's default query size)", async () => {
		const ids = Array.from({ length: 10_000 }, (_, i) => `0195d6f8-0b6a-7c3e-8a1b-${String(i).padStart(12, "0")}`);
		ids.push("d1");
		const rows = (await store.rows<UptimeResultRow>(uptimeReport(W, T0 + 2 * HOUR, ids, 100))).map(uptimeRow);
		expect(rows.map(r => r.displayId)).toEqual(["d1"]);
		expect((await store.rows<{ plays: number }>(playbackTotals(W, { displayIds: ids })))[0].plays).toBe(3);
	});

	it("names a query ClickHouse stopped for its cost (memory, time) as too heavy, not as a bug", async () => {
		// 18.16 applies a memory limit given in the query's SETTINGS clause only from the URL: chDB shows the memory case.
		if (backend === "chDB") await expect(store.rows(sql`SELECT groupArray(number) AS a FROM numbers(3000000) SETTINGS max_memory_usage = 1000000`)).rejects.toBeInstanceOf(QueryTooHeavy);
		await expect(store.rows(sql`SELECT count() AS n FROM numbers(100000000000) SETTINGS max_execution_time = 1, timeout_overflow_mode = 'throw'`)).rejects.toBeInstanceOf(QueryTooHeavy);
		await expect(store.rows(sql`SELECT no_such_column FROM playback_events`)).rejects.not.toBeInstanceOf(QueryTooHeavy);
	});

	it("computes uptime from transitions: unknown before the first, deleted counts as neither", async () => {
		const rows = (await store.rows<UptimeResultRow>(uptimeReport(W, T0 + 2 * HOUR, undefined, 100))).map(uptimeRow);
		expect(rows).toEqual([
			{ displayId: "d1", name: "Lobby 🎬", uptimePct: 75, onlineSec: 5400, offlineSec: 1800, outages: [{ from: iso(T0 + HOUR), to: iso(T0 + 90 * MIN) }] },
			{ displayId: "d2", name: "Bar", uptimePct: 100, onlineSec: 3600, offlineSec: 0, outages: [] }
		]);
		// From 22:30 the state is known (online since 22:00).
		const later = (await store.rows<UptimeResultRow>(uptimeReport({ ...W, from: T0 + 30 * MIN }, T0 + 2 * HOUR, ["d1"], 100))).map(uptimeRow);
		expect(later).toEqual([{ displayId: "d1", name: "Lobby 🎬", uptimePct: 66.67, onlineSec: 3600, offlineSec: 1800, outages: [{ from: iso(T0 + HOUR), to: iso(T0 + 90 * MIN) }] }]);
		// Inside the outage.
		const dark = (await store.rows<UptimeResultRow>(uptimeReport({ ...W, from: T0 + 70 * MIN }, T0 + 80 * MIN, ["d1"], 100))).map(uptimeRow);
		expect(dark).toEqual([{ displayId: "d1", name: "Lobby", uptimePct: 0, onlineSec: 0, offlineSec: 600, outages: [{ from: iso(T0 + 70 * MIN), to: iso(T0 + 80 * MIN) }] }]);
	});

	it("averages health per 5 minutes, a repeated sample once", async () => {
		const points = await store.rows(healthSeries(W, ["d1"], "5m", "UTC", 100));
		expect(points).toEqual([
			{ bucket: T0, cpu: 20, memory: 50, disk: 70, temperature: 40, displays: 1 },
			{ bucket: T0 + 5 * MIN, cpu: 50, memory: 50, disk: 70, temperature: 44, displays: 1 }
		]);
		expect(await store.rows(healthSeries(W, ["nobody"], "1h", "UTC", 100))).toEqual([]);
	});

	it("pages the audit log newest first, a redelivered record once, with action prefixes and actors", async () => {
		const page = async (f: Parameters<typeof auditPage>[1], offset = 0, limit = 10) => (await store.rows<AuditResultRow>(auditPage(W, f, offset, limit))).map(r => auditEntry(r).id);
		const total = async (f: Parameters<typeof auditCount>[1]) => (await store.rows<{ total: number }>(auditCount(W, f)))[0].total;
		expect(await page({})).toEqual(["a3", "a2", "a1"]);
		expect(await total({})).toBe(3);
		expect(await page({}, 1, 1)).toEqual(["a2"]);
		expect(await page({ actionPrefix: "display." })).toEqual(["a2", "a1"]);
		expect(await page({ action: "display.paired" })).toEqual(["a1"]);
		expect(await page({ actorId: "u1" })).toEqual(["a3", "a1"]);
		expect(await page({ actionPrefix: "display.'" })).toEqual([]);
		const [entry] = (await store.rows<AuditResultRow>(auditPage(W, { action: "display.deleted" }, 0, 1))).map(auditEntry);
		expect(entry).toEqual({ id: "a2", ts: iso(T0 + MIN), actor: { kind: "user", id: "u2" }, action: "display.deleted", target: "x", ip: "127.0.0.1", requestId: "r-a2", data: { n: "a2" } });
	});

	it("exports every event once in order, chunk after chunk", async () => {
		const seen: string[] = [];
		let cursor = null;
		for (;;) {
			const chunk: ExportResultRow[] = await store.rows<ExportResultRow>(playbackExportChunk(W, {}, cursor, 2));
			seen.push(...chunk.map(r => `${r.display_id}/${r.event_id}@${Number(r.started_at) - T0}`));
			if (chunk.length < 2) break;
			const last = chunk[chunk.length - 1];
			cursor = { startedAt: Number(last.started_at), displayId: last.display_id, eventId: last.event_id };
		}
		expect(seen).toEqual(["d1/e1@0", "d2/e1@300000", "d1/e2@1800000", "d2/e4@3900000", "d1/e3@5400000"]);
	});

	it("round-trips thousands of hostile strings through the escaping helper", async () => {
		const hostile = fc.oneof(
			fc.string({ unit: "binary" }),
			fc.string({ unit: fc.constantFrom("'", "\\", "\0", "\n", "\r", "\t", '"', "`", ";", "-", "*", "/", "{", "}", "?", "$", "x") }),
			fc.constantFrom("\\'", "'; DROP TABLE playback_events; --", "\\\\'", "\uD800", "a\uDC00b", "😀", "日本語", "\u202E")
		);
		// Many strings per statement: thousands of cases in a few round trips.
		const batch = fc.array(hostile, { minLength: 50, maxLength: 50 });
		await fc.assert(
			fc.asyncProperty(batch, async strings => {
				const columns = strings.map((s, i) => `${quote(s)} AS c${i}`).join(", ");
				const [row] = await store.rows<Record<string, string>>(new Sql(`SELECT ${columns}`));
				strings.forEach((s, i) => expect(row[`c${i}`]).toBe(wellFormed(s)));
			}),
			{ numRuns: 60 }
		);
	});
});
