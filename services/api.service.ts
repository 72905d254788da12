/**
 * The gateway (moleculer-web). REST under /api/v1 is generated from the `rest` field of every
 * published action; each request is authenticated (bearer token → `auth.resolve`), authorized
 * against the RBAC table, rate limited, and every failure answers in the API's error shape with
 * the request id. Operations endpoints (/health/*, /metrics, /api/openapi.json, /api/docs) sit
 * beside it.
 *
 * The screens' hot routes (heartbeat, manifest, proof of play: every device route without path
 * parameters, and the live stream) take the device lane (services/api/device-lane.ts): the same checks and answers
 * without moleculer-web's pipeline, one broker call each, the device token checked against the
 * version auth publishes instead of a call to auth per request.
 *
 * The device live stream (`GET /api/v1/device/events`, server-sent events) is a raw alias of the
 * same route, guarded by the `permission` declared on the alias itself. Every gateway replica
 * subscribes to the broadcast events that concern devices and pushes them to the streams open
 * on it; the streams end when the process starts draining.
 *
 * The pure parts live in services/api/: routes.ts (the two routes, CORS, the operations
 * endpoints), guards.ts (caller, permission, rate-limit key, uploads, HEAD, declared status),
 * device-lane.ts and device-principals.ts (the device lane and the device tokens it remembers),
 * answers.ts (error and JSON answers), route-docs.ts (what the OpenAPI document is built from),
 * device-stream.ts (the streams), http-input.ts (bodies) and moleculer-web.ts (its typings).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Context, MetricRegistry, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { CorsOptions } from "moleculer-web";
import { getConfig, type Config } from "../shared/config";
import type { EventCtx } from "../shared/contracts";
import { Errors } from "../shared/errors";
import { dependencyChecks, readiness, type Check } from "../shared/health";
import { newId } from "../shared/ids";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { onDrain } from "../shared/lifecycle";
import { acceptableRequestId, requestScope } from "../shared/logging";
import { prometheusText } from "../shared/metrics";
import { opsCounter, OPS_METRICS, type OpsCounter } from "../shared/ops-metrics";
import { buildOpenApi, type RouteDoc } from "../shared/openapi";
import { hitRateLimit, type RateLimitResult } from "../shared/rate-limit";
import { decide, isPermission, type Permission } from "../shared/rbac";
import { pathOf, type RequestMeta } from "../shared/request";
import { answerUnparsable, writeError } from "./api/answers";
import { brokerLaneGroups, LaneGroups, laneRouteOf, laneRoutes, runMiddlewares, writeAnswer, type LaneRoute } from "./api/device-lane";
import { DevicePrincipals } from "./api/device-principals";
import {
	DEVICE_STREAMS_METRIC,
	DeviceStreamRegistry,
	isSameDevice,
	manifestEventData,
	parseCommandCreated,
	parseDisplayDeleted,
	parseManifestChanged,
	REVOKED,
	SSE_HEADERS,
	type DeviceConnection
} from "./api/device-stream";
import {
	afterCall,
	anonymousMeta,
	assertAllowed,
	bearerToken,
	needsPrincipal,
	rateLimitHeaders,
	rateLimitKey,
	requireMultipartForUploads,
	resolvePrincipal,
	routeName,
	routePermission,
	servedAsGet
} from "./api/guards";
import type { BodyMiddleware } from "./api/http-input";
import { gatewayRequest, type WebMethods, type WebSettings, type WebVars } from "./api/moleculer-web";
import { actionsByName, routeDocs } from "./api/route-docs";
import { RouteMemory } from "./api/route-memory";
import { ALLOWED_METHODS, bodyMiddlewares, corsOptions, isRawBodyRequest, opsAliases, opsRoute, rawBodyRoutes, restRoute, rootCallOptions } from "./api/routes";

const RATE_WINDOW_MS = 60_000;
/** A connection that sends nothing for this long is closed (slow-body and idle clients). */
const SOCKET_IDLE_MS = 120_000;

/** moleculer-web's settings, plus the device stream's timings (tests shorten them). */
interface GatewaySettings extends WebSettings {
	deviceStreamKeepAliveMs: number;
	deviceStreamRetryMs: number;
	/** How often an open stream's device token is checked again (0 = never). */
	deviceStreamRecheckMs: number;
}

interface GatewayVars extends WebVars {
	config: Config;
	/** The CORS options of every route; undefined = no cross-origin access. */
	cors?: CorsOptions;
	kv: KeyValueStore;
	checks: Record<string, Check>;
	deviceStreams: DeviceStreamRegistry;
	/** Unsubscribes the drain hook that ends the streams. */
	stopDrainHook?: () => void;
	/** Every REST route served so far: while its service is down, it answers 503, not 404. */
	routeMemory: RouteMemory;
	/** The raw-body routes (the Stripe webhook), which the JSON parser leaves alone. */
	rawBodyRoutes: Set<string>;
	/** The REST route's body parser and checks (the device lane runs the same). */
	bodyParsers: BodyMiddleware[];
	/** The device lane's routes, rebuilt with moleculer-web's alias table. */
	lane: Map<string, LaneRoute>;
	/** Device tokens auth accepted, checked against the version it publishes. */
	devicePrincipals: DevicePrincipals;
	/** The lane's requests by status class (the others are counted as calls of api.rest). */
	laneRequests: OpsCounter<"code">;
	/** The lane's group calls (the heartbeats). */
	laneGroups: LaneGroups;
}

interface GatewayMethods extends WebMethods {
	answerOptions(req: IncomingMessage, res: ServerResponse): void;
	aliasesChanged(): void;
	serveLane(req: IncomingMessage, res: ServerResponse, route: LaneRoute, requestId: string): Promise<void>;
	countRequest(meta: RequestMeta, res: ServerResponse): Promise<void>;
	countRemembered(token: string | null, permission: Permission, meta: RequestMeta, res: ServerResponse): Promise<boolean>;
	applyRateLimit(res: ServerResponse, limit: RateLimitResult): void;
	routeDocs(): RouteDoc[];
	openDeviceStream(req: IncomingMessage, res: ServerResponse, meta: RequestMeta): void;
	verifyDeviceStream(connection: DeviceConnection): Promise<boolean>;
}

/** moleculer-web's own httpHandler, which ours wraps. */
const webHttpHandler = ApiGateway.methods?.httpHandler;
if (!webHttpHandler) throw new Error("moleculer-web has no httpHandler method to wrap");
/** moleculer-web's own alias table rebuild, which ours wraps. */
const webRegenerateAutoAliases = ApiGateway.methods?.regenerateAutoAliases;
if (!webRegenerateAutoAliases) throw new Error("moleculer-web has no regenerateAutoAliases method to wrap");

/** The HTTP request an `api.rest` call serves. */
const restRequest = (ctx: Context): IncomingMessage => (ctx.params as { req: IncomingMessage }).req;
/**
 * Its path without the query, for its tracing span (moleculer-web's own puts the whole URL on it:
 * the SSO callback's query carries the identity provider's one-time code).
 */
const restPath = (ctx: Context): string => pathOf(restRequest(ctx).url);

const ApiService: ServiceSchema<GatewaySettings, GatewayMethods, GatewayVars> = {
	name: "api",
	mixins: [ApiGateway],

	settings: {
		port: 3000,
		ip: "0.0.0.0",
		logRequestParams: null,
		logResponseData: null,
		log4XXResponses: false,
		// The route table is for debugging; at info it was printed twice at every start.
		logRouteRegistration: "debug",
		optimizeOrder: true,
		// Registered in created(), once the config is read.
		routes: [],
		rootCallOptions,
		deviceStreamKeepAliveMs: 25_000,
		deviceStreamRetryMs: 5_000,
		deviceStreamRecheckMs: 5 * 60_000
	},

	actions: {
		// A retry would replay the whole HTTP exchange on a consumed request, and a timeout would
		// cut an upload or a live stream that is still moving: retries and timeouts belong to the
		// action calls made inside it (and the HTTP server's own idle limits, see started()).
		rest: { retryPolicy: { enabled: false }, timeout: 0, tracing: { tags: ctx => ({ method: restRequest(ctx).method, path: restPath(ctx) }), spanName: ctx => `${restRequest(ctx).method ?? ""} ${restPath(ctx)}` } },
		// moleculer-web's alias listing would be an unguarded REST route: switched off.
		listAliases: false
	},

	events: {
		// moleculer-web regenerates aliases 500 ms (debounced) after services change; without this,
		// routes of local services would answer 404 for that long after the broker is ready.
		"$broker.started"() {
			for (const route of this.routes) {
				if (route.opts.autoAliases) this.regenerateAutoAliases(route);
			}
		},

		// Device pushes. Other services broadcast these, so every replica hears them and writes to
		// the streams open on it; the registry checks the tenant of each event against the stream's.
		// The payloads crossed the transporter, so they are checked before use.
		"devices.command.created"(ctx: EventCtx<"devices.command.created">) {
			const event = parseCommandCreated(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'devices.command.created' event");
			this.deviceStreams.send(event.tenantId, event.displayId, "command", event.command);
		},
		"scheduling.manifest.changed"(ctx: EventCtx<"scheduling.manifest.changed">) {
			const event = parseManifestChanged(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'scheduling.manifest.changed' event");
			for (const displayId of event.displayIds) {
				this.deviceStreams.send(event.tenantId, displayId, "manifest", manifestEventData(event, displayId));
			}
		},
		"devices.display.deleted"(ctx: EventCtx<"devices.display.deleted">) {
			const event = parseDisplayDeleted(ctx.params);
			if (!event) return void this.logger.warn("Ignoring a malformed 'devices.display.deleted' event");
			this.deviceStreams.end(event.tenantId, event.displayId, REVOKED);
		}
	},

	methods: {
		/** Runs each HTTP request with a request id in scope, so every log line carries it. */
		httpHandler(req: IncomingMessage, res: ServerResponse, next?: unknown) {
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
					return this.sendError(req, res, err);
				}
			}
			servedAsGet(req);
			const lane = laneRouteOf(this.lane, req);
			if (lane) return requestScope.run({ requestId }, () => this.serveLane(req, res, lane, requestId));
			return requestScope
				.run({ requestId }, async () => webHttpHandler.call(this, req, res, next))
				.catch(err => this.sendError(req, res, err));
		},

		/** moleculer-web rebuilds its alias table (a service came or went); so does what the gateway derives from it. */
		regenerateAutoAliases(route: WebVars["routes"][number]) {
			webRegenerateAutoAliases.call(this, route);
			this.aliasesChanged();
		},

		/** The alias table changed: remember its routes (503 while away), its raw-body routes, the device lane. */
		aliasesChanged() {
			this.routeMemory.remember(this.aliases);
			this.rawBodyRoutes = rawBodyRoutes(this.aliases);
			this.lane = laneRoutes(this.aliases, actionsByName(this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false })));
		},

		/**
		 * A device lane request, in moleculer-web's order: body, CORS, principal, permission, rate
		 * limit, the action (one broker call), its answer. Every failure answers like any other.
		 */
		async serveLane(req: IncomingMessage, res: ServerResponse, route: LaneRoute, requestId: string) {
			try {
				await runMiddlewares(req, res, this.bodyParsers);
				// moleculer-web writes a route's CORS headers with the preflight ones on every request: so does the lane.
				if (this.cors) this.writeCorsHeaders({ cors: this.cors }, req, res, true);
				const body: unknown = (req as IncomingMessage & { body?: unknown }).body;
				const params = { ...(typeof body === "object" && body !== null ? body : {}), ...this.parseQueryString(req).query };
				const meta = anonymousMeta(req, requestId, this.config.trustProxyHops);
				const token = bearerToken(req);
				if (!(await this.countRemembered(token, route.permission, meta, res))) {
					if (needsPrincipal(route.permission, token)) meta.auth = await this.devicePrincipals.resolve(token);
					assertAllowed(route.permission, meta.auth);
					await this.countRequest(meta, res);
				}
				if (route.action === null) return this.openDeviceStream(req, res, meta);
				const action = route.action;
				// (Inline functions: tsx names every function bound to a name, at a cost per request.)
				const data: unknown = route.group
					? await this.laneGroups.call(route.group, { params, meta: { auth: meta.auth, ip: meta.ip, userAgent: meta.userAgent, requestId: meta.requestId, headers: meta.headers } }, meta, () =>
							this.broker.call(action, params, { meta, requestID: requestId })
						)
					: await this.broker.call(action, params, { meta, requestID: requestId });
				writeAnswer(res, meta.$statusCode ?? route.successStatus, meta, data);
			} catch (err) {
				this.sendError(req, res, err);
			} finally {
				this.laneRequests.increment({ code: `${Math.floor(res.statusCode / 100)}xx` });
			}
		},

		/**
		 * Counts a call against its caller's rate limit; 429 past it. The RateLimit-* headers go on
		 * the response itself: an action that sets its own headers (an ETag, a file name) replaces
		 * `meta.$responseHeaders` and would drop them.
		 */
		async countRequest(meta: RequestMeta, res: ServerResponse) {
			this.applyRateLimit(res, await hitRateLimit(this.kv, rateLimitKey(meta.auth, meta.ip), this.config.rateLimit.perMinute, RATE_WINDOW_MS));
		},

		/**
		 * The lane's principal, permission and rate limit in one round trip, for a device token the
		 * gateway remembers: the request is counted only while the store still names the token.
		 * False when it is not remembered or has moved (nothing counted): the caller resolves it
		 * through auth and counts as for any request, so a revoked token's 401 spends nothing.
		 */
		async countRemembered(token: string | null, permission: Permission, meta: RequestMeta, res: ServerResponse): Promise<boolean> {
			if (!needsPrincipal(permission, token)) return false;
			const known = this.devicePrincipals.recall(token);
			if (!known || decide(permission, known.principal) !== "allow") return false;
			const limit = await hitRateLimit(this.kv, rateLimitKey(known.principal, meta.ip), this.config.rateLimit.perMinute, RATE_WINDOW_MS, known.current);
			if (!limit) {
				this.devicePrincipals.forget(token);
				return false;
			}
			meta.auth = known.principal;
			this.applyRateLimit(res, limit);
			return true;
		},

		/** The RateLimit-* headers of a counted request; 429 past the limit. */
		applyRateLimit(res: ServerResponse, limit: RateLimitResult) {
			for (const [name, value] of Object.entries(rateLimitHeaders(limit))) res.setHeader(name, value);
			if (!limit.allowed) throw Errors.rateLimited(limit.resetSec);
		},

		/** No alias matches: a route served before whose service is away now is a 503 to retry. */
		send404(req: IncomingMessage, res: ServerResponse) {
			// moleculer-web has cut the route's prefix off `url` by now; `originalUrl` is the whole path.
			if (this.routeMemory.knows(req.method, gatewayRequest(req).originalUrl ?? req.url)) return this.sendError(req, res, Errors.unavailable("The service behind this route is not running right now, retry later"));
			this.sendError(req, res, Errors.notFound("Route"));
		},

		/** Every failure ends here (moleculer-web's default would answer its own error shape). */
		sendError(req: IncomingMessage, res: ServerResponse, err: unknown) {
			writeError(this.logger, req, res, err);
		},

		/** 204 to every OPTIONS; with CORS configured, a preflight from an allowed origin gets its headers. */
		answerOptions(req: IncomingMessage, res: ServerResponse) {
			if (this.cors && req.headers["access-control-request-method"]) this.writeCorsHeaders({ cors: this.cors }, req, res, true);
			res.writeHead(204, { Allow: ALLOWED_METHODS.join(", "), "Content-Length": "0" });
			res.end();
		},

		/** Authentication hook: resolves a bearer token into the principal in `ctx.meta.auth`. */
		async authenticate(ctx: Context<unknown, RequestMeta>, _route: unknown, incoming: IncomingMessage): Promise<null> {
			const req = gatewayRequest(incoming);
			Object.assign(ctx.meta, anonymousMeta(req, ctx.requestID ?? "", this.config.trustProxyHops));
			const token = bearerToken(req);
			if (needsPrincipal(routePermission(req), token)) ctx.meta.auth = await resolvePrincipal(ctx, token);
			return null;
		},

		/** Authorization hook: the RBAC table decides, then the caller's rate limit is counted. */
		async authorize(ctx: Context<unknown, RequestMeta>, _route: unknown, incoming: IncomingMessage, res: ServerResponse): Promise<void> {
			const req = gatewayRequest(incoming);
			const permission = routePermission(req);
			if (!isPermission(permission)) {
				this.logger.error(`${routeName(req)} declares no known permission; denying`);
				throw Errors.forbidden("This route is not available");
			}
			assertAllowed(permission, ctx.meta.auth);
			await this.countRequest(ctx.meta, res);
		},

		/** Every alias with what the registry knows of its action (local or on another node). */
		routeDocs(): RouteDoc[] {
			return routeDocs(this.aliases, actionsByName(this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false })));
		},

		/**
		 * `GET /api/v1/device/events`, from the device lane (or from moleculer-web's alias for another
		 * spelling of the path): the principal, permission (`device`) and rate limit were checked,
		 * so `meta.auth` is a device. Hands the response to the stream registry, which keeps it
		 * open until either side ends it. While draining, the stream ends right after its
		 * preamble, like the open ones: the device reconnects elsewhere.
		 */
		openDeviceStream(incoming: IncomingMessage, res: ServerResponse, meta: RequestMeta) {
			const req = gatewayRequest(incoming);
			const auth = meta.auth;
			if (!auth || auth.kind !== "device" || !auth.displayId) throw Errors.unauthorized("This token cannot be used here");
			// HEAD asks what a GET would answer: the headers, not a stream (nor this display's slot).
			if (req.$head) {
				res.writeHead(200, { ...(meta.$responseHeaders ?? {}), ...SSE_HEADERS });
				res.end();
				return;
			}
			req.socket.setKeepAlive(true);
			req.socket.setNoDelay(true);
			req.socket.setTimeout(0);
			this.deviceStreams.open(
				{ tenantId: auth.tenantId, displayId: auth.displayId, credential: bearerToken(req) ?? undefined },
				res,
				meta.$responseHeaders ?? {}
			);
		},

		/** Whether an open stream's token still resolves to the same device (it may be revoked or re-minted). */
		async verifyDeviceStream(connection: DeviceConnection): Promise<boolean> {
			if (!connection.credential) return true;
			try {
				return isSameDevice(await resolvePrincipal(this.broker, connection.credential), connection);
			} catch (err) {
				// An invalid token answers 401; anything else (auth unreachable) keeps the stream for now.
				if ((err as { code?: unknown }).code === 401) return false;
				throw err;
			}
		}
	},

	created() {
		this.config = getConfig();
		this.routeMemory = new RouteMemory();
		const config = this.config;
		const metrics: MetricRegistry | undefined = this.broker.metrics;
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
		this.kv = sharedKeyValueStore(config);
		this.lane = new Map();
		this.devicePrincipals = new DevicePrincipals(this.kv, token => resolvePrincipal(this.broker, token));
		this.laneRequests = opsCounter(metrics, OPS_METRICS.deviceLaneRequests);
		this.laneGroups = brokerLaneGroups(this.broker);
		this.checks = dependencyChecks(config, this.broker);
		this.cors = corsOptions(config.corsOrigins);

		const ops = opsAliases({
			readiness: () => readiness(this.checks, this.broker),
			metricsText: () => prometheusText(this.broker.metrics) ?? "",
			publicStorageUrl: config.s3.publicEndpoint,
			openApiDocument: () =>
				buildOpenApi(this.routeDocs(), {
					title: "Marquee API",
					version: "1",
					description: "Multi-tenant digital signage backend. Errors: {error:{type,message,code,data,requestId}}.",
					license: { name: "Apache-2.0", identifier: "Apache-2.0" }
				})
		});

		this.rawBodyRoutes = new Set();
		this.bodyParsers = bodyMiddlewares(config.maxBodyBytes, req => isRawBodyRequest(this.rawBodyRoutes, req));
		this.settings.port = config.port;
		this.settings.ip = config.host;
		const routes = [
			restRoute(
				{ body: this.bodyParsers, cors: this.cors },
				{ onBeforeCall: requireMultipartForUploads, onAfterCall: afterCall, openDeviceStream: (req, res) => this.openDeviceStream(req, res, gatewayRequest(req).$ctx.meta) }
			),
			opsRoute(ops, this.cors)
		];
		// moleculer-web's own created() ran first, before the config was read: register the routes now.
		this.settings.routes = routes;
		this.routes = [];
		this.aliases = [];
		for (const route of routes) this.addRoute(route);
	},

	started() {
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

	stopped() {
		this.stopDrainHook?.();
		this.deviceStreams.shutdown();
	}
};

export default ApiService;
