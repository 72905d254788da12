/**
 * What the gateway puts in `ctx.meta` of every REST call, and the params rules many actions share.
 * Services read the caller only from here (set by the gateway, never by the client).
 */
import { Errors } from "./errors";
import type { Principal, Role } from "./rbac";
import { ROLES } from "./rbac";

/** A request URL's path: what comes before its query (`url` as Node's request has it, or `empty` when it has none). */
export function pathOf(url: string | undefined, empty = ""): string {
	if (url === undefined) return empty;
	const q = url.indexOf("?");
	return q === -1 ? url : url.slice(0, q);
}

/** The one cookie the platform sets: single sign-on binds its flow to the browser that started it. */
export const SSO_COOKIE = "marquee_sso";

export interface RequestMeta {
	auth: Principal | null;
	ip: string;
	userAgent: string;
	requestId: string;
	/** The few request headers actions may read (see the gateway's FORWARDED_HEADERS). */
	headers?: Record<string, string>;
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	$responseType?: string;
	$location?: string;
}

/** What an action leaves in `ctx.meta` for its HTTP answer. */
export type AnswerMeta = Pick<RequestMeta, "$statusCode" | "$responseHeaders" | "$responseType" | "$location">;

export interface Caller {
	tenantId: string;
	/** null for an API key. */
	userId: string | null;
	role: Role;
}

/** The caller of a REST action: a user or an API key acting with a role in a tenant; else 401. */
export function callerOf(meta: Pick<RequestMeta, "auth">): Caller {
	const auth = meta.auth;
	if (!auth?.tenantId || !auth.role) throw Errors.unauthorized();
	return { tenantId: auth.tenantId, userId: auth.userId ?? null, role: auth.role };
}

/**
 * The caller of an action only users reach (permissions `self` and `tenant.owner` admit no API
 * key): the same, with the user's id; 401 if a principal without one ever got here.
 */
export function userCallerOf(meta: Pick<RequestMeta, "auth">): Caller & { userId: string } {
	const caller = callerOf(meta);
	if (caller.userId === null) throw Errors.unauthorized();
	return { ...caller, userId: caller.userId };
}

/** The screen calling a device route: only a device token names one; else 401. */
export function deviceCallerOf(meta: Pick<RequestMeta, "auth">): { tenantId: string; displayId: string } {
	const auth = meta.auth;
	if (auth?.kind !== "device" || !auth.displayId) throw Errors.unauthorized();
	return { tenantId: auth.tenantId, displayId: auth.displayId };
}

/** `?page&pageSize` of every list (API.md: pageSize ≤ 100). */
export const PAGE_PARAMS = {
	page: { type: "number", integer: true, min: 1, max: 100_000, convert: true, default: 1 },
	pageSize: { type: "number", integer: true, min: 1, max: 100, convert: true, default: 20 }
} as const;

export const EMAIL_RULE = { type: "email", mode: "precise", normalize: true, max: 254 } as const;
export const NAME_RULE = { type: "string", trim: true, min: 1, max: 200 } as const;
export const ROLE_RULE = { type: "enum", values: [...ROLES] } as const;
/** An ISO-8601 instant with its offset (API.md: times are ISO-8601 strings), e.g. 2026-11-22T10:00:00.000Z. */
export const ISO_INSTANT_RULE = {
	type: "string",
	max: 40,
	// shared/validation.ts: a date and time that exists (no 30 February, no 24:00).
	instant: true,
	pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/,
	messages: { stringPattern: "must be an ISO-8601 instant such as 2026-11-22T10:00:00Z" }
} as const;

/** A secret the client sends back (tokens); bounded so nothing huge reaches a hash. */
export const TOKEN_RULE = { type: "string", min: 16, max: 512 } as const;

/**
 * The `rest` of a multipart upload action: moleculer-web's "multipart" alias type hands the
 * file to the action as `ctx.stream` (fields in `ctx.params`). Its typings omit `type` and
 * `busboyConfig`, hence the one cast.
 */
export function multipartRest(path: string, limits: Record<string, number>): { method: "POST"; path: string } {
	return { method: "POST", path, type: "multipart", busboyConfig: { limits } } as { method: "POST"; path: string };
}

/**
 * The `rest` of an action that reads its body as raw bytes (`ctx.stream`): moleculer-web's
 * "stream" alias type, which the gateway's JSON parser leaves alone (services/api/routes.ts
 * isRawBodyRequest). For bodies a signature covers byte for byte, such as Stripe's webhook.
 */
export function rawBodyRest(path: string): { method: "POST"; path: string } {
	return { method: "POST", path, type: "stream" } as { method: "POST"; path: string };
}
