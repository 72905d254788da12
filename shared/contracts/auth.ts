/** auth: accounts, sessions, API keys, device credentials, and the principal behind a token. */
import { Type, type Static } from "@sinclair/typebox";
import type { Principal } from "../rbac";
import { TenantSummary, TenantView } from "./tenants";
import { Instant, Id, Nullable, PageOf, RoleSchema, type ExportParams, type NoParams, type PageParams, type PageView } from "./views";

/** API.md's `user`. */
export const UserView = Type.Object({ id: Id, email: Type.String(), name: Type.String(), emailVerified: Type.Boolean(), createdAt: Instant });
export type UserView = Static<typeof UserView>;

export const TokenSet = Type.Object({ accessToken: Type.String(), refreshToken: Type.String(), expiresIn: Type.Integer() });
export type TokenSet = Static<typeof TokenSet>;

/** GET /auth/me: the signed-in user, their tenant and role. */
export const MeView = Type.Object({ user: UserView, tenant: TenantSummary, role: RoleSchema });
export type MeView = Static<typeof MeView>;

/** The answer of register, login and accepting an invitation. */
export const LoginAnswer = Type.Composite([MeView, TokenSet]);
export type LoginAnswer = Static<typeof LoginAnswer>;

/**
 * A password sign-in that needs a second factor: `totp` — the account has two-factor, send a code
 * (or a recovery code) with the challenge token to POST /auth/login/2fa; `enrol` — the
 * organisation requires two-factor and the account has none: POST /auth/login/2fa/enrol first.
 */
export const LoginChallenge = Type.Object({
	challenge: Type.Union([Type.Literal("totp"), Type.Literal("enrol")]),
	challengeToken: Type.String(),
	expiresIn: Type.Integer()
});
export type LoginChallenge = Static<typeof LoginChallenge>;

/** What a password sign-in answers: the session, or the second-factor step before it. */
export const SignInAnswer = Type.Union([LoginAnswer, LoginChallenge]);
export type SignInAnswer = LoginAnswer | LoginChallenge;

/** POST /auth/login/2fa: the session; `recoveryCodes` (shown once) when the sign-in enrolled two-factor. */
export const SecondFactorAnswer = Type.Composite([LoginAnswer, Type.Object({ recoveryCodes: Type.Optional(Type.Array(Type.String())) })]);
export type SecondFactorAnswer = Static<typeof SecondFactorAnswer>;

/** GET /auth/2fa. */
export const TwoFactorStatus = Type.Object({ enabled: Type.Boolean(), enabledAt: Nullable(Instant), recoveryCodesLeft: Type.Integer() });
export type TwoFactorStatus = Static<typeof TwoFactorStatus>;

/** Enrolment, shown once: the secret for manual entry, its otpauth:// URI and that URI as a QR code (SVG data URL). */
export const TwoFactorEnrolment = Type.Object({ secret: Type.String(), otpauthUri: Type.String(), qrCode: Type.String() });
export type TwoFactorEnrolment = Static<typeof TwoFactorEnrolment>;

/** Ten single-use recovery codes, shown once. */
export const RecoveryCodes = Type.Object({ recoveryCodes: Type.Array(Type.String()) });
export type RecoveryCodes = Static<typeof RecoveryCodes>;

/** A row of GET /auth/tenants: one organisation the signed-in person belongs to. */
export const MembershipRow = Type.Object({
	tenant: TenantSummary,
	role: RoleSchema,
	joinedAt: Instant,
	/** The tenant of the access token that asked. */
	current: Type.Boolean()
});
export type MembershipRow = Static<typeof MembershipRow>;
export const MembershipPage = PageOf(MembershipRow);

/** POST /tenants: the new organisation, owned by the caller (switch to it with POST /auth/switch-tenant). */
export const CreatedTenant = Type.Object({ tenant: TenantView, role: Type.Literal("owner") });
export type CreatedTenant = Static<typeof CreatedTenant>;

/**
 * GET/PUT /tenant/sso: the tenant's OpenID Connect identity provider (never its client secret).
 * Before one is configured (`configured` false) it still names the redirect URI to register.
 */
export const SsoConnectionView = Type.Object({
	configured: Type.Boolean(),
	issuer: Nullable(Type.String()),
	clientId: Nullable(Type.String()),
	/** The secret is kept (sealed) and never shown again. */
	clientSecretSet: Type.Boolean(),
	allowedDomains: Type.Array(Type.String()),
	/** Each allowed domain, whether it is verified, and the DNS TXT record that verifies it. */
	domains: Type.Array(
		Type.Object({
			domain: Type.String(),
			verified: Type.Boolean(),
			record: Type.Object({ type: Type.Literal("TXT"), name: Type.String(), value: Type.String() })
		})
	),
	defaultRole: Type.Union([Type.Literal("viewer"), Type.Literal("editor"), Type.Literal("admin")]),
	enforced: Type.Boolean(),
	enabled: Type.Boolean(),
	/** What to register at the identity provider as the redirect URI. */
	redirectUri: Type.String(),
	/** Where people start single sign-on (a browser link). */
	loginUrl: Type.String(),
	updatedAt: Nullable(Instant)
});
export type SsoConnectionView = Static<typeof SsoConnectionView>;

export interface SsoConnectionParams {
	issuer: string;
	clientId: string;
	clientSecret?: string;
	allowedDomains: string[];
	defaultRole?: "viewer" | "editor" | "admin";
	enforced?: boolean;
	enabled?: boolean;
}

/** GET /auth/sso/:tenantSlug/callback's query (what the identity provider sends back). */
export interface SsoCallbackParams {
	tenantSlug: string;
	code?: string;
	state?: string;
	iss?: string;
	error?: string;
	error_description?: string;
}

/** A row of GET /auth/sessions: one refresh-token family of the signed-in user (never its hashes). */
export const SessionView = Type.Object({
	id: Id,
	tenantId: Id,
	createdAt: Instant,
	lastUsedAt: Instant,
	expiresAt: Instant,
	userAgent: Type.String(),
	ip: Type.String(),
	/** The session of the access token that asked. */
	current: Type.Boolean()
});
export type SessionView = Static<typeof SessionView>;
export const SessionPage = PageOf(SessionView);

/** The roles an API key may have: never owner (owner actions are for people). */
export const API_KEY_ROLES = ["admin", "editor", "viewer"] as const;
export const ApiKeyRole = Type.Union(API_KEY_ROLES.map(r => Type.Literal(r)));
export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

/** POST /api-keys: the only answer that carries the key itself. */
export const CreatedApiKey = Type.Object({ id: Id, name: Type.String(), role: ApiKeyRole, key: Type.String(), keyPrefix: Type.String(), createdAt: Instant });
export type CreatedApiKey = Static<typeof CreatedApiKey>;

/** A row of GET /api-keys (without the key). */
export const ApiKeyView = Type.Object({
	id: Id,
	name: Type.String(),
	role: ApiKeyRole,
	/** The key's first characters, to tell keys apart. */
	keyPrefix: Type.String(),
	createdAt: Instant,
	lastUsedAt: Nullable(Instant),
	/** The user who created it. */
	createdBy: Id
});
export type ApiKeyView = Static<typeof ApiKeyView>;
export const ApiKeyPage = PageOf(ApiKeyView);

/** auth's part of a tenant export: its members' accounts, sessions and API keys, never a secret or hash. */
export const AuthExport = Type.Object({
	users: Type.Array(UserView),
	sessions: Type.Array(Type.Object({ id: Id, userId: Id, createdAt: Instant, lastUsedAt: Instant, userAgent: Type.String(), ip: Type.String() })),
	apiKeys: Type.Array(Type.Object({ id: Id, name: Type.String(), role: ApiKeyRole, keyPrefix: Type.String(), createdAt: Instant, lastUsedAt: Nullable(Instant) })),
	/** The single sign-on connection (never its client secret), or null. */
	ssoConnection: Nullable(
		Type.Object({
			issuer: Type.String(),
			clientId: Type.String(),
			allowedDomains: Type.Array(Type.String()),
			defaultRole: Type.Union([Type.Literal("viewer"), Type.Literal("editor"), Type.Literal("admin")]),
			enforced: Type.Boolean(),
			enabled: Type.Boolean(),
			updatedAt: Instant
		})
	)
});
export type AuthExport = Static<typeof AuthExport>;

export interface AuthActions {
	// ---- REST ----
	"auth.register": { params: { email: string; password: string; name: string; organizationName: string }; result: LoginAnswer };
	"auth.login": { params: { email: string; password: string }; result: SignInAnswer };
	"auth.loginSecondFactor": { params: { challengeToken: string; code: string }; result: SecondFactorAnswer };
	"auth.loginEnrol": { params: { challengeToken: string }; result: TwoFactorEnrolment };
	"auth.twoFactor": { params: NoParams; result: TwoFactorStatus };
	"auth.enrolTwoFactor": { params: { password: string }; result: TwoFactorEnrolment };
	"auth.confirmTwoFactor": { params: { code: string }; result: RecoveryCodes };
	"auth.disableTwoFactor": { params: { code: string }; result: null };
	"auth.newRecoveryCodes": { params: { code: string }; result: RecoveryCodes };
	"auth.tenants": { params: PageParams; result: PageView<MembershipRow> };
	"auth.switchTenant": { params: { tenantId: string }; result: LoginAnswer };
	"auth.createTenant": { params: { name: string }; result: CreatedTenant };
	"auth.getSso": { params: NoParams; result: SsoConnectionView };
	"auth.putSso": { params: SsoConnectionParams; result: SsoConnectionView };
	"auth.deleteSso": { params: NoParams; result: null };
	"auth.verifySsoDomains": { params: NoParams; result: SsoConnectionView };
	/** 302 to the identity provider. */
	"auth.ssoStart": { params: { tenantSlug: string; codeChallenge?: string }; result: null };
	/** 302 to the CMS with a one-time code. */
	"auth.ssoCallback": { params: SsoCallbackParams; result: null };
	"auth.ssoExchange": { params: { code: string; codeVerifier: string }; result: LoginAnswer };
	"auth.refresh": { params: { refreshToken: string }; result: TokenSet };
	"auth.logout": { params: { refreshToken: string }; result: null };
	"auth.logoutAll": { params: NoParams; result: null };
	"auth.me": { params: NoParams; result: MeView };
	"auth.verifyEmail": { params: { token: string }; result: null };
	"auth.resendVerification": { params: NoParams; result: null };
	"auth.forgotPassword": { params: { email: string }; result: null };
	"auth.resetPassword": { params: { token: string; password: string }; result: null };
	"auth.changePassword": { params: { currentPassword: string; newPassword: string }; result: null };
	"auth.sessions": { params: PageParams; result: PageView<SessionView> };
	"auth.endSession": { params: { id: string }; result: null };
	"auth.createApiKey": { params: { name: string; role: ApiKeyRole }; result: CreatedApiKey };
	"auth.listApiKeys": { params: PageParams; result: PageView<ApiKeyView> };
	"auth.revokeApiKey": { params: { id: string }; result: null };

	// ---- for other services ----
	/** The principal behind a bearer token (user, API key or device); 401 UNAUTHORIZED when there is none. */
	"auth.resolve": { params: { token: string }; result: Principal };
	"auth.usersByIds": { params: { ids: string[] }; result: UserView[] };
	"auth.userIdByEmail": { params: { email: string }; result: string | null };
	/** The account an invitation lands on: an existing one (its password checked) or a new one. */
	"auth.userForInvitation": { params: { email: string; name?: string; password?: string }; result: { userId: string; created: boolean } };
	/** Signs in a user the caller vouched for (an accepted invitation): the session, or the second-factor step. */
	"auth.issueSession": { params: { userId: string; tenantId: string }; result: SignInAnswer };
	/** Whether the account has two-factor on (tenants: an owner must, to require it). */
	"auth.twoFactorEnabled": { params: { userId: string }; result: boolean };
	/** Ends a user's sessions (in one tenant, or all); answers how many ended. */
	"auth.endSessions": { params: { userId: string; tenantId?: string }; result: number };
	/** An operator's (`npm run admin -- reset-2fa`): two-factor off for a person who lost their device and recovery codes. */
	"auth.resetTwoFactor": { params: { email: string }; result: { userId: string; email: string; sessionsEnded: number } };
	/** Ends every credential of a tenant (sessions, API keys, device tokens) before it is deleted. */
	"auth.revokeTenant": { params: { tenantId: string }; result: null };
	"auth.mintDeviceToken": { params: { tenantId: string; displayId: string }; result: { deviceToken: string } };
	"auth.revokeDeviceToken": { params: { tenantId: string; displayId: string }; result: null };
	"auth.exportTenantData": { params: ExportParams; result: AuthExport };
}

// ---- the key/value entry auth shares with the gateway -----------------------------------------

/**
 * The kv key of a display's current device-token version: auth writes `<tenantId>:<version>` when
 * it mints a token and "revoked" when it revokes one (for an hour; past that, `auth.resolve`
 * reads its collection and writes it again). The gateway compares a token it has seen auth accept
 * with this entry on every device request, so a revocation takes effect at once without a call
 * to auth per request.
 */
export function deviceVersionKey(displayId: string): string {
	return `device-version:${displayId}`;
}

/** The entry's value for a token minted for `displayId` of `tenantId` with `version`. */
export function deviceVersionValue(tenantId: string, version: number): string {
	return `${tenantId}:${version}`;
}

/** The entry of a revoked display. */
export const DEVICE_VERSION_REVOKED = "revoked";

/**
 * The display, tenant and version entry a device token names, read from its payload WITHOUT checking the
 * signature: only for a token auth has already accepted (the gateway remembers those), never to
 * decide whether a token is valid. Null for anything that is not a device token's payload.
 */
export function deviceTokenVersion(token: string): { displayId: string; tenantId: string; version: string } | null {
	const payload = token.split(".")[1];
	if (!payload) return null;
	try {
		const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { did?: unknown; tid?: unknown; ver?: unknown };
		if (typeof claims.did !== "string" || typeof claims.tid !== "string" || typeof claims.ver !== "number") return null;
		return { displayId: claims.did, tenantId: claims.tid, version: deviceVersionValue(claims.tid, claims.ver) };
	} catch {
		return null;
	}
}
