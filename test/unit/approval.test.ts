/**
 * Content approval's rules (shared/approval.ts) and what an editor's content edit holds back
 * (services/media/content.ts heldBack): who waits, what plays meanwhile, what a decision does.
 */
import { APPROVED, approvalOf, decided, isLive, needsApproval, requested } from "../../shared/approval";
import { AppError } from "../../shared/errors";
import type { Principal } from "../../shared/rbac";
import { heldBack } from "../../services/media/content";

const NOW = new Date("2026-12-01T10:00:00.000Z");
const LATER = new Date("2026-12-01T11:00:00.000Z");
const person = (role: Principal["role"]): Principal => ({ kind: "user", tenantId: "t1", role, userId: `u-${role}` });

describe("who waits for approval", () => {
	it("with the setting on, editors (people and editor-role keys) wait; admins and owners do not", () => {
		expect(needsApproval(true, person("editor"))).toBe(true);
		expect(needsApproval(true, { kind: "apiKey", tenantId: "t1", role: "editor", apiKeyId: "k1" })).toBe(true);
		expect(needsApproval(true, person("admin"))).toBe(false);
		expect(needsApproval(true, person("owner"))).toBe(false);
		expect(needsApproval(true, { kind: "apiKey", tenantId: "t1", role: "admin", apiKeyId: "k2" })).toBe(false);
	});

	it("with the setting off nobody waits", () => {
		expect(needsApproval(false, person("editor"))).toBe(false);
	});

	it("a document without an approval state is approved and plays", () => {
		expect(approvalOf({})).toEqual(APPROVED);
		expect(isLive({ approval: undefined })).toBe(true);
	});
});

describe("requests and decisions", () => {
	it("a new document waits and plays nothing; a change to a live one waits while the approved version plays", () => {
		expect(requested(false, "u-editor", NOW)).toEqual({ status: "pending", live: false, requestedBy: "u-editor", requestedAt: NOW.toISOString(), reviewedBy: null, reviewedAt: null, comment: null });
		expect(requested(true, "u-editor", NOW)).toMatchObject({ status: "pending", live: true });
	});

	it("approving makes it live; rejecting a new one leaves it dark, a change leaves the approved version", () => {
		const fresh = requested(false, "u-editor", NOW);
		expect(decided(fresh, "approved", { reviewer: "u-admin", comment: null }, LATER)).toEqual({ ...fresh, status: "approved", live: true, reviewedBy: "u-admin", reviewedAt: LATER.toISOString(), comment: null });
		expect(decided(fresh, "rejected", { reviewer: "u-admin", comment: "No" }, LATER)).toMatchObject({ status: "rejected", live: false, comment: "No" });
		expect(decided(requested(true, "u-editor", NOW), "rejected", { reviewer: "u-admin", comment: "No" }, LATER)).toMatchObject({ status: "rejected", live: true });
	});

	it("only a pending change is decided (409 otherwise)", () => {
		for (const state of [APPROVED, decided(requested(false, "u", NOW), "rejected", { reviewer: "a", comment: "No" }, LATER)]) {
			expect(() => decided(state, "approved", { reviewer: "a", comment: null }, LATER)).toThrow(AppError);
			try {
				decided(state, "approved", { reviewer: "a", comment: null }, LATER);
			} catch (err) {
				expect((err as AppError).type).toBe("CONFLICT");
			}
		}
	});
});

describe("deciding what was reviewed", () => {
	it("a decision naming the request reviewed decides it; naming one another change replaced answers 409", () => {
		const pending = requested(true, "u-editor", NOW);
		expect(decided(pending, "approved", { reviewer: "a", comment: null, reviewed: NOW.toISOString() }, LATER).status).toBe("approved");
		// The same instant written otherwise still names it.
		expect(decided(pending, "approved", { reviewer: "a", comment: null, reviewed: "2026-12-01T10:00:00Z" }, LATER).status).toBe("approved");
		const replaced = requested(true, "u-editor", LATER);
		try {
			decided(replaced, "approved", { reviewer: "a", comment: null, reviewed: NOW.toISOString() }, LATER);
			throw new Error("expected a 409");
		} catch (err) {
			expect((err as AppError).type).toBe("CONFLICT");
		}
	});
});

describe("an editor's content edit under approval", () => {
	it("the name and tags apply at once; how it plays joins the pending proposal", () => {
		const { direct, proposal } = heldBack({ name: "New", tags: ["a"], durationMs: 9000, validUntil: null }, { proposal: { validFrom: "2026-12-02T00:00:00.000Z" } });
		expect(direct).toEqual({ name: "New", tags: ["a"] });
		expect(proposal).toEqual({ validFrom: "2026-12-02T00:00:00.000Z", durationMs: 9000, validUntil: null });
	});

	it("an edit of the name only proposes nothing", () => {
		expect(heldBack({ name: "Only" }, { proposal: null })).toEqual({ direct: { name: "Only" }, proposal: null });
	});
});
