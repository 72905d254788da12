/**
 * services/notifications/alerts.ts on real collections (NeDB in memory and in files, MongoDB when
 * MONGO_URI is set) and the real inbox, with an injected clock and fakes for what is not under
 * test: the tenant's settings and admins, the outbox (which keeps one email per request id, as
 * the real one does) and the event recorder (one event per id, as webhooks.record does).
 */
import type { Service, ServiceSchema } from "moleculer";
import { DbMixin, systemScope, type DbVars } from "../../mixins/db.mixin";
import { AlertRules, isFlapping } from "../../services/notifications/alerts";
import { COLLECTIONS } from "../../services/notifications/documents";
import { Inbox } from "../../services/notifications/inbox";
import type { Config } from "../../shared/config";
import type { EmailRequest, Events, PlatformEvent, Result, TenantView } from "../../shared/contracts";
import { Errors } from "../../shared/errors";
import { startBroker, type TestBroker } from "../helpers/platform";

type Db = DbVars<typeof COLLECTIONS>["db"];
type Admin = Result<"tenants.admins">[number];

const Holder: ServiceSchema = { name: "alerts-holder", mixins: [DbMixin(COLLECTIONS)] };

const MIN = 60_000;
const T0 = Date.parse("2026-05-04T08:00:00.000Z");
const APP = "https://cms.example.com";


/** NeDB in memory, NeDB files (the embedded mode), and MongoDB when MONGO_URI is set. */
const backends: Array<[string, Record<string, string>]> = [
	["NeDB in memory", {}],
	["NeDB files", { NODE_ENV: "development" }],
	...(process.env.MONGO_URI ? [["MongoDB", { MONGO_URI: process.env.MONGO_URI }] as [string, Record<string, string>]] : [])
];

describe.each(backends)("AlertRules on %s", (_backend, env) => {
	let started: TestBroker;
	let db: Db;
	let config: Config;
	let tenantCount = 0;

	beforeAll(async () => {
		started = await startBroker([Holder], env);
		db = (started.broker.getLocalService("alerts-holder") as Service & DbVars<typeof COLLECTIONS>).db;
		config = { ...started.config, appUrl: APP, notifications: { ...started.config.notifications, alertDigestThreshold: 5 } };
	});
	afterAll(() => started.stop());

	/** One tenant with its own world: admins, settings, clock, and what went out. */
	class World {
		readonly tenantId = `tenant-${++tenantCount}`;
		readonly scope = systemScope(this.tenantId);
		readonly admins: Admin[];
		readonly tenant: TenantView;
		clock = T0;
		/** Email requests in the order sent, repeats included. */
		readonly sendCalls: EmailRequest[] = [];
		/** The outbox: one email per request id. */
		readonly emails = new Map<string, EmailRequest>();
		/** The event store: one event per id. */
		readonly events = new Map<string, PlatformEvent>();
		failEmails: Error | null = null;
		readonly inbox: Inbox;
		readonly rules: AlertRules;

		constructor(options: { minutes?: number; admins?: Admin[] }) {
			const n = tenantCount;
			this.admins = options.admins ?? [
				{ userId: `owner-${n}`, email: `owner-${n}@example.com`, name: "Olive Owner", role: "owner" },
				{ userId: `admin-${n}`, email: `admin-${n}@example.com`, name: "Adam Admin", role: "admin" }
			];
			this.tenant = {
				id: this.tenantId,
				name: "Acme Screens",
				slug: `acme-${n}`,
				plan: "free",
				createdAt: "2026-01-01T00:00:00.000Z",
				settings: { timezone: "UTC", offlineAlertMinutes: options.minutes ?? 10, offlineAfterSec: 90, requireTwoFactor: false, contentApproval: false }
			};
			this.inbox = new Inbox({ notifications: db.notifications, preferences: db.notification_preferences, now: () => this.clock });
			this.rules = new AlertRules({
				states: db.alert_states,
				inbox: this.inbox,
				config,
				admins: async id => (id === this.tenantId ? this.admins : []),
				tenant: async id => (id === this.tenantId ? this.tenant : null),
				sendEmail: async request => {
					if (this.failEmails) throw this.failEmails;
					if (request.to.startsWith("invalid")) throw Errors.validation([{ field: "to", message: "not an address", type: "email" }]);
					this.sendCalls.push(request);
					if (!this.emails.has(request.id)) this.emails.set(request.id, request);
				},
				publish: async event => {
					if (!this.events.has(event.id)) this.events.set(event.id, event);
				},
				logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
				now: () => this.clock
			});
		}

		/** Display ids are unique across tenants, as the real ones are. */
		id = (name: string): string => `${name}.${this.tenantId}`;

		offline(name: string, lastSeenAt: number | null, displayName = `Screen ${name}`): Promise<void> {
			const event: Events["devices.display.wentOffline"] = {
				tenantId: this.tenantId,
				displayId: this.id(name),
				name: displayName,
				lastSeenAt: lastSeenAt === null ? null : new Date(lastSeenAt).toISOString(),
				at: new Date(this.clock).toISOString()
			};
			return this.rules.displayWentOffline(event);
		}

		online(name: string): Promise<void> {
			return this.rules.displayCameOnline({ tenantId: this.tenantId, displayId: this.id(name), at: new Date(this.clock).toISOString() });
		}

		state(name: string) {
			return db.alert_states.findDoc(this.scope, { key: this.id(name) });
		}

		inApp(userId: string) {
			return this.inbox.list(this.scope, userId, 1, 100);
		}

		emailsOf(template: EmailRequest["template"]): EmailRequest[] {
			return [...this.emails.values()].filter(e => e.template === template);
		}

		eventsOf(type: PlatformEvent["type"]): PlatformEvent[] {
			return [...this.events.values()].filter(e => e.type === type);
		}
	}

	const world = (options: { minutes?: number; admins?: Admin[] } = {}) => new World(options);

	describe("a display going offline", () => {
		it("is watched from when it was last seen, due the tenant's offlineAlertMinutes later", async () => {
			const w = world({ minutes: 15 });
			w.clock = T0 + 2 * MIN;
			await w.offline("d-1", T0, "Lobby");
			expect(await w.state("d-1")).toMatchObject({
				tenantId: w.tenantId,
				displayId: w.id("d-1"),
				displayName: "Lobby",
				lastSeenAt: "2026-05-04T08:00:00.000Z",
				offlineSince: "2026-05-04T08:00:00.000Z",
				dueAt: "2026-05-04T08:15:00.000Z",
				status: "watching",
				lastAlertedAt: null
			});
			// Never seen: from when it was announced.
			await w.offline("d-2", null);
			expect(await w.state("d-2")).toMatchObject({ lastSeenAt: null, offlineSince: "2026-05-04T08:02:00.000Z", dueAt: "2026-05-04T08:17:00.000Z" });
		});

		it("nothing goes out before it is due; at the due time one email per admin who wants it, one in-app per admin, one display.offline event", async () => {
			const w = world();
			await w.inbox.updatePreferences(w.scope, w.admins[1].userId, { "display.offline": false });
			w.clock = T0 + 90_000;
			await w.offline("d-1", T0, "Lobby");

			w.clock = T0 + 10 * MIN - 1;
			await w.rules.sweep();
			expect(w.sendCalls).toEqual([]);
			expect(w.events.size).toBe(0);

			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			const eventId = `evt_offline_${w.id("d-1")}_${T0}`;
			expect([...w.events.values()]).toEqual([
				{
					id: eventId,
					tenantId: w.tenantId,
					type: "display.offline",
					timestamp: "2026-05-04T08:10:00.000Z",
					data: { displayId: w.id("d-1"), name: "Lobby", lastSeenAt: "2026-05-04T08:00:00.000Z", offlineSince: "2026-05-04T08:00:00.000Z" }
				}
			]);
			expect(w.sendCalls).toEqual([
				{
					id: `alert_${eventId}_${w.admins[0].userId}`,
					tenantId: w.tenantId,
					to: w.admins[0].email,
					template: "displayOffline",
					data: {
						name: "Olive Owner",
						tenantName: "Acme Screens",
						display: { displayId: w.id("d-1"), name: "Lobby", lastSeenAt: "2026-05-04T08:00:00.000Z" },
						offlineMinutes: 10,
						url: `${APP}/displays/${w.id("d-1")}`
					}
				}
			]);
			for (const admin of w.admins) {
				const { rows } = await w.inApp(admin.userId);
				expect(rows).toEqual([
					{
						id: expect.any(String),
						type: "display.offline",
						title: "Display “Lobby” is offline",
						body: "“Lobby” has not been heard from for 10 minutes.",
						data: { alertId: eventId, displayId: w.id("d-1"), name: "Lobby", lastSeenAt: "2026-05-04T08:00:00.000Z", offlineSince: "2026-05-04T08:00:00.000Z", url: `${APP}/displays/${w.id("d-1")}` },
						readAt: null,
						createdAt: "2026-05-04T08:10:00.000Z"
					}
				]);
			}
			expect(await w.state("d-1")).toMatchObject({ status: "alerted", lastAlertedAt: "2026-05-04T08:10:00.000Z" });

			// Later sweeps send nothing more.
			w.clock = T0 + 30 * MIN;
			await w.rules.sweep();
			expect(w.sendCalls).toHaveLength(1);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(1);
		});

		it("announced again for the same outage it stays as it is (alerted stays alerted, its due time stays)", async () => {
			const w = world();
			await w.offline("d-1", T0);
			w.clock = T0 + 3 * MIN;
			await w.offline("d-1", T0);
			expect(await w.state("d-1")).toMatchObject({ status: "watching", dueAt: "2026-05-04T08:10:00.000Z" });
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			await w.offline("d-1", T0);
			expect(await w.state("d-1")).toMatchObject({ status: "alerted", dueAt: "2026-05-04T08:10:00.000Z" });
			w.clock = T0 + 20 * MIN;
			await w.rules.sweep();
			expect(w.emailsOf("displayOffline")).toHaveLength(2);
		});

		it("an alerted display announced offline with a later last-seen time is a new outage (its return went unheard) and is watched again", async () => {
			const w = world();
			await w.offline("d-1", T0);
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			w.clock = T0 + 60 * MIN;
			await w.offline("d-1", T0 + 50 * MIN);
			expect(await w.state("d-1")).toMatchObject({ status: "watching", offlineSince: "2026-05-04T08:50:00.000Z", dueAt: "2026-05-04T09:00:00.000Z", lastAlertedAt: "2026-05-04T08:10:00.000Z" });
			await w.rules.sweep();
			expect(w.eventsOf("display.offline").map(e => e.id)).toEqual([`evt_offline_${w.id("d-1")}_${T0}`, `evt_offline_${w.id("d-1")}_${T0 + 50 * MIN}`]);
		});

		it("a tenant with many displays due together gets one digest email per admin, one in-app per admin, and still one event per display", async () => {
			const w = world();
			const ids = Array.from({ length: 50 }, (_, i) => `fleet-${String(i).padStart(2, "0")}`);
			for (const id of ids) await w.offline(id, T0 + 30_000, `Screen ${id}`);
			w.clock = T0 + 11 * MIN;
			await w.rules.sweep();

			expect(w.emailsOf("displayOffline")).toEqual([]);
			const digests = w.emailsOf("offlineDigest");
			expect(digests.map(d => d.to)).toEqual(w.admins.map(a => a.email));
			const data = digests[0].data as { count: number; displays: Array<{ displayId: string; name: string; lastSeenAt: string | null }>; url: string; tenantName: string };
			expect(data.count).toBe(50);
			expect(data.tenantName).toBe("Acme Screens");
			expect(data.url).toBe(`${APP}/displays?status=offline`);
			expect(data.displays.map(d => d.displayId).sort()).toEqual(ids.map(w.id));
			expect(data.displays).toContainEqual({ displayId: w.id("fleet-07"), name: "Screen fleet-07", lastSeenAt: "2026-05-04T08:00:30.000Z" });

			expect(w.eventsOf("display.offline").map(e => e.data.displayId).sort()).toEqual(ids.map(w.id));
			for (const admin of w.admins) {
				const { rows } = await w.inApp(admin.userId);
				expect(rows).toHaveLength(1);
				expect(rows[0]).toMatchObject({ type: "display.offline", title: "50 displays are offline", data: { count: 50 } });
			}
			expect(await db.alert_states.countDocs(w.scope, { status: "alerted" })).toBe(50);
		});

		it("below the digest threshold each display alerts on its own", async () => {
			const w = world();
			for (const id of ["a", "b", "c", "d"]) await w.offline(id, T0);
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			expect(w.emailsOf("offlineDigest")).toEqual([]);
			expect(w.emailsOf("displayOffline")).toHaveLength(8);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(4);
		});

		it("only displays due together make a digest: one due now and four due later alert on their own", async () => {
			const w = world();
			await w.offline("early", T0);
			for (const id of ["l1", "l2", "l3", "l4"]) await w.offline(id, T0 + 5 * MIN);
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			expect(w.emailsOf("displayOffline").map(e => (e.data as { display: { displayId: string } }).display.displayId)).toEqual([w.id("early"), w.id("early")]);
			w.clock = T0 + 15 * MIN;
			await w.rules.sweep();
			expect(w.emailsOf("offlineDigest")).toEqual([]);
			expect(w.emailsOf("displayOffline")).toHaveLength(10);
		});

		it("two sweepers at once alert once", async () => {
			const w = world();
			for (const id of ["a", "b"]) await w.offline(id, T0);
			w.clock = T0 + 10 * MIN;
			await Promise.all([w.rules.sweep(), w.rules.sweep(), w.rules.sweep()]);
			expect(w.sendCalls).toHaveLength(4);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(2);
			expect(w.events.size).toBe(2);
		});

		it("a sweep whose emails cannot be queued gives its claim back; the next one alerts, still one email and one notification per admin", async () => {
			const w = world();
			await w.offline("d-1", T0);
			w.clock = T0 + 10 * MIN;
			w.failEmails = new Error("outbox down");
			await w.rules.sweep();
			expect(await w.state("d-1")).toMatchObject({ status: "watching", lastAlertedAt: null });

			w.failEmails = null;
			w.clock = T0 + 11 * MIN;
			await w.rules.sweep();
			expect(await w.state("d-1")).toMatchObject({ status: "alerted", lastAlertedAt: "2026-05-04T08:11:00.000Z" });
			expect(w.emailsOf("displayOffline").map(e => e.to)).toEqual(w.admins.map(a => a.email));
			for (const admin of w.admins) expect((await w.inApp(admin.userId)).total).toBe(1);
			expect(w.events.size).toBe(1);
		});

		it("an email the outbox refuses as invalid is skipped: the other admins and the in-app notifications still get it", async () => {
			const admins: Admin[] = [
				{ userId: "u-bad", email: "invalid@", name: "Bad Address", role: "owner" },
				{ userId: "u-good", email: "good@example.com", name: "Good Address", role: "admin" }
			];
			const w = world({ admins });
			await w.offline("d-1", T0);
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			expect(w.emailsOf("displayOffline").map(e => e.to)).toEqual(["good@example.com"]);
			expect((await w.inApp("u-bad")).total).toBe(1);
			expect(await w.state("d-1")).toMatchObject({ status: "alerted" });
		});

		it("a deleted display is no longer watched", async () => {
			const w = world();
			await w.offline("d-1", T0);
			await w.rules.displayDeleted({ tenantId: w.tenantId, displayId: w.id("d-1") });
			expect(await w.state("d-1")).toBeNull();
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			expect(w.sendCalls).toEqual([]);
		});

		it("the states of a tenant that is gone are dropped without alerting", async () => {
			const w = world();
			await w.offline("d-1", T0);
			await db.alert_states.insertDoc(systemScope("tenant-gone"), {
				key: "ghost",
				displayId: "ghost",
				displayName: "Ghost",
				lastSeenAt: null,
				offlineSince: new Date(T0).toISOString(),
				dueAt: new Date(T0).toISOString(),
				status: "watching",
				lastAlertedAt: null
			});
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			expect(await db.alert_states.countDocs(systemScope("tenant-gone"), {})).toBe(0);
			expect(w.emailsOf("displayOffline")).toHaveLength(2);
		});
	});

	describe("back online", () => {
		it("a display back before its alert was due is forgotten silently", async () => {
			const w = world();
			await w.offline("d-1", T0);
			w.clock = T0 + 5 * MIN;
			await w.online("d-1");
			expect(await w.state("d-1")).toBeNull();
			w.clock = T0 + 20 * MIN;
			await w.rules.sweep();
			expect(w.sendCalls).toEqual([]);
			expect(w.events.size).toBe(0);
		});

		it("an alerted display back online sends display.online, one in-app per admin and an email to each admin who wants it; its alert is remembered", async () => {
			const w = world();
			await w.inbox.updatePreferences(w.scope, w.admins[0].userId, { "display.online": false });
			await w.offline("d-1", T0, "Lobby");
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			w.clock = T0 + 25 * MIN;
			await w.online("d-1");

			const eventId = `evt_online_${w.id("d-1")}_${T0}`;
			expect(w.eventsOf("display.online")).toEqual([
				{
					id: eventId,
					tenantId: w.tenantId,
					type: "display.online",
					timestamp: "2026-05-04T08:25:00.000Z",
					data: { displayId: w.id("d-1"), name: "Lobby", offlineSince: "2026-05-04T08:00:00.000Z", onlineAt: "2026-05-04T08:25:00.000Z" }
				}
			]);
			expect(w.emailsOf("displayOnline")).toEqual([
				{
					id: `alert_${eventId}_${w.admins[1].userId}`,
					tenantId: w.tenantId,
					to: w.admins[1].email,
					template: "displayOnline",
					data: {
						name: "Adam Admin",
						tenantName: "Acme Screens",
						display: { displayId: w.id("d-1"), name: "Lobby", lastSeenAt: "2026-05-04T08:00:00.000Z" },
						offlineMinutes: 25,
						url: `${APP}/displays/${w.id("d-1")}`
					}
				}
			]);
			for (const admin of w.admins) {
				const { rows } = await w.inApp(admin.userId);
				expect(rows.map(r => r.type)).toEqual(["display.online", "display.offline"]);
				expect(rows[0]).toMatchObject({ title: "Display “Lobby” is back online", body: "“Lobby” is back after 25 minutes offline." });
			}
			expect(await w.state("d-1")).toMatchObject({ status: "online", lastAlertedAt: "2026-05-04T08:10:00.000Z" });

			// Announced twice: still one.
			await w.online("d-1");
			expect(w.emailsOf("displayOnline")).toHaveLength(1);
			expect((await w.inApp(w.admins[1].userId)).total).toBe(2);
		});

		it("back while its alert is being swept: either no alert at all, or the offline alert and its display.online, never an offline alert alone", async () => {
			const w = world();
			const names = ["r0", "r1", "r2", "r3"];
			for (const name of names) await w.offline(name, T0);
			w.clock = T0 + 10 * MIN;
			await Promise.all([w.rules.sweep(), ...names.map(name => w.online(name))]);
			for (const name of names) {
				const offline = w.eventsOf("display.offline").filter(e => e.data.displayId === w.id(name)).length;
				const online = w.eventsOf("display.online").filter(e => e.data.displayId === w.id(name)).length;
				expect(offline).toBeLessThanOrEqual(1);
				expect(online).toBe(offline);
				const state = await w.state(name);
				if (offline) expect(state).toMatchObject({ status: "online" });
				else expect(state).toBeNull();
			}
		});
	});

	describe("flapping", () => {
		it("dark again within the window of its last alert: no alert for that outage, nor for its return", async () => {
			const w = world({ minutes: 10 });
			await w.offline("d-1", T0);
			w.clock = T0 + 10 * MIN;
			await w.rules.sweep();
			w.clock = T0 + 12 * MIN;
			await w.online("d-1");
			// Seen at 08:13, dark again: 3 minutes after the alert.
			w.clock = T0 + 15 * MIN;
			await w.offline("d-1", T0 + 13 * MIN);
			w.clock = T0 + 23 * MIN;
			await w.rules.sweep();
			expect(await w.state("d-1")).toMatchObject({ status: "suppressed", lastAlertedAt: "2026-05-04T08:10:00.000Z" });
			w.clock = T0 + 30 * MIN;
			await w.rules.sweep();
			await w.online("d-1");

			expect(w.eventsOf("display.offline")).toHaveLength(1);
			expect(w.eventsOf("display.online")).toHaveLength(1);
			expect(w.emailsOf("displayOffline")).toHaveLength(2);
			expect(w.emailsOf("displayOnline")).toHaveLength(2);
			expect((await w.inApp(w.admins[0].userId)).rows.map(r => r.type)).toEqual(["display.online", "display.offline"]);
			expect(await w.state("d-1")).toMatchObject({ status: "online", lastAlertedAt: "2026-05-04T08:10:00.000Z" });

			// Dark again once the window has passed: alerted again.
			w.clock = T0 + 40 * MIN;
			await w.offline("d-1", T0 + 35 * MIN);
			w.clock = T0 + 45 * MIN;
			await w.rules.sweep();
			expect(w.eventsOf("display.offline").map(e => e.id)).toEqual([`evt_offline_${w.id("d-1")}_${T0}`, `evt_offline_${w.id("d-1")}_${T0 + 35 * MIN}`]);
			expect(await w.state("d-1")).toMatchObject({ status: "alerted", lastAlertedAt: "2026-05-04T08:45:00.000Z" });
		});

		it("the window is counted from the last alert to when the display went dark again", () => {
			const alertedAt = "2026-05-04T08:10:00.000Z";
			expect(isFlapping({ lastAlertedAt: null, offlineSince: "2026-05-04T08:11:00.000Z" }, 10)).toBe(false);
			expect(isFlapping({ lastAlertedAt: alertedAt, offlineSince: "2026-05-04T08:19:59.999Z" }, 10)).toBe(true);
			expect(isFlapping({ lastAlertedAt: alertedAt, offlineSince: "2026-05-04T08:20:00.000Z" }, 10)).toBe(false);
		});
	});

	describe("the tenant's health", () => {
		const quota = (w: World, id: string, resource: string, used: number, limit: number): PlatformEvent => ({
			id,
			tenantId: w.tenantId,
			type: "quota.warning",
			timestamp: new Date(w.clock).toISOString(),
			data: { resource, used, limit }
		});

		it("a quota warning reaches every admin in-app and by email, at most once a day per resource", async () => {
			const w = world();
			await w.rules.platformEvent(quota(w, "evt_q1", "displays", 8, 10));
			expect(w.emailsOf("quotaWarning").map(e => ({ to: e.to, data: e.data }))).toEqual(
				w.admins.map(a => ({ to: a.email, data: { name: a.name, tenantName: "Acme Screens", resource: "displays", used: 8, limit: 10, url: `${APP}/billing` } }))
			);
			for (const admin of w.admins) {
				expect((await w.inApp(admin.userId)).rows).toEqual([
					expect.objectContaining({ type: "quota.warning", title: "Plan limit nearly reached: displays", body: "8 of 10 displays of your plan are used.", data: expect.objectContaining({ resource: "displays", used: 8, limit: 10 }) })
				]);
			}

			w.clock = T0 + 23 * 3600_000;
			await w.rules.platformEvent(quota(w, "evt_q2", "displays", 9, 10));
			await w.rules.platformEvent(quota(w, "evt_q1", "displays", 8, 10));
			expect(w.emailsOf("quotaWarning")).toHaveLength(2);
			await w.rules.platformEvent(quota(w, "evt_q3", "members", 4, 5));
			expect(w.emailsOf("quotaWarning")).toHaveLength(4);

			w.clock = T0 + 24 * 3600_000;
			await w.rules.platformEvent(quota(w, "evt_q4", "displays", 10, 10));
			expect(w.emailsOf("quotaWarning")).toHaveLength(6);
			expect((await w.inApp(w.admins[0].userId)).rows.map(r => r.title)).toEqual([
				"Plan limit reached: displays",
				"Plan limit nearly reached: members",
				"Plan limit nearly reached: displays"
			]);
		});

		it("parallel quota warnings of one resource make one warning", async () => {
			const w = world();
			await Promise.all(Array.from({ length: 5 }, (_, i) => w.rules.platformEvent(quota(w, `evt_p${i}`, "storageBytes", 900, 1000))));
			expect(w.emailsOf("quotaWarning")).toHaveLength(2);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(1);
		});

		it("a quota warning that could not be sent is not counted: the redelivered event sends it", async () => {
			const w = world();
			w.failEmails = new Error("outbox down");
			await expect(w.rules.platformEvent(quota(w, "evt_q1", "displays", 8, 10))).rejects.toThrow("outbox down");
			w.failEmails = null;
			w.clock = T0 + MIN;
			await w.rules.platformEvent(quota(w, "evt_q1", "displays", 8, 10));
			expect(w.emailsOf("quotaWarning")).toHaveLength(2);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(1);
		});

		it("a quota warning without usage is ignored", async () => {
			const w = world();
			await w.rules.platformEvent({ id: "evt_bad", tenantId: w.tenantId, type: "quota.warning", timestamp: new Date(T0).toISOString(), data: { resource: "displays" } });
			expect(w.sendCalls).toEqual([]);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(0);
		});

		it("a failed payment reaches every admin in-app and by email (with the amount when the event has it)", async () => {
			const w = world();
			await w.rules.platformEvent({ id: "evt_pay1", tenantId: w.tenantId, type: "payment.failed", timestamp: new Date(T0).toISOString(), data: { amountDue: "€24.00" } });
			expect(w.emailsOf("paymentFailed")).toEqual(
				w.admins.map(a => ({
					id: `alert_evt_pay1_${a.userId}`,
					tenantId: w.tenantId,
					to: a.email,
					template: "paymentFailed",
					data: { name: a.name, tenantName: "Acme Screens", amountDue: "€24.00", url: `${APP}/billing` }
				}))
			);
			expect((await w.inApp(w.admins[1].userId)).rows[0]).toMatchObject({ type: "payment.failed", title: "Payment failed", data: { alertId: "evt_pay1", amountDue: "€24.00" } });

			await w.rules.platformEvent({ id: "evt_pay2", tenantId: w.tenantId, type: "payment.failed", timestamp: new Date(T0).toISOString(), data: {} });
			expect(w.emailsOf("paymentFailed").filter(e => e.id.startsWith("alert_evt_pay2")).map(e => (e.data as { amountDue: string }).amountDue)).toEqual([
				"your latest invoice",
				"your latest invoice"
			]);
		});

		it("other platform events concern no admin", async () => {
			const w = world();
			await w.rules.platformEvent({ id: "evt_c", tenantId: w.tenantId, type: "content.ready", timestamp: new Date(T0).toISOString(), data: { contentId: "c-1" } });
			expect(w.sendCalls).toEqual([]);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(0);
		});

		it("a disabled webhook endpoint reaches every admin in-app and by email who wants it", async () => {
			const w = world();
			await w.inbox.updatePreferences(w.scope, w.admins[1].userId, { "webhook.disabled": false });
			await w.rules.webhookDisabled(w.tenantId, "https://hooks.example.com/marquee", "The endpoint answered 410 Gone");
			expect(w.emailsOf("webhookDisabled").map(e => ({ to: e.to, data: e.data }))).toEqual([
				{
					to: w.admins[0].email,
					data: { name: "Olive Owner", tenantName: "Acme Screens", endpointUrl: "https://hooks.example.com/marquee", reason: "The endpoint answered 410 Gone", url: `${APP}/settings/webhooks` }
				}
			]);
			for (const admin of w.admins) {
				expect((await w.inApp(admin.userId)).rows).toEqual([
					expect.objectContaining({ type: "webhook.disabled", title: "Webhook endpoint disabled", body: "Events are no longer sent to https://hooks.example.com/marquee: The endpoint answered 410 Gone" })
				]);
			}
			// Reported twice: one alert.
			await w.rules.webhookDisabled(w.tenantId, "https://hooks.example.com/marquee", "The endpoint answered 410 Gone");
			expect(w.emailsOf("webhookDisabled")).toHaveLength(1);
			expect((await w.inApp(w.admins[0].userId)).total).toBe(1);
		});
	});

	it("removing a tenant removes its alert states", async () => {
		const w = world();
		const other = world();
		await w.offline("d-1", T0);
		await w.rules.platformEvent({ id: "evt_q", tenantId: w.tenantId, type: "quota.warning", timestamp: new Date(T0).toISOString(), data: { resource: "displays", used: 8, limit: 10 } });
		await other.offline("d-2", T0);
		await w.rules.removeTenant(w.tenantId);
		expect(await db.alert_states.countDocs(w.scope, {})).toBe(0);
		expect(await other.state("d-2")).not.toBeNull();
	});
});
