/**
 * Webhooks (services/notifications/webhooks.ts) on real collections (NeDB in memory) with real
 * local receivers that verify every request with the official `standardwebhooks` library: the
 * fan-out of an event, retries on the schedule, Retry-After, 410 and long failure disabling the
 * endpoint, two workers racing, a crashed worker's lease taken over, the SSRF guard at creation
 * and at delivery, secret rotation, test events, manual retry, replay, the endpoint limit, and
 * what a tenant's deletion and export see. Time is the injected clock; schedules are given.
 */
import type { Service, ServiceSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, systemScope, type DbVars } from "../../mixins/db.mixin";
import { COLLECTIONS } from "../../services/notifications/documents";
import { sign } from "../../services/notifications/signing";
import type { Resolve } from "../../shared/ssrf";
import { MAX_ENDPOINTS, Webhooks } from "../../services/notifications/webhooks";
import type { PlatformEvent, WebhookEventType } from "../../shared/contracts";
import { AppError } from "../../shared/errors";
import { startBroker, type TestBroker } from "../helpers/platform";
import { verify, WebhookReceiver } from "../helpers/webhook-receiver";

type Db = DbVars<typeof COLLECTIONS>["db"];
const Holder: ServiceSchema = { name: "holder", mixins: [DbMixin(COLLECTIONS)] };

const T = "tenant-hooks";
const OTHER = "tenant-other";
const scope = systemScope(T);
const LEASE_MS = 60_000;

interface Made {
	webhooks: Webhooks;
	disabled: Array<{ tenantId: string; endpointId: string; reason: string }>;
}

/** A resolver from a fixed table; unknown names fail like NXDOMAIN. */
function table(entries: Record<string, string>): Resolve {
	return async hostname => {
		if (!entries[hostname]) throw new Error(`getaddrinfo ENOTFOUND ${hostname}`);
		return [{ address: entries[hostname], family: 4 }];
	};
}

describe("webhooks", () => {
	let started: TestBroker;
	let db: Db;
	let receiver: WebhookReceiver;
	let clock: number;
	let errors: unknown[];
	let counter = 0;

	beforeAll(async () => {
		started = await startBroker([Holder]);
		db = (started.broker.getLocalService("holder") as Service & DbVars<typeof COLLECTIONS>).db;
	});
	afterAll(() => started.stop());

	beforeEach(async () => {
		await Promise.all([db.webhook_endpoints.removeDocs(ALL_TENANTS, {}), db.webhook_events.removeDocs(ALL_TENANTS, {}), db.webhook_deliveries.removeDocs(ALL_TENANTS, {})]);
		// Whole seconds near the real time: the library checks webhook-timestamp against its own clock.
		clock = Math.floor(Date.now() / 1000) * 1000;
		errors = [];
		receiver = await WebhookReceiver.start();
	});
	afterEach(async () => {
		await receiver.close();
		expect(errors).toEqual([]);
	});

	const iso = (ms: number) => new Date(ms).toISOString();

	function make(options: { owner?: string; allowPrivate?: boolean; schedule?: number[]; disableAfterMs?: number; resolve?: Resolve } = {}): Made {
		const disabled: Made["disabled"] = [];
		const config = started.config;
		const webhooks = new Webhooks({
			endpoints: db.webhook_endpoints,
			events: db.webhook_events,
			deliveries: db.webhook_deliveries,
			config: {
				...config,
				notifications: {
					...config.notifications,
					webhookAllowPrivate: options.allowPrivate ?? true,
					webhookRetryScheduleMs: options.schedule ?? [1000, 5000, 10000],
					webhookDisableAfterMs: options.disableAfterMs ?? 5 * 86_400_000,
					webhookTimeoutMs: 5000,
					leaseMs: LEASE_MS
				}
			},
			owner: options.owner ?? "worker-1",
			logger: { info: () => undefined, warn: () => undefined, error: (...args: unknown[]) => errors.push(args) },
			onDisabled: async (tenantId, endpoint, reason) => {
				disabled.push({ tenantId, endpointId: endpoint.id, reason });
			},
			now: () => clock,
			resolve: options.resolve
		});
		return { webhooks, disabled };
	}

	function event(type: WebhookEventType = "display.offline", data: Record<string, unknown> = { displayId: "d-1" }, timestamp = "2026-03-01T12:00:00.000Z", tenantId = T): PlatformEvent {
		counter += 1;
		return { id: `evt_${counter}`, tenantId, type, timestamp, data };
	}

	async function onlyDelivery(w: Webhooks, endpointId: string) {
		const log = await w.deliveries(scope, endpointId, 1, 100);
		expect(log.rows).toHaveLength(1);
		return log.rows[0];
	}

	async function errorOf(promise: Promise<unknown>): Promise<AppError> {
		const err = await promise.then(
			() => null,
			(e: unknown) => e
		);
		expect(err).toBeInstanceOf(AppError);
		return err as AppError;
	}

	it("delivers an event once to each enabled endpoint subscribed to it, signed so the standardwebhooks library accepts it", async () => {
		const { webhooks: w } = make();
		const a = await w.create(scope, { url: `${receiver.url}?a`, events: ["display.offline", "display.online"], description: "ops" });
		const b = await w.create(scope, { url: `${receiver.url}?b`, events: ["content.ready"] });
		const c = await w.create(scope, { url: `${receiver.url}?c`, events: ["display.offline"] });
		await w.update(scope, c.id, { enabled: false });
		receiver.secret = a.secret;

		const e = event("display.offline", { displayId: "d-1", name: "Lobby" });
		await w.record(e);
		await w.record(e); // the channel delivered it twice
		expect(await w.tick()).toBe(1);

		expect(receiver.received).toHaveLength(1);
		const got = receiver.received[0];
		expect(got.path).toBe("/hooks?a");
		expect(got.verdict).toBe("ok");
		expect(got.body).toBe('{"type":"display.offline","timestamp":"2026-03-01T12:00:00.000Z","data":{"displayId":"d-1","name":"Lobby"}}');
		const row = await onlyDelivery(w, a.id);
		expect(row).toEqual({
			id: expect.any(String),
			endpointId: a.id,
			eventId: e.id,
			event: "display.offline",
			status: "succeeded",
			attempts: 1,
			lastStatusCode: 200,
			lastResponseBody: "ok",
			lastError: null,
			nextAttemptAt: null,
			createdAt: iso(clock),
			updatedAt: expect.any(String)
		});
		expect(got.headers["webhook-id"]).toBe(`msg_${row.id}`);
		expect(got.headers["webhook-timestamp"]).toBe(String(clock / 1000));
		expect((await w.deliveries(scope, b.id, 1, 20)).total).toBe(0);
		expect((await w.deliveries(scope, c.id, 1, 20)).total).toBe(0);
		expect(await db.webhook_events.countDocs(scope)).toBe(1);
	});

	it("a receiver answering 500 twice then 200 gets exactly three attempts of the same bytes and id; the log shows them", async () => {
		const { webhooks: w } = make({ schedule: [1000, 5000, 10000] });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["content.ready"] });
		receiver.secret = endpoint.secret;
		receiver.reply({ status: 500, body: "boom" }, { status: 500, body: "still boom" }, { status: 200, body: "thanks" });
		const t0 = clock;
		await w.record(event("content.ready", { contentId: "c-1" }));

		expect(await w.tick()).toBe(1);
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "pending", attempts: 1, lastStatusCode: 500, lastResponseBody: "boom", lastError: "The receiver answered 500", nextAttemptAt: iso(t0 + 1000) });
		expect(await w.tick()).toBe(0); // not due yet

		clock = t0 + 1000;
		expect(await w.tick()).toBe(1);
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "pending", attempts: 2, lastStatusCode: 500, lastResponseBody: "still boom", nextAttemptAt: iso(t0 + 6000) });

		clock = t0 + 6000;
		expect(await w.tick()).toBe(1);
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "succeeded", attempts: 3, lastStatusCode: 200, lastResponseBody: "thanks", lastError: null, nextAttemptAt: null });

		clock = t0 + 3_600_000;
		expect(await w.tick()).toBe(0);
		expect(receiver.received).toHaveLength(3);
		expect(receiver.received.map(r => r.verdict)).toEqual(["ok", "ok", "ok"]);
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(1);
		expect(new Set(receiver.received.map(r => r.body)).size).toBe(1);
		expect(receiver.received.map(r => r.headers["webhook-timestamp"])).toEqual([String(t0 / 1000), String(t0 / 1000 + 1), String(t0 / 1000 + 6)]);
		expect(receiver.processed).toHaveLength(1);
	});

	it("waits as long as Retry-After asks on 429 and 503 when that is longer than the schedule", async () => {
		const { webhooks: w } = make({ schedule: [1000] });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["display.paired"] });
		const cases: Array<{ reply: { status: number; headers: Record<string, string> }; next: string }> = [
			{ reply: { status: 503, headers: { "Retry-After": "120" } }, next: iso(clock + 120_000) },
			{ reply: { status: 429, headers: { "Retry-After": new Date(clock + 30_000).toUTCString() } }, next: iso(clock + 30_000) },
			{ reply: { status: 503, headers: { "Retry-After": "0" } }, next: iso(clock + 1000) },
			{ reply: { status: 500, headers: { "Retry-After": "120" } }, next: iso(clock + 1000) }
		];
		const seen: string[] = [];
		for (const { reply } of cases) {
			receiver.reply(reply);
			const e = event("display.paired");
			await w.record(e);
			expect(await w.tick()).toBe(1);
			const [row] = (await w.deliveries(scope, endpoint.id, 1, 100)).rows.filter(r => r.eventId === e.id);
			seen.push(row.nextAttemptAt ?? "none");
		}
		expect(seen).toEqual(cases.map(c => c.next));
	});

	it("ends a delivery failed once the schedule is used up", async () => {
		const { webhooks: w } = make({ schedule: [1000] });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["display.deleted"] });
		receiver.otherwise({ status: 500 });
		await w.record(event("display.deleted"));
		await w.tick();
		clock += 1000;
		await w.tick();
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "failed", attempts: 2, lastStatusCode: 500, lastError: "The receiver answered 500", nextAttemptAt: null });
		clock += 86_400_000;
		expect(await w.tick()).toBe(0);
		expect(receiver.received).toHaveLength(2);
		expect((await w.deliveries(scope, endpoint.id, 1, 20, "failed")).total).toBe(1);
		expect((await w.deliveries(scope, endpoint.id, 1, 20, "pending")).total).toBe(0);
	});

	it("410 Gone disables the endpoint: its admins are told once, its pending deliveries end failed, it gets no new ones", async () => {
		const { webhooks: w, disabled } = make({ schedule: [1000] });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
		receiver.reply({ status: 500 }, { status: 410, body: "gone" });
		const first = event();
		await w.record(first);
		await w.tick(); // 500: pending
		const second = event();
		await w.record(second);
		await w.tick(); // 410

		expect(await w.get(scope, endpoint.id)).toMatchObject({ enabled: false, disabledReason: "The receiver answered 410 Gone" });
		expect(disabled).toEqual([{ tenantId: T, endpointId: endpoint.id, reason: "The receiver answered 410 Gone" }]);
		const rows = (await w.deliveries(scope, endpoint.id, 1, 20)).rows;
		expect(rows.find(r => r.eventId === second.id)).toMatchObject({ status: "failed", attempts: 1, lastStatusCode: 410, lastResponseBody: "gone", lastError: "The receiver answered 410 Gone: the endpoint is disabled" });
		expect(rows.find(r => r.eventId === first.id)).toMatchObject({ status: "failed", attempts: 1, lastStatusCode: 500, lastError: "endpoint disabled", nextAttemptAt: null });

		await w.record(event());
		clock += 60_000;
		expect(await w.tick()).toBe(0);
		expect((await w.deliveries(scope, endpoint.id, 1, 20)).total).toBe(2);
		expect(receiver.received).toHaveLength(2);
		expect((await errorOf(w.test(scope, endpoint.id))).type).toBe("CONFLICT");

		// An admin switches it back on.
		expect(await w.update(scope, endpoint.id, { enabled: true })).toMatchObject({ enabled: true, disabledReason: null });
		await w.record(event());
		expect(await w.tick()).toBe(1);
	});

	it("disables an endpoint whose every delivery failed for the configured time, counted from the last success", async () => {
		const { webhooks: w, disabled } = make({ schedule: [86_400_000], disableAfterMs: 3_600_000 });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["schedule.changed"] });
		const t0 = clock;
		const failingSince = async () => (await db.webhook_endpoints.getDoc(scope, endpoint.id)).failingSince;
		const at = async (minutes: number, status: number) => {
			clock = t0 + minutes * 60_000;
			receiver.reply({ status });
			await w.record(event("schedule.changed"));
			expect(await w.tick()).toBe(1);
		};

		await at(0, 500);
		expect(await failingSince()).toBe(iso(t0));
		await at(10, 204);
		expect(await failingSince()).toBeNull();
		await at(20, 500);
		await at(79, 502);
		expect(await failingSince()).toBe(iso(t0 + 20 * 60_000));
		expect((await w.get(scope, endpoint.id)).enabled).toBe(true);
		expect(disabled).toEqual([]);

		await at(80, 500);
		expect(await w.get(scope, endpoint.id)).toMatchObject({ enabled: false, disabledReason: "Every delivery failed for 1 hour" });
		expect(disabled).toEqual([{ tenantId: T, endpointId: endpoint.id, reason: "Every delivery failed for 1 hour" }]);
		expect((await w.deliveries(scope, endpoint.id, 1, 20, "pending")).total).toBe(0);
		expect((await w.deliveries(scope, endpoint.id, 1, 20, "failed")).rows.map(r => r.lastError)).toEqual(["endpoint disabled", "endpoint disabled", "endpoint disabled", "endpoint disabled"]);
	});

	it("two workers racing over the same deliveries never send the same attempt twice", async () => {
		const a = make({ owner: "worker-a" }).webhooks;
		const b = make({ owner: "worker-b" }).webhooks;
		const endpoint = await a.create(scope, { url: receiver.url, events: ["content.ready"] });
		receiver.secret = endpoint.secret;
		// A slow receiver: while one worker waits on its batch, the other finds the rest due.
		receiver.otherwise({ status: 200, delayMs: 15 });
		const pending = () => db.webhook_deliveries.countDocs(scope, { status: "pending" });
		/** Ticks until nothing is pending: a worker that lost every claim looks again. */
		const drain = async (w: Webhooks) => {
			let worked = 0;
			while ((await pending()) > 0) {
				const n = await w.tick();
				worked += n;
				// Nothing won this time: let the other worker's requests get on (the in-memory
				// store answers without I/O, so a bare loop would starve them).
				if (n === 0) await new Promise(resolve => setTimeout(resolve, 2));
			}
			return worked;
		};
		const worked = { a: 0, b: 0 };
		for (let round = 0; round < 3; round++) {
			for (let i = 0; i < 40; i++) await (i % 2 ? a : b).record(event("content.ready", { contentId: `c-${round}-${i}` }));
			// Each round another worker starts first.
			const [x, y] = round % 2 ? await Promise.all([drain(a), drain(b)]) : await Promise.all([drain(b), drain(a)]).then(([p, q]) => [q, p]);
			worked.a += x;
			worked.b += y;
		}
		expect(worked.a + worked.b).toBe(120);
		expect(await Promise.all([a.tick(), b.tick()])).toEqual([0, 0]);
		expect(receiver.received).toHaveLength(120);
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(120);
		expect(receiver.received.every(r => r.verdict === "ok")).toBe(true);
		expect((await a.deliveries(scope, endpoint.id, 1, 100, "succeeded")).total).toBe(120);
		expect((await db.webhook_deliveries.findDocs(scope, {})).every(d => d.attempts === 1)).toBe(true);
		// Both really raced: each sent some.
		expect(worked.a).toBeGreaterThan(0);
		expect(worked.b).toBeGreaterThan(0);
	});

	it("a worker that died mid-request: its delivery is taken over with the same webhook-id once the lease runs out, and its late answer changes nothing", async () => {
		const dying = make({ owner: "dying" }).webhooks;
		const live = make({ owner: "live" }).webhooks;
		const endpoint = await live.create(scope, { url: receiver.url, events: ["display.online"] });
		receiver.secret = endpoint.secret;
		receiver.reply({ hang: true });
		await live.record(event("display.online"));
		const stuck = dying.tick();
		await receiver.waitForRequests(1);

		expect(await live.tick()).toBe(0); // leased by the dying worker
		clock += LEASE_MS + 1000;
		expect(await live.tick()).toBe(1);
		const id = receiver.received[0].headers["webhook-id"];
		expect(receiver.withId(String(id))).toHaveLength(2);
		expect(receiver.processed).toEqual([id]);

		receiver.release(200);
		await stuck;
		expect(await onlyDelivery(live, endpoint.id)).toMatchObject({ status: "succeeded", attempts: 1, lastResponseBody: "ok" });
		const [doc] = await db.webhook_deliveries.findDocs(scope, {});
		expect(doc.leaseOwner).toBeNull();
	});

	it("refuses to create an endpoint on loopback, private, link-local or metadata addresses, or a name resolving there, with 422 naming url", async () => {
		const strict = make({ allowPrivate: false, resolve: table({ "metadata.test": "169.254.169.254", "intranet.test": "10.20.30.40", "public.test": "93.184.216.34" }) }).webhooks;
		const refused: Array<[string, string]> = [
			["http://127.0.0.1:8080/hook", "The 'url' field must not be a loopback address."],
			["http://10.0.0.1/hook", "The 'url' field must not be a private address."],
			["http://192.168.1.1/hook", "The 'url' field must not be a private address."],
			["http://169.254.169.254/latest/meta-data/", "The 'url' field must not be a link-local address."],
			["http://[::ffff:169.254.169.254]/", "The 'url' field must not be a link-local address."],
			["http://metadata.test/computeMetadata/v1/", "The 'url' field must not resolve to a link-local address."],
			["https://intranet.test/hook", "The 'url' field must not resolve to a private address."],
			["ftp://public.test/hook", "The 'url' field must be an absolute http or https URL."]
		];
		const answers: Array<[string, string]> = [];
		for (const [url] of refused) {
			const err = await errorOf(strict.create(scope, { url, events: ["display.offline"] }));
			expect(err.type).toBe("VALIDATION_ERROR");
			expect(err.code).toBe(422);
			const fields = err.data as Array<{ field: string; message: string }>;
			expect(fields.map(f => f.field)).toEqual(["url"]);
			answers.push([url, fields[0].message]);
		}
		expect(answers).toEqual(refused);

		// localhost through the operating system's resolver.
		const system = make({ allowPrivate: false }).webhooks;
		expect((await errorOf(system.create(scope, { url: "http://localhost:3000/hook", events: ["display.offline"] }))).data).toEqual([
			{ field: "url", message: "The 'url' field must not resolve to a loopback address.", type: "url" }
		]);
		expect(await db.webhook_endpoints.countDocs(scope)).toBe(0);

		// Public, and a name that does not resolve yet (every delivery checks again).
		await strict.create(scope, { url: "https://public.test/hook", events: ["display.offline"] });
		await strict.create(scope, { url: "https://not-yet.test/hook", events: ["display.offline"] });
		expect(await db.webhook_endpoints.countDocs(scope)).toBe(2);
	});

	it("refuses again at delivery: an endpoint created while private destinations were allowed, and a name that rebinds to loopback", async () => {
		const permissive = make({ allowPrivate: true }).webhooks;
		const loopback = await permissive.create(scope, { url: receiver.url, events: ["quota.warning"] });
		let lookups = 0;
		const rebinding: Resolve = async () => [{ address: ++lookups === 1 ? "93.184.216.34" : "127.0.0.1", family: 4 }];
		const strict = make({ allowPrivate: false, resolve: rebinding }).webhooks;
		const rebound = await strict.create(scope, { url: `http://hooks.rebind.test:${receiver.port}/hooks`, events: ["quota.warning"] });
		expect(lookups).toBe(1);

		await strict.record(event("quota.warning", { resource: "displays", used: 9, limit: 10 }));
		expect(await strict.tick()).toBe(2);
		expect(receiver.received).toHaveLength(0);
		expect(await onlyDelivery(strict, loopback.id)).toMatchObject({ status: "pending", attempts: 1, lastStatusCode: null, lastError: "Destination refused: the URL must not be a loopback address" });
		expect(await onlyDelivery(strict, rebound.id)).toMatchObject({ status: "pending", attempts: 1, lastStatusCode: null, lastError: "Destination refused: the URL must not resolve to a loopback address" });

		// The same deliveries go through where private destinations are allowed.
		clock += 1000;
		expect(await make({ allowPrivate: true, resolve: rebinding }).webhooks.tick()).toBe(2);
		expect(receiver.received).toHaveLength(2);
	});

	it("after a rotation the old secret keeps signing as a second signature for 24 hours", async () => {
		const { webhooks: w } = make();
		const created = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
		const rotated = await w.rotateSecret(scope, created.id);
		expect(rotated.secret).toMatch(/^whsec_/);
		expect(rotated.secret).not.toBe(created.secret);
		expect(Object.keys(await w.get(scope, created.id))).not.toContain("secret");

		await w.record(event());
		await w.tick();
		const first = receiver.received[0];
		expect(String(first.headers["webhook-signature"]).split(" ")).toHaveLength(2);
		expect(verify(rotated.secret, first)).toBe("ok");
		expect(verify(created.secret, first)).toBe("ok");

		clock += 24 * 3_600_000 + 1000;
		await w.record(event());
		await w.tick();
		const later = receiver.received[1];
		const id = String(later.headers["webhook-id"]);
		const ts = Number(later.headers["webhook-timestamp"]);
		expect(later.headers["webhook-signature"]).toBe(sign(rotated.secret, id, ts, later.body));
	});

	it("a test event: the endpoint's first subscribed type with {test: true}, delivered at once, answered with its delivery id, never replayed", async () => {
		const { webhooks: w } = make();
		const endpoint = await w.create(scope, { url: receiver.url, events: ["content.ready", "display.offline"] });
		receiver.secret = endpoint.secret;
		const { id } = await w.test(scope, endpoint.id);
		expect(await w.tick()).toBe(1);
		const got = receiver.received[0];
		expect(got.verdict).toBe("ok");
		expect(got.headers["webhook-id"]).toBe(`msg_${id}`);
		expect(JSON.parse(got.body)).toEqual({ type: "content.ready", timestamp: iso(clock), data: { test: true } });
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ id, event: "content.ready", status: "succeeded" });
		expect(await w.replay(scope, endpoint.id, "2000-01-01T00:00:00Z")).toEqual({ deliveries: 0 });
		expect((await errorOf(w.test(scope, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"))).type).toBe("NOT_FOUND");
	});

	it("a manual retry queues a finished delivery again at once and keeps its attempts", async () => {
		const { webhooks: w } = make({ schedule: [1000] });
		const endpoint = await w.create(scope, { url: receiver.url, events: ["payment.failed"] });
		receiver.reply({ status: 500 }, { status: 500 });
		await w.record(event("payment.failed", { amountDue: "€24.00" }));
		await w.tick();
		clock += 1000;
		await w.tick();
		const failed = await onlyDelivery(w, endpoint.id);
		expect(failed).toMatchObject({ status: "failed", attempts: 2 });

		clock += 5000;
		expect(await w.retry(scope, failed.id)).toEqual({ id: failed.id });
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "pending", attempts: 2, nextAttemptAt: iso(clock) });
		expect(await w.tick()).toBe(1);
		expect(await onlyDelivery(w, endpoint.id)).toMatchObject({ status: "succeeded", attempts: 3, lastStatusCode: 200 });
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(1);

		expect((await errorOf(w.retry(systemScope(OTHER), failed.id))).type).toBe("NOT_FOUND");
	});

	it("replay queues a new round of every stored event since a time the endpoint subscribes to", async () => {
		const { webhooks: w } = make();
		const endpoint = await w.create(scope, { url: receiver.url, events: ["display.offline", "display.online"] });
		receiver.secret = endpoint.secret;
		const old = event("display.offline", { displayId: "d-1" }, "2026-03-01T10:00:00.000Z");
		const recent = event("display.offline", { displayId: "d-2" }, "2026-03-01T11:00:00.000Z");
		const unsubscribed = event("content.ready", { contentId: "c-1" }, "2026-03-01T11:30:00.000Z");
		const latest = event("display.online", { displayId: "d-2" }, "2026-03-01T12:00:00.000Z");
		const foreign = event("display.online", { displayId: "d-9" }, "2026-03-01T12:00:00.000Z", OTHER);
		for (const e of [old, recent, unsubscribed, latest, foreign]) await w.record(e);
		expect(await w.tick()).toBe(3);

		expect(await w.replay(scope, endpoint.id, "2026-03-01T11:30:00+01:00")).toEqual({ deliveries: 2 });
		expect(await w.replay(scope, endpoint.id, "2026-03-01T10:30:00Z")).toEqual({ deliveries: 2 });
		expect(await w.tick()).toBe(4);
		const keys = (await db.webhook_deliveries.findDocs(scope, { endpointId: endpoint.id })).map(d => d.key).sort();
		expect(keys).toEqual(
			[`${endpoint.id}:${old.id}:0`, `${endpoint.id}:${recent.id}:0`, `${endpoint.id}:${recent.id}:1`, `${endpoint.id}:${recent.id}:2`, `${endpoint.id}:${latest.id}:0`, `${endpoint.id}:${latest.id}:1`, `${endpoint.id}:${latest.id}:2`].sort()
		);
		expect(receiver.received).toHaveLength(7);
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(7);
		expect(receiver.received.filter(r => r.body.includes('"d-2"') && r.body.includes("display.offline"))).toHaveLength(3);
		expect(receiver.received.every(r => r.verdict === "ok")).toBe(true);
	});

	it(`a tenant has at most ${MAX_ENDPOINTS} endpoints, even when they are created all at once`, async () => {
		const { webhooks: w } = make();
		const results = await Promise.allSettled(Array.from({ length: MAX_ENDPOINTS + 5 }, (_, i) => w.create(scope, { url: `${receiver.url}?n=${i}`, events: ["display.offline"] })));
		expect(results.filter(r => r.status === "fulfilled")).toHaveLength(MAX_ENDPOINTS);
		for (const r of results.filter(r => r.status === "rejected")) {
			const err = (r as PromiseRejectedResult).reason as AppError;
			expect([err.type, err.message, err.data]).toEqual(["CONFLICT", "A tenant has at most 20 webhook endpoints", { limit: 20 }]);
		}
		expect(await db.webhook_endpoints.countDocs(scope)).toBe(MAX_ENDPOINTS);
		expect((await errorOf(w.create(scope, { url: receiver.url, events: ["display.offline"] }))).type).toBe("CONFLICT");
		// Another tenant is not affected.
		await w.create(systemScope(OTHER), { url: receiver.url, events: ["display.offline"] });
	});

	it("an update re-checks the URL; switching an endpoint off fails its pending deliveries; another tenant's endpoint is not found", async () => {
		const strict = make({ allowPrivate: false, resolve: table({ "public.test": "93.184.216.34" }) }).webhooks;
		const endpoint = await strict.create(scope, { url: "https://public.test/hook", events: ["display.offline"] });
		const err = await errorOf(strict.update(scope, endpoint.id, { url: "http://10.0.0.8/hook" }));
		expect([err.type, err.data]).toEqual(["VALIDATION_ERROR", [{ field: "url", message: "The 'url' field must not be a private address.", type: "url" }]]);
		expect(await strict.update(scope, endpoint.id, { events: ["display.online", "display.offline"], description: "NOC" })).toMatchObject({
			url: "https://public.test/hook",
			events: ["display.online", "display.offline"],
			description: "NOC",
			enabled: true
		});

		await strict.record(event("display.offline"));
		expect(await strict.update(scope, endpoint.id, { enabled: false })).toMatchObject({ enabled: false, disabledReason: "Disabled by an admin" });
		expect(await onlyDelivery(strict, endpoint.id)).toMatchObject({ status: "failed", attempts: 0, lastError: "endpoint disabled" });
		expect(await strict.tick()).toBe(0);

		for (const call of [strict.get(systemScope(OTHER), endpoint.id), strict.update(systemScope(OTHER), endpoint.id, { enabled: true }), strict.remove(systemScope(OTHER), endpoint.id)]) {
			expect((await errorOf(call)).type).toBe("NOT_FOUND");
		}
	});

	it("removing an endpoint removes its deliveries; a tenant's export has no secrets; deleting the tenant removes everything of it", async () => {
		const { webhooks: w } = make();
		const kept = await w.create(scope, { url: `${receiver.url}?kept`, events: ["display.paired"] });
		const removed = await w.create(scope, { url: `${receiver.url}?removed`, events: ["display.paired"] });
		const foreign = await w.create(systemScope(OTHER), { url: receiver.url, events: ["display.paired"] });
		await w.record(event("display.paired"));
		await w.record(event("display.paired", { displayId: "d-9" }, "2026-03-01T12:00:00.000Z", OTHER));
		expect(await w.tick()).toBe(3);

		await w.remove(scope, removed.id);
		expect(await db.webhook_deliveries.countDocs(scope, { endpointId: removed.id })).toBe(0);

		const exported = await w.exportTenant(T);
		expect(exported.webhooks.map(h => h.id)).toEqual([kept.id]);
		expect(Object.keys(exported.webhooks[0]).sort()).toEqual(["createdAt", "description", "disabledReason", "enabled", "events", "id", "updatedAt", "url"]);
		expect(JSON.stringify(exported)).not.toContain("whsec_");
		expect(exported.deliveries.map(d => [d.endpointId, d.status])).toEqual([[kept.id, "succeeded"]]);

		await w.removeTenant(T);
		expect([await db.webhook_endpoints.countDocs(scope), await db.webhook_events.countDocs(scope), await db.webhook_deliveries.countDocs(scope)]).toEqual([0, 0, 0]);
		expect(await w.get(systemScope(OTHER), foreign.id)).toMatchObject({ id: foreign.id });
		expect(await db.webhook_deliveries.countDocs(systemScope(OTHER))).toBe(1);
	});

	it("stopping mid-request hands the delivery back at once, its attempt not counted", async () => {
		const { webhooks: w } = make();
		const endpoint = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
		receiver.reply({ hang: true });
		w.start();
		await w.record(event());
		await receiver.waitForRequests(1);
		await w.stop();
		const [doc] = await db.webhook_deliveries.findDocs(scope, { endpointId: endpoint.id });
		expect(doc).toMatchObject({ status: "pending", attempts: 0, leaseOwner: null, leaseUntil: null, nextAttemptAt: iso(clock), lastError: null });
	});
});
