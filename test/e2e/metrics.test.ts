/**
 * GET /metrics of a started platform passes Prometheus' own linter, `promtool check metrics`
 * (Debian package `prometheus`): exit 0 and nothing printed. Checked on the gateway after traffic
 * that leaves every kind of metric behind (requests that succeed and fail, events, channel
 * messages, pairing), again once the per-minute rates have their first value, and on the ops port
 * of a process without the gateway. Without promtool the suite is skipped with one line saying so.
 */
import { spawnSync } from "node:child_process";
import { startOpsServer } from "../../shared/ops-server";
import { PLATFORM_SERVICES, pairDisplay, register, someClient, startTestPlatform, type Platform } from "../helpers/accounts";
import { request, startBroker } from "../helpers/platform";
import { describeIf } from "../helpers/servers";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

const promtoolInstalled = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;

/** What `promtool check metrics` says about `text`. */
function promtool(text: string): { status: number | null; stdout: string; stderr: string } {
	const run = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
	return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const CLEAN = { status: 0, stdout: "", stderr: "" };

describeIf(promtoolInstalled, "promtool not installed (apt-get install prometheus)")("/metrics passes `promtool check metrics`", () => {
	let p: Platform;

	beforeAll(async () => {
		p = await startTestPlatform();
		const session = await register(p);
		await pairDisplay(p, session);
		const wrong = await request(p.api("/auth/login"), { method: "POST", json: { email: session.user.email, password: `${session.password}-wrong` }, headers: someClient() });
		expect(wrong.status).toBe(401);
		expect((await request(p.api("/no-such-route"))).status).toBe(404);
	}, 30_000);

	afterAll(() => p?.stop());

	it("on the gateway, after traffic", async () => {
		const res = await request(`${p.url}/metrics`);
		expect(res.status).toBe(200);
		// The traffic left its metrics: errors (with their labels), request times, the streams gauge.
		expect(res.text).toMatch(/^moleculer_request_error_total\{.*error_code="401".*\} \d+$/m);
		expect(res.text).toMatch(/^# TYPE moleculer_request_time histogram$/m);
		expect(res.text).toMatch(/^# TYPE marquee_device_streams_open gauge$/m);
		expect(promtool(res.text)).toEqual(CLEAN);
	});

	it("on the gateway, once the rates have their first value (5 s after the traffic)", async () => {
		let text = "";
		for (let i = 0; i < 120 && !/^moleculer_request_total_rate\{/m.test(text); i++) {
			await sleep(100);
			text = (await request(`${p.url}/metrics`)).text;
		}
		expect(text).toMatch(/^# TYPE moleculer_request_total_rate gauge$/m);
		expect(promtool(text)).toEqual(CLEAN);
	}, 30_000);

	it("on the ops port of a process without the gateway", async () => {
		const b = await startBroker(PLATFORM_SERVICES, { OPS_PORT: "0" });
		const ops = await startOpsServer(b.config, b.broker);
		try {
			const res = await request(`http://127.0.0.1:${ops.port}/metrics`);
			expect(res.status).toBe(200);
			expect(res.text).toMatch(/^# TYPE moleculer_registry_nodes gauge$/m);
			expect(promtool(res.text)).toEqual(CLEAN);
		} finally {
			await ops.close();
			await b.stop();
		}
	});
});
