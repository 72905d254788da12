/**
 * Scheduling: playlists, layouts, schedules, emergency overrides and screen power schedules, and
 * what each display plays.
 *
 * The answer for a display comes from the pure engine (scheduling/engine.ts) fed with only the
 * schedules that can reach it (indexed by target, scheduling/targeting.ts): a playlist, or a
 * layout whose zones each play one. Its screen power comes from the same engine over the power
 * schedules (scheduling/power.ts). Both become a manifest (scheduling/manifest.ts) whose ETag
 * depends only on what plays. Under the tenant's content approval (shared/approval.ts) an
 * editor's playlist items wait as a draft: manifests play a playlist's approved items only.
 * Params rules are in scheduling/params.ts, documents and their views in scheduling/views.ts;
 * the response bodies are the schemas of shared/contracts/scheduling.ts.
 *
 * Manifests are cached per display (scheduling/manifest-cache.ts), stamped with the tenant's
 * manifest generation. Every change that can affect a manifest (a schedule, an override, a
 * playlist, a content item, a display's timezone, groups, tags or default playlist, the tenant's
 * timezone) first moves the generation, so no stale manifest is served after the change is
 * acknowledged, and then recomputes the displays it can affect, in the background, serialised per
 * tenant (scheduling/recompute-queue.ts): those whose ETag changed are announced on
 * `scheduling.manifest.changed`, which the gateway pushes down their live streams, and their
 * heartbeat answers the new ETag. Each recomputation is counted by outcome, with the time from its
 * change to its manifests being announced (shared/ops-metrics.ts).
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, systemScope, tenantCollection, tenantOf, textSearch, type DbVars, type Query } from "../mixins/db.mixin";
import { actorOf, approvalOf, approvalRequired, decided, isLive, needsApproval, requested } from "../shared/approval";
import { audit } from "../shared/audit";
import { TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	publishEvent,
	broadcast,
	call,
	emit,
	LayoutPage,
	LayoutView,
	Manifest,
	OverridePage,
	PowerSchedulePage,
	PowerScheduleView,
	OverrideView,
	PlaylistPage,
	PlaylistView,
	PreviewView,
	SchedulePage,
	ScheduleView,
	TimelineView,
	type ActionCtx,
	type ApprovalDecisionParams,
	type ChannelCtx,
	type DisplaySelector,
	type DisplayTargeting,
	type EventCtx,
	type LayoutInput,
	type ManifestPower,
	type PlaylistItemInput,
	type Result,
	type TargetsInput
} from "../shared/contracts";
import { Errors, type FieldError } from "../shared/errors";
import { answerGroup, GROUP_CALL_PARAMS } from "../shared/group-call";
import { newId } from "../shared/ids";
import { TimeSlice } from "../shared/time-slice";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { MANIFEST_ETAG_HEADER } from "../shared/openapi";
import { opsCounter, opsHistogram, OPS_METRICS } from "../shared/ops-metrics";
import type { RequestMeta } from "../shared/request";
import { displayZone, resolve, timelineSegments, type DisplayTarget, type Program, type Resolution, type TimelineSegment } from "./scheduling/engine";
import { buildManifest, etagMatches, manifestContentIds, type ContentInfo, type LayoutData, type PlaylistData, type PlaylistItem } from "./scheduling/manifest";
import { currentOf, ManifestCache, type CurrentManifest } from "./scheduling/manifest-cache";
import { checkDateRange, checkOverrideWindow, checkTimelinePeriod, checkZones, DAY_MS, instantParam, MAX_TIMELINE_SEGMENTS, PARAMS, programChange } from "./scheduling/params";
import { powerAt, powerRuleOf } from "./scheduling/power";
import { RecomputeQueue } from "./scheduling/recompute-queue";
import { cleanTargets, displayKeys, hasTargets, mergeSelectors, namingGone, ScheduleIndex, selectorOf, usersSelector, withoutGone, type Gone } from "./scheduling/targeting";
import {
	checkedItems,
	checkedZones,
	exportedPlaylist,
	itemFields,
	layoutView,
	newLayoutFields,
	newPowerScheduleFields,
	newScheduleFields,
	overrideOf,
	overridesWithStatus,
	overrideView,
	pageReaching,
	perDoc,
	playlistData,
	playlistView,
	powerScheduleView,
	previewView,
	refOf,
	ruleOf,
	scheduleChanges,
	scheduleView,
	timelineView,
	zoneFields,
	type LayoutDoc,
	type OverrideDoc,
	type PlaylistDoc,
	type PowerScheduleDoc,
	type ScheduleDoc
} from "./scheduling/views";

/** media.byIds and playlist lookups take at most this many ids at once. */
const ID_BATCH = 1000;
/** A recomputation reads the tenant's displays this many at a time. */
const DISPLAY_PAGE = 1000;

const COLLECTIONS = {
	playlists: tenantCollection<PlaylistDoc>({ indexes: ["name"], selectiveIndexes: ["contentIds"] }),
	layouts: tenantCollection<LayoutDoc>({ indexes: ["name"], selectiveIndexes: ["playlistIds", "backgroundContentId"] }),
	schedules: tenantCollection<ScheduleDoc>({ selectiveIndexes: ["targetKeys", "playlistId", "layoutId"] }),
	overrides: tenantCollection<OverrideDoc>({ indexes: ["endsAt"], selectiveIndexes: ["playlistId", "layoutId"] }),
	power_schedules: tenantCollection<PowerScheduleDoc>({ selectiveIndexes: ["targetKeys"] })
};

type Ctx = Context<unknown, RequestMeta>;

/** The rules that can reach a display: its schedules and its power schedules. */
interface DisplayRules {
	schedules: ScheduleDoc[];
	power: PowerScheduleDoc[];
}

/** What resolving one display needs: the display and the schedules, power schedules and overrides that can reach it from `at` on. */
interface DisplayInputs extends DisplayRules {
	display: DisplayTarget;
	overrides: OverrideDoc[];
}

interface SchedulingVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	kv: KeyValueStore;
	manifests: ManifestCache;
	recomputing: RecomputeQueue;
	/** Per tenant, the displays of the recomputation queued but not started yet (changes merge into it). */
	waiting: Map<string, DisplaySelector>;
}

interface SchedulingMethods {
	checkItems(tenantId: string, items: PlaylistItemInput[], previous?: PlaylistItem[]): Promise<{ items: PlaylistItem[]; content: Map<string, ContentInfo> }>;
	checkTargets(ctx: Ctx, fields: { targets?: TargetsInput | null; excludeDisplayIds?: string[] }, whenEmpty?: string): Promise<void>;
	checkProgram(ctx: Ctx, program: Program): Promise<void>;
	confirmProgram(ctx: Ctx, program: Program, undo: () => Promise<unknown>): Promise<void>;
	approvalRequested(ctx: Ctx, doc: PlaylistDoc): Promise<void>;
	decidePlaylist(ctx: Context<ApprovalDecisionParams, RequestMeta>, decision: "approved" | "rejected"): Promise<PlaylistView>;
	checkLayoutInput(ctx: Ctx, input: Partial<LayoutInput>, previous?: LayoutDoc): Promise<Partial<Pick<LayoutDoc, "zones" | "playlistIds">>>;
	programUsers(ctx: Ctx, program: { playlistId: string } | { layoutId: string }): Promise<{ schedules: ScheduleDoc[]; overrides: OverrideDoc[]; displayIds: string[] }>;
	contentOf(tenantId: string, ids: string[]): Promise<Map<string, ContentInfo>>;
	playlistViews(tenantId: string, docs: PlaylistDoc[], known?: Map<string, ContentInfo>): Promise<PlaylistView[]>;
	tenantZone(tenantId: string): Promise<string>;
	displayInputs(ctx: Ctx, displayId: string, at: Date): Promise<DisplayInputs>;
	targetingOrNull(ctx: Ctx, displayId: string): Promise<DisplayTargeting | null>;
	schedulesTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<ScheduleDoc[]>;
	powerTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<PowerScheduleDoc[]>;
	overridesAfter(tenantId: string, at: Date): Promise<OverrideDoc[]>;
	manifestsFor(
		tenantId: string,
		displays: DisplayTarget[],
		rulesOf: (d: DisplayTarget) => DisplayRules,
		overrides: OverrideDoc[],
		at: Date,
		options?: { candidates?: boolean; slice?: TimeSlice }
	): Promise<Array<{ manifest: Manifest; resolution: Resolution }>>;
	currentManifest(ctx: Ctx, displayId: string): Promise<CurrentManifest>;
	answerManifest(ctx: Ctx): Promise<Manifest | null>;
	invalidate(tenantId: string, selector: DisplaySelector): Promise<void>;
	recompute(tenantId: string, selector: DisplaySelector): Promise<void>;
	selectorForPlaylists(tenantId: string, playlistIds: string[]): Promise<DisplaySelector>;
	selectorForLayouts(tenantId: string, layoutIds: string[]): Promise<DisplaySelector>;
	contentUsers(tenantId: string, contentId: string): Promise<{ playlists: PlaylistDoc[]; layouts: LayoutDoc[] }>;
	invalidateContentUsers(tenantId: string, users: { playlists: PlaylistDoc[]; layouts: LayoutDoc[] }): Promise<void>;
	forgetTarget(tenantId: string, gone: Gone): Promise<void>;
	idle(): Promise<void>;
}

const SchedulingService: ServiceSchema<ServiceSettingSchema, SchedulingMethods, SchedulingVars> = {
	name: "scheduling",
	settings: { rest: "/" },
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- playlists -------------------------------------------------------------------------

		createPlaylist: {
			rest: "POST /playlists",
			permission: "playlists.write",
			summary: "Create a playlist; items play in order, each for its own duration or its content's",
			successStatus: 201,
			response: PlaylistView,
			params: PARAMS.createPlaylist,
			async handler(ctx: ActionCtx<"scheduling.createPlaylist", RequestMeta>): Promise<Result<"scheduling.createPlaylist">> {
				const tenantId = tenantOf(ctx);
				const { items, content } = await this.checkItems(tenantId, ctx.params.items ?? []);
				// Under approval an editor's new playlist plays nothing until an admin approves its items.
				const held = needsApproval(await approvalRequired(ctx, tenantId), ctx.meta.auth);
				const fields = held ? { ...itemFields([], { items }), approval: requested(false, actorOf(ctx.meta.auth), new Date()) } : itemFields(items);
				const doc = await this.db.playlists.insertDoc(ctx, { name: ctx.params.name, ...fields });
				await audit(ctx, { action: "playlist.created", target: doc.id, data: { items: items.length, pendingApproval: held } });
				if (held) await this.approvalRequested(ctx, doc);
				ctx.meta.$location = `/api/v1/playlists/${doc.id}`;
				return playlistView(doc, content);
			}
		},

		listPlaylists: {
			rest: "GET /playlists",
			permission: "tenant.read",
			summary: "Playlists, filtered by free text, by a content item they hold (or their draft does) or ?approval=pending|rejected",
			response: PlaylistPage,
			params: PARAMS.listPlaylists,
			async handler(ctx: ActionCtx<"scheduling.listPlaylists", RequestMeta>): Promise<Result<"scheduling.listPlaylists">> {
				const query: Query = {};
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name"]));
				if (ctx.params.contentId) query.contentIds = ctx.params.contentId;
				if (ctx.params.approval) query["approval.status"] = ctx.params.approval;
				const page = await this.db.playlists.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: await this.playlistViews(tenantOf(ctx), page.rows) };
			}
		},

		getPlaylist: {
			rest: "GET /playlists/:id",
			permission: "tenant.read",
			summary: "One playlist with its items and total duration",
			response: PlaylistView,
			params: PARAMS.getPlaylist,
			async handler(ctx: ActionCtx<"scheduling.getPlaylist", RequestMeta>): Promise<Result<"scheduling.getPlaylist">> {
				const [view] = await this.playlistViews(tenantOf(ctx), [await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist")]);
				return view;
			}
		},

		updatePlaylist: {
			rest: "PATCH /playlists/:id",
			permission: "playlists.write",
			summary: "Rename a playlist or replace its items (an item sent with its id keeps it)",
			response: PlaylistView,
			params: PARAMS.updatePlaylist,
			async handler(ctx: ActionCtx<"scheduling.updatePlaylist", RequestMeta>): Promise<Result<"scheduling.updatePlaylist">> {
				const tenantId = tenantOf(ctx);
				const current = await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist");
				let set: Partial<Pick<PlaylistDoc, "name" | "items" | "contentIds" | "draft" | "approval">> = {};
				let held = false;
				if (ctx.params.name !== undefined) set.name = ctx.params.name;
				if (ctx.params.items !== undefined) {
					// An item sent with its id keeps it: the ids of the version being edited (the draft, if one waits).
					const checked = await this.checkItems(tenantId, ctx.params.items, current.draft?.items ?? current.items);
					held = needsApproval(await approvalRequired(ctx, tenantId), ctx.meta.auth);
					// Under approval an editor's items wait as the draft; what plays stays until an admin approves them.
					if (held) {
						// Not `items`: what plays is never written by an editor, so a write racing an approval cannot undo it.
						const { items: _live, ...draftFields } = itemFields(current.items, { items: checked.items });
						set = { ...set, ...draftFields, approval: requested(isLive(current), actorOf(ctx.meta.auth), new Date()) };
					}
					else set = { ...set, ...itemFields(checked.items, current.draft ?? null), ...(isLive(current) ? {} : { approval: { ...approvalOf(current), live: true } }) };
				}
				const doc = await this.db.playlists.updateDoc(ctx, current.id, set, "Playlist");
				const fields = Object.keys(set).filter(f => f !== "contentIds" && f !== "approval" && (f !== "draft" || held));
				await audit(ctx, { action: "playlist.updated", target: doc.id, data: { fields, pendingApproval: held } });
				if (held) {
					// Admins are told once per request: further edits of a pending draft join it silently.
					if (approvalOf(current).status !== "pending") await this.approvalRequested(ctx, doc);
				} else if (Object.keys(set).length) await this.invalidate(tenantId, await this.selectorForPlaylists(tenantId, [doc.id]));
				const [view] = await this.playlistViews(tenantId, [doc]);
				return view;
			}
		},

		removePlaylist: {
			rest: "DELETE /playlists/:id",
			permission: "playlists.write",
			summary: "Delete a playlist; 409 while a schedule, override or display uses it, unless ?force=true (which removes those schedules and overrides and clears those displays' default)",
			successStatus: 204,
			response: null,
			extraResponses: {
				409: { description: "A schedule, override or display uses the playlist; `?force=true` removes it from all of them (CONFLICT)." }
			},
			params: PARAMS.removePlaylist,
			async handler(ctx: ActionCtx<"scheduling.removePlaylist", RequestMeta>): Promise<Result<"scheduling.removePlaylist">> {
				const tenantId = tenantOf(ctx);
				const playlist = await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist");
				const [{ schedules, overrides, displayIds }, layouts] = await Promise.all([
					this.programUsers(ctx, { playlistId: playlist.id }),
					this.db.layouts.findDocs(ctx, { playlistIds: playlist.id })
				]);
				const inUse = schedules.length + overrides.length + displayIds.length + layouts.length > 0;
				if (inUse && !ctx.params.force) {
					throw Errors.conflict("The playlist is in use; delete with ?force=true to remove it everywhere", {
						schedules: schedules.slice(0, 20).map(refOf),
						overrides: overrides.slice(0, 20).map(refOf),
						displayIds: displayIds.slice(0, 20),
						layouts: layouts.slice(0, 20).map(refOf)
					});
				}
				// Read before the playlist goes: the displays its layouts reach.
				const selector = mergeSelectors(usersSelector({ defaultPlaylistIds: [playlist.id] }, schedules, overrides), await this.selectorForLayouts(tenantId, layouts.map(l => l.id)));
				await this.db.playlists.removeDoc(ctx, playlist.id, "Playlist");
				// Whatever names it now, also a rule created since the check (its create re-checks too).
				await this.db.schedules.removeDocs(ctx, { playlistId: playlist.id });
				await this.db.overrides.removeDocs(ctx, { playlistId: playlist.id });
				// Its zones leave the layouts that had them; the rest of each layout keeps playing.
				for (const layout of layouts) await this.db.layouts.updateDoc(ctx, layout.id, zoneFields(layout.zones.filter(z => z.playlistId !== playlist.id)));
				// Also when no display defaults to it: provisioning keys may (their new screens get none).
				await call(ctx, "devices.clearDefaultPlaylist", { tenantId, playlistId: playlist.id });
				await audit(ctx, {
					action: "playlist.deleted",
					target: playlist.id,
					data: { forced: inUse, schedules: schedules.length, overrides: overrides.length, layouts: layouts.length }
				});
				await this.invalidate(tenantId, selector);
				return null;
			}
		},

		approvePlaylist: {
			rest: "POST /playlists/:id/approve",
			permission: "content.approve",
			summary: "Approve the items waiting for review: from now on screens play them",
			response: PlaylistView,
			extraResponses: { 409: { description: "Nothing is waiting for approval, or the change was decided or replaced meanwhile (CONFLICT)." } },
			params: PARAMS.approvePlaylist,
			handler(ctx: ActionCtx<"scheduling.approvePlaylist", RequestMeta>): Promise<Result<"scheduling.approvePlaylist">> {
				return this.decidePlaylist(ctx, "approved");
			}
		},

		rejectPlaylist: {
			rest: "POST /playlists/:id/reject",
			permission: "content.approve",
			summary: "Reject the items waiting for review, with a comment: the approved items play on (a new playlist plays nothing)",
			response: PlaylistView,
			extraResponses: { 409: { description: "Nothing is waiting for approval, or the change was decided or replaced meanwhile (CONFLICT)." } },
			params: PARAMS.rejectPlaylist,
			handler(ctx: ActionCtx<"scheduling.rejectPlaylist", RequestMeta>): Promise<Result<"scheduling.rejectPlaylist">> {
				return this.decidePlaylist(ctx, "rejected");
			}
		},

		// ---- layouts ---------------------------------------------------------------------------

		createLayout: {
			rest: "POST /layouts",
			permission: "playlists.write",
			summary: "Compose a screen: a frame (pixels or a ratio), a background and zones, each playing a playlist",
			successStatus: 201,
			response: LayoutView,
			params: PARAMS.createLayout,
			async handler(ctx: ActionCtx<"scheduling.createLayout", RequestMeta>): Promise<Result<"scheduling.createLayout">> {
				const doc = await this.db.layouts.insertDoc(ctx, newLayoutFields(ctx.params, await this.checkLayoutInput(ctx, ctx.params)));
				await audit(ctx, { action: "layout.created", target: doc.id, data: { zones: doc.zones.length } });
				ctx.meta.$location = `/api/v1/layouts/${doc.id}`;
				return layoutView(doc);
			}
		},

		listLayouts: {
			rest: "GET /layouts",
			permission: "tenant.read",
			summary: "Layouts, filtered by free text or by a playlist one of their zones plays",
			response: LayoutPage,
			params: PARAMS.listLayouts,
			async handler(ctx: ActionCtx<"scheduling.listLayouts", RequestMeta>): Promise<Result<"scheduling.listLayouts">> {
				const query: Query = {};
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name"]));
				if (ctx.params.playlistId) query.playlistIds = ctx.params.playlistId;
				const page = await this.db.layouts.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(layoutView) };
			}
		},

		getLayout: {
			rest: "GET /layouts/:id",
			permission: "tenant.read",
			summary: "One layout with its zones",
			response: LayoutView,
			params: PARAMS.getLayout,
			async handler(ctx: ActionCtx<"scheduling.getLayout", RequestMeta>): Promise<Result<"scheduling.getLayout">> {
				return layoutView(await this.db.layouts.getDoc(ctx, ctx.params.id, "Layout"));
			}
		},

		updateLayout: {
			rest: "PATCH /layouts/:id",
			permission: "playlists.write",
			summary: "Rename a layout, change its frame or background, or replace its zones (a zone sent with its id keeps it)",
			response: LayoutView,
			params: PARAMS.updateLayout,
			async handler(ctx: ActionCtx<"scheduling.updateLayout", RequestMeta>): Promise<Result<"scheduling.updateLayout">> {
				const tenantId = tenantOf(ctx);
				const current = await this.db.layouts.getDoc(ctx, ctx.params.id, "Layout");
				const { id, zones: _zones, ...fields } = ctx.params;
				const set = { ...fields, ...(await this.checkLayoutInput(ctx, ctx.params, current)) };
				const doc = await this.db.layouts.updateDoc(ctx, id, set, "Layout");
				await audit(ctx, { action: "layout.updated", target: id, data: { fields: Object.keys(set).filter(f => f !== "playlistIds") } });
				if (Object.keys(set).length) await this.invalidate(tenantId, await this.selectorForLayouts(tenantId, [id]));
				return layoutView(doc);
			}
		},

		removeLayout: {
			rest: "DELETE /layouts/:id",
			permission: "playlists.write",
			summary: "Delete a layout; 409 while a schedule, override or display uses it, unless ?force=true (which removes those schedules and overrides and clears those displays' default)",
			successStatus: 204,
			response: null,
			extraResponses: {
				409: { description: "A schedule, override or display uses the layout; `?force=true` removes it from all of them (CONFLICT)." }
			},
			params: PARAMS.removeLayout,
			async handler(ctx: ActionCtx<"scheduling.removeLayout", RequestMeta>): Promise<Result<"scheduling.removeLayout">> {
				const tenantId = tenantOf(ctx);
				const layout = await this.db.layouts.getDoc(ctx, ctx.params.id, "Layout");
				const { schedules, overrides, displayIds } = await this.programUsers(ctx, { layoutId: layout.id });
				const inUse = schedules.length + overrides.length + displayIds.length > 0;
				if (inUse && !ctx.params.force) {
					throw Errors.conflict("The layout is in use; delete with ?force=true to remove it everywhere", {
						schedules: schedules.slice(0, 20).map(refOf),
						overrides: overrides.slice(0, 20).map(refOf),
						displayIds: displayIds.slice(0, 20)
					});
				}
				const selector = usersSelector({ defaultLayoutIds: [layout.id] }, schedules, overrides);
				await this.db.layouts.removeDoc(ctx, layout.id, "Layout");
				// Whatever names it now, also a rule created since the check (its create re-checks too).
				await this.db.schedules.removeDocs(ctx, { layoutId: layout.id });
				await this.db.overrides.removeDocs(ctx, { layoutId: layout.id });
				await call(ctx, "devices.clearDefaultLayout", { tenantId, layoutId: layout.id });
				await audit(ctx, { action: "layout.deleted", target: layout.id, data: { forced: inUse, schedules: schedules.length, overrides: overrides.length } });
				await this.invalidate(tenantId, selector);
				return null;
			}
		},

		// ---- schedules -------------------------------------------------------------------------

		createSchedule: {
			rest: "POST /schedules",
			permission: "schedules.write",
			summary: "Put a playlist on displays, groups or tags for dates, days of the week and a daily window",
			successStatus: 201,
			response: ScheduleView,
			params: PARAMS.createSchedule,
			async handler(ctx: ActionCtx<"scheduling.createSchedule", RequestMeta>): Promise<Result<"scheduling.createSchedule">> {
				const tenantId = tenantOf(ctx);
				const program = programChange(ctx.params) ?? { playlistId: null, layoutId: null };
				const fields = newScheduleFields(ctx.params, program);
				checkDateRange(fields.startDate, fields.endDate);
				await this.checkProgram(ctx, program);
				await this.checkTargets(ctx, ctx.params);
				const doc = await this.db.schedules.insertDoc(ctx, fields);
				await this.confirmProgram(ctx, program, () => this.db.schedules.removeDocs(ctx, { _id: doc.id }));
				await audit(ctx, { action: "schedule.created", target: doc.id, data: { ...program, priority: fields.priority } });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { scheduleId: doc.id, change: "created" });
				await this.invalidate(tenantId, selectorOf(fields.targets));
				ctx.meta.$location = `/api/v1/schedules/${doc.id}`;
				return scheduleView(doc);
			}
		},

		listSchedules: {
			rest: "GET /schedules",
			permission: "tenant.read",
			summary: "Schedules, highest priority first; ?displayId lists those that target a display, ?playlistId and ?layoutId those that play a playlist or a layout",
			response: SchedulePage,
			params: PARAMS.listSchedules,
			async handler(ctx: ActionCtx<"scheduling.listSchedules", RequestMeta>): Promise<Result<"scheduling.listSchedules">> {
				const { page, pageSize, displayId, playlistId, layoutId } = ctx.params;
				const sort = ["-priority", "-createdAt", "_id"];
				if (!displayId) {
					const query: Query = {};
					if (playlistId) query.playlistId = playlistId;
					if (layoutId) query.layoutId = layoutId;
					const result = await this.db.schedules.pageDocs(ctx, query, page, pageSize, sort);
					return { ...result, rows: result.rows.map(scheduleView) };
				}
				// Exclusions cannot be filtered alike on NeDB and MongoDB: filter the (bounded) matches here.
				const display = await this.targetingOrNull(ctx, displayId);
				const docs = (display ? await this.schedulesTargeting(tenantOf(ctx), display) : []).filter(
					d => (!playlistId || d.playlistId === playlistId) && (!layoutId || d.layoutId === layoutId)
				);
				return pageReaching(docs, displayId, ctx.params, ruleOf, scheduleView);
			}
		},

		getSchedule: {
			rest: "GET /schedules/:id",
			permission: "tenant.read",
			summary: "One schedule",
			response: ScheduleView,
			params: PARAMS.getSchedule,
			async handler(ctx: ActionCtx<"scheduling.getSchedule", RequestMeta>): Promise<Result<"scheduling.getSchedule">> {
				return scheduleView(await this.db.schedules.getDoc(ctx, ctx.params.id, "Schedule"));
			}
		},

		updateSchedule: {
			rest: "PATCH /schedules/:id",
			permission: "schedules.write",
			summary: "Change a schedule (targets replace the previous ones; null clears a date, day or time rule)",
			response: ScheduleView,
			params: PARAMS.updateSchedule,
			async handler(ctx: ActionCtx<"scheduling.updateSchedule", RequestMeta>): Promise<Result<"scheduling.updateSchedule">> {
				const tenantId = tenantOf(ctx);
				const current = await this.db.schedules.getDoc(ctx, ctx.params.id, "Schedule");
				const { id, ...changes } = ctx.params;
				const program = programChange(changes, { playlistId: current.playlistId, layoutId: current.layoutId ?? null });
				if (program) await this.checkProgram(ctx, program);
				const set = scheduleChanges(changes, program);
				if (changes.targets !== undefined || changes.excludeDisplayIds !== undefined) {
					await this.checkTargets(ctx, { targets: changes.targets, excludeDisplayIds: changes.excludeDisplayIds });
				}
				const merged = { ...current, ...set };
				checkDateRange(merged.startDate, merged.endDate);
				const doc = await this.db.schedules.updateDoc(ctx, id, set, "Schedule");
				await audit(ctx, { action: "schedule.updated", target: id, data: { fields: Object.keys(set).filter(f => f !== "targetKeys") } });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { scheduleId: id, change: "updated" });
				await this.invalidate(tenantId, mergeSelectors(selectorOf(current.targets), selectorOf(doc.targets)));
				return scheduleView(doc);
			}
		},

		removeSchedule: {
			rest: "DELETE /schedules/:id",
			permission: "schedules.write",
			summary: "Delete a schedule",
			successStatus: 204,
			response: null,
			params: PARAMS.removeSchedule,
			async handler(ctx: ActionCtx<"scheduling.removeSchedule", RequestMeta>): Promise<Result<"scheduling.removeSchedule">> {
				const doc = await this.db.schedules.removeDoc(ctx, ctx.params.id, "Schedule");
				await audit(ctx, { action: "schedule.deleted", target: doc.id, data: { name: doc.name } });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { scheduleId: doc.id, change: "deleted" });
				await this.invalidate(tenantOf(ctx), selectorOf(doc.targets));
				return null;
			}
		},

		// ---- screen power ----------------------------------------------------------------------

		createPowerSchedule: {
			rest: "POST /power-schedules",
			permission: "displays.manage",
			summary: "Turn screens off (or, above an off rule, on) on displays, groups or tags for dates, days of the week and a daily window",
			successStatus: 201,
			response: PowerScheduleView,
			params: PARAMS.createPowerSchedule,
			async handler(ctx: ActionCtx<"scheduling.createPowerSchedule", RequestMeta>): Promise<Result<"scheduling.createPowerSchedule">> {
				const fields = newPowerScheduleFields(ctx.params);
				checkDateRange(fields.startDate, fields.endDate);
				await this.checkTargets(ctx, ctx.params);
				const doc = await this.db.power_schedules.insertDoc(ctx, fields);
				await audit(ctx, { action: "powerSchedule.created", target: doc.id, data: { state: doc.state, priority: doc.priority } });
				await this.invalidate(tenantOf(ctx), selectorOf(fields.targets));
				void emit(ctx, "scheduling.power.changed", { tenantId: tenantOf(ctx) });
				ctx.meta.$location = `/api/v1/power-schedules/${doc.id}`;
				return powerScheduleView(doc);
			}
		},

		listPowerSchedules: {
			rest: "GET /power-schedules",
			permission: "tenant.read",
			summary: "Power schedules, highest priority first; ?displayId lists those that target a display",
			response: PowerSchedulePage,
			params: PARAMS.listPowerSchedules,
			async handler(ctx: ActionCtx<"scheduling.listPowerSchedules", RequestMeta>): Promise<Result<"scheduling.listPowerSchedules">> {
				const { page, pageSize, displayId } = ctx.params;
				if (!displayId) {
					const result = await this.db.power_schedules.pageDocs(ctx, {}, page, pageSize, ["-priority", "-createdAt", "_id"]);
					return { ...result, rows: result.rows.map(powerScheduleView) };
				}
				const display = await this.targetingOrNull(ctx, displayId);
				return pageReaching(display ? await this.powerTargeting(tenantOf(ctx), display) : [], displayId, ctx.params, powerRuleOf, powerScheduleView);
			}
		},

		getPowerSchedule: {
			rest: "GET /power-schedules/:id",
			permission: "tenant.read",
			summary: "One power schedule",
			response: PowerScheduleView,
			params: PARAMS.getPowerSchedule,
			async handler(ctx: ActionCtx<"scheduling.getPowerSchedule", RequestMeta>): Promise<Result<"scheduling.getPowerSchedule">> {
				return powerScheduleView(await this.db.power_schedules.getDoc(ctx, ctx.params.id, "Power schedule"));
			}
		},

		updatePowerSchedule: {
			rest: "PATCH /power-schedules/:id",
			permission: "displays.manage",
			summary: "Change a power schedule (targets replace the previous ones; null clears a date, day or time rule)",
			response: PowerScheduleView,
			params: PARAMS.updatePowerSchedule,
			async handler(ctx: ActionCtx<"scheduling.updatePowerSchedule", RequestMeta>): Promise<Result<"scheduling.updatePowerSchedule">> {
				const current = await this.db.power_schedules.getDoc(ctx, ctx.params.id, "Power schedule");
				const { id, ...changes } = ctx.params;
				const set = scheduleChanges(changes);
				if (changes.targets !== undefined || changes.excludeDisplayIds !== undefined) {
					await this.checkTargets(ctx, { targets: changes.targets, excludeDisplayIds: changes.excludeDisplayIds });
				}
				const merged = { ...current, ...set };
				checkDateRange(merged.startDate, merged.endDate);
				const doc = await this.db.power_schedules.updateDoc(ctx, id, set, "Power schedule");
				await audit(ctx, { action: "powerSchedule.updated", target: id, data: { fields: Object.keys(set).filter(f => f !== "targetKeys") } });
				await this.invalidate(tenantOf(ctx), mergeSelectors(selectorOf(current.targets), selectorOf(doc.targets)));
				void emit(ctx, "scheduling.power.changed", { tenantId: tenantOf(ctx) });
				return powerScheduleView(doc);
			}
		},

		removePowerSchedule: {
			rest: "DELETE /power-schedules/:id",
			permission: "displays.manage",
			summary: "Delete a power schedule",
			successStatus: 204,
			response: null,
			params: PARAMS.removePowerSchedule,
			async handler(ctx: ActionCtx<"scheduling.removePowerSchedule", RequestMeta>): Promise<Result<"scheduling.removePowerSchedule">> {
				const doc = await this.db.power_schedules.removeDoc(ctx, ctx.params.id, "Power schedule");
				await audit(ctx, { action: "powerSchedule.deleted", target: doc.id, data: { name: doc.name } });
				await this.invalidate(tenantOf(ctx), selectorOf(doc.targets));
				void emit(ctx, "scheduling.power.changed", { tenantId: tenantOf(ctx) });
				return null;
			}
		},

		// ---- emergency overrides ---------------------------------------------------------------

		createOverride: {
			rest: "POST /overrides",
			permission: "schedules.write",
			summary: "Emergency takeover: a playlist on the targeted displays (no targets = every display) until endsAt, above every schedule",
			successStatus: 201,
			response: OverrideView,
			params: PARAMS.createOverride,
			async handler(ctx: ActionCtx<"scheduling.createOverride", RequestMeta>): Promise<Result<"scheduling.createOverride">> {
				const tenantId = tenantOf(ctx);
				const now = Date.now();
				const startsAt = instantParam(ctx.params.startsAt, "startsAt", new Date(now));
				const endsAt = instantParam(ctx.params.endsAt, "endsAt", new Date(now));
				checkOverrideWindow(startsAt, endsAt, now);
				await this.checkTargets(ctx, ctx.params, "names no display, group or tag; leave it out to cover every display");
				const program = programChange(ctx.params) ?? { playlistId: null, layoutId: null };
				await this.checkProgram(ctx, program);
				const targets = cleanTargets(ctx.params.targets);
				const doc = await this.db.overrides.insertDoc(ctx, {
					name: ctx.params.name,
					...program,
					targets,
					excludeDisplayIds: ctx.params.excludeDisplayIds ?? [],
					startsAt: startsAt.toISOString(),
					endsAt: endsAt.toISOString(),
					endedAt: null
				});
				await this.confirmProgram(ctx, program, () => this.db.overrides.removeDocs(ctx, { _id: doc.id }));
				await audit(ctx, { action: "override.created", target: doc.id, data: { ...program, endsAt: doc.endsAt, everyDisplay: !targets } });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { overrideId: doc.id, change: "created" });
				await this.invalidate(tenantId, selectorOf(targets));
				ctx.meta.$location = `/api/v1/overrides/${doc.id}`;
				return overrideView(doc, Date.now());
			}
		},

		listOverrides: {
			rest: "GET /overrides",
			permission: "tenant.read",
			summary: "Overrides, newest first; ?status=active|scheduled|ended",
			response: OverridePage,
			params: PARAMS.listOverrides,
			async handler(ctx: ActionCtx<"scheduling.listOverrides", RequestMeta>): Promise<Result<"scheduling.listOverrides">> {
				const now = Date.now();
				const query = ctx.params.status ? overridesWithStatus(ctx.params.status, new Date(now).toISOString()) : {};
				const page = await this.db.overrides.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(d => overrideView(d, Date.now())) };
			}
		},

		getOverride: {
			rest: "GET /overrides/:id",
			permission: "tenant.read",
			summary: "One override",
			response: OverrideView,
			params: PARAMS.getOverride,
			async handler(ctx: ActionCtx<"scheduling.getOverride", RequestMeta>): Promise<Result<"scheduling.getOverride">> {
				return overrideView(await this.db.overrides.getDoc(ctx, ctx.params.id, "Override"), Date.now());
			}
		},

		updateOverride: {
			rest: "PATCH /overrides/:id",
			permission: "schedules.write",
			summary: "Rename, retarget, switch the playlist or move the end of an override that has not ended",
			response: OverrideView,
			params: PARAMS.updateOverride,
			async handler(ctx: ActionCtx<"scheduling.updateOverride", RequestMeta>): Promise<Result<"scheduling.updateOverride">> {
				const tenantId = tenantOf(ctx);
				const current = await this.db.overrides.getDoc(ctx, ctx.params.id, "Override");
				const now = Date.now();
				if (overrideView(current, now).status === "ended") throw Errors.conflict("The override has ended; create a new one");
				const { id, ...changes } = ctx.params;
				const set: Partial<Pick<OverrideDoc, "name" | "playlistId" | "layoutId" | "targets" | "excludeDisplayIds" | "endsAt">> = {};
				if (changes.name !== undefined) set.name = changes.name;
				const program = programChange(changes, { playlistId: current.playlistId, layoutId: current.layoutId ?? null });
				if (program) {
					await this.checkProgram(ctx, program);
					Object.assign(set, program);
				}
				if (changes.targets !== undefined || changes.excludeDisplayIds !== undefined) {
					await this.checkTargets(ctx, changes, "names no display, group or tag; set it to null to cover every display");
				}
				if (changes.targets !== undefined) set.targets = cleanTargets(changes.targets);
				if (changes.excludeDisplayIds !== undefined) set.excludeDisplayIds = changes.excludeDisplayIds;
				if (changes.endsAt !== undefined) {
					const endsAt = instantParam(changes.endsAt, "endsAt", new Date(now));
					checkOverrideWindow(new Date(current.startsAt), endsAt, now);
					set.endsAt = endsAt.toISOString();
				}
				const doc = await this.db.overrides.updateDoc(ctx, id, set, "Override");
				await audit(ctx, { action: "override.updated", target: id, data: { fields: Object.keys(set) } });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { overrideId: id, change: "updated" });
				await this.invalidate(tenantId, mergeSelectors(selectorOf(current.targets), selectorOf(doc.targets)));
				return overrideView(doc, Date.now());
			}
		},

		endOverride: {
			rest: "DELETE /overrides/:id",
			permission: "schedules.write",
			summary: "End an override now (it stays listed as ended; ending an ended override changes nothing)",
			successStatus: 204,
			response: null,
			params: PARAMS.endOverride,
			async handler(ctx: ActionCtx<"scheduling.endOverride", RequestMeta>): Promise<Result<"scheduling.endOverride">> {
				const current = await this.db.overrides.getDoc(ctx, ctx.params.id, "Override");
				const now = new Date();
				if (overrideView(current, now.getTime()).status === "ended") return null;
				// An override that had not started yet simply never runs: it ends where it would have begun.
				const endsAt = current.startsAt > now.toISOString() ? current.startsAt : now.toISOString();
				await this.db.overrides.updateDoc(ctx, current.id, { endsAt, endedAt: now.toISOString() }, "Override");
				await audit(ctx, { action: "override.ended", target: current.id });
				await publishEvent(ctx.broker, tenantOf(ctx), "schedule.changed", { overrideId: current.id, change: "ended" });
				await this.invalidate(tenantOf(ctx), selectorOf(current.targets));
				return null;
			}
		},

		// ---- what plays ------------------------------------------------------------------------

		preview: {
			rest: "GET /displays/:id/preview",
			permission: "tenant.read",
			summary: "What a display plays at an instant (default now), why, and until when",
			response: PreviewView,
			params: PARAMS.preview,
			async handler(ctx: ActionCtx<"scheduling.preview", RequestMeta>): Promise<Result<"scheduling.preview">> {
				const at = instantParam(ctx.params.at, "at", new Date());
				const { display, overrides, ...rules } = await this.displayInputs(ctx, ctx.params.id, at);
				const [{ manifest, resolution }] = await this.manifestsFor(tenantOf(ctx), [display], () => rules, overrides, at, { candidates: true });
				return previewView(resolution, manifest);
			}
		},

		timeline: {
			rest: "GET /displays/:id/timeline",
			permission: "tenant.read",
			summary: "What a display plays over a period (default the next 24 hours, at most 31 days), as segments; at most 1 000 (then `to` is where they end and `truncated` is true)",
			response: TimelineView,
			params: PARAMS.timeline,
			async handler(ctx: ActionCtx<"scheduling.timeline", RequestMeta>): Promise<Result<"scheduling.timeline">> {
				const from = instantParam(ctx.params.from, "from", new Date());
				const to = instantParam(ctx.params.to, "to", new Date(from.getTime() + DAY_MS));
				checkTimelinePeriod(from, to);
				const { display, schedules, overrides } = await this.displayInputs(ctx, ctx.params.id, from);
				// Bounded, and with other requests let in: many short rules over a month are many segments.
				const segments: TimelineSegment[] = [];
				const slice = new TimeSlice();
				for (const segment of timelineSegments(display, schedules.map(ruleOf), overrides.map(overrideOf), from, to)) {
					segments.push(segment);
					if (segments.length >= MAX_TIMELINE_SEGMENTS) break;
					await slice.checkIn();
				}
				const last = segments[segments.length - 1];
				const truncated = segments.length >= MAX_TIMELINE_SEGMENTS && Date.parse(last.end) < to.getTime();
				return timelineView(displayZone(display), from, truncated ? new Date(last.end) : to, segments, truncated);
			}
		},

		deviceManifest: {
			rest: "GET /device/manifest",
			permission: "device",
			summary: "What this display plays now and until when; If-None-Match with its ETag answers 304",
			response: Manifest,
			extraResponses: {
				200: { headers: MANIFEST_ETAG_HEADER },
				304: { description: "Not Modified: If-None-Match holds the current ETag; no body.", headers: MANIFEST_ETAG_HEADER }
			},
			// The gateway's device lane sends manifest requests in groups (shared/group-call.ts).
			groupedBy: "scheduling.deviceManifestGroup",
			handler(ctx: ActionCtx<"scheduling.deviceManifest", RequestMeta>): Promise<Result<"scheduling.deviceManifest">> {
				return this.answerManifest(ctx);
			}
		},

		/** Many manifest requests at once, each answered as `deviceManifest` would (the gateway's group call). */
		deviceManifestGroup: {
			visibility: "public",
			params: GROUP_CALL_PARAMS,
			handler(ctx: ActionCtx<"scheduling.deviceManifestGroup">): Promise<Result<"scheduling.deviceManifestGroup">> {
				return answerGroup(ctx, undefined, call => this.answerManifest(call), this.logger);
			}
		},

		// ---- for other services ------------------------------------------------------------------

		/** Whether a content item is in the display's current manifest (device downloads). */
		contentInManifest: {
			visibility: "public",
			params: PARAMS.contentInManifest,
			async handler(ctx: ActionCtx<"scheduling.contentInManifest", RequestMeta>): Promise<Result<"scheduling.contentInManifest">> {
				const current = await this.currentManifest(ctx, ctx.params.displayId);
				return manifestContentIds(current.manifest()).has(ctx.params.contentId);
			}
		},

		/** Whether the caller's tenant has this playlist (a display's default playlist). */
		playlistExists: {
			visibility: "public",
			params: PARAMS.playlistExists,
			async handler(ctx: ActionCtx<"scheduling.playlistExists", RequestMeta>): Promise<Result<"scheduling.playlistExists">> {
				return (await this.db.playlists.findDoc(ctx, { _id: ctx.params.id })) !== null;
			}
		},

		/**
		 * The screens' power, each at its display's instant (default now), for those of these
		 * displays a power schedule reaches: the offline sweep asks, for when each went dark,
		 * before counting a silent display as an outage.
		 */
		powerStates: {
			visibility: "public",
			params: PARAMS.powerStates,
			async handler(ctx: ActionCtx<"scheduling.powerStates">): Promise<Result<"scheduling.powerStates">> {
				const { tenantId, displays } = ctx.params;
				const scope = systemScope(tenantId);
				const powerDocs = await this.db.power_schedules.findDocs(scope);
				if (!powerDocs.length || !displays.length) return {};
				const displayIds = displays.map(d => d.id);
				const [zone, page] = await Promise.all([this.tenantZone(tenantId), call(ctx, "devices.displaysFor", { tenantId, displayIds, limit: displayIds.length })]);
				const index = new ScheduleIndex(powerDocs);
				const now = new Date();
				const instants = new Map(displays.map(d => [d.id, d.at ? new Date(d.at) : now]));
				const states: Record<string, ManifestPower> = {};
				const powerRuleFor = perDoc(powerRuleOf);
				for (const row of page.rows) {
					const power = powerAt({ ...row, tenantTimezone: zone }, index.forDisplay(row), instants.get(row.id) ?? now, powerRuleFor);
					if (power) states[row.id] = power;
				}
				return states;
			}
		},

		/** Whether the caller's tenant has this layout (a display's default layout). */
		layoutExists: {
			visibility: "public",
			params: PARAMS.layoutExists,
			async handler(ctx: ActionCtx<"scheduling.layoutExists", RequestMeta>): Promise<Result<"scheduling.layoutExists">> {
				return (await this.db.layouts.findDoc(ctx, { _id: ctx.params.id })) !== null;
			}
		},

		/** Deleted content leaves every playlist and manifest before media answers the delete. */
		removeContent: {
			visibility: "public",
			params: PARAMS.removeContent,
			async handler(ctx: ActionCtx<"scheduling.removeContent">): Promise<Result<"scheduling.removeContent">> {
				const { tenantId, contentId } = ctx.params;
				const scope = systemScope(tenantId);
				const { playlists, layouts } = await this.contentUsers(tenantId, contentId);
				for (const doc of playlists) {
					const draft = doc.draft ? { items: doc.draft.items.filter(i => i.contentId !== contentId) } : null;
					await this.db.playlists.updateDoc(scope, doc.id, itemFields(doc.items.filter(i => i.contentId !== contentId), draft));
				}
				if (layouts.length) await this.db.layouts.updateWhere(scope, { backgroundContentId: contentId }, { backgroundContentId: null });
				await this.invalidateContentUsers(tenantId, { playlists, layouts });
				return playlists.length;
			}
		},

		exportTenantData: {
			visibility: "public",
			params: PARAMS.exportTenantData,
			async handler(ctx: ActionCtx<"scheduling.exportTenantData">): Promise<Result<"scheduling.exportTenantData">> {
				const scope = systemScope(ctx.params.tenantId);
				const [playlists, layouts, schedules, overrides, power] = await Promise.all([
					this.db.playlists.findDocs(scope),
					this.db.layouts.findDocs(scope),
					this.db.schedules.findDocs(scope),
					this.db.overrides.findDocs(scope),
					this.db.power_schedules.findDocs(scope)
				]);
				const now = Date.now();
				return {
					playlists: playlists.map(exportedPlaylist),
					layouts: layouts.map(layoutView),
					schedules: schedules.map(scheduleView),
					overrides: overrides.map(o => overrideView(o, now)),
					powerSchedules: power.map(powerScheduleView)
				};
			}
		}
	},

	events: {
		async "devices.display.updated"(ctx: EventCtx<"devices.display.updated">) {
			const { tenantId, displayIds, fields } = ctx.params;
			if (fields.some(f => ["timezone", "tags", "groupIds", "defaultPlaylistId", "defaultLayoutId"].includes(f))) await this.invalidate(tenantId, { displayIds });
		},

		async "devices.display.deleted"(ctx: EventCtx<"devices.display.deleted">) {
			await this.manifests.forgetDisplay(ctx.params.displayId);
			await this.forgetTarget(ctx.params.tenantId, { displayId: ctx.params.displayId });
		},

		async "devices.group.deleted"(ctx: EventCtx<"devices.group.deleted">) {
			await this.forgetTarget(ctx.params.tenantId, { groupId: ctx.params.groupId });
		},

		async "media.content.updated"(ctx: EventCtx<"media.content.updated">) {
			const { tenantId, contentId, fields } = ctx.params;
			if (!fields.some(f => ["name", "durationMs", "validFrom", "validUntil", "approval"].includes(f))) return;
			await this.invalidateContentUsers(tenantId, await this.contentUsers(tenantId, contentId));
		},

		async "tenants.tenant.updated"(ctx: EventCtx<"tenants.tenant.updated">) {
			// The tenant's timezone is every display's fallback zone; nothing else of the tenant plays.
			if (ctx.params.changed.includes("settings.timezone")) await this.invalidate(ctx.params.tenantId, { all: true });
		}
	},

	channels: {
		[TENANT_DELETED_CHANNEL]: {
			group: "scheduling",
			async handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
				const { tenantId } = ctx.params;
				const scope = systemScope(tenantId);
				const [playlists, layouts, schedules, overrides, power] = await Promise.all([
					this.db.playlists.removeDocs(scope, {}),
					this.db.layouts.removeDocs(scope, {}),
					this.db.schedules.removeDocs(scope, {}),
					this.db.overrides.removeDocs(scope, {}),
					this.db.power_schedules.removeDocs(scope, {})
				]);
				await this.manifests.forgetTenant(tenantId);
				this.logger.info(
					`Tenant ${tenantId} deleted: ${playlists} playlists, ${layouts} layouts, ${schedules} schedules, ${overrides} overrides and ${power} power schedules removed`
				);
			}
		}
	},

	methods: {
		/** Items of a playlist write: every content id must be the tenant's (422 naming the item otherwise). */
		async checkItems(tenantId: string, items: PlaylistItemInput[], previous: PlaylistItem[] = []) {
			const content = await this.contentOf(tenantId, items.map(i => i.contentId));
			return { items: checkedItems(items, content, previous, newId), content };
		},

		/** Targets name something (`whenEmpty` otherwise), and every display and group named is the tenant's. */
		async checkTargets(ctx: Ctx, fields: { targets?: TargetsInput | null; excludeDisplayIds?: string[] }, whenEmpty = "must name at least one display, group or tag") {
			const { targets, excludeDisplayIds } = fields;
			if (targets !== undefined && targets !== null && !hasTargets(targets)) {
				throw Errors.validation([{ field: "targets", message: whenEmpty, type: "targets" }]);
			}
			const displayIds = [...new Set([...(targets?.displayIds ?? []), ...(excludeDisplayIds ?? [])])];
			const groupIds = targets?.groupIds ?? [];
			if (displayIds.length === 0 && groupIds.length === 0) return;
			const unknown = await call(ctx, "devices.unknownTargets", { displayIds, groupIds });
			const problems: FieldError[] = [];
			for (const id of unknown.displayIds) {
				const field = targets?.displayIds?.includes(id) ? "targets.displayIds" : "excludeDisplayIds";
				problems.push({ field, message: `${id} is not a display of this tenant`, type: "exists" });
			}
			for (const id of unknown.groupIds) problems.push({ field: "targets.groupIds", message: `${id} is not a display group of this tenant`, type: "exists" });
			if (problems.length) throw Errors.validation(problems);
		},

		async approvalRequested(ctx: Ctx, doc: PlaylistDoc) {
			await publishEvent(ctx.broker, doc.tenantId, "approval.requested", { kind: "playlist", id: doc.id, name: doc.name, requestedBy: doc.approval?.requestedBy ?? null });
		},

		/** An admin's decision on the draft, claimed by compare-and-set on the request it decides. */
		async decidePlaylist(ctx: Context<ApprovalDecisionParams, RequestMeta>, decision: "approved" | "rejected") {
			const tenantId = tenantOf(ctx);
			const current = await this.db.playlists.getDoc(ctx, ctx.params.id, "Playlist");
			const approval = decided(approvalOf(current), decision, { reviewer: actorOf(ctx.meta.auth), comment: ctx.params.comment ?? null, reviewed: ctx.params.requestedAt }, new Date());
			const items = decision === "approved" ? (current.draft?.items ?? current.items) : current.items;
			const claim = { _id: current.id, "approval.status": "pending", "approval.requestedAt": current.approval?.requestedAt ?? null };
			if (!(await this.db.playlists.updateWhere(ctx, claim, { ...itemFields(items), approval }))) {
				throw Errors.conflict("The change was decided or replaced meanwhile; read it again");
			}
			const doc = await this.db.playlists.getDoc(ctx, current.id, "Playlist");
			await audit(ctx, { action: `playlist.${decision}`, target: doc.id, data: { comment: approval.comment, requestedBy: approval.requestedBy, items: items.length } });
			await publishEvent(ctx.broker, tenantId, "approval.decided", {
				kind: "playlist",
				id: doc.id,
				name: doc.name,
				status: decision,
				comment: approval.comment,
				requestedBy: approval.requestedBy,
				reviewedBy: approval.reviewedBy
			});
			if (decision === "approved") await this.invalidate(tenantId, await this.selectorForPlaylists(tenantId, [doc.id]));
			const [view] = await this.playlistViews(tenantId, [doc]);
			return view;
		},

		/** What a schedule or override plays is the tenant's (422 naming the field otherwise). */
		async checkProgram(ctx: Ctx, program: Program) {
			if (program.layoutId) {
				if (!(await this.db.layouts.findDoc(ctx, { _id: program.layoutId }))) throw Errors.validation([{ field: "layoutId", message: "is not a layout of this tenant", type: "exists" }]);
			} else if (!program.playlistId || !(await this.db.playlists.findDoc(ctx, { _id: program.playlistId }))) {
				throw Errors.validation([{ field: "playlistId", message: "is not a playlist of this tenant", type: "exists" }]);
			}
		},

		/**
		 * After a rule naming `program` was stored: the playlist or layout still exists, else the
		 * rule is taken back (`undo`) and the create answers 422. A delete racing the create removes
		 * what names its target after removing the target itself, so one of the two always sees
		 * the other and no rule is left naming nothing.
		 */
		async confirmProgram(ctx: Ctx, program: Program, undo: () => Promise<unknown>) {
			try {
				await this.checkProgram(ctx, program);
			} catch (err) {
				await undo();
				throw err;
			}
		},

		/**
		 * A layout write's zones and background: zones inside the frame, each zone's playlist and the
		 * background (an image) the tenant's; answers the zone fields to store (none when the write sends no zones).
		 */
		async checkLayoutInput(ctx: Ctx, input: Partial<LayoutInput>, previous?: LayoutDoc) {
			const problems: FieldError[] = [];
			if (input.zones) {
				checkZones(input.zones);
				const ids = [...new Set(input.zones.map(z => z.playlistId))];
				const known = new Set((await this.db.playlists.findDocs(ctx, { _id: { $in: ids } })).map(p => p.id));
				input.zones.forEach((z, i) => {
					if (!known.has(z.playlistId)) problems.push({ field: `zones[${i}].playlistId`, message: "is not a playlist of this tenant", type: "exists" });
				});
			}
			if (input.backgroundContentId) {
				const image = (await this.contentOf(tenantOf(ctx), [input.backgroundContentId])).get(input.backgroundContentId);
				if (!image) problems.push({ field: "backgroundContentId", message: "is not a content item of this tenant", type: "exists" });
				else if (image.type !== "image") problems.push({ field: "backgroundContentId", message: "must be an image", type: "type" });
			}
			if (problems.length) throw Errors.validation(problems);
			return input.zones ? zoneFields(checkedZones(input.zones, previous?.zones ?? [], newId)) : {};
		},

		/** What keeps a playlist or a layout in use: its schedules, overrides still to end, displays defaulting to it (the first 100). */
		async programUsers(ctx: Ctx, program: { playlistId: string } | { layoutId: string }) {
			const now = new Date().toISOString();
			const defaults = "playlistId" in program ? { defaultPlaylistIds: [program.playlistId] } : { defaultLayoutIds: [program.layoutId] };
			const [schedules, overrides, displays] = await Promise.all([
				this.db.schedules.findDocs(ctx, { ...program }),
				this.db.overrides.findDocs(ctx, { ...program, endsAt: { $gt: now } }),
				call(ctx, "devices.displaysFor", { tenantId: tenantOf(ctx), ...defaults, limit: 100 })
			]);
			return { schedules, overrides, displayIds: displays.rows.map(d => d.id) };
		},

		async contentOf(tenantId: string, ids: string[]): Promise<Map<string, ContentInfo>> {
			const found = new Map<string, ContentInfo>();
			for (const batch of chunks([...new Set(ids)], ID_BATCH)) {
				for (const row of await call(this.broker, "media.byIds", { tenantId, ids: batch })) found.set(row.id, row);
			}
			return found;
		},

		/** `known`: the items' content when the caller just read it (a playlist write). */
		async playlistViews(tenantId: string, docs: PlaylistDoc[], known?: Map<string, ContentInfo>): Promise<PlaylistView[]> {
			const content = known ?? (await this.contentOf(tenantId, docs.flatMap(d => d.contentIds)));
			return docs.map(doc => playlistView(doc, content));
		},

		async tenantZone(tenantId: string): Promise<string> {
			const tenant = await call(this.broker, "tenants.find", { tenantId });
			return tenant?.settings.timezone ?? "UTC";
		},

		/** The caller's display (404 if not the tenant's) and what can reach it from `at` on. */
		async displayInputs(ctx: Ctx, displayId: string, at: Date): Promise<DisplayInputs> {
			const tenantId = tenantOf(ctx);
			const [targeting, zone] = await Promise.all([call(ctx, "devices.targeting", { id: displayId }), this.tenantZone(tenantId)]);
			const display: DisplayTarget = { ...targeting, tenantTimezone: zone };
			const [schedules, power, overrides] = await Promise.all([
				this.schedulesTargeting(tenantId, display),
				this.powerTargeting(tenantId, display),
				this.overridesAfter(tenantId, at)
			]);
			return { display, schedules, power, overrides };
		},

		/** The caller's display as scheduling needs it, or null when the tenant has none of that id (a list filter matches nothing then). */
		async targetingOrNull(ctx: Ctx, displayId: string) {
			return call(ctx, "devices.targeting", { id: displayId }).catch((err: { type?: string }) => {
				if (err.type === "NOT_FOUND") return null;
				throw err;
			});
		},

		/** The schedules naming the display, one of its groups or one of its tags (an indexed query). */
		async schedulesTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<ScheduleDoc[]> {
			return this.db.schedules.findDocs(systemScope(tenantId), { targetKeys: { $in: displayKeys(display) } });
		},

		/** The power schedules naming the display, one of its groups or one of its tags. */
		async powerTargeting(tenantId: string, display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): Promise<PowerScheduleDoc[]> {
			return this.db.power_schedules.findDocs(systemScope(tenantId), { targetKeys: { $in: displayKeys(display) } });
		},

		/** Overrides still running or to come after `at` (the ones that can matter from then on). */
		async overridesAfter(tenantId: string, at: Date): Promise<OverrideDoc[]> {
			return this.db.overrides.findDocs(systemScope(tenantId), { endsAt: { $gt: at.toISOString() } });
		},

		/** Manifests (and the resolutions behind them) of many displays at once: one playlist query and one content lookup for all. */
		async manifestsFor(
			tenantId: string,
			displays: DisplayTarget[],
			rulesOf: (d: DisplayTarget) => DisplayRules,
			overrideDocs: OverrideDoc[],
			at: Date,
			options: { candidates?: boolean; slice?: TimeSlice } = {}
		): Promise<Array<{ manifest: Manifest; resolution: Resolution }>> {
			const overrides = overrideDocs.map(overrideOf);
			const overrideNames = new Map(overrideDocs.map(o => [o.id, o.name]));
			const resolved: Array<{ display: DisplayTarget; resolution: Resolution; scheduleName: string | null; power: ManifestPower | null }> = [];
			// One rule object per stored schedule for the whole page: the engine compiles a rule (and
			// remembers its windows) per rule object, so displays sharing schedules share that work.
			const ruleFor = perDoc(ruleOf);
			const powerRuleFor = perDoc(powerRuleOf);
			// A page of displays is CPU work: let requests in between, or a bulk recompute stalls the
			// process. A caller working through many pages passes its own slice, so the budget runs
			// across pages instead of starting afresh at each.
			const slice = options.slice ?? new TimeSlice();
			for (const display of displays) {
				await slice.checkIn();
				const { schedules, power } = rulesOf(display);
				const resolution = resolve(display, schedules.map(ruleFor), overrides, at, { candidates: options.candidates ?? false });
				const scheduleName = resolution.scheduleId ? (schedules.find(s => s.id === resolution.scheduleId)?.name ?? "") : null;
				resolved.push({ display, resolution, scheduleName, power: powerAt(display, power, at, powerRuleFor) });
			}
			const scope = systemScope(tenantId);
			const layoutIds = [...new Set(resolved.flatMap(r => (r.resolution.layoutId ? [r.resolution.layoutId] : [])))];
			const layouts = new Map<string, LayoutData>();
			for (const batch of chunks(layoutIds, ID_BATCH)) {
				for (const doc of await this.db.layouts.findDocs(scope, { _id: { $in: batch } })) layouts.set(doc.id, doc);
			}
			const playlistIds = [
				...new Set([...resolved.flatMap(r => (r.resolution.playlistId ? [r.resolution.playlistId] : [])), ...[...layouts.values()].flatMap(l => l.zones.map(z => z.playlistId))])
			];
			const playlists = new Map<string, PlaylistData>();
			for (const batch of chunks(playlistIds, ID_BATCH)) {
				for (const doc of await this.db.playlists.findDocs(scope, { _id: { $in: batch } })) playlists.set(doc.id, playlistData(doc));
			}
			const backgrounds = [...layouts.values()].flatMap(l => (l.backgroundContentId ? [l.backgroundContentId] : []));
			const content = await this.contentOf(tenantId, [...[...playlists.values()].flatMap(p => p.items.map(i => i.contentId)), ...backgrounds]);
			const built: Array<{ manifest: Manifest; resolution: Resolution }> = [];
			for (const { display, resolution, scheduleName, power } of resolved) {
				await slice.checkIn();
				built.push({
					resolution,
					manifest: buildManifest({
						displayId: display.id,
						resolution,
						playlist: resolution.playlistId ? (playlists.get(resolution.playlistId) ?? null) : null,
						layout: resolution.layoutId ? (layouts.get(resolution.layoutId) ?? null) : null,
						playlists,
						power,
						scheduleName,
						overrideName: resolution.overrideId ? (overrideNames.get(resolution.overrideId) ?? null) : null,
						content,
						at
					})
				});
			}
			return built;
		},

		/** The calling display's manifest, alone or in a group: its ETag, and 304 without a body when If-None-Match names it. */
		async answerManifest(ctx: Ctx): Promise<Manifest | null> {
			// The "device" permission lets only display principals through, and they carry their display id.
			const current = await this.currentManifest(ctx, String(ctx.meta.auth?.displayId));
			ctx.meta.$responseHeaders = { ETag: current.etag, "Cache-Control": "no-cache" };
			if (etagMatches(ctx.meta.headers?.["if-none-match"], current.etag)) {
				// Conditional: the player already has this manifest (and it is not even parsed).
				ctx.meta.$statusCode = 304;
				return null;
			}
			return current.manifest();
		},

		/** The display's manifest: from the cache while its generation and validity hold, else fresh. */
		async currentManifest(ctx: Ctx, displayId: string): Promise<CurrentManifest> {
			const tenantId = tenantOf(ctx);
			const generation = await this.manifests.generation(tenantId);
			const cached = await this.manifests.read(tenantId, generation, displayId);
			if (cached) return cached;
			const at = new Date();
			const { display, overrides, ...rules } = await this.displayInputs(ctx, displayId, at);
			const [{ manifest }] = await this.manifestsFor(tenantId, [display], () => rules, overrides, at);
			await this.manifests.store(tenantId, generation, manifest);
			return currentOf(manifest);
		},

		/**
		 * A change that can affect the selected displays was stored: no cached manifest of the
		 * tenant is served any more (new generation), and the selected displays are recomputed in
		 * the background, one recomputation after another per tenant. Changes made while one waits
		 * to start join it (it reads what is stored when it starts), so a burst of changes costs
		 * one recomputation running and one waiting, not one each.
		 */
		async invalidate(tenantId: string, selector: DisplaySelector) {
			await this.manifests.bump(tenantId);
			const waiting = this.waiting.get(tenantId);
			this.waiting.set(tenantId, waiting ? mergeSelectors(waiting, selector) : selector);
			if (waiting) return;
			this.recomputing.enqueue(tenantId, () => {
				const merged = this.waiting.get(tenantId) ?? selector;
				this.waiting.delete(tenantId);
				return this.recompute(tenantId, merged);
			});
		},

		/** Recomputes the selected displays' manifests; announces those whose ETag changed. */
		async recompute(tenantId: string, selector: DisplaySelector) {
			const at = new Date();
			const scope = systemScope(tenantId);
			const generation = await this.manifests.generation(tenantId);
			const [zone, scheduleDocs, powerDocs, overrides] = await Promise.all([
				this.tenantZone(tenantId),
				this.db.schedules.findDocs(scope),
				this.db.power_schedules.findDocs(scope),
				this.overridesAfter(tenantId, at)
			]);
			const index = new ScheduleIndex(scheduleDocs);
			const powerIndex = new ScheduleIndex(powerDocs);
			// One slice for the whole recomputation: fetching a page, resolving it, building and
			// storing its manifests each run under the same budget (fresh budgets per step added up
			// to 60 ms without a yield).
			const slice = new TimeSlice();
			let afterId: string | null = null;
			do {
				const page: Result<"devices.displaysFor"> = await call(this.broker, "devices.displaysFor", { tenantId, ...selector, afterId: afterId ?? undefined, limit: DISPLAY_PAGE });
				await slice.checkIn();
				const displays = page.rows.map(d => ({ ...d, tenantTimezone: zone }));
				const manifests = await this.manifestsFor(tenantId, displays, d => ({ schedules: index.forDisplay(d), power: powerIndex.forDisplay(d) }), overrides, at, { slice });
				const changed: Record<string, string> = {};
				for (const { manifest } of manifests) {
					// With the in-process store every await here resolves at once: storing a page of
					// 1 000 manifests would hold the event loop in one stretch.
					await slice.checkIn();
					const before = await this.manifests.store(tenantId, generation, manifest);
					if (before !== manifest.etag) changed[manifest.displayId] = manifest.etag;
				}
				const displayIds = Object.keys(changed);
				if (displayIds.length) await broadcast(this.broker, "scheduling.manifest.changed", { tenantId, displayIds, etags: changed });
				afterId = page.next;
			} while (afterId);
		},

		/** The displays a playlist can reach: its schedules' and overrides' targets, the displays defaulting to it, and the same for the layouts playing it. */
		async selectorForPlaylists(tenantId: string, playlistIds: string[]): Promise<DisplaySelector> {
			if (!playlistIds.length) return {};
			const scope = systemScope(tenantId);
			const now = new Date().toISOString();
			const [schedules, overrides, layouts] = await Promise.all([
				this.db.schedules.findDocs(scope, { playlistId: { $in: playlistIds } }),
				this.db.overrides.findDocs(scope, { playlistId: { $in: playlistIds }, endsAt: { $gt: now } }),
				this.db.layouts.findDocs(scope, { playlistIds: { $in: playlistIds } })
			]);
			return mergeSelectors(usersSelector({ defaultPlaylistIds: playlistIds }, schedules, overrides), await this.selectorForLayouts(tenantId, layouts.map(l => l.id)));
		},

		/** The playlists holding a content item (or whose draft does) and the layouts showing it as background. */
		async contentUsers(tenantId: string, contentId: string) {
			const scope = systemScope(tenantId);
			const [playlists, layouts] = await Promise.all([this.db.playlists.findDocs(scope, { contentIds: contentId }), this.db.layouts.findDocs(scope, { backgroundContentId: contentId })]);
			return { playlists, layouts };
		},

		/** A content item those show changed: the displays they reach are recomputed. */
		async invalidateContentUsers(tenantId: string, { playlists, layouts }: { playlists: PlaylistDoc[]; layouts: LayoutDoc[] }) {
			if (!playlists.length && !layouts.length) return;
			const selectors = await Promise.all([this.selectorForPlaylists(tenantId, playlists.map(p => p.id)), this.selectorForLayouts(tenantId, layouts.map(l => l.id))]);
			await this.invalidate(tenantId, mergeSelectors(...selectors));
		},

		/** The displays a layout can reach: its schedules' and overrides' targets and the displays defaulting to it. */
		async selectorForLayouts(tenantId: string, layoutIds: string[]): Promise<DisplaySelector> {
			if (!layoutIds.length) return {};
			const scope = systemScope(tenantId);
			const now = new Date().toISOString();
			const [schedules, overrides] = await Promise.all([
				this.db.schedules.findDocs(scope, { layoutId: { $in: layoutIds } }),
				this.db.overrides.findDocs(scope, { layoutId: { $in: layoutIds }, endsAt: { $gt: now } })
			]);
			return usersSelector({ defaultLayoutIds: layoutIds }, schedules, overrides);
		},

		/**
		 * A deleted display or group leaves the targets and exclusions of every schedule, power
		 * schedule and override (the rules would otherwise name an id the API now refuses, so a
		 * client sending back the targets it just read got a 422).
		 */
		async forgetTarget(tenantId: string, gone: Gone) {
			const scope = systemScope(tenantId);
			for (const doc of await this.db.schedules.findDocs(scope, namingGone(gone, true))) await this.db.schedules.updateDoc(scope, doc.id, withoutGone(doc, gone, true));
			for (const doc of await this.db.power_schedules.findDocs(scope, namingGone(gone, true))) await this.db.power_schedules.updateDoc(scope, doc.id, withoutGone(doc, gone, true));
			for (const doc of await this.db.overrides.findDocs(scope, namingGone(gone, false))) await this.db.overrides.updateDoc(scope, doc.id, withoutGone(doc, gone, false));
		},

		/** Resolves once every queued recomputation has finished (shutdown and tests). */
		async idle() {
			await this.recomputing.idle();
		}
	},

	created() {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.manifests = new ManifestCache(this.kv);
		this.waiting = new Map();
		const recomputations = opsCounter(this.broker.metrics, OPS_METRICS.manifestRecomputations);
		const lag = opsHistogram(this.broker.metrics, OPS_METRICS.manifestRecomputeLag);
		this.recomputing = new RecomputeQueue(
			(tenantId, err) => this.logger.error(`Recomputing manifests of tenant ${tenantId} failed`, err),
			({ ok, lagMs }) => {
				recomputations.increment({ outcome: ok ? "succeeded" : "failed" });
				// A failed one announced nothing: its time says nothing about how fresh manifests are.
				if (ok) lag.observe(lagMs / 1000);
			}
		);
	},

	async stopped() {
		await this.idle();
	}
};

function chunks<T>(list: T[], size: number): T[][] {
	const out: T[][] = [];
	for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
	return out;
}

export default SchedulingService;
