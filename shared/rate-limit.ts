/**
 * Fixed-window rate limiting on the shared key/value store, so every gateway replica counts
 * against the same budget when Redis is configured.
 */
import type { KeyValueStore } from "./kv";

export interface RateLimitResult {
	allowed: boolean;
	limit: number;
	remaining: number;
	/** Seconds until the window resets (for Retry-After). */
	resetSec: number;
}

export async function hitRateLimit(
	kv: KeyValueStore,
	key: string,
	limit: number,
	windowMs: number
): Promise<RateLimitResult> {
	const { count, ttlMs } = await kv.incr(`rl:${key}`, windowMs);
	return {
		allowed: count <= limit,
		limit,
		remaining: Math.max(0, limit - count),
		resetSec: Math.max(1, Math.ceil(ttlMs / 1000))
	};
}
