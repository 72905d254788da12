/**
 * Secrets the platform must read back (a TOTP secret to check codes, an SSO client secret to
 * talk to the identity provider) cannot be hashed like tokens: they are sealed with AES-256-GCM
 * under a key from configuration (ENCRYPTION_KEY, or one generated into DATA_DIR).
 *
 * Every sealed value is bound to a context (e.g. `totp:<userId>`) as additional authenticated
 * data: a value copied onto another record does not open there, so someone who can write the
 * database cannot move one account's secret to another. The text form is
 * `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url), so a changed key is told apart from a
 * tampered value.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class SealedSecretError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "SealedSecretError";
	}
}

export interface Sealer {
	/** `plain` sealed for `context`. */
	seal(plain: string, context: string): string;
	/** The plain text of a value sealed for `context`; throws SealedSecretError otherwise. */
	open(sealed: string, context: string): string;
}

interface DerivedKey {
	aes: Buffer;
	id: string;
}

function derive(key: string): DerivedKey {
	if (typeof key !== "string" || key.length < 32) throw new RangeError("sealer: a key must have at least 32 characters");
	const aes = Buffer.from(hkdfSync("sha256", key, "marquee", "sealed-secrets v1", 32));
	return { aes, id: createHash("sha256").update(aes).digest("base64url").slice(0, 8) };
}

/**
 * A sealer over `key` (any string of at least 32 characters; the AES key is derived with HKDF).
 * `previousKeys` still open what they sealed — the value names its key — so a key can be rotated:
 * new values are sealed with `key`, older ones keep opening until the previous key is removed.
 */
export function sealer(key: string, previousKeys: string[] = []): Sealer {
	const current = derive(key);
	const byId = new Map([current, ...previousKeys.map(derive)].map(k => [k.id, k.aes]));
	const aesKey = current.aes;
	const keyId = current.id;
	return {
		seal(plain, context) {
			const iv = randomBytes(IV_BYTES);
			const cipher = createCipheriv("aes-256-gcm", aesKey, iv);
			cipher.setAAD(Buffer.from(context, "utf8"));
			const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
			return [VERSION, keyId, iv.toString("base64url"), body.toString("base64url"), cipher.getAuthTag().toString("base64url")].join(".");
		},
		open(sealed, context) {
			const parts = typeof sealed === "string" ? sealed.split(".") : [];
			if (parts.length !== 5 || parts[0] !== VERSION) throw new SealedSecretError("not a sealed value");
			const opening = byId.get(parts[1]);
			if (!opening) throw new SealedSecretError("sealed under another ENCRYPTION_KEY");
			const iv = Buffer.from(parts[2], "base64url");
			const tag = Buffer.from(parts[4], "base64url");
			if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new SealedSecretError("not a sealed value");
			try {
				const decipher = createDecipheriv("aes-256-gcm", opening, iv);
				decipher.setAAD(Buffer.from(context, "utf8"));
				decipher.setAuthTag(tag);
				return Buffer.concat([decipher.update(Buffer.from(parts[3], "base64url")), decipher.final()]).toString("utf8");
			} catch {
				throw new SealedSecretError("the sealed value does not open (tampered, or sealed for another record)");
			}
		}
	};
}
