/**
 * The platform as operators run it: every service in its own process (`SERVICES=<name>`, the
 * real entry point), two gateway replicas, real NATS with JetStream and real Redis (and the
 * ClickHouse server when one answers, else chDB in the analytics process).
 *
 * - the main flow over HTTP, alternating replicas: register → webhook → provisioning key →
 *   register a screen → upload → playlist → schedule → manifest and download → heartbeat →
 *   playback → report → signed webhooks;
 * - a command sent through replica B reaches the screen's live stream on replica A;
 * - rate limits and plan quotas hold across both replicas (Redis);
 * - devices, scheduling, notifications and analytics each killed (SIGKILL) under load and
 *   started again: requests in flight answer 503 or succeed, never 500; nothing on the durable
 *   channels is lost (webhooks raised meanwhile arrive, plays are counted exactly once);
 * - NATS restarted under load: the services reconnect and nothing durable is lost;
 * - SIGTERM to a gateway: its screens' streams end and reconnect to the other replica; SIGTERM to
 *   every process at once: each drains and exits 0.
 *
 * Each service keeps its own DATA_DIR (NeDB files, the media S3), as each owns its collections.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import Redis from "ioredis";
import sharp from "sharp";
import { tempDir } from "../helpers/platform";
import { killGroup, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { connect, closeStreams, isEvent } from "../helpers/sse";
import { clickhouseServer, describeWith, findBinary, freePort, isUnavailable, natsHasJetStream, redisServer, requireServer } from "../helpers/servers";
import { WebhookReceiver } from "../helpers/webhook-receiver";

/**
 * Each node runs as a container runs it: one Node process (the project's Node 24) with tsx's
 * loader, so SIGTERM reaches the platform itself, not a wrapper that relays it.
 */
const NODE = ["node_modules/.bin/node", "--import", "tsx", "server.ts"] as const;
const BACKENDS = ["auth", "tenants", "devices", "media", "scheduling", "notifications", "billing", "analytics"] as const;
/** The plan's display limit in this cluster (checked across both replicas). */
const PLAN_DISPLAYS = 6;
/** Requests per principal per minute at the gateways (checked across both replicas). */
const RATE_LIMIT = 1500;

jest.setTimeout(180_000);

interface Answer<T = unknown> {
	status: number;
	body: T;
}

/** A NATS server with JetStream on a fixed port and store, so it can be restarted as the same server. */
class Nats {
	private child: ChildProcess | null = null;
	constructor(
		readonly port: number,
		private readonly dir: string,
		private readonly bin: string
	) {}

	get url(): string {
		return `nats://127.0.0.1:${this.port}`;
	}

	async start(): Promise<void> {
		this.child = spawn(this.bin, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.dir], { stdio: "ignore" });
		for (let i = 0; i < 100 && !(await natsHasJetStream(this.url)); i++) await sleep(100);
	}

	async stop(): Promise<void> {
		const child = this.child;
		if (!child || child.exitCode !== null) return;
		const exited = new Promise(resolve => child.once("exit", resolve));
		child.kill("SIGTERM");
		await exited;
	}
}

function sleep(ms: number): Promise<void> {
	return new Promise(resolve => setTimeout(resolve, ms));
}

/** A node of the cluster: its process and how to start it again with the same settings. */
interface Node {
	name: string;
	env: Record<string, string>;
	proc: PlatformProcess;
	/** Where its /health/ready is: the gateway's own port, else OPS_PORT. */
	readyUrl(): string;
}

const natsBin = findBinary("nats-server");

describeWith("nats", "redis")("the platform as a cluster: each service in its own process over NATS and Redis", () => {
	let nats: Nats;
	const nodes = new Map<string, Node>();
	let gwA: Node;
	let gwB: Node;
	let common: Record<string, string>;
	let owner: string;
	let receiver: WebhookReceiver;
	let device: { displayId: string; token: string };
	let keyForRegistering: string;
	let playlistId: string;
	let scheduleId: string;
	let contentId: string;
	let contentBytes: Buffer;
	/** Every play the screen got a 202 for (each batch is sent until one comes). */
	const plays = new Set<string>();
	let playSeq = 0;

	async function startNode(name: string, env: Record<string, string>): Promise<Node> {
		const proc = await spawnPlatform(NODE[0], NODE.slice(1), env);
		const node: Node = {
			name,
			env,
			proc,
			readyUrl: () => (env.SERVICES === "api" ? `${proc.url}/health/ready` : `http://127.0.0.1:${env.OPS_PORT}/health/ready`)
		};
		nodes.set(name, node);
		return node;
	}

	async function ready(node: Node): Promise<void> {
		await waitFor200(node.readyUrl(), 90_000, node.proc);
	}

	/** Stops a node and resolves with its exit code (or signal name); SIGKILL is a crash. */
	async function stopNode(node: Node, signal: "SIGTERM" | "SIGKILL"): Promise<number | string> {
		if (signal === "SIGKILL") killGroup(node.proc);
		else node.proc.kill(signal);
		return node.proc.exited;
	}

	async function restart(node: Node): Promise<Node> {
		const again = await startNode(node.name, node.env);
		await ready(again);
		return again;
	}

	/** Waits until a gateway sees every backend service again. */
	async function gatewaySeesAll(gw: Node): Promise<void> {
		for (let i = 0; i < 300; i++) {
			const res = await fetch(gw.readyUrl()).catch(() => null);
			const body = res ? ((await res.json()) as { services?: Record<string, string> }) : null;
			if (body?.services && BACKENDS.every(name => body.services?.[name] === "remote")) return;
			await sleep(100);
		}
		throw new Error(`${gw.name} does not see every service`);
	}

	async function call<T = unknown>(gw: Node, route: string, init: { method?: string; json?: unknown; form?: FormData; token?: string; headers?: Record<string, string> } = {}): Promise<Answer<T>> {
		const headers: Record<string, string> = { ...init.headers };
		if (init.token) headers.Authorization = `Bearer ${init.token}`;
		let body: string | FormData | undefined = init.form;
		if (init.json !== undefined) {
			headers["Content-Type"] = "application/json";
			body = JSON.stringify(init.json);
		}
		try {
			const res = await fetch(`${gw.proc.url}/api/v1${route}`, { method: init.method ?? "GET", headers, body, signal: AbortSignal.timeout(60_000) });
			const text = await res.text();
			if (res.status >= 500 && res.status !== 503) surprises.push(`${init.method ?? "GET"} ${route} via ${gw.name}: ${res.status} ${text.slice(0, 300)}`);
			let parsed: unknown = text;
			try {
				parsed = text ? JSON.parse(text) : null;
			} catch {
				/* bytes, CSV */
			}
			return { status: res.status, body: parsed as T };
		} catch {
			return { status: 0, body: null as T }; // no answer at all (a gateway going down)
		}
	}

	async function expectStatus<T>(expected: number, gw: Node, route: string, init: Parameters<typeof call>[2] = {}): Promise<T> {
		const res = await call<T>(gw, route, init);
		if (res.status !== expected) throw new Error(`${init.method ?? "GET"} ${route} via ${gw.name} answered ${res.status}, expected ${expected}: ${JSON.stringify(res.body)}`);
		return res.body;
	}

	/** Statuses seen under load: only these are acceptable while a service or NATS is down. */
	const ACCEPTABLE_WHILE_DOWN = new Set([200, 202, 204, 304, 503]);

	/** What answered outside ACCEPTABLE_WHILE_DOWN under load, for the failure message. */
	const surprises: string[] = [];

	/** Runs `step` over and over (both replicas in turn) until stopped; collects every status. */
	function load(step: (gw: Node, i: number) => Promise<number[]>): { stop(): Promise<number[]> } {
		let running = true;
		const statuses: number[] = [];
		const done = (async () => {
			for (let i = 0; running; i++) {
				statuses.push(...(await step(i % 2 ? gwB : gwA, i)));
				// A screen's pace, not a flood: the rate limit (per principal) must not be what answers.
				await sleep(200);
			}
		})();
		return {
			async stop() {
				running = false;
				await done;
				return statuses;
			}
		};
	}

	/** A batch of plays, sent until the platform answers 202 (as a player does); the statuses seen. */
	async function sendPlays(gw: Node, count: number): Promise<number[]> {
		const events = Array.from({ length: count }, () => ({
			eventId: `cluster-${process.pid}-${++playSeq}`,
			contentId,
			playlistId,
			startedAt: new Date(Date.now() - 5_000).toISOString(),
			durationMs: 5_000,
			completed: true
		}));
		const statuses: number[] = [];
		for (let attempt = 0; attempt < 400; attempt++) {
			const res = await call(attempt % 2 ? gwA : gw, "/device/playback", { method: "POST", token: device.token, json: { events } });
			statuses.push(res.status);
			if (res.status === 202) {
				for (const e of events) plays.add(e.eventId);
				return statuses;
			}
			await sleep(250);
		}
		throw new Error(`a playback batch was never accepted: ${statuses.slice(-5).join(", ")}`);
	}

	/** The plays analytics counts for the screen (deduplicated by event id), once it has them all. */
	async function countedPlays(expected: number, timeoutMs = 50_000): Promise<number> {
		const from = new Date(Date.now() - 3600_000).toISOString();
		const to = new Date(Date.now() + 600_000).toISOString();
		let counted = -1;
		for (const started = Date.now(); Date.now() - started < timeoutMs; ) {
			const res = await call<{ rows: { plays: number }[] }>(Date.now() % 2 ? gwA : gwB, `/analytics/playback?from=${from}&to=${to}&displayId=${device.displayId}&groupBy=content`, { token: owner });
			if (res.status === 200) {
				counted = res.body.rows.reduce((n, r) => n + r.plays, 0);
				if (counted >= expected) return counted;
			}
			await sleep(250);
		}
		return counted;
	}

	beforeAll(async () => {
		if (!natsBin) throw new Error("nats-server not installed");
		nats = new Nats(await freePort(), tempDir("marquee-nats-"), natsBin);
		await nats.start();
		const redis = await requireServer(redisServer());
		const clickhouse = await clickhouseServer();
		common = {
			TRANSPORTER: nats.url,
			REDIS_URL: redis.url,
			NAMESPACE: `cluster${process.pid}${Date.now() % 100000}`,
			JWT_SECRET: "cluster-test-secret-that-is-long-enough-for-validation",
			DEFAULT_PLAN_DISPLAYS: String(PLAN_DISPLAYS),
			RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT),
			WEBHOOK_ALLOW_PRIVATE: "true",
			ANALYTICS_BATCH_MS: "200",
			SHUTDOWN_TIMEOUT_MS: "10000",
			LOG_LEVEL: "warn",
			...(isUnavailable(clickhouse) ? {} : { CLICKHOUSE_URL: `${clickhouse.url}/cluster${process.pid}` })
		};
		// The backends first (in parallel), then the two gateways.
		await Promise.all(
			BACKENDS.map(async name => {
				const node = await startNode(name, { ...common, SERVICES: name, DATA_DIR: tempDir(`marquee-${name}-`), OPS_PORT: String(await freePort()) });
				await ready(node);
			})
		);
		gwA = await startNode("gateway-a", { ...common, SERVICES: "api", DATA_DIR: tempDir("marquee-gw-a-") });
		gwB = await startNode("gateway-b", { ...common, SERVICES: "api", DATA_DIR: tempDir("marquee-gw-b-") });
		await Promise.all([ready(gwA), ready(gwB)]);
		await Promise.all([gatewaySeesAll(gwA), gatewaySeesAll(gwB)]);
		receiver = await WebhookReceiver.start();
	}, 300_000);

	afterAll(async () => {
		if (process.env.CLUSTER_LOGS) for (const node of nodes.values()) fs.writeFileSync(path.join(process.env.CLUSTER_LOGS, `${node.name}.log`), node.proc.output());
		closeStreams();
		await receiver?.close();
		for (const node of nodes.values()) killGroup(node.proc);
		await nats?.stop();
	});

	it("the main flow works across two gateway replicas: register, provision, upload, schedule, manifest, heartbeat, playback, report, webhooks", async () => {
		const account = { email: `cluster-${process.pid}@example.com`, password: "Many processes, one platform 7", name: "Cleo Cluster", organizationName: "Cluster Org" };
		owner = (await expectStatus<{ accessToken: string }>(201, gwA, "/auth/register", { method: "POST", json: account })).accessToken;
		const hook = await expectStatus<{ secret: string }>(201, gwB, "/webhooks", {
			method: "POST",
			token: owner,
			json: { url: receiver.url, events: ["display.paired", "content.ready", "schedule.changed"] }
		});
		receiver.secret = hook.secret;

		const key = await expectStatus<{ key: string }>(201, gwA, "/provisioning-keys", { method: "POST", token: owner, json: { name: "Cluster rollout" } });
		keyForRegistering = key.key;
		const registered = await expectStatus<{ displayId: string; deviceToken: string }>(201, gwB, "/device/register", { method: "POST", json: { provisioningKey: key.key, hardwareId: "cluster-screen-1" } });
		device = { displayId: registered.displayId, token: registered.deviceToken };

		contentBytes = await sharp({ create: { width: 64, height: 36, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
		const form = new FormData();
		form.set("name", "Cluster image");
		form.set("file", new Blob([new Uint8Array(contentBytes)], { type: "image/png" }), "cluster.png");
		contentId = (await expectStatus<{ id: string }>(201, gwA, "/content", { method: "POST", token: owner, form })).id;
		playlistId = (await expectStatus<{ id: string }>(201, gwB, "/playlists", { method: "POST", token: owner, json: { name: "Cluster", items: [{ contentId }] } })).id;
		scheduleId = (await expectStatus<{ id: string }>(201, gwA, "/schedules", { method: "POST", token: owner, json: { name: "Always", playlistId, targets: { displayIds: [device.displayId] } } })).id;

		let manifest: { items: { contentId: string; url: string }[] } = { items: [] };
		for (let i = 0; i < 100 && manifest.items.length === 0; i++) {
			manifest = await expectStatus(200, i % 2 ? gwA : gwB, "/device/manifest", { token: device.token });
			if (manifest.items.length === 0) await sleep(100);
		}
		expect(manifest.items.map(item => item.contentId)).toEqual([contentId]);
		const download = await fetch(`${gwA.proc.url}${manifest.items[0].url}`, { headers: { Authorization: `Bearer ${device.token}` } });
		expect(download.status).toBe(200);
		expect(Buffer.from(await download.arrayBuffer()).equals(contentBytes)).toBe(true);

		const beat = await expectStatus<{ manifestEtag: string }>(200, gwB, "/device/heartbeat", { method: "POST", token: device.token, json: { metrics: { cpu: 10, memory: 20, disk: 30 } } });
		expect(beat.manifestEtag).toEqual(expect.any(String));
		// The gateway runs no devices: its heartbeat groups cross NATS, and each junk body (200 KB)
		// goes alone and fails alone. (Which of these share a group depends on timing; the unit
		// test of brokerLaneGroups puts six in one group deterministically.)
		const junk = { appVersion: "1.0", junk: "x".repeat(200_000) };
		const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => call(gwB, "/device/heartbeat", { method: "POST", token: device.token, json: i % 2 ? junk : { appVersion: "1.0" } })));
		expect(burst.map(r => r.status)).toEqual([200, 422, 200, 422, 200, 422, 200, 422, 200, 422, 200, 422]);
		await sendPlays(gwA, 10);
		expect(await countedPlays(10)).toBe(10);

		// Signed webhooks for the three events, delivered once each.
		for (let i = 0; i < 200 && new Set(receiver.received.map(r => (JSON.parse(r.body) as { type: string }).type)).size < 3; i++) await sleep(100);
		const types = receiver.received.map(r => (JSON.parse(r.body) as { type: string }).type);
		expect(new Set(types)).toEqual(new Set(["display.paired", "content.ready", "schedule.changed"]));
		expect(receiver.received.every(r => r.verdict === "ok")).toBe(true);
	});

	it("a command sent through replica B reaches the screen's live stream on replica A", async () => {
		const stream = await connect(gwA.proc.url, device.token);
		expect(stream.status).toBe(200);
		const command = await expectStatus<{ id: string }>(202, gwB, `/displays/${device.displayId}/commands`, { method: "POST", token: owner, json: { type: "reload" } });
		const block = await stream.waitFor(isEvent("command"), 15_000);
		expect(JSON.parse(block.data ?? "null")).toMatchObject({ id: command.id, type: "reload" });
		stream.close();
	});

	it("the plan's display limit and the rate limit hold across both replicas", async () => {
		// One display exists; ten screens register at once through both replicas.
		const answers = await Promise.all(
			Array.from({ length: 10 }, (_, i) => call(i % 2 ? gwA : gwB, "/device/register", { method: "POST", json: { provisioningKey: keyForRegistering, hardwareId: `cluster-fleet-${i}` } }))
		);
		const statuses = answers.map(a => a.status).sort();
		expect(statuses.filter(s => s === 201)).toHaveLength(PLAN_DISPLAYS - 1);
		expect(statuses.filter(s => s === 402)).toHaveLength(10 - (PLAN_DISPLAYS - 1));

		// A fresh user whose minute is nearly spent (its counter set in Redis, as other replicas'
		// counts would leave it: sending the 1 490 requests would take longer than the window on a
		// loaded machine), then 60 requests alternating replicas: 10 pass between both, no more.
		const account = { email: `limits-${process.pid}@example.com`, password: "Counting on both sides 9", name: "Lim", organizationName: "Limit Org" };
		const registered = await expectStatus<{ accessToken: string; user: { id: string }; tenant: { id: string } }>(201, gwB, "/auth/register", { method: "POST", json: account });
		const redis = new Redis(common.REDIS_URL);
		try {
			await redis.set(`marquee:${common.NAMESPACE}:rl:user:${registered.tenant.id}:${registered.user.id}`, String(RATE_LIMIT - 10), "PX", 60_000);
		} finally {
			redis.disconnect();
		}
		const results = await Promise.all(Array.from({ length: 60 }, (_, k) => call(k % 2 ? gwA : gwB, "/auth/me", { token: registered.accessToken }).then(r => r.status)));
		expect({ passed: results.filter(s => s === 200).length, refused: results.filter(s => s === 429).length }).toEqual({ passed: 10, refused: 50 });
	});

	it.each(["devices", "scheduling", "notifications", "analytics"] as const)("%s killed under load and started again: 503s or successes meanwhile, nothing durable lost", async name => {
		const delivered = receiver.received.length;
		let renamed = 0;
		const traffic = load(async (gw, i) => {
			const statuses: number[] = [];
			statuses.push((await call(gw, "/device/heartbeat", { method: "POST", token: device.token, json: { metrics: { cpu: 5, memory: 5, disk: 5 } } })).status);
			statuses.push((await call(gw, "/device/manifest", { token: device.token })).status);
			if (i % 3 === 0) statuses.push(...(await sendPlays(gw, 5)));
			return statuses;
		});
		await sleep(1_000);
		const node = nodes.get(name)!;
		expect(await stopNode(node, "SIGKILL")).toBe("SIGKILL");
		// Meanwhile: changes that raise webhooks (the notifications channel keeps them while it is down).
		for (let k = 0; k < 3; k++) {
			const res = await call(k % 2 ? gwA : gwB, `/schedules/${scheduleId}`, { method: "PATCH", token: owner, json: { name: `Always ${name} ${k}` } });
			if (res.status === 200) renamed++;
			await sleep(300);
		}
		await sleep(1_000);
		await restart(node);
		await Promise.all([gatewaySeesAll(gwA), gatewaySeesAll(gwB)]);
		await sleep(1_500);
		const statuses = await traffic.stop();
		expect([statuses.filter(s => !ACCEPTABLE_WHILE_DOWN.has(s)), surprises]).toEqual([[], []]);
		expect(statuses).toContain(200);

		// Everything works again, through both replicas.
		await expectStatus(200, gwA, "/device/heartbeat", { method: "POST", token: device.token, json: {} });
		await expectStatus(200, gwB, "/device/manifest", { token: device.token });
		// Every play the screen got a 202 for is counted, once. A batch analytics held when it was
		// killed is redelivered by JetStream after its ack wait (2 minutes): late, not lost.
		expect(await countedPlays(plays.size, name === "analytics" ? 150_000 : 50_000)).toBe(plays.size);
		// Every rename that succeeded raised a schedule.changed, which reaches the receiver (late,
		// when notifications was the one down: the durable channel kept it).
		for (let i = 0; i < 300 && receiver.received.length < delivered + renamed; i++) await sleep(100);
		expect(receiver.received.length).toBeGreaterThanOrEqual(delivered + renamed);
		expect(new Set(receiver.processed).size).toBe(receiver.processed.length);
	}, 300_000);

	it("NATS restarted under load: the services reconnect and nothing durable is lost", async () => {
		const traffic = load(async gw => {
			const statuses = [(await call(gw, "/device/heartbeat", { method: "POST", token: device.token, json: {} })).status];
			statuses.push(...(await sendPlays(gw, 5)));
			return statuses;
		});
		await sleep(1_000);
		await nats.stop();
		await sleep(2_000);
		await nats.start();
		await Promise.all([gatewaySeesAll(gwA), gatewaySeesAll(gwB)]);
		await sleep(2_000);
		const statuses = await traffic.stop();
		expect([statuses.filter(s => !ACCEPTABLE_WHILE_DOWN.has(s)), surprises]).toEqual([[], []]);
		expect(await countedPlays(plays.size)).toBe(plays.size);
		const delivered = receiver.received.length;
		await expectStatus(200, gwA, `/schedules/${scheduleId}`, { method: "PATCH", token: owner, json: { name: "After NATS" } });
		for (let i = 0; i < 300 && receiver.received.length <= delivered; i++) await sleep(100);
		expect(receiver.received.length).toBeGreaterThan(delivered);
	});

	it("SIGTERM to a gateway: it exits 0, its screens' streams end and reconnect to the other replica", async () => {
		await Promise.all([gatewaySeesAll(gwA), gatewaySeesAll(gwB)]);
		const stream = await connect(gwA.proc.url, device.token);
		expect(await stopNode(gwA, "SIGTERM")).toBe(0);
		await stream.ended;
		const again = await connect(gwB.proc.url, device.token);
		expect(again.status).toBe(200);
		const command = await expectStatus<{ id: string }>(202, gwB, `/displays/${device.displayId}/commands`, { method: "POST", token: owner, json: { type: "reload" } });
		expect(JSON.parse((await again.waitFor(isEvent("command"), 15_000)).data ?? "null")).toMatchObject({ id: command.id });
	});

	it("SIGTERM to every service at once (a compose down): each drains and exits 0", async () => {
		const running = [...nodes.values()].filter(node => node.proc.child.exitCode === null);
		expect(running.map(node => node.name).sort()).toEqual([...BACKENDS, "gateway-b"].sort());
		const codes = await Promise.all(running.map(async node => [node.name, await stopNode(node, "SIGTERM")] as const));
		expect(Object.fromEntries(codes)).toEqual(Object.fromEntries(running.map(node => [node.name, 0])));
	});
});
