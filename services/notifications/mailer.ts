/**
 * The mail transport, chosen once from the config:
 *
 * - `SMTP_URL` set (smtp:// or smtps://): a pooled nodemailer SMTP transport. Credentials come
 *   in the URL and are never logged (`describe` names only host and port).
 * - unset (the embedded mode): each message is composed by nodemailer's stream transport into
 *   an RFC 5322 message (CRLF line ends) and written to `<dataDir>/mail/` as
 *   `<ISO 8601 basic timestamp>-<template>-<random>.eml`, e.g.
 *   `20261122T024524.507Z-verify-3f9a1c2e.eml`, readable by any mail client. Files are private
 *   to the service's user (0600): they hold links with secret tokens. Each is written beside the
 *   folder (`<dataDir>/.mail-partial/`) and renamed in, so whoever reads the folder (a person, a
 *   test waiting for a link) only ever sees whole messages.
 *
 * Attachments go to nodemailer as `{ filename, content, contentType }` only, base64-encoded (the
 * bytes arrive as sent, CRLFs and all), with file and URL access switched off: nothing in a
 * message can make the mail library read a local file or fetch a URL.
 *
 * No broker here: the service logs and maps errors.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { createTransport, type SendMailOptions } from "nodemailer";

export interface OutgoingMail {
	to: string;
	/** Template name; goes into the file name of the embedded mode. */
	template: string;
	subject: string;
	html: string;
	text: string;
	/** Text files sent with it (checked by the outbox: plain names, `type/subtype`, small). */
	attachments?: MailAttachment[];
}

export interface MailAttachment {
	filename: string;
	contentType: string;
	content: string;
}

export interface SentMail {
	messageId: string;
	/** Embedded mode: where the message was written. */
	file?: string;
}

export interface Mailer {
	readonly kind: "smtp" | "file";
	/** For logs: "SMTP smtp.example.com:587" or the mail folder. Never credentials. */
	readonly description: string;
	send(mail: OutgoingMail): Promise<SentMail>;
	close(): void;
}

export interface MailerOptions {
	smtpUrl: string | null;
	dataDir: string;
	from: string;
	/** SMTP connect, greeting and idle-socket timeouts, ms (default 10 s each, socket 30 s). */
	timeoutMs?: { connection?: number; greeting?: number; socket?: number };
}

/**
 * One plain address (`local@domain`), nothing a mail library could read as several recipients or
 * a display name: no quotes, commas, semicolons, angle brackets, whitespace or control characters.
 */
export function isSingleAddress(value: string): boolean {
	// eslint-disable-next-line no-control-regex
	if (value.length > 254 || /[\u0000-\u001f\u007f]/.test(value)) return false;
	return /^[^\s@",;:<>()[\]\\]+@[^\s@",;:<>()[\]\\]+\.[^\s@",;:<>()[\]\\]+$/.test(value);
}

export function mailDir(dataDir: string): string {
	return path.join(dataDir, "mail");
}

/** "20261122T024524.507Z": ISO 8601 basic format, sortable and valid in file names everywhere. */
export function fileTimestamp(date: Date): string {
	return date.toISOString().replace(/[-:]/g, "");
}

export function createMailer(options: MailerOptions): Mailer {
	return options.smtpUrl ? smtpMailer(options.smtpUrl, options) : fileMailer(mailDir(options.dataDir), options.from);
}

function smtpMailer(smtpUrl: string, options: MailerOptions): Mailer {
	const url = new URL(smtpUrl);
	const port = url.port || (url.protocol === "smtps:" ? "465" : "587");
	const transport = createTransport(
		{
			url: smtpUrl,
			pool: true,
			maxConnections: 5,
			connectionTimeout: options.timeoutMs?.connection ?? 10_000,
			greetingTimeout: options.timeoutMs?.greeting ?? 10_000,
			socketTimeout: options.timeoutMs?.socket ?? 30_000
		},
		{ from: options.from }
	);
	return {
		kind: "smtp",
		description: `SMTP ${url.hostname}:${port}`,
		async send(mail) {
			assertSingleAddress(mail.to);
			const info = await transport.sendMail(mailOptions(mail));
			return { messageId: info.messageId };
		},
		close: () => transport.close()
	};
}

function fileMailer(dir: string, from: string): Mailer {
	fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
	// Same file system as `dir`, so the rename into it is atomic.
	const partialDir = path.join(path.dirname(dir), ".mail-partial");
	fs.mkdirSync(partialDir, { recursive: true, mode: 0o700 });
	const transport = createTransport({ streamTransport: true, buffer: true, newline: "windows" }, { from });
	return {
		kind: "file",
		description: dir,
		async send(mail) {
			assertSingleAddress(mail.to);
			const info = await transport.sendMail(mailOptions(mail));
			const template = mail.template.replace(/[^A-Za-z0-9_-]/g, "") || "mail";
			const name = `${fileTimestamp(new Date())}-${template}-${randomBytes(4).toString("hex")}.eml`;
			const file = path.join(dir, name);
			const partial = path.join(partialDir, name);
			const message = Buffer.isBuffer(info.message) ? info.message : await readAll(info.message);
			await fs.promises.writeFile(partial, message, { flag: "wx", mode: 0o600 });
			await fs.promises.rename(partial, file);
			return { messageId: info.messageId, file };
		},
		close: () => transport.close()
	};
}

/** What nodemailer gets: the fields named here and nothing else of `mail`. */
function mailOptions(mail: OutgoingMail): SendMailOptions {
	return {
		to: mail.to,
		subject: mail.subject,
		html: mail.html,
		text: mail.text,
		attachments: (mail.attachments ?? []).map(a => ({ filename: a.filename, content: a.content, contentType: a.contentType, contentTransferEncoding: "base64" })),
		disableFileAccess: true,
		disableUrlAccess: true
	};
}

function assertSingleAddress(to: string): void {
	if (!isSingleAddress(to)) throw new Error("Recipient must be one plain email address");
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
	return Buffer.concat(chunks);
}
