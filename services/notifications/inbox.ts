/**
 * In-app notifications per person and their email preferences per alert type.
 *
 * - A notification belongs to one person of one tenant; anyone else's id (another person's, or
 *   another tenant's) answers 404 like a missing one.
 * - Preferences are one document per person and tenant (`key` = `<tenantId>:<userId>`, unique),
 *   created on the first change; every alert type is on until switched off.
 * - An alert may carry `data.alertId`: adding it again for the same person adds nothing, so an
 *   alert retried after a failure (see alerts.ts) is still one notification per person.
 */
import { systemScope, tenantOf, type Scope, type TenantCollection } from "../../mixins/db.mixin";
import { ALERT_TYPES, type AlertType, type NotificationPage, type NotificationPreferences, type NotificationsExport, type NotificationView } from "../../shared/contracts";
import { AppError, Errors } from "../../shared/errors";
import type { NotificationDoc, PreferencesDoc } from "./documents";

export interface InboxDeps {
	notifications: TenantCollection<NotificationDoc>;
	preferences: TenantCollection<PreferencesDoc>;
	now?: () => number;
}

export interface NewNotification {
	type: string;
	title: string;
	body: string;
	data: Record<string, unknown>;
}

/** Rounds of read-merge-write before a preferences change gives up under contention. */
const MAX_ROUNDS = 10;

export function notificationView(doc: NotificationDoc): NotificationView {
	return { id: doc.id, type: doc.type, title: doc.title, body: doc.body, data: doc.data, readAt: doc.readAt, createdAt: doc.createdAt };
}

/** Every alert type with whether it reaches this person by email. */
export function preferencesView(doc: Pick<PreferencesDoc, "emailOff"> | null): NotificationPreferences {
	const off = new Set(doc?.emailOff ?? []);
	return { email: Object.fromEntries(ALERT_TYPES.map(type => [type, !off.has(type)])) as Record<AlertType, boolean> };
}

/** The types switched off after applying `changes` (only the given types change). */
export function mergeEmailOff(current: readonly AlertType[], changes: Partial<Record<AlertType, boolean>>): AlertType[] {
	const off = new Set(current);
	for (const type of ALERT_TYPES) {
		if (changes[type] === true) off.delete(type);
		else if (changes[type] === false) off.add(type);
	}
	return ALERT_TYPES.filter(type => off.has(type));
}

const preferencesKey = (tenantId: string, userId: string) => `${tenantId}:${userId}`;

function isConflict(err: unknown): boolean {
	return err instanceof AppError && err.type === "CONFLICT";
}

export class Inbox {
	constructor(readonly deps: InboxDeps) {}

	private nowIso(): string {
		return new Date(this.deps.now?.() ?? Date.now()).toISOString();
	}

	/** The caller's notifications, newest first; only unread ones when `unread`. */
	async list(scope: Scope, userId: string, page: number, pageSize: number, unread?: boolean): Promise<NotificationPage> {
		const query = unread ? { userId, readAt: null } : { userId };
		// Ids are UUID v7: by id is by creation, within a millisecond too.
		const found = await this.deps.notifications.pageDocs(scope, query, page, pageSize, ["-_id"]);
		return { ...found, rows: found.rows.map(notificationView) };
	}

	/** 404 for an unknown id or someone else's notification. A read one keeps its first readAt. */
	async markRead(scope: Scope, userId: string, id: string): Promise<void> {
		const marked = await this.deps.notifications.updateWhere(scope, { _id: id, userId, readAt: null }, { readAt: this.nowIso() });
		if (marked > 0) return;
		const mine = await this.deps.notifications.findDoc(scope, { _id: id, userId });
		if (!mine) throw Errors.notFound("Notification", id);
	}

	async markAllRead(scope: Scope, userId: string): Promise<void> {
		await this.deps.notifications.updateWhere(scope, { userId, readAt: null }, { readAt: this.nowIso() });
	}

	async preferences(scope: Scope, userId: string): Promise<NotificationPreferences> {
		const doc = await this.deps.preferences.findDoc(scope, { key: preferencesKey(tenantOf(scope), userId) });
		return preferencesView(doc);
	}

	/**
	 * Changes only the given types. The first change creates the document: two first changes at
	 * once meet the unique key, and the loser merges into the winner's. Later changes are a
	 * compare-and-set on `version`, so a change that raced another one merges again rather than
	 * undoing it.
	 */
	async updatePreferences(scope: Scope, userId: string, email: Partial<Record<AlertType, boolean>>): Promise<NotificationPreferences> {
		const key = preferencesKey(tenantOf(scope), userId);
		for (let round = 0; round < MAX_ROUNDS; round++) {
			const doc = await this.deps.preferences.findDoc(scope, { key });
			if (!doc) {
				try {
					const created = await this.deps.preferences.insertDoc(scope, { key, userId, emailOff: mergeEmailOff([], email), version: 1 });
					return preferencesView(created);
				} catch (err) {
					if (isConflict(err)) continue;
					throw err;
				}
			}
			const emailOff = mergeEmailOff(doc.emailOff, email);
			const written = await this.deps.preferences.updateWhere(scope, { _id: doc.id, version: doc.version }, { emailOff, version: doc.version + 1 });
			if (written > 0) return preferencesView({ emailOff });
		}
		throw Errors.unavailable("Preferences are being changed elsewhere; try again");
	}

	/** One notification for each of `userIds` (none for a person who already has this `data.alertId`). */
	async add(tenantId: string, userIds: string[], notification: NewNotification): Promise<void> {
		const scope = systemScope(tenantId);
		let recipients = [...new Set(userIds)];
		const alertId = notification.data.alertId;
		if (typeof alertId === "string" && recipients.length) {
			const existing = await this.deps.notifications.findDocs(scope, { "data.alertId": alertId, userId: { $in: recipients } });
			const have = new Set(existing.map(doc => doc.userId));
			recipients = recipients.filter(userId => !have.has(userId));
		}
		const createdAt = this.nowIso();
		await Promise.all(recipients.map(userId => this.deps.notifications.insertDoc(scope, { userId, ...notification, readAt: null, createdAt })));
	}

	/** Whether this person wants alerts of `type` by email (default: yes). */
	async wantsEmail(tenantId: string, userId: string, type: AlertType): Promise<boolean> {
		return (await this.wantingEmail(tenantId, [userId], type)).has(userId);
	}

	/** Which of `userIds` want alerts of `type` by email (one read for all). */
	async wantingEmail(tenantId: string, userIds: string[], type: AlertType): Promise<Set<string>> {
		if (!userIds.length) return new Set();
		const docs = await this.deps.preferences.findDocs(systemScope(tenantId), { userId: { $in: userIds } });
		const off = new Set(docs.filter(doc => doc.emailOff.includes(type)).map(doc => doc.userId));
		return new Set(userIds.filter(userId => !off.has(userId)));
	}

	async exportTenant(tenantId: string): Promise<Pick<NotificationsExport, "notifications" | "preferences">> {
		const scope = systemScope(tenantId);
		const [notifications, preferences] = await Promise.all([
			this.deps.notifications.findDocs(scope, {}, { sort: ["_id"] }),
			this.deps.preferences.findDocs(scope, {}, { sort: ["_id"] })
		]);
		return {
			notifications: notifications.map(doc => ({ ...notificationView(doc), userId: doc.userId })),
			preferences: preferences.map(doc => ({ ...preferencesView(doc), userId: doc.userId }))
		};
	}

	async removeTenant(tenantId: string): Promise<void> {
		const scope = systemScope(tenantId);
		await Promise.all([this.deps.notifications.removeDocs(scope, {}), this.deps.preferences.removeDocs(scope, {})]);
	}
}
