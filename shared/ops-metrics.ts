/**
 * The figures an operator watches (issue #16), in one catalogue: each metric's Prometheus name,
 * type, labels, help and buckets. Services register them on their broker's metric registry with
 * `opsCounter` / `opsGauge` / `opsHistogram` and update them where the thing happens; shared/
 * metrics.ts renders them with Moleculer's own (GET /metrics on the gateway, the ops port
 * elsewhere), and the operations dashboard (services/analytics/grafana.ts) queries them by these
 * names.
 *
 * Labels are bounded by construction: a plan id, an upload type, an outcome, a table name —
 * never a tenant, display or any other id, which would grow a series per customer.
 *
 * Across replicas:
 *   - counters and histograms count what this process did: sum them over instances
 *     (`sum(rate(…))`, `histogram_quantile(…, sum by (le) (rate(…_bucket)))`);
 *   - marquee_analytics_buffer_rows is this process's buffer: sum over instances;
 *   - marquee_email_outbox_depth reads the shared outbox collection, so every notifications
 *     replica exports the same number: take `max`;
 *   - marquee_displays_online is published only by the node that runs the presence sweep (one per
 *     cluster, shared/periodic.ts) and withdrawn by a node that stopped sweeping (LeaderGauge):
 *     take `max by (plan)`, which also covers the one sweep interval around a hand-over where the
 *     old and the new leader both still show it.
 *
 * Names are written as Prometheus will show them (counters ending in `_total`, units in the name),
 * so prometheusName() in shared/metrics.ts keeps them as they are.
 */
import type { MetricRegistry } from "moleculer";

interface MetricDef<L extends string> {
	name: string;
	description: string;
	labelNames: readonly L[];
	unit?: string;
	/**
	 * The label values a counter starts at 0 with, so its series exist (and rate() and ratios
	 * answer 0, not nothing) before the first event. A counter without labels always starts at 0.
	 */
	known?: ReadonlyArray<Record<L, string>>;
}

interface HistogramDef<L extends string> extends MetricDef<L> {
	buckets: readonly number[];
}

/** Seconds, from a quick recompute or insert to a backlog an operator must look at. */
const LAG_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800] as const;

export const OPS_METRICS = {
	displaysOnline: {
		name: "marquee_displays_online",
		description: "Displays online by their tenant's plan, as of the last presence sweep (published by the sweeping node only: aggregate with max)",
		labelNames: ["plan"]
	} satisfies MetricDef<"plan">,
	heartbeats: {
		name: "marquee_heartbeats_total",
		description: "Device heartbeats accepted",
		labelNames: []
	} satisfies MetricDef<never>,
	deviceLaneRequests: {
		name: "marquee_device_lane_requests_total",
		description: "Requests the gateway's device lane answered (heartbeat, manifest, proof of play), by status class; every other request is a call of api.rest",
		labelNames: ["code"],
		known: [{ code: "2xx" }, { code: "3xx" }, { code: "4xx" }, { code: "5xx" }]
	} satisfies MetricDef<"code">,
	manifestRecomputations: {
		name: "marquee_manifest_recomputations_total",
		description: "Background manifest recomputations finished, by outcome (succeeded, failed)",
		labelNames: ["outcome"],
		known: [{ outcome: "succeeded" }, { outcome: "failed" }]
	} satisfies MetricDef<"outcome">,
	manifestRecomputeLag: {
		name: "marquee_manifest_recompute_lag_seconds",
		description: "Time from a change that queued a manifest recomputation to its manifests being stored and announced",
		labelNames: [],
		unit: "second",
		buckets: LAG_BUCKETS
	} satisfies HistogramDef<never>,
	uploadBytes: {
		name: "marquee_upload_bytes_total",
		description: "Bytes of completed media uploads (the original file), by content type (image, video)",
		labelNames: ["type"],
		unit: "byte",
		known: [{ type: "image" }, { type: "video" }]
	} satisfies MetricDef<"type">,
	webhookDeliveries: {
		name: "marquee_webhook_deliveries_total",
		description: "Webhook delivery attempts by outcome: succeeded, retrying (failed, tried again later), failed (failed for good)",
		labelNames: ["outcome"],
		known: [{ outcome: "succeeded" }, { outcome: "retrying" }, { outcome: "failed" }]
	} satisfies MetricDef<"outcome">,
	emailOutboxDepth: {
		name: "marquee_email_outbox_depth",
		description: "Emails in the outbox not sent yet, queued or waiting for a retry (a shared collection: aggregate with max)",
		labelNames: []
	} satisfies MetricDef<never>,
	analyticsBufferRows: {
		name: "marquee_analytics_buffer_rows",
		description: "Analytics rows this process holds for a table, waiting for or being written in a batch",
		labelNames: ["table"]
	} satisfies MetricDef<"table">,
	analyticsIngestLag: {
		name: "marquee_analytics_ingest_lag_seconds",
		description: "Time from a row's acceptance by the platform (or its receipt by analytics) to ClickHouse taking its batch, by table",
		labelNames: ["table"],
		unit: "second",
		buckets: LAG_BUCKETS
	} satisfies HistogramDef<"table">
} as const;

/** Outcomes of a webhook delivery attempt. */
export type WebhookOutcome = "succeeded" | "retrying" | "failed";

/** The labels a metric's updates take: none for a metric without labels, every one of them otherwise. */
type LabelArgs<L extends string> = [L] extends [never] ? [] : [labels: Record<L, string>];

export interface OpsCounter<L extends string = never> {
	increment(...args: [...LabelArgs<L>, value?: number]): void;
}

export interface OpsGauge<L extends string = never> {
	set(value: number, ...labels: LabelArgs<L>): void;
	/** Drops every series (the family disappears from the scrape until set again). */
	clear(): void;
}

export interface OpsHistogram<L extends string = never> {
	observe(value: number, ...labels: LabelArgs<L>): void;
}

type Registry = Pick<MetricRegistry, "getMetric" | "register" | "isEnabled"> | null | undefined;

/**
 * The metric of `registry` with this definition, registered the first time (a second service or
 * instance in the process shares it instead of replacing it); null with metrics off.
 */
function metricOf(registry: Registry, type: "counter" | "gauge" | "histogram", def: MetricDef<string> & { buckets?: readonly number[] }): unknown {
	if (!registry?.isEnabled()) return null;
	const existing = registry.getMetric(def.name);
	if (existing) return existing;
	const { name, description, labelNames, unit, buckets } = def;
	const base = { name, description, labelNames: [...labelNames], ...(unit ? { unit } : {}) };
	// Buckets only: no sliding-window quantiles, which would add a summary and five gauges per histogram.
	if (type === "histogram") return registry.register({ ...base, type, buckets: [...(buckets ?? [])], quantiles: false });
	return type === "counter" ? registry.register({ ...base, type }) : registry.register({ ...base, type });
}

export function opsCounter<L extends string>(registry: Registry, def: MetricDef<L>): OpsCounter<L> {
	const metric = metricOf(registry, "counter", def) as { increment(labels: object, value: number): void } | null;
	for (const labels of def.known ?? (def.labelNames.length ? [] : [{}])) metric?.increment(labels, 0);
	return {
		increment: (...args: unknown[]) => {
			const [labels, value] = typeof args[0] === "object" && args[0] !== null ? [args[0], args[1]] : [{}, args[0]];
			metric?.increment(labels, typeof value === "number" ? value : 1);
		}
	};
}

export function opsGauge<L extends string>(registry: Registry, def: MetricDef<L>): OpsGauge<L> {
	const metric = metricOf(registry, "gauge", def) as { set(value: number, labels: object): void; clear(): void } | null;
	return { set: (value: number, labels?: object) => metric?.set(value, labels ?? {}), clear: () => metric?.clear() };
}

export function opsHistogram<L extends string>(registry: Registry, def: HistogramDef<L>): OpsHistogram<L> {
	const metric = metricOf(registry, "histogram", def) as { observe(value: number, labels: object): void } | null;
	return { observe: (value: number, labels?: object) => metric?.observe(value, labels ?? {}) };
}

/** A label value from data (a plan id): short and plain, or "other". Keeps a stray value from becoming a series of its own. */
export function boundedLabel(value: string | null | undefined, fallback = "other"): string {
	return value && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(value) ? value : fallback;
}

/**
 * A gauge by one label that a single node of the cluster publishes as a whole (the presence
 * sweep's leader): each publish sets every value it has seen (0 for one that dropped out, so a
 * plan whose last display went dark reads 0 rather than vanishing), and a node that has not
 * published for `staleAfterMs` — it lost the lead, or its job keeps failing — withdraws the
 * gauge rather than export a frozen count next to the new leader's.
 */
export class LeaderGauge<L extends string> {
	private readonly known = new Set<string>();
	private timer: NodeJS.Timeout | null = null;

	constructor(
		private readonly gauge: OpsGauge<L>,
		private readonly label: L,
		private readonly staleAfterMs: number,
		/** At most this many label values; the rest are added up under "other". */
		private readonly maxValues = 20
	) {}

	publish(counts: ReadonlyMap<string, number>): void {
		const folded = new Map<string, number>();
		for (const [value, count] of counts) {
			const key = this.known.has(value) || this.known.size < this.maxValues ? value : "other";
			this.known.add(key);
			folded.set(key, (folded.get(key) ?? 0) + count);
		}
		for (const value of this.known) (this.gauge.set as (value: number, labels: object) => void)(folded.get(value) ?? 0, { [this.label]: value });
		if (this.timer) clearTimeout(this.timer);
		this.timer = setTimeout(() => this.withdraw(), this.staleAfterMs);
		this.timer.unref();
	}

	/** No longer this node's to say (lost the lead, stopping). */
	withdraw(): void {
		if (this.timer) clearTimeout(this.timer);
		this.timer = null;
		this.known.clear();
		this.gauge.clear();
	}
}
