/**
 * Readiness: one check per configured dependency, each with a timeout. The gateway serves the
 * result on /health/ready; processes without the gateway serve it on the ops port.
 */
import net from "node:net";
import type { ServiceBroker } from "moleculer";
import mongoose from "mongoose";
import type { Config } from "./config";
import { sharedKeyValueStore } from "./kv";
import { lifecycle } from "./lifecycle";
import { Storage } from "./storage";

export type Check = () => Promise<void>;

export interface CheckResult {
	status: "ok" | "fail";
	latencyMs: number;
	error?: string;
}

export interface Readiness {
	status: "ok" | "fail";
	checks: Record<string, CheckResult>;
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
		}
	}
};

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

/** The checks for every dependency this config uses (nothing for the embedded defaults). */
export function dependencyChecks(config: Config, broker: ServiceBroker): Record<string, Check> {
	const checks: Record<string, Check> = {};
	checks.broker = async () => {
		if (!broker.started) throw new Error("broker is not running");
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
	if (config.s3.endpoint) {
		// Reachable, credentials accepted and the bucket there.
		const storage = Storage.fromEndpoint({ ...config.s3, endpoint: config.s3.endpoint });
		checks.s3 = () => storage.ping();
	}
	if (config.clickhouseUrl) {
		const url = withoutCredentials(config.clickhouseUrl);
		checks.clickhouse = () => httpOk(`${url.origin}/ping`);
	}
	if (config.smtpUrl) {
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

/** What /health/ready answers: every check, and failing while the process drains on SIGTERM. */
export async function readiness(checks: Record<string, Check>): Promise<Readiness> {
	const result = await runChecks(checks);
	if (lifecycle.draining) {
		result.status = "fail";
		result.checks.shutdown = { status: "fail", latencyMs: 0, error: "shutting down" };
	}
	return result;
}
