/** tenants: organisations, memberships, invitations, ownership, GDPR export and deletion. */
import { Type, type Static } from "@sinclair/typebox";
import type { Role } from "../rbac";
import type { TenantArchive } from "./archive";
import type { SignInAnswer } from "./auth";
import { Instant, Id, Nullable, PageOf, RoleSchema, type ExportParams, type NoParams, type PageParams } from "./views";

export const TenantSettings = Type.Object({
	timezone: Type.String(),
	offlineAlertMinutes: Type.Integer(),
	offlineAfterSec: Type.Integer(),
	/** Members must sign in with two-factor (set by the owner with PUT /tenant/two-factor). */
	requireTwoFactor: Type.Boolean(),
	/** Editors' content and playlist changes wait for an admin's approval before they reach screens. */
	contentApproval: Type.Boolean()
});
export type TenantSettings = Static<typeof TenantSettings>;

export const DEFAULT_SETTINGS: TenantSettings = { timezone: "UTC", offlineAlertMinutes: 10, offlineAfterSec: 90, requireTwoFactor: false, contentApproval: false };

/** API.md's `tenant` in auth answers. */
export const TenantSummary = Type.Object({ id: Id, name: Type.String(), slug: Type.String(), plan: Type.String(), createdAt: Instant });
export type TenantSummary = Static<typeof TenantSummary>;

/** GET /tenant: the summary with settings. */
export const TenantView = Type.Composite([TenantSummary, Type.Object({ settings: TenantSettings })]);
export type TenantView = Static<typeof TenantView>;

/** The summary of a tenant view (auth's answers carry no settings). */
export function tenantSummary({ id, name, slug, plan, createdAt }: TenantView): TenantSummary {
	return { id, name, slug, plan, createdAt };
}

/** A user's membership of a tenant, as other services receive it. */
export const MembershipView = Type.Object({ id: Id, tenantId: Id, userId: Id, role: RoleSchema, joinedAt: Instant });
export type Membership = Static<typeof MembershipView>;

/** The message every service handles on the durable deletion channel. */
export interface TenantDeleted {
	tenantId: string;
	/** Members who belonged to no other tenant: their accounts go too. */
	soleMemberUserIds: string[];
}

// ---- REST answers -------------------------------------------------------------------------------

/** GET /members row: the account's email and name join the membership (null if the account is gone). */
export const MemberRow = Type.Object({ userId: Id, email: Nullable(Type.String()), name: Nullable(Type.String()), role: RoleSchema, joinedAt: Instant });
export type MemberRow = Static<typeof MemberRow>;
export const MemberPage = PageOf(MemberRow);
export type MemberPage = Static<typeof MemberPage>;

/** PATCH /members/:userId. */
export const MemberRole = Type.Object({ userId: Id, role: RoleSchema, joinedAt: Instant });
export type MemberRole = Static<typeof MemberRole>;

/** POST /tenant/transfer-ownership: the new owner. */
export const OwnershipTransferred = Type.Object({ userId: Id, role: Type.Literal("owner") });
export type OwnershipTransferred = Static<typeof OwnershipTransferred>;

/** POST /invitations (API.md: `{id, email, role, expiresAt}`; the token goes by email only). */
export const InvitationCreated = Type.Object({ id: Id, email: Type.String(), role: RoleSchema, expiresAt: Instant });
export type InvitationCreated = Static<typeof InvitationCreated>;

/** GET /invitations row (pending ones). */
export const InvitationRow = Type.Composite([InvitationCreated, Type.Object({ createdAt: Instant })]);
export type InvitationRow = Static<typeof InvitationRow>;
export const InvitationPage = PageOf(InvitationRow);
export type InvitationPage = Static<typeof InvitationPage>;

// ---- GDPR export --------------------------------------------------------------------------------

/** The action every data service answers for a tenant export, and the services that have one. */
export const EXPORT_ACTION = "exportTenantData";
/**
 * The services that keep tenant data: an export needs every one of them, so one that is down
 * makes it fail (503) rather than produce an archive that looks complete and is not. A unit test
 * checks this list against the services that implement EXPORT_ACTION.
 */
export const TENANT_DATA_SERVICES = ["analytics", "auth", "billing", "devices", "media", "notifications", "scheduling", "tenants"] as const;
export type TenantDataService = (typeof TENANT_DATA_SERVICES)[number];

/** An invitation in the export: accepted ones too (`acceptedAt` set), never its token hash. */
export const InvitationExport = Type.Composite([InvitationRow, Type.Object({ acceptedAt: Type.Optional(Instant) })]);
export type InvitationExport = Static<typeof InvitationExport>;

/** tenants' part of the export. */
export const TenantExport = Type.Object({
	tenant: Nullable(TenantView),
	memberships: Type.Array(Type.Object({ userId: Id, role: RoleSchema, joinedAt: Instant })),
	invitations: Type.Array(InvitationExport)
});
export type TenantExport = Static<typeof TenantExport>;


// ---- actions and events -------------------------------------------------------------------------

export interface TenantsActions {
	// Between services.
	"tenants.find": { params: { tenantId: string }; result: TenantView | null };
	"tenants.findBySlug": { params: { slug: string }; result: TenantView | null };
	/** Adds a member (402 beyond the plan's members); `added` false when the person already was one. */
	"tenants.addMember": { params: { tenantId: string; userId: string; role: Role }; result: { membership: Membership; added: boolean } };
	"tenants.create": { params: { name: string; ownerUserId: string }; result: TenantView };
	"tenants.membership": { params: { tenantId: string; userId: string }; result: Membership | null };
	/** Oldest membership first (login picks the first). */
	"tenants.membershipsOfUser": { params: { userId: string }; result: Membership[] };
	/** Usage of the tenant's members from its counter. */
	"tenants.quotaUsage": { params: { tenantId: string }; result: number };
	"tenants.exportTenantData": { params: ExportParams; result: TenantExport };
	/** The owner and admins of a tenant (alert recipients), oldest membership first. */
	"tenants.admins": { params: { tenantId: string }; result: Array<{ userId: string; email: string; name: string; role: Role }> };

	// REST (the gateway's).
	"tenants.get": { params: NoParams; result: TenantView };
	"tenants.requireTwoFactor": { params: { required: boolean }; result: TenantView };
	"tenants.update": { params: { name?: string; settings?: Partial<TenantSettings> }; result: TenantView };
	"tenants.transferOwnership": { params: { userId: string }; result: OwnershipTransferred };
	"tenants.exportData": { params: NoParams; result: TenantArchive };
	/** `confirm` is the tenant's exact name; 204. */
	"tenants.remove": { params: { confirm: string }; result: null };
	"tenants.members": { params: PageParams; result: MemberPage };
	"tenants.changeRole": { params: { userId: string; role: Role }; result: MemberRole };
	"tenants.leave": { params: NoParams; result: null };
	"tenants.removeMember": { params: { userId: string }; result: null };
	"tenants.invite": { params: { email: string; role: Role }; result: InvitationCreated };
	"tenants.invitations": { params: PageParams; result: InvitationPage };
	"tenants.revokeInvitation": { params: { id: string }; result: null };
	"tenants.acceptInvitation": { params: { token: string; name?: string; password?: string }; result: SignInAnswer };
}

export interface TenantsEvents {
	/** Broadcast after PATCH /tenant: `changed` names the fields (`name`, `settings.timezone`, ...). */
	"tenants.tenant.updated": { tenantId: string; settings: TenantSettings; changed: string[] };
}
