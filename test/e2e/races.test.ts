/**
 * Races: the same unique or limited thing asked for many times at the same moment, over HTTP,
 * and the invariants checked afterwards — plan limits (displays, storage, members, API keys),
 * one pairing code, one invitation, one email, one refresh token.
 */
import sharp from "sharp";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, newAccount, register, someClient, startTestPlatform, tokenFromMail, type Platform, type Session } from "../helpers/accounts";
import { reportLine } from "../helpers/report";

const PARALLEL = 10;

type Pairing = { pairingId: string; code: string; pollSecret: string };

describe("races", () => {
	let p: Platform;
	const counts: string[] = [];

	beforeAll(async () => {
		// NeDB files, as npm start keeps them: writes take long enough for requests to interleave.
		p = await startTestPlatform({ NODE_ENV: "development", BCRYPT_COST: "4", DEFAULT_PLAN_DISPLAYS: "3", DEFAULT_PLAN_MEMBERS: "5", DEFAULT_PLAN_STORAGE_MB: "1" });
	});
	afterAll(async () => {
		reportLine(`races: ${counts.join("; ")}`);
		await p.stop();
	});

	const as = (s: { accessToken: string }) => bearer(s.accessToken);
	const statuses = (answers: Array<{ status: number }>) => answers.map(a => a.status).sort((a, b) => a - b);
	const count = (answers: Array<{ status: number }>, status: number) => answers.filter(a => a.status === status).length;

	async function requestPairing(): Promise<Pairing> {
		const res = await request<Pairing>(p.api("/device/pairing"), { method: "POST", json: {}, headers: someClient() });
		if (res.status !== 201) throw new Error(`pairing answered ${res.status}`);
		return res.body;
	}

	it(`${PARALLEL * 2} pairings at once on a 3-display plan: exactly 3 displays, the rest 402`, async () => {
		const owner = await register(p, newAccount("pairs"));
		const pairings = await Promise.all(Array.from({ length: PARALLEL * 2 }, () => requestPairing()));
		const answers = await Promise.all(
			pairings.map((pairing, i) => request<ErrorBody>(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: `Screen ${i}` } }))
		);
		expect(count(answers, 201)).toBe(3);
		expect(count(answers, 402)).toBe(PARALLEL * 2 - 3);
		for (const refused of answers.filter(a => a.status === 402)) expect(refused.body.error.data).toEqual({ resource: "displays", limit: 3, current: 3 });
		const listed = await request<{ total: number }>(p.api("/displays"), { headers: as(owner) });
		expect(listed.body.total).toBe(3);
		counts.push(`pairing ${answers.length} at once on a 3-display plan → ${count(answers, 201)} displays`);

		// Deleting one makes room for exactly one more.
		const first = await request<{ rows: Array<{ id: string }> }>(p.api("/displays"), { headers: as(owner) });
		expect((await request(p.api(`/displays/${first.body.rows[0].id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const again = await Promise.all(
			(await Promise.all(Array.from({ length: 4 }, () => requestPairing()))).map(pairing =>
				request(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Again" } })
			)
		);
		expect(statuses(again)).toEqual([201, 402, 402, 402]);
	});

	it("one code entered by two tenants at once pairs exactly one display, once", async () => {
		const a = await register(p, newAccount("code-a"));
		const b = await register(p, newAccount("code-b"));
		const pairing = await requestPairing();
		const answers = await Promise.all(
			[a, b, a, b, a, b].map(owner => request(p.api("/displays/pair"), { method: "POST", headers: as(owner), json: { code: pairing.code, name: "Contested" } }))
		);
		expect(count(answers, 201)).toBe(1);
		expect(count(answers, 404)).toBe(5);
		const polls = await Promise.all(
			Array.from({ length: 5 }, () => request<{ deviceToken?: string }>(p.api(`/device/pairing/${pairing.pairingId}`), { headers: { "X-Pairing-Secret": pairing.pollSecret } }))
		);
		expect(polls.filter(poll => poll.body?.deviceToken).length).toBe(1);
		counts.push("one code by 2 tenants ×3 at once → 1 display, 1 token");
	});

	it(`${PARALLEL} uploads at once on a 1 MiB plan never store more than 1 MiB`, async () => {
		const owner = await register(p, newAccount("bytes"));
		const images = await Promise.all(
			Array.from({ length: PARALLEL }, (_, i) =>
				sharp({ create: { width: 280, height: 280, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128 + i, sigma: 40 } } }).png().toBuffer()
			)
		);
		const answers = await Promise.all(
			images.map((image, i) => {
				const form = new FormData();
				form.append("file", new Blob([new Uint8Array(image)], { type: "image/png" }), `noise-${i}.png`);
				return request<{ size: number } & ErrorBody>(p.api("/content"), { method: "POST", headers: as(owner), body: form });
			})
		);
		expect(answers.every(a => a.status === 201 || a.status === 402)).toBe(true);
		const usage = await request<{ storageBytes: number; limitBytes: number }>(p.api("/content/usage"), { headers: as(owner) });
		expect(usage.body.limitBytes).toBe(1024 * 1024);
		expect(usage.body.storageBytes).toBeLessThanOrEqual(1024 * 1024);
		expect(count(answers, 201)).toBeGreaterThan(0);
		expect(count(answers, 402)).toBeGreaterThan(0);
		// What the counter says is what is stored.
		const listed = await request<{ rows: Array<{ size: number }>; total: number }>(p.api("/content?pageSize=100"), { headers: as(owner) });
		expect(listed.body.total).toBe(count(answers, 201));
		expect(listed.body.rows.reduce((sum, row) => sum + row.size, 0)).toBeLessThanOrEqual(usage.body.storageBytes);
		counts.push(`${PARALLEL} uploads of ~${Math.round(images[0].length / 1024)} kB at once on 1 MiB → ${count(answers, 201)} stored, ${Math.round((usage.body.storageBytes / (1024 * 1024)) * 100)}% used`);
	});

	it("invitations accepted at once on a 5-member plan: never more than 5 members", async () => {
		const owner = await register(p, newAccount("seats"));
		// Four invitations fit beside the owner (pending ones hold seats); a fifth is refused.
		const accounts = Array.from({ length: 4 }, () => newAccount("seat"));
		for (const account of accounts) {
			expect((await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: account.email, role: "viewer" } })).status).toBe(201);
		}
		const fifth = await request<ErrorBody>(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: newAccount("seat").email, role: "viewer" } });
		expect(fifth.status).toBe(402);
		expect(fifth.body.error.data).toMatchObject({ resource: "members", limit: 5 });
		const tokens = await Promise.all(accounts.map(account => tokenFromMail(p, account.email, "accept-invitation")));
		// Every token presented three times at once: each works once, and the plan holds.
		const answers = await Promise.all(
			tokens.flatMap((token, i) =>
				[0, 1, 2].map(() => request(p.api("/invitations/accept"), { method: "POST", headers: someClient(), json: { token, name: accounts[i].name, password: accounts[i].password } }))
			)
		);
		expect(count(answers, 200)).toBe(4);
		const members = await request<{ total: number }>(p.api("/members"), { headers: as(owner) });
		expect(members.body.total).toBe(5);
		counts.push(`4 invitations × 3 acceptances at once on a 5-member plan → ${members.body.total} members`);
	});

	it("one address invited three times at once, ten times over: never more than one pending invitation for it", async () => {
		const owner = await register(p, newAccount("twice"));
		let duplicated = 0;
		for (let round = 0; round < 10; round++) {
			const email = newAccount("twice-invited").email;
			const answers = await Promise.all([0, 1, 2].map(() => request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email, role: "viewer" } })));
			expect(statuses(answers)).toEqual([201, 201, 201]);
			const pending = await request<{ rows: Array<{ id: string; email: string }> }>(p.api("/invitations?pageSize=100"), { headers: as(owner) });
			if (pending.body.rows.filter(row => row.email === email).length > 1) duplicated += 1;
			// Make room for the next round (pending invitations hold seats).
			for (const row of pending.body.rows) await request(p.api(`/invitations/${row.id}`), { method: "DELETE", headers: as(owner) });
		}
		expect(duplicated).toBe(0);
		counts.push("one address invited 3× at once, 10 rounds → 1 pending invitation each time");
	});

	it("invitations to twelve addresses at once on a 5-member plan: four fit beside the owner, the rest are 402", async () => {
		const owner = await register(p, newAccount("burst"));
		const answers = await Promise.all(
			Array.from({ length: 12 }, () => request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: newAccount("burst-invited").email, role: "viewer" } }))
		);
		expect(count(answers, 201)).toBe(4);
		expect(count(answers, 402)).toBe(8);
		counts.push(`12 invitations at once on a 5-member plan → ${count(answers, 201)} pending`);
	});

	it("a removed member makes room for a new invitation", async () => {
		const owner = await register(p, newAccount("full"));
		const accounts = Array.from({ length: 4 }, () => newAccount("seat"));
		for (const account of accounts) await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: account.email, role: "viewer" } });
		const accepted: Session[] = [];
		for (const account of accounts) {
			const token = await tokenFromMail(p, account.email, "accept-invitation");
			const res = await request<Session>(p.api("/invitations/accept"), { method: "POST", headers: someClient(), json: { token, name: account.name, password: account.password } });
			expect(res.status).toBe(200);
			accepted.push(res.body);
		}
		expect((await request(p.api(`/members/${accepted[0].user.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		const newcomer = newAccount("seat");
		expect((await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: newcomer.email, role: "viewer" } })).status).toBe(201);
		expect((await request(p.api("/invitations"), { method: "POST", headers: as(owner), json: { email: newAccount("seat").email, role: "viewer" } })).status).toBe(402);
	});

	it(`${PARALLEL} sign-ups with one email at once: one account`, async () => {
		const account = newAccount("twin");
		const answers = await Promise.all(Array.from({ length: PARALLEL }, () => request(p.api("/auth/register"), { method: "POST", headers: someClient(), json: account })));
		expect(count(answers, 201)).toBe(1);
		expect(count(answers, 409)).toBe(PARALLEL - 1);
		counts.push(`${PARALLEL} sign-ups of one email at once → ${count(answers, 201)} account`);
	});

	it("API keys created at once stop at 50 per tenant; revoking one makes room", async () => {
		const owner = await register(p, newAccount("keys"));
		const answers = await Promise.all(
			Array.from({ length: 60 }, (_, i) => request<{ id: string } & ErrorBody>(p.api("/api-keys"), { method: "POST", headers: as(owner), json: { name: `key ${i}`, role: "viewer" } }))
		);
		expect(count(answers, 201)).toBe(50);
		expect(count(answers, 409)).toBe(10);
		const listed = await request<{ total: number }>(p.api("/api-keys"), { headers: as(owner) });
		expect(listed.body.total).toBe(50);
		const one = answers.find(a => a.status === 201)?.body.id;
		expect((await request(p.api(`/api-keys/${one}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect((await request(p.api("/api-keys"), { method: "POST", headers: as(owner), json: { name: "one more", role: "viewer" } })).status).toBe(201);
		counts.push(`60 API keys at once → ${count(answers, 201)} kept`);
	});

	it("one refresh token presented at once: at most one rotation", async () => {
		const user = await register(p, newAccount("rotate"));
		const answers = await Promise.all(Array.from({ length: PARALLEL }, () => request(p.api("/auth/refresh"), { method: "POST", json: { refreshToken: user.refreshToken } })));
		expect(count(answers, 200)).toBeLessThanOrEqual(1);
		counts.push(`${PARALLEL} refreshes of one token at once → ${count(answers, 200)} rotation`);
	});
});
