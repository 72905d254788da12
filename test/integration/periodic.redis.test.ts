/**
 * shared/periodic.ts on a real Redis: two nodes run the same job, exactly one leads per tick; a
 * leader that stops hands over at the other's next tick; a leader that vanishes (its Redis
 * connection gone, so it can neither extend nor release the lock) is replaced once its lock
 * expires after 3 × interval. Runs are waited for by count, never expected within a time: on a
 * loaded machine timers fire late (this test failed that way).
 */
import Redis from "ioredis";
import { RedisKeyValueStore } from "../../shared/kv";
import { startPeriodicJob, type PeriodicJob } from "../../shared/periodic";
import { describeWith, redisServer, requireServer, uniquePrefix, type TestServer } from "../helpers/servers";
import { until } from "../helpers/until";

/** The job's interval; its lock lives 3× this. Long enough that a stalled test step cannot outlive a lock it expects held. */
const INTERVAL_MS = 500;
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

interface Node {
	owner: string;
	kv: RedisKeyValueStore;
	job: PeriodicJob;
	/** When each run of this node started. */
	runs: number[];
	errors: unknown[];
	/** Cuts the node off Redis (closes its connection once). */
	disconnect(): Promise<void>;
}

describeWith("redis")("periodic job leadership over Redis", () => {
	let server: TestServer;
	let raw: Redis;
	let prefix: string;
	let nodes: Node[] = [];

	/** A node: its own Redis connection (as a separate process has) and the job "sweep". */
	function node(owner: string): Node {
		const kv = new RedisKeyValueStore(server.url, prefix);
		const runs: number[] = [];
		const errors: unknown[] = [];
		const job = startPeriodicJob({
			name: "sweep",
			intervalMs: INTERVAL_MS,
			kv,
			owner,
			run: async () => void runs.push(Date.now()),
			onError: err => errors.push(err)
		});
		let connected = true;
		const disconnect = async () => {
			if (connected) await kv.close();
			connected = false;
		};
		const created = { owner, kv, job, runs, errors, disconnect };
		nodes.push(created);
		return created;
	}

	const lockHolder = () => raw.get(`${prefix}lock:job:sweep`);


	beforeAll(async () => {
		server = await requireServer(redisServer());
		raw = new Redis(server.url);
	});
	afterAll(async () => {
		raw.disconnect();
		await server.stop();
	});
	beforeEach(() => {
		prefix = uniquePrefix("test:periodic");
	});
	afterEach(async () => {
		for (const n of nodes) {
			await n.job.stop();
			await n.disconnect();
		}
		nodes = [];
		await raw.del(`${prefix}lock:job:sweep`);
	});

	it("exactly one node runs per tick, and the leader keeps leading", async () => {
		const a = node("node-a");
		const b = node("node-b");
		await expect(a.job.tick()).resolves.toBe(true);
		for (let round = 0; round < 5; round++) {
			const led = await Promise.all([a.job.tick(), b.job.tick()]);
			expect(led).toEqual([true, false]);
		}
		// meanwhile and afterwards, the timers tick on both nodes: node-a runs on, node-b never
		// (waited for by count, not by time: a loaded machine fires timers late)
		await until("eight runs of node-a", () => a.runs.length >= 6 + 2);
		expect(b.runs).toEqual([]);
		expect(await lockHolder()).toBe("node-a");
		expect([...a.errors, ...b.errors]).toEqual([]);
	});

	it("concurrent first ticks elect exactly one leader", async () => {
		const a = node("node-a");
		const b = node("node-b");
		const led = await Promise.all([a.job.tick(), b.job.tick()]);
		expect(led.filter(Boolean)).toHaveLength(1);
		expect(await lockHolder()).toBe(led[0] ? "node-a" : "node-b");
	});

	it("when the leader stops, the other node leads on its next tick", async () => {
		const a = node("node-a");
		const b = node("node-b");
		await expect(a.job.tick()).resolves.toBe(true);
		await expect(b.job.tick()).resolves.toBe(false);
		await a.job.stop();
		expect(await lockHolder()).toBeNull();
		const runsOfA = a.runs.length;
		await expect(b.job.tick()).resolves.toBe(true);
		expect(await lockHolder()).toBe("node-b");
		await until("three runs of node-b", () => b.runs.length >= 3);
		expect(a.runs.length).toBe(runsOfA);
	});

	it("when the leader vanishes without releasing, the other node takes over once the lock expires", async () => {
		const a = node("node-a");
		const b = node("node-b");
		await expect(a.job.tick()).resolves.toBe(true);
		await sleep(2 * INTERVAL_MS); // a few timer ticks: node-a keeps extending its lock
		expect(b.runs).toEqual([]);

		// node-a is cut off: its timer keeps firing but nothing reaches Redis any more
		await a.disconnect();
		await sleep(20); // a tick in flight at that moment has settled
		const lastRunOfA = a.runs[a.runs.length - 1];
		const cutAt = Date.now();
		const lockLeft = await raw.pttl(`${prefix}lock:job:sweep`);
		expect(await lockHolder()).toBe("node-a");
		await expect(b.job.tick()).resolves.toBe(false);

		await until("a run of node-b", () => b.runs.length > 0);
		// Not before node-a's lock expired (Redis's clock enforces it): at least the time it had left
		// when node-a was cut off (an extension already on the wire could only move that later; a
		// few ms for rounding between the two clocks).
		expect(lockLeft).toBeGreaterThan(0);
		expect(b.runs[0]).toBeGreaterThanOrEqual(cutAt + lockLeft - 5);
		expect(await lockHolder()).toBe("node-b");
		expect(a.runs[a.runs.length - 1]).toBe(lastRunOfA);
		expect(a.errors.length).toBeGreaterThan(0);
		expect(b.errors).toEqual([]);
	});
});
