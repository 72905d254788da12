/**
 * Abuse from outside, over real sockets: the gateway trusts no proxy here (TRUST_PROXY_HOPS=0),
 * so each attacker address is a real source address bound on the loopback network (127.0.0.x).
 * Guessing passwords from many addresses must not lock the owner out; guessing pairing codes is
 * bounded however many API keys or tenants guess; invitation floods stop; and the platform holds
 * no more descriptors afterwards than before. (Aborted and stalled uploads: uploads-abuse.test.ts.)
 */
import fs from "node:fs";
import http from "node:http";
import { reportLine } from "../helpers/report";
import { startTestPlatform, type Platform } from "../helpers/accounts";

jest.setTimeout(120_000);

interface Answer {
	status: number;
	body: Record<string, unknown> | null;
}

/** One JSON request from source address `from`, on its own connection. */
function send(p: Platform, from: string, method: string, path: string, json?: unknown, token?: string): Promise<Answer> {
	const body = json === undefined ? undefined : JSON.stringify(json);
	const url = new URL(p.api(path));
	return new Promise((resolve, reject) => {
		const req = http.request(
			{
				host: url.hostname,
				port: url.port,
				path: url.pathname + url.search,
				method,
				localAddress: from,
				agent: false,
				headers: {
					...(body ? { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)) } : {}),
					...(token ? { Authorization: `Bearer ${token}` } : {})
				}
			},
			res => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", chunk => (text += chunk));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : null }));
			}
		);
		req.on("error", reject);
		req.end(body);
	});
}

const openDescriptors = () => fs.readdirSync("/proc/self/fd").length;
const tally = (answers: Answer[]) => answers.reduce<Record<number, number>>((t, a) => ({ ...t, [a.status]: (t[a.status] ?? 0) + 1 }), {});

describe("abuse over real source addresses", () => {
	let p: Platform;
	const lines: string[] = [];
	let fdsBefore = 0;
	let counter = 0;

	beforeAll(async () => {
		p = await startTestPlatform({ TRUST_PROXY_HOPS: "0", DEFAULT_PLAN_MEMBERS: "1000", DEFAULT_PLAN_DISPLAYS: "1000" });
		fdsBefore = openDescriptors();
	});
	afterAll(async () => {
		await p.stop();
		reportLine(`abuse: ${lines.join("; ")}`);
	});

	function account(label: string) {
		counter += 1;
		return { email: `${label}-${process.pid}-${counter}@example.com`, password: `Abuse-proof ${label} ${counter} horse`, name: "Abused", organizationName: `${label} ${counter}` };
	}

	async function signUp(from: string, label: string): Promise<{ email: string; password: string; accessToken: string; tenantId: string }> {
		const a = account(label);
		const res = await send(p, from, "POST", "/auth/register", a);
		if (res.status !== 201) throw new Error(`register answered ${res.status}`);
		return { email: a.email, password: a.password, accessToken: String(res.body?.accessToken), tenantId: String((res.body?.tenant as { id: string }).id) };
	}

	it("105 wrong passwords from 21 addresses do not lock the owner out of where they signed in before", async () => {
		const owner = await signUp("127.0.0.1", "owner");
		const guesses: Answer[] = [];
		for (let a = 2; a <= 22; a++) {
			const from = `127.0.0.${a}`;
			guesses.push(...(await Promise.all(Array.from({ length: 5 }, (_, i) => send(p, from, "POST", "/auth/login", { email: owner.email, password: `wrong ${a}-${i}` })))));
		}
		expect(guesses.every(g => g.status === 401 || g.status === 429)).toBe(true);
		// The account has seen 105 failures: an address it does not know is held back…
		expect((await send(p, "127.0.0.99", "POST", "/auth/login", { email: owner.email, password: owner.password })).status).toBe(429);
		// …and its owner, from the address they signed up from, signs in.
		const real = await send(p, "127.0.0.1", "POST", "/auth/login", { email: owner.email, password: owner.password });
		expect(real.status).toBe(200);
		// Each attacker address is held back on its own after 5 failures for this account.
		expect((await send(p, "127.0.0.2", "POST", "/auth/login", { email: owner.email, password: owner.password })).status).toBe(429);
		lines.push(`105 wrong passwords from 21 addresses: ${JSON.stringify(tally(guesses))}, owner signed in from a known address`);
	});

	it("pairing codes guessed through 20 API keys of one tenant stop after 20 wrong codes in all", async () => {
		const owner = await signUp("127.0.1.1", "keys");
		const keys: string[] = [];
		for (let i = 0; i < 20; i++) {
			const key = await send(p, "127.0.1.1", "POST", "/api-keys", { name: `guesser ${i}`, role: "admin" }, owner.accessToken);
			keys.push(String(key.body?.key));
		}
		const guesses: Answer[] = [];
		for (let round = 0; round < 10; round++) {
			guesses.push(...(await Promise.all(keys.map((key, i) => send(p, `127.0.1.${i + 2}`, "POST", "/displays/pair", { code: randomCode(), name: "Stolen" }, key)))));
		}
		const counts = tally(guesses);
		expect(counts[404]).toBeLessThanOrEqual(20);
		expect(counts[429]).toBeGreaterThanOrEqual(guesses.length - 20);
		expect(Object.keys(counts).sort()).toEqual(["404", "429"]);
		lines.push(`200 pairing guesses through 20 API keys: ${JSON.stringify(counts)}`);
	});

	it("pairing codes guessed by many tenants stop at the global bound, a valid code included", async () => {
		const guesses: Answer[] = [];
		let tenants = 0;
		// 20 wrong codes each (the tenant bound) until the global bound of 1000 is reached.
		while (tenants < 55) {
			tenants += 1;
			const from = `127.0.${2 + Math.floor(tenants / 200)}.${(tenants % 200) + 10}`;
			const guesser = await signUp(from, "many");
			guesses.push(...(await Promise.all(Array.from({ length: 20 }, () => send(p, from, "POST", "/displays/pair", { code: randomCode(), name: "Stolen" }, guesser.accessToken)))));
		}
		const counts = tally(guesses);
		// Earlier cases of this file spent 20 of the 1000.
		expect(counts[404]).toBeLessThanOrEqual(1000);
		expect(counts[429]).toBeGreaterThan(0);
		const honest = await signUp("127.0.9.9", "honest");
		const screen = await send(p, "127.0.9.10", "POST", "/device/pairing", {});
		expect((await send(p, "127.0.9.9", "POST", "/displays/pair", { code: screen.body?.code, name: "Mine" }, honest.accessToken)).status).toBe(429);
		lines.push(`${guesses.length} pairing guesses by ${tenants} tenants: ${JSON.stringify(counts)}`);
	});

	it("an invitation flood from one tenant stops at 50 an hour", async () => {
		const owner = await signUp("127.0.10.1", "flood");
		const answers: Answer[] = [];
		for (let i = 0; i < 60; i++) answers.push(await send(p, "127.0.10.1", "POST", "/invitations", { email: `victim-${process.pid}-${i}@example.com`, role: "viewer" }, owner.accessToken));
		const counts = tally(answers);
		expect(counts[201]).toBe(50);
		expect(counts[429]).toBe(10);
		lines.push(`60 invitations from one tenant: ${JSON.stringify(counts)}`);
	});

	it("pairing requests from 50 addresses are limited per address, and no descriptor is left behind", async () => {
		const answers: Answer[] = [];
		for (let a = 0; a < 50; a++) answers.push(...(await Promise.all(Array.from({ length: 22 }, () => send(p, `127.0.20.${a + 1}`, "POST", "/device/pairing", {})))));
		const counts = tally(answers);
		expect(counts[201]).toBe(50 * 20);
		expect(counts[429]).toBe(50 * 2);
		await new Promise(resolve => setTimeout(resolve, 200));
		const leaked = openDescriptors() - fdsBefore;
		expect(leaked).toBeLessThan(20);
		lines.push(`1100 pairing requests from 50 addresses: ${JSON.stringify(counts)}; open descriptors ${leaked >= 0 ? "+" : ""}${leaked} after all of the above`);
	});
});

const ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679";
function randomCode(): string {
	return Array.from({ length: 6 }, () => ALPHABET[Math.floor(Math.random() * ALPHABET.length)]).join("");
}
