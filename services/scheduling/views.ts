/**
 * Scheduling's stored documents and their pure conversions: document → API view (the contract's
 * schemas), document → engine input, and API input → stored fields. No I/O; the current instant
 * is an argument wherever an answer depends on it.
 */
import { DateTime } from "luxon";
import type { Changes, NewDoc, Query, TenantOwned } from "../../mixins/db.mixin";
import type {
	LayoutInput,
	LayoutView,
	LayoutZoneInput,
	LayoutZoneView,
	Manifest,
	OverrideStatus,
	PowerScheduleInput,
	PowerScheduleView,
	PowerState,
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
import { approvalOf, type ApprovalState } from "../../shared/approval";
import { Errors, type FieldError } from "../../shared/errors";
import { compareRules, type Override, type Program, type Resolution, type ScheduleRule, type TimelineSegment } from "./engine";
import { effectiveItems, type ContentInfo, type PlaylistData, type PlaylistItem } from "./manifest";
import { cleanTargets, targetFields, targetKeys } from "./targeting";

// ---- documents --------------------------------------------------------------------------------

export interface PlaylistDoc extends TenantOwned {
	name: string;
	/** What plays. */
	items: PlaylistItem[];
	/** The distinct content ids of the items and the draft (indexed: which playlists hold a content item). */
	contentIds: string[];
	/** The approval workflow's state; absent = approved (before approval, or never required). */
	approval?: ApprovalState;
	/** An editor's items waiting for approval. */
	draft?: { items: PlaylistItem[] } | null;
}

export interface LayoutDoc extends TenantOwned {
	name: string;
	width: number;
	height: number;
	backgroundColor: string | null;
	backgroundContentId: string | null;
	zones: LayoutZoneView[];
	/** The zones' distinct playlist ids (indexed: which layouts a playlist is in). */
	playlistIds: string[];
}

/** What a schedule or override plays: one of the two is set (documents from before layouts have no layoutId). */
interface ProgramFields {
	playlistId: string | null;
	layoutId?: string | null;
}

/** When a rule applies (schedules and power schedules share the rule language). */
export interface RuleDocFields {
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

export interface ScheduleDoc extends TenantOwned, ProgramFields, RuleDocFields {
	name: string;
}

export interface PowerScheduleDoc extends TenantOwned, RuleDocFields {
	name: string;
	state: PowerState;
}

export interface OverrideDoc extends TenantOwned, ProgramFields {
	name: string;
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
	return ruleAs(doc, { playlistId: doc.playlistId, layoutId: doc.layoutId ?? null });
}

/**
 * `convert` remembering its answer per document: the engine compiles each rule object once, so a
 * batch whose displays share stored schedules should hand it one rule object per document.
 */
export function perDoc<D extends object, R>(convert: (doc: D) => R): (doc: D) => R {
	const done = new Map<D, R>();
	return doc => {
		let result = done.get(doc);
		if (result === undefined) {
			result = convert(doc);
			done.set(doc, result);
		}
		return result;
	};
}

/** A stored rule (a schedule, or a power schedule) as the engine takes it, playing `program`. */
export function ruleAs(doc: RuleDocFields & Pick<TenantOwned, "id" | "createdAt"> & { name: string }, program: Program): ScheduleRule {
	return {
		id: doc.id,
		name: doc.name,
		...program,
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
		layoutId: doc.layoutId ?? null,
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

/** Items as a view shows them, with their total; items whose content is gone are left out. */
function itemsView(list: PlaylistItem[], content: Map<string, ContentInfo>): { items: PlaylistView["items"]; totalDurationMs: number } {
	const ownDuration = new Set(list.filter(i => i.durationMs !== null).map(i => i.id));
	const items = effectiveItems({ id: "", name: "", items: list }, content).map(i => ({
		id: i.id,
		contentId: i.contentId,
		durationMs: i.durationMs,
		customDuration: ownDuration.has(i.id),
		name: i.content.name,
		type: i.content.type
	}));
	return { items, totalDurationMs: items.reduce((sum, i) => sum + i.durationMs, 0) };
}

/** `content`: the items' (and the draft's) content by id. */
export function playlistView(doc: PlaylistDoc, content: Map<string, ContentInfo>): PlaylistView {
	return {
		id: doc.id,
		name: doc.name,
		...itemsView(doc.items, content),
		approval: approvalOf(doc),
		draft: doc.draft ? itemsView(doc.draft.items, content) : null,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

export function layoutView(doc: LayoutDoc): LayoutView {
	return {
		id: doc.id,
		name: doc.name,
		width: doc.width,
		height: doc.height,
		backgroundColor: doc.backgroundColor,
		backgroundContentId: doc.backgroundContentId,
		zones: doc.zones,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

export function powerScheduleView(doc: PowerScheduleDoc): PowerScheduleView {
	const { id, name, state, excludeDisplayIds, startDate, endDate, daysOfWeek, startTime, endTime, priority, createdAt, updatedAt } = doc;
	return { id, name, state, targets: cleanTargets(doc.targets), excludeDisplayIds, startDate, endDate, daysOfWeek, startTime, endTime, priority, createdAt, updatedAt };
}

export function scheduleView(doc: ScheduleDoc): ScheduleView {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		layoutId: doc.layoutId ?? null,
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
		layoutId: doc.layoutId ?? null,
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

/** What a tenant export holds of a playlist: its items (and draft) as stored. */
export function exportedPlaylist(doc: PlaylistDoc) {
	return { id: doc.id, name: doc.name, items: doc.items, approval: approvalOf(doc), draft: doc.draft ?? null, createdAt: doc.createdAt, updatedAt: doc.updatedAt };
}

/** One page of the rules (schedules or power schedules, as `ruleOf` makes them) that reach a display, its exclusions left out, best first. */
export function pageReaching<D extends Pick<RuleDocFields, "excludeDisplayIds">, V>(
	docs: D[],
	displayId: string,
	paging: { page: number; pageSize: number },
	rule: (doc: D) => ScheduleRule,
	view: (doc: D) => V
): { rows: V[]; total: number; page: number; pageSize: number; totalPages: number } {
	const { page, pageSize } = paging;
	const ruleFor = perDoc(rule);
	const rows = docs.filter(d => !d.excludeDisplayIds.includes(displayId)).sort((a, b) => compareRules(ruleFor(a), ruleFor(b)));
	return { rows: rows.slice((page - 1) * pageSize, page * pageSize).map(view), total: rows.length, page, pageSize, totalPages: Math.ceil(rows.length / pageSize) };
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
		items: manifest.items,
		layout: manifest.layout,
		power: manifest.power
	};
}

/** An instant in `zone`, with its offset. */
function localIso(iso: string, zone: string): string {
	return DateTime.fromISO(iso, { zone }).toISO({ suppressMilliseconds: true }) ?? iso;
}

/** `truncated`: the segments stop at `to`, before the period asked for ends (ask again from there). */
export function timelineView(zone: string, from: Date, to: Date, segments: TimelineSegment[], truncated = false): TimelineView {
	return {
		timezone: zone,
		from: from.toISOString(),
		to: to.toISOString(),
		truncated,
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

/**
 * A layout write's zones: an item sent with the id of one of the `previous` zones keeps it (once),
 * every other zone gets a fresh one; zIndex defaults to the zone's place in the list.
 */
export function checkedZones(zones: LayoutZoneInput[], previous: LayoutZoneView[], newZoneId: () => string): LayoutZoneView[] {
	const keep = new Set(previous.map(z => z.id));
	const used = new Set<string>();
	return zones.map((zone, index): LayoutZoneView => {
		const id = zone.id && keep.has(zone.id) && !used.has(zone.id) ? zone.id : newZoneId();
		used.add(id);
		return { id, name: zone.name, x: zone.x, y: zone.y, width: zone.width, height: zone.height, zIndex: zone.zIndex ?? index, playlistId: zone.playlistId };
	});
}

/** What a layout stores of its zones: them, and their distinct playlist ids. */
export function zoneFields(zones: LayoutZoneView[]): Pick<LayoutDoc, "zones" | "playlistIds"> {
	return { zones, playlistIds: [...new Set(zones.map(z => z.playlistId))] };
}

/** A new layout's stored fields (`zones`: its checked zones, zoneFields). */
export function newLayoutFields(input: LayoutInput, zones: Partial<Pick<LayoutDoc, "zones" | "playlistIds">>): NewDoc<LayoutDoc> {
	return {
		name: input.name,
		width: input.width,
		height: input.height,
		backgroundColor: input.backgroundColor ?? null,
		backgroundContentId: input.backgroundContentId ?? null,
		zones: zones.zones ?? [],
		playlistIds: zones.playlistIds ?? []
	};
}

/** What a playlist stores of its items (and of its draft, kept as it is when not given): them, and their distinct content ids. */
export function itemFields(items: PlaylistItem[], draft: PlaylistDoc["draft"] = null): Pick<PlaylistDoc, "items" | "contentIds" | "draft"> {
	return { items, draft, contentIds: [...new Set([...items, ...(draft?.items ?? [])].map(i => i.contentId))] };
}

/** ISO weekdays in order; none = every day. */
export function weekdays(days: number[] | null | undefined): number[] | null {
	return days?.length ? [...days].sort((a, b) => a - b) : null;
}

/** `program`: what it plays, checked (programChange). */
export function newScheduleFields(input: ScheduleInput, program: { playlistId: string | null; layoutId: string | null }): NewDoc<ScheduleDoc> {
	return { name: input.name, ...program, ...newRuleFields(input) };
}

export function newPowerScheduleFields(input: PowerScheduleInput): NewDoc<PowerScheduleDoc> {
	return { name: input.name, state: input.state ?? "off", ...newRuleFields(input) };
}

function newRuleFields(input: Omit<ScheduleInput, "name" | "playlistId" | "layoutId">): RuleDocFields {
	return {
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

/** The fields a schedule (or power schedule) PATCH sets, in the order sent: targets with their keys, weekdays sorted, what it plays (`program`, checked) last; absent fields stay. */
export function scheduleChanges(
	changes: Partial<ScheduleInput & PowerScheduleInput>,
	program: { playlistId: string | null; layoutId: string | null } | null = null
): Changes<ScheduleDoc & PowerScheduleDoc> {
	const { playlistId: _playlist, layoutId: _layout, ...rest } = changes;
	const { targets, daysOfWeek } = rest;
	return definedOnly({
		...rest,
		targets: targets && cleanTargets(targets),
		daysOfWeek: daysOfWeek === undefined ? undefined : weekdays(daysOfWeek),
		targetKeys: targets && targetKeys(targets),
		...program
	});
}

/** `fields` without its undefined ones (an undefined change would unset the field). */
function definedOnly<T extends object>(fields: T): T {
	return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as T;
}
