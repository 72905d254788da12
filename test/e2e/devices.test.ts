/**
 * Devices over HTTP: the pairing flow from both sides, displays and groups, commands through
 * heartbeats, device tokens, quotas and bad device input.
 */
import { systemScope, type GlobalCollection, type TenantCollection } from "../../mixins/db.mixin";
import DevicesService from "../../services/devices.service";
import type { CommandDoc } from "../../services/devices/commands";
import type { DisplayDoc, DisplayGroupDoc } from "../../services/devices/displays";
import type { PairingDoc } from "../../services/devices/pairing";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, newAccount, pairDisplay as pairWholeFlow, register, someClient, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { closeStreams, connect, isEvent } from "../helpers/sse";
import { presenceKeys } from "../../services/devices/presence";
import type { KeyValueStore } from "../../shared/kv";
import { until } from "../helpers/until";

interface Pairing {
	pairingId: string;
	code: string;
	pollSecret: string;
	expiresAt: string;
}

interface Display {
	id: string;
	name: string;
	status: string;
	timezone: string | null;
	tags: string[];
	groupIds: string[];
	lastSeenAt: string | null;
	metrics: Record<string, number> | null;
	appVersion: string | null;
}

describe("devices", () => {
	let p: Platform;
	let owner: Session & { password: string };

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "1000" }, [DevicesService]);
		owner = await register(p, newAccount("screens"));
	});
	afterAll(() => p.stop());

	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	/** What these tests reach inside the devices service: its collections and its sweep. */
	const internals = () =>
		p.broker.getLocalService("devices") as unknown as {
			db: { displays: TenantCollection<DisplayDoc>; display_groups: TenantCollection<DisplayGroupDoc>; commands: TenantCollection<CommandDoc>; pairings: GlobalCollection<PairingDoc> };
			kv: KeyValueStore;
			sweepOnce(): Promise<void>;
		};

	async function startPairing(): Promise<Pairing> {
		const res = await request<Pairing>(p.api("/device/pairing"), { method: "POST", headers: someClient(), json: { hardwareId: "hw-1", model: "TV", resolution: "1920x1080" } });
		expect(res.status).toBe(201);
		return res.body;
	}

	const poll = (pairing: Pairing, secret = pairing.pollSecret) =>
		request<{ status: string; displayId?: string; deviceToken?: string; heartbeatIntervalSec?: number }>(p.api(`/device/pairing/${pairing.pairingId}`), {
			headers: { "X-Pairing-Secret": secret }
		});

	const pairDisplay = (session: { accessToken: string } = owner, fields: Record<string, unknown> = {}) => pairWholeFlow<Display>(p, session, fields);

	describe("pairing", () => {
		it("the whole flow: code, admin pairs it, the next poll hands out the token exactly once", async () => {
			const pairing = await startPairing();
			expect(pairing.code).toMatch(/^[ACDEFGHJKMNPQRTUVWXY34679]{6}$/);
			expect(pairing.pollSecret).toMatch(/^mps_/);
			const remaining = Date.parse(pairing.expiresAt) - Date.now();
			expect(remaining).toBeGreaterThan(14 * 60_000);
			expect(remaining).toBeLessThanOrEqual(15 * 60_000);
			expect((await poll(pairing)).body).toEqual({ status: "pending" });

			const paired = await request<Display>(p.api("/displays/pair"), {
				method: "POST",
				headers: as(owner),
				json: { code: pairing.code.toLowerCase(), name: "Front window", timezone: "America/New_York", tags: ["street", "street"] }
			});
			expect(paired.status).toBe(201);
			expect(paired.headers.get("location")).toBe(`/api/v1/displays/${paired.body.id}`);
			expect(paired.body).toMatchObject({ name: "Front window", status: "pending", timezone: "America/New_York", tags: ["street"], groupIds: [] });

			const first = await poll(pairing);
			expect(first.status).toBe(200);
			expect(first.body).toMatchObject({ status: "paired", displayId: paired.body.id, heartbeatIntervalSec: 30 });
			expect(first.body.deviceToken).toMatch(/^ey/);
			expect((await poll(pairing)).status).toBe(404);

			const hb = await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(String(first.body.deviceToken)), json: {} });
			expect(hb.status).toBe(200);
		});

		it("a used, unknown or foreign-tenant code answers 404; a wrong poll secret answers 404", async () => {
			const pairing = await startPairing();
			expect((await poll(pairing, "mps_wrongwrongwrongwrong")).status).toBe(404);
			expect((await request(p.api(`/device/pairing/${pairing.pairingId}`))).status).toBe(404);
			await request(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Once" } });
			const again = await request<ErrorBody>(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Twice" } });
			expect(again.status).toBe(404);
			const other = await register(p, newAccount("rival"));
			expect((await request(p.api("/displays/pair"), { method: "POST", headers: as(other), json: { code: pairing.code, name: "Stolen" } })).status).toBe(404);
			expect((await request(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: "ACDEFG", name: "Nope" } })).status).toBe(404);
		});

		it("an expired code answers 404", async () => {
			const pairing = await startPairing();
			await internals().db.pairings.updateWhere({ _id: pairing.pairingId }, { expiresAt: new Date(Date.now() - 1000).toISOString() });
			expect((await request(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Late" } })).status).toBe(404);
			expect((await poll(pairing)).status).toBe(404);
		});

		it("pairing past the plan's display limit answers 402 QUOTA_EXCEEDED and leaves the code usable", async () => {
			const small = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "2" }, [DevicesService]);
			try {
				const tenant = await register(small, newAccount("quota"));
				const pairOn = async () => {
					const pairing = (await request<Pairing>(small.api("/device/pairing"), { method: "POST", headers: someClient(), json: {} })).body;
					return { pairing, res: await request<ErrorBody>(small.api("/displays/pair"), { method: "POST", headers: as(tenant), json: { code: pairing.code, name: "Screen" } }) };
				};
				expect((await pairOn()).res.status).toBe(201);
				expect((await pairOn()).res.status).toBe(201);
				const over = await pairOn();
				expect(over.res.status).toBe(402);
				expect(over.res.body.error).toMatchObject({ type: "QUOTA_EXCEEDED", data: { resource: "displays", limit: 2, current: 2 } });
				const listed = await request<{ total: number }>(small.api("/displays"), { headers: as(tenant) });
				expect(listed.body.total).toBe(2);
				const poll = await request<{ status: string }>(small.api(`/device/pairing/${over.pairing.pairingId}`), { headers: { "X-Pairing-Secret": over.pairing.pollSecret } });
				expect(poll.body).toEqual({ status: "pending" });
				// On a full plan an unknown code answers exactly like a live one: the answer confirms no code.
				const bogus = await request<ErrorBody>(small.api("/displays/pair"), { method: "POST", headers: as(tenant), json: { code: "AAAAAA", name: "Screen" } });
				expect(bogus.status).toBe(402);
				expect(bogus.body.error).toEqual({ ...over.res.body.error, requestId: bogus.body.error.requestId });
			} finally {
				await small.stop();
			}
		});

		it("wrong codes are bounded per tenant: past 20 in an hour even a live code answers 429 for that tenant, not for others", async () => {
			const guesser = await register(p, newAccount("guesser"));
			const guess = (code: string, who: Session = guesser) => request<ErrorBody>(p.api("/displays/pair"), { method: "POST", headers: as(who), json: { code, name: "Guess" } });
			const wrong: number[] = [];
			for (let i = 0; i < 20; i++) wrong.push((await guess(`AAAA${"ACDEFGHJKMNPQRTUVWXY"[i]}A`)).status);
			expect(wrong).toEqual(Array(20).fill(404));
			const live = await startPairing();
			const held = await guess(live.code);
			expect(held.status).toBe(429);
			expect(Number(held.headers.get("retry-after"))).toBeGreaterThan(0);
			// An API key is the same tenant: no way around it with more principals.
			const key = await request<{ key: string }>(p.api("/api-keys"), { method: "POST", headers: as(guesser), json: { name: "more guesses", role: "admin" } });
			expect((await request(p.api("/displays/pair"), { method: "POST", headers: bearer(key.body.key), json: { code: live.code, name: "Guess" } })).status).toBe(429);
			// Another tenant pairs the code as usual.
			expect((await guess(live.code, owner)).status).toBe(201);
		});

		it("a display deleted before its screen collected the token: the next poll hands out none", async () => {
			const pairing = await startPairing();
			const paired = await request<Display>(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Short-lived" } });
			expect(paired.status).toBe(201);
			expect((await request(p.api(`/displays/${paired.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			const polled = await poll(pairing);
			expect(polled.status).toBe(404);
			expect(polled.body.deviceToken).toBeUndefined();
		});

		it("pairing requests are limited per address", async () => {
			const client = someClient();
			let limited = 0;
			for (let i = 0; i < 22; i++) {
				const res = await request(p.api("/device/pairing"), { method: "POST", headers: client, json: {} });
				if (res.status === 429) limited++;
			}
			expect(limited).toBe(2);
		});
	});

	describe("displays and groups", () => {
		it("CRUD with groups and tags; list filters by tag, group, status and text; pagination", async () => {
			const group = await request<{ id: string; name: string }>(p.api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Ground floor", description: "Lobby and café" } });
			expect(group.status).toBe(201);
			const { display } = await pairDisplay(owner, { name: "Café menu", tags: ["menu"], groupIds: [group.body.id] });
			const badGroup = await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { groupIds: ["01a20000-0000-7000-8000-000000000000"] } });
			expect(badGroup.status).toBe(422);
			const badZone = await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { timezone: "Nowhere/Land" } });
			expect(badZone.status).toBe(422);
			const patched = await request<Display>(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { name: "Café menu board", tags: ["menu", "food"], timezone: "Europe/London", tenantId: "x" } });
			expect(patched.status).toBe(200);
			expect(patched.body).toMatchObject({ name: "Café menu board", tags: ["menu", "food"], timezone: "Europe/London", groupIds: [group.body.id] });

			const byTag = await request<{ rows: Display[]; total: number }>(p.api("/displays?tag=food"), { headers: as(owner) });
			expect(byTag.body.rows.map(d => d.id)).toEqual([display.id]);
			const byGroup = await request<{ rows: Display[] }>(p.api(`/displays?groupId=${group.body.id}`), { headers: as(owner) });
			expect(byGroup.body.rows.map(d => d.id)).toEqual([display.id]);
			const byText = await request<{ rows: Display[] }>(p.api("/displays?q=CAFÉ"), { headers: as(owner) });
			expect(byText.body.rows.map(d => d.id)).toEqual([display.id]);
			const pending = await request<{ rows: Display[] }>(p.api("/displays?status=pending&pageSize=1"), { headers: as(owner) });
			expect(pending.body).toMatchObject({ page: 1, pageSize: 1 });
			expect(pending.body.rows).toHaveLength(1);
			expect((await request(p.api("/displays?status=broken"), { headers: as(owner) })).status).toBe(422);

			const groups = await request<{ rows: Array<{ id: string }> }>(p.api("/display-groups"), { headers: as(owner) });
			expect(groups.body.rows.map(g => g.id)).toContain(group.body.id);
			expect((await request(p.api(`/display-groups/${group.body.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			const after = await request<Display>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(after.body.groupIds).toEqual([]);
		});

		it("a deleted display's token answers 401 at once", async () => {
			const { display, token } = await pairDisplay();
			expect((await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} })).status).toBe(200);
			expect((await request(p.api(`/displays/${display.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			expect((await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} })).status).toBe(401);
			expect((await request(p.api(`/displays/${display.id}`), { headers: as(owner) })).status).toBe(404);
		});

		it("device and user tokens do not cross: a device token on a user route and a user token on a device route answer 401", async () => {
			const { token } = await pairDisplay();
			expect((await request(p.api("/displays"), { headers: bearer(token) })).status).toBe(401);
			expect((await request(p.api("/tenant"), { headers: bearer(token) })).status).toBe(401);
			expect((await request(p.api("/device/heartbeat"), { method: "POST", headers: as(owner), json: {} })).status).toBe(401);
		});

		it("viewers read displays but cannot pair, edit or command them", async () => {
			const viewerAccount = newAccount("watcher");
			await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: viewerAccount.email, role: "viewer" } });
			const { tokenFromMail } = await import("../helpers/accounts");
			const token = await tokenFromMail(p, viewerAccount.email, "accept-invitation");
			const viewer = (await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token, name: "Viewer", password: viewerAccount.password } })).body;
			const { display } = await pairDisplay();
			expect((await request(p.api(`/displays/${display.id}`), { headers: as(viewer) })).status).toBe(200);
			expect((await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(viewer), json: { name: "x" } })).status).toBe(403);
			expect((await request(p.api(`/displays/${display.id}/commands`), { method: "POST", headers: as(viewer), json: { type: "reboot" } })).status).toBe(403);
			expect((await request(p.api("/displays/pair"), { method: "POST", headers: as(viewer), json: { code: "ACDEFG", name: "x" } })).status).toBe(403);
		});
	});

	describe("heartbeats and commands", () => {
		it("a heartbeat marks the display online with its presence and answers the server's view", async () => {
			const { display, token } = await pairDisplay();
			const hb = await request<{ serverTime: string; manifestEtag: string | null; heartbeatIntervalSec: number; commands: unknown[] }>(p.api("/device/heartbeat"), {
				method: "POST",
				headers: bearer(token),
				json: { metrics: { cpu: 12.5, memory: 40, disk: 70, temperature: 48 }, appVersion: "2.4.1", currentContentId: "c-1", uptimeSec: 3600 }
			});
			expect(hb.status).toBe(200);
			expect(Object.keys(hb.body).sort()).toEqual(["commands", "heartbeatIntervalSec", "manifestEtag", "power", "serverTime"]);
			// No power schedule reaches it: always on (null).
			expect(hb.body).toMatchObject({ heartbeatIntervalSec: 30, commands: [], power: null });
			expect(Math.abs(Date.parse(hb.body.serverTime) - Date.now())).toBeLessThan(5000);
			const got = await request<Display>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(got.body).toMatchObject({ status: "online", appVersion: "2.4.1", metrics: { cpu: 12.5, memory: 40, disk: 70, temperature: 48 } });
			expect(got.body.lastSeenAt).toBe(hb.body.serverTime);

			// A heartbeat that sends nothing else changes only the time it was seen.
			const bare = await request<{ serverTime: string }>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
			expect(bare.status).toBe(200);
			const after = await request<Display & { currentContentId: string | null }>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(after.body).toMatchObject({ appVersion: "2.4.1", currentContentId: "c-1", metrics: { cpu: 12.5, memory: 40, disk: 70, temperature: 48 } });
			expect(after.body.lastSeenAt).toBe(bare.body.serverTime);
			// What is sent replaces what was known.
			await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: { metrics: { cpu: 1, memory: 2, disk: 3 }, appVersion: "2.5.0" } });
			const updated = await request<Display>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(updated.body).toMatchObject({ appVersion: "2.5.0", metrics: { cpu: 1, memory: 2, disk: 3 } });
		});

		it("a queued command arrives in the next heartbeat, is delivered until acknowledged, then no longer", async () => {
			const { display, token } = await pairDisplay();
			const queued = await request<{ id: string; type: string; status: string; createdAt: string }>(p.api(`/displays/${display.id}/commands`), {
				method: "POST",
				headers: as(owner),
				json: { type: "screenshot" }
			});
			expect(queued.status).toBe(202);
			expect(queued.body).toEqual({ id: expect.any(String), type: "screenshot", status: "pending", createdAt: expect.any(String) });
			const beat = () => request<{ commands: Array<{ id: string; type: string; createdAt: string }> }>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
			expect((await beat()).body.commands).toEqual([{ id: queued.body.id, type: "screenshot", createdAt: queued.body.createdAt }]);
			await new Promise(resolve => setTimeout(resolve, 30));
			const listed = await request<{ rows: Array<{ id: string; status: string }> }>(p.api(`/displays/${display.id}/commands`), { headers: as(owner) });
			expect(listed.body.rows[0]).toMatchObject({ id: queued.body.id, status: "delivered" });
			expect((await beat()).body.commands.map(c => c.id)).toEqual([queued.body.id]);

			expect((await request(p.api(`/device/commands/${queued.body.id}/ack`), { method: "POST", headers: bearer(token), json: { result: "ok" } })).status).toBe(204);
			expect((await beat()).body.commands).toEqual([]);
			const after = await request<{ rows: Array<{ id: string; status: string; result: string }> }>(p.api(`/displays/${display.id}/commands`), { headers: as(owner) });
			expect(after.body.rows[0]).toMatchObject({ status: "acknowledged", result: "ok" });
		});

		it("a queued command also reaches the display's live stream at once, and only that display's", async () => {
			const { display, token } = await pairDisplay();
			const other = await pairDisplay();
			const stream = await connect(p.url, token);
			const otherStream = await connect(p.url, other.token);
			try {
				expect(stream.status).toBe(200);
				await stream.waitFor(b => b.comments.includes("connected"));
				const queued = await request<{ id: string; createdAt: string }>(p.api(`/displays/${display.id}/commands`), { method: "POST", headers: as(owner), json: { type: "reload" } });
				const block = await stream.waitFor(isEvent("command"));
				expect(JSON.parse(String(block.data))).toEqual({ id: queued.body.id, type: "reload", createdAt: queued.body.createdAt });
				// The other display's own command, queued after: by the time it arrives, the first would have.
				const own = await request<{ id: string }>(p.api(`/displays/${other.display.id}/commands`), { method: "POST", headers: as(owner), json: { type: "screenshot" } });
				await otherStream.waitFor(isEvent("command"));
				expect(otherStream.blocks.filter(isEvent("command")).map(b => (JSON.parse(String(b.data)) as { id: string }).id)).toEqual([own.body.id]);
			} finally {
				closeStreams();
			}
		});

		it("a display cannot acknowledge another display's command; unknown command types answer 422", async () => {
			const a = await pairDisplay();
			const b = await pairDisplay();
			const queued = await request<{ id: string }>(p.api(`/displays/${a.display.id}/commands`), { method: "POST", headers: as(owner), json: { type: "reboot" } });
			expect((await request(p.api(`/device/commands/${queued.body.id}/ack`), { method: "POST", headers: bearer(b.token), json: {} })).status).toBe(404);
			expect((await request(p.api(`/displays/${a.display.id}/commands`), { method: "POST", headers: as(owner), json: { type: "self-destruct" } })).status).toBe(422);
		});

		it("commands expire after 24 h", async () => {
			const { display, token } = await pairDisplay();
			const queued = await request<{ id: string }>(p.api(`/displays/${display.id}/commands`), { method: "POST", headers: as(owner), json: { type: "reload" } });
			const devices = internals();
			await devices.db.commands.updateWhere(systemScope(owner.tenant.id), { _id: queued.body.id }, { expiresAt: new Date(Date.now() - 1000).toISOString() });
			await devices.sweepOnce();
			const hb = await request<{ commands: unknown[] }>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
			expect(hb.body.commands).toEqual([]);
			const listed = await request<{ rows: Array<{ id: string; status: string }> }>(p.api(`/displays/${display.id}/commands`), { headers: as(owner) });
			expect(listed.body.rows[0]).toMatchObject({ id: queued.body.id, status: "expired" });
		});

		it.each([
			["wrong types", { metrics: { cpu: "high" } }],
			["a number out of range", { metrics: { cpu: 250 } }],
			["unknown fields", { metrics: { cpu: 1 }, firmware: "x" }],
			["unknown metric fields", { metrics: { cpu: 1, gpu: 3 } }],
			["a huge array", { appVersion: Array.from({ length: 10_000 }, () => "x") }],
			["an operator", { appVersion: { $gt: "" } }],
			["a negative uptime", { uptimeSec: -1 }]
		])("a heartbeat with %s answers 422 and changes nothing", async (_name, body) => {
			const { display, token } = await pairDisplay();
			const before = await request<Display>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			const res = await request<ErrorBody>(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: body });
			expect(res.status).toBe(422);
			expect(res.body.error.type).toBe("VALIDATION_ERROR");
			const after = await request<Display>(p.api(`/displays/${display.id}`), { headers: as(owner) });
			expect(after.body).toEqual(before.body);
			expect(after.body.status).toBe("pending");
		});
	});

	describe("a mass outage", () => {
		it("turns 1 500 silent displays offline in one sweep while a heartbeat sent as it began is answered long before it ends; the screen that sent it stays online", async () => {
			const region = await register(p, newAccount("region"));
			const { display: returning, token } = await pairDisplay(region);
			const devices = internals();
			const scope = systemScope(region.tenant.id);
			const silentSince = String(Date.now() - 3600_000);
			const silence = async (id: string) => {
				await devices.kv.set(presenceKeys.lastSeen(id), silentSince);
				await devices.kv.set(presenceKeys.status(id), "online");
			};
			for (let i = 0; i < 1500; i++) {
				const doc = await devices.db.displays.insertDoc(scope, { name: `Region screen ${i}`, status: "online", timezone: null, tags: [], groupIds: [], defaultPlaylistId: null, hardwareId: null, model: null, resolution: null });
				await silence(doc.id);
			}
			// The screen that heartbeats during the sweep was silent too: whichever side of its
			// heartbeat the sweep finds it, it ends online.
			await devices.db.displays.updateWhere(scope, { _id: returning.id }, { status: "online" });
			await silence(returning.id);
			const finished: string[] = [];
			const sweep = devices.sweepOnce().then(() => finished.push("sweep"));
			const beat = request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} }).then(res => finished.push(`heartbeat ${res.status}`));
			await Promise.all([sweep, beat]);
			// The sweep yields to other requests as it goes: before, it held the event loop throughout.
			expect(finished).toEqual(["heartbeat 200", "sweep"]);
			expect(await devices.db.displays.countDocs(scope, { status: "offline", _id: { $ne: returning.id } })).toBe(1500);
			await until("the returning display online", async () => (await devices.db.displays.getDoc(scope, returning.id))?.status === "online");
			expect((await devices.db.displays.getDoc(scope, returning.id))?.status).toBe("online");
			expect(await devices.kv.get(presenceKeys.status(returning.id))).toBe("online");
		}, 60_000);
	});

	describe("a restart that forgot presence (the embedded store starts empty; a Redis lost its data)", () => {
		it("is nobody's outage: online screens stay online through the sweeps and come back without a 'came online' (whether their heartbeat or the sweep comes first); a dead one goes offline a cutoff later", async () => {
			const site = await register(p, newAccount("restarted"));
			const early = await pairDisplay(site);
			const late = await pairDisplay(site);
			const dead = await pairDisplay(site);
			const devices = internals();
			const scope = systemScope(site.tenant.id);
			const events: string[] = [];
			const watcher = `restart-watch-${Date.now()}`;
			p.broker.createService({
				name: watcher,
				events: {
					"devices.display.wentOffline"(ctx: { params: { displayId: string } }) {
						events.push(`offline ${ctx.params.displayId}`);
					},
					"devices.display.cameOnline"(ctx: { params: { displayId: string } }) {
						events.push(`online ${ctx.params.displayId}`);
					},
					[`${watcher}.marker`]() {
						events.push("marker");
					}
				}
			});
			/** The events so far: a marker emitted now arrives after any the requests before it set off. */
			const eventsSoFar = async () => {
				await p.broker.emit(`${watcher}.marker`);
				await until("the marker event", () => events.includes("marker"));
				return events.splice(0).filter(e => e !== "marker");
			};
			const heartbeat = async (d: { token: string }) => (await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(d.token), json: {} })).status;
			for (const d of [early, late, dead]) expect(await heartbeat(d)).toBe(200);
			await until("the documents online", async () => (await devices.db.displays.findDocs(scope, { status: "online" })).length === 3);
			expect(await eventsSoFar()).toHaveLength(3);

			// The restart: the store has forgotten them all; their documents still say online.
			for (const d of [early, late, dead]) for (const key of Object.values(presenceKeys)) await devices.kv.del(key(d.display.id));
			// One screen's heartbeat arrives before the first sweep after the restart…
			expect(await heartbeat(early)).toBe(200);
			const restartedAt = Date.now();
			await devices.sweepOnce();
			// …the silence of the others is counted from that sweep…
			expect(Number(await devices.kv.get(presenceKeys.lastSeen(dead.display.id)))).toBeGreaterThanOrEqual(restartedAt);
			await devices.sweepOnce();
			expect(await devices.db.displays.findDocs(scope, { status: "online" })).toHaveLength(3);
			// …and another's heartbeat comes after it: neither was away.
			expect(await heartbeat(late)).toBe(200);
			expect(await heartbeat(early)).toBe(200);
			expect(await eventsSoFar()).toEqual([]);

			// The dead one stays silent past its tenant's cutoff (90 s by default), counted from the
			// first sweep after the restart: then, and only then, it goes offline…
			await devices.kv.set(presenceKeys.lastSeen(dead.display.id), String(Date.now() - 91_000));
			await devices.sweepOnce();
			expect((await devices.db.displays.getDoc(scope, early.display.id))?.status).toBe("online");
			expect((await devices.db.displays.getDoc(scope, late.display.id))?.status).toBe("online");
			expect((await devices.db.displays.getDoc(scope, dead.display.id))?.status).toBe("offline");
			expect(await eventsSoFar()).toEqual([`offline ${dead.display.id}`]);
			// …and its return is one.
			expect(await heartbeat(dead)).toBe(200);
			expect(await eventsSoFar()).toEqual([`online ${dead.display.id}`]);
		});
	});

	describe("tenant deletion", () => {
		it("removes displays, groups, tokens and presence", async () => {
			const doomed = await register(p, newAccount("gone"));
			const { token } = await pairDisplay(doomed);
			await request(p.api("/display-groups"), { method: "POST", headers: as(doomed), json: { name: "G" } });
			await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });
			expect((await request(p.api("/tenant"), { method: "DELETE", headers: as(doomed), json: { confirm: doomed.tenant.name } })).status).toBe(204);
			const { db } = internals();
			const scope = systemScope(doomed.tenant.id);
			const left = () => Promise.all([db.displays.findDocs(scope), db.display_groups.findDocs(scope), db.commands.findDocs(scope)]);
			await until("the tenant's devices documents gone", async () => (await left()).every(c => c.length === 0));
			for (const docs of await left()) expect(docs).toEqual([]);
			expect((await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} })).status).toBe(401);
		});
	});
});
