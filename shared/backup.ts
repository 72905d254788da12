/**
 * Backups of the embedded mode: the archive format and the checks both commands share
 * (`npm run backup`, `npm run restore`; scripts/backup.ts, scripts/restore.ts). What goes into a
 * snapshot, and how a running platform takes one, is in shared/backup-snapshot.ts.
 *
 * An archive is a gzip-compressed tar (POSIX ustar, with a PAX record for paths longer than
 * ustar holds), written and read here with Node's zlib — no dependency. Its first entry is
 * `manifest.json` (format, version, time, counts, notes, and the size and sha256 of every other
 * file); then the files of the snapshot, all under the four roots below:
 *
 *   db/<collection>.db               NeDB files, one per collection (NeDB's own format)
 *   s3/<bucket>/…                    the embedded S3 server's files (s3rver's layout)
 *   secrets/…                        DATA_DIR/secrets (the generated JWT secret and encryption key)
 *   analytics-export/<table>.native  every analytics table, in ClickHouse's Native format
 *
 * Reading refuses anything else: a path outside those roots or not in the manifest, a
 * traversal, a link, a header whose checksum is wrong, a file whose bytes do not match its
 * sha256, a missing file, or an archive that ends early. Every such failure is a
 * `BackupError` with one sentence for the person running the command.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { DataDirBusyError, lockHolder } from "./data-dir-lock";

export const BACKUP_FORMAT = "marquee-backup";
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_NAME = "manifest.json";
export const ARCHIVE_ROOTS = ["db", "s3", "secrets", "analytics-export"] as const;
/** The platform's process id while it runs (written by server.ts, removed on exit). */
export const PID_FILE = "platform.pid";
/** Where a running platform writes the snapshots it is asked for (DATA_DIR/backups/<id>/). */
export const BACKUPS_DIR = "backups";

/** A failure the person running the command can act on: printed as it is, never with a stack. */
export class BackupError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "BackupError";
	}
}

/**
 * Runs a backup command's `main` and ends the process: 0 when it succeeded, else 1 with one line
 * on stderr (a BackupError's message as it is; anything else prefixed), never a stack trace.
 */
export function runCommand(name: "backup" | "restore", main: () => Promise<void>): void {
	main().then(
		() => process.exit(0),
		(err: unknown) => {
			const message = err instanceof BackupError || err instanceof DataDirBusyError ? err.message : `failed: ${err instanceof Error ? err.message : String(err)}`;
			process.stderr.write(`marquee ${name}: ${message}\n`);
			process.exit(1);
		}
	);
}

export interface AnalyticsTableExport {
	name: string;
	/** Rows in the exported file (counted from the file itself). */
	rows: number;
	/** Column names in the table's order (the import names them). */
	columns: string[];
	/** The file in the archive. */
	file: string;
}

/** What the snapshot itself records (snapshot.json, written by whoever took it). */
export interface SnapshotInfo {
	/** The instant the documents and media were captured (ISO). */
	takenAt: string;
	/** `live`: by the running platform on request; `offline`: copied while it was stopped. */
	mode: "live" | "offline";
	pid: number | null;
	documents: Record<string, number>;
	objects: number;
	analytics: { included: boolean; tables: AnalyticsTableExport[] };
	/** What the snapshot leaves out, and why. */
	notes: string[];
}

export interface ManifestFile {
	path: string;
	size: number;
	sha256: string;
}

export interface BackupManifest extends SnapshotInfo {
	format: typeof BACKUP_FORMAT;
	version: number;
	/** The platform's package version that wrote the archive. */
	platformVersion: string;
	createdAt: string;
	files: ManifestFile[];
}

// ---- the platform's pid file ----------------------------------------------------------------

export function pidFilePath(dataDir: string): string {
	return path.join(dataDir, PID_FILE);
}

/**
 * The pid of the platform running on `dataDir`, or null: no pid file, or a stale one. The pid it
 * names must hold the DATA_DIR lock (shared/data-dir-lock.ts, which also checks the process is the
 * one that took it): a pid file left by a crash may name a pid the system has since given to
 * another program, which the backup's signal must not reach.
 */
export function runningPlatformPid(dataDir: string): number | null {
	let text: string;
	try {
		text = fs.readFileSync(pidFilePath(dataDir), "utf8");
	} catch {
		return null;
	}
	const pid = Number(text.trim());
	if (!Number.isInteger(pid) || pid <= 0) return null;
	return lockHolder(dataDir)?.pid === pid ? pid : null;
}

// ---- files ----------------------------------------------------------------------------------

/** Every regular file under `root`, as sorted relative POSIX paths. */
export function listFiles(root: string): string[] {
	const out: string[] = [];
	const walk = (dir: string, rel: string) => {
		for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
			const relPath = rel ? `${rel}/${entry.name}` : entry.name;
			if (entry.isDirectory()) walk(path.join(dir, entry.name), relPath);
			else if (entry.isFile()) out.push(relPath);
		}
	};
	if (fs.existsSync(root)) walk(root, "");
	return out.sort();
}

export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
	const hash = createHash("sha256");
	let size = 0;
	for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
		hash.update(chunk);
		size += chunk.length;
	}
	return { sha256: hash.digest("hex"), size };
}

/** Documents in a NeDB file: the last line of each id wins, `$$deleted` removes, index lines do not count. */
export function countNeDbDocuments(text: string): number {
	const ids = new Set<string>();
	for (const line of text.split("\n")) {
		if (!line.trim()) continue;
		let doc: { _id?: unknown; $$deleted?: unknown; $$indexCreated?: unknown };
		try {
			doc = JSON.parse(line) as typeof doc;
		} catch {
			continue; // NeDB skips a corrupt line too (up to its corruption threshold)
		}
		if (doc.$$indexCreated || typeof doc._id !== "string") continue;
		if (doc.$$deleted === true) ids.delete(doc._id);
		else ids.add(doc._id);
	}
	return ids.size;
}

/** A directory that is missing or holds nothing. */
export function isEmptyDir(dir: string): boolean {
	try {
		return fs.readdirSync(dir).length === 0;
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code === "ENOENT") return true;
		throw err;
	}
}

/** `20260310T142501Z-1a2b`: sortable, unique enough for one machine, a valid file name. */
export function backupStamp(now = new Date()): string {
	return `${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${Math.random().toString(16).slice(2, 6)}`;
}

// ---- tar (ustar + PAX path records) ---------------------------------------------------------

const BLOCK = 512;
/** Largest size an ustar header holds in its 11 octal digits (8 GiB − 1); above it a PAX size record. */
const USTAR_MAX_SIZE = 0o77777777777;

function octal(value: number, width: number): string {
	return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(name: string, size: number, type: "0" | "x", mtime: number): Buffer {
	const block = Buffer.alloc(BLOCK, 0);
	block.write(name, 0, 100, "utf8");
	block.write(octal(type === "x" ? 0o644 : 0o600, 8), 100, "ascii");
	block.write(octal(0, 8), 108, "ascii");
	block.write(octal(0, 8), 116, "ascii");
	block.write(octal(Math.min(size, USTAR_MAX_SIZE), 12), 124, "ascii");
	block.write(octal(Math.floor(mtime / 1000), 12), 136, "ascii");
	block.write("        ", 148, "ascii");
	block.write(type, 156, "ascii");
	block.write("ustar\0", 257, "ascii");
	block.write("00", 263, "ascii");
	let sum = 0;
	for (const byte of block) sum += byte;
	block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
	return block;
}

/** `"<len> key=value\n"`, where len counts the whole record, its own digits included. */
function paxRecord(key: string, value: string): string {
	const body = ` ${key}=${value}\n`;
	let len = Buffer.byteLength(body) + 1;
	while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
	return `${len}${body}`;
}

const padding = (size: number) => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK, 0);

/** The headers of one entry: a PAX record first when the path or size does not fit ustar. */
function entryHeaders(name: string, size: number, mtime: number): Buffer[] {
	const out: Buffer[] = [];
	const records = [Buffer.byteLength(name) > 100 ? paxRecord("path", name) : "", size > USTAR_MAX_SIZE ? paxRecord("size", String(size)) : ""].join("");
	if (records) {
		const body = Buffer.from(records, "utf8");
		out.push(header("PaxHeader", body.length, "x", mtime), body, padding(body.length));
	}
	out.push(header(Buffer.byteLength(name) > 100 ? name.slice(0, 99) : name, size, "0", mtime));
	return out;
}

/**
 * Writes `manifest` and then every file it lists (read from `root`) as a tar.gz at `out`. Each
 * file is hashed again as it is archived: bytes that differ from the manifest (a file changed
 * since it was hashed) fail the backup rather than produce an archive restore would refuse.
 * Written to `<out>.partial` and renamed at the end, so `out` only ever names a whole archive.
 */
export async function writeArchive(out: string, root: string, manifest: BackupManifest): Promise<void> {
	const partial = `${out}.partial`;
	const mtime = Date.parse(manifest.createdAt) || Date.now();
	async function* blocks(): AsyncGenerator<Buffer> {
		const json = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, "utf8");
		yield* entryHeaders(MANIFEST_NAME, json.length, mtime);
		yield json;
		yield padding(json.length);
		for (const file of manifest.files) {
			yield* entryHeaders(file.path, file.size, mtime);
			const hash = createHash("sha256");
			let size = 0;
			const source = file.size === 0 ? [] : (fs.createReadStream(path.join(root, file.path), { end: file.size - 1 }) as AsyncIterable<Buffer>);
			for await (const chunk of source) {
				hash.update(chunk);
				size += chunk.length;
				yield chunk;
			}
			if (size !== file.size || hash.digest("hex") !== file.sha256) throw new BackupError(`${file.path} changed while the backup was being written; run the backup again`);
			yield padding(size);
		}
		yield Buffer.alloc(BLOCK * 2, 0);
	}
	try {
		await pipeline(Readable.from(blocks()), zlib.createGzip({ level: 6 }), fs.createWriteStream(partial, { mode: 0o600 }));
		fs.renameSync(partial, out);
	} catch (err) {
		fs.rmSync(partial, { force: true });
		throw err;
	}
}

/** Pulls exact byte counts out of a stream of chunks. */
class ByteReader {
	private buffered: Buffer[] = [];
	private length = 0;
	private done = false;

	constructor(private readonly source: AsyncIterator<Buffer>) {}

	private async fill(n: number): Promise<void> {
		while (this.length < n && !this.done) {
			const next = await this.source.next();
			if (next.done) this.done = true;
			else {
				this.buffered.push(next.value);
				this.length += next.value.length;
			}
		}
	}

	/** Exactly `n` bytes, or null when the stream ends first. */
	async read(n: number): Promise<Buffer | null> {
		await this.fill(n);
		if (this.length < n) return null;
		const all = this.buffered.length === 1 ? this.buffered[0] : Buffer.concat(this.buffered);
		this.buffered = all.length > n ? [all.subarray(n)] : [];
		this.length = all.length - n;
		return all.subarray(0, n);
	}

	/** `n` bytes in chunks of whatever size arrives; throws when the stream ends first. */
	async *chunks(n: number): AsyncGenerator<Buffer> {
		let left = n;
		while (left > 0) {
			if (this.length === 0) await this.fill(1);
			if (this.length === 0) throw new BackupError("the archive ends in the middle of a file: it is truncated");
			const head = this.buffered.shift() as Buffer;
			this.length -= head.length;
			if (head.length > left) {
				this.buffered.unshift(head.subarray(left));
				this.length += head.length - left;
				yield head.subarray(0, left);
				left = 0;
			} else {
				left -= head.length;
				yield head;
			}
		}
	}
}

function field(block: Buffer, offset: number, length: number): string {
	const raw = block.subarray(offset, offset + length);
	const end = raw.indexOf(0);
	return raw.subarray(0, end === -1 ? length : end).toString("utf8");
}

function parseHeader(block: Buffer): { name: string; size: number; type: string } {
	let sum = 0;
	for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i];
	const stored = parseInt(field(block, 148, 8).trim(), 8);
	if (stored !== sum || field(block, 257, 5) !== "ustar") throw new BackupError("the archive is corrupt (a tar header does not check out)");
	const prefix = field(block, 345, 155);
	const name = field(block, 0, 100);
	const size = parseInt(field(block, 124, 12).trim() || "0", 8);
	return { name: prefix ? `${prefix}/${name}` : name, size, type: field(block, 156, 1) || "0" };
}

function parsePax(body: Buffer): Record<string, string> {
	const out: Record<string, string> = {};
	let at = 0;
	while (at < body.length) {
		const space = body.indexOf(0x20, at);
		const len = Number(body.subarray(at, space).toString("ascii"));
		if (space < 0 || !Number.isInteger(len) || len <= space - at + 1 || at + len > body.length || body[at + len - 1] !== 0x0a) {
			throw new BackupError("the archive is corrupt (a PAX record does not check out)");
		}
		const record = body.subarray(space + 1, at + len - 1).toString("utf8");
		const eq = record.indexOf("=");
		if (eq < 1) throw new BackupError("the archive is corrupt (a PAX record does not check out)");
		out[record.slice(0, eq)] = record.slice(eq + 1);
		at += len;
	}
	return out;
}

/** A path an archive may hold: relative, normalized, under one of the roots, no `..`. */
export function safeArchivePath(name: string): boolean {
	if (!name || name.includes("\0") || name.includes("\\") || path.posix.isAbsolute(name)) return false;
	if (path.posix.normalize(name) !== name || name.split("/").some(part => part === ".." || part === "." || part === "")) return false;
	return (ARCHIVE_ROOTS as readonly string[]).includes(name.split("/")[0]) && name.includes("/");
}

/** Checks the manifest's own shape and version; answers it typed. */
export function checkManifest(value: unknown): BackupManifest {
	const m = value as Partial<BackupManifest> | null;
	if (!m || typeof m !== "object" || m.format !== BACKUP_FORMAT) throw new BackupError("this is not a Marquee backup (its manifest does not say so)");
	if (m.version !== BACKUP_FORMAT_VERSION) {
		throw new BackupError(`this backup has format version ${JSON.stringify(m.version)}; this Marquee reads version ${BACKUP_FORMAT_VERSION} (restore it with the Marquee that wrote it)`);
	}
	if (!Array.isArray(m.files) || !m.documents || !m.analytics || !Array.isArray(m.analytics.tables)) throw new BackupError("the backup's manifest is incomplete");
	const seen = new Set<string>();
	for (const f of m.files) {
		if (!f || !safeArchivePath(f.path) || !Number.isSafeInteger(f.size) || f.size < 0 || !/^[0-9a-f]{64}$/.test(String(f.sha256)) || seen.has(f.path)) {
			throw new BackupError(`the backup's manifest lists a file it may not hold: ${JSON.stringify(f?.path)}`);
		}
		seen.add(f.path);
	}
	return m as BackupManifest;
}

/**
 * Extracts `archive` into `dest` (which must not exist yet), checking everything the header of
 * this file lists; resolves with the manifest once every listed file is there with its sha256.
 * On failure `dest` may hold a part: the caller removes it.
 */
export async function extractArchive(archive: string, dest: string): Promise<BackupManifest> {
	let manifest: BackupManifest | null = null;
	const written = new Set<string>();
	fs.mkdirSync(dest, { recursive: false, mode: 0o700 });

	async function consume(source: AsyncIterable<Buffer>): Promise<void> {
		const reader = new ByteReader(source[Symbol.asyncIterator]());
		let pax: Record<string, string> = {};
		for (;;) {
			const block = await reader.read(BLOCK);
			if (!block) throw new BackupError("the archive ends before its end marker: it is truncated");
			if (block.every(b => b === 0)) {
				// The end marker. Read on to the end, so the gzip trailer (its CRC) is checked too.
				while ((await reader.read(BLOCK)) !== null) {
					/* nothing more to take */
				}
				break;
			}
			const h = parseHeader(block);
			const name = pax.path ?? h.name;
			const size = pax.size !== undefined ? Number(pax.size) : h.size;
			pax = {};
			if (!Number.isSafeInteger(size) || size < 0) throw new BackupError("the archive is corrupt (an entry has no valid size)");
			const pad = (BLOCK - (size % BLOCK)) % BLOCK;
			if (h.type === "x") {
				const body = await reader.read(size + pad);
				if (!body) throw new BackupError("the archive ends in the middle of an entry: it is truncated");
				pax = parsePax(body.subarray(0, size));
				continue;
			}
			if (h.type !== "0") throw new BackupError(`the archive holds an entry of a kind a Marquee backup never has (${JSON.stringify(name)})`);
			if (!manifest) {
				if (name !== MANIFEST_NAME) throw new BackupError("this is not a Marquee backup (it does not start with manifest.json)");
				if (size > 64 * 1024 * 1024) throw new BackupError("the backup's manifest is implausibly large");
				const body = await reader.read(size + pad);
				if (!body) throw new BackupError("the archive ends in the middle of its manifest: it is truncated");
				let parsed: unknown;
				try {
					parsed = JSON.parse(body.subarray(0, size).toString("utf8"));
				} catch {
					throw new BackupError("the backup's manifest is not valid JSON: the archive is corrupt");
				}
				manifest = checkManifest(parsed);
				continue;
			}
			const expected = manifest.files.find(f => f.path === name);
			if (!expected || written.has(name)) throw new BackupError(`the archive holds ${JSON.stringify(name)}, which its manifest does not list`);
			if (expected.size !== size) throw new BackupError(`${name} has ${size} bytes in the archive but ${expected.size} in its manifest`);
			const target = path.join(dest, ...name.split("/"));
			fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
			const hash = createHash("sha256");
			const out = fs.createWriteStream(target, { flags: "wx", mode: 0o600 });
			const body = reader.chunks(size);
			await pipeline(
				(async function* () {
					for await (const chunk of body) {
						hash.update(chunk);
						yield chunk;
					}
				})(),
				out
			);
			if (pad && !(await reader.read(pad))) throw new BackupError("the archive ends in the middle of a file: it is truncated");
			if (hash.digest("hex") !== expected.sha256) throw new BackupError(`${name} does not match its sha256 in the manifest: the archive is corrupt`);
			written.add(name);
		}
	}

	try {
		await pipeline(fs.createReadStream(archive), zlib.createGunzip(), consume);
	} catch (err) {
		if (err instanceof BackupError) throw err;
		const code = (err as NodeJS.ErrnoException).code;
		if (code === "Z_BUF_ERROR" || /unexpected end of file/i.test((err as Error).message)) throw new BackupError("the archive is truncated (it ends before its compressed data does)");
		if (code === "Z_DATA_ERROR") {
			throw new BackupError(
				/incorrect header check/i.test((err as Error).message)
					? "this is not a Marquee backup (not a gzip-compressed archive)"
					: `the archive is corrupt (${(err as Error).message})`
			);
		}
		throw err;
	}
	if (!manifest) throw new BackupError("the archive is empty: this is not a Marquee backup");
	const missing = (manifest as BackupManifest).files.filter(f => !written.has(f.path));
	if (missing.length) throw new BackupError(`the archive lacks ${missing.length} file(s) its manifest lists (first: ${missing[0].path}): it is incomplete`);
	return manifest;
}
