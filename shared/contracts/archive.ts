/**
 * GET /tenant/export: every data service's part of a tenant's export under its name. Its own
 * file because it gathers the contracts of every data service (auth's imports tenants').
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { AnalyticsExport } from "./analytics";
import { AuthExport } from "./auth";
import { BillingExport } from "./billing";
import { DevicesExport } from "./devices";
import { MediaExport } from "./media";
import { NotificationsExport } from "./notifications";
import { SchedulingExport } from "./scheduling";
import { TenantExport, type TenantDataService } from "./tenants";
import { Id, Instant } from "./views";

export const TenantArchive = Type.Object({
	exportedAt: Instant,
	tenantId: Id,
	// `satisfies` keeps the keys those of TENANT_DATA_SERVICES.
	services: Type.Object({
		analytics: AnalyticsExport,
		auth: AuthExport,
		billing: BillingExport,
		devices: DevicesExport,
		media: MediaExport,
		notifications: NotificationsExport,
		scheduling: SchedulingExport,
		tenants: TenantExport
	} satisfies Record<TenantDataService, TSchema>)
});
export type TenantArchive = Static<typeof TenantArchive>;
