/**
 * Devices: displays and their groups, pairing by code, device tokens (minted by auth),
 * heartbeats and presence, online/offline detection, and remote commands.
 *
 * The heartbeat is the hot path: it verifies nothing beyond the token (the gateway did, from
 * the cache), writes presence to the key/value store, queues metrics on a durable channel and
 * reads the manifest etag and pending commands from the cache. It touches no document; state
 * changes it causes (came online, commands delivered) are written by event handlers after.
 *
 * The pure parts and the key/value layouts live in services/devices/: pairing.ts (codes, pairing
 * requests), displays.ts (documents, views, queries), presence.ts (presence, status flags, the
 * sweep's step), commands.ts (command documents and each display's pending list).
 *
 * Metrics (shared/ops-metrics.ts): heartbeats accepted, and the displays online by plan, which
 * the sweep publishes from what it just checked, so only the sweeping node exports them.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, globalCollection, systemScope, tenantCollection, tenantOf, type DbVars } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { DISPLAY_STATUS_CHANNEL, HEARTBEAT_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	publishEvent,
	broadcast,
	call,
	COMMAND_TYPES,
	CommandPage,
	CommandQueued,
	DISPLAY_STATUSES,
	DisplayGroupPage,
	DisplayGroupView,
	DisplayPage,
	DisplayView,
	emit,
	HeartbeatAnswer,
	type HeartbeatReport,
	HEARTBEAT_BATCH_MAX,
	manifestEtagKey,
	manifestPowerKey,
	DeviceRegistered,
	PairingPoll,
	PairingRequested,
	ProvisioningKeyCreated,
	ProvisioningKeyPage,
	ProvisioningKeyView,
	sendToChannel,
	type ActionCtx,
	type ManifestPower,
	type ChannelCtx,
	type EventCtx,
	type HeartbeatMessage,
	type Result
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { answerGroup, GROUP_CALL_PARAMS } from "../shared/group-call";
import { GroupSender } from "../shared/group-send";
import { TimeSlice } from "../shared/time-slice";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, withLock, type KeyValueStore } from "../shared/kv";
import { boundedLabel, LeaderGauge, opsCounter, opsGauge, OPS_METRICS, type OpsCounter } from "../shared/ops-metrics";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { planLimit, publishQuotaWarning, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { deviceCallerOf, ISO_INSTANT_RULE, NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import { giveBack, refuseSpent, takeAttempt, THROTTLES } from "../shared/throttle";
import { assertTimezone } from "../shared/time";
import {
	COMMAND_TTL_MS,
	commandsKey,
	commandView,
	dueCommands,
	markDelivered,
	parsePendingCommands,
	pendingOf,
	setPendingCommands,
	updatePendingCommands,
	withoutCommand,
	type CommandDoc
} from "./devices/commands";
import { displayChanges, displayView, groupView, listQuery, selectorQuery, sleepFields, targetingView, unique, type DisplayDoc, type DisplayGroupDoc } from "./devices/displays";
import { isLivePairing, normalizePairingCode, pairedDisplay, pairingCode, PAIRING_TTL_MS, pollSecret, type PairingDoc } from "./devices/pairing";
import { hashToken, safeEqual } from "../shared/secrets";
import { assumeSeen, forgetPresence, lastSeenStamp, markOfflineIfSilent, offlineCutoff, readPresence, recordHeartbeat } from "./devices/presence";
import { acceptsScreens, defaultScreenName, looksLikeProvisioningKey, newProvisioningKey, provisioningKeyView, type ProvisioningKeyDoc } from "./devices/provisioning";

const MAX_TAGS = 50;
const MAX_GROUPS = 50;

const TAGS_RULE = { type: "array", items: { type: "string", trim: true, min: 1, max: 64 }, max: MAX_TAGS, optional: true } as const;
const GROUP_IDS_RULE = { type: "array", items: ID_RULE, max: MAX_GROUPS, optional: true } as const;
const TIMEZONE_RULE = { type: "string", max: 64, optional: true } as const;
const METRIC = { type: "number", min: 0, max: 100, optional: true } as const;

const COLLECTIONS = {
	// groupIds, tags, defaultPlaylistId and defaultLayoutId: scheduling's displaysFor (NeDB answers an $or by a scan anyway).
	displays: tenantCollection<DisplayDoc>({ indexes: ["status", "name", "tags"], selectiveIndexes: ["groupIds", "defaultPlaylistId", "defaultLayoutId", "provisioningKeyId", "scheduledOffCheckAt"] }),
	provisioning_keys: tenantCollection<ProvisioningKeyDoc>({ uniqueIndexes: ["keyHash"] }),
	display_groups: tenantCollection<DisplayGroupDoc>({ indexes: ["name"] }),
	pairings: globalCollection<PairingDoc>({ uniqueIndexes: ["codeHash"], selectiveIndexes: ["displayId"] }),
	commands: tenantCollection<CommandDoc>({ indexes: ["displayId", "status"] }),
	devices_usage: USAGE_COLLECTION
};

interface DevicesSettings extends ServiceSettingSchema {
	rest: string;
	heartbeatIntervalSec: number;
	sweepIntervalMs: number;
}

interface DevicesVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	kv: KeyValueStore;
	/** Displays per tenant, grown atomically against the plan's limit. */
	displayQuota: UsageCounter;
	sweep: PeriodicJob | null;
	heartbeats: OpsCounter;
	/** The heartbeat channel's group commit: one publish carries the heartbeats that arrived meanwhile. */
	heartbeatChannel: GroupSender<HeartbeatMessage>;
	/** Published by the sweep, hence by the one node that sweeps. */
	displaysOnline: LeaderGauge<"plan">;
}

interface DevicesMethods {
	withPresence(docs: DisplayDoc[]): Promise<DisplayView[]>;
	device(ctx: Context<unknown, RequestMeta>): { tenantId: string; displayId: string };
	beat(ctx: Context<HeartbeatReport, RequestMeta>): Promise<HeartbeatAnswer>;
	assertGroups(ctx: Context, groupIds: string[] | undefined): Promise<void>;
	forgetDisplay(displayId: string): Promise<void>;
	assertDefaults(ctx: Context<unknown, RequestMeta>, defaults: { defaultPlaylistId?: string | null; defaultLayoutId?: string | null }): Promise<void>;
	sweepOnce(): Promise<void>;
	wakeSleepers(now: Date, cutoffOf: (tenantId: string) => Promise<number>, slice?: TimeSlice): Promise<void>;
	powerStates(tenantId: string, displays: Array<{ id: string; at?: string }>): Promise<Record<string, ManifestPower>>;
	keyCounter(keyId: string): UsageCounter;
	keyViews(docs: ProvisioningKeyDoc[]): Promise<ProvisioningKeyView[]>;
	releaseDisplay(display: DisplayDoc): Promise<void>;
}

/** What a heartbeat may report (the action's params; the group call checks each heartbeat with them too). */
const HEARTBEAT_PARAMS = {
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
} as const;

const DevicesService: ServiceSchema<DevicesSettings, DevicesMethods, DevicesVars> = {
	name: "devices",
	settings: {
		rest: "/",
		heartbeatIntervalSec: 30,
		sweepIntervalMs: 10_000
	},
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- pairing (the screen's side) ------------------------------------------------------

		requestPairing: {
			rest: "POST /device/pairing",
			permission: "public",
			summary: "A screen asks for a pairing code to show (no token; limited per address)",
			successStatus: 201,
			response: PairingRequested,
			params: {
				$$strict: "remove",
				hardwareId: { type: "string", max: 128, optional: true },
				model: { type: "string", max: 128, optional: true },
				resolution: { type: "string", max: 32, optional: true, pattern: /^\d{2,5}x\d{2,5}$/ }
			},
			async handler(ctx: ActionCtx<"devices.requestPairing", RequestMeta>): Promise<Result<"devices.requestPairing">> {
				await takeAttempt(this.kv, THROTTLES.pairingRequest(ctx.meta.ip, this.config.pairingRequestsPerAddress));
				const secret = pollSecret();
				const expiresAt = new Date(Date.now() + PAIRING_TTL_MS).toISOString();
				for (let attempt = 0; attempt < 5; attempt++) {
					const code = pairingCode();
					// A code is unique among live requests; an expired holder gives it up.
					await this.db.pairings.removeDocs({ codeHash: hashToken(code), expiresAt: { $lt: new Date().toISOString() } });
					try {
						const pairing = await this.db.pairings.insertDoc({
							codeHash: hashToken(code),
							pollSecretHash: hashToken(secret),
							status: "pending",
							expiresAt,
							hardwareId: ctx.params.hardwareId ?? null,
							model: ctx.params.model ?? null,
							resolution: ctx.params.resolution ?? null
						});
						ctx.meta.$location = `/api/v1/device/pairing/${pairing.id}`;
						return { pairingId: pairing.id, code, pollSecret: secret, expiresAt };
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
			response: PairingPoll,
			params: { $$strict: "remove", pairingId: ID_RULE },
			async handler(ctx: ActionCtx<"devices.pairingStatus", RequestMeta>): Promise<Result<"devices.pairingStatus">> {
				const secret = ctx.meta.headers?.["x-pairing-secret"] ?? "";
				const pairing = await this.db.pairings.findDoc({ _id: ctx.params.pairingId });
				// Unknown id and wrong secret look alike.
				if (!pairing || !secret || !safeEqual(hashToken(secret), pairing.pollSecretHash)) {
					throw Errors.notFound("Pairing", ctx.params.pairingId);
				}
				if (pairing.status === "pending") {
					if (!isLivePairing(pairing, new Date())) throw Errors.notFound("Pairing", ctx.params.pairingId);
					return { status: "pending" };
				}
				const claimed = await this.db.pairings.updateWhere({ _id: pairing.id, status: "paired", tokenDeliveredAt: { $exists: false } }, { tokenDeliveredAt: new Date().toISOString() });
				const paired = pairedDisplay(pairing);
				if (claimed !== 1 || !paired) throw Errors.notFound("Pairing", ctx.params.pairingId);
				// The request has done its work: nothing of it needs to stay.
				await this.db.pairings.removeDocs({ _id: pairing.id });
				// The server vouches for the tenant: the pairing names it, the screen has no principal.
				const owner = systemScope(paired.tenantId);
				// A display deleted before its screen collected the token gets none.
				if (!(await this.db.displays.findDoc(owner, { _id: paired.displayId }))) throw Errors.notFound("Pairing", ctx.params.pairingId);
				const { deviceToken } = await call(ctx, "auth.mintDeviceToken", paired);
				// …nor one deleted while it was being minted (the deletion's revocation may have run first).
				if (!(await this.db.displays.findDoc(owner, { _id: paired.displayId }))) {
					await call(ctx, "auth.revokeDeviceToken", paired);
					throw Errors.notFound("Pairing", ctx.params.pairingId);
				}
				return { status: "paired", displayId: paired.displayId, deviceToken, heartbeatIntervalSec: this.settings.heartbeatIntervalSec };
			}
		},

		register: {
			rest: "POST /device/register",
			permission: "public",
			summary: "Zero-touch: a screen presents a provisioning key and becomes a display at once (the same hardwareId again: the same display, a new token)",
			successStatus: 201,
			response: DeviceRegistered,
			// 401: unknown, revoked or expired key; 402: the plan's display limit; 409: the key's maxDisplays.
			extraResponses: { 402: {}, 409: {} },
			params: {
				$$strict: "remove",
				provisioningKey: { type: "string", min: 1, max: 200 },
				// Printable text only: no control, format (bidi overrides, zero-width) or lone surrogate characters.
				hardwareId: { type: "string", trim: true, min: 1, max: 128, pattern: /^[^\p{C}]+$/u, messages: { stringPattern: "must be printable text" } },
				name: { ...NAME_RULE, optional: true },
				model: { type: "string", max: 128, optional: true },
				resolution: { type: "string", max: 32, optional: true, pattern: /^\d{2,5}x\d{2,5}$/ }
			},
			async handler(ctx: ActionCtx<"devices.register", RequestMeta>): Promise<Result<"devices.register">> {
				const now = new Date();
				const { provisioningKey, hardwareId } = ctx.params;
				// An address past its failures is stopped before the lookup; only a failure counts, so a
				// site's screens booting at once behind one router never push each other over the limit.
				const attempt = THROTTLES.provisioningKey(ctx.meta.ip);
				await refuseSpent(this.kv, attempt);
				const key = looksLikeProvisioningKey(provisioningKey) ? await this.db.provisioning_keys.findDoc(ALL_TENANTS, { keyHash: hashToken(provisioningKey) }) : null;
				if (!key || !acceptsScreens(key, now)) {
					await takeAttempt(this.kv, attempt);
					throw Errors.unauthorized("Unknown, revoked or expired provisioning key");
				}
				const tenantId = key.tenantId;
				const owner = systemScope(tenantId);
				// One screen registering twice at once is still one display.
				const displayId = await withLock(this.kv, `lock:register:${key.id}:${hashToken(hardwareId)}`, async () => {
					const known = await this.db.displays.findDoc(owner, { provisioningKeyId: key.id, hardwareId });
					if (known) {
						await audit(ctx, { tenantId, action: "display.reregistered", target: known.id, actor: { kind: "anonymous", id: null }, data: { provisioningKeyId: key.id } });
						return known.id;
					}
					await this.displayQuota.reserve(tenantId, 1, await planLimit(ctx, tenantId, "displays", this.config.defaultPlan));
					try {
						if (key.maxDisplays !== null) await this.keyCounter(key.id).reserve(tenantId, 1, key.maxDisplays);
					} catch (err) {
						await this.displayQuota.release(tenantId, 1);
						throw err;
					}
					// Groups deleted since the key was made are left out.
					const groups = key.groupIds.length ? await this.db.display_groups.findDocs(owner, { _id: { $in: key.groupIds } }) : [];
					const display = await this.db.displays.insertDoc(owner, {
						name: ctx.params.name ?? defaultScreenName(hardwareId),
						status: "pending",
						timezone: key.timezone,
						tags: key.tags,
						groupIds: groups.map(g => g.id),
						defaultPlaylistId: key.defaultPlaylistId,
						defaultLayoutId: key.defaultLayoutId ?? null,
						hardwareId,
						model: ctx.params.model ?? null,
						resolution: ctx.params.resolution ?? null,
						provisioningKeyId: key.id
					});
					await audit(ctx, { tenantId, action: "display.registered", target: display.id, actor: { kind: "anonymous", id: null }, data: { provisioningKeyId: key.id, name: display.name } });
					void emit(ctx, "devices.display.paired", { tenantId, displayId: display.id });
					await publishEvent(ctx.broker, tenantId, "display.paired", { displayId: display.id, name: display.name, provisioningKeyId: key.id });
					return display.id;
				});
				// A new token: the one a re-imaged screen had before stops working.
				const { deviceToken } = await call(ctx, "auth.mintDeviceToken", { tenantId, displayId });
				await this.db.provisioning_keys.updateWhere(owner, { _id: key.id }, { lastUsedAt: now.toISOString() });
				ctx.meta.$location = `/api/v1/displays/${displayId}`;
				return { displayId, deviceToken, heartbeatIntervalSec: this.settings.heartbeatIntervalSec };
			}
		},

		// ---- provisioning keys (the CMS's side) ----------------------------------------------

		createProvisioningKey: {
			rest: "POST /provisioning-keys",
			permission: "displays.manage",
			summary: "A key screens register themselves with (zero-touch); `key` is shown only in this answer",
			successStatus: 201,
			response: ProvisioningKeyCreated,
			params: {
				$$strict: "remove",
				name: NAME_RULE,
				groupIds: GROUP_IDS_RULE,
				tags: TAGS_RULE,
				defaultPlaylistId: { ...ID_RULE, optional: true },
				defaultLayoutId: { ...ID_RULE, optional: true },
				timezone: TIMEZONE_RULE,
				maxDisplays: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true },
				expiresAt: { ...ISO_INSTANT_RULE, optional: true }
			},
			async handler(ctx: ActionCtx<"devices.createProvisioningKey", RequestMeta>): Promise<Result<"devices.createProvisioningKey">> {
				assertTimezone(ctx.params.timezone);
				await this.assertGroups(ctx, ctx.params.groupIds);
				const { defaultPlaylistId, defaultLayoutId, expiresAt } = ctx.params;
				if (expiresAt && Date.parse(expiresAt) <= Date.now()) throw Errors.validation([{ field: "expiresAt", message: "must be in the future", type: "date" }]);
				await this.assertDefaults(ctx, { defaultPlaylistId, defaultLayoutId });
				const { key, keyHash, prefix } = newProvisioningKey();
				const doc = await this.db.provisioning_keys.insertDoc(ctx, {
					name: ctx.params.name,
					keyHash,
					prefix,
					groupIds: unique(ctx.params.groupIds ?? []),
					tags: unique(ctx.params.tags ?? []),
					defaultPlaylistId: defaultPlaylistId ?? null,
					defaultLayoutId: defaultLayoutId ?? null,
					timezone: ctx.params.timezone ?? null,
					maxDisplays: ctx.params.maxDisplays ?? null,
					expiresAt: expiresAt ? new Date(expiresAt).toISOString() : null,
					revokedAt: null,
					lastUsedAt: null,
					createdBy: ctx.meta.auth?.userId ?? ctx.meta.auth?.apiKeyId ?? null
				});
				await audit(ctx, { action: "provisioningKey.created", target: doc.id, data: { name: doc.name, maxDisplays: doc.maxDisplays, expiresAt: doc.expiresAt } });
				ctx.meta.$location = `/api/v1/provisioning-keys/${doc.id}`;
				return { ...provisioningKeyView(doc, 0), key };
			}
		},

		listProvisioningKeys: {
			rest: "GET /provisioning-keys",
			permission: "displays.manage",
			summary: "The tenant's provisioning keys, newest first (without the keys themselves)",
			response: ProvisioningKeyPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"devices.listProvisioningKeys", RequestMeta>): Promise<Result<"devices.listProvisioningKeys">> {
				const page = await this.db.provisioning_keys.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: await this.keyViews(page.rows) };
			}
		},

		getProvisioningKey: {
			rest: "GET /provisioning-keys/:id",
			permission: "displays.manage",
			summary: "A provisioning key and how many displays registered with it",
			response: ProvisioningKeyView,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.getProvisioningKey", RequestMeta>): Promise<Result<"devices.getProvisioningKey">> {
				const [view] = await this.keyViews([await this.db.provisioning_keys.getDoc(ctx, ctx.params.id, "Provisioning key")]);
				return view;
			}
		},

		revokeProvisioningKey: {
			rest: "DELETE /provisioning-keys/:id",
			permission: "displays.manage",
			summary: "Revoke a provisioning key: no screen registers with it any more (displays it made stay)",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.revokeProvisioningKey", RequestMeta>): Promise<Result<"devices.revokeProvisioningKey">> {
				const key = await this.db.provisioning_keys.getDoc(ctx, ctx.params.id, "Provisioning key");
				if (!key.revokedAt) {
					await this.db.provisioning_keys.updateDoc(ctx, key.id, { revokedAt: new Date().toISOString() });
					await audit(ctx, { action: "provisioningKey.revoked", target: key.id });
				}
				return null;
			}
		},

		// ---- displays (the CMS's side) --------------------------------------------------------

		pair: {
			rest: "POST /displays/pair",
			permission: "displays.manage",
			summary: "Pair the screen showing `code` as a new display of this tenant",
			successStatus: 201,
			response: DisplayView,
			// 402: the plan's display limit is reached.
			extraResponses: { 402: {} },
			params: { $$strict: "remove", code: { type: "string", min: 6, max: 16 }, name: NAME_RULE, timezone: TIMEZONE_RULE, tags: TAGS_RULE, groupIds: GROUP_IDS_RULE },
			async handler(ctx: ActionCtx<"devices.pair", RequestMeta>): Promise<Result<"devices.pair">> {
				const tenantId = tenantOf(ctx);
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
				let display: DisplayDoc;
				try {
					const code = normalizePairingCode(ctx.params.code);
					const pairing = code ? await this.db.pairings.findDoc({ codeHash: hashToken(code), status: "pending" }) : null;
					if (!pairing || !isLivePairing(pairing, new Date())) throw Errors.notFound("Pairing code");
					// A live code is no wrong guess.
					await giveBack(this.kv, guess);
					display = await this.db.displays.insertDoc(ctx, {
						name: ctx.params.name,
						status: "pending",
						timezone: ctx.params.timezone ?? null,
						tags: unique(ctx.params.tags ?? []),
						groupIds: unique(ctx.params.groupIds ?? []),
						defaultPlaylistId: null,
						hardwareId: pairing.hardwareId,
						model: pairing.model,
						resolution: pairing.resolution
					});
					// One admin wins a code, even when two enter it at once.
					const claimed = await this.db.pairings.updateWhere({ _id: pairing.id, status: "pending" }, { status: "paired", pairedTenantId: tenantId, displayId: display.id });
					if (claimed !== 1) {
						await this.db.displays.removeDocs(ctx, { _id: display.id });
						throw Errors.notFound("Pairing code");
					}
				} catch (err) {
					await this.displayQuota.release(tenantId, 1);
					throw err;
				}
				await audit(ctx, { action: "display.paired", target: display.id, data: { name: ctx.params.name } });
				void emit(ctx, "devices.display.paired", { tenantId, displayId: display.id });
				await publishEvent(ctx.broker, tenantId, "display.paired", { displayId: display.id, name: display.name });
				ctx.meta.$location = `/api/v1/displays/${display.id}`;
				return displayView(display);
			}
		},

		list: {
			rest: "GET /displays",
			permission: "tenant.read",
			summary: "Displays, filtered by status, tag, group or free text",
			response: DisplayPage,
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				status: { type: "enum", values: [...DISPLAY_STATUSES], optional: true },
				tag: { type: "string", max: 64, optional: true },
				groupId: { ...ID_RULE, optional: true },
				q: { type: "string", max: 100, optional: true }
			},
			async handler(ctx: ActionCtx<"devices.list", RequestMeta>): Promise<Result<"devices.list">> {
				const page = await this.db.displays.pageDocs(ctx, listQuery(ctx.params), ctx.params.page, ctx.params.pageSize, ["name", "_id"]);
				return { ...page, rows: await this.withPresence(page.rows) };
			}
		},

		get: {
			rest: "GET /displays/:id",
			permission: "tenant.read",
			summary: "One display with its live presence",
			response: DisplayView,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.get", RequestMeta>): Promise<Result<"devices.get">> {
				const [display] = await this.withPresence([await this.db.displays.getDoc(ctx, ctx.params.id, "Display")]);
				return display;
			}
		},

		update: {
			rest: "PATCH /displays/:id",
			permission: "displays.manage",
			summary: "Rename a display or change its timezone, tags, groups or default playlist or layout",
			response: DisplayView,
			params: {
				$$strict: "remove",
				id: ID_RULE,
				name: { ...NAME_RULE, optional: true },
				timezone: { type: "string", max: 64, optional: true, nullable: true },
				tags: TAGS_RULE,
				groupIds: GROUP_IDS_RULE,
				defaultPlaylistId: { ...ID_RULE, optional: true, nullable: true },
				defaultLayoutId: { ...ID_RULE, optional: true, nullable: true }
			},
			async handler(ctx: ActionCtx<"devices.update", RequestMeta>): Promise<Result<"devices.update">> {
				const { id, ...edit } = ctx.params;
				await this.db.displays.getDoc(ctx, id, "Display");
				assertTimezone(edit.timezone);
				await this.assertGroups(ctx, edit.groupIds);
				await this.assertDefaults(ctx, edit);
				const set = displayChanges(edit);
				const fields = Object.keys(set);
				const updated = await this.db.displays.updateDoc(ctx, id, set, "Display");
				if (edit.defaultPlaylistId || edit.defaultLayoutId) {
					// Deleted meanwhile? Its delete clears defaults after removing it, so one of the two sees the other.
					await this.assertDefaults(ctx, edit).catch(async (err: unknown) => {
						await this.db.displays.updateWhere(ctx, { _id: id, defaultPlaylistId: edit.defaultPlaylistId ?? null, defaultLayoutId: edit.defaultLayoutId ?? null }, { defaultPlaylistId: null, defaultLayoutId: null });
						throw err;
					});
				}
				const tenantId = tenantOf(ctx);
				await audit(ctx, { action: "display.updated", target: id, data: { fields } });
				void broadcast(ctx, "devices.display.updated", { tenantId, displayIds: [id], fields });
				const [view] = await this.withPresence([updated]);
				return view;
			}
		},

		remove: {
			rest: "DELETE /displays/:id",
			permission: "displays.manage",
			summary: "Delete a display; its device token stops working at once",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.remove", RequestMeta>): Promise<Result<"devices.remove">> {
				const display = await this.db.displays.removeDoc(ctx, ctx.params.id, "Display");
				const tenantId = display.tenantId;
				await this.releaseDisplay(display);
				// A pairing whose screen has not collected its token yet never will.
				await this.db.pairings.removeDocs({ displayId: display.id });
				await call(ctx, "auth.revokeDeviceToken", { tenantId, displayId: display.id });
				await this.db.commands.removeDocs(ctx, { displayId: display.id });
				await this.forgetDisplay(display.id);
				// From here on uptime knows nothing of it (neither online nor dark).
				await sendToChannel(ctx.broker, DISPLAY_STATUS_CHANNEL, { id: newId(), tenantId, displayId: display.id, name: display.name, online: null, at: new Date().toISOString() });
				await audit(ctx, { action: "display.deleted", target: display.id });
				void broadcast(ctx, "devices.display.deleted", { tenantId, displayId: display.id });
				await publishEvent(ctx.broker, tenantId, "display.deleted", { displayId: display.id, name: display.name });
				return null;
			}
		},

		// ---- groups ----------------------------------------------------------------------------

		createGroup: {
			rest: "POST /display-groups",
			permission: "displays.manage",
			summary: "Create a display group",
			successStatus: 201,
			response: DisplayGroupView,
			params: { $$strict: "remove", name: NAME_RULE, description: { type: "string", max: 1000, optional: true } },
			async handler(ctx: ActionCtx<"devices.createGroup", RequestMeta>): Promise<Result<"devices.createGroup">> {
				const group = await this.db.display_groups.insertDoc(ctx, { name: ctx.params.name, description: ctx.params.description ?? null });
				await audit(ctx, { action: "displayGroup.created", target: group.id });
				ctx.meta.$location = `/api/v1/display-groups/${group.id}`;
				return groupView(group);
			}
		},

		listGroups: {
			rest: "GET /display-groups",
			permission: "tenant.read",
			summary: "Display groups",
			response: DisplayGroupPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"devices.listGroups", RequestMeta>): Promise<Result<"devices.listGroups">> {
				const page = await this.db.display_groups.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize, ["name", "_id"]);
				return { ...page, rows: page.rows.map(groupView) };
			}
		},

		getGroup: {
			rest: "GET /display-groups/:id",
			permission: "tenant.read",
			summary: "One display group",
			response: DisplayGroupView,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.getGroup", RequestMeta>): Promise<Result<"devices.getGroup">> {
				return groupView(await this.db.display_groups.getDoc(ctx, ctx.params.id, "Display group"));
			}
		},

		updateGroup: {
			rest: "PATCH /display-groups/:id",
			permission: "displays.manage",
			summary: "Rename or describe a display group",
			response: DisplayGroupView,
			params: { $$strict: "remove", id: ID_RULE, name: { ...NAME_RULE, optional: true }, description: { type: "string", max: 1000, optional: true, nullable: true } },
			async handler(ctx: ActionCtx<"devices.updateGroup", RequestMeta>): Promise<Result<"devices.updateGroup">> {
				const { id, name, description } = ctx.params;
				// Absent fields stay as they are (an undefined change would unset them).
				const group = await this.db.display_groups.updateDoc(
					ctx,
					id,
					{ ...(name !== undefined && { name }), ...(description !== undefined && { description }) },
					"Display group"
				);
				await audit(ctx, { action: "displayGroup.updated", target: id });
				return groupView(group);
			}
		},

		removeGroup: {
			rest: "DELETE /display-groups/:id",
			permission: "displays.manage",
			summary: "Delete a display group; its displays leave it",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"devices.removeGroup", RequestMeta>): Promise<Result<"devices.removeGroup">> {
				const group = await this.db.display_groups.removeDoc(ctx, ctx.params.id, "Display group");
				const members = await this.db.displays.findDocs(ctx, { groupIds: group.id });
				for (const d of members) {
					await this.db.displays.updateDoc(ctx, d.id, { groupIds: d.groupIds.filter(g => g !== group.id) });
				}
				for (const key of await this.db.provisioning_keys.findDocs(ctx, { groupIds: group.id })) {
					await this.db.provisioning_keys.updateDoc(ctx, key.id, { groupIds: key.groupIds.filter(g => g !== group.id) });
				}
				const tenantId = tenantOf(ctx);
				await audit(ctx, { action: "displayGroup.deleted", target: group.id, data: { displays: members.length } });
				if (members.length) void broadcast(ctx, "devices.display.updated", { tenantId, displayIds: members.map(d => d.id), fields: ["groupIds"] });
				void broadcast(ctx, "devices.group.deleted", { tenantId, groupId: group.id });
				return null;
			}
		},

		// ---- commands --------------------------------------------------------------------------

		sendCommand: {
			rest: "POST /displays/:id/commands",
			permission: "displays.manage",
			summary: "Queue a command; it reaches the screen on its next heartbeat and its live stream",
			successStatus: 202,
			response: CommandQueued,
			params: { $$strict: "remove", id: ID_RULE, type: { type: "enum", values: [...COMMAND_TYPES] } },
			async handler(ctx: ActionCtx<"devices.sendCommand", RequestMeta>): Promise<Result<"devices.sendCommand">> {
				const display = await this.db.displays.getDoc(ctx, ctx.params.id, "Display");
				const command = await this.db.commands.insertDoc(ctx, {
					displayId: display.id,
					type: ctx.params.type,
					status: "pending",
					expiresAt: new Date(Date.now() + COMMAND_TTL_MS).toISOString(),
					deliveredAt: null,
					acknowledgedAt: null,
					result: null
				});
				await updatePendingCommands(this.kv, display.id, pending => [...pending, pendingOf(command)]);
				await audit(ctx, { action: "display.command.sent", target: display.id, data: { type: command.type, commandId: command.id } });
				void broadcast(ctx, "devices.command.created", { tenantId: display.tenantId, displayId: display.id, command: { id: command.id, type: command.type, createdAt: command.createdAt } });
				return { id: command.id, type: command.type, status: "pending", createdAt: command.createdAt };
			}
		},

		commands: {
			rest: "GET /displays/:id/commands",
			permission: "tenant.read",
			summary: "Commands of a display, newest first",
			response: CommandPage,
			params: { $$strict: "remove", id: ID_RULE, ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"devices.commands", RequestMeta>): Promise<Result<"devices.commands">> {
				await this.db.displays.getDoc(ctx, ctx.params.id, "Display");
				const page = await this.db.commands.pageDocs(ctx, { displayId: ctx.params.id }, ctx.params.page, ctx.params.pageSize);
				const now = new Date();
				return { ...page, rows: page.rows.map(c => commandView(c, now)) };
			}
		},

		// ---- the device API ------------------------------------------------------------------

		heartbeat: {
			rest: "POST /device/heartbeat",
			permission: "device",
			summary: "Presence and metrics; answers the manifest etag and pending commands",
			response: HeartbeatAnswer,
			// The gateway's device lane sends heartbeats in groups (shared/group-call.ts).
			groupedBy: "devices.heartbeatGroup",
			params: HEARTBEAT_PARAMS,
			handler(ctx: ActionCtx<"devices.heartbeat", RequestMeta>): Promise<Result<"devices.heartbeat">> {
				return this.beat(ctx);
			}
		},

		/** Many heartbeats at once, each answered as `heartbeat` would (the gateway's group call). */
		heartbeatGroup: {
			visibility: "public",
			params: GROUP_CALL_PARAMS,
			handler(ctx: ActionCtx<"devices.heartbeatGroup">): Promise<Result<"devices.heartbeatGroup">> {
				return answerGroup(ctx, HEARTBEAT_PARAMS, call => this.beat(call), this.logger);
			}
		},

		ackCommand: {
			rest: "POST /device/commands/:id/ack",
			permission: "device",
			summary: "The screen confirms it carried out a command",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE, result: { type: "string", max: 2000, optional: true } },
			async handler(ctx: ActionCtx<"devices.ackCommand", RequestMeta>): Promise<Result<"devices.ackCommand">> {
				const { displayId } = this.device(ctx);
				const command = await this.db.commands.findDoc(ctx, { _id: ctx.params.id, displayId });
				if (!command) throw Errors.notFound("Command", ctx.params.id);
				if (command.status !== "acknowledged") {
					await this.db.commands.updateDoc(ctx, command.id, { status: "acknowledged", acknowledgedAt: new Date().toISOString(), result: ctx.params.result ?? null });
				}
				await updatePendingCommands(this.kv, displayId, pending => withoutCommand(pending, command.id));
				return null;
			}
		},

		// ---- for other services ------------------------------------------------------------

		/** A display of the caller's tenant with what targeting needs (scheduling). */
		targeting: {
			visibility: "public",
			params: { id: "string" },
			async handler(ctx: ActionCtx<"devices.targeting">): Promise<Result<"devices.targeting">> {
				return targetingView(await this.db.displays.getDoc(ctx, ctx.params.id, "Display"));
			}
		},

		/** A display's name and its groups' names (analytics keeps them with each play). */
		describe: {
			visibility: "public",
			params: { id: "string" },
			async handler(ctx: ActionCtx<"devices.describe">): Promise<Result<"devices.describe">> {
				const display = await this.db.displays.getDoc(ctx, ctx.params.id, "Display");
				const groups = display.groupIds.length ? await this.db.display_groups.findDocs(ctx, { _id: { $in: display.groupIds } }) : [];
				return { id: display.id, name: display.name, groups: groups.map(g => ({ id: g.id, name: g.name })) };
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
				defaultLayoutIds: { type: "array", items: "string", optional: true },
				all: { type: "boolean", optional: true },
				afterId: { type: "string", optional: true },
				limit: { type: "number", integer: true, min: 1, max: 2000, default: 1000 }
			},
			async handler(ctx: ActionCtx<"devices.displaysFor">): Promise<Result<"devices.displaysFor">> {
				const { tenantId, afterId, limit, ...selector } = ctx.params;
				const query = selectorQuery(selector);
				if (!query) return { rows: [], next: null };
				if (afterId) query._id = { $gt: afterId };
				// The caller (scheduling) names the tenant whose manifests it is computing.
				const docs = await this.db.displays.findDocs(systemScope(tenantId), query, { sort: ["_id"], limit });
				return { rows: docs.map(targetingView), next: docs.length === limit ? docs[docs.length - 1].id : null };
			}
		},

		/** Displays defaulting to a deleted playlist fall back to nothing (scheduling, on a forced delete). */
		clearDefaultPlaylist: {
			visibility: "public",
			params: { tenantId: "string", playlistId: "string" },
			async handler(ctx: ActionCtx<"devices.clearDefaultPlaylist">): Promise<Result<"devices.clearDefaultPlaylist">> {
				const { tenantId, playlistId } = ctx.params;
				const scope = systemScope(tenantId);
				// New screens of a key defaulting to it get none either.
				await this.db.provisioning_keys.updateWhere(scope, { defaultPlaylistId: playlistId }, { defaultPlaylistId: null });
				const displays = await this.db.displays.findDocs(scope, { defaultPlaylistId: playlistId });
				if (displays.length === 0) return 0;
				await this.db.displays.updateWhere(scope, { defaultPlaylistId: playlistId }, { defaultPlaylistId: null });
				void broadcast(ctx, "devices.display.updated", { tenantId, displayIds: displays.map(d => d.id), fields: ["defaultPlaylistId"] });
				return displays.length;
			}
		},

		/** Displays defaulting to a deleted layout fall back to nothing (scheduling, on a forced delete). */
		clearDefaultLayout: {
			visibility: "public",
			params: { tenantId: "string", layoutId: "string" },
			async handler(ctx: ActionCtx<"devices.clearDefaultLayout">): Promise<Result<"devices.clearDefaultLayout">> {
				const { tenantId, layoutId } = ctx.params;
				const scope = systemScope(tenantId);
				await this.db.provisioning_keys.updateWhere(scope, { defaultLayoutId: layoutId }, { defaultLayoutId: null });
				const displays = await this.db.displays.findDocs(scope, { defaultLayoutId: layoutId });
				if (displays.length === 0) return 0;
				await this.db.displays.updateWhere(scope, { defaultLayoutId: layoutId }, { defaultLayoutId: null });
				void broadcast(ctx, "devices.display.updated", { tenantId, displayIds: displays.map(d => d.id), fields: ["defaultLayoutId"] });
				return displays.length;
			}
		},

		/** Which of these display and group ids the caller's tenant does not have (schedule targets). */
		unknownTargets: {
			visibility: "public",
			params: { displayIds: { type: "array", items: "string", max: 1000 }, groupIds: { type: "array", items: "string", max: 1000 } },
			async handler(ctx: ActionCtx<"devices.unknownTargets">): Promise<Result<"devices.unknownTargets">> {
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

		/** The tenant's displays as its usage counter holds them (billing's usage view): no scan. */
		quotaUsage: {
			visibility: "public",
			params: { tenantId: "string" },
			handler(ctx: ActionCtx<"devices.quotaUsage">): Promise<Result<"devices.quotaUsage">> {
				return this.displayQuota.usage(ctx.params.tenantId);
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"devices.exportTenantData">): Promise<Result<"devices.exportTenantData">> {
				const scope = systemScope(ctx.params.tenantId);
				const [displays, groups, commands, keys] = await Promise.all([
					this.db.displays.findDocs(scope),
					this.db.display_groups.findDocs(scope),
					this.db.commands.findDocs(scope),
					this.db.provisioning_keys.findDocs(scope)
				]);
				const now = new Date();
				return { displays: displays.map(d => displayView(d)), groups, commands: commands.map(c => commandView(c, now)), provisioningKeys: await this.keyViews(keys) };
			}
		}
	},

	events: {
		/** Off the hot path: the heartbeat only flipped the cached status. */
		async "devices.display.cameOnline"(ctx: EventCtx<"devices.display.cameOnline">) {
			const { tenantId, displayId, at } = ctx.params;
			await this.db.displays.updateWhere(systemScope(tenantId), { _id: displayId }, { status: "online", lastSeenAt: at, scheduledOff: false, scheduledOffUntil: null, scheduledOffCheckAt: null });
		},

		/** A power schedule changed: sleeping displays of the tenant are asked about again at the next sweep. */
		async "scheduling.power.changed"(ctx: EventCtx<"scheduling.power.changed">) {
			const scope = systemScope(ctx.params.tenantId);
			await this.db.displays.updateWhere(scope, { status: "offline", scheduledOff: true }, { scheduledOffCheckAt: new Date().toISOString() });
		},

		async "devices.commands.delivered"(ctx: EventCtx<"devices.commands.delivered">) {
			const { tenantId, displayId, ids, at } = ctx.params;
			await this.db.commands.updateWhere(systemScope(tenantId), { _id: { $in: ids }, status: "pending" }, { status: "delivered", deliveredAt: at });
			await updatePendingCommands(this.kv, displayId, pending => markDelivered(pending, ids));
		}
	},

	channels: {
		"tenants.tenant.deleted": {
			group: "devices",
			async handler(ctx: ChannelCtx<"tenants.tenant.deleted">) {
				const { tenantId } = ctx.params;
				const scope = systemScope(tenantId);
				const displays = await this.db.displays.findDocs(scope);
				// Documents first, then the keys: a sweep that seeds the keys of a display it listed
				// before (sweepOnce) finds the document gone afterwards and forgets them again.
				await Promise.all([
					this.db.displays.removeDocs(scope, {}),
					this.db.display_groups.removeDocs(scope, {}),
					this.db.commands.removeDocs(scope, {}),
					this.db.provisioning_keys.removeDocs(scope, {}),
					this.db.pairings.removeDocs({ pairedTenantId: tenantId }),
					this.db.devices_usage.removeDocs(scope, {})
				]);
				for (const d of displays) await this.forgetDisplay(d.id);
				for (const d of displays) void broadcast(ctx, "devices.display.deleted", { tenantId, displayId: d.id });
			}
		}
	},

	methods: {
		/** Documents plus their live presence from the cache. */
		async withPresence(docs: DisplayDoc[]): Promise<DisplayView[]> {
			return Promise.all(
				docs.map(async doc => {
					const { presence, status } = await readPresence(this.kv, doc.id);
					return displayView(doc, presence, status);
				})
			);
		},

		/** The calling screen; only device tokens name one. */
		device(ctx: Context<unknown, RequestMeta>): { tenantId: string; displayId: string } {
			return deviceCallerOf(ctx.meta);
		},

		/** The heartbeat, alone or in a group: presence, the health channel, the manifest ETag, power and due commands. */
		async beat(ctx: Context<HeartbeatReport, RequestMeta>): Promise<HeartbeatAnswer> {
			const { tenantId, displayId } = this.device(ctx);
			// Every read goes out in the heartbeat's first round trip (one MGET); its channel publish with the second.
			const {
				presence,
				cameOnline,
				previous,
				read: [etag, power, commandList]
			} = await recordHeartbeat(this.kv, displayId, ctx.params, new Date(), [manifestEtagKey(displayId), manifestPowerKey(displayId), commandsKey(displayId)], stored =>
				this.heartbeatChannel.send({ tenantId, displayId, ts: stored.lastSeenAt, ...stored })
			);
			const pending = parsePendingCommands(commandList);
			const at = presence.lastSeenAt;
			if (cameOnline) {
				// Rare (a transition), so worth a read for the name the uptime report keeps.
				const display = await this.db.displays.findDoc(systemScope(tenantId), { _id: displayId });
				// The store knew no status (it restarted empty, a Redis lost its data) and the document
				// says online: the screen never left as far as anyone was told, so there is no return to
				// announce — a restart is nobody's outage, whether its heartbeat or the sweep comes first.
				const stayedOnline = previous === null && display?.status === "online";
				if (!stayedOnline) {
					await sendToChannel(ctx.broker, DISPLAY_STATUS_CHANNEL, { id: newId(), tenantId, displayId, name: display?.name ?? "", online: true, at });
					void emit(ctx, "devices.display.cameOnline", { tenantId, displayId, at });
				}
			}
			const { commands, firstDelivered } = dueCommands(pending, at);
			if (firstDelivered.length) void emit(ctx, "devices.commands.delivered", { tenantId, displayId, ids: firstDelivered, at });
			this.heartbeats.increment();
			return {
				serverTime: at,
				manifestEtag: etag,
				heartbeatIntervalSec: this.settings.heartbeatIntervalSec,
				commands,
				power: power ? (JSON.parse(power) as ManifestPower) : null
			};
		},

		async assertGroups(ctx: Context, groupIds: string[] | undefined): Promise<void> {
			if (!groupIds?.length) return;
			const wanted = unique(groupIds);
			const found = await this.db.display_groups.countDocs(ctx, { _id: { $in: wanted } });
			if (found !== wanted.length) throw Errors.validation([{ field: "groupIds", message: "names a group that does not exist", type: "exists" }]);
		},

		/** The count of displays a provisioning key made, guarded like the plan's (409 past its maxDisplays). */
		keyCounter(keyId: string): UsageCounter {
			return new UsageCounter(this.db.devices_usage, {
				resource: `provisioning:${keyId}`,
				measure: tenantId => this.db.displays.countDocs(systemScope(tenantId), { provisioningKeyId: keyId }),
				exceeded: (limit, current) => Errors.conflict(`This provisioning key registers at most ${limit} displays`, { limit, current })
			});
		},

		async keyViews(docs: ProvisioningKeyDoc[]): Promise<ProvisioningKeyView[]> {
			const now = new Date();
			return Promise.all(docs.map(async d => provisioningKeyView(d, await this.db.displays.countDocs(systemScope(d.tenantId), { provisioningKeyId: d.id }), now)));
		},

		/**
		 * Sleeping displays due a check: still off → sleep on until the next check. Otherwise the
		 * screen should be on since the power-off ended (or, the schedule changed, since the check
		 * was due); silent the tenant's `offlineAfterSec` past that — the grace any display gets —
		 * its outage begins there. A screen that boots when its power-off ends has no outage.
		 */
		async wakeSleepers(now: Date, cutoffOf: (tenantId: string) => Promise<number>, slice = new TimeSlice()): Promise<void> {
			const due = await this.db.displays.findDocs(ALL_TENANTS, { status: "offline", scheduledOff: true, scheduledOffCheckAt: { $lte: now.toISOString() } });
			const byTenant = new Map<string, DisplayDoc[]>();
			for (const display of due) {
				const list = byTenant.get(display.tenantId) ?? [];
				list.push(display);
				byTenant.set(display.tenantId, list);
			}
			for (const [tenantId, displays] of byTenant) {
				const power = await this.powerStates(tenantId, displays.map(d => ({ id: d.id })));
				for (const display of displays) {
					await slice.checkIn();
					const scope = systemScope(tenantId);
					const claim = { _id: display.id, status: "offline", scheduledOff: true, scheduledOffCheckAt: display.scheduledOffCheckAt };
					if (power[display.id]?.state === "off") {
						await this.db.displays.updateWhere(scope, claim, sleepFields(power[display.id].until, now));
						continue;
					}
					const checkAt = display.scheduledOffCheckAt ?? now.toISOString();
					const until = display.scheduledOffUntil;
					const since = until && until <= checkAt ? until : checkAt;
					if (Date.parse(since) > (await cutoffOf(tenantId))) continue; // within its grace: asked again next sweep
					// Back on the heartbeat already (its event not handled yet): no outage.
					const { status, presence } = await readPresence(this.kv, display.id);
					if (status === "online") continue;
					if (!(await this.db.displays.updateWhere(scope, claim, { scheduledOff: false, scheduledOffUntil: null, scheduledOffCheckAt: null }))) continue;
					const lastSeenAt = presence?.lastSeenAt ?? null;
					await sendToChannel(this.broker, DISPLAY_STATUS_CHANNEL, { id: newId(), tenantId, displayId: display.id, name: display.name, online: false, at: since });
					void emit(this.broker, "devices.display.wentOffline", { tenantId, displayId: display.id, name: display.name, lastSeenAt, at: now.toISOString(), since });
				}
			}
		},

		/** The screens' power (scheduling), each at its instant (default now); {} when it cannot be asked: then silence counts as an outage, as before power schedules. */
		async powerStates(tenantId: string, displays: Array<{ id: string; at?: string }>): Promise<Record<string, ManifestPower>> {
			if (!this.broker.registry.getActionEndpoints("scheduling.powerStates")?.hasAvailable()) return {};
			try {
				const states: Record<string, ManifestPower> = {};
				for (let i = 0; i < displays.length; i += 1000) Object.assign(states, await call(this.broker, "scheduling.powerStates", { tenantId, displays: displays.slice(i, i + 1000) }));
				return states;
			} catch (err) {
				this.logger.warn(`Power states of tenant ${tenantId} unavailable; silent displays count as offline`, err);
				return {};
			}
		},

		/**
		 * What a display (or a provisioning key's screens) plays when nothing is scheduled: a
		 * playlist or a layout of the tenant, not both (422 naming the field). Unchecked while
		 * scheduling is not reachable (it drops a default that names nothing).
		 */
		async assertDefaults(ctx: Context<unknown, RequestMeta>, { defaultPlaylistId, defaultLayoutId }: { defaultPlaylistId?: string | null; defaultLayoutId?: string | null }) {
			if (defaultPlaylistId && defaultLayoutId) {
				throw Errors.validation([{ field: "defaultLayoutId", message: "name either a defaultPlaylistId or a defaultLayoutId, not both", type: "program" }]);
			}
			if (defaultPlaylistId && ctx.broker.registry.getActionEndpoints("scheduling.playlistExists")?.hasAvailable()) {
				if (!(await call(ctx, "scheduling.playlistExists", { id: defaultPlaylistId }))) {
					throw Errors.validation([{ field: "defaultPlaylistId", message: "is not a playlist of this tenant", type: "exists" }]);
				}
			}
			if (defaultLayoutId && ctx.broker.registry.getActionEndpoints("scheduling.layoutExists")?.hasAvailable()) {
				if (!(await call(ctx, "scheduling.layoutExists", { id: defaultLayoutId }))) {
					throw Errors.validation([{ field: "defaultLayoutId", message: "is not a layout of this tenant", type: "exists" }]);
				}
			}
		},

		/** A deleted display gives back its place in the plan and in its provisioning key. */
		async releaseDisplay(display: DisplayDoc): Promise<void> {
			await this.displayQuota.release(display.tenantId, 1);
			if (display.provisioningKeyId) await this.keyCounter(display.provisioningKeyId).release(display.tenantId, 1);
		},

		/** Everything the key/value store holds for a display. */
		async forgetDisplay(displayId: string): Promise<void> {
			await Promise.all([forgetPresence(this.kv, displayId), setPendingCommands(this.kv, displayId, []), this.kv.del(manifestEtagKey(displayId))]);
		},

		/**
		 * The leader's sweep: displays not seen for their tenant's `offlineAfterSec` go offline
		 * (once per transition, whichever replica sweeps), and old commands expire. The displays it
		 * leaves online are the fleet's online count by plan (a display that came online since the
		 * last sweep is counted once its status document says so, at the next sweep).
		 *
		 * A display that falls silent while its power schedule has the screen off is asleep, not
		 * dark: offline with `scheduledOff`, no alert, and neither online nor offline in uptime.
		 * When the power-off ends (re-checked at least hourly) and it is still silent, its outage
		 * begins there. A display the store has never heard of (it restarted empty) counts as seen
		 * at this sweep (presence.ts, assumeSeen): a restart is nobody's outage.
		 */
		async sweepOnce(): Promise<void> {
			const now = new Date();
			const online = await this.db.displays.findDocs(ALL_TENANTS, { status: "online" });
			const tenants = new Map<string, { cutoff: number; plan: string }>();
			/** The tenant's offline cutoff (ms) and plan label, read once per sweep. */
			const tenantOf = async (tenantId: string) => {
				let tenant = tenants.get(tenantId);
				if (tenant === undefined) {
					const found = await call(this.broker, "tenants.find", { tenantId });
					tenant = { cutoff: offlineCutoff(now, found?.settings.offlineAfterSec), plan: boundedLabel(found?.plan, "unknown") };
					tenants.set(tenantId, tenant);
				}
				return tenant;
			};
			const onlineByPlan = new Map<string, number>();
			const countOnline = (plan: string) => onlineByPlan.set(plan, (onlineByPlan.get(plan) ?? 0) + 1);
			// Every step below may answer at once (the embedded store): without yielding, a mass
			// outage — thousands of displays going dark together — held the event loop for seconds.
			const slice = new TimeSlice();
			// First the displays silent past their tenant's cutoff, by their last-seen stamp alone:
			// nothing changes yet.
			const silent = new Map<string, Array<{ display: DisplayDoc; lastSeenAt: string | null }>>();
			for (const display of online) {
				await slice.checkIn();
				const tenant = await tenantOf(display.tenantId);
				const lastSeen = await lastSeenStamp(this.kv, display.id);
				if (lastSeen === null) {
					// Online by its document, unknown to the store (it restarted empty): not silent, unknown.
					await assumeSeen(this.kv, display.id, now);
					// Rare (after a restart), so worth a read: a display deleted since this sweep listed it
					// (its tenant's deletion forgot its keys meanwhile) must not keep what was just seeded.
					if (!(await this.db.displays.findDoc(systemScope(display.tenantId), { _id: display.id }))) {
						await this.forgetDisplay(display.id);
						continue;
					}
					countOnline(tenant.plan);
					continue;
				}
				if (lastSeen >= tenant.cutoff) {
					countOnline(tenant.plan);
					continue;
				}
				const list = silent.get(display.tenantId) ?? [];
				list.push({ display, lastSeenAt: lastSeen === null ? null : new Date(lastSeen).toISOString() });
				silent.set(display.tenantId, list);
			}
			for (const [tenantId, displays] of silent) {
				const tenant = await tenantOf(tenantId);
				// Asleep only when the screen was meant to be off when it went dark (its first missed
				// heartbeat), not merely by the time the sweep noticed: a screen that died before its
				// off time is an outage.
				const darkAt = (lastSeenAt: string | null) => new Date(Math.min(now.getTime(), Date.parse(lastSeenAt ?? now.toISOString()) + this.settings.heartbeatIntervalSec * 1000)).toISOString();
				const power = await this.powerStates(tenantId, displays.map(d => ({ id: d.display.id, at: darkAt(d.lastSeenAt) })));
				for (const { display } of displays) {
					// Yields only between displays: a display's flip, its document and its announcements
					// follow one another without a turn of the event loop (the embedded store answers at
					// once), so no heartbeat of this process lands between them — one that did could
					// announce the return before the outage, and the document would end offline.
					await slice.checkIn();
					const wentOffline = await markOfflineIfSilent(this.kv, display.id, tenant.cutoff);
					if (!wentOffline) {
						countOnline(tenant.plan); // seen since the first look
						continue;
					}
					const { lastSeenAt } = wentOffline;
					const asleep = power[display.id]?.state === "off";
					const scope = systemScope(tenantId);
					// Dark since it was last seen: that is where the outage (or the sleep) starts.
					const at = lastSeenAt ?? now.toISOString();
					if (asleep) {
						await this.db.displays.updateWhere(scope, { _id: display.id }, { status: "offline", ...sleepFields(power[display.id].until, now) });
						await sendToChannel(this.broker, DISPLAY_STATUS_CHANNEL, { id: newId(), tenantId, displayId: display.id, name: display.name, online: false, scheduledOff: true, at });
						continue;
					}
					await this.db.displays.updateWhere(scope, { _id: display.id }, { status: "offline" });
					await sendToChannel(this.broker, DISPLAY_STATUS_CHANNEL, { id: newId(), tenantId, displayId: display.id, name: display.name, online: false, at });
					void emit(this.broker, "devices.display.wentOffline", { tenantId, displayId: display.id, name: display.name, lastSeenAt, at: now.toISOString() });
				}
			}
			await this.wakeSleepers(now, async tenantId => (await tenantOf(tenantId)).cutoff, slice);
			this.displaysOnline.publish(onlineByPlan);

			const stale = await this.db.commands.findDocs(ALL_TENANTS, { status: { $in: ["pending", "delivered"] }, expiresAt: { $lte: now.toISOString() } });
			for (const command of stale) {
				await slice.checkIn();
				await this.db.commands.updateWhere(systemScope(command.tenantId), { _id: command.id }, { status: "expired" });
				await updatePendingCommands(this.kv, command.displayId, pending => withoutCommand(pending, command.id));
			}
		}
	},

	created() {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.displayQuota = new UsageCounter(this.db.devices_usage, {
			resource: "displays",
			measure: tenantId => this.db.displays.countDocs(systemScope(tenantId)),
			onWarning: publishQuotaWarning(this.broker, this.logger)
		});
		this.sweep = null;
		this.heartbeats = opsCounter(this.broker.metrics, OPS_METRICS.heartbeats);
		this.heartbeatChannel = new GroupSender(heartbeats => sendToChannel(this.broker, HEARTBEAT_CHANNEL, { heartbeats }), HEARTBEAT_BATCH_MAX);
		// Stale once the sweep lock could have passed to another node (shared/periodic.ts: 3 intervals).
		this.displaysOnline = new LeaderGauge(opsGauge(this.broker.metrics, OPS_METRICS.displaysOnline), "plan", 3 * this.settings.sweepIntervalMs);
	},

	async started() {
		this.sweep = startPeriodicJob({
			name: "devices-presence-sweep",
			intervalMs: this.settings.sweepIntervalMs,
			kv: this.kv,
			owner: `${this.broker.nodeID}:${newId()}`,
			run: () => this.sweepOnce(),
			onError: err => this.logger.error("Presence sweep failed", err)
		});
	},

	async stopped() {
		await this.sweep?.stop();
		this.displaysOnline.withdraw();
	}
};

export default DevicesService;
