/**
 * What moleculer-web adds, as this gateway uses it: the fields it puts on a request, the alias
 * and route tables and methods it gives the service, the subset of its settings we set. Its own
 * typings describe a generic request (`IncomingRequest`, whose `$ctx` has no meta and whose
 * aliases carry none of our fields) and declare a function `rootCallOptions` impossible, so the
 * gateway types them here, once, and narrows a request in exactly one place (`gatewayRequest`).
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { ActionSchema, CallingOptions, Context, ServiceSettingSchema } from "moleculer";
import type { ApiRouteSchema, ApiSettingsSchema, CorsOptions } from "moleculer-web";
import type { ResponseDoc } from "../../shared/openapi";
import type { RequestMeta } from "../../shared/request";

/** One entry of moleculer-web's alias table (`this.aliases`). */
export interface GatewayAlias {
	method: string;
	fullPath: string;
	/** The action behind it; null for a function alias (operations endpoints, the device stream). */
	action: string | null;
	/** "call" (JSON), "multipart" (uploads), "stream" (raw body). */
	type?: string;
	/**
	 * Extra fields of an object alias definition: a function alias of the REST route declares
	 * its own permission and documentation (see route-docs.ts).
	 */
	permission?: unknown;
	summary?: unknown;
	tags?: unknown;
	response?: unknown;
	extraResponses?: Record<number, ResponseDoc>;
	/** moleculer-web's Alias: the path parameters when a path matches (route-memory.ts). */
	match?(url: string): unknown;
}

/**
 * The action a request resolved to (`req.$action`): the registry's definition, which for an
 * action on another node is the one its INFO packet carried (every schema field but the handler),
 * so `permission` and `successStatus` arrive over the transporter too.
 */
export type ResolvedAction = Pick<ActionSchema, "permission" | "successStatus"> & { name?: string };

/** What the gateway knows about a request beyond Node's own fields. */
export type GatewayRequest = IncomingMessage & {
	$ctx: Context<unknown, RequestMeta>;
	$action?: ResolvedAction;
	/** The matched alias; a function alias carries its own `permission`. */
	$alias?: Partial<GatewayAlias>;
	/** Path, query and body params merged by moleculer-web. */
	$params?: Record<string, unknown>;
	/** A HEAD request, served by its GET route without a body (set by the gateway). */
	$head?: boolean;
	/** The whole request path and query: moleculer-web cuts the matched route's prefix off `url`. */
	originalUrl?: string;
};

/**
 * A request as moleculer-web hands it to hooks, alias handlers and the error writer. The one
 * narrowing of the gateway: moleculer-web sets these fields before any of those run.
 */
export function gatewayRequest(req: IncomingMessage): GatewayRequest {
	return req as GatewayRequest;
}

/** A function alias (operations endpoints, the device stream); `gatewayRequest` narrows its request. */
export type AliasHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * moleculer-web calls a function alias as `handler(req, res, next)` and ignores what it returns,
 * so an async handler's rejection never reached the error writer: the client got no answer and
 * the process logged an unhandled rejection. This hands any failure, thrown or rejected, to
 * `next`, which answers it in the API's error shape. Every function alias is registered through it.
 */
export function aliasFunction(handler: AliasHandler): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
	return (req, res, next) => {
		Promise.resolve()
			.then(() => handler(req, res))
			.catch((err: unknown) => next?.(err));
	};
}

/** The moleculer-web settings the gateway sets. */
export interface WebSettings
	extends ServiceSettingSchema,
		Pick<ApiSettingsSchema, "port" | "ip" | "logRequestParams" | "logResponseData" | "log4XXResponses" | "logRouteRegistration" | "optimizeOrder"> {
	routes: ApiRouteSchema[];
	/**
	 * Call options of each request's root `api.rest` context. moleculer-web accepts a function
	 * (called with the options to fill in and the request); its typings only know an object.
	 */
	rootCallOptions: (options: CallingOptions, req: IncomingMessage) => void;
}

/** What moleculer-web's mixin puts on the service instance (`this`) that the gateway uses. */
export interface WebVars {
	/** The alias table, rebuilt when services change. */
	aliases: GatewayAlias[];
	/** The route table; each route keeps its options in `opts`. */
	routes: Array<{ opts: { autoAliases?: boolean } }>;
	server: Server;
}

/** moleculer-web's methods the gateway calls or overrides. */
export interface WebMethods {
	addRoute(route: ApiRouteSchema): unknown;
	regenerateAutoAliases(route: WebVars["routes"][number]): void;
	/** Writes the CORS headers of a route (`preflight`: the Access-Control-Allow-* ones too). */
	writeCorsHeaders(route: { cors: CorsOptions }, req: IncomingMessage, res: ServerResponse, preflight: boolean): void;
	/** The query string of a request, parsed as every REST request's is (qs). */
	parseQueryString(req: IncomingMessage): { query: Record<string, unknown>; url: string };
	/** Every HTTP request enters here (overridden: request ids, OPTIONS, HEAD). */
	httpHandler(req: IncomingMessage, res: ServerResponse, next?: unknown): Promise<void> | void;
	/** Every failure of a request ends here (overridden: the API's error shape). */
	sendError(req: IncomingMessage, res: ServerResponse, err: unknown): void;
	/** A request no alias matches (overridden: a route whose service is down answers 503). */
	send404(req: IncomingMessage, res: ServerResponse): void;
	/** Route hooks moleculer-web calls with `authentication: true` / `authorization: true`. */
	authenticate(ctx: Context<unknown, RequestMeta>, route: unknown, req: IncomingMessage): Promise<null>;
	authorize(ctx: Context<unknown, RequestMeta>, route: unknown, req: IncomingMessage): Promise<void>;
}
