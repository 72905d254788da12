/**
 * Group calls: the gateway's device lane hands a service the calls of one hot device action (the
 * heartbeat: every screen, every 30 s; the manifest's 304) many at a time, in one broker call to
 * the action the hot one names as `groupedBy`, and the service answers each exactly as the
 * action would have. One broker context through the middlewares, one trip over NATS and one
 * Redis pipeline per group instead of per call; when a group goes is shared/group-send.ts's
 * business.
 *
 * Nothing about a call changes: the gateway has resolved its principal, checked its permission
 * and counted its rate limit before it joins a group; the service runs the action's own handler
 * on a context of the call's own (its params, principal, forwarded headers and request id, so
 * its calls to other services carry them as always), after checking its params with the
 * action's own rules by the broker's validator, in its request's logging scope. What the
 * handler leaves for the HTTP answer (a status, headers) travels back with its result; a
 * failure is answered as the API error it would have been and written by the gateway's one
 * error writer. One call's failure touches no other.
 */
import type { Context, Logger, ServiceBroker } from "moleculer";
import { Errors as MoleculerErrors } from "moleculer";
import { AppError, toApiError, type ApiError } from "./errors";
import { requestScope } from "./logging";
import type { AnswerMeta, RequestMeta } from "./request";

/** At most this many calls travel in one group call. */
export const GROUP_CALL_MAX = 256;

/**
 * A call, and its answer, travel in a group only up to this size (JSON, bytes): a group of 256
 * stays well under NATS's default 1 MiB message. A bigger call (a junk body) goes alone; a
 * bigger answer (a full manifest) is answered `alone`, and the gateway makes the call on its own
 * — so a grouped action must be safe to run twice (a heartbeat run twice is a screen that
 * heartbeated twice; a manifest request is a read). Only what crosses the transporter is
 * measured: between a gateway and a service of one process nothing is.
 */
export const GROUP_CALL_BYTES = 3 * 1024;

/** What the gateway puts in a request's meta, less what an action leaves for the answer. */
export type CallMeta = Pick<RequestMeta, "auth" | "ip" | "userAgent" | "requestId" | "headers">;

/** One call of a group call: the params as the client sent them, and the meta the gateway made. */
export interface GroupedCall {
	params: Record<string, unknown>;
	meta: CallMeta;
}

/** Its answer: the action's result and what it left for the HTTP answer, the API error it failed with, or "too big: call me alone". */
export type GroupedAnswer<R> = { result: R; meta?: AnswerMeta } | { error: ApiError } | { alone: true };

/** Whether `value` is small enough to travel in a group (see GROUP_CALL_BYTES). */
export function fitsGroup(value: unknown): boolean {
	let json: string | undefined;
	try {
		json = JSON.stringify(value) as string | undefined;
	} catch {
		// Nested too deep to write (a hostile body): it goes alone, answered as it always was.
		return false;
	}
	return json === undefined || (json.length <= GROUP_CALL_BYTES && Buffer.byteLength(json) <= GROUP_CALL_BYTES);
}

/** The params rules of a group action: `calls`, each a call as above (its params are checked per call). */
export const GROUP_CALL_PARAMS = {
	$$strict: true,
	calls: {
		type: "array",
		min: 1,
		max: GROUP_CALL_MAX,
		// Fields a later gateway may add are dropped, not refused, by a replica that does not know them.
		items: {
			type: "object",
			strict: "remove",
			props: {
				params: { type: "object" },
				meta: {
					type: "object",
					strict: "remove",
					props: {
						auth: { type: "object", nullable: true },
						ip: { type: "string" },
						userAgent: { type: "string" },
						requestId: { type: "string" },
						headers: { type: "record", optional: true, key: { type: "string" }, value: { type: "string" } }
					}
				}
			}
		}
	}
} as const;

type Check = (params: unknown) => true | unknown[] | Promise<true | unknown[]>;

/** Each action's params rules compiled once by the broker's validator, as its validation middleware does. */
const compiled = new WeakMap<object, Check>();

function checkOf(broker: ServiceBroker, rules: object | undefined): Check {
	if (!rules) return () => true;
	let check = compiled.get(rules);
	if (!check) {
		if (!broker.validator) throw new Error("The broker has no validator: a group call checks each call's params with it");
		check = broker.validator.compile(rules as Record<string, unknown>) as Check;
		compiled.set(rules, check);
	}
	return check;
}

const ANSWER_FIELDS = ["$statusCode", "$responseHeaders", "$responseType", "$location"] as const;

/**
 * The service's side, the handler of a group action: each call of `ctx.params.calls` checked
 * with `rules` (the grouped action's `params`) and run by `handler` (the grouped action's own)
 * on a context of its own, all at once; each failure becomes the API error the gateway will
 * write. An unexpected failure (5xx) is logged here, where its stack is.
 */
export function answerGroup<R>(
	ctx: Context<{ calls: GroupedCall[] }>,
	rules: object | undefined,
	handler: (call: Context<Record<string, unknown>, RequestMeta>) => Promise<R>,
	logger: Pick<Logger, "error">
): Promise<Array<GroupedAnswer<R>>> {
	const check = checkOf(ctx.broker, rules);
	// Answers to a caller in this process never cross the transporter: their size does not matter.
	const measured = ctx.nodeID !== ctx.broker.nodeID;
	return Promise.all(
		ctx.params.calls.map(call =>
			requestScope.run({ requestId: call.meta.requestId }, async (): Promise<GroupedAnswer<R>> => {
				try {
					const valid = await check(call.params);
					if (valid !== true) throw new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", valid);
					// The copy would share the group's meta, locals, headers and options with every call.
					const own = ctx.copy() as Context<Record<string, unknown>, RequestMeta>;
					own.params = call.params;
					own.meta = { ...call.meta };
					own.requestID = call.meta.requestId;
					own.locals = {};
					own.headers = {};
					own.responseHeaders = {};
					own.options = { ...ctx.options };
					const result = await handler(own);
					if (measured && !fitsGroup(result)) return { alone: true };
					const meta: AnswerMeta = {};
					for (const field of ANSWER_FIELDS) if (own.meta[field] !== undefined) Object.assign(meta, { [field]: own.meta[field] });
					return Object.keys(meta).length ? { result, meta } : { result };
				} catch (err) {
					const error = toApiError(err);
					if (error.code >= 500) logger.error("A grouped call failed", err);
					return { error };
				}
			})
		)
	);
}

/**
 * The gateway's side: a call's result (its answer fields merged into `meta`), the error it
 * failed with, thrown for the error writer, or — answered `alone` — what `alone()` answers.
 */
export async function groupedResult<R>(answer: GroupedAnswer<R>, meta: AnswerMeta, alone: () => Promise<R>): Promise<R> {
	if ("alone" in answer) return alone();
	if ("error" in answer) throw new AppError(answer.error.type, answer.error.message, answer.error.data);
	if (answer.meta) Object.assign(meta, answer.meta);
	return answer.result;
}
