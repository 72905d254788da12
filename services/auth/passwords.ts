/**
 * User passwords: the policy (`passwordProblem`), hashing (`hashPassword`) and checking
 * (`verifyPassword`).
 *
 * Policy (API.md): 10–128 characters (Unicode code points, after NFC normalisation), not a common
 * password, not containing the user's email or name. No composition rules (NIST SP 800-63B).
 *
 * Hashing: bcrypt (bcryptjs) over base64(sha256(NFC(password))). bcrypt reads only the first 72
 * bytes of its input, and a 128-character password can be up to 512 UTF-8 bytes, so without the
 * pre-hash two long passwords sharing their first 72 bytes would be interchangeable. The sha256
 * digest keeps every character significant; base64 makes it 44 printable ASCII bytes (under 72,
 * and without the NUL bytes a raw digest could hold, where some bcrypt implementations stop).
 * This is the construction Dropbox described for its password storage (a hash before bcrypt).
 * The stored value is a plain bcrypt string (`$2b$<cost>$…`); every hash made here is pre-hashed.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import bcrypt from "bcryptjs";

export const PASSWORD_MIN = 10;
export const PASSWORD_MAX = 128;
/** bcryptjs accepts costs 4–31; config allows 4–15 (≥ 12 in production). */
export const BCRYPT_COST_MIN = 4;
export const BCRYPT_COST_MAX = 31;
/** Cost of the dummy hash when neither `initPasswords` nor the call names one (the production default). */
const DEFAULT_DUMMY_COST = 12;

const LIST_FILE = "common-passwords.txt";
/**
 * Where the list may be: next to this file (tsx, ts-jest, or a build that copied it into dist),
 * else — when running compiled from dist/services/auth — the source copy in services/auth.
 * The Docker runtime image ships only dist/, so it must copy the file next to passwords.js.
 */
const LIST_CANDIDATES = [path.join(__dirname, LIST_FILE), path.resolve(__dirname, "..", "..", "..", "services", "auth", LIST_FILE)];

// ---- common passwords ----

let commonPasswords: Set<string> | null = null;

function normalise(password: string): string {
	return password.normalize("NFC");
}

/**
 * Loads common-passwords.txt once (later calls are free) and returns how many entries it holds.
 * Lines starting with `#` and blank lines are skipped. Throws when the file is missing or empty —
 * the policy fails closed rather than silently accepting every password. Call it when the auth
 * service starts so a missing file stops the service, not a user's sign-up.
 */
export function loadCommonPasswords(): number {
	if (commonPasswords !== null) return commonPasswords.size;
	const file = LIST_CANDIDATES.find(candidate => existsSync(candidate));
	if (file === undefined) throw new Error(`${LIST_FILE} not found (looked in ${LIST_CANDIDATES.join(", ")})`);
	const entries = new Set<string>();
	for (const line of readFileSync(file, "utf8").split(/\r?\n/)) {
		if (line.length === 0 || line.startsWith("#")) continue;
		entries.add(normalise(line).toLowerCase());
	}
	if (entries.size === 0) throw new Error(`${file} holds no passwords`);
	commonPasswords = entries;
	return entries.size;
}

function listed(word: string): boolean {
	if (commonPasswords === null) loadCommonPasswords();
	return (commonPasswords as Set<string>).has(word);
}

/** The whole string is one unit shorter than PASSWORD_MIN repeated: "aaaaaaaaaa", "abcabcabcabc", "passwordpassword". */
function isRepeatedUnit(word: string): boolean {
	const chars = [...word];
	for (let unit = 1; unit < PASSWORD_MIN && unit * 2 <= chars.length; unit++) {
		if (chars.length % unit !== 0) continue;
		if (chars.every((char, i) => char === chars[i % unit])) return true;
	}
	return false;
}

/** Every code point is one more (or every one less) than the one before: "abcdefghij", "9876543210". */
function isStraightRun(word: string): boolean {
	const codes = [...word].map(char => char.codePointAt(0) as number);
	if (codes.length < 3) return false;
	const step = codes[1] - codes[0];
	if (step !== 1 && step !== -1) return false;
	return codes.every((code, i) => i === 0 || code - codes[i - 1] === step);
}

/** Digits and ASCII symbols people tack on: "2024", "!", "123!". */
const SUFFIX = /[0-9!-/:-@[-`{-~]+$/;
/** A base shorter than this is not judged by itself ("x" + random digits is not "common"). */
const MIN_BASE = 4;

function isTrivial(word: string): boolean {
	return listed(word) || isRepeatedUnit(word) || isStraightRun(word);
}

/**
 * Whether the password counts as common, compared case-insensitively (lower-cased NFC):
 *   1. it is in common-passwords.txt (the 20 000 most common passwords, see its header); or
 *   2. it is a trivial pattern: one unit of fewer than 10 characters repeated ("aaaaaaaaaa",
 *      "abcabcabcabc", "passwordpassword"), or a straight run ("abcdefghij", "9876543210"); or
 *   3. removing trailing digits and ASCII symbols leaves (1) or (2) of at least 4 characters:
 *      "password123456", "Monkey2024!", "aaaaaaaaaa1".
 * Not covered (kept simple): leet substitutions, prefixes, keyboard walks not in the list.
 */
export function isCommonPassword(password: string): boolean {
	if (typeof password !== "string") return false;
	const word = normalise(password).toLowerCase();
	if (word.length === 0) return false;
	if (isTrivial(word)) return true;
	const base = word.replace(SUFFIX, "");
	return base !== word && [...base].length >= MIN_BASE && isTrivial(base);
}

// ---- policy ----

/** Shortest email local part or name that is looked for inside a password. */
const MIN_PERSONAL = 4;

/**
 * null when the password is acceptable, else what is wrong with it, worded to follow
 * "Password …": "must be at least 10 characters", "must be at most 128 characters",
 * "is too common", "must not contain your email", "must not contain your name".
 * The email check covers the whole address and its local part (≥ 4 characters); the name check
 * the whole name without spaces (≥ 4 characters). All comparisons ignore case.
 */
export function passwordProblem(password: string, context?: { email?: string; name?: string }): string | null {
	if (typeof password !== "string") return "must be a string";
	const normalised = normalise(password);
	const length = [...normalised].length;
	if (length < PASSWORD_MIN) return `must be at least ${PASSWORD_MIN} characters`;
	if (length > PASSWORD_MAX) return `must be at most ${PASSWORD_MAX} characters`;
	if (isCommonPassword(normalised)) return "is too common";
	const lower = normalised.toLowerCase();
	const email = typeof context?.email === "string" ? normalise(context.email).trim().toLowerCase() : "";
	if (email.length > 0) {
		const at = email.lastIndexOf("@");
		const local = at > 0 ? email.slice(0, at) : email;
		if (lower.includes(email) || ([...local].length >= MIN_PERSONAL && lower.includes(local))) return "must not contain your email";
	}
	const name = typeof context?.name === "string" ? normalise(context.name).toLowerCase().replace(/\s+/g, "") : "";
	if ([...name].length >= MIN_PERSONAL && lower.replace(/\s+/g, "").includes(name)) return "must not contain your name";
	return null;
}

// ---- hashing ----

/** What bcrypt actually sees: 44 ASCII bytes, whatever the password's length. */
function preHash(password: string): string {
	return createHash("sha256").update(normalise(password), "utf8").digest("base64");
}

function checkCost(cost: number): void {
	if (!Number.isInteger(cost) || cost < BCRYPT_COST_MIN || cost > BCRYPT_COST_MAX) {
		throw new RangeError(`bcrypt cost must be a whole number from ${BCRYPT_COST_MIN} to ${BCRYPT_COST_MAX}`);
	}
}

const BCRYPT_HASH = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

/** The cost of a well-formed bcrypt hash bcryptjs can check, else null. */
function bcryptCost(hash: unknown): number | null {
	const match = typeof hash === "string" ? BCRYPT_HASH.exec(hash) : null;
	if (match === null) return null;
	const cost = Number(match[1]);
	return cost >= BCRYPT_COST_MIN && cost <= BCRYPT_COST_MAX ? cost : null;
}

let configuredDummyCost: number | null = null;
const dummyHashes = new Map<number, Promise<string>>();

function dummyHash(cost: number): Promise<string> {
	let hash = dummyHashes.get(cost);
	if (hash === undefined) {
		hash = bcrypt.hash(preHash("marquee dummy password: never matches a real login"), cost);
		dummyHashes.set(cost, hash);
		// A failed computation is not cached.
		hash.catch(() => dummyHashes.delete(cost));
	}
	return hash;
}

/**
 * Call once when the auth service starts, with config.bcryptCost: loads the common-password list
 * (throws when it is missing) and computes the dummy hash that unknown-user logins are checked
 * against, at that cost, so that the first such login is not slower than the others.
 */
export async function initPasswords(cost: number): Promise<void> {
	checkCost(cost);
	loadCommonPasswords();
	configuredDummyCost = cost;
	await dummyHash(cost);
}

/** bcrypt hash of the (pre-hashed) password. Does not apply the policy: call passwordProblem first. */
export async function hashPassword(password: string, cost: number): Promise<string> {
	if (typeof password !== "string") throw new TypeError("hashPassword: password must be a string");
	checkCost(cost);
	return bcrypt.hash(preHash(password), cost);
}

/**
 * Whether `password` matches `hash`. With `hash` null (no such user) — or a value that is not a
 * bcrypt hash — it still runs one full bcrypt comparison against a dummy hash and then answers
 * false, so the time taken does not tell whether the email exists. The dummy's cost is `dummyCost`
 * when given, else the one passed to initPasswords, else 12; keep it equal to BCRYPT_COST.
 */
export async function verifyPassword(password: string, hash: string | null, dummyCost?: number): Promise<boolean> {
	const candidate = preHash(typeof password === "string" ? password : "");
	if (typeof hash === "string" && bcryptCost(hash) !== null && typeof password === "string") {
		return bcrypt.compare(candidate, hash);
	}
	const cost = dummyCost ?? configuredDummyCost ?? DEFAULT_DUMMY_COST;
	checkCost(cost);
	await bcrypt.compare(candidate, await dummyHash(cost));
	return false;
}

/** Whether a stored hash should be replaced after a successful login (its cost is below `cost`, or it is not bcrypt). */
export function passwordNeedsRehash(hash: string, cost: number): boolean {
	const stored = bcryptCost(hash);
	return stored === null || stored < cost;
}
