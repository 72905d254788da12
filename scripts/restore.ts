/**
 * `npm run restore -- FILE [--data-dir D] [--force] [--skip-analytics]`: puts the state of a
 * backup (scripts/backup.ts) back into DATA_DIR, exactly: documents, media objects, secrets and
 * analytics.
 *
 * - Refuses while the platform runs on D (its pid file names a live process): stop it first.
 * - Refuses a D that holds anything, unless --force; then D is moved aside to
 *   `D.pre-restore-<stamp>` (never deleted) once the archive has been checked.
 * - Checks the whole archive before it touches D: it is extracted next to D, and every file
 *   must match the size and sha256 its manifest lists (a truncated or corrupt archive, a wrong
 *   format version, a file too many or too few: refused, D unchanged).
 * - Analytics are imported here, through chDB, into the fresh D/analytics: the schema from this
 *   version's migrations, then every exported table's rows (ClickHouse's Native format: exact),
 *   each table's row count checked against the manifest. When that fails, the restored D is
 *   moved to `D.failed-restore-<stamp>` and the old D comes back.
 * Exit 0 when D holds the backup's state; 1 with one line saying why.
 */
import fs from "node:fs";
import path from "node:path";
import { migrate } from "../services/analytics/migrations";
import { ident, join, sql } from "../services/analytics/sql";
import { ChdbStore, loadChdb } from "../services/analytics/store";
import { BackupError, backupStamp, countNeDbDocuments, extractArchive, isEmptyDir, runCommand, type BackupManifest } from "../shared/backup";
import { assertDataDirFree } from "../shared/data-dir-lock";
import { defaultDataDir, userPath } from "./backup";

const USAGE = "usage: npm run restore -- FILE [--data-dir DIR] [--force] [--skip-analytics]";

export interface RestoreArgs {
	file: string;
	dataDir: string;
	force: boolean;
	skipAnalytics: boolean;
}

export function parseRestoreArgs(argv: string[]): RestoreArgs {
	let file: string | null = null;
	const args = { dataDir: defaultDataDir(), force: false, skipAnalytics: false };
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (arg === "--help" || arg === "-h") throw new BackupError(USAGE);
		if (arg === "--force") args.force = true;
		else if (arg === "--skip-analytics") args.skipAnalytics = true;
		else if (arg === "--data-dir") {
			const value = argv[++i];
			if (value === undefined || value.startsWith("--")) throw new BackupError(`--data-dir needs a value\n${USAGE}`);
			args.dataDir = userPath(value);
		} else if (arg.startsWith("--") || file !== null) throw new BackupError(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`);
		else file = userPath(arg);
	}
	if (file === null) throw new BackupError(`which backup? ${USAGE}`);
	return { file, ...args };
}

/** Imports the exported analytics tables of `root/analytics-export` into a fresh chDB at `root/analytics`. */
async function importAnalytics(root: string, manifest: BackupManifest): Promise<number> {
	const { module, reason } = loadChdb();
	if (!module) throw new BackupError(`this backup holds analytics, and ${reason}`);
	const store = ChdbStore.open(module, path.join(root, "analytics"));
	let rows = 0;
	try {
		// The schema comes from this version's migrations (never DDL out of an archive); then the
		// backup's own migration ledger replaces the one just written, so the next start applies
		// exactly the migrations the backup had not.
		await migrate(store);
		const existing = new Set((await store.rows<{ name: string }>(sql`SELECT name FROM system.tables WHERE database = currentDatabase()`)).map(t => t.name));
		for (const table of manifest.analytics.tables) {
			if (!existing.has(table.name)) throw new BackupError(`the backup has an analytics table this version does not know (${JSON.stringify(table.name)}): restore it with the Marquee that wrote it`);
		}
		for (const table of manifest.analytics.tables) {
			const name = ident(table.name);
			if (table.name === "schema_migrations") await store.exec(sql`TRUNCATE TABLE schema_migrations`);
			const file = path.join(root, ...table.file.split("/"));
			if (table.file !== `analytics-export/${table.name}.native` || !fs.existsSync(file)) throw new BackupError(`the export of analytics table ${table.name} is missing`);
			if (fs.statSync(file).size > 0) {
				try {
					await store.exec(sql`INSERT INTO ${name} (${join(table.columns.map(c => ident(c)), ", ")}) FROM INFILE ${file} FORMAT Native`);
				} catch (err) {
					throw new BackupError(`analytics table ${table.name} could not be imported: ${(err as Error).message.split("\n")[0].slice(0, 300)}`);
				}
			}
			const [counted] = await store.rows<{ n: number }>(sql`SELECT count() AS n FROM ${name}`);
			if (Number(counted?.n) !== table.rows) throw new BackupError(`analytics table ${table.name} has ${counted?.n} rows after the import, the backup ${table.rows}`);
			rows += table.rows;
		}
	} finally {
		await store.close();
	}
	return rows;
}

export async function restore(args: RestoreArgs): Promise<{ manifest: BackupManifest; aside: string | null; analyticsRows: number | null }> {
	const { file, dataDir } = args;
	let stat: fs.Stats;
	try {
		stat = fs.statSync(file);
	} catch {
		throw new BackupError(`there is no file ${file}`);
	}
	if (!stat.isFile()) throw new BackupError(`${file} is not a file`);
	assertDataDirFree(dataDir, "restore replaces its data");
	const occupied = !isEmptyDir(dataDir);
	if (occupied && !args.force) throw new BackupError(`${dataDir} is not empty: pass --force to move it aside (to ${path.basename(dataDir)}.pre-restore-<stamp>, nothing is deleted) and restore`);
	if (fs.existsSync(dataDir) && !fs.statSync(dataDir).isDirectory()) throw new BackupError(`${dataDir} is not a directory`);

	const id = backupStamp();
	const parent = path.dirname(dataDir);
	fs.mkdirSync(parent, { recursive: true });
	const staging = path.join(parent, `.${path.basename(dataDir)}.restore-${id}`);
	let manifest: BackupManifest;
	try {
		manifest = await extractArchive(file, staging);
		for (const [collection, count] of Object.entries(manifest.documents)) {
			const dbFile = path.join(staging, "db", `${collection}.db`);
			const found = fs.existsSync(dbFile) ? countNeDbDocuments(fs.readFileSync(dbFile, "utf8")) : 0;
			if (found !== count) throw new BackupError(`collection ${collection} holds ${found} documents, its manifest says ${count}: the backup is inconsistent`);
		}
		const withAnalytics = manifest.analytics.included && !args.skipAnalytics;
		if (withAnalytics && !loadChdb().module) throw new BackupError(`this backup holds analytics, and ${loadChdb().reason}: install chdb, or pass --skip-analytics to restore without them`);
	} catch (err) {
		fs.rmSync(staging, { recursive: true, force: true });
		throw err;
	}

	// Checked: now D changes. The old one moves aside (renames only, nothing is deleted).
	let aside: string | null = null;
	try {
		if (occupied) {
			aside = `${dataDir}.pre-restore-${id}`;
			fs.renameSync(dataDir, aside);
		} else if (fs.existsSync(dataDir)) fs.rmdirSync(dataDir);
		fs.renameSync(staging, dataDir);
	} catch (err) {
		if (aside && !fs.existsSync(dataDir) && fs.existsSync(aside)) fs.renameSync(aside, dataDir);
		fs.rmSync(staging, { recursive: true, force: true });
		throw new BackupError(`could not put the restored data in place at ${dataDir} (${(err as Error).message}); nothing was changed — is it a mount point? Restore into an empty folder and point DATA_DIR at it`);
	}

	let analyticsRows: number | null = null;
	const exportDir = path.join(dataDir, "analytics-export");
	try {
		if (manifest.analytics.included && !args.skipAnalytics) analyticsRows = await importAnalytics(dataDir, manifest);
		fs.rmSync(exportDir, { recursive: true, force: true });
	} catch (err) {
		const failed = `${dataDir}.failed-restore-${id}`;
		fs.renameSync(dataDir, failed);
		if (aside) fs.renameSync(aside, dataDir);
		const why = err instanceof BackupError ? err.message : `the analytics import failed: ${(err as Error)?.message ?? String(err)}`;
		throw new BackupError(`${why}. ${aside ? `${dataDir} is back as it was` : `${dataDir} is empty again`}; the partly restored data is in ${failed}`);
	}
	return { manifest, aside, analyticsRows };
}

if (require.main === module) {
	runCommand("restore", async () => {
		const args = parseRestoreArgs(process.argv.slice(2));
		const { manifest, aside, analyticsRows } = await restore(args);
		const docs = Object.values(manifest.documents).reduce((a, b) => a + b, 0);
		const lines = [
			`Restored ${args.file} into ${args.dataDir}`,
			`  state of ${manifest.takenAt}: ${docs} documents, ${manifest.objects} media objects, ${analyticsRows === null ? "no analytics" : `${analyticsRows} analytics rows`}; every file matched its sha256`
		];
		if (aside) lines.push(`  the previous data is in ${aside}`);
		if (manifest.analytics.included && args.skipAnalytics) lines.push("  analytics were left out (--skip-analytics)");
		for (const note of manifest.notes) lines.push(`  note: ${note}`);
		process.stdout.write(`${lines.join("\n")}\n`);
	});
}
