/**
 * The contract every KeyValueStore (shared/kv.ts) keeps, run against each implementation:
 * test/unit/kv.test.ts (memory) and test/integration/kv.redis.test.ts (Redis).
 *
 *   describeKeyValueContract("MemoryKeyValueStore", async () => new MemoryKeyValueStore());
 *
 * `makeStore` is called before each test (a fresh store, or one with a fresh key prefix) and the
 * store is closed after it. Expiry is checked by really waiting (TTLs of 60–100 ms).
 */
import type { KeyValueStore } from "../../shared/kv";

export interface KeyValueContractOptions {
	/** How far a reported TTL may lag behind the requested one (clock granularity, round trips). */
	ttlSlackMs?: number;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export function describeKeyValueContract(
	name: string,
	makeStore: () => Promise<KeyValueStore>,
	options: KeyValueContractOptions = {}
): void {
	const slack = options.ttlSlackMs ?? 40;

	describe(`${name} keeps the key/value contract`, () => {
		let kv: KeyValueStore;
		beforeEach(async () => {
			kv = await makeStore();
		});
		afterEach(async () => {
			await kv.close();
		});

		describe("get / set / del", () => {
			it("a missing key reads null", async () => {
				await expect(kv.get("missing")).resolves.toBeNull();
			});

			it("reads back what was set, overwrites, and deletes", async () => {
				await kv.set("k", "one");
				await expect(kv.get("k")).resolves.toBe("one");
				await kv.set("k", "two");
				await expect(kv.get("k")).resolves.toBe("two");
				await kv.del("k");
				await expect(kv.get("k")).resolves.toBeNull();
				await expect(kv.del("k")).resolves.toBeUndefined();
			});

			it("keeps keys apart, whatever characters they hold", async () => {
				await kv.set("a:b", "1");
				await kv.set("a:b:c", "2");
				await kv.set("tenant/ü ✓", "3");
				await expect(kv.get("a:b")).resolves.toBe("1");
				await expect(kv.get("a:b:c")).resolves.toBe("2");
				await expect(kv.get("tenant/ü ✓")).resolves.toBe("3");
				await expect(kv.get("a")).resolves.toBeNull();
			});

			it("stores values as given (empty, long, JSON)", async () => {
				const json = JSON.stringify({ online: true, at: "2025-01-01T00:00:00Z" });
				await kv.set("empty", "");
				await kv.set("long", "x".repeat(100_000));
				await kv.set("json", json);
				await expect(kv.get("empty")).resolves.toBe("");
				await expect(kv.get("long")).resolves.toHaveLength(100_000);
				await expect(kv.get("json")).resolves.toBe(json);
			});
		});

		describe("ttl", () => {
			it("a key set with a ttl expires", async () => {
				await kv.set("short", "v", 80);
				await expect(kv.get("short")).resolves.toBe("v");
				await sleep(150);
				await expect(kv.get("short")).resolves.toBeNull();
			});

			it("a key set without a ttl stays", async () => {
				await kv.set("long", "v");
				await sleep(120);
				await expect(kv.get("long")).resolves.toBe("v");
			});

			it("setting again without a ttl makes the key permanent; with one, restarts it", async () => {
				await kv.set("a", "1", 80);
				await kv.set("a", "2");
				await kv.set("b", "1", 80);
				await sleep(50);
				await kv.set("b", "2", 100);
				await sleep(60); // 110 ms after the first set of b, 60 ms after the second
				await expect(kv.get("a")).resolves.toBe("2");
				await expect(kv.get("b")).resolves.toBe("2");
				await sleep(100);
				await expect(kv.get("b")).resolves.toBeNull();
			});
		});

		describe("setIfAbsent", () => {
			it("sets only when absent", async () => {
				await expect(kv.setIfAbsent("once", "first", 10_000)).resolves.toBe(true);
				await expect(kv.setIfAbsent("once", "second", 10_000)).resolves.toBe(false);
				await expect(kv.get("once")).resolves.toBe("first");
			});

			it("counts a key set by set() as present, and a deleted one as absent", async () => {
				await kv.set("k", "v");
				await expect(kv.setIfAbsent("k", "w", 10_000)).resolves.toBe(false);
				await kv.del("k");
				await expect(kv.setIfAbsent("k", "w", 10_000)).resolves.toBe(true);
				await expect(kv.get("k")).resolves.toBe("w");
			});

			it("the value expires after its ttl, and the key can be set again", async () => {
				await expect(kv.setIfAbsent("ttl", "first", 80)).resolves.toBe(true);
				await sleep(150);
				await expect(kv.get("ttl")).resolves.toBeNull();
				await expect(kv.setIfAbsent("ttl", "second", 10_000)).resolves.toBe(true);
				await expect(kv.get("ttl")).resolves.toBe("second");
			});

			it("exactly one of many concurrent callers wins", async () => {
				const results = await Promise.all(Array.from({ length: 25 }, (_, i) => kv.setIfAbsent("race", `c${i}`, 10_000)));
				expect(results.filter(Boolean)).toHaveLength(1);
				await expect(kv.get("race")).resolves.toBe(`c${results.indexOf(true)}`);
			});
		});

		describe("swap", () => {
			it("sets and answers the previous value; concurrent swaps see each value once", async () => {
				await expect(kv.swap("state", "online")).resolves.toBeNull();
				await expect(kv.swap("state", "offline", 5000)).resolves.toBe("online");
				await expect(kv.get("state")).resolves.toBe("offline");
				const previous = await Promise.all(["a", "b", "c", "d"].map(v => kv.swap("race", v)));
				expect(previous.filter(v => v === null)).toHaveLength(1);
			});

			it("applies the ttl it is given", async () => {
				await kv.swap("brief", "x", 60);
				await sleep(100);
				await expect(kv.get("brief")).resolves.toBeNull();
			});
		});

		describe("swapIfStale", () => {
			it("flips only while the stamp is older than the cutoff, answering the previous value", async () => {
				await kv.set("status", "online");
				await expect(kv.swapIfStale("status", "offline", "seen", 1000)).resolves.toEqual({ swapped: true, previous: "online" });
				await kv.set("status", "online");
				await kv.set("seen", "1500");
				await expect(kv.swapIfStale("status", "offline", "seen", 1000)).resolves.toEqual({ swapped: false, previous: null });
				await expect(kv.get("status")).resolves.toBe("online");
				await expect(kv.swapIfStale("status", "offline", "seen", 2000, 5000)).resolves.toEqual({ swapped: true, previous: "online" });
				await expect(kv.get("status")).resolves.toBe("offline");
				await expect(kv.swapIfStale("fresh-key", "x", "seen", 2000)).resolves.toEqual({ swapped: true, previous: null });
			});
		});

		describe("peek", () => {
			it("reads a counter and its window without counting; null when absent", async () => {
				await expect(kv.peek("p")).resolves.toBeNull();
				await kv.incr("p", 1000);
				await kv.incr("p", 1000);
				const seen = await kv.peek("p");
				expect(seen?.count).toBe(2);
				expect(seen?.ttlMs).toBeGreaterThan(1000 - slack - 50);
				expect(seen?.ttlMs).toBeLessThanOrEqual(1000);
				expect((await kv.peek("p"))?.count).toBe(2);
				expect((await kv.incr("p", 1000)).count).toBe(3);
			});

			it("forgets a counter once its window has passed", async () => {
				await kv.incr("p2", 60);
				await sleep(100);
				await expect(kv.peek("p2")).resolves.toBeNull();
			});
		});

		describe("incr (fixed windows)", () => {
			it("counts up; the first increment starts the window", async () => {
				const first = await kv.incr("hits", 10_000);
				expect(first.count).toBe(1);
				expect(first.ttlMs).toBeLessThanOrEqual(10_000);
				expect(first.ttlMs).toBeGreaterThan(10_000 - slack);
				const second = await kv.incr("hits", 10_000);
				const third = await kv.incr("hits", 10_000);
				expect([second.count, third.count]).toEqual([2, 3]);
				expect(third.ttlMs).toBeLessThanOrEqual(first.ttlMs);
				expect(third.ttlMs).toBeGreaterThan(10_000 - slack);
			});

			it("later increments do not extend the window", async () => {
				await kv.incr("fixed", 200);
				await sleep(100);
				const later = await kv.incr("fixed", 200);
				expect(later.count).toBe(2);
				expect(later.ttlMs).toBeLessThanOrEqual(100);
				expect(later.ttlMs).toBeGreaterThan(0);
			});

			it("starts a new window after expiry", async () => {
				await kv.incr("win", 80);
				await kv.incr("win", 80);
				await sleep(150);
				const fresh = await kv.incr("win", 5_000);
				expect(fresh.count).toBe(1);
				expect(fresh.ttlMs).toBeGreaterThan(5_000 - slack);
				expect(fresh.ttlMs).toBeLessThanOrEqual(5_000);
			});

			it("counters are independent per key", async () => {
				await kv.incr("a", 10_000);
				await kv.incr("a", 10_000);
				expect((await kv.incr("b", 10_000)).count).toBe(1);
				expect((await kv.incr("a", 10_000)).count).toBe(3);
			});

			it("concurrent increments are never lost", async () => {
				const results = await Promise.all(Array.from({ length: 50 }, () => kv.incr("burst", 10_000)));
				expect(results.map(r => r.count).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
				await expect(kv.get("burst")).resolves.toBe("50");
			});
		});

		describe("locks", () => {
			it("the owner takes and re-takes it; anyone else is refused", async () => {
				await expect(kv.acquireLock("lock", "node-a", 10_000)).resolves.toBe(true);
				await expect(kv.acquireLock("lock", "node-a", 10_000)).resolves.toBe(true);
				await expect(kv.acquireLock("lock", "node-b", 10_000)).resolves.toBe(false);
			});

			it("re-taking extends it", async () => {
				await expect(kv.acquireLock("ext", "node-a", 100)).resolves.toBe(true);
				await sleep(60);
				await expect(kv.acquireLock("ext", "node-a", 100)).resolves.toBe(true);
				await sleep(70); // past the first ttl, within the extended one
				await expect(kv.acquireLock("ext", "node-b", 100)).resolves.toBe(false);
			});

			it("only the owner can release it", async () => {
				await kv.acquireLock("rel", "node-a", 10_000);
				await kv.releaseLock("rel", "node-b");
				await expect(kv.acquireLock("rel", "node-b", 10_000)).resolves.toBe(false);
				await kv.releaseLock("rel", "node-a");
				await expect(kv.acquireLock("rel", "node-b", 10_000)).resolves.toBe(true);
				await expect(kv.acquireLock("rel", "node-a", 10_000)).resolves.toBe(false);
			});

			it("releasing a lock nobody holds is harmless", async () => {
				await expect(kv.releaseLock("nobody", "node-a")).resolves.toBeUndefined();
				await expect(kv.acquireLock("nobody", "node-a", 10_000)).resolves.toBe(true);
			});

			it("expiry frees it for another owner", async () => {
				await expect(kv.acquireLock("exp", "node-a", 80)).resolves.toBe(true);
				await expect(kv.acquireLock("exp", "node-b", 80)).resolves.toBe(false);
				await sleep(150);
				await expect(kv.acquireLock("exp", "node-b", 10_000)).resolves.toBe(true);
				await expect(kv.acquireLock("exp", "node-a", 10_000)).resolves.toBe(false);
			});

			it("a stale owner's release after expiry does not free the new owner's lock", async () => {
				await kv.acquireLock("stale", "node-a", 80);
				await sleep(150);
				await kv.acquireLock("stale", "node-b", 10_000);
				await kv.releaseLock("stale", "node-a");
				await expect(kv.acquireLock("stale", "node-c", 10_000)).resolves.toBe(false);
			});

			it("exactly one of many concurrent owners wins", async () => {
				const results = await Promise.all(Array.from({ length: 25 }, (_, i) => kv.acquireLock("race", `node-${i}`, 10_000)));
				expect(results.filter(Boolean)).toHaveLength(1);
			});
		});

		it("ping answers", async () => {
			await expect(kv.ping()).resolves.toBeUndefined();
		});
	});
}
