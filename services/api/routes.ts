/**
 * The gateway's two moleculer-web routes and what they share:
 * - "rest" under /api/v1: auto-aliases from every published action's `rest`, authenticated and
 *   authorized, our own JSON body parser, plus the device live stream (a function alias that
 *   declares its own permission);
 * - "ops" at the root: health, metrics, the OpenAPI document and its docs page, the web player's
 *   page and files (/player/), unguarded; each alias declares its own OpenAPI summary and
 *   answers, as an action does.
 * Both answer cross-origin requests only from the configured origins.
 */
import type { IncomingMessage } from "node:http";
import fs from "node:fs";
import type { CallingOptions } from "moleculer";
import type { ApiRouteSchema, CorsOptions } from "moleculer-web";
import { DOCS_PAGE_CSP, docsPageHtml, swaggerAssetContentType, swaggerAssetPath } from "../../shared/docs-page";
import { Errors } from "../../shared/errors";
import { READINESS_SCHEMA, type Readiness } from "../../shared/health";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/metrics";
import type { ResponseDoc } from "../../shared/openapi";
import { pathOf } from "../../shared/request";
import { pairingQrSvg, playerAsset, playerBuilt, playerPageCsp, playerPageHtml, playerShell, PLAYER_BUILD_DIR, SERVICE_WORKER_FILE } from "../../shared/player-page";
import { sendJson } from "./answers";
import { jsonBody, requireObjectBody, type BodyMiddleware } from "./http-input";
import { aliasFunction, gatewayRequest, type AliasHandler, type GatewayAlias } from "./moleculer-web";

export const API_PREFIX = "/api/v1";
/** The device live stream, under API_PREFIX. */
export const DEVICE_EVENTS_PATH = "/device/events";
export const ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/** moleculer-web's CORS options for the configured origins; undefined = no cross-origin access. */
export function corsOptions(origins: readonly string[]): CorsOptions | undefined {
	if (origins.length === 0) return undefined;
	return {
		origin: origins.includes("*") ? "*" : [...origins],
		methods: ALLOWED_METHODS,
		allowedHeaders: ["Authorization", "Content-Type", "X-Request-Id", "If-None-Match"],
		exposedHeaders: ["X-Request-Id", "ETag", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
		credentials: false,
		maxAge: 600
	};
}

/** Whether a raw request URL is the device stream (which never finishes on its own). */
export function isDeviceStreamUrl(url: string | undefined): boolean {
	const path = pathOf(url).replace(/\/+$/, "").toLowerCase();
	return path === `${API_PREFIX}${DEVICE_EVENTS_PATH}`.toLowerCase();
}

/**
 * Root call options of a request: the device stream's `api.rest` context is not tracked, as it
 * ends only when the client leaves or the gateway drains; tracking would make every broker stop
 * wait `shutdownTimeout` for it.
 */
export function rootCallOptions(options: CallingOptions, req: IncomingMessage): void {
	if (isDeviceStreamUrl(req.url)) options.tracking = false;
}

/** The REST route's hooks, which live on the service (they need its config, store and streams). */
export interface RestRouteHooks {
	onBeforeCall: NonNullable<ApiRouteSchema["onBeforeCall"]>;
	onAfterCall: NonNullable<ApiRouteSchema["onAfterCall"]>;
	/** `GET /device/events`, after authentication and authorization (permission `device`). */
	openDeviceStream: AliasHandler;
}

/** The raw-body ("stream") aliases of an alias table, as `METHOD /full/path` (see isRawBodyRequest). */
export function rawBodyRoutes(aliases: readonly GatewayAlias[]): Set<string> {
	return new Set(aliases.filter(alias => alias.type === "stream").map(alias => `${alias.method} ${alias.fullPath}`));
}

/**
 * Whether a request of the REST route goes to a raw-body ("stream") alias: the JSON parser runs
 * before moleculer-web matches an alias, so it asks this first (a set lookup: it runs on every
 * request). `req.url` is relative to the route.
 */
export function isRawBodyRequest(rawRoutes: ReadonlySet<string>, req: IncomingMessage): boolean {
	return rawRoutes.has(`${req.method} ${API_PREFIX}${pathOf(req.url)}`);
}

/** What the REST route (and the device lane) run on a request before anything else: the JSON body parser and its checks. */
export function bodyMiddlewares(maxBodyBytes: number, rawBody: (req: IncomingMessage) => boolean): BodyMiddleware[] {
	return [jsonBody(maxBodyBytes, rawBody), requireObjectBody];
}

export function restRoute(options: { body: BodyMiddleware[]; cors: CorsOptions | undefined }, hooks: RestRouteHooks): ApiRouteSchema {
	return {
		name: "rest",
		path: API_PREFIX,
		autoAliases: true,
		mappingPolicy: "restrict",
		authentication: true,
		authorization: true,
		cors: options.cors,
		// Our own JSON parser: undecodable bodies answer 400 (see http-input.ts).
		bodyParsers: false,
		use: options.body,
		onBeforeCall: hooks.onBeforeCall,
		onAfterCall: hooks.onAfterCall,
		logging: true,
		aliases: {
			[`GET ${DEVICE_EVENTS_PATH}`]: {
				permission: "device",
				summary: "Live events of this display (text/event-stream): manifest, command, keep-alive comments",
				tags: ["device"],
				extraResponses: {
					200: {
						description: "An open stream of server-sent events: `manifest` (the new ETag), `command`, keep-alive comments.",
						content: { "text/event-stream": { type: "string" } }
					}
				},
				handler: aliasFunction(hooks.openDeviceStream)
			}
		}
	};
}

/** What the operations endpoints read from the running gateway. */
export interface OpsSources {
	readiness(): Promise<Readiness>;
	/** Prometheus text of the broker's metrics (empty when metrics are off). */
	metricsText(): string;
	openApiDocument(): unknown;
	/** S3_PUBLIC_ENDPOINT: where device downloads are redirected (the player page must reach it). */
	publicStorageUrl: string | null;
}

/**
 * An operations endpoint as an object alias: its handler and what the OpenAPI document says
 * about it (moleculer-web keeps the extra fields on the alias; route-docs.ts publishes them).
 */
export interface OpsAlias {
	summary: string;
	/** JSON Schema of the 200 answer's JSON body. */
	response?: unknown;
	/** Other answers, or the 200 one in another media type (see ActionSchema.extraResponses). */
	extraResponses?: Record<number, ResponseDoc>;
	handler: AliasHandler;
}

/** The operations endpoints, by alias. */
export function opsAliases(sources: OpsSources): Record<string, OpsAlias> {
	return {
		"GET /health/live": {
			summary: "Liveness: 200 while the process runs",
			response: { type: "object", required: ["status"], properties: { status: { const: "ok" } } },
			handler: (_req, res) => sendJson(res, 200, { status: "ok" })
		},
		"GET /health/ready": {
			summary: "Readiness: 200 when every dependency answers, 503 with the failing checks",
			response: READINESS_SCHEMA,
			extraResponses: { 503: { description: "A dependency fails (or the process drains).", content: { "application/json": READINESS_SCHEMA } } },
			handler: async (_req, res) => {
				const ready = await sources.readiness();
				sendJson(res, ready.status === "ok" ? 200 : 503, ready);
			}
		},
		"GET /metrics": {
			summary: "Prometheus metrics",
			extraResponses: { 200: { description: "Metrics in the Prometheus text format.", content: { "text/plain": { type: "string" } } } },
			handler: (_req, res) => {
				res.writeHead(200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
				res.end(sources.metricsText());
			}
		},
		"GET /api/openapi.json": {
			summary: "This OpenAPI 3.1 document",
			response: {
				type: "object",
				required: ["openapi", "info", "paths"],
				properties: { openapi: { const: "3.1.0" }, info: { type: "object" }, paths: { type: "object" } }
			},
			handler: (_req, res) => sendJson(res, 200, sources.openApiDocument())
		},
		"GET /api/docs": {
			summary: "The API reference page (Swagger UI)",
			extraResponses: { 200: { description: "An HTML page that renders this document.", content: { "text/html": { type: "string" } } } },
			handler: (_req, res) => {
				res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": DOCS_PAGE_CSP });
				res.end(docsPageHtml("/api/openapi.json", "/api/docs/assets"));
			}
		},
		"GET /api/docs/assets/:file": {
			summary: "A static file of the API reference page",
			extraResponses: { 200: { description: "A stylesheet, script or icon.", content: { "*/*": {} } } },
			handler: (req, res) => {
				const name = String(gatewayRequest(req).$params?.file ?? "");
				const file = swaggerAssetPath(name);
				const type = swaggerAssetContentType(name);
				if (!file || !type) throw Errors.notFound("Asset");
				res.writeHead(200, { "Content-Type": type, "Cache-Control": "public, max-age=3600" });
				fs.createReadStream(file).pipe(res);
			}
		},
		...playerAliases(sources.publicStorageUrl)
	};
}

/** The player's answers must not be kept by proxies (a new build reaches screens on their next load). */
const PLAYER_CACHING = { "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff" };

function requirePlayerBuild(): void {
	if (!playerBuilt()) throw Errors.unavailable("The web player is not built: run `npm run build:player`");
}

/** The reference web player (player/src): its page, files, service worker and pairing QR code. */
function playerAliases(publicStorageUrl: string | null): Record<string, OpsAlias> {
	const csp = playerPageCsp(publicStorageUrl);
	const html = { 200: { description: "The player page.", content: { "text/html": { type: "string" } } } };
	return {
		"GET /player": {
			summary: "The web player: open it on a screen's browser to turn it into a display (`?provisioningKey=` registers it at once)",
			extraResponses: { ...html, 301: { description: "To /player/ (the service worker's scope), keeping the query string." } },
			handler: (req, res) => {
				const [pathname, query] = (req.url ?? "/player").split(/\?(.*)/s, 2);
				if (!pathname.endsWith("/")) {
					res.writeHead(301, { Location: `/player/${query ? `?${query}` : ""}`, ...PLAYER_CACHING });
					return void res.end();
				}
				requirePlayerBuild();
				res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": csp, "Referrer-Policy": "no-referrer", ...PLAYER_CACHING });
				res.end(playerPageHtml());
			}
		},
		"GET /player/assets/:file": {
			summary: "A script or stylesheet of the web player",
			extraResponses: { 200: { description: "JavaScript or CSS.", content: { "*/*": {} } } },
			handler: (req, res) => {
				requirePlayerBuild();
				const asset = playerAsset(String(gatewayRequest(req).$params?.file ?? ""));
				if (!asset) throw Errors.notFound("Asset");
				res.writeHead(200, { "Content-Type": asset.type, ...PLAYER_CACHING });
				fs.createReadStream(asset.path).pipe(res);
			}
		},
		"GET /player/shell.json": {
			summary: "The files the player's service worker keeps for offline use",
			response: { type: "array", items: { type: "string" } },
			handler: (_req, res) => sendJson(res, 200, playerShell(), PLAYER_CACHING)
		},
		"GET /player/sw.js": {
			summary: "The web player's service worker (keeps the page available offline)",
			extraResponses: { 200: { description: "JavaScript.", content: { "text/javascript": {} } } },
			handler: (_req, res) => {
				requirePlayerBuild();
				res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8", ...PLAYER_CACHING });
				fs.createReadStream(`${PLAYER_BUILD_DIR}/${SERVICE_WORKER_FILE}`).pipe(res);
			}
		},
		"GET /player/qr.svg": {
			summary: "A QR code carrying a pairing code (`?code=`), for the player's pairing screen",
			extraResponses: { 200: { description: "An SVG image.", content: { "image/svg+xml": {} } } },
			handler: async (req, res) => {
				const code = new URL(req.url ?? "/", "http://x").searchParams.get("code") ?? "";
				const svg = await pairingQrSvg(code);
				if (!svg) throw Errors.validation([{ field: "code", message: "must be a pairing code (6 letters and digits)", type: "pattern" }]);
				res.writeHead(200, { "Content-Type": "image/svg+xml", "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'", "Cache-Control": "public, max-age=900", "X-Content-Type-Options": "nosniff" });
				res.end(svg);
			}
		}
	};
}

export function opsRoute(aliases: Record<string, OpsAlias | AliasHandler>, cors: CorsOptions | undefined): ApiRouteSchema {
	const registered = Object.fromEntries(
		Object.entries(aliases).map(([key, alias]) => [key, typeof alias === "function" ? aliasFunction(alias) : { ...alias, handler: aliasFunction(alias.handler) }])
	);
	return { name: "ops", path: "/", aliases: registered, mappingPolicy: "restrict", bodyParsers: false, logging: false, cors };
}
