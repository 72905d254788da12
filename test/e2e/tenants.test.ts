/**
 * Tenants over HTTP: settings, invitations, members and roles, ownership transfer, and the
 * GDPR export and deletion, checked across every service's stored data.
 */
import { FormatRegistry, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ALL_TENANTS, TenantCollection, type GlobalCollection, type Stored, type TenantOwned } from "../../mixins/db.mixin";
import { InvitationCreated, InvitationPage, LoginAnswer, MemberPage, MemberRole, OwnershipTransferred, TenantArchive, TenantView } from "../../shared/contracts";
import { EVENT_CHANNEL } from "../../shared/channels";
import { sendToChannel } from "../../shared/contracts";
import { request, startGateway, tempDir, type ErrorBody } from "../helpers/platform";
import { codeFor } from "../helpers/totp";
import { bearer, login, mailbox, mailSettled, newAccount, PLATFORM_SERVICES, register, someClient, startTestPlatform, tokenFromMail, waitForMail, type Platform, type Session } from "../helpers/accounts";
import { until } from "../helpers/until";

type Member = { userId: string; email: string; name: string; role: string; joinedAt: string };
/** Any stored document, with the fields the deletion check looks at when a collection has them. */
type AnyDoc = Stored & { tenantId?: unknown; userId?: unknown; tenant?: unknown };
type AnyCollection = TenantCollection<TenantOwned & AnyDoc> | GlobalCollection<AnyDoc>;

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

/** The body is exactly what the action's published schema says: every field typed as declared, and none more. */
function expectShape(schema: TSchema, body: unknown): void {
	expect([...Value.Errors(schema, body)].map(e => `${e.path}: ${e.message}`)).toEqual([]);
	expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
}

describe("tenants", () => {
	let p: Platform;
	let owner: Session & { password: string };

	beforeAll(async () => {
		// Members beyond the default plan's five: limits have their own cases below.
		p = await startTestPlatform({ DEFAULT_PLAN_MEMBERS: "100", NOTIFICATIONS_POLL_MS: "50" });
		owner = await register(p, newAccount("boss"));
	});
	afterAll(() => p.stop());

	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	/** Invites `role` into the owner's tenant and accepts as a new account. */
	async function addMember(role: string, inviter: { accessToken: string } = owner): Promise<Session & { password: string }> {
		const account = newAccount(role);
		const invited = await request<{ id: string; email: string; role: string; expiresAt: string }>(p.api("/invitations"), {
			method: "POST",
			headers: as(inviter),
			json: { email: account.email, role }
		});
		if (invited.status !== 201) throw new Error(`invite answered ${invited.status}: ${invited.text}`);
		const token = await tokenFromMail(p, account.email, "accept-invitation");
		const accepted = await request<Session>(p.api("/invitations/accept"), { method: "POST", headers: someClient(), json: { token, name: account.name, password: account.password } });
		if (accepted.status !== 200) throw new Error(`accept answered ${accepted.status}: ${accepted.text}`);
		return { ...accepted.body, password: account.password };
	}

	describe("organisation names", () => {
		const signUp = (organizationName: string) =>
			request<Session>(p.api("/auth/register"), { method: "POST", headers: someClient(), json: { ...newAccount("named"), organizationName } });

		it("names that collide (same, case, punctuation, non-Latin, no letters at all) all sign up with unique slugs", async () => {
			const names = ["Acme", "Acme", "ACME", "A.C.M.E", "a c m e", "東京サイネージ", "東京サイネージ", "Москва", "Москва", "!!!", "!!!", "🎉", "Αθήνα"];
			const slugs: string[] = [];
			for (const name of names) {
				const res = await signUp(name);
				expect(res.status).toBe(201);
				expect(res.body.tenant.name).toBe(name);
				slugs.push(res.body.tenant.slug);
			}
			expect(new Set(slugs).size).toBe(names.length);
			expect(slugs.slice(0, 2)).toEqual(["acme", expect.stringMatching(/^acme-[a-z0-9]{6}$/)]);
			expect(slugs[5]).toBe("東京サイネージ");
			expect(slugs[7]).toBe("moskva");
			expect(slugs[9]).toBe("org");
			expect(slugs[12]).toBe("athina");
		});

		it("ten sign-ups with one new name at the same moment all succeed, each with its own slug", async () => {
			const name = `Parallel Signage ${Date.now()}`;
			const answers = await Promise.all(Array.from({ length: 10 }, () => signUp(name)));
			expect(answers.map(a => a.status)).toEqual(Array(10).fill(201));
			expect(new Set(answers.map(a => a.body.tenant.slug)).size).toBe(10);
		});

		it("keeps emoji, long and right-to-left names as they were typed", async () => {
			for (const name of ["Café 🎬 Screens", "ش".repeat(200), "‮evil‬ name"]) {
				const res = await signUp(name);
				expect(res.status).toBe(201);
				expect(res.body.tenant.name).toBe(name);
			}
		});
	});

	describe("tenant profile and settings", () => {
		it("GET /tenant has the settings; PATCH merges them; bad values answer 422", async () => {
			const got = await request<{ settings: Record<string, unknown> }>(p.api("/tenant"), { headers: as(owner) });
			expect(got.body.settings).toEqual({ timezone: "UTC", offlineAlertMinutes: 10, offlineAfterSec: 90, requireTwoFactor: false, contentApproval: false });
			expectShape(TenantView, got.body);
			const patched = await request<{ name: string; plan: string; id: string; settings: Record<string, unknown> }>(p.api("/tenant"), {
				method: "PATCH",
				headers: as(owner),
				json: { name: "Boss Signage", settings: { timezone: "Europe/London" }, plan: "enterprise", id: "other" }
			});
			expect(patched.status).toBe(200);
			expect(patched.body).toMatchObject({ id: owner.tenant.id, name: "Boss Signage", plan: "free", settings: { timezone: "Europe/London", offlineAlertMinutes: 10 } });
			expectShape(TenantView, patched.body);
			const bad = await request<ErrorBody>(p.api("/tenant"), { method: "PATCH", headers: as(owner), json: { settings: { timezone: "Mars/Olympus" } } });
			expect(bad.status).toBe(422);
			expect(bad.body.error.data).toEqual([expect.objectContaining({ field: "settings.timezone" })]);
			const outOfRange = await request(p.api("/tenant"), { method: "PATCH", headers: as(owner), json: { settings: { offlineAfterSec: 5 } } });
			expect(outOfRange.status).toBe(422);
		});
	});

	describe("invitations", () => {
		it("re-sending one invitation is limited: the fourth in a day answers 429 and sends nothing", async () => {
			const email = newAccount("resent").email;
			for (let i = 0; i < 3; i++) {
				expect((await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email, role: "viewer" } })).status).toBe(201);
			}
			const mailed = (await waitForMail(p, email, 3)).length;
			const fourth = await request<ErrorBody>(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email, role: "viewer" } });
			expect(fourth.status).toBe(429);
			expect(Number(fourth.headers.get("retry-after"))).toBeGreaterThan(0);
			await mailSettled(p);
			expect(mailbox(p, email)).toHaveLength(mailed);
			expect(mailed).toBe(3);
		});

		it("create an account with the invited role; the token works once", async () => {
			const account = newAccount("invitee");
			const invited = await request<{ id: string; email: string; role: string; expiresAt: string }>(p.api("/invitations"), {
				method: "POST",
				headers: as(owner),
				json: { email: account.email, role: "editor" }
			});
			expect(invited.status).toBe(201);
			expect(invited.body).toEqual({ id: expect.any(String), email: account.email, role: "editor", expiresAt: expect.any(String) });
			expectShape(InvitationCreated, invited.body);
			expect(Date.parse(invited.body.expiresAt)).toBeGreaterThan(Date.now() + 6 * 24 * 3600_000);
			const pending = await request<{ rows: Array<{ id: string }> }>(p.api("/invitations"), { headers: as(owner) });
			expect(pending.body.rows.map(r => r.id)).toContain(invited.body.id);
			expectShape(InvitationPage, pending.body);

			const token = await tokenFromMail(p, account.email, "accept-invitation");
			const accepted = await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token, name: account.name, password: account.password } });
			expect(accepted.status).toBe(200);
			expect(accepted.body).toMatchObject({ role: "editor", tenant: { id: owner.tenant.id }, user: { email: account.email, emailVerified: true } });
			expect(accepted.body.accessToken).toBeTruthy();
			expectShape(LoginAnswer, accepted.body);
			const again = await request<ErrorBody>(p.api("/invitations/accept"), { method: "POST", json: { token, name: account.name, password: account.password } });
			expect(again.status).toBe(400);
			const members = await request<{ rows: Member[] }>(p.api("/members"), { headers: as(owner) });
			expect(members.body.rows.find(m => m.email === account.email)).toMatchObject({ role: "editor", name: account.name });
			expectShape(MemberPage, members.body);
		});

		it("an existing account accepts with its password, which is checked", async () => {
			const other = await register(p, newAccount("elsewhere"));
			await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: other.user.email, role: "viewer" } });
			const token = await tokenFromMail(p, other.user.email, "accept-invitation");
			const wrong = await request(p.api("/invitations/accept"), { method: "POST", json: { token, password: "not my password at all" } });
			expect(wrong.status).toBe(401);
			const right = await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token, password: other.password } });
			expect(right.status).toBe(200);
			expect(right.body).toMatchObject({ role: "viewer", tenant: { id: owner.tenant.id }, user: { id: other.user.id } });
			// Signing in lands where the last sign-in (the acceptance) went.
			expect((await login(p, other.user.email, other.password)).tenant.id).toBe(owner.tenant.id);
		});

		it("refuses members (409), owners (422), admins from an admin (403); can be revoked", async () => {
			const admin = await addMember("admin");
			const dup = await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: admin.user.email, role: "viewer" } });
			expect(dup.status).toBe(409);
			const asOwner = await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: "x-owner@example.com", role: "owner" } });
			expect(asOwner.status).toBe(422);
			const adminInvitesAdmin = await request(p.api("/invitations"), { method: "POST", headers: as(admin), json: { email: "x-admin@example.com", role: "admin" } });
			expect(adminInvitesAdmin.status).toBe(403);
			const adminInvitesEditor = await request<{ id: string }>(p.api("/invitations"), { method: "POST", headers: as(admin), json: { email: "x-editor@example.com", role: "editor" } });
			expect(adminInvitesEditor.status).toBe(201);
			const token = await tokenFromMail(p, "x-editor@example.com", "accept-invitation");
			expect((await request(p.api(`/invitations/${adminInvitesEditor.body.id}`), { method: "DELETE", headers: as(admin) })).status).toBe(204);
			expect((await request(p.api("/invitations/accept"), { method: "POST", json: { token, name: "X", password: "a good passphrase 123" } })).status).toBe(400);
		});
	});

	describe("members and roles", () => {
		it("an admin manages editors and viewers but not admins; the owner does", async () => {
			const admin = await addMember("admin");
			const editor = await addMember("editor");
			const other = await addMember("admin");
			expect((await request(p.api(`/members/${editor.user.id}`), { method: "PATCH", headers: as(admin), json: { role: "viewer" } })).status).toBe(200);
			expect((await request(p.api(`/members/${editor.user.id}`), { method: "PATCH", headers: as(admin), json: { role: "admin" } })).status).toBe(403);
			expect((await request(p.api(`/members/${other.user.id}`), { method: "PATCH", headers: as(admin), json: { role: "viewer" } })).status).toBe(403);
			expect((await request(p.api(`/members/${other.user.id}`), { method: "DELETE", headers: as(admin) })).status).toBe(403);
			const promoted = await request<Member>(p.api(`/members/${editor.user.id}`), { method: "PATCH", headers: as(owner), json: { role: "admin" } });
			expect(promoted.status).toBe(200);
			expect(promoted.body).toMatchObject({ userId: editor.user.id, role: "admin" });
			expectShape(MemberRole, promoted.body);
			expect((await request(p.api(`/members/${editor.user.id}`), { method: "PATCH", headers: as(owner), json: { role: "superuser" } })).status).toBe(422);
		});

		it("a role change ends the member's sessions, so the new role applies at once", async () => {
			const member = await addMember("editor");
			expect((await request(p.api(`/members/${member.user.id}`), { method: "PATCH", headers: as(owner), json: { role: "viewer" } })).status).toBe(200);
			expect((await request(p.api("/auth/me"), { headers: as(member) })).status).toBe(401);
			expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: member.refreshToken } })).status).toBe(401);
			const again = await login(p, member.user.email, member.password);
			expect(again.role).toBe("viewer");
		});

		it("a removed member's sessions end; they can leave themselves; the last owner can do neither", async () => {
			const removed = await addMember("viewer");
			expect((await request(p.api(`/members/${removed.user.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
			expect((await request(p.api("/tenant"), { headers: as(removed) })).status).toBe(401);
			expect((await request(p.api(`/members/${removed.user.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(404);

			const leaver = await addMember("editor");
			expect((await request(p.api("/members/me"), { method: "DELETE", headers: as(leaver) })).status).toBe(204);
			expect((await request(p.api("/tenant"), { headers: as(leaver) })).status).toBe(401);

			const selfDemote = await request<ErrorBody>(p.api(`/members/${owner.user.id}`), { method: "PATCH", headers: as(owner), json: { role: "admin" } });
			expect(selfDemote.status).toBe(409);
			expect((await request(p.api("/members/me"), { method: "DELETE", headers: as(owner) })).status).toBe(409);
			expect((await request(p.api(`/members/${owner.user.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(409);
		});

		it("ownership transfer makes the member the owner and the caller an admin", async () => {
			const boss = await register(p, newAccount("founder"));
			const account = newAccount("heir");
			await request(p.api("/invitations"), { method: "POST", headers: as(boss), json: { email: account.email, role: "admin" } });
			const token = await tokenFromMail(p, account.email, "accept-invitation");
			const heir = (await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token, name: account.name, password: account.password } })).body;
			expect((await request(p.api("/tenant/transfer-ownership"), { method: "POST", headers: as(heir), json: { userId: boss.user.id } })).status).toBe(403);
			const moved = await request(p.api("/tenant/transfer-ownership"), { method: "POST", headers: as(boss), json: { userId: heir.user.id } });
			expect(moved.status).toBe(200);
			expect(moved.body).toEqual({ userId: heir.user.id, role: "owner" });
			expectShape(OwnershipTransferred, moved.body);
			expect((await login(p, account.email, account.password)).role).toBe("owner");
			expect((await login(p, boss.user.email, boss.password)).role).toBe("admin");
		});
	});

	describe("GDPR", () => {
		it("the owner exports the whole tenant as JSON without secrets; others may not", async () => {
			const editor = await addMember("editor");
			expect((await request(p.api("/tenant/export"), { headers: as(editor) })).status).toBe(403);
			const res = await request<{ tenantId: string; services: Record<string, Record<string, unknown[]>> }>(p.api("/tenant/export"), { headers: as(owner) });
			expect(res.status).toBe(200);
			expect(res.headers.get("content-disposition")).toMatch(/attachment; filename="marquee-export-/);
			expect(res.body.tenantId).toBe(owner.tenant.id);
			expect(Object.keys(res.body.services).sort()).toEqual(expect.arrayContaining(["auth", "tenants"]));
			const users = res.body.services.auth.users as Array<{ email: string }>;
			expect(users.map(u => u.email)).toEqual(expect.arrayContaining([owner.user.email, editor.user.email]));
			expect(res.text).not.toMatch(/passwordHash|tokenHash|keyHash|currentHash|usedHashes|\$2[aby]\$/);
			expectShape(TenantArchive, res.body);
		});

		it("with a service that keeps tenant data down, the export answers 503 naming it instead of an incomplete archive", async () => {
			const partial = await startGateway(PLATFORM_SERVICES.filter(service => service.name !== "media"), { DATA_DIR: tempDir() });
			try {
				const api = (path: string) => `${partial.url}/api/v1${path}`;
				const account = newAccount("partial");
				const signed = await request<Session>(api("/auth/register"), { method: "POST", headers: someClient(), json: account });
				const res = await request<ErrorBody>(api("/tenant/export"), { headers: as(signed.body) });
				expect(res.status).toBe(503);
				expect(res.body.error).toMatchObject({ type: "SERVICE_UNAVAILABLE", data: { services: ["media"] } });
				expect(res.body.error.message).toContain("media");
			} finally {
				await partial.stop();
			}
		});

		it("deleting needs the tenant's name; afterwards no document, session or account of it is left in any service", async () => {
			const doomed = await register(p, newAccount("doomed"));
			const account = newAccount("crew");
			await request(p.api("/invitations"), { method: "POST", headers: as(doomed), json: { email: account.email, role: "editor" } });
			const crewToken = await tokenFromMail(p, account.email, "accept-invitation");
			const crew = (await request<Session>(p.api("/invitations/accept"), { method: "POST", json: { token: crewToken, name: account.name, password: account.password } })).body;
			// A member who also belongs to another tenant keeps their account.
			const survivor = await register(p, newAccount("survivor"));
			await request(p.api("/invitations"), { method: "POST", headers: as(doomed), json: { email: survivor.user.email, role: "viewer" } });
			const survivorToken = await tokenFromMail(p, survivor.user.email, "accept-invitation");
			await request(p.api("/invitations/accept"), { method: "POST", json: { token: survivorToken, password: survivor.password } });
			await request(p.api("/invitations"), { method: "POST", headers: as(doomed), json: { email: "pending-doomed@example.com", role: "viewer" } });
			const key = await request<{ key: string }>(p.api("/api-keys"), { method: "POST", headers: as(doomed), json: { name: "k", role: "viewer" } });
			await p.broker.call("auth.mintDeviceToken", { tenantId: doomed.tenant.id, displayId: "display-of-doomed" });
			// Two-factor on the owner's account: its secret, recovery codes and a waiting sign-in challenge must go too.
			const enrol = await request<{ secret: string }>(p.api("/auth/2fa/enrol"), { method: "POST", headers: as(doomed), json: { password: doomed.password } });
			expect((await request(p.api("/auth/2fa/confirm"), { method: "POST", headers: as(doomed), json: { code: codeFor(enrol.body.secret) } })).status).toBe(200);
			expect((await request(p.api("/auth/login"), { method: "POST", json: { email: doomed.user.email, password: doomed.password } })).body).toMatchObject({ challenge: "totp" });
			// Something in every other service: a group, a web page, a playlist, a schedule, an override.
			await request(p.api("/display-groups"), { method: "POST", headers: as(doomed), json: { name: "Doomed group" } });
			const page = await request<{ id: string }>(p.api("/content/url"), { method: "POST", headers: as(doomed), json: { name: "Doomed page", url: "https://example.com/", durationMs: 5000 } });
			const list = await request<{ id: string }>(p.api("/playlists"), { method: "POST", headers: as(doomed), json: { name: "Doomed", items: [{ contentId: page.body.id }] } });
			const planned = [
				await request(p.api("/schedules"), { method: "POST", headers: as(doomed), json: { name: "Doomed", playlistId: list.body.id, targets: { tags: ["all"] } } }),
				await request(p.api("/overrides"), { method: "POST", headers: as(doomed), json: { name: "Doomed", playlistId: list.body.id, endsAt: new Date(Date.now() + 60_000).toISOString() } })
			];
			expect(planned.map(r => r.status)).toEqual([201, 201]);
			// And in notifications: a webhook endpoint with a delivery, an event, an in-app notification.
			const hook = await request<{ id: string }>(p.api("/webhooks"), { method: "POST", headers: as(doomed), json: { url: "https://hooks.example.com/doomed", events: ["quota.warning"] } });
			expect((await request(p.api(`/webhooks/${hook.body.id}/test`), { method: "POST", headers: as(doomed) })).status).toBe(202);
			await sendToChannel(p.broker, EVENT_CHANNEL, { id: `evt_doomed_${Date.now()}`, tenantId: doomed.tenant.id, type: "quota.warning", timestamp: new Date().toISOString(), data: { resource: "members", used: 80, limit: 100 } });
			for (let i = 0; i < 250; i++) {
				const inbox = await request<{ total: number }>(p.api("/notifications"), { headers: as(doomed) });
				if (inbox.body.total > 0) break;
				await new Promise(resolve => setTimeout(resolve, 20));
			}
			expect((await request<{ total: number }>(p.api("/notifications"), { headers: as(doomed) })).body.total).toBeGreaterThan(0);

			const wrong = await request<ErrorBody>(p.api("/tenant"), { method: "DELETE", headers: as(doomed), json: { confirm: "not the name" } });
			expect(wrong.status).toBe(422);
			expect((await request(p.api("/tenant"), { method: "DELETE", headers: as(crew), json: { confirm: doomed.tenant.name } })).status).toBe(403);
			const deleted = await request(p.api("/tenant"), { method: "DELETE", headers: as(doomed), json: { confirm: doomed.tenant.name } });
			expect(deleted.status).toBe(204);

			// Every collection of every service that has one, checked directly.
			const tenantId = doomed.tenant.id;
			const collections: Array<[string, AnyCollection]> = [];
			for (const svc of p.broker.services as unknown as Array<{ name: string; db?: Record<string, AnyCollection> }>) {
				for (const [collection, c] of Object.entries(svc.db ?? {})) collections.push([`${svc.name}.${collection}`, c]);
			}
			expect(collections.map(([name]) => name)).toEqual(expect.arrayContaining(["auth.two_factor", "auth.recovery_codes", "auth.login_challenges", "devices.display_groups", "media.content", "scheduling.playlists", "scheduling.schedules", "scheduling.overrides", "notifications.email_outbox", "notifications.notifications", "notifications.webhook_endpoints", "notifications.webhook_events", "notifications.webhook_deliveries", "notifications.alert_states"]));
			const leftovers = async () => {
				const found: string[] = [];
				for (const [name, c] of collections) {
					// Every tenant's documents, not only the deleted tenant's: its users' documents must be gone everywhere.
					const docs: AnyDoc[] = c instanceof TenantCollection ? await c.findDocs(ALL_TENANTS) : await c.findDocs();
					// (`tenant`: the email outbox, a global collection, names the tenant whose log shows an email so)
					const mine = docs.filter(d => d.tenantId === tenantId || d.tenant === tenantId || d.id === tenantId || [doomed.user.id, crew.user.id].includes(String(d.userId ?? d.id)));
					if (mine.length) found.push(`${name}: ${mine.length}`);
				}
				return found;
			};
			await until("the tenant's documents gone", async () => (await leftovers()).length === 0).catch(() => undefined); // the next line says what is left
			expect(await leftovers()).toEqual([]);

			expect((await request(p.api("/auth/me"), { headers: as(doomed) })).status).toBe(401);
			expect((await request(p.api("/tenant"), { headers: as(crew) })).status).toBe(401);
			expect((await request(p.api("/tenant"), { headers: bearer(key.body.key) })).status).toBe(401);
			expect((await request(p.api("/auth/login"), { method: "POST", json: { email: doomed.user.email, password: doomed.password } })).status).toBe(401);
			expect((await request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: crew.refreshToken } })).status).toBe(401);
			// The member of another tenant still signs in, into that tenant.
			expect((await login(p, survivor.user.email, survivor.password)).tenant.id).toBe(survivor.tenant.id);
			const auth = p.broker.getLocalService("auth") as unknown as { db: { users: GlobalCollection<Stored> } };
			expect(await auth.db.users.findDoc({ _id: survivor.user.id })).not.toBeNull();
		});
	});
});
