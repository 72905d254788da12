/**
 * The gateway's memory of routes (services/api/route-memory.ts): a route it has served answers
 * 503 while its service is away, instead of a 404 that says the route never existed.
 */
import { RouteMemory, type MatchableAlias } from "../../services/api/route-memory";

/** An alias matching `/api/v1/displays/:id` style paths, as moleculer-web's Alias does. */
function alias(method: string, fullPath: string): MatchableAlias {
	const pattern = new RegExp(`^${fullPath.replace(/:[a-zA-Z]+/g, "[^/]+")}$`);
	return { method, fullPath, match: (url: string) => (pattern.test(url) ? {} : null) };
}

describe("RouteMemory", () => {
	const memory = new RouteMemory();
	memory.remember([alias("GET", "/api/v1/device/manifest"), alias("PATCH", "/api/v1/displays/:id"), { method: "GET", fullPath: "/no-matcher" }]);

	it("knows the routes it was shown, by method and path, with any query", () => {
		expect(memory.knows("GET", "/api/v1/device/manifest")).toBe(true);
		expect(memory.knows("GET", "/api/v1/device/manifest?x=1")).toBe(true);
		expect(memory.knows("HEAD", "/api/v1/device/manifest")).toBe(true);
		expect(memory.knows("PATCH", "/api/v1/displays/d-1")).toBe(true);
	});

	it("does not know other methods, other paths, or aliases it cannot match", () => {
		expect(memory.knows("DELETE", "/api/v1/device/manifest")).toBe(false);
		expect(memory.knows("GET", "/api/v1/device/manifests")).toBe(false);
		expect(memory.knows("PATCH", "/api/v1/displays/d-1/extra")).toBe(false);
		expect(memory.knows("GET", "/no-matcher")).toBe(false);
		expect(memory.size).toBe(2);
	});

	it("keeps what it learnt when a later table lacks it (the service went away)", () => {
		memory.remember([alias("GET", "/api/v1/tenant")]);
		expect(memory.knows("GET", "/api/v1/device/manifest")).toBe(true);
		expect(memory.knows("GET", "/api/v1/tenant")).toBe(true);
	});
});
