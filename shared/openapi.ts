/**
 * OpenAPI 3.1 document generated from moleculer-web routes and the fastest-validator `params`
 * of the actions behind them. Pure functions: the gateway collects one RouteDoc per alias and
 * calls buildOpenApi; nothing here knows about the broker.
 *
 * Choices worth knowing:
 * - An alias without a method (`"*"`, any method) is documented as GET and marked `x-any-method`.
 *   Methods OpenAPI cannot express are skipped.
 * - Optional groups (`{/:name}`) expand into one path per combination; a parameter of an
 *   optional group is never repeated as a query or body field of the shorter path.
 * - Two aliases with the same method and path: the first wins, as in moleculer-web.
 * - The success answer carries the action's `response` schema as its JSON body (none for 204 or
 *   `response: null`); answers a route gives only on a condition (304, 302) or that it is known
 *   for (409) come from `extraResponses`. Errors share `components`, in the API's error shape.
 * - Public operations say so (`security: []`); the others require the bearer scheme.
 */
import { STATUS_CODES } from "node:http";

/** One declared answer besides the success body and the shared errors. */
export interface ResponseDoc {
	/** Default: the status's reason phrase. */
	description?: string;
	/** Response headers it carries: name → description (string values). */
	headers?: Record<string, string>;
	/**
	 * Body media type → JSON Schema of the body. Absent: no body for 1xx–3xx, the API's error
	 * body for 4xx/5xx. On the success status it replaces the JSON body (streams, files).
	 */
	content?: Record<string, unknown>;
}

export interface RouteDoc {
	/** "GET", "POST", ...; "*" (any method) is documented as GET. */
	method: string;
	/** path-to-regexp 8 syntax: "/api/v1/displays/:id", optional "{/:name}", wildcard "*name". */
	path: string;
	/** Moleculer action name, e.g. "displays.get". */
	action?: string;
	summary?: string;
	/** RBAC permission; null/undefined = public route. */
	permission?: string | null;
	/** The action's fastest-validator `params` schema. */
	params?: Record<string, unknown>;
	tags?: string[];
	/** Default 200. */
	successStatus?: number;
	/**
	 * JSON Schema of the success body (a TypeBox schema as it is: its symbol keys are dropped);
	 * null = no body. Undefined = not declared: the document then shows no body schema.
	 */
	response?: unknown;
	/**
	 * Answers declared besides the success one and the shared errors, by status: conditional
	 * ones (304 with an ETag, 302 with a Location) and errors the route is known for (409). An
	 * entry for the success status itself adds headers (an ETag) or replaces its JSON body by
	 * another media type (an event stream, a file).
	 */
	extraResponses?: Record<number, ResponseDoc>;
	/** moleculer-web alias type: "multipart" uploads or "stream" raw bodies; default "call" (JSON). */
	aliasType?: "call" | "multipart" | "stream";
}

export interface OpenApiInfo {
	title: string;
	version: string;
	description?: string;
	license?: { name: string; identifier?: string; url?: string };
}

export interface OpenApiOptions {
	/** Default: `[{ url: "/" }]`, the host that serves the document (its paths are absolute). */
	servers?: Array<{ url: string; description?: string }>;
	/** Tag → description; tags not listed get TAG_DESCRIPTIONS' or a generic one. */
	tagDescriptions?: Record<string, string>;
}

type JsonSchema = Record<string, unknown>;
/** A fastest-validator rule in object form, e.g. `{ type: "string", min: 3 }`. */
type Rule = Record<string, unknown>;

const isRecord = (value: unknown): value is Record<string, unknown> =>
	typeof value === "object" && value !== null && !Array.isArray(value);

const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

const asNumber = (value: unknown): number | undefined => (typeof value === "number" ? value : undefined);

const stringList = (value: unknown): string[] => asArray(value).filter((v): v is string => typeof v === "string");

// ---------------------------------------------------------------------------------------------
// fastest-validator rules → JSON Schema 2020-12
// ---------------------------------------------------------------------------------------------

/** "number|integer|min:1|optional" → { type: "number", integer: true, min: 1, optional: true } (as fastest-validator parses it). */
function parseShorthand(text: string): Rule {
	const [head = "", ...flags] = text.split("|").map(part => part.trim());
	const rule: Rule = head.endsWith("[]") ? { type: "array", items: head.slice(0, -2) } : { type: head };
	for (const flag of flags) {
		const colon = flag.indexOf(":");
		if (colon >= 0) rule[flag.slice(0, colon).trim()] = shorthandValue(flag.slice(colon + 1).trim());
		else if (flag.startsWith("no-")) rule[flag.slice(3)] = false;
		else rule[flag] = true;
	}
	return rule;
}

function shorthandValue(text: string): unknown {
	if (text === "true" || text === "false") return text === "true";
	return text !== "" && !Number.isNaN(Number(text)) ? Number(text) : text;
}

/** Any accepted rule form (shorthand string, array of alternatives, object, `$$type`) → object form. */
function normalizeRule(rule: unknown): Rule {
	if (typeof rule === "string") return parseShorthand(rule);
	if (Array.isArray(rule)) {
		return { type: "multi", rules: rule, optional: rule.every(alt => isOptional(normalizeRule(alt))) };
	}
	if (!isRecord(rule)) return {};
	if (typeof rule.$$type === "string") {
		const { $$type, ...props } = rule;
		return { ...parseShorthand($$type), props };
	}
	return rule;
}

/** fastest-validator fills a missing value with `default`, so such a field is not required either. */
function isOptional(rule: Rule): boolean {
	return rule.optional === true || (rule.default !== undefined && rule.default !== null);
}

/** `length` or `min`/`max` → the given JSON Schema keywords (minLength, minItems, ...). */
function lengthBounds(rule: Rule, minKey: string, maxKey: string): JsonSchema {
	const exact = asNumber(rule.length);
	const min = exact ?? asNumber(rule.min);
	const max = exact ?? asNumber(rule.max);
	const bounds: JsonSchema = {};
	if (min !== undefined) bounds[minKey] = min;
	if (max !== undefined) bounds[maxKey] = max;
	if (rule.empty === false && !(typeof bounds[minKey] === "number" && bounds[minKey] > 0)) bounds[minKey] = 1;
	return bounds;
}

/** Patterns of fastest-validator's boolean string checks (copied from its string rule). */
const STRING_CHECK_PATTERNS: Record<string, string> = {
	numeric: "^-?[0-9]\\d*(\\.\\d+)?$",
	alpha: "^[a-zA-Z]+$",
	alphanum: "^[a-zA-Z0-9]+$",
	alphadash: "^[a-zA-Z0-9_-]+$",
	hex: "^[0-9a-fA-F]+$",
	base64: "^(?:[A-Za-z0-9+\\/]{4})*(?:[A-Za-z0-9+\\/]{2}==|[A-Za-z0-9+/]{3}=)?$"
};

function stringPattern(rule: Rule): string | undefined {
	if (rule.pattern instanceof RegExp) return rule.pattern.source;
	if (typeof rule.pattern === "string") return rule.pattern;
	const check = Object.keys(STRING_CHECK_PATTERNS).find(name => rule[name] === true);
	return check === undefined ? undefined : STRING_CHECK_PATTERNS[check];
}

function stringSchema(rule: Rule): JsonSchema {
	const schema: JsonSchema = { type: "string", ...lengthBounds(rule, "minLength", "maxLength") };
	const pattern = stringPattern(rule);
	if (pattern !== undefined) schema.pattern = pattern;
	if (Array.isArray(rule.enum)) schema.enum = rule.enum;
	return schema;
}

function numberSchema(rule: Rule): JsonSchema {
	const schema: JsonSchema = { type: rule.integer === true ? "integer" : "number" };
	const min = asNumber(rule.min);
	const max = asNumber(rule.max);
	if (min !== undefined) schema.minimum = min;
	if (max !== undefined) schema.maximum = max;
	if (rule.positive === true) schema.exclusiveMinimum = 0;
	if (rule.negative === true) schema.exclusiveMaximum = 0;
	if (typeof rule.equal === "number") schema.const = rule.equal;
	if (typeof rule.notEqual === "number") schema.not = { const: rule.notEqual };
	return schema;
}

function arraySchema(rule: Rule): JsonSchema {
	const schema: JsonSchema = { type: "array", ...lengthBounds(rule, "minItems", "maxItems") };
	const items = rule.items === undefined ? {} : validatorSchemaToJsonSchema(rule.items);
	if (Array.isArray(rule.enum)) schema.items = { ...items, enum: rule.enum };
	else if (rule.items !== undefined) schema.items = items;
	if (rule.unique === true) schema.uniqueItems = true;
	if (rule.contains !== undefined) schema.contains = { const: rule.contains };
	return schema;
}

/** Properties of an object rule (or of a whole `params`): `$`-prefixed keys and forbidden fields are left out. */
function objectFromProps(props: Record<string, unknown>, strict: unknown): JsonSchema {
	const properties: Record<string, JsonSchema> = {};
	const required: string[] = [];
	for (const [name, raw] of Object.entries(props)) {
		if (name.startsWith("$")) continue;
		const rule = normalizeRule(raw);
		if (rule.type === "forbidden") continue;
		properties[name] = convertRule(rule);
		if (!isOptional(rule)) required.push(name);
	}
	const schema: JsonSchema = { type: "object", properties };
	if (required.length > 0) schema.required = required;
	if (strict === true) schema.additionalProperties = false;
	return schema;
}

function objectSchema(rule: Rule): JsonSchema {
	const props = rule.props ?? rule.properties;
	const schema = isRecord(props) ? objectFromProps(props, rule.strict) : { type: "object" };
	const minProps = asNumber(rule.minProps);
	const maxProps = asNumber(rule.maxProps);
	if (minProps !== undefined) schema.minProperties = minProps;
	if (maxProps !== undefined) schema.maxProperties = maxProps;
	return schema;
}

function recordSchema(rule: Rule): JsonSchema {
	return {
		type: "object",
		propertyNames: validatorSchemaToJsonSchema(rule.key ?? "string"),
		additionalProperties: validatorSchemaToJsonSchema(rule.value ?? "any")
	};
}

function tupleSchema(rule: Rule): JsonSchema {
	const items = asArray(rule.items);
	return { type: "array", prefixItems: items.map(validatorSchemaToJsonSchema), minItems: items.length, maxItems: items.length, items: false };
}

const STRING: JsonSchema = { type: "string" };

const CONVERTERS = new Map<string, (rule: Rule) => JsonSchema>([
	["any", () => ({})],
	["string", stringSchema],
	["number", numberSchema],
	["boolean", () => ({ type: "boolean" })],
	["email", rule => ({ ...stringSchema(rule), format: "email" })],
	["url", () => ({ type: "string", format: "uri" })],
	["uuid", () => ({ type: "string", format: "uuid" })],
	["date", () => ({ type: "string", format: "date-time" })],
	["enum", rule => ({ enum: asArray(rule.values) })],
	["equal", rule => (rule.value === undefined ? {} : { const: rule.value })],
	["array", arraySchema],
	["object", objectSchema],
	["multi", rule => ({ anyOf: asArray(rule.rules).map(validatorSchemaToJsonSchema) })],
	["record", recordSchema],
	["tuple", tupleSchema],
	["objectID", () => ({ type: "string", pattern: "^[0-9a-fA-F]{24}$" })],
	["mac", () => STRING],
	["luhn", () => STRING],
	["currency", () => STRING]
]);

/** `nullable: true` → null is accepted too. */
function allowNull(schema: JsonSchema): JsonSchema {
	if (Object.keys(schema).length === 0) return schema;
	if (Array.isArray(schema.enum)) return { ...schema, enum: [...schema.enum, null] };
	if (typeof schema.type === "string" && schema.const === undefined) return { ...schema, type: [schema.type, "null"] };
	return { anyOf: [schema, { type: "null" }] };
}

/** Keywords every rule may carry: default, label, description, nullable. */
function annotate(schema: JsonSchema, rule: Rule): JsonSchema {
	const annotated = rule.nullable === true ? allowNull(schema) : { ...schema };
	if (rule.default !== undefined && typeof rule.default !== "function") annotated.default = rule.default;
	if (typeof rule.label === "string") annotated.title = rule.label;
	if (typeof rule.description === "string") annotated.description = rule.description;
	return annotated;
}

function convertRule(rule: Rule): JsonSchema {
	const convert = typeof rule.type === "string" ? CONVERTERS.get(rule.type) : undefined;
	return annotate(convert === undefined ? {} : convert(rule), rule);
}

/** One fastest-validator rule (shorthand, array or object form) → JSON Schema 2020-12. Unknown types → `{}`. */
export function validatorSchemaToJsonSchema(rule: unknown): Record<string, unknown> {
	return convertRule(normalizeRule(rule));
}

/** A whole action `params` → JSON Schema (an object schema, unless `$$root` makes it a single rule). */
export function paramsToJsonSchema(params: unknown): Record<string, unknown> {
	if (!isRecord(params)) return { type: "object", properties: {} };
	if (params.$$root === true) {
		const { $$root: _root, ...rule } = params;
		return validatorSchemaToJsonSchema(rule);
	}
	return objectFromProps(params, params.$$strict);
}

// ---------------------------------------------------------------------------------------------
// Paths: path-to-regexp 8 → OpenAPI templates
// ---------------------------------------------------------------------------------------------

export interface PathParam {
	name: string;
	/** `*name`: matches one or more whole segments. */
	wildcard: boolean;
}

export interface PathVariant {
	template: string;
	params: PathParam[];
}

function indexOfUnescaped(text: string, char: string): number {
	for (let i = 0; i < text.length; i++) {
		if (text[i] === "\\") i++;
		else if (text[i] === char) return i;
	}
	return -1;
}

function matchingBrace(text: string, open: number): number {
	let depth = 0;
	for (let i = open; i < text.length; i++) {
		if (text[i] === "\\") i++;
		else if (text[i] === "{") depth++;
		else if (text[i] === "}" && --depth === 0) return i;
	}
	throw new Error(`Unbalanced "{" in route path "${text}"`);
}

/** "/a{/:b}{/:c}" → ["/a", "/a/:c", "/a/:b", "/a/:b/:c"]: every optional group left out or kept. */
function expandOptionalGroups(path: string): string[] {
	const open = indexOfUnescaped(path, "{");
	if (open < 0) return [path];
	const close = matchingBrace(path, open);
	const head = path.slice(0, open);
	const middles = ["", ...expandOptionalGroups(path.slice(open + 1, close))];
	const tails = expandOptionalGroups(path.slice(close + 1));
	return middles.flatMap(middle => tails.map(tail => head + middle + tail));
}

const PARAM_NAME = /[$_\p{ID_Start}][$\u200c\u200d\p{ID_Continue}]*/uy;

/** The parameter name starting at `start` (plain or `"quoted"`), and where it ends. */
function readParamName(path: string, start: number): { name: string; end: number } | null {
	if (path[start] === "\"") {
		const close = path.indexOf("\"", start + 1);
		return close > start + 1 ? { name: path.slice(start + 1, close), end: close + 1 } : null;
	}
	PARAM_NAME.lastIndex = start;
	const match = PARAM_NAME.exec(path);
	return match === null ? null : { name: match[0], end: start + match[0].length };
}

function normalizeSlashes(template: string): string {
	const collapsed = `/${template}`.replace(/\/{2,}/g, "/");
	return collapsed.length > 1 && collapsed.endsWith("/") ? collapsed.slice(0, -1) : collapsed;
}

/** A path without optional groups → OpenAPI template: ":id" and "*rest" become "{id}", "{rest}". */
function toTemplate(path: string): PathVariant {
	let template = "";
	const params: PathParam[] = [];
	for (let i = 0; i < path.length; i++) {
		const char = path[i];
		const param = char === ":" || char === "*" ? readParamName(path, i + 1) : null;
		if (char === "\\") {
			template += path[++i] ?? "";
		} else if (param !== null) {
			params.push({ name: param.name, wildcard: char === "*" });
			template += `{${param.name}}`;
			i = param.end - 1;
		} else {
			template += char;
		}
	}
	return { template: normalizeSlashes(template), params };
}

/** A moleculer-web route path → one OpenAPI path template per optional-group combination. */
export function routePathToTemplates(path: string): PathVariant[] {
	const variants = expandOptionalGroups(path).map(toTemplate);
	return variants.filter((variant, i) => variants.findIndex(v => v.template === variant.template) === i);
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

const OPENAPI_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const BODY_METHODS = new Set(["post", "put", "patch"]);

/** Alias method → OpenAPI method; "*" (any) → "get"; null when OpenAPI has no such method. */
function openApiMethod(method: string): string | null {
	const lower = method.trim().toLowerCase();
	if (lower === "*" || lower === "all") return "get";
	return OPENAPI_METHODS.includes(lower) ? lower : null;
}

interface PlannedOperation {
	route: RouteDoc;
	method: string;
	variant: PathVariant;
	/** Every path parameter of the route, over all its variants. */
	routePathParams: Set<string>;
}

function planOperations(routes: RouteDoc[]): PlannedOperation[] {
	const planned = new Map<string, PlannedOperation>();
	for (const route of routes) {
		const method = openApiMethod(route.method);
		if (method === null) continue;
		const variants = routePathToTemplates(route.path);
		const routePathParams = new Set(variants.flatMap(v => v.params.map(p => p.name)));
		for (const variant of variants) {
			const key = `${method} ${variant.template}`;
			if (!planned.has(key)) planned.set(key, { route, method, variant, routePathParams });
		}
	}
	return [...planned.values()].sort(compareOperations);
}

function compareOperations(a: PlannedOperation, b: PlannedOperation): number {
	if (a.variant.template !== b.variant.template) return a.variant.template < b.variant.template ? -1 : 1;
	return OPENAPI_METHODS.indexOf(a.method) - OPENAPI_METHODS.indexOf(b.method);
}

function propertiesOf(schema: JsonSchema): Record<string, unknown> {
	return isRecord(schema.properties) ? schema.properties : {};
}

function pathParameters(variant: PathVariant, input: JsonSchema): JsonSchema[] {
	return variant.params.map(({ name, wildcard }) => {
		const declared = propertiesOf(input)[name];
		const parameter: JsonSchema = { name, in: "path", required: true, schema: isRecord(declared) ? declared : { type: "string" } };
		if (wildcard) parameter.description = "Wildcard: may span several path segments.";
		return parameter;
	});
}

function queryParameters(input: JsonSchema, exclude: Set<string>): JsonSchema[] {
	const required = new Set(stringList(input.required));
	return Object.entries(propertiesOf(input))
		.filter(([name]) => !exclude.has(name))
		.map(([name, schema]) => {
			const parameter: JsonSchema = { name, in: "query", required: required.has(name), schema };
			if (isRecord(schema) && schema.type === "object") Object.assign(parameter, { style: "deepObject", explode: true });
			return parameter;
		});
}

/** The input schema without the fields that travel in the path. */
function withoutFields(input: JsonSchema, exclude: Set<string>): JsonSchema {
	if (!isRecord(input.properties)) return input;
	const properties = Object.fromEntries(Object.entries(input.properties).filter(([name]) => !exclude.has(name)));
	const required = stringList(input.required).filter(name => !exclude.has(name));
	const { required: _required, ...rest } = input;
	return required.length > 0 ? { ...rest, properties, required } : { ...rest, properties };
}

const FILE_FIELD = "file";

function multipartBody(fields: JsonSchema): JsonSchema {
	const properties = { ...propertiesOf(fields), [FILE_FIELD]: { type: "string", contentMediaType: "application/octet-stream" } };
	const schema = { type: "object", properties, required: [FILE_FIELD, ...stringList(fields.required)] };
	return { required: true, content: { "multipart/form-data": { schema } } };
}

function requestBody(route: RouteDoc, input: JsonSchema, exclude: Set<string>): JsonSchema | null {
	if (route.aliasType === "stream") return { required: true, content: { "*/*": { schema: {} } } };
	const fields = withoutFields(input, exclude);
	if (route.aliasType === "multipart") return multipartBody(fields);
	const isObject = fields.type === "object";
	const noFields = isObject && Object.keys(propertiesOf(fields)).length === 0 && !isRecord(fields.additionalProperties);
	if (route.params === undefined || noFields) return null;
	const required = !isObject || stringList(fields.required).length > 0;
	return { required, content: { "application/json": { schema: fields } } };
}

const ERROR_RESPONSES: Record<number, { name: string; description: string }> = {
	400: { name: "BadRequest", description: "Malformed request (BAD_REQUEST)." },
	401: { name: "Unauthorized", description: "Missing, invalid or expired credentials (UNAUTHORIZED)." },
	402: { name: "QuotaExceeded", description: "A limit of the tenant's plan is reached (QUOTA_EXCEEDED)." },
	403: { name: "Forbidden", description: "The principal's role lacks the permission (FORBIDDEN)." },
	404: { name: "NotFound", description: "Unknown id, or an id of another tenant (NOT_FOUND)." },
	409: { name: "Conflict", description: "The request conflicts with the current state (CONFLICT)." },
	413: { name: "PayloadTooLarge", description: "Request body past the size limit (PAYLOAD_TOO_LARGE)." },
	415: { name: "UnsupportedMediaType", description: "A body or file type the route does not take (UNSUPPORTED_MEDIA_TYPE)." },
	422: { name: "ValidationError", description: "Parameters failed validation; `data` lists the fields (VALIDATION_ERROR)." },
	429: { name: "RateLimited", description: "Rate limit reached; retry after `Retry-After` seconds (RATE_LIMITED)." },
	503: { name: "ServiceUnavailable", description: "A dependency is down (SERVICE_UNAVAILABLE)." }
};

interface ResponseFlags {
	secured: boolean;
	hasParams: boolean;
	hasBody: boolean;
	hasPathParams: boolean;
}

function errorStatuses(flags: ResponseFlags): number[] {
	return [
		400,
		...(flags.secured ? [401, 403] : []),
		...(flags.hasPathParams ? [404] : []),
		...(flags.hasBody ? [413] : []),
		...(flags.hasParams ? [422] : []),
		429,
		503
	];
}

const REQUEST_ID_HEADER = { "X-Request-Id": { $ref: "#/components/headers/RequestId" } };
const ERROR_CONTENT = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } };

/**
 * A schema as plain JSON: TypeBox's symbol keys (Kind, Optional) and anything JSON cannot carry
 * are dropped, so the document is the same whether it is served or built in memory.
 */
export function plainJsonSchema(schema: unknown): unknown {
	if (Array.isArray(schema)) return schema.map(plainJsonSchema);
	if (schema instanceof RegExp) return schema.source;
	if (!isRecord(schema)) return typeof schema === "function" || typeof schema === "symbol" ? undefined : schema;
	const plain: Record<string, unknown> = {};
	for (const [key, value] of Object.entries(schema)) {
		const converted = plainJsonSchema(value);
		if (converted !== undefined) plain[key] = converted;
	}
	return plain;
}

function headerObjects(headers: Record<string, string> | undefined): JsonSchema {
	const result: JsonSchema = { ...REQUEST_ID_HEADER };
	for (const [name, description] of Object.entries(headers ?? {})) result[name] = { description, schema: { type: "string" } };
	return result;
}

function contentObjects(content: Record<string, unknown>): JsonSchema {
	return Object.fromEntries(Object.entries(content).map(([type, schema]) => [type, { schema: plainJsonSchema(schema) ?? {} }]));
}

/** The success answer: its JSON body from `response`, headers and media types from its `extraResponses` entry. */
function successResponse(route: RouteDoc, status: number): JsonSchema {
	const extra = route.extraResponses?.[status];
	const response: JsonSchema = {
		description: extra?.description ?? STATUS_CODES[status] ?? "Success",
		headers: headerObjects(extra?.headers)
	};
	if (status === 204) return response;
	if (extra?.content !== undefined) response.content = contentObjects(extra.content);
	else if (route.response !== undefined && route.response !== null) response.content = contentObjects({ "application/json": route.response });
	return response;
}

/** A declared extra answer; an error without its own wording points at the shared component. */
function extraResponse(status: number, extra: ResponseDoc, referenced: Set<number>): JsonSchema {
	const isError = status >= 400;
	const plain = extra.description === undefined && extra.headers === undefined && extra.content === undefined;
	if (isError && plain && ERROR_RESPONSES[status] !== undefined) {
		referenced.add(status);
		return { $ref: `#/components/responses/${ERROR_RESPONSES[status].name}` };
	}
	const response: JsonSchema = {
		description: extra.description ?? ERROR_RESPONSES[status]?.description ?? STATUS_CODES[status] ?? "Answer",
		headers: headerObjects(extra.headers)
	};
	if (extra.content !== undefined) response.content = contentObjects(extra.content);
	else if (isError) response.content = ERROR_CONTENT;
	return response;
}

function responses(route: RouteDoc, flags: ResponseFlags, referenced: Set<number>): JsonSchema {
	const successStatus = route.successStatus ?? 200;
	const result: Record<number, unknown> = { [successStatus]: successResponse(route, successStatus) };
	for (const [key, extra] of Object.entries(route.extraResponses ?? {})) {
		const status = Number(key);
		if (status !== successStatus) result[status] = extraResponse(status, extra, referenced);
	}
	for (const status of errorStatuses(flags)) {
		if (result[status] !== undefined) continue;
		referenced.add(status);
		result[status] = { $ref: `#/components/responses/${ERROR_RESPONSES[status].name}` };
	}
	// Integer-like keys enumerate in ascending order: statuses come out sorted.
	return Object.fromEntries(Object.entries(result));
}

function hasDeclaredParams(params: RouteDoc["params"]): boolean {
	return isRecord(params) && Object.keys(params).some(key => !key.startsWith("$$") || key === "$$root");
}

function buildOperation(planned: PlannedOperation, operationId: string, referenced: Set<number>): JsonSchema {
	const { route, method, variant, routePathParams } = planned;
	const input = paramsToJsonSchema(route.params);
	const hasBody = BODY_METHODS.has(method);
	const secured = typeof route.permission === "string" && route.permission !== "";
	// Redocly's recommended rules want a summary on every operation: an undocumented route still says what it is.
	const operation: JsonSchema = { operationId, summary: route.summary || `${method.toUpperCase()} ${variant.template}` };
	if (route.tags !== undefined && route.tags.length > 0) operation.tags = route.tags;
	if (route.action !== undefined) operation["x-action"] = route.action;
	if (route.method.trim() === "*") operation["x-any-method"] = true;

	const parameters = [...pathParameters(variant, input), ...(hasBody ? [] : queryParameters(input, routePathParams))];
	if (parameters.length > 0) operation.parameters = parameters;
	const body = hasBody ? requestBody(route, input, routePathParams) : null;
	if (body !== null) operation.requestBody = body;

	const flags = { secured, hasBody, hasParams: hasDeclaredParams(route.params), hasPathParams: variant.params.length > 0 };
	operation.responses = responses(route, flags, referenced);
	// An empty list says "no authentication" explicitly, rather than leaving it to a global default.
	operation.security = secured ? [{ bearerAuth: [] }] : [];
	if (secured) operation["x-permission"] = route.permission;
	return operation;
}

/** Action name (or method + path) → a unique operationId. */
function operationIdFactory(): (planned: PlannedOperation) => string {
	const used = new Map<string, number>();
	return ({ route, method, variant }) => {
		const base = (route.action ?? `${method}${variant.template}`).replace(/[^A-Za-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
		const count = (used.get(base) ?? 0) + 1;
		used.set(base, count);
		return count === 1 ? base : `${base}_${count}`;
	};
}

// ---------------------------------------------------------------------------------------------
// Answers several routes declare (in their actions' `extraResponses`)
// ---------------------------------------------------------------------------------------------

/**
 * A stored file's answers (content download, thumbnail, a display's download): the bytes when
 * the storage is embedded, a 302 to a short-lived URL when it is S3. A route whose bytes have
 * a known type overrides the 200 entry.
 */
export const FILE_ANSWERS: Readonly<Record<number, ResponseDoc>> = {
	200: { description: "The file's bytes, under its own Content-Type (embedded storage).", content: { "*/*": {} } },
	302: { description: "Found: the file at a short-lived URL (S3 storage).", headers: { Location: "The short-lived download URL." } }
};

/** The device manifest's ETag header, on its 200 and 304 answers. */
export const MANIFEST_ETAG_HEADER: Readonly<Record<string, string>> = { ETag: "The manifest's ETag: send it back as If-None-Match." };

// ---------------------------------------------------------------------------------------------
// Document
// ---------------------------------------------------------------------------------------------

const ERROR_SCHEMA: JsonSchema = {
	type: "object",
	required: ["error"],
	properties: {
		error: {
			type: "object",
			required: ["type", "message", "code"],
			properties: {
				type: { type: "string", description: "Machine-readable error type.", examples: ["NOT_FOUND", "VALIDATION_ERROR"] },
				message: { type: "string" },
				code: { type: "integer", description: "The HTTP status." },
				data: { description: "Details; for VALIDATION_ERROR the failing fields." },
				requestId: { type: "string", description: "Same as the X-Request-Id header." }
			}
		}
	}
};

function errorResponseComponents(referenced: Set<number>): JsonSchema {
	const components: JsonSchema = {};
	for (const [status, { name, description }] of Object.entries(ERROR_RESPONSES)) {
		if (!referenced.has(Number(status))) continue;
		const headers: JsonSchema = { ...REQUEST_ID_HEADER };
		if (status === "429") headers["Retry-After"] = { description: "Seconds to wait.", schema: { type: "integer" } };
		components[name] = { description, headers, content: ERROR_CONTENT };
	}
	return components;
}

function components(referenced: Set<number>): JsonSchema {
	return {
		schemas: { Error: ERROR_SCHEMA },
		responses: errorResponseComponents(referenced),
		headers: {
			RequestId: { description: "Request id, echoed from the request when given.", schema: { type: "string" } }
		},
		securitySchemes: {
			bearerAuth: {
				type: "http",
				scheme: "bearer",
				description: "A user access token (JWT), an API key (`mk_...`) or a device token (device endpoints only)."
			}
		}
	};
}

/** What each tag of the platform groups; a tag not listed here gets a generic line. */
export const TAG_DESCRIPTIONS: Readonly<Record<string, string>> = {
	auth: "Accounts, sign-in and sessions, email verification, passwords and API keys.",
	tenants: "The organisation: its settings, members and invitations, ownership, export and deletion.",
	devices: "Pairing, displays, display groups and commands; the device heartbeat and command acknowledgements.",
	media: "Content: uploads, web pages, metadata, files and thumbnails; downloads by displays.",
	scheduling: "Playlists, schedules and overrides, what a display plays (preview, timeline) and its manifest.",
	notifications: "In-app notifications, alert settings and webhooks.",
	billing: "Plans, the subscription, checkout and the payment provider's webhook.",
	audit: "The tenant's audit log.",
	device: "What a paired display calls with its device token, served by the gateway itself: the live event stream.",
	operations: "Health, metrics and this document: no /api/v1 prefix, no authentication."
};

function tagObjects(tags: Set<string>, descriptions: Record<string, string> = {}): JsonSchema[] {
	return [...tags].sort().map(name => ({ name, description: descriptions[name] ?? TAG_DESCRIPTIONS[name] ?? `Operations of the ${name} service.` }));
}

/** The OpenAPI 3.1 document of the given routes: paths sorted, operations in canonical method order. */
export function buildOpenApi(routes: RouteDoc[], info: OpenApiInfo, options: OpenApiOptions = {}): Record<string, unknown> {
	const nextOperationId = operationIdFactory();
	const paths: Record<string, JsonSchema> = {};
	const tags = new Set<string>();
	const referenced = new Set<number>();
	for (const planned of planOperations(routes)) {
		const pathItem = (paths[planned.variant.template] ??= {});
		pathItem[planned.method] = buildOperation(planned, nextOperationId(planned), referenced);
		for (const tag of planned.route.tags ?? []) tags.add(tag);
	}
	const infoObject: JsonSchema = { title: info.title, version: info.version };
	if (info.description !== undefined) infoObject.description = info.description;
	if (info.license !== undefined) infoObject.license = info.license;
	return {
		openapi: "3.1.0",
		info: infoObject,
		servers: options.servers ?? [{ url: "/", description: "The host that serves this document." }],
		tags: tagObjects(tags, options.tagDescriptions),
		paths,
		components: components(referenced)
	};
}
