/**
 * The Marquee web player: any browser opened at /player/ becomes a screen.
 *
 * - Without a device token it pairs: shows a code (and a QR code of it) until an admin pairs it,
 *   or registers at once with `?provisioningKey=mpk_…` (zero-touch).
 * - With one it plays: the last manifest from storage at once (offline first), then the server's;
 *   heartbeats at the interval the server gives, the live stream for manifest changes and
 *   commands, a timer for `validUntil`, and the outbox of plays sent to POST /device/playback.
 * - A refused token (display deleted, token revoked) returns it to pairing by itself.
 *
 * The body's `data-state` says which screen shows ("pairing" | "playing"), `data-online` whether
 * the server answers, `data-content-id` what is on screen.
 */
import { api, connectivity, HttpError, Offline, Unauthorized, type Command, type HeartbeatBody } from "./api.js";
import { clearAll, ensure, evictExcept, warm } from "./content-cache.js";
import { isDownloaded, mediaToKeep, refetchDelay, rejectedIndexes, type Manifest, type PlayRecord } from "./model.js";
import { Playback } from "./playback.js";
import { outbox, state } from "./store.js";
import { LiveStream } from "./stream.js";

const APP_VERSION = "marquee-web-player/1.0.0";
/** How often plays are sent (sooner when many are waiting), and the most per request (the API's limit). */
const FLUSH_MS = 10_000;
const FLUSH_BATCH = 500;
const FLUSH_EARLY_AT = 50;
/** How often a pending pairing is polled. */
const PAIRING_POLL_MS = 2_000;

const $ = <T extends HTMLElement>(id: string): T => {
	const el = document.getElementById(id);
	if (!el) throw new Error(`#${id} missing from the page`);
	return el as T;
};

function sleep(ms: number): Promise<void> {
	return new Promise(resolve => setTimeout(resolve, ms));
}

function retryAfterMs(err: unknown, fallback: number): number {
	return err instanceof HttpError && err.status === 429 ? Math.max(fallback, 5_000) : fallback;
}

class Player {
	private readonly playback: Playback;
	private token: string | null = null;
	private stream: LiveStream | null = null;
	private timers = new Map<string, ReturnType<typeof setTimeout>>();
	/** Server time − local time, from the heartbeat's `serverTime` (play records and `validUntil` use it). */
	private serverOffsetMs = 0;
	private flushing = false;
	private refreshing: Promise<void> | null = null;
	/** Bumped on sign-out: loops of the old session stop. */
	private session = 0;

	constructor() {
		this.playback = new Playback($("stage"), {
			now: () => Date.now() + this.serverOffsetMs,
			onPlayed: play => this.recordPlay(play)
		});
	}

	async boot(): Promise<void> {
		void registerServiceWorker();
		keepScreenOn();
		connectivity.listener = online => this.setOnline(online);
		window.addEventListener("online", () => {
			void this.heartbeat();
			void this.flush();
		});
		const token = state.token;
		if (token) return this.play(token);
		const key = new URLSearchParams(location.search).get("provisioningKey");
		if (key) {
			const registered = await this.register(key);
			if (registered) return;
		}
		return this.pair();
	}

	// ---- pairing ------------------------------------------------------------------------------

	/** Zero-touch: registers with the provisioning key; false when the key was refused. */
	private async register(key: string): Promise<boolean> {
		this.show("pairing");
		for (;;) {
			try {
				const r = await api.register(key, state.hardwareId);
				state.signIn(r.displayId, r.deviceToken, r.heartbeatIntervalSec);
				await this.play(r.deviceToken);
				return true;
			} catch (err) {
				if (err instanceof Offline || (err instanceof HttpError && (err.status === 429 || err.status >= 500))) {
					this.pairingMessage("Waiting for the server…");
					await sleep(retryAfterMs(err, 5_000));
					continue;
				}
				this.pairingMessage(`This screen could not register: ${err instanceof Error ? err.message : String(err)}. Pair it with the code below instead.`);
				return false;
			}
		}
	}

	private async pair(): Promise<void> {
		const session = this.session;
		this.show("pairing");
		while (session === this.session) {
			let pairing;
			try {
				pairing = await api.requestPairing(state.hardwareId);
			} catch (err) {
				this.pairingCode(null);
				this.pairingMessage("Waiting for the server…");
				await sleep(retryAfterMs(err, 5_000));
				continue;
			}
			this.pairingCode(pairing.code);
			const expires = Date.parse(pairing.expiresAt);
			while (session === this.session && Date.now() < expires) {
				await sleep(PAIRING_POLL_MS);
				try {
					const poll = await api.pollPairing(pairing.pairingId, pairing.pollSecret);
					if (poll.status === "paired") {
						state.signIn(poll.displayId, poll.deviceToken, poll.heartbeatIntervalSec);
						return this.play(poll.deviceToken);
					}
				} catch (err) {
					// Gone (expired, or paired to a display deleted at once): ask for a new code.
					if (err instanceof HttpError && err.status === 404) break;
					this.pairingMessage("Waiting for the server…");
				}
			}
		}
	}

	private pairingCode(code: string | null): void {
		$("code").textContent = code ? `${code.slice(0, 3)} ${code.slice(3)}` : "······";
		const qr = $<HTMLImageElement>("qr");
		if (code) qr.src = `/player/qr.svg?code=${encodeURIComponent(code)}`;
		qr.hidden = !code;
		if (code) this.pairingMessage("");
	}

	private pairingMessage(text: string): void {
		$("pairing-message").textContent = text;
	}

	// ---- playing ------------------------------------------------------------------------------

	private async play(token: string): Promise<void> {
		this.token = token;
		this.show("playing");
		const cached = state.manifest;
		if (cached && cached.displayId === state.displayId) await this.apply(cached);
		this.stream = new LiveStream(token, {
			onEvent: event => this.onStreamEvent(event.event, event.data),
			onConnected: up => {
				// Whatever changed while the stream was down.
				if (up) void this.refresh();
			},
			onRevoked: () => void this.signOut()
		});
		this.stream.start();
		void this.refresh();
		void this.heartbeat();
		this.every("flush", FLUSH_MS, () => this.flush());
	}

	private onStreamEvent(name: string, data: string): void {
		let payload: unknown = null;
		try {
			payload = JSON.parse(data);
		} catch {
			return;
		}
		if (name === "manifest") {
			const etag = typeof payload === "object" && payload !== null && "etag" in payload ? payload.etag : undefined;
			if (etag !== this.playback.etag) void this.refresh();
		} else if (name === "command" && isCommand(payload)) {
			void this.command(payload);
		}
	}

	/** Fetches the manifest (304 when unchanged) and plays a new one. One fetch at a time. */
	private refresh(): Promise<void> {
		this.refreshing ??= this.fetchManifest().finally(() => (this.refreshing = null));
		return this.refreshing;
	}

	private async fetchManifest(): Promise<void> {
		const token = this.token;
		if (!token) return;
		try {
			const manifest = await api.manifest(token, this.playback.etag);
			if (manifest) await this.apply(manifest);
			else this.scheduleRefetch(state.manifest, true);
		} catch (err) {
			this.failed(err);
			this.after("refresh", 10_000, () => this.refresh());
		}
	}

	/** Plays `manifest`, downloads what it lacks, evicts what no manifest named for a day (model.ts mediaToKeep). */
	private async apply(manifest: Manifest): Promise<void> {
		state.manifest = manifest;
		state.listMedia(mediaOf(manifest), Date.now());
		await warm(manifest.items);
		this.playback.setManifest(manifest);
		$("idle").hidden = manifest.items.length > 0;
		this.scheduleRefetch(manifest, false);
		// Also for the stored manifest at start: what a crash or a clear-cache lost comes back.
		void this.download(manifest);
	}

	private async download(manifest: Manifest): Promise<void> {
		const token = this.token;
		if (!token) return;
		let complete = true;
		for (const item of manifest.items.filter(isDownloaded)) {
			if (this.playback.etag !== manifest.etag) return; // superseded
			try {
				if (await ensure(token, item)) this.playback.kick();
				else complete = false;
			} catch (err) {
				complete = false;
				if (err instanceof Unauthorized) return void this.signOut();
			}
		}
		if (complete) await evictExcept(mediaToKeep(state.mediaLastListed, mediaOf(manifest), Date.now()));
		else this.after("download", 30_000, () => this.download(manifest));
	}

	/**
	 * Fetches the manifest again at its `validUntil` (by the server's clock). When the server still
	 * answered the same manifest at that instant (clocks a few ms apart), it asks again shortly.
	 */
	private scheduleRefetch(manifest: Manifest | null, unchanged: boolean): void {
		if (!manifest) return;
		const delay = refetchDelay(manifest.validUntil, Date.now(), this.serverOffsetMs);
		if (delay === null) return this.cancel("validUntil");
		this.after("validUntil", delay === 0 && unchanged ? 250 : delay + 5, () => this.refresh());
	}

	// ---- telemetry ----------------------------------------------------------------------------

	private async heartbeat(): Promise<void> {
		const token = this.token;
		if (!token) return;
		const sentAt = Date.now();
		try {
			const answer = await api.heartbeat(token, await this.health());
			const receivedAt = Date.now();
			const serverTime = Date.parse(answer.serverTime);
			if (!Number.isNaN(serverTime)) this.serverOffsetMs = serverTime - (sentAt + receivedAt) / 2;
			if (answer.heartbeatIntervalSec >= 5) state.intervalSec = answer.heartbeatIntervalSec;
			if (answer.manifestEtag !== null && answer.manifestEtag !== this.playback.etag) void this.refresh();
			for (const command of answer.commands) void this.command(command);
		} catch (err) {
			this.failed(err);
		}
		if (this.token === token) this.after("heartbeat", state.intervalSec * 1000 * (0.9 + Math.random() * 0.2), () => this.heartbeat());
	}

	/** What a browser can tell of its health: its memory and its storage use, in percent. */
	private async health(): Promise<HeartbeatBody> {
		const body: HeartbeatBody = { appVersion: APP_VERSION, uptimeSec: Math.floor(performance.now() / 1000) };
		const current = this.playback.currentContentId;
		if (current) body.currentContentId = current;
		const metrics: NonNullable<HeartbeatBody["metrics"]> = {};
		const memory = (performance as Performance & { memory?: { usedJSHeapSize: number; jsHeapSizeLimit: number } }).memory;
		if (memory && memory.jsHeapSizeLimit > 0) metrics.memory = percent(memory.usedJSHeapSize / memory.jsHeapSizeLimit);
		const estimate = await navigator.storage?.estimate?.().catch(() => null);
		if (estimate?.quota) metrics.disk = percent((estimate.usage ?? 0) / estimate.quota);
		if (Object.keys(metrics).length > 0) body.metrics = metrics;
		return body;
	}

	/** Carries out a command once (a reload does not repeat it) and acknowledges it either way. */
	private async command(command: Command): Promise<void> {
		const token = this.token;
		if (!token) return;
		const first = !state.handled(command.id, true);
		let result = "done";
		let reload = false;
		if (first) {
			switch (command.type) {
				case "reload":
					result = "reloading the page";
					reload = true;
					break;
				case "reboot":
					result = "a browser cannot restart its device: reloading the page instead";
					reload = true;
					break;
				case "clear-cache":
					await clearAll();
					result = "content cache cleared";
					break;
				case "screenshot":
					result = "not supported: a web page cannot capture its own screen";
					break;
				default:
					result = `unknown command type ${command.type}`;
			}
		}
		try {
			await api.ack(token, command.id, result);
		} catch (err) {
			this.failed(err);
		}
		if (reload) location.reload();
		else if (first && command.type === "clear-cache" && state.manifest) void this.download(state.manifest);
	}

	private recordPlay(play: PlayRecord): void {
		void outbox
			.add(play)
			.then(() => outbox.size())
			.then(size => {
				if (size >= FLUSH_EARLY_AT) void this.flush();
			})
			.catch(err => console.warn("a play could not be stored", err));
	}

	/** Sends stored plays, oldest first; each is removed only once the server accepted its batch. */
	private async flush(): Promise<void> {
		const token = this.token;
		if (!token || this.flushing) return;
		this.flushing = true;
		try {
			for (;;) {
				const { keys, plays } = await outbox.peek(FLUSH_BATCH);
				if (plays.length === 0) break;
				try {
					await api.playback(token, plays);
					await outbox.remove(keys);
				} catch (err) {
					if (!(err instanceof HttpError && err.status === 422)) throw err;
					// Plays the server can never take (outside its retention): dropped; the rest again.
					const bad = rejectedIndexes(err.body?.error?.data);
					await outbox.remove(bad.size > 0 ? keys.filter((_, i) => bad.has(i)) : keys);
				}
			}
		} catch (err) {
			this.failed(err);
		} finally {
			this.flushing = false;
		}
	}

	// ---- state --------------------------------------------------------------------------------

	/** Offline and unavailable answers keep the player playing (api.ts tracks them); a refused token signs it out. */
	private failed(err: unknown): void {
		if (err instanceof Unauthorized) void this.signOut();
		else if (!(err instanceof Offline || (err instanceof HttpError && err.status === 503))) console.warn(err instanceof Error ? err.message : err);
	}

	private async signOut(): Promise<void> {
		if (!this.token) return;
		this.session++;
		this.token = null;
		this.stream?.stop();
		this.stream = null;
		for (const timer of this.timers.values()) clearTimeout(timer);
		this.timers.clear();
		this.playback.stop();
		state.signOut();
		await Promise.all([outbox.clear().catch(() => undefined), clearAll().catch(() => undefined)]);
		void this.pair();
	}

	private show(screen: "pairing" | "playing"): void {
		document.body.dataset.state = screen;
		$("pairing").hidden = screen !== "pairing";
		$("idle").hidden = true;
	}

	private setOnline(online: boolean): void {
		document.body.dataset.online = String(online);
		$("badge").hidden = online;
	}

	private after(name: string, ms: number, run: () => unknown): void {
		this.cancel(name);
		this.timers.set(
			name,
			setTimeout(() => {
				this.timers.delete(name);
				void run();
			}, ms)
		);
	}

	private every(name: string, ms: number, run: () => unknown): void {
		this.after(name, ms, async () => {
			await run();
			if (this.token) this.every(name, ms, run);
		});
	}

	private cancel(name: string): void {
		const timer = this.timers.get(name);
		if (timer !== undefined) clearTimeout(timer);
		this.timers.delete(name);
	}
}

function mediaOf(manifest: Manifest): string[] {
	return manifest.items.filter(isDownloaded).map(i => i.sha256);
}

function isCommand(value: unknown): value is Command {
	return typeof value === "object" && value !== null && "id" in value && typeof value.id === "string" && "type" in value && typeof value.type === "string";
}

function percent(ratio: number): number {
	return Math.min(100, Math.max(0, Math.round(ratio * 1000) / 10));
}

/** The service worker keeps the page itself available offline (sw.ts); only in secure contexts. */
async function registerServiceWorker(): Promise<void> {
	if (!("serviceWorker" in navigator)) return;
	try {
		await navigator.serviceWorker.register("/player/sw.js", { scope: "/player/", type: "module" });
	} catch (err) {
		console.warn("service worker not registered", err);
	}
}

/** Asks the browser not to dim or lock the screen while the player shows (where it can). */
function keepScreenOn(): void {
	const request = () => navigator.wakeLock?.request("screen").catch(() => undefined);
	void request();
	document.addEventListener("visibilitychange", () => {
		if (document.visibilityState === "visible") void request();
	});
}

void new Player().boot();
