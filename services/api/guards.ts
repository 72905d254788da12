/**
 * What stands between a request and an action: who the caller is (bearer token, client ip, the
 * headers actions may read), whether the route lets them in (the RBAC table), how much they may
 * call (the rate-limit key and headers), what an upload route accepts, and how HEAD and the
 * declared success status shape the answer. Pure functions over the request, except
 * `resolvePrincipal`, which asks the auth service.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { Context, ServiceBroker } from "moleculer";
import { call } from "../../shared/contracts";
import { Errors } from "../../shared/errors";
import { decide, isPermission, type Permission, type Principal } from "../../shared/rbac";
import type { RateLimitResult } from "../../shared/rate-limit";
import { SSO_COOKIE, type RequestMeta } from "../../shared/request";
import { assertMultipart } from "./http-input";
import { gatewayRequest, type GatewayRequest } from "./moleculer-web";

// ---- who is calling ---------------------------------------------------------------------------

/** The bearer token of a request; null without an Authorization header, 401 when it is malformed. */
export function bearerToken(req: IncomingMessage): string | null {
	const header = req.headers.authorization;
	if (!header) return null;
	const match = /^Bearer\s+(\S{1,4096})\s*$/i.exec(header);
	if (!match) throw Errors.unauthorized("Malformed Authorization header; expected 'Bearer <token>'");
	return match[1];
}

/**
 * The client's address: the socket's, or with `trustProxyHops` proxies in front, the address
 * the outermost trusted proxy saw (each proxy appends to X-Forwarded-For).
 */
export function clientIp(req: Pick<IncomingMessage, "headers" | "socket">, trustProxyHops: number): string {
	const socketIp = req.socket.remoteAddress ?? "unknown";
	if (trustProxyHops === 0) return socketIp;
	const forwarded = String(req.headers["x-forwarded-for"] ?? "")
		.split(",")
		.map(s => s.trim())
		.filter(Boolean);
	return forwarded[forwarded.length - trustProxyHops] ?? socketIp;
}

/** The request headers actions may read (in `ctx.meta.headers`); everything else stays in the gateway. */
export const FORWARDED_HEADERS = ["x-pairing-secret", "if-none-match", "stripe-signature", "host"] as const;

export function forwardedHeaders(req: Pick<IncomingMessage, "headers">): Record<string, string> {
	const headers: Record<string, string> = {};
	for (const name of FORWARDED_HEADERS) {
		const value = req.headers[name];
		if (typeof value === "string" && value.length <= 1024) headers[name] = value;
	}
	// Only our own cookie, whatever else the browser sends for this host.
	const cookie = String(req.headers.cookie ?? "")
		.split(";")
		.map(part => part.trim())
		.find(part => part.startsWith(`${SSO_COOKIE}=`));
	if (cookie && cookie.length <= 256) headers.cookie = cookie;
	return headers;
}

/** What every REST call's `ctx.meta` starts with, before the principal is resolved. */
export function anonymousMeta(req: Pick<IncomingMessage, "headers" | "socket">, requestId: string, trustProxyHops: number): RequestMeta {
	return {
		auth: null,
		ip: clientIp(req, trustProxyHops),
		userAgent: String(req.headers["user-agent"] ?? "").slice(0, 256),
		requestId,
		headers: forwardedHeaders(req)
	};
}

/**
 * The principal behind a token (`auth.resolve`: null or 401 when it is not valid). An auth
 * service nobody can reach answers 503, not 404: the route exists, the check cannot run.
 */
export async function resolvePrincipal(via: Context | ServiceBroker, token: string): Promise<Principal | null> {
	try {
		return await call(via, "auth.resolve", { token });
	} catch (err) {
		const name = err instanceof Error ? err.name : "";
		if (name === "ServiceNotFoundError" || name === "ServiceNotAvailableError") {
			throw Errors.unavailable("Authentication service unavailable");
		}
		throw err;
	}
}

// ---- may they call this route -----------------------------------------------------------------

/** The route's permission: declared on a function alias, else on the action behind it. */
export function routePermission(req: Pick<GatewayRequest, "$alias" | "$action">): unknown {
	return req.$alias?.permission ?? req.$action?.permission;
}

/** How a route is named in the log when it declares no known permission. */
export function routeName(req: Pick<GatewayRequest, "$alias" | "$action">): string {
	return req.$action ? `Action '${req.$action.name}'` : `Alias '${req.$alias?.method} ${req.$alias?.fullPath}'`;
}

/** Whether a route needs its token resolved: public routes never do (a stale token must not block them). */
export function needsPrincipal(permission: unknown, token: string | null): token is string {
	return token !== null && isPermission(permission) && permission !== "public";
}

/** The RBAC table's answer as an error: 401 without a usable token, 403 when the caller may not. */
export function assertAllowed(permission: Permission, auth: Principal | null): void {
	const decision = decide(permission, auth);
	if (decision === "unauthenticated") throw Errors.unauthorized(auth ? "This token cannot be used here" : "Authentication required");
	if (decision === "forbidden") throw Errors.forbidden();
}

/** Whose budget a call counts against: the principal, or the client address when anonymous. */
export function rateLimitKey(auth: Principal | null, ip: string): string {
	return auth ? `${auth.kind}:${auth.tenantId}:${auth.userId ?? auth.apiKeyId ?? auth.displayId ?? ""}` : `ip:${ip}`;
}

/** The RateLimit-* headers of an answer (draft-ietf-httpapi-ratelimit-headers). */
export function rateLimitHeaders(limit: RateLimitResult): Record<string, string> {
	return {
		"RateLimit-Limit": String(limit.limit),
		"RateLimit-Remaining": String(limit.remaining),
		"RateLimit-Reset": String(limit.resetSec)
	};
}

// ---- what the route accepts and answers -------------------------------------------------------

/** Upload routes take well-formed multipart/form-data only (busboy would throw on anything else). */
export function requireMultipartForUploads(_ctx: unknown, _route: unknown, req: IncomingMessage): void {
	if (gatewayRequest(req).$alias?.type !== "multipart") return;
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
export function endBodyOnAbort(req: IncomingMessage): void {
	const pipe = req.pipe;
	req.pipe = <T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T => {
		const endIfCut = () => {
			if (!req.readableEnded) destination.end();
		};
		if (req.destroyed) process.nextTick(endIfCut);
		else req.once("close", endIfCut);
		return pipe.call(req, destination, options) as T;
	};
}

/** HEAD is served by the GET route: Node already knows to send no body, the route its headers. */
export function servedAsGet(req: IncomingMessage): void {
	if (req.method !== "HEAD") return;
	req.method = "GET";
	gatewayRequest(req).$head = true;
}

/**
 * After every REST call: the answer's status is the one the action declares (`successStatus`,
 * which the OpenAPI document publishes too; for an action on another node the registry's copy of
 * its definition carries it) unless the handler chose a conditional one (304, 302). HEAD runs
 * the GET route (same permission, same headers) without a body: Node already drops the body of
 * a HEAD answer, and a streamed object is not read at all.
 */
export function afterCall(_ctx: unknown, _route: unknown, incoming: IncomingMessage, res: ServerResponse, data: unknown): unknown {
	const req = gatewayRequest(incoming);
	const declared = req.$action?.successStatus;
	if (req.$ctx.meta.$statusCode === undefined && typeof declared === "number") req.$ctx.meta.$statusCode = declared;
	if (!req.$head) return data;
	if (data instanceof Readable) {
		if (!res.hasHeader("Content-Type")) res.setHeader("Content-Type", String(req.$ctx.meta.$responseType ?? "application/octet-stream"));
		data.destroy();
		return null;
	}
	return data;
}
