/**
 * Display presence on a real Redis with short intervals: heartbeats flip a display online, the
 * leader-elected sweep flips a silent one offline, and each transition is announced exactly once
 * (`devices.display.cameOnline`, `devices.display.wentOffline`) — for concurrent heartbeats, for
 * sweeps repeated after the transition, and across two replicas of the devices service.
 *
 * The replicas are two brokers of this process on local transport: they share nothing but Redis
 * (presence, the status flags, the sweep's lock), which is exactly what the once-per-transition
 * guarantees rest on. In production they would also share one database (MongoDB); two in-memory
 * NeDB brokers cannot, so the second replica's devices and tenants services are pointed at the
 * first one's collections.
 */
import Redis from "ioredis";
import type { Context, ServiceSchema } from "moleculer";
import type { GlobalCollection, Stored } from "../../mixins/db.mixin";
import DevicesService from "../../services/devices.service";
import TenantsService from "../../services/tenants.service";
import type { TenantSettings } from "../../shared/contracts";
import { sharedKeyValueStore, type KeyValueStore } from "../../shared/kv";
import type { PeriodicJob } from "../../shared/periodic";
import { bearer, pairDisplay as pairWholeFlow, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, startBroker, type TestBroker } from "../helpers/platform";
import { describeWith, redisServer, requireServer, uniquePrefix, type TestServer } from "../helpers/servers";
import { until } from "../helpers/until";

const SWEEP_MS = 200;
/** Seconds of silence before offline: a heartbeat's checks of "still online" must fit well inside it on a loaded machine. */
const OFFLINE_AFTER_SEC = 3;
/** Long enough for any duplicate announcement to arrive: several sweeps. */
const SETTLE_MS = 5 * SWEEP_MS;
jest.setTimeout(60_000);

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

const FastDevices: ServiceSchema = { ...DevicesService, settings: { ...DevicesService.settings, sweepIntervalMs: SWEEP_MS } } as ServiceSchema;

type Transition = "cameOnline" | "wentOffline";
interface Announcement {
	transition: Transition;
	displayId: string;
}

/** A service that records the presence transitions its broker hears. */
function probe(heard: Announcement[]): ServiceSchema {
	const record = (transition: Transition) => (ctx: Context<{ displayId: string }>) => void heard.push({ transition, displayId: ctx.params.displayId });
	return {
		name: "presence-probe",
		events: { "devices.display.cameOnline": record("cameOnline"), "devices.display.wentOffline": record("wentOffline") }
	};
}

/** What this test reaches inside a devices or tenants service (`db` is swapped whole between replicas). */
interface DevicesInternals {
	db: Record<string, unknown>;
	kv: KeyValueStore;
	sweep: PeriodicJob | null;
	sweepOnce(): Promise<void>;
}

function internals(broker: TestBroker["broker"], name: string): DevicesInternals {
	return broker.getLocalService(name) as unknown as DevicesInternals;
}

/** The tenants collection, as far as this test writes it. */
function tenantsOf(broker: TestBroker["broker"]): GlobalCollection<Stored & { settings: TenantSettings }> {
	return (broker.getLocalService("tenants") as unknown as { db: { tenants: GlobalCollection<Stored & { settings: TenantSettings }> } }).db.tenants;
}

describeWith("redis")("display presence over Redis (heartbeats, leader-elected offline sweep)", () => {
	let redis: TestServer;
	let raw: Redis;
	let namespace: string;
	let p: Platform;
	let replica: TestBroker | null = null;
	const replicaOwnDb: Record<string, Record<string, unknown>> = {};
	let owner: Session & { password: string };
	const heard: Announcement[] = [];
	const heardByReplica: Announcement[] = [];

	const count = (list: Announcement[], transition: Transition, displayId: string) => list.filter(a => a.transition === transition && a.displayId === displayId).length;
	const onPrimary = (transition: Transition, displayId: string) => count(heard, transition, displayId);
	const acrossBoth = (transition: Transition, displayId: string) => count(heard, transition, displayId) + count(heardByReplica, transition, displayId);

	beforeAll(async () => {
		redis = await requireServer(redisServer());
		raw = new Redis(redis.url);
		namespace = uniquePrefix("presence").replace(/:$/, "").replace(/:/g, "-");
		p = await startTestPlatform({ REDIS_URL: redis.url, NAMESPACE: namespace, DEFAULT_PLAN_DISPLAYS: "10" }, [FastDevices, probe(heard)]);
		owner = await register(p);
		// The API keeps offlineAfterSec ≥ 30; the test lowers it to 1 s in the tenants collection
		// itself, so a display goes offline within the test's time.
		const tenants = tenantsOf(p.broker);
		const tenant = await tenants.getDoc(owner.tenant.id, "Tenant");
		await tenants.updateDoc(owner.tenant.id, { settings: { ...tenant.settings, offlineAfterSec: OFFLINE_AFTER_SEC } });
	}, 20_000);

	afterAll(async () => {
		if (replica) {
			// Its own (empty) collections back, so its stop does not disconnect the primary's.
			for (const [name, db] of Object.entries(replicaOwnDb)) internals(replica.broker, name).db = db;
			await replica.stop();
		}
		if (p) {
			await p.stop();
			await sharedKeyValueStore(p.config).close();
		}
		if (raw) {
			const keys = [...(await raw.keys(`marquee:${namespace}:*`)), ...(await raw.keys(`*${namespace}*`))];
			if (keys.length) await raw.del(...new Set(keys));
			raw.disconnect();
		}
		await redis?.stop();
	});

	async function pairDisplay(name: string): Promise<{ id: string; token: string }> {
		const { display, token } = await pairWholeFlow(p, owner, { name });
		return { id: display.id, token };
	}

	async function heartbeat(token: string): Promise<void> {
		const res = await request(p.api("/device/heartbeat"), { method: "POST", json: { appVersion: "1.0.0" }, headers: bearer(token) });
		expect(res.status).toBe(200);
	}

	async function statusOf(displayId: string): Promise<string> {
		const res = await request<{ status: string }>(p.api(`/displays/${displayId}`), { headers: bearer(owner.accessToken) });
		expect(res.status).toBe(200);
		return res.body.status;
	}

	describe("one replica", () => {
		let display: { id: string; token: string };
		let lastHeartbeat = 0;

		beforeAll(async () => {
			display = await pairDisplay("Lobby");
		});

		it("a heartbeat marks the display online, announced once", async () => {
			expect(await statusOf(display.id)).toBe("pending");
			lastHeartbeat = Date.now();
			await heartbeat(display.token);
			expect(await statusOf(display.id)).toBe("online");
			await until("cameOnline", () => onPrimary("cameOnline", display.id) === 1);
			await sleep(2 * SWEEP_MS);
			expect({ cameOnline: onPrimary("cameOnline", display.id), wentOffline: onPrimary("wentOffline", display.id) }).toEqual({ cameOnline: 1, wentOffline: 0 });
		});

		it("silence past offlineAfterSec marks it offline with one wentOffline, not repeated by later sweeps", async () => {
			await until("wentOffline", () => onPrimary("wentOffline", display.id) === 1);
			expect(Date.now() - lastHeartbeat).toBeGreaterThanOrEqual(OFFLINE_AFTER_SEC * 1000);
			expect(await statusOf(display.id)).toBe("offline");
			await sleep(SETTLE_MS);
			expect(await statusOf(display.id)).toBe("offline");
			expect({ cameOnline: onPrimary("cameOnline", display.id), wentOffline: onPrimary("wentOffline", display.id) }).toEqual({ cameOnline: 1, wentOffline: 1 });
		});

		it("the next heartbeat brings it back online with one cameOnline", async () => {
			await heartbeat(display.token);
			expect(await statusOf(display.id)).toBe("online");
			await until("cameOnline", () => onPrimary("cameOnline", display.id) === 2);
			// Two more sweeps, still well inside offlineAfterSec: nothing else happens.
			await sleep(2 * SWEEP_MS);
			expect(await statusOf(display.id)).toBe("online");
			expect({ cameOnline: onPrimary("cameOnline", display.id), wentOffline: onPrimary("wentOffline", display.id) }).toEqual({ cameOnline: 2, wentOffline: 1 });
		});

		it("many concurrent heartbeats of one display produce one cameOnline (first contact and coming back)", async () => {
			const fresh = await pairDisplay("Burst");
			await until("wentOffline", () => onPrimary("wentOffline", display.id) === 2);
			await Promise.all(Array.from({ length: 25 }, () => heartbeat(display.token)));
			await until("cameOnline", () => onPrimary("cameOnline", display.id) >= 3);
			await Promise.all(Array.from({ length: 25 }, () => heartbeat(fresh.token)));
			await until("cameOnline", () => onPrimary("cameOnline", fresh.id) >= 1);
			await sleep(2 * SWEEP_MS);
			expect(onPrimary("cameOnline", fresh.id)).toBe(1);
			expect(onPrimary("cameOnline", display.id)).toBe(3);
			expect(await statusOf(fresh.id)).toBe("online");
			expect(await statusOf(display.id)).toBe("online");
		});
	});

	describe("two replicas sharing Redis", () => {
		let display: { id: string; token: string };
		const lockKey = () => `marquee:${namespace}:lock:job:devices-presence-sweep`;

		beforeAll(async () => {
			display = await pairDisplay("Hall");
			replica = await startBroker(
				[FastDevices, TenantsService, probe(heardByReplica)],
				{ REDIS_URL: redis.url, NAMESPACE: namespace, DEFAULT_PLAN_DISPLAYS: "10" },
				{ nodeID: `${namespace}-replica` }
			);
			expect(replica.broker.nodeID).not.toBe(p.broker.nodeID);
			// The shared database of production: the replica reads the primary's collections.
			for (const name of ["devices", "tenants"]) {
				replicaOwnDb[name] = internals(replica.broker, name).db;
				internals(replica.broker, name).db = internals(p.broker, name).db;
			}
		});

		/** The replica whose sweep holds the lock right now. */
		async function leader(): Promise<"primary" | "replica"> {
			const holder = (await raw.get(lockKey())) ?? "";
			if (holder.startsWith(`${p.broker.nodeID}:`)) return "primary";
			if (replica && holder.startsWith(`${replica.broker.nodeID}:`)) return "replica";
			throw new Error(`the sweep lock is held by ${JSON.stringify(holder)}`);
		}

		/** A heartbeat, then silence until one wentOffline has been heard (by either replica) and several sweeps more. */
		async function goOnlineThenSilent(): Promise<{ primary: number; replica: number }> {
			const before = { primary: onPrimary("wentOffline", display.id), replica: count(heardByReplica, "wentOffline", display.id) };
			const total = before.primary + before.replica;
			await heartbeat(display.token);
			expect(await statusOf(display.id)).toBe("online");
			await until("wentOffline", () => acrossBoth("wentOffline", display.id) > total);
			await sleep(SETTLE_MS);
			expect(await statusOf(display.id)).toBe("offline");
			return { primary: onPrimary("wentOffline", display.id) - before.primary, replica: count(heardByReplica, "wentOffline", display.id) - before.replica };
		}

		it("with both sweeping on their lock: one wentOffline across both", async () => {
			const emitted = await goOnlineThenSilent();
			expect(emitted.primary + emitted.replica).toBe(1);
			expect(emitted[await leader()]).toBe(1);
		});

		it("when the leader's sweep stops, the other replica takes over: still one wentOffline", async () => {
			const previous = await leader();
			await internals(previous === "primary" ? p.broker : (replica as TestBroker).broker, "devices").sweep?.stop();
			const emitted = await goOnlineThenSilent();
			const next = previous === "primary" ? "replica" : "primary";
			expect(await leader()).toBe(next);
			expect(emitted).toEqual({ primary: next === "primary" ? 1 : 0, replica: next === "replica" ? 1 : 0 });
		});

		it("both replicas sweeping at the same moment, without the lock: one wentOffline across both", async () => {
			const primaryDevices = internals(p.broker, "devices");
			const replicaDevices = internals((replica as TestBroker).broker, "devices");
			await primaryDevices.sweep?.stop();
			await replicaDevices.sweep?.stop();
			const before = acrossBoth("wentOffline", display.id);
			await heartbeat(display.token);
			await sleep(OFFLINE_AFTER_SEC * 1000 + 50);
			expect(acrossBoth("wentOffline", display.id)).toBe(before);
			await Promise.all([1, 2, 3].flatMap(() => [primaryDevices.sweepOnce(), replicaDevices.sweepOnce()]));
			await sleep(2 * SWEEP_MS);
			expect(acrossBoth("wentOffline", display.id)).toBe(before + 1);
			expect(await statusOf(display.id)).toBe("offline");
		});
	});

	describe("a heartbeat racing the sweep", () => {
		// The sweep reads a display's presence, decides it is stale, then flips its status flag to
		// offline: two steps. A heartbeat landing between them (the display is back) must win: the
		// display stays online and no wentOffline is announced. The interleaving is forced here by
		// running the heartbeat inside the sweep's swap, just before it reaches Redis.
		it("a heartbeat between the sweep's presence read and its offline flip keeps the display online", async () => {
			const devices = internals(p.broker, "devices");
			await devices.sweep?.stop();
			if (replica) await internals(replica.broker, "devices").sweep?.stop();
			const racing = await pairDisplay("Racing");
			await heartbeat(racing.token);
			await until("cameOnline", () => onPrimary("cameOnline", racing.id) === 1);
			await sleep(OFFLINE_AFTER_SEC * 1000 + 50);

			const kv = devices.kv;
			const interleaved: KeyValueStore = Object.create(kv) as KeyValueStore;
			// The heartbeat lands right before the sweep's flip (after its decision to sweep this display).
			interleaved.swapIfStale = async (key, value, stampKey, before, ttlMs) => {
				if (value === "offline" && key.endsWith(racing.id)) await heartbeat(racing.token);
				return kv.swapIfStale(key, value, stampKey, before, ttlMs);
			};
			devices.kv = interleaved;
			try {
				await devices.sweepOnce();
			} finally {
				devices.kv = kv;
			}
			await sleep(2 * SWEEP_MS);
			expect({ status: await statusOf(racing.id), wentOffline: onPrimary("wentOffline", racing.id) }).toEqual({ status: "online", wentOffline: 0 });
		});
	});
});
