/**
 * What a caller may do to other members. The gateway has already checked the route's
 * permission (shared/rbac.ts); these are the rules that depend on the target member.
 */
import { Errors } from "../../shared/errors";
import { roleAtLeast, type Role } from "../../shared/rbac";

/** Admins manage editors and viewers; only an owner touches admins and owners. */
export function assertMayManage(actorRole: Role, targetRole: Role, newRole?: Role): void {
	const touchesAdmin = roleAtLeast(targetRole, "admin") || (newRole !== undefined && roleAtLeast(newRole, "admin"));
	if (touchesAdmin && actorRole !== "owner") throw Errors.forbidden("Only an owner grants or removes admin and owner roles");
}
