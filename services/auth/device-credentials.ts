/**
 * Device credentials: a paired display's token version. Device tokens are long-lived JWTs
 * (tokens.ts) carrying the version they were minted with; minting again bumps the version and a
 * revocation deletes it, so only the newest token of a display that is still paired works.
 * `resolve` remembers a display's version for an hour (the mint and revoke paths overwrite that
 * memory at once); a forgotten one is read from the collection again.
 */
import { ALL_TENANTS, systemScope, type TenantCollection, type TenantOwned } from "../../mixins/db.mixin";
import { DEVICE_VERSION_REVOKED as REVOKED, deviceVersionKey, deviceVersionValue as versionValue } from "../../shared/contracts/auth";
import type { KeyValueStore } from "../../shared/kv";
import type { Principal } from "../../shared/rbac";
import { signDeviceToken, verifyDeviceToken, type SigningKeys } from "./tokens";

export interface DeviceCredentialDoc extends TenantOwned {
	displayId: string;
	version: number;
}

/** What of the device_credentials collection these functions use (a fake in unit tests). */
export type DeviceCredentialStore = Pick<TenantCollection<DeviceCredentialDoc>, "findDoc" | "insertDoc" | "updateWhere">;

/** The kv entry (`<tenantId>:<version>` or "revoked", see shared/contracts/auth.ts) lasts this long. */
export const DEVICE_VERSION_TTL_MS = 3600_000;

/** A new token for a display; the previous one stops working. */
export async function mintDeviceToken(
	credentials: DeviceCredentialStore,
	kv: KeyValueStore,
	keys: SigningKeys,
	tenantId: string,
	displayId: string
): Promise<string> {
	const scope = systemScope(tenantId);
	// The bump is a compare-and-set on the version: two mints at once read the same version, and
	// both wrote the next one, so both their tokens worked (20 registrations of one screen at once
	// left two live tokens). The loser reads again and takes the version after.
	let version = 0;
	while (!version) {
		const existing = await credentials.findDoc(scope, { displayId });
		if (!existing) {
			try {
				await credentials.insertDoc(scope, { displayId, version: 1 });
				version = 1;
			} catch (err) {
				// Another mint created it first (displayId is unique): bump theirs.
				if ((err as { type?: unknown }).type !== "CONFLICT") throw err;
			}
		} else if (await credentials.updateWhere(scope, { _id: existing.id, version: existing.version }, { version: existing.version + 1 })) version = existing.version + 1;
	}
	await kv.set(deviceVersionKey(displayId), versionValue(tenantId, version), DEVICE_VERSION_TTL_MS);
	return signDeviceToken(keys, { did: displayId, tid: tenantId, ver: version });
}

/** Marks displays revoked at once (after their credentials were removed). */
export async function forgetDevices(kv: KeyValueStore, displayIds: string[]): Promise<void> {
	await Promise.all(displayIds.map(id => kv.set(deviceVersionKey(id), REVOKED, DEVICE_VERSION_TTL_MS)));
}

/** A device token's principal while its version is the display's current one; else null. */
export async function resolveDeviceToken(
	credentials: Pick<DeviceCredentialStore, "findDoc">,
	kv: KeyValueStore,
	keys: SigningKeys,
	token: string
): Promise<Principal | null> {
	const device = verifyDeviceToken(keys, token);
	if (!device.ok) return null;
	const { did, tid, ver } = device.claims;
	let current = await kv.get(deviceVersionKey(did));
	if (current === null) {
		const doc = await credentials.findDoc(ALL_TENANTS, { displayId: did });
		current = doc ? versionValue(doc.tenantId, doc.version) : REVOKED;
		await kv.set(deviceVersionKey(did), current, DEVICE_VERSION_TTL_MS);
	}
	if (current !== versionValue(tid, ver)) return null;
	return { kind: "device", tenantId: tid, displayId: did };
}
