/**
 * services/api/http-input.ts: the check that keeps `__proto__` keys of a JSON body out of the
 * params, and the plain JSON path, which must read every body exactly as body-parser does.
 */
import http, { type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import bodyParser from "body-parser";
import fc from "fast-check";
import { hasProtoKey, jsonBody } from "../../services/api/http-input";
import { isPlainJson } from "../../shared/plain-json";
import { toApiError } from "../../shared/errors";

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

describe("the plain JSON path", () => {
	const LIMIT = 2048;
	let server: http.Server;
	let port = 0;

	/** What a parser made of a request: the body it parsed, or the API error it refused it with. */
	type Outcome = { body: unknown } | { error: string; code: number };

	beforeAll(async () => {
		const plain = jsonBody(LIMIT);
		const reference = bodyParser.json({ limit: LIMIT, strict: true });
		// One request to each: `x-parser` says which reads it; `x-plain` whether the plain path would.
		server = http.createServer((req: IncomingMessage & { body?: unknown }, res) => {
			const answer = (err?: unknown) => {
				const outcome: Outcome = err ? { error: toApiError(err).type, code: toApiError(err).code } : { body: req.body };
				res.setHeader("x-plain", String(isPlainJson(req, LIMIT)));
				res.end(JSON.stringify(outcome));
			};
			if (req.headers["x-parser"] === "body-parser") reference(req, res, answer);
			else plain(req, res, answer);
		});
		await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		port = (server.address() as AddressInfo).port;
	});
	afterAll(() => new Promise(resolve => server.close(resolve)));

	function send(parser: string, contentType: string, body: Buffer): Promise<{ outcome: Outcome; plain: boolean }> {
		return new Promise((resolve, reject) => {
			const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", agent: false, headers: { "content-type": contentType, "content-length": String(body.length), "x-parser": parser } }, res => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => resolve({ outcome: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Outcome, plain: res.headers["x-plain"] === "true" }));
			});
			req.on("error", reject);
			req.end(body);
		});
	}

	const whitespace = fc.constantFrom("", " ", "\n", "\t", "\r\n  ", "\u00a0", "\ufeff");
	const text = (s: string) => Buffer.from(s, "utf8");
	const bodies = fc.oneof(
		// JSON values of every kind, padded with whitespace (JSON's own and not).
		fc.tuple(whitespace, fc.jsonValue(), whitespace).map(([a, v, b]) => text(`${a}${JSON.stringify(v) ?? ""}${b}`)),
		// A byte order mark, as some clients send.
		fc.jsonValue().map(v => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text(JSON.stringify(v) ?? "")])),
		// Prototype and operator keys, deep nesting, broken JSON, empty bodies.
		fc.constantFrom('{"__proto__":{"a":1}}', '{"a":{"$gt":""}}', "[".repeat(5000) + "]".repeat(5000), "[".repeat(20000), '{"a":', "{}", "", "   ", "null", "1", '"x"', "true", "{'a':1}").map(text),
		fc.string({ unit: "grapheme", maxLength: 40 }).map(text),
		// Anything at all, invalid UTF-8 included.
		fc.uint8Array({ maxLength: 64 }).map(bytes => Buffer.from(bytes)),
		fc.tuple(fc.jsonValue(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([v, junk]) => Buffer.concat([text(`{"v":${JSON.stringify(v) ?? 0},"s":"`), Buffer.from(junk), text('"}')]))
	);
	const plainTypes = fc.constantFrom("application/json", "application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8", "application/json;\tcharset=utf-8");

	it("parses every plain JSON body as body-parser does: the same value or the same refusal (2 000 random bodies)", async () => {
		await fc.assert(
			fc.asyncProperty(plainTypes, bodies, async (contentType, body) => {
				const ours = await send("plain", contentType, body);
				const theirs = await send("body-parser", contentType, body);
				// Within the limit, each of these went the plain path (a longer one goes to body-parser).
				expect(ours.plain).toBe(body.length <= LIMIT);
				expect(ours.outcome).toEqual(theirs.outcome);
			}),
			{ numRuns: 2000 }
		);
	});

	it("leaves every other request to body-parser: compressed, chunked, another charset or type, too large", () => {
		const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
		const json = { "content-type": "application/json", "content-length": "10" };
		expect(isPlainJson(req(json), LIMIT)).toBe(true);
		expect(isPlainJson(req({ ...json, "content-encoding": "gzip" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-encoding": "identity" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ "content-type": "application/json", "transfer-encoding": "chunked" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-type": "application/json; charset=latin1" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-type": "application/json; charset=utf8" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-type": "text/plain" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-type": "application/json-patch+json" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-length": String(LIMIT + 1) }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ ...json, "content-length": "1e3" }), LIMIT)).toBe(false);
		expect(isPlainJson(req({ "content-type": "application/json" }), LIMIT)).toBe(false);
	});
});
