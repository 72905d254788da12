/**
 * Two-factor sign-in: TOTP (RFC 6238 through `otpauth`: SHA-1, 6 digits, 30 s — what every
 * authenticator app reads from an `otpauth://` URI) and ten single-use recovery codes. The
 * challenge a password sign-in turns into when a second factor is needed is in challenges.ts.
 *
 * - The TOTP secret is sealed at rest (shared/sealed.ts) and bound to its account.
 * - A code is accepted within one step either side (clock drift), and only once: the account keeps
 *   the last step it accepted and a code must be for a later one (a conditional update, so two
 *   requests racing with the same code cannot both pass).
 * - Recovery codes carry 60 random bits and are stored as sha256 hashes, each claimed once.
 */
import { randomInt } from "node:crypto";
import { Secret, TOTP } from "otpauth";
import QRCode from "qrcode";
import type { GlobalCollection, Stored } from "../../mixins/db.mixin";
import { hashToken } from "../../shared/secrets";
import type { Sealer } from "../../shared/sealed";

export const TOTP_PERIOD_SEC = 30;
export const TOTP_DIGITS = 6;
/** Steps either side of now a code may be for (30 s of clock drift each way). */
export const TOTP_WINDOW = 1;
export const RECOVERY_CODE_COUNT = 10;
/** What authenticator apps show as the account's issuer. */
export const TOTP_ISSUER = "Marquee";

/** No 0/1/o/l/i: a code read off paper is typed right. */
const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_LENGTH = 12;

export interface TwoFactorDoc extends Stored {
	userId: string;
	/** The confirmed secret (sealed), present once two-factor is on. */
	secret?: string;
	enabledAt?: string;
	/** A secret shown by enrolment and not yet confirmed with a code (sealed). */
	pendingSecret?: string;
	/** The last TOTP step accepted: a code must be for a later one (no replay). */
	lastStep: number;
}

export interface RecoveryCodeDoc extends Stored {
	userId: string;
	codeHash: string;
	usedAt?: string;
}

export type TwoFactorStore = Pick<GlobalCollection<TwoFactorDoc>, "findDoc" | "insertDoc" | "updateWhere" | "removeDocs">;
export type RecoveryCodeStore = Pick<GlobalCollection<RecoveryCodeDoc>, "findDoc" | "insertDoc" | "updateWhere" | "removeDocs" | "countDocs">;

/** What enrolment shows once: the secret for manual entry, the URI, and the URI as a QR code. */
export interface Enrolment {
	secret: string;
	otpauthUri: string;
	/** `data:image/svg+xml;base64,…` */
	qrCode: string;
}

// ---- pure ----------------------------------------------------------------------------------

const sealContext = (userId: string) => `totp:${userId}`;

function totp(secretBase32: string, account = ""): TOTP {
	return new TOTP({ issuer: TOTP_ISSUER, label: account, secret: Secret.fromBase32(secretBase32), algorithm: "SHA1", digits: TOTP_DIGITS, period: TOTP_PERIOD_SEC });
}

/** A new 160-bit secret, base32 (RFC 4226's recommended length). */
export function newTotpSecret(): string {
	return new Secret({ size: 20 }).base32;
}

export function otpauthUri(secretBase32: string, account: string): string {
	return totp(secretBase32, account).toString();
}

export const stepAt = (nowMs: number) => Math.floor(nowMs / 1000 / TOTP_PERIOD_SEC);

/** `code` without the spaces apps show and people type, when it has the shape of a TOTP code. */
export function normalizeTotp(code: string): string | null {
	const digits = code.replace(/[\s-]/g, "");
	return /^\d{6}$/.test(digits) ? digits : null;
}

/** The step `code` is valid for at `nowMs` (within the window), or null. Constant-time comparisons (otpauth). */
export function matchingStep(secretBase32: string, code: string, nowMs: number): number | null {
	const token = normalizeTotp(code);
	if (!token) return null;
	const delta = TOTP.validate({ token, secret: Secret.fromBase32(secretBase32), algorithm: "SHA1", digits: TOTP_DIGITS, period: TOTP_PERIOD_SEC, timestamp: nowMs, window: TOTP_WINDOW });
	return delta === null ? null : stepAt(nowMs) + delta;
}

/** Ten codes like `k7mq-x2pd-9fha`, shown once. */
export function newRecoveryCodes(): string[] {
	return Array.from({ length: RECOVERY_CODE_COUNT }, () => {
		const chars = Array.from({ length: RECOVERY_LENGTH }, () => RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)]).join("");
		return `${chars.slice(0, 4)}-${chars.slice(4, 8)}-${chars.slice(8)}`;
	});
}

/** A typed recovery code in stored form (case, spaces and dashes do not matter), or null when it cannot be one. */
export function normalizeRecoveryCode(code: string): string | null {
	const bare = code.toLowerCase().replace(/[\s-]/g, "");
	return bare.length === RECOVERY_LENGTH && [...bare].every(c => RECOVERY_ALPHABET.includes(c)) ? bare : null;
}

export const recoveryCodeHash = (normalized: string) => hashToken(`recovery:${normalized}`);

export async function enrolmentView(secretBase32: string, account: string): Promise<Enrolment> {
	const uri = otpauthUri(secretBase32, account);
	const svg = await QRCode.toString(uri, { type: "svg", errorCorrectionLevel: "M", margin: 2 });
	return { secret: secretBase32, otpauthUri: uri, qrCode: `data:image/svg+xml;base64,${Buffer.from(svg).toString("base64")}` };
}

// ---- storage -------------------------------------------------------------------------------

export function twoFactorOf(store: TwoFactorStore, userId: string): Promise<TwoFactorDoc | null> {
	return store.findDoc({ userId });
}

export const isEnabled = (doc: TwoFactorDoc | null): doc is TwoFactorDoc & { secret: string } => Boolean(doc?.secret);

/** A new pending secret for `userId` (replacing an unconfirmed one); answers its enrolment view. */
export async function beginEnrolment(store: TwoFactorStore, sealing: Sealer, userId: string, account: string): Promise<Enrolment> {
	const secret = newTotpSecret();
	const pendingSecret = sealing.seal(secret, sealContext(userId));
	const existing = await twoFactorOf(store, userId);
	if (existing) await store.updateWhere({ _id: existing.id }, { pendingSecret });
	else await store.insertDoc({ userId, pendingSecret, lastStep: 0 });
	return enrolmentView(secret, account);
}

/**
 * Turns the pending secret on when `code` is its current code; false when the code is wrong or
 * there is no pending secret (or a racing request confirmed it first).
 */
export async function confirmEnrolment(store: TwoFactorStore, sealing: Sealer, userId: string, code: string, nowMs = Date.now()): Promise<boolean> {
	const doc = await twoFactorOf(store, userId);
	if (!doc?.pendingSecret || doc.secret) return false;
	const step = matchingStep(sealing.open(doc.pendingSecret, sealContext(userId)), code, nowMs);
	if (step === null) return false;
	const changed = await store.updateWhere(
		{ _id: doc.id, pendingSecret: doc.pendingSecret },
		{ secret: doc.pendingSecret, pendingSecret: undefined, enabledAt: new Date(nowMs).toISOString(), lastStep: step }
	);
	return changed === 1;
}

/** A fresh set of recovery codes for `userId` (the earlier ones stop working); answers them in clear, once. */
export async function replaceRecoveryCodes(store: RecoveryCodeStore, userId: string): Promise<string[]> {
	const codes = newRecoveryCodes();
	await store.removeDocs({ userId });
	for (const code of codes) await store.insertDoc({ userId, codeHash: recoveryCodeHash(normalizeRecoveryCode(code) as string) });
	return codes;
}

export function recoveryCodesLeft(store: RecoveryCodeStore, userId: string): Promise<number> {
	return store.countDocs({ userId, usedAt: { $exists: false } });
}

/**
 * Checks a second factor for an account with two-factor on: a TOTP code for a step after the last
 * accepted one, or an unused recovery code. Claims what it accepts; answers which kind, or null.
 */
export async function useSecondFactor(
	stores: { twoFactor: TwoFactorStore; recoveryCodes: RecoveryCodeStore },
	sealing: Sealer,
	userId: string,
	code: string,
	nowMs = Date.now()
): Promise<"totp" | "recovery" | null> {
	const doc = await twoFactorOf(stores.twoFactor, userId);
	if (!isEnabled(doc)) return null;
	if (normalizeTotp(code)) {
		const step = matchingStep(sealing.open(doc.secret, sealContext(userId)), code, nowMs);
		if (step === null) return null;
		const claimed = await stores.twoFactor.updateWhere({ _id: doc.id, lastStep: { $lt: step } }, { lastStep: step });
		return claimed === 1 ? "totp" : null;
	}
	const normalized = normalizeRecoveryCode(code);
	if (!normalized) return null;
	const claimed = await stores.recoveryCodes.updateWhere(
		{ userId, codeHash: recoveryCodeHash(normalized), usedAt: { $exists: false } },
		{ usedAt: new Date(nowMs).toISOString() }
	);
	return claimed === 1 ? "recovery" : null;
}

export async function disableTwoFactor(stores: { twoFactor: TwoFactorStore; recoveryCodes: RecoveryCodeStore }, userId: string): Promise<void> {
	await stores.twoFactor.removeDocs({ userId });
	await stores.recoveryCodes.removeDocs({ userId });
}
