/**
 * A fleet of screens against the platform as users start it (npm start's command (`tsx [flags] server.ts`), a process of its
 * own, embedded), the load always generated from another process (bench/fleet-worker.ts `load`),
 * never from the server's event loop nor from this one.
 *
 *  - fleet:heartbeat: 64 keep-alive connections POST /device/heartbeat (metrics, app version,
 *    uptime) taking turns with 200 screens registered through a provisioning key; against a bare
 *    node:http server (own process) that verifies the same kind of HS256 JWT, writes presence into
 *    a Map and answers a small JSON. Then, when NATS (4222) and Redis (6379) answer on this
 *    machine, the same against the split topology: SERVICES=api in one process, every other
 *    service in another, TRANSPORTER and REDIS_URL set, one NAMESPACE unique to the run.
 *  - fleet:manifest: 64 connections GET /device/manifest with If-None-Match = the current ETag
 *    (304), taking turns with the 200 screens; the bare server answers its own 304 for scale.
 *  - fleet:memory: resident memory of the platform process tree after registering N screens, each
 *    of which then sent a heartbeat and fetched its manifest, minus before: bytes per display.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { bearer, newAccount, register, someClient, type Platform as TestPlatform } from "../test/helpers/accounts";
import { request, tempDir } from "../test/helpers/platform";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../test/helpers/process";
import { freePort } from "../test/helpers/servers";
import { SERVICE_NAMES } from "../shared/config";
import { median, report, type Figure } from "./figures";
import { NODE_FLAGS, pidsNamed, sampleTree, START_ARGS, startPlatformProcess, stopPlatformProcess, TSX, type RunningPlatform } from "./platform-process";
import { signJwt, type FleetTask, type LoadRequest, type LoadResult, type LoadTask } from "./fleet-worker";

const WORKER = path.join(__dirname, "fleet-worker.ts");
const SCREENS = 200;
const CONNECTIONS = 64;
const WARM_MS = 1500;
const DURATION_MS = 5000;
const MEMORY_SCREENS = 2000;
const HEARTBEAT_BODY = JSON.stringify({ metrics: { cpu: 23.5, memory: 41.2, disk: 63, temperature: 51.5 }, appVersion: "2.4.1", currentContentId: "0190a1b2-0000-7000-8000-000000000001", uptimeSec: 86_400 });
/** Platform settings for every run: no plan limit in the way, and the highest rate limit config accepts (1 000 000 a minute). */
const PLATFORM_ENV: Record<string, string> = { DEFAULT_PLAN_DISPLAYS: "1000000", RATE_LIMIT_PER_MINUTE: "1000000" };

/**
 * Services the split topology's gateway process runs besides `api` (`--split-gateway-services`):
 * none as deployed (one Deployment per service); `devices` measures the shape where heartbeats
 * are served beside the gateway and never cross NATS (the lane pins a group to a local endpoint).
 */
const splitGateway: string[] = [];

/**
 * `--cpu-prof=DIR`: every platform process writes a V8 CPU profile into DIR when it exits (open
 * them in Chrome's DevTools, or summarise with `npx tsx bench/profile-summary.ts DIR/*.cpuprofile`).
 * `--split-gateway-services=a,b`: see splitGateway.
 */
export function fleetOptions(flags: Map<string, string>): void {
	const extra = flags.get("split-gateway-services");
	if (extra !== undefined) {
		const names = extra.split(",").map(name => name.trim()).filter(Boolean);
		const unknown = names.filter(name => name === "api" || !(SERVICE_NAMES as readonly string[]).includes(name));
		if (unknown.length || !names.length) throw new Error(`--split-gateway-services takes services other than api from: ${SERVICE_NAMES.filter(n => n !== "api").join(", ")}`);
		splitGateway.push(...names);
		console.log(`Split topology: the gateway's process also runs ${names.join(", ")} (not the deployed shape)`);
	}
	const dir = flags.get("cpu-prof");
	if (dir === undefined) return;
	const absolute = path.resolve(dir || "bench/profiles");
	fs.mkdirSync(absolute, { recursive: true });
	PLATFORM_ENV.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${absolute}`;
	console.log(`CPU profiles of the platform processes go to ${absolute}`);
}

/** Figures that were not measured, and why; printed at the end of the group. */
const skipped: string[] = [];

// ---- processes --------------------------------------------------------------------------------

function runLoad(task: Omit<LoadTask, "cmd" | "connections" | "warmMs" | "durationMs"> & Partial<Pick<LoadTask, "warmMs" | "durationMs">>): Promise<LoadResult> {
	const full: FleetTask = { cmd: "load", connections: CONNECTIONS, warmMs: WARM_MS, durationMs: DURATION_MS, ...task };
	return new Promise((resolve, reject) => {
		const child = spawn(TSX, [WORKER], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
		let out = "";
		child.stdout.on("data", chunk => (out += chunk));
		child.on("error", reject);
		child.on("exit", code => {
			const last = out.trim().split("\n").pop() ?? "";
			if (code !== 0) reject(new Error(`load process exited with ${code}: ${out.slice(-2000)}`));
			else resolve(JSON.parse(last) as LoadResult);
		});
		child.stdin.end(JSON.stringify(full));
	});
}

function startBare(secret: string): Promise<{ url: string; pid: number; stop(): void }> {
	return new Promise((resolve, reject) => {
		// Under --cpu-prof the bare server is profiled too: its profile is what the platform's is compared with.
		const env = PLATFORM_ENV.NODE_OPTIONS ? { ...process.env, NODE_OPTIONS: PLATFORM_ENV.NODE_OPTIONS } : process.env;
		const child = spawn(TSX, [...NODE_FLAGS, WORKER, JSON.stringify({ cmd: "bare", secret } satisfies FleetTask)], { cwd: ROOT, env, stdio: ["ignore", "pipe", "inherit"], detached: true });
		let out = "";
		child.on("error", reject);
		child.on("exit", code => reject(new Error(`bare server exited with ${code}`)));
		child.stdout.on("data", chunk => {
			out += chunk;
			if (!out.includes("\n")) return;
			const { port } = JSON.parse(out.split("\n")[0]) as { port: number };
			resolve({
				url: `http://127.0.0.1:${port}`,
				pid: child.pid as number,
				// SIGTERM first: it exits on its own (writing its CPU profile, when asked for one); SIGKILL whatever is left.
				stop: () => {
					const signal = (name: NodeJS.Signals) => {
						try {
							process.kill(-(child.pid as number), name);
						} catch {
							/* gone */
						}
					};
					signal("SIGTERM");
					setTimeout(() => signal("SIGKILL"), 2000).unref();
				}
			});
		});
	});
}

function tcpAnswers(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const socket = net.connect(port, "127.0.0.1");
		const done = (ok: boolean) => {
			socket.destroy();
			resolve(ok);
		};
		socket.setTimeout(1000, () => done(false));
		socket.on("connect", () => done(true));
		socket.on("error", () => done(false));
	});
}

// ---- set-up through the API -------------------------------------------------------------------

interface Fleet {
	ownerToken: string;
	keyId: string;
	key: string;
	tokens: string[];
}

/** An owner, a provisioning key and `n` screens registered with it (`concurrency` at a time). */
async function registerFleet(api: (p: string) => string, n: number, concurrency = 8): Promise<Fleet> {
	const owner = await register({ api } as unknown as TestPlatform, newAccount("fleet"));
	const created = await request<{ id: string; key: string }>(api("/provisioning-keys"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Fleet" } });
	if (created.status !== 201) throw new Error(`POST /provisioning-keys answered ${created.status}: ${created.text}`);
	const fleet: Fleet = { ownerToken: owner.accessToken, keyId: created.body.id, key: created.body.key, tokens: [] };
	await addScreens(api, fleet, n, concurrency);
	return fleet;
}

async function addScreens(api: (p: string) => string, fleet: Fleet, n: number, concurrency = 8): Promise<void> {
	const first = fleet.tokens.length;
	let next = 0;
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (next < n) {
				const i = first + next++;
				const res = await request<{ deviceToken: string }>(api("/device/register"), {
					method: "POST",
					headers: someClient(),
					json: { provisioningKey: fleet.key, hardwareId: `hw-${process.pid}-${i}`, name: `Screen ${i}`, model: "bench", resolution: "1920x1080" }
				});
				if (res.status !== 201) throw new Error(`POST /device/register answered ${res.status}: ${res.text}`);
				fleet.tokens[i] = res.body.deviceToken;
			}
		})
	);
}

/** Sends `n` requests through `run`, `concurrency` at a time (set-up, not timed). */
async function each(n: number, concurrency: number, run: (i: number) => Promise<void>): Promise<void> {
	let next = 0;
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (next < n) await run(next++);
		})
	);
}

async function heartbeatOnce(api: (p: string) => string, token: string): Promise<void> {
	const res = await request(api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: JSON.parse(HEARTBEAT_BODY) as object });
	if (res.status !== 200) throw new Error(`POST /device/heartbeat answered ${res.status}: ${res.text}`);
}

async function manifestEtag(api: (p: string) => string, token: string): Promise<string> {
	const res = await request(api("/device/manifest"), { headers: bearer(token) });
	if (res.status !== 200) throw new Error(`GET /device/manifest answered ${res.status}: ${res.text}`);
	const etag = res.headers.get("etag");
	if (!etag) throw new Error("GET /device/manifest answered no ETag");
	return etag;
}

// ---- figures ------------------------------------------------------------------------------------

function figure(name: string, r: LoadResult): Figure {
	return { name, opsPerSec: r.okPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms };
}

function statusLine(label: string, r: LoadResult): string {
	const list = Object.entries(r.statuses)
		.map(([s, n]) => `${n} × ${s}`)
		.join(", ");
	const perAnswer = (ms: number) => ((ms * 1000) / Math.max(1, r.requests)).toFixed(0);
	const cpu = r.machineCpuMs === null ? "" : `; machine CPU ${perAnswer(r.machineCpuMs)} µs an answer (busy ${((r.machineCpuMs / (r.seconds * 1000 * os.cpus().length)) * 100).toFixed(0)} %, stolen ${(((r.stealMs ?? 0) / (r.seconds * 1000 * os.cpus().length)) * 100).toFixed(0)} %)`;
	const byProcess = Object.entries(r.processCpuMs)
		.map(([name, ms]) => `${name} ${perAnswer(ms)}`)
		.join(", ");
	return `  ${label}: ${r.requests} answers in ${r.seconds.toFixed(1)} s (${list})${cpu}${byProcess ? ` — µs an answer by process: ${byProcess}` : ""}${r.firstError ? `; first unexpected: ${r.firstError}` : ""}`;
}

/** The bare baseline's device tokens: HS256 JWTs like the platform's, one per screen. */
function bareTokens(secret: string, n: number): string[] {
	const exp = Math.floor(Date.now() / 1000) + 86_400;
	return Array.from({ length: n }, (_, i) => signJwt({ sub: `display-${i}`, tid: "tenant-bench", typ: "device", exp }, secret));
}

const heartbeatRequests = (tokens: string[]): LoadRequest[] => tokens.map(t => ({ headers: bearer(t), body: HEARTBEAT_BODY }));

// ---- fleet:heartbeat ----------------------------------------------------------------------------

interface SplitTopology {
	api: RunningPlatform;
	services: PlatformProcess;
}

/** SERVICES=api in one process (plus splitGateway), every other service in another, over NATS and Redis. */
async function startSplit(): Promise<SplitTopology> {
	const dataDir = tempDir("marquee-bench-fleet-split-");
	const shared = {
		...PLATFORM_ENV,
		TRANSPORTER: "nats://127.0.0.1:4222",
		REDIS_URL: "redis://127.0.0.1:6379",
		NAMESPACE: `bench-fleet-${process.pid}-${Date.now()}`,
		JWT_SECRET: randomBytes(48).toString("base64url"),
		DATA_DIR: dataDir
	};
	const opsPort = await freePort();
	const services = await spawnPlatform(TSX, START_ARGS, {
		...shared,
		LOG_LEVEL: "warn",
		TRUST_PROXY_HOPS: "1",
		OPS_PORT: String(opsPort),
		SERVICES: "auth,tenants,devices,media,scheduling,notifications,billing,analytics"
	});
	try {
		await waitFor200(`http://127.0.0.1:${opsPort}/health/ready`, 120_000, services);
		const api = await startPlatformProcess({ ...shared, SERVICES: ["api", ...splitGateway].join(","), OPS_PORT: String(await freePort()) });
		return { api, services };
	} catch (err) {
		killGroup(services);
		throw err;
	}
}

/** The split topology's processes, for their CPU time: the two platform processes, NATS and Redis (when local). */
function splitWatch(s: SplitTopology): Record<string, number> {
	const watch: Record<string, number> = { api: s.api.proc.child.pid as number, services: s.services.child.pid as number };
	const [nats] = pidsNamed("nats-server");
	const [redis] = pidsNamed("redis-server");
	if (nats) watch.nats = nats;
	if (redis) watch.redis = redis;
	return watch;
}

async function stopSplit(s: SplitTopology): Promise<void> {
	await stopPlatformProcess(s.api);
	s.services.kill("SIGTERM");
	const timeout = new Promise<"timeout">(resolve => setTimeout(() => resolve("timeout"), 30_000).unref());
	await Promise.race([s.services.exited, timeout]);
	killGroup(s.services);
}

/** Platform runs per topology in fleet:heartbeat, each between two runs of the bare server. */
const HEARTBEAT_RUNS = 2;

/**
 * fleet:heartbeat. The bare server stays up throughout, and each platform run comes between two
 * runs of it (bare, platform, bare, platform, bare): a figure's ratio is its rate over the mean of
 * the bare runs just before and after it, so a change of the VM's speed between the baseline and
 * the case (2× within minutes on this machine) moves the ratio far less than it moved one bare
 * run against later platform runs. The table shows the median of each measure over a case's runs, and the median of their ratios.
 */
export async function fleetHeartbeatBench(): Promise<void> {
	const secret = randomBytes(32).toString("base64url");
	const bare = await startBare(secret);
	const bareRequests = heartbeatRequests(bareTokens(secret, SCREENS));
	const bareRuns: LoadResult[] = [];
	const lines: string[] = [];
	const runBare = async (): Promise<LoadResult> => {
		// Shorter than the platform's runs (the bare server needs no warming up): the bench stays under 5 minutes.
		const r = await runLoad({ url: `${bare.url}/device/heartbeat`, method: "POST", requests: bareRequests, expect: 200, watch: { bare: bare.pid }, warmMs: 500, durationMs: 4000 });
		lines.push(statusLine(`bare ${bareRuns.length + 1}`, r));
		bareRuns.push(r);
		return r;
	};
	/** HEARTBEAT_RUNS runs of `run`, each between two bare runs; the case's median figure with its median ratio. */
	const bracketed = async (name: string, label: string, run: () => Promise<LoadResult>): Promise<Figure> => {
		const runs: LoadResult[] = [];
		const ratios: number[] = [];
		let before = await runBare();
		for (let i = 0; i < HEARTBEAT_RUNS; i++) {
			const r = await run();
			const line = lines.push(statusLine(`${label} ${i + 1}`, r)) - 1;
			const after = await runBare();
			const ratio = r.okPerSec / ((before.okPerSec + after.okPerSec) / 2);
			lines[line] += `; ${ratio.toFixed(2)}× the bare runs around it`;
			runs.push(r);
			ratios.push(ratio);
			before = after;
		}
		return { ...medianFigure(name, runs), ratio: median(ratios) };
	};

	const figures: Figure[] = [];
	try {
		const platform = await startPlatformProcess({ ...PLATFORM_ENV, DATA_DIR: tempDir("marquee-bench-fleet-") });
		try {
			const started = Date.now();
			const fleet = await registerFleet(platform.api, SCREENS);
			console.log(`\nfleet:heartbeat — set-up (not timed): ${SCREENS} screens registered through a provisioning key in ${((Date.now() - started) / 1000).toFixed(1)} s`);
			const url = platform.api("/device/heartbeat");
			const watch = { platform: platform.proc.child.pid as number };
			figures.push(await bracketed("POST /device/heartbeat, one process (npm start)", "one process", () => runLoad({ url, method: "POST", requests: heartbeatRequests(fleet.tokens), expect: 200, watch })));
		} finally {
			await stopPlatformProcess(platform);
		}

		const [nats, redis] = await Promise.all([tcpAnswers(4222), tcpAnswers(6379)]);
		if (!nats || !redis) {
			skipped.push(`fleet:heartbeat split topology: ${[!nats && "NATS (127.0.0.1:4222)", !redis && "Redis (127.0.0.1:6379)"].filter(Boolean).join(" and ")} not reachable`);
		} else {
			let split: SplitTopology | null = null;
			try {
				const started = Date.now();
				split = await startSplit();
				const fleet = await registerFleet(split.api.api, SCREENS);
				console.log(`  split topology — set-up (not timed): api + services processes started, ${SCREENS} screens registered in ${((Date.now() - started) / 1000).toFixed(1)} s`);
				const url = split.api.api("/device/heartbeat");
				const watch = splitWatch(split);
				figures.push(await bracketed(`POST /device/heartbeat, split (${["api", ...splitGateway].join("+")} | services, NATS, Redis)`, "split", () => runLoad({ url, method: "POST", requests: heartbeatRequests(fleet.tokens), expect: 200, watch })));
			} catch (err) {
				skipped.push(`fleet:heartbeat split topology: failed: ${(err as Error).message.split("\n").slice(0, 3).join(" ")}`);
			} finally {
				if (split) await stopSplit(split);
			}
		}
	} finally {
		bare.stop();
	}
	report(
		`Device heartbeats (${CONNECTIONS} keep-alive connections over ${SCREENS} device tokens; load from a process of its own; ${os.cpus().length} cores shared by load and server; each case the median of ${HEARTBEAT_RUNS} runs, each between two bare runs)`,
		medianFigure("bare node:http: HS256 verify, presence Map (own process)", bareRuns),
		figures
	);
	for (const line of lines) console.log(line);
	console.log("  targets: one process ≥ 0.60× bare with p99 < 25 ms; split ≥ 0.25× bare");
}


/** A case's figure from several runs: the median of each measure. */
function medianFigure(name: string, runs: readonly LoadResult[]): Figure {
	return { name, opsPerSec: median(runs.map(r => r.okPerSec)), p50Ms: median(runs.map(r => r.p50Ms)), p99Ms: median(runs.map(r => r.p99Ms)) };
}

// ---- fleet:manifest -----------------------------------------------------------------------------

export async function fleetManifestBench(): Promise<void> {
	const secret = randomBytes(32).toString("base64url");
	const bare = await startBare(secret);
	let baseline: Figure;
	const lines: string[] = [];
	try {
		const requests = bareTokens(secret, SCREENS).map(t => ({ headers: { ...bearer(t), "If-None-Match": '"bare-manifest"' } }));
		const r = await runLoad({ url: `${bare.url}/device/manifest`, method: "GET", requests, expect: 304, watch: { bare: bare.pid } });
		lines.push(statusLine("bare", r));
		baseline = figure("bare node:http: HS256 verify, If-None-Match → 304", r);
	} finally {
		bare.stop();
	}
	const platform = await startPlatformProcess({ ...PLATFORM_ENV, DATA_DIR: tempDir("marquee-bench-fleet-") });
	try {
		const started = Date.now();
		const fleet = await registerFleet(platform.api, SCREENS);
		const etags: string[] = [];
		await each(SCREENS, 8, async i => {
			etags[i] = await manifestEtag(platform.api, fleet.tokens[i]);
		});
		console.log(`\nfleet:manifest — set-up (not timed): ${SCREENS} screens registered, each fetched its manifest once (200 + ETag) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
		const requests = fleet.tokens.map((t, i) => ({ headers: { ...bearer(t), "If-None-Match": etags[i] } }));
		const r = await runLoad({ url: platform.api("/device/manifest"), method: "GET", requests, expect: 304, watch: { platform: platform.proc.child.pid as number } });
		lines.push(statusLine("one process", r));
		report(`Device manifests, If-None-Match = current ETag (${CONNECTIONS} keep-alive connections over ${SCREENS} device tokens)`, baseline, [
			figure("GET /device/manifest → 304, one process (npm start)", r)
		]);
	} finally {
		await stopPlatformProcess(platform);
	}
	for (const line of lines) console.log(line);
	console.log("  target: ≥ 15 000 304s/s in one process");
}

// ---- fleet:memory -------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Resident MB of the platform's process tree once it has been quiet for a moment (lowest of a few samples). */
async function settledRss(pid: number): Promise<number> {
	await sleep(2000);
	let low = Infinity;
	for (let i = 0; i < 5; i++) {
		low = Math.min(low, sampleTree(pid).rssMb);
		await sleep(200);
	}
	return low;
}

/**
 * A process's live memory through its inspector (`node --inspect`): a full garbage collection,
 * then `process.memoryUsage()`. Unlike RSS, this is what the objects alive at that moment take.
 */
interface Inspector {
	liveMb(): Promise<{ heapMb: number; externalMb: number }>;
	close(): void;
}

async function openInspector(wsUrl: string): Promise<Inspector> {
	const ws = new WebSocket(wsUrl);
	await new Promise<void>((resolve, reject) => {
		ws.addEventListener("open", () => resolve(), { once: true });
		ws.addEventListener("error", () => reject(new Error(`inspector at ${wsUrl} did not answer`)), { once: true });
	});
	let next = 0;
	const waiting = new Map<number, (result: unknown) => void>();
	ws.addEventListener("message", event => {
		const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
		if (message.id !== undefined) waiting.get(message.id)?.(message.result);
	});
	const send = (method: string, params: Record<string, unknown> = {}) =>
		new Promise<unknown>(resolve => {
			const id = ++next;
			waiting.set(id, resolve);
			ws.send(JSON.stringify({ id, method, params }));
		});
	return {
		async liveMb() {
			// Twice: what the first collection frees can leave more for the second (weak references, finalizers).
			await send("HeapProfiler.collectGarbage");
			await sleep(200);
			await send("HeapProfiler.collectGarbage");
			const answer = (await send("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true })) as { result: { value: string } };
			const usage = JSON.parse(answer.result.value) as NodeJS.MemoryUsage;
			return { heapMb: usage.heapUsed / 1024 / 1024, externalMb: usage.external / 1024 / 1024 };
		},
		close: () => ws.close()
	};
}

/** The inspector of the platform's server process (tsx's wrapper opens one too: the one that runs the broker). */
async function platformInspector(proc: PlatformProcess): Promise<Inspector> {
	const started = Date.now();
	while (Date.now() - started < 10_000) {
		for (const url of proc.output().match(/ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/g) ?? []) {
			const inspector = await openInspector(url);
			const probe = await inspector.liveMb();
			// The wrapper holds a few MB of heap; the platform, with every service loaded, far more.
			if (probe.heapMb > 50) return inspector;
			inspector.close();
		}
		await sleep(200);
	}
	throw new Error(`no inspector of the platform process found in its output:\n${proc.output().slice(-2000)}`);
}

/** Opens `GET /device/events` for a screen and keeps it open (what a connected player holds). */
function openStream(url: string, token: string): Promise<http.ClientRequest> {
	return new Promise((resolve, reject) => {
		const req = http.get(`${url}/api/v1/device/events`, { headers: bearer(token), agent: false }, res => {
			if (res.statusCode !== 200) reject(new Error(`GET /device/events answered ${res.statusCode}`));
			res.on("data", () => undefined);
			resolve(req);
		});
		req.on("error", reject);
	});
}

export async function fleetMemoryBench(): Promise<void> {
	const dataDir = tempDir("marquee-bench-fleet-mem-");
	const inspect = `--inspect=127.0.0.1:0${PLATFORM_ENV.NODE_OPTIONS ? ` ${PLATFORM_ENV.NODE_OPTIONS}` : ""}`;
	const platform = await startPlatformProcess({ ...PLATFORM_ENV, NODE_OPTIONS: inspect, DATA_DIR: dataDir });
	const streams: http.ClientRequest[] = [];
	let inspector: Inspector | null = null;
	try {
		const pid = platform.proc.child.pid as number;
		inspector = await platformInspector(platform.proc);
		// The owner, the key and one screen first, so what is measured is the fleet, not first use.
		const fleet = await registerFleet(platform.api, 1);
		await heartbeatOnce(platform.api, fleet.tokens[0]);
		await manifestEtag(platform.api, fleet.tokens[0]);
		streams.push(await openStream(platform.url, fleet.tokens[0]));
		const live = inspector;
		const sample = async () => ({ rssMb: await settledRss(pid), ...(await live.liveMb()) });
		const before = await sample();
		const started = Date.now();
		await addScreens(platform.api, fleet, MEMORY_SCREENS, 8);
		const registerSec = (Date.now() - started) / 1000;
		const registered = await sample();
		await each(MEMORY_SCREENS, 8, async i => {
			await heartbeatOnce(platform.api, fleet.tokens[i + 1]);
			await manifestEtag(platform.api, fleet.tokens[i + 1]);
		});
		const active = await sample();
		await each(MEMORY_SCREENS, 16, async i => {
			streams.push(await openStream(platform.url, fleet.tokens[i + 1]));
		});
		const streaming = await sample();
		const kb = (mb: number) => ((mb * 1024) / MEMORY_SCREENS).toFixed(1);
		const line = (label: string, at: typeof before) =>
			`  ${label}: RSS ${at.rssMb.toFixed(1)} MB (+${kb(at.rssMb - before.rssMb)} KB/display), live heap ${at.heapMb.toFixed(1)} MB + external ${at.externalMb.toFixed(1)} MB (+${kb(at.heapMb + at.externalMb - before.heapMb - before.externalMb)} KB/display)`;
		const perDisplayKb = ((streaming.heapMb + streaming.externalMb - before.heapMb - before.externalMb) * 1024) / MEMORY_SCREENS;
		const dbBytes = dirBytes(path.join(dataDir, "db"));
		console.log(`\nMemory per display (fleet:memory; ${MEMORY_SCREENS} screens; RSS of the platform's process tree, lowest of 5 samples after 2 s quiet, an upper bound; live heap and external memory of the server process after a full garbage collection, through its inspector)`);
		console.log(`  before (owner, provisioning key, 1 screen): RSS ${before.rssMb.toFixed(1)} MB, live heap ${before.heapMb.toFixed(1)} MB + external ${before.externalMb.toFixed(1)} MB`);
		console.log(line(`registered (${registerSec.toFixed(1)} s, ${(MEMORY_SCREENS / registerSec).toFixed(0)}/s)`, registered));
		console.log(line("each also sent a heartbeat and fetched its manifest", active));
		console.log(line("each also holds its live stream open", streaming));
		console.log(`  (NeDB files under DATA_DIR/db: ${(dbBytes / 1024 / 1024).toFixed(1)} MB; the embedded store keeps every document in memory too)`);
		console.log(
			`  target: 100 000 displays in 2 GB ≈ 21 KB per display; live memory per display with presence, cached manifest and stream: ${perDisplayKb.toFixed(1)} KB → 100 000 displays ≈ ${((perDisplayKb * 100_000) / 1024 ** 2).toFixed(2)} GB more than idle`
		);
	} finally {
		for (const stream of streams) stream.destroy();
		inspector?.close();
		await stopPlatformProcess(platform);
	}
}

function dirBytes(dir: string): number {
	if (!fs.existsSync(dir)) return 0;
	let total = 0;
	for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, entry.name);
		total += entry.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
	}
	return total;
}

/** What the group did not measure, and why (after its last scenario). */
export function fleetSkipped(): void {
	console.log(`\nfleet: figures skipped: ${skipped.length ? "" : "none"}`);
	for (const line of skipped.splice(0)) console.log(`  - ${line}`);
}
