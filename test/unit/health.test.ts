/**
 * Readiness that means something: a process waits only for the backends its own services use,
 * is not ready when it runs none of the services it was given, and a gateway says which
 * services it sees behind it (and is not ready while it sees none).
 */
import { ServiceBroker } from "moleculer";
import { dependencyChecks, readiness } from "../../shared/health";
import { testConfig } from "../helpers/platform";

const BACKENDS = {
	S3_ENDPOINT: "http://127.0.0.1:9",
	S3_ACCESS_KEY: "key",
	S3_SECRET_KEY: "secret-secret",
	CLICKHOUSE_URL: "http://127.0.0.1:9/marquee",
	SMTP_URL: "smtp://127.0.0.1:9"
};

function checkNames(services: string): string[] {
	return Object.keys(dependencyChecks(testConfig({ ...BACKENDS, SERVICES: services }), new ServiceBroker({ logger: false }))).sort();
}

describe("which backends a process waits for", () => {
	it.each([
		["devices", ["broker", "services"]],
		["auth,tenants,scheduling,billing", ["broker", "services"]],
		["media", ["broker", "s3", "services"]],
		["analytics", ["broker", "clickhouse", "services"]],
		["notifications", ["broker", "services", "smtp"]],
		["api", ["broker", "services"]],
		["media,analytics,notifications", ["broker", "clickhouse", "s3", "services", "smtp"]]
	])("SERVICES=%s checks %j", (services, expected) => {
		expect(checkNames(services)).toEqual(expected);
	});
});

describe("the services check", () => {
	const brokers: ServiceBroker[] = [];
	afterEach(async () => {
		await Promise.all(brokers.splice(0).map(b => b.stop()));
	});

	async function node(nodeID: string, services: string[], transporter?: "Fake"): Promise<ServiceBroker> {
		const broker = new ServiceBroker({ nodeID, logger: false, transporter });
		for (const name of services) broker.createService({ name });
		brokers.push(broker);
		await broker.start();
		return broker;
	}

	it("fails for a process that runs none of its SERVICES", async () => {
		const broker = await node("lonely", []);
		const ready = await readiness(dependencyChecks(testConfig({ SERVICES: "billing" }), broker), broker);
		expect(ready.status).toBe("fail");
		expect(ready.checks.services).toMatchObject({ status: "fail", error: expect.stringContaining("runs none of SERVICES (billing)") });
		expect(ready.services?.billing).toBe("missing");
	});

	it("passes for a process that runs them, and says where each service is", async () => {
		const broker = await node("devices-1", ["devices"]);
		const ready = await readiness(dependencyChecks(testConfig({ SERVICES: "devices" }), broker), broker);
		expect(ready.checks.services.status).toBe("ok");
		expect(ready.services).toEqual({
			api: "missing",
			auth: "missing",
			tenants: "missing",
			devices: "local",
			media: "missing",
			scheduling: "missing",
			notifications: "missing",
			billing: "missing",
			analytics: "missing"
		});
	});

	it("a gateway alone is not ready; once it sees a service over the transporter it is, and names it remote", async () => {
		const gateway = await node("gateway-1", ["api"], "Fake");
		const checks = dependencyChecks(testConfig({ SERVICES: "api" }), gateway);
		const alone = await readiness(checks, gateway);
		expect(alone.checks.services).toMatchObject({ status: "fail", error: expect.stringContaining("sees no service behind the gateway") });

		await node("auth-1", ["auth"], "Fake");
		await gateway.waitForServices("auth", 5000);
		const together = await readiness(checks, gateway);
		expect(together.checks.services.status).toBe("ok");
		expect(together.services).toMatchObject({ api: "local", auth: "remote", devices: "missing" });
	});
});
