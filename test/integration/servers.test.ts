/** Sanity checks of the test-server harness itself (test/helpers/servers.ts). */
import fs from "node:fs";
import net from "node:net";
import { connect } from "nats";
import {
	clickhouseServer,
	describeWith,
	isUnavailable,
	natsServer,
	redisServer,
	requireServer,
	s3Server,
	serverAvailability,
	startServer,
	uniquePrefix,
	type ServerKind,
	type TestServer
} from "../helpers/servers";

function redisCommand(url: string, command: string): Promise<string> {
	const { hostname, port } = new URL(url);
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host: hostname, port: Number(port) }, () => socket.write(`${command}\r\n`));
		socket.once("data", data => {
			socket.destroy();
			resolve(data.toString().trim());
		});
		socket.once("error", reject);
	});
}

async function clickhouseQuery(url: string, sql: string): Promise<string> {
	const res = await fetch(url, { method: "POST", body: sql });
	const text = await res.text();
	if (!res.ok) throw new Error(text);
	return text.trim();
}

async function jetStreamWorks(url: string): Promise<boolean> {
	const nc = await connect({ servers: url });
	try {
		const jsm = await nc.jetstreamManager();
		const name = `harness_${Date.now()}`;
		await jsm.streams.add({ name, subjects: [`${name}.>`] });
		await nc.jetstream().publish(`${name}.x`, new TextEncoder().encode("hi"));
		const info = await jsm.streams.info(name);
		await jsm.streams.delete(name);
		return info.state.messages === 1;
	} finally {
		await nc.close();
	}
}

const check: Record<ServerKind, (url: string) => Promise<void>> = {
	redis: async url => expect(await redisCommand(url, "PING")).toBe("+PONG"),
	nats: async url => expect(await jetStreamWorks(url)).toBe(true),
	clickhouse: async url => expect(await clickhouseQuery(url, "SELECT 1 + 1")).toBe("2")
};
const finders = { redis: redisServer, nats: natsServer, clickhouse: clickhouseServer };

describe("harness basics", () => {
	it("uniquePrefix is short and random", () => {
		const a = uniquePrefix("rl");
		expect(a).toMatch(/^rl:[0-9a-f]{8}:$/);
		expect(uniquePrefix("rl")).not.toBe(a);
	});

	it("isUnavailable tells reasons from servers", () => {
		expect(isUnavailable({ reason: "x not installed" })).toBe(true);
		expect(isUnavailable({ url: "redis://x", stop: async () => {} })).toBe(false);
		expect(isUnavailable(null)).toBe(false);
	});

	it("s3Server starts a private embedded server and removes it on stop", async () => {
		const s3 = await s3Server();
		expect(s3.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
		expect(s3.accessKey).toBe("S3RVER");
		await s3.stop();
		await expect(fetch(s3.url)).rejects.toThrow();
	});
});

for (const kind of ["redis", "nats", "clickhouse"] as const) {
	describeWith(kind)(`${kind} harness`, () => {
		it("finds or starts a shared server, the same one on every call", async () => {
			const a = await requireServer(finders[kind]());
			const b = await requireServer(finders[kind]());
			expect(b.url).toBe(a.url);
			await check[kind](a.url);
			await a.stop(); // shared: a no-op
			await check[kind](a.url);
		}, 30_000);

		it("starts a private server from the binary; stop() kills it and removes its dir", async () => {
			const started = await startServer(kind);
			if (isUnavailable(started)) {
				expect(serverAvailability(kind)).toBeNull(); // available through a running server only
				return;
			}
			const server: TestServer = started;
			await check[kind](server.url);
			const dirs = () => fs.readdirSync("/tmp").filter(d => d.startsWith(`marquee-${kind}-`));
			const before = dirs();
			await server.stop();
			await expect(check[kind](server.url)).rejects.toThrow();
			expect(dirs().length).toBe(before.length - 1);
		}, 30_000);
	});
}
