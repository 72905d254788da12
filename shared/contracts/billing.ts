/** billing: plan limits (the service itself arrives with issue 14; shared/quota.ts asks it when it runs). */
import type { QuotaResource } from "../quota";

export interface BillingActions {
	"billing.planLimits": { params: { tenantId: string }; result: Partial<Record<QuotaResource, number>> };
}
