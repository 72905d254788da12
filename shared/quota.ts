/**
 * Plan limits, enforced atomically. Each service that grows a limited resource (devices:
 * displays, media: storage bytes, tenants: members) keeps a usage counter per tenant in a
 * collection of its own and grows it with `reserve` *before* it creates anything: the check and
 * the growth are one compare-and-set on one document, so parallel requests — on one process or
 * many replicas, on NeDB or MongoDB — can never together pass the limit. Within one process a
 * counter's changes also take turns, so only other replicas can make a compare-and-set lose. A
 * failed creation gives its reservation back with `release`, and so does a deletion.
 *
 * Counters can only drift upwards (a process that dies between its reservation and its insert
 * leaves one unit reserved): when a reservation is refused and the counter has been quiet for a
 * minute — no reservation can still be in flight — it is recounted from the real documents.
 *
 * The limits come from the default plan in config (DEFAULT_PLAN_*) until the billing service
 * supplies per-tenant plans through `billing.planLimits`.
 */
import type { Context } from "moleculer";
import { systemScope, tenantCollection, type TenantCollection, type TenantOwned } from "../mixins/db.mixin";
import type { ServiceBroker } from "moleculer";
import type { Config } from "./config";
import { call, publishEvent } from "./contracts";
import type { LogSink } from "./logging";
import { Errors, type AppError } from "./errors";

export type QuotaResource = "displays" | "storageBytes" | "members";

/** One counter: a tenant's usage of one resource, with the version its compare-and-set checks. */
export interface UsageDoc extends TenantOwned {
	resource: string;
	/** `<tenantId>:<resource>`, unique: two first uses cannot create two counters. */
	key: string;
	used: number;
	version: number;
}

/** The collection a service declares for its usage counters (`DbMixin({ <name>: USAGE_COLLECTION })`). */
export const USAGE_COLLECTION = tenantCollection<UsageDoc>({ uniqueIndexes: ["key"] });

/** Usage at this share of the limit warns the tenant (once per crossing: `onWarning`). */
export const QUOTA_WARNING_RATIO = 0.8;

/** True when growing from `before` to `after` crosses the warning share of `limit`. */
export function crossesWarning(before: number, after: number, limit: number): boolean {
	if (!(limit > 0)) return false;
	const line = limit * QUOTA_WARNING_RATIO;
	return before < line && after >= line;
}

/**
 * Per collection and counter (`<tenantId>:<resource>`), the end of the last change queued on this
 * process: shared by every UsageCounter object on the collection, since a service may make one
 * per call (a provisioning key's).
 */
const TURNS = new WeakMap<TenantCollection<UsageDoc>, Map<string, Promise<void>>>();

/** How long a counter must have been still before a refusal recounts it. */
const QUIET_MS = 60_000;
/** Compare-and-set rounds before a reservation gives up under contention (503, retry). */
const MAX_ROUNDS = 50;

export interface UsageCounterOptions {
	/** What the counter counts, for messages and the 402's data. */
	resource: string;
	/**
	 * The real usage of a tenant, counted from its documents (first use and recounts). It runs
	 * in the counter's turn, so it must not reserve or release on the same counter (it would wait
	 * for itself).
	 */
	measure(tenantId: string): Promise<number>;
	/** The refusal; default 402 QUOTA_EXCEEDED with `{resource, limit, current}`. */
	exceeded?(limit: number, current: number): AppError;
	/**
	 * A reservation crossed QUOTA_WARNING_RATIO of the limit (e.g. publishes `quota.warning`).
	 * Awaited: a failure here fails nothing already reserved, it is logged by the caller's hook.
	 */
	onWarning?(tenantId: string, used: number, limit: number, resource: string): Promise<void>;
	now?(): number;
}

export class UsageCounter {
	private readonly now: () => number;

	constructor(
		private readonly collection: TenantCollection<UsageDoc>,
		private readonly options: UsageCounterOptions
	) {
		this.now = options.now ?? Date.now;
	}

	/** Usage now (without reserving anything). */
	async usage(tenantId: string): Promise<number> {
		return (await this.load(tenantId)).used;
	}

	/** Grows usage by `amount` if it stays within `limit`, atomically; else the refusal. Answers the new usage. */
	async reserve(tenantId: string, amount: number, limit: number): Promise<number> {
		const before = await this.inTurn(tenantId, () => this.grow(tenantId, amount, limit));
		const used = before + amount;
		if (this.options.onWarning && crossesWarning(before, used, limit)) await this.options.onWarning(tenantId, used, limit, this.options.resource);
		return used;
	}

	/** Gives back `amount` (a failed creation, a deletion); never below zero. */
	async release(tenantId: string, amount: number): Promise<void> {
		if (amount <= 0) return;
		await this.inTurn(tenantId, async () => {
			for (let round = 0; round < MAX_ROUNDS; round++) {
				const counter = await this.load(tenantId);
				if (await this.swap(tenantId, counter, Math.max(0, counter.used - amount))) return;
				await contention(round);
			}
			// Losing a release only leaves the counter high, which the next refusal recounts.
		});
	}

	/** The compare-and-set loop of `reserve`: answers the usage it grew from. */
	private async grow(tenantId: string, amount: number, limit: number): Promise<number> {
		for (let round = 0; round < MAX_ROUNDS; round++) {
			const counter = await this.load(tenantId);
			if (counter.used + amount > limit) {
				if (await this.recount(tenantId, counter)) continue;
				throw this.refusal(limit, counter.used);
			}
			if (await this.swap(tenantId, counter, counter.used + amount)) return counter.used;
			await contention(round);
		}
		throw Errors.unavailable("Too many changes at once, retry");
	}

	/**
	 * Runs the changes of one tenant's counter one after another within this process. The
	 * compare-and-set alone is correct, but 32 screens registering at once on one process lost
	 * to each other round after round until some gave up with a 503 (the simulator's CI run);
	 * in turn, only other replicas can still make a round lose.
	 */
	private inTurn<R>(tenantId: string, change: () => Promise<R>): Promise<R> {
		let queue = TURNS.get(this.collection);
		if (!queue) TURNS.set(this.collection, (queue = new Map()));
		const key = `${tenantId}:${this.options.resource}`;
		const mine = (queue.get(key) ?? Promise.resolve()).then(change);
		const settled = mine.then(
			() => undefined,
			() => undefined
		);
		queue.set(key, settled);
		void settled.then(() => {
			if (queue.get(key) === settled) queue.delete(key);
		});
		return mine;
	}

	private refusal(limit: number, current: number): AppError {
		if (this.options.exceeded) return this.options.exceeded(limit, current);
		return Errors.quotaExceeded(`Your plan allows ${limit} ${this.options.resource}`, { resource: this.options.resource, limit, current });
	}

	private async load(tenantId: string): Promise<UsageDoc> {
		const scope = systemScope(tenantId);
		const found = await this.collection.findDoc(scope, { resource: this.options.resource });
		if (found) return found;
		const used = await this.options.measure(tenantId);
		try {
			return await this.collection.insertDoc(scope, { resource: this.options.resource, key: `${tenantId}:${this.options.resource}`, used, version: 0 });
		} catch (err) {
			// Another request created it first: use theirs.
			if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
			const winner = await this.collection.findDoc(scope, { resource: this.options.resource });
			if (!winner) throw err;
			return winner;
		}
	}

	/** One compare-and-set on the counter's version: true when this write won. */
	private async swap(tenantId: string, counter: UsageDoc, used: number): Promise<boolean> {
		const won = await this.collection.updateWhere(systemScope(tenantId), { _id: counter.id, version: counter.version }, { used, version: counter.version + 1 });
		return won === 1;
	}

	/** After a refusal: a counter quiet for QUIET_MS that is above the real usage is set to it. */
	private async recount(tenantId: string, counter: UsageDoc): Promise<boolean> {
		if (this.now() - Date.parse(counter.updatedAt) < QUIET_MS) return false;
		const real = await this.options.measure(tenantId);
		if (real >= counter.used) return false;
		return this.swap(tenantId, counter, real);
	}
}


/**
 * The `onWarning` every owning service gives its counter: the crossing becomes a `quota.warning`
 * platform event (alerts and webhooks). A failure to publish is logged; the reservation stands.
 */
export function publishQuotaWarning(broker: ServiceBroker, logger: LogSink): NonNullable<UsageCounterOptions["onWarning"]> {
	return (tenantId, used, limit, resource) =>
		publishEvent(broker, tenantId, "quota.warning", { resource, used, limit }).catch(err => logger.warn("Quota warning not published", err));
}

/** A short, growing, jittered pause between compare-and-set rounds that lost. */
function contention(round: number): Promise<void> {
	const ms = Math.random() * Math.min(50, 2 + round * 2);
	return new Promise(resolve => setTimeout(resolve, ms));
}

/**
 * The tenant's limit for `resource`: its plan's from the billing service when that runs, else
 * the default plan of the calling service's config.
 */
export async function planLimit(ctx: Context, tenantId: string, resource: QuotaResource, defaultPlan: Config["defaultPlan"]): Promise<number> {
	if (ctx.broker.registry.getActionEndpoints("billing.planLimits")?.hasAvailable()) {
		const limits = await call(ctx, "billing.planLimits", { tenantId });
		const limit = limits[resource];
		if (typeof limit === "number") return limit;
	}
	return defaultPlan[resource];
}
