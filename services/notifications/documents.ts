/**
 * What the notifications service stores: the email outbox, in-app notifications and email
 * preferences, alert state per display, webhook endpoints, the events they subscribe to, and
 * deliveries. Outbox entries and deliveries are work items: a worker claims one by setting its
 * lease (compare-and-set on `leaseUntil`, see queue.ts), so a second replica or a restarted
 * process never works the same attempt twice and a crashed worker's item is taken over once its
 * lease runs out.
 */
import { globalCollection, tenantCollection, type Stored, type TenantOwned } from "../../mixins/db.mixin";
import type { AlertType, EmailAttachment, EmailData, EmailTemplate, WebhookEventType } from "../../shared/contracts";

/** The fields a worker claims an item by. */
export interface WorkItem {
	/** When it is next due (ISO); null once finished. */
	nextAttemptAt: string | null;
	/** Who holds it and until when; a lease in the past is free. */
	leaseOwner: string | null;
	leaseUntil: string | null;
	attempts: number;
}

/** One email: queued until the mail server took it, then sent (or failed after every retry). */
export interface EmailDoc extends Stored, WorkItem {
	/** The channel message's id: a replayed message is still one email. Unique. */
	requestId: string;
	/** Whose email log shows it (null: none, e.g. a password reset). Not `tenantId`: the data layer reserves that name for tenant-scoped collections and refuses it in writes. */
	tenant: string | null;
	to: string;
	template: EmailTemplate;
	data: EmailData[EmailTemplate];
	/** Files sent with it, checked (see outbox.ts); absent when none (and on emails stored before attachments existed). Never logged nor shown in the email log. */
	attachments?: EmailAttachment[];
	status: "queued" | "sent" | "failed";
	lastError: string | null;
	sentAt: string | null;
	messageId: string | null;
}

/** One in-app notification for one person of a tenant. */
export interface NotificationDoc extends TenantOwned {
	userId: string;
	type: string;
	title: string;
	body: string;
	data: Record<string, unknown>;
	readAt: string | null;
}

/**
 * Which alert types reach one person by email. `key` = `<tenantId>:<userId>`, unique. Stored as
 * the list of types switched off (absent = on, so a new alert type starts on): alert types
 * contain a dot, which neither NeDB nor MongoDB accepts in a field name.
 */
export interface PreferencesDoc extends TenantOwned {
	key: string;
	userId: string;
	emailOff: AlertType[];
	/** Grows with every change: the compare-and-set of a read-merge-write. */
	version: number;
}

/**
 * A display that went offline: watched until its alert is due, alerted (or suppressed when it
 * flaps), or back online (kept with `lastAlertedAt` so a flapping display does not alert again
 * within the window). `key` = displayId, unique.
 * Also the 24 h gate of quota warnings: `key` = `quota.warning:<tenantId>:<resource>`, status
 * "gate", `lastAlertedAt` the last warning, `dueAt` when the next may go out (display fields empty).
 */
export interface AlertStateDoc extends TenantOwned {
	key: string;
	displayId: string;
	displayName: string;
	lastSeenAt: string | null;
	offlineSince: string;
	/** When the offline alert goes out unless the display is back before. */
	dueAt: string;
	status: "watching" | "alerted" | "suppressed" | "online" | "gate";
	/** When this display last alerted (flapping: no second alert within the window). */
	lastAlertedAt: string | null;
}

/** A webhook endpoint. The signing secret must stay readable to sign; it is never answered after creation or rotation. */
export interface EndpointDoc extends TenantOwned {
	url: string;
	events: WebhookEventType[];
	description: string | null;
	enabled: boolean;
	disabledReason: string | null;
	secret: string;
	/** The secret before the last rotation: it still signs (as a second signature) until `previousSecretUntil`. */
	previousSecret: string | null;
	previousSecretUntil: string | null;
	/** Since when every delivery failed (null = the last one succeeded). */
	failingSince: string | null;
}

/** An event as stored for delivery and replay. `eventId` (the channel message's id) is unique per tenant. */
export interface EventDoc extends TenantOwned {
	key: string;
	eventId: string;
	type: WebhookEventType;
	timestamp: string;
	data: Record<string, unknown>;
}

/** One event to one endpoint. `key` = `<endpointId>:<eventId>:<n>` (n = replay round), unique. */
export interface DeliveryDoc extends TenantOwned, WorkItem {
	key: string;
	endpointId: string;
	eventId: string;
	event: WebhookEventType;
	/** The exact body sent (and signed), so every attempt sends the same bytes. */
	payload: string;
	status: "pending" | "succeeded" | "failed";
	lastStatusCode: number | null;
	lastResponseBody: string | null;
	lastError: string | null;
}

export const COLLECTIONS = {
	email_outbox: globalCollection<EmailDoc>({ uniqueIndexes: ["requestId"], indexes: ["tenant", "status", "nextAttemptAt"] }),
	notifications: tenantCollection<NotificationDoc>({ indexes: ["userId", "readAt"] }),
	notification_preferences: tenantCollection<PreferencesDoc>({ uniqueIndexes: ["key"], indexes: ["userId"] }),
	alert_states: tenantCollection<AlertStateDoc>({ uniqueIndexes: ["key"], indexes: ["status", "dueAt"] }),
	webhook_endpoints: tenantCollection<EndpointDoc>({ indexes: ["enabled"] }),
	webhook_events: tenantCollection<EventDoc>({ uniqueIndexes: ["key"], indexes: ["timestamp"] }),
	webhook_deliveries: tenantCollection<DeliveryDoc>({ uniqueIndexes: ["key"], selectiveIndexes: ["endpointId"], indexes: ["status", "nextAttemptAt"] })
};
