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
	const LIMIT = 64 * 1024;
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
				// The plain path marks what it reads (body-parser 2 does not).
				res.setHeader("x-plain", String((req as { _body?: boolean })._body === true));
				let text: string;
				try {
					text = JSON.stringify(outcome);
				} catch {
					// Parsed, but nested too deep to write back: compared by that alone.
					text = JSON.stringify({ body: "(nested too deep to serialise)" });
				}
				res.end(text);
			};
			if (req.headers["x-parser"] === "body-parser") reference(req, res, answer);
			else plain(req, res, answer);
		});
		await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		port = (server.address() as AddressInfo).port;
	});
	afterAll(() => new Promise(resolve => server.close(resolve)));

	/** Sends `body`, in pieces cut at `cuts` (byte offsets, a UTF-8 sequence cut too) written a moment apart. */
	function send(parser: string, contentType: string, body: Buffer, cuts: readonly number[] = []): Promise<{ outcome: Outcome; plain: boolean }> {
		return new Promise((resolve, reject) => {
			const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", agent: false, headers: { "content-type": contentType, "content-length": String(body.length), "x-parser": parser } }, res => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => resolve({ outcome: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Outcome, plain: res.headers["x-plain"] === "true" }));
			});
			req.on("error", reject);
			// A request neither parser answers fails the case (with its counterexample) instead of hanging the suite.
			req.setTimeout(5000, () => req.destroy(new Error(`${parser}: no answer within 5 s`)));
			req.setNoDelay(true);
			const edges = [...new Set(cuts.map(c => Math.min(c, body.length)))].sort((a, b) => a - b);
			let from = 0;
			const writeNext = () => {
				const to = edges.shift();
				if (to === undefined) return void req.end(body.subarray(from));
				req.write(body.subarray(from, to));
				from = to;
				setTimeout(writeNext, 1);
			};
			writeNext();
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
		fc.constantFrom('{"__proto__":{"a":1}}', '{"a":{"$gt":""}}', "[".repeat(20000) + "]".repeat(20000), "[".repeat(30000), '{"a":', "{}", "", "   ", "null", "1", '"x"', "true", "{'a':1}").map(text),
		fc.string({ unit: "grapheme", maxLength: 40 }).map(text),
		// Anything at all, invalid UTF-8 included.
		fc.uint8Array({ maxLength: 64 }).map(bytes => Buffer.from(bytes)),
		fc.tuple(fc.jsonValue(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([v, junk]) => Buffer.concat([text(`{"v":${JSON.stringify(v) ?? 0},"s":"`), Buffer.from(junk), text('"}')]))
	);
	const plainTypes = fc.constantFrom("application/json", "application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8", "application/json;\tcharset=utf-8");

	it("parses every plain JSON body as body-parser does: the same value or the same refusal (2 000 random bodies, some in pieces)", async () => {
		const cuts = fc.oneof({ arbitrary: fc.constant([]), weight: 3 }, { arbitrary: fc.array(fc.nat({ max: 200 }), { minLength: 1, maxLength: 3 }), weight: 1 });
		await fc.assert(
			fc.asyncProperty(plainTypes, bodies, cuts, async (contentType, body, at) => {
				const ours = await send("plain", contentType, body, at);
				const theirs = await send("body-parser", contentType, body, at);
				// Within the limit, each of these went the plain path (a longer one goes to body-parser).
				expect(ours.plain).toBe(body.length <= LIMIT);
				expect(ours.outcome).toEqual(theirs.outcome);
			}),
			{ numRuns: 2000 }
		);
	});

	it("answers a request cut off mid-body, and passes on one whose body was already read", async () => {
		const plain = jsonBody(LIMIT);
		const outcome = new Promise<unknown>(resolve => {
			const cut = http.createServer((req, res) => plain(req, res, err => resolve(err)));
			cut.listen(0, "127.0.0.1", () => {
				const client = http.request({ host: "127.0.0.1", port: (cut.address() as AddressInfo).port, method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": "100" } });
				client.on("error", () => undefined);
				client.write('{"a":');
				setTimeout(() => {
					client.destroy();
					cut.close();
				}, 20);
			});
		});
		expect(toApiError(await outcome)).toMatchObject({ type: "BAD_REQUEST", code: 400 });
		// A body someone read before: the plain path leaves it, and body-parser passes it on.
		const read = new Promise<{ err: unknown; body: unknown }>(resolve => {
			const server2 = http.createServer((req: IncomingMessage & { body?: unknown }, res) => {
				req.resume();
				req.on("end", () =>
					plain(req, res, err => {
						resolve({ err, body: req.body });
						res.end();
						server2.close();
					})
				);
			});
			server2.listen(0, "127.0.0.1", () => {
				const client = http.request({ host: "127.0.0.1", port: (server2.address() as AddressInfo).port, method: "POST", agent: false, headers: { "content-type": "application/json" } }, res => res.resume());
				client.end('{"a":1}');
			});
		});
		await expect(read).resolves.toEqual({ err: undefined, body: undefined });
	});

	it("leaves every other request to body-parser: compressed, chunked, another charset or type, too large", () => {
		const req = (headers: Record<string, string>) => ({ headers, readable: true, readableEnded: false, destroyed: false }) as unknown as IncomingMessage;
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
		expect(isPlainJson({ ...req(json), readableEnded: true } as IncomingMessage, LIMIT)).toBe(false);
		expect(isPlainJson({ ...req(json), destroyed: true } as IncomingMessage, LIMIT)).toBe(false);
	});
});
