/**
 * One process owns a DATA_DIR in the embedded mode: the platform (`npm start`) or an operator
 * command that runs its services (`npm run admin`). A second one on the same files would compact
 * NeDB files and the throttle journal under the first (which then appends to a file no longer
 * there) and overwrite what the first writes.
 *
 * The owner holds DATA_DIR/platform.lock, created exclusively (O_EXCL) before any other file is
 * opened and removed when it exits. The file names the owner's pid and the time the system started
 * that process (Linux, /proc/<pid>/stat): a lock left by a killed process is taken over when its
 * pid is dead, or alive but another process's now (the pid was reused, or a container restarted
 * and numbers its processes from 1 again). It guards processes of one machine (one pid namespace):
 * two containers sharing a volume do not see each other's processes.
 *
 * (DATA_DIR/platform.pid, shared/backup.ts, is something else: written once the platform is ready,
 * it tells `npm run backup` whom to ask for a snapshot.)
 */
import fs from "node:fs";
import path from "node:path";

export const LOCK_FILE = "platform.lock";

/** A lock file that cannot be read yet is being written, unless it is older than this (its writer died). */
const UNREADABLE_GRACE_MS = 10_000;

export interface LockOwner {
	pid: number;
	/** When the system started the process (clock ticks since boot, /proc/<pid>/stat), null where unknown. */
	started: string | null;
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
	const mine: LockOwner = { pid: process.pid, started: startTimeOf(process.pid), what };
	const text = JSON.stringify(mine);
	// Twice at most: a stale lock is removed once, and whoever creates the file next holds it.
	for (let attempt = 0; attempt < 2; attempt++) {
		try {
			fs.writeFileSync(file, text, { flag: "wx", mode: 0o600 });
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
			const holder = lockHolder(dataDir);
			if (holder) throw busy(dataDir, holder, advice);
			fs.rmSync(file, { force: true });
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
	throw new DataDirBusyError(`${dataDir} is being taken by another process at the same moment: try again`);
}

/** Throws DataDirBusyError when another live process holds DATA_DIR (restore and backup check, without taking it). */
export function assertDataDirFree(dataDir: string, advice: string): void {
	const holder = lockHolder(dataDir);
	if (holder) throw busy(dataDir, holder, advice);
}

/**
 * The live process holding DATA_DIR, or null: no lock, this process's own, or a stale one (its
 * process dead, or its pid another process's now).
 */
export function lockHolder(dataDir: string): LockOwner | null {
	const file = lockFilePath(dataDir);
	let text: string;
	let modified: number;
	try {
		text = fs.readFileSync(file, "utf8");
		modified = fs.statSync(file).mtimeMs;
	} catch {
		return null;
	}
	const owner = parseOwner(text);
	if (!owner) return Date.now() - modified < UNREADABLE_GRACE_MS ? { pid: 0, started: null, what: "another process" } : null;
	if (owner.pid === process.pid) return null; // ours, or left by an earlier life with our number
	if (!processAlive(owner.pid)) return null;
	const started = startTimeOf(owner.pid);
	if (owner.started !== null && started !== null && owner.started !== started) return null;
	return owner;
}

function busy(dataDir: string, holder: LockOwner, advice: string): DataDirBusyError {
	const pid = holder.pid > 0 ? ` (pid ${holder.pid})` : "";
	return new DataDirBusyError(`${holder.what} is running on ${dataDir}${pid}: stop it first, ${advice}`);
}

function parseOwner(text: string): LockOwner | null {
	let value: unknown;
	try {
		value = JSON.parse(text);
	} catch {
		return null;
	}
	const { pid, started, what } = (value ?? {}) as Partial<Record<keyof LockOwner, unknown>>;
	if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return null;
	return { pid, started: typeof started === "string" ? started : null, what: typeof what === "string" && what.length <= 100 ? what : "another process" };
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
