/**
 * Operator commands: `npm run admin -- set-plan <tenantId> <plan> [--quantity N]`.
 *
 * With TRANSPORTER set, this joins the running cluster as a node (no services of its own) and
 * calls `billing.setPlan` on the billing service there. Without it (the embedded mode) it runs
 * the platform's services itself, without the gateway, on the same DATA_DIR, so that what the
 * command sets off (its audit record, mail) is stored and sent as the platform would, and stops
 * them once that is done. NeDB files have one writer, so the platform must be stopped first
 * (`npm start` running at the same time would not see the change and could overwrite it); it
 * refuses while the platform runs there.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { startPlatform } from "../server";
import { assertDataDirFree } from "../shared/backup";
import { loadConfig, setConfig, type Config } from "../shared/config";
import { call } from "../shared/contracts";

const USAGE = "usage: npm run admin -- set-plan <tenantId> <plan> [--quantity N]";

interface SetPlan {
	tenantId: string;
	plan: string;
	quantity?: number;
}

export function parseArgs(argv: string[]): SetPlan {
	const [command, tenantId, plan, ...rest] = argv;
	if (command !== "set-plan" || !tenantId || !plan) throw new Error(USAGE);
	let quantity: number | undefined;
	for (let i = 0; i < rest.length; i++) {
		if (rest[i] === "--quantity" && /^\d+$/.test(rest[i + 1] ?? "")) quantity = Number(rest[++i]);
		else throw new Error(`unexpected argument "${rest[i]}"\n${USAGE}`);
	}
	return { tenantId, plan, quantity };
}

/** The broker the command calls through: a node of the running cluster, or (embedded) the platform's services in this process. */
async function operatorBroker(config: Config): Promise<{ broker: ServiceBroker; stop(): Promise<void> }> {
	if (config.transporter) {
		const broker = new ServiceBroker(brokerOptions(config, { nodeID: `admin-${process.pid}`, logLevel: "warn", skipProcessEventRegistration: true }));
		await broker.start();
		await broker.waitForServices(["billing", "tenants"], 15_000);
		return { broker, stop: () => broker.stop() };
	}
	assertDataDirFree(config.dataDir, "this command writes its files");
	const platform = await startPlatform({ ...config, logLevel: "error", services: config.services.filter(name => name !== "api") }, { ops: false });
	return platform;
}

async function main(): Promise<void> {
	const args = parseArgs(process.argv.slice(2));
	const config = loadConfig();
	setConfig(config);
	const { broker, stop } = await operatorBroker(config);
	try {
		const result = await call(broker, "billing.setPlan", args.quantity === undefined ? { tenantId: args.tenantId, plan: args.plan } : args);
		process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
	} finally {
		await stop();
	}
}

if (require.main === module) {
	main().then(
		() => process.exit(0),
		(err: unknown) => {
			const data = (err as { data?: unknown }).data;
			process.stderr.write(`${err instanceof Error ? err.message : String(err)}${data ? ` ${JSON.stringify(data)}` : ""}\n`);
			process.exit(1);
		}
	);
}
