/**
 * Brute-force throttling of login, refresh, reset and similar flows. Failures are counted per
 * key in fixed windows (the shared key/value store, so every replica counts together); once a
 * key reaches its limit, attempts answer 429 with Retry-After until the window ends. Per-IP keys
 * stop a single source long before any per-account key is reached.
 *
 * A stranger must not be able to lock the owner out (OWASP's "device cookie" idea): the
 * per-account limit, which guessing from many addresses trips, holds back only clients this
 * account has never signed in from. A known client still has its own account-and-address limit.
 */
import type { KeyValueStore } from "../../shared/kv";
import { Errors } from "../../shared/errors";

export interface ThrottleRule {
	key: string;
	limit: number;
	windowMs: number;
	/** false: counted, but never refuses this caller. */
	enforced?: boolean;
}

const MINUTE = 60_000;

/** The rules of each flow; `who` values are normalised (lower-cased emails, client address). */
export const THROTTLES = {
	login: (email: string, ip: string, knownClient = false): ThrottleRule[] => [
		{ key: `login:acct-ip:${email}:${ip}`, limit: 5, windowMs: 15 * MINUTE },
		{ key: `login:ip:${ip}`, limit: 50, windowMs: 15 * MINUTE },
		// Counted for every failure, enforced only on clients the account does not know.
		{ key: `login:acct:${email}`, limit: 100, windowMs: 60 * MINUTE, ...(knownClient ? { enforced: false } : {}) }
	],
	refresh: (ip: string): ThrottleRule[] => [{ key: `refresh:ip:${ip}`, limit: 30, windowMs: MINUTE }],
	forgot: (email: string, ip: string): ThrottleRule[] => [
		{ key: `forgot:acct:${email}`, limit: 3, windowMs: 60 * MINUTE },
		{ key: `forgot:ip:${ip}`, limit: 20, windowMs: 15 * MINUTE }
	],
	tokenUse: (ip: string): ThrottleRule[] => [{ key: `token:ip:${ip}`, limit: 20, windowMs: 15 * MINUTE }],
	register: (ip: string): ThrottleRule[] => [{ key: `register:ip:${ip}`, limit: 10, windowMs: 60 * MINUTE }],
	changePassword: (userId: string): ThrottleRule[] => [{ key: `change-password:${userId}`, limit: 5, windowMs: 15 * MINUTE }]
};

/** 429 when any rule's key has reached its limit. */
export async function assertNotThrottled(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	for (const rule of rules) {
		if (rule.enforced === false) continue;
		const seen = await kv.peek(`throttle:${rule.key}`);
		if (seen && seen.count >= rule.limit) throw Errors.rateLimited(seen.ttlMs / 1000);
	}
}

/** Counts one attempt (a failure, or any use for flows limited by volume) against every rule. */
export async function countAttempt(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	await Promise.all(rules.map(rule => kv.incr(`throttle:${rule.key}`, rule.windowMs)));
}

/** After a success: the caller's own account+address failures are forgiven. */
export async function forgive(kv: KeyValueStore, rules: ThrottleRule[]): Promise<void> {
	await Promise.all(rules.filter(r => r.key.includes(":acct-ip:")).map(r => kv.del(`throttle:${r.key}`)));
}
