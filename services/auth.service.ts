/**
 * Auth: accounts and passwords, sessions with rotating refresh tokens (reuse detection per
 * RFC 9700), email verification and password reset, API keys, device tokens, and
 * `auth.resolve`, which the gateway calls to turn a bearer token into a principal.
 *
 * Secrets never rest in clear: refresh tokens, email tokens and API keys are stored as
 * SHA-256 hashes (they are long random values), passwords as bcrypt hashes.
 *
 * Two-factor (TOTP) and single sign-on (OpenID Connect) change how a sign-in ends: a password
 * sign-in may answer a challenge instead of tokens, and a tenant's identity provider may sign its
 * people in. One person may belong to several organisations; every token names one of them.
 * TOTP secrets and SSO client secrets are sealed at rest (shared/sealed.ts).
 *
 * The handlers orchestrate; the rules live in services/auth/: accounts.ts (users, known clients,
 * email tokens), sessions.ts (refresh-token families, liveness, ending), two-factor.ts,
 * challenges.ts (sign-ins waiting for their last step), sso.ts, api-keys.ts,
 * device-credentials.ts, and passwords.ts, tokens.ts.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { BaseClient } from "openid-client";
import { ALL_TENANTS, DbMixin, globalCollection, systemScope, tenantCollection, type DbVars } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { EMAIL_CHANNEL, TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	ApiKeyPage,
	API_KEY_ROLES,
	call,
	CreatedApiKey,
	CreatedTenant,
	LoginAnswer,
	MembershipPage,
	MeView,
	RecoveryCodes,
	SecondFactorAnswer,
	SignInAnswer,
	SsoConnectionView,
	TwoFactorEnrolment,
	TwoFactorStatus,
	sendToChannel,
	SessionPage,
	TokenSet,
	tenantSummary,
	type ActionCtx,
	type AuditRecord,
	type ChannelCtx,
	type Result,
	type SecurityEvent,
	type SsoCallbackParams,
	type TenantView
} from "../shared/contracts";
import { Errors, toApiError, type AppError } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { resolveEncryptionKey, resolveJwtSecret } from "../shared/jwt-secret";
import { sharedKeyValueStore, type KeyValueStore } from "../shared/kv";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { roleAtLeast, type Principal, type Role } from "../shared/rbac";
import { EMAIL_RULE, NAME_RULE, PAGE_PARAMS, SSO_COOKIE, TOKEN_RULE, userCallerOf, type RequestMeta } from "../shared/request";
import { sealer, type Sealer } from "../shared/sealed";
import { DestinationError } from "../shared/ssrf";
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
import { hashToken, randomToken, safeEqual } from "../shared/secrets";
import { claimChallenge, EXPIRED_KEPT_MS, findChallenge, openChallenge, removeExpiredChallenges, spendAttempt, CHALLENGE_TTL_MS, type ChallengeDoc, type ChallengeKind } from "./auth/challenges";
import {
	callbackPath,
	flowSecrets,
	identityDecision,
	identityFromClaims,
	identityKey,
	IdentityProviders,
	normalizeDomain,
	secretContext,
	SSO_ROLES,
	ssoRequired,
	startFlow,
	startPath,
	stateUsable,
	checkDomains,
	systemResolveTxt,
	txtRecordName,
	withDomains,
	type ResolveTxt,
	verifierMatches,
	type SsoConnectionDoc,
	type SsoIdentityDoc,
	type SsoStateDoc
} from "./auth/sso";
import {
	beginEnrolment,
	confirmEnrolment,
	disableTwoFactor,
	isEnabled,
	recoveryCodesLeft,
	replaceRecoveryCodes,
	twoFactorOf,
	useSecondFactor,
	type RecoveryCodeDoc,
	type TwoFactorDoc
} from "./auth/two-factor";
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
	PASSWORD_ONLY,
	reachesAccount,
	sessionRole,
	type SessionDoc,
	type SessionFilter,
	type SignedInHow
} from "./auth/sessions";
import { signingKeys, tokenKind, verifyAccessToken, type SigningKeys } from "./auth/tokens";

const INVALID_LOGIN = "Invalid email or password";
const INVALID_CHALLENGE = "Invalid or expired sign-in challenge";
const PASSWORD_RULE = { type: "string", min: 1, max: 1024 } as const;
/** A TOTP code (spaces allowed) or a recovery code (dashes allowed). */
const CODE_RULE = { type: "string", min: 1, max: 64 } as const;

const COLLECTIONS = {
	users: globalCollection<UserDoc>({ uniqueIndexes: ["email"] }),
	sessions: tenantCollection<SessionDoc>({ indexes: ["userId"], uniqueIndexes: ["currentHash"] }),
	email_tokens: globalCollection<EmailTokenDoc>({ uniqueIndexes: ["tokenHash"] }),
	api_keys: tenantCollection<ApiKeyDoc>({ uniqueIndexes: ["keyHash"] }),
	device_credentials: tenantCollection<DeviceCredentialDoc>({ uniqueIndexes: ["displayId"] }),
	two_factor: globalCollection<TwoFactorDoc>({ uniqueIndexes: ["userId"] }),
	recovery_codes: globalCollection<RecoveryCodeDoc>({ indexes: ["userId"], uniqueIndexes: ["codeHash"] }),
	login_challenges: globalCollection<ChallengeDoc>({ uniqueIndexes: ["tokenHash"] }),
	sso_connections: tenantCollection<SsoConnectionDoc>({ uniqueIndexes: ["tenantId"] }),
	sso_states: globalCollection<SsoStateDoc>({ uniqueIndexes: ["stateHash"] }),
	sso_identities: tenantCollection<SsoIdentityDoc>({ indexes: ["userId"], uniqueIndexes: ["key"] }),
	auth_usage: USAGE_COLLECTION
};

interface AuthVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	apiKeyCount: UsageCounter;
	kv: KeyValueStore;
	keys: SigningKeys;
	sealing: Sealer;
	idps: IdentityProviders;
	resolveTxt: ResolveTxt;
	/** Removes expired sign-in challenges and single sign-on states (they are single-use and short-lived, not kept). */
	cleanup?: PeriodicJob;
}

interface AuthMethods {
	findUserByEmail(email: string): Promise<UserDoc | null>;
	/** Signs `user` in to `tenantId`: a new session, and the answer of register and login. */
	loginAnswer(ctx: Context<unknown, RequestMeta>, user: UserDoc, tenantId: string, how?: SignedInHow): Promise<LoginAnswer>;
	/** A password sign-in (or an accepted invitation's): the session, or the second-factor challenge before it. */
	signIn(ctx: Context<unknown, RequestMeta>, user: UserDoc, wantedTenantId: string | null): Promise<SignInAnswer>;
	/** Which tenant a password sign-in lands in, and the tenant (403 when every one requires single sign-on). */
	landingTenant(ctx: Context<unknown, RequestMeta>, user: UserDoc, wantedTenantId: string | null): Promise<{ tenantId: string; tenant: TenantView | null }>;
	/** Why a password session may not be in `tenantId` (SSO required, two-factor required), or null. */
	passwordBarrier(user: Pick<UserDoc, "email">, tenant: TenantView, role: Role, secondFactor: boolean): Promise<SessionBarrier | null>;
	/** Why a single sign-on session may not go on: the tenant's connection was removed, disabled or points at another issuer. */
	ssoBarrier(session: SessionDoc): Promise<SessionBarrier | null>;
	ssoConnection(tenantId: string): Promise<SsoConnectionDoc | null>;
	ssoView(ctx: Context<unknown, RequestMeta>, tenantId: string, connection: SsoConnectionDoc | null): Promise<SsoConnectionView>;
	/** The tenant of a slug and its enabled connection (404 for either missing). */
	completeSso(ctx: Context<SsoCallbackParams, RequestMeta>, target: { tenant: TenantView; connection: SsoConnectionDoc }): Promise<null>;
	ssoTarget(ctx: Context<unknown, RequestMeta>, slug: string): Promise<{ tenant: TenantView; connection: SsoConnectionDoc }>;
	/** An openid-client Client for the connection (503 when its IdP cannot be reached). */
	idpClient(connection: SsoConnectionDoc, redirectUri: string): Promise<BaseClient>;
	/** The gateway's public base URL: PUBLIC_URL, else (outside production) the request's Host; null in production without it. */
	publicUrl(meta: RequestMeta): string | null;
	/** As publicUrl, 503 when there is none. */
	requirePublicUrl(meta: RequestMeta): string;
	/** The signed-in person and their session (401 when it ended meanwhile). */
	sessionOf(meta: RequestMeta): Promise<{ caller: SignedInUser; session: SessionDoc }>;
	/** As sessionOf, but 403 for a session started by single sign-on: account-wide changes need the person's own sign-in. */
	accountHolder(meta: RequestMeta): Promise<{ caller: SignedInUser; session: SessionDoc; user: UserDoc }>;
	/** Checks a code of a signed-in person's second factor (throttled); 422 when wrong. */
	checkOwnCode(ctx: Context<unknown, RequestMeta>, user: UserDoc, code: string): Promise<"totp" | "recovery">;
	securityNotice(ctx: Context<unknown, RequestMeta>, user: UserDoc, event: SecurityEvent): Promise<void>;
	challengeAnswer(user: UserDoc, tenantId: string, kind: ChallengeKind): Promise<SignInAnswer>;
	/**
	 * The live challenge of a presented token, of one of `kinds` (401 with `invalid` otherwise), its
	 * look-up counted against the address's token limit; the caller gives the attempt back once the
	 * token proved good.
	 */
	liveChallenge(ctx: Context<unknown, RequestMeta>, token: string, kinds: ChallengeKind[], invalid?: string): Promise<ChallengeDoc>;
	/** One cleanup pass: expired challenges and SSO states (an hour after expiry); answers how many went. */
	removeExpired(nowMs?: number): Promise<number>;
	/** Ends sessions: their refresh tokens and access tokens stop working at once. */
	endSessionsWhere(filter: SessionFilter, exceptSessionId?: string): Promise<number>;
	revokeTenantCredentials(tenantId: string): Promise<void>;
	sendVerification(ctx: Context, user: UserDoc, tenantId: string): Promise<void>;
	/** `memberships`: the user's, when the caller has them already. */
	auditForUser(ctx: Context, userId: string, action: string, data?: Record<string, unknown>, actor?: AuditRecord["actor"], memberships?: Array<{ tenantId: string }>): Promise<void>;
}

/** The signed-in person behind an account route ("self" and people-only permissions). */
interface SignedInUser {
	userId: string;
	tenantId: string;
	role: Role;
	sessionId?: string;
}

/** Why a session may not reach (or stay in) a tenant: the sign-in it needs instead. */
interface SessionBarrier {
	kind: "sso" | "twoFactor";
	message: string;
	data: Record<string, string>;
}

/** The caller of a people-only route, with its session; 401 for anything but a user principal. */
function signedInUser(meta: RequestMeta): SignedInUser {
	if (meta.auth?.kind !== "user") throw Errors.unauthorized();
	return { ...userCallerOf(meta), sessionId: meta.auth.sessionId };
}

/** How long a single sign-on flow's browser cookie lives (its state record lives as long). */
const SSO_STATE_COOKIE_SEC = 600;

/** The flow's cookie: only sent back to the SSO routes, never readable by scripts. */
function ssoCookie(value: string, secure: boolean, maxAgeSec: number): string {
	return `${SSO_COOKIE}=${value}; Path=/api/v1/auth/sso; Max-Age=${maxAgeSec}; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
}

/** A message from elsewhere, bounded for an error answer. */
function clip(text: string, max = 200): string {
	const line = String(text).replace(/\s+/g, " ").trim();
	return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * What a failed token exchange or ID-token check answers: the identity provider refusing the code
 * or sending a token that does not verify is a 401 (the sign-in failed); not reaching it is a 503.
 */
function idpFailure(err: unknown): AppError {
	const failure = err as { name?: unknown; message?: unknown; error?: unknown };
	// Only the kind of failure, never the values in openid-client's message (an expected nonce).
	if (failure?.name === "RPError") return Errors.unauthorized(`The identity provider's answer was refused: ${clip(String(failure.message).split(",")[0], 80)}`);
	if (failure?.name === "OPError") return Errors.unauthorized(`The identity provider refused the sign-in (${clip(String(failure.error).replace(/[^\w.-]/g, ""), 60)})`);
	if (err instanceof DestinationError) return Errors.unavailable(`The identity provider may not be reached: ${err.message}`);
	return Errors.unavailable("The identity provider cannot be reached; retry later");
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
			summary: "Sign in with email and password: the session, or a second-factor challenge",
			response: SignInAnswer,
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
				return this.signIn(ctx, user, null);
			}
		},

		loginSecondFactor: {
			rest: "POST /auth/login/2fa",
			permission: "public",
			summary: "Finish a sign-in with its second factor: a TOTP code or a recovery code (for an `enrol` challenge, the first code of the new secret)",
			response: SecondFactorAnswer,
			params: { $$strict: "remove", challengeToken: TOKEN_RULE, code: CODE_RULE },
			async handler(ctx: ActionCtx<"auth.loginSecondFactor", RequestMeta>): Promise<Result<"auth.loginSecondFactor">> {
				const challenge = await this.liveChallenge(ctx, ctx.params.challengeToken, ["totp", "enrol"]);
				await giveBack(this.kv, THROTTLES.tokenUse(ctx.meta.ip));
				const rules = THROTTLES.secondFactor(challenge.userId, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				if (!(await spendAttempt(this.db.login_challenges, challenge))) throw Errors.unauthorized(INVALID_CHALLENGE);
				const user = await this.db.users.findDoc({ _id: challenge.userId });
				if (!user) throw Errors.unauthorized(INVALID_CHALLENGE);
				const stores = { twoFactor: this.db.two_factor, recoveryCodes: this.db.recovery_codes };
				const used = challenge.kind === "enrol" ? ((await confirmEnrolment(this.db.two_factor, this.sealing, user.id, ctx.params.code)) ? "totp" : null) : await useSecondFactor(stores, this.sealing, user.id, ctx.params.code);
				if (!used) throw Errors.unauthorized("Invalid code");
				if (!(await claimChallenge(this.db.login_challenges, challenge))) throw Errors.unauthorized(INVALID_CHALLENGE);
				await giveBack(this.kv, rules);
				const actor = { kind: "user" as const, id: user.id };
				let recoveryCodes: string[] | undefined;
				if (challenge.kind === "enrol") {
					recoveryCodes = await replaceRecoveryCodes(this.db.recovery_codes, user.id);
					await this.securityNotice(ctx, user, "twoFactorEnabled");
					await this.auditForUser(ctx, user.id, "auth.2fa.enabled");
				}
				if (used === "recovery") {
					await this.securityNotice(ctx, user, "recoveryCodeUsed");
					await this.auditForUser(ctx, user.id, "auth.2fa.recoveryCodeUsed");
				}
				const answer = await this.loginAnswer(ctx, user, challenge.landingTenantId, { method: "password", secondFactor: true });
				await audit(ctx, { action: "auth.login", tenantId: challenge.landingTenantId, actor, target: user.id, data: { method: "password", secondFactor: used } });
				return recoveryCodes ? { ...answer, recoveryCodes } : answer;
			}
		},

		loginEnrol: {
			rest: "POST /auth/login/2fa/enrol",
			permission: "public",
			summary: "For an `enrol` challenge (the organisation requires two-factor): a new TOTP secret, confirmed with its first code at POST /auth/login/2fa",
			response: TwoFactorEnrolment,
			params: { $$strict: "remove", challengeToken: TOKEN_RULE },
			async handler(ctx: ActionCtx<"auth.loginEnrol", RequestMeta>): Promise<Result<"auth.loginEnrol">> {
				const challenge = await this.liveChallenge(ctx, ctx.params.challengeToken, ["enrol"]);
				await giveBack(this.kv, THROTTLES.tokenUse(ctx.meta.ip));
				const user = await this.db.users.findDoc({ _id: challenge.userId });
				if (!user) throw Errors.unauthorized(INVALID_CHALLENGE);
				if (isEnabled(await twoFactorOf(this.db.two_factor, user.id))) throw Errors.conflict("Two-factor authentication is already on: sign in with a code");
				return beginEnrolment(this.db.two_factor, this.sealing, user.id, user.email);
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
				const [membership, tenant, user] = await Promise.all([
					call(ctx, "tenants.membership", { tenantId: session.tenantId, userId: session.userId }),
					call(ctx, "tenants.find", { tenantId: session.tenantId }),
					this.db.users.findDoc({ _id: session.userId })
				]);
				if (!membership || !tenant || !user) {
					await this.endSessionsWhere({ id: session.id });
					throw invalid;
				}
				// The tenant's requirements as they are now (single sign-on made mandatory, two-factor
				// required): a session that does not meet them ends here, within an access token's life.
				const barrier = session.method === "sso" ? await this.ssoBarrier(session) : await this.passwordBarrier(user, tenant, membership.role, Boolean(session.secondFactor));
				if (barrier) {
					await this.endSessionsWhere({ id: session.id });
					throw Errors.unauthorized(`Sign in again: ${barrier.message}`);
				}
				const refreshToken = await rotateSession(this.db.sessions, session, presented, { ip: ctx.meta.ip, userAgent: ctx.meta.userAgent }, now);
				if (!refreshToken) {
					await this.endSessionsWhere({ id: session.id });
					throw invalid;
				}
				await audit(ctx, { action: "auth.refreshed", tenantId: session.tenantId, actor: { kind: "user", id: session.userId }, target: session.id });
				return tokenSet(this.keys, session, sessionRole(session, membership.role), refreshToken);
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
				const { caller, session } = await this.sessionOf(ctx.meta);
				// A session from a tenant's identity provider reaches that tenant's sessions only.
				const ended = await this.endSessionsWhere({ userId: caller.userId, ...(reachesAccount(session) ? {} : { tenantId: caller.tenantId }) });
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
				const { caller, user } = await this.accountHolder(ctx.meta);
				const rules = THROTTLES.changePassword(caller.userId);
				await takeAttempt(this.kv, rules);
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
				const { caller, session } = await this.sessionOf(ctx.meta);
				// A person's sessions span every organisation they belong to (but for a session from a
				// tenant's identity provider, which sees that tenant's only).
				const scope = reachesAccount(session) ? ALL_TENANTS : systemScope(caller.tenantId);
				const page = await this.db.sessions.pageDocs(scope, { userId: caller.userId }, ctx.params.page, ctx.params.pageSize, ["-lastUsedAt", "-_id"]);
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
				const { caller, session } = await this.sessionOf(ctx.meta);
				const ended = await this.endSessionsWhere({ id: ctx.params.id, userId: caller.userId, ...(reachesAccount(session) ? {} : { tenantId: caller.tenantId }) });
				if (ended === 0) throw Errors.notFound("Session", ctx.params.id);
				await audit(ctx, { action: "auth.session.ended", target: ctx.params.id });
				return null;
			}
		},

		// ---- two-factor --------------------------------------------------------------------------

		twoFactor: {
			rest: "GET /auth/2fa",
			permission: "self",
			summary: "Whether two-factor sign-in is on for the signed-in account, and how many recovery codes are left",
			response: TwoFactorStatus,
			async handler(ctx: ActionCtx<"auth.twoFactor", RequestMeta>): Promise<Result<"auth.twoFactor">> {
				const { user } = await this.accountHolder(ctx.meta);
				const doc = await twoFactorOf(this.db.two_factor, user.id);
				const enabled = isEnabled(doc);
				return { enabled, enabledAt: enabled ? (doc.enabledAt ?? null) : null, recoveryCodesLeft: enabled ? await recoveryCodesLeft(this.db.recovery_codes, user.id) : 0 };
			}
		},

		enrolTwoFactor: {
			rest: "POST /auth/2fa/enrol",
			permission: "self",
			summary: "Start two-factor enrolment (needs the password): a new TOTP secret, its otpauth:// URI and QR code; confirm with POST /auth/2fa/confirm",
			response: TwoFactorEnrolment,
			extraResponses: { 409: { description: "Two-factor authentication is already on (CONFLICT)." } },
			params: { $$strict: "remove", password: PASSWORD_RULE },
			async handler(ctx: ActionCtx<"auth.enrolTwoFactor", RequestMeta>): Promise<Result<"auth.enrolTwoFactor">> {
				const { user } = await this.accountHolder(ctx.meta);
				const rules = THROTTLES.changePassword(user.id);
				await takeAttempt(this.kv, rules);
				if (!(await verifyPassword(ctx.params.password, user.passwordHash))) {
					throw Errors.validation([{ field: "password", message: "is not your current password", type: "password" }]);
				}
				await giveBack(this.kv, rules);
				if (isEnabled(await twoFactorOf(this.db.two_factor, user.id))) throw Errors.conflict("Two-factor authentication is already on");
				return beginEnrolment(this.db.two_factor, this.sealing, user.id, user.email);
			}
		},

		confirmTwoFactor: {
			rest: "POST /auth/2fa/confirm",
			permission: "self",
			summary: "Turn two-factor on with the first code of the enrolled secret; answers ten recovery codes, shown once",
			response: RecoveryCodes,
			params: { $$strict: "remove", code: CODE_RULE },
			async handler(ctx: ActionCtx<"auth.confirmTwoFactor", RequestMeta>): Promise<Result<"auth.confirmTwoFactor">> {
				const { user, session } = await this.accountHolder(ctx.meta);
				const doc = await twoFactorOf(this.db.two_factor, user.id);
				if (isEnabled(doc)) throw Errors.conflict("Two-factor authentication is already on");
				if (!doc?.pendingSecret) throw Errors.conflict("Start with POST /auth/2fa/enrol");
				const rules = THROTTLES.secondFactor(user.id, ctx.meta.ip);
				await takeAttempt(this.kv, rules);
				if (!(await confirmEnrolment(this.db.two_factor, this.sealing, user.id, ctx.params.code))) {
					throw Errors.validation([{ field: "code", message: "is not the current code of the new secret", type: "code" }]);
				}
				await giveBack(this.kv, rules);
				const recoveryCodes = await replaceRecoveryCodes(this.db.recovery_codes, user.id);
				// This session has just shown the second factor.
				await this.db.sessions.updateWhere(systemScope(session.tenantId), { _id: session.id }, { secondFactor: true });
				await this.auditForUser(ctx, user.id, "auth.2fa.enabled");
				await this.securityNotice(ctx, user, "twoFactorEnabled");
				return { recoveryCodes };
			}
		},

		disableTwoFactor: {
			rest: "POST /auth/2fa/disable",
			permission: "self",
			summary: "Turn two-factor off with a current code or a recovery code (409 while an organisation of yours requires it)",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", code: CODE_RULE },
			async handler(ctx: ActionCtx<"auth.disableTwoFactor", RequestMeta>): Promise<Result<"auth.disableTwoFactor">> {
				const { user } = await this.accountHolder(ctx.meta);
				if (!isEnabled(await twoFactorOf(this.db.two_factor, user.id))) throw Errors.conflict("Two-factor authentication is not on");
				const memberships = await call(ctx, "tenants.membershipsOfUser", { userId: user.id });
				for (const m of memberships) {
					const tenant = await call(ctx, "tenants.find", { tenantId: m.tenantId });
					if (tenant?.settings.requireTwoFactor) throw Errors.conflict(`“${tenant.name}” requires two-factor authentication of its members`, { tenantId: tenant.id });
				}
				await this.checkOwnCode(ctx, user, ctx.params.code);
				await disableTwoFactor({ twoFactor: this.db.two_factor, recoveryCodes: this.db.recovery_codes }, user.id);
				// Its sessions showed a factor the account no longer has: a tenant that requires one
				// must not take them for it (switch, refresh).
				await this.db.sessions.updateWhere(ALL_TENANTS, { userId: user.id }, { secondFactor: false });
				await this.auditForUser(ctx, user.id, "auth.2fa.disabled");
				await this.securityNotice(ctx, user, "twoFactorDisabled");
				return null;
			}
		},

		newRecoveryCodes: {
			rest: "POST /auth/2fa/recovery-codes",
			permission: "self",
			summary: "Replace the recovery codes (needs a current code); the earlier ones stop working",
			response: RecoveryCodes,
			params: { $$strict: "remove", code: CODE_RULE },
			async handler(ctx: ActionCtx<"auth.newRecoveryCodes", RequestMeta>): Promise<Result<"auth.newRecoveryCodes">> {
				const { user } = await this.accountHolder(ctx.meta);
				if (!isEnabled(await twoFactorOf(this.db.two_factor, user.id))) throw Errors.conflict("Two-factor authentication is not on");
				await this.checkOwnCode(ctx, user, ctx.params.code);
				const recoveryCodes = await replaceRecoveryCodes(this.db.recovery_codes, user.id);
				await this.auditForUser(ctx, user.id, "auth.2fa.recoveryCodesReplaced");
				await this.securityNotice(ctx, user, "recoveryCodesReplaced");
				return { recoveryCodes };
			}
		},

		// ---- organisations ------------------------------------------------------------------------

		tenants: {
			rest: "GET /auth/tenants",
			permission: "self",
			summary: "The organisations the signed-in person belongs to, with their role (oldest membership first)",
			response: MembershipPage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"auth.tenants", RequestMeta>): Promise<Result<"auth.tenants">> {
				const { caller, session } = await this.sessionOf(ctx.meta);
				const all = await call(ctx, "tenants.membershipsOfUser", { userId: caller.userId });
				// A session from a tenant's identity provider sees that tenant only.
				const memberships = reachesAccount(session) ? all : all.filter(m => m.tenantId === caller.tenantId);
				const { page, pageSize } = ctx.params;
				const slice = memberships.slice((page - 1) * pageSize, page * pageSize);
				const tenants = await Promise.all(slice.map(m => call(ctx, "tenants.find", { tenantId: m.tenantId })));
				const rows = slice.flatMap((m, i) => {
					const tenant = tenants[i];
					return tenant ? [{ tenant: tenantSummary(tenant), role: m.role, joinedAt: m.joinedAt, current: m.tenantId === caller.tenantId }] : [];
				});
				return { rows, total: memberships.length, page, pageSize, totalPages: Math.ceil(memberships.length / pageSize) };
			}
		},

		switchTenant: {
			rest: "POST /auth/switch-tenant",
			permission: "self",
			summary: "A new session in another organisation of the signed-in person (this one stays signed in)",
			response: LoginAnswer,
			params: { $$strict: "remove", tenantId: ID_RULE },
			async handler(ctx: ActionCtx<"auth.switchTenant", RequestMeta>): Promise<Result<"auth.switchTenant">> {
				const { caller, session, user } = await this.accountHolder(ctx.meta);
				const [membership, tenant] = await Promise.all([
					call(ctx, "tenants.membership", { tenantId: ctx.params.tenantId, userId: caller.userId }),
					call(ctx, "tenants.find", { tenantId: ctx.params.tenantId })
				]);
				// Not a member: the same 404 as a tenant that does not exist.
				if (!membership || !tenant) throw Errors.notFound("Tenant", ctx.params.tenantId);
				const barrier = await this.passwordBarrier(user, tenant, membership.role, Boolean(session.secondFactor));
				if (barrier) throw Errors.forbidden(barrier.message, barrier.data);
				const answer = await this.loginAnswer(ctx, user, tenant.id, { method: "password", secondFactor: Boolean(session.secondFactor) });
				const actor = { kind: "user" as const, id: caller.userId };
				// Each tenant's log names the person only: neither learns the other tenant's id from it.
				await audit(ctx, { action: "auth.tenant.switchedAway", tenantId: caller.tenantId, actor, target: caller.userId });
				await audit(ctx, { action: "auth.tenant.switched", tenantId: tenant.id, actor, target: caller.userId });
				return answer;
			}
		},

		createTenant: {
			rest: "POST /tenants",
			permission: "self",
			summary: "Create another organisation, owned by the signed-in person (switch to it with POST /auth/switch-tenant)",
			successStatus: 201,
			response: CreatedTenant,
			params: { $$strict: "remove", name: NAME_RULE },
			async handler(ctx: ActionCtx<"auth.createTenant", RequestMeta>): Promise<Result<"auth.createTenant">> {
				const { caller } = await this.accountHolder(ctx.meta);
				await takeAttempt(this.kv, THROTTLES.createTenant(caller.userId));
				const tenant = await call(ctx, "tenants.create", { name: ctx.params.name, ownerUserId: caller.userId });
				await audit(ctx, { action: "tenant.created", tenantId: tenant.id, actor: { kind: "user", id: caller.userId }, target: tenant.id, data: { from: caller.tenantId } });
				ctx.meta.$location = "/api/v1/auth/tenants";
				return { tenant, role: "owner" };
			}
		},

		// ---- single sign-on ----------------------------------------------------------------------

		getSso: {
			rest: "GET /tenant/sso",
			permission: "sso.manage",
			summary: "The tenant's single sign-on connection (OpenID Connect), without its client secret; unconfigured, the redirect URI to register",
			response: SsoConnectionView,
			async handler(ctx: ActionCtx<"auth.getSso", RequestMeta>): Promise<Result<"auth.getSso">> {
				const { tenantId } = userCallerOf(ctx.meta);
				return this.ssoView(ctx, tenantId, await this.ssoConnection(tenantId));
			}
		},

		putSso: {
			rest: "PUT /tenant/sso",
			permission: "sso.manage",
			summary: "Configure single sign-on: the issuer (discovered now), client id and secret, allowed email domains, role of people who join, whether it is mandatory",
			response: SsoConnectionView,
			params: {
				$$strict: "remove",
				issuer: { type: "string", min: 1, max: 500 },
				clientId: { type: "string", min: 1, max: 500 },
				clientSecret: { type: "string", min: 1, max: 2000, optional: true },
				allowedDomains: { type: "array", items: { type: "string", max: 253 }, min: 1, max: 50 },
				defaultRole: { type: "enum", values: [...SSO_ROLES], optional: true },
				enforced: { type: "boolean", optional: true },
				enabled: { type: "boolean", optional: true }
			},
			async handler(ctx: ActionCtx<"auth.putSso", RequestMeta>): Promise<Result<"auth.putSso">> {
				const caller = userCallerOf(ctx.meta);
				const p = ctx.params;
				const existing = await this.ssoConnection(caller.tenantId);
				// Exactly as typed: the discovery document's `issuer` must match it (Auth0's ends with "/").
				const issuer = p.issuer.trim();
				const domains = p.allowedDomains.map(normalizeDomain);
				const problems = [
					...(/^https:\/\//.test(issuer) || (this.config.ssoAllowPrivate && /^http:\/\//.test(issuer)) ? [] : [{ field: "issuer", message: "must be an https URL", type: "url" }]),
					...domains.flatMap((d, i) => (d ? [] : [{ field: `allowedDomains[${i}]`, message: "is not a domain name", type: "domain" }])),
					...(p.clientSecret || existing ? [] : [{ field: "clientSecret", message: "is required for a new connection", type: "required" }])
				];
				if (problems.length) throw Errors.validation(problems);
				this.requirePublicUrl(ctx.meta);
				// Discovery now, so a wrong issuer is a 422 here rather than a failed sign-in later.
				this.idps.forget(issuer);
				try {
					await this.idps.issuer(issuer);
				} catch (err) {
					const reason = err instanceof DestinationError ? err.message : clip((err as Error).message);
					throw Errors.validation([{ field: "issuer", message: `could not be discovered: ${reason}`, type: "issuer" }]);
				}
				const fields = {
					issuer,
					clientId: p.clientId,
					clientSecret: p.clientSecret ? this.sealing.seal(p.clientSecret, secretContext(caller.tenantId)) : (existing as SsoConnectionDoc).clientSecret,
					domains: withDomains(existing?.domains ?? [], domains as string[]),
					defaultRole: p.defaultRole ?? existing?.defaultRole ?? "viewer",
					enforced: p.enforced ?? existing?.enforced ?? false,
					enabled: p.enabled ?? existing?.enabled ?? true
				};
				const saved = existing ? await this.db.sso_connections.updateDoc(ctx, existing.id, fields, "SSO connection") : await this.db.sso_connections.insertDoc(ctx, fields);
				// Another identity provider, or none: what the old one vouched for ends now.
				if (existing && (existing.issuer !== issuer || !fields.enabled)) await this.endSessionsWhere({ tenantId: caller.tenantId, method: "sso" });
				await audit(ctx, {
					action: existing ? "sso.updated" : "sso.configured",
					target: saved.id,
					data: { issuer, allowedDomains: fields.domains.map(d => d.domain), enforced: fields.enforced, enabled: fields.enabled, secretChanged: Boolean(p.clientSecret) }
				});
				return this.ssoView(ctx, caller.tenantId, saved);
			}
		},

		deleteSso: {
			rest: "DELETE /tenant/sso",
			permission: "sso.manage",
			summary: "Remove single sign-on; members sign in with their passwords again",
			successStatus: 204,
			response: null,
			async handler(ctx: ActionCtx<"auth.deleteSso", RequestMeta>): Promise<Result<"auth.deleteSso">> {
				const connection = await this.ssoConnection(userCallerOf(ctx.meta).tenantId);
				if (!connection) throw Errors.notFound("SSO connection");
				await this.db.sso_connections.removeDoc(ctx, connection.id, "SSO connection");
				const ended = await this.endSessionsWhere({ tenantId: connection.tenantId, method: "sso" });
				await audit(ctx, { action: "sso.removed", target: connection.id, data: { sessionsEnded: ended } });
				return null;
			}
		},

		verifySsoDomains: {
			rest: "POST /tenant/sso/verify-domains",
			permission: "sso.manage",
			summary: "Look up each unverified domain's DNS TXT record (GET /tenant/sso names it); a domain counts for sign-in once verified",
			response: SsoConnectionView,
			async handler(ctx: ActionCtx<"auth.verifySsoDomains", RequestMeta>): Promise<Result<"auth.verifySsoDomains">> {
				const { tenantId } = userCallerOf(ctx.meta);
				const connection = await this.ssoConnection(tenantId);
				if (!connection) throw Errors.notFound("SSO connection");
				const domains = await checkDomains(connection.domains, this.resolveTxt);
				const verified = domains.filter((d, i) => d.verifiedAt && !connection.domains[i].verifiedAt).map(d => d.domain);
				if (verified.length === 0) return this.ssoView(ctx, tenantId, connection);
				// Only the verification moves (a conditional update: a PUT meanwhile keeps its domains).
				const updated = await this.db.sso_connections.updateWhere(ctx, { _id: connection.id, updatedAt: connection.updatedAt }, { domains });
				if (updated === 0) throw Errors.conflict("The connection changed meanwhile: verify again");
				await audit(ctx, { action: "sso.domains.verified", target: connection.id, data: { domains: verified } });
				return this.ssoView(ctx, tenantId, await this.ssoConnection(tenantId));
			}
		},

		ssoStart: {
			rest: "GET /auth/sso/:tenantSlug",
			permission: "public",
			summary: "Start single sign-on: redirects the browser to the organisation's identity provider",
			successStatus: 302,
			response: null,
			params: {
				$$strict: "remove",
				tenantSlug: { type: "string", min: 1, max: 200 },
				// The CMS's own PKCE challenge (S256 of a verifier it keeps), shown again at the exchange.
				// (Required; checked after the tenant, so an unknown one is a 404 whatever the query.)
				codeChallenge: { type: "string", min: 43, max: 128, pattern: /^[A-Za-z0-9_-]+$/, optional: true }
			},
			async handler(ctx: ActionCtx<"auth.ssoStart", RequestMeta>): Promise<Result<"auth.ssoStart">> {
				await takeAttempt(this.kv, THROTTLES.sso(ctx.meta.ip));
				const { tenant, connection } = await this.ssoTarget(ctx, ctx.params.tenantSlug);
				if (!ctx.params.codeChallenge) {
					throw Errors.validation([{ field: "codeChallenge", message: "is required: the S256 challenge of a verifier the client keeps for POST /auth/sso/exchange", type: "required" }]);
				}
				const redirectUri = this.requirePublicUrl(ctx.meta) + callbackPath(tenant.slug);
				const client = await this.idpClient(connection, redirectUri);
				const flow = startFlow(client, this.sealing, tenant.id, redirectUri, ctx.params.codeChallenge);
				await this.db.sso_states.insertDoc(flow.doc);
				ctx.meta.$location = flow.authorizationUrl;
				ctx.meta.$responseHeaders = { "Set-Cookie": ssoCookie(flow.browserSecret, redirectUri.startsWith("https:"), SSO_STATE_COOKIE_SEC), "Cache-Control": "no-store" };
				return null;
			}
		},

		ssoCallback: {
			rest: "GET /auth/sso/:tenantSlug/callback",
			permission: "public",
			summary: "Where the identity provider returns: checks the answer and redirects to the CMS with a one-time code for POST /auth/sso/exchange, or, when the answer fails, with `error` (the error type), `error_description` and `request_id`",
			successStatus: 302,
			response: null,
			params: {
				$$strict: "remove",
				tenantSlug: { type: "string", min: 1, max: 200 },
				code: { type: "string", max: 4096, optional: true },
				state: { type: "string", max: 512, optional: true },
				// RFC 9207: the issuer names itself in the answer (checked by openid-client when it advertises it).
				iss: { type: "string", max: 500, optional: true },
				error: { type: "string", max: 200, optional: true },
				error_description: { type: "string", max: 1000, optional: true }
			},
			async handler(ctx: ActionCtx<"auth.ssoCallback", RequestMeta>): Promise<Result<"auth.ssoCallback">> {
				await takeAttempt(this.kv, THROTTLES.sso(ctx.meta.ip));
				// No such organisation, or no SSO there: a 404 like any route's (no sign-in was under way).
				const target = await this.ssoTarget(ctx, ctx.params.tenantSlug);
				try {
					return await this.completeSso(ctx, target);
				} catch (err) {
					// A person's browser arrives here from the identity provider: a failure goes back to the
					// CMS as well, named (type, message, request id) for it to show, not as JSON they read.
					const failure = toApiError(err);
					if (failure.code >= 500) this.logger.error("A single sign-on callback failed", err);
					const back = new URLSearchParams({ error: failure.type, error_description: failure.message, request_id: ctx.meta.requestId ?? "" });
					ctx.meta.$location = `${this.config.appUrl}/sso/callback?${back.toString()}`;
					ctx.meta.$responseHeaders = { "Cache-Control": "no-store" };
					return null;
				}
			}
		},

		ssoExchange: {
			rest: "POST /auth/sso/exchange",
			permission: "public",
			summary: "Trade the one-time code of a single sign-on callback, with the verifier of the flow's codeChallenge, for a session (works once, within 2 minutes)",
			response: LoginAnswer,
			params: { $$strict: "remove", code: TOKEN_RULE, codeVerifier: { type: "string", min: 43, max: 128 } },
			async handler(ctx: ActionCtx<"auth.ssoExchange", RequestMeta>): Promise<Result<"auth.ssoExchange">> {
				const invalid = "Invalid or expired code";
				const challenge = await this.liveChallenge(ctx, ctx.params.code, ["sso"], invalid);
				// Claimed before the verifier is compared: a wrong one burns the code (no guessing).
				if (!(await claimChallenge(this.db.login_challenges, challenge))) throw Errors.unauthorized(invalid);
				if (!challenge.exchangeChallenge || !verifierMatches(ctx.params.codeVerifier, challenge.exchangeChallenge)) {
					throw Errors.unauthorized("This sign-in was not started by this client: start again");
				}
				await giveBack(this.kv, THROTTLES.tokenUse(ctx.meta.ip));
				const user = await this.db.users.findDoc({ _id: challenge.userId });
				if (!user) throw Errors.unauthorized(invalid);
				const answer = await this.loginAnswer(ctx, user, challenge.landingTenantId, { method: "sso", secondFactor: false, ssoIssuer: challenge.ssoIssuer });
				await audit(ctx, { action: "auth.login", tenantId: challenge.landingTenantId, actor: { kind: "user", id: user.id }, target: user.id, data: { method: "sso" } });
				return answer;
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

		/**
		 * Signs in a user the caller vouched for by a password (an accepted invitation) as a password
		 * sign-in would: their second factor, the tenant's requirements.
		 */
		issueSession: {
			visibility: "public",
			params: { userId: "string", tenantId: "string" },
			async handler(ctx: ActionCtx<"auth.issueSession", RequestMeta>): Promise<Result<"auth.issueSession">> {
				const user = await this.db.users.getDoc(ctx.params.userId, "User");
				return this.signIn(ctx, user, ctx.params.tenantId);
			}
		},

		twoFactorEnabled: {
			visibility: "public",
			params: { userId: "string" },
			async handler(ctx: ActionCtx<"auth.twoFactorEnabled">): Promise<Result<"auth.twoFactorEnabled">> {
				return isEnabled(await twoFactorOf(this.db.two_factor, ctx.params.userId));
			}
		},

		/**
		 * For an operator (`npm run admin -- reset-2fa <email>`), never the REST API: a person who
		 * lost both their authenticator and their recovery codes cannot turn two-factor off
		 * themselves, and no tenant's admin may (the account spans tenants that admin does not
		 * manage). Every session ends; the person is told by email and every tenant of theirs
		 * gets an audit record. An organisation that requires two-factor asks them to enrol again
		 * at their next sign-in. The steps that may fail (the memberships, over the network; the
		 * sessions) come before two-factor goes off, so a failed run can simply be run again.
		 */
		resetTwoFactor: {
			visibility: "public",
			params: { email: { type: "string", min: 3, max: 254 } },
			async handler(ctx: ActionCtx<"auth.resetTwoFactor", RequestMeta>): Promise<Result<"auth.resetTwoFactor">> {
				const user = await this.findUserByEmail(ctx.params.email.trim().toLowerCase());
				if (!user) throw Errors.notFound("User", ctx.params.email);
				if (!isEnabled(await twoFactorOf(this.db.two_factor, user.id))) throw Errors.conflict("Two-factor authentication is not on for this account");
				const memberships = await call(ctx, "tenants.membershipsOfUser", { userId: user.id });
				const sessionsEnded = await this.endSessionsWhere({ userId: user.id });
				await disableTwoFactor({ twoFactor: this.db.two_factor, recoveryCodes: this.db.recovery_codes }, user.id);
				await this.auditForUser(ctx, user.id, "auth.2fa.reset", { by: "operator" }, { kind: "anonymous", id: null }, memberships);
				await this.securityNotice(ctx, user, "twoFactorReset");
				return { userId: user.id, email: user.email, sessionsEnded };
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
				const [users, sessions, apiKeys, sso] = await Promise.all([
					userIds.length ? this.db.users.findDocs({ _id: { $in: userIds } }) : [],
					this.db.sessions.findDocs(scope),
					this.db.api_keys.findDocs(scope),
					this.ssoConnection(ctx.params.tenantId)
				]);
				const ssoConnection = sso
					? { issuer: sso.issuer, clientId: sso.clientId, allowedDomains: sso.domains.map(d => d.domain), defaultRole: sso.defaultRole, enforced: sso.enforced, enabled: sso.enabled, updatedAt: sso.updatedAt }
					: null;
				return { users: users.map(userView), sessions: sessions.map(sessionExport), apiKeys: apiKeys.map(apiKeyExport), ssoConnection };
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
					await disableTwoFactor({ twoFactor: this.db.two_factor, recoveryCodes: this.db.recovery_codes }, userId);
					await this.db.login_challenges.removeDocs({ userId });
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

		async loginAnswer(ctx: Context<unknown, RequestMeta>, user: UserDoc, tenantId: string, how: SignedInHow = PASSWORD_ONLY): Promise<LoginAnswer> {
			const [tenant, membership] = await Promise.all([
				call(ctx, "tenants.find", { tenantId }),
				call(ctx, "tenants.membership", { tenantId, userId: user.id })
			]);
			if (!tenant || !membership) throw Errors.unauthorized(INVALID_LOGIN);
			// Remembered (when new) so this client keeps signing in while strangers guess; the
			// tenant so the next sign-in lands where this one did.
			const knownClients = ctx.meta.ip ? rememberedClients(user, ctx.meta.ip) : null;
			if (knownClients || user.lastTenantId !== tenantId) {
				await this.db.users.updateDoc(user.id, { ...(knownClients ? { knownClients } : {}), lastTenantId: tenantId });
			}
			const { session, refreshToken } = await startSession(this.db.sessions, user.id, tenantId, { ip: ctx.meta.ip ?? "", userAgent: ctx.meta.userAgent ?? "" }, how);
			const role = sessionRole(session, membership.role);
			return { user: userView(user), tenant: tenantSummary(tenant), role, ...tokenSet(this.keys, session, role, refreshToken) };
		},

		async signIn(ctx: Context<unknown, RequestMeta>, user: UserDoc, wantedTenantId: string | null): Promise<SignInAnswer> {
			const { tenantId, tenant } = await this.landingTenant(ctx, user, wantedTenantId);
			if (isEnabled(await twoFactorOf(this.db.two_factor, user.id))) return this.challengeAnswer(user, tenantId, "totp");
			if (tenant?.settings.requireTwoFactor) return this.challengeAnswer(user, tenantId, "enrol");
			const answer = await this.loginAnswer(ctx, user, tenantId);
			await audit(ctx, { action: "auth.login", tenantId, actor: { kind: "user", id: user.id }, target: user.id, data: { method: "password" } });
			return answer;
		},

		async liveChallenge(ctx: Context<unknown, RequestMeta>, token: string, kinds: ChallengeKind[], invalid = INVALID_CHALLENGE): Promise<ChallengeDoc> {
			await takeAttempt(this.kv, THROTTLES.tokenUse(ctx.meta.ip));
			const challenge = await findChallenge(this.db.login_challenges, token);
			if (!challenge || !kinds.includes(challenge.kind)) throw Errors.unauthorized(invalid);
			return challenge;
		},

		async challengeAnswer(user: UserDoc, tenantId: string, kind: ChallengeKind): Promise<SignInAnswer> {
			const challengeToken = await openChallenge(this.db.login_challenges, { userId: user.id, landingTenantId: tenantId, kind });
			return { challenge: kind === "enrol" ? "enrol" : "totp", challengeToken, expiresIn: CHALLENGE_TTL_MS[kind] / 1000 };
		},

		async landingTenant(ctx: Context<unknown, RequestMeta>, user: UserDoc, wantedTenantId: string | null): Promise<{ tenantId: string; tenant: TenantView | null }> {
			const memberships = await call(ctx, "tenants.membershipsOfUser", { userId: user.id });
			const candidates = wantedTenantId ? memberships.filter(m => m.tenantId === wantedTenantId) : memberships;
			if (memberships.length === 0) throw Errors.forbidden("This account belongs to no organisation");
			if (candidates.length === 0) throw Errors.unauthorized(INVALID_LOGIN);
			// The last used tenant first, then the oldest membership.
			const ordered = [...candidates].sort((a, b) => Number(b.tenantId === user.lastTenantId) - Number(a.tenantId === user.lastTenantId));
			let firstBarrier: SessionBarrier | null = null;
			for (const m of ordered) {
				const tenant = await call(ctx, "tenants.find", { tenantId: m.tenantId });
				// The password barrier's own rule (a second factor counts as shown: only SSO can bar here).
				const barrier = tenant ? await this.passwordBarrier(user, tenant, m.role, true) : null;
				if (!barrier) return { tenantId: m.tenantId, tenant };
				firstBarrier ??= barrier;
			}
			// Only after the right password: nobody learns which accounts use single sign-on.
			throw Errors.forbidden(firstBarrier?.message ?? "Sign in with your organisation's single sign-on", firstBarrier?.data);
		},

		async passwordBarrier(user: Pick<UserDoc, "email">, tenant: TenantView, role: Role, secondFactor: boolean): Promise<SessionBarrier | null> {
			// Owners keep password sign-in: the way back in when the identity provider fails.
			if (role !== "owner" && ssoRequired(await this.ssoConnection(tenant.id), user.email)) {
				return {
					kind: "sso",
					message: `“${tenant.name}” requires single sign-on for your email domain: sign in through your identity provider`,
					data: { requirement: "sso", ssoUrl: startPath(tenant.slug) }
				};
			}
			if (tenant.settings.requireTwoFactor && !secondFactor) {
				return {
					kind: "twoFactor",
					message: `“${tenant.name}” requires two-factor authentication: turn it on (POST /auth/2fa/enrol) and sign in with a code`,
					data: { requirement: "twoFactor" }
				};
			}
			return null;
		},

		async ssoView(ctx: Context<unknown, RequestMeta>, tenantId: string, connection: SsoConnectionDoc | null): Promise<SsoConnectionView> {
			const tenant = await call(ctx, "tenants.find", { tenantId });
			// Without PUBLIC_URL in production: the paths (SSO cannot start until it is set).
			const base = this.publicUrl(ctx.meta) ?? "";
			const urls = { redirectUri: base + callbackPath(tenant?.slug ?? ""), loginUrl: base + startPath(tenant?.slug ?? "") };
			if (!connection) {
				return { configured: false, issuer: null, clientId: null, clientSecretSet: false, allowedDomains: [], domains: [], defaultRole: "viewer", enforced: false, enabled: false, ...urls, updatedAt: null };
			}
			const { issuer, clientId, defaultRole, enforced, enabled, updatedAt } = connection;
			const domains = connection.domains.map(d => ({ domain: d.domain, verified: Boolean(d.verifiedAt), record: { type: "TXT" as const, name: txtRecordName(d.domain), value: d.token } }));
			return { configured: true, issuer, clientId, clientSecretSet: true, allowedDomains: connection.domains.map(d => d.domain), domains, defaultRole, enforced, enabled, ...urls, updatedAt };
		},

		/** The callback's work (ssoCallback): checks the identity provider's answer, signs the person in, and sets the redirect to the CMS. */
		async completeSso(ctx: Context<SsoCallbackParams, RequestMeta>, { tenant, connection }: { tenant: TenantView; connection: SsoConnectionDoc }): Promise<null> {
			const p = ctx.params;
			if (p.error) throw Errors.unauthorized(`The identity provider did not sign you in (${clip(p.error.replace(/[^\w.-]/g, ""), 60)})`);
			if (!p.code || !p.state) throw Errors.badRequest("The callback needs `code` and `state`");
			const refused = Errors.unauthorized("Invalid or expired single sign-on state: start again");
			const state = await this.db.sso_states.findDoc({ stateHash: hashToken(p.state) });
			if (!state || !stateUsable(state, Date.now()) || state.connectionTenantId !== tenant.id) throw refused;
			// The browser that started the flow, and only it (a callback link sent to someone else fails here).
			const cookie = (ctx.meta.headers?.cookie ?? "").slice(SSO_COOKIE.length + 1);
			if (!cookie || !safeEqual(hashToken(cookie), state.browserHash)) throw Errors.unauthorized("This sign-in was started in another browser: start again");
			if ((await this.db.sso_states.updateWhere({ _id: state.id, usedAt: { $exists: false } }, { usedAt: new Date().toISOString() })) !== 1) throw refused;

			const client = await this.idpClient(connection, state.redirectUri);
			const { codeVerifier, nonce } = flowSecrets(this.sealing, state);
			let claims;
			try {
				const tokens = await client.callback(state.redirectUri, { code: p.code, state: p.state, ...(p.iss ? { iss: p.iss } : {}) }, { code_verifier: codeVerifier, state: p.state, nonce });
				claims = tokens.claims();
			} catch (err) {
				throw idpFailure(err);
			}
			const identity = identityFromClaims(claims, connection);
			if (!identity.ok) throw Errors.forbidden(identity.reason);

			const key = identityKey(tenant.id, connection.issuer, identity.subject);
			// The account the identity is linked to (a link to a deleted account no longer counts), else the email's.
			const link = await this.db.sso_identities.findDoc(systemScope(tenant.id), { key });
			const linkedAccount = link ? await this.db.users.findDoc({ _id: link.userId }) : null;
			if (link && !linkedAccount) await this.db.sso_identities.removeDocs(systemScope(tenant.id), { key });
			const linked = linkedAccount !== null;
			const account = linkedAccount ?? (await this.findUserByEmail(identity.email));
			const isMember = account ? Boolean(await call(ctx, "tenants.membership", { tenantId: tenant.id, userId: account.id })) : false;
			const decision = identityDecision({ accountUserId: account?.id ?? null, isMember });
			if (decision.kind === "refuse") throw Errors.conflict(decision.reason);
			const user =
				account ??
				(await this.db.users.insertDoc({
					email: identity.email,
					name: identity.name,
					// No password: sign-in goes through the identity provider (a reset can set one).
					passwordHash: await hashPassword(randomToken("", 32), this.config.bcryptCost),
					emailVerified: true
				}));
			const { added } = await call(ctx, "tenants.addMember", { tenantId: tenant.id, userId: user.id, role: connection.defaultRole });
			if (!linked) {
				await this.db.sso_identities.insertDoc(systemScope(tenant.id), { key, userId: user.id, issuer: connection.issuer, subject: identity.subject }).catch((err: unknown) => {
					// The same identity linked by a parallel callback: the link is there.
					if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
				});
			}
			await audit(ctx, { action: "auth.sso.signedIn", tenantId: tenant.id, actor: { kind: "user", id: user.id }, target: user.id, data: { created: decision.kind === "create", joined: added } });
			const code = await openChallenge(this.db.login_challenges, { userId: user.id, landingTenantId: tenant.id, kind: "sso", ssoIssuer: connection.issuer, exchangeChallenge: state.exchangeChallenge });
			ctx.meta.$location = `${this.config.appUrl}/sso/callback?code=${encodeURIComponent(code)}`;
			ctx.meta.$responseHeaders = { "Set-Cookie": ssoCookie("", state.redirectUri.startsWith("https:"), 0), "Cache-Control": "no-store" };
			return null;
		},

		async ssoTarget(ctx: Context<unknown, RequestMeta>, slug: string): Promise<{ tenant: TenantView; connection: SsoConnectionDoc }> {
			const tenant = await call(ctx, "tenants.findBySlug", { slug });
			const connection = tenant ? await this.ssoConnection(tenant.id) : null;
			// An unknown organisation and one without single sign-on look alike.
			if (!tenant || !connection?.enabled) throw Errors.notFound("SSO connection");
			return { tenant, connection };
		},

		async idpClient(connection: SsoConnectionDoc, redirectUri: string): Promise<BaseClient> {
			const secret = this.sealing.open(connection.clientSecret, secretContext(connection.tenantId));
			try {
				return await this.idps.client(connection, secret, redirectUri);
			} catch (err) {
				throw idpFailure(err);
			}
		},

		publicUrl(meta: RequestMeta): string | null {
			if (this.config.publicUrl) return this.config.publicUrl;
			// In production redirect URIs come from configuration only, never from a request header.
			if (this.config.nodeEnv === "production") return null;
			const host = meta.headers?.host ?? "";
			// Without PUBLIC_URL the request's own host (the IdP only accepts registered redirect URIs).
			return /^[a-z0-9.-]+(:\d{1,5})?$/i.test(host) || /^\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(host) ? `http://${host}` : `http://localhost:${this.config.port}`;
		},

		requirePublicUrl(meta: RequestMeta): string {
			const base = this.publicUrl(meta);
			if (!base) throw Errors.unavailable("Single sign-on needs PUBLIC_URL, the gateway's public URL, for its redirect URIs");
			return base;
		},

		async ssoBarrier(session: SessionDoc): Promise<SessionBarrier | null> {
			const connection = await this.ssoConnection(session.tenantId);
			if (connection?.enabled && connection.issuer === session.ssoIssuer) return null;
			return { kind: "sso", message: "this organisation's single sign-on changed", data: { requirement: "sso" } };
		},

		ssoConnection(tenantId: string): Promise<SsoConnectionDoc | null> {
			return this.db.sso_connections.findDoc(systemScope(tenantId), {});
		},

		async sessionOf(meta: RequestMeta): Promise<{ caller: SignedInUser; session: SessionDoc }> {
			const caller = signedInUser(meta);
			const session = caller.sessionId ? await this.db.sessions.findDoc(systemScope(caller.tenantId), { _id: caller.sessionId }) : null;
			if (!session) throw Errors.unauthorized();
			return { caller, session };
		},

		async accountHolder(meta: RequestMeta): Promise<{ caller: SignedInUser; session: SessionDoc; user: UserDoc }> {
			const { caller, session } = await this.sessionOf(meta);
			if (!reachesAccount(session)) {
				throw Errors.forbidden("This session was started by your organisation's single sign-on and reaches that organisation only: sign in with your password for account settings");
			}
			return { caller, session, user: await this.db.users.getDoc(caller.userId, "User") };
		},

		async checkOwnCode(ctx: Context<unknown, RequestMeta>, user: UserDoc, code: string): Promise<"totp" | "recovery"> {
			const rules = THROTTLES.secondFactor(user.id, ctx.meta.ip);
			await takeAttempt(this.kv, rules);
			const used = await useSecondFactor({ twoFactor: this.db.two_factor, recoveryCodes: this.db.recovery_codes }, this.sealing, user.id, code);
			if (!used) throw Errors.validation([{ field: "code", message: "is not a valid code (or was used already)", type: "code" }]);
			await giveBack(this.kv, rules);
			if (used === "recovery") await this.securityNotice(ctx, user, "recoveryCodeUsed");
			return used;
		},

		/** Emailed through the durable outbox, to the account's address, in no tenant's email log. */
		async securityNotice(ctx: Context<unknown, RequestMeta>, user: UserDoc, event: SecurityEvent): Promise<void> {
			await sendToChannel(ctx.broker, EMAIL_CHANNEL, {
				id: newId(),
				tenantId: null,
				to: user.email,
				template: "securityNotice",
				data: { name: user.name, event, at: new Date().toISOString(), ip: ctx.meta.ip ?? "", url: `${this.config.appUrl}/account/security` }
			});
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
			// Its identity provider signs nobody in any more, and its links to accounts go.
			await this.db.sso_connections.removeDocs(scope, {});
			await this.db.sso_identities.removeDocs(scope, {});
		},

		async removeExpired(nowMs = Date.now()): Promise<number> {
			const challenges = await removeExpiredChallenges(this.db.login_challenges, nowMs);
			const states = await this.db.sso_states.removeDocs({ expiresAt: { $lt: new Date(nowMs - EXPIRED_KEPT_MS).toISOString() } });
			return challenges + states;
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

		/** An audit record in every tenant of a user about their own account (by them, before sign-in, unless `actor` says who). */
		async auditForUser(
			ctx: Context,
			userId: string,
			action: string,
			data: Record<string, unknown> = {},
			actor: AuditRecord["actor"] = { kind: "user", id: userId },
			memberships?: Array<{ tenantId: string }>
		): Promise<void> {
			for (const m of memberships ?? (await call(ctx, "tenants.membershipsOfUser", { userId }))) await audit(ctx, { action, tenantId: m.tenantId, actor, target: userId, data });
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
		this.sealing = sealer(resolveEncryptionKey(this.config), this.config.encryptionPreviousKeys);
		this.idps = new IdentityProviders({ allowPrivate: this.config.ssoAllowPrivate });
		this.resolveTxt = systemResolveTxt(this.config.dnsServers);
	},

	async started() {
		// Loads the common-password list (a missing file stops start-up) and calibrates the
		// dummy hash compared for unknown emails.
		await initPasswords(this.config.bcryptCost);
		this.cleanup = startPeriodicJob({
			name: "auth-expired-cleanup",
			intervalMs: 10 * 60_000,
			kv: this.kv,
			owner: `${this.broker.nodeID}:${newId()}`,
			run: async () => void (await this.removeExpired()),
			onError: err => this.logger.warn("Removing expired sign-in challenges failed", (err as Error).message)
		});
	},

	async stopped() {
		await this.cleanup?.stop();
	}
};

export default AuthService;
