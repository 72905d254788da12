/**
 * shared/kv.ts on a real Redis: the key/value contract (same cases as the memory store), keys under
 * the store's prefix, two stores on one Redis acting as two processes, and sharedKeyValueStore.
 */
import Redis from "ioredis";
import { RedisKeyValueStore, sharedKeyValueStore, type KeyValueStore } from "../../shared/kv";
import { describeKeyValueContract, waitAtLeast } from "../helpers/kv-contract";
import { describeWith, redisServer, requireServer, uniquePrefix, type TestServer } from "../helpers/servers";

/** Deletes every key under `prefix` (tests leave nothing behind in the shared server). */
async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
	let cursor = "0";
	do {
		const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
		cursor = next;
		if (keys.length) await redis.del(...keys);
	} while (cursor !== "0");
}

describeWith("redis")("RedisKeyValueStore", () => {
	let server: TestServer;
	let raw: Redis;
	const prefixes: string[] = [];
	const opened: KeyValueStore[] = [];

	/** A fresh prefix in the shared server, remembered for cleanup. */
	const prefix = (name: string): string => {
		const p = uniquePrefix(`test:${name}`);
		prefixes.push(p);
		return p;
	};

	beforeAll(async () => {
		server = await requireServer(redisServer());
		raw = new Redis(server.url);
	});
	afterAll(async () => {
		for (const p of prefixes) await deleteKeys(raw, p);
		await Promise.all(opened.map(store => store.close()));
		raw.disconnect();
		await server.stop();
	});

	// Redis keeps TTLs on its own clock: the contract runs on real time, with margins no busy
	// machine comes near (see test/helpers/kv-contract.ts).
	describeKeyValueContract("RedisKeyValueStore", async () => {
		const url = (await requireServer(redisServer())).url;
		return { store: new RedisKeyValueStore(url, prefix("kv-contract")), advance: waitAtLeast, exactClock: false };
	});

	describe("on the server", () => {
		it("keeps its keys under its prefix, with the TTL in Redis", async () => {
			const p = prefix("kv-prefix");
			const kv = new RedisKeyValueStore(server.url, p);
			opened.push(kv);
			await kv.set("presence:d-1", "online", 60_000);
			await kv.acquireLock("lock:job:x", "node-a", 5_000);
			await kv.incr("rl:user:t:u", 60_000);
			expect(await raw.get(`${p}presence:d-1`)).toBe("online");
			expect(await raw.get(`${p}lock:job:x`)).toBe("node-a");
			expect(await raw.get(`${p}rl:user:t:u`)).toBe("1");
			// The TTL is in milliseconds and near the one set (a minute: no stall of a busy machine comes near).
			const ttl = await raw.pttl(`${p}presence:d-1`);
			expect(ttl).toBeGreaterThan(30_000);
			expect(ttl).toBeLessThanOrEqual(60_000);
			expect(await raw.get("presence:d-1")).toBeNull();
		});

		it("two stores with one prefix behave as two processes sharing state", async () => {
			const p = prefix("kv-two");
			const a = new RedisKeyValueStore(server.url, p);
			const b = new RedisKeyValueStore(server.url, p);
			opened.push(a, b);
			await a.set("k", "from a");
			expect(await b.get("k")).toBe("from a");
			expect(await a.acquireLock("lock", "node-a", 5_000)).toBe(true);
			expect(await b.acquireLock("lock", "node-b", 5_000)).toBe(false);
			await b.releaseLock("lock", "node-b");
			expect(await a.acquireLock("lock", "node-a", 5_000)).toBe(true);
			expect((await a.incr("c", 5_000)).count).toBe(1);
			expect((await b.incr("c", 5_000)).count).toBe(2);
			expect(await b.setIfAbsent("once", "b", 5_000)).toBe(true);
			expect(await a.setIfAbsent("once", "a", 5_000)).toBe(false);
		});
	});

	describe("sharedKeyValueStore with REDIS_URL", () => {
		it("gives one store per (url, namespace)", () => {
			const ns = uniquePrefix("kvns").replace(/:/g, "-");
			const a = sharedKeyValueStore({ redisUrl: server.url, namespace: `${ns}a`, dataDir: "unused", nodeEnv: "test" });
			opened.push(a);
			expect(a).toBeInstanceOf(RedisKeyValueStore);
			expect(sharedKeyValueStore({ redisUrl: server.url, namespace: `${ns}a`, dataDir: "unused", nodeEnv: "test" })).toBe(a);
			const b = sharedKeyValueStore({ redisUrl: server.url, namespace: `${ns}b`, dataDir: "unused", nodeEnv: "test" });
			opened.push(b);
			expect(b).not.toBe(a);
			expect(sharedKeyValueStore({ redisUrl: null, namespace: `${ns}a`, dataDir: "unused", nodeEnv: "test" })).not.toBe(a);
		});

		it("prefixes keys with marquee:<namespace>: so namespaces do not collide", async () => {
			const ns = uniquePrefix("kvns").replace(/:/g, "-");
			prefixes.push(`marquee:${ns}`);
			const a = sharedKeyValueStore({ redisUrl: server.url, namespace: `${ns}a`, dataDir: "unused", nodeEnv: "test" });
			const b = sharedKeyValueStore({ redisUrl: server.url, namespace: `${ns}b`, dataDir: "unused", nodeEnv: "test" });
			opened.push(a, b);
			await a.set("same-key", "from a");
			await b.set("same-key", "from b");
			expect(await a.get("same-key")).toBe("from a");
			expect(await b.get("same-key")).toBe("from b");
			expect(await raw.get(`marquee:${ns}a:same-key`)).toBe("from a");
			expect(await raw.get(`marquee:${ns}b:same-key`)).toBe("from b");
			expect(await a.acquireLock("lock:job:x", "node-a", 5_000)).toBe(true);
			expect(await b.acquireLock("lock:job:x", "node-b", 5_000)).toBe(true);
			expect((await a.incr("rl:x", 5_000)).count).toBe(1);
			expect((await b.incr("rl:x", 5_000)).count).toBe(1);
		});
	});
});
