/**
 * Writes the published OpenAPI document to a file: `npm run openapi [-- out.json]` (default
 * dist/openapi.json), for `npm run lint:openapi` and for clients that generate code from it.
 *
 * The document is the one the gateway serves at /api/openapi.json, read from a platform started
 * in this process (every service, embedded stores in a temporary folder, a free port of
 * 127.0.0.1): it is built from the running gateway's routes and the actions behind them, so it
 * cannot drift from what a deployment publishes.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { loadConfig } from "../shared/config";
import { startPlatform } from "../server";

const ROOT = path.resolve(__dirname, "..");
export const DEFAULT_OUTPUT = path.join(ROOT, "dist", "openapi.json");

/** The document the gateway of a freshly started embedded platform publishes. */
export async function publishedOpenApi(): Promise<Record<string, unknown>> {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-openapi-"));
	const config = loadConfig({ NODE_ENV: "test", DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "error" });
	const platform = await startPlatform(config);
	try {
		const api = platform.broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
		const res = await fetch(`http://127.0.0.1:${api.server.address().port}/api/openapi.json`);
		if (res.status !== 200) throw new Error(`/api/openapi.json answered ${res.status}`);
		return (await res.json()) as Record<string, unknown>;
	} finally {
		await platform.stop();
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}

if (require.main === module) {
	const output = path.resolve(process.argv[2] ?? DEFAULT_OUTPUT);
	publishedOpenApi().then(
		doc => {
			fs.mkdirSync(path.dirname(output), { recursive: true });
			fs.writeFileSync(output, `${JSON.stringify(doc, null, 2)}\n`);
			const shown = path.relative(process.cwd(), output);
			console.log(`wrote ${shown.startsWith("..") ? output : shown} (${Object.keys(doc.paths as object).length} paths)`);
			// Timers of the stopped platform (pools, sweeps) must not keep the script alive.
			process.exit(0);
		},
		(err: unknown) => {
			console.error(err);
			process.exit(1);
		}
	);
}
