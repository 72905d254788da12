/**
 * Route × caller: a tripwire written by hand. ROUTES below lists every route of the API under
 * /api/v1 — spelled as the OpenAPI document spells it — with the permission it must declare and
 * the callers that may use it, decided from the roles of docs DESIGN.md / API.md:
 *
 *   owner > admin > editor > viewer. Viewer reads everything in the tenant. Editor also writes
 *   content, playlists and layouts, schedules (and overrides). Admin also manages displays,
 *   pairing, commands, groups, screen power schedules, members, invitations, API keys, webhooks,
 *   alert settings, the tenant's settings and weekly report emails, approves (or rejects) content
 *   and playlist changes, and reads audit logs. Owner also manages billing, transfers ownership,
 *   exports and deletes the tenant. Account routes ("self") are for signed-in people only; device
 *   routes for device tokens only. "apiKey" below is an API key with the admin role: it acts as an
 *   admin, except on routes that are for people only (API keys, account, billing, owner actions).
 *
 * Nothing here reads shared/rbac.ts at run time: changing a route's permission in a service (or
 * the gateway's decision) without changing this table fails the suite, on the OpenAPI
 * `x-permission` and on behaviour. The suite fails when a route of the running platform is not in
 * the table, when the table lists a route the platform does not have, when a declared permission
 * differs, or when any route × caller answers otherwise than the table says: an allowed caller
 * never gets 401/403; a caller not allowed gets 401 UNAUTHORIZED when it has no usable token
 * (anonymous, or a token of the other family: a device token on a user route, a user or API-key
 * token on a device route) and 403 FORBIDDEN otherwise (a role too low, an API key on a route for
 * people only). Every answer is in the API's error shape and never a 500.
 *
 * Requests carry random ids and an empty JSON body, so handlers mostly stop at validation or
 * 404. Each request gets fresh credentials (a new sign-in, a new API key, a newly minted device
 * token), and a member that a previous request made leave is restored first: no case depends on
 * another.
 */
import { newId } from "../../shared/ids";
import type { Permission } from "../../shared/rbac";
import { bearer, login, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { request } from "../helpers/platform";
import {
	addMember,
	answerProblems,
	CALLER_NAMES,
	errorType,
	loadRoutes,
	sampleValue,
	send,
	signInAs,
	USER_ROLES,
	type CallerName,
	type Member,
	type Route
} from "../helpers/routes";

interface Expected {
	/** The `x-permission` the OpenAPI document declares ("public" = none declared). */
	permission: Permission;
	/** Who may call it: user roles of the tenant, "apiKey" (an admin-role key), "device", "anonymous". */
	allowed: CallerName[];
}

// prettier-ignore
const ROUTES: Record<string, Expected> = {
	// auth: accounts and API keys
	"POST /auth/register":            { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/login":               { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/refresh":             { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/logout":              { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/logout-all":          { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /auth/me":                   { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/verify-email":        { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/resend-verification": { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/forgot-password":     { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/reset-password":      { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/change-password":     { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /auth/sessions":             { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"DELETE /auth/sessions/{id}":     { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/login/2fa":           { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/login/2fa/enrol":     { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"GET /auth/2fa":                  { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/2fa/enrol":           { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/2fa/confirm":         { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/2fa/disable":         { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/2fa/recovery-codes":  { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /auth/tenants":              { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /auth/switch-tenant":       { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /tenants":                  { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /auth/sso/{tenantSlug}":     { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"GET /auth/sso/{tenantSlug}/callback": { permission: "public",    allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /auth/sso/exchange":        { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"GET /tenant/sso":                { permission: "sso.manage",      allowed: ["owner"] },
	"PUT /tenant/sso":                { permission: "sso.manage",      allowed: ["owner"] },
	"DELETE /tenant/sso":             { permission: "sso.manage",      allowed: ["owner"] },
	"POST /tenant/sso/verify-domains": { permission: "sso.manage",     allowed: ["owner"] },
	"POST /api-keys":                 { permission: "apiKeys.manage",  allowed: ["owner", "admin"] },
	"GET /api-keys":                  { permission: "apiKeys.manage",  allowed: ["owner", "admin"] },
	"DELETE /api-keys/{id}":          { permission: "apiKeys.manage",  allowed: ["owner", "admin"] },

	// tenants: organisation, members, invitations
	"GET /tenant":                     { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /tenant":                   { permission: "tenant.settings", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /tenant":                  { permission: "tenant.owner",    allowed: ["owner"] },
	"POST /tenant/transfer-ownership": { permission: "tenant.owner",    allowed: ["owner"] },
	"PUT /tenant/two-factor":          { permission: "tenant.owner",    allowed: ["owner"] },
	"GET /tenant/export":              { permission: "tenant.owner",    allowed: ["owner"] },
	"GET /members":                    { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"DELETE /members/me":              { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"PATCH /members/{userId}":         { permission: "members.manage",  allowed: ["owner", "admin", "apiKey"] },
	"DELETE /members/{userId}":        { permission: "members.manage",  allowed: ["owner", "admin", "apiKey"] },
	"POST /invitations":               { permission: "members.manage",  allowed: ["owner", "admin", "apiKey"] },
	"GET /invitations":                { permission: "members.manage",  allowed: ["owner", "admin", "apiKey"] },
	"DELETE /invitations/{id}":        { permission: "members.manage",  allowed: ["owner", "admin", "apiKey"] },
	"POST /invitations/accept":        { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },

	// devices: pairing, displays, groups, commands, and the device API
	"POST /device/pairing":             { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"GET /device/pairing/{pairingId}":  { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /displays/pair":              { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /displays":                    { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /displays/{id}":               { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /displays/{id}":             { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /displays/{id}":            { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /displays/{id}/commands":     { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /displays/{id}/commands":      { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"POST /display-groups":             { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /display-groups":              { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /display-groups/{id}":         { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /display-groups/{id}":       { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /display-groups/{id}":      { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /device/heartbeat":           { permission: "device",          allowed: ["device"] },
	"POST /device/commands/{id}/ack":   { permission: "device",          allowed: ["device"] },
	// the gateway's own alias: the device live stream (SSE)
	"GET /device/events":               { permission: "device",          allowed: ["device"] },

	// media: content (and its approval)
	"POST /content":                 { permission: "content.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /content/url":             { permission: "content.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"GET /content":                  { permission: "tenant.read",   allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /content/usage":            { permission: "tenant.read",   allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /content/{id}":             { permission: "tenant.read",   allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /content/{id}":           { permission: "content.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"DELETE /content/{id}":          { permission: "content.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /content/{id}/approve":    { permission: "content.approve", allowed: ["owner", "admin", "apiKey"] },
	"POST /content/{id}/reject":     { permission: "content.approve", allowed: ["owner", "admin", "apiKey"] },
	"GET /content/{id}/download":    { permission: "tenant.read",   allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /content/{id}/thumbnail":   { permission: "tenant.read",   allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /device/content/{contentId}": { permission: "device",      allowed: ["device"] },

	// scheduling: playlists (and their approval), layouts, schedules, overrides, screen power
	// schedules, preview, timeline, manifest
	"POST /playlists":               { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"GET /playlists":                { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /playlists/{id}":           { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /playlists/{id}":         { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"DELETE /playlists/{id}":        { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /playlists/{id}/approve":  { permission: "content.approve", allowed: ["owner", "admin", "apiKey"] },
	"POST /playlists/{id}/reject":   { permission: "content.approve", allowed: ["owner", "admin", "apiKey"] },
	"POST /layouts":                 { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"GET /layouts":                  { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /layouts/{id}":             { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /layouts/{id}":           { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"DELETE /layouts/{id}":          { permission: "playlists.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /schedules":               { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"GET /schedules":                { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /schedules/{id}":           { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /schedules/{id}":         { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"DELETE /schedules/{id}":        { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /overrides":               { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"GET /overrides":                { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /overrides/{id}":           { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /overrides/{id}":         { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"DELETE /overrides/{id}":        { permission: "schedules.write", allowed: ["owner", "admin", "editor", "apiKey"] },
	"POST /power-schedules":         { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /power-schedules":          { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /power-schedules/{id}":     { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"PATCH /power-schedules/{id}":   { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /power-schedules/{id}":  { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /displays/{id}/preview":    { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /displays/{id}/timeline":   { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /device/manifest":          { permission: "device",          allowed: ["device"] },

	// notifications: in-app notifications and preferences (people only, their own), the email log,
	// webhooks (admins and admin-role API keys)
	"GET /notifications":                  { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /notifications/{id}/read":       { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"POST /notifications/read-all":        { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /notifications/preferences":      { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"PATCH /notifications/preferences":    { permission: "self",            allowed: ["owner", "admin", "editor", "viewer"] },
	"GET /notifications/emails":           { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /webhooks":                      { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /webhooks":                       { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /webhooks/{id}":                  { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"PATCH /webhooks/{id}":                { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /webhooks/{id}":               { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /webhooks/{id}/rotate-secret":   { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /webhooks/{id}/deliveries":       { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /webhooks/{id}/test":            { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /webhooks/{id}/replay":          { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },
	"POST /webhook-deliveries/{id}/retry": { permission: "webhooks.manage", allowed: ["owner", "admin", "apiKey"] },

	// billing: anyone of the tenant reads plans and the subscription; only the owner pays; Stripe's
	// webhook is public (its signature is the guard)
	"GET /billing/plans":                  { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /billing/subscription":           { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"POST /billing/checkout":              { permission: "billing.manage",  allowed: ["owner"] },
	"POST /billing/portal":                { permission: "billing.manage",  allowed: ["owner"] },
	"POST /billing/stripe/webhook":        { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	// analytics: proof of play from screens; reports for anyone of the tenant; the audit log and
	// report emails for admins.
	"POST /device/playback":               { permission: "device",          allowed: ["device"] },
	// zero-touch provisioning: admins manage keys; a screen registers with one, no token needed
	"POST /device/register":               { permission: "public",          allowed: ["owner", "admin", "editor", "viewer", "apiKey", "device", "anonymous"] },
	"POST /provisioning-keys":             { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /provisioning-keys":              { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /provisioning-keys/{id}":         { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"DELETE /provisioning-keys/{id}":      { permission: "displays.manage", allowed: ["owner", "admin", "apiKey"] },
	"GET /analytics/playback":             { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /analytics/playback/export":      { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /analytics/uptime":               { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /analytics/health":               { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"GET /audit-logs":                     { permission: "audit.read",      allowed: ["owner", "admin", "apiKey"] },
	"GET /analytics/reports":              { permission: "tenant.read",     allowed: ["owner", "admin", "editor", "viewer", "apiKey"] },
	"POST /analytics/reports":             { permission: "reports.manage",  allowed: ["owner", "admin", "apiKey"] },
	"DELETE /analytics/reports/{id}":      { permission: "reports.manage",  allowed: ["owner", "admin", "apiKey"] },
	"POST /analytics/reports/{id}/send":   { permission: "reports.manage",  allowed: ["owner", "admin", "apiKey"] }
};

/** Statuses an allowed call may answer with random ids and an empty body. */
const ALLOWED_STATUSES = [200, 201, 202, 204, 400, 404, 409, 422];

/**
 * The answer a caller outside `allowed` gets, by hand: no token, or a token of the other family
 * (device tokens on user routes, user and API-key tokens on device routes) is unauthenticated;
 * a token of the right family without the rights (role too low, API key where only people may
 * go) is forbidden.
 */
function denial(expected: Expected, caller: CallerName): { status: 401; type: "UNAUTHORIZED" } | { status: 403; type: "FORBIDDEN" } {
	const deviceRoute = expected.allowed.includes("device") && !expected.allowed.includes("anonymous");
	const deviceCaller = caller === "device";
	if (caller === "anonymous" || deviceRoute !== deviceCaller) return { status: 401, type: "UNAUTHORIZED" };
	return { status: 403, type: "FORBIDDEN" };
}

describe("route × caller matrix (every /api/v1 route against the hand-written table)", () => {
	let p: Platform;
	let routes: Route[];
	let owner: Session & { password: string };
	const members = new Map<CallerName, Member>();
	let stripe: FakeStripe | undefined;
	const displayId = newId();

	/** The platform's routes that the table lists (the others fail the coverage test). */
	const listed = () => routes.filter(route => Object.prototype.hasOwnProperty.call(ROUTES, route.label));

	beforeAll(async () => {
		// Payments configured against the local fake of Stripe's API: billing routes answer as in production.
		stripe = await startFakeStripe();
		p = await startTestPlatform(stripe.env);
		routes = await loadRoutes(p);
		owner = await register(p);
		for (const role of USER_ROLES) {
			if (role !== "owner") members.set(role, await addMember(p, owner.accessToken, role));
		}
	}, 30_000);

	afterAll(async () => {
		await p?.stop();
		await stripe?.close();
	});

	let lastKeyId: string | null = null;

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
				const res = await request<{ id: string; key: string }>(p.api("/api-keys"), {
					method: "POST",
					json: { name: `matrix key ${newId()}`, role: "admin" },
					headers: bearer(session.accessToken)
				});
				if (res.status !== 201) throw new Error(`creating an API key answered ${res.status}: ${res.text}`);
				// A tenant holds at most 50 keys: the previous one of this suite goes.
				if (lastKeyId) await request(p.api(`/api-keys/${lastKeyId}`), { method: "DELETE", headers: bearer(session.accessToken) });
				lastKeyId = res.body.id;
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

	it("the table is well formed: known callers, none twice, one set of callers per permission", () => {
		const callersOf = new Map<string, string>();
		const problems: string[] = [];
		for (const [label, expected] of Object.entries(ROUTES)) {
			if (!/^(GET|POST|PUT|PATCH|DELETE) \/\S*$/.test(label)) problems.push(`${label}: not "METHOD /path"`);
			for (const caller of expected.allowed) if (!CALLER_NAMES.includes(caller)) problems.push(`${label}: unknown caller ${caller}`);
			if (new Set(expected.allowed).size !== expected.allowed.length) problems.push(`${label}: a caller listed twice`);
			const callers = [...expected.allowed].sort().join(",");
			const seen = callersOf.get(expected.permission);
			if (seen === undefined) callersOf.set(expected.permission, callers);
			else if (seen !== callers) problems.push(`${label}: ${expected.permission} allows ${callers} here but ${seen} elsewhere`);
		}
		expect(problems).toEqual([]);
	});

	it("every route of the platform is in the table", () => {
		const missing = routes.filter(route => !Object.prototype.hasOwnProperty.call(ROUTES, route.label)).map(route => `${route.label} (declares ${route.permission})`);
		expect(missing).toEqual([]);
	});

	it("every route of the table exists on the platform", () => {
		const labels = new Set(routes.map(route => route.label));
		expect(Object.keys(ROUTES).filter(label => !labels.has(label))).toEqual([]);
	});

	it("every route declares the table's permission (OpenAPI x-permission)", () => {
		const differing = listed()
			.filter(route => route.permission !== ROUTES[route.label].permission)
			.map(route => `${route.label}: declares ${route.permission}, the table says ${ROUTES[route.label].permission}`);
		expect(differing).toEqual([]);
	});

	it.each(CALLER_NAMES)("every route answers %s as the table says", async caller => {
		const problems: string[] = [];
		for (const route of listed()) {
			const expected = ROUTES[route.label];
			const allowed = expected.allowed.includes(caller);
			const res = await send(p, route, { token: await freshToken(caller), json: {} });
			const where = `${route.label} as ${caller} (${allowed ? "allowed" : "not allowed"}): ${res.status}`;
			if (allowed) {
				if (!ALLOWED_STATUSES.includes(res.status)) problems.push(`${where}, expected one of ${ALLOWED_STATUSES.join("/")}: ${res.text.slice(0, 200)}`);
			} else {
				const { status, type } = denial(expected, caller);
				if (res.status !== status || errorType(res) !== type) problems.push(`${where}, expected ${status} ${type}: ${res.text.slice(0, 200)}`);
				if (status === 401 && !/^Bearer/.test(res.headers.get("www-authenticate") ?? "")) problems.push(`${where}: a 401 without WWW-Authenticate: Bearer`);
			}
			problems.push(...answerProblems(res).map(problem => `${where}: ${problem}`));
		}
		expect(problems).toEqual([]);
	}, 30_000);

	it("an admin API key is refused (403) on routes for people only, even with a valid body", async () => {
		const peopleOnly = listed().filter(route => {
			const expected = ROUTES[route.label];
			return !expected.allowed.includes("apiKey") && expected.allowed.includes("owner") && !expected.allowed.includes("anonymous");
		});
		expect(peopleOnly.map(route => route.label)).toContain("POST /api-keys");
		const problems: string[] = [];
		for (const route of peopleOnly) {
			const json = route.jsonBody ? sampleValue(route.jsonBody) : {};
			const res = await send(p, route, { token: await freshToken("apiKey"), json });
			if (res.status !== 403 || errorType(res) !== "FORBIDDEN") problems.push(`${route.label}: ${res.status} ${res.text.slice(0, 200)}`);
		}
		expect(problems).toEqual([]);
	});
});
