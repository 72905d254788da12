/**
 * The processes of the fleet benchmark (bench/fleet.ts) other than the platform:
 *
 *  - `bare`: the baseline, a bare node:http server that does the least a heartbeat must: verify an
 *    HS256 JWT (node:crypto createHmac, constant-time compare, expiry), parse the JSON body, write
 *    the display's presence into a Map and answer a small JSON (and for GET, a 304 when
 *    If-None-Match equals its one ETag). Prints `{"port": N}` once listening.
 *  - `load`: the load generator: `connections` keep-alive connections, each sending its next
 *    request as soon as the previous one answered, taking turns with the given requests (one per
 *    device token), for a warm-up and then `durationMs`; prints one JSON line of figures.
 *
 * Both run in processes of their own, so neither the load nor the baseline shares an event loop
 * with what it measures.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { workerMain } from "./figures";
import { sampleTree } from "./platform-process";

export interface BareTask {
	cmd: "bare";
	/** HS256 secret the device tokens are signed with. */
	secret: string;
}

export interface LoadRequest {
	headers: Record<string, string>;
	body?: string;
}

export interface LoadTask {
	cmd: "load";
	url: string;
	method: "GET" | "POST";
	/** Request i of a connection's turn is requests[n mod length] (n counted over all connections). */
	requests: LoadRequest[];
	connections: number;
	warmMs: number;
	durationMs: number;
	/** The status every answer should have; others are counted and the first one reported. */
	expect: number;
	/** Process trees (name → root pid) whose CPU time over the window is reported; the load's own is added as `load`. */
	watch?: Record<string, number>;
}

export interface LoadResult {
	requests: number;
	seconds: number;
	p50Ms: number;
	p99Ms: number;
	/** Answers with the expected status per second. */
	okPerSec: number;
	statuses: Record<string, number>;
	firstError: string | null;
	/**
	 * The whole machine's CPU time over the measured window (every process: load, server, NATS,
	 * Redis), in ms, from /proc/stat; null where there is none. Over the answers, it is what an
	 * answer costs, a figure that moves less with the VM's speed than the rate does.
	 */
	machineCpuMs: number | null;
	/** Of the window, the time the hypervisor gave the machine's vCPUs to others (ms, all cores). */
	stealMs: number | null;
	/** CPU time (ms) over the window of each watched process tree, and of the load itself. */
	processCpuMs: Record<string, number>;
}

/** CPU time of the whole machine so far (ms): busy (user, nice, system, irq, softirq) and stolen. */
function machineTimes(): { busyMs: number; stealMs: number } | null {
	try {
		const [user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
		const tick = 1000 / 100; // USER_HZ is 100 on Linux
		return { busyMs: (user + nice + system + irq + softirq) * tick, stealMs: (steal || 0) * tick };
	} catch {
		return null;
	}
}

export type FleetTask = BareTask | LoadTask;

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

/** An HS256 JWT of `payload` (what the bare baseline verifies). */
export function signJwt(payload: Record<string, unknown>, secret: string): string {
	const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
	const body = b64url(JSON.stringify(payload));
	const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
	return `${head}.${body}.${sig}`;
}

/** The payload of a valid, unexpired HS256 JWT signed with `secret`, else null. */
function verifyJwt(token: string, secret: string): { sub?: string; exp?: number } | null {
	const parts = token.split(".");
	if (parts.length !== 3) return null;
	const expected = createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
	const given = Buffer.from(parts[2], "base64url");
	if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
	try {
		const header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8")) as { alg?: string };
		if (header.alg !== "HS256") return null;
		const payload = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as { sub?: string; exp?: number };
		if (typeof payload.exp === "number" && payload.exp * 1000 < Date.now()) return null;
		return payload;
	} catch {
		return null;
	}
}

const BARE_ETAG = '"bare-manifest"';

function bare(task: BareTask): void {
	const presence = new Map<string, { lastSeenAt: string; metrics: unknown }>();
	const answer = (res: http.ServerResponse, status: number, body: unknown) => {
		const text = JSON.stringify(body);
		res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
		res.end(text);
	};
	const server = http.createServer((req, res) => {
		const auth = req.headers.authorization ?? "";
		const claims = auth.startsWith("Bearer ") ? verifyJwt(auth.slice(7), task.secret) : null;
		if (!claims?.sub) {
			req.resume();
			return answer(res, 401, { error: "unauthorized" });
		}
		if (req.method === "GET") {
			if (req.headers["if-none-match"] === BARE_ETAG) {
				res.writeHead(304, { ETag: BARE_ETAG });
				return res.end();
			}
			return answer(res, 200, { etag: BARE_ETAG, items: [] });
		}
		const chunks: Buffer[] = [];
		req.on("data", (chunk: Buffer) => chunks.push(chunk));
		req.on("end", () => {
			try {
				const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { metrics?: unknown };
				const at = new Date().toISOString();
				presence.set(claims.sub as string, { lastSeenAt: at, metrics: body.metrics ?? null });
				answer(res, 200, { serverTime: at, manifestEtag: null, heartbeatIntervalSec: 30, commands: [] });
			} catch {
				answer(res, 400, { error: "bad body" });
			}
		});
	});
	server.keepAliveTimeout = 60_000;
	server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));
	process.on("SIGTERM", () => {
		server.closeAllConnections();
		server.close(() => process.exit(0));
	});
}

async function load(task: LoadTask): Promise<LoadResult> {
	const agent = new http.Agent({ keepAlive: true, maxSockets: task.connections, maxFreeSockets: task.connections });
	const target = new URL(task.url);
	const statuses: Record<string, number> = {};
	let firstError: string | null = null;
	let turn = 0;
	const once = (): Promise<{ status: number; ms: number }> =>
		new Promise(resolve => {
			const r = task.requests[turn++ % task.requests.length];
			const headers = r.body === undefined ? r.headers : { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(r.body)), ...r.headers };
			const started = performance.now();
			const req = http.request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: task.method, agent, headers }, res => {
				const status = res.statusCode ?? 0;
				const chunks: Buffer[] = [];
				res.on("data", (chunk: Buffer) => {
					if (status !== task.expect) chunks.push(chunk);
				});
				res.on("end", () => {
					if (status !== task.expect) firstError ??= `${status}: ${Buffer.concat(chunks).toString("utf8").slice(0, 300)}`;
					resolve({ status, ms: performance.now() - started });
				});
			});
			req.on("error", err => {
				firstError ??= err.message;
				resolve({ status: 0, ms: performance.now() - started });
			});
			req.end(r.body);
		});
	let latencies: number[] = [];
	let recording = false;
	let stopAt = Date.now() + task.warmMs + task.durationMs;
	const startedAt = { t: 0 };
	let machineAtStart: ReturnType<typeof machineTimes> = null;
	const watched = { ...task.watch, load: process.pid };
	const processTimes = () => Object.fromEntries(Object.entries(watched).map(([name, pid]) => [name, sampleTree(pid).cpuSec * 1000]));
	let processesAtStart: Record<string, number> = {};
	setTimeout(() => {
		machineAtStart = machineTimes();
		processesAtStart = processTimes();
		latencies = [];
		for (const k of Object.keys(statuses)) delete statuses[k];
		firstError = null;
		recording = true;
		startedAt.t = performance.now();
		stopAt = Date.now() + task.durationMs;
	}, task.warmMs);
	await Promise.all(
		Array.from({ length: task.connections }, async () => {
			while (!recording || Date.now() < stopAt) {
				const { status, ms } = await once();
				latencies.push(ms);
				statuses[status] = (statuses[status] ?? 0) + 1;
			}
		})
	);
	const seconds = (performance.now() - startedAt.t) / 1000;
	const machineAtEnd = machineTimes();
	const processesAtEnd = processTimes();
	const atStart = machineAtStart as ReturnType<typeof machineTimes>;
	agent.destroy();
	latencies.sort((a, b) => a - b);
	const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN);
	return {
		requests: latencies.length,
		seconds,
		p50Ms: q(0.5),
		p99Ms: q(0.99),
		okPerSec: (statuses[task.expect] ?? 0) / seconds,
		statuses,
		firstError,
		machineCpuMs: atStart && machineAtEnd ? machineAtEnd.busyMs - atStart.busyMs : null,
		stealMs: atStart && machineAtEnd ? machineAtEnd.stealMs - atStart.stealMs : null,
		processCpuMs: Object.fromEntries(Object.entries(processesAtEnd).map(([name, ms]) => [name, ms - (processesAtStart[name] ?? ms)]))
	};
}

async function main(): Promise<void> {
	// The task is the first argument, or (large ones: every device token) the whole of stdin.
	let raw = process.argv[2];
	if (raw === undefined) {
		const chunks: Buffer[] = [];
		for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
		raw = Buffer.concat(chunks).toString("utf8");
	}
	const task = JSON.parse(raw) as FleetTask;
	switch (task.cmd) {
		case "bare":
			return bare(task);
		case "load":
			process.stdout.write(`${JSON.stringify(await load(task))}\n`);
			return;
		default:
			throw new Error(`unknown task ${JSON.stringify(task)}`);
	}
}

if (require.main === module) workerMain(main);
