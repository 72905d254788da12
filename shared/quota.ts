/**
 * The one quota check. Services ask before they grow a tenant's usage; the billing service's
 * `billing.checkQuota` decides when it runs, otherwise the default plan from config does
 * (DEFAULT_PLAN_*), so limits are enforced from the first day.
 */
import type { Context } from "moleculer";
import type { Config } from "./config";
import { Errors } from "./errors";

export type QuotaResource = "displays" | "storageBytes" | "members";

export interface QuotaRequest {
	tenantId: string;
	resource: QuotaResource;
	/** Usage now. */
	current: number;
	/** What the caller is about to add. */
	adding: number;
}

export interface QuotaAnswer {
	allowed: boolean;
	limit: number;
	current: number;
}

/** Pure: would `adding` stay within `limit`? */
export function withinLimit(limit: number, current: number, adding: number): boolean {
	return current + adding <= limit;
}

/**
 * 402 QUOTA_EXCEEDED when the tenant's plan does not allow it. `defaultPlan` is the calling
 * service's config (captured when it was created).
 */
export async function checkQuota(ctx: Context, request: QuotaRequest, defaultPlan: Config["defaultPlan"]): Promise<QuotaAnswer> {
	let answer: QuotaAnswer;
	if (ctx.broker.registry.getActionEndpoints("billing.checkQuota")?.hasAvailable()) {
		answer = (await ctx.call("billing.checkQuota", request)) as QuotaAnswer;
	} else {
		const limit = defaultPlan[request.resource];
		answer = { allowed: withinLimit(limit, request.current, request.adding), limit, current: request.current };
	}
	if (!answer.allowed) {
		throw Errors.quotaExceeded(`Your plan allows ${answer.limit} ${request.resource}`, {
			resource: request.resource,
			limit: answer.limit,
			current: answer.current
		});
	}
	return answer;
}
