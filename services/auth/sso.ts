/**
 * Single sign-on with a tenant's OpenID Connect identity provider (authorization code flow with
 * PKCE, state and nonce, through `openid-client`), and the rules around it.
 *
 * - A tenant's connection names the issuer, its client id and secret (sealed at rest), the email
 *   domains it vouches for (each proved by a DNS TXT record before it counts), the role of people who join through it, and whether SSO is mandatory
 *   for those domains (their passwords then do not open this tenant).
 * - The flow is bound to the browser that started it: the start sets a random cookie whose hash
 *   the state record keeps, so a callback link sent to someone else does not sign them in.
 * - The CMS that starts a flow sends the S256 challenge of a verifier only it knows, and must show
 *   the verifier to trade the callback's one-time code: a flow someone else started in the
 *   user's browser (a link to another tenant's SSO) cannot sign the user in to the CMS.
 * - State records are single-use and short-lived; the ID token's signature, issuer, audience,
 *   expiry and nonce are checked by openid-client, the email and its domain here.
 * - Every request to the identity provider goes through the SSRF guard (shared/ssrf.ts): its
 *   addresses must be public unless SSO_ALLOW_PRIVATE is set (an on-premises IdP).
 * - An identity provider is trusted for its own tenant only: it may create accounts for its
 *   domains and sign in its tenant's members, never attach an existing account from outside (see
 *   `identityDecision`), and the sessions it starts reach that tenant only.
 */
import dns from "node:dns/promises";
import { custom, generators, Issuer, type BaseClient, type IdTokenClaims } from "openid-client";
import type { NewDoc, Stored, TenantOwned } from "../../mixins/db.mixin";
import { hashToken, randomToken, safeEqual } from "../../shared/secrets";
import type { Sealer } from "../../shared/sealed";
import { assertPublicLiteral, guardedLookup, systemResolve, type Resolve } from "../../shared/ssrf";

export const SSO_STATE_TTL_MS = 10 * 60_000;
/** Discovery documents are kept this long (a changed IdP configuration is picked up after it). */
const DISCOVERY_TTL_MS = 10 * 60_000;
const IDP_TIMEOUT_MS = 5_000;
/** The roles people who join through SSO may get (never owner). */
export const SSO_ROLES = ["viewer", "editor", "admin"] as const;
export type SsoRole = (typeof SSO_ROLES)[number];

export interface SsoConnectionDoc extends TenantOwned {
	issuer: string;
	clientId: string;
	/** Sealed for `sso:<tenantId>`. */
	clientSecret: string;
	/**
	 * Lower-case domains whose people this IdP may sign in (and create accounts for), each usable
	 * once the tenant proved it controls it (a DNS TXT record, see checkDomains).
	 */
	domains: SsoDomain[];
	defaultRole: SsoRole;
	/** Passwords do not open this tenant for people of its verified domains. */
	enforced: boolean;
	enabled: boolean;
}

export interface SsoDomain {
	domain: string;
	/** The TXT record's value that proves control of the domain. */
	token: string;
	verifiedAt?: string;
}

/** A started flow, until its callback (or SSO_STATE_TTL_MS). */
export interface SsoStateDoc extends Stored {
	stateHash: string;
	/** Hash of the browser cookie set when the flow started. */
	browserHash: string;
	/** The tenant whose IdP the flow goes to (not `tenantId`: state records are global). */
	connectionTenantId: string;
	/** Sealed for `sso-state:<stateHash>`: the PKCE verifier and the nonce. */
	secrets: string;
	redirectUri: string;
	/** The S256 challenge of the CMS that started the flow: only it can trade the code that ends it. */
	exchangeChallenge: string;
	expiresAt: string;
	usedAt?: string;
}

/** The link between an identity at an IdP (issuer + subject) and an account, per tenant. */
export interface SsoIdentityDoc extends TenantOwned {
	/** sha256 of `<tenantId>\n<issuer>\n<subject>`: unique. */
	key: string;
	userId: string;
	issuer: string;
	subject: string;
}

// ---- pure ----------------------------------------------------------------------------------

export const secretContext = (tenantId: string) => `sso:${tenantId}`;
export const identityKey = (tenantId: string, issuer: string, subject: string) => hashToken(`${tenantId}\n${issuer}\n${subject}`);

export function emailDomain(email: string): string {
	return email.slice(email.lastIndexOf("@") + 1).toLowerCase();
}

/** A domain as typed into the configuration, or null when it is not a plausible DNS name. */
export function normalizeDomain(raw: string): string | null {
	const domain = raw.trim().toLowerCase().replace(/\.$/, "");
	return /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(domain) ? domain : null;
}

/** Whether the tenant's identity provider speaks for `email`: its domain is configured and verified. */
export function domainAllowed(connection: Pick<SsoConnectionDoc, "domains">, email: string): boolean {
	const domain = emailDomain(email);
	return connection.domains.some(d => d.domain === domain && d.verifiedAt);
}

// ---- domain verification -------------------------------------------------------------------

/**
 * A tenant names the domains its identity provider speaks for, and proves each one with a DNS
 * TXT record — otherwise anyone could sign up, name `gmail.com`, and have accounts created (or
 * found) for addresses that are not theirs.
 */
export const DOMAIN_RECORD_PREFIX = "_marquee-verification";
export const txtRecordName = (domain: string) => `${DOMAIN_RECORD_PREFIX}.${domain}`;

/** A DNS TXT lookup: the records of `name`, each as its character strings. */
export type ResolveTxt = (name: string) => Promise<string[][]>;

export function systemResolveTxt(servers: string[]): ResolveTxt {
	const resolver = new dns.Resolver({ timeout: 3000, tries: 2 });
	if (servers.length) resolver.setServers(servers);
	return name => resolver.resolveTxt(name);
}

/** The wanted domains: those kept keep their token and verification, new ones get a token. */
export function withDomains(current: SsoDomain[], wanted: string[]): SsoDomain[] {
	return [...new Set(wanted)].map(domain => current.find(d => d.domain === domain) ?? { domain, token: `marquee-verification=${randomToken("", 24)}` });
}

/** Looks up each unverified domain's TXT record; answers the domains with the ones that match marked verified. */
export async function checkDomains(domains: SsoDomain[], resolveTxt: ResolveTxt, now = Date.now()): Promise<SsoDomain[]> {
	return Promise.all(
		domains.map(async d => {
			if (d.verifiedAt) return d;
			const records = await resolveTxt(txtRecordName(d.domain)).catch(() => [] as string[][]);
			return records.some(chunks => chunks.join("") === d.token) ? { ...d, verifiedAt: new Date(now).toISOString() } : d;
		})
	);
}

/** Whether a password may not open this tenant for `email`. */
export function ssoRequired(connection: Pick<SsoConnectionDoc, "enabled" | "enforced" | "domains"> | null, email: string): boolean {
	return Boolean(connection?.enabled && connection.enforced && domainAllowed(connection, email));
}

export const callbackPath = (slug: string) => `/api/v1/auth/sso/${encodeURIComponent(slug)}/callback`;
export const startPath = (slug: string) => `/api/v1/auth/sso/${encodeURIComponent(slug)}`;

/**
 * What a verified ID token leads to, given the account it names and whether that account is a
 * member of this tenant now:
 * - the identity is linked to an account (whatever its email says now), or the email's account
 *   is a member: sign it in (its admins vouched for it by inviting it, or it joined through this
 *   IdP and is still there);
 * - that account is not a member (it never joined, left, or was removed): refused — an IdP a
 *   tenant configured must not attach, or re-attach, an account the tenant does not hold;
 * - no account: create one (verified: the IdP vouched for an address of a verified domain).
 */
export type IdentityDecision = { kind: "signIn"; userId: string } | { kind: "create" } | { kind: "refuse"; reason: string };

export function identityDecision(input: { accountUserId: string | null; isMember: boolean }): IdentityDecision {
	if (input.accountUserId && input.isMember) return { kind: "signIn", userId: input.accountUserId };
	if (input.accountUserId) return { kind: "refuse", reason: "This account is not a member of this organisation: ask an admin to invite it, then sign in with SSO" };
	return { kind: "create" };
}

/** The claims sign-in needs from a verified ID token, or why it cannot sign in with them. */
export function identityFromClaims(claims: IdTokenClaims, connection: Pick<SsoConnectionDoc, "domains">): { ok: true; subject: string; email: string; name: string } | { ok: false; reason: string } {
	const email = typeof claims.email === "string" ? claims.email.trim().toLowerCase() : "";
	if (!email || !/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 254) return { ok: false, reason: "The identity provider sent no email address" };
	// An IdP that says the address is not verified has not vouched for it. One that does not say
	// (Microsoft Entra sends no email_verified) is trusted for its tenant's own verified domains.
	if (claims.email_verified === false) return { ok: false, reason: "The identity provider has not verified this email address" };
	if (!domainAllowed(connection, email)) return { ok: false, reason: "This email's domain may not sign in to this organisation with SSO (not configured, or not verified yet)" };
	const rawName = typeof claims.name === "string" && claims.name.trim() ? claims.name.trim() : email.slice(0, email.indexOf("@"));
	return { ok: true, subject: claims.sub, email, name: rawName.slice(0, 100) };
}

// ---- the identity provider ---------------------------------------------------------------

export interface IdpOptions {
	allowPrivate: boolean;
	resolve?: Resolve;
}

/** An openid-client hook: every request to the IdP through the SSRF guard, with a timeout. */
function guardedHttp(options: IdpOptions) {
	const lookup = guardedLookup({ allowPrivate: options.allowPrivate, resolve: options.resolve ?? systemResolve, timeoutMs: IDP_TIMEOUT_MS });
	return (url: URL) => {
		assertPublicLiteral(url, options.allowPrivate);
		return { lookup, timeout: IDP_TIMEOUT_MS };
	};
}

/** Discovery and clients for tenants' identity providers; discovery documents cached briefly. */
export class IdentityProviders {
	private readonly discovered = new Map<string, { issuer: Issuer<BaseClient>; at: number }>();
	private readonly http: ReturnType<typeof guardedHttp>;

	constructor(private readonly options: IdpOptions) {
		this.http = guardedHttp(options);
	}

	/** The issuer's metadata (its discovery document's `issuer` must equal `issuerUrl`, openid-client checks). */
	async issuer(issuerUrl: string, now = Date.now()): Promise<Issuer<BaseClient>> {
		const cached = this.discovered.get(issuerUrl);
		if (cached && now - cached.at < DISCOVERY_TTL_MS) return cached.issuer;
		// Discovery is a static call: the hook goes on the class for the call's duration.
		const GuardedIssuer = class extends Issuer<BaseClient> {};
		GuardedIssuer[custom.http_options] = this.http;
		const issuer = await GuardedIssuer.discover(issuerUrl);
		if (issuer.metadata.issuer !== issuerUrl) throw new Error(`the discovery document names issuer ${issuer.metadata.issuer}`);
		issuer[custom.http_options] = this.http;
		this.discovered.set(issuerUrl, { issuer, at: now });
		return issuer;
	}

	forget(issuerUrl: string): void {
		this.discovered.delete(issuerUrl);
	}

	async client(connection: Pick<SsoConnectionDoc, "issuer" | "clientId">, clientSecret: string, redirectUri: string): Promise<BaseClient> {
		const issuer = await this.issuer(connection.issuer);
		const client = new issuer.Client({ client_id: connection.clientId, client_secret: clientSecret, redirect_uris: [redirectUri], response_types: ["code"] });
		client[custom.http_options] = this.http;
		client[custom.clock_tolerance] = 30;
		return client;
	}
}

// ---- the flow ------------------------------------------------------------------------------

export interface StartedFlow {
	authorizationUrl: string;
	/** The cookie value for this browser. */
	browserSecret: string;
	doc: NewDoc<SsoStateDoc>;
}

/** Whether `verifier` is the one whose S256 challenge (RFC 7636) is `challenge`. */
export function verifierMatches(verifier: string, challenge: string): boolean {
	return safeEqual(generators.codeChallenge(verifier), challenge);
}

export function startFlow(client: BaseClient, sealing: Sealer, tenantId: string, redirectUri: string, exchangeChallenge: string, now = Date.now()): StartedFlow {
	const state = generators.state();
	const nonce = generators.nonce();
	const codeVerifier = generators.codeVerifier();
	const browserSecret = randomToken("", 24);
	const stateHash = hashToken(state);
	const authorizationUrl = client.authorizationUrl({
		scope: "openid email profile",
		redirect_uri: redirectUri,
		state,
		nonce,
		code_challenge: generators.codeChallenge(codeVerifier),
		code_challenge_method: "S256"
	});
	return {
		authorizationUrl,
		browserSecret,
		doc: {
			stateHash,
			browserHash: hashToken(browserSecret),
			connectionTenantId: tenantId,
			secrets: sealing.seal(JSON.stringify({ codeVerifier, nonce }), `sso-state:${stateHash}`),
			redirectUri,
			exchangeChallenge,
			expiresAt: new Date(now + SSO_STATE_TTL_MS).toISOString()
		}
	};
}

export function flowSecrets(sealing: Sealer, state: SsoStateDoc): { codeVerifier: string; nonce: string } {
	return JSON.parse(sealing.open(state.secrets, `sso-state:${state.stateHash}`)) as { codeVerifier: string; nonce: string };
}

export const stateUsable = (state: Pick<SsoStateDoc, "usedAt" | "expiresAt">, now: number) => !state.usedAt && state.expiresAt > new Date(now).toISOString();
