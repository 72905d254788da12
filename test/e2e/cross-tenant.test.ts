/**
 * Tenant isolation on every route that takes an id. Two tenants, A and B, each hold real objects
 * of every kind with an id route (members, API keys, invitations, sessions). A's owner (whose
 * role hides nothing), A's admin API key and a device of A call every such route of the OpenAPI
 * document, as far as the RBAC table lets each of them, with B's ids: each answers 404 exactly as
 * an unknown id does, and B's objects are unchanged afterwards. A's lists and reads never show
 * any of B's ids.
 *
 * Path params are mapped to B's ids by the route's path up to the param ("/members/{userId}");
 * a route with a path param and no mapping fails the suite, so new id routes must be added to
 * ID_SOURCES. (An id that no tenant owns would map to an empty list, with a comment saying why.)
 */
import { newId } from "../../shared/ids";
import { decide } from "../../shared/rbac";
import { bearer, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type JsonResponse } from "../helpers/platform";
import { addMember, answerProblems, errorType, loadRoutes, principalOf, sampleValue, send, type Member, type Route } from "../helpers/routes";

interface TenantObjects {
	owner: Session & { password: string };
	member: Member;
	apiKeyId: string;
	apiKey: string;
	invitationId: string;
	invitationEmail: string;
	ownerSessionId: string;
	memberSessionId: string;
}

/** Route path up to a param → the ids of that kind held by a tenant. Every id route needs an entry. */
const ID_SOURCES: Record<string, (t: TenantObjects) => string[]> = {
	"/api-keys/{id}": t => [t.apiKeyId],
	"/invitations/{id}": t => [t.invitationId],
	"/members/{userId}": t => [t.member.userId, t.owner.user.id],
	"/auth/sessions/{id}": t => [t.memberSessionId, t.ownerSessionId]
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
	const sessions = await ok(request<Array<{ id: string; current: boolean }>>(p.api("/auth/sessions"), { headers: bearer(token) }), "GET /auth/sessions");
	const current = sessions.find(s => s.current);
	if (!current) throw new Error("no current session listed");
	return current.id;
}

/** A tenant with one object of every kind that has an id route. */
async function populate(p: Platform, label: string): Promise<TenantObjects> {
	const owner = await register(p);
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
	return {
		owner,
		member,
		apiKeyId: key.id,
		apiKey: key.key,
		invitationId: invitation.id,
		invitationEmail,
		ownerSessionId: await currentSessionId(p, owner.accessToken),
		memberSessionId: await currentSessionId(p, member.session.accessToken)
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
		t.memberSessionId
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
	const ownerSessions = await get<Array<{ id: string }>>("/auth/sessions", owner);
	const memberSessions = await get<Array<{ id: string }>>("/auth/sessions", bearer(t.member.session.accessToken));
	const tenant = await get<{ id: string; name: string; plan: string; settings: unknown }>("/tenant", owner);
	const viaKey = await get<{ id: string }>("/tenant", bearer(t.apiKey));
	const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
	return {
		members: members.rows.map(m => ({ userId: m.userId, role: m.role, email: m.email })).sort((a, b) => byKey(a.userId, b.userId)),
		apiKeys: keys.rows.map(k => ({ id: k.id, name: k.name, role: k.role })).sort((a, b) => byKey(a.id, b.id)),
		invitations: invitations.rows.map(i => ({ id: i.id, email: i.email, role: i.role })).sort((a, b) => byKey(a.id, b.id)),
		ownerSessions: ownerSessions.map(s => s.id).sort(),
		memberSessions: memberSessions.map(s => s.id).sort(),
		tenant: { id: tenant.id, name: tenant.name, plan: tenant.plan, settings: tenant.settings },
		apiKeyTenant: viaKey.id
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

	beforeAll(async () => {
		p = await startTestPlatform();
		routes = await loadRoutes(p);
		a = await populate(p, "tenant-a");
		b = await populate(p, "tenant-b");
	}, 30_000);

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
		// A device of A too, for the device API's id routes (a user token is no use there).
		const { deviceToken } = (await p.broker.call("auth.mintDeviceToken", { tenantId: a.owner.tenant.id, displayId: newId() })) as { deviceToken: string };
		const callers = [
			{ name: "A owner", token: a.owner.accessToken, principal: principalOf("owner", a.owner.tenant.id) },
			{ name: "A admin API key", token: a.apiKey, principal: principalOf("apiKey", a.owner.tenant.id) },
			{ name: "A device", token: deviceToken, principal: principalOf("device", a.owner.tenant.id) }
		];
		const problems: string[] = [];
		let checked = 0;
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
		expect(await snapshot(p, b)).toEqual(before);
	}, 30_000);

	it.each(["/members", "/api-keys", "/invitations", "/auth/sessions"])("A's list %s never contains B's ids", async path => {
		const res = await request(p.api(`${path}?pageSize=100`), { headers: bearer(a.owner.accessToken) });
		expect(res.status).toBe(200);
		for (const id of identifiersOf(b)) expect({ path, leaks: res.text.includes(id) ? id : null }).toEqual({ path, leaks: null });
		// A's own objects are there, so the list is not trivially empty.
		const own = { "/members": a.member.userId, "/api-keys": a.apiKeyId, "/invitations": a.invitationId, "/auth/sessions": a.ownerSessionId }[path] ?? "";
		expect(res.text).toContain(own);
	});

	it("no GET route without an id shows A anything of B", async () => {
		const reads = routes.filter(r => r.method === "GET" && r.pathParams.length === 0);
		expect(reads.length).toBeGreaterThan(0);
		const problems: string[] = [];
		for (const route of reads) {
			if (decide(route.permission, principalOf("owner", a.owner.tenant.id)) !== "allow") continue;
			const res = await send(p, route, { token: a.owner.accessToken });
			if (res.status !== 200) problems.push(`${route.label}: ${res.status} ${res.text.slice(0, 200)}`);
			const leaked = identifiersOf(b).filter(id => res.text.includes(id));
			if (leaked.length) problems.push(`${route.label} shows B's ${leaked.join(", ")}`);
		}
		expect(problems).toEqual([]);
	});
});
