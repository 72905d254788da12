/**
 * Entry point: `npm start` (tsx) and `node dist/server.js` (image). Validates the config, starts
 * a broker with the services named by SERVICES (all by default), and drains on SIGTERM. In the
 * embedded mode it takes DATA_DIR for itself first (shared/data-dir-lock.ts: it refuses to start
 * on one another process holds), writes DATA_DIR/platform.pid once ready and takes backup
 * snapshots on SIGUSR2 (shared/backup-snapshot.ts, `npm run backup`).
 * Flags: --hot (reload services on change), --repl (Moleculer REPL).
 */
import fs from "node:fs";
import path from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "./moleculer.config";
import { ConfigError, loadConfig, setConfig, type Config } from "./shared/config";
import { startDraining } from "./shared/lifecycle";
import { startOpsServer, type OpsServer } from "./shared/ops-server";
import { closeSharedKeyValueStores } from "./shared/kv";
import { installBackupHandler } from "./shared/backup-snapshot";
import { lockDataDir } from "./shared/data-dir-lock";

export interface Platform {
	broker: ServiceBroker;
	config: Config;
	stop(): Promise<void>;
}

/**
 * Any service schema, whatever its typed `this` (schemas typed with their methods are not
 * assignable to the default `ServiceSchema`).
 */
export type AnyServiceSchema = Pick<ServiceSchema, "name">;

export interface StartOptions {
	hot?: boolean;
	/** Extra service schemas (tests add slow or probing services). */
	extraServices?: AnyServiceSchema[];
	/** Without the gateway, whether to serve health and metrics on OPS_PORT (true; an operator command does not). */
	ops?: boolean;
}

/** The file of a service in this build, `.ts` under tsx and `.js` in dist. */
function serviceFile(name: string): string | null {
	for (const ext of [".ts", ".js"]) {
		const file = path.join(__dirname, "services", `${name}.service${ext}`);
		if (fs.existsSync(file)) return file;
	}
	return null;
}

export async function startPlatform(config: Config, options: StartOptions = {}): Promise<Platform> {
	setConfig(config);
	fs.mkdirSync(config.dataDir, { recursive: true });
	let ops: OpsServer | null = null;
	const broker = new ServiceBroker(
		brokerOptions(config, { hotReload: Boolean(options.hot), skipProcessEventRegistration: true })
	);

	for (const name of config.services) {
		const file = serviceFile(name);
		if (file) broker.loadService(file);
		// Asked for by name, a missing service is worth a warning; "all" means all that exist.
		else if (config.servicesNamed) broker.logger.warn(`Service '${name}' is not part of this build yet; skipped.`);
	}
	for (const schema of options.extraServices ?? []) broker.createService(schema as ServiceSchema);

	await broker.start();
	if (!config.services.includes("api") && options.ops !== false) ops = await startOpsServer(config, broker);

	return {
		broker,
		config,
		async stop() {
			// Readiness fails and drain hooks run (open device streams end) before the broker
			// waits for in-flight requests: a stream would otherwise hold shutdown until its timeout.
			startDraining();
			await broker.stop();
			await ops?.close();
			await closeSharedKeyValueStores();
		}
	};
}

/** SIGTERM/SIGINT: stop taking work, let in-flight requests finish (broker tracking), exit 0. */
export function exitOnSignals(platform: Platform): void {
	let stopping = false;
	const shutdown = (signal: string) => {
		if (stopping) return;
		stopping = true;
		platform.broker.logger.info(`${signal} received: draining in-flight requests, then exiting.`);
		platform.stop().then(
			() => process.exit(0),
			err => {
				platform.broker.logger.error("Shutdown failed", err);
				process.exit(1);
			}
		);
	};
	process.on("SIGTERM", () => shutdown("SIGTERM"));
	process.on("SIGINT", () => shutdown("SIGINT"));
}

/**
 * A failure that escapes every request handler (a throw in a timer or stream callback, a
 * forgotten promise) is logged and the process serves on: one request must never end the
 * service for everyone. Request errors themselves never get here — the gateway answers them.
 */
export function keepServingOnStrayErrors(platform: Platform): void {
	const log = (message: string, reason: unknown) => {
		try {
			platform.broker.logger.error(`${message}; serving on`, reason);
		} catch {
			/* a logger that throws must not end the process either */
		}
	};
	process.on("uncaughtException", err => log("Uncaught exception", err));
	process.on("unhandledRejection", reason => log("Unhandled promise rejection", reason));
}

/**
 * What a person who ran `npm start` needs to know, in a few lines: where it listens, what runs,
 * where the data and the mail go. Production (JSON logs) gets it as one log line instead.
 */
export function startBanner(config: Config): string[] {
	const url = `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${config.port}`;
	const mode = config.transporter ? `services ${config.services.join(", ")} over NATS` : "embedded: every service in this process";
	const lines = [`Marquee is running at ${url} (${mode})`];
	if (config.services.includes("api")) lines.push(`  API docs   ${url}/api/docs`, `  health     ${url}/health/ready`);
	else lines.push(`  health     http://localhost:${config.opsPort}/health/ready`);
	lines.push(`  data       ${config.mongoUri ? "MongoDB" : `${path.join(config.dataDir, "db")} (NeDB files)`}; media in ${config.s3.endpoint ?? path.join(config.dataDir, "s3")}`);
	lines.push(`  mail       ${config.smtpUrl ? "sent over SMTP" : `written to ${path.join(config.dataDir, "mail")} (no SMTP_URL)`}`);
	lines.push(`  logs       ${config.logLevel} and above (LOG_LEVEL)`);
	return lines;
}

async function main(): Promise<void> {
	let config: Config;
	try {
		config = loadConfig();
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(`marquee: invalid configuration: ${err.message}`);
			process.exit(1);
		}
		throw err;
	}
	const flags = new Set(process.argv.slice(2));
	if (!config.transporter) {
		try {
			lockDataDir(config.dataDir, "the platform", "or give this one another DATA_DIR");
		} catch (err) {
			console.error(`marquee: ${(err as Error).message}`);
			process.exit(1);
		}
	}
	const platform = await startPlatform(config, { hot: flags.has("--hot") });
	exitOnSignals(platform);
	keepServingOnStrayErrors(platform);
	// The embedded mode's one process: DATA_DIR/platform.pid, and snapshots for `npm run backup` on SIGUSR2.
	if (!config.transporter) installBackupHandler(config, platform.broker.logger);
	const banner = startBanner(config);
	// The banner is the program's own output, not a log line.
	if (config.logFormat === "pretty") process.stdout.write(`${banner.join("\n")}\n`);
	else platform.broker.logger.info(banner.map(line => line.trim()).join("; "));
	if (flags.has("--repl")) await platform.broker.repl();
}

if (require.main === module) {
	main().catch(err => {
		console.error("marquee: failed to start:", err instanceof Error ? err.message : err);
		process.exit(1);
	});
}
