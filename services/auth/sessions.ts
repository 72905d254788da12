/**
 * Sessions: one refresh-token family per sign-in (RFC 9700 rotation with reuse detection), its
 * expiry, how it ends, and whether an access token's session is still live.
 *
 * A session document keeps the hash of the family's current refresh token and of the tokens it
 * rotated out: a rotated-out token presented again means someone holds a copy, and the whole
 * family ends. The pure parts (expiry, the next rotation, the listing row) are plain functions;
 * the parts that touch storage take the sessions collection and the key/value store as
 * arguments, so the service stays a thin caller.
 */
import { ALL_TENANTS, systemScope, type Changes, type NewDoc, type TenantCollection, type TenantOwned } from "../../mixins/db.mixin";
import type { AuthExport, SessionView, TokenSet } from "../../shared/contracts";
import type { KeyValueStore } from "../../shared/kv";
import type { Role } from "../../shared/rbac";
import { hashToken, randomToken } from "../../shared/secrets";
import { ACCESS_TOKEN_TTL_SEC, signAccessToken, type SigningKeys } from "./tokens";

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** A session ends after this long without a refresh… */
export const SESSION_IDLE_MS = 30 * DAY;
/** …and at the latest this long after sign-in. */
export const SESSION_MAX_MS = 90 * DAY;
/** Hashes of rotated-out refresh tokens kept per session, for reuse detection. */
export const USED_TOKENS_KEPT = 50;
/**
 * What `sessionLive` remembers of a session id (`session:<id>` in the key/value store): "ended"
 * as long as its access tokens live, "live" briefly. The sessions collection is the truth: a
 * forgotten id (a restart of the in-memory store, an evicted key) is looked up there again, so
 * an ended session never comes back.
 */
export const ENDED_SESSION_TTL_MS = (ACCESS_TOKEN_TTL_SEC + 60) * 1000;
export const LIVE_SESSION_TTL_MS = 60_000;
export const REFRESH_TOKEN_PREFIX = "mrt_";

/** How a session was signed in: with a password (or an invitation's), or by the tenant's identity provider. */
export type SignInMethod = "password" | "sso";

export interface SessionDoc extends TenantOwned {
	userId: string;
	/** Absent on sessions from before single sign-on: password. */
	method?: SignInMethod;
	/** A second factor (TOTP or a recovery code) was given at sign-in. */
	secondFactor?: boolean;
	/** For a single sign-on session: the identity provider that vouched (the session ends when the tenant's changes). */
	ssoIssuer?: string;
	/** Hash of the family's one refresh token that still works. */
	currentHash: string;
	/** Hashes of the tokens it replaced, newest first (at most USED_TOKENS_KEPT). */
	usedHashes: string[];
	lastUsedAt: string;
	expiresAt: string;
	userAgent: string;
	ip: string;
}

/** Where a request came from, as the gateway saw it. */
export interface Client {
	ip: string;
	userAgent: string;
}

/** What of the sessions collection these functions use (a fake in unit tests). */
export type SessionStore = Pick<TenantCollection<SessionDoc>, "findDocs" | "findDoc" | "insertDoc" | "updateWhere" | "removeDocs">;

export const sessionKey = (sessionId: string) => `session:${sessionId}`;

// ---- pure ----------------------------------------------------------------------------------

/** The idle deadline from `now`, capped by the session's absolute lifetime. */
export function sessionExpiry(createdAt: number, now: number): string {
	return new Date(Math.min(now + SESSION_IDLE_MS, createdAt + SESSION_MAX_MS)).toISOString();
}

export function sessionExpired(session: Pick<SessionDoc, "expiresAt">, now: number): boolean {
	return session.expiresAt <= new Date(now).toISOString();
}

/** A new family: the refresh token to hand out once and the document that keeps only its hash. */
export function openSession(userId: string, client: Client, now: number, how: SignedInHow = PASSWORD_ONLY): { refreshToken: string; doc: NewDoc<SessionDoc> } {
	const refreshToken = randomToken(REFRESH_TOKEN_PREFIX);
	return {
		refreshToken,
		doc: {
			userId,
			method: how.method,
			secondFactor: how.secondFactor,
			...(how.ssoIssuer ? { ssoIssuer: how.ssoIssuer } : {}),
			currentHash: hashToken(refreshToken),
			usedHashes: [],
			lastUsedAt: new Date(now).toISOString(),
			expiresAt: sessionExpiry(now, now),
			userAgent: client.userAgent,
			ip: client.ip
		}
	};
}

/** How a sign-in was made, kept with its session (the tenant's requirements are checked again at every refresh). */
export interface SignedInHow {
	method: SignInMethod;
	secondFactor: boolean;
	ssoIssuer?: string;
}
export const PASSWORD_ONLY: SignedInHow = { method: "password", secondFactor: false };

/** Whether the session reaches beyond its own tenant: one started by a tenant's identity provider does not. */
export const reachesAccount = (session: Pick<SessionDoc, "method">) => session.method !== "sso";

/**
 * The role a session acts with: its membership's, but never owner through single sign-on — an
 * identity provider may vouch for a person, not hand out what only the owner's own sign-in may.
 */
export function sessionRole(session: Pick<SessionDoc, "method">, role: Role): Role {
	return session.method === "sso" && role === "owner" ? "admin" : role;
}

/** The family's next refresh token and the changes that make it current (`presentedHash` joins the used ones). */
export function rotation(
	session: Pick<SessionDoc, "createdAt" | "usedHashes">,
	presentedHash: string,
	client: Client,
	now: number
): { refreshToken: string; changes: Changes<SessionDoc> } {
	const refreshToken = randomToken(REFRESH_TOKEN_PREFIX);
	return {
		refreshToken,
		changes: {
			currentHash: hashToken(refreshToken),
			usedHashes: [presentedHash, ...session.usedHashes].slice(0, USED_TOKENS_KEPT),
			lastUsedAt: new Date(now).toISOString(),
			expiresAt: sessionExpiry(Date.parse(session.createdAt), now),
			ip: client.ip,
			userAgent: client.userAgent
		}
	};
}

/** The access token for a session plus its refresh token: what sign-in and refresh answer. */
export function tokenSet(keys: SigningKeys, session: { id: string; userId: string; tenantId: string }, role: Role, refreshToken: string): TokenSet {
	const accessToken = signAccessToken(keys, { sub: session.userId, tid: session.tenantId, role, sid: session.id });
	return { accessToken, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SEC };
}

/** A row of the user's session list (never the hashes). */
export function sessionView(s: SessionDoc, currentSessionId: string | undefined): SessionView {
	return {
		id: s.id,
		tenantId: s.tenantId,
		createdAt: s.createdAt,
		lastUsedAt: s.lastUsedAt,
		expiresAt: s.expiresAt,
		userAgent: s.userAgent,
		ip: s.ip,
		current: s.id === currentSessionId
	};
}

/** A session in a tenant export. */
export function sessionExport({ id, userId, createdAt, lastUsedAt, userAgent, ip }: SessionDoc): AuthExport["sessions"][number] {
	return { id, userId, createdAt, lastUsedAt, userAgent, ip };
}

// ---- storage -------------------------------------------------------------------------------

/** A new session in `tenantId` (the caller vouches for the user and tenant); answers its id and refresh token. */
export async function startSession(
	sessions: SessionStore,
	userId: string,
	tenantId: string,
	client: Client,
	how: SignedInHow = PASSWORD_ONLY,
	now = Date.now()
): Promise<{ session: SessionDoc; refreshToken: string }> {
	const { refreshToken, doc } = openSession(userId, client, now, how);
	const session = await sessions.insertDoc(systemScope(tenantId), doc);
	return { session, refreshToken };
}

export type FoundFamily = { kind: "current"; session: SessionDoc } | { kind: "reused"; session: SessionDoc } | { kind: "unknown" };

/** The session whose current refresh token this is (a refresh token names its session, whatever the tenant). */
export function findByRefreshHash(sessions: SessionStore, presentedHash: string): Promise<SessionDoc | null> {
	return sessions.findDoc(ALL_TENANTS, { currentHash: presentedHash });
}

/** The session a presented refresh token belongs to: as its current token, as a rotated-out one, or none. */
export async function findFamily(sessions: SessionStore, presentedHash: string): Promise<FoundFamily> {
	const current = await findByRefreshHash(sessions, presentedHash);
	if (current) return { kind: "current", session: current };
	const reused = await sessions.findDoc(ALL_TENANTS, { usedHashes: presentedHash });
	return reused ? { kind: "reused", session: reused } : { kind: "unknown" };
}

/**
 * Rotates the family: answers the new refresh token, or null when another request rotated it
 * first (only the request that still finds the presented hash current wins).
 */
export async function rotateSession(sessions: SessionStore, session: SessionDoc, presentedHash: string, client: Client, now = Date.now()): Promise<string | null> {
	const { refreshToken, changes } = rotation(session, presentedHash, client, now);
	const rotated = await sessions.updateWhere(systemScope(session.tenantId), { _id: session.id, currentHash: presentedHash }, changes);
	return rotated === 1 ? refreshToken : null;
}

/** Which sessions to end: all of a user, of a tenant, one by id, or a combination. */
export interface SessionFilter {
	id?: string;
	userId?: string;
	tenantId?: string;
	/** Only sessions signed in this way (e.g. a tenant's single sign-on sessions). */
	method?: SignInMethod;
}

/**
 * Removes the matching sessions (but `exceptSessionId`) and marks their ids ended for
 * `sessionLive`, so their access tokens stop working at once. Answers how many ended.
 */
export async function endSessions(sessions: SessionStore, kv: KeyValueStore, filter: SessionFilter, exceptSessionId?: string): Promise<number> {
	const query: Record<string, string> = {};
	if (filter.userId !== undefined) query.userId = filter.userId;
	if (filter.id !== undefined) query._id = filter.id;
	if (filter.method !== undefined) query.method = filter.method;
	const found = await sessions.findDocs(filter.tenantId ? systemScope(filter.tenantId) : ALL_TENANTS, query);
	const ending = found.filter(s => s.id !== exceptSessionId);
	for (const s of ending) {
		// The document goes first: it is what a restarted process consults.
		await sessions.removeDocs(systemScope(s.tenantId), { _id: s.id });
		await kv.set(sessionKey(s.id), "ended", ENDED_SESSION_TTL_MS);
	}
	return ending.length;
}

/** Whether an access token's session still exists (remembered briefly; the collection decides). */
export async function sessionLive(sessions: SessionStore, kv: KeyValueStore, sessionId: string): Promise<boolean> {
	const known = await kv.get(sessionKey(sessionId));
	if (known !== null) return known === "live";
	const session = await sessions.findDoc(ALL_TENANTS, { _id: sessionId });
	if (!session) {
		await kv.set(sessionKey(sessionId), "ended", ENDED_SESSION_TTL_MS);
		return false;
	}
	// Only when nothing was written meanwhile: an ending that raced this lookup wins.
	if (await kv.setIfAbsent(sessionKey(sessionId), "live", LIVE_SESSION_TTL_MS)) return true;
	return (await kv.get(sessionKey(sessionId))) !== "ended";
}
