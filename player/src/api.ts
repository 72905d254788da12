/**
 * The device API as the player speaks it (docs/api.md, "Device API"): same origin, JSON, the
 * device token as a Bearer header. Three outcomes the rest of the player acts on:
 * - `Unauthorized`: the server refused the token (display deleted or token revoked) → pair again;
 * - `Offline`: no answer at all (network or server down) → keep playing what is cached;
 * - `HttpError`: any other answer that is not a success, with the API's error body.
 */
import type { Manifest, PlayRecord } from "./model.js";
import { asManifest } from "./model.js";

const BASE = "/api/v1";
/** No request may hang the player; the live stream is the only long one (and has no timeout). */
const TIMEOUT_MS = 15_000;

export class Unauthorized extends Error {}
export class Offline extends Error {}
export class HttpError extends Error {
	constructor(
		readonly status: number,
		readonly body: { error?: { type?: string; message?: string; data?: unknown } } | null
	) {
		super(body?.error?.message ?? `HTTP ${status}`);
	}
}

export interface Registration {
	displayId: string;
	deviceToken: string;
	heartbeatIntervalSec: number;
}
export interface PairingRequest {
	pairingId: string;
	code: string;
	pollSecret: string;
	expiresAt: string;
}
export type PairingPoll = { status: "pending" } | ({ status: "paired" } & Registration);
export interface Command {
	id: string;
	type: string;
	createdAt: string;
}
export interface HeartbeatAnswer {
	serverTime: string;
	manifestEtag: string | null;
	heartbeatIntervalSec: number;
	commands: Command[];
	/** The screen's power state as the server knows it last (model.ts asPower narrows it); null = the manifest's. */
	power?: unknown;
}
export interface HeartbeatBody {
	metrics?: { cpu?: number; memory?: number; disk?: number };
	appVersion?: string;
	currentContentId?: string;
	uptimeSec?: number;
}

/**
 * Whether the server answers, as the latest request to finish says, except that a request that
 * fails after a later one succeeded (it was sent before the server came back) does not count.
 */
export const connectivity = {
	online: true,
	listener: null as ((online: boolean) => void) | null,
	lastAnswerSentAt: 0,
	report(answered: boolean, sentAt: number): void {
		if (answered) this.lastAnswerSentAt = Math.max(this.lastAnswerSentAt, sentAt);
		else if (sentAt < this.lastAnswerSentAt) return;
		if (answered !== this.online) {
			this.online = answered;
			this.listener?.(answered);
		}
	}
};

async function send(path: string, init: RequestInit & { token?: string | null; timeoutMs?: number }): Promise<Response> {
	const sentAt = performance.now();
	const headers = new Headers(init.headers);
	if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
	if (init.body !== undefined && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
	let res: Response;
	try {
		res = await fetch(path.startsWith("/") ? path : `${BASE}/${path}`, {
			...init,
			headers,
			cache: "no-store",
			signal: init.signal ?? AbortSignal.timeout(init.timeoutMs ?? TIMEOUT_MS)
		});
	} catch (err) {
		// An aborted live stream is the player closing it, not the server going away.
		if (!init.signal?.aborted) connectivity.report(false, sentAt);
		throw new Offline(err instanceof Error ? err.message : String(err));
	}
	// A gateway that is up but whose services are not (restart, deploy) is as good as offline.
	const down = res.status === 502 || res.status === 503 || res.status === 504;
	connectivity.report(!down, sentAt);
	if (res.status === 401 && init.token) throw new Unauthorized("the device token was refused");
	if (res.status === 502 || res.status === 504) throw new Offline(`HTTP ${res.status}`);
	if (!res.ok && res.status !== 304) {
		const body = await res.json().catch(() => null);
		throw new HttpError(res.status, body);
	}
	return res;
}

function json<T>(res: Response): Promise<T> {
	return res.json() as Promise<T>;
}

export const api = {
	requestPairing(hardwareId: string): Promise<PairingRequest> {
		return send("device/pairing", { method: "POST", body: JSON.stringify({ hardwareId, model: "Marquee web player", resolution: screenResolution() }) }).then(json<PairingRequest>);
	},

	pollPairing(pairingId: string, pollSecret: string): Promise<PairingPoll> {
		return send(`device/pairing/${encodeURIComponent(pairingId)}`, { headers: { "X-Pairing-Secret": pollSecret } }).then(json<PairingPoll>);
	},

	register(provisioningKey: string, hardwareId: string): Promise<Registration> {
		return send("device/register", {
			method: "POST",
			body: JSON.stringify({ provisioningKey, hardwareId, model: "Marquee web player", resolution: screenResolution() })
		}).then(json<Registration>);
	},

	heartbeat(token: string, body: HeartbeatBody): Promise<HeartbeatAnswer> {
		return send("device/heartbeat", { method: "POST", token, body: JSON.stringify(body) }).then(json<HeartbeatAnswer>);
	},

	/** The manifest, or null when `etag` is still current (304). */
	async manifest(token: string, etag: string | null): Promise<Manifest | null> {
		const res = await send("device/manifest", { token, headers: etag ? { "If-None-Match": etag } : {} });
		if (res.status === 304) return null;
		const manifest = asManifest(await res.json().catch(() => null));
		if (!manifest) throw new HttpError(res.status, { error: { message: "The manifest could not be read" } });
		return manifest;
	},

	/** The bytes of a manifest item (`url` is the item's /api/v1/device/content/:id path). */
	content(token: string, url: string): Promise<Response> {
		return send(url, { token, timeoutMs: 10 * 60_000 });
	},

	playback(token: string, events: PlayRecord[]): Promise<{ accepted: number; duplicates: number }> {
		return send("device/playback", { method: "POST", token, body: JSON.stringify({ events }) }).then(json<{ accepted: number; duplicates: number }>);
	},

	async ack(token: string, commandId: string, result: string): Promise<void> {
		await send(`device/commands/${encodeURIComponent(commandId)}/ack`, { method: "POST", token, body: JSON.stringify({ result }) });
	},

	/** Opens the live stream; the caller reads the body and aborts `signal` to close it. */
	events(token: string, signal: AbortSignal): Promise<Response> {
		return send("device/events", { token, signal, headers: { Accept: "text/event-stream" } });
	}
};

function screenResolution(): string {
	return `${Math.round(screen.width * devicePixelRatio)}x${Math.round(screen.height * devicePixelRatio)}`;
}
