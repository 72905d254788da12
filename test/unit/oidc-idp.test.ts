/**
 * The OIDC identity provider fixture (test/helpers/oidc-idp.*) against the real relying-party
 * library our SSO uses, openid-client v5: discovery, authorization code + PKCE S256, the callback's
 * state/nonce/ID token checks. Tampered ID tokens are validly signed, so only claim checks can
 * refuse them: these tests pin that openid-client does.
 */
import { custom, errors, generators, Issuer, type Client, type TokenSet } from "openid-client";
import { followAuthorization, startIdp, type Idp } from "../helpers/oidc-idp";

const CLIENT_ID = "marquee-test";
const CLIENT_SECRET = "marquee-test-secret-0123456789";
// Never requested: followAuthorization stops at it. Port 9 (discard) so nothing would answer anyway.
const REDIRECT_URI = "http://127.0.0.1:9/cb";

// openid-client v5's default is 3.5 s; a busy 2-core machine can be slower on the first requests.
custom.setHttpOptionsDefaults({ timeout: 5_000 });

let idp: Idp;
let issuer: Issuer<Client>;
let client: Client;

beforeAll(async () => {
	idp = await startIdp({ clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT_URI] }] });
	issuer = await Issuer.discover(idp.issuer);
	client = new issuer.Client({
		client_id: CLIENT_ID,
		client_secret: CLIENT_SECRET,
		redirect_uris: [REDIRECT_URI],
		response_types: ["code"],
		token_endpoint_auth_method: "client_secret_basic"
	});
});

afterAll(async () => {
	await idp?.stop();
});

afterEach(async () => {
	await idp.tamper({});
	await idp.setAccount({ sub: "alice", email: "alice@example.com", email_verified: true, name: "Alice" });
});

interface Checks {
	code_verifier: string;
	state: string;
	nonce: string;
}

/** Authorization URL and redirect back, the way our SSO starts a sign-in. */
async function authorize(rp: Client = client, extra: Record<string, string> = {}): Promise<{ url: string; checks: Checks }> {
	const checks = { code_verifier: generators.codeVerifier(), state: generators.state(), nonce: generators.nonce() };
	const authorizationUrl = rp.authorizationUrl({
		scope: "openid email profile",
		code_challenge: generators.codeChallenge(checks.code_verifier),
		code_challenge_method: "S256",
		state: checks.state,
		nonce: checks.nonce,
		...extra
	});
	const { url } = await followAuthorization(authorizationUrl, REDIRECT_URI);
	return { url, checks };
}

async function signIn(rp: Client = client): Promise<TokenSet> {
	const { url, checks } = await authorize(rp);
	return rp.callback(REDIRECT_URI, rp.callbackParams(url), checks);
}

test("discovery describes the fixture: code flow, S256 only, RS256 ID tokens", () => {
	expect(issuer.issuer).toBe(idp.issuer);
	expect(issuer.metadata.code_challenge_methods_supported).toEqual(["S256"]);
	expect(issuer.metadata.response_types_supported).toEqual(["code"]);
	expect(issuer.metadata.id_token_signing_alg_values_supported).toEqual(["RS256"]);
	expect(issuer.metadata.scopes_supported).toEqual(expect.arrayContaining(["openid", "email", "profile"]));
});

test("a sign-in with code + PKCE yields an ID token for the current account", async () => {
	const { url, checks } = await authorize();
	const params = client.callbackParams(url);
	expect(params).toEqual(expect.objectContaining({ code: expect.any(String), state: checks.state, iss: idp.issuer }));

	const tokenSet = await client.callback(REDIRECT_URI, params, checks);
	expect(tokenSet.claims()).toEqual(
		expect.objectContaining({ iss: idp.issuer, aud: CLIENT_ID, sub: "alice", email: "alice@example.com", email_verified: true, name: "Alice", nonce: checks.nonce })
	);
	// The access token works at userinfo with the same claims.
	expect(await client.userinfo(tokenSet)).toEqual(expect.objectContaining({ sub: "alice", email: "alice@example.com" }));
});

test("setAccount changes who the next sign-in is", async () => {
	await idp.setAccount({ sub: "bob-42", email: "bob@example.org", email_verified: false });
	const claims = (await signIn()).claims();
	expect(claims).toEqual(expect.objectContaining({ sub: "bob-42", email: "bob@example.org", email_verified: false }));
	expect(claims).not.toHaveProperty("name");
});

test("client_secret_post is accepted as well", async () => {
	const postClient = new issuer.Client({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: "client_secret_post" });
	expect((await signIn(postClient)).claims().sub).toBe("alice");
});

test("a tampered ID token is re-signed with the real key (acceptable claims pass every check)", async () => {
	// openid-client v5 checks the claims before the signature, so the refusals below alone would not
	// show that the signature is valid: this one passes the signature check with a changed claim.
	const exp = Math.floor(Date.now() / 1000) + 1234;
	await idp.tamper({ exp });
	expect((await signIn()).claims()).toEqual(expect.objectContaining({ sub: "alice", exp }));
});

describe("openid-client refuses", () => {
	test("an ID token from another issuer (valid signature)", async () => {
		await idp.tamper({ iss: "http://127.0.0.1:1" });
		await expect(signIn()).rejects.toThrow(errors.RPError);
		await idp.tamper({ iss: "http://127.0.0.1:1" });
		await expect(signIn()).rejects.toThrow(`unexpected iss value, expected ${idp.issuer}, got: http://127.0.0.1:1`);
	});

	test("an ID token for another audience", async () => {
		await idp.tamper({ aud: "someone-else" });
		await expect(signIn()).rejects.toThrow(new errors.RPError(`aud mismatch, expected ${CLIENT_ID}, got: someone-else`));
	});

	test("an ID token with another nonce", async () => {
		await idp.tamper({ nonce: "replayed-nonce" });
		await expect(signIn()).rejects.toThrow(/^nonce mismatch, expected .+, got: replayed-nonce$/);
	});

	test("an expired ID token", async () => {
		await idp.tamper({ exp: Math.floor(Date.now() / 1000) - 3600 });
		await expect(signIn()).rejects.toThrow(/^JWT expired, now \d+, exp \d+$/);
	});

	test("a callback whose state is not the one it sent (before any token request)", async () => {
		const { url, checks } = await authorize();
		await expect(client.callback(REDIRECT_URI, client.callbackParams(url), { ...checks, state: "other" })).rejects.toThrow(/^state mismatch, expected other, got: /);
	});

	test("nothing once tampering is cleared, and tampering lasts one token response", async () => {
		await idp.tamper({ nonce: "x" });
		await idp.tamper({});
		expect((await signIn()).claims().sub).toBe("alice");
		await idp.tamper({ aud: "someone-else" });
		await expect(signIn()).rejects.toThrow(errors.RPError);
		expect((await signIn()).claims().sub).toBe("alice");
	});
});

describe("the IdP refuses", () => {
	test("a wrong code_verifier at the token endpoint (PKCE)", async () => {
		const { url, checks } = await authorize();
		const wrong = { ...checks, code_verifier: generators.codeVerifier() };
		const err = await client.callback(REDIRECT_URI, client.callbackParams(url), wrong).catch((e: unknown) => e);
		expect(err).toBeInstanceOf(errors.OPError);
		expect(err).toMatchObject({ error: "invalid_grant" });
	});

	test("an authorization request without PKCE (redirected back with an error)", async () => {
		const state = generators.state();
		const authorizationUrl = client.authorizationUrl({ scope: "openid email", state, nonce: generators.nonce() });
		const { url } = await followAuthorization(authorizationUrl, REDIRECT_URI);
		const params = client.callbackParams(url);
		expect(params).toMatchObject({ error: "invalid_request", state });
		await expect(client.callback(REDIRECT_URI, params, { state })).rejects.toThrow(errors.OPError);
	});

	test("a wrong client secret", async () => {
		const bad = new issuer.Client({ client_id: CLIENT_ID, client_secret: "wrong", redirect_uris: [REDIRECT_URI] });
		await expect(signIn(bad)).rejects.toMatchObject({ name: "OPError", error: "invalid_client" });
	});
});

test("followAuthorization says where it stopped when the IdP does not redirect", async () => {
	const authorizationUrl = client.authorizationUrl({ scope: "openid", redirect_uri: "http://127.0.0.1:9/not-registered" });
	await expect(followAuthorization(authorizationUrl, REDIRECT_URI)).rejects.toThrow(/answered 400, not a redirect[\s\S]*redirect_uri/);
});
