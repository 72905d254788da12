/**
 * Two-factor's pure parts (services/auth/two-factor.ts) against an authenticator written from the
 * RFCs (test/helpers/totp.ts), and the sealing of secrets at rest (shared/sealed.ts).
 */
import fc from "fast-check";
import {
	enrolmentView,
	matchingStep,
	newRecoveryCodes,
	newTotpSecret,
	normalizeRecoveryCode,
	normalizeTotp,
	otpauthUri,
	recoveryCodeHash,
	RECOVERY_CODE_COUNT
} from "../../services/auth/two-factor";
import { sealer, SealedSecretError } from "../../shared/sealed";
import { base32Decode, codeFor, hotp } from "../helpers/totp";

const T0 = Date.parse("2026-12-01T10:00:15Z");
const STEP = Math.floor(T0 / 30_000);

describe("the test authenticator", () => {
	it("matches RFC 6238's SHA-1 test vectors (8 digits, secret 12345678901234567890)", () => {
		const key = Buffer.from("12345678901234567890");
		// Appendix B: T = 59 s, 1111111109 s, 2000000000 s.
		expect(hotp(key, Math.floor(59 / 30), 8)).toBe("94287082");
		expect(hotp(key, Math.floor(1111111109 / 30), 8)).toBe("07081804");
		expect(hotp(key, Math.floor(2000000000 / 30), 8)).toBe("69279037");
	});
});

describe("TOTP codes", () => {
	const secret = newTotpSecret();

	it("a new secret carries 160 bits (32 base32 characters)", () => {
		expect(secret).toMatch(/^[A-Z2-7]{32}$/);
		expect(base32Decode(secret)).toHaveLength(20);
		expect(newTotpSecret()).not.toBe(secret);
	});

	it("accepts the code of this step and of one step either side, and says which step it was", () => {
		expect(matchingStep(secret, codeFor(secret, STEP), T0)).toBe(STEP);
		expect(matchingStep(secret, codeFor(secret, STEP - 1), T0)).toBe(STEP - 1);
		expect(matchingStep(secret, codeFor(secret, STEP + 1), T0)).toBe(STEP + 1);
	});

	it("refuses codes two or more steps away, of another secret, and anything that is not 6 digits", () => {
		for (const step of [STEP - 2, STEP + 2, STEP - 20, STEP + 100]) {
			const code = codeFor(secret, step);
			// A far step's code may equal a near one by chance (1 in a million): only refuse real misses.
			if ([STEP - 1, STEP, STEP + 1].some(near => codeFor(secret, near) === code)) continue;
			expect(matchingStep(secret, code, T0)).toBeNull();
		}
		expect(matchingStep(newTotpSecret(), codeFor(secret, STEP), T0)).toBe(null);
		for (const bad of ["", "12345", "1234567", "abcdef", "12 34 5", "１２３４５６", "-12345"]) expect(matchingStep(secret, bad, T0)).toBeNull();
	});

	it("takes codes as people type them: spaces or a dash in the middle", () => {
		const code = codeFor(secret, STEP);
		expect(matchingStep(secret, `${code.slice(0, 3)} ${code.slice(3)}`, T0)).toBe(STEP);
		expect(matchingStep(secret, `${code.slice(0, 3)}-${code.slice(3)}`, T0)).toBe(STEP);
		expect(normalizeTotp(" 123 456 ")).toBe("123456");
	});

	it("never throws on arbitrary input", () => {
		fc.assert(fc.property(fc.string({ maxLength: 80 }), text => {
			expect(() => matchingStep(secret, text, T0)).not.toThrow();
			expect(() => normalizeRecoveryCode(text)).not.toThrow();
		}), { numRuns: 2000 });
	});

	it("the otpauth URI and QR code name the issuer, the account and the secret", async () => {
		const uri = otpauthUri(secret, "ada@example.com");
		const url = new URL(uri);
		expect(url.protocol).toBe("otpauth:");
		expect(url.host).toBe("totp");
		expect(decodeURIComponent(url.pathname)).toBe("/Marquee:ada@example.com");
		expect(url.searchParams.get("secret")).toBe(secret);
		expect(url.searchParams.get("issuer")).toBe("Marquee");
		const view = await enrolmentView(secret, "ada@example.com");
		expect(view.qrCode).toMatch(/^data:image\/svg\+xml;base64,/);
		expect(Buffer.from(view.qrCode.split(",")[1], "base64").toString()).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
	});
});

describe("recovery codes", () => {
	it("ten distinct codes like abcd-efgh-jkmn from an alphabet without look-alikes", () => {
		const codes = newRecoveryCodes();
		expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
		expect(new Set(codes).size).toBe(10);
		for (const code of codes) expect(code).toMatch(/^[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}$/);
	});

	it("case, spaces and dashes do not matter; anything else is not a code", () => {
		const [code] = newRecoveryCodes();
		const bare = code.replace(/-/g, "");
		expect(normalizeRecoveryCode(code.toUpperCase())).toBe(bare);
		expect(normalizeRecoveryCode(` ${bare.slice(0, 6)} ${bare.slice(6)} `)).toBe(bare);
		expect(recoveryCodeHash(bare)).toMatch(/^[0-9a-f]{64}$/);
		for (const bad of ["", "123456", `${bare}x`, bare.slice(1), "0000-0000-0000", "llll-llll-llll"]) expect(normalizeRecoveryCode(bad)).toBeNull();
	});
});

describe("sealed secrets", () => {
	const key = "k".repeat(40);
	const box = sealer(key);

	it("opens what it sealed for the same context, and the sealed text shows nothing of it", () => {
		const sealed = box.seal("JBSWY3DPEHPK3PXP", "totp:u1");
		expect(sealed).toMatch(/^v1\.[\w-]{8}\.[\w-]+\.[\w-]+\.[\w-]+$/);
		expect(sealed).not.toContain("JBSWY3DPEHPK3PXP");
		expect(box.seal("JBSWY3DPEHPK3PXP", "totp:u1")).not.toBe(sealed);
		expect(box.open(sealed, "totp:u1")).toBe("JBSWY3DPEHPK3PXP");
	});

	it("refuses another record's context, another key, a tampered value and garbage", () => {
		const sealed = box.seal("secret", "totp:u1");
		expect(() => box.open(sealed, "totp:u2")).toThrow(SealedSecretError);
		expect(() => sealer("x".repeat(40)).open(sealed, "totp:u1")).toThrow(/another ENCRYPTION_KEY/);
		const parts = sealed.split(".");
		const flipped = Buffer.from(parts[3], "base64url");
		flipped[0] ^= 1;
		expect(() => box.open([...parts.slice(0, 3), flipped.toString("base64url"), parts[4]].join("."), "totp:u1")).toThrow(SealedSecretError);
		for (const junk of ["", "v1", "v2.a.b.c.d", "v1.....", sealed.replace(/^v1/, "v0")]) expect(() => box.open(junk, "totp:u1")).toThrow(SealedSecretError);
	});

	it("rotates: a new key seals, the previous one still opens what it sealed, and opens nothing once removed", () => {
		const old = sealer("o".repeat(40));
		const sealedBefore = old.seal("JBSWY3DPEHPK3PXP", "totp:u1");
		const rotated = sealer("n".repeat(40), ["o".repeat(40)]);
		expect(rotated.open(sealedBefore, "totp:u1")).toBe("JBSWY3DPEHPK3PXP");
		const sealedAfter = rotated.seal("JBSWY3DPEHPK3PXP", "totp:u1");
		expect(sealedAfter.split(".")[1]).not.toBe(sealedBefore.split(".")[1]);
		expect(() => old.open(sealedAfter, "totp:u1")).toThrow(SealedSecretError);
		expect(() => sealer("n".repeat(40)).open(sealedBefore, "totp:u1")).toThrow(/another ENCRYPTION_KEY/);
		// The previous key still checks the record each value is bound to.
		expect(() => rotated.open(sealedBefore, "totp:u2")).toThrow(SealedSecretError);
		expect(() => sealer("n".repeat(40), ["short"])).toThrow(RangeError);
	});

	it("needs a key of at least 32 characters", () => {
		expect(() => sealer("short")).toThrow(RangeError);
	});
});
