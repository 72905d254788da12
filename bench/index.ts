/**
 * `npm run bench`: figures and ratios against a bare baseline measured in the same run, on the
 * same machine. Nothing here is asserted; tests never time anything.
 *
 *  1. HTTP: a bare node:http JSON server vs the gateway (routing, auth hook, RBAC, rate limit,
 *     validation, error shape) on a public route and on a guarded route.
 *  2. The device heartbeat (the hot path) vs a bare JSON echo server.
 *  3. Data: raw NeDB inserts/reads vs the same through the db mixin (tenant scope, query guard,
 *     id generation, public shape).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import Datastore from "@seald-io/nedb";
import { DbMixin, type DbMethods } from "../mixins/db.mixin";
import { newId } from "../shared/ids";
import type { Principal } from "../shared/rbac";
import { startBroker, startGateway } from "../test/helpers/platform";
import { ProbeService, StubAuthService, tokenOf } from "../test/helpers/stub-services";
import DevicesService from "../services/devices.service";
import { bearer, newAccount, pairDisplay, register, startTestPlatform } from "../test/helpers/accounts";

interface Figure {
	name: string;
	opsPerSec: number;
	p50Ms: number;
	p99Ms: number;
}

/** Runs `op` with `concurrency` workers for `durationMs` after a short warm-up. */
async function measure(name: string, op: () => Promise<void>, durationMs = 3000, concurrency = 16): Promise<Figure> {
	const warmUntil = Date.now() + 500;
	while (Date.now() < warmUntil) await op();
	const latencies: number[] = [];
	const until = Date.now() + durationMs;
	const started = process.hrtime.bigint();
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (Date.now() < until) {
				const t = process.hrtime.bigint();
				await op();
				latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
			}
		})
	);
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	latencies.sort((a, b) => a - b);
	const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
	return { name, opsPerSec: latencies.length / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

function report(title: string, baseline: Figure, others: Figure[]): void {
	console.log(`\n${title}`);
	console.log("  " + ["case".padEnd(58), "ops/s".padStart(10), "p50 ms".padStart(8), "p99 ms".padStart(8), "vs baseline".padStart(12)].join(""));
	for (const f of [baseline, ...others]) {
		const ratio = f === baseline ? "1.00x" : `${(f.opsPerSec / baseline.opsPerSec).toFixed(2)}x`;
		console.log(
			"  " +
				[f.name.padEnd(58), f.opsPerSec.toFixed(0).padStart(10), f.p50Ms.toFixed(2).padStart(8), f.p99Ms.toFixed(2).padStart(8), ratio.padStart(12)].join("")
		);
	}
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function get(url: string, headers: Record<string, string> = {}): Promise<void> {
	return new Promise((resolve, reject) => {
		http
			.get(url, { agent, headers }, res => {
				if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`));
				res.resume();
				res.on("end", resolve);
			})
			.on("error", reject);
	});
}

async function httpBench(): Promise<void> {
	const bare = http.createServer((_req, res) => {
		const body = JSON.stringify({ ok: true });
		res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
		res.end(body);
	});
	await new Promise<void>(resolve => bare.listen(0, "127.0.0.1", resolve));
	const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
	const gw = await startGateway([StubAuthService, ProbeService], { RATE_LIMIT_PER_MINUTE: "1000000" });
	const viewer = { Authorization: `Bearer ${tokenOf("viewer")}` };
	try {
		const baseline = await measure("bare node:http JSON", () => get(bareUrl));
		const figures = [
			await measure("gateway GET /health/live (ops route)", () => get(`${gw.url}/health/live`)),
			await measure("gateway GET public action", () => get(`${gw.url}/api/v1/probe/perm/public`)),
			await measure("gateway GET guarded action (auth+RBAC+limit)", () => get(`${gw.url}/api/v1/probe/perm/tenant.read`, viewer))
		];
		report("HTTP requests (16 concurrent, keep-alive)", baseline, figures);
	} finally {
		await gw.stop();
		bare.close();
	}
}

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<void> {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method: "POST", agent, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers } }, res => {
			if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`));
			res.resume();
			res.on("end", resolve);
		});
		req.on("error", reject);
		req.end(body);
	});
}

/**
 * The device hot path: the real platform (auth, tenants, devices) and a paired display sending
 * heartbeats with metrics — token from the cache, presence and metrics written, commands read.
 */
async function heartbeatBench(): Promise<void> {
	const bare = http.createServer((req, res) => {
		let body = "";
		req.on("data", chunk => (body += chunk));
		req.on("end", () => {
			const answer = JSON.stringify({ serverTime: new Date().toISOString(), received: JSON.parse(body) as unknown });
			res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(answer) });
			res.end(answer);
		});
	});
	await new Promise<void>(resolve => bare.listen(0, "127.0.0.1", resolve));
	const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
	const p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "10" }, [DevicesService]);
	try {
		const owner = await register(p, newAccount("bench"));
		const { token: deviceToken } = await pairDisplay(p, owner, { name: "Bench" });
		const body = JSON.stringify({ metrics: { cpu: 20, memory: 41, disk: 63, temperature: 50 }, appVersion: "1.0.0", uptimeSec: 1200 });
		const baseline = await measure("bare node:http JSON echo", () => post(bareUrl, body));
		const heartbeat = await measure("POST /device/heartbeat (device token, presence, metrics)", () => post(p.api("/device/heartbeat"), body, bearer(deviceToken)));
		report("Device heartbeats (16 concurrent, keep-alive)", baseline, [heartbeat]);
	} finally {
		await p.stop();
		bare.close();
	}
}

async function dataBench(): Promise<void> {
	const raw = new Datastore({ inMemoryOnly: true });
	const auth: Principal = { kind: "user", tenantId: "bench-tenant", userId: "u", role: "owner" };
	const Notes: ServiceSchema<ServiceSettingSchema, DbMethods> = {
		name: "notes",
		mixins: [DbMixin({ bench_notes: {} })],
		actions: {
			create: { handler(this: DbMethods, ctx: Context<{ name: string }>) { return this.db.bench_notes.insertDoc(ctx, { name: ctx.params.name }); } },
			get: { handler(this: DbMethods, ctx: Context<{ id: string }>) { return this.db.bench_notes.getDoc(ctx, ctx.params.id); } }
		}
	};
	const tb = await startBroker([Notes]);
	try {
		const rawIds: string[] = [];
		const mixinIds: string[] = [];
		const rawInsert = await measure("raw NeDB insert", async () => {
			const doc = await raw.insertAsync({ _id: newId(), tenantId: "bench-tenant", name: "n" });
			rawIds.push(doc._id as string);
		}, 2000, 4);
		const mixinInsert = await measure("db mixin insertDoc (via broker.call)", async () => {
			const doc = (await tb.broker.call("notes.create", { name: "n" }, { meta: { auth } })) as { id: string };
			mixinIds.push(doc.id);
		}, 2000, 4);
		report("Document inserts (4 concurrent, NeDB in memory)", rawInsert, [mixinInsert]);

		let i = 0;
		const rawRead = await measure("raw NeDB findOne by id", async () => {
			await raw.findOneAsync({ _id: rawIds[i++ % rawIds.length], tenantId: "bench-tenant" });
		}, 2000, 4);
		const mixinRead = await measure("db mixin getDoc (via broker.call)", async () => {
			await tb.broker.call("notes.get", { id: mixinIds[i++ % mixinIds.length] }, { meta: { auth } });
		}, 2000, 4);
		report("Document reads by id", rawRead, [mixinRead]);
	} finally {
		await tb.stop();
	}
}

async function main(): Promise<void> {
	console.log(`Marquee benchmarks — node ${process.version}, ${new Date().toISOString()}`);
	await httpBench();
	await heartbeatBench();
	await dataBench();
	agent.destroy();
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
