/**
 * Route × caller: every route of the OpenAPI document under /api/v1, called by each kind of
 * caller (the four user roles of one tenant, an admin API key, a device token, anonymous),
 * answers as the RBAC table decides — allowed calls never 401/403, unauthenticated ones 401,
 * forbidden ones 403 — always in the API's error shape and never a 500. Routes come from the
 * running platform, so new services are covered without touching this file.
 *
 * Requests carry random ids and an empty JSON body, so handlers mostly stop at validation or
 * 404. Each request gets fresh credentials (a new sign-in, a new API key, a newly minted device
 * token), and a member that a previous request made leave is restored first: no case depends on
 * another.
 */
import { newId } from "../../shared/ids";
import { decide, PERMISSIONS, type PrincipalKind } from "../../shared/rbac";
import { bearer, login, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request } from "../helpers/platform";
import {
	addMember,
	answerProblems,
	CALLER_NAMES,
	errorType,
	loadRoutes,
	principalOf,
	send,
	signInAs,
	USER_ROLES,
	type CallerName,
	type Member,
	type Route
} from "../helpers/routes";

/** Statuses an allowed call may answer with random ids and an empty body. */
const ALLOWED_STATUSES = [200, 201, 202, 204, 400, 404, 409, 422];
const EXPECTED_STATUS = { unauthenticated: 401, forbidden: 403 } as const;

function routePrincipals(route: Route): PrincipalKind[] {
	return [...PERMISSIONS[route.permission].principals];
}

describe("route × caller matrix (every /api/v1 route of the OpenAPI document)", () => {
	let p: Platform;
	let routes: Route[];
	let owner: Session & { password: string };
	const members = new Map<CallerName, Member>();
	const displayId = newId();

	beforeAll(async () => {
		p = await startTestPlatform();
		routes = await loadRoutes(p);
		owner = await register(p);
		for (const role of USER_ROLES) {
			if (role !== "owner") members.set(role, await addMember(p, owner.accessToken, role));
		}
	}, 30_000);

	afterAll(() => p?.stop());

	/** A token for `caller` that is valid right now (null for anonymous). */
	async function freshToken(caller: CallerName): Promise<string | null> {
		switch (caller) {
			case "anonymous":
				return null;
			case "device": {
				const { deviceToken } = (await p.broker.call("auth.mintDeviceToken", { tenantId: owner.tenant.id, displayId })) as { deviceToken: string };
				return deviceToken;
			}
			case "apiKey": {
				const session = await login(p, owner.user.email, owner.password);
				const res = await request<{ key: string }>(p.api("/api-keys"), {
					method: "POST",
					json: { name: `matrix key ${newId()}`, role: "admin" },
					headers: bearer(session.accessToken)
				});
				if (res.status !== 201) throw new Error(`creating an API key answered ${res.status}: ${res.text}`);
				return res.body.key;
			}
			case "owner": {
				const session = await login(p, owner.user.email, owner.password);
				if (session.role !== "owner") throw new Error(`the owner signed in as ${session.role}`);
				return session.accessToken;
			}
			default: {
				const member = members.get(caller) as Member;
				return (await signInAs(p, { email: owner.user.email, password: owner.password }, member, caller)).accessToken;
			}
		}
	}

	it("finds routes in the OpenAPI document, each with a permission of the RBAC table", () => {
		expect(routes.length).toBeGreaterThan(0);
		for (const route of routes) expect(Object.keys(PERMISSIONS)).toContain(route.permission);
	});

	it.each(CALLER_NAMES)("every route answers %s as the RBAC table decides", async caller => {
		const problems: string[] = [];
		for (const route of routes) {
			const decision = decide(route.permission, principalOf(caller, owner.tenant.id));
			const res = await send(p, route, { token: await freshToken(caller), json: {} });
			const where = `${route.label} as ${caller} (${route.permission} → ${decision}): ${res.status}`;
			if (decision === "allow") {
				if (!ALLOWED_STATUSES.includes(res.status)) problems.push(`${where}, expected one of ${ALLOWED_STATUSES.join("/")}: ${res.text.slice(0, 200)}`);
			} else {
				const status = EXPECTED_STATUS[decision];
				const type = decision === "unauthenticated" ? "UNAUTHORIZED" : "FORBIDDEN";
				if (res.status !== status || errorType(res) !== type) problems.push(`${where}, expected ${status} ${type}: ${res.text.slice(0, 200)}`);
			}
			problems.push(...answerProblems(res).map(problem => `${where}: ${problem}`));
		}
		expect(problems).toEqual([]);
	}, 30_000);

	it("a device token on any user or API-key route → 401", async () => {
		const userRoutes = routes.filter(r => r.permission !== "public" && !routePrincipals(r).includes("device"));
		expect(userRoutes.length).toBeGreaterThan(0);
		const token = await freshToken("device");
		for (const route of userRoutes) {
			const res = await send(p, route, { token, json: {} });
			expect({ route: route.label, status: res.status, type: errorType(res) }).toEqual({ route: route.label, status: 401, type: "UNAUTHORIZED" });
			expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
		}
	});

	it("a user token on a device route → 401 (when a device route exists)", async () => {
		const deviceRoutes = routes.filter(r => routePrincipals(r).includes("device"));
		// No device API yet: nothing to call. The matrix covers these routes as soon as they exist.
		if (deviceRoutes.length === 0) return;
		for (const route of deviceRoutes) {
			const res = await send(p, route, { token: await freshToken("owner"), json: {} });
			expect({ route: route.label, status: res.status, type: errorType(res) }).toEqual({ route: route.label, status: 401, type: "UNAUTHORIZED" });
		}
	});

	it("an admin API key on an apiKeys.manage route → 403", async () => {
		const keyRoutes = routes.filter(r => r.permission === "apiKeys.manage");
		expect(keyRoutes.length).toBeGreaterThan(0);
		for (const route of keyRoutes) {
			const res = await send(p, route, { token: await freshToken("apiKey"), json: { name: "from a key", role: "viewer" } });
			expect({ route: route.label, status: res.status, type: errorType(res) }).toEqual({ route: route.label, status: 403, type: "FORBIDDEN" });
		}
	});
});
