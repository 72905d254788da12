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
import { manifestEtagKey, type ContentView, type Manifest, type ManifestItem } from "../../shared/contracts";
import { earliestInstant, itemsValidAt, type Resolution } from "./engine";

export type { Manifest, ManifestItem };
export { manifestEtagKey };

/** Content as media describes it (`media.byIds`): what a manifest and a playlist view use of it. */
export type ContentInfo = Pick<
	ContentView,
	"id" | "name" | "type" | "mimeType" | "size" | "sha256" | "width" | "height" | "durationMs" | "url" | "status" | "validFrom" | "validUntil"
>;

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

export interface ManifestInput {
	displayId: string;
	resolution: Resolution;
	/** The playlist the resolution names, or null (none, or it no longer exists). */
	playlist: PlaylistData | null;
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

export function etagOf(manifest: Omit<Manifest, "etag" | "generatedAt">): string {
	const hash = crypto.createHash("sha256").update(JSON.stringify(manifest)).digest("base64url");
	return `"${hash.slice(0, 32)}"`;
}

/**
 * The manifest at `at`: ready content of the playlist inside its own validity window, and
 * validUntil = the earlier of the resolution's next change and the next validity edge of the
 * playlist's content.
 */
export function buildManifest(input: ManifestInput): Manifest {
	const { resolution, playlist } = input;
	const items = playlist ? effectiveItems(playlist, input.content).filter(i => i.content.status === "ready") : [];
	const valid = itemsValidAt(
		items.map(i => ({ ...i, validFrom: i.content.validFrom, validUntil: i.content.validUntil })),
		input.at
	);
	const body = {
		displayId: input.displayId,
		validUntil: earliestInstant(resolution.validUntil, valid.validUntil),
		timezone: resolution.timezone,
		source: resolution.source,
		playlist: playlist ? { id: playlist.id, name: playlist.name } : null,
		schedule: resolution.scheduleId ? { id: resolution.scheduleId, name: input.scheduleName ?? "" } : null,
		override: resolution.overrideId ? { id: resolution.overrideId, name: input.overrideName ?? "" } : null,
		items: valid.items.map(i => manifestItem(i.content, i.durationMs))
	};
	const { displayId, ...rest } = body;
	return { displayId, etag: etagOf(body), generatedAt: input.at.toISOString(), ...rest };
}

/** RFC 9110 If-None-Match: `*`, or a list of (possibly weak) entity tags, one of which is `etag`. */
export function etagMatches(header: string | undefined, etag: string): boolean {
	if (!header) return false;
	return header.split(",").some(raw => {
		const tag = raw.trim();
		return tag === "*" || tag.replace(/^W\//, "") === etag;
	});
}
