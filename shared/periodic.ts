/**
 * A periodic job that runs on exactly one node: every tick, each node tries to take (or keep)
 * a lock in the shared key/value store; only the holder runs the job. If the leader dies its
 * lock expires after `3 × intervalMs` and another node takes over. With the memory store the
 * lock is local, so the job simply runs in the one process.
 */
import type { KeyValueStore } from "./kv";

export interface PeriodicJobOptions {
	name: string;
	intervalMs: number;
	kv: KeyValueStore;
	/** Unique per node (the broker's nodeID). */
	owner: string;
	run: () => Promise<void>;
	onError?: (err: unknown) => void;
}

export interface PeriodicJob {
	/** Runs one tick now (tests, and the first tick at start). Resolves true when this node led. */
	tick(): Promise<boolean>;
	stop(): Promise<void>;
}

export function startPeriodicJob(options: PeriodicJobOptions): PeriodicJob {
	const { name, intervalMs, kv, owner, run, onError } = options;
	const lockKey = `lock:job:${name}`;
	let running: Promise<boolean> | null = null;
	let stopped = false;

	async function lead(): Promise<boolean> {
		try {
			if (!(await kv.acquireLock(lockKey, owner, intervalMs * 3))) return false;
			await run();
			return true;
		} catch (err) {
			onError?.(err);
			return false;
		}
	}

	function tick(): Promise<boolean> {
		if (stopped) return Promise.resolve(false);
		// A slow run is never overlapped by the next tick.
		running ??= lead().finally(() => {
			running = null;
		});
		return running;
	}

	const timer = setInterval(() => void tick(), intervalMs);
	timer.unref();

	return {
		tick,
		async stop() {
			stopped = true;
			clearInterval(timer);
			await running;
			await kv.releaseLock(lockKey, owner).catch(() => undefined);
		}
	};
}
