/**
 * A real OpenID Connect identity provider (oidc-provider v9) for tests of our single sign-on.
 *
 * oidc-provider is ESM-only and jest runs our tests as CommonJS, so this runs in a child process
 * (see oidc-idp.ts, which starts it). Usage:
 *
 *   node test/helpers/oidc-idp.mjs '{"clients":[{"client_id":"a","client_secret":"b","redirect_uris":["http://127.0.0.1:9/cb"]}]}'
 *
 * It listens on a free port of 127.0.0.1, prints exactly one line `{"port":N,"issuer":"http://127.0.0.1:N"}`
 * on stdout once it accepts requests, and exits on SIGTERM/SIGINT (or when its parent dies).
 *
 * There are no pages: every interaction completes at once as the "current account", granting what
 * was asked. Beside the provider's own routes, control endpoints drive it:
 *   POST /__control/account  {sub, email?, email_verified?, name?}  the account the next sign-ins are
 *   POST /__control/tamper   {iss?, aud?, nonce?, exp?}  rewrites those claims of the NEXT token
 *                            response's id_token, re-signed with the real key: a valid signature over
 *                            wrong claims, which the relying party must refuse. `{}` clears it.
 *   GET  /__control/health
 */
import crypto from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

const CONTROL = "/__control/";
// oidc-provider's default interactions.url; the router below sends these paths to completeInteraction.
const INTERACTION = "/interaction/";
const KID = "oidc-idp-test-key";

const config = JSON.parse(process.argv[2] ?? "{}");
if (!Array.isArray(config.clients) || config.clients.length === 0) {
	console.error('oidc-idp: expected one JSON argument {"clients":[{client_id, client_secret, redirect_uris}]}');
	process.exit(2);
}

// stdout carries only the ready line the parent waits for: oidc-provider prints its notices (such
// as "default ttl.AccessToken function called") with console.info, so those go to stderr.
console.info = console.log = (...args) => console.error(...args);

/** @type {Map<string, {sub: string, email?: string, email_verified?: boolean, name?: string}>} */
const accounts = new Map();
let current = { sub: "alice", email: "alice@example.com", email_verified: true, name: "Alice" };
accounts.set(current.sub, current);

/** Claims to force into the next token response's id_token; null when none. */
let tamper = null;

// A fresh RS256 key for each run: the fixture holds the private half so that tamper can re-sign.
const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: "jwk" }), kid: KID, alg: "RS256", use: "sig" };

/** The id_token with `claims` replaced, signed again with the same key; header (alg, kid) kept byte for byte. */
function resign(idToken, claims) {
	const [header, payload] = idToken.split(".");
	const { alg, kid } = JSON.parse(Buffer.from(header, "base64url").toString("utf8"));
	if (alg !== "RS256" || kid !== KID) throw new Error(`cannot re-sign an id_token with alg ${alg}, kid ${kid}`);
	const claimsOut = { ...JSON.parse(Buffer.from(payload, "base64url").toString("utf8")), ...claims };
	const input = `${header}.${Buffer.from(JSON.stringify(claimsOut)).toString("base64url")}`;
	// RS256 = RSASSA-PKCS1-v1_5 with SHA-256, node's default padding for RSA keys.
	return `${input}.${crypto.sign("sha256", Buffer.from(input), privateKey).toString("base64url")}`;
}

function send(res, status, body) {
	const text = body === undefined ? "" : JSON.stringify(body);
	res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
	res.end(text);
}

async function readJson(req) {
	let text = "";
	for await (const chunk of req) {
		text += chunk;
		if (text.length > 65_536) throw new Error("body too large");
	}
	const value = text ? JSON.parse(text) : {};
	if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("body must be a JSON object");
	return value;
}

function parseAccount(body) {
	if (typeof body.sub !== "string" || body.sub === "") throw new Error("sub must be a non-empty string");
	if (body.email !== undefined && typeof body.email !== "string") throw new Error("email must be a string");
	if (body.email_verified !== undefined && typeof body.email_verified !== "boolean") throw new Error("email_verified must be a boolean");
	if (body.name !== undefined && typeof body.name !== "string") throw new Error("name must be a string");
	return { sub: body.sub, email: body.email, email_verified: body.email_verified, name: body.name };
}

function parseTamper(body) {
	const known = { iss: "string", aud: "string", nonce: "string", exp: "number" };
	for (const [key, value] of Object.entries(body)) {
		if (!(key in known)) throw new Error(`unknown claim to tamper: ${key}`);
		if (typeof value !== known[key]) throw new Error(`${key} must be a ${known[key]}`);
	}
	return Object.keys(body).length ? body : null;
}

async function control(req, res) {
	const path = new URL(req.url, "http://x").pathname.slice(CONTROL.length);
	try {
		if (req.method === "GET" && path === "health") return send(res, 200, { ok: true });
		if (req.method === "POST" && path === "account") {
			current = parseAccount(await readJson(req));
			// Keep earlier accounts too: tokens already issued to them still resolve (userinfo).
			accounts.set(current.sub, current);
			return send(res, 204);
		}
		if (req.method === "POST" && path === "tamper") {
			tamper = parseTamper(await readJson(req));
			return send(res, 204);
		}
		return send(res, 404, { error: `no control endpoint ${req.method} ${CONTROL}${path}` });
	} catch (err) {
		return send(res, 400, { error: String(err?.message ?? err) });
	}
}

/**
 * The interaction step without a page: log in as the current account, or consent to everything the
 * prompt says is missing. oidc-provider then redirects (303) back to its authorization endpoint,
 * which either asks for the next prompt (login, then consent) or redirects to the client.
 */
async function completeInteraction(provider, req, res) {
	try {
		const interaction = await provider.interactionDetails(req, res);
		const { prompt, params, session } = interaction;
		if (prompt.name === "login") {
			return await provider.interactionFinished(req, res, { login: { accountId: current.sub } });
		}
		if (prompt.name === "consent") {
			const grant = interaction.grantId
				? await provider.Grant.find(interaction.grantId)
				: new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
			const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
			if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(" "));
			if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
			for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(" "));
			const grantId = await grant.save();
			return await provider.interactionFinished(req, res, { consent: { grantId } });
		}
		throw new Error(`unexpected prompt ${prompt.name}`);
	} catch (err) {
		// A page would show this; a test reads it from followAuthorization's error.
		res.writeHead(400, { "content-type": "text/plain" });
		res.end(`oidc-idp interaction failed: ${err?.message ?? err}`);
	}
}

const clients = config.clients.map(({ client_id, client_secret, redirect_uris }) => ({
	client_id,
	client_secret,
	redirect_uris,
	grant_types: ["authorization_code"],
	response_types: ["code"],
	// Registered as basic; oidc-provider accepts client_secret_post as well for such a client.
	token_endpoint_auth_method: "client_secret_basic",
	id_token_signed_response_alg: "RS256"
}));

/** Set once listening (see below); no request can arrive before that. */
let provider;
let providerCallback;
const server = http.createServer((req, res) => {
	if (req.url.startsWith(CONTROL)) return void control(req, res);
	if (req.url.startsWith(INTERACTION)) return void completeInteraction(provider, req, res);
	return providerCallback(req, res);
});

// The issuer names the port, so the provider is built once the server has one.
server.listen(0, "127.0.0.1", async () => {
	const { port } = server.address();
	const issuer = `http://127.0.0.1:${port}`;
	provider = new Provider(issuer, {
		clients,
		jwks: { keys: [signingJwk] },
		responseTypes: ["code"],
		clientAuthMethods: ["client_secret_basic", "client_secret_post"],
		scopes: ["openid", "email", "profile"],
		claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
		// Default true puts scope-requested claims (email, name) only in userinfo for the code flow;
		// our SSO reads them from the ID token.
		conformIdTokenClaims: false,
		// v9 knows only S256 (no `methods` option any more); require it for every client, not just public ones.
		pkce: { required: () => true },
		features: { devInteractions: { enabled: false } },
		// Signed cookies; oidc-provider sets `secure` only when the request is https, so plain http works.
		cookies: { keys: [crypto.randomBytes(32).toString("base64url")] },
		// Fixed lifetimes (the default functions work too, but announce themselves on first use).
		ttl: { AccessToken: 3600, AuthorizationCode: 120, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
		async findAccount(_ctx, sub) {
			const account = accounts.get(sub);
			if (!account) return undefined;
			// oidc-provider filters these down to the granted scopes/claims; undefined values are dropped.
			return { accountId: sub, claims: () => ({ ...account }) };
		},
		// The default renders an HTML page (and announces itself); the JSON error reads better in
		// followAuthorization's failure message.
		async renderError(ctx, out) {
			ctx.type = "json";
			ctx.body = out;
		}
	});

	// Post-processing of the token endpoint: the only place the id_token reaches the relying party in
	// the code flow, so tampering there is what an attacker (or a broken IdP) would look like.
	provider.use(async (ctx, next) => {
		await next();
		if (tamper && ctx.oidc?.route === "token" && ctx.status === 200 && ctx.body?.id_token) {
			ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, tamper) };
			tamper = null;
		}
	});
	providerCallback = provider.callback();

	// oidc-provider validates static clients lazily, on first use; a bad client in the test's
	// config should fail the start (with the reason on stderr), not the first sign-in.
	try {
		for (const { client_id } of clients) await provider.Client.find(client_id);
	} catch (err) {
		console.error(`oidc-idp: invalid client configuration: ${err?.error_description ?? err?.message ?? err}`);
		process.exit(2);
	}

	process.stdout.write(`${JSON.stringify({ port, issuer })}\n`);
});

function shutdown() {
	// Keep-alive connections (openid-client, fetch) would hold server.close() open.
	server.closeAllConnections();
	server.close(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

// An orphan (parent killed, e.g. a crashed jest worker) would otherwise run forever.
const parent = process.ppid;
setInterval(() => {
	if (process.ppid !== parent) shutdown();
}, 1000).unref();
