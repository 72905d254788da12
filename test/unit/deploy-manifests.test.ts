/**
 * The deployment files against the code: the Dockerfile, docker-compose.yml and k8s/ must run every
 * service in SERVICE_NAMES, probe the port that service's process really serves its ops endpoints
 * on, and set only variables that shared/config.ts declares (and accepts). Adding a service or a
 * variable without updating them fails here.
 */
import fs from "node:fs";
import path from "node:path";
import { CORE_SCHEMA, load, loadAll, mergeTag } from "js-yaml";
import ts from "typescript";
import { BACKEND_USERS } from "../../shared/health";
import { ConfigError, loadConfig, SERVICE_NAMES, VARIABLES } from "../../shared/config";
import { dig, digList, digMapping, isMapping, list, mapping, quantity, text, type Mapping } from "../helpers/parsed";

const ROOT = path.resolve(__dirname, "../..");
/** The Marquee resources; k8s/kustomization.yaml and k8s/overlays/* build on them (test/unit/k8s-rendered.test.ts). */
const K8S_DIR = "k8s/base";
/** YAML 1.2 core schema plus merge keys (`<<: *anchor`), which docker-compose.yml relies on. */
const YAML_SCHEMA = CORE_SCHEMA.withTags(mergeTag);

const VARIABLE_NAMES = new Set(VARIABLES.map(variable => variable.name));
const INFRASTRUCTURE = ["nats", "mongo", "redis", "minio", "clickhouse", "mailpit"];
/** Operator tools next to the platform (no Marquee service depends on them): name → image. */
const TOOLS: Record<string, RegExp> = { grafana: /^grafana\/grafana(-oss)?:\d+\.\d+\.\d+$/, prometheus: /^prom\/prometheus:v\d+\.\d+\.\d+$/ };
/** Written by hand: where each stateful container keeps its data, in a named volume. */
const STATE_VOLUMES: Record<string, string> = {
	nats: "/data",
	mongo: "/data/db",
	redis: "/data",
	minio: "/data",
	clickhouse: "/var/lib/clickhouse",
	grafana: "/var/lib/grafana",
	prometheus: "/prometheus"
};
/** Backends production must point at; unset, each would fall back to its embedded default. */
const BACKEND_VARIABLES = ["TRANSPORTER", "MONGO_URI", "REDIS_URL", "S3_ENDPOINT", "CLICKHOUSE_URL", "SMTP_URL"];
const SECRET_VARIABLES = ["JWT_SECRET", "ENCRYPTION_KEY", "S3_ACCESS_KEY", "S3_SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"];
/** Written by hand: the services whose code talks to the media S3 and to ClickHouse. */
const S3_USERS: readonly string[] = ["media"];
const CLICKHOUSE_USERS: readonly string[] = ["analytics"];
const CONFIG_MAP = "marquee-config";
const SECRET = "marquee-secrets";
const TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-config-validation";
const TEST_ENCRYPTION_KEY = "test-encryption-key-long-enough-for-config-validation";

/** The process running `api` serves /health/* and /metrics on PORT; every other one on OPS_PORT. */
function opsPort(service: string): number {
	return service === "api" ? 3000 : 3001;
}

// ---- narrowing helpers: parsed YAML is `unknown` until checked (test/helpers/parsed.ts) ----

/** True when every label of `selector` is on `labels`. */
function selects(selector: Mapping, labels: Mapping): boolean {
	return Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value);
}

function read(relative: string): string {
	return fs.readFileSync(path.join(ROOT, relative), "utf8");
}

/** The .ts files under a directory of the repository, relative paths; none when it does not exist. */
function listTypeScript(relative: string): string[] {
	const dir = path.join(ROOT, relative);
	if (!fs.existsSync(dir)) return [];
	return fs
		.readdirSync(dir, { recursive: true, encoding: "utf8" })
		.filter(file => file.endsWith(".ts"))
		.map(file => path.join(relative, file));
}

function stringRecord(data: Record<string, unknown>): Record<string, string> {
	return Object.fromEntries(Object.entries(data).map(([key, value]) => [key, text(value, key)]));
}

function once<T>(compute: () => T): () => T {
	let cached: { value: T } | null = null;
	return () => {
		cached ??= { value: compute() };
		return cached.value;
	};
}

// ---- Dockerfile ----

interface Instruction {
	keyword: string;
	args: string;
	line: number;
}

interface Stage {
	image: string;
	name: string | null;
	instructions: Instruction[];
}

/** Splits a Dockerfile into instructions (continuation lines joined, comments dropped) and stages. */
function parseDockerfile(source: string): Stage[] {
	const instructions: Instruction[] = [];
	let pending = "";
	let start = 0;
	source.split("\n").forEach((raw, index) => {
		const line = raw.trim();
		if (line === "" || line.startsWith("#")) return;
		if (pending === "") start = index + 1;
		if (line.endsWith("\\")) {
			pending += `${line.slice(0, -1)} `;
			return;
		}
		const match = /^(\S+)\s*([\s\S]*)$/.exec(pending + line);
		pending = "";
		if (match) instructions.push({ keyword: match[1].toUpperCase(), args: match[2].trim(), line: start });
	});
	const stages: Stage[] = [];
	for (const instruction of instructions) {
		if (instruction.keyword === "FROM") {
			const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
			if (!from) throw new Error(`Dockerfile line ${instruction.line}: cannot read FROM ${instruction.args}`);
			stages.push({ image: from[1], name: from[2] ?? null, instructions: [] });
		} else if (stages.length === 0) {
			if (instruction.keyword !== "ARG") throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} before FROM`);
		} else {
			stages[stages.length - 1].instructions.push(instruction);
		}
	}
	return stages;
}

const dockerStages = once(() => parseDockerfile(read("Dockerfile")));

function finalStage(): Stage {
	const stages = dockerStages();
	return stages[stages.length - 1];
}

function runs(stage: Stage): string[] {
	return stage.instructions.filter(i => i.keyword === "RUN").map(i => i.args);
}

describe("Dockerfile", () => {
	it("is multi-stage, every stage from node:24-slim", () => {
		const stages = dockerStages();
		expect(stages.length).toBeGreaterThanOrEqual(2);
		for (const stage of stages) expect(stage.image).toBe("node:24-slim");
	});

	it("builds with npm ci and npm run build in an earlier stage", () => {
		const builders = dockerStages().slice(0, -1);
		const commands = builders.flatMap(runs);
		expect(commands.some(command => /\bnpm ci\b/.test(command) && !/--omit=dev/.test(command))).toBe(true);
		expect(commands.some(command => /\bnpm run build\b/.test(command))).toBe(true);
	});

	it("installs only production dependencies in the final stage and copies dist/ from a build stage", () => {
		const stage = finalStage();
		expect(runs(stage).some(command => /\bnpm ci\b[^&;|]*--omit=dev/.test(command))).toBe(true);
		expect(runs(stage).some(command => /\bnpm run build\b/.test(command))).toBe(false);
		const builders = new Set(dockerStages().slice(0, -1).map(s => s.name));
		const copies = stage.instructions.filter(i => i.keyword === "COPY").map(i => /--from=(\S+)\s+(\S+)/.exec(i.args));
		expect(copies.some(copy => copy !== null && builders.has(copy[1]) && /\/dist\/?$/.test(copy[2]))).toBe(true);
	});

	it("sets NODE_ENV=production and exposes the gateway and ops ports", () => {
		const stage = finalStage();
		const env = stage.instructions.filter(i => i.keyword === "ENV").map(i => i.args);
		expect(env.some(args => /(^|\s)NODE_ENV=("?)production\2(\s|$)/.test(args))).toBe(true);
		const exposed = stage.instructions.filter(i => i.keyword === "EXPOSE").flatMap(i => i.args.split(/\s+/)).map(port => port.replace(/\/tcp$/, ""));
		expect(exposed).toEqual(expect.arrayContaining(["3000", "3001"]));
	});

	it("ends as a non-root user", () => {
		const users = finalStage().instructions.filter(i => i.keyword === "USER");
		expect(users.length).toBeGreaterThan(0);
		const user = users[users.length - 1].args.split(":")[0];
		expect(["", "root", "0"]).not.toContain(user);
	});

	it("starts node dist/server.js, which the TypeScript build emits, with the Node flags npm start uses", () => {
		const stage = finalStage();
		expect(stage.instructions.some(i => i.keyword === "ENTRYPOINT")).toBe(false);
		const commands = stage.instructions.filter(i => i.keyword === "CMD");
		expect(commands.length).toBeGreaterThan(0);
		const command: unknown = JSON.parse(commands[commands.length - 1].args);
		expect(command).toEqual(["node", "--no-allocation-site-pretenuring", "dist/server.js"]);
		// The image, `npm run start:prod` and `npm start` run with the same flags (the benchmarks start the platform as `npm start` does).
		const scripts = (JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
		expect(scripts["start:prod"].split(" ")).toEqual(command);
		expect(scripts.start.split(" ")).toEqual(["tsx", "--no-allocation-site-pretenuring", "server.ts"]);

		const configFile = path.join(ROOT, "tsconfig.build.json");
		const raw = ts.readConfigFile(configFile, ts.sys.readFile);
		expect(raw.error).toBeUndefined();
		const parsed = ts.parseJsonConfigFileContent(raw.config, ts.sys, ROOT, undefined, configFile);
		expect(path.resolve(parsed.options.outDir ?? "")).toBe(path.join(ROOT, "dist"));
		expect(path.resolve(parsed.options.rootDir ?? "")).toBe(ROOT);
		expect(list(mapping(raw.config, "tsconfig.build.json").include, "tsconfig.build.json include")).toContain("server.ts");
	});
});

describe(".dockerignore", () => {
	it("lets in everything the build compiles, and nothing else", () => {
		const patterns = read(".dockerignore")
			.split("\n")
			.map(line => line.trim())
			.filter(line => line !== "" && !line.startsWith("#"));
		expect(patterns[0]).toBe("*");
		const allowed = new Set(patterns.filter(p => p.startsWith("!")).map(p => p.slice(1).replace(/\/$/, "")));
		const raw = ts.readConfigFile(path.join(ROOT, "tsconfig.build.json"), ts.sys.readFile);
		const include = list(mapping(raw.config, "tsconfig.build.json").include, "tsconfig.build.json include").map(entry => text(entry, "include entry"));
		for (const needed of ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", ...include]) {
			expect([needed, allowed.has(needed)]).toEqual([needed, true]);
		}
		for (const kept of ["node_modules", "dist", "data", ".env", ".git"]) expect(allowed.has(kept)).toBe(false);
	});
});

// ---- docker-compose.yml ----

const compose = once(() => mapping(load(read("docker-compose.yml"), { schema: YAML_SCHEMA }), "docker-compose.yml"));

function composeService(name: string): Mapping {
	return mapping(mapping(compose().services, "services")[name], `services.${name}`);
}

/** `environment` in either compose form, values as strings. */
function composeEnvironment(service: Mapping, where: string): Record<string, string> {
	const env: Record<string, string> = {};
	const raw = service.environment;
	if (raw === undefined) return env;
	if (Array.isArray(raw)) {
		for (const entry of raw) {
			const [key, ...value] = text(entry, `${where}.environment[]`).split("=");
			env[key] = value.join("=");
		}
		return env;
	}
	for (const [key, value] of Object.entries(mapping(raw, `${where}.environment`))) {
		env[key] = value === null || value === undefined ? "" : String(value);
	}
	return env;
}

/** A compose command or healthcheck test as one string (list or string form). */
function commandLine(value: unknown, where: string): string {
	if (typeof value === "string") return value;
	return list(value, where)
		.map(part => text(part, where))
		.join(" ");
}

/** Compose-style interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}. */
function interpolate(value: string, env: Record<string, string>, where: string): string {
	return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_match, name: string, operator?: string, argument?: string) => {
		const set = env[name];
		const usable = set !== undefined && (set !== "" || operator === "-" || operator === "?");
		if (usable) return set;
		if (operator?.endsWith("?")) throw new Error(`${where}: \${${name}} must be set (${argument ?? ""})`);
		return operator?.endsWith("-") ? (argument ?? "") : "";
	});
}

/** What a container sees when compose runs with only JWT_SECRET and ENCRYPTION_KEY set by the operator (no .env). */
function resolvedEnvironment(service: string): Record<string, string> {
	const env = composeEnvironment(composeService(service), service);
	const operator = { JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };
	return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, interpolate(value, operator, `${service}.${key}`)]));
}

function publishedContainerPorts(service: Mapping, where: string): number[] {
	if (service.ports === undefined) return [];
	return list(service.ports, `${where}.ports`).map(port => {
		if (isMapping(port)) return Number(port.target);
		const parts = String(port).replace(/\/(tcp|udp)$/, "").split(":");
		return Number(parts[parts.length - 1]);
	});
}

describe("docker-compose.yml", () => {
	it("has the infrastructure, each with a healthcheck", () => {
		const images: Record<string, RegExp> = {
			nats: /^nats:/,
			mongo: /^mongo:/,
			redis: /^redis:/,
			minio: /^(quay\.io\/)?minio\/minio:/,
			clickhouse: /^clickhouse\/clickhouse-server:24\./,
			mailpit: /^axllent\/mailpit:/
		};
		for (const name of INFRASTRUCTURE) {
			const service = composeService(name);
			expect([name, text(service.image, `${name}.image`)]).toEqual([name, expect.stringMatching(images[name])]);
			const healthcheck = mapping(service.healthcheck, `${name}.healthcheck`);
			expect(healthcheck.disable).not.toBe(true);
			expect(commandLine(healthcheck.test, `${name}.healthcheck.test`).length).toBeGreaterThan(0);
		}
	});

	it.each(Object.entries(STATE_VOLUMES))("%s keeps its data (%s) in a named volume declared at the top level", (name, dir) => {
		const volumes = list(composeService(name).volumes, `${name}.volumes`).map(v => text(v, `${name}.volumes[]`));
		const mount = volumes.find(v => v.split(":")[1] === dir);
		expect([name, mount]).toEqual([name, expect.stringMatching(/^[a-z][a-z0-9-]*:/)]);
		const volume = mount!.split(":")[0];
		expect(Object.keys(mapping(compose().volumes, "volumes"))).toContain(volume);
	});

	it("mounts only files and directories that exist in the repository, read-only", () => {
		for (const [name, service] of Object.entries(mapping(compose().services, "services"))) {
			const volumes = isMapping(service) && service.volumes !== undefined ? list(service.volumes, `${name}.volumes`).map(v => text(v, `${name}.volumes[]`)) : [];
			for (const bind of volumes.filter(v => v.startsWith("./"))) {
				const [source, , mode] = bind.split(":");
				expect([name, source, fs.existsSync(path.join(ROOT, source)), mode]).toEqual([name, source, true, "ro"]);
			}
		}
	});

	it("runs NATS with JetStream", () => {
		const command = commandLine(composeService("nats").command, "nats.command").split(/\s+/);
		expect(command.some(arg => arg === "-js" || arg === "--jetstream")).toBe(true);
	});

	it("has exactly one container per Marquee service", () => {
		const names = Object.keys(mapping(compose().services, "services")).filter(name => !INFRASTRUCTURE.includes(name) && !(name in TOOLS));
		expect(names.sort()).toEqual([...SERVICE_NAMES].sort());
	});

	it.each(Object.keys(TOOLS))("%s: a pinned image, a healthcheck, only healthy infrastructure or tools first, published on 127.0.0.1 only", name => {
		const service = composeService(name);
		expect(text(service.image, `${name}.image`)).toMatch(TOOLS[name]);
		const healthcheck = mapping(service.healthcheck, `${name}.healthcheck`);
		expect(commandLine(healthcheck.test, `${name}.healthcheck.test`)).toMatch(/^CMD(-SHELL)? /);
		const dependsOn = service.depends_on === undefined ? {} : mapping(service.depends_on, `${name}.depends_on`);
		for (const [dependency, how] of Object.entries(dependsOn)) {
			const allowed = INFRASTRUCTURE.includes(dependency) || dependency in TOOLS;
			expect([dependency, allowed, dig(how, ["condition"], `${name}.depends_on.${dependency}`)]).toEqual([dependency, true, "service_healthy"]);
		}
		const ports = service.ports === undefined ? [] : list(service.ports, `${name}.ports`).map(String);
		for (const port of ports) expect(port).toMatch(/^127\.0\.0\.1:/);
	});

	it.each([...SERVICE_NAMES])("%s: same image, SERVICES=<name>, a healthcheck on its ops port, healthy infrastructure first", name => {
		const service = composeService(name);
		const api = composeService("api");
		expect(service.image).toBe(api.image);
		expect(service.build).toEqual(api.build);
		const context = isMapping(service.build) ? service.build.context : service.build;
		expect(context).toBe(".");

		const env = composeEnvironment(service, name);
		expect(env.SERVICES).toBe(name);

		const healthcheck = mapping(service.healthcheck, `${name}.healthcheck`);
		const test = commandLine(healthcheck.test, `${name}.healthcheck.test`);
		expect(test).toMatch(/^CMD(-SHELL)? node /);
		expect(test).toContain(`://127.0.0.1:${opsPort(name)}/health/live`);

		const dependsOn = mapping(service.depends_on, `${name}.depends_on`);
		for (const infra of INFRASTRUCTURE) {
			expect([infra, dig(dependsOn, [infra, "condition"], `${name}.depends_on`)]).toEqual([infra, "service_healthy"]);
		}
	});

	it.each([...SERVICE_NAMES])("%s: every variable is one shared/config.ts declares, and loadConfig accepts them", name => {
		const env = resolvedEnvironment(name);
		for (const key of Object.keys(env)) expect([key, VARIABLE_NAMES.has(key)]).toEqual([key, true]);
		const config = loadConfig(env);
		expect(config.services).toEqual([name]);
		expect(config.nodeEnv).toBe("production");
		expect(config.logFormat).toBe("json");
		expect(config.transporter).toBe("nats://nats:4222");
		for (const backend of BACKEND_VARIABLES) expect([backend, env[backend]]).toEqual([backend, expect.stringMatching(/.+/)]);
	});

	it("gives MinIO and ClickHouse the credentials the services use", () => {
		const env = resolvedEnvironment("media");
		const minio = resolvedEnvironment("minio");
		expect(minio.MINIO_ROOT_USER).toBe(env.S3_ACCESS_KEY);
		expect(minio.MINIO_ROOT_PASSWORD).toBe(env.S3_SECRET_KEY);
		const clickhouse = resolvedEnvironment("clickhouse");
		const url = new URL(env.CLICKHOUSE_URL);
		expect(decodeURIComponent(url.username)).toBe(clickhouse.CLICKHOUSE_USER);
		expect(decodeURIComponent(url.password)).toBe(clickhouse.CLICKHOUSE_PASSWORD);
		expect(url.pathname).toBe(`/${clickhouse.CLICKHOUSE_DB}`);
	});

	it("publishes port 3000 from api only", () => {
		expect(publishedContainerPorts(composeService("api"), "api")).toContain(3000);
		for (const name of SERVICE_NAMES.filter(n => n !== "api")) {
			expect([name, publishedContainerPorts(composeService(name), name)]).toEqual([name, []]);
		}
	});
});

// ---- k8s/ ----

interface Resource {
	file: string;
	apiVersion: string;
	kind: string;
	name: string;
	body: Mapping;
}

const kustomizationResources = once(() => {
	const kustomization = mapping(load(read(`${K8S_DIR}/kustomization.yaml`), { schema: YAML_SCHEMA }), "kustomization.yaml");
	return list(kustomization.resources, "kustomization.yaml resources").map(entry => text(entry, "kustomization.yaml resource"));
});

const k8sResources = once((): Resource[] =>
	kustomizationResources().flatMap(file =>
		loadAll(read(`${K8S_DIR}/${file}`), { schema: YAML_SCHEMA })
			.filter(document => document !== null)
			.map((document, index) => {
				const where = `${file} document ${index + 1}`;
				const body = mapping(document, where);
				return {
					file,
					apiVersion: text(body.apiVersion, `${where} apiVersion`),
					kind: text(body.kind, `${where} kind`),
					name: text(digMapping(body, ["metadata"], where).name, `${where} metadata.name`),
					body
				};
			})
	)
);

function resourcesOfKind(kind: string): Resource[] {
	return k8sResources().filter(resource => resource.kind === kind);
}

function oneResource(kind: string, name: string): Resource {
	const found = resourcesOfKind(kind).filter(resource => resource.name === name);
	if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
	return found[0];
}

/** The container of a Deployment that runs Marquee (the one with SERVICES in its env). */
function appContainer(deployment: Resource): Mapping {
	const where = `Deployment ${deployment.name}`;
	const containers = digList(deployment.body, ["spec", "template", "spec", "containers"], where).map((c, i) => mapping(c, `${where} container ${i}`));
	const app = containers.filter(container => Array.isArray(container.env) && container.env.some(e => isMapping(e) && e.name === "SERVICES"));
	if (app.length !== 1) throw new Error(`${where}: expected one container with SERVICES in its env, found ${app.length}`);
	return app[0];
}

function containerEnv(container: Mapping, where: string): Mapping[] {
	return container.env === undefined ? [] : list(container.env, `${where}.env`).map(e => mapping(e, `${where}.env[]`));
}

function servicesOf(deployment: Resource): string {
	const container = appContainer(deployment);
	const entry = containerEnv(container, deployment.name).find(e => e.name === "SERVICES");
	return text(entry?.value, `Deployment ${deployment.name} SERVICES`);
}

function deploymentFor(service: string): Resource {
	const found = resourcesOfKind("Deployment").filter(deployment => servicesOf(deployment) === service);
	if (found.length !== 1) throw new Error(`expected one Deployment with SERVICES=${service}, found ${found.length}`);
	return found[0];
}

function podLabels(deployment: Resource): Mapping {
	return digMapping(deployment.body, ["spec", "template", "metadata", "labels"], `Deployment ${deployment.name}`);
}

function podAnnotations(deployment: Resource): Mapping {
	const metadata = digMapping(deployment.body, ["spec", "template", "metadata"], `Deployment ${deployment.name}`);
	return isMapping(metadata.annotations) ? metadata.annotations : {};
}

/** A container port given as a number or as the name of one of the container's ports. */
function resolvePort(container: Mapping, port: unknown, where: string): number {
	if (typeof port === "number") return port;
	const name = text(port, where);
	if (/^\d+$/.test(name)) return Number(name);
	const ports = container.ports === undefined ? [] : list(container.ports, `${where} ports`).map(p => mapping(p, `${where} port`));
	const named = ports.find(p => p.name === name);
	if (!named || typeof named.containerPort !== "number") throw new Error(`${where}: no container port named ${name}`);
	return named.containerPort;
}

function configMapData(): Record<string, unknown> {
	return digMapping(oneResource("ConfigMap", CONFIG_MAP).body, ["data"], `ConfigMap ${CONFIG_MAP}`);
}

/** The example Secret's entries, `data` decoded from base64 and `stringData` as written. */
function secretData(): Record<string, unknown> {
	const secret = oneResource("Secret", SECRET).body;
	const data = secret.data === undefined ? {} : mapping(secret.data, "Secret data");
	const decoded = Object.fromEntries(
		Object.entries(data).map(([key, value]) => [key, Buffer.from(text(value, `Secret data.${key}`), "base64").toString("utf8")])
	);
	return { ...decoded, ...(secret.stringData === undefined ? {} : mapping(secret.stringData, "Secret stringData")) };
}

describe("k8s/", () => {
	it("lists every resource file in kustomization.yaml, each once, and each exists", () => {
		const listed = kustomizationResources();
		expect(new Set(listed).size).toBe(listed.length);
		const onDisk = fs.readdirSync(path.join(ROOT, K8S_DIR)).filter(file => /\.ya?ml$/.test(file) && !/^kustomization\.ya?ml$/.test(file));
		expect([...listed].sort()).toEqual(onDisk.sort());
	});

	it("parses every resource file into named resources, no kind/name twice", () => {
		const resources = k8sResources();
		for (const file of kustomizationResources()) expect([file, resources.some(r => r.file === file)]).toEqual([file, true]);
		const keys = resources.map(r => `${r.kind}/${r.name}`);
		expect(new Set(keys).size).toBe(keys.length);
	});

	it("has one Deployment per service and no other", () => {
		const deployments = resourcesOfKind("Deployment");
		expect(deployments.map(servicesOf).sort()).toEqual([...SERVICE_NAMES].sort());
		for (const deployment of deployments) expect(deployment.apiVersion).toBe("apps/v1");
	});

	it("runs every service from the same image", () => {
		const images = new Set(resourcesOfKind("Deployment").map(d => text(appContainer(d).image, `Deployment ${d.name} image`)));
		expect(images.size).toBe(1);
	});

	describe.each([...SERVICE_NAMES])("Deployment for %s", name => {
		const where = `Deployment for ${name}`;
		const podSpec = () => digMapping(deploymentFor(name).body, ["spec", "template", "spec"], where);
		const container = () => appContainer(deploymentFor(name));

		it("selects its own pods only", () => {
			const deployment = deploymentFor(name);
			const selector = digMapping(deployment.body, ["spec", "selector", "matchLabels"], where);
			expect(selects(selector, podLabels(deployment))).toBe(true);
			for (const other of resourcesOfKind("Deployment").filter(d => d !== deployment)) {
				expect([other.name, selects(selector, podLabels(other))]).toEqual([other.name, false]);
			}
		});

		it("sets SERVICES and takes the rest from the ConfigMap, then the Secret", () => {
			const env = containerEnv(container(), where);
			expect(env.filter(e => e.name === "SERVICES").map(e => e.value)).toEqual([name]);
			for (const entry of env) {
				const variable = text(entry.name, `${where} env name`);
				expect([variable, VARIABLE_NAMES.has(variable)]).toEqual([variable, true]);
				expect([variable, SECRET_VARIABLES.includes(variable) && entry.value !== undefined]).toEqual([variable, false]);
			}
			const sources = digList(container(), ["envFrom"], where).map(s => mapping(s, `${where} envFrom`));
			const configIndex = sources.findIndex(s => isMapping(s.configMapRef) && s.configMapRef.name === CONFIG_MAP);
			const secretIndex = sources.findIndex(s => isMapping(s.secretRef) && s.secretRef.name === SECRET);
			expect(configIndex).toBeGreaterThanOrEqual(0);
			expect(secretIndex).toBeGreaterThan(configIndex);
		});

		it(`probes /health/live and /health/ready on port ${opsPort(name)}`, () => {
			const app = container();
			const probes: [string, string][] = [
				["livenessProbe", "/health/live"],
				["readinessProbe", "/health/ready"]
			];
			if (app.startupProbe !== undefined) probes.push(["startupProbe", "/health/live"]);
			for (const [probe, expectedPath] of probes) {
				const httpGet = digMapping(app, [probe, "httpGet"], where);
				expect([probe, httpGet.path]).toEqual([probe, expectedPath]);
				expect([probe, resolvePort(app, httpGet.port, `${where} ${probe}`)]).toEqual([probe, opsPort(name)]);
			}
			const annotations = podAnnotations(deploymentFor(name));
			if (annotations["prometheus.io/port"] !== undefined) expect(annotations["prometheus.io/port"]).toBe(String(opsPort(name)));
		});

		it("requests and limits CPU and memory, requests within limits", () => {
			const resources = digMapping(container(), ["resources"], where);
			for (const resource of ["cpu", "memory"]) {
				const request = quantity(dig(resources, ["requests", resource], where), `${where} requests.${resource}`);
				const limit = quantity(dig(resources, ["limits", resource], where), `${where} limits.${resource}`);
				expect(request).toBeGreaterThan(0);
				expect(limit).toBeGreaterThanOrEqual(request);
			}
		});

		it("sleeps in preStop and gives the drain time to finish", () => {
			const command = digList(container(), ["lifecycle", "preStop", "exec", "command"], where).map(c => text(c, `${where} preStop`));
			expect(command[0]).toMatch(/(^|\/)sleep$/);
			const sleep = Number(command[1]);
			expect(sleep).toBeGreaterThan(0);
			const grace = podSpec().terminationGracePeriodSeconds;
			const shutdownMs = Number(configMapData().SHUTDOWN_TIMEOUT_MS ?? 10_000);
			expect(typeof grace).toBe("number");
			expect(grace).toBeGreaterThan(sleep + shutdownMs / 1000);
		});

		it("runs as a numeric non-root user on a read-only root filesystem, with /tmp writable", () => {
			const pod = podSpec();
			const app = container();
			const podSecurity = isMapping(pod.securityContext) ? pod.securityContext : {};
			const appSecurity = digMapping(app, ["securityContext"], where);
			const effective = { ...podSecurity, ...appSecurity };
			expect(effective.runAsNonRoot).toBe(true);
			// The image's USER is a name, which the kubelet cannot check against runAsNonRoot.
			expect(typeof effective.runAsUser).toBe("number");
			expect(effective.runAsUser).not.toBe(0);
			expect(appSecurity.readOnlyRootFilesystem).toBe(true);
			expect(appSecurity.allowPrivilegeEscalation).toBe(false);

			const mounts = digList(app, ["volumeMounts"], where).map(m => mapping(m, `${where} volumeMount`));
			const tmp = mounts.find(m => m.mountPath === "/tmp");
			expect(tmp).toBeDefined();
			const volumes = digList(pod, ["volumes"], where).map(v => mapping(v, `${where} volume`));
			const volume = volumes.find(v => v.name === tmp?.name);
			expect(isMapping(volume?.emptyDir)).toBe(true);
		});

		it("has an autoscaler (autoscaling/v2) and a disruption budget that allows drains", () => {
			const deployment = deploymentFor(name);
			const autoscalers = resourcesOfKind("HorizontalPodAutoscaler").filter(hpa => {
				const target = digMapping(hpa.body, ["spec", "scaleTargetRef"], `HPA ${hpa.name}`);
				return target.kind === "Deployment" && target.name === deployment.name;
			});
			expect(autoscalers).toHaveLength(1);
			const hpa = autoscalers[0];
			expect(hpa.apiVersion).toBe("autoscaling/v2");
			const spec = digMapping(hpa.body, ["spec"], `HPA ${hpa.name}`);
			const minReplicas = Number(spec.minReplicas ?? 1);
			expect(minReplicas).toBeGreaterThanOrEqual(1);
			expect(Number(spec.maxReplicas)).toBeGreaterThanOrEqual(minReplicas);
			expect(digList(spec, ["metrics"], `HPA ${hpa.name}`).length).toBeGreaterThan(0);

			const budgets = resourcesOfKind("PodDisruptionBudget").filter(pdb =>
				selects(digMapping(pdb.body, ["spec", "selector", "matchLabels"], `PDB ${pdb.name}`), podLabels(deployment))
			);
			expect(budgets).toHaveLength(1);
			const pdb = budgets[0];
			expect(pdb.apiVersion).toBe("policy/v1");
			const budget = digMapping(pdb.body, ["spec"], `PDB ${pdb.name}`);
			if (budget.maxUnavailable !== undefined) expect(Number(budget.maxUnavailable)).toBeGreaterThanOrEqual(1);
			else expect(Number(budget.minAvailable)).toBeLessThan(minReplicas);
		});
	});

	it("exposes the api pods through a Service on port 3000 and routes the Ingress to it", () => {
		const api = deploymentFor("api");
		const services = resourcesOfKind("Service").filter(s => selects(digMapping(s.body, ["spec", "selector"], `Service ${s.name}`), podLabels(api)));
		expect(services).toHaveLength(1);
		const service = services[0];
		for (const other of resourcesOfKind("Deployment").filter(d => d !== api)) {
			expect(selects(digMapping(service.body, ["spec", "selector"], `Service ${service.name}`), podLabels(other))).toBe(false);
		}
		const ports = digList(service.body, ["spec", "ports"], `Service ${service.name}`).map(p => mapping(p, `Service ${service.name} port`));
		expect(ports.map(p => resolvePort(appContainer(api), p.targetPort ?? p.port, `Service ${service.name}`))).toEqual([3000]);

		const ingresses = resourcesOfKind("Ingress");
		expect(ingresses.length).toBeGreaterThan(0);
		for (const ingress of ingresses) {
			expect(ingress.apiVersion).toBe("networking.k8s.io/v1");
			const rules = digList(ingress.body, ["spec", "rules"], `Ingress ${ingress.name}`);
			const backends = rules.flatMap(rule =>
				digList(rule, ["http", "paths"], `Ingress ${ingress.name} rule`).map(p => digMapping(p, ["backend", "service"], `Ingress ${ingress.name} path`))
			);
			expect(backends.length).toBeGreaterThan(0);
			for (const backend of backends) {
				expect(backend.name).toBe(service.name);
				const port = mapping(backend.port, `Ingress ${ingress.name} backend port`);
				expect(ports.some(p => (port.name !== undefined ? p.name === port.name : p.port === port.number))).toBe(true);
			}
		}
	});

	it.each([...SERVICE_NAMES])("%s: readiness waits for the media S3 and ClickHouse only where its code uses them", name => {
		// Every pod gets every address from the ConfigMap; readiness (shared/health.ts BACKEND_USERS)
		// checks a backend only in the processes whose services use it, so a NetworkPolicy that keeps
		// the others from MinIO and ClickHouse cannot make them unready.
		expect(BACKEND_USERS.s3).toEqual(S3_USERS);
		expect(BACKEND_USERS.clickhouse).toEqual(CLICKHOUSE_USERS);
		const sources = [`services/${name}.service.ts`, ...listTypeScript(`services/${name}`)].map(file => [file, read(file)] as const);
		for (const [file, source] of sources) {
			if (!S3_USERS.includes(name)) expect([file, /shared\/storage["']/.test(source)]).toEqual([file, false]);
			if (!CLICKHOUSE_USERS.includes(name)) expect([file, /\bclickhouseUrl\b/.test(source)]).toEqual([file, false]);
		}
	});

	it("sets only declared variables in the ConfigMap and Secret, as strings", () => {
		for (const [source, data] of [
			["ConfigMap", configMapData()],
			["Secret", secretData()]
		] as const) {
			for (const [key, value] of Object.entries(data)) {
				expect([source, key, VARIABLE_NAMES.has(key)]).toEqual([source, key, true]);
				expect([source, key, typeof value]).toEqual([source, key, "string"]);
			}
		}
	});

	it("points the ConfigMap at the production backends and keeps secrets and SERVICES out of it", () => {
		const data = configMapData();
		for (const backend of BACKEND_VARIABLES) expect([backend, data[backend]]).toEqual([backend, expect.stringMatching(/.+/)]);
		expect(data.NODE_ENV).toBe("production");
		expect(data.LOG_FORMAT).toBe("json");
		for (const key of [...SECRET_VARIABLES, "SERVICES"]) expect([key, key in data]).toEqual([key, false]);
	});

	it("keeps placeholders in the Secret template that fail closed", () => {
		const secret = secretData();
		expect(Object.keys(secret)).toEqual(expect.arrayContaining(["JWT_SECRET", "ENCRYPTION_KEY", "S3_ACCESS_KEY", "S3_SECRET_KEY"]));
		for (const [key, value] of Object.entries(secret)) {
			if (value !== "") expect([key, value]).toEqual([key, expect.stringContaining("REPLACE_ME")]);
		}
		const env = { ...stringRecord(configMapData()), ...stringRecord(secret), SERVICES: "api" };
		expect(() => loadConfig(env)).toThrow(ConfigError);
	});

	it.each([...SERVICE_NAMES])("gives %s a configuration loadConfig accepts once the Secret is filled in", name => {
		const filled = { ...stringRecord(secretData()), JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, S3_ACCESS_KEY: "access", S3_SECRET_KEY: "secret-key" };
		const deployment = deploymentFor(name);
		const inline = Object.fromEntries(containerEnv(appContainer(deployment), deployment.name).map(e => [text(e.name, "env name"), text(e.value, "env value")]));
		const config = loadConfig({ ...stringRecord(configMapData()), ...filled, ...inline });
		expect(config.services).toEqual([name]);
		expect(config.nodeEnv).toBe("production");
		expect(config.transporter).toMatch(/^nats:\/\//);
		expect(config.mongoUri).not.toBeNull();
		expect(config.redisUrl).not.toBeNull();
		expect(config.s3.endpoint).not.toBeNull();
		expect(config.clickhouseUrl).not.toBeNull();
		expect(config.smtpUrl).not.toBeNull();
		expect(config.port).toBe(3000);
		expect(config.opsPort).toBe(3001);
	});
});
