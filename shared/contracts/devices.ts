/** devices: displays, groups, pairing, presence, commands. */
import { Type, type Static } from "@sinclair/typebox";
import type { GroupedAnswer, GroupedCall } from "../group-call";
import { ManifestPower } from "./scheduling";
import { Id, Instant, Nullable, PageOf, type ExportParams, type PageParams, type PageView } from "./views";

// ---- values ------------------------------------------------------------------------------------

export const DISPLAY_STATUSES = ["pending", "online", "offline"] as const;
export const DisplayStatus = Type.Union(DISPLAY_STATUSES.map(s => Type.Literal(s)));
export type DisplayStatus = (typeof DISPLAY_STATUSES)[number];

export const COMMAND_TYPES = ["reboot", "reload", "screenshot", "clear-cache"] as const;
export const CommandType = Type.Union(COMMAND_TYPES.map(t => Type.Literal(t)));
export type CommandType = (typeof COMMAND_TYPES)[number];

/** A command's life: queued, seen by a heartbeat, confirmed by the screen, or past its 24 h. */
export const COMMAND_STATUSES = ["pending", "delivered", "acknowledged", "expired"] as const;
export const CommandStatus = Type.Union(COMMAND_STATUSES.map(s => Type.Literal(s)));
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

/** What a heartbeat reports of the screen's health (each optional; percentages and °C). */
export const DisplayMetrics = Type.Object({
	cpu: Type.Optional(Type.Number()),
	memory: Type.Optional(Type.Number()),
	disk: Type.Optional(Type.Number()),
	temperature: Type.Optional(Type.Number())
});
export type DisplayMetrics = Static<typeof DisplayMetrics>;

// ---- for other services ------------------------------------------------------------------------

/** What scheduling needs of a display to resolve what it plays. */
export const DisplayTargeting = Type.Object({
	id: Id,
	timezone: Nullable(Type.String()),
	tags: Type.Array(Type.String()),
	groupIds: Type.Array(Type.String()),
	defaultPlaylistId: Nullable(Type.String()),
	defaultLayoutId: Nullable(Type.String())
});
export type DisplayTargeting = Static<typeof DisplayTargeting>;

/** Which displays of a tenant: by id, group, tag, default playlist or default layout, or all. */
export interface DisplaySelector {
	displayIds?: string[];
	groupIds?: string[];
	tags?: string[];
	defaultPlaylistIds?: string[];
	defaultLayoutIds?: string[];
	all?: boolean;
}

/** A display's last heartbeat, kept in the key/value store. */
export interface Presence {
	lastSeenAt: string;
	metrics: DisplayMetrics | null;
	appVersion: string | null;
	currentContentId: string | null;
	uptimeSec: number | null;
}

/** The durable heartbeat channel's message (analytics stores it as device health). */
export type HeartbeatMessage = Presence & { tenantId: string; displayId: string; ts: string };

/** What the heartbeat channel carries: the heartbeats of a group commit (see shared/group-send.ts). */
export interface HeartbeatBatch {
	heartbeats: HeartbeatMessage[];
}

/** At most this many heartbeats travel in one channel message. */
export const HEARTBEAT_BATCH_MAX = 500;

/** A command as the screen receives it (heartbeat answer, live stream). */
export const CommandSummary = Type.Object({ id: Id, type: CommandType, createdAt: Instant });
export type CommandSummary = Static<typeof CommandSummary>;

// ---- REST answers --------------------------------------------------------------------------------

/** POST /device/pairing: the code the screen shows and the secret it polls with. */
export const PairingRequested = Type.Object({ pairingId: Id, code: Type.String(), pollSecret: Type.String(), expiresAt: Instant });
export type PairingRequested = Static<typeof PairingRequested>;

/** GET /device/pairing/:pairingId: still waiting, or paired with the device token (handed out once). */
export const PairingPoll = Type.Union([
	Type.Object({ status: Type.Literal("pending") }),
	Type.Object({ status: Type.Literal("paired"), displayId: Id, deviceToken: Type.String(), heartbeatIntervalSec: Type.Integer() })
]);
export type PairingPoll = Static<typeof PairingPoll>;

/**
 * A provisioning key (zero-touch onboarding): screens that present it register themselves as
 * displays of the tenant, with its groups, tags, default playlist and timezone. The key itself
 * is shown once, at creation; the API shows its first characters (`prefix`) to tell keys apart.
 */
export const ProvisioningKeyView = Type.Object({
	id: Id,
	name: Type.String(),
	prefix: Type.String(),
	groupIds: Type.Array(Id),
	tags: Type.Array(Type.String()),
	defaultPlaylistId: Nullable(Id),
	defaultLayoutId: Nullable(Id),
	timezone: Nullable(Type.String()),
	/** At most this many displays register with it (null: only the plan limits them). */
	maxDisplays: Nullable(Type.Integer({ minimum: 1 })),
	/** Displays registered with it so far (re-registrations of a screen count once). */
	registeredDisplays: Type.Integer({ minimum: 0 }),
	expiresAt: Nullable(Instant),
	revokedAt: Nullable(Instant),
	/** "active", or why screens can no longer use it. */
	status: Type.Union([Type.Literal("active"), Type.Literal("expired"), Type.Literal("revoked"), Type.Literal("full")]),
	lastUsedAt: Nullable(Instant),
	createdAt: Instant,
	updatedAt: Instant
});
export type ProvisioningKeyView = Static<typeof ProvisioningKeyView>;
export const ProvisioningKeyPage = PageOf(ProvisioningKeyView);
/** POST /provisioning-keys (201): the only answer that holds `key`. */
export const ProvisioningKeyCreated = Type.Composite([ProvisioningKeyView, Type.Object({ key: Type.String() })]);
export type ProvisioningKeyCreated = Static<typeof ProvisioningKeyCreated>;

export interface ProvisioningKeyFields {
	name: string;
	groupIds?: string[];
	tags?: string[];
	defaultPlaylistId?: string;
	/** Or a layout (not both). */
	defaultLayoutId?: string;
	timezone?: string;
	maxDisplays?: number;
	expiresAt?: string;
}

/** POST /device/register (201): the screen is a display now; the token is for it alone. */
export const DeviceRegistered = Type.Object({ displayId: Id, deviceToken: Type.String(), heartbeatIntervalSec: Type.Integer() });
export type DeviceRegistered = Static<typeof DeviceRegistered>;

/** API.md's display: the stored display with its live presence. */
export const DisplayView = Type.Object({
	id: Id,
	name: Type.String(),
	status: DisplayStatus,
	timezone: Nullable(Type.String()),
	tags: Type.Array(Type.String()),
	groupIds: Type.Array(Id),
	defaultPlaylistId: Nullable(Id),
	/** A layout it plays when nothing is scheduled (the default playlist is then null). */
	defaultLayoutId: Nullable(Id),
	/** Silent inside a scheduled power-off: `offline`, but not an outage (no alert, not in uptime). */
	scheduledOff: Type.Boolean(),
	lastSeenAt: Nullable(Instant),
	metrics: Nullable(DisplayMetrics),
	appVersion: Nullable(Type.String()),
	currentContentId: Nullable(Type.String()),
	model: Nullable(Type.String()),
	resolution: Nullable(Type.String()),
	createdAt: Instant,
	updatedAt: Instant
});
export type DisplayView = Static<typeof DisplayView>;
export const DisplayPage = PageOf(DisplayView);

export const DisplayGroupView = Type.Object({ id: Id, name: Type.String(), description: Nullable(Type.String()), createdAt: Instant, updatedAt: Instant });
export type DisplayGroupView = Static<typeof DisplayGroupView>;
export const DisplayGroupPage = PageOf(DisplayGroupView);

/** POST /displays/:id/commands (202): queued, not carried out yet. */
export const CommandQueued = Type.Object({ id: Id, type: CommandType, status: Type.Literal("pending"), createdAt: Instant });
export type CommandQueued = Static<typeof CommandQueued>;

export const CommandView = Type.Object({
	id: Id,
	type: CommandType,
	status: CommandStatus,
	createdAt: Instant,
	deliveredAt: Nullable(Instant),
	acknowledgedAt: Nullable(Instant),
	expiresAt: Instant,
	result: Nullable(Type.String())
});
export type CommandView = Static<typeof CommandView>;
export const CommandPage = PageOf(CommandView);

/** POST /device/heartbeat: the server's view, so the screen needs no second request. */
export const HeartbeatAnswer = Type.Object({
	serverTime: Instant,
	/** null until scheduling has built the display's manifest. */
	manifestEtag: Nullable(Type.String()),
	heartbeatIntervalSec: Type.Integer(),
	commands: Type.Array(CommandSummary),
	/** The screen's power as of its manifest: off → blank the screen until `until`. null: no power schedule, or not known yet (follow the manifest). */
	power: Nullable(ManifestPower)
});
export type HeartbeatAnswer = Static<typeof HeartbeatAnswer>;

/** A tenant's devices data: displays and commands as the API shows them, groups as stored. */
export const DevicesExport = Type.Object({
	displays: Type.Array(DisplayView),
	groups: Type.Array(Type.Composite([DisplayGroupView, Type.Object({ tenantId: Id })])),
	commands: Type.Array(CommandView),
	provisioningKeys: Type.Array(ProvisioningKeyView)
});
export type DevicesExport = Static<typeof DevicesExport>;

// ---- params ------------------------------------------------------------------------------------

export interface DisplayFields {
	name: string;
	timezone?: string;
	tags?: string[];
	groupIds?: string[];
}

/** PATCH /displays/:id: what may change (null clears the timezone, the default playlist or layout). */
export interface DisplayEdit {
	name?: string;
	timezone?: string | null;
	tags?: string[];
	groupIds?: string[];
	defaultPlaylistId?: string | null;
	defaultLayoutId?: string | null;
}

export interface DisplayListParams extends PageParams {
	status?: DisplayStatus;
	tag?: string;
	groupId?: string;
	q?: string;
}

/** What a heartbeat sends; what it leaves out keeps its last known value. */
export interface HeartbeatReport {
	metrics?: DisplayMetrics;
	appVersion?: string;
	currentContentId?: string;
	uptimeSec?: number;
}

// ---- actions and events ------------------------------------------------------------------------

export interface DevicesActions {
	// pairing (the screen's side)
	"devices.requestPairing": { params: { hardwareId?: string; model?: string; resolution?: string }; result: PairingRequested };
	"devices.pairingStatus": { params: { pairingId: string }; result: PairingPoll };
	"devices.register": { params: { provisioningKey: string; hardwareId: string; name?: string; model?: string; resolution?: string }; result: DeviceRegistered };
	"devices.createProvisioningKey": { params: ProvisioningKeyFields; result: ProvisioningKeyCreated };
	"devices.listProvisioningKeys": { params: PageParams; result: PageView<ProvisioningKeyView> };
	"devices.getProvisioningKey": { params: { id: string }; result: ProvisioningKeyView };
	"devices.revokeProvisioningKey": { params: { id: string }; result: null };
	// displays and groups (the CMS's side)
	"devices.pair": { params: DisplayFields & { code: string }; result: DisplayView };
	"devices.list": { params: DisplayListParams; result: PageView<DisplayView> };
	"devices.get": { params: { id: string }; result: DisplayView };
	"devices.update": { params: DisplayEdit & { id: string }; result: DisplayView };
	"devices.remove": { params: { id: string }; result: null };
	"devices.createGroup": { params: { name: string; description?: string }; result: DisplayGroupView };
	"devices.listGroups": { params: PageParams; result: PageView<DisplayGroupView> };
	"devices.getGroup": { params: { id: string }; result: DisplayGroupView };
	"devices.updateGroup": { params: { id: string; name?: string; description?: string | null }; result: DisplayGroupView };
	"devices.removeGroup": { params: { id: string }; result: null };
	"devices.sendCommand": { params: { id: string; type: CommandType }; result: CommandQueued };
	"devices.commands": { params: PageParams & { id: string }; result: PageView<CommandView> };
	// the device API
	"devices.heartbeat": { params: HeartbeatReport; result: HeartbeatAnswer };
	/** Many heartbeats at once: the gateway's group call (shared/group-call.ts). */
	"devices.heartbeatGroup": { params: { calls: GroupedCall[] }; result: Array<GroupedAnswer<HeartbeatAnswer>> };
	"devices.ackCommand": { params: { id: string; result?: string }; result: null };
	// for other services
	"devices.targeting": { params: { id: string }; result: DisplayTargeting };
	/** A display of the caller's tenant by name, with its groups' names (analytics stores them with each play). */
	"devices.describe": { params: { id: string }; result: { id: string; name: string; groups: Array<{ id: string; name: string }> } };
	/** A page of a tenant's displays matching a selector, in id order after `afterId`. */
	"devices.displaysFor": { params: DisplaySelector & { tenantId: string; afterId?: string; limit: number }; result: { rows: DisplayTargeting[]; next: string | null } };
	/** Unsets a deleted playlist as default; answers how many displays had it. */
	"devices.clearDefaultPlaylist": { params: { tenantId: string; playlistId: string }; result: number };
	/** Unsets a deleted layout as default; answers how many displays had it. */
	"devices.clearDefaultLayout": { params: { tenantId: string; layoutId: string }; result: number };
	/** Which of these ids name no display or group of the caller's tenant. */
	"devices.unknownTargets": { params: { displayIds: string[]; groupIds: string[] }; result: { displayIds: string[]; groupIds: string[] } };
	/** Usage of the tenant's displays from its counter. */
	"devices.quotaUsage": { params: { tenantId: string }; result: number };
	"devices.exportTenantData": { params: ExportParams; result: DevicesExport };
}

export interface DevicesEvents {
	"devices.display.paired": { tenantId: string; displayId: string };
	"devices.display.updated": { tenantId: string; displayIds: string[]; fields: string[] };
	"devices.display.deleted": { tenantId: string; displayId: string };
	"devices.group.deleted": { tenantId: string; groupId: string };
	"devices.display.cameOnline": { tenantId: string; displayId: string; at: string };
	/** `since`: when the outage began, when not when it was last seen (the end of a scheduled power-off it stayed dark through). */
	"devices.display.wentOffline": { tenantId: string; displayId: string; name: string; lastSeenAt: string | null; at: string; since?: string };
	"devices.command.created": { tenantId: string; displayId: string; command: CommandSummary };
	"devices.commands.delivered": { tenantId: string; displayId: string; ids: string[]; at: string };
}
