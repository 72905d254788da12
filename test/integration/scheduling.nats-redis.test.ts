/**
 * Scheduling as its own node: node A runs the gateway and every other service, node B only
 * scheduling; they talk over a real NATS and share a real Redis (the manifest cache, the ETag the
 * heartbeat answers, the tenant's manifest generation). What crosses: the device's If-None-Match
 * (304), the ETag header, media's synchronous "content deleted" call, the device download check,
 * and `scheduling.manifest.changed` back to the gateway's live streams.
 *
 * Node A also publishes audit records and heartbeat metrics on durable channels nobody consumes
 * yet: their JetStream streams exist from broker start (shared/channels.ts), so those requests
 * succeed instead of failing with NATS' "503 no responders".
 */
import Redis from "ioredis";
import SchedulingService from "../../services/scheduling.service";
import { closeSharedKeyValueStores } from "../../shared/kv";
import { bearer, newAccount, pairDisplay, PLATFORM_SERVICES, register, someClient, type Platform, type Session } from "../helpers/accounts";
import { request, startBroker, startGateway, tempDir, type TestBroker } from "../helpers/platform";
import { describeWith, natsServer, redisServer, requireServer, uniquePrefix } from "../helpers/servers";
import { connect, isEvent, open } from "../helpers/sse";

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
	const deadline = Date.now() + ms;
	while (!(await check())) {
		if (Date.now() > deadline) throw new Error("condition not met in time");
		await new Promise(resolve => setTimeout(resolve, 100));
	}
}

describeWith("nats", "redis")("scheduling on its own node over NATS, sharing Redis", () => {
	let a: Platform;
	let b: TestBroker;
	let namespace: string;
	let redisUrl: string;
	let owner: Session & { password: string };

	beforeAll(async () => {
		const [nats, redis] = await Promise.all([requireServer(natsServer()), requireServer(redisServer())]);
		redisUrl = redis.url;
		namespace = uniquePrefix("sched").replace(/:/g, "-");
		const env = { TRANSPORTER: nats.url, REDIS_URL: redis.url, NAMESPACE: namespace, DEFAULT_PLAN_DISPLAYS: "10", RATE_LIMIT_PER_MINUTE: "100000", TRUST_PROXY_HOPS: "1" };
		b = await startBroker([SchedulingService], env, { nodeID: `${namespace}node-b` });
		const dataDir = tempDir();
		const gw = await startGateway(
			PLATFORM_SERVICES.filter(s => s.name !== "scheduling"),
			{ ...env, DATA_DIR: dataDir },
			{ nodeID: `${namespace}node-a` }
		);
		a = { ...gw, dataDir, api: (path: string) => `${gw.url}/api/v1${path}` };
		await Promise.all([a.broker.waitForServices(["scheduling"], 10_000), b.broker.waitForServices(["devices", "media", "tenants"], 10_000)]);
		// moleculer-web regenerates its aliases (debounced) once it has seen B's services.
		await eventually(async () => (await request(a.api("/playlists"))).status === 401);
		owner = await register(a, newAccount("remote-sched"));
	}, 30_000);

	afterAll(async () => {
		for (const stream of open.splice(0)) stream.close();
		await a?.stop();
		await b?.stop();
		await closeSharedKeyValueStores();
		const raw = new Redis(redisUrl);
		const keys = await raw.keys(`*${namespace}*`);
		if (keys.length) await raw.del(...keys);
		raw.disconnect();
	});

	it("serves manifests from node B with 304s, heartbeat ETags through Redis, and pushes the change after a deletion", async () => {
		expect(a.broker.getLocalService("scheduling")).toBeFalsy();
		const as = bearer(owner.accessToken);
		const page = await request<{ id: string }>(a.api("/content/url"), { method: "POST", headers: as, json: { name: "Board", url: "https://example.com/board", durationMs: 6000 } });
		const other = await request<{ id: string }>(a.api("/content/url"), { method: "POST", headers: as, json: { name: "Menu", url: "https://example.com/menu", durationMs: 6000 } });
		const list = await request<{ id: string; totalDurationMs: number }>(a.api("/playlists"), { method: "POST", headers: as, json: { name: "Remote", items: [{ contentId: page.body.id }, { contentId: other.body.id }] } });
		expect(list.status).toBe(201);
		expect(list.body.totalDurationMs).toBe(12_000);
		const { display, token } = await pairDisplay(a, owner, { tags: ["remote"] });
		const sched = await request(a.api("/schedules"), { method: "POST", headers: { ...as, ...someClient() }, json: { name: "Remote", playlistId: list.body.id, targets: { tags: ["remote"] } } });
		expect(sched.status).toBe(201);

		const first = await request<{ etag: string; items: Array<{ contentId: string }> }>(a.api("/device/manifest"), { headers: bearer(token) });
		expect(first.status).toBe(200);
		const etag = first.headers.get("etag");
		expect(etag).toBe(first.body.etag);
		expect(first.body.items.map(i => i.contentId)).toEqual([page.body.id, other.body.id]);
		expect((await request(a.api("/device/manifest"), { headers: { ...bearer(token), "If-None-Match": String(etag) } })).status).toBe(304);
		const heartbeat = await request<{ manifestEtag: string | null }>(a.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
		expect(heartbeat.body.manifestEtag).toBe(etag);

		const stream = await connect(a.url, token);
		expect((await request(a.api(`/content/${page.body.id}`), { method: "DELETE", headers: as })).status).toBe(204);
		const next = await request<{ etag: string; items: Array<{ contentId: string }> }>(a.api("/device/manifest"), { headers: { ...bearer(token), "If-None-Match": String(etag) } });
		expect(next.status).toBe(200);
		expect(next.body.items.map(i => i.contentId)).toEqual([other.body.id]);
		const pushed = await stream.waitFor(isEvent("manifest"), 10_000);
		expect(JSON.parse(pushed.data ?? "")).toEqual({ etag: next.body.etag });
		await eventually(async () => (await request<{ manifestEtag: string | null }>(a.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} })).body.manifestEtag === next.body.etag);

		// The device download check crosses to node B too (a web page has no bytes: 404 either way),
		// so check a preview instead: node B reads the display from node A's devices service.
		const preview = await request<{ source: string; playlist: { id: string } }>(a.api(`/displays/${display.id}/preview`), { headers: as });
		expect(preview.body).toMatchObject({ source: "schedule", playlist: { id: list.body.id } });
	}, 30_000);
});
