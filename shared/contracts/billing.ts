/**
 * billing: plans from config, each tenant's subscription (Stripe when configured, else the
 * default plan or one an operator sets), the limits shared/quota.ts enforces (`billing.planLimits`),
 * Stripe checkout, portal and webhooks, dunning.
 */
import { Type, type Static } from "@sinclair/typebox";
import type { QuotaResource } from "../quota";
import { Id, Instant, Nullable, PageOf, type ExportParams, type NoParams, type PageParams } from "./views";

export const PlanLimitsView = Type.Object({
	displays: Type.Integer({ minimum: 0 }),
	storageBytes: Type.Integer({ minimum: 0 }),
	members: Type.Integer({ minimum: 0 })
});
export type PlanLimitsView = Static<typeof PlanLimitsView>;

/** GET /billing/plans row. `perDisplay`: billed per paired display (limits.displays is then the plan's cap). */
export const PlanView = Type.Object({
	id: Type.String(),
	name: Type.String(),
	/** Per display and month, in the currency's major unit (0 for free). */
	pricePerDisplayMonthly: Type.Number({ minimum: 0 }),
	perDisplay: Type.Boolean(),
	limits: PlanLimitsView
});
export type PlanView = Static<typeof PlanView>;
/** GET /billing/plans, in the list convention like every list of the API. */
export const PlanPage = PageOf(PlanView);
export type PlanPage = Static<typeof PlanPage>;

export const SUBSCRIPTION_STATUSES = ["none", "active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];
export const SubscriptionStatusSchema = Type.Union(SUBSCRIPTION_STATUSES.map(s => Type.Literal(s)));

/** GET /billing/subscription. `limits` are the effective ones (free limits once a failed payment's grace has ended). */
export const SubscriptionView = Type.Object({
	plan: Type.String(),
	status: SubscriptionStatusSchema,
	quantity: Type.Integer({ minimum: 0 }),
	currentPeriodEnd: Nullable(Instant),
	cancelAtPeriodEnd: Type.Boolean(),
	trialEnd: Nullable(Instant),
	/** Set while a failed payment is being retried: until then everything works. */
	graceEndsAt: Nullable(Instant),
	usage: PlanLimitsView,
	limits: PlanLimitsView
});
export type SubscriptionView = Static<typeof SubscriptionView>;

/** POST /billing/checkout and POST /billing/portal: where to send the owner. */
export const RedirectUrl = Type.Object({ url: Type.String() });
export type RedirectUrl = Static<typeof RedirectUrl>;

/** POST /billing/stripe/webhook. */
export const WebhookReceived = Type.Object({ received: Type.Boolean(), duplicate: Type.Optional(Type.Boolean()) });
export type WebhookReceived = Static<typeof WebhookReceived>;

/** billing's part of the GDPR export: the subscription without Stripe secrets (ids only). */
export const BillingExport = Type.Object({
	subscription: Nullable(
		Type.Object({
			plan: Type.String(),
			status: SubscriptionStatusSchema,
			quantity: Type.Integer(),
			currentPeriodEnd: Nullable(Instant),
			cancelAtPeriodEnd: Type.Boolean(),
			trialEnd: Nullable(Instant),
			pastDueSince: Nullable(Instant),
			graceEndsAt: Nullable(Instant),
			stripeCustomerId: Nullable(Type.String()),
			stripeSubscriptionId: Nullable(Type.String()),
			createdAt: Instant,
			updatedAt: Instant
		})
	)
});
export type BillingExport = Static<typeof BillingExport>;

/** billing.setPlan (the operator command): the tenant's subscription after the change. */
export const PlanSet = Type.Object({ tenantId: Id, plan: Type.String(), quantity: Type.Integer(), limits: PlanLimitsView });
export type PlanSet = Static<typeof PlanSet>;

export interface BillingActions {
	/** The tenant's effective limits (shared/quota.ts planLimit); every resource is present. */
	"billing.planLimits": { params: { tenantId: string }; result: Partial<Record<QuotaResource, number>> };
	"billing.exportTenantData": { params: ExportParams; result: BillingExport };
	/** Internal (operator command `npm run admin -- set-plan`): no REST route. */
	"billing.setPlan": { params: { tenantId: string; plan: string; quantity?: number }; result: PlanSet };

	// REST (the gateway's).
	"billing.plans": { params: PageParams; result: PlanPage };
	"billing.subscription": { params: NoParams; result: SubscriptionView };
	"billing.checkout": { params: { planId: string; quantity: number }; result: RedirectUrl };
	"billing.portal": { params: NoParams; result: RedirectUrl };
	/** The raw body arrives as `ctx.stream`; `Stripe-Signature` through the forwarded headers. */
	"billing.stripeWebhook": { params: NoParams; result: WebhookReceived };
}
