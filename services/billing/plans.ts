/**
 * Plans, from config: `free` (the DEFAULT_PLAN_* limits, what every tenant without a
 * subscription has) and `pro`, sold per display and month. Pure: no I/O.
 */
import type { Config } from "../../shared/config";
import type { PlanLimitsView, PlanView } from "../../shared/contracts";

export type PlanLimits = PlanLimitsView;

export interface Plan {
	id: string;
	name: string;
	/** Per display and month, in the currency's major unit. */
	pricePerDisplayMonthly: number;
	/** Billed per paired display: the Stripe quantity follows the displays. */
	perDisplay: boolean;
	/** The Stripe price of the plan; null = cannot be bought through Checkout (free). */
	stripePriceId: string | null;
	/** For per-display plans `displays` is the cap of one subscription. */
	limits: PlanLimits;
}

export const FREE_PLAN_ID = "free";
export const PRO_PLAN_ID = "pro";

export function plansFrom(config: Pick<Config, "defaultPlan" | "billing">): Plan[] {
	const { defaultPlan, billing } = config;
	return [
		{ id: FREE_PLAN_ID, name: "Free", pricePerDisplayMonthly: 0, perDisplay: false, stripePriceId: null, limits: { ...defaultPlan } },
		{
			id: PRO_PLAN_ID,
			name: "Pro",
			pricePerDisplayMonthly: billing.pro.priceCents / 100,
			perDisplay: true,
			stripePriceId: billing.pro.stripePriceId,
			limits: { displays: billing.pro.maxDisplays, storageBytes: billing.pro.storageBytes, members: billing.pro.members }
		}
	];
}

export function findPlan(plans: readonly Plan[], id: string): Plan | null {
	return plans.find(plan => plan.id === id) ?? null;
}

export function freePlan(plans: readonly Plan[]): Plan {
	const free = findPlan(plans, FREE_PLAN_ID);
	if (!free) throw new Error("The free plan is missing");
	return free;
}

/** The plan whose Stripe price this is (a subscription item's price). */
export function planOfPrice(plans: readonly Plan[], priceId: string | null | undefined): Plan | null {
	if (!priceId) return null;
	return plans.find(plan => plan.stripePriceId === priceId) ?? null;
}

export function planView(plan: Plan): PlanView {
	const { id, name, pricePerDisplayMonthly, perDisplay, limits } = plan;
	return { id, name, pricePerDisplayMonthly, perDisplay, limits: { ...limits } };
}

/**
 * A plan's limits for a subscription of `quantity`. A per-display plan that Stripe bills follows
 * the paired displays (its quantity is raised as displays are paired), so its display limit is
 * the plan's cap; one set by an operator (no Stripe) licenses exactly `quantity` displays.
 */
export function limitsOf(plan: Plan, quantity: number, billedByStripe: boolean): PlanLimits {
	if (!plan.perDisplay || billedByStripe) return { ...plan.limits };
	return { ...plan.limits, displays: Math.min(plan.limits.displays, Math.max(0, quantity)) };
}
