import { DateTime } from "luxon";
import {
	contentValidityEdges,
	displayZone,
	earliestInstant,
	itemsValidAt,
	resolve,
	targets,
	timeline,
	type DisplayTarget,
	type Override,
	type ScheduleRule
} from "../../services/scheduling/engine";

function display(timezone: string | null, extra: Partial<DisplayTarget> = {}): DisplayTarget {
	return { id: "d1", timezone, tenantTimezone: "UTC", groupIds: ["g1"], tags: ["lobby"], defaultPlaylistId: "pl-default", ...extra };
}

let seq = 0;
function rule(extra: Partial<ScheduleRule>): ScheduleRule {
	seq++;
	return {
		id: `s${seq}`,
		name: `rule ${seq}`,
		playlistId: `pl-${seq}`,
		priority: 0,
		createdAt: "2026-01-01T00:00:00.000Z",
		targets: { displayIds: ["d1"] },
		...extra
	};
}

function override(extra: Partial<Override>): Override {
	return { id: "o1", name: "Fire alarm", playlistId: "pl-emergency", startsAt: "2026-05-04T10:00:00.000Z", endsAt: "2026-05-04T11:00:00.000Z", ...extra };
}

function at(iso: string): Date {
	return new Date(iso);
}

/** The UTC instant of a wall time in a zone (luxon), for readable expectations. */
function wall(zone: string, local: string): string {
	const dt = DateTime.fromISO(local, { zone });
	return dt.toUTC().toISO() ?? "";
}

const WEEKDAYS = [1, 2, 3, 4, 5];

describe("scheduling engine: zone and targeting", () => {
	it("takes the display zone, then the tenant zone, then UTC", () => {
		expect(displayZone({ timezone: "Europe/Paris", tenantTimezone: "America/New_York" })).toBe("Europe/Paris");
		expect(displayZone({ timezone: null, tenantTimezone: "America/New_York" })).toBe("America/New_York");
		expect(displayZone({ timezone: "Not/AZone", tenantTimezone: "Asia/Tokyo" })).toBe("Asia/Tokyo");
		expect(displayZone({ timezone: null, tenantTimezone: "" })).toBe("UTC");
		const r = resolve(display(null, { tenantTimezone: "Asia/Tokyo" }), [], [], at("2026-05-04T00:00:00Z"));
		expect(r.timezone).toBe("Asia/Tokyo");
		expect(r.localTime).toBe("2026-05-04T09:00:00+09:00");
	});

	it("targets by display id, group and tag; exclusions win; absent targets cover everyone", () => {
		const d = display("UTC");
		expect(targets({ targets: { displayIds: ["d1"] } }, d)).toBe(true);
		expect(targets({ targets: { groupIds: ["g2", "g1"] } }, d)).toBe(true);
		expect(targets({ targets: { tags: ["lobby"] } }, d)).toBe(true);
		expect(targets({ targets: { tags: ["Lobby"], groupIds: ["g9"], displayIds: ["d2"] } }, d)).toBe(false);
		expect(targets({ targets: {} }, d)).toBe(false);
		expect(targets({ targets: { groupIds: ["g1"] }, excludeDisplayIds: ["d1"] }, d)).toBe(false);
		expect(targets({}, d)).toBe(true);
		expect(targets({ excludeDisplayIds: ["d1"] }, d)).toBe(false);
	});

	it("explains not targeted and excluded schedules and falls back to the default playlist", () => {
		const a = rule({ name: "Other group", targets: { groupIds: ["g9"] }, priority: 9 });
		const b = rule({ name: "Excluded", targets: { tags: ["lobby"] }, excludeDisplayIds: ["d1"], priority: 8 });
		const c = rule({ name: "By tag", targets: { tags: ["lobby"] }, priority: 1 });
		const r = resolve(display("UTC"), [a, b, c], [], at("2026-05-04T12:00:00Z"));
		expect(r.source).toBe("schedule");
		expect(r.scheduleId).toBe(c.id);
		expect(r.candidates).toEqual([
			{ scheduleId: a.id, name: "Other group", priority: 9, matched: false, reason: "not targeted" },
			{ scheduleId: b.id, name: "Excluded", priority: 8, matched: false, reason: "excluded" },
			{ scheduleId: c.id, name: "By tag", priority: 1, matched: true, reason: "active (all day)" }
		]);
		const r2 = resolve(display("UTC"), [a, b], [], at("2026-05-04T12:00:00Z"));
		expect(r2).toMatchObject({ source: "default", playlistId: "pl-default", scheduleId: null, validUntil: null });
	});

	it("answers none without schedules or default playlist, valid forever", () => {
		const r = resolve(display("UTC", { defaultPlaylistId: null }), [], [], at("2026-05-04T12:00:00Z"));
		expect(r).toEqual({
			at: "2026-05-04T12:00:00.000Z",
			timezone: "UTC",
			localTime: "2026-05-04T12:00:00Z",
			source: "none",
			playlistId: null,
			layoutId: null,
			scheduleId: null,
			overrideId: null,
			candidates: [],
			validUntil: null
		});
	});
});

describe("scheduling engine: priorities and ties", () => {
	it("highest priority wins and lower ones say why", () => {
		const low = rule({ name: "Low", priority: 1 });
		const high = rule({ name: "High", priority: 7 });
		const r = resolve(display("UTC"), [low, high], [], at("2026-05-04T12:00:00Z"));
		expect(r.scheduleId).toBe(high.id);
		expect(r.playlistId).toBe(high.playlistId);
		expect(r.candidates.map((c) => [c.scheduleId, c.matched, c.reason])).toEqual([
			[high.id, true, "active (all day)"],
			[low.id, true, 'lower priority than "High" (7)']
		]);
	});

	it("equal priority: the newer createdAt wins whatever the input order", () => {
		const older = rule({ name: "Older", priority: 3, createdAt: "2026-02-01T00:00:00.000Z" });
		const newer = rule({ name: "Newer", priority: 3, createdAt: "2026-02-01T00:00:00.001Z" });
		for (const list of [
			[older, newer],
			[newer, older]
		]) {
			const r = resolve(display("UTC"), list, [], at("2026-05-04T12:00:00Z"));
			expect(r.scheduleId).toBe(newer.id);
			expect(r.candidates.find((c) => c.scheduleId === older.id)).toMatchObject({ matched: true, reason: 'older than "Newer"' });
		}
	});

	it("equal priority and createdAt: the smaller id wins", () => {
		const b = rule({ id: "b", name: "B", priority: 3 });
		const a = rule({ id: "a", name: "A", priority: 3 });
		const r1 = resolve(display("UTC"), [b, a], [], at("2026-05-04T12:00:00Z"));
		const r2 = resolve(display("UTC"), [a, b], [], at("2026-05-04T12:00:00Z"));
		expect(r1.scheduleId).toBe("a");
		expect(r2).toEqual(r1);
		expect(r1.candidates[1]).toMatchObject({ scheduleId: "b", reason: 'same priority and age as "A", larger id' });
	});

	it("a higher-priority window takes over and validUntil ignores edges that change nothing", () => {
		const base = rule({ name: "Base", priority: 0 });
		const top = rule({ name: "Top", priority: 5, daysOfWeek: WEEKDAYS, startTime: "09:00", endTime: "17:00" });
		const lunch = rule({ name: "Lunch", priority: 1, startTime: "12:00", endTime: "13:00" });
		const r = resolve(display("UTC"), [base, top, lunch], [], at("2026-05-04T10:00:00Z"));
		expect(r.scheduleId).toBe(top.id);
		expect(r.validUntil).toBe("2026-05-04T17:00:00.000Z");
		const r2 = resolve(display("UTC"), [base, top, lunch], [], at("2026-05-04T17:00:00Z"));
		expect(r2.scheduleId).toBe(base.id);
		expect(r2.validUntil).toBe("2026-05-05T09:00:00.000Z");
		// Saturday lunch: the low rule's window shows.
		const r3 = resolve(display("UTC"), [base, top, lunch], [], at("2026-05-09T11:00:00Z"));
		expect(r3.scheduleId).toBe(base.id);
		expect(r3.validUntil).toBe("2026-05-09T12:00:00.000Z");
		expect(r3.candidates.find((c) => c.scheduleId === top.id)?.reason).toBe("not on Saturday");
		expect(r3.candidates.find((c) => c.scheduleId === lunch.id)?.reason).toBe("outside 12:00–13:00");
	});
});

describe("scheduling engine: New York weekday 09:00–17:00 over an all-day default across DST", () => {
	const ny = "America/New_York";
	const weekday = rule({ name: "Office hours", priority: 5, daysOfWeek: WEEKDAYS, startTime: "09:00", endTime: "17:00", createdAt: "2026-01-02T00:00:00Z" });
	const allDay = rule({ name: "All day", priority: 0, createdAt: "2026-01-03T00:00:00Z" });

	const cases: Array<[string, string, string, string]> = [
		// [label, local date, expected UTC of 09:00, expected UTC of 17:00]
		["Friday before March change (EST)", "2026-03-06", "2026-03-06T14:00:00.000Z", "2026-03-06T22:00:00.000Z"],
		["Monday after March change (EDT)", "2026-03-09", "2026-03-09T13:00:00.000Z", "2026-03-09T21:00:00.000Z"],
		["Friday before November change (EDT)", "2026-10-30", "2026-10-30T13:00:00.000Z", "2026-10-30T21:00:00.000Z"],
		["Monday after November change (EST)", "2026-11-02", "2026-11-02T14:00:00.000Z", "2026-11-02T22:00:00.000Z"]
	];

	for (const withAllDaySchedule of [true, false]) {
		const schedules = withAllDaySchedule ? [allDay, weekday] : [weekday];
		const fallback = withAllDaySchedule ? { source: "schedule", scheduleId: allDay.id, playlistId: allDay.playlistId } : { source: "default", scheduleId: null, playlistId: "pl-default" };
		const label = withAllDaySchedule ? "all-day schedule" : "display default playlist";
		for (const [name, day, nine, five] of cases) {
			it(`${name}, ${label}: 08:59 → fallback until 09:00; 09:00 → weekday until 17:00`, () => {
				expect(wall(ny, `${day}T09:00`)).toBe(nine);
				const before = resolve(display(ny), schedules, [], at(wall(ny, `${day}T08:59`)));
				expect(before).toMatchObject({ ...fallback, validUntil: nine });
				expect(before.localTime).toBe(DateTime.fromISO(`${day}T08:59`, { zone: ny }).toISO({ suppressMilliseconds: true }));
				expect(before.candidates.find((c) => c.scheduleId === weekday.id)).toMatchObject({ matched: false, reason: "outside 09:00–17:00" });
				const on = resolve(display(ny), schedules, [], at(nine));
				expect(on).toMatchObject({ source: "schedule", scheduleId: weekday.id, playlistId: weekday.playlistId, validUntil: five });
				const after = resolve(display(ny), schedules, [], at(five));
				expect(after).toMatchObject(fallback);
			});
		}
	}

	it("Friday 17:00 before the March change: valid until Monday 09:00 EDT", () => {
		const r = resolve(display(ny), [allDay, weekday], [], at("2026-03-06T22:00:00Z"));
		expect(r.scheduleId).toBe(allDay.id);
		expect(r.validUntil).toBe("2026-03-09T13:00:00.000Z");
	});

	it("Friday 17:00 before the November change: valid until Monday 09:00 EST", () => {
		const r = resolve(display(ny), [weekday], [], at("2026-10-30T21:00:00Z"));
		expect(r.source).toBe("default");
		expect(r.validUntil).toBe("2026-11-02T14:00:00.000Z");
	});

	it("DST Sunday itself is a weekend day in both changes", () => {
		for (const t of ["2026-03-08T15:00:00Z", "2026-11-01T15:00:00Z"]) {
			const r = resolve(display(ny), [weekday], [], at(t));
			expect(r.source).toBe("default");
			expect(r.candidates[0].reason).toBe("not on Sunday");
		}
	});
});

describe("scheduling engine: midnight-crossing windows", () => {
	const night = rule({ name: "Night", priority: 2, daysOfWeek: [5], startTime: "22:00", endTime: "06:00" });
	const d = display("UTC");

	it("a Friday-only 22:00–06:00 window runs Friday 22:00 to Saturday 06:00", () => {
		// 2026-05-08 is a Friday.
		expect(resolve(d, [night], [], at("2026-05-08T21:59:00Z"))).toMatchObject({ source: "default", validUntil: "2026-05-08T22:00:00.000Z" });
		expect(resolve(d, [night], [], at("2026-05-08T22:00:00Z"))).toMatchObject({ source: "schedule", scheduleId: night.id, validUntil: "2026-05-09T06:00:00.000Z" });
		expect(resolve(d, [night], [], at("2026-05-09T05:59:59.999Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-09T06:00:00.000Z" });
		const sat = resolve(d, [night], [], at("2026-05-09T06:00:00Z"));
		expect(sat).toMatchObject({ source: "default", validUntil: "2026-05-15T22:00:00.000Z" });
		expect(sat.candidates[0].reason).toBe("not on Saturday");
		// Thursday night → Friday early morning is not covered.
		const fri = resolve(d, [night], [], at("2026-05-08T03:00:00Z"));
		expect(fri.source).toBe("default");
		expect(fri.candidates[0].reason).toBe("outside 22:00–06:00");
	});

	it("the date range applies to the start day", () => {
		const endsFriday = { ...night, endDate: "2026-05-08" };
		expect(resolve(d, [endsFriday], [], at("2026-05-09T03:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-09T06:00:00.000Z" });
		const after = resolve(d, [endsFriday], [], at("2026-05-09T06:00:00Z"));
		expect(after).toMatchObject({ source: "default", validUntil: null });
		expect(after.candidates[0].reason).toBe("after 2026-05-08");
		const startsSaturday = { ...night, startDate: "2026-05-09" };
		const r = resolve(d, [startsSaturday], [], at("2026-05-09T03:00:00Z"));
		expect(r.source).toBe("default");
		expect(r.candidates[0].reason).toBe("not on Saturday");
		expect(r.validUntil).toBe("2026-05-15T22:00:00.000Z");
	});

	it("equal start and end is a 24-hour window from the start", () => {
		const day = rule({ startTime: "12:00", endTime: "12:00", daysOfWeek: [1] });
		expect(resolve(d, [day], [], at("2026-05-05T11:59:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-05T12:00:00.000Z" });
		expect(resolve(d, [day], [], at("2026-05-04T11:59:00Z"))).toMatchObject({ source: "default", validUntil: "2026-05-04T12:00:00.000Z" });
	});

	it("only a start time runs to midnight; only an end time runs from midnight", () => {
		const evening = rule({ startTime: "18:00" });
		expect(resolve(d, [evening], [], at("2026-05-04T20:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-05T00:00:00.000Z" });
		const morning = rule({ endTime: "06:00" });
		expect(resolve(d, [morning], [], at("2026-05-04T00:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-04T06:00:00.000Z" });
		expect(resolve(d, [morning], [], at("2026-05-04T06:00:00Z")).candidates[0].reason).toBe("outside 00:00–06:00");
	});

	it("a midnight-crossing window in New York uses local midnight", () => {
		const ny = display("America/New_York");
		const r = resolve(ny, [night], [], at("2026-05-09T03:00:00Z")); // Friday 23:00 EDT
		expect(r).toMatchObject({ source: "schedule", validUntil: "2026-05-09T10:00:00.000Z" });
	});
});

describe("scheduling engine: date edges in the display's zone", () => {
	const june = rule({ name: "June", priority: 1, startDate: "2026-06-01", endDate: "2026-06-30" });

	it("a UTC instant that is still the previous day locally is before the start date", () => {
		const r = resolve(display("America/New_York"), [june], [], at("2026-06-01T03:00:00Z"));
		expect(r.localTime).toBe("2026-05-31T23:00:00-04:00");
		expect(r.source).toBe("default");
		expect(r.candidates[0]).toMatchObject({ matched: false, reason: "before 2026-06-01" });
		expect(r.validUntil).toBe("2026-06-01T04:00:00.000Z");
	});

	it("the end date is inclusive up to local midnight", () => {
		const r = resolve(display("America/New_York"), [june], [], at("2026-07-01T03:59:59Z"));
		expect(r).toMatchObject({ source: "schedule", validUntil: "2026-07-01T04:00:00.000Z" });
		const r2 = resolve(display("America/New_York"), [june], [], at("2026-07-01T04:00:00Z"));
		expect(r2).toMatchObject({ source: "default", validUntil: null });
		expect(r2.candidates[0].reason).toBe("after 2026-06-30");
	});

	it("east of UTC the local day starts before UTC midnight", () => {
		const r = resolve(display("Asia/Tokyo"), [june], [], at("2026-05-31T15:00:00Z"));
		expect(r).toMatchObject({ source: "schedule", validUntil: "2026-06-30T15:00:00.000Z" });
		expect(resolve(display("Asia/Tokyo"), [june], [], at("2026-05-31T14:59:59Z")).validUntil).toBe("2026-05-31T15:00:00.000Z");
	});

	it("a weekday is the local weekday", () => {
		const monday = rule({ daysOfWeek: [1] });
		// 2026-05-04 is a Monday; 02:00Z is still Sunday in New York.
		const r = resolve(display("America/New_York"), [monday], [], at("2026-05-04T02:00:00Z"));
		expect(r.candidates[0].reason).toBe("not on Sunday");
		expect(r.validUntil).toBe("2026-05-04T04:00:00.000Z");
	});

	it("a far start date is the next edge; a rule that never matches again does not count", () => {
		const later = rule({ startDate: "2026-12-24", endDate: "2026-12-26" });
		const past = rule({ startDate: "2025-12-24", endDate: "2025-12-26", priority: 9 });
		const r = resolve(display("Europe/London"), [later, past], [], at("2026-05-04T12:00:00Z"));
		expect(r.source).toBe("default");
		expect(r.validUntil).toBe("2026-12-24T00:00:00.000Z");
		expect(r.candidates.find((c) => c.scheduleId === past.id)?.reason).toBe("after 2025-12-26");
		const inside = resolve(display("Europe/London"), [later, past], [], at("2026-12-25T12:00:00Z"));
		expect(inside).toMatchObject({ scheduleId: later.id, validUntil: "2026-12-27T00:00:00.000Z" });
	});

	it("a start date beyond the search horizon gives a conservative validUntil", () => {
		const far = rule({ startDate: "2028-01-01" });
		const r = resolve(display("UTC"), [far], [], at("2026-05-04T12:00:00Z"));
		expect(r.source).toBe("default");
		// 400 days ahead, rounded up to the 30-day grid: the same answer a minute or a week later.
		expect(r.validUntil).toBe("2027-07-01T00:00:00.000Z");
		expect(resolve(display("UTC"), [far], [], at("2026-05-11T09:00:00Z")).validUntil).toBe(r.validUntil);
	});

	it("invalid rule fields never match", () => {
		const bad = rule({ startTime: "25:00" });
		const r = resolve(display("UTC"), [bad], [], at("2026-05-04T12:00:00Z"));
		expect(r.candidates[0]).toMatchObject({ matched: false, reason: "invalid startTime" });
		expect(r.validUntil).toBeNull();
	});
});

describe("scheduling engine: DST in America/New_York", () => {
	const ny = display("America/New_York");

	it("a window starting in the skipped hour starts at 03:00 EDT", () => {
		const w = rule({ startTime: "02:30", endTime: "04:00" });
		const before = resolve(ny, [w], [], at("2026-03-08T06:59:00Z")); // 01:59 EST
		expect(before).toMatchObject({ source: "default", validUntil: "2026-03-08T07:00:00.000Z" });
		const on = resolve(ny, [w], [], at("2026-03-08T07:00:00Z"));
		expect(on.localTime).toBe("2026-03-08T03:00:00-04:00");
		expect(on).toMatchObject({ source: "schedule", validUntil: "2026-03-08T08:00:00.000Z" });
		// The next day is back to normal: 02:30 EDT.
		expect(resolve(ny, [w], [], at("2026-03-08T08:00:00Z")).validUntil).toBe("2026-03-09T06:30:00.000Z");
	});

	it("a window ending in the skipped hour ends at 03:00 EDT", () => {
		const w = rule({ startTime: "01:00", endTime: "02:30" });
		expect(resolve(ny, [w], [], at("2026-03-08T06:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-03-08T07:00:00.000Z" });
	});

	it("a window wholly inside the skipped hour does not play that day", () => {
		const w = rule({ startTime: "02:10", endTime: "02:40" });
		const r = resolve(ny, [w], [], at("2026-03-08T06:00:00Z"));
		expect(r.source).toBe("default");
		expect(r.validUntil).toBe("2026-03-09T06:10:00.000Z");
		expect(resolve(ny, [w], [], at("2026-03-07T07:10:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-03-07T07:40:00.000Z" });
	});

	it("the repeated hour is played once: 01:15–01:45 covers only its first occurrence", () => {
		const w = rule({ startTime: "01:15", endTime: "01:45" });
		expect(resolve(ny, [w], [], at("2026-11-01T05:14:00Z"))).toMatchObject({ source: "default", validUntil: "2026-11-01T05:15:00.000Z" });
		expect(resolve(ny, [w], [], at("2026-11-01T05:15:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-11-01T05:45:00.000Z" });
		const second = resolve(ny, [w], [], at("2026-11-01T06:20:00Z"));
		expect(second.localTime).toBe("2026-11-01T01:20:00-05:00");
		expect(second).toMatchObject({ source: "default", validUntil: "2026-11-02T06:15:00.000Z" });
	});

	it("01:00–02:00 on fall-back day starts at the first 01:00 and is not restarted at the second", () => {
		const w = rule({ startTime: "01:00", endTime: "02:00" });
		expect(resolve(ny, [w], [], at("2026-11-01T04:59:00Z")).validUntil).toBe("2026-11-01T05:00:00.000Z");
		const r = resolve(ny, [w], [], at("2026-11-01T05:00:00Z"));
		expect(r.localTime).toBe("2026-11-01T01:00:00-04:00");
		expect(r).toMatchObject({ source: "schedule", validUntil: "2026-11-01T07:00:00.000Z" });
		expect(timeline(ny, [w], [], new Date("2026-11-01T04:00:00Z"), new Date("2026-11-01T08:00:00Z"))).toEqual([
			{ start: "2026-11-01T04:00:00.000Z", end: "2026-11-01T05:00:00.000Z", source: "default", playlistId: "pl-default", layoutId: null, scheduleId: null },
			{ start: "2026-11-01T05:00:00.000Z", end: "2026-11-01T07:00:00.000Z", source: "schedule", playlistId: w.playlistId, layoutId: null, scheduleId: w.id },
			{ start: "2026-11-01T07:00:00.000Z", end: "2026-11-01T08:00:00.000Z", source: "default", playlistId: "pl-default", layoutId: null, scheduleId: null }
		]);
	});

	it("a window starting in the repeated hour starts at its first occurrence only", () => {
		const w = rule({ startTime: "01:30", endTime: "03:00" });
		expect(resolve(ny, [w], [], at("2026-11-01T05:29:00Z")).validUntil).toBe("2026-11-01T05:30:00.000Z");
		expect(resolve(ny, [w], [], at("2026-11-01T06:10:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-11-01T08:00:00.000Z" });
	});

	it("24-hour windows and all-day rules leave no gap across either change", () => {
		const chain = rule({ startTime: "02:00", endTime: "02:00" });
		for (const t of ["2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z", "2026-11-01T05:59:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"]) {
			const r = resolve(ny, [chain], [], at(t));
			expect(r.source).toBe("schedule");
			expect(r.validUntil).toBeNull();
		}
		const allDay = rule({});
		expect(timeline(ny, [allDay], [], new Date("2026-10-25T00:00:00Z"), new Date("2026-11-08T00:00:00Z"))).toEqual([
			{ start: "2026-10-25T00:00:00.000Z", end: "2026-11-08T00:00:00.000Z", source: "schedule", playlistId: allDay.playlistId, layoutId: null, scheduleId: allDay.id }
		]);
	});

	it("the DST day is 23 and 25 hours long for a day-limited rule", () => {
		const spring = rule({ startDate: "2026-03-08", endDate: "2026-03-08" });
		expect(resolve(ny, [spring], [], at("2026-03-08T05:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-03-09T04:00:00.000Z" });
		const fall = rule({ startDate: "2026-11-01", endDate: "2026-11-01" });
		expect(resolve(ny, [fall], [], at("2026-11-01T04:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-11-02T05:00:00.000Z" });
	});
});

describe("scheduling engine: DST in Europe/London", () => {
	const london = display("Europe/London");
	const weekday = rule({ priority: 5, daysOfWeek: WEEKDAYS, startTime: "09:00", endTime: "17:00" });

	it("weekday 09:00–17:00 on both sides of the March and October changes", () => {
		const expectations: Array<[string, string, string]> = [
			["2026-03-27T08:59:00Z", "default", "2026-03-27T09:00:00.000Z"],
			["2026-03-27T09:00:00Z", "schedule", "2026-03-27T17:00:00.000Z"],
			["2026-03-30T07:59:00Z", "default", "2026-03-30T08:00:00.000Z"],
			["2026-03-30T08:00:00Z", "schedule", "2026-03-30T16:00:00.000Z"],
			["2026-10-23T07:59:00Z", "default", "2026-10-23T08:00:00.000Z"],
			["2026-10-23T08:00:00Z", "schedule", "2026-10-23T16:00:00.000Z"],
			["2026-10-23T16:00:00Z", "default", "2026-10-26T09:00:00.000Z"],
			["2026-10-26T08:59:00Z", "default", "2026-10-26T09:00:00.000Z"],
			["2026-10-26T09:00:00Z", "schedule", "2026-10-26T17:00:00.000Z"]
		];
		for (const [t, source, until] of expectations) {
			expect({ t, ...resolve(london, [weekday], [], at(t)) }).toMatchObject({ t, source, validUntil: until });
		}
	});

	it("01:30 on the spring-forward day starts at 02:00 BST", () => {
		const w = rule({ startTime: "01:30", endTime: "03:00" });
		expect(resolve(london, [w], [], at("2026-03-29T00:59:00Z")).validUntil).toBe("2026-03-29T01:00:00.000Z");
		const r = resolve(london, [w], [], at("2026-03-29T01:00:00Z"));
		expect(r.localTime).toBe("2026-03-29T02:00:00+01:00");
		expect(r).toMatchObject({ source: "schedule", validUntil: "2026-03-29T02:00:00.000Z" });
	});

	it("01:30–02:30 on the fall-back day runs from the first 01:30 BST to 02:30 GMT", () => {
		const w = rule({ startTime: "01:30", endTime: "02:30" });
		expect(resolve(london, [w], [], at("2026-10-25T00:29:00Z")).validUntil).toBe("2026-10-25T00:30:00.000Z");
		expect(resolve(london, [w], [], at("2026-10-25T00:30:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-10-25T02:30:00.000Z" });
		const end = resolve(london, [w], [], at("2026-10-25T02:30:00Z"));
		expect(end).toMatchObject({ source: "default", validUntil: "2026-10-26T01:30:00.000Z" });
	});
});

describe("scheduling engine: Australia/Lord_Howe 30-minute shift", () => {
	const lh = display("Australia/Lord_Howe");

	it("luxon agrees on the 2026 transitions", () => {
		expect(DateTime.fromISO("2026-04-04T14:59:00Z").setZone("Australia/Lord_Howe").toISO({ suppressMilliseconds: true })).toBe("2026-04-05T01:59:00+11:00");
		expect(DateTime.fromISO("2026-04-04T15:00:00Z").setZone("Australia/Lord_Howe").toISO({ suppressMilliseconds: true })).toBe("2026-04-05T01:30:00+10:30");
		expect(DateTime.fromISO("2026-10-03T15:29:00Z").setZone("Australia/Lord_Howe").toISO({ suppressMilliseconds: true })).toBe("2026-10-04T01:59:00+10:30");
		expect(DateTime.fromISO("2026-10-03T15:30:00Z").setZone("Australia/Lord_Howe").toISO({ suppressMilliseconds: true })).toBe("2026-10-04T02:30:00+11:00");
	});

	it("April: 01:40–01:50 plays at its first occurrence only", () => {
		const w = rule({ startTime: "01:40", endTime: "01:50" });
		expect(resolve(lh, [w], [], at("2026-04-04T14:40:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-04-04T14:50:00.000Z" });
		const second = resolve(lh, [w], [], at("2026-04-04T15:15:00Z"));
		expect(second.localTime).toBe("2026-04-05T01:45:00+10:30");
		expect(second).toMatchObject({ source: "default", validUntil: "2026-04-05T15:10:00.000Z" });
	});

	it("October: a window starting at 02:10 starts at 02:30 (+11), the first valid instant", () => {
		const w = rule({ startTime: "02:10", endTime: "03:00" });
		expect(resolve(lh, [w], [], at("2026-10-03T15:29:00Z"))).toMatchObject({ source: "default", validUntil: "2026-10-03T15:30:00.000Z" });
		expect(resolve(lh, [w], [], at("2026-10-03T15:30:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-10-03T16:00:00.000Z" });
		// The day before: 02:10 +10:30.
		expect(resolve(lh, [w], [], at("2026-10-02T15:00:00Z")).validUntil).toBe("2026-10-02T15:40:00.000Z");
		const gap = rule({ startTime: "02:05", endTime: "02:25" });
		expect(resolve(lh, [gap], [], at("2026-10-03T15:00:00Z"))).toMatchObject({ source: "default", validUntil: "2026-10-04T15:05:00.000Z" });
	});

	it("weekday 09:00–17:00 follows the half-hour shift", () => {
		const weekday = rule({ priority: 5, daysOfWeek: WEEKDAYS, startTime: "09:00", endTime: "17:00" });
		// Friday 2026-04-03 (+11) and Monday 2026-04-06 (+10:30).
		expect(resolve(lh, [weekday], [], at("2026-04-02T21:59:00Z")).validUntil).toBe("2026-04-02T22:00:00.000Z");
		expect(resolve(lh, [weekday], [], at("2026-04-03T06:00:00Z"))).toMatchObject({ source: "default", validUntil: "2026-04-05T22:30:00.000Z" });
		expect(resolve(lh, [weekday], [], at("2026-04-05T22:30:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-04-06T06:30:00.000Z" });
	});
});

describe("scheduling engine: overrides", () => {
	const d = display("UTC");
	const base = rule({ name: "Base", priority: 10 });

	it("an upcoming override is the next edge; an active one beats every schedule until its end", () => {
		const o = override({});
		expect(resolve(d, [base], [o], at("2026-05-04T09:00:00Z"))).toMatchObject({ source: "schedule", validUntil: "2026-05-04T10:00:00.000Z" });
		const r = resolve(d, [base], [o], at("2026-05-04T10:00:00Z"));
		expect(r).toMatchObject({ source: "override", playlistId: "pl-emergency", overrideId: "o1", scheduleId: null, validUntil: "2026-05-04T11:00:00.000Z" });
		expect(r.candidates[0]).toMatchObject({ matched: true, reason: 'overridden by "Fire alarm"' });
		expect(resolve(d, [base], [o], at("2026-05-04T11:00:00Z"))).toMatchObject({ source: "schedule", scheduleId: base.id, overrideId: null, validUntil: null });
	});

	it("beats the default playlist and none", () => {
		const o = override({});
		expect(resolve(display("UTC", { defaultPlaylistId: null }), [], [o], at("2026-05-04T10:30:00Z"))).toMatchObject({ source: "override", validUntil: "2026-05-04T11:00:00.000Z" });
		expect(resolve(display("UTC", { defaultPlaylistId: null }), [], [o], at("2026-05-04T11:00:00Z"))).toMatchObject({ source: "none", validUntil: null });
	});

	it("an override for other displays is ignored; targets and exclusions apply", () => {
		const other = override({ targets: { displayIds: ["d2"] } });
		expect(resolve(d, [base], [other], at("2026-05-04T10:30:00Z"))).toMatchObject({ source: "schedule", validUntil: null });
		const byTag = override({ targets: { tags: ["lobby"] } });
		expect(resolve(d, [base], [byTag], at("2026-05-04T10:30:00Z")).source).toBe("override");
		const excluded = override({ excludeDisplayIds: ["d1"] });
		expect(resolve(d, [base], [excluded], at("2026-05-04T10:30:00Z")).source).toBe("schedule");
	});

	it("several active overrides: the one that started last wins, then the smaller id", () => {
		const first = override({ id: "o-a", startsAt: "2026-05-04T09:00:00Z", endsAt: "2026-05-04T12:00:00Z", playlistId: "pl-a" });
		const second = override({ id: "o-b", startsAt: "2026-05-04T10:00:00Z", endsAt: "2026-05-04T11:00:00Z", playlistId: "pl-b" });
		expect(resolve(d, [base], [first, second], at("2026-05-04T09:30:00Z"))).toMatchObject({ overrideId: "o-a", validUntil: "2026-05-04T10:00:00.000Z" });
		expect(resolve(d, [base], [second, first], at("2026-05-04T10:30:00Z"))).toMatchObject({ overrideId: "o-b", validUntil: "2026-05-04T11:00:00.000Z" });
		expect(resolve(d, [base], [first, second], at("2026-05-04T11:00:00Z"))).toMatchObject({ overrideId: "o-a", validUntil: "2026-05-04T12:00:00.000Z" });
		const twin = override({ id: "o-0", startsAt: "2026-05-04T10:00:00Z", endsAt: "2026-05-04T10:45:00Z", playlistId: "pl-0" });
		expect(resolve(d, [base], [second, twin], at("2026-05-04T10:30:00Z"))).toMatchObject({ overrideId: "o-0", validUntil: "2026-05-04T10:45:00.000Z" });
	});

	it("an ended or empty override does not count", () => {
		const ended = override({ startsAt: "2026-05-01T00:00:00Z", endsAt: "2026-05-02T00:00:00Z" });
		const empty = override({ id: "o2", startsAt: "2026-05-05T00:00:00Z", endsAt: "2026-05-05T00:00:00Z" });
		expect(resolve(d, [base], [ended, empty], at("2026-05-04T10:30:00Z"))).toMatchObject({ source: "schedule", validUntil: null });
	});
});

describe("scheduling engine: content validity", () => {
	const items = [
		{ contentId: "c1" },
		{ contentId: "c2", validFrom: "2026-05-04T12:00:00Z" },
		{ contentId: "c3", validUntil: "2026-05-04T18:00:00Z" },
		{ contentId: "c4", validFrom: "2026-05-04T08:00:00Z", validUntil: "2026-05-04T12:00:00Z" }
	];

	it("validFrom is inclusive, validUntil exclusive; the next edge is validUntil", () => {
		expect(itemsValidAt(items, at("2026-05-04T07:59:59.999Z"))).toEqual({ items: [items[0], items[2]], validUntil: "2026-05-04T08:00:00.000Z" });
		expect(itemsValidAt(items, at("2026-05-04T08:00:00Z"))).toEqual({ items: [items[0], items[2], items[3]], validUntil: "2026-05-04T12:00:00.000Z" });
		expect(itemsValidAt(items, at("2026-05-04T12:00:00Z"))).toEqual({ items: [items[0], items[1], items[2]], validUntil: "2026-05-04T18:00:00.000Z" });
		expect(itemsValidAt(items, at("2026-05-04T18:00:00Z"))).toEqual({ items: [items[0], items[1]], validUntil: null });
	});

	it("lists the edges sorted and unique; null fields are unbounded", () => {
		expect(contentValidityEdges([...items, { contentId: "c5", validFrom: null, validUntil: null }])).toEqual([
			"2026-05-04T08:00:00.000Z",
			"2026-05-04T12:00:00.000Z",
			"2026-05-04T18:00:00.000Z"
		]);
		expect(itemsValidAt([{ contentId: "x", validFrom: null }], at("2026-05-04T00:00:00Z"))).toEqual({ items: [{ contentId: "x", validFrom: null }], validUntil: null });
	});

	it("combines with the schedule answer: the earlier edge wins", () => {
		const w = rule({ startTime: "09:00", endTime: "17:00" });
		const r = resolve(display("UTC"), [w], [], at("2026-05-04T10:00:00Z"));
		const content = itemsValidAt(items, at("2026-05-04T10:00:00Z"));
		expect(earliestInstant(r.validUntil, content.validUntil)).toBe("2026-05-04T12:00:00.000Z");
		expect(earliestInstant(null, "2026-05-04T17:00:00Z")).toBe("2026-05-04T17:00:00.000Z");
		expect(earliestInstant(null, undefined)).toBeNull();
	});
});

describe("scheduling engine: timeline", () => {
	it("walks a week of New York across the spring change with exact boundaries", () => {
		const ny = display("America/New_York");
		const weekday = rule({ priority: 5, daysOfWeek: WEEKDAYS, startTime: "09:00", endTime: "17:00" });
		const night = rule({ priority: 2, daysOfWeek: [5], startTime: "22:00", endTime: "06:00" });
		const o = override({ startsAt: "2026-03-09T15:00:00Z", endsAt: "2026-03-09T15:30:00Z" });
		const segs = timeline(ny, [weekday, night], [o], new Date("2026-03-06T05:00:00Z"), new Date("2026-03-10T04:00:00Z"));
		expect(segs.map((s) => [s.start, s.end, s.source, s.scheduleId])).toEqual([
			["2026-03-06T05:00:00.000Z", "2026-03-06T14:00:00.000Z", "default", null],
			["2026-03-06T14:00:00.000Z", "2026-03-06T22:00:00.000Z", "schedule", weekday.id],
			["2026-03-06T22:00:00.000Z", "2026-03-07T03:00:00.000Z", "default", null],
			["2026-03-07T03:00:00.000Z", "2026-03-07T11:00:00.000Z", "schedule", night.id],
			["2026-03-07T11:00:00.000Z", "2026-03-09T13:00:00.000Z", "default", null],
			["2026-03-09T13:00:00.000Z", "2026-03-09T15:00:00.000Z", "schedule", weekday.id],
			["2026-03-09T15:00:00.000Z", "2026-03-09T15:30:00.000Z", "override", null],
			["2026-03-09T15:30:00.000Z", "2026-03-09T21:00:00.000Z", "schedule", weekday.id],
			["2026-03-09T21:00:00.000Z", "2026-03-10T04:00:00.000Z", "default", null]
		]);
	});

	it("merges equal neighbours and is clipped to [from, to)", () => {
		const a = override({ id: "oa", startsAt: "2026-05-04T10:00:00Z", endsAt: "2026-05-04T11:00:00Z", playlistId: "same" });
		const b = override({ id: "ob", startsAt: "2026-05-04T11:00:00Z", endsAt: "2026-05-04T12:00:00Z", playlistId: "same" });
		expect(timeline(display("UTC"), [], [a, b], new Date("2026-05-04T10:30:00Z"), new Date("2026-05-04T13:00:00Z"))).toEqual([
			{ start: "2026-05-04T10:30:00.000Z", end: "2026-05-04T12:00:00.000Z", source: "override", playlistId: "same", layoutId: null, scheduleId: null },
			{ start: "2026-05-04T12:00:00.000Z", end: "2026-05-04T13:00:00.000Z", source: "default", playlistId: "pl-default", layoutId: null, scheduleId: null }
		]);
		expect(timeline(display("UTC"), [], [], new Date("2026-05-04T10:00:00Z"), new Date("2026-05-04T10:00:00Z"))).toEqual([]);
	});

	it("covers 31 days of many rules without gaps", () => {
		const rules = Array.from({ length: 30 }, (_, i) =>
			rule({ priority: i % 5, startTime: `${String(i % 24).padStart(2, "0")}:00`, endTime: `${String((i + 3) % 24).padStart(2, "0")}:30`, daysOfWeek: [(i % 7) + 1] })
		);
		const from = new Date("2026-10-15T00:00:00Z");
		const to = new Date("2026-11-15T00:00:00Z");
		// (How fast is the benchmark's business: npm run bench -- scheduling.)
		const segs = timeline(display("America/New_York"), rules, [], from, to);
		expect(segs[0].start).toBe(from.toISOString());
		expect(segs[segs.length - 1].end).toBe(to.toISOString());
		for (let i = 1; i < segs.length; i++) {
			expect(segs[i].start).toBe(segs[i - 1].end);
			expect([segs[i].source, segs[i].scheduleId]).not.toEqual([segs[i - 1].source, segs[i - 1].scheduleId]);
		}
		// Every segment agrees with resolve() at its start and just before its end.
		for (const s of segs) {
			const r = resolve(display("America/New_York"), rules, [], new Date(s.start));
			expect([r.source, r.scheduleId]).toEqual([s.source, s.scheduleId]);
			const last = resolve(display("America/New_York"), rules, [], new Date(Date.parse(s.end) - 1));
			expect([last.source, last.scheduleId]).toEqual([s.source, s.scheduleId]);
		}
	});
});
