/**
 * The email outbox: every email is stored first (one document per request id, so a replayed
 * channel message is one email), then sent by a leased worker that retries on the configured
 * schedule; its state (queued, sent, failed with the reason) is the tenant's email log.
 *
 * - A failure the mail server may get over (unreachable, timed out, a 4xx answer, our
 *   credentials refused) is retried after EMAIL_RETRY_SCHEDULE's next pause; once the schedule
 *   is used up the email has failed. A refusal that would come again (the server refused the
 *   recipient or the message with a 5xx answer) fails it at once.
 * - Every attempt counts in `attempts`, the successful one too: the worker's claim compares
 *   `attempts`, so a worker that read the email before another sent it cannot claim it again.
 * - The body is rendered at each attempt from the stored data and never stored or logged: its
 *   links carry secret tokens. `lastError` and the logs hold the SMTP reply or error code only.
 * - Attachments (text files, e.g. a report's CSV) are checked when the request arrives (see
 *   parseAttachments) and stored with the email, so a retry sends the same bytes. Only their
 *   name, type and content reach the mail library; they are never logged nor in the email log.
 */
import type { LogSink } from "../../shared/logging";
import type { GlobalCollection } from "../../mixins/db.mixin";
import type { Config } from "../../shared/config";
import type { EmailAttachment, EmailLogPage, EmailLogRow, EmailRequest } from "../../shared/contracts";
import { AppError, Errors, type FieldError } from "../../shared/errors";
import type { EmailDoc } from "./documents";
import { isSingleAddress, type Mailer } from "./mailer";
import { globalQueueStore, retryDelay, Worker, type QueueStore } from "./queue";
import { parseEmailData, renderEmail } from "./templates";

export interface OutboxDeps {
	emails: GlobalCollection<EmailDoc>;
	config: Config;
	/** This worker's lease owner id. */
	owner: string;
	/** The transport in force (null while the service starts or stops). */
	mailer(): Mailer | null;
	logger: LogSink;
	/**
	 * The emails not sent yet (queued, or waiting for a retry), counted after each round of the
	 * worker (metrics). The outbox is shared by every replica, so each reads the same number.
	 */
	onDepth?(queued: number): void;
	now?: () => number;
}

/** nodemailer's error fields worth reading (its errors hold no message content). */
interface MailError {
	code?: unknown;
	responseCode?: unknown;
	response?: unknown;
	command?: unknown;
	message?: unknown;
}

const MAX_REASON = 300;

/** Files one email may carry. */
export const MAX_ATTACHMENTS = 3;
/** A file name: 1 to this many characters. */
export const MAX_ATTACHMENT_NAME = 100;
/** The content of all of one email's files together, in bytes (UTF-8): they are stored with the email. */
export const MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024;
/** Top-level media types a file may have: never `message/*` (a forged email inside ours) nor `multipart/*` (MIME structure). */
const ATTACHMENT_TYPES = new Set(["application", "audio", "font", "image", "model", "text", "video"]);
/** `type/subtype` (RFC 6838 names), no parameters. */
const CONTENT_TYPE = /^([a-z0-9][a-z0-9!#$&^_.+-]{0,126})\/([a-z0-9][a-z0-9!#$&^_.+-]{0,126})$/i;
/** Control, line-break, zero-width, direction-mark and bidirectional override characters: none in a file name ("cod\u202etxt.exe"). */
// eslint-disable-next-line no-control-regex
const UNSAFE_NAME_CHARS = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A request's attachments, checked: at most MAX_ATTACHMENTS, each `{ filename, contentType,
 * content }` (other fields, such as nodemailer's `path` or `href`, dropped) with a plain file name
 * (no folder, no control characters), a simple `type/subtype` (stored lower-case) and text content,
 * all of it at most MAX_ATTACHMENT_BYTES. Absent or null: none. Each problem is pushed to `errors`
 * by field (`attachments`, `attachments[1].filename`); no value is ever echoed.
 */
export function parseAttachments(value: unknown, errors: FieldError[]): EmailAttachment[] {
	if (value === undefined || value === null) return [];
	if (!Array.isArray(value) || value.length > MAX_ATTACHMENTS) {
		errors.push({ field: "attachments", message: `The 'attachments' field must be a list of at most ${MAX_ATTACHMENTS} files.`, type: "array" });
		return [];
	}
	const before = errors.length;
	let bytes = 0;
	const parsed = value.map((item, i): EmailAttachment => {
		const at = `attachments[${i}]`;
		if (!isRecord(item)) {
			errors.push({ field: at, message: `The '${at}' field must be an object.`, type: "object" });
			return { filename: "", contentType: "", content: "" };
		}
		const { filename, contentType, content } = item;
		const length = typeof filename === "string" ? Array.from(filename).length : 0;
		if (typeof filename !== "string" || length < 1 || length > MAX_ATTACHMENT_NAME || !filename.trim() || /[/\\]/.test(filename) || UNSAFE_NAME_CHARS.test(filename) || /^\.+$/.test(filename)) {
			errors.push({
				field: `${at}.filename`,
				message: `The '${at}.filename' field must be a file name of 1 to ${MAX_ATTACHMENT_NAME} characters, without folders or control characters.`,
				type: "string"
			});
		}
		const type = typeof contentType === "string" ? CONTENT_TYPE.exec(contentType) : null;
		if (!type || !ATTACHMENT_TYPES.has(type[1].toLowerCase())) {
			errors.push({ field: `${at}.contentType`, message: `The '${at}.contentType' field must be a media type such as text/csv.`, type: "string" });
		}
		if (typeof content !== "string") {
			errors.push({ field: `${at}.content`, message: `The '${at}.content' field must be a string.`, type: "string" });
		} else {
			bytes += Buffer.byteLength(content, "utf8");
		}
		return { filename: String(filename), contentType: String(contentType).toLowerCase(), content: typeof content === "string" ? content : "" };
	});
	if (bytes > MAX_ATTACHMENT_BYTES) {
		errors.push({ field: "attachments", message: `The 'attachments' field's files must be at most ${MAX_ATTACHMENT_BYTES / (1024 * 1024)} MiB together.`, type: "array" });
	}
	return errors.length > before ? [] : parsed;
}

/**
 * Whether the mail server refused this email for good: a 5xx answer (but 503, a bad command
 * sequence, which a new connection gets over) to its envelope or its message, or an envelope
 * nodemailer refused before sending. Connection, TLS and credential errors are about the server
 * or our configuration, not the email: they are retried.
 */
export function isPermanentFailure(err: unknown): boolean {
	const e = (err ?? {}) as MailError;
	if (e.code !== "EENVELOPE" && e.code !== "EMESSAGE") return false;
	if (typeof e.responseCode !== "number") return true;
	return e.responseCode >= 500 && e.responseCode < 600 && e.responseCode !== 503;
}

/**
 * The reason shown in the email log: what refused it and the server's reply (or the error
 * code and message), on one line, without anything shaped like a link.
 */
export function failureReason(err: unknown): string {
	const e = (err ?? {}) as MailError;
	const code = typeof e.code === "string" ? e.code : null;
	const reply = typeof e.response === "string" ? e.response : null;
	const message = typeof e.message === "string" ? e.message : String(err);
	const what =
		code === "EENVELOPE"
			? e.command === "MAIL FROM"
				? "The mail server refused the sender"
				: "The mail server refused the recipient"
			: code === "EMESSAGE"
				? "The mail server refused the message"
				: code
					? `Mail server error ${code}`
					: "Mail error";
	const detail = (reply ?? message)
		.replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, "[link]")
		// eslint-disable-next-line no-control-regex
		.replace(/[\u0000-\u001f\u007f]+/g, " ")
		.trim();
	const reason = detail ? `${what}: ${detail}` : what;
	return reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON - 1)}…` : reason;
}

function logRow(doc: EmailDoc): EmailLogRow {
	return {
		id: doc.id,
		to: doc.to,
		template: doc.template,
		status: doc.status,
		attempts: doc.attempts,
		lastError: doc.lastError,
		nextAttemptAt: doc.nextAttemptAt,
		sentAt: doc.sentAt,
		createdAt: doc.createdAt
	};
}

export class EmailOutbox {
	private readonly store: QueueStore<EmailDoc>;
	private readonly worker: Worker<EmailDoc>;
	private readonly now: () => number;

	constructor(readonly deps: OutboxDeps) {
		this.now = deps.now ?? Date.now;
		this.store = globalQueueStore(deps.emails);
		const { notifications } = deps.config;
		this.worker = new Worker<EmailDoc>({
			name: "email",
			store: this.store,
			owner: deps.owner,
			leaseMs: notifications.leaseMs,
			pollMs: notifications.pollMs,
			// An SMTP pool of 5 connections: more at once would only queue inside nodemailer.
			concurrency: 5,
			handle: (email, owner) => this.attempt(email, owner),
			onError: err => deps.logger.error("Email outbox:", (err as Error)?.message ?? err),
			...(deps.onDepth ? { afterRound: () => this.reportDepth() } : {}),
			now: this.now
		});
	}

	/** Stores one request (once per `request.id`; a repeat is a no-op) and wakes the sender. 422 for an unusable address, data or attachment. */
	async enqueue(request: EmailRequest): Promise<void> {
		const { id, tenantId, to, template } = request;
		const errors: FieldError[] = [];
		if (typeof id !== "string" || !id || id.length > 200) errors.push({ field: "id", message: "The 'id' field must be a string of 1 to 200 characters.", type: "string" });
		if (tenantId !== null && (typeof tenantId !== "string" || !tenantId)) {
			errors.push({ field: "tenantId", message: "The 'tenantId' field must be a non-empty string or null.", type: "string" });
		}
		if (typeof to !== "string" || !isSingleAddress(to)) errors.push({ field: "to", message: "The 'to' field must be one plain email address.", type: "email" });
		const attachments = parseAttachments(request.attachments, errors);
		if (errors.length) throw Errors.validation(errors);
		// Checked now, not at sending: a caller's mistake is the caller's 422, not a failed email later.
		const data = parseEmailData(template, request.data);
		try {
			await this.deps.emails.insertDoc({
				requestId: id,
				tenant: tenantId,
				to,
				template,
				data,
				...(attachments.length ? { attachments } : {}),
				status: "queued",
				attempts: 0,
				nextAttemptAt: new Date(this.now()).toISOString(),
				leaseOwner: null,
				leaseUntil: null,
				lastError: null,
				sentAt: null,
				messageId: null
			});
		} catch (err) {
			// The unique request id: this message was stored before (a redelivered channel message).
			if (err instanceof AppError && err.type === "CONFLICT") return;
			throw err;
		}
		this.deps.logger.info(`Mail "${template}" to ${to} queued`);
		this.worker.poke();
	}

	start(): void {
		this.worker.start();
	}

	async stop(): Promise<void> {
		await this.worker.stop();
	}

	/** Sends every due email now; resolves how many it worked (tests). */
	async tick(): Promise<number> {
		return this.worker.tick();
	}

	/** Counts the emails not sent yet and tells onDepth (an indexed count, once per round). */
	async reportDepth(): Promise<void> {
		if (!this.deps.onDepth) return;
		this.deps.onDepth(await this.deps.emails.countDocs({ status: "queued" }));
	}

	/** The tenant's email log, newest first. */
	async log(tenantId: string, page: number, pageSize: number, status?: EmailDoc["status"]): Promise<EmailLogPage> {
		const query = status ? { tenant: tenantId, status } : { tenant: tenantId };
		const found = await this.deps.emails.pageDocs(query, page, pageSize, ["-createdAt", "-_id"]);
		return { ...found, rows: found.rows.map(logRow) };
	}

	async removeTenant(tenantId: string): Promise<void> {
		await this.deps.emails.removeDocs({ tenant: tenantId });
	}

	/** One attempt at a claimed email, settled while the lease is still this worker's. */
	private async attempt(email: EmailDoc, owner: string): Promise<void> {
		const { logger, config } = this.deps;
		const label = `Mail "${email.template}" to ${email.to}`;
		const mailer = this.deps.mailer();
		if (!mailer) {
			// Starting or stopping: look again after a poll, without spending an attempt.
			await this.store.settle(email, owner, { nextAttemptAt: new Date(this.now() + config.notifications.pollMs).toISOString() });
			return;
		}
		const attempts = email.attempts + 1;
		let rendered;
		try {
			rendered = renderEmail(email.template, email.data);
		} catch {
			// Stored data no longer renders (a template changed its fields): retrying cannot help.
			await this.settle(email, owner, label, { status: "failed", attempts, nextAttemptAt: null, lastError: "The email's data no longer fits its template" });
			return;
		}
		try {
			const sent = await mailer.send({ to: email.to, template: email.template, ...rendered, ...(email.attachments?.length ? { attachments: email.attachments } : {}) });
			const done = new Date(this.now()).toISOString();
			if (await this.settle(email, owner, label, { status: "sent", attempts, sentAt: done, messageId: sent.messageId, nextAttemptAt: null, lastError: null })) {
				logger.info(sent.file ? `Mail to ${email.to} written to ${sent.file}` : `${label} sent via ${mailer.description}`);
			}
		} catch (err) {
			const reason = failureReason(err);
			const delay = isPermanentFailure(err) ? null : retryDelay(config.notifications.emailRetryScheduleMs, attempts);
			if (delay === null) {
				if (await this.settle(email, owner, label, { status: "failed", attempts, nextAttemptAt: null, lastError: reason })) {
					logger.error(`${label} failed after ${attempts} attempt${attempts === 1 ? "" : "s"} (${mailer.description}): ${reason}`);
				}
				return;
			}
			const next = new Date(this.now() + delay).toISOString();
			if (await this.settle(email, owner, label, { attempts, nextAttemptAt: next, lastError: reason })) {
				logger.warn(`${label} not sent (attempt ${attempts}, ${mailer.description}), retrying at ${next}: ${reason}`);
			}
		}
	}

	/**
	 * Writes the outcome; false (logged) when the email is no longer this worker's: the lease ran
	 * out meanwhile and another worker took it over, or its tenant was deleted.
	 */
	private async settle(email: EmailDoc, owner: string, label: string, changes: Partial<EmailDoc>): Promise<boolean> {
		const held = await this.store.settle(email, owner, changes);
		if (!held) this.deps.logger.warn(`${label}: no longer this worker's (lease ran out, or removed) during the attempt; its outcome (${changes.status ?? "retry"}) is not recorded`);
		return held;
	}
}
