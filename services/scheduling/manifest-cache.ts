/**
 * Manifests cached per display in the shared key-value store (Redis when configured, so every
 * scheduling replica and the devices heartbeat see the same entries).
 *
 * Each entry is stamped with its tenant's manifest *generation*: a random id that moves whenever
 * something that can change a manifest of the tenant is stored. Moving it is one write, and from
 * then on no entry of an earlier generation is served, whatever the background recomputation has
 * reached; entries also lapse at the manifest's `validUntil` and after at most an hour, so a
 * display whose inputs changed without an event reaching us is right again within that.
 *
 * Next to the entry, the display's current ETag is published under `manifestEtagKey` and its
 * screen power under `manifestPowerKey` (the heartbeat answers both); storing answers the previous
 * ETag, so a recomputation knows which displays to tell about a change.
 */
import { manifestEtagKey, manifestPowerKey, type Manifest } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import type { KeyValueStore } from "../../shared/kv";

/** A display whose inputs changed without an event reaching us is right again within this. */
export const MANIFEST_CACHE_MAX_MS = 3600_000;
/** A tenant's generation outlives any entry stamped with it. */
export const GENERATION_TTL_MS = 30 * 24 * 3600_000;

export const cacheKeys = {
	manifest: (displayId: string) => `manifest:${displayId}`,
	generation: (tenantId: string) => `manifest-generation:${tenantId}`
};

interface CachedManifest {
	tenantId: string;
	generation: string;
	manifest: Manifest;
}

export interface ManifestCacheOptions {
	/** The current instant in ms (tests pass a controllable clock). */
	now?: () => number;
	/** A fresh generation id. */
	newGeneration?: () => string;
}

export class ManifestCache {
	private readonly now: () => number;
	private readonly newGeneration: () => string;

	constructor(
		private readonly kv: KeyValueStore,
		options: ManifestCacheOptions = {}
	) {
		this.now = options.now ?? Date.now;
		this.newGeneration = options.newGeneration ?? (() => newId());
	}

	/** The tenant's current generation; the first caller of a tenant without one sets it. */
	async generation(tenantId: string): Promise<string> {
		const key = cacheKeys.generation(tenantId);
		const current = await this.kv.get(key);
		if (current) return current;
		const fresh = this.newGeneration();
		if (await this.kv.setIfAbsent(key, fresh, GENERATION_TTL_MS)) return fresh;
		return (await this.kv.get(key)) ?? fresh;
	}

	/** Something a manifest of the tenant depends on was stored: no entry cached before is served any more. */
	async bump(tenantId: string): Promise<void> {
		await this.kv.set(cacheKeys.generation(tenantId), this.newGeneration(), GENERATION_TTL_MS);
	}

	/** The display's cached manifest, if it is the tenant's, of this generation and still valid. */
	async read(tenantId: string, generation: string, displayId: string): Promise<Manifest | null> {
		const raw = await this.kv.get(cacheKeys.manifest(displayId));
		if (!raw) return null;
		const cached = JSON.parse(raw) as CachedManifest;
		const { validUntil } = cached.manifest;
		const fresh = cached.tenantId === tenantId && cached.generation === generation && (!validUntil || Date.parse(validUntil) > this.now());
		return fresh ? cached.manifest : null;
	}

	/**
	 * Caches the manifest (until its validUntil, at most MANIFEST_CACHE_MAX_MS) and publishes its
	 * ETag; answers the ETag published before. A manifest already past its validUntil is not
	 * kept, and the published ETag stays as it was.
	 */
	async store(tenantId: string, generation: string, manifest: Manifest): Promise<string | null> {
		const untilEdge = manifest.validUntil ? Date.parse(manifest.validUntil) - this.now() : Number.POSITIVE_INFINITY;
		const ttl = Math.min(MANIFEST_CACHE_MAX_MS, untilEdge);
		if (ttl <= 0) return this.kv.get(manifestEtagKey(manifest.displayId));
		const cached: CachedManifest = { tenantId, generation, manifest };
		await this.kv.set(cacheKeys.manifest(manifest.displayId), JSON.stringify(cached), ttl);
		if (manifest.power) await this.kv.set(manifestPowerKey(manifest.displayId), JSON.stringify(manifest.power), ttl);
		else await this.kv.del(manifestPowerKey(manifest.displayId));
		return this.kv.swap(manifestEtagKey(manifest.displayId), manifest.etag, ttl);
	}

	/** A deleted display's entry goes at once (its id never comes back). */
	async forgetDisplay(displayId: string): Promise<void> {
		await Promise.all([this.kv.del(cacheKeys.manifest(displayId)), this.kv.del(manifestPowerKey(displayId))]);
	}

	/** A deleted tenant's generation goes; its displays' entries lapse on their own. */
	async forgetTenant(tenantId: string): Promise<void> {
		await this.kv.del(cacheKeys.generation(tenantId));
	}
}
