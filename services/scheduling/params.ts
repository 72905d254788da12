/**
 * What scheduling's actions accept: the fastest-validator rules (the broker checks them before a
 * handler runs) and the checks a rule cannot express (real calendar dates, ranges between two
 * fields, windows relative to now). Pure: the checks throw a 422 naming the field, and take the
 * current instant as an argument.
 */
import { DECISION_PARAMS } from "../../shared/approval";
import { Errors, type FieldError } from "../../shared/errors";
import { ID_RULE } from "../../shared/ids";
import { ISO_INSTANT_RULE, NAME_RULE, PAGE_PARAMS } from "../../shared/request";

export const MAX_ITEMS = 200;
export const MAX_ZONES = 20;
/** A layout's frame: pixels up to 16K, or a ratio such as 16 × 9. */
export const MAX_FRAME = 16384;
/** A zone's smallest side, as a fraction of the frame (two pixels of a 1920-wide one): smaller is invisible. */
export const MIN_ZONE = 0.001;
/** Zone edges may overshoot the frame by rounding (1/3 + 2/3) and nothing more. */
export const FRAME_EPSILON = 1e-9;
export const MAX_TARGET_IDS = 1000;
export const MAX_TAGS = 100;
export const MAX_TIMELINE_DAYS = 31;
/** A timeline answers at most this many segments (a month of minute-long rules would be tens of thousands). */
export const MAX_TIMELINE_SEGMENTS = 1000;
export const MAX_OVERRIDE_DAYS = 366;
export const DAY_MS = 24 * 3600_000;

// ---- rules ------------------------------------------------------------------------------------

const DATE_RULE = { type: "string", pattern: /^\d{4}-\d{2}-\d{2}$/, messages: { stringPattern: "must be a date such as 2026-11-22" }, optional: true, nullable: true } as const;
const TIME_RULE = { type: "string", pattern: /^([01]\d|2[0-3]):[0-5]\d$/, messages: { stringPattern: "must be a local time HH:mm such as 09:30" }, optional: true, nullable: true } as const;
const ID_LIST = (max: number) => ({ type: "array", items: ID_RULE, max, unique: true, optional: true }) as const;
const OPTIONAL_ID = { ...ID_RULE, optional: true } as const;
const BY_ID = { $$strict: "remove", id: ID_RULE } as const;

const TARGETS_RULE = {
	type: "object",
	strict: "remove",
	props: {
		displayIds: ID_LIST(MAX_TARGET_IDS),
		groupIds: ID_LIST(MAX_TARGET_IDS),
		tags: { type: "array", items: { type: "string", trim: true, min: 1, max: 64 }, max: MAX_TAGS, unique: true, optional: true }
	}
} as const;

/** Override targets may be left out or null: every display. */
const OVERRIDE_TARGETS_RULE = { ...TARGETS_RULE, optional: true, nullable: true } as const;

const ITEMS_RULE = {
	type: "array",
	max: MAX_ITEMS,
	optional: true,
	items: {
		type: "object",
		strict: "remove",
		props: {
			id: OPTIONAL_ID,
			contentId: ID_RULE,
			durationMs: { type: "number", integer: true, min: 1000, max: 24 * 3600_000, optional: true, nullable: true }
		}
	}
} as const;

const UNIT = { type: "number", min: 0, max: 1 } as const;

const ZONES_RULE = {
	type: "array",
	min: 1,
	max: MAX_ZONES,
	items: {
		type: "object",
		strict: "remove",
		props: {
			id: OPTIONAL_ID,
			name: NAME_RULE,
			x: UNIT,
			y: UNIT,
			width: { type: "number", min: MIN_ZONE, max: 1 },
			height: { type: "number", min: MIN_ZONE, max: 1 },
			zIndex: { type: "number", integer: true, min: -1000, max: 1000, optional: true },
			playlistId: ID_RULE
		}
	}
} as const;

const LAYOUT_FIELDS = {
	name: NAME_RULE,
	width: { type: "number", integer: true, min: 1, max: MAX_FRAME },
	height: { type: "number", integer: true, min: 1, max: MAX_FRAME },
	backgroundColor: { type: "string", pattern: /^#[0-9a-fA-F]{6}$/, messages: { stringPattern: "must be a colour such as #1a2b3c" }, optional: true, nullable: true },
	backgroundContentId: { ...ID_RULE, optional: true, nullable: true },
	zones: ZONES_RULE
} as const;

/** What a schedule or override plays: a playlist or a layout (exactly one, checked by checkProgram). */
const PROGRAM_FIELDS = { playlistId: OPTIONAL_ID, layoutId: OPTIONAL_ID } as const;

/** When a rule applies, in the display's timezone: the rule language of schedules and power schedules. */
const RULE_FIELDS = {
	targets: TARGETS_RULE,
	excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
	startDate: DATE_RULE,
	endDate: DATE_RULE,
	daysOfWeek: { type: "array", items: { type: "number", integer: true, min: 1, max: 7 }, unique: true, max: 7, optional: true, nullable: true },
	startTime: TIME_RULE,
	endTime: TIME_RULE,
	priority: { type: "number", integer: true, min: 0, max: 1000, optional: true }
} as const;

const SCHEDULE_FIELDS = { name: NAME_RULE, ...PROGRAM_FIELDS, ...RULE_FIELDS } as const;

const POWER_FIELDS = { name: NAME_RULE, state: { type: "enum", values: ["off", "on"], optional: true }, ...RULE_FIELDS } as const;

/** Every rule of `fields`, optional: a PATCH sends only what changes. */
function allOptional<T extends Record<string, object>>(fields: T): { [K in keyof T]: T[K] & { optional: true } } {
	return Object.fromEntries(Object.entries(fields).map(([k, rule]) => [k, { ...rule, optional: true }])) as { [K in keyof T]: T[K] & { optional: true } };
}

/** The params rules of each action, by action name. */
export const PARAMS = {
	createPlaylist: { $$strict: "remove", name: NAME_RULE, items: ITEMS_RULE },
	listPlaylists: {
		$$strict: "remove",
		...PAGE_PARAMS,
		q: { type: "string", max: 100, optional: true },
		contentId: OPTIONAL_ID,
		approval: { type: "enum", values: ["pending", "rejected"], optional: true }
	},
	getPlaylist: BY_ID,
	updatePlaylist: { $$strict: "remove", id: ID_RULE, name: { ...NAME_RULE, optional: true }, items: ITEMS_RULE },
	removePlaylist: { $$strict: "remove", id: ID_RULE, force: { type: "boolean", convert: true, optional: true } },
	approvePlaylist: DECISION_PARAMS.approve,
	rejectPlaylist: DECISION_PARAMS.reject,

	createLayout: { $$strict: "remove", ...LAYOUT_FIELDS },
	listLayouts: { $$strict: "remove", ...PAGE_PARAMS, q: { type: "string", max: 100, optional: true }, playlistId: OPTIONAL_ID },
	getLayout: BY_ID,
	updateLayout: { $$strict: "remove", id: ID_RULE, ...allOptional(LAYOUT_FIELDS) },
	removeLayout: { $$strict: "remove", id: ID_RULE, force: { type: "boolean", convert: true, optional: true } },

	createSchedule: { $$strict: "remove", ...SCHEDULE_FIELDS },
	listSchedules: { $$strict: "remove", ...PAGE_PARAMS, displayId: OPTIONAL_ID, playlistId: OPTIONAL_ID, layoutId: OPTIONAL_ID },
	getSchedule: BY_ID,
	updateSchedule: { $$strict: "remove", id: ID_RULE, ...allOptional(SCHEDULE_FIELDS) },
	removeSchedule: BY_ID,

	createPowerSchedule: { $$strict: "remove", ...POWER_FIELDS },
	listPowerSchedules: { $$strict: "remove", ...PAGE_PARAMS, displayId: OPTIONAL_ID },
	getPowerSchedule: BY_ID,
	updatePowerSchedule: { $$strict: "remove", id: ID_RULE, ...allOptional(POWER_FIELDS) },
	removePowerSchedule: BY_ID,

	createOverride: {
		$$strict: "remove",
		name: NAME_RULE,
		...PROGRAM_FIELDS,
		targets: OVERRIDE_TARGETS_RULE,
		excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
		startsAt: { ...ISO_INSTANT_RULE, optional: true },
		endsAt: ISO_INSTANT_RULE
	},
	listOverrides: { $$strict: "remove", ...PAGE_PARAMS, status: { type: "enum", values: ["active", "scheduled", "ended"], optional: true } },
	getOverride: BY_ID,
	updateOverride: {
		$$strict: "remove",
		id: ID_RULE,
		name: { ...NAME_RULE, optional: true },
		...PROGRAM_FIELDS,
		targets: OVERRIDE_TARGETS_RULE,
		excludeDisplayIds: ID_LIST(MAX_TARGET_IDS),
		endsAt: { ...ISO_INSTANT_RULE, optional: true }
	},
	endOverride: BY_ID,

	preview: { $$strict: "remove", id: ID_RULE, at: { ...ISO_INSTANT_RULE, optional: true } },
	timeline: { $$strict: "remove", id: ID_RULE, from: { ...ISO_INSTANT_RULE, optional: true }, to: { ...ISO_INSTANT_RULE, optional: true } },

	// Called by other services only (no `rest`).
	contentInManifest: { displayId: "string", contentId: "string" },
	playlistExists: { id: "string" },
	layoutExists: { id: "string" },
	powerStates: {
		tenantId: "string",
		displays: { type: "array", max: 2000, items: { type: "object", props: { id: "string", at: { ...ISO_INSTANT_RULE, optional: true } } } }
	},
	removeContent: { tenantId: "string", contentId: "string" },
	exportTenantData: { tenantId: "string" }
} as const;

// ---- checks a rule cannot express -------------------------------------------------------------

/** A real calendar date (the pattern alone lets 2026-02-30 through). */
export function isCalendarDate(value: string): boolean {
	const d = new Date(`${value}T00:00:00Z`);
	return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === value;
}

/** An optional instant param; `fallback` when absent, 422 when Date cannot read it (e.g. month 13 or hour 25). */
export function instantParam(value: string | undefined, field: string, fallback: Date): Date {
	if (value === undefined) return fallback;
	const at = new Date(value);
	if (Number.isNaN(at.getTime())) throw Errors.validation([{ field, message: "is not a real date and time", type: "date" }]);
	return at;
}

/** A schedule's dates are real and in order (checked on the dates it ends up with after a PATCH). */
export function checkDateRange(startDate: string | null | undefined, endDate: string | null | undefined): void {
	const problems: FieldError[] = [];
	if (startDate && !isCalendarDate(startDate)) problems.push({ field: "startDate", message: "is not a real date", type: "date" });
	if (endDate && !isCalendarDate(endDate)) problems.push({ field: "endDate", message: "is not a real date", type: "date" });
	if (!problems.length && startDate && endDate && endDate < startDate) problems.push({ field: "endDate", message: "must not be before startDate", type: "range" });
	if (problems.length) throw Errors.validation(problems);
}

/** An override ends in the future, after it starts, and runs at most MAX_OVERRIDE_DAYS from now or its start. */
export function checkOverrideWindow(startsAt: Date, endsAt: Date, now: number): void {
	if (endsAt.getTime() <= now) throw Errors.validation([{ field: "endsAt", message: "must be in the future", type: "range" }]);
	if (endsAt <= startsAt) throw Errors.validation([{ field: "endsAt", message: "must be after startsAt", type: "range" }]);
	if (endsAt.getTime() - Math.max(now, startsAt.getTime()) > MAX_OVERRIDE_DAYS * DAY_MS) {
		throw Errors.validation([{ field: "endsAt", message: `must be within ${MAX_OVERRIDE_DAYS} days; use a schedule for longer`, type: "range" }]);
	}
}

/**
 * What a write asks a rule to play. `current` is the rule's program before a PATCH (absent on a
 * create, where exactly one must be named); naming one clears the other. 422 when both are named
 * or, on a create, neither.
 */
export function programChange(
	sent: { playlistId?: string; layoutId?: string },
	current?: { playlistId: string | null; layoutId: string | null }
): { playlistId: string | null; layoutId: string | null } | null {
	const { playlistId, layoutId } = sent;
	if (playlistId !== undefined && layoutId !== undefined) {
		throw Errors.validation([{ field: "layoutId", message: "name either a playlistId or a layoutId, not both", type: "program" }]);
	}
	if (playlistId !== undefined) return { playlistId, layoutId: null };
	if (layoutId !== undefined) return { playlistId: null, layoutId };
	if (current) return null;
	throw Errors.validation([{ field: "playlistId", message: "name what to play: a playlistId or a layoutId", type: "required" }]);
}

/** Every zone lies inside the frame (x + width ≤ 1, y + height ≤ 1) and has an area. */
export function checkZones(zones: Array<{ x: number; y: number; width: number; height: number }>): void {
	const problems: FieldError[] = [];
	zones.forEach((z, i) => {
		if (!(z.width >= MIN_ZONE)) problems.push({ field: `zones[${i}].width`, message: `must be at least ${MIN_ZONE}`, type: "range" });
		if (!(z.height >= MIN_ZONE)) problems.push({ field: `zones[${i}].height`, message: `must be at least ${MIN_ZONE}`, type: "range" });
		if (z.x + z.width > 1 + FRAME_EPSILON) problems.push({ field: `zones[${i}].width`, message: "x + width must be at most 1 (the zone must lie inside the frame)", type: "range" });
		if (z.y + z.height > 1 + FRAME_EPSILON) problems.push({ field: `zones[${i}].height`, message: "y + height must be at most 1 (the zone must lie inside the frame)", type: "range" });
	});
	if (problems.length) throw Errors.validation(problems);
}

/** A timeline's period: `to` after `from`, at most MAX_TIMELINE_DAYS long. */
export function checkTimelinePeriod(from: Date, to: Date): void {
	if (to <= from) throw Errors.validation([{ field: "to", message: "must be after from", type: "range" }]);
	if (to.getTime() - from.getTime() > MAX_TIMELINE_DAYS * DAY_MS) {
		throw Errors.validation([{ field: "to", message: `must be at most ${MAX_TIMELINE_DAYS} days after from`, type: "range" }]);
	}
}
