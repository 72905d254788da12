/**
 * services/auth/device-credentials.ts: minting bumps a display's token version so only its
 * newest token works; revocation stops it at once; a forgotten version is read back from the
 * collection (an in-memory stand-in here).
 */
import { deviceVersionKey } from "../../shared/contracts";
import { MemoryKeyValueStore } from "../../shared/kv";
import {
	forgetDevices,
	mintDeviceToken,
	resolveDeviceToken,
} from "../../services/auth/device-credentials";
import { signAccessToken, signingKeys } from "../../services/auth/tokens";
import { fakeCredentials } from "../helpers/device-credentials";

const KEYS = signingKeys("unit-test-secret-for-devices-0123456789", []);


describe("device credentials", () => {
	it("a minted token resolves to its display; minting again retires the previous token", async () => {
		const credentials = fakeCredentials();
		const kv = new MemoryKeyValueStore();
		const first = await mintDeviceToken(credentials, kv, KEYS, "t1", "d1");
		expect(await resolveDeviceToken(credentials, kv, KEYS, first)).toEqual({ kind: "device", tenantId: "t1", displayId: "d1" });
		const second = await mintDeviceToken(credentials, kv, KEYS, "t1", "d1");
		expect(credentials.docs).toEqual([expect.objectContaining({ tenantId: "t1", displayId: "d1", version: 2 })]);
		expect(await resolveDeviceToken(credentials, kv, KEYS, first)).toBeNull();
		expect(await resolveDeviceToken(credentials, kv, KEYS, second)).not.toBeNull();
	});

	it("twenty mints at once, first ones included, each take a version of their own: exactly one token works", async () => {
		const credentials = fakeCredentials();
		const kv = new MemoryKeyValueStore();
		const tokens = await Promise.all(Array.from({ length: 20 }, () => mintDeviceToken(credentials, kv, KEYS, "t1", "d-busy")));
		expect(credentials.docs).toEqual([expect.objectContaining({ displayId: "d-busy", version: 20 })]);
		const working = [];
		for (const token of tokens) if (await resolveDeviceToken(credentials, kv, KEYS, token)) working.push(token);
		expect(working).toHaveLength(1);
	});

	it("a forgotten version is read from the collection; a revoked display's token stops at once", async () => {
		const credentials = fakeCredentials();
		const kv = new MemoryKeyValueStore();
		const token = await mintDeviceToken(credentials, kv, KEYS, "t1", "d1");
		await kv.del(deviceVersionKey("d1"));
		expect(await resolveDeviceToken(credentials, kv, KEYS, token)).toEqual({ kind: "device", tenantId: "t1", displayId: "d1" });
		expect(await kv.get(deviceVersionKey("d1"))).toBe("t1:1");

		credentials.docs.splice(0);
		await forgetDevices(kv, ["d1"]);
		expect(await resolveDeviceToken(credentials, kv, KEYS, token)).toBeNull();
		await kv.del(deviceVersionKey("d1"));
		expect(await resolveDeviceToken(credentials, kv, KEYS, token)).toBeNull();
		expect(await kv.get(deviceVersionKey("d1"))).toBe("revoked");
	});

	it("refuses what is not a device token", async () => {
		const credentials = fakeCredentials();
		const kv = new MemoryKeyValueStore();
		await mintDeviceToken(credentials, kv, KEYS, "t1", "d1");
		const access = signAccessToken(KEYS, { sub: "u1", tid: "t1", role: "owner", sid: "s1" });
		expect(await resolveDeviceToken(credentials, kv, KEYS, access)).toBeNull();
		const foreign = await mintDeviceToken(fakeCredentials(), new MemoryKeyValueStore(), signingKeys("another-secret-nobody-configured-0123456", []), "t1", "d1");
		expect(await resolveDeviceToken(credentials, kv, KEYS, foreign)).toBeNull();
	});
});
