/**
 * Device manifests as pure functions: a resolution (engine), the playlist it names and that
 * playlist's content → the manifest a display plays, and its ETag.
 *
 * The ETag is a hash of everything in the manifest except `generatedAt` (and itself): what
 * plays, in which order, for how long, and until when (`validUntil`). Item URLs are stable
 * paths, never signed URLs, so the same answer always has the same ETag. `validUntil` is part of
 * it on purpose: when a change (say, a schedule added for next week) moves only the next edge,
 * a device holding the old manifest must learn it, so its If-None-Match no longer matches.
 */
import crypto from "node:crypto";
import { manifestEtagKey, type ContentView, type LayoutZoneView, type Manifest, type ManifestItem, type ManifestPower, type ManifestLayout, type ManifestZone } from "../../shared/contracts";
import { isLive } from "../../shared/approval";
import { earliestInstant, itemsValidAt, type Resolution } from "./engine";

export type { Manifest, ManifestItem };
export { manifestEtagKey };

/** Content as media describes it (`media.byIds`): what a manifest and a playlist view use of it. */
export type ContentInfo = Pick<
	ContentView,
	"id" | "name" | "type" | "mimeType" | "size" | "sha256" | "width" | "height" | "durationMs" | "url" | "status" | "validFrom" | "validUntil"
> &
	Partial<Pick<ContentView, "approval">>;

/** Content a screen may play: stored, and approved (or in a tenant without approval). */
function playableContent(info: ContentInfo): boolean {
	return info.status === "ready" && isLive(info);
}

export interface PlaylistItem {
	id: string;
	contentId: string;
	/** null = the content's own duration */
	durationMs: number | null;
}

export interface PlaylistData {
	id: string;
	name: string;
	items: PlaylistItem[];
}

export interface LayoutData {
	id: string;
	name: string;
	width: number;
	height: number;
	backgroundColor: string | null;
	backgroundContentId: string | null;
	zones: LayoutZoneView[];
}

export interface ManifestInput {
	displayId: string;
	resolution: Resolution;
	/** The playlist the resolution names, or null (none, a layout, or it no longer exists). */
	playlist: PlaylistData | null;
	/** The layout the resolution names, or null. */
	layout?: LayoutData | null;
	/** The playlists of the layout's zones by id; ids missing here (deleted) play nothing. */
	playlists?: Map<string, PlaylistData>;
	/** The screen's power (power.ts), null when no power schedule reaches the display. */
	power?: ManifestPower | null;
	scheduleName: string | null;
	overrideName: string | null;
	/** The playlist's content by id; ids missing here (deleted) are left out. */
	content: Map<string, ContentInfo>;
	at: Date;
}

/** A playlist item with its effective duration and its content; items whose content is gone drop out. */
export function effectiveItems(playlist: PlaylistData, content: Map<string, ContentInfo>) {
	return playlist.items.flatMap(item => {
		const info = content.get(item.contentId);
		return info ? [{ ...item, durationMs: item.durationMs ?? info.durationMs, content: info }] : [];
	});
}

export function deviceContentPath(contentId: string): string {
	return `/api/v1/device/content/${contentId}`;
}

function manifestItem(info: ContentInfo, durationMs: number): ManifestItem {
	const item: ManifestItem = {
		contentId: info.id,
		name: info.name,
		type: info.type,
		mimeType: info.mimeType,
		// A web page plays from its own address; files come through the device download route.
		url: info.type === "web" && info.url ? info.url : deviceContentPath(info.id),
		sha256: info.sha256,
		size: info.size,
		durationMs
	};
	if (info.width) item.width = info.width;
	if (info.height) item.height = info.height;
	return item;
}

/** A hash of a manifest (or a zone) without its etag and generatedAt. */
export function etagOf(manifest: object): string {
	const hash = crypto.createHash("sha256").update(JSON.stringify(manifest)).digest("base64url");
	return `"${hash.slice(0, 32)}"`;
}

/** What a playlist plays at `at`: its ready items inside their validity windows, and when that set changes next. */
function playable(playlist: PlaylistData | null, content: Map<string, ContentInfo>, at: Date): { items: ManifestItem[]; validUntil: string | null } {
	const items = playlist ? effectiveItems(playlist, content).filter(i => playableContent(i.content)) : [];
	const valid = itemsValidAt(
		items.map(i => ({ ...i, validFrom: i.content.validFrom, validUntil: i.content.validUntil })),
		at
	);
	return { items: valid.items.map(i => manifestItem(i.content, i.durationMs)), validUntil: valid.validUntil };
}

/** The zone a player that knows nothing of layouts plays: the largest, the first listed among equals. */
export function mainZone<Z extends { width: number; height: number }>(zones: Z[]): Z | null {
	let best: Z | null = null;
	for (const zone of zones) if (!best || zone.width * zone.height > best.width * best.height) best = zone;
	return best;
}

/** A layout as the player gets it at `at`, each zone with its items, and the next instant any of it changes. */
function layoutAt(layout: LayoutData, input: ManifestInput): { layout: ManifestLayout; main: ManifestZone | null; validUntil: string | null } {
	const edges: Array<string | null> = [];
	const zones = layout.zones.map((zone, order) => {
		const playlist = input.playlists?.get(zone.playlistId) ?? null;
		const now = playable(playlist, input.content, input.at);
		edges.push(now.validUntil);
		const placed = { id: zone.id, x: zone.x, y: zone.y, width: zone.width, height: zone.height, zIndex: zone.zIndex, playlistId: playlist?.id ?? null, items: now.items };
		// Names are left out: renaming a zone or its playlist does not restart what the zone plays.
		const etag = etagOf(placed);
		const body: ManifestZone = {
			id: zone.id,
			name: zone.name,
			x: zone.x,
			y: zone.y,
			width: zone.width,
			height: zone.height,
			zIndex: zone.zIndex,
			playlist: playlist ? { id: playlist.id, name: playlist.name } : null,
			etag,
			items: now.items
		};
		return { order, zone: body };
	});
	const main = mainZone(zones.map(z => z.zone));
	// Drawing order: lowest zIndex first, the listed order among equals.
	zones.sort((a, b) => a.zone.zIndex - b.zone.zIndex || a.order - b.order);
	let background: ManifestItem | null = null;
	const image = layout.backgroundContentId ? input.content.get(layout.backgroundContentId) : undefined;
	if (image && playableContent(image)) {
		const now = itemsValidAt([{ contentId: image.id, validFrom: image.validFrom, validUntil: image.validUntil }], input.at);
		edges.push(now.validUntil);
		if (now.items.length) background = manifestItem(image, image.durationMs);
	}
	return {
		layout: {
			id: layout.id,
			name: layout.name,
			width: layout.width,
			height: layout.height,
			backgroundColor: layout.backgroundColor,
			background,
			mainZoneId: main?.id ?? null,
			zones: zones.map(z => z.zone)
		},
		main,
		validUntil: earliestInstant(...edges)
	};
}

/**
 * The manifest at `at`: ready content of the playlist (or of each zone of the layout) inside its
 * own validity window, the screen's power, and validUntil = the earliest of the resolution's next
 * change, the next validity edge of any content it plays and the next flip of the power.
 */
export function buildManifest(input: ManifestInput): Manifest {
	const { resolution } = input;
	let playlist: Manifest["playlist"] = null;
	let items: ManifestItem[] = [];
	let layout: ManifestLayout | null = null;
	let contentEdge: string | null = null;
	if (input.layout) {
		const at = layoutAt(input.layout, input);
		({ layout } = at);
		playlist = at.main?.playlist ?? null;
		items = at.main?.items ?? [];
		contentEdge = at.validUntil;
	} else if (input.playlist) {
		const now = playable(input.playlist, input.content, input.at);
		playlist = { id: input.playlist.id, name: input.playlist.name };
		({ items } = now);
		contentEdge = now.validUntil;
	}
	const body = {
		displayId: input.displayId,
		validUntil: earliestInstant(resolution.validUntil, contentEdge, input.power?.until),
		timezone: resolution.timezone,
		source: resolution.source,
		playlist,
		schedule: resolution.scheduleId ? { id: resolution.scheduleId, name: input.scheduleName ?? "" } : null,
		override: resolution.overrideId ? { id: resolution.overrideId, name: input.overrideName ?? "" } : null,
		items,
		layout,
		power: input.power ?? null
	};
	const { displayId, ...rest } = body;
	return { displayId, etag: etagOf(body), generatedAt: input.at.toISOString(), ...rest };
}

/** Every content id a manifest plays: its items, its layout's zones and background. */
export function manifestContentIds(manifest: Pick<Manifest, "items" | "layout">): Set<string> {
	const ids = new Set(manifest.items.map(i => i.contentId));
	for (const zone of manifest.layout?.zones ?? []) for (const item of zone.items) ids.add(item.contentId);
	if (manifest.layout?.background) ids.add(manifest.layout.background.contentId);
	return ids;
}

/** RFC 9110 If-None-Match: `*`, or a list of (possibly weak) entity tags, one of which is `etag`. */
export function etagMatches(header: string | undefined, etag: string): boolean {
	if (!header) return false;
	return header.split(",").some(raw => {
		const tag = raw.trim();
		return tag === "*" || tag.replace(/^W\//, "") === etag;
	});
}
