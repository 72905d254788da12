/**
 * Content approval, the rules both media (content) and scheduling (playlists) follow.
 *
 * With the tenant's `contentApproval` setting on, a change by an editor (a person or an API key
 * with the editor role) waits: a new item is `pending` and plays nowhere; a change to an approved
 * item is kept aside as its proposal while the approved version keeps playing. An admin (or the
 * owner) approves — the proposal becomes what plays — or rejects it with a comment — the
 * proposal is dropped, a never-approved item never plays. Admins' own changes need no approval.
 * Only `pending` changes are decided (409 otherwise); the decision is a compare-and-set on the
 * request it decides, so two reviewers never both decide one request and a change made
 * meanwhile is not decided unseen.
 */
import type { Context } from "moleculer";
import { call, type ApprovalView } from "./contracts";
import { Errors } from "./errors";
import { ID_RULE } from "./ids";
import { roleAtLeast, type Principal } from "./rbac";
import { ISO_INSTANT_RULE } from "./request";

export type ApprovalState = ApprovalView;

/** A reviewer's comment: required to reject, optional to approve. */
const COMMENT_RULE = { type: "string", trim: true, min: 1, max: 2000 } as const;

/**
 * The params of POST …/approve and …/reject. `requestedAt`: the pending request the reviewer
 * looked at (its `approval.requestedAt`); when another change has replaced it since, the decision
 * answers 409 instead of deciding what nobody reviewed.
 */
export const DECISION_PARAMS = {
	approve: { $$strict: "remove", id: ID_RULE, comment: { ...COMMENT_RULE, optional: true }, requestedAt: { ...ISO_INSTANT_RULE, optional: true } },
	reject: { $$strict: "remove", id: ID_RULE, comment: COMMENT_RULE, requestedAt: { ...ISO_INSTANT_RULE, optional: true } }
} as const;

/** What a document without an approval state (made before approval existed, or by an admin) stands for. */
export const APPROVED: ApprovalState = { status: "approved", live: true, requestedBy: null, requestedAt: null, reviewedBy: null, reviewedAt: null, comment: null };

export function approvalOf(doc: { approval?: ApprovalState | null }): ApprovalState {
	return doc.approval ?? APPROVED;
}

/** Whether an approved version of the document plays. */
export function isLive(doc: { approval?: ApprovalState | null }): boolean {
	return approvalOf(doc).live;
}

/** Who made a change: the person or API key (devices never change content). */
export function actorOf(principal: Principal | null | undefined): string | null {
	return principal?.userId ?? principal?.apiKeyId ?? null;
}

/** Whether a change by `principal` waits for approval in a tenant with the setting `required`. */
export function needsApproval(required: boolean, principal: Principal | null | undefined): boolean {
	return required && !roleAtLeast(principal?.role, "admin");
}

/** The tenant's `contentApproval` setting (off when the tenant cannot be read: nothing is held back by an outage elsewhere). */
export async function approvalRequired(ctx: Context, tenantId: string): Promise<boolean> {
	if (!ctx.broker.registry.getActionEndpoints("tenants.find")?.hasAvailable()) return false;
	const tenant = await call(ctx, "tenants.find", { tenantId });
	return tenant?.settings.contentApproval === true;
}

/** A change waiting for review; `live`: whether an approved version plays meanwhile (false for a new document). */
export function requested(live: boolean, actor: string | null, now: Date): ApprovalState {
	return { status: "pending", live, requestedBy: actor, requestedAt: now.toISOString(), reviewedBy: null, reviewedAt: null, comment: null };
}

/**
 * The decision on a pending change (409 when nothing is pending, or when `reviewed` — the
 * requestedAt the reviewer saw — is not the pending request's); an approval makes it what plays.
 */
export function decided(
	current: ApprovalState,
	decision: "approved" | "rejected",
	by: { reviewer: string | null; comment: string | null; reviewed?: string },
	now: Date
): ApprovalState {
	if (current.status !== "pending") throw Errors.conflict(`Nothing is waiting for approval (the latest change is ${current.status})`);
	if (by.reviewed !== undefined && Date.parse(by.reviewed) !== Date.parse(current.requestedAt ?? "")) {
		throw Errors.conflict("Another change has replaced the one you reviewed; review it again", { requestedAt: current.requestedAt });
	}
	const { reviewer, comment } = by;
	return {
		...current,
		status: decision,
		live: decision === "approved" || current.live,
		reviewedBy: reviewer,
		reviewedAt: now.toISOString(),
		comment
	};
}
