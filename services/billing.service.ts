/**
 * Billing: plans (from config), each tenant's subscription and the limits it gives
 * (`billing.planLimits`, which shared/quota.ts asks before every pairing, upload and invitation),
 * Stripe Checkout and the customer portal, Stripe webhooks, and dunning.
 *
 * Usage is not kept here: devices, media and tenants keep atomic counters of what they own and
 * answer `<service>.quotaUsage`; billing only says what the limits are.
 *
 * Stripe is optional (STRIPE_SECRET_KEY). Without it every tenant is on the free plan unless an
 * operator sets another (`npm run admin -- set-plan`, the internal `billing.setPlan`), and
 * checkout and portal answer 503. With it, the webhook is the source of truth: each event is
 * verified on its raw bytes, stored under a unique index before it acts (a redelivery acts
 * once), and never rolls newer state back. A failed payment starts a grace period; the dunning
 * job moves tenants past it to the free plan's limits — nothing is ever deleted.
 *
 * Pure parts: services/billing/plans.ts, subscription.ts (document, limits, dunning steps),
 * stripe-events.ts (Stripe objects → state, ordering), stripe-client.ts (SDK, raw body, signature).
 */
import type { Readable } from "node:stream";
import { Context, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import type Stripe from "stripe";
import { ALL_TENANTS, DbMixin, globalCollection, systemScope, tenantCollection, tenantOf, type Changes, type DbVars, type Stored } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { getConfig, type Config } from "../shared/config";
import {
	call,
	PlanPage,
	publishEvent,
	RedirectUrl,
	SubscriptionView,
	WebhookReceived,
	type ActionCtx,
	type ChannelCtx,
	type EventCtx,
	type Result
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { newId } from "../shared/ids";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { PAGE_PARAMS, rawBodyRest, type RequestMeta } from "../shared/request";
import { findPlan, freePlan, planView, plansFrom, type Plan, type PlanLimits } from "./billing/plans";
import { changedFields, eventAge, idOf, isHandled, subscriptionChanges, tenantOfSubscription } from "./billing/stripe-events";
import { formatAmount, readRawBody, stripeClient, verifiedEvent } from "./billing/stripe-client";
import {
	defaultSubscription,
	effectiveLimits,
	graceHasEnded,
	paymentFailed,
	paymentSucceeded,
	subscriptionExport,
	subscriptionView,
	type SubscriptionDoc
} from "./billing/subscription";

/** A Stripe event id once it has been taken for processing (the unique index makes a redelivery a no-op). */
interface StripeEventDoc extends Stored {
	eventId: string;
	type: string;
	/** Stripe's `created`, seconds. */
	created: number;
	/** The tenant it concerned, once known (tenant deletion removes these too). */
	tenant: string | null;
}

const COLLECTIONS = {
	subscriptions: tenantCollection<SubscriptionDoc>({ uniqueIndexes: ["key"], selectiveIndexes: ["stripeCustomerId", "stripeSubscriptionId"], indexes: ["graceEndsAt"] }),
	stripe_events: globalCollection<StripeEventDoc>({ uniqueIndexes: ["eventId"], selectiveIndexes: ["tenant"] })
};

/** Subscriptions in these states are over: nothing follows the displays any more. */
const ENDED: ReadonlySet<SubscriptionDoc["status"]> = new Set(["canceled", "incomplete_expired"]);

interface BillingSettings extends ServiceSettingSchema {
	rest: string;
	dunningIntervalMs: number;
}

interface BillingVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	kv: KeyValueStore;
	plans: Plan[];
	stripe: Stripe | null;
	dunning: PeriodicJob | null;
}

interface BillingMethods {
	subscriptionOf(tenantId: string): Promise<SubscriptionDoc | null>;
	ensureSubscription(tenantId: string): Promise<SubscriptionDoc>;
	applyChanges(ctx: Context, sub: SubscriptionDoc, changes: Changes<SubscriptionDoc>, reason: string): Promise<SubscriptionDoc>;
	requireStripe(): Stripe;
	ensureCustomer(ctx: Context<unknown, RequestMeta>, sub: SubscriptionDoc): Promise<string>;
	usage(ctx: Context, tenantId: string): Promise<PlanLimits>;
	handleEvent(ctx: Context, event: Stripe.Event): Promise<string | null>;
	applySubscription(ctx: Context, event: Stripe.Event, object: Stripe.Subscription): Promise<string | null>;
	tenantOfCustomer(customerId: string | null): Promise<SubscriptionDoc | null>;
	syncQuantity(ctx: Context, tenantId: string): Promise<void>;
	dunningOnce(now?: Date): Promise<number>;
}

const BillingService: ServiceSchema<BillingSettings, BillingMethods, BillingVars> = {
	name: "billing",
	settings: {
		rest: "/",
		dunningIntervalMs: 60 * 60_000
	},
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		plans: {
			rest: "GET /billing/plans",
			permission: "tenant.read",
			summary: "The plans on sale, with their price per display and month and their limits",
			response: PlanPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"billing.plans">): Promise<Result<"billing.plans">> {
				const { page, pageSize } = ctx.params;
				const rows = this.plans.map(planView);
				return { rows: rows.slice((page - 1) * pageSize, page * pageSize), total: rows.length, page, pageSize, totalPages: Math.ceil(rows.length / pageSize) };
			}
		},

		subscription: {
			rest: "GET /billing/subscription",
			permission: "tenant.read",
			summary: "This tenant's plan, status, usage and effective limits",
			response: SubscriptionView,
			params: { $$strict: "remove" },
			async handler(ctx: ActionCtx<"billing.subscription", RequestMeta>): Promise<Result<"billing.subscription">> {
				const tenantId = tenantOf(ctx);
				const [sub, usage] = await Promise.all([this.subscriptionOf(tenantId), this.usage(ctx, tenantId)]);
				return subscriptionView(sub, tenantId, this.plans, usage);
			}
		},

		checkout: {
			rest: "POST /billing/checkout",
			permission: "billing.manage",
			summary: "A Stripe Checkout page (subscription mode, one unit per display) for a paid plan; 503 without payments",
			response: RedirectUrl,
			extraResponses: { 503: {} },
			params: {
				$$strict: "remove",
				planId: { type: "string", min: 1, max: 64 },
				quantity: { type: "number", integer: true, min: 1, max: 1_000_000 }
			},
			async handler(ctx: ActionCtx<"billing.checkout", RequestMeta>): Promise<Result<"billing.checkout">> {
				const stripe = this.requireStripe();
				const tenantId = tenantOf(ctx);
				const plan = findPlan(this.plans, ctx.params.planId);
				if (!plan?.stripePriceId) throw Errors.validation([{ field: "planId", message: "is not a plan that can be bought", type: "enum" }]);
				const sub = await this.ensureSubscription(tenantId);
				if (sub.stripeSubscriptionId && !ENDED.has(sub.status)) {
					throw Errors.conflict("This organisation already has a subscription: change it in the billing portal");
				}
				const customer = await this.ensureCustomer(ctx, sub);
				// Every paired display is billed: never fewer units than displays already paired.
				const displays = (await this.usage(ctx, tenantId)).displays;
				const quantity = Math.min(plan.limits.displays, Math.max(ctx.params.quantity, displays, 1));
				const session = await stripe.checkout.sessions.create({
					mode: "subscription",
					customer,
					client_reference_id: tenantId,
					line_items: [{ price: plan.stripePriceId, quantity }],
					metadata: { tenantId, planId: plan.id },
					subscription_data: { metadata: { tenantId, planId: plan.id } },
					success_url: `${this.config.appUrl}/billing?checkout=success`,
					cancel_url: `${this.config.appUrl}/billing?checkout=canceled`
				});
				if (!session.url) throw Errors.unavailable("Stripe answered no checkout page, retry");
				await audit(ctx, { action: "billing.checkout.started", target: tenantId, data: { plan: plan.id, quantity } });
				return { url: session.url };
			}
		},

		portal: {
			rest: "POST /billing/portal",
			permission: "billing.manage",
			summary: "A Stripe customer portal page (payment methods, invoices, cancellation); 503 without payments",
			response: RedirectUrl,
			extraResponses: { 503: {} },
			params: { $$strict: "remove" },
			async handler(ctx: ActionCtx<"billing.portal", RequestMeta>): Promise<Result<"billing.portal">> {
				const stripe = this.requireStripe();
				const tenantId = tenantOf(ctx);
				const customer = await this.ensureCustomer(ctx, await this.ensureSubscription(tenantId));
				const session = await stripe.billingPortal.sessions.create({ customer, return_url: `${this.config.appUrl}/billing` });
				await audit(ctx, { action: "billing.portal.opened", target: tenantId });
				return { url: session.url };
			}
		},

		stripeWebhook: {
			// A raw stream alias: the body reaches the action unparsed, as the signature needs.
			rest: rawBodyRest("/billing/stripe/webhook"),
			permission: "public",
			summary: "Stripe's events, verified by their Stripe-Signature on the raw body; a redelivered event acts once",
			response: WebhookReceived,
			extraResponses: { 400: {}, 413: {}, 503: {} },
			// Stripe retries on its own schedule; a retry here would read a consumed stream.
			retryPolicy: { enabled: false },
			params: { $$strict: "remove" },
			async handler(ctx: ActionCtx<"billing.stripeWebhook", RequestMeta>): Promise<Result<"billing.stripeWebhook">> {
				const secret = this.config.stripe.webhookSecret;
				if (!this.stripe || !secret) throw Errors.unavailable("Payments are not configured on this platform (STRIPE_SECRET_KEY)");
				const raw = await readRawBody(ctx.stream as Readable | null, this.config.maxBodyBytes);
				const event = verifiedEvent(this.stripe, raw, ctx.meta.headers?.["stripe-signature"], secret);
				if (!isHandled(event.type)) return { received: true };
				// Taken before acting: a redelivery (or the same event racing itself) finds it and stops.
				let taken: StripeEventDoc;
				try {
					taken = await this.db.stripe_events.insertDoc({ eventId: event.id, type: event.type, created: event.created, tenant: null });
				} catch (err) {
					if ((err as { type?: unknown }).type === "CONFLICT") return { received: true, duplicate: true };
					throw err;
				}
				try {
					const tenantId = await this.handleEvent(ctx, event);
					if (tenantId) await this.db.stripe_events.updateWhere({ _id: taken.id }, { tenant: tenantId });
				} catch (err) {
					// Not acted on: give the id back so Stripe's retry of this delivery is processed.
					await this.db.stripe_events.removeDocs({ _id: taken.id });
					throw err;
				}
				return { received: true };
			}
		},

		// ---- for other services and operators --------------------------------------------------

		/** The tenant's effective limits (shared/quota.ts planLimit), every resource present. */
		planLimits: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"billing.planLimits">): Promise<Result<"billing.planLimits">> {
				return effectiveLimits(await this.subscriptionOf(ctx.params.tenantId), this.plans);
			}
		},

		/**
		 * The operator command (`npm run admin -- set-plan`): a plan for a tenant Stripe does not
		 * bill. A per-display plan set this way licenses `quantity` displays (default: its cap).
		 */
		setPlan: {
			visibility: "public",
			params: {
				tenantId: { type: "string", min: 1, max: 64 },
				plan: { type: "string", min: 1, max: 64 },
				quantity: { type: "number", integer: true, min: 0, max: 1_000_000, optional: true }
			},
			async handler(ctx: ActionCtx<"billing.setPlan">): Promise<Result<"billing.setPlan">> {
				const { tenantId } = ctx.params;
				const plan = findPlan(this.plans, ctx.params.plan);
				if (!plan) throw Errors.validation([{ field: "plan", message: `must be one of ${this.plans.map(p => p.id).join(", ")}`, type: "enum" }]);
				if (ctx.broker.registry.getActionEndpoints("tenants.find")?.hasAvailable() && !(await call(ctx, "tenants.find", { tenantId }))) {
					throw Errors.notFound("Tenant", tenantId);
				}
				const sub = await this.ensureSubscription(tenantId);
				if (sub.stripeSubscriptionId && !ENDED.has(sub.status)) {
					throw Errors.conflict("Stripe bills this tenant: change its plan in Stripe (or cancel the subscription first)");
				}
				const quantity = ctx.params.quantity ?? (plan.perDisplay ? plan.limits.displays : 0);
				const updated = await this.applyChanges(
					ctx,
					sub,
					{ ...paymentSucceeded(sub), plan: plan.id, quantity, status: plan.id === freePlan(this.plans).id ? "none" : "active", stripeSubscriptionId: null },
					"operator"
				);
				await audit(ctx, { tenantId, actor: { kind: "anonymous", id: null }, action: "billing.plan.set", target: tenantId, data: { plan: plan.id, quantity, by: "operator" } });
				return { tenantId, plan: updated.plan, quantity: updated.quantity, limits: effectiveLimits(updated, this.plans) };
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"billing.exportTenantData">): Promise<Result<"billing.exportTenantData">> {
				return subscriptionExport(await this.subscriptionOf(ctx.params.tenantId));
			}
		}
	},

	events: {
		// Per-display plans bill every paired display: the Stripe quantity follows them.
		async "devices.display.paired"(ctx: EventCtx<"devices.display.paired">) {
			await this.syncQuantity(ctx, ctx.params.tenantId).catch(err => this.logger.warn("Subscription quantity not updated", err));
		},
		async "devices.display.deleted"(ctx: EventCtx<"devices.display.deleted">) {
			await this.syncQuantity(ctx, ctx.params.tenantId).catch(err => this.logger.warn("Subscription quantity not updated", err));
		}
	},

	channels: {
		/**
		 * A deleted tenant's subscription is cancelled at the end of the period it paid for (no
		 * refund logic here; the portal or Stripe's dashboard can do better), then its billing
		 * documents go. A Stripe failure throws: the channel redelivers and the cancel is retried.
		 */
		"tenants.tenant.deleted": {
			group: "billing",
			async handler(ctx: ChannelCtx<"tenants.tenant.deleted">) {
				const { tenantId } = ctx.params;
				const sub = await this.subscriptionOf(tenantId);
				if (this.stripe && sub?.stripeSubscriptionId && !ENDED.has(sub.status) && !sub.cancelAtPeriodEnd) {
					await this.stripe.subscriptions.update(sub.stripeSubscriptionId, { cancel_at_period_end: true }, { idempotencyKey: `cancel-${tenantId}` });
				}
				await Promise.all([this.db.subscriptions.removeDocs(systemScope(tenantId), {}), this.db.stripe_events.removeDocs({ tenant: tenantId })]);
			}
		}
	},

	methods: {
		subscriptionOf(tenantId: string): Promise<SubscriptionDoc | null> {
			return this.db.subscriptions.findDoc(systemScope(tenantId), {});
		},

		/** The tenant's document, created on first need (two at once: the unique key keeps one). */
		async ensureSubscription(tenantId: string): Promise<SubscriptionDoc> {
			const found = await this.subscriptionOf(tenantId);
			if (found) return found;
			const { tenantId: _owner, ...fields } = defaultSubscription(tenantId);
			try {
				return await this.db.subscriptions.insertDoc(systemScope(tenantId), fields);
			} catch (err) {
				if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
				const winner = await this.subscriptionOf(tenantId);
				if (!winner) throw err;
				return winner;
			}
		},

		/** Writes a change; a change integrators can see is published as `subscription.updated`. */
		async applyChanges(ctx: Context, sub: SubscriptionDoc, changes: Changes<SubscriptionDoc>, reason: string): Promise<SubscriptionDoc> {
			const changed = changedFields(sub, changes);
			const updated = await this.db.subscriptions.updateDoc(systemScope(sub.tenantId), sub.id, changes, "Subscription");
			if (changed.length === 0) return updated;
			const limits = effectiveLimits(updated, this.plans);
			await publishEvent(ctx.broker, sub.tenantId, "subscription.updated", {
				plan: updated.plan,
				status: updated.status,
				quantity: updated.quantity,
				currentPeriodEnd: updated.currentPeriodEnd,
				cancelAtPeriodEnd: updated.cancelAtPeriodEnd,
				trialEnd: updated.trialEnd,
				graceEndsAt: updated.graceEndsAt,
				limits,
				changed,
				reason
			});
			return updated;
		},

		requireStripe(): Stripe {
			if (!this.stripe) throw Errors.unavailable("Payments are not configured on this platform: an operator sets plans with `npm run admin -- set-plan`");
			return this.stripe;
		},

		/** The tenant's Stripe customer, created once (an idempotency key makes two racing requests one customer). */
		async ensureCustomer(ctx: Context<unknown, RequestMeta>, sub: SubscriptionDoc): Promise<string> {
			if (sub.stripeCustomerId) return sub.stripeCustomerId;
			const stripe = this.requireStripe();
			const tenant = await call(ctx, "tenants.find", { tenantId: sub.tenantId });
			const customer = await stripe.customers.create(
				{ name: tenant?.name ?? sub.tenantId, metadata: { tenantId: sub.tenantId } },
				{ idempotencyKey: `customer-${sub.tenantId}` }
			);
			await this.db.subscriptions.updateWhere(systemScope(sub.tenantId), { _id: sub.id }, { stripeCustomerId: customer.id });
			return customer.id;
		},

		/** Usage as the owning services' counters hold it (no scan). */
		async usage(ctx: Context, tenantId: string): Promise<PlanLimits> {
			const [displays, storageBytes, members] = await Promise.all([
				call(ctx, "devices.quotaUsage", { tenantId }),
				call(ctx, "media.quotaUsage", { tenantId }),
				call(ctx, "tenants.quotaUsage", { tenantId })
			]);
			return { displays, storageBytes, members };
		},

		/** Acts on one verified, first-seen event; answers the tenant it concerned. */
		async handleEvent(ctx: Context, event: Stripe.Event): Promise<string | null> {
			switch (event.type) {
				case "checkout.session.completed": {
					const session = event.data.object;
					const tenantId = session.client_reference_id ?? session.metadata?.tenantId ?? null;
					const subscriptionId = idOf(session.subscription);
					if (!tenantId || session.mode !== "subscription" || !subscriptionId) return tenantId;
					const sub = await this.ensureSubscription(tenantId);
					if (!sub.stripeCustomerId && session.customer) {
						await this.db.subscriptions.updateWhere(systemScope(tenantId), { _id: sub.id }, { stripeCustomerId: idOf(session.customer) });
					}
					// The session carries no subscription state: the current one comes from the API.
					const current = await this.requireStripe().subscriptions.retrieve(subscriptionId);
					await this.applySubscription(ctx, event, current);
					await audit(ctx, { tenantId, actor: { kind: "anonymous", id: null }, action: "billing.checkout.completed", target: subscriptionId, data: { stripeEventId: event.id } });
					return tenantId;
				}
				case "customer.subscription.created":
				case "customer.subscription.updated":
				case "customer.subscription.deleted":
					return this.applySubscription(ctx, event, event.data.object);
				case "customer.subscription.trial_will_end": {
					const object = event.data.object;
					const tenantId = await this.applySubscription(ctx, event, object);
					if (tenantId) {
						await publishEvent(ctx.broker, tenantId, "subscription.updated", {
							reason: "trial_will_end",
							trialEnd: object.trial_end ? new Date(object.trial_end * 1000).toISOString() : null
						});
					}
					return tenantId;
				}
				case "invoice.paid": {
					const invoice = event.data.object;
					const sub = await this.tenantOfCustomer(idOf(invoice.customer));
					if (!sub) return null;
					if (sub.pastDueSince || sub.graceEnded || sub.status === "past_due" || sub.status === "unpaid") {
						await this.applyChanges(ctx, sub, paymentSucceeded(sub), "payment_succeeded");
						await audit(ctx, { tenantId: sub.tenantId, actor: { kind: "anonymous", id: null }, action: "billing.payment.succeeded", target: invoice.id ?? null, data: { stripeEventId: event.id } });
					}
					return sub.tenantId;
				}
				case "invoice.payment_failed": {
					const invoice = event.data.object;
					const sub = await this.tenantOfCustomer(idOf(invoice.customer));
					if (!sub) return null;
					const updated = await this.applyChanges(ctx, sub, paymentFailed(sub, new Date(), this.config.billing.graceDays), "payment_failed");
					const amountDue = formatAmount(invoice.amount_due, invoice.currency);
					await publishEvent(ctx.broker, sub.tenantId, "payment.failed", {
						invoiceId: invoice.id ?? null,
						...(amountDue ? { amountDue } : {}),
						attemptCount: invoice.attempt_count,
						graceEndsAt: updated.graceEndsAt,
						graceEnded: false
					});
					await audit(ctx, {
						tenantId: sub.tenantId,
						actor: { kind: "anonymous", id: null },
						action: "billing.payment.failed",
						target: invoice.id ?? null,
						data: { stripeEventId: event.id, graceEndsAt: updated.graceEndsAt }
					});
					return sub.tenantId;
				}
				default:
					return null;
			}
		},

		/**
		 * A subscription's state from an event, unless newer state is stored: an older event is
		 * ignored, one of the same second is settled by the API's current subscription.
		 */
		async applySubscription(ctx: Context, event: Stripe.Event, object: Stripe.Subscription): Promise<string | null> {
			let tenantId = tenantOfSubscription(object);
			if (!tenantId) {
				const known =
					(await this.db.subscriptions.findDoc(ALL_TENANTS, { stripeSubscriptionId: object.id })) ?? (await this.tenantOfCustomer(idOf(object.customer)));
				tenantId = known?.tenantId ?? null;
			}
			if (!tenantId) {
				this.logger.warn(`Stripe subscription ${object.id} names no tenant; ignored`);
				return null;
			}
			const sub = await this.ensureSubscription(tenantId);
			// Another subscription of the same customer (an old, cancelled one) does not replace the live one.
			if (sub.stripeSubscriptionId && sub.stripeSubscriptionId !== object.id && !ENDED.has(sub.status) && object.status === "canceled") return tenantId;
			const age = eventAge(sub, event.created);
			let state = object;
			if (age === "older") return tenantId;
			if (age === "same") state = await this.requireStripe().subscriptions.retrieve(object.id);
			const changes = { ...subscriptionChanges(state, this.plans, sub), stripeCreated: Math.max(sub.stripeCreated ?? 0, event.created) };
			const updated = await this.applyChanges(ctx, sub, changes, event.type);
			if (updated.plan !== sub.plan || updated.status !== sub.status || updated.quantity !== sub.quantity) {
				await audit(ctx, {
					tenantId,
					actor: { kind: "anonymous", id: null },
					action: "billing.subscription.updated",
					target: object.id,
					data: { stripeEventId: event.id, plan: updated.plan, status: updated.status, quantity: updated.quantity }
				});
			}
			return tenantId;
		},

		tenantOfCustomer(customerId: string | null): Promise<SubscriptionDoc | null> {
			if (!customerId) return Promise.resolve(null);
			return this.db.subscriptions.findDoc(ALL_TENANTS, { stripeCustomerId: customerId });
		},

		/** A per-display Stripe subscription bills max(1, paired displays), prorated. */
		async syncQuantity(ctx: Context, tenantId: string): Promise<void> {
			if (!this.stripe) return;
			const sub = await this.subscriptionOf(tenantId);
			if (!sub?.stripeSubscriptionId || ENDED.has(sub.status)) return;
			const plan = findPlan(this.plans, sub.plan);
			if (!plan?.perDisplay) return;
			const displays = await call(ctx, "devices.quotaUsage", { tenantId });
			const quantity = Math.max(1, Math.min(displays, plan.limits.displays));
			if (quantity === sub.quantity) return;
			const current = await this.stripe.subscriptions.retrieve(sub.stripeSubscriptionId);
			const item = current.items.data[0];
			if (!item || item.quantity === quantity) return;
			const updated = await this.stripe.subscriptions.update(sub.stripeSubscriptionId, {
				items: [{ id: item.id, quantity }],
				proration_behavior: "create_prorations"
			});
			// The state Stripe answered; its own event follows and is newer than anything stored.
			await this.applyChanges(ctx, sub, { quantity: updated.items.data[0]?.quantity ?? quantity }, "displays_changed");
			await audit(ctx, { tenantId, actor: { kind: "anonymous", id: null }, action: "billing.quantity.updated", target: sub.stripeSubscriptionId, data: { quantity, displays } });
		},

		/**
		 * The dunning job's step: tenants whose grace period has passed get the free plan's limits
		 * (nothing is deleted: displays above the limit keep playing, new ones answer 402) and
		 * their admins are told with `payment.failed` `{graceEnded: true}`; integrators also get
		 * `subscription.updated` with the new limits. Answers how many tenants it moved.
		 */
		async dunningOnce(now = new Date()): Promise<number> {
			const due = await this.db.subscriptions.findDocs(ALL_TENANTS, { graceEnded: false, graceEndsAt: { $lte: now.toISOString() } });
			let moved = 0;
			for (const sub of due) {
				if (!graceHasEnded(sub, now)) continue;
				// One replica wins each tenant.
				const won = await this.db.subscriptions.updateWhere(systemScope(sub.tenantId), { _id: sub.id, graceEnded: false }, { graceEnded: true });
				if (won !== 1) continue;
				moved++;
				const ctx = Context.create(this.broker);
				const updated = { ...sub, graceEnded: true };
				const limits = effectiveLimits(updated, this.plans);
				await publishEvent(this.broker, sub.tenantId, "payment.failed", { graceEnded: true, graceEndsAt: sub.graceEndsAt, limits });
				await publishEvent(this.broker, sub.tenantId, "subscription.updated", {
					plan: sub.plan,
					status: sub.status,
					quantity: sub.quantity,
					graceEndsAt: sub.graceEndsAt,
					limits,
					changed: ["limits"],
					reason: "grace_ended"
				});
				await audit(ctx, { tenantId: sub.tenantId, actor: { kind: "anonymous", id: null }, action: "billing.grace.ended", target: sub.id, data: { graceEndsAt: sub.graceEndsAt, limits } });
			}
			return moved;
		}
	},

	created() {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.plans = plansFrom(this.config);
		this.stripe = stripeClient(this.config);
		this.dunning = null;
	},

	async started() {
		this.dunning = startPeriodicJob({
			name: "billing-dunning",
			intervalMs: this.settings.dunningIntervalMs,
			kv: this.kv,
			owner: `${this.broker.nodeID}:${newId()}`,
			run: async () => void (await this.dunningOnce()),
			onError: err => this.logger.error("Dunning run failed", err)
		});
	},

	async stopped() {
		await this.dunning?.stop();
	}
};

export default BillingService;
