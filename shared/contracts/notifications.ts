/** notifications: email (in-app notifications, webhooks and alert rules arrive with issue 12). */
import type { Role } from "../rbac";

export const EMAIL_TEMPLATES = ["verify", "reset", "invitation"] as const;
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

export interface EmailData {
	verify: VerifyEmailData;
	reset: ResetEmailData;
	invitation: InvitationEmailData;
}

/** The params of `notifications.sendEmail`, typed per template for callers. */
export type SendEmailParams = { [T in EmailTemplate]: { to: string; template: T; data: EmailData[T] } }[EmailTemplate];

export interface NotificationsActions {
	/** Renders a template and sends it to one recipient. */
	"notifications.sendEmail": { params: SendEmailParams; result: { messageId: string } };
}
