/**
 * The device live stream (`GET /api/v1/device/events`, server-sent events): the streams open on
 * this gateway replica, at most one per display, and the SSE wire format. No broker in here:
 * the gateway opens a stream from its alias handler once the device token is verified, and
 * forwards the broadcast events it receives with `send` / `end`.
 *
 * Wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * - on open: `retry: <ms>` and the comment `: connected`;
 * - every `keepAliveMs`: the comment `: keep-alive` (proxies and NATs drop silent connections);
 * - an event: `event: <name>\ndata: <one line of JSON>\nid: <uuid>\n\n`.
 * A stream ends with an event saying why when the display has to act on it: `replaced` (a newer
 * connection of the same display took over: do not reconnect) or `revoked` (the display or its
 * token is gone). When the server drains it just ends; the client reconnects after `retry` ms.
 */
import { COMMAND_TYPES, type CommandType, type Events } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import type { Principal } from "../../shared/rbac";

/** The gauge of streams open on a gateway replica (/metrics). */
export const DEVICE_STREAMS_METRIC = "marquee_device_streams_open";

/** What the registry needs of a response: `http.ServerResponse` fits, tests pass fakes. */
export interface StreamResponse {
	writeHead(status: number, headers: Record<string, string>): unknown;
	write(chunk: string): boolean;
	end(): unknown;
	destroy(): unknown;
	once(event: "close", listener: () => void): unknown;
	readonly writableEnded: boolean;
	readonly destroyed: boolean;
	/** Bytes written but not yet handed to the socket (a slow reader makes it grow). */
	readonly writableLength: number;
}

export interface DeviceIdentity {
	tenantId: string;
	displayId: string;
}

export interface StreamSettings {
	/** Interval of keep-alive comments. */
	keepAliveMs: number;
	/** Reconnection delay the client is told to use (`retry:`). */
	retryMs: number;
	/** How often each stream's credential is checked again (`verify`); 0 = never. */
	recheckMs: number;
	/** Unsent bytes a client may leave behind before its stream is dropped. */
	maxBufferedBytes: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = {
	keepAliveMs: 25_000,
	retryMs: 5_000,
	recheckMs: 5 * 60_000,
	maxBufferedBytes: 1024 * 1024
};

/** The response headers of a stream. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
	"Content-Type": "text/event-stream; charset=utf-8",
	"Cache-Control": "no-cache, no-transform",
	Connection: "keep-alive",
	"X-Accel-Buffering": "no"
};

const EVENT_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/** One SSE event; `data` is JSON on one line (JSON.stringify escapes every line break). */
export function formatEvent(name: string, data: unknown, id: string = newId()): string {
	if (!EVENT_NAME.test(name)) throw new Error(`Invalid SSE event name: ${JSON.stringify(name)}`);
	if (/[\r\n]/.test(id)) throw new Error("Invalid SSE event id");
	return `event: ${name}\ndata: ${JSON.stringify(data ?? null)}\nid: ${id}\n\n`;
}

/** A comment line (ignored by clients), ending the block. */
export function formatComment(text: string): string {
	return `: ${text.replace(/[\r\n]+/g, " ")}\n\n`;
}

/** What a stream ends with, when the client needs to know why. */
export interface EndEvent {
	name: "replaced" | "revoked";
	reason: string;
}

export const REPLACED: EndEvent = { name: "replaced", reason: "a newer connection of this display took over" };
export const REVOKED: EndEvent = { name: "revoked", reason: "this display or its token is no longer valid" };

export interface DeviceStreamOptions {
	/** Read on every `open`, so a changed setting applies to the next stream. */
	settings?: () => Partial<StreamSettings>;
	/** Event ids (default: UUID v7). */
	newId?: () => string;
	/** Told the number of open streams whenever it changes (the gauge). */
	onCountChange?: (open: number) => void;
	/**
	 * Checks a stream's credential again every `recheckMs`: false ends it with `revoked`; a
	 * rejection (say, the auth service is down) keeps it until the next check.
	 */
	verify?: (connection: DeviceConnection) => Promise<boolean>;
}

/** One open stream. Created by `DeviceStreamRegistry.open`. */
export class DeviceConnection {
	readonly openedAt = new Date();
	private readonly timers: NodeJS.Timeout[] = [];
	private ended = false;

	constructor(
		readonly tenantId: string,
		readonly displayId: string,
		/** The token the stream was opened with, for `verify`. */
		readonly credential: string | undefined,
		private readonly res: StreamResponse,
		private readonly settings: StreamSettings,
		private readonly nextId: () => string,
		private readonly onEnded: (connection: DeviceConnection) => void
	) {}

	get open(): boolean {
		return !this.ended;
	}

	/** Writes `chunk`; a stream that is gone or whose client stopped reading ends instead. */
	write(chunk: string): boolean {
		if (this.ended) return false;
		if (this.res.writableEnded || this.res.destroyed) {
			this.finish();
			return false;
		}
		this.res.write(chunk);
		if (this.res.writableLength > this.settings.maxBufferedBytes) {
			this.res.destroy();
			this.finish();
			return false;
		}
		return true;
	}

	send(name: string, data: unknown): boolean {
		return this.write(formatEvent(name, data, this.nextId()));
	}

	/** Ends the stream, after `event` when given. Idempotent. */
	close(event?: EndEvent): void {
		if (this.ended) return;
		if (event) this.write(formatEvent(event.name, { reason: event.reason }, this.nextId()));
		if (!this.res.writableEnded && !this.res.destroyed) this.res.end();
		this.finish();
	}

	/** Headers, the preamble, the timers; then the stream waits for events. */
	start(headers: Record<string, string>): void {
		this.res.once("close", () => this.finish());
		this.res.writeHead(200, { ...headers, ...SSE_HEADERS });
		this.write(preamble(this.settings));
		if (this.settings.keepAliveMs > 0) this.every(this.settings.keepAliveMs, () => this.write(formatComment("keep-alive")));
	}

	/** Rechecks the credential every `everyMs`, one check at a time. */
	startRechecks(everyMs: number, verify: (connection: DeviceConnection) => Promise<boolean>): void {
		let checking = false;
		this.every(everyMs, () => {
			if (checking) return;
			checking = true;
			verify(this).then(
				valid => {
					checking = false;
					if (!valid) this.close(REVOKED);
				},
				() => {
					checking = false;
				}
			);
		});
	}

	private every(ms: number, fn: () => void): void {
		const timer = setInterval(fn, ms);
		timer.unref();
		this.timers.push(timer);
	}

	private finish(): void {
		if (this.ended) return;
		this.ended = true;
		for (const timer of this.timers) clearInterval(timer);
		this.timers.length = 0;
		this.onEnded(this);
	}
}

/** The streams open on this gateway replica, one per display (keyed by tenant and display). */
export class DeviceStreamRegistry {
	private readonly connections = new Map<string, DeviceConnection>();
	private shutDown = false;

	constructor(private readonly options: DeviceStreamOptions = {}) {}

	get size(): number {
		return this.connections.size;
	}

	/** True once `shutdown` ran: `open` ends new streams at once. */
	get closed(): boolean {
		return this.shutDown;
	}

	get(tenantId: string, displayId: string): DeviceConnection | undefined {
		return this.connections.get(key(tenantId, displayId));
	}

	list(): DeviceConnection[] {
		return [...this.connections.values()];
	}

	/**
	 * Starts a stream on `res` for a verified device: status 200, the SSE headers (plus `headers`,
	 * e.g. rate-limit ones) and the preamble. An older stream of the same display ends with
	 * `replaced` first. Once the registry is shut down (the gateway drains), the stream ends right
	 * after the preamble, as the open ones did, and null is returned: the client reconnects after
	 * `retry`, to another replica.
	 */
	open(identity: DeviceIdentity & { credential?: string }, res: StreamResponse, headers: Record<string, string> = {}): DeviceConnection | null {
		const settings = { ...DEFAULT_STREAM_SETTINGS, ...withoutUndefined(this.options.settings?.() ?? {}) };
		if (this.shutDown) {
			res.writeHead(200, { ...headers, ...SSE_HEADERS });
			res.write(preamble(settings));
			res.end();
			return null;
		}
		const id = key(identity.tenantId, identity.displayId);
		this.connections.get(id)?.close(REPLACED);
		const connection = new DeviceConnection(
			identity.tenantId,
			identity.displayId,
			identity.credential,
			res,
			settings,
			this.options.newId ?? newId,
			ended => this.forget(id, ended)
		);
		this.connections.set(id, connection);
		this.changed();
		connection.start(headers);
		const verify = this.options.verify;
		if (verify && settings.recheckMs > 0 && connection.open) connection.startRechecks(settings.recheckMs, verify);
		return connection;
	}

	/** Writes an event to the display's stream, if it is open here and belongs to `tenantId`. */
	send(tenantId: string, displayId: string, name: string, data: unknown): boolean {
		const connection = this.connections.get(key(tenantId, displayId));
		if (!connection || connection.tenantId !== tenantId || connection.displayId !== displayId) return false;
		return connection.send(name, data);
	}

	/** Ends the display's stream (if open here and of `tenantId`) with `event`. */
	end(tenantId: string, displayId: string, event: EndEvent = REVOKED): boolean {
		const connection = this.connections.get(key(tenantId, displayId));
		if (!connection || connection.tenantId !== tenantId || connection.displayId !== displayId) return false;
		connection.close(event);
		return true;
	}

	/** Ends every stream (the clients reconnect after `retry`); returns how many there were. */
	closeAll(): number {
		const all = this.list();
		for (const connection of all) connection.close();
		return all.length;
	}

	/** Refuses new streams from now on and ends the open ones. */
	shutdown(): number {
		this.shutDown = true;
		return this.closeAll();
	}

	private forget(id: string, connection: DeviceConnection): void {
		// A replaced stream must not take its successor out of the table.
		if (this.connections.get(id) !== connection) return;
		this.connections.delete(id);
		this.changed();
	}

	private changed(): void {
		this.options.onCountChange?.(this.connections.size);
	}
}

/** The first write of a stream: the reconnection delay and a comment. */
function preamble(settings: StreamSettings): string {
	return `retry: ${Math.max(0, Math.floor(settings.retryMs))}\n${formatComment("connected")}`;
}

function key(tenantId: string, displayId: string): string {
	return `${tenantId}\u0000${displayId}`;
}

function withoutUndefined(settings: Partial<StreamSettings>): Partial<StreamSettings> {
	return Object.fromEntries(Object.entries(settings).filter(([, value]) => typeof value === "number" && Number.isFinite(value)));
}

// ---- broadcast events the gateway forwards ---------------------------------------------------
//
// Their payloads are the contract's (shared/contracts), but they come from other services over
// the transporter, possibly from a replica running another version: each is checked before it
// reaches a stream, and one that does not fit is dropped (and logged by the gateway).

const isRecord = (value: unknown): value is Record<string, unknown> =>
	typeof value === "object" && value !== null && !Array.isArray(value);

const isId = (value: unknown): value is string => typeof value === "string" && value.length > 0 && value.length <= 128;

const isCommandType = (value: unknown): value is CommandType => typeof value === "string" && (COMMAND_TYPES as readonly string[]).includes(value);

/** `devices.command.created` → SSE `command` with the command as data. */
export type CommandCreated = Events["devices.command.created"];

/** The payload as it arrived, checked against the contract; null when it does not fit. */
export function parseCommandCreated(payload: unknown): CommandCreated | null {
	if (!isRecord(payload) || !isId(payload.tenantId) || !isId(payload.displayId)) return null;
	const command = payload.command;
	if (!isRecord(command) || !isId(command.id) || !isCommandType(command.type) || typeof command.createdAt !== "string") return null;
	// The command goes down the stream as it was sent (a newer sender may add fields).
	return { tenantId: payload.tenantId, displayId: payload.displayId, command: { ...command, id: command.id, type: command.type, createdAt: command.createdAt } };
}

/** `scheduling.manifest.changed` → SSE `manifest` `{etag}` to each listed display. */
export type ManifestChanged = Events["scheduling.manifest.changed"];

/** The payload as it arrived, checked against the contract: unusable ids and etags are left out. */
export function parseManifestChanged(payload: unknown): ManifestChanged | null {
	if (!isRecord(payload) || !isId(payload.tenantId) || !Array.isArray(payload.displayIds)) return null;
	const displayIds = [...new Set(payload.displayIds.filter(isId))];
	const etags: Record<string, string> = {};
	if (isRecord(payload.etags)) {
		for (const [displayId, etag] of Object.entries(payload.etags)) if (typeof etag === "string") etags[displayId] = etag;
	}
	return { tenantId: payload.tenantId, displayIds, etags };
}

/** The data of the `manifest` event for one display. */
export function manifestEventData(change: ManifestChanged, displayId: string): { etag: string | null } {
	return { etag: Object.prototype.hasOwnProperty.call(change.etags, displayId) ? change.etags[displayId] : null };
}

/** `devices.display.deleted` → the display's stream ends with `revoked`. */
export type DisplayDeleted = Events["devices.display.deleted"];

export function parseDisplayDeleted(payload: unknown): DisplayDeleted | null {
	if (!isRecord(payload) || !isId(payload.tenantId) || !isId(payload.displayId)) return null;
	return { tenantId: payload.tenantId, displayId: payload.displayId };
}

/** Whether a stream's token still names the device the stream was opened for. */
export function isSameDevice(principal: Principal | null, identity: DeviceIdentity): boolean {
	return principal?.kind === "device" && principal.tenantId === identity.tenantId && principal.displayId === identity.displayId;
}
