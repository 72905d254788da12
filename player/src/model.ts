/**
 * The web player's pure decisions: what a manifest looks like (narrowed from untrusted JSON),
 * which item plays next, when to fetch the manifest again, where a layout's zones sit, whether
 * the screen is on, how a web page is sandboxed, and what a play record is. No DOM and no
 * network: unit-tested in Node (test/unit/player-model.test.ts).
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

export interface Ref {
	id: string;
	name: string;
}

/** A zone of a layout: a box in fractions (0–1) of the frame from its top left, with its own loop. */
export interface ManifestZone {
	id: string;
	name: string;
	x: number;
	y: number;
	width: number;
	height: number;
	zIndex: number;
	playlist: Ref | null;
	/** Changes exactly when the zone's place or items change. */
	etag: string;
	items: ManifestItem[];
}

/**
 * A screen made of zones. `width` × `height` is the frame (pixels, or only a ratio such as 16 × 9):
 * it is shown letterboxed in the window at that ratio.
 */
export interface ManifestLayout {
	id: string;
	name: string;
	width: number;
	height: number;
	/** `#rrggbb`, or null for black. */
	backgroundColor: string | null;
	/** An image behind every zone. */
	background: ManifestItem | null;
	/** The zone the manifest's own `playlist`/`items` repeat (null: not said, by a server before it). */
	mainZoneId: string | null;
	/** In drawing order: lowest zIndex first. */
	zones: ManifestZone[];
}

/** Whether the screen is on, and the instant (server clock) that flips next; null = never. */
export interface Power {
	state: "on" | "off";
	until: string | null;
}

export interface Manifest {
	displayId: string;
	etag: string;
	generatedAt: string;
	validUntil: string | null;
	timezone: string;
	/** With a layout, `playlist` and `items` are its main zone's (for players that know no layouts). */
	playlist: Ref | null;
	schedule: Ref | null;
	source: string;
	items: ManifestItem[];
	/** null: one full-screen playlist (`playlist`, `items`). */
	layout: ManifestLayout | null;
	/** null: no power schedule reaches this screen, always on. */
	power: Power | null;
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

function isRef(value: unknown): value is Ref | null {
	return value === null || (isRecord(value) && typeof value.id === "string" && typeof value.name === "string");
}

function isFraction(value: unknown): value is number {
	return typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= 1;
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

/** The items of a list this player can show: one it cannot is left out rather than failing the whole list. */
function showableItems(items: readonly unknown[]): ManifestItem[] {
	return items.filter(isItem).map(asItem);
}

function asItem(item: ManifestItem): ManifestItem {
	return { ...item, sha256: item.sha256 ?? "", size: typeof item.size === "number" ? item.size : 0 };
}

/**
 * A zone, or null when it is not one: no id or etag, a box outside the frame's 0–1 range (or
 * empty), a zIndex that is not a whole number, a malformed playlist or no item list.
 */
function asZone(value: unknown): ManifestZone | null {
	if (!isRecord(value)) return null;
	const { id, name, x, y, width, height, zIndex, playlist, etag, items } = value;
	if (typeof id !== "string" || typeof etag !== "string" || !isRef(playlist) || !Array.isArray(items)) return null;
	if (!isFraction(x) || !isFraction(y) || !isFraction(width) || !isFraction(height) || width === 0 || height === 0) return null;
	if (typeof zIndex !== "number" || !Number.isSafeInteger(zIndex)) return null;
	return { id, name: typeof name === "string" ? name : "", x, y, width, height, zIndex, playlist, etag, items: showableItems(items) };
}

const COLOR = /^#[0-9a-fA-F]{6}$/;

/**
 * The layout of a manifest: null when it has none (or is from a server that knows none),
 * undefined when it is malformed (the frame, the colour, the zone list). A zone that is not one,
 * or a background that is not a showable image, is left out like an item.
 */
function asLayout(value: unknown): ManifestLayout | null | undefined {
	if (value === null || value === undefined) return null;
	if (!isRecord(value)) return undefined;
	const { id, name, width, height, backgroundColor, background, zones, mainZoneId: main } = value;
	if (typeof id !== "string" || !Array.isArray(zones)) return undefined;
	if (typeof width !== "number" || typeof height !== "number" || !Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) return undefined;
	if (!(backgroundColor === null || backgroundColor === undefined || (typeof backgroundColor === "string" && COLOR.test(backgroundColor)))) return undefined;
	const parsed = zones.map(asZone).filter((z): z is ManifestZone => z !== null);
	// Drawing order, whatever order they came in (a stable sort keeps the server's among equals).
	parsed.sort((a, b) => a.zIndex - b.zIndex);
	return {
		id,
		name: typeof name === "string" ? name : "",
		width,
		height,
		backgroundColor: backgroundColor ?? null,
		background: isItem(background) && background.type === "image" ? asItem(background) : null,
		mainZoneId: typeof main === "string" && parsed.some(z => z.id === main) ? main : null,
		zones: parsed
	};
}

/** A power state (manifest or heartbeat answer): null when none is given, undefined when malformed. */
export function asPower(value: unknown): Power | null | undefined {
	if (value === null || value === undefined) return null;
	if (!isRecord(value) || (value.state !== "on" && value.state !== "off")) return undefined;
	if (!(value.until === null || value.until === undefined || (typeof value.until === "string" && !Number.isNaN(Date.parse(value.until))))) return undefined;
	return { state: value.state, until: value.until ?? null };
}

/**
 * A manifest the player can play, or null for anything else (a stored copy, a server answer).
 * `layout` and `power` may be missing (a server that knows neither); malformed, they refuse the
 * manifest (the player keeps what it plays and asks again), since playing it otherwise would show
 * the wrong screen or light one that should be dark.
 */
export function asManifest(value: unknown): Manifest | null {
	if (!isRecord(value)) return null;
	if (typeof value.displayId !== "string" || typeof value.etag !== "string") return null;
	if (!(value.validUntil === null || typeof value.validUntil === "string")) return null;
	if (!isRef(value.playlist) || !isRef(value.schedule) || !Array.isArray(value.items)) return null;
	const layout = asLayout(value.layout);
	const power = asPower(value.power);
	if (layout === undefined || power === undefined) return null;
	return {
		displayId: value.displayId,
		etag: value.etag,
		generatedAt: typeof value.generatedAt === "string" ? value.generatedAt : "",
		validUntil: value.validUntil,
		timezone: typeof value.timezone === "string" ? value.timezone : "UTC",
		playlist: value.playlist,
		schedule: value.schedule,
		source: typeof value.source === "string" ? value.source : "none",
		items: showableItems(value.items),
		layout,
		power
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

/**
 * What one area of the screen plays in a loop: the whole window's playlist (no layout) or one
 * zone's. `etag` changes exactly when the loop must change; `playlist` and `schedule` go into its
 * play records.
 */
export interface Programme {
	etag: string;
	items: ManifestItem[];
	playlist: Ref | null;
	schedule: Ref | null;
}

/** The full-window loop of a manifest without a layout. */
export function manifestProgramme(manifest: Manifest): Programme {
	return { etag: manifest.etag, items: manifest.items, playlist: manifest.playlist, schedule: manifest.schedule };
}

/** A zone's loop: its items, its playlist, and the manifest's schedule. */
export function zoneProgramme(manifest: Pick<Manifest, "schedule">, zone: ManifestZone): Programme {
	return { etag: zone.etag, items: zone.items, playlist: zone.playlist, schedule: manifest.schedule };
}

/**
 * The main zone of a layout: the one whose content is also the manifest's own `playlist`/`items`
 * (for old players), as the server names it; from a server that does not, the largest, among
 * equals the one playing the manifest's items, then its playlist, then the first.
 */
export function mainZoneId(manifest: Pick<Manifest, "layout" | "playlist" | "items">): string | null {
	if (manifest.layout?.mainZoneId) return manifest.layout.mainZoneId;
	const zones = manifest.layout?.zones ?? [];
	if (zones.length === 0) return null;
	const area = (z: ManifestZone) => z.width * z.height;
	const largest = Math.max(...zones.map(area));
	const candidates = zones.filter(z => area(z) >= largest - 1e-9);
	const ids = manifest.items.map(i => i.contentId).join("\n");
	const samePlaylist = (z: ManifestZone) => (z.playlist?.id ?? null) === (manifest.playlist?.id ?? null);
	const best = candidates.find(z => samePlaylist(z) && z.items.map(i => i.contentId).join("\n") === ids) ?? candidates.find(samePlaylist) ?? candidates[0];
	return best.id;
}

/** CSS percentages, rounded so that 0.1 is "10%", not "10.000000000000002%". */
function percentOf(fraction: number): string {
	return `${Math.round(fraction * 1e6) / 1e4}%`;
}

/** A zone's box inside the frame, as the inline style of an absolutely positioned element. */
export function zoneStyle(zone: Pick<ManifestZone, "x" | "y" | "width" | "height" | "zIndex">): { left: string; top: string; width: string; height: string; zIndex: string } {
	return { left: percentOf(zone.x), top: percentOf(zone.y), width: percentOf(zone.width), height: percentOf(zone.height), zIndex: String(zone.zIndex) };
}

/** The colour behind a layout's zones. */
export function layoutColor(layout: Pick<ManifestLayout, "backgroundColor">): string {
	return layout.backgroundColor ?? "#000000";
}

/** Whether a manifest has anything to show (else the player says nothing is scheduled). */
export function hasContent(manifest: Pick<Manifest, "items" | "layout">): boolean {
	if (!manifest.layout) return manifest.items.length > 0;
	return manifest.layout.background !== null || manifest.layout.zones.some(z => z.items.length > 0);
}

/**
 * Every file a manifest needs, once each (by sha256): its own items (a layout's main zone's come
 * first), the background, then the other zones'. Web pages are not downloaded.
 */
export function manifestMedia(manifest: Pick<Manifest, "items" | "layout">): ManifestItem[] {
	const all = [...manifest.items, ...(manifest.layout?.background ? [manifest.layout.background] : []), ...(manifest.layout?.zones ?? []).flatMap(z => z.items)];
	const seen = new Set<string>();
	return all.filter(item => {
		if (!isDownloaded(item) || seen.has(item.sha256)) return false;
		seen.add(item.sha256);
		return true;
	});
}

/**
 * The power state at `serverNowMs`: the given one until its `until`, the other one from then on
 * (with no next flip known: the player asks the server). No power (null) is always on.
 * `untilMs` is when the answer changes, null = not by itself.
 */
export function powerAt(power: Power | null, serverNowMs: number): { state: "on" | "off"; untilMs: number | null } {
	if (!power) return { state: "on", untilMs: null };
	const until = power.until === null ? Number.NaN : Date.parse(power.until);
	if (Number.isNaN(until)) return { state: power.state, untilMs: null };
	if (serverNowMs < until) return { state: power.state, untilMs: until };
	return { state: power.state === "on" ? "off" : "on", untilMs: null };
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
	return delayUntil(at, localNowMs, serverOffsetMs);
}

/** Milliseconds until the server's clock reads `atMs`: never negative, at most setTimeout's ceiling. */
export function delayUntil(atMs: number, localNowMs: number, serverOffsetMs: number): number {
	return Math.min(MAX_TIMER_MS, Math.max(0, atMs - (localNowMs + serverOffsetMs)));
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
	programme: Pick<Programme, "playlist" | "schedule">,
	startedAtMs: number,
	endedAtMs: number
): PlayRecord {
	const durationMs = Math.max(0, Math.min(86_400_000, Math.round(endedAtMs - startedAtMs)));
	return {
		eventId,
		contentId: item.contentId,
		...(programme.playlist ? { playlistId: programme.playlist.id } : {}),
		...(programme.schedule ? { scheduleId: programme.schedule.id } : {}),
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
