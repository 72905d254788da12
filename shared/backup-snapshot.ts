/**
 * Snapshots of the embedded mode's data for `npm run backup` (the archive format is in
 * shared/backup.ts).
 *
 * Why the running platform takes the snapshot itself: NeDB files are append logs the process
 * keeps writing (its memory is the truth, the file lags and is rewritten by compaction), and
 * chDB's data directory belongs to the process that opened it. So `server.ts` writes its pid to
 * DATA_DIR/platform.pid; the backup command creates DATA_DIR/backups/<id>/REQUESTED and sends
 * SIGUSR2 (a signal needs the same OS user or root: that is the authorization); the platform
 * claims the request (REQUESTED → CLAIMED) and writes the snapshot into <id>/snapshot/, then
 * <id>/snapshot.json and <id>/DONE — or <id>/ERROR with one sentence. The command then hashes
 * the files and writes the archive. With no platform running, the command takes the same
 * snapshot from the files directly (`takeOfflineSnapshot`).
 *
 * Consistency. Everything that makes up documents and media is captured in ONE synchronous step
 * (no await in it, so no request runs meanwhile):
 *   - every NeDB collection's in-memory documents, serialized as NeDB files (db.mixin.ts):
 *     all collections at the same instant, as if the process had stopped cleanly there;
 *   - the embedded S3 objects, hard-linked (a link is a metadata operation: fast even for many
 *     large files) — only complete objects: s3rver writes an object's metadata file after its
 *     bytes, so an object without one is an upload still running (its content document is still
 *     `processing` at that instant) and is left out, as are unfinished multipart uploads. Media
 *     keys are never rewritten (`tenants/<t>/content/<id>/…`), and a deletion after the instant
 *     only removes the live name, so the linked files keep the bytes of that instant. Where hard
 *     links are not possible the files are copied, still in the same step (slower, as consistent);
 *   - the secrets folder (a few bytes).
 * Analytics is exported after that step, through the analytics service's own chDB session:
 * ANALYTICS_BATCH_MS (+ 0.5 s) later, so every play accepted before the instant has been written,
 * then each table with `SELECT … INTO OUTFILE … FORMAT Native` (exact, the engine writes it; each
 * table is one consistent read). Analytics may therefore also hold plays accepted in the second
 * after the instant; reports deduplicate by event id, so nothing counts twice after a restore.
 */
import fs from "node:fs";
import path from "node:path";
import { snapshotNeDbCollections } from "../mixins/db.mixin";
import { ChdbStore, loadChdb } from "../services/analytics/store";
import { ident, join, sql } from "../services/analytics/sql";
import {
	BACKUPS_DIR,
	BackupError,
	countNeDbDocuments,
	isEmptyDir,
	pidFilePath,
	type AnalyticsTableExport,
	type SnapshotInfo
} from "./backup";
import type { Config } from "./config";

interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
}

const S3_OBJECT = "._S3rver_object";
const S3_METADATA = "._S3rver_metadata.json";
const S3_MD5 = "._S3rver_object.md5";
const S3_UPLOADS = "._S3rver_uploads";

/** A hard link of `from` at `to`, or a copy where the file system has no hard links. */
function linkOrCopy(from: string, to: string): void {
	fs.mkdirSync(path.dirname(to), { recursive: true });
	try {
		fs.linkSync(from, to);
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EMLINK" && code !== "ENOSYS") throw err;
		fs.copyFileSync(from, to);
	}
}

/** The complete objects of the embedded S3 directory `src` into `dest` (synchronous); answers how many. */
export function captureObjects(src: string, dest: string): number {
	let objects = 0;
	const walk = (dir: string, rel: string[]) => {
		let entries: fs.Dirent[];
		try {
			entries = fs.readdirSync(dir, { withFileTypes: true });
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // removed meanwhile (an empty key folder)
			throw err;
		}
		for (const entry of entries) {
			const from = path.join(dir, entry.name);
			if (entry.isDirectory()) {
				if (entry.name !== S3_UPLOADS) walk(from, [...rel, entry.name]);
				continue;
			}
			if (!entry.isFile() || entry.name.endsWith(S3_METADATA) || entry.name.endsWith(S3_MD5)) continue;
			const to = path.join(dest, ...rel, entry.name);
			if (!entry.name.endsWith(S3_OBJECT)) {
				linkOrCopy(from, to); // bucket-level settings s3rver may keep
				continue;
			}
			const base = from.slice(0, -S3_OBJECT.length);
			if (!fs.existsSync(base + S3_METADATA)) continue; // still being written
			linkOrCopy(from, to);
			linkOrCopy(base + S3_METADATA, to.slice(0, -S3_OBJECT.length) + S3_METADATA);
			if (fs.existsSync(base + S3_MD5)) linkOrCopy(base + S3_MD5, to.slice(0, -S3_OBJECT.length) + S3_MD5);
			objects++;
		}
	};
	walk(src, []);
	return objects;
}

/** DATA_DIR/secrets into `dest` (synchronous): the generated JWT secret and encryption key. */
function captureSecrets(dataDir: string, dest: string): number {
	const src = path.join(dataDir, "secrets");
	if (!fs.existsSync(src)) return 0;
	let files = 0;
	fs.mkdirSync(dest, { recursive: true, mode: 0o700 });
	for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
		if (!entry.isFile() || entry.name.endsWith(".tmp")) continue;
		fs.copyFileSync(path.join(src, entry.name), path.join(dest, entry.name));
		fs.chmodSync(path.join(dest, entry.name), 0o600);
		files++;
	}
	return files;
}

/** NeDB files of DATA_DIR/db as they are on disk (synchronous), except `skip`; answers their document counts. */
function copyNeDbFiles(dataDir: string, dest: string, skip: Set<string>): Record<string, number> {
	const src = path.join(dataDir, "db");
	const counts: Record<string, number> = {};
	if (!fs.existsSync(src)) return counts;
	for (const name of fs.readdirSync(src).sort()) {
		if (!name.endsWith(".db") || skip.has(name.slice(0, -3))) continue;
		const text = fs.readFileSync(path.join(src, name), "utf8");
		fs.writeFileSync(path.join(dest, name), text);
		counts[name.slice(0, -3)] = countNeDbDocuments(text);
	}
	return counts;
}

/**
 * Every MergeTree table of the store's database into `dir` as `<table>.native` (ClickHouse's
 * Native format: exact types and values); each file's rows are counted from the file itself.
 */
export async function exportAnalytics(store: ChdbStore, dir: string): Promise<AnalyticsTableExport[]> {
	fs.mkdirSync(dir, { recursive: true });
	const tables = await store.rows<{ name: string }>(sql`SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree' ORDER BY name`);
	const out: AnalyticsTableExport[] = [];
	for (const { name } of tables) {
		const columns = (await store.rows<{ name: string }>(sql`SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ${name} ORDER BY position`)).map(c => c.name);
		const file = path.join(dir, `${ident(name).text}.native`);
		const list = join(columns.map(c => ident(c)), ", ");
		await store.exec(sql`SELECT ${list} FROM ${ident(name)} INTO OUTFILE ${file} FORMAT Native`);
		// An empty table gives an empty file, whose structure ClickHouse cannot read back: 0 rows.
		const [counted] = fs.statSync(file).size === 0 ? [{ n: 0 }] : await store.rows<{ n: number }>(sql`SELECT count() AS n FROM file(${file}, Native)`);
		out.push({ name, rows: Number(counted?.n ?? 0), columns, file: `analytics-export/${name}.native` });
	}
	return out;
}

function platformNotes(config: Config): string[] {
	const notes: string[] = ["mail written to DATA_DIR/mail is output, not state: not included"];
	if (config.jwtSecret) notes.push("JWT_SECRET comes from the environment, not DATA_DIR/secrets: keep it with this backup, or tokens issued before it stop working");
	if (config.encryptionKey) notes.push("ENCRYPTION_KEY comes from the environment, not DATA_DIR/secrets: keep it with this backup, or two-factor and SSO secrets in it cannot be read");
	return notes;
}

/**
 * The snapshot a running platform takes of itself into `dest` (see the top of this file). The
 * first part, up to the first await, is the one synchronous step.
 */
export async function takeLiveSnapshot(config: Config, dest: string): Promise<SnapshotInfo> {
	if (config.mongoUri) throw new BackupError("this platform keeps its documents in MongoDB (MONGO_URI), not in DATA_DIR: back up MongoDB, S3 and ClickHouse as docs/kubernetes.md describes");
	const notes = platformNotes(config);
	fs.mkdirSync(path.join(dest, "db"), { recursive: true });

	// ---- one synchronous step: documents, media and secrets at the same instant ----
	const takenAt = new Date().toISOString();
	const collections = snapshotNeDbCollections();
	const open = new Set(collections.map(c => c.collection));
	// Collections of services this process does not run are not written to: their files are as good.
	const documents = copyNeDbFiles(config.dataDir, path.join(dest, "db"), open);
	let objects = 0;
	if (config.s3.endpoint) notes.push(`media are in the S3 server at ${config.s3.endpoint}, not in DATA_DIR: not included`);
	else objects = captureObjects(path.join(config.dataDir, "s3"), path.join(dest, "s3"));
	captureSecrets(config.dataDir, path.join(dest, "secrets"));
	// ---- end of the synchronous step ----

	// The serialized text is fixed already; writing it may take its time.
	for (const c of collections) {
		await fs.promises.writeFile(path.join(dest, "db", `${c.collection}.db`), c.text);
		documents[c.collection] = c.documents;
	}

	let tables: AnalyticsTableExport[] = [];
	let included = false;
	const store = config.clickhouseUrl ? null : ChdbStore.current();
	if (config.clickhouseUrl) notes.push("analytics are in the ClickHouse server of CLICKHOUSE_URL, not in DATA_DIR: not included");
	else if (!store) notes.push("analytics: no analytics store is open in this process (the analytics service does not run here, or chdb is not installed): not included");
	else {
		try {
			// Plays accepted before the instant are written within ANALYTICS_BATCH_MS: let them land.
			await new Promise(resolve => setTimeout(resolve, config.analytics.batchMs + 500));
			tables = await exportAnalytics(store, path.join(dest, "analytics-export"));
			included = true;
		} finally {
			await store.close();
		}
	}
	return { takenAt, mode: "live", pid: process.pid, documents, objects, analytics: { included, tables }, notes };
}

/** The same snapshot from the files of a stopped platform's `dataDir` (the command runs it). */
export async function takeOfflineSnapshot(dataDir: string, dest: string): Promise<SnapshotInfo> {
	const notes = ["taken from the files while the platform was stopped", "mail written to DATA_DIR/mail is output, not state: not included"];
	fs.mkdirSync(path.join(dest, "db"), { recursive: true });
	const takenAt = new Date().toISOString();
	const documents = copyNeDbFiles(dataDir, path.join(dest, "db"), new Set());
	const objects = captureObjects(path.join(dataDir, "s3"), path.join(dest, "s3"));
	captureSecrets(dataDir, path.join(dest, "secrets"));
	let tables: AnalyticsTableExport[] = [];
	let included = false;
	const analyticsDir = path.join(dataDir, "analytics");
	if (isEmptyDir(analyticsDir)) notes.push("analytics: DATA_DIR/analytics holds nothing: not included");
	else {
		const { module, reason } = loadChdb();
		if (!module) notes.push(`analytics: ${reason}, so DATA_DIR/analytics cannot be read: not included`);
		else {
			const store = ChdbStore.open(module, analyticsDir);
			try {
				tables = await exportAnalytics(store, path.join(dest, "analytics-export"));
				included = true;
			} finally {
				await store.close();
			}
		}
	}
	return { takenAt, mode: "offline", pid: null, documents, objects, analytics: { included, tables }, notes };
}

/** Takes every snapshot requested under DATA_DIR/backups that nobody has claimed yet, one after another. */
async function serveRequests(config: Config, logger: Logger): Promise<void> {
	const root = path.join(config.dataDir, BACKUPS_DIR);
	const ids = fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
	for (const id of ids) {
		const dir = path.join(root, id);
		try {
			fs.renameSync(path.join(dir, "REQUESTED"), path.join(dir, "CLAIMED"));
		} catch {
			continue; // not a request, or claimed already
		}
		try {
			logger.info(`Backup ${id}: taking a snapshot of ${config.dataDir}`);
			const info = await takeLiveSnapshot(config, path.join(dir, "snapshot"));
			fs.writeFileSync(path.join(dir, "snapshot.json"), `${JSON.stringify(info, null, 2)}\n`);
			fs.writeFileSync(path.join(dir, "DONE"), `${info.takenAt}\n`);
			logger.info(`Backup ${id}: snapshot taken at ${info.takenAt}`);
		} catch (err) {
			const message = err instanceof BackupError ? err.message : `the snapshot failed: ${(err as Error)?.message ?? String(err)}`;
			logger.warn(`Backup ${id}: ${message}`);
			try {
				fs.writeFileSync(path.join(dir, "ERROR"), `${message}\n`);
			} catch {
				/* the command gave up and removed its folder */
			}
		}
	}
}

/**
 * Makes this process answer backup requests: writes DATA_DIR/platform.pid (removed on exit when
 * it is still ours) and takes the requested snapshots on SIGUSR2. For the embedded mode's one
 * process (server.ts installs it only without a transporter).
 */
export function installBackupHandler(config: Config, logger: Logger): void {
	const pidFile = pidFilePath(config.dataDir);
	fs.writeFileSync(pidFile, `${process.pid}\n`);
	process.on("exit", () => {
		try {
			if (fs.readFileSync(pidFile, "utf8").trim() === String(process.pid)) fs.unlinkSync(pidFile);
		} catch {
			/* gone already */
		}
	});
	let queue: Promise<void> = Promise.resolve();
	process.on("SIGUSR2", () => {
		queue = queue.then(() => serveRequests(config, logger)).catch(err => logger.warn("Backup request failed", err));
	});
}
