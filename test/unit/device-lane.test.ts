/**
 * The device lane's pure parts: which routes take it (services/api/device-lane.ts), how an
 * answer is written, and the device tokens the gateway remembers (device-principals.ts) — served
 * only while the version auth publishes still names them (shared/contracts/auth.ts).
 */
import type { ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { deviceTokenVersion, deviceVersionKey } from "../../shared/contracts";
import { MemoryKeyValueStore } from "../../shared/kv";
import type { Principal } from "../../shared/rbac";
import { forgetDevices, mintDeviceToken, resolveDeviceToken } from "../../services/auth/device-credentials";
import { signAccessToken, signingKeys } from "../../services/auth/tokens";
import { laneRouteOf, laneRoutes, writeAnswer } from "../../services/api/device-lane";
import { DevicePrincipals } from "../../services/api/device-principals";
import { fakeCredentials } from "../helpers/device-credentials";

const KEYS = signingKeys("unit-test-secret-for-the-lane-0123456789", []);


describe("laneRoutes: device routes without path parameters, taking JSON", () => {
	const actions = new Map<string, { permission?: string; successStatus?: number; groupedBy?: string }>([
		["devices.heartbeat", { permission: "device", groupedBy: "devices.heartbeatGroup" }],
		["devices.heartbeatGroup", {}],
		// A group action no node has (a replica of another version): one call each.
		["scheduling.deviceManifest", { permission: "device", groupedBy: "scheduling.deviceManifests" }],
		["analytics.recordPlayback", { permission: "device", successStatus: 202 }],
		["devices.ackCommand", { permission: "device", successStatus: 204 }],
		["media.deviceDownload", { permission: "device" }],
		["devices.list", { permission: "tenant.read" }],
		["devices.register", { permission: "public" }]
	]);
	const aliases = [
		{ method: "POST", fullPath: "/api/v1/device/heartbeat", action: "devices.heartbeat", type: "call" },
		{ method: "GET", fullPath: "/api/v1/device/manifest", action: "scheduling.deviceManifest" },
		{ method: "POST", fullPath: "/api/v1/device/playback", action: "analytics.recordPlayback", type: "call" },
		{ method: "POST", fullPath: "/api/v1/device/commands/:id/ack", action: "devices.ackCommand", type: "call" },
		{ method: "GET", fullPath: "/api/v1/device/content/:id", action: "media.deviceDownload", type: "call" },
		{ method: "GET", fullPath: "/api/v1/displays", action: "devices.list", type: "call" },
		{ method: "POST", fullPath: "/api/v1/device/register", action: "devices.register", type: "call" },
		{ method: "POST", fullPath: "/api/v1/device/upload", action: "devices.heartbeat", type: "multipart" },
		{ method: "GET", fullPath: "/api/v1/device/events", action: null, permission: "device" },
		{ method: "GET", fullPath: "/health/live", action: null }
	];
	const routes = laneRoutes(aliases, actions as never);

	it("takes exactly heartbeat, manifest, playback (each with its declared status and group action, when registered) and the live stream", () => {
		expect([...routes.values()]).toEqual([
			{ method: "POST", path: "/api/v1/device/heartbeat", action: "devices.heartbeat", permission: "device", successStatus: 200, group: "devices.heartbeatGroup" },
			{ method: "GET", path: "/api/v1/device/manifest", action: "scheduling.deviceManifest", permission: "device", successStatus: 200, group: null },
			{ method: "POST", path: "/api/v1/device/playback", action: "analytics.recordPlayback", permission: "device", successStatus: 202, group: null },
			{ method: "GET", path: "/api/v1/device/events", action: null, permission: "device", successStatus: 200, group: null }
		]);
	});

	it("matches a request by method and exact path, the query ignored and HEAD served by GET; anything else is moleculer-web's", () => {
		const of = (method: string, url: string) => laneRouteOf(routes, { method, url })?.action;
		expect(of("POST", "/api/v1/device/heartbeat")).toBe("devices.heartbeat");
		expect(of("POST", "/api/v1/device/heartbeat?x=1")).toBe("devices.heartbeat");
		expect(of("HEAD", "/api/v1/device/manifest")).toBe("scheduling.deviceManifest");
		expect(of("GET", "/api/v1/device/heartbeat")).toBeUndefined();
		expect(of("POST", "/api/v1/device/heartbeat/")).toBeUndefined();
		expect(of("POST", "/API/v1/device/heartbeat")).toBeUndefined();
		expect(of("PUT", "/api/v1/device/heartbeat")).toBeUndefined();
		expect(of("OPTIONS", "/api/v1/device/heartbeat")).toBeUndefined();
		expect(of("GET", "/api/v1/device/events")).toBeNull();
		expect(of("HEAD", "/api/v1/device/events?x=1")).toBeNull();
		expect(of("GET", "/health/live")).toBeUndefined();
		expect(laneRouteOf(new Map(), { method: "POST", url: "/api/v1/device/heartbeat" })).toBeUndefined();
	});
});

describe("writeAnswer", () => {
	function fakeRes() {
		const headers: Record<string, unknown> = {};
		const res = {
			statusCode: 0,
			body: undefined as unknown,
			setHeader: (name: string, value: unknown) => void (headers[name.toLowerCase()] = value),
			end: (body?: unknown) => void (res.body = body)
		};
		return { res, headers };
	}

	it("JSON with its length and the action's headers; no body for null, 204 and 304; Location on 201", () => {
		const ok = fakeRes();
		writeAnswer(ok.res as unknown as ServerResponse, 200, { $responseHeaders: { ETag: '"e"' } }, { a: "ü" });
		expect(ok.res).toMatchObject({ statusCode: 200, body: '{"a":"ü"}' });
		expect(ok.headers).toEqual({ etag: '"e"', "content-type": "application/json; charset=utf-8", "content-length": 10 });
		const notModified = fakeRes();
		writeAnswer(notModified.res as unknown as ServerResponse, 304, { $responseHeaders: { ETag: '"e"' } }, { a: 1 });
		expect(notModified.res.body).toBeUndefined();
		expect(notModified.headers).toEqual({ etag: '"e"' });
		const created = fakeRes();
		writeAnswer(created.res as unknown as ServerResponse, 201, { $location: "/api/v1/x/1" }, null);
		expect(created.headers).toEqual({ location: "/api/v1/x/1" });
	});

	it("refuses to write a stream or a buffer (such a route belongs to moleculer-web)", () => {
		expect(() => writeAnswer(fakeRes().res as unknown as ServerResponse, 200, {}, Readable.from(["x"]))).toThrow(/moleculer-web/);
		expect(() => writeAnswer(fakeRes().res as unknown as ServerResponse, 200, {}, Buffer.from("x"))).toThrow(/moleculer-web/);
	});
});

describe("DevicePrincipals: device tokens auth accepted, served while the published version names them", () => {
	async function setup(options: { maxEntries?: number; maxAgeMs?: number } = {}) {
		const kv = new MemoryKeyValueStore();
		const store = fakeCredentials();
		const asked: string[] = [];
		let now = 1_000_000;
		// auth.resolve's device branch, as auth runs it (mint and revoke write the same entries).
		const principals = new DevicePrincipals(
			kv,
			async token => {
				asked.push(token);
				return resolveDeviceToken(store, kv, KEYS, token);
			},
			{ ...options, now: () => now }
		);
		return { kv, store, asked, principals, tick: (ms: number) => (now += ms) };
	}

	it("asks auth once, then answers from memory while the version stands", async () => {
		const { kv, store, asked, principals } = await setup();
		const token = await mintDeviceToken(store, kv, KEYS, "t1", "d1");
		const expected: Principal = { kind: "device", tenantId: "t1", displayId: "d1" };
		for (let i = 0; i < 5; i++) expect(await principals.resolve(token)).toEqual(expected);
		expect(asked).toHaveLength(1);
	});

	it("refuses at once after a new token is minted or the display is revoked, and asks auth again", async () => {
		const { kv, store, asked, principals } = await setup();
		const first = await mintDeviceToken(store, kv, KEYS, "t1", "d1");
		expect(await principals.resolve(first)).not.toBeNull();
		const second = await mintDeviceToken(store, kv, KEYS, "t1", "d1");
		expect(await principals.resolve(first)).toBeNull();
		expect(await principals.resolve(second)).toEqual({ kind: "device", tenantId: "t1", displayId: "d1" });
		store.docs.splice(0);
		await forgetDevices(kv, ["d1"]);
		expect(await principals.resolve(second)).toBeNull();
		expect(asked).toEqual([first, first, second, second]);
	});

	it("asks auth when the published entry is gone (it lapses after an hour) and after maxAgeMs", async () => {
		const { kv, store, asked, principals, tick } = await setup({ maxAgeMs: 60_000 });
		const token = await mintDeviceToken(store, kv, KEYS, "t1", "d1");
		await principals.resolve(token);
		await kv.del(deviceVersionKey("d1"));
		expect(await principals.resolve(token)).not.toBeNull();
		expect(asked).toHaveLength(2);
		tick(59_000);
		await principals.resolve(token);
		expect(asked).toHaveLength(2);
		tick(2_000);
		await principals.resolve(token);
		expect(asked).toHaveLength(3);
	});

	it("remembers no other kind of principal and keeps at most maxEntries tokens (the oldest goes)", async () => {
		const kv = new MemoryKeyValueStore();
		const user: Principal = { kind: "user", tenantId: "t1", userId: "u1", role: "owner", sessionId: "s1" };
		let asked = 0;
		const access = signAccessToken(KEYS, { sub: "u1", tid: "t1", role: "owner", sid: "s1" });
		const users = new DevicePrincipals(kv, async () => (asked++, user));
		await users.resolve(access);
		await users.resolve(access);
		expect(asked).toBe(2);
		expect(users.size).toBe(0);

		const store = fakeCredentials();
		const small = new DevicePrincipals(kv, async token => resolveDeviceToken(store, kv, KEYS, token), { maxEntries: 2 });
		for (const d of ["d1", "d2", "d3"]) await small.resolve(await mintDeviceToken(store, kv, KEYS, "t1", d));
		expect(small.size).toBe(2);
	});

	it("never trusts a token whose payload disagrees with the principal auth answered", async () => {
		const kv = new MemoryKeyValueStore();
		const store = fakeCredentials();
		const token = await mintDeviceToken(store, kv, KEYS, "t1", "d1");
		let asked = 0;
		const confused = new DevicePrincipals(kv, async () => (asked++, { kind: "device", tenantId: "t2", displayId: "d1" }));
		await confused.resolve(token);
		await confused.resolve(token);
		expect(asked).toBe(2);
	});

	it("reads the version a token names exactly as auth writes it (the contract both sides use)", async () => {
		const kv = new MemoryKeyValueStore();
		const store = fakeCredentials();
		await mintDeviceToken(store, kv, KEYS, "tenant-a", "display-a");
		const token = await mintDeviceToken(store, kv, KEYS, "tenant-a", "display-a");
		expect(deviceTokenVersion(token)).toEqual({ displayId: "display-a", tenantId: "tenant-a", version: "tenant-a:2" });
		expect(await kv.get(deviceVersionKey("display-a"))).toBe("tenant-a:2");
		expect(deviceTokenVersion("not-a-token")).toBeNull();
		expect(deviceTokenVersion("a.%%%.c")).toBeNull();
		expect(deviceTokenVersion(signAccessToken(KEYS, { sub: "u1", tid: "t1", role: "owner", sid: "s1" }))).toBeNull();
	});
});
