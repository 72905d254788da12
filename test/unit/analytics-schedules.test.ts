/** Weekly report emails: when one is due and which week it covers, in wall-clock time (DST too). */
import { lastDue, nextDue, periodDue, periodLabel, type ReportScheduleDoc } from "../../services/analytics/schedules";

const schedule = (fields: Partial<ReportScheduleDoc> = {}): ReportScheduleDoc => ({
	id: "r1",
	tenantId: "t1",
	name: "Weekly",
	recipients: ["a@example.com"],
	weekday: 1,
	hour: 8,
	timezone: "Europe/Berlin",
	lastSentAt: null,
	lastPeriodStart: 0,
	createdAt: "2026-01-01T00:00:00.000Z",
	updatedAt: "2026-01-01T00:00:00.000Z",
	...fields
});

describe("weekly report schedule", () => {
	it("is due Monday 08:00 Berlin for the Monday–Sunday before, in local midnights", () => {
		// Monday 7 December 2026 08:30 Berlin (07:30 UTC).
		const { due, period } = lastDue(schedule(), new Date("2026-12-07T07:30:00Z"));
		expect(due.toISOString()).toBe("2026-12-07T07:00:00.000Z");
		expect(new Date(period.start).toISOString()).toBe("2026-11-29T23:00:00.000Z");
		expect(new Date(period.end).toISOString()).toBe("2026-12-06T23:00:00.000Z");
		expect(periodLabel(period, "Europe/Berlin")).toBe("30 Nov – 6 Dec 2026");
	});

	it("before the hour on the weekday, the last due time is a week earlier", () => {
		const { due } = lastDue(schedule(), new Date("2026-12-07T06:59:00Z"));
		expect(due.toISOString()).toBe("2026-11-30T07:00:00.000Z");
		expect(nextDue(schedule(), new Date("2026-12-07T06:59:00Z")).toISOString()).toBe("2026-12-07T07:00:00.000Z");
	});

	it("covers the week of the DST change with its 167 hours, at the local hour", () => {
		// Europe/Berlin springs forward on Sunday 29 March 2026.
		const { due, period } = lastDue(schedule(), new Date("2026-03-30T10:00:00Z"));
		expect(due.toISOString()).toBe("2026-03-30T06:00:00.000Z");
		expect((period.end - period.start) / 3_600_000).toBe(167);
	});

	it("mails a week once, and a schedule made after this week's time starts with the next week", () => {
		const now = new Date("2026-12-07T07:30:00Z");
		const due = periodDue(schedule(), now);
		expect(due).not.toBeNull();
		expect(periodDue(schedule({ lastPeriodStart: due!.start }), now)).toBeNull();
		expect(periodDue(schedule({ createdAt: "2026-12-07T07:10:00.000Z" }), now)).toBeNull();
	});

	it("handles a Sunday-evening schedule in a timezone far from UTC", () => {
		const s = schedule({ weekday: 7, hour: 23, timezone: "Pacific/Kiritimati" });
		const { due } = lastDue(s, new Date("2026-12-06T10:00:00Z")); // Monday 7 Dec 00:00 in Kiritimati (UTC+14)
		expect(due.toISOString()).toBe("2026-12-06T09:00:00.000Z"); // Sunday 6 Dec 23:00 there
	});
});
