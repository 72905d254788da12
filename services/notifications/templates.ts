/**
 * Email templates: pure functions, no broker, no I/O. `renderEmail(template, data)` checks the
 * data of its template and answers `{ subject, html, text }`.
 *
 * - Every value interpolated into HTML is escaped (names such as `<script>` arrive as text).
 * - Links must be http(s) URLs; anything else (`javascript:`, `data:`, …) is refused.
 * - Values shown in a subject line lose control characters, so no header can be smuggled in.
 * - Bad data throws `Errors.validation([...])` with one entry per field (`data.<field>`,
 *   `data.display.name`, `data.displays[3].lastSeenAt`); the rejected value is never echoed (a
 *   URL carries a secret token).
 * - Names chosen by someone else reach a subject line only when the recipient is of the same
 *   organisation (alerts to its admins), shortened; never in an invitation (see below).
 */
import { EMAIL_TEMPLATES, SECURITY_EVENTS, type AlertDisplay, type EmailData, type EmailTemplate, type PlaybackReportEmailData, type SecurityEvent } from "../../shared/contracts";
import { Errors, type FieldError } from "../../shared/errors";
import { ROLES, type Role } from "../../shared/rbac";

export const PRODUCT_NAME = "Marquee";

export interface RenderedEmail {
	subject: string;
	html: string;
	text: string;
}

const MAX_TEXT = 200;
const MAX_URL = 2048;
/** A reset link valid longer than a week is a caller's mistake. */
const MAX_EXPIRES_MINUTES = 7 * 24 * 60;
/** Ten years, in minutes: more offline than that is a caller's mistake. */
const MAX_OFFLINE_MINUTES = 10 * 366 * 24 * 60;
/** Displays a digest may carry; it lists the first MAX_LISTED and counts the rest. */
const MAX_DISPLAYS = 1000;
const MAX_LISTED = 50;
/** Names in a subject line are cut to this many characters. */
const MAX_SUBJECT_NAME = 60;
/** Rows a playback report may send; it keeps (and shows) the first MAX_REPORT_ROWS, the most played. */
const MAX_REPORT_ROWS_SENT = 1000;
const MAX_REPORT_ROWS = 20;

/** What a quota warning may be about, and how the email words it. */
const QUOTA_RESOURCES = {
	displays: { noun: "displays", limitName: "display limit", amount: (n: number) => String(n) },
	members: { noun: "members", limitName: "member limit", amount: (n: number) => String(n) },
	storageBytes: { noun: "of storage", limitName: "storage limit", amount: bytes }
} as const;
type QuotaResourceName = keyof typeof QUOTA_RESOURCES;

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

/**
 * One line of text: control, line-break, zero-width-space, direction-mark and bidirectional
 * override characters become spaces (no header injection, no reversed text), runs of spaces one.
 * The zero-width joiner and non-joiner stay: emoji sequences (👩‍💻) and Persian or Indic names
 * need them, and they reorder nothing.
 */
function oneLine(value: string): string {
	// eslint-disable-next-line no-control-regex
	return value.replace(/[\u0000-\u001f\u007f-\u009f\u200b\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]+/g, " ").replace(/ {2,}/g, " ").trim();
}

/** At most `max` characters (code points, so an emoji is never cut in half), with an ellipsis when cut. */
function shorten(value: string, max: number): string {
	const chars = Array.from(value);
	return chars.length <= max ? value : `${chars.slice(0, max - 1).join("").trimEnd()}…`;
}

type Reader = {
	text(field: string): string;
	/** Text that may be absent or empty (then ""). */
	optionalText(field: string): string;
	url(field: string): string;
	integer(field: string, min: number, max: number): number;
	role(field: string): Role;
	oneOf<V extends string>(field: string, values: readonly V[]): V;
	dateTime(field: string): string;
	/** A date-time or null (absent counts as null). */
	nullableDateTime(field: string): string | null;
	/** A nested object, read field by field (errors named `data.<field>.<inner>`). */
	object<V>(field: string, parse: (read: Reader) => V): V;
	/**
	 * A list of objects, `min` (default 1) to `max` of them (errors named `data.<field>[i].<inner>`).
	 * With `keep`, only the first `keep` items are read and kept; the rest are dropped unread.
	 */
	list<V>(field: string, max: number, parse: (read: Reader) => V, options?: { min?: number; keep?: number }): V[];
};

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads fields of `data`, collecting one error per bad field in `errors`; `path` names `data` in them. */
function reader(data: Record<string, unknown>, errors: FieldError[], path = "data"): Reader {
	const name = (field: string) => `${path}.${field}`;
	const fail = (field: string, message: string, type: string) => {
		errors.push({ field: name(field), message, type });
	};
	const blank = (field: string): boolean => data[field] === undefined || data[field] === null || data[field] === "";
	const present = (field: string): boolean => {
		if (blank(field)) {
			fail(field, `The '${name(field)}' field is required.`, "required");
			return false;
		}
		return true;
	};
	const read: Reader = {
		text(field) {
			if (!present(field)) return "";
			const value = data[field];
			if (typeof value !== "string") {
				fail(field, `The '${name(field)}' field must be a string.`, "string");
				return "";
			}
			const clean = oneLine(value);
			if (!clean) fail(field, `The '${name(field)}' field is required.`, "required");
			else if (clean.length > MAX_TEXT) fail(field, `The '${name(field)}' field must be at most ${MAX_TEXT} characters.`, "stringMax");
			return clean;
		},
		optionalText(field) {
			return blank(field) ? "" : read.text(field);
		},
		url(field) {
			if (!present(field)) return "";
			const value = data[field];
			const url = typeof value === "string" ? safeUrl(value.trim()) : null;
			if (url === null) fail(field, `The '${name(field)}' field must be an http or https URL.`, "url");
			return url ?? "";
		},
		integer(field, min, max) {
			if (!present(field)) return 0;
			const value = data[field];
			if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
				fail(field, `The '${name(field)}' field must be a whole number from ${min} to ${max}.`, "number");
				return 0;
			}
			return value;
		},
		role(field) {
			return read.oneOf(field, ROLES);
		},
		oneOf(field, values) {
			if (!present(field)) return values[0];
			const value = data[field];
			if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
				fail(field, `The '${name(field)}' field must be one of ${values.join(", ")}.`, "enumValue");
				return values[0];
			}
			return value as (typeof values)[number];
		},
		dateTime(field) {
			if (!present(field)) return "";
			const value = data[field];
			const time = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : Number.NaN;
			if (!Number.isFinite(time)) {
				fail(field, `The '${name(field)}' field must be an ISO 8601 date-time.`, "date");
				return "";
			}
			return new Date(time).toISOString();
		},
		nullableDateTime(field) {
			return data[field] === undefined || data[field] === null ? null : read.dateTime(field);
		},
		object(field, parse) {
			const value = data[field];
			if (!isRecord(value)) {
				if (present(field)) fail(field, `The '${name(field)}' field must be an object.`, "object");
				return parse(reader({}, [], name(field)));
			}
			return parse(reader(value, errors, name(field)));
		},
		list(field, max, parse, options = {}) {
			const min = options.min ?? 1;
			if (!present(field)) return [];
			const value = data[field];
			if (!Array.isArray(value) || value.length < min || value.length > max) {
				fail(field, `The '${name(field)}' field must be a list of ${min} to ${max} items.`, "array");
				return [];
			}
			return value.slice(0, options.keep ?? max).map((item, i) => {
				const itemPath = `${name(field)}[${i}]`;
				if (!isRecord(item)) {
					errors.push({ field: itemPath, message: `The '${itemPath}' field must be an object.`, type: "object" });
					return parse(reader({}, [], itemPath));
				}
				return parse(reader(item, errors, itemPath));
			});
		}
	};
	return read;
}

const alertDisplay = (read: Reader): AlertDisplay => ({
	displayId: read.text("displayId"),
	name: read.text("name"),
	lastSeenAt: read.nullableDateTime("lastSeenAt")
});

const reportRow = (read: Reader): PlaybackReportEmailData["rows"][number] => ({
	name: read.text("name"),
	plays: read.integer("plays", 0, Number.MAX_SAFE_INTEGER),
	durationMs: read.integer("durationMs", 0, Number.MAX_SAFE_INTEGER)
});

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
	}),
	displayOffline: read => ({
		name: read.text("name"),
		tenantName: read.text("tenantName"),
		display: read.object("display", alertDisplay),
		offlineMinutes: read.integer("offlineMinutes", 0, MAX_OFFLINE_MINUTES),
		url: read.url("url")
	}),
	displayOnline: read => ({
		name: read.text("name"),
		tenantName: read.text("tenantName"),
		display: read.object("display", alertDisplay),
		offlineMinutes: read.integer("offlineMinutes", 0, MAX_OFFLINE_MINUTES),
		url: read.url("url")
	}),
	offlineDigest: read => {
		const displays = read.list("displays", MAX_DISPLAYS, alertDisplay);
		return {
			name: read.text("name"),
			tenantName: read.text("tenantName"),
			count: read.integer("count", Math.max(1, displays.length), Number.MAX_SAFE_INTEGER),
			displays,
			url: read.url("url")
		};
	},
	quotaWarning: read => ({
		name: read.text("name"),
		tenantName: read.text("tenantName"),
		resource: read.oneOf("resource", Object.keys(QUOTA_RESOURCES) as QuotaResourceName[]),
		used: read.integer("used", 0, Number.MAX_SAFE_INTEGER),
		limit: read.integer("limit", 1, Number.MAX_SAFE_INTEGER),
		url: read.url("url")
	}),
	paymentFailed: read => ({
		name: read.text("name"),
		tenantName: read.text("tenantName"),
		amountDue: read.text("amountDue"),
		url: read.url("url")
	}),
	webhookDisabled: read => ({
		name: read.text("name"),
		tenantName: read.text("tenantName"),
		endpointUrl: read.url("endpointUrl"),
		reason: read.text("reason"),
		url: read.url("url")
	}),
	// A week with no plays has no rows; more than MAX_REPORT_ROWS are cut (the caller sends the most played first).
	playbackReport: read => ({
		tenantName: read.text("tenantName"),
		reportName: read.text("reportName"),
		period: read.text("period"),
		plays: read.integer("plays", 0, Number.MAX_SAFE_INTEGER),
		durationMs: read.integer("durationMs", 0, Number.MAX_SAFE_INTEGER),
		rows: read.list("rows", MAX_REPORT_ROWS_SENT, reportRow, { min: 0, keep: MAX_REPORT_ROWS }),
		url: read.url("url")
	}),
	securityNotice: read => ({
		name: read.text("name"),
		event: read.oneOf("event", SECURITY_EVENTS),
		at: read.dateTime("at"),
		ip: read.optionalText("ip"),
		url: read.url("url")
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
	if (!isRecord(data)) {
		throw Errors.validation([{ field: "data", message: "The 'data' field must be an object.", type: "object" }]);
	}
	const errors: FieldError[] = [];
	const parse: (read: Reader) => EmailData[T] = PARSERS[template];
	const parsed = parse(reader(data, errors));
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

/** "less than a minute", "45 minutes", "2 hours 5 minutes", "3 days 4 hours": how long, roughly. */
function elapsed(minutes: number): string {
	if (minutes < 1) return "less than a minute";
	if (minutes < 60) return plural(minutes, "minute");
	const [big, bigUnit, small, smallUnit] = minutes < 24 * 60 ? [Math.floor(minutes / 60), "hour", minutes % 60, "minute"] : [Math.floor(minutes / (24 * 60)), "day", Math.floor((minutes % (24 * 60)) / 60), "hour"];
	return small ? `${plural(big, bigUnit)} ${plural(small, smallUnit)}` : plural(big, bigUnit);
}

/** "512 MB", "1.5 GB": binary multiples, named as DEFAULT_PLAN_STORAGE_MB names them. */
function bytes(n: number): string {
	const units = ["bytes", "KB", "MB", "GB", "TB", "PB"];
	let value = n;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit += 1;
	}
	const rounded = unit === 0 ? String(value) : String(Math.round(value * 10) / 10);
	return `${rounded} ${units[unit]}`;
}

/** A webhook endpoint as shown in an email: scheme, host and path; never a query or a user part (they may hold credentials). */
function endpointLabel(url: string): string {
	const parsed = new URL(url);
	return `${parsed.origin}${parsed.pathname === "/" ? "" : parsed.pathname}`;
}

const DATE_TIME = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", dateStyle: "long", timeStyle: "short" });

/** "22 November 2026 at 14:05 UTC" */
function utcDateTime(iso: string): string {
	return `${DATE_TIME.format(new Date(iso))} UTC`;
}

/** "last seen 22 November 2026 at 14:05 UTC" or "never connected". */
function lastSeen(display: AlertDisplay): string {
	return display.lastSeenAt ? `last seen ${utcDateTime(display.lastSeenAt)}` : "never connected";
}

const COUNT = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });

/** "1 play", "12,345 plays" */
function plays(n: number): string {
	return `${COUNT.format(n)} ${n === 1 ? "play" : "plays"}`;
}

/** Playing time in hours and minutes, to the nearest minute: "12 h 05 min", "0 h 45 min"; "under 1 min" when some but less than half a minute. */
function playTime(ms: number): string {
	const minutes = Math.round(ms / 60_000);
	if (minutes === 0 && ms > 0) return "under 1 min";
	return `${COUNT.format(Math.floor(minutes / 60))} h ${String(minutes % 60).padStart(2, "0")} min`;
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
	/** A bulleted list under the paragraphs (the displays of a digest). */
	list?: string[];
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
		...(c.list?.length ? ['<ul style="margin:0 0 16px;padding-left:24px;">', ...c.list.map(item => `<li style="margin:0 0 4px;">${escapeHtml(item)}</li>`), "</ul>"] : []),
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
		...(c.list?.length ? [...c.list.map(item => `- ${item}`), ""] : []),
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

const SECURITY_SUBJECTS: Record<SecurityEvent, string> = {
	twoFactorEnabled: `Two-factor authentication is on for your ${PRODUCT_NAME} account`,
	twoFactorDisabled: `Two-factor authentication was turned off for your ${PRODUCT_NAME} account`,
	twoFactorReset: `Two-factor authentication was reset for your ${PRODUCT_NAME} account`,
	recoveryCodeUsed: `A recovery code was used to sign in to your ${PRODUCT_NAME} account`,
	recoveryCodesReplaced: `New recovery codes for your ${PRODUCT_NAME} account`
};
const SECURITY_LINES: Record<SecurityEvent, string> = {
	twoFactorEnabled: "Two-factor authentication was turned on: signing in now needs a code from your authenticator app.",
	twoFactorDisabled: "Two-factor authentication was turned off: signing in needs only your password.",
	twoFactorReset:
		"The operator of this installation turned two-factor authentication off for your account and ended all of its sessions. Sign in with your password and turn it on again (an organisation that requires it will ask you to at once).",
	recoveryCodeUsed: "Someone signed in with one of your recovery codes; it cannot be used again.",
	recoveryCodesReplaced: "New recovery codes were made; the earlier ones no longer work."
};

/** Why an admin receives an alert, and where to stop it. */
const ALERT_NOTE = (tenantName: string) =>
	`You receive this because you manage “${tenantName}” on ${PRODUCT_NAME}. Choose which alerts reach you by email in your notification settings.`;

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
	}),
	// Alerts go to the organisation's own owner and admins, so the display's name (chosen inside
	// the organisation) may name the alert in the subject, shortened.
	displayOffline: d => ({
		subject: `Display “${shorten(d.display.name, MAX_SUBJECT_NAME)}” is offline`,
		preheader: `“${d.display.name}” has not been heard from for ${elapsed(d.offlineMinutes)}.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [
			`The display “${d.display.name}” of “${d.tenantName}” has been offline for ${elapsed(d.offlineMinutes)} (${lastSeen(d.display)}).`,
			"Check its power and network connection. You will get another email when it is back online."
		],
		action: { label: "View display", url: d.url },
		notes: [ALERT_NOTE(d.tenantName)]
	}),
	displayOnline: d => ({
		subject: `Display “${shorten(d.display.name, MAX_SUBJECT_NAME)}” is back online`,
		preheader: `“${d.display.name}” is back after ${elapsed(d.offlineMinutes)} offline.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [`The display “${d.display.name}” of “${d.tenantName}” is back online after ${elapsed(d.offlineMinutes)} offline.`],
		action: { label: "View display", url: d.url },
		notes: [ALERT_NOTE(d.tenantName)]
	}),
	offlineDigest: d => {
		const listed = d.displays.slice(0, MAX_LISTED);
		const more = d.count - listed.length;
		return {
			subject: `${plural(d.count, "display")} went offline`,
			preheader: `${plural(d.count, "display")} of “${d.tenantName}” went offline at about the same time.`,
			greeting: `Hi ${d.name},`,
			paragraphs: [
				`${plural(d.count, "display")} of “${d.tenantName}” went offline at about the same time. This often means a network or power outage at a site.`
			],
			list: [...listed.map(display => `“${display.name}”, ${lastSeen(display)}`), ...(more > 0 ? [`and ${more} more`] : [])],
			action: { label: "View displays", url: d.url },
			notes: ["You get one email for an outage like this rather than one per display.", ALERT_NOTE(d.tenantName)]
		};
	},
	quotaWarning: d => {
		const resource = QUOTA_RESOURCES[d.resource as QuotaResourceName];
		const percent = Math.floor((d.used / d.limit) * 100);
		const reached = d.used >= d.limit;
		return {
			subject: `${reached ? "You have reached" : "You are close to"} your plan's ${resource.limitName}`,
			preheader: `“${d.tenantName}” is using ${percent}% of the ${resource.noun} its plan allows.`,
			greeting: `Hi ${d.name},`,
			paragraphs: [
				`“${d.tenantName}” is using ${resource.amount(d.used)} of the ${resource.amount(d.limit)} ${resource.noun} its plan allows (${percent}%).`,
				reached ? "Nothing more can be added until you free some up or change to a larger plan." : "To keep adding more, free some up or change to a larger plan."
			],
			action: { label: "Review your plan", url: d.url },
			notes: [ALERT_NOTE(d.tenantName)]
		};
	},
	paymentFailed: d => ({
		subject: `Payment failed for your ${PRODUCT_NAME} subscription`,
		preheader: `We could not collect ${d.amountDue} for “${d.tenantName}”.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [
			`We could not collect the payment of ${d.amountDue} for the ${PRODUCT_NAME} subscription of “${d.tenantName}”.`,
			"Please check or update the payment method so the subscription stays active."
		],
		action: { label: "Update payment method", url: d.url },
		notes: [ALERT_NOTE(d.tenantName)]
	}),
	webhookDisabled: d => ({
		subject: "A webhook endpoint was disabled",
		preheader: `${PRODUCT_NAME} stopped sending events to ${endpointLabel(d.endpointUrl)}.`,
		greeting: `Hi ${d.name},`,
		paragraphs: [
			`${PRODUCT_NAME} stopped sending events to the webhook endpoint ${endpointLabel(d.endpointUrl)} of “${d.tenantName}”.`,
			`Reason: ${d.reason}`,
			"Once the endpoint works again, switch it back on; events since it was disabled can be sent again with a replay."
		],
		action: { label: "Review webhooks", url: d.url },
		notes: [ALERT_NOTE(d.tenantName)]
	}),
	// Sent to the recipients the organisation chose for the report (they may be outside it): its
	// names appear quoted, and the report's name in the subject is shortened.
	playbackReport: d => ({
		subject: `Proof of play: ${shorten(d.reportName, MAX_SUBJECT_NAME)} (${shorten(d.period, MAX_SUBJECT_NAME)})`,
		preheader: `${plays(d.plays)} and ${playTime(d.durationMs)} of playing time for “${d.tenantName}”, ${d.period}.`,
		greeting: "Hello,",
		paragraphs: [
			`Here is the proof-of-play report “${d.reportName}” of “${d.tenantName}” on ${PRODUCT_NAME} for the week ${d.period}.`,
			`In total: ${plays(d.plays)}, ${playTime(d.durationMs)} of playing time.`,
			d.rows.length ? "Most played content:" : "Nothing was played this week."
		],
		list: d.rows.map(row => `“${row.name}”: ${plays(row.plays)}, ${playTime(row.durationMs)}`),
		action: { label: "Open analytics", url: d.url },
		notes: [
			"The full table, with every content item, is attached as a CSV file.",
			`You receive this because you are a recipient of this weekly report of “${d.tenantName}” on ${PRODUCT_NAME}. Its recipients are chosen in the report's settings.`
		]
	}),
	securityNotice: d => ({
		subject: SECURITY_SUBJECTS[d.event],
		preheader: SECURITY_SUBJECTS[d.event],
		greeting: `Hi ${d.name},`,
		paragraphs: [`${SECURITY_LINES[d.event]} This happened at ${d.at.slice(0, 16).replace("T", " ")} UTC${d.ip ? ` from the address ${d.ip}` : ""}.`],
		action: { label: "Review your account", url: d.url },
		notes: ["If this was not you, reset your password now and contact your organisation's administrator."]
	})
};

/** Subject, HTML and plain text of `template` with `data` (checked first; see parseEmailData). */
export function renderEmail<T extends EmailTemplate>(template: T, data: EmailData[T]): RenderedEmail {
	const checked = parseEmailData(template, data);
	const build: (data: EmailData[T]) => Content = CONTENT[template];
	const content = build(checked);
	return { subject: oneLine(content.subject), html: layoutHtml(content), text: layoutText(content) };
}
