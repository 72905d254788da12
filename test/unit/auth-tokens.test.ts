/**
 * services/auth/tokens.ts: key ids, access and device JWTs (HS256 on node:crypto), tokenKind;
 * and services/auth/secrets.ts: opaque random tokens, their hashes, constant-time comparison.
 */
import { createHash, createHmac } from "node:crypto";
import { ROLES } from "../../shared/rbac";
import {
	ACCESS_TOKEN_TTL_SEC,
	AUDIENCE,
	CLOCK_SKEW_SEC,
	DEVICE_AUDIENCE,
	ISSUER,
	MAX_TOKEN_LENGTH,
	keyId,
	signAccessToken,
	signDeviceToken,
	signingKeys,
	tokenKind,
	verifyAccessToken,
	verifyDeviceToken,
	type AccessClaims,
	type DeviceClaims,
	type SigningKeys
} from "../../services/auth/tokens";
import { MIN_TOKEN_BYTES, hashToken, randomToken, safeEqual } from "../../shared/secrets";

const SECRET = "current-secret-0123456789abcdefghijklmnop";
const OLD_SECRET = "previous-secret-0123456789abcdefghijklmno";
const OTHER_SECRET = "unrelated-secret-0123456789abcdefghijklmn";
const NOW = 1_800_000_000;

const keys = signingKeys(SECRET, []);
const claims: AccessClaims = { sub: "user-1", tid: "tenant-1", role: "editor", sid: "session-1" };
const device: DeviceClaims = { did: "display-1", tid: "tenant-1", ver: 3 };

type Json = Record<string, unknown>;

const b64 = (value: unknown): string => Buffer.from(typeof value === "string" ? value : JSON.stringify(value), "utf8").toString("base64url");
const unb64 = (part: string): Json => JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Json;
const sigOf = (secret: string, input: string, algorithm = "sha256"): string => createHmac(algorithm, secret).update(input).digest("base64url");

/** Builds a token by hand: any header, any payload (object or raw string), signed with `secret`. */
function forge(header: unknown, payload: unknown, secret = SECRET, algorithm = "sha256"): string {
	const input = `${b64(header)}.${b64(payload)}`;
	return `${input}.${sigOf(secret, input, algorithm)}`;
}

const accessHeader = (over: Json = {}): Json => ({ alg: "HS256", typ: "at+jwt", kid: keyId(SECRET), ...over });
const deviceHeader = (over: Json = {}): Json => ({ alg: "HS256", typ: "device+jwt", kid: keyId(SECRET), ...over });
const accessPayload = (over: Json = {}): Json => ({
	iss: ISSUER,
	aud: AUDIENCE,
	sub: "user-1",
	tid: "tenant-1",
	role: "editor",
	sid: "session-1",
	iat: NOW,
	exp: NOW + ACCESS_TOKEN_TTL_SEC,
	jti: "jti-1",
	...over
});
const devicePayload = (over: Json = {}): Json => ({ iss: ISSUER, aud: DEVICE_AUDIENCE, did: "display-1", tid: "tenant-1", ver: 3, iat: NOW, jti: "jti-1", ...over });

/** Drops keys whose value is undefined, so `{exp: undefined}` removes a claim. */
const clean = (value: Json): Json => Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));

const reasonOf = (result: { ok: boolean; reason?: string }): string | undefined => (result.ok ? undefined : result.reason);
const access = (token: string, now = NOW): string | undefined => reasonOf(verifyAccessToken(keys, token, now));
const deviceReason = (token: string, now = NOW): string | undefined => reasonOf(verifyDeviceToken(keys, token, now));

describe("signingKeys", () => {
	it("derives kid as the first 16 hex characters of sha256('marquee-kid:' + secret)", () => {
		const expected = createHash("sha256").update("marquee-kid:" + SECRET).digest("hex").slice(0, 16);
		expect(keyId(SECRET)).toBe(expected);
		expect(keys.current).toEqual({ kid: expected, secret: SECRET });
		expect(keys.current.kid).toMatch(/^[0-9a-f]{16}$/);
		expect(keys.previous).toEqual([]);
	});

	it("keeps previous secrets in order with their own kids", () => {
		const rotated = signingKeys(SECRET, [OLD_SECRET, OTHER_SECRET]);
		expect(rotated.previous).toEqual([
			{ kid: keyId(OLD_SECRET), secret: OLD_SECRET },
			{ kid: keyId(OTHER_SECRET), secret: OTHER_SECRET }
		]);
		expect(new Set([rotated.current.kid, ...rotated.previous.map(k => k.kid)]).size).toBe(3);
	});

	it("drops previous secrets equal to the current one or repeated", () => {
		const rotated = signingKeys(SECRET, [SECRET, OLD_SECRET, OLD_SECRET]);
		expect(rotated.previous).toEqual([{ kid: keyId(OLD_SECRET), secret: OLD_SECRET }]);
	});

	it("refuses secrets shorter than 32 characters or not strings", () => {
		expect(() => signingKeys("short", [])).toThrow(/at least 32/);
		expect(() => signingKeys("", [])).toThrow(/at least 32/);
		expect(() => signingKeys(SECRET, ["x".repeat(31)])).toThrow(/at least 32/);
		expect(() => signingKeys(null as unknown as string, [])).toThrow(/at least 32/);
		expect(() => signingKeys("x".repeat(32), [])).not.toThrow();
	});

	it("gives different secrets different kids and the same secret the same kid", () => {
		const kids = new Set(Array.from({ length: 200 }, (_, i) => keyId(`secret-number-${i}-padding-padding-padding`)));
		expect(kids.size).toBe(200);
		expect(keyId(SECRET)).toBe(keyId(SECRET));
	});

	it("is a plain value: a key set built by hand works the same", () => {
		const byHand: SigningKeys = { current: { kid: keyId(SECRET), secret: SECRET }, previous: [] };
		expect(verifyAccessToken(byHand, signAccessToken(keys, claims, NOW), NOW).ok).toBe(true);
	});

	it("never puts the secret into the kid", () => {
		const token = signAccessToken(keys, claims, NOW);
		expect(token).not.toContain(SECRET);
		expect(Buffer.from(token.split(".")[0], "base64url").toString()).not.toContain(SECRET.slice(0, 8));
	});
});

describe("signAccessToken", () => {
	const token = signAccessToken(keys, claims, NOW);
	const [h, p, s] = token.split(".");

	it("produces a three-part base64url token with the exact header", () => {
		expect(token.split(".")).toHaveLength(3);
		for (const part of [h, p, s]) expect(part).toMatch(/^[A-Za-z0-9_-]+$/);
		expect(unb64(h)).toEqual({ alg: "HS256", typ: "at+jwt", kid: keyId(SECRET) });
	});

	it("carries exactly iss, aud, sub, tid, role, sid, iat, exp and a jti", () => {
		const payload = unb64(p);
		expect(Object.keys(payload).sort()).toEqual(["aud", "exp", "iat", "iss", "jti", "role", "sid", "sub", "tid"]);
		expect(payload).toMatchObject({ iss: "marquee", aud: "marquee-api", ...claims, iat: NOW, exp: NOW + 900 });
		expect(payload.jti).toEqual(expect.stringMatching(/^[A-Za-z0-9_-]{22}$/));
	});

	it("signs header.payload with HMAC-SHA256 of the current secret", () => {
		expect(s).toBe(sigOf(SECRET, `${h}.${p}`));
		expect(Buffer.from(s, "base64url")).toHaveLength(32);
	});

	it("lives 15 minutes", () => {
		expect(ACCESS_TOKEN_TTL_SEC).toBe(900);
		expect(ISSUER).toBe("marquee");
		expect(AUDIENCE).toBe("marquee-api");
	});

	it("gives every token a fresh random jti", () => {
		const jtis = new Set(Array.from({ length: 500 }, () => unb64(signAccessToken(keys, claims, NOW).split(".")[1]).jti));
		expect(jtis.size).toBe(500);
	});

	it("defaults the time to now, in whole seconds", () => {
		const before = Math.floor(Date.now() / 1000);
		const payload = unb64(signAccessToken(keys, claims).split(".")[1]);
		const after = Math.floor(Date.now() / 1000);
		expect(Number.isInteger(payload.iat)).toBe(true);
		expect(payload.iat).toBeGreaterThanOrEqual(before);
		expect(payload.iat).toBeLessThanOrEqual(after);
		expect(verifyAccessToken(keys, signAccessToken(keys, claims)).ok).toBe(true);
	});

	it("floors a fractional nowSec", () => {
		expect(unb64(signAccessToken(keys, claims, NOW + 0.9).split(".")[1]).iat).toBe(NOW);
	});

	it("signs with the current key only, even when previous keys exist", () => {
		const rotated = signingKeys(SECRET, [OLD_SECRET]);
		expect(unb64(signAccessToken(rotated, claims, NOW).split(".")[0]).kid).toBe(keyId(SECRET));
	});

	it("copies only the four claims, never extra fields of the input", () => {
		const extra = { ...claims, tenantId: "other", exp: 9_999_999_999, iss: "evil" } as unknown as AccessClaims;
		const payload = unb64(signAccessToken(keys, extra, NOW).split(".")[1]);
		expect(payload.tenantId).toBeUndefined();
		expect(payload.exp).toBe(NOW + 900);
		expect(payload.iss).toBe("marquee");
	});

	it.each([
		["empty sub", { ...claims, sub: "" }],
		["empty tid", { ...claims, tid: "" }],
		["empty sid", { ...claims, sid: "" }],
		["numeric sub", { ...claims, sub: 42 }],
		["unknown role", { ...claims, role: "superadmin" }],
		["capitalised role", { ...claims, role: "Owner" }],
		["missing role", { sub: "u", tid: "t", sid: "s" }],
		["oversized sub", { ...claims, sub: "x".repeat(257) }],
		["null claims", null]
	])("refuses to sign %s", (_name, bad) => {
		expect(() => signAccessToken(keys, bad as unknown as AccessClaims, NOW)).toThrow(TypeError);
	});

	it("refuses a negative or non-finite nowSec", () => {
		expect(() => signAccessToken(keys, claims, -1)).toThrow(RangeError);
		expect(() => signAccessToken(keys, claims, Number.NaN)).toThrow(RangeError);
		expect(() => signAccessToken(keys, claims, Number.POSITIVE_INFINITY)).toThrow(RangeError);
	});
});

describe("verifyAccessToken", () => {
	const token = signAccessToken(keys, claims, NOW);
	const [h, p, s] = token.split(".");

	it("accepts its own token and returns exactly the verified claims", () => {
		const result = verifyAccessToken(keys, token, NOW);
		expect(result.ok).toBe(true);
		if (!result.ok) return;
		expect(result.claims).toEqual({ ...claims, iat: NOW, exp: NOW + 900, jti: unb64(p).jti });
	});

	it.each(ROLES)("accepts role %s", role => {
		const result = verifyAccessToken(keys, signAccessToken(keys, { ...claims, role }, NOW), NOW);
		expect(result.ok && result.claims.role).toBe(role);
	});

	it("accepts a hand-built token with the same content (interoperable format)", () => {
		expect(access(forge(accessHeader(), accessPayload()))).toBeUndefined();
	});

	it("returns only known claims, never extra payload fields", () => {
		const result = verifyAccessToken(keys, forge(accessHeader(), accessPayload({ tenantId: "x", admin: true })), NOW);
		expect(result.ok).toBe(true);
		if (result.ok) expect(Object.keys(result.claims).sort()).toEqual(["exp", "iat", "jti", "role", "sid", "sub", "tid"]);
	});

	describe("time", () => {
		it("is valid until exp, and up to 30 s of clock skew after it", () => {
			expect(CLOCK_SKEW_SEC).toBe(30);
			expect(access(token, NOW + 899)).toBeUndefined();
			expect(access(token, NOW + 900)).toBeUndefined();
			expect(access(token, NOW + 929)).toBeUndefined();
			expect(access(token, NOW + 930)).toBe("expired");
			expect(access(token, NOW + 86_400)).toBe("expired");
		});

		it("refuses a token issued more than 30 s in the future", () => {
			expect(access(token, NOW - 30)).toBeUndefined();
			expect(access(token, NOW - 31)).toBe("issued in the future");
		});

		it("honours nbf with the same skew", () => {
			const t = forge(accessHeader(), accessPayload({ nbf: NOW + 60 }));
			expect(access(t, NOW + 29)).toBe("not yet valid");
			expect(access(t, NOW + 30)).toBeUndefined();
			expect(access(t, NOW + 60)).toBeUndefined();
			expect(access(forge(accessHeader(), accessPayload({ nbf: "soon" })))).toBe("bad nbf");
			expect(access(forge(accessHeader(), accessPayload({ nbf: NOW - 5 })))).toBeUndefined();
		});

		it.each([
			["missing exp", { exp: undefined }, "bad exp"],
			["string exp", { exp: String(NOW + 900) }, "bad exp"],
			["fractional exp", { exp: NOW + 900.5 }, "bad exp"],
			["exp before iat", { exp: NOW - 1 }, "bad exp"],
			["exp equal to iat", { exp: NOW }, "bad exp"],
			["lifetime above 15 minutes", { exp: NOW + 901 }, "bad exp"],
			["a year-long lifetime", { exp: NOW + 31_536_000 }, "bad exp"],
			["huge exp", { exp: 1e300 }, "bad exp"],
			["missing iat", { iat: undefined }, "bad iat"],
			["string iat", { iat: "now" }, "bad iat"],
			["negative iat", { iat: -1 }, "bad iat"]
		])("refuses %s", (_name, over, reason) => {
			expect(access(forge(accessHeader(), clean(accessPayload(over))))).toBe(reason);
		});
	});

	describe("shape", () => {
		it.each([
			["an empty string", ""],
			["one part", "abc"],
			["two parts", `${h}.${p}`],
			["four parts", `${token}.${s}`],
			["an empty signature (alg none style)", `${h}.${p}.`],
			["an empty header", `.${p}.${s}`],
			["an empty payload", `${h}..${s}`],
			["padding", `${h}.${p}=.${s}`],
			["standard base64 characters", `${h}.${p}.${s.slice(0, -1)}+`],
			["a slash", `${h}.${p}/.${s}`],
			["surrounding spaces", ` ${token} `],
			["a Bearer prefix", `Bearer ${token}`],
			["a newline", `${token}\n`],
			["non-ASCII characters", `${h}.${p}é.${s}`]
		])("refuses %s as malformed", (_name, bad) => {
			expect(access(bad)).toBe("malformed");
		});

		it("refuses tokens over 4 KB before parsing them", () => {
			expect(MAX_TOKEN_LENGTH).toBe(4096);
			const big = forge(accessHeader(), accessPayload({ pad: "x".repeat(4000) }));
			expect(big.length).toBeGreaterThan(4096);
			expect(access(big)).toBe("too long");
			expect(access("a".repeat(1_000_000))).toBe("too long");
		});

		it("refuses non-strings without throwing", () => {
			for (const bad of [undefined, null, 42, {}, [], ["a", "b", "c"], Buffer.from(token)]) {
				expect(access(bad as unknown as string)).toBe("malformed");
			}
		});

		it.each([
			["not JSON", "not json"],
			["a JSON array", [1, 2, 3]],
			["JSON null", "null"],
			["a JSON string", '"HS256"']
		])("refuses a header that is %s", (_name, header) => {
			const t = `${b64(header)}.${p}.${s}`;
			expect(access(t)).toBe("bad header");
		});

		it("refuses non-canonical base64url in the header", () => {
			// A trailing character whose unused low bits are set decodes to the same bytes.
			const header = b64(accessHeader());
			const lastBits = header.length % 4;
			expect(lastBits).not.toBe(0);
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
			const tweakedLast = alphabet[alphabet.indexOf(header.slice(-1)) + 1];
			const tweaked = header.slice(0, -1) + tweakedLast;
			expect(Buffer.from(tweaked, "base64url").equals(Buffer.from(header, "base64url"))).toBe(true);
			const input = `${tweaked}.${p}`;
			expect(access(`${input}.${sigOf(SECRET, input)}`)).toBe("bad header");
		});
	});

	describe("header", () => {
		it.each([
			["none", { alg: "none" }],
			["None", { alg: "None" }],
			["HS512", { alg: "HS512" }],
			["HS384", { alg: "HS384" }],
			["RS256", { alg: "RS256" }],
			["ES256", { alg: "ES256" }],
			["lower-case hs256", { alg: "hs256" }],
			["HS256 with a space", { alg: "HS256 " }],
			["an array", { alg: ["HS256"] }],
			["missing", { alg: undefined }]
		])("refuses alg %s", (_name, over) => {
			expect(access(forge(clean(accessHeader(over)), accessPayload()))).toBe("bad alg");
		});

		it("refuses alg none even with no signature at all", () => {
			const t = `${b64(accessHeader({ alg: "none" }))}.${b64(accessPayload())}.`;
			expect(verifyAccessToken(keys, t, NOW).ok).toBe(false);
			expect(access(`${b64(accessHeader({ alg: "none" }))}.${b64(accessPayload())}.AAAA`)).toBe("bad alg");
		});

		it("refuses an HS512 token really signed with HMAC-SHA512 by the right secret", () => {
			expect(access(forge(accessHeader({ alg: "HS512" }), accessPayload(), SECRET, "sha512"))).toBe("bad alg");
		});

		it.each([
			["missing", { typ: undefined }],
			["JWT", { typ: "JWT" }],
			["AT+JWT", { typ: "AT+JWT" }],
			["application/at+jwt", { typ: "application/at+jwt" }],
			["device+jwt", { typ: "device+jwt" }]
		])("refuses typ %s", (_name, over) => {
			expect(access(forge(clean(accessHeader(over)), accessPayload()))).toBe("bad typ");
		});

		it("refuses a missing or non-string kid", () => {
			expect(access(forge(clean(accessHeader({ kid: undefined })), accessPayload()))).toBe("bad kid");
			expect(access(forge(accessHeader({ kid: 1 }), accessPayload()))).toBe("bad kid");
			expect(access(forge(accessHeader({ kid: [keyId(SECRET)] }), accessPayload()))).toBe("bad kid");
		});

		it.each(["crit", "jku", "jwk", "x5u", "x5c", "cty", "b64"])("refuses an extra header field %s", field => {
			expect(access(forge(accessHeader({ [field]: field === "b64" ? false : "x" }), accessPayload()))).toBe("bad header");
		});
	});

	describe("keys", () => {
		it("refuses a token whose kid is unknown, without trying other keys", () => {
			const foreign = signAccessToken(signingKeys(OTHER_SECRET, []), claims, NOW);
			expect(access(foreign)).toBe("unknown kid");
			expect(access(forge(accessHeader({ kid: "0000000000000000" }), accessPayload()))).toBe("unknown kid");
			expect(access(forge(accessHeader({ kid: "" }), accessPayload()))).toBe("unknown kid");
		});

		it("checks the signature with the key the kid names, not any key that fits", () => {
			const rotated = signingKeys(SECRET, [OLD_SECRET]);
			// Signed by the previous secret but labelled with the current kid.
			const mislabelled = forge(accessHeader({ kid: keyId(SECRET) }), accessPayload(), OLD_SECRET);
			expect(reasonOf(verifyAccessToken(rotated, mislabelled, NOW))).toBe("bad signature");
			// Signed by a secret that is not configured at all, labelled with a known kid.
			expect(access(forge(accessHeader(), accessPayload(), OTHER_SECRET))).toBe("bad signature");
		});

		it("rotation: tokens of a previous secret verify until it is removed", () => {
			const before = signingKeys(OLD_SECRET, []);
			const oldToken = signAccessToken(before, claims, NOW);
			const after = signingKeys(SECRET, [OLD_SECRET]);
			expect(verifyAccessToken(after, oldToken, NOW).ok).toBe(true);
			expect(verifyAccessToken(after, signAccessToken(after, claims, NOW), NOW).ok).toBe(true);
			expect(reasonOf(verifyAccessToken(signingKeys(SECRET, []), oldToken, NOW))).toBe("unknown kid");
			// A new token is not accepted by the old key set.
			expect(reasonOf(verifyAccessToken(before, signAccessToken(after, claims, NOW), NOW))).toBe("unknown kid");
		});
	});

	describe("signature", () => {
		it("refuses a payload changed after signing", () => {
			for (const over of [{ role: "owner" }, { tid: "tenant-2" }, { sub: "user-2" }, { exp: NOW + 899 }]) {
				expect(access(`${h}.${b64(accessPayload({ ...unb64(p), ...over }))}.${s}`)).toBe("bad signature");
			}
		});

		it("refuses a header changed after signing", () => {
			const changed = b64({ ...unb64(h), alg: "HS256", typ: "at+jwt", kid: keyId(SECRET) });
			expect(changed).toBe(h);
			const reordered = b64({ kid: keyId(SECRET), alg: "HS256", typ: "at+jwt" });
			expect(access(`${reordered}.${p}.${s}`)).toBe("bad signature");
		});

		it("refuses every single flipped bit of the signature", () => {
			const raw = Buffer.from(s, "base64url");
			for (let bit = 0; bit < raw.length * 8; bit++) {
				const flipped = Buffer.from(raw);
				flipped[bit >> 3] ^= 1 << (bit & 7);
				expect(access(`${h}.${p}.${flipped.toString("base64url")}`)).toBe("bad signature");
			}
		});

		it("refuses truncated, extended and non-canonical signatures", () => {
			expect(access(`${h}.${p}.${s.slice(0, -1)}`)).toBe("bad signature");
			expect(access(`${h}.${p}.${s}A`)).toBe("bad signature");
			expect(access(`${h}.${p}.${s.slice(0, 22)}`)).toBe("bad signature");
			// HMAC-SHA512 length (64 bytes) under an HS256 header.
			expect(access(`${h}.${p}.${createHmac("sha512", SECRET).update(`${h}.${p}`).digest("base64url")}`)).toBe("bad signature");
			// 43 characters carry 258 bits: the last character's 2 spare bits must be zero.
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
			const last = alphabet.indexOf(s.slice(-1));
			expect(last % 4).toBe(0);
			const nonCanonical = s.slice(0, -1) + alphabet[last + 1];
			expect(Buffer.from(nonCanonical, "base64url").equals(Buffer.from(s, "base64url"))).toBe(true);
			expect(access(`${h}.${p}.${nonCanonical}`)).toBe("bad signature");
		});

		it("compares signatures with crypto.timingSafeEqual", () => {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const crypto = require("node:crypto") as typeof import("node:crypto");
			const spy = jest.spyOn(crypto, "timingSafeEqual");
			try {
				access(token);
				access(`${h}.${p}.${Buffer.alloc(32).toString("base64url")}`);
				expect(spy).toHaveBeenCalledTimes(2);
			} finally {
				spy.mockRestore();
			}
		});
	});

	describe("payload", () => {
		it.each([
			["not JSON", "{nope"],
			["a JSON array", [accessPayload()]],
			["JSON null", "null"],
			["a number", "42"]
		])("refuses a signed payload that is %s", (_name, payload) => {
			expect(access(forge(accessHeader(), payload))).toBe("bad payload");
		});

		it.each([
			["wrong iss", { iss: "evil" }, "bad issuer"],
			["missing iss", { iss: undefined }, "bad issuer"],
			["iss in an array", { iss: ["marquee"] }, "bad issuer"],
			["aud of devices", { aud: DEVICE_AUDIENCE }, "bad audience"],
			["missing aud", { aud: undefined }, "bad audience"],
			["aud with other case", { aud: "Marquee-API" }, "bad audience"],
			["aud array without ours", { aud: ["other", "marquee"] }, "bad audience"],
			["empty aud array", { aud: [] }, "bad audience"],
			["aud array with a non-string", { aud: ["marquee-api", 1] }, "bad audience"],
			["missing sub", { sub: undefined }, "bad sub"],
			["empty sub", { sub: "" }, "bad sub"],
			["numeric sub", { sub: 1 }, "bad sub"],
			["object sub", { sub: { $ne: null } }, "bad sub"],
			["oversized sub", { sub: "x".repeat(257) }, "bad sub"],
			["missing tid", { tid: undefined }, "bad tid"],
			["empty tid", { tid: "" }, "bad tid"],
			["array tid", { tid: ["tenant-1"] }, "bad tid"],
			["missing sid", { sid: undefined }, "bad sid"],
			["empty sid", { sid: "" }, "bad sid"],
			["unknown role", { role: "superadmin" }, "bad role"],
			["capitalised role", { role: "Admin" }, "bad role"],
			["missing role", { role: undefined }, "bad role"],
			["role array", { role: ["owner"] }, "bad role"],
			["missing jti", { jti: undefined }, "bad jti"],
			["empty jti", { jti: "" }, "bad jti"]
		])("refuses %s", (_name, over, reason) => {
			expect(access(forge(accessHeader(), clean(accessPayload(over))))).toBe(reason);
		});

		it("accepts aud as an array containing marquee-api", () => {
			expect(access(forge(accessHeader(), accessPayload({ aud: ["other", AUDIENCE] })))).toBeUndefined();
			expect(access(forge(accessHeader(), accessPayload({ aud: [AUDIENCE] })))).toBeUndefined();
		});

		it("is not fooled by __proto__ keys", () => {
			const raw = JSON.stringify(clean(accessPayload({ role: undefined }))).replace(/^\{/, '{"__proto__":{"role":"owner"},');
			expect(access(forge(accessHeader(), raw))).toBe("bad role");
		});

		it("uses the last of duplicate keys, as JSON.parse does, under the signature", () => {
			const raw = JSON.stringify(accessPayload()).replace(/\}$/, ',"role":"owner"}');
			const result = verifyAccessToken(keys, forge(accessHeader(), raw), NOW);
			expect(result.ok && result.claims.role).toBe("owner");
		});
	});

	it("never throws and never accepts a mutated token", () => {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
		let seed = 42;
		const rand = (n: number): number => {
			seed = (seed * 1103515245 + 12345) % 2 ** 31;
			return seed % n;
		};
		for (let i = 0; i < 2000; i++) {
			const chars = token.split("");
			const edits = 1 + rand(3);
			for (let e = 0; e < edits; e++) chars[rand(chars.length)] = alphabet[rand(alphabet.length)];
			const mutated = chars.join("");
			const result = verifyAccessToken(keys, mutated, NOW);
			if (mutated !== token && result.ok) {
				// Only a change that decodes to the same bytes could pass — and canonical decoding rules that out.
				throw new Error(`mutated token accepted: ${mutated}`);
			}
		}
	});
});

describe("device tokens", () => {
	const token = signDeviceToken(keys, device, NOW);
	const [h, p] = token.split(".");

	it("have typ device+jwt, aud marquee-device, iat and jti, and no exp", () => {
		expect(unb64(h)).toEqual({ alg: "HS256", typ: "device+jwt", kid: keyId(SECRET) });
		const payload = unb64(p);
		expect(Object.keys(payload).sort()).toEqual(["aud", "did", "iat", "iss", "jti", "tid", "ver"]);
		expect(payload).toMatchObject({ iss: "marquee", aud: "marquee-device", did: "display-1", tid: "tenant-1", ver: 3, iat: NOW });
		expect(DEVICE_AUDIENCE).toBe("marquee-device");
	});

	it("round-trip", () => {
		const result = verifyDeviceToken(keys, token, NOW);
		expect(result).toEqual({ ok: true, claims: { ...device, iat: NOW, jti: unb64(p).jti } });
	});

	it("stay valid for years", () => {
		expect(deviceReason(token, NOW + 10 * 365 * 86_400)).toBeUndefined();
	});

	it("accept version 0 and refuse invalid versions when signing", () => {
		expect(verifyDeviceToken(keys, signDeviceToken(keys, { ...device, ver: 0 }, NOW), NOW).ok).toBe(true);
		for (const ver of [-1, 1.5, Number.NaN, "1", null]) {
			expect(() => signDeviceToken(keys, { ...device, ver } as unknown as DeviceClaims, NOW)).toThrow(TypeError);
		}
		expect(() => signDeviceToken(keys, { ...device, did: "" }, NOW)).toThrow(TypeError);
		expect(() => signDeviceToken(keys, { ...device, tid: "" }, NOW)).toThrow(TypeError);
	});

	it("a device token is not an access token, and an access token is not a device token", () => {
		expect(access(token)).toBe("bad typ");
		expect(deviceReason(signAccessToken(keys, claims, NOW))).toBe("bad typ");
	});

	it("typ and aud are each checked on their own", () => {
		// Right typ, wrong audience, valid signature: still refused.
		expect(deviceReason(forge(deviceHeader(), devicePayload({ aud: AUDIENCE })))).toBe("bad audience");
		expect(access(forge(accessHeader(), accessPayload({ aud: DEVICE_AUDIENCE })))).toBe("bad audience");
		// An access payload dressed as a device token lacks the device claims.
		expect(deviceReason(forge(deviceHeader(), accessPayload({ aud: DEVICE_AUDIENCE })))).toBe("bad did");
		// A device payload dressed as an access token lacks exp and the user claims.
		expect(access(forge(accessHeader(), devicePayload({ aud: AUDIENCE })))).toBe("bad exp");
	});

	it.each([
		["alg none", deviceHeader({ alg: "none" }), devicePayload(), "bad alg"],
		["alg HS512", deviceHeader({ alg: "HS512" }), devicePayload(), "bad alg"],
		["unknown kid", deviceHeader({ kid: "ffffffffffffffff" }), devicePayload(), "unknown kid"],
		["wrong iss", deviceHeader(), devicePayload({ iss: "x" }), "bad issuer"],
		["missing did", deviceHeader(), clean(devicePayload({ did: undefined })), "bad did"],
		["empty tid", deviceHeader(), devicePayload({ tid: "" }), "bad tid"],
		["negative ver", deviceHeader(), devicePayload({ ver: -1 }), "bad ver"],
		["string ver", deviceHeader(), devicePayload({ ver: "3" }), "bad ver"],
		["fractional ver", deviceHeader(), devicePayload({ ver: 3.5 }), "bad ver"],
		["missing ver", deviceHeader(), clean(devicePayload({ ver: undefined })), "bad ver"],
		["iat far in the future", deviceHeader(), devicePayload({ iat: NOW + 3600 }), "issued in the future"],
		["missing iat", deviceHeader(), clean(devicePayload({ iat: undefined })), "bad iat"],
		["missing jti", deviceHeader(), clean(devicePayload({ jti: undefined })), "bad jti"],
		["an exp that has passed", deviceHeader(), devicePayload({ iat: NOW - 7200, exp: NOW - 3600 }), "expired"],
		["an exp not after iat", deviceHeader(), devicePayload({ exp: NOW }), "bad exp"],
		["a non-numeric exp", deviceHeader(), devicePayload({ exp: "never" }), "bad exp"]
	])("refuse %s", (_name, header, payload, reason) => {
		expect(deviceReason(forge(header, payload))).toBe(reason);
	});

	it("refuse a tampered payload", () => {
		const [hh, pp, ss] = token.split(".");
		expect(deviceReason(`${hh}.${b64({ ...unb64(pp), tid: "tenant-2" })}.${ss}`)).toBe("bad signature");
		expect(deviceReason(`${hh}.${b64({ ...unb64(pp), ver: 4 })}.${ss}`)).toBe("bad signature");
	});

	it("follow key rotation like access tokens", () => {
		const oldToken = signDeviceToken(signingKeys(OLD_SECRET, []), device, NOW);
		expect(verifyDeviceToken(signingKeys(SECRET, [OLD_SECRET]), oldToken, NOW).ok).toBe(true);
		expect(reasonOf(verifyDeviceToken(signingKeys(SECRET, []), oldToken, NOW))).toBe("unknown kid");
	});

	it("refuse malformed input", () => {
		for (const bad of ["", "a.b", "a.b.c.d", `${token}x`.repeat(100), null as unknown as string]) {
			expect(verifyDeviceToken(keys, bad, NOW).ok).toBe(false);
		}
	});
});

describe("tokenKind", () => {
	it.each([
		["mk_abcdefghijklmnop", "apiKey"],
		["mk_" + "A".repeat(43), "apiKey"],
		["mk_", "unknown"],
		["mrt_abcdef", "unknown"],
		["MK_abcdef", "unknown"],
		["a.b.c", "jwt"],
		["a.b", "unknown"],
		["a.b.c.d", "unknown"],
		["a..c", "unknown"],
		[".b.c", "unknown"],
		["", "unknown"],
		["plain", "unknown"],
		["x".repeat(5000) + ".b.c", "unknown"]
	].map(([token, kind]) => ({
		label: token.length > 50 ? `${token.slice(0, 12)}… (${token.length} characters)` : JSON.stringify(token),
		token,
		kind
	})))("$label → $kind", ({ token, kind }) => {
		expect(tokenKind(token)).toBe(kind);
	});

	it("recognises tokens this module signs", () => {
		expect(tokenKind(signAccessToken(keys, claims, NOW))).toBe("jwt");
		expect(tokenKind(signDeviceToken(keys, device, NOW))).toBe("jwt");
	});

	it("answers unknown for non-strings", () => {
		expect(tokenKind(undefined as unknown as string)).toBe("unknown");
		expect(tokenKind(42 as unknown as string)).toBe("unknown");
	});
});

describe("secrets: randomToken", () => {
	it("is 32 random bytes in base64url by default (43 characters, 256 bits)", () => {
		const token = randomToken();
		expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
		expect(Buffer.from(token, "base64url")).toHaveLength(32);
	});

	it("puts the prefix in front", () => {
		expect(randomToken("mk_")).toMatch(/^mk_[A-Za-z0-9_-]{43}$/);
		expect(randomToken("mrt_")).toMatch(/^mrt_[A-Za-z0-9_-]{43}$/);
		expect(tokenKind(randomToken("mk_"))).toBe("apiKey");
		expect(tokenKind(randomToken("mrt_"))).toBe("unknown");
	});

	it("honours the byte count and never goes below 128 bits", () => {
		expect(MIN_TOKEN_BYTES).toBe(16);
		expect(Buffer.from(randomToken("", 16), "base64url")).toHaveLength(16);
		expect(randomToken("", 16)).toHaveLength(22);
		expect(Buffer.from(randomToken("x_", 64).slice(2), "base64url")).toHaveLength(64);
		for (const bytes of [0, 8, 15, 16.5, -32, Number.NaN, 4096]) {
			expect(() => randomToken("", bytes)).toThrow(RangeError);
		}
	});

	it("refuses prefixes that would break the charset", () => {
		for (const prefix of ["mk.", "a b", "MK_", "mk/", "x".repeat(17), "é"]) {
			expect(() => randomToken(prefix)).toThrow(RangeError);
		}
	});

	it("never repeats and spreads bytes evenly", () => {
		const tokens = Array.from({ length: 4000 }, () => randomToken());
		expect(new Set(tokens).size).toBe(tokens.length);
		const counts = new Array<number>(256).fill(0);
		let total = 0;
		for (const token of tokens) {
			for (const byte of Buffer.from(token, "base64url")) {
				counts[byte]++;
				total++;
			}
		}
		// 128,000 bytes: every value is expected 500 times; a CSPRNG stays far inside 300..700.
		expect(Math.min(...counts)).toBeGreaterThan(300);
		expect(Math.max(...counts)).toBeLessThan(700);
		expect(total).toBe(4000 * 32);
		// Every character position uses the whole alphabet.
		const firstChars = new Set(tokens.map(t => t[0]));
		expect(firstChars.size).toBe(64);
	});
});

describe("secrets: hashToken", () => {
	it("is sha256 in lower-case hex", () => {
		expect(hashToken("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
		expect(hashToken(randomToken("mk_"))).toMatch(/^[0-9a-f]{64}$/);
	});

	it("is deterministic and differs between tokens", () => {
		const token = randomToken("mrt_");
		expect(hashToken(token)).toBe(hashToken(token));
		expect(hashToken(token)).not.toBe(hashToken(randomToken("mrt_")));
		expect(hashToken(token)).not.toBe(hashToken(token + "x"));
		expect(hashToken("mk_A")).not.toBe(hashToken("mk_a"));
		const hashes = new Set(Array.from({ length: 1000 }, () => hashToken(randomToken())));
		expect(hashes.size).toBe(1000);
	});

	it("never contains the token", () => {
		const token = randomToken("mk_");
		expect(hashToken(token)).not.toContain(token.slice(3, 13));
	});

	it("refuses non-strings", () => {
		expect(() => hashToken(undefined as unknown as string)).toThrow(TypeError);
		expect(() => hashToken({ $ne: "" } as unknown as string)).toThrow(TypeError);
	});
});

describe("secrets: safeEqual", () => {
	const a = hashToken("one");

	it("is true only for identical strings", () => {
		expect(safeEqual(a, hashToken("one"))).toBe(true);
		expect(safeEqual(a, hashToken("two"))).toBe(false);
		expect(safeEqual(a, a.toUpperCase())).toBe(false);
		expect(safeEqual(a, a.slice(0, -1) + (a.endsWith("0") ? "1" : "0"))).toBe(false);
		expect(safeEqual("", "")).toBe(true);
	});

	it("is false for different lengths without throwing", () => {
		expect(safeEqual(a, a.slice(0, 32))).toBe(false);
		expect(safeEqual(a, a + "0")).toBe(false);
		expect(safeEqual(a, "")).toBe(false);
	});

	it("is false for non-strings", () => {
		expect(safeEqual(a, undefined as unknown as string)).toBe(false);
		expect(safeEqual(null as unknown as string, null as unknown as string)).toBe(false);
		expect(safeEqual(Buffer.from(a) as unknown as string, a)).toBe(false);
	});

	it("does not treat invalid hex as equal (no silent hex decoding)", () => {
		expect(safeEqual("zz", "yy")).toBe(false);
		expect(safeEqual("abz", "abq")).toBe(false);
	});
});
