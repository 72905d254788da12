/**
 * Rate limits shared by gateway replicas through Redis: two gateways (one namespace, one Redis)
 * count every caller against one budget, and a count made by a replica elsewhere is honoured.
 */
import Redis from "ioredis";
import { sharedKeyValueStore } from "../../shared/kv";
import { request, startGateway, type ErrorBody, type TestGateway } from "../helpers/platform";
import { describeWith, redisServer, requireServer, uniquePrefix, type TestServer } from "../helpers/servers";
import { CALLERS, ProbeService, StubAuthService, TENANT, tokenOf } from "../helpers/stub-services";

const LIMIT = 4;
const ROUTE = "/api/v1/probe/perm/tenant.read";

describeWith("redis")("rate limits shared by two gateways over Redis", () => {
	let server: TestServer;
	let raw: Redis;
	let namespace: string;
	let gateways: TestGateway[] = [];

	/** Redis key of a user's rate-limit counter: marquee:<namespace>:rl:<kind>:<tenant>:<user>. */
	const counterKey = (caller: string): string => {
		const principal = CALLERS[caller];
		if (!principal) throw new Error(`no principal for ${caller}`);
		return `marquee:${namespace}:rl:${principal.kind}:${TENANT}:${principal.userId}`;
	};
	const get = (gw: TestGateway, caller: string) =>
		request<ErrorBody>(`${gw.url}${ROUTE}`, { headers: { Authorization: `Bearer ${tokenOf(caller)}` } });

	beforeAll(async () => {
		server = await requireServer(redisServer());
		raw = new Redis(server.url);
		namespace = uniquePrefix("rl").replace(/:/g, "-");
		const env = { NAMESPACE: namespace, REDIS_URL: server.url, RATE_LIMIT_PER_MINUTE: String(LIMIT) };
		// started one after the other: each reads the process config while it is created
		gateways.push(await startGateway([StubAuthService, ProbeService], env));
		gateways.push(await startGateway([StubAuthService, ProbeService], env));
	});
	afterAll(async () => {
		for (const gw of gateways) await gw.stop();
		if (gateways[0]) await sharedKeyValueStore(gateways[0].config).close();
		gateways = [];
		const keys = await raw.keys(`marquee:${namespace}:*`);
		if (keys.length) await raw.del(...keys);
		raw.disconnect();
		await server.stop();
	});

	it("the gateways are separate brokers of one namespace, both on Redis", () => {
		const [a, b] = gateways;
		expect(a.broker).not.toBe(b.broker);
		expect(a.url).not.toBe(b.url);
		expect(a.config.namespace).toBe(namespace);
		expect(b.config.namespace).toBe(namespace);
		expect(a.config.redisUrl).toBe(server.url);
	});

	it("requests alternating between the gateways share one budget: the 5th overall is refused", async () => {
		const [a, b] = gateways;
		const order = [a, b, a, b];
		for (let i = 0; i < LIMIT; i++) {
			const res = await get(order[i], "viewer");
			expect(res.status).toBe(200);
			expect(res.headers.get("ratelimit-limit")).toBe(String(LIMIT));
			expect(res.headers.get("ratelimit-remaining")).toBe(String(LIMIT - 1 - i));
		}
		const fifth = await get(a, "viewer");
		expect(fifth.status).toBe(429);
		expect(fifth.body.error).toMatchObject({ type: "RATE_LIMITED", code: 429 });
		expect(fifth.body.error.requestId).toBe(fifth.headers.get("x-request-id"));
		const retryAfter = Number(fifth.headers.get("retry-after"));
		expect(Number.isInteger(retryAfter)).toBe(true);
		expect(retryAfter).toBeGreaterThanOrEqual(1);
		expect(retryAfter).toBeLessThanOrEqual(60);
		expect(fifth.body.error.data).toEqual({ retryAfter });

		const sixth = await get(b, "viewer");
		expect(sixth.status).toBe(429);
		expect(Number(sixth.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);

		// the budget lives in Redis, with the one-minute window
		expect(await raw.get(counterKey("viewer"))).toBe(String(LIMIT + 2));
		const ttl = await raw.pttl(counterKey("viewer"));
		expect(ttl).toBeGreaterThan(0);
		expect(ttl).toBeLessThanOrEqual(60_000);
	});

	it("other callers keep their own budget", async () => {
		const [a, b] = gateways;
		expect((await get(a, "admin")).status).toBe(200);
		expect((await get(b, "admin")).status).toBe(200);
		expect(await raw.get(counterKey("admin"))).toBe("2");
	});

	it("counts made by a replica in another process are honoured", async () => {
		// another replica (another process, same Redis and namespace) already served the editor 4 times
		await raw.set(counterKey("editor"), String(LIMIT), "PX", 60_000);
		const [a, b] = gateways;
		const res = await get(b, "editor");
		expect(res.status).toBe(429);
		expect(res.headers.get("retry-after")).toBeTruthy();
		expect((await get(a, "editor")).status).toBe(429);
	});
});
