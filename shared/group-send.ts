/**
 * Group commit, and group call. Each caller hands over one item and waits until it is done,
 * exactly as with a call of its own; but while one batch is in flight, the items that arrive
 * meanwhile wait and go out together in the next one (at most `maxBatch` an item). A batch
 * starts at the end of the current turn of the event loop (setImmediate), so the items of
 * requests handled in the same turn share it even when the batch is quick (the in-process
 * channel of the embedded mode); when it is quiet an item goes out alone, a fraction of a
 * millisecond later. Under load, one batch carries many.
 *
 * - A durable channel (R = void): nothing is acknowledged to a caller before the channel has its
 *   message, so what is durable stays durable; it costs one publish per batch instead of one per
 *   message (the heartbeat's metrics: one per heartbeat was a tenth of the hot path).
 * - A group call (the gateway's heartbeats, see services/api/device-lane.ts): `send` answers the
 *   caller's own item of the batch's answers, which come in the items' order.
 *
 * A batch that fails as a whole fails every caller in it.
 */
interface Queued<T, R> {
	item: T;
	resolve(answer: R): void;
	reject(err: unknown): void;
}

export class GroupSender<T, R = void> {
	private queue: Array<Queued<T, R>> = [];
	private inFlight = 0;
	private scheduled = false;

	private readonly concurrency: number;
	private readonly maxWaiting: number;
	private readonly overflow: () => Error;

	constructor(
		/** Sends a batch; answers one answer per item, in order (nothing, for R = void). */
		private readonly publish: (items: T[]) => Promise<R[] | void>,
		private readonly maxBatch: number,
		options: {
			/**
			 * Batches in flight at once (1). One keeps a channel's messages in order; a group call
			 * to a service with replicas wants several, or only one replica would work at a time.
			 */
			concurrency?: number;
			/** Items that may wait for a batch (unbounded); past them `send` fails at once with `overflow()`. */
			maxWaiting?: number;
			overflow?: () => Error;
		} = {}
	) {
		this.concurrency = options.concurrency ?? 1;
		this.maxWaiting = options.maxWaiting ?? Infinity;
		this.overflow = options.overflow ?? (() => new Error("Too many items waiting for a batch"));
	}

	/** Resolves with `item`'s answer once its batch is done; rejects with that batch's error. */
	send(item: T): Promise<R> {
		if (this.queue.length >= this.maxWaiting) return Promise.reject(this.overflow());
		return new Promise<R>((resolve, reject) => {
			this.queue.push({ item, resolve, reject });
			this.schedule();
		});
	}

	/** Items waiting for a batch (not counting those in flight). */
	get waiting(): number {
		return this.queue.length;
	}

	/** Starts batches at the end of this turn of the event loop (so its items share one). */
	private schedule(): void {
		if (this.scheduled || this.inFlight >= this.concurrency || !this.queue.length) return;
		this.scheduled = true;
		setImmediate(() => {
			this.scheduled = false;
			this.start();
		});
	}

	/** Starts batches of what waits while fewer than `concurrency` are in flight; a finished batch makes room at once. */
	private start(): void {
		while (this.inFlight < this.concurrency && this.queue.length) {
			this.inFlight++;
			void this.run(this.queue.splice(0, this.maxBatch)).finally(() => {
				this.inFlight--;
				this.start();
			});
		}
	}

	private async run(batch: Array<Queued<T, R>>): Promise<void> {
		try {
			const answers = await this.publish(batch.map(entry => entry.item));
			if (answers && answers.length !== batch.length) throw new Error(`A group call answered ${answers.length} of ${batch.length} items`);
			batch.forEach((entry, i) => entry.resolve(answers ? answers[i] : (undefined as R)));
		} catch (err) {
			for (const entry of batch) entry.reject(err);
		}
	}
}
