/**
 * Email templates: pure functions, no broker, no I/O. `renderEmail(template, data)` checks the
 * data of its template and answers `{ subject, html, text }`.
 *
 * - Every value interpolated into HTML is escaped (names such as `<script>` arrive as text).
 * - Links must be http(s) URLs; anything else (`javascript:`, `data:`, …) is refused.
 * - Values shown in a subject line lose control characters, so no header can be smuggled in.
 * - Bad data throws `Errors.validation([...])` with one entry per field (`data.<field>`); the
 *   rejected value is never echoed (a URL carries a secret token).
 */
import { Errors, type FieldError } from "../../shared/errors";
import { ROLES, type Role } from "../../shared/rbac";

export const PRODUCT_NAME = "Marquee";

import { EMAIL_TEMPLATES, type EmailData, type EmailTemplate } from "../../shared/contracts";

export interface RenderedEmail {
	subject: string;
	html: string;
	text: string;
}

const MAX_TEXT = 200;
const MAX_URL = 2048;
/** A reset link valid longer than a week is a caller's mistake. */
const MAX_EXPIRES_MINUTES = 7 * 24 * 60;

// ---------------------------------------------------------------------------------------------
// Escaping and checks

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text → HTML text or attribute value (double- or single-quoted). */
export function escapeHtml(value: string): string {
	return value.replace(/[&<>"']/g, ch => HTML_ESCAPES[ch]);
}

/** The URL, normalised, when it is an absolute http(s) URL; otherwise null. */
export function safeUrl(value: string): string | null {
	if (value.length > MAX_URL) return null;
	let parsed: URL;
	try {
		parsed = new URL(value);
	} catch {
		return null;
	}
	if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
	if (!parsed.hostname) return null;
	return parsed.href;
}

/** One line of text: control characters (CR, LF, tabs, …) become spaces, runs of spaces one. */
/** Control, line-break and bidirectional-override characters become spaces (no header injection, no reversed text). */
function oneLine(value: string): string {
	// eslint-disable-next-line no-control-regex
	return value.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+/g, " ").replace(/ {2,}/g, " ").trim();
}

type Reader = {
	text(field: string): string;
	url(field: string): string;
	integer(field: string, min: number, max: number): number;
	role(field: string): Role;
	dateTime(field: string): string;
};

/** Reads fields of `data`, collecting one error per bad field in `errors`. */
function reader(data: Record<string, unknown>, errors: FieldError[]): Reader {
	const fail = (field: string, message: string, type: string) => {
		errors.push({ field: `data.${field}`, message, type });
	};
	const present = (field: string): boolean => {
		if (data[field] === undefined || data[field] === null || data[field] === "") {
			fail(field, `The 'data.${field}' field is required.`, "required");
			return false;
		}
		return true;
	};
	return {
		text(field) {
			if (!present(field)) return "";
			const value = data[field];
			if (typeof value !== "string") {
				fail(field, `The 'data.${field}' field must be a string.`, "string");
				return "";
			}
			const clean = oneLine(value);
			if (!clean) fail(field, `The 'data.${field}' field is required.`, "required");
			else if (clean.length > MAX_TEXT) fail(field, `The 'data.${field}' field must be at most ${MAX_TEXT} characters.`, "stringMax");
			return clean;
		},
		url(field) {
			if (!present(field)) return "";
			const value = data[field];
			const url = typeof value === "string" ? safeUrl(value.trim()) : null;
			if (url === null) fail(field, `The 'data.${field}' field must be an http or https URL.`, "url");
			return url ?? "";
		},
		integer(field, min, max) {
			if (!present(field)) return 0;
			const value = data[field];
			if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
				fail(field, `The 'data.${field}' field must be a whole number from ${min} to ${max}.`, "number");
				return 0;
			}
			return value;
		},
		role(field) {
			if (!present(field)) return "viewer";
			const value = data[field];
			if (typeof value !== "string" || !(ROLES as readonly string[]).includes(value)) {
				fail(field, `The 'data.${field}' field must be one of ${ROLES.join(", ")}.`, "enumValue");
				return "viewer";
			}
			return value as Role;
		},
		dateTime(field) {
			if (!present(field)) return "";
			const value = data[field];
			const time = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : Number.NaN;
			if (!Number.isFinite(time)) {
				fail(field, `The 'data.${field}' field must be an ISO 8601 date-time.`, "date");
				return "";
			}
			return new Date(time).toISOString();
		}
	};
}

const PARSERS: { [T in EmailTemplate]: (read: Reader) => EmailData[T] } = {
	verify: read => ({ name: read.text("name"), url: read.url("url") }),
	reset: read => ({
		name: read.text("name"),
		url: read.url("url"),
		expiresInMinutes: read.integer("expiresInMinutes", 1, MAX_EXPIRES_MINUTES)
	}),
	invitation: read => ({
		inviterName: read.text("inviterName"),
		tenantName: read.text("tenantName"),
		role: read.role("role"),
		url: read.url("url"),
		expiresAt: read.dateTime("expiresAt")
	})
};

export function isEmailTemplate(value: unknown): value is EmailTemplate {
	return typeof value === "string" && (EMAIL_TEMPLATES as readonly string[]).includes(value);
}

/**
 * The template's fields of `data`, checked and cleaned (unknown fields dropped); throws
 * `Errors.validation` naming every missing or bad field.
 */
export function parseEmailData<T extends EmailTemplate>(template: T, data: unknown): EmailData[T] {
	if (!isEmailTemplate(template)) {
		throw Errors.validation([{ field: "template", message: `The 'template' field must be one of ${EMAIL_TEMPLATES.join(", ")}.`, type: "enumValue" }]);
	}
	if (typeof data !== "object" || data === null || Array.isArray(data)) {
		throw Errors.validation([{ field: "data", message: "The 'data' field must be an object.", type: "object" }]);
	}
	const errors: FieldError[] = [];
	const parse: (read: Reader) => EmailData[T] = PARSERS[template];
	const parsed = parse(reader(data as Record<string, unknown>, errors));
	if (errors.length) throw Errors.validation(errors);
	return parsed;
}

// ---------------------------------------------------------------------------------------------
// Formatting

function duration(minutes: number): string {
	if (minutes % (24 * 60) === 0) return plural(minutes / (24 * 60), "day");
	if (minutes % 60 === 0) return plural(minutes / 60, "hour");
	return plural(minutes, "minute");
}

function plural(n: number, unit: string): string {
	return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

const DATE_TIME = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", dateStyle: "long", timeStyle: "short" });

/** "22 November 2026 at 14:05 UTC" */
function utcDateTime(iso: string): string {
	return `${DATE_TIME.format(new Date(iso))} UTC`;
}

/** "an admin", "a viewer" */
function withArticle(role: Role): string {
	return `${/^[aeiou]/.test(role) ? "an" : "a"} ${role}`;
}

// ---------------------------------------------------------------------------------------------
// Layout

/** What a template says; the layout turns it into HTML and text. Strings here are plain text. */
interface Content {
	subject: string;
	/** Hidden preview line shown by mail clients beside the subject. */
	preheader: string;
	greeting: string;
	paragraphs: string[];
	action: { label: string; url: string };
	/** Small print under the button (validity, "ignore if not you"). */
	notes: string[];
}

const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";
const BRAND = "#4f46e5";

function layoutHtml(c: Content): string {
	const p = (text: string, style: string) => `<p style="margin:0 0 16px;${style}">${escapeHtml(text)}</p>`;
	const href = escapeHtml(c.action.url);
	return [
		"<!DOCTYPE html>",
		'<html lang="en">',
		"<head>",
		'<meta charset="utf-8">',
		'<meta name="viewport" content="width=device-width, initial-scale=1">',
		`<title>${escapeHtml(c.subject)}</title>`,
		"</head>",
		`<body style="margin:0;padding:0;background-color:#f4f5f7;font-family:${FONT};color:#1f2937;">`,
		`<div style="display:none;max-height:0;overflow:hidden;opacity:0;">${escapeHtml(c.preheader)}</div>`,
		'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#f4f5f7;">',
		'<tr><td align="center" style="padding:32px 16px;">',
		'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:560px;background-color:#ffffff;border-radius:8px;">',
		`<tr><td style="padding:24px 32px;border-bottom:1px solid #e5e7eb;font-size:20px;font-weight:700;color:${BRAND};">${PRODUCT_NAME}</td></tr>`,
		'<tr><td style="padding:32px;font-size:16px;line-height:24px;">',
		p(c.greeting, ""),
		...c.paragraphs.map(text => p(text, "")),
		'<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:24px 0;"><tr>',
		`<td style="border-radius:6px;background-color:${BRAND};">`,
		`<a href="${href}" target="_blank" rel="noopener" style="display:inline-block;padding:12px 24px;font-size:16px;font-weight:600;color:#ffffff;text-decoration:none;border-radius:6px;">${escapeHtml(c.action.label)}</a>`,
		"</td></tr></table>",
		...c.notes.map(text => p(text, "font-size:14px;line-height:20px;color:#6b7280;")),
		'<p style="margin:0;font-size:14px;line-height:20px;color:#6b7280;">If the button does not work, copy this link into your browser:<br>',
		`<a href="${href}" target="_blank" rel="noopener" style="color:${BRAND};word-break:break-all;">${escapeHtml(c.action.url)}</a></p>`,
		"</td></tr>",
		`<tr><td style="padding:16px 32px;border-top:1px solid #e5e7eb;font-size:12px;line-height:18px;color:#9ca3af;">${PRODUCT_NAME} · digital signage. This email was sent automatically; replies are not read.</td></tr>`,
		"</table>",
		"</td></tr>",
		"</table>",
		"</body>",
		"</html>"
	].join("\n");
}

function layoutText(c: Content): string {
	return [
		c.greeting,
		"",
		...c.paragraphs.flatMap(text => [text, ""]),
		`${c.action.label}:`,
		c.action.url,
		"",
		...c.notes.flatMap(text => [text, ""]),
		"-- ",
		`${PRODUCT_NAME} · digital signage. This email was sent automatically; replies are not read.`,
		""
	].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Templates

const CONTENT: { [T in EmailTemplate]: (data: EmailData[T]) => Content } = {
	verify: d => ({
		subject: `Verify your email address for ${PRODUCT_NAME}`,
		preheader: `Confirm your email address to finish setting up your ${PRODUCT_NAME} account.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [`Welcome to ${PRODUCT_NAME}! Please confirm that this is your email address to finish setting up your account.`],
		action: { label: "Verify email address", url: d.url },
		notes: [`If you did not create a ${PRODUCT_NAME} account, you can ignore this email.`]
	}),
	reset: d => ({
		subject: `Reset your ${PRODUCT_NAME} password`,
		preheader: `Choose a new ${PRODUCT_NAME} password. The link is valid for ${duration(d.expiresInMinutes)}.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [`We received a request to reset the password of your ${PRODUCT_NAME} account. Choose a new password with the button below.`],
		action: { label: "Reset password", url: d.url },
		notes: [
			`This link is valid for ${duration(d.expiresInMinutes)} and can be used once.`,
			"If you did not ask for a new password, you can ignore this email: your password stays as it is."
		]
	}),
	// The names are chosen by whoever invites, so they stay out of the subject (what a mail list
	// shows) and appear quoted in the body: an invitation cannot be made to read like our message.
	invitation: d => ({
		subject: `You are invited to join an organisation on ${PRODUCT_NAME}`,
		preheader: `Join “${d.tenantName}” on ${PRODUCT_NAME} as ${withArticle(d.role)}.`,
		greeting: "Hello,",
		paragraphs: [
			`“${d.inviterName}” has invited you to join the organisation “${d.tenantName}” on ${PRODUCT_NAME} as ${withArticle(d.role)}.`,
			`${PRODUCT_NAME} is where organisations manage their screens, content and schedules.`
		],
		action: { label: "Accept invitation", url: d.url },
		notes: [
			`This invitation expires on ${utcDateTime(d.expiresAt)}.`,
			"If you were not expecting it, you can ignore this email."
		]
	})
};

/** Subject, HTML and plain text of `template` with `data` (checked first; see parseEmailData). */
export function renderEmail<T extends EmailTemplate>(template: T, data: EmailData[T]): RenderedEmail {
	const checked = parseEmailData(template, data);
	const build: (data: EmailData[T]) => Content = CONTENT[template];
	const content = build(checked);
	return { subject: oneLine(content.subject), html: layoutHtml(content), text: layoutText(content) };
}
