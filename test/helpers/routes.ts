/**
 * Every REST route of the running platform, read from its own `/api/openapi.json`, for the
 * generic suites (route × caller matrix, cross-tenant ids, bad input): new services are covered
 * as soon as their routes exist. Also the pieces those suites share: principals per caller,
 * valid sample bodies from a route's JSON schema, and the check of the API's error shape.
 */
import { newId } from "../../shared/ids";
import { isPermission, type Permission, type Principal, type Role } from "../../shared/rbac";
import { bearer, login, mailbox, newAccount, tokenFromMail, waitForMail, type Platform, type Session } from "./accounts";
import { request, type ErrorBody, type JsonResponse } from "./platform";

export const API_V1 = "/api/v1";

/** The subset of JSON Schema the OpenAPI document uses for params. */
export interface JsonSchema {
	type?: string | string[];
	properties?: Record<string, JsonSchema>;
	required?: string[];
	enum?: unknown[];
	const?: unknown;
	format?: string;
	pattern?: string;
	minLength?: number;
	maxLength?: number;
	minimum?: number;
	maximum?: number;
	exclusiveMinimum?: number;
	minItems?: number;
	items?: JsonSchema | false;
	anyOf?: JsonSchema[];
	default?: unknown;
}

export interface OpenApiParameter {
	name: string;
	in: "path" | "query" | "header" | "cookie";
	required?: boolean;
	schema?: JsonSchema;
}

interface OpenApiOperation {
	"x-permission"?: unknown;
	"x-action"?: string;
	parameters?: OpenApiParameter[];
	requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchema }> };
}

interface OpenApiDocument {
	paths: Record<string, Record<string, OpenApiOperation>>;
}

const METHODS = ["get", "put", "post", "delete", "patch"];

export interface Route {
	/** "GET", "POST", ... */
	method: string;
	/** OpenAPI template below /api/v1, e.g. "/members/{userId}". */
	template: string;
	/** "PATCH /members/{userId}", for messages. */
	label: string;
	/** The route's RBAC permission; "public" when the operation has no `x-permission`. */
	permission: Permission;
	action?: string;
	pathParams: string[];
	queryParams: OpenApiParameter[];
	/** The `application/json` request body schema, when the route takes one. */
	jsonBody: JsonSchema | null;
	/** The request body's content types (JSON, multipart, raw streams). */
	bodyTypes: string[];
}

/** Every operation under /api/v1 of the platform's OpenAPI document, sorted by path and method. */
export async function loadRoutes(p: Platform): Promise<Route[]> {
	const res = await request<OpenApiDocument>(`${p.url}/api/openapi.json`);
	if (res.status !== 200) throw new Error(`/api/openapi.json answered ${res.status}`);
	const routes: Route[] = [];
	for (const [path, item] of Object.entries(res.body.paths)) {
		if (!path.startsWith(`${API_V1}/`)) continue;
		const template = path.slice(API_V1.length);
		for (const [method, op] of Object.entries(item)) {
			if (!METHODS.includes(method)) continue;
			const label = `${method.toUpperCase()} ${template}`;
			const declared = op["x-permission"];
			if (declared !== undefined && (!isPermission(declared) || declared === "public")) {
				throw new Error(`${label}: x-permission ${JSON.stringify(declared)} is not a permission of shared/rbac.ts`);
			}
			const parameters = op.parameters ?? [];
			const content = op.requestBody?.content ?? {};
			routes.push({
				method: method.toUpperCase(),
				template,
				label,
				permission: declared === undefined ? "public" : declared,
				action: op["x-action"],
				pathParams: parameters.filter(x => x.in === "path").map(x => x.name),
				queryParams: parameters.filter(x => x.in === "query"),
				jsonBody: content["application/json"]?.schema ?? null,
				bodyTypes: Object.keys(content)
			});
		}
	}
	if (routes.length === 0) throw new Error(`/api/openapi.json lists no route under ${API_V1}`);
	return routes;
}

/** The route's URL with its path params filled (missing ones get a random unknown id). */
export function routeUrl(p: Platform, route: Route, values: Record<string, string> = {}, query = ""): string {
	const path = route.template.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(values[name] ?? newId()));
	return `${p.url}${API_V1}${path}${query ? `?${query}` : ""}`;
}

/**
 * The query string a route needs to answer at all: its required query parameters, `from`/`to`
 * as the last day (reports take a range), the others sampled from their schema.
 */
export function requiredQuery(route: Route): string {
	const params = new URLSearchParams();
	for (const param of route.queryParams.filter(q => q.required)) {
		if (param.name === "from") params.set("from", new Date(Date.now() - 86_400_000).toISOString());
		else if (param.name === "to") params.set("to", new Date(Date.now() + 3_600_000).toISOString());
		else params.set(param.name, String(sampleValue(param.schema ?? {})));
	}
	return params.toString();
}

export interface SendOptions {
	token?: string | null;
	/** A JSON value for the body; ignored for GET. */
	json?: unknown;
	/** A raw body, sent as application/json. */
	raw?: string;
	values?: Record<string, string>;
	query?: string;
}

/** How long one request may take before the suite reports it (a route that never answers). */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * One request to `route`; GET never carries a body. A streaming answer (server-sent events, such
 * as the device live stream) is not read: its status and headers are the answer, and the stream
 * is closed at once.
 */
export async function send(p: Platform, route: Route, options: SendOptions = {}): Promise<JsonResponse> {
	const headers = new Headers(options.token ? bearer(options.token) : {});
	let body: string | FormData | undefined;
	const multipart = route.bodyTypes.includes("multipart/form-data") && !route.bodyTypes.includes("application/json");
	if (route.method !== "GET" && multipart && options.raw === undefined && options.json !== undefined) {
		// Upload routes speak multipart: the fields go as form fields (and no file is attached).
		const form = new FormData();
		const fields = options.json && typeof options.json === "object" ? Object.entries(options.json as Record<string, unknown>) : [];
		for (const [name, value] of fields) form.append(name, typeof value === "string" ? value : JSON.stringify(value));
		body = form;
	} else if (route.method !== "GET" && (options.raw !== undefined || options.json !== undefined)) {
		headers.set("Content-Type", "application/json");
		body = options.raw ?? JSON.stringify(options.json);
	}
	const res = await fetch(routeUrl(p, route, options.values, options.query), {
		method: route.method,
		headers,
		body,
		// The route's own answer: a redirect (a download, the SSO callback's way back to the CMS) is not followed.
		redirect: "manual",
		signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
	});
	if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
		await res.body?.cancel();
		return { status: res.status, headers: res.headers, body: null, text: "" };
	}
	const text = await res.text();
	let parsed: unknown = text;
	try {
		parsed = text ? JSON.parse(text) : null;
	} catch {
		/* not JSON */
	}
	return { status: res.status, headers: res.headers, body: parsed, text };
}

// ---- callers ---------------------------------------------------------------------------------

export const USER_ROLES = ["owner", "admin", "editor", "viewer"] as const satisfies readonly Role[];
export type CallerName = (typeof USER_ROLES)[number] | "apiKey" | "device" | "anonymous";
export const CALLER_NAMES: CallerName[] = [...USER_ROLES, "apiKey", "device", "anonymous"];

/** What the gateway resolves each caller to (ids do not matter to `decide`). */
export function principalOf(caller: CallerName, tenantId: string): Principal | null {
	switch (caller) {
		case "anonymous":
			return null;
		case "device":
			return { kind: "device", tenantId, displayId: "display" };
		case "apiKey":
			return { kind: "apiKey", tenantId, apiKeyId: "key", role: "admin" };
		default:
			return { kind: "user", tenantId, userId: caller, role: caller };
	}
}

export interface Member {
	email: string;
	password: string;
	userId: string;
	session: Session;
}

/** Invites a new person with `role` (as `inviterToken`) and accepts as them: a second member of the tenant. */
export async function addMember(p: Platform, inviterToken: string, role: Role, label: string = role): Promise<Member> {
	const account = newAccount(label);
	const invited = await request(p.api("/invitations"), { method: "POST", json: { email: account.email, role }, headers: bearer(inviterToken) });
	if (invited.status !== 201) throw new Error(`invite answered ${invited.status}: ${invited.text}`);
	await waitForMail(p, account.email, 1);
	const session = await acceptInvitation(p, account.email, { name: account.name, password: account.password });
	return { email: account.email, password: account.password, userId: session.user.id, session };
}

/** Accepts the newest invitation mailed to `email` (wait for a new one first: mail leaves through the outbox, after the request). */
export async function acceptInvitation(p: Platform, email: string, body: Record<string, unknown>): Promise<Session> {
	const token = await tokenFromMail(p, email, "accept-invitation");
	const accepted = await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token, ...body } });
	if (accepted.status !== 200) throw new Error(`accept answered ${accepted.status}: ${accepted.text}`);
	return accepted.body;
}

/**
 * A fresh sign-in of `member` with `role` in the owner's tenant. A member whose last request
 * made them leave, lose their role or end their sessions is restored first, so every request
 * of a suite starts from the same state.
 */
export async function signInAs(p: Platform, owner: { email: string; password: string }, member: Member, role: Role): Promise<Session> {
	const current = await login(p, member.email, member.password).catch(() => null);
	if (current?.role === role) return current;
	const ownerSession = await login(p, owner.email, owner.password);
	if (current) {
		const changed = await request(p.api(`/members/${member.userId}`), { method: "PATCH", json: { role }, headers: bearer(ownerSession.accessToken) });
		if (changed.status !== 200) throw new Error(`restoring ${member.email}'s role answered ${changed.status}: ${changed.text}`);
	} else {
		const mailed = mailbox(p, member.email).length;
		const invited = await request(p.api("/invitations"), { method: "POST", json: { email: member.email, role }, headers: bearer(ownerSession.accessToken) });
		if (invited.status !== 201) throw new Error(`re-inviting ${member.email} answered ${invited.status}: ${invited.text}`);
		// The earlier (accepted) invitation is in the mailbox too: wait for the new one.
		await waitForMail(p, member.email, mailed + 1);
		await acceptInvitation(p, member.email, { password: member.password });
	}
	const restored = await login(p, member.email, member.password);
	if (restored.role !== role) throw new Error(`${member.email} is ${restored.role} after restoring, expected ${role}`);
	return restored;
}

// ---- bodies ----------------------------------------------------------------------------------

let samples = 0;

function typesOf(schema: JsonSchema): string[] {
	if (Array.isArray(schema.type)) return schema.type;
	return schema.type === undefined ? [] : [schema.type];
}

/** A value `schema` accepts (best effort: enough for this API's params). */
export function sampleValue(schema: JsonSchema): unknown {
	if (schema.const !== undefined) return schema.const;
	if (Array.isArray(schema.enum)) return schema.enum.find(v => v !== null);
	if (schema.anyOf?.length) return sampleValue(schema.anyOf[0]);
	const types = typesOf(schema);
	if (types.includes("object") || schema.properties) {
		const value: Record<string, unknown> = {};
		for (const name of schema.required ?? []) value[name] = sampleValue(schema.properties?.[name] ?? {});
		return value;
	}
	if (types.includes("string")) {
		samples += 1;
		if (schema.format === "email") return `sample-${process.pid}-${samples}@example.com`;
		if (schema.format === "uri") return "https://example.com/";
		if (schema.format === "date-time") return new Date().toISOString();
		const id = newId();
		if (schema.pattern && new RegExp(schema.pattern).test(id)) return id;
		const instant = new Date().toISOString();
		if (schema.pattern && new RegExp(schema.pattern).test(instant)) return instant;
		return "x".repeat(Math.max(1, schema.minLength ?? 1));
	}
	if (types.includes("integer") || types.includes("number")) {
		if (schema.minimum !== undefined) return schema.minimum;
		return schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 1;
	}
	if (types.includes("boolean")) return true;
	if (types.includes("array")) return [];
	return "x";
}

/** Every field of a body schema, nested ones as dotted paths ("settings.timezone"), with its schema. */
export function fieldsOf(schema: JsonSchema, prefix = ""): Array<{ path: string; schema: JsonSchema }> {
	const fields: Array<{ path: string; schema: JsonSchema }> = [];
	for (const [name, field] of Object.entries(schema.properties ?? {})) {
		const path = prefix ? `${prefix}.${name}` : name;
		fields.push({ path, schema: field });
		if (field.properties) fields.push(...fieldsOf(field, path));
	}
	return fields;
}

/** Values of the wrong type for `schema`: string ↔ number, and an operator object where a value goes. */
export function wrongValues(schema: JsonSchema): unknown[] {
	const types = Array.isArray(schema.enum) ? schema.enum.map(v => typeof v) : typesOf(schema);
	const operator = { $gt: "" };
	if (types.includes("object")) return ["x", 12345];
	if (types.includes("array")) return ["x", operator];
	if (types.includes("integer") || types.includes("number")) return ["abc", operator];
	if (types.includes("boolean")) return ["yes", operator];
	if (types.includes("string")) return [12345, operator];
	return [];
}

/** A copy of `body` with `value` at a dotted `path`, creating the objects on the way. */
export function withValue(body: unknown, path: string, value: unknown): Record<string, unknown> {
	const copy = structuredClone((body ?? {}) as Record<string, unknown>);
	const parts = path.split(".");
	let target = copy;
	for (const part of parts.slice(0, -1)) {
		const next = target[part];
		target = target[part] = typeof next === "object" && next !== null && !Array.isArray(next) ? (next as Record<string, unknown>) : {};
	}
	target[parts[parts.length - 1]] = value;
	return copy;
}

// ---- answers ---------------------------------------------------------------------------------

/**
 * What is wrong with an answer: a 5xx, or an error (≥ 400) not in the API's shape
 * `{error:{type,message,code,data,requestId}}` with requestId = X-Request-Id. Empty = fine.
 */
export function answerProblems(res: JsonResponse): string[] {
	const problems: string[] = [];
	if (res.status >= 500) problems.push(`answered ${res.status}: ${res.text.slice(0, 200)}`);
	if (res.status < 400) return problems;
	const error = (res.body as Partial<ErrorBody> | null)?.error;
	if (typeof error !== "object" || error === null) return [...problems, `error body not in the API's shape: ${res.text.slice(0, 200)}`];
	for (const key of ["type", "message", "code", "data", "requestId"] as const) {
		if (!(key in error)) problems.push(`error has no "${key}": ${res.text.slice(0, 200)}`);
	}
	if (typeof error.type !== "string" || typeof error.message !== "string") problems.push(`error type/message not strings: ${res.text.slice(0, 200)}`);
	if (error.code !== res.status) problems.push(`error.code ${String(error.code)} differs from status ${res.status}`);
	const header = res.headers.get("x-request-id");
	if (!header || error.requestId !== header) problems.push(`error.requestId ${String(error.requestId)} differs from X-Request-Id ${String(header)}`);
	if (/\bat .+\.(ts|js):\d+/.test(res.text)) problems.push("error body carries a stack trace");
	return problems;
}

/** The error type of an answer, or "" when it has none. */
export function errorType(res: JsonResponse): string {
	const error = (res.body as Partial<ErrorBody> | null)?.error;
	return typeof error?.type === "string" ? error.type : "";
}

/** The `data` of a VALIDATION_ERROR: the failing fields. */
export function failingFields(res: JsonResponse): string[] {
	const data = (res.body as Partial<ErrorBody> | null)?.error?.data;
	if (!Array.isArray(data)) return [];
	return data.map(item => (typeof item === "object" && item !== null && typeof (item as { field?: unknown }).field === "string" ? (item as { field: string }).field : ""));
}
