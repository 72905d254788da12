/**
 * Scheduling's stored documents and their pure conversions: document → API view (the contract's
 * schemas), document → engine input, and API input → stored fields. No I/O; the current instant
 * is an argument wherever an answer depends on it.
 */
import { DateTime } from "luxon";
import type { Changes, NewDoc, Query, TenantOwned } from "../../mixins/db.mixin";
import type {
	Manifest,
	OverrideStatus,
	OverrideView,
	PlaylistItemInput,
	PlaylistView,
	PreviewView,
	ScheduleInput,
	ScheduleRef,
	ScheduleView,
	TargetsView,
	TimelineView
} from "../../shared/contracts";
import { Errors, type FieldError } from "../../shared/errors";
import type { Override, Resolution, ScheduleRule, TimelineSegment } from "./engine";
import { effectiveItems, type ContentInfo, type PlaylistData, type PlaylistItem } from "./manifest";
import { cleanTargets, targetFields, targetKeys } from "./targeting";

// ---- documents --------------------------------------------------------------------------------

export interface PlaylistDoc extends TenantOwned {
	name: string;
	items: PlaylistItem[];
	/** The items' distinct content ids (indexed: which playlists hold a content item). */
	contentIds: string[];
}

export interface ScheduleDoc extends TenantOwned {
	name: string;
	playlistId: string;
	targets: TargetsView;
	/** One key per display, group and tag targeted (indexed: which schedules reach a display). */
	targetKeys: string[];
	excludeDisplayIds: string[];
	startDate: string | null;
	endDate: string | null;
	/** ISO weekdays ascending; null = every day. */
	daysOfWeek: number[] | null;
	startTime: string | null;
	endTime: string | null;
	priority: number;
}

export interface OverrideDoc extends TenantOwned {
	name: string;
	playlistId: string;
	/** null = every display. */
	targets: TargetsView | null;
	excludeDisplayIds: string[];
	startsAt: string;
	endsAt: string;
	/** Set when it was ended early. */
	endedAt: string | null;
}

// ---- document → engine ------------------------------------------------------------------------

/** A stored schedule as the engine takes it. */
export function ruleOf(doc: ScheduleDoc): ScheduleRule {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		priority: doc.priority,
		createdAt: doc.createdAt,
		targets: doc.targets,
		excludeDisplayIds: doc.excludeDisplayIds,
		startDate: doc.startDate ?? undefined,
		endDate: doc.endDate ?? undefined,
		daysOfWeek: doc.daysOfWeek ?? undefined,
		startTime: doc.startTime ?? undefined,
		endTime: doc.endTime ?? undefined
	};
}

/** A stored override as the engine takes it. */
export function overrideOf(doc: OverrideDoc): Override {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		targets: doc.targets ?? undefined,
		excludeDisplayIds: doc.excludeDisplayIds,
		startsAt: doc.startsAt,
		endsAt: doc.endsAt
	};
}

export function playlistData(doc: PlaylistDoc): PlaylistData {
	return { id: doc.id, name: doc.name, items: doc.items };
}

// ---- document → view --------------------------------------------------------------------------

/** `content`: the items' content by id; items whose content is gone are left out. */
export function playlistView(doc: PlaylistDoc, content: Map<string, ContentInfo>): PlaylistView {
	const ownDuration = new Set(doc.items.filter(i => i.durationMs !== null).map(i => i.id));
	const items = effectiveItems(playlistData(doc), content).map(i => ({
		id: i.id,
		contentId: i.contentId,
		durationMs: i.durationMs,
		customDuration: ownDuration.has(i.id),
		name: i.content.name,
		type: i.content.type
	}));
	return {
		id: doc.id,
		name: doc.name,
		items,
		totalDurationMs: items.reduce((sum, i) => sum + i.durationMs, 0),
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

export function scheduleView(doc: ScheduleDoc): ScheduleView {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		targets: cleanTargets(doc.targets),
		excludeDisplayIds: doc.excludeDisplayIds,
		startDate: doc.startDate,
		endDate: doc.endDate,
		daysOfWeek: doc.daysOfWeek,
		startTime: doc.startTime,
		endTime: doc.endTime,
		priority: doc.priority,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

/** Ended (early, or past endsAt), scheduled (not started) or active, at `now` (ms). */
export function overrideStatus(doc: Pick<OverrideDoc, "startsAt" | "endsAt" | "endedAt">, now: number): OverrideStatus {
	if (doc.endedAt || Date.parse(doc.endsAt) <= now) return "ended";
	return Date.parse(doc.startsAt) > now ? "scheduled" : "active";
}

/**
 * The stored condition of a status at `now` (ISO), the same rule as overrideStatus. Ending an
 * override early sets endedAt (and, before it started, endsAt = startsAt).
 */
export function overridesWithStatus(status: OverrideStatus, now: string): Query {
	if (status === "ended") return { $or: [{ endsAt: { $lte: now } }, { endedAt: { $ne: null } }] };
	if (status === "active") return { endsAt: { $gt: now }, startsAt: { $lte: now }, endedAt: null };
	return { startsAt: { $gt: now }, endedAt: null };
}

export function overrideView(doc: OverrideDoc, now: number): OverrideView {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		targets: cleanTargets(doc.targets),
		excludeDisplayIds: doc.excludeDisplayIds,
		startsAt: doc.startsAt,
		endsAt: doc.endsAt,
		endedAt: doc.endedAt,
		status: overrideStatus(doc, now),
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

/** What a tenant export holds of a playlist: its items as stored. */
export function exportedPlaylist(doc: PlaylistDoc) {
	return { id: doc.id, name: doc.name, items: doc.items, createdAt: doc.createdAt, updatedAt: doc.updatedAt };
}

/** A schedule or override named in an answer (e.g. what keeps a playlist in use). */
export function refOf(doc: { id: string; name: string }): ScheduleRef {
	return { id: doc.id, name: doc.name };
}

/** What plays at the resolution's instant, why, and until when. */
export function previewView(resolution: Resolution, manifest: Manifest): PreviewView {
	return {
		at: resolution.at,
		localTime: resolution.localTime,
		timezone: resolution.timezone,
		source: resolution.source,
		playlist: manifest.playlist,
		schedule: manifest.schedule,
		override: manifest.override,
		candidates: resolution.candidates,
		validUntil: manifest.validUntil,
		items: manifest.items
	};
}

/** An instant in `zone`, with its offset. */
function localIso(iso: string, zone: string): string {
	return DateTime.fromISO(iso, { zone }).toISO({ suppressMilliseconds: true }) ?? iso;
}

export function timelineView(zone: string, from: Date, to: Date, segments: TimelineSegment[]): TimelineView {
	return {
		timezone: zone,
		from: from.toISOString(),
		to: to.toISOString(),
		segments: segments.map(s => ({ ...s, localStart: localIso(s.start, zone), localEnd: localIso(s.end, zone) }))
	};
}

// ---- input → stored fields --------------------------------------------------------------------

/**
 * A playlist write's items: every content id must be in `content` (a 422 naming each item that
 * is not); an item sent with the id of one of the `previous` items keeps that id (once), every
 * other item gets a fresh one.
 */
export function checkedItems(items: PlaylistItemInput[], content: ReadonlyMap<string, unknown>, previous: PlaylistItem[], newItemId: () => string): PlaylistItem[] {
	const problems: FieldError[] = [];
	items.forEach((item, index) => {
		if (!content.has(item.contentId)) problems.push({ field: `items[${index}].contentId`, message: "is not a content item of this tenant", type: "exists" });
	});
	if (problems.length) throw Errors.validation(problems);
	const keep = new Set(previous.map(i => i.id));
	const used = new Set<string>();
	return items.map((item): PlaylistItem => {
		const id = item.id && keep.has(item.id) && !used.has(item.id) ? item.id : newItemId();
		used.add(id);
		return { id, contentId: item.contentId, durationMs: item.durationMs ?? null };
	});
}

/** What a playlist stores of its items: them, and their distinct content ids. */
export function itemFields(items: PlaylistItem[]): Pick<PlaylistDoc, "items" | "contentIds"> {
	return { items, contentIds: [...new Set(items.map(i => i.contentId))] };
}

/** ISO weekdays in order; none = every day. */
export function weekdays(days: number[] | null | undefined): number[] | null {
	return days?.length ? [...days].sort((a, b) => a - b) : null;
}

export function newScheduleFields(input: ScheduleInput): NewDoc<ScheduleDoc> {
	return {
		name: input.name,
		playlistId: input.playlistId,
		...targetFields(input.targets),
		excludeDisplayIds: input.excludeDisplayIds ?? [],
		startDate: input.startDate ?? null,
		endDate: input.endDate ?? null,
		daysOfWeek: weekdays(input.daysOfWeek),
		startTime: input.startTime ?? null,
		endTime: input.endTime ?? null,
		priority: input.priority ?? 0
	};
}

/** The fields a schedule PATCH sets, in the order sent: targets with their keys, weekdays sorted; absent fields stay. */
export function scheduleChanges(changes: Partial<ScheduleInput>): Changes<ScheduleDoc> {
	const { targets, daysOfWeek } = changes;
	return definedOnly({
		...changes,
		targets: targets && cleanTargets(targets),
		daysOfWeek: daysOfWeek === undefined ? undefined : weekdays(daysOfWeek),
		targetKeys: targets && targetKeys(targets)
	});
}

/** `fields` without its undefined ones (an undefined change would unset the field). */
function definedOnly<T extends object>(fields: T): T {
	return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as T;
}
