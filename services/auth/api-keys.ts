/**
 * API keys: `mk_…` secrets bound to one tenant and a role, for integrations. A key is shown once
 * (POST /api-keys); only its SHA-256 hash is stored and looked up. `resolveApiKey` turns a
 * presented key into its principal, remembering the answer briefly so the gateway does not read
 * the collection on every request; a revocation drops that memory at once (`forgetApiKeys`).
 */
import { ALL_TENANTS, systemScope, type NewDoc, type TenantCollection, type TenantOwned } from "../../mixins/db.mixin";
import type { ApiKeyRole, ApiKeyView, AuthExport, CreatedApiKey } from "../../shared/contracts";
import type { KeyValueStore } from "../../shared/kv";
import type { Principal } from "../../shared/rbac";
import { hashToken, randomToken } from "../../shared/secrets";

/**
 * API keys a tenant may hold. Each key is its own principal with its own rate limit, so an
 * unbounded number of keys multiplied every per-principal limit (pairing-code guessing).
 */
export const MAX_API_KEYS = 50;
/** How long a resolved key is remembered (a revocation forgets it at once). */
export const API_KEY_CACHE_MS = 60_000;
/** `lastUsedAt` is written at most this often per key: reads must not turn into writes. */
export const API_KEY_TOUCH_MS = 60_000;
export const API_KEY_PREFIX = "mk_";
/** What the list shows of a key: the prefix and the first 8 random characters. */
const SHOWN_CHARACTERS = 11;
/** The shape randomToken("mk_") produces (and some slack): anything else is not looked up. */
const KEY_PATTERN = /^mk_[A-Za-z0-9_-]{20,100}$/;

export interface ApiKeyDoc extends TenantOwned {
	name: string;
	role: ApiKeyRole;
	keyHash: string;
	keyPrefix: string;
	/** The user who created it. */
	createdBy: string;
	lastUsedAt: string | null;
}

/** What of the api_keys collection `resolveApiKey` uses (a fake in unit tests). */
export type ApiKeyStore = Pick<TenantCollection<ApiKeyDoc>, "findDoc" | "updateWhere">;

export const apiKeyCacheKey = (keyHash: string) => `apikey:${keyHash}`;

// ---- pure ----------------------------------------------------------------------------------

/** A new key: the secret to show once and the document that keeps only its hash. */
export function newApiKey(name: string, role: ApiKeyRole, createdBy: string): { key: string; doc: NewDoc<ApiKeyDoc> } {
	const key = randomToken(API_KEY_PREFIX);
	return { key, doc: { name, role, keyHash: hashToken(key), keyPrefix: key.slice(0, SHOWN_CHARACTERS), createdBy, lastUsedAt: null } };
}

/** The answer of POST /api-keys, the only one with the key. */
export function createdApiKeyView(doc: ApiKeyDoc, key: string): CreatedApiKey {
	return { id: doc.id, name: doc.name, role: doc.role, key, keyPrefix: doc.keyPrefix, createdAt: doc.createdAt };
}

/** A row of GET /api-keys. */
export function apiKeyView({ id, name, role, keyPrefix, createdAt, lastUsedAt, createdBy }: ApiKeyDoc): ApiKeyView {
	return { id, name, role, keyPrefix, createdAt, lastUsedAt, createdBy };
}

/** A key in a tenant export. */
export function apiKeyExport({ id, name, role, keyPrefix, createdAt, lastUsedAt }: ApiKeyDoc): AuthExport["apiKeys"][number] {
	return { id, name, role, keyPrefix, createdAt, lastUsedAt };
}

/** Whether a bearer token is shaped like a key at all (others are refused without a lookup). */
export function looksLikeApiKey(token: string): boolean {
	return KEY_PATTERN.test(token);
}

export function apiKeyPrincipal(doc: Pick<ApiKeyDoc, "id" | "tenantId" | "role">): Principal {
	return { kind: "apiKey", tenantId: doc.tenantId, apiKeyId: doc.id, role: doc.role };
}

/** Whether `lastUsedAt` is old enough to be written again. */
export function touchDue(lastUsedAt: string | null, now: number): boolean {
	const last = typeof lastUsedAt === "string" ? Date.parse(lastUsedAt) : 0;
	return now - last > API_KEY_TOUCH_MS;
}

// ---- storage -------------------------------------------------------------------------------

/** The principal of a presented key, or null when it is no key of any tenant. */
export async function resolveApiKey(apiKeys: ApiKeyStore, kv: KeyValueStore, key: string, now = Date.now()): Promise<Principal | null> {
	if (!looksLikeApiKey(key)) return null;
	const keyHash = hashToken(key);
	const cached = await kv.get(apiKeyCacheKey(keyHash));
	if (cached) return JSON.parse(cached) as Principal;
	const doc = await apiKeys.findDoc(ALL_TENANTS, { keyHash });
	if (!doc) return null;
	const principal = apiKeyPrincipal(doc);
	await kv.set(apiKeyCacheKey(keyHash), JSON.stringify(principal), API_KEY_CACHE_MS);
	if (touchDue(doc.lastUsedAt, now)) {
		// In the background: a lost write only leaves lastUsedAt a little old.
		void apiKeys.updateWhere(systemScope(doc.tenantId), { _id: doc.id }, { lastUsedAt: new Date(now).toISOString() }).catch(() => undefined);
	}
	return principal;
}

/** Drops the remembered principals of revoked keys, so they stop working at once. */
export async function forgetApiKeys(kv: KeyValueStore, keys: Array<Pick<ApiKeyDoc, "keyHash">>): Promise<void> {
	await Promise.all(keys.map(k => kv.del(apiKeyCacheKey(k.keyHash))));
}
