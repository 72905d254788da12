/**
 * Stripe objects → our subscription state, and the rules of the webhook: which events act, which
 * tenant one concerns, and when one is too old to apply. Pure: the service does the I/O.
 *
 * Out of order: Stripe does not deliver events in order. Each applied state remembers the
 * `created` of its event; an event older than that never rolls it back, and one of the same
 * second is ambiguous, so the service then fetches the current subscription from the API.
 */
import type Stripe from "stripe";
import type { Changes } from "../../mixins/db.mixin";
import type { SubscriptionStatus } from "../../shared/contracts";
import { planOfPrice, findPlan, type Plan } from "./plans";
import type { SubscriptionDoc } from "./subscription";

export const HANDLED_EVENTS = [
	"checkout.session.completed",
	"customer.subscription.created",
	"customer.subscription.updated",
	"customer.subscription.deleted",
	"customer.subscription.trial_will_end",
	"invoice.paid",
	"invoice.payment_failed"
] as const;
export type HandledEvent = (typeof HANDLED_EVENTS)[number];

export function isHandled(type: string): type is HandledEvent {
	return (HANDLED_EVENTS as readonly string[]).includes(type);
}

/** Stripe's field holding an id or the expanded object. */
export function idOf(value: string | { id: string } | null | undefined): string | null {
	if (!value) return null;
	return typeof value === "string" ? value : value.id;
}

function instant(seconds: number | null | undefined): string | null {
	return typeof seconds === "number" && seconds > 0 ? new Date(seconds * 1000).toISOString() : null;
}

const STATUSES: Record<Stripe.Subscription.Status, SubscriptionStatus> = {
	active: "active",
	trialing: "trialing",
	past_due: "past_due",
	unpaid: "unpaid",
	canceled: "canceled",
	incomplete: "incomplete",
	incomplete_expired: "incomplete_expired",
	paused: "paused"
};

/** The tenant a subscription belongs to: checkout puts it in the subscription's metadata. */
export function tenantOfSubscription(sub: Stripe.Subscription): string | null {
	return sub.metadata?.tenantId || null;
}

/**
 * The state a Stripe subscription gives: the plan of its price (or the one checkout named), its
 * quantity, period end (on the item since API 2025-03), cancellation and trial.
 */
export function subscriptionChanges(sub: Stripe.Subscription, plans: readonly Plan[], current: Pick<SubscriptionDoc, "plan">): Changes<SubscriptionDoc> {
	const item = sub.items?.data?.[0];
	const plan = planOfPrice(plans, item?.price?.id) ?? findPlan(plans, sub.metadata?.planId ?? "") ?? findPlan(plans, current.plan);
	return {
		plan: plan?.id ?? current.plan,
		status: STATUSES[sub.status] ?? "incomplete",
		quantity: item?.quantity ?? 1,
		currentPeriodEnd: instant(item?.current_period_end),
		cancelAtPeriodEnd: Boolean(sub.cancel_at_period_end),
		trialEnd: instant(sub.trial_end),
		stripeSubscriptionId: sub.id,
		stripeCustomerId: idOf(sub.customer)
	};
}

/** How an event's time compares with the state already applied. */
export function eventAge(stored: Pick<SubscriptionDoc, "stripeCreated">, created: number): "newer" | "same" | "older" {
	if (stored.stripeCreated === null || created > stored.stripeCreated) return "newer";
	return created === stored.stripeCreated ? "same" : "older";
}

/** The subscription an invoice bills (API 2025-03+: under `parent.subscription_details`). */
export function subscriptionOfInvoice(invoice: Stripe.Invoice): string | null {
	return idOf(invoice.parent?.subscription_details?.subscription ?? null);
}

/** The fields of a state change worth telling integrators (subscription.updated). */
export function changedFields(before: Partial<SubscriptionDoc>, changes: Changes<SubscriptionDoc>): string[] {
	const fields: string[] = [];
	for (const [key, value] of Object.entries(changes)) {
		if (key === "stripeCreated") continue;
		if ((before as Record<string, unknown>)[key] !== value) fields.push(key);
	}
	return fields;
}
