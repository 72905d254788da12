/**
 * Screen power schedules on the real platform: admins set on/off windows per display, group or
 * tag; the manifest and the heartbeat tell the screen; a screen that falls silent while it is
 * meant to be off is asleep, not dark — no offline alert, not an outage in the uptime report —
 * and when the power-off ends with the screen still dark, the outage begins there.
 *
 * Time: the real devices sweep runs every 100 ms with the tenant's offlineAfterSec lowered to 1 s
 * in the tenants collection (the API keeps it ≥ 30 s); rather than wait the alert minute, the
 * alert rules' clock (their injected `now`) is moved a minute ahead, as in notifications.test.ts.
 * DST correctness of the windows is unit-tested with fixed instants (test/unit/scheduling-power.test.ts).
 */
import type { ServiceSchema } from "moleculer";
import { ALL_TENANTS, type GlobalCollection, type Stored, type TenantCollection } from "../../mixins/db.mixin";
import DevicesService from "../../services/devices.service";
import type { AlertRules } from "../../services/notifications/alerts";
import type { AlertStateDoc } from "../../services/notifications/documents";
import type { TenantSettings } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import { bearer, mailbox, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { addMember } from "../helpers/routes";
import type { Role } from "../../shared/rbac";
import { untilValue } from "../helpers/until";

const SWEEP_MS = 100;
const SETTLE_MS = 1500;
const A_MINUTE_LATER = 61_000;
const FastDevices = { ...DevicesService, settings: { ...DevicesService.settings, sweepIntervalMs: SWEEP_MS } } as ServiceSchema;

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
interface PowerSchedule {
	id: string;
	name: string;
	state: "on" | "off";
	targets: { displayIds: string[]; groupIds: string[]; tags: string[] };
	startTime: string | null;
	endTime: string | null;
	priority: number;
}
interface Power {
	state: "on" | "off";
	until: string | null;
}
interface Display {
	id: string;
	name: string;
	status: string;
	scheduledOff: boolean;
}

describe("screen power schedules", () => {
	let p: Platform;
	let owner: Session;
	let skew = 0;
	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "100", DEFAULT_PLAN_MEMBERS: "100" }, [FastDevices]);
		const alerts = (p.broker.getLocalService("notifications") as unknown as { alerts: AlertRules }).alerts;
		alerts.deps.now = () => Date.now() + skew;
		owner = await register(p, newAccount("power"));
		const patched = await request(p.api("/tenant"), { method: "PATCH", headers: as(owner), json: { settings: { offlineAlertMinutes: 1 } } });
		expect(patched.status).toBe(200);
		const tenants = (p.broker.getLocalService("tenants") as unknown as { db: { tenants: GlobalCollection<Stored & { settings: TenantSettings }> } }).db.tenants;
		const tenant = await tenants.getDoc(owner.tenant.id, "Tenant");
		await tenants.updateDoc(owner.tenant.id, { settings: { ...tenant.settings, offlineAfterSec: 1 } });
	});
	afterAll(() => p.stop());

	const settled = () => (p.broker.getLocalService("scheduling") as unknown as { idle(): Promise<void> }).idle();
	const alertStates = () => (p.broker.getLocalService("notifications") as unknown as { db: { alert_states: TenantCollection<AlertStateDoc> } }).db.alert_states;
	const alertState = async (displayId: string) => (await alertStates().findDocs(ALL_TENANTS, { key: displayId }))[0] ?? null;

	const member = async (role: Role): Promise<Session> => (await addMember(p, owner.accessToken, role)).session;

	async function createPower(body: Record<string, unknown>, session: Session = owner) {
		return request<PowerSchedule & ErrorBody>(p.api("/power-schedules"), { method: "POST", headers: as(session), json: body });
	}

	async function manifestOf(token: string) {
		const res = await request<{ etag: string; power: Power | null; validUntil: string | null }>(p.api("/device/manifest"), { headers: bearer(token) });
		expect(res.status).toBe(200);
		return res.body;
	}

	async function heartbeat(token: string) {
		const res = await request<{ power: Power | null; manifestEtag: string | null }>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
		expect(res.status).toBe(200);
		return res.body;
	}

	const getDisplay = async (id: string) => (await request<Display>(p.api(`/displays/${id}`), { headers: as(owner) })).body;

	it("admins manage power schedules; editors and viewers read them but cannot write; bad rules answer 422 naming the field", async () => {
		const { display } = await pairDisplay(p, owner, { name: "Kiosk ☕ 東京" });
		const [editor, viewer] = [await member("editor"), await member("viewer")];
		expect((await createPower({ name: "Nights", targets: { displayIds: [display.id] } }, editor)).status).toBe(403);
		expect((await createPower({ name: "Nights", targets: { displayIds: [display.id] } }, viewer)).status).toBe(403);

		const created = await createPower({ name: "Nächte 🌙", targets: { displayIds: [display.id] }, startTime: "22:00", endTime: "06:00", tenantId: "other", _id: "mine" });
		expect(created.status).toBe(201);
		// Off by default; what the body tried to set beyond the rule is ignored.
		expect(created.body).toMatchObject({ name: "Nächte 🌙", state: "off", startTime: "22:00", endTime: "06:00", priority: 0, targets: { displayIds: [display.id], groupIds: [], tags: [] } });
		expect(created.body.id).not.toBe("mine");
		expect((await request<{ total: number }>(p.api("/power-schedules"), { headers: as(viewer) })).body.total).toBeGreaterThanOrEqual(1);
		const byDisplay = await request<{ rows: PowerSchedule[] }>(p.api(`/power-schedules?displayId=${display.id}`), { headers: as(editor) });
		expect(byDisplay.body.rows.map(r => r.id)).toEqual([created.body.id]);
		expect((await request(p.api(`/power-schedules/${created.body.id}`), { method: "PATCH", headers: as(editor), json: { name: "x" } })).status).toBe(403);

		const bad: Array<[Record<string, unknown>, string]> = [
			[{ name: "N", targets: {} }, "targets"],
			[{ name: "N", targets: { displayIds: [display.id] }, state: "standby" }, "state"],
			[{ name: "N", targets: { displayIds: [display.id] }, startTime: "25:00" }, "startTime"],
			[{ name: "N", targets: { displayIds: [display.id] }, startDate: "2026-02-30" }, "startDate"],
			[{ name: "N", targets: { displayIds: [display.id] }, daysOfWeek: [0] }, "daysOfWeek[0]"],
			[{ name: "N", targets: { displayIds: [{ $gt: "" }] } }, "targets.displayIds[0]"],
			[{ name: "N", targets: { displayIds: [newId()] } }, "targets.displayIds"],
			[{ name: null, targets: { displayIds: [display.id] } }, "name"]
		];
		for (const [body, field] of bad) {
			const res = await createPower(body);
			expect(res.status).toBe(422);
			expect(res.body.error.data).toEqual(expect.arrayContaining([expect.objectContaining({ field })]));
		}
		const removed = await request(p.api(`/power-schedules/${created.body.id}`), { method: "DELETE", headers: as(owner) });
		expect(removed.status).toBe(204);
		expect((await request(p.api(`/power-schedules/${created.body.id}`), { headers: as(owner) })).status).toBe(404);
	});

	it("another tenant's power schedule answers 404, and its displays cannot be targeted", async () => {
		const other = await register(p, newAccount("power-other"));
		const { display: theirs } = await pairDisplay(p, other, { name: "Theirs" });
		const mine = await createPower({ name: "Mine", targets: { tags: ["lobby"] } });
		expect(mine.status).toBe(201);
		for (const method of ["GET", "PATCH", "DELETE"]) {
			const res = await request<ErrorBody>(p.api(`/power-schedules/${mine.body.id}`), { method, headers: as(other), json: method === "PATCH" ? { name: "Taken" } : undefined });
			expect(res.status).toBe(404);
			expect(res.body.error.type).toBe("NOT_FOUND");
		}
		expect((await request<{ total: number }>(p.api("/power-schedules"), { headers: as(other) })).body.total).toBe(0);
		const reach = await createPower({ name: "Reach", targets: { displayIds: [theirs.id] } });
		expect(reach.status).toBe(422);
		expect((await request(p.api(`/power-schedules/${mine.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
	});

	it("the manifest and the heartbeat tell the screen its power and when it flips; other screens have none", async () => {
		const { display, token } = await pairDisplay(p, owner, { name: "Shop window", timezone: "UTC" });
		const { token: bystander } = await pairDisplay(p, owner, { name: "Back office", timezone: "UTC" });
		const before = await manifestOf(token);
		expect(before.power).toBeNull();
		expect((await heartbeat(token)).power).toBeNull();

		// Off all day, two days from now (UTC): on until that midnight.
		const day = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
		const rule = await createPower({ name: "Stocktaking", targets: { displayIds: [display.id] }, startDate: day, endDate: day });
		expect(rule.status).toBe(201);
		await settled();
		const after = await manifestOf(token);
		expect(after.power).toEqual({ state: "on", until: `${day}T00:00:00.000Z` });
		expect(after.etag).not.toBe(before.etag);
		// The manifest must be fetched again when the screen is to turn off.
		expect(Date.parse(String(after.validUntil))).toBeLessThanOrEqual(Date.parse(`${day}T00:00:00.000Z`));
		const hb = await heartbeat(token);
		expect(hb).toMatchObject({ power: { state: "on", until: `${day}T00:00:00.000Z` }, manifestEtag: after.etag });
		expect((await manifestOf(bystander)).power).toBeNull();

		// Now off, all day every day: off for good (until null or far away).
		const patched = await request<PowerSchedule>(p.api(`/power-schedules/${rule.body.id}`), { method: "PATCH", headers: as(owner), json: { startDate: null, endDate: null } });
		expect(patched.status).toBe(200);
		await settled();
		expect((await manifestOf(token)).power?.state).toBe("off");
		expect((await heartbeat(token)).power?.state).toBe("off");
		// An "on" rule above it wins.
		const open = await createPower({ name: "Open anyway", state: "on", targets: { displayIds: [display.id] }, priority: 5 });
		expect(open.status).toBe(201);
		await settled();
		expect((await manifestOf(token)).power?.state).toBe("on");
		// The preview says it too.
		const preview = await request<{ power: Power | null }>(p.api(`/displays/${display.id}/preview`), { headers: as(owner) });
		expect(preview.body.power?.state).toBe("on");
		for (const id of [rule.body.id, open.body.id]) expect((await request(p.api(`/power-schedules/${id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		await settled();
		expect((await manifestOf(token)).power).toBeNull();
	});

	it("a screen silent while scheduled off is asleep: offline with scheduledOff, no alert a minute later, no outage in uptime", async () => {
		const { display, token } = await pairDisplay<Display>(p, owner, { name: "Café sign" });
		const rule = await createPower({ name: "Closed", targets: { displayIds: [display.id] } });
		expect(rule.status).toBe(201);
		await settled();
		skew = 0;
		const from = new Date(Date.now() - 1000).toISOString();
		// Two heartbeats apart: it goes dark at the last one, after it came online (the uptime report orders transitions by time).
		await heartbeat(token);
		await sleep(300);
		await heartbeat(token);
		const asleep = await untilValue("the silent display is asleep", () => getDisplay(display.id), d => d.status === "offline");
		expect(asleep.scheduledOff).toBe(true);
		expect(await alertState(display.id)).toBeNull();
		skew = A_MINUTE_LATER;
		await sleep(SETTLE_MS);
		expect(await alertState(display.id)).toBeNull();
		// (Screens of the other cases, silent without a power-off, are alerted meanwhile: only this one counts.)
		expect(mailbox(p, owner.user.email).filter(m => m.includes("has been offline for") && m.includes("Caf"))).toHaveLength(0);
		const inApp = await request<{ rows: Array<{ type: string; data: { displayId?: string } }> }>(p.api("/notifications"), { headers: as(owner) });
		expect(inApp.body.rows.filter(n => n.data.displayId === display.id)).toEqual([]);
		skew = 0;

		// The uptime report: online, then neither — never offline. Wait until seconds counted as
		// neither show (known time falls behind elapsed time), which they never would as offline.
		const to = new Date(Date.now() + 3_600_000).toISOString();
		const report = await untilValue(
			"asleep time counted as neither online nor offline",
			() => request<{ rows: Array<{ displayId: string; offlineSec: number; onlineSec: number; outages: unknown[] }> }>(p.api(`/analytics/uptime?from=${from}&to=${to}&displayId=${display.id}`), { headers: as(owner) }),
			res => res.status === 200 && res.body.rows.length === 1 && (Date.now() - Date.parse(from)) / 1000 - (res.body.rows[0].onlineSec + res.body.rows[0].offlineSec) >= 2
		);
		expect(report.body.rows[0]).toMatchObject({ displayId: display.id, offlineSec: 0, outages: [] });
	});

	it("when the power-off ends and the screen is still dark, the outage begins there and is alerted; back online clears it", async () => {
		const { display, token } = await pairDisplay<Display>(p, owner, { name: "Door sign" });
		const rule = await createPower({ name: "Closed", targets: { displayIds: [display.id] } });
		await settled();
		skew = 0;
		await heartbeat(token);
		await untilValue("asleep", () => getDisplay(display.id), d => d.status === "offline" && d.scheduledOff);

		// The schedule changes: the screen should be on from now. A change of a power schedule has
		// the sweep ask about the tenant's sleeping displays again at once (not at the hourly check).
		const woke = new Date().toISOString();
		expect((await request(p.api(`/power-schedules/${rule.body.id}`), { method: "PATCH", headers: as(owner), json: { state: "on" } })).status).toBe(200);
		const watched = await untilValue("the outage is watched", () => alertState(display.id), s => s?.status === "watching", 10_000);
		// The outage counts from the change (when it should have lit), not from when it went dark.
		expect(Date.parse(String(watched?.offlineSince))).toBeGreaterThanOrEqual(Date.parse(woke));
		const dark = await getDisplay(display.id);
		expect(dark).toMatchObject({ status: "offline", scheduledOff: false });
		skew = A_MINUTE_LATER;
		await untilValue("the offline alert is sent", () => Promise.resolve(mailbox(p, owner.user.email).filter(m => m.includes("has been offline for") && m.includes("Door sign")).length), n => n === 1);
		skew = 0;

		await heartbeat(token);
		await untilValue("online again", () => getDisplay(display.id), d => d.status === "online" && !d.scheduledOff);
	});

	it("a silent screen whose power schedule has it on is an outage as before", async () => {
		const { display, token } = await pairDisplay<Display>(p, owner, { name: "Always on" });
		const rule = await createPower({ name: "Nobody home", state: "on", targets: { displayIds: [display.id] } });
		expect(rule.status).toBe(201);
		await settled();
		skew = 0;
		await heartbeat(token);
		await untilValue("watched", () => alertState(display.id), s => s?.status === "watching");
		expect((await getDisplay(display.id)).scheduledOff).toBe(false);
	});
});
