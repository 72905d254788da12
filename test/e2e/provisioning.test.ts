/**
 * Zero-touch provisioning as an installer uses it: an admin makes a key, screens register with it
 * (POST /device/register) and play at once — under load, under limits, and after the key is gone.
 */
import { bearer, newAccount, register, someClient, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import type { ProvisioningKeyView } from "../../shared/contracts";
import { request, type JsonResponse } from "../helpers/platform";

type KeyView = ProvisioningKeyView;
interface Registered {
	displayId: string;
	deviceToken: string;
	heartbeatIntervalSec: number;
}
interface Display {
	id: string;
	name: string;
	groupIds: string[];
	tags: string[];
	timezone: string | null;
	defaultPlaylistId: string | null;
	model: string | null;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

describe("zero-touch provisioning", () => {
	let p: Platform;
	let owner: Session;
	let groupId: string;
	let playlistId: string;

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const createKey = (s: Session, json: Record<string, unknown>) => request<KeyView & { key: string }>(p.api("/provisioning-keys"), { method: "POST", headers: as(s), json });
	/** One screen registering, as a real one does: it tries again after a 503 or 429. */
	async function registerScreen(json: Record<string, unknown>, client = someClient()): Promise<JsonResponse<Registered>> {
		for (let attempt = 0; ; attempt++) {
			const res = await request<Registered>(p.api("/device/register"), { method: "POST", headers: client, json });
			if ((res.status !== 503 && res.status !== 429) || attempt >= 20) return res;
			await sleep(50 + Math.random() * 100);
		}
	}
	const heartbeat = (token: string) => request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} });

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "1000" });
		owner = await register(p, newAccount("installer"));
		groupId = (await request<{ id: string }>(p.api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Store 42" } })).body.id;
		const item = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: as(owner), json: { name: "Welcome", url: "https://example.com/", durationMs: 10_000 } });
		playlistId = (await request<{ id: string }>(p.api("/playlists"), { method: "POST", headers: as(owner), json: { name: "Store loop", items: [{ contentId: item.body.id }] } })).body.id;
	}, 60_000);
	afterAll(() => p?.stop());

	it("registers a screen into the key's group, tags, playlist and timezone, with a token that works at once", async () => {
		const created = await createKey(owner, { name: "Store 42 rollout", groupIds: [groupId], tags: ["store-42", "lobby"], defaultPlaylistId: playlistId, timezone: "Europe/Vienna" });
		expect(created.status).toBe(201);
		expect(created.body.key).toMatch(/^mpk_[A-Za-z0-9_-]{40,}$/);
		expect(created.body.prefix).toBe(created.body.key.slice(0, 12));
		expect(created.body).toMatchObject({ name: "Store 42 rollout", groupIds: [groupId], tags: ["store-42", "lobby"], defaultPlaylistId: playlistId, timezone: "Europe/Vienna", maxDisplays: null, registeredDisplays: 0, status: "active" });

		const screen = await registerScreen({ provisioningKey: created.body.key, hardwareId: "mac-00:11:22:33:44:55", model: "Pi 5", resolution: "1920x1080" });
		expect(screen.status).toBe(201);
		expect(screen.body.heartbeatIntervalSec).toBe(30);
		const display = await request<Display>(p.api(`/displays/${screen.body.displayId}`), { headers: as(owner) });
		expect(display.body).toMatchObject({ name: "Screen mac-00:11:22:33:44:55", groupIds: [groupId], tags: ["store-42", "lobby"], timezone: "Europe/Vienna", defaultPlaylistId: playlistId, model: "Pi 5" });
		expect((await heartbeat(screen.body.deviceToken)).status).toBe(200);
		const manifest = await request<{ playlist: { id: string } | null }>(p.api("/device/manifest"), { headers: bearer(screen.body.deviceToken) });
		expect(manifest.status).toBe(200);
		expect(manifest.body.playlist?.id).toBe(playlistId);

		// The list never shows the key again.
		const list = await request<{ rows: Array<Record<string, unknown>> }>(p.api("/provisioning-keys"), { headers: as(owner) });
		expect(list.body.rows[0]).not.toHaveProperty("key");
		expect(JSON.stringify(list.body)).not.toContain(created.body.key);
		const got = await request<KeyView>(p.api(`/provisioning-keys/${created.body.id}`), { headers: as(owner) });
		expect(got.body.registeredDisplays).toBe(1);
		expect(got.body.lastUsedAt).not.toBeNull();
	});

	it("gives a re-imaged screen (same hardwareId, same key) its display back with a new token; the old one stops", async () => {
		const key = (await createKey(owner, { name: "Re-imaging" })).body.key;
		const first = await registerScreen({ provisioningKey: key, hardwareId: "serial-A1", name: "Till 1" });
		const again = await registerScreen({ provisioningKey: key, hardwareId: "serial-A1", name: "Till 1 (new image)" });
		expect(again.status).toBe(201);
		expect(again.body.displayId).toBe(first.body.displayId);
		expect(again.body.deviceToken).not.toBe(first.body.deviceToken);
		expect((await heartbeat(first.body.deviceToken)).status).toBe(401);
		expect((await heartbeat(again.body.deviceToken)).status).toBe(200);
		// Ten copies of one screen at once are still one display.
		const burst = await Promise.all(Array.from({ length: 10 }, () => registerScreen({ provisioningKey: key, hardwareId: "serial-B2" })));
		expect(burst.map(r => r.status)).toEqual(Array(10).fill(201));
		expect(new Set(burst.map(r => r.body.displayId)).size).toBe(1);
	});

	it("leaves exactly one working token when one screen registers 20 times at once", async () => {
		const key = (await createKey(owner, { name: "Impatient screen" })).body;
		const answers = await Promise.all(Array.from({ length: 20 }, () => registerScreen({ provisioningKey: key.key, hardwareId: "impatient-1" })));
		expect(answers.map(a => a.status)).toEqual(Array(20).fill(201));
		expect(new Set(answers.map(a => a.body.displayId)).size).toBe(1);
		const beats = [];
		for (const answer of answers) beats.push((await heartbeat(answer.body.deviceToken)).status);
		expect(beats.filter(status => status === 200)).toHaveLength(1);
		expect(beats.filter(status => status === 401)).toHaveLength(19);
	});

	it("makes exactly 500 displays when 500 screens register at once, each in the group with a working token", async () => {
		const key = (await createKey(owner, { name: "Big rollout", groupIds: [groupId] })).body;
		const before = (await request<{ total: number }>(p.api(`/displays?groupId=${groupId}&pageSize=1`), { headers: as(owner) })).body.total;
		const answers = await Promise.all(Array.from({ length: 500 }, (_, i) => registerScreen({ provisioningKey: key.key, hardwareId: `rollout-${i}` })));
		expect(answers.filter(a => a.status !== 201).map(a => `${a.status} ${a.text}`)).toEqual([]);
		expect(new Set(answers.map(a => a.body.displayId)).size).toBe(500);
		expect((await request<KeyView>(p.api(`/provisioning-keys/${key.id}`), { headers: as(owner) })).body.registeredDisplays).toBe(500);
		const inGroup = await request<{ total: number }>(p.api(`/displays?groupId=${groupId}&pageSize=1`), { headers: as(owner) });
		expect(inGroup.body.total - before).toBe(500);
		const beats = await Promise.all(answers.map(a => heartbeat(a.body.deviceToken)));
		expect(beats.filter(b => b.status !== 200)).toEqual([]);
	}, 120_000);

	it("lets 100 screens behind one router register at once, first time, with no 429 or 503: a site boots together", async () => {
		const key = (await createKey(owner, { name: "One site" })).body;
		const router = someClient();
		const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => request<Registered>(p.api("/device/register"), { method: "POST", headers: router, json: { provisioningKey: key.key, hardwareId: `site-${i}` } })));
		expect(answers.map(a => a.status)).toEqual(Array(100).fill(201));
		// The same router then presenting a wrong key is still held to 30 failures.
		const wrong = [];
		for (let i = 0; i < 31; i++) wrong.push((await request(p.api("/device/register"), { method: "POST", headers: router, json: { provisioningKey: `mpk_${String(i).padStart(43, "w")}`, hardwareId: "w" } })).status);
		expect(wrong).toEqual([...Array(30).fill(401), 429]);
	}, 60_000);

	it("never passes the key's maxDisplays, even at once; a known screen still re-registers; a deleted display frees its place", async () => {
		const key = (await createKey(owner, { name: "Ten only", maxDisplays: 10 })).body;
		const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => registerScreen({ provisioningKey: key.key, hardwareId: `capped-${i}` })));
		const made = answers.filter(a => a.status === 201);
		expect(made).toHaveLength(10);
		expect(answers.filter(a => a.status === 409)).toHaveLength(30);
		const view = await request<KeyView>(p.api(`/provisioning-keys/${key.id}`), { headers: as(owner) });
		expect(view.body).toMatchObject({ registeredDisplays: 10, status: "full" });
		const known = answers.findIndex(a => a.status === 201);
		expect((await registerScreen({ provisioningKey: key.key, hardwareId: `capped-${known}` })).status).toBe(201);
		expect((await request(p.api(`/displays/${made[0].body.displayId}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await registerScreen({ provisioningKey: key.key, hardwareId: "capped-late" })).status).toBe(201);
		expect((await registerScreen({ provisioningKey: key.key, hardwareId: "capped-later" })).status).toBe(409);
	}, 60_000);

	it("stops a revoked or expired key at once, with the same 401 as an unknown one; its displays keep playing", async () => {
		const key = (await createKey(owner, { name: "Short-lived", expiresAt: new Date(Date.now() + 3_600_000).toISOString() })).body;
		const screen = await registerScreen({ provisioningKey: key.key, hardwareId: "rev-1" });
		expect(screen.status).toBe(201);
		expect((await request(p.api(`/provisioning-keys/${key.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const revoked = await registerScreen({ provisioningKey: key.key, hardwareId: "rev-2" });
		const unknown = await registerScreen({ provisioningKey: `mpk_${"x".repeat(43)}`, hardwareId: "rev-2" });
		expect(revoked.status).toBe(401);
		expect(unknown.status).toBe(401);
		expect((revoked.body as unknown as { error: { message: string } }).error.message).toBe((unknown.body as unknown as { error: { message: string } }).error.message);
		expect((await request<KeyView>(p.api(`/provisioning-keys/${key.id}`), { headers: as(owner) })).body.status).toBe("revoked");
		expect((await heartbeat(screen.body.deviceToken)).status).toBe(200);

		// Expiry: the key's date moved into the past (a test cannot wait an hour).
		const expiring = (await createKey(owner, { name: "Expiring", expiresAt: new Date(Date.now() + 3_600_000).toISOString() })).body;
		const devices = p.broker.getLocalService("devices") as unknown as { db: { provisioning_keys: { updateWhere(scope: unknown, q: unknown, c: unknown): Promise<number> } } };
		const { systemScope } = await import("../../mixins/db.mixin");
		await devices.db.provisioning_keys.updateWhere(systemScope(owner.tenant.id), { _id: expiring.id }, { expiresAt: new Date(Date.now() - 1000).toISOString() });
		expect((await registerScreen({ provisioningKey: expiring.key, hardwareId: "exp-1" })).status).toBe(401);
		expect((await request<KeyView>(p.api(`/provisioning-keys/${expiring.id}`), { headers: as(owner) })).body.status).toBe("expired");
	});

	it("answers a plan's limit with 402 and never passes it", async () => {
		const small = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "3" });
		try {
			const admin = await register(small, newAccount("small"));
			const res = await request<KeyView & { key: string }>(small.api("/provisioning-keys"), { method: "POST", headers: as(admin), json: { name: "Too many" } });
			const answers = await Promise.all(
				Array.from({ length: 8 }, (_, i) => request(small.api("/device/register"), { method: "POST", headers: someClient(), json: { provisioningKey: res.body.key, hardwareId: `plan-${i}` } }))
			);
			expect(answers.filter(a => a.status === 201)).toHaveLength(3);
			expect(answers.filter(a => a.status === 402)).toHaveLength(5);
		} finally {
			await small.stop();
		}
	});

	it("refuses bad keys and bad bodies, and slows down an address that keeps guessing", async () => {
		const bad: Array<[Record<string, unknown>, number]> = [
			[{ provisioningKey: "not-a-key", hardwareId: "x" }, 401],
			[{ provisioningKey: "", hardwareId: "x" }, 422],
			[{ provisioningKey: "mpk_abc" }, 422],
			[{ hardwareId: "x" }, 422],
			[{ provisioningKey: { $gt: "" }, hardwareId: "x" }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "x".repeat(129) }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "x", resolution: "big" }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "\u202egnp.exe" }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "a\u0000b" }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "\u200b" }, 422],
			[{ provisioningKey: "mpk_" + "a".repeat(43), hardwareId: "   " }, 422]
		];
		const client = someClient();
		for (const [json, status] of bad) expect((await request(p.api("/device/register"), { method: "POST", headers: client, json })).status).toBe(status);
		const guesser = someClient();
		const statuses: number[] = [];
		for (let i = 0; i < 32; i++) statuses.push((await request(p.api("/device/register"), { method: "POST", headers: guesser, json: { provisioningKey: `mpk_${String(i).padStart(43, "g")}`, hardwareId: "g" } })).status);
		expect(statuses.slice(0, 30)).toEqual(Array(30).fill(401));
		expect(statuses.slice(30)).toEqual([429, 429]);
	});

	it("keeps every key the tenant's own, and refuses bad ones at creation with 422", async () => {
		const other = await register(p, newAccount("neighbour"));
		const theirs = (await createKey(other, { name: "Theirs" })).body;
		expect((await request(p.api(`/provisioning-keys/${theirs.id}`), { headers: as(owner) })).status).toBe(404);
		expect((await request(p.api(`/provisioning-keys/${theirs.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(404);
		const list = await request<{ rows: KeyView[] }>(p.api("/provisioning-keys?pageSize=100"), { headers: as(owner) });
		expect(list.body.rows.map(r => r.id)).not.toContain(theirs.id);
		const invalid: Array<Record<string, unknown>> = [
			{ name: "x", groupIds: [theirs.id] },
			{ name: "x", timezone: "Moon/Base" },
			{ name: "x", maxDisplays: 0 },
			{ name: "x", expiresAt: "2020-01-01T00:00:00Z" },
			{ name: "" }
		];
		for (const json of invalid) expect((await createKey(owner, json)).status).toBe(422);
	});

	it("can default its screens to a layout (not both a layout and a playlist); a deleted layout leaves the key", async () => {
		const layout = await request<{ id: string }>(p.api("/layouts"), {
			method: "POST",
			headers: as(owner),
			json: { name: "Store wall", width: 16, height: 9, zones: [{ name: "Main", x: 0, y: 0, width: 1, height: 1, playlistId }] }
		});
		expect(layout.status).toBe(201);
		const both = await createKey(owner, { name: "Both", defaultPlaylistId: playlistId, defaultLayoutId: layout.body.id });
		expect(both.status).toBe(422);
		const other = await register(p, newAccount("layout-neighbour"));
		expect((await createKey(other, { name: "Not theirs", defaultLayoutId: layout.body.id })).status).toBe(422);

		const key = await createKey(owner, { name: "Wall screens", defaultLayoutId: layout.body.id });
		expect(key.status).toBe(201);
		expect(key.body).toMatchObject({ defaultLayoutId: layout.body.id, defaultPlaylistId: null });
		const screen = await registerScreen({ provisioningKey: key.body.key, hardwareId: "wall-1" });
		expect(screen.status).toBe(201);
		const display = await request<Display & { defaultLayoutId: string | null }>(p.api(`/displays/${screen.body.displayId}`), { headers: as(owner) });
		expect(display.body).toMatchObject({ defaultLayoutId: layout.body.id, defaultPlaylistId: null });
		const manifest = await request<{ source: string; layout: { id: string } | null }>(p.api("/device/manifest"), { headers: bearer(screen.body.deviceToken) });
		expect(manifest.body).toMatchObject({ source: "default", layout: { id: layout.body.id } });

		expect((await request(p.api(`/layouts/${layout.body.id}?force=true`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await request<KeyView & { defaultLayoutId: string | null }>(p.api(`/provisioning-keys/${key.body.id}`), { headers: as(owner) })).body.defaultLayoutId).toBeNull();
	});

	it("drops a deleted group from its keys and a deleted playlist from their defaults", async () => {
		const group = (await request<{ id: string }>(p.api("/display-groups"), { method: "POST", headers: as(owner), json: { name: "Temporary" } })).body.id;
		const item = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: as(owner), json: { name: "Temp", url: "https://example.com/t", durationMs: 5000 } });
		const playlist = (await request<{ id: string }>(p.api("/playlists"), { method: "POST", headers: as(owner), json: { name: "Temp loop", items: [{ contentId: item.body.id }] } })).body.id;
		const key = (await createKey(owner, { name: "Follows", groupIds: [group, groupId], defaultPlaylistId: playlist })).body;
		expect((await request(p.api(`/display-groups/${group}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await request(p.api(`/playlists/${playlist}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const after = await request<KeyView>(p.api(`/provisioning-keys/${key.id}`), { headers: as(owner) });
		expect(after.body).toMatchObject({ groupIds: [groupId], defaultPlaylistId: null });
		const screen = await registerScreen({ provisioningKey: key.key, hardwareId: "follows-1" });
		const display = await request<Display>(p.api(`/displays/${screen.body.displayId}`), { headers: as(owner) });
		expect(display.body).toMatchObject({ groupIds: [groupId], defaultPlaylistId: null });
	});
});
