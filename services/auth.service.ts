/**
 * Auth: accounts and passwords, sessions with rotating refresh tokens (reuse detection per
 * RFC 9700), email verification and password reset, API keys, device tokens, and
 * `auth.resolve`, which the gateway calls to turn a bearer token into a principal.
 *
 * Secrets never rest in clear: refresh tokens, email tokens and API keys are stored as
 * SHA-256 hashes (they are long random values), passwords as bcrypt hashes.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, UNSCOPED, type DbMethods, type PublicDoc } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { getConfig, type Config } from "../shared/config";
import { Errors } from "../shared/errors";
import { ID_RULE } from "../shared/ids";
import { resolveJwtSecret } from "../shared/jwt-secret";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { roleAtLeast, type Principal, type Role } from "../shared/rbac";
import { EMAIL_RULE, NAME_RULE, PAGE_PARAMS, TOKEN_RULE, type RequestMeta } from "../shared/request";
import { hashPassword, initPasswords, passwordNeedsRehash, passwordProblem, verifyPassword } from "./auth/passwords";
import { hashToken, randomToken } from "./auth/secrets";
import { forgive, giveBack, takeAttempt, THROTTLES } from "../shared/throttle";
import {
	ACCESS_TOKEN_TTL_SEC,
	signAccessToken,
	signDeviceToken,
	signingKeys,
	tokenKind,
	verifyAccessToken,
	verifyDeviceToken,
	type SigningKeys
} from "./auth/tokens";
import { tenantSummary, type TenantDeleted, type TenantView } from "./tenants.service";

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** A session ends after this long without a refresh… */
const SESSION_IDLE_MS = 30 * DAY;
/** …and at the latest this long after sign-in. */
const SESSION_MAX_MS = 90 * DAY;
const VERIFY_TTL_MS = 24 * HOUR;
const RESET_TTL_MS = 30 * 60_000;
/** Hashes of rotated-out refresh tokens kept per session, for reuse detection. */
const USED_TOKENS_KEPT = 50;
const API_KEY_CACHE_MS = 60_000;
const API_KEY_TOUCH_MS = 60_000;
/**
 * What `resolve` remembers of a session id (`session:<id>` in the key/value store): "ended" as
 * long as its access tokens live, "live" briefly. The sessions collection is the truth: a
 * forgotten id (a restart of the in-memory store, an evicted key) is looked up there again,
 * so an ended session never comes back.
 */
const ENDED_SESSION_TTL_MS = (ACCESS_TOKEN_TTL_SEC + 60) * 1000;
const LIVE_SESSION_TTL_MS = 60_000;
const INVALID_LOGIN = "Invalid email or password";

type Collections = "users" | "sessions" | "email_tokens" | "api_keys" | "device_credentials" | "auth_usage";

/**
 * API keys a tenant may hold. Each key is its own principal with its own rate limit, so an
 * unbounded number of keys multiplied every per-principal limit (pairing-code guessing).
 */
export const MAX_API_KEYS = 50;
type Meta = RequestMeta;

interface User {
	id: string;
	email: string;
	name: string;
	passwordHash: string;
	emailVerified: boolean;
	createdAt: string;
	/** Hashes of the client addresses this account signed in from (newest first), see knowsClient. */
	knownClients?: string[];
}

/** Client addresses remembered per account: enough for home, office and phone, bounded. */
const KNOWN_CLIENTS_KEPT = 10;

const clientHash = (userId: string, ip: string) => hashToken(`known-client:${userId}:${ip}`);

/** Whether `user` has signed in from `ip` before (its per-account failure limit does not apply). */
function knowsClient(user: User | null, ip: string): boolean {
	return Boolean(user?.knownClients?.includes(clientHash(user.id, ip)));
}

interface Session {
	id: string;
	tenantId: string;
	userId: string;
	currentHash: string;
	usedHashes: string[];
	createdAt: string;
	lastUsedAt: string;
	expiresAt: string;
	userAgent: string;
	ip: string;
}

interface TokenSet {
	accessToken: string;
	refreshToken: string;
	expiresIn: number;
}

type AuthThis = DbMethods<Collections> & {
	config: Config;
	apiKeyCount: UsageCounter;
	kv: KeyValueStore;
	keys: SigningKeys;
	broker: Context["broker"];
	logger: { info(...args: unknown[]): void; warn(...args: unknown[]): void };
	userView(user: PublicDoc): Omit<User, "passwordHash">;
	findUserByEmail(email: string): Promise<User | null>;
	startSession(ctx: Context<unknown, Meta>, user: User, tenantId: string, role: Role): Promise<TokenSet>;
	loginAnswer(ctx: Context<unknown, Meta>, user: User, tenantId: string): Promise<Record<string, unknown>>;
	endSessionsWhere(query: { userId?: string; tenantId?: string; _id?: string }, exceptSessionId?: string): Promise<number>;
	sessionLive(sessionId: string): Promise<boolean>;
	revokeTenantCredentials(tenantId: string): Promise<void>;
	rememberClient(user: User, ip: string): Promise<void>;
	emailToken(userId: string, purpose: "verify" | "reset", ttlMs: number): Promise<string>;
	useEmailToken(token: string, purpose: "verify" | "reset"): Promise<{ userId: string } | null>;
	sendVerification(ctx: Context, user: User): Promise<void>;
	resolveApiKey(key: string): Promise<Principal | null>;
	resolveDevice(token: string): Promise<Principal | null>;
	auditForUser(ctx: Context, userId: string, action: string, data?: Record<string, unknown>): Promise<void>;
	caller(ctx: Context<unknown, Meta>): Principal & { userId: string };
};

/** 422 naming `field` when the password breaks the policy (length, common list, email or name in it). */
function assertPasswordAcceptable(password: string, field: string, context: { email: string; name?: string }): void {
	const problem = passwordProblem(password, context);
	if (problem) throw Errors.validation([{ field, message: `Password ${problem}`, type: "password" }]);
}

const sessionKey = (sessionId: string) => `session:${sessionId}`;

function sessionExpiry(createdAt: number, now: number): string {
	return new Date(Math.min(now + SESSION_IDLE_MS, createdAt + SESSION_MAX_MS)).toISOString();
}

const PASSWORD_RULE = { type: "string", min: 1, max: 1024 } as const;

const AuthService: ServiceSchema<ServiceSettingSchema, AuthThis> = {
	name: "auth",
	settings: { rest: "/" },
	mixins: [
		DbMixin({
			users: { tenantScoped: false, uniqueIndexes: ["email"] },
			sessions: { indexes: ["userId"], uniqueIndexes: ["currentHash"] },
			email_tokens: { tenantScoped: false, uniqueIndexes: ["tokenHash"] },
			api_keys: { uniqueIndexes: ["keyHash"] },
			device_credentials: { uniqueIndexes: ["displayId"] },
			auth_usage: USAGE_COLLECTION
		})
	],

	actions: {
		// ---- sign-up and sign-in --------------------------------------------------------------

		register: {
			rest: "POST /auth/register",
			permission: "public",
			summary: "Create an account and its organisation; the caller becomes its owner",
			successStatus: 201,
			params: { $$strict: "remove", email: EMAIL_RULE, password: PASSWORD_RULE, name: NAME_RULE, organizationName: NAME_RULE },
			async handler(this: AuthThis, ctx: Context<{ email: string; password: string; name: string; organizationName: string }, Meta>) {
				const rules = THROTTLES.register(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const email = ctx.params.email.toLowerCase();
				assertPasswordAcceptable(ctx.params.password, "password", { email, name: ctx.params.name });
				if (await this.findUserByEmail(email)) throw Errors.conflict("An account with this email already exists");

				const user = (await this.db.users.insertDoc(ctx, {
					email,
					name: ctx.params.name,
					passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost),
					emailVerified: false
				})) as unknown as User;
				let tenant: TenantView;
				try {
					tenant = (await ctx.call("tenants.create", { name: ctx.params.organizationName, ownerUserId: user.id })) as TenantView;
				} catch (err) {
					await this.db.users.removeDocs(ctx, { _id: user.id });
					throw err;
				}
				await this.sendVerification(ctx, user);
				await audit(ctx, { action: "auth.registered", tenantId: tenant.id, actor: { kind: "user", id: user.id }, target: user.id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = "/api/v1/auth/me";
				return this.loginAnswer(ctx, user, tenant.id);
			}
		},

		login: {
			rest: "POST /auth/login",
			permission: "public",
			summary: "Sign in with email and password",
			params: { $$strict: "remove", email: EMAIL_RULE, password: PASSWORD_RULE },
			async handler(this: AuthThis, ctx: Context<{ email: string; password: string }, Meta>) {
				const email = ctx.params.email.toLowerCase();
				const user = await this.findUserByEmail(email);
				const rules = THROTTLES.login(email, ctx.meta.ip, knowsClient(user, ctx.meta.ip));
				await takeAttempt(this.kv, rules);
				// Always one bcrypt comparison, so an unknown email takes as long as a wrong password.
				const ok = await verifyPassword(ctx.params.password, user?.passwordHash ?? null);
				if (!user || !ok) throw Errors.unauthorized(INVALID_LOGIN);
				await forgive(this.kv, rules);
				if (passwordNeedsRehash(user.passwordHash, this.config.bcryptCost)) {
					await this.db.users.updateDoc(ctx, user.id, { passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost) });
				}
				const memberships = (await ctx.call("tenants.membershipsOfUser", { userId: user.id })) as Array<{ tenantId: string }>;
				if (memberships.length === 0) throw Errors.forbidden("This account belongs to no organisation");
				const answer = await this.loginAnswer(ctx, user, memberships[0].tenantId);
				await audit(ctx, { action: "auth.login", tenantId: memberships[0].tenantId, actor: { kind: "user", id: user.id }, target: user.id });
				return answer;
			}
		},

		refresh: {
			rest: "POST /auth/refresh",
			permission: "public",
			summary: "Trade a refresh token for a new access and refresh token (each refresh token works once)",
			params: { $$strict: "remove", refreshToken: TOKEN_RULE },
			async handler(this: AuthThis, ctx: Context<{ refreshToken: string }, Meta>) {
				const rules = THROTTLES.refresh(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const invalid = Errors.unauthorized("Invalid refresh token");
				const presented = hashToken(ctx.params.refreshToken);
				const now = Date.now();

				const [session] = (await this.db.sessions.findAcrossTenants({ currentHash: presented })) as unknown as Session[];
				if (!session) {
					// A rotated-out token presented again: someone holds a copy. End the whole family.
					const [reused] = (await this.db.sessions.findAcrossTenants({ usedHashes: presented })) as unknown as Session[];
					if (reused) {
						await this.endSessionsWhere({ _id: reused.id });
						this.logger.warn(`Refresh token reuse: session ${reused.id} ended`);
						await audit(ctx, { action: "auth.refresh.reused", tenantId: reused.tenantId, actor: { kind: "user", id: reused.userId }, target: reused.id });
					}
					throw invalid;
				}
				if (session.expiresAt <= new Date(now).toISOString()) {
					await this.endSessionsWhere({ _id: session.id });
					throw invalid;
				}
				const membership = (await ctx.call("tenants.membership", { tenantId: session.tenantId, userId: session.userId })) as { role: Role } | null;
				if (!membership) {
					await this.endSessionsWhere({ _id: session.id });
					throw invalid;
				}

				const refreshToken = randomToken("mrt_");
				const scope = { tenantId: session.tenantId };
				// Only the request that still finds the presented hash current wins the rotation.
				const rotated = await this.db.sessions.updateWhere(scope, { _id: session.id, currentHash: presented }, {
					currentHash: hashToken(refreshToken),
					usedHashes: [presented, ...session.usedHashes].slice(0, USED_TOKENS_KEPT),
					lastUsedAt: new Date(now).toISOString(),
					expiresAt: sessionExpiry(Date.parse(session.createdAt), now),
					ip: ctx.meta.ip,
					userAgent: ctx.meta.userAgent
				});
				if (rotated !== 1) {
					await this.endSessionsWhere({ _id: session.id });
					throw invalid;
				}
				const accessToken = signAccessToken(this.keys, { sub: session.userId, tid: session.tenantId, role: membership.role, sid: session.id });
				await audit(ctx, { action: "auth.refreshed", tenantId: session.tenantId, actor: { kind: "user", id: session.userId }, target: session.id });
				return { accessToken, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SEC };
			}
		},

		logout: {
			rest: "POST /auth/logout",
			permission: "public",
			summary: "End the session of a refresh token",
			params: { $$strict: "remove", refreshToken: TOKEN_RULE },
			async handler(this: AuthThis, ctx: Context<{ refreshToken: string }, Meta>) {
				const [session] = (await this.db.sessions.findAcrossTenants({ currentHash: hashToken(ctx.params.refreshToken) })) as unknown as Session[];
				if (session) {
					await this.endSessionsWhere({ _id: session.id });
					await audit(ctx, { action: "auth.logout", tenantId: session.tenantId, actor: { kind: "user", id: session.userId }, target: session.id });
				}
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		logoutAll: {
			rest: "POST /auth/logout-all",
			permission: "self",
			summary: "End every session of the signed-in user",
			async handler(this: AuthThis, ctx: Context<unknown, Meta>) {
				const caller = this.caller(ctx);
				const ended = await this.endSessionsWhere({ userId: caller.userId });
				await audit(ctx, { action: "auth.logout.all", target: caller.userId, data: { sessions: ended } });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		me: {
			rest: "GET /auth/me",
			permission: "self",
			summary: "The signed-in user, their tenant and role",
			async handler(this: AuthThis, ctx: Context<unknown, Meta>) {
				const caller = this.caller(ctx);
				const user = await this.db.users.getDoc(ctx, caller.userId, "User");
				const tenant = (await ctx.call("tenants.find", { tenantId: caller.tenantId })) as TenantView | null;
				if (!tenant) throw Errors.unauthorized();
				return { user: this.userView(user), tenant: tenantSummary(tenant), role: caller.role };
			}
		},

		// ---- email verification and passwords ------------------------------------------------

		verifyEmail: {
			rest: "POST /auth/verify-email",
			permission: "public",
			summary: "Confirm an email address with the token from the verification email",
			params: { $$strict: "remove", token: TOKEN_RULE },
			async handler(this: AuthThis, ctx: Context<{ token: string }, Meta>) {
				const rules = THROTTLES.tokenUse(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const used = await this.useEmailToken(ctx.params.token, "verify");
				if (!used) throw Errors.badRequest("Invalid or expired token");
				await giveBack(this.kv, rules);
				await this.db.users.updateDoc(ctx, used.userId, { emailVerified: true });
				await this.auditForUser(ctx, used.userId, "auth.email.verified");
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		resendVerification: {
			rest: "POST /auth/resend-verification",
			permission: "self",
			summary: "Send the verification email again",
			async handler(this: AuthThis, ctx: Context<unknown, Meta>) {
				const caller = this.caller(ctx);
				const rules = THROTTLES.forgot(caller.userId, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const user = (await this.db.users.getDoc(ctx, caller.userId, "User")) as unknown as User;
				if (!user.emailVerified) await this.sendVerification(ctx, user);
				ctx.meta.$statusCode = 202;
				return null;
			}
		},

		forgotPassword: {
			rest: "POST /auth/forgot-password",
			permission: "public",
			summary: "Email a password-reset link; answers 202 whether or not the email exists",
			params: { $$strict: "remove", email: EMAIL_RULE },
			async handler(this: AuthThis, ctx: Context<{ email: string }, Meta>) {
				const email = ctx.params.email.toLowerCase();
				const rules = THROTTLES.forgot(email, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const user = await this.findUserByEmail(email);
				if (user) {
					// Sent in the background: the answer takes the same time for unknown emails.
					void (async () => {
						const token = await this.emailToken(user.id, "reset", RESET_TTL_MS);
						await this.auditForUser(ctx, user.id, "auth.password.reset.requested");
						await ctx.call("notifications.sendEmail", {
							to: user.email,
							template: "reset",
							data: { name: user.name, url: `${this.config.appUrl}/reset-password?token=${encodeURIComponent(token)}`, expiresInMinutes: RESET_TTL_MS / 60_000 }
						});
					})().catch(err => this.logger.warn("Password reset email failed", (err as Error).message));
				}
				ctx.meta.$statusCode = 202;
				return null;
			}
		},

		resetPassword: {
			rest: "POST /auth/reset-password",
			permission: "public",
			summary: "Set a new password with the token from the reset email; every session ends",
			params: { $$strict: "remove", token: TOKEN_RULE, password: PASSWORD_RULE },
			async handler(this: AuthThis, ctx: Context<{ token: string; password: string }, Meta>) {
				const rules = THROTTLES.tokenUse(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const record = (await this.db.email_tokens.findDoc(ctx, { tokenHash: hashToken(ctx.params.token), purpose: "reset" })) as { userId: string } | null;
				const user = record ? ((await this.db.users.findDoc(ctx, { _id: record.userId })) as unknown as User | null) : null;
				if (user) {
					try {
						assertPasswordAcceptable(ctx.params.password, "password", user);
					} catch (err) {
						// A weak new password is not a guessed token.
						await giveBack(this.kv, rules);
						throw err;
					}
				}
				const used = user ? await this.useEmailToken(ctx.params.token, "reset") : null;
				if (!used || !user) throw Errors.badRequest("Invalid or expired token");
				await giveBack(this.kv, rules);
				await this.db.users.updateDoc(ctx, user.id, { passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost), emailVerified: true });
				const ended = await this.endSessionsWhere({ userId: user.id });
				await this.auditForUser(ctx, user.id, "auth.password.reset", { sessions: ended });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		changePassword: {
			rest: "POST /auth/change-password",
			permission: "self",
			summary: "Change the password (needs the current one); other sessions end",
			params: { $$strict: "remove", currentPassword: PASSWORD_RULE, newPassword: PASSWORD_RULE },
			async handler(this: AuthThis, ctx: Context<{ currentPassword: string; newPassword: string }, Meta>) {
				const caller = this.caller(ctx);
				const rules = THROTTLES.changePassword(caller.userId);
				await takeAttempt(this.kv, rules);
				const user = (await this.db.users.getDoc(ctx, caller.userId, "User")) as unknown as User;
				if (!(await verifyPassword(ctx.params.currentPassword, user.passwordHash))) {
					throw Errors.validation([{ field: "currentPassword", message: "is not your current password", type: "password" }]);
				}
				await giveBack(this.kv, rules);
				assertPasswordAcceptable(ctx.params.newPassword, "newPassword", user);
				await this.db.users.updateDoc(ctx, user.id, { passwordHash: await hashPassword(ctx.params.newPassword, this.config.bcryptCost) });
				const ended = await this.endSessionsWhere({ userId: user.id }, caller.sessionId);
				await audit(ctx, { action: "auth.password.changed", target: user.id, data: { otherSessionsEnded: ended } });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- sessions -------------------------------------------------------------------------

		sessions: {
			rest: "GET /auth/sessions",
			permission: "self",
			summary: "The signed-in user's sessions, most recently used first",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(this: AuthThis, ctx: Context<{ page: number; pageSize: number }, Meta>) {
				const caller = this.caller(ctx);
				const page = await this.db.sessions.pageAcrossTenants({ userId: caller.userId }, ctx.params.page, ctx.params.pageSize, ["-lastUsedAt", "-_id"]);
				const sessions = page.rows as unknown as Session[];
				return { ...page, rows: sessions.map(s => ({
					id: s.id,
					tenantId: s.tenantId,
					createdAt: s.createdAt,
					lastUsedAt: s.lastUsedAt,
					expiresAt: s.expiresAt,
					userAgent: s.userAgent,
					ip: s.ip,
					current: s.id === caller.sessionId
				})) };
			}
		},

		endSession: {
			rest: "DELETE /auth/sessions/:id",
			permission: "self",
			summary: "End one of the signed-in user's sessions",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: AuthThis, ctx: Context<{ id: string }, Meta>) {
				const caller = this.caller(ctx);
				const [session] = (await this.db.sessions.findAcrossTenants({ _id: ctx.params.id, userId: caller.userId })) as unknown as Session[];
				if (!session) throw Errors.notFound("Session", ctx.params.id);
				await this.endSessionsWhere({ _id: session.id });
				await audit(ctx, { action: "auth.session.ended", target: session.id });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- API keys -------------------------------------------------------------------------

		createApiKey: {
			rest: "POST /api-keys",
			permission: "apiKeys.manage",
			summary: "Create an API key bound to this tenant and a role; the key is shown only in this answer",
			successStatus: 201,
			params: { $$strict: "remove", name: NAME_RULE, role: { type: "enum", values: ["admin", "editor", "viewer"] } },
			async handler(this: AuthThis, ctx: Context<{ name: string; role: Role }, Meta>) {
				const caller = this.caller(ctx);
				if (!roleAtLeast(caller.role, ctx.params.role)) throw Errors.forbidden("A key cannot have a higher role than yours");
				await this.apiKeyCount.reserve(caller.tenantId, 1, MAX_API_KEYS);
				const key = randomToken("mk_");
				let doc: PublicDoc;
				try {
					doc = await this.db.api_keys.insertDoc(ctx, {
						name: ctx.params.name,
						role: ctx.params.role,
						keyHash: hashToken(key),
						keyPrefix: key.slice(0, 11),
						createdBy: caller.userId,
						lastUsedAt: null
					});
				} catch (err) {
					await this.apiKeyCount.release(caller.tenantId, 1);
					throw err;
				}
				await audit(ctx, { action: "apiKey.created", target: doc.id, data: { role: ctx.params.role } });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/api-keys/${doc.id}`;
				return { id: doc.id, name: doc.name, role: doc.role, key, keyPrefix: doc.keyPrefix, createdAt: doc.createdAt };
			}
		},

		listApiKeys: {
			rest: "GET /api-keys",
			permission: "apiKeys.manage",
			summary: "API keys of the tenant (never the keys themselves)",
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(this: AuthThis, ctx: Context<{ page: number; pageSize: number }, Meta>) {
				const page = await this.db.api_keys.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize);
				return {
					...page,
					rows: page.rows.map(({ id, name, role, keyPrefix, createdAt, lastUsedAt, createdBy }) => ({ id, name, role, keyPrefix, createdAt, lastUsedAt, createdBy }))
				};
			}
		},

		revokeApiKey: {
			rest: "DELETE /api-keys/:id",
			permission: "apiKeys.manage",
			summary: "Revoke an API key; it stops working at once",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: AuthThis, ctx: Context<{ id: string }, Meta>) {
				const doc = await this.db.api_keys.removeDoc(ctx, ctx.params.id, "API key");
				await this.kv.del(`apikey:${doc.keyHash}`);
				await this.apiKeyCount.release(String(doc.tenantId), 1);
				await audit(ctx, { action: "apiKey.revoked", target: doc.id });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		// ---- for other services ----------------------------------------------------------------

		/** The gateway's authentication: a bearer token → its principal (401 when not valid). */
		resolve: {
			visibility: "public",
			params: { token: { type: "string", max: 4096 } },
			async handler(this: AuthThis, ctx: Context<{ token: string }>): Promise<Principal> {
				const token = ctx.params.token;
				let principal: Principal | null = null;
				const kind = tokenKind(token);
				if (kind === "apiKey") principal = await this.resolveApiKey(token);
				else if (kind === "jwt") {
					const access = verifyAccessToken(this.keys, token);
					if (access.ok) {
						if (await this.sessionLive(access.claims.sid)) {
							const { sub, tid, role, sid } = access.claims;
							principal = { kind: "user", tenantId: tid, userId: sub, role, sessionId: sid };
						}
					} else principal = await this.resolveDevice(token);
				}
				if (!principal) throw Errors.unauthorized("Invalid or expired token");
				return principal;
			}
		},

		usersByIds: {
			visibility: "public",
			params: { ids: { type: "array", items: "string", max: 1000 } },
			async handler(this: AuthThis, ctx: Context<{ ids: string[] }>) {
				if (ctx.params.ids.length === 0) return [];
				const users = await this.db.users.findDocs(ctx, { _id: { $in: ctx.params.ids } });
				return users.map(u => this.userView(u));
			}
		},

		userIdByEmail: {
			visibility: "public",
			params: { email: "string" },
			async handler(this: AuthThis, ctx: Context<{ email: string }>) {
				return (await this.findUserByEmail(ctx.params.email.toLowerCase()))?.id ?? null;
			}
		},

		/**
		 * For an accepted invitation (the token proved control of the address): an existing
		 * account must give its password; a new one is created, already verified.
		 */
		userForInvitation: {
			visibility: "public",
			params: { email: "string", name: { type: "string", optional: true }, password: { type: "string", optional: true } },
			async handler(this: AuthThis, ctx: Context<{ email: string; name?: string; password?: string }, Meta>) {
				const email = ctx.params.email.toLowerCase();
				const existing = await this.findUserByEmail(email);
				if (existing) {
					const rules = THROTTLES.login(email, ctx.meta.ip ?? "internal", knowsClient(existing, ctx.meta.ip ?? "internal"));
					await takeAttempt(this.kv, rules);
					if (!ctx.params.password || !(await verifyPassword(ctx.params.password, existing.passwordHash))) {
						throw Errors.unauthorized("This email has an account: sign in with its password to accept");
					}
					await giveBack(this.kv, rules);
					return { userId: existing.id, created: false };
				}
				const fields = [];
				if (!ctx.params.name) fields.push({ field: "name", message: "is required for a new account", type: "required" });
				if (!ctx.params.password) fields.push({ field: "password", message: "is required for a new account", type: "required" });
				if (fields.length) throw Errors.validation(fields);
				assertPasswordAcceptable(ctx.params.password as string, "password", { email, name: ctx.params.name });
				const user = await this.db.users.insertDoc(ctx, {
					email,
					name: ctx.params.name,
					passwordHash: await hashPassword(ctx.params.password as string, this.config.bcryptCost),
					emailVerified: true
				});
				return { userId: user.id, created: true };
			}
		},

		/** A new session for a user already vouched for by the caller (e.g. an accepted invitation). */
		issueSession: {
			visibility: "public",
			params: { userId: "string", tenantId: "string" },
			async handler(this: AuthThis, ctx: Context<{ userId: string; tenantId: string }, Meta>) {
				const user = (await this.db.users.getDoc(ctx, ctx.params.userId, "User")) as unknown as User;
				return this.loginAnswer(ctx, user, ctx.params.tenantId);
			}
		},

		/** Ends sessions (member removed, role changed); their access tokens stop working at once. */
		endSessions: {
			visibility: "public",
			params: { userId: "string", tenantId: { type: "string", optional: true } },
			handler(this: AuthThis, ctx: Context<{ userId: string; tenantId?: string }>) {
				return this.endSessionsWhere({ userId: ctx.params.userId, ...(ctx.params.tenantId ? { tenantId: ctx.params.tenantId } : {}) });
			}
		},

		/**
		 * Every credential of a tenant that is being deleted stops working, durably (sessions, API
		 * keys, device tokens). Tenants calls this before it announces the deletion, so nothing
		 * depends on the deletion message being delivered.
		 */
		revokeTenant: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: AuthThis, ctx: Context<{ tenantId: string }>) {
				await this.revokeTenantCredentials(ctx.params.tenantId);
				return null;
			}
		},

		/** A long-lived device token for a paired display; minting again revokes the previous one. */
		mintDeviceToken: {
			visibility: "public",
			params: { tenantId: "string", displayId: "string" },
			async handler(this: AuthThis, ctx: Context<{ tenantId: string; displayId: string }>) {
				const scope = { tenantId: ctx.params.tenantId };
				const existing = await this.db.device_credentials.findDoc(scope, { displayId: ctx.params.displayId });
				const version = existing ? Number(existing.version) + 1 : 1;
				if (existing) await this.db.device_credentials.updateDoc(scope, existing.id, { version });
				else await this.db.device_credentials.insertDoc(scope, { displayId: ctx.params.displayId, version });
				await this.kv.set(`device-version:${ctx.params.displayId}`, `${ctx.params.tenantId}:${version}`, HOUR);
				return { deviceToken: signDeviceToken(this.keys, { did: ctx.params.displayId, tid: ctx.params.tenantId, ver: version }) };
			}
		},

		revokeDeviceToken: {
			visibility: "public",
			params: { tenantId: "string", displayId: "string" },
			async handler(this: AuthThis, ctx: Context<{ tenantId: string; displayId: string }>) {
				await this.db.device_credentials.removeDocs({ tenantId: ctx.params.tenantId }, { displayId: ctx.params.displayId });
				await this.kv.set(`device-version:${ctx.params.displayId}`, "revoked", HOUR);
				return null;
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: AuthThis, ctx: Context<{ tenantId: string }>) {
				const scope = { tenantId: ctx.params.tenantId };
				const memberships = (await ctx.call("tenants.exportTenantData", { tenantId: ctx.params.tenantId })) as { memberships: Array<{ userId: string }> };
				const userIds = memberships.memberships.map(m => m.userId);
				const [users, sessions, apiKeys] = await Promise.all([
					userIds.length ? this.db.users.findDocs(ctx, { _id: { $in: userIds } }) : [],
					this.db.sessions.findDocs(scope),
					this.db.api_keys.findDocs(scope)
				]);
				return {
					users: users.map(u => this.userView(u)),
					sessions: sessions.map(({ id, userId, createdAt, lastUsedAt, userAgent, ip }) => ({ id, userId, createdAt, lastUsedAt, userAgent, ip })),
					apiKeys: apiKeys.map(({ id, name, role, keyPrefix, createdAt, lastUsedAt }) => ({ id, name, role, keyPrefix, createdAt, lastUsedAt }))
				};
			}
		}
	},

	channels: {
		"tenants.tenant.deleted": {
			group: "auth",
			async handler(this: AuthThis, ctx: Context<unknown>) {
				const { tenantId, soleMemberUserIds } = ctx.params as TenantDeleted;
				// Already done by tenants before it sent this; again in case that call was cut short.
				await this.revokeTenantCredentials(tenantId);
				for (const userId of soleMemberUserIds) {
					await this.endSessionsWhere({ userId });
					await this.db.email_tokens.removeDocs(UNSCOPED, { userId });
					await this.db.users.removeDocs(UNSCOPED, { _id: userId });
				}
				this.logger.info(`Tenant ${tenantId} deleted: auth data removed (${soleMemberUserIds.length} accounts)`);
			}
		}
	},

	methods: {
		userView(user: PublicDoc) {
			const { id, email, name, emailVerified, createdAt } = user as unknown as User;
			return { id, email, name, emailVerified: Boolean(emailVerified), createdAt };
		},

		async findUserByEmail(this: AuthThis, email: string): Promise<User | null> {
			return (await this.db.users.findDoc(UNSCOPED, { email })) as unknown as User | null;
		},

		async startSession(this: AuthThis, ctx: Context<unknown, Meta>, user: User, tenantId: string, role: Role): Promise<TokenSet> {
			const refreshToken = randomToken("mrt_");
			const now = Date.now();
			const session = await this.db.sessions.insertDoc({ tenantId }, {
				userId: user.id,
				currentHash: hashToken(refreshToken),
				usedHashes: [],
				lastUsedAt: new Date(now).toISOString(),
				expiresAt: sessionExpiry(now, now),
				userAgent: ctx.meta.userAgent ?? "",
				ip: ctx.meta.ip ?? ""
			});
			const accessToken = signAccessToken(this.keys, { sub: user.id, tid: tenantId, role, sid: session.id });
			return { accessToken, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SEC };
		},

		async loginAnswer(this: AuthThis, ctx: Context<unknown, Meta>, user: User, tenantId: string) {
			const [tenant, membership] = (await Promise.all([
				ctx.call("tenants.find", { tenantId }),
				ctx.call("tenants.membership", { tenantId, userId: user.id })
			])) as [TenantView | null, { role: Role } | null];
			if (!tenant || !membership) throw Errors.unauthorized(INVALID_LOGIN);
			if (ctx.meta.ip) await this.rememberClient(user, ctx.meta.ip);
			const tokens = await this.startSession(ctx, user, tenantId, membership.role);
			return { user: this.userView(user as unknown as PublicDoc), tenant: tenantSummary(tenant), role: membership.role, ...tokens };
		},

		/** Removes sessions and puts their ids on the revocation list checked by `resolve`. */
		async endSessionsWhere(this: AuthThis, query: { userId?: string; tenantId?: string; _id?: string }, exceptSessionId?: string) {
			const { tenantId, ...rest } = query;
			const sessions = (await this.db.sessions.findAcrossTenants({ ...rest, ...(tenantId ? { tenantId } : {}) })) as unknown as Session[];
			const ending = sessions.filter(s => s.id !== exceptSessionId);
			for (const s of ending) {
				// The document goes first: it is what a restarted process consults.
				await this.db.sessions.removeDocs({ tenantId: s.tenantId }, { _id: s.id });
				await this.kv.set(sessionKey(s.id), "ended", ENDED_SESSION_TTL_MS);
			}
			return ending.length;
		},

		async revokeTenantCredentials(this: AuthThis, tenantId: string) {
			await this.endSessionsWhere({ tenantId });
			const keys = await this.db.api_keys.findDocs({ tenantId });
			await this.db.api_keys.removeTenantDocs(tenantId);
			await this.db.auth_usage.removeTenantDocs(tenantId);
			await Promise.all(keys.map(k => this.kv.del(`apikey:${k.keyHash}`)));
			const devices = await this.db.device_credentials.findDocs({ tenantId });
			await this.db.device_credentials.removeTenantDocs(tenantId);
			await Promise.all(devices.map(d => this.kv.set(`device-version:${d.displayId}`, "revoked", HOUR)));
		},

		/** Remembers a client address the account signed in from (written only when new). */
		async rememberClient(this: AuthThis, user: User, ip: string) {
			const hash = clientHash(user.id, ip);
			const known = user.knownClients ?? [];
			if (known[0] === hash) return;
			await this.db.users.updateDoc(UNSCOPED, user.id, { knownClients: [hash, ...known.filter(h => h !== hash)].slice(0, KNOWN_CLIENTS_KEPT) });
		},

		/** Whether an access token's session still exists (remembered briefly; the collection decides). */
		async sessionLive(this: AuthThis, sessionId: string): Promise<boolean> {
			const known = await this.kv.get(sessionKey(sessionId));
			if (known !== null) return known === "live";
			const [session] = await this.db.sessions.findAcrossTenants({ _id: sessionId });
			if (!session) {
				await this.kv.set(sessionKey(sessionId), "ended", ENDED_SESSION_TTL_MS);
				return false;
			}
			// Only when nothing was written meanwhile: an ending that raced this lookup wins.
			if (await this.kv.setIfAbsent(sessionKey(sessionId), "live", LIVE_SESSION_TTL_MS)) return true;
			return (await this.kv.get(sessionKey(sessionId))) !== "ended";
		},

		async emailToken(this: AuthThis, userId: string, purpose: "verify" | "reset", ttlMs: number): Promise<string> {
			const token = randomToken(purpose === "verify" ? "mev_" : "mpr_");
			// One live token per purpose: a new email supersedes the previous link.
			await this.db.email_tokens.removeDocs(UNSCOPED, { userId, purpose });
			await this.db.email_tokens.insertDoc(UNSCOPED, { userId, purpose, tokenHash: hashToken(token), expiresAt: new Date(Date.now() + ttlMs).toISOString() });
			return token;
		},

		/** Marks a valid token used, once; null when unknown, used, expired or of another purpose. */
		async useEmailToken(this: AuthThis, token: string, purpose: "verify" | "reset") {
			const scope = UNSCOPED;
			const record = await this.db.email_tokens.findDoc(scope, { tokenHash: hashToken(token), purpose });
			if (!record || record.usedAt || String(record.expiresAt) <= new Date().toISOString()) return null;
			const claimed = await this.db.email_tokens.updateWhere(scope, { _id: record.id, usedAt: { $exists: false } }, { usedAt: new Date().toISOString() });
			return claimed === 1 ? { userId: String(record.userId) } : null;
		},

		async sendVerification(this: AuthThis, ctx: Context, user: User) {
			const token = await this.emailToken(user.id, "verify", VERIFY_TTL_MS);
			await ctx.call("notifications.sendEmail", {
				to: user.email,
				template: "verify",
				data: { name: user.name, url: `${this.config.appUrl}/verify-email?token=${encodeURIComponent(token)}` }
			});
		},

		async resolveApiKey(this: AuthThis, key: string): Promise<Principal | null> {
			if (!/^mk_[A-Za-z0-9_-]{20,100}$/.test(key)) return null;
			const keyHash = hashToken(key);
			const cached = await this.kv.get(`apikey:${keyHash}`);
			if (cached) return JSON.parse(cached) as Principal;
			const [doc] = await this.db.api_keys.findAcrossTenants({ keyHash });
			if (!doc) return null;
			const principal: Principal = { kind: "apiKey", tenantId: String(doc.tenantId), apiKeyId: doc.id, role: doc.role as Role };
			await this.kv.set(`apikey:${keyHash}`, JSON.stringify(principal), API_KEY_CACHE_MS);
			const last = typeof doc.lastUsedAt === "string" ? Date.parse(doc.lastUsedAt) : 0;
			if (Date.now() - last > API_KEY_TOUCH_MS) {
				void this.db.api_keys
					.updateWhere({ tenantId: principal.tenantId }, { _id: doc.id }, { lastUsedAt: new Date().toISOString() })
					.catch(() => undefined);
			}
			return principal;
		},

		async resolveDevice(this: AuthThis, token: string): Promise<Principal | null> {
			const device = verifyDeviceToken(this.keys, token);
			if (!device.ok) return null;
			const { did, tid, ver } = device.claims;
			let current = await this.kv.get(`device-version:${did}`);
			if (current === null) {
				const [doc] = await this.db.device_credentials.findAcrossTenants({ displayId: did });
				current = doc ? `${doc.tenantId}:${doc.version}` : "revoked";
				await this.kv.set(`device-version:${did}`, current, HOUR);
			}
			if (current !== `${tid}:${ver}`) return null;
			return { kind: "device", tenantId: tid, displayId: did };
		},

		/** An audit record in every tenant of a user acting before sign-in (their own account's events). */
		async auditForUser(this: AuthThis, ctx: Context, userId: string, action: string, data: Record<string, unknown> = {}) {
			const memberships = (await ctx.call("tenants.membershipsOfUser", { userId })) as Array<{ tenantId: string }>;
			for (const m of memberships) await audit(ctx, { action, tenantId: m.tenantId, actor: { kind: "user", id: userId }, target: userId, data });
		},

		caller(ctx: Context<unknown, Meta>) {
			const auth = ctx.meta.auth;
			if (!auth?.userId || auth.kind !== "user") throw Errors.unauthorized();
			return auth as Principal & { userId: string };
		}
	},

	created(this: AuthThis) {
		this.config = getConfig();
		this.apiKeyCount = new UsageCounter(this.db.auth_usage, {
			resource: "apiKeys",
			measure: tenantId => this.db.api_keys.countDocs({ tenantId }),
			exceeded: limit => Errors.conflict(`A tenant may hold at most ${limit} API keys; revoke one first`, { limit })
		});
		this.kv = sharedKeyValueStore(this.config);
		this.keys = signingKeys(resolveJwtSecret(this.config), this.config.jwtPreviousSecrets);
	},

	async started(this: AuthThis) {
		// Loads the common-password list (a missing file stops start-up) and calibrates the
		// dummy hash compared for unknown emails.
		await initPasswords(this.config.bcryptCost);
	}
};

export default AuthService;
