/**
 * services/tenants/export.ts: the GDPR export asks every data service for its part, in turn,
 * and refuses when one is not running; the archive's published schema has one part per service.
 */
import { gatherParts, missingServices, type ExportPart, type ExportParts } from "../../services/tenants/export";
import { EXPORT_ACTION, TENANT_DATA_SERVICES, TenantArchive, type TenantDataService } from "../../shared/contracts";

describe("missingServices", () => {
	it("names the data services that do not answer the export action", () => {
		expect(missingServices(TENANT_DATA_SERVICES)).toEqual([]);
		expect(missingServices(["auth", "tenants", "billing", "auth"])).toEqual(["analytics", "devices", "media", "notifications", "scheduling"]);
		expect(missingServices([])).toEqual([...TENANT_DATA_SERVICES]);
	});
});

describe("gatherParts", () => {
	/** One empty part per service, as each contract types it. */
	const EMPTY: ExportParts = {
		analytics: { auditEvents: [], truncated: false, reportSchedules: [] },
		auth: { users: [], sessions: [], apiKeys: [], ssoConnection: null },
		billing: { subscription: null },
		devices: { displays: [], groups: [], commands: [], provisioningKeys: [] },
		media: { content: [] },
		notifications: { notifications: [], preferences: [], webhooks: [], deliveries: [] },
		scheduling: { playlists: [], layouts: [], schedules: [], overrides: [], powerSchedules: [] },
		tenants: { tenant: null, memberships: [], invitations: [] }
	};

	it("asks each service once, one after another, and keeps each part under its service", async () => {
		const asked: string[] = [];
		let running = 0;
		const parts = await gatherParts(async (service: TenantDataService): Promise<ExportPart> => {
			expect(running).toBe(0);
			running++;
			asked.push(`${service}.${EXPORT_ACTION}`);
			await new Promise(resolve => setTimeout(resolve, 1));
			running--;
			return EMPTY[service];
		});
		expect(asked).toEqual(TENANT_DATA_SERVICES.map(s => `${s}.exportTenantData`));
		expect(Object.keys(parts)).toEqual([...TENANT_DATA_SERVICES]);
		for (const service of TENANT_DATA_SERVICES) expect(parts[service]).toBe(EMPTY[service]);
	});

	it("fails with the first service that fails", async () => {
		const failing = gatherParts(async service => {
			if (service === "media") throw new Error("media is down");
			return EMPTY[service];
		});
		await expect(failing).rejects.toThrow("media is down");
	});
});

it("the archive's schema has exactly one part per data service", () => {
	expect(Object.keys(TenantArchive.properties.services.properties).sort()).toEqual([...TENANT_DATA_SERVICES].sort());
});
