/**
 * Auth over HTTP, as a CMS and an attacker would use it: sign-up and sign-in, refresh rotation
 * with reuse detection, forged tokens, sessions, email verification, password reset and
 * change, brute-force throttling, API keys and the audit trail.
 */
import crypto from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import type { GlobalCollection } from "../../mixins/db.mixin";
import type { AuditRecord } from "../../shared/audit";
import type { EmailTokenDoc } from "../../services/auth/accounts";
import { signAccessToken, signingKeys } from "../../services/auth/tokens";
import { sharedKeyValueStore } from "../../shared/kv";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, login, mailbox, newAccount, register, someClient, startTestPlatform, tokenFromMail, type Platform, type Session } from "../helpers/accounts";

const SECRET = "test-secret-for-auth-e2e-0123456789abcdef";
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

function forge(header: Record<string, unknown>, payload: Record<string, unknown>, secret = SECRET): string {
	const signingInput = `${b64(header)}.${b64(payload)}`;
	const signature = crypto.createHmac("sha256", secret).update(signingInput).digest("base64url");
	return `${signingInput}.${signature}`;
}

const audits: AuditRecord[] = [];
const AuditSink: ServiceSchema = {
	name: "audit-sink",
	channels: {
		"audit.record": {
			group: "audit-sink",
			handler(ctx: Context<unknown>) {
				audits.push(ctx.params as AuditRecord);
			}
		}
	}
};

describe("auth", () => {
	let p: Platform;
	let owner: Session & { password: string };

	beforeAll(async () => {
		p = await startTestPlatform({ JWT_SECRET: SECRET }, [AuditSink]);
		owner = await register(p, newAccount("owner"));
	});
	afterAll(() => p.stop());

	const me = (token: string) => request<{ user: { id: string; emailVerified: boolean }; role: string }>(p.api("/auth/me"), { headers: bearer(token) });

	describe("register and login", () => {
		it("register answers 201 with user, tenant, role owner and tokens; body fields for role and tenancy are ignored", async () => {
			const account = newAccount("reg");
			const res = await request<Session>(p.api("/auth/register"), {
				method: "POST",
				json: { ...account, role: "viewer", tenantId: owner.tenant.id, _id: "mine", plan: "enterprise" }
			});
			expect(res.status).toBe(201);
			expect(res.headers.get("location")).toBe("/api/v1/auth/me");
			expect(Object.keys(res.body).sort()).toEqual(["accessToken", "expiresIn", "refreshToken", "role", "tenant", "user"]);
			expect(res.body.user).toEqual({ id: expect.any(String), email: account.email, name: account.name, emailVerified: false, createdAt: expect.any(String) });
			expect(res.body.tenant).toEqual({ id: expect.any(String), name: account.organizationName, slug: expect.any(String), plan: "free", createdAt: expect.any(String) });
			expect(res.body.tenant.id).not.toBe(owner.tenant.id);
			expect(res.body.role).toBe("owner");
			expect(res.body.expiresIn).toBe(900);
			expect(res.body.refreshToken).toMatch(/^mrt_[A-Za-z0-9_-]{40,}$/);
			expect(res.text).not.toMatch(/passwordHash|tokenHash|\$2[aby]\$/);
			expect((await me(res.body.accessToken)).body.role).toBe("owner");
		});

		it("refuses a taken email (409), weak passwords (422) and bad fields (422)", async () => {
			const taken = await request(p.api("/auth/register"), { method: "POST", headers: someClient(), json: { ...newAccount("dup"), email: owner.user.email.toUpperCase() } });
			expect(taken.status).toBe(409);
			for (const password of ["short1!", "qwertyuiop", "password123456", "x".repeat(129)]) {
				const res = await request<ErrorBody>(p.api("/auth/register"), { method: "POST", headers: someClient(), json: { ...newAccount("weak"), password } });
				expect(res.status).toBe(422);
				expect(res.body.error.data).toEqual([expect.objectContaining({ field: "password" })]);
			}
			const account = newAccount("mine");
			const containsEmail = await request(p.api("/auth/register"), { method: "POST", headers: someClient(), json: { ...account, password: `${account.email}-xyz` } });
			expect(containsEmail.status).toBe(422);
			const missing = await request<ErrorBody>(p.api("/auth/register"), { method: "POST", headers: someClient(), json: { email: "not-an-email" } });
			expect(missing.status).toBe(422);
		});

		it("unknown email and wrong password give the same 401 body", async () => {
			const wrong = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", json: { email: owner.user.email, password: "not the password at all" } });
			const unknown = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", json: { email: "nobody-here@example.com", password: "not the password at all" } });
			expect(wrong.status).toBe(401);
			expect(unknown.status).toBe(401);
			const { requestId: _a, ...wrongBody } = wrong.body.error;
			const { requestId: _b, ...unknownBody } = unknown.body.error;
			expect(wrongBody).toEqual(unknownBody);
		});

		it("an operator where the email belongs is a 422, not a login", async () => {
			const res = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", json: { email: { $gt: "" }, password: owner.password } });
			expect(res.status).toBe(422);
			expect(res.body.error.type).toBe("VALIDATION_ERROR");
		});

		it("login is case-insensitive on the email and answers like register", async () => {
			const session = await login(p, owner.user.email.toUpperCase(), owner.password);
			expect(session.user.id).toBe(owner.user.id);
			expect(session.tenant.id).toBe(owner.tenant.id);
			expect(session.role).toBe("owner");
		});
	});

	describe("refresh tokens", () => {
		it("work once; a replay answers 401 and ends the family, including the legitimate new tokens", async () => {
			const s = await login(p, owner.user.email, owner.password);
			const first = await request<Session>(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: s.refreshToken } });
			expect(first.status).toBe(200);
			expect(Object.keys(first.body).sort()).toEqual(["accessToken", "expiresIn", "refreshToken"]);
			expect(first.body.refreshToken).not.toBe(s.refreshToken);
			expect((await me(first.body.accessToken)).status).toBe(200);

			const replay = await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: s.refreshToken } });
			expect(replay.status).toBe(401);
			const legit = await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: first.body.refreshToken } });
			expect(legit.status).toBe(401);
			expect((await me(first.body.accessToken)).status).toBe(401);
			expect(audits.some(a => a.action === "auth.refresh.reused" && a.tenantId === owner.tenant.id)).toBe(true);
		});

		it("two concurrent uses of one token: at most one succeeds", async () => {
			const s = await login(p, owner.user.email, owner.password);
			const results = await Promise.all([1, 2].map(() => request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: s.refreshToken } })));
			expect(results.filter(r => r.status === 200).length).toBeLessThanOrEqual(1);
		});

		it("an unknown refresh token answers 401", async () => {
			const res = await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: `mrt_${"A".repeat(43)}` } });
			expect(res.status).toBe(401);
		});
	});

	describe("access tokens", () => {
		// A token is only as good as its session: forged ones name the owner's real, live session.
		let sid = "";
		beforeAll(async () => {
			const sessions = await request<{ rows: Array<{ id: string; current: boolean }> }>(p.api("/auth/sessions"), { headers: bearer(owner.accessToken) });
			sid = sessions.body.rows.find(r => r.current)?.id ?? "";
		});
		const claims = () => ({ iss: "marquee", aud: "marquee-api", sub: owner.user.id, tid: owner.tenant.id, role: "owner", sid, jti: "j" });
		const now = () => Math.floor(Date.now() / 1000);
		const kid = () => signingKeys(SECRET, []).current.kid;

		it("a correctly signed token is accepted (the control case)", async () => {
			const token = forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), iat: now(), exp: now() + 60 });
			expect((await me(token)).status).toBe(200);
		});

		it("a correctly signed token of a session that does not exist answers 401", async () => {
			const token = forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), sid: "no-such-session", iat: now(), exp: now() + 60 });
			expect((await me(token)).status).toBe(401);
		});

		it.each([
			["alg none", () => `${b64({ alg: "none", typ: "at+jwt", kid: kid() })}.${b64({ ...claims(), iat: now(), exp: now() + 60 })}.`],
			["alg HS512", () => forge({ alg: "HS512", typ: "at+jwt", kid: kid() }, { ...claims(), iat: now(), exp: now() + 60 })],
			["a tampered signature", () => {
				const token = forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), iat: now(), exp: now() + 60 });
				return token.slice(0, -2) + (token.endsWith("AA") ? "BB" : "AA");
			}],
			["a tampered payload", () => {
				const [h, , s] = forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), iat: now(), exp: now() + 60 }).split(".");
				return `${h}.${b64({ ...claims(), role: "owner", tid: "another-tenant", iat: now(), exp: now() + 60 })}.${s}`;
			}],
			["an expired exp", () => signAccessToken(signingKeys(SECRET, []), { sub: owner.user.id, tid: owner.tenant.id, role: "owner", sid: "s" }, now() - 3600)],
			["a wrong aud", () => forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), aud: "someone-else", iat: now(), exp: now() + 60 })],
			["a wrong iss", () => forge({ alg: "HS256", typ: "at+jwt", kid: kid() }, { ...claims(), iss: "evil", iat: now(), exp: now() + 60 })],
			["a foreign kid", () => forge({ alg: "HS256", typ: "at+jwt", kid: "0123456789abcdef" }, { ...claims(), iat: now(), exp: now() + 60 })],
			["a key we never had", () => signAccessToken(signingKeys("another-secret-that-is-long-enough-xyz", []), { sub: owner.user.id, tid: owner.tenant.id, role: "owner", sid: "s" })],
			["a device token", () => forge({ alg: "HS256", typ: "device+jwt", kid: kid() }, { iss: "marquee", aud: "marquee-device", did: "d", tid: owner.tenant.id, ver: 1, iat: now(), jti: "j" })],
			["garbage", () => "not.a.jwt"]
		])("%s answers 401", async (_name, make) => {
			const res = await me(make());
			expect(res.status).toBe(401);
			expect((res.body as unknown as ErrorBody).error.type).toBe("UNAUTHORIZED");
		});

		it("tokens signed with a previous secret still verify after rotation; others do not", async () => {
			const rotated = await startTestPlatform({ JWT_SECRET: "the-new-secret-after-rotation-0123456789", JWT_PREVIOUS_SECRETS: SECRET });
			try {
				// A live session on the rotated platform, and tokens for it signed by the old secret.
				const user = await register(rotated, newAccount("rotated"));
				const sessions = await request<{ rows: Array<{ id: string }> }>(rotated.api("/auth/sessions"), { headers: bearer(user.accessToken) });
				const live = { sub: user.user.id, tid: user.tenant.id, role: "owner" as const, sid: sessions.body.rows[0].id };
				const old = signAccessToken(signingKeys(SECRET, []), live);
				await expect(rotated.broker.call("auth.resolve", { token: old })).resolves.toMatchObject({ kind: "user", userId: user.user.id, tenantId: user.tenant.id });
				const stranger = signAccessToken(signingKeys("some-third-secret-nobody-configured-000", []), live);
				await expect(rotated.broker.call("auth.resolve", { token: stranger })).rejects.toMatchObject({ type: "UNAUTHORIZED" });
			} finally {
				await rotated.stop();
			}
		});
	});

	describe("sessions", () => {
		it("lists the user's sessions with the current one marked; one can be ended", async () => {
			const a = await login(p, owner.user.email, owner.password, { "User-Agent": "browser-a" });
			const b = await login(p, owner.user.email, owner.password, { "User-Agent": "browser-b" });
			const list = await request<{ rows: Array<{ id: string; current: boolean; userAgent: string; ip: string; createdAt: string; lastUsedAt: string }>; total: number; page: number; pageSize: number; totalPages: number }>(p.api("/auth/sessions"), { headers: bearer(a.accessToken) });
			expect(list.status).toBe(200);
			expect(list.body).toMatchObject({ page: 1, pageSize: 20, total: list.body.rows.length, totalPages: 1 });
			const current = list.body.rows.filter(s => s.current);
			expect(current).toHaveLength(1);
			expect(current[0].userAgent).toBe("browser-a");
			const other = list.body.rows.find(s => s.userAgent === "browser-b" && !s.current);
			expect(other).toBeDefined();
			expect(JSON.stringify(list.body)).not.toMatch(/Hash/);
			const paged = await request<{ rows: Array<{ id: string }>; total: number; totalPages: number }>(p.api("/auth/sessions?page=2&pageSize=1"), { headers: bearer(a.accessToken) });
			expect(paged.body.rows).toEqual([expect.objectContaining({ id: list.body.rows[1].id })]);
			expect(paged.body.totalPages).toBe(list.body.total);
			const ended = await request(p.api(`/auth/sessions/${other?.id}`), { method: "DELETE", headers: bearer(a.accessToken) });
			expect(ended.status).toBe(204);
			expect((await me(b.accessToken)).status).toBe(401);
			expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: b.refreshToken } })).status).toBe(401);
		});

		it("logout ends one session at once; logout-all ends every one", async () => {
			const a = await login(p, owner.user.email, owner.password);
			const b = await login(p, owner.user.email, owner.password);
			expect((await request(p.api("/auth/logout"), { method: "POST", json: { refreshToken: a.refreshToken } })).status).toBe(204);
			expect((await me(a.accessToken)).status).toBe(401);
			expect((await me(b.accessToken)).status).toBe(200);
			expect((await request(p.api("/auth/logout-all"), { method: "POST", headers: bearer(b.accessToken) })).status).toBe(204);
			expect((await me(b.accessToken)).status).toBe(401);
			expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: b.refreshToken } })).status).toBe(401);
		});
	});

	describe("email verification", () => {
		it("the emailed token verifies once; a bogus one answers 400", async () => {
			const user = await register(p, newAccount("verify"));
			const token = await tokenFromMail(p, user.user.email, "verify-email");
			expect((await request(p.api("/auth/verify-email"), { method: "POST", json: { token } })).status).toBe(204);
			expect((await me(user.accessToken)).body.user.emailVerified).toBe(true);
			expect((await request(p.api("/auth/verify-email"), { method: "POST", json: { token } })).status).toBe(400);
			expect((await request(p.api("/auth/verify-email"), { method: "POST", json: { token: `mev_${"x".repeat(43)}` } })).status).toBe(400);
		});
	});

	describe("password reset", () => {
		it("answers 202 alike for known and unknown emails, and mails only the known one", async () => {
			const user = await register(p, newAccount("forgot"));
			const known = await request(p.api("/auth/forgot-password"), { method: "POST", json: { email: user.user.email } });
			const unknown = await request(p.api("/auth/forgot-password"), { method: "POST", json: { email: "ghost-forgot@example.com" } });
			expect(known.status).toBe(202);
			expect(unknown.status).toBe(202);
			expect(known.text).toBe(unknown.text);
			await tokenFromMail(p, user.user.email, "reset-password");
			expect(mailbox(p, "ghost-forgot@example.com")).toHaveLength(0);
		});

		it("a reset sets the password once and ends every session", async () => {
			const user = await register(p, newAccount("reset"));
			const other = await login(p, user.user.email, user.password);
			await request(p.api("/auth/forgot-password"), { method: "POST", json: { email: user.user.email } });
			const token = await tokenFromMail(p, user.user.email, "reset-password");
			const weak = await request(p.api("/auth/reset-password"), { method: "POST", json: { token, password: "password" } });
			expect(weak.status).toBe(422);
			const newPassword = "a-brand-new passphrase 42";
			expect((await request(p.api("/auth/reset-password"), { method: "POST", json: { token, password: newPassword } })).status).toBe(204);
			for (const s of [user, other]) {
				expect((await me(s.accessToken)).status).toBe(401);
				expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: s.refreshToken } })).status).toBe(401);
			}
			expect((await request(p.api("/auth/reset-password"), { method: "POST", json: { token, password: "yet another passphrase 43" } })).status).toBe(400);
			await expect(login(p, user.user.email, user.password)).rejects.toThrow(/401/);
			expect((await login(p, user.user.email, newPassword)).user.id).toBe(user.user.id);
		});

		it("an expired reset token answers 400", async () => {
			const user = await register(p, newAccount("expired"));
			await request(p.api("/auth/forgot-password"), { method: "POST", json: { email: user.user.email } });
			const token = await tokenFromMail(p, user.user.email, "reset-password");
			const auth = p.broker.getLocalService("auth") as unknown as { db: { email_tokens: GlobalCollection<EmailTokenDoc> } };
			expect(await auth.db.email_tokens.updateWhere({ userId: user.user.id, purpose: "reset" }, { expiresAt: new Date(Date.now() - 1000).toISOString() })).toBe(1);
			expect((await request(p.api("/auth/reset-password"), { method: "POST", json: { token, password: "a-brand-new passphrase 44" } })).status).toBe(400);
		});
	});

	describe("change password", () => {
		it("needs the current password, refuses weak ones, and ends the other sessions only", async () => {
			const user = await register(p, newAccount("change"));
			const other = await login(p, user.user.email, user.password);
			const wrong = await request<ErrorBody>(p.api("/auth/change-password"), { method: "POST", headers: bearer(user.accessToken), json: { currentPassword: "nope nope nope", newPassword: "a perfectly fine passphrase" } });
			expect(wrong.status).toBe(422);
			expect(wrong.body.error.data).toEqual([expect.objectContaining({ field: "currentPassword" })]);
			const weak = await request(p.api("/auth/change-password"), { method: "POST", headers: bearer(user.accessToken), json: { currentPassword: user.password, newPassword: "1234567890" } });
			expect(weak.status).toBe(422);
			const ok = await request(p.api("/auth/change-password"), { method: "POST", headers: bearer(user.accessToken), json: { currentPassword: user.password, newPassword: "a perfectly fine passphrase" } });
			expect(ok.status).toBe(204);
			expect((await me(user.accessToken)).status).toBe(200);
			expect((await me(other.accessToken)).status).toBe(401);
		});
	});

	describe("brute force", () => {
		it("throttles failures per account and address with 429 + Retry-After, without locking the user out elsewhere", async () => {
			const user = await register(p, newAccount("brute"));
			const attacker = { "X-Forwarded-For": "203.0.113.7" };
			for (let i = 0; i < 5; i++) {
				const res = await request(p.api("/auth/login"), { method: "POST", headers: attacker, json: { email: user.user.email, password: `guess number ${i} wrong` } });
				expect(res.status).toBe(401);
			}
			const blocked = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", headers: attacker, json: { email: user.user.email, password: user.password } });
			expect(blocked.status).toBe(429);
			expect(blocked.body.error.type).toBe("RATE_LIMITED");
			expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
			// The real user, elsewhere, still gets in.
			const real = await login(p, user.user.email, user.password, { "X-Forwarded-For": "198.51.100.20" });
			expect(real.user.id).toBe(user.user.id);
		});
	});

	describe("a stranger cannot lock the owner out", () => {
		it("105 wrong passwords from 21 addresses: the owner still signs in from where they signed in before, a new address is held back", async () => {
			const account = newAccount("target");
			const home = { "X-Forwarded-For": "198.51.100.77" };
			expect((await request(p.api("/auth/register"), { method: "POST", headers: home, json: account })).status).toBe(201);
			for (let a = 0; a < 21; a++) {
				for (let i = 0; i < 5; i++) {
					const res = await request(p.api("/auth/login"), { method: "POST", headers: { "X-Forwarded-For": `203.0.113.${a + 1}` }, json: { email: account.email, password: `wrong guess ${a}-${i}` } });
					expect([401, 429]).toContain(res.status);
				}
			}
			// The account's own limit is spent: a client it has never seen is held back…
			const stranger = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", headers: { "X-Forwarded-For": "192.0.2.200" }, json: { email: account.email, password: account.password } });
			expect(stranger.status).toBe(429);
			// …the owner, from where they signed up, is not — and not after another round either.
			expect((await login(p, account.email, account.password, home)).user.email).toBe(account.email);
			for (let i = 0; i < 20; i++) {
				await request(p.api("/auth/login"), { method: "POST", headers: { "X-Forwarded-For": `203.0.114.${i + 1}` }, json: { email: account.email, password: "still guessing" } });
			}
			expect((await login(p, account.email, account.password, home)).user.email).toBe(account.email);
			// A known client still has its own limit for wrong passwords.
			for (let i = 0; i < 5; i++) await request(p.api("/auth/login"), { method: "POST", headers: home, json: { email: account.email, password: "my own typo" } });
			expect((await request(p.api("/auth/login"), { method: "POST", headers: home, json: { email: account.email, password: account.password } })).status).toBe(429);
		});
	});

	describe("ended sessions stay ended when the key/value store forgets (the embedded mode after a restart)", () => {
		const forget = () => sharedKeyValueStore(p.config).close();
		const me = (token: string) => request(p.api("/auth/me"), { headers: bearer(token) });

		it("a logged-out, logged-out-everywhere or deleted session's access token stays refused", async () => {
			const user = await register(p, newAccount("forgetful"));
			const second = await login(p, user.user.email, user.password);
			const third = await login(p, user.user.email, user.password);
			await forget();
			expect((await me(user.accessToken)).status).toBe(200);
			expect((await request(p.api("/auth/logout"), { method: "POST", json: { refreshToken: user.refreshToken } })).status).toBe(204);
			const sessions = await request<{ rows: Array<{ id: string; current: boolean }> }>(p.api("/auth/sessions"), { headers: bearer(third.accessToken) });
			const secondId = sessions.body.rows.find(r => !r.current)?.id;
			expect((await request(p.api(`/auth/sessions/${secondId}`), { method: "DELETE", headers: bearer(third.accessToken) })).status).toBe(204);
			await forget();
			expect((await me(user.accessToken)).status).toBe(401);
			expect((await me(second.accessToken)).status).toBe(401);
			expect((await me(third.accessToken)).status).toBe(200);
			expect((await request(p.api("/auth/logout-all"), { method: "POST", headers: bearer(third.accessToken) })).status).toBe(204);
			await forget();
			expect((await me(third.accessToken)).status).toBe(401);
		});
	});

	describe("API keys", () => {
		beforeAll(async () => {
			// Earlier cases ended the owner's sessions: sign in afresh.
			Object.assign(owner, await login(p, owner.user.email, owner.password));
		});

		it("are shown once, listed without the key, work at once, and stop working at once when revoked", async () => {
			const created = await request<{ id: string; name: string; role: string; key: string; createdAt: string }>(p.api("/api-keys"), {
				method: "POST",
				headers: bearer(owner.accessToken),
				json: { name: "Digital menu board sync", role: "viewer", tenantId: "elsewhere" }
			});
			expect(created.status).toBe(201);
			expect(created.body).toMatchObject({ id: expect.any(String), name: "Digital menu board sync", role: "viewer", createdAt: expect.any(String) });
			expect(created.body.key).toMatch(/^mk_[A-Za-z0-9_-]{40,}$/);

			const list = await request<{ rows: Array<Record<string, unknown>> }>(p.api("/api-keys"), { headers: bearer(owner.accessToken) });
			const listed = list.body.rows.find(k => k.id === created.body.id);
			expect(listed).toMatchObject({ name: "Digital menu board sync", role: "viewer", lastUsedAt: null });
			expect(JSON.stringify(list.body)).not.toContain(created.body.key);
			expect(JSON.stringify(list.body)).not.toMatch(/keyHash/);

			const key = bearer(created.body.key);
			const tenant = await request<{ id: string }>(p.api("/tenant"), { headers: key });
			expect(tenant.status).toBe(200);
			expect(tenant.body.id).toBe(owner.tenant.id);
			expect((await request(p.api("/tenant"), { method: "PATCH", headers: key, json: { name: "hijack" } })).status).toBe(403);
			expect((await request(p.api("/api-keys"), { headers: key })).status).toBe(403);
			expect((await request(p.api("/auth/me"), { headers: key })).status).toBe(403);

			expect((await request(p.api(`/api-keys/${created.body.id}`), { method: "DELETE", headers: bearer(owner.accessToken) })).status).toBe(204);
			expect((await request(p.api("/tenant"), { headers: key })).status).toBe(401);
		});

		it("cannot be created with a role above the creator's or as owner", async () => {
			const res = await request(p.api("/api-keys"), { method: "POST", headers: bearer(owner.accessToken), json: { name: "x", role: "owner" } });
			expect(res.status).toBe(422);
		});
	});

	describe("audit", () => {
		it("records state changes with actor, action, target, ip and request id on audit.record", async () => {
			const account = newAccount("audited");
			const res = await request<Session>(p.api("/auth/register"), { method: "POST", json: account, headers: { "X-Request-Id": "audit-req-1", "X-Forwarded-For": "192.0.2.44" } });
			expect(res.status).toBe(201);
			await new Promise(resolve => setTimeout(resolve, 50));
			const record = audits.find(a => a.action === "auth.registered" && a.tenantId === res.body.tenant.id);
			expect(record).toMatchObject({
				actor: { kind: "user", id: res.body.user.id },
				target: res.body.user.id,
				ip: "192.0.2.44",
				requestId: "audit-req-1",
				ts: expect.any(String)
			});
			const session = await login(p, account.email, account.password);
			await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: session.refreshToken } });
			await new Promise(resolve => setTimeout(resolve, 50));
			const mine = audits.filter(a => a.tenantId === res.body.tenant.id).map(a => a.action);
			expect(mine).toEqual(expect.arrayContaining(["auth.registered", "auth.login", "auth.refreshed"]));
			expect(JSON.stringify(audits)).not.toMatch(/mrt_|mk_|passwordHash|\$2[aby]\$/);
		});
	});
});
