/**
 * Displays and display groups: their documents, the views the API and scheduling get of them,
 * and the queries that find them.
 */
import { textSearch, type Changes, type Query, type TenantOwned } from "../../mixins/db.mixin";
import type { DisplayEdit, DisplayGroupView, DisplayListParams, DisplaySelector, DisplayStatus, DisplayTargeting, DisplayView, Presence } from "../../shared/contracts";

export interface DisplayDoc extends TenantOwned {
	name: string;
	/** What the documents know; the live status is the presence flag (see presence.ts). */
	status: DisplayStatus;
	timezone: string | null;
	tags: string[];
	groupIds: string[];
	defaultPlaylistId: string | null;
	/** A layout it plays when nothing is scheduled (absent on documents from before layouts). */
	defaultLayoutId?: string | null;
	/** What the screen said of itself when it asked to pair. */
	hardwareId: string | null;
	model: string | null;
	resolution: string | null;
	/** The provisioning key it registered with (null or absent: paired by code). */
	provisioningKeyId?: string | null;
	/** Silent inside a scheduled power-off (the sweep sets it; coming online clears it). */
	scheduledOff?: boolean;
	/** When that power-off ends (null: it never does); past it, still silent, the outage begins. */
	scheduledOffUntil?: string | null;
	/** When the sweep asks again whether the screen is still meant to be off. */
	scheduledOffCheckAt?: string | null;
	/** When it last came online (written off the hot path). */
	lastSeenAt?: string;
}

export interface DisplayGroupDoc extends TenantOwned {
	name: string;
	description: string | null;
}

/** A display as the API shows it: the document with its live presence and status when known. */
export function displayView(doc: DisplayDoc, presence: Presence | null = null, status: DisplayStatus | null = null): DisplayView {
	return {
		id: doc.id,
		name: doc.name,
		status: status ?? doc.status,
		timezone: doc.timezone,
		tags: doc.tags,
		groupIds: doc.groupIds,
		defaultPlaylistId: doc.defaultPlaylistId,
		defaultLayoutId: doc.defaultLayoutId ?? null,
		scheduledOff: (status ?? doc.status) === "offline" && doc.scheduledOff === true,
		lastSeenAt: presence?.lastSeenAt ?? doc.lastSeenAt ?? null,
		metrics: presence?.metrics ?? null,
		appVersion: presence?.appVersion ?? null,
		currentContentId: presence?.currentContentId ?? null,
		model: doc.model,
		resolution: doc.resolution,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

export function groupView(doc: DisplayGroupDoc): DisplayGroupView {
	return { id: doc.id, name: doc.name, description: doc.description, createdAt: doc.createdAt, updatedAt: doc.updatedAt };
}

/** What scheduling needs of a display to resolve what it plays. */
export function targetingView(doc: DisplayDoc): DisplayTargeting {
	return { id: doc.id, timezone: doc.timezone, tags: doc.tags, groupIds: doc.groupIds, defaultPlaylistId: doc.defaultPlaylistId, defaultLayoutId: doc.defaultLayoutId ?? null };
}

/** A sleeping display's power-off is asked about again at least this often (a changed or removed power schedule shows within it). */
export const SLEEP_CHECK_MS = 3600_000;

/** What a display silent in a scheduled power-off stores: asleep until `until` (null: for good), checked again by then. */
export function sleepFields(until: string | null, now: Date): Pick<DisplayDoc, "scheduledOff" | "scheduledOffUntil" | "scheduledOffCheckAt"> {
	const checkAt = Math.min(until ? Date.parse(until) : Number.POSITIVE_INFINITY, now.getTime() + SLEEP_CHECK_MS);
	return { scheduledOff: true, scheduledOffUntil: until, scheduledOffCheckAt: new Date(checkAt).toISOString() };
}

/** GET /displays' filters. */
export function listQuery({ status, tag, groupId, q }: Pick<DisplayListParams, "status" | "tag" | "groupId" | "q">): Query {
	const query: Query = {};
	if (status) query.status = status;
	if (tag) query.tags = tag;
	if (groupId) query.groupIds = groupId;
	if (q) Object.assign(query, textSearch(q, ["name", "tags"]));
	return query;
}

/**
 * The displays a selector names: ids ∪ members of groups ∪ carriers of tags ∪ displays
 * defaulting to a playlist or layout, or all; null when it names none.
 */
export function selectorQuery(selector: DisplaySelector): Query | null {
	if (selector.all) return {};
	const branches: Query[] = [];
	if (selector.displayIds?.length) branches.push({ _id: { $in: selector.displayIds } });
	if (selector.groupIds?.length) branches.push({ groupIds: { $in: selector.groupIds } });
	if (selector.tags?.length) branches.push({ tags: { $in: selector.tags } });
	if (selector.defaultPlaylistIds?.length) branches.push({ defaultPlaylistId: { $in: selector.defaultPlaylistIds } });
	if (selector.defaultLayoutIds?.length) branches.push({ defaultLayoutId: { $in: selector.defaultLayoutIds } });
	return branches.length ? { $or: branches } : null;
}

/**
 * The fields a PATCH sets (absent ones stay as they are); tags and groups without repeats. A
 * display defaults to a playlist or a layout: setting one clears the other (the caller refuses
 * both at once).
 */
export function displayChanges(edit: DisplayEdit): Changes<DisplayDoc> {
	const set: Changes<DisplayDoc> = {};
	if (edit.name !== undefined) set.name = edit.name;
	if (edit.timezone !== undefined) set.timezone = edit.timezone;
	if (edit.tags !== undefined) set.tags = unique(edit.tags);
	if (edit.groupIds !== undefined) set.groupIds = unique(edit.groupIds);
	if (edit.defaultPlaylistId !== undefined) set.defaultPlaylistId = edit.defaultPlaylistId;
	if (edit.defaultLayoutId !== undefined) set.defaultLayoutId = edit.defaultLayoutId;
	if (edit.defaultPlaylistId) set.defaultLayoutId = null;
	if (edit.defaultLayoutId) set.defaultPlaylistId = null;
	return set;
}

export function unique<T>(values: T[]): T[] {
	return [...new Set(values)];
}
