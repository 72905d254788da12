/**
 * Devices: displays and their groups, pairing by code, device tokens (minted by auth),
 * heartbeats and presence, online/offline detection, and remote commands.
 *
 * The heartbeat is the hot path: it verifies nothing beyond the token (the gateway did, from
 * the cache), writes presence to the key/value store, queues metrics on a durable channel and
 * reads the manifest etag and pending commands from the cache. It touches no document; state
 * changes it causes (came online, commands delivered) are written by event handlers after.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, textSearch, UNSCOPED, type DbMethods, type PublicDoc, type Query } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { HEARTBEAT_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { giveBack, takeAttempt, THROTTLES } from "../shared/throttle";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { planLimit, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import type { Principal } from "../shared/rbac";
import { NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import { assertTimezone } from "../shared/time";
import { hashToken, randomToken, safeEqual } from "./auth/secrets";
import { COMMAND_TYPES, normalizePairingCode, pairingCode, type CommandType } from "./devices/pairing";
import { manifestEtagKey } from "./scheduling/manifest";
import type { TenantDeleted, TenantView } from "./tenants.service";

export { HEARTBEAT_CHANNEL };

const PAIRING_TTL_MS = 15 * 60_000;
const COMMAND_TTL_MS = 24 * 3600_000;
const PRESENCE_TTL_MS = 7 * 24 * 3600_000;
const MAX_TAGS = 50;
const MAX_GROUPS = 50;

type Collections = "displays" | "display_groups" | "pairings" | "commands" | "devices_usage";

type Meta = RequestMeta;

export interface Presence {
	lastSeenAt: string;
	metrics: Record<string, number> | null;
	appVersion: string | null;
	currentContentId: string | null;
	uptimeSec: number | null;
}

interface PendingCommand {
	id: string;
	type: CommandType;
	createdAt: string;
	expiresAt: string;
}

export interface DisplaySettings extends ServiceSettingSchema {
	heartbeatIntervalSec: number;
	sweepIntervalMs: number;
}

type DevicesThis = DbMethods<Collections> & {
	settings: DisplaySettings;
	config: Config;
	kv: KeyValueStore;
	/** Displays per tenant, grown atomically against the plan's limit. */
	displayQuota: UsageCounter;
	sweep: PeriodicJob | null;
	broker: Context["broker"];
	logger: { info(...args: unknown[]): void; warn(...args: unknown[]): void; error(...args: unknown[]): void };
	displayView(doc: PublicDoc, presence?: Presence | null, status?: string | null): Record<string, unknown>;
	withPresence(docs: PublicDoc[]): Promise<Record<string, unknown>[]>;
	device(ctx: Context<unknown, Meta>): { tenantId: string; displayId: string };
	assertGroups(ctx: Context, groupIds: string[] | undefined): Promise<void>;
	pendingCommands(displayId: string): Promise<PendingCommand[]>;
	setPendingCommands(displayId: string, commands: PendingCommand[]): Promise<void>;
	forgetDisplay(tenantId: string, displayId: string): Promise<void>;
	sweepOnce(): Promise<void>;
	commandView(doc: PublicDoc): Record<string, unknown>;
};

const key = {
	presence: (displayId: string) => `presence:${displayId}`,
	lastSeen: (displayId: string) => `last-seen:${displayId}`,
	status: (displayId: string) => `display-status:${displayId}`,
	commands: (displayId: string) => `commands:${displayId}`,
	manifestEtag: manifestEtagKey
};

const TAGS_RULE = { type: "array", items: { type: "string", trim: true, min: 1, max: 64 }, max: MAX_TAGS, optional: true } as const;
const GROUP_IDS_RULE = { type: "array", items: ID_RULE, max: MAX_GROUPS, optional: true } as const;
const TIMEZONE_RULE = { type: "string", max: 64, optional: true } as const;
const METRIC = { type: "number", min: 0, max: 100, optional: true } as const;

/** What scheduling needs of a display to resolve what it plays. */
function targetingView(doc: PublicDoc) {
	return {
		id: doc.id,
		timezone: (doc.timezone as string | null) ?? null,
		tags: (doc.tags as string[]) ?? [],
		groupIds: (doc.groupIds as string[]) ?? [],
		defaultPlaylistId: (doc.defaultPlaylistId as string | null) ?? null
	};
}

export type DisplayTargeting = ReturnType<typeof targetingView>;

export interface DisplaySelector {
	displayIds?: string[];
	groupIds?: string[];
	tags?: string[];
	defaultPlaylistIds?: string[];
	all?: boolean;
}

function groupView(doc: PublicDoc) {
	return { id: doc.id, name: doc.name, description: doc.description ?? null, createdAt: doc.createdAt, updatedAt: doc.updatedAt };
}


const DevicesService: ServiceSchema<DisplaySettings, DevicesThis> = {
	name: "devices",
	settings: {
		rest: "/",
		heartbeatIntervalSec: 30,
		sweepIntervalMs: 10_000
	},
	mixins: [
		DbMixin({
			// groupIds, tags and defaultPlaylistId: scheduling's displaysFor (NeDB answers an $or by a scan anyway).
			displays: { indexes: ["status", "name", "tags"], selectiveIndexes: ["groupIds", "defaultPlaylistId"] },
			display_groups: { indexes: ["name"] },
			pairings: { tenantScoped: false, uniqueIndexes: ["codeHash"], selectiveIndexes: ["displayId"] },
			commands: { indexes: ["displayId", "status"] },
			devices_usage: USAGE_COLLECTION
		})
	],

	actions: {
		// ---- pairing (the screen's side) ------------------------------------------------------

		requestPairing: {
			rest: "POST /device/pairing",
			permission: "public",
			summary: "A screen asks for a pairing code to show (no token; limited per address)",
			successStatus: 201,
			params: {
				$$strict: "remove",
				hardwareId: { type: "string", max: 128, optional: true },
				model: { type: "string", max: 128, optional: true },
				resolution: { type: "string", max: 32, optional: true, pattern: /^\d{2,5}x\d{2,5}$/ }
			},
			async handler(this: DevicesThis, ctx: Context<{ hardwareId?: string; model?: string; resolution?: string }, Meta>) {
				await takeAttempt(this.kv, THROTTLES.pairingRequest(ctx.meta.ip));
				const pollSecret = randomToken("mps_");
				const expiresAt = new Date(Date.now() + PAIRING_TTL_MS).toISOString();
				for (let attempt = 0; attempt < 5; attempt++) {
					const code = pairingCode();
					// A code is unique among live requests; an expired holder gives it up.
					await this.db.pairings.removeDocs(UNSCOPED, { codeHash: hashToken(code), expiresAt: { $lt: new Date().toISOString() } });
					try {
						const pairing = await this.db.pairings.insertDoc(UNSCOPED, {
							codeHash: hashToken(code),
							pollSecretHash: hashToken(pollSecret),
							status: "pending",
							expiresAt,
							hardwareId: ctx.params.hardwareId ?? null,
							model: ctx.params.model ?? null,
							resolution: ctx.params.resolution ?? null
						});
						ctx.meta.$statusCode = 201;
						ctx.meta.$location = `/api/v1/device/pairing/${pairing.id}`;
						return { pairingId: pairing.id, code, pollSecret, expiresAt };
					} catch (err) {
						if ((err as { type?: string }).type !== "CONFLICT") throw err;
					}
				}
				throw Errors.unavailable("No pairing code available, retry");
			}
		},

		pairingStatus: {
			rest: "GET /device/pairing/:pairingId",
			permission: "public",
			summary: "The screen polls with X-Pairing-Secret; once paired, the device token is handed out exactly once",
			params: { $$strict: "remove", pairingId: ID_RULE },
			async handler(this: DevicesThis, ctx: Context<{ pairingId: string }, Meta>) {
				const secret = ctx.meta.headers?.["x-pairing-secret"] ?? "";
				const pairing = await this.db.pairings.findDoc(UNSCOPED, { _id: ctx.params.pairingId });
				// Unknown id and wrong secret look alike.
				if (!pairing || !secret || !safeEqual(hashToken(secret), String(pairing.pollSecretHash))) {
					throw Errors.notFound("Pairing", ctx.params.pairingId);
				}
				if (pairing.status === "pending") {
					if (String(pairing.expiresAt) <= new Date().toISOString()) throw Errors.notFound("Pairing", ctx.params.pairingId);
					return { status: "pending" };
				}
				const claimed = await this.db.pairings.updateWhere(UNSCOPED, { _id: pairing.id, status: "paired", tokenDeliveredAt: { $exists: false } }, { tokenDeliveredAt: new Date().toISOString() });
				if (claimed !== 1) throw Errors.notFound("Pairing", ctx.params.pairingId);
				// The request has done its work: nothing of it needs to stay.
				await this.db.pairings.removeDocs(UNSCOPED, { _id: pairing.id });
				const owner = { tenantId: String(pairing.pairedTenantId) };
				const displayId = String(pairing.displayId);
				// A display deleted before its screen collected the token gets none.
				if (!(await this.db.displays.findDoc(owner, { _id: displayId }))) throw Errors.notFound("Pairing", ctx.params.pairingId);
				const { deviceToken } = (await ctx.call("auth.mintDeviceToken", { ...owner, displayId })) as { deviceToken: string };
				// …nor one deleted while it was being minted (the deletion's revocation may have run first).
				if (!(await this.db.displays.findDoc(owner, { _id: displayId }))) {
					await ctx.call("auth.revokeDeviceToken", { ...owner, displayId });
					throw Errors.notFound("Pairing", ctx.params.pairingId);
				}
				return { status: "paired", displayId: pairing.displayId, deviceToken, heartbeatIntervalSec: this.settings.heartbeatIntervalSec };
			}
		},

		// ---- displays (the CMS's side) --------------------------------------------------------

		pair: {
			rest: "POST /displays/pair",
			permission: "displays.manage",
			summary: "Pair the screen showing `code` as a new display of this tenant",
			successStatus: 201,
			params: { $$strict: "remove", code: { type: "string", min: 6, max: 16 }, name: NAME_RULE, timezone: TIMEZONE_RULE, tags: TAGS_RULE, groupIds: GROUP_IDS_RULE },
			async handler(this: DevicesThis, ctx: Context<{ code: string; name: string; timezone?: string; tags?: string[]; groupIds?: string[] }, Meta>) {
				const tenantId = this.db.displays.tenantOf(ctx);
				assertTimezone(ctx.params.timezone);
				await this.assertGroups(ctx, ctx.params.groupIds);
				// Guesses are counted and the display is reserved before the code is looked at: a guesser
				// is stopped before the lookup, and a full plan answers 402 for any code, so the answer
				// never tells a guesser that a code is live.
				const guess = THROTTLES.pairingCode(tenantId);
				await takeAttempt(this.kv, guess);
				try {
					await this.displayQuota.reserve(tenantId, 1, await planLimit(ctx, tenantId, "displays", this.config.defaultPlan));
				} catch (err) {
					// Refused before any code was looked at: no guess was made.
					await giveBack(this.kv, guess);
					throw err;
				}
				let display: PublicDoc;
				try {
					const code = normalizePairingCode(ctx.params.code);
					const pairing = code ? await this.db.pairings.findDoc(UNSCOPED, { codeHash: hashToken(code), status: "pending" }) : null;
					if (!pairing || String(pairing.expiresAt) <= new Date().toISOString()) throw Errors.notFound("Pairing code");
					// A live code is no wrong guess.
					await giveBack(this.kv, guess);
					display = await this.db.displays.insertDoc(ctx, {
						name: ctx.params.name,
						status: "pending",
						timezone: ctx.params.timezone ?? null,
						tags: [...new Set(ctx.params.tags ?? [])],
						groupIds: [...new Set(ctx.params.groupIds ?? [])],
						defaultPlaylistId: null,
						hardwareId: pairing.hardwareId ?? null,
						model: pairing.model ?? null,
						resolution: pairing.resolution ?? null
					});
					// One admin wins a code, even when two enter it at once.
					const claimed = await this.db.pairings.updateWhere(UNSCOPED, { _id: pairing.id, status: "pending" }, { status: "paired", pairedTenantId: tenantId, displayId: display.id });
					if (claimed !== 1) {
						await this.db.displays.removeDocs(ctx, { _id: display.id });
						throw Errors.notFound("Pairing code");
					}
				} catch (err) {
					await this.displayQuota.release(tenantId, 1);
					throw err;
				}
				await audit(ctx, { action: "display.paired", target: display.id, data: { name: ctx.params.name } });
				ctx.emit("devices.display.paired", { tenantId, displayId: display.id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/displays/${display.id}`;
				return this.displayView(display);
			}
		},

		list: {
			rest: "GET /displays",
			permission: "tenant.read",
			summary: "Displays, filtered by status, tag, group or free text",
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				status: { type: "enum", values: ["pending", "online", "offline"], optional: true },
				tag: { type: "string", max: 64, optional: true },
				groupId: { ...ID_RULE, optional: true },
				q: { type: "string", max: 100, optional: true }
			},
			async handler(this: DevicesThis, ctx: Context<{ page: number; pageSize: number; status?: string; tag?: string; groupId?: string; q?: string }, Meta>) {
				const query: Query = {};
				if (ctx.params.status) query.status = ctx.params.status;
				if (ctx.params.tag) query.tags = ctx.params.tag;
				if (ctx.params.groupId) query.groupIds = ctx.params.groupId;
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name", "tags"]));
				const page = await this.db.displays.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize, ["name", "_id"]);
				return { ...page, rows: await this.withPresence(page.rows) };
			}
		},

		get: {
			rest: "GET /displays/:id",
			permission: "tenant.read",
			summary: "One display with its live presence",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: DevicesThis, ctx: Context<{ id: string }, Meta>) {
				const [display] = await this.withPresence([await this.db.displays.getDoc(ctx, ctx.params.id, "Display")]);
				return display;
			}
		},

		update: {
			rest: "PATCH /displays/:id",
			permission: "displays.manage",
			summary: "Rename a display or change its timezone, tags, groups or default playlist",
			params: {
				$$strict: "remove",
				id: ID_RULE,
				name: { ...NAME_RULE, optional: true },
				timezone: { type: "string", max: 64, optional: true, nullable: true },
				tags: TAGS_RULE,
				groupIds: GROUP_IDS_RULE,
				defaultPlaylistId: { ...ID_RULE, optional: true, nullable: true }
			},
			async handler(this: DevicesThis, ctx: Context<{ id: string; name?: string; timezone?: string | null; tags?: string[]; groupIds?: string[]; defaultPlaylistId?: string | null }, Meta>) {
				const { id, ...changes } = ctx.params;
				await this.db.displays.getDoc(ctx, id, "Display");
				assertTimezone(changes.timezone);
				await this.assertGroups(ctx, changes.groupIds);
				if (changes.defaultPlaylistId && ctx.broker.registry.getActionEndpoints("scheduling.playlistExists")?.hasAvailable()) {
					const exists = await ctx.call("scheduling.playlistExists", { id: changes.defaultPlaylistId });
					if (!exists) throw Errors.validation([{ field: "defaultPlaylistId", message: "is not a playlist of this tenant", type: "exists" }]);
				}
				const set: Record<string, unknown> = {};
				for (const [k, v] of Object.entries(changes)) if (v !== undefined) set[k] = k === "tags" || k === "groupIds" ? [...new Set(v as string[])] : v;
				const updated = await this.db.displays.updateDoc(ctx, id, set, "Display");
				const tenantId = this.db.displays.tenantOf(ctx);
				await audit(ctx, { action: "display.updated", target: id, data: { fields: Object.keys(set) } });
				ctx.broadcast("devices.display.updated", { tenantId, displayIds: [id], fields: Object.keys(set) });
				const [view] = await this.withPresence([updated]);
				return view;
			}
		},

		remove: {
			rest: "DELETE /displays/:id",
			permission: "displays.manage",
			summary: "Delete a display; its device token stops working at once",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: DevicesThis, ctx: Context<{ id: string }, Meta>) {
				const display = await this.db.displays.removeDoc(ctx, ctx.params.id, "Display");
				const tenantId = String(display.tenantId);
				await this.displayQuota.release(tenantId, 1);
				// A pairing whose screen has not collected its token yet never will.
				await this.db.pairings.removeDocs(UNSCOPED, { displayId: display.id });
				await ctx.call("auth.revokeDeviceToken", { tenantId, displayId: display.id });
				await this.db.commands.removeDocs(ctx, { displayId: display.id });
				await this.forgetDisplay(tenantId, display.id);
				await audit(ctx, { action: "display.deleted", target: display.id });
				ctx.broadcast("devices.display.deleted", { tenantId, displayId: display.id });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- groups ----------------------------------------------------------------------------

		createGroup: {
			rest: "POST /display-groups",
			permission: "displays.manage",
			summary: "Create a display group",
			successStatus: 201,
			params: { $$strict: "remove", name: NAME_RULE, description: { type: "string", max: 1000, optional: true } },
			async handler(this: DevicesThis, ctx: Context<{ name: string; description?: string }, Meta>) {
				const group = await this.db.display_groups.insertDoc(ctx, { name: ctx.params.name, description: ctx.params.description ?? null });
				await audit(ctx, { action: "displayGroup.created", target: group.id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/display-groups/${group.id}`;
				return groupView(group);
			}
		},

		listGroups: {
			rest: "GET /display-groups",
			permission: "tenant.read",
			summary: "Display groups",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(this: DevicesThis, ctx: Context<{ page: number; pageSize: number }, Meta>) {
				const page = await this.db.display_groups.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize, ["name", "_id"]);
				return { ...page, rows: page.rows.map(groupView) };
			}
		},

		getGroup: {
			rest: "GET /display-groups/:id",
			permission: "tenant.read",
			summary: "One display group",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: DevicesThis, ctx: Context<{ id: string }, Meta>) {
				return groupView(await this.db.display_groups.getDoc(ctx, ctx.params.id, "Display group"));
			}
		},

		updateGroup: {
			rest: "PATCH /display-groups/:id",
			permission: "displays.manage",
			summary: "Rename or describe a display group",
			params: { $$strict: "remove", id: ID_RULE, name: { ...NAME_RULE, optional: true }, description: { type: "string", max: 1000, optional: true, nullable: true } },
			async handler(this: DevicesThis, ctx: Context<{ id: string; name?: string; description?: string | null }, Meta>) {
				const { id, ...changes } = ctx.params;
				const set = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
				const group = await this.db.display_groups.updateDoc(ctx, id, set, "Display group");
				await audit(ctx, { action: "displayGroup.updated", target: id });
				return groupView(group);
			}
		},

		removeGroup: {
			rest: "DELETE /display-groups/:id",
			permission: "displays.manage",
			summary: "Delete a display group; its displays leave it",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: DevicesThis, ctx: Context<{ id: string }, Meta>) {
				const group = await this.db.display_groups.removeDoc(ctx, ctx.params.id, "Display group");
				const members = await this.db.displays.findDocs(ctx, { groupIds: group.id });
				for (const d of members) {
					await this.db.displays.updateDoc(ctx, d.id, { groupIds: (d.groupIds as string[]).filter(g => g !== group.id) });
				}
				const tenantId = this.db.displays.tenantOf(ctx);
				await audit(ctx, { action: "displayGroup.deleted", target: group.id, data: { displays: members.length } });
				if (members.length) ctx.broadcast("devices.display.updated", { tenantId, displayIds: members.map(d => d.id), fields: ["groupIds"] });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- commands --------------------------------------------------------------------------

		sendCommand: {
			rest: "POST /displays/:id/commands",
			permission: "displays.manage",
			summary: "Queue a command; it reaches the screen on its next heartbeat and its live stream",
			successStatus: 202,
			params: { $$strict: "remove", id: ID_RULE, type: { type: "enum", values: [...COMMAND_TYPES] } },
			async handler(this: DevicesThis, ctx: Context<{ id: string; type: CommandType }, Meta>) {
				const display = await this.db.displays.getDoc(ctx, ctx.params.id, "Display");
				const now = Date.now();
				const command = await this.db.commands.insertDoc(ctx, {
					displayId: display.id,
					type: ctx.params.type,
					status: "pending",
					expiresAt: new Date(now + COMMAND_TTL_MS).toISOString(),
					deliveredAt: null,
					acknowledgedAt: null,
					result: null
				});
				const pending = await this.pendingCommands(display.id);
				await this.setPendingCommands(display.id, [...pending, { id: command.id, type: ctx.params.type, createdAt: String(command.createdAt), expiresAt: String(command.expiresAt) }]);
				const tenantId = String(display.tenantId);
				await audit(ctx, { action: "display.command.sent", target: display.id, data: { type: ctx.params.type, commandId: command.id } });
				ctx.broadcast("devices.command.created", { tenantId, displayId: display.id, command: { id: command.id, type: ctx.params.type, createdAt: command.createdAt } });
				ctx.meta.$statusCode = 202;
				return { id: command.id, type: ctx.params.type, status: "pending", createdAt: command.createdAt };
			}
		},

		commands: {
			rest: "GET /displays/:id/commands",
			permission: "tenant.read",
			summary: "Commands of a display, newest first",
			params: { $$strict: "remove", id: ID_RULE, ...PAGE_PARAMS },
			async handler(this: DevicesThis, ctx: Context<{ id: string; page: number; pageSize: number }, Meta>) {
				await this.db.displays.getDoc(ctx, ctx.params.id, "Display");
				const page = await this.db.commands.pageDocs(ctx, { displayId: ctx.params.id }, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(c => this.commandView(c)) };
			}
		},

		// ---- the device API ------------------------------------------------------------------

		heartbeat: {
			rest: "POST /device/heartbeat",
			permission: "device",
			summary: "Presence and metrics; answers the manifest etag and pending commands",
			params: {
				$$strict: true,
				metrics: {
					type: "object",
					optional: true,
					strict: true,
					props: { cpu: METRIC, memory: METRIC, disk: METRIC, temperature: { type: "number", min: -50, max: 150, optional: true } }
				},
				appVersion: { type: "string", max: 64, optional: true },
				currentContentId: { type: "string", max: 64, optional: true },
				uptimeSec: { type: "number", integer: true, min: 0, max: 10 * 365 * 24 * 3600, optional: true }
			},
			async handler(this: DevicesThis, ctx: Context<{ metrics?: Record<string, number>; appVersion?: string; currentContentId?: string; uptimeSec?: number }, Meta>) {
				const { tenantId, displayId } = this.device(ctx);
				const now = new Date();
				// The stamp first, then the status: the sweep flips a display offline only while its
				// stamp is stale, atomically, so a heartbeat can never be lost between the two.
				await this.kv.set(key.lastSeen(displayId), String(now.getTime()), PRESENCE_TTL_MS);
				const [previous, etag, pending, known] = await Promise.all([
					this.kv.swap(key.status(displayId), "online", PRESENCE_TTL_MS),
					this.kv.get(key.manifestEtag(displayId)),
					this.pendingCommands(displayId),
					this.kv.get(key.presence(displayId))
				]);
				// What a heartbeat does not send, it does not change: the last known values stay.
				const last = known ? (JSON.parse(known) as Presence) : null;
				const presence: Presence = {
					lastSeenAt: now.toISOString(),
					metrics: ctx.params.metrics ?? last?.metrics ?? null,
					appVersion: ctx.params.appVersion ?? last?.appVersion ?? null,
					currentContentId: ctx.params.currentContentId ?? last?.currentContentId ?? null,
					uptimeSec: ctx.params.uptimeSec ?? last?.uptimeSec ?? null
				};
				await this.kv.set(key.presence(displayId), JSON.stringify(presence), PRESENCE_TTL_MS);
				const broker = ctx.broker as unknown as { sendToChannel(c: string, p: unknown): Promise<void> };
				await broker.sendToChannel(HEARTBEAT_CHANNEL, { tenantId, displayId, ts: presence.lastSeenAt, ...presence });
				if (previous !== "online") ctx.emit("devices.display.cameOnline", { tenantId, displayId, at: presence.lastSeenAt });

				const live = pending.filter(c => c.expiresAt > presence.lastSeenAt);
				const undelivered = live.filter(c => !(c as PendingCommand & { delivered?: boolean }).delivered);
				if (undelivered.length) ctx.emit("devices.commands.delivered", { tenantId, displayId, ids: undelivered.map(c => c.id), at: presence.lastSeenAt });
				return {
					serverTime: presence.lastSeenAt,
					manifestEtag: etag,
					heartbeatIntervalSec: this.settings.heartbeatIntervalSec,
					commands: live.map(({ id, type, createdAt }) => ({ id, type, createdAt }))
				};
			}
		},

		ackCommand: {
			rest: "POST /device/commands/:id/ack",
			permission: "device",
			summary: "The screen confirms it carried out a command",
			params: { $$strict: "remove", id: ID_RULE, result: { type: "string", max: 2000, optional: true } },
			async handler(this: DevicesThis, ctx: Context<{ id: string; result?: string }, Meta>) {
				const { displayId } = this.device(ctx);
				const command = await this.db.commands.findDoc(ctx, { _id: ctx.params.id, displayId });
				if (!command) throw Errors.notFound("Command", ctx.params.id);
				if (command.status !== "acknowledged") {
					await this.db.commands.updateDoc(ctx, command.id, { status: "acknowledged", acknowledgedAt: new Date().toISOString(), result: ctx.params.result ?? null });
				}
				await this.setPendingCommands(displayId, (await this.pendingCommands(displayId)).filter(c => c.id !== command.id));
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- for other services ------------------------------------------------------------

		/** A display of the caller's tenant with what targeting needs (scheduling). */
		targeting: {
			visibility: "public",
			params: { id: "string" },
			async handler(this: DevicesThis, ctx: Context<{ id: string }>) {
				return targetingView(await this.db.displays.getDoc(ctx, ctx.params.id, "Display"));
			}
		},

		/**
		 * Targeting of a tenant's displays named by a selector (ids ∪ members of groups ∪ carriers
		 * of tags ∪ displays defaulting to a playlist, or all), a page at a time in id order.
		 */
		displaysFor: {
			visibility: "public",
			params: {
				tenantId: "string",
				displayIds: { type: "array", items: "string", optional: true },
				groupIds: { type: "array", items: "string", optional: true },
				tags: { type: "array", items: "string", optional: true },
				defaultPlaylistIds: { type: "array", items: "string", optional: true },
				all: { type: "boolean", optional: true },
				afterId: { type: "string", optional: true },
				limit: { type: "number", integer: true, min: 1, max: 2000, default: 1000 }
			},
			async handler(this: DevicesThis, ctx: Context<DisplaySelector & { tenantId: string; afterId?: string; limit: number }>) {
				const { tenantId, afterId, limit } = ctx.params;
				const branches: Query[] = [];
				if (ctx.params.displayIds?.length) branches.push({ _id: { $in: ctx.params.displayIds } });
				if (ctx.params.groupIds?.length) branches.push({ groupIds: { $in: ctx.params.groupIds } });
				if (ctx.params.tags?.length) branches.push({ tags: { $in: ctx.params.tags } });
				if (ctx.params.defaultPlaylistIds?.length) branches.push({ defaultPlaylistId: { $in: ctx.params.defaultPlaylistIds } });
				if (!ctx.params.all && branches.length === 0) return { rows: [], next: null };
				const query: Query = ctx.params.all ? {} : { $or: branches };
				if (afterId) query._id = { $gt: afterId };
				const docs = await this.db.displays.findDocs({ tenantId }, query, { sort: ["_id"], limit });
				return { rows: docs.map(targetingView), next: docs.length === limit ? docs[docs.length - 1].id : null };
			}
		},

		/** Displays defaulting to a deleted playlist fall back to nothing (scheduling, on a forced delete). */
		clearDefaultPlaylist: {
			visibility: "public",
			params: { tenantId: "string", playlistId: "string" },
			async handler(this: DevicesThis, ctx: Context<{ tenantId: string; playlistId: string }>) {
				const { tenantId, playlistId } = ctx.params;
				const displays = await this.db.displays.findDocs({ tenantId }, { defaultPlaylistId: playlistId });
				if (displays.length === 0) return 0;
				await this.db.displays.updateWhere({ tenantId }, { defaultPlaylistId: playlistId }, { defaultPlaylistId: null });
				ctx.broadcast("devices.display.updated", { tenantId, displayIds: displays.map(d => d.id), fields: ["defaultPlaylistId"] });
				return displays.length;
			}
		},

		/** Which of these display and group ids the caller's tenant does not have (schedule targets). */
		unknownTargets: {
			visibility: "public",
			params: { displayIds: { type: "array", items: "string", max: 1000 }, groupIds: { type: "array", items: "string", max: 1000 } },
			async handler(this: DevicesThis, ctx: Context<{ displayIds: string[]; groupIds: string[] }>) {
				const { displayIds, groupIds } = ctx.params;
				const [displays, groups] = await Promise.all([
					displayIds.length ? this.db.displays.findDocs(ctx, { _id: { $in: displayIds } }) : [],
					groupIds.length ? this.db.display_groups.findDocs(ctx, { _id: { $in: groupIds } }) : []
				]);
				const knownDisplays = new Set(displays.map(d => d.id));
				const knownGroups = new Set(groups.map(g => g.id));
				return { displayIds: displayIds.filter(id => !knownDisplays.has(id)), groupIds: groupIds.filter(id => !knownGroups.has(id)) };
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: DevicesThis, ctx: Context<{ tenantId: string }>) {
				const scope = { tenantId: ctx.params.tenantId };
				const [displays, groups, commands] = await Promise.all([
					this.db.displays.findDocs(scope),
					this.db.display_groups.findDocs(scope),
					this.db.commands.findDocs(scope)
				]);
				return { displays: displays.map(d => this.displayView(d)), groups, commands: commands.map(c => this.commandView(c)) };
			}
		}
	},

	events: {
		/** Off the hot path: the heartbeat only flipped the cached status. */
		async "devices.display.cameOnline"(this: DevicesThis, ctx: Context<{ tenantId: string; displayId: string; at: string }>) {
			const { tenantId, displayId, at } = ctx.params;
			await this.db.displays.updateWhere({ tenantId }, { _id: displayId }, { status: "online", lastSeenAt: at });
		},

		async "devices.commands.delivered"(this: DevicesThis, ctx: Context<{ tenantId: string; displayId: string; ids: string[]; at: string }>) {
			const { tenantId, displayId, ids, at } = ctx.params;
			await this.db.commands.updateWhere({ tenantId }, { _id: { $in: ids }, status: "pending" }, { status: "delivered", deliveredAt: at });
			const pending = await this.pendingCommands(displayId);
			await this.setPendingCommands(displayId, pending.map(c => (ids.includes(c.id) ? { ...c, delivered: true } : c)));
		}
	},

	channels: {
		"tenants.tenant.deleted": {
			group: "devices",
			async handler(this: DevicesThis, ctx: Context<unknown>) {
				const { tenantId } = ctx.params as TenantDeleted;
				const displays = await this.db.displays.findDocs({ tenantId });
				for (const d of displays) await this.forgetDisplay(tenantId, d.id);
				await Promise.all([
					this.db.displays.removeTenantDocs(tenantId),
					this.db.display_groups.removeTenantDocs(tenantId),
					this.db.commands.removeTenantDocs(tenantId),
					this.db.pairings.removeDocs(UNSCOPED, { pairedTenantId: tenantId }),
					this.db.devices_usage.removeTenantDocs(tenantId)
				]);
				for (const d of displays) ctx.broadcast("devices.display.deleted", { tenantId, displayId: d.id });
			}
		}
	},

	methods: {
		displayView(doc: PublicDoc, presence: Presence | null = null, status: string | null = null) {
			return {
				id: doc.id,
				name: doc.name,
				status: status ?? doc.status ?? "pending",
				timezone: doc.timezone ?? null,
				tags: doc.tags ?? [],
				groupIds: doc.groupIds ?? [],
				defaultPlaylistId: doc.defaultPlaylistId ?? null,
				lastSeenAt: presence?.lastSeenAt ?? doc.lastSeenAt ?? null,
				metrics: presence?.metrics ?? null,
				appVersion: presence?.appVersion ?? null,
				currentContentId: presence?.currentContentId ?? null,
				model: doc.model ?? null,
				resolution: doc.resolution ?? null,
				createdAt: doc.createdAt,
				updatedAt: doc.updatedAt
			};
		},

		/** Documents plus their live presence from the cache. */
		async withPresence(this: DevicesThis, docs: PublicDoc[]) {
			return Promise.all(
				docs.map(async doc => {
					const [presence, status] = await Promise.all([this.kv.get(key.presence(doc.id)), this.kv.get(key.status(doc.id))]);
					return this.displayView(doc, presence ? (JSON.parse(presence) as Presence) : null, status);
				})
			);
		},

		device(ctx: Context<unknown, Meta>) {
			const auth = ctx.meta.auth as Principal | null;
			if (auth?.kind !== "device" || !auth.displayId) throw Errors.unauthorized();
			return { tenantId: auth.tenantId, displayId: auth.displayId };
		},

		async assertGroups(this: DevicesThis, ctx: Context, groupIds: string[] | undefined) {
			if (!groupIds?.length) return;
			const unique = [...new Set(groupIds)];
			const found = await this.db.display_groups.countDocs(ctx, { _id: { $in: unique } });
			if (found !== unique.length) throw Errors.validation([{ field: "groupIds", message: "names a group that does not exist", type: "exists" }]);
		},

		async pendingCommands(this: DevicesThis, displayId: string): Promise<PendingCommand[]> {
			const raw = await this.kv.get(key.commands(displayId));
			return raw ? (JSON.parse(raw) as PendingCommand[]) : [];
		},

		async setPendingCommands(this: DevicesThis, displayId: string, commands: PendingCommand[]) {
			if (commands.length === 0) await this.kv.del(key.commands(displayId));
			else await this.kv.set(key.commands(displayId), JSON.stringify(commands), COMMAND_TTL_MS);
		},

		async forgetDisplay(this: DevicesThis, _tenantId: string, displayId: string) {
			await Promise.all([this.kv.del(key.presence(displayId)), this.kv.del(key.lastSeen(displayId)), this.kv.del(key.status(displayId)), this.kv.del(key.commands(displayId)), this.kv.del(key.manifestEtag(displayId))]);
		},

		/**
		 * The leader's sweep: displays not seen for their tenant's `offlineAfterSec` go offline
		 * (once per transition, whichever replica sweeps), and old commands expire.
		 */
		async sweepOnce(this: DevicesThis) {
			const now = new Date();
			const online = await this.db.displays.findAcrossTenants({ status: "online" });
			const thresholds = new Map<string, number>();
			for (const display of online) {
				const tenantId = String(display.tenantId);
				if (!thresholds.has(tenantId)) {
					const tenant = (await this.broker.call("tenants.find", { tenantId })) as TenantView | null;
					thresholds.set(tenantId, (tenant?.settings.offlineAfterSec ?? 90) * 1000);
				}
				const cutoff = now.getTime() - (thresholds.get(tenantId) as number);
				const flip = await this.kv.swapIfStale(key.status(display.id), "offline", key.lastSeen(display.id), cutoff, PRESENCE_TTL_MS);
				if (!flip.swapped || flip.previous === "offline") continue;
				const raw = await this.kv.get(key.presence(display.id));
				await this.db.displays.updateWhere({ tenantId }, { _id: display.id }, { status: "offline" });
				this.broker.emit("devices.display.wentOffline", { tenantId, displayId: display.id, lastSeenAt: raw ? (JSON.parse(raw) as Presence).lastSeenAt : null, at: now.toISOString() });
			}

			const stale = await this.db.commands.findAcrossTenants({ status: { $in: ["pending", "delivered"] }, expiresAt: { $lte: now.toISOString() } });
			for (const command of stale) {
				await this.db.commands.updateWhere({ tenantId: String(command.tenantId) }, { _id: command.id }, { status: "expired" });
				const displayId = String(command.displayId);
				await this.setPendingCommands(displayId, (await this.pendingCommands(displayId)).filter(c => c.id !== command.id));
			}
		},

		commandView(doc: PublicDoc) {
			const expired = doc.status !== "acknowledged" && String(doc.expiresAt) <= new Date().toISOString();
			return {
				id: doc.id,
				type: doc.type,
				status: expired ? "expired" : doc.status,
				createdAt: doc.createdAt,
				deliveredAt: doc.deliveredAt ?? null,
				acknowledgedAt: doc.acknowledgedAt ?? null,
				expiresAt: doc.expiresAt,
				result: doc.result ?? null
			};
		}
	},

	created(this: DevicesThis) {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.displayQuota = new UsageCounter(this.db.devices_usage, { resource: "displays", measure: tenantId => this.db.displays.countDocs({ tenantId }) });
		this.sweep = null;
	},

	async started(this: DevicesThis) {
		this.sweep = startPeriodicJob({
			name: "devices-presence-sweep",
			intervalMs: this.settings.sweepIntervalMs,
			kv: this.kv,
			owner: `${this.broker.nodeID}:${newId()}`,
			run: () => this.sweepOnce(),
			onError: err => this.logger.error("Presence sweep failed", err)
		});
	},

	async stopped(this: DevicesThis) {
		await this.sweep?.stop();
	}
};

export default DevicesService;
