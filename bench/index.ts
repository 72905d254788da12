/**
 * `npm run bench`: figures and ratios against a bare baseline measured in the same run, on the
 * same machine. Nothing here is asserted; tests never time anything.
 *
 *  1. HTTP: a bare node:http JSON server vs the gateway (routing, auth hook, RBAC, rate limit,
 *     validation, error shape) on a public route and on a guarded route.
 *  2. The device heartbeat (the hot path) vs a bare JSON echo server.
 *  3. Data: raw NeDB inserts/reads vs the same through the db mixin (tenant scope, query guard,
 *     id generation, public shape).
 *  4. Scheduling at scale: one tenant with 10 000 displays (200 tags, 100 groups) and 1 000
 *     schedules. Resolving one display's manifest with the pure engine given only the schedules
 *     that target it (baseline) vs the engine over every schedule, the in-memory index, the
 *     service's targetKeys lookup, raw NeDB with and without an index on targetKeys, a cache miss
 *     through the broker and GET /device/manifest (miss, cached 200, cached 304); then full and
 *     one-tag recomputations: displays per second and the longest event-loop stall.
 *  5. Analytics ingestion (bench/analytics.ts): the platform as users start it (npm start's command,
 *     a process of its own; chDB in-process, or a ClickHouse server with --clickhouse) takes
 *     1 000 000 plays in POSTs of 500 to /device/playback: plays/s accepted (vs a bare node:http
 *     server parsing the same bodies) and plays/s until GET /analytics/playback counts them all
 *     (vs the store's own insert rate).
 *  6. Analytics reports over 10 000 000 plays of one tenant loaded straight into its store:
 *     p50/p95 of the playback report by content, display, group, hour and day over 90 days, of
 *     uptime and of one day's CSV export, vs the same SQL on the store alone.
 *  7. The fleet (bench/fleet.ts), on npm start's command with the load from a process of its own:
 *     heartbeats at 64 connections (one process; split over NATS and Redis when they answer)
 *     vs a bare JWT-verifying server, 304 manifests, and resident memory per display.
 *
 * `npm run bench -- [scenario ...] [--quick] [--option=value ...]` runs some (all when none is
 * named, analytics then at smoke size; `analytics` is 5 and 6 at full size); an unknown name or
 * option prints the list (usage()).
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import inspector from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import Datastore from "@seald-io/nedb";
import { DbMixin, systemScope, tenantCollection, type DbVars, type TenantCollection, type TenantOwned } from "../mixins/db.mixin";
import { newId } from "../shared/ids";
import type { Principal } from "../shared/rbac";
import { request, startBroker, startGateway } from "../test/helpers/platform";
import { ProbeService, StubAuthService, tokenOf } from "../test/helpers/stub-services";
import DevicesService from "../services/devices.service";
import { ruleOf, type OverrideDoc, type PlaylistDoc, type ScheduleDoc } from "../services/scheduling/views";
import type { DisplayDoc, DisplayGroupDoc } from "../services/devices/displays";
import { call } from "../shared/contracts";
import { resolve as engineResolve, type DisplayTarget, type TargetSet } from "../services/scheduling/engine";
import { cacheKeys } from "../services/scheduling/manifest-cache";
import { displayKeys, ScheduleIndex, targetKeys } from "../services/scheduling/targeting";
import type { KeyValueStore } from "../shared/kv";
import { presenceKeys } from "../services/devices/presence";
import { bearer, newAccount, pairDisplay, register, startTestPlatform } from "../test/helpers/accounts";
import { measure, report, reported } from "./figures";
import { ANALYTICS_OPTIONS, analyticsIngestBench, analyticsOptions, analyticsReportsBench } from "./analytics";
import { fleetHeartbeatBench, fleetManifestBench, fleetMemoryBench, fleetOptions, fleetSkipped } from "./fleet";

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function get(url: string, headers: Record<string, string> = {}): Promise<void> {
	return new Promise((resolve, reject) => {
		http
			.get(url, { agent, headers }, res => {
				if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`));
				res.resume();
				res.on("end", resolve);
			})
			.on("error", reject);
	});
}

async function httpBench(): Promise<void> {
	const bare = http.createServer((_req, res) => {
		const body = JSON.stringify({ ok: true });
		res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
		res.end(body);
	});
	await new Promise<void>(resolve => bare.listen(0, "127.0.0.1", resolve));
	const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
	const gw = await startGateway([StubAuthService, ProbeService], { RATE_LIMIT_PER_MINUTE: "1000000" });
	const viewer = { Authorization: `Bearer ${tokenOf("viewer")}` };
	try {
		const baseline = await measure("bare node:http JSON", () => get(bareUrl));
		const figures = [
			await measure("gateway GET /health/live (ops route)", () => get(`${gw.url}/health/live`)),
			await measure("gateway GET public action", () => get(`${gw.url}/api/v1/probe/perm/public`)),
			await measure("gateway GET guarded action (auth+RBAC+limit)", () => get(`${gw.url}/api/v1/probe/perm/tenant.read`, viewer))
		];
		report("HTTP requests (16 concurrent, keep-alive)", baseline, figures);
	} finally {
		await gw.stop();
		bare.close();
	}
}

function post(url: string, body: string, headers: Record<string, string> = {}, via: http.Agent | false = agent): Promise<void> {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method: "POST", agent: via, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers } }, res => {
			if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`));
			res.resume();
			res.on("end", resolve);
		});
		req.on("error", reject);
		req.end(body);
	});
}

/**
 * The device hot path: the real platform (auth, tenants, devices) and a paired display sending
 * heartbeats with metrics — token from the cache, presence and metrics written, commands read.
 */
async function heartbeatBench(): Promise<void> {
	const bare = http.createServer((req, res) => {
		let body = "";
		req.on("data", chunk => (body += chunk));
		req.on("end", () => {
			const answer = JSON.stringify({ serverTime: new Date().toISOString(), received: JSON.parse(body) as unknown });
			res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(answer) });
			res.end(answer);
		});
	});
	await new Promise<void>(resolve => bare.listen(0, "127.0.0.1", resolve));
	const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
	const p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "10" }, [DevicesService]);
	try {
		const owner = await register(p, newAccount("bench"));
		const { token: deviceToken } = await pairDisplay(p, owner, { name: "Bench" });
		const body = JSON.stringify({ metrics: { cpu: 20, memory: 41, disk: 63, temperature: 50 }, appVersion: "1.0.0", uptimeSec: 1200 });
		const baseline = await measure("bare node:http JSON echo", () => post(bareUrl, body));
		const heartbeat = await measure("POST /device/heartbeat (device token, presence, metrics)", () => post(p.api("/device/heartbeat"), body, bearer(deviceToken)));
		report("Device heartbeats (16 concurrent, keep-alive)", baseline, [heartbeat]);
	} finally {
		await p.stop();
		bare.close();
	}
}

async function dataBench(): Promise<void> {
	const raw = new Datastore({ inMemoryOnly: true });
	const auth: Principal = { kind: "user", tenantId: "bench-tenant", userId: "u", role: "owner" };
	interface Note extends TenantOwned {
		name: string;
	}
	const COLLECTIONS = { bench_notes: tenantCollection<Note>() };
	const Notes: ServiceSchema<ServiceSettingSchema, object, DbVars<typeof COLLECTIONS>> = {
		name: "notes",
		mixins: [DbMixin(COLLECTIONS)],
		actions: {
			create: { handler(ctx: Context<{ name: string }>) { return this.db.bench_notes.insertDoc(ctx, { name: ctx.params.name }); } },
			get: { handler(ctx: Context<{ id: string }>) { return this.db.bench_notes.getDoc(ctx, ctx.params.id); } }
		}
	};
	const tb = await startBroker([Notes]);
	try {
		const rawIds: string[] = [];
		const mixinIds: string[] = [];
		const rawInsert = await measure("raw NeDB insert", async () => {
			const doc = await raw.insertAsync({ _id: newId(), tenantId: "bench-tenant", name: "n" });
			rawIds.push(doc._id as string);
		}, 2000, 4);
		const mixinInsert = await measure("db mixin insertDoc (via broker.call)", async () => {
			const doc = (await tb.broker.call("notes.create", { name: "n" }, { meta: { auth } })) as { id: string };
			mixinIds.push(doc.id);
		}, 2000, 4);
		report("Document inserts (4 concurrent, NeDB in memory)", rawInsert, [mixinInsert]);

		let i = 0;
		const rawRead = await measure("raw NeDB findOne by id", async () => {
			await raw.findOneAsync({ _id: rawIds[i++ % rawIds.length], tenantId: "bench-tenant" });
		}, 2000, 4);
		const mixinRead = await measure("db mixin getDoc (via broker.call)", async () => {
			await tb.broker.call("notes.get", { id: mixinIds[i++ % mixinIds.length] }, { meta: { auth } });
		}, 2000, 4);
		report("Document reads by id", rawRead, [mixinRead]);
	} finally {
		await tb.stop();
	}
}

// ---- 4. scheduling at scale -----------------------------------------------------------------

const SCALE = { displays: 10_000, schedules: 1_000, tags: 200, groups: 100, playlists: 8, content: 12, paired: 4 };
const ZONES = [null, null, null, "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Los_Angeles", "Europe/London"];
/** Daily windows [startTime, endTime]; nulls are all day, 22:00–06:00 crosses midnight. */
const WINDOWS: Array<[string | null, string | null]> = [
	[null, null],
	[null, null],
	["06:00", "10:00"],
	["08:00", "18:00"],
	["09:00", "17:30"],
	["11:30", "14:00"],
	["17:00", "22:00"],
	["22:00", "06:00"],
	["00:00", "12:00"],
	["12:00", null]
];

/** What the benchmark reaches inside the scheduling service (its methods and collections). */
interface SchedulingInternals {
	db: { schedules: TenantCollection<ScheduleDoc>; playlists: TenantCollection<PlaylistDoc> };
	kv: KeyValueStore;
	tenantZone(tenantId: string): Promise<string>;
	schedulesTargeting(tenantId: string, display: DisplayTarget): Promise<ScheduleDoc[]>;
	/** `rulesOf` answers a display's schedules and power schedules (the service's DisplayRules). */
	manifestsFor(tenantId: string, displays: DisplayTarget[], rulesOf: (d: DisplayTarget) => { schedules: ScheduleDoc[]; power: [] }, overrides: OverrideDoc[], at: Date): Promise<Array<{ manifest: { etag: string } }>>;
	recompute(tenantId: string, selector: { all?: boolean; tags?: string[] }): Promise<void>;
}

interface DevicesInternals {
	db: { displays: TenantCollection<DisplayDoc>; display_groups: TenantCollection<DisplayGroupDoc> };
	kv: KeyValueStore;
	sweepOnce(): Promise<void>;
}

/** The NeDB datastore behind a collection of the db mixin (NODE_ENV=test: in memory). */
interface NeDbInternals {
	indexes: Record<string, unknown>;
	getAllData(): unknown[];
	_getCandidatesAsync(...args: unknown[]): Promise<unknown[]>;
}

/** A collection's private store and its moleculer-db adapter, reached into for measuring only. */
function nedbOf<T extends TenantOwned>(collection: TenantCollection<T>): NeDbInternals {
	return (collection as unknown as { store: { adapter: { db: NeDbInternals } } }).store.adapter.db;
}

/**
 * How many stored documents NeDB handed to its matcher while `run` ran: the matches of the one
 * index it could use, or every document of the collection when it had none.
 */
async function candidatesExamined<T extends TenantOwned>(collection: TenantCollection<T>, run: () => Promise<unknown>): Promise<{ examined: number; stored: number; indexes: string[] }> {
	const store = nedbOf(collection);
	const original = store._getCandidatesAsync;
	let examined = 0;
	store._getCandidatesAsync = async function (this: NeDbInternals, ...args: unknown[]) {
		const docs = await original.apply(this, args);
		examined += docs.length;
		return docs;
	};
	try {
		await run();
	} finally {
		Reflect.deleteProperty(store, "_getCandidatesAsync");
	}
	return { examined, stored: store.getAllData().length, indexes: Object.keys(store.indexes) };
}

/**
 * `--cpu-prof[=DIR]` for an in-process scenario: `profile(name, run)` writes a V8 CPU profile of
 * just `run` to DIR/name.cpuprofile (summarise with bench/profile-summary.ts). Without the flag
 * it only runs `run`.
 */
async function recomputeProfiler(dir: string | undefined): Promise<<T>(name: string, run: () => Promise<T>) => Promise<T>> {
	if (dir === undefined) return (_name, run) => run();
	const absolute = path.resolve(dir || "bench/profiles");
	fs.mkdirSync(absolute, { recursive: true });
	const session = new inspector.Session();
	session.connect();
	await session.post("Profiler.enable");
	return async (name, run) => {
		await session.post("Profiler.start");
		try {
			return await run();
		} finally {
			const { profile } = await session.post("Profiler.stop");
			const file = path.join(absolute, `${name}.cpuprofile`);
			fs.writeFileSync(file, JSON.stringify(profile));
			console.log(`    (CPU profile: ${file})`);
		}
	};
}

/** A seeded generator (mulberry32): every run builds the same tenant. */
function seeded(seed: number) {
	let a = seed >>> 0;
	const next = (): number => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
	const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)];
	const some = <T>(list: readonly T[], n: number): T[] => {
		const out = new Set<T>();
		while (out.size < Math.min(n, list.length)) out.add(pick(list));
		return [...out];
	};
	return { next, int, pick, some };
}

/** GET expecting `status`; answers the ETag header. */
function getExpecting(url: string, status: number, headers: Record<string, string> = {}): Promise<string> {
	return new Promise((resolve, reject) => {
		http
			.get(url, { agent, headers }, res => {
				if (res.statusCode !== status) reject(new Error(`${url} answered ${res.statusCode}, expected ${status}`));
				res.resume();
				res.on("end", () => resolve(String(res.headers.etag ?? "")));
			})
			.on("error", reject);
	});
}

/** A pool of items handed out one per concurrent worker (so workers never share a display). */
function pool<T>(items: T[]): <R>(use: (item: T) => Promise<R>) => Promise<R> {
	const free = [...items];
	return async use => {
		const item = free.pop();
		if (item === undefined) throw new Error("pool exhausted: more workers than items");
		try {
			return await use(item);
		} finally {
			free.push(item);
		}
	};
}

/**
 * One tenant with 10 000 displays and 1 000 schedules (NeDB in memory, memory key-value store,
 * as in tests): what resolving one display's manifest costs with and without the target index,
 * through the service, the broker and HTTP; then recomputing every display, and one tag's.
 */
async function schedulingBench(o: BenchOptions): Promise<void> {
	const p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: String(SCALE.displays + 100), RATE_LIMIT_PER_MINUTE: "1000000" });
	try {
		// ---- set-up (not timed by measure) ----
		const setupStarted = Date.now();
		const rnd = seeded(20260101);
		const owner = await register(p, newAccount("sched"));
		const tenantId = owner.tenant.id;
		const scope = systemScope(tenantId);
		const devices = p.broker.getLocalService("devices") as unknown as DevicesInternals;
		const sched = p.broker.getLocalService("scheduling") as unknown as SchedulingInternals;

		const tags = Array.from({ length: SCALE.tags }, (_, i) => `tag-${String(i).padStart(3, "0")}`);
		const groupIds: string[] = [];
		for (let i = 0; i < SCALE.groups; i++) groupIds.push((await devices.db.display_groups.insertDoc(scope, { name: `Group ${i}`, description: null })).id);

		const contentIds: string[] = [];
		for (let i = 0; i < SCALE.content; i++) {
			const res = await request<{ id: string }>(p.api("/content/url"), {
				method: "POST",
				headers: bearer(owner.accessToken),
				json: { name: `Page ${i}`, url: `https://example.com/signage/${i}`, durationMs: 10_000 + 1000 * i }
			});
			if (res.status !== 201) throw new Error(`content/url answered ${res.status}: ${res.text}`);
			contentIds.push(res.body.id);
		}
		const playlistIds: string[] = [];
		for (let i = 0; i < SCALE.playlists; i++) {
			const items = rnd.some(contentIds, rnd.int(2, 5)).map(contentId => ({ id: newId(), contentId, durationMs: rnd.next() < 0.3 ? 15_000 : null }));
			const doc = await sched.db.playlists.insertDoc(scope, { name: `Playlist ${i}`, items, contentIds: [...new Set(items.map(item => item.contentId))] });
			playlistIds.push(doc.id);
		}

		// A few displays paired over the real flow, for device tokens; the rest inserted directly.
		const paired: Array<{ id: string; token: string }> = [];
		for (let i = 0; i < SCALE.paired; i++) {
			const { display, token } = await pairDisplay(p, owner, { name: `Bench ${i}`, timezone: "Europe/Paris", tags: rnd.some(tags, 3), groupIds: rnd.some(groupIds, 2) });
			paired.push({ id: display.id, token });
		}
		const displayIds = paired.map(d => d.id);
		for (let i = displayIds.length; i < SCALE.displays; i++) {
			const displayTags = rnd.some(tags, rnd.int(1, 3));
			const doc = await devices.db.displays.insertDoc(scope, {
				name: `Display ${i}`,
				status: "pending",
				timezone: rnd.pick(ZONES),
				tags: displayTags,
				groupIds: rnd.some(groupIds, rnd.int(0, 2)),
				defaultPlaylistId: rnd.next() < 0.3 ? rnd.pick(playlistIds) : null,
				hardwareId: null,
				model: null,
				resolution: null
			});
			displayIds.push(doc.id);
		}

		const DAY = 24 * 3600_000;
		const now = Date.now();
		const date = (days: number) => new Date(now + days * DAY).toISOString().slice(0, 10);
		for (let i = 0; i < SCALE.schedules; i++) {
			let targets: TargetSet;
			const kind = rnd.next();
			if (i < 3 * paired.length) targets = { displayIds: [paired[i % paired.length].id, ...rnd.some(displayIds, rnd.int(0, 4))] };
			else if (kind < 0.4) targets = { displayIds: rnd.some(displayIds, rnd.int(1, 5)) };
			else if (kind < 0.7) targets = { groupIds: [rnd.pick(groupIds)] };
			else targets = { tags: rnd.some(tags, rnd.int(1, 2)) };
			const clean = { displayIds: [...new Set(targets.displayIds ?? [])], groupIds: targets.groupIds ?? [], tags: targets.tags ?? [] };
			const dates = rnd.next();
			const [startDate, endDate] =
				dates < 0.5 ? [null, null] : dates < 0.8 ? [date(-rnd.int(0, 90)), date(rnd.int(7, 365))] : dates < 0.9 ? [date(-rnd.int(60, 120)), date(-rnd.int(1, 30))] : [date(rnd.int(1, 60)), null];
			const days = rnd.next();
			const daysOfWeek = days < 0.4 ? null : days < 0.65 ? [1, 2, 3, 4, 5] : days < 0.8 ? [6, 7] : rnd.some([1, 2, 3, 4, 5, 6, 7], rnd.int(1, 4)).sort((a, b) => a - b);
			const [startTime, endTime] = rnd.pick(WINDOWS);
			const priority = rnd.next() < 0.6 ? 0 : rnd.next() < 0.9 ? rnd.int(1, 10) : 100;
			await sched.db.schedules.insertDoc(scope, {
				name: `Schedule ${i}`,
				playlistId: rnd.pick(playlistIds),
				targets: clean,
				targetKeys: targetKeys(clean),
				excludeDisplayIds: rnd.next() < 0.05 ? rnd.some(displayIds, 1) : [],
				startDate,
				endDate,
				daysOfWeek,
				startTime,
				endTime,
				priority
			});
		}
		console.log(
			`\nScheduling at scale — set-up (not timed below): 1 tenant, ${SCALE.displays} displays (${SCALE.paired} paired over HTTP), ${SCALE.groups} groups, ${SCALE.tags} tags, ` +
				`${SCALE.schedules} schedules, ${SCALE.playlists} playlists, ${SCALE.content} web pages in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`
		);

		// ---- the display under test ----
		const zone = await sched.tenantZone(tenantId);
		const targetOf = async (id: string): Promise<DisplayTarget> => {
			const doc = await devices.db.displays.getDoc(scope, id);
			return {
				id: doc.id,
				timezone: doc.timezone,
				tenantTimezone: zone,
				tags: doc.tags,
				groupIds: doc.groupIds,
				defaultPlaylistId: doc.defaultPlaylistId
			};
		};
		const display = await targetOf(paired[0].id);
		const allDocs = await sched.db.schedules.findDocs(scope);
		const allRules = allDocs.map(ruleOf);
		const keys = new Set(displayKeys(display));
		const targeted = allRules.filter(r => targetKeys(r.targets).some(k => keys.has(k)));
		const index = new ScheduleIndex(allRules);
		const at = () => new Date();
		const bare = engineResolve(display, targeted, [], at(), { candidates: false });
		const scanned = engineResolve(display, allRules, [], at(), { candidates: false });
		const fromDb = await sched.schedulesTargeting(tenantId, display);
		if (bare.scheduleId !== scanned.scheduleId || bare.validUntil !== scanned.validUntil || fromDb.length !== targeted.length || index.forDisplay(display).length !== targeted.length) {
			throw new Error("scheduling bench: the pre-filtered, indexed and full resolutions disagree");
		}
		console.log(
			`  display ${display.id}: ${display.tags.length} tags, ${display.groupIds.length} groups; ${targeted.length} of ${allRules.length} schedules target it; ` +
				`plays ${bare.source}${bare.scheduleId ? ` (schedule ${bare.scheduleId})` : ""} until ${bare.validUntil ?? "forever"}`
		);
		const pairedInfo: string[] = [];
		for (const d of paired) {
			const target = await targetOf(d.id);
			const rules = index.forDisplay(target);
			const r = engineResolve(target, rules, [], at(), { candidates: false });
			pairedInfo.push(`${rules.length} schedules, ${r.source} until ${r.validUntil?.slice(0, 16) ?? "forever"}`);
		}
		console.log(`  the ${paired.length} paired displays (first one above): ${pairedInfo.join("; ")}`);
		const lookup = await candidatesExamined(sched.db.schedules, () => sched.schedulesTargeting(tenantId, display));
		console.log(
			`  schedulesTargeting: ${fromDb.length} schedules found; NeDB examined ${lookup.examined} of the ${lookup.stored} stored schedule documents ` +
				`(indexes on the collection: ${lookup.indexes.join(", ")})`
		);

		// The same schedule documents in bare NeDB, without and with an index on targetKeys.
		const rawDocs = allDocs.map(({ id, ...rest }) => ({ _id: id, ...rest }));
		const rawPlain = new Datastore({ inMemoryOnly: true });
		const rawIndexed = new Datastore({ inMemoryOnly: true });
		await rawIndexed.ensureIndexAsync({ fieldName: "targetKeys" });
		await rawPlain.insertAsync(rawDocs);
		await rawIndexed.insertAsync(rawDocs);
		const rawQuery = { targetKeys: { $in: displayKeys(display) }, tenantId };
		if ((await rawIndexed.findAsync(rawQuery)).length !== targeted.length) throw new Error("scheduling bench: raw indexed lookup disagrees");

		// ---- one display's manifest, in process (1 at a time) ----
		const devicePrincipal = (displayId: string): Principal => ({ kind: "device", tenantId, displayId });
		const manifestKey = cacheKeys.manifest;
		let turn = 0;
		// Let the JIT and the collector settle after the set-up before the baseline.
		for (const until = Date.now() + 1000; Date.now() < until; ) engineResolve(display, index.forDisplay(display), [], at(), { candidates: false });
		// The engine compiles each rule object once and remembers its windows: the baseline hands it
		// the same objects every call, as one recomputation does for its displays; the next case
		// makes them new each call, as one request building them from stored documents does.
		const baseline = await measure(`engine, only the ${targeted.length} targeting schedules`, async () => {
			engineResolve(display, targeted, [], at(), { candidates: false });
		}, 2000, 1);
		const inProcess = [
			await measure(`engine, the same ${targeted.length} as new rule objects (compiled each call)`, async () => {
				engineResolve(display, targeted.map(r => ({ ...r })), [], at(), { candidates: false });
			}, 1500, 1),
			await measure(`engine over all ${allRules.length} schedules (no index)`, async () => {
				engineResolve(display, allRules, [], at(), { candidates: false });
			}, 1500, 1),
			await measure("in-memory ScheduleIndex.forDisplay + engine", async () => {
				engineResolve(display, index.forDisplay(display), [], at(), { candidates: false });
			}, 1500, 1),
			await measure("raw NeDB find targetKeys $in, no index (lookup only)", async () => {
				await rawPlain.findAsync(rawQuery);
			}, 1500, 1),
			await measure("raw NeDB find targetKeys $in, indexed (lookup only)", async () => {
				await rawIndexed.findAsync(rawQuery);
			}, 1500, 1),
			await measure("service schedulesTargeting (lookup only)", async () => {
				await sched.schedulesTargeting(tenantId, display);
			}, 1500, 1),
			await measure("indexed DB lookup + resolve (schedulesTargeting)", async () => {
				const docs = await sched.schedulesTargeting(tenantId, display);
				engineResolve(display, docs.map(ruleOf), [], at(), { candidates: false });
			}, 1500, 1),
			await measure("schedulesTargeting + manifestsFor (playlist, content)", async () => {
				const docs = await sched.schedulesTargeting(tenantId, display);
				await sched.manifestsFor(tenantId, [display], () => ({ schedules: docs, power: [] }), [], at());
			}, 1500, 1),
			await measure(`scheduling.deviceManifest via broker, miss (${paired.length} in turn)`, async () => {
				const { id } = paired[turn++ % paired.length];
				await sched.kv.del(manifestKey(id));
				await p.broker.call("scheduling.deviceManifest", {}, { meta: { auth: devicePrincipal(id), headers: {} } });
			}, 1500, 1)
		];
		report(`One display's manifest among ${SCALE.displays} displays and ${SCALE.schedules} schedules (in process, 1 at a time)`, baseline, inProcess);

		// ---- GET /device/manifest (one display per worker, so a deleted cache entry is a miss) ----
		const workers = paired.length;
		const etags = new Map<string, string>();
		for (const d of paired) etags.set(d.id, await getExpecting(p.api("/device/manifest"), 200, bearer(d.token)));
		const withDisplay = pool(paired);
		const overHttp = [
			await measure("GET /device/manifest, cache miss", () =>
				withDisplay(async d => {
					await sched.kv.del(manifestKey(d.id));
					await getExpecting(p.api("/device/manifest"), 200, bearer(d.token));
				}), 2000, workers),
			await measure("GET /device/manifest, cached, 200", async () => {
				await withDisplay(d => getExpecting(p.api("/device/manifest"), 200, bearer(d.token)));
			}, 2000, workers),
			await measure("GET /device/manifest, cached, If-None-Match → 304", async () => {
				await withDisplay(d => getExpecting(p.api("/device/manifest"), 304, { ...bearer(d.token), "If-None-Match": etags.get(d.id) ?? "" }));
			}, 2000, workers)
		];
		report(`Device manifests over HTTP (${workers} concurrent, keep-alive; baseline: the pre-filtered engine above)`, baseline, overHttp);

		// ---- recomputation (what a change of a tenant's schedules sets off in the background) ----
		console.log(`\nRecomputing manifests (scheduling.recompute, what a change sets off in the background)`);
		const profile = await recomputeProfiler(o.flags.get("cpu-prof"));
		/** Duration, and the longest the event loop went without running a timer meanwhile. */
		const timed = async (run: () => Promise<unknown>): Promise<{ ms: number; stallMs: number }> => {
			let last = performance.now();
			let stallMs = 0;
			const tick = setInterval(() => {
				const now = performance.now();
				stallMs = Math.max(stallMs, now - last);
				last = now;
			}, 5);
			const started = performance.now();
			await run();
			const ms = performance.now() - started;
			// One more turn of the loop, so a stall lasting until the end is recorded too.
			await new Promise(resolve => setTimeout(resolve, 10));
			clearInterval(tick);
			return { ms, stallMs };
		};
		/** The display pages recompute asks devices for, alone. */
		const paging = async (selector: { all?: boolean; tags?: string[] }) => {
			let afterId: string | null = null;
			do {
				const page: { next: string | null } = await call(p.broker, "devices.displaysFor", { tenantId, ...selector, afterId: afterId ?? undefined, limit: 1000 });
				afterId = page.next;
			} while (afterId);
		};
		for (let run = 1; run <= 2; run++) {
			// On the second run a device asks for its (cached) manifest as the recompute begins.
			const asked = performance.now();
			const answered = run === 2 ? getExpecting(p.api("/device/manifest"), 200, bearer(paired[1].token)).then(() => performance.now() - asked) : null;
			const { ms, stallMs } = await timed(() => profile(`recompute-all-${run}`, () => sched.recompute(tenantId, { all: true })));
			const what = run === 1 ? "ETags new" : "ETags unchanged";
			console.log(
				`  all ${SCALE.displays} displays, run ${run} (${what}): ${ms.toFixed(0)} ms, ${((SCALE.displays / ms) * 1000).toFixed(0)} displays/s, longest event-loop stall ${stallMs.toFixed(0)} ms`
			);
			if (answered) console.log(`    a cached GET /device/manifest sent as it began answered after ${(await answered).toFixed(0)} ms`);
		}
		console.log(`    of which paging the displays (devices.displaysFor, 1 000 a page) alone: ${(await timed(() => paging({ all: true }))).ms.toFixed(0)} ms`);
		const tag = display.tags[0];
		const carriers = await devices.db.displays.countDocs(scope, { tags: tag });
		const runs = 5;
		let tagMs = 0;
		let tagStall = 0;
		let tagPaging = 0;
		for (let run = 0; run < runs; run++) {
			const { ms, stallMs } = await timed(() => sched.recompute(tenantId, { tags: [tag] }));
			tagMs += ms / runs;
			tagStall = Math.max(tagStall, stallMs);
			tagPaging += (await timed(() => paging({ tags: [tag] }))).ms / runs;
		}
		console.log(
			`  one tag's displays ("${tag}", ${carriers} displays), mean of ${runs}: ${tagMs.toFixed(1)} ms, ${((carriers / tagMs) * 1000).toFixed(0)} displays/s, longest event-loop stall ${tagStall.toFixed(0)} ms`
		);
		let displaysScan = { examined: 0, stored: 0, indexes: [] as string[] };
		const schedulesScan = await candidatesExamined(sched.db.schedules, async () => {
			displaysScan = await candidatesExamined(devices.db.displays, () => sched.recompute(tenantId, { tags: [tag] }));
		});
		console.log(
			`    of which devices.displaysFor alone: ${tagPaging.toFixed(1)} ms; NeDB examined ${displaysScan.examined} of ${displaysScan.stored} stored displays ` +
				`(indexes: ${displaysScan.indexes.join(", ")}) and ${schedulesScan.examined} of ${schedulesScan.stored} stored schedules`
		);

		// ---- a mass outage: every display of the tenant falls silent at once (a region's network) ----
		const silentSince = Date.now() - 3600_000;
		await devices.db.displays.updateWhere(scope, {}, { status: "online" });
		for (const id of displayIds) {
			await devices.kv.set(presenceKeys.lastSeen(id), String(silentSince));
			await devices.kv.set(presenceKeys.status(id), "online");
		}
		const asked = performance.now();
		// On a connection of its own: a kept-alive one idle since the recomputations may be closing.
		const beat = post(p.api("/device/heartbeat"), "{}", bearer(paired[0].token), false).then(() => performance.now() - asked);
		const sweep = await timed(() => profile("mass-outage", () => devices.sweepOnce()));
		const offline = await devices.db.displays.countDocs(scope, { status: "offline" });
		console.log(
			`\nA mass outage: the offline sweep finding all ${displayIds.length} displays silent at once: ${sweep.ms.toFixed(0)} ms, ${offline} marked offline, longest event-loop stall ${sweep.stallMs.toFixed(0)} ms; ` +
				`a heartbeat sent as it began answered after ${(await beat).toFixed(0)} ms`
		);
	} finally {
		await p.stop();
	}
}

// ---- the registry ----------------------------------------------------------------------------

interface BenchOptions {
	quick: boolean;
	/** `--name=value` options (a bare `--name` is ""). */
	flags: Map<string, string>;
}

/** Every scenario by name, in the order a run without names goes through them. */
const SCENARIOS: Record<string, { help: string; run(o: BenchOptions): Promise<void> }> = {
	http: { help: "bare node:http vs the gateway", run: httpBench },
	heartbeat: { help: "POST /device/heartbeat vs a bare JSON echo", run: heartbeatBench },
	data: { help: "raw NeDB vs the db mixin", run: dataBench },
	scheduling: { help: "manifests and recomputation at 10 000 displays", run: schedulingBench },
	"analytics:ingest": { help: "POST /device/playback to rows queryable (events/s)", run: o => analyticsIngestBench(analyticsOptions(o.flags, o.quick)) },
	"analytics:reports": { help: "report latency over 10 million plays", run: o => analyticsReportsBench(analyticsOptions(o.flags, o.quick)) },
	"fleet:heartbeat": { help: "npm start: heartbeats at 64 connections vs a bare JWT server (+ split topology)", run: fleetHeartbeatBench },
	"fleet:manifest": { help: "npm start: 304 manifests at 64 connections", run: fleetManifestBench },
	"fleet:memory": { help: "npm start: resident memory per display (2 000 screens)", run: fleetMemoryBench }
};
/** Names for several scenarios at once. */
const GROUPS: Record<string, string[]> = { analytics: ["analytics:ingest", "analytics:reports"], fleet: ["fleet:heartbeat", "fleet:manifest", "fleet:memory"] };
const FLAGS = new Set(["quick", "no-chdb", "clickhouse", "cpu-prof", "split-gateway-services", ...Object.keys(ANALYTICS_OPTIONS)]);

function usage(): string {
	const lines = [
		"usage: npm run bench -- [scenario ...] [--quick] [--option=value ...]",
		"scenarios (all when none is named, analytics then in --quick size):",
		...Object.entries(SCENARIOS).map(([name, s]) => `  ${name.padEnd(20)}${s.help}`),
		...Object.entries(GROUPS).map(([name, list]) => `  ${name.padEnd(20)}${list.join(" + ")}`),
		"options:",
		"  --quick             analytics: a smoke run of well under a minute a scenario (defaults in brackets)",
		...Object.entries(ANALYTICS_OPTIONS).map(([name, d]) => `  --${`${name}=N`.padEnd(18)}${d.help} (${d.full} [${d.quick}])`),
		"  --clickhouse[=URL]  analytics: also against a ClickHouse server (URL, or CLICKHOUSE_URL; bare: start one with scripts/clickhouse-local.sh)",
		"  --no-chdb           analytics: skip the embedded chDB runs",
		"  --cpu-prof[=DIR]    fleet: each platform process writes a V8 CPU profile into DIR (bench/profiles) as it exits;",
		"                      scheduling: a profile of each full recomputation and of the mass outage's sweep, in process",
		"  --split-gateway-services=LIST  fleet:heartbeat: the split gateway's process also runs these services (devices: heartbeats",
		"                      served beside the gateway, never crossing NATS; not the deployed shape, for comparison)"
	];
	return lines.join("\n");
}

function parseArgs(argv: string[]): { names: string[]; options: BenchOptions } {
	const names: string[] = [];
	const flags = new Map<string, string>();
	for (const arg of argv) {
		const flag = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
		if (flag) {
			if (!FLAGS.has(flag[1])) throw new Error(`unknown option ${arg}`);
			flags.set(flag[1], flag[2] ?? "");
		} else if (GROUPS[arg]) names.push(...GROUPS[arg]);
		else if (SCENARIOS[arg]) names.push(arg);
		else throw new Error(`unknown scenario "${arg}"`);
	}
	// A run of everything keeps to a few minutes: analytics at smoke size there (its full size,
	// 1 000 000 plays and reports over 10 000 000, takes ~12 minutes: `npm run bench -- analytics`).
	if (!names.length) return { names: Object.keys(SCENARIOS), options: { quick: true, flags } };
	return { names: [...new Set(names)], options: { quick: flags.has("quick"), flags } };
}

/**
 * The run as JSON under bench/results/: where and when it ran, every table (figures with their
 * ratios) and every line printed (the figures outside tables: recomputation, memory, skips).
 */
function writeResults(names: string[], startedAt: Date, transcript: string[]): string {
	const dir = path.join(__dirname, "results");
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
	const machine = { node: process.version, platform: `${os.type()} ${os.release()}`, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", memoryGb: Math.round(os.totalmem() / 1024 ** 3) };
	fs.writeFileSync(file, `${JSON.stringify({ startedAt: startedAt.toISOString(), args: process.argv.slice(2), scenarios: names, machine, tables: reported, transcript }, null, 2)}\n`);
	return file;
}

async function main(): Promise<void> {
	let parsed: ReturnType<typeof parseArgs>;
	try {
		parsed = parseArgs(process.argv.slice(2));
	} catch (err) {
		console.error(`${(err as Error).message}\n${usage()}`);
		process.exit(2);
	}
	const startedAt = new Date();
	// Everything printed also goes into the run's JSON.
	const transcript: string[] = [];
	const print = console.log.bind(console);
	console.log = (...args: unknown[]) => {
		transcript.push(args.map(a => (typeof a === "string" ? a : String(a))).join(" "));
		print(...args);
	};
	console.log(`Marquee benchmarks — node ${process.version}, ${startedAt.toISOString()}`);
	try {
		fleetOptions(parsed.options.flags);
	} catch (err) {
		console.error(`${(err as Error).message}\n${usage()}`);
		process.exit(2);
	}
	for (const name of parsed.names) await SCENARIOS[name].run(parsed.options);
	if (parsed.names.some(name => name.startsWith("fleet:"))) fleetSkipped();
	console.log(`\nResults: ${path.relative(process.cwd(), writeResults(parsed.names, startedAt, transcript))}`);
	agent.destroy();
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
