/**
 * Receives an upload stream into a temporary file, never holding it in memory: the type is
 * decided from the first bytes (not the client's word), the SHA-256 and size are computed on
 * the way, and the per-type size limit and the tenant's remaining quota stop the transfer the
 * moment they are crossed. Nothing reaches object storage until the file has passed.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Errors } from "../../shared/errors";
import { sniff, SNIFF_BYTES, type Sniffed } from "./sniff";

export interface ReceiveLimits {
	maxImageBytes: number;
	maxVideoBytes: number;
	/** Bytes the tenant may still store. */
	quotaBytes: number;
	/** The plan's limit, for the 402's data. */
	quotaLimit: number;
}

export interface Received {
	sniffed: Sniffed;
	size: number;
	sha256: string;
}

class Inspector extends Transform {
	private head = Buffer.alloc(0);
	private readonly hash = createHash("sha256");
	sniffed: Sniffed | null = null;
	size = 0;

	constructor(private readonly limits: ReceiveLimits) {
		super();
	}

	private limitFor(sniffed: Sniffed): number {
		return sniffed.type === "image" ? this.limits.maxImageBytes : this.limits.maxVideoBytes;
	}

	override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
		this.size += chunk.length;
		this.hash.update(chunk);
		if (!this.sniffed) {
			this.head = Buffer.concat([this.head, chunk]);
			if (this.head.length < SNIFF_BYTES) return done();
			if (!this.decide()) return done(this.unsupported());
			const held = this.head;
			this.head = Buffer.alloc(0);
			return this.guard(done, held);
		}
		this.guard(done, chunk);
	}

	override _flush(done: TransformCallback): void {
		if (!this.sniffed) {
			if (this.size === 0) return done(Errors.validation([{ field: "file", message: "is empty", type: "required" }]));
			if (!this.decide()) return done(this.unsupported());
			this.push(this.head);
		}
		done();
	}

	private decide(): boolean {
		this.sniffed = sniff(this.head);
		return this.sniffed !== null;
	}

	private unsupported() {
		return Errors.unsupportedMediaType("Only JPEG, PNG, WebP, GIF, MP4 and WebM files are accepted", {
			accepted: ["image/jpeg", "image/png", "image/webp", "image/gif", "video/mp4", "video/webm"]
		});
	}

	private guard(done: TransformCallback, chunk: Buffer): void {
		const sniffed = this.sniffed as Sniffed;
		const limit = this.limitFor(sniffed);
		if (this.size > limit) return done(Errors.payloadTooLarge(`A ${sniffed.type} may be at most ${limit} bytes`, { limit, type: sniffed.type }));
		if (this.size > this.limits.quotaBytes) {
			return done(
				Errors.quotaExceeded("This upload would exceed your plan's storage", {
					resource: "storageBytes",
					limit: this.limits.quotaLimit,
					current: this.limits.quotaLimit - this.limits.quotaBytes
				})
			);
		}
		done(null, chunk);
	}

	digest(): string {
		return this.hash.digest("hex");
	}
}

/** Streams `source` into `file`; rejects with a 415, 413, 402 or 422 AppError, or the stream's own error. */
export async function receiveUpload(source: Readable, file: string, limits: ReceiveLimits): Promise<Received> {
	const inspector = new Inspector(limits);
	try {
		await pipeline(source, inspector, fs.createWriteStream(file, { mode: 0o600 }));
	} catch (err) {
		// Keep reading the request so the client gets the answer instead of a reset connection.
		if (!source.destroyed) source.resume();
		await fs.promises.rm(file, { force: true });
		throw err;
	}
	return { sniffed: inspector.sniffed as Sniffed, size: inspector.size, sha256: inspector.digest() };
}
