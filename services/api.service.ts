/**
 * The gateway (moleculer-web). REST under /api/v1 is generated from the `rest` field of every
 * published action; each request is authenticated (bearer token → `auth.resolve`), authorized
 * against the RBAC table, rate limited, and every failure answers in the API's error shape with
 * the request id. Operations endpoints (/health/*, /metrics, /api/openapi.json, /api/docs) sit
 * beside it.
 *
 * The device live stream (`GET /api/v1/device/events`, server-sent events) is a raw alias of the
 * same route, guarded by the `permission` declared on the alias itself. Every gateway replica
 * subscribes to the broadcast events that concern devices and pushes them to the streams open
 * on it (services/api/device-stream.ts); the streams end when the process starts draining.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import fs from "node:fs";
import { Readable, type Duplex } from "node:stream";
import type { CallingOptions, Context, MetricRegistry, Service, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { ApiRouteSchema, ApiSettingsSchema, CorsOptions } from "moleculer-web";
import { getConfig, type Config } from "../shared/config";
import { errorBody, Errors, internal, toApiError } from "../shared/errors";
import { newId } from "../shared/ids";
import { acceptableRequestId, requestScope } from "../shared/logging";
import { decide, isPermission, type Principal } from "../shared/rbac";
import type { RequestMeta } from "../shared/request";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { hitRateLimit } from "../shared/rate-limit";
import { dependencyChecks, readiness, type Check } from "../shared/health";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "../shared/metrics";
import { onDrain } from "../shared/lifecycle";
import { buildOpenApi, type RouteDoc } from "../shared/openapi";
import { DOCS_PAGE_CSP, docsPageHtml, swaggerAssetContentType, swaggerAssetPath } from "../shared/docs-page";
import { assertMultipart, isMultipartParseError, jsonBody, requireObjectBody } from "./api/http-input";
import {
	DeviceStreamRegistry,
	manifestEventData,
	parseCommandCreated,
	parseDisplayDeleted,
	parseManifestChanged,
	REVOKED,
	SSE_HEADERS,
	type DeviceConnection
} from "./api/device-stream";

export const API_PREFIX = "/api/v1";
const RATE_WINDOW_MS = 60_000;
/** A connection that sends nothing for this long is closed (slow-body and idle clients). */
const SOCKET_IDLE_MS = 120_000;
const ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/** The device live stream, under API_PREFIX. */
export const DEVICE_EVENTS_PATH = "/device/events";
export const DEVICE_STREAMS_METRIC = "marquee_device_streams_open";

/** What the gateway knows about a request beyond Node's own fields. */
type GatewayRequest = IncomingMessage & {
	$ctx: Context<unknown, GatewayMeta>;
	$action?: { name: string; permission?: unknown };
	/** The matched alias; a function alias carries its own `permission`. */
	$alias?: { method?: string; fullPath?: string; permission?: unknown; type?: string };
	$route?: unknown;
	parsedUrl?: string;
	/** Path, query and body params merged by moleculer-web. */
	$params?: Record<string, unknown>;
	/** A HEAD request, served by its GET route without a body. */
	$head?: boolean;
};

type GatewayMeta = RequestMeta;

interface Alias {
	method: string;
	fullPath: string;
	action: string | null;
	type?: string;
	/** Extra fields of an object alias definition (function aliases of the REST route). */
	permission?: unknown;
	summary?: unknown;
	tags?: unknown;
}

interface ActionDefinition {
	name: string;
	params?: Record<string, unknown>;
	permission?: unknown;
	summary?: string;
	successStatus?: number;
}

/** Gateway settings beyond moleculer-web's: the device stream's timings (tests shorten them). */
interface GatewaySettings extends ApiSettingsSchema {
	deviceStreamKeepAliveMs: number;
	deviceStreamRetryMs: number;
	/** How often an open stream's device token is checked again (0 = never). */
	deviceStreamRecheckMs: number;
}

interface ApiVars {
	config: Config;
	/** moleculer-web's CORS options of every route; undefined = no cross-origin access. */
	cors?: CorsOptions;
	kv: KeyValueStore;
	checks: Record<string, Check>;
	deviceStreams: DeviceStreamRegistry;
	/** Unsubscribes the drain hook that ends the streams. */
	stopDrainHook?: () => void;
	/** moleculer-web's alias and route tables. */
	aliases: Alias[];
	routes: unknown[];
	server: Server;
	addRoute(route: ApiRouteSchema): unknown;
	regenerateAutoAliases(route: unknown): void;
}

interface ApiMethods {
	answerOptions(req: IncomingMessage, res: ServerResponse): void;
	/** moleculer-web's own CORS header writer. */
	writeCorsHeaders(route: { cors: CorsOptions }, req: IncomingMessage, res: ServerResponse, preflight: boolean): void;
	clientIp(req: IncomingMessage): string;
	sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void;
	routeDocs(): RouteDoc[];
	openDeviceStream(req: GatewayRequest, res: ServerResponse): void;
	verifyDeviceStream(connection: DeviceConnection): Promise<boolean>;
}

type ApiThis = Service<GatewaySettings> & ApiVars & ApiMethods;

/**
 * The API's error body for any error, with the request id; never a stack trace. Total: it
 * answers whatever was thrown, and if even that fails, a bare 500 goes out and the process
 * serves on.
 */
function writeError(this: ApiThis, incoming: IncomingMessage, res: ServerResponse, err: unknown): void {
	const req = incoming as GatewayRequest;
	try {
		const multipart = req.$alias?.type === "multipart" && isMultipartParseError(err);
		const apiError = toApiError(multipart ? Errors.badRequest("Malformed multipart body") : err);
		const requestId = String(res.getHeader("X-Request-Id") ?? "");
		if (apiError.code >= 500) this.logger.error("Request failed", req.method, req.url, err);
		if (res.headersSent) {
			res.end();
			return;
		}
		const headers: Record<string, string> = {};
		const retryAfter = (apiError.data as { retryAfter?: unknown } | undefined)?.retryAfter;
		if (apiError.code === 429) headers["Retry-After"] = String(typeof retryAfter === "number" ? retryAfter : 60);
		if (apiError.code === 401) headers["WWW-Authenticate"] = 'Bearer realm="marquee"';
		this.sendJson(res, apiError.code, errorBody(apiError, requestId), headers);
	} catch (failure) {
		try {
			this.logger.error("Writing an error answer failed", failure);
			if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json; charset=utf-8" });
			res.end(JSON.stringify(errorBody(internal(), String(res.getHeader("X-Request-Id") ?? ""))));
		} catch {
			res.destroy();
		}
	}
}

/** The request headers actions may read (in `ctx.meta.headers`); everything else stays in the gateway. */
const FORWARDED_HEADERS = ["x-pairing-secret", "if-none-match"] as const;

function forwardedHeaders(req: IncomingMessage): Record<string, string> {
	const headers: Record<string, string> = {};
	for (const name of FORWARDED_HEADERS) {
		const value = req.headers[name];
		if (typeof value === "string" && value.length <= 1024) headers[name] = value;
	}
	return headers;
}

/** Upload routes take well-formed multipart/form-data only (busboy would throw on anything else). */
function requireMultipartForUploads(_ctx: unknown, _route: unknown, req: IncomingMessage): void {
	if ((req as GatewayRequest).$alias?.type !== "multipart") return;
	assertMultipart(req);
	endBodyOnAbort(req);
}

/**
 * A client that goes away mid-upload only destroys the request, and a destroyed stream never ends
 * what it is piped into: busboy, which moleculer-web pipes the request into after this hook,
 * would wait forever, and so would the file stream it handed to the action (holding the action's
 * temporary file). Ending busboy when the request closes before its end makes it see what it is,
 * a truncated body: the file stream fails ("Part terminated early"), the action cleans up, and
 * over a transporter the error travels with the stream. (Node has no public way to find a
 * stream's pipe destinations, hence the wrapped `pipe` of this one request.)
 */
function endBodyOnAbort(req: IncomingMessage): void {
	const pipe = req.pipe;
	req.pipe = function <T extends NodeJS.WritableStream>(this: IncomingMessage, destination: T, options?: { end?: boolean }): T {
		const endIfCut = () => {
			if (!req.readableEnded) destination.end();
		};
		if (req.destroyed) process.nextTick(endIfCut);
		else req.once("close", endIfCut);
		return pipe.call(this, destination, options) as T;
	};
}

/**
 * The answer to a request Node's HTTP parser refused: 400 in the error shape with a fresh request
 * id (a socket that is already gone, or timed out idle, is just closed).
 */
function answerUnparsable(err: NodeJS.ErrnoException, socket: Duplex): void {
	if (err.code === "ECONNRESET" || err.code === "ERR_HTTP_REQUEST_TIMEOUT" || !socket.writable) {
		socket.destroy();
		return;
	}
	const requestId = newId();
	const message = err.code === "HPE_HEADER_OVERFLOW" ? "Request line or headers too large" : "Malformed HTTP request";
	const body = JSON.stringify(errorBody(toApiError(Errors.badRequest(message)), requestId));
	socket.end(
		`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`
	);
}

/**
 * HEAD runs the GET route (same permission, same headers) without a body: Node already drops
 * the body of a HEAD answer, and a streamed object is not read at all.
 */
function dropBodyOfHead(_ctx: unknown, _route: unknown, incoming: IncomingMessage, res: ServerResponse, data: unknown): unknown {
	const req = incoming as GatewayRequest;
	if (!req.$head) return data;
	if (data instanceof Readable) {
		if (!res.hasHeader("Content-Type")) res.setHeader("Content-Type", String(req.$ctx.meta.$responseType ?? "application/octet-stream"));
		data.destroy();
		return null;
	}
	return data;
}

function bearerToken(req: IncomingMessage): string | null {
	const header = req.headers.authorization;
	if (!header) return null;
	const match = /^Bearer\s+(\S{1,4096})\s*$/i.exec(header);
	if (!match) throw Errors.unauthorized("Malformed Authorization header; expected 'Bearer <token>'");
	return match[1];
}

/** The route's permission: declared on a function alias, else on the action behind it. */
function routePermission(req: GatewayRequest): unknown {
	return req.$alias?.permission ?? req.$action?.permission;
}

/** Whether a raw request URL is the device stream (which never finishes on its own). */
function isDeviceStreamUrl(url: string | undefined): boolean {
	const path = (url ?? "").split("?")[0].replace(/\/+$/, "").toLowerCase();
	return path === `${API_PREFIX}${DEVICE_EVENTS_PATH}`.toLowerCase();
}

/**
 * Root call options of a request: the device stream's `api.rest` context is not tracked, as it
 * ends only when the client leaves or the gateway drains; tracking would make every broker stop
 * wait `shutdownTimeout` for it. (moleculer-web accepts a function here; its typings do not.)
 */
function rootCallOptions(options: CallingOptions, req: IncomingMessage): void {
	if (isDeviceStreamUrl(req.url)) options.tracking = false;
}

const ApiService: ServiceSchema<GatewaySettings, ApiMethods, ApiVars> = {
	name: "api",
	mixins: [ApiGateway as unknown as Partial<ServiceSchema>],

	settings: {
		port: 3000,
		ip: "0.0.0.0",
		logRequestParams: null,
		logResponseData: null,
		log4XXResponses: false,
		// The route table is for debugging; at info it was printed twice at every start.
		logRouteRegistration: "debug",
		optimizeOrder: true,
		routes: [],
		onError: writeError,
		rootCallOptions: rootCallOptions as unknown as CallingOptions,
		deviceStreamKeepAliveMs: 25_000,
		deviceStreamRetryMs: 5_000,
		deviceStreamRecheckMs: 5 * 60_000
	},

	actions: {
		// A retry would replay the whole HTTP exchange on a consumed request, and a timeout would
		// cut an upload or a live stream that is still moving: retries and timeouts belong to the
		// action calls made inside it (and the HTTP server's own idle limits, see started()).
		rest: { retryPolicy: { enabled: false }, timeout: 0 },
		// moleculer-web's alias listing would be an unguarded REST route: switched off.
		listAliases: false
	},

	events: {
		// moleculer-web regenerates aliases 500 ms (debounced) after services change; without this,
		// routes of local services would answer 404 for that long after the broker is ready.
		"$broker.started"(this: ApiThis) {
			for (const route of this.routes as Array<{ opts: { autoAliases?: boolean } }>) {
				if (route.opts.autoAliases) this.regenerateAutoAliases(route);
			}
		},

		// Device pushes. Other services broadcast these, so every replica hears them and writes to
		// the streams open on it; the registry checks the tenant of each event against the stream's.
		"devices.command.created"(this: ApiThis, ctx: Context<unknown>) {
			const event = parseCommandCreated(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'devices.command.created' event");
			this.deviceStreams.send(event.tenantId, event.displayId, "command", event.command);
		},
		"scheduling.manifest.changed"(this: ApiThis, ctx: Context<unknown>) {
			const event = parseManifestChanged(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'scheduling.manifest.changed' event");
			for (const displayId of event.displayIds) {
				this.deviceStreams.send(event.tenantId, displayId, "manifest", manifestEventData(event, displayId));
			}
		},
		"devices.display.deleted"(this: ApiThis, ctx: Context<unknown>) {
			const event = parseDisplayDeleted(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'devices.display.deleted' event");
			this.deviceStreams.end(event.tenantId, event.displayId, REVOKED);
		}
	},

	methods: {
		/** Runs each HTTP request with a request id in scope, so every log line carries it. */
		httpHandler(this: ApiThis, req: IncomingMessage, res: ServerResponse, next?: unknown) {
			const given = req.headers["x-request-id"];
			const requestId = acceptableRequestId(given) ? given : newId();
			req.headers["x-request-id"] = requestId;
			delete req.headers["x-correlation-id"];
			res.setHeader("X-Request-Id", requestId);
			// OPTIONS never reaches moleculer-web's routing: it would resolve a preflight to the
			// alias of the method it asks about and run that action when CORS is off.
			if (req.method === "OPTIONS") {
				try {
					return this.answerOptions(req, res);
				} catch (err) {
					// A preflight from an origin that is not allowed: 403 in the error shape.
					return writeError.call(this, req, res, err);
				}
			}
			if (req.method === "HEAD") {
				// Node already knows to send no body; the GET route answers with its headers.
				req.method = "GET";
				(req as GatewayRequest).$head = true;
			}
			const original = ApiGateway.methods!.httpHandler as (...args: unknown[]) => Promise<void>;
			return requestScope.run({ requestId }, () => original.call(this, req, res, next)).catch(err => writeError.call(this, req, res, err));
		},

		/** 204 to every OPTIONS; with CORS configured, a preflight from an allowed origin gets its headers. */
		answerOptions(this: ApiThis, req: IncomingMessage, res: ServerResponse) {
			if (this.cors && req.headers["access-control-request-method"]) this.writeCorsHeaders({ cors: this.cors }, req, res, true);
			res.writeHead(204, { Allow: ALLOWED_METHODS.join(", "), "Content-Length": "0" });
			res.end();
		},

		clientIp(this: ApiThis, req: IncomingMessage): string {
			const socketIp = req.socket.remoteAddress ?? "unknown";
			const hops = this.config.trustProxyHops;
			if (hops === 0) return socketIp;
			const forwarded = String(req.headers["x-forwarded-for"] ?? "")
				.split(",")
				.map(s => s.trim())
				.filter(Boolean);
			// Entries are appended by each proxy: the client is the one our outermost trusted proxy saw.
			return forwarded[forwarded.length - hops] ?? socketIp;
		},

		/** Authentication hook: resolves a bearer token into the principal in `ctx.meta.auth`. */
		async authenticate(this: ApiThis, ctx: Context<unknown, GatewayMeta>, _route: unknown, req: GatewayRequest) {
			ctx.meta.auth = null;
			ctx.meta.ip = this.clientIp(req);
			ctx.meta.userAgent = String(req.headers["user-agent"] ?? "").slice(0, 256);
			ctx.meta.requestId = ctx.requestID ?? "";
			ctx.meta.headers = forwardedHeaders(req);

			const permission = routePermission(req);
			const token = bearerToken(req);
			// Public routes never need the token resolved (and a stale one must not block them).
			if (!token || !isPermission(permission) || permission === "public") return null;
			try {
				ctx.meta.auth = (await ctx.call("auth.resolve", { token })) as Principal | null;
			} catch (err) {
				const name = (err as Error).name;
				if (name === "ServiceNotFoundError" || name === "ServiceNotAvailableError") {
					throw Errors.unavailable("Authentication service unavailable");
				}
				throw err;
			}
			return null;
		},

		/** Authorization hook: the RBAC table decides, then the caller's rate limit is counted. */
		async authorize(this: ApiThis, ctx: Context<unknown, GatewayMeta>, _route: unknown, req: GatewayRequest) {
			const permission = routePermission(req);
			if (!isPermission(permission)) {
				const what = req.$action ? `Action '${req.$action.name}'` : `Alias '${req.$alias?.method} ${req.$alias?.fullPath}'`;
				this.logger.error(`${what} declares no known permission; denying`);
				throw Errors.forbidden("This route is not available");
			}
			const decision = decide(permission, ctx.meta.auth);
			if (decision === "unauthenticated") {
				throw Errors.unauthorized(ctx.meta.auth ? "This token cannot be used here" : "Authentication required");
			}
			if (decision === "forbidden") throw Errors.forbidden();

			const auth = ctx.meta.auth;
			const who = auth
				? `${auth.kind}:${auth.tenantId}:${auth.userId ?? auth.apiKeyId ?? auth.displayId ?? ""}`
				: `ip:${ctx.meta.ip}`;
			const limit = await hitRateLimit(this.kv, who, this.config.rateLimit.perMinute, RATE_WINDOW_MS);
			ctx.meta.$responseHeaders = {
				...ctx.meta.$responseHeaders,
				"RateLimit-Limit": String(limit.limit),
				"RateLimit-Remaining": String(limit.remaining),
				"RateLimit-Reset": String(limit.resetSec)
			};
			if (!limit.allowed) throw Errors.rateLimited(limit.resetSec);
		},

		sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
			const payload = JSON.stringify(body);
			res.writeHead(status, {
				"Content-Type": "application/json; charset=utf-8",
				"Content-Length": Buffer.byteLength(payload),
				...headers
			});
			res.end(payload);
		},

		/** Every alias (REST and operations) with its action's params and permission, for the OpenAPI document. */
		routeDocs(this: ApiThis): RouteDoc[] {
			const actions = new Map<string, ActionDefinition>();
			const list = this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false }) as Array<{
				name: string;
				action?: ActionDefinition;
			}>;
			for (const item of list) if (item.action) actions.set(item.name, item.action);
			return this.aliases.map(alias => {
				if (!alias.action) {
					// Function aliases: operations endpoints, or REST ones that declare their permission.
					if (!isPermission(alias.permission)) return { method: alias.method, path: alias.fullPath, permission: null, tags: ["operations"] };
					return {
						method: alias.method,
						path: alias.fullPath,
						summary: typeof alias.summary === "string" ? alias.summary : undefined,
						permission: alias.permission === "public" ? null : alias.permission,
						tags: Array.isArray(alias.tags) ? alias.tags.filter((t): t is string => typeof t === "string") : undefined
					};
				}
				const action = actions.get(alias.action);
				return {
					method: alias.method,
					path: alias.fullPath,
					action: alias.action,
					summary: action?.summary,
					permission: isPermission(action?.permission) && action?.permission !== "public" ? action.permission : null,
					params: action?.params,
					tags: [alias.action.split(".")[0]],
					successStatus: action?.successStatus,
					aliasType: alias.type === "multipart" || alias.type === "stream" ? alias.type : "call"
				};
			});
		},

		/**
		 * `GET /api/v1/device/events`: authenticate and authorize (permission `device`) already ran,
		 * so `ctx.meta.auth` is a device. Hands the response to the stream registry, which keeps
		 * it open; moleculer-web's request ends when the response closes. While draining, the
		 * stream ends right after its preamble, like the open ones: the device reconnects elsewhere.
		 */
		openDeviceStream(this: ApiThis, req: GatewayRequest, res: ServerResponse) {
			const auth = req.$ctx.meta.auth;
			if (!auth || auth.kind !== "device" || !auth.displayId) throw Errors.unauthorized("This token cannot be used here");
			// HEAD asks what a GET would answer: the headers, not a stream (nor this display's slot).
			if (req.$head) {
				res.writeHead(200, { ...(req.$ctx.meta.$responseHeaders ?? {}), ...SSE_HEADERS });
				res.end();
				return;
			}
			req.socket.setKeepAlive(true);
			req.socket.setNoDelay(true);
			req.socket.setTimeout(0);
			this.deviceStreams.open(
				{ tenantId: auth.tenantId, displayId: auth.displayId, credential: bearerToken(req) ?? undefined },
				res,
				req.$ctx.meta.$responseHeaders ?? {}
			);
		},

		/** Whether an open stream's token still resolves to the same device (it may be revoked or re-minted). */
		async verifyDeviceStream(this: ApiThis, connection: DeviceConnection): Promise<boolean> {
			if (!connection.credential) return true;
			try {
				const principal = (await this.broker.call("auth.resolve", { token: connection.credential })) as Principal | null;
				return (
					principal?.kind === "device" && principal.tenantId === connection.tenantId && principal.displayId === connection.displayId
				);
			} catch (err) {
				// An invalid token answers 401; anything else (auth unreachable) keeps the stream for now.
				if ((err as { code?: unknown }).code === 401) return false;
				throw err;
			}
		}
	},

	created(this: ApiThis) {
		this.config = getConfig();
		const metrics = this.broker.metrics as MetricRegistry | undefined;
		const gauge = metrics?.register({
			name: DEVICE_STREAMS_METRIC,
			type: "gauge",
			description: "Device live streams (SSE) open on this gateway"
		});
		this.deviceStreams = new DeviceStreamRegistry({
			settings: () => ({
				keepAliveMs: this.settings.deviceStreamKeepAliveMs,
				retryMs: this.settings.deviceStreamRetryMs,
				recheckMs: this.settings.deviceStreamRecheckMs
			}),
			onCountChange: open => gauge?.set(open),
			verify: connection => this.verifyDeviceStream(connection)
		});
		gauge?.set(0);
		this.kv = sharedKeyValueStore(this.config);
		this.checks = dependencyChecks(this.config, this.broker);
		const config = this.config;
		const cors = (this.cors = config.corsOrigins.length
			? {
					origin: config.corsOrigins.includes("*") ? "*" : config.corsOrigins,
					methods: ALLOWED_METHODS,
					allowedHeaders: ["Authorization", "Content-Type", "X-Request-Id", "If-None-Match"],
					exposedHeaders: ["X-Request-Id", "ETag", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
					credentials: false,
					maxAge: 600
				}
			: undefined);

		const ops = {
			"GET /health/live": (_req: IncomingMessage, res: ServerResponse) => this.sendJson(res, 200, { status: "ok" }),
			"GET /health/ready": async (_req: IncomingMessage, res: ServerResponse) => {
				const ready = await readiness(this.checks);
				this.sendJson(res, ready.status === "ok" ? 200 : 503, ready);
			},
			"GET /metrics": (_req: IncomingMessage, res: ServerResponse) => {
				res.writeHead(200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
				res.end(prometheusText(this.broker.metrics) ?? "");
			},
			"GET /api/openapi.json": (_req: IncomingMessage, res: ServerResponse) =>
				this.sendJson(
					res,
					200,
					buildOpenApi(this.routeDocs(), {
						title: "Marquee API",
						version: "1",
						description: "Multi-tenant digital signage backend. Errors: {error:{type,message,code,data,requestId}}."
					})
				),
			"GET /api/docs": (_req: IncomingMessage, res: ServerResponse) => {
				res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": DOCS_PAGE_CSP });
				res.end(docsPageHtml("/api/openapi.json", "/api/docs/assets"));
			},
			"GET /api/docs/assets/:file": (req: GatewayRequest, res: ServerResponse) => {
				const name = String(req.$params?.file ?? "");
				const file = swaggerAssetPath(name);
				const type = swaggerAssetContentType(name);
				if (!file || !type) throw Errors.notFound("Asset");
				res.writeHead(200, { "Content-Type": type, "Cache-Control": "public, max-age=3600" });
				fs.createReadStream(file).pipe(res);
			}
		};

		this.settings.port = config.port;
		this.settings.ip = config.host;
		const routes: ApiRouteSchema[] = [
			{
				name: "rest",
				path: API_PREFIX,
				autoAliases: true,
				mappingPolicy: "restrict",
				authentication: true,
				authorization: true,
				cors,
				// Our own JSON parser: undecodable bodies answer 400 (see api/http-input.ts).
				bodyParsers: false,
				use: [jsonBody(config.maxBodyBytes), requireObjectBody],
				onBeforeCall: requireMultipartForUploads,
				onAfterCall: dropBodyOfHead,
				logging: true,
				aliases: {
					[`GET ${DEVICE_EVENTS_PATH}`]: {
						permission: "device",
						summary: "Live events of this display (text/event-stream): manifest, command, keep-alive comments",
						tags: ["device"],
						handler: (req: IncomingMessage, res: ServerResponse) => this.openDeviceStream(req as GatewayRequest, res)
					}
				}
			},
			{ name: "ops", path: "/", aliases: ops, mappingPolicy: "restrict", bodyParsers: false, logging: false, cors }
		];
		// moleculer-web's own created() ran first, before the config was read: register the routes now.
		this.settings.routes = routes;
		this.routes = [];
		this.aliases = [];
		for (const route of routes) this.addRoute(route);
	},

	started(this: ApiThis) {
		// Node cuts any request that takes longer than 5 minutes in total, which a large video on
		// a slow link does. Time it on idleness instead: a socket silent for SOCKET_IDLE_MS closes
		// (the device stream switches this off for its own socket and sends keep-alives).
		this.server.requestTimeout = 0;
		this.server.timeout = SOCKET_IDLE_MS;
		// Requests Node's parser refuses (bytes a URL cannot hold, headers past 16 kB) never reach
		// moleculer-web: they still get an answer in the API's error shape, then the connection closes.
		this.server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => answerUnparsable(err, socket));
		// Streams never finish on their own: end them as soon as the process starts draining, so
		// devices reconnect to another replica and shutdown is not held up.
		this.stopDrainHook = onDrain(() => {
			const ended = this.deviceStreams.shutdown();
			if (ended > 0) this.logger.info(`Draining: ended ${ended} device stream(s).`);
		});
	},

	stopped(this: ApiThis) {
		this.stopDrainHook?.();
		this.deviceStreams.shutdown();
	}
};

export default ApiService;
