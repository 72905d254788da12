/**
 * scheduling: playlists, schedules, overrides, what a display plays (preview, timeline, manifest).
 *
 * Every REST body here is a TypeBox schema: the handler returns its Static type and the OpenAPI
 * document publishes the schema. Params types are what a handler receives after validation
 * (defaults applied); the fastest-validator rules are in services/scheduling/params.ts.
 */
import { Type, type Static } from "@sinclair/typebox";
import { ContentView } from "./media";
import { Id, Instant, Nullable, PageOf, type ExportParams, type PageParams } from "./views";

// ---- shared pieces ----------------------------------------------------------------------------

/** A reference by id with the name it had when answered. */
export const ScheduleRef = Type.Object({ id: Id, name: Type.String() });
export type ScheduleRef = Static<typeof ScheduleRef>;

/** Targets as stored and answered: every list present (an empty list names nothing). */
export const TargetsView = Type.Object({ displayIds: Type.Array(Id), groupIds: Type.Array(Id), tags: Type.Array(Type.String()) });
export type TargetsView = Static<typeof TargetsView>;

/** Why a display plays what it plays. */
export const PlaySource = Type.Union([Type.Literal("override"), Type.Literal("schedule"), Type.Literal("default"), Type.Literal("none")]);
export type PlaySource = Static<typeof PlaySource>;

/** YYYY-MM-DD, a local date of the display. */
const LocalDate = Type.String({ pattern: "^\\d{4}-\\d{2}-\\d{2}$" });
/** HH:mm, a local wall-clock time of the display. */
const LocalTime = Type.String({ pattern: "^([01]\\d|2[0-3]):[0-5]\\d$" });

// ---- playlists --------------------------------------------------------------------------------

export const PlaylistItemView = Type.Object({
	id: Id,
	contentId: Id,
	/** The effective duration: the item's own, else its content's. */
	durationMs: Type.Integer({ minimum: 0 }),
	/** false: the content's own duration (follows it when the content changes). */
	customDuration: Type.Boolean(),
	name: Type.String(),
	type: ContentView.properties.type
});
export type PlaylistItemView = Static<typeof PlaylistItemView>;

/** API.md's playlist. Items whose content is gone are left out. */
export const PlaylistView = Type.Object({
	id: Id,
	name: Type.String(),
	items: Type.Array(PlaylistItemView),
	totalDurationMs: Type.Integer({ minimum: 0 }),
	createdAt: Instant,
	updatedAt: Instant
});
export type PlaylistView = Static<typeof PlaylistView>;

export const PlaylistPage = PageOf(PlaylistView);
export type PlaylistPage = Static<typeof PlaylistPage>;

/** A playlist item as a write sends it; an `id` of the current list keeps that item. */
export interface PlaylistItemInput {
	id?: string;
	contentId: string;
	/** null or absent: the content's own duration. */
	durationMs?: number | null;
}

/** Targets as a write sends them: any list may be left out. */
export interface TargetsInput {
	displayIds?: string[];
	groupIds?: string[];
	tags?: string[];
}

// ---- schedules --------------------------------------------------------------------------------

export const ScheduleView = Type.Object({
	id: Id,
	name: Type.String(),
	playlistId: Id,
	targets: TargetsView,
	excludeDisplayIds: Type.Array(Id),
	startDate: Nullable(LocalDate),
	endDate: Nullable(LocalDate),
	/** ISO weekdays 1 (Mon)–7 (Sun), ascending; null = every day. */
	daysOfWeek: Nullable(Type.Array(Type.Integer({ minimum: 1, maximum: 7 }))),
	startTime: Nullable(LocalTime),
	endTime: Nullable(LocalTime),
	priority: Type.Integer({ minimum: 0 }),
	createdAt: Instant,
	updatedAt: Instant
});
export type ScheduleView = Static<typeof ScheduleView>;

export const SchedulePage = PageOf(ScheduleView);
export type SchedulePage = Static<typeof SchedulePage>;

export interface ScheduleInput {
	name: string;
	playlistId: string;
	targets: TargetsInput;
	excludeDisplayIds?: string[];
	startDate?: string | null;
	endDate?: string | null;
	daysOfWeek?: number[] | null;
	startTime?: string | null;
	endTime?: string | null;
	priority?: number;
}

// ---- overrides --------------------------------------------------------------------------------

export const OverrideStatus = Type.Union([Type.Literal("active"), Type.Literal("scheduled"), Type.Literal("ended")]);
export type OverrideStatus = Static<typeof OverrideStatus>;

export const OverrideView = Type.Object({
	id: Id,
	name: Type.String(),
	playlistId: Id,
	/** null = every display of the tenant. */
	targets: Nullable(TargetsView),
	excludeDisplayIds: Type.Array(Id),
	startsAt: Instant,
	endsAt: Instant,
	/** When it was ended early (DELETE /overrides/:id). */
	endedAt: Nullable(Instant),
	status: OverrideStatus,
	createdAt: Instant,
	updatedAt: Instant
});
export type OverrideView = Static<typeof OverrideView>;

export const OverridePage = PageOf(OverrideView);
export type OverridePage = Static<typeof OverridePage>;

export interface OverrideInput {
	name: string;
	playlistId: string;
	/** null or absent = every display. */
	targets?: TargetsInput | null;
	excludeDisplayIds?: string[];
	startsAt?: string;
	endsAt: string;
}

// ---- what plays -------------------------------------------------------------------------------

export const ManifestItem = Type.Object({
	contentId: Id,
	name: Type.String(),
	type: ContentView.properties.type,
	mimeType: Type.String(),
	/** `/device/content/:contentId`, or a web page's own address. */
	url: Type.String(),
	sha256: Nullable(Type.String()),
	size: Type.Integer({ minimum: 0 }),
	durationMs: Type.Integer({ minimum: 0 }),
	/** Only when known (and not 0). */
	width: Type.Optional(Type.Integer()),
	height: Type.Optional(Type.Integer())
});
export type ManifestItem = Static<typeof ManifestItem>;

/** API.md's manifest; the ETag covers everything but `generatedAt`. */
export const Manifest = Type.Object({
	displayId: Id,
	etag: Type.String(),
	generatedAt: Instant,
	/** The next instant the manifest can change; null = never. */
	validUntil: Nullable(Instant),
	timezone: Type.String(),
	source: PlaySource,
	playlist: Nullable(ScheduleRef),
	schedule: Nullable(ScheduleRef),
	override: Nullable(ScheduleRef),
	items: Type.Array(ManifestItem)
});
export type Manifest = Static<typeof Manifest>;

/** Why one schedule did or did not win at the previewed instant. */
export const ScheduleCandidate = Type.Object({
	scheduleId: Id,
	name: Type.String(),
	priority: Type.Integer(),
	matched: Type.Boolean(),
	reason: Type.String()
});
export type ScheduleCandidate = Static<typeof ScheduleCandidate>;

/** GET /displays/:id/preview. */
export const PreviewView = Type.Object({
	at: Instant,
	/** `at` in the display's zone, with its offset. */
	localTime: Type.String(),
	timezone: Type.String(),
	source: PlaySource,
	playlist: Nullable(ScheduleRef),
	schedule: Nullable(ScheduleRef),
	override: Nullable(ScheduleRef),
	candidates: Type.Array(ScheduleCandidate),
	validUntil: Nullable(Instant),
	items: Type.Array(ManifestItem)
});
export type PreviewView = Static<typeof PreviewView>;

export const TimelineSegmentView = Type.Object({
	start: Instant,
	end: Instant,
	source: PlaySource,
	playlistId: Nullable(Id),
	scheduleId: Nullable(Id),
	/** start and end in the display's zone, with their offset. */
	localStart: Type.String(),
	localEnd: Type.String()
});
export type TimelineSegmentView = Static<typeof TimelineSegmentView>;

/** GET /displays/:id/timeline. */
export const TimelineView = Type.Object({
	timezone: Type.String(),
	from: Instant,
	to: Instant,
	segments: Type.Array(TimelineSegmentView)
});
export type TimelineView = Static<typeof TimelineView>;

// ---- tenant export ----------------------------------------------------------------------------

export const SchedulingExport = Type.Object({
	/** Items as stored: each with its own duration or null. */
	playlists: Type.Array(
		Type.Object({
			id: Id,
			name: Type.String(),
			items: Type.Array(Type.Object({ id: Id, contentId: Id, durationMs: Nullable(Type.Integer()) })),
			createdAt: Instant,
			updatedAt: Instant
		})
	),
	schedules: Type.Array(ScheduleView),
	overrides: Type.Array(OverrideView)
});
export type SchedulingExport = Static<typeof SchedulingExport>;

// ---- the key/value entry scheduling shares with devices ---------------------------------------

/** The kv key of a display's current manifest ETag: scheduling writes it, the heartbeat reads it. */
export function manifestEtagKey(displayId: string): string {
	return `manifest-etag:${displayId}`;
}

// ---- actions and events -----------------------------------------------------------------------

type ById = { id: string };

export interface SchedulingActions {
	"scheduling.createPlaylist": { params: { name: string; items?: PlaylistItemInput[] }; result: PlaylistView };
	"scheduling.listPlaylists": { params: PageParams & { q?: string; contentId?: string }; result: PlaylistPage };
	"scheduling.getPlaylist": { params: ById; result: PlaylistView };
	"scheduling.updatePlaylist": { params: ById & { name?: string; items?: PlaylistItemInput[] }; result: PlaylistView };
	/** 409 while in use, unless force. */
	"scheduling.removePlaylist": { params: ById & { force?: boolean }; result: null };

	"scheduling.createSchedule": { params: ScheduleInput; result: ScheduleView };
	"scheduling.listSchedules": { params: PageParams & { displayId?: string; playlistId?: string }; result: SchedulePage };
	"scheduling.getSchedule": { params: ById; result: ScheduleView };
	"scheduling.updateSchedule": { params: ById & Partial<ScheduleInput>; result: ScheduleView };
	"scheduling.removeSchedule": { params: ById; result: null };

	"scheduling.createOverride": { params: OverrideInput; result: OverrideView };
	"scheduling.listOverrides": { params: PageParams & { status?: OverrideStatus }; result: OverridePage };
	"scheduling.getOverride": { params: ById; result: OverrideView };
	"scheduling.updateOverride": { params: ById & Partial<Omit<OverrideInput, "startsAt">>; result: OverrideView };
	/** Ends it now (idempotent). */
	"scheduling.endOverride": { params: ById; result: null };

	"scheduling.preview": { params: ById & { at?: string }; result: PreviewView };
	"scheduling.timeline": { params: ById & { from?: string; to?: string }; result: TimelineView };
	/** The calling display's manifest; null with a 304 when its If-None-Match matches. */
	"scheduling.deviceManifest": { params: Record<string, never>; result: Manifest | null };

	/** Takes a deleted content item out of every playlist; answers how many playlists changed. */
	"scheduling.removeContent": { params: { tenantId: string; contentId: string }; result: number };
	/** Whether a display's current manifest plays this content (device downloads). */
	"scheduling.contentInManifest": { params: { displayId: string; contentId: string }; result: boolean };
	/** Whether the caller's tenant has this playlist (a display's default playlist). */
	"scheduling.playlistExists": { params: { id: string }; result: boolean };
	"scheduling.exportTenantData": { params: ExportParams; result: SchedulingExport };
}

export interface SchedulingEvents {
	/** New manifests for these displays (their new ETags): the gateway pushes them to connected players. */
	"scheduling.manifest.changed": { tenantId: string; displayIds: string[]; etags: Record<string, string> };
}
