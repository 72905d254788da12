/**
 * Analytics at volume, on the platform as users start it (npm start's command (`tsx [flags] server.ts`) in a process of its
 * own, embedded: chDB in-process under DATA_DIR/analytics; or against a ClickHouse server),
 * driven over HTTP from this process.
 *
 *  - Ingestion: a fresh tenant with `displays` paired screens posts `events` plays in batches
 *    of 500 (unique event ids) from `concurrency` connections to POST /device/playback.
 *    Accepting: events/s of 202 answers and the latency of each POST, against a bare
 *    node:http server (own process) that parses the same bodies and answers 202. Queryable:
 *    events/s from the first POST until GET /analytics/playback counts every accepted play
 *    (polled every 200 ms once the last POST answered), against the store's own insert rate
 *    (rows shaped as the service writes them, 10 000 at a time, from a process of its own).
 *  - Reports over `rows` plays: the platform is started once to register the owner and
 *    stopped; a worker process loads the plays of that tenant (2 000 displays, 500 content
 *    items, 10 groups, 90 days; and each display's nightly offline/online transitions) straight
 *    into the store with one INSERT … SELECT and merges them; a fresh worker process times the
 *    very SQL of each report on the store alone (the baseline; and, for scale, the groupings
 *    without the per-event dedupe); then the platform starts again on the same data and the
 *    same reports are timed over HTTP, one at a time: p50/p95 of GET /analytics/playback by
 *    content, display, group, hour and day over the 90 days, GET /analytics/uptime, and the CSV
 *    export of one day (bytes/s). A failing case is reported (with the platform's last output)
 *    and the others still run.
 *
 * Options (npm run bench -- analytics [--quick] [--name=value]): see ANALYTICS_OPTIONS.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { newId } from "../shared/ids";
import { bearer, login, newAccount, pairDisplay, register } from "../test/helpers/accounts";
import { request, tempDir } from "../test/helpers/platform";
import { killGroup, ROOT } from "../test/helpers/process";
import { isUnavailable, startServer } from "../test/helpers/servers";
import { quantile, report, type Figure } from "./figures";
import { CLOCK_TICKS, readProc, sampleTree, startPlatformProcess, stopPlatformProcess, TSX, type RunningPlatform } from "./platform-process";
import type { InsertResult, SeedResult, SeedTask, TimeResult, WorkerTask } from "./analytics-worker";

export interface AnalyticsOptions {
	quick: boolean;
	/** Plays posted by the ingestion run. */
	events: number;
	/** POSTs in flight at once. */
	concurrency: number;
	/** Paired displays the POSTs take turns with. */
	displays: number;
	/** Plays loaded for the reports. */
	rows: number;
	/** Timed runs of each report (after one untimed run). */
	samples: number;
	/** Also against a ClickHouse server: its URL, or "start" for a private one (scripts/clickhouse-local.sh). */
	clickhouse: string | null;
	/** Skip the embedded (chDB) runs, e.g. to measure the server only. */
	skipChdb: boolean;
}

/** The options, their defaults (full, quick) and what they mean, for the usage text. */
export const ANALYTICS_OPTIONS = {
	events: { full: 1_000_000, quick: 50_000, help: "plays posted by the ingestion run" },
	concurrency: { full: 8, quick: 8, help: "POSTs of 500 plays in flight at once" },
	displays: { full: 20, quick: 4, help: "paired displays the POSTs take turns with" },
	rows: { full: 10_000_000, quick: 300_000, help: "plays loaded for the report latencies" },
	samples: { full: 5, quick: 3, help: "timed runs of each report (the export: a quarter of them)" }
} as const;

export function analyticsOptions(flags: Map<string, string>, quick: boolean): AnalyticsOptions {
	const num = (name: keyof typeof ANALYTICS_OPTIONS): number => {
		const raw = flags.get(name);
		const fallback = quick ? ANALYTICS_OPTIONS[name].quick : ANALYTICS_OPTIONS[name].full;
		if (raw === undefined) return fallback;
		const n = Number(raw.replace(/_/g, ""));
		if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
		return n;
	};
	const ch = flags.get("clickhouse") ?? (process.env.CLICKHOUSE_URL?.trim() || null);
	return {
		quick,
		events: num("events"),
		concurrency: num("concurrency"),
		displays: num("displays"),
		rows: num("rows"),
		samples: num("samples"),
		clickhouse: ch === "" || ch === "true" ? "start" : ch,
		skipChdb: flags.has("no-chdb")
	};
}

const BATCH = 500;
const WORKER = path.join(__dirname, "analytics-worker.ts");
const REPORT_SCALE = { displays: 2000, contents: 500, groups: 10, days: 90 };
const DAY_MS = 86_400_000;

// ---- processes --------------------------------------------------------------------------------

interface Backend {
	/** What the tables call it. */
	label: string;
	/** CLICKHOUSE_URL for the platform ("" = embedded chDB). */
	clickhouseUrl: string;
	/** Where a worker process writes: `chdb:DIR` or the server URL with a database of its own. */
	workerTarget(dataDir: string, database: string): string;
	/** The local ClickHouse server's pid (its CPU and memory are reported next to the platform's), if known. */
	serverPid: number | null;
}

const CHDB: Backend = { label: "chDB in-process", clickhouseUrl: "", workerTarget: dataDir => `chdb:${path.join(dataDir, "analytics")}`, serverPid: null };

function serverBackend(url: string, version: string): Backend {
	const base = url.replace(/\/+$/, "");
	return { label: `ClickHouse ${version} server`, clickhouseUrl: base, workerTarget: (_dir, database) => `${base}/${database}`, serverPid: clickhousePid(base) };
}

/** Runs a worker task to completion; answers its JSON result and what it used (stderr passes through). */
function runWorker<T>(task: WorkerTask, server: number | null = null): Promise<{ result: T; cores: number; othersCores: number; peakMb: number; serverCores: number }> {
	return new Promise((resolve, reject) => {
		const child = spawn(TSX, [WORKER, JSON.stringify(task)], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
		const mon = monitor(server ? [child.pid as number, server] : [child.pid as number]);
		let out = "";
		child.stdout.on("data", chunk => (out += chunk));
		child.on("error", reject);
		child.on("exit", code => {
			const used = mon.read();
			mon.stop();
			const last = out.trim().split("\n").pop() ?? "";
			if (code !== 0) reject(new Error(`worker ${task.cmd} exited with ${code}: ${out.slice(-2000)}`));
			else resolve({ result: JSON.parse(last) as T, cores: used.cpuSec / used.wallSec, othersCores: used.othersCores, peakMb: used.peakMb, serverCores: (used.each[1]?.cpuSec ?? 0) / used.wallSec });
		});
	});
}

/** " (other processes on the machine: 0.4 cores)" when the machine was not otherwise idle. */
function neighbours(othersCores: number): string {
	return othersCores >= 0.1 ? `; other processes on the machine used ${othersCores.toFixed(2)} cores meanwhile` : "";
}

/** Drops the databases a run made on a ClickHouse server (a server given by URL outlives the run). */
async function dropDatabases(backend: Backend, names: string[]): Promise<void> {
	if (!backend.clickhouseUrl) return;
	for (const name of names) {
		await fetch(`${backend.clickhouseUrl}/`, { method: "POST", body: `DROP DATABASE IF EXISTS ${name}` }).then(
			res => res.text(),
			() => undefined
		);
	}
}

/** The bare baseline server in a process of its own. */
function startBareHttp(): Promise<{ url: string; stop(): void }> {
	return new Promise((resolve, reject) => {
		const child = spawn(TSX, [WORKER, JSON.stringify({ cmd: "bare-http" })], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
		let out = "";
		child.on("error", reject);
		child.on("exit", code => reject(new Error(`bare server exited with ${code}`)));
		child.stdout.on("data", chunk => {
			out += chunk;
			const line = out.split("\n")[0];
			if (out.includes("\n")) {
				const { port } = JSON.parse(line) as { port: number };
				resolve({ url: `http://127.0.0.1:${port}`, stop: () => child.kill("SIGTERM") });
			}
		});
	});
}


// ---- the machine's CPU and a process tree's over time (Linux /proc) ---------------------------

/** CPU seconds the whole machine has been busy (every core, every process; /proc/stat). */
function machineBusySec(): number {
	const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
	// user nice system idle iowait irq softirq steal
	return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] ?? 0)) / CLOCK_TICKS;
}

/**
 * Samples process trees every 250 ms from `start()`: their peak resident memory and the CPU
 * they used, each and together; and what the rest of the machine used meanwhile (other than
 * these trees and this process), so a busy neighbour shows in the figures.
 */
function monitor(roots: number[]) {
	let peaks = roots.map(() => 0);
	let bases = roots.map(() => 0);
	let lasts = roots.map(() => 0);
	let rss = roots.map(() => 0);
	let baseMachine = 0;
	let baseOwn = process.cpuUsage();
	let startedAt = 0;
	const sample = () =>
		roots.forEach((root, i) => {
			const now = sampleTree(root);
			rss[i] = now.rssMb;
			peaks[i] = Math.max(peaks[i], now.rssMb);
			// A tree that has exited reads as 0: keep the last CPU seen.
			lasts[i] = Math.max(lasts[i], now.cpuSec);
		});
	const tick = setInterval(sample, 250);
	tick.unref();
	const api = {
		start() {
			const now = roots.map(sampleTree);
			peaks = now.map(n => n.rssMb);
			rss = now.map(n => n.rssMb);
			bases = now.map(n => n.cpuSec);
			lasts = [...bases];
			baseMachine = machineBusySec();
			baseOwn = process.cpuUsage();
			startedAt = performance.now();
		},
		read() {
			sample();
			const wallSec = (performance.now() - startedAt) / 1000;
			const each = roots.map((_, i) => ({ cpuSec: lasts[i] - bases[i], peakMb: peaks[i], rssMb: rss[i] }));
			const cpuSec = each.reduce((sum, e) => sum + e.cpuSec, 0);
			const own = process.cpuUsage(baseOwn);
			const ownSec = (own.user + own.system) / 1e6;
			const othersCores = Math.max(0, machineBusySec() - baseMachine - cpuSec - ownSec) / wallSec;
			return { rssMb: each[0].rssMb, peakMb: each[0].peakMb, cpuSec: each[0].cpuSec, each, ownSec, wallSec, othersCores };
		},
		stop: () => clearInterval(tick)
	};
	api.start();
	return api;
}

/** The pid of a local clickhouse-server listening on `url`'s port (scripts/clickhouse-local.sh writes its config), else null. */
function clickhousePid(url: string): number | null {
	const port = new URL(url).port;
	for (const entry of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		const cmdline = readProc(Number(entry), "cmdline")?.split("\0") ?? [];
		if (!cmdline.some(arg => /clickhouse/.test(arg))) continue;
		const config = cmdline.find(arg => arg.startsWith("--config-file="))?.slice("--config-file=".length);
		if (config && fs.existsSync(config) && fs.readFileSync(config, "utf8").includes(`<http_port>${port}</http_port>`)) return Number(entry);
	}
	return null;
}

// ---- HTTP -----------------------------------------------------------------------------------

interface Answer {
	status: number;
	body: Buffer;
	ms: number;
}

function send(agent: http.Agent, url: string, method: "GET" | "POST", headers: Record<string, string>, body?: string): Promise<Answer> {
	return new Promise((resolve, reject) => {
		const started = performance.now();
		const req = http.request(url, { method, agent, headers: body === undefined ? headers : { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)), ...headers } }, res => {
			const chunks: Buffer[] = [];
			res.on("data", (chunk: Buffer) => chunks.push(chunk));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - started }));
			res.on("error", reject);
		});
		req.on("error", err => reject(new Error(`${method} ${new URL(url).pathname}: ${err.message} after ${((performance.now() - started) / 1000).toFixed(1)} s`, { cause: err })));
		req.end(body);
	});
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
const fmt = (n: number) => Math.round(n).toLocaleString("en-US").replace(/,/g, " ");
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** An owner whose access token is renewed (signing in again) before it expires. */
function ownerSession(p: RunningPlatform, session: { accessToken: string; expiresIn: number; user: { email: string }; password: string }) {
	let token = session.accessToken;
	let until = Date.now() + (session.expiresIn * 1000) / 2;
	return async (): Promise<Record<string, string>> => {
		if (Date.now() > until) {
			const fresh = await login(p.accounts, session.user.email, session.password);
			token = fresh.accessToken;
			until = Date.now() + (fresh.expiresIn * 1000) / 2;
		}
		return bearer(token);
	};
}

// ---- 5. ingestion ---------------------------------------------------------------------------

interface LoadResult {
	requests: number;
	acceptedEvents: number;
	/** Milliseconds from the first POST sent to the last answer. */
	ms: number;
	latencies: number[];
	statuses: Map<number, number>;
	firstError: string | null;
	startedAt: number;
}

/** `events` plays in POSTs of 500 from `concurrency` connections; request i speaks as display i mod n. */
async function postLoad(agent: http.Agent, url: string, tokens: string[], contentId: string, events: number, concurrency: number, tag: string): Promise<LoadResult> {
	const requests = Math.ceil(events / BATCH);
	const base = Date.now();
	const bodyOf = (r: number): string => {
		const n = Math.min(BATCH, events - r * BATCH);
		const list = new Array(n);
		for (let j = 0; j < n; j++) {
			const seq = r * BATCH + j;
			// Plays of the last hour, a second apart per display.
			list[j] = { eventId: `${tag}-${seq}`, contentId, startedAt: new Date(base - 3_600_000 + (seq % 3_540_000)).toISOString(), durationMs: 10_000, completed: seq % 10 !== 0 };
		}
		return JSON.stringify({ events: list });
	};
	const latencies: number[] = [];
	const statuses = new Map<number, number>();
	let firstError: string | null = null;
	let acceptedEvents = 0;
	let next = 0;
	const startedAt = performance.now();
	await Promise.all(
		Array.from({ length: Math.min(concurrency, requests) }, async () => {
			while (next < requests) {
				const r = next++;
				const body = bodyOf(r);
				const res = await send(agent, url, "POST", bearer(tokens[r % tokens.length]), body);
				latencies.push(res.ms);
				statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
				if (res.status === 202) acceptedEvents += Math.min(BATCH, events - r * BATCH);
				else firstError ??= `${res.status}: ${res.body.toString().slice(0, 300)}`;
			}
		})
	);
	latencies.sort((a, b) => a - b);
	return { requests, acceptedEvents, ms: performance.now() - startedAt, latencies, statuses, firstError, startedAt };
}

function loadFigure(name: string, r: LoadResult): Figure {
	return { name, opsPerSec: r.acceptedEvents / (r.ms / 1000), p50Ms: quantile(r.latencies, 0.5), p99Ms: quantile(r.latencies, 0.99) };
}

function statusList(r: LoadResult): string {
	return [...r.statuses].map(([status, n]) => `${fmt(n)} × ${status}`).join(", ");
}

async function ingestOn(backend: Backend, o: AnalyticsOptions, bareHttp: Figure): Promise<void> {
	const dataDir = tempDir("marquee-bench-ingest-");
	const database = `bench_ingest_${process.pid}_${Date.now()}`;
	const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency + 4 });
	let p: RunningPlatform | null = null;
	try {
		// The store's own insert rate, in a process of its own (and a directory or database of its own).
		const bareDir = tempDir("marquee-bench-insert-");
		const bareTarget = backend.clickhouseUrl ? backend.workerTarget(bareDir, `${database}_bare`) : `chdb:${bareDir}`;
		const { result: bare, othersCores: bareOthers } = await runWorker<InsertResult>({ cmd: "insert", target: bareTarget, rows: o.events, batchRows: 10_000 }, backend.serverPid);
		fs.rmSync(bareDir, { recursive: true, force: true });
		const sortedInserts = [...bare.latencies].sort((a, b) => a - b);
		const bareInsert: Figure = { name: `bare store insert, 10 000 rows a time (own process)`, opsPerSec: bare.rows / bare.seconds, p50Ms: quantile(sortedInserts, 0.5), p99Ms: quantile(sortedInserts, 0.99) };

		const setupStarted = Date.now();
		p = await startPlatformProcess({
			DATA_DIR: dataDir,
			CLICKHOUSE_URL: backend.clickhouseUrl ? `${backend.clickhouseUrl}/${database}` : "",
			RATE_LIMIT_PER_MINUTE: "1000000",
			DEFAULT_PLAN_DISPLAYS: String(o.displays + 10)
		});
		const owner = await register(p.accounts, newAccount("analytics"));
		const tokens: string[] = [];
		for (let i = 0; i < o.displays; i++) tokens.push((await pairDisplay(p.accounts, owner, { name: `Bench ${i}` })).token);
		const content = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Bench page", url: "https://example.com/signage", durationMs: 10_000 } });
		if (content.status !== 201) throw new Error(`content/url answered ${content.status}: ${content.text}`);
		const auth = ownerSession(p, owner);
		const server = backend.serverPid;
		const mon = monitor(server ? [p.proc.child.pid as number, server] : [p.proc.child.pid as number]);
		const idleMb = mon.read().rssMb;
		console.log(
			`\nPlayback ingestion, ${backend.label} — set-up (not timed): platform started, owner registered, ${o.displays} displays paired, 1 web page in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s; ` +
				`platform resident ${idleMb.toFixed(0)} MB`
		);

		// ---- the load ----
		const tag = newId().slice(0, 18);
		const from = new Date(Date.now() - 2 * 3_600_000).toISOString();
		const to = new Date(Date.now() + 3_600_000).toISOString();
		mon.start();
		const cpuBefore = process.cpuUsage();
		const load = await postLoad(agent, p.api("/device/playback"), tokens, content.body.id, o.events, o.concurrency, tag);
		const accepting = mon.read();
		const acceptCpu = accepting.cpuSec;

		// ---- until every accepted play is counted ----
		const reportUrl = `${p.api("/analytics/playback")}?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&groupBy=day&limit=1`;
		const deadline = performance.now() + Math.max(120_000, (o.events / 5000) * 1000);
		let plays = -1;
		let polls = 0;
		let pollMs: number[] = [];
		let pollErrors = 0;
		let pollError: string | null = null;
		let queryableAt = NaN;
		while (performance.now() < deadline) {
			const res = await send(agent, reportUrl, "GET", await auth());
			polls++;
			pollMs.push(res.ms);
			if (res.status === 200) {
				plays = (JSON.parse(res.body.toString()) as { totals: { plays: number } }).totals.plays;
				if (plays >= load.acceptedEvents) {
					queryableAt = performance.now();
					break;
				}
			} else {
				pollErrors++;
				pollError ??= `${res.status}: ${res.body.toString().slice(0, 300)}`;
			}
			await sleep(200);
		}
		const used = mon.read();
		const loadCpu = process.cpuUsage(cpuBefore);
		mon.stop();
		pollMs = pollMs.sort((a, b) => a - b);

		const e2eMs = queryableAt - load.startedAt;
		const accepted = loadFigure("POST /device/playback → 202 (accepted)", load);
		const queryable: Figure = { name: "first POST → every play counted by GET /analytics/playback", opsPerSec: Number.isFinite(e2eMs) ? load.acceptedEvents / (e2eMs / 1000) : NaN, p50Ms: NaN, p99Ms: NaN };
		const what = `${fmt(o.events)} plays in POSTs of ${BATCH}, ${o.concurrency} concurrent, ${o.displays} displays`;
		report(`Playback ingestion, accepting — ${backend.label}: ${what} (ops/s = plays/s; p50/p99 of one POST)`, bareHttp, [accepted]);
		report(`Playback ingestion, queryable — ${backend.label} (ops/s = plays/s; baseline p50/p99: one insert of 10 000 rows)`, bareInsert, [queryable]);
		const goal = 100_000;
		console.log(`  answers: ${statusList(load)}${load.firstError ? `; first error ${load.firstError}` : ""}`);
		console.log(
			`  accepting: ${fmt(load.acceptedEvents)} plays in ${(load.ms / 1000).toFixed(1)} s = ${fmt(accepted.opsPerSec)} plays/s (${((accepted.opsPerSec / goal) * 100).toFixed(0)} % of the 100 000/s goal)`
		);
		if (Number.isFinite(e2eMs)) {
			console.log(
				`  queryable: every play counted ${((queryableAt - load.startedAt - load.ms) / 1000).toFixed(1)} s after the last 202, ${(e2eMs / 1000).toFixed(1)} s after the first POST = ` +
					`${fmt(queryable.opsPerSec)} plays/s (${((queryable.opsPerSec / goal) * 100).toFixed(0)} % of the goal); ${polls} polls, each p50 ${quantile(pollMs, 0.5).toFixed(0)} ms, max ${pollMs[pollMs.length - 1].toFixed(0)} ms`
			);
		} else {
			console.log(`  queryable: NOT reached — after ${polls} polls the report counted ${fmt(plays)} of ${fmt(load.acceptedEvents)} plays${pollError ? `; ${pollErrors} polls failed, first ${pollError}` : ""}`);
		}
		if (pollErrors && Number.isFinite(e2eMs)) console.log(`  ${pollErrors} polls failed meanwhile, first ${pollError}`);
		const wallSec = (Number.isFinite(e2eMs) ? e2eMs : performance.now() - load.startedAt) / 1000;
		console.log(
			`  CPU (2-core machine): the platform used ${acceptCpu.toFixed(1)} CPU-s while accepting (${(acceptCpu / (load.ms / 1000)).toFixed(2)} cores), ${used.cpuSec.toFixed(1)} CPU-s until queryable ` +
				`(${(used.cpuSec / wallSec).toFixed(2)} cores); this load process ${((loadCpu.user + loadCpu.system) / 1e6).toFixed(1)} CPU-s` +
				neighbours(used.othersCores)
		);
		if (bareOthers >= 0.1 || accepting.othersCores >= 0.1)
			console.log(`  (other processes on the machine: ${bareOthers.toFixed(2)} cores during the bare insert, ${accepting.othersCores.toFixed(2)} while accepting — the figures are noisier for it)`);
		console.log(`  memory: platform resident ${idleMb.toFixed(0)} MB before, peak ${used.peakMb.toFixed(0)} MB, ${used.rssMb.toFixed(0)} MB after`);
		if (server) {
			const ch = used.each[1];
			console.log(`  the ClickHouse server (same machine): ${ch.cpuSec.toFixed(1)} CPU-s until queryable (${(ch.cpuSec / wallSec).toFixed(2)} cores), peak ${ch.peakMb.toFixed(0)} MB resident`);
		}
		const warnings = p.proc.output().split("\n").filter(l => /\b(WARN|ERROR|FATAL)\b/.test(l));
		if (warnings.length) console.log(`  platform log: ${warnings.length} warning/error lines, e.g.\n    ${warnings.slice(0, 3).join("\n    ")}`);
	} finally {
		agent.destroy();
		if (p) await stopPlatformProcess(p);
		fs.rmSync(dataDir, { recursive: true, force: true });
		await dropDatabases(backend, [database, `${database}_bare`]);
	}
}

async function bareHttpFigure(o: AnalyticsOptions): Promise<Figure> {
	const bare = await startBareHttp();
	const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency + 4 });
	try {
		const r = await postLoad(agent, bare.url, ["bare"], newId(), o.events, o.concurrency, "bare");
		if (r.acceptedEvents !== o.events) throw new Error(`bare server: ${statusList(r)}`);
		return loadFigure("bare node:http: read, JSON.parse, 202 (own process)", r);
	} finally {
		agent.destroy();
		bare.stop();
	}
}

// ---- 6. report latency ----------------------------------------------------------------------

interface ReportCase {
	key: string;
	label: string;
	path: string;
}

async function reportsOn(backend: Backend, o: AnalyticsOptions): Promise<void> {
	const dataDir = tempDir("marquee-bench-reports-");
	const database = `bench_reports_${process.pid}_${Date.now()}`;
	const platformEnv = {
		DATA_DIR: dataDir,
		CLICKHOUSE_URL: backend.clickhouseUrl ? `${backend.clickhouseUrl}/${database}` : "",
		RATE_LIMIT_PER_MINUTE: "1000000"
	};
	const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
	let p: RunningPlatform | null = null;
	try {
		// The owner first (the plays are theirs), then the platform lets go of the store.
		p = await startPlatformProcess(platformEnv);
		const account = newAccount("reports");
		const owner = await register(p.accounts, account);
		const tenantId = owner.tenant.id;
		await stopPlatformProcess(p);
		p = null;

		const endMs = Date.now();
		const startOfToday = Math.floor(endMs / DAY_MS) * DAY_MS;
		const window = { from: startOfToday - REPORT_SCALE.days * DAY_MS, to: startOfToday + DAY_MS };
		const exportDay = { from: startOfToday - DAY_MS, to: startOfToday };
		const task: SeedTask = { cmd: "seed", target: backend.workerTarget(dataDir, database), tenantId, rows: o.rows, ...REPORT_SCALE, endMs };
		console.log(`\nReports over ${fmt(o.rows)} plays, ${backend.label} — loading and timing the bare SQL (worker processes, platform stopped)…`);
		const { result: seeded } = await runWorker<SeedResult>(task, backend.serverPid);
		console.log(
			`  loaded ${fmt(seeded.playbackRows)} plays in ${seeded.insertPlaybackSec.toFixed(1)} s (${fmt(seeded.playbackRows / seeded.insertPlaybackSec)} rows/s, one INSERT … SELECT), ` +
				`${fmt(seeded.statusRows)} status transitions in ${seeded.insertStatusSec.toFixed(1)} s, merged in ${seeded.optimizeSec.toFixed(1)} s: ` +
				`${seeded.parts} parts, ${mb(seeded.bytesOnDisk)} on disk (${mb(seeded.uncompressedBytes)} uncompressed)`
		);
		const { result: timedBare, cores: bareCores, othersCores: bareOthers, peakMb: barePeakMb, serverCores: bareServerCores } = await runWorker<TimeResult>({ cmd: "time", target: task.target, tenantId, window, exportDay, samples: o.samples }, backend.serverPid);

		p = await startPlatformProcess(platformEnv);
		const session = await login(p.accounts, account.email, account.password);
		const auth = ownerSession(p, { ...session, password: account.password });
		const server = backend.serverPid;
		const mon = monitor(server ? [p.proc.child.pid as number, server] : [p.proc.child.pid as number]);
		const idleMb = mon.read().rssMb;
		const range = `from=${new Date(window.from).toISOString()}&to=${new Date(window.to).toISOString()}`;
		const cases: ReportCase[] = [
			...(["content", "display", "group", "hour", "day"] as const).map(by => ({ key: `playback:${by}`, label: `GET /analytics/playback?groupBy=${by}`, path: `/analytics/playback?${range}&groupBy=${by}&limit=10000` })),
			{ key: "uptime", label: "GET /analytics/uptime", path: `/analytics/uptime?${range}&limit=10000` }
		];
		const days = `${REPORT_SCALE.days} days`;
		const bareName = "bare SQL on the store (own process, no gateway)";
		const notes: string[] = [];
		const figure = (name: string, l: number[]): Figure => ({ name, opsPerSec: 1000 / (l.reduce((s, x) => s + x, 0) / l.length), p50Ms: quantile(l, 0.5), p95Ms: quantile(l, 0.95), p99Ms: quantile(l, 0.99) });
		const failed = (name: string): Figure => ({ name: `${name}: FAILED`, opsPerSec: NaN, p50Ms: NaN, p99Ms: NaN });
		/** After a failure: what the platform said, and a fresh one when it is gone. */
		const afterFailure = async (label: string, err: unknown): Promise<void> => {
			const alive = p?.proc.child.exitCode === null && p.proc.child.signalCode === null;
			console.log(`  ${label} failed: ${(err as Error).message}; the platform is ${alive ? "still running" : `gone (exit ${p?.proc.child.exitCode ?? p?.proc.child.signalCode})`}`);
			const tail = (p?.proc.output() ?? "").trim().split("\n").slice(-8);
			if (tail.length) console.log(`  platform output, last lines:\n    ${tail.join("\n    ")}`);
			failures.push(label);
			if (!alive && p) {
				killGroup(p.proc);
				p = await startPlatformProcess(platformEnv);
				console.log("  (platform started again for the remaining cases)");
			}
		};
		const failures: string[] = [];
		for (const c of cases) {
			const latencies: number[] = [];
			let answer = null as { rows: unknown[]; totals?: { plays: number } } | null;
			let answerBytes = 0;
			const bareCase = timedBare.cases[c.key];
			const bareFigure = bareCase.error ? failed(bareName) : figure(bareName, [...bareCase.latencies].sort((a, b) => a - b));
			const plain = c.key.startsWith("playback:") ? timedBare.cases[c.key.replace("playback:", "plain:")] : undefined;
			const plainName = "bare SQL without the per-event dedupe (for scale)";
			const plainFigure = plain ? [plain.error ? failed(plainName) : figure(plainName, [...plain.latencies].sort((a, b) => a - b))] : [];
			const bareErrors = () => {
				if (bareCase.error) console.log(`  the bare SQL failed: ${bareCase.error}`);
				if (plain?.error) console.log(`  the plain SQL failed: ${plain.error}`);
			};
			const title = `${c.label} over ${days} (1 at a time, ${o.samples} runs)`;
			try {
				for (let i = 0; i <= o.samples; i++) {
					const res = await send(agent, p.api(c.path), "GET", await auth());
					if (res.status !== 200) throw new Error(`${c.label} answered ${res.status} after ${(res.ms / 1000).toFixed(1)} s: ${res.body.toString().slice(0, 300)}`);
					answerBytes = res.body.length;
					if (i === 0) answer = JSON.parse(res.body.toString()) as { rows: unknown[]; totals?: { plays: number } };
					else latencies.push(res.ms);
				}
			} catch (err) {
				report(title, bareFigure, [...plainFigure, failed(c.label)], { tail: "p95" });
				bareErrors();
				await afterFailure(c.label, err);
				continue;
			}
			latencies.sort((a, b) => a - b);
			report(title, bareFigure, [...plainFigure, figure(c.label, latencies)], { tail: "p95" });
			bareErrors();
			notes.push(`${c.label.replace("GET /analytics/", "")}: ${answer?.rows.length ?? 0} rows, ${mb(answerBytes)}${answer?.totals ? `, totals.plays ${fmt(answer.totals.plays)}` : ""}`);
		}

		// The CSV export of one day: bytes/s.
		const exportPath = `/analytics/playback/export?from=${new Date(exportDay.from).toISOString()}&to=${new Date(exportDay.to).toISOString()}`;
		const exportRuns = Math.max(1, Math.ceil(o.samples / 4));
		const exportMs: number[] = [];
		let bytes = 0;
		let lines = 0;
		const bareExport = timedBare.cases.export;
		const bareExportMs = [...bareExport.latencies].sort((a, b) => a - b);
		const exportTitle = `CSV export of one day (1 at a time, ${exportRuns} runs; ops/s = exports/s)`;
		const bareExportFigure = bareExport.error ? failed("bare SQL chunks + CSV lines (own process)") : figure("bare SQL chunks + CSV lines (own process)", bareExportMs);
		if (bareExport.error) console.log(`  (the bare export failed: ${bareExport.error})`);
		try {
			for (let i = 0; i <= exportRuns; i++) {
				const res = await send(agent, p.api(exportPath), "GET", await auth());
				if (res.status !== 200) throw new Error(`export answered ${res.status}: ${res.body.toString().slice(0, 300)}`);
				bytes = res.body.length;
				lines = res.body.toString().split("\r\n").length - 2;
				if (bareExport.rows !== undefined && lines !== bareExport.rows) throw new Error(`the export held ${lines} plays, the store ${bareExport.rows}`);
				if (i > 0) exportMs.push(res.ms);
			}
			exportMs.sort((a, b) => a - b);
			report(exportTitle, bareExportFigure, [figure("GET /analytics/playback/export (one day)", exportMs)], { tail: "p95" });
			const mean = (l: number[]) => l.reduce((s, x) => s + x, 0) / l.length / 1000;
			console.log(
				`  one day = ${fmt(lines)} plays, ${mb(bytes)} of CSV: ${mb(bytes / mean(exportMs))}/s, ${fmt(lines / mean(exportMs))} rows/s over HTTP; ` +
					`bare ${mb((bareExport.bytes ?? 0) / mean(bareExportMs))}/s, ${fmt((bareExport.rows ?? 0) / mean(bareExportMs))} rows/s`
			);
		} catch (err) {
			report(exportTitle, bareExportFigure, [failed("GET /analytics/playback/export (one day)")], { tail: "p95" });
			await afterFailure("GET /analytics/playback/export", err);
		}
		if (failures.length) console.log(`  FAILED: ${failures.join(", ")}`);
		const used = mon.read();
		mon.stop();
		console.log(`  answers: ${notes.join("; ")}`);
		console.log(
			`  memory: platform resident ${idleMb.toFixed(0)} MB after start, peak ${used.peakMb.toFixed(0)} MB while reporting (${used.cpuSec.toFixed(0)} CPU-s, ${(used.cpuSec / used.wallSec).toFixed(2)} cores)` +
				neighbours(used.othersCores)
		);
		console.log(`  the bare timing worker: peak ${barePeakMb.toFixed(0)} MB, ${bareCores.toFixed(2)} cores${server ? ` (the ClickHouse server ${bareServerCores.toFixed(2)} cores)` : ""}${neighbours(bareOthers)}`);
		if (server) {
			const ch = used.each[1];
			console.log(`  the ClickHouse server while the platform reported: ${(ch.cpuSec / used.wallSec).toFixed(2)} cores, peak ${ch.peakMb.toFixed(0)} MB resident`);
		}
		const warnings = p.proc.output().split("\n").filter(l => /\b(WARN|ERROR|FATAL)\b/.test(l));
		if (warnings.length) console.log(`  platform log: ${warnings.length} warning/error lines, e.g.\n    ${warnings.slice(0, 3).join("\n    ")}`);
	} finally {
		agent.destroy();
		if (p) await stopPlatformProcess(p);
		fs.rmSync(dataDir, { recursive: true, force: true });
		await dropDatabases(backend, [database]);
	}
}

// ---- entry points ---------------------------------------------------------------------------

/** The backends to run on: chDB (unless --no-chdb), and a ClickHouse server when asked for. */
async function withBackends(o: AnalyticsOptions, run: (backend: Backend) => Promise<void>): Promise<void> {
	if (!o.skipChdb) await run(CHDB);
	if (!o.clickhouse) return;
	let url = o.clickhouse;
	let stop: (() => Promise<void>) | null = null;
	if (url === "start") {
		const server = await startServer("clickhouse");
		if (isUnavailable(server)) {
			console.log(`\n(ClickHouse server run skipped: ${server.reason})`);
			return;
		}
		url = server.url;
		stop = server.stop;
	}
	try {
		const version = await fetch(`${url.replace(/\/+$/, "")}/?query=${encodeURIComponent("SELECT version()")}`).then(r => r.text());
		await run(serverBackend(url, version.trim()));
	} finally {
		// The server's child is unref'd: hold the event loop until its exit is seen.
		const hold = setInterval(() => undefined, 1000);
		await stop?.();
		clearInterval(hold);
	}
}

export async function analyticsIngestBench(o: AnalyticsOptions): Promise<void> {
	console.log(`\n[analytics ingestion: ${o.quick ? "quick" : "full"} mode, ${fmt(o.events)} plays; ${os.cpus().length} CPUs]`);
	const bareHttp = await bareHttpFigure(o);
	await withBackends(o, backend => ingestOn(backend, o, bareHttp));
}

export async function analyticsReportsBench(o: AnalyticsOptions): Promise<void> {
	console.log(`\n[analytics reports: ${o.quick ? "quick" : "full"} mode, ${fmt(o.rows)} plays, ${o.samples} runs a report]`);
	await withBackends(o, backend => reportsOn(backend, o));
}
