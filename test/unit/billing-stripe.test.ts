/** Stripe objects → subscription state, event ordering, raw bodies and signatures (pure, with the real SDK). */
import { Readable } from "node:stream";
import type Stripe from "stripe";
import { loadConfig } from "../../shared/config";
import { plansFrom } from "../../services/billing/plans";
import { formatAmount, readRawBody, stripeClient, verifiedEvent } from "../../services/billing/stripe-client";
import { eventAge, isHandled, subscriptionChanges, subscriptionOfInvoice } from "../../services/billing/stripe-events";
import { signedBody, stripeEvent, FAKE_WEBHOOK_SECRET } from "../helpers/fake-stripe";

const env = { NODE_ENV: "test", STRIPE_SECRET_KEY: "sk_test_x", STRIPE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET, STRIPE_PRICE_PRO: "price_pro", STRIPE_API_URL: "http://127.0.0.1:9" };
const config = loadConfig(env);
const plans = plansFrom(config);
const stripe = stripeClient(config);
if (!stripe) throw new Error("no client");

const subscription = {
	id: "sub_1",
	object: "subscription",
	customer: "cus_1",
	status: "trialing",
	cancel_at_period_end: true,
	trial_end: 1_800_000_000,
	metadata: { tenantId: "t1" },
	items: { data: [{ id: "si_1", quantity: 4, current_period_end: 1_800_000_000, price: { id: "price_pro" } }] }
} as unknown as Stripe.Subscription;

it("a Stripe subscription gives plan, status, quantity, period end, cancellation and trial", () => {
	expect(subscriptionChanges(subscription, plans, { plan: "free" })).toEqual({
		plan: "pro",
		status: "trialing",
		quantity: 4,
		currentPeriodEnd: "2027-01-15T08:00:00.000Z",
		cancelAtPeriodEnd: true,
		trialEnd: "2027-01-15T08:00:00.000Z",
		stripeSubscriptionId: "sub_1",
		stripeCustomerId: "cus_1"
	});
});

it("orders events by Stripe's created: older never applies, the same second is in doubt", () => {
	expect(eventAge({ stripeCreated: null }, 10)).toBe("newer");
	expect(eventAge({ stripeCreated: 10 }, 11)).toBe("newer");
	expect(eventAge({ stripeCreated: 10 }, 10)).toBe("same");
	expect(eventAge({ stripeCreated: 10 }, 9)).toBe("older");
	expect(isHandled("invoice.payment_failed")).toBe(true);
	expect(isHandled("charge.refunded")).toBe(false);
	expect(subscriptionOfInvoice({ parent: { subscription_details: { subscription: "sub_9" } } } as unknown as Stripe.Invoice)).toBe("sub_9");
});

it("verifies the exact bytes: good passes; other secret, stale, re-serialised or unsigned are one 400", () => {
	const event = stripeEvent("customer.subscription.updated", subscription);
	const { body, signature } = signedBody(event);
	expect(verifiedEvent(stripe, Buffer.from(body), signature, FAKE_WEBHOOK_SECRET).id).toBe(event.id);
	const bad = (raw: string, header: string | undefined) => () => verifiedEvent(stripe, Buffer.from(raw), header, FAKE_WEBHOOK_SECRET);
	expect(bad(body, signedBody(event, { secret: "whsec_other" }).signature)).toThrow(expect.objectContaining({ type: "BAD_REQUEST" }));
	expect(bad(body, signedBody(event, { timestamp: Math.floor(Date.now() / 1000) - 301 }).signature)).toThrow(expect.objectContaining({ type: "BAD_REQUEST" }));
	expect(bad(JSON.stringify(JSON.parse(body)), signature)).toThrow(expect.objectContaining({ type: "BAD_REQUEST" }));
	expect(bad(body, undefined)).toThrow(expect.objectContaining({ type: "BAD_REQUEST" }));
});

it("reads a raw body up to its cap; past it 413", async () => {
	expect((await readRawBody(Readable.from([Buffer.from("ab"), Buffer.from("c")]), 3)).toString()).toBe("abc");
	await expect(readRawBody(Readable.from([Buffer.from("ab"), Buffer.from("cd")]), 3)).rejects.toMatchObject({ type: "PAYLOAD_TOO_LARGE" });
	await expect(readRawBody(null, 3)).rejects.toMatchObject({ type: "BAD_REQUEST" });
	expect(formatAmount(12000, "usd")).toBe("USD 120.00");
	expect(formatAmount(500, "jpy")).toBe("JPY 500");
	expect(formatAmount(null, "usd")).toBeNull();
});

it("config: Stripe needs its webhook secret and the pro price", () => {
	expect(() => loadConfig({ NODE_ENV: "test", STRIPE_SECRET_KEY: "sk_test_x" })).toThrow(/STRIPE_WEBHOOK_SECRET/);
	expect(() => loadConfig({ NODE_ENV: "test", STRIPE_SECRET_KEY: "sk_test_x", STRIPE_WEBHOOK_SECRET: "whsec_x" })).toThrow(/STRIPE_PRICE_PRO/);
	expect(stripeClient(loadConfig({ NODE_ENV: "test" }))).toBeNull();
});
