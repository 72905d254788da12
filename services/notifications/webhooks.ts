/**
 * Webhook endpoints, the events they subscribe to, and deliveries: Standard Webhooks signatures,
 * a leased delivery worker with retries on the configured schedule, a delivery log, manual
 * retry, test events and replay, and the SSRF guard at creation and at delivery.
 *
 * - An event is stored once per (tenant, event id), then one delivery per enabled endpoint that
 *   subscribes to it, keyed `<endpointId>:<eventId>:<round>`: a channel message delivered twice
 *   (or a crash between the two steps and a redelivery) creates each delivery once.
 * - A delivery's body is serialized when it is created and stored, so every attempt sends and
 *   signs the same bytes under the same `webhook-id`; only the timestamp (and so the signature)
 *   is per attempt.
 * - Deliveries are work items of queue.ts: claimed by compare-and-set, settled only while the
 *   lease is held. A worker that dies mid-request leaves a lease that runs out and the attempt is
 *   repeated with the same `webhook-id` (at-least-once; receivers deduplicate by it).
 * - An endpoint is disabled by a 410 Gone, or when every delivery failed for
 *   `webhookDisableAfterMs`; its admins are told (`onDisabled`) once, by whichever worker
 *   switched it off. A disabled endpoint gets no new deliveries and its pending ones end failed.
 */
import type { LogSink } from "../../shared/logging";
import { systemScope, type Changes, type Scope, type TenantCollection } from "../../mixins/db.mixin";
import type { Config } from "../../shared/config";
import {
	WEBHOOK_EVENT_TYPES,
	type Accepted,
	type DeliveryPage,
	type DeliveryView,
	type NotificationsExport,
	type PlatformEvent,
	type ReplayAccepted,
	type WebhookEndpointPage,
	type WebhookEndpointView,
	type WebhookEndpointWithSecret,
	type WebhookEventType,
	type WebhookFields
} from "../../shared/contracts";
import { AppError, Errors } from "../../shared/errors";
import { newId } from "../../shared/ids";
import type { WebhookOutcome } from "../../shared/ops-metrics";
import { attempt, type AttemptOutcome } from "./deliver";
import type { DeliveryDoc, EndpointDoc, EventDoc } from "./documents";
import { retryDelay, tenantQueueStore, Worker, type QueueStore } from "./queue";
import { messageIdOf, newSecret, payloadOf, signedHeaders } from "./signing";
import { DestinationError, parseDestination, resolveDestination, systemResolve, type Resolve } from "../../shared/ssrf";

/** Endpoints per tenant: enough for every integration a tenant runs, few enough that one event stays cheap to fan out. */
export const MAX_ENDPOINTS = 20;
/** How long the secret before a rotation keeps signing (as the second signature). */
export const PREVIOUS_SECRET_MS = 24 * 3_600_000;
/** Items one worker sends at once. Its lease must cover two rounds of requests (see the constructor). */
const CONCURRENCY = 8;
/** Events replayed per round of queries. */
const REPLAY_BATCH = 100;
/** Rounds of read-and-swap before a rotation gives up under contention. */
const MAX_ROTATION_ROUNDS = 10;

export interface WebhookDeps {
	endpoints: TenantCollection<EndpointDoc>;
	events: TenantCollection<EventDoc>;
	deliveries: TenantCollection<DeliveryDoc>;
	config: Config;
	/** This worker's lease owner id. */
	owner: string;
	logger: LogSink;
	/** An endpoint was disabled (410, or failing for too long): its admins are told. */
	onDisabled(tenantId: string, endpoint: EndpointDoc, reason: string): Promise<void>;
	/**
	 * Each attempt this worker made and recorded (metrics): succeeded (2xx), retrying (failed,
	 * tried again later) or failed (the last attempt, or a 410). An attempt whose outcome another
	 * worker records (a lost lease) or that a shutdown cut short is not one.
	 */
	onAttempt?(outcome: WebhookOutcome): void;
	now?: () => number;
	/** Resolves destination host names (the operating system's resolver by default; tests inject one). */
	resolve?: Resolve;
}

function isConflict(err: unknown): boolean {
	return err instanceof AppError && err.type === "CONFLICT";
}

function endpointView(doc: EndpointDoc): WebhookEndpointView {
	return {
		id: doc.id,
		url: doc.url,
		events: doc.events,
		description: doc.description,
		enabled: doc.enabled,
		disabledReason: doc.disabledReason,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

function deliveryView(doc: DeliveryDoc): DeliveryView {
	return {
		id: doc.id,
		endpointId: doc.endpointId,
		eventId: doc.eventId,
		event: doc.event,
		status: doc.status,
		attempts: doc.attempts,
		lastStatusCode: doc.lastStatusCode,
		lastResponseBody: doc.lastResponseBody,
		lastError: doc.lastError,
		nextAttemptAt: doc.nextAttemptAt,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

/** "5 days", "1 hour", "90 minutes". */
function durationText(ms: number): string {
	const [amount, unit] = ms % 86_400_000 === 0 ? [ms / 86_400_000, "day"] : ms % 3_600_000 === 0 ? [ms / 3_600_000, "hour"] : [Math.round(ms / 60_000), "minute"];
	return `${amount} ${unit}${amount === 1 ? "" : "s"}`;
}

const INSTANT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/**
 * An ISO-8601 instant (the form ISO_INSTANT_RULE lets through) as an ISO string, or 422 naming
 * `field` when its date or time does not exist: the pattern takes month 13, 30 February or
 * 99:99, which Date either refuses (a RangeError, so a 500) or silently rolls into the next month.
 */
export function instantOf(text: string, field = "since"): string {
	const parts = INSTANT.exec(text);
	const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = (parts?.slice(1) ?? []).map(p => Number(p ?? 0));
	// setUTCFullYear, not Date.UTC: the latter reads the years 0–99 as 1900–1999.
	const daysInMonth = new Date(new Date(0).setUTCFullYear(year, month, 0)).getUTCDate();
	const exists = parts !== null && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59 && offsetHours <= 23 && offsetMinutes <= 59;
	const at = exists ? Date.parse(text) : NaN;
	if (Number.isNaN(at)) throw Errors.validation([{ field, message: `The '${field}' field must be an existing date and time.`, type: "date" }]);
	return new Date(at).toISOString();
}

/** The round of a delivery key `<endpointId>:<eventId>:<round>`. */
function roundOf(key: string): number {
	return Number(key.slice(key.lastIndexOf(":") + 1)) || 0;
}

export class Webhooks {
	private readonly worker: Worker<DeliveryDoc>;
	private readonly store: QueueStore<DeliveryDoc>;
	private readonly now: () => number;
	private readonly resolve: Resolve;
	/** Aborts the requests in flight when the service stops. */
	private stopping = new AbortController();

	constructor(readonly deps: WebhookDeps) {
		this.now = deps.now ?? Date.now;
		this.resolve = deps.resolve ?? systemResolve;
		const { leaseMs, pollMs, webhookTimeoutMs } = deps.config.notifications;
		// A worker claims up to 2 × CONCURRENCY deliveries under one lease and sends them in two
		// rounds; a lease shorter than two timeouts could run out mid-request and let another
		// worker send the same attempt again.
		if (leaseMs <= 2 * webhookTimeoutMs) {
			deps.logger.warn(`NOTIFICATIONS_LEASE_MS (${leaseMs}) should exceed twice WEBHOOK_TIMEOUT_MS (${webhookTimeoutMs}): a slow receiver may get an attempt twice`);
		}
		this.store = tenantQueueStore(deps.deliveries);
		this.worker = new Worker<DeliveryDoc>({
			name: "webhooks",
			store: this.store,
			owner: deps.owner,
			leaseMs,
			pollMs,
			concurrency: CONCURRENCY,
			handle: (item, owner) => this.attemptDelivery(item, owner),
			onError: err => deps.logger.error("Webhook delivery failed unexpectedly", err),
			now: this.now
		});
	}

	// ---- endpoints ------------------------------------------------------------------------------

	/** 422 when the URL is not http(s) or (unless private destinations are allowed) resolves to a private address. */
	async create(scope: Scope, fields: WebhookFields): Promise<WebhookEndpointWithSecret> {
		await this.checkUrl(fields.url);
		if ((await this.deps.endpoints.countDocs(scope)) >= MAX_ENDPOINTS) throw this.tooMany();
		const secret = newSecret();
		const doc = await this.deps.endpoints.insertDoc(scope, {
			url: fields.url,
			events: fields.events,
			description: fields.description || null,
			enabled: true,
			disabledReason: null,
			secret,
			previousSecret: null,
			previousSecretUntil: null,
			failingSince: null
		});
		// Two creations racing past the count: the ones beyond the limit (by creation order: ids
		// sort by time) take themselves back, so exactly MAX_ENDPOINTS remain.
		if ((await this.deps.endpoints.countDocs(scope, { _id: { $lte: doc.id } })) > MAX_ENDPOINTS) {
			await this.deps.endpoints.removeDocs(scope, { _id: doc.id });
			throw this.tooMany();
		}
		return { ...endpointView(doc), secret };
	}

	async list(scope: Scope, page: number, pageSize: number): Promise<WebhookEndpointPage> {
		const found = await this.deps.endpoints.pageDocs(scope, {}, page, pageSize);
		return { ...found, rows: found.rows.map(endpointView) };
	}

	async get(scope: Scope, id: string): Promise<WebhookEndpointView> {
		return endpointView(await this.endpoint(scope, id));
	}

	async update(scope: Scope, id: string, changes: Partial<WebhookFields> & { enabled?: boolean }): Promise<WebhookEndpointView> {
		const current = await this.endpoint(scope, id);
		const set: Changes<EndpointDoc> = {};
		if (changes.url !== undefined) {
			await this.checkUrl(changes.url);
			set.url = changes.url;
		}
		if (changes.events !== undefined) set.events = changes.events;
		if (changes.description !== undefined) set.description = changes.description || null;
		const disabling = changes.enabled === false && current.enabled;
		if (changes.enabled === true && !current.enabled) Object.assign(set, { enabled: true, disabledReason: null, failingSince: null });
		if (disabling) Object.assign(set, { enabled: false, disabledReason: "Disabled by an admin" });
		const updated = Object.keys(set).length > 0 ? await this.deps.endpoints.updateDoc(scope, id, set, "Webhook endpoint") : current;
		if (disabling) await this.failPending(scope, id);
		return endpointView(updated);
	}

	/** The endpoint and its deliveries. */
	async remove(scope: Scope, id: string): Promise<void> {
		await this.deps.endpoints.removeDoc(scope, id, "Webhook endpoint");
		await this.deps.deliveries.removeDocs(scope, { endpointId: id });
	}

	/**
	 * A new secret; the old one keeps signing (second signature) for 24 h. A compare-and-set on
	 * the secret it replaces: of two rotations at once, the second replaces the first one's secret
	 * (which keeps signing) rather than the one both read, so no answered secret is lost unseen.
	 */
	async rotateSecret(scope: Scope, id: string): Promise<WebhookEndpointWithSecret> {
		for (let round = 0; round < MAX_ROTATION_ROUNDS; round++) {
			const current = await this.endpoint(scope, id);
			const secret = newSecret();
			const rotated = await this.deps.endpoints.updateWhere(
				scope,
				{ _id: id, secret: current.secret },
				{ secret, previousSecret: current.secret, previousSecretUntil: new Date(this.now() + PREVIOUS_SECRET_MS).toISOString() }
			);
			if (rotated === 1) return { ...endpointView(await this.endpoint(scope, id)), secret };
		}
		throw Errors.unavailable("The secret is being rotated elsewhere; try again");
	}

	// ---- the delivery log and what an admin can do with it -------------------------------------

	async deliveries(scope: Scope, endpointId: string, page: number, pageSize: number, status?: DeliveryDoc["status"]): Promise<DeliveryPage> {
		await this.endpoint(scope, endpointId);
		const found = await this.deps.deliveries.pageDocs(scope, status ? { endpointId, status } : { endpointId }, page, pageSize);
		return { ...found, rows: found.rows.map(deliveryView) };
	}

	/**
	 * Queues a ping of the endpoint now: an event of its first subscribed type with data
	 * `{test: true}`. Not stored as an event, so a replay never sends it to anyone again.
	 */
	async test(scope: Scope, id: string): Promise<Accepted> {
		const endpoint = await this.enabledEndpoint(scope, id);
		const eventId = `evt_${newId()}`;
		const payload = payloadOf({ type: endpoint.events[0], timestamp: new Date(this.now()).toISOString(), data: { test: true } });
		const delivery = await this.enqueue(scope, endpoint.id, eventId, endpoint.events[0], payload, 0);
		this.worker.poke();
		// A fresh event id cannot collide; enqueue answers null only for a duplicate key.
		if (!delivery) throw new Error("test delivery not created");
		return { id: delivery.id };
	}

	/** Queues a finished (or failed) delivery again at once; its attempts so far are kept. */
	async retry(scope: Scope, deliveryId: string): Promise<Accepted> {
		const delivery = await this.deps.deliveries.getDoc(scope, deliveryId, "Delivery");
		await this.enabledEndpoint(scope, delivery.endpointId);
		await this.deps.deliveries.updateDoc(scope, delivery.id, { status: "pending", nextAttemptAt: new Date(this.now()).toISOString() }, "Delivery");
		this.worker.poke();
		return { id: delivery.id };
	}

	/** Queues again every stored event since `since` the endpoint subscribes to: a new round of each. */
	async replay(scope: Scope, id: string, since: string): Promise<ReplayAccepted> {
		const from = instantOf(since);
		const endpoint = await this.enabledEndpoint(scope, id);
		let queued = 0;
		for (let offset = 0; ; offset += REPLAY_BATCH) {
			const events = await this.deps.events.findDocs(scope, { type: { $in: endpoint.events }, timestamp: { $gte: from } }, { sort: ["timestamp", "_id"], limit: REPLAY_BATCH, offset });
			if (events.length === 0) break;
			const earlier = await this.deps.deliveries.findDocs(scope, { endpointId: endpoint.id, eventId: { $in: events.map(e => e.eventId) } });
			const lastRound = new Map<string, number>();
			for (const d of earlier) lastRound.set(d.eventId, Math.max(lastRound.get(d.eventId) ?? -1, roundOf(d.key)));
			for (const event of events) {
				const round = (lastRound.get(event.eventId) ?? -1) + 1;
				// null: a replay running at the same time queued this round already.
				if (await this.enqueue(scope, endpoint.id, event.eventId, event.type, payloadOf(event), round)) queued += 1;
			}
			if (events.length < REPLAY_BATCH) break;
		}
		if (queued > 0) this.worker.poke();
		return { deliveries: queued };
	}

	// ---- events ---------------------------------------------------------------------------------

	/** Stores an event (once per id) and a delivery for every enabled endpoint that subscribes to it. */
	async record(event: PlatformEvent): Promise<void> {
		if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(event.type)) {
			this.deps.logger.warn(`Event ${event.id} of unknown type ${String(event.type)} is not delivered`);
			return;
		}
		const scope = systemScope(event.tenantId);
		try {
			await this.deps.events.insertDoc(scope, { key: `${event.tenantId}:${event.id}`, eventId: event.id, type: event.type, timestamp: event.timestamp, data: event.data });
		} catch (err) {
			// Seen before. Its deliveries are still made below (each once): the first time may have
			// stopped between storing the event and queueing them.
			if (!isConflict(err)) throw err;
		}
		const endpoints = await this.deps.endpoints.findDocs(scope, { enabled: true, events: event.type });
		const payload = payloadOf(event);
		let queued = 0;
		for (const endpoint of endpoints) if (await this.enqueue(scope, endpoint.id, event.id, event.type, payload, 0)) queued += 1;
		if (queued > 0) this.worker.poke();
	}

	// ---- the worker -----------------------------------------------------------------------------

	start(): void {
		this.stopping = new AbortController();
		this.worker.start();
	}

	/** Stops polling; requests in flight are cut short and handed back (due at once, attempt not counted). */
	async stop(): Promise<void> {
		this.stopping.abort();
		await this.worker.stop();
	}

	/** Works every due delivery now; resolves how many (tests). */
	async tick(): Promise<number> {
		// A round ends early when another worker won every claim of a batch: repeat until one finds nothing.
		let total = 0;
		for (let worked = await this.worker.tick(); worked > 0; worked = await this.worker.tick()) total += worked;
		return total;
	}

	/** One attempt of a claimed delivery, settled while this worker holds its lease. */
	private async attemptDelivery(item: DeliveryDoc, owner: string): Promise<void> {
		const scope = systemScope(item.tenantId);
		const settle = (changes: Partial<DeliveryDoc>) => this.store.settle(item, owner, changes);
		const endpoint = await this.deps.endpoints.findDoc(scope, { _id: item.endpointId });
		if (!endpoint) {
			// Queued while the endpoint was being removed (a test, replay or event racing the
			// DELETE, whose sweep of the log came first): it goes the way of the endpoint's log.
			await this.deps.deliveries.removeDocs(scope, { _id: item.id, leaseOwner: owner });
			return;
		}
		if (!endpoint.enabled) {
			await settle({ status: "failed", nextAttemptAt: null, lastError: "endpoint disabled" });
			return;
		}

		const startedAt = this.now();
		const timestamp = Math.floor(startedAt / 1000);
		const secrets = [endpoint.secret];
		if (endpoint.previousSecret && endpoint.previousSecretUntil && Date.parse(endpoint.previousSecretUntil) > startedAt) secrets.push(endpoint.previousSecret);
		const { notifications } = this.deps.config;
		const outcome = await attempt({
			url: endpoint.url,
			body: item.payload,
			headers: signedHeaders(secrets, messageIdOf(item.id), timestamp, item.payload),
			timeoutMs: notifications.webhookTimeoutMs,
			allowPrivate: notifications.webhookAllowPrivate,
			resolve: this.resolve,
			signal: this.stopping.signal,
			now: startedAt
		});

		const now = this.now();
		const nowIso = new Date(now).toISOString();
		if (this.stopping.signal.aborted && outcome.kind === "error") {
			// Cut short by a shutdown: not the receiver's fault. Free it for the next worker now
			// rather than when the lease runs out.
			await settle({ nextAttemptAt: nowIso });
			return;
		}
		const attempts = item.attempts + 1;
		const answered = outcome.kind === "response" ? { lastStatusCode: outcome.status, lastResponseBody: outcome.body } : { lastStatusCode: null, lastResponseBody: null };

		if (outcome.kind === "response" && outcome.status >= 200 && outcome.status < 300) {
			// Not settled: another worker took the delivery over (this one outlived its lease) and decides.
			if (!(await settle({ status: "succeeded", attempts, ...answered, lastError: null, nextAttemptAt: null }))) return;
			this.deps.onAttempt?.("succeeded");
			if (endpoint.failingSince) await this.deps.endpoints.updateWhere(scope, { _id: endpoint.id }, { failingSince: null });
			return;
		}

		if (outcome.kind === "response" && outcome.status === 410) {
			if (!(await settle({ status: "failed", attempts, ...answered, lastError: "The receiver answered 410 Gone: the endpoint is disabled", nextAttemptAt: null }))) return;
			this.deps.onAttempt?.("failed");
			await this.disable(scope, endpoint, "The receiver answered 410 Gone");
			return;
		}

		const delay = this.nextDelay(outcome, attempts);
		const lastError = outcome.kind === "error" ? outcome.error : `The receiver answered ${outcome.status}`;
		const settled = await settle(
			delay === null
				? { status: "failed", attempts, ...answered, lastError, nextAttemptAt: null }
				: { status: "pending", attempts, ...answered, lastError, nextAttemptAt: new Date(now + delay).toISOString() }
		);
		if (!settled) return;
		this.deps.onAttempt?.(delay === null ? "failed" : "retrying");

		const failingSince = endpoint.failingSince ?? nowIso;
		if (!endpoint.failingSince) await this.deps.endpoints.updateWhere(scope, { _id: endpoint.id, failingSince: null }, { failingSince: nowIso });
		const disableAfterMs = notifications.webhookDisableAfterMs;
		if (now - Date.parse(failingSince) >= disableAfterMs) {
			await this.disable(scope, endpoint, `Every delivery failed for ${durationText(disableAfterMs)}`);
		}
	}

	/** The pause before the next attempt, or null when the schedule is used up. Retry-After (429, 503) wins when longer. */
	private nextDelay(outcome: AttemptOutcome, attempts: number): number | null {
		const scheduled = retryDelay(this.deps.config.notifications.webhookRetryScheduleMs, attempts);
		if (scheduled === null) return null;
		if (outcome.kind === "response" && (outcome.status === 429 || outcome.status === 503) && outcome.retryAfterMs !== null) {
			return Math.max(scheduled, outcome.retryAfterMs);
		}
		return scheduled;
	}

	/** Switches an endpoint off; only the caller that did it fails its pending deliveries and tells the admins. */
	private async disable(scope: Scope, endpoint: EndpointDoc, reason: string): Promise<void> {
		const switched = await this.deps.endpoints.updateWhere(scope, { _id: endpoint.id, enabled: true }, { enabled: false, disabledReason: reason });
		if (switched !== 1) return;
		await this.failPending(scope, endpoint.id);
		this.deps.logger.warn(`Webhook endpoint ${endpoint.id} of tenant ${endpoint.tenantId} disabled: ${reason}`);
		try {
			await this.deps.onDisabled(endpoint.tenantId, endpoint, reason);
		} catch (err) {
			this.deps.logger.error(`Could not tell the admins of tenant ${endpoint.tenantId} that a webhook endpoint was disabled`, err);
		}
	}

	private failPending(scope: Scope, endpointId: string): Promise<number> {
		return this.deps.deliveries.updateWhere(scope, { endpointId, status: "pending" }, { status: "failed", nextAttemptAt: null, lastError: "endpoint disabled" });
	}

	// ---- tenants --------------------------------------------------------------------------------

	async exportTenant(tenantId: string): Promise<Pick<NotificationsExport, "webhooks" | "deliveries">> {
		const scope = systemScope(tenantId);
		const [endpoints, deliveries] = await Promise.all([
			this.deps.endpoints.findDocs(scope, {}, { sort: ["_id"] }),
			this.deps.deliveries.findDocs(scope, {}, { sort: ["_id"] })
		]);
		return { webhooks: endpoints.map(endpointView), deliveries: deliveries.map(deliveryView) };
	}

	async removeTenant(tenantId: string): Promise<void> {
		const scope = systemScope(tenantId);
		await this.deps.endpoints.removeDocs(scope, {});
		await Promise.all([this.deps.deliveries.removeDocs(scope, {}), this.deps.events.removeDocs(scope, {})]);
	}

	// ---- helpers --------------------------------------------------------------------------------

	private endpoint(scope: Scope, id: string): Promise<EndpointDoc> {
		return this.deps.endpoints.getDoc(scope, id, "Webhook endpoint");
	}

	private async enabledEndpoint(scope: Scope, id: string): Promise<EndpointDoc> {
		const endpoint = await this.endpoint(scope, id);
		if (!endpoint.enabled) throw Errors.conflict("The webhook endpoint is disabled: enable it first", { id, disabledReason: endpoint.disabledReason });
		return endpoint;
	}

	private tooMany(): AppError {
		return Errors.conflict(`A tenant has at most ${MAX_ENDPOINTS} webhook endpoints`, { limit: MAX_ENDPOINTS });
	}

	/**
	 * 422 naming `url` unless it is an http(s) URL that (unless private destinations are allowed)
	 * is not and does not resolve to a non-public address. A name that does not resolve (yet) is
	 * accepted: every delivery checks again, and that check is the one that guards.
	 */
	private async checkUrl(raw: string): Promise<void> {
		const { webhookAllowPrivate, webhookTimeoutMs } = this.deps.config.notifications;
		try {
			const url = parseDestination(raw);
			await resolveDestination(url, { allowPrivate: webhookAllowPrivate, resolve: this.resolve, timeoutMs: Math.min(webhookTimeoutMs, 5000) });
		} catch (err) {
			if (!(err instanceof DestinationError)) throw err;
			if (err.kind !== "unresolved") throw Errors.validation([{ field: "url", message: `The 'url' field ${err.message}.`, type: "url" }]);
		}
	}

	/** A delivery of one event to one endpoint in round `round`; null when that key exists (a repeat). */
	private async enqueue(scope: Scope, endpointId: string, eventId: string, type: WebhookEventType, payload: string, round: number): Promise<DeliveryDoc | null> {
		const nowIso = new Date(this.now()).toISOString();
		try {
			return await this.deps.deliveries.insertDoc(scope, {
				key: `${endpointId}:${eventId}:${round}`,
				endpointId,
				eventId,
				event: type,
				payload,
				status: "pending",
				attempts: 0,
				lastStatusCode: null,
				lastResponseBody: null,
				lastError: null,
				nextAttemptAt: nowIso,
				leaseOwner: null,
				leaseUntil: null,
				createdAt: nowIso
			});
		} catch (err) {
			if (isConflict(err)) return null;
			throw err;
		}
	}
}
