/** The caller of a REST action (shared/request.ts) and who may manage which member (services/tenants/access.ts). */
import { assertMayManage } from "../../services/tenants/access";
import { callerOf, userCallerOf } from "../../shared/request";
import { AppError } from "../../shared/errors";
import { ROLES, type Principal, type Role } from "../../shared/rbac";

function typeOf(fn: () => unknown): string | null {
	try {
		fn();
		return null;
	} catch (err) {
		expect(err).toBeInstanceOf(AppError);
		return (err as AppError).type;
	}
}

const user: Principal = { kind: "user", tenantId: "t1", userId: "u1", role: "admin", sessionId: "s1" };
const apiKey: Principal = { kind: "apiKey", tenantId: "t1", apiKeyId: "k1", role: "admin" };

describe("callerOf", () => {
	it("is the principal's tenant, user (null for an API key) and role", () => {
		expect(callerOf({ auth: user })).toEqual({ tenantId: "t1", userId: "u1", role: "admin" });
		expect(callerOf({ auth: apiKey })).toEqual({ tenantId: "t1", userId: null, role: "admin" });
	});

	it("401 without a principal, a tenant or a role (a device has no role)", () => {
		expect(typeOf(() => callerOf({ auth: null }))).toBe("UNAUTHORIZED");
		expect(typeOf(() => callerOf({ auth: { ...user, tenantId: "" } }))).toBe("UNAUTHORIZED");
		expect(typeOf(() => callerOf({ auth: { kind: "device", tenantId: "t1", displayId: "d1" } }))).toBe("UNAUTHORIZED");
	});

	it("userCallerOf also needs a user", () => {
		expect(userCallerOf({ auth: user })).toEqual({ tenantId: "t1", userId: "u1", role: "admin" });
		expect(typeOf(() => userCallerOf({ auth: apiKey }))).toBe("UNAUTHORIZED");
	});
});

describe("assertMayManage", () => {
	const cases: Array<[Role, Role, Role | undefined, boolean]> = [];
	for (const actor of ROLES) {
		for (const target of ROLES) {
			for (const next of [undefined, ...ROLES]) {
				const touchesAdmin = target === "admin" || target === "owner" || next === "admin" || next === "owner";
				cases.push([actor, target, next, !touchesAdmin || actor === "owner"]);
			}
		}
	}

	it.each(cases)("%s on %s → %s: allowed %s", (actor, target, next, allowed) => {
		expect(typeOf(() => assertMayManage(actor, target, next))).toBe(allowed ? null : "FORBIDDEN");
	});
});
