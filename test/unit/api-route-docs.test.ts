/**
 * What the gateway hands to the OpenAPI builder (services/api/route-docs.ts): one RouteDoc per
 * alias, with the action's params, permission, summary, success status and response schema, the
 * device stream's own declarations, and operations endpoints as such.
 */
import { Type } from "@sinclair/typebox";
import { actionsByName, routeDocs, type PublishedAction } from "../../services/api/route-docs";
import type { GatewayAlias } from "../../services/api/moleculer-web";

const Display = Type.Object({ id: Type.String(), name: Type.String() });

const ACTIONS = actionsByName([
	{
		name: "devices.create",
		action: { params: { name: "string" }, permission: "displays.manage", summary: "Create a display", successStatus: 201, response: Display }
	},
	{ name: "devices.remove", action: { permission: "displays.manage", successStatus: 204, response: null } },
	{ name: "auth.login", action: { permission: "public", params: { email: "email" } } },
	{ name: "devices.odd", action: { permission: "no.such.permission" } as unknown as PublishedAction },
	{ name: "$node.list" }
]);

const alias = (method: string, fullPath: string, action: string | null, extra: Partial<GatewayAlias> = {}): GatewayAlias => ({
	method,
	fullPath,
	action,
	type: "call",
	...extra
});

describe("routeDocs", () => {
	it("actionsByName skips entries without a definition", () => {
		expect([...ACTIONS.keys()]).toEqual(["devices.create", "devices.remove", "auth.login", "devices.odd"]);
	});

	it("an action's route: params, permission, summary, successStatus and response", () => {
		const [create, remove] = routeDocs([alias("POST", "/api/v1/displays", "devices.create"), alias("DELETE", "/api/v1/displays/:id", "devices.remove")], ACTIONS);
		expect(create).toEqual({
			method: "POST",
			path: "/api/v1/displays",
			action: "devices.create",
			summary: "Create a display",
			permission: "displays.manage",
			params: { name: "string" },
			tags: ["devices"],
			successStatus: 201,
			response: Display,
			aliasType: "call"
		});
		// null: declared to answer no body (204).
		expect(remove).toMatchObject({ successStatus: 204, response: null, permission: "displays.manage" });
	});

	it("public or unknown permissions document no security; undeclared answers stay undefined", () => {
		const [login, odd] = routeDocs([alias("POST", "/api/v1/auth/login", "auth.login"), alias("GET", "/api/v1/odd", "devices.odd")], ACTIONS);
		expect(login).toMatchObject({ permission: null, params: { email: "email" }, tags: ["auth"] });
		expect(login.response).toBeUndefined();
		expect(login.successStatus).toBeUndefined();
		expect(odd.permission).toBeNull();
	});

	it("an alias whose action is not registered still appears, without its details", () => {
		const [missing] = routeDocs([alias("GET", "/api/v1/gone", "gone.get")], ACTIONS);
		expect(missing).toMatchObject({ method: "GET", path: "/api/v1/gone", action: "gone.get", permission: null, tags: ["gone"] });
		expect(missing.params).toBeUndefined();
	});

	it("upload and raw-body aliases keep their type", () => {
		const docs = routeDocs(
			[alias("POST", "/api/v1/content", "devices.create", { type: "multipart" }), alias("PUT", "/api/v1/raw", "devices.create", { type: "stream" })],
			ACTIONS
		);
		expect(docs.map(d => d.aliasType)).toEqual(["multipart", "stream"]);
	});

	it("a function alias of the REST route documents what it declares itself", () => {
		const extraResponses = { 200: { description: "events", content: { "text/event-stream": { type: "string" } } } };
		const [stream] = routeDocs(
			[alias("GET", "/api/v1/device/events", null, { permission: "device", summary: "Live events", tags: ["device", 7], extraResponses })],
			ACTIONS
		);
		expect(stream).toEqual({
			method: "GET",
			path: "/api/v1/device/events",
			summary: "Live events",
			permission: "device",
			tags: ["device"],
			response: undefined,
			extraResponses
		});
	});

	it("a function alias without a permission is an operations endpoint", () => {
		expect(routeDocs([alias("GET", "/health/live", null)], ACTIONS)).toEqual([
			{ method: "GET", path: "/health/live", permission: null, tags: ["operations"] }
		]);
		const [publicAlias] = routeDocs([alias("GET", "/api/v1/open", null, { permission: "public" })], ACTIONS);
		expect(publicAlias.permission).toBeNull();
	});
});
