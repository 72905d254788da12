/**
 * The Grafana dashboards provisioned next to ClickHouse (deploy/grafana, written by
 * `npm run grafana`), built from the service's own report queries: every panel runs a
 * queries.ts statement whose window is Grafana's — the `tenant` dashboard variable and the
 * time picker's range (`${__from}`, `${__to}`: epoch milliseconds, as the tables keep time) —
 * so a dashboard and GET /analytics/* answer the same question with the same SQL. What a panel
 * adds is a thin SELECT around that statement (a DateTime column for Grafana's time axis,
 * a count of outages), never a second copy of a report.
 *
 * Pure: answers JSON and YAML text; test/integration/grafana.test.ts runs every panel's SQL on
 * chDB and checks the files in deploy/grafana are what this module builds now.
 *
 * Buckets (hours, 5 minutes) are cut in UTC: the same instants as in any zone with whole-hour
 * offsets; Grafana shows them in the viewer's timezone.
 *
 * Beside them, the operations dashboard (operations.json) reads Prometheus (a second data source,
 * scraping every process's /metrics with deploy/prometheus/prometheus.yml): the figures of
 * shared/ops-metrics.ts and Moleculer's request rate, errors and latency, across every replica and
 * never per tenant. The same test checks that each metric its PromQL names is in a real scrape.
 */
import { OPS_METRICS } from "../../shared/ops-metrics";
import { healthSeries, playbackReport, playbackTotals, uptimeReport, type HealthInterval, type Window } from "./queries";
import { ident, join, Sql, sql } from "./sql";

/** The Grafana ClickHouse plugin, pinned: docker-compose.yml installs this version (GF_INSTALL_PLUGINS). */
export const CLICKHOUSE_PLUGIN = { id: "grafana-clickhouse-datasource", version: "4.20.0" } as const;

/** The provisioned data source every panel and variable names. */
export const DATASOURCE = { type: CLICKHOUSE_PLUGIN.id, uid: "marquee-clickhouse" } as const;

/** Where the grafana container reads the dashboard files (the provider's path, compose's mount target). */
export const DASHBOARDS_PATH = "/etc/grafana/dashboards/marquee";

/** Where ClickHouse is for the grafana container: the compose service, its HTTP port, the database analytics migrates. */
export const CLICKHOUSE = { host: "clickhouse", port: 8123, database: "marquee" } as const;

/** The variables Grafana substitutes into the SQL, as the dashboards write them. */
export const GRAFANA_VARIABLES = {
	/** The chosen tenant as a quoted SQL string literal. */
	tenant: "${tenant:sqlstring}",
	/** The time range's bounds in epoch milliseconds. */
	from: "${__from}",
	to: "${__to}"
} as const;

/** A report's window as Grafana fills it in. */
export const GRAFANA_WINDOW: Window = { tenantId: new Sql(GRAFANA_VARIABLES.tenant), from: new Sql(GRAFANA_VARIABLES.from), to: new Sql(GRAFANA_VARIABLES.to) };

/** The tenants an operator may pick. */
export const TENANT_QUERY =
	"SELECT DISTINCT tenant_id FROM (SELECT tenant_id FROM playback_events UNION ALL SELECT tenant_id FROM display_status UNION ALL SELECT tenant_id FROM device_health) ORDER BY tenant_id";

const TIMEZONE = "UTC";
/** Rows of a table panel, points of a series (the API's own maximum). */
const LIMIT = 10_000;
/** Nothing is known of the future: uptime ends now at the latest (as the service's `uptime` action clamps it), never before the range starts. */
const UPTIME_END = new Sql(`greatest(${GRAFANA_VARIABLES.from}, least(${GRAFANA_VARIABLES.to}, toUInt64(now()) * 1000))`);

// ---- the panels' SQL ---------------------------------------------------------------------------

/** A report's rows on Grafana's time axis: `bucket` (epoch ms) as a UTC DateTime named `time`, and the given columns. */
function onTimeAxis(report: Sql, bucket: Sql, columns: readonly string[]): Sql {
	return sql`SELECT toDateTime(intDiv(${bucket}, 1000), ${TIMEZONE}) AS time, ${join(columns.map(ident), ", ")}
FROM (${report})
ORDER BY time`;
}

const playsPerHour = (columns: readonly string[]) => onTimeAxis(playbackReport(GRAFANA_WINDOW, {}, "hour", TIMEZONE, LIMIT), sql`toUInt64(key)`, columns);

const health = (interval: HealthInterval, columns: readonly string[]) => onTimeAxis(healthSeries(GRAFANA_WINDOW, undefined, interval, TIMEZONE, LIMIT), sql`bucket`, columns);

const uptime = () => uptimeReport(GRAFANA_WINDOW, UPTIME_END, undefined, LIMIT);

/** The SQL of every panel, by dashboard (the dashboards below are built from exactly these). */
export const PANEL_QUERIES = {
	playback: {
		totals: () => playbackTotals(GRAFANA_WINDOW, {}),
		byContent: () => playbackReport(GRAFANA_WINDOW, {}, "content", TIMEZONE, LIMIT),
		byDisplay: () => playbackReport(GRAFANA_WINDOW, {}, "display", TIMEZONE, LIMIT),
		playsPerHour: () => playsPerHour(["plays"]),
		playTimePerHour: () => playsPerHour(["durationMs"])
	},
	uptime: {
		fleet: () => sql`SELECT if(sum(onlineMs) + sum(offlineMs) = 0, NULL, round(sum(onlineMs) * 100 / (sum(onlineMs) + sum(offlineMs)), 2)) AS uptimePct,
	sum(length(outages)) AS outages, count() AS displays
FROM (${uptime()})`,
		perDisplay: () => sql`SELECT displayId, name, uptimePct, onlineMs, offlineMs, length(outages) AS outageCount
FROM (${uptime()})`,
		outages: () => sql`SELECT displayId, name, toDateTime(intDiv(outage.1, 1000), ${TIMEZONE}) AS startedAt, toDateTime(intDiv(outage.2, 1000), ${TIMEZONE}) AS endedAt, outage.2 - outage.1 AS durationMs
FROM (${uptime()}) ARRAY JOIN outages AS outage
ORDER BY startedAt DESC, displayId`
	},
	health: {
		load: (interval: HealthInterval) => health(interval, ["cpu", "memory", "disk"]),
		temperature: (interval: HealthInterval) => health(interval, ["temperature"]),
		displays: (interval: HealthInterval) => health(interval, ["displays"])
	}
};

// ---- dashboard JSON ----------------------------------------------------------------------------

export interface Target {
	refId: string;
	datasource: typeof DATASOURCE;
	editorType: "sql";
	/** The plugin's (sqlds') result format: 1 a table, 0 a time series. */
	format: 0 | 1;
	queryType: "table" | "timeseries";
	rawSql: string;
	pluginVersion: string;
}

/** A panel; `T` is its data source's query (ClickHouse SQL by default, PromQL on the operations dashboard). */
export interface Panel<T extends { datasource: unknown } = Target> {
	id: number;
	type: string;
	title: string;
	gridPos: { x: number; y: number; w: number; h: number };
	description?: string;
	datasource?: T["datasource"];
	targets?: T[];
	fieldConfig?: { defaults: Record<string, unknown>; overrides: Array<Record<string, unknown>> };
	options?: Record<string, unknown>;
	collapsed?: boolean;
	panels?: Array<Panel<T>>;
}

export interface Dashboard<T extends { datasource: unknown } = Target> {
	uid: string;
	title: string;
	description: string;
	tags: string[];
	editable: boolean;
	graphTooltip: number;
	schemaVersion: number;
	version: number;
	time: { from: string; to: string };
	timezone: string;
	refresh: string;
	links: Array<Record<string, unknown>>;
	annotations: { list: unknown[] };
	templating: { list: Array<Record<string, unknown>> };
	panels: Array<Panel<T>>;
}

function target(query: Sql, kind: "table" | "timeseries"): Target {
	return { refId: "A", datasource: DATASOURCE, editorType: "sql", format: kind === "table" ? 1 : 0, queryType: kind, rawSql: query.text, pluginVersion: CLICKHOUSE_PLUGIN.version };
}

interface FieldLook {
	displayName?: string;
	unit?: string;
	decimals?: number;
}

/** Per-column display name and unit. */
function fields(looks: Record<string, FieldLook>, defaults: Record<string, unknown> = {}): NonNullable<Panel["fieldConfig"]> {
	return {
		defaults,
		overrides: Object.entries(looks).map(([name, look]) => ({
			matcher: { id: "byName", options: name },
			properties: Object.entries(look).map(([id, value]) => ({ id, value }))
		}))
	};
}

const at = (x: number, y: number, w: number, h: number) => ({ x, y, w, h });

function table(id: number, title: string, gridPos: Panel["gridPos"], query: Sql, looks: Record<string, FieldLook>, description?: string): Panel {
	return {
		id,
		type: "table",
		title,
		...(description ? { description } : {}),
		gridPos,
		datasource: DATASOURCE,
		targets: [target(query, "table")],
		fieldConfig: fields(looks),
		options: { showHeader: true, cellHeight: "sm" }
	};
}

function stat(id: number, title: string, gridPos: Panel["gridPos"], query: Sql, looks: Record<string, FieldLook>, description?: string): Panel {
	return {
		id,
		type: "stat",
		title,
		...(description ? { description } : {}),
		gridPos,
		datasource: DATASOURCE,
		targets: [target(query, "table")],
		fieldConfig: fields(looks),
		options: { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, textMode: "value_and_name", colorMode: "none", graphMode: "none", justifyMode: "auto", orientation: "auto" }
	};
}

function series(id: number, title: string, gridPos: Panel["gridPos"], query: Sql, looks: Record<string, FieldLook>, custom: Record<string, unknown>, defaults: Record<string, unknown> = {}): Panel {
	return {
		id,
		type: "timeseries",
		title,
		gridPos,
		datasource: DATASOURCE,
		targets: [target(query, "timeseries")],
		fieldConfig: fields(looks, { ...defaults, custom: { spanNulls: false, ...custom } }),
		options: { legend: { showLegend: true, displayMode: "list", placement: "bottom" }, tooltip: { mode: "multi", sort: "none" } }
	};
}

function row<T extends { datasource: unknown } = Target>(id: number, title: string, y: number): Panel<T> {
	return { id, type: "row", title, gridPos: at(0, y, 24, 1), collapsed: false, panels: [] };
}

const BARS = { drawStyle: "bars", fillOpacity: 80, lineWidth: 1 };
const LINES = { drawStyle: "line", fillOpacity: 10, lineWidth: 2, showPoints: "auto" };

const TENANT_VARIABLE = {
	name: "tenant",
	label: "Tenant",
	type: "query",
	datasource: DATASOURCE,
	query: { refId: "tenant", queryType: "sql", rawSql: TENANT_QUERY },
	definition: TENANT_QUERY,
	refresh: 1,
	sort: 0,
	multi: false,
	includeAll: false,
	// Only tenants the query lists: no value typed into the URL reaches the SQL.
	allowCustomValue: false,
	hide: 0,
	regex: "",
	current: {},
	options: []
};

function dashboard(uid: string, title: string, description: string, from: string, panels: Panel[]): Dashboard {
	return {
		uid,
		title,
		description,
		tags: ["marquee"],
		editable: false,
		graphTooltip: 1,
		schemaVersion: 39,
		version: 1,
		time: { from, to: "now" },
		timezone: "browser",
		refresh: "",
		links: [{ type: "dashboards", title: "Marquee", tags: ["marquee"], asDropdown: false, includeVars: true, keepTime: true }],
		annotations: { list: [] },
		templating: { list: [TENANT_VARIABLE] },
		panels
	};
}

const PLAY_LOOKS = (what: "Content" | "Display"): Record<string, FieldLook> => ({
	key: { displayName: `${what} id` },
	name: { displayName: what },
	plays: { displayName: "Plays" },
	durationMs: { displayName: "Play time", unit: "ms" },
	avgDurationMs: { displayName: "Average play", unit: "ms" },
	completionRate: { displayName: "Played to the end", unit: "percentunit" }
});

function playbackDashboard(): Dashboard {
	const q = PANEL_QUERIES.playback;
	return dashboard("marquee-playback", "Marquee — Playback", "Proof of play of one tenant: plays and play time by content, by display and per hour (UTC hours). A replayed event counts once.", "now-7d", [
		stat(1, "Totals", at(0, 0, 24, 4), q.totals(), {
			plays: { displayName: "Plays" },
			durationMs: { displayName: "Play time", unit: "ms" },
			displays: { displayName: "Displays" },
			contents: { displayName: "Content items" }
		}),
		table(2, "Plays by content", at(0, 4, 12, 10), q.byContent(), PLAY_LOOKS("Content")),
		table(3, "Plays by display", at(12, 4, 12, 10), q.byDisplay(), PLAY_LOOKS("Display")),
		series(4, "Plays per hour", at(0, 14, 12, 8), q.playsPerHour(), { plays: { displayName: "Plays", decimals: 0 } }, BARS),
		series(5, "Play time per hour", at(12, 14, 12, 8), q.playTimePerHour(), { durationMs: { displayName: "Play time", unit: "ms" } }, BARS)
	]);
}

function uptimeDashboard(): Dashboard {
	const q = PANEL_QUERIES.uptime;
	const basis = "From the displays' online/offline transitions, up to now at the latest; time before a display's first known transition counts as neither.";
	return dashboard("marquee-uptime", "Marquee — Uptime", `Uptime and outages of one tenant's displays. ${basis}`, "now-7d", [
		stat(
			1,
			"Fleet",
			at(0, 0, 24, 4),
			q.fleet(),
			{ uptimePct: { displayName: "Uptime", unit: "percent", decimals: 2 }, outages: { displayName: "Outages" }, displays: { displayName: "Displays" } },
			"Uptime of all displays together (online time over known time)."
		),
		table(
			2,
			"Uptime per display",
			at(0, 4, 24, 10),
			q.perDisplay(),
			{
				displayId: { displayName: "Display id" },
				name: { displayName: "Display" },
				uptimePct: { displayName: "Uptime", unit: "percent", decimals: 2 },
				onlineMs: { displayName: "Online", unit: "ms" },
				offlineMs: { displayName: "Offline", unit: "ms" },
				outageCount: { displayName: "Outages" }
			},
			`Lowest uptime first. ${basis}`
		),
		table(
			3,
			"Outages",
			at(0, 14, 24, 10),
			q.outages(),
			{
				displayId: { displayName: "Display id" },
				name: { displayName: "Display" },
				startedAt: { displayName: "Offline from" },
				endedAt: { displayName: "Until" },
				durationMs: { displayName: "Duration", unit: "ms" }
			},
			"Each offline stretch in range, newest first (an outage still going on ends now); at most the newest 100 per display."
		)
	]);
}

function healthDashboard(): Dashboard {
	const q = PANEL_QUERIES.health;
	const intervals: Array<[HealthInterval, string]> = [
		["5m", "Every 5 minutes"],
		["1h", "Hourly"]
	];
	const panels: Panel[] = [];
	let id = 1;
	let y = 0;
	for (const [interval, label] of intervals) {
		panels.push(row(id++, label, y++));
		const percent = { unit: "percent", min: 0, max: 100 };
		panels.push(
			series(id++, `CPU, memory and disk (${interval})`, at(0, y, 12, 8), q.load(interval), { cpu: { displayName: "CPU" }, memory: { displayName: "Memory" }, disk: { displayName: "Disk" } }, LINES, percent),
			series(id++, `Temperature (${interval})`, at(12, y, 6, 8), q.temperature(interval), { temperature: { displayName: "Temperature", unit: "celsius" } }, LINES),
			series(id++, `Reporting displays (${interval})`, at(18, y, 6, 8), q.displays(interval), { displays: { displayName: "Displays", decimals: 0 } }, BARS)
		);
		y += 8;
	}
	return dashboard(
		"marquee-fleet-health",
		"Marquee — Fleet health",
		"Averages of the displays' heartbeat metrics (CPU, memory and disk in %, temperature in °C) per 5 minutes and per hour (UTC buckets), and how many displays reported. At most 10,000 points per series: for 5-minute buckets, ranges up to about 34 days.",
		"now-24h",
		panels
	);
}

/** The provisioned ClickHouse dashboards, by file name. */
export function dashboards(): Record<string, Dashboard> {
	return { "playback.json": playbackDashboard(), "uptime.json": uptimeDashboard(), "fleet-health.json": healthDashboard() };
}

// ---- the operations dashboard (Prometheus) --------------------------------------------------------

/** The provisioned Prometheus data source (docker-compose.yml's `prometheus`). */
export const PROMETHEUS_DATASOURCE = { type: "prometheus", uid: "marquee-prometheus" } as const;

/** Where Prometheus is for the grafana container, and how often it scrapes (deploy/prometheus/prometheus.yml's scrape_interval). */
export const PROMETHEUS = { url: "http://prometheus:9090", scrapeIntervalSeconds: 15 } as const;

export const OPERATIONS_FILE = "operations.json";

export interface PromTarget {
	refId: string;
	datasource: typeof PROMETHEUS_DATASOURCE;
	editorMode: "code";
	expr: string;
	legendFormat: string;
	range: boolean;
	instant: boolean;
}

/** Every selector keeps to the chosen deployment (the `namespace` label each process adds). */
const IN_NAMESPACE = 'namespace=~"$namespace"';

/** `metric{namespace=~"$namespace",…}`. */
function selector(metric: string, ...matchers: string[]): string {
	return `${metric}{${[IN_NAMESPACE, ...matchers].join(",")}}`;
}

/** The per-second rate of a counter (or a histogram's bucket, count or sum) over Grafana's rate interval. */
function rate(metric: string, ...matchers: string[]): string {
	return `rate(${selector(metric, ...matchers)}[$__rate_interval])`;
}

function quantile(q: number, bucket: string, by: string[], ...matchers: string[]): string {
	return `histogram_quantile(${q}, sum by (${["le", ...by].join(", ")}) (${rate(bucket, ...matchers)}))`;
}

/** Moleculer counts a call where it runs (type "local") and again, as "remote", where a caller sent it to another node: count it once. */
const EXECUTED = 'type="local"';
/** Every HTTP request moleculer-web serves is one call of api.rest (the device lane counts its own). */
const HTTP = 'action="api.rest"';

const M = {
	displaysOnline: OPS_METRICS.displaysOnline.name,
	heartbeats: OPS_METRICS.heartbeats.name,
	laneRequests: OPS_METRICS.deviceLaneRequests.name,
	recomputations: OPS_METRICS.manifestRecomputations.name,
	recomputeLagBucket: `${OPS_METRICS.manifestRecomputeLag.name}_bucket`,
	uploadBytes: OPS_METRICS.uploadBytes.name,
	webhookDeliveries: OPS_METRICS.webhookDeliveries.name,
	outboxDepth: OPS_METRICS.emailOutboxDepth.name,
	bufferRows: OPS_METRICS.analyticsBufferRows.name,
	ingestLagBucket: `${OPS_METRICS.analyticsIngestLag.name}_bucket`,
	ingestLagCount: `${OPS_METRICS.analyticsIngestLag.name}_count`,
	// Moleculer's, as shared/metrics.ts renders them.
	requests: "moleculer_request_total",
	requestErrors: "moleculer_request_error_total",
	requestTimeBucket: "moleculer_request_time_bucket",
	requestsActive: "moleculer_request_active"
} as const;

/** HTTP requests per second: moleculer-web's (api.rest calls) and the device lane's. */
const HTTP_REQUESTS = `sum(${rate(M.requests, HTTP)}) + sum(${rate(M.laneRequests)})`;
const HTTP_5XX = `sum(${rate(M.requestErrors, HTTP, 'error_code=~"5.."')}) + sum(${rate(M.laneRequests, 'code="5xx"')})`;

/** The PromQL of every panel (the dashboard below is built from exactly these), each with its legend. */
export const OPERATIONS_QUERIES = {
	// The sweeping node publishes the count; max covers a hand-over, when two nodes briefly show it.
	displaysOnlineTotal: { expr: `sum(max by (plan) (${selector(M.displaysOnline)}))`, legend: "online" },
	displaysOnlineByPlan: { expr: `max by (plan) (${selector(M.displaysOnline)})`, legend: "{{plan}}" },
	heartbeatsPerSecond: { expr: `sum(${rate(M.heartbeats)})`, legend: "heartbeats/s" },
	recomputationsPerSecond: { expr: `sum by (outcome) (${rate(M.recomputations)})`, legend: "{{outcome}}" },
	recomputeLag: [0.5, 0.95, 0.99].map(q => ({ expr: quantile(q, M.recomputeLagBucket, []), legend: `p${q * 100}` })),
	uploadBytesPerSecond: { expr: `sum by (type) (${rate(M.uploadBytes)})`, legend: "{{type}}" },
	webhookAttemptsPerSecond: { expr: `sum by (outcome) (${rate(M.webhookDeliveries)})`, legend: "{{outcome}}" },
	webhookFailingShare: { expr: `sum(${rate(M.webhookDeliveries, 'outcome!="succeeded"')}) / sum(${rate(M.webhookDeliveries)})`, legend: "not delivered" },
	// Every notifications replica reads the same shared outbox.
	outboxDepth: { expr: `max(${selector(M.outboxDepth)})`, legend: "waiting" },
	bufferedRows: { expr: `sum by (table) (${selector(M.bufferRows)})`, legend: "{{table}}" },
	ingestLagP95: { expr: quantile(0.95, M.ingestLagBucket, ["table"]), legend: "{{table}}" },
	rowsStoredPerSecond: { expr: `sum by (table) (${rate(M.ingestLagCount)})`, legend: "{{table}}" },
	httpRequests: [
		{ expr: HTTP_REQUESTS, legend: "requests" },
		{ expr: HTTP_5XX, legend: "5xx" }
	],
	httpServerErrorShare: { expr: `(${HTTP_5XX}) / (${HTTP_REQUESTS})`, legend: "5xx" },
	requestsByService: { expr: `sum by (service) (${rate(M.requests, EXECUTED)})`, legend: "{{service}}" },
	errorsByService: { expr: `sum by (service, error_code) (${rate(M.requestErrors, EXECUTED)})`, legend: "{{service}} {{error_code}}" },
	latencyP95ByService: { expr: quantile(0.95, M.requestTimeBucket, ["service"], EXECUTED), legend: "{{service}}" },
	activeByService: { expr: `sum by (service) (${selector(M.requestsActive, EXECUTED)})`, legend: "{{service}}" }
};

/** The deployments Prometheus sees (Moleculer's namespace, on every metric of every process). */
export const NAMESPACE_QUERY = `label_values(${M.requests}, namespace)`;

type Query = { expr: string; legend: string };

function promTargets(queries: Query | Query[], instant = false): PromTarget[] {
	return [queries].flat().map((q, i) => ({
		refId: String.fromCharCode(65 + i),
		datasource: PROMETHEUS_DATASOURCE,
		editorMode: "code",
		expr: q.expr,
		legendFormat: q.legend,
		range: !instant,
		instant
	}));
}

function promSeries(id: number, title: string, gridPos: Panel["gridPos"], queries: Query | Query[], unit: string, description: string, custom: Record<string, unknown> = LINES): Panel<PromTarget> {
	return {
		id,
		type: "timeseries",
		title,
		description,
		gridPos,
		datasource: PROMETHEUS_DATASOURCE,
		targets: promTargets(queries),
		fieldConfig: { defaults: { unit, min: 0, custom: { spanNulls: false, ...custom } }, overrides: [] },
		options: { legend: { showLegend: true, displayMode: "list", placement: "bottom" }, tooltip: { mode: "multi", sort: "desc" } }
	};
}

function promStat(id: number, title: string, gridPos: Panel["gridPos"], query: Query, unit: string, description: string): Panel<PromTarget> {
	return {
		id,
		type: "stat",
		title,
		description,
		gridPos,
		datasource: PROMETHEUS_DATASOURCE,
		targets: promTargets(query, true),
		fieldConfig: { defaults: { unit, decimals: 0 }, overrides: [] },
		options: { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, textMode: "value", colorMode: "none", graphMode: "area", justifyMode: "auto", orientation: "auto" }
	};
}

const NAMESPACE_VARIABLE = {
	name: "namespace",
	label: "Deployment",
	type: "query",
	datasource: PROMETHEUS_DATASOURCE,
	query: { query: NAMESPACE_QUERY, refId: "namespace" },
	definition: NAMESPACE_QUERY,
	refresh: 2,
	sort: 1,
	multi: false,
	includeAll: true,
	allValue: ".+",
	hide: 0,
	regex: "",
	current: {},
	options: []
};

/** The operations dashboard: what an operator watches, for the whole cluster. */
export function operationsDashboard(): Dashboard<PromTarget> {
	const q = OPERATIONS_QUERIES;
	const panels: Array<Panel<PromTarget>> = [
		row(1, "Fleet", 0),
		promStat(2, "Displays online", at(0, 1, 6, 7), q.displaysOnlineTotal, "none", "All tenants' displays online at the last presence sweep (every 10 s)."),
		promSeries(3, "Displays online by plan", at(6, 1, 9, 7), q.displaysOnlineByPlan, "none", "By the tenant's plan."),
		promSeries(4, "Heartbeats", at(15, 1, 9, 7), q.heartbeatsPerSecond, "reqps", "Heartbeats accepted per second, all devices replicas together."),

		row(5, "Manifests and media", 8),
		promSeries(6, "Manifest recomputations", at(0, 9, 8, 7), q.recomputationsPerSecond, "ops", "Background recomputations per second, by outcome; a failed one is in the scheduling logs."),
		promSeries(7, "Manifest recompute lag", at(8, 9, 8, 7), q.recomputeLag, "s", "From a change (schedule, playlist, content, display) to the affected displays' new manifests being announced, the wait behind the tenant's earlier changes included."),
		promSeries(8, "Upload throughput", at(16, 9, 8, 7), q.uploadBytesPerSecond, "Bps", "Bytes of completed uploads per second, by type.", BARS),

		row(9, "Notifications", 16),
		promSeries(10, "Webhook delivery attempts", at(0, 17, 8, 7), q.webhookAttemptsPerSecond, "ops", "Attempts per second: succeeded, retrying (failed, tried again later) and failed (for good)."),
		promSeries(11, "Webhook attempts not delivered", at(8, 17, 8, 7), q.webhookFailingShare, "percentunit", "Share of attempts that did not succeed: receivers down or refusing."),
		promSeries(12, "Emails waiting", at(16, 17, 8, 7), q.outboxDepth, "none", "Emails in the outbox not sent yet (queued or waiting to retry): a growing line is a mail server refusing or unreachable."),

		row(13, "Analytics ingestion", 24),
		promSeries(14, "Rows waiting for ClickHouse", at(0, 25, 8, 7), q.bufferedRows, "none", "Rows the analytics replicas hold per table, batching or retrying; ClickHouse down shows as a plateau at the channels' in-flight limit."),
		promSeries(15, "Ingest lag (p95)", at(8, 25, 8, 7), q.ingestLagP95, "s", "From the platform accepting a row (a play posted, a heartbeat, an audited action; a status change's arrival) to ClickHouse storing it."),
		promSeries(16, "Rows stored", at(16, 25, 8, 7), q.rowsStoredPerSecond, "ops", "Rows per second ClickHouse took, by table."),

		row(17, "Requests", 32),
		promSeries(18, "HTTP requests", at(0, 33, 8, 7), q.httpRequests, "reqps", "Requests per second through the gateway, and those answered with a 5xx."),
		promSeries(19, "HTTP server errors", at(8, 33, 8, 7), q.httpServerErrorShare, "percentunit", "Share of gateway requests answered with a 5xx."),
		promSeries(20, "Requests in flight", at(16, 33, 8, 7), q.activeByService, "none", "Action calls running now, by service."),
		promSeries(21, "Action calls by service", at(0, 40, 8, 7), q.requestsByService, "reqps", "Calls per second each service ran (HTTP, service-to-service and internal)."),
		promSeries(22, "Action errors by service", at(8, 40, 8, 7), q.errorsByService, "reqps", "Errors per second by service and code (4xx are the caller's, 5xx the platform's)."),
		promSeries(23, "Action latency (p95)", at(16, 40, 8, 7), q.latencyP95ByService, "ms", "95th percentile of action time by service, in milliseconds.")
	];
	return {
		uid: "marquee-operations",
		title: "Marquee — Operations",
		description:
			"The platform's health across every replica, from Prometheus: displays online, heartbeats, manifest recomputation, uploads, webhooks, email, analytics ingestion and Moleculer's request rate, errors and latency. No panel is per tenant.",
		tags: ["marquee"],
		editable: false,
		graphTooltip: 1,
		schemaVersion: 39,
		version: 1,
		time: { from: "now-6h", to: "now" },
		timezone: "browser",
		refresh: "30s",
		links: [{ type: "dashboards", title: "Marquee", tags: ["marquee"], asDropdown: false, includeVars: false, keepTime: true }],
		annotations: { list: [] },
		templating: { list: [NAMESPACE_VARIABLE] },
		panels
	};
}

// ---- provisioning files ------------------------------------------------------------------------

const GENERATED = "# Generated by `npm run grafana` from services/analytics/grafana.ts: edit that, then run it again.";

function datasourceYaml(): string {
	return `${GENERATED}
# The ClickHouse analytics writes to (docker-compose.yml's \`clickhouse\`), over HTTP. Grafana reads
# CLICKHOUSE_USER and CLICKHOUSE_PASSWORD from its container's environment.
apiVersion: 1

datasources:
  - name: Marquee ClickHouse
    uid: ${DATASOURCE.uid}
    type: ${DATASOURCE.type}
    access: proxy
    isDefault: true
    editable: false
    jsonData:
      host: ${CLICKHOUSE.host}
      port: ${CLICKHOUSE.port}
      protocol: http
      secure: false
      defaultDatabase: ${CLICKHOUSE.database}
      username: $CLICKHOUSE_USER
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
`;
}

function prometheusDatasourceYaml(): string {
	return `${GENERATED}
# The Prometheus that scrapes every Marquee process (docker-compose.yml's \`prometheus\`, configured by
# deploy/prometheus/prometheus.yml); timeInterval is its scrape interval, for $__rate_interval.
apiVersion: 1

datasources:
  - name: Marquee Prometheus
    uid: ${PROMETHEUS_DATASOURCE.uid}
    type: ${PROMETHEUS_DATASOURCE.type}
    access: proxy
    url: ${PROMETHEUS.url}
    isDefault: false
    editable: false
    jsonData:
      httpMethod: POST
      timeInterval: ${PROMETHEUS.scrapeIntervalSeconds}s
`;
}

function dashboardProviderYaml(): string {
	return `${GENERATED}
# The dashboards of deploy/grafana/dashboards, mounted read-only at ${DASHBOARDS_PATH}.
apiVersion: 1

providers:
  - name: marquee
    orgId: 1
    folder: Marquee
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: ${DASHBOARDS_PATH}
      foldersFromFilesStructure: false
`;
}

/** Every file of deploy/grafana, by its path there. */
export function grafanaFiles(): Record<string, string> {
	const files: Record<string, string> = {
		"provisioning/datasources/clickhouse.yaml": datasourceYaml(),
		"provisioning/datasources/prometheus.yaml": prometheusDatasourceYaml(),
		"provisioning/dashboards/marquee.yaml": dashboardProviderYaml()
	};
	for (const [name, board] of Object.entries(dashboards())) files[`dashboards/${name}`] = `${JSON.stringify(board, null, 2)}\n`;
	files[`dashboards/${OPERATIONS_FILE}`] = `${JSON.stringify(operationsDashboard(), null, 2)}\n`;
	return files;
}
