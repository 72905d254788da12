/**
 * The Grafana provisioning of deploy/grafana against the code and docker-compose.yml:
 *
 * - the files are what services/analytics/grafana.ts builds now (`npm run grafana` was run), every
 *   data source reference resolves, the provider reads the folder compose mounts, and the data
 *   source reaches the ClickHouse and database the platform writes to;
 * - every panel's SQL and the tenant variable's query run on real tables (chDB, always; a
 *   ClickHouse server too when one is available) with Grafana's variables filled in as Grafana
 *   does, and answer the hand-computed values of a small fixture;
 * - the operations dashboard (Prometheus): its data source, deploy/prometheus/prometheus.yml
 *   (valid for promtool, scraping every Marquee service of docker-compose.yml on the port that
 *   serves its /metrics), every PromQL expression valid for promtool, and every metric and label
 *   it names present in a real scrape of a started platform after traffic
 *   (test/e2e/metrics-traffic.ts), so the dashboard cannot ask for a metric that does not exist.
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { CORE_SCHEMA, load, mergeTag } from "js-yaml";
import {
	CLICKHOUSE,
	CLICKHOUSE_PLUGIN,
	DASHBOARDS_PATH,
	DATASOURCE,
	dashboards,
	grafanaFiles,
	NAMESPACE_QUERY,
	OPERATIONS_FILE,
	PROMETHEUS,
	PROMETHEUS_DATASOURCE,
	TENANT_QUERY,
	type Dashboard,
	type Panel,
	type PromTarget
} from "../../services/analytics/grafana";
import { migrate } from "../../services/analytics/migrations";
import { healthRow, playbackRows, statusRow } from "../../services/analytics/records";
import { Sql } from "../../services/analytics/sql";
import type { AnalyticsStore } from "../../services/analytics/store";
import { describeOnEveryStore } from "../helpers/analytics-stores";
import { isMapping, list, mapping, type Mapping } from "../helpers/parsed";
import { describeIf } from "../helpers/servers";
import { platformAfterTraffic, samplesOf, type Sample } from "../helpers/metrics-traffic";

const ROOT = path.resolve(__dirname, "../..");
const GRAFANA_DIR = path.join(ROOT, "deploy", "grafana");
const YAML_SCHEMA = CORE_SCHEMA.withTags(mergeTag);

function readYaml(relative: string): Mapping {
	return mapping(load(fs.readFileSync(path.join(ROOT, relative), "utf8"), { schema: YAML_SCHEMA }), relative);
}

// ---- what is on disk ----------------------------------------------------------------------------

const DATASOURCE_FILE = "deploy/grafana/provisioning/datasources/clickhouse.yaml";
const DATASOURCES_DIR = "deploy/grafana/provisioning/datasources";
const PROVIDER_FILE = "deploy/grafana/provisioning/dashboards/marquee.yaml";
const PROMETHEUS_CONFIG = "deploy/prometheus/prometheus.yml";

function allDashboardFiles(): string[] {
	return fs
		.readdirSync(path.join(GRAFANA_DIR, "dashboards"))
		.filter(name => name.endsWith(".json"))
		.sort();
}

/** The ClickHouse dashboards (all but the operations dashboard, which reads Prometheus). */
function dashboardFiles(): string[] {
	return allDashboardFiles().filter(name => name !== OPERATIONS_FILE);
}

function operationsOnDisk(): Dashboard<PromTarget> {
	return JSON.parse(fs.readFileSync(path.join(GRAFANA_DIR, "dashboards", OPERATIONS_FILE), "utf8")) as Dashboard<PromTarget>;
}

function dashboardOnDisk(name: string): Dashboard {
	return JSON.parse(fs.readFileSync(path.join(GRAFANA_DIR, "dashboards", name), "utf8")) as Dashboard;
}

/** Every panel, those inside rows too. */
function allPanels<T extends { datasource: unknown }>(board: Dashboard<T>): Array<Panel<T>> {
	return board.panels.flatMap(panel => [panel, ...(panel.panels ?? [])]);
}

function provisionedDatasources(): Mapping[] {
	return list(readYaml(DATASOURCE_FILE).datasources, "datasources").map((d, i) => mapping(d, `datasources[${i}]`));
}

// ---- docker-compose.yml -------------------------------------------------------------------------

const compose = () => readYaml("docker-compose.yml");

function composeService(name: string): Mapping {
	return mapping(mapping(compose().services, "services")[name], `services.${name}`);
}

/** Compose-style interpolation with only the required secrets set: ${VAR:-default} gives the default. */
function interpolate(value: string): string {
	return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_m, name: string, operator?: string, argument?: string) => {
		// The two secrets compose requires the operator to set.
		if (name === "JWT_SECRET") return "test-secret-that-is-long-enough-for-config-validation";
		if (name === "ENCRYPTION_KEY") return "test-encryption-key-long-enough-for-config-validation";
		if (operator?.endsWith("?")) throw new Error(`\${${name}} must be set`);
		return operator?.endsWith("-") ? (argument ?? "") : "";
	});
}

function environment(service: string): Record<string, string> {
	const raw = composeService(service).environment;
	const entries: Array<[string, string]> = Array.isArray(raw)
		? raw.map(entry => {
				const [key, ...value] = String(entry).split("=");
				return [key, value.join("=")];
			})
		: Object.entries(mapping(raw ?? {}, `${service}.environment`)).map(([key, value]) => [key, value === null ? "" : String(value)]);
	return Object.fromEntries(entries.map(([key, value]) => [key, interpolate(value)]));
}

interface Mount {
	source: string;
	target: string;
	readOnly: boolean;
}

/** Bind mounts (short or long syntax), sources resolved against the project directory. */
function bindMounts(service: string): Mount[] {
	const volumes = list(composeService(service).volumes ?? [], `${service}.volumes`);
	return volumes.flatMap((volume): Mount[] => {
		if (isMapping(volume)) {
			if (volume.type !== "bind") return [];
			return [{ source: path.resolve(ROOT, String(volume.source)), target: String(volume.target), readOnly: volume.read_only === true }];
		}
		const [source, target, mode = ""] = String(volume).split(":");
		if (!source.startsWith(".") && !source.startsWith("/")) return [];
		return [{ source: path.resolve(ROOT, source), target, readOnly: mode.split(",").includes("ro") }];
	});
}

function mountOf(service: string, folder: string): Mount {
	const found = bindMounts(service).filter(m => m.source === path.join(ROOT, folder));
	if (found.length !== 1) throw new Error(`${service} should mount ./${folder} once, mounts ${JSON.stringify(bindMounts(service))}`);
	return found[0];
}

// ---- static checks ------------------------------------------------------------------------------

describe("Grafana provisioning (deploy/grafana)", () => {
	it("holds exactly the files grafana.ts builds now (run `npm run grafana` after changing it)", () => {
		const expected = grafanaFiles();
		const datasources = fs.readdirSync(path.join(ROOT, DATASOURCES_DIR)).map(name => `provisioning/datasources/${name}`);
		const onDisk = [...allDashboardFiles().map(name => `dashboards/${name}`), ...datasources, "provisioning/dashboards/marquee.yaml"];
		expect(onDisk.sort()).toEqual(Object.keys(expected).sort());
		for (const [relative, content] of Object.entries(expected)) {
			expect([relative, fs.readFileSync(path.join(GRAFANA_DIR, relative), "utf8") === content]).toEqual([relative, true]);
		}
	});

	it("runs in every panel exactly the SQL grafana.ts generates now", () => {
		const generated = dashboards();
		for (const name of dashboardFiles()) {
			const sqlOf = (board: Dashboard) => allPanels(board).flatMap(p => (p.targets ?? []).map(t => [board.uid, p.title, t.refId, t.rawSql]));
			expect(sqlOf(dashboardOnDisk(name))).toEqual(sqlOf(generated[name]));
		}
	});

	it("has the three dashboards, each with the tenant variable and unique panel ids", () => {
		const boards = dashboardFiles().map(dashboardOnDisk);
		expect(boards.map(b => b.title).sort()).toEqual(["Marquee — Fleet health", "Marquee — Playback", "Marquee — Uptime"]);
		expect(new Set(boards.map(b => b.uid)).size).toBe(boards.length);
		for (const board of boards) {
			const variables = board.templating.list;
			expect(variables.map(v => v.name)).toEqual(["tenant"]);
			expect(variables[0]).toMatchObject({ type: "query", query: { rawSql: TENANT_QUERY }, multi: false, includeAll: false, allowCustomValue: false });
			const ids = allPanels(board).map(p => p.id);
			expect(new Set(ids).size).toBe(ids.length);
			for (const panel of allPanels(board)) {
				expect([panel.title, panel.gridPos.x + panel.gridPos.w <= 24]).toEqual([panel.title, true]);
				if (panel.type === "row") continue;
				expect([panel.title, panel.targets?.length]).toEqual([panel.title, 1]);
				for (const t of panel.targets ?? []) {
					// The plugin's result formats: 0 a time series (needs a time column), 1 a table.
					const kind = panel.type === "timeseries" ? { format: 0, queryType: "timeseries" } : { format: 1, queryType: "table" };
					expect([panel.title, t.editorType, t.format, t.queryType]).toEqual([panel.title, "sql", kind.format, kind.queryType]);
					if (kind.format === 0) expect(t.rawSql).toMatch(/^SELECT toDateTime\(.*\) AS time, /);
				}
			}
		}
	});

	it("resolves every data source reference to a provisioned data source: ClickHouse, and Prometheus for operations", () => {
		const sources = provisionedDatasources();
		expect(sources.map(s => [s.uid, s.type])).toEqual([[DATASOURCE.uid, CLICKHOUSE_PLUGIN.id]]);
		const all = fs.readdirSync(path.join(ROOT, DATASOURCES_DIR)).flatMap(name => list(readYaml(`${DATASOURCES_DIR}/${name}`).datasources, name).map(d => mapping(d, name)));
		expect(all.map(s => [s.uid, s.type]).sort()).toEqual([[DATASOURCE.uid, CLICKHOUSE_PLUGIN.id], [PROMETHEUS_DATASOURCE.uid, PROMETHEUS_DATASOURCE.type]].sort());
		// One default: ClickHouse, which the analytics dashboards were written against first.
		expect(all.filter(s => s.isDefault === true).map(s => s.uid)).toEqual([DATASOURCE.uid]);
		const known = new Map(all.map(s => [s.uid, s.type]));
		const refs: unknown[] = [];
		for (const board of [...dashboardFiles().map(dashboardOnDisk), operationsOnDisk()] as Array<Dashboard<{ datasource: unknown }>>) {
			for (const variable of board.templating.list) refs.push(variable.datasource);
			for (const panel of allPanels(board)) {
				if (panel.type === "row") continue;
				refs.push(panel.datasource, ...(panel.targets ?? []).map(t => t.datasource));
			}
		}
		expect(refs.length).toBeGreaterThan(10);
		for (const ref of refs) {
			const { uid, type } = mapping(ref, "datasource reference");
			expect([uid, known.get(String(uid))]).toEqual([uid, type]);
		}
	});

	it("points the data source at compose's ClickHouse over HTTP, on the database and credentials the platform uses", () => {
		const [source] = provisionedDatasources();
		const json = mapping(source.jsonData, "jsonData");
		expect(json).toMatchObject({ host: CLICKHOUSE.host, port: 8123, protocol: "http", defaultDatabase: CLICKHOUSE.database });

		const clickhouse = environment(CLICKHOUSE.host);
		expect(mapping(composeService(CLICKHOUSE.host).healthcheck, "clickhouse.healthcheck").test).toBeDefined();
		const platform = new URL(environment("analytics").CLICKHOUSE_URL);
		expect([platform.hostname, platform.port, platform.pathname]).toEqual([CLICKHOUSE.host, "8123", `/${CLICKHOUSE.database}`]);
		expect(clickhouse.CLICKHOUSE_DB).toBe(CLICKHOUSE.database);

		// `$NAME` in a provisioning file is read from Grafana's environment.
		const grafana = environment("grafana");
		const fromEnv = (value: unknown) => {
			const match = /^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$/.exec(String(value));
			if (!match) throw new Error(`expected an environment reference, got ${JSON.stringify(value)} (no credentials in the file)`);
			expect([match[1], match[1] in grafana]).toEqual([match[1], true]);
			return grafana[match[1]];
		};
		const user = fromEnv(json.username);
		const password = fromEnv(mapping(source.secureJsonData, "secureJsonData").password);
		expect([user, password]).toEqual([clickhouse.CLICKHOUSE_USER, clickhouse.CLICKHOUSE_PASSWORD]);
		expect([user, password]).toEqual([decodeURIComponent(platform.username), decodeURIComponent(platform.password)]);
	});

	it("reads the dashboards from the folder docker-compose.yml mounts there", () => {
		const providers = list(readYaml(PROVIDER_FILE).providers, "providers").map((p, i) => mapping(p, `providers[${i}]`));
		expect(providers).toHaveLength(1);
		expect(providers[0].type).toBe("file");
		const providerPath = mapping(providers[0].options, "providers[0].options").path;
		expect(providerPath).toBe(DASHBOARDS_PATH);
		const mount = mountOf("grafana", "deploy/grafana/dashboards");
		expect(mount).toEqual({ source: path.join(GRAFANA_DIR, "dashboards"), target: providerPath, readOnly: true });
	});
});

describe("docker-compose.yml grafana", () => {
	it("mounts the provisioning folders read-only where Grafana reads them", () => {
		expect(mountOf("grafana", "deploy/grafana/provisioning/datasources")).toMatchObject({ target: "/etc/grafana/provisioning/datasources", readOnly: true });
		expect(mountOf("grafana", "deploy/grafana/provisioning/dashboards")).toMatchObject({ target: "/etc/grafana/provisioning/dashboards", readOnly: true });
		for (const mount of bindMounts("grafana")) expect([mount.target, mount.readOnly]).toEqual([mount.target, true]);
	});

	it("runs a pinned Grafana with the pinned ClickHouse plugin the dashboards are written for", () => {
		const grafana = composeService("grafana");
		expect(grafana.image).toMatch(/^grafana\/grafana-oss:\d+\.\d+\.\d+$/);
		expect(environment("grafana").GF_INSTALL_PLUGINS).toBe(`${CLICKHOUSE_PLUGIN.id} ${CLICKHOUSE_PLUGIN.version}`);
	});

	it("starts once ClickHouse is healthy and has a healthcheck on /api/health", () => {
		const grafana = composeService("grafana");
		const dependsOn = mapping(grafana.depends_on, "grafana.depends_on");
		expect(mapping(dependsOn.clickhouse, "grafana.depends_on.clickhouse").condition).toBe("service_healthy");
		const test = list(mapping(grafana.healthcheck, "grafana.healthcheck").test, "grafana.healthcheck.test").join(" ");
		expect(test).toMatch(/^CMD(-SHELL)? /);
		expect(test).toContain("://127.0.0.1:3000/api/health");
	});

	it("publishes Grafana on a port of its own, to this machine only", () => {
		const ports = list(composeService("grafana").ports, "grafana.ports").map(String);
		expect(ports).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+:3000$/)]);
		const hostPort = ports[0].split(":")[1];
		const others = Object.keys(mapping(compose().services, "services")).filter(name => name !== "grafana");
		for (const name of others) {
			const published = list(composeService(name).ports ?? [], `${name}.ports`).map(p => String(p).split(":").slice(-2, -1)[0]);
			expect([name, published.includes(hostPort)]).toEqual([name, false]);
		}
	});
});

// ---- the queries on real tables -----------------------------------------------------------------

const MIN = 60_000;
const HOUR = 60 * MIN;
/** Monday 2 March 2026, 10:00 UTC. */
const T0 = Date.UTC(2026, 2, 2, 10, 0);
const FROM = T0 - HOUR;
const TO = T0 + 3 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
/** A tenant id with a quote: Grafana's `sqlstring` format must keep it a value. */
const OTHER = "t2'x";

function play(eventId: string, contentId: string, contentName: string, startedAt: number, durationMs: number, completed = true) {
	return { eventId, contentId, contentName, playlistId: null, scheduleId: null, startedAt, durationMs, completed };
}

/**
 * Tenant t1: displays d1 "Lobby" and d2 "Bar", content c1 "Menu" and c2 "Promo", one replayed
 * batch, one play before the range; status transitions and heartbeats. Tenant t2'x: one of each.
 */
async function loadFixture(store: AnalyticsStore): Promise<void> {
	const lobby = { tenantId: "t1", displayId: "d1", displayName: "Lobby", groups: [{ id: "g1", name: "Ground floor" }], receivedAt: T0 + 3 * HOUR };
	const bar = { tenantId: "t1", displayId: "d2", displayName: "Bar", groups: [], receivedAt: T0 + 3 * HOUR };
	const lobbyPlays = [play("e1", "c1", "Menu", T0, 10_000), play("e2", "c1", "Menu", T0 + 30 * MIN, 20_000, false), play("e3", "c2", "Promo", T0 + 70 * MIN, 5_000)];
	await store.insert("playback_events", playbackRows({ ...lobby, events: lobbyPlays }));
	await store.insert("playback_events", playbackRows({ ...lobby, events: lobbyPlays.slice(0, 1) }));
	await store.insert(
		"playback_events",
		playbackRows({ ...bar, events: [play("e1", "c2", "Promo", T0 + 5 * MIN, 5_000), play("e4", "c2", "Promo", T0 + 65 * MIN, 5_000), play("e5", "c1", "Menu", T0 - 2 * HOUR, 60_000)] })
	);
	await store.insert("playback_events", playbackRows({ tenantId: OTHER, displayId: "x1", displayName: "Other", groups: [], receivedAt: T0, events: [play("o1", "c1", "Theirs", T0 + 10 * MIN, 1_000)] }));

	const status = (id: string, tenantId: string, displayId: string, name: string, online: boolean, at: number) => statusRow({ id, tenantId, displayId, name, online, at: iso(at) });
	const transitions = [
		status("s1", "t1", "d1", "Lobby", true, T0 - 2 * HOUR),
		status("s2", "t1", "d1", "Lobby", false, T0 + HOUR),
		status("s3", "t1", "d1", "Lobby", true, T0 + 90 * MIN),
		status("s4", "t1", "d2", "Bar", true, T0),
		status("s5", "t1", "d2", "Bar", false, T0 + 2 * HOUR),
		status("s6", OTHER, "x1", "Other", false, T0)
	];
	await store.insert("display_status", transitions);
	await store.insert("display_status", [transitions[1]]);

	const beat = (tenantId: string, displayId: string, at: number, cpu: number, memory: number, disk: number, temperature?: number) =>
		healthRow({ tenantId, displayId, ts: iso(at), lastSeenAt: iso(at), metrics: { cpu, memory, disk, temperature }, appVersion: "1.0", currentContentId: null, uptimeSec: null });
	await store.insert("device_health", [
		beat("t1", "d1", T0 + MIN, 10, 50, 70, 40),
		beat("t1", "d1", T0 + 2 * MIN, 30, 50, 70),
		beat("t1", "d1", T0 + 6 * MIN, 50, 50, 70, 44),
		beat("t1", "d1", T0 + MIN, 10, 50, 70, 40),
		beat("t1", "d2", T0 + 3 * MIN, 20, 60, 80, 50),
		beat("t1", "d2", T0 + 65 * MIN, 40, 40, 60),
		beat(OTHER, "x1", T0 + MIN, 99, 99, 99, 99)
	]);
}

/** What Grafana sends for a panel: its variables replaced as Grafana replaces them. */
function asGrafanaSends(rawSql: string, tenant: string, from: number, to: number): Sql {
	const text = rawSql
		.split("${tenant:sqlstring}")
		.join(`'${tenant.replace(/'/g, "''")}'`)
		.split("${__from}")
		.join(String(from))
		.split("${__to}")
		.join(String(to));
	// Anything else Grafana or the plugin would expand ($var, ${var}, $__macro) is not in this test: fail.
	if (text.includes("$")) throw new Error(`unexpected variable or macro left in:\n${text}`);
	return new Sql(text);
}

const at = (ms: number) => iso(ms).replace("T", " ").slice(0, 19);

/** The answer of every panel for tenant t1 over [FROM, TO), by dashboard uid and panel title. */
const EXPECTED: Record<string, Record<string, object[]>> = {
	"marquee-playback": {
		Totals: [{ plays: 5, durationMs: 45_000, displays: 2, contents: 2 }],
		"Plays by content": [
			{ key: "c2", name: "Promo", plays: 3, durationMs: 15_000, avgDurationMs: 5_000, completionRate: 1 },
			{ key: "c1", name: "Menu", plays: 2, durationMs: 30_000, avgDurationMs: 15_000, completionRate: 0.5 }
		],
		"Plays by display": [
			{ key: "d1", name: "Lobby", plays: 3, durationMs: 35_000, avgDurationMs: 11_667, completionRate: 0.6667 },
			{ key: "d2", name: "Bar", plays: 2, durationMs: 10_000, avgDurationMs: 5_000, completionRate: 1 }
		],
		"Plays per hour": [
			{ time: at(T0), plays: 3 },
			{ time: at(T0 + HOUR), plays: 2 }
		],
		"Play time per hour": [
			{ time: at(T0), durationMs: 35_000 },
			{ time: at(T0 + HOUR), durationMs: 10_000 }
		]
	},
	"marquee-uptime": {
		// d1: online 2 h, offline 30 min, online 1.5 h; d2: unknown 1 h, online 2 h, offline 1 h.
		Fleet: [{ uptimePct: 78.57, outages: 2, displays: 2 }],
		"Uptime per display": [
			{ displayId: "d2", name: "Bar", uptimePct: 66.67, onlineMs: 2 * HOUR, offlineMs: HOUR, outageCount: 1 },
			{ displayId: "d1", name: "Lobby", uptimePct: 87.5, onlineMs: 3.5 * HOUR, offlineMs: 30 * MIN, outageCount: 1 }
		],
		Outages: [
			{ displayId: "d2", name: "Bar", startedAt: at(T0 + 2 * HOUR), endedAt: at(TO), durationMs: HOUR },
			{ displayId: "d1", name: "Lobby", startedAt: at(T0 + HOUR), endedAt: at(T0 + 90 * MIN), durationMs: 30 * MIN }
		]
	},
	"marquee-fleet-health": {
		"CPU, memory and disk (5m)": [
			{ time: at(T0), cpu: 20, memory: 53.33, disk: 73.33 },
			{ time: at(T0 + 5 * MIN), cpu: 50, memory: 50, disk: 70 },
			{ time: at(T0 + 65 * MIN), cpu: 40, memory: 40, disk: 60 }
		],
		"Temperature (5m)": [
			{ time: at(T0), temperature: 45 },
			{ time: at(T0 + 5 * MIN), temperature: 44 },
			{ time: at(T0 + 65 * MIN), temperature: null }
		],
		"Reporting displays (5m)": [
			{ time: at(T0), displays: 2 },
			{ time: at(T0 + 5 * MIN), displays: 1 },
			{ time: at(T0 + 65 * MIN), displays: 1 }
		],
		"CPU, memory and disk (1h)": [
			{ time: at(T0), cpu: 27.5, memory: 52.5, disk: 72.5 },
			{ time: at(T0 + HOUR), cpu: 40, memory: 40, disk: 60 }
		],
		"Temperature (1h)": [
			{ time: at(T0), temperature: 44.67 },
			{ time: at(T0 + HOUR), temperature: null }
		],
		"Reporting displays (1h)": [
			{ time: at(T0), displays: 2 },
			{ time: at(T0 + HOUR), displays: 1 }
		]
	}
};

/** Every panel query of the dashboards on disk, with its dashboard and title. */
function panelQueries(): Array<{ uid: string; title: string; rawSql: string }> {
	return dashboardFiles()
		.map(dashboardOnDisk)
		.flatMap(board => allPanels(board).flatMap(panel => (panel.targets ?? []).map(t => ({ uid: board.uid, title: panel.title, rawSql: t.rawSql }))));
}

function panelSql(uid: string, title: string): string {
	const found = panelQueries().find(q => q.uid === uid && q.title === title);
	if (!found) throw new Error(`no panel ${uid} / ${title}`);
	return found.rawSql;
}

describeOnEveryStore("Grafana queries", open => {
	let store: AnalyticsStore;

	beforeAll(async () => {
		store = await open();
		await migrate(store);
		await loadFixture(store);
	});

	it("lists the tenants in the tenant variable", async () => {
		const variables = dashboardFiles().flatMap(file => dashboardOnDisk(file).templating.list);
		for (const variable of variables) {
			const query = mapping(variable.query, "variable query");
			expect(await store.rows(asGrafanaSends(String(query.rawSql), "", 0, 0))).toEqual([{ tenant_id: "t1" }, { tenant_id: OTHER }]);
		}
	});

	it("answers every panel with the fixture's hand-computed values", async () => {
		const queries = panelQueries();
		expect(queries.map(q => `${q.uid} / ${q.title}`).sort()).toEqual(Object.entries(EXPECTED).flatMap(([uid, panels]) => Object.keys(panels).map(title => `${uid} / ${title}`)).sort());
		for (const { uid, title, rawSql } of queries) {
			const rows = await store.rows(asGrafanaSends(rawSql, "t1", FROM, TO));
			expect([uid, title, rows]).toEqual([uid, title, EXPECTED[uid][title]]);
		}
	});

	it("answers another tenant's own rows, its quoted id kept a value", async () => {
		const rows = (uid: string, title: string) => store.rows(asGrafanaSends(panelSql(uid, title), OTHER, FROM, TO));
		expect(await rows("marquee-playback", "Totals")).toEqual([{ plays: 1, durationMs: 1_000, displays: 1, contents: 1 }]);
		expect(await rows("marquee-uptime", "Uptime per display")).toEqual([{ displayId: "x1", name: "Other", uptimePct: 0, onlineMs: 0, offlineMs: 3 * HOUR, outageCount: 1 }]);
		expect(await rows("marquee-fleet-health", "Reporting displays (1h)")).toEqual([{ time: at(T0), displays: 1 }]);
		expect(await store.rows(asGrafanaSends(panelSql("marquee-playback", "Totals"), "t1' OR '1'='1", FROM, TO))).toEqual([{ plays: 0, durationMs: 0, displays: 0, contents: 0 }]);
	});

	it("counts no uptime in the future: a range ending later ends now, one starting later counts nothing", async () => {
		const query = panelSql("marquee-uptime", "Uptime per display");
		const before = Date.now();
		const rows = await store.rows<{ displayId: string; onlineMs: number; offlineMs: number }>(asGrafanaSends(query, "t1", FROM, before + 365 * 24 * HOUR));
		const after = Date.now();
		const d2 = rows.find(r => r.displayId === "d2");
		// d2 has been offline since T0 + 2 h: until now (second precision), not for another year.
		expect(d2?.offlineMs).toBeGreaterThanOrEqual(before - 1000 - (T0 + 2 * HOUR));
		expect(d2?.offlineMs).toBeLessThanOrEqual(after - (T0 + 2 * HOUR));
		const future = await store.rows(asGrafanaSends(query, "t1", after + 24 * HOUR, after + 48 * HOUR));
		expect(future).toEqual([
			{ displayId: "d1", name: "Lobby", uptimePct: null, onlineMs: 0, offlineMs: 0, outageCount: 0 },
			{ displayId: "d2", name: "Bar", uptimePct: null, onlineMs: 0, offlineMs: 0, outageCount: 0 }
		]);
	});
});

// ---- the operations dashboard (Prometheus) ------------------------------------------------------

const promtoolInstalled = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;

/** Every PromQL expression of the operations dashboard (panels and the namespace variable), with where it is. */
function operationsExpressions(): Array<{ title: string; expr: string }> {
	const board = operationsOnDisk();
	// Grafana's label_values(metric, label) is not PromQL: checked as the selector it stands for.
	const variables = board.templating.list.map(v => {
		const query = String(mapping(v.query, "variable query").query);
		const labelValues = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query);
		if (!labelValues) throw new Error(`variable ${String(v.name)}: expected label_values(metric, label), got ${query}`);
		return { title: `variable ${String(v.name)}`, expr: `${labelValues[1]}{${labelValues[2]}=~".+"}` };
	});
	return [...variables, ...allPanels(board).flatMap(panel => (panel.targets ?? []).map(t => ({ title: `${panel.title} ${t.refId}`, expr: t.expr })))];
}

/** Grafana's variables as Grafana fills them in: an interval, the namespace's "All" regex. */
function asPrometheusGets(expr: string): string {
	const text = expr.split("$__rate_interval").join("1m").split("$namespace").join(".+");
	if (text.includes("$")) throw new Error(`unexpected variable left in: ${text}`);
	return text;
}

interface PromqlNames {
	/** Metric names, each with the label names its selector matches on. */
	selectors: Array<{ metric: string; labels: string[] }>;
	/** Labels of `by (…)` clauses. */
	grouping: string[];
	/** Identifiers left once selectors, grouping, ranges and function calls are taken out: must be none. */
	stray: string[];
}

/**
 * The names a PromQL expression refers to. Enough for this dashboard's expressions, where every
 * metric is written with a selector (`name{…}`) — the stray check fails on any that is not.
 */
function promqlNames(expr: string): PromqlNames {
	const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
	const selectors = [...withoutStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)].map(m => ({ metric: m[1], labels: [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map(l => l[1]) }));
	const grouping = [...withoutStrings.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap(m => m[1].split(",").map(l => l.trim()).filter(Boolean));
	const rest = withoutStrings
		.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{[^}]*\}/g, " ")
		.replace(/\b(?:by|without)\s*\([^)]*\)/g, " ")
		.replace(/\[[^\]]*\]/g, " ")
		.replace(/\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(/g, "(");
	const stray = [...rest.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map(m => m[0]);
	return { selectors, grouping, stray };
}

describe("the operations dashboard (Prometheus)", () => {
	it("has a title, unique panel ids, panels within the grid and one Prometheus query or more per panel", () => {
		const board = operationsOnDisk();
		expect(board.title).toBe("Marquee — Operations");
		expect(board.templating.list.map(v => [v.name, v.type, mapping(v.query, "query").query])).toEqual([["namespace", "query", NAMESPACE_QUERY]]);
		const ids = allPanels(board).map(p => p.id);
		expect(new Set(ids).size).toBe(ids.length);
		for (const panel of allPanels(board)) {
			expect([panel.title, panel.gridPos.x + panel.gridPos.w <= 24]).toEqual([panel.title, true]);
			if (panel.type === "row") continue;
			expect([panel.title, (panel.targets ?? []).length > 0]).toEqual([panel.title, true]);
			for (const t of panel.targets ?? []) expect([panel.title, t.datasource, t.editorMode]).toEqual([panel.title, PROMETHEUS_DATASOURCE, "code"]);
		}
	});

	it("keeps to the chosen deployment and to bounded labels: every selector matches the namespace, nothing groups by an id", () => {
		for (const { title, expr } of operationsExpressions()) {
			const names = promqlNames(expr);
			expect([title, names.stray]).toEqual([title, []]);
			if (title.startsWith("variable")) continue;
			for (const s of names.selectors) expect([title, s.metric, s.labels.includes("namespace")]).toEqual([title, s.metric, true]);
			for (const label of names.grouping) expect([title, label]).toEqual([title, expect.stringMatching(/^(le|plan|outcome|type|table|service|error_code)$/)]);
		}
	});

	it("names in each legend only labels its query groups by", () => {
		for (const panel of allPanels(operationsOnDisk())) {
			for (const t of panel.targets ?? []) {
				const { grouping } = promqlNames(t.expr);
				for (const [, label] of t.legendFormat.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) expect([panel.title, label, grouping.includes(label)]).toEqual([panel.title, label, true]);
			}
		}
	});

	it("points its data source at compose's Prometheus, sampling at the scrape interval", () => {
		const source = mapping(list(readYaml(`${DATASOURCES_DIR}/prometheus.yaml`).datasources, "datasources")[0], "prometheus data source");
		expect(source).toMatchObject({ uid: PROMETHEUS_DATASOURCE.uid, type: "prometheus", url: PROMETHEUS.url, access: "proxy" });
		expect(mapping(source.jsonData, "jsonData").timeInterval).toBe(`${PROMETHEUS.scrapeIntervalSeconds}s`);
		const global = mapping(readYaml(PROMETHEUS_CONFIG).global, "global");
		expect(global.scrape_interval).toBe(`${PROMETHEUS.scrapeIntervalSeconds}s`);
	});

	it("scrapes every Marquee service of docker-compose.yml where it serves /metrics: the gateway on PORT, the others on OPS_PORT", () => {
		const services = mapping(compose().services, "services");
		const marquee = Object.keys(services).filter(name => "SERVICES" in environment(name));
		expect(marquee.length).toBeGreaterThan(5);
		const scraped = new Map<string, string>();
		for (const job of list(readYaml(PROMETHEUS_CONFIG).scrape_configs, "scrape_configs").map(j => mapping(j, "scrape_config"))) {
			expect([job.job_name, job.metrics_path]).toEqual([job.job_name, "/metrics"]);
			for (const sd of list(job.dns_sd_configs, `${String(job.job_name)}.dns_sd_configs`).map(d => mapping(d, "dns_sd_config"))) {
				for (const name of list(sd.names, "names")) scraped.set(String(name), String(sd.port));
			}
		}
		const expected = marquee.map(name => {
			const env = environment(name);
			return [name, env.SERVICES.split(",").includes("api") ? env.PORT : env.OPS_PORT];
		});
		expect([...scraped].sort()).toEqual(expected.sort());
	});

	describeIf(promtoolInstalled, "promtool not installed (apt-get install prometheus)")("promtool", () => {
		it("accepts deploy/prometheus/prometheus.yml", () => {
			const run = spawnSync("promtool", ["check", "config", path.join(ROOT, PROMETHEUS_CONFIG)], { encoding: "utf8" });
			expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
		});

		it("parses every expression (as recording rules, with Grafana's variables filled in)", () => {
			const exprs = operationsExpressions().filter(e => !e.title.startsWith("variable"));
			const rules = { groups: [{ name: "operations-dashboard", rules: exprs.map((e, i) => ({ record: `marquee:dashboard:expr${i}`, expr: asPrometheusGets(e.expr) })) }] };
			const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "marquee-promql-")), "rules.json");
			// JSON is YAML: promtool reads it as a rules file.
			fs.writeFileSync(file, JSON.stringify(rules));
			const run = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
			expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
			expect(run.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
		});
	});

	describe("against a real scrape of a started platform", () => {
		let samples: Sample[];
		let stop: () => Promise<void>;

		beforeAll(async () => {
			const traffic = await platformAfterTraffic();
			stop = traffic.stop;
			samples = samplesOf(await traffic.scrape());
		}, 60_000);

		afterAll(() => stop?.());

		it("has every metric the dashboard queries, with every label it matches or groups on", () => {
			const checked = new Set<string>();
			for (const { title, expr } of operationsExpressions()) {
				const names = promqlNames(expr);
				expect([title, names.selectors.length > 0]).toEqual([title, true]);
				for (const { metric, labels } of names.selectors) {
					const own = samples.filter(s => s.name === metric);
					expect([title, metric, own.length > 0]).toEqual([title, metric, true]);
					const present = new Set(own.flatMap(s => Object.keys(s.labels)));
					for (const label of [...labels, ...names.grouping]) expect([title, metric, label, present.has(label)]).toEqual([title, metric, label, true]);
					checked.add(metric);
				}
			}
			// Every operator metric and Moleculer's request families are on the dashboard.
			expect([...checked].sort()).toEqual([
				"marquee_analytics_buffer_rows",
				"marquee_analytics_ingest_lag_seconds_bucket",
				"marquee_analytics_ingest_lag_seconds_count",
				"marquee_device_lane_requests_total",
				"marquee_displays_online",
				"marquee_email_outbox_depth",
				"marquee_heartbeats_total",
				"marquee_manifest_recomputations_total",
				"marquee_manifest_recompute_lag_seconds_bucket",
				"marquee_upload_bytes_total",
				"marquee_webhook_deliveries_total",
				"moleculer_request_active",
				"moleculer_request_error_total",
				"moleculer_request_time_bucket",
				"moleculer_request_total"
			]);
		});

		it("finds the gateway's requests and errors where the HTTP panels look (action api.rest, error codes)", () => {
			const rest = (name: string) => samples.filter(s => s.name === name && s.labels.action === "api.rest" && s.labels.type === "local");
			expect(rest("moleculer_request_total").reduce((n, s) => n + s.value, 0)).toBeGreaterThan(10);
			// The traffic's failed sign-in.
			expect(rest("moleculer_request_error_total").map(s => s.labels.error_code)).toContain("401");
		});
	});
});
