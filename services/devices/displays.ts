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
	/** What the screen said of itself when it asked to pair. */
	hardwareId: string | null;
	model: string | null;
	resolution: string | null;
	/** The provisioning key it registered with (null or absent: paired by code). */
	provisioningKeyId?: string | null;
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
	return { id: doc.id, timezone: doc.timezone, tags: doc.tags, groupIds: doc.groupIds, defaultPlaylistId: doc.defaultPlaylistId };
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
 * defaulting to a playlist, or all; null when it names none.
 */
export function selectorQuery(selector: DisplaySelector): Query | null {
	if (selector.all) return {};
	const branches: Query[] = [];
	if (selector.displayIds?.length) branches.push({ _id: { $in: selector.displayIds } });
	if (selector.groupIds?.length) branches.push({ groupIds: { $in: selector.groupIds } });
	if (selector.tags?.length) branches.push({ tags: { $in: selector.tags } });
	if (selector.defaultPlaylistIds?.length) branches.push({ defaultPlaylistId: { $in: selector.defaultPlaylistIds } });
	return branches.length ? { $or: branches } : null;
}

/** The fields a PATCH sets (absent ones stay as they are); tags and groups without repeats. */
export function displayChanges(edit: DisplayEdit): Changes<DisplayDoc> {
	const set: Changes<DisplayDoc> = {};
	if (edit.name !== undefined) set.name = edit.name;
	if (edit.timezone !== undefined) set.timezone = edit.timezone;
	if (edit.tags !== undefined) set.tags = unique(edit.tags);
	if (edit.groupIds !== undefined) set.groupIds = unique(edit.groupIds);
	if (edit.defaultPlaylistId !== undefined) set.defaultPlaylistId = edit.defaultPlaylistId;
	return set;
}

export function unique<T>(values: T[]): T[] {
	return [...new Set(values)];
}
