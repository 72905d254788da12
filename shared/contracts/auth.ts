/** auth: accounts, sessions, API keys, device credentials, and the principal behind a token. */
import { Type, type Static } from "@sinclair/typebox";
import type { Principal } from "../rbac";
import { TenantSummary } from "./tenants";
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
	apiKeys: Type.Array(Type.Object({ id: Id, name: Type.String(), role: ApiKeyRole, keyPrefix: Type.String(), createdAt: Instant, lastUsedAt: Nullable(Instant) }))
});
export type AuthExport = Static<typeof AuthExport>;

export interface AuthActions {
	// ---- REST ----
	"auth.register": { params: { email: string; password: string; name: string; organizationName: string }; result: LoginAnswer };
	"auth.login": { params: { email: string; password: string }; result: LoginAnswer };
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
	"auth.issueSession": { params: { userId: string; tenantId: string }; result: LoginAnswer };
	/** Ends a user's sessions (in one tenant, or all); answers how many ended. */
	"auth.endSessions": { params: { userId: string; tenantId?: string }; result: number };
	/** Ends every credential of a tenant (sessions, API keys, device tokens) before it is deleted. */
	"auth.revokeTenant": { params: { tenantId: string }; result: null };
	"auth.mintDeviceToken": { params: { tenantId: string; displayId: string }; result: { deviceToken: string } };
	"auth.revokeDeviceToken": { params: { tenantId: string; displayId: string }; result: null };
	"auth.exportTenantData": { params: ExportParams; result: AuthExport };
}
