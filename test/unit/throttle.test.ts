/**
 * shared/throttle.ts: attempts are counted and checked in one step, so parallel attempts never
 * slip in under a limit; refused attempts spend nothing; flows that limit failures give back
 * what turned out fine.
 */
import { AppError } from "../../shared/errors";
import { MemoryKeyValueStore } from "../../shared/kv";
import { forgive, giveBack, refuseSpent, takeAttempt, THROTTLES, type ThrottleRule } from "../../shared/throttle";

const rule = (key: string, limit: number, extra: Partial<ThrottleRule> = {}): ThrottleRule => ({ key, limit, windowMs: 60_000, ...extra });

describe("takeAttempt", () => {
	it("fifty parallel attempts against a limit of five: exactly five pass, the rest are 429 with Retry-After", async () => {
		const kv = new MemoryKeyValueStore();
		const results = await Promise.allSettled(Array.from({ length: 50 }, () => takeAttempt(kv, [rule("burst", 5)])));
		expect(results.filter(r => r.status === "fulfilled")).toHaveLength(5);
		for (const refused of results.filter(r => r.status === "rejected")) {
			const err = (refused as PromiseRejectedResult).reason as AppError;
			expect(err.type).toBe("RATE_LIMITED");
			expect(err.data).toEqual({ retryAfter: 60 });
		}
	});

	it("a refused attempt spends no other rule's budget", async () => {
		const kv = new MemoryKeyValueStore();
		const rules = [rule("tenant:a", 2), rule("all", 10)];
		for (let i = 0; i < 8; i++) await takeAttempt(kv, rules).catch(() => undefined);
		// Two passed for tenant a; the six refused ones left the shared budget alone.
		expect(await kv.get("throttle:all")).toBe("2");
		for (let i = 0; i < 8; i++) await takeAttempt(kv, [rule("tenant:b", 100), rule("all", 10)]);
		await expect(takeAttempt(kv, [rule("tenant:c", 100), rule("all", 10)])).rejects.toMatchObject({ type: "RATE_LIMITED" });
	});

	it("a rule that is not enforced counts without refusing", async () => {
		const kv = new MemoryKeyValueStore();
		for (let i = 0; i < 5; i++) await takeAttempt(kv, [rule("acct", 2, { enforced: false })]);
		expect(await kv.get("throttle:acct")).toBe("5");
		await expect(takeAttempt(kv, [rule("acct", 2)])).rejects.toMatchObject({ type: "RATE_LIMITED" });
	});
});

describe("refuseSpent (only failures count)", () => {
	it("lets any number of attempts in flight through; only the failures counted after them refuse, with the time left", async () => {
		let now = 1_000_000;
		const kv = new MemoryKeyValueStore(() => now);
		const rules = [rule("site", 30)];
		// A site's 100 screens at once: checked, never counted.
		await expect(Promise.all(Array.from({ length: 100 }, () => refuseSpent(kv, rules)))).resolves.toHaveLength(100);
		for (let i = 0; i < 30; i++) await takeAttempt(kv, rules);
		now += 20_000;
		await expect(refuseSpent(kv, rules)).rejects.toMatchObject({ type: "RATE_LIMITED", data: { retryAfter: 40 } });
		expect(await kv.get("throttle:site")).toBe("30");
		now += 40_000;
		await expect(refuseSpent(kv, rules)).resolves.toBeUndefined();
		expect(await kv.get("throttle:site")).toBeNull();
	});
});

describe("giveBack and forgive", () => {
	it("an attempt given back does not count towards the limit", async () => {
		const kv = new MemoryKeyValueStore();
		for (let i = 0; i < 10; i++) {
			await takeAttempt(kv, [rule("ok", 3)]);
			await giveBack(kv, [rule("ok", 3)]);
		}
		await expect(takeAttempt(kv, [rule("ok", 3)])).resolves.toBeUndefined();
	});

	it("a successful sign-in forgets the account-and-address failures and gives back the rest", async () => {
		const kv = new MemoryKeyValueStore();
		const rules = THROTTLES.login("ann@example.com", "192.0.2.1");
		for (let i = 0; i < 3; i++) await takeAttempt(kv, rules);
		await forgive(kv, rules);
		expect(await kv.get("throttle:login:acct-ip:ann@example.com:192.0.2.1")).toBeNull();
		expect(await kv.get("throttle:login:ip:192.0.2.1")).toBe("2");
		expect(await kv.get("throttle:login:acct:ann@example.com")).toBe("2");
	});
});
