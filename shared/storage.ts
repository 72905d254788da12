/**
 * The one storage code path: media objects live in an S3 bucket reached with the `minio` client.
 * Production points it at MinIO/S3 (`S3_ENDPOINT`); the embedded default and the tests point it at
 * an in-process `s3rver` (`startEmbeddedS3`) that keeps its files under a directory and listens on
 * 127.0.0.1 only.
 *
 * Keys are `tenants/<tenantId>/...` built by `tenantKey`, which refuses traversal; every method
 * also checks the key it is given, because s3rver maps keys straight onto file paths.
 *
 * Note on the embedded server: s3rver accepts anonymous requests and does not verify V4
 * signatures (it only checks the access key id and a presigned URL's expiry). That is why it binds
 * to 127.0.0.1; anything a remote client must fetch goes through the gateway.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import * as Minio from "minio";

export interface StorageConfig {
	endpoint: string | null;
	accessKey: string;
	secretKey: string;
	bucket: string;
	region: string;
}

export interface EmbeddedS3 {
	endpoint: string;
	accessKey: string;
	secretKey: string;
	stop(): Promise<void>;
}

/** s3rver's built-in account; the embedded server knows no other. */
export const EMBEDDED_S3_CREDENTIALS = { accessKey: "S3RVER", secretKey: "S3RVER" } as const;

/** Longest lifetime of a presigned URL. */
export const MAX_PRESIGN_SECONDS = 300;

/** Thrown by `get` when the object does not exist. */
export class ObjectNotFoundError extends Error {
	constructor(readonly key: string) {
		super(`object not found: ${key}`);
		this.name = "ObjectNotFoundError";
	}
}

/** The part of s3rver 3.7 this module uses (the package ships no typings). */
interface S3rverInstance {
	run(): Promise<AddressInfo>;
	close(): Promise<void>;
	httpServer?: Server;
}
type S3rverConstructor = new (options: {
	directory: string;
	port: number;
	address: string;
	silent: boolean;
	vhostBuckets: boolean;
	resetOnClose: boolean;
}) => S3rverInstance;

/**
 * Starts s3rver on 127.0.0.1 (`port` 0 = a free port) storing its files under `directory`.
 * Objects survive a restart on the same directory.
 */
export async function startEmbeddedS3(directory: string, port = 0): Promise<EmbeddedS3> {
	await fs.mkdir(directory, { recursive: true });
	// Loaded lazily: production never needs it. It has no typings, hence require + a narrow type.
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const S3rver = require("s3rver") as S3rverConstructor;
	const server = new S3rver({ directory, port, address: "127.0.0.1", silent: true, vhostBuckets: false, resetOnClose: false });
	const address = await server.run();
	let stopped = false;
	return {
		endpoint: `http://127.0.0.1:${address.port}`,
		...EMBEDDED_S3_CREDENTIALS,
		async stop() {
			if (stopped) return;
			stopped = true;
			const closing = server.close();
			server.httpServer?.closeAllConnections();
			await closing;
		}
	};
}

/** "tenants/<tenantId>/<part>/..." — every piece must be one non-empty path segment. */
export function tenantKey(tenantId: string, ...parts: string[]): string {
	for (const piece of [tenantId, ...parts]) {
		if (typeof piece !== "string" || !isSegment(piece)) {
			throw new Error(`invalid storage key segment: ${JSON.stringify(piece)}`);
		}
	}
	return ["tenants", tenantId, ...parts].join("/");
}

function isSegment(piece: string): boolean {
	// eslint-disable-next-line no-control-regex
	return piece !== "" && piece !== "." && piece !== ".." && !/[/\\\u0000-\u001f\u007f]/.test(piece);
}

/** A whole key: 1..1024 bytes of valid segments separated by single slashes. */
function checkKey(key: string): string {
	if (typeof key !== "string" || Buffer.byteLength(key) > 1024 || !key.split("/").every(isSegment)) {
		throw new Error(`invalid storage key: ${JSON.stringify(key)}`);
	}
	return key;
}

/** A listing prefix: "" or valid segments, optionally ending in "/". */
function checkPrefix(prefix: string): string {
	if (prefix !== "") checkKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
	return prefix;
}

function errorCode(err: unknown): string | undefined {
	if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
	return undefined;
}

const MISSING_CODES = new Set(["NotFound", "NoSuchKey"]);

/** Default part size of multipart uploads (10,000 parts × 16 MiB ≈ 160 GiB). */
const PART_SIZE = 16 * 1024 * 1024;

function checkSize(actual: number, expected: number | undefined): void {
	if (expected !== undefined && actual !== expected) throw new Error(`object body has ${actual} bytes, expected ${expected}`);
}

/** Re-chunks a stream into buffers of exactly `size` bytes (the last one shorter, never empty). */
async function* fixedChunks(stream: Readable, size: number): AsyncGenerator<Buffer> {
	let pending: Buffer[] = [];
	let pendingBytes = 0;
	for await (const chunk of stream) {
		let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array | string);
		while (pendingBytes + buf.length >= size) {
			const take = size - pendingBytes;
			yield Buffer.concat([...pending, buf.subarray(0, take)]);
			buf = buf.subarray(take);
			pending = [];
			pendingBytes = 0;
		}
		if (buf.length > 0) {
			pending.push(buf);
			pendingBytes += buf.length;
		}
	}
	if (pendingBytes > 0) yield Buffer.concat(pending);
}

export class Storage {
	private readonly partSize: number;

	/** `options.partSize`: multipart part size in bytes (default 16 MiB; S3 needs ≥ 5 MiB). */
	constructor(
		readonly client: Minio.Client,
		readonly bucket: string,
		options: { partSize?: number } = {}
	) {
		this.partSize = options.partSize ?? PART_SIZE;
	}

	/** `endpoint` is "http(s)://host[:port]"; path-style requests, so any S3-compatible server works. */
	static fromEndpoint(cfg: StorageConfig & { endpoint: string }, options: { partSize?: number } = {}): Storage {
		const url = new URL(cfg.endpoint);
		const useSSL = url.protocol === "https:";
		const client = new Minio.Client({
			endPoint: url.hostname.replace(/^\[(.*)\]$/, "$1"),
			port: url.port ? Number(url.port) : useSSL ? 443 : 80,
			useSSL,
			accessKey: cfg.accessKey,
			secretKey: cfg.secretKey,
			region: cfg.region,
			pathStyle: true
		});
		return new Storage(client, cfg.bucket, options);
	}

	/** Creates the bucket when it is missing; safe to call again. */
	async ensureBucket(): Promise<void> {
		if (await this.client.bucketExists(this.bucket)) return;
		try {
			await this.client.makeBucket(this.bucket);
		} catch (err) {
			const code = errorCode(err);
			if (code !== "BucketAlreadyOwnedByYou" && code !== "BucketAlreadyExists") throw err;
		}
	}

	/**
	 * Stores an object. A stream is read in parts of `partSize` bytes: one part → a single PUT, more
	 * → a multipart upload (our own loop: minio's would first list incomplete uploads, which s3rver
	 * does not implement, and would buffer up to 64 MB). When `size` is given the byte count must
	 * match it, else the upload is refused.
	 */
	async put(key: string, body: Buffer | Readable, size?: number, contentType = "application/octet-stream"): Promise<{ etag: string }> {
		checkKey(key);
		const headers = { "Content-Type": contentType };
		if (Buffer.isBuffer(body)) {
			checkSize(body.length, size);
			return { etag: (await this.client.putObject(this.bucket, key, body, body.length, headers)).etag };
		}
		const parts = fixedChunks(body, this.partSize)[Symbol.asyncIterator]();
		const first = await parts.next();
		const firstPart = first.done ? Buffer.alloc(0) : first.value;
		if (firstPart.length < this.partSize) {
			checkSize(firstPart.length, size);
			return { etag: (await this.client.putObject(this.bucket, key, firstPart, firstPart.length, headers)).etag };
		}
		const uploadID = await this.client.initiateNewMultipartUpload(this.bucket, key, headers);
		try {
			const etags: { part: number; etag: string }[] = [];
			let total = 0;
			for (let part: IteratorResult<Buffer> = first, partNumber = 1; !part.done; part = await parts.next(), partNumber++) {
				const payload = part.value;
				total += payload.length;
				const md5 = createHash("md5").update(payload).digest("base64");
				const partHeaders = { "Content-Length": payload.length, "Content-MD5": md5 };
				const uploaded = await this.client.uploadPart({ bucketName: this.bucket, objectName: key, uploadID, partNumber, headers: partHeaders }, payload);
				etags.push({ part: partNumber, etag: uploaded.etag });
			}
			checkSize(total, size);
			return { etag: (await this.client.completeMultipartUpload(this.bucket, key, uploadID, etags)).etag };
		} catch (err) {
			await parts.return?.(undefined); // stop reading (destroys the source stream)
			await this.client.abortMultipartUpload(this.bucket, key, uploadID).catch(() => {
				/* best effort: s3rver cannot abort; S3/MinIO lifecycle rules clean up the rest */
			});
			throw err;
		}
	}

	/** The object's bytes; throws ObjectNotFoundError when it does not exist. */
	async get(key: string): Promise<Readable> {
		try {
			return await this.client.getObject(this.bucket, checkKey(key));
		} catch (err) {
			if (MISSING_CODES.has(errorCode(err) ?? "")) throw new ObjectNotFoundError(key);
			throw err;
		}
	}

	/** Size and content type, or null when the object does not exist. */
	async stat(key: string): Promise<{ size: number; contentType: string } | null> {
		try {
			const info = await this.client.statObject(this.bucket, checkKey(key));
			const contentType: unknown = info.metaData["content-type"];
			return { size: info.size, contentType: typeof contentType === "string" ? contentType : "application/octet-stream" };
		} catch (err) {
			if (MISSING_CODES.has(errorCode(err) ?? "")) return null;
			throw err;
		}
	}

	/** Removes one object; removing a missing object is not an error. */
	async remove(key: string): Promise<void> {
		await this.client.removeObject(this.bucket, checkKey(key));
	}

	/** Removes every object under `prefix` (which must end in "/", e.g. a tenant's root); returns how many. */
	async removePrefix(prefix: string): Promise<number> {
		if (!prefix.endsWith("/") || prefix === "/") throw new Error(`removePrefix needs a prefix ending in "/": ${JSON.stringify(prefix)}`);
		const keys = await this.list(prefix);
		for (let i = 0; i < keys.length; i += 1000) {
			const results = await this.client.removeObjects(this.bucket, keys.slice(i, i + 1000));
			const failed = results.find(r => r?.Error);
			if (failed?.Error) throw new Error(`could not remove ${failed.Error.Key ?? "an object"}: ${failed.Error.Message ?? failed.Error.Code ?? "unknown error"}`);
		}
		return keys.length;
	}

	/** Every key under `prefix` (recursively), in the server's order. */
	async list(prefix: string): Promise<string[]> {
		const keys: string[] = [];
		const stream = this.client.listObjectsV2(this.bucket, checkPrefix(prefix), true);
		for await (const item of stream) {
			if (item.name !== undefined) keys.push(item.name);
		}
		return keys;
	}

	/** A GET URL valid for `expirySec` seconds (1..300). */
	async presignedGetUrl(key: string, expirySec: number): Promise<string> {
		if (!Number.isInteger(expirySec) || expirySec < 1 || expirySec > MAX_PRESIGN_SECONDS) {
			throw new Error(`presigned URL expiry must be a whole number of seconds from 1 to ${MAX_PRESIGN_SECONDS}, got ${expirySec}`);
		}
		return this.client.presignedGetObject(this.bucket, checkKey(key), expirySec);
	}

	/** Throws when the endpoint does not answer (within `timeoutMs`) or the bucket is missing. */
	async ping(timeoutMs = 3000): Promise<void> {
		let timer: NodeJS.Timeout | undefined;
		const timeout = new Promise<never>((_, reject) => {
			timer = setTimeout(() => reject(new Error(`storage did not answer within ${timeoutMs} ms`)), timeoutMs);
		});
		try {
			const exists = await Promise.race([this.client.bucketExists(this.bucket), timeout]);
			if (!exists) throw new Error(`bucket "${this.bucket}" does not exist`);
		} finally {
			clearTimeout(timer);
		}
	}
}

interface PooledStorage {
	users: number;
	ready: Promise<{ storage: Storage; embedded: EmbeddedS3 | null }>;
}

const pool = new Map<string, PooledStorage>();

function poolKey(config: { dataDir: string; s3: StorageConfig }): string {
	return config.s3.endpoint ? `${config.s3.endpoint}|${config.s3.bucket}` : `embedded|${config.dataDir}|${config.s3.bucket}`;
}

/**
 * The storage of a config, shared by the services of a process: the configured S3/MinIO, or an
 * embedded S3 server under `DATA_DIR/s3` (listening on 127.0.0.1 only) started by the first
 * user. The bucket exists once this resolves. Every acquire is paired with a `releaseStorage`;
 * the embedded server stops with its last user.
 */
export function acquireStorage(config: { dataDir: string; s3: StorageConfig }): Promise<Storage> {
	const key = poolKey(config);
	let entry = pool.get(key);
	if (!entry) {
		const ready = (async () => {
			let embedded: EmbeddedS3 | null = null;
			let storage: Storage;
			if (config.s3.endpoint) {
				storage = Storage.fromEndpoint({ ...config.s3, endpoint: config.s3.endpoint });
			} else {
				embedded = await startEmbeddedS3(path.join(config.dataDir, "s3"));
				storage = Storage.fromEndpoint({ ...config.s3, ...embedded });
			}
			await storage.ensureBucket();
			return { storage, embedded };
		})();
		entry = { users: 0, ready };
		pool.set(key, entry);
		ready.catch(() => pool.delete(key));
	}
	entry.users += 1;
	return entry.ready.then(r => r.storage);
}

export async function releaseStorage(config: { dataDir: string; s3: StorageConfig }): Promise<void> {
	const key = poolKey(config);
	const entry = pool.get(key);
	if (!entry) return;
	entry.users -= 1;
	if (entry.users > 0) return;
	pool.delete(key);
	const { embedded } = await entry.ready.catch(() => ({ embedded: null }));
	await embedded?.stop();
}
