/**
 * Tenants: the organisation, its settings, its members and their roles, invitations, ownership
 * transfer, and the GDPR export and deletion of everything the tenant owns (orchestrated over
 * every service). Accounts, sessions and tokens belong to the auth service.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, UNSCOPED, type DbMethods, type PublicDoc } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import { Errors } from "../shared/errors";
import { ID_RULE } from "../shared/ids";
import { sharedKeyValueStore, withLock, type KeyValueStore } from "../shared/kv";
import { planLimit, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { roleAtLeast, type Role } from "../shared/rbac";
import { takeAttempt, THROTTLES } from "../shared/throttle";
import { EMAIL_RULE, NAME_RULE, PAGE_PARAMS, ROLE_RULE, TOKEN_RULE, type RequestMeta } from "../shared/request";
import { assertTimezone } from "../shared/time";
import { slugify, withSuffix } from "./tenants/slug";
import { hashToken, randomToken } from "./auth/secrets";

export { TENANT_DELETED_CHANNEL };

/** Every service that keeps tenant data implements this action (found by name). */
export const EXPORT_ACTION = "exportTenantData";

/**
 * The services that keep tenant data: an export needs every one of them, so one that is down
 * makes it fail (503) rather than produce an archive that looks complete and is not. A unit test
 * checks this list against the services that implement EXPORT_ACTION.
 */
export const TENANT_DATA_SERVICES = ["auth", "devices", "media", "scheduling", "tenants"] as const;

const INVITATION_TTL_MS = 7 * 24 * 3600_000;
/** Tries for a free slug; a random 6-character suffix makes a second collision all but impossible. */
const SLUG_ATTEMPTS = 5;

export interface TenantSettings {
	timezone: string;
	offlineAlertMinutes: number;
	offlineAfterSec: number;
}

export const DEFAULT_SETTINGS: TenantSettings = { timezone: "UTC", offlineAlertMinutes: 10, offlineAfterSec: 90 };

/** The message every service handles on the durable deletion channel. */
export interface TenantDeleted {
	tenantId: string;
	/** Members who belonged to no other tenant: their accounts go too. */
	soleMemberUserIds: string[];
}

export interface TenantView {
	id: string;
	name: string;
	slug: string;
	plan: string;
	createdAt: string;
	settings: TenantSettings;
}

/** API.md's `tenant` in auth answers: `{id, name, slug, plan, createdAt}` (settings are GET /tenant's). */
export function tenantSummary({ id, name, slug, plan, createdAt }: TenantView) {
	return { id, name, slug, plan, createdAt };
}

interface Membership {
	id: string;
	tenantId: string;
	userId: string;
	role: Role;
	joinedAt: string;
}

interface UserSummary {
	id: string;
	email: string;
	name: string;
}

type Collections = "tenants" | "memberships" | "invitations" | "tenants_usage";
type Meta = RequestMeta;
type TenantsThis = DbMethods<Collections> & {
	appUrl: string;
	config: Config;
	kv: KeyValueStore;
	/** Members per tenant, grown atomically against the plan's limit. */
	memberQuota: UsageCounter;
	broker: Context["broker"];
	logger: { warn(...args: unknown[]): void; info(...args: unknown[]): void };
	tenantView(doc: PublicDoc): TenantView;
	membershipOf(tenantId: string, userId: string): Promise<Membership | null>;
	owners(tenantId: string): Promise<Membership[]>;
	requireCaller(ctx: Context<unknown, Meta>): { tenantId: string; userId: string | null; role: Role };
	assertMayManage(actorRole: Role, targetRole: Role, newRole?: Role): void;
	endSessions(ctx: Context, userId: string, tenantId: string): Promise<void>;
	insertWithUniqueSlug(ctx: Context, name: string): Promise<PublicDoc>;
	serviceActions(suffix: string): string[];
};


const SETTINGS_RULE = {
	type: "object",
	optional: true,
	strict: "remove",
	props: {
		timezone: { type: "string", optional: true, max: 64 },
		offlineAlertMinutes: { type: "number", integer: true, min: 1, max: 1440, optional: true },
		offlineAfterSec: { type: "number", integer: true, min: 30, max: 3600, optional: true }
	}
} as const;

const TenantsService: ServiceSchema<ServiceSettingSchema, TenantsThis> = {
	name: "tenants",
	settings: { rest: "/" },
	mixins: [
		DbMixin({
			tenants: { tenantScoped: false, uniqueIndexes: ["slug"] },
			memberships: { indexes: ["userId"] },
			invitations: { uniqueIndexes: ["tokenHash"] },
			tenants_usage: USAGE_COLLECTION
		})
	],

	actions: {
		// ---- internal (other services) ------------------------------------------------------

		/** A new tenant with its owner (registration). */
		create: {
			visibility: "public",
			params: { name: NAME_RULE, ownerUserId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ name: string; ownerUserId: string }>) {
				const tenant = await this.insertWithUniqueSlug(ctx, ctx.params.name);
				await this.db.memberships.insertDoc({ tenantId: tenant.id }, { userId: ctx.params.ownerUserId, role: "owner", joinedAt: tenant.createdAt });
				return this.tenantView(tenant);
			}
		},

		/** A tenant by id (the caller already proved membership). */
		find: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ tenantId: string }>) {
				const tenant = await this.db.tenants.findDoc(ctx, { _id: ctx.params.tenantId });
				return tenant ? this.tenantView(tenant) : null;
			}
		},

		/** One membership, or null. */
		membership: {
			visibility: "public",
			params: { tenantId: "string", userId: "string" },
			handler(this: TenantsThis, ctx: Context<{ tenantId: string; userId: string }>) {
				return this.membershipOf(ctx.params.tenantId, ctx.params.userId);
			}
		},

		/** The tenants a user belongs to, oldest membership first (login picks the first). */
		membershipsOfUser: {
			visibility: "public",
			params: { userId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ userId: string }>) {
				return this.db.memberships.findAcrossTenants({ userId: ctx.params.userId }, { sort: ["joinedAt", "_id"] });
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ tenantId: string }>) {
				const scope = { tenantId: ctx.params.tenantId };
				const [tenant, memberships, invitations] = await Promise.all([
					this.db.tenants.findDoc(ctx, { _id: ctx.params.tenantId }),
					this.db.memberships.findDocs(scope),
					this.db.invitations.findDocs(scope)
				]);
				return {
					tenant: tenant ? this.tenantView(tenant) : null,
					memberships: memberships.map(({ userId, role, joinedAt }) => ({ userId, role, joinedAt })),
					invitations: invitations.map(({ id, email, role, expiresAt, acceptedAt, createdAt }) => ({ id, email, role, expiresAt, acceptedAt, createdAt }))
				};
			}
		},

		// ---- tenant ----------------------------------------------------------------------------

		get: {
			rest: "GET /tenant",
			permission: "tenant.read",
			summary: "The caller's tenant with its settings",
			async handler(this: TenantsThis, ctx: Context<unknown, Meta>) {
				const { tenantId } = this.requireCaller(ctx);
				return this.tenantView(await this.db.tenants.getDoc(ctx, tenantId, "Tenant"));
			}
		},

		update: {
			rest: "PATCH /tenant",
			permission: "tenant.settings",
			summary: "Rename the tenant or change its settings",
			params: { $$strict: "remove", name: { ...NAME_RULE, optional: true }, settings: SETTINGS_RULE },
			async handler(this: TenantsThis, ctx: Context<{ name?: string; settings?: Partial<TenantSettings> }, Meta>) {
				const { tenantId } = this.requireCaller(ctx);
				const current = this.tenantView(await this.db.tenants.getDoc(ctx, tenantId, "Tenant"));
				const changes = ctx.params.settings ?? {};
				assertTimezone(changes.timezone, "settings.timezone");
				const settings = { ...current.settings, ...Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)) };
				const updated = await this.db.tenants.updateDoc(ctx, tenantId, { name: ctx.params.name ?? current.name, settings }, "Tenant");
				const changed = [
					...(ctx.params.name !== undefined && ctx.params.name !== current.name ? ["name"] : []),
					...Object.keys(settings)
						.filter(k => settings[k as keyof TenantSettings] !== current.settings[k as keyof TenantSettings])
						.map(k => `settings.${k}`)
				];
				await audit(ctx, { action: "tenant.updated", target: tenantId, data: { fields: changed } });
				ctx.broadcast("tenants.tenant.updated", { tenantId, settings, changed });
				return this.tenantView(updated);
			}
		},

		transferOwnership: {
			rest: "POST /tenant/transfer-ownership",
			permission: "tenant.owner",
			summary: "Make another member the owner; the caller becomes an admin",
			params: { $$strict: "remove", userId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ userId: string }, Meta>) {
				const caller = this.requireCaller(ctx);
				if (ctx.params.userId === caller.userId) throw Errors.conflict("You already own this tenant");
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				const self = await this.membershipOf(caller.tenantId, caller.userId as string);
				await this.db.memberships.updateDoc(ctx, target.id, { role: "owner" });
				if (self) await this.db.memberships.updateDoc(ctx, self.id, { role: "admin" });
				await this.endSessions(ctx, target.userId, caller.tenantId);
				await this.endSessions(ctx, caller.userId as string, caller.tenantId);
				await audit(ctx, { action: "tenant.ownership.transferred", target: ctx.params.userId });
				return { userId: ctx.params.userId, role: "owner" };
			}
		},

		exportData: {
			rest: "GET /tenant/export",
			permission: "tenant.owner",
			summary: "Everything the tenant owns, gathered from every service, as one JSON archive",
			async handler(this: TenantsThis, ctx: Context<unknown, Meta>) {
				const { tenantId } = this.requireCaller(ctx);
				const available = new Set(this.serviceActions(EXPORT_ACTION).map(action => action.split(".")[0]));
				const missing = TENANT_DATA_SERVICES.filter(service => !available.has(service));
				if (missing.length) throw Errors.unavailable(`The export needs ${missing.join(", ")}, which ${missing.length === 1 ? "is" : "are"} not running; retry later`, { services: missing });
				const parts: Record<string, unknown> = {};
				for (const service of TENANT_DATA_SERVICES) parts[service] = await ctx.call(`${service}.${EXPORT_ACTION}`, { tenantId });
				await audit(ctx, { action: "tenant.exported", target: tenantId });
				ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="marquee-export-${tenantId}.json"` };
				return { exportedAt: new Date().toISOString(), tenantId, services: parts };
			}
		},

		remove: {
			rest: "DELETE /tenant",
			permission: "tenant.owner",
			summary: "Delete the tenant and everything it owns; `confirm` must be the tenant's name",
			params: { $$strict: "remove", confirm: { type: "string", max: 200 } },
			async handler(this: TenantsThis, ctx: Context<{ confirm: string }, Meta>) {
				const { tenantId } = this.requireCaller(ctx);
				const tenant = await this.db.tenants.getDoc(ctx, tenantId, "Tenant");
				if (ctx.params.confirm !== tenant.name) {
					throw Errors.validation([{ field: "confirm", message: "must be the tenant's exact name", type: "confirm" }]);
				}
				const members = await this.db.memberships.findDocs({ tenantId });
				const soleMemberUserIds: string[] = [];
				for (const m of members) {
					const all = await this.db.memberships.findAcrossTenants({ userId: m.userId });
					if (all.every(x => x.tenantId === tenantId)) soleMemberUserIds.push(String(m.userId));
				}
				// Audit first: afterwards there is no tenant to attribute it to.
				await audit(ctx, { action: "tenant.deleted", target: tenantId, data: { members: members.length } });
				// Credentials stop working now and for good; the rest of the data goes over the channel.
				await ctx.call("auth.revokeTenant", { tenantId });
				await Promise.all([
					this.db.memberships.removeTenantDocs(tenantId),
					this.db.invitations.removeTenantDocs(tenantId),
					this.db.tenants_usage.removeTenantDocs(tenantId)
				]);
				await this.db.tenants.removeDocs(ctx, { _id: tenantId });
				const message: TenantDeleted = { tenantId, soleMemberUserIds };
				await (ctx.broker as unknown as { sendToChannel(c: string, p: unknown): Promise<void> }).sendToChannel(TENANT_DELETED_CHANNEL, message);
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- members ---------------------------------------------------------------------------

		members: {
			rest: "GET /members",
			permission: "tenant.read",
			summary: "Members of the tenant with their roles",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(this: TenantsThis, ctx: Context<{ page: number; pageSize: number }, Meta>) {
				const page = await this.db.memberships.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize, ["joinedAt", "_id"]);
				const users = (await ctx.call("auth.usersByIds", { ids: page.rows.map(m => m.userId) })) as UserSummary[];
				const byId = new Map(users.map(u => [u.id, u]));
				return {
					...page,
					rows: page.rows.map(m => {
						const user = byId.get(String(m.userId));
						return { userId: m.userId, email: user?.email ?? null, name: user?.name ?? null, role: m.role, joinedAt: m.joinedAt };
					})
				};
			}
		},

		changeRole: {
			rest: "PATCH /members/:userId",
			permission: "members.manage",
			summary: "Change a member's role (only the owner grants or removes admin)",
			params: { $$strict: "remove", userId: "string", role: ROLE_RULE },
			async handler(this: TenantsThis, ctx: Context<{ userId: string; role: Role }, Meta>) {
				const caller = this.requireCaller(ctx);
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				this.assertMayManage(caller.role, target.role, ctx.params.role);
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
			async handler(this: TenantsThis, ctx: Context<unknown, Meta>) {
				const caller = this.requireCaller(ctx);
				const self = await this.membershipOf(caller.tenantId, caller.userId as string);
				if (!self) throw Errors.notFound("Member");
				if (self.role === "owner" && (await this.owners(caller.tenantId)).length === 1) {
					throw Errors.conflict("The last owner cannot leave; transfer ownership or delete the tenant");
				}
				await this.db.memberships.removeDoc(ctx, self.id);
				await this.memberQuota.release(caller.tenantId, 1);
				await this.endSessions(ctx, self.userId, caller.tenantId);
				await audit(ctx, { action: "member.left", target: self.userId });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		removeMember: {
			rest: "DELETE /members/:userId",
			permission: "members.manage",
			summary: "Remove a member; their sessions end",
			params: { $$strict: "remove", userId: "string" },
			async handler(this: TenantsThis, ctx: Context<{ userId: string }, Meta>) {
				const caller = this.requireCaller(ctx);
				const target = await this.membershipOf(caller.tenantId, ctx.params.userId);
				if (!target) throw Errors.notFound("Member", ctx.params.userId);
				this.assertMayManage(caller.role, target.role);
				if (target.role === "owner" && (await this.owners(caller.tenantId)).length === 1) {
					throw Errors.conflict("The last owner cannot be removed");
				}
				await this.db.memberships.removeDoc(ctx, target.id);
				await this.memberQuota.release(caller.tenantId, 1);
				await this.endSessions(ctx, target.userId, caller.tenantId);
				await audit(ctx, { action: "member.removed", target: target.userId, data: { role: target.role } });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- invitations -----------------------------------------------------------------------

		invite: {
			rest: "POST /invitations",
			permission: "members.manage",
			summary: "Invite someone by email; the email carries a single-use token",
			successStatus: 201,
			params: { $$strict: "remove", email: EMAIL_RULE, role: ROLE_RULE },
			async handler(this: TenantsThis, ctx: Context<{ email: string; role: Role }, Meta>) {
				const caller = this.requireCaller(ctx);
				const email = ctx.params.email.toLowerCase();
				this.assertMayManage(caller.role, "viewer", ctx.params.role);
				if (ctx.params.role === "owner") throw Errors.validation([{ field: "role", message: "owners are made by transferring ownership", type: "role" }]);
				const existing = (await ctx.call("auth.userIdByEmail", { email })) as string | null;
				if (existing && (await this.membershipOf(caller.tenantId, existing))) throw Errors.conflict("Already a member");
				const token = randomToken("minv_");
				const expiresAt = new Date(Date.now() + INVITATION_TTL_MS).toISOString();
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
					return this.db.invitations.insertDoc(ctx, { email, role: ctx.params.role, tokenHash: hashToken(token), expiresAt, invitedBy: caller.userId });
				});
				const tenant = this.tenantView(await this.db.tenants.getDoc(ctx, caller.tenantId, "Tenant"));
				const inviter = caller.userId ? ((await ctx.call("auth.usersByIds", { ids: [caller.userId] })) as UserSummary[])[0] : undefined;
				await ctx.call("notifications.sendEmail", {
					to: email,
					template: "invitation",
					data: {
						inviterName: inviter?.name ?? tenant.name,
						tenantName: tenant.name,
						role: ctx.params.role,
						url: `${this.appUrl}/accept-invitation?token=${encodeURIComponent(token)}`,
						expiresAt
					}
				});
				await audit(ctx, { action: "invitation.created", target: invitation.id, data: { email, role: ctx.params.role } });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/invitations/${invitation.id}`;
				return { id: invitation.id, email, role: ctx.params.role, expiresAt };
			}
		},

		invitations: {
			rest: "GET /invitations",
			permission: "members.manage",
			summary: "Pending invitations",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(this: TenantsThis, ctx: Context<{ page: number; pageSize: number }, Meta>) {
				const page = await this.db.invitations.pageDocs(ctx, { acceptedAt: { $exists: false } }, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(({ id, email, role, expiresAt, createdAt }) => ({ id, email, role, expiresAt, createdAt })) };
			}
		},

		revokeInvitation: {
			rest: "DELETE /invitations/:id",
			permission: "members.manage",
			summary: "Revoke a pending invitation",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: TenantsThis, ctx: Context<{ id: string }, Meta>) {
				const invitation = await this.db.invitations.getDoc(ctx, ctx.params.id, "Invitation");
				if (invitation.acceptedAt) throw Errors.notFound("Invitation", ctx.params.id);
				await this.db.invitations.removeDoc(ctx, ctx.params.id, "Invitation");
				await audit(ctx, { action: "invitation.revoked", target: ctx.params.id });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		acceptInvitation: {
			rest: "POST /invitations/accept",
			permission: "public",
			summary: "Accept an invitation: creates the account or adds the membership; answers like login",
			params: { $$strict: "remove", token: TOKEN_RULE, name: { ...NAME_RULE, optional: true }, password: { type: "string", max: 1024, optional: true } },
			async handler(this: TenantsThis, ctx: Context<{ token: string; name?: string; password?: string }, Meta>) {
				const invalid = () => Errors.badRequest("Invalid or expired invitation");
				const invitations = await this.db.invitations.findAcrossTenants({ tokenHash: hashToken(ctx.params.token) });
				const invitation = invitations[0];
				if (!invitation || invitation.acceptedAt || String(invitation.expiresAt) <= new Date().toISOString()) throw invalid();
				const tenantId = String(invitation.tenantId);
				const scope = { tenantId };

				// Claim it first, so one token yields one membership even under concurrent use.
				const claimed = await this.db.invitations.updateWhere(scope, { _id: invitation.id, acceptedAt: { $exists: false } }, { acceptedAt: new Date().toISOString() });
				if (claimed !== 1) throw invalid();
				let seat = false;
				let user: { userId: string; created: boolean };
				try {
					// The seat before the account: a full organisation creates no orphan account.
					await this.memberQuota.reserve(tenantId, 1, await planLimit(ctx, tenantId, "members", this.config.defaultPlan));
					seat = true;
					user = (await ctx.call("auth.userForInvitation", { email: invitation.email, name: ctx.params.name, password: ctx.params.password })) as typeof user;
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
				return ctx.call("auth.issueSession", { userId: user.userId, tenantId });
			}
		}
	},

	methods: {
		tenantView(doc: PublicDoc): TenantView {
			return {
				id: doc.id,
				name: String(doc.name),
				slug: String(doc.slug),
				plan: String(doc.plan ?? "free"),
				createdAt: String(doc.createdAt),
				settings: { ...DEFAULT_SETTINGS, ...((doc.settings as Partial<TenantSettings>) ?? {}) }
			};
		},

		async membershipOf(this: TenantsThis, tenantId: string, userId: string): Promise<Membership | null> {
			return (await this.db.memberships.findDoc({ tenantId }, { userId })) as Membership | null;
		},

		async owners(this: TenantsThis, tenantId: string): Promise<Membership[]> {
			return (await this.db.memberships.findDocs({ tenantId }, { role: "owner" })) as unknown as Membership[];
		},

		requireCaller(ctx: Context<unknown, Meta>) {
			const auth = ctx.meta.auth;
			if (!auth?.tenantId || !auth.role) throw Errors.unauthorized();
			return { tenantId: auth.tenantId, userId: auth.userId ?? null, role: auth.role };
		},

		/** Admins manage editors and viewers; only an owner touches admins and owners. */
		assertMayManage(actorRole: Role, targetRole: Role, newRole?: Role) {
			const touchesAdmin = roleAtLeast(targetRole, "admin") || (newRole !== undefined && roleAtLeast(newRole, "admin"));
			if (touchesAdmin && actorRole !== "owner") throw Errors.forbidden("Only an owner grants or removes admin and owner roles");
		},

		async endSessions(ctx: Context, userId: string, tenantId: string) {
			await ctx.call("auth.endSessions", { userId, tenantId });
		},

		/**
		 * Names collide all the time (two "Acme"s, "ACME" and "A.C.M.E", two sign-ups at once): the
		 * unique index on `slug` decides, and a taken slug gets a random suffix on the next try.
		 */
		async insertWithUniqueSlug(this: TenantsThis, ctx: Context, name: string): Promise<PublicDoc> {
			const base = slugify(name);
			for (let attempt = 0; attempt < SLUG_ATTEMPTS; attempt++) {
				const slug = attempt === 0 ? base : withSuffix(base);
				if (attempt === 0 && (await this.db.tenants.findDoc(UNSCOPED, { slug }))) continue;
				try {
					return await this.db.tenants.insertDoc(ctx, { name, slug, plan: "free", settings: { ...DEFAULT_SETTINGS } });
				} catch (err) {
					if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
				}
			}
			throw Errors.unavailable("Could not choose an address for the organisation, retry");
		},

		/** `<service>.<suffix>` of every service that has it, this one included. */
		serviceActions(this: TenantsThis, suffix: string): string[] {
			const list = this.broker.registry.getActionList({ skipInternal: true, onlyAvailable: true }) as Array<{ name: string }>;
			return [...new Set(list.map(a => a.name).filter(name => name.endsWith(`.${suffix}`)))].sort();
		}
	},

	created(this: TenantsThis) {
		this.config = getConfig();
		this.appUrl = this.config.appUrl;
		this.kv = sharedKeyValueStore(this.config);
		this.memberQuota = new UsageCounter(this.db.tenants_usage, { resource: "members", measure: tenantId => this.db.memberships.countDocs({ tenantId }) });
	}
};

export default TenantsService;
