import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";

import { DOCS_PAGE_CSP, docsPageHtml, swaggerAssetContentType, swaggerAssetPath } from "../../shared/docs-page";
import { validateOpenApi } from "../helpers/openapi-validator";
import { buildOpenApi, paramsToJsonSchema, routePathToTemplates, validatorSchemaToJsonSchema, type RouteDoc } from "../../shared/openapi";


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

const INFO = { title: "Marquee API", version: "0.1.0", description: "Digital signage backend" };

type Json = Record<string, unknown>;
const doc = buildOpenApi(ROUTES, INFO) as { paths: Record<string, Record<string, Json>>; components: Json; tags: Json[] };

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

	it("has the 3.1 header, info, sorted paths and tags", () => {
		expect(doc).toMatchObject({ openapi: "3.1.0", info: INFO });
		const paths = Object.keys(doc.paths);
		expect(paths).toEqual([...paths].sort());
		expect(doc.tags).toEqual([{ name: "auth" }, { name: "displays" }]);
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
		expect(open.security).toBeUndefined();
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
		expect(Object.keys(components.responses)).toEqual([
			"BadRequest", "Unauthorized", "Forbidden", "NotFound", "PayloadTooLarge", "ValidationError", "RateLimited", "ServiceUnavailable"
		]);
		expect(components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
		const error = (components.schemas.Error.properties as Record<string, Json>).error;
		expect(Object.keys(error.properties as Json)).toEqual(["type", "message", "code", "data", "requestId"]);
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
