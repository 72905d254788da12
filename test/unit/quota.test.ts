/**
 * shared/quota.ts: usage counters that grow atomically, so parallel reservations never pass a
 * limit; releases, recounts of a quiet counter that drifted, and the tenant scope — on NeDB in
 * memory and on NeDB files (the embedded mode), and on MongoDB when MONGO_URI is set.
 */
import type { Service, ServiceSchema } from "moleculer";
import { DbMixin, systemScope, tenantCollection, type DbVars, type TenantOwned } from "../../mixins/db.mixin";
import { AppError } from "../../shared/errors";
import { USAGE_COLLECTION, UsageCounter } from "../../shared/quota";
import { startBroker, type TestBroker } from "../helpers/platform";

interface Item extends TenantOwned {
	n: number;
}

const COLLECTIONS = { quota_usage: USAGE_COLLECTION, quota_items: tenantCollection<Item>() };
type Db = DbVars<typeof COLLECTIONS>;

const Holder: ServiceSchema = { name: "holder", mixins: [DbMixin(COLLECTIONS)] };

const backends: Array<[string, Record<string, string>]> = [
	["NeDB in memory", {}],
	["NeDB files", { NODE_ENV: "development" }],
	...(process.env.MONGO_URI ? [["MongoDB", { MONGO_URI: process.env.MONGO_URI }] as [string, Record<string, string>]] : [])
];

describe.each(backends)("UsageCounter on %s", (_name, env) => {
	let started: TestBroker;
	let db: Db["db"];
	// The counter's notion of now; documents are stamped by the data layer's own clock.
	let clock = Date.now();
	let measured = 0;

	beforeAll(async () => {
		started = await startBroker([Holder], env);
		db = (started.broker.getLocalService("holder") as Service & Db).db;
	});
	afterAll(() => started.stop());

	const counter = (resource = "displays") =>
		new UsageCounter(db.quota_usage, {
			resource,
			now: () => clock,
			measure: async tenantId => {
				measured += 1;
				return db.quota_items.countDocs(systemScope(tenantId));
			}
		});

	it("starts from the real usage, counted once", async () => {
		await db.quota_items.insertDoc(systemScope("t-start"), { n: 1 });
		await db.quota_items.insertDoc(systemScope("t-start"), { n: 2 });
		const before = measured;
		const c = counter();
		expect(await c.usage("t-start")).toBe(2);
		expect(await c.usage("t-start")).toBe(2);
		expect(measured - before).toBe(1);
	});

	it("fifty parallel reservations of one against a limit of three: exactly three win, the rest are 402 with limit and usage", async () => {
		const c = counter();
		const results = await Promise.allSettled(Array.from({ length: 50 }, () => c.reserve("t-race", 1, 3)));
		const won = results.filter(r => r.status === "fulfilled");
		expect(won).toHaveLength(3);
		for (const r of results.filter(r => r.status === "rejected")) {
			const err = (r as PromiseRejectedResult).reason as AppError;
			expect(err).toBeInstanceOf(AppError);
			expect(err.type).toBe("QUOTA_EXCEEDED");
			expect(err.data).toEqual({ resource: "displays", limit: 3, current: 3 });
		}
		expect(await c.usage("t-race")).toBe(3);
	});

	it("two hundred parallel reservations on one process take turns: each wins its first compare-and-set, none gives up with a 503", async () => {
		await counter().usage("t-crowd");
		const writes = jest.spyOn(db.quota_usage, "updateWhere");
		try {
			// Counter objects made per call (as a provisioning key's is) take turns too.
			const results = await Promise.allSettled(Array.from({ length: 200 }, () => counter().reserve("t-crowd", 1, 10_000)));
			expect(results.filter(r => r.status === "rejected")).toEqual([]);
			expect(writes).toHaveBeenCalledTimes(200);
		} finally {
			writes.mockRestore();
		}
		expect(await counter().usage("t-crowd")).toBe(200);
	});

	it("another replica writing the counter between rounds never lets reservations pass the limit together", async () => {
		const c = counter();
		await c.usage("t-replicas");
		// The other replica's wins, written straight to the counter as its compare-and-set would.
		let theirs = 0;
		const otherReplica = async () => {
			for (let i = 0; i < 10; i++) {
				const doc = await db.quota_usage.findDoc(systemScope("t-replicas"), { resource: "displays" });
				if (doc && doc.used < 50 && (await db.quota_usage.updateWhere(systemScope("t-replicas"), { _id: doc.id, version: doc.version }, { used: doc.used + 1, version: doc.version + 1 })) === 1) theirs++;
				await new Promise(resolve => setImmediate(resolve));
			}
		};
		const [results] = await Promise.all([Promise.allSettled(Array.from({ length: 60 }, () => c.reserve("t-replicas", 1, 50))), otherReplica()]);
		const ours = results.filter(r => r.status === "fulfilled").length;
		for (const r of results.filter(r => r.status === "rejected")) expect((r as PromiseRejectedResult).reason).toMatchObject({ type: "QUOTA_EXCEEDED" });
		expect(theirs).toBeGreaterThan(0);
		expect(ours + theirs).toBe(50);
		expect(await c.usage("t-replicas")).toBe(50);
	});

	it("parallel reservations of different sizes never pass the limit together", async () => {
		const c = counter("storageBytes");
		const sizes = [400, 300, 300, 250, 200, 150, 100, 100, 50, 50];
		const results = await Promise.allSettled(sizes.map(size => c.reserve("t-bytes", size, 1000)));
		const granted = sizes.filter((_, i) => results[i].status === "fulfilled").reduce((a, b) => a + b, 0);
		expect(granted).toBeLessThanOrEqual(1000);
		expect(await c.usage("t-bytes")).toBe(granted);
	});

	it("a release makes room again, never below zero", async () => {
		const c = counter();
		await c.reserve("t-release", 1, 1);
		await expect(c.reserve("t-release", 1, 1)).rejects.toMatchObject({ type: "QUOTA_EXCEEDED" });
		await c.release("t-release", 1);
		await c.release("t-release", 5);
		expect(await c.usage("t-release")).toBe(0);
		await expect(c.reserve("t-release", 1, 1)).resolves.toBe(1);
	});

	it("counters of tenants and resources are separate", async () => {
		await counter().reserve("t-a", 1, 1);
		await expect(counter().reserve("t-b", 1, 1)).resolves.toBe(1);
		await expect(counter("members").reserve("t-a", 1, 1)).resolves.toBe(1);
	});

	it("a counter left high (a reservation whose insert never happened) is recounted only once it has been quiet", async () => {
		clock = Date.now();
		const c = counter();
		await db.quota_items.insertDoc(systemScope("t-drift"), { n: 1 });
		await c.reserve("t-drift", 1, 2); // 1 real + 1 reserved that never became a document
		await expect(c.reserve("t-drift", 1, 2)).rejects.toMatchObject({ type: "QUOTA_EXCEEDED" });
		clock += 30_000;
		await expect(c.reserve("t-drift", 1, 2)).rejects.toMatchObject({ type: "QUOTA_EXCEEDED" });
		clock += 31_000;
		await expect(c.reserve("t-drift", 1, 2)).resolves.toBe(2);
	});

	it("a custom refusal replaces the 402", async () => {
		const c = new UsageCounter(db.quota_usage, { resource: "apiKeys", measure: async () => 0, exceeded: limit => new AppError("CONFLICT", `At most ${limit}`) });
		await c.reserve("t-custom", 2, 2);
		await expect(c.reserve("t-custom", 1, 2)).rejects.toMatchObject({ type: "CONFLICT", message: "At most 2" });
	});

	it("warns once when a reservation crosses 80 % of the limit, and again only after falling back below", async () => {
		const warnings: string[] = [];
		const c = new UsageCounter(db.quota_usage, {
			resource: "warned",
			measure: async () => 0,
			onWarning: async (tenantId, used, limit) => void warnings.push(`${tenantId} ${used}/${limit}`)
		});
		for (let i = 0; i < 5; i++) await c.reserve("t-warn", 1, 5);
		expect(warnings).toEqual(["t-warn 4/5"]);
		await c.release("t-warn", 3);
		await c.reserve("t-warn", 3, 5);
		expect(warnings).toEqual(["t-warn 4/5", "t-warn 5/5"]);
		const parallel = new UsageCounter(db.quota_usage, { resource: "warned-parallel", measure: async () => 0, onWarning: async (t, used) => void warnings.push(`parallel ${used}`) });
		await Promise.all(Array.from({ length: 10 }, () => parallel.reserve("t-warn", 1, 10)));
		expect(warnings.filter(w => w.startsWith("parallel"))).toEqual(["parallel 8"]);
	});
});
