/**
 * The operator command `npm run admin -- set-plan <tenantId> <plan> [--quantity N]` in the
 * embedded mode, as an operator runs it: a child process on the platform's DATA_DIR while the
 * platform is stopped. The plan it sets is what billing answers afterwards, and its audit record
 * is in the tenant's audit log; a wrong plan, an unknown tenant and bad arguments end with exit
 * code 1 and one line saying why.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import BillingService from "../../services/billing.service";
import TenantsService from "../../services/tenants.service";
import { loadConfig, setConfig } from "../../shared/config";
import { call } from "../../shared/contracts";
import { tempDir } from "../helpers/platform";
import { codeFor, stepOf } from "../helpers/totp";
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

interface Session {
	user: { id: string; email: string };
	tenant: { id: string };
	accessToken: string;
	refreshToken: string;
}

const PASSWORD = "Operator sets the plan 42";

async function api<T>(url: string, route: string, init: { method?: string; token?: string; json?: unknown } = {}): Promise<{ status: number; body: T }> {
	const headers: Record<string, string> = {};
	if (init.token) headers.Authorization = `Bearer ${init.token}`;
	if (init.json !== undefined) headers["Content-Type"] = "application/json";
	const res = await fetch(`${url}/api/v1${route}`, { method: init.method ?? (init.json === undefined ? "GET" : "POST"), headers, body: init.json === undefined ? undefined : JSON.stringify(init.json) });
	const text = await res.text();
	return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

/** Runs `use` against the platform (`tsx server.ts`) started on `dataDir`, then stops it. */
async function withPlatform<T>(dataDir: string, use: (url: string) => Promise<T>): Promise<T> {
	const started = await spawnPlatform(TSX, ["server.ts"], { DATA_DIR: dataDir });
	try {
		await waitFor200(`${started.url}/health/ready`, 60_000, started);
		return await use(started.url);
	} finally {
		started.kill("SIGTERM");
		if ((await Promise.race([started.exited, new Promise(resolve => setTimeout(resolve, 30_000, "slow"))])) === "slow") killGroup(started);
	}
}

async function signUp(url: string, email: string): Promise<Session> {
	const res = await api<Session>(url, "/auth/register", { json: { email, password: PASSWORD, name: "Ōwner", organizationName: "Ünïcode Signage 🖥" } });
	expect(res.status).toBe(201);
	return res.body;
}

async function auditRows(url: string, token: string, action: string) {
	const res = await api<{ rows: Array<{ action: string; target: string; actor: { kind: string; id: string | null } }> }>(url, `/audit-logs?action=${action}`, { token });
	expect(res.status).toBe(200);
	return res.body.rows;
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
		const owner = await withPlatform(platformDir, url => signUp(url, `admin-cli-${process.pid}@example.com`));
		const run = admin(platformDir, "set-plan", owner.tenant.id, "pro", "--quantity", "3");
		expect(run.stderr).toBe("");
		expect(run.status).toBe(0);

		const rows = await withPlatform(platformDir, url => auditRows(url, owner.accessToken, "billing.plan.set"));
		expect(rows.map(r => ({ action: r.action, target: r.target }))).toEqual([{ action: "billing.plan.set", target: owner.tenant.id }]);
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

describe("npm run admin -- reset-2fa <email> (embedded mode): for a person who lost their authenticator and recovery codes", () => {
	it("turns two-factor off, ends every session, tells the person and audits it in each of their tenants; the password alone signs in after", async () => {
		const dataDir = tempDir("admin-cli-2fa");
		const email = `Locked.Out-${process.pid}@Example.com`;
		const before = await withPlatform(dataDir, async url => {
			const owner = await signUp(url, email);
			const enrol = await api<{ secret: string }>(url, "/auth/2fa/enrol", { token: owner.accessToken, json: { password: PASSWORD } });
			expect(enrol.status).toBe(200);
			expect((await api(url, "/auth/2fa/confirm", { token: owner.accessToken, json: { code: codeFor(enrol.body.secret, stepOf()) } })).status).toBe(200);
			const login = await api<{ challenge?: string }>(url, "/auth/login", { json: { email, password: PASSWORD } });
			expect(login.body.challenge).toBe("totp");
			return owner;
		});

		const run = admin(dataDir, "reset-2fa", email.toUpperCase());
		expect(run.stderr).toBe("");
		expect(run.status).toBe(0);
		expect(JSON.parse(run.stdout)).toEqual({ userId: before.user.id, email: email.toLowerCase(), sessionsEnded: 1 });
		// Twice is a mistake worth saying; so is an address nobody has.
		const again = admin(dataDir, "reset-2fa", email);
		expect(again.status).toBe(1);
		expect(again.stderr).toMatch(/^Two-factor authentication is not on for this account/);
		const nobody = admin(dataDir, "reset-2fa", "nobody@example.com");
		expect(nobody.status).toBe(1);
		expect(nobody.stderr).toMatch(/^User not found/);

		await withPlatform(dataDir, async url => {
			expect((await api(url, "/auth/refresh", { json: { refreshToken: before.refreshToken } })).status).toBe(401);
			expect((await api(url, "/auth/me", { token: before.accessToken })).status).toBe(401);
			const login = await api<Session & { challenge?: string }>(url, "/auth/login", { json: { email, password: PASSWORD } });
			expect(login.status).toBe(200);
			expect(login.body.challenge).toBeUndefined();
			expect(login.body.accessToken).toEqual(expect.any(String));
			expect((await api<{ enabled: boolean }>(url, "/auth/2fa", { token: login.body.accessToken })).body).toMatchObject({ enabled: false });
			const rows = await auditRows(url, login.body.accessToken, "auth.2fa.reset");
			expect(rows.map(r => ({ action: r.action, target: r.target, actor: r.actor }))).toEqual([{ action: "auth.2fa.reset", target: before.user.id, actor: { kind: "anonymous", id: null } }]);
		});
		const mailDir = path.join(dataDir, "mail");
		const mails = fs.readdirSync(mailDir).map(file => fs.readFileSync(path.join(mailDir, file), "utf8"));
		expect(mails.filter(m => /^Subject: Two-factor authentication was reset for your Marquee account/m.test(m))).toHaveLength(1);
	}, 240_000);

	it("answers bad arguments with the usage", () => {
		const dataDir = tempDir("admin-cli-2fa-usage");
		const missing = admin(dataDir, "reset-2fa");
		expect(missing.status).toBe(1);
		expect(missing.stderr).toMatch(/reset-2fa <email>/);
		const extra = admin(dataDir, "reset-2fa", "a@example.com", "b@example.com");
		expect(extra.status).toBe(1);
		expect(extra.stderr).toMatch(/^unexpected argument "b@example.com"/);
	});
});
