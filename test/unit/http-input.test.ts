/** services/api/http-input.ts: the check that keeps `__proto__` keys of a JSON body out of the params. */
import { hasProtoKey } from "../../services/api/http-input";

describe("hasProtoKey", () => {
	it("finds a __proto__ key at any depth, in objects and inside arrays", () => {
		expect(hasProtoKey(JSON.parse('{"__proto__":{"role":"owner"}}'))).toBe(true);
		expect(hasProtoKey(JSON.parse('{"settings":{"__proto__":null}}'))).toBe(true);
		expect(hasProtoKey(JSON.parse('{"items":[{"contentId":"a"},{"__proto__":{}}]}'))).toBe(true);
	});

	it("leaves ordinary bodies alone, including look-alike keys and values", () => {
		expect(hasProtoKey(JSON.parse('{"name":"__proto__","proto":1,"constructor":{"prototype":1},"tags":["__proto__"]}'))).toBe(false);
		expect(hasProtoKey({})).toBe(false);
		expect(hasProtoKey(null)).toBe(false);
	});

	it("walks a body nested 200 000 levels deep without exhausting the stack", () => {
		const depth = 200_000;
		const deep = JSON.parse(`${"[".repeat(depth)}{"__proto__":1}${"]".repeat(depth)}`);
		expect(hasProtoKey(deep)).toBe(true);
		expect(hasProtoKey(JSON.parse(`${"[".repeat(depth)}1${"]".repeat(depth)}`))).toBe(false);
	});
});
