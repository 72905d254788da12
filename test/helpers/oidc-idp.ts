/**
 * A real OpenID Connect identity provider for tests of our single sign-on: oidc-provider v9 in a
 * child process (it is ESM-only, which jest's CommonJS cannot load), see oidc-idp.mjs.
 *
 *   const idp = await startIdp({ clients: [{ client_id, client_secret, redirect_uris: [redirectUri] }] });
 *   // the relying party discovers idp.issuer and builds an authorization URL (code + PKCE S256)
 *   const { url } = await followAuthorization(authorizationUrl, redirectUri);
 *   // url is the redirect back to the relying party, with code and state: hand it to the callback
 *   await idp.stop();
 *
 * Every sign-in completes without pages as the current account (setAccount; default alice).
 * tamper() makes the next token response carry a validly signed ID token with wrong claims.
 */
import { spawn } from "node:child_process";
import path from "node:path";

export interface IdpClient {
	client_id: string;
	client_secret: string;
	redirect_uris: string[];
}

export interface IdpAccount {
	sub: string;
	email?: string;
	email_verified?: boolean;
	name?: string;
}

/** Claims to replace in the next token response's id_token. */
export interface IdTokenTamper {
	iss?: string;
	aud?: string;
	nonce?: string;
	exp?: number;
}

export interface Idp {
	/** `http://127.0.0.1:<port>`, also the base of the discovery document. */
	issuer: string;
	port: number;
	/** The account that the following sign-ins complete as. */
	setAccount(account: IdpAccount): Promise<void>;
	/** One-shot: the next token endpoint response's id_token gets these claims, re-signed; `{}` clears. */
	tamper(claims: IdTokenTamper): Promise<void>;
	stop(): Promise<void>;
}

const SCRIPT = path.join(__dirname, "oidc-idp.mjs");
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_HOPS = 15;

export function startIdp(options: { clients: IdpClient[] }): Promise<Idp> {
	// process.execPath: the node that runs jest (the project's Node 24), which oidc-provider supports.
	const child = spawn(process.execPath, [SCRIPT, JSON.stringify({ clients: options.clients })], {
		stdio: ["ignore", "pipe", "pipe"]
	});
	// Keep only the end of stderr for error messages; keep reading it so the child never blocks on a full pipe.
	let stderr = "";
	child.stderr.setEncoding("utf8");
	child.stderr.on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-8_192)));
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));

	return new Promise<Idp>((resolve, reject) => {
		let settled = false;
		let stdout = "";
		const fail = (why: string) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			child.kill("SIGKILL");
			reject(new Error(`oidc-idp ${why}\n--- stderr ---\n${stderr}`));
		};
		const timer = setTimeout(() => fail(`did not print its ready line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
		child.once("error", err => fail(`could not start: ${err.message}`));
		child.once("exit", (code, signal) => fail(`exited before it was ready (code ${code}, signal ${signal})`));
		child.stdout.setEncoding("utf8");
		child.stdout.on("data", (chunk: string) => {
			if (settled) return; // the fixture prints nothing after its ready line; ignore whatever does
			stdout += chunk;
			const newline = stdout.indexOf("\n");
			if (newline === -1) return;
			let ready: { port: number; issuer: string };
			try {
				ready = JSON.parse(stdout.slice(0, newline));
			} catch {
				return fail(`printed an unexpected first line: ${stdout.slice(0, newline)}`);
			}
			settled = true;
			clearTimeout(timer);
			resolve(handle(ready.issuer, ready.port));
		});
	});

	function handle(issuer: string, port: number): Idp {
		const post = async (name: string, body: unknown) => {
			const res = await fetch(`${issuer}/__control/${name}`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify(body)
			});
			const text = await res.text();
			if (!res.ok) throw new Error(`oidc-idp /__control/${name}: ${res.status} ${text}`);
		};
		return {
			issuer,
			port,
			setAccount: account => post("account", account),
			tamper: claims => post("tamper", claims),
			async stop() {
				if (child.exitCode !== null || child.signalCode !== null) return;
				child.kill("SIGTERM");
				const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
				await exited;
				clearTimeout(timer);
			}
		};
	}
}

/** `name=value` pairs of one host; the walk only ever talks to the IdP, so domain and path are not needed. */
type CookieJar = Map<string, string>;

function keepCookies(jar: CookieJar, setCookies: string[]): void {
	for (const line of setCookies) {
		const [pair, ...attributes] = line.split(";");
		const eq = pair.indexOf("=");
		if (eq <= 0) continue;
		const name = pair.slice(0, eq).trim();
		const value = pair.slice(eq + 1).trim();
		// oidc-provider (koa cookies) deletes a cookie by an empty value that expired in 1970.
		const expired = attributes.some(attribute => {
			const [key, ...rest] = attribute.split("=");
			const val = rest.join("=").trim();
			const k = key.trim().toLowerCase();
			return (k === "max-age" && Number(val) <= 0) || (k === "expires" && Date.parse(val) <= Date.now());
		});
		if (expired || value === "") jar.delete(name);
		else jar.set(name, value);
	}
}

const cookieHeader = (jar: CookieJar) => [...jar].map(([name, value]) => `${name}=${value}`).join("; ");

/**
 * A tiny browser through the IdP: GETs `authorizationUrl` and follows its redirects (absolute or
 * relative Location), keeping the IdP's cookies, until a Location starts with `stopAt` (the relying
 * party's redirect URI). Returns that URL (with `code` and `state`, or `error`) without requesting
 * it, and the IdP's cookies as a Cookie header value.
 *
 * Only redirects are followed: the fixture answers the authorization with response_mode=query (303),
 * and its interactions redirect too, so no HTML form needs submitting. Anything else is an error
 * that shows the status and body (e.g. oidc-provider's JSON error for a bad redirect_uri).
 */
export async function followAuthorization(authorizationUrl: string, stopAt: string): Promise<{ url: string; cookies: string }> {
	const jar: CookieJar = new Map();
	let url = authorizationUrl;
	for (let hop = 0; hop < MAX_HOPS; hop++) {
		const res = await fetch(url, { redirect: "manual", headers: jar.size ? { cookie: cookieHeader(jar) } : {} });
		keepCookies(jar, res.headers.getSetCookie());
		const location = res.headers.get("location");
		if (res.status < 300 || res.status >= 400 || !location) {
			const body = await res.text();
			throw new Error(`followAuthorization: GET ${url} answered ${res.status}, not a redirect (hop ${hop + 1}):\n${body.slice(0, 2_000)}`);
		}
		await res.arrayBuffer(); // drained, so the connection is reused
		const next = new URL(location, url).href;
		if (next.startsWith(stopAt)) return { url: next, cookies: cookieHeader(jar) };
		url = next;
	}
	throw new Error(`followAuthorization: did not reach ${stopAt} within ${MAX_HOPS} redirects; last was ${url}`);
}
