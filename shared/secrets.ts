/**
 * Opaque secrets: API keys (`mk_…`), refresh tokens (`mrt_…`), email-verification, password-reset
 * and invitation tokens, pairing codes and poll secrets. They are random, shown to their owner
 * once, and stored only as a hash. One helper for every service that keeps such secrets.
 *
 * Why sha256 and not bcrypt here: these tokens carry at least 128 bits from the CSPRNG, so nobody
 * can guess them or brute-force a leaked hash — slow, salted hashing only matters for low-entropy
 * human passwords. A fast, unsalted, deterministic hash also lets the store *look a token up* by its
 * hash (a unique index on `tokenHash`), which a salted bcrypt hash cannot do. What the hash still
 * buys us: a leaked database does not hand out working credentials.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Fewest random bytes a token may carry: 16 bytes = 128 bits. */
export const MIN_TOKEN_BYTES = 16;
const MAX_TOKEN_BYTES = 1024;
/** A prefix tells tokens apart in logs and secret scanners: lower-case letters, digits, `_`. */
const PREFIX = /^[a-z0-9_]{0,16}$/;

/**
 * `prefix` + base64url of `bytes` random bytes (default 32 = 256 bits, 43 characters), e.g.
 * `randomToken("mk_")` for an API key, `randomToken("mrt_")` for a refresh token. The result is
 * URL-, header- and JSON-safe. Throws on fewer than 16 bytes or a prefix outside `[a-z0-9_]`.
 */
export function randomToken(prefix = "", bytes = 32): string {
	if (!PREFIX.test(prefix)) throw new RangeError("randomToken: prefix must match [a-z0-9_]{0,16}");
	if (!Number.isInteger(bytes) || bytes < MIN_TOKEN_BYTES || bytes > MAX_TOKEN_BYTES) {
		throw new RangeError(`randomToken: bytes must be a whole number from ${MIN_TOKEN_BYTES} to ${MAX_TOKEN_BYTES}`);
	}
	return prefix + randomBytes(bytes).toString("base64url");
}

/** sha256 of the token (UTF-8), as 64 lower-case hex characters — what the store keeps and indexes. */
export function hashToken(token: string): string {
	if (typeof token !== "string") throw new TypeError("hashToken: token must be a string");
	return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * Constant-time equality of two strings (meant for hex digests such as `hashToken` results).
 * Both sides are hashed first, so neither the position of the first difference nor a difference
 * in length shows in the timing; non-strings are never equal.
 */
export function safeEqual(a: string, b: string): boolean {
	if (typeof a !== "string" || typeof b !== "string") return false;
	const da = createHash("sha256").update(a, "utf8").digest();
	const db = createHash("sha256").update(b, "utf8").digest();
	return timingSafeEqual(da, db);
}
