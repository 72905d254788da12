/**
 * Secrets the platform generates for itself when none is configured: the JWT signing secret and
 * the key that seals secrets at rest. Each is its variable (JWT_SECRET, ENCRYPTION_KEY) when set (required in production — config validation
 * refuses to start without it). Otherwise (embedded, development and test mode) the secret lives
 * in DATA_DIR/secrets/ (jwt-secret, encryption-key): read when present, else generated once (48 random bytes,
 * base64url) and written with mode 0600 in a 0700 folder, so that tokens survive restarts.
 *
 * Creation is atomic and first-writer-wins: the secret is written to a private temporary file and
 * hard-linked to its final name, which fails when another process got there first — then both use
 * the stored one. Without hard links (some file systems) it falls back to an exclusive create.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";

export const JWT_SECRET_FILE = path.join("secrets", "jwt-secret");
const SECRET_BYTES = 48;
/** The shortest stored secret accepted (a generated one has 64 characters). */
const MIN_STORED_LENGTH = 32;

/** The `code` of a Node system error (structural: `instanceof Error` fails across realms, e.g. under jest). */
function errorCode(error: unknown): string | undefined {
	return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/** Tightens a path we own to `mode`; ignores file systems that cannot (Windows, some mounts). */
function tighten(file: string, mode: number): void {
	try {
		if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, mode);
	} catch {
		// best effort: the secret is still usable
	}
}

function readSecret(file: string, variable: string): string | null {
	let text: string;
	try {
		text = readFileSync(file, "utf8");
	} catch (error) {
		if (errorCode(error) === "ENOENT") return null;
		throw error;
	}
	const secret = text.trim();
	if (secret.length < MIN_STORED_LENGTH) {
		throw new Error(`${file} holds no valid secret (fewer than ${MIN_STORED_LENGTH} characters); delete it to generate a new one, or set ${variable}`);
	}
	tighten(file, 0o600);
	return secret;
}

function writeExclusive(file: string, content: string): void {
	const fd = openSync(file, "wx", 0o600);
	try {
		writeSync(fd, content);
		fsyncSync(fd);
	} finally {
		closeSync(fd);
	}
}

/** Writes `secret` to `file` unless the file exists already; true when this call created it. */
function createOnce(file: string, secret: string): boolean {
	const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
	writeExclusive(temp, secret + "\n");
	try {
		linkSync(temp, file);
		return true;
	} catch (error) {
		const code = errorCode(error);
		if (code === "EEXIST") return false;
		if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw error;
	} finally {
		unlinkSync(temp);
	}
	// No hard links here: an exclusive create (a concurrent reader might see it half-written).
	try {
		writeExclusive(file, secret + "\n");
		return true;
	} catch (error) {
		if (errorCode(error) === "EEXIST") return false;
		throw error;
	}
}

/** Where a generated secret is kept under DATA_DIR, and the variable that replaces it. */
export interface StoredSecret {
	/** The environment variable that sets it (named in errors). */
	variable: string;
	/** Path under DATA_DIR. */
	file: string;
}

export const JWT_SECRET: StoredSecret = { variable: "JWT_SECRET", file: JWT_SECRET_FILE };
export const ENCRYPTION_KEY: StoredSecret = { variable: "ENCRYPTION_KEY", file: path.join("secrets", "encryption-key") };

/**
 * `configured` when set (required in production — config validation refuses to start without it);
 * otherwise the secret kept in DATA_DIR under `secret.file`, generated on first use.
 */
export function resolveStoredSecret(secret: StoredSecret, configured: string | null, config: { dataDir: string; nodeEnv: string }): string {
	if (typeof configured === "string" && configured.length > 0) return configured;
	// Config validation already refuses this; never mint a throwaway secret in production.
	if (config.nodeEnv === "production") throw new Error(`${secret.variable} is required when NODE_ENV=production`);

	const dir = path.join(config.dataDir, "secrets");
	const file = path.join(config.dataDir, secret.file);
	mkdirSync(config.dataDir, { recursive: true });
	try {
		mkdirSync(dir, { mode: 0o700 });
	} catch (error) {
		if (errorCode(error) !== "EEXIST") throw error;
		tighten(dir, 0o700);
	}

	const existing = readSecret(file, secret.variable);
	if (existing !== null) return existing;
	const generated = randomBytes(SECRET_BYTES).toString("base64url");
	if (createOnce(file, generated)) return generated;
	// Another process created it between our read and write: use theirs.
	const theirs = readSecret(file, secret.variable);
	if (theirs === null) throw new Error(`${file} vanished while it was being created`);
	return theirs;
}

export function resolveJwtSecret(config: { jwtSecret: string | null; dataDir: string; nodeEnv: string }): string {
	return resolveStoredSecret(JWT_SECRET, config.jwtSecret, config);
}

/** The key that seals secrets at rest (TOTP secrets, SSO client secrets): ENCRYPTION_KEY or one kept in DATA_DIR. */
export function resolveEncryptionKey(config: { encryptionKey: string | null; dataDir: string; nodeEnv: string }): string {
	return resolveStoredSecret(ENCRYPTION_KEY, config.encryptionKey, config);
}
