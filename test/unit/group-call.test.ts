/**
 * shared/group-call.ts: a group call answers each of its calls exactly as a call of its own would
 * have been answered — its params checked with the action's rules by the broker's validator, the
 * action's own handler run on a context with the call's meta, its status and headers carried
 * back, its failure the same API error, its log lines under its own request id — and one call's
 * failure touches no other. Checked on a real broker (the platform's validator) against the same
 * action called alone.
 */
import { ServiceBroker, type Context } from "moleculer";
import { Errors, toApiError, type ApiError } from "../../shared/errors";
import { answerGroup, fitsGroup, GROUP_CALL_BYTES, GROUP_CALL_PARAMS, groupedResult, type CallMeta, type GroupedAnswer, type GroupedCall } from "../../shared/group-call";
import { currentRequestId } from "../../shared/logging";
import { brokerLaneGroups, LaneGroups } from "../../services/api/device-lane";
import type { Principal } from "../../shared/rbac";
import type { AnswerMeta, RequestMeta } from "../../shared/request";
import { SafeValidator } from "../../shared/validation";

const RULES = {
	$$strict: true,
	name: { type: "string", max: 5 },
	count: { type: "number", integer: true, optional: true }
} as const;

interface Answer {
	name: string;
	padding?: string;
	tenantId: string;
	requestId: string | undefined;
	ip: string;
}

const device: Principal = { kind: "device", tenantId: "t1", displayId: "d1" };

function meta(requestId: string, auth: Principal | null = device, headers?: Record<string, string>): CallMeta {
	return { auth, ip: "203.0.113.7", userAgent: "screen/1", requestId, headers };
}

/**
 * The action, alone or grouped: "boom" fails unexpectedly, "nope" as the API would; "cond"
 * answers 304 with an ETag when If-None-Match names it, as the manifest does.
 */
function handler(ctx: Context<Record<string, unknown>, RequestMeta>): Promise<Answer | null> {
	const { params } = ctx;
	if (params.name === "boom") throw new Error("kaput");
	if (params.name === "nope") throw Errors.conflict("Already there");
	if (!ctx.meta.auth) throw Errors.unauthorized();
	if (params.name === "cond") {
		ctx.meta.$responseHeaders = { ETag: '"e1"' };
		if (ctx.meta.headers?.["if-none-match"] === '"e1"') {
			ctx.meta.$statusCode = 304;
			return Promise.resolve(null);
		}
	}
	const answer: Answer = { name: String(params.name), tenantId: ctx.meta.auth.tenantId, requestId: currentRequestId(), ip: ctx.meta.ip };
	// An answer too big to travel in a group, as a full manifest can be.
	if (params.name === "big") answer.padding = "x".repeat(GROUP_CALL_BYTES);
	return Promise.resolve(answer);
}

describe("group calls", () => {
	let broker: ServiceBroker;
	const logged: unknown[][] = [];

	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, validator: new SafeValidator() });
		broker.createService({
			name: "demo",
			actions: {
				one: { params: RULES, handler },
				many: {
					params: GROUP_CALL_PARAMS,
					handler: (ctx: Context<{ calls: GroupedCall[] }>) => answerGroup(ctx, RULES, handler, { error: (...args: unknown[]) => void logged.push(args) })
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	/** What a call of `demo.one` alone answers: its result and answer fields, or the API error it fails with. */
	async function alone(call: GroupedCall): Promise<{ result: unknown; meta?: AnswerMeta } | { error: ApiError }> {
		const callMeta: Partial<RequestMeta> = { ...call.meta };
		try {
			const result = await broker.call("demo.one", call.params, { meta: callMeta });
			const answer: AnswerMeta = {};
			if (callMeta.$statusCode !== undefined) answer.$statusCode = callMeta.$statusCode;
			if (callMeta.$responseHeaders !== undefined) answer.$responseHeaders = callMeta.$responseHeaders;
			return Object.keys(answer).length ? { result, meta: answer } : { result };
		} catch (err) {
			return { error: toApiError(err) };
		}
	}

	it("answers each call as the action alone would, in order, one failure touching no other", async () => {
		const calls: GroupedCall[] = [
			{ params: { name: "ok" }, meta: meta("r-1") },
			{ params: { name: "toolong" }, meta: meta("r-2") },
			{ params: { name: "ok", extra: 1 }, meta: meta("r-3") },
			{ params: { name: null }, meta: meta("r-4") },
			{ params: { name: "nope" }, meta: meta("r-5") },
			{ params: { name: "ok2" }, meta: meta("r-6", null) },
			{ params: { name: { $gt: "" } }, meta: meta("r-7") },
			{ params: { name: "cond" }, meta: meta("r-8", device, { "if-none-match": '"e1"' }) },
			{ params: { name: "cond" }, meta: meta("r-9", device, { "if-none-match": '"old"' }) },
			{ params: { name: "ok3", count: 2 }, meta: meta("r-10") },
			{ params: { name: "big" }, meta: meta("r-11") }
		];
		const answers = (await broker.call("demo.many", { calls })) as Array<GroupedAnswer<Answer | null>>;
		expect(answers).toEqual([
			{ result: { name: "ok", tenantId: "t1", requestId: "r-1", ip: "203.0.113.7" } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "stringMax" })] } },
			// An unknown field: fastest-validator's strict mode names no field, and the key is not echoed.
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "", type: "objectStrict" })] } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "required" })] } },
			{ error: { type: "CONFLICT", message: "Already there", code: 409 } },
			{ error: { type: "UNAUTHORIZED", message: "Authentication required", code: 401 } },
			{ error: { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [expect.objectContaining({ field: "name", type: "string" })] } },
			{ result: null, meta: { $statusCode: 304, $responseHeaders: { ETag: '"e1"' } } },
			{ result: { name: "cond", tenantId: "t1", requestId: "r-9", ip: "203.0.113.7" }, meta: { $responseHeaders: { ETag: '"e1"' } } },
			{ result: { name: "ok3", tenantId: "t1", requestId: "r-10", ip: "203.0.113.7" } },
			// Too big to travel in a group, but this caller is in the same process: answered in the
			// group all the same (a caller across the transporter gets "alone", see below).
			{ result: expect.objectContaining({ name: "big", requestId: "r-11" }) }
		]);
		// The same as each alone (the request id aside: this broker runs no request-scope middleware).
		for (const [i, call] of calls.entries()) {
			const single = await alone(call);
			const grouped = answers[i];
			if ("alone" in grouped) throw new Error("no call of a local caller is answered alone");
			else if ("error" in grouped || grouped.result === null) expect(single).toEqual(grouped);
			else expect(single).toEqual({ ...grouped, result: { ...grouped.result, requestId: undefined } });
		}
	});

	it("answers an unexpected failure as a 500 without its message, and logs it with its stack where it happened", async () => {
		logged.length = 0;
		const answers = (await broker.call("demo.many", { calls: [{ params: { name: "boom" }, meta: meta("r-12") }] })) as Array<GroupedAnswer<Answer>>;
		expect(answers).toEqual([{ error: { type: "INTERNAL_ERROR", message: "Internal server error", code: 500 } }]);
		expect(logged).toHaveLength(1);
		expect(String((logged[0][1] as Error).stack)).toContain("kaput");
	});

	it("hands the gateway the result with its answer fields, an error its error writer turns into the same API error, or the call made alone", async () => {
		const never = () => Promise.reject(new Error("not alone"));
		const answerMeta: AnswerMeta = {};
		await expect(groupedResult({ result: 42, meta: { $statusCode: 304 } }, answerMeta, never)).resolves.toBe(42);
		expect(answerMeta).toEqual({ $statusCode: 304 });
		await expect(groupedResult({ alone: true }, {}, () => Promise.resolve("by itself"))).resolves.toBe("by itself");
		const errors: ApiError[] = [
			{ type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: [{ field: "name", message: "The 'name' field is required.", type: "required" }] },
			{ type: "UNAUTHORIZED", message: "Authentication required", code: 401 },
			{ type: "SERVICE_UNAVAILABLE", message: "Try again", code: 503 },
			{ type: "INTERNAL_ERROR", message: "Internal server error", code: 500 }
		];
		for (const error of errors) {
			let thrown: unknown = null;
			try {
				await groupedResult({ error }, {}, never);
			} catch (err) {
				thrown = err;
			}
			expect(toApiError(thrown)).toEqual(error);
		}
	});

	it("lets only calls and answers of up to 3 KiB of JSON travel in a group, so 256 stay under NATS's 1 MiB", () => {
		expect(GROUP_CALL_BYTES * 256).toBeLessThan(1024 * 1024);
		expect(fitsGroup({ params: { appVersion: "1.0" }, meta: meta("r") })).toBe(true);
		expect(fitsGroup(null)).toBe(true);
		expect(fitsGroup("x".repeat(GROUP_CALL_BYTES - 2))).toBe(true);
		expect(fitsGroup("x".repeat(GROUP_CALL_BYTES - 1))).toBe(false);
		// Counted in bytes, not characters.
		expect(fitsGroup("€".repeat(1100))).toBe(false);
		// A body nested too deep to serialise (found by the route fuzz: a 500) goes alone, never throws.
		let deep: Record<string, unknown> = {};
		for (let i = 0; i < 100_000; i++) deep = { a: deep };
		expect(fitsGroup({ params: deep, meta: meta("r") })).toBe(false);
	});

	it("answers a caller on another node 'alone' for an answer too big to travel back in the group", async () => {
		const namespace = `group-call-${process.pid}-${Date.now()}`;
		const services = new ServiceBroker({ nodeID: "services", namespace, transporter: "Fake", logger: false, validator: new SafeValidator() });
		services.createService({ name: "demo", actions: { many: { params: GROUP_CALL_PARAMS, handler: (ctx: Context<{ calls: GroupedCall[] }>) => answerGroup(ctx, RULES, handler, { error: () => undefined }) } } });
		const gateway = new ServiceBroker({ nodeID: "gateway", namespace, transporter: "Fake", logger: false });
		await Promise.all([services.start(), gateway.start()]);
		try {
			await gateway.waitForServices("demo");
			const answers = (await gateway.call("demo.many", { calls: [{ params: { name: "big" }, meta: meta("r-1") }, { params: { name: "ok" }, meta: meta("r-2") }] })) as Array<GroupedAnswer<Answer>>;
			expect(answers).toEqual([{ alone: true }, { result: { name: "ok", tenantId: "t1", requestId: "r-2", ip: "203.0.113.7" } }]);
		} finally {
			await Promise.all([gateway.stop(), services.stop()]);
		}
	});

	it("sends a group to the gateway's own process pinned and unmeasured, else with every call too big to travel made alone", async () => {
		const big: GroupedCall = { params: { junk: "x".repeat(GROUP_CALL_BYTES) }, meta: meta("r-big") };
		const small: GroupedCall = { params: { appVersion: "1.0" }, meta: meta("r-small") };
		const sent: Array<{ calls: GroupedCall[]; local: boolean }> = [];
		const callGroup = (_action: string, calls: GroupedCall[], local: boolean) => {
			sent.push({ calls, local });
			return Promise.resolve(calls.map(c => ({ result: c.meta.requestId })));
		};
		let serves = false;
		const groups = new LaneGroups(callGroup, action => serves && action === "devices.heartbeatGroup");
		const alone = (name: string) => () => Promise.resolve(`${name} alone`);
		// Another process serves it: the big call, sent in the same turn as the small one, goes alone.
		await expect(Promise.all([groups.call("devices.heartbeatGroup", big, {}, alone("big")), groups.call("devices.heartbeatGroup", small, {}, alone("small"))])).resolves.toEqual(["big alone", "r-small"]);
		expect(sent).toEqual([{ calls: [small], local: false }]);
		// Only big calls: nothing is sent.
		sent.length = 0;
		await expect(groups.call("devices.heartbeatGroup", big, {}, alone("big"))).resolves.toBe("big alone");
		expect(sent).toEqual([]);
		// This process serves it (available now): both go, pinned to it.
		serves = true;
		await expect(Promise.all([groups.call("devices.heartbeatGroup", big, {}, alone("big")), groups.call("devices.heartbeatGroup", small, {}, alone("small"))])).resolves.toEqual(["r-big", "r-small"]);
		expect(sent).toEqual([{ calls: [big, small], local: true }]);
	});

	it("over a real registry: a gateway without the action sends only calls that fit across the transporter; the node serving it keeps every call", async () => {
		const namespace = `lane-groups-${process.pid}-${Date.now()}`;
		const received: Array<{ node: string; calls: GroupedCall[] }> = [];
		const services = new ServiceBroker({ nodeID: "services", namespace, transporter: "Fake", logger: false, validator: new SafeValidator() });
		services.createService({
			name: "demo",
			actions: {
				many: {
					params: GROUP_CALL_PARAMS,
					handler: (ctx: Context<{ calls: GroupedCall[] }>) => {
						received.push({ node: ctx.nodeID ?? "", calls: ctx.params.calls });
						return ctx.params.calls.map(c => ({ result: c.meta.requestId }));
					}
				}
			}
		});
		const gateway = new ServiceBroker({ nodeID: "gateway", namespace, transporter: "Fake", logger: false });
		await Promise.all([services.start(), gateway.start()]);
		try {
			await gateway.waitForServices("demo");
			const big = (i: number): GroupedCall => ({ params: { junk: "x".repeat(200_000) }, meta: meta(`big-${i}`) });
			const small = (i: number): GroupedCall => ({ params: { appVersion: "1.0" }, meta: meta(`small-${i}`) });
			const calls = Array.from({ length: 12 }, (_, i) => (i % 2 ? big(i) : small(i)));
			// All sent in one turn: one group.
			const remote = brokerLaneGroups(gateway);
			const answers = await Promise.all(calls.map(call => remote.call("demo.many", call, {}, () => Promise.resolve(`${call.meta.requestId} alone`))));
			expect(answers).toEqual(calls.map(c => (c.meta.requestId.startsWith("big") ? `${c.meta.requestId} alone` : c.meta.requestId)));
			expect(received).toEqual([{ node: "gateway", calls: calls.filter(c => c.meta.requestId.startsWith("small")) }]);

			received.length = 0;
			const local = brokerLaneGroups(services);
			await expect(Promise.all(calls.map(call => local.call("demo.many", call, {}, () => Promise.resolve("alone"))))).resolves.toEqual(calls.map(c => c.meta.requestId));
			expect(received).toEqual([{ node: "services", calls }]);
		} finally {
			await Promise.all([gateway.stop(), services.stop()]);
		}
	});

	it("refuses a group that is not one, and drops fields of a call it does not know (a later gateway's)", async () => {
		const call: GroupedCall = { params: { name: "ok" }, meta: meta("r") };
		const bad = [{ calls: [] }, { calls: Array(257).fill(call) }, { calls: [{ ...call, meta: { ...call.meta, requestId: 5 } }] }, { calls: [{ params: "x", meta: call.meta }] }, { calls: [call], other: 1 }];
		for (const params of bad) {
			await expect(broker.call("demo.many", params)).rejects.toMatchObject({ name: "ValidationError" });
		}
		// A field the gateway never sends, in the call or its meta (an answer field included), does not reach the handler.
		const answers = (await broker.call("demo.many", { calls: [{ ...call, later: 1, meta: { ...call.meta, $statusCode: 200, later: 1 } }] })) as Array<GroupedAnswer<Answer>>;
		expect(answers).toEqual([{ result: { name: "ok", tenantId: "t1", requestId: "r", ip: "203.0.113.7" } }]);
	});
});
