/**
 * Sign-ins waiting for their last step: a password sign-in that needs a second factor (`totp`:
 * give a code; `enrol`: the tenant requires two-factor, set it up first), and a single sign-on
 * callback waiting for the CMS to trade its one-time code for tokens (`sso`).
 *
 * A challenge token is random (stored as its hash), works once, dies after its TTL, and allows
 * MAX_CHALLENGE_ATTEMPTS guesses, counted before the code is checked, so parallel guesses cannot
 * exceed it either.
 */
import type { GlobalCollection, NewDoc, Stored } from "../../mixins/db.mixin";
import { hashToken, randomToken } from "../../shared/secrets";

export const MAX_CHALLENGE_ATTEMPTS = 5;
export const CHALLENGE_PREFIX = "mch_";
export type ChallengeKind = "totp" | "enrol" | "sso";
/** How long each kind waits: a person typing a code, or a browser redirect. */
export const CHALLENGE_TTL_MS: Record<ChallengeKind, number> = { totp: 5 * 60_000, enrol: 15 * 60_000, sso: 2 * 60_000 };

export interface ChallengeDoc extends Stored {
	tokenHash: string;
	userId: string;
	/** The tenant the sign-in lands in (not `tenantId`: challenges are global documents). */
	landingTenantId: string;
	kind: ChallengeKind;
	attempts: number;
	expiresAt: string;
	usedAt?: string;
	/** sso: the identity provider that vouched, and the S256 challenge of the CMS that started the flow. */
	ssoIssuer?: string;
	exchangeChallenge?: string;
}

/** What opens a challenge. */
export type ChallengeFields = Pick<ChallengeDoc, "userId" | "landingTenantId" | "kind" | "ssoIssuer" | "exchangeChallenge">;

export type ChallengeStore = Pick<GlobalCollection<ChallengeDoc>, "findDoc" | "insertDoc" | "updateWhere" | "removeDocs">;

export function newChallenge(fields: ChallengeFields, nowMs: number): { token: string; doc: NewDoc<ChallengeDoc> } {
	const token = randomToken(CHALLENGE_PREFIX);
	return { token, doc: { ...fields, tokenHash: hashToken(token), attempts: 0, expiresAt: new Date(nowMs + CHALLENGE_TTL_MS[fields.kind]).toISOString() } };
}

export async function openChallenge(store: ChallengeStore, fields: ChallengeFields, nowMs = Date.now()): Promise<string> {
	const { token, doc } = newChallenge(fields, nowMs);
	await store.insertDoc(doc);
	return token;
}

const usable = (doc: ChallengeDoc, nowMs: number) => !doc.usedAt && doc.expiresAt > new Date(nowMs).toISOString() && doc.attempts < MAX_CHALLENGE_ATTEMPTS;

/** The live challenge of `token`, or null (unknown, used, expired or out of attempts). */
export async function findChallenge(store: ChallengeStore, token: string, nowMs = Date.now()): Promise<ChallengeDoc | null> {
	const doc = await store.findDoc({ tokenHash: hashToken(token) });
	return doc && usable(doc, nowMs) ? doc : null;
}

/**
 * Spends one attempt of the challenge before its code is checked; false when none is left. A
 * compare-and-set on the count, retried when a parallel attempt moved it first.
 */
export async function spendAttempt(store: ChallengeStore, challenge: ChallengeDoc, nowMs = Date.now()): Promise<boolean> {
	let current: ChallengeDoc | null = challenge;
	for (let tries = 0; current && usable(current, nowMs) && tries < MAX_CHALLENGE_ATTEMPTS * 4; tries += 1) {
		const spent = await store.updateWhere({ _id: current.id, attempts: current.attempts }, { attempts: current.attempts + 1 });
		if (spent === 1) return true;
		current = await store.findDoc({ _id: current.id });
	}
	return false;
}

/** Marks the challenge used, once: only one request completes a sign-in with it. */
export async function claimChallenge(store: ChallengeStore, challenge: ChallengeDoc, nowMs = Date.now()): Promise<boolean> {
	return (await store.updateWhere({ _id: challenge.id, usedAt: { $exists: false } }, { usedAt: new Date(nowMs).toISOString() })) === 1;
}

/** How long after expiry a challenge is kept before the sweep removes it (a late answer still reads "expired", not "unknown"). */
export const EXPIRED_KEPT_MS = 60 * 60_000;

/** Removes challenges that expired more than EXPIRED_KEPT_MS ago; answers how many. */
export function removeExpiredChallenges(store: ChallengeStore, nowMs = Date.now()): Promise<number> {
	return store.removeDocs({ expiresAt: { $lt: new Date(nowMs - EXPIRED_KEPT_MS).toISOString() } });
}
