/**
 * Background recomputations, one after another per tenant.
 *
 * A change is acknowledged once it is stored and the tenant's manifest generation has moved; the
 * manifests it affects are recomputed afterwards. Recomputations of one tenant run in the order
 * of the changes, so an earlier, slower one never stores its manifests over a later one's;
 * different tenants do not wait for each other. A failed job is reported and does not hold up
 * the jobs queued after it.
 */
export class RecomputeQueue {
	private readonly tails = new Map<string, Promise<void>>();

	constructor(private readonly onError: (key: string, err: unknown) => void) {}

	/** Runs `job` once every job queued before it under `key` has settled. */
	enqueue(key: string, job: () => Promise<void>): void {
		const previous = this.tails.get(key) ?? Promise.resolve();
		const next: Promise<void> = previous
			.then(job)
			.catch(err => this.onError(key, err))
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
