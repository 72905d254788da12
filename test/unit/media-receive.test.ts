/**
 * receiveUpload: every way an upload ends settles the promise, closes the temporary file and
 * removes it unless the upload was received whole. Descriptors are counted in /proc/self/fd;
 * the idle limit runs on Jest's fake clock, so nothing here depends on how fast the machine is.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { AppError } from "../../shared/errors";
import { receiveUpload, UPLOAD_IDLE_MS, watchUpload, type ReceiveLimits } from "../../services/media/receive";
import { tempDir } from "../helpers/platform";

const LIMITS: ReceiveLimits = { maxImageBytes: 1024 * 1024, maxVideoBytes: 4 * 1024 * 1024, quotaBytes: 2 * 1024 * 1024, quotaLimit: 3 * 1024 * 1024 };
/** A PNG's signature and IHDR chunk, then filler: a PNG as far as the type check goes. */
const PNG_HEAD = Buffer.from("89504e470d0a1a0a0000000d49484452000000400000004008020000002512", "hex");
const png = (size: number) => Buffer.concat([PNG_HEAD, Buffer.alloc(size - PNG_HEAD.length, 7)]);
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const openFds = () => fs.readdirSync("/proc/self/fd").length;
/** Lets streams and file system callbacks run (not faked by the fake clock below). */
const settle = () => new Promise(resolve => setImmediate(resolve));

/** Lets I/O run until `file` exists with `size` bytes (the upload has really begun). */
async function written(file: string, size: number): Promise<void> {
	// Turns of the event loop, not time (the clock is fake): plenty for a loaded machine's disk.
	for (let i = 0; i < 1_000_000; i++) {
		if (fs.existsSync(file) && fs.statSync(file).size >= size) return;
		await settle();
	}
	throw new Error(`${file} never got ${size} bytes`);
}

/** `data` in chunks of `size`. */
function chunked(data: Buffer, size = 16 * 1024): Readable {
	const chunks: Buffer[] = [];
	for (let at = 0; at < data.length; at += size) chunks.push(data.subarray(at, at + size));
	return Readable.from(chunks);
}

function errorOf(promise: Promise<unknown>): Promise<unknown> {
	return promise.then(
		() => {
			throw new Error("expected a rejection");
		},
		(err: unknown) => err
	);
}

describe("receiveUpload", () => {
	let dir: string;
	let file: string;
	let fdsBefore: number;

	beforeEach(() => {
		dir = tempDir("marquee-receive-");
		file = path.join(dir, "marquee-upload-test");
		fdsBefore = openFds();
	});
	afterEach(() => {
		jest.useRealTimers();
		fs.rmSync(dir, { recursive: true, force: true });
	});

	/** Nothing left behind: no file, no extra descriptor. */
	function expectCleanedUp(): void {
		expect(fs.readdirSync(dir)).toEqual([]);
		expect(openFds()).toBeLessThanOrEqual(fdsBefore);
	}

	it("receives a whole upload: type, size and sha256, the file written and closed", async () => {
		const data = png(200_000);
		const received = await receiveUpload(chunked(data), file, LIMITS);
		expect(received).toEqual({ sniffed: { mimeType: "image/png", type: "image", extension: "png" }, size: data.length, sha256: sha256(data) });
		expect(fs.readFileSync(file).equals(data)).toBe(true);
		expect(openFds()).toBeLessThanOrEqual(fdsBefore);
	});

	it.each<[string, Buffer, number, string]>([
		["a type that is not allowed (415)", Buffer.from("just some text, certainly not an image ".repeat(10)), 415, "UNSUPPORTED_MEDIA_TYPE"],
		["an image over its size limit (413)", png(LIMITS.maxImageBytes + 1), 413, "PAYLOAD_TOO_LARGE"],
		["an empty file (422)", Buffer.alloc(0), 422, "VALIDATION_ERROR"]
	])("refuses %s and leaves nothing behind", async (_what, data, code, type) => {
		const err = await errorOf(receiveUpload(chunked(data), file, LIMITS));
		expect(err).toBeInstanceOf(AppError);
		expect(err).toMatchObject({ code, type });
		expectCleanedUp();
	});

	it("refuses an upload past the tenant's remaining quota (402) and leaves nothing behind", async () => {
		const err = await errorOf(receiveUpload(chunked(png(300_000)), file, { ...LIMITS, quotaBytes: 100_000 }));
		expect(err).toMatchObject({ code: 402, type: "QUOTA_EXCEEDED", data: { resource: "storageBytes", limit: LIMITS.quotaLimit } });
		expectCleanedUp();
	});

	it("a source that fails mid-file (the gateway's when the client goes away) rejects with its error and leaves nothing behind", async () => {
		const source = new PassThrough();
		const receiving = receiveUpload(source, file, LIMITS);
		source.write(png(50_000));
		await written(file, 50_000);
		source.destroy(new Error("Part terminated early due to unexpected end of multipart data"));
		expect(await errorOf(receiving)).toMatchObject({ message: expect.stringMatching(/terminated early/) });
		expectCleanedUp();
	});

	it("a source destroyed without an error (a reset transport) rejects and leaves nothing behind", async () => {
		const source = new PassThrough();
		const receiving = receiveUpload(source, file, LIMITS);
		source.write(png(50_000));
		await written(file, 50_000);
		source.destroy();
		expect(await errorOf(receiving)).toMatchObject({ code: "ERR_STREAM_PREMATURE_CLOSE" });
		expectCleanedUp();
	});

	it("an error the stream reported while the action was still busy is not lost: the truncated file is not taken for a whole one", async () => {
		// busboy emits 'error' on the file stream (without destroying it) and then ends it.
		const source = new PassThrough();
		const watched = watchUpload(source);
		source.write(png(5_000));
		source.emit("error", new Error("Part terminated early due to unexpected end of multipart data"));
		source.end();
		await settle();
		expect(await errorOf(receiveUpload(watched, file, LIMITS))).toMatchObject({ message: expect.stringMatching(/terminated early/) });
		expectCleanedUp();
	});

	it("a file that cannot be written (the disk side fails) rejects and leaves nothing behind", async () => {
		const err = await errorOf(receiveUpload(chunked(png(50_000)), path.join(dir, "missing", "upload"), LIMITS));
		expect(err).toMatchObject({ code: "ENOENT" });
		expectCleanedUp();
	});

	it("never overwrites an existing file (and leaves it alone)", async () => {
		fs.writeFileSync(file, "someone else's");
		expect(await errorOf(receiveUpload(chunked(png(50_000)), file, LIMITS))).toMatchObject({ code: "EEXIST" });
		expect(fs.readFileSync(file, "utf8")).toBe("someone else's");
	});

	describe("idle limit (fake clock)", () => {
		beforeEach(() => {
			jest.useFakeTimers({ doNotFake: ["nextTick", "setImmediate", "queueMicrotask"] });
		});

		it("a source that goes silent (no end, no error) is abandoned with a 400 after the idle limit; the file is closed and removed", async () => {
			const source = new PassThrough();
			const receiving = receiveUpload(source, file, LIMITS, { idleMs: 5_000 });
			const outcome = errorOf(receiving);
			source.write(png(10_000));
			await written(file, 10_000);
			jest.advanceTimersByTime(4_999);
			await settle();
			expect(fs.existsSync(file)).toBe(true);
			jest.advanceTimersByTime(1);
			const err = await outcome;
			expect(err).toBeInstanceOf(AppError);
			expect(err).toMatchObject({ code: 400, type: "BAD_REQUEST", message: "Upload stalled: no data received for 5 s", data: { idleSeconds: 5 } });
			expect(source.destroyed).toBe(true);
			expectCleanedUp();
		});

		it("an upload that keeps moving is never cut, however long it takes in total", async () => {
			const data = png(100 * 1024);
			const source = new PassThrough();
			const receiving = receiveUpload(source, file, LIMITS, { idleMs: 5_000 });
			// 100 pieces, 4 s apart: 400 s in all, never 5 s without data.
			for (let at = 0; at < data.length; at += 1024) {
				source.write(data.subarray(at, at + 1024));
				await settle();
				jest.advanceTimersByTime(4_000);
			}
			source.end();
			const received = await receiving;
			expect(received.sha256).toBe(sha256(data));
		});

		it("waits UPLOAD_IDLE_MS by default, below the gateway's 120 s socket idle limit", async () => {
			expect(UPLOAD_IDLE_MS).toBeLessThan(120_000);
			const source = new PassThrough();
			const outcome = errorOf(receiveUpload(source, file, LIMITS));
			source.write(png(1_000));
			await written(file, 1_000);
			jest.advanceTimersByTime(UPLOAD_IDLE_MS - 1);
			await settle();
			expect(fs.existsSync(file)).toBe(true);
			jest.advanceTimersByTime(1);
			expect(await outcome).toMatchObject({ code: 400 });
			expectCleanedUp();
		});
	});
});
