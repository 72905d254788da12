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
 * An entry is two lines: a small head (tenant, generation, ETag, validUntil) and the manifest's
 * JSON. A read parses the head only; the manifest is parsed when asked for, so a player's
 * conditional GET that matches (304, the common case) never parses a manifest that may hold
 * hundreds of items.
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
	// "-v2": the head-and-body form; a replica of an earlier version reads `manifest:` keys only.
	manifest: (displayId: string) => `manifest-v2:${displayId}`,
	generation: (tenantId: string) => `manifest-generation:${tenantId}`
};

interface EntryHead {
	tenantId: string;
	generation: string;
	etag: string;
	validUntil: string | null;
}

/** A display's current manifest: its ETag at once, the manifest itself when needed. */
export interface CurrentManifest {
	etag: string;
	manifest(): Manifest;
}

/** A manifest in hand as a CurrentManifest. */
export function currentOf(manifest: Manifest): CurrentManifest {
	return { etag: manifest.etag, manifest: () => manifest };
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
	async read(tenantId: string, generation: string, displayId: string): Promise<CurrentManifest | null> {
		const raw = await this.kv.get(cacheKeys.manifest(displayId));
		// JSON never holds a raw newline: the first one ends the head. An entry without one is not
		// of this form: a miss, overwritten by the recomputation.
		const cut = raw ? raw.indexOf("\n") : -1;
		if (!raw || cut === -1) return null;
		const head = JSON.parse(raw.slice(0, cut)) as EntryHead;
		const fresh = head.tenantId === tenantId && head.generation === generation && (!head.validUntil || Date.parse(head.validUntil) > this.now());
		if (!fresh) return null;
		let manifest: Manifest | null = null;
		return { etag: head.etag, manifest: () => (manifest ??= JSON.parse(raw.slice(cut + 1)) as Manifest) };
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
		const head: EntryHead = { tenantId, generation, etag: manifest.etag, validUntil: manifest.validUntil };
		await this.kv.set(cacheKeys.manifest(manifest.displayId), `${JSON.stringify(head)}\n${JSON.stringify(manifest)}`, ttl);
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
