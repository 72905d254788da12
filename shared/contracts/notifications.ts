/**
 * notifications: email through a durable outbox, in-app notifications and email preferences,
 * alert rules (display offline / back online, quota near its limit, payment failed), and signed
 * webhooks with retries and a delivery log.
 */
import { Type, type Static } from "@sinclair/typebox";
import type { Role } from "../rbac";
import { Id, Instant, JsonObject, Nullable, PageOf, type ExportParams, type NoParams, type PageParams } from "./views";

export const EMAIL_TEMPLATES = [
	"verify",
	"reset",
	"invitation",
	"displayOffline",
	"displayOnline",
	"offlineDigest",
	"quotaWarning",
	"paymentFailed",
	"webhookDisabled",
	"playbackReport",
	"securityNotice"
] as const;
export type EmailTemplate = (typeof EMAIL_TEMPLATES)[number];

export interface VerifyEmailData {
	name: string;
	url: string;
}

export interface ResetEmailData {
	name: string;
	url: string;
	/** How long the reset link stays valid. */
	expiresInMinutes: number;
}

export interface InvitationEmailData {
	inviterName: string;
	tenantName: string;
	role: Role;
	url: string;
	/** When the invitation lapses: an ISO 8601 date-time (a Date is accepted in-process). */
	expiresAt: string;
}

/** One display in an alert email. */
export interface AlertDisplay {
	displayId: string;
	name: string;
	/** ISO instant the display was last heard from (null: never). */
	lastSeenAt: string | null;
}

export interface DisplayOfflineEmailData {
	name: string;
	tenantName: string;
	display: AlertDisplay;
	/** Minutes it has been silent when the alert goes out. */
	offlineMinutes: number;
	url: string;
}

export interface DisplayOnlineEmailData {
	name: string;
	tenantName: string;
	display: AlertDisplay;
	/** Minutes it was offline. */
	offlineMinutes: number;
	url: string;
}

/** Many displays of one tenant dark at once: one email, not one per display. */
export interface OfflineDigestEmailData {
	name: string;
	tenantName: string;
	/** How many went dark (the list may be cut). */
	count: number;
	displays: AlertDisplay[];
	url: string;
}

export interface QuotaWarningEmailData {
	name: string;
	tenantName: string;
	/** "displays", "storageBytes" or "members". */
	resource: string;
	used: number;
	limit: number;
	url: string;
}

export interface PaymentFailedEmailData {
	name: string;
	tenantName: string;
	/** Amount due, formatted ("€24.00"). */
	amountDue: string;
	url: string;
}

export interface WebhookDisabledEmailData {
	name: string;
	tenantName: string;
	endpointUrl: string;
	reason: string;
	url: string;
}

/** A weekly proof-of-play email (analytics): the week's totals and top content; the full table is attached as CSV. */
export interface PlaybackReportEmailData {
	tenantName: string;
	reportName: string;
	/** The week, e.g. "23 Nov – 29 Nov 2026". */
	period: string;
	plays: number;
	durationMs: number;
	/** The most played content (at most 20 rows). */
	rows: Array<{ name: string; plays: number; durationMs: number }>;
	url: string;
}

/** What changed on an account's sign-in security (the account's owner is told by email). */
export const SECURITY_EVENTS = ["twoFactorEnabled", "twoFactorDisabled", "twoFactorReset", "recoveryCodeUsed", "recoveryCodesReplaced"] as const;
export type SecurityEvent = (typeof SECURITY_EVENTS)[number];

export interface SecurityNoticeEmailData {
	name: string;
	event: SecurityEvent;
	/** When and from where (the client address as the gateway saw it; "" when not from a request: an operator's command). */
	at: string;
	ip: string;
	/** Where to review the account's security. */
	url: string;
}

/** A file sent with an email (text only, small: the outbox stores it with the message). */
export interface EmailAttachment {
	filename: string;
	contentType: string;
	content: string;
}

export interface EmailData {
	verify: VerifyEmailData;
	reset: ResetEmailData;
	invitation: InvitationEmailData;
	displayOffline: DisplayOfflineEmailData;
	displayOnline: DisplayOnlineEmailData;
	offlineDigest: OfflineDigestEmailData;
	quotaWarning: QuotaWarningEmailData;
	paymentFailed: PaymentFailedEmailData;
	webhookDisabled: WebhookDisabledEmailData;
	playbackReport: PlaybackReportEmailData;
	securityNotice: SecurityNoticeEmailData;
}

/** A message for the email outbox (the durable channel `notifications.email`). */
export type SendEmailParams = { [T in EmailTemplate]: { to: string; template: T; data: EmailData[T]; attachments?: EmailAttachment[] } }[EmailTemplate];

/**
 * The email channel's message: `id` makes a replayed message one email (the outbox keeps one
 * document per id); `tenantId` lets the tenant's admins see it in their email log.
 */
export type EmailRequest = SendEmailParams & { id: string; tenantId: string | null };

// ---- platform events: what webhooks deliver and alerts react to -------------------------------

/** The event types a webhook endpoint can subscribe to (API.md), in one list. */
export const WEBHOOK_EVENT_TYPES = [
	"display.offline",
	"display.online",
	"display.paired",
	"display.deleted",
	"content.ready",
	"content.deleted",
	"schedule.changed",
	"quota.warning",
	"subscription.updated",
	"payment.failed",
	"approval.requested",
	"approval.decided"
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * One fact integrators may subscribe to, on the durable channel `notifications.event`: sent by
 * the service where it happened, stored by notifications before the channel is acknowledged,
 * then delivered to every subscribed endpoint. `id` is stable: a replayed message is one event.
 */
export interface PlatformEvent {
	id: string;
	tenantId: string;
	type: WebhookEventType;
	/** ISO instant it happened. */
	timestamp: string;
	data: Record<string, unknown>;
}

/** Alert types a person can choose to receive by email (in-app notifications always arrive). */
export const ALERT_TYPES = ["display.offline", "display.online", "quota.warning", "payment.failed", "webhook.disabled"] as const;
export type AlertType = (typeof ALERT_TYPES)[number];

// ---- REST answers ------------------------------------------------------------------------------

export const NotificationView = Type.Object({
	id: Id,
	type: Type.String(),
	title: Type.String(),
	body: Type.String(),
	data: JsonObject,
	readAt: Nullable(Instant),
	createdAt: Instant
});
export type NotificationView = Static<typeof NotificationView>;
export const NotificationPage = PageOf(NotificationView);
export type NotificationPage = Static<typeof NotificationPage>;

/** Which alert types reach this person by email. */
export const NotificationPreferences = Type.Object({
	email: Type.Object(Object.fromEntries(ALERT_TYPES.map(t => [t, Type.Boolean()])) as Record<AlertType, ReturnType<typeof Type.Boolean>>)
});
export type NotificationPreferences = Static<typeof NotificationPreferences>;

export const EMAIL_STATUSES = ["queued", "sent", "failed"] as const;
/** The tenant's email log: what went out, to whom, and its state. Never the body (it carries links with tokens). */
export const EmailLogRow = Type.Object({
	id: Id,
	to: Type.String(),
	template: Type.String(),
	status: Type.Union(EMAIL_STATUSES.map(s => Type.Literal(s))),
	attempts: Type.Integer({ minimum: 0 }),
	lastError: Nullable(Type.String()),
	nextAttemptAt: Nullable(Instant),
	sentAt: Nullable(Instant),
	createdAt: Instant
});
export type EmailLogRow = Static<typeof EmailLogRow>;
export const EmailLogPage = PageOf(EmailLogRow);
export type EmailLogPage = Static<typeof EmailLogPage>;

const EventTypeSchema = Type.Union(WEBHOOK_EVENT_TYPES.map(t => Type.Literal(t)));

export const WebhookEndpointView = Type.Object({
	id: Id,
	url: Type.String(),
	events: Type.Array(EventTypeSchema),
	description: Nullable(Type.String()),
	enabled: Type.Boolean(),
	/** Why it was switched off (410 Gone, failing for days, by an admin), when it is. */
	disabledReason: Nullable(Type.String()),
	createdAt: Instant,
	updatedAt: Instant
});
export type WebhookEndpointView = Static<typeof WebhookEndpointView>;
export const WebhookEndpointPage = PageOf(WebhookEndpointView);
export type WebhookEndpointPage = Static<typeof WebhookEndpointPage>;

/** POST /webhooks and POST /webhooks/:id/rotate-secret: the only answers that show the secret. */
export const WebhookEndpointWithSecret = Type.Composite([WebhookEndpointView, Type.Object({ secret: Type.String() })]);
export type WebhookEndpointWithSecret = Static<typeof WebhookEndpointWithSecret>;

export const DELIVERY_STATUSES = ["pending", "succeeded", "failed"] as const;
export const DeliveryView = Type.Object({
	id: Id,
	endpointId: Id,
	eventId: Id,
	event: EventTypeSchema,
	status: Type.Union(DELIVERY_STATUSES.map(s => Type.Literal(s))),
	attempts: Type.Integer({ minimum: 0 }),
	lastStatusCode: Nullable(Type.Integer()),
	/** The first 1 KiB of the receiver's last answer. */
	lastResponseBody: Nullable(Type.String()),
	lastError: Nullable(Type.String()),
	nextAttemptAt: Nullable(Instant),
	createdAt: Instant,
	updatedAt: Instant
});
export type DeliveryView = Static<typeof DeliveryView>;
export const DeliveryPage = PageOf(DeliveryView);
export type DeliveryPage = Static<typeof DeliveryPage>;

export const Accepted = Type.Object({ id: Id });
export type Accepted = Static<typeof Accepted>;
export const ReplayAccepted = Type.Object({ deliveries: Type.Integer({ minimum: 0 }) });
export type ReplayAccepted = Static<typeof ReplayAccepted>;

export const NotificationsExport = Type.Object({
	notifications: Type.Array(Type.Composite([NotificationView, Type.Object({ userId: Id })])),
	preferences: Type.Array(Type.Composite([NotificationPreferences, Type.Object({ userId: Id })])),
	webhooks: Type.Array(WebhookEndpointView),
	deliveries: Type.Array(DeliveryView)
});
export type NotificationsExport = Static<typeof NotificationsExport>;

// ---- actions ----------------------------------------------------------------------------------

export interface WebhookFields {
	url: string;
	events: WebhookEventType[];
	description?: string | null;
}

export interface NotificationsActions {
	// In-app notifications and preferences (the caller's own).
	"notifications.list": { params: PageParams & { unread?: boolean }; result: NotificationPage };
	"notifications.markRead": { params: { id: string }; result: null };
	"notifications.markAllRead": { params: NoParams; result: null };
	"notifications.preferences": { params: NoParams; result: NotificationPreferences };
	"notifications.updatePreferences": { params: { email: Partial<Record<AlertType, boolean>> }; result: NotificationPreferences };
	// The tenant's email log (admin).
	"notifications.emails": { params: PageParams & { status?: (typeof EMAIL_STATUSES)[number] }; result: EmailLogPage };
	// Webhooks (admin).
	"notifications.createWebhook": { params: WebhookFields; result: WebhookEndpointWithSecret };
	"notifications.listWebhooks": { params: PageParams; result: WebhookEndpointPage };
	"notifications.getWebhook": { params: { id: string }; result: WebhookEndpointView };
	"notifications.updateWebhook": { params: { id: string } & Partial<WebhookFields> & { enabled?: boolean }; result: WebhookEndpointView };
	"notifications.removeWebhook": { params: { id: string }; result: null };
	"notifications.rotateWebhookSecret": { params: { id: string }; result: WebhookEndpointWithSecret };
	"notifications.deliveries": { params: PageParams & { id: string; status?: (typeof DELIVERY_STATUSES)[number] }; result: DeliveryPage };
	"notifications.testWebhook": { params: { id: string }; result: Accepted };
	"notifications.retryDelivery": { params: { id: string }; result: Accepted };
	"notifications.replayWebhook": { params: { id: string; since: string }; result: ReplayAccepted };
	// Between services.
	"notifications.exportTenantData": { params: ExportParams; result: NotificationsExport };
}
