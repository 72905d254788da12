/**
 * Accounts: the user document and its public view, the client addresses an account signed in
 * from (they keep the owner from being locked out by a stranger's failed guesses), the password
 * policy as a 422, and the single-use email tokens (verification, password reset).
 *
 * Users and email tokens belong to no tenant (one account may join several organisations), so
 * their collections are global.
 */
import type { GlobalCollection, NewDoc, Stored } from "../../mixins/db.mixin";
import type { UserView } from "../../shared/contracts";
import { Errors } from "../../shared/errors";
import { passwordProblem } from "./passwords";
import { hashToken, randomToken } from "../../shared/secrets";

const HOUR = 3600_000;
export const VERIFY_TTL_MS = 24 * HOUR;
export const RESET_TTL_MS = 30 * 60_000;
/** Client addresses remembered per account: enough for home, office and phone, bounded. */
export const KNOWN_CLIENTS_KEPT = 10;

export interface UserDoc extends Stored {
	/** Lower-case; unique. */
	email: string;
	name: string;
	passwordHash: string;
	emailVerified: boolean;
	/** Hashes of the client addresses this account signed in from (newest first), see knowsClient. */
	knownClients?: string[];
	/** The tenant of the last sign-in or switch: the next password sign-in lands there. */
	lastTenantId?: string;
}

export type EmailTokenPurpose = "verify" | "reset";

export interface EmailTokenDoc extends Stored {
	userId: string;
	purpose: EmailTokenPurpose;
	tokenHash: string;
	expiresAt: string;
	/** Set once, when the token is used. */
	usedAt?: string;
}

/** What of the email_tokens collection the token functions use (a fake in unit tests). */
export type EmailTokenStore = Pick<GlobalCollection<EmailTokenDoc>, "findDoc" | "insertDoc" | "updateWhere" | "removeDocs">;

const TOKEN_PREFIX: Record<EmailTokenPurpose, string> = { verify: "mev_", reset: "mpr_" };

// ---- users ---------------------------------------------------------------------------------

/** API.md's `user`: never the password hash or the known clients. */
export function userView({ id, email, name, emailVerified, createdAt }: UserDoc): UserView {
	return { id, email, name, emailVerified, createdAt };
}

export const clientHash = (userId: string, ip: string) => hashToken(`known-client:${userId}:${ip}`);

/** Whether `user` has signed in from `ip` before (its per-account failure limit does not apply). */
export function knowsClient(user: UserDoc | null, ip: string): boolean {
	return Boolean(user?.knownClients?.includes(clientHash(user.id, ip)));
}

/** The known clients after a sign-in from `ip` (newest first, bounded), or null when nothing changes. */
export function rememberedClients(user: Pick<UserDoc, "id" | "knownClients">, ip: string): string[] | null {
	const hash = clientHash(user.id, ip);
	const known = user.knownClients ?? [];
	if (known[0] === hash) return null;
	return [hash, ...known.filter(h => h !== hash)].slice(0, KNOWN_CLIENTS_KEPT);
}

/** 422 naming `field` when the password breaks the policy (length, common list, email or name in it). */
export function assertPasswordAcceptable(password: string, field: string, context: { email: string; name?: string }): void {
	const problem = passwordProblem(password, context);
	if (problem) throw Errors.validation([{ field, message: `Password ${problem}`, type: "password" }]);
}

// ---- email tokens --------------------------------------------------------------------------

/** A new token: the secret for the email link and the document that keeps only its hash. */
export function newEmailToken(userId: string, purpose: EmailTokenPurpose, ttlMs: number, now: number): { token: string; doc: NewDoc<EmailTokenDoc> } {
	const token = randomToken(TOKEN_PREFIX[purpose]);
	return { token, doc: { userId, purpose, tokenHash: hashToken(token), expiresAt: new Date(now + ttlMs).toISOString() } };
}

/** Whether a stored token may still be used: not used yet and not expired. */
export function emailTokenUsable(record: Pick<EmailTokenDoc, "usedAt" | "expiresAt">, now: number): boolean {
	return !record.usedAt && record.expiresAt > new Date(now).toISOString();
}

/** The link of a verification or reset email. */
export function emailLink(appUrl: string, purpose: EmailTokenPurpose, token: string): string {
	const page = purpose === "verify" ? "verify-email" : "reset-password";
	return `${appUrl}/${page}?token=${encodeURIComponent(token)}`;
}

/** Issues a token for `purpose`; one live token per purpose: a new email supersedes the previous link. */
export async function issueEmailToken(tokens: EmailTokenStore, userId: string, purpose: EmailTokenPurpose, ttlMs: number, now = Date.now()): Promise<string> {
	const { token, doc } = newEmailToken(userId, purpose, ttlMs, now);
	await tokens.removeDocs({ userId, purpose });
	await tokens.insertDoc(doc);
	return token;
}

/** Marks a valid token used, once; null when unknown, used, expired or of another purpose. */
export async function claimEmailToken(tokens: EmailTokenStore, token: string, purpose: EmailTokenPurpose, now = Date.now()): Promise<{ userId: string } | null> {
	const record = await tokens.findDoc({ tokenHash: hashToken(token), purpose });
	if (!record || !emailTokenUsable(record, now)) return null;
	// Only the request that still finds it unused wins: a token works once, even when raced.
	const claimed = await tokens.updateWhere({ _id: record.id, usedAt: { $exists: false } }, { usedAt: new Date(now).toISOString() });
	return claimed === 1 ? { userId: record.userId } : null;
}
