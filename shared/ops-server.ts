/**
 * Health and metrics for a process that does not run the gateway (its Kubernetes probes and
 * Prometheus scrape hit OPS_PORT). Same checks and metrics as the gateway's endpoints.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";
import type { Config } from "./config";
import { dependencyChecks, readiness } from "./health";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "./metrics";
import { pathOf } from "./request";

export interface OpsServer {
	port: number;
	close(): Promise<void>;
}

export async function startOpsServer(config: Config, broker: ServiceBroker): Promise<OpsServer> {
	const checks = dependencyChecks(config, broker);
	const server = http.createServer((req, res) => {
		const send = (status: number, body: string, type = "application/json; charset=utf-8") => {
			res.writeHead(status, { "Content-Type": type });
			res.end(body);
		};
		const path = pathOf(req.url, "/");
		if (req.method !== "GET") return send(405, JSON.stringify({ error: { type: "BAD_REQUEST", message: "GET only", code: 405 } }));
		if (path === "/health/live") return send(200, JSON.stringify({ status: "ok" }));
		if (path === "/metrics") return send(200, prometheusText(broker.metrics) ?? "", PROMETHEUS_CONTENT_TYPE);
		if (path === "/health/ready") {
			void readiness(checks, broker).then(ready => send(ready.status === "ok" ? 200 : 503, JSON.stringify(ready)));
			return;
		}
		send(404, JSON.stringify({ error: { type: "NOT_FOUND", message: "Not found", code: 404 } }));
	});
	await new Promise<void>((resolve, reject) => {
		server.once("error", reject);
		server.listen(config.opsPort, config.host, () => resolve());
	});
	return {
		port: (server.address() as AddressInfo).port,
		close: () => new Promise(resolve => server.close(() => resolve()))
	};
}
