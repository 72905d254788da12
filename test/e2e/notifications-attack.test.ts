/**
 * Notifications and webhooks attacked over HTTP, as a careless customer and a hostile one would:
 *
 * - races: 30 endpoint creations at once (limit 20), rotations at once, preference changes of
 *   different alert types at once, manual retries of one delivery at once, read and read-all at once;
 * - bad input on every route: wrong types, null, prototype keys, operator objects, huge strings,
 *   non-Latin text, loopback in every spelling (IPv6 literals, IPv4 in decimal, octal and hex,
 *   trailing dots), ports, very long URLs: a 4xx in the error shape, never a 500, nothing stored;
 * - secrets: the whsec_ secret and the password of a URL's credentials are in no answer but the
 *   one that shows the secret, no audit record, no log line, no delivery error, no alert;
 * - restart: a rotated secret and a disabled endpoint stay so after the platform process
 *   (`tsx server.ts` on NeDB files) is killed and started again;
 * - resources: 200 deliveries to a receiver that never answers leave no socket open, and a
 *   receiver streaming an endless body is read up to the kept 1 KiB and cut off.
 *
 * Nothing waits on the clock: every wait polls for a state (the test timeout bounds it).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import util from "node:util";
import { Loggers, type Context, type Service, type ServiceSchema } from "moleculer";
import { ALL_TENANTS, systemScope, type TenantCollection } from "../../mixins/db.mixin";
import type { DeliveryDoc, EndpointDoc, EventDoc, NotificationDoc, PreferencesDoc } from "../../services/notifications/documents";
import type { Inbox } from "../../services/notifications/inbox";
import type { AuditRecord } from "../../shared/audit";
import { EVENT_CHANNEL } from "../../shared/channels";
import { sendToChannel, type DeliveryView, type WebhookEndpointView, type WebhookEndpointWithSecret } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import { mailbox, newAccount, PLATFORM_SERVICES, register, bearer, type Platform, type Session } from "../helpers/accounts";
import { request, startGateway, tempDir, type ErrorBody, type JsonResponse } from "../helpers/platform";
import { killGroup, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { verify, WebhookReceiver } from "../helpers/webhook-receiver";

jest.setTimeout(120_000);

interface Page<T> {
	rows: T[];
	total: number;
}

interface Internals {
	db: {
		webhook_endpoints: TenantCollection<EndpointDoc>;
		webhook_events: TenantCollection<EventDoc>;
		webhook_deliveries: TenantCollection<DeliveryDoc>;
		notifications: TenantCollection<NotificationDoc>;
		notification_preferences: TenantCollection<PreferencesDoc>;
	};
	inbox: Inbox;
}

/** Polls `read` until `done` holds for its answer. */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
	for (;;) {
		const value = await read();
		if (done(value)) return value;
		await new Promise(resolve => setTimeout(resolve, 20));
	}
}

/** An object with an own key `__proto__` (an object literal would set the prototype instead). */
function withProto(proto: unknown, rest: Record<string, unknown> = {}): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	Object.defineProperty(out, "__proto__", { value: proto, enumerable: true, writable: true, configurable: true });
	return Object.assign(out, rest);
}

/** Audit records as the analytics service would receive them. */
const audits: AuditRecord[] = [];
const AuditSink: ServiceSchema = {
	name: "audit-sink",
	channels: {
		"audit.record": {
			group: "audit-sink",
			handler(ctx: Context<unknown>) {
				audits.push(ctx.params as AuditRecord);
			}
		}
	}
};

/** Every line the platform logs, at every level (trace included). */
const logs: string[] = [];

/** The console logger's lines, kept in `logs` instead of printed. */
class CapturedLogger extends Loggers.Console {
	override getLogHandler(bindings: Parameters<Loggers.Console["getLogHandler"]>[0]) {
		const format = this.getFormatter(bindings);
		return (type: string, args: unknown[]) => void logs.push(util.format(...format(type, args)));
	}
}

/**
 * The platform in this process (as startTestPlatform), plus the audit sink, with its logger on
 * at trace level and captured so tests can read what it wrote.
 */
async function startPlatform(env: Record<string, string>): Promise<Platform> {
	const dataDir = tempDir();
	const gw = await startGateway(
		[...PLATFORM_SERVICES, AuditSink],
		{ DATA_DIR: dataDir, RATE_LIMIT_PER_MINUTE: "100000", TRUST_PROXY_HOPS: "1", ...env },
		{ logger: new CapturedLogger({ level: "trace", colors: false }), logLevel: "trace" }
	);
	return { ...gw, dataDir, api: (path: string) => `${gw.url}/api/v1${path}` };
}

/** A 4xx answer in the API's error shape (never a 2xx for refused input, never a 5xx). */
function expectErrorShape(res: JsonResponse, label: string): void {
	const shape = { status: res.status, ok: res.status >= 400 && res.status < 500 };
	expect([label, shape]).toEqual([label, { status: res.status, ok: true }]);
	const body = res.body as ErrorBody;
	expect([label, body?.error?.code, typeof body?.error?.type, typeof body?.error?.message, typeof body?.error?.requestId]).toEqual([label, res.status, "string", "string", "string"]);
}

/** A node child process: a receiver of our own making, outside this process (its sockets are not ours). */
interface ChildServer {
	child: ChildProcess;
	line(index: number): Promise<string>;
	stop(): void;
}

function childServer(code: string): ChildServer {
	const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
	const lines: string[] = [];
	let buffer = "";
	child.stdout?.on("data", (chunk: Buffer) => {
		buffer += chunk.toString();
		const parts = buffer.split("\n");
		buffer = parts.pop() ?? "";
		lines.push(...parts);
	});
	return {
		child,
		async line(index) {
			while (lines.length <= index) {
				if (child.exitCode !== null) throw new Error(`receiver exited with ${child.exitCode}`);
				await new Promise(resolve => setTimeout(resolve, 10));
			}
			return lines[index];
		},
		stop() {
			if (child.exitCode === null) child.kill("SIGKILL");
		}
	};
}

const openFds = () => fs.readdirSync("/proc/self/fd").length;

// ---------------------------------------------------------------------------------------------

describe("races", () => {
	let p: Platform;
	let receiver: WebhookReceiver;

	beforeAll(async () => {
		p = await startPlatform({ WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_RETRY_SCHEDULE: "50ms", NOTIFICATIONS_POLL_MS: "20" });
		receiver = await WebhookReceiver.start();
	});
	afterAll(async () => {
		await receiver.close();
		await p.stop();
	});

	const internals = () => p.broker.getLocalService("notifications") as Service & Internals;
	const as = (s: Session) => bearer(s.accessToken);

	async function createEndpoint(s: Session, url = receiver.url): Promise<WebhookEndpointWithSecret> {
		const res = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: as(s), json: { url, events: ["display.paired"] } });
		expect(res.status).toBe(201);
		return res.body;
	}

	it("30 creations at once on one tenant: 20 answer 201, 10 answer 409 in the error shape, and exactly 20 remain", async () => {
		const admin = await register(p, newAccount("thirty"));
		const answers = await Promise.all(
			Array.from({ length: 30 }, (_, i) => request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: as(admin), json: { url: `${receiver.url}?n=${i}`, events: ["display.paired"] } }))
		);
		expect(answers.filter(r => r.status === 201)).toHaveLength(20);
		const refused = answers.filter(r => r.status !== 201);
		expect(refused).toHaveLength(10);
		for (const r of refused) {
			expectErrorShape(r, "21st endpoint");
			expect((r.body as unknown as ErrorBody).error).toMatchObject({ type: "CONFLICT", code: 409, data: { limit: 20 } });
		}
		const listed = await request<Page<WebhookEndpointView>>(p.api("/webhooks?pageSize=100"), { headers: as(admin) });
		expect(listed.body.total).toBe(20);
		expect(listed.body.rows.map(r => r.id).sort()).toEqual(answers.filter(r => r.status === 201).map(r => r.body.id).sort());
		expect(await internals().db.webhook_endpoints.countDocs(systemScope(admin.tenant.id))).toBe(20);
	});

	it("ten rotations at once: each answers a new secret, and the next delivery verifies with exactly two of them (never the original)", async () => {
		const admin = await register(p, newAccount("rotate"));
		const endpoint = await createEndpoint(admin);
		const answers = await Promise.all(Array.from({ length: 10 }, () => request<WebhookEndpointWithSecret>(p.api(`/webhooks/${endpoint.id}/rotate-secret`), { method: "POST", headers: as(admin) })));
		expect(answers.map(r => r.status)).toEqual(Array(10).fill(200));
		const secrets = answers.map(r => r.body.secret);
		expect(new Set(secrets).size).toBe(10);

		const before = receiver.received.length;
		const test = await request<{ id: string }>(p.api(`/webhooks/${endpoint.id}/test`), { method: "POST", headers: as(admin) });
		expect(test.status).toBe(202);
		await receiver.waitForRequests(before + 1);
		const delivered = receiver.withId(`msg_${test.body.id}`)[0];
		expect(secrets.filter(secret => verify(secret, delivered) === "ok")).toHaveLength(2);
		expect(verify(endpoint.secret, delivered)).not.toBe("ok");
	});

	it("preference changes of different alert types at once (several of each): none is lost", async () => {
		const admin = await register(p, newAccount("prefs"));
		const types = ["display.offline", "display.online", "quota.warning", "payment.failed", "webhook.disabled"];
		const off = await Promise.all(
			types.flatMap(type => Array.from({ length: 4 }, () => request(p.api("/notifications/preferences"), { method: "PATCH", headers: as(admin), json: { email: { [type]: false } } })))
		);
		expect(off.map(r => r.status)).toEqual(Array(20).fill(200));
		const all = await request<{ email: Record<string, boolean> }>(p.api("/notifications/preferences"), { headers: as(admin) });
		expect(all.body.email).toEqual(Object.fromEntries(types.map(t => [t, false])));

		// Two on again and two more off at the same time: each change stays.
		const mixed = await Promise.all(
			[{ "display.offline": true }, { "quota.warning": true }, { "display.online": false }, { "webhook.disabled": false }].map(email =>
				request(p.api("/notifications/preferences"), { method: "PATCH", headers: as(admin), json: { email } })
			)
		);
		expect(mixed.map(r => r.status)).toEqual([200, 200, 200, 200]);
		const after = await request<{ email: Record<string, boolean> }>(p.api("/notifications/preferences"), { headers: as(admin) });
		expect(after.body.email).toEqual({ "display.offline": true, "display.online": false, "quota.warning": true, "payment.failed": false, "webhook.disabled": false });
		expect(await internals().db.notification_preferences.countDocs(systemScope(admin.tenant.id))).toBe(1);
	});

	it("ten manual retries of one delivery at once: all 202, and the receiver never has two attempts of it at a time", async () => {
		const admin = await register(p, newAccount("retry"));
		const slow = await WebhookReceiver.start();
		try {
			const endpoint = await createEndpoint(admin, slow.url);
			let inFlight = 0;
			let most = 0;
			slow.otherwise({ status: 500, delayMs: 150 });
			slow.onRequest = () => {
				inFlight += 1;
				most = Math.max(most, inFlight);
				setTimeout(() => (inFlight -= 1), 150);
			};
			const test = await request<{ id: string }>(p.api(`/webhooks/${endpoint.id}/test`), { method: "POST", headers: as(admin) });
			const log = () => request<Page<DeliveryView>>(p.api(`/webhooks/${endpoint.id}/deliveries`), { headers: as(admin) }).then(r => r.body.rows[0]);
			const failed = await until(log, d => d?.status === "failed");

			const retries = await Promise.all(Array.from({ length: 10 }, () => request<{ id: string }>(p.api(`/webhook-deliveries/${test.body.id}/retry`), { method: "POST", headers: as(admin) })));
			expect(retries.map(r => [r.status, r.body.id])).toEqual(Array(10).fill([202, test.body.id]));
			const settled = await until(log, d => d.status === "failed" && d.attempts > failed.attempts);
			// Let anything still queued arrive; then every attempt the receiver saw is one the log counts.
			await until(log, d => d.status !== "pending");
			expect(most).toBe(1);
			expect(slow.received).toHaveLength(settled.attempts);
			expect(new Set(slow.received.map(r => r.headers["webhook-id"]))).toEqual(new Set([`msg_${test.body.id}`]));
		} finally {
			await slow.close();
		}
	});

	it("read and read-all at once: every answer 204, every notification read once, its first readAt kept", async () => {
		const admin = await register(p, newAccount("reader"));
		const scope = systemScope(admin.tenant.id);
		for (let i = 0; i < 10; i++) await internals().inbox.add(admin.tenant.id, [admin.user.id], { type: "display.offline", title: `Alert ${i}`, body: "dark", data: {} });
		const ids = (await internals().db.notifications.findDocs(scope, { userId: admin.user.id })).map(n => n.id);
		expect(ids).toHaveLength(10);

		const calls = [
			...ids.map(id => request(p.api(`/notifications/${id}/read`), { method: "POST", headers: as(admin) })),
			request(p.api("/notifications/read-all"), { method: "POST", headers: as(admin) }),
			request(p.api("/notifications/read-all"), { method: "POST", headers: as(admin) }),
			...ids.map(id => request(p.api(`/notifications/${id}/read`), { method: "POST", headers: as(admin) }))
		];
		expect((await Promise.all(calls)).map(r => r.status)).toEqual(Array(calls.length).fill(204));
		const unread = await request<Page<unknown>>(p.api("/notifications?unread=true"), { headers: as(admin) });
		expect(unread.body.total).toBe(0);
		const readAt = new Map((await internals().db.notifications.findDocs(scope, { userId: admin.user.id })).map(n => [n.id, n.readAt]));
		expect([...readAt.values()].every(Boolean)).toBe(true);

		// Reading again changes nothing.
		await Promise.all([...ids.map(id => request(p.api(`/notifications/${id}/read`), { method: "POST", headers: as(admin) })), request(p.api("/notifications/read-all"), { method: "POST", headers: as(admin) })]);
		const again = new Map((await internals().db.notifications.findDocs(scope, { userId: admin.user.id })).map(n => [n.id, n.readAt]));
		expect(again).toEqual(readAt);
	});
});

// ---------------------------------------------------------------------------------------------

describe("bad input on every route (private destinations refused, the default)", () => {
	let p: Platform;
	let admin: Session;
	let endpoint: WebhookEndpointWithSecret;
	/** Replayed only: no other case of the table touches it (a PATCH that switched `endpoint` off would turn a replay's 500 into a 409). */
	let replayed: WebhookEndpointWithSecret;
	let deliveryId: string;
	let notificationId: string;
	const GOOD_URL = "https://hooks.example.com/marquee";

	beforeAll(async () => {
		p = await startPlatform({ NOTIFICATIONS_POLL_MS: "20" });
		admin = await register(p, newAccount("badinput"));
		const created = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: bearer(admin.accessToken), json: { url: GOOD_URL, events: ["display.paired"] } });
		expect(created.status).toBe(201);
		endpoint = created.body;
		replayed = (await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: bearer(admin.accessToken), json: { url: `${GOOD_URL}/replayed`, events: ["display.paired"] } })).body;
		const test = await request<{ id: string }>(p.api(`/webhooks/${endpoint.id}/test`), { method: "POST", headers: bearer(admin.accessToken) });
		deliveryId = test.body.id;
		await internals().inbox.add(admin.tenant.id, [admin.user.id], { type: "display.offline", title: "Lobby is dark", body: "dark", data: {} });
		notificationId = (await internals().db.notifications.findDocs(systemScope(admin.tenant.id), { userId: admin.user.id }))[0].id;
	});
	afterAll(() => p.stop());

	const internals = () => p.broker.getLocalService("notifications") as Service & Internals;

	/** Everything the tenant has in the notifications collections (the worker's lease fields aside). */
	async function snapshot(): Promise<unknown> {
		const scope = systemScope(admin.tenant.id);
		const { db } = internals();
		const strip = <T extends object>(docs: T[]) => docs.map(d => ({ ...d, leaseOwner: undefined, leaseUntil: undefined, attempts: undefined, status: undefined, lastError: undefined, nextAttemptAt: undefined, updatedAt: undefined, lastStatusCode: undefined, lastResponseBody: undefined }));
		return {
			// failingSince and updatedAt: the worker's attempts of the test delivery (the host does not resolve) write them.
			endpoints: (await db.webhook_endpoints.findDocs(scope, {}, { sort: ["_id"] })).map(d => ({ ...d, failingSince: undefined, updatedAt: undefined })),
			events: await db.webhook_events.countDocs(scope),
			deliveries: strip(await db.webhook_deliveries.findDocs(scope, {}, { sort: ["_id"] })),
			notifications: await db.notifications.findDocs(scope, {}, { sort: ["_id"] }),
			preferences: await db.notification_preferences.findDocs(scope, {}, { sort: ["_id"] })
		};
	}

	async function send(method: string, path: string, body?: unknown): Promise<JsonResponse> {
		const init: RequestInit & { json?: unknown } = { method, headers: bearer(admin.accessToken) };
		if (body !== undefined) init.json = body;
		return request(p.api(path), init);
	}

	const huge = "x".repeat(600_000);
	const LOOPBACK_SPELLINGS = [
		"http://[::1]/hook",
		"http://[::ffff:127.0.0.1]/hook",
		"http://[0:0:0:0:0:ffff:7f00:1]/hook",
		"http://[::ffff:0:127.0.0.1]/hook",
		"http://[::]/hook",
		"http://2130706433/hook",
		"http://0x7f.1/hook",
		"http://0x7f000001/hook",
		"http://017700000001/hook",
		"http://0177.0.0.1/hook",
		"http://127.1/hook",
		"http://127.0.0.1./hook",
		"http://localhost/hook",
		"http://localhost./hook",
		"http://LOCALHOST.:8080/hook",
		"http://api.localhost/hook",
		"http://0/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://10.0.0.1:8080/hook",
		"http://user:pass@127.0.0.1/hook",
		"http://hooks.example.com@127.0.0.1/hook"
	];
	const BAD_URLS = [
		"http://hooks.example.com:0/hook",
		"http://hooks.example.com:65536/hook",
		"http://hooks.example.com:-1/hook",
		"ftp://hooks.example.com/hook",
		"javascript:alert(1)//x",
		"file:///etc/passwd",
		"http://",
		"        ",
		"not a url at all",
		`https://hooks.example.com/${"a".repeat(2100)}`,
		"https://exa mple.com/hook",
		"https://[::1/hook"
	];

	const cases: Array<[label: string, method: string, request: () => { path: string; body?: unknown }]> = [];
	const add = (label: string, method: string, path: () => string, body?: () => unknown) => cases.push([label, method, () => ({ path: path(), body: body?.() })]);

	// POST /webhooks
	const create = (label: string, body: () => unknown) => add(`POST /webhooks ${label}`, "POST", () => "/webhooks", body);
	create("{}", () => ({}));
	create("url null", () => ({ url: null, events: ["display.paired"] }));
	create("url number", () => ({ url: 12345678, events: ["display.paired"] }));
	create("url operator", () => ({ url: { $gt: "" }, events: ["display.paired"] }));
	create("url array", () => ({ url: [GOOD_URL], events: ["display.paired"] }));
	create("url huge", () => ({ url: `https://hooks.example.com/${huge}`, events: ["display.paired"] }));
	for (const url of [...LOOPBACK_SPELLINGS, ...BAD_URLS]) create(`url ${url.slice(0, 60)}`, () => ({ url, events: ["display.paired"] }));
	create("events null", () => ({ url: GOOD_URL, events: null }));
	create("events string", () => ({ url: GOOD_URL, events: "display.paired" }));
	create("events empty", () => ({ url: GOOD_URL, events: [] }));
	create("events unknown", () => ({ url: GOOD_URL, events: ["display.exploded"] }));
	create("events __proto__", () => ({ url: GOOD_URL, events: ["__proto__"] }));
	create("events operator", () => ({ url: GOOD_URL, events: [{ $gt: "" }] }));
	create("events object", () => ({ url: GOOD_URL, events: { $in: ["display.paired"] } }));
	create("events twice", () => ({ url: GOOD_URL, events: ["display.paired", "display.paired"] }));
	create("description number", () => ({ url: GOOD_URL, events: ["display.paired"], description: 5 }));
	create("description operator", () => ({ url: GOOD_URL, events: ["display.paired"], description: { $ne: null } }));
	create("description 501", () => ({ url: GOOD_URL, events: ["display.paired"], description: "é".repeat(501) }));
	create("description huge", () => ({ url: GOOD_URL, events: ["display.paired"], description: huge }));
	create("description emoji beyond 500", () => ({ url: GOOD_URL, events: ["display.paired"], description: "🛰️".repeat(200) }));
	create("__proto__ carrying every field", () => withProto({ url: GOOD_URL, events: ["display.paired"], description: "smuggled" }));
	create("__proto__ beside the fields", () => withProto({ description: "smuggled" }, { url: GOOD_URL, events: ["display.paired"] }));

	// PATCH /webhooks/:id
	const patch = (label: string, body: () => unknown, path = () => `/webhooks/${endpoint.id}`) => add(`PATCH /webhooks/:id ${label}`, "PATCH", path, body);
	patch("enabled string", () => ({ enabled: "false" }));
	patch("enabled number", () => ({ enabled: 0 }));
	patch("enabled null", () => ({ enabled: null }));
	patch("url null", () => ({ url: null }));
	patch("url operator", () => ({ url: { $gt: "" } }));
	for (const url of LOOPBACK_SPELLINGS.slice(0, 12)) patch(`url ${url}`, () => ({ url }));
	patch("url port 0", () => ({ url: "https://hooks.example.com:0/" }));
	patch("events empty", () => ({ events: [] }));
	patch("events null", () => ({ events: null }));
	patch("description operator", () => ({ description: { $gt: "" } }));
	patch("description huge", () => ({ description: huge }));
	patch("__proto__ switching it off", () => withProto({ enabled: false }));
	patch("__proto__ changing the url", () => withProto({ url: "https://elsewhere.example.com/" }));
	patch("__proto__ beside a field", () => withProto({ enabled: false }, { description: "x" }));
	patch("a malformed id", () => ({ enabled: false }), () => "/webhooks/not-an-id");
	patch("id __proto__", () => ({ enabled: false }), () => "/webhooks/__proto__");
	patch("id constructor", () => ({ enabled: false }), () => "/webhooks/constructor");

	// POST /webhooks/:id/replay
	const replay = (label: string, body: () => unknown) => add(`POST /webhooks/:id/replay ${label}`, "POST", () => `/webhooks/${replayed.id}/replay`, body);
	replay("{}", () => ({}));
	replay("since null", () => ({ since: null }));
	replay("since number", () => ({ since: 1_700_000_000 }));
	replay("since operator", () => ({ since: { $gt: "" } }));
	replay("since words", () => ({ since: "yesterday" }));
	replay("since month 13", () => ({ since: "2026-13-45T10:00:00Z" }));
	replay("since 30 February", () => ({ since: "2026-02-30T10:00:00Z" }));
	replay("since 99:99", () => ({ since: "2026-01-01T99:99Z" }));
	replay("since huge", () => ({ since: huge }));
	replay("__proto__ since", () => withProto({ since: "2020-01-01T00:00:00Z" }));

	// PATCH /notifications/preferences
	const prefs = (label: string, body: () => unknown) => add(`PATCH /notifications/preferences ${label}`, "PATCH", () => "/notifications/preferences", body);
	prefs("{}", () => ({}));
	prefs("email null", () => ({ email: null }));
	prefs("email array", () => ({ email: [false] }));
	prefs("email string", () => ({ email: "off" }));
	prefs("value string", () => ({ email: { "display.offline": "no" } }));
	prefs("value null", () => ({ email: { "display.offline": null } }));
	prefs("value operator", () => ({ email: { "display.offline": { $ne: true } } }));
	prefs("key huge", () => ({ email: { [huge.slice(0, 5000)]: false } }));
	prefs("email.__proto__ object", () => ({ email: withProto({ "display.offline": false }) }));
	prefs("__proto__ carrying email", () => withProto({ email: { "display.offline": false } }));

	// Other routes: malformed ids, query parameters.
	add("POST /notifications/:id/read malformed id", "POST", () => "/notifications/not-an-id/read");
	add("POST /notifications/:id/read operator-ish id", "POST", () => "/notifications/%7B%22%24gt%22%3A%22%22%7D/read");
	add("POST /webhook-deliveries/:id/retry malformed id", "POST", () => `/webhook-deliveries/${"a".repeat(5000)}/retry`);
	add("POST /webhooks/:id/test malformed id", "POST", () => "/webhooks/constructor/test");
	add("POST /webhooks/:id/rotate-secret malformed id", "POST", () => "/webhooks/__proto__/rotate-secret");
	add("DELETE /webhooks/:id malformed id", "DELETE", () => "/webhooks/x");
	add("GET /webhooks/:id malformed id", "GET", () => "/webhooks/%00");
	add("GET /webhooks page 0", "GET", () => "/webhooks?page=0");
	add("GET /webhooks pageSize 101", "GET", () => "/webhooks?pageSize=101");
	add("GET /webhooks page operator", "GET", () => "/webhooks?page[$gt]=1");
	add("GET /webhooks page __proto__", "GET", () => "/webhooks?page=__proto__");
	add("GET /webhooks/:id/deliveries unknown status", "GET", () => `/webhooks/${endpoint.id}/deliveries?status=delivered`);
	add("GET /webhooks/:id/deliveries status operator", "GET", () => `/webhooks/${endpoint.id}/deliveries?status[$ne]=pending`);
	add("GET /notifications unread maybe", "GET", () => "/notifications?unread=maybe");
	add("GET /notifications pageSize huge", "GET", () => "/notifications?pageSize=1e9");
	add("GET /notifications/emails unknown status", "GET", () => "/notifications/emails?status=bounced");
	add("GET /notifications/emails status operator", "GET", () => "/notifications/emails?status[$in]=sent");

	it.each(cases)("%s: 4xx in the error shape, nothing stored", async (label, method, build) => {
		const { path, body } = build();
		const before = await snapshot();
		const res = await send(method, path, body);
		expectErrorShape(res, label);
		expect(await snapshot()).toEqual(before);
		expect(({} as Record<string, unknown>).polluted ?? ({} as Record<string, unknown>).enabled).toBeUndefined();
	});

	it("a body beyond MAX_BODY_BYTES answers 413 in the error shape", async () => {
		const res = await send("POST", "/webhooks", { url: GOOD_URL, events: ["display.paired"], description: "x".repeat(1_100_000) });
		expectErrorShape(res, "huge body");
		expect(res.status).toBe(413);
	});

	it("unknown keys (constructor, operators) are dropped, Object.prototype is untouched, and non-Latin text round-trips exactly", async () => {
		const description = "Écran d’accueil — 日本語のサイネージ — شاشة — 🛰️📺✨ — \u202etxet\u202c";
		const res = await send("POST", "/webhooks", {
			url: `${GOOD_URL}/ünï`,
			events: ["display.paired"],
			description,
			constructor: { prototype: { polluted: 1 } },
			$where: "sleep(1000)",
			tenantId: "another-tenant",
			secret: "whsec_chosen"
		});
		expect(res.status).toBe(201);
		const created = res.body as WebhookEndpointWithSecret;
		expect(created.description).toBe(description);
		expect(created.secret).not.toBe("whsec_chosen");
		expect(({} as Record<string, unknown>).polluted).toBeUndefined();
		const got = await send("GET", `/webhooks/${created.id}`);
		expect((got.body as WebhookEndpointView).description).toBe(description);
		const doc = await internals().db.webhook_endpoints.getDoc(systemScope(admin.tenant.id), created.id);
		expect([doc.tenantId, doc.secret]).toEqual([admin.tenant.id, created.secret]);
		expect((await send("DELETE", `/webhooks/${created.id}`)).status).toBe(204);
	});

	it("the endpoint and delivery the table ran against are still there, unchanged by all of it", async () => {
		const got = await send("GET", `/webhooks/${endpoint.id}`);
		expect(got.body).toMatchObject({ id: endpoint.id, url: GOOD_URL, events: ["display.paired"], enabled: true, description: null });
		expect((await send("GET", `/webhooks/${replayed.id}`)).body).toMatchObject({ enabled: true, url: `${GOOD_URL}/replayed` });
		// Still usable: a real instant replays (nothing recorded for this tenant, so nothing to send).
		expect((await send("POST", `/webhooks/${replayed.id}/replay`, { since: "2026-02-28T10:00:00Z" })).body).toEqual({ deliveries: 0 });
		const log = await send("GET", `/webhooks/${endpoint.id}/deliveries`);
		expect((log.body as Page<DeliveryView>).rows.map(d => d.id)).toEqual([deliveryId]);
		expect((await send("GET", "/notifications")).body).toMatchObject({ total: 1, rows: [{ id: notificationId, readAt: null }] });
		expect((await send("GET", "/notifications/preferences")).body).toEqual({
			email: { "display.offline": true, "display.online": true, "quota.warning": true, "payment.failed": true, "webhook.disabled": true }
		});
	});
});

// ---------------------------------------------------------------------------------------------

describe("secrets: the whsec_ secret and a URL's password appear nowhere they should not", () => {
	let p: Platform;
	let admin: Session;
	const PASSWORD = "Hunter2-S3cretPa55word";

	beforeAll(async () => {
		p = await startPlatform({ WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_RETRY_SCHEDULE: "50ms", NOTIFICATIONS_POLL_MS: "20" });
		admin = await register(p, newAccount("secrets"));
	});
	afterAll(() => p.stop());

	const as = () => bearer(admin.accessToken);
	const tenantAudits = () => JSON.stringify(audits.filter(a => a.tenantId === admin.tenant.id));

	it("a URL with credentials: Basic authentication reaches the receiver, and after a 410 its password is in no log, delivery error, alert email, in-app notification or audit record", async () => {
		const receiver = await WebhookReceiver.start();
		try {
			receiver.otherwise({ status: 410, body: "gone" });
			const url = receiver.url.replace("http://", `http://hookuser:${PASSWORD}@`);
			const created = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: as(), json: { url, events: ["display.paired"], description: "basic auth" } });
			expect(created.status).toBe(201);
			const test = await request<{ id: string }>(p.api(`/webhooks/${created.body.id}/test`), { method: "POST", headers: as() });
			expect(test.status).toBe(202);
			await receiver.waitForRequests(1);
			expect(receiver.received[0].headers.authorization).toBe(`Basic ${Buffer.from(`hookuser:${PASSWORD}`).toString("base64")}`);

			await until(
				() => request<WebhookEndpointView>(p.api(`/webhooks/${created.body.id}`), { headers: as() }),
				r => r.body.enabled === false
			);
			const notifications = await until(
				() => request<Page<{ type: string; body: string; data: Record<string, unknown> }>>(p.api("/notifications"), { headers: as() }),
				r => r.body.rows.some(n => n.type === "webhook.disabled")
			);
			const mails = await until(
				async () => mailbox(p, admin.user.email).filter(m => /disabled|stopped sending/i.test(m)),
				found => found.length > 0
			);
			const alert = notifications.body.rows.find(n => n.type === "webhook.disabled");
			expect(alert?.body).toContain(`127.0.0.1:${receiver.port}/hooks`);

			const log = await request<Page<DeliveryView>>(p.api(`/webhooks/${created.body.id}/deliveries`), { headers: as() });
			expect(log.body.rows[0]).toMatchObject({ status: "failed", lastStatusCode: 410 });

			const places: Record<string, string> = {
				"in-app notifications": notifications.text,
				"webhookDisabled email": mails.join("\n"),
				"delivery log": log.text,
				"audit records": tenantAudits(),
				logs: logs.join("\n")
			};
			const leaking = Object.entries(places).filter(([, text]) => text.includes(PASSWORD) || text.includes(encodeURIComponent(PASSWORD)));
			expect(leaking.map(([place]) => place)).toEqual([]);
			// The audit record still names the destination.
			expect(audits.find(a => a.action === "webhook.created" && a.target === created.body.id)?.data).toMatchObject({ url: `http://127.0.0.1:${receiver.port}/hooks` });
		} finally {
			await receiver.close();
		}
	});

	it("a URL with credentials that does not resolve: the delivery error names the host, not the password", async () => {
		const created = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), {
			method: "POST",
			headers: as(),
			json: { url: `https://hookuser:${PASSWORD}@receiver.marquee-test.invalid/in`, events: ["display.paired"] }
		});
		expect(created.status).toBe(201);
		await request(p.api(`/webhooks/${created.body.id}/test`), { method: "POST", headers: as() });
		const log = await until(
			() => request<Page<DeliveryView>>(p.api(`/webhooks/${created.body.id}/deliveries`), { headers: as() }),
			r => r.body.rows[0]?.status === "failed"
		);
		expect(log.body.rows[0].lastError).toContain("receiver.marquee-test.invalid");
		expect(log.text).not.toContain(PASSWORD);
		expect(logs.join("\n")).not.toContain(PASSWORD);
		expect(tenantAudits()).not.toContain(PASSWORD);
	});

	it("the whsec_ secret is in the creation and rotation answers only: not in lists, reads, delivery logs, the export, audit records or logs", async () => {
		const receiver = await WebhookReceiver.start();
		try {
			const created = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: as(), json: { url: receiver.url, events: ["display.paired"] } });
			const rotated = await request<WebhookEndpointWithSecret>(p.api(`/webhooks/${created.body.id}/rotate-secret`), { method: "POST", headers: as() });
			const secrets = [created.body.secret, rotated.body.secret];
			expect(secrets.every(s => /^whsec_[A-Za-z0-9+/]{43}=$/.test(s))).toBe(true);
			receiver.secret = rotated.body.secret;
			const test = await request<{ id: string }>(p.api(`/webhooks/${created.body.id}/test`), { method: "POST", headers: as() });
			await receiver.waitForRequests(1);
			expect(receiver.received[0].verdict).toBe("ok");
			await until(
				() => request<Page<DeliveryView>>(p.api(`/webhooks/${created.body.id}/deliveries`), { headers: as() }),
				r => r.body.rows[0]?.status === "succeeded"
			);
			await request(p.api(`/webhook-deliveries/${test.body.id}/retry`), { method: "POST", headers: as() });
			await request(p.api(`/webhooks/${created.body.id}/replay`), { method: "POST", headers: as(), json: { since: "2020-01-01T00:00:00Z" } });
			await request(p.api(`/webhooks/${created.body.id}`), { method: "PATCH", headers: as(), json: { description: "patched" } });

			const answers: Record<string, JsonResponse> = {
				"GET /webhooks": await request(p.api("/webhooks?pageSize=100"), { headers: as() }),
				"GET /webhooks/:id": await request(p.api(`/webhooks/${created.body.id}`), { headers: as() }),
				"PATCH /webhooks/:id": await request(p.api(`/webhooks/${created.body.id}`), { method: "PATCH", headers: as(), json: { enabled: true } }),
				"GET /webhooks/:id/deliveries": await request(p.api(`/webhooks/${created.body.id}/deliveries`), { headers: as() }),
				"GET /notifications": await request(p.api("/notifications"), { headers: as() }),
				"GET /notifications/emails": await request(p.api("/notifications/emails"), { headers: as() }),
				"GET /tenant/export": await request(p.api("/tenant/export"), { headers: as() })
			};
			expect(Object.values(answers).map(r => r.status === 200 ? 200 : r.text)).toEqual([200, 200, 200, 200, 200, 200, 200]);
			const texts: Record<string, string> = { ...Object.fromEntries(Object.entries(answers).map(([k, r]) => [k, r.text])), "audit records": tenantAudits(), logs: logs.join("\n") };
			const key = (s: string) => s.slice("whsec_".length, "whsec_".length + 24);
			const leaking = Object.entries(texts).filter(([, text]) => text.includes("whsec_") || secrets.some(s => text.includes(key(s))));
			expect(leaking.map(([place]) => place)).toEqual([]);
		} finally {
			await receiver.close();
		}
	});
});

// ---------------------------------------------------------------------------------------------

describe("restart: a rotated secret and a disabled endpoint stay so (tsx server.ts on NeDB files)", () => {
	const dataDir = tempDir();
	const env = {
		DATA_DIR: dataDir,
		RATE_LIMIT_PER_MINUTE: "100000",
		WEBHOOK_ALLOW_PRIVATE: "true",
		WEBHOOK_RETRY_SCHEDULE: "100ms",
		NOTIFICATIONS_POLL_MS: "50",
		LOG_LEVEL: "debug"
	};
	let proc: PlatformProcess | null = null;
	let output = "";
	let token = "";
	let live: WebhookReceiver;
	let gone: WebhookReceiver;

	async function call<T = unknown>(route: string, init: { method?: string; json?: unknown } = {}): Promise<{ status: number; body: T }> {
		const headers: Record<string, string> = {};
		if (token) headers.Authorization = `Bearer ${token}`;
		if (init.json !== undefined) headers["Content-Type"] = "application/json";
		const res = await fetch(`${proc!.url}/api/v1${route}`, { method: init.method ?? "GET", headers, body: init.json === undefined ? undefined : JSON.stringify(init.json) });
		const text = await res.text();
		return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
	}

	async function start(): Promise<void> {
		proc = await spawnPlatform("node_modules/.bin/tsx", ["server.ts"], env);
		await waitFor200(`${proc.url}/health/ready`, 60_000, proc);
	}

	async function stop(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
		if (!proc) return;
		if (signal === "SIGKILL") killGroup(proc);
		else proc.kill("SIGTERM");
		await proc.exited;
		output += proc.output();
		proc = null;
	}

	beforeAll(async () => {
		live = await WebhookReceiver.start();
		gone = await WebhookReceiver.start();
		gone.otherwise({ status: 410, body: "gone" });
		await start();
	});
	afterAll(async () => {
		if (proc) killGroup(proc);
		await live?.close();
		await gone?.close();
	});

	it("after SIGKILL and after SIGTERM, the rotated endpoint signs with the new and the old secret (not the first), and the endpoint a 410 disabled stays disabled", async () => {
		const registered = await call<{ accessToken: string }>("/auth/register", {
			method: "POST",
			json: { email: `restart-attack-${process.pid}@example.com`, password: "Restart attack horse battery 42", name: "Restart Owner", organizationName: "Restart attack org" }
		});
		expect(registered.status).toBe(201);
		token = registered.body.accessToken;

		const rotatedEndpoint = await call<WebhookEndpointWithSecret>("/webhooks", { method: "POST", json: { url: live.url, events: ["display.paired"] } });
		const first = await call<WebhookEndpointWithSecret>(`/webhooks/${rotatedEndpoint.body.id}/rotate-secret`, { method: "POST" });
		const second = await call<WebhookEndpointWithSecret>(`/webhooks/${rotatedEndpoint.body.id}/rotate-secret`, { method: "POST" });
		expect([first.status, second.status]).toEqual([200, 200]);
		const secrets = { original: rotatedEndpoint.body.secret, first: first.body.secret, second: second.body.secret };

		const doomed = await call<WebhookEndpointWithSecret>("/webhooks", { method: "POST", json: { url: gone.url, events: ["display.paired"] } });
		expect((await call(`/webhooks/${doomed.body.id}/test`, { method: "POST" })).status).toBe(202);
		await until(
			() => call<WebhookEndpointView>(`/webhooks/${doomed.body.id}`),
			r => r.body.enabled === false
		);

		for (const signal of ["SIGKILL", "SIGTERM"] as const) {
			await stop(signal);
			await start();

			const endpoint = await call<WebhookEndpointView>(`/webhooks/${doomed.body.id}`);
			expect([signal, endpoint.body.enabled, endpoint.body.disabledReason]).toEqual([signal, false, "The receiver answered 410 Gone"]);
			const refused = await call<ErrorBody>(`/webhooks/${doomed.body.id}/test`, { method: "POST" });
			expect([signal, refused.status]).toEqual([signal, 409]);

			const before = live.received.length;
			const test = await call<{ id: string }>(`/webhooks/${rotatedEndpoint.body.id}/test`, { method: "POST" });
			expect(test.status).toBe(202);
			await live.waitForRequests(before + 1);
			const delivered = live.withId(`msg_${test.body.id}`)[0];
			expect([signal, verify(secrets.second, delivered), verify(secrets.first, delivered), verify(secrets.original, delivered) === "ok"]).toEqual([signal, "ok", "ok", false]);
			expect(String(delivered.headers["webhook-signature"]).split(" ")).toHaveLength(2);
		}

		// An event of the type both subscribe to reaches the live endpoint only.
		const gotBefore = gone.received.length;
		const pairing = await call<{ code: string }>("/device/pairing", { method: "POST", json: {} });
		const before = live.received.length;
		expect((await call("/displays/pair", { method: "POST", json: { code: pairing.body.code, name: "After restart" } })).status).toBe(201);
		await live.waitForRequests(before + 1);
		expect(gone.received.length).toBe(gotBefore);

		await stop("SIGTERM");
		for (const secret of Object.values(secrets)) expect(output).not.toContain(secret.slice("whsec_".length, "whsec_".length + 24));
		expect(output).not.toContain("whsec_");
	}, 240_000);
});

// ---------------------------------------------------------------------------------------------

/**
 * A platform for the resource tests: one attempt a delivery (the only retry is an hour away),
 * `timeoutMs` for a receiver to answer, an admin, and a way to add endpoints.
 */
function resourcesPlatform(timeoutMs: number) {
	const at = {} as { p: Platform; admin: Session };
	beforeAll(async () => {
		at.p = await startPlatform({ WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_RETRY_SCHEDULE: "1h", WEBHOOK_TIMEOUT_MS: String(timeoutMs), NOTIFICATIONS_POLL_MS: "20" });
		at.admin = await register(at.p, newAccount("resources"));
	});
	afterAll(() => at.p.stop());
	async function endpointFor(url: string): Promise<string> {
		const res = await request<WebhookEndpointWithSecret>(at.p.api("/webhooks"), { method: "POST", headers: bearer(at.admin.accessToken), json: { url, events: ["display.paired"] } });
		expect(res.status).toBe(201);
		return res.body.id;
	}
	return { at, endpointFor };
}

describe("resources", () => {
	// A receiver gets 100 ms to answer: 200 silent ones are given up on quickly.
	const { at, endpointFor } = resourcesPlatform(100);
	const internals = () => at.p.broker.getLocalService("notifications") as Service & Internals;

	it("200 deliveries to a receiver that accepts the connection and never answers leave no socket open", async () => {
		// The receiver lives in another process: the only sockets of this one are the platform's.
		const silent = childServer(`require("net").createServer(s => s.on("data", () => {})).listen(0, "127.0.0.1", function () { console.log(this.address().port); });`);
		try {
			const port = await silent.line(0);
			const endpointId = await endpointFor(`http://127.0.0.1:${port}/never`);
			const { db } = internals();
			const attempted = () => db.webhook_deliveries.countDocs(ALL_TENANTS, { endpointId, attempts: 1 });

			// A first delivery warms everything up (pools, lazy modules) before the count.
			await sendToChannel(at.p.broker, EVENT_CHANNEL, { id: `evt_${newId()}`, tenantId: at.admin.tenant.id, type: "display.paired", timestamp: new Date().toISOString(), data: { warmup: true } });
			await until(attempted, n => n === 1);
			const before = openFds();

			// In batches: the embedded channel adapter drops what its queue of 100 cannot hold.
			for (let batch = 0; batch < 4; batch++) {
				for (let i = 0; i < 50; i++) {
					await sendToChannel(at.p.broker, EVENT_CHANNEL, { id: `evt_${newId()}`, tenantId: at.admin.tenant.id, type: "display.paired", timestamp: new Date().toISOString(), data: { batch, i } });
				}
				await until(() => db.webhook_deliveries.countDocs(ALL_TENANTS, { endpointId }), n => n === 1 + 50 * (batch + 1));
			}
			await until(attempted, n => n === 201);
			const rows = await db.webhook_deliveries.findDocs(ALL_TENANTS, { endpointId });
			expect(new Set(rows.map(r => `${r.status} ${r.lastError}`))).toEqual(new Set(["pending No answer within 100 ms"]));
			expect(rows.every(r => r.leaseOwner === null)).toBe(true);
			// Sockets are closed by the time the attempt is settled; allow a few unrelated descriptors.
			expect(openFds()).toBeLessThanOrEqual(before + 5);
		} finally {
			silent.stop();
		}
	});

});

describe("a receiver streaming an endless body", () => {
	// Time enough to read the status and the first KiB on a loaded machine: the cut comes from the size, not the clock.
	const { at, endpointFor } = resourcesPlatform(5000);

	it("a receiver streaming an endless body: the log keeps its first 1 KiB and the connection is cut, the rest never read", async () => {
		const streaming = childServer(`
			const http = require("http");
			let written = 0;
			http.createServer((req, res) => {
				req.resume();
				req.on("end", () => {
					res.writeHead(500, { "content-type": "text/plain" });
					const chunk = Buffer.alloc(64 * 1024, "a");
					const pump = () => {
						while (written < 1024 ** 3) {
							written += chunk.length;
							if (!res.write(chunk)) return res.once("drain", pump);
						}
						res.end();
					};
					res.on("close", () => console.log("closed " + written));
					pump();
				});
			}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
		`);
		try {
			const port = await streaming.line(0);
			const endpointId = await endpointFor(`http://127.0.0.1:${port}/endless`);
			const test = await request<{ id: string }>(at.p.api(`/webhooks/${endpointId}/test`), { method: "POST", headers: bearer(at.admin.accessToken) });
			expect(test.status).toBe(202);
			const closed = await streaming.line(1);
			const written = Number(closed.replace("closed ", ""));
			// What the kernel's socket buffers hold, nowhere near the gibibyte on offer.
			expect(written).toBeLessThan(64 * 1024 * 1024);
			const log = await until(
				() => request<Page<DeliveryView>>(at.p.api(`/webhooks/${endpointId}/deliveries`), { headers: bearer(at.admin.accessToken) }),
				r => r.body.rows[0]?.attempts === 1
			);
			expect(log.body.rows[0]).toMatchObject({ lastStatusCode: 500, lastResponseBody: "a".repeat(1024), lastError: "The receiver answered 500" });
		} finally {
			streaming.stop();
		}
	});
});
