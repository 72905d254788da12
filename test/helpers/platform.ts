/**
 * Brokers for tests: local transport, config from `testConfig()` (NODE_ENV=test → NeDB in
 * memory, memory key/value store), gateway on a free port.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { ServiceBroker, type BrokerOptions, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { loadConfig, setConfig, type Config } from "../../shared/config";
import ApiService from "../../services/api.service";
import type { AnyServiceSchema } from "../../server";

export function tempDir(prefix = "marquee-test-"): string {
	return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

let brokers = 0;

/** Each test broker gets its own namespace, so brokers of one test file share no state. */
export function testConfig(env: Record<string, string> = {}): Config {
	const namespace = `t${process.pid}-${++brokers}`;
	return loadConfig({ NODE_ENV: "test", DATA_DIR: tempDir(), PORT: "0", HOST: "127.0.0.1", NAMESPACE: namespace, ...env });
}

export interface TestBroker {
	broker: ServiceBroker;
	config: Config;
	stop(): Promise<void>;
}

export async function startBroker(
	services: AnyServiceSchema[],
	env: Record<string, string> = {},
	overrides: Partial<BrokerOptions> = {}
): Promise<TestBroker> {
	const config = testConfig(env);
	setConfig(config);
	const broker = new ServiceBroker(
		brokerOptions(config, { logger: false, skipProcessEventRegistration: true, ...overrides })
	);
	for (const schema of services) broker.createService(schema as ServiceSchema);
	await broker.start();
	return { broker, config, stop: () => broker.stop() };
}

export interface TestGateway extends TestBroker {
	url: string;
}

/** The gateway plus `services`, listening on a free port of 127.0.0.1. */
export async function startGateway(
	services: AnyServiceSchema[],
	env: Record<string, string> = {},
	overrides: Partial<BrokerOptions> = {}
): Promise<TestGateway> {
	const started = await startBroker([ApiService, ...services], env, overrides);
	const api = started.broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
	return { ...started, url: `http://127.0.0.1:${api.server.address().port}` };
}

export interface JsonResponse<T = unknown> {
	status: number;
	headers: Headers;
	body: T;
	text: string;
}

export async function request<T = unknown>(
	url: string,
	init: RequestInit & { json?: unknown } = {}
): Promise<JsonResponse<T>> {
	const headers = new Headers(init.headers);
	let body = init.body;
	if (init.json !== undefined) {
		headers.set("Content-Type", "application/json");
		body = JSON.stringify(init.json);
	}
	const res = await fetch(url, { ...init, headers, body });
	const text = await res.text();
	let parsed: unknown = text;
	try {
		parsed = text ? JSON.parse(text) : null;
	} catch {
		/* not JSON */
	}
	return { status: res.status, headers: res.headers, body: parsed as T, text };
}

export interface ErrorBody {
	error: { type: string; message: string; code: number; data: unknown; requestId: string };
}
