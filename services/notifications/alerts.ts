/**
 * Alert rules: a display silent for the tenant's `offlineAlertMinutes` alerts its admins (email
 * if they want it, in-app always) and sends a `display.offline` event; back online sends
 * `display.online`; a flapping display does not alert again within the window; many displays of
 * one tenant due together become one digest. Quota warnings, failed payments and disabled
 * webhook endpoints reach the admins the same way.
 *
 * One state document per display (alert_states, `key` = displayId):
 *
 *   wentOffline ─▶ watching ──(due, sweep)──▶ alerted ──cameOnline──▶ online (display.online sent)
 *                    │   └──(due, flapping)──▶ suppressed ─cameOnline─▶ online (silently)
 *                    └──cameOnline──▶ removed (or online, when an earlier alert is remembered)
 *
 * - Flapping: a display that goes dark again less than `offlineAlertMinutes` after its last
 *   alert is not alerted for that outage (nor for its return). The window runs from the last
 *   alert to when the display went dark again; counted to the sweep it could never be met, as an
 *   alert is only due `offlineAlertMinutes` after the display went dark.
 * - Every alert is claimed by a compare-and-set on its state's status before anything is sent,
 *   so two sweepers (or a sweep and a late event) never alert twice. If sending fails the claim
 *   is given back and the next sweep tries again; emails, events and in-app notifications carry
 *   ids stable per alert (and recipient), so what already went out is not sent a second time.
 * - An email the outbox refuses as invalid (422) is logged and skipped: retrying cannot help,
 *   and the other recipients and the in-app notifications still go out.
 */
import type { LogSink } from "../../shared/logging";
import { createHash } from "node:crypto";
import { ALL_TENANTS, systemScope, type TenantCollection } from "../../mixins/db.mixin";
import type { Config } from "../../shared/config";
import { DEFAULT_SETTINGS, type AlertDisplay, type AlertType, type EmailRequest, type Events, type PlatformEvent, type Result, type TenantView } from "../../shared/contracts";
import { AppError } from "../../shared/errors";
import type { AlertStateDoc } from "./documents";
import type { Inbox, NewNotification } from "./inbox";

export interface AlertDeps {
	states: TenantCollection<AlertStateDoc>;
	inbox: Inbox;
	config: Config;
	/** The tenant's owner and admins (tenants.admins). */
	admins(tenantId: string): Promise<Result<"tenants.admins">>;
	/** The tenant's name and settings (tenants.find). */
	tenant(tenantId: string): Promise<TenantView | null>;
	/** Queues an email (the outbox). */
	sendEmail(request: EmailRequest): Promise<void>;
	/** Records a platform event for webhooks. */
	publish(event: PlatformEvent): Promise<void>;
	logger: LogSink;
	now?: () => number;
}

type Admin = Result<"tenants.admins">[number];

const MINUTE = 60_000;
/** Quota warnings of one resource reach a tenant at most this often. */
export const QUOTA_WARNING_EVERY_MS = 24 * 3600_000;
/** Displays one digest email carries (the template shows the first 50 and counts the rest). */
const DIGEST_MAX_LISTED = 1000;
/** Displays a digest's in-app notification lists; `count` and the link cover the rest. */
const DIGEST_IN_APP_LISTED = 50;
/** Due states one sweep reads; the rest wait for the next one. */
const SWEEP_BATCH = 5000;
const QUOTA_RESOURCES = ["displays", "storageBytes", "members"];

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (instant: string) => Date.parse(instant);

/** A short digest of parts: stable ids for alerts that have no single natural one. */
function digestOf(...parts: string[]): string {
	return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 24);
}

/** Whether a display went dark again within `offlineAlertMinutes` of its last alert (then it is not alerted). */
export function isFlapping(state: Pick<AlertStateDoc, "offlineSince" | "lastAlertedAt">, offlineAlertMinutes: number): boolean {
	return state.lastAlertedAt !== null && ms(state.offlineSince) - ms(state.lastAlertedAt) < offlineAlertMinutes * MINUTE;
}

/** Whole minutes from `since` to `until` (never negative). */
export function minutesBetween(since: string, until: number): number {
	return Math.max(0, Math.floor((until - ms(since)) / MINUTE));
}

/** "1 minute", "25 minutes". */
function minutesText(n: number): string {
	return `${n} minute${n === 1 ? "" : "s"}`;
}

function alertDisplay(state: AlertStateDoc): AlertDisplay {
	return { displayId: state.displayId, name: state.displayName, lastSeenAt: state.lastSeenAt };
}

/** "8 of 10 displays", "0.8 GB of 1 GB of storage". */
function usage(resource: string, used: number, limit: number): string {
	if (resource === "storageBytes") return `${gigabytes(used)} of ${gigabytes(limit)} of storage`;
	return `${used} of ${limit} ${resource}`;
}

function gigabytes(bytes: number): string {
	return `${Math.round((bytes / 1024 ** 3) * 100) / 100} GB`;
}

export class AlertRules {
	constructor(readonly deps: AlertDeps) {}

	private now(): number {
		return this.deps.now?.() ?? Date.now();
	}

	private get appUrl(): string {
		return this.deps.config.appUrl;
	}

	// ---- displays -------------------------------------------------------------------------------

	/**
	 * Starts watching a display that went offline (its alert is due after the tenant's
	 * offlineAlertMinutes). A repeat of the announcement of an outage already alerted changes
	 * nothing; a display last seen after the outage its state is about is a new outage (its
	 * return may have gone unheard).
	 */
	async displayWentOffline(event: Events["devices.display.wentOffline"]): Promise<void> {
		const { tenantId, displayId, name, lastSeenAt, at, since } = event;
		const minutes = await this.offlineAlertMinutes(tenantId);
		if (minutes === null) return;
		const scope = systemScope(tenantId);
		// After a scheduled power-off the outage starts where the off time ended, not where the screen went dark.
		const offlineSince = since ?? lastSeenAt ?? at;
		const watching = {
			displayName: name,
			lastSeenAt,
			offlineSince,
			dueAt: iso(ms(offlineSince) + minutes * MINUTE),
			status: "watching" as const
		};
		for (let round = 0; round < 3; round++) {
			const state = await this.deps.states.findDoc(scope, { key: displayId });
			if (!state) {
				try {
					await this.deps.states.insertDoc(scope, { key: displayId, displayId, ...watching, lastAlertedAt: null });
					return;
				} catch (err) {
					// The same announcement handled twice at once: the other one's state stands.
					if (err instanceof AppError && err.type === "CONFLICT") continue;
					throw err;
				}
			}
			// A repeat, or a late announcement of an outage it is already back from.
			if (ms(offlineSince) <= ms(state.offlineSince)) return;
			if (await this.deps.states.updateWhere(scope, { _id: state.id, status: state.status, offlineSince: state.offlineSince }, watching)) return;
		}
		this.deps.logger.warn(`Display ${displayId} of tenant ${tenantId} went offline, but its alert state could not be written (contention)`);
	}

	/**
	 * The tenant's alert delay; null for a tenant that is gone. The event is not redelivered, so a
	 * tenants service that cannot answer right now means the default delay rather than no alert.
	 */
	private async offlineAlertMinutes(tenantId: string): Promise<number | null> {
		try {
			const tenant = await this.deps.tenant(tenantId);
			return tenant ? tenant.settings.offlineAlertMinutes : null;
		} catch (err) {
			this.deps.logger.warn(`The settings of tenant ${tenantId} could not be read; its offline alert uses the default delay`, err);
			return DEFAULT_SETTINGS.offlineAlertMinutes;
		}
	}

	/** Back online: a watched display stops being watched; an alerted one sends `display.online`. */
	async displayCameOnline(event: Events["devices.display.cameOnline"]): Promise<void> {
		const { tenantId, displayId, at } = event;
		const scope = systemScope(tenantId);
		// A sweep may alert the state between the read and the write: then it is read again.
		for (let round = 0; round < 3; round++) {
			const state = await this.deps.states.findDoc(scope, { key: displayId });
			if (!state || state.status === "online" || state.status === "gate") return;
			const claim = { _id: state.id, status: state.status, offlineSince: state.offlineSince };
			if (state.status !== "alerted") {
				// Never alerted for this outage: nothing to tell. An earlier alert is remembered for flapping.
				const written = state.lastAlertedAt ? await this.deps.states.updateWhere(scope, claim, { status: "online" }) : await this.deps.states.removeDocs(scope, claim);
				if (written) return;
				continue;
			}
			if (!(await this.deps.states.updateWhere(scope, claim, { status: "online" }))) continue;
			try {
				await this.announceOnline(state, at);
			} catch (err) {
				// Given back, so a repeated announcement may try again.
				await this.deps.states.updateWhere(scope, { ...claim, status: "online" }, { status: "alerted" });
				throw err;
			}
			return;
		}
	}

	/** A deleted display is no longer watched. */
	async displayDeleted(event: Events["devices.display.deleted"]): Promise<void> {
		await this.deps.states.removeDocs(systemScope(event.tenantId), { key: event.displayId });
	}

	/** Alerts every display whose alert is due: one by one, or one digest per tenant past the threshold. */
	async sweep(): Promise<void> {
		const now = this.now();
		const due = await this.deps.states.findDocs(ALL_TENANTS, { status: "watching", dueAt: { $lte: iso(now) } }, { sort: ["dueAt"], limit: SWEEP_BATCH });
		const byTenant = new Map<string, AlertStateDoc[]>();
		for (const state of due) byTenant.set(state.tenantId, [...(byTenant.get(state.tenantId) ?? []), state]);
		for (const [tenantId, states] of byTenant) {
			// One tenant's failure (its admins cannot be read, the outbox is down) must not hold up the others.
			try {
				await this.sweepTenant(tenantId, states, now);
			} catch (err) {
				this.deps.logger.error(`Offline alerts of tenant ${tenantId} failed; the next sweep tries again`, err);
			}
		}
	}

	private async sweepTenant(tenantId: string, due: AlertStateDoc[], now: number): Promise<void> {
		const scope = systemScope(tenantId);
		const tenant = await this.deps.tenant(tenantId);
		if (!tenant) {
			// The tenant is gone (its deletion removes these too): nobody to tell.
			await this.deps.states.removeDocs(scope, {});
			return;
		}
		const minutes = tenant.settings.offlineAlertMinutes;
		const claimed: AlertStateDoc[] = [];
		for (const state of due) {
			const claim = { _id: state.id, status: "watching", dueAt: state.dueAt };
			if (isFlapping(state, minutes)) {
				if (await this.deps.states.updateWhere(scope, claim, { status: "suppressed" })) {
					this.deps.logger.info(`Display ${state.displayId} of tenant ${tenantId} flaps: no second alert within ${minutes} min`);
				}
				continue;
			}
			if (await this.deps.states.updateWhere(scope, claim, { status: "alerted", lastAlertedAt: iso(now) })) claimed.push(state);
		}
		if (!claimed.length) return;
		try {
			const admins = await this.deps.admins(tenantId);
			if (claimed.length >= this.deps.config.notifications.alertDigestThreshold) {
				await this.announceDigest(tenant, claimed, admins, now);
			} else {
				for (const state of claimed) await this.announceOffline(tenant, state, admins, now);
			}
		} catch (err) {
			// Given back (unless the display came back meanwhile), so the next sweep alerts them.
			for (const state of claimed) {
				await this.deps.states.updateWhere(scope, { _id: state.id, status: "alerted", lastAlertedAt: iso(now) }, { status: "watching", lastAlertedAt: state.lastAlertedAt });
			}
			throw err;
		}
	}

	private offlineEvent(state: AlertStateDoc, now: number): PlatformEvent {
		return {
			id: `evt_offline_${state.displayId}_${ms(state.offlineSince)}`,
			tenantId: state.tenantId,
			type: "display.offline",
			timestamp: iso(now),
			data: { displayId: state.displayId, name: state.displayName, lastSeenAt: state.lastSeenAt, offlineSince: state.offlineSince }
		};
	}

	private async announceOffline(tenant: TenantView, state: AlertStateDoc, admins: Admin[], now: number): Promise<void> {
		const event = this.offlineEvent(state, now);
		const offlineMinutes = minutesBetween(state.offlineSince, now);
		const url = `${this.appUrl}/displays/${state.displayId}`;
		await this.deps.publish(event);
		await this.email(tenant.id, admins, "display.offline", admin => ({
			id: `alert_${event.id}_${admin.userId}`,
			tenantId: tenant.id,
			to: admin.email,
			template: "displayOffline",
			data: { name: admin.name, tenantName: tenant.name, display: alertDisplay(state), offlineMinutes, url }
		}));
		await this.notify(tenant.id, admins, {
			type: "display.offline",
			title: `Display “${state.displayName}” is offline`,
			body: `“${state.displayName}” has not been heard from for ${minutesText(offlineMinutes)}.`,
			data: { alertId: event.id, displayId: state.displayId, name: state.displayName, lastSeenAt: state.lastSeenAt, offlineSince: state.offlineSince, url }
		});
		this.deps.logger.info(`Display ${state.displayId} of tenant ${tenant.id} offline: ${admins.length} admins alerted`);
	}

	/** Many at once: one email and one in-app notification per admin, still one event per display. */
	private async announceDigest(tenant: TenantView, states: AlertStateDoc[], admins: Admin[], now: number): Promise<void> {
		const alertId = `digest_${digestOf(tenant.id, ...states.map(s => `${s.displayId}@${s.offlineSince}`).sort())}`;
		const displays = states.map(alertDisplay);
		const url = `${this.appUrl}/displays?status=offline`;
		for (const state of states) await this.deps.publish(this.offlineEvent(state, now));
		await this.email(tenant.id, admins, "display.offline", admin => ({
			id: `alert_${alertId}_${admin.userId}`,
			tenantId: tenant.id,
			to: admin.email,
			template: "offlineDigest",
			data: { name: admin.name, tenantName: tenant.name, count: states.length, displays: displays.slice(0, DIGEST_MAX_LISTED), url }
		}));
		await this.notify(tenant.id, admins, {
			type: "display.offline",
			title: `${states.length} displays are offline`,
			body: `${states.length} displays went offline at about the same time: ${displays
				.slice(0, 5)
				.map(d => `“${d.name}”`)
				.join(", ")}${states.length > 5 ? ` and ${states.length - 5} more` : ""}.`,
			data: { alertId, count: states.length, displays: displays.slice(0, DIGEST_IN_APP_LISTED), url }
		});
		this.deps.logger.info(`${states.length} displays of tenant ${tenant.id} offline: one digest to ${admins.length} admins`);
	}

	private async announceOnline(state: AlertStateDoc, at: string): Promise<void> {
		const tenantId = state.tenantId;
		const [tenant, admins] = await Promise.all([this.deps.tenant(tenantId), this.deps.admins(tenantId)]);
		if (!tenant) return;
		const event: PlatformEvent = {
			id: `evt_online_${state.displayId}_${ms(state.offlineSince)}`,
			tenantId,
			type: "display.online",
			timestamp: at,
			data: { displayId: state.displayId, name: state.displayName, offlineSince: state.offlineSince, onlineAt: at }
		};
		const offlineMinutes = minutesBetween(state.offlineSince, ms(at));
		const url = `${this.appUrl}/displays/${state.displayId}`;
		await this.deps.publish(event);
		await this.email(tenantId, admins, "display.online", admin => ({
			id: `alert_${event.id}_${admin.userId}`,
			tenantId,
			to: admin.email,
			template: "displayOnline",
			data: { name: admin.name, tenantName: tenant.name, display: alertDisplay(state), offlineMinutes, url }
		}));
		await this.notify(tenantId, admins, {
			type: "display.online",
			title: `Display “${state.displayName}” is back online`,
			body: `“${state.displayName}” is back after ${minutesText(offlineMinutes)} offline.`,
			data: { alertId: event.id, displayId: state.displayId, name: state.displayName, offlineSince: state.offlineSince, onlineAt: at, url }
		});
	}

	// ---- the tenant's health ------------------------------------------------------------------

	/** A platform event that concerns the tenant's admins (quota.warning, payment.failed). */
	async platformEvent(event: PlatformEvent): Promise<void> {
		if (event.type === "quota.warning") await this.quotaWarning(event);
		else if (event.type === "payment.failed") await this.paymentFailed(event);
		else if (event.type === "approval.requested") await this.approvalRequested(event);
		else if (event.type === "approval.decided") await this.approvalDecided(event);
	}

	/** Content approval: a change waits — the admins (the approvers) are told in-app. */
	private async approvalRequested(event: PlatformEvent): Promise<void> {
		const { kind, id, name } = event.data;
		if ((kind !== "content" && kind !== "playlist") || typeof id !== "string" || typeof name !== "string") return;
		const admins = await this.deps.admins(event.tenantId);
		const what = kind === "content" ? "content item" : "playlist";
		await this.notify(event.tenantId, admins, {
			type: "approval.requested",
			title: `Waiting for approval: “${name}”`,
			body: `A change to the ${what} “${name}” waits for your review before it reaches any screen.`,
			data: { alertId: event.id, kind, id, name, url: `${this.appUrl}/${kind === "content" ? "content" : "playlists"}/${id}` }
		});
	}

	/** Content approval: a change was approved or rejected — its author is told in-app, with the comment. */
	private async approvalDecided(event: PlatformEvent): Promise<void> {
		const { kind, id, name, status, comment, requestedBy } = event.data;
		if ((kind !== "content" && kind !== "playlist") || typeof id !== "string" || typeof name !== "string" || typeof requestedBy !== "string") return;
		const approved = status === "approved";
		const what = kind === "content" ? "content item" : "playlist";
		await this.deps.inbox.add(event.tenantId, [requestedBy], {
			type: "approval.decided",
			title: approved ? `Approved: “${name}”` : `Rejected: “${name}”`,
			body: `Your change to the ${what} “${name}” was ${approved ? "approved and now plays" : "rejected"}${typeof comment === "string" && comment ? `: ${comment}` : "."}`,
			data: { alertId: event.id, kind, id, name, status, comment: typeof comment === "string" ? comment : null }
		});
	}

	/**
	 * At most one warning per tenant and resource in QUOTA_WARNING_EVERY_MS, remembered in a "gate"
	 * state (`quota.warning:<tenantId>:<resource>`) claimed by compare-and-set before anything is
	 * sent and given back if sending fails (the channel then delivers the event again).
	 */
	private async quotaWarning(event: PlatformEvent): Promise<void> {
		const { resource, used, limit } = event.data;
		if (typeof resource !== "string" || typeof used !== "number" || typeof limit !== "number" || !Number.isInteger(used) || !Number.isInteger(limit)) {
			this.deps.logger.warn(`quota.warning ${event.id} of tenant ${event.tenantId} without resource, used and limit: ignored`);
			return;
		}
		const now = this.now();
		const scope = systemScope(event.tenantId);
		const key = `quota.warning:${event.tenantId}:${resource}`;
		const gate = await this.deps.states.findDoc(scope, { key });
		const opened = { lastAlertedAt: iso(now), dueAt: iso(now + QUOTA_WARNING_EVERY_MS) };
		let giveBack: () => Promise<unknown>;
		if (!gate) {
			try {
				const created = await this.deps.states.insertDoc(scope, {
					key,
					displayId: "",
					displayName: "",
					lastSeenAt: null,
					offlineSince: iso(now),
					status: "gate",
					...opened
				});
				giveBack = () => this.deps.states.removeDocs(scope, { _id: created.id, lastAlertedAt: opened.lastAlertedAt });
			} catch (err) {
				if (err instanceof AppError && err.type === "CONFLICT") return; // another warning just went out
				throw err;
			}
		} else {
			if (ms(gate.dueAt) > now) return;
			if (!(await this.deps.states.updateWhere(scope, { _id: gate.id, dueAt: gate.dueAt }, opened))) return;
			giveBack = () => this.deps.states.updateWhere(scope, { _id: gate.id, lastAlertedAt: opened.lastAlertedAt }, { lastAlertedAt: gate.lastAlertedAt, dueAt: gate.dueAt });
		}
		try {
			const [tenant, admins] = await Promise.all([this.deps.tenant(event.tenantId), this.deps.admins(event.tenantId)]);
			if (!tenant) return;
			const url = `${this.appUrl}/billing`;
			const alertId = `quota_${event.tenantId}_${resource}_${now}`;
			// An unknown resource still reaches the admins in-app; the email template knows only the plan's.
			if (QUOTA_RESOURCES.includes(resource)) {
				await this.email(event.tenantId, admins, "quota.warning", admin => ({
					id: `alert_${alertId}_${admin.userId}`,
					tenantId: event.tenantId,
					to: admin.email,
					template: "quotaWarning",
					data: { name: admin.name, tenantName: tenant.name, resource, used, limit, url }
				}));
			}
			await this.notify(event.tenantId, admins, {
				type: "quota.warning",
				title: used >= limit ? `Plan limit reached: ${resource}` : `Plan limit nearly reached: ${resource}`,
				body: `${usage(resource, used, limit)} of your plan are used.`,
				data: { alertId, resource, used, limit, url }
			});
		} catch (err) {
			await giveBack();
			throw err;
		}
	}

	private async paymentFailed(event: PlatformEvent): Promise<void> {
		const [tenant, admins] = await Promise.all([this.deps.tenant(event.tenantId), this.deps.admins(event.tenantId)]);
		if (!tenant) return;
		const given = event.data.amountDue;
		const amountDue = typeof given === "string" && given.trim() ? given.trim() : null;
		const url = `${this.appUrl}/billing`;
		await this.email(event.tenantId, admins, "payment.failed", admin => ({
			id: `alert_${event.id}_${admin.userId}`,
			tenantId: event.tenantId,
			to: admin.email,
			template: "paymentFailed",
			data: { name: admin.name, tenantName: tenant.name, amountDue: amountDue ?? "your latest invoice", url }
		}));
		await this.notify(event.tenantId, admins, {
			type: "payment.failed",
			title: "Payment failed",
			body: `We could not collect ${amountDue ? `the payment of ${amountDue}` : "your latest payment"}. Check or update the payment method so the subscription stays active.`,
			data: { alertId: event.id, ...(amountDue ? { amountDue } : {}), url }
		});
	}

	/**
	 * A webhook endpoint was disabled: its admins are told. One alert per endpoint and reason
	 * within an hour (the id), so a disable reported twice is still one email.
	 */
	async webhookDisabled(tenantId: string, endpointUrl: string, reason: string): Promise<void> {
		const [tenant, admins] = await Promise.all([this.deps.tenant(tenantId), this.deps.admins(tenantId)]);
		if (!tenant) return;
		const alertId = `webhook_${digestOf(tenantId, endpointUrl, reason, String(Math.floor(this.now() / 3600_000)))}`;
		const url = `${this.appUrl}/settings/webhooks`;
		await this.email(tenantId, admins, "webhook.disabled", admin => ({
			id: `alert_${alertId}_${admin.userId}`,
			tenantId,
			to: admin.email,
			template: "webhookDisabled",
			data: { name: admin.name, tenantName: tenant.name, endpointUrl, reason, url }
		}));
		await this.notify(tenantId, admins, {
			type: "webhook.disabled",
			title: "Webhook endpoint disabled",
			body: `Events are no longer sent to ${endpointUrl}: ${reason}`,
			data: { alertId, endpointUrl, reason, url }
		});
	}

	async removeTenant(tenantId: string): Promise<void> {
		await this.deps.states.removeDocs(systemScope(tenantId), {});
	}

	// ---- sending ------------------------------------------------------------------------------

	/** One email per admin who wants `type` by email. */
	private async email(tenantId: string, admins: Admin[], type: AlertType, build: (admin: Admin) => EmailRequest): Promise<void> {
		const wanting = await this.deps.inbox.wantingEmail(
			tenantId,
			admins.map(a => a.userId),
			type
		);
		for (const admin of admins.filter(a => wanting.has(a.userId))) {
			try {
				await this.deps.sendEmail(build(admin));
			} catch (err) {
				if (!(err instanceof AppError && err.type === "VALIDATION_ERROR")) throw err;
				this.deps.logger.warn(`The ${type} email to ${admin.email} was refused as invalid; not retried`, err.data);
			}
		}
	}

	/** One in-app notification per admin, whatever their email preferences. */
	private notify(tenantId: string, admins: Admin[], notification: NewNotification): Promise<void> {
		return this.deps.inbox.add(
			tenantId,
			admins.map(a => a.userId),
			notification
		);
	}
}
