/**
 * Signed tokens: user access tokens and device tokens, both JWS compact (JWT) with HMAC-SHA256,
 * built on node:crypto alone so that every check is written out here:
 *
 *   - at most MAX_TOKEN_LENGTH characters, exactly three non-empty base64url parts in canonical
 *     form, the signature exactly 32 bytes;
 *   - header = exactly `{alg, typ, kid}`: `alg` must be "HS256" (never "none", "HS512", "RS256" —
 *     the algorithm is fixed by us, not chosen by the token), `typ` must be the expected kind, and
 *     `kid` must name the current or one of the previous keys. An unknown kid fails: we never try
 *     every key;
 *   - the HMAC is compared with crypto.timingSafeEqual over the raw bytes;
 *   - payload: `iss` exact, `aud` the expected audience (a string, or an array containing it),
 *     `iat` not in the future, `nbf` (when present) reached, `exp` not passed — each with at most
 *     CLOCK_SKEW_SEC of leeway — and every claim of the right type.
 *
 * Access tokens (`typ` "at+jwt", `aud` "marquee-api") and device tokens (`typ` "device+jwt", `aud`
 * "marquee-device") differ in both typ and aud, so neither passes for the other.
 *
 * Failures return a short internal reason ("bad alg", "expired", …) for logs and metrics; callers
 * answer every failure with the same generic 401.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { ROLES, type Role } from "../../shared/rbac";

// ---- keys ----

export interface SigningKey {
	kid: string;
	secret: string;
}

/** `current` signs; `current` and `previous` verify (key rotation). */
export interface SigningKeys {
	current: SigningKey;
	previous: SigningKey[];
}

/** Shortest secret accepted (the config refuses shorter JWT_SECRET values too). */
export const MIN_SECRET_LENGTH = 32;

/** The public key id of a secret: the first 16 hex characters of sha256("marquee-kid:" + secret). */
export function keyId(secret: string): string {
	return createHash("sha256").update("marquee-kid:" + secret, "utf8").digest("hex").slice(0, 16);
}

/**
 * Builds the key set from JWT_SECRET and JWT_PREVIOUS_SECRETS. Previous secrets equal to the
 * current one or to each other are dropped. Throws when a secret is shorter than 32 characters
 * or two different secrets share a kid.
 */
export function signingKeys(currentSecret: string, previousSecrets: string[]): SigningKeys {
	const check = (secret: unknown, what: string): string => {
		if (typeof secret !== "string" || secret.length < MIN_SECRET_LENGTH) {
			throw new RangeError(`signingKeys: ${what} must be a string of at least ${MIN_SECRET_LENGTH} characters`);
		}
		return secret;
	};
	const current = { kid: keyId(check(currentSecret, "the current secret")), secret: currentSecret };
	const seen = new Map<string, string>([[current.kid, current.secret]]);
	const previous: SigningKey[] = [];
	for (const secret of previousSecrets) {
		const kid = keyId(check(secret, "every previous secret"));
		const known = seen.get(kid);
		if (known === secret) continue;
		if (known !== undefined) throw new Error("signingKeys: two different secrets share a key id");
		seen.set(kid, secret);
		previous.push({ kid, secret });
	}
	return { current, previous };
}

function secretFor(keys: SigningKeys, kid: string): string | null {
	if (keys.current.kid === kid) return keys.current.secret;
	for (const key of keys.previous) if (key.kid === kid) return key.secret;
	return null;
}

// ---- constants ----

export const ACCESS_TOKEN_TTL_SEC = 900;
export const ISSUER = "marquee";
export const AUDIENCE = "marquee-api";
export const DEVICE_AUDIENCE = "marquee-device";
export const ACCESS_TOKEN_TYPE = "at+jwt";
export const DEVICE_TOKEN_TYPE = "device+jwt";
export const ALGORITHM = "HS256";
/** Leeway for clocks of different nodes on exp, nbf and iat. */
export const CLOCK_SKEW_SEC = 30;
/** Longer tokens are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 4096;
/** Longest sub/tid/sid/did/jti accepted. */
const MAX_CLAIM_LENGTH = 256;
/** HMAC-SHA256 is 32 bytes = 43 base64url characters. */
const SIGNATURE_BYTES = 32;
const SIGNATURE_CHARS = 43;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const HEADER_FIELDS = ["alg", "typ", "kid"];

// ---- claims ----

export interface AccessClaims {
	/** userId */
	sub: string;
	/** tenantId */
	tid: string;
	role: Role;
	/** sessionId (the refresh-token family) */
	sid: string;
}

export interface DeviceClaims {
	/** displayId */
	did: string;
	tid: string;
	/** token version of the display, bumped on revoke: the caller compares it with the stored one */
	ver: number;
}

export type VerifyResult = { ok: true; claims: AccessClaims & { iat: number; exp: number; jti: string } } | { ok: false; reason: string };

export type DeviceVerifyResult = { ok: true; claims: DeviceClaims & { iat: number; jti: string } } | { ok: false; reason: string };

// ---- helpers ----

type Json = Record<string, unknown>;
type Failure = { ok: false; reason: string };

const fail = (reason: string): Failure => ({ ok: false, reason });

function isObject(value: unknown): value is Json {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isClaimString(value: unknown): value is string {
	return typeof value === "string" && value.length > 0 && value.length <= MAX_CLAIM_LENGTH;
}

function isRole(value: unknown): value is Role {
	return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

function isTime(value: unknown): value is number {
	return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function nowOr(nowSec: number | undefined): number {
	const now = nowSec ?? Date.now() / 1000;
	if (!Number.isFinite(now) || now < 0) throw new RangeError("nowSec must be a non-negative number of seconds");
	return Math.floor(now);
}

function encodeJson(value: Json): string {
	return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

/** Decodes canonical base64url only: Node's decoder silently skips junk, so re-encode and compare. */
function decodePart(part: string): Buffer | null {
	if (!BASE64URL.test(part)) return null;
	const bytes = Buffer.from(part, "base64url");
	return bytes.toString("base64url") === part ? bytes : null;
}

function parseJsonPart(part: string): Json | null {
	const bytes = decodePart(part);
	if (bytes === null) return null;
	try {
		const value: unknown = JSON.parse(bytes.toString("utf8"));
		return isObject(value) ? value : null;
	} catch {
		return null;
	}
}

function hmac(secret: string, signingInput: string): Buffer {
	return createHmac("sha256", secret).update(signingInput, "utf8").digest();
}

function newJti(): string {
	return randomBytes(16).toString("base64url");
}

function sign(keys: SigningKeys, typ: string, payload: Json): string {
	const header = encodeJson({ alg: ALGORITHM, typ, kid: keys.current.kid });
	const body = encodeJson(payload);
	const signingInput = `${header}.${body}`;
	return `${signingInput}.${hmac(keys.current.secret, signingInput).toString("base64url")}`;
}

/**
 * Everything but the kind-specific claims: shape, header, signature, iss, aud, iat, nbf, exp.
 * `exp` is required when `requireExp`; otherwise it is checked only when present.
 */
function verifyJws(
	keys: SigningKeys,
	token: unknown,
	typ: string,
	audience: string,
	requireExp: boolean,
	nowSec: number | undefined
): { ok: true; payload: Json } | Failure {
	const now = nowOr(nowSec);
	if (typeof token !== "string" || token.length === 0) return fail("malformed");
	if (token.length > MAX_TOKEN_LENGTH) return fail("too long");
	const parts = token.split(".");
	if (parts.length !== 3 || !parts.every(part => BASE64URL.test(part))) return fail("malformed");
	const [headerPart, payloadPart, signaturePart] = parts;

	const header = parseJsonPart(headerPart);
	if (header === null) return fail("bad header");
	if (header.alg !== ALGORITHM) return fail("bad alg");
	if (header.typ !== typ) return fail("bad typ");
	if (typeof header.kid !== "string") return fail("bad kid");
	if (Object.keys(header).some(field => !HEADER_FIELDS.includes(field))) return fail("bad header");
	const secret = secretFor(keys, header.kid);
	if (secret === null) return fail("unknown kid");

	if (signaturePart.length !== SIGNATURE_CHARS) return fail("bad signature");
	const signature = decodePart(signaturePart);
	if (signature === null || signature.length !== SIGNATURE_BYTES) return fail("bad signature");
	const expected = hmac(secret, `${headerPart}.${payloadPart}`);
	if (!timingSafeEqual(signature, expected)) return fail("bad signature");

	const payload = parseJsonPart(payloadPart);
	if (payload === null) return fail("bad payload");
	if (payload.iss !== ISSUER) return fail("bad issuer");
	const aud = payload.aud;
	const audienceOk = aud === audience || (Array.isArray(aud) && aud.length > 0 && aud.every(a => typeof a === "string") && aud.includes(audience));
	if (!audienceOk) return fail("bad audience");
	if (!isTime(payload.iat)) return fail("bad iat");
	if (payload.iat > now + CLOCK_SKEW_SEC) return fail("issued in the future");
	if (payload.nbf !== undefined) {
		if (!isTime(payload.nbf)) return fail("bad nbf");
		if (payload.nbf > now + CLOCK_SKEW_SEC) return fail("not yet valid");
	}
	if (payload.exp !== undefined || requireExp) {
		if (!isTime(payload.exp)) return fail("bad exp");
		if (payload.exp <= payload.iat) return fail("bad exp");
		if (now >= payload.exp + CLOCK_SKEW_SEC) return fail("expired");
	}
	if (!isClaimString(payload.jti)) return fail("bad jti");
	return { ok: true, payload };
}

// ---- access tokens ----

function checkAccessClaims(claims: AccessClaims): void {
	if (!isObject(claims)) throw new TypeError("signAccessToken: claims must be an object");
	for (const field of ["sub", "tid", "sid"] as const) {
		if (!isClaimString(claims[field])) throw new TypeError(`signAccessToken: ${field} must be a non-empty string`);
	}
	if (!isRole(claims.role)) throw new TypeError("signAccessToken: role must be one of " + ROLES.join(", "));
}

/** A 15-minute access token for a user in one tenant. Throws on invalid claims. */
export function signAccessToken(keys: SigningKeys, claims: AccessClaims, nowSec?: number): string {
	checkAccessClaims(claims);
	const iat = nowOr(nowSec);
	return sign(keys, ACCESS_TOKEN_TYPE, {
		iss: ISSUER,
		aud: AUDIENCE,
		sub: claims.sub,
		tid: claims.tid,
		role: claims.role,
		sid: claims.sid,
		iat,
		exp: iat + ACCESS_TOKEN_TTL_SEC,
		jti: newJti()
	});
}

/**
 * Checks an access token completely (see the top of this file). It does NOT know about revoked
 * sessions: the caller still checks that session `sid` is live when it needs to.
 */
export function verifyAccessToken(keys: SigningKeys, token: string, nowSec?: number): VerifyResult {
	const result = verifyJws(keys, token, ACCESS_TOKEN_TYPE, AUDIENCE, true, nowSec);
	if (!result.ok) return result;
	const p = result.payload;
	// A longer lifetime than we ever issue means the token was not minted by signAccessToken.
	if ((p.exp as number) - (p.iat as number) > ACCESS_TOKEN_TTL_SEC) return fail("bad exp");
	if (!isClaimString(p.sub)) return fail("bad sub");
	if (!isClaimString(p.tid)) return fail("bad tid");
	if (!isClaimString(p.sid)) return fail("bad sid");
	if (!isRole(p.role)) return fail("bad role");
	return {
		ok: true,
		claims: { sub: p.sub, tid: p.tid, role: p.role, sid: p.sid, iat: p.iat as number, exp: p.exp as number, jti: p.jti as string }
	};
}

// ---- device tokens ----

function checkDeviceClaims(claims: DeviceClaims): void {
	if (!isObject(claims)) throw new TypeError("signDeviceToken: claims must be an object");
	if (!isClaimString(claims.did)) throw new TypeError("signDeviceToken: did must be a non-empty string");
	if (!isClaimString(claims.tid)) throw new TypeError("signDeviceToken: tid must be a non-empty string");
	if (!isTime(claims.ver)) throw new TypeError("signDeviceToken: ver must be a non-negative integer");
}

/**
 * A long-lived device token (no exp): it stays valid until the display's token version moves past
 * `ver` (revoke) or its signing key leaves the key set. Throws on invalid claims.
 */
export function signDeviceToken(keys: SigningKeys, claims: DeviceClaims, nowSec?: number): string {
	checkDeviceClaims(claims);
	return sign(keys, DEVICE_TOKEN_TYPE, {
		iss: ISSUER,
		aud: DEVICE_AUDIENCE,
		did: claims.did,
		tid: claims.tid,
		ver: claims.ver,
		iat: nowOr(nowSec),
		jti: newJti()
	});
}

/**
 * Checks a device token's signature and claims. The caller MUST still compare `ver` with the
 * display's current token version (and that the display exists in tenant `tid`).
 */
export function verifyDeviceToken(keys: SigningKeys, token: string, nowSec?: number): DeviceVerifyResult {
	const result = verifyJws(keys, token, DEVICE_TOKEN_TYPE, DEVICE_AUDIENCE, false, nowSec);
	if (!result.ok) return result;
	const p = result.payload;
	if (!isClaimString(p.did)) return fail("bad did");
	if (!isClaimString(p.tid)) return fail("bad tid");
	if (!isTime(p.ver)) return fail("bad ver");
	return { ok: true, claims: { did: p.did, tid: p.tid, ver: p.ver, iat: p.iat as number, jti: p.jti as string } };
}

// ---- routing ----

/** Which verifier a bearer token goes to: "mk_…" → API key; three dot-separated parts → JWT. */
export function tokenKind(token: string): "apiKey" | "jwt" | "unknown" {
	if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return "unknown";
	if (token.startsWith("mk_")) return token.length > 3 ? "apiKey" : "unknown";
	const parts = token.split(".");
	return parts.length === 3 && parts.every(part => part.length > 0) ? "jwt" : "unknown";
}
