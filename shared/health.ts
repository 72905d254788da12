/**
 * Readiness: one check per configured dependency, each with a timeout. The gateway serves the
 * result on /health/ready; processes without the gateway serve it on the ops port.
 */
import net from "node:net";
import type { ServiceBroker } from "moleculer";
import mongoose from "mongoose";
import { SERVICE_NAMES, type Config, type ServiceName } from "./config";
import { sharedKeyValueStore } from "./kv";
import { lifecycle } from "./lifecycle";
import { Storage } from "./storage";

export type Check = () => Promise<void>;

export interface CheckResult {
	status: "ok" | "fail";
	latencyMs: number;
	error?: string;
}

/** Where this process finds each Marquee service: running here, on another node, or nowhere. */
export type ServiceView = Partial<Record<ServiceName, "local" | "remote" | "missing">>;

export interface Readiness {
	status: "ok" | "fail";
	checks: Record<string, CheckResult>;
	services?: ServiceView;
}

/** JSON Schema of `Readiness`, the body of /health/ready (200 and 503) in the OpenAPI document. */
export const READINESS_SCHEMA: Readonly<Record<string, unknown>> = {
	type: "object",
	required: ["status", "checks"],
	properties: {
		status: { enum: ["ok", "fail"] },
		checks: {
			type: "object",
			description: "One entry per dependency this deployment uses.",
			additionalProperties: {
				type: "object",
				required: ["status", "latencyMs"],
				properties: { status: { enum: ["ok", "fail"] }, latencyMs: { type: "number" }, error: { type: "string" } }
			}
		},
		services: {
			type: "object",
			description: "Where this process finds each service: running in it (`local`), on another node over the transporter (`remote`), or nowhere (`missing`).",
			additionalProperties: { enum: ["local", "remote", "missing"] }
		}
	}
};

/** Where each Marquee service runs, as this process's service registry sees it now. */
export function serviceView(broker: ServiceBroker): ServiceView {
	const view: ServiceView = {};
	const seen = broker.registry.getServiceList({ onlyLocal: false, onlyAvailable: true, skipInternal: true, withActions: false }) as { name: string; local?: boolean }[];
	for (const name of SERVICE_NAMES) {
		const entries = seen.filter(s => s.name === name);
		view[name] = entries.some(s => s.local) ? "local" : entries.length > 0 ? "remote" : "missing";
	}
	return view;
}

const CHECK_TIMEOUT_MS = 2000;

function withTimeout(check: Check, ms: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
		check().then(
			() => {
				clearTimeout(timer);
				resolve();
			},
			err => {
				clearTimeout(timer);
				reject(err);
			}
		);
	});
}

async function httpOk(url: string): Promise<void> {
	const res = await fetch(url, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) });
	await res.arrayBuffer();
	if (!res.ok) throw new Error(`answered ${res.status}`);
}

function tcpReachable(host: string, port: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const socket = net.connect({ host, port });
		socket.once("connect", () => {
			socket.destroy();
			resolve();
		});
		socket.once("error", err => {
			socket.destroy();
			reject(err);
		});
	});
}

/** The URL without its credentials, for messages. */
function withoutCredentials(raw: string): URL {
	const url = new URL(raw);
	url.username = "";
	url.password = "";
	return url;
}

/**
 * The services whose code talks to each optional backend (written by hand; the k8s manifest test
 * checks the code agrees). A process waits only for the backends its own services use: a devices
 * process is not unready because MinIO is down, and needs no NetworkPolicy to reach it.
 */
export const BACKEND_USERS: Readonly<Record<"s3" | "clickhouse" | "smtp", readonly ServiceName[]>> = {
	s3: ["media"],
	clickhouse: ["analytics"],
	smtp: ["notifications"]
};

function usedHere(config: Pick<Config, "services">, backend: keyof typeof BACKEND_USERS): boolean {
	return config.services.some(name => BACKEND_USERS[backend].includes(name));
}

/** The checks for every dependency this process's services use (nothing for the embedded defaults). */
export function dependencyChecks(config: Config, broker: ServiceBroker): Record<string, Check> {
	const checks: Record<string, Check> = {};
	checks.broker = async () => {
		if (!broker.started) throw new Error("broker is not running");
	};
	// A process that runs none of the services it was given serves nothing; a gateway that sees
	// no service behind it can only answer 503.
	checks.services = async () => {
		const view = serviceView(broker);
		// (An empty list is a test harness's process of extra services only.)
		if (config.services.length > 0 && !config.services.some(name => view[name] === "local")) throw new Error(`runs none of SERVICES (${config.services.join(", ")})`);
		if (config.services.includes("api") && !SERVICE_NAMES.some(name => name !== "api" && view[name] !== "missing")) {
			throw new Error("sees no service behind the gateway (is the transporter shared?)");
		}
	};
	if (config.transporter) {
		checks.transporter = async () => {
			if (!broker.transit?.connected) throw new Error("not connected to NATS");
		};
	}
	if (config.redisUrl) {
		checks.redis = () => sharedKeyValueStore(config).ping();
	}
	if (config.mongoUri) {
		checks.mongodb = async () => {
			const db = mongoose.connection.readyState === 1 ? mongoose.connection.db : undefined;
			if (!db) throw new Error("not connected");
			await db.admin().ping();
		};
	}
	if (config.s3.endpoint && usedHere(config, "s3")) {
		// Reachable, credentials accepted and the bucket there.
		const storage = Storage.fromEndpoint({ ...config.s3, endpoint: config.s3.endpoint });
		checks.s3 = () => storage.ping();
	}
	if (config.clickhouseUrl && usedHere(config, "clickhouse")) {
		const url = withoutCredentials(config.clickhouseUrl);
		checks.clickhouse = () => httpOk(`${url.origin}/ping`);
	}
	if (config.smtpUrl && usedHere(config, "smtp")) {
		const url = new URL(config.smtpUrl);
		const port = Number(url.port) || (url.protocol === "smtps:" ? 465 : 587);
		checks.smtp = () => tcpReachable(url.hostname, port);
	}
	return checks;
}

export async function runChecks(checks: Record<string, Check>): Promise<Readiness> {
	const entries = await Promise.all(
		Object.entries(checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
			const started = Date.now();
			try {
				await withTimeout(check, CHECK_TIMEOUT_MS);
				return [name, { status: "ok", latencyMs: Date.now() - started }];
			} catch (err) {
				const error = err instanceof Error ? err.message : String(err);
				return [name, { status: "fail", latencyMs: Date.now() - started, error }];
			}
		})
	);
	const results = Object.fromEntries(entries);
	const failing = entries.some(([, r]) => r.status === "fail");
	return { status: failing ? "fail" : "ok", checks: results };
}

/**
 * What /health/ready answers: every check, where each service is found (with `broker`), and
 * failing while the process drains on SIGTERM.
 */
export async function readiness(checks: Record<string, Check>, broker?: ServiceBroker): Promise<Readiness> {
	const result: Readiness = await runChecks(checks);
	if (broker) result.services = serviceView(broker);
	if (lifecycle.draining) {
		result.status = "fail";
		result.checks.shutdown = { status: "fail", latencyMs: 0, error: "shutting down" };
	}
	return result;
}
