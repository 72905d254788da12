/**
 * Tracing to a Zipkin collector (TRACING_EXPORTER=zipkin; Jaeger takes the same format): the
 * platform's spans reach it, named by action and by method and path, and carry none of what was
 * sent or answered. Moleculer's default puts every action's params on its span, a failure's data
 * (a validation error's: each refused value) on the failed one, and moleculer-web the whole URL:
 * passwords, tokens, provisioning keys and an identity provider's one-time code would reach
 * whoever runs the collector. The collector here is a local HTTP server taking
 * Zipkin's POST /api/v2/spans; the exporter sends every 5 seconds and when the platform stops.
 * (What a failed span says is test/unit/tracing.test.ts's business.)
 */
import { bearer, newAccount, pairDisplay, register, someClient, startTestPlatform, type Platform } from "../helpers/accounts";
import { request } from "../helpers/platform";
import { startZipkinCollector, type ZipkinCollector } from "../helpers/zipkin-collector";

const SSO_CODE = "idp-one-time-code-4f1d2c9b";
const SSO_STATE = "state-7a6e0d31";
const REFUSED_PASSWORD = "shrt1";
const REFUSED_VALUE = "refused-value-0c3e";

describe("tracing to a Zipkin collector", () => {
	let p: Platform;
	let collector: ZipkinCollector;
	let stopped = false;

	beforeAll(async () => {
		collector = await startZipkinCollector();
		p = await startTestPlatform({ TRACING_EXPORTER: "zipkin", TRACING_ENDPOINT: collector.url });
	});
	afterAll(async () => {
		if (!stopped) await p?.stop();
		await collector.close();
	});

	it("leaves no action its own span tags, which would take precedence over the platform's (moleculer-web's rest is replaced), and traces no channel", () => {
		// Each service's schema as its mixins merged it (private actions are not in the registry).
		const own = p.broker.services.flatMap(service =>
			Object.entries((service.schema.actions ?? {}) as Record<string, unknown>)
				.filter(([, action]) => typeof action === "object" && action !== null && (action as { tracing?: { tags?: unknown } }).tracing?.tags !== undefined)
				.map(([name]) => `${service.name}.${name}`)
		);
		expect(own).toEqual(["api.rest"]);
		const middlewares = (p.broker as unknown as { middlewares: { list: Array<{ name?: string }> } }).middlewares.list.map(m => m.name ?? "");
		expect(middlewares.filter(name => /channel/i.test(name) && /trac/i.test(name))).toEqual([]);
	});

	it("sends spans named by action and path, without params, meta, responses, error data or query strings", async () => {
		const account = newAccount("tracing");
		const session = await register(p, account);
		const login = await request<{ accessToken: string; refreshToken: string }>(p.api("/auth/login"), { method: "POST", json: { email: account.email, password: account.password }, headers: someClient() });
		expect(login.status).toBe(200);
		const key = await request<{ key: string }>(p.api("/provisioning-keys"), { method: "POST", json: { name: "Lobby" }, headers: bearer(session.accessToken) });
		expect(key.status).toBe(201);
		const screen = await request<{ deviceToken: string }>(p.api("/device/register"), { method: "POST", json: { provisioningKey: key.body.key, hardwareId: "tracing-hw-1" }, headers: someClient() });
		expect(screen.status).toBe(201);
		const heartbeat = await request(p.api("/device/heartbeat"), { method: "POST", json: { appVersion: "9.9.9-tracing" }, headers: bearer(screen.body.deviceToken) });
		expect(heartbeat.status).toBe(200);
		const paired = await pairDisplay(p, session);
		const apiKey = await request<{ key: string }>(p.api("/api-keys"), { method: "POST", json: { name: "CI", role: "editor" }, headers: bearer(session.accessToken) });
		expect(apiKey.status).toBe(201);
		// A refused value travels in a validation error's data: an error's span must not carry it.
		const refused = await request(p.api("/auth/register"), { method: "POST", json: { ...newAccount("tracing"), password: REFUSED_PASSWORD }, headers: someClient() });
		expect(refused.status).toBe(422);
		const badEmail = await request(p.api("/auth/login"), { method: "POST", json: { email: `not an email ${REFUSED_VALUE}`, password: account.password }, headers: someClient() });
		expect(badEmail.status).toBe(422);
		const wrongType = await request(p.api("/device/heartbeat"), { method: "POST", json: { appVersion: { text: REFUSED_VALUE } }, headers: bearer(screen.body.deviceToken) });
		expect(wrongType.status).toBe(422);
		const callback = await request(p.api(`/auth/sso/no-such-tenant/callback?code=${SSO_CODE}&state=${SSO_STATE}`), { headers: someClient() });
		expect(callback.status).toBe(404);

		// The exporter sends what finished every 5 s, and what it still holds when the platform
		// stops: stop it, so every span is in (background work's too), and wait for that last send.
		const sent = collector.bodies.length;
		await p.stop();
		stopped = true;
		for (let i = 0; i < 100 && collector.bodies.length === sent; i++) await new Promise(resolve => setTimeout(resolve, 50));
		const callbackPath = "/api/v1/auth/sso/no-such-tenant/callback";

		const names = collector.spans().map(span => span.name);
		expect(names).toEqual(expect.arrayContaining(["action 'auth.login'", "action 'devices.register'", `GET ${callbackPath}`, "POST /api/v1/auth/login"]));
		expect(names.some(name => name.startsWith("action 'devices.heartbeat"))).toBe(true);
		const everything = collector.bodies.join("\n");
		const secrets = {
			password: account.password,
			accessToken: session.accessToken,
			refreshToken: login.body.refreshToken,
			provisioningKey: key.body.key,
			deviceToken: screen.body.deviceToken,
			pairedDeviceToken: paired.token,
			apiKey: apiKey.body.key,
			ssoCode: SSO_CODE,
			ssoState: SSO_STATE,
			heartbeatBody: "9.9.9-tracing",
			refusedPassword: REFUSED_PASSWORD,
			refusedValue: REFUSED_VALUE,
			email: account.email
		};
		for (const [what, secret] of Object.entries(secrets)) expect({ what, found: everything.includes(secret) }).toEqual({ what, found: false });
	}, 60_000);
});
