/**
 * The gateway's routes and answers (services/api/routes.ts, services/api/answers.ts) without a
 * server: CORS options, the device stream's URL test, the two route definitions, the operations
 * endpoints on fake responses, the error answer in every case and the 400 for unparsable requests.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { PassThrough } from "node:stream";
import type { CallingOptions } from "moleculer";
import { AppError, Errors } from "../../shared/errors";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/metrics";
import { answerUnparsable, errorHeaders, sendJson, writeError } from "../../services/api/answers";
import {
	ALLOWED_METHODS,
	API_PREFIX,
	bodyMiddlewares,
	corsOptions,
	DEVICE_EVENTS_PATH,
	isDeviceStreamUrl,
	isRawBodyRequest,
	opsAliases,
	opsRoute,
	rawBodyRoutes,
	restRoute,
	rootCallOptions
} from "../../services/api/routes";

/** Enough of ServerResponse for the writers; records the answer. */
class FakeResponse {
	status = 0;
	headers: Record<string, unknown> = {};
	body = "";
	headersSent = false;
	ended = false;
	destroyed = false;

	getHeader(name: string): unknown {
		return this.headers[name];
	}
	setHeader(name: string, value: unknown): void {
		this.headers[name] = value;
	}
	writeHead(status: number, headers: Record<string, unknown> = {}): this {
		this.status = status;
		Object.assign(this.headers, headers);
		this.headersSent = true;
		return this;
	}
	end(chunk?: string): this {
		if (chunk) this.body += chunk;
		this.ended = true;
		return this;
	}
	destroy(): void {
		this.destroyed = true;
	}
	get json(): unknown {
		return JSON.parse(this.body);
	}
}

const asRes = (res: FakeResponse) => res as unknown as ServerResponse;
const fakeReq = (fields: Record<string, unknown> = {}) => ({ method: "GET", url: "/x", headers: {}, ...fields }) as unknown as IncomingMessage;
const silent = { error: jest.fn() };

beforeEach(() => silent.error.mockClear());

describe("routes", () => {
	it("corsOptions: none without origins; a list, or any origin with *", () => {
		expect(corsOptions([])).toBeUndefined();
		const cors = corsOptions(["https://a.example", "https://b.example"]);
		expect(cors).toMatchObject({ origin: ["https://a.example", "https://b.example"], methods: ALLOWED_METHODS, credentials: false, maxAge: 600 });
		expect(cors?.allowedHeaders).toEqual(expect.arrayContaining(["Authorization", "Content-Type", "If-None-Match"]));
		expect(cors?.exposedHeaders).toEqual(expect.arrayContaining(["X-Request-Id", "ETag", "Retry-After", "RateLimit-Remaining"]));
		expect(corsOptions(["https://a.example", "*"])?.origin).toBe("*");
	});

	it("isDeviceStreamUrl / rootCallOptions: only the stream's root context goes untracked", () => {
		expect(isDeviceStreamUrl(`${API_PREFIX}${DEVICE_EVENTS_PATH}`)).toBe(true);
		expect(isDeviceStreamUrl("/API/V1/Device/Events/?x=1")).toBe(true);
		expect(isDeviceStreamUrl("/api/v1/device/manifest")).toBe(false);
		expect(isDeviceStreamUrl(undefined)).toBe(false);
		const stream: CallingOptions = {};
		rootCallOptions(stream, fakeReq({ url: "/api/v1/device/events" }));
		expect(stream.tracking).toBe(false);
		const other: CallingOptions = {};
		rootCallOptions(other, fakeReq({ url: "/api/v1/displays" }));
		expect(other.tracking).toBeUndefined();
	});

	it("isRawBodyRequest: only a stream alias of that method and path (query ignored) skips the JSON parser", () => {
		const aliases = [
			{ method: "POST", fullPath: "/api/v1/billing/stripe/webhook", action: "billing.stripeWebhook", type: "stream" },
			{ method: "POST", fullPath: "/api/v1/content", action: "media.upload", type: "multipart" },
			{ method: "POST", fullPath: "/api/v1/playlists", action: "scheduling.createPlaylist" }
		];
		const req = (method: string, url: string) => ({ method, url }) as IncomingMessage;
		const raw = rawBodyRoutes(aliases);
		expect(isRawBodyRequest(raw, req("POST", "/billing/stripe/webhook"))).toBe(true);
		expect(isRawBodyRequest(raw, req("POST", "/billing/stripe/webhook?x=1"))).toBe(true);
		expect(isRawBodyRequest(raw, req("PUT", "/billing/stripe/webhook"))).toBe(false);
		expect(isRawBodyRequest(raw, req("POST", "/billing/stripe/webhook/extra"))).toBe(false);
		expect(isRawBodyRequest(raw, req("POST", "/content"))).toBe(false);
		expect(isRawBodyRequest(raw, req("POST", "/playlists"))).toBe(false);
	});

	it("restRoute: guarded auto-aliases under /api/v1, our body parser, the device stream alias", async () => {
		const openDeviceStream = jest.fn();
		const onBeforeCall = jest.fn();
		const onAfterCall = jest.fn();
		const cors = corsOptions(["https://a.example"]);
		const route = restRoute({ body: bodyMiddlewares(1024, () => false), cors }, { onBeforeCall, onAfterCall, openDeviceStream });
		expect(route).toMatchObject({
			name: "rest",
			path: API_PREFIX,
			autoAliases: true,
			mappingPolicy: "restrict",
			authentication: true,
			authorization: true,
			bodyParsers: false,
			logging: true,
			cors
		});
		expect(route.use).toHaveLength(2);
		expect([route.onBeforeCall, route.onAfterCall]).toEqual([onBeforeCall, onAfterCall]);
		const alias = route.aliases?.[`GET ${DEVICE_EVENTS_PATH}`] as Record<string, unknown>;
		expect(alias).toMatchObject({ permission: "device", tags: ["device"] });
		expect(Object.keys(alias.extraResponses as object)).toEqual(["200"]);
		// Registered through aliasFunction: calling it runs the stream hook with the request and response.
		const [req, res] = [{ url: "/x" }, { end() {} }];
		(alias.handler as (q: unknown, r: unknown, next: () => void) => void)(req, res, () => undefined);
		await new Promise(resolve => setImmediate(resolve));
		expect(openDeviceStream).toHaveBeenCalledWith(req, res);
	});

	it("opsRoute: unguarded, at the root, no body parsing", () => {
		const aliases = { "GET /x": jest.fn() };
		expect(opsRoute(aliases, undefined)).toEqual({ name: "ops", path: "/", aliases: { "GET /x": expect.any(Function) }, mappingPolicy: "restrict", bodyParsers: false, logging: false, cors: undefined });
	});

	it("opsRoute: a handler's failure, thrown or rejected, reaches moleculer-web's next (the error writer)", async () => {
		const thrown = new Error("thrown");
		const rejected = new Error("rejected");
		const route = opsRoute({ "GET /a": () => { throw thrown; }, "GET /b": async () => { throw rejected; }, }, undefined);
		const call = (key: string) =>
			new Promise(resolve => (route.aliases?.[key] as (q: unknown, r: unknown, next: (err?: unknown) => void) => void)({}, {}, err => resolve(err)));
		expect(await call("GET /a")).toBe(thrown);
		expect(await call("GET /b")).toBe(rejected);
	});

	describe("operations endpoints", () => {
		const sources = {
			readiness: jest.fn(async () => ({ status: "ok" as const, checks: {} })),
			metricsText: () => "# metrics\n",
			openApiDocument: () => ({ openapi: "3.1.0" }),
			publicStorageUrl: null
		};
		const ops = opsAliases(sources);

		it("lists the endpoints", () => {
			expect(Object.keys(ops).sort()).toEqual([
				"GET /api/docs",
				"GET /api/docs/assets/:file",
				"GET /api/openapi.json",
				"GET /health/live",
				"GET /health/ready",
				"GET /metrics",
				"GET /player",
				"GET /player/assets/:file",
				"GET /player/qr.svg",
				"GET /player/shell.json",
				"GET /player/sw.js"
			]);
		});

		it("each endpoint documents itself on its alias (route-docs.ts publishes it)", () => {
			for (const alias of Object.values(ops)) expect(alias.summary).toEqual(expect.any(String));
			expect(ops["GET /health/ready"].extraResponses?.[503]?.content?.["application/json"]).toBe(ops["GET /health/ready"].response);
			expect(Object.keys(ops["GET /metrics"].extraResponses?.[200]?.content ?? {})).toEqual(["text/plain"]);
		});

		it("/health/live, /health/ready (200 or 503), /metrics, /api/openapi.json", async () => {
			const live = new FakeResponse();
			await ops["GET /health/live"].handler(fakeReq(), asRes(live));
			expect([live.status, live.json]).toEqual([200, { status: "ok" }]);

			const ready = new FakeResponse();
			await ops["GET /health/ready"].handler(fakeReq(), asRes(ready));
			expect(ready.status).toBe(200);
			sources.readiness.mockResolvedValueOnce({ status: "fail", checks: { redis: { status: "fail", latencyMs: 1 } } } as never);
			const failing = new FakeResponse();
			await ops["GET /health/ready"].handler(fakeReq(), asRes(failing));
			expect([failing.status, failing.json]).toEqual([503, { status: "fail", checks: { redis: { status: "fail", latencyMs: 1 } } }]);

			const metrics = new FakeResponse();
			await ops["GET /metrics"].handler(fakeReq(), asRes(metrics));
			expect([metrics.status, metrics.headers["Content-Type"], metrics.body]).toEqual([200, PROMETHEUS_CONTENT_TYPE, "# metrics\n"]);

			const doc = new FakeResponse();
			await ops["GET /api/openapi.json"].handler(fakeReq(), asRes(doc));
			expect([doc.status, doc.json]).toEqual([200, { openapi: "3.1.0" }]);
		});

		it("/api/docs and its assets: a page with a CSP; an unknown asset is 404", async () => {
			const page = new FakeResponse();
			await ops["GET /api/docs"].handler(fakeReq(), asRes(page));
			expect(page.status).toBe(200);
			expect(page.headers["Content-Security-Policy"]).toContain("default-src");
			expect(page.body).toContain("/api/openapi.json");
			expect(() => ops["GET /api/docs/assets/:file"].handler(fakeReq({ $params: { file: "../package.json" } }), asRes(new FakeResponse()))).toThrow(
				expect.objectContaining({ code: 404 })
			);
		});
	});
});

describe("answers", () => {
	it("sendJson: status, JSON with its length, extra headers", () => {
		const res = new FakeResponse();
		sendJson(asRes(res), 201, { a: "é" }, { ETag: "\"1\"" });
		expect(res.status).toBe(201);
		expect(res.headers).toMatchObject({ "Content-Type": "application/json; charset=utf-8", "Content-Length": 10, ETag: "\"1\"" });
		expect(res.json).toEqual({ a: "é" });
	});

	it("errorHeaders: Retry-After on 429, WWW-Authenticate on 401", () => {
		expect(errorHeaders(429, { retryAfter: 12 })).toEqual({ "Retry-After": "12" });
		expect(errorHeaders(429, undefined)).toEqual({ "Retry-After": "60" });
		expect(errorHeaders(401, {})).toEqual({ "WWW-Authenticate": 'Bearer realm="marquee"' });
		expect(errorHeaders(404, {})).toEqual({});
	});

	it("writeError: the API's error shape with the request id; 5xx logged without internals", () => {
		const res = new FakeResponse();
		res.setHeader("X-Request-Id", "req-1");
		writeError(silent, fakeReq(), asRes(res), Errors.rateLimited(7));
		expect(res.status).toBe(429);
		expect(res.headers["Retry-After"]).toBe("7");
		expect(res.json).toEqual({ error: { type: "RATE_LIMITED", message: expect.any(String), code: 429, data: { retryAfter: 7 }, requestId: "req-1" } });
		expect(silent.error).not.toHaveBeenCalled();

		const crash = new FakeResponse();
		writeError(silent, fakeReq(), asRes(crash), new Error("secret internal detail"));
		expect(crash.status).toBe(500);
		expect(crash.body).not.toContain("secret");
		expect(silent.error).toHaveBeenCalledTimes(1);
	});

	it("writeError: busboy's failure on an upload route is the client's (400)", () => {
		const upload = new FakeResponse();
		writeError(silent, fakeReq({ $alias: { type: "multipart" } }), asRes(upload), new Error("Unexpected end of multipart data"));
		expect([upload.status, (upload.json as { error: { type: string } }).error.type]).toEqual([400, "BAD_REQUEST"]);
		const elsewhere = new FakeResponse();
		writeError(silent, fakeReq(), asRes(elsewhere), new Error("Unexpected end of multipart data"));
		expect(elsewhere.status).toBe(500);
	});

	it("writeError: after the headers went out, just ends; if writing fails, a bare 500 or a destroyed socket", () => {
		const sent = new FakeResponse();
		sent.writeHead(200);
		writeError(silent, fakeReq(), asRes(sent), new AppError("NOT_FOUND", "gone"));
		expect([sent.status, sent.ended, sent.body]).toEqual([200, true, ""]);

		const broken = new FakeResponse();
		let calls = 0;
		broken.writeHead = function (status: number) {
			if (calls++ === 0) throw new Error("socket gone");
			this.status = status;
			return this;
		};
		writeError(silent, fakeReq(), asRes(broken), Errors.notFound("Thing"));
		expect(broken.status).toBe(500);
		expect(broken.json).toMatchObject({ error: { type: "INTERNAL_ERROR", code: 500 } });

		const hopeless = new FakeResponse();
		hopeless.writeHead = () => {
			throw new Error("socket gone");
		};
		hopeless.end = () => {
			throw new Error("socket gone");
		};
		writeError(silent, fakeReq(), asRes(hopeless), Errors.notFound("Thing"));
		expect(hopeless.destroyed).toBe(true);
	});

	it("answerUnparsable: 400 in the error shape, or just closes a socket that is gone", async () => {
		const socket = new PassThrough();
		answerUnparsable(Object.assign(new Error("bad"), { code: "HPE_HEADER_OVERFLOW" }), socket);
		const raw = (await socket.toArray()).join("");
		const [head, body] = raw.split("\r\n\r\n");
		expect(head).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
		expect(head).toContain("Connection: close");
		const requestId = /X-Request-Id: (\S+)/.exec(head)?.[1];
		expect(JSON.parse(body)).toEqual({
			error: { type: "BAD_REQUEST", message: "Request line or headers too large", code: 400, data: {}, requestId }
		});

		const reset = new PassThrough();
		answerUnparsable(Object.assign(new Error("reset"), { code: "ECONNRESET" }), reset);
		expect(reset.destroyed).toBe(true);
	});
});
