/**
 * services/auth/accounts.ts: the public view of a user, the remembered client addresses, the
 * password policy as a 422, and single-use email tokens against an in-memory stand-in for the
 * email_tokens collection.
 */
import type { Query } from "../../mixins/db.mixin";
import { AppError } from "../../shared/errors";
import {
	KNOWN_CLIENTS_KEPT,
	assertPasswordAcceptable,
	claimEmailToken,
	clientHash,
	emailLink,
	emailTokenUsable,
	issueEmailToken,
	knowsClient,
	newEmailToken,
	rememberedClients,
	userView,
	type EmailTokenDoc,
	type EmailTokenStore,
	type UserDoc
} from "../../services/auth/accounts";
import { loadCommonPasswords } from "../../services/auth/passwords";
import { hashToken } from "../../shared/secrets";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const HOUR = 3600_000;

const USER: UserDoc = {
	id: "u1",
	email: "ann@example.com",
	name: "Ann Example",
	passwordHash: "$2b$04$abcdefghijklmnopqrstuv",
	emailVerified: false,
	createdAt: "2026-01-01T00:00:00.000Z",
	updatedAt: "2026-01-01T00:00:00.000Z"
};

/** Equality on fields (`_id` is `id`) and `$exists`, as the data layer's query subset. */
function matches(doc: EmailTokenDoc, query: Query): boolean {
	const fields: Record<string, unknown> = { ...doc };
	return Object.entries(query).every(([key, cond]) => {
		const value = fields[key === "_id" ? "id" : key];
		if (cond && typeof cond === "object" && "$exists" in cond) return (value !== undefined) === (cond as { $exists: boolean }).$exists;
		return value === cond;
	});
}

/** The email_tokens collection in memory. */
function fakeEmailTokens(): EmailTokenStore & { docs: EmailTokenDoc[] } {
	const docs: EmailTokenDoc[] = [];
	let seq = 0;
	return {
		docs,
		async findDoc(query) {
			const found = docs.find(d => matches(d, query));
			return found ? { ...found } : null;
		},
		async insertDoc(fields) {
			const now = new Date(T0).toISOString();
			const doc: EmailTokenDoc = { createdAt: now, updatedAt: now, ...fields, id: `e${++seq}` };
			docs.push(doc);
			return { ...doc };
		},
		async updateWhere(query, changes) {
			const hits = docs.filter(d => matches(d, query));
			for (const d of hits) Object.assign(d, changes);
			return hits.length;
		},
		async removeDocs(query) {
			const before = docs.length;
			docs.splice(0, docs.length, ...docs.filter(d => !matches(d, query)));
			return before - docs.length;
		}
	};
}

describe("users", () => {
	it("the public view is API.md's user: no password hash, no known clients", () => {
		expect(userView({ ...USER, knownClients: ["h"] })).toEqual({ id: "u1", email: "ann@example.com", name: "Ann Example", emailVerified: false, createdAt: USER.createdAt });
	});

	it("remembers client addresses per account, newest first, bounded; writes nothing when the newest signs in again", () => {
		expect(knowsClient(null, "192.0.2.1")).toBe(false);
		expect(knowsClient(USER, "192.0.2.1")).toBe(false);
		const once = rememberedClients(USER, "192.0.2.1");
		expect(once).toEqual([clientHash("u1", "192.0.2.1")]);
		const user = { ...USER, knownClients: once ?? [] };
		expect(knowsClient(user, "192.0.2.1")).toBe(true);
		expect(knowsClient({ ...user, id: "u2" }, "192.0.2.1")).toBe(false);
		expect(rememberedClients(user, "192.0.2.1")).toBeNull();

		let clients = user.knownClients;
		for (let i = 0; i < KNOWN_CLIENTS_KEPT + 2; i++) clients = rememberedClients({ id: "u1", knownClients: clients }, `198.51.100.${i}`) ?? clients;
		expect(clients).toHaveLength(KNOWN_CLIENTS_KEPT);
		expect(clients[0]).toBe(clientHash("u1", `198.51.100.${KNOWN_CLIENTS_KEPT + 1}`));
		expect(clients).not.toContain(clientHash("u1", "192.0.2.1"));
		// An address seen before moves to the front instead of appearing twice.
		const again = rememberedClients({ id: "u1", knownClients: clients }, "198.51.100.5") ?? [];
		expect(again[0]).toBe(clientHash("u1", "198.51.100.5"));
		expect(new Set(again).size).toBe(again.length);
	});

	it("a password against the policy is a 422 naming the field", () => {
		loadCommonPasswords();
		expect(() => assertPasswordAcceptable("a perfectly fine passphrase", "password", USER)).not.toThrow();
		for (const [password, problem] of [["short", /at least/], ["password123456", /too common/], ["ann@example.com-and-more", /email/], ["my name is annexample!", /name/]] as const) {
			let thrown: unknown;
			try {
				assertPasswordAcceptable(password, "newPassword", USER);
			} catch (err) {
				thrown = err;
			}
			expect(thrown).toBeInstanceOf(AppError);
			expect(thrown).toMatchObject({ code: 422, type: "VALIDATION_ERROR", data: [{ field: "newPassword", type: "password", message: expect.stringMatching(problem) }] });
		}
	});
});

describe("email tokens", () => {
	it("a new token is prefixed by purpose; the document keeps its hash and expiry", () => {
		const verify = newEmailToken("u1", "verify", 24 * HOUR, T0);
		const reset = newEmailToken("u1", "reset", HOUR / 2, T0);
		expect(verify.token).toMatch(/^mev_[A-Za-z0-9_-]{43}$/);
		expect(reset.token).toMatch(/^mpr_[A-Za-z0-9_-]{43}$/);
		expect(reset.doc).toEqual({ userId: "u1", purpose: "reset", tokenHash: hashToken(reset.token), expiresAt: new Date(T0 + HOUR / 2).toISOString() });
	});

	it("is usable until used or expired", () => {
		const expiresAt = new Date(T0 + HOUR).toISOString();
		expect(emailTokenUsable({ expiresAt }, T0)).toBe(true);
		expect(emailTokenUsable({ expiresAt }, T0 + HOUR)).toBe(false);
		expect(emailTokenUsable({ expiresAt, usedAt: new Date(T0).toISOString() }, T0)).toBe(false);
	});

	it("links carry the token encoded", () => {
		expect(emailLink("https://app.example", "verify", "mev_a+b")).toBe("https://app.example/verify-email?token=mev_a%2Bb");
		expect(emailLink("https://app.example", "reset", "mpr_x")).toBe("https://app.example/reset-password?token=mpr_x");
	});

	it("works once, for its purpose only; a new one supersedes the previous link", async () => {
		const tokens = fakeEmailTokens();
		const first = await issueEmailToken(tokens, "u1", "reset", HOUR, T0);
		const verify = await issueEmailToken(tokens, "u1", "verify", HOUR, T0);
		const second = await issueEmailToken(tokens, "u1", "reset", HOUR, T0);
		expect(tokens.docs).toHaveLength(2);
		expect(await claimEmailToken(tokens, first, "reset", T0)).toBeNull();
		expect(await claimEmailToken(tokens, second, "verify", T0)).toBeNull();
		expect(await claimEmailToken(tokens, second, "reset", T0 + 1)).toEqual({ userId: "u1" });
		expect(await claimEmailToken(tokens, second, "reset", T0 + 2)).toBeNull();
		expect(tokens.docs.find(d => d.purpose === "reset")?.usedAt).toBe(new Date(T0 + 1).toISOString());
		expect(await claimEmailToken(tokens, verify, "verify", T0 + HOUR)).toBeNull();
		expect(await claimEmailToken(tokens, verify, "verify", T0 + HOUR - 1)).toEqual({ userId: "u1" });
	});
});
