/**
 * What the gateway puts in `ctx.meta` of every REST call, and the params rules many actions share.
 * Services read the caller only from here (set by the gateway, never by the client).
 */
import type { Principal } from "./rbac";
import { ROLES } from "./rbac";

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
