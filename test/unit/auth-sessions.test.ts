/**
 * services/auth/sessions.ts: session expiry, refresh-token rotation with reuse detection, the
 * listing row, ending sessions and access-token liveness — the storage parts against an
 * in-memory stand-in for the sessions collection and the in-process key/value store.
 */
import type { Query, WideScope } from "../../mixins/db.mixin";
import { MemoryKeyValueStore } from "../../shared/kv";
import { hashToken } from "../../shared/secrets";
import {
	ENDED_SESSION_TTL_MS,
	SESSION_IDLE_MS,
	SESSION_MAX_MS,
	USED_TOKENS_KEPT,
	endSessions,
	findByRefreshHash,
	findFamily,
	openSession,
	rotateSession,
	rotation,
	sessionExpired,
	sessionExpiry,
	sessionKey,
	sessionLive,
	sessionView,
	startSession,
	tokenSet,
	PASSWORD_ONLY,
	type SessionDoc,
	type SessionStore
} from "../../services/auth/sessions";
import { signingKeys, verifyAccessToken } from "../../services/auth/tokens";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const DAY = 24 * 3600_000;
const CLIENT = { ip: "192.0.2.1", userAgent: "browser-a" };
const KEYS = signingKeys("unit-test-secret-for-sessions-0123456789", []);

/** Equality on fields (`_id` is `id`), array fields match a member, like NeDB and MongoDB. */
function matches(doc: SessionDoc, query: Query): boolean {
	const fields: Record<string, unknown> = { ...doc };
	return Object.entries(query).every(([key, value]) => {
		const field = fields[key === "_id" ? "id" : key];
		return Array.isArray(field) ? field.includes(value) : field === value;
	});
}

function tenantOfScope(scope: WideScope): string | null {
	if ("kind" in scope && scope.kind === "allTenants") return null;
	if ("kind" in scope && scope.kind === "system") return scope.tenantId;
	throw new Error("the stand-in takes system scopes only");
}

/** The sessions collection in memory, with the scoping of a tenant collection. */
function fakeSessions(): SessionStore & { docs: SessionDoc[] } {
	const docs: SessionDoc[] = [];
	let seq = 0;
	const inScope = (scope: WideScope, query: Query = {}) => {
		const tenant = tenantOfScope(scope);
		return docs.filter(d => (tenant === null || d.tenantId === tenant) && matches(d, query));
	};
	return {
		docs,
		async findDocs(scope, query) {
			return inScope(scope, query).map(d => ({ ...d }));
		},
		async findDoc(scope, query) {
			const [first] = inScope(scope, query);
			return first ? { ...first } : null;
		},
		async insertDoc(scope, fields) {
			const tenantId = tenantOfScope(scope);
			if (tenantId === null) throw new Error("insert needs a tenant");
			const now = new Date(T0).toISOString();
			const doc: SessionDoc = { createdAt: now, updatedAt: now, ...fields, id: `s${++seq}`, tenantId };
			docs.push(doc);
			return { ...doc };
		},
		async updateWhere(scope, query, changes) {
			const hits = inScope(scope, query);
			for (const d of hits) Object.assign(d, changes);
			return hits.length;
		},
		async removeDocs(scope, query) {
			const hits = new Set(inScope(scope, query));
			const before = docs.length;
			docs.splice(0, docs.length, ...docs.filter(d => !hits.has(d)));
			return before - docs.length;
		}
	};
}

describe("expiry", () => {
	it("is the idle deadline while the session is young, capped by its absolute lifetime", () => {
		expect(sessionExpiry(T0, T0)).toBe(new Date(T0 + SESSION_IDLE_MS).toISOString());
		expect(sessionExpiry(T0, T0 + 10 * DAY)).toBe(new Date(T0 + 10 * DAY + SESSION_IDLE_MS).toISOString());
		expect(sessionExpiry(T0, T0 + 80 * DAY)).toBe(new Date(T0 + SESSION_MAX_MS).toISOString());
	});

	it("a session is expired from its expiresAt on", () => {
		const expiresAt = new Date(T0).toISOString();
		expect(sessionExpired({ expiresAt }, T0 - 1)).toBe(false);
		expect(sessionExpired({ expiresAt }, T0)).toBe(true);
	});
});

describe("opening and rotating (pure)", () => {
	it("a new family keeps only the hash of its refresh token", () => {
		const { refreshToken, doc } = openSession("u1", CLIENT, T0);
		expect(refreshToken).toMatch(/^mrt_[A-Za-z0-9_-]{43}$/);
		expect(doc).toEqual({
			userId: "u1",
			method: "password",
			secondFactor: false,
			currentHash: hashToken(refreshToken),
			usedHashes: [],
			lastUsedAt: new Date(T0).toISOString(),
			expiresAt: new Date(T0 + SESSION_IDLE_MS).toISOString(),
			userAgent: "browser-a",
			ip: "192.0.2.1"
		});
		expect(JSON.stringify(doc)).not.toContain(refreshToken);
	});

	it("a rotation makes a new token current and keeps the presented one, newest first and bounded", () => {
		const used = Array.from({ length: USED_TOKENS_KEPT }, (_, i) => `old-${i}`);
		const session = { createdAt: new Date(T0).toISOString(), usedHashes: used };
		const now = T0 + 70 * DAY;
		const { refreshToken, changes } = rotation(session, "presented", { ip: "198.51.100.2", userAgent: "browser-b" }, now);
		expect(changes.currentHash).toBe(hashToken(refreshToken));
		expect(changes.usedHashes).toHaveLength(USED_TOKENS_KEPT);
		expect(changes.usedHashes?.[0]).toBe("presented");
		expect(changes.usedHashes).not.toContain(`old-${USED_TOKENS_KEPT - 1}`);
		expect(changes).toMatchObject({
			lastUsedAt: new Date(now).toISOString(),
			expiresAt: new Date(T0 + SESSION_MAX_MS).toISOString(),
			ip: "198.51.100.2",
			userAgent: "browser-b"
		});
		expect(rotation(session, "presented", CLIENT, now).refreshToken).not.toBe(refreshToken);
	});

	it("the token set carries an access token for the session and its role", () => {
		const set = tokenSet(KEYS, { id: "s1", userId: "u1", tenantId: "t1" }, "editor", "mrt_x");
		expect(set).toEqual({ accessToken: expect.any(String), refreshToken: "mrt_x", expiresIn: 900 });
		const verified = verifyAccessToken(KEYS, set.accessToken);
		expect(verified.ok && verified.claims).toMatchObject({ sub: "u1", tid: "t1", role: "editor", sid: "s1" });
	});

	it("a listing row marks the current session and shows no hash", () => {
		const doc: SessionDoc = {
			id: "s1",
			tenantId: "t1",
			userId: "u1",
			currentHash: "h",
			usedHashes: ["g"],
			createdAt: "2026-01-01T00:00:00.000Z",
			updatedAt: "2026-01-02T00:00:00.000Z",
			lastUsedAt: "2026-01-02T00:00:00.000Z",
			expiresAt: "2026-02-01T00:00:00.000Z",
			userAgent: "ua",
			ip: "192.0.2.1"
		};
		expect(sessionView(doc, "s1")).toEqual({
			id: "s1",
			tenantId: "t1",
			createdAt: doc.createdAt,
			lastUsedAt: doc.lastUsedAt,
			expiresAt: doc.expiresAt,
			userAgent: "ua",
			ip: "192.0.2.1",
			current: true
		});
		expect(sessionView(doc, "s2").current).toBe(false);
		expect(sessionView(doc, undefined).current).toBe(false);
	});
});

describe("refresh-token families (storage)", () => {
	it("a refresh token finds its session; once rotated it is a reuse of the family; unknown ones find nothing", async () => {
		const sessions = fakeSessions();
		const { session, refreshToken } = await startSession(sessions, "u1", "t1", CLIENT, PASSWORD_ONLY, T0);
		expect(session).toMatchObject({ tenantId: "t1", userId: "u1", currentHash: hashToken(refreshToken) });
		const first = hashToken(refreshToken);
		expect(await findFamily(sessions, first)).toEqual({ kind: "current", session });

		const next = await rotateSession(sessions, session, first, CLIENT, T0 + 1000);
		expect(next).toMatch(/^mrt_/);
		expect(await findByRefreshHash(sessions, hashToken(next as string))).toMatchObject({ id: session.id });
		expect(await findByRefreshHash(sessions, first)).toBeNull();
		expect(await findFamily(sessions, first)).toEqual({ kind: "reused", session: expect.objectContaining({ id: session.id }) });
		expect(await findFamily(sessions, hashToken("mrt_never-issued"))).toEqual({ kind: "unknown" });
	});

	it("of two rotations of the same token only the first wins", async () => {
		const sessions = fakeSessions();
		const { session, refreshToken } = await startSession(sessions, "u1", "t1", CLIENT, PASSWORD_ONLY, T0);
		const presented = hashToken(refreshToken);
		expect(await rotateSession(sessions, session, presented, CLIENT, T0)).not.toBeNull();
		expect(await rotateSession(sessions, session, presented, CLIENT, T0)).toBeNull();
	});
});

describe("ending sessions and liveness", () => {
	async function threeSessions() {
		const sessions = fakeSessions();
		const kv = new MemoryKeyValueStore();
		const a = (await startSession(sessions, "u1", "t1", CLIENT, PASSWORD_ONLY, T0)).session;
		const b = (await startSession(sessions, "u1", "t2", CLIENT, PASSWORD_ONLY, T0)).session;
		const c = (await startSession(sessions, "u2", "t1", CLIENT, PASSWORD_ONLY, T0)).session;
		return { sessions, kv, a, b, c };
	}

	it("ends a user's sessions in every tenant, or in one, or but one; marks each ended", async () => {
		const { sessions, kv, a, b, c } = await threeSessions();
		expect(await endSessions(sessions, kv, { userId: "u1", tenantId: "t2" })).toBe(1);
		expect(sessions.docs.map(s => s.id).sort()).toEqual([a.id, c.id].sort());
		expect(await kv.get(sessionKey(b.id))).toBe("ended");

		expect(await endSessions(sessions, kv, { userId: "u1" }, a.id)).toBe(0);
		expect(await endSessions(sessions, kv, { tenantId: "t1" }, a.id)).toBe(1);
		expect(sessions.docs.map(s => s.id)).toEqual([a.id]);
		expect(await endSessions(sessions, kv, { id: a.id, userId: "someone-else" })).toBe(0);
		expect(await endSessions(sessions, kv, { id: a.id, userId: "u1" })).toBe(1);
		expect(sessions.docs).toEqual([]);
		expect(await kv.get(sessionKey(c.id))).toBe("ended");
	});

	it("a live session is live (and remembered so); an ended one is not, even once the store forgot", async () => {
		const { sessions, kv, a, b } = await threeSessions();
		expect(await sessionLive(sessions, kv, a.id)).toBe(true);
		expect(await kv.get(sessionKey(a.id))).toBe("live");

		await endSessions(sessions, kv, { id: a.id });
		expect(await sessionLive(sessions, kv, a.id)).toBe(false);
		await kv.del(sessionKey(a.id));
		expect(await sessionLive(sessions, kv, a.id)).toBe(false);
		expect(await kv.get(sessionKey(a.id))).toBe("ended");

		// An ending recorded in the store wins over a document that is still there.
		await kv.set(sessionKey(b.id), "ended", ENDED_SESSION_TTL_MS);
		expect(await sessionLive(sessions, kv, b.id)).toBe(false);
		expect(await sessionLive(sessions, kv, "no-such-session")).toBe(false);
	});
});
