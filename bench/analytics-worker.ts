/**
 * The processes of the analytics benchmark (bench/analytics.ts) other than the platform and the
 * load: each runs as `tsx bench/analytics-worker.ts '<json task>'`, writes progress to stderr
 * and its result as one JSON line on stdout.
 *
 *  - `bare-http`: the ingestion baseline, a bare node:http server that reads a body, parses the
 *    JSON, checks it holds events and answers 202 — nothing stored. Prints `{"port"}`, serves
 *    until SIGTERM.
 *  - `insert`: the store's own insert rate: playback rows shaped as the service writes them,
 *    `batchRows` at a time, one insert after another (as the batcher writes), straight into chDB
 *    (`chdb:DIR`, own process) or a ClickHouse server (its URL).
 *  - `seed`: loads `rows` plays of one tenant (and its displays' online/offline transitions)
 *    with one INSERT … SELECT FROM numbers(), then merges each month partition (OPTIMIZE …
 *    FINAL) so every run starts from the same settled parts.
 *  - `time`: in a fresh process (as the platform opens the data), times the very SQL the report
 *    routes run, straight on the store: the reports' baseline; and, for scale, the same
 *    groupings without the per-event dedupe.
 * chDB serves one data directory per process: run `seed` and `time` only while no platform
 * process has the directory open.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { migrate } from "../services/analytics/migrations";
import { playbackExportChunk, playbackReport, playbackTotals, uptimeReport, type ExportCursor, type PlaybackGrouping, type Window } from "../services/analytics/queries";
import { exportLine, type ExportResultRow, type PlaybackEventRow } from "../services/analytics/records";
import { Sql, sql } from "../services/analytics/sql";
import { ChdbStore, ClickHouseHttpStore, loadChdb, type AnalyticsStore } from "../services/analytics/store";
import { workerMain } from "./figures";

export interface BareHttpTask {
	cmd: "bare-http";
}

export interface InsertTask {
	cmd: "insert";
	/** `chdb:/dir` or a ClickHouse URL naming its database. */
	target: string;
	rows: number;
	batchRows: number;
}

export interface InsertResult {
	rows: number;
	seconds: number;
	/** Milliseconds of each insert. */
	latencies: number[];
}

export interface SeedTask {
	cmd: "seed";
	target: string;
	tenantId: string;
	rows: number;
	displays: number;
	contents: number;
	groups: number;
	days: number;
	/** Plays end here (epoch ms); they spread over the `days` before it. */
	endMs: number;
}

export interface SeedResult {
	insertPlaybackSec: number;
	insertStatusSec: number;
	optimizeSec: number;
	playbackRows: number;
	statusRows: number;
	parts: number;
	bytesOnDisk: number;
	uncompressedBytes: number;
}

/** Times the reports' SQL straight on the store, in a fresh process (as the platform opens it). */
export interface TimeTask {
	cmd: "time";
	target: string;
	tenantId: string;
	/** The report window and the exported day (epoch ms). */
	window: { from: number; to: number };
	exportDay: { from: number; to: number };
	/** Times each query this many times (after one untimed run). */
	samples: number;
}

export interface TimedCase {
	latencies: number[];
	/** Why the query failed (then `latencies` holds the runs before). */
	error?: string;
	/** Export only: bytes and rows of one run. */
	bytes?: number;
	rows?: number;
}

export interface TimeResult {
	/** `playback:<by>` (the route's SQL: report and totals together), `plain:<by>` (the same without the per-event dedupe), `uptime`, `export`. */
	cases: Record<string, TimedCase>;
}

export type WorkerTask = BareHttpTask | InsertTask | SeedTask | TimeTask;

const REPORT_GROUPINGS: PlaybackGrouping[] = ["content", "display", "group", "hour", "day"];
const EXPORT_CHUNK_ROWS = 10_000;

function log(line: string): void {
	process.stderr.write(`  [worker] ${line}\n`);
}

async function openStore(target: string): Promise<AnalyticsStore> {
	if (target.startsWith("chdb:")) {
		const { module, reason } = loadChdb();
		if (!module) throw new Error(reason ?? "chdb is not installed");
		return ChdbStore.open(module, target.slice("chdb:".length));
	}
	const store = new ClickHouseHttpStore({ url: target, timeoutMs: 600_000 });
	await store.ensureDatabase();
	return store;
}

/** An id in the platform's format (UUID v7 layout) for number `n` of a kind, as SQL. */
function idSql(kind: number, n: Sql): Sql {
	const prefix = `0190${kind.toString(16).padStart(4, "0")}-0000-7000-8000-`;
	return new Sql(`concat('${prefix}', lower(substring(hex(toUInt64(${n.text}) + 281474976710656), 3, 12)))`);
}

/** The same id in JavaScript (the bare insert builds its rows here). */
function idOf(kind: number, n: number): string {
	return `0190${kind.toString(16).padStart(4, "0")}-0000-7000-8000-${n.toString(16).padStart(12, "0")}`;
}

export const ID_KIND = { display: 1, content: 2, group: 3 } as const;

function bareHttp(): void {
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (chunk: Buffer) => chunks.push(chunk));
		req.on("end", () => {
			let answer: string;
			let status = 202;
			try {
				const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { events?: unknown[] };
				if (!Array.isArray(body.events)) throw new Error("no events");
				answer = JSON.stringify({ accepted: body.events.length, duplicates: 0 });
			} catch {
				status = 422;
				answer = JSON.stringify({ error: "bad body" });
			}
			res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(answer) });
			res.end(answer);
		});
	});
	server.keepAliveTimeout = 60_000;
	server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));
	process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

async function bareInsert(task: InsertTask): Promise<InsertResult> {
	const store = await openStore(task.target);
	try {
		await migrate(store);
		const now = Date.now();
		const latencies: number[] = [];
		const started = performance.now();
		for (let done = 0; done < task.rows; ) {
			const n = Math.min(task.batchRows, task.rows - done);
			const rows: PlaybackEventRow[] = [];
			for (let i = 0; i < n; i++) {
				const seq = done + i;
				const d = seq % 20;
				rows.push({
					tenant_id: idOf(9, 1),
					display_id: idOf(ID_KIND.display, d),
					event_id: `bare-${now}-${seq}`,
					display_name: `Bench ${d}`,
					content_id: idOf(ID_KIND.content, 1),
					content_name: "Bench page",
					playlist_id: "",
					schedule_id: "",
					group_ids: [],
					group_names: [],
					started_at: now - 3_600_000 + (seq % 3_600_000),
					duration_ms: 10_000,
					completed: seq % 10 ? 1 : 0,
					received_at: now
				});
			}
			const t = performance.now();
			await store.insert("playback_events", rows);
			latencies.push(performance.now() - t);
			done += n;
		}
		return { rows: task.rows, seconds: (performance.now() - started) / 1000, latencies };
	} finally {
		await store.close();
	}
}

/** One untimed run, then `samples` timed ones; a failure ends the case (and is reported), not the task. */
async function timed(samples: number, run: () => Promise<unknown>): Promise<TimedCase> {
	const latencies: number[] = [];
	try {
		await run();
		for (let i = 0; i < samples; i++) {
			const t = performance.now();
			await run();
			latencies.push(performance.now() - t);
		}
		return { latencies };
	} catch (err) {
		const error = (err as Error).message.split("\n")[0].slice(0, 300);
		log(`failed: ${error}`);
		return { latencies, error };
	}
}

async function seed(task: SeedTask): Promise<SeedResult> {
	const store = await openStore(task.target);
	try {
		await migrate(store);
		const span = task.days * 86_400_000;
		const start = task.endMs - span;
		const d = new Sql(`(number % ${task.displays})`);
		const g1 = new Sql(`(${d.text} % ${task.groups})`);
		// Every fourth display is in a second group too.
		const g2 = new Sql(`((intDiv(${d.text}, 4) + 5) % ${task.groups})`);
		const twoGroups = new Sql(`(${d.text} % 4 = 0 AND ${g2.text} != ${g1.text})`);
		// Content popularity is skewed: a few items play far more often than the long tail.
		const c = new Sql(`(intHash32(number) % (1 + intHash32(number + 7) % ${task.contents}))`);
		const startedAt = new Sql(`(toUInt64(${start}) + intHash64(number) % ${span})`);
		const duration = new Sql(`(5000 + intHash32(number + 3) % 55000)`);

		let t = performance.now();
		log(`inserting ${task.rows} plays…`);
		await store.exec(sql`INSERT INTO playback_events
			SELECT ${task.tenantId} AS tenant_id,
				${idSql(ID_KIND.display, d)} AS display_id,
				concat('ev-', toString(number)) AS event_id,
				concat('Display ', toString(${d})) AS display_name,
				${idSql(ID_KIND.content, c)} AS content_id,
				concat('Content ', toString(${c})) AS content_name,
				'' AS playlist_id, '' AS schedule_id,
				if(${twoGroups}, [${idSql(ID_KIND.group, g1)}, ${idSql(ID_KIND.group, g2)}], [${idSql(ID_KIND.group, g1)}]) AS group_ids,
				if(${twoGroups}, [concat('Group ', toString(${g1})), concat('Group ', toString(${g2}))], [concat('Group ', toString(${g1}))]) AS group_names,
				${startedAt} AS started_at,
				toUInt32(${duration}) AS duration_ms,
				toUInt8(intHash32(number + 11) % 10 < 9) AS completed,
				${startedAt} + ${duration} + intHash32(number + 13) % 600000 AS received_at
			FROM numbers(${task.rows})`);
		const insertPlaybackSec = (performance.now() - t) / 1000;

		// Each display goes dark once a night (at 01:00–02:00 UTC) and comes back at 05:00–06:00.
		const statusRows = task.displays * task.days * 2;
		t = performance.now();
		log(`inserting ${statusRows} online/offline transitions…`);
		const k = new Sql(`intDiv(number, ${task.displays})`);
		const day = new Sql(`intDiv(${k.text}, 2)`);
		const online = new Sql(`(${k.text} % 2)`);
		await store.exec(sql`INSERT INTO display_status
			SELECT ${task.tenantId} AS tenant_id,
				${idSql(ID_KIND.display, d)} AS display_id,
				concat('Display ', toString(${d})) AS display_name,
				toUInt64(${start}) + ${day} * 86400000 + if(${online} = 1, 18000000, 3600000) + intHash32(number) % 3600000 AS ts,
				toUInt8(${online}) AS online,
				concat('st-', toString(number)) AS event_id
			FROM numbers(${statusRows})`);
		const insertStatusSec = (performance.now() - t) / 1000;

		// Merge each month partition into one part (OPTIMIZE … FINAL; ClickHouse 18.16 may
		// return before merging while background merges run, so ask again until it is done).
		t = performance.now();
		log("merging the month partitions (OPTIMIZE … FINAL)…");
		for (let round = 0; round < 60; round++) {
			const partitions = await store.rows<{ table: string; partition: string; parts: number }>(
				sql`SELECT table, partition, count() AS parts FROM system.parts WHERE active AND database = currentDatabase() AND table IN ${["playback_events", "display_status"]} GROUP BY table, partition`
			);
			const unmerged = partitions.filter(p => Number(p.parts) > 1);
			if (!unmerged.length) break;
			const [{ merges }] = await store.rows<{ merges: number }>(sql`SELECT count() AS merges FROM system.merges WHERE database = currentDatabase()`);
			if (Number(merges) > 0) {
				await new Promise(resolve => setTimeout(resolve, 1000));
				continue;
			}
			for (const p of unmerged) await store.exec(new Sql(`OPTIMIZE TABLE ${p.table === "playback_events" ? "playback_events" : "display_status"} PARTITION ${Number(p.partition)} FINAL`));
		}
		const optimizeSec = (performance.now() - t) / 1000;

		const [stats] = await store.rows<{ parts: number; bytes: number; uncompressed: number }>(
			sql`SELECT count() AS parts, sum(bytes_on_disk) AS bytes, sum(data_uncompressed_bytes) AS uncompressed FROM system.parts WHERE active AND database = currentDatabase() AND table = 'playback_events'`
		);
		const [counts] = await store.rows<{ plays: number }>(sql`SELECT count() AS plays FROM playback_events WHERE tenant_id = ${task.tenantId}`);
		const [statusCount] = await store.rows<{ n: number }>(sql`SELECT count() AS n FROM display_status WHERE tenant_id = ${task.tenantId}`);

		return {
			insertPlaybackSec,
			insertStatusSec,
			optimizeSec,
			playbackRows: Number(counts.plays),
			statusRows: Number(statusCount.n),
			parts: Number(stats.parts),
			bytesOnDisk: Number(stats.bytes),
			uncompressedBytes: Number(stats.uncompressed)
		};
	} finally {
		await store.close();
	}
}

/**
 * The plain form of a report, for scale: the same grouping and figures straight over the rows,
 * without the inner GROUP BY display_id, event_id that makes a replayed event count once.
 */
function plainReport(w: Window, by: PlaybackGrouping): Sql[] {
	const where = sql`tenant_id = ${w.tenantId} AND started_at >= ${w.from} AND started_at < ${w.to}`;
	const time = new Sql("toDateTime(intDiv(started_at, 1000), 'UTC')");
	const key: Record<PlaybackGrouping, Sql> = {
		content: sql`content_id`,
		display: sql`display_id`,
		group: sql`group_id`,
		hour: sql`toString(toUInt64(toStartOfHour(${time})) * 1000)`,
		day: sql`toString(toDate(${time}, 'UTC'))`
	};
	const name: Record<PlaybackGrouping, Sql> = { content: sql`argMax(content_name, started_at)`, display: sql`argMax(display_name, started_at)`, group: sql`argMax(group_name, started_at)`, hour: sql`''`, day: sql`''` };
	const arrayJoin = by === "group" ? sql`ARRAY JOIN group_ids AS group_id, group_names AS group_name` : sql``;
	return [
		sql`SELECT ${key[by]} AS key, ${name[by]} AS name, count() AS plays, sum(duration_ms) AS durationMs,
				toUInt64(round(avg(duration_ms))) AS avgDurationMs, round(avg(completed), 4) AS completionRate
			FROM playback_events ${arrayJoin} WHERE ${where} GROUP BY key ORDER BY plays DESC, key LIMIT 10000`,
		sql`SELECT count() AS plays, sum(duration_ms) AS durationMs, uniqExact(display_id) AS displays, uniqExact(content_id) AS contents FROM playback_events WHERE ${where}`
	];
}

async function timeReports(task: TimeTask): Promise<TimeResult> {
	const store = await openStore(task.target);
	try {
		// ---- the report queries, straight on the store ----
		const w: Window = { tenantId: task.tenantId, from: task.window.from, to: task.window.to };
		const cases: Record<string, TimedCase> = {};
		for (const by of REPORT_GROUPINGS) {
			log(`timing the ${by} report (${task.samples} runs)…`);
			// The route runs the report and its totals together.
			cases[`playback:${by}`] = await timed(task.samples, () => Promise.all([store.rows(playbackReport(w, {}, by, "UTC", 10_000)), store.rows(playbackTotals(w, {}))]));
			cases[`plain:${by}`] = await timed(task.samples, () => Promise.all(plainReport(w, by).map(q => store.rows(q))));
		}
		log(`timing the uptime report…`);
		const end = Math.min(task.window.to, Date.now());
		cases.uptime = await timed(task.samples, () => store.rows(uptimeReport(w, end, undefined, 10_000)));
		log(`timing the CSV export of one day…`);
		const dayWindow: Window = { tenantId: task.tenantId, from: task.exportDay.from, to: task.exportDay.to };
		let bytes = 0;
		let rows = 0;
		const exportSamples = Math.max(1, Math.ceil(task.samples / 4));
		cases.export = await timed(exportSamples, async () => {
				bytes = 0;
				rows = 0;
				let cursor: ExportCursor | null = null;
				for (;;) {
					const chunk: ExportResultRow[] = await store.rows<ExportResultRow>(playbackExportChunk(dayWindow, {}, cursor, EXPORT_CHUNK_ROWS));
					bytes += Buffer.byteLength(chunk.map(exportLine).join(""));
					rows += chunk.length;
					if (chunk.length < EXPORT_CHUNK_ROWS) break;
					const last = chunk[chunk.length - 1];
					cursor = { startedAt: Number(last.started_at), displayId: last.display_id, eventId: last.event_id };
				}
			});
		cases.export.bytes = bytes;
		cases.export.rows = rows;
		return { cases };
	} finally {
		await store.close();
	}
}

async function main(): Promise<void> {
	const task = JSON.parse(process.argv[2] ?? "{}") as WorkerTask;
	switch (task.cmd) {
		case "bare-http":
			return bareHttp();
		case "insert":
			process.stdout.write(`${JSON.stringify(await bareInsert(task))}\n`);
			return;
		case "seed":
			process.stdout.write(`${JSON.stringify(await seed(task))}\n`);
			return;
		case "time":
			process.stdout.write(`${JSON.stringify(await timeReports(task))}\n`);
			return;
		default:
			throw new Error(`unknown task ${JSON.stringify(task)}`);
	}
}

if (require.main === module) workerMain(main);
