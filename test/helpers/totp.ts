/**
 * An authenticator app for tests: RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) written from the RFCs,
 * independent of the library the platform uses, so a test's expected code is not the code under test.
 */
import { createHmac } from "node:crypto";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function base32Decode(text: string): Buffer {
	const clean = text.replace(/=+$/, "").toUpperCase();
	let bits = 0;
	let value = 0;
	const out: number[] = [];
	for (const char of clean) {
		const index = BASE32.indexOf(char);
		if (index < 0) throw new Error(`not base32: ${char}`);
		value = (value << 5) | index;
		bits += 5;
		if (bits >= 8) {
			out.push((value >>> (bits - 8)) & 0xff);
			bits -= 8;
		}
	}
	return Buffer.from(out);
}

/** RFC 4226 HOTP of `counter` with `digits` digits. */
export function hotp(key: Buffer, counter: number, digits = 6): string {
	const message = Buffer.alloc(8);
	message.writeBigUInt64BE(BigInt(counter));
	const mac = createHmac("sha1", key).update(message).digest();
	const offset = mac[mac.length - 1] & 0x0f;
	const binary = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
	return String(binary % 10 ** digits).padStart(digits, "0");
}

/** The 30-second step of `ms`. */
export const stepOf = (ms = Date.now()) => Math.floor(ms / 30_000);

/** The code of a base32 secret for `step` (default: now). */
export function codeFor(secretBase32: string, step = stepOf()): string {
	return hotp(base32Decode(secretBase32), step);
}
