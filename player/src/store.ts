/**
 * What the player keeps across reloads and outages:
 * - localStorage: the device token, the hardware id, the last manifest, the heartbeat interval,
 *   commands already carried out (so a reload does not run a `reload` twice);
 * - IndexedDB: the outbox of plays not yet accepted by the server (kept through outages and
 *   reloads; removed only once POST /device/playback answered 202 for them);
 * - Cache Storage (content-cache.ts): the media bytes.
 */
import { asManifest, uuidFromBytes, type Manifest, type PlayRecord } from "./model.js";

const KEYS = {
	token: "marquee.deviceToken",
	displayId: "marquee.displayId",
	hardwareId: "marquee.hardwareId",
	manifest: "marquee.manifest",
	interval: "marquee.heartbeatIntervalSec",
	handled: "marquee.handledCommands",
	media: "marquee.mediaLastListed"
} as const;

/** At most this many media are remembered (the oldest are forgotten, and evicted with them). */
const MEDIA_REMEMBERED = 2_000;

export function newId(): string {
	return uuidFromBytes(crypto.getRandomValues(new Uint8Array(16)));
}

function read(key: string): string | null {
	try {
		return localStorage.getItem(key);
	} catch {
		return null;
	}
}

function write(key: string, value: string | null): void {
	try {
		if (value === null) localStorage.removeItem(key);
		else localStorage.setItem(key, value);
	} catch {
		/* storage full or disabled: the player still runs, it just forgets on reload */
	}
}

export const state = {
	get token(): string | null {
		return read(KEYS.token);
	},
	get displayId(): string | null {
		return read(KEYS.displayId);
	},
	signIn(displayId: string, token: string, intervalSec: number): void {
		write(KEYS.displayId, displayId);
		write(KEYS.token, token);
		write(KEYS.interval, String(intervalSec));
	},
	/** The display is gone: forget what was its (the caller empties the outbox and the media cache). */
	signOut(): void {
		for (const key of [KEYS.token, KEYS.displayId, KEYS.manifest, KEYS.handled, KEYS.media]) write(key, null);
	},
	/** A stable id for this browser, sent when pairing or registering (a re-imaged screen keeps its display). */
	get hardwareId(): string {
		let id = read(KEYS.hardwareId);
		if (!id) {
			id = `web-${newId()}`;
			write(KEYS.hardwareId, id);
		}
		return id;
	},
	get intervalSec(): number {
		const n = Number(read(KEYS.interval));
		return Number.isFinite(n) && n >= 5 ? n : 30;
	},
	set intervalSec(value: number) {
		write(KEYS.interval, String(value));
	},
	get manifest(): Manifest | null {
		try {
			return asManifest(JSON.parse(read(KEYS.manifest) ?? "null"));
		} catch {
			return null;
		}
	},
	set manifest(value: Manifest | null) {
		write(KEYS.manifest, value ? JSON.stringify(value) : null);
	},
	/** sha256 → when a manifest last listed it (content-cache eviction, model.ts mediaToKeep). */
	get mediaLastListed(): Record<string, number> {
		try {
			const parsed: unknown = JSON.parse(read(KEYS.media) ?? "{}");
			if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return {};
			return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, number] => typeof e[1] === "number"));
		} catch {
			return {};
		}
	},
	/** Notes that a manifest lists these media now. */
	listMedia(shas: readonly string[], nowMs: number): void {
		const all = { ...this.mediaLastListed };
		for (const sha of shas) all[sha] = nowMs;
		const newest = Object.entries(all).sort((a, b) => b[1] - a[1]).slice(0, MEDIA_REMEMBERED);
		write(KEYS.media, JSON.stringify(Object.fromEntries(newest)));
	},
	/** Whether a command was carried out already; remembers it when `mark`. */
	handled(commandId: string, mark = false): boolean {
		let ids: string[] = [];
		try {
			const parsed: unknown = JSON.parse(read(KEYS.handled) ?? "[]");
			if (Array.isArray(parsed)) ids = parsed.filter((x): x is string => typeof x === "string");
		} catch {
			/* unreadable: start over */
		}
		const seen = ids.includes(commandId);
		if (mark && !seen) write(KEYS.handled, JSON.stringify([...ids, commandId].slice(-100)));
		return seen;
	}
};

// ---- the outbox of plays (IndexedDB) ---------------------------------------------------------

const DB_NAME = "marquee-player";
const STORE = "plays";
/** Beyond this many unsent plays (weeks offline) the oldest are dropped, so storage cannot fill up. */
export const OUTBOX_LIMIT = 100_000;

let dbPromise: Promise<IDBDatabase> | null = null;

function db(): Promise<IDBDatabase> {
	dbPromise ??= new Promise((resolve, reject) => {
		const open = indexedDB.open(DB_NAME, 1);
		open.onupgradeneeded = () => {
			const store = open.result.createObjectStore(STORE, { keyPath: "seq", autoIncrement: true });
			store.createIndex("eventId", "eventId", { unique: true });
		};
		open.onsuccess = () => resolve(open.result);
		open.onerror = () => {
			dbPromise = null;
			reject(open.error ?? new Error("IndexedDB unavailable"));
		};
	});
	return dbPromise;
}

function done(tx: IDBTransaction): Promise<void> {
	return new Promise((resolve, reject) => {
		tx.oncomplete = () => resolve();
		tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
		tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
	});
}

type Stored = PlayRecord & { seq?: number };

export const outbox = {
	async add(play: PlayRecord): Promise<void> {
		const tx = (await db()).transaction(STORE, "readwrite");
		const store = tx.objectStore(STORE);
		store.add(play);
		const count = store.count();
		count.onsuccess = () => {
			// Oldest first: the store is ordered by its auto-incremented key.
			let excess = count.result - OUTBOX_LIMIT;
			if (excess <= 0) return;
			const cursor = store.openCursor();
			cursor.onsuccess = () => {
				const c = cursor.result;
				if (!c || excess-- <= 0) return;
				c.delete();
				c.continue();
			};
		};
		await done(tx);
	},

	/** Up to `limit` plays, oldest first, with their keys. */
	async peek(limit: number): Promise<{ keys: number[]; plays: PlayRecord[] }> {
		const tx = (await db()).transaction(STORE, "readonly");
		const store = tx.objectStore(STORE);
		const keysReq = store.getAllKeys(null, limit);
		const valuesReq = store.getAll(null, limit);
		await done(tx);
		const plays = (valuesReq.result as Stored[]).map(({ seq: _seq, ...play }) => play);
		return { keys: keysReq.result as number[], plays };
	},

	async remove(keys: number[]): Promise<void> {
		if (keys.length === 0) return;
		const tx = (await db()).transaction(STORE, "readwrite");
		const store = tx.objectStore(STORE);
		for (const key of keys) store.delete(key);
		await done(tx);
	},

	async size(): Promise<number> {
		const tx = (await db()).transaction(STORE, "readonly");
		const req = tx.objectStore(STORE).count();
		await done(tx);
		return req.result;
	},

	async clear(): Promise<void> {
		const tx = (await db()).transaction(STORE, "readwrite");
		tx.objectStore(STORE).clear();
		await done(tx);
	}
};
