/**
 * What `kubectl kustomize` renders for every entry point under k8s/ (the managed-services root, the
 * base, the self-hosted overlay): the kinds expected, selectors that match their pods, probes and
 * resources on every container, volume claims that are mounted, disruption budgets where replicas
 * allow drains, Services that select pods, the backup CronJob and its script, and the
 * NetworkPolicies evaluated pod by pod against a table of allowed connections written by hand
 * below (never derived from the manifests under test). test/unit/deploy-manifests.test.ts checks
 * the base's files against the code; this file checks what an operator applies.
 * Skipped, with one line, when kubectl is not installed.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CORE_SCHEMA, load, loadAll } from "js-yaml";
import { describeIf } from "../helpers/servers";
import { dig, digList, digMapping, isMapping, list, mapping, quantity, text, type Mapping } from "../helpers/parsed";

const ROOT = path.resolve(__dirname, "../..");
const NAMESPACE = "marquee";
const HAVE_KUBECTL = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

// ---- expectations, by hand ----

const SERVICES = ["api", "auth", "tenants", "devices", "media", "scheduling", "notifications", "billing", "analytics"];
const STORES = ["nats", "mongo", "redis", "clickhouse", "minio"];

interface EntryPoint {
	/** StatefulSets it runs (the backing stores); none = managed services. */
	stores: string[];
	kinds: string[];
}

const MANAGED_KINDS = [
	"Namespace",
	"ConfigMap",
	"Secret",
	"Deployment",
	"Service",
	"HorizontalPodAutoscaler",
	"PodDisruptionBudget",
	"Ingress",
	"NetworkPolicy",
	"CronJob"
];
/** Every directory under k8s/ with a kustomization.yaml, and what it must render. */
const ENTRY_POINTS: Record<string, EntryPoint> = {
	k8s: { stores: [], kinds: MANAGED_KINDS },
	"k8s/base": { stores: [], kinds: MANAGED_KINDS },
	"k8s/overlays/self-hosted": { stores: STORES, kinds: [...MANAGED_KINDS, "StatefulSet", "Job"] }
};
/** kind: Component directories (not rendered on their own) and the entry points that use them. */
const COMPONENTS: Record<string, string[]> = { "k8s/components/dependencies": ["k8s/overlays/self-hosted"] };

/**
 * Who may connect to whom: target pod → source → TCP ports. Sources are the workloads' pods by
 * short name (Deployment marquee-api → "api", CronJob marquee-backup → "backup"), "grafana" and
 * "stranger" (pods that do not exist yet in the namespace: a Grafana, and anything else someone
 * starts there), and "ns:<name>", a pod in another namespace. "*" stands for every source.
 */
type Allowed = Record<string, number[]>;
const EVERY = "*";
const SYNTHETIC_SOURCES: { key: string; namespace: string; labels: Mapping }[] = [
	{ key: "grafana", namespace: NAMESPACE, labels: { "app.kubernetes.io/name": "grafana" } },
	{ key: "stranger", namespace: NAMESPACE, labels: { app: "debug-shell" } },
	{ key: "ns:monitoring", namespace: "monitoring", labels: { "app.kubernetes.io/name": "prometheus" } },
	{ key: "ns:ingress-nginx", namespace: "ingress-nginx", labels: { "app.kubernetes.io/name": "ingress-nginx" } },
	{ key: "ns:elsewhere", namespace: "elsewhere", labels: { app: "anything" } }
];

function from(sources: string[], ports: number[]): Allowed {
	return Object.fromEntries(sources.map(source => [source, ports]));
}

const EXPECTED_INGRESS: Record<string, Allowed> = {
	// The gateway: from anywhere (the Ingress controller, Prometheus), on its HTTP port only.
	api: { [EVERY]: [3000] },
	// Every other service: Prometheus on the ops port, nothing else (they only connect out, to NATS).
	...Object.fromEntries(SERVICES.filter(s => s !== "api").map(service => [service, from(["ns:monitoring"], [3001])])),
	backup: {},
	"mongo-init": {},
	nats: { ...from(SERVICES, [4222]), nats: [6222], "ns:monitoring": [8222] },
	mongo: from([...SERVICES, "backup", "mongo-init", "mongo"], [27017]),
	redis: from(SERVICES, [6379]),
	minio: from(["media", "backup"], [9000]),
	clickhouse: from(["analytics", "backup", "grafana"], [8123])
};

// ---- rendering and reading ----

interface Resource {
	apiVersion: string;
	kind: string;
	name: string;
	namespace: string | undefined;
	body: Mapping;
}

function optionalList(value: unknown, where: string): unknown[] {
	return value === undefined || value === null ? [] : list(value, where);
}

function parseAll(source: string, where: string): Resource[] {
	return loadAll(source, { schema: CORE_SCHEMA })
		.filter(document => document !== null && document !== undefined)
		.map((document, index) => {
			const body = mapping(document, `${where} document ${index + 1}`);
			const metadata = digMapping(body, ["metadata"], where);
			return {
				apiVersion: text(body.apiVersion, `${where} apiVersion`),
				kind: text(body.kind, `${where} kind`),
				name: text(metadata.name, `${where} metadata.name`),
				namespace: typeof metadata.namespace === "string" ? metadata.namespace : undefined,
				body
			};
		});
}

const renders = new Map<string, Resource[]>();

function rendered(dir: string): Resource[] {
	let resources = renders.get(dir);
	if (!resources) {
		const result = spawnSync("kubectl", ["kustomize", path.join(ROOT, dir)], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
		if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${result.stderr}`);
		resources = parseAll(result.stdout, dir);
		renders.set(dir, resources);
	}
	return resources;
}

function ofKind(resources: Resource[], kind: string): Resource[] {
	return resources.filter(r => r.kind === kind);
}

function one(resources: Resource[], kind: string, name: string): Resource {
	const found = resources.filter(r => r.kind === kind && r.name === name);
	if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
	return found[0];
}

/** Directories under k8s/ holding a kustomization.yaml, relative to the repository. */
function kustomizationDirs(): string[] {
	const found: string[] = [];
	const walk = (relative: string) => {
		for (const entry of fs.readdirSync(path.join(ROOT, relative), { withFileTypes: true })) {
			if (entry.isDirectory()) walk(path.join(relative, entry.name));
			else if (/^kustomization\.ya?ml$/.test(entry.name)) found.push(relative);
		}
	};
	walk("k8s");
	return found.sort();
}

function kustomizationKind(dir: string): string {
	const file = ["kustomization.yaml", "kustomization.yml"].map(name => path.join(ROOT, dir, name)).find(candidate => fs.existsSync(candidate));
	if (!file) throw new Error(`${dir}: no kustomization.yaml`);
	return text(mapping(load(fs.readFileSync(file, "utf8"), { schema: CORE_SCHEMA }), dir).kind, `${dir} kind`);
}

// ---- workloads and their pods ----

interface Workload {
	resource: Resource;
	/** Short name: metadata.name without the "marquee-" prefix. */
	key: string;
	podSpec: Mapping;
	podLabels: Mapping;
	/** Long-running (Deployment, StatefulSet) rather than run to completion (Job, CronJob). */
	serving: boolean;
}

function workloads(resources: Resource[]): Workload[] {
	return resources.flatMap((resource): Workload[] => {
		const where = `${resource.kind} ${resource.name}`;
		let template: Mapping;
		if (resource.kind === "Deployment" || resource.kind === "StatefulSet" || resource.kind === "Job") {
			template = digMapping(resource.body, ["spec", "template"], where);
		} else if (resource.kind === "CronJob") {
			template = digMapping(resource.body, ["spec", "jobTemplate", "spec", "template"], where);
		} else {
			return [];
		}
		return [
			{
				resource,
				key: resource.name.replace(/^marquee-/, ""),
				podSpec: digMapping(template, ["spec"], where),
				podLabels: digMapping(template, ["metadata", "labels"], where),
				serving: resource.kind === "Deployment" || resource.kind === "StatefulSet"
			}
		];
	});
}

function containersOf(podSpec: Mapping, where: string, withInit = true): Mapping[] {
	const main = digList(podSpec, ["containers"], where);
	const init = withInit ? optionalList(podSpec.initContainers, `${where}.initContainers`) : [];
	return [...init, ...main].map((c, i) => mapping(c, `${where} container ${i}`));
}

function containerPorts(podSpec: Mapping, where: string): Map<string, number> {
	const ports = new Map<string, number>();
	for (const container of containersOf(podSpec, where, false)) {
		for (const port of optionalList(container.ports, `${where} ports`).map(p => mapping(p, `${where} port`))) {
			const number = Number(port.containerPort);
			ports.set(String(number), number);
			if (typeof port.name === "string") ports.set(port.name, number);
		}
	}
	return ports;
}

interface Selector {
	matchLabels?: Mapping;
	matchExpressions?: unknown[];
}

/** A Kubernetes label selector (matchLabels and matchExpressions); {} selects everything. */
function matches(selector: Selector, labels: Mapping, where: string): boolean {
	const byLabel = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
	const byExpression = optionalList(selector.matchExpressions, `${where} matchExpressions`).every(raw => {
		const expression = mapping(raw, `${where} matchExpression`);
		const key = text(expression.key, `${where} key`);
		const values = optionalList(expression.values, `${where} values`);
		switch (expression.operator) {
			case "In":
				return key in labels && values.includes(labels[key]);
			case "NotIn":
				return !(key in labels) || !values.includes(labels[key]);
			case "Exists":
				return key in labels;
			case "DoesNotExist":
				return !(key in labels);
			default:
				throw new Error(`${where}: unknown operator ${String(expression.operator)}`);
		}
	});
	return byLabel && byExpression;
}

function selectorOf(value: unknown, where: string): Selector {
	const raw = mapping(value, where);
	return {
		matchLabels: raw.matchLabels === undefined ? undefined : mapping(raw.matchLabels, `${where}.matchLabels`),
		matchExpressions: raw.matchExpressions === undefined ? undefined : list(raw.matchExpressions, `${where}.matchExpressions`)
	};
}

/** A Service's selector is a plain label map. */
function serviceSelector(service: Resource): Selector {
	const labels = digMapping(service.body, ["spec", "selector"], `Service ${service.name}`);
	if (Object.keys(labels).length === 0) throw new Error(`Service ${service.name} selects nothing`);
	return { matchLabels: labels };
}

// ---- NetworkPolicy evaluation ----

interface Pod {
	key: string;
	namespace: string;
	labels: Mapping;
}

function namespaceLabels(resources: Resource[], namespace: string): Mapping {
	const object = resources.find(r => r.kind === "Namespace" && r.name === namespace);
	const declared = object && isMapping(mapping(object.body.metadata, "Namespace metadata").labels) ? mapping(mapping(object.body.metadata, "metadata").labels, "labels") : {};
	// The API server sets this label on every namespace.
	return { ...declared, "kubernetes.io/metadata.name": namespace };
}

function policiesSelecting(resources: Resource[], target: Workload): Resource[] {
	return ofKind(resources, "NetworkPolicy").filter(policy =>
		matches(selectorOf(dig(policy.body, ["spec", "podSelector"], policy.name), `NetworkPolicy ${policy.name}`), target.podLabels, policy.name)
	);
}

function ingressPolicy(policy: Resource): boolean {
	const spec = digMapping(policy.body, ["spec"], policy.name);
	const types = optionalList(spec.policyTypes, `${policy.name} policyTypes`);
	return types.length === 0 ? true : types.includes("Ingress");
}

/** The TCP ports of `target` that `source` may connect to; "*" inside when every port is open. */
function allowedPorts(resources: Resource[], target: Workload, source: Pod): Set<number | "*"> {
	const ports = new Set<number | "*">();
	const targetPorts = containerPorts(target.podSpec, target.resource.name);
	for (const policy of policiesSelecting(resources, target).filter(ingressPolicy)) {
		const policyNamespace = policy.namespace ?? NAMESPACE;
		for (const [index, raw] of optionalList(digMapping(policy.body, ["spec"], policy.name).ingress, `${policy.name} ingress`).entries()) {
			const rule = mapping(raw, `${policy.name} ingress[${index}]`);
			const peers = optionalList(rule.from, `${policy.name} from`).map(p => mapping(p, `${policy.name} from[]`));
			const admitted =
				peers.length === 0 ||
				peers.some(peer => {
					if (peer.ipBlock !== undefined) return false;
					const inNamespace =
						peer.namespaceSelector === undefined
							? source.namespace === policyNamespace
							: matches(selectorOf(peer.namespaceSelector, `${policy.name} namespaceSelector`), namespaceLabels(resources, source.namespace), policy.name);
					const podMatches = peer.podSelector === undefined || matches(selectorOf(peer.podSelector, `${policy.name} podSelector`), source.labels, policy.name);
					return inNamespace && podMatches;
				});
			if (!admitted) continue;
			const rulePorts = optionalList(rule.ports, `${policy.name} ports`).map(p => mapping(p, `${policy.name} port`));
			if (rulePorts.length === 0) ports.add("*");
			for (const port of rulePorts) {
				if ((port.protocol ?? "TCP") !== "TCP") continue;
				const number = targetPorts.get(String(port.port));
				// A named port the pod does not have opens nothing on it.
				if (number !== undefined) ports.add(number);
			}
		}
	}
	return ports;
}

function sourcesOf(resources: Resource[]): Pod[] {
	const real = workloads(resources).map(w => ({ key: w.key, namespace: w.resource.namespace ?? NAMESPACE, labels: w.podLabels }));
	return [...real, ...SYNTHETIC_SOURCES];
}

/** The table above, for the sources present in this render. */
function expectedFor(target: string, sources: Pod[]): Record<string, number[]> {
	const allowed = EXPECTED_INGRESS[target];
	if (allowed === undefined) throw new Error(`no expected ingress written for ${target}: add it to EXPECTED_INGRESS`);
	const expected: Record<string, number[]> = {};
	for (const source of sources) {
		const ports = allowed[EVERY] ?? allowed[source.key];
		if (ports !== undefined) expected[source.key] = [...ports].sort((a, b) => a - b);
	}
	return expected;
}

function actualFor(resources: Resource[], target: Workload, sources: Pod[]): Record<string, (number | "*")[]> {
	const actual: Record<string, (number | "*")[]> = {};
	for (const source of sources) {
		const ports = [...allowedPorts(resources, target, source)].sort((a, b) => String(a).localeCompare(String(b), undefined, { numeric: true }));
		if (ports.length > 0) actual[source.key] = ports;
	}
	return actual;
}

// ---- the checks ----

describe("k8s/ kustomizations", () => {
	it("are the entry points and components this file has expectations for", () => {
		const dirs = kustomizationDirs();
		expect(dirs).toEqual([...Object.keys(ENTRY_POINTS), ...Object.keys(COMPONENTS)].sort());
		for (const dir of Object.keys(ENTRY_POINTS)) expect([dir, kustomizationKind(dir)]).toEqual([dir, "Kustomization"]);
		for (const dir of Object.keys(COMPONENTS)) expect([dir, kustomizationKind(dir)]).toEqual([dir, "Component"]);
	});
});

describeIf(HAVE_KUBECTL, "kubectl not installed")("k8s/ rendered by kubectl kustomize", () => {
	describe.each(Object.keys(ENTRY_POINTS))("%s", dir => {
		const entry = ENTRY_POINTS[dir];
		const resources = () => rendered(dir);

		it("renders the expected kinds, every namespaced object in the marquee namespace, each kind/name once", () => {
			const kinds = new Set(resources().map(r => r.kind));
			expect([...kinds].sort()).toEqual([...entry.kinds].sort());
			for (const resource of resources().filter(r => r.kind !== "Namespace")) {
				expect([resource.kind, resource.name, resource.namespace]).toEqual([resource.kind, resource.name, NAMESPACE]);
			}
			const keys = resources().map(r => `${r.kind}/${r.name}`);
			expect(new Set(keys).size).toBe(keys.length);
			expect(ofKind(resources(), "Deployment").map(d => d.name.replace(/^marquee-/, "")).sort()).toEqual([...SERVICES].sort());
			expect(ofKind(resources(), "StatefulSet").map(s => s.name).sort()).toEqual([...entry.stores].sort());
		});

		it("has Deployment and StatefulSet selectors that match their own pods and no other workload's", () => {
			const all = workloads(resources());
			for (const workload of all.filter(w => w.serving)) {
				const where = `${workload.resource.kind} ${workload.resource.name}`;
				const selector = selectorOf(dig(workload.resource.body, ["spec", "selector"], where), `${where} selector`);
				expect([where, Object.keys(selector.matchLabels ?? {}).length > 0]).toEqual([where, true]);
				expect([where, matches(selector, workload.podLabels, where)]).toEqual([where, true]);
				for (const other of all.filter(w => w !== workload)) {
					expect([where, other.resource.name, matches(selector, other.podLabels, where)]).toEqual([where, other.resource.name, false]);
				}
			}
		});

		it("gives every container requests and limits (requests within limits), and every serving container liveness and readiness probes", () => {
			for (const workload of workloads(resources())) {
				const where = `${workload.resource.kind} ${workload.resource.name}`;
				for (const container of containersOf(workload.podSpec, where)) {
					const name = `${where} ${String(container.name)}`;
					for (const resource of ["cpu", "memory"]) {
						const request = quantity(dig(container, ["resources", "requests", resource], name), `${name} requests.${resource}`);
						const limit = quantity(dig(container, ["resources", "limits", resource], name), `${name} limits.${resource}`);
						expect([name, resource, request > 0 && limit >= request]).toEqual([name, resource, true]);
					}
				}
				if (!workload.serving) continue;
				for (const container of containersOf(workload.podSpec, where, false)) {
					const name = `${where} ${String(container.name)}`;
					expect([name, isMapping(container.livenessProbe), isMapping(container.readinessProbe)]).toEqual([name, true, true]);
				}
			}
		});

		it("runs every pod as non-root without privilege escalation, every image pinned to a tag", () => {
			for (const workload of workloads(resources())) {
				const where = `${workload.resource.kind} ${workload.resource.name}`;
				expect([where, digMapping(workload.podSpec, ["securityContext"], where).runAsNonRoot]).toEqual([where, true]);
				expect([where, workload.podSpec.automountServiceAccountToken]).toEqual([where, false]);
				for (const container of containersOf(workload.podSpec, where)) {
					const name = `${where} ${String(container.name)}`;
					const security = digMapping(container, ["securityContext"], name);
					expect([name, security.allowPrivilegeEscalation]).toEqual([name, false]);
					expect([name, digList(security, ["capabilities", "drop"], name)]).toEqual([name, ["ALL"]]);
					const image = text(container.image, `${name} image`);
					expect([name, image]).toEqual([name, expect.stringMatching(/^[^@\s]+:[\w.-]+$/)]);
					expect([name, image.endsWith(":latest")]).toEqual([name, false]);
				}
			}
		});

		it("mounts only declared volumes, and refers only to ConfigMaps and Secrets it renders (optional ones aside)", () => {
			const configMaps = new Map(ofKind(resources(), "ConfigMap").map(c => [c.name, c.body.data === undefined ? {} : mapping(c.body.data, c.name)]));
			const secrets = new Map(
				ofKind(resources(), "Secret").map(s => [s.name, { ...(isMapping(s.body.data) ? s.body.data : {}), ...(isMapping(s.body.stringData) ? s.body.stringData : {}) }])
			);
			const check = (kind: "ConfigMap" | "Secret", name: string, key: string | null, where: string) => {
				const data = kind === "ConfigMap" ? configMaps.get(name) : secrets.get(name);
				expect([where, kind, name, data !== undefined]).toEqual([where, kind, name, true]);
				if (data && key !== null) expect([where, kind, name, key, key in data]).toEqual([where, kind, name, key, true]);
			};
			for (const workload of workloads(resources())) {
				const where = `${workload.resource.kind} ${workload.resource.name}`;
				const volumes = optionalList(workload.podSpec.volumes, `${where} volumes`).map(v => mapping(v, `${where} volume`));
				const claims =
					workload.resource.kind === "StatefulSet"
						? optionalList(digMapping(workload.resource.body, ["spec"], where).volumeClaimTemplates, `${where} volumeClaimTemplates`).map(c =>
								text(digMapping(c, ["metadata"], where).name, `${where} claim name`)
							)
						: [];
				const declared = new Set([...volumes.map(v => text(v.name, `${where} volume name`)), ...claims]);
				for (const volume of volumes) {
					if (isMapping(volume.configMap) && volume.configMap.optional !== true) check("ConfigMap", text(volume.configMap.name, where), null, where);
					if (isMapping(volume.secret) && volume.secret.optional !== true) check("Secret", text(volume.secret.secretName, where), null, where);
				}
				for (const container of containersOf(workload.podSpec, where)) {
					const name = `${where} ${String(container.name)}`;
					for (const mount of optionalList(container.volumeMounts, `${name} volumeMounts`).map(m => mapping(m, name))) {
						expect([name, mount.name, declared.has(text(mount.name, name))]).toEqual([name, mount.name, true]);
					}
					for (const source of optionalList(container.envFrom, `${name} envFrom`).map(s => mapping(s, name))) {
						if (isMapping(source.configMapRef) && source.configMapRef.optional !== true) check("ConfigMap", text(source.configMapRef.name, name), null, name);
						if (isMapping(source.secretRef) && source.secretRef.optional !== true) check("Secret", text(source.secretRef.name, name), null, name);
					}
					for (const env of optionalList(container.env, `${name} env`).map(e => mapping(e, name))) {
						const valueFrom = isMapping(env.valueFrom) ? env.valueFrom : {};
						for (const [field, kind] of [
							["configMapKeyRef", "ConfigMap"],
							["secretKeyRef", "Secret"]
						] as const) {
							const ref = valueFrom[field];
							if (isMapping(ref) && ref.optional !== true) check(kind, text(ref.name, name), text(ref.key, name), `${name} ${String(env.name)}`);
						}
					}
				}
			}
		});

		it("mounts every StatefulSet's volume claims and serves it through a headless Service of its serviceName", () => {
			for (const workload of workloads(resources()).filter(w => w.resource.kind === "StatefulSet")) {
				const where = `StatefulSet ${workload.resource.name}`;
				const spec = digMapping(workload.resource.body, ["spec"], where);
				const claims = digList(spec, ["volumeClaimTemplates"], where).map(c => mapping(c, `${where} claim`));
				expect(claims.length).toBeGreaterThan(0);
				const mounted = new Set(
					containersOf(workload.podSpec, where, false).flatMap(c => optionalList(c.volumeMounts, `${where} volumeMounts`).map(m => text(mapping(m, where).name, where)))
				);
				for (const claim of claims) {
					const claimName = text(digMapping(claim, ["metadata"], where).name, `${where} claim name`);
					expect([where, claimName, mounted.has(claimName)]).toEqual([where, claimName, true]);
					expect([where, claimName, quantity(dig(claim, ["spec", "resources", "requests", "storage"], where), where) > 0]).toEqual([where, claimName, true]);
				}
				const service = one(resources(), "Service", text(spec.serviceName, `${where} serviceName`));
				expect([where, dig(service.body, ["spec", "clusterIP"], service.name)]).toEqual([where, "None"]);
				expect([where, matches(serviceSelector(service), workload.podLabels, service.name)]).toEqual([
					where,
					true
				]);
			}
		});

		it("gives every workload that runs more than one pod a disruption budget that allows a drain", () => {
			const autoscalers = ofKind(resources(), "HorizontalPodAutoscaler");
			for (const workload of workloads(resources()).filter(w => w.serving)) {
				const where = `${workload.resource.kind} ${workload.resource.name}`;
				const hpa = autoscalers.find(h => {
					const ref = digMapping(h.body, ["spec", "scaleTargetRef"], h.name);
					return ref.kind === workload.resource.kind && ref.name === workload.resource.name;
				});
				const replicas = Number(digMapping(workload.resource.body, ["spec"], where).replicas ?? 1);
				const least = hpa ? Number(digMapping(hpa.body, ["spec"], hpa.name).minReplicas ?? 1) : replicas;
				const budgets = ofKind(resources(), "PodDisruptionBudget").filter(pdb =>
					matches(selectorOf(dig(pdb.body, ["spec", "selector"], pdb.name), pdb.name), workload.podLabels, pdb.name)
				);
				if (least <= 1 && !hpa) {
					// One pod: a budget would block every node drain.
					expect([where, budgets.length]).toEqual([where, 0]);
					continue;
				}
				expect([where, budgets.length]).toEqual([where, 1]);
				const spec = digMapping(budgets[0].body, ["spec"], budgets[0].name);
				if (spec.maxUnavailable !== undefined) expect([where, Number(spec.maxUnavailable) >= 1]).toEqual([where, true]);
				else expect([where, Number(spec.minAvailable) < least]).toEqual([where, true]);
			}
		});

		it("has Services that select pods it runs, on ports those pods have", () => {
			const all = workloads(resources());
			for (const service of ofKind(resources(), "Service")) {
				const selector = serviceSelector(service);
				const selected = all.filter(w => w.serving && matches(selector, w.podLabels, service.name));
				expect([service.name, selected.map(w => w.resource.name)]).toEqual([service.name, [expect.any(String)]]);
				const ports = containerPorts(selected[0].podSpec, service.name);
				for (const port of digList(service.body, ["spec", "ports"], service.name).map(p => mapping(p, service.name))) {
					const target = String(port.targetPort ?? port.port);
					expect([service.name, target, ports.has(target)]).toEqual([service.name, target, true]);
				}
			}
		});

		it("denies ingress by default and selects every Deployment and StatefulSet with a policy of its own", () => {
			const policies = ofKind(resources(), "NetworkPolicy");
			const defaultDeny = policies.filter(p => {
				const spec = digMapping(p.body, ["spec"], p.name);
				return Object.keys(mapping(spec.podSelector, p.name)).length === 0 && ingressPolicy(p) && optionalList(spec.ingress, p.name).length === 0;
			});
			expect(defaultDeny).toHaveLength(1);
			for (const workload of workloads(resources()).filter(w => w.serving)) {
				const own = policiesSelecting(resources(), workload).filter(p => !defaultDeny.includes(p));
				expect([workload.resource.name, own.length > 0]).toEqual([workload.resource.name, true]);
			}
		});

		it("lets each pod be reached only by the sources and on the ports written down in EXPECTED_INGRESS", () => {
			const sources = sourcesOf(resources());
			for (const target of workloads(resources())) {
				expect([target.key, actualFor(resources(), target, sources)]).toEqual([target.key, expectedFor(target.key, sources)]);
			}
		});

		it("admits traffic from other namespaces to the api pods only (and Prometheus to metrics ports)", () => {
			const outside = SYNTHETIC_SOURCES.filter(s => s.namespace !== NAMESPACE && s.key !== "ns:monitoring");
			for (const target of workloads(resources())) {
				for (const source of outside) {
					const ports = [...allowedPorts(resources(), target, source)];
					expect([target.key, source.key, ports]).toEqual([target.key, source.key, target.key === "api" ? [3000] : []]);
				}
			}
		});

		it("backs up daily with one run at a time, kept history and the script from its ConfigMap", () => {
			const cronJob = one(resources(), "CronJob", "marquee-backup");
			const spec = digMapping(cronJob.body, ["spec"], cronJob.name);
			expect(spec.concurrencyPolicy).toBe("Forbid");
			expect(text(spec.schedule, "schedule").trim().split(/\s+/).slice(2)).toEqual(["*", "*", "*"]);
			for (const limit of ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"]) {
				expect([limit, typeof spec[limit] === "number" && Number(spec[limit]) >= 1]).toEqual([limit, true]);
			}
			const job = digMapping(spec, ["jobTemplate", "spec"], cronJob.name);
			expect(typeof job.backoffLimit).toBe("number");
			expect(typeof job.activeDeadlineSeconds).toBe("number");

			const pod = workloads(resources()).find(w => w.resource === cronJob);
			if (!pod) throw new Error("no pod template in the CronJob");
			const volumes = digList(pod.podSpec, ["volumes"], cronJob.name).map(v => mapping(v, cronJob.name));
			const scriptVolume = volumes.find(v => isMapping(v.configMap));
			if (!scriptVolume || !isMapping(scriptVolume.configMap)) throw new Error("no ConfigMap volume in the backup pod");
			const configMap = one(resources(), "ConfigMap", text(scriptVolume.configMap.name, "script ConfigMap"));
			const script = text(digMapping(configMap.body, ["data"], configMap.name)["backup.sh"], "backup.sh");
			expect(script).toBe(fs.readFileSync(path.join(ROOT, "k8s/base/backup/backup.sh"), "utf8"));
			for (const procedure of [/mongodump --uri="\$MONGO_URI" --archive=\S+ --gzip/, /FORMAT Native/, /mc --quiet mirror [^\n]*"src\/\$S3_BUCKET"/]) {
				expect(script).toMatch(procedure);
			}

			const steps: string[] = [];
			for (const container of containersOf(pod.podSpec, cronJob.name)) {
				const name = String(container.name);
				const command = digList(container, ["command"], name).map(c => text(c, name));
				const mount = optionalList(container.volumeMounts, name)
					.map(m => mapping(m, name))
					.find(m => m.name === scriptVolume.name);
				expect([name, mount !== undefined]).toEqual([name, true]);
				expect([name, command.slice(0, 2)]).toEqual([name, ["/bin/sh", `${String(mount?.mountPath)}/backup.sh`]]);
				steps.push(command[2]);
			}
			// The dumps first (init containers, in order), the upload last.
			expect(steps).toEqual(["mongo", "clickhouse", "upload"]);
			expect(pod.podLabels).toEqual(expect.objectContaining({ "app.kubernetes.io/name": "marquee", "app.kubernetes.io/component": "backup" }));
		});

		if (entry.stores.length > 0) {
			it("points the services' connection settings at the stores it runs, with credentials that line up", () => {
				const config = mapping(dig(one(resources(), "ConfigMap", "marquee-config").body, ["data"], "marquee-config"), "data");
				const secret = mapping(dig(one(resources(), "Secret", "marquee-secrets").body, ["stringData"], "marquee-secrets"), "stringData");
				const dependencies = mapping(dig(one(resources(), "Secret", "marquee-dependencies").body, ["stringData"], "marquee-dependencies"), "stringData");
				// What a service sees: the Secret's key wins over the ConfigMap's.
				const env = (key: string) => text(secret[key] ?? config[key], key);
				const servicePort = (host: string, port: number) => {
					const service = one(resources(), "Service", host);
					const ports = digList(service.body, ["spec", "ports"], host).map(p => Number(mapping(p, host).port));
					expect([host, ports]).toEqual([host, expect.arrayContaining([port])]);
				};

				const nats = new URL(env("TRANSPORTER"));
				servicePort(nats.hostname, Number(nats.port));
				const redis = new URL(env("REDIS_URL"));
				servicePort(redis.hostname, Number(redis.port));
				const s3 = new URL(env("S3_ENDPOINT"));
				servicePort(s3.hostname, Number(s3.port));
				const clickhouse = new URL(env("CLICKHOUSE_URL"));
				servicePort(clickhouse.hostname, Number(clickhouse.port));
				expect(decodeURIComponent(clickhouse.username)).toBe(dependencies.CLICKHOUSE_USER);
				const clickhouseSet = one(resources(), "StatefulSet", clickhouse.hostname);
				const clickhouseEnv = containersOf(digMapping(clickhouseSet.body, ["spec", "template", "spec"], "clickhouse"), "clickhouse", false)[0].env;
				expect(optionalList(clickhouseEnv, "clickhouse env")).toContainEqual({ name: "CLICKHOUSE_DB", value: clickhouse.pathname.slice(1) });

				// mongodb://user:password@mongo-0.mongo:27017,…/marquee?replicaSet=rs0&authSource=admin
				const mongo = /^mongodb:\/\/[^@/]+@([^/]+)\/[^?]+\?(.*)$/.exec(env("MONGO_URI"));
				if (!mongo) throw new Error(`MONGO_URI is not a replica-set URI with credentials: ${env("MONGO_URI")}`);
				const mongoSet = one(resources(), "StatefulSet", "mongo");
				const mongoSpec = digMapping(mongoSet.body, ["spec"], "mongo");
				const members = Array.from({ length: Number(mongoSpec.replicas) }, (_, i) => `mongo-${i}.${text(mongoSpec.serviceName, "serviceName")}:27017`);
				expect(mongo[1].split(",")).toEqual(members);
				const args = digList(containersOf(digMapping(mongoSpec, ["template", "spec"], "mongo"), "mongo", false)[0], ["args"], "mongo args").map(String);
				const replicaSet = args[args.indexOf("--replSet") + 1];
				expect(new URLSearchParams(mongo[2]).get("replicaSet")).toBe(replicaSet);
				// The init Job initiates the set with the same members and name.
				const init = fs.readFileSync(path.join(ROOT, "k8s/components/dependencies/mongo-init.js"), "utf8");
				expect(init).toContain(`const MEMBERS = [${members.map(m => JSON.stringify(m)).join(", ")}];`);
				expect(init).toContain(`const REPLICA_SET = ${JSON.stringify(replicaSet)};`);

				// Placeholders only: every password and key in the templates is REPLACE_ME.
				for (const [key, value] of Object.entries(dependencies)) {
					if (!/USER/.test(key)) expect([key, value]).toEqual([key, "REPLACE_ME"]);
				}
			});

			it("runs NATS with JetStream on a volume, probed on its monitoring port", () => {
				const nats = one(resources(), "StatefulSet", "nats");
				const container = containersOf(digMapping(nats.body, ["spec", "template", "spec"], "nats"), "nats", false)[0];
				const args = digList(container, ["args"], "nats args").map(String);
				expect(args).toEqual(expect.arrayContaining(["-js", "-sd", "/data"]));
				const ports = containerPorts(digMapping(nats.body, ["spec", "template", "spec"], "nats"), "nats");
				for (const probe of ["livenessProbe", "readinessProbe"]) {
					const httpGet = digMapping(container, [probe, "httpGet"], `nats ${probe}`);
					expect(text(httpGet.path, probe)).toMatch(/^\/healthz/);
					expect(ports.get(String(httpGet.port))).toBe(8222);
				}
			});
		}
	});

	it("keeps the restore Job (applied by hand) in step with the backup: labels, script, resources", () => {
		const [job] = parseAll(fs.readFileSync(path.join(ROOT, "k8s/base/backup/restore-job.yaml"), "utf8"), "restore-job.yaml");
		expect(job.kind).toBe("Job");
		expect(job.namespace).toBe(NAMESPACE);
		const pod = workloads([job])[0];
		// The backup's labels: the NetworkPolicies admit it where they admit the backup.
		const backup = workloads(rendered("k8s")).find(w => w.key === "backup");
		expect(pod.podLabels).toEqual(backup?.podLabels);
		const script = fs.readFileSync(path.join(ROOT, "k8s/base/backup/backup.sh"), "utf8");
		const steps = containersOf(pod.podSpec, "restore").map(container => {
			const command = digList(container, ["command"], String(container.name)).map(c => text(c, "command"));
			expect(quantity(dig(container, ["resources", "limits", "memory"], String(container.name)), "memory")).toBeGreaterThan(0);
			expect(script).toContain(`\n${command[2]})\n`);
			return command[2];
		});
		expect(steps).toEqual(["fetch", "restore-mongo", "restore-clickhouse", "restore-media"]);
		const volume = digList(pod.podSpec, ["volumes"], "restore")
			.map(v => mapping(v, "volume"))
			.find(v => isMapping(v.configMap));
		expect(isMapping(volume?.configMap) && volume.configMap.name).toBe("marquee-backup-script");
		one(rendered("k8s"), "ConfigMap", "marquee-backup-script");
	});

	it.each(Object.entries(COMPONENTS))("uses the component %s in %p and nowhere else", (component, users) => {
		const statefulSets = (dir: string) => ofKind(rendered(dir), "StatefulSet").length > 0;
		for (const dir of Object.keys(ENTRY_POINTS)) expect([dir, statefulSets(dir)]).toEqual([dir, users.includes(dir)]);
	});
});
