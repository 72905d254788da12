/**
 * TENANT_DATA_SERVICES (shared/contracts/tenants.ts) names exactly the services that keep tenant
 * data — those with an `exportTenantData` action — so the GDPR export can refuse to answer
 * without one of them (and a new service that keeps data cannot be forgotten).
 */
import fs from "node:fs";
import path from "node:path";
import { EXPORT_ACTION, TENANT_DATA_SERVICES } from "../../shared/contracts";

const SERVICES_DIR = path.resolve(__dirname, "../../services");

it("lists every service with an export action, and only those", async () => {
	const withExport: string[] = [];
	for (const file of fs.readdirSync(SERVICES_DIR).filter(f => f.endsWith(".service.ts"))) {
		const schema = ((await import(path.join(SERVICES_DIR, file))) as { default: { name: string; actions?: Record<string, unknown> } }).default;
		if (schema.actions && EXPORT_ACTION in schema.actions) withExport.push(schema.name);
	}
	expect([...TENANT_DATA_SERVICES].sort()).toEqual(withExport.sort());
});
