/**
 * services/scheduling/params.ts: the params rules (through the broker's validator) and the checks
 * no rule can express, each at a fixed instant.
 */
import { AppError } from "../../shared/errors";
import { SafeValidator } from "../../shared/validation";
import { checkDateRange, checkOverrideWindow, checkTimelinePeriod, checkZones, FRAME_EPSILON, instantParam, isCalendarDate, MAX_ZONES, MIN_ZONE, PARAMS, programChange } from "../../services/scheduling/params";

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
		// What it plays (a playlistId or a layoutId, exactly one) is checked by programChange.
		expect(refused(PARAMS.createSchedule, { name: "Rule" })).toEqual(["targets"]);
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

describe("layout params rules", () => {
	const zone = (fields: Record<string, unknown> = {}) => ({ name: "Z", x: 0, y: 0, width: 1, height: 1, playlistId: ID, ...fields });
	const layout = (fields: Record<string, unknown> = {}) => ({ name: "L", width: 1920, height: 1080, zones: [zone()], ...fields });

	it("a layout needs a name, an integer frame and 1–20 zones; a colour is #rrggbb or null", () => {
		expect(refused(PARAMS.createLayout, layout())).toEqual([]);
		expect(refused(PARAMS.createLayout, layout({ backgroundColor: null, backgroundContentId: null }))).toEqual([]);
		expect(refused(PARAMS.createLayout, layout({ backgroundColor: "#A1b2C3", backgroundContentId: ID }))).toEqual([]);
		expect(refused(PARAMS.createLayout, { name: "L" }).sort()).toEqual(["height", "width", "zones"]);
		expect(refused(PARAMS.createLayout, layout({ zones: Array.from({ length: MAX_ZONES }, () => zone()) }))).toEqual([]);
		const cases: Array<[Record<string, unknown>, string]> = [
			[{ zones: [] }, "zones"],
			[{ zones: Array.from({ length: MAX_ZONES + 1 }, () => zone()) }, "zones"],
			[{ zones: null }, "zones"],
			[{ width: 0 }, "width"],
			[{ width: 16385 }, "width"],
			[{ height: 1.5 }, "height"],
			[{ height: "1080" }, "height"],
			[{ backgroundColor: "#abc" }, "backgroundColor"],
			[{ backgroundColor: "#abcdeg" }, "backgroundColor"],
			[{ backgroundColor: "#abcdef0" }, "backgroundColor"],
			[{ backgroundColor: "abcdef" }, "backgroundColor"],
			[{ backgroundContentId: "x" }, "backgroundContentId"]
		];
		for (const [change, field] of cases) expect([change, refused(PARAMS.createLayout, layout(change))]).toEqual([change, [field]]);
	});

	it("a zone's coordinates are numbers in 0–1, never strings, NaN, Infinity, null or objects; zIndex an integer in ±1000", () => {
		expect(refused(PARAMS.createLayout, layout({ zones: [zone({ x: 0, y: 0.999, width: 0.001, height: 0.001, zIndex: -1000 })] }))).toEqual([]);
		// At least 0.001 of the frame on each side: smaller is invisible.
		expect(refused(PARAMS.createLayout, layout({ zones: [zone({ width: 0, height: 1e-300 })] }))).toEqual(["zones[0].width", "zones[0].height"]);
		const cases: Array<[Record<string, unknown>, string]> = [
			[{ x: -0.0001 }, "zones[0].x"],
			[{ y: 1.0001 }, "zones[0].y"],
			[{ width: Number.NaN }, "zones[0].width"],
			[{ height: Number.POSITIVE_INFINITY }, "zones[0].height"],
			[{ x: Number.NEGATIVE_INFINITY }, "zones[0].x"],
			[{ width: "0.5" }, "zones[0].width"],
			[{ width: null }, "zones[0].width"],
			[{ width: { $gt: 0 } }, "zones[0].width"],
			[{ zIndex: 0.5 }, "zones[0].zIndex"],
			[{ zIndex: 1001 }, "zones[0].zIndex"],
			[{ zIndex: null }, "zones[0].zIndex"],
			[{ playlistId: "x" }, "zones[0].playlistId"],
			[{ id: "x" }, "zones[0].id"],
			[{ name: "" }, "zones[0].name"]
		];
		for (const [change, field] of cases) expect([change, refused(PARAMS.createLayout, layout({ zones: [zone(change)] }))]).toEqual([change, [field]]);
	});

	it("a layout PATCH takes any subset; a schedule or override names a playlistId or a layoutId (which is checked in form)", () => {
		expect(refused(PARAMS.updateLayout, { id: ID })).toEqual([]);
		expect(refused(PARAMS.updateLayout, { id: ID, backgroundColor: null, backgroundContentId: null })).toEqual([]);
		expect(refused(PARAMS.updateLayout, { id: ID, zones: [] })).toEqual(["zones"]);
		expect(refused(PARAMS.updateLayout, { id: ID, name: null })).toEqual(["name"]);
		const schedule = { name: "R", targets: { tags: ["a"] } };
		expect(refused(PARAMS.createSchedule, { ...schedule, layoutId: ID })).toEqual([]);
		expect(refused(PARAMS.createSchedule, { ...schedule, layoutId: "x" })).toEqual(["layoutId"]);
		expect(refused(PARAMS.createSchedule, { ...schedule, layoutId: null })).toEqual(["layoutId"]);
		expect(refused(PARAMS.createOverride, { name: "O", layoutId: ID, endsAt: "2026-11-22T10:00:00Z" })).toEqual([]);
		expect(refused(PARAMS.updateOverride, { id: ID, layoutId: "x" })).toEqual(["layoutId"]);
		expect(refused(PARAMS.listLayouts, { playlistId: "x" })).toEqual(["playlistId"]);
		expect(refused(PARAMS.removeLayout, { id: ID, force: "true" })).toEqual([]);
	});
});

describe("layout checks", () => {
	const z = (x: number, y: number, width: number, height: number) => ({ x, y, width, height });

	it("zones inside the frame pass, up to edges that floating point puts a hair past 1", () => {
		// Columns of 9, 18 and 1 28ths: the last one's x, added up from the others, ends past 1.
		const x = 9 / 28 + 18 / 28;
		expect(x + 1 / 28).toBeGreaterThan(1);
		expect(fieldsOf(() => checkZones([z(0, 0, 9 / 28, 1), z(9 / 28, 0, 18 / 28, 1), z(x, 0, 1 / 28, 1)]))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(0, x, 1, 1 / 28)]))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(0, 0, 1, 1)]))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(1 / 3, 2 / 3, 2 / 3, 1 / 3), z(2 / 3, 0, 1 / 3, 1)]))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(0.1 + 0.2, 0.1 + 0.2, 0.7, 0.7)]))).toEqual([]);
		expect(fieldsOf(() => checkZones(Array.from({ length: 7 }, (_, i) => z(i / 7, 0, 1 / 7, 1))))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(1 - MIN_ZONE, 1 - MIN_ZONE, MIN_ZONE, MIN_ZONE)]))).toEqual([]);
		expect(fieldsOf(() => checkZones([z(1 - 1e-12, 1 - 1e-12, 1e-12, 1e-12)]))).toEqual(["zones[0].width", "zones[0].height"]);
		expect(fieldsOf(() => checkZones([z(0.5, 0.5, 0.5 + FRAME_EPSILON / 2, 0.5 + FRAME_EPSILON / 2)]))).toEqual([]);
	});

	it("a zone past an edge, or without area, is a 422 naming the zone and the dimension", () => {
		expect(fieldsOf(() => checkZones([z(0.5, 0, 0.5 + 2 * FRAME_EPSILON, 1)]))).toEqual(["zones[0].width"]);
		expect(fieldsOf(() => checkZones([z(0, 0.5, 1, 0.5 + 2 * FRAME_EPSILON)]))).toEqual(["zones[0].height"]);
		expect(fieldsOf(() => checkZones([z(0, 0, 1, 1), z(0.5, 0.5, 0.6, 0.6)]))).toEqual(["zones[1].width", "zones[1].height"]);
		expect(fieldsOf(() => checkZones([z(0, 0, 0, 1)]))).toEqual(["zones[0].width"]);
		expect(fieldsOf(() => checkZones([z(0, 0, 1, 0)]))).toEqual(["zones[0].height"]);
		expect(fieldsOf(() => checkZones([z(0, 0, -0.5, -0.5)]))).toEqual(["zones[0].width", "zones[0].height"]);
		expect(fieldsOf(() => checkZones([z(1, 0, 0, 1)]))).toEqual(["zones[0].width"]);
		// Every zone is reported, not only the first.
		expect(fieldsOf(() => checkZones([z(0.9, 0, 0.2, 1), z(0, 0, 1, 1), z(0, 0.9, 1, 0.2)]))).toEqual(["zones[0].width", "zones[2].height"]);
	});

	it("a schedule or override plays exactly one of a playlist and a layout; naming one on a PATCH clears the other", () => {
		expect(programChange({ playlistId: "p" })).toEqual({ playlistId: "p", layoutId: null });
		expect(programChange({ layoutId: "l" })).toEqual({ playlistId: null, layoutId: "l" });
		expect(fieldsOf(() => programChange({ playlistId: "p", layoutId: "l" }))).toEqual(["layoutId"]);
		expect(fieldsOf(() => programChange({}))).toEqual(["playlistId"]);
		const playing = { playlistId: "p", layoutId: null };
		const showing = { playlistId: null, layoutId: "l" };
		expect(programChange({}, playing)).toBeNull();
		expect(programChange({ layoutId: "l2" }, playing)).toEqual({ playlistId: null, layoutId: "l2" });
		expect(programChange({ playlistId: "p2" }, showing)).toEqual({ playlistId: "p2", layoutId: null });
		expect(programChange({ layoutId: "l" }, showing)).toEqual(showing);
		expect(fieldsOf(() => programChange({ playlistId: "p", layoutId: "l" }, playing))).toEqual(["layoutId"]);
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
