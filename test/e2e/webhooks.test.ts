/**
 * Webhooks over HTTP, as an integrator sees them: an admin of a real tenant adds endpoints
 * through the REST API, platform events (sent on the durable event channel, or made by real
 * actions such as pairing a display) reach local receivers that verify every request with the
 * official `standardwebhooks` library, retries follow the (shortened) schedule, Retry-After and
 * 410 are honoured, the delivery log, test events, manual retry, replay and secret rotation work
 * through their routes, the SSRF guard answers 422 and refuses again at delivery, and a tenant's
 * export and deletion cover its webhooks.
 */
import type { Service } from "moleculer";
import { systemScope, type TenantCollection } from "../../mixins/db.mixin";
import type { DeliveryDoc, EndpointDoc, EventDoc } from "../../services/notifications/documents";
import { EVENT_CHANNEL } from "../../shared/channels";
import { sendToChannel, type DeliveryView, type PlatformEvent, type WebhookEndpointView, type WebhookEndpointWithSecret, type WebhookEventType } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { verify, WebhookReceiver } from "../helpers/webhook-receiver";

interface Page<T> {
	rows: T[];
	total: number;
}

/** Polls `read` until `done` holds for its answer (the worker runs on its own; the test timeout bounds the wait). */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
	for (;;) {
		const value = await read();
		if (done(value)) return value;
		await new Promise(resolve => setTimeout(resolve, 20));
	}
}

interface Internals {
	db: { webhook_endpoints: TenantCollection<EndpointDoc>; webhook_events: TenantCollection<EventDoc>; webhook_deliveries: TenantCollection<DeliveryDoc> };
}

describe("webhooks (private destinations allowed, as in local development)", () => {
	let p: Platform;
	let admin: Session;
	let receiver: WebhookReceiver;

	beforeAll(async () => {
		p = await startTestPlatform({
			WEBHOOK_ALLOW_PRIVATE: "true",
			WEBHOOK_RETRY_SCHEDULE: "50ms,50ms,50ms",
			NOTIFICATIONS_POLL_MS: "20",
			DEFAULT_PLAN_DISPLAYS: "100"
		});
		admin = await register(p, newAccount("hooks"));
	});
	afterAll(() => p.stop());
	beforeEach(async () => {
		receiver = await WebhookReceiver.start();
	});
	afterEach(() => receiver.close());

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const internals = () => p.broker.getLocalService("notifications") as Service & Internals;

	async function createEndpoint(events: WebhookEventType[], url = receiver.url, session: Session = admin): Promise<WebhookEndpointWithSecret> {
		const res = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: as(session), json: { url, events } });
		expect(res.status).toBe(201);
		return res.body;
	}

	function publish(type: WebhookEventType, data: Record<string, unknown>, session: Session = admin, timestamp = new Date().toISOString()): Promise<PlatformEvent> {
		const event: PlatformEvent = { id: `evt_${newId()}`, tenantId: session.tenant.id, type, timestamp, data };
		return sendToChannel(p.broker, EVENT_CHANNEL, event).then(() => event);
	}

	const log = (endpointId: string, query = "", session: Session = admin) =>
		request<Page<DeliveryView>>(p.api(`/webhooks/${endpointId}/deliveries${query}`), { headers: as(session) }).then(r => {
			expect(r.status).toBe(200);
			return r.body;
		});

	it("creates an endpoint whose whsec_ secret is shown only in the creation answer", async () => {
		const res = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), {
			method: "POST",
			headers: as(admin),
			json: { url: receiver.url, events: ["display.offline", "display.online"], description: "NOC pager" }
		});
		expect(res.status).toBe(201);
		expect(res.body).toEqual({
			id: expect.any(String),
			url: receiver.url,
			events: ["display.offline", "display.online"],
			description: "NOC pager",
			enabled: true,
			disabledReason: null,
			secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
			createdAt: expect.any(String),
			updatedAt: expect.any(String)
		});
		const got = await request<WebhookEndpointView>(p.api(`/webhooks/${res.body.id}`), { headers: as(admin) });
		expect(got.status).toBe(200);
		expect(got.body).not.toHaveProperty("secret");
		const list = await request<Page<WebhookEndpointView>>(p.api("/webhooks"), { headers: as(admin) });
		expect(list.body.rows.find(r => r.id === res.body.id)).toEqual(got.body);
		expect(list.text).not.toContain("whsec_");
	});

	it("delivers a platform event signed so the standardwebhooks library accepts it; a tampered body or an old timestamp fails its check", async () => {
		const endpoint = await createEndpoint(["content.ready"]);
		receiver.secret = endpoint.secret;
		const event = await publish("content.ready", { contentId: "c-1", name: "Menu board", type: "image" });
		await receiver.waitForRequests(1);

		const got = receiver.received[0];
		expect(got.verdict).toBe("ok");
		expect(JSON.parse(got.body)).toEqual({ type: "content.ready", timestamp: event.timestamp, data: { contentId: "c-1", name: "Menu board", type: "image" } });
		expect(got.headers["content-type"]).toBe("application/json");
		expect(verify(endpoint.secret, { ...got, body: got.body.replace("Menu board", "Free beer") })).toBe("No matching signature found");
		expect(verify(endpoint.secret, { ...got, headers: { ...got.headers, "webhook-timestamp": String(Math.floor(Date.now() / 1000) - 600) } })).toBe("Message timestamp too old");

		const rows = (await until(() => log(endpoint.id), page => page.rows[0]?.status === "succeeded")).rows;
		expect(rows).toEqual([
			{
				id: expect.any(String),
				endpointId: endpoint.id,
				eventId: event.id,
				event: "content.ready",
				status: "succeeded",
				attempts: 1,
				lastStatusCode: 200,
				lastResponseBody: "ok",
				lastError: null,
				nextAttemptAt: null,
				createdAt: expect.any(String),
				updatedAt: expect.any(String)
			}
		]);
		expect(got.headers["webhook-id"]).toBe(`msg_${rows[0].id}`);
	});

	it("pairing a display sends display.paired", async () => {
		const endpoint = await createEndpoint(["display.paired"]);
		receiver.secret = endpoint.secret;
		const { display } = await pairDisplay(p, admin, { name: "Front window" });
		await receiver.waitForRequests(1);
		expect(receiver.received[0].verdict).toBe("ok");
		expect(JSON.parse(receiver.received[0].body)).toMatchObject({ type: "display.paired", data: { displayId: display.id, name: "Front window" } });
	});

	it("a receiver answering 500 twice then 200 gets exactly three attempts; the log shows them and the delivery ends succeeded", async () => {
		const endpoint = await createEndpoint(["schedule.changed"]);
		receiver.secret = endpoint.secret;
		receiver.reply({ status: 500, body: "down" }, { status: 500, body: "still down" }, { status: 200, body: "got it" });
		await publish("schedule.changed", { scheduleId: "s-1", change: "updated" });

		const page = await until(() => log(endpoint.id), page => page.rows[0]?.status === "succeeded");
		expect(page.rows).toHaveLength(1);
		expect(page.rows[0]).toMatchObject({ status: "succeeded", attempts: 3, lastStatusCode: 200, lastResponseBody: "got it", lastError: null, nextAttemptAt: null });
		expect(receiver.received).toHaveLength(3);
		expect(receiver.received.map(r => r.verdict)).toEqual(["ok", "ok", "ok"]);
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"]))).toEqual(new Set([`msg_${page.rows[0].id}`]));
		expect(new Set(receiver.received.map(r => r.body)).size).toBe(1);
		expect((await log(endpoint.id, "?status=succeeded")).total).toBe(1);
		expect((await log(endpoint.id, "?status=failed")).total).toBe(0);
	});

	it("waits as long as Retry-After asks on 429, beyond the 50 ms schedule", async () => {
		const endpoint = await createEndpoint(["display.deleted"]);
		receiver.reply({ status: 429, headers: { "Retry-After": "3" } }, { status: 200 });
		await publish("display.deleted", { displayId: "d-1", name: "Lobby" });
		await receiver.waitForRequests(1);
		const [row] = (await until(() => log(endpoint.id), page => page.rows[0]?.attempts === 1)).rows;
		expect(row).toMatchObject({ status: "pending", lastStatusCode: 429 });
		// Both instants are the platform's: the next attempt is set 3 s after the attempt, not 50 ms.
		expect(Date.parse(String(row.nextAttemptAt)) - Date.parse(row.updatedAt)).toBeGreaterThan(2000);
		// And it is kept: the retry (answered 200) comes no sooner than that (a bound a slow machine can only widen).
		await receiver.waitForRequests(2);
		const [first, retry] = receiver.received;
		expect(retry.receivedAt - first.receivedAt).toBeGreaterThanOrEqual(2900);
	});

	it("410 Gone disables the endpoint and it gets no further deliveries", async () => {
		const endpoint = await createEndpoint(["display.offline"]);
		receiver.reply({ status: 410 });
		await publish("display.offline", { displayId: "d-1" });
		const got = await until(
			() => request<WebhookEndpointView>(p.api(`/webhooks/${endpoint.id}`), { headers: as(admin) }),
			res => res.body.enabled === false
		);
		expect(got.body).toMatchObject({ enabled: false, disabledReason: "The receiver answered 410 Gone" });
		expect((await log(endpoint.id)).rows).toMatchObject([{ status: "failed", attempts: 1, lastStatusCode: 410 }]);

		const later = await publish("display.offline", { displayId: "d-2" });
		await until(() => internals().db.webhook_events.findDoc(systemScope(admin.tenant.id), { eventId: later.id }), doc => doc !== null);
		const test = await request<ErrorBody>(p.api(`/webhooks/${endpoint.id}/test`), { method: "POST", headers: as(admin) });
		expect(test.status).toBe(409);
		expect((await log(endpoint.id)).total).toBe(1);
		expect(receiver.received).toHaveLength(1);

		const enabled = await request<WebhookEndpointView>(p.api(`/webhooks/${endpoint.id}`), { method: "PATCH", headers: as(admin), json: { enabled: true } });
		expect(enabled.body).toMatchObject({ enabled: true, disabledReason: null });
	});

	it("a test event: 202 with its delivery id, the first subscribed type, data {test: true}", async () => {
		const endpoint = await createEndpoint(["quota.warning", "payment.failed"]);
		receiver.secret = endpoint.secret;
		const res = await request<{ id: string }>(p.api(`/webhooks/${endpoint.id}/test`), { method: "POST", headers: as(admin) });
		expect(res.status).toBe(202);
		await receiver.waitForRequests(1);
		expect(receiver.received[0].verdict).toBe("ok");
		expect(receiver.received[0].headers["webhook-id"]).toBe(`msg_${res.body.id}`);
		expect(JSON.parse(receiver.received[0].body)).toMatchObject({ type: "quota.warning", data: { test: true } });
	});

	it("a manual retry sends a failed delivery again with the same webhook-id, attempts kept", async () => {
		const endpoint = await createEndpoint(["payment.failed"]);
		receiver.otherwise({ status: 500 });
		await publish("payment.failed", { amountDue: "€24.00" });
		const [failed] = (await until(() => log(endpoint.id), page => page.rows[0]?.status === "failed")).rows;
		expect(failed).toMatchObject({ attempts: 4, lastStatusCode: 500, nextAttemptAt: null });

		receiver.otherwise({ status: 204 });
		const res = await request<{ id: string }>(p.api(`/webhook-deliveries/${failed.id}/retry`), { method: "POST", headers: as(admin) });
		expect(res.status).toBe(202);
		expect(res.body).toEqual({ id: failed.id });
		const [done] = (await until(() => log(endpoint.id), page => page.rows[0]?.status === "succeeded")).rows;
		expect(done).toMatchObject({ id: failed.id, attempts: 5, lastStatusCode: 204 });
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(1);
		expect(receiver.received).toHaveLength(5);
	});

	it("replay sends again every subscribed event since a time, as new deliveries", async () => {
		const endpoint = await createEndpoint(["display.online"]);
		receiver.secret = endpoint.secret;
		await publish("display.online", { displayId: "d-old" }, admin, "2026-01-01T08:00:00.000Z");
		await publish("display.online", { displayId: "d-new" }, admin, "2026-01-02T08:00:00.000Z");
		await publish("display.offline", { displayId: "d-new" }, admin, "2026-01-02T09:00:00.000Z");
		await receiver.waitForRequests(2);

		const res = await request<{ deliveries: number }>(p.api(`/webhooks/${endpoint.id}/replay`), { method: "POST", headers: as(admin), json: { since: "2026-01-02T00:00:00Z" } });
		expect(res.status).toBe(202);
		expect(res.body).toEqual({ deliveries: 1 });
		await receiver.waitForRequests(3);
		expect(JSON.parse(receiver.received[2].body)).toMatchObject({ type: "display.online", data: { displayId: "d-new" } });
		expect(new Set(receiver.received.map(r => r.headers["webhook-id"])).size).toBe(3);
		expect(receiver.received.every(r => r.verdict === "ok")).toBe(true);
		expect((await log(endpoint.id)).total).toBe(3);

		const bad = await request<ErrorBody>(p.api(`/webhooks/${endpoint.id}/replay`), { method: "POST", headers: as(admin), json: { since: "yesterday" } });
		expect(bad.status).toBe(422);
	});

	it("after rotating the secret both the new and the old one verify the next delivery", async () => {
		const endpoint = await createEndpoint(["content.deleted"]);
		const rotated = await request<WebhookEndpointWithSecret>(p.api(`/webhooks/${endpoint.id}/rotate-secret`), { method: "POST", headers: as(admin) });
		expect(rotated.status).toBe(200);
		expect(rotated.body.secret).toMatch(/^whsec_/);
		expect(rotated.body.secret).not.toBe(endpoint.secret);
		await publish("content.deleted", { contentId: "c-9", name: "Old promo" });
		await receiver.waitForRequests(1);
		expect(verify(rotated.body.secret, receiver.received[0])).toBe("ok");
		expect(verify(endpoint.secret, receiver.received[0])).toBe("ok");
	});

	it("refuses bad input with 422, a 21st endpoint with 409, a non-admin with 403 and another tenant's endpoint with 404", async () => {
		const bad: Array<Record<string, unknown>> = [
			{ url: receiver.url, events: ["display.exploded"] },
			{ url: receiver.url, events: [] },
			{ url: "ftp://files.example.com/hook", events: ["display.offline"] },
			{ url: "not a url at all", events: ["display.offline"] },
			{ events: ["display.offline"] }
		];
		for (const json of bad) {
			const res = await request<ErrorBody>(p.api("/webhooks"), { method: "POST", headers: as(admin), json });
			expect([res.status, res.body.error.type]).toEqual([422, "VALIDATION_ERROR"]);
		}

		const crowded = await register(p, newAccount("crowded"));
		for (let i = 0; i < 20; i++) await createEndpoint(["display.offline"], `${receiver.url}?n=${i}`, crowded);
		const over = await request<ErrorBody>(p.api("/webhooks"), { method: "POST", headers: as(crowded), json: { url: receiver.url, events: ["display.offline"] } });
		expect([over.status, over.body.error.message]).toEqual([409, "A tenant has at most 20 webhook endpoints"]);

		const key = await request<{ key: string }>(p.api("/api-keys"), { method: "POST", headers: as(admin), json: { name: "cms editor", role: "editor" } });
		expect(key.status).toBe(201);
		expect((await request(p.api("/webhooks"), { headers: bearer(key.body.key) })).status).toBe(403);

		const mine = await createEndpoint(["display.offline"]);
		const stranger = await register(p, newAccount("stranger"));
		for (const [method, path] of [
			["GET", `/webhooks/${mine.id}`],
			["PATCH", `/webhooks/${mine.id}`],
			["DELETE", `/webhooks/${mine.id}`],
			["GET", `/webhooks/${mine.id}/deliveries`],
			["POST", `/webhooks/${mine.id}/test`],
			["POST", `/webhooks/${mine.id}/rotate-secret`]
		]) {
			const res = await request(p.api(path), { method, headers: as(stranger), json: method === "PATCH" ? { enabled: false } : undefined });
			expect([method, path, res.status]).toEqual([method, path, 404]);
		}
	});

	it("a tenant's export lists its endpoints without secrets; deleting the endpoint or the tenant removes its deliveries", async () => {
		const owner = await register(p, newAccount("leaving"));
		const endpoint = await createEndpoint(["display.online"], receiver.url, owner);
		await publish("display.online", { displayId: "d-1" }, owner);
		await until(() => log(endpoint.id, "", owner), page => page.rows[0]?.status === "succeeded");

		const exported = await request<{ services: { notifications: { webhooks: WebhookEndpointView[]; deliveries: DeliveryView[] } } }>(p.api("/tenant/export"), { headers: as(owner) });
		expect(exported.status).toBe(200);
		expect(exported.body.services.notifications.webhooks.map(w => w.id)).toEqual([endpoint.id]);
		expect(exported.body.services.notifications.deliveries.map(d => d.endpointId)).toEqual([endpoint.id]);
		expect(exported.text).not.toContain("whsec_");
		expect(exported.text).not.toContain(endpoint.secret.slice("whsec_".length, 20));

		const removable = await createEndpoint(["display.online"], receiver.url, owner);
		await publish("display.online", { displayId: "d-2" }, owner);
		await until(() => log(removable.id, "", owner), page => page.rows[0]?.status === "succeeded");
		expect((await request(p.api(`/webhooks/${removable.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const { db } = internals();
		const scope = systemScope(owner.tenant.id);
		expect(await db.webhook_deliveries.countDocs(scope, { endpointId: removable.id })).toBe(0);

		expect((await request(p.api("/tenant"), { method: "DELETE", headers: as(owner), json: { confirm: owner.tenant.name } })).status).toBe(204);
		await until(() => db.webhook_endpoints.countDocs(scope), n => n === 0);
		expect([await db.webhook_deliveries.countDocs(scope), await db.webhook_events.countDocs(scope)]).toEqual([0, 0]);
	});
});

describe("webhooks SSRF guard (private destinations refused, the default)", () => {
	let p: Platform;
	let admin: Session;
	let receiver: WebhookReceiver;

	beforeAll(async () => {
		p = await startTestPlatform({ WEBHOOK_RETRY_SCHEDULE: "50ms", NOTIFICATIONS_POLL_MS: "20" });
		admin = await register(p, newAccount("guarded"));
		receiver = await WebhookReceiver.start();
	});
	afterAll(async () => {
		await receiver.close();
		await p.stop();
	});

	it("answers 422 naming url for loopback, private, link-local and metadata addresses and names resolving there", async () => {
		const urls: Array<[string, string]> = [
			["http://127.0.0.1:8080/hook", "The 'url' field must not be a loopback address."],
			["http://10.1.2.3/hook", "The 'url' field must not be a private address."],
			["http://172.20.0.5/hook", "The 'url' field must not be a private address."],
			["http://192.168.0.10/hook", "The 'url' field must not be a private address."],
			["http://100.100.100.200/latest/meta-data/", "The 'url' field must not be a carrier-grade NAT address."],
			["http://169.254.169.254/latest/meta-data/iam/", "The 'url' field must not be a link-local address."],
			["http://[::1]:3000/hook", "The 'url' field must not be a loopback address."],
			["http://[::ffff:10.0.0.1]/hook", "The 'url' field must not be a private address."],
			["http://[fd00:ec2::254]/", "The 'url' field must not be a private address."],
			["http://0x7f000001/hook", "The 'url' field must not be a loopback address."],
			["http://localhost:3000/hook", "The 'url' field must not resolve to a loopback address."]
		];
		const answers: Array<[string, string]> = [];
		for (const [url] of urls) {
			const res = await request<ErrorBody>(p.api("/webhooks"), { method: "POST", headers: bearer(admin.accessToken), json: { url, events: ["display.offline"] } });
			expect([url, res.status, res.body.error.type]).toEqual([url, 422, "VALIDATION_ERROR"]);
			const fields = res.body.error.data as Array<{ field: string; message: string }>;
			expect(fields.map(f => f.field)).toEqual(["url"]);
			answers.push([url, fields[0].message]);
		}
		expect(answers).toEqual(urls);
		const list = await request<Page<WebhookEndpointView>>(p.api("/webhooks"), { headers: bearer(admin.accessToken) });
		expect(list.body.total).toBe(0);
	});

	it("refuses again at delivery an endpoint created while private destinations were allowed", async () => {
		const notifications = p.config.notifications;
		notifications.webhookAllowPrivate = true;
		let created;
		try {
			created = await request<WebhookEndpointWithSecret>(p.api("/webhooks"), { method: "POST", headers: bearer(admin.accessToken), json: { url: receiver.url, events: ["display.offline"] } });
		} finally {
			notifications.webhookAllowPrivate = false;
		}
		expect(created.status).toBe(201);
		const event: PlatformEvent = { id: `evt_${newId()}`, tenantId: admin.tenant.id, type: "display.offline", timestamp: new Date().toISOString(), data: { displayId: "d-1" } };
		await sendToChannel(p.broker, EVENT_CHANNEL, event);

		const page = await until(
			() => request<Page<DeliveryView>>(p.api(`/webhooks/${created.body.id}/deliveries`), { headers: bearer(admin.accessToken) }).then(r => r.body),
			page => page.rows[0]?.status === "failed"
		);
		expect(page.rows[0]).toMatchObject({ attempts: 2, lastStatusCode: null, lastError: "Destination refused: the URL must not be a loopback address" });
		expect(receiver.received).toHaveLength(0);
	});
});
