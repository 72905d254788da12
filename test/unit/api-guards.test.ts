/**
 * The gateway's guards (services/api/guards.ts) on fake requests: bearer tokens, client ip behind
 * proxies, the headers actions see, the permission of a route, the RBAC answer as an error, the
 * rate-limit key and headers, upload checks, HEAD and the declared success status.
 */
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { PassThrough, Readable } from "node:stream";
import type { Context } from "moleculer";
import { AppError } from "../../shared/errors";
import type { Principal } from "../../shared/rbac";
import type { RequestMeta } from "../../shared/request";
import {
	afterCall,
	anonymousMeta,
	assertAllowed,
	bearerToken,
	clientIp,
	endBodyOnAbort,
	forwardedHeaders,
	needsPrincipal,
	rateLimitHeaders,
	rateLimitKey,
	requireMultipartForUploads,
	resolvePrincipal,
	routeName,
	routePermission,
	servedAsGet
} from "../../services/api/guards";
import type { GatewayRequest } from "../../services/api/moleculer-web";

const USER: Principal = { kind: "user", tenantId: "t1", userId: "u1", role: "editor" };
const KEY: Principal = { kind: "apiKey", tenantId: "t1", apiKeyId: "k1", role: "admin" };
const DEVICE: Principal = { kind: "device", tenantId: "t1", displayId: "d1" };

/** A request with these headers from this socket address; the gateway's fields as given. */
function fakeRequest(headers: Record<string, string> = {}, extra: Partial<GatewayRequest> = {}, remoteAddress = "10.0.0.9"): GatewayRequest {
	const meta: RequestMeta = { auth: null, ip: "", userAgent: "", requestId: "" };
	return Object.assign(new PassThrough(), {
		method: "GET",
		url: "/api/v1/x",
		headers,
		socket: { remoteAddress },
		$ctx: { meta },
		...extra
	}) as unknown as GatewayRequest;
}

function errorOf(fn: () => unknown): AppError {
	try {
		fn();
	} catch (err) {
		if (err instanceof AppError) return err;
		throw err;
	}
	throw new Error("did not throw");
}

describe("who is calling", () => {
	it("bearerToken: none, well-formed, malformed (401)", () => {
		expect(bearerToken(fakeRequest())).toBeNull();
		expect(bearerToken(fakeRequest({ authorization: "Bearer abc.def" }))).toBe("abc.def");
		expect(bearerToken(fakeRequest({ authorization: "bearer   abc  " }))).toBe("abc");
		expect(errorOf(() => bearerToken(fakeRequest({ authorization: "Basic dXNlcg==" }))).code).toBe(401);
		expect(errorOf(() => bearerToken(fakeRequest({ authorization: "Bearer a b" }))).code).toBe(401);
		expect(errorOf(() => bearerToken(fakeRequest({ authorization: `Bearer ${"x".repeat(4097)}` }))).code).toBe(401);
	});

	it("clientIp: the socket's without trusted proxies, else the address the outermost trusted proxy saw", () => {
		const req = fakeRequest({ "x-forwarded-for": "1.1.1.1, 2.2.2.2, 3.3.3.3" });
		expect(clientIp(req, 0)).toBe("10.0.0.9");
		expect(clientIp(req, 1)).toBe("3.3.3.3");
		expect(clientIp(req, 2)).toBe("2.2.2.2");
		expect(clientIp(req, 3)).toBe("1.1.1.1");
		// Fewer entries than trusted hops: nothing trustworthy in the header.
		expect(clientIp(req, 4)).toBe("10.0.0.9");
		expect(clientIp({ headers: {}, socket: {} as Socket }, 0)).toBe("unknown");
	});

	it("forwardedHeaders: only the listed ones, and not oversized", () => {
		const req = fakeRequest({ "x-pairing-secret": "s", "if-none-match": "\"e\"", cookie: "c", authorization: "Bearer t" });
		expect(forwardedHeaders(req)).toEqual({ "x-pairing-secret": "s", "if-none-match": "\"e\"" });
		expect(forwardedHeaders(fakeRequest({ "if-none-match": "x".repeat(1025) }))).toEqual({});
	});

	it("anonymousMeta: what every call starts with", () => {
		const req = fakeRequest({ "user-agent": "a".repeat(300), "if-none-match": "\"e\"" });
		expect(anonymousMeta(req, "req-1", 0)).toEqual({ auth: null, ip: "10.0.0.9", userAgent: "a".repeat(256), requestId: "req-1", headers: { "if-none-match": "\"e\"" } });
	});

	it("resolvePrincipal: asks auth.resolve; an unreachable auth service is 503", async () => {
		const calls: unknown[] = [];
		const via = { call: async (name: string, params: unknown) => (calls.push([name, params]), USER) } as unknown as Context;
		await expect(resolvePrincipal(via, "tok")).resolves.toEqual(USER);
		expect(calls).toEqual([["auth.resolve", { token: "tok" }]]);

		const missing = Object.assign(new Error("no"), { name: "ServiceNotFoundError" });
		const down = { call: async () => Promise.reject(missing) } as unknown as Context;
		await expect(resolvePrincipal(down, "tok")).rejects.toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });

		const invalid = new AppError("UNAUTHORIZED", "Invalid token");
		const refusing = { call: async () => Promise.reject(invalid) } as unknown as Context;
		await expect(resolvePrincipal(refusing, "tok")).rejects.toBe(invalid);
	});
});

describe("may they call this route", () => {
	it("routePermission: the alias's own, else the action's", () => {
		expect(routePermission({ $alias: { permission: "device" }, $action: { permission: "public" } })).toBe("device");
		expect(routePermission({ $alias: {}, $action: { permission: "tenant.read" } })).toBe("tenant.read");
		expect(routePermission({})).toBeUndefined();
	});

	it("routeName: names the action, or the alias", () => {
		expect(routeName({ $action: { name: "probe.x" } })).toBe("Action 'probe.x'");
		expect(routeName({ $alias: { method: "GET", fullPath: "/api/v1/y" } })).toBe("Alias 'GET /api/v1/y'");
	});

	it("needsPrincipal: a token on a guarded route only", () => {
		expect(needsPrincipal("tenant.read", "tok")).toBe(true);
		expect(needsPrincipal("public", "tok")).toBe(false);
		expect(needsPrincipal("tenant.read", null)).toBe(false);
		expect(needsPrincipal("no.such.permission", "tok")).toBe(false);
		expect(needsPrincipal(undefined, "tok")).toBe(false);
	});

	it("assertAllowed: the RBAC table's answer, as 401 or 403", () => {
		expect(() => assertAllowed("public", null)).not.toThrow();
		expect(() => assertAllowed("content.write", USER)).not.toThrow();
		const anonymous = errorOf(() => assertAllowed("tenant.read", null));
		expect([anonymous.code, anonymous.message]).toEqual([401, "Authentication required"]);
		const otherFamily = errorOf(() => assertAllowed("tenant.read", DEVICE));
		expect([otherFamily.code, otherFamily.message]).toEqual([401, "This token cannot be used here"]);
		expect(errorOf(() => assertAllowed("members.manage", USER)).code).toBe(403);
		expect(errorOf(() => assertAllowed("apiKeys.manage", KEY)).code).toBe(403);
	});

	it("rateLimitKey: per principal, per address when anonymous", () => {
		expect(rateLimitKey(USER, "1.2.3.4")).toBe("user:t1:u1");
		expect(rateLimitKey(KEY, "1.2.3.4")).toBe("apiKey:t1:k1");
		expect(rateLimitKey(DEVICE, "1.2.3.4")).toBe("device:t1:d1");
		expect(rateLimitKey(null, "1.2.3.4")).toBe("ip:1.2.3.4");
	});

	it("rateLimitHeaders", () => {
		expect(rateLimitHeaders({ allowed: true, limit: 100, remaining: 42, resetSec: 17 })).toEqual({
			"RateLimit-Limit": "100",
			"RateLimit-Remaining": "42",
			"RateLimit-Reset": "17"
		});
	});
});

describe("what the route accepts and answers", () => {
	it("requireMultipartForUploads: only upload aliases, and only well-formed multipart", () => {
		expect(() => requireMultipartForUploads(null, null, fakeRequest({ "content-type": "application/json" }))).not.toThrow();
		const upload = (type: string) => fakeRequest({ "content-type": type }, { $alias: { type: "multipart" } });
		expect(() => requireMultipartForUploads(null, null, upload("multipart/form-data; boundary=abc"))).not.toThrow();
		expect(errorOf(() => requireMultipartForUploads(null, null, upload("application/json"))).code).toBe(415);
		expect(errorOf(() => requireMultipartForUploads(null, null, upload("multipart/form-data"))).code).toBe(400);
	});

	it("endBodyOnAbort: a request cut short ends what it was piped into", async () => {
		const req = fakeRequest();
		endBodyOnAbort(req);
		const sink = new PassThrough();
		req.pipe(sink);
		req.destroy();
		await new Promise(resolve => sink.once("finish", resolve));
		expect(sink.writableEnded).toBe(true);

		// Piped after the client left: ended as well.
		const gone = fakeRequest();
		endBodyOnAbort(gone);
		gone.destroy();
		const late = new PassThrough();
		gone.pipe(late);
		await new Promise(resolve => late.once("finish", resolve));
	});

	it("endBodyOnAbort: a body read to its end is left alone", async () => {
		const req = fakeRequest();
		endBodyOnAbort(req);
		const sink = new PassThrough();
		req.pipe(sink);
		(req as unknown as PassThrough).end("body");
		expect((await sink.toArray()).join("")).toBe("body");
	});

	it("servedAsGet: HEAD runs the GET route, marked", () => {
		const head = fakeRequest({}, { method: "HEAD" });
		servedAsGet(head);
		expect([head.method, head.$head]).toEqual(["GET", true]);
		const post = fakeRequest({}, { method: "POST" });
		servedAsGet(post);
		expect([post.method, post.$head]).toEqual(["POST", undefined]);
	});

	it("afterCall: the declared status unless the handler chose one", () => {
		const res = {} as ServerResponse;
		const declared = fakeRequest({}, { $action: { name: "x.create", successStatus: 201 } });
		expect(afterCall(null, null, declared, res, { id: 1 })).toEqual({ id: 1 });
		expect(declared.$ctx.meta.$statusCode).toBe(201);

		const chosen = fakeRequest({}, { $action: { name: "x.manifest", successStatus: 201 } });
		chosen.$ctx.meta.$statusCode = 304;
		afterCall(null, null, chosen, res, null);
		expect(chosen.$ctx.meta.$statusCode).toBe(304);

		const plain = fakeRequest({}, { $action: { name: "x.get" } });
		afterCall(null, null, plain, res, {});
		expect(plain.$ctx.meta.$statusCode).toBeUndefined();

		// An action on another node: its definition is the one its INFO packet carried, as JSON.
		const remote = fakeRequest({}, { $action: JSON.parse(JSON.stringify({ name: "x.queue", successStatus: 202, permission: "public" })) });
		afterCall(null, null, remote, res, {});
		expect(remote.$ctx.meta.$statusCode).toBe(202);
	});

	it("afterCall: HEAD drops a streamed body unread, keeps other data for Node to drop", () => {
		const headers = new Map<string, string>();
		const res = { hasHeader: (name: string) => headers.has(name), setHeader: (name: string, value: string) => headers.set(name, value) } as unknown as ServerResponse;
		const head = fakeRequest({}, { $head: true, $action: { name: "x.file" } });
		head.$ctx.meta.$responseType = "image/webp";
		const body = Readable.from(["bytes"]);
		expect(afterCall(null, null, head, res, body)).toBeNull();
		expect(body.destroyed).toBe(true);
		expect(headers.get("Content-Type")).toBe("image/webp");
		expect(afterCall(null, null, fakeRequest({}, { $head: true }), res, { a: 1 })).toEqual({ a: 1 });
	});
});
