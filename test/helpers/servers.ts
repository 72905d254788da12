/**
 * Real servers for integration tests: find one that is running, or start one, or say why not.
 *
 *   redisServer()       redis://127.0.0.1:PORT
 *   natsServer()        nats://127.0.0.1:PORT   (JetStream enabled)
 *   clickhouseServer()  http://127.0.0.1:PORT   (HTTP interface, user "default", no password)
 *   s3Server()          embedded s3rver in this test file (always available)
 *
 * Each of the first three tries, in order:
 *   1. the env override TEST_REDIS_URL / TEST_NATS_URL / TEST_CLICKHOUSE_URL (used as given);
 *   2. the standard local port (redis 6379 answers PING; nats 4222 has JetStream; clickhouse 8123
 *      answers /ping);
 *   3. the binary (redis-server, nats-server, clickhouse-server / `clickhouse server`), started as a
 *      child on free ports in a fresh temp dir (ClickHouse through scripts/clickhouse-local.sh);
 *   4. otherwise `{ reason }`, e.g. "redis-server not installed".
 * A binary that is installed but fails to start throws (with the end of its log): that is a
 * broken machine, not a reason to skip.
 *
 * Sharing. Jest gives every test file its own `globalThis` and `process`, so a started server is
 * cached on a core-module object (the only thing test files of one process share); every file of
 * the process gets the same server. The `stop()` of a returned handle is therefore a no-op: a
 * started child is killed, and its temp dir removed, when the test process exits (a small detached
 * watchdog does it, so it also happens when jest is killed), or earlier by `stopStartedServers()`.
 * Servers are shared, so tests isolate their data: Redis keys under `uniquePrefix(name)`, NATS
 * subjects/streams and ClickHouse databases with unique names.
 * `startServer(kind)` starts a private server from the binary (never a running one) whose `stop()`
 * kills it and removes its dir — for tests that stop or restart a server. `s3Server()` is not
 * shared either: each call starts an embedded server whose `stop()` stops it and removes its dir.
 * Set MARQUEE_TEST_SERVERS_DEBUG=1 to log each start and its duration.
 *
 * Skipping. Jest decides what to run while it collects, synchronously, so availability is checked
 * synchronously (env override set, binary installed, or a quick probe of the standard port):
 *
 *   describeWith("redis")("rate limiter", () => {
 *       let redis: TestServer;
 *       beforeAll(async () => { redis = await requireServer(redisServer()); });
 *       afterAll(() => redis.stop());
 *       ...
 *   });
 *
 * When something is missing the suite is registered with `describe.skip` and one line
 * "[skip] rate limiter: redis-server not installed ..." is printed. `describeWith("redis", "nats")`
 * needs both; `describeIf(available, reason)` is the general form; `serverAvailability(kind)` is
 * the synchronous check itself.
 */
import childProcess, { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { connect } from "nats";
import { startEmbeddedS3 } from "../../shared/storage";

export interface TestServer {
	url: string;
	stop(): Promise<void>;
}
export interface Unavailable {
	reason: string;
}
export type ServerKind = "redis" | "nats" | "clickhouse";
export type SuiteFn = (name: string, fn: () => void) => void;

const ROOT = path.resolve(__dirname, "../..");
const START_TIMEOUT_MS = 30_000;
const ENV: Record<ServerKind, string> = { redis: "TEST_REDIS_URL", nats: "TEST_NATS_URL", clickhouse: "TEST_CLICKHOUSE_URL" };
const STANDARD_PORT: Record<ServerKind, number> = { redis: 6379, nats: 4222, clickhouse: 8123 };
const BINARY: Record<ServerKind, string> = { redis: "redis-server", nats: "nats-server", clickhouse: "clickhouse-server" };

export function isUnavailable(x: unknown): x is Unavailable {
	return typeof x === "object" && x !== null && "reason" in x && typeof x.reason === "string" && !("url" in x);
}

/** A short random prefix for keys in a shared server, e.g. "ratelimit:3f9a1c2e:". */
export function uniquePrefix(name: string): string {
	return `${name}:${randomBytes(4).toString("hex")}:`;
}

// ---------------------------------------------------------------------------------------------
// Per-process registry (see "Sharing" above)

interface Started {
	url: string;
	kill(): Promise<void>;
}
interface Registry {
	servers: Map<ServerKind, Promise<TestServer | Unavailable>>;
	started: Started[];
	availability: Map<ServerKind, Unavailable | null>;
}
const REGISTRY = Symbol.for("marquee.test.servers");

function registry(): Registry {
	const holder = childProcess as unknown as Record<symbol, Registry | undefined>;
	holder[REGISTRY] ??= { servers: new Map(), started: [], availability: new Map() };
	return holder[REGISTRY];
}

function shared(kind: ServerKind, find: () => Promise<TestServer | Unavailable>): Promise<TestServer | Unavailable> {
	const servers = registry().servers;
	let found = servers.get(kind);
	if (!found) {
		found = find();
		servers.set(kind, found);
		// a failed start is not cached: the next caller gets a fresh attempt (and the error)
		found.catch(() => servers.delete(kind));
	}
	return found;
}

const noop = async (): Promise<void> => {};
const handle = (url: string): TestServer => ({ url, stop: noop });

/** Kills every server this process started (normally left to process exit). */
export async function stopStartedServers(): Promise<void> {
	const reg = registry();
	const started = reg.started.splice(0);
	reg.servers.clear();
	await Promise.all(started.map(s => s.kill()));
}

// ---------------------------------------------------------------------------------------------
// Public finders

export function redisServer(): Promise<TestServer | Unavailable> {
	return shared("redis", async () => {
		const override = process.env[ENV.redis];
		if (override) return handle(override);
		if (await redisAnswers(STANDARD_PORT.redis)) return handle(`redis://127.0.0.1:${STANDARD_PORT.redis}`);
		return startShared("redis");
	});
}

export function natsServer(): Promise<TestServer | Unavailable> {
	return shared("nats", async () => {
		const override = process.env[ENV.nats];
		if (override) return handle(override);
		const standard = `nats://127.0.0.1:${STANDARD_PORT.nats}`;
		if (await natsHasJetStream(standard)) return handle(standard);
		return startShared("nats");
	});
}

export function clickhouseServer(): Promise<TestServer | Unavailable> {
	return shared("clickhouse", async () => {
		const override = process.env[ENV.clickhouse];
		if (override) return handle(override);
		const standard = `http://127.0.0.1:${STANDARD_PORT.clickhouse}`;
		if (await clickhouseAnswers(standard)) return handle(standard);
		return startShared("clickhouse");
	});
}

/**
 * A fresh private server of `kind` from its binary (never an override or a running one), for tests
 * that must stop or restart a server; its `stop()` kills it and removes its temp dir.
 */
export async function startServer(kind: ServerKind): Promise<TestServer | Unavailable> {
	const plan = PLANS[kind];
	const bin = plan.binary();
	if (!bin) return { reason: missing(kind) };
	const started = await startChild(kind, dir => plan.plan(bin, dir));
	return { url: started.url, stop: started.kill };
}

async function startShared(kind: ServerKind): Promise<TestServer | Unavailable> {
	const started = await startServer(kind);
	return isUnavailable(started) ? started : handle(started.url);
}

/** How to start each kind: where its binary is, and the command line for a temp dir. */
const PLANS: Record<ServerKind, { binary(): string | null; plan(bin: string, dir: string): Promise<Plan> }> = {
	redis: {
		binary: () => findBinary("redis-server"),
		async plan(bin, dir) {
			const port = await freePort();
			const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"];
			return { command: bin, args, url: `redis://127.0.0.1:${port}`, ready: () => redisAnswers(port) };
		}
	},
	nats: {
		binary: () => findBinary("nats-server"),
		async plan(bin, dir) {
			const port = await freePort();
			const url = `nats://127.0.0.1:${port}`;
			const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", path.join(dir, "jetstream")];
			return { command: bin, args, url, ready: () => natsHasJetStream(url) };
		}
	},
	clickhouse: {
		// scripts/clickhouse-local.sh finds clickhouse-server or `clickhouse server` itself
		binary: () => findBinary("clickhouse-server") ?? findBinary("clickhouse"),
		async plan(_bin, dir) {
			const [httpPort, tcpPort] = [await freePort(), await freePort()];
			const url = `http://127.0.0.1:${httpPort}`;
			const args = [path.join(ROOT, "scripts/clickhouse-local.sh"), dir, String(httpPort), String(tcpPort)];
			return { command: "bash", args, url, ready: () => clickhouseAnswers(url) };
		}
	}
};

/** An embedded S3 server for this caller only, on a free port in a fresh temp dir; stop() removes it. */
export async function s3Server(): Promise<TestServer & { accessKey: string; secretKey: string }> {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-s3-"));
	const s3 = await startEmbeddedS3(dir, 0);
	return {
		url: s3.endpoint,
		accessKey: s3.accessKey,
		secretKey: s3.secretKey,
		async stop() {
			await s3.stop();
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
}

// ---------------------------------------------------------------------------------------------
// Skipping

/** `describe` when available; otherwise prints "[skip] <suite>: <reason>" once and uses `describe.skip`. */
export function describeIf(available: boolean, reason: string): SuiteFn {
	if (available) return (name, fn) => describe(name, fn);
	return (name, fn) => {
		process.stderr.write(`[skip] ${name}: ${reason}\n`);
		describe.skip(name, fn);
	};
}

/** `describeIf` for suites that need these servers. */
export function describeWith(...kinds: ServerKind[]): SuiteFn {
	const reasons = kinds.map(serverAvailability).filter(isUnavailable);
	return describeIf(reasons.length === 0, reasons.map(r => r.reason).join("; "));
}

/**
 * Synchronous, for collection time: null when `kind` can be had (override set, binary installed,
 * or the standard port answers), else why not.
 */
export function serverAvailability(kind: ServerKind): Unavailable | null {
	const cache = registry().availability;
	if (!cache.has(kind)) {
		let result: Unavailable | null = null;
		if (!process.env[ENV[kind]] && !PLANS[kind].binary() && !probeStandardPortSync(kind)) result = { reason: missing(kind) };
		cache.set(kind, result);
	}
	return cache.get(kind) ?? null;
}

/** For beforeAll: the server, or an Error carrying the reason (the suite should have been skipped). */
export async function requireServer<T extends TestServer>(server: Promise<T | Unavailable> | T | Unavailable): Promise<T> {
	const found = await server;
	if (isUnavailable(found)) throw new Error(found.reason);
	return found;
}

function missing(kind: ServerKind): string {
	return `${BINARY[kind]} not installed (nothing usable on 127.0.0.1:${STANDARD_PORT[kind]}, ${ENV[kind]} unset)`;
}

// ---------------------------------------------------------------------------------------------
// Probes

export function findBinary(name: string): string | null {
	const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin", "/sbin"];
	for (const dir of dirs) {
		if (!dir) continue;
		const file = path.join(dir, name);
		try {
			fs.accessSync(file, fs.constants.X_OK);
			if (fs.statSync(file).isFile()) return file;
		} catch {
			/* not here */
		}
	}
	return null;
}

/** Opens a TCP connection, sends `send`, resolves with what arrives first ("" on error or after 1 s). */
function exchange(port: number, send: string | null): Promise<string> {
	return new Promise(resolve => {
		const socket = net.connect({ host: "127.0.0.1", port });
		const done = (answer: string) => {
			socket.destroy();
			resolve(answer);
		};
		socket.setTimeout(1000, () => done(""));
		socket.once("error", () => done(""));
		socket.once("connect", () => {
			if (send !== null) socket.write(send);
		});
		socket.once("data", data => done(data.toString()));
	});
}

async function redisAnswers(port: number): Promise<boolean> {
	return (await exchange(port, "PING\r\n")).startsWith("+PONG");
}

async function clickhouseAnswers(url: string): Promise<boolean> {
	try {
		const res = await fetch(new URL("/ping", url), { signal: AbortSignal.timeout(1000) });
		return res.ok && (await res.text()).trim() === "Ok.";
	} catch {
		return false;
	}
}

export async function natsHasJetStream(url: string): Promise<boolean> {
	const port = Number(new URL(url).port);
	if (!(await exchange(port, null)).startsWith("INFO ")) return false;
	try {
		const nc = await connect({ servers: url, timeout: 1000, reconnect: false });
		try {
			await nc.jetstreamManager({ timeout: 1000 });
			return true;
		} finally {
			await nc.close();
		}
	} catch {
		return false;
	}
}

/** The same checks as above, in a child node process, because collection time is synchronous. */
function probeStandardPortSync(kind: ServerKind): boolean {
	const port = STANDARD_PORT[kind];
	const checks: Record<ServerKind, [string | null, string]> = {
		redis: ["PING\r\n", "+PONG"],
		nats: [null, '"jetstream":true'],
		clickhouse: ["GET /ping HTTP/1.0\r\n\r\n", "Ok."]
	};
	const [send, expect] = checks[kind];
	const script = `
		const s = require("net").connect({ host: "127.0.0.1", port: ${port} });
		let got = "";
		const end = () => { s.destroy(); process.exit(got.includes(${JSON.stringify(expect)}) ? 0 : 1); };
		s.setTimeout(1000, end); s.on("error", end); s.on("end", end);
		s.on("connect", () => { ${send === null ? "" : `s.write(${JSON.stringify(send)});`} });
		s.on("data", d => { got += d; if (got.includes(${JSON.stringify(expect)})) end(); });`;
	return spawnSync(process.execPath, ["-e", script], { timeout: 3000, stdio: "ignore" }).status === 0;
}

/** A port nobody listens on right now (bind port 0, read it, close). */
export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.unref();
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
	});
}

// ---------------------------------------------------------------------------------------------
// Starting children

interface Plan {
	command: string;
	args: string[];
	url: string;
	ready(): Promise<boolean>;
}

/**
 * Starts `kind` in a fresh temp dir, waits until `ready`, and registers it for the exit watchdog.
 * Retries twice on early exit (a free port can be taken between probe and bind).
 */
async function startChild(kind: ServerKind, plan: (dir: string) => Promise<Plan>): Promise<Started> {
	let lastError: unknown;
	for (let attempt = 1; attempt <= 3; attempt++) {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), `marquee-${kind}-`));
		try {
			const started = await startOnce(kind, dir, await plan(dir));
			registry().started.push(started);
			return started;
		} catch (err) {
			lastError = err;
			fs.rmSync(dir, { recursive: true, force: true });
		}
	}
	throw lastError;
}

async function startOnce(kind: ServerKind, dir: string, plan: Plan): Promise<Started> {
	const logFile = path.join(dir, `${kind}.out`);
	const log = fs.openSync(logFile, "a");
	const child = spawn(plan.command, plan.args, { cwd: dir, stdio: ["ignore", log, log] });
	fs.closeSync(log);
	child.unref();
	let exited: string | null = null;
	child.once("exit", (code, signal) => (exited = `exited with ${signal ?? code}`));
	child.once("error", err => (exited = err.message));
	watchdog(child, dir);

	const kill = () => killChild(child, dir);
	const began = Date.now();
	while (!(await plan.ready())) {
		if (exited !== null || Date.now() - began > START_TIMEOUT_MS) {
			const why = exited ?? `did not answer within ${START_TIMEOUT_MS} ms`;
			const tail = readTail(dir);
			await kill();
			throw new Error(`${kind} (${plan.command} ${plan.args.join(" ")}) ${why}\n${tail}`);
		}
		await new Promise(resolve => setTimeout(resolve, 50));
	}
	if (process.env.MARQUEE_TEST_SERVERS_DEBUG) process.stderr.write(`[servers] ${kind} started at ${plan.url} in ${Date.now() - began} ms\n`);
	return { url: plan.url, kill };
}

async function killChild(child: ChildProcess, dir: string): Promise<void> {
	if (child.exitCode === null && child.signalCode === null) {
		const gone = new Promise(resolve => child.once("exit", resolve));
		child.kill("SIGTERM");
		const timer = setTimeout(() => child.kill("SIGKILL"), 1000); // throwaway data: no need to wait for a clean shutdown
		await gone;
		clearTimeout(timer);
	}
	fs.rmSync(dir, { recursive: true, force: true });
}

/** A detached shell that kills `child` and removes `dir` once this process is gone (however it ends). */
function watchdog(child: ChildProcess, dir: string): void {
	if (child.pid === undefined) return;
	// "alive" = exists and is not a zombie (an orphaned child is not always reaped in containers)
	const script = [
		`alive() { kill -0 "$1" 2>/dev/null && ! { [ -r /proc/$1/stat ] && sed 's/.*) //' /proc/$1/stat | grep -q '^Z'; }; }`,
		`while alive ${process.pid} && alive ${child.pid}; do sleep 0.5; done`,
		`if alive ${child.pid}; then kill ${child.pid}; for i in 1 2 3 4 5; do alive ${child.pid} || break; sleep 0.2; done; alive ${child.pid} && kill -9 ${child.pid}; fi`,
		`rm -rf '${dir.replace(/'/g, "'\\''")}'`
	].join("\n");
	spawn("sh", ["-c", script], { detached: true, stdio: "ignore" }).unref();
}

function readTail(dir: string): string {
	const lines: string[] = [];
	const files = (d: string): string[] =>
		fs.readdirSync(d, { withFileTypes: true }).flatMap(e => (e.isDirectory() ? files(path.join(d, e.name)) : [path.join(d, e.name)]));
	for (const file of files(dir).filter(f => /\.(out|log)$/.test(f))) {
		const text = fs.readFileSync(file, "utf8").trim();
		if (text) lines.push(`--- ${path.basename(file)}`, ...text.split("\n").slice(-10));
	}
	return lines.join("\n");
}
