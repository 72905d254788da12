/**
 * notifications: email now; in-app notifications, signed webhooks and alert rules join later
 * (their actions under "actions", their subscriptions under "events", pure parts in
 * services/notifications/).
 *
 * Email. `notifications.sendEmail` is for other services only (visibility "public": callable over
 * the transporter, never routed by the gateway, so it has no `rest`). The templates live in
 * services/notifications/templates.ts, the transport in services/notifications/mailer.ts:
 * SMTP when SMTP_URL is set, otherwise each message is written as an .eml file to
 * DATA_DIR/mail (the embedded mode). Logs name the template and the recipient, never the link:
 * it carries a secret token.
 */
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { getConfig, type Config } from "../shared/config";
import { EMAIL_TEMPLATES, type ActionCtx, type Result } from "../shared/contracts";
import { AppError, Errors } from "../shared/errors";
import { createMailer, isSingleAddress, type Mailer, type OutgoingMail, type SentMail } from "./notifications/mailer";
import { parseEmailData, renderEmail } from "./notifications/templates";

interface NotificationsVars {
	config: Config;
	/** Set in started(), closed in stopped(). */
	mailer: Mailer | null;
}

interface NotificationsMethods {
	deliver(mail: OutgoingMail): Promise<SentMail>;
}

/** nodemailer's error fields worth logging (its messages hold no message content). */
interface MailError {
	code?: unknown;
	responseCode?: unknown;
	message?: unknown;
}

const NotificationsService: ServiceSchema<ServiceSettingSchema, NotificationsMethods, NotificationsVars> = {
	name: "notifications",

	actions: {
		/** Renders a template and sends it to one recipient. Answers `{ messageId }`. */
		sendEmail: {
			visibility: "public",
			params: {
				$$strict: "remove",
				to: { type: "email", mode: "precise", max: 254 },
				template: { type: "enum", values: [...EMAIL_TEMPLATES] },
				data: { type: "object" }
			},
			async handler(ctx: ActionCtx<"notifications.sendEmail">): Promise<Result<"notifications.sendEmail">> {
				const { to, template } = ctx.params;
				if (!isSingleAddress(to)) {
					throw Errors.validation([{ field: "to", message: "The 'to' field must be one plain email address.", type: "email" }]);
				}
				const data = parseEmailData(template, ctx.params.data);
				const rendered = renderEmail(template, data);
				const sent = await this.deliver({ to, template, ...rendered });
				return { messageId: sent.messageId };
			}
		}
	},

	methods: {
		/** Hands one message to the transport; failures become AppErrors, logged without content. */
		async deliver(mail: OutgoingMail): Promise<SentMail> {
			const mailer = this.mailer;
			if (!mailer) throw Errors.unavailable("Email is not available right now");
			let sent: SentMail;
			try {
				sent = await mailer.send(mail);
			} catch (err) {
				const e = (err ?? {}) as MailError;
				this.logger.error(
					`Mail "${mail.template}" to ${mail.to} failed (${mailer.description}):`,
					String(e.code ?? ""),
					String(e.responseCode ?? ""),
					String(e.message ?? err)
				);
				if (err instanceof AppError) throw err;
				if (e.code === "EENVELOPE") {
					throw Errors.validation([{ field: "to", message: "The mail server refused the recipient.", type: "email" }]);
				}
				throw Errors.unavailable("Email could not be sent, retry later");
			}
			if (sent.file) this.logger.info(`Mail to ${mail.to} written to ${sent.file}`);
			else this.logger.info(`Mail "${mail.template}" to ${mail.to} sent via ${mailer.description}`);
			return sent;
		}
	},

	created() {
		this.config = getConfig();
		this.mailer = null;
	},

	async started() {
		const config = this.config;
		this.mailer = createMailer({ smtpUrl: config.smtpUrl, dataDir: config.dataDir, from: config.mailFrom });
		if (this.mailer.kind === "file" && config.nodeEnv === "production") {
			this.logger.warn(`SMTP_URL is not set: emails are written to ${this.mailer.description} instead of being sent.`);
		} else {
			this.logger.info(`Email goes to ${this.mailer.description}`);
		}
	},

	async stopped() {
		this.mailer?.close();
		this.mailer = null;
	}
};

export default NotificationsService;
