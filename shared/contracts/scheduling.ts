/**
 * scheduling: playlists, schedules, overrides, what a display plays (preview, timeline, manifest).
 *
 * Every REST body here is a TypeBox schema: the handler returns its Static type and the OpenAPI
 * document publishes the schema. Params types are what a handler receives after validation
 * (defaults applied); the fastest-validator rules are in services/scheduling/params.ts.
 */
import { Type, type Static } from "@sinclair/typebox";
import type { GroupedAnswer, GroupedCall } from "../group-call";
import { ContentView } from "./media";
import { ApprovalView, Id, Instant, Nullable, PageOf, type ApprovalDecisionParams, type ApprovalStatus, type ExportParams, type PageParams } from "./views";

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

/**
 * API.md's playlist. Items whose content is gone are left out. `items` are what plays; under
 * content approval an editor's change of them waits in `draft` until an admin approves it.
 */
export const PlaylistView = Type.Object({
	id: Id,
	name: Type.String(),
	items: Type.Array(PlaylistItemView),
	totalDurationMs: Type.Integer({ minimum: 0 }),
	approval: ApprovalView,
	/** The items waiting for approval (null when no change waits). */
	draft: Nullable(Type.Object({ items: Type.Array(PlaylistItemView), totalDurationMs: Type.Integer({ minimum: 0 }) })),
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

// ---- layouts ----------------------------------------------------------------------------------

/** A zone of a layout: a rectangle in units of the frame (0–1 from its top left), bound to a playlist. */
export const LayoutZoneView = Type.Object({
	id: Id,
	name: Type.String(),
	x: Type.Number({ minimum: 0, maximum: 1 }),
	y: Type.Number({ minimum: 0, maximum: 1 }),
	width: Type.Number({ minimum: 0.001, maximum: 1 }),
	height: Type.Number({ minimum: 0.001, maximum: 1 }),
	/** Higher zones are drawn over lower ones. */
	zIndex: Type.Integer(),
	playlistId: Id
});
export type LayoutZoneView = Static<typeof LayoutZoneView>;

/** A screen composed of zones. `width` × `height` is the frame: pixels (1920 × 1080) or just its ratio (16 × 9). */
export const LayoutView = Type.Object({
	id: Id,
	name: Type.String(),
	width: Type.Integer({ minimum: 1 }),
	height: Type.Integer({ minimum: 1 }),
	/** `#rrggbb` behind every zone; null = black. */
	backgroundColor: Nullable(Type.String()),
	/** An image of the tenant's content behind every zone. */
	backgroundContentId: Nullable(Id),
	zones: Type.Array(LayoutZoneView),
	createdAt: Instant,
	updatedAt: Instant
});
export type LayoutView = Static<typeof LayoutView>;

export const LayoutPage = PageOf(LayoutView);
export type LayoutPage = Static<typeof LayoutPage>;

/** A zone as a write sends it; an `id` of the current zones keeps that zone's id. */
export interface LayoutZoneInput {
	id?: string;
	name: string;
	x: number;
	y: number;
	width: number;
	height: number;
	zIndex?: number;
	playlistId: string;
}

export interface LayoutInput {
	name: string;
	width: number;
	height: number;
	backgroundColor?: string | null;
	backgroundContentId?: string | null;
	zones: LayoutZoneInput[];
}

// ---- schedules --------------------------------------------------------------------------------

/** When a rule applies, in the display's timezone: the fields schedules and power schedules share. */
const RULE_FIELDS = {
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
};

export const ScheduleView = Type.Object({
	id: Id,
	name: Type.String(),
	/** What it plays: a playlist or a layout (the other is null). */
	playlistId: Nullable(Id),
	layoutId: Nullable(Id),
	...RULE_FIELDS
});
export type ScheduleView = Static<typeof ScheduleView>;

export const SchedulePage = PageOf(ScheduleView);
export type SchedulePage = Static<typeof SchedulePage>;

export interface ScheduleInput {
	name: string;
	/** Exactly one of playlistId and layoutId. */
	playlistId?: string;
	layoutId?: string;
	targets: TargetsInput;
	excludeDisplayIds?: string[];
	startDate?: string | null;
	endDate?: string | null;
	daysOfWeek?: number[] | null;
	startTime?: string | null;
	endTime?: string | null;
	priority?: number;
}

// ---- screen power ---------------------------------------------------------------------------

export const PowerState = Type.Union([Type.Literal("on"), Type.Literal("off")]);
export type PowerState = Static<typeof PowerState>;

/**
 * A power schedule: the screens it targets are off (or, above an "off" rule, on) in its window,
 * in each display's timezone. Same rule fields as a schedule; the best matching rule wins.
 */
export const PowerScheduleView = Type.Object({ id: Id, name: Type.String(), state: PowerState, ...RULE_FIELDS });
export type PowerScheduleView = Static<typeof PowerScheduleView>;

export const PowerSchedulePage = PageOf(PowerScheduleView);
export type PowerSchedulePage = Static<typeof PowerSchedulePage>;

export interface PowerScheduleInput {
	name: string;
	/** Default "off". */
	state?: PowerState;
	targets: TargetsInput;
	excludeDisplayIds?: string[];
	startDate?: string | null;
	endDate?: string | null;
	daysOfWeek?: number[] | null;
	startTime?: string | null;
	endTime?: string | null;
	priority?: number;
}

/** A screen's power now and when it flips next (null = never), in the manifest and the heartbeat. */
export const ManifestPower = Type.Object({ state: PowerState, until: Nullable(Instant) });
export type ManifestPower = Static<typeof ManifestPower>;

// ---- overrides --------------------------------------------------------------------------------

export const OverrideStatus = Type.Union([Type.Literal("active"), Type.Literal("scheduled"), Type.Literal("ended")]);
export type OverrideStatus = Static<typeof OverrideStatus>;

export const OverrideView = Type.Object({
	id: Id,
	name: Type.String(),
	/** What it plays: a playlist or a layout (the other is null). */
	playlistId: Nullable(Id),
	layoutId: Nullable(Id),
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
	/** Exactly one of playlistId and layoutId. */
	playlistId?: string;
	layoutId?: string;
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

/** A zone as the player gets it: where it sits and what it plays, with an ETag of its own. */
export const ManifestZone = Type.Object({
	id: Id,
	name: Type.String(),
	x: Type.Number({ minimum: 0, maximum: 1 }),
	y: Type.Number({ minimum: 0, maximum: 1 }),
	width: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
	height: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
	zIndex: Type.Integer(),
	playlist: Nullable(ScheduleRef),
	/** Changes exactly when the zone's position, playlist or items change (not with a name). */
	etag: Type.String(),
	items: Type.Array(ManifestItem)
});
export type ManifestZone = Static<typeof ManifestZone>;

export const ManifestLayout = Type.Object({
	id: Id,
	name: Type.String(),
	width: Type.Integer(),
	height: Type.Integer(),
	backgroundColor: Nullable(Type.String()),
	/** The background image (null when none, or not ready). */
	background: Nullable(ManifestItem),
	/** The zone whose playlist and items the manifest's top-level `playlist`/`items` repeat (the largest; null without zones). */
	mainZoneId: Nullable(Id),
	/** In drawing order: lowest zIndex first. */
	zones: Type.Array(ManifestZone)
});
export type ManifestLayout = Static<typeof ManifestLayout>;

/**
 * API.md's manifest; the ETag covers everything but `generatedAt`. When a layout plays,
 * `layout` describes it and `playlist`/`items` are its main zone's (the largest), so a player
 * that knows nothing of layouts still plays something sensible.
 */
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
	items: Type.Array(ManifestItem),
	layout: Nullable(ManifestLayout),
	/** null: no power schedule reaches the display (always on). */
	power: Nullable(ManifestPower)
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
	items: Type.Array(ManifestItem),
	/** The layout that plays, with each zone's playlist and items. */
	layout: Nullable(ManifestLayout),
	/** The screen's power at `at` (null: no power schedule reaches it). */
	power: Nullable(ManifestPower)
});
export type PreviewView = Static<typeof PreviewView>;

export const TimelineSegmentView = Type.Object({
	start: Instant,
	end: Instant,
	source: PlaySource,
	playlistId: Nullable(Id),
	layoutId: Nullable(Id),
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
	/** Where the segments end: the period's end, or earlier when they were too many (`truncated`). */
	to: Instant,
	/** More than 1 000 segments: the answer stops at `to`; ask again from there. */
	truncated: Type.Boolean(),
	segments: Type.Array(TimelineSegmentView)
});
export type TimelineView = Static<typeof TimelineView>;

// ---- tenant export ----------------------------------------------------------------------------

const StoredItem = Type.Object({ id: Id, contentId: Id, durationMs: Nullable(Type.Integer()) });

export const SchedulingExport = Type.Object({
	/** Items as stored: each with its own duration or null. */
	playlists: Type.Array(
		Type.Object({
			id: Id,
			name: Type.String(),
			items: Type.Array(StoredItem),
			approval: ApprovalView,
			draft: Nullable(Type.Object({ items: Type.Array(StoredItem) })),
			createdAt: Instant,
			updatedAt: Instant
		})
	),
	layouts: Type.Array(LayoutView),
	schedules: Type.Array(ScheduleView),
	overrides: Type.Array(OverrideView),
	powerSchedules: Type.Array(PowerScheduleView)
});
export type SchedulingExport = Static<typeof SchedulingExport>;

// ---- the key/value entry scheduling shares with devices ---------------------------------------

/** The kv key of a display's current manifest ETag: scheduling writes it, the heartbeat reads it. */
export function manifestEtagKey(displayId: string): string {
	return `manifest-etag:${displayId}`;
}

/** The kv key of a display's current screen power (ManifestPower JSON; absent = no power schedule): scheduling writes it, the heartbeat reads it. */
export function manifestPowerKey(displayId: string): string {
	return `manifest-power:${displayId}`;
}

// ---- actions and events -----------------------------------------------------------------------

type ById = { id: string };

export interface SchedulingActions {
	"scheduling.createPlaylist": { params: { name: string; items?: PlaylistItemInput[] }; result: PlaylistView };
	"scheduling.listPlaylists": { params: PageParams & { q?: string; contentId?: string; approval?: Exclude<ApprovalStatus, "approved"> }; result: PlaylistPage };
	"scheduling.getPlaylist": { params: ById; result: PlaylistView };
	"scheduling.updatePlaylist": { params: ById & { name?: string; items?: PlaylistItemInput[] }; result: PlaylistView };
	/** 409 while in use, unless force. */
	"scheduling.removePlaylist": { params: ById & { force?: boolean }; result: null };
	/** An admin's decision on the pending change of the items (409 when none is pending). */
	"scheduling.approvePlaylist": { params: ApprovalDecisionParams; result: PlaylistView };
	"scheduling.rejectPlaylist": { params: ApprovalDecisionParams & { comment: string }; result: PlaylistView };

	"scheduling.createLayout": { params: LayoutInput; result: LayoutView };
	"scheduling.listLayouts": { params: PageParams & { q?: string; playlistId?: string }; result: LayoutPage };
	"scheduling.getLayout": { params: ById; result: LayoutView };
	"scheduling.updateLayout": { params: ById & Partial<LayoutInput>; result: LayoutView };
	/** 409 while in use, unless force. */
	"scheduling.removeLayout": { params: ById & { force?: boolean }; result: null };

	"scheduling.createSchedule": { params: ScheduleInput; result: ScheduleView };
	"scheduling.listSchedules": { params: PageParams & { displayId?: string; playlistId?: string; layoutId?: string }; result: SchedulePage };
	"scheduling.getSchedule": { params: ById; result: ScheduleView };
	"scheduling.updateSchedule": { params: ById & Partial<ScheduleInput>; result: ScheduleView };
	"scheduling.removeSchedule": { params: ById; result: null };

	"scheduling.createPowerSchedule": { params: PowerScheduleInput; result: PowerScheduleView };
	"scheduling.listPowerSchedules": { params: PageParams & { displayId?: string }; result: PowerSchedulePage };
	"scheduling.getPowerSchedule": { params: ById; result: PowerScheduleView };
	"scheduling.updatePowerSchedule": { params: ById & Partial<PowerScheduleInput>; result: PowerScheduleView };
	"scheduling.removePowerSchedule": { params: ById; result: null };
	/** The screens' power at each display's instant (default now), for those a power schedule reaches (the offline sweep). */
	"scheduling.powerStates": { params: { tenantId: string; displays: Array<{ id: string; at?: string }> }; result: Record<string, ManifestPower> };

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
	/** Many manifest requests at once: the gateway's group call (shared/group-call.ts). */
	"scheduling.deviceManifestGroup": { params: { calls: GroupedCall[] }; result: Array<GroupedAnswer<Manifest | null>> };

	/** Takes a deleted content item out of every playlist; answers how many playlists changed. */
	"scheduling.removeContent": { params: { tenantId: string; contentId: string }; result: number };
	/** Whether a display's current manifest plays this content (device downloads). */
	"scheduling.contentInManifest": { params: { displayId: string; contentId: string }; result: boolean };
	/** Whether the caller's tenant has this playlist (a display's default playlist). */
	"scheduling.playlistExists": { params: { id: string }; result: boolean };
	/** Whether the caller's tenant has this layout (a display's default layout). */
	"scheduling.layoutExists": { params: { id: string }; result: boolean };
	"scheduling.exportTenantData": { params: ExportParams; result: SchedulingExport };
}

export interface SchedulingEvents {
	/** A power schedule of the tenant was created, changed or deleted: sleeping displays are asked about again. */
	"scheduling.power.changed": { tenantId: string };
	/** New manifests for these displays (their new ETags): the gateway pushes them to connected players. */
	"scheduling.manifest.changed": { tenantId: string; displayIds: string[]; etags: Record<string, string> };
}
