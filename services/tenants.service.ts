/**
 * Tenants: the organisation, its settings, its members and their roles, invitations, ownership
 * transfer, and the GDPR export and deletion of everything the tenant owns (orchestrated over
 * every service). Accounts, sessions and tokens belong to the auth service.
 *
 * Documents and views live in services/tenants/model.ts, the member rules in access.ts,
 * invitation tokens in invitations.ts, the export's gathering in export.ts, slugs in slug.ts.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, globalCollection, systemScope, tenantCollection, type DbVars } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { EMAIL_CHANNEL, TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	broadcast,
	call,
	sendToChannel,
	DEFAULT_SETTINGS,
	EXPORT_ACTION,
	InvitationCreated,
	InvitationPage,
	MemberPage,
	MemberRole,
	OwnershipTransferred,
	SignInAnswer,
	TenantArchive,
	TenantView,
	type TenantSettings,
	type ActionCtx,
	type Result
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, withLock, type KeyValueStore } from "../shared/kv";
import { planLimit, publishQuotaWarning, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { callerOf, EMAIL_RULE, NAME_RULE, PAGE_PARAMS, ROLE_RULE, TOKEN_RULE, userCallerOf, type RequestMeta } from "../shared/request";
import { takeAttempt, THROTTLES } from "../shared/throttle";
import { assertTimezone } from "../shared/time";
import { assertMayManage } from "./tenants/access";
import { gatherParts, missingServices } from "./tenants/export";
import { invitationExpiry, isAcceptable, newInvitationToken } from "./tenants/invitations";
import { hashToken } from "../shared/secrets";
import {
	changedFields,
	invitationExport,
	invitationRow,
	memberRow,
	mergeSettings,
	tenantView,
	type InvitationDoc,
	type MembershipDoc,
	type TenantDoc
} from "./tenants/model";
import { slugify, withSuffix } from "./tenants/slug";

/** Tries for a free slug; a random 6-character suffix makes a second collision all but impossible. */
const SLUG_ATTEMPTS = 5;

const COLLECTIONS = {
	tenants: globalCollection<TenantDoc>({ uniqueIndexes: ["slug"] }),
	memberships: tenantCollection<MembershipDoc>({ indexes: ["userId"] }),
	invitations: tenantCollection<InvitationDoc>({ uniqueIndexes: ["tokenHash"] }),
	tenants_usage: USAGE_COLLECTION
};

interface TenantsVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	appUrl: string;
	kv: KeyValueStore;
	/** Members per tenant, grown atomically against the plan's limit. */
	memberQuota: UsageCounter;
}

interface TenantsMethods {
	membershipOf(tenantId: string, userId: string): Promise<MembershipDoc | null>;
	owners(tenantId: string): Promise<MembershipDoc[]>;
	endSessions(ctx: Context, userId: string, tenantId: string): Promise<void>;
	insertWithUniqueSlug(name: string): Promise<TenantDoc>;
	/** Renames the tenant and merges settings changes; answers the tenant and the fields that changed (`name`, `settings.<key>`). */
	saveTenant(tenantId: string, name: string | undefined, settings: Partial<TenantSettings>): Promise<{ tenant: TenantView; changed: string[] }>;
	exportServices(): string[];
}

const SETTINGS_RULE = {
	type: "object",
	optional: true,
	strict: "remove",
	props: {
		timezone: { type: "string", optional: true, max: 64 },
		offlineAlertMinutes: { type: "number", integer: true, min: 1, max: 1440, optional: true },
		offlineAfterSec: { type: "number", integer: true, min: 30, max: 3600, optional: true },
		contentApproval: { type: "boolean", optional: true }
	}
} as const;

const TenantsService: ServiceSchema<ServiceSettingSchema, TenantsMethods, TenantsVars> = {
	name: "tenants",
	settings: { rest: "/" },
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- internal (other services) ------------------------------------------------------

		/** A new tenant with its owner (registration). */
		create: {
			visibility: "public",
			params: { name: NAME_RULE, ownerUserId: "string" },
			async handler(ctx: ActionCtx<"tenants.create">): Promise<Result<"tenants.create">> {
				const tenant = await this.insertWithUniqueSlug(ctx.params.name);
				await this.db.memberships.insertDoc(systemScope(tenant.id), { userId: ctx.params.ownerUserId, role: "owner", joinedAt: tenant.createdAt });
				return tenantView(tenant);
			}
		},

		/** A tenant by its slug (single sign-on starts from `/auth/sso/:tenantSlug`), or null. */
		findBySlug: {
			visibility: "public",
			params: { slug: { type: "string", max: 200 } },
			async handler(ctx: ActionCtx<"tenants.findBySlug">): Promise<Result<"tenants.findBySlug">> {
				const tenant = await this.db.tenants.findDoc({ slug: ctx.params.slug });
				return tenant ? tenantView(tenant) : null;
			}
		},

		/**
		 * Adds a member (single sign-on's just-in-time membership; auth vouched for the person): the
		 * existing membership when there is one, else a new one within the plan's member limit (402).
		 */
		addMember: {
			visibility: "public",
			params: { tenantId: "string", userId: "string", role: ROLE_RULE },
			async handler(ctx: ActionCtx<"tenants.addMember">): Promise<Result<"tenants.addMember">> {
				const { tenantId, userId, role } = ctx.params;
				const existing = await this.membershipOf(tenantId, userId);
				if (existing) return { membership: existing, added: false };
				await this.memberQuota.reserve(tenantId, 1, await planLimit(ctx, tenantId, "members", this.config.defaultPlan));
				// The same person twice at once: one membership (the lock), the other's seat given back.
				const membership = await withLock(this.kv, `membership:${tenantId}:${userId}`, async () => {
					const again = await this.membershipOf(tenantId, userId);
					if (again) return null;
					return this.db.memberships.insertDoc(systemScope(tenantId), { userId, role, joinedAt: new Date().toISOString() });
				}).catch(async (err: unknown) => {
					await this.memberQuota.release(tenantId, 1);
					throw err;
				});
				if (!membership) {
					await this.memberQuota.release(tenantId, 1);
					return { membership: (await this.membershipOf(tenantId, userId)) as MembershipDoc, added: false };
				}
				return { membership, added: true };
			}
		},

		/** A tenant by id (the caller already proved membership). */
		find: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"tenants.find">): Promise<Result<"tenants.find">> {
				const tenant = await this.db.tenants.findDoc({ _id: ctx.params.tenantId });
				return tenant ? tenantView(tenant) : null;
			}
		},

		/** One membership, or null. */
		membership: {
			visibility: "public",
			params: { tenantId: "string", userId: "string" },
			handler(ctx: ActionCtx<"tenants.membership">): Promise<Result<"tenants.membership">> {
				return this.membershipOf(ctx.params.tenantId, ctx.params.userId);
			}
		},

		/** The tenants a user belongs to, oldest membership first (sign-in falls back to the first). */
		membershipsOfUser: {
			visibility: "public",
			params: { userId: "string" },
			handler(ctx: ActionCtx<"tenants.membershipsOfUser">): Promise<Result<"tenants.membershipsOfUser">> {
				// About one user, so across tenants.
				return this.db.memberships.findDocs(ALL_TENANTS, { userId: ctx.params.userId }, { sort: ["joinedAt", "_id"] });
			}
		},

		/** Who is told about the tenant's alerts: its owner and admins, with their email and name. */
		admins: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"tenants.admins">): Promise<Result<"tenants.admins">> {
				const scope = systemScope(ctx.params.tenantId);
				const memberships = await this.db.memberships.findDocs(scope, { role: { $in: ["owner", "admin"] } }, { sort: ["joinedAt", "_id"] });
				const users = await call(ctx, "auth.usersByIds", { ids: memberships.map(m => m.userId) });
				const byId = new Map(users.map(u => [u.id, u]));
				return memberships.flatMap(m => {
					const user = byId.get(m.userId);
					return user ? [{ userId: m.userId, email: user.email, name: user.name, role: m.role }] : [];
				});
			}
		},

		/** The tenant's members as its usage counter holds them (billing's usage view): no scan. */
		quotaUsage: {
			visibility: "public",
			params: { tenantId: "string" },
			handler(ctx: ActionCtx<"tenants.quotaUsage">): Promise<Result<"tenants.quotaUsage">> {
				return this.memberQuota.usage(ctx.params.tenantId);
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"tenants.exportTenantData">): Promise<Result<"tenants.exportTenantData">> {
				const scope = systemScope(ctx.params.tenantId);
				const [tenant, memberships, invitations] = await Promise.all([
					this.db.tenants.findDoc({ _id: ctx.params.tenantId }),
					this.db.memberships.findDocs(scope),
					this.db.invitations.findDocs(scope)
				]);
				return {
					tenant: tenant ? tenantView(tenant) : null,
					memberships: memberships.map(({ userId, role, joinedAt }) => ({ userId, role, joinedAt })),
					invitations: invitations.map(invitationExport)
				};
			}
		},

		// ---- tenant ----------------------------------------------------------------------------

		get: {
			rest: "GET /tenant",
			permission: "tenant.read",
			summary: "The caller's tenant with its settings",
			response: TenantView,
			async handler(ctx: ActionCtx<"tenants.get", RequestMeta>): Promise<Result<"tenants.get">> {
				const { tenantId } = callerOf(ctx.meta);
				return tenantView(await this.db.tenants.getDoc(tenantId, "Tenant"));
			}
		},

		update: {
			rest: "PATCH /tenant",
			permission: "tenant.settings",
			summary: "Rename the tenant or change its settings",
			params: { $$strict: "remove", name: { ...NAME_RULE, optional: true }, settings: SETTINGS_RULE },
			response: TenantView,
			async handler(ctx: ActionCtx<"tenants.update", RequestMeta>): Promise<Result<"tenants.update">> {
				const { tenantId } = callerOf(ctx.meta);
				const changes = ctx.params.settings ?? {};
				assertTimezone(changes.timezone, "settings.timezone");
				const { tenant, changed } = await this.saveTenant(tenantId, ctx.params.name, changes);
				await audit(ctx, { action: "tenant.updated", target: tenantId, data: { fields: changed } });
				// Not awaited, as before: listeners (devices, scheduling) react on their own time.
				void broadcast(ctx, "tenants.tenant.updated", { tenantId, settings: tenant.settings, changed });
				return tenant;
			}
		},

		requireTwoFactor: {
			rest: "PUT /tenant/two-factor",
			permission: "tenant.owner",
			summary: "Require two-factor sign-in of every member (the owner must have it on first); API keys are unaffected",
			params: { $$strict: "remove", required: "boolean" },
			response: TenantView,
			async handler(ctx: ActionCtx<"tenants.requireTwoFactor", RequestMeta>): Promise<Result<"tenants.requireTwoFactor">> {
				const caller = userCallerOf(ctx.meta);
				const { required } = ctx.params;
				// Else the owner would be asked to enrol at their own next sign-in: turn it on first.
				if (required && !(await call(ctx, "auth.twoFactorEnabled", { userId: caller.userId }))) {
					throw Errors.conflict("Turn on two-factor authentication for your own account first (POST /auth/2fa/enrol)");
				}
				const { tenant, changed } = await this.saveTenant(caller.tenantId, undefined, { requireTwoFactor: required });
				if (changed.length) {
					await audit(ctx, { action: "tenant.twoFactor.required", target: caller.tenantId, data: { required } });
					void broadcast(ctx, "tenants.tenant.updated", { tenantId: caller.tenantId, settings: tenant.settings, changed });
				}
				return tenant;
			}
		},

		transferOwnership: {
			rest: "POST /tenant/transfer-ownership",
			permission: "tenant.owner",
			summary: "Make another member the owner; the caller becomes an admin",
			params: { $$strict: "remove", userId: "string" },
			response: OwnershipTransferred,
			async handler(ctx: ActionCtx<"tenants.transferOwnership", RequestMeta>): Promise<Result<"tenants.transferOwnership">> {
				const caller = userCallerOf(ctx.meta);
				if (ctx.params.userId === caller.userId) throw Errors.conflict("You already own this tenant");
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				const self = await this.membershipOf(caller.tenantId, caller.userId);
				await this.db.memberships.updateDoc(ctx, target.id, { role: "owner" });
				if (self) await this.db.memberships.updateDoc(ctx, self.id, { role: "admin" });
				await this.endSessions(ctx, target.userId, caller.tenantId);
				await this.endSessions(ctx, caller.userId, caller.tenantId);
				await audit(ctx, { action: "tenant.ownership.transferred", target: ctx.params.userId });
				return { userId: ctx.params.userId, role: "owner" };
			}
		},

		exportData: {
			rest: "GET /tenant/export",
			permission: "tenant.owner",
			summary: "Everything the tenant owns, gathered from every service, as one JSON archive",
			response: TenantArchive,
			async handler(ctx: ActionCtx<"tenants.exportData", RequestMeta>): Promise<Result<"tenants.exportData">> {
				const { tenantId } = callerOf(ctx.meta);
				const missing = missingServices(this.exportServices());
				if (missing.length) throw Errors.unavailable(`The export needs ${missing.join(", ")}, which ${missing.length === 1 ? "is" : "are"} not running; retry later`, { services: missing });
				const services = await gatherParts(service => call(ctx, `${service}.${EXPORT_ACTION}`, { tenantId }));
				await audit(ctx, { action: "tenant.exported", target: tenantId });
				ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="marquee-export-${tenantId}.json"` };
				return { exportedAt: new Date().toISOString(), tenantId, services };
			}
		},

		remove: {
			rest: "DELETE /tenant",
			permission: "tenant.owner",
			summary: "Delete the tenant and everything it owns; `confirm` must be the tenant's name",
			params: { $$strict: "remove", confirm: { type: "string", max: 200 } },
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"tenants.remove", RequestMeta>): Promise<Result<"tenants.remove">> {
				const { tenantId } = callerOf(ctx.meta);
				const tenant = await this.db.tenants.getDoc(tenantId, "Tenant");
				if (ctx.params.confirm !== tenant.name) {
					throw Errors.validation([{ field: "confirm", message: "must be the tenant's exact name", type: "confirm" }]);
				}
				const members = await this.db.memberships.findDocs(ctx);
				const soleMemberUserIds: string[] = [];
				for (const m of members) {
					const all = await this.db.memberships.findDocs(ALL_TENANTS, { userId: m.userId });
					if (all.every(x => x.tenantId === tenantId)) soleMemberUserIds.push(m.userId);
				}
				// Audit first: afterwards there is no tenant to attribute it to.
				await audit(ctx, { action: "tenant.deleted", target: tenantId, data: { members: members.length } });
				// Credentials stop working now and for good; the rest of the data goes over the channel.
				await call(ctx, "auth.revokeTenant", { tenantId });
				const scope = systemScope(tenantId);
				await Promise.all([this.db.memberships.removeDocs(scope, {}), this.db.invitations.removeDocs(scope, {}), this.db.tenants_usage.removeDocs(scope, {})]);
				await this.db.tenants.removeDocs({ _id: tenantId });
				await sendToChannel(ctx.broker, TENANT_DELETED_CHANNEL, { tenantId, soleMemberUserIds });
				return null;
			}
		},

		// ---- members ---------------------------------------------------------------------------

		members: {
			rest: "GET /members",
			permission: "tenant.read",
			summary: "Members of the tenant with their roles",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			response: MemberPage,
			async handler(ctx: ActionCtx<"tenants.members", RequestMeta>): Promise<Result<"tenants.members">> {
				const page = await this.db.memberships.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize, ["joinedAt", "_id"]);
				const users = await call(ctx, "auth.usersByIds", { ids: page.rows.map(m => m.userId) });
				const byId = new Map(users.map(u => [u.id, u]));
				return { ...page, rows: page.rows.map(m => memberRow(m, byId.get(m.userId))) };
			}
		},

		changeRole: {
			rest: "PATCH /members/:userId",
			permission: "members.manage",
			summary: "Change a member's role (only the owner grants or removes admin)",
			params: { $$strict: "remove", userId: "string", role: ROLE_RULE },
			response: MemberRole,
			async handler(ctx: ActionCtx<"tenants.changeRole", RequestMeta>): Promise<Result<"tenants.changeRole">> {
				const caller = callerOf(ctx.meta);
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				assertMayManage(caller.role, target.role, ctx.params.role);
				if (target.role === "owner" && ctx.params.role !== "owner" && (await this.owners(caller.tenantId)).length === 1) {
					throw Errors.conflict("The last owner cannot be demoted; transfer ownership first");
				}
				if (target.role !== ctx.params.role) {
					await this.db.memberships.updateDoc(ctx, target.id, { role: ctx.params.role });
					// Tokens carry the role: end the member's sessions so the new role applies now.
					await this.endSessions(ctx, target.userId, caller.tenantId);
					await audit(ctx, { action: "member.role.changed", target: target.userId, data: { from: target.role, to: ctx.params.role } });
				}
				return { userId: target.userId, role: ctx.params.role, joinedAt: target.joinedAt };
			}
		},

		leave: {
			rest: "DELETE /members/me",
			permission: "self",
			summary: "Leave the tenant (not as its last owner)",
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"tenants.leave", RequestMeta>): Promise<Result<"tenants.leave">> {
				const caller = userCallerOf(ctx.meta);
				const self = await this.membershipOf(caller.tenantId, caller.userId);
				if (!self) throw Errors.notFound("Member");
				if (self.role === "owner" && (await this.owners(caller.tenantId)).length === 1) {
					throw Errors.conflict("The last owner cannot leave; transfer ownership or delete the tenant");
				}
				await this.db.memberships.removeDoc(ctx, self.id);
				await this.memberQuota.release(caller.tenantId, 1);
				await this.endSessions(ctx, self.userId, caller.tenantId);
				await audit(ctx, { action: "member.left", target: self.userId });
				return null;
			}
		},

		removeMember: {
			rest: "DELETE /members/:userId",
			permission: "members.manage",
			summary: "Remove a member; their sessions end",
			params: { $$strict: "remove", userId: "string" },
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"tenants.removeMember", RequestMeta>): Promise<Result<"tenants.removeMember">> {
				const caller = callerOf(ctx.meta);
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				assertMayManage(caller.role, target.role);
				if (target.role === "owner" && (await this.owners(caller.tenantId)).length === 1) {
					throw Errors.conflict("The last owner cannot be removed");
				}
				await this.db.memberships.removeDoc(ctx, target.id);
				await this.memberQuota.release(caller.tenantId, 1);
				await this.endSessions(ctx, target.userId, caller.tenantId);
				await audit(ctx, { action: "member.removed", target: target.userId, data: { role: target.role } });
				return null;
			}
		},

		// ---- invitations -----------------------------------------------------------------------

		invite: {
			rest: "POST /invitations",
			permission: "members.manage",
			summary: "Invite someone by email; the email carries a single-use token",
			params: { $$strict: "remove", email: EMAIL_RULE, role: ROLE_RULE },
			successStatus: 201,
			response: InvitationCreated,
			extraResponses: { 409: { description: "The address is a member already (CONFLICT)." } },
			async handler(ctx: ActionCtx<"tenants.invite", RequestMeta>): Promise<Result<"tenants.invite">> {
				const caller = callerOf(ctx.meta);
				const email = ctx.params.email.toLowerCase();
				const role = ctx.params.role;
				assertMayManage(caller.role, "viewer", role);
				if (role === "owner") throw Errors.validation([{ field: "role", message: "owners are made by transferring ownership", type: "role" }]);
				const existing = await call(ctx, "auth.userIdByEmail", { email });
				if (existing && (await this.membershipOf(caller.tenantId, existing))) throw Errors.conflict("Already a member");
				const token = newInvitationToken();
				const expiresAt = invitationExpiry();
				// One invitation at a time per tenant: the seat check below and the replacement of an
				// address's pending invitation hold only if no other invitation slips in between.
				const invitation = await withLock(this.kv, `lock:invitations:${caller.tenantId}`, async () => {
					// Pending invitations hold seats too (another address's, not this one's, which it
					// replaces); acceptance reserves the seat for good, atomically.
					const limit = await planLimit(ctx, caller.tenantId, "members", this.config.defaultPlan);
					const [members, pending] = await Promise.all([
						this.memberQuota.usage(caller.tenantId),
						this.db.invitations.countDocs(ctx, { email: { $ne: email }, acceptedAt: { $exists: false }, expiresAt: { $gt: new Date().toISOString() } })
					]);
					if (members + pending + 1 > limit) {
						throw Errors.quotaExceeded(`Your plan allows ${limit} members, pending invitations included`, { resource: "members", limit, current: members + pending });
					}
					await takeAttempt(this.kv, THROTTLES.invitation(caller.tenantId, email));
					// A fresh invitation replaces a pending one for the same address.
					await this.db.invitations.removeDocs(ctx, { email, acceptedAt: { $exists: false } });
					return this.db.invitations.insertDoc(ctx, { email, role, tokenHash: hashToken(token), expiresAt, invitedBy: caller.userId });
				});
				const tenant = tenantView(await this.db.tenants.getDoc(caller.tenantId, "Tenant"));
				const inviter = caller.userId ? (await call(ctx, "auth.usersByIds", { ids: [caller.userId] }))[0] : undefined;
				// Through the durable outbox: a mail server that does not take it yet shows in the email log.
				await sendToChannel(ctx.broker, EMAIL_CHANNEL, {
					id: newId(),
					tenantId: caller.tenantId,
					to: email,
					template: "invitation",
					data: {
						inviterName: inviter?.name ?? tenant.name,
						tenantName: tenant.name,
						role,
						url: `${this.appUrl}/accept-invitation?token=${encodeURIComponent(token)}`,
						expiresAt
					}
				});
				await audit(ctx, { action: "invitation.created", target: invitation.id, data: { email, role } });
				ctx.meta.$location = `/api/v1/invitations/${invitation.id}`;
				return { id: invitation.id, email, role, expiresAt };
			}
		},

		invitations: {
			rest: "GET /invitations",
			permission: "members.manage",
			summary: "Pending invitations",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			response: InvitationPage,
			async handler(ctx: ActionCtx<"tenants.invitations", RequestMeta>): Promise<Result<"tenants.invitations">> {
				const page = await this.db.invitations.pageDocs(ctx, { acceptedAt: { $exists: false } }, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(invitationRow) };
			}
		},

		revokeInvitation: {
			rest: "DELETE /invitations/:id",
			permission: "members.manage",
			summary: "Revoke a pending invitation",
			params: { $$strict: "remove", id: ID_RULE },
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"tenants.revokeInvitation", RequestMeta>): Promise<Result<"tenants.revokeInvitation">> {
				const invitation = await this.db.invitations.getDoc(ctx, ctx.params.id, "Invitation");
				if (invitation.acceptedAt) throw Errors.notFound("Invitation", ctx.params.id);
				await this.db.invitations.removeDoc(ctx, ctx.params.id, "Invitation");
				await audit(ctx, { action: "invitation.revoked", target: ctx.params.id });
				return null;
			}
		},

		acceptInvitation: {
			rest: "POST /invitations/accept",
			permission: "public",
			summary: "Accept an invitation: creates the account or adds the membership; answers like login (the session, or the second-factor step)",
			params: { $$strict: "remove", token: TOKEN_RULE, name: { ...NAME_RULE, optional: true }, password: { type: "string", max: 1024, optional: true } },
			response: SignInAnswer,
			async handler(ctx: ActionCtx<"tenants.acceptInvitation", RequestMeta>): Promise<Result<"tenants.acceptInvitation">> {
				const invalid = () => Errors.badRequest("Invalid or expired invitation");
				// The caller has no tenant yet: the token (unique) names the invitation, in whichever tenant.
				const invitation = await this.db.invitations.findDoc(ALL_TENANTS, { tokenHash: hashToken(ctx.params.token) });
				if (!invitation || !isAcceptable(invitation)) throw invalid();
				const tenantId = invitation.tenantId;
				const scope = systemScope(tenantId);

				// Claim it first, so one token yields one membership even under concurrent use.
				const claimed = await this.db.invitations.updateWhere(scope, { _id: invitation.id, acceptedAt: { $exists: false } }, { acceptedAt: new Date().toISOString() });
				if (claimed !== 1) throw invalid();
				let seat = false;
				let user: Result<"auth.userForInvitation">;
				try {
					// The seat before the account: a full organisation creates no orphan account.
					await this.memberQuota.reserve(tenantId, 1, await planLimit(ctx, tenantId, "members", this.config.defaultPlan));
					seat = true;
					user = await call(ctx, "auth.userForInvitation", { email: invitation.email, name: ctx.params.name, password: ctx.params.password });
					if (await this.membershipOf(tenantId, user.userId)) {
						await this.memberQuota.release(tenantId, 1);
					} else {
						await this.db.memberships.insertDoc(scope, { userId: user.userId, role: invitation.role, joinedAt: new Date().toISOString() });
					}
				} catch (err) {
					// Full, wrong password or weak new one: the invitation stays usable.
					if (seat) await this.memberQuota.release(tenantId, 1);
					await this.db.invitations.updateWhere(scope, { _id: invitation.id }, { acceptedAt: undefined });
					throw err;
				}
				await audit(ctx, { action: "invitation.accepted", tenantId, actor: { kind: "user", id: user.userId }, target: invitation.id, data: { created: user.created } });
				return call(ctx, "auth.issueSession", { userId: user.userId, tenantId });
			}
		}
	},

	methods: {
		membershipOf(tenantId: string, userId: string): Promise<MembershipDoc | null> {
			return this.db.memberships.findDoc(systemScope(tenantId), { userId });
		},

		owners(tenantId: string): Promise<MembershipDoc[]> {
			return this.db.memberships.findDocs(systemScope(tenantId), { role: "owner" });
		},

		async endSessions(ctx: Context, userId: string, tenantId: string): Promise<void> {
			await call(ctx, "auth.endSessions", { userId, tenantId });
		},

		async saveTenant(tenantId: string, name: string | undefined, changes: Partial<TenantSettings>): Promise<{ tenant: TenantView; changed: string[] }> {
			const current = tenantView(await this.db.tenants.getDoc(tenantId, "Tenant"));
			const settings = mergeSettings(current.settings, changes);
			const updated = await this.db.tenants.updateDoc(tenantId, { name: name ?? current.name, settings }, "Tenant");
			return { tenant: tenantView(updated), changed: changedFields(current, name, settings) };
		},

		/**
		 * Names collide all the time (two "Acme"s, "ACME" and "A.C.M.E", two sign-ups at once): the
		 * unique index on `slug` decides, and a taken slug gets a random suffix on the next try.
		 */
		async insertWithUniqueSlug(name: string): Promise<TenantDoc> {
			const base = slugify(name);
			for (let attempt = 0; attempt < SLUG_ATTEMPTS; attempt++) {
				const slug = attempt === 0 ? base : withSuffix(base);
				if (attempt === 0 && (await this.db.tenants.findDoc({ slug }))) continue;
				try {
					return await this.db.tenants.insertDoc({ name, slug, plan: "free", settings: { ...DEFAULT_SETTINGS } });
				} catch (err) {
					if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
				}
			}
			throw Errors.unavailable("Could not choose an address for the organisation, retry");
		},

		/** The services that answer the export action now, this one included. */
		exportServices(): string[] {
			const list = this.broker.registry.getActionList({ skipInternal: true, onlyAvailable: true });
			return list.map(a => a.name).filter(name => name.endsWith(`.${EXPORT_ACTION}`)).map(name => name.split(".")[0]);
		}
	},

	created() {
		this.config = getConfig();
		this.appUrl = this.config.appUrl;
		this.kv = sharedKeyValueStore(this.config);
		this.memberQuota = new UsageCounter(this.db.tenants_usage, {
			resource: "members",
			measure: tenantId => this.db.memberships.countDocs(systemScope(tenantId)),
			onWarning: publishQuotaWarning(this.broker, this.logger)
		});
	}
};

export default TenantsService;
