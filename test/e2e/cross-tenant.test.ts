/**
 * Tenant isolation on every route that takes an id. Two tenants, A and B, each hold real objects
 * of every kind with an id route (members, API keys, invitations, sessions, a paired display, a
 * display group, a queued command, pairing requests). A's owner (whose role hides nothing), A's
 * admin API key and A's paired display (its device token) call every such route of the OpenAPI
 * document, as far as the RBAC table lets each of them, with B's ids: each answers 404 exactly as
 * an unknown id does, and B's objects are unchanged afterwards. A's lists and reads never show
 * any of B's ids.
 *
 * A person who belongs to both A and B signs in (landing in B) and switches to A: that token is a
 * caller of the sweep too, so a token from POST /auth/switch-tenant reaches only its own tenant.
 *
 * Each tenant also turns content approval on and has its editor add a content item and a
 * playlist that wait for review, so an approve or reject reaching across tenants would decide
 * something (and show in B's snapshot), and holds a screen power schedule.
 *
 * Path params are mapped to B's ids by the route's path up to the param ("/members/{userId}");
 * a route with a path param and no mapping fails the suite, so new id routes must be added to
 * ID_SOURCES. Routes below an id route share its entry: POST /content/{id}/approve takes the ids
 * of "/content/{id}". (An id that no tenant owns would map to an empty list, with a comment saying why.)
 */
import { EVENT_CHANNEL } from "../../shared/channels";
import { sendToChannel } from "../../shared/contracts";
import { newId } from "../../shared/ids";
import { decide } from "../../shared/rbac";
import { bearer, login, register, someClient, startTestPlatform, waitForMail, type Platform, type Session } from "../helpers/accounts";
import { request, type JsonResponse } from "../helpers/platform";
import { acceptInvitation, addMember, answerProblems, errorType, loadRoutes, principalOf, requiredQuery, sampleValue, send, type Member, type Route } from "../helpers/routes";

interface TenantObjects {
	owner: Session & { password: string };
	member: Member;
	apiKeyId: string;
	apiKey: string;
	invitationId: string;
	invitationEmail: string;
	ownerSessionId: string;
	memberSessionId: string;
	/** A display paired through the whole flow, and its device token. */
	displayId: string;
	deviceToken: string;
	groupId: string;
	/** A reboot queued for the display (not yet delivered: the device sends no heartbeat here). */
	commandId: string;
	/** A content item (a web page: uploads need no different tenancy handling). */
	contentId: string;
	/** A playlist holding the content, scheduled on the display and used by an override. */
	playlistId: string;
	/** A layout whose zone plays the playlist, scheduled on the display too. */
	layoutId: string;
	/** With content approval on, the editor's new content item and playlist: both wait for review. */
	pendingContentId: string;
	pendingPlaylistId: string;
	/** A power schedule turning the display, its group and its tag off (in a far-off year). */
	powerScheduleId: string;
	scheduleId: string;
	overrideId: string;
	/** A webhook endpoint, a delivery of its test event, and an in-app notification of the owner (a quota warning). */
	webhookId: string;
	deliveryId: string;
	notificationId: string;
	/** A weekly report email (analytics), and a play the tenant's screen reported. */
	reportId: string;
	/** A provisioning key (zero-touch onboarding). */
	provisioningKeyId: string;
	/** A screen's request nobody has claimed yet: it belongs to no tenant. */
	pendingPairing: PairingRequest;
	/** A screen this tenant paired whose device token is still waiting to be collected. */
	uncollectedPairing: PairingRequest;
}

interface PairingRequest {
	pairingId: string;
	code: string;
	pollSecret: string;
}

/** Route path up to a param → the ids of that kind held by a tenant. Every id route needs an entry. */
const ID_SOURCES: Record<string, (t: TenantObjects) => string[]> = {
	"/api-keys/{id}": t => [t.apiKeyId],
	"/invitations/{id}": t => [t.invitationId],
	"/members/{userId}": t => [t.member.userId, t.owner.user.id],
	"/auth/sessions/{id}": t => [t.memberSessionId, t.ownerSessionId],
	"/displays/{id}": t => [t.displayId],
	"/display-groups/{id}": t => [t.groupId],
	// Only a device may ack, and only its own display's commands: A's device gets B's command id.
	"/device/commands/{id}": t => [t.commandId],
	// Also for …/approve and …/reject: the pending ones are what a decision would change.
	"/content/{id}": t => [t.contentId, t.pendingContentId],
	"/playlists/{id}": t => [t.playlistId, t.pendingPlaylistId],
	"/layouts/{id}": t => [t.layoutId],
	"/schedules/{id}": t => [t.scheduleId],
	"/overrides/{id}": t => [t.overrideId],
	"/power-schedules/{id}": t => [t.powerScheduleId],
	"/webhooks/{id}": t => [t.webhookId],
	"/webhook-deliveries/{id}": t => [t.deliveryId],
	// Notifications are one person's: A's owner gets B's owner's notification id.
	"/notifications/{id}": t => [t.notificationId],
	"/analytics/reports/{id}": t => [t.reportId],
	"/provisioning-keys/{id}": t => [t.provisioningKeyId],
	// Single sign-on starts from a tenant's slug (public): B's, which has no SSO, is like an unknown one.
	"/auth/sso/{tenantSlug}": t => [t.owner.tenant.slug],
	// A device downloads only what its own manifest holds: A's device gets B's content id.
	"/device/content/{contentId}": t => [t.contentId],
	// A pairing request has no tenant until an admin claims its code, and its poll is public:
	// what guards it is the poll secret, not a tenant scope. Still worth sweeping, with the two
	// requests B's screens hold: one unclaimed, and one B claimed whose device token (B's
	// credential) waits to be collected. Without the secret both must answer exactly like an
	// unknown id, and the token must still be there for B's screen afterwards.
	"/device/pairing/{pairingId}": t => [t.pendingPairing.pairingId, t.uncollectedPairing.pairingId]
};

/** "/members/{userId}/x" and "userId" → "/members/{userId}". */
function resourceKey(route: Route, param: string): string {
	const marker = `{${param}}`;
	return route.template.slice(0, route.template.indexOf(marker) + marker.length);
}

/** Every combination of the candidate ids of each param. */
function combinations(candidates: Array<[string, string[]]>): Array<Record<string, string>> {
	return candidates.reduce<Array<Record<string, string>>>(
		(combos, [param, ids]) => combos.flatMap(combo => ids.map(id => ({ ...combo, [param]: id }))),
		[{}]
	);
}

async function ok<T>(res: Promise<JsonResponse<T>>, what: string, status = 200): Promise<T> {
	const answer = await res;
	if (answer.status !== status) throw new Error(`${what} answered ${answer.status}: ${answer.text}`);
	return answer.body;
}

async function currentSessionId(p: Platform, token: string): Promise<string> {
	const sessions = await ok(request<{ rows: Array<{ id: string; current: boolean }> }>(p.api("/auth/sessions?pageSize=100"), { headers: bearer(token) }), "GET /auth/sessions");
	const current = sessions.rows.find(s => s.current);
	if (!current) throw new Error("no current session listed");
	return current.id;
}

/** A screen asks for a pairing code (no token). */
function requestPairing(p: Platform): Promise<PairingRequest> {
	return ok(request<PairingRequest>(p.api("/device/pairing"), { method: "POST", json: { model: "cross-tenant" }, headers: someClient() }), "POST /device/pairing", 201);
}

function pollPairing(p: Platform, pairing: PairingRequest) {
	return request<{ status: string; displayId?: string; deviceToken?: string }>(p.api(`/device/pairing/${pairing.pairingId}`), {
		headers: { "X-Pairing-Secret": pairing.pollSecret }
	});
}

/** The owner enters the screen's code: a new display of the owner's tenant. */
function claimPairing(p: Platform, token: string, pairing: PairingRequest, name: string): Promise<{ id: string }> {
	return ok(request<{ id: string }>(p.api("/displays/pair"), { method: "POST", json: { code: pairing.code, name }, headers: bearer(token) }), "POST /displays/pair", 201);
}

/** A tenant with one object of every kind that has an id route. */
async function populate(p: Platform, label: string): Promise<TenantObjects> {
	const owner = await register(p);
	const asOwner = bearer(owner.accessToken);
	const member = await addMember(p, owner.accessToken, "editor", `${label}-editor`);
	const key = await ok(
		request<{ id: string; key: string }>(p.api("/api-keys"), { method: "POST", json: { name: `${label} key`, role: "admin" }, headers: bearer(owner.accessToken) }),
		"POST /api-keys",
		201
	);
	const invitationEmail = `${label}-pending-${process.pid}-${newId()}@example.com`;
	const invitation = await ok(
		request<{ id: string }>(p.api("/invitations"), { method: "POST", json: { email: invitationEmail, role: "viewer" }, headers: bearer(owner.accessToken) }),
		"POST /invitations",
		201
	);

	const screen = await requestPairing(p);
	const display = await claimPairing(p, owner.accessToken, screen, `${label} lobby`);
	const collected = await ok(pollPairing(p, screen), "GET /device/pairing/:pairingId");
	if (collected.status !== "paired" || !collected.deviceToken || collected.displayId !== display.id) throw new Error(`pairing poll answered ${JSON.stringify(collected)}`);
	const group = await ok(request<{ id: string }>(p.api("/display-groups"), { method: "POST", json: { name: `${label} group` }, headers: asOwner }), "POST /display-groups", 201);
	await ok(request(p.api(`/displays/${display.id}`), { method: "PATCH", json: { groupIds: [group.id], tags: ["lobby"] }, headers: asOwner }), "PATCH /displays/:id");
	const command = await ok(
		request<{ id: string }>(p.api(`/displays/${display.id}/commands`), { method: "POST", json: { type: "reboot" }, headers: asOwner }),
		"POST /displays/:id/commands",
		202
	);
	const content = await ok(
		request<{ id: string }>(p.api("/content/url"), { method: "POST", json: { name: `${label} page`, url: "https://example.com/board", durationMs: 15000 }, headers: asOwner }),
		"POST /content/url",
		201
	);
	const playlist = await ok(
		request<{ id: string }>(p.api("/playlists"), { method: "POST", json: { name: `${label} playlist`, items: [{ contentId: content.id }] }, headers: asOwner }),
		"POST /playlists",
		201
	);
	const layout = await ok(
		request<{ id: string }>(p.api("/layouts"), {
			method: "POST",
			json: { name: `${label} layout`, width: 1920, height: 1080, backgroundColor: "#000000", zones: [{ name: "Main", x: 0, y: 0, width: 1, height: 1, playlistId: playlist.id }] },
			headers: asOwner
		}),
		"POST /layouts",
		201
	);
	await ok(
		request(p.api("/schedules"), { method: "POST", json: { name: `${label} layout schedule`, layoutId: layout.id, targets: { tags: ["lobby"] }, startTime: "00:00", endTime: "00:01" }, headers: asOwner }),
		"POST /schedules (layout)",
		201
	);
	const schedule = await ok(
		request<{ id: string }>(p.api("/schedules"), { method: "POST", json: { name: `${label} schedule`, playlistId: playlist.id, targets: { displayIds: [display.id], groupIds: [group.id], tags: ["lobby"] } }, headers: asOwner }),
		"POST /schedules",
		201
	);
	const override = await ok(
		request<{ id: string }>(p.api("/overrides"), { method: "POST", json: { name: `${label} override`, playlistId: playlist.id, targets: { tags: ["lobby"] }, startsAt: new Date(Date.now() + 3600_000).toISOString(), endsAt: new Date(Date.now() + 7200_000).toISOString() }, headers: asOwner }),
		"POST /overrides",
		201
	);
	const webhook = await ok(
		request<{ id: string }>(p.api("/webhooks"), { method: "POST", json: { url: "https://hooks.example.com/marquee", events: ["display.paired"] }, headers: asOwner }),
		"POST /webhooks",
		201
	);
	const delivery = await ok(request<{ id: string }>(p.api(`/webhooks/${webhook.id}/test`), { method: "POST", headers: asOwner }), "POST /webhooks/:id/test", 202);
	// A quota warning, as devices or media publish it: an in-app notification for the owner.
	await sendToChannel(p.broker, EVENT_CHANNEL, { id: `evt_${newId()}`, tenantId: owner.tenant.id, type: "quota.warning", timestamp: new Date().toISOString(), data: { resource: "displays", used: 8, limit: 10 } });
	let notificationId: string | undefined;
	for (let i = 0; i < 250 && !notificationId; i++) {
		const list = await ok(request<{ rows: Array<{ id: string }> }>(p.api("/notifications"), { headers: asOwner }), "GET /notifications");
		notificationId = list.rows[0]?.id;
		if (!notificationId) await new Promise(resolve => setTimeout(resolve, 20));
	}
	if (!notificationId) throw new Error("the quota warning never became a notification");
	// Proof of play from the screen, and a weekly report email: analytics rows that could leak.
	await ok(
		request(p.api("/device/playback"), { method: "POST", json: { events: [{ eventId: `${label}-play`, contentId: content.id, playlistId: playlist.id, scheduleId: schedule.id, startedAt: new Date().toISOString(), durationMs: 15000 }] }, headers: bearer(collected.deviceToken) }),
		"POST /device/playback",
		202
	);
	// Stored before the sweeps run, so a leak would show (batches are written within a second).
	const range = `from=${new Date(Date.now() - 86_400_000).toISOString()}&to=${new Date(Date.now() + 3_600_000).toISOString()}`;
	for (let i = 0; ; i++) {
		const seen = await ok(request<{ totals: { plays: number } }>(p.api(`/analytics/playback?${range}`), { headers: asOwner }), "GET /analytics/playback");
		if (seen.totals.plays === 1) break;
		if (i > 200) throw new Error("the play never reached the report");
		await new Promise(resolve => setTimeout(resolve, 50));
	}
	const report = await ok<{ id: string }>(
		request(p.api("/analytics/reports"), { method: "POST", json: { name: `${label} weekly`, recipients: [owner.user.email], weekday: 1, hour: 8 }, headers: asOwner }),
		"POST /analytics/reports",
		201
	);
	const provisioningKey = await ok<{ id: string }>(
		request(p.api("/provisioning-keys"), { method: "POST", json: { name: `${label} rollout`, groupIds: [group.id] }, headers: asOwner }),
		"POST /provisioning-keys",
		201
	);
	const powerSchedule = await ok<{ id: string }>(
		request(p.api("/power-schedules"), {
			method: "POST",
			json: {
				name: `${label} nights off`,
				state: "off",
				targets: { displayIds: [display.id], groupIds: [group.id], tags: ["lobby"] },
				startDate: "2098-01-01",
				endDate: "2098-12-31",
				daysOfWeek: [1, 2, 3, 4, 5],
				startTime: "22:00",
				endTime: "06:00",
				priority: 3
			},
			headers: asOwner
		}),
		"POST /power-schedules",
		201
	);
	// Content approval on: the editor's new content item and playlist wait for an admin.
	await ok(request(p.api("/tenant"), { method: "PATCH", json: { settings: { contentApproval: true } }, headers: asOwner }), "PATCH /tenant (contentApproval)");
	const asEditor = bearer(member.session.accessToken);
	const pendingContent = await ok<{ id: string; approval: { status: string } }>(
		request(p.api("/content/url"), { method: "POST", json: { name: `${label} proposed page`, url: "https://example.com/proposed", durationMs: 10000 }, headers: asEditor }),
		"POST /content/url (editor)",
		201
	);
	const pendingPlaylist = await ok<{ id: string; approval: { status: string } }>(
		request(p.api("/playlists"), { method: "POST", json: { name: `${label} proposed playlist`, items: [{ contentId: content.id }] }, headers: asEditor }),
		"POST /playlists (editor)",
		201
	);
	if (pendingContent.approval.status !== "pending" || pendingPlaylist.approval.status !== "pending") {
		throw new Error(`the editor's changes are not pending: ${JSON.stringify([pendingContent.approval, pendingPlaylist.approval])}`);
	}
	const pendingPairing = await requestPairing(p);
	const uncollectedPairing = await requestPairing(p);
	await claimPairing(p, owner.accessToken, uncollectedPairing, `${label} uncollected`);

	return {
		owner,
		member,
		apiKeyId: key.id,
		apiKey: key.key,
		invitationId: invitation.id,
		invitationEmail,
		ownerSessionId: await currentSessionId(p, owner.accessToken),
		memberSessionId: await currentSessionId(p, member.session.accessToken),
		displayId: display.id,
		deviceToken: collected.deviceToken,
		groupId: group.id,
		commandId: command.id,
		contentId: content.id,
		playlistId: playlist.id,
		layoutId: layout.id,
		pendingContentId: pendingContent.id,
		pendingPlaylistId: pendingPlaylist.id,
		powerScheduleId: powerSchedule.id,
		scheduleId: schedule.id,
		overrideId: override.id,
		webhookId: webhook.id,
		deliveryId: delivery.id,
		notificationId,
		reportId: report.id,
		provisioningKeyId: provisioningKey.id,
		pendingPairing,
		uncollectedPairing
	};
}

/** Every id and address of a tenant's objects, as they could leak into another tenant's answers. */
function identifiersOf(t: TenantObjects): string[] {
	return [
		t.owner.tenant.id,
		t.owner.user.id,
		t.owner.user.email,
		t.member.userId,
		t.member.email,
		t.apiKeyId,
		t.invitationId,
		t.invitationEmail,
		t.ownerSessionId,
		t.memberSessionId,
		t.displayId,
		t.groupId,
		t.commandId,
		t.contentId,
		t.playlistId,
		t.layoutId,
		t.pendingContentId,
		t.pendingPlaylistId,
		t.powerScheduleId,
		t.scheduleId,
		t.overrideId,
		t.webhookId,
		t.deliveryId,
		t.notificationId,
		t.reportId,
		t.provisioningKeyId,
		t.pendingPairing.pairingId,
		t.uncollectedPairing.pairingId
	];
}

/** What B looks like through its own eyes (its original tokens: an ended session shows here). */
async function snapshot(p: Platform, t: TenantObjects) {
	const owner = bearer(t.owner.accessToken);
	type Page<R> = { rows: R[] };
	const get = <T>(path: string, headers: Record<string, string>) => ok(request<T>(p.api(path), { headers }), `GET ${path}`);
	const members = await get<Page<{ userId: string; role: string; email: string }>>("/members?pageSize=100", owner);
	const keys = await get<Page<{ id: string; name: string; role: string }>>("/api-keys?pageSize=100", owner);
	const invitations = await get<Page<{ id: string; email: string; role: string }>>("/invitations?pageSize=100", owner);
	const ownerSessions = (await get<Page<{ id: string }>>("/auth/sessions?pageSize=100", owner)).rows;
	const memberSessions = (await get<Page<{ id: string }>>("/auth/sessions?pageSize=100", bearer(t.member.session.accessToken))).rows;
	const tenant = await get<{ id: string; name: string; plan: string; settings: unknown }>("/tenant", owner);
	const viaKey = await get<{ id: string }>("/tenant", bearer(t.apiKey));
	const displays = await get<Page<{ id: string; name: string; status: string; timezone: string | null; tags: string[]; groupIds: string[] }>>("/displays?pageSize=100", owner);
	const groups = await get<Page<{ id: string; name: string; description: string | null }>>("/display-groups?pageSize=100", owner);
	type Approval = { status: string; live: boolean; reviewedBy: string | null; comment: string | null };
	const content = await get<
		Page<{ id: string; name: string; tags: string[]; validFrom: string | null; validUntil: string | null; durationMs: number; approval: Approval; proposal: unknown }>
	>("/content?pageSize=100", owner);
	const playlists = await get<Page<{ id: string; name: string; items: Array<{ contentId: string; durationMs: number }>; approval: Approval; draft: unknown }>>("/playlists?pageSize=100", owner);
	const layouts = await get<Page<Record<string, unknown>>>("/layouts?pageSize=100", owner);
	const schedules = await get<Page<Record<string, unknown>>>("/schedules?pageSize=100", owner);
	const overrides = await get<Page<Record<string, unknown>>>("/overrides?pageSize=100", owner);
	const powerSchedules = await get<Page<Record<string, unknown>>>("/power-schedules?pageSize=100", owner);
	const commands: Record<string, unknown> = {};
	for (const d of displays.rows) {
		const page = await get<Page<{ id: string; type: string; status: string }>>(`/displays/${d.id}/commands?pageSize=100`, owner);
		commands[d.id] = page.rows.map(c => ({ id: c.id, type: c.type, status: c.status }));
	}
	// Polling an unclaimed request has no effect, so it can be part of the snapshot.
	const pending = await ok(pollPairing(p, t.pendingPairing), "GET /device/pairing/:pairingId (pending)");
	const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
	return {
		members: members.rows.map(m => ({ userId: m.userId, role: m.role, email: m.email })).sort((a, b) => byKey(a.userId, b.userId)),
		apiKeys: keys.rows.map(k => ({ id: k.id, name: k.name, role: k.role })).sort((a, b) => byKey(a.id, b.id)),
		invitations: invitations.rows.map(i => ({ id: i.id, email: i.email, role: i.role })).sort((a, b) => byKey(a.id, b.id)),
		ownerSessions: ownerSessions.map(s => s.id).sort(),
		memberSessions: memberSessions.map(s => s.id).sort(),
		tenant: { id: tenant.id, name: tenant.name, plan: tenant.plan, settings: tenant.settings },
		apiKeyTenant: viaKey.id,
		displays: displays.rows
			.map(d => ({ id: d.id, name: d.name, status: d.status, timezone: d.timezone, tags: d.tags, groupIds: d.groupIds }))
			.sort((a, b) => byKey(a.id, b.id)),
		displayGroups: groups.rows.map(g => ({ id: g.id, name: g.name, description: g.description })).sort((a, b) => byKey(a.id, b.id)),
		commands,
		content: content.rows
			.map(c => ({ id: c.id, name: c.name, tags: c.tags, validFrom: c.validFrom, validUntil: c.validUntil, durationMs: c.durationMs, approval: c.approval, proposal: c.proposal }))
			.sort((a, b) => byKey(a.id, b.id)),
		playlists: playlists.rows
			.map(l => ({ id: l.id, name: l.name, items: l.items.map(i => [i.contentId, i.durationMs]), approval: l.approval, draft: l.draft }))
			.sort((a, b) => byKey(a.id, b.id)),
		layouts: layouts.rows.map(({ updatedAt: _u, ...rest }) => rest).sort((a, b) => byKey(String(a.id), String(b.id))),
		schedules: schedules.rows.map(({ updatedAt: _u, ...rest }) => rest).sort((a, b) => byKey(String(a.id), String(b.id))),
		overrides: overrides.rows.map(({ updatedAt: _u, ...rest }) => rest).sort((a, b) => byKey(String(a.id), String(b.id))),
		powerSchedules: powerSchedules.rows.map(({ updatedAt: _u, ...rest }) => rest).sort((a, b) => byKey(String(a.id), String(b.id))),
		pendingPairing: pending
	};
}

/** An error answer with every occurrence of `ids` replaced, to compare a foreign id's answer with an unknown one's. */
function comparable(res: JsonResponse, ids: string[]) {
	let text = res.text;
	for (const id of ids) text = text.split(id).join("<id>");
	const body = JSON.parse(text || "null") as { error?: { type?: unknown; message?: unknown; code?: unknown; data?: unknown } } | null;
	const { type, message, code, data } = body?.error ?? {};
	return { status: res.status, type, message, code, data };
}

describe("cross-tenant isolation (every /api/v1 route with an id)", () => {
	let p: Platform;
	let routes: Route[];
	let a: TenantObjects;
	let b: TenantObjects;
	/** A member of B and of A (admin in both), signed in to B and switched to A. */
	let switched: Session;

	beforeAll(async () => {
		// Each tenant pairs two displays, within the default plan's 3; the sweep should not depend on it.
		p = await startTestPlatform({ DEFAULT_PLAN_DISPLAYS: "10", NOTIFICATIONS_POLL_MS: "50" });
		routes = await loadRoutes(p);
		a = await populate(p, "tenant-a");
		b = await populate(p, "tenant-b");
		const both = await addMember(p, b.owner.accessToken, "admin", "in-a-and-b");
		const invited = await request(p.api("/invitations"), { method: "POST", json: { email: both.email, role: "admin" }, headers: bearer(a.owner.accessToken) });
		if (invited.status !== 201) throw new Error(`invite answered ${invited.status}: ${invited.text}`);
		await waitForMail(p, both.email, 2);
		await acceptInvitation(p, both.email, { password: both.password });
		// The invitation's session was in A, so sign in to B, then switch to A.
		const inB = await ok(request<Session>(p.api("/auth/switch-tenant"), { method: "POST", json: { tenantId: b.owner.tenant.id }, headers: bearer((await login(p, both.email, both.password)).accessToken) }), "POST /auth/switch-tenant");
		expect(inB.tenant.id).toBe(b.owner.tenant.id);
		switched = await ok(request<Session>(p.api("/auth/switch-tenant"), { method: "POST", json: { tenantId: a.owner.tenant.id }, headers: bearer(inB.accessToken) }), "POST /auth/switch-tenant");
		expect(switched.tenant.id).toBe(a.owner.tenant.id);
	}, 60_000);

	afterAll(() => p?.stop());

	const idRoutes = () => routes.filter(r => r.pathParams.length > 0);

	it("finds id routes, and every path param maps to ids of real objects", () => {
		expect(idRoutes().length).toBeGreaterThan(0);
		const unmapped = idRoutes().flatMap(r => r.pathParams.filter(param => !ID_SOURCES[resourceKey(r, param)]).map(param => `${r.label}: ${param}`));
		expect(unmapped).toEqual([]);
		for (const [key, ids] of Object.entries(ID_SOURCES)) expect({ key, ids: ids(b).every(Boolean) }).toEqual({ key, ids: true });
	});

	it("A's owner, API key and device get 404 for B's ids, exactly as for unknown ids, and B is unchanged", async () => {
		const before = await snapshot(p, b);
		expect(before.displays.map(d => d.id)).toContain(b.displayId);
		expect(before.commands[b.displayId]).toEqual([{ id: b.commandId, type: "reboot", status: "pending" }]);
		// What an approve or reject from A would decide, were it to reach B.
		expect(before.content.find(c => c.id === b.pendingContentId)?.approval.status).toBe("pending");
		expect(before.playlists.find(l => l.id === b.pendingPlaylistId)?.approval.status).toBe("pending");
		expect(before.powerSchedules.map(s => s.id)).toEqual([b.powerScheduleId]);
		// A's paired display too, for the device API's id routes (a user token is no use there).
		const deviceToken = a.deviceToken;
		const callers = [
			{ name: "A owner", token: a.owner.accessToken, principal: principalOf("owner", a.owner.tenant.id) },
			{ name: "A admin API key", token: a.apiKey, principal: principalOf("apiKey", a.owner.tenant.id) },
			{ name: "A device", token: deviceToken, principal: principalOf("device", a.owner.tenant.id) },
			{ name: "A admin switched from B", token: switched.accessToken, principal: principalOf("admin", a.owner.tenant.id) }
		];
		const problems: string[] = [];
		let checked = 0;
		const swept = new Set<string>();
		for (const route of idRoutes()) {
			const candidates = route.pathParams.map(param => [param, (ID_SOURCES[resourceKey(route, param)] ?? (() => []))(b)] as [string, string[]]);
			const body = route.jsonBody ? sampleValue(route.jsonBody) : undefined;
			for (const caller of callers) {
				if (decide(route.permission, caller.principal) !== "allow") continue;
				for (const values of combinations(candidates)) {
					const foreign = await send(p, route, { token: caller.token, values, json: body });
					const unknownValues = Object.fromEntries(Object.keys(values).map(param => [param, newId()]));
					const unknown = await send(p, route, { token: caller.token, values: unknownValues, json: body });
					const where = `${route.label} as ${caller.name} with B's ${JSON.stringify(values)}`;
					checked += 1;
					swept.add(route.label);
					if (foreign.status !== 404 || errorType(foreign) !== "NOT_FOUND") problems.push(`${where}: ${foreign.status} ${foreign.text.slice(0, 200)}, expected 404 NOT_FOUND`);
					const foreignView = comparable(foreign, Object.values(values));
					const unknownView = comparable(unknown, Object.values(unknownValues));
					if (JSON.stringify(foreignView) !== JSON.stringify(unknownView)) {
						problems.push(`${where}: answer ${JSON.stringify(foreignView)} differs from an unknown id's ${JSON.stringify(unknownView)}`);
					}
					problems.push(...answerProblems(foreign).map(problem => `${where}: ${problem}`));
				}
			}
		}
		expect(problems).toEqual([]);
		expect(checked).toBeGreaterThan(0);
		const decisions = ["POST /content/{id}/approve", "POST /content/{id}/reject", "POST /playlists/{id}/approve", "POST /playlists/{id}/reject"];
		const power = ["GET /power-schedules/{id}", "PATCH /power-schedules/{id}", "DELETE /power-schedules/{id}"];
		expect([...decisions, ...power].filter(label => !swept.has(label))).toEqual([]);
		expect(await snapshot(p, b)).toEqual(before);
		// None of A's polls collected the device token B's screen is waiting for.
		const collected = await pollPairing(p, b.uncollectedPairing);
		expect(collected.status).toBe(200);
		expect(collected.body).toMatchObject({ status: "paired" });
		expect(collected.body.deviceToken).toEqual(expect.any(String));
	}, 30_000);

	it.each(["/members", "/api-keys", "/invitations", "/auth/sessions", "/displays", "/display-groups", "/playlists", "/layouts", "/schedules", "/overrides", "/power-schedules"])("A's list %s never contains B's ids", async path => {
		const res = await request(p.api(`${path}?pageSize=100`), { headers: bearer(a.owner.accessToken) });
		expect(res.status).toBe(200);
		for (const id of identifiersOf(b)) expect({ path, leaks: res.text.includes(id) ? id : null }).toEqual({ path, leaks: null });
		// A's own objects are there, so the list is not trivially empty.
		const own =
			{
				"/members": a.member.userId,
				"/api-keys": a.apiKeyId,
				"/invitations": a.invitationId,
				"/auth/sessions": a.ownerSessionId,
				"/displays": a.displayId,
				"/display-groups": a.groupId,
				"/playlists": a.playlistId,
				"/layouts": a.layoutId,
				"/schedules": a.scheduleId,
				"/overrides": a.overrideId,
				"/power-schedules": a.powerScheduleId
			}[path] ?? "";
		expect(res.text).toContain(own);
	});

	it("A's filters naming B's ids (layouts by playlist, schedules by display, playlist or layout, power schedules by display, playlists by content) find nothing", async () => {
		const paths = [
			`/layouts?playlistId=${b.playlistId}`,
			`/schedules?playlistId=${b.playlistId}`,
			`/schedules?displayId=${b.displayId}`,
			`/schedules?layoutId=${b.layoutId}`,
			`/power-schedules?displayId=${b.displayId}`,
			`/playlists?contentId=${b.contentId}`
		];
		for (const path of paths) {
			const res = await request<{ rows: unknown[]; total: number }>(p.api(path), { headers: bearer(a.owner.accessToken) });
			expect([path, res.status, res.body.total]).toEqual([path, 200, 0]);
			for (const id of identifiersOf(b)) expect({ path, leaks: res.text.includes(id) ? id : null }).toEqual({ path, leaks: null });
		}
	});

	it("A's approval filters list A's pending content and playlists, never B's", async () => {
		const cases = [
			{ path: "/content?approval=pending", own: a.pendingContentId },
			{ path: "/playlists?approval=pending", own: a.pendingPlaylistId },
			{ path: "/content?approval=rejected", own: null },
			{ path: "/playlists?approval=rejected", own: null }
		];
		for (const { path, own } of cases) {
			const res = await request<{ rows: Array<{ id: string }>; total: number }>(p.api(path), { headers: bearer(a.owner.accessToken) });
			expect([path, res.status, res.body.rows.map(r => r.id)]).toEqual([path, 200, own ? [own] : []]);
			for (const id of identifiersOf(b)) expect({ path, leaks: res.text.includes(id) ? id : null }).toEqual({ path, leaks: null });
		}
	});

	it("A's power schedules naming B's display or group are refused exactly as unknown ids, and A's schedule is unchanged", async () => {
		const as = bearer(a.owner.accessToken);
		const before = await request(p.api(`/power-schedules/${a.powerScheduleId}`), { headers: as });
		const cases = [
			{ foreign: b.displayId, body: (id: string) => ({ name: "cross", targets: { displayIds: [id] } }) },
			{ foreign: b.groupId, body: (id: string) => ({ name: "cross", targets: { groupIds: [id] } }) },
			{ foreign: b.displayId, body: (id: string) => ({ name: "cross", targets: { tags: ["lobby"] }, excludeDisplayIds: [id] }) }
		];
		const problems: string[] = [];
		for (const [method, path] of [["POST", "/power-schedules"], ["PATCH", `/power-schedules/${a.powerScheduleId}`]]) {
			for (const { foreign: id, body } of cases) {
				const unknownId = newId();
				const foreign = await request(p.api(path), { method, json: body(id), headers: as });
				const unknown = await request(p.api(path), { method, json: body(unknownId), headers: as });
				const where = `${method} ${path} ${JSON.stringify(body(id))}`;
				if (foreign.status !== 422) problems.push(`${where}: ${foreign.status} ${foreign.text.slice(0, 200)}, expected 422`);
				const [foreignView, unknownView] = [comparable(foreign, [id]), comparable(unknown, [unknownId])];
				if (JSON.stringify(foreignView) !== JSON.stringify(unknownView)) problems.push(`${where}: ${JSON.stringify(foreignView)} differs from an unknown id's ${JSON.stringify(unknownView)}`);
			}
		}
		expect(problems).toEqual([]);
		expect((await request(p.api(`/power-schedules/${a.powerScheduleId}`), { headers: as })).body).toEqual(before.body);
	});

	it("A's export holds A's power schedules and pending changes, and nothing of B", async () => {
		const res = await request<{ services: { scheduling: { powerSchedules: Array<{ id: string }>; playlists: Array<{ id: string }> }; media: unknown } }>(p.api("/tenant/export"), {
			headers: bearer(a.owner.accessToken)
		});
		expect(res.status).toBe(200);
		expect(res.body.services.scheduling.powerSchedules.map(s => s.id)).toEqual([a.powerScheduleId]);
		expect(res.body.services.scheduling.playlists.map(l => l.id)).toEqual(expect.arrayContaining([a.playlistId, a.pendingPlaylistId]));
		expect(JSON.stringify(res.body.services.media)).toContain(a.pendingContentId);
		expect(identifiersOf(b).filter(id => res.text.includes(id))).toEqual([]);
	});

	it("the switched token's GET routes without an id show nothing of B but the membership itself", async () => {
		const reads = routes.filter(r => r.method === "GET" && r.pathParams.length === 0);
		const problems: string[] = [];
		// B's tenant id is the person's own membership (GET /auth/tenants, their sessions there).
		const secrets = identifiersOf(b).filter(id => id !== b.owner.tenant.id);
		for (const route of reads) {
			if (decide(route.permission, principalOf("admin", a.owner.tenant.id)) !== "allow") continue;
			const res = await send(p, route, { token: switched.accessToken, query: requiredQuery(route) });
			if (res.status !== 200) problems.push(`${route.label}: ${res.status} ${res.text.slice(0, 200)}`);
			const leaked = secrets.filter(id => res.text.includes(id));
			if (leaked.length) problems.push(`${route.label} shows B's ${leaked.join(", ")}`);
		}
		expect(problems).toEqual([]);
	});

	it("no GET route without an id shows A anything of B", async () => {
		const reads = routes.filter(r => r.method === "GET" && r.pathParams.length === 0);
		expect(reads.length).toBeGreaterThan(0);
		const problems: string[] = [];
		for (const route of reads) {
			if (decide(route.permission, principalOf("owner", a.owner.tenant.id)) !== "allow") continue;
			const res = await send(p, route, { token: a.owner.accessToken, query: requiredQuery(route) });
			if (res.status !== 200) problems.push(`${route.label}: ${res.status} ${res.text.slice(0, 200)}`);
			const leaked = identifiersOf(b).filter(id => res.text.includes(id));
			if (leaked.length) problems.push(`${route.label} shows B's ${leaked.join(", ")}`);
		}
		expect(problems).toEqual([]);
	});
});
