/**
 * Weekly report emails: when one is due and which week it covers. Pure (luxon), DST-correct:
 * the weekday and hour are wall-clock time in the schedule's timezone.
 *
 * A report due on weekday W at hour H covers the seven whole local days before W's midnight,
 * e.g. "Monday 08:00" mails the previous Monday 00:00 to Sunday 24:00.
 */
import { DateTime } from "luxon";
import type { ReportScheduleView } from "../../shared/contracts";
import type { TenantOwned } from "../../mixins/db.mixin";

export interface ReportScheduleDoc extends TenantOwned {
	name: string;
	recipients: string[];
	weekday: number;
	hour: number;
	timezone: string;
	lastSentAt: string | null;
	/** Start (epoch ms) of the last week mailed; 0 before the first. Claimed by compare-and-set. */
	lastPeriodStart: number;
}

export interface Period {
	start: number;
	end: number;
}

/** The most recent due time at or before `now`, and the week it covers. */
export function lastDue(s: Pick<ReportScheduleDoc, "weekday" | "hour" | "timezone">, now: Date): { due: Date; period: Period } {
	const local = DateTime.fromJSDate(now, { zone: s.timezone });
	let day = local.startOf("day").minus({ days: (local.weekday - s.weekday + 7) % 7 });
	let due = day.set({ hour: s.hour });
	if (due > local) {
		day = day.minus({ weeks: 1 });
		due = day.set({ hour: s.hour });
	}
	return { due: due.toJSDate(), period: { start: day.minus({ weeks: 1 }).toMillis(), end: day.toMillis() } };
}

/** The next due time after `now`. */
export function nextDue(s: Pick<ReportScheduleDoc, "weekday" | "hour" | "timezone">, now: Date): Date {
	const { due } = lastDue(s, now);
	return DateTime.fromJSDate(due, { zone: s.timezone }).plus({ weeks: 1 }).toJSDate();
}

/** The week to mail now, or null when the last due week was mailed already (or is older than the schedule). */
export function periodDue(s: ReportScheduleDoc, now: Date): Period | null {
	const { due, period } = lastDue(s, now);
	// A schedule created after its due time this week starts with next week's.
	if (Date.parse(s.createdAt) > due.getTime()) return null;
	return period.start > s.lastPeriodStart ? period : null;
}

export function scheduleView(s: ReportScheduleDoc, now = new Date()): ReportScheduleView {
	return {
		id: s.id,
		name: s.name,
		recipients: s.recipients,
		weekday: s.weekday,
		hour: s.hour,
		timezone: s.timezone,
		createdAt: s.createdAt,
		lastSentAt: s.lastSentAt,
		nextRunAt: nextDue(s, now).toISOString()
	};
}

/** The local date the week starts on, e.g. "2026-11-30" (a file name). */
export function periodStartDate(period: Period, timezone: string): string {
	return DateTime.fromMillis(period.start, { zone: timezone }).toISODate() ?? new Date(period.start).toISOString().slice(0, 10);
}

/** "23 Nov – 29 Nov 2026" in the schedule's timezone. */
export function periodLabel(period: Period, timezone: string): string {
	const start = DateTime.fromMillis(period.start, { zone: timezone });
	const last = DateTime.fromMillis(period.end, { zone: timezone }).minus({ days: 1 });
	return `${start.toFormat("d LLL")} – ${last.toFormat("d LLL yyyy")}`;
}
