/**
 * One process owns a DATA_DIR in the embedded mode: the platform (`npm start`) or an operator
 * command that runs its services (`npm run admin`). A second one on the same files would compact
 * NeDB files and the throttle journal under the first (which then appends to a file no longer
 * there) and overwrite what the first writes.
 *
 * The owner holds DATA_DIR/platform.lock, created exclusively (O_EXCL) before any other file is
 * opened and removed when it exits. The file names the owner's pid, the time the system started
 * that process (Linux, /proc/<pid>/stat) and when the machine started: a lock left by a killed
 * process is taken over when its pid is dead, a zombie, or alive but another process's now (the
 * pid was reused, a container restarted and numbers its processes from 1 again, the machine
 * rebooted). It guards processes of one machine (one pid namespace): two containers sharing a
 * volume do not see each other's processes.
 *
 * (DATA_DIR/platform.pid, shared/backup.ts, is something else: written once the platform is ready,
 * it tells `npm run backup` whom to ask for a snapshot.)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const LOCK_FILE = "platform.lock";

/** A lock (or takeover guard) that cannot be parsed is being written, unless it is older than this (its writer died). */
const GRACE_MS = 10_000;
/** Boot times computed at different moments differ by clock adjustments; more than this is another boot. */
const BOOT_TOLERANCE_S = 120;

export interface LockOwner {
	pid: number;
	/** When the system started the process (clock ticks since boot, /proc/<pid>/stat), null where unknown. */
	started: string | null;
	/** When the machine started (seconds since the epoch), null in a lock that does not say. */
	boot: number | null;
	/** What holds it, as said to whoever is refused: "the platform", "npm run admin". */
	what: string;
}

export class DataDirBusyError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "DataDirBusyError";
	}
}

export function lockFilePath(dataDir: string): string {
	return path.join(dataDir, LOCK_FILE);
}

/**
 * Takes DATA_DIR for this process as `what`, or throws DataDirBusyError naming the live holder
 * (`advice` ends the message: what to do instead). Answers the release, which also runs at exit.
 */
export function lockDataDir(dataDir: string, what: string, advice: string): () => void {
	fs.mkdirSync(dataDir, { recursive: true });
	const file = lockFilePath(dataDir);
	const mine: LockOwner = { pid: process.pid, started: startTimeOf(process.pid), boot: bootTime(), what };
	const text = JSON.stringify(mine);
	for (let attempt = 0; attempt < 3; attempt++) {
		try {
			fs.writeFileSync(file, text, { flag: "wx", mode: 0o600 });
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
			const seen = readLock(file);
			const holder = holderOf(seen);
			if (holder) throw busy(dataDir, holder, advice);
			if (typeof seen === "object") takeOver(file, seen.text);
			continue;
		}
		const release = () => {
			try {
				if (fs.readFileSync(file, "utf8") === text) fs.unlinkSync(file);
			} catch {
				/* gone already */
			}
		};
		process.on("exit", release);
		return () => {
			process.off("exit", release);
			release();
		};
	}
	throw new DataDirBusyError(`${file} is being taken by another process at this moment: try again`);
}

/** Throws DataDirBusyError when another live process holds DATA_DIR (restore and backup check, without taking it). */
export function assertDataDirFree(dataDir: string, advice: string): void {
	const holder = lockHolder(dataDir);
	if (holder) throw busy(dataDir, holder, advice);
}

/**
 * The live process holding DATA_DIR, or null: no lock, this process's own, or a stale one (its
 * process dead, its pid another process's now, or from before the machine last started).
 */
export function lockHolder(dataDir: string): LockOwner | null {
	return holderOf(readLock(lockFilePath(dataDir)));
}

type LockRead = "missing" | "unreadable" | { text: string; modifiedMs: number };

/** The lock file's content; only its absence means nobody holds it (another user's lock we cannot read is held). */
function readLock(file: string): LockRead {
	try {
		return { text: fs.readFileSync(file, "utf8"), modifiedMs: fs.statSync(file).mtimeMs };
	} catch (err) {
		return (err as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : "unreadable";
	}
}

function holderOf(read: LockRead): LockOwner | null {
	const unknown: LockOwner = { pid: 0, started: null, boot: null, what: "another process" };
	if (read === "missing") return null;
	if (read === "unreadable") return unknown;
	const owner = parseOwner(read.text);
	// Unparsable: being written this moment, unless it is old (its writer died mid-write).
	if (!owner) return Date.now() - read.modifiedMs < GRACE_MS ? unknown : null;
	if (owner.pid === process.pid) return null; // ours, or left by an earlier life with our number
	if (owner.boot !== null && Math.abs(owner.boot - bootTime()) > BOOT_TOLERANCE_S) return null;
	if (!processAlive(owner.pid)) return null;
	const started = startTimeOf(owner.pid);
	if (owner.started !== null && started !== null && owner.started !== started) return null;
	return owner;
}

/**
 * Removes the stale lock `seen`, under DATA_DIR/platform.lock.takeover (created exclusively): two
 * processes that both judged it stale must not both remove it — the second would remove the lock
 * the first has taken since. Under the guard the file is read again and removed only if it is
 * still what was judged. A guard left by a process that died mid-takeover is removed once old.
 */
function takeOver(file: string, seen: string): void {
	const guard = `${file}.takeover`;
	try {
		fs.writeFileSync(guard, String(process.pid), { flag: "wx", mode: 0o600 });
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
		const read = readLock(guard);
		if (typeof read === "object" && Date.now() - read.modifiedMs > GRACE_MS) fs.rmSync(guard, { force: true });
		return;
	}
	try {
		const now = readLock(file);
		if (typeof now === "object" && now.text === seen) fs.rmSync(file, { force: true });
	} finally {
		fs.rmSync(guard, { force: true });
	}
}

function busy(dataDir: string, holder: LockOwner, advice: string): DataDirBusyError {
	if (holder.pid === 0) return new DataDirBusyError(`another process holds ${lockFilePath(dataDir)} (it is being written, or this user cannot read it): stop it first, ${advice}`);
	return new DataDirBusyError(`${holder.what} is running on ${dataDir} (pid ${holder.pid}): stop it first, ${advice}`);
}

function parseOwner(text: string): LockOwner | null {
	let value: unknown;
	try {
		value = JSON.parse(text);
	} catch {
		return null;
	}
	const { pid, started, boot, what } = (value ?? {}) as Partial<Record<keyof LockOwner, unknown>>;
	if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return null;
	return {
		pid,
		started: typeof started === "string" ? started : null,
		boot: typeof boot === "number" && Number.isFinite(boot) ? boot : null,
		// Printed to a terminal: plain words only.
		what: typeof what === "string" && /^[\w .-]{1,40}$/.test(what) ? what : "another process"
	};
}

/** When the machine started (seconds since the epoch): a lock from an earlier boot is stale, whatever its pid is now. */
function bootTime(): number {
	return Math.round(Date.now() / 1000 - os.uptime());
}

/**
 * Whether `pid` is a live process. One of another user counts as alive (it exists); a zombie (it
 * ended, and nobody has collected its exit status yet: a killed process whose parent died with
 * it, where pid 1 is slow to reap) does not.
 */
export function processAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
	}
	const state = procStat(pid)?.[0];
	return state !== "Z" && state !== "X";
}

/** When the system started process `pid` (clock ticks since boot); null where unknown. */
export function startTimeOf(pid: number): string | null {
	// Fields from the third on (state is field 3): starttime is field 22.
	return procStat(pid)?.[22 - 3] ?? null;
}

/** The fields of /proc/<pid>/stat after the command's parenthesised name (from the state on); null where there is none. */
function procStat(pid: number): string[] | null {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
		return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	} catch {
		return null;
	}
}
