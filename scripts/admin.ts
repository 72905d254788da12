/**
 * Operator commands:
 *   npm run admin -- set-plan <tenantId> <plan> [--quantity N]   the plan a tenant is on, without Stripe
 *   npm run admin -- reset-2fa <email>                            two-factor off for a person who lost
 *                                                                 their authenticator and recovery codes
 *
 * With TRANSPORTER set, this joins the running cluster as a node (no services of its own) and
 * calls the service there. Without it (the embedded mode) it runs the platform's services itself,
 * without the gateway, on the same DATA_DIR, so that what the command sets off (its audit record,
 * mail) is stored and sent as the platform would, and stops them once that is done. NeDB files
 * have one writer, so the platform must be stopped first (`npm start` running at the same time
 * would not see the change and could overwrite it); it refuses while the platform runs there.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { startPlatform } from "../server";
import { lockDataDir } from "../shared/data-dir-lock";
import { loadConfig, setConfig, type Config } from "../shared/config";
import { call } from "../shared/contracts";

const USAGE = ["usage: npm run admin -- set-plan <tenantId> <plan> [--quantity N]", "       npm run admin -- reset-2fa <email>"].join("\n");

export type Command = { command: "set-plan"; tenantId: string; plan: string; quantity?: number } | { command: "reset-2fa"; email: string };

export function parseArgs(argv: string[]): Command {
	const [command, ...rest] = argv;
	const extra = (from: number) => {
		if (rest.length > from) throw new Error(`unexpected argument "${rest[from]}"\n${USAGE}`);
	};
	if (command === "reset-2fa") {
		const [email] = rest;
		if (!email) throw new Error(USAGE);
		extra(1);
		return { command, email };
	}
	const [tenantId, plan] = rest;
	if (command !== "set-plan" || !tenantId || !plan) throw new Error(USAGE);
	let quantity: number | undefined;
	for (let i = 2; i < rest.length; i++) {
		if (rest[i] === "--quantity" && /^\d+$/.test(rest[i + 1] ?? "")) quantity = Number(rest[++i]);
		else extra(i);
	}
	return quantity === undefined ? { command, tenantId, plan } : { command, tenantId, plan, quantity };
}

/** The services a command calls. */
const SERVICES_OF: Record<Command["command"], string[]> = { "set-plan": ["billing", "tenants"], "reset-2fa": ["auth", "tenants"] };

/** The broker the command calls through: a node of the running cluster, or (embedded) the platform's services in this process. */
async function operatorBroker(config: Config, needs: string[]): Promise<{ broker: ServiceBroker; stop(): Promise<void> }> {
	if (config.transporter) {
		const broker = new ServiceBroker(brokerOptions(config, { nodeID: `admin-${process.pid}`, logLevel: "warn", skipProcessEventRegistration: true }));
		await broker.start();
		await broker.waitForServices(needs, 15_000);
		return { broker, stop: () => broker.stop() };
	}
	lockDataDir(config.dataDir, "npm run admin", "this command writes its files");
	return startPlatform({ ...config, logLevel: "error", services: config.services.filter(name => name !== "api") }, { ops: false });
}

async function run(broker: ServiceBroker, args: Command): Promise<unknown> {
	switch (args.command) {
		case "set-plan":
			return call(broker, "billing.setPlan", args.quantity === undefined ? { tenantId: args.tenantId, plan: args.plan } : { tenantId: args.tenantId, plan: args.plan, quantity: args.quantity });
		case "reset-2fa":
			return call(broker, "auth.resetTwoFactor", { email: args.email });
	}
}

async function main(): Promise<void> {
	const args = parseArgs(process.argv.slice(2));
	const config = loadConfig();
	setConfig(config);
	const { broker, stop } = await operatorBroker(config, SERVICES_OF[args.command]);
	try {
		process.stdout.write(`${JSON.stringify(await run(broker, args), null, 2)}\n`);
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
