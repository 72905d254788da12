/** services/auth/passwords.ts: policy, common-password list, bcrypt with sha256 pre-hash, unknown-user path. */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import bcrypt from "bcryptjs";
import {
	PASSWORD_MAX,
	PASSWORD_MIN,
	hashPassword,
	initPasswords,
	isCommonPassword,
	loadCommonPasswords,
	passwordNeedsRehash,
	passwordProblem,
	verifyPassword
} from "../../services/auth/passwords";

const LIST_FILE = path.join(__dirname, "..", "..", "services", "auth", "common-passwords.txt");
const listText = readFileSync(LIST_FILE, "utf8");
const listLines = listText.split("\n");
const entries = listLines.filter(line => line.length > 0 && !line.startsWith("#"));

/** A random password of `length` characters from a 62-letter alphabet: never common. */
function randomPassword(length: number): string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	return Array.from(randomBytes(length), byte => alphabet[byte % alphabet.length]).join("");
}

const STRONG = "Zebra-Lantern-Quartz-77";
const COST = 4;

describe("common-passwords.txt", () => {
	it("starts with a header naming the source and licence", () => {
		const header = listLines.filter(line => line.startsWith("#")).join("\n");
		expect(listLines[0].startsWith("#")).toBe(true);
		expect(header).toMatch(/@zxcvbn-ts\/language-common/);
		expect(header).toMatch(/MIT/);
		expect(header).toMatch(/scripts\/build-password-list\.ts/);
	});

	it("holds 20 000 distinct lower-case entries without whitespace, one per line", () => {
		expect(entries).toHaveLength(20_000);
		expect(new Set(entries).size).toBe(entries.length);
		for (const entry of entries) {
			expect(entry).toBe(entry.toLowerCase());
			expect(entry).not.toMatch(/\s/);
		}
		expect(listText.endsWith("\n")).toBe(true);
		expect(listText).not.toContain("\r");
	});

	it("stays small enough to commit (< 300 KB)", () => {
		expect(Buffer.byteLength(listText)).toBeLessThan(300 * 1024);
	});

	it("is loaded once, with every entry", () => {
		expect(loadCommonPasswords()).toBe(20_000);
		expect(loadCommonPasswords()).toBe(20_000);
	});

	it("flags every entry of the file, in any case", () => {
		for (let i = 0; i < entries.length; i += 37) {
			expect(isCommonPassword(entries[i])).toBe(true);
			expect(isCommonPassword(entries[i].toUpperCase())).toBe(true);
		}
	});

	it("does not treat header lines as passwords", () => {
		expect(isCommonPassword(listLines[0])).toBe(false);
	});

	it("contains the entries the policy tests rely on", () => {
		for (const word of ["password", "qwertyuiop", "1234567890", "password123", "basketball", "manchester", "iloveyou", "monkey", "football"]) {
			expect(entries).toContain(word);
		}
		expect(entries).not.toContain("password123456");
	});
});

describe("isCommonPassword", () => {
	it.each(["qwertyuiop", "QWERTYUIOP", "QwErTyUiOp", "1234567890", "basketball", "Manchester", "password123", "PASSWORD123"])("%s is listed", word => {
		expect(isCommonPassword(word)).toBe(true);
	});

	it.each([
		["password123456", "list entry + digits"],
		["Password2024!", "list entry + digits + symbol"],
		["iloveyou!!!!", "list entry + symbols"],
		["Monkey_1986", "list entry + symbol + digits"],
		["football12345", "list entry + digits"],
		["aaaaaaaaaa", "one character repeated"],
		["0000000000000", "one digit repeated"],
		["!!!!!!!!!!!!", "one symbol repeated"],
		["abcabcabcabc", "a short unit repeated"],
		["passwordpassword", "a list entry twice"],
		["xk7Qxk7Qxk7Qxk7Q", "a 4-character unit repeated"],
		["abcdefghijkl", "a straight run"],
		["ZYXWVUTSRQPO", "a descending run"],
		["9876543210", "a descending digit run"],
		["abcdefghij2024", "a run + digits"],
		["aaaaaaaaaa1", "a repetition + a digit"]
	])("%s is common (%s)", word => {
		expect(isCommonPassword(word)).toBe(true);
	});

	it.each([
		STRONG,
		"correct horse battery staple",
		"x8302749182",
		"Tr0ub4dor&3-extended",
		"abcdefghij-and-more",
		"aaaaaaaaab-but-not-quite",
		randomPassword(16)
	])("%s is not common", word => {
		expect(isCommonPassword(word)).toBe(false);
	});

	it("judges a short base by itself only when it has 4 characters or more", () => {
		// "abc" is a straight run, but "abc" + ten random digits is not a pattern.
		expect(isCommonPassword("abc8302749182")).toBe(false);
		expect(isCommonPassword("abcd8302749182")).toBe(true);
	});

	it("answers false for an empty string or a non-string", () => {
		expect(isCommonPassword("")).toBe(false);
		expect(isCommonPassword(undefined as unknown as string)).toBe(false);
	});
});

describe("passwordProblem", () => {
	it("uses the API limits: 10 to 128 characters", () => {
		expect(PASSWORD_MIN).toBe(10);
		expect(PASSWORD_MAX).toBe(128);
	});

	it("length bounds: 9 → problem, 10 ok, 128 ok, 129 problem", () => {
		expect(passwordProblem(randomPassword(9))).toBe("must be at least 10 characters");
		expect(passwordProblem(randomPassword(10))).toBeNull();
		expect(passwordProblem(randomPassword(128))).toBeNull();
		expect(passwordProblem(randomPassword(129))).toBe("must be at most 128 characters");
		expect(passwordProblem("")).toBe("must be at least 10 characters");
	});

	it("counts characters (code points after NFC), not UTF-16 units or bytes", () => {
		const emoji = ["🦊", "🌲", "🚀", "🎈", "🍋", "🐙", "🧭", "🎲", "🪁", "🦉"];
		// 10 emoji = 20 UTF-16 units, 40 UTF-8 bytes: exactly the minimum.
		expect(passwordProblem(emoji.join(""))).toBeNull();
		expect(passwordProblem(emoji.slice(0, 9).join(""))).toBe("must be at least 10 characters");
		// "é" written as e + combining accent is one character after NFC.
		const ten = "cafe\u0301-lune7";
		expect([...ten].length).toBe(11);
		expect(passwordProblem(ten)).toBeNull();
		const nine = "cafe\u0301-lun7";
		expect([...nine].length).toBe(10);
		expect(passwordProblem(nine)).toBe("must be at least 10 characters");
		const long = "é".normalize("NFD").repeat(64) + randomPassword(64);
		expect([...long].length).toBe(192);
		expect(passwordProblem(long)).toBeNull();
	});

	it.each(["qwertyuiop", "1234567890", "Basketball", "password123", "password123456", "Password2024!", "aaaaaaaaaaaa", "abcdefghijk"])(
		"refuses %s as too common",
		word => {
			expect(passwordProblem(word)).toBe("is too common");
		}
	);

	it("refuses a password containing the email address or its local part", () => {
		const email = "alice.smith@example.com";
		expect(passwordProblem("alice.smith@example.com!", { email })).toBe("must not contain your email");
		expect(passwordProblem("ALICE.SMITH@EXAMPLE.COM-9", { email })).toBe("must not contain your email");
		expect(passwordProblem("zz-Alice.Smith-rocks-42", { email })).toBe("must not contain your email");
		expect(passwordProblem("zz-Alice.Smith-rocks-42", { email: "  Alice.Smith@Example.com " })).toBe("must not contain your email");
		expect(passwordProblem(STRONG, { email })).toBeNull();
	});

	it("does not refuse over a very short local part", () => {
		expect(passwordProblem("al-zebra-quartz-9", { email: "al@example.com" })).toBeNull();
		expect(passwordProblem("al@example.com-zebra", { email: "al@example.com" })).toBe("must not contain your email");
	});

	it("refuses a password containing the user's name", () => {
		const name = "Alice Cooper";
		expect(passwordProblem("alicecooper#Zebra9", { name })).toBe("must not contain your name");
		expect(passwordProblem("ALICE COOPER rules 9x", { name })).toBe("must not contain your name");
		expect(passwordProblem(STRONG, { name })).toBeNull();
		// Short names are not looked for.
		expect(passwordProblem("Al-zebra-quartz-9", { name: "Al" })).toBeNull();
	});

	it("ignores empty or missing context fields", () => {
		expect(passwordProblem(STRONG, {})).toBeNull();
		expect(passwordProblem(STRONG, { email: "", name: "" })).toBeNull();
		expect(passwordProblem(STRONG, { email: undefined, name: undefined })).toBeNull();
	});

	it("checks length before anything else", () => {
		expect(passwordProblem("password", { email: "password@x.io" })).toBe("must be at least 10 characters");
	});

	it.each([STRONG, "correct horse battery staple", "Lighthouse at 4am, tea cold", "ünïcødé-pässwörd-42", randomPassword(24)])("accepts %s", word => {
		expect(passwordProblem(word, { email: "bob.jones@example.com", name: "Bob Jones" })).toBeNull();
	});

	it("answers a message for a non-string instead of throwing", () => {
		expect(passwordProblem(undefined as unknown as string)).toBe("must be a string");
		expect(passwordProblem({ $gt: "" } as unknown as string)).toBe("must be a string");
	});
});

describe("hashPassword / verifyPassword", () => {
	it("round-trips at cost 4", async () => {
		const hash = await hashPassword(STRONG, COST);
		expect(hash).toMatch(/^\$2b\$04\$[./A-Za-z0-9]{53}$/);
		expect(await verifyPassword(STRONG, hash)).toBe(true);
	});

	it("refuses a wrong password, case changes and near misses", async () => {
		const hash = await hashPassword(STRONG, COST);
		for (const wrong of ["", "wrong-password", STRONG.toLowerCase(), STRONG + " ", " " + STRONG, STRONG.slice(0, -1)]) {
			expect(await verifyPassword(wrong, hash)).toBe(false);
		}
	});

	it("salts: the same password hashes differently each time", async () => {
		const [a, b] = await Promise.all([hashPassword(STRONG, COST), hashPassword(STRONG, COST)]);
		expect(a).not.toBe(b);
		expect(await verifyPassword(STRONG, a)).toBe(true);
		expect(await verifyPassword(STRONG, b)).toBe(true);
	});

	it("hashes bcrypt(base64(sha256(password))), never the raw password", async () => {
		const hash = await hashPassword(STRONG, COST);
		const preHashed = createHash("sha256").update(STRONG).digest("base64");
		expect(preHashed).toHaveLength(44);
		expect(await bcrypt.compare(preHashed, hash)).toBe(true);
		expect(await bcrypt.compare(STRONG, hash)).toBe(false);
	});

	it("keeps every character significant beyond bcrypt's 72 bytes", async () => {
		const base = randomPassword(100);
		const other = base.slice(0, 89) + (base[89] === "x" ? "y" : "x") + base.slice(90);
		expect(other).toHaveLength(100);
		expect(other).not.toBe(base);
		// Raw bcrypt would see only the first 72 bytes of either, and confuse them.
		expect(bcrypt.truncates(base)).toBe(true);
		expect(await bcrypt.compare(other, await bcrypt.hash(base, COST))).toBe(true);
		// With the pre-hash they do not verify against each other.
		const hash = await hashPassword(base, COST);
		expect(await verifyPassword(base, hash)).toBe(true);
		expect(await verifyPassword(other, hash)).toBe(false);
		expect(await verifyPassword(other, await hashPassword(other, COST))).toBe(true);
	});

	it("handles multi-byte passwords far beyond 72 bytes", async () => {
		const a = "🦊".repeat(127) + "🌲";
		const b = "🦊".repeat(128);
		expect(Buffer.byteLength(a)).toBe(512);
		expect(passwordProblem(a)).toBeNull();
		const hash = await hashPassword(a, COST);
		expect(await verifyPassword(a, hash)).toBe(true);
		expect(await verifyPassword(b, hash)).toBe(false);
	});

	it("treats canonically equivalent Unicode (NFC/NFD) as the same password", async () => {
		const composed = "Crème-brûlée-42".normalize("NFC");
		const decomposed = composed.normalize("NFD");
		expect(decomposed).not.toBe(composed);
		const hash = await hashPassword(decomposed, COST);
		expect(await verifyPassword(composed, hash)).toBe(true);
	});

	it("refuses invalid costs", async () => {
		for (const cost of [3, 32, 4.5, Number.NaN, -1]) {
			await expect(hashPassword(STRONG, cost)).rejects.toThrow(RangeError);
		}
		await expect(hashPassword(undefined as unknown as string, COST)).rejects.toThrow(TypeError);
	});

	it("uses the requested cost", async () => {
		expect(bcrypt.getRounds(await hashPassword(STRONG, 5))).toBe(5);
	});
});

describe("verifyPassword without a user", () => {
	let compare: jest.SpyInstance;

	beforeEach(() => {
		compare = jest.spyOn(bcrypt, "compare");
	});
	afterEach(() => compare.mockRestore());

	it("returns false after a real bcrypt comparison against a dummy hash", async () => {
		expect(await verifyPassword(STRONG, null, COST)).toBe(false);
		expect(compare).toHaveBeenCalledTimes(1);
		const [candidate, dummy] = compare.mock.calls[0] as [string, string];
		expect(candidate).toHaveLength(44);
		expect(dummy).toMatch(/^\$2b\$04\$/);
	});

	it("compares at the cost it is given, with one fixed dummy hash per cost", async () => {
		await verifyPassword("a", null, 5);
		await verifyPassword("b", null, 5);
		const dummies = compare.mock.calls.map(call => call[1] as string);
		expect(dummies).toHaveLength(2);
		expect(dummies[0]).toBe(dummies[1]);
		expect(bcrypt.getRounds(dummies[0])).toBe(5);
	});

	it("defaults to the cost given to initPasswords", async () => {
		await initPasswords(COST);
		expect(await verifyPassword("anything at all", null)).toBe(false);
		expect(bcrypt.getRounds(compare.mock.calls[0][1] as string)).toBe(COST);
	});

	it("never lets the dummy hash match, whatever is typed", async () => {
		for (const guess of ["", "marquee dummy password: never matches a real login", STRONG]) {
			expect(await verifyPassword(guess, null, COST)).toBe(false);
		}
	});

	it("treats a value that is not a bcrypt hash like an unknown user", async () => {
		const realLooking = await hashPassword(STRONG, COST);
		const bad = ["", "not-a-hash", "$2b$04$short", STRONG, "$argon2id$v=19$m=65536,t=3,p=4$abc$def", realLooking.replace("$04$", "$99$"), realLooking.replace("$04$", "$03$")];
		compare.mockClear();
		for (const value of bad) {
			expect(await verifyPassword(STRONG, value, COST)).toBe(false);
		}
		expect(compare).toHaveBeenCalledTimes(bad.length);
		for (const call of compare.mock.calls) expect(bcrypt.getRounds(call[1] as string)).toBe(COST);
	});

	it("returns false for a non-string password, still after one comparison", async () => {
		const hash = await hashPassword(STRONG, COST);
		compare.mockClear();
		expect(await verifyPassword(undefined as unknown as string, hash, COST)).toBe(false);
		expect(compare).toHaveBeenCalledTimes(1);
	});

	it("refuses an invalid dummy cost", async () => {
		await expect(verifyPassword(STRONG, null, 99)).rejects.toThrow(RangeError);
	});
});

describe("initPasswords and passwordNeedsRehash", () => {
	it("initPasswords loads the list and refuses bad costs", async () => {
		await expect(initPasswords(COST)).resolves.toBeUndefined();
		await expect(initPasswords(2)).rejects.toThrow(RangeError);
	});

	it("asks for a rehash when the stored cost is lower than configured, or the value is not bcrypt", async () => {
		const hash = await hashPassword(STRONG, COST);
		expect(passwordNeedsRehash(hash, COST)).toBe(false);
		expect(passwordNeedsRehash(hash, 3)).toBe(false);
		expect(passwordNeedsRehash(hash, 12)).toBe(true);
		expect(passwordNeedsRehash("plaintext", COST)).toBe(true);
	});
});
