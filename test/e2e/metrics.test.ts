/**
 * GET /metrics of a started platform passes Prometheus' own linter, `promtool check metrics`
 * (Debian package `prometheus`): exit 0 and nothing printed. Checked on the gateway after traffic
 * that leaves every kind of metric behind (requests that succeed and fail, events, channel
 * messages, pairing), again once the per-minute rates have their first value, and on the ops port
 * of a process without the gateway. Without promtool the suite is skipped with one line saying so.
 *
 * The operator's figures (shared/ops-metrics.ts) after traffic whose every step is known
 * (test/e2e/metrics-traffic.ts): each family has its HELP and TYPE, the values the traffic must
 * leave (written out by hand), histograms that add up, no tenant or display id in any label, and
 * the whole text still passes promtool.
 */
import { spawnSync } from "node:child_process";
import { startOpsServer } from "../../shared/ops-server";
import { PLATFORM_SERVICES, pairDisplay, register, someClient, startTestPlatform, type Platform } from "../helpers/accounts";
import { request, startBroker } from "../helpers/platform";
import { describeIf } from "../helpers/servers";
import { platformAfterTraffic, samplesOf, valueOf, type Traffic } from "../helpers/metrics-traffic";

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

describe("the operator's figures on /metrics, after known traffic", () => {
	let t: Traffic;
	let text: string;

	beforeAll(async () => {
		t = await platformAfterTraffic();
		text = await t.scrape();
	}, 60_000);

	afterAll(() => t?.stop());

	const value = (name: string, labels: Record<string, string> = {}) => valueOf(text, name, labels);

	it("gives every new family its HELP and TYPE", () => {
		const families: Array<[string, string]> = [
			["marquee_displays_online", "gauge"],
			["marquee_heartbeats_total", "counter"],
			["marquee_device_lane_requests_total", "counter"],
			["marquee_manifest_recomputations_total", "counter"],
			["marquee_manifest_recompute_lag_seconds", "histogram"],
			["marquee_upload_bytes_total", "counter"],
			["marquee_webhook_deliveries_total", "counter"],
			["marquee_email_outbox_depth", "gauge"],
			["marquee_analytics_buffer_rows", "gauge"],
			["marquee_analytics_ingest_lag_seconds", "histogram"]
		];
		for (const [name, type] of families) {
			expect([name, new RegExp(`^# HELP ${name} \\S.*$`, "m").test(text), new RegExp(`^# TYPE ${name} ${type}$`, "m").test(text)]).toEqual([name, true, true]);
		}
	});

	it("counts what the traffic did", () => {
		expect(value("marquee_displays_online", { plan: "free" })).toBe(1);
		expect(value("marquee_heartbeats_total")).toBe(3);
		// The 3 heartbeats and the playback POST took the device lane; every other request was api.rest.
		for (const [code, n] of [["2xx", 4], ["3xx", 0], ["4xx", 0], ["5xx", 0]] as const) expect([code, value("marquee_device_lane_requests_total", { code })]).toEqual([code, n]);
		expect(value("marquee_upload_bytes_total", { type: "image" })).toBe(t.pngBytes);
		expect(value("marquee_upload_bytes_total", { type: "video" })).toBe(0);
		expect(value("marquee_webhook_deliveries_total", { outcome: "succeeded" })).toBe(1);
		expect(value("marquee_webhook_deliveries_total", { outcome: "retrying" })).toBe(1);
		expect(value("marquee_webhook_deliveries_total", { outcome: "failed" })).toBe(1);
		expect(value("marquee_manifest_recomputations_total", { outcome: "succeeded" })).toBe(1);
		expect(value("marquee_manifest_recomputations_total", { outcome: "failed" })).toBe(0);
		expect(value("marquee_manifest_recompute_lag_seconds_count")).toBe(1);
		expect(value("marquee_email_outbox_depth")).toBe(0);
		for (const table of ["playback_events", "device_health", "display_status", "audit_events"]) expect([table, value("marquee_analytics_buffer_rows", { table })]).toEqual([table, 0]);
		expect(value("marquee_analytics_ingest_lag_seconds_count", { table: "playback_events" })).toBe(2);
		expect(value("marquee_analytics_ingest_lag_seconds_count", { table: "device_health" })).toBe(3);
		// The display came online once (its only transition); audit records: sign-up, pairing, upload, …
		expect(value("marquee_analytics_ingest_lag_seconds_count", { table: "display_status" })).toBe(1);
		expect(value("marquee_analytics_ingest_lag_seconds_count", { table: "audit_events" })).toBeGreaterThanOrEqual(3);
	});

	it("keeps lags sensible: a recompute and an insert of this test took well under a minute", () => {
		const recompute = value("marquee_manifest_recompute_lag_seconds_sum") ?? NaN;
		expect(recompute).toBeGreaterThanOrEqual(0);
		expect(recompute).toBeLessThan(60);
		expect(value("marquee_manifest_recompute_lag_seconds_bucket", { le: "60" })).toBe(1);
		const plays = value("marquee_analytics_ingest_lag_seconds_sum", { table: "playback_events" }) ?? NaN;
		expect(plays).toBeGreaterThanOrEqual(0);
		expect(plays).toBeLessThan(2 * 60);
		expect(value("marquee_analytics_ingest_lag_seconds_bucket", { table: "playback_events", le: "60" })).toBe(2);
	});

	it("writes every histogram's buckets in ascending order, cumulative, ending at its count", () => {
		const histograms = ["marquee_manifest_recompute_lag_seconds", "marquee_analytics_ingest_lag_seconds", "moleculer_request_time"];
		const all = samplesOf(text);
		for (const name of histograms) {
			const series = new Map<string, Array<{ le: number; count: number }>>();
			for (const s of all.filter(s => s.name === `${name}_bucket`)) {
				const { le, ...rest } = s.labels;
				const key = JSON.stringify(rest);
				series.set(key, [...(series.get(key) ?? []), { le: Number(le === "+Inf" ? Infinity : le), count: s.value }]);
			}
			expect([name, series.size > 0]).toEqual([name, true]);
			for (const [key, buckets] of series) {
				const les = buckets.map(b => b.le);
				expect([name, key, les]).toEqual([name, key, [...les].sort((a, b) => a - b)]);
				const counts = buckets.map(b => b.count);
				expect([name, key, counts]).toEqual([name, key, [...counts].sort((a, b) => a - b)]);
				const count = all.find(s => s.name === `${name}_count` && JSON.stringify(s.labels) === key)?.value;
				expect([name, key, les[les.length - 1], counts[counts.length - 1]]).toEqual([name, key, Infinity, count]);
			}
		}
	});

	it("labels nothing with a tenant or display id", () => {
		for (const id of [t.admin.tenant.id, t.displayId, t.admin.user.id]) expect(text).not.toContain(id);
		const labelled = samplesOf(text).filter(s => s.name.startsWith("marquee_"));
		const names = new Set(labelled.flatMap(s => Object.keys(s.labels)));
		expect([...names].sort()).toEqual(["code", "le", "namespace", "outcome", "plan", "table", "type"]);
	});

	describeIf(promtoolInstalled, "promtool not installed (apt-get install prometheus)")("promtool", () => {
		it("finds nothing to complain about in the whole text", () => {
			expect(promtool(text)).toEqual(CLEAN);
		});
	});
});
