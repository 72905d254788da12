/**
 * Prometheus text of Moleculer's metrics, served by the gateway (GET /metrics) or, in a process
 * without the gateway, on the ops port (shared/ops-server.ts).
 *
 * Moleculer's Prometheus reporter always opens its own HTTP server, so this reporter keeps its
 * options (includes, excludes, name prefix/suffix/formatter, label name formatter, default labels)
 * and drops the server. It also renders the text itself, because Moleculer's rendering fails
 * Prometheus' linter (`promtool check metrics`). Every metric keeps its values, labels and
 * description; what changes is how each is exposed:
 *
 *   - a counter ends in `_total`: moleculer.request.levels → moleculer_request_levels_total,
 *     moleculer.transporter.packets.sent.bytes → moleculer_transporter_packets_sent_bytes_total;
 *   - any other metric does not: a "….total" gauge (a size or a number of things, not a count of
 *     events) drops the suffix, moleculer.registry.nodes.total → moleculer_registry_nodes,
 *     os.cpu.total → os_cpu, unless it is in bytes or seconds, where the unit follows instead,
 *     os.memory.total → os_memory_total_bytes;
 *   - a histogram is a Prometheus histogram: `_bucket` (in ascending order), `_sum`, `_count`. Moleculer adds
 *     quantiles and statistics over a sliding window (1 min by default) under the same name;
 *     they become families of their own: the summary `<name>_quantiles` (`quantile` label) and
 *     the gauges `<name>_min`, `_mean`, `_variance`, `_stddev`, `_max`. A histogram without
 *     buckets is a summary under its own name (quantiles, `_sum`, `_count`);
 *   - a rate (requests per minute, a moving average) is the gauge `<name>_rate`, named after the
 *     metric as Moleculer names it (moleculer_request_total_rate);
 *   - an info metric is a gauge of 1 with its value in the `value` label (as Moleculer does);
 *   - label names are snake_case (errorName → error_name, targetNodeID → target_node_id);
 *   - every family has its HELP and TYPE and its samples together; metric and label names hold
 *     only [a-zA-Z0-9_]; help text and label values are escaped.
 * Values keep Moleculer's units (times in milliseconds, as the help text says).
 */
import { MetricReporters, type MetricRegistry } from "moleculer";

const PrometheusReporter = MetricReporters.Prometheus;
const BaseReporter = MetricReporters.Base;

type ReporterOptions = NonNullable<ConstructorParameters<typeof PrometheusReporter>[0]>;
type Labels = Record<string, unknown>;

/** One item of a metric's snapshot (the fields Moleculer's counter, gauge, info and histogram fill). */
interface SnapshotItem {
	labels?: Labels;
	value?: unknown;
	rate?: number;
	count?: number;
	sum?: number;
	buckets?: Record<string, number>;
	quantiles?: Record<string, number | null | undefined>;
	min?: number | null;
	mean?: number | null;
	variance?: number | null;
	stdDev?: number | null;
	max?: number | null;
}

interface Metric {
	name: string;
	type: string;
	unit?: string;
	description?: string;
	snapshot(): SnapshotItem[];
}

type FamilyType = "counter" | "gauge" | "histogram" | "summary";

interface Family {
	name: string;
	type: FamilyType;
	help: string;
	samples: string[];
}

/** Prometheus base units for Moleculer's units, where one exists without converting values. */
const BASE_UNITS: Record<string, string> = { byte: "bytes", second: "seconds" };

/** The window statistics of a histogram with quantiles, each exposed as its own gauge. */
const WINDOW_STATS = [
	["min", "min", "minimum"],
	["mean", "mean", "mean"],
	["variance", "variance", "variance"],
	["stdDev", "stddev", "standard deviation"],
	["max", "max", "maximum"]
] as const;

/** A name Prometheus accepts: [a-zA-Z_][a-zA-Z0-9_]* (colons are for recording rules). */
function sanitizeName(name: string): string {
	const clean = name.replace(/[^a-zA-Z0-9_]/g, "_");
	return /^[0-9]/.test(clean) ? `_${clean}` : clean;
}

/** errorName → error_name, targetNodeID → target_node_id, caller → caller. */
export function snakeCaseLabel(name: string): string {
	return sanitizeName(
		name
			.replace(/([a-z0-9])([A-Z])/g, "$1_$2")
			.replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
			.toLowerCase()
	);
}

/**
 * The Prometheus name of a metric family, from the name Moleculer's reporter would print
 * (`moleculer_request_levels`) and the metric's type and unit; see the header.
 */
export function prometheusName(name: string, type: string, unit?: string): string {
	const base = sanitizeName(name);
	if (type === "counter") return base.endsWith("_total") ? base : `${base}_total`;
	if (!base.endsWith("_total")) return base;
	const baseUnit = unit ? BASE_UNITS[unit] : undefined;
	return baseUnit ? `${base}_${baseUnit}` : base.slice(0, -"_total".length);
}

function escapeHelp(text: string): string {
	return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function sampleValue(value: unknown): string {
	if (typeof value === "number") return Number.isNaN(value) ? "NaN" : value === Infinity ? "+Inf" : value === -Infinity ? "-Inf" : String(value);
	if (typeof value === "boolean") return value ? "1" : "0";
	return "NaN";
}

export class InProcessPrometheusReporter extends PrometheusReporter {
	/** Name clashes already logged (render runs on every scrape). */
	private readonly warned = new Set<string>();

	constructor(opts: ReporterOptions = {}) {
		super({ labelNameFormatter: snakeCaseLabel, ...opts });
	}

	override init(registry: MetricRegistry): void {
		BaseReporter.prototype.init.call(this, registry);
		const self = this as unknown as { opts: { defaultLabels?: unknown }; defaultLabels: unknown };
		const labels = self.opts.defaultLabels;
		self.defaultLabels = typeof labels === "function" ? labels.call(this, registry) : labels;
	}

	override stop(): Promise<void> {
		return Promise.resolve();
	}

	/** Label names formatted, then made valid; label values escaped (newlines too). */
	override formatLabelName(name: string): string {
		return sanitizeName(super.formatLabelName(name));
	}

	override escapeLabelValue(str: string): string {
		return String(str).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
	}

	private warnOnce(message: string): void {
		if (this.warned.has(message)) return;
		this.warned.add(message);
		this.logger?.warn(message);
	}

	override generatePrometheusResponse(): string {
		return this.render();
	}

	/** The Prometheus text exposition of every metric of this node; see the header. */
	render(): string {
		const families = new Map<string, Family>();
		const claimed = new Map<string, string>();
		for (const metric of this.registry.store.values() as Iterable<Metric>) {
			if (!this.matchMetricName(metric.name)) continue;
			// Moleculer skips these too: one label set per second.
			if (metric.name.startsWith("os.datetime")) continue;
			const items = metric.snapshot();
			if (items.length === 0) continue;

			// A family belongs to one metric: another metric exposed under the same name is left
			// out (with a warning) rather than producing a second TYPE or duplicate series.
			const family = (familyName: string, type: FamilyType, help: string): Family | null => {
				const owner = claimed.get(familyName);
				if (owner !== undefined && owner !== metric.name) {
					this.warnOnce(`metric ${metric.name} is not exposed: ${familyName} already exposes ${owner}`);
					return null;
				}
				claimed.set(familyName, metric.name);
				let found = families.get(familyName);
				if (!found) {
					found = { name: familyName, type, help, samples: [] };
					families.set(familyName, found);
				}
				return found;
			};
			const sample = (f: Family | null, suffix: string, labels: Labels | undefined, value: unknown, extra?: Labels) =>
				f?.samples.push(`${f.name}${suffix}${this.labelsToStr(labels ?? {}, extra)} ${sampleValue(value)}`);

			const moleculerName = this.formatMetricName(metric.name).replace(/[.-]/g, "_");
			const name = prometheusName(moleculerName, metric.type, metric.unit);
			const help = metric.description || metric.name + (metric.unit ? ` (${metric.unit})` : "");
			const rates = () => family(`${sanitizeName(moleculerName)}_rate`, "gauge", `${help} (rate per minute)`);

			switch (metric.type) {
				case "counter":
				case "gauge": {
					const main = family(name, metric.type === "counter" ? "counter" : "gauge", help);
					for (const item of items) {
						sample(main, "", item.labels, item.value);
						if (item.rate) sample(rates(), "", item.labels, item.rate);
					}
					break;
				}
				case "info": {
					const main = family(name, "gauge", help);
					for (const item of items) sample(main, "", item.labels, 1, { value: item.value });
					break;
				}
				case "histogram": {
					const bucketed = items.some(item => item.buckets);
					const main = family(name, bucketed ? "histogram" : "summary", help);
					for (const item of items) {
						if (item.buckets) {
							// In ascending order: Moleculer keeps buckets as object keys, which put whole numbers before fractions (1, 5, 0.05).
							const buckets = Object.entries(item.buckets).sort(([a], [b]) => Number(a) - Number(b));
							for (const [le, count] of buckets) sample(main, "_bucket", item.labels, count, { le });
							sample(main, "_bucket", item.labels, item.count, { le: "+Inf" });
						}
						if (item.quantiles) {
							const quantiles = bucketed ? family(`${name}_quantiles`, "summary", `${help} (quantiles over a sliding window)`) : main;
							for (const [quantile, value] of Object.entries(item.quantiles)) sample(quantiles, "", item.labels, value, { quantile });
							for (const [field, suffix, what] of WINDOW_STATS) {
								sample(family(`${name}_${suffix}`, "gauge", `${help} (${what} over a sliding window)`), "", item.labels, item[field]);
							}
						}
						sample(main, "_sum", item.labels, item.sum);
						sample(main, "_count", item.labels, item.count);
						if (item.rate) sample(rates(), "", item.labels, item.rate);
					}
					break;
				}
			}
		}

		const lines: string[] = [];
		for (const f of families.values()) {
			if (f.samples.length === 0) continue;
			lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.samples);
		}
		return lines.length ? `${lines.join("\n")}\n` : "";
	}
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The reporter of a broker, when metrics are on. */
export function prometheusText(registry: MetricRegistry | undefined): string | null {
	const reporters = (registry as unknown as { reporter?: unknown[] } | undefined)?.reporter ?? [];
	const reporter = reporters.find((r): r is InProcessPrometheusReporter => r instanceof InProcessPrometheusReporter);
	return reporter ? reporter.render() : null;
}
