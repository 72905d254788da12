/**
 * Fixed-window rate limiting on the shared key/value store, so every gateway replica counts
 * against the same budget when Redis is configured.
 */
import type { KeyValueStore, KvGuard } from "./kv";

export interface RateLimitResult {
	allowed: boolean;
	limit: number;
	remaining: number;
	/** Seconds until the window resets (for Retry-After). */
	resetSec: number;
}

/**
 * Counts one request against `key`'s window. With `onlyIf`, counted only while that key holds
 * its value (kv.incrIf), in the same round trip; null when it did not and nothing was counted.
 */
export async function hitRateLimit(kv: KeyValueStore, key: string, limit: number, windowMs: number): Promise<RateLimitResult>;
export async function hitRateLimit(kv: KeyValueStore, key: string, limit: number, windowMs: number, onlyIf: KvGuard): Promise<RateLimitResult | null>;
export async function hitRateLimit(kv: KeyValueStore, key: string, limit: number, windowMs: number, onlyIf?: KvGuard): Promise<RateLimitResult | null> {
	const counter = onlyIf ? await kv.incrIf(`rl:${key}`, windowMs, onlyIf) : await kv.incr(`rl:${key}`, windowMs);
	if (!counter) return null;
	return {
		allowed: counter.count <= limit,
		limit,
		remaining: Math.max(0, limit - counter.count),
		resetSec: Math.max(1, Math.ceil(counter.ttlMs / 1000))
	};
}
