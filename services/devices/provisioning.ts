/**
 * Provisioning keys (zero-touch onboarding): an admin makes a key, an installer puts it on many
 * screens, each screen registers itself with it (POST /device/register) and lands in the key's
 * groups with its tags, default playlist and timezone. Stored as a hash, like every secret; the
 * first characters stay readable to tell keys apart.
 */
import type { TenantOwned } from "../../mixins/db.mixin";
import type { ProvisioningKeyView } from "../../shared/contracts";
import { hashToken, randomToken } from "../../shared/secrets";

export const PROVISIONING_KEY_PREFIX = "mpk_";
/** Characters of the key the API shows (`mpk_` and 8 more). */
const SHOWN = PROVISIONING_KEY_PREFIX.length + 8;

export interface ProvisioningKeyDoc extends TenantOwned {
	name: string;
	keyHash: string;
	prefix: string;
	groupIds: string[];
	tags: string[];
	defaultPlaylistId: string | null;
	/** Absent on keys from before layouts. */
	defaultLayoutId?: string | null;
	timezone: string | null;
	maxDisplays: number | null;
	expiresAt: string | null;
	revokedAt: string | null;
	lastUsedAt: string | null;
	createdBy: string | null;
}

/** A new key: what the admin is shown once, and what is stored. */
export function newProvisioningKey(): { key: string; keyHash: string; prefix: string } {
	const key = randomToken(PROVISIONING_KEY_PREFIX);
	return { key, keyHash: hashToken(key), prefix: key.slice(0, SHOWN) };
}

/** Only strings shaped like a key are looked up (anything else is refused without a query). */
export function looksLikeProvisioningKey(value: string): boolean {
	return value.startsWith(PROVISIONING_KEY_PREFIX) && /^[A-Za-z0-9_-]{20,100}$/.test(value);
}

export type KeyStatus = ProvisioningKeyView["status"];

export function keyStatus(doc: ProvisioningKeyDoc, registered: number, now: Date): KeyStatus {
	if (doc.revokedAt) return "revoked";
	if (doc.expiresAt && Date.parse(doc.expiresAt) <= now.getTime()) return "expired";
	if (doc.maxDisplays !== null && registered >= doc.maxDisplays) return "full";
	return "active";
}

/** Whether a screen may register with the key now (a full key still re-registers known screens). */
export function acceptsScreens(doc: ProvisioningKeyDoc, now: Date): boolean {
	return !doc.revokedAt && !(doc.expiresAt && Date.parse(doc.expiresAt) <= now.getTime());
}

export function provisioningKeyView(doc: ProvisioningKeyDoc, registered: number, now = new Date()): ProvisioningKeyView {
	return {
		id: doc.id,
		name: doc.name,
		prefix: doc.prefix,
		groupIds: doc.groupIds,
		tags: doc.tags,
		defaultPlaylistId: doc.defaultPlaylistId,
		defaultLayoutId: doc.defaultLayoutId ?? null,
		timezone: doc.timezone,
		maxDisplays: doc.maxDisplays,
		registeredDisplays: registered,
		expiresAt: doc.expiresAt,
		revokedAt: doc.revokedAt,
		status: keyStatus(doc, registered, now),
		lastUsedAt: doc.lastUsedAt,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

/** The name a registering screen gets when it sends none. */
export function defaultScreenName(hardwareId: string): string {
	// Whole characters (an emoji is two UTF-16 units).
	return `Screen ${Array.from(hardwareId).slice(0, 40).join("")}`;
}
