/**
 * The gateway over HTTP: error shape and status of every failure path, request ids, RBAC per
 * route, rate limits, CORS, operations endpoints and the generated OpenAPI document.
 */
import { ServiceBroker, type Context, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { decide, PERMISSIONS, type Permission } from "../../shared/rbac";
import { logFormatter } from "../../shared/logging";
import { validateOpenApi } from "../helpers/openapi-validator";
import { request, startGateway, type ErrorBody, type TestGateway } from "../helpers/platform";
import net from "node:net";
import zlib from "node:zlib";
import { CALLERS, ProbeService, probeCalls, StubAuthService, tokenOf } from "../helpers/stub-services";

const V1 = "/api/v1";

/** Logs one line while handling its request. */
const LogProbeService: ServiceSchema = {
	name: "logprobe",
	settings: { rest: "/" },
	actions: {
		hello: {
			rest: "GET /logprobe",
			permission: "public",
			handler() {
				this.logger.info("handling hello");
				return { ok: true };
			}
		}
	}
};

/** Actions that declare their success status (the one `conditional` overrides with its own). */
const StatusProbeService: ServiceSchema = {
	name: "statusprobe",
	settings: { rest: "/" },
	actions: {
		created: { rest: "POST /statusprobe/created", permission: "public", successStatus: 201, handler: () => ({ ok: true }) },
		accepted: { rest: "POST /statusprobe/accepted", permission: "public", successStatus: 202, handler: () => ({ queued: true }) },
		conditional: {
			rest: "GET /statusprobe/conditional",
			permission: "public",
			successStatus: 201,
			handler(ctx: Context<unknown, { $statusCode?: number }>) {
				ctx.meta.$statusCode = 200;
				return { ok: true };
			}
		}
	}
};

/** Runs `fn` and returns every line the Console logger printed meanwhile. */
async function withCapturedLogs(fn: () => Promise<void>): Promise<string[]> {
	const lines: string[] = [];
	const methods = ["log", "info", "warn", "error", "debug"] as const;
	const spies = methods.map(m => jest.spyOn(console, m).mockImplementation((...args: unknown[]) => void lines.push(args.join(" "))));
	try {
		await fn();
	} finally {
		for (const spy of spies) spy.mockRestore();
	}
	return lines;
}

function expectError(res: { status: number; body: unknown; headers: Headers }, status: number, type: string): ErrorBody {
	const body = res.body as ErrorBody;
	expect(res.status).toBe(status);
	expect(body.error).toMatchObject({ type, code: status });
	expect(typeof body.error.message).toBe("string");
	expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
	expect(body.error.requestId).toBeTruthy();
	return body;
}

describe("gateway", () => {
	let gw: TestGateway;

	beforeAll(async () => {
		gw = await startGateway([StubAuthService, ProbeService], {
			MAX_BODY_BYTES: "2048",
			CORS_ORIGINS: "https://cms.example.com",
			CLICKHOUSE_URL: "http://127.0.0.1:1/marquee"
		});
	});
	afterAll(() => gw.stop());

	describe("error paths answer in the API's error shape", () => {
		it("unknown route → 404", async () => {
			expectError(await request(`${gw.url}${V1}/no/such/route`), 404, "NOT_FOUND");
			expectError(await request(`${gw.url}/totally/elsewhere`), 404, "NOT_FOUND");
		});

		it("malformed JSON → 400", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, {
				method: "POST",
				headers: { "Content-Type": "application/json" },
				body: '{"name": "x",'
			});
			expectError(res, 400, "BAD_REQUEST");
		});

		it("body over the limit → 413", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: { name: "x", pad: "y".repeat(5000) } });
			expectError(res, 413, "PAYLOAD_TOO_LARGE");
		});

		it("invalid params → 422 listing the fields", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: { name: "", count: "many" } });
			const body = expectError(res, 422, "VALIDATION_ERROR");
			const fields = (body.error.data as Array<{ field: string }>).map(f => f.field).sort();
			expect(fields).toEqual(["count", "name"]);
		});

		it("an operator object where a value belongs → 422", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: { name: { $gt: "" } } });
			expectError(res, 422, "VALIDATION_ERROR");
		});

		it("a JSON body that is not an object → 422, not a crash", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: ["name"] });
			expectError(res, 422, "VALIDATION_ERROR");
		});

		it("typed service errors keep their status and data → 409", async () => {
			const body = expectError(await request(`${gw.url}${V1}/probe/conflict`), 409, "CONFLICT");
			expect(body.error.data).toEqual({ field: "name" });
		});

		it("an unexpected failure → 500 without internals", async () => {
			const res = await request(`${gw.url}${V1}/probe/fail`);
			const body = expectError(res, 500, "INTERNAL_ERROR");
			expect(res.text).not.toContain("secret internal detail");
			expect(res.text).not.toContain("app.js");
			expect(body.error.message).toBe("Internal server error");
		});

		it("a route that declares no permission is denied → 403", async () => {
			const res = await request(`${gw.url}${V1}/probe/unguarded`, { headers: { Authorization: `Bearer ${tokenOf("owner")}` } });
			expectError(res, 403, "FORBIDDEN");
			expect(res.text).not.toContain("leaked");
		});
	});

	describe("hostile values never break the error path", () => {
		const hostile: Array<[string, unknown]> = [
			["an object with a non-function toString", { toString: 1 }],
			["an object with a non-function valueOf", { valueOf: {} }],
			["both", { toString: 1, valueOf: 1 }],
			["a prototype key", JSON.parse('{"__proto__": {"polluted": 1}}')],
			["an operator object", { $gt: "" }]
		];

		it.each(hostile)("%s in a string, a number, a converted number and a nested field → 422, and the gateway serves on", async (label, value) => {
			const bodies: Array<[Record<string, unknown>, string]> = [
				[{ name: value }, "name"],
				[{ name: "ok", count: value }, "count"],
				[{ name: "ok", converted: value }, "converted"],
				[{ name: "ok", nested: { flag: value } }, "nested.flag"]
			];
			for (const [body, field] of bodies) {
				const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: body });
				expectError(res, 422, "VALIDATION_ERROR");
				// A `__proto__` key is refused by the gateway before validation, wherever it sits.
				const named = label === "a prototype key" ? "__proto__" : field;
				expect((res.body as ErrorBody).error.data).toEqual([expect.objectContaining({ field: named })]);
			}
			expect((await request(`${gw.url}/health/live`)).status).toBe(200);
		});

		it("a hostile value in a query parameter → 422", async () => {
			const res = await request(`${gw.url}${V1}/probe/slow?ms[toString]=1`);
			expectError(res, 422, "VALIDATION_ERROR");
		});
	});

	describe("null is a value only where a field is declared nullable", () => {
		it("null in an optional field → 422 naming it", async () => {
			for (const body of [{ name: "x", count: null }, { name: null }, { name: "x", nested: null }, { name: "x", nested: { flag: null } }]) {
				const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", json: body });
				expectError(res, 422, "VALIDATION_ERROR");
			}
		});

		it("null where the field is nullable is accepted", async () => {
			const res = await request<Record<string, unknown>>(`${gw.url}${V1}/probe/echo`, { method: "POST", json: { name: "x", note: null } });
			expect(res.status).toBe(200);
			expect(res.body.note).toBeNull();
		});
	});

	describe("bodies that do not decode → 400", () => {
		it.each(["gzip", "deflate", "br"])("Content-Encoding: %s with a body that is not %s", async encoding => {
			const res = await request(`${gw.url}${V1}/probe/echo`, {
				method: "POST",
				headers: { "Content-Type": "application/json", "Content-Encoding": encoding },
				body: "not compressed at all"
			});
			expectError(res, 400, "BAD_REQUEST");
		});

		it("a body that does decode is read (gzip, deflate, br)", async () => {
			const json = Buffer.from(JSON.stringify({ name: "packed" }));
			for (const [encoding, body] of [["gzip", zlib.gzipSync(json)], ["deflate", zlib.deflateSync(json)], ["br", zlib.brotliCompressSync(json)]] as const) {
				const res = await request<{ name: string }>(`${gw.url}${V1}/probe/echo`, {
					method: "POST",
					headers: { "Content-Type": "application/json", "Content-Encoding": encoding },
					body
				});
				expect(res.status).toBe(200);
				expect(res.body.name).toBe("packed");
			}
		});

		it("an unknown Content-Encoding → 415; a decompression bomb past the limit → 413", async () => {
			const unknown = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", headers: { "Content-Type": "application/json", "Content-Encoding": "compress" }, body: "{}" });
			expectError(unknown, 415, "UNSUPPORTED_MEDIA_TYPE");
			const bomb = zlib.gzipSync(Buffer.from(`{"name":"${"a".repeat(1_000_000)}"}`));
			const res = await request(`${gw.url}${V1}/probe/echo`, { method: "POST", headers: { "Content-Type": "application/json", "Content-Encoding": "gzip" }, body: bomb });
			expectError(res, 413, "PAYLOAD_TOO_LARGE");
		});
	});

	describe("multipart that cannot be parsed → 400", () => {
		const part = (boundary: string, body: string) =>
			`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${body}`;
		const upload = (contentType: string, body: string) =>
			request(`${gw.url}${V1}/probe/upload`, { method: "POST", headers: { "Content-Type": contentType }, body });

		it("a well-formed upload is read", async () => {
			const res = await upload("multipart/form-data; boundary=XX", `${part("XX", "hello")}\r\n--XX--\r\n`);
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ bytes: 5 });
		});

		it.each([
			["truncated", "multipart/form-data; boundary=XX", part("XX", "abc")],
			["boundary mismatch", "multipart/form-data; boundary=XX", `${part("YY", "abc")}\r\n--YY--\r\n`],
			["overlong boundary", `multipart/form-data; boundary=${"b".repeat(300)}`, `${part("b".repeat(300), "abc")}\r\n--${"b".repeat(300)}--\r\n`],
			["no boundary", "multipart/form-data", part("XX", "abc")],
			["an empty body", "multipart/form-data; boundary=XX", ""]
		])("%s", async (_label, contentType, body) => {
			const res = await upload(contentType, body);
			expectError(res, 400, "BAD_REQUEST");
		});

		it("not multipart at all → 415", async () => {
			expectError(await upload("application/json", "{}"), 415, "UNSUPPORTED_MEDIA_TYPE");
		});
	});

	describe("requests Node's HTTP parser refuses → 400 in the error shape", () => {
		/** Sends raw bytes on a fresh connection and reads the whole answer. */
		function raw(bytes: Buffer): Promise<{ status: number; headers: string; body: string }> {
			const { port } = new URL(gw.url);
			return new Promise((resolve, reject) => {
				const socket = net.connect(Number(port), "127.0.0.1", () => socket.end(bytes));
				let answer = "";
				socket.setEncoding("latin1");
				socket.on("data", chunk => (answer += chunk));
				socket.on("error", reject);
				socket.on("close", () => {
					const [head, body = ""] = answer.split("\r\n\r\n");
					resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head, body });
				});
			});
		}

		it.each([
			["bytes a URL cannot hold", Buffer.concat([Buffer.from("GET /api/v1/probe/"), Buffer.from([0xff, 0xe9]), Buffer.from(" HTTP/1.1\r\nHost: x\r\n\r\n")])],
			["headers past 16 kB", Buffer.from(`GET /api/v1/probe/perm/public HTTP/1.1\r\nHost: x\r\nX-Pad: ${"a".repeat(20_000)}\r\n\r\n`)],
			["a path past 16 kB", Buffer.from(`GET /api/v1/probe/${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)],
			["garbage instead of a request line", Buffer.from("\u0001\u0002 nonsense\r\n\r\n")]
		])("%s", async (_label, bytes) => {
			const res = await raw(bytes);
			expect(res.status).toBe(400);
			const body = JSON.parse(res.body) as ErrorBody;
			expect(body.error).toMatchObject({ type: "BAD_REQUEST", code: 400, data: {} });
			expect(res.headers).toContain(`X-Request-Id: ${body.error.requestId}`);
			expect((await request(`${gw.url}/health/live`)).status).toBe(200);
		});
	});

	describe("OPTIONS never runs an action", () => {
		it("a preflight from an allowed origin gets the CORS headers, not the action", async () => {
			const before = probeCalls.touch;
			const res = await request(`${gw.url}${V1}/probe/touch`, {
				method: "OPTIONS",
				headers: { Origin: "https://cms.example.com", "Access-Control-Request-Method": "DELETE" }
			});
			expect(res.status).toBe(204);
			expect(res.headers.get("access-control-allow-methods")).toContain("DELETE");
			expect(probeCalls.touch).toBe(before);
		});

		it("with CORS off, a preflight or a plain OPTIONS with a body answers 204 and runs nothing", async () => {
			const lonely = await startGateway([StubAuthService, ProbeService]);
			try {
				const before = probeCalls.touch;
				const preflight = await request(`${lonely.url}${V1}/probe/touch`, { method: "OPTIONS", headers: { "Access-Control-Request-Method": "DELETE" } });
				expect(preflight.status).toBe(204);
				expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
				expect(preflight.headers.get("allow")).toContain("DELETE");
				const withBody = await request(`${lonely.url}${V1}/probe/echo`, {
					method: "OPTIONS",
					headers: { "Access-Control-Request-Method": "POST", "Content-Type": "application/json" },
					body: JSON.stringify({ name: "leak" })
				});
				expect(withBody.status).toBe(204);
				expect(withBody.text).toBe("");
				expect(probeCalls.touch).toBe(before);
				// The action itself still works with its own method.
				expect((await request(`${lonely.url}${V1}/probe/touch`, { method: "DELETE" })).status).toBe(200);
				expect(probeCalls.touch).toBe(before + 1);
			} finally {
				await lonely.stop();
			}
		});
	});

	describe("HEAD is the GET route without a body", () => {
		it("answers with the GET route's status and headers", async () => {
			const res = await fetch(`${gw.url}${V1}/probe/perm/public`, { method: "HEAD" });
			expect(res.status).toBe(200);
			expect(res.headers.get("content-type")).toContain("application/json");
			expect(await res.text()).toBe("");
		});

		it("follows the GET route's permission", async () => {
			expect((await fetch(`${gw.url}${V1}/probe/perm/tenant.read`, { method: "HEAD" })).status).toBe(401);
		});

		it("does not read a streamed body", async () => {
			const reads = probeCalls.streamReads;
			const destroyed = probeCalls.streamDestroyed;
			const res = await fetch(`${gw.url}${V1}/probe/stream`, { method: "HEAD" });
			expect(res.status).toBe(200);
			expect(res.headers.get("content-length")).toBe(String(64 * 16_384));
			expect(await res.text()).toBe("");
			expect(probeCalls.streamReads - reads).toBeLessThan(5);
			expect(probeCalls.streamDestroyed).toBe(destroyed + 1);
		});
	});

	describe("authentication", () => {
		it("no token on a guarded route → 401 with WWW-Authenticate", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/tenant.read`);
			expectError(res, 401, "UNAUTHORIZED");
			expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
		});

		it("an unknown token → 401", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/tenant.read`, { headers: { Authorization: "Bearer nope" } });
			expectError(res, 401, "UNAUTHORIZED");
		});

		it("a malformed Authorization header → 401", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/tenant.read`, { headers: { Authorization: "Basic abc" } });
			expectError(res, 401, "UNAUTHORIZED");
		});

		it("the principal reaches the action in ctx.meta.auth", async () => {
			const res = await request<{ auth: unknown }>(`${gw.url}${V1}/probe/perm/tenant.read`, {
				headers: { Authorization: `Bearer ${tokenOf("viewer")}` }
			});
			expect(res.status).toBe(200);
			expect(res.body.auth).toEqual(CALLERS.viewer);
		});

		it("a public route ignores a stale token", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/public`, { headers: { Authorization: "Bearer expired" } });
			expect(res.status).toBe(200);
		});
	});

	describe("RBAC: every permission × every caller follows the table", () => {
		const permissions = Object.keys(PERMISSIONS) as Permission[];
		const cases = permissions.flatMap(permission => Object.keys(CALLERS).map(caller => [permission, caller] as const));

		it.each(cases)("%s as %s", async (permission, caller) => {
			const headers: Record<string, string> = caller === "anonymous" ? {} : { Authorization: `Bearer ${tokenOf(caller)}` };
			const res = await request(`${gw.url}${V1}/probe/perm/${permission}`, { headers });
			const expected = { allow: 200, unauthenticated: 401, forbidden: 403 }[decide(permission, CALLERS[caller])];
			expect(res.status).toBe(expected);
		});

		it("the table itself: device and user tokens never cross, roles are ordered", () => {
			expect(decide("device", CALLERS.owner)).toBe("unauthenticated");
			expect(decide("tenant.read", CALLERS.device)).toBe("unauthenticated");
			expect(decide("content.write", CALLERS.viewer)).toBe("forbidden");
			expect(decide("content.write", CALLERS.editor)).toBe("allow");
			expect(decide("displays.manage", CALLERS.editor)).toBe("forbidden");
			expect(decide("displays.manage", CALLERS.admin)).toBe("allow");
			expect(decide("billing.manage", CALLERS.admin)).toBe("forbidden");
			expect(decide("apiKeys.manage", CALLERS.apiKeyAdmin)).toBe("forbidden");
			expect(decide("tenant.owner", CALLERS.owner)).toBe("allow");
			expect(decide("public", null)).toBe("allow");
		});
	});

	describe("request ids", () => {
		it("echoes a well-formed X-Request-Id", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/public`, { headers: { "X-Request-Id": "client-req.42" } });
			expect(res.headers.get("x-request-id")).toBe("client-req.42");
		});

		it("replaces an unsafe one and generates one when absent", async () => {
			const unsafe = await request(`${gw.url}${V1}/probe/perm/public`, { headers: { "X-Request-Id": "a b<script>" } });
			expect(unsafe.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
			const none = await request(`${gw.url}/health/live`);
			expect(none.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
		});

		it("is on every log line written while serving the request", async () => {
			const logged = await withCapturedLogs(async () => {
				const traced = await startGateway(
					[LogProbeService],
					{ LOG_LEVEL: "info" },
					{ logger: { type: "Console", options: { colors: false, formatter: logFormatter("json") } }, logLevel: "info" }
				);
				try {
					const res = await request(`${traced.url}${V1}/logprobe`, { headers: { "X-Request-Id": "trace-me-123" } });
					expect(res.status).toBe(200);
				} finally {
					await traced.stop();
				}
			});
			const lines = logged.map(line => JSON.parse(line) as { msg: string; requestId?: string });
			const serving = lines.filter(l => /^(=>|<=) .*\/api\/v1\/logprobe/.test(l.msg) || l.msg === "handling hello");
			expect(serving.length).toBe(3);
			for (const line of serving) expect(line.requestId).toBe("trace-me-123");
		});
	});

	describe("rate limits", () => {
		let limited: TestGateway;
		beforeAll(async () => {
			limited = await startGateway([StubAuthService, ProbeService], { RATE_LIMIT_PER_MINUTE: "3" });
		});
		afterAll(() => limited.stop());

		it("answers 429 with Retry-After past the limit, per caller", async () => {
			const viewer = { Authorization: `Bearer ${tokenOf("viewer")}` };
			for (let i = 0; i < 3; i++) {
				const ok = await request(`${limited.url}${V1}/probe/perm/tenant.read`, { headers: viewer });
				expect(ok.status).toBe(200);
				expect(ok.headers.get("ratelimit-remaining")).toBe(String(2 - i));
			}
			const over = await request(`${limited.url}${V1}/probe/perm/tenant.read`, { headers: viewer });
			expectError(over, 429, "RATE_LIMITED");
			expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
			// Another caller has its own budget.
			const admin = await request(`${limited.url}${V1}/probe/perm/tenant.read`, { headers: { Authorization: `Bearer ${tokenOf("admin")}` } });
			expect(admin.status).toBe(200);
		});
	});

	describe("CORS", () => {
		it("allows a listed origin", async () => {
			const res = await request(`${gw.url}${V1}/probe/echo`, {
				method: "OPTIONS",
				headers: { Origin: "https://cms.example.com", "Access-Control-Request-Method": "POST" }
			});
			expect(res.status).toBe(204);
			expect(res.headers.get("access-control-allow-origin")).toBe("https://cms.example.com");
		});

		it("refuses any other origin in the error shape", async () => {
			const res = await request(`${gw.url}${V1}/probe/perm/public`, { headers: { Origin: "https://evil.example.net" } });
			expectError(res, 403, "FORBIDDEN");
			expect(res.headers.get("access-control-allow-origin")).toBeNull();
		});
	});

	describe("when the auth service is down", () => {
		let lonely: TestGateway;
		beforeAll(async () => {
			lonely = await startGateway([ProbeService]);
		});
		afterAll(() => lonely.stop());

		it("a guarded route with a token answers 503, a public one still works", async () => {
			const res = await request(`${lonely.url}${V1}/probe/perm/tenant.read`, { headers: { Authorization: "Bearer x" } });
			expectError(res, 503, "SERVICE_UNAVAILABLE");
			expect((await request(`${lonely.url}${V1}/probe/perm/public`)).status).toBe(200);
		});

		it("ready is 503 while the gateway sees no service behind it, and says which it misses", async () => {
			const res = await request<{ status: string; checks: Record<string, { status: string; error?: string }>; services: Record<string, string> }>(`${lonely.url}/health/ready`);
			expect(res.status).toBe(503);
			expect(res.body.checks.services).toMatchObject({ status: "fail", error: expect.stringContaining("sees no service behind the gateway") });
			expect(res.body.checks.broker.status).toBe("ok");
			expect(res.body.services).toMatchObject({ api: "local", auth: "missing", devices: "missing" });
		});
	});

	describe("the action's declared successStatus", () => {
		it("is the answer's status unless the handler chose one", async () => {
			const local = await startGateway([StubAuthService, StatusProbeService]);
			try {
				const created = await request(`${local.url}${V1}/statusprobe/created`, { method: "POST", json: {} });
				expect(created.status).toBe(201);
				expect(created.body).toEqual({ ok: true });
				expect((await request(`${local.url}${V1}/statusprobe/accepted`, { method: "POST", json: {} })).status).toBe(202);
				expect((await request(`${local.url}${V1}/statusprobe/conditional`)).status).toBe(200);
			} finally {
				await local.stop();
			}
		});

		/** A gateway with StatusProbeService on another node (Fake transporter), once its routes are in. */
		async function remoteProbe(): Promise<{ front: TestGateway; back: ServiceBroker; url: string; first: Awaited<ReturnType<typeof request>> }> {
			const front = await startGateway([StubAuthService], {}, { transporter: "Fake", nodeID: `gateway-${++remoteNodes}` });
			const back = new ServiceBroker(
				brokerOptions(front.config, { logger: false, skipProcessEventRegistration: true, transporter: "Fake", nodeID: `service-${remoteNodes}` })
			);
			back.createService(StatusProbeService);
			await back.start();
			await front.broker.waitForServices("statusprobe", 10_000);
			const url = `${front.url}${V1}/statusprobe/accepted`;
			// moleculer-web adds the remote routes when it regenerates its aliases (debounced).
			let first = await request(url, { method: "POST", json: {} });
			for (let tries = 0; first.status === 404 && tries < 50; tries++) {
				await new Promise(resolve => setTimeout(resolve, 100));
				first = await request(url, { method: "POST", json: {} });
			}
			return { front, back, url, first };
		}
		let remoteNodes = 0;

		it("holds for an action on another node: its definition crossed the transporter", async () => {
			const { front, back, first } = await remoteProbe();
			try {
				expect(front.broker.registry.getActionList({ onlyLocal: false }).find(a => a.name === "statusprobe.accepted")?.hasLocal).toBe(false);
				expect(first.status).toBe(202);
				expect(first.body).toEqual({ queued: true });
			} finally {
				await back.stop();
				await front.stop();
			}
		});

		it("a route whose service went away answers 503 (retry later), not 404; an unknown route is still 404", async () => {
			const { front, back, url, first } = await remoteProbe();
			try {
				expect(first.status).toBe(202);
				await back.stop();
				// The gateway forgets the node, then its aliases (debounced): the route stays known.
				for (let tries = 0; tries < 100 && front.broker.registry.getServiceList({ onlyAvailable: true }).some(s => s.name === "statusprobe"); tries++) {
					await new Promise(resolve => setTimeout(resolve, 50));
				}
				await new Promise(resolve => setTimeout(resolve, 1_000));
				expectError(await request(url, { method: "POST", json: {} }), 503, "SERVICE_UNAVAILABLE");
				expectError(await request(`${front.url}${V1}/statusprobe/never-existed`, { method: "POST", json: {} }), 404, "NOT_FOUND");
			} finally {
				await back.stop();
				await front.stop();
			}
		});
	});

	describe("operations endpoints", () => {
		it("an async endpoint that fails answers in the error shape (it used to leave the client without an answer)", async () => {
			for (const code of ["__proto__", "%00", "%E2%9C%93%F0%9F%98%80", "x".repeat(5000)]) {
				expectError(await request(`${gw.url}/player/qr.svg?code=${code}`, { signal: AbortSignal.timeout(5_000) }), 422, "VALIDATION_ERROR");
			}
			const svg = await request(`${gw.url}/player/qr.svg?code=ACD479`);
			expect([svg.status, svg.headers.get("content-type")]).toEqual([200, "image/svg+xml"]);
		});

				it("/health/live answers 200", async () => {
			const res = await request(`${gw.url}/health/live`);
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ status: "ok" });
		});

		it("/health/ready answers 503 naming the failing dependency", async () => {
			const res = await request<{ status: string; checks: Record<string, { status: string }> }>(`${gw.url}/health/ready`);
			expect(res.status).toBe(503);
			expect(res.body.status).toBe("fail");
			expect(res.body.checks.clickhouse.status).toBe("fail");
			expect(res.body.checks.broker.status).toBe("ok");
		});

		it("/metrics has Moleculer's request metrics in Prometheus text", async () => {
			await request(`${gw.url}${V1}/probe/perm/public`);
			const res = await request(`${gw.url}/metrics`);
			expect(res.status).toBe(200);
			expect(res.headers.get("content-type")).toContain("text/plain");
			expect(res.text).toMatch(/^# TYPE moleculer_request_total counter$/m);
			expect(res.text).toMatch(/moleculer_request_total\{.*action="probe\.perm_public".*\} \d+/);
		});

		it("/api/openapi.json is valid OpenAPI 3.1 covering every route", async () => {
			const res = await request<{ openapi: string; paths: Record<string, Record<string, { "x-permission"?: string }>> }>(
				`${gw.url}/api/openapi.json`
			);
			expect(res.status).toBe(200);
			expect(res.body.openapi).toBe("3.1.0");
			const validation = await validateOpenApi(res.body);
			expect(validation.errors).toBeUndefined();
			expect(validation.valid).toBe(true);
			const paths = res.body.paths;
			expect(paths["/api/v1/probe/echo"].post).toBeDefined();
			expect(paths["/api/v1/probe/perm/content.write"].get["x-permission"]).toBe("content.write");
			expect(paths["/api/v1/probe/perm/public"].get["x-permission"]).toBeUndefined();
			expect(paths["/health/ready"].get).toBeDefined();
			expect(Object.keys(paths).some(p => p.includes("list-aliases"))).toBe(false);
		});

		it("/api/docs renders the spec with local assets only", async () => {
			const page = await request(`${gw.url}/api/docs`);
			expect(page.status).toBe(200);
			expect(page.headers.get("content-type")).toContain("text/html");
			expect(page.headers.get("content-security-policy")).toContain("default-src");
			expect(page.text).toContain("/api/openapi.json");
			expect(page.text).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)[a-z]/i);
			const bundle = await request(`${gw.url}/api/docs/assets/swagger-ui-bundle.js`);
			expect(bundle.status).toBe(200);
			expect(bundle.headers.get("content-type")).toContain("javascript");
			expectError(await request(`${gw.url}/api/docs/assets/..%2Fpackage.json`), 404, "NOT_FOUND");
		});
	});
});
