/**
 * Media bytes, kept in Cache Storage under `/player/content/<sha256>`: what the manifest names
 * is downloaded once (checked against its sha256), survives reloads and outages, and is evicted
 * once no manifest names it any more. Where Cache Storage does not exist (a page served over
 * plain http from another host is not a secure context) the bytes are kept in memory instead:
 * the player still plays, but an outage that outlasts a reload shows nothing.
 */
import { api } from "./api.js";
import { isDownloaded, type ManifestItem } from "./model.js";

const CACHE = "marquee-content-v1";

function keyOf(sha256: string): string {
	return `/player/content/${sha256}`;
}

const memory = new Map<string, Blob>();
/** Object URLs handed out, by sha256: revoked when the item is evicted. */
const objectUrls = new Map<string, string>();
/** Items known to be in the cache (saves a lookup per play). */
const present = new Set<string>();
const downloading = new Map<string, Promise<boolean>>();

async function storage(): Promise<Cache | null> {
	if (typeof caches === "undefined") return null;
	try {
		return await caches.open(CACHE);
	} catch {
		return null;
	}
}

async function sha256Hex(bytes: ArrayBuffer): Promise<string | null> {
	if (!crypto.subtle) return null; // not a secure context: cannot check, trust TLS-less transport
	const digest = await crypto.subtle.digest("SHA-256", bytes);
	return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `item` can be shown now without the network. Web pages always "can" (they load live). */
export function isReady(item: ManifestItem): boolean {
	return !isDownloaded(item) || present.has(item.sha256);
}

/** Looks up what earlier sessions cached, so a reload plays at once. */
export async function warm(items: readonly ManifestItem[]): Promise<void> {
	const cache = await storage();
	if (!cache) return;
	await Promise.all(
		items.filter(isDownloaded).map(async item => {
			if (await cache.match(keyOf(item.sha256))) present.add(item.sha256);
		})
	);
}

/** Downloads `item` unless it is cached; false when it could not be fetched or did not match. */
export function ensure(token: string, item: ManifestItem): Promise<boolean> {
	if (isReady(item)) return Promise.resolve(true);
	let pending = downloading.get(item.sha256);
	if (!pending) {
		const started: Promise<boolean> = download(token, item).finally(() => {
			if (downloading.get(item.sha256) === started) downloading.delete(item.sha256);
		});
		downloading.set(item.sha256, started);
		pending = started;
	}
	return pending;
}

/** Moves at every clear-cache: a download that began before one does not store what it fetched. */
let generation = 0;

async function download(token: string, item: ManifestItem): Promise<boolean> {
	const started = generation;
	const res = await api.content(token, item.url);
	const bytes = await res.arrayBuffer();
	const digest = await sha256Hex(bytes);
	if (digest !== null && item.sha256 && digest !== item.sha256) {
		console.warn(`content ${item.contentId}: sha256 mismatch, not cached`);
		return false;
	}
	const type = res.headers.get("Content-Type") ?? item.mimeType;
	// Cleared meanwhile: the command's own download of what plays fetches it again if it is needed.
	// Asked again after opening the cache. (A clear during the put itself can still find the item
	// back: deleting it after the put could remove the copy a newer download has just stored.)
	if (started !== generation) return false;
	const cache = await storage();
	if (started !== generation) return false;
	if (cache) {
		await cache.put(keyOf(item.sha256), new Response(bytes, { headers: { "Content-Type": type, "Content-Length": String(bytes.byteLength) } }));
	} else {
		memory.set(item.sha256, new Blob([bytes], { type }));
	}
	present.add(item.sha256);
	return true;
}

/** An object URL of a cached item's bytes (created once per item), or null when it is not cached. */
export async function objectUrl(item: ManifestItem): Promise<string | null> {
	const known = objectUrls.get(item.sha256);
	if (known) return known;
	let blob = memory.get(item.sha256) ?? null;
	if (!blob) {
		const cache = await storage();
		const res = cache ? await cache.match(keyOf(item.sha256)) : undefined;
		if (!res) {
			present.delete(item.sha256);
			return null;
		}
		blob = await res.blob();
	}
	const url = URL.createObjectURL(blob);
	objectUrls.set(item.sha256, url);
	return url;
}

/** Removes every cached item whose sha256 is not in `keep`. */
export async function evictExcept(keep: ReadonlySet<string>): Promise<number> {
	let evicted = 0;
	for (const [sha, url] of objectUrls) {
		if (!keep.has(sha)) {
			URL.revokeObjectURL(url);
			objectUrls.delete(sha);
		}
	}
	for (const sha of memory.keys()) {
		if (!keep.has(sha)) {
			memory.delete(sha);
			evicted++;
		}
	}
	const cache = await storage();
	if (cache) {
		for (const request of await cache.keys()) {
			const sha = new URL(request.url).pathname.split("/").pop() ?? "";
			if (!keep.has(sha)) {
				await cache.delete(request);
				evicted++;
			}
		}
	}
	for (const sha of present) if (!keep.has(sha)) present.delete(sha);
	return evicted;
}

/** Empties the cache (the `clear-cache` command). */
export async function clearAll(): Promise<void> {
	generation += 1;
	// Downloads under way store nothing now; what is asked for from here on is fetched afresh.
	downloading.clear();
	await evictExcept(new Set());
	if (typeof caches !== "undefined") await caches.delete(CACHE).catch(() => false);
}
