/**
 * The web player's pure decisions: what a manifest looks like (narrowed from untrusted JSON),
 * which item plays next, when to fetch the manifest again, how a web page is sandboxed, and
 * what a play record is. No DOM and no network: unit-tested in Node (test/unit/player-model.test.ts).
 */

/** One item of GET /api/v1/device/manifest (see docs/api.md, "Device API"). */
export interface ManifestItem {
	contentId: string;
	name: string;
	type: "image" | "video" | "web" | "html";
	mimeType: string;
	url: string;
	sha256: string;
	size: number;
	durationMs: number;
	width?: number;
	height?: number;
}

export interface Manifest {
	displayId: string;
	etag: string;
	generatedAt: string;
	validUntil: string | null;
	timezone: string;
	playlist: { id: string; name: string } | null;
	schedule: { id: string; name: string } | null;
	source: string;
	items: ManifestItem[];
}

/** A play as POST /api/v1/device/playback takes it. */
export interface PlayRecord {
	eventId: string;
	contentId: string;
	playlistId?: string;
	scheduleId?: string;
	startedAt: string;
	durationMs: number;
	completed: boolean;
}

const ITEM_TYPES = new Set(["image", "video", "web", "html"]);

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isRef(value: unknown): value is { id: string; name: string } | null {
	return value === null || (isRecord(value) && typeof value.id === "string" && typeof value.name === "string");
}

function isItem(value: unknown): value is ManifestItem {
	return (
		isRecord(value) &&
		typeof value.contentId === "string" &&
		typeof value.name === "string" &&
		typeof value.type === "string" &&
		ITEM_TYPES.has(value.type) &&
		typeof value.url === "string" &&
		typeof value.durationMs === "number" &&
		value.durationMs > 0 &&
		(typeof value.sha256 === "string" || value.sha256 === null || value.sha256 === undefined)
	);
}

/** A manifest the player can play, or null for anything else (a stored copy, a server answer). */
export function asManifest(value: unknown): Manifest | null {
	if (!isRecord(value)) return null;
	if (typeof value.displayId !== "string" || typeof value.etag !== "string") return null;
	if (!(value.validUntil === null || typeof value.validUntil === "string")) return null;
	if (!isRef(value.playlist) || !isRef(value.schedule) || !Array.isArray(value.items)) return null;
	return {
		displayId: value.displayId,
		etag: value.etag,
		generatedAt: typeof value.generatedAt === "string" ? value.generatedAt : "",
		validUntil: value.validUntil,
		timezone: typeof value.timezone === "string" ? value.timezone : "UTC",
		playlist: value.playlist,
		schedule: value.schedule,
		source: typeof value.source === "string" ? value.source : "none",
		// An item this player cannot show is left out rather than failing the whole manifest.
		items: value.items.filter(isItem).map(item => ({ ...item, sha256: item.sha256 ?? "", size: typeof item.size === "number" ? item.size : 0 }))
	};
}

/** Whether an item's bytes come from the server (and are cached); web pages are loaded live. */
export function isDownloaded(item: ManifestItem): boolean {
	return item.type === "image" || item.type === "video";
}

/**
 * The index of the first item from `from` on (wrapping around) that `ready` admits, or -1 when
 * none does. `from` past the end starts over at 0: the playlist loops.
 */
export function nextPlayable(items: readonly ManifestItem[], from: number, ready: (item: ManifestItem) => boolean): number {
	const n = items.length;
	if (n === 0) return -1;
	const start = ((from % n) + n) % n;
	for (let k = 0; k < n; k++) {
		const i = (start + k) % n;
		if (ready(items[i])) return i;
	}
	return -1;
}

/** How long media stay cached after the last manifest that listed them (an override or a closed window does not cost a new download). */
export const MEDIA_KEEP_MS = 24 * 3600_000;

/**
 * Which cached media to keep: those the current manifest lists and those another manifest listed
 * within `keepMs` (`lastListed`: sha256 → when a manifest last listed it). Everything else is evicted.
 */
export function mediaToKeep(lastListed: Readonly<Record<string, number>>, current: Iterable<string>, nowMs: number, keepMs = MEDIA_KEEP_MS): Set<string> {
	const keep = new Set(current);
	for (const [sha, at] of Object.entries(lastListed)) if (nowMs - at < keepMs) keep.add(sha);
	return keep;
}

/** setTimeout's ceiling (about 24.8 days); a longer wait is taken in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Milliseconds until the manifest must be fetched again: at `validUntil` by the server's clock
 * (`serverOffsetMs` = server time − local time), never negative; null when it never expires.
 */
export function refetchDelay(validUntil: string | null, localNowMs: number, serverOffsetMs: number): number | null {
	if (validUntil === null) return null;
	const at = Date.parse(validUntil);
	if (Number.isNaN(at)) return null;
	return Math.min(MAX_TIMER_MS, Math.max(0, at - (localNowMs + serverOffsetMs)));
}

/**
 * The sandbox of a web page's iframe. Scripts run (dashboards, tickers need them); the page's
 * own origin is kept only when it is another origin than the player's: a same-origin page with
 * both flags could lift its own sandbox and read the device token.
 */
export function webSandbox(url: string, playerOrigin: string): string {
	let origin: string;
	try {
		origin = new URL(url, playerOrigin).origin;
	} catch {
		return "";
	}
	return origin === playerOrigin ? "allow-scripts" : "allow-scripts allow-same-origin";
}

/** Only http(s) pages are shown; anything else (javascript:, data:, file:) is skipped. */
export function isShowableUrl(url: string, playerOrigin: string): boolean {
	try {
		const parsed = new URL(url, playerOrigin);
		return parsed.protocol === "https:" || parsed.protocol === "http:";
	} catch {
		return false;
	}
}

/** A version 4 UUID from 16 random bytes (crypto.randomUUID exists only in secure contexts). */
export function uuidFromBytes(bytes: Uint8Array): string {
	const b = Array.from(bytes.slice(0, 16));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	const hex = b.map(x => x.toString(16).padStart(2, "0")).join("");
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The record of one play that ran from `startedAtMs` to `endedAtMs` (server clock). */
export function playRecord(
	eventId: string,
	item: ManifestItem,
	manifest: Pick<Manifest, "playlist" | "schedule">,
	startedAtMs: number,
	endedAtMs: number
): PlayRecord {
	const durationMs = Math.max(0, Math.min(86_400_000, Math.round(endedAtMs - startedAtMs)));
	return {
		eventId,
		contentId: item.contentId,
		...(manifest.playlist ? { playlistId: manifest.playlist.id } : {}),
		...(manifest.schedule ? { scheduleId: manifest.schedule.id } : {}),
		startedAt: new Date(startedAtMs).toISOString(),
		durationMs,
		// A play cut short by a change counts as a play, but not a complete one.
		completed: durationMs >= item.durationMs - 250
	};
}

/**
 * Which plays of a refused batch to keep: the server names bad ones as `events[<i>]...` in a 422's
 * fields; those can never be accepted and are dropped, the rest are sent again.
 */
export function rejectedIndexes(fields: unknown): Set<number> {
	const bad = new Set<number>();
	if (!Array.isArray(fields)) return bad;
	for (const f of fields) {
		const match = isRecord(f) && typeof f.field === "string" ? /^events\[(\d+)\]/.exec(f.field) : null;
		if (match) bad.add(Number(match[1]));
	}
	return bad;
}
