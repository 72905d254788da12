/**
 * Writes the Prometheus text a platform serves at GET /metrics to a file, or to stdout without
 * one: `npm run lint:metrics` writes dist/metrics.txt and checks it with Prometheus' linter
 * (`promtool check metrics`, Debian package `prometheus`).
 *
 * The platform is started in this process (every service, embedded stores in a temporary folder,
 * a free port of 127.0.0.1, logs at error) and used a little first, so the metrics that appear
 * only with traffic are there too: requests that succeed and fail, events, channel messages, and
 * the per-minute rates, which take their first value about 5 s after the traffic.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { loadConfig } from "../shared/config";
import { startPlatform } from "../server";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Requests that leave metrics behind: a sign-up (events, channel messages), a failed login, a 404. */
async function exercise(url: string): Promise<void> {
	const post = (p: string, body: unknown) =>
		fetch(`${url}/api/v1${p}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
	const email = `metrics-${process.pid}@example.com`;
	const password = "Tr0ub4dor&3-metrics-horse";
	await post("/auth/register", { email, password, name: "Metrics", organizationName: "Metrics" });
	await post("/auth/login", { email, password: `${password}-wrong` });
	await fetch(`${url}/api/v1/no-such-route`);
	await fetch(`${url}/health/ready`);
}

/** The /metrics text of a freshly started embedded platform, after some traffic and `settleMs`. */
export async function publishedMetrics(settleMs = 6000): Promise<string> {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-metrics-"));
	const config = loadConfig({ NODE_ENV: "test", DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "error" });
	const platform = await startPlatform(config);
	try {
		const api = platform.broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
		const url = `http://127.0.0.1:${api.server.address().port}`;
		await exercise(url);
		await sleep(settleMs);
		const res = await fetch(`${url}/metrics`);
		if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
		return await res.text();
	} finally {
		await platform.stop();
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}

if (require.main === module) {
	const output = process.argv[2] ? path.resolve(process.argv[2]) : null;
	publishedMetrics().then(
		text => {
			if (output) {
				fs.mkdirSync(path.dirname(output), { recursive: true });
				fs.writeFileSync(output, text);
				const shown = path.relative(process.cwd(), output);
				console.error(`wrote ${shown.startsWith("..") ? output : shown} (${text.split("\n").filter(l => l.startsWith("# TYPE ")).length} metric families)`);
			} else {
				process.stdout.write(text);
			}
			// Timers of the stopped platform (pools, sweeps) must not keep the script alive.
			process.exit(0);
		},
		(err: unknown) => {
			console.error(err);
			process.exit(1);
		}
	);
}
