/**
 * notifications: email through a durable outbox, in-app notifications with email preferences,
 * alert rules, and signed webhooks with retries and a delivery log.
 *
 * - Email. Other services publish on the durable channel `notifications.email`; the message is
 *   stored in the outbox before the channel is acknowledged, so neither this service nor the mail
 *   server being down loses it. A leased worker sends it (SMTP when SMTP_URL is set, .eml files
 *   under DATA_DIR/mail otherwise) and retries on EMAIL_RETRY_SCHEDULE (services/notifications/outbox.ts).
 * - Events. Services publish facts integrators subscribe to on the durable channel
 *   `notifications.event`; each is stored and fanned out to the tenant's webhook endpoints
 *   (webhooks.ts), and the ones about the tenant's health reach its admins (alerts.ts).
 * - Alerts. `devices.display.wentOffline` / `cameOnline` start and end watching a display; a
 *   periodic job (one node of the cluster) alerts the due ones (alerts.ts).
 * - In-app notifications and email preferences are per person (inbox.ts).
 *
 * Logs name templates, recipients and endpoints, never links (they carry tokens) nor secrets.
 * Metrics (shared/ops-metrics.ts): webhook attempts by outcome, and the outbox's unsent emails.
 */
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, systemScope, tenantOf, type DbVars } from "../mixins/db.mixin";
import { EMAIL_CHANNEL, EVENT_CHANNEL, TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	Accepted,
	ALERT_TYPES,
	call,
	DeliveryPage,
	DELIVERY_STATUSES,
	EMAIL_STATUSES,
	EmailLogPage,
	NotificationPage,
	NotificationPreferences,
	ReplayAccepted,
	WebhookEndpointPage,
	WebhookEndpointView,
	WebhookEndpointWithSecret,
	WEBHOOK_EVENT_TYPES,
	type ActionCtx,
	type ChannelCtx,
	type EventCtx,
	type Result
} from "../shared/contracts";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { audit } from "../shared/audit";
import { AppError } from "../shared/errors";
import { opsCounter, opsGauge, OPS_METRICS } from "../shared/ops-metrics";
import { ISO_INSTANT_RULE, PAGE_PARAMS, userCallerOf, type RequestMeta } from "../shared/request";
import { AlertRules } from "./notifications/alerts";
import { COLLECTIONS } from "./notifications/documents";
import { Inbox } from "./notifications/inbox";
import { createMailer, type Mailer } from "./notifications/mailer";
import { EmailOutbox } from "./notifications/outbox";
import { displayUrl } from "../shared/ssrf";
import { Webhooks } from "./notifications/webhooks";

interface NotificationsSettings extends ServiceSettingSchema {
	rest: string;
}

interface NotificationsVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	kv: KeyValueStore;
	/** Set in started(), closed in stopped(). */
	mailer: Mailer | null;
	outbox: EmailOutbox;
	inbox: Inbox;
	alerts: AlertRules;
	webhooks: Webhooks;
	alertJob: PeriodicJob | null;
}

type NotificationsMethods = Record<string, never>;

type Ctx<N extends Parameters<typeof call>[1]> = ActionCtx<N, RequestMeta>;

const URL_RULE = { type: "string", trim: true, min: 8, max: 2048 } as const;
const EVENTS_RULE = { type: "array", min: 1, max: WEBHOOK_EVENT_TYPES.length, unique: true, items: { type: "enum", values: [...WEBHOOK_EVENT_TYPES] } } as const;
const DESCRIPTION_RULE = { type: "string", trim: true, max: 500, optional: true, nullable: true } as const;

const NotificationsService: ServiceSchema<NotificationsSettings, NotificationsMethods, NotificationsVars> = {
	name: "notifications",
	settings: { rest: "/" },
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- in-app notifications and preferences (the caller's own) ----------------------------

		list: {
			rest: "GET /notifications",
			permission: "self",
			summary: "Your notifications, newest first (?unread=true: unread only)",
			params: { $$strict: "remove", ...PAGE_PARAMS, unread: { type: "boolean", convert: true, optional: true } },
			response: NotificationPage,
			handler(ctx: Ctx<"notifications.list">): Promise<Result<"notifications.list">> {
				const { tenantId, userId } = userCallerOf(ctx.meta);
				return this.inbox.list(systemScope(tenantId), userId, ctx.params.page, ctx.params.pageSize, ctx.params.unread);
			}
		},

		markRead: {
			rest: "POST /notifications/:id/read",
			permission: "self",
			summary: "Mark one of your notifications read",
			params: { $$strict: "remove", id: ID_RULE },
			successStatus: 204,
			response: null,
			async handler(ctx: Ctx<"notifications.markRead">): Promise<null> {
				const { tenantId, userId } = userCallerOf(ctx.meta);
				await this.inbox.markRead(systemScope(tenantId), userId, ctx.params.id);
				return null;
			}
		},

		markAllRead: {
			rest: "POST /notifications/read-all",
			permission: "self",
			summary: "Mark all your notifications read",
			params: { $$strict: "remove" },
			successStatus: 204,
			response: null,
			async handler(ctx: Ctx<"notifications.markAllRead">): Promise<null> {
				const { tenantId, userId } = userCallerOf(ctx.meta);
				await this.inbox.markAllRead(systemScope(tenantId), userId);
				return null;
			}
		},

		preferences: {
			rest: "GET /notifications/preferences",
			permission: "self",
			summary: "Which alerts reach you by email",
			params: { $$strict: "remove" },
			response: NotificationPreferences,
			handler(ctx: Ctx<"notifications.preferences">): Promise<Result<"notifications.preferences">> {
				const { tenantId, userId } = userCallerOf(ctx.meta);
				return this.inbox.preferences(systemScope(tenantId), userId);
			}
		},

		updatePreferences: {
			rest: "PATCH /notifications/preferences",
			permission: "self",
			summary: "Choose which alerts reach you by email",
			params: {
				$$strict: "remove",
				// A record, not an object with props: the alert types have dots, which the validator
				// reads as paths. Unknown alert types are stripped below, like unknown fields anywhere.
				email: { type: "record", key: { type: "string", max: 64 }, value: { type: "boolean" } }
			},
			response: NotificationPreferences,
			async handler(ctx: Ctx<"notifications.updatePreferences">): Promise<Result<"notifications.updatePreferences">> {
				const { tenantId, userId } = userCallerOf(ctx.meta);
				const known = Object.entries(ctx.params.email).filter(([type]) => (ALERT_TYPES as readonly string[]).includes(type));
				return this.inbox.updatePreferences(systemScope(tenantId), userId, Object.fromEntries(known));
			}
		},

		// ---- the tenant's email log ---------------------------------------------------------------

		emails: {
			rest: "GET /notifications/emails",
			permission: "webhooks.manage",
			summary: "Emails sent to the tenant's people: queued, sent, or failed with the reason",
			params: { $$strict: "remove", ...PAGE_PARAMS, status: { type: "enum", values: [...EMAIL_STATUSES], optional: true } },
			response: EmailLogPage,
			handler(ctx: Ctx<"notifications.emails">): Promise<Result<"notifications.emails">> {
				return this.outbox.log(tenantOf(ctx), ctx.params.page, ctx.params.pageSize, ctx.params.status);
			}
		},

		// ---- webhooks -----------------------------------------------------------------------------

		createWebhook: {
			rest: "POST /webhooks",
			permission: "webhooks.manage",
			summary: "Add a webhook endpoint (at most 20 per tenant: 409 beyond); its signing secret is shown only in this answer",
			params: { $$strict: "remove", url: URL_RULE, events: EVENTS_RULE, description: DESCRIPTION_RULE },
			successStatus: 201,
			response: WebhookEndpointWithSecret,
			async handler(ctx: Ctx<"notifications.createWebhook">): Promise<Result<"notifications.createWebhook">> {
				const endpoint = await this.webhooks.create(ctx, ctx.params);
				// The URL without credentials it may carry (user:pass@): audit records hold no secrets.
				await audit(ctx, { action: "webhook.created", target: endpoint.id, data: { url: displayUrl(endpoint.url), events: endpoint.events } });
				return endpoint;
			}
		},

		listWebhooks: {
			rest: "GET /webhooks",
			permission: "webhooks.manage",
			summary: "The tenant's webhook endpoints (without secrets)",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			response: WebhookEndpointPage,
			handler(ctx: Ctx<"notifications.listWebhooks">): Promise<Result<"notifications.listWebhooks">> {
				return this.webhooks.list(ctx, ctx.params.page, ctx.params.pageSize);
			}
		},

		getWebhook: {
			rest: "GET /webhooks/:id",
			permission: "webhooks.manage",
			summary: "One webhook endpoint",
			params: { $$strict: "remove", id: ID_RULE },
			response: WebhookEndpointView,
			handler(ctx: Ctx<"notifications.getWebhook">): Promise<Result<"notifications.getWebhook">> {
				return this.webhooks.get(ctx, ctx.params.id);
			}
		},

		updateWebhook: {
			rest: "PATCH /webhooks/:id",
			permission: "webhooks.manage",
			summary: "Change an endpoint's URL, events, description, or switch it on or off",
			params: {
				$$strict: "remove",
				id: ID_RULE,
				url: { ...URL_RULE, optional: true },
				events: { ...EVENTS_RULE, optional: true },
				description: DESCRIPTION_RULE,
				enabled: { type: "boolean", optional: true }
			},
			response: WebhookEndpointView,
			async handler(ctx: Ctx<"notifications.updateWebhook">): Promise<Result<"notifications.updateWebhook">> {
				const { id, ...changes } = ctx.params;
				const endpoint = await this.webhooks.update(ctx, id, changes);
				await audit(ctx, { action: "webhook.updated", target: id, data: { fields: Object.keys(changes) } });
				return endpoint;
			}
		},

		removeWebhook: {
			rest: "DELETE /webhooks/:id",
			permission: "webhooks.manage",
			summary: "Remove an endpoint and its delivery log",
			params: { $$strict: "remove", id: ID_RULE },
			successStatus: 204,
			response: null,
			async handler(ctx: Ctx<"notifications.removeWebhook">): Promise<null> {
				await this.webhooks.remove(ctx, ctx.params.id);
				await audit(ctx, { action: "webhook.deleted", target: ctx.params.id });
				return null;
			}
		},

		rotateWebhookSecret: {
			rest: "POST /webhooks/:id/rotate-secret",
			permission: "webhooks.manage",
			summary: "A new signing secret (shown only here); the old one keeps signing for 24 hours",
			params: { $$strict: "remove", id: ID_RULE },
			response: WebhookEndpointWithSecret,
			async handler(ctx: Ctx<"notifications.rotateWebhookSecret">): Promise<Result<"notifications.rotateWebhookSecret">> {
				const endpoint = await this.webhooks.rotateSecret(ctx, ctx.params.id);
				await audit(ctx, { action: "webhook.secretRotated", target: ctx.params.id });
				return endpoint;
			}
		},

		deliveries: {
			rest: "GET /webhooks/:id/deliveries",
			permission: "webhooks.manage",
			summary: "The endpoint's delivery log, newest first",
			params: { $$strict: "remove", ...PAGE_PARAMS, id: ID_RULE, status: { type: "enum", values: [...DELIVERY_STATUSES], optional: true } },
			response: DeliveryPage,
			handler(ctx: Ctx<"notifications.deliveries">): Promise<Result<"notifications.deliveries">> {
				return this.webhooks.deliveries(ctx, ctx.params.id, ctx.params.page, ctx.params.pageSize, ctx.params.status);
			}
		},

		testWebhook: {
			rest: "POST /webhooks/:id/test",
			permission: "webhooks.manage",
			summary: "Send the endpoint a test event; answers the delivery's id",
			params: { $$strict: "remove", id: ID_RULE },
			successStatus: 202,
			response: Accepted,
			handler(ctx: Ctx<"notifications.testWebhook">): Promise<Result<"notifications.testWebhook">> {
				return this.webhooks.test(ctx, ctx.params.id);
			}
		},

		retryDelivery: {
			rest: "POST /webhook-deliveries/:id/retry",
			permission: "webhooks.manage",
			summary: "Send a delivery again now",
			params: { $$strict: "remove", id: ID_RULE },
			successStatus: 202,
			response: Accepted,
			handler(ctx: Ctx<"notifications.retryDelivery">): Promise<Result<"notifications.retryDelivery">> {
				return this.webhooks.retry(ctx, ctx.params.id);
			}
		},

		replayWebhook: {
			rest: "POST /webhooks/:id/replay",
			permission: "webhooks.manage",
			summary: "Send the endpoint again every subscribed event since a time",
			params: { $$strict: "remove", id: ID_RULE, since: ISO_INSTANT_RULE },
			successStatus: 202,
			response: ReplayAccepted,
			async handler(ctx: Ctx<"notifications.replayWebhook">): Promise<Result<"notifications.replayWebhook">> {
				const answer = await this.webhooks.replay(ctx, ctx.params.id, ctx.params.since);
				await audit(ctx, { action: "webhook.replayed", target: ctx.params.id, data: { since: ctx.params.since, deliveries: answer.deliveries } });
				return answer;
			}
		},

		// ---- between services ---------------------------------------------------------------------

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"notifications.exportTenantData">): Promise<Result<"notifications.exportTenantData">> {
				const [inbox, webhooks] = await Promise.all([this.inbox.exportTenant(ctx.params.tenantId), this.webhooks.exportTenant(ctx.params.tenantId)]);
				return { ...inbox, ...webhooks };
			}
		}
	},

	events: {
		"devices.display.wentOffline": {
			group: "notifications",
			handler(ctx: EventCtx<"devices.display.wentOffline">) {
				return this.alerts.displayWentOffline(ctx.params);
			}
		},
		"devices.display.cameOnline": {
			group: "notifications",
			handler(ctx: EventCtx<"devices.display.cameOnline">) {
				return this.alerts.displayCameOnline(ctx.params);
			}
		},
		"devices.display.deleted": {
			group: "notifications",
			handler(ctx: EventCtx<"devices.display.deleted">) {
				return this.alerts.displayDeleted(ctx.params);
			}
		}
	},

	channels: {
		// Stored before the channel is acknowledged: a crash in between redelivers, and the
		// request id keeps a redelivered message one email.
		[EMAIL_CHANNEL]: {
			group: "notifications",
			async handler(ctx: ChannelCtx<typeof EMAIL_CHANNEL>) {
				try {
					await this.outbox.enqueue(ctx.params);
				} catch (err) {
					// A message that can never become a valid email (a bad address, broken data, an
					// unusable attachment) is dropped with a log line naming the bad fields (never their
					// values: links carry tokens, attachments are the tenant's data); redelivering it
					// forever would block nothing but waste work.
					if (!(err instanceof AppError) || err.type !== "VALIDATION_ERROR") throw err;
					const fields = Array.isArray(err.data) ? (err.data as Array<{ field?: unknown }>).map(f => String(f.field)).join(", ") : "";
					this.logger.warn(`Email "${ctx.params.template}" (${ctx.params.id}) refused and dropped: ${err.message}${fields ? ` (${fields})` : ""}`);
				}
			}
		},
		[EVENT_CHANNEL]: {
			group: "notifications",
			async handler(ctx: ChannelCtx<typeof EVENT_CHANNEL>) {
				await this.webhooks.record(ctx.params);
				await this.alerts.platformEvent(ctx.params);
			}
		},
		[TENANT_DELETED_CHANNEL]: {
			group: "notifications",
			async handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
				const { tenantId } = ctx.params;
				await Promise.all([
					this.outbox.removeTenant(tenantId),
					this.inbox.removeTenant(tenantId),
					this.alerts.removeTenant(tenantId),
					this.webhooks.removeTenant(tenantId)
				]);
				this.logger.info(`Tenant ${tenantId} deleted: its notifications, alerts, emails and webhooks are removed`);
			}
		}
	},

	created() {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.mailer = null;
		this.alertJob = null;
		const owner = `${this.broker.nodeID}:${newId()}`;
		const outboxDepth = opsGauge(this.broker.metrics, OPS_METRICS.emailOutboxDepth);
		const deliveries = opsCounter(this.broker.metrics, OPS_METRICS.webhookDeliveries);
		this.outbox = new EmailOutbox({
			emails: this.db.email_outbox,
			config: this.config,
			owner,
			mailer: () => this.mailer,
			logger: this.logger,
			onDepth: queued => outboxDepth.set(queued)
		});
		this.inbox = new Inbox({ notifications: this.db.notifications, preferences: this.db.notification_preferences });
		this.webhooks = new Webhooks({
			endpoints: this.db.webhook_endpoints,
			events: this.db.webhook_events,
			deliveries: this.db.webhook_deliveries,
			config: this.config,
			owner,
			logger: this.logger,
			// Alerts show the URL (in-app, email) without the credentials it may carry.
			onDisabled: (tenantId, endpoint, reason) => this.alerts.webhookDisabled(tenantId, displayUrl(endpoint.url), reason),
			onAttempt: outcome => deliveries.increment({ outcome })
		});
		this.alerts = new AlertRules({
			states: this.db.alert_states,
			inbox: this.inbox,
			config: this.config,
			admins: tenantId => call(this.broker, "tenants.admins", { tenantId }),
			tenant: tenantId => call(this.broker, "tenants.find", { tenantId }),
			sendEmail: request => this.outbox.enqueue(request),
			publish: event => this.webhooks.record(event),
			logger: this.logger
		});
	},

	async started() {
		const config = this.config;
		this.mailer = createMailer({ smtpUrl: config.smtpUrl, dataDir: config.dataDir, from: config.mailFrom });
		if (this.mailer.kind === "file" && config.nodeEnv === "production") {
			this.logger.warn(`SMTP_URL is not set: emails are written to ${this.mailer.description} instead of being sent.`);
		} else {
			this.logger.info(`Email goes to ${this.mailer.description}`);
		}
		this.outbox.start();
		this.webhooks.start();
		this.alertJob = startPeriodicJob({
			name: "notifications-alerts",
			intervalMs: config.notifications.pollMs,
			kv: this.kv,
			owner: `${this.broker.nodeID}:${newId()}`,
			run: () => this.alerts.sweep(),
			onError: err => this.logger.error("Alert sweep failed", err)
		});
	},

	async stopped() {
		await this.alertJob?.stop();
		await Promise.all([this.outbox.stop(), this.webhooks.stop()]);
		this.mailer?.close();
		this.mailer = null;
	}
};

export default NotificationsService;
