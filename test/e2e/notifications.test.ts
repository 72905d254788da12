/**
 * Alerts and in-app notifications on the real platform: displays are paired, heartbeat, and fall
 * silent; the real devices sweep turns them offline (offlineAfterSec lowered to 1 s in the
 * tenants collection, as the API keeps it ≥ 30 s) and the real notifications service alerts the
 * admins — email (the embedded mailbox, DATA_DIR/mail), in-app (GET /notifications) and a signed
 * webhook to a local receiver (WEBHOOK_ALLOW_PRIVATE=true).
 *
 * Time: the tenant's offlineAlertMinutes is 1 (PATCH /tenant, its minimum). Rather than wait the
 * minute, the test moves the alert rules' clock (their injected `now`) a minute ahead once the
 * outage is being watched; everything else runs on real time with short poll intervals.
 */
import type { ServiceSchema } from "moleculer";
import { ALL_TENANTS, type GlobalCollection, type Stored, type TenantCollection } from "../../mixins/db.mixin";
import DevicesService from "../../services/devices.service";
import type { AlertRules } from "../../services/notifications/alerts";
import type { AlertStateDoc } from "../../services/notifications/documents";
import type { TenantSettings } from "../../shared/contracts";
import { bearer, mailbox, newAccount, pairDisplay, register, someClient, startTestPlatform, tokenFromMail, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { WebhookReceiver } from "../helpers/webhook-receiver";
import { until } from "../helpers/until";

const POLL_MS = 50;
const SWEEP_MS = 100;
/** Long enough for any duplicate to show: many sweeps and worker polls. */
const SETTLE_MS = 30 * POLL_MS;
/** The alert clock's step: past the tenant's offlineAlertMinutes (1). */
const A_MINUTE_LATER = 61_000;

const FastDevices = { ...DevicesService, settings: { ...DevicesService.settings, sweepIntervalMs: SWEEP_MS } } as ServiceSchema;

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

interface Notification {
	id: string;
	type: string;
	title: string;
	body: string;
	data: Record<string, unknown>;
	readAt: string | null;
	createdAt: string;
}
interface Page<T> {
	rows: T[];
	total: number;
	page: number;
	pageSize: number;
	totalPages: number;
}

/** Phrases of the alert emails' text (ASCII, so the mailbox's rough decoding keeps them). */
const MAIL = {
	offline: "has been offline for",
	online: "is back online after",
	digest: "went offline at about the same time",
	quota: "its plan allows"
};

describe("notifications: alerts, in-app notifications and preferences", () => {
	let p: Platform;
	/** How far the alert rules' clock runs ahead of real time. */
	let skew = 0;

	beforeAll(async () => {
		p = await startTestPlatform({ NOTIFICATIONS_POLL_MS: String(POLL_MS), WEBHOOK_ALLOW_PRIVATE: "true", DEFAULT_PLAN_DISPLAYS: "1000", DEFAULT_PLAN_MEMBERS: "100" }, [FastDevices]);
		alertRules(p).deps.now = () => Date.now() + skew;
	});
	afterAll(() => p.stop());

	function alertRules(platform: Platform): AlertRules {
		return (platform.broker.getLocalService("notifications") as unknown as { alerts: AlertRules }).alerts;
	}

	/** One tenant's world: owner and a second admin, 1-minute alerts, a 1-second offline threshold, a webhook receiver. */
	interface Org {
		owner: Session;
		admin: Session;
		receiver: WebhookReceiver;
		endpointId: string;
	}

	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	async function addAdmin(platform: Platform, owner: Session): Promise<Session> {
		const account = newAccount("admin");
		const invited = await request(platform.api("/invitations"), { method: "POST", headers: as(owner), json: { email: account.email, role: "admin" } });
		expect(invited.status).toBe(201);
		const token = await tokenFromMail(platform, account.email, "accept-invitation");
		const accepted = await request<Session>(platform.api("/invitations/accept"), { method: "POST", headers: someClient(), json: { token, name: account.name, password: account.password } });
		expect(accepted.status).toBe(200);
		return accepted.body;
	}

	async function newOrg(platform: Platform, label: string, events = ["display.offline", "display.online", "quota.warning"]): Promise<Org> {
		const owner = await register(platform, newAccount(label));
		const admin = await addAdmin(platform, owner);
		const patched = await request<{ settings: TenantSettings }>(platform.api("/tenant"), { method: "PATCH", headers: as(owner), json: { settings: { offlineAlertMinutes: 1 } } });
		expect(patched.status).toBe(200);
		expect(patched.body.settings.offlineAlertMinutes).toBe(1);
		const tenants = (platform.broker.getLocalService("tenants") as unknown as { db: { tenants: GlobalCollection<Stored & { settings: TenantSettings }> } }).db.tenants;
		const tenant = await tenants.getDoc(owner.tenant.id, "Tenant");
		await tenants.updateDoc(owner.tenant.id, { settings: { ...tenant.settings, offlineAfterSec: 1 } });
		const receiver = await WebhookReceiver.start();
		const endpoint = await request<{ id: string; secret: string }>(platform.api("/webhooks"), { method: "POST", headers: as(owner), json: { url: receiver.url, events } });
		expect(endpoint.status).toBe(201);
		receiver.secret = endpoint.body.secret;
		return { owner, admin, receiver, endpointId: endpoint.body.id };
	}

	function states(platform: Platform): TenantCollection<AlertStateDoc> {
		return (platform.broker.getLocalService("notifications") as unknown as { db: { alert_states: TenantCollection<AlertStateDoc> } }).db.alert_states;
	}

	async function stateOf(displayId: string): Promise<AlertStateDoc | null> {
		const [state] = await states(p).findDocs(ALL_TENANTS, { key: displayId });
		return state ?? null;
	}

	async function heartbeat(platform: Platform, token: string): Promise<void> {
		const res = await request(platform.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
		expect(res.status).toBe(200);
	}

	async function inApp(platform: Platform, session: Session, query = ""): Promise<Page<Notification>> {
		const res = await request<Page<Notification>>(platform.api(`/notifications${query}`), { headers: as(session) });
		expect(res.status).toBe(200);
		return res.body;
	}

	const mails = (platform: Platform, to: Session, phrase: string) => mailbox(platform, to.user.email).filter(mail => mail.includes(phrase));

	/** Deliveries of `type` the receiver accepted, one per webhook-id (a retried delivery counts once). */
	function hooks(org: Org, type: string): Array<{ type: string; timestamp: string; data: Record<string, unknown> }> {
		const seen = new Set<string>();
		return org.receiver.received
			.filter(r => r.verdict === "ok" && !seen.has(String(r.headers["webhook-id"])) && seen.add(String(r.headers["webhook-id"])))
			.map(r => JSON.parse(r.body) as { type: string; timestamp: string; data: Record<string, unknown> })
			.filter(body => body.type === type);
	}

	describe("one display", () => {
		let org: Org;
		let display: { id: string; name: string };
		let token: string;

		beforeAll(async () => {
			org = await newOrg(p, "lobby");
			({ display, token } = await pairDisplay<{ id: string; name: string }>(p, org.owner, { name: "Lobby" }));
		});
		afterAll(() => org.receiver.close());

		it("silent past offlineAlertMinutes: one email per admin, one in-app notification per admin, one display.offline webhook", async () => {
			skew = 0;
			await heartbeat(p, token);
			await until("the silent display is watched", async () => (await stateOf(display.id))?.status === "watching");
			const watched = await stateOf(display.id);
			expect(Date.parse(String(watched?.dueAt)) - Date.parse(String(watched?.offlineSince))).toBe(60_000);
			expect(mails(p, org.owner, MAIL.offline)).toHaveLength(0);

			skew = A_MINUTE_LATER;
			await until("both admins are mailed", () => mails(p, org.owner, MAIL.offline).length === 1 && mails(p, org.admin, MAIL.offline).length === 1);
			await until("the webhook arrives", () => hooks(org, "display.offline").length === 1);
			await sleep(SETTLE_MS);

			expect(mails(p, org.owner, MAIL.offline)).toHaveLength(1);
			expect(mails(p, org.admin, MAIL.offline)).toHaveLength(1);
			expect(mails(p, org.owner, MAIL.offline)[0]).toContain(`/displays/${display.id}`);
			for (const session of [org.owner, org.admin]) {
				const page = await inApp(p, session);
				expect(page.total).toBe(1);
				expect(page.rows[0]).toMatchObject({ type: "display.offline", title: "Display “Lobby” is offline", readAt: null, data: { displayId: display.id, name: "Lobby" } });
			}
			expect(hooks(org, "display.offline")).toEqual([{ type: "display.offline", timestamp: expect.any(String), data: expect.objectContaining({ displayId: display.id, name: "Lobby" }) }]);
			expect(org.receiver.received.every(r => r.verdict === "ok")).toBe(true);
			expect(await stateOf(display.id)).toMatchObject({ status: "alerted" });
		});

		it("back online: display.online webhook, an in-app notification per admin, and email to the admins who want it", async () => {
			const prefs = await request(p.api("/notifications/preferences"), { method: "PATCH", headers: as(org.admin), json: { email: { "display.online": false } } });
			expect(prefs.status).toBe(200);
			// Real time again: once back, the display falls silent within a second and is watched anew.
			skew = 0;
			await heartbeat(p, token);
			await until("the display.online webhook arrives", () => hooks(org, "display.online").length === 1);
			await until("the owner is mailed", () => mails(p, org.owner, MAIL.online).length === 1);
			await sleep(SETTLE_MS);

			expect(mails(p, org.admin, MAIL.online)).toHaveLength(0);
			expect(hooks(org, "display.online")[0].data).toMatchObject({ displayId: display.id, name: "Lobby" });
			for (const session of [org.owner, org.admin]) {
				expect((await inApp(p, session)).rows.map(r => r.type)).toEqual(["display.online", "display.offline"]);
			}
			// Back (or already watched for its next silence), its alert remembered.
			expect(await stateOf(display.id)).toMatchObject({ status: expect.stringMatching(/^(online|watching)$/), lastAlertedAt: expect.any(String) });
		});

		it("flapping: dark again within the window of its alert, it does not alert again (nor its return)", async () => {
			await until("the display is watched again", async () => (await stateOf(display.id))?.status === "watching");
			skew = A_MINUTE_LATER;
			await until("the outage is judged a flap", async () => (await stateOf(display.id))?.status === "suppressed");
			skew = 0;
			await heartbeat(p, token);
			await until("it is back", async () => (await stateOf(display.id))?.status === "online");
			await sleep(SETTLE_MS);

			expect(mails(p, org.owner, MAIL.offline)).toHaveLength(1);
			expect(mails(p, org.owner, MAIL.online)).toHaveLength(1);
			expect(hooks(org, "display.offline")).toHaveLength(1);
			expect(hooks(org, "display.online")).toHaveLength(1);
			expect((await inApp(p, org.owner)).total).toBe(2);
		});
	});

	it("fifty displays of one tenant going dark together: one digest email per admin, one in-app notification per admin, fifty display.offline webhooks", async () => {
		const org = await newOrg(p, "fleet");
		try {
			skew = 0;
			const paired: string[] = [];
			for (let i = 0; i < 50; i++) {
				const { display, token } = await pairDisplay(p, org.owner, { name: `Screen ${i + 1}` });
				await heartbeat(p, token);
				paired.push(display.id);
			}
			await until("all fifty are watched", async () => (await states(p).countDocs(ALL_TENANTS, { key: { $in: paired }, status: "watching" })) === 50);
			skew = A_MINUTE_LATER;
			await until("both admins get the digest", () => mails(p, org.owner, MAIL.digest).length === 1 && mails(p, org.admin, MAIL.digest).length === 1);
			await until("fifty webhooks arrive", () => hooks(org, "display.offline").length === 50, 30_000);
			await sleep(SETTLE_MS);

			for (const session of [org.owner, org.admin]) {
				expect(mails(p, session, MAIL.digest)).toHaveLength(1);
				expect(mails(p, session, MAIL.offline)).toHaveLength(0);
				const page = await inApp(p, session);
				expect(page.total).toBe(1);
				expect(page.rows[0]).toMatchObject({ type: "display.offline", title: "50 displays are offline", data: { count: 50 } });
			}
			expect(mails(p, org.owner, MAIL.digest)[0]).toContain("50 displays");
			expect(new Set(hooks(org, "display.offline").map(h => h.data.displayId))).toEqual(new Set(paired));
		} finally {
			skew = 0;
			await org.receiver.close();
		}
	}, 90_000);

	describe("the inbox over HTTP", () => {
		let org: Org;
		let other: Session;

		beforeAll(async () => {
			org = await newOrg(p, "inbox");
			other = await register(p, newAccount("stranger"));
			// Real notifications to read: an alert about a display that went offline.
			skew = 0;
			const { display, token } = await pairDisplay(p, org.owner, { name: "Kiosk" });
			await heartbeat(p, token);
			await until("watched", async () => (await stateOf(display.id))?.status === "watching");
			skew = A_MINUTE_LATER;
			await until("alerted in-app", async () => (await inApp(p, org.owner)).total === 1 && (await inApp(p, org.admin)).total === 1);
			skew = 0;
			await heartbeat(p, token);
			await until("back online in-app", async () => (await inApp(p, org.owner)).total === 2);
		}, 60_000);
		afterAll(() => org.receiver.close());

		it("preferences: every alert type, on by default; PATCH changes only the given ones; bad values answer 422", async () => {
			const all = { "display.offline": true, "display.online": true, "quota.warning": true, "payment.failed": true, "webhook.disabled": true };
			const got = await request(p.api("/notifications/preferences"), { headers: as(org.owner) });
			expect(got.status).toBe(200);
			expect(got.body).toEqual({ email: all });

			const patched = await request(p.api("/notifications/preferences"), { method: "PATCH", headers: as(org.owner), json: { email: { "quota.warning": false, "not.a.type": false } } });
			expect(patched.status).toBe(200);
			expect(patched.body).toEqual({ email: { ...all, "quota.warning": false } });
			const again = await request(p.api("/notifications/preferences"), { method: "PATCH", headers: as(org.owner), json: { email: { "display.online": false } } });
			expect(again.body).toEqual({ email: { ...all, "quota.warning": false, "display.online": false } });
			expect((await request(p.api("/notifications/preferences"), { headers: as(org.owner) })).body).toEqual({ email: { ...all, "quota.warning": false, "display.online": false } });
			// Per person: the other admin's are untouched.
			expect((await request(p.api("/notifications/preferences"), { headers: as(org.admin) })).body).toEqual({ email: all });

			for (const json of [{ email: { "display.online": "maybe" } }, { email: "all" }, {}]) {
				const bad = await request<ErrorBody>(p.api("/notifications/preferences"), { method: "PATCH", headers: as(org.owner), json });
				expect(bad.status).toBe(422);
				expect(bad.body.error.type).toBe("VALIDATION_ERROR");
			}
		});

		it("lists newest first, ?unread=true, marks one read (204), marks all read (204)", async () => {
			const page = await inApp(p, org.owner);
			expect(page).toMatchObject({ total: 2, page: 1, pageSize: 20, totalPages: 1 });
			expect(page.rows.map(r => r.type)).toEqual(["display.online", "display.offline"]);
			expect(page.rows[0]).toEqual({ id: expect.any(String), type: "display.online", title: "Display “Kiosk” is back online", body: expect.any(String), data: expect.any(Object), readAt: null, createdAt: expect.any(String) });

			const read = await request(p.api(`/notifications/${page.rows[1].id}/read`), { method: "POST", headers: as(org.owner) });
			expect(read.status).toBe(204);
			expect(read.text).toBe("");
			const unread = await inApp(p, org.owner, "?unread=true");
			expect(unread.rows.map(r => r.id)).toEqual([page.rows[0].id]);
			expect((await inApp(p, org.owner)).rows[1].readAt).toEqual(expect.any(String));
			// The other admin's copies are their own.
			expect((await inApp(p, org.admin, "?unread=true")).total).toBe(2);

			const all = await request(p.api("/notifications/read-all"), { method: "POST", headers: as(org.owner) });
			expect(all.status).toBe(204);
			expect((await inApp(p, org.owner, "?unread=true")).total).toBe(0);
			expect((await inApp(p, org.owner, "?page=2&pageSize=1")).rows.map(r => r.type)).toEqual(["display.offline"]);
		});

		it("someone else's notification, another tenant's, or an unknown id answers 404; a malformed id 422", async () => {
			const adminsOwn = (await inApp(p, org.admin)).rows[0];
			for (const [session, id] of [
				[org.owner, adminsOwn.id],
				[other, adminsOwn.id],
				[org.owner, "0190aaaa-0000-7000-8000-000000000000"]
			] as const) {
				const res = await request<ErrorBody>(p.api(`/notifications/${id}/read`), { method: "POST", headers: as(session) });
				expect(res.status).toBe(404);
				expect(res.body.error.type).toBe("NOT_FOUND");
			}
			expect((await inApp(p, org.admin, "?unread=true")).rows.map(r => r.id)).toContain(adminsOwn.id);
			expect((await inApp(p, other)).total).toBe(0);
			expect((await request(p.api("/notifications/not-an-id/read"), { method: "POST", headers: as(org.owner) })).status).toBe(422);
		});
	});

	it("a quota warning reaches the admins once, however often the plan's line is crossed within a day", async () => {
		const small = await startTestPlatform({ NOTIFICATIONS_POLL_MS: String(POLL_MS), WEBHOOK_ALLOW_PRIVATE: "true", DEFAULT_PLAN_DISPLAYS: "5", DEFAULT_PLAN_MEMBERS: "100" }, [FastDevices]);
		const org = await newOrg(small, "quota", ["quota.warning"]);
		try {
			const ids: string[] = [];
			for (let i = 0; i < 4; i++) ids.push((await pairDisplay(small, org.owner, { name: `Q${i}` })).display.id);
			await until("the warning webhook arrives", () => hooks(org, "quota.warning").length === 1);
			await until("both admins are mailed", () => mails(small, org.owner, MAIL.quota).length === 1 && mails(small, org.admin, MAIL.quota).length === 1);

			// Below the line and over it again: a second quota.warning event, but no second alert.
			expect((await request(small.api(`/displays/${ids[0]}`), { method: "DELETE", headers: as(org.owner) })).status).toBe(204);
			await pairDisplay(small, org.owner, { name: "Q again" });
			await until("the second warning event is delivered", () => hooks(org, "quota.warning").length === 2);
			await sleep(SETTLE_MS);

			expect(hooks(org, "quota.warning").map(h => h.data)).toEqual([
				{ resource: "displays", used: 4, limit: 5 },
				{ resource: "displays", used: 4, limit: 5 }
			]);
			for (const session of [org.owner, org.admin]) {
				expect(mails(small, session, MAIL.quota)).toHaveLength(1);
				const page = await inApp(small, session);
				expect(page.rows.map(r => r.type)).toEqual(["quota.warning"]);
				expect(page.rows[0].data).toMatchObject({ resource: "displays", used: 4, limit: 5 });
			}
		} finally {
			await org.receiver.close();
			await small.stop();
		}
	}, 60_000);
});
