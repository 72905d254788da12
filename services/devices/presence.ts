/**
 * Presence: what the last heartbeat said and whether a display is online, kept in the shared
 * key/value store (Redis across replicas) rather than in documents, so the heartbeat — the hot
 * path — writes no document.
 *
 * Three keys per display:
 *   last-seen:<id>       the last heartbeat's time in ms, the stamp the offline sweep compares
 *   display-status:<id>  "online" or "offline", swapped atomically so each transition is seen
 *                        (and announced) exactly once, whichever request or replica makes it
 *   presence:<id>        the last known Presence (JSON)
 *
 * The functions take the store at each call, not at construction: the service's store can be
 * replaced (tests interleave a heartbeat with a sweep that way).
 */
import type { DisplayStatus, HeartbeatReport, Presence } from "../../shared/contracts";
import type { KeyValueStore } from "../../shared/kv";

/** Presence outlives any offline threshold; a display silent for a week is simply offline. */
export const PRESENCE_TTL_MS = 7 * 24 * 3600_000;
/** A tenant's `offlineAfterSec` when its settings cannot be read. */
export const DEFAULT_OFFLINE_AFTER_SEC = 90;

export const presenceKeys = {
	presence: (displayId: string) => `presence:${displayId}`,
	lastSeen: (displayId: string) => `last-seen:${displayId}`,
	status: (displayId: string) => `display-status:${displayId}`
};

type LiveStatus = Extract<DisplayStatus, "online" | "offline">;

// ---- pure ------------------------------------------------------------------------------------

/** The presence after a heartbeat: what it does not send, it does not change. */
export function mergePresence(last: Presence | null, report: HeartbeatReport, now: Date): Presence {
	return {
		lastSeenAt: now.toISOString(),
		metrics: report.metrics ?? last?.metrics ?? null,
		appVersion: report.appVersion ?? last?.appVersion ?? null,
		currentContentId: report.currentContentId ?? last?.currentContentId ?? null,
		uptimeSec: report.uptimeSec ?? last?.uptimeSec ?? null
	};
}

export function parsePresence(raw: string | null): Presence | null {
	return raw ? (JSON.parse(raw) as Presence) : null;
}

/** The cached status flag, or null when there is none (never seen, or forgotten). */
export function parseStatus(raw: string | null): LiveStatus | null {
	return raw === "online" || raw === "offline" ? raw : null;
}

/** The last-seen stamp (ms) below which a display of a tenant with this threshold is offline. */
export function offlineCutoff(now: Date, offlineAfterSec: number | undefined): number {
	return now.getTime() - (offlineAfterSec ?? DEFAULT_OFFLINE_AFTER_SEC) * 1000;
}

// ---- the store -------------------------------------------------------------------------------

const nothingAlongside = async (): Promise<void> => undefined;

/**
 * Records a heartbeat; answers the new presence, whether the display just came online (true for
 * exactly one of any number of concurrent heartbeats), the status flag it replaced (null: the
 * store knew none — never seen, or forgotten by a restart), and the values of the keys in `read`.
 * Two round trips: the stamp, the status swap and one read of the last presence with `read`
 * (MGET) go out together (Redis pipelines commands sent in one turn into one round trip), then
 * the merged presence is written while `alongside` (the heartbeat's channel publish) runs.
 */
export async function recordHeartbeat(
	kv: KeyValueStore,
	displayId: string,
	report: HeartbeatReport,
	now: Date,
	read: readonly string[] = [],
	alongside: (presence: Presence) => Promise<void> = nothingAlongside
): Promise<{ presence: Presence; cameOnline: boolean; previous: LiveStatus | null; read: Array<string | null> }> {
	// The stamp first, then the status — sent in that order, applied in that order: the sweep
	// flips a display offline only while its stamp is stale, atomically, so a heartbeat can never
	// be lost between the two.
	const [, previous, [known, ...values]] = await Promise.all([
		kv.set(presenceKeys.lastSeen(displayId), String(now.getTime()), PRESENCE_TTL_MS),
		kv.swap(presenceKeys.status(displayId), "online", PRESENCE_TTL_MS),
		kv.getMany([presenceKeys.presence(displayId), ...read])
	]);
	const presence = mergePresence(parsePresence(known), report, now);
	await Promise.all([kv.set(presenceKeys.presence(displayId), JSON.stringify(presence), PRESENCE_TTL_MS), alongside(presence)]);
	return { presence, cameOnline: previous !== "online", previous: parseStatus(previous), read: values };
}

/**
 * For a display its document calls online but the store knows nothing of (the embedded store
 * after a restart, a Redis that lost its data): it counts as seen at `now`, and its status flag
 * as online, unless a heartbeat got there first. Its silence is then measured from here — a
 * screen that is alive heartbeats before its cutoff, with no outage and no "came online" — and a
 * dead one goes offline one cutoff later, rather than every screen at the first sweep.
 */
export async function assumeSeen(kv: KeyValueStore, displayId: string, now: Date): Promise<void> {
	await Promise.all([kv.setIfAbsent(presenceKeys.lastSeen(displayId), String(now.getTime()), PRESENCE_TTL_MS), kv.setIfAbsent(presenceKeys.status(displayId), "online", PRESENCE_TTL_MS)]);
}

/** A display's live presence and status flag, as far as the store knows them. */
export async function readPresence(kv: KeyValueStore, displayId: string): Promise<{ presence: Presence | null; status: LiveStatus | null }> {
	const [presence, status] = await Promise.all([kv.get(presenceKeys.presence(displayId)), kv.get(presenceKeys.status(displayId))]);
	return { presence: parsePresence(presence), status: parseStatus(status) };
}

/** The last heartbeat's time (ms), or null when none is known (never seen, or forgotten). */
export async function lastSeenStamp(kv: KeyValueStore, displayId: string): Promise<number | null> {
	const raw = await kv.get(presenceKeys.lastSeen(displayId));
	const stamp = raw === null ? NaN : Number(raw);
	return Number.isFinite(stamp) ? stamp : null;
}

/**
 * The sweep's step for one display: flips it offline when its last heartbeat is older than
 * `cutoff` (ms). Answers the transition — with the last time it was seen — only to the one
 * caller that made it, null otherwise (seen since, or already offline).
 */
export async function markOfflineIfSilent(kv: KeyValueStore, displayId: string, cutoff: number): Promise<{ lastSeenAt: string | null } | null> {
	const flip = await kv.swapIfStale(presenceKeys.status(displayId), "offline", presenceKeys.lastSeen(displayId), cutoff, PRESENCE_TTL_MS);
	if (!flip.swapped || flip.previous === "offline") return null;
	const presence = parsePresence(await kv.get(presenceKeys.presence(displayId)));
	return { lastSeenAt: presence?.lastSeenAt ?? null };
}

export async function forgetPresence(kv: KeyValueStore, displayId: string): Promise<void> {
	await Promise.all([kv.del(presenceKeys.presence(displayId)), kv.del(presenceKeys.lastSeen(displayId)), kv.del(presenceKeys.status(displayId))]);
}
