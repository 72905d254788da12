/**
 * Scheduling: playlists, schedules and emergency overrides, and what each display plays.
 *
 * The answer for a display comes from the pure engine (scheduling/engine.ts) fed with only the
 * schedules that can reach it (indexed by target, scheduling/targeting.ts), and becomes a
 * manifest (scheduling/manifest.ts) whose ETag depends only on what plays.
 *
 * Manifests are cached per display in the shared key-value store, stamped with the tenant's
 * manifest generation. Every change that can affect a manifest (a schedule, an override, a
 * playlist, a content item, a display's timezone, groups, tags or default playlist, the tenant's
 * timezone) first moves the generation, so no stale manifest is served after the change is
 * acknowledged, and then recomputes the displays it can affect, in the background, serialised per
 * tenant: those whose ETag changed are announced on `scheduling.manifest.changed`, which the
 * gateway pushes down their live streams, and their heartbeat answers the new ETag.
 */
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DateTime } from "luxon";
import { DbMixin, textSearch, type DbMethods, type PublicDoc, type Query } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { getConfig, type Config } from "../shared/config";
import { Errors, type FieldError } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import type { Principal } from "../shared/rbac";
import { ISO_INSTANT_RULE, NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import type { DisplaySelector, DisplayTargeting } from "./devices.service";
import { compareRules, displayZone, resolve, timeline, type DisplayTarget, type Resolution, type Override, type ScheduleRule, type TargetSet } from "./scheduling/engine";
import { buildManifest, effectiveItems, manifestEtagKey, type ContentInfo, type Manifest, type PlaylistData, type PlaylistItem } from "./scheduling/manifest";
import { displayKeys, ScheduleIndex, targetKeys } from "./scheduling/targeting";
import type { TenantDeleted, TenantView } from "./tenants.service";

type Collections = "playlists" | "schedules" | "overrides";
type Meta = RequestMeta;

const MAX_ITEMS = 200;
const MAX_TARGET_IDS = 1000;
const MAX_TAGS = 100;
const CONTENT_BATCH = 1000;
const DISPLAY_PAGE = 1000;
const YIELD_EVERY = 50;
const MAX_TIMELINE_DAYS = 31;
const MAX_OVERRIDE_DAYS = 366;
const DAY_MS = 24 * 3600_000;
/** A display whose inputs changed without an event reaching us is right again within this. */
const MANIFEST_CACHE_MAX_MS = 3600_000;
const GENERATION_TTL_MS = 30 * DAY_MS;

const key = {
	manifest: (displayId: string) => `manifest:${displayId}`,
	generation: (tenantId: string) => `manifest-generation:${tenantId}`
};

const DATE_RULE = { type: "string", pattern: /^\d{4}-\d{2}-\d{2}$/, messages: { stringPattern: "must be a date such as 2026-11-22" }, optional: true, nullable: true } as const;
const TIME_RULE = { type: "string", pattern: /^([01]\d|2[0-3]):[0-5]\d$/, messages: { stringPattern: "must be a local time HH:mm such as 09:30" }, optional: true, nullable: true } as const;
const ID_LIST = (max: number) => ({ type: "array", items: ID_RULE, max, unique: true, optional: true }) as const;
const TARGETS_RULE = {
	type: "object",
	strict: "remove",
	props: {
		displayIds: ID_LIST(MAX_TARGET_IDS),
		groupIds: ID_LIST(MAX_TARGET_IDS),
		tags: { type: "array", items: { type: "string", trim: true, min: 1, max: 64 }, max: MAX_TAGS, unique: true, optional: true }
	}
} as const;
const ITEMS_RULE = {
	type: "array",
	max: MAX_ITEMS,
	optional: true,
	items: {
		type: "object",
		strict: "remove",
		props: {
			id: { ...ID_RULE, optional: true },
			contentId: ID_RULE,
			durationMs: { type: "number", integer: true, min: 1000, max: 24 * 3600_000, optional: true, nullable: true }
		}
	}
} as const;
const SCHEDULE_FIELDS = {
	name: NAME_RULE,
	playlistId: ID_RULE,
	targets: TARGETS_RULE,
	excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
	startDate: DATE_RULE,
	endDate: DATE_RULE,
	daysOfWeek: { type: "array", items: { type: "number", integer: true, min: 1, max: 7 }, unique: true, max: 7, optional: true, nullable: true },
	startTime: TIME_RULE,
	endTime: TIME_RULE,
	priority: { type: "number", integer: true, min: 0, max: 1000, optional: true }
} as const;

interface ItemInput {
	id?: string;
	contentId: string;
	durationMs?: number | null;
}

interface ScheduleInput {
	name: string;
	playlistId: string;
	targets: TargetSet;
	excludeDisplayIds?: string[];
	startDate?: string | null;
	endDate?: string | null;
	daysOfWeek?: number[] | null;
	startTime?: string | null;
	endTime?: string | null;
	priority?: number;
}

interface OverrideInput {
	name: string;
	playlistId: string;
	targets?: TargetSet | null;
	excludeDisplayIds?: string[];
	startsAt?: string;
	endsAt: string;
}

interface CachedManifest {
	tenantId: string;
	generation: string;
	manifest: Manifest;
}

/** What resolving one display needs: the display and the schedules and overrides that can reach it from `at` on. */
interface DisplayInputs {
	display: DisplayTarget;
	schedules: PublicDoc[];
	overrides: PublicDoc[];
}

type Selector = Omit<DisplaySelector, "defaultPlaylistIds"> & { defaultPlaylistIds?: string[] };

type SchedulingThis = DbMethods<Collections> & {
	config: Config;
	kv: KeyValueStore;
	broker: Context["broker"];
	logger: { info(...args: unknown[]): void; warn(...args: unknown[]): void; error(...args: unknown[]): void };
	recomputing: Map<string, Promise<void>>;
	tenantOf(ctx: Context<unknown, Meta>): string;
	checkItems(tenantId: string, items: ItemInput[], previous?: PlaylistItem[]): Promise<{ items: PlaylistItem[]; content: Map<string, ContentInfo> }>;
	checkTargets(ctx: Context<unknown, Meta>, fields: { targets?: TargetSet | null; excludeDisplayIds?: string[] }, whenEmpty?: string): Promise<void>;
	checkPlaylist(ctx: Context<unknown, Meta>, playlistId: string): Promise<PublicDoc>;
	contentOf(tenantId: string, ids: string[]): Promise<Map<string, ContentInfo>>;
	playlistViews(tenantId: string, docs: PublicDoc[], known?: Map<string, ContentInfo>): Promise<Record<string, unknown>[]>;
	tenantZone(tenantId: string): Promise<string>;
	displayInputs(ctx: Context<unknown, Meta>, displayId: string, at: Date): Promise<DisplayInputs>;
	schedulesTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<PublicDoc[]>;
	overridesAfter(tenantId: string, at: Date): Promise<PublicDoc[]>;
	manifestsFor(tenantId: string, displays: DisplayTarget[], schedulesOf: (d: DisplayTarget) => PublicDoc[], overrides: PublicDoc[], at: Date, options?: { candidates?: boolean }): Promise<Array<{ manifest: Manifest; resolution: Resolution }>>;
	currentManifest(ctx: Context<unknown, Meta>, displayId: string): Promise<Manifest>;
	storeManifest(tenantId: string, generation: string, manifest: Manifest): Promise<string | null>;
	generation(tenantId: string): Promise<string>;
	invalidate(tenantId: string, selector: Selector): Promise<void>;
	recompute(tenantId: string, selector: Selector): Promise<void>;
	selectorForPlaylists(tenantId: string, playlistIds: string[]): Promise<Selector>;
	idle(): Promise<void>;
};

// ---- views and conversions ----------------------------------------------------------------------

function cleanTargets(targets: TargetSet | null | undefined): TargetSet | null {
	if (!targets) return null;
	return { displayIds: targets.displayIds ?? [], groupIds: targets.groupIds ?? [], tags: targets.tags ?? [] };
}

function hasTargets(targets: TargetSet | null | undefined): boolean {
	return targetKeys(targets ?? undefined).length > 0;
}

/** The displays a schedule's or override's targets reach; none (an override) = every display. */
function selectorOf(targets: TargetSet | null | undefined): Selector {
	return cleanTargets(targets) ?? { all: true };
}

/** What a schedule stores of its targets: the lists, and their keys for the target index. */
function targetFields(targets: TargetSet) {
	return { targets: cleanTargets(targets), targetKeys: targetKeys(targets) };
}

/** ISO weekdays in order; none = every day. */
function weekdays(days: number[] | null | undefined): number[] | null {
	return days?.length ? [...days].sort((a, b) => a - b) : null;
}

/** The displays that playlists reach: through the schedules and overrides using them, and as defaults. */
function playlistUsersSelector(playlistIds: string[], schedules: PublicDoc[], overrides: PublicDoc[]): Selector {
	return mergeSelectors(
		{ defaultPlaylistIds: playlistIds },
		...schedules.map(s => selectorOf(s.targets as TargetSet)),
		...overrides.map(o => selectorOf(o.targets as TargetSet | null))
	);
}

function mergeSelectors(...selectors: Selector[]): Selector {
	if (selectors.some(s => s.all)) return { all: true };
	const union = (pick: (s: Selector) => string[] | undefined) => [...new Set(selectors.flatMap(s => pick(s) ?? []))];
	return {
		displayIds: union(s => s.displayIds),
		groupIds: union(s => s.groupIds),
		tags: union(s => s.tags),
		defaultPlaylistIds: union(s => s.defaultPlaylistIds)
	};
}

/** A stored schedule as the engine takes it. */
export function ruleOf(doc: PublicDoc): ScheduleRule {
	return {
		id: doc.id,
		name: String(doc.name),
		playlistId: String(doc.playlistId),
		priority: Number(doc.priority ?? 0),
		createdAt: String(doc.createdAt),
		targets: (doc.targets as TargetSet) ?? {},
		excludeDisplayIds: (doc.excludeDisplayIds as string[]) ?? [],
		startDate: (doc.startDate as string | null) ?? undefined,
		endDate: (doc.endDate as string | null) ?? undefined,
		daysOfWeek: (doc.daysOfWeek as number[] | null) ?? undefined,
		startTime: (doc.startTime as string | null) ?? undefined,
		endTime: (doc.endTime as string | null) ?? undefined
	};
}

function overrideOf(doc: PublicDoc): Override {
	return {
		id: doc.id,
		name: String(doc.name),
		playlistId: String(doc.playlistId),
		targets: (doc.targets as TargetSet | null) ?? undefined,
		excludeDisplayIds: (doc.excludeDisplayIds as string[]) ?? [],
		startsAt: String(doc.startsAt),
		endsAt: String(doc.endsAt)
	};
}

function playlistData(doc: PublicDoc): PlaylistData {
	return { id: doc.id, name: String(doc.name), items: (doc.items as PlaylistItem[]) ?? [] };
}

function scheduleView(doc: PublicDoc) {
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		targets: cleanTargets(doc.targets as TargetSet),
		excludeDisplayIds: doc.excludeDisplayIds ?? [],
		startDate: doc.startDate ?? null,
		endDate: doc.endDate ?? null,
		daysOfWeek: doc.daysOfWeek ?? null,
		startTime: doc.startTime ?? null,
		endTime: doc.endTime ?? null,
		priority: doc.priority ?? 0,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

function overrideView(doc: PublicDoc, now = Date.now()) {
	const ended = Boolean(doc.endedAt) || Date.parse(String(doc.endsAt)) <= now;
	const status = ended ? "ended" : Date.parse(String(doc.startsAt)) > now ? "scheduled" : "active";
	return {
		id: doc.id,
		name: doc.name,
		playlistId: doc.playlistId,
		targets: cleanTargets(doc.targets as TargetSet | null),
		excludeDisplayIds: doc.excludeDisplayIds ?? [],
		startsAt: doc.startsAt,
		endsAt: doc.endsAt,
		endedAt: doc.endedAt ?? null,
		status,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

function named(doc: PublicDoc | undefined | null): { id: string; name: string } | null {
	return doc ? { id: doc.id, name: String(doc.name) } : null;
}

/** A real calendar date (the pattern alone lets 2026-02-30 through). */
function isCalendarDate(value: string): boolean {
	const d = new Date(`${value}T00:00:00Z`);
	return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === value;
}

function instantParam(value: string | undefined, field: string, fallback: Date): Date {
	if (value === undefined) return fallback;
	const at = new Date(value);
	if (Number.isNaN(at.getTime())) throw Errors.validation([{ field, message: "is not a real date and time", type: "date" }]);
	return at;
}

function localIso(iso: string, zone: string): string {
	return DateTime.fromISO(iso, { zone }).toISO({ suppressMilliseconds: true }) ?? iso;
}

/** RFC 9110 If-None-Match: `*`, or a list of (possibly weak) entity tags. */
function etagMatches(header: string | undefined, etag: string): boolean {
	if (!header) return false;
	return header.split(",").some(raw => {
		const tag = raw.trim();
		return tag === "*" || tag.replace(/^W\//, "") === etag;
	});
}

function chunks<T>(list: T[], size: number): T[][] {
	const out: T[][] = [];
	for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
	return out;
}

const SchedulingService: ServiceSchema<ServiceSettingSchema, SchedulingThis> = {
	name: "scheduling",
	settings: { rest: "/" },
	mixins: [
		DbMixin({
			playlists: { indexes: ["name"], selectiveIndexes: ["contentIds"] },
			schedules: { selectiveIndexes: ["targetKeys", "playlistId"] },
			overrides: { indexes: ["endsAt"], selectiveIndexes: ["playlistId"] }
		})
	],

	actions: {
		// ---- playlists -------------------------------------------------------------------------

		createPlaylist: {
			rest: "POST /playlists",
			permission: "playlists.write",
			summary: "Create a playlist; items play in order, each for its own duration or its content's",
			successStatus: 201,
			params: { $$strict: "remove", name: NAME_RULE, items: ITEMS_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ name: string; items?: ItemInput[] }, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const { items, content } = await this.checkItems(tenantId, ctx.params.items ?? []);
				const doc = await this.db.playlists.insertDoc(ctx, { name: ctx.params.name, items, contentIds: [...new Set(items.map(i => i.contentId))] });
				await audit(ctx, { action: "playlist.created", target: doc.id, data: { items: items.length } });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/playlists/${doc.id}`;
				const [view] = await this.playlistViews(tenantId, [doc], content);
				return view;
			}
		},

		listPlaylists: {
			rest: "GET /playlists",
			permission: "tenant.read",
			summary: "Playlists, filtered by free text or by a content item they hold",
			params: { $$strict: "remove", ...PAGE_PARAMS, q: { type: "string", max: 100, optional: true }, contentId: { ...ID_RULE, optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ page: number; pageSize: number; q?: string; contentId?: string }, Meta>) {
				const query: Query = {};
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name"]));
				if (ctx.params.contentId) query.contentIds = ctx.params.contentId;
				const page = await this.db.playlists.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: await this.playlistViews(this.tenantOf(ctx), page.rows) };
			}
		},

		getPlaylist: {
			rest: "GET /playlists/:id",
			permission: "tenant.read",
			summary: "One playlist with its items and total duration",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				const [view] = await this.playlistViews(this.tenantOf(ctx), [await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist")]);
				return view;
			}
		},

		updatePlaylist: {
			rest: "PATCH /playlists/:id",
			permission: "playlists.write",
			summary: "Rename a playlist or replace its items (an item sent with its id keeps it)",
			params: { $$strict: "remove", id: ID_RULE, name: { ...NAME_RULE, optional: true }, items: ITEMS_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string; name?: string; items?: ItemInput[] }, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const current = await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist");
				const set: Record<string, unknown> = {};
				let content: Map<string, ContentInfo> | undefined;
				if (ctx.params.name !== undefined) set.name = ctx.params.name;
				if (ctx.params.items !== undefined) {
					const checked = await this.checkItems(tenantId, ctx.params.items, playlistData(current).items);
					({ content } = checked);
					set.items = checked.items;
					set.contentIds = [...new Set(checked.items.map(i => i.contentId))];
				}
				const doc = await this.db.playlists.updateDoc(ctx, current.id, set, "Playlist");
				await audit(ctx, { action: "playlist.updated", target: doc.id, data: { fields: Object.keys(set).filter(f => f !== "contentIds") } });
				if (Object.keys(set).length) await this.invalidate(tenantId, await this.selectorForPlaylists(tenantId, [doc.id]));
				const [view] = await this.playlistViews(tenantId, [doc], content);
				return view;
			}
		},

		removePlaylist: {
			rest: "DELETE /playlists/:id",
			permission: "playlists.write",
			summary: "Delete a playlist; 409 while a schedule, override or display uses it, unless ?force=true (which removes those schedules and overrides and clears those displays' default)",
			params: { $$strict: "remove", id: ID_RULE, force: { type: "boolean", convert: true, optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ id: string; force?: boolean }, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const playlist = await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist");
				const now = new Date().toISOString();
				const [schedules, overrides, displays] = await Promise.all([
					this.db.schedules.findDocs(ctx, { playlistId: playlist.id }),
					this.db.overrides.findDocs(ctx, { playlistId: playlist.id, endsAt: { $gt: now } }),
					ctx.call("devices.displaysFor", { tenantId, defaultPlaylistIds: [playlist.id], limit: 100 }) as Promise<{ rows: DisplayTargeting[] }>
				]);
				const inUse = schedules.length + overrides.length + displays.rows.length > 0;
				if (inUse && !ctx.params.force) {
					throw Errors.conflict("The playlist is in use; delete with ?force=true to remove it everywhere", {
						schedules: schedules.slice(0, 20).map(named),
						overrides: overrides.slice(0, 20).map(named),
						displayIds: displays.rows.slice(0, 20).map(d => d.id)
					});
				}
				const selector = playlistUsersSelector([playlist.id], schedules, overrides);
				await this.db.playlists.removeDoc(ctx, playlist.id, "Playlist");
				if (schedules.length) await this.db.schedules.removeDocs(ctx, { playlistId: playlist.id });
				if (overrides.length) await this.db.overrides.removeDocs(ctx, { playlistId: playlist.id });
				if (displays.rows.length) await ctx.call("devices.clearDefaultPlaylist", { tenantId, playlistId: playlist.id });
				await audit(ctx, { action: "playlist.deleted", target: playlist.id, data: { forced: inUse, schedules: schedules.length, overrides: overrides.length } });
				await this.invalidate(tenantId, selector);
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- schedules -------------------------------------------------------------------------

		createSchedule: {
			rest: "POST /schedules",
			permission: "schedules.write",
			summary: "Put a playlist on displays, groups or tags for dates, days of the week and a daily window",
			successStatus: 201,
			params: { $$strict: "remove", ...SCHEDULE_FIELDS },
			async handler(this: SchedulingThis, ctx: Context<ScheduleInput, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const fields = { ...ctx.params, priority: ctx.params.priority ?? 0 };
				checkDateRange(fields.startDate, fields.endDate);
				await this.checkPlaylist(ctx, fields.playlistId);
				await this.checkTargets(ctx, fields);
				const doc = await this.db.schedules.insertDoc(ctx, {
					name: fields.name,
					playlistId: fields.playlistId,
					...targetFields(fields.targets),
					excludeDisplayIds: fields.excludeDisplayIds ?? [],
					startDate: fields.startDate ?? null,
					endDate: fields.endDate ?? null,
					daysOfWeek: weekdays(fields.daysOfWeek),
					startTime: fields.startTime ?? null,
					endTime: fields.endTime ?? null,
					priority: fields.priority
				});
				await audit(ctx, { action: "schedule.created", target: doc.id, data: { playlistId: fields.playlistId, priority: fields.priority } });
				await this.invalidate(tenantId, selectorOf(fields.targets));
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/schedules/${doc.id}`;
				return scheduleView(doc);
			}
		},

		listSchedules: {
			rest: "GET /schedules",
			permission: "tenant.read",
			summary: "Schedules, highest priority first; ?displayId lists those that target a display, ?playlistId those that play a playlist",
			params: { $$strict: "remove", ...PAGE_PARAMS, displayId: { ...ID_RULE, optional: true }, playlistId: { ...ID_RULE, optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ page: number; pageSize: number; displayId?: string; playlistId?: string }, Meta>) {
				const { page, pageSize, displayId, playlistId } = ctx.params;
				const sort = ["-priority", "-createdAt", "_id"];
				if (!displayId) {
					const result = await this.db.schedules.pageDocs(ctx, playlistId ? { playlistId } : {}, page, pageSize, sort);
					return { ...result, rows: result.rows.map(scheduleView) };
				}
				// Exclusions cannot be filtered alike on NeDB and MongoDB: filter the (bounded) matches here.
				const display = await (ctx.call("devices.targeting", { id: displayId }) as Promise<DisplayTargeting>).catch(err => {
					if ((err as { type?: string }).type === "NOT_FOUND") return null;
					throw err;
				});
				const docs = display ? await this.schedulesTargeting(this.tenantOf(ctx), display) : [];
				const rows = docs
					.filter(d => !((d.excludeDisplayIds as string[]) ?? []).includes(displayId) && (!playlistId || d.playlistId === playlistId))
					.sort((a, b) => compareRules(ruleOf(a), ruleOf(b)));
				const slice = rows.slice((page - 1) * pageSize, page * pageSize).map(scheduleView);
				return { rows: slice, total: rows.length, page, pageSize, totalPages: Math.ceil(rows.length / pageSize) };
			}
		},

		getSchedule: {
			rest: "GET /schedules/:id",
			permission: "tenant.read",
			summary: "One schedule",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				return scheduleView(await this.db.schedules.getDoc(ctx, ctx.params.id, "Schedule"));
			}
		},

		updateSchedule: {
			rest: "PATCH /schedules/:id",
			permission: "schedules.write",
			summary: "Change a schedule (targets replace the previous ones; null clears a date, day or time rule)",
			params: {
				$$strict: "remove",
				id: ID_RULE,
				...Object.fromEntries(Object.entries(SCHEDULE_FIELDS).map(([k, rule]) => [k, { ...rule, optional: true }]))
			},
			async handler(this: SchedulingThis, ctx: Context<Partial<ScheduleInput> & { id: string }, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const current = await this.db.schedules.getDoc(ctx, ctx.params.id, "Schedule");
				const { id, ...changes } = ctx.params;
				const set: Record<string, unknown> = {};
				for (const [field, value] of Object.entries(changes)) if (value !== undefined) set[field] = value;
				if (set.playlistId) await this.checkPlaylist(ctx, String(set.playlistId));
				if (set.targets !== undefined || set.excludeDisplayIds !== undefined) {
					await this.checkTargets(ctx, { targets: set.targets as TargetSet | undefined, excludeDisplayIds: set.excludeDisplayIds as string[] | undefined });
				}
				if (set.targets !== undefined) Object.assign(set, targetFields(set.targets as TargetSet));
				if (set.daysOfWeek !== undefined) set.daysOfWeek = weekdays(set.daysOfWeek as number[] | null);
				const merged = { ...current, ...set } as Record<string, unknown>;
				checkDateRange(merged.startDate as string | null, merged.endDate as string | null);
				const doc = await this.db.schedules.updateDoc(ctx, id, set, "Schedule");
				await audit(ctx, { action: "schedule.updated", target: id, data: { fields: Object.keys(set).filter(f => f !== "targetKeys") } });
				await this.invalidate(tenantId, mergeSelectors(selectorOf(current.targets as TargetSet), selectorOf(doc.targets as TargetSet)));
				return scheduleView(doc);
			}
		},

		removeSchedule: {
			rest: "DELETE /schedules/:id",
			permission: "schedules.write",
			summary: "Delete a schedule",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				const doc = await this.db.schedules.removeDoc(ctx, ctx.params.id, "Schedule");
				await audit(ctx, { action: "schedule.deleted", target: doc.id, data: { name: doc.name } });
				await this.invalidate(this.tenantOf(ctx), selectorOf(doc.targets as TargetSet));
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- emergency overrides ---------------------------------------------------------------

		createOverride: {
			rest: "POST /overrides",
			permission: "schedules.write",
			summary: "Emergency takeover: a playlist on the targeted displays (no targets = every display) until endsAt, above every schedule",
			successStatus: 201,
			params: {
				$$strict: "remove",
				name: NAME_RULE,
				playlistId: ID_RULE,
				targets: { ...TARGETS_RULE, optional: true, nullable: true },
				excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
				startsAt: { ...ISO_INSTANT_RULE, optional: true },
				endsAt: ISO_INSTANT_RULE
			},
			async handler(this: SchedulingThis, ctx: Context<OverrideInput, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const now = Date.now();
				const startsAt = instantParam(ctx.params.startsAt, "startsAt", new Date(now));
				const endsAt = instantParam(ctx.params.endsAt, "endsAt", new Date(now));
				checkOverrideWindow(startsAt, endsAt, now);
				await this.checkTargets(ctx, ctx.params, "names no display, group or tag; leave it out to cover every display");
				await this.checkPlaylist(ctx, ctx.params.playlistId);
				const targets = cleanTargets(ctx.params.targets);
				const doc = await this.db.overrides.insertDoc(ctx, {
					name: ctx.params.name,
					playlistId: ctx.params.playlistId,
					targets,
					excludeDisplayIds: ctx.params.excludeDisplayIds ?? [],
					startsAt: startsAt.toISOString(),
					endsAt: endsAt.toISOString(),
					endedAt: null
				});
				await audit(ctx, { action: "override.created", target: doc.id, data: { playlistId: ctx.params.playlistId, endsAt: doc.endsAt, everyDisplay: !targets } });
				await this.invalidate(tenantId, selectorOf(targets));
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/overrides/${doc.id}`;
				return overrideView(doc);
			}
		},

		listOverrides: {
			rest: "GET /overrides",
			permission: "tenant.read",
			summary: "Overrides, newest first; ?status=active|scheduled|ended",
			params: { $$strict: "remove", ...PAGE_PARAMS, status: { type: "enum", values: ["active", "scheduled", "ended"], optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ page: number; pageSize: number; status?: string }, Meta>) {
				const now = new Date().toISOString();
				const query: Query = {};
				// Ending an override early sets endedAt (and, before it started, endsAt = startsAt).
				if (ctx.params.status === "ended") query.$or = [{ endsAt: { $lte: now } }, { endedAt: { $ne: null } }];
				if (ctx.params.status === "active") Object.assign(query, { endsAt: { $gt: now }, startsAt: { $lte: now }, endedAt: null });
				if (ctx.params.status === "scheduled") Object.assign(query, { startsAt: { $gt: now }, endedAt: null });
				const page = await this.db.overrides.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(d => overrideView(d)) };
			}
		},

		getOverride: {
			rest: "GET /overrides/:id",
			permission: "tenant.read",
			summary: "One override",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				return overrideView(await this.db.overrides.getDoc(ctx, ctx.params.id, "Override"));
			}
		},

		updateOverride: {
			rest: "PATCH /overrides/:id",
			permission: "schedules.write",
			summary: "Rename, retarget, switch the playlist or move the end of an override that has not ended",
			params: {
				$$strict: "remove",
				id: ID_RULE,
				name: { ...NAME_RULE, optional: true },
				playlistId: { ...ID_RULE, optional: true },
				targets: { ...TARGETS_RULE, optional: true, nullable: true },
				excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
				endsAt: { ...ISO_INSTANT_RULE, optional: true }
			},
			async handler(this: SchedulingThis, ctx: Context<Partial<OverrideInput> & { id: string }, Meta>) {
				const tenantId = this.tenantOf(ctx);
				const current = await this.db.overrides.getDoc(ctx, ctx.params.id, "Override");
				const now = Date.now();
				if (overrideView(current, now).status === "ended") throw Errors.conflict("The override has ended; create a new one");
				const { id, ...changes } = ctx.params;
				const set: Record<string, unknown> = {};
				if (changes.name !== undefined) set.name = changes.name;
				if (changes.playlistId !== undefined) {
					await this.checkPlaylist(ctx, changes.playlistId);
					set.playlistId = changes.playlistId;
				}
				if (changes.targets !== undefined || changes.excludeDisplayIds !== undefined) {
					await this.checkTargets(ctx, changes, "names no display, group or tag; set it to null to cover every display");
				}
				if (changes.targets !== undefined) set.targets = cleanTargets(changes.targets);
				if (changes.excludeDisplayIds !== undefined) set.excludeDisplayIds = changes.excludeDisplayIds;
				if (changes.endsAt !== undefined) {
					const endsAt = instantParam(changes.endsAt, "endsAt", new Date(now));
					checkOverrideWindow(new Date(String(current.startsAt)), endsAt, now);
					set.endsAt = endsAt.toISOString();
				}
				const doc = await this.db.overrides.updateDoc(ctx, id, set, "Override");
				await audit(ctx, { action: "override.updated", target: id, data: { fields: Object.keys(set) } });
				await this.invalidate(tenantId, mergeSelectors(selectorOf(current.targets as TargetSet | null), selectorOf(doc.targets as TargetSet | null)));
				return overrideView(doc);
			}
		},

		endOverride: {
			rest: "DELETE /overrides/:id",
			permission: "schedules.write",
			summary: "End an override now (it stays listed as ended; ending an ended override changes nothing)",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				const current = await this.db.overrides.getDoc(ctx, ctx.params.id, "Override");
				ctx.meta.$statusCode = 204;
				if (overrideView(current).status === "ended") return null;
				const now = new Date().toISOString();
				// An override that had not started yet simply never runs: it ends where it would have begun.
				const endsAt = String(current.startsAt) > now ? String(current.startsAt) : now;
				await this.db.overrides.updateDoc(ctx, current.id, { endsAt, endedAt: now }, "Override");
				await audit(ctx, { action: "override.ended", target: current.id });
				await this.invalidate(this.tenantOf(ctx), selectorOf(current.targets as TargetSet | null));
				return null;
			}
		},

		// ---- what plays ------------------------------------------------------------------------

		preview: {
			rest: "GET /displays/:id/preview",
			permission: "tenant.read",
			summary: "What a display plays at an instant (default now), why, and until when",
			params: { $$strict: "remove", id: ID_RULE, at: { ...ISO_INSTANT_RULE, optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ id: string; at?: string }, Meta>) {
				const at = instantParam(ctx.params.at, "at", new Date());
				const { display, schedules, overrides } = await this.displayInputs(ctx, ctx.params.id, at);
				const [{ manifest, resolution }] = await this.manifestsFor(this.tenantOf(ctx), [display], () => schedules, overrides, at, { candidates: true });
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
		},

		timeline: {
			rest: "GET /displays/:id/timeline",
			permission: "tenant.read",
			summary: "What a display plays over a period (default the next 24 hours, at most 31 days), as segments",
			params: { $$strict: "remove", id: ID_RULE, from: { ...ISO_INSTANT_RULE, optional: true }, to: { ...ISO_INSTANT_RULE, optional: true } },
			async handler(this: SchedulingThis, ctx: Context<{ id: string; from?: string; to?: string }, Meta>) {
				const from = instantParam(ctx.params.from, "from", new Date());
				const to = instantParam(ctx.params.to, "to", new Date(from.getTime() + DAY_MS));
				if (to <= from) throw Errors.validation([{ field: "to", message: "must be after from", type: "range" }]);
				if (to.getTime() - from.getTime() > MAX_TIMELINE_DAYS * DAY_MS) {
					throw Errors.validation([{ field: "to", message: `must be at most ${MAX_TIMELINE_DAYS} days after from`, type: "range" }]);
				}
				const { display, schedules, overrides } = await this.displayInputs(ctx, ctx.params.id, from);
				const segments = timeline(display, schedules.map(ruleOf), overrides.map(overrideOf), from, to);
				const zone = displayZone(display);
				return {
					timezone: zone,
					from: from.toISOString(),
					to: to.toISOString(),
					segments: segments.map(s => ({ ...s, localStart: localIso(s.start, zone), localEnd: localIso(s.end, zone) }))
				};
			}
		},

		deviceManifest: {
			rest: "GET /device/manifest",
			permission: "device",
			summary: "What this display plays now and until when; If-None-Match with its ETag answers 304",
			async handler(this: SchedulingThis, ctx: Context<unknown, Meta>) {
				const auth = ctx.meta.auth as Principal;
				const manifest = await this.currentManifest(ctx, String(auth.displayId));
				ctx.meta.$responseHeaders = { ETag: manifest.etag, "Cache-Control": "no-cache" };
				if (etagMatches(ctx.meta.headers?.["if-none-match"], manifest.etag)) {
					ctx.meta.$statusCode = 304;
					return null;
				}
				return manifest;
			}
		},

		// ---- for other services ------------------------------------------------------------------

		/** Whether a content item is in the display's current manifest (device downloads). */
		contentInManifest: {
			visibility: "public",
			params: { displayId: "string", contentId: "string" },
			async handler(this: SchedulingThis, ctx: Context<{ displayId: string; contentId: string }, Meta>) {
				const manifest = await this.currentManifest(ctx, ctx.params.displayId);
				return manifest.items.some(i => i.contentId === ctx.params.contentId);
			}
		},

		/** Whether the caller's tenant has this playlist (a display's default playlist). */
		playlistExists: {
			visibility: "public",
			params: { id: "string" },
			async handler(this: SchedulingThis, ctx: Context<{ id: string }, Meta>) {
				return (await this.db.playlists.findDoc(ctx, { _id: ctx.params.id })) !== null;
			}
		},

		/** Deleted content leaves every playlist and manifest before media answers the delete. */
		removeContent: {
			visibility: "public",
			params: { tenantId: "string", contentId: "string" },
			async handler(this: SchedulingThis, ctx: Context<{ tenantId: string; contentId: string }>) {
				const { tenantId, contentId } = ctx.params;
				const playlists = await this.db.playlists.findDocs({ tenantId }, { contentIds: contentId });
				for (const doc of playlists) {
					const items = playlistData(doc).items.filter(i => i.contentId !== contentId);
					await this.db.playlists.updateDoc({ tenantId }, doc.id, { items, contentIds: [...new Set(items.map(i => i.contentId))] });
				}
				if (playlists.length) await this.invalidate(tenantId, await this.selectorForPlaylists(tenantId, playlists.map(p => p.id)));
				return playlists.length;
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: SchedulingThis, ctx: Context<{ tenantId: string }>) {
				const scope = { tenantId: ctx.params.tenantId };
				const [playlists, schedules, overrides] = await Promise.all([
					this.db.playlists.findDocs(scope),
					this.db.schedules.findDocs(scope),
					this.db.overrides.findDocs(scope)
				]);
				return {
					playlists: playlists.map(p => ({ id: p.id, name: p.name, items: p.items, createdAt: p.createdAt, updatedAt: p.updatedAt })),
					schedules: schedules.map(scheduleView),
					overrides: overrides.map(o => overrideView(o))
				};
			}
		}
	},

	events: {
		async "devices.display.updated"(this: SchedulingThis, ctx: Context<{ tenantId: string; displayIds: string[]; fields: string[] }>) {
			const { tenantId, displayIds, fields } = ctx.params;
			if (fields.some(f => ["timezone", "tags", "groupIds", "defaultPlaylistId"].includes(f))) await this.invalidate(tenantId, { displayIds });
		},

		async "devices.display.deleted"(this: SchedulingThis, ctx: Context<{ tenantId: string; displayId: string }>) {
			await this.kv.del(key.manifest(ctx.params.displayId));
		},

		async "media.content.updated"(this: SchedulingThis, ctx: Context<{ tenantId: string; contentId: string; fields: string[] }>) {
			const { tenantId, contentId, fields } = ctx.params;
			if (!fields.some(f => ["name", "durationMs", "validFrom", "validUntil"].includes(f))) return;
			const playlists = await this.db.playlists.findDocs({ tenantId }, { contentIds: contentId });
			if (playlists.length) await this.invalidate(tenantId, await this.selectorForPlaylists(tenantId, playlists.map(p => p.id)));
		},

		async "tenants.tenant.updated"(this: SchedulingThis, ctx: Context<{ tenantId: string; changed?: string[] }>) {
			// The tenant's timezone is every display's fallback zone; nothing else of the tenant plays.
			if (ctx.params.changed?.includes("settings.timezone")) await this.invalidate(ctx.params.tenantId, { all: true });
		}
	},

	channels: {
		"tenants.tenant.deleted": {
			group: "scheduling",
			async handler(this: SchedulingThis, ctx: Context<unknown>) {
				const { tenantId } = ctx.params as TenantDeleted;
				const [playlists, schedules, overrides] = await Promise.all([
					this.db.playlists.removeTenantDocs(tenantId),
					this.db.schedules.removeTenantDocs(tenantId),
					this.db.overrides.removeTenantDocs(tenantId)
				]);
				await this.kv.del(key.generation(tenantId));
				this.logger.info(`Tenant ${tenantId} deleted: ${playlists} playlists, ${schedules} schedules and ${overrides} overrides removed`);
			}
		}
	},

	methods: {
		tenantOf(ctx: Context<unknown, Meta>): string {
			return this.db.playlists.tenantOf(ctx);
		},

		/** Items of a playlist write: every content id must be the tenant's (422 naming the item otherwise). */
		async checkItems(tenantId: string, items: ItemInput[], previous: PlaylistItem[] = []) {
			const content = await this.contentOf(tenantId, items.map(i => i.contentId));
			const problems: FieldError[] = [];
			items.forEach((item, index) => {
				if (!content.has(item.contentId)) problems.push({ field: `items[${index}].contentId`, message: "is not a content item of this tenant", type: "exists" });
			});
			if (problems.length) throw Errors.validation(problems);
			const keep = new Set(previous.map(i => i.id));
			const used = new Set<string>();
			const checked = items.map((item): PlaylistItem => {
				const id = item.id && keep.has(item.id) && !used.has(item.id) ? item.id : newId();
				used.add(id);
				return { id, contentId: item.contentId, durationMs: item.durationMs ?? null };
			});
			return { items: checked, content };
		},

		/** Targets name something (`whenEmpty` otherwise), and every display and group named is the tenant's. */
		async checkTargets(ctx: Context<unknown, Meta>, fields: { targets?: TargetSet | null; excludeDisplayIds?: string[] }, whenEmpty = "must name at least one display, group or tag") {
			const { targets, excludeDisplayIds } = fields;
			if (targets !== undefined && targets !== null && !hasTargets(targets)) {
				throw Errors.validation([{ field: "targets", message: whenEmpty, type: "targets" }]);
			}
			const displayIds = [...new Set([...(targets?.displayIds ?? []), ...(excludeDisplayIds ?? [])])];
			const groupIds = targets?.groupIds ?? [];
			if (displayIds.length === 0 && groupIds.length === 0) return;
			const unknown = (await ctx.call("devices.unknownTargets", { displayIds, groupIds })) as { displayIds: string[]; groupIds: string[] };
			const problems: FieldError[] = [];
			for (const id of unknown.displayIds) {
				const field = targets?.displayIds?.includes(id) ? "targets.displayIds" : "excludeDisplayIds";
				problems.push({ field, message: `${id} is not a display of this tenant`, type: "exists" });
			}
			for (const id of unknown.groupIds) problems.push({ field: "targets.groupIds", message: `${id} is not a display group of this tenant`, type: "exists" });
			if (problems.length) throw Errors.validation(problems);
		},

		async checkPlaylist(ctx: Context<unknown, Meta>, playlistId: string): Promise<PublicDoc> {
			const doc = await this.db.playlists.findDoc(ctx, { _id: playlistId });
			if (!doc) throw Errors.validation([{ field: "playlistId", message: "is not a playlist of this tenant", type: "exists" }]);
			return doc;
		},

		async contentOf(tenantId: string, ids: string[]): Promise<Map<string, ContentInfo>> {
			const unique = [...new Set(ids)];
			const found = new Map<string, ContentInfo>();
			for (const batch of chunks(unique, CONTENT_BATCH)) {
				const rows = (await this.broker.call("media.byIds", { tenantId, ids: batch })) as ContentInfo[];
				for (const row of rows) found.set(row.id, row);
			}
			return found;
		},

		/** `known`: the items' content when the caller just read it (a playlist write). */
		async playlistViews(tenantId: string, docs: PublicDoc[], known?: Map<string, ContentInfo>) {
			const content = known ?? (await this.contentOf(tenantId, docs.flatMap(d => playlistData(d).items.map(i => i.contentId))));
			return docs.map(doc => {
				const playlist = playlistData(doc);
				const ownDuration = new Set(playlist.items.filter(i => i.durationMs !== null).map(i => i.id));
				const items = effectiveItems(playlist, content).map(i => ({
					id: i.id,
					contentId: i.contentId,
					durationMs: i.durationMs,
					/** false: the content's own duration (follows it when the content changes) */
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
			});
		},

		async tenantZone(tenantId: string): Promise<string> {
			const tenant = (await this.broker.call("tenants.find", { tenantId })) as TenantView | null;
			return tenant?.settings?.timezone ?? "UTC";
		},

		/** The caller's display (404 if not the tenant's) and what can reach it from `at` on. */
		async displayInputs(ctx: Context<unknown, Meta>, displayId: string, at: Date): Promise<DisplayInputs> {
			const tenantId = this.tenantOf(ctx);
			const [targeting, zone] = await Promise.all([
				ctx.call("devices.targeting", { id: displayId }) as Promise<DisplayTargeting>,
				this.tenantZone(tenantId)
			]);
			const display: DisplayTarget = { ...targeting, tenantTimezone: zone };
			const [schedules, overrides] = await Promise.all([this.schedulesTargeting(tenantId, display), this.overridesAfter(tenantId, at)]);
			return { display, schedules, overrides };
		},

		/** The schedules naming the display, one of its groups or one of its tags (an indexed query). */
		async schedulesTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<PublicDoc[]> {
			return this.db.schedules.findDocs({ tenantId }, { targetKeys: { $in: displayKeys(display) } });
		},

		/** Overrides still running or to come after `at` (the ones that can matter from then on). */
		async overridesAfter(tenantId: string, at: Date): Promise<PublicDoc[]> {
			return this.db.overrides.findDocs({ tenantId }, { endsAt: { $gt: at.toISOString() } });
		},

		/** Manifests (and the resolutions behind them) of many displays at once: one playlist query and one content lookup for all. */
		async manifestsFor(tenantId: string, displays: DisplayTarget[], schedulesOf: (d: DisplayTarget) => PublicDoc[], overrideDocs: PublicDoc[], at: Date, options: { candidates?: boolean } = {}) {
			const overrides = overrideDocs.map(overrideOf);
			const overrideNames = new Map(overrideDocs.map(o => [o.id, String(o.name)]));
			const resolved = [];
			for (const [index, display] of displays.entries()) {
				// A page of displays is CPU work: let requests in between, or a bulk recompute stalls the process.
				if (index % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEventLoop();
				const schedules = schedulesOf(display);
				const resolution = resolve(display, schedules.map(ruleOf), overrides, at, { candidates: options.candidates ?? false });
				const scheduleName = resolution.scheduleId ? String(schedules.find(s => s.id === resolution.scheduleId)?.name ?? "") : null;
				resolved.push({ display, resolution, scheduleName });
			}
			const playlistIds = [...new Set(resolved.flatMap(r => (r.resolution.playlistId ? [r.resolution.playlistId] : [])))];
			const playlists = new Map<string, PlaylistData>();
			for (const batch of chunks(playlistIds, CONTENT_BATCH)) {
				for (const doc of await this.db.playlists.findDocs({ tenantId }, { _id: { $in: batch } })) playlists.set(doc.id, playlistData(doc));
			}
			const content = await this.contentOf(tenantId, [...playlists.values()].flatMap(p => p.items.map(i => i.contentId)));
			return resolved.map(({ display, resolution, scheduleName }) => ({
				resolution,
				manifest: buildManifest({
					displayId: display.id,
					resolution,
					playlist: resolution.playlistId ? (playlists.get(resolution.playlistId) ?? null) : null,
					scheduleName,
					overrideName: resolution.overrideId ? (overrideNames.get(resolution.overrideId) ?? null) : null,
					content,
					at
				})
			}));
		},

		/** The display's manifest: from the cache while its generation and validity hold, else fresh. */
		async currentManifest(ctx: Context<unknown, Meta>, displayId: string): Promise<Manifest> {
			const tenantId = this.tenantOf(ctx);
			const generation = await this.generation(tenantId);
			const raw = await this.kv.get(key.manifest(displayId));
			if (raw) {
				const cached = JSON.parse(raw) as CachedManifest;
				const { validUntil } = cached.manifest;
				if (cached.tenantId === tenantId && cached.generation === generation && (!validUntil || Date.parse(validUntil) > Date.now())) return cached.manifest;
			}
			const at = new Date();
			const { display, schedules, overrides } = await this.displayInputs(ctx, displayId, at);
			const [{ manifest }] = await this.manifestsFor(tenantId, [display], () => schedules, overrides, at);
			await this.storeManifest(tenantId, generation, manifest);
			return manifest;
		},

		/** Caches the manifest and publishes its ETag for the heartbeat; answers the previous ETag. */
		async storeManifest(tenantId: string, generation: string, manifest: Manifest): Promise<string | null> {
			const untilEdge = manifest.validUntil ? Date.parse(manifest.validUntil) - Date.now() : Number.POSITIVE_INFINITY;
			const ttl = Math.min(MANIFEST_CACHE_MAX_MS, untilEdge);
			if (ttl <= 0) return this.kv.get(manifestEtagKey(manifest.displayId));
			const cached: CachedManifest = { tenantId, generation, manifest };
			await this.kv.set(key.manifest(manifest.displayId), JSON.stringify(cached), ttl);
			return this.kv.swap(manifestEtagKey(manifest.displayId), manifest.etag, ttl);
		},

		async generation(tenantId: string): Promise<string> {
			const current = await this.kv.get(key.generation(tenantId));
			if (current) return current;
			const fresh = newId();
			if (await this.kv.setIfAbsent(key.generation(tenantId), fresh, GENERATION_TTL_MS)) return fresh;
			return (await this.kv.get(key.generation(tenantId))) ?? fresh;
		},

		/**
		 * A change that can affect the selected displays was stored: no cached manifest of the
		 * tenant is served any more (new generation), and the selected displays are recomputed in
		 * the background, one change after another per tenant.
		 */
		async invalidate(tenantId: string, selector: Selector) {
			await this.kv.set(key.generation(tenantId), newId(), GENERATION_TTL_MS);
			const previous = this.recomputing.get(tenantId) ?? Promise.resolve();
			const next = previous
				.then(() => this.recompute(tenantId, selector))
				.catch(err => this.logger.error(`Recomputing manifests of tenant ${tenantId} failed`, err))
				.finally(() => {
					if (this.recomputing.get(tenantId) === next) this.recomputing.delete(tenantId);
				});
			this.recomputing.set(tenantId, next);
		},

		/** Recomputes the selected displays' manifests; announces those whose ETag changed. */
		async recompute(tenantId: string, selector: Selector) {
			const at = new Date();
			const generation = await this.generation(tenantId);
			const [zone, scheduleDocs, overrides] = await Promise.all([
				this.tenantZone(tenantId),
				this.db.schedules.findDocs({ tenantId }),
				this.overridesAfter(tenantId, at)
			]);
			const index = new ScheduleIndex(scheduleDocs.map(doc => ({ ...doc, targets: (doc.targets as TargetSet) ?? {} })));
			let afterId: string | null = null;
			do {
				const page = (await this.broker.call("devices.displaysFor", { tenantId, ...selector, afterId: afterId ?? undefined, limit: DISPLAY_PAGE })) as { rows: DisplayTargeting[]; next: string | null };
				const displays = page.rows.map(d => ({ ...d, tenantTimezone: zone }));
				const manifests = await this.manifestsFor(tenantId, displays, d => index.forDisplay(d), overrides, at);
				const changed: Record<string, string> = {};
				for (const { manifest } of manifests) {
					const before = await this.storeManifest(tenantId, generation, manifest);
					if (before !== manifest.etag) changed[manifest.displayId] = manifest.etag;
				}
				const displayIds = Object.keys(changed);
				if (displayIds.length) this.broker.broadcast("scheduling.manifest.changed", { tenantId, displayIds, etags: changed });
				afterId = page.next;
			} while (afterId);
		},

		/** The displays a playlist can reach: its schedules' and overrides' targets and the displays defaulting to it. */
		async selectorForPlaylists(tenantId: string, playlistIds: string[]): Promise<Selector> {
			const now = new Date().toISOString();
			const [schedules, overrides] = await Promise.all([
				this.db.schedules.findDocs({ tenantId }, { playlistId: { $in: playlistIds } }),
				this.db.overrides.findDocs({ tenantId }, { playlistId: { $in: playlistIds }, endsAt: { $gt: now } })
			]);
			return playlistUsersSelector(playlistIds, schedules, overrides);
		},

		/** Resolves once every queued recomputation has finished (shutdown and tests). */
		async idle() {
			while (this.recomputing.size) await Promise.all([...this.recomputing.values()]);
		}
	},

	created(this: SchedulingThis) {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.recomputing = new Map();
	},

	async stopped(this: SchedulingThis) {
		await this.idle();
	}
};

function checkDateRange(startDate: string | null | undefined, endDate: string | null | undefined) {
	const problems: FieldError[] = [];
	if (startDate && !isCalendarDate(startDate)) problems.push({ field: "startDate", message: "is not a real date", type: "date" });
	if (endDate && !isCalendarDate(endDate)) problems.push({ field: "endDate", message: "is not a real date", type: "date" });
	if (!problems.length && startDate && endDate && endDate < startDate) problems.push({ field: "endDate", message: "must not be before startDate", type: "range" });
	if (problems.length) throw Errors.validation(problems);
}

function checkOverrideWindow(startsAt: Date, endsAt: Date, now: number) {
	if (endsAt.getTime() <= now) throw Errors.validation([{ field: "endsAt", message: "must be in the future", type: "range" }]);
	if (endsAt <= startsAt) throw Errors.validation([{ field: "endsAt", message: "must be after startsAt", type: "range" }]);
	if (endsAt.getTime() - Math.max(now, startsAt.getTime()) > MAX_OVERRIDE_DAYS * DAY_MS) {
		throw Errors.validation([{ field: "endsAt", message: `must be within ${MAX_OVERRIDE_DAYS} days; use a schedule for longer`, type: "range" }]);
	}
}

export default SchedulingService;
