/**
 * services/auth/api-keys.ts: a new key and what each answer shows of it, the key shape, the
 * principal, and `resolveApiKey` (cached, touching lastUsedAt rarely, forgotten on revocation)
 * against an in-memory stand-in for the api_keys collection.
 */
import type { Query, WideScope } from "../../mixins/db.mixin";
import { MemoryKeyValueStore } from "../../shared/kv";
import {
	API_KEY_TOUCH_MS,
	apiKeyCacheKey,
	apiKeyExport,
	apiKeyPrincipal,
	apiKeyView,
	createdApiKeyView,
	forgetApiKeys,
	looksLikeApiKey,
	newApiKey,
	resolveApiKey,
	touchDue,
	type ApiKeyDoc,
	type ApiKeyStore
} from "../../services/auth/api-keys";
import { hashToken } from "../../shared/secrets";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");

function stored(key: string, overrides: Partial<ApiKeyDoc> = {}): ApiKeyDoc {
	const { doc } = newApiKey("Menu sync", "viewer", "u1");
	return { ...doc, keyHash: hashToken(key), id: "k1", tenantId: "t1", createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-01T00:00:00.000Z", ...overrides };
}

/** The api_keys collection in memory; counts its reads and writes. */
function fakeApiKeys(docs: ApiKeyDoc[]): ApiKeyStore & { reads: number; touches: Array<{ scope: WideScope; query: Query; lastUsedAt: unknown }> } {
	const store = {
		reads: 0,
		touches: [] as Array<{ scope: WideScope; query: Query; lastUsedAt: unknown }>,
		async findDoc(scope: WideScope, query: Query) {
			store.reads++;
			expect(scope).toMatchObject({ kind: "allTenants" });
			return docs.find(d => d.keyHash === query.keyHash) ?? null;
		},
		async updateWhere(scope: WideScope, query: Query, changes: Partial<ApiKeyDoc>) {
			store.touches.push({ scope, query, lastUsedAt: changes.lastUsedAt });
			return 1;
		}
	};
	return store;
}

describe("a new key", () => {
	it("is mk_ and 43 random characters; the document keeps its hash and a short prefix, never the key", () => {
		const { key, doc } = newApiKey("Menu sync", "editor", "u1");
		expect(key).toMatch(/^mk_[A-Za-z0-9_-]{43}$/);
		expect(doc).toEqual({ name: "Menu sync", role: "editor", keyHash: hashToken(key), keyPrefix: key.slice(0, 11), createdBy: "u1", lastUsedAt: null });
		expect(JSON.stringify(doc)).not.toContain(key);
		expect(newApiKey("Menu sync", "editor", "u1").key).not.toBe(key);
	});

	it("is shown once with its key; listed and exported without key or hash", () => {
		const doc = stored("mk_whatever");
		expect(createdApiKeyView(doc, "mk_secret")).toEqual({ id: "k1", name: "Menu sync", role: "viewer", key: "mk_secret", keyPrefix: doc.keyPrefix, createdAt: doc.createdAt });
		expect(apiKeyView(doc)).toEqual({ id: "k1", name: "Menu sync", role: "viewer", keyPrefix: doc.keyPrefix, createdAt: doc.createdAt, lastUsedAt: null, createdBy: "u1" });
		expect(apiKeyExport(doc)).toEqual({ id: "k1", name: "Menu sync", role: "viewer", keyPrefix: doc.keyPrefix, createdAt: doc.createdAt, lastUsedAt: null });
	});
});

describe("pure rules", () => {
	it("only key-shaped tokens are looked up", () => {
		expect(looksLikeApiKey(newApiKey("x", "viewer", "u").key)).toBe(true);
		expect(looksLikeApiKey("mk_short")).toBe(false);
		expect(looksLikeApiKey(`mk_${"a".repeat(101)}`)).toBe(false);
		expect(looksLikeApiKey(`mk_${"a".repeat(30)}!`)).toBe(false);
		expect(looksLikeApiKey(`mrt_${"a".repeat(43)}`)).toBe(false);
	});

	it("a key acts as its own principal in its tenant with its role", () => {
		expect(apiKeyPrincipal({ id: "k1", tenantId: "t1", role: "admin" })).toEqual({ kind: "apiKey", tenantId: "t1", apiKeyId: "k1", role: "admin" });
	});

	it("lastUsedAt is written again only after API_KEY_TOUCH_MS", () => {
		expect(touchDue(null, T0)).toBe(true);
		expect(touchDue(new Date(T0 - API_KEY_TOUCH_MS).toISOString(), T0)).toBe(false);
		expect(touchDue(new Date(T0 - API_KEY_TOUCH_MS - 1).toISOString(), T0)).toBe(true);
	});
});

describe("resolveApiKey", () => {
	const key = `mk_${"k".repeat(43)}`;

	it("answers the principal, remembers it, and touches lastUsedAt in the key's tenant", async () => {
		const keys = fakeApiKeys([stored(key)]);
		const kv = new MemoryKeyValueStore();
		const principal = await resolveApiKey(keys, kv, key, T0);
		expect(principal).toEqual({ kind: "apiKey", tenantId: "t1", apiKeyId: "k1", role: "viewer" });
		expect(JSON.parse((await kv.get(apiKeyCacheKey(hashToken(key)))) ?? "null")).toEqual(principal);
		expect(keys.touches).toEqual([{ scope: { kind: "system", tenantId: "t1" }, query: { _id: "k1" }, lastUsedAt: new Date(T0).toISOString() }]);

		// The next request is answered from memory.
		expect(await resolveApiKey(keys, kv, key, T0 + 1)).toEqual(principal);
		expect(keys.reads).toBe(1);
	});

	it("does not touch a key used a moment ago", async () => {
		const keys = fakeApiKeys([stored(key, { lastUsedAt: new Date(T0 - 1000).toISOString() })]);
		await resolveApiKey(keys, new MemoryKeyValueStore(), key, T0);
		expect(keys.touches).toEqual([]);
	});

	it("answers null for unknown keys, and for malformed ones without a lookup", async () => {
		const keys = fakeApiKeys([stored(key)]);
		const kv = new MemoryKeyValueStore();
		expect(await resolveApiKey(keys, kv, `mk_${"u".repeat(43)}`, T0)).toBeNull();
		expect(keys.reads).toBe(1);
		expect(await resolveApiKey(keys, kv, "mk_bad", T0)).toBeNull();
		expect(keys.reads).toBe(1);
	});

	it("a revoked key, once forgotten, stops resolving at once", async () => {
		const docs = [stored(key)];
		const keys = fakeApiKeys(docs);
		const kv = new MemoryKeyValueStore();
		expect(await resolveApiKey(keys, kv, key, T0)).not.toBeNull();
		const [revoked] = docs.splice(0, 1);
		await forgetApiKeys(kv, [revoked]);
		expect(await kv.get(apiKeyCacheKey(revoked.keyHash))).toBeNull();
		expect(await resolveApiKey(keys, kv, key, T0)).toBeNull();
	});
});
