/**
 * A tenant's subscription document and what follows from it: the effective limits, the REST
 * view, the export, and the dunning steps (a failed payment starts a grace period; once it has
 * passed the tenant has the free plan's limits until a payment succeeds). Pure: no I/O.
 */
import type { Changes, TenantOwned } from "../../mixins/db.mixin";
import type { BillingExport, SubscriptionStatus, SubscriptionView } from "../../shared/contracts";
import { findPlan, freePlan, limitsOf, type Plan, type PlanLimits } from "./plans";

export interface SubscriptionDoc extends TenantOwned {
	/** The tenant id again, under a unique index: one subscription per tenant, even when two requests create it at once. */
	key: string;
	plan: string;
	status: SubscriptionStatus;
	quantity: number;
	currentPeriodEnd: string | null;
	cancelAtPeriodEnd: boolean;
	trialEnd: string | null;
	stripeCustomerId: string | null;
	stripeSubscriptionId: string | null;
	/** Stripe's `created` (seconds) of the newest event whose state was applied: older ones never roll it back. */
	stripeCreated: number | null;
	/** A payment failed at this instant and has not been paid since. */
	pastDueSince: string | null;
	/** Until then everything works; after it the dunning job limits the tenant to the free plan. */
	graceEndsAt: string | null;
	/** The dunning job has moved the tenant to the free plan's limits. */
	graceEnded: boolean;
}

/** A tenant that has never had a subscription document: the default (free) plan. */
export function defaultSubscription(tenantId: string): Omit<SubscriptionDoc, "id" | "createdAt" | "updatedAt"> {
	return {
		tenantId,
		key: tenantId,
		plan: "free",
		status: "none",
		quantity: 0,
		currentPeriodEnd: null,
		cancelAtPeriodEnd: false,
		trialEnd: null,
		stripeCustomerId: null,
		stripeSubscriptionId: null,
		stripeCreated: null,
		pastDueSince: null,
		graceEndsAt: null,
		graceEnded: false
	};
}

type SubscriptionState = Pick<SubscriptionDoc, "plan" | "status" | "quantity" | "stripeSubscriptionId" | "graceEnded">;

/** Statuses in which the paid plan's limits apply (past_due: during the grace period). */
const PAID_STATUSES: ReadonlySet<SubscriptionStatus> = new Set(["active", "trialing", "past_due", "none"]);

/** The plan a subscription gives right now: its own while it is paid for (or in grace), else free. */
export function effectivePlan(sub: SubscriptionState | null, plans: readonly Plan[]): Plan {
	if (!sub || sub.graceEnded || !PAID_STATUSES.has(sub.status)) return freePlan(plans);
	return findPlan(plans, sub.plan) ?? freePlan(plans);
}

export function effectiveLimits(sub: SubscriptionState | null, plans: readonly Plan[]): PlanLimits {
	const plan = effectivePlan(sub, plans);
	return limitsOf(plan, sub?.quantity ?? 0, Boolean(sub?.stripeSubscriptionId));
}

export function subscriptionView(sub: SubscriptionDoc | null, tenantId: string, plans: readonly Plan[], usage: PlanLimits): SubscriptionView {
	const doc = sub ?? { ...defaultSubscription(tenantId) };
	return {
		plan: doc.plan,
		status: doc.status,
		quantity: doc.quantity,
		currentPeriodEnd: doc.currentPeriodEnd,
		cancelAtPeriodEnd: doc.cancelAtPeriodEnd,
		trialEnd: doc.trialEnd,
		graceEndsAt: doc.graceEndsAt,
		usage,
		limits: effectiveLimits(sub, plans)
	};
}

/** The export: ids Stripe knows the tenant by, never keys or secrets. */
export function subscriptionExport(sub: SubscriptionDoc | null): BillingExport {
	if (!sub) return { subscription: null };
	const { plan, status, quantity, currentPeriodEnd, cancelAtPeriodEnd, trialEnd, pastDueSince, graceEndsAt, stripeCustomerId, stripeSubscriptionId, createdAt, updatedAt } = sub;
	return { subscription: { plan, status, quantity, currentPeriodEnd, cancelAtPeriodEnd, trialEnd, pastDueSince, graceEndsAt, stripeCustomerId, stripeSubscriptionId, createdAt, updatedAt } };
}

// ---- dunning ------------------------------------------------------------------------------------

const DAY_MS = 24 * 3600 * 1000;

/** A failed payment: starts the grace period unless one is already running (retries do not extend it). */
export function paymentFailed(sub: SubscriptionDoc, now: Date, graceDays: number): Changes<SubscriptionDoc> {
	if (sub.pastDueSince) return { status: sub.status === "active" || sub.status === "trialing" ? "past_due" : sub.status };
	return {
		status: sub.status === "active" || sub.status === "trialing" || sub.status === "none" ? "past_due" : sub.status,
		pastDueSince: now.toISOString(),
		graceEndsAt: new Date(now.getTime() + graceDays * DAY_MS).toISOString(),
		graceEnded: false
	};
}

/** A paid invoice ends dunning: the paid plan's limits are back. */
export function paymentSucceeded(sub: SubscriptionDoc): Changes<SubscriptionDoc> {
	return {
		status: sub.status === "past_due" || sub.status === "unpaid" ? "active" : sub.status,
		pastDueSince: null,
		graceEndsAt: null,
		graceEnded: false
	};
}

/** Whether the dunning job should move this tenant to the free plan's limits now. */
export function graceHasEnded(sub: Pick<SubscriptionDoc, "graceEndsAt" | "graceEnded">, now: Date): boolean {
	return !sub.graceEnded && sub.graceEndsAt !== null && Date.parse(sub.graceEndsAt) <= now.getTime();
}
