/**
 * Who is calling and what they may do to other members. The gateway has already checked the
 * route's permission (shared/rbac.ts); these are the rules that depend on the target member.
 */
import { Errors } from "../../shared/errors";
import { roleAtLeast, type Role } from "../../shared/rbac";
import type { RequestMeta } from "../../shared/request";

export interface Caller {
	tenantId: string;
	/** null for an API key. */
	userId: string | null;
	role: Role;
}

/** The caller of a REST action: a user or an API key acting with a role in a tenant; else 401. */
export function callerOf(meta: Pick<RequestMeta, "auth">): Caller {
	const auth = meta.auth;
	if (!auth?.tenantId || !auth.role) throw Errors.unauthorized();
	return { tenantId: auth.tenantId, userId: auth.userId ?? null, role: auth.role };
}

/**
 * The caller of an action only users reach (permissions `self` and `tenant.owner` admit no API
 * key): the same, with the user's id; 401 if a principal without one ever got here.
 */
export function userCallerOf(meta: Pick<RequestMeta, "auth">): Caller & { userId: string } {
	const caller = callerOf(meta);
	if (caller.userId === null) throw Errors.unauthorized();
	return { ...caller, userId: caller.userId };
}

/** Admins manage editors and viewers; only an owner touches admins and owners. */
export function assertMayManage(actorRole: Role, targetRole: Role, newRole?: Role): void {
	const touchesAdmin = roleAtLeast(targetRole, "admin") || (newRole !== undefined && roleAtLeast(newRole, "admin"));
	if (touchesAdmin && actorRole !== "owner") throw Errors.forbidden("Only an owner grants or removes admin and owner roles");
}
