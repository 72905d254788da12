/**
 * services/notifications/inbox.ts on real collections (NeDB in memory and in files, MongoDB when
 * MONGO_URI is set): a person's notifications newest first with the list convention and the
 * unread filter, marking one or all read (someone else's id is a 404 like a missing one), email
 * preferences (every alert type, on by default, only the given ones change, one document per
 * person even when the first changes race), an alert added twice for the same person is one
 * notification, the tenant's export and removal.
 */
import type { Service, ServiceSchema } from "moleculer";
import { DbMixin, systemScope, type DbVars } from "../../mixins/db.mixin";
import { COLLECTIONS } from "../../services/notifications/documents";
import { Inbox, mergeEmailOff, preferencesView } from "../../services/notifications/inbox";
import { AppError } from "../../shared/errors";
import { startBroker, type TestBroker } from "../helpers/platform";

type Db = DbVars<typeof COLLECTIONS>["db"];

const Holder: ServiceSchema = { name: "inbox-holder", mixins: [DbMixin(COLLECTIONS)] };

const ALL_ON = { "display.offline": true, "display.online": true, "quota.warning": true, "payment.failed": true, "webhook.disabled": true };


/** NeDB in memory, NeDB files (the embedded mode), and MongoDB when MONGO_URI is set. */
const backends: Array<[string, Record<string, string>]> = [
	["NeDB in memory", {}],
	["NeDB files", { NODE_ENV: "development" }],
	...(process.env.MONGO_URI ? [["MongoDB", { MONGO_URI: process.env.MONGO_URI }] as [string, Record<string, string>]] : [])
];

describe.each(backends)("Inbox on %s", (_backend, env) => {
	let started: TestBroker;
	let db: Db;
	let inbox: Inbox;
	const START = Date.parse("2026-03-01T10:00:00.000Z");
	let clock = START;
	let tenantCount = 0;

	beforeAll(async () => {
		started = await startBroker([Holder], env);
		db = (started.broker.getLocalService("inbox-holder") as Service & DbVars<typeof COLLECTIONS>).db;
		inbox = new Inbox({ notifications: db.notifications, preferences: db.notification_preferences, now: () => clock });
	});
	afterAll(() => started.stop());
	beforeEach(() => {
		clock = START;
	});

	/** A fresh tenant per test: tests share the collections. */
	const newTenant = () => `tenant-${++tenantCount}`;
	const note = (title: string, data: Record<string, unknown> = {}) => ({ type: "display.offline", title, body: `${title} body`, data });

	async function rejection(promise: Promise<unknown>): Promise<AppError> {
		const err = await promise.then(
			() => null,
			(e: unknown) => e
		);
		expect(err).toBeInstanceOf(AppError);
		return err as AppError;
	}

	describe("notifications", () => {
		it("lists one person's notifications newest first with the list convention, nobody else's", async () => {
			const t = newTenant();
			await inbox.add(t, ["ann"], note("first"));
			await inbox.add(t, ["ann", "bob"], note("second", { displayId: "d-1" }));
			await inbox.add(t, ["ann"], note("third"));
			await inbox.add(newTenant(), ["ann"], note("other tenant"));

			const page = await inbox.list(systemScope(t), "ann", 1, 2);
			expect(page).toMatchObject({ total: 3, page: 1, pageSize: 2, totalPages: 2 });
			expect(page.rows.map(r => r.title)).toEqual(["third", "second"]);
			expect(page.rows[1]).toEqual({
				id: expect.any(String),
				type: "display.offline",
				title: "second",
				body: "second body",
				data: { displayId: "d-1" },
				readAt: null,
				createdAt: "2026-03-01T10:00:00.000Z"
			});
			expect((await inbox.list(systemScope(t), "ann", 2, 2)).rows.map(r => r.title)).toEqual(["first"]);
			expect((await inbox.list(systemScope(t), "bob", 1, 20)).rows.map(r => r.title)).toEqual(["second"]);
		});

		it("marks one read (its first readAt stays), filters unread, and marks all read", async () => {
			const t = newTenant();
			const scope = systemScope(t);
			await inbox.add(t, ["ann"], note("a"));
			await inbox.add(t, ["ann"], note("b"));
			await inbox.add(t, ["ann"], note("c"));
			await inbox.add(t, ["bob"], note("bob's"));
			const [c, b] = (await inbox.list(scope, "ann", 1, 20)).rows;

			clock += 60_000;
			await inbox.markRead(scope, "ann", b.id);
			clock += 60_000;
			await inbox.markRead(scope, "ann", b.id);
			const unread = await inbox.list(scope, "ann", 1, 20, true);
			expect(unread.rows.map(r => r.title)).toEqual(["c", "a"]);
			expect(unread.total).toBe(2);
			expect((await inbox.list(scope, "ann", 1, 20)).rows.find(r => r.id === b.id)?.readAt).toBe("2026-03-01T10:01:00.000Z");

			await inbox.markAllRead(scope, "ann");
			expect((await inbox.list(scope, "ann", 1, 20, true)).rows).toEqual([]);
			const all = await inbox.list(scope, "ann", 1, 20);
			expect(all.rows.find(r => r.id === c.id)?.readAt).toBe("2026-03-01T10:02:00.000Z");
			expect(all.rows.find(r => r.id === b.id)?.readAt).toBe("2026-03-01T10:01:00.000Z");
			// Bob's stays unread.
			expect((await inbox.list(scope, "bob", 1, 20, true)).total).toBe(1);
		});

		it("someone else's notification, another tenant's or an unknown id is a 404 NOT_FOUND and stays unread", async () => {
			const t = newTenant();
			const other = newTenant();
			await inbox.add(t, ["bob"], note("bob's"));
			await inbox.add(other, ["ann"], note("elsewhere"));
			const bobs = (await inbox.list(systemScope(t), "bob", 1, 20)).rows[0];
			const elsewhere = (await inbox.list(systemScope(other), "ann", 1, 20)).rows[0];

			for (const [userId, id] of [
				["ann", bobs.id],
				["ann", elsewhere.id],
				["ann", "0190aaaa-0000-7000-8000-000000000000"]
			]) {
				const err = await rejection(inbox.markRead(systemScope(t), userId, id));
				expect(err.type).toBe("NOT_FOUND");
			}
			expect((await inbox.list(systemScope(t), "bob", 1, 20, true)).total).toBe(1);
			expect((await inbox.list(systemScope(other), "ann", 1, 20, true)).total).toBe(1);
		});

		it("an alert added again (same data.alertId) is still one notification per person", async () => {
			const t = newTenant();
			await inbox.add(t, ["ann"], note("offline", { alertId: "evt_1" }));
			await inbox.add(t, ["ann", "bob"], note("offline", { alertId: "evt_1" }));
			await inbox.add(t, ["ann", "ann"], note("offline again", { alertId: "evt_2" }));
			expect((await inbox.list(systemScope(t), "ann", 1, 20)).rows.map(r => r.data.alertId)).toEqual(["evt_2", "evt_1"]);
			expect((await inbox.list(systemScope(t), "bob", 1, 20)).rows.map(r => r.data.alertId)).toEqual(["evt_1"]);
		});
	});

	describe("preferences", () => {
		it("every alert type reaches a person by email until they switch it off", async () => {
			const t = newTenant();
			expect(await inbox.preferences(systemScope(t), "ann")).toEqual({ email: ALL_ON });
			expect(await inbox.wantsEmail(t, "ann", "display.offline")).toBe(true);
		});

		it("a change touches only the given types, for that person of that tenant only", async () => {
			const t = newTenant();
			const scope = systemScope(t);
			expect(await inbox.updatePreferences(scope, "ann", { "display.offline": false, "quota.warning": false })).toEqual({
				email: { ...ALL_ON, "display.offline": false, "quota.warning": false }
			});
			expect(await inbox.updatePreferences(scope, "ann", { "quota.warning": true, "payment.failed": false })).toEqual({
				email: { ...ALL_ON, "display.offline": false, "payment.failed": false }
			});
			expect(await inbox.updatePreferences(scope, "ann", {})).toEqual({ email: { ...ALL_ON, "display.offline": false, "payment.failed": false } });
			expect(await inbox.preferences(scope, "ann")).toEqual({ email: { ...ALL_ON, "display.offline": false, "payment.failed": false } });

			expect(await inbox.preferences(scope, "bob")).toEqual({ email: ALL_ON });
			expect(await inbox.preferences(systemScope(newTenant()), "ann")).toEqual({ email: ALL_ON });
			expect(await inbox.wantsEmail(t, "ann", "display.offline")).toBe(false);
			expect(await inbox.wantsEmail(t, "ann", "display.online")).toBe(true);
			expect([...(await inbox.wantingEmail(t, ["ann", "bob", "cid"], "payment.failed"))]).toEqual(["bob", "cid"]);
		});

		it("ten first changes at once leave one document per person holding all of them", async () => {
			const t = newTenant();
			const scope = systemScope(t);
			const types = ["display.offline", "display.online", "quota.warning", "payment.failed", "webhook.disabled"] as const;
			const results = await Promise.allSettled([...types, ...types].map(type => inbox.updatePreferences(scope, "ann", { [type]: false })));
			expect(results.filter(r => r.status === "rejected")).toEqual([]);
			expect(await db.notification_preferences.countDocs(scope, { userId: "ann" })).toBe(1);
			expect(await inbox.preferences(scope, "ann")).toEqual({
				email: { "display.offline": false, "display.online": false, "quota.warning": false, "payment.failed": false, "webhook.disabled": false }
			});
		});

		it("the stored form is the list of switched-off types, in a fixed order", () => {
			expect(mergeEmailOff(["quota.warning"], { "display.offline": false, "quota.warning": true, "webhook.disabled": false })).toEqual(["display.offline", "webhook.disabled"]);
			expect(preferencesView(null)).toEqual({ email: ALL_ON });
		});
	});

	describe("the tenant's data", () => {
		it("exports every notification with its person and every person's preferences, then removes them", async () => {
			const t = newTenant();
			const scope = systemScope(t);
			await inbox.add(t, ["ann", "bob"], note("offline", { displayId: "d-9" }));
			await inbox.updatePreferences(scope, "bob", { "display.online": false });
			const other = newTenant();
			await inbox.add(other, ["ann"], note("stays"));

			const exported = await inbox.exportTenant(t);
			const row = { id: expect.any(String), type: "display.offline", title: "offline", body: "offline body", data: { displayId: "d-9" }, readAt: null, createdAt: "2026-03-01T10:00:00.000Z" };
			expect(exported.notifications).toEqual([
				{ ...row, userId: "ann" },
				{ ...row, userId: "bob" }
			]);
			expect(exported.preferences).toEqual([{ userId: "bob", email: { ...ALL_ON, "display.online": false } }]);

			await inbox.removeTenant(t);
			expect(await inbox.exportTenant(t)).toEqual({ notifications: [], preferences: [] });
			expect((await inbox.list(systemScope(other), "ann", 1, 20)).total).toBe(1);
		});
	});
});
