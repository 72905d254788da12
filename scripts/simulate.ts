/**
 * A fleet of simulated screens against a running Marquee (local or remote), from its own process:
 *
 *   npm run simulate -- --displays 500 --interval 30 --duration 120 [--url http://localhost:3000]
 *                       [--provisioning-key mpk_…] [--concurrency 32] [--streams 20] [--json FILE]
 *
 * 1. Provisioning: with a key, each screen registers itself (POST /device/register). Without
 *    one, the simulator signs up a fresh organisation on the target and makes a key for the run
 *    (local platforms; the plan must allow that many displays, e.g. DEFAULT_PLAN_DISPLAYS).
 * 2. Each screen then behaves like a real one: a heartbeat every `interval` seconds with ±10 %
 *    jitter, the manifest with its ETag (304 when unchanged; fetched again when a heartbeat
 *    names a new one), a download of each content item its manifest lists (once per sha256),
 *    commands acknowledged, proof of play posted every heartbeat for what it "played" (when
 *    analytics answers), and the live stream (GET /device/events) held open for a sample.
 *
 * A progress bar while provisioning, then one line per second (requests/s, p99, errors), then a
 * summary per route — and as JSON with --json (a file, or "-" for the last line of stdout). The
 * exit code is 1 when any request failed (a 5xx, a network error, an unexpected 4xx).
 */
import http from "node:http";
import https from "node:https";
import { randomUUID } from "node:crypto";
import fs from "node:fs";

export interface SimulateOptions {
	url: string;
	displays: number;
	intervalSec: number;
	durationSec: number;
	provisioningKey: string | null;
	concurrency: number;
	streams: number;
	json: string | null;
	quiet: boolean;
}

interface Answer {
	status: number;
	headers: http.IncomingHttpHeaders;
	body: string;
}

interface Screen {
	index: number;
	displayId: string;
	token: string;
	etag: string | null;
	items: Array<{ contentId: string; sha256: string; durationMs: number; url: string }>;
	playlistId: string | null;
	scheduleId: string | null;
	downloaded: Set<string>;
	lastPlayedAt: number;
}

/** Latencies and outcomes per route, for the live line and the summary. */
class Stats {
	readonly routes = new Map<string, { count: number; errors: number; latencies: number[] }>();
	private window: number[] = [];
	private windowErrors = 0;
	errors = 0;
	requests = 0;
	readonly problems: string[] = [];

	record(route: string, ms: number, ok: boolean, detail: string): void {
		let r = this.routes.get(route);
		if (!r) this.routes.set(route, (r = { count: 0, errors: 0, latencies: [] }));
		r.count++;
		r.latencies.push(ms);
		this.requests++;
		this.window.push(ms);
		if (!ok) {
			r.errors++;
			this.errors++;
			this.windowErrors++;
			if (this.problems.length < 20) this.problems.push(`${route}: ${detail}`);
		}
	}

	/** The last window's requests, p99 and errors; starts the next window. */
	tick(): { requests: number; p99: number; errors: number } {
		const w = this.window;
		const errors = this.windowErrors;
		this.window = [];
		this.windowErrors = 0;
		return { requests: w.length, p99: percentile(w, 0.99), errors };
	}
}

export function percentile(values: number[], p: number): number {
	if (!values.length) return 0;
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** The numeric flags: the option each sets and its bounds. */
const NUMBERS: Record<string, { key: "displays" | "intervalSec" | "durationSec" | "concurrency" | "streams"; min: number; max: number }> = {
	"--displays": { key: "displays", min: 1, max: 1_000_000 },
	"--interval": { key: "intervalSec", min: 0.1, max: 3600 },
	"--duration": { key: "durationSec", min: 1, max: 86_400 },
	"--concurrency": { key: "concurrency", min: 1, max: 1000 },
	"--streams": { key: "streams", min: 0, max: 10_000 }
};

export function parseArgs(argv: string[]): SimulateOptions {
	const options: SimulateOptions = { url: "http://localhost:3000", displays: 100, intervalSec: 30, durationSec: 60, provisioningKey: null, concurrency: 32, streams: 20, json: null, quiet: false };
	for (let i = 0; i < argv.length; i++) {
		const flag = argv[i];
		if (flag === "--quiet") {
			options.quiet = true;
			continue;
		}
		const value = argv[++i];
		const numeric = NUMBERS[flag];
		if (numeric) {
			const n = Number(value);
			if (!Number.isFinite(n) || n < numeric.min || n > numeric.max) throw new Error(`${flag} must be a number from ${numeric.min} to ${numeric.max}, got ${value}`);
			options[numeric.key] = n;
		} else if (flag === "--url") options.url = new URL(value ?? "").origin;
		else if (flag === "--provisioning-key") options.provisioningKey = value ?? null;
		else if (flag === "--json") options.json = value ?? "-";
		else throw new Error(`Unknown option ${flag} (see the comment at the top of scripts/simulate.ts)`);
	}
	return options;
}

/** A request that failed on a reused connection before any answer: safe to send again. */
class StaleConnection extends Error {
	constructor(cause: Error) {
		super(cause.message, { cause });
	}
}

export class Simulator {
	readonly stats = new Stats();
	private readonly agent: http.Agent;
	private readonly screens: Screen[] = [];
	private readonly timers = new Set<NodeJS.Timeout>();
	private readonly streams = new Set<http.ClientRequest>();
	private streamEvents = 0;
	private stopped = false;
	private playbackEnabled = true;
	private provisionMs = 0;

	constructor(private readonly options: SimulateOptions) {
		const Agent = options.url.startsWith("https:") ? https.Agent : http.Agent;
		this.agent = new Agent({ keepAlive: true, maxSockets: 256 });
	}

	private log(line: string): void {
		if (!this.options.quiet) process.stderr.write(line);
	}

	/** One request; the outcome goes to the stats under `route` (expected statuses are not errors). */
	async request(route: string, method: string, path: string, opts: { token?: string; json?: unknown; headers?: Record<string, string>; expect?: number[] } = {}): Promise<Answer> {
		const url = new URL(path, this.options.url);
		const body = opts.json === undefined ? undefined : JSON.stringify(opts.json);
		const headers: Record<string, string> = { ...opts.headers };
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		if (body !== undefined) headers["content-type"] = "application/json";
		const started = performance.now();
		const lib = url.protocol === "https:" ? https : http;
		const send = () =>
			new Promise<Answer>((resolve, reject) => {
				const req = lib.request(url, { method, headers, agent: this.agent, timeout: 30_000 }, res => {
					const chunks: Buffer[] = [];
					res.on("data", (c: Buffer) => chunks.push(c));
					res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
					res.on("error", reject);
				});
				req.on("timeout", () => req.destroy(new Error("timed out after 30 s")));
				// A kept-alive connection the server closed (its idle timeout) just as this request
				// went out on it: nothing reached the server, so it is sent again on a fresh one, as
				// browsers do (Node's documentation of request.reusedSocket).
				req.on("error", err => reject(req.reusedSocket && (err as NodeJS.ErrnoException).code === "ECONNRESET" ? new StaleConnection(err) : err));
				req.end(body);
			});
		try {
			const answer = await send().catch((err: unknown) => (err instanceof StaleConnection ? send() : Promise.reject(err)));
			const ok = (opts.expect ?? [200, 201, 202, 204, 302, 304]).includes(answer.status);
			this.stats.record(route, performance.now() - started, ok, `${answer.status} ${answer.body.slice(0, 160)}`);
			return answer;
		} catch (err) {
			this.stats.record(route, performance.now() - started, false, (err as Error).message);
			return { status: 0, headers: {}, body: "" };
		}
	}

	/** A key to register with: the one given, or a fresh organisation's (local platforms). */
	private async provisioningKey(): Promise<string> {
		if (this.options.provisioningKey) return this.options.provisioningKey;
		const run = randomUUID().slice(0, 8);
		const account = { email: `simulator-${run}@example.com`, password: `Sim-${randomUUID()}`, name: "Fleet Simulator", organizationName: `Simulated fleet ${run}` };
		const signedUp = await this.request("POST /auth/register", "POST", "/api/v1/auth/register", { json: account, expect: [201] });
		if (signedUp.status === 0) throw new Error(`cannot reach ${this.options.url} (${this.stats.problems.at(-1) ?? "no answer"})`);
		if (signedUp.status !== 201) throw new Error(`signing up on ${this.options.url} answered ${signedUp.status}: ${signedUp.body.slice(0, 300)}`);
		const { accessToken } = JSON.parse(signedUp.body) as { accessToken: string };
		const created = await this.request("POST /provisioning-keys", "POST", "/api/v1/provisioning-keys", { token: accessToken, json: { name: `simulator ${run}`, tags: ["simulated"] }, expect: [201] });
		if (created.status !== 201) throw new Error(`making a provisioning key answered ${created.status}: ${created.body.slice(0, 300)}`);
		return (JSON.parse(created.body) as { key: string }).key;
	}

	/** Registers every screen, `concurrency` at a time, with a progress bar; a 429 or 503 is tried again. */
	async provision(): Promise<void> {
		const started = performance.now();
		const key = await this.provisioningKey();
		const run = randomUUID().slice(0, 8);
		let next = 0;
		let done = 0;
		// Redrawn in place on a terminal; into a log, one line per tenth.
		let shownTenth = -1;
		const bar = () => {
			const width = 30;
			const filled = Math.round((done / this.options.displays) * width);
			const line = `provisioning [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${this.options.displays}`;
			if (process.stderr.isTTY) return this.log(`\r${line}`);
			const tenth = Math.floor((done / this.options.displays) * 10);
			if (tenth !== shownTenth) {
				shownTenth = tenth;
				this.log(`${line}\n`);
			}
		};
		const worker = async () => {
			while (next < this.options.displays && !this.stopped) {
				const index = next++;
				for (let attempt = 0; ; attempt++) {
					const res = await this.request("POST /device/register", "POST", "/api/v1/device/register", {
						json: { provisioningKey: key, hardwareId: `sim-${run}-${index}`, name: `Simulated screen ${index + 1}`, model: "marquee-simulator", resolution: "1920x1080" },
						expect: attempt < 10 ? [201, 429, 503] : [201]
					});
					if (res.status === 201) {
						const r = JSON.parse(res.body) as { displayId: string; deviceToken: string };
						this.screens.push({ index, displayId: r.displayId, token: r.deviceToken, etag: null, items: [], playlistId: null, scheduleId: null, downloaded: new Set(), lastPlayedAt: Date.now() });
						break;
					}
					if (attempt >= 10 || (res.status !== 429 && res.status !== 503)) throw new Error(`registering screen ${index} answered ${res.status}: ${res.body.slice(0, 300)}`);
					await sleep(100 * (attempt + 1));
				}
				done++;
				if (done % 10 === 0 || done === this.options.displays) bar();
			}
		};
		bar();
		await Promise.all(Array.from({ length: Math.min(this.options.concurrency, this.options.displays) }, worker));
		if (process.stderr.isTTY) this.log("\n");
		this.provisionMs = performance.now() - started;
	}

	private async manifest(screen: Screen): Promise<void> {
		const res = await this.request("GET /device/manifest", "GET", "/api/v1/device/manifest", { token: screen.token, headers: screen.etag ? { "if-none-match": screen.etag } : {} });
		if (res.status !== 200) return;
		const manifest = JSON.parse(res.body) as { etag: string; playlist: { id: string } | null; schedule: { id: string } | null; items: Screen["items"] };
		screen.etag = (res.headers.etag as string | undefined) ?? manifest.etag;
		screen.items = manifest.items;
		screen.playlistId = manifest.playlist?.id ?? null;
		screen.scheduleId = manifest.schedule?.id ?? null;
		for (const item of manifest.items) {
			if (screen.downloaded.has(item.sha256)) continue;
			screen.downloaded.add(item.sha256);
			await this.request("GET /device/content/:id", "GET", item.url.startsWith("/") ? item.url : `/api/v1/device/content/${item.contentId}`, { token: screen.token, expect: [200, 302] });
		}
	}

	/** What the screen played since its last report, as proof-of-play events. */
	private async playback(screen: Screen): Promise<void> {
		if (!this.playbackEnabled || screen.items.length === 0) return;
		const now = Date.now();
		const events = [];
		let t = screen.lastPlayedAt;
		for (let i = 0; t < now && events.length < 500; i++) {
			const item = screen.items[i % screen.items.length];
			const durationMs = Math.max(1000, item.durationMs || 10_000);
			if (t + durationMs > now) break;
			events.push({ eventId: randomUUID(), contentId: item.contentId, playlistId: screen.playlistId ?? undefined, scheduleId: screen.scheduleId ?? undefined, startedAt: new Date(t).toISOString(), durationMs, completed: true });
			t += durationMs;
		}
		if (!events.length) return;
		screen.lastPlayedAt = t;
		const res = await this.request("POST /device/playback", "POST", "/api/v1/device/playback", { token: screen.token, json: { events }, expect: [202, 503] });
		// Analytics not available on the target: proof of play is skipped for the rest of the run.
		if (res.status === 503) this.playbackEnabled = false;
	}

	private async heartbeat(screen: Screen): Promise<void> {
		const res = await this.request("POST /device/heartbeat", "POST", "/api/v1/device/heartbeat", {
			token: screen.token,
			json: { metrics: { cpu: 10 + Math.random() * 60, memory: 30 + Math.random() * 40, disk: 40 + Math.random() * 10, temperature: 40 + Math.random() * 15 }, appVersion: "simulator-1.0", uptimeSec: Math.round(process.uptime()), currentContentId: screen.items[0]?.contentId }
		});
		if (res.status !== 200) return;
		const answer = JSON.parse(res.body) as { manifestEtag: string | null; commands: Array<{ id: string }> };
		for (const command of answer.commands) await this.request("POST /device/commands/:id/ack", "POST", `/api/v1/device/commands/${command.id}/ack`, { token: screen.token, json: { result: "simulated" } });
		if (answer.manifestEtag && answer.manifestEtag !== screen.etag) await this.manifest(screen);
		await this.playback(screen);
	}

	/** Holds the live stream of a screen open until the end, counting what arrives. */
	private openStream(screen: Screen): void {
		const url = new URL("/api/v1/device/events", this.options.url);
		const lib = url.protocol === "https:" ? https : http;
		const req = lib.request(url, { headers: { authorization: `Bearer ${screen.token}` } }, res => {
			if (res.statusCode !== 200) this.stats.record("GET /device/events", 0, false, `${res.statusCode}`);
			else this.stats.record("GET /device/events", 0, true, "");
			res.on("data", (chunk: Buffer) => {
				this.streamEvents += (chunk.toString().match(/^event:/gm) ?? []).length;
			});
			res.on("error", () => undefined);
		});
		req.on("error", err => {
			if (!this.stopped) this.stats.record("GET /device/events", 0, false, err.message);
		});
		req.end();
		this.streams.add(req);
	}

	/** Runs every screen for `durationSec`, printing a line per second. */
	async run(): Promise<void> {
		const { intervalSec, durationSec } = this.options;
		const intervalMs = intervalSec * 1000;
		const started = Date.now();
		for (const screen of this.screens.slice(0, this.options.streams)) this.openStream(screen);
		const loop = (screen: Screen, delay: number) => {
			const timer = setTimeout(async () => {
				this.timers.delete(timer);
				if (this.stopped) return;
				await this.heartbeat(screen);
				if (!this.stopped) loop(screen, intervalMs * (0.9 + Math.random() * 0.2));
			}, delay);
			this.timers.add(timer);
		};
		// Each screen starts with its manifest, then beats from a random point of the first interval.
		for (const screen of this.screens) {
			const timer = setTimeout(async () => {
				this.timers.delete(timer);
				if (this.stopped) return;
				await this.manifest(screen);
				loop(screen, 0);
			}, Math.random() * intervalMs);
			this.timers.add(timer);
		}
		await new Promise<void>(resolve => {
			const ticker = setInterval(() => {
				const w = this.stats.tick();
				const t = Math.round((Date.now() - started) / 1000);
				this.log(`t=${t}s  ${w.requests} req/s  p99 ${w.p99.toFixed(1)} ms  errors ${w.errors} (total ${this.stats.errors})  streams ${this.streams.size}\n`);
				if (Date.now() - started >= durationSec * 1000) {
					clearInterval(ticker);
					resolve();
				}
			}, 1000);
		});
		await this.stop();
	}

	async stop(): Promise<void> {
		this.stopped = true;
		for (const t of this.timers) clearTimeout(t);
		this.timers.clear();
		for (const s of this.streams) s.destroy();
		this.streams.clear();
		// Requests still in flight finish (their outcome counts).
		await sleep(200);
		this.agent.destroy();
	}

	summary() {
		const routes = Object.fromEntries(
			[...this.stats.routes].map(([route, r]) => [route, { requests: r.count, errors: r.errors, p50Ms: round(percentile(r.latencies, 0.5)), p99Ms: round(percentile(r.latencies, 0.99)) }])
		);
		return {
			target: this.options.url,
			displays: this.screens.length,
			intervalSec: this.options.intervalSec,
			durationSec: this.options.durationSec,
			provisioningSec: round(this.provisionMs / 1000),
			requests: this.stats.requests,
			errors: this.stats.errors,
			requestsPerSec: round(this.stats.requests / (this.options.durationSec + this.provisionMs / 1000)),
			playbackPosted: this.playbackEnabled,
			streamEvents: this.streamEvents,
			routes,
			problems: this.stats.problems
		};
	}
}

const round = (n: number) => Math.round(n * 10) / 10;
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

async function main(): Promise<void> {
	const options = parseArgs(process.argv.slice(2));
	const sim = new Simulator(options);
	process.once("SIGINT", () => void sim.stop());
	await sim.provision();
	await sim.run();
	const summary = sim.summary();
	if (!options.quiet) {
		process.stderr.write(`\n${summary.displays} screens, ${summary.requests} requests (${summary.requestsPerSec}/s), ${summary.errors} errors\n`);
		for (const [route, r] of Object.entries(summary.routes)) process.stderr.write(`  ${route.padEnd(32)} ${String(r.requests).padStart(8)}  errors ${r.errors}  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms\n`);
		for (const problem of summary.problems) process.stderr.write(`  ! ${problem}\n`);
	}
	if (options.json === "-") process.stdout.write(`${JSON.stringify(summary)}\n`);
	else if (options.json) fs.writeFileSync(options.json, JSON.stringify(summary, null, 2));
	process.exitCode = summary.errors > 0 ? 1 : 0;
}

if (require.main === module) {
	main().catch(err => {
		process.stderr.write(`\nsimulate: ${(err as Error).message}\n`);
		process.exitCode = 2;
	});
}
