/**
 * Leased work queues for the email outbox and webhook deliveries: at-least-once work that a
 * restart or a second replica neither loses nor doubles.
 *
 * An item is due when `nextAttemptAt` has come and nobody holds a live lease. A worker claims it
 * with one compare-and-set (`updateWhere` matching the lease it saw): of two workers that saw the
 * same item, exactly one wins. The winner works it and writes the outcome only while it still
 * holds the lease (`settle`). A worker that dies mid-attempt leaves a lease that runs out, and the
 * item is due again: the attempt is repeated (hence at-least-once, with stable ids for receivers
 * to deduplicate by).
 */
import type { GlobalCollection, Query, Stored, TenantCollection, TenantOwned } from "../../mixins/db.mixin";
import { ALL_TENANTS, systemScope } from "../../mixins/db.mixin";
import type { WorkItem } from "./documents";

/** How a worker reaches its items. */
export interface QueueStore<T extends Stored & WorkItem> {
	/** Due, unleased items at `now` (ISO), oldest due first, at most `limit`. */
	due(now: string, limit: number): Promise<T[]>;
	/** Takes the lease on `item` if nobody changed it since it was read: true when this worker won. */
	claim(item: T, owner: string, until: string): Promise<boolean>;
	/** Writes `changes` and frees the lease, if `owner` still holds it: false when the lease was lost. */
	settle(item: T, owner: string, changes: Partial<T>): Promise<boolean>;
}

function dueQuery(now: string): Query {
	return { nextAttemptAt: { $lte: now }, $or: [{ leaseUntil: null }, { leaseUntil: { $lt: now } }] };
}

const FREE = { leaseOwner: null, leaseUntil: null };

export function globalQueueStore<T extends Stored & WorkItem>(collection: GlobalCollection<T>): QueueStore<T> {
	return {
		due: (now, limit) => collection.findDocs(dueQuery(now), { sort: ["nextAttemptAt"], limit }),
		claim: async (item, owner, until) =>
			(await collection.updateWhere({ _id: item.id, attempts: item.attempts, leaseUntil: item.leaseUntil }, { leaseOwner: owner, leaseUntil: until } as Partial<T>)) === 1,
		settle: async (item, owner, changes) => (await collection.updateWhere({ _id: item.id, leaseOwner: owner }, { ...changes, ...FREE })) === 1
	};
}

export function tenantQueueStore<T extends TenantOwned & WorkItem>(collection: TenantCollection<T>): QueueStore<T> {
	return {
		due: (now, limit) => collection.findDocs(ALL_TENANTS, dueQuery(now), { sort: ["nextAttemptAt"], limit }),
		claim: async (item, owner, until) =>
			(await collection.updateWhere(systemScope(item.tenantId), { _id: item.id, attempts: item.attempts, leaseUntil: item.leaseUntil }, { leaseOwner: owner, leaseUntil: until } as Partial<T>)) === 1,
		settle: async (item, owner, changes) => (await collection.updateWhere(systemScope(item.tenantId), { _id: item.id, leaseOwner: owner }, { ...changes, ...FREE })) === 1
	};
}

/**
 * The pause before retry number `attempts` (1 = the first retry) from a schedule like
 * [5 s, 5 min, 30 min, …]; null when the schedule is used up (the item has failed for good).
 */
export function retryDelay(schedule: readonly number[], attempts: number): number | null {
	return attempts >= 1 && attempts <= schedule.length ? schedule[attempts - 1] : null;
}

export interface WorkerOptions<T extends Stored & WorkItem> {
	name: string;
	store: QueueStore<T>;
	/** Unique per process (the broker's node id and a random part). */
	owner: string;
	leaseMs: number;
	pollMs: number;
	/** Items worked at once by this worker. */
	concurrency?: number;
	/** Works one claimed item and settles it (through `store.settle`); a throw is logged and the lease runs out. */
	handle(item: T, owner: string): Promise<void>;
	onError(err: unknown): void;
	/** After every round, polled or poked (the outbox reads its depth then); a throw goes to onError. */
	afterRound?(): Promise<void>;
	now?: () => number;
}

/** Polls its store, claims due items and works them; `poke()` looks again at once (new work). */
export class Worker<T extends Stored & WorkItem> {
	private timer: NodeJS.Timeout | null = null;
	private running: Promise<number> | null = null;
	private again = false;
	/** Polling runs between start() and stop(); tick() works without it (tests, one-off rounds). */
	private polling = false;
	private stopping = false;
	private readonly now: () => number;

	constructor(private readonly options: WorkerOptions<T>) {
		this.now = options.now ?? Date.now;
	}

	start(): void {
		this.polling = true;
		this.stopping = false;
		this.schedule(0);
	}

	/** Stops polling and waits for the items in hand. */
	async stop(): Promise<void> {
		this.polling = false;
		this.stopping = true;
		if (this.timer) clearTimeout(this.timer);
		this.timer = null;
		await this.running?.catch(() => undefined);
	}

	/** New work was queued: look now rather than at the next poll. */
	poke(): void {
		if (!this.polling) return;
		if (this.running) this.again = true;
		else this.schedule(0);
	}

	/** One round: claims and works every due item it can (in batches); resolves how many it worked. */
	async tick(): Promise<number> {
		if (this.running) {
			this.again = true;
			return this.running;
		}
		this.running = this.round().finally(() => {
			this.running = null;
		});
		return this.running;
	}

	private schedule(ms: number): void {
		if (!this.polling) return;
		if (this.timer) clearTimeout(this.timer);
		this.timer = setTimeout(() => {
			this.timer = null;
			void this.tick().then(() => {
				const soon = this.again;
				this.again = false;
				this.schedule(soon ? 0 : this.options.pollMs);
			});
		}, ms);
		this.timer.unref?.();
	}

	private async round(): Promise<number> {
		const { store, owner, leaseMs, handle, onError } = this.options;
		const concurrency = this.options.concurrency ?? 8;
		let worked = 0;
		try {
			for (;;) {
				const now = this.now();
				const due = await store.due(new Date(now).toISOString(), concurrency * 2);
				if (due.length === 0) break;
				const until = new Date(now + leaseMs).toISOString();
				const mine: T[] = [];
				for (const item of due) if (await store.claim(item, owner, until)) mine.push(item);
				if (mine.length === 0) break;
				for (let i = 0; i < mine.length; i += concurrency) {
					await Promise.all(
						mine.slice(i, i + concurrency).map(item =>
							handle(item, owner).then(
								() => void worked++,
								err => onError(err)
							)
						)
					);
				}
				if (this.stopping) break;
			}
		} catch (err) {
			onError(err);
		}
		await this.options.afterRound?.().catch(onError);
		return worked;
	}
}
