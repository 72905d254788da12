/**
 * Single sign-on end to end against a real OpenID Connect provider (oidc-provider, started in its
 * own process on a free local port, test/helpers/oidc-idp.ts): the browser's redirects, the
 * callback with PKCE, state, nonce and the flow's cookie, the one-time code exchange, just-in-time
 * membership, mandatory SSO, and every way a sign-in must be refused (forged state, another
 * browser, a replayed callback, an ID token from another issuer or for another audience or with
 * another nonce, an email outside the allowed domains, an account that never joined).
 */
import { createHash, randomBytes } from "node:crypto";
import { bearer, login, newAccount, register, someClient, startTestPlatform, waitForMail, type Platform, type Session } from "../helpers/accounts";
import { startTestDns, type TestDns } from "../helpers/dns-server";
import { followAuthorization, startIdp, type Idp } from "../helpers/oidc-idp";
import { request, type ErrorBody } from "../helpers/platform";
import { acceptInvitation, addMember } from "../helpers/routes";

const CLIENT_ID = "marquee-acme";
const CLIENT_SECRET = "acme-client-secret-that-is-long-and-random-0123456789";

describe("single sign-on (OpenID Connect)", () => {
	let p: Platform;
	let idp: Idp;
	let owner: Session & { password: string };
	let redirectUri: string;
	let dns: TestDns;
	const domain = `acme-${process.pid}.test`;

	beforeAll(async () => {
		dns = await startTestDns();
		p = await startTestPlatform({ SSO_ALLOW_PRIVATE: "true", DNS_SERVERS: dns.server, DEFAULT_PLAN_MEMBERS: "50", APP_URL: "https://cms.example.com" });
		owner = await register(p, { ...newAccount("first"), email: `chief@${domain}`, organizationName: "Acme Signage" });
		redirectUri = `${p.url}/api/v1/auth/sso/${owner.tenant.slug}/callback`;
		idp = await startIdp({ clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri] }] });
		const configured = await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, allowedDomains: [domain, "Subsidiary.Example."], defaultRole: "editor" });
		expect(configured.status).toBe(200);

		// Nobody signs in through a domain the tenant has not proved it controls.
		await idp.setAccount({ sub: "idp-early", email: `early@${domain}` });
		const early = await ssoSignIn();
		expect([early.status, early.error?.type]).toEqual([302, "FORBIDDEN"]);
		const records = (configured.body.domains as Array<{ domain: string; verified: boolean; record: { type: string; name: string; value: string } }>);
		expect(records).toEqual([
			{ domain, verified: false, record: { type: "TXT", name: `_marquee-verification.${domain}`, value: expect.stringMatching(/^marquee-verification=[\w-]{32}$/) } },
			{ domain: "subsidiary.example", verified: false, record: { type: "TXT", name: "_marquee-verification.subsidiary.example", value: expect.any(String) } }
		]);
		// A wrong value verifies nothing; the right one verifies its domain only.
		dns.setTxt(records[0].record.name, ["marquee-verification=someone-elses"]);
		const wrong = await request<{ domains: Array<{ verified: boolean }> }>(p.api("/tenant/sso/verify-domains"), { method: "POST", headers: as(owner) });
		expect(wrong.body.domains.map(d => d.verified)).toEqual([false, false]);
		dns.setTxt(records[0].record.name, ["v=spf1 -all", records[0].record.value]);
		const verified = await request<{ domains: Array<{ verified: boolean }> }>(p.api("/tenant/sso/verify-domains"), { method: "POST", headers: as(owner) });
		expect(verified.body.domains.map(d => d.verified)).toEqual([true, false]);
	}, 60_000);

	afterAll(async () => {
		await idp?.stop();
		await p?.stop();
		await dns?.close();
	});

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const putSso = (body: unknown, token = owner.accessToken) => request<Record<string, unknown> & ErrorBody>(p.api("/tenant/sso"), { method: "PUT", json: body, headers: bearer(token) });

	/** GET /auth/sso/:slug as the CMS sends a browser there: the IdP's authorization URL, the flow's cookie, and the CMS's verifier. */
	async function start(slug = owner.tenant.slug): Promise<{ location: string; cookie: string; verifier: string }> {
		const verifier = randomBytes(32).toString("base64url");
		const challenge = createHash("sha256").update(verifier).digest("base64url");
		const res = await fetch(p.api(`/auth/sso/${slug}?codeChallenge=${challenge}`), { redirect: "manual", headers: someClient() });
		expect(res.status).toBe(302);
		const setCookie = res.headers.get("set-cookie") ?? "";
		expect(setCookie).toMatch(/^marquee_sso=[\w-]+; Path=\/api\/v1\/auth\/sso; Max-Age=600; HttpOnly; SameSite=Lax$/);
		return { location: res.headers.get("location") ?? "", cookie: setCookie.split(";")[0], verifier };
	}

	/**
	 * The callback as the browser requests it: its status and Location, and the failure it names —
	 * in the redirect back to the CMS (`error`, `error_description`, `request_id`), or a JSON body
	 * (parameters refused before the action runs).
	 */
	async function callback(url: string, cookie: string | null) {
		const res = await fetch(url, { redirect: "manual", headers: { ...someClient(), ...(cookie ? { Cookie: `theme=dark; ${cookie}; other=1` } : {}) } });
		const text = await res.text();
		const location = res.headers.get("location") ?? "";
		const back = location ? new URL(location) : null;
		if (back?.searchParams.has("error")) {
			expect(`${back.origin}${back.pathname}`).toBe("https://cms.example.com/sso/callback");
			expect([back.searchParams.has("code"), back.searchParams.get("request_id"), res.headers.get("cache-control")]).toEqual([false, res.headers.get("x-request-id"), "no-store"]);
			return { status: res.status, location, error: { type: back.searchParams.get("error") ?? "", message: back.searchParams.get("error_description") ?? "" } };
		}
		return { status: res.status, location, error: text ? (JSON.parse(text) as ErrorBody).error : undefined };
	}

	/** The whole flow for the IdP's current account: the session, or the failing answer. */
	async function ssoSignIn(): Promise<{ status: number; session?: Session; error?: ErrorBody["error"] }> {
		const { location, cookie, verifier } = await start();
		const back = await followAuthorization(location, redirectUri);
		const answer = await callback(back.url, cookie);
		if (answer.error) return { status: answer.status, error: answer.error as ErrorBody["error"] };
		const target = new URL(answer.location);
		expect(`${target.origin}${target.pathname}`).toBe("https://cms.example.com/sso/callback");
		const exchanged = await request<Session & ErrorBody>(p.api("/auth/sso/exchange"), { method: "POST", json: { code: target.searchParams.get("code"), codeVerifier: verifier }, headers: someClient() });
		return { status: exchanged.status, session: exchanged.body, error: exchanged.body.error };
	}

	it("shows the connection without its secret, and keeps the secret sealed at rest", async () => {
		const view = await request<Record<string, unknown>>(p.api("/tenant/sso"), { headers: as(owner) });
		expect(view.status).toBe(200);
		expect(view.body).toEqual({
			configured: true,
			issuer: idp.issuer,
			clientId: CLIENT_ID,
			clientSecretSet: true,
			allowedDomains: [domain, "subsidiary.example"],
			domains: [
				{ domain, verified: true, record: { type: "TXT", name: `_marquee-verification.${domain}`, value: expect.any(String) } },
				{ domain: "subsidiary.example", verified: false, record: { type: "TXT", name: "_marquee-verification.subsidiary.example", value: expect.any(String) } }
			],
			defaultRole: "editor",
			enforced: false,
			enabled: true,
			redirectUri,
			loginUrl: `${p.url}/api/v1/auth/sso/${owner.tenant.slug}`,
			updatedAt: expect.any(String)
		});
		expect(view.text).not.toContain(CLIENT_SECRET);
		const auth = p.broker.getLocalService("auth") as unknown as { db: { sso_connections: { findDocs(scope: unknown): Promise<Array<Record<string, unknown>>> } } };
		const { ALL_TENANTS } = await import("../../mixins/db.mixin");
		const stored = JSON.stringify(await auth.db.sso_connections.findDocs(ALL_TENANTS));
		expect(stored).toContain(idp.issuer);
		expect(stored).not.toContain(CLIENT_SECRET);
		// The tenant's export names it too, still without the secret.
		const exported = await request<{ services: { auth: { ssoConnection: unknown } } }>(p.api("/tenant/export"), { headers: as(owner) });
		expect(exported.body.services.auth.ssoConnection).toEqual({ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain, "subsidiary.example"], defaultRole: "editor", enforced: false, enabled: true, updatedAt: expect.any(String) });
		expect(exported.text).not.toContain(CLIENT_SECRET);
	});

	it("a new person of an allowed domain signs in end to end and joins with the default role", async () => {
		await idp.setAccount({ sub: "idp-dana", email: `Dana@${domain}`, email_verified: true, name: "Dana Ödegaard" });
		const first = await ssoSignIn();
		expect(first.status).toBe(200);
		expect(first.session).toMatchObject({ user: { email: `dana@${domain}`, name: "Dana Ödegaard", emailVerified: true }, tenant: { id: owner.tenant.id }, role: "editor" });
		const session = first.session as Session;
		expect((await request(p.api("/playlists"), { headers: as(session) })).status).toBe(200);
		// Sessions from SSO behave like any other: refresh rotation, logout.
		const refreshed = await request<{ refreshToken: string }>(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: session.refreshToken }, headers: someClient() });
		expect(refreshed.status).toBe(200);
		expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: session.refreshToken }, headers: someClient() })).status).toBe(401);
		// Again: the same account (linked by the IdP's subject), no second membership.
		const again = await ssoSignIn();
		expect(again.session?.user.id).toBe(session.user.id);
		const members = await request<{ rows: Array<{ email: string; role: string }> }>(p.api("/members?pageSize=100"), { headers: as(owner) });
		expect(members.body.rows.filter(m => m.email === `dana@${domain}`)).toEqual([expect.objectContaining({ role: "editor" })]);
		expect((await request(p.api("/auth/logout"), { method: "POST", json: { refreshToken: refreshed.body.refreshToken }, headers: someClient() })).status).toBe(204);
	});

	it("a session from SSO reaches its tenant only: no switching, no account-wide changes", async () => {
		await idp.setAccount({ sub: "idp-erin", email: `erin@${domain}` });
		const { session } = await ssoSignIn();
		const erin = session as Session;
		// Erin also owns an organisation of her own.
		const own = await request<{ tenant: { id: string } }>(p.api("/tenants"), { method: "POST", json: { name: "Erin's side project" }, headers: as(erin) });
		expect(own.status).toBe(403);
		expect((await request(p.api("/auth/switch-tenant"), { method: "POST", json: { tenantId: owner.tenant.id }, headers: as(erin) })).status).toBe(403);
		expect((await request(p.api("/auth/2fa"), { headers: as(erin) })).status).toBe(403);
		expect((await request(p.api("/auth/2fa/enrol"), { method: "POST", json: { password: "anything" }, headers: as(erin) })).status).toBe(403);
		expect((await request(p.api("/auth/change-password"), { method: "POST", json: { currentPassword: "a", newPassword: "b".repeat(20) }, headers: as(erin) })).status).toBe(403);
		const tenants = await request<{ rows: Array<{ tenant: { id: string } }> }>(p.api("/auth/tenants"), { headers: as(erin) });
		expect(tenants.body.rows.map(r => r.tenant.id)).toEqual([owner.tenant.id]);
	});

	it("an invited member signs in with SSO as themselves and keeps their role", async () => {
		const account = { ...newAccount("second"), email: `frank@${domain}` };
		expect((await request(p.api("/invitations"), { method: "POST", json: { email: account.email, role: "admin" }, headers: as(owner) })).status).toBe(201);
		await waitForMail(p, account.email, 1);
		const accepted = await acceptInvitation(p, account.email, { name: account.name, password: account.password });
		await idp.setAccount({ sub: "idp-frank", email: account.email });
		const { status, session } = await ssoSignIn();
		expect(status).toBe(200);
		expect(session).toMatchObject({ user: { id: accepted.user.id }, role: "admin" });
	});

	it("someone who left or was removed does not come back through SSO", async () => {
		// A member who joined by invitation, linked by an SSO sign-in, then left.
		const account = { ...newAccount("sixth"), email: `olga@${domain}` };
		expect((await request(p.api("/invitations"), { method: "POST", json: { email: account.email, role: "viewer" }, headers: as(owner) })).status).toBe(201);
		await waitForMail(p, account.email, 1);
		const olga = await acceptInvitation(p, account.email, { name: account.name, password: account.password });
		await idp.setAccount({ sub: "idp-olga", email: account.email });
		expect((await ssoSignIn()).status).toBe(200);
		expect((await request(p.api("/members/me"), { method: "DELETE", headers: as(olga) })).status).toBe(204);
		const back = await ssoSignIn();
		expect([back.status, back.error?.type]).toEqual([302, "CONFLICT"]);
		// Someone who joined just in time, removed by the owner.
		await idp.setAccount({ sub: "idp-pete", email: `pete@${domain}` });
		const pete = (await ssoSignIn()).session as Session;
		expect((await request(p.api(`/members/${pete.user.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const again = await ssoSignIn();
		expect([again.status, again.error?.type]).toEqual([302, "CONFLICT"]);
		const members = await request<{ rows: Array<{ userId: string }> }>(p.api("/members?pageSize=100"), { headers: as(owner) });
		expect(members.body.rows.map(m => m.userId)).not.toEqual(expect.arrayContaining([olga.user.id]));
		expect(members.body.rows.map(m => m.userId)).not.toContain(pete.user.id);
		// Invited again, the link works again.
		expect((await request(p.api("/invitations"), { method: "POST", json: { email: account.email, role: "viewer" }, headers: as(owner) })).status).toBe(201);
		await waitForMail(p, account.email, 2);
		await acceptInvitation(p, account.email, { password: account.password });
		await idp.setAccount({ sub: "idp-olga", email: account.email });
		expect((await ssoSignIn()).session).toMatchObject({ user: { id: olga.user.id }, role: "viewer" });
	});

	it("refuses an account of the domain that never joined this organisation", async () => {
		const outsider = await register(p, { ...newAccount("third"), email: `gina@${domain}` });
		await idp.setAccount({ sub: "idp-gina", email: outsider.user.email });
		const answer = await ssoSignIn();
		expect([answer.status, answer.error?.type]).toEqual([302, "CONFLICT"]);
		expect(answer.error?.message).toContain("ask an admin to invite it");
		const members = await request<{ rows: Array<{ userId: string }> }>(p.api("/members?pageSize=100"), { headers: as(owner) });
		expect(members.body.rows.map(m => m.userId)).not.toContain(outsider.user.id);
	});

	it("refuses an email outside the allowed domains, and one the IdP has not verified", async () => {
		await idp.setAccount({ sub: "idp-mallory", email: "mallory@evil.example", email_verified: true });
		const outside = await ssoSignIn();
		expect([outside.status, outside.error?.type]).toEqual([302, "FORBIDDEN"]);
		await idp.setAccount({ sub: "idp-hank", email: `hank@${domain}`, email_verified: false });
		const unverified = await ssoSignIn();
		expect([unverified.status, unverified.error?.type]).toEqual([302, "FORBIDDEN"]);
		const members = await request(p.api("/members?pageSize=100"), { headers: as(owner) });
		expect(members.text).not.toContain("mallory@");
		expect(members.text).not.toContain("hank@");
	});

	it.each([
		["another issuer", { iss: "http://127.0.0.1:1" }],
		["another audience", { aud: "someone-else" }],
		["another nonce", { nonce: "not-the-one-we-sent" }]
	])("refuses an ID token with %s", async (_what, claims) => {
		await idp.setAccount({ sub: "idp-ivy", email: `ivy@${domain}` });
		await idp.tamper(claims);
		const answer = await ssoSignIn();
		expect([answer.status, answer.error?.type]).toEqual([302, "UNAUTHORIZED"]);
		// The kind of failure, without the values compared (our nonce stays ours).
		expect(answer.error?.message).toMatch(/^The identity provider's answer was refused: (unexpected iss value|aud mismatch|nonce mismatch)$/);
		await idp.tamper({});
		const members = await request(p.api("/members?pageSize=100"), { headers: as(owner) });
		expect(members.text).not.toContain("ivy@");
	});

	it("refuses a forged state, a callback in another browser, and the same callback twice", async () => {
		await idp.setAccount({ sub: "idp-jo", email: `jo@${domain}` });
		const { location, cookie, verifier } = await start();
		const back = await followAuthorization(location, redirectUri);
		const forged = new URL(back.url);
		forged.searchParams.set("state", "forged-state-value-0123456789");
		const refusal = async (url: string, withCookie: string | null) => {
			const answer = await callback(url, withCookie);
			return [answer.status, answer.error?.type];
		};
		expect(await refusal(forged.toString(), cookie)).toEqual([302, "UNAUTHORIZED"]);
		// Someone else's browser (no cookie, or their own flow's cookie).
		expect(await refusal(back.url, null)).toEqual([302, "UNAUTHORIZED"]);
		const other = await start();
		expect(await refusal(back.url, other.cookie)).toEqual([302, "UNAUTHORIZED"]);
		// The right browser: once.
		const ok = await callback(back.url, cookie);
		expect([ok.status, ok.error]).toEqual([302, undefined]);
		expect(await refusal(back.url, cookie)).toEqual([302, "UNAUTHORIZED"]);
		// The one-time code too.
		const code = new URL(ok.location).searchParams.get("code");
		const exchange = () => request(p.api("/auth/sso/exchange"), { method: "POST", json: { code, codeVerifier: verifier }, headers: someClient() });
		expect((await exchange()).status).toBe(200);
		expect((await exchange()).status).toBe(401);
		// A flow someone else started in this browser (a link to SSO): the CMS's own verifier does not
		// match, and the code is spent by the attempt.
		const planted = await start();
		const plantedBack = await followAuthorization(planted.location, redirectUri);
		const plantedCode = new URL((await callback(plantedBack.url, planted.cookie)).location).searchParams.get("code");
		const foreign = await request<ErrorBody>(p.api("/auth/sso/exchange"), { method: "POST", json: { code: plantedCode, codeVerifier: verifier }, headers: someClient() });
		expect([foreign.status, foreign.body.error.message]).toEqual([401, "This sign-in was not started by this client: start again"]);
		expect((await request(p.api("/auth/sso/exchange"), { method: "POST", json: { code: plantedCode, codeVerifier: planted.verifier }, headers: someClient() })).status).toBe(401);
		// Starting without the client's challenge is refused.
		expect((await fetch(p.api(`/auth/sso/${owner.tenant.slug}`), { redirect: "manual", headers: someClient() })).status).toBe(422);
		// The IdP's own refusal.
		const refused = await callback(`${redirectUri}?error=access_denied&state=x`, cookie);
		expect([refused.status, refused.error?.type]).toEqual([302, "UNAUTHORIZED"]);
		expect(refused.error?.message).toBe("The identity provider did not sign you in (access_denied)");
	});

	it("an unknown organisation and one without SSO answer 404 alike", async () => {
		const plain = await register(p, newAccount("plain"));
		for (const slug of [plain.tenant.slug, "no-such-organisation", "%00", "a".repeat(200)]) {
			const res = await fetch(p.api(`/auth/sso/${slug}?codeChallenge=${"c".repeat(43)}`), { redirect: "manual", headers: someClient() });
			expect([slug.slice(0, 20), res.status]).toEqual([slug.slice(0, 20), 404]);
		}
	});

	it("mandatory SSO: members of the domains lose password sign-in (and password sessions end at refresh); the owner and other domains keep it", async () => {
		const member = { ...newAccount("fourth"), email: `kim@${domain}` };
		expect((await request(p.api("/invitations"), { method: "POST", json: { email: member.email, role: "viewer" }, headers: as(owner) })).status).toBe(201);
		await waitForMail(p, member.email, 1);
		await acceptInvitation(p, member.email, { name: member.name, password: member.password });
		const outsiderAccount = { ...newAccount("fifth"), email: `lee-${process.pid}@partner.example` };
		expect((await request(p.api("/invitations"), { method: "POST", json: { email: outsiderAccount.email, role: "viewer" }, headers: as(owner) })).status).toBe(201);
		await waitForMail(p, outsiderAccount.email, 1);
		await acceptInvitation(p, outsiderAccount.email, { name: outsiderAccount.name, password: outsiderAccount.password });
		const before = await login(p, member.email, member.password);

		expect((await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain], defaultRole: "editor", enforced: true })).status).toBe(200);
		// The wrong password still answers as always; the right one says where to sign in.
		const wrong = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", json: { email: member.email, password: "Not-the-password-1!" }, headers: someClient() });
		expect([wrong.status, wrong.body.error.message]).toEqual([401, "Invalid email or password"]);
		const refused = await request<ErrorBody>(p.api("/auth/login"), { method: "POST", json: { email: member.email, password: member.password }, headers: someClient() });
		expect([refused.status, refused.body.error.type]).toEqual([403, "FORBIDDEN"]);
		expect(refused.body.error.data).toEqual({ requirement: "sso", ssoUrl: `/api/v1/auth/sso/${owner.tenant.slug}` });
		expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: before.refreshToken }, headers: someClient() })).status).toBe(401);
		// Through SSO it works.
		await idp.setAccount({ sub: "idp-kim", email: member.email });
		expect((await ssoSignIn()).session).toMatchObject({ role: "viewer", tenant: { id: owner.tenant.id } });
		// The owner keeps a way in; another domain's member is untouched.
		expect((await login(p, owner.user.email, owner.password)).tenant.id).toBe(owner.tenant.id);
		expect((await login(p, outsiderAccount.email, outsiderAccount.password)).tenant.id).toBe(owner.tenant.id);

		expect((await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain], enforced: false })).status).toBe(200);
		expect((await login(p, member.email, member.password)).tenant.id).toBe(owner.tenant.id);
	});

	it("never hands out the owner's role: the owner signing in through SSO acts as an admin", async () => {
		await idp.setAccount({ sub: "idp-chief", email: owner.user.email });
		const { session } = await ssoSignIn();
		expect(session).toMatchObject({ user: { id: owner.user.id }, role: "admin" });
		expect((await request(p.api("/tenant/export"), { headers: as(session as Session) })).status).toBe(403);
		const refreshed = await request<{ accessToken: string }>(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: (session as Session).refreshToken }, headers: someClient() });
		expect((await request(p.api("/tenant/export"), { headers: bearer(refreshed.body.accessToken) })).status).toBe(403);
		// The owner's own sign-in is still the owner.
		expect((await login(p, owner.user.email, owner.password)).role).toBe("owner");
	});

	it("turning SSO off or pointing it elsewhere ends the sessions it started, at once", async () => {
		await idp.setAccount({ sub: "idp-nina", email: `nina@${domain}` });
		const { session } = await ssoSignIn();
		const nina = session as Session;
		expect((await request(p.api("/auth/me"), { headers: as(nina) })).status).toBe(200);
		expect((await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain], enabled: false })).status).toBe(200);
		expect((await request(p.api("/auth/me"), { headers: as(nina) })).status).toBe(401);
		expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: nina.refreshToken }, headers: someClient() })).status).toBe(401);
		// The owner's password session is untouched.
		expect((await request(p.api("/auth/me"), { headers: as(owner) })).status).toBe(200);
		expect((await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain], enabled: true })).status).toBe(200);
		const again = (await ssoSignIn()).session as Session;
		expect((await request(p.api("/tenant/sso"), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await request(p.api("/auth/me"), { headers: as(again) })).status).toBe(401);
		// A new connection: its domains need verifying again (a new record value).
		const renewed = await putSso({ issuer: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, allowedDomains: [domain, "subsidiary.example"], defaultRole: "editor" });
		const record = (renewed.body.domains as Array<{ record: { name: string; value: string } }>)[0].record;
		dns.setTxt(record.name, [record.value]);
		const reverified = await request<{ domains: Array<{ verified: boolean }> }>(p.api("/tenant/sso/verify-domains"), { method: "POST", headers: as(owner) });
		expect(reverified.body.domains.map(d => d.verified)).toEqual([true, false]);
	});

	it("only the owner configures it; bad configurations are 422 and leave the connection as it was", async () => {
		// An admin could otherwise point it at an identity provider of their own and sign in as anyone.
		const admin = await addMember(p, owner.accessToken, "admin", "sso-admin");
		expect((await putSso({ issuer: idp.issuer, clientId: "x", allowedDomains: [domain] }, admin.session.accessToken)).status).toBe(403);
		expect((await request(p.api("/tenant/sso"), { headers: as(admin.session) })).status).toBe(403);
		expect((await request(p.api("/tenant/sso"), { method: "DELETE", headers: as(admin.session) })).status).toBe(403);
		for (const bad of [
			{ issuer: "ftp://idp.example", clientId: CLIENT_ID, allowedDomains: [domain] },
			{ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [] },
			{ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: ["not a domain"] },
			{ issuer: `${idp.issuer}/nothing-here`, clientId: CLIENT_ID, allowedDomains: [domain] },
			{ issuer: "http://127.0.0.1:1", clientId: CLIENT_ID, allowedDomains: [domain] },
			{ issuer: idp.issuer, clientId: CLIENT_ID, allowedDomains: [domain], defaultRole: "owner" },
			{ issuer: { $gt: "" }, clientId: CLIENT_ID, allowedDomains: [domain] }
		]) {
			const res = await putSso(bad);
			expect([JSON.stringify(bad).slice(0, 60), res.status, res.body.error?.type]).toEqual([JSON.stringify(bad).slice(0, 60), 422, "VALIDATION_ERROR"]);
		}
		const view = await request<{ issuer: string; clientId: string }>(p.api("/tenant/sso"), { headers: as(owner) });
		expect([view.body.issuer, view.body.clientId]).toEqual([idp.issuer, CLIENT_ID]);
	});
});

describe("single sign-on's outbound guard", () => {
	let p: Platform;
	let owner: Session;

	beforeAll(async () => {
		p = await startTestPlatform();
		owner = await register(p, newAccount("guarded"));
	});
	afterAll(() => p.stop());

	it.each(["https://127.0.0.1:8443", "https://localhost", "https://169.254.169.254", "https://10.0.0.1", "https://[::1]", "https://0x7f.1", "http://idp.example.com"])(
		"refuses to discover %s",
		async issuer => {
			const res = await request<ErrorBody>(p.api("/tenant/sso"), { method: "PUT", json: { issuer, clientId: "c", clientSecret: "s", allowedDomains: ["example.com"] }, headers: bearer(owner.accessToken) });
			expect([res.status, res.body.error.type]).toEqual([422, "VALIDATION_ERROR"]);
		}
	);
});
