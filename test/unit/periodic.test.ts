/**
 * shared/periodic.ts with the memory store (one process): runs on its timer and on tick(), never
 * overlaps a slow run, reports errors and keeps going, and stop() waits, stops and releases the lock.
 */
import { MemoryKeyValueStore } from "../../shared/kv";
import { startPeriodicJob, type PeriodicJob } from "../../shared/periodic";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Resolves once `condition` holds, or fails after `ms`. */
async function eventually(condition: () => boolean, ms = 2000): Promise<void> {
	const deadline = Date.now() + ms;
	while (!condition()) {
		if (Date.now() > deadline) throw new Error("condition not met in time");
		await sleep(5);
	}
}

describe("startPeriodicJob (memory store)", () => {
	let kv: MemoryKeyValueStore;
	const jobs: PeriodicJob[] = [];
	const start = (options: Omit<Parameters<typeof startPeriodicJob>[0], "kv">): PeriodicJob => {
		const job = startPeriodicJob({ kv, ...options });
		jobs.push(job);
		return job;
	};

	beforeEach(() => {
		kv = new MemoryKeyValueStore();
	});
	afterEach(async () => {
		await Promise.all(jobs.splice(0).map(job => job.stop()));
	});

	it("runs on every tick of its timer", async () => {
		let runs = 0;
		start({ name: "timer", intervalMs: 20, owner: "node-a", run: async () => void runs++ });
		await eventually(() => runs >= 3);
		expect(runs).toBeGreaterThanOrEqual(3);
	});

	it("tick() runs it now and says this node led", async () => {
		let runs = 0;
		const job = start({ name: "manual", intervalMs: 60_000, owner: "node-a", run: async () => void runs++ });
		await expect(job.tick()).resolves.toBe(true);
		await expect(job.tick()).resolves.toBe(true);
		expect(runs).toBe(2);
		await expect(kv.get("lock:job:manual")).resolves.toBe("node-a");
	});

	it("takes the lock for 3 × interval", async () => {
		const now = { t: 1_000 };
		kv = new MemoryKeyValueStore(() => now.t);
		const job = start({ name: "ttl", intervalMs: 60_000, owner: "node-a", run: async () => undefined });
		await job.tick();
		now.t += 3 * 60_000 - 1;
		await expect(kv.acquireLock("lock:job:ttl", "node-b", 1)).resolves.toBe(false);
		now.t += 1;
		await expect(kv.acquireLock("lock:job:ttl", "node-b", 1)).resolves.toBe(true);
	});

	it("does not run while another owner holds the lock, and runs once it is free", async () => {
		let runs = 0;
		await kv.acquireLock("lock:job:held", "node-b", 60_000);
		const job = start({ name: "held", intervalMs: 60_000, owner: "node-a", run: async () => void runs++ });
		await expect(job.tick()).resolves.toBe(false);
		expect(runs).toBe(0);
		await kv.releaseLock("lock:job:held", "node-b");
		await expect(job.tick()).resolves.toBe(true);
		expect(runs).toBe(1);
	});

	it("never overlaps a slow run, neither from its timer nor from tick()", async () => {
		let active = 0;
		let maxActive = 0;
		let runs = 0;
		const job = start({
			name: "slow",
			intervalMs: 10,
			owner: "node-a",
			run: async () => {
				active++;
				maxActive = Math.max(maxActive, active);
				await sleep(80);
				active--;
				runs++;
			}
		});
		const [a, b, c] = await Promise.all([job.tick(), job.tick(), job.tick()]);
		expect([a, b, c]).toEqual([true, true, true]); // one run, shared by the three callers
		await eventually(() => runs >= 3, 3000);
		expect(maxActive).toBe(1);
	});

	it("reports errors to onError and keeps running", async () => {
		const errors: unknown[] = [];
		let calls = 0;
		const failure = new Error("boom");
		const job = start({
			name: "flaky",
			intervalMs: 15,
			owner: "node-a",
			run: async () => {
				calls++;
				if (calls <= 2) throw failure;
			},
			onError: err => errors.push(err)
		});
		await expect(job.tick()).resolves.toBe(false);
		expect(errors).toEqual([failure]);
		await eventually(() => calls >= 4);
		expect(errors).toEqual([failure, failure]);
		await expect(job.tick()).resolves.toBe(true);
	});

	it("an error of the store goes to onError too, and the job recovers", async () => {
		const errors: unknown[] = [];
		let broken = true;
		let runs = 0;
		const original = kv.acquireLock.bind(kv);
		kv.acquireLock = async (...args) => {
			if (broken) throw new Error("store down");
			return original(...args);
		};
		const job = start({ name: "store", intervalMs: 60_000, owner: "node-a", run: async () => void runs++, onError: err => errors.push(err) });
		await expect(job.tick()).resolves.toBe(false);
		expect(errors).toHaveLength(1);
		expect(runs).toBe(0);
		broken = false;
		await expect(job.tick()).resolves.toBe(true);
		expect(runs).toBe(1);
	});

	it("stop() waits for the run in flight, releases the lock and stops ticking", async () => {
		let runs = 0;
		let finished = false;
		const job = startPeriodicJob({
			name: "stopping",
			intervalMs: 15,
			kv,
			owner: "node-a",
			run: async () => {
				runs++;
				await sleep(50);
				finished = true;
			}
		});
		const ticking = job.tick();
		await sleep(5);
		await job.stop();
		expect(finished).toBe(true);
		await expect(ticking).resolves.toBe(true);
		await expect(kv.get("lock:job:stopping")).resolves.toBeNull();
		await expect(kv.acquireLock("lock:job:stopping", "node-b", 60_000)).resolves.toBe(true);
		const after = runs;
		await sleep(80);
		expect(runs).toBe(after);
		await expect(job.tick()).resolves.toBe(false);
		expect(runs).toBe(after);
	});

	it("stop() does not release a lock that another owner holds", async () => {
		const job = start({ name: "other", intervalMs: 60_000, owner: "node-a", run: async () => undefined });
		await kv.acquireLock("lock:job:other", "node-b", 60_000);
		await job.stop();
		await expect(kv.get("lock:job:other")).resolves.toBe("node-b");
	});

	it("jobs with different names do not share a lock", async () => {
		const a = start({ name: "one", intervalMs: 60_000, owner: "node-a", run: async () => undefined });
		const b = start({ name: "two", intervalMs: 60_000, owner: "node-b", run: async () => undefined });
		await expect(a.tick()).resolves.toBe(true);
		await expect(b.tick()).resolves.toBe(true);
	});
});
