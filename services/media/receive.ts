/**
 * Receives an upload stream into a temporary file, never holding it in memory: the type is
 * decided from the first bytes (not the client's word), the SHA-256 and size are computed on
 * the way, and the per-type size limit and the tenant's remaining quota stop the transfer the
 * moment they are crossed. Nothing reaches object storage until the file has passed.
 *
 * Every way an upload can end settles the promise, closes the temporary file and removes it
 * unless it was received whole: success, a refused type, size or quota, a failing disk, the
 * stream's own error (the gateway fails it when the client goes away mid-upload, see
 * services/api.service.ts), and silence: a source that delivers nothing for `idleMs` (a client
 * that stopped sending, a gateway node that vanished) is abandoned with a 400. Uploads are timed
 * on idleness only, never on their total duration: a 2 GiB video on a slow link is fine.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { Readable, Transform, type TransformCallback } from "node:stream";
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

/**
 * An upload that delivers no bytes for this long is abandoned. Below the gateway's socket idle
 * limit (120 s), so the client gets this answer rather than a closed connection.
 */
export const UPLOAD_IDLE_MS = 60_000;

export interface ReceiveOptions {
	/** Abandon the upload when no bytes arrive for this long, in ms. Default UPLOAD_IDLE_MS. */
	idleMs?: number;
}

/** Optional settings of the media service for uploads (tests shorten the limit and pick the directory). */
export interface UploadSettings {
	/** `ReceiveOptions.idleMs`. */
	uploadIdleMs?: number;
	/** Where uploads are received before they are stored; default `os.tmpdir()`. */
	uploadDir?: string;
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

	constructor(
		private readonly limits: ReceiveLimits,
		/** Called for every chunk that arrives (the idle timer). */
		private readonly onChunk: () => void
	) {
		super();
	}

	private limitFor(sniffed: Sniffed): number {
		return sniffed.type === "image" ? this.limits.maxImageBytes : this.limits.maxVideoBytes;
	}

	override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
		this.onChunk();
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

/** An upload stream watched for errors since the action got it (see `watchUpload`). */
export interface WatchedUpload {
	readonly stream: Readable;
	/** The first error the stream reported, if any. */
	readonly error: unknown;
}

/**
 * Call first thing in the action, before anything is awaited. busboy reports a truncated or
 * aborted body by emitting 'error' on the file stream, without destroying it, and then ends it
 * (and a transporter's stream proxy emits a sender's error the same way): emitted while the
 * action still awaits something else, the error would reach no one (over a transporter: crash
 * the process, as an 'error' nobody listens to) and the truncated file would be received as if
 * it were whole. `receiveUpload` rethrows what was seen here. The listener stays for the stream's
 * life: a late error (a sender's, after the upload was refused) has somewhere to go.
 */
export function watchUpload(stream: Readable): WatchedUpload {
	let error: unknown = null;
	stream.on("error", (err: unknown) => {
		error ??= err ?? new Error("Upload stream failed");
	});
	return {
		stream,
		get error() {
			return error;
		}
	};
}

function stalledError(idleMs: number) {
	const idleSeconds = Math.ceil(idleMs / 1000);
	return Errors.badRequest(`Upload stalled: no data received for ${idleSeconds} s`, { idleSeconds });
}

/**
 * Streams `source` into `file` (created, never overwritten); rejects with a 415, 413, 402 or 422
 * AppError, a 400 when the source stalls for `idleMs`, or the stream's own error. Whenever it
 * rejects, the file is closed and removed before it does.
 */
export async function receiveUpload(upload: Readable | WatchedUpload, file: string, limits: ReceiveLimits, options: ReceiveOptions = {}): Promise<Received> {
	const watched = upload instanceof Readable ? watchUpload(upload) : upload;
	// The body already failed (truncated, or the client went away) while the action was busy.
	if (watched.error) throw watched.error;
	return receiveInto(watched.stream, file, limits, options.idleMs ?? UPLOAD_IDLE_MS);
}

async function receiveInto(source: Readable, file: string, limits: ReceiveLimits, idleMs: number): Promise<Received> {
	// A source that just stops (no end, no error) would hold the pipeline, and the file, forever.
	const idle = setTimeout(() => inspector.destroy(stalledError(idleMs)), idleMs);
	const inspector = new Inspector(limits, () => idle.refresh());
	const sink = fs.createWriteStream(file, { flags: "wx", mode: 0o600 });
	let created = false;
	sink.once("open", () => (created = true));
	try {
		await pipeline(source, inspector, sink);
	} catch (err) {
		// pipeline destroyed every stream; the file's descriptor is released once the sink closes
		// (it may still be opening), and only then is removing the file final.
		if (!sink.closed) await new Promise<void>(resolve => sink.once("close", () => resolve()));
		// Keep reading the request so the client gets the answer instead of a reset connection.
		if (!source.destroyed) source.resume();
		// A file that was there already (EEXIST) is not ours to remove.
		if (created) await fs.promises.rm(file, { force: true });
		throw err;
	} finally {
		clearTimeout(idle);
	}
	return { sniffed: inspector.sniffed as Sniffed, size: inspector.size, sha256: inspector.digest() };
}
