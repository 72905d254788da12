/**
 * Batched, acknowledged inserts. Channel handlers hand rows to a `Batcher` and wait: the promise
 * settles only once ClickHouse has accepted the batch holding those rows, and only then does the
 * channel acknowledge the message — so a crash before the insert leaves the message to be
 * delivered again, never lost.
 *
 * A batch is written at `maxRows` rows or `maxDelayMs` after its first row, whichever comes
 * first. While the store is down the batch is retried with exponential backoff (forever, until
 * `stop`); new rows wait behind it. Memory stays bounded because nothing upstream hands over
 * more than the channels' `maxInFlight` unacknowledged messages, and because a message that
 * arrives again (a redelivery while the first copy waits) replaces its rows instead of adding
 * to them: rows are kept by key.
 *
 * For metrics it reports the rows it holds (`onBuffered`, at every change) and, per stored batch,
 * each row's lag: from when the platform accepted it (`acceptedAt`, a server-side time the row
 * carries) or, for rows without one, from when it was added here, to the store taking it.
 */

export interface BatcherOptions<Row> {
	name: string;
	write(rows: Row[]): Promise<void>;
	/** The identity of a row: rows with equal keys are one row (the last one wins). */
	keyOf(row: Row): string;
	maxRows: number;
	maxDelayMs: number;
	/** First pause after a failed write; doubles up to `maxBackoffMs`. */
	backoffMs?: number;
	maxBackoffMs?: number;
	onRetry?(err: unknown, attempt: number, delayMs: number): void;
	/**
	 * When the platform accepted a row (epoch ms, stamped by a server, not a device): its lag is
	 * measured from there, the wait on the durable channel included. Without it: from add().
	 */
	acceptedAt?(row: Row): number;
	/** The rows held (waiting or being written), whenever that changes. */
	onBuffered?(rows: number): void;
	/** A batch was stored: each row's lag in milliseconds (never negative). */
	onWritten?(lagsMs: readonly number[]): void;
	now?(): number;
	/** The clock's `setTimeout` (tests pass a controllable one). */
	setTimer?(fn: () => void, ms: number): { unref?(): void } | number;
	clearTimer?(timer: unknown): void;
}

interface Waiter {
	resolve(): void;
	reject(err: unknown): void;
}

interface Pending<Row> {
	rows: Map<string, Row>;
	/** When each row was added (only kept without `acceptedAt`). */
	addedAt: Map<string, number>;
	waiters: Waiter[];
}

/** `stop` gave up on a batch the store never took: its messages stay unacknowledged. */
export class BatcherStopped extends Error {
	constructor(name: string) {
		super(`${name}: stopped before the store accepted the batch`);
		this.name = "BatcherStopped";
	}
}

export class Batcher<Row> {
	private open: Pending<Row> = { rows: new Map(), addedAt: new Map(), waiters: [] };
	private timer: unknown = null;
	/** The batch being written (or retried); the next one fills meanwhile. */
	private writing: Promise<void> | null = null;
	private stopped = false;
	private wakeRetry: (() => void) | null = null;
	/** Rows accepted by the store since start (metrics, tests). */
	written = 0;
	failures = 0;

	constructor(private readonly options: BatcherOptions<Row>) {}

	/** Rows waiting or being written. */
	get buffered(): number {
		return this.open.rows.size + this.inFlight;
	}
	private inFlight = 0;

	/** Adds rows; resolves once the store has accepted them (rejects only when stopped first). */
	add(rows: readonly Row[]): Promise<void> {
		if (this.stopped) return Promise.reject(new BatcherStopped(this.options.name));
		if (rows.length === 0) return Promise.resolve();
		const { keyOf, acceptedAt, now = Date.now } = this.options;
		const at = acceptedAt ? 0 : now();
		for (const row of rows) {
			const key = keyOf(row);
			this.open.rows.set(key, row);
			if (!acceptedAt) this.open.addedAt.set(key, at);
		}
		this.reportBuffered();
		const done = new Promise<void>((resolve, reject) => this.open.waiters.push({ resolve, reject }));
		if (this.open.rows.size >= this.options.maxRows) this.flushSoon(0);
		else this.flushSoon(this.options.maxDelayMs);
		return done;
	}

	/** Writes what is waiting now and resolves when it is in (or the batcher stopped). */
	async flush(): Promise<void> {
		this.clearTimer();
		while (this.writing) await this.writing.catch(() => undefined);
		if (this.open.rows.size === 0) return;
		await this.startWrite();
	}

	/** Flushes, then refuses new rows. A batch the store still refuses after `graceMs` is given up (its messages are redelivered later). */
	async stop(graceMs = 5_000): Promise<void> {
		const flushed = this.flush().catch(() => undefined);
		const deadline = new Promise<void>(resolve => {
			const t = setTimeout(resolve, graceMs);
			t.unref?.();
		});
		await Promise.race([flushed, deadline]);
		this.stopped = true;
		this.clearTimer();
		this.wakeRetry?.();
		const err = new BatcherStopped(this.options.name);
		for (const w of this.open.waiters) w.reject(err);
		this.open = { rows: new Map(), addedAt: new Map(), waiters: [] };
		await this.writing?.catch(() => undefined);
		this.reportBuffered();
	}

	private reportBuffered(): void {
		this.options.onBuffered?.(this.buffered);
	}

	private flushSoon(delayMs: number): void {
		if (this.writing) return; // the running write starts the next batch when it ends
		if (delayMs > 0 && this.timer !== null) return;
		this.clearTimer();
		if (delayMs === 0) {
			void this.startWrite().catch(() => undefined);
			return;
		}
		const set = this.options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
		const timer = set(() => {
			this.timer = null;
			void this.startWrite().catch(() => undefined);
		}, delayMs);
		if (typeof timer === "object") timer.unref?.();
		this.timer = timer;
	}

	private clearTimer(): void {
		if (this.timer === null) return;
		(this.options.clearTimer ?? ((t: unknown) => clearTimeout(t as NodeJS.Timeout)))(this.timer);
		this.timer = null;
	}

	private startWrite(): Promise<void> {
		if (this.writing) return this.writing;
		const batch = this.open;
		if (batch.rows.size === 0) return Promise.resolve();
		this.open = { rows: new Map(), addedAt: new Map(), waiters: [] };
		this.clearTimer();
		this.inFlight = batch.rows.size;
		this.writing = this.writeWithRetry(batch).finally(() => {
			this.writing = null;
			this.inFlight = 0;
			this.reportBuffered();
			// Rows that arrived meanwhile: a full batch goes now, a partial one after its delay.
			if (this.open.rows.size && !this.stopped) this.flushSoon(this.open.rows.size >= this.options.maxRows ? 0 : this.options.maxDelayMs);
		});
		return this.writing;
	}

	private reportLags(batch: Pending<Row>): void {
		const { onWritten, acceptedAt, now = Date.now } = this.options;
		if (!onWritten) return;
		// Called right after a successful write: a throw here must not pass for a failed write (and a retry).
		try {
			const at = now();
			const lags: number[] = [];
			for (const [key, row] of batch.rows) {
				const from = acceptedAt ? acceptedAt(row) : (batch.addedAt.get(key) ?? at);
				// Another node's clock may be a little ahead.
				lags.push(Math.max(0, at - from));
			}
			onWritten(lags);
		} catch {
			// Metrics only.
		}
	}

	private async writeWithRetry(batch: Pending<Row>): Promise<void> {
		const rows = [...batch.rows.values()];
		const { backoffMs = 100, maxBackoffMs = 5_000 } = this.options;
		for (let attempt = 1; ; attempt++) {
			try {
				await this.options.write(rows);
				this.written += rows.length;
				this.reportLags(batch);
				for (const w of batch.waiters) w.resolve();
				return;
			} catch (err) {
				this.failures++;
				if (this.stopped) {
					for (const w of batch.waiters) w.reject(new BatcherStopped(this.options.name));
					return;
				}
				const delay = Math.min(maxBackoffMs, backoffMs * 2 ** Math.min(attempt - 1, 20));
				this.options.onRetry?.(err, attempt, delay);
				await new Promise<void>(resolve => {
					const t = setTimeout(resolve, delay);
					t.unref?.();
					this.wakeRetry = () => {
						clearTimeout(t);
						resolve();
					};
				});
				this.wakeRetry = null;
				if (this.stopped) {
					for (const w of batch.waiters) w.reject(new BatcherStopped(this.options.name));
					return;
				}
			}
		}
	}
}
