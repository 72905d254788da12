/**
 * The one RBAC table. Every REST action names a permission; the gateway checks the caller's
 * principal against this table (and only there). Roles are ordered viewer < editor < admin < owner.
 */
export const ROLES = ["viewer", "editor", "admin", "owner"] as const;
export type Role = (typeof ROLES)[number];

export type PrincipalKind = "user" | "apiKey" | "device";

/** The verified caller, resolved once by the gateway and carried in `ctx.meta.auth`. */
export interface Principal {
	kind: PrincipalKind;
	tenantId: string;
	/** user and apiKey principals act with a role inside their tenant. */
	role?: Role;
	userId?: string;
	sessionId?: string;
	apiKeyId?: string;
	displayId?: string;
}

interface Rule {
	/** Which kinds of principal may call; empty = no authentication needed. */
	principals: PrincipalKind[];
	/** Lowest role allowed (user and apiKey principals). */
	minRole?: Role;
	description: string;
}

export const PERMISSIONS = {
	public: { principals: [], description: "anyone, no token needed" },
	self: { principals: ["user"], description: "any signed-in user, about their own account" },
	"tenant.read": { principals: ["user", "apiKey"], minRole: "viewer", description: "read anything in the tenant" },
	"content.write": { principals: ["user", "apiKey"], minRole: "editor", description: "upload and edit content" },
	"playlists.write": { principals: ["user", "apiKey"], minRole: "editor", description: "edit playlists and layouts" },
	"schedules.write": { principals: ["user", "apiKey"], minRole: "editor", description: "edit schedules and overrides" },
	"content.approve": { principals: ["user", "apiKey"], minRole: "admin", description: "approve or reject content and playlist changes" },
	"displays.manage": { principals: ["user", "apiKey"], minRole: "admin", description: "displays, pairing, commands, groups" },
	"members.manage": { principals: ["user", "apiKey"], minRole: "admin", description: "members and invitations" },
	"apiKeys.manage": { principals: ["user"], minRole: "admin", description: "API keys" },
	"sso.manage": { principals: ["user"], minRole: "owner", description: "single sign-on (the tenant's identity provider)" },
	"webhooks.manage": { principals: ["user", "apiKey"], minRole: "admin", description: "webhooks and alert settings" },
	"tenant.settings": { principals: ["user", "apiKey"], minRole: "admin", description: "tenant profile and settings" },
	"audit.read": { principals: ["user", "apiKey"], minRole: "admin", description: "audit logs" },
	"reports.manage": { principals: ["user", "apiKey"], minRole: "admin", description: "weekly report emails" },
	"billing.manage": { principals: ["user"], minRole: "owner", description: "subscription and payment" },
	"tenant.owner": { principals: ["user"], minRole: "owner", description: "ownership transfer, export, deletion" },
	device: { principals: ["device"], description: "a paired display, with its device token" }
} as const satisfies Record<string, Rule>;

export type Permission = keyof typeof PERMISSIONS;

export function isPermission(value: unknown): value is Permission {
	return typeof value === "string" && Object.prototype.hasOwnProperty.call(PERMISSIONS, value);
}

export function roleAtLeast(role: Role | undefined, min: Role): boolean {
	return role !== undefined && ROLES.indexOf(role) >= ROLES.indexOf(min);
}

export type Decision = "allow" | "unauthenticated" | "forbidden";

/** Whether `principal` (null = anonymous) may use a route guarded by `permission`. */
export function decide(permission: Permission, principal: Principal | null): Decision {
	const rule: Rule = PERMISSIONS[permission];
	if (rule.principals.length === 0) return "allow";
	if (!principal) return "unauthenticated";
	// Device tokens and user/API-key tokens are separate families: a token of the other family
	// counts as no valid token at all. Inside the user family, a route may still exclude API keys.
	const deviceRoute = (rule.principals as PrincipalKind[]).includes("device");
	if ((principal.kind === "device") !== deviceRoute) return "unauthenticated";
	if (!rule.principals.includes(principal.kind)) return "forbidden";
	if (rule.minRole && !roleAtLeast(principal.role, rule.minRole)) return "forbidden";
	return "allow";
}
