/**
 * shared/kv.ts in memory: the key/value contract, its injected clock, the shared store per
 * namespace, and withLock. The contract runs on a controllable clock; no case depends on how fast
 * the machine is (withLock's cases wait briefly, but assert only on order and outcome).
 */
import { MemoryKeyValueStore, sharedKeyValueStore, withLock } from "../../shared/kv";
import { describeKeyValueContract } from "../helpers/kv-contract";

describeKeyValueContract("MemoryKeyValueStore", async () => {
	let now = 1_700_000_000_000;
	return {
		store: new MemoryKeyValueStore(() => now),
		advance: async (ms: number) => {
			now += ms;
		},
		exactClock: true
	};
});

describe("MemoryKeyValueStore with an injected clock", () => {
	let now = 1_000_000;
	const kv = new MemoryKeyValueStore(() => now);

	it("expires entries, windows and locks by that clock", async () => {
		await kv.set("k", "v", 1000);
		await kv.acquireLock("lock", "node-a", 1000);
		expect(await kv.incr("c", 1000)).toEqual({ count: 1, ttlMs: 1000 });
		now += 400;
		expect(await kv.incr("c", 1000)).toEqual({ count: 2, ttlMs: 600 });
		now += 599;
		expect(await kv.get("k")).toBe("v");
		expect(await kv.acquireLock("lock", "node-b", 1000)).toBe(false);
		now += 1;
		expect(await kv.get("k")).toBeNull();
		expect(await kv.incr("c", 1000)).toEqual({ count: 1, ttlMs: 1000 });
		expect(await kv.acquireLock("lock", "node-b", 1000)).toBe(true);
	});

	it("keys nobody reads again do not pile up: expired ones are swept out as new keys arrive", async () => {
		let clock = 0;
		const flood = new MemoryKeyValueStore(() => clock);
		const size = () => (flood as unknown as { entries: Map<string, unknown> }).entries.size;
		for (let round = 0; round < 10; round++) {
			for (let i = 0; i < 20_000; i++) await flood.incr(`rl:ip:10.${round}.${i >> 8}.${i & 255}`, 60_000);
			clock += 61_000;
		}
		// Ten rounds of 20 000 addresses, each seen once: at most the live round and the one before stay.
		expect(size()).toBeLessThanOrEqual(40_000);
		await flood.set("kept", "v");
		expect(await flood.get("kept")).toBe("v");
	});

	it("close() empties it", async () => {
		await kv.set("gone", "v");
		await kv.close();
		expect(await kv.get("gone")).toBeNull();
	});
});

describe("sharedKeyValueStore without REDIS_URL", () => {
	it("gives one memory store per namespace", () => {
		const a = sharedKeyValueStore({ redisUrl: null, namespace: "kv-unit-a", dataDir: "unused", nodeEnv: "test" });
		expect(a).toBeInstanceOf(MemoryKeyValueStore);
		expect(sharedKeyValueStore({ redisUrl: null, namespace: "kv-unit-a", dataDir: "unused", nodeEnv: "test" })).toBe(a);
		expect(sharedKeyValueStore({ redisUrl: null, namespace: "kv-unit-b", dataDir: "unused", nodeEnv: "test" })).not.toBe(a);
		expect(sharedKeyValueStore({ redisUrl: null, namespace: "", dataDir: "unused", nodeEnv: "test" })).not.toBe(a);
	});

	it("namespaces do not see each other's keys", async () => {
		const a = sharedKeyValueStore({ redisUrl: null, namespace: "kv-unit-c", dataDir: "unused", nodeEnv: "test" });
		const b = sharedKeyValueStore({ redisUrl: null, namespace: "kv-unit-d", dataDir: "unused", nodeEnv: "test" });
		await a.set("same-key", "from a");
		expect(await b.get("same-key")).toBeNull();
		expect(await a.acquireLock("lock:job:x", "node-a", 10_000)).toBe(true);
		expect(await b.acquireLock("lock:job:x", "node-b", 10_000)).toBe(true);
		expect((await a.incr("rl:x", 10_000)).count).toBe(1);
		expect((await b.incr("rl:x", 10_000)).count).toBe(1);
	});
});

describe("withLock", () => {
	it("runs one holder at a time and releases after failures too", async () => {
		const kv = new MemoryKeyValueStore();
		let inside = 0;
		let most = 0;
		const work = async () => {
			inside += 1;
			most = Math.max(most, inside);
			await new Promise(resolve => setTimeout(resolve, 2));
			inside -= 1;
		};
		await Promise.all(Array.from({ length: 10 }, () => withLock(kv, "lock:x", work)));
		expect(most).toBe(1);
		await expect(withLock(kv, "lock:x", async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
		await expect(withLock(kv, "lock:x", async () => "free again")).resolves.toBe("free again");
	});

	it("answers 503 when the lock stays taken past the wait", async () => {
		const kv = new MemoryKeyValueStore();
		await kv.acquireLock("lock:held", "someone else", 60_000);
		await expect(withLock(kv, "lock:held", async () => "never", { waitMs: 20 })).rejects.toMatchObject({ type: "SERVICE_UNAVAILABLE" });
	});
});
