/**
 * Moleculer's Prometheus reporter always opens its own HTTP server. Marquee serves metrics on
 * the gateway (or the ops port), so this reporter keeps the formatting and drops the server.
 */
import { MetricReporters, type MetricRegistry } from "moleculer";

const PrometheusReporter = MetricReporters.Prometheus;
const BaseReporter = MetricReporters.Base;

export class InProcessPrometheusReporter extends PrometheusReporter {
	override init(registry: MetricRegistry): void {
		BaseReporter.prototype.init.call(this, registry);
		const self = this as unknown as { opts: { defaultLabels?: unknown }; defaultLabels: unknown };
		const labels = self.opts.defaultLabels;
		self.defaultLabels = typeof labels === "function" ? labels.call(this, registry) : labels;
	}

	override stop(): Promise<void> {
		return Promise.resolve();
	}

	/** The Prometheus text exposition of every metric of this node. */
	render(): string {
		return this.generatePrometheusResponse();
	}
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The reporter of a broker, when metrics are on. */
export function prometheusText(registry: MetricRegistry | undefined): string | null {
	const reporters = (registry as unknown as { reporter?: unknown[] } | undefined)?.reporter ?? [];
	const reporter = reporters.find((r): r is InProcessPrometheusReporter => r instanceof InProcessPrometheusReporter);
	return reporter ? reporter.render() : null;
}
