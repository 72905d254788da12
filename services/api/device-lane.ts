/**
 * The device lane: how the gateway serves the screens' hot routes (heartbeat, manifest, proof of
 * play, the live stream) without moleculer-web's request pipeline. A fleet of 100 000 screens heartbeats ~3 300
 * times a second; through moleculer-web each heartbeat made three broker contexts (the gateway's
 * `api.rest`, `auth.resolve`, the action), each through every middleware, and in a split
 * deployment two of them crossed NATS. On the lane it is one: the action's.
 *
 * Nothing is skipped, only done directly: the same body parser and object check, the same query
 * merge (query over body, as moleculer-web does), the same bearer parsing, the same RBAC table,
 * the same rate limit, the same error writer, the same declared status. The principal comes
 * from the device principals the gateway remembers (device-principals.ts), which ask auth for
 * any token they cannot vouch for.
 *
 * Which routes: every REST alias whose action declares the `device` permission, takes JSON (not
 * an upload or a raw body) and has no path parameters; and the live stream (`GET
 * /device/events`), which the gateway then holds without a moleculer-web request pending for
 * its whole life (that pipeline, kept open per screen, was most of a stream's memory). They are
 * found in moleculer-web's alias table whenever it is rebuilt, so a route exists on the lane
 * exactly when moleculer-web would serve it; a request the lane does not match (another spelling
 * of the path, a method it has no route for) goes through moleculer-web as before.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServiceBroker } from "moleculer";
import { Readable } from "node:stream";
import { Errors } from "../../shared/errors";
import { fitsGroup, GROUP_CALL_MAX, groupedResult, type GroupedAnswer, type GroupedCall } from "../../shared/group-call";
import { requestScope } from "../../shared/logging";
import { GroupSender } from "../../shared/group-send";
import type { Permission } from "../../shared/rbac";
import { pathOf, type AnswerMeta } from "../../shared/request";
import type { BodyMiddleware } from "./http-input";
import { API_PREFIX, DEVICE_EVENTS_PATH } from "./routes";
import type { GatewayAlias } from "./moleculer-web";
import type { PublishedAction } from "./route-docs";

export interface LaneRoute {
	method: "GET" | "POST";
	path: string;
	/** The action it calls; null for the live stream, which the gateway holds itself. */
	action: string | null;
	permission: Permission;
	/** The action's declared success status (`successStatus`), else 200. */
	successStatus: number;
	/** The action taking its calls in groups (`groupedBy`), when it is registered; else null. */
	group: string | null;
}

const laneKey = (method: string, path: string) => `${method} ${path}`;

/** The lane's routes, from moleculer-web's alias table and the registry's action definitions. */
export function laneRoutes(aliases: readonly GatewayAlias[], actions: ReadonlyMap<string, PublishedAction>): Map<string, LaneRoute> {
	const routes = new Map<string, LaneRoute>();
	for (const alias of aliases) {
		// The live stream: the function alias at its path, declaring the device permission itself.
		if (!alias.action && alias.method === "GET" && alias.fullPath === `${API_PREFIX}${DEVICE_EVENTS_PATH}` && alias.permission === "device") {
			routes.set(laneKey("GET", alias.fullPath), { method: "GET", path: alias.fullPath, action: null, permission: "device", successStatus: 200, group: null });
			continue;
		}
		if (!alias.action || (alias.type && alias.type !== "call")) continue;
		if (alias.method !== "GET" && alias.method !== "POST") continue;
		if (alias.fullPath.includes(":") || alias.fullPath.includes("*")) continue;
		const action = actions.get(alias.action);
		if (action?.permission !== "device") continue;
		const successStatus = typeof action.successStatus === "number" ? action.successStatus : 200;
		// A replica of an earlier version may not have the group action yet: then one call each.
		const group = typeof action.groupedBy === "string" && actions.has(action.groupedBy) ? action.groupedBy : null;
		routes.set(laneKey(alias.method, alias.fullPath), { method: alias.method, path: alias.fullPath, action: alias.action, permission: "device", successStatus, group });
	}
	return routes;
}

/** The lane route of a request (HEAD is served by its GET route), or undefined: moleculer-web serves it. */
export function laneRouteOf(routes: ReadonlyMap<string, LaneRoute>, req: Pick<IncomingMessage, "method" | "url">): LaneRoute | undefined {
	if (routes.size === 0) return undefined;
	const method = req.method === "HEAD" ? "GET" : (req.method ?? "");
	return routes.get(laneKey(method, pathOf(req.url)));
}

/** Runs connect-style middlewares in order (the REST route's body parser and checks); rejects with the first error. */
export async function runMiddlewares(req: IncomingMessage, res: ServerResponse, middlewares: readonly BodyMiddleware[]): Promise<void> {
	for (const middleware of middlewares) {
		await new Promise<void>((resolve, reject) => middleware(req, res, err => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve())));
	}
}

/**
 * Group calls in flight at once per group action: a batch waits for the ones before only when
 * this many are out, and with replicas of the service each can take some. A group answers when
 * its slowest call does (a manifest computed afresh), so too few would hold quick calls behind
 * slow ones: with 4, 10 000 simulated screens fetching their first manifests waited 291 ms at the median,
 * with 16 66 ms (64 ms without groups), one run each, for the same throughput in the benchmark.
 */
const GROUP_CALLS_IN_FLIGHT = 16;

/** Calls that may wait for a group per group action; past them a call answers 503 at once. */
const GROUP_CALLS_WAITING = 16 * GROUP_CALL_MAX;

/** How a group goes out: to this process's own endpoint (`local`), or wherever the broker balances it. */
export type CallGroup = (action: string, calls: GroupedCall[], local: boolean) => Promise<Array<GroupedAnswer<unknown>>>;

/**
 * The lane's group calls over `broker`: a local group pinned to this node and never retried (a
 * retry goes through the balancer, which could send its unmeasured calls across NATS; the group
 * fails as a whole instead, 503 to each call, and its screens send again), served locally while
 * this node's endpoint of the action is available.
 */
export function brokerLaneGroups(broker: ServiceBroker): LaneGroups {
	return new LaneGroups(
		(action, calls, local) => broker.call(action, { calls }, local ? { nodeID: broker.nodeID, retries: 0 } : {}),
		action => broker.registry.getActionEndpoints(action)?.localEndpoints.some(endpoint => endpoint.isAvailable) === true
	);
}

/** The lane's group calls (shared/group-call.ts): one sender per group action. */
export class LaneGroups {
	private readonly senders = new Map<string, GroupSender<GroupedCall, GroupedAnswer<unknown>>>();

	constructor(
		private readonly callGroup: CallGroup,
		/** Whether this process runs the action and can take calls now (its endpoint is available). */
		private readonly servesLocally: (action: string) => boolean
	) {}

	/**
	 * The result of `call` of the action `group` takes calls for (its answer fields merged into
	 * `meta`), or the error it answered, thrown. `alone` makes the call on its own: for a call or
	 * an answer too big to travel in a group.
	 */
	async call(group: string, call: GroupedCall, meta: AnswerMeta, alone: () => Promise<unknown>): Promise<unknown> {
		let sender = this.senders.get(group);
		if (!sender) {
			// A group serves many requests: its broker call runs outside any one's logging scope.
			sender = new GroupSender(calls => requestScope.exit(() => this.send(group, calls)), GROUP_CALL_MAX, {
				concurrency: GROUP_CALLS_IN_FLIGHT,
				maxWaiting: GROUP_CALLS_WAITING,
				overflow: () => Errors.unavailable("Too many requests are waiting for this service, retry later")
			});
			this.senders.set(group, sender);
		}
		return groupedResult(await sender.send(call), meta, alone);
	}

	/**
	 * Sends a group, decided when it goes: to this process's own endpoint when it serves the
	 * action (pinned there, so it never crosses the transporter, and its calls are not measured:
	 * a JSON.stringify per request saved), else to the balancer, with every call too big to travel
	 * answered "alone" instead (its caller makes it on its own; one junk body must not push a
	 * group past NATS's message limit and fail the other screens' calls).
	 */
	private async send(group: string, calls: GroupedCall[]): Promise<Array<GroupedAnswer<unknown>>> {
		if (this.servesLocally(group)) return this.callGroup(group, calls, true);
		const fitting = calls.filter(call => fitsGroup(call));
		if (fitting.length === calls.length) return this.callGroup(group, calls, false);
		const answers = fitting.length ? await this.callGroup(group, fitting, false) : [];
		if (answers.length !== fitting.length) throw new Error(`A group call answered ${answers.length} of ${fitting.length} calls`);
		let next = 0;
		return calls.map(call => (fitting[next] === call ? answers[next++] : { alone: true }));
	}
}

/**
 * Writes an action's answer as moleculer-web would: the status the action chose or declared, its
 * headers, JSON (no body for null, 204 and 304; Node drops the body of a HEAD answer itself).
 * The lane's routes answer JSON; a stream or a buffer here is a programming error.
 */
export function writeAnswer(res: ServerResponse, status: number, meta: AnswerMeta, data: unknown): void {
	if (data instanceof Readable || Buffer.isBuffer(data)) throw new Error("A device lane route answered a stream or buffer; such a route must be left to moleculer-web");
	res.statusCode = status;
	for (const [name, value] of Object.entries(meta.$responseHeaders ?? {})) res.setHeader(name, value);
	if ((status === 201 || (status >= 300 && status < 400 && status !== 304)) && meta.$location) res.setHeader("Location", meta.$location);
	if (data === null || data === undefined || status === 204 || status === 304) {
		res.end();
		return;
	}
	const body = JSON.stringify(data);
	res.setHeader("Content-Type", meta.$responseType ?? "application/json; charset=utf-8");
	res.setHeader("Content-Length", Buffer.byteLength(body));
	res.end(body);
}
