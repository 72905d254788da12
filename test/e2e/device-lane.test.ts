/**
 * The device lane (services/api/device-lane.ts): the screens' hot routes skip moleculer-web's
 * pipeline and the per-request call to auth, and must answer exactly as that pipeline would.
 *
 * - It is taken: heartbeats and manifests go as group calls (`devices.heartbeatGroup`,
 *   `scheduling.deviceManifestGroup`), none as the actions themselves, no `api.rest` and one
 *   `auth.resolve` (the broker's own request counters, read from /metrics).
 * - It answers the same: a differential fuzz sends every case to the lane (`/device/heartbeat`)
 *   and to moleculer-web (`/device/heartbeat/`, which the lane does not match): same status, same
 *   error type, same fields named. Likewise the manifest with its ETag, 304 and HEAD.
 * - A remembered token is no excuse: a re-registered screen's old token, a deleted display's token
 *   and a deleted tenant's are refused at the very next request.
 * - The live stream is held by the gateway without a moleculer-web request pending for its life.
 * - The same rate limit (one budget with the other device routes) and CORS as every route.
 */
import http from "node:http";
import fc from "fast-check";
import { bearer, newAccount, register, someClient, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { closeStreams, connect, isEvent } from "../helpers/sse";

interface Screen {
	displayId: string;
	deviceToken: string;
}

/** The sum of a counter over the series whose labels include `label`, from /metrics. */
async function countOf(p: Platform, metric: string, label = ""): Promise<number> {
	const text = (await request(`${p.url}/metrics`)).text;
	let sum = 0;
	for (const line of text.split("\n")) {
		if ((line.startsWith(`${metric}{`) || line.startsWith(`${metric} `)) && line.includes(label)) sum += Number(line.split(" ").pop());
	}
	return sum;
}

/** The broker's request counter for an action. */
const callsOf = (p: Platform, action: string) => countOf(p, "moleculer_request_total", `action="${action}"`);

interface Answer {
	status: number;
	headers: http.IncomingHttpHeaders;
	text: string;
}

/** One request with exactly these bytes and headers (fetch would refuse or fix some of them). */
function raw(p: Platform, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
	const url = new URL(p.url);
	return new Promise((resolve, reject) => {
		const req = http.request({ host: url.hostname, port: url.port, method, path, headers: body ? { ...headers, "Content-Length": String(body.length) } : headers, agent: false }, res => {
			const chunks: Buffer[] = [];
			res.on("data", (c: Buffer) => chunks.push(c));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
			res.on("error", reject);
		});
		req.on("error", reject);
		req.end(body);
	});
}

/** What must agree between the lane and moleculer-web: status, error type, the fields a 422 names, the body's keys. */
function shape(a: Answer): unknown {
	let body: unknown = null;
	try {
		body = JSON.parse(a.text);
	} catch {
		body = a.text ? "(not json)" : "";
	}
	const error = (body as Partial<ErrorBody> | null)?.error;
	if (error) {
		const fields = Array.isArray(error.data) ? (error.data as Array<{ field?: string }>).map(d => d.field).sort() : null;
		return { status: a.status, type: error.type, fields, contentType: a.headers["content-type"] };
	}
	return { status: a.status, keys: body && typeof body === "object" ? Object.keys(body).sort() : body, contentType: a.headers["content-type"] };
}

describe("the device lane", () => {
	let p: Platform;
	let owner: Session;
	let key: string;
	let hardware = 0;

	const registerScreen = async (hardwareId = `hw-lane-${++hardware}`, provisioningKey = key): Promise<Screen> => {
		const res = await request<Screen>(p.api("/device/register"), { method: "POST", headers: someClient(), json: { provisioningKey, hardwareId } });
		expect(res.status).toBe(201);
		return res.body;
	};
	const heartbeat = (token: string, json: unknown = {}) => request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json });

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "1000" });
		owner = await register(p, newAccount("lane"));
		key = (await request<{ key: string }>(p.api("/provisioning-keys"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Lane" } })).body.key;
	}, 60_000);
	afterAll(() => p?.stop());

	it("serves heartbeats and manifests in group calls: no api.rest, auth asked once per token", async () => {
		const screen = await registerScreen();
		const before = {
			rest: await callsOf(p, "api.rest"),
			resolve: await callsOf(p, "auth.resolve"),
			heartbeat: await callsOf(p, "devices.heartbeat"),
			grouped: await callsOf(p, "devices.heartbeatGroup"),
			manifest: await callsOf(p, "scheduling.deviceManifest"),
			manifestGrouped: await callsOf(p, "scheduling.deviceManifestGroup"),
			accepted: await countOf(p, "marquee_heartbeats_total")
		};
		// One at a time: each heartbeat is a group of one.
		for (let i = 0; i < 20; i++) expect((await heartbeat(screen.deviceToken)).status).toBe(200);
		// Together: they share group calls (how many depends on how they arrive).
		const together = await Promise.all(Array.from({ length: 30 }, () => heartbeat(screen.deviceToken)));
		expect(together.map(r => r.status)).toEqual(Array(30).fill(200));
		for (let i = 0; i < 10; i++) expect((await request(p.api("/device/manifest"), { headers: bearer(screen.deviceToken) })).status).toBe(200);
		// GET /metrics itself is served by moleculer-web: one api.rest per read, seven reads.
		expect((await callsOf(p, "api.rest")) - before.rest).toBe(7);
		expect((await callsOf(p, "auth.resolve")) - before.resolve).toBe(1);
		expect((await callsOf(p, "devices.heartbeat")) - before.heartbeat).toBe(0);
		const grouped = (await callsOf(p, "devices.heartbeatGroup")) - before.grouped;
		expect(grouped).toBeGreaterThanOrEqual(21);
		expect(grouped).toBeLessThanOrEqual(50);
		expect((await countOf(p, "marquee_heartbeats_total")) - before.accepted).toBe(50);
		// One at a time: each manifest request is a group of one.
		expect((await callsOf(p, "scheduling.deviceManifest")) - before.manifest).toBe(0);
		expect((await callsOf(p, "scheduling.deviceManifestGroup")) - before.manifestGrouped).toBe(10);
	});

	it("answers like every other route: request id, rate-limit headers, JSON, the declared status", async () => {
		const screen = await registerScreen();
		const res = await raw(p, "POST", "/api/v1/device/heartbeat", { Authorization: `Bearer ${screen.deviceToken}`, "Content-Type": "application/json", "X-Request-Id": "lane-check-1" }, Buffer.from("{}"));
		expect(res.status).toBe(200);
		expect(res.headers["x-request-id"]).toBe("lane-check-1");
		expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
		expect(Number(res.headers["ratelimit-limit"])).toBe(100_000);
		expect(Number(res.headers["ratelimit-remaining"])).toBeGreaterThan(0);
		expect(Object.keys(JSON.parse(res.text) as object).sort()).toEqual(["commands", "heartbeatIntervalSec", "manifestEtag", "power", "serverTime"]);

		const anonymous = await raw(p, "POST", "/api/v1/device/heartbeat", { "Content-Type": "application/json" }, Buffer.from("{}"));
		expect(anonymous.status).toBe(401);
		expect(anonymous.headers["www-authenticate"]).toBe('Bearer realm="marquee"');
		expect((JSON.parse(anonymous.text) as ErrorBody).error).toMatchObject({ type: "UNAUTHORIZED", code: 401, requestId: anonymous.headers["x-request-id"] });
		// A person's token is not a screen's.
		expect((await heartbeat(owner.accessToken)).status).toBe(401);
	});

	it("lets a screen's junk body fail only its own heartbeat", async () => {
		const screen = await registerScreen();
		const before = await callsOf(p, "devices.heartbeat");
		const junk = { appVersion: "1.0", junk: "x".repeat(200_000) };
		const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => heartbeat(screen.deviceToken, i === 5 ? junk : { appVersion: "1.0" })));
		expect(answers.map(r => r.status)).toEqual([200, 200, 200, 200, 200, 422, 200, 200, 200, 200, 200, 200]);
		expect((answers[5].body as ErrorBody).error.type).toBe("VALIDATION_ERROR");
		// One process: devices runs beside the gateway, so even the big one went in a group (a
		// gateway of its own sends it alone; test/unit/group-call.test.ts).
		expect((await callsOf(p, "devices.heartbeat")) - before).toBe(0);
	});

	it("gives the manifest its ETag, 304 on a match and HEAD without a body, as before", async () => {
		const screen = await registerScreen();
		const first = await raw(p, "GET", "/api/v1/device/manifest", { Authorization: `Bearer ${screen.deviceToken}` });
		expect(first.status).toBe(200);
		const etag = String(first.headers.etag);
		expect(etag).toMatch(/^"/);
		expect(first.headers["cache-control"]).toBe("no-cache");
		const again = await raw(p, "GET", "/api/v1/device/manifest", { Authorization: `Bearer ${screen.deviceToken}`, "If-None-Match": etag });
		expect(again.status).toBe(304);
		expect(again.text).toBe("");
		expect(again.headers.etag).toBe(etag);
		const head = await raw(p, "HEAD", "/api/v1/device/manifest", { Authorization: `Bearer ${screen.deviceToken}` });
		expect(head.status).toBe(200);
		expect(head.text).toBe("");
		expect(head.headers.etag).toBe(etag);
		const stale = await raw(p, "GET", "/api/v1/device/manifest", { Authorization: `Bearer ${screen.deviceToken}`, "If-None-Match": '"something-else"' });
		expect(stale.status).toBe(200);
		// The manifest action sets headers of its own (ETag, Cache-Control): the rate limit's stay,
		// on the lane and through moleculer-web (the trailing-slash spelling) alike.
		const viaWeb = await raw(p, "GET", "/api/v1/device/manifest/", { Authorization: `Bearer ${screen.deviceToken}`, "If-None-Match": etag });
		expect(viaWeb.status).toBe(304);
		const remaining: number[] = [];
		for (const answer of [first, again, head, stale, viaWeb]) {
			expect(answer.headers["ratelimit-limit"]).toBe("100000");
			remaining.push(Number(answer.headers["ratelimit-remaining"]));
		}
		// One budget, counted down by each request in turn.
		expect(remaining.slice(1).map((r, i) => remaining[i] - r)).toEqual([1, 1, 1, 1]);
	});

	it("refuses a remembered token at the very next request once its screen re-registered, its display was deleted or its tenant", async () => {
		const screen = await registerScreen("hw-lane-reimaged");
		expect((await heartbeat(screen.deviceToken)).status).toBe(200);
		expect((await heartbeat(screen.deviceToken)).status).toBe(200);
		const reimaged = await registerScreen("hw-lane-reimaged");
		expect(reimaged.displayId).toBe(screen.displayId);
		const before = Number((await heartbeat(reimaged.deviceToken)).headers.get("ratelimit-remaining"));
		expect((await heartbeat(screen.deviceToken)).status).toBe(401);
		expect((await request(p.api("/device/manifest"), { headers: bearer(screen.deviceToken) })).status).toBe(401);
		// The old token's refusals (the first while the gateway still remembered it) carry no rate
		// limit and spend none of the screen's budget.
		for (let i = 0; i < 5; i++) {
			const refused = await heartbeat(screen.deviceToken);
			expect([refused.status, refused.headers.get("ratelimit-remaining")]).toEqual([401, null]);
		}
		expect(Number((await heartbeat(reimaged.deviceToken)).headers.get("ratelimit-remaining"))).toBe(before - 1);

		expect((await request(p.api(`/displays/${reimaged.displayId}`), { method: "DELETE", headers: bearer(owner.accessToken) })).status).toBe(204);
		expect((await heartbeat(reimaged.deviceToken)).status).toBe(401);

		const other = await register(p, newAccount("lane-gone"));
		const otherKey = (await request<{ key: string }>(p.api("/provisioning-keys"), { method: "POST", headers: bearer(other.accessToken), json: { name: "Gone" } })).body.key;
		const doomed = await registerScreen("hw-lane-doomed", otherKey);
		expect((await heartbeat(doomed.deviceToken)).status).toBe(200);
		const deleted = await request(p.api("/tenant"), { method: "DELETE", headers: bearer(other.accessToken), json: { confirm: other.tenant.name } });
		expect([202, 204]).toContain(deleted.status);
		expect((await heartbeat(doomed.deviceToken)).status).toBe(401);
	});

	it("holds the live stream itself, answering as moleculer-web's alias does", async () => {
		const screen = await registerScreen();
		const lanes = await callsOf(p, "api.rest");
		const viaLane = await connect(p.url, screen.deviceToken);
		expect(viaLane.status).toBe(200);
		expect(viaLane.headers["content-type"]).toMatch(/^text\/event-stream/);
		expect(Number(viaLane.headers["ratelimit-limit"])).toBe(100_000);
		await viaLane.waitFor(block => block.retry !== undefined);
		// Not one api.rest context is held for it (the /metrics read itself is one).
		expect((await callsOf(p, "api.rest")) - lanes).toBe(1);
		// A change reaches the lane-held stream; deleting the display ends it with `revoked`.
		expect((await request(p.api(`/displays/${screen.displayId}/commands`), { method: "POST", headers: bearer(owner.accessToken), json: { type: "reload" } })).status).toBe(202);
		await viaLane.waitFor(isEvent("command"));
		expect((await request(p.api(`/displays/${screen.displayId}`), { method: "DELETE", headers: bearer(owner.accessToken) })).status).toBe(204);
		await viaLane.waitFor(isEvent("revoked"));

		const other = await registerScreen();
		for (const [path, head] of [["/api/v1/device/events", false], ["/api/v1/device/events/", false], ["/api/v1/device/events", true], ["/api/v1/device/events/", true]] as const) {
			const anonymous = await raw(p, head ? "HEAD" : "GET", path, {});
			expect([path, head, anonymous.status]).toEqual([path, head, 401]);
		}
		const lane = await raw(p, "HEAD", "/api/v1/device/events", { Authorization: `Bearer ${other.deviceToken}` });
		const web = await raw(p, "HEAD", "/api/v1/device/events/", { Authorization: `Bearer ${other.deviceToken}` });
		expect([lane.status, lane.headers["content-type"], lane.text]).toEqual([web.status, web.headers["content-type"], web.text]);
		expect(lane.status).toBe(200);
		closeStreams();
	});

	it("answers every hostile heartbeat exactly as moleculer-web does, alone and sent together (differential fuzz, 600 cases and 15 volleys)", async () => {
		const screen = await registerScreen();
		const revoked = await registerScreen("hw-lane-revoked");
		await registerScreen("hw-lane-revoked");
		const value = fc.oneof(
			fc.jsonValue({ maxDepth: 3 }),
			fc.constantFrom<unknown>(null, { $gt: "" }, { $where: "1" }, [], {}, "", "x".repeat(70), -1, 101, Number.MAX_VALUE, 2 ** 53, true, "__proto__", { constructor: { prototype: {} } })
		);
		const heartbeatish = fc.record(
			{
				metrics: fc.oneof(value, fc.record({ cpu: value, memory: value, disk: value, temperature: value }, { requiredKeys: [] })),
				appVersion: value,
				currentContentId: value,
				uptimeSec: value,
				tenantId: value,
				role: value
			},
			{ requiredKeys: [] }
		);
		const body = fc.oneof(
			heartbeatish.map(v => JSON.stringify(v)),
			fc.constantFrom('{"__proto__":{"appVersion":"1"}}', '{"metrics":{"__proto__":{"cpu":1}}}', "[]", "null", '"text"', "42", "{", '{"a":1,}', "\u0000", "", '{"appVersion":"\ud800"}', '{"uptimeSec":1e400}'),
			fc.uint8Array({ maxLength: 40 }).map(bytes => Buffer.from(bytes).toString("latin1"))
		);
		const contentType = fc.constantFrom("application/json", "application/json; charset=utf-8", "application/json; charset=latin1", "text/plain", "application/x-www-form-urlencoded", "");
		const encoding = fc.constantFrom("", "", "", "gzip", "br", "x-unknown", "identity");
		const query = fc.constantFrom("", "", "?appVersion=2", "?metrics=1", "?uptimeSec=5", "?appVersion[$gt]=", "?__proto__[x]=1", "?constructor[prototype][x]=1", "?a=1&a=2");
		const auth = fc.constantFrom("device", "device", "device", "none", "garbage", "malformed", "user", "revoked");
		const tokenFor = (kind: string): string | undefined =>
			({ device: `Bearer ${screen.deviceToken}`, garbage: "Bearer abc.def.ghi", malformed: "Basic dXNlcjpwYXNz", user: `Bearer ${owner.accessToken}`, revoked: `Bearer ${revoked.deviceToken}` })[kind];

		/** One case sent to the lane (`""`) or to moleculer-web (`"/"`). */
		const send = (slash: "" | "/", [text, type, enc, q, who]: [string, string, string, string, string]) => {
			const headers: Record<string, string> = {};
			if (type) headers["Content-Type"] = type;
			if (enc) headers["Content-Encoding"] = enc;
			const token = tokenFor(who);
			if (token) headers.Authorization = token;
			return raw(p, "POST", `/api/v1/device/heartbeat${slash}${q}`, headers, Buffer.from(text, "utf8"));
		};
		const oneCase = fc.tuple(body, contentType, encoding, query, auth);
		await fc.assert(
			fc.asyncProperty(oneCase, async c => {
				const lane = await send("", c);
				const web = await send("/", c);
				expect(lane.status).toBeLessThan(500);
				expect(shape(lane)).toEqual(shape(web));
			}),
			{ numRuns: 600, seed: 20261201 }
		);
		// Sent together, the lane's cases share group calls: each still answers as it would alone.
		await fc.assert(
			fc.asyncProperty(fc.array(oneCase, { minLength: 20, maxLength: 40 }), async cases => {
				const lane = await Promise.all(cases.map(c => send("", c)));
				for (const [i, c] of cases.entries()) expect(shape(lane[i])).toEqual(shape(await send("/", c)));
			}),
			{ numRuns: 15, seed: 20261202 }
		);
		expect((await request(`${p.url}/health/live`)).status).toBe(200);
	}, 180_000);

	it("answers every manifest request exactly as moleculer-web does (differential fuzz, 300 cases)", async () => {
		const screen = await registerScreen();
		const etag = String((await raw(p, "GET", "/api/v1/device/manifest", { Authorization: `Bearer ${screen.deviceToken}` })).headers.etag);
		await fc.assert(
			fc.asyncProperty(
				fc.constantFrom("GET", "HEAD"),
				fc.constantFrom("", "?x=1", "?etag[$ne]=1", "?__proto__[a]=b"),
				fc.constantFrom(etag, `W/${etag}`, `"nope", ${etag}`, "*", '"nope"', "", "\u00ff"),
				fc.constantFrom("device", "none", "garbage"),
				fc.constantFrom("", '{"x":1}', "{"),
				async (method, q, ifNoneMatch, who, text) => {
					const headers: Record<string, string> = {};
					if (ifNoneMatch) headers["If-None-Match"] = Buffer.from(ifNoneMatch, "utf8").toString("latin1");
					if (who === "device") headers.Authorization = `Bearer ${screen.deviceToken}`;
					if (who === "garbage") headers.Authorization = "Bearer x.y.z";
					if (text) headers["Content-Type"] = "application/json";
					const body = text ? Buffer.from(text) : undefined;
					const lane = await raw(p, method, `/api/v1/device/manifest${q}`, headers, body);
					const web = await raw(p, method, `/api/v1/device/manifest/${q}`, headers, body);
					expect(lane.status).toBeLessThan(500);
					expect({ ...(shape(lane) as object), etag: lane.headers.etag }).toEqual({ ...(shape(web) as object), etag: web.headers.etag });
				}
			),
			{ numRuns: 300, seed: 1201 }
		);
	}, 120_000);
});

describe("the device lane's limits", () => {
	let p: Platform;

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "100", RATE_LIMIT_PER_MINUTE: "6", CORS_ORIGINS: "https://cms.example.com", MAX_BODY_BYTES: "2048" });
	}, 60_000);
	afterAll(() => p?.stop());

	it("counts heartbeats and manifests in one budget with the screen's other device routes, then answers 429 with Retry-After", async () => {
		const owner = await register(p, newAccount("lane-limit"));
		const key = (await request<{ key: string }>(p.api("/provisioning-keys"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "Limits" } })).body.key;
		const screen = (await request<Screen>(p.api("/device/register"), { method: "POST", headers: someClient(), json: { provisioningKey: key, hardwareId: "hw-limit" } })).body;
		const statuses: number[] = [];
		for (let i = 0; i < 3; i++) statuses.push((await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(screen.deviceToken), json: {} })).status);
		for (let i = 0; i < 2; i++) statuses.push((await request(p.api("/device/manifest"), { headers: bearer(screen.deviceToken) })).status);
		// The ack route is moleculer-web's: the same budget (an unknown command is a 404 after counting).
		statuses.push((await request(p.api("/device/commands/01900000-0000-7000-8000-000000000000/ack"), { method: "POST", headers: bearer(screen.deviceToken), json: {} })).status);
		const limited = await request<ErrorBody>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(screen.deviceToken), json: {} });
		expect(statuses).toEqual([200, 200, 200, 200, 200, 404]);
		expect(limited.status).toBe(429);
		expect(limited.body.error.type).toBe("RATE_LIMITED");
		expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
	});

	it("takes CORS and the body limit from the same settings as every route", async () => {
		const big = Buffer.from(JSON.stringify({ appVersion: "x".repeat(4000) }));
		const tooLarge = await raw(p, "POST", "/api/v1/device/heartbeat", { "Content-Type": "application/json" }, big);
		expect(tooLarge.status).toBe(413);
		const allowed = await raw(p, "POST", "/api/v1/device/heartbeat", { "Content-Type": "application/json", Origin: "https://cms.example.com" }, Buffer.from("{}"));
		expect(allowed.status).toBe(401);
		expect(allowed.headers["access-control-allow-origin"]).toBe("https://cms.example.com");
		const refused = await raw(p, "POST", "/api/v1/device/heartbeat", { "Content-Type": "application/json", Origin: "https://evil.example" }, Buffer.from("{}"));
		const refusedWeb = await raw(p, "POST", "/api/v1/device/heartbeat/", { "Content-Type": "application/json", Origin: "https://evil.example" }, Buffer.from("{}"));
		expect(refused.status).toBe(403);
		expect(shape(refused)).toEqual(shape(refusedWeb));
		expect(refused.headers["access-control-allow-origin"]).toBeUndefined();
	});
});
