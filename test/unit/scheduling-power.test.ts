/**
 * Screen power schedules (services/scheduling/power.ts): whether a screen is off at an instant,
 * in its timezone, across DST changes, and when it flips next. Instants are written by hand in
 * UTC with the local time they stand for.
 */
import { powerAt } from "../../services/scheduling/power";
import type { DisplayTarget } from "../../services/scheduling/engine";
import type { PowerScheduleDoc } from "../../services/scheduling/views";
import { sleepFields, SLEEP_CHECK_MS } from "../../services/devices/displays";

const at = (iso: string) => new Date(iso);

const berlin: DisplayTarget = { id: "d1", timezone: "Europe/Berlin", tenantTimezone: "UTC", groupIds: ["g1"], tags: ["shop"], defaultPlaylistId: "p1", defaultLayoutId: null };

function rule(fields: Partial<PowerScheduleDoc> = {}): PowerScheduleDoc {
	return {
		id: "ps1",
		tenantId: "t1",
		name: "Nights",
		state: "off",
		targets: { displayIds: ["d1"], groupIds: [], tags: [] },
		targetKeys: ["d:d1"],
		excludeDisplayIds: [],
		startDate: null,
		endDate: null,
		daysOfWeek: null,
		startTime: "22:00",
		endTime: "06:00",
		priority: 0,
		createdAt: "2026-01-01T00:00:00.000Z",
		updatedAt: "2026-01-01T00:00:00.000Z",
		...fields
	};
}

describe("screen power: off 22:00–06:00 Europe/Berlin", () => {
	const nights = [rule()];

	it("a display no power schedule reaches has none (always on)", () => {
		expect(powerAt(berlin, [], at("2026-06-01T21:00:00Z"))).toBeNull();
		expect(powerAt(berlin, [rule({ targets: { displayIds: ["other"], groupIds: [], tags: [] } })], at("2026-06-01T21:00:00Z"))).toBeNull();
		expect(powerAt(berlin, [rule({ excludeDisplayIds: ["d1"], targets: { displayIds: [], groupIds: ["g1"], tags: [] } })], at("2026-06-01T21:00:00Z"))).toBeNull();
	});

	it("summer (CEST, UTC+2): on until 22:00 local = 20:00Z, off until 06:00 local = 04:00Z", () => {
		expect(powerAt(berlin, nights, at("2026-06-01T19:59:00Z"))).toEqual({ state: "on", until: "2026-06-01T20:00:00.000Z" });
		expect(powerAt(berlin, nights, at("2026-06-01T20:00:00Z"))).toEqual({ state: "off", until: "2026-06-02T04:00:00.000Z" });
		// 22:05 local: off, so no offline alert is due for a silent screen.
		expect(powerAt(berlin, nights, at("2026-06-01T20:05:00Z"))).toEqual({ state: "off", until: "2026-06-02T04:00:00.000Z" });
		expect(powerAt(berlin, nights, at("2026-06-02T04:00:00Z"))).toEqual({ state: "on", until: "2026-06-02T20:00:00.000Z" });
	});

	it("winter (CET, UTC+1): off from 21:00Z to 05:00Z", () => {
		expect(powerAt(berlin, nights, at("2026-01-15T20:59:00Z"))).toEqual({ state: "on", until: "2026-01-15T21:00:00.000Z" });
		expect(powerAt(berlin, nights, at("2026-01-15T21:05:00Z"))).toEqual({ state: "off", until: "2026-01-16T05:00:00.000Z" });
	});

	it("the spring-forward night (29 March 2026, 02:00 → 03:00): off 21:00Z (CET) to 04:00Z (CEST), seven hours", () => {
		expect(powerAt(berlin, nights, at("2026-03-28T21:00:00Z"))).toEqual({ state: "off", until: "2026-03-29T04:00:00.000Z" });
		// 02:30 local does not exist; 01:30Z is 03:30 CEST: still off.
		expect(powerAt(berlin, nights, at("2026-03-29T01:30:00Z"))).toEqual({ state: "off", until: "2026-03-29T04:00:00.000Z" });
		expect(powerAt(berlin, nights, at("2026-03-29T04:00:00Z"))).toEqual({ state: "on", until: "2026-03-29T20:00:00.000Z" });
	});

	it("the fall-back night (25 October 2026, 03:00 → 02:00): off 20:00Z (CEST) to 05:00Z (CET), nine hours", () => {
		expect(powerAt(berlin, nights, at("2026-10-24T19:59:00Z"))).toEqual({ state: "on", until: "2026-10-24T20:00:00.000Z" });
		expect(powerAt(berlin, nights, at("2026-10-24T20:00:00Z"))).toEqual({ state: "off", until: "2026-10-25T05:00:00.000Z" });
		// The repeated 02:30: off both times.
		expect(powerAt(berlin, nights, at("2026-10-25T00:30:00Z"))?.state).toBe("off");
		expect(powerAt(berlin, nights, at("2026-10-25T01:30:00Z"))?.state).toBe("off");
		expect(powerAt(berlin, nights, at("2026-10-25T05:00:00Z"))).toEqual({ state: "on", until: "2026-10-25T21:00:00.000Z" });
	});

	it("the display's own timezone counts, else its tenant's", () => {
		const tokyo = { ...berlin, timezone: null, tenantTimezone: "Asia/Tokyo" };
		// 22:00 in Tokyo (UTC+9, no DST) is 13:00Z.
		expect(powerAt(tokyo, nights, at("2026-06-01T13:00:00Z"))).toEqual({ state: "off", until: "2026-06-01T21:00:00.000Z" });
	});
});

describe("screen power: rules together", () => {
	it("an 'on' rule above an 'off' one punches a hole: open late on 31 December", () => {
		const nights = rule();
		const newYear = rule({ id: "ps2", name: "New Year", state: "on", startDate: "2026-12-31", endDate: "2026-12-31", startTime: "20:00", endTime: "02:00", priority: 5 });
		// 23:00 CET on 31 Dec = 22:00Z: on, until the hole closes at 02:00 local = 01:00Z; then off until 06:00.
		expect(powerAt(berlin, [nights, newYear], at("2026-12-31T22:00:00Z"))).toEqual({ state: "on", until: "2027-01-01T01:00:00.000Z" });
		expect(powerAt(berlin, [nights, newYear], at("2027-01-01T01:00:00Z"))).toEqual({ state: "off", until: "2027-01-01T05:00:00.000Z" });
	});

	it("two off rules back to back leave the screen off across the hand-over: `until` is when it comes back on", () => {
		const evening = rule({ id: "a", startTime: "18:00", endTime: "22:00" });
		const night = rule({ id: "b", startTime: "22:00", endTime: "06:00" });
		// 19:00 CEST = 17:00Z: off until 06:00 local = 04:00Z, through the 22:00 hand-over.
		expect(powerAt(berlin, [evening, night], at("2026-06-01T17:00:00Z"))).toEqual({ state: "off", until: "2026-06-02T04:00:00.000Z" });
	});

	it("seventy back-to-back ten-minute off rules are one off time: `until` is the last one's end", () => {
		const rules = Array.from({ length: 70 }, (_, i) => {
			const start = i * 10;
			const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
			return rule({ id: `r${String(i).padStart(2, "0")}`, startDate: "2027-01-10", endDate: "2027-01-10", startTime: hhmm(start), endTime: hhmm(start + 10) });
		});
		// 00:05 CET on 10 January 2027 = 23:05Z the day before; the last rule ends 11:40 CET = 10:40Z.
		expect(powerAt(berlin, rules, at("2027-01-09T23:05:00Z"))).toEqual({ state: "off", until: "2027-01-10T10:40:00.000Z" });
	});

	it("weekends off all day, by group; no end of the rule: off until Monday", () => {
		const weekend = rule({ daysOfWeek: [6, 7], startTime: null, endTime: null, targets: { displayIds: [], groupIds: ["g1"], tags: [] }, targetKeys: ["g:g1"] });
		// Saturday 6 June 2026, noon in Berlin: off until Monday 00:00 CEST = Sunday 22:00Z.
		expect(powerAt(berlin, [weekend], at("2026-06-06T10:00:00Z"))).toEqual({ state: "off", until: "2026-06-07T22:00:00.000Z" });
	});

	it("off for good: `until` is null or the engine's far horizon, never a false flip", () => {
		const always = rule({ startTime: null, endTime: null });
		const power = powerAt(berlin, [always], at("2026-06-01T10:00:00Z"));
		expect(power?.state).toBe("off");
		if (power?.until) expect(Date.parse(power.until)).toBeGreaterThan(Date.parse("2027-01-01T00:00:00Z"));
	});
});

describe("a sleeping display's stored fields", () => {
	const now = new Date("2026-06-01T20:05:00Z");

	it("checks again when the power-off ends, or within the hour", () => {
		expect(sleepFields("2026-06-01T20:30:00.000Z", now)).toEqual({ scheduledOff: true, scheduledOffUntil: "2026-06-01T20:30:00.000Z", scheduledOffCheckAt: "2026-06-01T20:30:00.000Z" });
		expect(sleepFields("2026-06-02T04:00:00.000Z", now).scheduledOffCheckAt).toBe(new Date(now.getTime() + SLEEP_CHECK_MS).toISOString());
		expect(sleepFields(null, now)).toEqual({ scheduledOff: true, scheduledOffUntil: null, scheduledOffCheckAt: "2026-06-01T21:05:00.000Z" });
	});
});
