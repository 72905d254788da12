/**
 * The embedded key/value store keeps the throttles' counters across a restart (shared/kv-journal.ts):
 * a store reopened on the same file — after a close, or after none (a killed process) — holds
 * the same counters with the same windows, and nothing else. Real files in a temporary
 * directory; a controllable clock.
 */
import fs from "node:fs";
import path from "node:path";
import { MemoryKeyValueStore, sharedKeyValueStore, closeSharedKeyValueStores } from "../../shared/kv";
import { KvJournal } from "../../shared/kv-journal";
import { isThrottleKey, takeAttempt, THROTTLES } from "../../shared/throttle";
import { tempDir } from "../helpers/platform";

const MINUTE = 60_000;

describe("the embedded store's throttle journal", () => {
	let dir: string;
	let file: string;
	let now: number;
	const clock = () => now;
	/** A store on the journal file, as a process starting on this DATA_DIR opens it. */
	const open = () => new MemoryKeyValueStore(clock, new KvJournal(file, isThrottleKey));
	const lines = () => fs.readFileSync(file, "utf8").split("\n").filter(Boolean);

	beforeEach(() => {
		dir = tempDir("marquee-kv-journal-");
		file = path.join(dir, "kv", "default.throttles.jsonl");
		now = 1_800_000_000_000;
	});

	it("a killed process's counters come back with their windows; everything else starts empty", async () => {
		const before = open();
		for (let i = 0; i < 3; i++) await before.incr("throttle:login:acct-ip:a@example.com:10.0.0.1", 15 * MINUTE);
		await before.decr("throttle:login:acct-ip:a@example.com:10.0.0.1");
		await before.incr("throttle:pairing-code:all", 60 * MINUTE);
		await before.set("presence:d1", "online", MINUTE);
		await before.incr("rl:device:d1", MINUTE);
		// No close: the process was killed.

		now += 5 * MINUTE;
		const after = open();
		await expect(after.get("throttle:login:acct-ip:a@example.com:10.0.0.1")).resolves.toBe("2");
		await expect(after.get("throttle:pairing-code:all")).resolves.toBe("1");
		await expect(after.get("presence:d1")).resolves.toBeNull();
		await expect(after.get("rl:device:d1")).resolves.toBeNull();
		// The window kept its end: 10 of its 15 minutes are left.
		await expect(after.incr("throttle:login:acct-ip:a@example.com:10.0.0.1", 15 * MINUTE)).resolves.toEqual({ count: 3, ttlMs: 10 * MINUTE });
		now += 10 * MINUTE;
		await expect(after.get("throttle:login:acct-ip:a@example.com:10.0.0.1")).resolves.toBeNull();
	});

	it("a throttle refusing before a restart refuses after it, until its window ends", async () => {
		const rules = THROTTLES.login("victim@example.com", "203.0.113.9");
		const before = open();
		for (let i = 0; i < 5; i++) await takeAttempt(before, rules);
		await expect(takeAttempt(before, rules)).rejects.toMatchObject({ code: 429 });
		await before.close();

		now += MINUTE;
		const after = open();
		await expect(takeAttempt(after, rules)).rejects.toMatchObject({ code: 429, data: { retryAfter: 14 * 60 } });
		now += 14 * MINUTE;
		await expect(takeAttempt(after, rules)).resolves.toBeUndefined();
	});

	it("deletions and released locks stay deleted", async () => {
		const before = open();
		await before.incr("throttle:forgiven", MINUTE);
		await before.del("throttle:forgiven");
		await before.acquireLock("throttle:lock", "owner", MINUTE);
		await before.releaseLock("throttle:lock", "owner");
		await before.set("throttle:reset", "5", MINUTE);
		await before.set("throttle:reset", "0", MINUTE);
		const after = open();
		await expect(after.get("throttle:forgiven")).resolves.toBeNull();
		await expect(after.get("throttle:lock")).resolves.toBeNull();
		await expect(after.get("throttle:reset")).resolves.toBe("0");
	});

	it("opening drops what expired and rewrites the file with the live entries only", async () => {
		const before = open();
		await before.incr("throttle:short", MINUTE);
		await before.incr("throttle:long", 60 * MINUTE);
		for (let i = 0; i < 50; i++) await before.incr("throttle:long", 60 * MINUTE);
		expect(lines()).toHaveLength(52);
		now += 2 * MINUTE;
		const after = open();
		expect(lines()).toEqual([JSON.stringify(["throttle:long", "51", now - 2 * MINUTE + 60 * MINUTE])]);
		await expect(after.get("throttle:short")).resolves.toBeNull();
		await expect(after.get("throttle:long")).resolves.toBe("51");
	});

	it("skips a torn last line and lines that are not its own", async () => {
		fs.mkdirSync(path.dirname(file), { recursive: true });
		const valid = JSON.stringify(["throttle:kept", "4", now + MINUTE]);
		fs.writeFileSync(
			file,
			[
				valid,
				"not json",
				JSON.stringify({ key: "throttle:object" }),
				JSON.stringify(["throttle:bad-expiry", "1", "soon"]),
				JSON.stringify(["throttle:number-value", 7, null]),
				JSON.stringify(["presence:foreign", "online", null]),
				JSON.stringify(["__proto__", "1", null]),
				JSON.stringify(["throttle:__proto__", "2", now + MINUTE]),
				'["throttle:torn", "9", 18'
			].join("\n")
		);
		const store = open();
		await expect(store.get("throttle:kept")).resolves.toBe("4");
		await expect(store.get("throttle:__proto__")).resolves.toBe("2");
		for (const key of ["throttle:object", "throttle:bad-expiry", "throttle:number-value", "presence:foreign", "__proto__", "throttle:torn"]) {
			await expect(store.get(key)).resolves.toBeNull();
		}
		expect(lines()).toHaveLength(2);
	});

	it("rewrites the file once its lines far outgrow the live counters, losing none", async () => {
		const store = open();
		for (let i = 0; i < 12_000; i++) await store.incr(`throttle:k${i % 3}`, 60 * MINUTE);
		expect(lines().length).toBeLessThan(2_100);
		const after = open();
		for (const key of ["throttle:k0", "throttle:k1", "throttle:k2"]) await expect(after.get(key)).resolves.toBe("4000");
	});

	it("the change that sets off a rewrite is in the rewritten file (a count, or a removal)", async () => {
		const counted = open();
		for (let i = 0; i < 10_000; i++) await counted.incr("throttle:a", 60 * MINUTE);
		await counted.incr("throttle:victim", 60 * MINUTE); // line 10 001: the rewrite
		expect(lines().length).toBeLessThan(10);
		await expect(open().get("throttle:victim")).resolves.toBe("1");

		fs.rmSync(file);
		const removing = open();
		await removing.set("throttle:forgiven", "5", 60 * MINUTE);
		for (let i = 0; i < 9_999; i++) await removing.incr("throttle:a", 60 * MINUTE);
		await removing.del("throttle:forgiven"); // line 10 001: the rewrite
		expect(lines().length).toBeLessThan(10);
		await expect(open().get("throttle:forgiven")).resolves.toBeNull();
	});

	it("a write the disk refuses answers 503 and counts nothing", async () => {
		const store = open();
		await store.incr("throttle:t", MINUTE);
		// The journal's file closed underneath it: the next append fails.
		const fd = (store as unknown as { journal: { fd: number } }).journal.fd;
		fs.closeSync(fd);
		await expect(store.incr("throttle:t", MINUTE)).rejects.toMatchObject({ code: 503 });
		await expect(store.get("throttle:t")).resolves.toBe("1");
	});

	it("after a write that left part of its line (a full disk), the next change starts a line of its own", async () => {
		const store = open();
		await store.incr("throttle:t", MINUTE);
		const journal = (store as unknown as { journal: { fd: number } }).journal;
		const writable = journal.fd;
		journal.fd = fs.openSync(file, "r"); // appends fail…
		await expect(store.incr("throttle:t", MINUTE)).rejects.toMatchObject({ code: 503 });
		fs.appendFileSync(file, '["throttle:t","2",18'); // …after writing part of the line
		fs.closeSync(journal.fd);
		journal.fd = writable; // the disk has room again
		await store.incr("throttle:u", MINUTE);
		const after = open();
		await expect(after.get("throttle:u")).resolves.toBe("1");
		await expect(after.get("throttle:t")).resolves.toBe("1");
	});

	it("the hourly sweep drops expired entries from the file (they name emails and addresses), and only then rewrites it", async () => {
		const store = open();
		const journal = (store as unknown as { journal: KvJournal }).journal;
		await store.incr("throttle:login:acct-ip:gone@example.com:198.51.100.7", MINUTE);
		await store.incr("throttle:long", 60 * MINUTE);
		const inode = () => fs.statSync(file).ino;
		const first = inode();
		journal.sweep(); // nothing expired yet: the file stays as it is
		expect(inode()).toBe(first);
		expect(lines()).toHaveLength(2);
		now += 2 * MINUTE;
		journal.sweep();
		expect(fs.readFileSync(file, "utf8")).not.toContain("gone@example.com");
		expect(lines()).toEqual([JSON.stringify(["throttle:long", "1", now - 2 * MINUTE + 60 * MINUTE])]);
		// It goes on appending to the rewritten file.
		await store.incr("throttle:long", 60 * MINUTE);
		await expect(open().get("throttle:long")).resolves.toBe("2");
	});

	it("a rewrite whose closing of the old file reports an error goes on appending to the new one", async () => {
		const store = open();
		await store.incr("throttle:short", MINUTE);
		await store.incr("throttle:kept", 60 * MINUTE);
		now += 2 * MINUTE;
		const close = jest.spyOn(fs, "closeSync").mockImplementationOnce(() => {
			throw Object.assign(new Error("EIO: i/o error, close"), { code: "EIO" });
		});
		try {
			(store as unknown as { journal: KvJournal }).journal.sweep();
			expect(close).toHaveBeenCalledTimes(1);
		} finally {
			close.mockRestore();
		}
		await expect(store.incr("throttle:kept", 60 * MINUTE)).resolves.toMatchObject({ count: 2 });
		await expect(open().get("throttle:kept")).resolves.toBe("2");
	});

	it("a rewrite the disk refuses loses no change and is tried again later", async () => {
		const store = open();
		for (let i = 0; i < 10_000; i++) await store.incr("throttle:a", 60 * MINUTE);
		// The temporary file cannot be created: a directory stands where it would go.
		fs.mkdirSync(`${file}.${process.pid}.tmp`);
		await expect(store.incr("throttle:victim", 60 * MINUTE)).resolves.toEqual({ count: 1, ttlMs: 60 * MINUTE });
		expect(lines().length).toBeGreaterThan(10_000);
		fs.rmdirSync(`${file}.${process.pid}.tmp`);
		// The next try comes another 10 000 lines on.
		for (let i = 0; i < 10_001; i++) await store.incr("throttle:a", 60 * MINUTE);
		expect(lines().length).toBeLessThan(10);
		const after = open();
		await expect(after.get("throttle:victim")).resolves.toBe("1");
		await expect(after.get("throttle:a")).resolves.toBe("20001");
	});
});

describe("sharedKeyValueStore without Redis", () => {
	afterEach(() => closeSharedKeyValueStores());

	it("journals throttles under DATA_DIR/kv, per namespace, outside tests", async () => {
		const dataDir = tempDir("marquee-kv-shared-");
		const store = sharedKeyValueStore({ redisUrl: null, namespace: "kvj-a", dataDir, nodeEnv: "development" });
		await store.incr("throttle:register:ip:127.0.0.1", MINUTE);
		await store.set("manifest:d1", "{}");
		const journal = path.join(dataDir, "kv", "kvj-a.throttles.jsonl");
		expect(fs.readFileSync(journal, "utf8")).toContain("throttle:register:ip:127.0.0.1");
		expect(fs.readFileSync(journal, "utf8")).not.toContain("manifest:d1");
	});

	it("keeps memory alone under test, like the database", async () => {
		const dataDir = tempDir("marquee-kv-shared-");
		const store = sharedKeyValueStore({ redisUrl: null, namespace: "kvj-b", dataDir, nodeEnv: "test" });
		await store.incr("throttle:register:ip:127.0.0.1", MINUTE);
		expect(fs.existsSync(path.join(dataDir, "kv"))).toBe(false);
	});
});
