/**
 * Group calls: the gateway's device lane hands a service the calls of one hot device action
 * (the heartbeat: every screen, every 30 s) many at a time, in one broker call to the action the
 * hot one names as `groupedBy`, and the service answers each exactly as the action would have.
 * One context, one trip over NATS and one Redis pipeline per batch instead of per heartbeat;
 * when to send a batch is shared/group-send.ts's business.
 *
 * Nothing about a call changes: the gateway has resolved its principal, checked its permission
 * and counted its rate limit before it joins a batch; the service validates its params with the
 * action's own rules and runs it in its request's logging scope; a failure is answered as the
 * API error it would have been and written by the gateway's one error writer. A grouped action
 * answers a plain result (no status or headers of its own).
 */
import type { Logger } from "moleculer";
import { Errors as MoleculerErrors } from "moleculer";
import { AppError, toApiError, type ApiError } from "./errors";
import { requestScope } from "./logging";
import type { Principal } from "./rbac";
import type { RequestMeta } from "./request";

/** At most this many calls travel in one group call. */
export const GROUP_CALL_MAX = 256;

/** One call of a group call: the params as the client sent them, the caller the gateway resolved. */
export interface GroupedCall {
	params: Record<string, unknown>;
	auth: Principal | null;
	requestId: string;
}

/** Its answer: the action's result, or the API error it failed with. */
export type GroupedAnswer<R> = { result: R } | { error: ApiError };

/** The params rules of a group action: `calls`, each a call as above (its params are checked per call). */
export const GROUP_CALL_PARAMS = {
	$$strict: true,
	calls: {
		type: "array",
		min: 1,
		max: GROUP_CALL_MAX,
		items: {
			type: "object",
			strict: true,
			props: { params: { type: "object" }, auth: { type: "object", nullable: true }, requestId: { type: "string" } }
		}
	}
} as const;

type Check = (params: unknown) => true | unknown[] | Promise<true | unknown[]>;

/**
 * The service's side: each call checked with `check` (the action's params compiled by the
 * broker's validator, as its validation middleware does) and run by `run` in its request's
 * logging scope, all at once; each failure becomes the API error the gateway will write. An
 * unexpected failure (5xx) is logged here, where its stack is.
 */
export function answerGroup<R>(
	calls: readonly GroupedCall[],
	check: Check,
	run: (meta: Pick<RequestMeta, "auth" | "requestId">, params: Record<string, unknown>) => Promise<R>,
	logger: Pick<Logger, "error">
): Promise<Array<GroupedAnswer<R>>> {
	return Promise.all(
		calls.map(call =>
			requestScope.run({ requestId: call.requestId }, async (): Promise<GroupedAnswer<R>> => {
				try {
					const valid = await check(call.params);
					if (valid !== true) throw new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", valid);
					return { result: await run({ auth: call.auth, requestId: call.requestId }, call.params) };
				} catch (err) {
					const error = toApiError(err);
					if (error.code >= 500) logger.error("A grouped call failed", err);
					return { error };
				}
			})
		)
	);
}

/** The gateway's side: a call's result, or the error it failed with, thrown for the error writer. */
export function groupedResult<R>(answer: GroupedAnswer<R>): R {
	if ("error" in answer) throw new AppError(answer.error.type, answer.error.message, answer.error.data);
	return answer.result;
}
