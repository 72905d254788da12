/**
 * shared/group-call.ts: a group call answers each of its calls exactly as a call of its own would
 * have been answered — its params checked with the action's rules by the broker's validator, its
 * failure the same API error, its log lines under its own request id — and one call's failure
 * touches no other. Checked on a real broker (the platform's validator) against the same action
 * called alone.
 */
import { ServiceBroker, type Context } from "moleculer";
import { Errors, toApiError, type ApiError } from "../../shared/errors";
import { answerGroup, GROUP_CALL_PARAMS, groupedResult, type GroupedAnswer, type GroupedCall } from "../../shared/group-call";
import { currentRequestId } from "../../shared/logging";
import type { Principal } from "../../shared/rbac";
import { SafeValidator } from "../../shared/validation";

const RULES = {
	$$strict: true,
	name: { type: "string", max: 5 },
	count: { type: "number", integer: true, optional: true }
} as const;

interface Answer {
	name: string;
	tenantId: string;
	requestId: string | undefined;
}

const device: Principal = { kind: "device", tenantId: "t1", displayId: "d1" };

/** What the action does, alone or grouped; "boom" fails unexpectedly, "nope" as the API would. */
function run(meta: { auth: Principal | null }, params: Record<string, unknown>): Promise<Answer> {
	if (params.name === "boom") throw new Error("kaput");
	if (params.name === "nope") throw Errors.conflict("Already there");
	if (!meta.auth) throw Errors.unauthorized();
	return Promise.resolve({ name: String(params.name), tenantId: meta.auth.tenantId, requestId: currentRequestId() });
}

describe("group calls", () => {
	let broker: ServiceBroker;
	const logged: unknown[][] = [];

	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, validator: new SafeValidator() });
		const check = broker.validator?.compile(RULES) as (params: unknown) => true | unknown[];
		broker.createService({
			name: "demo",
			actions: {
				one: { params: RULES, handler: (ctx: Context<Record<string, unknown>, { auth: Principal | null }>) => run(ctx.meta, ctx.params) },
				many: {
					params: GROUP_CALL_PARAMS,
					handler: (ctx: Context<{ calls: GroupedCall[] }>) => answerGroup(ctx.params.calls, check, run, { error: (...args: unknown[]) => void logged.push(args) })
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	/** The API error a call of `demo.one` alone fails with, or its result. */
	async function alone(params: Record<string, unknown>, auth: Principal | null = device): Promise<{ result: unknown } | { error: ApiError }> {
		try {
			return { result: await broker.call("demo.one", params, { meta: { auth } }) };
		} catch (err) {
			return { error: toApiError(err) };
		}
	}

	it("answers each call as the action alone would, in order, one failure touching no other", async () => {
		const calls: GroupedCall[] = [
			{ params: { name: "ok" }, auth: device, requestId: "r-1" },
			{ params: { name: "toolong" }, auth: device, requestId: "r-2" },
			{ params: { name: "ok", extra: 1 }, auth: device, requestId: "r-3" },
			{ params: { name: null }, auth: device, requestId: "r-4" },
			{ params: { name: "nope" }, auth: device, requestId: "r-5" },
			{ params: { name: "ok2" }, auth: null, requestId: "r-6" },
			{ params: { name: { $gt: "" } }, auth: device, requestId: "r-7" },
			{ params: { name: "ok3", count: 2 }, auth: device, requestId: "r-8" }
		];
		const answers = (await broker.call("demo.many", { calls })) as Array<GroupedAnswer<Answer>>;
		expect(answers).toEqual([
			{ result: { name: "ok", tenantId: "t1", requestId: "r-1" } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "stringMax" })] } },
			// An unknown field: fastest-validator's strict mode names no field, and the key is not echoed.
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "", type: "objectStrict" })] } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "required" })] } },
			{ error: { type: "CONFLICT", message: "Already there", code: 409 } },
			{ error: { type: "UNAUTHORIZED", message: "Authentication required", code: 401 } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "string" })] } },
			{ result: { name: "ok3", tenantId: "t1", requestId: "r-8" } }
		]);
		// The same as each alone (the request id aside: this broker runs no request-scope middleware).
		for (const [i, call] of calls.entries()) {
			const single = await alone(call.params, call.auth);
			const grouped = answers[i];
			if ("error" in grouped) expect(single).toEqual(grouped);
			else expect(single).toEqual({ result: { ...grouped.result, requestId: undefined } });
		}
	});

	it("answers an unexpected failure as a 500 without its message, and logs it with its stack where it happened", async () => {
		logged.length = 0;
		const answers = (await broker.call("demo.many", { calls: [{ params: { name: "boom" }, auth: device, requestId: "r-9" }] })) as Array<GroupedAnswer<Answer>>;
		expect(answers).toEqual([{ error: { type: "INTERNAL_ERROR", message: "Internal server error", code: 500 } }]);
		expect(logged).toHaveLength(1);
		expect(String((logged[0][1] as Error).stack)).toContain("kaput");
	});

	it("hands the gateway the result, or an error its error writer turns into the same API error", () => {
		expect(groupedResult({ result: 42 })).toBe(42);
		const errors: ApiError[] = [
			{ type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [{ field: "name", message: "The 'name' field is required.", type: "required" }] },
			{ type: "UNAUTHORIZED", message: "Authentication required", code: 401 },
			{ type: "SERVICE_UNAVAILABLE", message: "Try again", code: 503 },
			{ type: "INTERNAL_ERROR", message: "Internal server error", code: 500 }
		];
		for (const error of errors) {
			let thrown: unknown = null;
			try {
				groupedResult({ error });
			} catch (err) {
				thrown = err;
			}
			expect(toApiError(thrown)).toEqual(error);
		}
	});

	it("refuses a group that is not one: no calls, too many, or calls of another shape", async () => {
		const call: GroupedCall = { params: { name: "ok" }, auth: device, requestId: "r" };
		for (const params of [{ calls: [] }, { calls: Array(257).fill(call) }, { calls: [{ ...call, requestId: 5 }] }, { calls: [{ ...call, more: true }] }, { calls: [call], other: 1 }]) {
			await expect(broker.call("demo.many", params)).rejects.toMatchObject({ name: "ValidationError" });
		}
	});
});
