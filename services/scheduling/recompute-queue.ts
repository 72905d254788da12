/**
 * Background recomputations, one after another per tenant.
 *
 * A change is acknowledged once it is stored and the tenant's manifest generation has moved; the
 * manifests it affects are recomputed afterwards. Recomputations of one tenant run in the order
 * of the changes, so an earlier, slower one never stores its manifests over a later one's;
 * different tenants do not wait for each other. A failed job is reported and does not hold up
 * the jobs queued after it.
 */
/** How a job ended, and how long after it was queued (the wait behind earlier jobs included). */
export interface Settled {
	key: string;
	ok: boolean;
	/** From enqueue() to the job's end, in milliseconds. */
	lagMs: number;
}

export class RecomputeQueue {
	private readonly tails = new Map<string, Promise<void>>();

	constructor(
		private readonly onError: (key: string, err: unknown) => void,
		/** Told of every job's end (metrics); never holds up the queue. */
		private readonly onSettled: (settled: Settled) => void = () => undefined,
		private readonly now: () => number = Date.now
	) {}

	/** Runs `job` once every job queued before it under `key` has settled. */
	enqueue(key: string, job: () => Promise<void>): void {
		// Stamped here, when the change is stored: the lag an operator feels includes the queue.
		const queuedAt = this.now();
		const settle = (ok: boolean) => {
			try {
				this.onSettled({ key, ok, lagMs: this.now() - queuedAt });
			} catch {
				// A metrics hiccup must not stop the tenant's queue.
			}
		};
		const previous = this.tails.get(key) ?? Promise.resolve();
		const next: Promise<void> = previous
			.then(job)
			.then(
				() => settle(true),
				err => {
					this.onError(key, err);
					settle(false);
				}
			)
			.finally(() => {
				if (this.tails.get(key) === next) this.tails.delete(key);
			});
		this.tails.set(key, next);
	}

	/** How many keys have jobs queued or running. */
	get pending(): number {
		return this.tails.size;
	}

	/** Resolves once every queued job has finished, including jobs queued meanwhile (shutdown and tests). */
	async idle(): Promise<void> {
		while (this.tails.size) await Promise.all([...this.tails.values()]);
	}
}
