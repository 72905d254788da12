/**
 * Key/value helper for presence, locks, counters and small caches: Redis when REDIS_URL is
 * set (shared by every replica), an in-process map otherwise (the embedded, one-process mode).
 * Both implementations pass the same contract tests (test/unit/kv.test.ts and
 * test/integration/kv.redis.test.ts).
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import Redis from "ioredis";
import { Errors } from "./errors";
import type { Config } from "./config";
import { expiredBy, KvJournal, type JournalEntry } from "./kv-journal";
import { isThrottleKey } from "./throttle";

export interface Counter {
	count: number;
	/** Milliseconds until the window of this counter ends. */
	ttlMs: number;
}

/** A value a key must hold for a guarded change to happen. */
export interface KvGuard {
	key: string;
	equals: string;
}

export interface KeyValueStore {
	get(key: string): Promise<string | null>;
	/** Several values in one command (MGET), in the keys' order; null for each missing one. */
	getMany(keys: readonly string[]): Promise<Array<string | null>>;
	set(key: string, value: string, ttlMs?: number): Promise<void>;
	/** Sets a value and answers the previous one, atomically (state transitions happen once). */
	swap(key: string, value: string, ttlMs?: number): Promise<string | null>;
	/**
	 * Atomically: when the number at `stampKey` is absent or below `before`, sets `key` to `value`
	 * and answers `{ swapped: true, previous }`; otherwise changes nothing (`swapped: false`).
	 * A check-then-set that a concurrent writer of `stampKey` cannot slip between.
	 */
	swapIfStale(key: string, value: string, stampKey: string, before: number, ttlMs?: number): Promise<{ swapped: boolean; previous: string | null }>;
	/** Sets only when the key is absent; true when it was set. */
	setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
	del(key: string): Promise<void>;
	/** Increments a counter; the first increment starts its `windowMs` expiry. */
	incr(key: string, windowMs: number): Promise<Counter>;
	/**
	 * `incr`, only while the value at `guard.key` is `guard.equals`, atomically; null (nothing
	 * counted) otherwise. A check and a count in one round trip (a remembered token's version
	 * and its rate limit).
	 */
	incrIf(key: string, windowMs: number, guard: KvGuard): Promise<Counter | null>;
	/** Takes one back from a live counter, keeping its window; never below zero, never starts one. */
	decr(key: string): Promise<void>;
	/**
	 * Remembers `members` in a set that keeps its newest `keep` members for `ttlMs` after the
	 * last addition; answers how many of them were not there yet. Atomic: of two callers adding
	 * the same member at once, one is told it was new.
	 */
	addRecent(key: string, members: readonly string[], keep: number, ttlMs: number): Promise<number>;
	/** Takes or extends a lock held by `owner`; false when someone else holds it. */
	acquireLock(key: string, owner: string, ttlMs: number): Promise<boolean>;
	/** Releases the lock only when `owner` still holds it. */
	releaseLock(key: string, owner: string): Promise<void>;
	ping(): Promise<void>;
	close(): Promise<void>;
}

type Entry = JournalEntry;

export class MemoryKeyValueStore implements KeyValueStore {
	private readonly entries = new Map<string, Entry>();

	/** `journal`: the keys it names durable are kept in its file and read back from it here (kv-journal.ts). */
	constructor(
		private readonly now: () => number = Date.now,
		private readonly journal?: KvJournal
	) {
		if (journal) for (const [key, entry] of journal.open(now)) this.entries.set(key, { ...entry });
	}

	/** Every change of a key goes through here: a durable key's new state is journaled before the operation answers. */
	private changed(key: string, entry: Entry | undefined): void {
		if (this.journal?.isDurable(key)) this.journal.record(key, entry);
	}

	private expired(entry: Entry): boolean {
		return expiredBy(entry, this.now());
	}

	/** The size past which expired entries are swept out (keys nobody reads again, such as a flood's addresses, would stay forever). */
	private sweepAt = 10_000;

	private sweepExpired(): void {
		for (const [key, entry] of this.entries) if (this.expired(entry)) this.entries.delete(key);
		this.sweepAt = Math.max(10_000, 2 * this.entries.size);
	}

	private live(key: string): Entry | undefined {
		const entry = this.entries.get(key);
		if (entry && this.expired(entry)) {
			this.entries.delete(key);
			return undefined;
		}
		return entry;
	}

	async get(key: string): Promise<string | null> {
		return this.live(key)?.value ?? null;
	}

	async getMany(keys: readonly string[]): Promise<Array<string | null>> {
		return keys.map(key => this.live(key)?.value ?? null);
	}

	async set(key: string, value: string, ttlMs?: number): Promise<void> {
		const entry = { value, expiresAt: ttlMs ? this.now() + ttlMs : null };
		this.changed(key, entry);
		this.entries.set(key, entry);
		if (this.entries.size > this.sweepAt) this.sweepExpired();
	}

	async swap(key: string, value: string, ttlMs?: number): Promise<string | null> {
		const previous = this.live(key)?.value ?? null;
		await this.set(key, value, ttlMs);
		return previous;
	}

	async swapIfStale(key: string, value: string, stampKey: string, before: number, ttlMs?: number) {
		const stamp = Number(this.live(stampKey)?.value ?? 0);
		if (stamp >= before) return { swapped: false, previous: null };
		return { swapped: true, previous: await this.swap(key, value, ttlMs) };
	}

	async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
		if (this.live(key)) return false;
		await this.set(key, value, ttlMs);
		return true;
	}

	async del(key: string): Promise<void> {
		this.changed(key, undefined);
		this.entries.delete(key);
	}

	async incr(key: string, windowMs: number): Promise<Counter> {
		const entry = this.live(key);
		if (!entry) {
			await this.set(key, "1", windowMs);
			return { count: 1, ttlMs: windowMs };
		}
		const count = Number(entry.value) + 1;
		this.changed(key, { value: String(count), expiresAt: entry.expiresAt });
		entry.value = String(count);
		return { count, ttlMs: Math.max(0, (entry.expiresAt ?? this.now()) - this.now()) };
	}

	async incrIf(key: string, windowMs: number, guard: KvGuard): Promise<Counter | null> {
		if (guard.equals === "" || this.live(guard.key)?.value !== guard.equals) return null;
		return this.incr(key, windowMs);
	}

	async decr(key: string): Promise<void> {
		const entry = this.live(key);
		if (!entry) return;
		const value = String(Math.max(0, Number(entry.value) - 1));
		this.changed(key, { value, expiresAt: entry.expiresAt });
		entry.value = value;
	}

	private readonly recent = new Map<string, { members: Set<string>; expiresAt: number }>();

	async addRecent(key: string, members: readonly string[], keep: number, ttlMs: number): Promise<number> {
		let entry = this.recent.get(key);
		if (!entry || entry.expiresAt <= this.now()) entry = { members: new Set(), expiresAt: 0 };
		let added = 0;
		for (const member of members) {
			if (entry.members.has(member)) continue;
			entry.members.add(member);
			added++;
		}
		// A Set iterates in insertion order: the oldest go first.
		for (const member of entry.members) {
			if (entry.members.size <= keep) break;
			entry.members.delete(member);
		}
		entry.expiresAt = this.now() + ttlMs;
		this.recent.set(key, entry);
		// Idle keys go when the map grows (no timer in a store that may never be used again).
		if (this.recent.size > 10_000) for (const [k, e] of this.recent) if (e.expiresAt <= this.now()) this.recent.delete(k);
		return added;
	}

	async acquireLock(key: string, owner: string, ttlMs: number): Promise<boolean> {
		const entry = this.live(key);
		if (entry && entry.value !== owner) return false;
		await this.set(key, owner, ttlMs);
		return true;
	}

	async releaseLock(key: string, owner: string): Promise<void> {
		if (this.live(key)?.value === owner) await this.del(key);
	}

	async ping(): Promise<void> {}

	async close(): Promise<void> {
		this.entries.clear();
		this.journal?.close();
	}
}

// Atomic scripts: a lock is taken or extended only by its owner, released only by its owner.
const ACQUIRE = `
local holder = redis.call("GET", KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return 0`;
const RELEASE = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`;
const SWAP_IF_STALE = `
local stamp = tonumber(redis.call("GET", KEYS[2]) or "0") or 0
if stamp >= tonumber(ARGV[2]) then return {0, false} end
local previous = redis.call("GET", KEYS[1])
if ARGV[3] ~= "" then redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3]) else redis.call("SET", KEYS[1], ARGV[1]) end
return {1, previous}`;
const DECR = `
local count = tonumber(redis.call("GET", KEYS[1]) or "0") or 0
if count > 0 then redis.call("DECR", KEYS[1]) end
return 0`;
/** With a guard (KEYS[2] must hold ARGV[2]; "" = none): {0, 0} and nothing counted when it does not. */
const INCR = `
if ARGV[2] ~= "" and redis.call("GET", KEYS[2]) ~= ARGV[2] then return {0, 0} end
local count = redis.call("INCR", KEYS[1])
if count == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return {count, redis.call("PTTL", KEYS[1])}`;

/** ZADD NX with a rising score per member (the insertion order), trim to the newest `keep`, refresh the TTL. */
const ADD_RECENT = `local seq = redis.call("INCRBY", KEYS[1] .. ":seq", #ARGV - 2)
local added = 0
for i = 3, #ARGV do
	added = added + redis.call("ZADD", KEYS[1], "NX", seq - #ARGV + i, ARGV[i])
end
redis.call("ZREMRANGEBYRANK", KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
redis.call("PEXPIRE", KEYS[1], ARGV[2])
redis.call("PEXPIRE", KEYS[1] .. ":seq", ARGV[2])
return added`;

/** The scripts above, each with how many of its arguments are keys. */
const SCRIPTS = {
	marqueeAcquire: { numberOfKeys: 1, lua: ACQUIRE },
	marqueeRelease: { numberOfKeys: 1, lua: RELEASE },
	marqueeSwapIfStale: { numberOfKeys: 2, lua: SWAP_IF_STALE },
	marqueeDecr: { numberOfKeys: 1, lua: DECR },
	marqueeIncr: { numberOfKeys: 2, lua: INCR },
	marqueeAddRecent: { numberOfKeys: 1, lua: ADD_RECENT }
};
type ScriptName = keyof typeof SCRIPTS;

export class RedisKeyValueStore implements KeyValueStore {
	readonly redis: Redis;

	constructor(
		url: string,
		private readonly prefix = "marquee:"
	) {
		// Auto-pipelining sends the commands issued in one turn of the event loop as one write (a
		// heartbeat's reads, the rate limit, the version check of many requests at once).
		this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true, enableAutoPipelining: true });
		// Scripts run by their SHA (EVALSHA, loaded on first use): the rate limit runs one per request.
		for (const [name, script] of Object.entries(SCRIPTS)) this.redis.defineCommand(name, script);
		// Connection errors surface through failed commands and /health/ready, not as crashes.
		this.redis.on("error", () => undefined);
	}

	private script(name: ScriptName, ...args: Array<string | number>): Promise<unknown> {
		return (this.redis as unknown as Record<ScriptName, (...a: Array<string | number>) => Promise<unknown>>)[name](...args);
	}

	private k(key: string): string {
		return this.prefix + key;
	}

	async get(key: string): Promise<string | null> {
		return this.redis.get(this.k(key));
	}

	async getMany(keys: readonly string[]): Promise<Array<string | null>> {
		if (keys.length === 0) return [];
		return this.redis.mget(keys.map(key => this.k(key)));
	}

	async set(key: string, value: string, ttlMs?: number): Promise<void> {
		if (ttlMs) await this.redis.set(this.k(key), value, "PX", ttlMs);
		else await this.redis.set(this.k(key), value);
	}

	async swap(key: string, value: string, ttlMs?: number): Promise<string | null> {
		// SET … GET (Redis ≥ 6.2) answers the previous value in the same atomic step.
		const args: Array<string | number> = ttlMs ? ["PX", ttlMs, "GET"] : ["GET"];
		return (await this.redis.call("SET", this.k(key), value, ...args)) as string | null;
	}

	async swapIfStale(key: string, value: string, stampKey: string, before: number, ttlMs?: number) {
		const [swapped, previous] = (await this.script("marqueeSwapIfStale", this.k(key), this.k(stampKey), value, before, ttlMs ?? "")) as [number, string | null];
		return { swapped: swapped === 1, previous: previous ?? null };
	}

	async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
		return (await this.redis.set(this.k(key), value, "PX", ttlMs, "NX")) === "OK";
	}

	async del(key: string): Promise<void> {
		await this.redis.del(this.k(key));
	}

	async incr(key: string, windowMs: number): Promise<Counter> {
		const [count, ttlMs] = (await this.script("marqueeIncr", this.k(key), this.k(key), windowMs, "")) as [number, number];
		return { count, ttlMs: Math.max(0, ttlMs) };
	}

	async incrIf(key: string, windowMs: number, guard: KvGuard): Promise<Counter | null> {
		// An empty `equals` would read as "no guard" in the script; no key holds "" as a version.
		if (guard.equals === "") return null;
		const [count, ttlMs] = (await this.script("marqueeIncr", this.k(key), this.k(guard.key), windowMs, guard.equals)) as [number, number];
		return count === 0 ? null : { count, ttlMs: Math.max(0, ttlMs) };
	}

	async decr(key: string): Promise<void> {
		// DECR keeps the key's expiry; the script never creates a key (which would live forever).
		await this.script("marqueeDecr", this.k(key));
	}

	async addRecent(key: string, members: readonly string[], keep: number, ttlMs: number): Promise<number> {
		if (members.length === 0) return 0;
		return (await this.script("marqueeAddRecent", this.k(key), keep, ttlMs, ...members)) as number;
	}

	async acquireLock(key: string, owner: string, ttlMs: number): Promise<boolean> {
		return (await this.script("marqueeAcquire", this.k(key), owner, ttlMs)) === 1;
	}

	async releaseLock(key: string, owner: string): Promise<void> {
		await this.script("marqueeRelease", this.k(key), owner);
	}

	async ping(): Promise<void> {
		await this.redis.ping();
	}

	async close(): Promise<void> {
		this.redis.disconnect();
	}
}

/**
 * Runs `work` while holding `key`'s lock, waiting for it up to `waitMs` (503 after that), so one
 * thing happens at a time across every replica sharing the store. The lock expires after
 * `ttlMs` should its holder die; `work` must take less than that.
 */
export async function withLock<T>(kv: KeyValueStore, key: string, work: () => Promise<T>, { ttlMs = 10_000, waitMs = 5_000 } = {}): Promise<T> {
	const owner = randomUUID();
	const deadline = Date.now() + waitMs;
	for (let round = 0; !(await kv.acquireLock(key, owner, ttlMs)); round++) {
		if (Date.now() > deadline) throw Errors.unavailable("Busy with the same change, retry");
		await new Promise(resolve => setTimeout(resolve, Math.min(50, 2 + round * 2) * Math.random()));
	}
	try {
		return await work();
	} finally {
		await kv.releaseLock(key, owner);
	}
}

const shared = new Map<string, KeyValueStore>();

/**
 * One store per process and namespace, shared by every service running in it. Keys are
 * prefixed with the namespace, so several deployments can share one Redis. Without Redis the
 * store is this process's memory, with the throttles' counters journaled under DATA_DIR/kv so a
 * restart keeps them (kv-journal.ts); under test, memory alone, like the database.
 */
export function sharedKeyValueStore(config: Pick<Config, "redisUrl" | "namespace" | "dataDir" | "nodeEnv">): KeyValueStore {
	const prefix = `marquee:${config.namespace ? `${config.namespace}:` : ""}`;
	const id = `${config.redisUrl ?? "memory"}|${prefix}`;
	let store = shared.get(id);
	if (!store) {
		if (config.redisUrl) store = new RedisKeyValueStore(config.redisUrl, prefix);
		else if (config.nodeEnv === "test") store = new MemoryKeyValueStore();
		else store = new MemoryKeyValueStore(Date.now, new KvJournal(path.join(config.dataDir, "kv", `${config.namespace || "default"}.throttles.jsonl`), isThrottleKey));
		shared.set(id, store);
	}
	return store;
}

/** Closes every shared store of this process (platform shutdown). */
export async function closeSharedKeyValueStores(): Promise<void> {
	const stores = [...shared.values()];
	shared.clear();
	await Promise.all(stores.map(store => store.close()));
}
