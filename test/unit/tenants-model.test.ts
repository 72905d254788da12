/**
 * services/tenants/model.ts: stored tenants, memberships and invitations → the views the tenants
 * actions answer, each exactly its published schema; settings merges and the changed fields.
 */
import { FormatRegistry, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { DEFAULT_SETTINGS, InvitationExport, InvitationRow, MemberRow, TenantView } from "../../shared/contracts";
import { changedFields, invitationExport, invitationRow, memberRow, mergeSettings, tenantView, type InvitationDoc, type MembershipDoc, type TenantDoc } from "../../services/tenants/model";

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

/** Exactly the schema: typed as declared and nothing more. */
function expectShape(schema: TSchema, body: unknown): void {
	expect([...Value.Errors(schema, body)].map(e => `${e.path}: ${e.message}`)).toEqual([]);
	expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
}

const stamps = { createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-02T00:00:00.000Z" };

const tenant: TenantDoc = { id: "t1", ...stamps, name: "Acme", slug: "acme", plan: "pro", settings: { timezone: "Europe/Paris" } };
const membership: MembershipDoc = { id: "m1", tenantId: "t1", ...stamps, userId: "u1", role: "editor", joinedAt: "2026-01-03T00:00:00.000Z" };
const invitation: InvitationDoc = {
	id: "i1",
	tenantId: "t1",
	...stamps,
	email: "new@example.com",
	role: "viewer",
	tokenHash: "a".repeat(64),
	expiresAt: "2026-01-08T00:00:00.000Z",
	invitedBy: "u1"
};

describe("tenantView", () => {
	it("fills the settings never set with the defaults; no storage fields leak", () => {
		const view = tenantView(tenant);
		expect(view).toEqual({ id: "t1", name: "Acme", slug: "acme", plan: "pro", createdAt: stamps.createdAt, settings: { ...DEFAULT_SETTINGS, timezone: "Europe/Paris" } });
		expectShape(TenantView, view);
	});

	it("a tenant stored without plan or settings is free with the defaults", () => {
		const view = tenantView({ id: "t2", ...stamps, name: "Old", slug: "old" });
		expect(view).toMatchObject({ plan: "free", settings: DEFAULT_SETTINGS });
		expectShape(TenantView, view);
	});
});

describe("settings", () => {
	const current = tenantView(tenant);

	it("mergeSettings applies what is given and keeps what is absent", () => {
		expect(mergeSettings(current.settings, { offlineAfterSec: 120, timezone: undefined })).toEqual({ ...current.settings, offlineAfterSec: 120 });
		expect(mergeSettings(current.settings, {})).toEqual(current.settings);
	});

	it("changedFields names the name and each setting whose value changed", () => {
		const settings = mergeSettings(current.settings, { offlineAfterSec: 120, timezone: "Europe/Paris" });
		expect(changedFields(current, "Acme", settings)).toEqual(["settings.offlineAfterSec"]);
		expect(changedFields(current, "Acme Signage", current.settings)).toEqual(["name"]);
		expect(changedFields(current, undefined, current.settings)).toEqual([]);
	});
});

describe("rows", () => {
	it("memberRow joins the account, or nulls when it is gone", () => {
		const row = memberRow(membership, { email: "e@example.com", name: "Ed" });
		expect(row).toEqual({ userId: "u1", email: "e@example.com", name: "Ed", role: "editor", joinedAt: membership.joinedAt });
		expectShape(MemberRow, row);
		const orphan = memberRow(membership, undefined);
		expect(orphan).toMatchObject({ email: null, name: null });
		expectShape(MemberRow, orphan);
	});

	it("invitationRow and invitationExport never carry the token hash", () => {
		const row = invitationRow(invitation);
		expect(row).toEqual({ id: "i1", email: "new@example.com", role: "viewer", expiresAt: invitation.expiresAt, createdAt: stamps.createdAt });
		expectShape(InvitationRow, row);
		const pending = invitationExport(invitation);
		expect(JSON.parse(JSON.stringify(pending))).toEqual(row);
		const accepted = invitationExport({ ...invitation, acceptedAt: "2026-01-04T00:00:00.000Z" });
		expect(accepted).toEqual({ ...row, acceptedAt: "2026-01-04T00:00:00.000Z" });
		expectShape(InvitationExport, accepted);
		expect(JSON.stringify([row, pending, accepted])).not.toMatch(/tokenHash|invitedBy/);
	});
});
