/**
 * The operator command `npm run admin -- set-plan <tenantId> <plan> [--quantity N]` in the
 * embedded mode, as an operator runs it: a child process on the platform's DATA_DIR while the
 * platform is stopped. The plan it sets is what billing answers afterwards, and its audit record
 * is in the tenant's audit log; a wrong plan, an unknown tenant and bad arguments end with exit
 * code 1 and one line saying why.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import BillingService from "../../services/billing.service";
import TenantsService from "../../services/tenants.service";
import { loadConfig, setConfig } from "../../shared/config";
import { call } from "../../shared/contracts";
import { tempDir } from "../helpers/platform";
import { killGroup, ROOT, spawnPlatform, waitFor200 } from "../helpers/process";

const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");

function admin(dataDir: string, ...args: string[]) {
	const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "development", DATA_DIR: dataDir, LOG_LEVEL: "error" };
	delete env.TRANSPORTER;
	return spawnSync(TSX, ["scripts/admin.ts", ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 60_000 });
}

/** A broker with tenants and billing on `dataDir` (the embedded mode's NeDB files). */
async function brokerOn(dataDir: string): Promise<ServiceBroker> {
	const config = loadConfig({ NODE_ENV: "development", DATA_DIR: dataDir });
	setConfig(config);
	const broker = new ServiceBroker(brokerOptions(config, { logger: false, skipProcessEventRegistration: true }));
	for (const schema of [TenantsService, BillingService]) broker.createService(schema as ServiceSchema);
	await broker.start();
	return broker;
}

describe("npm run admin -- set-plan (embedded mode)", () => {
	let dataDir: string;
	let tenantId: string;

	beforeAll(async () => {
		dataDir = tempDir("admin-cli");
		const broker = await brokerOn(dataDir);
		try {
			tenantId = (await call(broker, "tenants.create", { name: "Café Zürich 🍰", ownerUserId: "owner-1" })).id;
		} finally {
			await broker.stop();
		}
	}, 60_000);

	it("sets a per-display plan with its quantity: billing answers those limits afterwards", async () => {
		const run = admin(dataDir, "set-plan", tenantId, "pro", "--quantity", "7");
		expect(run.stderr).toBe("");
		expect(run.status).toBe(0);
		expect(JSON.parse(run.stdout)).toMatchObject({ plan: "pro", quantity: 7 });
		const broker = await brokerOn(dataDir);
		try {
			expect(await call(broker, "billing.planLimits", { tenantId })).toMatchObject({ displays: 7 });
		} finally {
			await broker.stop();
		}
	}, 120_000);

	it("leaves its audit record where the platform keeps them (the embedded command runs the platform's services, not just billing)", async () => {
		const platformDir = tempDir("admin-cli-audit");
		const started = await spawnPlatform(TSX, ["server.ts"], { DATA_DIR: platformDir });
		let owner: { tenant: { id: string }; accessToken: string };
		try {
			await waitFor200(`${started.url}/health/ready`, 60_000, started);
			const res = await fetch(`${started.url}/api/v1/auth/register`, {
				method: "POST",
				headers: { "Content-Type": "application/json" },
				body: JSON.stringify({ email: `admin-cli-${process.pid}@example.com`, password: "Operator sets the plan 42", name: "Ōwner", organizationName: "Ünïcode Signage 🖥" })
			});
			expect(res.status).toBe(201);
			owner = (await res.json()) as typeof owner;
		} finally {
			started.kill("SIGTERM");
			await started.exited;
		}
		const run = admin(platformDir, "set-plan", owner.tenant.id, "pro", "--quantity", "3");
		expect(run.stderr).toBe("");
		expect(run.status).toBe(0);

		const again = await spawnPlatform(TSX, ["server.ts"], { DATA_DIR: platformDir });
		try {
			await waitFor200(`${again.url}/health/ready`, 60_000, again);
			const res = await fetch(`${again.url}/api/v1/audit-logs?action=billing.plan.set`, { headers: { Authorization: `Bearer ${owner.accessToken}` } });
			expect(res.status).toBe(200);
			const body = (await res.json()) as { rows: Array<{ action: string; target: string }>; total: number };
			expect(body.rows.map(r => ({ action: r.action, target: r.target }))).toEqual([{ action: "billing.plan.set", target: owner.tenant.id }]);
		} finally {
			killGroup(again);
			await again.exited;
		}
	}, 180_000);

	it("refuses an unknown plan, an unknown tenant and bad arguments with exit code 1 and a reason", () => {
		const plan = admin(dataDir, "set-plan", tenantId, "platinum");
		expect(plan.status).toBe(1);
		expect(plan.stderr).toMatch(/plan/);
		const tenant = admin(dataDir, "set-plan", "no-such-tenant", "pro", "--quantity", "2");
		expect(tenant.status).toBe(1);
		expect(tenant.stderr).toMatch(/Tenant/);
		const usage = admin(dataDir, "set-plan", tenantId);
		expect(usage.status).toBe(1);
		expect(usage.stderr).toMatch(/^usage: npm run admin -- set-plan/);
		const quantity = admin(dataDir, "set-plan", tenantId, "pro", "--quantity", "many");
		expect(quantity.status).toBe(1);
		expect(quantity.stderr).toMatch(/unexpected argument "--quantity"/);
	}, 120_000);
});
