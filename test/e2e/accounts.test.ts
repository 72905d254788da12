/**
 * Accounts for real organisations, over HTTP through the gateway: one person in several
 * organisations (list, create, switch, land where they left), and two-factor sign-in (TOTP with
 * an authenticator written from the RFCs, recovery codes, replay, required by an owner).
 * Statuses and roles are written by hand.
 */
import { bearer, login, mailbox, newAccount, register, someClient, startTestPlatform, waitForMail, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { addMember } from "../helpers/routes";
import { codeFor, stepOf } from "../helpers/totp";

type Challenge = { challenge: "totp" | "enrol"; challengeToken: string; expiresIn: number };
type Enrolment = { secret: string; otpauthUri: string; qrCode: string };
type MembershipRow = { tenant: { id: string; name: string; slug: string }; role: string; joinedAt: string; current: boolean };

describe("accounts", () => {
	let p: Platform;

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_MEMBERS: "50", NOTIFICATIONS_POLL_MS: "50" });
	});
	afterAll(() => p.stop());

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const post = <T = unknown>(path: string, json: unknown, headers: Record<string, string> = {}) =>
		request<T & ErrorBody>(p.api(path), { method: "POST", json, headers: { ...someClient(), ...headers } });
	const get = <T = unknown>(path: string, headers: Record<string, string>) => request<T & ErrorBody>(p.api(path), { headers });
	/** A password sign-in that may stop at a challenge. */
	const signIn = (email: string, password: string) => post<Session & Challenge>("/auth/login", { email, password });

	/** Turns two-factor on for a signed-in person; answers the secret and the recovery codes. */
	async function enableTwoFactor(session: Session, password: string): Promise<{ secret: string; recoveryCodes: string[]; step: number }> {
		const enrol = await post<Enrolment>("/auth/2fa/enrol", { password }, as(session));
		expect(enrol.status).toBe(200);
		const step = stepOf();
		const confirmed = await post<{ recoveryCodes: string[] }>("/auth/2fa/confirm", { code: codeFor(enrol.body.secret, step) }, as(session));
		expect(confirmed.status).toBe(200);
		return { secret: enrol.body.secret, recoveryCodes: confirmed.body.recoveryCodes, step };
	}

	describe("one person in several organisations", () => {
		it("creates organisations, lists them with roles, switches, and signs in where it left off", async () => {
			const person = await register(p, newAccount("agency"));
			const created = await post<{ tenant: { id: string; name: string; slug: string; settings: object }; role: string }>("/tenants", { name: "Client Ωmega 東京 🎬" }, as(person));
			expect(created.status).toBe(201);
			expect(created.headers.get("location")).toBe("/api/v1/auth/tenants");
			expect(created.body.role).toBe("owner");
			expect(created.body.tenant.name).toBe("Client Ωmega 東京 🎬");
			expect(created.body.tenant.settings).toMatchObject({ requireTwoFactor: false });
			const second = created.body.tenant.id;

			// A client of the agency invites the person as an editor: three memberships.
			const client = await register(p, newAccount("client"));
			const invited = await post("/invitations", { email: person.user.email, role: "editor" }, as(client));
			expect(invited.status).toBe(201);
			await waitForMail(p, person.user.email, 2);
			const token = mailbox(p, person.user.email).map(m => /accept-invitation\?token=([\w-]+)/.exec(m)?.[1]).filter(Boolean).pop();
			const accepted = await post<Session>("/invitations/accept", { token, password: person.password });
			expect(accepted.status).toBe(200);
			expect(accepted.body.tenant.id).toBe(client.tenant.id);
			expect(accepted.body.role).toBe("editor");

			const list = await get<{ rows: MembershipRow[]; total: number }>("/auth/tenants", as(person));
			expect(list.status).toBe(200);
			expect(list.body.total).toBe(3);
			expect(list.body.rows.map(r => [r.tenant.id, r.role, r.current])).toEqual([
				[person.tenant.id, "owner", true],
				[second, "owner", false],
				[client.tenant.id, "editor", false]
			]);

			// Switch: a new session in the other tenant; the first keeps working in its own.
			const switched = await post<Session>("/auth/switch-tenant", { tenantId: second }, as(person));
			expect(switched.status).toBe(200);
			expect(switched.body).toMatchObject({ tenant: { id: second }, role: "owner" });
			expect((await get<{ id: string }>("/tenant", as(switched.body))).body.id).toBe(second);
			expect((await get<{ id: string }>("/tenant", as(person))).body.id).toBe(person.tenant.id);
			const listed = await get<{ rows: MembershipRow[] }>("/auth/tenants", as(switched.body));
			expect(listed.body.rows.filter(r => r.current).map(r => r.tenant.id)).toEqual([second]);

			// The next sign-in lands where the last one (the switch) went.
			expect((await login(p, person.user.email, person.password)).tenant.id).toBe(second);
			const toClient = await post<Session>("/auth/switch-tenant", { tenantId: client.tenant.id }, as(switched.body));
			expect(toClient.body).toMatchObject({ tenant: { id: client.tenant.id }, role: "editor" });
			const again = await login(p, person.user.email, person.password);
			expect([again.tenant.id, again.role]).toEqual([client.tenant.id, "editor"]);
			// An editor there: owner routes of that tenant are closed to this token.
			expect((await request(p.api("/tenant/export"), { headers: as(again) })).status).toBe(403);

			// Audited in both tenants.
			const audit = await get<{ rows: Array<{ action: string; actor: { id: string } }> }>("/audit-logs?pageSize=100", as(switched.body));
			expect(audit.status).toBe(200);
		});

		it("switching to an organisation one does not belong to answers 404, like one that does not exist", async () => {
			const a = await register(p, newAccount("solo"));
			const b = await register(p, newAccount("other"));
			const foreign = await post<ErrorBody>("/auth/switch-tenant", { tenantId: b.tenant.id }, as(a));
			const unknown = await post<ErrorBody>("/auth/switch-tenant", { tenantId: "01900000-0000-7000-8000-000000000000" }, as(a));
			expect([foreign.status, foreign.body.error.type]).toEqual([404, "NOT_FOUND"]);
			expect([unknown.status, unknown.body.error.type]).toEqual([404, "NOT_FOUND"]);
			expect(foreign.body.error.message.replace(b.tenant.id, "<id>")).toBe(unknown.body.error.message.replace("01900000-0000-7000-8000-000000000000", "<id>"));
			for (const bad of [{}, { tenantId: null }, { tenantId: 5 }, { tenantId: { $gt: "" } }, { tenantId: "x".repeat(5000) }]) {
				const res = await post("/auth/switch-tenant", bad, as(a));
				expect([JSON.stringify(bad).slice(0, 40), res.status]).toEqual([JSON.stringify(bad).slice(0, 40), 422]);
			}
		});

		it("API keys and anonymous callers cannot create or switch organisations", async () => {
			const owner = await register(p, newAccount("keys"));
			const key = await post<{ key: string }>("/api-keys", { name: "ci", role: "admin" }, as(owner));
			expect((await post("/tenants", { name: "By key" }, bearer(key.body.key))).status).toBe(403);
			expect((await post("/auth/switch-tenant", { tenantId: owner.tenant.id }, bearer(key.body.key))).status).toBe(403);
			expect((await get("/auth/tenants", bearer(key.body.key))).status).toBe(403);
			expect((await post("/tenants", { name: "Anon" })).status).toBe(401);
			expect((await get("/auth/tenants", {})).status).toBe(401);
		});

		it("one person creates at most 10 organisations a day, also when asking in parallel", async () => {
			const busy = await register(p, newAccount("busy"));
			const answers = await Promise.all(Array.from({ length: 14 }, (_, i) => post("/tenants", { name: `Shop ${i}` }, as(busy))));
			expect(answers.filter(r => r.status === 201)).toHaveLength(10);
			expect(answers.filter(r => r.status === 429)).toHaveLength(4);
			const list = await get<{ total: number }>("/auth/tenants", as(busy));
			expect(list.body.total).toBe(11);
		});
	});

	describe("two-factor sign-in", () => {
		it("enrols with the password, confirms with a code, and shows ten recovery codes once", async () => {
			const ada = await register(p, newAccount("ada"));
			const wrongPassword = await post<ErrorBody>("/auth/2fa/enrol", { password: "not it" }, as(ada));
			expect([wrongPassword.status, wrongPassword.body.error.type]).toEqual([422, "VALIDATION_ERROR"]);
			expect((await post("/auth/2fa/confirm", { code: "123456" }, as(ada))).status).toBe(409);

			const enrol = await post<Enrolment>("/auth/2fa/enrol", { password: ada.password }, as(ada));
			expect(enrol.status).toBe(200);
			expect(enrol.body.secret).toMatch(/^[A-Z2-7]{32}$/);
			expect(enrol.body.otpauthUri).toBe(`otpauth://totp/Marquee:${encodeURIComponent(ada.user.email)}?issuer=Marquee&secret=${enrol.body.secret}&algorithm=SHA1&digits=6&period=30`);
			expect(Buffer.from(enrol.body.qrCode.replace("data:image/svg+xml;base64,", ""), "base64").toString()).toContain("<svg");
			// Not on until confirmed.
			expect((await get<{ enabled: boolean }>("/auth/2fa", as(ada))).body).toEqual({ enabled: false, enabledAt: null, recoveryCodesLeft: 0 });
			const wrongCode = await post<ErrorBody>("/auth/2fa/confirm", { code: codeFor(enrol.body.secret, stepOf() - 5) }, as(ada));
			expect([wrongCode.status, wrongCode.body.error.data]).toEqual([422, [expect.objectContaining({ field: "code" })]]);

			const confirmed = await post<{ recoveryCodes: string[] }>("/auth/2fa/confirm", { code: codeFor(enrol.body.secret) }, as(ada));
			expect(confirmed.status).toBe(200);
			expect(confirmed.body.recoveryCodes).toHaveLength(10);
			expect((await get("/auth/2fa", as(ada))).body).toEqual({ enabled: true, enabledAt: expect.any(String), recoveryCodesLeft: 10 });
			expect((await post("/auth/2fa/enrol", { password: ada.password }, as(ada))).status).toBe(409);
			await waitForMail(p, ada.user.email, 2);
			expect(mailbox(p, ada.user.email).join("\n")).toContain("Two-factor authentication is on");
		});

		it("signs in in two steps; a wrong, replayed or out-of-window code is refused; a recovery code works once", async () => {
			const account = newAccount("grace");
			const grace = await register(p, account);
			const { secret, recoveryCodes, step } = await enableTwoFactor(grace, account.password);

			// The wrong password answers as before: nothing says the account has two-factor.
			const wrong = await signIn(account.email, "Wrong-password-123!");
			expect([wrong.status, wrong.body.error.message]).toEqual([401, "Invalid email or password"]);

			const first = await signIn(account.email, account.password);
			expect(first.status).toBe(200);
			expect(first.body).toEqual({ challenge: "totp", challengeToken: expect.stringMatching(/^mch_/), expiresIn: 300 });
			expect(first.body).not.toHaveProperty("accessToken");
			// The challenge token is no access token.
			expect((await get("/auth/me", bearer(first.body.challengeToken))).status).toBe(401);

			// The confirmation used this step's code: the same code again is a replay.
			const replayed = await post<ErrorBody>("/auth/login/2fa", { challengeToken: first.body.challengeToken, code: codeFor(secret, step) });
			expect([replayed.status, replayed.body.error.message]).toEqual([401, "Invalid code"]);
			const stale = await post("/auth/login/2fa", { challengeToken: first.body.challengeToken, code: codeFor(secret, stepOf() - 3) });
			expect(stale.status).toBe(401);
			const next = codeFor(secret, Math.max(step, stepOf()) + 1);
			const ok = await post<Session>("/auth/login/2fa", { challengeToken: first.body.challengeToken, code: next });
			expect(ok.status).toBe(200);
			expect(ok.body).toMatchObject({ user: { id: grace.user.id }, tenant: { id: grace.tenant.id }, role: "owner", accessToken: expect.any(String) });
			expect((await get("/auth/me", as(ok.body))).status).toBe(200);
			// The challenge worked once.
			expect((await post("/auth/login/2fa", { challengeToken: first.body.challengeToken, code: next })).status).toBe(401);
			// That code, on a new challenge: a replay.
			const second = await signIn(account.email, account.password);
			expect((await post("/auth/login/2fa", { challengeToken: second.body.challengeToken, code: next })).status).toBe(401);

			const recovery = recoveryCodes[3];
			const byRecovery = await post<Session>("/auth/login/2fa", { challengeToken: second.body.challengeToken, code: recovery.toUpperCase() });
			expect(byRecovery.status).toBe(200);
			expect((await get("/auth/2fa", as(byRecovery.body))).body).toMatchObject({ recoveryCodesLeft: 9 });
			const third = await signIn(account.email, account.password);
			expect((await post("/auth/login/2fa", { challengeToken: third.body.challengeToken, code: recovery })).status).toBe(401);
			await waitForMail(p, account.email, 3);
			expect(mailbox(p, account.email).join("\n")).toContain("A recovery code was used");
		});

		it("a challenge takes five guesses, counted also when they arrive at once; then even the right code is refused", async () => {
			const account = newAccount("guess");
			const session = await register(p, account);
			const { secret } = await enableTwoFactor(session, account.password);
			const challenge = await signIn(account.email, account.password);
			const guesses = await Promise.all(Array.from({ length: 8 }, (_, i) => post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: String(100000 + i) })));
			expect(guesses.every(g => g.status === 401)).toBe(true);
			const right = await post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: codeFor(secret, stepOf() + 1) });
			expect(right.status).toBe(401);
		});

		it("guessing codes from many addresses with fresh challenges stops at 10 wrong codes per account", async () => {
			const account = newAccount("target");
			const session = await register(p, account);
			const { secret } = await enableTwoFactor(session, account.password);
			const statuses: number[] = [];
			for (let i = 0; i < 16; i++) {
				// Each guess from another address, on a challenge of its own.
				const from = { "X-Forwarded-For": `10.77.${i}.${i + 1}` };
				const challenge = await post<Challenge>("/auth/login", { email: account.email, password: account.password }, from);
				const guess = await post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: String(200000 + i) }, from);
				statuses.push(guess.status);
			}
			expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
			expect(statuses.slice(10)).toEqual(Array(6).fill(429));
			// The right code is held back too while the limit holds: guessing must stop before the check.
			const challenge = await post<Challenge>("/auth/login", { email: account.email, password: account.password }, { "X-Forwarded-For": "10.78.0.1" });
			expect((await post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: codeFor(secret, stepOf() + 1) }, { "X-Forwarded-For": "10.78.0.1" })).status).toBe(429);
		});

		it("the same code on two challenges at once signs in exactly once", async () => {
			const account = newAccount("race");
			const session = await register(p, account);
			const { secret } = await enableTwoFactor(session, account.password);
			const [a, b] = await Promise.all([signIn(account.email, account.password), signIn(account.email, account.password)]);
			const code = codeFor(secret, stepOf() + 1);
			const answers = await Promise.all([a, b].map(c => post("/auth/login/2fa", { challengeToken: c.body.challengeToken, code })));
			expect(answers.map(r => r.status).sort()).toEqual([200, 401]);
		});

		it("an owner requires two-factor: members without it enrol at their next sign-in, sessions without it stop refreshing, API keys keep working", async () => {
			const ownerAccount = newAccount("strict");
			const owner = await register(p, ownerAccount);
			const member = await addMember(p, owner.accessToken, "editor", "relaxed");
			const key = await post<{ key: string }>("/api-keys", { name: "player-sync", role: "editor" }, as(owner));
			// The owner first.
			const early = await request<ErrorBody>(p.api("/tenant/two-factor"), { method: "PUT", json: { required: true }, headers: as(owner) });
			expect([early.status, early.body.error.type]).toEqual([409, "CONFLICT"]);
			const { secret: ownerSecret } = await enableTwoFactor(owner, ownerAccount.password);
			// Only the owner may require it.
			const memberSession = await login(p, member.email, member.password);
			expect((await request(p.api("/tenant/two-factor"), { method: "PUT", json: { required: true }, headers: as(memberSession) })).status).toBe(403);
			const required = await request<{ settings: { requireTwoFactor: boolean } }>(p.api("/tenant/two-factor"), { method: "PUT", json: { required: true }, headers: as(owner) });
			expect(required.status).toBe(200);
			expect(required.body.settings.requireTwoFactor).toBe(true);

			// The member's old session: no refresh without a second factor.
			const refreshed = await post<ErrorBody>("/auth/refresh", { refreshToken: memberSession.refreshToken });
			expect(refreshed.status).toBe(401);
			expect(refreshed.body.error.message).toContain("requires two-factor");

			// Sign-in asks for enrolment.
			const challenge = await signIn(member.email, member.password);
			expect(challenge.body).toMatchObject({ challenge: "enrol", challengeToken: expect.stringMatching(/^mch_/) });
			expect((await post("/auth/login/2fa/enrol", { challengeToken: "mch_not-a-challenge-of-anyone" })).status).toBe(401);
			const enrol = await post<Enrolment>("/auth/login/2fa/enrol", { challengeToken: challenge.body.challengeToken });
			expect(enrol.status).toBe(200);
			const done = await post<Session & { recoveryCodes: string[] }>("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: codeFor(enrol.body.secret) });
			expect(done.status).toBe(200);
			expect(done.body.recoveryCodes).toHaveLength(10);
			expect(done.body.tenant.id).toBe(owner.tenant.id);
			// Its refresh works: this session has shown a second factor.
			expect((await post("/auth/refresh", { refreshToken: done.body.refreshToken })).status).toBe(200);
			// Nobody may turn it off while the tenant requires it.
			expect((await post("/auth/2fa/disable", { code: codeFor(enrol.body.secret, stepOf() + 1) }, as(done.body))).status).toBe(409);
			// API keys are unaffected.
			expect((await request(p.api("/playlists"), { headers: bearer(key.body.key) })).status).toBe(200);

			// Requirement off: the owner turns two-factor off with a code.
			expect((await request(p.api("/tenant/two-factor"), { method: "PUT", json: { required: false }, headers: as(owner) })).status).toBe(200);
			expect((await post("/auth/2fa/disable", { code: "000000" }, as(owner))).status).toBe(422);
			expect((await post("/auth/2fa/disable", { code: codeFor(ownerSecret, stepOf() + 1) }, as(owner))).status).toBe(204);
			expect((await get("/auth/2fa", as(owner))).body).toMatchObject({ enabled: false });
			expect((await signIn(ownerAccount.email, ownerAccount.password)).body).toHaveProperty("accessToken");
			await waitForMail(p, ownerAccount.email, 3);
			expect(mailbox(p, ownerAccount.email).join("\n")).toContain("Two-factor authentication was turned off");
		});

		it("turning two-factor off takes it from the account's sessions too: a tenant that requires it refuses them", async () => {
			const carolAccount = newAccount("carol");
			const carol = await register(p, carolAccount);
			const bobAccount = newAccount("bob");
			const bob = await register(p, bobAccount);
			const member = await post("/invitations", { email: carol.user.email, role: "editor" }, as(bob));
			expect(member.status).toBe(201);
			await waitForMail(p, carol.user.email, 2);
			const token = mailbox(p, carol.user.email).map(m => /accept-invitation\?token=([\w-]+)/.exec(m)?.[1]).filter(Boolean).pop();
			expect((await post("/invitations/accept", { token, password: carolAccount.password })).status).toBe(200);
			// Carol's session shows a second factor, then she turns two-factor off.
			const { secret } = await enableTwoFactor(carol, carolAccount.password);
			expect((await post("/auth/2fa/disable", { code: codeFor(secret, stepOf() + 1) }, as(carol))).status).toBe(204);
			// Bob's tenant starts requiring it.
			await enableTwoFactor(bob, bobAccount.password);
			expect((await request(p.api("/tenant/two-factor"), { method: "PUT", json: { required: true }, headers: as(bob) })).status).toBe(200);
			const switched = await post<ErrorBody>("/auth/switch-tenant", { tenantId: bob.tenant.id }, as(carol));
			expect([switched.status, switched.body.error?.data]).toEqual([403, { requirement: "twoFactor" }]);
		});

		it("new recovery codes need a code and replace the old ones", async () => {
			const account = newAccount("codes");
			const session = await register(p, account);
			const { secret, recoveryCodes } = await enableTwoFactor(session, account.password);
			expect((await post("/auth/2fa/recovery-codes", { code: "123456" }, as(session))).status).toBe(422);
			const fresh = await post<{ recoveryCodes: string[] }>("/auth/2fa/recovery-codes", { code: codeFor(secret, stepOf() + 1) }, as(session));
			expect(fresh.status).toBe(200);
			expect(fresh.body.recoveryCodes).toHaveLength(10);
			const challenge = await signIn(account.email, account.password);
			expect((await post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: recoveryCodes[0] })).status).toBe(401);
			expect((await post("/auth/login/2fa", { challengeToken: challenge.body.challengeToken, code: fresh.body.recoveryCodes[0] })).status).toBe(200);
		});

		it("an invitation accepted by an account with two-factor asks for the code too", async () => {
			const account = newAccount("invitee");
			const invitee = await register(p, account);
			const { secret } = await enableTwoFactor(invitee, account.password);
			const host = await register(p, newAccount("host"));
			expect((await post("/invitations", { email: account.email, role: "viewer" }, as(host))).status).toBe(201);
			await waitForMail(p, account.email, 3);
			const token = mailbox(p, account.email).map(m => /accept-invitation\?token=([\w-]+)/.exec(m)?.[1]).filter(Boolean).pop();
			const accepted = await post<Challenge>("/invitations/accept", { token, password: account.password });
			expect(accepted.status).toBe(200);
			expect(accepted.body).toMatchObject({ challenge: "totp" });
			const done = await post<Session>("/auth/login/2fa", { challengeToken: accepted.body.challengeToken, code: codeFor(secret, stepOf() + 1) });
			expect(done.body).toMatchObject({ tenant: { id: host.tenant.id }, role: "viewer" });
		});

		it("challenges are not kept: the cleanup removes them an hour after they expire, and a live one keeps working", async () => {
			const account = newAccount("sweep");
			const session = await register(p, account);
			const { secret } = await enableTwoFactor(session, account.password);
			const live = await signIn(account.email, account.password);
			const auth = p.broker.getLocalService("auth") as unknown as {
				removeExpired(nowMs?: number): Promise<number>;
				db: { login_challenges: { countDocs(query: object): Promise<number> } };
			};
			const mine = () => auth.db.login_challenges.countDocs({ userId: session.user.id });
			expect(await mine()).toBe(1);
			// Just expired: kept (a late answer reads "expired"); an hour later: gone.
			expect(await auth.removeExpired(Date.now() + 6 * 60_000)).toBe(0);
			expect(await mine()).toBe(1);
			expect((await post("/auth/login/2fa", { challengeToken: live.body.challengeToken, code: codeFor(secret, stepOf() + 1) })).status).toBe(200);
			await auth.removeExpired(Date.now() + 66 * 60_000);
			expect(await mine()).toBe(0);
		});

		it("bad input to every two-factor route is a 4xx in the error shape", async () => {
			const session = await register(p, newAccount("fuzzy"));
			const bodies: unknown[] = [null, [], "x", 5, {}, { code: null }, { code: { $ne: "" } }, { code: "x".repeat(100) }, { challengeToken: 5, code: "1" }, { password: ["a"] }, { __proto__: { code: "1" } }];
			for (const path of ["/auth/login/2fa", "/auth/login/2fa/enrol", "/auth/2fa/enrol", "/auth/2fa/confirm", "/auth/2fa/disable", "/auth/2fa/recovery-codes"]) {
				for (const body of bodies) {
					const res = await request<ErrorBody>(p.api(path), { method: "POST", json: body, headers: as(session) });
					expect([path, JSON.stringify(body), res.status >= 400 && res.status < 500, typeof res.body?.error?.type]).toEqual([path, JSON.stringify(body), true, "string"]);
				}
			}
		});
	});
});
