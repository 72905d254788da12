/**
 * Billing over HTTP: plans, the subscription view, limits enforced atomically through
 * billing.planLimits, the operator's set-plan, and — against a local fake of the Stripe API
 * reached by the real SDK — checkout, portal, signed webhooks (raw bytes, redeliveries, order),
 * quantity following the displays, dunning, and tenant deletion.
 */
import sharp from "sharp";
import BillingService from "../../services/billing.service";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, newAccount, register, someClient, startTestPlatform, tokenFromMail, type Platform, type Session } from "../helpers/accounts";
import { signedBody, startFakeStripe, stripeEvent, type FakeStripe } from "../helpers/fake-stripe";

type Pairing = { pairingId: string; code: string; pollSecret: string };
type Sub = { plan: string; status: string; quantity: number; currentPeriodEnd: string | null; cancelAtPeriodEnd: boolean; graceEndsAt: string | null; usage: Record<string, number>; limits: Record<string, number> };
interface BillingInternals {
	dunningOnce(now?: Date): Promise<number>;
}

const as = (s: { accessToken: string }) => bearer(s.accessToken);
const count = (answers: Array<{ status: number }>, status: number) => answers.filter(a => a.status === status).length;
const DAY_MS = 24 * 3600 * 1000;

async function requestPairing(p: Platform): Promise<Pairing> {
	const res = await request<Pairing>(p.api("/device/pairing"), { method: "POST", json: {}, headers: someClient() });
	if (res.status !== 201) throw new Error(`pairing answered ${res.status}`);
	return res.body;
}

async function pair(p: Platform, owner: Session, name = "Screen") {
	const pairing = await requestPairing(p);
	return request<ErrorBody & { id: string }>(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name } });
}

async function addAdmin(p: Platform, owner: Session): Promise<Session> {
	const account = newAccount("admin");
	const invited = await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: account.email, role: "admin" } });
	if (invited.status !== 201) throw new Error(`invite answered ${invited.status}`);
	const token = await tokenFromMail(p, account.email, "accept-invitation");
	const accepted = await request<Session>(p.api("/invitations/accept"), { method: "POST", headers: someClient(), json: { token, name: account.name, password: account.password } });
	return accepted.body;
}

const subscription = (p: Platform, s: Session) => request<Sub>(p.api("/billing/subscription"), { headers: as(s) });

describe("billing without Stripe", () => {
	let p: Platform;

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "3", DEFAULT_PLAN_MEMBERS: "5", DEFAULT_PLAN_STORAGE_MB: "1" }, [BillingService]);
	});
	afterAll(() => p.stop());

	it("lists the plans from config, in the list convention", async () => {
		const owner = await register(p);
		type Plan = { id: string; pricePerDisplayMonthly: number; perDisplay: boolean; limits: Record<string, number> };
		const res = await request<{ rows: Plan[]; total: number; page: number; pageSize: number; totalPages: number }>(p.api("/billing/plans"), { headers: as(owner) });
		expect(res.status).toBe(200);
		expect({ total: res.body.total, page: res.body.page, pageSize: res.body.pageSize, totalPages: res.body.totalPages }).toEqual({ total: 2, page: 1, pageSize: 20, totalPages: 1 });
		expect(res.body.rows.map(plan => plan.id)).toEqual(["free", "pro"]);
		expect(res.body.rows[0]).toEqual({ id: "free", name: "Free", pricePerDisplayMonthly: 0, perDisplay: false, limits: { displays: 3, storageBytes: 1024 * 1024, members: 5 } });
		expect(res.body.rows[1]).toMatchObject({ id: "pro", pricePerDisplayMonthly: 24, perDisplay: true });
	});

	it("every tenant starts on the free plan; its usage comes from the counters", async () => {
		const owner = await register(p);
		const res = await subscription(p, owner);
		expect(res.status).toBe(200);
		expect(res.body).toEqual({
			plan: "free",
			status: "none",
			quantity: 0,
			currentPeriodEnd: null,
			cancelAtPeriodEnd: false,
			trialEnd: null,
			graceEndsAt: null,
			usage: { displays: 0, storageBytes: 0, members: 1 },
			limits: { displays: 3, storageBytes: 1024 * 1024, members: 5 }
		});
	});

	it("checkout, portal and the webhook answer 503 with a clear message; only the owner reaches checkout and portal", async () => {
		const owner = await register(p);
		const admin = await addAdmin(p, owner);
		for (const path of ["/billing/checkout", "/billing/portal"]) {
			const res = await request<ErrorBody>(p.api(path), { method: "POST", headers: as(owner), json: { planId: "pro", quantity: 2 } });
			expect(res.status).toBe(503);
			expect(res.body.error.type).toBe("SERVICE_UNAVAILABLE");
			expect(res.body.error.message).toMatch(/Payments are not configured/);
			expect((await request(p.api(path), { method: "POST", headers: as(admin), json: { planId: "pro", quantity: 2 } })).status).toBe(403);
		}
		const hook = await request(p.api("/billing/stripe/webhook"), { method: "POST", headers: { "Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00" }, body: "{}" });
		expect(hook.status).toBe(503);
	});

	it("on the free plan the fourth pairing answers 402 with the limit in data", async () => {
		const owner = await register(p);
		for (let i = 0; i < 3; i++) expect((await pair(p, owner)).status).toBe(201);
		const fourth = await pair(p, owner);
		expect(fourth.status).toBe(402);
		expect(fourth.body.error).toMatchObject({ type: "QUOTA_EXCEEDED", data: { resource: "displays", limit: 3, current: 3 } });
	});

	it("an operator's plan (billing.setPlan) sets the limits; 10 parallel pairings on a 3-display plan leave exactly 3", async () => {
		const owner = await register(p);
		const set = await p.broker.call("billing.setPlan", { tenantId: owner.tenant.id, plan: "pro", quantity: 3 });
		expect(set).toMatchObject({ plan: "pro", quantity: 3, limits: { displays: 3, members: 50 } });
		const pairings = await Promise.all(Array.from({ length: 10 }, () => requestPairing(p)));
		const answers = await Promise.all(
			pairings.map((pairing, i) => request<ErrorBody>(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: `S${i}` } }))
		);
		expect(count(answers, 201)).toBe(3);
		expect(count(answers, 402)).toBe(7);
		expect((await request<{ total: number }>(p.api("/displays"), { headers: as(owner) })).body.total).toBe(3);
		const sub = await subscription(p, owner);
		expect(sub.body).toMatchObject({ plan: "pro", status: "active", quantity: 3, usage: { displays: 3 }, limits: { displays: 3 } });
		await expect(p.broker.call("billing.setPlan", { tenantId: owner.tenant.id, plan: "gold" })).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
	});

	it("10 parallel uploads never exceed the storage limit", async () => {
		const owner = await register(p);
		const images = await Promise.all(
			Array.from({ length: 10 }, (_, i) =>
				sharp({ create: { width: 280, height: 280, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128 + i, sigma: 40 } } }).png().toBuffer()
			)
		);
		const answers = await Promise.all(
			images.map((image, i) => {
				const form = new FormData();
				form.append("file", new Blob([new Uint8Array(image)], { type: "image/png" }), `noise-${i}.png`);
				return request(p.api("/content"), { method: "POST", headers: as(owner), body: form });
			})
		);
		expect(answers.every(a => a.status === 201 || a.status === 402)).toBe(true);
		expect(count(answers, 402)).toBeGreaterThan(0);
		const sub = await subscription(p, owner);
		expect(sub.body.limits.storageBytes).toBe(1024 * 1024);
		expect(sub.body.usage.storageBytes).toBeLessThanOrEqual(1024 * 1024);
	});
});

describe("billing with Stripe (a local fake of its API)", () => {
	let p: Platform;
	let stripe: FakeStripe;

	beforeAll(async () => {
		stripe = await startFakeStripe();
		p = await startTestPlatform({ ...stripe.env, DEFAULT_PLAN_DISPLAYS: "3", DEFAULT_PLAN_STORAGE_MB: "1", BILLING_GRACE_DAYS: "14" }, [BillingService]);
	});
	afterAll(async () => {
		await p.stop();
		await stripe.close();
	});

	const webhook = (body: string, signature: string) =>
		request<ErrorBody & { received?: boolean; duplicate?: boolean }>(p.api("/billing/stripe/webhook"), {
			method: "POST",
			headers: { "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature },
			body
		});
	const send = (event: unknown, options?: { timestamp?: number; secret?: string }) => {
		const { body, signature } = signedBody(event, options);
		return webhook(body, signature);
	};

	/** A tenant that went through checkout: a Stripe customer and an active `quantity`-display subscription. */
	async function subscribed(quantity: number) {
		const owner = await register(p);
		const checkout = await request<{ url: string }>(p.api("/billing/checkout"), { method: "POST", headers: as(owner), json: { planId: "pro", quantity } });
		expect(checkout.status).toBe(200);
		const customer = [...stripe.customers.values()].find(c => c.metadata.tenantId === owner.tenant.id);
		if (!customer) throw new Error("no customer");
		const sub = stripe.createSubscription({ customer: customer.id, tenantId: owner.tenant.id, quantity });
		const done = await send(stripeEvent("checkout.session.completed", { id: "cs_x", object: "checkout.session", mode: "subscription", client_reference_id: owner.tenant.id, customer: customer.id, subscription: sub.id, metadata: {} }));
		expect(done.status).toBe(200);
		return { owner, customer, sub };
	}

	it("checkout and portal answer 200 with a Stripe URL for the owner, 403 for an admin; one customer per tenant", async () => {
		const owner = await register(p);
		const admin = await addAdmin(p, owner);
		const checkout = await request<{ url: string }>(p.api("/billing/checkout"), { method: "POST", headers: as(owner), json: { planId: "pro", quantity: 2 } });
		expect(checkout.status).toBe(200);
		expect(checkout.body.url).toMatch(/^https:\/\/checkout\.stripe\.test\//);
		const sessionRequest = stripe.requests.filter(r => r.path === "/v1/checkout/sessions").at(-1);
		expect(sessionRequest?.form).toMatchObject({ mode: "subscription", client_reference_id: owner.tenant.id, "line_items[0][price]": stripe.env.STRIPE_PRICE_PRO, "line_items[0][quantity]": "2" });
		const portal = await request<{ url: string }>(p.api("/billing/portal"), { method: "POST", headers: as(owner) });
		expect(portal.status).toBe(200);
		expect(portal.body.url).toMatch(/^https:\/\/billing\.stripe\.test\//);
		expect([...stripe.customers.values()].filter(c => c.metadata.tenantId === owner.tenant.id)).toHaveLength(1);
		expect((await request(p.api("/billing/checkout"), { method: "POST", headers: as(admin), json: { planId: "pro", quantity: 2 } })).status).toBe(403);
		expect((await request(p.api("/billing/portal"), { method: "POST", headers: as(admin) })).status).toBe(403);
		const free = await request<ErrorBody>(p.api("/billing/checkout"), { method: "POST", headers: as(owner), json: { planId: "free", quantity: 1 } });
		expect(free.status).toBe(422);
	});

	it("webhooks: bad or stale signatures and re-serialised bodies are 400 and change nothing; a good one applies once", async () => {
		const owner = await register(p);
		await request(p.api("/billing/portal"), { method: "POST", headers: as(owner) });
		const customer = [...stripe.customers.values()].find(c => c.metadata.tenantId === owner.tenant.id);
		if (!customer) throw new Error("no customer");
		const sub = stripe.createSubscription({ customer: customer.id, tenantId: owner.tenant.id, quantity: 7 });
		const event = stripeEvent("customer.subscription.updated", sub);
		const before = await subscription(p, owner);

		expect((await send(event, { secret: "whsec_someone_else" })).status).toBe(400);
		expect((await send(event, { timestamp: Math.floor(Date.now() / 1000) - 400 })).status).toBe(400);
		const { body, signature } = signedBody(event);
		// The same JSON as a parser would write it again: other bytes, so the signature fails.
		const reserialised = JSON.stringify(JSON.parse(body));
		expect(reserialised).not.toBe(body);
		const refused = await webhook(reserialised, signature);
		expect(refused.status).toBe(400);
		expect(refused.body.error.type).toBe("BAD_REQUEST");
		expect((await webhook(body, "")).status).toBe(400);
		expect((await subscription(p, owner)).body).toEqual(before.body);

		const good = await webhook(body, signature);
		expect(good.status).toBe(200);
		expect(good.body).toEqual({ received: true });
		const after = await subscription(p, owner);
		expect(after.body).toMatchObject({ plan: "pro", status: "active", quantity: 7, limits: { displays: 1000, members: 50 } });
		expect(after.body.currentPeriodEnd).not.toBeNull();

		// Stripe redelivers: the same event id acts once.
		sub.items.data[0].quantity = 9;
		const again = await webhook(body, signature);
		expect(again.status).toBe(200);
		expect(again.body).toEqual({ received: true, duplicate: true });
		expect((await subscription(p, owner)).body).toEqual(after.body);
	});

	it("an older customer.subscription.updated does not roll newer state back", async () => {
		const { owner, sub } = await subscribed(2);
		const now = Math.floor(Date.now() / 1000);
		sub.items.data[0].quantity = 5;
		expect((await send(stripeEvent("customer.subscription.updated", sub, now + 60))).status).toBe(200);
		expect((await subscription(p, owner)).body.quantity).toBe(5);
		const older = structuredClone(sub);
		older.items.data[0].quantity = 1;
		older.status = "past_due";
		expect((await send(stripeEvent("customer.subscription.updated", older, now + 30))).status).toBe(200);
		expect((await subscription(p, owner)).body).toMatchObject({ quantity: 5, status: "active" });
	});

	it("the subscription quantity follows paired displays (prorated, never below 1)", async () => {
		const { owner, sub } = await subscribed(1);
		const first = await pair(p, owner);
		expect(first.status).toBe(201);
		expect((await pair(p, owner)).status).toBe(201);
		await waitFor(() => sub.items.data[0].quantity === 2);
		const update = stripe.requests.filter(r => r.path === `/v1/subscriptions/${sub.id}` && r.method === "POST").at(-1);
		expect(update?.form).toMatchObject({ proration_behavior: "create_prorations", "items[0][quantity]": "2" });
		expect((await request(p.api(`/displays/${first.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		await waitFor(() => sub.items.data[0].quantity === 1);
	});

	it("a failed payment starts a grace period; after it the tenant has the free limits with every display and file still there; invoice.paid ends it", async () => {
		const { owner, customer, sub } = await subscribed(5);
		for (let i = 0; i < 5; i++) expect((await pair(p, owner, `Screen ${i}`)).status).toBe(201);
		const form = new FormData();
		form.append("file", new Blob([new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: "#ff0000" } }).png().toBuffer())], { type: "image/png" }), "red.png");
		expect((await request(p.api("/content"), { method: "POST", headers: as(owner), body: form })).status).toBe(201);

		const invoice = { id: "in_fake_1", object: "invoice", customer: customer.id, amount_due: 12000, currency: "usd", attempt_count: 1, parent: { subscription_details: { subscription: sub.id } } };
		expect((await send(stripeEvent("invoice.payment_failed", invoice))).status).toBe(200);
		const during = await subscription(p, owner);
		expect(during.body).toMatchObject({ status: "past_due", limits: { displays: 1000 } });
		expect(Date.parse(during.body.graceEndsAt ?? "") - Date.now()).toBeGreaterThan(13 * DAY_MS);
		// Inside the grace period everything works.
		expect((await pair(p, owner)).status).toBe(201);

		const billing = p.broker.getLocalService("billing") as unknown as BillingInternals;
		expect(await billing.dunningOnce(new Date(Date.now() + 7 * DAY_MS))).toBe(0);
		expect(await billing.dunningOnce(new Date(Date.now() + 15 * DAY_MS))).toBeGreaterThanOrEqual(1);
		const after = await subscription(p, owner);
		expect(after.body.limits).toEqual({ displays: 3, storageBytes: 1024 * 1024, members: 5 });
		expect(after.body.usage.displays).toBe(6);
		expect((await request<{ total: number }>(p.api("/displays"), { headers: as(owner) })).body.total).toBe(6);
		expect((await request<{ total: number }>(p.api("/content"), { headers: as(owner) })).body.total).toBe(1);
		const refused = await pair(p, owner);
		expect(refused.status).toBe(402);
		expect(refused.body.error.data).toMatchObject({ resource: "displays", limit: 3 });
		// The admins were told (payment.failed alert, in-app).
		await waitFor(async () => {
			const inbox = await request<{ rows: Array<{ type: string }> }>(p.api("/notifications"), { headers: as(owner) });
			return inbox.body.rows.filter(n => n.type === "payment.failed").length >= 2;
		});

		expect((await send(stripeEvent("invoice.paid", { ...invoice, id: "in_fake_2", amount_due: 0 }))).status).toBe(200);
		const paid = await subscription(p, owner);
		expect(paid.body).toMatchObject({ status: "active", graceEndsAt: null, limits: { displays: 1000 } });
		expect((await pair(p, owner)).status).toBe(201);
	});

	it("GDPR: the export holds the subscription without secrets; deleting the tenant cancels at period end and removes billing documents", async () => {
		const { owner, sub } = await subscribed(1);
		const exported = await request<{ services: { billing: { subscription: Record<string, unknown> } } }>(p.api("/tenant/export"), { headers: as(owner) });
		expect(exported.status).toBe(200);
		expect(exported.body.services.billing.subscription).toMatchObject({ plan: "pro", stripeSubscriptionId: sub.id });
		expect(exported.text).not.toContain("sk_test");
		const removed = await request(p.api("/tenant"), { method: "DELETE", headers: as(owner), json: { confirm: owner.tenant.name } });
		expect(removed.status).toBe(204);
		await waitFor(() => sub.cancel_at_period_end);
		await waitFor(async () => (await p.broker.call("billing.exportTenantData", { tenantId: owner.tenant.id })) !== null && ((await p.broker.call("billing.exportTenantData", { tenantId: owner.tenant.id })) as { subscription: unknown }).subscription === null);
	});
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
	const until = Date.now() + timeoutMs;
	while (!(await check())) {
		if (Date.now() > until) throw new Error("condition not met in time");
		await new Promise(resolve => setTimeout(resolve, 25));
	}
}
