/**
 * `npm run backup [-- --data-dir D] [--out FILE] [--timeout SECONDS]`: one archive (.tar.gz) of
 * the embedded mode's data — documents, media objects, analytics, secrets — with a manifest
 * (format version, time, counts, size and sha256 of every file). Format: shared/backup.ts.
 *
 * While the platform runs on D (DATA_DIR/platform.pid names a live process) the platform takes
 * the snapshot itself, on request (shared/backup-snapshot.ts explains why and how it stays
 * consistent); otherwise this command copies the files. Requests keep being served meanwhile.
 * Exit 0 with the archive's path; 1 with one line saying why.
 */
import fs from "node:fs";
import path from "node:path";
import {
	BACKUP_FORMAT,
	BACKUP_FORMAT_VERSION,
	BACKUPS_DIR,
	BackupError,
	backupStamp,
	listFiles,
	runCommand,
	runningPlatformPid,
	sha256File,
	writeArchive,
	type BackupManifest,
	type SnapshotInfo
} from "../shared/backup";
import { takeOfflineSnapshot } from "../shared/backup-snapshot";
import { lockDataDir, processAlive } from "../shared/data-dir-lock";

const USAGE = "usage: npm run backup [-- --data-dir DIR] [--out FILE] [--timeout SECONDS]";

export interface BackupArgs {
	dataDir: string;
	out: string | null;
	timeoutMs: number;
}

/** Paths the user typed are relative to where they ran npm (INIT_CWD), not to the package. */
export function userPath(p: string): string {
	return path.resolve(process.env.INIT_CWD ?? process.cwd(), p);
}

/** DATA_DIR as the platform resolves it (config.ts), unless --data-dir names one. */
export function defaultDataDir(): string {
	return path.resolve(process.env.DATA_DIR || "./data");
}

export function parseBackupArgs(argv: string[]): BackupArgs {
	const args: BackupArgs = { dataDir: defaultDataDir(), out: null, timeoutMs: 30 * 60_000 };
	for (let i = 0; i < argv.length; i++) {
		const flag = argv[i];
		const value = argv[i + 1];
		if (flag === "--help" || flag === "-h") throw new BackupError(USAGE);
		if ((flag === "--data-dir" || flag === "--out" || flag === "--timeout") && (value === undefined || value.startsWith("--"))) throw new BackupError(`${flag} needs a value\n${USAGE}`);
		if (flag === "--data-dir") args.dataDir = userPath(argv[++i]);
		else if (flag === "--out") args.out = userPath(argv[++i]);
		else if (flag === "--timeout") {
			const seconds = Number(argv[++i]);
			if (!Number.isFinite(seconds) || seconds <= 0) throw new BackupError(`--timeout must be a positive number of seconds\n${USAGE}`);
			args.timeoutMs = seconds * 1000;
		} else throw new BackupError(`unexpected argument ${JSON.stringify(flag)}\n${USAGE}`);
	}
	return args;
}

function platformVersion(): string {
	for (const candidate of [path.join(__dirname, "..", "package.json"), path.join(__dirname, "..", "..", "package.json")]) {
		try {
			return String((JSON.parse(fs.readFileSync(candidate, "utf8")) as { version?: unknown }).version ?? "unknown");
		} catch {
			/* next */
		}
	}
	return "unknown";
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Asks the platform `pid` for a snapshot into `work` and waits for it; answers what it recorded. */
async function requestSnapshot(pid: number, work: string, timeoutMs: number): Promise<SnapshotInfo> {
	fs.writeFileSync(path.join(work, "REQUESTED"), `${process.pid}\n`);
	try {
		process.kill(pid, "SIGUSR2");
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code === "EPERM") throw new BackupError(`the platform (pid ${pid}) runs as another user: run the backup as that user`);
		throw new BackupError(`the platform (pid ${pid}) stopped before it could be asked for a snapshot`);
	}
	const started = Date.now();
	for (;;) {
		if (fs.existsSync(path.join(work, "DONE"))) return JSON.parse(fs.readFileSync(path.join(work, "snapshot.json"), "utf8")) as SnapshotInfo;
		if (fs.existsSync(path.join(work, "ERROR"))) throw new BackupError(`the platform could not take the snapshot: ${fs.readFileSync(path.join(work, "ERROR"), "utf8").trim()}`);
		if (!processAlive(pid)) throw new BackupError(`the platform (pid ${pid}) stopped during the backup; nothing was written`);
		const claimed = fs.existsSync(path.join(work, "CLAIMED"));
		if (!claimed && Date.now() - started > 15_000) throw new BackupError(`the platform (pid ${pid}) did not take the backup request within 15 s`);
		if (Date.now() - started > timeoutMs) throw new BackupError(`the snapshot took longer than ${Math.round(timeoutMs / 1000)} s (--timeout); nothing was written`);
		await sleep(100);
	}
}

/** The files at rest, read while this process holds DATA_DIR (a platform or operator command starting meanwhile is refused). */
async function offlineSnapshot(dataDir: string, snapshotDir: string): Promise<SnapshotInfo> {
	const release = lockDataDir(dataDir, "npm run backup", "or wait for it: an operator command ends by itself, and a platform that is starting takes the backup itself once it is up");
	try {
		return await takeOfflineSnapshot(dataDir, snapshotDir);
	} finally {
		release();
	}
}

export async function backup(args: BackupArgs): Promise<{ out: string; manifest: BackupManifest }> {
	const { dataDir } = args;
	if (!fs.existsSync(dataDir) || !fs.statSync(dataDir).isDirectory()) throw new BackupError(`there is no data directory at ${dataDir} (set --data-dir or DATA_DIR)`);
	const id = backupStamp();
	const out = args.out ?? userPath(`marquee-backup-${id}.tar.gz`);
	if (fs.existsSync(out)) throw new BackupError(`${out} exists already; choose another --out`);
	if (!fs.existsSync(path.dirname(out))) throw new BackupError(`the folder of ${out} does not exist`);
	const work = path.join(dataDir, BACKUPS_DIR, id);
	fs.mkdirSync(work, { recursive: true, mode: 0o700 });
	try {
		const pid = runningPlatformPid(dataDir);
		const snapshotDir = path.join(work, "snapshot");
		const info = pid !== null ? await requestSnapshot(pid, work, args.timeoutMs) : await offlineSnapshot(dataDir, snapshotDir);
		const files: BackupManifest["files"] = [];
		for (const file of listFiles(snapshotDir)) files.push({ path: file, ...(await sha256File(path.join(snapshotDir, ...file.split("/")))) });
		const manifest: BackupManifest = {
			format: BACKUP_FORMAT,
			version: BACKUP_FORMAT_VERSION,
			platformVersion: platformVersion(),
			createdAt: new Date().toISOString(),
			...info,
			files
		};
		await writeArchive(out, snapshotDir, manifest);
		return { out, manifest };
	} finally {
		fs.rmSync(work, { recursive: true, force: true });
		try {
			fs.rmdirSync(path.join(dataDir, BACKUPS_DIR)); // only when empty: another backup may be running
		} catch {
			/* not empty, or gone */
		}
	}
}

function summary(out: string, m: BackupManifest): string {
	const docs = Object.values(m.documents).reduce((a, b) => a + b, 0);
	const rows = m.analytics.tables.reduce((a, t) => a + t.rows, 0);
	const bytes = m.files.reduce((a, f) => a + f.size, 0);
	const lines = [
		`Backup written to ${out}`,
		`  taken     ${m.takenAt} (${m.mode === "live" ? `by the running platform, pid ${m.pid}` : "from the files; the platform was not running"})`,
		`  documents ${docs} in ${Object.keys(m.documents).length} collections`,
		`  media     ${m.objects} objects`,
		`  analytics ${m.analytics.included ? `${rows} rows in ${m.analytics.tables.length} tables` : "not included"}`,
		`  files     ${m.files.length} (${(bytes / 1048576).toFixed(1)} MiB before compression), each with its sha256 in manifest.json`
	];
	for (const note of m.notes) lines.push(`  note: ${note}`);
	return lines.join("\n");
}

if (require.main === module) {
	runCommand("backup", async () => {
		const { out, manifest } = await backup(parseBackupArgs(process.argv.slice(2)));
		process.stdout.write(`${summary(out, manifest)}\n`);
	});
}
