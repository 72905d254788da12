import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import type { ServiceBroker } from "moleculer";
import { dependencyChecks, runChecks } from "../../shared/health";
import { acquireStorage, ObjectNotFoundError, releaseStorage, startEmbeddedS3, Storage, tenantKey } from "../../shared/storage";
import { testConfig } from "../helpers/platform";
import { s3Server, type TestServer } from "../helpers/servers";

async function readAll(stream: Readable): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
	return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** `total` random bytes as a stream of 64 KiB chunks, plus their hash. */
function randomStream(total: number): { stream: Readable; hash: string } {
	const data = randomBytes(total);
	const chunks: Buffer[] = [];
	for (let i = 0; i < total; i += 65536) chunks.push(data.subarray(i, i + 65536));
	return { stream: Readable.from(chunks), hash: sha256(data) };
}

describe("storage on the embedded S3 server", () => {
	let server: TestServer & { accessKey: string; secretKey: string };
	let storage: Storage;

	beforeAll(async () => {
		server = await s3Server();
		storage = Storage.fromEndpoint({ endpoint: server.url, accessKey: server.accessKey, secretKey: server.secretKey, bucket: "marquee-test", region: "us-east-1" });
		await storage.ensureBucket();
	});
	afterAll(() => server.stop());

	it("ensureBucket is idempotent", async () => {
		await storage.ensureBucket();
		await storage.ensureBucket();
		await expect(storage.ping()).resolves.toBeUndefined();
	});

	it("round-trips a Buffer: put, stat, get, remove", async () => {
		const key = tenantKey("t1", "media", "hello.txt");
		const body = Buffer.from("hello, screens");
		const { etag } = await storage.put(key, body, body.length, "text/plain");
		expect(etag).toMatch(/^[0-9a-f]{32}$/);
		expect(await storage.stat(key)).toEqual({ size: body.length, contentType: "text/plain" });
		expect(await readAll(await storage.get(key))).toEqual(body);
		await storage.remove(key);
		expect(await storage.stat(key)).toBeNull();
		await expect(storage.get(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
		await expect(storage.remove(key)).resolves.toBeUndefined();
	});

	it("round-trips a stream of a few MB, with and without a known size", async () => {
		const size = 5 * 1024 * 1024 + 123;
		for (const knownSize of [size, undefined]) {
			const key = tenantKey("t1", "media", `big-${knownSize ?? "unknown"}.bin`);
			const { stream, hash } = randomStream(size);
			await storage.put(key, stream, knownSize, "application/octet-stream");
			expect(await storage.stat(key)).toEqual({ size, contentType: "application/octet-stream" });
			expect(sha256(await readAll(await storage.get(key)))).toBe(hash);
		}
	});

	it("uploads streams larger than a part as multipart uploads", async () => {
		const partSize = 5 * 1024 * 1024;
		const small = Storage.fromEndpoint({ endpoint: server.url, accessKey: server.accessKey, secretKey: server.secretKey, bucket: "marquee-test", region: "us-east-1" }, { partSize });
		for (const size of [2 * partSize + 4567, 2 * partSize, partSize, 0]) {
			const key = tenantKey("t1", "media", `multi-${size}.bin`);
			const { stream, hash } = randomStream(size);
			await small.put(key, stream, size, "video/mp4");
			expect(await small.stat(key)).toEqual({ size, contentType: "video/mp4" });
			expect(sha256(await readAll(await small.get(key)))).toBe(hash);
		}
	});

	it("refuses a body whose length differs from the declared size", async () => {
		const key = tenantKey("t1", "media", "short.bin");
		await expect(storage.put(key, Buffer.from("abc"), 4)).rejects.toThrow(/expected 4/);
		await expect(storage.put(key, randomStream(1000).stream, 999)).rejects.toThrow(/expected 999/);
		expect(await storage.stat(key)).toBeNull();
	});

	it("removePrefix removes only that prefix and lists what is left", async () => {
		const keep = [tenantKey("keep", "a.txt"), tenantKey("goneX", "b.txt")];
		const gone = [tenantKey("gone", "a.txt"), tenantKey("gone", "deep", "b.txt"), tenantKey("gone", "deep", "er", "c.txt")];
		for (const key of [...keep, ...gone]) await storage.put(key, Buffer.from(key));
		expect((await storage.list("tenants/gone/")).sort()).toEqual([...gone].sort());
		expect(await storage.removePrefix("tenants/gone/")).toBe(3);
		expect(await storage.list("tenants/gone/")).toEqual([]);
		for (const key of keep) expect(await storage.stat(key)).not.toBeNull();
		expect(await storage.removePrefix("tenants/gone/")).toBe(0);
		await expect(storage.removePrefix("tenants/keep")).rejects.toThrow(/ending in "\/"/);
	});

	it("gives presigned GET URLs that plain fetch can read, up to 300 s", async () => {
		const key = tenantKey("t2", "media", "logo name.png");
		const body = randomBytes(4096);
		await storage.put(key, body, body.length, "image/png");
		const url = await storage.presignedGetUrl(key, 300);
		const res = await fetch(url);
		expect(res.status).toBe(200);
		expect(Buffer.from(await res.arrayBuffer())).toEqual(body);
		await expect(storage.presignedGetUrl(key, 301)).rejects.toThrow(/300/);
		await expect(storage.presignedGetUrl(key, 0)).rejects.toThrow();
		await expect(storage.presignedGetUrl(key, 1.5)).rejects.toThrow();
	});

	it("tenantKey builds tenants/<id>/... and rejects traversal", () => {
		expect(tenantKey("abc", "media", "x.png")).toBe("tenants/abc/media/x.png");
		for (const bad of [["", "x"], ["..", "x"], [".", "x"], ["a/b", "x"], ["abc", ".."], ["abc", "a/../b"], ["abc", ""], ["abc", "a\\b"], ["abc", "a\nb"]]) {
			expect(() => tenantKey(bad[0], ...bad.slice(1))).toThrow(/invalid storage key/);
		}
	});

	it("refuses raw keys with traversal or empty segments", async () => {
		for (const key of ["../escape", "tenants/a/../../x", "/abs", "tenants//a", "tenants/a/", ""]) {
			await expect(storage.put(key, Buffer.from("x"))).rejects.toThrow(/invalid storage key/);
			await expect(storage.stat(key)).rejects.toThrow(/invalid storage key/);
		}
	});

	it("ping fails when the endpoint does not answer", async () => {
		const other = await s3Server();
		const dead = Storage.fromEndpoint({ endpoint: other.url, accessKey: other.accessKey, secretKey: other.secretKey, bucket: "marquee-test", region: "us-east-1" });
		await other.stop();
		await expect(dead.ping()).rejects.toThrow();
	});
});

describe("embedded S3 persistence", () => {
	it("keeps objects across a restart on the same directory", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-s3-restart-"));
		try {
			const key = tenantKey("t3", "media", "kept.txt");
			const first = await startEmbeddedS3(dir, 0);
			const a = Storage.fromEndpoint({ endpoint: first.endpoint, accessKey: first.accessKey, secretKey: first.secretKey, bucket: "marquee", region: "us-east-1" });
			await a.ensureBucket();
			await a.put(key, Buffer.from("still here"), undefined, "text/plain");
			await first.stop();

			const second = await startEmbeddedS3(dir, 0);
			try {
				const b = Storage.fromEndpoint({ endpoint: second.endpoint, accessKey: second.accessKey, secretKey: second.secretKey, bucket: "marquee", region: "us-east-1" });
				await b.ensureBucket();
				expect(await b.stat(key)).toEqual({ size: 10, contentType: "text/plain" });
				expect((await readAll(await b.get(key))).toString()).toBe("still here");
			} finally {
				await second.stop();
			}
		} finally {
			fs.rmSync(dir, { recursive: true, force: true });
		}
	});
});

describe("acquireStorage / releaseStorage", () => {
	it("starts the embedded server under DATA_DIR/s3 for the first user and stops it with the last", async () => {
		const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-shared-s3-"));
		try {
			const config = testConfig({ DATA_DIR: dataDir });
			const storage = await acquireStorage(config);
			expect(await acquireStorage(config)).toBe(storage);
			await storage.ping();
			const key = tenantKey("t9", "content", "a.txt");
			await storage.put(key, Buffer.from("embedded"), undefined, "text/plain");
			expect(fs.readdirSync(path.join(dataDir, "s3"))).toContain("marquee");
			expect((await readAll(await storage.get(key))).toString()).toBe("embedded");
			await releaseStorage(config);
			await storage.ping();
			await releaseStorage(config);
			await expect(storage.ping()).rejects.toThrow();
			// A new user gets a new server on the same files.
			const again = await acquireStorage(config);
			expect((await readAll(await again.get(key))).toString()).toBe("embedded");
			await releaseStorage(config);
		} finally {
			fs.rmSync(dataDir, { recursive: true, force: true });
		}
	});

	it("uses S3_ENDPOINT when set, and readiness checks it", async () => {
		const s3 = await s3Server();
		try {
			const config = testConfig({ S3_ENDPOINT: s3.url, S3_ACCESS_KEY: s3.accessKey, S3_SECRET_KEY: s3.secretKey, S3_BUCKET: "configured" });
			const storage = await acquireStorage(config);
			await storage.ping();
			const checks = dependencyChecks(config, { started: true } as unknown as ServiceBroker);
			expect(Object.keys(checks)).toContain("s3");
			expect((await runChecks(checks)).checks.s3.status).toBe("ok");
			await releaseStorage(config);
		} finally {
			await s3.stop();
		}
	});
});
