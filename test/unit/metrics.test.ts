/**
 * The Prometheus text of shared/metrics.ts on a local broker with Marquee's broker options:
 * names by type (counters end in _total, nothing else does), histograms split into a histogram,
 * a summary of quantiles and window gauges, rates as gauges, snake_case labels, escaping, one
 * HELP/TYPE per family with its samples together, and a name clash left out instead of printed
 * twice. With promtool installed, the same text must pass `promtool check metrics`.
 */
import { spawnSync } from "node:child_process";
import { MetricReporters, type Context, type ServiceSchema } from "moleculer";
import { InProcessPrometheusReporter, prometheusName, prometheusText, snakeCaseLabel } from "../../shared/metrics";
import { startBroker, type TestBroker } from "../helpers/platform";
import { describeIf } from "../helpers/servers";

const Probe: ServiceSchema = {
	name: "probe",
	actions: {
		ok: () => ({ ok: true }),
		fail: () => {
			throw new Error("boom");
		}
	},
	events: {
		"probe.happened"(_ctx: Context) {}
	}
};

interface Family {
	help: string | null;
	type: string | null;
	samples: { name: string; labels: string; value: string }[];
}

/** The families of a Prometheus text, failing on what the text format forbids. */
function parse(text: string): Map<string, Family> {
	const families = new Map<string, Family>();
	let current = null as string | null;
	const seen = new Set<string>();
	const family = (name: string): Family => {
		if (name !== current && families.has(name)) throw new Error(`${name} is split: its lines are not together`);
		current = name;
		if (!families.has(name)) families.set(name, { help: null, type: null, samples: [] });
		return families.get(name) as Family;
	};
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const meta = /^# (HELP|TYPE) ([a-zA-Z_][a-zA-Z0-9_]*) (.*)$/.exec(line);
		if (meta) {
			const f = family(meta[2]);
			const key = meta[1] === "HELP" ? "help" : "type";
			if (f[key] !== null) throw new Error(`second ${meta[1]} for ${meta[2]}`);
			if (key === "type" && f.samples.length) throw new Error(`TYPE of ${meta[2]} after its samples`);
			f[key] = meta[3];
			continue;
		}
		const sample = /^([a-zA-Z_][a-zA-Z0-9_]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/.exec(line);
		if (!sample) throw new Error(`not a sample line: ${line}`);
		if (seen.has(`${sample[1]}${sample[2] ?? ""}`)) throw new Error(`duplicate series: ${line}`);
		seen.add(`${sample[1]}${sample[2] ?? ""}`);
		const name = current && sample[1].startsWith(current) && ["", "_bucket", "_sum", "_count"].includes(sample[1].slice(current.length)) ? current : sample[1];
		family(name).samples.push({ name: sample[1], labels: sample[2] ?? "", value: sample[3] });
	}
	return families;
}

function reporterOf(broker: TestBroker["broker"]): InProcessPrometheusReporter {
	const reporters = (broker.metrics as unknown as { reporter: unknown[] }).reporter;
	return reporters.find((r): r is InProcessPrometheusReporter => r instanceof InProcessPrometheusReporter) as InProcessPrometheusReporter;
}

describe("Prometheus names", () => {
	it.each([
		["moleculer_request_total", "counter", undefined, "moleculer_request_total"],
		["moleculer_request_levels", "counter", "request", "moleculer_request_levels_total"],
		["moleculer_transporter_packets_sent_bytes", "counter", "byte", "moleculer_transporter_packets_sent_bytes_total"],
		["moleculer_registry_nodes_total", "gauge", undefined, "moleculer_registry_nodes"],
		["os_cpu_total", "gauge", "cpu", "os_cpu"],
		["os_memory_total", "gauge", "byte", "os_memory_total_bytes"],
		["some_uptime_total", "gauge", "second", "some_uptime_total_seconds"],
		["moleculer_request_time", "histogram", "millisecond", "moleculer_request_time"],
		["marquee_device_streams_open", "gauge", undefined, "marquee_device_streams_open"],
		["odd:name with spaces", "gauge", undefined, "odd_name_with_spaces"],
		["1st_metric", "gauge", undefined, "_1st_metric"]
	])("%s (%s, %s) → %s", (name, type, unit, expected) => {
		expect(prometheusName(name, type, unit)).toBe(expected);
	});

	it.each([
		["errorName", "error_name"],
		["targetNodeID", "target_node_id"],
		["affectedNodeID", "affected_node_id"],
		["caller", "caller"],
		["already_snake", "already_snake"],
		["with-dash", "with_dash"]
	])("label %s → %s", (name, expected) => {
		expect(snakeCaseLabel(name)).toBe(expected);
	});
});

describe("Prometheus text of a broker", () => {
	let b: TestBroker;
	let text: string;
	let families: Map<string, Family>;
	let warnings: string[];

	beforeAll(async () => {
		b = await startBroker([Probe]);
		const metrics = b.broker.metrics;
		warnings = [];
		reporterOf(b.broker).logger.warn = (...args: unknown[]) => void warnings.push(args.map(String).join(" "));

		await b.broker.call("probe.ok");
		await b.broker.call("probe.ok");
		await b.broker.call("probe.fail").catch(() => null);
		await b.broker.emit("probe.happened");

		metrics.register({ name: "test.jobs", type: "counter", description: "Jobs done", labelNames: ["queueName"], rate: true });
		metrics.increment("test.jobs", { queueName: 'a "quoted" \\ back\nslash' }, 3);
		metrics.register({ name: "test.cache.total", type: "gauge", description: "Cache size", unit: "byte" });
		metrics.set("test.cache.total", 2048);
		metrics.register({ name: "test.window", type: "histogram", description: "Windowed only", quantiles: [0.5, 0.9] });
		metrics.observe("test.window", 12);
		metrics.register({ name: "test.build", type: "info", description: "Build\nwith a \\ backslash" });
		metrics.set("test.build", "v1");
		// Exposed as moleculer_registry_nodes, like moleculer.registry.nodes.total: left out.
		metrics.register({ name: "moleculer.registry.nodes", type: "gauge", description: "A clash" });
		metrics.set("moleculer.registry.nodes", 99);

		// Rates tick every 5 s; give the counter and the request histogram one now.
		const rated = (name: string) => metrics.getMetric(name) as unknown as { values: Map<string, { rate?: { rate: number } }> };
		for (const item of rated("test.jobs").values.values()) if (item.rate) item.rate.rate = 42;
		for (const item of rated("moleculer.request.time").values.values()) if (item.rate) item.rate.rate = 7;

		text = prometheusText(metrics) ?? "";
		families = parse(text);
	});

	afterAll(() => b?.stop());

	it("gives every family one HELP and one TYPE, before its samples, which stay together", () => {
		expect(families.size).toBeGreaterThan(30);
		for (const [name, f] of families) {
			expect({ name, help: typeof f.help, type: f.type && ["counter", "gauge", "histogram", "summary"].includes(f.type) }).toEqual({ name, help: "string", type: true });
			expect(f.samples.length).toBeGreaterThan(0);
		}
		expect(text.endsWith("\n")).toBe(true);
	});

	it("ends counters in _total and nothing else", () => {
		for (const [name, f] of families) expect({ name, total: name.endsWith("_total") }).toEqual({ name, total: f.type === "counter" });
		expect(families.get("moleculer_request_levels_total")?.type).toBe("counter");
		expect(families.get("moleculer_registry_nodes")?.type).toBe("gauge");
		expect(families.get("test_cache_total_bytes")?.samples.map(s => s.value)).toEqual(["2048"]);
	});

	it("keeps moleculer's request counter as it was", () => {
		expect(text).toMatch(/^# TYPE moleculer_request_total counter$/m);
		expect(text).toMatch(/^moleculer_request_total\{.*action="probe\.ok".*\} 2$/m);
	});

	it("splits a histogram with quantiles into a histogram, a summary of quantiles and window gauges", () => {
		const hist = families.get("moleculer_request_time");
		expect(hist?.type).toBe("histogram");
		const ok = (s: { labels: string }) => s.labels.includes('action="probe.ok"');
		const own = hist?.samples.filter(ok) ?? [];
		expect(own.filter(s => s.name === "moleculer_request_time_bucket").length).toBeGreaterThan(1);
		expect(own.find(s => s.labels.includes('le="+Inf"'))?.value).toBe("2");
		expect(own.find(s => s.name === "moleculer_request_time_count")?.value).toBe("2");
		expect(own.find(s => s.name === "moleculer_request_time_sum")).toBeDefined();
		expect(own.some(s => s.labels.includes("quantile="))).toBe(false);

		const quantiles = families.get("moleculer_request_time_quantiles");
		expect(quantiles?.type).toBe("summary");
		expect(quantiles?.samples.filter(ok).map(s => /quantile="([^"]+)"/.exec(s.labels)?.[1])).toEqual(["0.5", "0.9", "0.95", "0.99", "0.999"]);
		for (const stat of ["min", "mean", "variance", "stddev", "max"]) {
			const f = families.get(`moleculer_request_time_${stat}`);
			expect({ stat, type: f?.type, help: f?.help }).toEqual({ stat, type: "gauge", help: expect.stringContaining("sliding window") });
		}
	});

	it("makes a histogram without buckets a summary under its own name", () => {
		const f = families.get("test_window");
		expect(f?.type).toBe("summary");
		const ns = b.config.namespace;
		expect(f?.samples.map(s => `${s.name}${s.labels} ${s.value}`)).toEqual([
			`test_window{namespace="${ns}",quantile="0.5"} 12`,
			`test_window{namespace="${ns}",quantile="0.9"} 12`,
			`test_window_sum{namespace="${ns}"} 12`,
			`test_window_count{namespace="${ns}"} 1`
		]);
		expect(families.get("test_window_max")?.samples.map(s => s.value)).toEqual(["12"]);
	});

	it("prints rates as gauges named after moleculer's metric", () => {
		expect(families.get("test_jobs_rate")?.type).toBe("gauge");
		expect(families.get("test_jobs_rate")?.samples.map(s => s.value)).toEqual(["42"]);
		expect(families.get("moleculer_request_time_rate")?.samples.every(s => s.value === "7")).toBe(true);
	});

	it("writes label names in snake_case and escapes label values and help", () => {
		const ns = b.config.namespace;
		expect(text).toMatch(/^moleculer_request_error_total\{.*action="probe\.fail",.*,error_name="Error",error_code="undefined",error_type="undefined"\} 1$/m);
		expect(text).not.toMatch(/errorName|errorCode|errorType/);
		expect(text).toContain(`test_jobs_total{namespace="${ns}",queue_name="a \\"quoted\\" \\\\ back\\nslash"} 3`);
		expect(text).toContain("# HELP test_build Build\\nwith a \\\\ backslash");
		expect(text).toContain(`test_build{namespace="${ns}",value="v1"} 1`);
	});

	it("leaves out a metric whose name another already exposes, and says so once", () => {
		expect(families.get("moleculer_registry_nodes")?.samples.map(s => s.value)).toEqual(["1"]);
		expect(text).not.toMatch(/ 99$/m);
		prometheusText(b.broker.metrics);
		expect(warnings).toEqual(["metric moleculer.registry.nodes is not exposed: moleculer_registry_nodes already exposes moleculer.registry.nodes.total"]);
	});

	describeIf(spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0, "promtool not installed (apt-get install prometheus)")("promtool", () => {
		it("finds nothing to complain about", () => {
			const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
			expect({ status: lint.status, stdout: lint.stdout, stderr: lint.stderr }).toEqual({ status: 0, stdout: "", stderr: "" });
		});

		it("complains about Moleculer's own rendering of the same metrics (so a clean answer means something)", () => {
			// Without the test.* metrics: Moleculer prints help text unescaped, which promtool cannot even parse.
			const reporter = reporterOf(b.broker);
			const excludes = reporter.opts.excludes;
			reporter.opts.excludes = ["test.**"];
			const moleculerText = MetricReporters.Prometheus.prototype.generatePrometheusResponse.call(reporter);
			reporter.opts.excludes = excludes;
			const lint = spawnSync("promtool", ["check", "metrics"], { input: moleculerText, encoding: "utf8" });
			expect(lint.status).not.toBe(0);
			expect(lint.stderr).toMatch(/^moleculer_request_levels counter metrics should have "_total" suffix$/m);
			expect(lint.stderr).toMatch(/^moleculer_request_time non-summary metrics should not have "quantile" label$/m);
		});
	});
});
