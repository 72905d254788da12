/**
 * services/scheduling/params.ts: the params rules (through the broker's validator) and the checks
 * no rule can express, each at a fixed instant.
 */
import { AppError } from "../../shared/errors";
import { SafeValidator } from "../../shared/validation";
import { checkDateRange, checkOverrideWindow, checkTimelinePeriod, instantParam, isCalendarDate, PARAMS } from "../../services/scheduling/params";

const ID = "0190a8e2-7b1c-7c3d-8e4f-123456789abc";
const validator = new SafeValidator();

/** The fields a params rule refuses in `params` ([] when it passes). */
function refused(schema: object, params: Record<string, unknown>): string[] {
	const result = validator.compile({ ...schema })(params) as true | Array<{ field: string }>;
	return result === true ? [] : result.map(f => f.field);
}

/** The fields of the 422 `check` throws ([] when it passes). */
function fieldsOf(check: () => unknown): string[] {
	try {
		check();
		return [];
	} catch (err) {
		if (!(err instanceof AppError) || err.type !== "VALIDATION_ERROR") throw err;
		return (err.data as Array<{ field: string }>).map(f => f.field);
	}
}

describe("scheduling params rules", () => {
	const schedule = { name: "Rule", playlistId: ID, targets: { tags: ["lobby"] } };

	it("a schedule needs a name, a playlist and targets; dates, times, days and priority are checked in form", () => {
		expect(refused(PARAMS.createSchedule, schedule)).toEqual([]);
		expect(refused(PARAMS.createSchedule, { name: "Rule" })).toEqual(expect.arrayContaining(["playlistId", "targets"]));
		const cases: Array<[Record<string, unknown>, string]> = [
			[{ startDate: "1 May" }, "startDate"],
			[{ startTime: "24:00" }, "startTime"],
			[{ endTime: "9:00" }, "endTime"],
			[{ daysOfWeek: [0] }, "daysOfWeek[0]"],
			[{ daysOfWeek: [1, 1] }, "daysOfWeek"],
			[{ priority: 1001 }, "priority"],
			[{ priority: 1.5 }, "priority"],
			[{ targets: { displayIds: ["not-an-id"] } }, "targets.displayIds[0]"]
		];
		for (const [change, field] of cases) expect([change, refused(PARAMS.createSchedule, { ...schedule, ...change })]).toEqual([change, [field]]);
		// null clears a rule, but only where the rule says it may be null.
		expect(refused(PARAMS.createSchedule, { ...schedule, startDate: null, daysOfWeek: null, startTime: null })).toEqual([]);
		expect(refused(PARAMS.createSchedule, { ...schedule, priority: null })).toEqual(["priority"]);
	});

	it("a schedule PATCH takes any subset of the fields", () => {
		expect(refused(PARAMS.updateSchedule, { id: ID })).toEqual([]);
		expect(refused(PARAMS.updateSchedule, { id: ID, endTime: "18:30" })).toEqual([]);
		expect(refused(PARAMS.updateSchedule, { id: ID, endTime: "18:60" })).toEqual(["endTime"]);
		expect(refused(PARAMS.updateSchedule, { id: ID, playlistId: null })).toEqual(["playlistId"]);
	});

	it("an override may leave its targets out or null; its end is an ISO instant", () => {
		const override = { name: "Drill", playlistId: ID, endsAt: "2026-11-22T10:00:00Z" };
		expect(refused(PARAMS.createOverride, override)).toEqual([]);
		expect(refused(PARAMS.createOverride, { ...override, targets: null })).toEqual([]);
		expect(refused(PARAMS.createOverride, { ...override, endsAt: "tomorrow" })).toEqual(["endsAt"]);
		expect(refused(PARAMS.updateOverride, { id: ID, targets: null })).toEqual([]);
	});

	it("playlist items name their content and last at least a second", () => {
		expect(refused(PARAMS.createPlaylist, { name: "P", items: [{ contentId: ID }, { contentId: ID, durationMs: 1000 }, { contentId: ID, durationMs: null }] })).toEqual([]);
		expect(refused(PARAMS.createPlaylist, { name: "P", items: [{ contentId: ID, durationMs: 999 }] })).toEqual(["items[0].durationMs"]);
		expect(refused(PARAMS.createPlaylist, { name: "P", items: [{}] })).toEqual(["items[0].contentId"]);
	});
});

describe("scheduling params checks", () => {
	it("calendar dates are real ones", () => {
		expect(isCalendarDate("2028-02-29")).toBe(true);
		expect(isCalendarDate("2026-02-29")).toBe(false);
		expect(isCalendarDate("2026-02-30")).toBe(false);
		expect(isCalendarDate("2026-13-01")).toBe(false);
	});

	it("a date range: real dates, the end not before the start (the same day is fine)", () => {
		expect(fieldsOf(() => checkDateRange(null, undefined))).toEqual([]);
		expect(fieldsOf(() => checkDateRange("2026-05-01", "2026-05-01"))).toEqual([]);
		expect(fieldsOf(() => checkDateRange("2026-05-02", "2026-05-01"))).toEqual(["endDate"]);
		expect(fieldsOf(() => checkDateRange("2026-02-30", "2026-02-31"))).toEqual(["startDate", "endDate"]);
	});

	it("an absent instant param is the fallback; one that is no real instant is a 422 naming it", () => {
		const fallback = new Date("2026-06-01T00:00:00Z");
		expect(instantParam(undefined, "at", fallback)).toBe(fallback);
		expect(instantParam("2026-06-01T12:00:00+02:00", "at", fallback).toISOString()).toBe("2026-06-01T10:00:00.000Z");
		expect(fieldsOf(() => instantParam("2026-13-01T10:00:00Z", "at", fallback))).toEqual(["at"]);
	});

	it("an override window ends in the future, after its start, within 366 days", () => {
		const now = Date.parse("2026-06-01T12:00:00Z");
		const at = (iso: string) => new Date(iso);
		expect(fieldsOf(() => checkOverrideWindow(at("2026-06-01T12:00:00Z"), at("2026-06-01T13:00:00Z"), now))).toEqual([]);
		expect(fieldsOf(() => checkOverrideWindow(at("2026-06-01T10:00:00Z"), at("2026-06-01T12:00:00Z"), now))).toEqual(["endsAt"]);
		expect(fieldsOf(() => checkOverrideWindow(at("2026-06-03T00:00:00Z"), at("2026-06-02T00:00:00Z"), now))).toEqual(["endsAt"]);
		// 366 days are counted from the later of now and the start.
		expect(fieldsOf(() => checkOverrideWindow(at("2026-07-01T00:00:00Z"), at("2027-07-01T00:00:00Z"), now))).toEqual([]);
		expect(fieldsOf(() => checkOverrideWindow(at("2026-06-01T12:00:00Z"), at("2027-06-03T12:00:00Z"), now))).toEqual(["endsAt"]);
	});

	it("a timeline period is forward and at most 31 days", () => {
		const from = new Date("2026-03-01T00:00:00Z");
		expect(fieldsOf(() => checkTimelinePeriod(from, new Date("2026-04-01T00:00:00Z")))).toEqual([]);
		expect(fieldsOf(() => checkTimelinePeriod(from, new Date("2026-04-01T00:00:01Z")))).toEqual(["to"]);
		expect(fieldsOf(() => checkTimelinePeriod(from, from))).toEqual(["to"]);
	});
});
