/**
 * Webhooks (services/notifications/webhooks.ts, ssrf.ts) attacked below the gateway, where the
 * interleavings are certain: rotations that run at once, replay instants the pattern lets
 * through but the calendar does not have, loopback names that no resolver needs to answer,
 * IPv4 inside IPv6 forms, and the display form of a URL that carries credentials. NeDB in
 * memory, a real local receiver checking every request with the `standardwebhooks` library.
 */
import type { Service, ServiceSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, systemScope, type DbVars } from "../../mixins/db.mixin";
import { COLLECTIONS } from "../../services/notifications/documents";
import { classifyAddress, DestinationError, displayUrl, parseDestination, resolveDestination, type Resolve } from "../../shared/ssrf";
import { Webhooks } from "../../services/notifications/webhooks";
import { AppError } from "../../shared/errors";
import { startBroker, type TestBroker } from "../helpers/platform";
import { verify, WebhookReceiver } from "../helpers/webhook-receiver";

type Db = DbVars<typeof COLLECTIONS>["db"];
const Holder: ServiceSchema = { name: "holder", mixins: [DbMixin(COLLECTIONS)] };
const T = "tenant-attack";
const scope = systemScope(T);

describe("webhooks under attack (unit)", () => {
	let started: TestBroker;
	let db: Db;
	let receiver: WebhookReceiver;
	let errors: unknown[];

	beforeAll(async () => {
		started = await startBroker([Holder]);
		db = (started.broker.getLocalService("holder") as Service & DbVars<typeof COLLECTIONS>).db;
	});
	afterAll(() => started.stop());

	beforeEach(async () => {
		await Promise.all([db.webhook_endpoints.removeDocs(ALL_TENANTS, {}), db.webhook_events.removeDocs(ALL_TENANTS, {}), db.webhook_deliveries.removeDocs(ALL_TENANTS, {})]);
		errors = [];
		receiver = await WebhookReceiver.start();
	});
	afterEach(async () => {
		await receiver.close();
		expect(errors).toEqual([]);
	});

	function make(options: { allowPrivate?: boolean; resolve?: Resolve } = {}): Webhooks {
		const config = started.config;
		return new Webhooks({
			endpoints: db.webhook_endpoints,
			events: db.webhook_events,
			deliveries: db.webhook_deliveries,
			config: {
				...config,
				notifications: { ...config.notifications, webhookAllowPrivate: options.allowPrivate ?? true, webhookRetryScheduleMs: [1000], webhookTimeoutMs: 5000, leaseMs: 60_000 }
			},
			owner: "worker-attack",
			logger: { info: () => undefined, warn: () => undefined, error: (...args: unknown[]) => errors.push(args) },
			onDisabled: async () => undefined,
			resolve: options.resolve
		});
	}

	async function errorOf(promise: Promise<unknown>): Promise<unknown> {
		return promise.then(
			() => null,
			(e: unknown) => e
		);
	}

	describe("rotating a secret several times at once", () => {
		it.each([2, 5])("%i rotations at once: the two secrets in force are two of the secrets answered, never the one before them all", async count => {
			const w = make();
			const created = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
			const answers = await Promise.all(Array.from({ length: count }, () => w.rotateSecret(scope, created.id)));
			const answered = answers.map(a => a.secret);
			expect(new Set(answered).size).toBe(count);

			const stored = await db.webhook_endpoints.getDoc(scope, created.id);
			expect(answered).toContain(stored.secret);
			// Each rotation keeps the secret it replaced signing: the last one replaced another answered secret.
			expect(stored.previousSecret).not.toBe(created.secret);
			expect(answered).toContain(stored.previousSecret);

			// What the integrator sees: the next delivery verifies with two of the answered secrets.
			await w.test(scope, created.id);
			await w.tick();
			expect(receiver.received).toHaveLength(1);
			const verifying = answered.filter(secret => verify(secret, receiver.received[0]) === "ok");
			expect(verifying).toHaveLength(2);
		});

		it("two rotations at once each answer the endpoint as it is", async () => {
			const w = make();
			const created = await w.create(scope, { url: receiver.url, events: ["display.offline"], description: "rotated" });
			const [a, b] = await Promise.all([w.rotateSecret(scope, created.id), w.rotateSecret(scope, created.id)]);
			for (const answer of [a, b]) expect(answer).toMatchObject({ id: created.id, url: receiver.url, description: "rotated", enabled: true });
		});
	});

	it("a delivery queued for an endpoint removed meanwhile (a test event or an event recorded while DELETE ran) goes with it, not left in the tenant's data", async () => {
		const w = make();
		const created = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
		// The interleaving of `POST /webhooks/:id/test` and `DELETE /webhooks/:id` where the delivery
		// is written after the removal swept the endpoint's deliveries: the endpoint goes, the delivery stays.
		await w.test(scope, created.id);
		await db.webhook_endpoints.removeDocs(scope, { _id: created.id });
		await w.tick();
		expect(receiver.received).toHaveLength(0);
		expect(await db.webhook_deliveries.countDocs(scope, { endpointId: created.id })).toBe(0);
		expect((await w.exportTenant(T)).deliveries).toEqual([]);
	});

	describe("replay instants", () => {
		it.each(["2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T99:99Z", "2026-00-10T10:00:00Z", "2026-04-31T10:00:00+02:00", "2026-01-01T10:00:61Z", "2026-01-01T10:00:00+25:00"])(
			"%s is refused as a validation error naming since (not a RangeError)",
			async since => {
				const w = make();
				const created = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
				const err = await errorOf(w.replay(scope, created.id, since));
				expect(err).toBeInstanceOf(AppError);
				expect([(err as AppError).type, (err as AppError).data]).toEqual(["VALIDATION_ERROR", [expect.objectContaining({ field: "since" })]]);
			}
		);

		it.each(["2024-02-29T10:00:00Z", "2026-12-31T23:59:59.999Z", "2026-03-01T00:30:00+01:00", "2026-01-01T10:00Z"])("%s is a real instant and replays", async since => {
			const w = make();
			const created = await w.create(scope, { url: receiver.url, events: ["display.offline"] });
			expect(await w.replay(scope, created.id, since)).toEqual({ deliveries: 0 });
		});
	});

	describe("destinations", () => {
		const never: Resolve = () => Promise.reject(Object.assign(new Error("getaddrinfo ENOTFOUND"), { code: "ENOTFOUND" }));

		async function refusal(raw: string, resolve: Resolve = never): Promise<string> {
			try {
				await resolveDestination(parseDestination(raw), { allowPrivate: false, resolve, timeoutMs: 1000 });
				return "allowed";
			} catch (err) {
				expect(err).toBeInstanceOf(DestinationError);
				return `${(err as DestinationError).kind}: ${(err as DestinationError).message}`;
			}
		}

		it("localhost and names under it are loopback by name (RFC 6761), trailing dot and case aside, whatever the resolver says", async () => {
			const cases: Array<[string, string]> = [
				["http://localhost./hook", "refused: must not resolve to a loopback address"],
				["http://LOCALHOST./hook", "refused: must not resolve to a loopback address"],
				["http://api.localhost/hook", "refused: must not resolve to a loopback address"],
				["http://api.localhost.:8080/hook", "refused: must not resolve to a loopback address"],
				["http://localhost.example.com/hook", "unresolved: localhost.example.com does not resolve (getaddrinfo ENOTFOUND)"],
				["http://mylocalhost/hook", "unresolved: mylocalhost does not resolve (getaddrinfo ENOTFOUND)"]
			];
			const answers: Array<[string, string]> = [];
			for (const [raw] of cases) answers.push([raw, await refusal(raw)]);
			expect(answers).toEqual(cases);
		});

		it("IPv4-translated addresses (::ffff:0:a.b.c.d, SIIT) and local-use NAT64 (64:ff9b:1::/48) are judged like the IPv4 they reach", async () => {
			expect(classifyAddress("::ffff:0:127.0.0.1")).toBe("loopback");
			expect(classifyAddress("::ffff:0:a9fe:a9fe")).toBe("link-local");
			expect(classifyAddress("::ffff:0:8.8.8.8")).toBeNull();
			expect(classifyAddress("64:ff9b:1::a00:1")).toBe("reserved");
			expect(await refusal("http://[::ffff:0:127.0.0.1]/hook")).toBe("refused: must not be a loopback address");
		});

		it("port 0 is no destination", () => {
			expect(() => parseDestination("http://hooks.example.com:0/x")).toThrow(DestinationError);
			expect(parseDestination("http://hooks.example.com:8443/x").port).toBe("8443");
		});

		it("the display form of a URL drops its credentials and keeps the rest", () => {
			expect(displayUrl("https://user:pa%24%24@hooks.example.com:8443/in?x=1#f")).toBe("https://hooks.example.com:8443/in?x=1#f");
			expect(displayUrl("https://justuser@hooks.example.com/in")).toBe("https://hooks.example.com/in");
			expect(displayUrl("https://hooks.example.com/in")).toBe("https://hooks.example.com/in");
			// Not a URL (never stored, but never echoed either).
			expect(displayUrl("http://user:pass@")).not.toContain("pass");
		});
	});
});
