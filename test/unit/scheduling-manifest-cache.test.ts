/**
 * services/scheduling/manifest-cache.ts on the in-process key-value store, both driven by one
 * controllable clock: generations, validity, TTLs and the published ETag.
 */
import { manifestEtagKey, type Manifest } from "../../shared/contracts";
import { MemoryKeyValueStore } from "../../shared/kv";
import { cacheKeys, GENERATION_TTL_MS, MANIFEST_CACHE_MAX_MS, ManifestCache } from "../../services/scheduling/manifest-cache";

const START = Date.parse("2026-06-01T12:00:00Z");
const MIN = 60_000;

function setUp() {
	let now = START;
	let n = 0;
	const clock = { now: () => now, advance: (ms: number) => void (now += ms) };
	const kv = new MemoryKeyValueStore(clock.now);
	const cache = new ManifestCache(kv, { now: clock.now, newGeneration: () => `gen-${++n}` });
	return { clock, kv, cache };
}

function manifest(fields: Partial<Manifest> = {}): Manifest {
	return {
		displayId: "d1",
		etag: '"e1"',
		generatedAt: new Date(START).toISOString(),
		validUntil: null,
		timezone: "UTC",
		source: "none",
		playlist: null,
		layout: null,
		power: null,
		schedule: null,
		override: null,
		items: [],
		...fields
	};
}

describe("manifest cache: generations", () => {
	it("a tenant's generation is set once and kept; bump moves it; forgetting the tenant drops it", async () => {
		const { cache } = setUp();
		expect(await cache.generation("t1")).toBe("gen-1");
		expect(await cache.generation("t1")).toBe("gen-1");
		expect(await cache.generation("t2")).toBe("gen-2");
		await cache.bump("t1");
		expect(await cache.generation("t1")).toBe("gen-3");
		await cache.forgetTenant("t1");
		expect(await cache.generation("t1")).toBe("gen-4");
	});

	it("two replicas racing for a tenant's first generation agree on one", async () => {
		const { kv, clock } = setUp();
		const a = new ManifestCache(kv, { now: clock.now, newGeneration: () => "from-a" });
		const b = new ManifestCache(kv, { now: clock.now, newGeneration: () => "from-b" });
		const [ga, gb] = await Promise.all([a.generation("t1"), b.generation("t1")]);
		expect(ga).toBe(gb);
	});

	it("a generation outlives the longest-lived entry, then lapses", async () => {
		const { cache, clock } = setUp();
		await cache.generation("t1");
		clock.advance(GENERATION_TTL_MS - 1);
		expect(await cache.generation("t1")).toBe("gen-1");
		clock.advance(1);
		expect(await cache.generation("t1")).toBe("gen-2");
	});
});

describe("manifest cache: entries", () => {
	it("serves an entry of the tenant's current generation only", async () => {
		const { cache } = setUp();
		const generation = await cache.generation("t1");
		await cache.store("t1", generation, manifest());
		expect((await cache.read("t1", generation, "d1"))?.manifest()).toEqual(manifest());
		expect(await cache.read("t2", generation, "d1")).toBeNull();
		await cache.bump("t1");
		expect(await cache.read("t1", await cache.generation("t1"), "d1")).toBeNull();
		expect(await cache.read("t1", generation, "d2")).toBeNull();
	});

	it("an entry stops being served at its validUntil", async () => {
		const { cache, clock } = setUp();
		const validUntil = new Date(START + 10 * MIN).toISOString();
		await cache.store("t1", "g", manifest({ validUntil }));
		clock.advance(10 * MIN - 1);
		expect(await cache.read("t1", "g", "d1")).not.toBeNull();
		clock.advance(1);
		expect(await cache.read("t1", "g", "d1")).toBeNull();
	});

	it("an entry that never changes still lapses after MANIFEST_CACHE_MAX_MS, with its published ETag", async () => {
		const { cache, clock, kv } = setUp();
		await cache.store("t1", "g", manifest());
		clock.advance(MANIFEST_CACHE_MAX_MS - 1);
		expect(await kv.get(manifestEtagKey("d1"))).toBe('"e1"');
		expect(await cache.read("t1", "g", "d1")).not.toBeNull();
		clock.advance(1);
		expect(await cache.read("t1", "g", "d1")).toBeNull();
		expect(await kv.get(manifestEtagKey("d1"))).toBeNull();
	});

	it("storing publishes the ETag and answers the previous one", async () => {
		const { cache, kv } = setUp();
		expect(await cache.store("t1", "g", manifest())).toBeNull();
		expect(await cache.store("t1", "g", manifest())).toBe('"e1"');
		expect(await cache.store("t1", "g", manifest({ etag: '"e2"' }))).toBe('"e1"');
		expect(await kv.get(manifestEtagKey("d1"))).toBe('"e2"');
	});

	it("a manifest already past its validUntil is not kept, and the published ETag stays", async () => {
		const { cache, kv } = setUp();
		await cache.store("t1", "g", manifest());
		const stale = manifest({ etag: '"old"', validUntil: new Date(START).toISOString() });
		expect(await cache.store("t1", "g", stale)).toBe('"e1"');
		expect(await kv.get(manifestEtagKey("d1"))).toBe('"e1"');
		expect((await cache.read("t1", "g", "d1"))?.manifest()).toEqual(manifest());
	});

	it("a read parses the head only (the ETag), the manifest when asked; an entry of the earlier single-JSON form is a miss", async () => {
		const { cache, kv } = setUp();
		await cache.store("t1", "g", manifest({ etag: '"e9"' }));
		const raw = (await kv.get(cacheKeys.manifest("d1"))) ?? "";
		// The manifest's half is broken on purpose: the ETag is still served, the manifest is not.
		await kv.set(cacheKeys.manifest("d1"), `${raw.slice(0, raw.indexOf("\n"))}\n{broken`);
		const read = await cache.read("t1", "g", "d1");
		expect(read?.etag).toBe('"e9"');
		expect(() => read?.manifest()).toThrow(SyntaxError);
		await kv.set(cacheKeys.manifest("d1"), JSON.stringify({ tenantId: "t1", generation: "g", manifest: manifest() }));
		expect(await cache.read("t1", "g", "d1")).toBeNull();
	});

	it("a deleted display's entry goes at once", async () => {
		const { cache, kv } = setUp();
		await cache.store("t1", "g", manifest());
		await cache.forgetDisplay("d1");
		expect(await cache.read("t1", "g", "d1")).toBeNull();
		expect(await kv.get(cacheKeys.manifest("d1"))).toBeNull();
	});
});
