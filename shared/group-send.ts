/**
 * Group commit for a durable channel. Each caller hands over one message and waits until it is
 * published, exactly as with a publish of its own; but while one publish is in flight, the
 * messages that arrive meanwhile wait and go out together in the next one (at most `maxBatch` a
 * message). A publish starts at the end of the current turn of the event loop (setImmediate),
 * so the messages of requests handled in the same turn share it even when publishing is quick
 * (the in-process channel of the embedded mode); when it is quiet a message goes out alone, a
 * fraction of a millisecond later. Under load, one publish carries many. Nothing is acknowledged
 * to a caller before the channel has its message, so what is durable stays durable — it only
 * costs one publish per batch instead of one per message (the heartbeat's metrics: one per
 * heartbeat was a tenth of the hot path).
 */
interface Queued<T> {
	item: T;
	resolve(): void;
	reject(err: unknown): void;
}

export class GroupSender<T> {
	private queue: Array<Queued<T>> = [];
	private sending = false;

	constructor(
		private readonly publish: (items: T[]) => Promise<void>,
		private readonly maxBatch: number
	) {}

	/** Resolves once `item` is published (in some batch); rejects with that batch's publish error. */
	send(item: T): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			this.queue.push({ item, resolve, reject });
			if (!this.sending) {
				this.sending = true;
				setImmediate(() => void this.drain());
			}
		});
	}

	/** Messages waiting for a publish (not counting the one in flight). */
	get waiting(): number {
		return this.queue.length;
	}

	private async drain(): Promise<void> {
		try {
			while (this.queue.length) {
				const batch = this.queue.splice(0, this.maxBatch);
				try {
					await this.publish(batch.map(entry => entry.item));
					for (const entry of batch) entry.resolve();
				} catch (err) {
					for (const entry of batch) entry.reject(err);
				}
			}
		} finally {
			this.sending = false;
		}
	}
}
