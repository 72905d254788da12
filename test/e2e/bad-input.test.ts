/**
 * Bad input on every route of the OpenAPI document under /api/v1: malformed JSON, bodies that are
 * not objects, every field of a request schema with the wrong type (string ↔ number, an operator
 * object such as {"$gt": ""} where a value goes), oversize bodies, invalid paging — each answers
 * its 4xx in the API's error shape (requestId = X-Request-Id), never a 500. Unknown fields
 * (tenantId, role, _id, plan, ...) never change a tenant or a role.
 *
 * Secured routes are called by a freshly signed-in owner, public ones anonymously.
 */
import { decide } from "../../shared/rbac";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { bearer, login, newAccount, register, someClient, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type JsonResponse } from "../helpers/platform";
import {
	acceptInvitation,
	answerProblems,
	errorType,
	failingFields,
	fieldsOf,
	loadRoutes,
	principalOf,
	sampleValue,
	send,
	withValue,
	wrongValues,
	type JsonSchema,
	type Route
} from "../helpers/routes";

const MAX_BODY_BYTES = 4096;
const BODY_METHODS = ["POST", "PUT", "PATCH"];

interface TenantView {
	id: string;
	name: string;
	slug: string;
	plan: string;
	createdAt: string;
	settings: Record<string, unknown>;
}

describe("bad input (every /api/v1 route of the OpenAPI document)", () => {
	let p: Platform;
	let routes: Route[];
	let owner: Session & { password: string };
	let stripe: FakeStripe | undefined;

	beforeAll(async () => {
		// Payments configured against the local fake of Stripe: the billing routes take bodies too.
		stripe = await startFakeStripe();
		p = await startTestPlatform({ ...stripe.env, MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
		routes = await loadRoutes(p);
		owner = await register(p);
	}, 30_000);

	afterAll(async () => {
		await p?.stop();
		await stripe?.close();
	});

	/** The token a route is called with: none for public routes, a fresh owner sign-in otherwise. */
	async function tokenFor(route: Route): Promise<string | null> {
		if (decide(route.permission, null) === "allow") return null;
		if (decide(route.permission, principalOf("owner", owner.tenant.id)) !== "allow") return null;
		return (await login(p, owner.user.email, owner.password)).accessToken;
	}

	/** Routes whose body is JSON with a schema (POST/PUT/PATCH with an application/json requestBody). */
	const jsonRoutes = () => routes.filter(r => BODY_METHODS.includes(r.method) && r.jsonBody !== null);
	const callableJsonRoutes = () => jsonRoutes().filter(r => decide(r.permission, principalOf("owner", owner.tenant.id)) === "allow");

	function expectAnswer(problems: string[], where: string, res: JsonResponse, status: number | "4xx", type?: string): void {
		const statusOk = status === "4xx" ? res.status >= 400 && res.status < 500 : res.status === status;
		if (!statusOk || (type !== undefined && errorType(res) !== type)) {
			problems.push(`${where}: ${res.status} ${res.text.slice(0, 200)}, expected ${status}${type ? ` ${type}` : ""}`);
		}
		problems.push(...answerProblems(res).map(problem => `${where}: ${problem}`));
	}

	it("finds JSON-body routes the owner or anyone can call", () => {
		expect(callableJsonRoutes().length).toBeGreaterThan(0);
	});

	it("malformed JSON → 400 BAD_REQUEST", async () => {
		const problems: string[] = [];
		for (const route of callableJsonRoutes()) {
			const token = await tokenFor(route);
			for (const raw of ['{"name": "x",', "{name: 'x'}", "{", '{"a":1}}', "\u0000"]) {
				expectAnswer(problems, `${route.label} with ${JSON.stringify(raw)}`, await send(p, route, { token, raw }), 400, "BAD_REQUEST");
			}
		}
		expect(problems).toEqual([]);
	});

	it("a JSON body that is not an object → 4xx, never a 500", async () => {
		const problems: string[] = [];
		for (const route of callableJsonRoutes()) {
			const token = await tokenFor(route);
			for (const raw of ["[]", '["x"]', JSON.stringify([sampleValue(route.jsonBody ?? {})]), '"text"', "42", "null", "true"]) {
				expectAnswer(problems, `${route.label} with ${raw}`, await send(p, route, { token, raw }), "4xx");
			}
		}
		expect(problems).toEqual([]);
	});

	it("a __proto__ key anywhere in a JSON body → 422 naming it, and nothing it carries takes effect", async () => {
		const problems: string[] = [];
		for (const route of callableJsonRoutes()) {
			const token = await tokenFor(route);
			for (const raw of ['{"__proto__":{"name":"Hijacked","enabled":false,"role":"owner"}}', '{"settings":{"__proto__":{"timezone":"Asia/Tokyo"}}}', '{"items":[{"__proto__":{"x":1}}]}']) {
				const res = await send(p, route, { token, raw });
				expectAnswer(problems, `${route.label} with ${raw}`, res, 422, "VALIDATION_ERROR");
			}
		}
		expect(problems).toEqual([]);
		const tenant = await request<{ name: string; settings: { timezone: string } }>(p.api("/tenant"), { headers: bearer(owner.accessToken) });
		expect(tenant.body.name).not.toBe("Hijacked");
		expect(tenant.body.settings.timezone).not.toBe("Asia/Tokyo");
	});

	it("every field with a wrong type or an operator object → 422 VALIDATION_ERROR naming the field", async () => {
		const problems: string[] = [];
		let checked = 0;
		for (const route of callableJsonRoutes()) {
			const token = await tokenFor(route);
			const valid = sampleValue(route.jsonBody ?? {});
			for (const field of fieldsOf(route.jsonBody ?? {})) {
				for (const wrong of wrongValues(field.schema)) {
					const res = await send(p, route, { token, json: withValue(valid, field.path, wrong) });
					const where = `${route.label} with ${field.path} = ${JSON.stringify(wrong)}`;
					checked += 1;
					expectAnswer(problems, where, res, 422, "VALIDATION_ERROR");
					const named = failingFields(res).some(f => f === field.path || f.startsWith(`${field.path}.`) || f.startsWith(`${field.path}[`));
					if (res.status === 422 && !named) problems.push(`${where}: data does not name the field: ${JSON.stringify(failingFields(res))}`);
				}
			}
		}
		expect(problems).toEqual([]);
		expect(checked).toBeGreaterThan(0);
	});

	it("null in every field that is not declared nullable → 422 naming the field (optional means absent, never null)", async () => {
		const problems: string[] = [];
		let checked = 0;
		const nullable = (schema: JsonSchema) => [schema.type].flat().includes("null") || (schema.anyOf ?? []).some(alt => [alt.type].flat().includes("null"));
		for (const route of callableJsonRoutes()) {
			const token = await tokenFor(route);
			const valid = sampleValue(route.jsonBody ?? {});
			for (const field of fieldsOf(route.jsonBody ?? {}).filter(f => !nullable(f.schema))) {
				const res = await send(p, route, { token, json: withValue(valid, field.path, null) });
				const where = `${route.label} with ${field.path} = null`;
				checked += 1;
				expectAnswer(problems, where, res, 422, "VALIDATION_ERROR");
				if (res.status === 422 && !failingFields(res).includes(field.path)) problems.push(`${where}: data does not name the field: ${JSON.stringify(failingFields(res))}`);
			}
		}
		expect(problems).toEqual([]);
		expect(checked).toBeGreaterThan(50);
	});

	it("every field wrong at once → 422 listing every top-level field", async () => {
		const problems: string[] = [];
		for (const route of callableJsonRoutes()) {
			const fields = Object.entries(route.jsonBody?.properties ?? {}).filter(([, schema]) => wrongValues(schema).length > 0);
			if (fields.length === 0) continue;
			const body = Object.fromEntries(fields.map(([name, schema]) => [name, wrongValues(schema)[0]]));
			const res = await send(p, route, { token: await tokenFor(route), json: body });
			expectAnswer(problems, `${route.label} with ${JSON.stringify(body)}`, res, 422, "VALIDATION_ERROR");
			const listed = failingFields(res);
			const missing = fields.map(([name]) => name).filter(name => !listed.some(f => f === name || f.startsWith(`${name}.`)));
			if (missing.length) problems.push(`${route.label}: data does not list ${missing.join(", ")}: ${JSON.stringify(listed)}`);
		}
		expect(problems).toEqual([]);
	});

	it("POST /auth/login with an operator object as email or password → 422", async () => {
		for (const json of [
			{ email: { $gt: "" }, password: "x" },
			{ email: owner.user.email, password: { $gt: "" } },
			{ email: { $ne: null }, password: { $ne: null } }
		]) {
			const res = await request(p.api("/auth/login"), { method: "POST", json, headers: someClient() });
			expect(res.status).toBe(422);
			expect(errorType(res)).toBe("VALIDATION_ERROR");
			expect(answerProblems(res)).toEqual([]);
			expect(JSON.stringify(res.body)).not.toContain("accessToken");
		}
	});

	it(`a body over MAX_BODY_BYTES (${MAX_BODY_BYTES}) → 413 PAYLOAD_TOO_LARGE`, async () => {
		const problems: string[] = [];
		// Uploads (multipart) are bounded per file type instead: see test/e2e/media.test.ts.
		const targets = routes.filter(r => [...BODY_METHODS, "DELETE"].includes(r.method) && !r.bodyTypes.includes("multipart/form-data"));
		expect(targets.length).toBeGreaterThan(0);
		for (const route of targets) {
			const token = await tokenFor(route);
			const padded = { ...(sampleValue(route.jsonBody ?? {}) as Record<string, unknown>), pad: "y".repeat(MAX_BODY_BYTES + 1) };
			expectAnswer(problems, `${route.label} with ${MAX_BODY_BYTES + 1}+ bytes`, await send(p, route, { token, json: padded }), 413, "PAYLOAD_TOO_LARGE");
		}
		expect(problems).toEqual([]);
	});

	it("paging: pageSize=1000, page=-1, page=abc, operator objects → 422", async () => {
		const lists = routes.filter(r => r.method === "GET" && r.queryParams.some(q => q.name === "page" || q.name === "pageSize"));
		expect(lists.length).toBeGreaterThan(0);
		const problems: string[] = [];
		for (const route of lists) {
			const token = await tokenFor(route);
			for (const query of ["pageSize=1000", "pageSize=0", "pageSize=abc", "page=-1", "page=0", "page=abc", "page=1.5", "page[$gt]=0", "pageSize[$ne]=1"]) {
				const res = await send(p, route, { token, query });
				expectAnswer(problems, `${route.label}?${query}`, res, 422, "VALIDATION_ERROR");
			}
			// The limits themselves pass validation (a random id in the path may still answer 404).
			const limits = await send(p, route, { token, query: "page=1&pageSize=100" });
			if (![200, 404].includes(limits.status)) problems.push(`${route.label}?page=1&pageSize=100: ${limits.status} ${limits.text.slice(0, 200)}, expected 200 (or 404 for a random id)`);
			problems.push(...answerProblems(limits).map(problem => `${route.label}?page=1&pageSize=100: ${problem}`));
		}
		expect(problems).toEqual([]);
	});

	it("every query param given an operator object or the wrong type → 422", async () => {
		const withQuery = routes.filter(r => r.queryParams.length > 0 && decide(r.permission, principalOf("owner", owner.tenant.id)) === "allow");
		expect(withQuery.length).toBeGreaterThan(0);
		const problems: string[] = [];
		for (const route of withQuery) {
			const token = await tokenFor(route);
			for (const param of route.queryParams) {
				const numeric = ["integer", "number"].some(t => [param.schema?.type].flat().includes(t));
				const queries = [`${param.name}[$gt]=`, `${param.name}[$ne]=x&${param.name}[$exists]=true`, ...(numeric ? [`${param.name}=abc`] : [])];
				for (const query of queries) {
					const res = await send(p, route, { token, query, json: {} });
					expectAnswer(problems, `${route.label}?${query}`, res, 422, "VALIDATION_ERROR");
					if (res.status === 422 && !failingFields(res).includes(param.name)) problems.push(`${route.label}?${query}: data does not name ${param.name}`);
				}
			}
		}
		expect(problems).toEqual([]);
	});

	it("path params that are not ids → 4xx, never a 500", async () => {
		const withIds = routes.filter(r => r.pathParams.length > 0 && decide(r.permission, principalOf("owner", owner.tenant.id)) === "allow");
		expect(withIds.length).toBeGreaterThan(0);
		const problems: string[] = [];
		for (const route of withIds) {
			const token = await tokenFor(route);
			for (const garbage of ["not-an-id", '{"$gt":""}', "..", "a".repeat(3000), "00000000-0000-0000-0000-000000000000", "%00"]) {
				const values = Object.fromEntries(route.pathParams.map(name => [name, garbage]));
				const res = await send(p, route, { token, values, json: route.jsonBody ? sampleValue(route.jsonBody) : undefined });
				expectAnswer(problems, `${route.label} with ${JSON.stringify(garbage.slice(0, 20))}`, res, "4xx");
			}
		}
		expect(problems).toEqual([]);
	});

	describe("unknown fields never change the tenant or a role (mass assignment)", () => {
		it("register with role, tenantId, plan, _id → the owner of a fresh free tenant", async () => {
			const account = newAccount("massreg");
			const res = await request<Session>(p.api("/auth/register"), {
				method: "POST",
				headers: someClient(),
				json: {
					...account,
					role: "viewer",
					tenantId: owner.tenant.id,
					plan: "enterprise",
					_id: "x",
					id: "x",
					emailVerified: true,
					tenant: { id: owner.tenant.id, plan: "enterprise" },
					user: { id: owner.user.id }
				}
			});
			expect(res.status).toBe(201);
			expect(res.body.role).toBe("owner");
			expect(res.body.tenant.plan).toBe("free");
			expect(res.body.tenant.id).not.toBe(owner.tenant.id);
			expect(res.body.tenant.id).not.toBe("x");
			expect(res.body.user.id).not.toBe("x");
			expect(res.body.user.id).not.toBe(owner.user.id);
			expect(res.body.user.emailVerified).toBe(false);
			const me = await request<{ tenant: { id: string; plan: string }; role: string }>(p.api("/auth/me"), { headers: bearer(res.body.accessToken) });
			expect(me.body).toMatchObject({ role: "owner", tenant: { id: res.body.tenant.id, plan: "free" } });
			// The existing tenant did not gain a member.
			const members = await request<{ rows: Array<{ userId: string }> }>(p.api("/members?pageSize=100"), { headers: bearer(owner.accessToken) });
			expect(members.body.rows.map(m => m.userId)).not.toContain(res.body.user.id);
		});

		it("PATCH /tenant with plan, id, slug, createdAt → only name and settings change", async () => {
			const token = (await login(p, owner.user.email, owner.password)).accessToken;
			const before = (await request<TenantView>(p.api("/tenant"), { headers: bearer(token) })).body;
			const res = await request<TenantView>(p.api("/tenant"), {
				method: "PATCH",
				headers: bearer(token),
				json: {
					name: "Renamed by bad-input",
					plan: "enterprise",
					id: "x",
					_id: "x",
					tenantId: "x",
					slug: "hijacked",
					createdAt: "2000-01-01T00:00:00.000Z",
					settings: { timezone: "Europe/Paris", plan: "enterprise", tenantId: "x" }
				}
			});
			expect(res.status).toBe(200);
			const after = (await request<TenantView>(p.api("/tenant"), { headers: bearer(token) })).body;
			for (const view of [res.body, after]) {
				expect(view).toMatchObject({ id: before.id, slug: before.slug, plan: before.plan, createdAt: before.createdAt, name: "Renamed by bad-input" });
				expect(view.settings.timezone).toBe("Europe/Paris");
				expect(view.settings).not.toHaveProperty("plan");
				expect(view.settings).not.toHaveProperty("tenantId");
			}
			expect(after.plan).toBe("free");
		});

		it("POST /api-keys with tenantId and _id → a key of the caller's own tenant", async () => {
			const other = await register(p);
			const token = (await login(p, owner.user.email, owner.password)).accessToken;
			const res = await request<{ id: string; key: string; role: string }>(p.api("/api-keys"), {
				method: "POST",
				headers: bearer(token),
				json: { name: "mass key", role: "viewer", tenantId: other.tenant.id, _id: "x", id: "x", createdBy: other.user.id }
			});
			expect(res.status).toBe(201);
			expect(res.body.id).not.toBe("x");
			expect(res.body.role).toBe("viewer");
			const viaKey = await request<{ id: string }>(p.api("/tenant"), { headers: bearer(res.body.key) });
			expect(viaKey.body.id).toBe(owner.tenant.id);
			const otherKeys = await request<{ rows: Array<{ id: string }> }>(p.api("/api-keys"), { headers: bearer(other.accessToken) });
			expect(otherKeys.body.rows.map(k => k.id)).not.toContain(res.body.id);
		});

		it("inviting and accepting with role and tenantId overrides → the invited role in the inviter's tenant", async () => {
			const other = await register(p);
			const token = (await login(p, owner.user.email, owner.password)).accessToken;
			const account = newAccount("massinvite");
			const invited = await request(p.api("/invitations"), {
				method: "POST",
				headers: bearer(token),
				json: { email: account.email, role: "viewer", tenantId: other.tenant.id, _id: "x", invitedBy: other.user.id }
			});
			expect(invited.status).toBe(201);
			const session = await acceptInvitation(p, account.email, {
				name: account.name,
				password: account.password,
				role: "owner",
				tenantId: other.tenant.id,
				email: other.user.email,
				plan: "enterprise"
			});
			expect(session.role).toBe("viewer");
			expect(session.tenant.id).toBe(owner.tenant.id);
			expect(session.tenant.plan).toBe("free");
			expect(session.user.email).toBe(account.email);
		});

		it("PATCH /members/:userId with tenantId and userId in the body → changes only that member of the caller's tenant", async () => {
			const token = (await login(p, owner.user.email, owner.password)).accessToken;
			const account = newAccount("massrole");
			await request(p.api("/invitations"), { method: "POST", headers: bearer(token), json: { email: account.email, role: "viewer" } });
			const member = await acceptInvitation(p, account.email, { name: account.name, password: account.password });
			const res = await request<{ userId: string; role: string }>(p.api(`/members/${member.user.id}`), {
				method: "PATCH",
				headers: bearer(token),
				json: { role: "editor", tenantId: "x", _id: "x", joinedAt: "2000-01-01T00:00:00.000Z" }
			});
			expect(res.status).toBe(200);
			expect(res.body).toMatchObject({ userId: member.user.id, role: "editor" });
			const members = await request<{ rows: Array<{ userId: string; role: string; joinedAt: string }> }>(p.api("/members?pageSize=100"), { headers: bearer(token) });
			const row = members.body.rows.find(m => m.userId === member.user.id);
			expect(row).toMatchObject({ role: "editor" });
			expect(row?.joinedAt).not.toBe("2000-01-01T00:00:00.000Z");
			expect(members.body.rows.find(m => m.userId === owner.user.id)).toMatchObject({ role: "owner" });
		});
	});
});
