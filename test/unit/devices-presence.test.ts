/**
 * services/devices/presence.ts: a heartbeat keeps what it does not send, each online/offline
 * transition is reported to exactly one caller, and the sweep flips only displays whose last
 * heartbeat is older than their tenant's threshold.
 */
import {
	DEFAULT_OFFLINE_AFTER_SEC,
	forgetPresence,
	markOfflineIfSilent,
	mergePresence,
	offlineCutoff,
	parseStatus,
	presenceKeys,
	readPresence,
	recordHeartbeat
} from "../../services/devices/presence";
import type { Presence } from "../../shared/contracts";
import { MemoryKeyValueStore } from "../../shared/kv";

const T0 = new Date("2026-11-22T10:00:00.000Z");
const later = (ms: number) => new Date(T0.getTime() + ms);

describe("mergePresence", () => {
	const known: Presence = { lastSeenAt: T0.toISOString(), metrics: { cpu: 10, memory: 20, disk: 30 }, appVersion: "1.0.0", currentContentId: "c-1", uptimeSec: 60 };

	it("a first heartbeat that sends nothing knows only when it was seen", () => {
		expect(mergePresence(null, {}, T0)).toEqual({ lastSeenAt: T0.toISOString(), metrics: null, appVersion: null, currentContentId: null, uptimeSec: null });
	});

	it("what a heartbeat does not send keeps its last value; what it sends replaces it (metrics whole)", () => {
		expect(mergePresence(known, {}, later(1000))).toEqual({ ...known, lastSeenAt: later(1000).toISOString() });
		expect(mergePresence(known, { metrics: { cpu: 1 }, appVersion: "2.0.0", uptimeSec: 0 }, later(2000))).toEqual({
			lastSeenAt: later(2000).toISOString(),
			metrics: { cpu: 1 },
			appVersion: "2.0.0",
			currentContentId: "c-1",
			uptimeSec: 0
		});
	});
});

describe("offlineCutoff and parseStatus", () => {
	it("the cutoff is the tenant's threshold before now, 90 s when the tenant's settings are unknown", () => {
		expect(offlineCutoff(T0, 30)).toBe(T0.getTime() - 30_000);
		expect(offlineCutoff(T0, undefined)).toBe(T0.getTime() - DEFAULT_OFFLINE_AFTER_SEC * 1000);
		expect(DEFAULT_OFFLINE_AFTER_SEC).toBe(90);
	});

	it("only online and offline are status flags", () => {
		expect(parseStatus("online")).toBe("online");
		expect(parseStatus("offline")).toBe("offline");
		expect(parseStatus(null)).toBeNull();
		expect(parseStatus("pending")).toBeNull();
	});
});

describe("presence in the key/value store", () => {
	it("a heartbeat writes the stamp, the flag and the presence; only the first of several comes online", async () => {
		const kv = new MemoryKeyValueStore();
		const first = await recordHeartbeat(kv, "d-1", { appVersion: "1.0.0" }, T0);
		expect(first.cameOnline).toBe(true);
		expect(first.previous).toBeNull();
		expect(first.presence).toMatchObject({ lastSeenAt: T0.toISOString(), appVersion: "1.0.0" });
		expect(await kv.get(presenceKeys.lastSeen("d-1"))).toBe(String(T0.getTime()));
		expect(await readPresence(kv, "d-1")).toEqual({ presence: first.presence, status: "online" });

		const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => recordHeartbeat(kv, "d-1", {}, later(i))));
		expect(burst.filter(b => b.cameOnline)).toHaveLength(0);
		expect(burst.map(b => b.previous)).toEqual(Array(10).fill("online"));
		expect((await readPresence(kv, "d-1")).presence?.appVersion).toBe("1.0.0");
	});

	it("answers the keys it is asked to read beside the heartbeat, in their order", async () => {
		const kv = new MemoryKeyValueStore();
		await kv.set("manifest-etag:d-2", '"e1"');
		await kv.set("commands:d-2", "[]");
		const beat = await recordHeartbeat(kv, "d-2", {}, T0, ["commands:d-2", "manifest-power:d-2", "manifest-etag:d-2"]);
		expect(beat.read).toEqual(["[]", null, '"e1"']);
		expect((await recordHeartbeat(kv, "d-2", {}, later(1))).read).toEqual([]);
	});

	it("an unknown display has no presence and no flag", async () => {
		expect(await readPresence(new MemoryKeyValueStore(), "d-x")).toEqual({ presence: null, status: null });
	});

	it("the sweep flips a silent display offline once, with when it was last seen; a fresh one stays online", async () => {
		const kv = new MemoryKeyValueStore();
		await recordHeartbeat(kv, "silent", {}, T0);
		await recordHeartbeat(kv, "fresh", {}, later(60_000));
		const cutoff = later(30_000).getTime();

		expect(await markOfflineIfSilent(kv, "fresh", cutoff)).toBeNull();
		expect((await readPresence(kv, "fresh")).status).toBe("online");

		const results = await Promise.all([1, 2, 3].map(() => markOfflineIfSilent(kv, "silent", cutoff)));
		expect(results.filter(r => r !== null)).toEqual([{ lastSeenAt: T0.toISOString() }]);
		expect((await readPresence(kv, "silent")).status).toBe("offline");
		expect(await markOfflineIfSilent(kv, "silent", cutoff)).toBeNull();

		// Back: the next heartbeat comes online again, once, and says what it replaced.
		const back = await recordHeartbeat(kv, "silent", {}, later(40_000));
		expect(back).toMatchObject({ cameOnline: true, previous: "offline" });
		expect(await markOfflineIfSilent(kv, "silent", cutoff)).toBeNull();
	});

	it("a heartbeat landing just before the sweep's flip wins: no transition", async () => {
		const kv = new MemoryKeyValueStore();
		await recordHeartbeat(kv, "racing", {}, T0);
		const cutoff = later(30_000).getTime();
		const swapIfStale = kv.swapIfStale.bind(kv);
		kv.swapIfStale = async (...args) => {
			await recordHeartbeat(kv, "racing", {}, later(31_000));
			return swapIfStale(...args);
		};
		expect(await markOfflineIfSilent(kv, "racing", cutoff)).toBeNull();
		expect((await readPresence(kv, "racing")).status).toBe("online");
	});

	it("a display that never sent a heartbeat but has a flag goes offline with no last-seen time", async () => {
		const kv = new MemoryKeyValueStore();
		await kv.set(presenceKeys.status("d-2"), "online");
		expect(await markOfflineIfSilent(kv, "d-2", T0.getTime())).toEqual({ lastSeenAt: null });
	});

	it("forgetting a display removes its three keys", async () => {
		const kv = new MemoryKeyValueStore();
		await recordHeartbeat(kv, "d-3", { appVersion: "1" }, T0);
		await forgetPresence(kv, "d-3");
		for (const key of [presenceKeys.presence("d-3"), presenceKeys.lastSeen("d-3"), presenceKeys.status("d-3")]) expect(await kv.get(key)).toBeNull();
	});
});
