/**
 * The fleet simulator (scripts/simulate.ts), CI-sized: the platform as users start it (`tsx
 * server.ts`, embedded default) and the simulator as users run it (`npm run simulate`), each in
 * its own process. 500 screens provision themselves through a provisioning key and run for 20 s
 * at a 5 s interval — heartbeats, manifests with ETags, downloads, proof of play, live streams —
 * with zero errors.
 */
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { parseArgs, percentile, Simulator } from "../../scripts/simulate";
import { tempDir } from "../helpers/platform";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";

interface Summary {
	displays: number;
	requests: number;
	errors: number;
	playbackPosted: boolean;
	routes: Record<string, { requests: number; errors: number }>;
	problems: string[];
}

describe("the fleet simulator", () => {
	let platform: PlatformProcess;

	beforeAll(async () => {
		platform = await spawnPlatform(path.join(ROOT, "node_modules/.bin/tsx"), ["server.ts"], {
			DATA_DIR: tempDir(),
			DEFAULT_PLAN_DISPLAYS: "1000",
			RATE_LIMIT_PER_MINUTE: "100000",
			LOG_LEVEL: "warn"
		});
		await waitFor200(`${platform.url}/health/ready`, 60_000, platform);
	}, 90_000);
	afterAll(async () => {
		if (platform) {
			killGroup(platform);
			await platform.exited;
		}
	});

	it("runs 500 provisioned screens for 20 s with zero errors, every part of a screen's life included", async () => {
		const child = spawn(path.join(ROOT, "node_modules/.bin/tsx"), ["scripts/simulate.ts", "--url", platform.url, "--displays", "500", "--interval", "5", "--duration", "20", "--streams", "10", "--json", "-", "--quiet"], {
			cwd: ROOT,
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		let err = "";
		child.stdout.on("data", c => (out += c));
		child.stderr.on("data", c => (err += c));
		const code = await new Promise<number | null>(resolve => child.on("exit", resolve));
		const summary = JSON.parse(out.trim().split("\n").pop() ?? "{}") as Summary;
		expect({ code, problems: summary.problems, stderr: err.slice(-2000) }).toEqual({ code: 0, problems: [], stderr: "" });
		expect(summary.displays).toBe(500);
		expect(summary.errors).toBe(0);
		expect(summary.routes["POST /device/register"].requests).toBe(500);
		// 20 s at a 5 s interval: about 4 beats per screen, at least 3.
		expect(summary.routes["POST /device/heartbeat"].requests).toBeGreaterThanOrEqual(1500);
		expect(summary.routes["GET /device/manifest"].requests).toBeGreaterThanOrEqual(500);
		expect(summary.routes["GET /device/events"].requests).toBe(10);
		expect(summary.playbackPosted).toBe(true);
	}, 120_000);
});

describe("simulator options", () => {
	it("reads its flags and refuses bad ones", () => {
		expect(parseArgs(["--displays", "10", "--interval", "2", "--duration", "5", "--url", "http://example.com:8080/x", "--provisioning-key", "mpk_a", "--json", "-"])).toMatchObject({
			displays: 10,
			intervalSec: 2,
			durationSec: 5,
			url: "http://example.com:8080",
			provisioningKey: "mpk_a",
			json: "-"
		});
		expect(() => parseArgs(["--displays", "0"])).toThrow(/--displays/);
		expect(() => parseArgs(["--interval", "soon"])).toThrow(/--interval/);
		expect(() => parseArgs(["--bogus"])).toThrow(/Unknown option/);
		expect(percentile([5, 1, 3, 2, 4], 0.5)).toBe(3);
		expect(percentile([], 0.99)).toBe(0);
	});
});

describe("simulator requests", () => {
	it("sends a request again when the kept-alive connection it went out on was closed under it", async () => {
		// A server that answers the first request of each connection and drops the connection on
		// the second, without answering: what a server's idle timeout does to a request that
		// crosses it. Seen as ECONNRESET on a reused socket, 3 times in 40 000 heartbeats.
		let connections = 0;
		const server = net.createServer(socket => {
			connections++;
			let requests = 0;
			socket.on("data", chunk => {
				if (!chunk.toString("latin1").includes("\r\n\r\n")) return;
				requests++;
				if (requests === 1) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
				else socket.destroy();
			});
		});
		await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		const port = (server.address() as net.AddressInfo).port;
		const sim = new Simulator({ ...parseArgs([]), url: `http://127.0.0.1:${port}`, quiet: true });
		try {
			expect((await sim.request("GET /a", "GET", "/a")).status).toBe(200);
			// Goes out on the kept-alive connection, is dropped, and is sent again on a new one.
			expect((await sim.request("GET /b", "GET", "/b")).status).toBe(200);
			expect(connections).toBe(2);
			expect(sim.stats.problems).toEqual([]);
		} finally {
			await sim.stop();
			server.close();
		}
	});
});
