/**
 * Auth: accounts and passwords, sessions with rotating refresh tokens (reuse detection per
 * RFC 9700), email verification and password reset, API keys, device tokens, and
 * `auth.resolve`, which the gateway calls to turn a bearer token into a principal.
 *
 * Secrets never rest in clear: refresh tokens, email tokens and API keys are stored as
 * SHA-256 hashes (they are long random values), passwords as bcrypt hashes.
 *
 * The handlers orchestrate; the rules live in services/auth/: accounts.ts (users, known clients,
 * email tokens), sessions.ts (refresh-token families, liveness, ending), api-keys.ts,
 * device-credentials.ts, and passwords.ts, secrets.ts, tokens.ts.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, globalCollection, systemScope, tenantCollection, type DbVars } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { EMAIL_CHANNEL, TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	ApiKeyPage,
	API_KEY_ROLES,
	call,
	CreatedApiKey,
	LoginAnswer,
	MeView,
	sendToChannel,
	SessionPage,
	TokenSet,
	tenantSummary,
	type ActionCtx,
	type ChannelCtx,
	type Result,
	type TenantView
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { resolveJwtSecret } from "../shared/jwt-secret";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { roleAtLeast, type Principal, type Role } from "../shared/rbac";
import { EMAIL_RULE, NAME_RULE, PAGE_PARAMS, TOKEN_RULE, userCallerOf, type RequestMeta } from "../shared/request";
import { forgive, giveBack, takeAttempt, THROTTLES } from "../shared/throttle";
import {
	assertPasswordAcceptable,
	claimEmailToken,
	emailLink,
	issueEmailToken,
	knowsClient,
	rememberedClients,
	RESET_TTL_MS,
	userView,
	VERIFY_TTL_MS,
	type EmailTokenDoc,
	type UserDoc
} from "./auth/accounts";
import {
	apiKeyExport,
	apiKeyView,
	createdApiKeyView,
	forgetApiKeys,
	MAX_API_KEYS,
	newApiKey,
	resolveApiKey,
	type ApiKeyDoc
} from "./auth/api-keys";
import { forgetDevices, mintDeviceToken, resolveDeviceToken, type DeviceCredentialDoc } from "./auth/device-credentials";
import { hashPassword, initPasswords, passwordNeedsRehash, verifyPassword } from "./auth/passwords";
import { hashToken } from "../shared/secrets";
import {
	endSessions,
	findByRefreshHash,
	findFamily,
	rotateSession,
	sessionExpired,
	sessionExport,
	sessionLive,
	sessionView,
	startSession,
	tokenSet,
	type SessionDoc,
	type SessionFilter
} from "./auth/sessions";
import { signingKeys, tokenKind, verifyAccessToken, type SigningKeys } from "./auth/tokens";

const INVALID_LOGIN = "Invalid email or password";
const PASSWORD_RULE = { type: "string", min: 1, max: 1024 } as const;

const COLLECTIONS = {
	users: globalCollection<UserDoc>({ uniqueIndexes: ["email"] }),
	sessions: tenantCollection<SessionDoc>({ indexes: ["userId"], uniqueIndexes: ["currentHash"] }),
	email_tokens: globalCollection<EmailTokenDoc>({ uniqueIndexes: ["tokenHash"] }),
	api_keys: tenantCollection<ApiKeyDoc>({ uniqueIndexes: ["keyHash"] }),
	device_credentials: tenantCollection<DeviceCredentialDoc>({ uniqueIndexes: ["displayId"] }),
	auth_usage: USAGE_COLLECTION
};

interface AuthVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	apiKeyCount: UsageCounter;
	kv: KeyValueStore;
	keys: SigningKeys;
}

interface AuthMethods {
	findUserByEmail(email: string): Promise<UserDoc | null>;
	/** Signs `user` in to `tenantId`: a new session, and the answer of register and login. */
	loginAnswer(ctx: Context<unknown, RequestMeta>, user: UserDoc, tenantId: string): Promise<LoginAnswer>;
	/** Ends sessions: their refresh tokens and access tokens stop working at once. */
	endSessionsWhere(filter: SessionFilter, exceptSessionId?: string): Promise<number>;
	revokeTenantCredentials(tenantId: string): Promise<void>;
	sendVerification(ctx: Context, user: UserDoc, tenantId: string): Promise<void>;
	auditForUser(ctx: Context, userId: string, action: string, data?: Record<string, unknown>): Promise<void>;
}

/** The signed-in person behind an account route ("self" and people-only permissions). */
interface SignedInUser {
	userId: string;
	tenantId: string;
	role: Role;
	sessionId?: string;
}

/** The caller of a people-only route, with its session; 401 for anything but a user principal. */
function signedInUser(meta: RequestMeta): SignedInUser {
	if (meta.auth?.kind !== "user") throw Errors.unauthorized();
	return { ...userCallerOf(meta), sessionId: meta.auth.sessionId };
}

const AuthService: ServiceSchema<ServiceSettingSchema, AuthMethods, AuthVars> = {
	name: "auth",
	settings: { rest: "/" },
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- sign-up and sign-in --------------------------------------------------------------

		register: {
			rest: "POST /auth/register",
			permission: "public",
			summary: "Create an account and its organisation; the caller becomes its owner",
			successStatus: 201,
			response: LoginAnswer,
			extraResponses: { 409: { description: "An account with this email exists (CONFLICT)." } },
			params: { $$strict: "remove", email: EMAIL_RULE, password: PASSWORD_RULE, name: NAME_RULE, organizationName: NAME_RULE },
			async handler(ctx: ActionCtx<"auth.register", RequestMeta>): Promise<Result<"auth.register">> {
				const rules = THROTTLES.register(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const email = ctx.params.email.toLowerCase();
				assertPasswordAcceptable(ctx.params.password, "password", { email, name: ctx.params.name });
				if (await this.findUserByEmail(email)) throw Errors.conflict("An account with this email already exists");

				const user = await this.db.users.insertDoc({
					email,
					name: ctx.params.name,
					passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost),
					emailVerified: false
				});
				let tenant: TenantView;
				try {
					tenant = await call(ctx, "tenants.create", { name: ctx.params.organizationName, ownerUserId: user.id });
				} catch (err) {
					await this.db.users.removeDocs({ _id: user.id });
					throw err;
				}
				await this.sendVerification(ctx, user, tenant.id);
				await audit(ctx, { action: "auth.registered", tenantId: tenant.id, actor: { kind: "user", id: user.id }, target: user.id });
				ctx.meta.$location = "/api/v1/auth/me";
				return this.loginAnswer(ctx, user, tenant.id);
			}
		},

		login: {
			rest: "POST /auth/login",
			permission: "public",
			summary: "Sign in with email and password",
			response: LoginAnswer,
			params: { $$strict: "remove", email: EMAIL_RULE, password: PASSWORD_RULE },
			async handler(ctx: ActionCtx<"auth.login", RequestMeta>): Promise<Result<"auth.login">> {
				const email = ctx.params.email.toLowerCase();
				const user = await this.findUserByEmail(email);
				const rules = THROTTLES.login(email, ctx.meta.ip, knowsClient(user, ctx.meta.ip));
				await takeAttempt(this.kv, rules);
				// Always one bcrypt comparison, so an unknown email takes as long as a wrong password.
				const ok = await verifyPassword(ctx.params.password, user?.passwordHash ?? null);
				if (!user || !ok) throw Errors.unauthorized(INVALID_LOGIN);
				await forgive(this.kv, rules);
				if (passwordNeedsRehash(user.passwordHash, this.config.bcryptCost)) {
					await this.db.users.updateDoc(user.id, { passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost) });
				}
				const memberships = await call(ctx, "tenants.membershipsOfUser", { userId: user.id });
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
			response: TokenSet,
			params: { $$strict: "remove", refreshToken: TOKEN_RULE },
			async handler(ctx: ActionCtx<"auth.refresh", RequestMeta>): Promise<Result<"auth.refresh">> {
				const rules = THROTTLES.refresh(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const invalid = Errors.unauthorized("Invalid refresh token");
				const presented = hashToken(ctx.params.refreshToken);
				const now = Date.now();

				const found = await findFamily(this.db.sessions, presented);
				if (found.kind === "reused") {
					// A rotated-out token presented again: someone holds a copy. End the whole family.
					const reused = found.session;
					await this.endSessionsWhere({ id: reused.id });
					this.logger.warn(`Refresh token reuse: session ${reused.id} ended`);
					await audit(ctx, { action: "auth.refresh.reused", tenantId: reused.tenantId, actor: { kind: "user", id: reused.userId }, target: reused.id });
				}
				if (found.kind !== "current") throw invalid;
				const session = found.session;
				if (sessionExpired(session, now)) {
					await this.endSessionsWhere({ id: session.id });
					throw invalid;
				}
				const membership = await call(ctx, "tenants.membership", { tenantId: session.tenantId, userId: session.userId });
				if (!membership) {
					await this.endSessionsWhere({ id: session.id });
					throw invalid;
				}
				const refreshToken = await rotateSession(this.db.sessions, session, presented, { ip: ctx.meta.ip, userAgent: ctx.meta.userAgent }, now);
				if (!refreshToken) {
					await this.endSessionsWhere({ id: session.id });
					throw invalid;
				}
				await audit(ctx, { action: "auth.refreshed", tenantId: session.tenantId, actor: { kind: "user", id: session.userId }, target: session.id });
				return tokenSet(this.keys, session, membership.role, refreshToken);
			}
		},

		logout: {
			rest: "POST /auth/logout",
			permission: "public",
			summary: "End the session of a refresh token",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", refreshToken: TOKEN_RULE },
			async handler(ctx: ActionCtx<"auth.logout", RequestMeta>): Promise<Result<"auth.logout">> {
				const session = await findByRefreshHash(this.db.sessions, hashToken(ctx.params.refreshToken));
				if (session) {
					await this.endSessionsWhere({ id: session.id });
					await audit(ctx, { action: "auth.logout", tenantId: session.tenantId, actor: { kind: "user", id: session.userId }, target: session.id });
				}
				return null;
			}
		},

		logoutAll: {
			rest: "POST /auth/logout-all",
			permission: "self",
			summary: "End every session of the signed-in user",
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"auth.logoutAll", RequestMeta>): Promise<Result<"auth.logoutAll">> {
				const caller = signedInUser(ctx.meta);
				const ended = await this.endSessionsWhere({ userId: caller.userId });
				await audit(ctx, { action: "auth.logout.all", target: caller.userId, data: { sessions: ended } });
				return null;
			}
		},

		me: {
			rest: "GET /auth/me",
			permission: "self",
			summary: "The signed-in user, their tenant and role",
			response: MeView,
			async handler(ctx: ActionCtx<"auth.me", RequestMeta>): Promise<Result<"auth.me">> {
				const caller = signedInUser(ctx.meta);
				const user = await this.db.users.getDoc(caller.userId, "User");
				const tenant = await call(ctx, "tenants.find", { tenantId: caller.tenantId });
				if (!tenant) throw Errors.unauthorized();
				return { user: userView(user), tenant: tenantSummary(tenant), role: caller.role };
			}
		},

		// ---- email verification and passwords ------------------------------------------------

		verifyEmail: {
			rest: "POST /auth/verify-email",
			permission: "public",
			summary: "Confirm an email address with the token from the verification email",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", token: TOKEN_RULE },
			async handler(ctx: ActionCtx<"auth.verifyEmail", RequestMeta>): Promise<Result<"auth.verifyEmail">> {
				const rules = THROTTLES.tokenUse(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const used = await claimEmailToken(this.db.email_tokens, ctx.params.token, "verify");
				if (!used) throw Errors.badRequest("Invalid or expired token");
				await giveBack(this.kv, rules);
				await this.db.users.updateDoc(used.userId, { emailVerified: true });
				await this.auditForUser(ctx, used.userId, "auth.email.verified");
				return null;
			}
		},

		resendVerification: {
			rest: "POST /auth/resend-verification",
			permission: "self",
			summary: "Send the verification email again",
			successStatus: 202,
			response: null,
			async handler(ctx: ActionCtx<"auth.resendVerification", RequestMeta>): Promise<Result<"auth.resendVerification">> {
				const caller = signedInUser(ctx.meta);
				const rules = THROTTLES.forgot(caller.userId, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const user = await this.db.users.getDoc(caller.userId, "User");
				if (!user.emailVerified) await this.sendVerification(ctx, user, caller.tenantId);
				return null;
			}
		},

		forgotPassword: {
			rest: "POST /auth/forgot-password",
			permission: "public",
			summary: "Email a password-reset link; answers 202 whether or not the email exists",
			successStatus: 202,
			response: null,
			params: { $$strict: "remove", email: EMAIL_RULE },
			async handler(ctx: ActionCtx<"auth.forgotPassword", RequestMeta>): Promise<Result<"auth.forgotPassword">> {
				const email = ctx.params.email.toLowerCase();
				const rules = THROTTLES.forgot(email, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const user = await this.findUserByEmail(email);
				if (user) {
					// Sent in the background: the answer takes the same time for unknown emails.
					void (async () => {
						const token = await issueEmailToken(this.db.email_tokens, user.id, "reset", RESET_TTL_MS);
						await this.auditForUser(ctx, user.id, "auth.password.reset.requested");
						// No tenant: whoever asked is not signed in, and the email log is per tenant.
						await sendToChannel(ctx.broker, EMAIL_CHANNEL, {
							id: newId(),
							tenantId: null,
							to: user.email,
							template: "reset",
							data: { name: user.name, url: emailLink(this.config.appUrl, "reset", token), expiresInMinutes: RESET_TTL_MS / 60_000 }
						});
					})().catch(err => this.logger.warn("Password reset email failed", (err as Error).message));
				}
				return null;
			}
		},

		resetPassword: {
			rest: "POST /auth/reset-password",
			permission: "public",
			summary: "Set a new password with the token from the reset email; every session ends",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", token: TOKEN_RULE, password: PASSWORD_RULE },
			async handler(ctx: ActionCtx<"auth.resetPassword", RequestMeta>): Promise<Result<"auth.resetPassword">> {
				const rules = THROTTLES.tokenUse(ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				const record = await this.db.email_tokens.findDoc({ tokenHash: hashToken(ctx.params.token), purpose: "reset" });
				const user = record ? await this.db.users.findDoc({ _id: record.userId }) : null;
				if (user) {
					try {
						assertPasswordAcceptable(ctx.params.password, "password", user);
					} catch (err) {
						// A weak new password is not a guessed token.
						await giveBack(this.kv, rules);
						throw err;
					}
				}
				const used = user ? await claimEmailToken(this.db.email_tokens, ctx.params.token, "reset") : null;
				if (!used || !user) throw Errors.badRequest("Invalid or expired token");
				await giveBack(this.kv, rules);
				await this.db.users.updateDoc(user.id, { passwordHash: await hashPassword(ctx.params.password, this.config.bcryptCost), emailVerified: true });
				const ended = await this.endSessionsWhere({ userId: user.id });
				await this.auditForUser(ctx, user.id, "auth.password.reset", { sessions: ended });
				return null;
			}
		},

		changePassword: {
			rest: "POST /auth/change-password",
			permission: "self",
			summary: "Change the password (needs the current one); other sessions end",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", currentPassword: PASSWORD_RULE, newPassword: PASSWORD_RULE },
			async handler(ctx: ActionCtx<"auth.changePassword", RequestMeta>): Promise<Result<"auth.changePassword">> {
				const caller = signedInUser(ctx.meta);
				const rules = THROTTLES.changePassword(caller.userId);
				await takeAttempt(this.kv, rules);
				const user = await this.db.users.getDoc(caller.userId, "User");
				if (!(await verifyPassword(ctx.params.currentPassword, user.passwordHash))) {
					throw Errors.validation([{ field: "currentPassword", message: "is not your current password", type: "password" }]);
				}
				await giveBack(this.kv, rules);
				assertPasswordAcceptable(ctx.params.newPassword, "newPassword", user);
				await this.db.users.updateDoc(user.id, { passwordHash: await hashPassword(ctx.params.newPassword, this.config.bcryptCost) });
				const ended = await this.endSessionsWhere({ userId: user.id }, caller.sessionId);
				await audit(ctx, { action: "auth.password.changed", target: user.id, data: { otherSessionsEnded: ended } });
				return null;
			}
		},

		// ---- sessions -------------------------------------------------------------------------

		sessions: {
			rest: "GET /auth/sessions",
			permission: "self",
			summary: "The signed-in user's sessions, most recently used first",
			response: SessionPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"auth.sessions", RequestMeta>): Promise<Result<"auth.sessions">> {
				const caller = signedInUser(ctx.meta);
				// A person's sessions span every organisation they belong to.
				const page = await this.db.sessions.pageDocs(ALL_TENANTS, { userId: caller.userId }, ctx.params.page, ctx.params.pageSize, ["-lastUsedAt", "-_id"]);
				return { ...page, rows: page.rows.map(s => sessionView(s, caller.sessionId)) };
			}
		},

		endSession: {
			rest: "DELETE /auth/sessions/:id",
			permission: "self",
			summary: "End one of the signed-in user's sessions",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"auth.endSession", RequestMeta>): Promise<Result<"auth.endSession">> {
				const caller = signedInUser(ctx.meta);
				const ended = await this.endSessionsWhere({ id: ctx.params.id, userId: caller.userId });
				if (ended === 0) throw Errors.notFound("Session", ctx.params.id);
				await audit(ctx, { action: "auth.session.ended", target: ctx.params.id });
				return null;
			}
		},

		// ---- API keys -------------------------------------------------------------------------

		createApiKey: {
			rest: "POST /api-keys",
			permission: "apiKeys.manage",
			summary: "Create an API key bound to this tenant and a role; the key is shown only in this answer",
			successStatus: 201,
			response: CreatedApiKey,
			params: { $$strict: "remove", name: NAME_RULE, role: { type: "enum", values: [...API_KEY_ROLES] } },
			async handler(ctx: ActionCtx<"auth.createApiKey", RequestMeta>): Promise<Result<"auth.createApiKey">> {
				const caller = signedInUser(ctx.meta);
				if (!roleAtLeast(caller.role, ctx.params.role)) throw Errors.forbidden("A key cannot have a higher role than yours");
				await this.apiKeyCount.reserve(caller.tenantId, 1, MAX_API_KEYS);
				const { key, doc: fields } = newApiKey(ctx.params.name, ctx.params.role, caller.userId);
				let doc: ApiKeyDoc;
				try {
					doc = await this.db.api_keys.insertDoc(ctx, fields);
				} catch (err) {
					await this.apiKeyCount.release(caller.tenantId, 1);
					throw err;
				}
				await audit(ctx, { action: "apiKey.created", target: doc.id, data: { role: ctx.params.role } });
				ctx.meta.$location = `/api/v1/api-keys/${doc.id}`;
				return createdApiKeyView(doc, key);
			}
		},

		listApiKeys: {
			rest: "GET /api-keys",
			permission: "apiKeys.manage",
			summary: "API keys of the tenant (never the keys themselves)",
			response: ApiKeyPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"auth.listApiKeys", RequestMeta>): Promise<Result<"auth.listApiKeys">> {
				const page = await this.db.api_keys.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(apiKeyView) };
			}
		},

		revokeApiKey: {
			rest: "DELETE /api-keys/:id",
			permission: "apiKeys.manage",
			summary: "Revoke an API key; it stops working at once",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"auth.revokeApiKey", RequestMeta>): Promise<Result<"auth.revokeApiKey">> {
				const doc = await this.db.api_keys.removeDoc(ctx, ctx.params.id, "API key");
				await forgetApiKeys(this.kv, [doc]);
				await this.apiKeyCount.release(doc.tenantId, 1);
				await audit(ctx, { action: "apiKey.revoked", target: doc.id });
				return null;
			}
		},

		// ---- for other services ----------------------------------------------------------------

		/** The gateway's authentication: a bearer token → its principal (401 when not valid). */
		resolve: {
			visibility: "public",
			params: { token: { type: "string", max: 4096 } },
			async handler(ctx: ActionCtx<"auth.resolve">): Promise<Result<"auth.resolve">> {
				const token = ctx.params.token;
				let principal: Principal | null = null;
				const kind = tokenKind(token);
				if (kind === "apiKey") principal = await resolveApiKey(this.db.api_keys, this.kv, token);
				else if (kind === "jwt") {
					const access = verifyAccessToken(this.keys, token);
					if (access.ok) {
						if (await sessionLive(this.db.sessions, this.kv, access.claims.sid)) {
							const { sub, tid, role, sid } = access.claims;
							principal = { kind: "user", tenantId: tid, userId: sub, role, sessionId: sid };
						}
					} else principal = await resolveDeviceToken(this.db.device_credentials, this.kv, this.keys, token);
				}
				if (!principal) throw Errors.unauthorized("Invalid or expired token");
				return principal;
			}
		},

		usersByIds: {
			visibility: "public",
			params: { ids: { type: "array", items: "string", max: 1000 } },
			async handler(ctx: ActionCtx<"auth.usersByIds">): Promise<Result<"auth.usersByIds">> {
				if (ctx.params.ids.length === 0) return [];
				const users = await this.db.users.findDocs({ _id: { $in: ctx.params.ids } });
				return users.map(userView);
			}
		},

		userIdByEmail: {
			visibility: "public",
			params: { email: "string" },
			async handler(ctx: ActionCtx<"auth.userIdByEmail">): Promise<Result<"auth.userIdByEmail">> {
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
			async handler(ctx: ActionCtx<"auth.userForInvitation", Partial<RequestMeta>>): Promise<Result<"auth.userForInvitation">> {
				const email = ctx.params.email.toLowerCase();
				const { name, password } = ctx.params;
				const existing = await this.findUserByEmail(email);
				if (existing) {
					const ip = ctx.meta.ip ?? "internal";
					const rules = THROTTLES.login(email, ip, knowsClient(existing, ip));
					await takeAttempt(this.kv, rules);
					if (!password || !(await verifyPassword(password, existing.passwordHash))) {
						throw Errors.unauthorized("This email has an account: sign in with its password to accept");
					}
					await giveBack(this.kv, rules);
					return { userId: existing.id, created: false };
				}
				if (!name || !password) {
					throw Errors.validation([
						...(name ? [] : [{ field: "name", message: "is required for a new account", type: "required" }]),
						...(password ? [] : [{ field: "password", message: "is required for a new account", type: "required" }])
					]);
				}
				assertPasswordAcceptable(password, "password", { email, name });
				const user = await this.db.users.insertDoc({ email, name, passwordHash: await hashPassword(password, this.config.bcryptCost), emailVerified: true });
				return { userId: user.id, created: true };
			}
		},

		/** A new session for a user already vouched for by the caller (e.g. an accepted invitation). */
		issueSession: {
			visibility: "public",
			params: { userId: "string", tenantId: "string" },
			async handler(ctx: ActionCtx<"auth.issueSession", RequestMeta>): Promise<Result<"auth.issueSession">> {
				const user = await this.db.users.getDoc(ctx.params.userId, "User");
				return this.loginAnswer(ctx, user, ctx.params.tenantId);
			}
		},

		/** Ends sessions (member removed, role changed); their access tokens stop working at once. */
		endSessions: {
			visibility: "public",
			params: { userId: "string", tenantId: { type: "string", optional: true } },
			handler(ctx: ActionCtx<"auth.endSessions">): Promise<Result<"auth.endSessions">> {
				return this.endSessionsWhere({ userId: ctx.params.userId, tenantId: ctx.params.tenantId });
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
			async handler(ctx: ActionCtx<"auth.revokeTenant">): Promise<Result<"auth.revokeTenant">> {
				await this.revokeTenantCredentials(ctx.params.tenantId);
				return null;
			}
		},

		/** A long-lived device token for a paired display; minting again revokes the previous one. */
		mintDeviceToken: {
			visibility: "public",
			params: { tenantId: "string", displayId: "string" },
			async handler(ctx: ActionCtx<"auth.mintDeviceToken">): Promise<Result<"auth.mintDeviceToken">> {
				const deviceToken = await mintDeviceToken(this.db.device_credentials, this.kv, this.keys, ctx.params.tenantId, ctx.params.displayId);
				return { deviceToken };
			}
		},

		revokeDeviceToken: {
			visibility: "public",
			params: { tenantId: "string", displayId: "string" },
			async handler(ctx: ActionCtx<"auth.revokeDeviceToken">): Promise<Result<"auth.revokeDeviceToken">> {
				await this.db.device_credentials.removeDocs(systemScope(ctx.params.tenantId), { displayId: ctx.params.displayId });
				await forgetDevices(this.kv, [ctx.params.displayId]);
				return null;
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"auth.exportTenantData">): Promise<Result<"auth.exportTenantData">> {
				const scope = systemScope(ctx.params.tenantId);
				const { memberships } = await call(ctx, "tenants.exportTenantData", { tenantId: ctx.params.tenantId });
				const userIds = memberships.map(m => m.userId);
				const [users, sessions, apiKeys] = await Promise.all([
					userIds.length ? this.db.users.findDocs({ _id: { $in: userIds } }) : [],
					this.db.sessions.findDocs(scope),
					this.db.api_keys.findDocs(scope)
				]);
				return { users: users.map(userView), sessions: sessions.map(sessionExport), apiKeys: apiKeys.map(apiKeyExport) };
			}
		}
	},

	channels: {
		[TENANT_DELETED_CHANNEL]: {
			group: "auth",
			async handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
				const { tenantId, soleMemberUserIds } = ctx.params;
				// Already done by tenants before it sent this; again in case that call was cut short.
				await this.revokeTenantCredentials(tenantId);
				for (const userId of soleMemberUserIds) {
					await this.endSessionsWhere({ userId });
					await this.db.email_tokens.removeDocs({ userId });
					await this.db.users.removeDocs({ _id: userId });
				}
				this.logger.info(`Tenant ${tenantId} deleted: auth data removed (${soleMemberUserIds.length} accounts)`);
			}
		}
	},

	methods: {
		findUserByEmail(email: string): Promise<UserDoc | null> {
			return this.db.users.findDoc({ email });
		},

		async loginAnswer(ctx: Context<unknown, RequestMeta>, user: UserDoc, tenantId: string): Promise<LoginAnswer> {
			const [tenant, membership] = await Promise.all([
				call(ctx, "tenants.find", { tenantId }),
				call(ctx, "tenants.membership", { tenantId, userId: user.id })
			]);
			if (!tenant || !membership) throw Errors.unauthorized(INVALID_LOGIN);
			if (ctx.meta.ip) {
				// Remembered (when new) so this client keeps signing in while strangers guess.
				const knownClients = rememberedClients(user, ctx.meta.ip);
				if (knownClients) await this.db.users.updateDoc(user.id, { knownClients });
			}
			const { session, refreshToken } = await startSession(this.db.sessions, user.id, tenantId, { ip: ctx.meta.ip ?? "", userAgent: ctx.meta.userAgent ?? "" });
			return { user: userView(user), tenant: tenantSummary(tenant), role: membership.role, ...tokenSet(this.keys, session, membership.role, refreshToken) };
		},

		endSessionsWhere(filter: SessionFilter, exceptSessionId?: string): Promise<number> {
			return endSessions(this.db.sessions, this.kv, filter, exceptSessionId);
		},

		async revokeTenantCredentials(tenantId: string): Promise<void> {
			const scope = systemScope(tenantId);
			await this.endSessionsWhere({ tenantId });
			const keys = await this.db.api_keys.findDocs(scope);
			await this.db.api_keys.removeDocs(scope, {});
			await this.db.auth_usage.removeDocs(scope, {});
			await forgetApiKeys(this.kv, keys);
			const devices = await this.db.device_credentials.findDocs(scope);
			await this.db.device_credentials.removeDocs(scope, {});
			await forgetDevices(this.kv, devices.map(d => d.displayId));
		},

		/** Queued in the durable outbox: an email the mail server does not take yet shows in the tenant's email log, it does not fail the request. */
		async sendVerification(ctx: Context, user: UserDoc, tenantId: string): Promise<void> {
			const token = await issueEmailToken(this.db.email_tokens, user.id, "verify", VERIFY_TTL_MS);
			await sendToChannel(ctx.broker, EMAIL_CHANNEL, {
				id: newId(),
				tenantId,
				to: user.email,
				template: "verify",
				data: { name: user.name, url: emailLink(this.config.appUrl, "verify", token) }
			});
		},

		/** An audit record in every tenant of a user acting before sign-in (their own account's events). */
		async auditForUser(ctx: Context, userId: string, action: string, data: Record<string, unknown> = {}): Promise<void> {
			const memberships = await call(ctx, "tenants.membershipsOfUser", { userId });
			for (const m of memberships) await audit(ctx, { action, tenantId: m.tenantId, actor: { kind: "user", id: userId }, target: userId, data });
		}
	},

	created() {
		this.config = getConfig();
		this.apiKeyCount = new UsageCounter(this.db.auth_usage, {
			resource: "apiKeys",
			measure: tenantId => this.db.api_keys.countDocs(systemScope(tenantId)),
			exceeded: limit => Errors.conflict(`A tenant may hold at most ${limit} API keys; revoke one first`, { limit })
		});
		this.kv = sharedKeyValueStore(this.config);
		this.keys = signingKeys(resolveJwtSecret(this.config), this.config.jwtPreviousSecrets);
	},

	async started() {
		// Loads the common-password list (a missing file stops start-up) and calibrates the
		// dummy hash compared for unknown emails.
		await initPasswords(this.config.bcryptCost);
	}
};

export default AuthService;
