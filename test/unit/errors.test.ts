/**
 * shared/errors.ts: every mapping of `toApiError` (typed AppErrors, Moleculer's and
 * moleculer-web's built-ins, body-parser failures, anything else thrown) and the regenerator
 * that keeps AppErrors typed across the transporter.
 */
import { sealer, SealedSecretError } from "../../shared/sealed";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import bodyParser from "body-parser";
import { Errors as MoleculerErrors, ServiceBroker } from "moleculer";
import { AppError, AppErrorRegenerator, Errors, STATUS_OF, toApiError, type ApiErrorType } from "../../shared/errors";

const SECRET = "s3cret-internal-detail";

/** The error body-parser's JSON parser really produces for `body` (null when it parses). */
function bodyParserError(body: string, limit: number | string = "100kb", contentType = "application/json", encoding = "identity"): Promise<unknown> {
	const stream = Readable.from([Buffer.from(body)]);
	const req = Object.assign(stream, {
		method: "POST",
		url: "/",
		headers: { "content-type": contentType, "content-length": String(Buffer.byteLength(body)), "content-encoding": encoding }
	});
	const parse = bodyParser.json({ limit, strict: true });
	return new Promise(resolve => parse(req as unknown as IncomingMessage, {} as ServerResponse, err => resolve(err ?? null)));
}

describe("toApiError: AppErrors keep their type, status, message and data", () => {
	const built: Array<[string, AppError, ApiErrorType, number]> = [
		["badRequest", Errors.badRequest("Bad cursor", { field: "cursor" }), "BAD_REQUEST", 400],
		["unauthorized", Errors.unauthorized(), "UNAUTHORIZED", 401],
		["quotaExceeded", Errors.quotaExceeded("Display limit reached", { limit: 3 }), "QUOTA_EXCEEDED", 402],
		["forbidden", Errors.forbidden(), "FORBIDDEN", 403],
		["notFound", Errors.notFound("Display", "d-1"), "NOT_FOUND", 404],
		["conflict", Errors.conflict("Already exists", { field: "name" }), "CONFLICT", 409],
		["payloadTooLarge", Errors.payloadTooLarge(), "PAYLOAD_TOO_LARGE", 413],
		["unsupportedMediaType", Errors.unsupportedMediaType("Only images", { got: "text/plain" }), "UNSUPPORTED_MEDIA_TYPE", 415],
		["validation", Errors.validation([{ field: "name", message: "is required", type: "required" }]), "VALIDATION_ERROR", 422],
		["rateLimited", Errors.rateLimited(12.2), "RATE_LIMITED", 429],
		["unavailable", Errors.unavailable("Storage unavailable"), "SERVICE_UNAVAILABLE", 503]
	];

	it.each(built)("Errors.%s", (_name, err, type, code) => {
		expect(err).toBeInstanceOf(AppError);
		expect(err).toBeInstanceOf(MoleculerErrors.MoleculerError);
		expect(err.retryable).toBe(false);
		expect(err.code).toBe(code);
		expect(toApiError(err)).toEqual({ type, message: err.message, code, data: err.data });
	});

	it("carries the documented data", () => {
		expect(toApiError(Errors.notFound("Display", "d-1"))).toEqual({ type: "NOT_FOUND", message: "Display not found", code: 404, data: { id: "d-1" } });
		expect(toApiError(Errors.notFound()).data).toBeUndefined();
		expect(toApiError(Errors.rateLimited(12.2)).data).toEqual({ retryAfter: 13 });
		expect(toApiError(Errors.rateLimited(0)).data).toEqual({ retryAfter: 1 });
		expect(toApiError(Errors.validation([{ field: "a", message: "is bad" }])).data).toEqual([{ field: "a", message: "is bad" }]);
	});

	it("every API type maps to its documented status", () => {
		expect(STATUS_OF).toEqual({
			BAD_REQUEST: 400,
			UNAUTHORIZED: 401,
			QUOTA_EXCEEDED: 402,
			FORBIDDEN: 403,
			NOT_FOUND: 404,
			CONFLICT: 409,
			PAYLOAD_TOO_LARGE: 413,
			UNSUPPORTED_MEDIA_TYPE: 415,
			VALIDATION_ERROR: 422,
			RATE_LIMITED: 429,
			SERVICE_UNAVAILABLE: 503,
			INTERNAL_ERROR: 500
		});
	});

	it("an AppError of type INTERNAL_ERROR still answers the generic message", () => {
		const api = toApiError(new AppError("INTERNAL_ERROR", `db password ${SECRET}`, { secret: SECRET }));
		expect(api).toEqual({ type: "INTERNAL_ERROR", message: "Internal server error", code: 500 });
	});

	it("an AppError in its plain form (crossed a transporter without the regenerator) maps the same", () => {
		const plain = { name: "AppError", message: "Already exists", code: 409, type: "CONFLICT", data: { field: "name" }, retryable: false };
		expect(toApiError(plain)).toEqual({ type: "CONFLICT", message: "Already exists", code: 409, data: { field: "name" } });
	});
});

describe("toApiError: Moleculer parameter validation → 422 with the failing fields", () => {
	let broker: ServiceBroker;
	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, validator: true });
		broker.createService({
			name: "v",
			actions: {
				plain: {
					params: { name: { type: "string", min: 3 }, count: { type: "number", integer: true }, email: { type: "email" } },
					handler: () => "ok"
				},
				lists: {
					params: { tags: { type: "array", enum: ["red", "green"] }, ids: { type: "array", unique: true } },
					handler: () => "ok"
				},
				strict: {
					params: { $$strict: true, name: "string", size: { type: "object", strict: true, props: { w: "number" } } },
					handler: () => "ok"
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	async function rejection(action: string, params: Record<string, unknown>): Promise<unknown> {
		try {
			await broker.call(action, params);
		} catch (err) {
			return err;
		}
		throw new Error(`${action} accepted ${JSON.stringify(params)}`);
	}

	it("names the first 100 failing fields of a body with thousands (no 10 MB answers)", () => {
		const failures = Array.from({ length: 5000 }, (_, i) => ({ type: "required", field: `ids[${i}]`, message: `The 'ids[${i}]' field must not be null.` }));
		const api = toApiError(new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", failures));
		expect(api.code).toBe(422);
		expect(api.data).toHaveLength(100);
		expect((api.data as Array<{ field: string }>)[99].field).toBe("ids[99]");
	});

	it("lists each field with message and type, never the rejected values", async () => {
		const err = await rejection("v.plain", { name: `x${SECRET}`.slice(0, 2), count: `${SECRET}-count`, email: `${SECRET}-not-an-email` });
		expect(err).toBeInstanceOf(MoleculerErrors.ValidationError);
		const api = toApiError(err);
		expect(api).toMatchObject({ type: "VALIDATION_ERROR", code: 422, message: "Validation failed" });
		const fields = api.data as Array<{ field: string; message: string; type?: string }>;
		expect(fields.map(f => f.field).sort()).toEqual(["count", "email", "name"]);
		for (const field of fields) {
			expect(Object.keys(field).sort()).toEqual(["field", "message", "type"]);
			expect(typeof field.message).toBe("string");
			expect(typeof field.type).toBe("string");
		}
		const text = JSON.stringify(api);
		expect(text).not.toContain(SECRET);
		expect(text).not.toContain("actual");
	});

	it("does not echo values that fastest-validator puts into its message (array enum, unique)", async () => {
		const err = await rejection("v.lists", { tags: [`${SECRET}-tag`], ids: [`${SECRET}-dup`, `${SECRET}-dup`] });
		const api = toApiError(err);
		expect(api.code).toBe(422);
		expect((api.data as Array<{ field: string }>).map(f => f.field).sort()).toEqual(["ids", "tags"]);
		expect(JSON.stringify(api)).not.toContain(SECRET);
	});

	it("says which object has fields the route does not take, without naming the client's keys", async () => {
		const api = toApiError(await rejection("v.strict", { name: "n", [`${SECRET}-top`]: 1, size: { w: 1, [`${SECRET}-inner`]: 2 } }));
		expect(api.data).toEqual([
			{ field: "size", message: "The 'size' object has fields this route does not take.", type: "objectStrict" },
			{ field: "", message: "The request has fields this route does not take.", type: "objectStrict" }
		]);
		expect(JSON.stringify(api)).not.toContain(SECRET);
	});

	it("tolerates a ValidationError whose data is missing or malformed", () => {
		expect(toApiError({ name: "ValidationError", message: "bad", code: 422, type: "VALIDATION_ERROR" })).toEqual({
			type: "VALIDATION_ERROR",
			message: "Validation failed",
			code: 422,
			data: []
		});
		const api = toApiError(new MoleculerErrors.ValidationError("bad", "VALIDATION_ERROR", [null, { field: 3, message: {} }]));
		expect(api.data).toEqual([
			{ field: "", message: "is invalid", type: undefined },
			{ field: "", message: "is invalid", type: undefined }
		]);
	});

	it("never throws on rejected values that cannot be turned into text", () => {
		const hostile = [{ toString: 1 }, { valueOf: {} }, { toString: 1, valueOf: 1 }, Object.create(null), [{ toString: 1 }], Symbol("s")];
		for (const actual of hostile) {
			const err = new MoleculerErrors.ValidationError("bad", "VALIDATION_ERROR", [{ field: "email", message: "The 'email' field must be a string.", type: "string", actual }]);
			expect(toApiError(err)).toEqual({
				type: "VALIDATION_ERROR",
				message: "Validation failed",
				code: 422,
				data: [{ field: "email", message: "The 'email' field must be a string.", type: "string" }]
			});
		}
	});
});

describe("toApiError is total", () => {
	it("answers 500 for anything, even a thrown value whose properties throw", () => {
		const trap = new Proxy({}, { get: () => { throw new Error("trap"); } });
		const values: unknown[] = [trap, undefined, null, 0, "text", Symbol("s"), { code: { toString: 1 } }, Object.create(null)];
		for (const value of values) expect(toApiError(value)).toEqual({ type: "INTERNAL_ERROR", message: "Internal server error", code: 500 });
	});
});

describe("toApiError: body-parser failures (the real errors it produces)", () => {
	it("malformed JSON → 400 without echoing the body or the parser's message", async () => {
		const err = await bodyParserError(`{"password": "${SECRET}",`);
		expect(err).toMatchObject({ type: "entity.parse.failed" });
		expect(toApiError(err)).toEqual({ type: "BAD_REQUEST", message: "Malformed JSON body", code: 400 });
	});

	it("a non-object JSON body under strict parsing → 400", async () => {
		const err = await bodyParserError(`"${SECRET}"`);
		expect(err).toMatchObject({ type: "entity.parse.failed" });
		expect(toApiError(err)).toEqual({ type: "BAD_REQUEST", message: "Malformed JSON body", code: 400 });
	});

	it("a body over the limit → 413", async () => {
		const err = await bodyParserError(JSON.stringify({ pad: "y".repeat(200) }), 64);
		expect(err).toMatchObject({ type: "entity.too.large" });
		expect(toApiError(err)).toEqual({ type: "PAYLOAD_TOO_LARGE", message: "Request body too large", code: 413 });
	});

	it("an unsupported charset → 415", async () => {
		const err = await bodyParserError("{}", "100kb", "application/json; charset=klingon");
		expect(err).toMatchObject({ type: "charset.unsupported" });
		expect(toApiError(err)).toEqual({ type: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported body encoding or charset", code: 415, data: { accepted: ["identity", "gzip", "deflate", "br"] } });
	});

	it.each(["gzip", "deflate", "br"])("a %s body that does not decode → 400, without the decompressor's message", async encoding => {
		const err = await bodyParserError(`not ${encoding} at all ${SECRET}`, "100kb", "application/json", encoding);
		expect(err).toMatchObject({ status: 400 });
		expect(toApiError(err)).toEqual({ type: "BAD_REQUEST", message: "The request body could not be decoded", code: 400 });
	});

	it("the documented shapes map without a real parser too", () => {
		expect(toApiError({ type: "entity.too.large", status: 413 }).code).toBe(413);
		expect(toApiError({ statusCode: 413 }).code).toBe(413);
		expect(toApiError({ type: "encoding.unsupported", status: 415 }).code).toBe(415);
		expect(toApiError({ type: "request.aborted", status: 400 })).toEqual({ type: "BAD_REQUEST", message: "Request aborted", code: 400 });
	});
});

describe("toApiError: Moleculer and moleculer-web built-ins", () => {
	it.each([
		// A service a request needs that is not running is no reason to tell the client the object is missing.
		["ServiceNotFoundError", new MoleculerErrors.ServiceNotFoundError({ action: `internal.${SECRET}`, nodeID: "node-1" })],
		["RequestTimeoutError", new MoleculerErrors.RequestTimeoutError({ action: `media.${SECRET}`, nodeID: "node-1" })],
		["ServiceNotAvailableError", new MoleculerErrors.ServiceNotAvailableError({ action: `media.${SECRET}`, nodeID: "node-1" })],
		["BrokerDisconnectedError", new MoleculerErrors.BrokerDisconnectedError("disconnected")],
		["QueueIsFullError", new MoleculerErrors.QueueIsFullError({ action: "media.x", nodeID: "n", size: 10, limit: 10 })],
		// What a JetStream publish throws while NATS restarts, as it arrives back over the transporter.
		["NatsError", Object.assign(new Error(`TIMEOUT ${SECRET}`), { name: "NatsError", code: "TIMEOUT" })]
	])("%s → 503 without its details", (_name, err) => {
		expect(toApiError(err)).toEqual({ type: "SERVICE_UNAVAILABLE", message: "Service unavailable, retry later", code: 503 });
	});

	it("a sealed secret that does not open (ENCRYPTION_KEY changed) → 503 naming the key, not the secret", () => {
		let thrown: unknown;
		try {
			sealer("a".repeat(32)).open(sealer("b".repeat(32)).seal(SECRET, "totp:u1"), "totp:u1");
		} catch (err) {
			thrown = err;
		}
		expect(thrown).toBeInstanceOf(SealedSecretError);
		const answer = toApiError(thrown);
		expect(answer).toEqual({ type: "SERVICE_UNAVAILABLE", message: "A stored secret cannot be read; the operator must restore ENCRYPTION_KEY", code: 503 });
		expect(JSON.stringify(answer)).not.toContain(SECRET);
	});

	it("a client error with a 4xx code keeps its status and message", () => {
		expect(toApiError(new MoleculerErrors.MoleculerClientError("No such route", 404, "NOT_FOUND"))).toEqual({
			type: "NOT_FOUND",
			message: "No such route",
			code: 404
		});
		expect(toApiError(new MoleculerErrors.MoleculerClientError("Unauthorized", 401, "NO_TOKEN"))).toMatchObject({ type: "UNAUTHORIZED", code: 401 });
		// a 4xx without an API type of its own is a bad request
		expect(toApiError(new MoleculerErrors.MoleculerClientError("I'm a teapot", 418, "TEAPOT"))).toMatchObject({ type: "BAD_REQUEST", code: 400 });
	});

	it("a 503 MoleculerError → 503; other server errors → 500 without their message", () => {
		expect(toApiError(new MoleculerErrors.MoleculerError(SECRET, 503, "DOWN")).code).toBe(503);
		expect(JSON.stringify(toApiError(new MoleculerErrors.MoleculerError(SECRET, 503, "DOWN")))).not.toContain(SECRET);
		expect(toApiError(new MoleculerErrors.MoleculerServerError(SECRET, 500, "DB", { q: SECRET }))).toEqual({
			type: "INTERNAL_ERROR",
			message: "Internal server error",
			code: 500
		});
		expect(toApiError(new MoleculerErrors.MoleculerError(SECRET, 502, "BAD_GATEWAY")).code).toBe(500);
	});
});

describe("toApiError: anything else thrown → 500 with nothing leaked", () => {
	const internal = { type: "INTERNAL_ERROR", message: "Internal server error", code: 500 };

	it.each([
		["an Error", new Error(`${SECRET} at /srv/app.js:12`)],
		["a TypeError", new TypeError(`Cannot read properties of undefined (reading '${SECRET}')`)],
		["a plain object", { message: SECRET, stack: SECRET }],
		["a plain object with a 500 code", { code: 500, message: SECRET }],
		["a string", SECRET],
		["undefined", undefined],
		["null", null],
		["a number", 404],
		["an array", [SECRET]]
	])("%s", (_name, thrown) => {
		const api = toApiError(thrown);
		expect(api).toEqual(internal);
		expect(JSON.stringify(api)).not.toContain(SECRET);
	});
});

describe("AppErrorRegenerator", () => {
	let broker: ServiceBroker;
	let regenerator: AppErrorRegenerator;
	beforeAll(() => {
		regenerator = new AppErrorRegenerator();
		broker = new ServiceBroker({ logger: false, nodeID: "node-b", errorRegenerator: regenerator });
	});

	it("restores an AppError from its plain form", () => {
		const original = Errors.conflict("Already exists", { field: "name" });
		const plain = regenerator.extractPlainError(original, {});
		// what the transporter carries is JSON
		const restored = regenerator.restore(JSON.parse(JSON.stringify(plain)), { sender: "node-b" });
		expect(restored).toBeInstanceOf(AppError);
		expect(restored).toMatchObject({ name: "AppError", message: "Already exists", code: 409, type: "CONFLICT", data: { field: "name" }, retryable: false });
		expect(toApiError(restored)).toEqual({ type: "CONFLICT", message: "Already exists", code: 409, data: { field: "name" } });
	});

	it("keeps what Moleculer restores on every remote error: the node that threw it", () => {
		const plain = regenerator.extractPlainError(Errors.notFound("Display", "d-1"), {});
		const restored = regenerator.restore(JSON.parse(JSON.stringify(plain)), { sender: "node-b" }) as AppError & { nodeID?: string };
		expect(restored).toBeInstanceOf(AppError);
		expect(restored.nodeID).toBe("node-b");
	});

	it("leaves Moleculer's own errors to the default regenerator", () => {
		const plain = regenerator.extractPlainError(new MoleculerErrors.ValidationError("bad", "VALIDATION_ERROR", [{ field: "a" }]), {});
		const restored = regenerator.restore(JSON.parse(JSON.stringify(plain)), { sender: "node-b" });
		expect(restored).toBeInstanceOf(MoleculerErrors.ValidationError);
		expect(restored).not.toBeInstanceOf(AppError);
	});

	it("does not make an AppError of a plain error with an unknown type", () => {
		const restored = regenerator.restore(
			{ name: "AppError", message: "x", code: 418, type: "TEAPOT", nodeID: "node-b", retryable: false, stack: "", data: undefined },
			{ sender: "node-b" }
		);
		expect(restored).not.toBeInstanceOf(AppError);
	});

	afterAll(() => broker.stop());
});
