/**
 * The one throttle: attempts counted per key in fixed windows on the shared key/value store (so
 * every replica counts together), for sign-in, refresh, reset and sign-up, wrong pairing codes,
 * pairing requests and invitations. Past a limit the answer is 429 with Retry-After until the
 * window ends. Per-address keys stop a single source long before any per-account key is reached.
 *
 * Counting and checking are one step: `takeAttempt` counts first (an atomic increment) and
 * refuses when the count it got is past the limit, so parallel attempts cannot all slip in under
 * it. Flows that limit failures only (a wrong password, a wrong code) give the attempt back once
 * it turned out fine (`giveBack`). Where guessing is hopeless anyway and many honest attempts
 * arrive at once from one address (256-bit provisioning keys, a site's screens booting together
 * behind one router), `refuseSpent` checks without counting and only a failure is counted: in
 * flight, successes never push each other over the limit.
 *
 * A stranger must not be able to lock the owner out (OWASP's "device cookie" idea): the
 * per-account sign-in limit, which guessing from many addresses trips, holds back only clients
 * the account has never signed in from. A known client still has its own account-and-address limit.
 */
import type { KeyValueStore } from "./kv";
import { Errors } from "./errors";

export interface ThrottleRule {
	key: string;
	limit: number;
	windowMs: number;
	/** false: counted, but never refuses this caller. */
	enforced?: boolean;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** The rules of each flow; `who` values are normalised (lower-cased emails, client address). */
export const THROTTLES = {
	login: (email: string, ip: string, knownClient = false): ThrottleRule[] => [
		{ key: `login:acct-ip:${email}:${ip}`, limit: 5, windowMs: 15 * MINUTE },
		{ key: `login:ip:${ip}`, limit: 50, windowMs: 15 * MINUTE },
		// Counted for every failure, enforced only on clients the account does not know.
		{ key: `login:acct:${email}`, limit: 100, windowMs: HOUR, enforced: !knownClient }
	],
	refresh: (ip: string): ThrottleRule[] => [{ key: `refresh:ip:${ip}`, limit: 30, windowMs: MINUTE }],
	forgot: (email: string, ip: string): ThrottleRule[] => [
		{ key: `forgot:acct:${email}`, limit: 3, windowMs: HOUR },
		{ key: `forgot:ip:${ip}`, limit: 20, windowMs: 15 * MINUTE }
	],
	tokenUse: (ip: string): ThrottleRule[] => [{ key: `token:ip:${ip}`, limit: 20, windowMs: 15 * MINUTE }],
	/**
	 * Wrong second-factor codes: per account across all its challenges (a password holder could
	 * open challenge after challenge), and per address. Six digits in a ±1 step window leave an
	 * attacker 10 guesses per 15 minutes at 3 in a million each.
	 */
	secondFactor: (userId: string, ip: string): ThrottleRule[] => [
		{ key: `2fa:user:${userId}`, limit: 10, windowMs: 15 * MINUTE },
		{ key: `2fa:ip:${ip}`, limit: 50, windowMs: 15 * MINUTE }
	],
	/** Organisations one person creates (each brings a free plan's displays). */
	createTenant: (userId: string): ThrottleRule[] => [{ key: `create-tenant:${userId}`, limit: 10, windowMs: 24 * HOUR }],
	/** Single sign-on starts and callbacks from one address (each start talks to an identity provider). */
	sso: (ip: string): ThrottleRule[] => [{ key: `sso:ip:${ip}`, limit: 60, windowMs: 10 * MINUTE }],
	register: (ip: string): ThrottleRule[] => [{ key: `register:ip:${ip}`, limit: 10, windowMs: HOUR }],
	changePassword: (userId: string): ThrottleRule[] => [{ key: `change-password:${userId}`, limit: 5, windowMs: 15 * MINUTE }],
	/** A screen asking for pairing codes. */
	pairingRequest: (ip: string, limit: number): ThrottleRule[] => [{ key: `pairing-request:ip:${ip}`, limit, windowMs: 10 * MINUTE }],
	/** Report emails sent on request (POST /analytics/reports/:id/send): they mail addresses a tenant typed. */
	reportSend: (tenantId: string, reportId: string): ThrottleRule[] => [
		{ key: `report-send:report:${reportId}`, limit: 3, windowMs: HOUR },
		{ key: `report-send:tenant:${tenantId}`, limit: 10, windowMs: 24 * HOUR }
	],
	/** Unknown, revoked or expired provisioning keys presented from one address (keys are 256-bit: this only spares the database). */
	provisioningKey: (ip: string): ThrottleRule[] => [{ key: `provisioning-key:ip:${ip}`, limit: 30, windowMs: 10 * MINUTE }],
	/**
	 * Wrong pairing codes: a hit pairs a stranger's screen into the guesser's tenant, and codes are
	 * 6 characters (25^6 ≈ 244 million). Per tenant, whichever user or API key types them, and
	 * across all tenants, so many tenants together cannot guess for long either (a valid code is
	 * refused too while a bound holds: guessing must stop before the lookup).
	 */
	pairingCode: (tenantId: string): ThrottleRule[] => [
		{ key: `pairing-code:tenant:${tenantId}`, limit: 20, windowMs: HOUR },
		{ key: "pairing-code:all", limit: 1000, windowMs: HOUR }
	],
	/** Invitations email an address the inviter chooses: per tenant, per address, and re-sending one. */
	invitation: (tenantId: string, email: string): ThrottleRule[] => [
		{ key: `invitation:tenant:${tenantId}`, limit: 50, windowMs: HOUR },
		{ key: `invitation:address:${email}`, limit: 5, windowMs: 24 * HOUR },
		{ key: `invitation:tenant-address:${tenantId}:${email}`, limit: 3, windowMs: 24 * HOUR }
	]
};

const COUNTER_PREFIX = "throttle:";
const counterKey = (rule: ThrottleRule) => `${COUNTER_PREFIX}${rule.key}`;

/** A throttle's counter: security state the embedded key/value store keeps across restarts (kv-journal.ts). */
export const isThrottleKey = (key: string): boolean => key.startsWith(COUNTER_PREFIX);

/**
 * Counts one attempt against every rule and answers 429 when an enforced rule is past its limit,
 * this attempt included. A refused attempt is given back at once: it did nothing, so it spends
 * no other rule's budget (a tenant hammering its own limit does not use up the global one).
 */
export async function takeAttempt(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	const counters = await Promise.all(rules.map(rule => kv.incr(counterKey(rule), rule.windowMs)));
	const over = counters.filter((counter, i) => rules[i].enforced !== false && counter.count > rules[i].limit);
	if (over.length === 0) return;
	await giveBack(kv, rules);
	throw Errors.rateLimited(Math.max(...over.map(counter => counter.ttlMs)) / 1000);
}

/**
 * Refuses (429, with the window's Retry-After) an address already past an enforced limit, without
 * counting this attempt; the caller counts only a failure, with `takeAttempt`. Parallel failures
 * can pass the limit by as many as are in flight at once: only for secrets nobody can guess.
 */
export async function refuseSpent(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	const counts = await Promise.all(rules.map(rule => kv.get(counterKey(rule))));
	if (!counts.some((count, i) => rules[i].enforced !== false && Number(count) >= rules[i].limit)) return;
	await takeAttempt(kv, rules); // past the limit: the 429 with the time left in the window
	await giveBack(kv, rules); // the window ended in between: this attempt is not a failure yet
}

/** An attempt that turned out not to be a failure is taken back from every rule's window. */
export async function giveBack(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	await Promise.all(rules.map(rule => kv.decr(counterKey(rule))));
}

/** After a successful sign-in: the attempt is given back and the caller's own account-and-address failures are forgotten. */
export async function forgive(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	const own = rules.filter(r => r.key.includes(":acct-ip:"));
	await Promise.all([giveBack(kv, rules.filter(r => !own.includes(r))), ...own.map(r => kv.del(counterKey(r)))]);
}
