/**
 * The GDPR export's gathering: every data service's part (its `<service>.exportTenantData`),
 * refused as a whole when one of them is not running.
 */
import { TENANT_DATA_SERVICES, type EXPORT_ACTION, type Result, type TenantDataService } from "../../shared/contracts";

/** The export action of one data service, as the contracts name it. */
export type ExportAction<S extends TenantDataService = TenantDataService> = `${S}.${typeof EXPORT_ACTION}`;

/** Each data service's answer to its export action, under the service's name: the archive's `services`. */
export type ExportParts = { [S in TenantDataService]: Result<ExportAction<S>> };

/** Any one service's part. */
export type ExportPart = ExportParts[TenantDataService];

/** The data services missing from `running` (the services that answer the export action now). */
export function missingServices(running: Iterable<string>): TenantDataService[] {
	const available = new Set(running);
	return TENANT_DATA_SERVICES.filter(service => !available.has(service));
}

/**
 * Every part, asked one service after another (an export is rare; no need to load every service
 * at once). `part(service)` answers that service's part; each is kept under the service that
 * answered it, which is what pairs each key with its contract's answer type.
 */
export async function gatherParts(part: (service: TenantDataService) => Promise<ExportPart>): Promise<ExportParts> {
	const parts: Partial<Record<TenantDataService, ExportPart>> = {};
	for (const service of TENANT_DATA_SERVICES) parts[service] = await part(service);
	if (!isComplete(parts)) throw new Error("A data service answered no export part");
	return parts;
}

function isComplete(parts: Partial<Record<TenantDataService, ExportPart>>): parts is ExportParts {
	return TENANT_DATA_SERVICES.every(service => parts[service] !== undefined);
}
