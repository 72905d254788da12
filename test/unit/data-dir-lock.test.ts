/**
 * One process owns a DATA_DIR (shared/data-dir-lock.ts): the lock is taken once, refused while a
 * live process holds it, and taken over from a killed one — whose pid may be dead, or alive but
 * another process's now. Real files, real processes (this one, its parent, a child that ended).
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { assertDataDirFree, DataDirBusyError, lockDataDir, lockFilePath, lockHolder, processAlive, startTimeOf } from "../../shared/data-dir-lock";
import { pidFilePath, runningPlatformPid } from "../../shared/backup";
import { tempDir } from "../helpers/platform";
import { until } from "../helpers/until";

/** A lock file as another process would have left it. */
function leave(dataDir: string, content: unknown): void {
	fs.writeFileSync(lockFilePath(dataDir), typeof content === "string" ? content : JSON.stringify(content));
}

/** A pid that belonged to a process that has ended. */
function deadPid(): number {
	const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
	return Number(child.stdout);
}

/** Checks that read processes' start times and states from /proc. */
const onLinux = fs.existsSync("/proc/self/stat") ? it : it.skip;

describe("the DATA_DIR lock", () => {
	let dataDir: string;
	beforeEach(() => {
		dataDir = tempDir("marquee-lock-");
	});

	it("is taken by a process, names it, and is gone once released", () => {
		const release = lockDataDir(dataDir, "the platform", "or give this one another DATA_DIR");
		expect(JSON.parse(fs.readFileSync(lockFilePath(dataDir), "utf8"))).toEqual({ pid: process.pid, started: startTimeOf(process.pid), boot: expect.any(Number), what: "the platform" });
		expect((fs.statSync(lockFilePath(dataDir)).mode & 0o777).toString(8)).toBe("600");
		// This process's own lock does not stand in its way.
		expect(lockHolder(dataDir)).toBeNull();
		release();
		expect(fs.existsSync(lockFilePath(dataDir))).toBe(false);
	});

	it("is refused while another live process holds it, with who and what to do", () => {
		const parent = process.ppid;
		leave(dataDir, { pid: parent, started: startTimeOf(parent), what: "npm run admin" });
		expect(() => lockDataDir(dataDir, "the platform", "or give this one another DATA_DIR")).toThrow(
			new DataDirBusyError(`npm run admin is running on ${dataDir} (pid ${parent}): stop it first, or give this one another DATA_DIR`)
		);
		expect(() => assertDataDirFree(dataDir, "restore replaces its data")).toThrow(DataDirBusyError);
		// The holder's lock is left as it was.
		expect(JSON.parse(fs.readFileSync(lockFilePath(dataDir), "utf8"))).toMatchObject({ pid: parent, what: "npm run admin" });
	});

	onLinux("is taken over from a killed process: its pid dead, or alive but another process's now, or from an earlier boot", () => {
		leave(dataDir, { pid: deadPid(), started: "12345", what: "the platform" });
		lockDataDir(dataDir, "the platform", "x")();

		// The parent is alive, but it is not the process that took the lock (it started at another time).
		leave(dataDir, { pid: process.ppid, started: "1", what: "the platform" });
		expect(lockHolder(dataDir)).toBeNull();
		lockDataDir(dataDir, "npm run admin", "x")();

		// A lock naming this very pid is from an earlier life of a restarted container.
		leave(dataDir, { pid: process.pid, started: "1", what: "the platform" });
		lockDataDir(dataDir, "the platform", "x")();

		// The parent, with its own start time, but the machine has rebooted since the lock was taken.
		const boot = Math.round(Date.now() / 1000 - os.uptime());
		leave(dataDir, { pid: process.ppid, started: startTimeOf(process.ppid), boot, what: "the platform" });
		expect(lockHolder(dataDir)).toMatchObject({ pid: process.ppid });
		leave(dataDir, { pid: process.ppid, started: startTimeOf(process.ppid), boot: boot - 3600, what: "the platform" });
		expect(lockHolder(dataDir)).toBeNull();
	});

	it("two processes taking over one stale lock: the one that finds the other's takeover under way waits its turn", () => {
		const stale = { pid: deadPid(), started: "1", what: "the platform" };
		leave(dataDir, stale);
		// Another process judged it stale too and is replacing it this moment.
		fs.writeFileSync(`${lockFilePath(dataDir)}.takeover`, "4242");
		expect(() => lockDataDir(dataDir, "the platform", "x")).toThrow(`${lockFilePath(dataDir)} is being taken by another process at this moment: try again`);
		expect(JSON.parse(fs.readFileSync(lockFilePath(dataDir), "utf8"))).toEqual(stale);
		// That process died mid-takeover: its guard is removed once old, and the lock taken.
		const old = new Date(Date.now() - 60_000);
		fs.utimesSync(`${lockFilePath(dataDir)}.takeover`, old, old);
		lockDataDir(dataDir, "npm run admin", "x")();
		expect(fs.existsSync(`${lockFilePath(dataDir)}.takeover`)).toBe(false);
	});

	it("a lock this user cannot read is held by someone: refused, never removed", () => {
		fs.mkdirSync(lockFilePath(dataDir)); // reading it fails (EISDIR), as another user's 0600 lock fails with EACCES
		expect(() => lockDataDir(dataDir, "the platform", "or give this one another DATA_DIR")).toThrow(
			`another process holds ${lockFilePath(dataDir)} (it is being written, or this user cannot read it): stop it first, or give this one another DATA_DIR`
		);
		expect(() => assertDataDirFree(dataDir, "restore replaces its data")).toThrow(DataDirBusyError);
		expect(fs.statSync(lockFilePath(dataDir)).isDirectory()).toBe(true);
	});

	it("names its holder in plain words only", () => {
		leave(dataDir, { pid: process.ppid, what: "\u001b[2Jevil\u0007" });
		expect(lockHolder(dataDir)).toMatchObject({ what: "another process" });
	});

	onLinux("a zombie holds nothing: a killed process whose exit status nobody has collected yet", async () => {
		// sh starts a short child and becomes `sleep 5` itself, which never collects the child's status.
		const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 60"], { stdio: ["ignore", "pipe", "ignore"] });
		try {
			const zombie = Number(await new Promise<string>(resolve => parent.stdout.once("data", chunk => resolve(String(chunk).trim()))));
			const state = () => {
				try {
					return fs.readFileSync(`/proc/${zombie}/stat`, "utf8").split(") ")[1]?.[0];
				} catch {
					return undefined;
				}
			};
			await until("the child a zombie", () => state() === "Z");
			expect(processAlive(zombie)).toBe(false);
			leave(dataDir, { pid: zombie, started: startTimeOf(zombie), what: "the platform" });
			expect(lockHolder(dataDir)).toBeNull();
			expect(processAlive(parent.pid ?? 0)).toBe(true);
		} finally {
			parent.kill("SIGKILL");
		}
	});

	it("a lock file that cannot be parsed is being written: busy for a few seconds, then stale", () => {
		leave(dataDir, "");
		expect(() => lockDataDir(dataDir, "the platform", "try again")).toThrow(`another process holds ${lockFilePath(dataDir)} (it is being written, or this user cannot read it): stop it first, try again`);
		const old = new Date(Date.now() - 60_000);
		fs.utimesSync(lockFilePath(dataDir), old, old);
		lockDataDir(dataDir, "the platform", "x")();
		leave(dataDir, '{"pid":"1; rm -rf /"}');
		fs.utimesSync(lockFilePath(dataDir), old, old);
		expect(lockHolder(dataDir)).toBeNull();
	});

	onLinux("the backup signals the pid in platform.pid only when that process holds the lock", () => {
		const parent = process.ppid;
		fs.writeFileSync(pidFilePath(dataDir), `${parent}\n`);
		// A pid file left by a crash, its number now another live program's: no signal for it.
		expect(runningPlatformPid(dataDir)).toBeNull();
		leave(dataDir, { pid: parent, started: startTimeOf(parent), what: "the platform" });
		expect(runningPlatformPid(dataDir)).toBe(parent);
		leave(dataDir, { pid: parent, started: "1", what: "the platform" });
		expect(runningPlatformPid(dataDir)).toBeNull();
	});
});
