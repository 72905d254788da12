/** Plans from config, their limits, and the subscription rules that pick the effective ones (pure). */
import { loadConfig } from "../../shared/config";
import { findPlan, limitsOf, planOfPrice, plansFrom, planView } from "../../services/billing/plans";
import { defaultSubscription, effectiveLimits, graceHasEnded, paymentFailed, paymentSucceeded, subscriptionExport, type SubscriptionDoc } from "../../services/billing/subscription";

const config = loadConfig({ NODE_ENV: "test", STRIPE_PRICE_PRO: "price_pro", BILLING_PRO_PRICE_CENTS: "2450" });
const plans = plansFrom(config);
const FREE = { displays: 3, storageBytes: 1024 * 1024 * 1024, members: 5 };

function doc(fields: Partial<SubscriptionDoc> = {}): SubscriptionDoc {
	return { ...defaultSubscription("t1"), id: "s1", createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-01T00:00:00.000Z", ...fields };
}

describe("plans", () => {
	it("free has the DEFAULT_PLAN_* limits; pro is per display with its price and Stripe price", () => {
		expect(planView(plans[0])).toEqual({ id: "free", name: "Free", pricePerDisplayMonthly: 0, perDisplay: false, limits: FREE });
		expect(planView(plans[1])).toMatchObject({ id: "pro", pricePerDisplayMonthly: 24.5, perDisplay: true, limits: { displays: 1000, members: 50 } });
		expect(planOfPrice(plans, "price_pro")?.id).toBe("pro");
		expect(planOfPrice(plans, "price_other")).toBeNull();
		expect(findPlan(plans, "gold")).toBeNull();
	});

	it("a per-display plan set by an operator licenses `quantity` displays; billed by Stripe it has its cap", () => {
		const pro = plans[1];
		expect(limitsOf(pro, 4, false).displays).toBe(4);
		expect(limitsOf(pro, 4, true).displays).toBe(1000);
		expect(limitsOf(plans[0], 9, false)).toEqual(FREE);
	});
});

describe("effective limits and dunning", () => {
	it("no document, a free plan, a cancelled or ended-grace subscription: free limits", () => {
		expect(effectiveLimits(null, plans)).toEqual(FREE);
		expect(effectiveLimits(doc({ plan: "pro", status: "canceled", stripeSubscriptionId: "sub" }), plans)).toEqual(FREE);
		expect(effectiveLimits(doc({ plan: "pro", status: "past_due", stripeSubscriptionId: "sub", graceEnded: true }), plans)).toEqual(FREE);
		expect(effectiveLimits(doc({ plan: "pro", status: "past_due", stripeSubscriptionId: "sub" }), plans).displays).toBe(1000);
		expect(effectiveLimits(doc({ plan: "gone", status: "active" }), plans)).toEqual(FREE);
	});

	it("a failed payment starts one grace period (retries do not extend it); a paid invoice ends it", () => {
		const now = new Date("2026-03-01T00:00:00.000Z");
		const failed = paymentFailed(doc({ plan: "pro", status: "active" }), now, 14);
		expect(failed).toMatchObject({ status: "past_due", pastDueSince: now.toISOString(), graceEndsAt: "2026-03-15T00:00:00.000Z", graceEnded: false });
		const inDunning = doc({ plan: "pro", status: "past_due", pastDueSince: now.toISOString(), graceEndsAt: "2026-03-15T00:00:00.000Z" });
		expect(paymentFailed(inDunning, new Date("2026-03-10T00:00:00.000Z"), 14)).toEqual({ status: "past_due" });
		expect(graceHasEnded(inDunning, new Date("2026-03-14T23:59:59.000Z"))).toBe(false);
		expect(graceHasEnded(inDunning, new Date("2026-03-15T00:00:00.000Z"))).toBe(true);
		expect(graceHasEnded({ ...inDunning, graceEnded: true }, new Date("2026-04-01T00:00:00.000Z"))).toBe(false);
		expect(paymentSucceeded({ ...inDunning, graceEnded: true })).toEqual({ status: "active", pastDueSince: null, graceEndsAt: null, graceEnded: false });
	});

	it("the export holds the subscription's state and Stripe ids, nothing else", () => {
		const exported = subscriptionExport(doc({ plan: "pro", stripeCustomerId: "cus_1", stripeSubscriptionId: "sub_1", stripeCreated: 5 }));
		expect(exported.subscription).toMatchObject({ plan: "pro", stripeCustomerId: "cus_1", stripeSubscriptionId: "sub_1" });
		expect(Object.keys(exported.subscription ?? {})).not.toContain("stripeCreated");
		expect(subscriptionExport(null)).toEqual({ subscription: null });
	});
});
