/**
 * Schedule resolution engine: pure functions, no broker, no I/O.
 *
 * Given a display (timezone, groups, tags), its tenant's schedules and overrides and an
 * instant, it answers what plays then, why each schedule did or did not match, and
 * `validUntil`: the next instant the answer (source, playlist, schedule, override) changes.
 *
 * Semantics (see DESIGN.md "Scheduling semantics"):
 * - Zone: the display's timezone, else the tenant's, else UTC (an unknown zone name falls through).
 * - A schedule targets displayIds ∪ members of groupIds ∪ displays carrying any of tags, minus
 *   excludeDisplayIds. An override without targets covers every display.
 * - startDate/endDate are inclusive local dates, daysOfWeek ISO 1 (Mon)–7 (Sun); an empty
 *   daysOfWeek list means every day. Both apply to the day a window starts on.
 * - startTime/endTime are local wall-clock `HH:mm`; a missing startTime is 00:00, a missing
 *   endTime is the end of the day; end ≤ start crosses midnight and belongs to the start day
 *   (Friday-only 22:00–06:00 = Friday 22:00 to Saturday 06:00).
 * - DST, wall-clock times. A window edge at wall time W is the first instant at which the clock
 *   shows W or later: a time inside a skipped hour maps to the first valid instant after it
 *   (02:30 on a New York spring-forward day → 03:00 EDT); a time inside a repeated hour maps to
 *   its first occurrence. A window runs, once, from the first occurrence of its start to the
 *   first occurrence of its end after that: 01:15–01:45 on a fall-back day covers the first
 *   01:15–01:45 only; 01:00–02:00 runs from 01:00 (first) until the clock shows 02:00, and is not
 *   started again when 01:00 comes round a second time. Consecutive windows therefore never leave
 *   a gap (an all-day rule covers every instant). A window that falls wholly inside a skipped hour
 *   does not play that day.
 * - A rule (schedule, override, the display's default) puts a playlist or a layout on screen.
 * - Active schedule: the matching one with the highest priority; ties → newest createdAt, then the
 *   smaller id. No match → the display's defaultPlaylistId (source "default"), else "none".
 * - An active override (startsAt ≤ t < endsAt) targeting the display beats every schedule; several
 *   → the one that started last, then the smaller id.
 * - validUntil: the earliest instant after `at` where (source, playlistId or layoutId, scheduleId, overrideId)
 *   differs, found by evaluating every rule edge (window start/end, date edges, override
 *   start/end) in order. null = never changes again. The search looks at least 400 days ahead,
 *   to the next multiple of 30 days since the epoch; if nothing changed by then, that horizon is
 *   returned (never later than the real change). The grid keeps the answer stable from one
 *   request to the next, so a manifest's ETag (which covers validUntil) does not churn.
 *   Content validity edges are not part of it: combine with itemsValidAt() via earliestInstant().
 */
import { DateTime, IANAZone, Info } from "luxon";

export interface TargetSet {
	displayIds?: string[];
	groupIds?: string[];
	tags?: string[];
}

export interface DisplayTarget {
	id: string;
	timezone: string | null;
	tenantTimezone: string;
	groupIds: string[];
	tags: string[];
	defaultPlaylistId: string | null;
	/** A layout the display plays when nothing is scheduled (instead of a default playlist). */
	defaultLayoutId?: string | null;
}

/** What a rule puts on screen: a playlist, or a layout (zones, each with its playlist). Exactly one is set. */
export interface Program {
	playlistId: string | null;
	layoutId?: string | null;
}

export interface ScheduleRule extends Program {
	id: string;
	name: string;
	priority: number;
	/** ISO instant */
	createdAt: string;
	targets: TargetSet;
	excludeDisplayIds?: string[];
	/** YYYY-MM-DD, local, inclusive */
	startDate?: string;
	/** YYYY-MM-DD, local, inclusive */
	endDate?: string;
	/** ISO weekdays 1..7 */
	daysOfWeek?: number[];
	/** HH:mm */
	startTime?: string;
	/** HH:mm; end ≤ start crosses midnight and belongs to the start day */
	endTime?: string;
}

export interface Override extends Program {
	id: string;
	name: string;
	/** absent = every display */
	targets?: TargetSet;
	excludeDisplayIds?: string[];
	startsAt: string;
	endsAt: string;
}

export interface Candidate {
	scheduleId: string;
	name: string;
	priority: number;
	matched: boolean;
	reason: string;
}

export type Source = "override" | "schedule" | "default" | "none";

export interface Resolution {
	at: string;
	timezone: string;
	/** ISO with offset, in the display's zone */
	localTime: string;
	source: Source;
	playlistId: string | null;
	layoutId: string | null;
	scheduleId: string | null;
	overrideId: string | null;
	candidates: Candidate[];
	/** next instant the answer can change; null = never */
	validUntil: string | null;
}

export interface TimelineSegment {
	start: string;
	end: string;
	source: Source;
	playlistId: string | null;
	layoutId: string | null;
	scheduleId: string | null;
}

export interface ValidityItem {
	contentId: string;
	validFrom?: string | null;
	validUntil?: string | null;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const SEARCH_DAYS = 400;
/** The search horizon is rounded up to this grid so validUntil does not move with `at`. */
const HORIZON_GRID = 30 * DAY;
const PERIOD_MARGIN_DAYS = 15;
const WEEKDAYS = ["", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/** The zone a display lives in: display → tenant → UTC, skipping unknown names. */
export function displayZone(display: Pick<DisplayTarget, "timezone" | "tenantTimezone">): string {
	for (const z of [display.timezone, display.tenantTimezone]) {
		if (z && isValidZone(z)) return z;
	}
	return "UTC";
}

/** Zone validity, remembered: luxon's check builds an Intl formatter each time (tens of µs). */
const zoneValidity = new Map<string, boolean>();

function isValidZone(zone: string): boolean {
	let valid = zoneValidity.get(zone);
	if (valid === undefined) {
		valid = IANAZone.isValidZone(zone);
		if (zoneValidity.size > 1000) zoneValidity.clear();
		zoneValidity.set(zone, valid);
	}
	return valid;
}

/** Whether a rule (schedule or override) covers the display. Absent targets = every display. */
export function targets(rule: { targets?: TargetSet; excludeDisplayIds?: string[] }, display: DisplayTarget): boolean {
	return targetReason(rule, display) === null;
}

function targetReason(rule: { targets?: TargetSet; excludeDisplayIds?: string[] }, display: DisplayTarget): string | null {
	if (rule.excludeDisplayIds?.includes(display.id)) return "excluded";
	const t = rule.targets;
	if (!t) return null;
	if (t.displayIds?.includes(display.id)) return null;
	if (t.groupIds?.some((g) => display.groupIds.includes(g))) return null;
	if (t.tags?.some((tag) => display.tags.includes(tag))) return null;
	return "not targeted";
}

function parseInstant(iso: string | null | undefined): number | null {
	if (!iso) return null;
	const t = Date.parse(iso);
	return Number.isNaN(t) ? null : t;
}

/** The number written by the ASCII digits s[from, to), or -1 if any is not a digit. */
function digits(s: string, from: number, to: number): number {
	let n = 0;
	for (let i = from; i < to; i++) {
		const c = s.charCodeAt(i) - 48;
		if (c < 0 || c > 9) return -1;
		n = n * 10 + c;
	}
	return n;
}

function daysInMonth(y: number, mo: number): number {
	if (mo === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
	return mo === 4 || mo === 6 || mo === 9 || mo === 11 ? 30 : 31;
}

/** `YYYY-MM-DD` as a day number (days since 1970-01-01), read by hand: rules are parsed per request. */
function parseDay(s: string | undefined): number | null | "invalid" {
	if (s === undefined || s === null || s === "") return null;
	if (s.length !== 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return "invalid";
	const y = digits(s, 0, 4);
	const mo = digits(s, 5, 7);
	const d = digits(s, 8, 10);
	// Years before 100 were always refused (Date.UTC reads them as 1900–1999).
	if (y < 100 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return "invalid";
	return Date.UTC(y, mo - 1, d) / DAY;
}

/** `HH:mm` as minutes after midnight. */
function parseTime(s: string | undefined): number | null | "invalid" {
	if (s === undefined || s === null || s === "") return null;
	if (s.length !== 5 || s.charCodeAt(2) !== 58) return "invalid";
	const h = digits(s, 0, 2);
	const mi = digits(s, 3, 5);
	if (h < 0 || mi < 0 || h > 23 || mi > 59) return "invalid";
	return h * 60 + mi;
}

function isoWeekday(day: number): number {
	return ((((day + 3) % 7) + 7) % 7) + 1;
}

function dayString(day: number): string {
	return new Date(day * DAY).toISOString().slice(0, 10);
}

function iso(t: number): string {
	return new Date(t).toISOString();
}

/**
 * A schedule as the engine works with it: its fields parsed once, and its windows remembered per
 * zone. Compiled once per rule object and kept on it (under the `compiled` symbol, not in a
 * WeakMap: short-lived WeakMap keys cost the collector more than the parsing they save), so the
 * displays of a bulk recomputation, which share the same rule objects, share the parsing and the
 * window arithmetic too. Rule objects are values: the engine never sees one change after it was
 * first given it (every caller builds them afresh from stored documents).
 */
interface ParsedRule {
	rule: ScheduleRule;
	invalid: string | null;
	createdAtMs: number;
	startDay: number | null;
	endDay: number | null;
	days: Set<number> | null;
	startMin: number | null;
	endMin: number | null;
	windowText: string;
	/** The window starting on each local day asked about, by zone. */
	windows: Map<Clock, Map<number, Interval | null>>;
}

const compiled = Symbol("compiled");

function parsedRule(rule: ScheduleRule & { [compiled]?: ParsedRule }): ParsedRule {
	let p = rule[compiled];
	if (!p) {
		p = parseRule(rule);
		// Hidden from spreads, JSON and equality; a frozen rule is simply compiled every time.
		if (Object.isExtensible(rule)) Object.defineProperty(rule, compiled, { value: p });
	}
	return p;
}

function parseRule(rule: ScheduleRule): ParsedRule {
	const startDay = parseDay(rule.startDate);
	const endDay = parseDay(rule.endDate);
	const startMin = parseTime(rule.startTime);
	const endMin = parseTime(rule.endTime);
	let invalid: string | null = null;
	if (startDay === "invalid") invalid = "invalid startDate";
	else if (endDay === "invalid") invalid = "invalid endDate";
	else if (startMin === "invalid") invalid = "invalid startTime";
	else if (endMin === "invalid") invalid = "invalid endTime";
	else if (rule.daysOfWeek?.some((d) => !Number.isInteger(d) || d < 1 || d > 7)) invalid = "invalid daysOfWeek";
	const days = rule.daysOfWeek && rule.daysOfWeek.length > 0 ? new Set(rule.daysOfWeek) : null;
	const windowText = startMin === null && endMin === null ? "all day" : `${rule.startTime ?? "00:00"}–${rule.endTime ?? "24:00"}`;
	return {
		rule,
		invalid,
		createdAtMs: parseInstant(rule.createdAt) ?? 0,
		startDay: typeof startDay === "number" ? startDay : null,
		endDay: typeof endDay === "number" ? endDay : null,
		days,
		startMin: typeof startMin === "number" ? startMin : null,
		endMin: typeof endMin === "number" ? endMin : null,
		windowText,
		windows: new Map()
	};
}

/** Orders schedules best first: priority desc, createdAt desc, id asc. */
export function compareRules(a: ScheduleRule, b: ScheduleRule): number {
	return compareParsed(parsedRule(a), parsedRule(b));
}

/** compareRules over compiled rules (createdAt parsed once, not at every comparison). */
function compareParsed(a: ParsedRule, b: ParsedRule): number {
	if (a.rule.priority !== b.rule.priority) return b.rule.priority - a.rule.priority;
	if (a.createdAtMs !== b.createdAtMs) return b.createdAtMs - a.createdAtMs;
	return a.rule.id < b.rule.id ? -1 : a.rule.id > b.rule.id ? 1 : 0;
}

function compareOverrides(a: Override, b: Override): number {
	const sa = parseInstant(a.startsAt) ?? 0;
	const sb = parseInstant(b.startsAt) ?? 0;
	if (sa !== sb) return sb - sa;
	return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

type Interval = [number, number];

/** Entries a Clock remembers before it starts afresh (bounds memory in a long-lived process). */
const CLOCK_CACHE_LIMIT = 200_000;

/** A UTC day of a zone: its offset, and where it changes when it does (at most once a day). */
interface ZoneDay {
	from: number;
	to: number;
	/** The first instant with offset `to`; Infinity when the day has one offset. */
	change: number;
}

/**
 * Per-zone wall-clock arithmetic. Pure, so one Clock per zone is shared by every resolution
 * (`clockOf`): displays of a tenant share a handful of zones and the same window edges, and
 * luxon's offset lookup (Intl, a few µs) is most of an uncached resolution's cost.
 *
 * Offsets are known per UTC day: luxon is asked at the day's two ends (each shared with the
 * neighbouring day), and only a day whose ends differ is searched for the instant of its
 * transition (a binary search to the millisecond). Every instant of the day is then answered
 * from that. No zone changes its offset twice within one day, so this is exact; asking luxon per
 * instant instead made the first resolution in a zone cost up to 150 ms (thousands of lookups
 * while a week of rules was walked), one event-loop stall per zone in a large recomputation.
 */
class Clock {
	private readonly zone: IANAZone;
	private readonly walls = new Map<number, number>();
	/** luxon's offset at the start of each UTC day asked about (ms). */
	private readonly dayStarts = new Map<number, number>();
	private readonly days = new Map<number, ZoneDay>();

	/** luxon writes "Z" for the zones it takes as fixed at UTC ("UTC", "GMT"), an offset for every other. */
	private readonly fixed: boolean;

	constructor(private readonly zoneName: string) {
		this.zone = IANAZone.create(zoneName);
		this.fixed = Info.normalizeZone(zoneName)?.isUniversal ?? false;
	}

	/**
	 * The instant as local ISO 8601 with its offset, exactly as luxon's
	 * `toISO({ suppressMilliseconds: true })` writes it (luxon asks Intl for the offset each time;
	 * this reuses the day's). Outside years 1000–9999 and for fixed zones it asks luxon.
	 */
	localIso(t: number): string {
		const offset = this.offset(t);
		const local = new Date(t + offset).toISOString();
		const minutes = offset / MIN;
		if (this.fixed || local.length !== 24 || local < "1000" || !Number.isInteger(minutes)) {
			return DateTime.fromMillis(t, { zone: this.zoneName }).toISO({ suppressMilliseconds: true }) ?? iso(t);
		}
		const abs = Math.abs(minutes);
		const sign = minutes < 0 ? "-" : "+";
		const hh = String(Math.trunc(abs / 60)).padStart(2, "0");
		const mm = String(abs % 60).padStart(2, "0");
		const time = local.endsWith(".000Z") ? local.slice(0, 19) : local.slice(0, 23);
		return `${time}${sign}${hh}:${mm}`;
	}

	offset(t: number): number {
		const day = this.day(Math.floor(t / DAY));
		return t < day.change ? day.from : day.to;
	}

	private day(index: number): ZoneDay {
		let day = this.days.get(index);
		if (day) return day;
		const start = index * DAY;
		const from = this.dayStart(index);
		const to = this.dayStart(index + 1);
		let change = Number.POSITIVE_INFINITY;
		if (from !== to) {
			// The offset is `from` at `lo` and `to` at `hi`; one transition lies between.
			let lo = start;
			let hi = start + DAY;
			while (hi - lo > 1) {
				const mid = Math.floor((lo + hi) / 2);
				if (this.luxonOffset(mid) === from) lo = mid;
				else hi = mid;
			}
			change = hi;
		}
		day = { from, to, change };
		if (this.days.size >= CLOCK_CACHE_LIMIT) this.days.clear();
		this.days.set(index, day);
		return day;
	}

	private dayStart(index: number): number {
		let offset = this.dayStarts.get(index);
		if (offset === undefined) {
			offset = this.luxonOffset(index * DAY);
			if (this.dayStarts.size >= CLOCK_CACHE_LIMIT) this.dayStarts.clear();
			this.dayStarts.set(index, offset);
		}
		return offset;
	}

	private luxonOffset(t: number): number {
		return this.zone.offset(t) * MIN;
	}

	/** Local wall time of an instant, as ms since the epoch of a naive (zone-less) clock. */
	local(t: number): number {
		return t + this.offset(t);
	}

	localDay(t: number): number {
		return Math.floor(this.local(t) / DAY);
	}

	/** First instant at which the clock shows wall time `w` or later. */
	firstAtOrAfter(w: number): number {
		const cached = this.walls.get(w);
		if (cached !== undefined) return cached;
		const a = w - 26 * HOUR;
		const b = w + 26 * HOUR;
		const o1 = this.offset(a);
		const o2 = this.offset(b);
		let result: number;
		if (o1 === o2) {
			result = w - o1;
		} else {
			let lo = a;
			let hi = b;
			while (hi - lo > 1) {
				const mid = Math.floor((lo + hi) / 2);
				if (this.offset(mid) === o1) lo = mid;
				else hi = mid;
			}
			const transition = hi;
			result = w - o1 < transition ? w - o1 : Math.max(transition, w - o2);
		}
		if (this.walls.size >= CLOCK_CACHE_LIMIT) this.walls.clear();
		this.walls.set(w, result);
		return result;
	}
}

const clocks = new Map<string, Clock>();

function clockOf(zoneName: string): Clock {
	let clock = clocks.get(zoneName);
	if (!clock) {
		clock = new Clock(zoneName);
		clocks.set(zoneName, clock);
	}
	return clock;
}

/** A zone's UTC offset at instant `t` (ms), as the engine reckons it (tests compare it with luxon's). */
export function zoneOffsetMs(zoneName: string, t: number): number {
	return clockOf(zoneName).offset(t);
}

/** Windows a day of a rule remembers per zone before it starts afresh (a long-lived rule object). */
const RULE_WINDOWS_LIMIT = 4096;

/** A rule's windows in one zone. */
class RuleTimes {
	private readonly cache: Map<number, Interval | null>;

	constructor(
		readonly p: ParsedRule,
		private readonly clock: Clock
	) {
		let cache = p.windows.get(clock);
		if (!cache) {
			cache = new Map();
			p.windows.set(clock, cache);
		}
		this.cache = cache;
	}

	/** The window that starts on local day `day`, or null. */
	window(day: number): Interval | null {
		let w = this.cache.get(day);
		if (w === undefined) {
			w = this.compute(day);
			if (this.cache.size >= RULE_WINDOWS_LIMIT) this.cache.clear();
			this.cache.set(day, w);
		}
		return w;
	}

	private compute(day: number): Interval | null {
		const p = this.p;
		if (p.invalid) return null;
		if (p.startDay !== null && day < p.startDay) return null;
		if (p.endDay !== null && day > p.endDay) return null;
		if (p.days && !p.days.has(isoWeekday(day))) return null;
		const s = p.startMin ?? 0;
		const e = p.endMin ?? 24 * 60;
		const ws = day * DAY + s * MIN;
		const we = e > s ? day * DAY + e * MIN : (day + 1) * DAY + e * MIN;
		const start = this.clock.firstAtOrAfter(ws);
		const end = this.clock.firstAtOrAfter(we);
		return end > start ? [start, end] : null;
	}

	activeAt(t: number): boolean {
		const d = this.clock.localDay(t);
		for (let day = d - 2; day <= d + 1; day++) {
			const w = this.window(day);
			if (w && w[0] <= t && t < w[1]) return true;
		}
		return false;
	}
}

interface Answer {
	source: Source;
	playlistId: string | null;
	layoutId: string | null;
	scheduleId: string | null;
	overrideId: string | null;
	override: Override | null;
	winner: ScheduleRule | null;
}

/** Whether two answers put the same thing on screen for the same reason (what validUntil tracks). */
function sameAnswer(a: Answer, b: Answer): boolean {
	return a.source === b.source && a.playlistId === b.playlistId && a.layoutId === b.layoutId && a.scheduleId === b.scheduleId && a.overrideId === b.overrideId;
}

/** Inserts `value` into `sorted` (ascending) at or after `from`. */
function insertSorted(sorted: number[], value: number, from: number): void {
	let i = sorted.length;
	while (i > from && sorted[i - 1] > value) i--;
	sorted.splice(i, 0, value);
}

class Engine {
	readonly zoneName: string;
	readonly clock: Clock;
	/** The rules targeting the display, best first. */
	readonly rules: RuleTimes[];
	readonly allRules: ParsedRule[];
	readonly overrides: Array<{ o: Override; start: number; end: number }>;
	private readonly horizonBase: number;

	constructor(
		readonly display: DisplayTarget,
		schedules: ScheduleRule[],
		overrides: Override[]
	) {
		this.zoneName = displayZone(display);
		this.clock = clockOf(this.zoneName);
		this.allRules = schedules.map(parsedRule).sort(compareParsed);
		this.rules = this.allRules.filter((p) => !p.invalid && targets(p.rule, display)).map((p) => new RuleTimes(p, this.clock));
		this.overrides = [];
		for (const o of [...overrides].sort(compareOverrides)) {
			const start = parseInstant(o.startsAt);
			const end = parseInstant(o.endsAt);
			if (start === null || end === null || end <= start || !targets(o, display)) continue;
			this.overrides.push({ o, start, end });
		}
		// After the last finite edge, the answer repeats weekly in wall-clock terms.
		let base = Number.NEGATIVE_INFINITY;
		for (const r of this.rules) {
			if (r.p.startDay !== null) base = Math.max(base, r.p.startDay * DAY + 2 * DAY);
			if (r.p.endDay !== null) base = Math.max(base, r.p.endDay * DAY + 3 * DAY);
		}
		for (const o of this.overrides) base = Math.max(base, o.end);
		this.horizonBase = base;
	}

	/** What plays at `t`; `winner` (the schedule an override hides) only when asked, for the candidates' reasons. */
	answerAt(t: number, withWinner = true): Answer {
		for (const { o, start, end } of this.overrides) {
			if (start <= t && t < end) {
				return { source: "override", ...programOf(o), scheduleId: null, overrideId: o.id, override: o, winner: withWinner ? this.winnerAt(t) : null };
			}
		}
		const winner = this.winnerAt(t);
		if (winner) return { source: "schedule", ...programOf(winner), scheduleId: winner.id, overrideId: null, override: null, winner };
		const fallback = programOf({ playlistId: this.display.defaultPlaylistId, layoutId: this.display.defaultLayoutId });
		if (fallback.playlistId || fallback.layoutId) {
			return { source: "default", ...fallback, scheduleId: null, overrideId: null, override: null, winner: null };
		}
		return { source: "none", playlistId: null, layoutId: null, scheduleId: null, overrideId: null, override: null, winner: null };
	}

	/** Rules are sorted best first, so the first active one wins. */
	private winnerAt(t: number): ScheduleRule | null {
		for (const r of this.rules) if (r.activeAt(t)) return r.p.rule;
		return null;
	}

	/**
	 * The first instant after `at` where the answer differs from `now` (the answer at `at`), or
	 * null if it never does.
	 *
	 * The answer only changes at a rule edge, and while it stays `now` only some edges can change
	 * it, so only those are looked at:
	 * - an override plays: its end, and the start of any later override (one that starts later wins);
	 * - schedule W plays: the ends of W's windows (another window of W may carry on at once), the
	 *   starts of the rules ranked above W, and override starts; rules ranked below W cannot win
	 *   while W plays, so their edges change nothing;
	 * - the default or nothing plays: every rule's start, and override starts.
	 * Each candidate is checked by resolving at it. Windows are taken in order of the local day
	 * they start on, each once: a window starting on day d + 1 or later starts no earlier than
	 * local midnight of d + 1, so the candidates up to that instant are complete.
	 */
	nextChange(at: number, now: Answer): number | null {
		const cap = Math.ceil((at + SEARCH_DAYS * DAY) / HORIZON_GRID) * HORIZON_GRID;
		const periodic = Math.max(at, this.horizonBase) + PERIOD_MARGIN_DAYS * DAY;
		const horizon = Math.min(cap, periodic);
		const never = horizon === periodic && periodic < cap ? null : horizon;

		const pending: number[] = [];
		let head = 0;
		const add = (e: number) => {
			if (e > at && e <= horizon) insertSorted(pending, e, head);
		};
		/** The first pending candidate up to `upTo` where the answer differs, or null. */
		const settle = (upTo: number): number | null => {
			while (head < pending.length && pending[head] <= upTo) {
				const e = pending[head++];
				if (!sameAnswer(this.answerAt(e, false), now)) return e;
			}
			return null;
		};

		const starts: RuleTimes[] = [];
		let ends: RuleTimes | null = null;
		for (const { o, start, end } of this.overrides) {
			if (now.source !== "override") add(start);
			else if (o === now.override) add(end);
			else if (start > at) add(start);
		}
		if (now.source === "schedule") {
			for (const r of this.rules) {
				if (r.p.rule === now.winner) {
					ends = r;
					break;
				}
				starts.push(r);
			}
		} else if (now.source !== "override") {
			starts.push(...this.rules);
		}
		if (!starts.length && !ends) return settle(horizon) ?? never;

		for (let day = this.clock.localDay(at) - 2; ; day++) {
			for (const r of starts) {
				const w = r.window(day);
				if (w) add(w[0]);
			}
			const w = ends?.window(day);
			if (w) add(w[1]);
			const next = this.clock.firstAtOrAfter((day + 1) * DAY);
			const found = settle(Math.min(next, horizon));
			if (found !== null) return found;
			if (next >= horizon) return never;
			if (head === pending.length) {
				pending.length = 0;
				head = 0;
			}
		}
	}

	candidates(t: number, answer: Answer): Candidate[] {
		const d = this.clock.localDay(t);
		const active = new Set(this.rules.filter((r) => r.activeAt(t)).map((r) => r.p.rule.id));
		return this.allRules.map((p): Candidate => {
			const rule = p.rule;
			const base = { scheduleId: rule.id, name: rule.name, priority: rule.priority };
			const notTargeted = targetReason(rule, this.display);
			if (notTargeted) return { ...base, matched: false, reason: notTargeted };
			if (p.invalid) return { ...base, matched: false, reason: p.invalid };
			if (active.has(rule.id)) {
				if (answer.override) return { ...base, matched: true, reason: `overridden by "${answer.override.name}"` };
				const w = answer.winner;
				if (!w || w.id === rule.id) return { ...base, matched: true, reason: `active (${p.windowText})` };
				if (w.priority !== rule.priority) return { ...base, matched: true, reason: `lower priority than "${w.name}" (${w.priority})` };
				if ((parseInstant(w.createdAt) ?? 0) !== (parseInstant(rule.createdAt) ?? 0)) {
					return { ...base, matched: true, reason: `older than "${w.name}"` };
				}
				return { ...base, matched: true, reason: `same priority and age as "${w.name}", larger id` };
			}
			let reason: string;
			if (p.startDay !== null && d < p.startDay) reason = `before ${dayString(p.startDay)}`;
			else if (p.endDay !== null && d > p.endDay) reason = `after ${dayString(p.endDay)}`;
			else if (p.days && !p.days.has(isoWeekday(d))) reason = `not on ${WEEKDAYS[isoWeekday(d)]}`;
			else reason = `outside ${p.windowText}`;
			return { ...base, matched: false, reason };
		});
	}

	resolve(t: number, withCandidates: boolean): Resolution {
		const answer = this.answerAt(t);
		const next = this.nextChange(t, answer);
		return {
			at: iso(t),
			timezone: this.zoneName,
			localTime: this.clock.localIso(t),
			source: answer.source,
			playlistId: answer.playlistId,
			layoutId: answer.layoutId,
			scheduleId: answer.scheduleId,
			overrideId: answer.overrideId,
			candidates: withCandidates ? this.candidates(t, answer) : [],
			validUntil: next === null ? null : iso(next)
		};
	}
}

/** A rule's program; a layout, when named, wins (a rule names one or the other). */
function programOf(p: Program): { playlistId: string | null; layoutId: string | null } {
	return p.layoutId ? { playlistId: null, layoutId: p.layoutId } : { playlistId: p.playlistId ?? null, layoutId: null };
}

function instantOf(at: Date): number {
	const t = at.getTime();
	if (Number.isNaN(t)) throw new RangeError("invalid instant");
	return t;
}

/** What plays on `display` at `at`, why, and until when. */
export function resolve(display: DisplayTarget, schedules: ScheduleRule[], overrides: Override[], at: Date, options: { candidates?: boolean } = {}): Resolution {
	return new Engine(display, schedules, overrides).resolve(instantOf(at), options.candidates ?? true);
}

/**
 * What plays at `at`, and the first instant after it where `key` of the answer differs (null =
 * never, as far as the engine looks ahead): validUntil moves on every change of the answer, this
 * skips the changes `key` does not see (a screen's power: one "off" rule handing over to another
 * leaves it off). At most `maxSteps` changes are followed (a day of back-to-back minute rules);
 * past them the last one is answered.
 */
export function resolveUntil(
	display: DisplayTarget,
	schedules: ScheduleRule[],
	overrides: Override[],
	at: Date,
	key: (r: Resolution) => string,
	maxSteps = 2000
): { resolution: Resolution; until: string | null } {
	const engine = new Engine(display, schedules, overrides);
	const resolution = engine.resolve(instantOf(at), false);
	const now = key(resolution);
	let next = resolution.validUntil;
	for (let step = 1; next !== null && step < maxSteps; step++) {
		const later = engine.resolve(Date.parse(next), false);
		if (key(later) !== now) return { resolution, until: next };
		next = later.validUntil;
	}
	return { resolution, until: next };
}

/** Segments of [from, to) with what plays, consecutive equal segments merged. */
export function timeline(display: DisplayTarget, schedules: ScheduleRule[], overrides: Override[], from: Date, to: Date): TimelineSegment[] {
	return [...timelineSegments(display, schedules, overrides, from, to)];
}

/**
 * The same segments one at a time, each once it is complete: a caller can stop early (a bounded
 * answer) or let other work in between (a long period over many rules is CPU work).
 */
export function* timelineSegments(display: DisplayTarget, schedules: ScheduleRule[], overrides: Override[], from: Date, to: Date): Generator<TimelineSegment> {
	const engine = new Engine(display, schedules, overrides);
	const end = instantOf(to);
	let last: TimelineSegment | null = null;
	let t = instantOf(from);
	while (t < end) {
		const r = engine.resolve(t, false);
		const next = r.validUntil === null ? end : Math.min(end, Date.parse(r.validUntil));
		if (last && last.source === r.source && last.playlistId === r.playlistId && last.layoutId === r.layoutId && last.scheduleId === r.scheduleId) {
			last.end = iso(next);
		} else {
			if (last) yield last;
			last = { start: iso(t), end: iso(next), source: r.source, playlistId: r.playlistId, layoutId: r.layoutId, scheduleId: r.scheduleId };
		}
		t = next;
	}
	if (last) yield last;
}

/** Every validFrom/validUntil instant of the items, sorted, unique, ISO. */
export function contentValidityEdges(items: ValidityItem[]): string[] {
	const edges = new Set<number>();
	for (const item of items) {
		for (const v of [item.validFrom, item.validUntil]) {
			const t = parseInstant(v);
			if (t !== null) edges.add(t);
		}
	}
	return [...edges].sort((a, b) => a - b).map(iso);
}

/**
 * The items playable at `at` (validFrom inclusive, validUntil exclusive; absent = unbounded) and
 * the next instant that set changes (null = never).
 */
export function itemsValidAt<T extends ValidityItem>(items: T[], at: Date): { items: T[]; validUntil: string | null } {
	const t = instantOf(at);
	const valid = items.filter((item) => {
		const from = parseInstant(item.validFrom);
		const until = parseInstant(item.validUntil);
		return (from === null || from <= t) && (until === null || t < until);
	});
	const next = contentValidityEdges(items).find((e) => Date.parse(e) > t) ?? null;
	return { items: valid, validUntil: next };
}

/** The earlier of two optional instants (null = never). */
export function earliestInstant(...instants: Array<string | null | undefined>): string | null {
	let best: number | null = null;
	for (const s of instants) {
		const t = parseInstant(s);
		if (t !== null && (best === null || t < best)) best = t;
	}
	return best === null ? null : iso(best);
}
