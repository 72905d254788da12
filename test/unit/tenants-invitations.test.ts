/** services/tenants/invitations.ts: invitation tokens, their stored hash and their lifetime. */
import { createHash } from "node:crypto";
import { INVITATION_TTL_MS, invitationExpiry, isAcceptable, newInvitationToken } from "../../services/tenants/invitations";
import { hashToken } from "../../shared/secrets";
import { TOKEN_RULE } from "../../shared/request";

describe("invitation tokens", () => {
	it("are `minv_` and 256 random bits in base64url, within what acceptance takes", () => {
		const tokens = new Set(Array.from({ length: 100 }, newInvitationToken));
		expect(tokens.size).toBe(100);
		for (const token of tokens) {
			expect(token).toMatch(/^minv_[A-Za-z0-9_-]{43}$/);
			expect(token.length).toBeGreaterThanOrEqual(TOKEN_RULE.min);
			expect(token.length).toBeLessThanOrEqual(TOKEN_RULE.max);
			expect(encodeURIComponent(token)).toBe(token);
		}
	});

	it("are stored as their sha256 in hex, so acceptance finds them by it", () => {
		const token = newInvitationToken();
		expect(hashToken(token)).toBe(createHash("sha256").update(token, "utf8").digest("hex"));
		expect(hashToken(token)).toBe(hashToken(token));
		expect(hashToken("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	});
});

describe("lifetime", () => {
	const now = new Date("2026-03-01T12:00:00.000Z");

	it("an invitation lasts seven days", () => {
		expect(INVITATION_TTL_MS).toBe(7 * 24 * 3600_000);
		expect(invitationExpiry(now.getTime())).toBe("2026-03-08T12:00:00.000Z");
	});

	it("is acceptable until it expires, once", () => {
		const expiresAt = invitationExpiry(now.getTime());
		expect(isAcceptable({ expiresAt }, now)).toBe(true);
		expect(isAcceptable({ expiresAt }, new Date(expiresAt))).toBe(false);
		expect(isAcceptable({ expiresAt, acceptedAt: now.toISOString() }, now)).toBe(false);
	});
});
