/**
 * The contract every KeyValueStore (shared/kv.ts) keeps, run against each implementation:
 * test/unit/kv.test.ts (memory, on a controllable clock) and test/integration/kv.redis.test.ts
 * (Redis, whose TTLs run on the server's own clock, so on real time).
 *
 *   describeKeyValueContract("MemoryKeyValueStore", async () => {
 *       let now = 0;
 *       return { store: new MemoryKeyValueStore(() => now), advance: async ms => void (now += ms), exactClock: true };
 *   });
 *
 * `makeBackend` is called before each test (a fresh store, or one with a fresh key prefix) and
 * the store is closed after it. Time passes only through the backend's `advance(ms)`: a fake
 * clock moves by exactly `ms`; real time waits at least `ms`.
 *
 * No case depends on how fast the machine is. On real time a busy machine only ever lets MORE
 * time pass than asked, so:
 *   - "still there" is only checked on keys whose ttl is LONG (a minute), far beyond any stall;
 *   - "gone" is only checked on keys whose ttl is SHORT, after advancing WELL_PAST it (3×);
 *   - a remaining ttl is checked exactly on a fake clock, and on real time as "at most what is
 *     expected (give or take timer rounding), and nowhere near running out".
 */
import type { KeyValueStore } from "../../shared/kv";

export interface KeyValueBackend {
	store: KeyValueStore;
	/** Lets `ms` pass for the store: a fake clock moves by exactly `ms`; real time waits at least `ms`. */
	advance(ms: number): Promise<void>;
	/** True when `advance` moves the store's own clock exactly (a fake clock): remaining ttls are checked to the millisecond. */
	exactClock: boolean;
}

/** A ttl no stall of a loaded machine comes near: keys expected to still be there carry it. */
export const LONG_TTL_MS = 60_000;
/** A ttl that is certainly over once WELL_PAST_MS has passed. */
export const SHORT_TTL_MS = 100;
/** How long the contract lets pass before it checks that a SHORT_TTL_MS key is gone. */
export const WELL_PAST_MS = 3 * SHORT_TTL_MS;
/** Real time only: how much a remaining ttl may exceed the expected one (timer and clock rounding between this process and the store). */
const ROUNDING_MS = 20;

/** Real time for stores that keep their own clock (Redis): resolves once at least `ms` have passed. */
export async function waitAtLeast(ms: number): Promise<void> {
	const end = performance.now() + ms;
	for (let left = ms; left > 0; left = end - performance.now()) {
		await new Promise(resolve => setTimeout(resolve, Math.ceil(left)));
	}
}

export function describeKeyValueContract(name: string, makeBackend: () => Promise<KeyValueBackend>): void {
	describe(`${name} keeps the key/value contract`, () => {
		let backend: KeyValueBackend;
		let kv: KeyValueStore;
		const advance = (ms: number) => backend.advance(ms);

		/** A remaining ttl: exactly `expected` on a fake clock; on real time at most that and far from running out. */
		function expectRemaining(actual: number | undefined, expected: number): void {
			if (backend.exactClock) {
				expect(actual).toBe(expected);
				return;
			}
			expect(actual).toBeLessThanOrEqual(expected + ROUNDING_MS);
			expect(actual).toBeGreaterThan(expected - LONG_TTL_MS / 2);
		}

		beforeEach(async () => {
			backend = await makeBackend();
			kv = backend.store;
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

			it("reads several keys at once, in their order, null for each missing or expired one", async () => {
				// Only LONG keys are read as present: a SHORT one may already be gone on a loaded machine.
				await kv.set("m:1", "one");
				await kv.set("m:2", "", LONG_TTL_MS);
				await kv.set("m:3", "three", SHORT_TTL_MS);
				await expect(kv.getMany(["m:2", "m:missing", "m:1", "m:2", "m:1"])).resolves.toEqual(["", null, "one", "", "one"]);
				await expect(kv.getMany([])).resolves.toEqual([]);
				await advance(WELL_PAST_MS);
				await expect(kv.getMany(["m:1", "m:3", "m:2"])).resolves.toEqual(["one", null, ""]);
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
			it("a key expires once its ttl (in milliseconds) has passed; one with a longer ttl is still there", async () => {
				await kv.set("short", "v", SHORT_TTL_MS);
				await kv.set("long", "v", LONG_TTL_MS);
				await advance(WELL_PAST_MS);
				await expect(kv.get("short")).resolves.toBeNull();
				await expect(kv.get("long")).resolves.toBe("v");
			});

			it("a key set without a ttl stays", async () => {
				await kv.set("forever", "v");
				await advance(WELL_PAST_MS);
				await expect(kv.get("forever")).resolves.toBe("v");
			});

			it("setting again without a ttl makes the key permanent; with one, restarts it", async () => {
				await kv.set("permanent", "1", SHORT_TTL_MS);
				await kv.set("permanent", "2");
				await kv.set("lengthened", "1", SHORT_TTL_MS);
				await kv.set("lengthened", "2", LONG_TTL_MS);
				await kv.set("shortened", "1", LONG_TTL_MS);
				await kv.set("shortened", "2", SHORT_TTL_MS);
				await advance(WELL_PAST_MS);
				await expect(kv.get("permanent")).resolves.toBe("2");
				await expect(kv.get("lengthened")).resolves.toBe("2");
				await expect(kv.get("shortened")).resolves.toBeNull();
			});
		});

		describe("setIfAbsent", () => {
			it("sets only when absent", async () => {
				await expect(kv.setIfAbsent("once", "first", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.setIfAbsent("once", "second", LONG_TTL_MS)).resolves.toBe(false);
				await expect(kv.get("once")).resolves.toBe("first");
			});

			it("counts a key set by set() as present, and a deleted one as absent", async () => {
				await kv.set("k", "v");
				await expect(kv.setIfAbsent("k", "w", LONG_TTL_MS)).resolves.toBe(false);
				await kv.del("k");
				await expect(kv.setIfAbsent("k", "w", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.get("k")).resolves.toBe("w");
			});

			it("the value expires after its ttl, and the key can be set again", async () => {
				await expect(kv.setIfAbsent("ttl", "first", SHORT_TTL_MS)).resolves.toBe(true);
				await expect(kv.setIfAbsent("held", "first", LONG_TTL_MS)).resolves.toBe(true);
				await advance(WELL_PAST_MS);
				await expect(kv.get("ttl")).resolves.toBeNull();
				await expect(kv.setIfAbsent("ttl", "second", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.get("ttl")).resolves.toBe("second");
				await expect(kv.setIfAbsent("held", "second", LONG_TTL_MS)).resolves.toBe(false);
				await expect(kv.get("held")).resolves.toBe("first");
			});

			it("exactly one of many concurrent callers wins", async () => {
				const results = await Promise.all(Array.from({ length: 25 }, (_, i) => kv.setIfAbsent("race", `c${i}`, LONG_TTL_MS)));
				expect(results.filter(Boolean)).toHaveLength(1);
				await expect(kv.get("race")).resolves.toBe(`c${results.indexOf(true)}`);
			});
		});

		describe("addRecent", () => {
			it("answers how many members were new, remembering only the newest `keep`", async () => {
				await expect(kv.addRecent("recent", ["a", "b", "c"], 4, LONG_TTL_MS)).resolves.toBe(3);
				await expect(kv.addRecent("recent", ["c", "d", "d"], 4, LONG_TTL_MS)).resolves.toBe(1);
				// "e" pushes out the oldest ("a"), so "a" is new again and pushes out "b".
				await expect(kv.addRecent("recent", ["e"], 4, LONG_TTL_MS)).resolves.toBe(1);
				await expect(kv.addRecent("recent", ["a"], 4, LONG_TTL_MS)).resolves.toBe(1);
				await expect(kv.addRecent("recent", ["c", "d", "e", "a"], 4, LONG_TTL_MS)).resolves.toBe(0);
				await expect(kv.addRecent("recent", ["b"], 4, LONG_TTL_MS)).resolves.toBe(1);
				await expect(kv.addRecent("other", ["a"], 4, LONG_TTL_MS)).resolves.toBe(1);
				await expect(kv.addRecent("recent", [], 4, LONG_TTL_MS)).resolves.toBe(0);
			});

			it("forgets everything once the ttl has passed without an addition", async () => {
				await kv.addRecent("fading", ["a"], 10, SHORT_TTL_MS);
				await advance(WELL_PAST_MS);
				await expect(kv.addRecent("fading", ["a"], 10, LONG_TTL_MS)).resolves.toBe(1);
			});

			it("of concurrent callers adding the same members, exactly one is told each is new", async () => {
				const results = await Promise.all(Array.from({ length: 20 }, () => kv.addRecent("race-recent", ["x", "y"], 100, LONG_TTL_MS)));
				expect(results.reduce((a, b) => a + b, 0)).toBe(2);
			});
		});

		describe("swap", () => {
			it("sets and answers the previous value; concurrent swaps see each value once", async () => {
				await expect(kv.swap("state", "online")).resolves.toBeNull();
				await expect(kv.swap("state", "offline", LONG_TTL_MS)).resolves.toBe("online");
				await expect(kv.get("state")).resolves.toBe("offline");
				const previous = await Promise.all(["a", "b", "c", "d"].map(v => kv.swap("race", v)));
				expect(previous.filter(v => v === null)).toHaveLength(1);
			});

			it("applies the ttl it is given", async () => {
				await kv.swap("brief", "x", SHORT_TTL_MS);
				await kv.swap("kept", "x", LONG_TTL_MS);
				await advance(WELL_PAST_MS);
				await expect(kv.get("brief")).resolves.toBeNull();
				await expect(kv.get("kept")).resolves.toBe("x");
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
				await expect(kv.swapIfStale("status", "offline", "seen", 2000, LONG_TTL_MS)).resolves.toEqual({ swapped: true, previous: "online" });
				await expect(kv.get("status")).resolves.toBe("offline");
				await expect(kv.swapIfStale("fresh-key", "x", "seen", 2000)).resolves.toEqual({ swapped: true, previous: null });
			});

			it("applies the ttl it is given", async () => {
				await kv.swapIfStale("brief", "x", "seen", 1000, SHORT_TTL_MS);
				await kv.swapIfStale("kept", "x", "seen", 1000, LONG_TTL_MS);
				await advance(WELL_PAST_MS);
				await expect(kv.get("brief")).resolves.toBeNull();
				await expect(kv.get("kept")).resolves.toBe("x");
			});
		});

		describe("decr", () => {
			it("takes one back from a live counter and keeps its window", async () => {
				await kv.incr("d", LONG_TTL_MS);
				await kv.incr("d", LONG_TTL_MS);
				await advance(WELL_PAST_MS);
				await kv.decr("d");
				const next = await kv.incr("d", LONG_TTL_MS);
				expect(next.count).toBe(2);
				expectRemaining(next.ttlMs, LONG_TTL_MS - WELL_PAST_MS);
			});

			it("never goes below zero", async () => {
				await kv.incr("z", LONG_TTL_MS);
				await kv.decr("z");
				await kv.decr("z");
				expect((await kv.incr("z", LONG_TTL_MS)).count).toBe(1);
			});

			it("never starts a counter: a missing or expired one stays absent and the next window is fresh", async () => {
				await kv.decr("none");
				await expect(kv.get("none")).resolves.toBeNull();
				await kv.incr("gone", SHORT_TTL_MS);
				await advance(WELL_PAST_MS);
				await kv.decr("gone");
				await expect(kv.get("gone")).resolves.toBeNull();
				const fresh = await kv.incr("gone", LONG_TTL_MS);
				expect(fresh.count).toBe(1);
				expectRemaining(fresh.ttlMs, LONG_TTL_MS);
			});

			it("concurrent increments and decrements are never lost", async () => {
				await Promise.all(Array.from({ length: 30 }, () => kv.incr("mix", LONG_TTL_MS)));
				await Promise.all(Array.from({ length: 10 }, () => kv.decr("mix")));
				await expect(kv.get("mix")).resolves.toBe("20");
			});
		});

		describe("incr (fixed windows)", () => {
			it("counts up; the first increment starts the window", async () => {
				const first = await kv.incr("hits", LONG_TTL_MS);
				expect(first.count).toBe(1);
				expectRemaining(first.ttlMs, LONG_TTL_MS);
				const second = await kv.incr("hits", LONG_TTL_MS);
				const third = await kv.incr("hits", LONG_TTL_MS);
				expect([second.count, third.count]).toEqual([2, 3]);
				expect(third.ttlMs).toBeLessThanOrEqual(first.ttlMs);
				expectRemaining(third.ttlMs, LONG_TTL_MS);
			});

			it("later increments do not extend the window", async () => {
				await kv.incr("fixed", LONG_TTL_MS);
				await advance(WELL_PAST_MS);
				const later = await kv.incr("fixed", LONG_TTL_MS);
				expect(later.count).toBe(2);
				expectRemaining(later.ttlMs, LONG_TTL_MS - WELL_PAST_MS);
			});

			it("starts a new window after expiry", async () => {
				await kv.incr("win", SHORT_TTL_MS);
				await kv.incr("win", SHORT_TTL_MS);
				await advance(WELL_PAST_MS);
				const fresh = await kv.incr("win", LONG_TTL_MS);
				expect(fresh.count).toBe(1);
				expectRemaining(fresh.ttlMs, LONG_TTL_MS);
			});

			it("counters are independent per key", async () => {
				await kv.incr("a", LONG_TTL_MS);
				await kv.incr("a", LONG_TTL_MS);
				expect((await kv.incr("b", LONG_TTL_MS)).count).toBe(1);
				expect((await kv.incr("a", LONG_TTL_MS)).count).toBe(3);
			});

			it("incrIf counts only while the guard key holds the value, in the same window", async () => {
				expect(await kv.incrIf("guarded", LONG_TTL_MS, { key: "version", equals: "v1" })).toBeNull();
				await kv.set("version", "v1");
				const first = await kv.incrIf("guarded", LONG_TTL_MS, { key: "version", equals: "v1" });
				expect(first?.count).toBe(1);
				expectRemaining(first?.ttlMs ?? 0, LONG_TTL_MS);
				expect((await kv.incr("guarded", LONG_TTL_MS)).count).toBe(2);
				await kv.set("version", "v2");
				expect(await kv.incrIf("guarded", LONG_TTL_MS, { key: "version", equals: "v1" })).toBeNull();
				expect(await kv.incrIf("guarded", LONG_TTL_MS, { key: "version", equals: "" })).toBeNull();
				await kv.set("empty", "");
				expect(await kv.incrIf("guarded", LONG_TTL_MS, { key: "empty", equals: "" })).toBeNull();
				await expect(kv.get("guarded")).resolves.toBe("2");
				expect((await kv.incrIf("guarded", LONG_TTL_MS, { key: "version", equals: "v2" }))?.count).toBe(3);
			});

			it("concurrent increments are never lost", async () => {
				const results = await Promise.all(Array.from({ length: 50 }, () => kv.incr("burst", LONG_TTL_MS)));
				expect(results.map(r => r.count).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
				await expect(kv.get("burst")).resolves.toBe("50");
			});
		});

		describe("locks", () => {
			it("the owner takes and re-takes it; anyone else is refused", async () => {
				await expect(kv.acquireLock("lock", "node-a", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("lock", "node-a", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("lock", "node-b", LONG_TTL_MS)).resolves.toBe(false);
			});

			it("re-taking extends it", async () => {
				await expect(kv.acquireLock("ext", "node-a", SHORT_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("ext", "node-a", LONG_TTL_MS)).resolves.toBe(true);
				await advance(WELL_PAST_MS); // past the first ttl, well within the extended one
				await expect(kv.acquireLock("ext", "node-b", LONG_TTL_MS)).resolves.toBe(false);
			});

			it("only the owner can release it", async () => {
				await kv.acquireLock("rel", "node-a", LONG_TTL_MS);
				await kv.releaseLock("rel", "node-b");
				await expect(kv.acquireLock("rel", "node-b", LONG_TTL_MS)).resolves.toBe(false);
				await kv.releaseLock("rel", "node-a");
				await expect(kv.acquireLock("rel", "node-b", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("rel", "node-a", LONG_TTL_MS)).resolves.toBe(false);
			});

			it("releasing a lock nobody holds is harmless", async () => {
				await expect(kv.releaseLock("nobody", "node-a")).resolves.toBeUndefined();
				await expect(kv.acquireLock("nobody", "node-a", LONG_TTL_MS)).resolves.toBe(true);
			});

			it("expiry frees it for another owner", async () => {
				await expect(kv.acquireLock("exp", "node-a", SHORT_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("held", "node-a", LONG_TTL_MS)).resolves.toBe(true);
				await advance(WELL_PAST_MS);
				await expect(kv.acquireLock("exp", "node-b", LONG_TTL_MS)).resolves.toBe(true);
				await expect(kv.acquireLock("exp", "node-a", LONG_TTL_MS)).resolves.toBe(false);
				await expect(kv.acquireLock("held", "node-b", LONG_TTL_MS)).resolves.toBe(false);
			});

			it("a stale owner's release after expiry does not free the new owner's lock", async () => {
				await kv.acquireLock("stale", "node-a", SHORT_TTL_MS);
				await advance(WELL_PAST_MS);
				await kv.acquireLock("stale", "node-b", LONG_TTL_MS);
				await kv.releaseLock("stale", "node-a");
				await expect(kv.acquireLock("stale", "node-c", LONG_TTL_MS)).resolves.toBe(false);
			});

			it("exactly one of many concurrent owners wins", async () => {
				const results = await Promise.all(Array.from({ length: 25 }, (_, i) => kv.acquireLock("race", `node-${i}`, LONG_TTL_MS)));
				expect(results.filter(Boolean)).toHaveLength(1);
			});
		});

		it("ping answers", async () => {
			await expect(kv.ping()).resolves.toBeUndefined();
		});
	});
}
