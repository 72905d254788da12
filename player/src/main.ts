/**
 * The Marquee web player: any browser opened at /player/ becomes a screen.
 *
 * - Without a device token it pairs: shows a code (and a QR code of it) until an admin pairs it,
 *   or registers at once with `?provisioningKey=mpk_…` (zero-touch).
 * - With one it plays: the last manifest from storage at once (offline first), then the server's;
 *   heartbeats at the interval the server gives, the live stream for manifest changes and
 *   commands, a timer for `validUntil`, and the outbox of plays sent to POST /device/playback.
 * - A refused token (display deleted, token revoked) returns it to pairing by itself.
 * - A manifest with a layout shows its zones, each with its own loop (screen.ts); one with a
 *   power state "off" (or a heartbeat saying so) blanks the screen until its `until`, when it
 *   turns on again by itself, network or not, and asks for the manifest.
 *
 * The body's `data-state` says which screen shows ("pairing" | "playing"), `data-online` whether
 * the server answers, `data-power` whether the screen is on, `data-content-id` what is on screen
 * (a layout's zones carry theirs: screen.ts).
 */
import { api, connectivity, HttpError, Offline, Unauthorized, type Command, type HeartbeatBody } from "./api.js";
import { clearAll, ensure, evictExcept, warm } from "./content-cache.js";
import { asPower, delayUntil, hasContent, manifestMedia, mediaToKeep, powerAt, refetchDelay, rejectedIndexes, type Manifest, type PlayRecord, type Power } from "./model.js";
import { Screen } from "./screen.js";
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
	private readonly screen: Screen;
	private token: string | null = null;
	/** The manifest played (or held while the screen is off). */
	private manifest: Manifest | null = null;
	/** The power state of the latest heartbeat answer, when it gave one and no manifest came since. */
	private heartbeatPower: Power | null = null;
	private stream: LiveStream | null = null;
	private timers = new Map<string, ReturnType<typeof setTimeout>>();
	/** Server time − local time, from the heartbeat's `serverTime` (play records and `validUntil` use it). */
	private serverOffsetMs = 0;
	private flushing = false;
	/** A reload command was accepted: the page is about to go, so it starts no other command. */
	private reloading = false;
	private refreshing: Promise<void> | null = null;
	/** Bumped on sign-out: loops of the old session stop. */
	private session = 0;

	constructor() {
		this.screen = new Screen($("stage"), {
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
			if (etag !== this.screen.etag) void this.refresh();
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
			const manifest = await api.manifest(token, this.screen.etag);
			if (manifest) await this.apply(manifest);
			else this.scheduleRefetch(this.manifest, true);
		} catch (err) {
			this.failed(err);
			this.after("refresh", 10_000, () => this.refresh());
		}
	}

	/**
	 * Plays `manifest` (or holds it while the screen is off), downloads what it lacks, evicts what
	 * no manifest named for a day (model.ts mediaToKeep).
	 */
	private async apply(manifest: Manifest): Promise<void> {
		state.manifest = manifest;
		const media = manifestMedia(manifest);
		state.listMedia(media.map(i => i.sha256), Date.now());
		await warm(media);
		this.manifest = manifest;
		// The manifest is at least as recent as any heartbeat answered before it.
		this.heartbeatPower = null;
		this.screen.show(manifest, this.poweredNow());
		$("idle").hidden = hasContent(manifest);
		this.scheduleRefetch(manifest, false);
		// Also for the stored manifest at start: what a crash or a clear-cache lost comes back.
		void this.download(manifest);
	}

	private async download(manifest: Manifest): Promise<void> {
		const token = this.token;
		if (!token) return;
		let complete = true;
		const media = manifestMedia(manifest);
		for (const item of media) {
			if (this.screen.etag !== manifest.etag) return; // superseded
			try {
				if (await ensure(token, item)) this.screen.kick();
				else complete = false;
			} catch (err) {
				complete = false;
				if (err instanceof Unauthorized) return void this.signOut();
			}
		}
		if (complete) await evictExcept(mediaToKeep(state.mediaLastListed, media.map(i => i.sha256), Date.now()));
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

	/**
	 * Whether the screen is on now (the latest power state heard: a heartbeat's, else the
	 * manifest's; model.ts powerAt), and a timer for when that changes: then the screen flips by
	 * itself, offline or not, and asks the server what comes next.
	 */
	private poweredNow(): boolean {
		const now = powerAt(this.heartbeatPower ?? this.manifest?.power ?? null, Date.now() + this.serverOffsetMs);
		if (now.untilMs === null) this.cancel("power");
		else
			this.after("power", delayUntil(now.untilMs, Date.now(), this.serverOffsetMs) + 5, () => {
				const on = this.poweredNow();
				if (on !== this.screen.powered) {
					this.screen.setPower(on);
					void this.refresh();
				}
			});
		return now.state === "on";
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
			// A malformed power state is ignored; none (null) means the manifest's holds.
			const power = asPower(answer.power);
			if (power !== undefined) this.heartbeatPower = power;
			// Also with the same power state: the clock offset may have moved its flip.
			this.screen.setPower(this.poweredNow());
			if (answer.manifestEtag !== null && answer.manifestEtag !== this.screen.etag) void this.refresh();
			for (const command of answer.commands) void this.command(command);
		} catch (err) {
			this.failed(err);
		}
		if (this.token === token) this.after("heartbeat", state.intervalSec * 1000 * (0.9 + Math.random() * 0.2), () => this.heartbeat());
	}

	/** What a browser can tell of its health: its memory and its storage use, in percent. */
	private async health(): Promise<HeartbeatBody> {
		const body: HeartbeatBody = { appVersion: APP_VERSION, uptimeSec: Math.floor(performance.now() / 1000) };
		const current = this.screen.currentContentId;
		if (current) body.currentContentId = current;
		const metrics: NonNullable<HeartbeatBody["metrics"]> = {};
		const memory = (performance as Performance & { memory?: { usedJSHeapSize: number; jsHeapSizeLimit: number } }).memory;
		if (memory && memory.jsHeapSizeLimit > 0) metrics.memory = percent(memory.usedJSHeapSize / memory.jsHeapSizeLimit);
		const estimate = await navigator.storage?.estimate?.().catch(() => null);
		if (estimate?.quota) metrics.disk = percent((estimate.usage ?? 0) / estimate.quota);
		if (Object.keys(metrics).length > 0) body.metrics = metrics;
		return body;
	}

	/**
	 * Carries out a command once and acknowledges it either way. A reload is marked carried out
	 * before it happens (after it, the page could not tell, and would reload forever); any other
	 * command once it is done, so one that a reload or a crash cut short is carried out again when
	 * the next heartbeat sends it once more. A page about to reload starts nothing new.
	 */
	private async command(command: Command): Promise<void> {
		const token = this.token;
		if (!token || this.reloading) return;
		const restart = command.type === "reload" || command.type === "reboot";
		const first = !state.handled(command.id, restart);
		if (first && restart) this.reloading = true;
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
			if (!restart) state.handled(command.id, true);
		}
		try {
			await api.ack(token, command.id, result);
		} catch (err) {
			this.failed(err);
		}
		if (reload) location.reload();
		else if (first && command.type === "clear-cache" && this.manifest) void this.download(this.manifest);
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
		this.screen.stop();
		this.manifest = null;
		this.heartbeatPower = null;
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
