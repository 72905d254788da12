/**
 * shared/validation.ts: the broker's validator refuses null where a rule is not nullable, refuses
 * objects where a scalar belongs before fastest-validator converts them, takes only instants that
 * exist, and never throws.
 */
import { Errors as MoleculerErrors, ServiceBroker, type Context } from "moleculer";
import { ISO_INSTANT_RULE } from "../../shared/request";
import { guardedCheck, isRealInstant, preCheck, SafeValidator } from "../../shared/validation";

const SCHEMA = {
	$$strict: "remove",
	name: { type: "string", min: 1 },
	count: { type: "number", integer: true, optional: true, convert: true },
	when: { type: "date", convert: true, optional: true },
	same: { type: "equal", value: "x", optional: true },
	clearable: { type: "string", optional: true, nullable: true },
	short: "string|optional",
	settings: { type: "object", optional: true, props: { timezone: { type: "string", optional: true } } },
	items: { type: "array", optional: true, items: { type: "object", props: { id: "string", weight: { type: "number", optional: true } } } }
};

describe("preCheck", () => {
	it.each([
		[{ count: null }, "count"],
		[{ short: null }, "short"],
		[{ settings: null }, "settings"],
		[{ settings: { timezone: null } }, "settings.timezone"],
		[{ items: [{ id: "a" }, { id: "b", weight: null }] }, "items[1].weight"],
		[{ items: null }, "items"]
	])("null where not nullable: %j → %s", (params, field) => {
		expect(preCheck(SCHEMA, params)).toEqual([expect.objectContaining({ field, type: "required" })]);
	});

	it("null where nullable passes, and absent fields are not checked", () => {
		expect(preCheck(SCHEMA, { name: "n", clearable: null })).toEqual([]);
		expect(preCheck(SCHEMA, {})).toEqual([]);
	});

	const misplaced: unknown[][] = [[{ toString: 1 }], [{ valueOf: {} }], [[]], [["1"]], [{ $gt: "" }]];
	it.each(misplaced)("an object or array where a scalar belongs: %j", value => {
		for (const field of ["name", "count", "when", "same"]) {
			expect(preCheck(SCHEMA, { [field]: value })).toEqual([expect.objectContaining({ field })]);
		}
	});

	it("lists 130 000 failures of one array (a 1 MiB body of nulls) without overflowing the stack", () => {
		const failures = preCheck(SCHEMA, { items: Array(130_000).fill(null) });
		expect(failures).toHaveLength(130_000);
		expect(failures[129_999]).toMatchObject({ field: "items[129999]", type: "required" });
	});

	it("ignores what it is not given (no params object, $$ keys)", () => {
		expect(preCheck(SCHEMA, null)).toEqual([]);
		expect(preCheck(SCHEMA, "text")).toEqual([]);
		expect(preCheck({ $$root: true, name: "string" }, { $$root: null })).toEqual([]);
	});
});

describe("guardedCheck", () => {
	it("turns a checker that throws into a validation failure", () => {
		const check = guardedCheck({}, () => {
			throw new TypeError("Cannot convert object to primitive value");
		});
		expect(check({})).toEqual([expect.objectContaining({ type: "invalid" })]);
	});

	it("keeps async checkers async", async () => {
		const failing = Object.assign(async () => Promise.reject(new Error("boom")), { async: true });
		const check = guardedCheck({ name: "string" }, failing);
		expect(check.async).toBe(true);
		await expect(check({ name: null })).resolves.toEqual([expect.objectContaining({ field: "name" })]);
		await expect(check({ name: "ok" })).resolves.toEqual([expect.objectContaining({ type: "invalid" })]);
	});
});

describe("SafeValidator on a broker", () => {
	const broker = new ServiceBroker({ logger: false, validator: new SafeValidator() });
	broker.createService({
		name: "v",
		actions: {
			take: { params: SCHEMA, handler: (ctx: Context<Record<string, unknown>>) => ctx.params }
		}
	});
	beforeAll(() => broker.start());
	afterAll(() => broker.stop());

	it("still converts, strips unknown fields and accepts good input", async () => {
		await expect(broker.call("v.take", { name: "n", count: "12", extra: 1 })).resolves.toEqual({ name: "n", count: 12 });
	});

	it.each([
		{ name: "n", count: { toString: 1 } },
		{ name: "n", when: { toString: 1, valueOf: 1 } },
		{ name: "n", same: Object.create(null) },
		{ name: "n", count: null },
		{ name: null }
	])("refuses %j with a ValidationError, never a TypeError", async params => {
		await expect(broker.call("v.take", params)).rejects.toBeInstanceOf(MoleculerErrors.ValidationError);
	});

	it("an enum refusal names the allowed values as allowed, not as the value sent", () => {
		const check = new SafeValidator().compile({ approval: { type: "enum", values: ["pending", "rejected"] } }) as unknown as (p: unknown) => unknown;
		expect(check({ approval: "approved" })).toEqual([expect.objectContaining({ field: "approval", message: "The 'approval' field must be one of: pending, rejected." })]);
	});

	it("validate() throws a ValidationError on failure", () => {
		const validator = new SafeValidator();
		expect(() => validator.validate({ name: null }, { name: "string" })).toThrow(MoleculerErrors.ValidationError);
		expect(validator.validate({ name: "x" }, { name: "string" })).toBe(true);
	});
});

describe("instants that exist", () => {
	const validator = new SafeValidator();
	const check = validator.compile({ at: ISO_INSTANT_RULE, list: { type: "array", optional: true, items: { type: "object", props: { at: ISO_INSTANT_RULE } } } });

	it.each(["2026-02-28T23:59:59Z", "2028-02-29T00:00:00Z", "2026-11-22T10:00:00.123+01:00", "2026-12-31T23:59Z"])("takes %s", at => {
		expect(check({ at })).toBe(true);
		expect(isRealInstant(at)).toBe(true);
	});

	it.each(["2026-02-30T00:00:00Z", "2026-02-29T10:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z"])(
		"refuses %s, where Date would roll it over",
		at => {
			expect(check({ at })).toEqual([expect.objectContaining({ type: "date", field: "at" })]);
			expect(check({ at: "2026-01-01T00:00:00Z", list: [{ at }] })).toEqual([expect.objectContaining({ type: "date", field: "list[0].at" })]);
		}
	);
});
