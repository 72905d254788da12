/**
 * Analytics in its production shape: a ClickHouse server over HTTP (Debian's 18.16 here), the
 * channels on NATS JetStream, Redis for locks — and the same platform code as the embedded mode.
 *
 * - 100 000 plays posted in 200 batches are all in the report, exactly;
 * - ClickHouse stopped for 30 s while screens keep posting: every POST is still accepted, reports
 *   answer 503, the analytics service holds at most what JetStream lets it have in flight
 *   (back-pressure, not an unbounded buffer), and once ClickHouse is back every play is there
 *   exactly once.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { ServiceSchema } from "moleculer";
import AnalyticsService from "../../services/analytics.service";
import { closeSharedKeyValueStores } from "../../shared/kv";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request } from "../helpers/platform";
import { describeWith, natsServer, redisServer, requireServer, uniquePrefix } from "../helpers/servers";

/** How long ClickHouse stays down (the 30 s; MARQUEE_CLICKHOUSE_OUTAGE_MS shortens it locally). */
const OUTAGE_MS = Number(process.env.MARQUEE_CLICKHOUSE_OUTAGE_MS ?? 30_000);
/** The playback channel's maxInFlight (services/analytics.service.ts). */
const PLAYBACK_IN_FLIGHT = 200;
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
	});
}

/** A private ClickHouse server that can be stopped and started again on the same ports and data. */
class RestartableClickHouse {
	private child: ChildProcess | null = null;
	private constructor(
		readonly dir: string,
		readonly httpPort: number,
		readonly tcpPort: number
	) {}

	static async create(): Promise<RestartableClickHouse> {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-ch-"));
		const ch = new RestartableClickHouse(dir, await freePort(), await freePort());
		await ch.start();
		return ch;
	}

	get url(): string {
		return `http://127.0.0.1:${this.httpPort}`;
	}

	async start(): Promise<void> {
		const script = path.resolve(__dirname, "../../scripts/clickhouse-local.sh");
		this.child = spawn("bash", [script, this.dir, String(this.httpPort), String(this.tcpPort)], { stdio: "ignore" });
		const deadline = Date.now() + 30_000;
		for (;;) {
			try {
				if ((await fetch(`${this.url}/ping`)).ok) return;
			} catch {
				/* not yet */
			}
			if (Date.now() > deadline) throw new Error("ClickHouse did not start");
			await sleep(100);
		}
	}

	async stop(): Promise<void> {
		const child = this.child;
		if (!child || child.exitCode !== null) return;
		const exited = new Promise(resolve => child.once("exit", resolve));
		child.kill("SIGTERM");
		await Promise.race([exited, sleep(15_000)]);
		if (child.exitCode === null) child.kill("SIGKILL");
		this.child = null;
	}

	async remove(): Promise<void> {
		await this.stop();
		fs.rmSync(this.dir, { recursive: true, force: true });
	}
}

interface Totals {
	totals: { plays: number; durationMs: number };
}

describeWith("clickhouse", "nats", "redis")("analytics on a ClickHouse server with NATS JetStream", () => {
	let ch: RestartableClickHouse;
	let p: Platform;
	let owner: Session;
	let token: string;
	let contentId: string;
	const from = new Date(Date.now() - 86_400_000).toISOString();
	const to = new Date(Date.now() + 3_600_000).toISOString();

	const post = (events: unknown[]) => request<{ accepted: number; duplicates: number }>(p.api("/device/playback"), { method: "POST", headers: bearer(token), json: { events } });
	const totals = () => request<Totals>(p.api(`/analytics/playback?from=${from}&to=${to}`), { headers: bearer(owner.accessToken) });
	const batch = (prefix: string, n: number, durationMs: (i: number) => number) =>
		Array.from({ length: n }, (_, i) => ({ eventId: `${prefix}-${i}`, contentId, startedAt: new Date(Date.now() - 3_600_000 + i).toISOString(), durationMs: durationMs(i) }));

	async function until(what: string, done: (t: Totals["totals"]) => boolean, ms = 60_000): Promise<Totals["totals"]> {
		const deadline = Date.now() + ms;
		let last: unknown = null;
		for (;;) {
			const res = await totals();
			last = res.body;
			if (res.status === 200 && done(res.body.totals)) return res.body.totals;
			if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms (last ${JSON.stringify(last)})`);
			await sleep(200);
		}
	}

	beforeAll(async () => {
		const [nats, redis] = await Promise.all([requireServer(natsServer()), requireServer(redisServer())]);
		ch = await ClickHouse();
		p = await startTestPlatform({
			TRANSPORTER: nats.url,
			REDIS_URL: redis.url,
			CLICKHOUSE_URL: `${ch.url}/marquee_it`,
			NAMESPACE: uniquePrefix("analytics").replace(/:/g, "").replace(/[^a-z0-9]/gi, ""),
			ANALYTICS_BATCH_MS: "200"
		});
		owner = await register(p, newAccount("ch"));
		const paired = await pairDisplay(p, owner, { name: "Server screen" });
		token = paired.token;
		const item = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Ad", url: "https://example.com/", durationMs: 5000 } });
		contentId = item.body.id;
	}, 90_000);
	afterAll(async () => {
		await p?.stop();
		await ch?.remove();
		// The platform's Redis connections (a process closes them at exit; a test file must itself).
		await closeSharedKeyValueStores();
	});

	async function ClickHouse() {
		return RestartableClickHouse.create();
	}

	it("shows 100 000 plays posted in 200 batches exactly, with their total duration", async () => {
		let expectedMs = 0;
		for (let b = 0; b < 200; b++) {
			const events = batch(`bulk${b}`, 500, i => 1000 + ((b * 500 + i) % 7));
			expectedMs += events.reduce((n, e) => n + e.durationMs, 0);
			const res = await post(events);
			expect(res.status).toBe(202);
			expect(res.body).toEqual({ accepted: 500, duplicates: 0 });
		}
		const t = await until("100 000 plays", t => t.plays >= 100_000);
		expect(t).toEqual({ plays: 100_000, durationMs: expectedMs });
	}, 180_000);

	it("keeps accepting while ClickHouse is down, holds only what is in flight, and stores every play once after", async () => {
		const before = (await totals()).body.totals;
		await ch.stop();
		const analytics = p.broker.getLocalService("analytics") as unknown as (typeof AnalyticsService & ServiceSchema) & { playbackBatcher: { buffered: number } };
		const started = Date.now();
		let posted = 0;
		let maxBuffered = 0;
		// 300 batches of 100 while it is down: more messages than the consumer may have unacknowledged.
		for (let b = 0; b < 300; b++) {
			const res = await post(batch(`down${b}`, 100, () => 2000));
			expect(res.status).toBe(202);
			posted += 100;
			maxBuffered = Math.max(maxBuffered, analytics.playbackBatcher.buffered);
		}
		// The last batch again while down (a screen that missed the answer): still one play each.
		expect((await post(batch("down299", 100, () => 2000))).body).toEqual({ accepted: 0, duplicates: 100 });
		const report = await totals();
		expect(report.status).toBe(503);
		expect((report.body as unknown as { error: { type: string } }).error.type).toBe("SERVICE_UNAVAILABLE");
		while (Date.now() - started < OUTAGE_MS) {
			maxBuffered = Math.max(maxBuffered, analytics.playbackBatcher.buffered);
			await sleep(250);
		}
		expect(maxBuffered).toBeGreaterThan(0);
		expect(maxBuffered).toBeLessThanOrEqual(PLAYBACK_IN_FLIGHT * 100);
		await ch.start();
		const t = await until("every play after the outage", t => t.plays >= before.plays + posted, 120_000);
		expect(t).toEqual({ plays: before.plays + posted, durationMs: before.durationMs + posted * 2000 });
		// Nothing arrives twice later either.
		await sleep(1000);
		expect((await totals()).body.totals).toEqual(t);
	}, 240_000);
});
