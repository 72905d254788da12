/**
 * Content approval on the real platform: with the tenant's `contentApproval` on, an editor's new
 * content and playlist changes wait for an admin; only approved versions reach manifests (an
 * approved playlist plays on while its change waits); rejections need a comment and never play;
 * approvers and authors are told in-app; every decision is audited; viewers and editors cannot
 * decide; another tenant's ids answer 404. Expected statuses are written by hand.
 */
import sharp from "sharp";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody } from "../helpers/platform";
import { addMember } from "../helpers/routes";
import type { Role } from "../../shared/rbac";

interface Approval {
	status: "approved" | "pending" | "rejected";
	live: boolean;
	requestedBy: string | null;
	reviewedBy: string | null;
	comment: string | null;
}
interface Content {
	id: string;
	name: string;
	durationMs: number;
	approval: Approval;
	proposal: { durationMs?: number } | null;
}
interface Playlist {
	id: string;
	items: Array<{ contentId: string; durationMs: number }>;
	approval: Approval;
	draft: { items: Array<{ contentId: string }> } | null;
}
interface Manifest {
	etag: string;
	items: Array<{ contentId: string; durationMs: number }>;
}

describe("content approval", () => {
	let p: Platform;
	let owner: Session;
	let admin: Session;
	let editor: Session;
	let viewer: Session;
	let display: { id: string };
	let device: string;
	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const settled = () => (p.broker.getLocalService("scheduling") as unknown as { idle(): Promise<void> }).idle();

	const member = async (role: Role): Promise<Session> => (await addMember(p, owner.accessToken, role)).session;

	async function web(s: Session, name: string, durationMs = 8000): Promise<Content> {
		const res = await request<Content>(p.api("/content/url"), { method: "POST", headers: as(s), json: { name, url: `https://example.com/${encodeURIComponent(name)}`, durationMs } });
		expect(res.status).toBe(201);
		return res.body;
	}

	async function manifest(): Promise<Manifest> {
		await settled();
		const res = await request<Manifest>(p.api("/device/manifest"), { headers: bearer(device) });
		expect(res.status).toBe(200);
		return res.body;
	}

	const decide = (kind: "content" | "playlists", id: string, decision: "approve" | "reject", s: Session, comment?: string) =>
		request<Content & Playlist & ErrorBody>(p.api(`/${kind}/${id}/${decision}`), { method: "POST", headers: as(s), json: comment === undefined ? {} : { comment } });

	const notifications = async (s: Session) =>
		(await request<{ rows: Array<{ type: string; title: string; body: string; data: Record<string, unknown> }> }>(p.api("/notifications?pageSize=100"), { headers: as(s) })).body.rows;

	beforeAll(async () => {
		p = await startTestPlatform({ DEFAULT_PLAN_MEMBERS: "100" });
		owner = await register(p, newAccount("approval"));
		[admin, editor, viewer] = [await member("admin"), await member("editor"), await member("viewer")];
		({ display, token: device } = await pairDisplay(p, owner, { name: "Lobby" }));
	});
	afterAll(() => p.stop());

	it("is off by default: an editor's content plays at once", async () => {
		const tenant = await request<{ settings: { contentApproval: boolean } }>(p.api("/tenant"), { headers: as(owner) });
		expect(tenant.body.settings.contentApproval).toBe(false);
		const item = await web(editor, "Before approval");
		expect(item.approval).toMatchObject({ status: "approved", live: true });
		expect(item.proposal).toBeNull();
	});

	it("only admins turn it on", async () => {
		for (const s of [editor, viewer]) expect((await request(p.api("/tenant"), { method: "PATCH", headers: as(s), json: { settings: { contentApproval: true } } })).status).toBe(403);
		expect((await request(p.api("/tenant"), { method: "PATCH", headers: as(owner), json: { settings: { contentApproval: "yes" } } })).status).toBe(422);
		const on = await request<{ settings: { contentApproval: boolean } }>(p.api("/tenant"), { method: "PATCH", headers: as(admin), json: { settings: { contentApproval: true } } });
		expect(on.status).toBe(200);
		expect(on.body.settings.contentApproval).toBe(true);
	});

	it("an editor's upload reaches no manifest until an admin approves it; viewers and editors cannot approve", async () => {
		const png = await sharp({ create: { width: 64, height: 32, channels: 3, background: { r: 200, g: 20, b: 30 } } }).png().toBuffer();
		const form = new FormData();
		form.append("name", "Sale 🛍️ セール");
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "sale.png");
		const uploaded = await request<Content>(p.api("/content"), { method: "POST", headers: as(editor), body: form });
		expect(uploaded.status).toBe(201);
		expect(uploaded.body.approval).toMatchObject({ status: "pending", live: false, requestedBy: editor.user.id });
		const approved = await web(admin, "Admin's own");
		expect(approved.approval).toMatchObject({ status: "approved", live: true });

		// The admin puts both on the display (an admin's playlist applies at once).
		const list = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(admin), json: { name: "Lobby loop", items: [{ contentId: uploaded.body.id }, { contentId: approved.id }] } });
		expect(list.status).toBe(201);
		expect(list.body.approval.status).toBe("approved");
		expect((await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: list.body.id } })).status).toBe(200);
		const before = await manifest();
		expect(before.items.map(i => i.contentId)).toEqual([approved.id]);
		expect((await request(p.api(`/device/content/${uploaded.body.id}`), { headers: bearer(device) })).status).toBe(404);
		expect((await request<{ rows: Content[] }>(p.api("/content?approval=pending"), { headers: as(viewer) })).body.rows.map(c => c.id)).toContain(uploaded.body.id);

		for (const s of [viewer, editor]) {
			const refused = await decide("content", uploaded.body.id, "approve", s);
			expect(refused.status).toBe(403);
			expect(refused.body.error.type).toBe("FORBIDDEN");
		}
		expect((await manifest()).items.map(i => i.contentId)).toEqual([approved.id]);

		const yes = await decide("content", uploaded.body.id, "approve", admin, "Looks good");
		expect(yes.status).toBe(200);
		expect(yes.body.approval).toMatchObject({ status: "approved", live: true, reviewedBy: admin.user.id, comment: "Looks good" });
		const after = await manifest();
		expect(after.items.map(i => i.contentId)).toEqual([uploaded.body.id, approved.id]);
		expect(after.etag).not.toBe(before.etag);
		expect((await decide("content", uploaded.body.id, "approve", admin)).status).toBe(409);

		// The approver was told, the author was told, and the decision is audited.
		expect((await notifications(admin)).some(n => n.type === "approval.requested" && n.data.id === uploaded.body.id)).toBe(true);
		expect((await notifications(editor)).find(n => n.type === "approval.decided" && n.data.id === uploaded.body.id)).toMatchObject({ title: "Approved: “Sale 🛍️ セール”" });
		// The audit log is written through a durable channel into analytics: it shows within moments.
		for (let tries = 0; ; tries++) {
			const audit = await request<{ rows: Array<{ action: string; target: string; actor: { id: string } }> }>(p.api("/audit-logs?action=content.approved"), { headers: as(owner) });
			expect(audit.status).toBe(200);
			if (audit.body.rows.some(r => r.target === uploaded.body.id && r.actor.id === admin.user.id)) break;
			if (tries > 200) throw new Error(`content.approved not audited: ${JSON.stringify(audit.body)}`);
			await new Promise(resolve => setTimeout(resolve, 50));
		}
	});

	it("a rejected item never plays; a rejection needs a comment; deciding twice answers 409", async () => {
		const item = await web(editor, "Off-brand");
		const list = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(owner), json: { name: "Rejects", items: [{ contentId: item.id }] } });
		expect((await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: list.body.id } })).status).toBe(200);
		const noComment = await decide("content", item.id, "reject", admin);
		expect(noComment.status).toBe(422);
		expect(noComment.body.error.data).toEqual([expect.objectContaining({ field: "comment" })]);
		expect((await decide("content", item.id, "reject", admin, "   ")).status).toBe(422);
		const no = await decide("content", item.id, "reject", admin, "Wrong logo colours");
		expect(no.status).toBe(200);
		expect(no.body.approval).toMatchObject({ status: "rejected", live: false, comment: "Wrong logo colours" });
		expect((await manifest()).items).toEqual([]);
		expect((await decide("content", item.id, "approve", admin)).status).toBe(409);
		expect((await notifications(editor)).find(n => n.type === "approval.decided" && n.data.id === item.id)?.body).toContain("Wrong logo colours");
		expect((await request<{ rows: Content[] }>(p.api("/content?approval=rejected"), { headers: as(viewer) })).body.rows.map(c => c.id)).toEqual([item.id]);
	});

	it("a change to an approved playlist keeps the approved version playing until its change is approved", async () => {
		const a = await web(admin, "A");
		const b = await web(admin, "B");
		const list = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(admin), json: { name: "Menu", items: [{ contentId: a.id }] } });
		expect((await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as(owner), json: { defaultPlaylistId: list.body.id } })).status).toBe(200);
		expect((await manifest()).items.map(i => i.contentId)).toEqual([a.id]);

		const changed = await request<Playlist>(p.api(`/playlists/${list.body.id}`), { method: "PATCH", headers: as(editor), json: { items: [{ contentId: a.id }, { contentId: b.id }] } });
		expect(changed.status).toBe(200);
		expect(changed.body.items.map(i => i.contentId)).toEqual([a.id]);
		expect(changed.body.draft?.items.map(i => i.contentId)).toEqual([a.id, b.id]);
		expect(changed.body.approval).toMatchObject({ status: "pending", live: true });
		expect((await manifest()).items.map(i => i.contentId)).toEqual([a.id]);
		expect((await request<{ rows: Playlist[] }>(p.api("/playlists?approval=pending"), { headers: as(viewer) })).body.rows.map(l => l.id)).toContain(list.body.id);
		expect((await decide("playlists", list.body.id, "approve", viewer)).status).toBe(403);

		const yes = await decide("playlists", list.body.id, "approve", admin);
		expect(yes.status).toBe(200);
		expect(yes.body.items.map(i => i.contentId)).toEqual([a.id, b.id]);
		expect(yes.body.draft).toBeNull();
		expect((await manifest()).items.map(i => i.contentId)).toEqual([a.id, b.id]);

		// A change rejected: dropped, the approved items play on.
		await request(p.api(`/playlists/${list.body.id}`), { method: "PATCH", headers: as(editor), json: { items: [{ contentId: b.id }] } });
		// Further edits of a pending draft join it: the admins are told once per request.
		await request(p.api(`/playlists/${list.body.id}`), { method: "PATCH", headers: as(editor), json: { items: [{ contentId: b.id }, { contentId: a.id }] } });
		await request(p.api(`/playlists/${list.body.id}`), { method: "PATCH", headers: as(editor), json: { items: [{ contentId: b.id }] } });
		const told = async () => (await notifications(admin)).filter(n => n.type === "approval.requested" && n.data.id === list.body.id).length;
		for (let i = 0; i < 200 && (await told()) < 2; i++) await new Promise(resolve => setTimeout(resolve, 50));
		await new Promise(resolve => setTimeout(resolve, 500));
		// Written by hand: the first request (approved above) and this one, not one per edit.
		expect(await told()).toBe(2);
		const no = await decide("playlists", list.body.id, "reject", owner, "Keep A first");
		expect(no.status).toBe(200);
		expect(no.body).toMatchObject({ draft: null, approval: { status: "rejected", live: true, comment: "Keep A first" } });
		expect((await manifest()).items.map(i => i.contentId)).toEqual([a.id, b.id]);
	});

	it("an editor's new playlist plays nothing until approved; a change of how approved content plays waits too", async () => {
		const c = await web(admin, "C", 5000);
		const fresh = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(editor), json: { name: "Editor's", items: [{ contentId: c.id }] } });
		expect(fresh.status).toBe(201);
		expect(fresh.body).toMatchObject({ items: [], approval: { status: "pending", live: false } });
		const schedule = await request(p.api("/schedules"), { method: "POST", headers: as(editor), json: { name: "All day", playlistId: fresh.body.id, targets: { displayIds: [display.id] }, priority: 9 } });
		expect(schedule.status).toBe(201);
		expect((await manifest()).items).toEqual([]);
		expect((await decide("playlists", fresh.body.id, "approve", admin)).status).toBe(200);
		expect((await manifest()).items).toEqual([expect.objectContaining({ contentId: c.id, durationMs: 5000 })]);

		// The editor changes how long C plays: the proposal waits, C plays 5 s meanwhile.
		const edited = await request<Content>(p.api(`/content/${c.id}`), { method: "PATCH", headers: as(editor), json: { durationMs: 12_000, name: "C (new name)" } });
		expect(edited.status).toBe(200);
		expect(edited.body).toMatchObject({ name: "C (new name)", durationMs: 5000, proposal: { durationMs: 12_000 }, approval: { status: "pending", live: true } });
		expect((await manifest()).items).toEqual([expect.objectContaining({ contentId: c.id, durationMs: 5000 })]);
		const yes = await decide("content", c.id, "approve", admin);
		expect(yes.body).toMatchObject({ durationMs: 12_000, proposal: null, approval: { status: "approved" } });
		expect((await manifest()).items).toEqual([expect.objectContaining({ contentId: c.id, durationMs: 12_000 })]);
	});

	it("a decision naming the request reviewed does not decide a change that replaced it meanwhile", async () => {
		const d = await web(admin, "D", 5000);
		await request(p.api(`/content/${d.id}`), { method: "PATCH", headers: as(editor), json: { validUntil: new Date(Date.now() + 2 * 86_400_000).toISOString() } });
		const reviewed = (await request<Content & { approval: { requestedAt: string } }>(p.api(`/content/${d.id}`), { headers: as(admin) })).body;
		expect(reviewed.approval.status).toBe("pending");
		// The editor replaces the proposal while the admin reads it.
		await new Promise(resolve => setTimeout(resolve, 5));
		await request(p.api(`/content/${d.id}`), { method: "PATCH", headers: as(editor), json: { validUntil: null, durationMs: 86_400_000 } });
		const stale = await request<ErrorBody>(p.api(`/content/${d.id}/approve`), { method: "POST", headers: as(admin), json: { comment: "ok, 2 days", requestedAt: reviewed.approval.requestedAt } });
		expect(stale.status).toBe(409);
		expect(stale.body.error.type).toBe("CONFLICT");
		expect((await manifest()).items.every(i => i.contentId !== d.id || i.durationMs === 5000)).toBe(true);
		const current = (await request<Content & { approval: { requestedAt: string } }>(p.api(`/content/${d.id}`), { headers: as(admin) })).body;
		const rejected = await request<Content>(p.api(`/content/${d.id}/reject`), { method: "POST", headers: as(admin), json: { comment: "A day per item is too long", requestedAt: current.approval.requestedAt } });
		expect(rejected.status).toBe(200);
		expect(rejected.body).toMatchObject({ durationMs: 5000, proposal: null, approval: { status: "rejected", live: true } });

		// Playlists alike.
		const list = await request<Playlist & { approval: { requestedAt: string } }>(p.api("/playlists"), { method: "POST", headers: as(editor), json: { name: "Reviewed", items: [{ contentId: d.id }] } });
		await new Promise(resolve => setTimeout(resolve, 5));
		await request(p.api(`/playlists/${list.body.id}`), { method: "PATCH", headers: as(editor), json: { items: [] } });
		const staleList = await request(p.api(`/playlists/${list.body.id}/approve`), { method: "POST", headers: as(admin), json: { requestedAt: list.body.approval.requestedAt } });
		expect(staleList.status).toBe(409);
	});

	it("two admins deciding one request at once: exactly one decision stands", async () => {
		const item = await web(editor, "Contested");
		const answers = await Promise.all([decide("content", item.id, "approve", admin), decide("content", item.id, "reject", owner, "No"), decide("content", item.id, "approve", owner)]);
		expect(answers.map(a => a.status).sort()).toEqual([200, 409, 409]);
		const stored = await request<Content>(p.api(`/content/${item.id}`), { headers: as(viewer) });
		const winner = answers.find(a => a.status === 200);
		expect(stored.body.approval.status).toBe(winner?.body.approval.status);
	});

	it("another tenant's content and playlists answer 404 to its admins; bad ids and bodies answer 422", async () => {
		const item = await web(editor, "Ours");
		const list = await request<Playlist>(p.api("/playlists"), { method: "POST", headers: as(editor), json: { name: "Ours", items: [] } });
		const stranger = await register(p, newAccount("approval-other"));
		for (const [kind, id] of [["content", item.id], ["playlists", list.body.id]] as const) {
			for (const decision of ["approve", "reject"] as const) {
				const res = await decide(kind, id, decision, stranger, "mine now");
				expect(res.status).toBe(404);
				expect(res.body.error.type).toBe("NOT_FOUND");
			}
		}
		expect((await request<{ approval: Approval }>(p.api(`/content/${item.id}`), { headers: as(owner) })).body.approval.status).toBe("pending");
		expect((await request(p.api("/content/not-an-id!/approve"), { method: "POST", headers: as(admin), json: {} })).status).toBe(422);
		expect((await request(p.api(`/content/${item.id}/reject`), { method: "POST", headers: as(admin), json: { comment: { $gt: "" } } })).status).toBe(422);
		expect((await request(p.api(`/content/${item.id}/reject`), { method: "POST", headers: as(admin), json: { comment: "x".repeat(2001) } })).status).toBe(422);
		expect((await request(p.api("/content?approval=approved"), { headers: as(admin) })).status).toBe(422);
	});
});
