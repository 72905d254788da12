import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";

import { DOCS_PAGE_CSP, docsPageHtml, swaggerAssetContentType, swaggerAssetPath } from "../../shared/docs-page";
import { Type } from "@sinclair/typebox";

import { lintOpenApi, validateOpenApi } from "../helpers/openapi-validator";
import type { GatewayAlias } from "../../services/api/moleculer-web";
import { actionsByName, routeDocs, type PublishedAction } from "../../services/api/route-docs";
import { opsAliases } from "../../services/api/routes";
import AuthService from "../../services/auth.service";
import DevicesService from "../../services/devices.service";
import MediaService from "../../services/media.service";
import SchedulingService from "../../services/scheduling.service";
import TenantsService from "../../services/tenants.service";
import { Nullable } from "../../shared/contracts/views";
import {
	buildOpenApi,
	FILE_ANSWERS,
	MANIFEST_ETAG_HEADER,
	paramsToJsonSchema,
	routePathToTemplates,
	TAG_DESCRIPTIONS,
	validatorSchemaToJsonSchema,
	type RouteDoc
} from "../../shared/openapi";


const ROUTES: RouteDoc[] = [
	{ method: "GET", path: "/health/live", summary: "Liveness" },
	{
		method: "POST",
		path: "/api/v1/auth/login",
		action: "auth.login",
		tags: ["auth"],
		params: { email: "email", password: { type: "string", min: 10, max: 128 } }
	},
	{
		method: "GET",
		path: "/api/v1/displays",
		action: "displays.list",
		permission: "displays.read",
		tags: ["displays"],
		params: {
			status: { type: "enum", values: ["pending", "online", "offline"], optional: true },
			tag: "string|optional",
			page: "number|integer|positive|convert|optional",
			pageSize: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
			filter: { type: "object", optional: true, props: { q: "string|optional" } }
		}
	},
	{
		method: "GET",
		path: "/api/v1/displays/:id",
		action: "displays.get",
		permission: "displays.read",
		tags: ["displays"],
		params: { id: "string" }
	},
	{
		method: "POST",
		path: "/api/v1/displays/pair",
		action: "displays.pair",
		permission: "displays.write",
		tags: ["displays"],
		successStatus: 201,
		extraResponses: { 402: {} },
		params: {
			$$strict: "remove",
			code: { type: "string", length: 6, pattern: /^[A-Z2-9]+$/, trim: true, empty: false },
			name: { type: "string", min: 1, max: 100 },
			timezone: "string|optional",
			tags: { type: "array", items: "string", max: 20, optional: true },
			groupIds: "string[]|optional",
			metrics: {
				type: "object",
				optional: true,
				strict: true,
				props: { cpu: "number|min:0|max:100", temperature: { type: "number", optional: true, nullable: true } }
			},
			orientation: { type: "enum", values: ["landscape", "portrait"], default: "landscape" },
			screen: { type: "multi", rules: [{ type: "string" }, { type: "number", integer: true }], optional: true },
			size: ["string", "number"],
			kind: { type: "equal", value: "display" },
			uuid: { type: "uuid", optional: true },
			homepage: { type: "url", optional: true },
			activeFrom: { type: "date", convert: true, optional: true },
			visible: "boolean|optional",
			extra: "any|optional",
			legacy: { type: "forbidden" },
			custom: { type: "myCustomType", optional: true },
			$filename: "string"
		}
	},
	{
		method: "PATCH",
		path: "/api/v1/displays/:id",
		action: "displays.update",
		permission: "displays.write",
		tags: ["displays"],
		params: { id: "string", name: "string|optional|min:1" }
	},
	{
		method: "DELETE",
		path: "/api/v1/displays/:id",
		action: "displays.remove",
		permission: "displays.write",
		tags: ["displays"],
		successStatus: 204,
		params: { id: "string" }
	},
	{
		method: "GET",
		path: "/api/v1/content/:id/files{/:variant}",
		action: "content.files",
		permission: "content.read",
		params: { id: "string", variant: { type: "enum", values: ["thumbnail", "original"], optional: true }, inline: "boolean|optional|convert" }
	},
	{
		method: "GET",
		path: "/api/v1/assets/*rest",
		action: "assets.get",
		params: { rest: { type: "array", items: "string" } }
	},
	{ method: "POST", path: "/api/v1/content", action: "content.upload", permission: "content.write", aliasType: "multipart", params: { name: "string|optional", $filename: "string" } },
	{ method: "POST", path: "/api/v1/billing/stripe/webhook", action: "billing.stripeWebhook", aliasType: "stream" },
	{ method: "*", path: "/api/v1/ping", action: "api.ping" },
	{ method: "POST", path: "/api/v1/auth/logout-all", action: "auth.logoutAll", permission: "auth.self", successStatus: 204 },
	{ method: "REST", path: "/api/v1/ignored", action: "ignored.action" }
];

const INFO = { title: "Marquee API", version: "0.1.0", description: "Digital signage backend", license: { name: "Apache-2.0", identifier: "Apache-2.0" } };

type Json = Record<string, unknown>;
type Doc = { paths: Record<string, Record<string, Json>>; components: Json; tags: Json[]; servers: Json[] };
const doc = buildOpenApi(ROUTES, INFO) as Doc;

function operation(pathTemplate: string, method: string): Json {
	const op = doc.paths[pathTemplate]?.[method];
	if (op === undefined) throw new Error(`No ${method} ${pathTemplate} in ${Object.keys(doc.paths).join(", ")}`);
	return op;
}

function parameters(op: Json): Json[] {
	return (op.parameters ?? []) as Json[];
}

function jsonBodySchema(op: Json): Json {
	return ((op.requestBody as Json).content as Record<string, Json>)["application/json"].schema as Json;
}

describe("buildOpenApi", () => {
	it("produces a document that passes the OpenAPI 3.1 schema validator", async () => {
		const result = await validateOpenApi(doc);
		if (!result.valid) console.error(JSON.stringify(result.errors, null, 2));
		expect(result.valid).toBe(true);
	});

	it("runs a validator that does reject broken documents", async () => {
		const broken = { ...doc, paths: { "/x": { get: { responses: { 200: {} } } } } };
		expect((await validateOpenApi(broken)).valid).toBe(false);
	});

	it("passes the validator for an empty route list too", async () => {
		expect((await validateOpenApi(buildOpenApi([], INFO))).valid).toBe(true);
	});

	it("has the 3.1 header, info, a server, sorted paths and described tags", () => {
		expect(doc).toMatchObject({ openapi: "3.1.0", info: INFO });
		expect(doc.servers).toEqual([{ url: "/", description: expect.any(String) }]);
		const paths = Object.keys(doc.paths);
		expect(paths).toEqual([...paths].sort());
		expect(doc.tags).toEqual([
			{ name: "auth", description: TAG_DESCRIPTIONS.auth },
			{ name: "displays", description: "Operations of the displays service." }
		]);
	});

	it("gives every operation a unique operationId and a summary", () => {
		const operations = Object.values(doc.paths).flatMap(item => Object.values(item));
		const ids = operations.map(op => op.operationId);
		expect(new Set(ids).size).toBe(ids.length);
		for (const op of operations) expect(op.summary).toEqual(expect.stringMatching(/\S/));
		expect(operation("/api/v1/displays/{id}", "get").summary).toBe("GET /api/v1/displays/{id}");
	});

	it("is deterministic regardless of route order", () => {
		expect(JSON.stringify(buildOpenApi([...ROUTES].reverse(), INFO))).toEqual(JSON.stringify(buildOpenApi(ROUTES, INFO)));
	});

	it("turns :id into a required path parameter, typed from params", () => {
		const op = operation("/api/v1/displays/{id}", "get");
		expect(parameters(op)).toEqual([{ name: "id", in: "path", required: true, schema: { type: "string" } }]);
		expect(op.requestBody).toBeUndefined();
	});

	it("puts GET params in the query with their required flags", () => {
		const byName = Object.fromEntries(parameters(operation("/api/v1/displays", "get")).map(p => [p.name, p]));
		expect(Object.keys(byName)).toEqual(["status", "tag", "page", "pageSize", "filter"]);
		expect(byName.status).toMatchObject({ in: "query", required: false, schema: { enum: ["pending", "online", "offline"] } });
		expect(byName.page.schema).toEqual({ type: "integer", exclusiveMinimum: 0 });
		expect(byName.pageSize).toMatchObject({ required: false, schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } });
		expect(byName.filter).toMatchObject({ style: "deepObject", explode: true });
	});

	it("puts POST params in a JSON body with a required list", () => {
		const op = operation("/api/v1/displays/pair", "post");
		expect(op.parameters).toBeUndefined();
		expect((op.requestBody as Json).required).toBe(true);
		const schema = jsonBodySchema(op);
		const props = schema.properties as Record<string, Json>;
		expect(schema.required).toEqual(["code", "name", "size", "kind"]);
		expect(schema.additionalProperties).toBeUndefined();
		expect(Object.keys(props)).not.toContain("legacy");
		expect(Object.keys(props)).not.toContain("$filename");
		expect(props.code).toEqual({ type: "string", minLength: 6, maxLength: 6, pattern: "^[A-Z2-9]+$" });
		expect(props.tags).toEqual({ type: "array", maxItems: 20, items: { type: "string" } });
		expect(props.groupIds).toEqual({ type: "array", items: { type: "string" } });
		expect(props.metrics).toEqual({
			type: "object",
			properties: { cpu: { type: "number", minimum: 0, maximum: 100 }, temperature: { type: ["number", "null"] } },
			required: ["cpu"],
			additionalProperties: false
		});
		expect(props.orientation).toEqual({ enum: ["landscape", "portrait"], default: "landscape" });
		expect(props.screen).toEqual({ anyOf: [{ type: "string" }, { type: "integer" }] });
		expect(props.size).toEqual({ anyOf: [{ type: "string" }, { type: "number" }] });
		expect(props.kind).toEqual({ const: "display" });
		expect(props.uuid).toEqual({ type: "string", format: "uuid" });
		expect(props.homepage).toEqual({ type: "string", format: "uri" });
		expect(props.activeFrom).toEqual({ type: "string", format: "date-time" });
		expect(props.visible).toEqual({ type: "boolean" });
		expect(props.extra).toEqual({});
		expect(props.custom).toEqual({});
	});

	it("keeps path params out of the body", () => {
		const op = operation("/api/v1/displays/{id}", "patch");
		expect(parameters(op).map(p => `${p.in}:${p.name}`)).toEqual(["path:id"]);
		expect(jsonBodySchema(op)).toEqual({ type: "object", properties: { name: { type: "string", minLength: 1 } } });
		expect((op.requestBody as Json).required).toBe(false);
	});

	it("emits both paths of an optional segment", () => {
		const short = operation("/api/v1/content/{id}/files", "get");
		const long = operation("/api/v1/content/{id}/files/{variant}", "get");
		expect(parameters(short).map(p => `${p.in}:${p.name}`)).toEqual(["path:id", "query:inline"]);
		expect(parameters(long).map(p => `${p.in}:${p.name}`)).toEqual(["path:id", "path:variant", "query:inline"]);
		expect(parameters(long)[1]).toMatchObject({ required: true, schema: { enum: ["thumbnail", "original"] } });
		expect([short.operationId, long.operationId]).toEqual(["content_files", "content_files_2"]);
	});

	it("documents a wildcard as a path parameter", () => {
		const [param] = parameters(operation("/api/v1/assets/{rest}", "get"));
		expect(param).toMatchObject({ name: "rest", in: "path", required: true, schema: { type: "array", items: { type: "string" } } });
	});

	it("secures routes with a permission and leaves public ones open", () => {
		const secured = operation("/api/v1/displays/{id}", "delete");
		expect(secured.security).toEqual([{ bearerAuth: [] }]);
		expect(secured["x-permission"]).toBe("displays.write");
		expect(Object.keys(secured.responses as Json)).toEqual(["204", "400", "401", "403", "404", "422", "429", "503"]);

		const open = operation("/api/v1/auth/login", "post");
		expect(open.security).toEqual([]);
		expect(open["x-permission"]).toBeUndefined();
		expect(Object.keys(open.responses as Json)).toEqual(["200", "400", "413", "422", "429", "503"]);
		expect((open.responses as Json)["422"]).toEqual({ $ref: "#/components/responses/ValidationError" });
	});

	it("leaves 422 off routes without params", () => {
		const op = operation("/health/live", "get");
		expect(Object.keys(op.responses as Json)).toEqual(["200", "400", "429", "503"]);
		expect(op.operationId).toBe("get_health_live");
		expect(operation("/api/v1/auth/logout-all", "post").requestBody).toBeUndefined();
	});

	it("documents multipart uploads, raw streams and any-method aliases; skips unknown methods", () => {
		const upload = (operation("/api/v1/content", "post").requestBody as Json).content as Record<string, Json>;
		expect(upload["multipart/form-data"].schema).toMatchObject({ required: ["file"], properties: { name: { type: "string" } } });
		expect((operation("/api/v1/billing/stripe/webhook", "post").requestBody as Json).content).toEqual({ "*/*": { schema: {} } });
		expect(operation("/api/v1/ping", "get")["x-any-method"]).toBe(true);
		expect(doc.paths["/api/v1/ignored"]).toBeUndefined();
	});

	it("defines the shared error schema, responses and bearer scheme", () => {
		const components = doc.components as Record<string, Record<string, Json>>;
		// Only the answers some operation refers to (QuotaExceeded: POST /api/v1/displays/pair's 402).
		expect(Object.keys(components.responses)).toEqual([
			"BadRequest", "Unauthorized", "QuotaExceeded", "Forbidden", "NotFound", "PayloadTooLarge", "ValidationError", "RateLimited", "ServiceUnavailable"
		]);
		expect(components.responses.NotFound).toMatchObject({ content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } });
		expect(components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
		const error = (components.schemas.Error.properties as Record<string, Json>).error;
		expect(Object.keys(error.properties as Json)).toEqual(["type", "message", "code", "data", "requestId"]);
	});
});

describe("buildOpenApi responses", () => {
	const Thing = Type.Object({ id: Type.String(), note: Type.Optional(Nullable(Type.String())), count: Type.Integer({ minimum: 0 }) });
	const Manifest = Type.Object({ etag: Type.String() });
	const RESPONSE_ROUTES: RouteDoc[] = [
		{ method: "GET", path: "/api/v1/things/:id", action: "things.get", summary: "A thing", permission: "tenant.read", tags: ["things"], params: { id: "string" }, response: Thing },
		{ method: "DELETE", path: "/api/v1/things/:id", action: "things.remove", summary: "Remove", permission: "tenant.read", params: { id: "string" }, successStatus: 204, response: Thing },
		{ method: "POST", path: "/api/v1/things/:id/touch", action: "things.touch", summary: "Touch", permission: "tenant.read", successStatus: 202, response: null },
		{ method: "GET", path: "/api/v1/things", action: "things.list", summary: "Things", permission: "tenant.read" },
		{
			method: "GET",
			path: "/api/v1/files/:id",
			action: "files.get",
			summary: "A file",
			permission: "tenant.read",
			params: { id: "string" },
			extraResponses: {
				200: { content: { "*/*": {} } },
				302: { description: "Elsewhere", headers: { Location: "Where" } },
				409: {}
			}
		},
		{
			method: "GET",
			path: "/api/v1/device/manifest",
			action: "scheduling.deviceManifest",
			summary: "Manifest",
			permission: "device",
			tags: ["scheduling"],
			response: Manifest,
			extraResponses: { 200: { headers: MANIFEST_ETAG_HEADER }, 304: { description: "Not Modified", headers: MANIFEST_ETAG_HEADER } }
		},
		{
			method: "GET",
			path: "/api/v1/device/events",
			summary: "Live events",
			permission: "device",
			tags: ["device"],
			extraResponses: { 200: { description: "Server-sent events.", content: { "text/event-stream": { type: "string" } } } }
		},
		{ method: "GET", path: "/api/v1/content/:id/download", action: "media.download", summary: "File", permission: "tenant.read", params: { id: "string" }, extraResponses: FILE_ANSWERS },
		{
			method: "POST",
			path: "/api/v1/auth/register",
			action: "auth.register",
			summary: "Sign up",
			successStatus: 201,
			params: { email: "email" },
			response: Manifest,
			extraResponses: { 409: { description: "An account with this email exists (CONFLICT)." } }
		},
		{
			method: "GET",
			path: "/metrics",
			summary: "Metrics",
			permission: null,
			tags: ["operations"],
			extraResponses: { 200: { description: "Prometheus text.", content: { "text/plain": { type: "string" } } } }
		},
		{ method: "POST", path: "/api/v1/invitations", action: "tenants.invite", summary: "Invite", permission: "members.manage", successStatus: 201, extraResponses: { 409: {} } }
	];
	const built = buildOpenApi(RESPONSE_ROUTES, INFO) as Doc;
	const op = (pathTemplate: string, method: string) => built.paths[pathTemplate][method];
	const response = (pathTemplate: string, method: string, status: number) => (op(pathTemplate, method).responses as Record<string, Json>)[String(status)];
	const REQUEST_ID = { $ref: "#/components/headers/RequestId" };

	it("passes the OpenAPI 3.1 schema validator", async () => {
		const result = await validateOpenApi(built);
		if (!result.valid) console.error(JSON.stringify(result.errors, null, 2));
		expect(result.valid).toBe(true);
	});

	it("publishes a TypeBox response as plain JSON Schema under application/json", () => {
		const success = response("/api/v1/things/{id}", "get", 200);
		expect(success).toEqual({ description: "OK", headers: { "X-Request-Id": REQUEST_ID }, content: { "application/json": { schema: JSON.parse(JSON.stringify(Thing)) } } });
		const schema = (success.content as Record<string, Json>)["application/json"].schema as Json;
		expect(Object.getOwnPropertySymbols(schema)).toEqual([]);
		expect(Object.getOwnPropertySymbols((schema.properties as Record<string, Json>).note)).toEqual([]);
		expect(schema.required).toEqual(["id", "count"]);
	});

	it("gives 204, `response: null` and undeclared responses no body", () => {
		expect(response("/api/v1/things/{id}", "delete", 204)).toEqual({ description: "No Content", headers: { "X-Request-Id": REQUEST_ID } });
		expect(response("/api/v1/things/{id}/touch", "post", 202)).toEqual({ description: "Accepted", headers: { "X-Request-Id": REQUEST_ID } });
		expect(response("/api/v1/things", "get", 200).content).toBeUndefined();
	});

	it("declares public operations open and the others bearer-secured", () => {
		expect(op("/api/v1/auth/register", "post").security).toEqual([]);
		expect(op("/api/v1/things/{id}", "get").security).toEqual([{ bearerAuth: [] }]);
		expect(op("/api/v1/device/manifest", "get").security).toEqual([{ bearerAuth: [] }]);
	});

	it("adds a route's own extra answers: other media types, a redirect, a shared error", () => {
		const answers = op("/api/v1/files/{id}", "get").responses as Record<string, Json>;
		expect(Object.keys(answers)).toEqual(["200", "302", "400", "401", "403", "404", "409", "422", "429", "503"]);
		expect(answers["200"].content).toEqual({ "*/*": { schema: {} } });
		expect(answers["302"]).toEqual({ description: "Elsewhere", headers: { "X-Request-Id": REQUEST_ID, Location: { description: "Where", schema: { type: "string" } } } });
		expect(answers["409"]).toEqual({ $ref: "#/components/responses/Conflict" });
		const components = built.components as Record<string, Record<string, Json>>;
		expect(components.responses.Conflict).toMatchObject({ content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } });
	});

	it("declares the conditional answers of the manifest, the files, the event stream and sign-up", () => {
		const manifest = op("/api/v1/device/manifest", "get").responses as Record<string, Json>;
		expect(Object.keys(manifest)).toEqual(["200", "304", "400", "401", "403", "429", "503"]);
		expect(manifest["200"].headers).toMatchObject({ "X-Request-Id": REQUEST_ID, ETag: { schema: { type: "string" } } });
		expect(manifest["200"].content).toEqual({ "application/json": { schema: JSON.parse(JSON.stringify(Manifest)) } });
		expect(manifest["304"].headers).toMatchObject({ ETag: { schema: { type: "string" } } });
		expect(manifest["304"].content).toBeUndefined();

		const download = op("/api/v1/content/{id}/download", "get").responses as Record<string, Json>;
		expect(download["200"].content).toEqual({ "*/*": { schema: {} } });
		expect(download["302"].headers).toMatchObject({ Location: { schema: { type: "string" } } });

		const events = response("/api/v1/device/events", "get", 200);
		expect(events).toEqual({
			description: "Server-sent events.",
			headers: { "X-Request-Id": REQUEST_ID },
			content: { "text/event-stream": { schema: { type: "string" } } }
		});

		const conflict = response("/api/v1/auth/register", "post", 409);
		expect(conflict).toMatchObject({ description: expect.stringContaining("CONFLICT"), content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } });
		expect(response("/api/v1/auth/register", "post", 201).content).toEqual({ "application/json": { schema: JSON.parse(JSON.stringify(Manifest)) } });
	});

	it("publishes only what a route declares: a bare error entry is the shared component, a 200 entry its media type", () => {
		expect(response("/api/v1/invitations", "post", 409)).toEqual({ $ref: "#/components/responses/Conflict" });
		expect(op("/metrics", "get").summary).toBe("Metrics");
		expect(response("/metrics", "get", 200)).toEqual({
			description: "Prometheus text.",
			headers: { "X-Request-Id": REQUEST_ID },
			content: { "text/plain": { schema: { type: "string" } } }
		});
	});

	it("uses the servers and tag descriptions it is given", () => {
		const custom = buildOpenApi(RESPONSE_ROUTES, INFO, { servers: [{ url: "https://signage.example.org" }], tagDescriptions: { things: "Things." } }) as Doc;
		expect(custom.servers).toEqual([{ url: "https://signage.example.org" }]);
		expect(custom.tags).toEqual([
			{ name: "device", description: TAG_DESCRIPTIONS.device },
			{ name: "operations", description: TAG_DESCRIPTIONS.operations },
			{ name: "scheduling", description: TAG_DESCRIPTIONS.scheduling },
			{ name: "things", description: "Things." }
		]);
	});

	it("passes Redocly's recommended rules without an error or a warning", async () => {
		const lint = await lintOpenApi(buildOpenApi([...ROUTES, ...RESPONSE_ROUTES], INFO));
		expect(lint.problems).toEqual([]);
		expect(lint).toMatchObject({ errors: 0, warnings: 0 });
	});

	it("runs a linter that does report problems", async () => {
		const { servers: _servers, ...withoutServers } = built;
		const lint = await lintOpenApi({ ...withoutServers, info: { title: "x", version: "1" } });
		expect(lint.problems.map(p => `${p.severity} ${p.ruleId}`).sort()).toEqual(["error no-empty-servers", "warn info-license"]);
	});
});

/**
 * The answers the routes are known for, as their owners declare them (actions' and operations
 * aliases' `extraResponses`), through the gateway's route-docs into the document. The gateway
 * e2e suite and the contract walk read the served document; this pins the entries themselves.
 */
describe("the platform's own declarations", () => {
	const SERVICES = [AuthService, DevicesService, MediaService, SchedulingService, TenantsService];
	const aliases: GatewayAlias[] = [];
	const actions: Array<{ name: string; action: PublishedAction }> = [];
	for (const service of SERVICES) {
		for (const [key, action] of Object.entries(service.actions ?? {})) {
			if (typeof action !== "object" || action.rest === undefined) continue;
			const name = `${service.name}.${key}`;
			const rest = action.rest as string | { method: string; path: string; type?: string };
			const [method, path] = typeof rest === "string" ? rest.split(" ") : [rest.method, rest.path];
			aliases.push({ method, fullPath: `/api/v1${path}`, action: name, type: typeof rest === "string" ? "call" : rest.type });
			actions.push({ name, action });
		}
	}
	const ops = opsAliases({ readiness: async () => ({ status: "ok", checks: {} }), metricsText: () => "", openApiDocument: () => ({}), publicStorageUrl: null });
	for (const [key, alias] of Object.entries(ops)) {
		const [method, fullPath] = key.split(" ");
		aliases.push({ method, fullPath, action: null, summary: alias.summary, response: alias.response, extraResponses: alias.extraResponses });
	}
	const published = buildOpenApi(routeDocs(aliases, actionsByName(actions)), INFO) as Doc;
	const answers = (pathTemplate: string, method: string) => published.paths[pathTemplate][method].responses as Record<string, Json>;
	const REQUEST_ID = { $ref: "#/components/headers/RequestId" };
	const ERROR_BODY = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } };
	const LOCATION = { Location: { description: "The short-lived download URL.", schema: { type: "string" } } };

	it("is a valid OpenAPI 3.1 document", async () => {
		const result = await validateOpenApi(published);
		if (!result.valid) console.error(JSON.stringify(result.errors, null, 2));
		expect(result.valid).toBe(true);
	});

	it("409, 402 and 415 where the actions are known for them", () => {
		const conflict = (description: string) => ({ description, headers: { "X-Request-Id": REQUEST_ID }, content: ERROR_BODY });
		expect(answers("/api/v1/auth/register", "post")["409"]).toEqual(conflict("An account with this email exists (CONFLICT)."));
		expect(answers("/api/v1/invitations", "post")["409"]).toEqual(conflict("The address is a member already (CONFLICT)."));
		expect(answers("/api/v1/playlists/{id}", "delete")["409"]).toMatchObject({ description: expect.stringContaining("?force=true"), content: ERROR_BODY });
		expect(answers("/api/v1/displays/pair", "post")["402"]).toEqual({ $ref: "#/components/responses/QuotaExceeded" });
		const upload = answers("/api/v1/content", "post");
		expect(upload["402"]).toEqual({ $ref: "#/components/responses/QuotaExceeded" });
		expect(upload["415"]).toMatchObject({ description: expect.stringContaining("UNSUPPORTED_MEDIA_TYPE"), content: ERROR_BODY });
	});

	it("files: the bytes (200) or a short-lived URL (302)", () => {
		for (const route of ["/api/v1/content/{id}/download", "/api/v1/device/content/{contentId}"]) {
			expect(answers(route, "get")["200"].content).toEqual({ "*/*": { schema: {} } });
			expect(answers(route, "get")["302"]).toMatchObject({ headers: { "X-Request-Id": REQUEST_ID, ...LOCATION } });
		}
		const thumbnail = answers("/api/v1/content/{id}/thumbnail", "get");
		expect(thumbnail["200"].content).toEqual({ "image/webp": { schema: {} } });
		expect(thumbnail["302"].headers).toEqual({ "X-Request-Id": REQUEST_ID, ...LOCATION });
	});

	it("the manifest: its ETag on 200, and 304 without a body", () => {
		const manifest = answers("/api/v1/device/manifest", "get");
		const etag = { ETag: { description: MANIFEST_ETAG_HEADER.ETag, schema: { type: "string" } } };
		expect(manifest["200"].headers).toEqual({ "X-Request-Id": REQUEST_ID, ...etag });
		expect(manifest["200"].content).toMatchObject({ "application/json": { schema: { type: "object" } } });
		expect(manifest["304"]).toEqual({ description: expect.stringContaining("Not Modified"), headers: { "X-Request-Id": REQUEST_ID, ...etag } });
	});

	it("the operations endpoints: health, metrics as text, the document and its page", () => {
		const get = (path: string) => published.paths[path].get;
		expect(get("/health/live").tags).toEqual(["operations"]);
		expect(get("/health/live").security).toEqual([]);
		expect(answers("/health/live", "get")["200"].content).toEqual({
			"application/json": { schema: { type: "object", required: ["status"], properties: { status: { const: "ok" } } } }
		});
		const ready = answers("/health/ready", "get");
		const readiness = (ready["200"].content as Record<string, Json>)["application/json"].schema as Json;
		expect(readiness).toMatchObject({ required: ["status", "checks"] });
		expect(ready["503"].content).toEqual({ "application/json": { schema: readiness } });
		expect(answers("/metrics", "get")["200"].content).toEqual({ "text/plain": { schema: { type: "string" } } });
		expect(answers("/api/openapi.json", "get")["200"].content).toMatchObject({ "application/json": { schema: { required: ["openapi", "info", "paths"] } } });
		expect(answers("/api/docs", "get")["200"].content).toEqual({ "text/html": { schema: { type: "string" } } });
		expect(answers("/api/docs/assets/{file}", "get")["200"].content).toEqual({ "*/*": { schema: {} } });
		for (const path of ["/health/live", "/health/ready", "/metrics", "/api/openapi.json", "/api/docs", "/api/docs/assets/{file}"]) {
			expect(get(path).summary).not.toMatch(/^GET /);
		}
	});
});

describe("routePathToTemplates", () => {
	it("expands nested optional groups and unescapes literals", () => {
		expect(routePathToTemplates("/a{/:b{/:c}}").map(v => v.template)).toEqual(["/a", "/a/{b}", "/a/{b}/{c}"]);
		expect(routePathToTemplates("/files/:name{.:ext}").map(v => v.template)).toEqual(["/files/{name}", "/files/{name}.{ext}"]);
		expect(routePathToTemplates("/x/\\:literal/:\"quoted-name\"")).toEqual([
			{ template: "/x/:literal/{quoted-name}", params: [{ name: "quoted-name", wildcard: false }] }
		]);
		expect(routePathToTemplates("/")).toEqual([{ template: "/", params: [] }]);
	});
});

describe("validatorSchemaToJsonSchema", () => {
	it("converts shorthand strings", () => {
		expect(validatorSchemaToJsonSchema("string")).toEqual({ type: "string" });
		expect(validatorSchemaToJsonSchema("number|integer|positive")).toEqual({ type: "integer", exclusiveMinimum: 0 });
		expect(validatorSchemaToJsonSchema("email")).toEqual({ type: "string", format: "email" });
		expect(validatorSchemaToJsonSchema("string|min:3|max:10")).toEqual({ type: "string", minLength: 3, maxLength: 10 });
		expect(validatorSchemaToJsonSchema("object")).toEqual({ type: "object" });
		expect(validatorSchemaToJsonSchema("array")).toEqual({ type: "array" });
	});

	it("converts object rules", () => {
		expect(validatorSchemaToJsonSchema({ type: "string", empty: false, enum: ["a", "b"] })).toEqual({ type: "string", minLength: 1, enum: ["a", "b"] });
		expect(validatorSchemaToJsonSchema({ type: "array", items: "string", enum: ["x", "y"], min: 1, unique: true })).toEqual({
			type: "array",
			minItems: 1,
			items: { type: "string", enum: ["x", "y"] },
			uniqueItems: true
		});
		expect(validatorSchemaToJsonSchema({ type: "object", properties: { a: "string" } })).toEqual({
			type: "object",
			properties: { a: { type: "string" } },
			required: ["a"]
		});
		expect(validatorSchemaToJsonSchema({ $$type: "object|optional", a: "number" })).toEqual({
			type: "object",
			properties: { a: { type: "number" } },
			required: ["a"]
		});
		expect(validatorSchemaToJsonSchema({ type: "record", key: "string", value: "number" })).toEqual({
			type: "object",
			propertyNames: { type: "string" },
			additionalProperties: { type: "number" }
		});
		expect(validatorSchemaToJsonSchema({ type: "enum", values: ["a"], nullable: true })).toEqual({ enum: ["a", null] });
		expect(validatorSchemaToJsonSchema({ type: "no-such-type" })).toEqual({});
		expect(validatorSchemaToJsonSchema({ type: "constructor" })).toEqual({});
		expect(validatorSchemaToJsonSchema(42)).toEqual({});
	});

	it("treats $$root params as a single rule and $$strict as closed", () => {
		expect(paramsToJsonSchema({ $$root: true, type: "array", items: "string" })).toEqual({ type: "array", items: { type: "string" } });
		expect(paramsToJsonSchema({ $$strict: true, $$async: true, a: "string" })).toEqual({
			type: "object",
			properties: { a: { type: "string" } },
			required: ["a"],
			additionalProperties: false
		});
	});
});

describe("docs page", () => {
	const html = docsPageHtml("/api/openapi.json", "/api/docs/assets/");

	it("loads Swagger UI from the local asset base and points it at the spec", () => {
		expect(html).toContain("<link rel=\"stylesheet\" href=\"/api/docs/assets/swagger-ui.css\">");
		expect(html).toContain("<script src=\"/api/docs/assets/swagger-ui-bundle.js\"></script>");
		expect(html).toContain("data-spec-url=\"/api/openapi.json\"");
		expect(html).not.toMatch(/https?:\/\//);
	});

	it("escapes the URLs it embeds", () => {
		expect(docsPageHtml("/spec.json?a=1&b=\"x\"", "/assets")).toContain("data-spec-url=\"/spec.json?a=1&amp;b=&quot;x&quot;\"");
	});

	it("allows its inline script by hash in the CSP", () => {
		const inline = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(match => match[1]);
		expect(inline).toHaveLength(1);
		const hash = createHash("sha256").update(inline[0]).digest("base64");
		expect(DOCS_PAGE_CSP).toContain(`'sha256-${hash}'`);
		expect(DOCS_PAGE_CSP).not.toContain("unsafe-eval");
	});
});

describe("swaggerAssetPath", () => {
	it.each(["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-16x16.png", "favicon-32x32.png"])(
		"resolves %s to an existing file",
		file => {
			const resolved = swaggerAssetPath(file);
			expect(resolved).not.toBeNull();
			expect(path.basename(resolved ?? "")).toBe(file);
			expect(existsSync(resolved ?? "")).toBe(true);
			expect(swaggerAssetContentType(file)).toMatch(/^(text|image)\//);
		}
	);

	it.each(["../package.json", "package.json", "index.js", "swagger-ui.css/../package.json", "/etc/passwd", "", "constructor", "toString"])(
		"rejects %j",
		file => {
			expect(swaggerAssetPath(file)).toBeNull();
			expect(swaggerAssetContentType(file)).toBeNull();
		}
	);
});
