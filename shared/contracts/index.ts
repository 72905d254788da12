/**
 * The contracts between services: every action one service calls on another, every event and
 * every durable channel, with their payloads and answers as types — and the typed `call`, `emit`,
 * `broadcast` and `sendToChannel` that services use instead of the broker's string-typed ones, so
 * a misspelt name or a wrong payload field fails `tsc` (test/types/contracts.typetest.ts shows it).
 *
 * One file per owning service (auth.ts, tenants.ts, ...): what it answers and what it emits.
 * Services import these modules and shared code, never another service's file. Response bodies
 * of REST actions are TypeBox schemas here too: the same value gives the TypeScript type the
 * handler returns and the JSON Schema the OpenAPI document publishes, so the two cannot drift.
 */
import type { CallingOptions, Context, ServiceBroker } from "moleculer";
import type { AuthActions } from "./auth";
import type { BillingActions } from "./billing";
import type { DevicesActions, DevicesEvents, HeartbeatBatch, HeartbeatMessage } from "./devices";
import type { MediaActions, MediaEvents } from "./media";
import type { EmailRequest, NotificationsActions, PlatformEvent, WebhookEventType } from "./notifications";
import type { SchedulingActions, SchedulingEvents } from "./scheduling";
import type { TenantDeleted, TenantsActions, TenantsEvents } from "./tenants";
import type { AuditRecord } from "./audit";
import type { AnalyticsActions, DisplayStatusChange, PlaybackBatch } from "./analytics";
import { AUDIT_CHANNEL, DISPLAY_STATUS_CHANNEL, EMAIL_CHANNEL, EVENT_CHANNEL, HEARTBEAT_CHANNEL, LEGACY_HEARTBEAT_CHANNEL, PLAYBACK_CHANNEL, TENANT_DELETED_CHANNEL } from "../channels";
import { newId } from "../ids";

export * from "./analytics";
export * from "./archive";
export * from "./audit";
export * from "./auth";
export * from "./billing";
export * from "./devices";
export * from "./media";
export * from "./notifications";
export * from "./scheduling";
export * from "./tenants";
export * from "./views";

/** Every action callable between services: `name → { params, result }`. */
export interface Actions extends AnalyticsActions, AuthActions, BillingActions, DevicesActions, MediaActions, NotificationsActions, SchedulingActions, TenantsActions {}

/** Every broadcast or emitted event: `name → payload`. */
export interface Events extends DevicesEvents, MediaEvents, SchedulingEvents, TenantsEvents {}

/** Every durable channel: `name → message`. */
export interface Channels {
	[AUDIT_CHANNEL]: AuditRecord;
	[HEARTBEAT_CHANNEL]: HeartbeatBatch;
	[LEGACY_HEARTBEAT_CHANNEL]: HeartbeatMessage;
	[TENANT_DELETED_CHANNEL]: TenantDeleted;
	[EMAIL_CHANNEL]: EmailRequest;
	[EVENT_CHANNEL]: PlatformEvent;
	[PLAYBACK_CHANNEL]: PlaybackBatch;
	[DISPLAY_STATUS_CHANNEL]: DisplayStatusChange;
}

export type ActionName = keyof Actions;
export type EventName = keyof Events;
export type ChannelName = keyof Channels;

export type Params<N extends ActionName> = Actions[N]["params"];
export type Result<N extends ActionName> = Actions[N]["result"];

/** The context an action handler of the contract receives: `handler(ctx: ActionCtx<"tenants.find">)`. */
export type ActionCtx<N extends ActionName, M extends object = object> = Context<Params<N>, M>;
/** The context an event handler receives: `handler(ctx: EventCtx<"devices.display.deleted">)`. */
export type EventCtx<N extends EventName> = Context<Events[N]>;
/** The context a channel handler receives. */
export type ChannelCtx<N extends ChannelName> = Context<Channels[N]>;

/** Anything that can call, emit and broadcast: a context (keeps meta and tracing) or the broker. */
type Via = Pick<Context, "call" | "emit" | "broadcast"> | Pick<ServiceBroker, "call" | "emit" | "broadcast">;

type UntypedCall = (name: string, params: unknown, opts?: CallingOptions) => Promise<unknown>;
type UntypedEmit = (name: string, payload: unknown, opts?: Record<string, unknown>) => Promise<void> | void;

/** `ctx.call` with the contract's names, params and answer. */
export function call<N extends ActionName>(via: Via, name: N, params: Params<N>, opts?: CallingOptions): Promise<Result<N>> {
	return (via.call as UntypedCall).call(via, name, params, opts) as Promise<Result<N>>;
}

/** `ctx.emit` (one handler per service group receives it) with the contract's names and payloads. */
export function emit<N extends EventName>(via: Via, name: N, payload: Events[N]): Promise<void> {
	return Promise.resolve((via.emit as UntypedEmit).call(via, name, payload));
}

/** `ctx.broadcast` (every instance of every service receives it) with the contract's names and payloads. */
export function broadcast<N extends EventName>(via: Via, name: N, payload: Events[N]): Promise<void> {
	return Promise.resolve((via.broadcast as UntypedEmit).call(via, name, payload));
}

/** What @moleculer/channels adds to the broker (its typings do not declare it). */
interface ChannelBroker {
	sendToChannel(channel: string, payload: unknown, opts?: Record<string, unknown>): Promise<void>;
}

/** Publishes on a durable channel; resolves once the channel has accepted the message. */
export async function sendToChannel<N extends ChannelName>(broker: ServiceBroker, name: N, message: Channels[N], opts?: Record<string, unknown>): Promise<void> {
	const send = (broker as ServiceBroker & Partial<ChannelBroker>).sendToChannel;
	if (!send) throw new Error("Durable channels are not set up on this broker (moleculer.config.ts adds the Channels middleware)");
	await send.call(broker, name, message, opts);
}

/**
 * Publishes a fact integrators may subscribe to (webhooks) on the durable event channel: the
 * notifications service stores it before the channel is acknowledged. Resolves once the channel
 * has it, so a request that changed something does not answer before its event is safe.
 */
export function publishEvent(broker: ServiceBroker, tenantId: string, type: WebhookEventType, data: Record<string, unknown>): Promise<void> {
	const event: PlatformEvent = { id: `evt_${newId()}`, tenantId, type, timestamp: new Date().toISOString(), data };
	return sendToChannel(broker, EVENT_CHANNEL, event);
}
