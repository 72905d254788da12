/**
 * Without chDB (an optional dependency a production image may leave out) and without
 * CLICKHOUSE_URL, the platform still runs; analytics answers 503 and says why.
 */
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform } from "../helpers/accounts";
import { request } from "../helpers/platform";

// As if `npm ci --omit=optional` had left it out.
jest.mock("chdb", () => {
	throw new Error("Cannot find module 'chdb'");
});

describe("analytics without an engine", () => {
	let p: Platform;
	beforeAll(async () => {
		p = await startTestPlatform();
	});
	afterAll(() => p?.stop());

	it("answers 503 on every analytics route, naming the two ways to fix it, while the rest works", async () => {
		const owner = await register(p, newAccount("noengine"));
		const { token } = await pairDisplay(p, owner, { name: "Still pairs" });
		const range = `from=${new Date(Date.now() - 3_600_000).toISOString()}&to=${new Date().toISOString()}`;
		const answers = [
			await request<{ error: { type: string; message: string } }>(p.api(`/analytics/playback?${range}`), { headers: bearer(owner.accessToken) }),
			await request<{ error: { type: string; message: string } }>(p.api(`/analytics/uptime?${range}`), { headers: bearer(owner.accessToken) }),
			await request<{ error: { type: string; message: string } }>(p.api("/audit-logs"), { headers: bearer(owner.accessToken) }),
			await request<{ error: { type: string; message: string } }>(p.api("/device/playback"), {
				method: "POST",
				headers: bearer(token),
				json: { events: [{ eventId: "e", contentId: owner.tenant.id, startedAt: new Date().toISOString(), durationMs: 1 }] }
			})
		];
		for (const res of answers) {
			expect(res.status).toBe(503);
			expect(res.body.error.type).toBe("SERVICE_UNAVAILABLE");
			expect(res.body.error.message).toMatch(/CLICKHOUSE_URL is not set and the optional dependency chdb is not installed/);
		}
		expect((await request(p.api("/displays"), { headers: bearer(owner.accessToken) })).status).toBe(200);
		expect((await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: {} })).status).toBe(200);
	});
});
