/**
 * The engine's shortcuts (services/scheduling/engine.ts) against brute force, on random input:
 * - validUntil looks only at the rule edges that can change the current answer; here every minute
 *   of the next 30 hours is resolved instead, around DST transitions in zones with unusual rules,
 *   and validUntil must be exactly the first minute whose answer differs;
 * - localTime is written without luxon for most instants; it must read exactly as luxon writes it.
 */
import fc from "fast-check";
import { DateTime } from "luxon";
import { resolve, type DisplayTarget, type Override, type Resolution, type ScheduleRule, type TargetSet } from "../../services/scheduling/engine";

const MIN = 60_000;
const HOUR = 60 * MIN;
const SPAN = 30 * HOUR;

/** Zones and, for each, local days with a transition (or none) to centre the instants on. */
const AROUND: Array<[zone: string, days: string[]]> = [
	["America/New_York", ["2026-03-08", "2026-11-01"]],
	["Europe/London", ["2026-03-29", "2026-10-25"]],
	["Australia/Lord_Howe", ["2026-04-05", "2026-10-04"]], // 30-minute DST
	["Asia/Kolkata", ["2026-06-15"]],
	["UTC", ["2026-12-31"]]
];

function display(zone: string): DisplayTarget {
	return { id: "d1", timezone: zone, tenantTimezone: "UTC", groupIds: ["g1"], tags: ["lobby"], defaultPlaylistId: "pl-default" };
}

const hhmm = fc.integer({ min: 0, max: 24 * 60 - 1 }).map(m => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`);
/** A rule's times cluster on the small hours, where DST transitions happen, half the time. */
const time = fc.oneof(hhmm, fc.constantFrom("00:00", "01:30", "02:00", "02:15", "02:30", "03:00", "03:30"));
const localDate = fc.integer({ min: -3, max: 3 }).map(offset => (day: string) => DateTime.fromISO(day).plus({ days: offset }).toISODate() ?? day);

const ruleArb = fc.record(
	{
		priority: fc.integer({ min: 0, max: 3 }),
		createdAt: fc.constantFrom("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"),
		targets: fc.constantFrom<TargetSet[]>({ displayIds: ["d1"] }, { tags: ["lobby"] }, { groupIds: ["g1"] }, { tags: ["elsewhere"] }, {}),
		excluded: fc.boolean(),
		startDate: fc.option(localDate, { nil: undefined }),
		endDate: fc.option(localDate, { nil: undefined }),
		daysOfWeek: fc.option(fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 7 }), { nil: undefined }),
		startTime: fc.option(time, { nil: undefined }),
		endTime: fc.option(time, { nil: undefined }),
		layout: fc.boolean()
	},
	{ requiredKeys: ["priority", "createdAt", "targets", "excluded", "layout"] }
);

const overrideArb = fc.record({
	start: fc.integer({ min: -6 * 60, max: 30 * 60 }),
	minutes: fc.integer({ min: 1, max: 12 * 60 }),
	everyone: fc.boolean(),
	layout: fc.boolean()
});

const caseArb = fc.record({
	place: fc.constantFrom(...AROUND.flatMap(([zone, days]) => days.map(day => ({ zone, day })))),
	/** Where in the 48 hours around the transition day's start the instant falls, to the second. */
	offsetSec: fc.integer({ min: -24 * 3600, max: 24 * 3600 }),
	rules: fc.array(ruleArb, { maxLength: 6 }),
	overrides: fc.array(overrideArb, { maxLength: 2 }),
	withDefault: fc.boolean()
});

function key(r: Resolution): string {
	return JSON.stringify([r.source, r.playlistId, r.layoutId, r.scheduleId, r.overrideId]);
}

describe("scheduling engine, against brute force", () => {
	it("answers validUntil as the first minute of the next 30 hours whose answer differs (around DST transitions)", () => {
		fc.assert(
			fc.property(caseArb, ({ place, offsetSec, rules, overrides, withDefault }) => {
				const dayStart = DateTime.fromISO(place.day, { zone: place.zone }).toMillis();
				const at = dayStart + offsetSec * 1000;
				const minuteAfter = Math.floor(at / MIN) * MIN + MIN;
				const target = { ...display(place.zone), defaultPlaylistId: withDefault ? "pl-default" : null };
				const schedules: ScheduleRule[] = rules.map((r, i) => ({
					id: `s${i}`,
					name: `rule ${i}`,
					...(r.layout ? { playlistId: null, layoutId: `ly-${i}` } : { playlistId: `pl-${i}` }),
					priority: r.priority,
					createdAt: r.createdAt,
					targets: r.targets,
					excludeDisplayIds: r.excluded ? ["d1"] : undefined,
					startDate: r.startDate?.(place.day),
					endDate: r.endDate?.(place.day),
					daysOfWeek: r.daysOfWeek,
					startTime: r.startTime,
					endTime: r.endTime
				}));
				const emergencies: Override[] = overrides.map((o, i) => ({
					id: `o${i}`,
					name: `override ${i}`,
					...(o.layout ? { playlistId: null, layoutId: `ly-o${i}` } : { playlistId: `pl-o${i}` }),
					targets: o.everyone ? undefined : { displayIds: ["d1"] },
					startsAt: new Date(minuteAfter + o.start * MIN).toISOString(),
					endsAt: new Date(minuteAfter + (o.start + o.minutes) * MIN).toISOString()
				}));
				const answer = (t: number) => resolve(target, schedules, emergencies, new Date(t), { candidates: false });
				const now = answer(at);
				// Every edge is a whole minute (local times and overrides are whole minutes, and so
				// are these zones' offsets): the first whole minute with another answer is the change.
				let firstChange: number | null = null;
				for (let t = minuteAfter; t <= at + SPAN; t += MIN) {
					if (key(answer(t)) !== key(now)) {
						firstChange = t;
						break;
					}
				}
				const validUntil = now.validUntil === null ? null : Date.parse(now.validUntil);
				if (firstChange !== null) expect(now.validUntil).toBe(new Date(firstChange).toISOString());
				else expect(validUntil === null || validUntil > at + SPAN).toBe(true);
			}),
			{ numRuns: 120, seed: 1202 }
		);
	});

	it("writes localTime exactly as luxon does, for any instant and zone", () => {
		const zones = [
			"UTC",
			"Etc/UTC",
			"GMT",
			"Etc/GMT+5",
			"Europe/London",
			"Europe/Amsterdam", // +00:19:32 until 1937
			"Africa/Monrovia", // -00:44:30 until 1972
			"America/New_York",
			"America/St_Johns",
			"Asia/Kolkata",
			"Asia/Kathmandu",
			"Australia/Lord_Howe",
			"Pacific/Chatham",
			"Pacific/Kiritimati"
		];
		const instants = fc.oneof(
			fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2100, 0, 1) }),
			fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2100, 0, 1) }).map(t => Math.floor(t / 1000) * 1000), // whole seconds: no milliseconds written
			fc.integer({ min: -62_000_000_000_000, max: 8_000_000_000_000 }) // years 5 to 2223
		);
		fc.assert(
			fc.property(fc.constantFrom(...zones), instants, (zone, t) => {
				const luxon = DateTime.fromMillis(t, { zone }).toISO({ suppressMilliseconds: true });
				expect(resolve(display(zone), [], [], new Date(t)).localTime).toBe(luxon);
			}),
			{ numRuns: 20_000, seed: 1202 }
		);
	});
});
