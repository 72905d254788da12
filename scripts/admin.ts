/**
 * Operator commands: `npm run admin -- set-plan <tenantId> <plan> [--quantity N]`.
 *
 * With TRANSPORTER set, this joins the running cluster as a node (no services of its own) and
 * calls `billing.setPlan` on the billing service there. Without it (the embedded mode) it starts
 * a broker with the billing and tenants services on the same DATA_DIR: NeDB files have one writer, so the
 * platform must be stopped first (`npm start` running at the same time would not see the change
 * and could overwrite it); it refuses while the platform runs there.
 */
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import BillingService from "../services/billing.service";
import TenantsService from "../services/tenants.service";
import { assertDataDirFree } from "../shared/backup";
import { loadConfig, setConfig } from "../shared/config";
import { call } from "../shared/contracts";
import type { AnyServiceSchema } from "../server";

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

async function main(): Promise<void> {
	const args = parseArgs(process.argv.slice(2));
	const config = loadConfig();
	setConfig(config);
	if (!config.transporter) assertDataDirFree(config.dataDir, "this command writes its files");
	const broker = new ServiceBroker(brokerOptions(config, { nodeID: `admin-${process.pid}`, logLevel: "warn", skipProcessEventRegistration: true }));
	// Embedded: billing on the platform's files, and tenants so that a mistyped tenant id is refused (404).
	const local: AnyServiceSchema[] = config.transporter ? [] : [BillingService, TenantsService];
	for (const schema of local) broker.createService(schema as ServiceSchema);
	await broker.start();
	try {
		await broker.waitForServices(["billing", "tenants"], 15_000);
		const result = await call(broker, "billing.setPlan", args.quantity === undefined ? { tenantId: args.tenantId, plan: args.plan } : args);
		process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
	} finally {
		await broker.stop();
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
