/**
 * The backup archive format (shared/backup.ts): what writeArchive writes, extractArchive reads
 * back byte for byte (long paths included), and every kind of bad archive is a BackupError with
 * one clear sentence — tampered bytes, a file the manifest does not list or lists but lacks, a
 * path that climbs out, another format version, a truncated or non-gzip file.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import {
	BACKUP_FORMAT,
	BackupError,
	countNeDbDocuments,
	extractArchive,
	listFiles,
	safeArchivePath,
	sha256File,
	writeArchive,
	type BackupManifest
} from "../../shared/backup";
import { tempDir } from "../helpers/platform";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** An independent ustar writer (no PAX): entries as given, for archives writeArchive would never write. */
function tarOf(entries: Array<{ name: string; data: Buffer; type?: string }>): Buffer {
	const blocks: Buffer[] = [];
	for (const { name, data, type = "0" } of entries) {
		const h = Buffer.alloc(512, 0);
		h.write(name, 0, 100);
		h.write("0000600\0", 100);
		h.write("0000000\0", 108);
		h.write("0000000\0", 116);
		h.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
		h.write("00000000000\0", 136);
		h.write("        ", 148);
		h.write(type, 156);
		h.write("ustar\0", 257);
		h.write("00", 263);
		let sum = 0;
		for (const b of h) sum += b;
		h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
		blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
	}
	blocks.push(Buffer.alloc(1024));
	return zlib.gzipSync(Buffer.concat(blocks));
}

function manifestOf(files: Record<string, Buffer>, overrides: Partial<BackupManifest> = {}): BackupManifest {
	return {
		format: BACKUP_FORMAT,
		version: 1,
		platformVersion: "test",
		createdAt: "2026-03-01T10:00:00.000Z",
		takenAt: "2026-03-01T10:00:00.000Z",
		mode: "offline",
		pid: null,
		documents: {},
		objects: 0,
		analytics: { included: false, tables: [] },
		notes: [],
		files: Object.entries(files).map(([p, data]) => ({ path: p, size: data.length, sha256: sha256(data) })),
		...overrides
	};
}

async function failure(archive: string): Promise<string> {
	const parent = tempDir("backup-x-");
	try {
		await extractArchive(archive, path.join(parent, "out"));
	} catch (err) {
		expect(err).toBeInstanceOf(BackupError);
		return (err as Error).message;
	} finally {
		fs.rmSync(parent, { recursive: true, force: true });
	}
	throw new Error("extracted a bad archive");
}

describe("backup archives", () => {
	const dir = tempDir("backup-archive-");
	const longKey = `s3/marquee/tenants/${"t".repeat(36)}/content/${"c".repeat(36)}/original.png._S3rver_object`;
	const files: Record<string, Buffer> = {
		"db/users.db": Buffer.from('{"_id":"u1","email":"a@example.com"}\n{"_id":"u2","email":"b@example.com"}\n{"$$deleted":true,"_id":"u2"}\n'),
		[longKey]: Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256)),
		"secrets/jwt-secret": Buffer.from("x".repeat(64)),
		"analytics-export/empty.native": Buffer.alloc(0)
	};
	const src = path.join(dir, "src");
	for (const [p, data] of Object.entries(files)) {
		fs.mkdirSync(path.dirname(path.join(src, p)), { recursive: true });
		fs.writeFileSync(path.join(src, p), data);
	}
	const good = path.join(dir, "good.tar.gz");

	beforeAll(() => writeArchive(good, src, manifestOf(files)));
	afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

	it("round-trips every file byte for byte, a path past ustar's 100 characters included", async () => {
		expect(longKey.length).toBeGreaterThan(100);
		const dest = path.join(dir, "restored");
		const manifest = await extractArchive(good, dest);
		expect(manifest.files.map(f => f.path).sort()).toEqual(Object.keys(files).sort());
		expect(listFiles(dest)).toEqual(Object.keys(files).sort());
		for (const [p, data] of Object.entries(files)) expect(await sha256File(path.join(dest, p))).toEqual({ sha256: sha256(data), size: data.length });
		expect(fs.existsSync(`${good}.partial`)).toBe(false);
	});

	it("refuses to write an archive of a file that changed after it was hashed", async () => {
		const out = path.join(dir, "changed.tar.gz");
		const stale = manifestOf({ ...files, "secrets/jwt-secret": Buffer.from("y".repeat(64)) });
		await expect(writeArchive(out, src, stale)).rejects.toThrow("secrets/jwt-secret changed while the backup was being written; run the backup again");
		expect(fs.existsSync(out)).toBe(false);
		expect(fs.existsSync(`${out}.partial`)).toBe(false);
	});

	it("refuses bytes that do not match their sha256", async () => {
		const tampered = path.join(dir, "tampered.tar.gz");
		const manifest = Buffer.from(JSON.stringify(manifestOf(files)));
		const entries = [{ name: "manifest.json", data: manifest }, ...Object.entries(files).filter(([p]) => p !== longKey).map(([name, data]) => ({ name, data }))];
		entries[1] = { name: "db/users.db", data: Buffer.from(files["db/users.db"].toString().replace("a@example.com", "z@example.com")) };
		fs.writeFileSync(tampered, tarOf(entries));
		expect(await failure(tampered)).toBe("db/users.db does not match its sha256 in the manifest: the archive is corrupt");
	});

	it("refuses a file the manifest does not list, and a listed file the archive lacks", async () => {
		const extra = path.join(dir, "extra.tar.gz");
		const small = { "secrets/jwt-secret": files["secrets/jwt-secret"] };
		fs.writeFileSync(extra, tarOf([{ name: "manifest.json", data: Buffer.from(JSON.stringify(manifestOf(small))) }, { name: "secrets/jwt-secret", data: small["secrets/jwt-secret"] }, { name: "db/evil.db", data: Buffer.from("{}") }]));
		expect(await failure(extra)).toBe('the archive holds "db/evil.db", which its manifest does not list');
		const lacking = path.join(dir, "lacking.tar.gz");
		fs.writeFileSync(lacking, tarOf([{ name: "manifest.json", data: Buffer.from(JSON.stringify(manifestOf(small))) }]));
		expect(await failure(lacking)).toBe("the archive lacks 1 file(s) its manifest lists (first: secrets/jwt-secret): it is incomplete");
	});

	it("refuses paths that climb out or leave the four roots, links, and another format version", async () => {
		for (const bad of ["../etc/passwd", "/etc/passwd", "db/../../x", "db//x", "mail/x.eml", "db", "db/./x"]) expect(safeArchivePath(bad)).toBe(false);
		const climbing = path.join(dir, "climbing.tar.gz");
		fs.writeFileSync(climbing, tarOf([{ name: "manifest.json", data: Buffer.from(JSON.stringify(manifestOf({ "db/../../x": Buffer.from("x") }))) }]));
		expect(await failure(climbing)).toBe('the backup\'s manifest lists a file it may not hold: "db/../../x"');
		const link = path.join(dir, "link.tar.gz");
		fs.writeFileSync(link, tarOf([{ name: "manifest.json", data: Buffer.from(JSON.stringify(manifestOf({}))) }, { name: "db/x.db", data: Buffer.alloc(0), type: "2" }]));
		expect(await failure(link)).toBe('the archive holds an entry of a kind a Marquee backup never has ("db/x.db")');
		const future = path.join(dir, "future.tar.gz");
		fs.writeFileSync(future, tarOf([{ name: "manifest.json", data: Buffer.from(JSON.stringify(manifestOf({}, { version: 2 }))) }]));
		expect(await failure(future)).toBe("this backup has format version 2; this Marquee reads version 1 (restore it with the Marquee that wrote it)");
		const other = path.join(dir, "other.tar.gz");
		fs.writeFileSync(other, tarOf([{ name: "readme.txt", data: Buffer.from("hello") }]));
		expect(await failure(other)).toBe("this is not a Marquee backup (it does not start with manifest.json)");
	});

	it("refuses truncated, bit-flipped and non-gzip files", async () => {
		const bytes = fs.readFileSync(good);
		const cut = path.join(dir, "cut.tar.gz");
		fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
		expect(await failure(cut)).toMatch(/^the archive (is truncated|ends)/);
		const plain = path.join(dir, "plain.txt");
		fs.writeFileSync(plain, "not an archive at all");
		expect(await failure(plain)).toBe("this is not a Marquee backup (not a gzip-compressed archive)");
		const flipped = path.join(dir, "flipped.tar.gz");
		const copy = Buffer.from(bytes);
		copy[Math.floor(copy.length / 2)] ^= 0x55;
		fs.writeFileSync(flipped, copy);
		expect(await failure(flipped)).toMatch(/corrupt/);
	});

	it("counts NeDB documents as NeDB loads them: the last line of an id wins, deletions and index lines do not count", () => {
		expect(countNeDbDocuments(files["db/users.db"].toString())).toBe(1);
		expect(countNeDbDocuments('{"_id":"a","n":1}\n{"_id":"a","n":2}\n{"$$indexCreated":{"fieldName":"email","unique":true}}\n{"_id":"b"}\n')).toBe(2);
	});
});
