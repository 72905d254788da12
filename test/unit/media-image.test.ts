import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import sharp, { type Sharp } from "sharp";
import { ImageRejected, MAX_INPUT_PIXELS, probeImage } from "../../services/media/image";
import { sniff } from "../../services/media/sniff";

type Format = "png" | "jpeg" | "webp" | "gif";

function solid(width: number, height: number, background = "#3366cc"): Sharp {
	return sharp({ create: { width, height, channels: 3, background } });
}

async function make(format: Format, width: number, height: number): Promise<Buffer> {
	return solid(width, height).toFormat(format).toBuffer();
}

/** A JPEG of random-looking pixels, so that half of it is really half of the image data. */
async function noisyJpeg(width: number, height: number): Promise<Buffer> {
	return sharp({ create: { width, height, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128, sigma: 60 } } })
		.jpeg({ quality: 90 })
		.toBuffer();
}

async function animated(format: "gif" | "webp"): Promise<Buffer> {
	const frames = await Promise.all(["#ff0000", "#00ff00", "#0000ff"].map(c => solid(600, 300, c).png().toBuffer()));
	return sharp(frames, { join: { animated: true } }).toFormat(format).toBuffer();
}

function pngChunk(type: string, data: Buffer): Buffer {
	const typeAndData = Buffer.concat([Buffer.from(type, "latin1"), data]);
	const length = Buffer.alloc(4);
	length.writeUInt32BE(data.length);
	const crc = Buffer.alloc(4);
	crc.writeUInt32BE(zlib.crc32(typeAndData));
	return Buffer.concat([length, typeAndData, crc]);
}

/** A valid-looking PNG whose IHDR declares width × height RGB pixels, with (far too little) data. */
function declaredPng(width: number, height: number): Buffer {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(width, 0);
	ihdr.writeUInt32BE(height, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // colour type RGB
	return Buffer.concat([
		Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
		pngChunk("IHDR", ihdr),
		pngChunk("IDAT", zlib.deflateSync(Buffer.alloc(1 + 3 * Math.min(width, 1000)))),
		pngChunk("IEND", Buffer.alloc(0))
	]);
}

async function rejection(promise: Promise<unknown>): Promise<ImageRejected> {
	const err = await promise.then(() => null, (e: unknown) => e);
	expect(err).toBeInstanceOf(ImageRejected);
	return err as ImageRejected;
}

describe("probeImage", () => {
	it("documents a 40 MP default limit", () => {
		expect(MAX_INPUT_PIXELS).toBe(40_000_000);
	});

	it.each<Format>(["png", "jpeg", "webp", "gif"])("reads a %s: dimensions and a 320 px WebP thumbnail", async format => {
		const input = await make(format, 1000, 500);
		expect(sniff(input)?.mimeType).toBe(`image/${format}`);
		const info = await probeImage(input);
		expect(info.width).toBe(1000);
		expect(info.height).toBe(500);
		const thumb = await sharp(info.thumbnail).metadata();
		expect(thumb.format).toBe("webp");
		expect([thumb.width, thumb.height]).toEqual([320, 160]);
		expect(sniff(info.thumbnail)?.mimeType).toBe("image/webp");
	});

	it("fits portrait images by their height", async () => {
		const info = await probeImage(await make("png", 400, 1000));
		expect([info.width, info.height]).toEqual([400, 1000]);
		const thumb = await sharp(info.thumbnail).metadata();
		expect([thumb.width, thumb.height]).toEqual([128, 320]);
	});

	it("never upscales a small image", async () => {
		const info = await probeImage(await make("jpeg", 100, 50));
		expect([info.width, info.height]).toEqual([100, 50]);
		const thumb = await sharp(info.thumbnail).metadata();
		expect([thumb.width, thumb.height]).toEqual([100, 50]);
	});

	it("reads a file path as well as a buffer", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-image-"));
		try {
			const file = path.join(dir, "upload.bin");
			fs.writeFileSync(file, await make("webp", 640, 480));
			const info = await probeImage(file);
			expect([info.width, info.height]).toEqual([640, 480]);
			const thumb = await sharp(info.thumbnail).metadata();
			expect([thumb.width, thumb.height]).toEqual([320, 240]);
		} finally {
			fs.rmSync(dir, { recursive: true, force: true });
		}
	});

	it("throws the file-system error, not a rejection, for a missing file", async () => {
		const err = await probeImage(path.join(os.tmpdir(), "marquee-no-such-file.png")).then(() => null, (e: unknown) => e);
		expect(err).not.toBeInstanceOf(ImageRejected);
		expect((err as NodeJS.ErrnoException).code).toBe("ENOENT");
	});

	it.each<"gif" | "webp">(["gif", "webp"])("thumbnails the first frame of an animated %s", async format => {
		const input = await animated(format);
		expect((await sharp(input).metadata()).pages).toBe(3);
		const info = await probeImage(input);
		expect([info.width, info.height]).toEqual([600, 300]);
		const thumb = await sharp(info.thumbnail).metadata();
		expect([thumb.width, thumb.height]).toEqual([320, 160]);
		expect(thumb.pages ?? 1).toBe(1);
		const { data } = await sharp(info.thumbnail).raw().toBuffer({ resolveWithObject: true });
		expect(data[0]).toBeGreaterThan(200); // red, the first frame
		expect(data[2]).toBeLessThan(50);
	});

	it("applies EXIF orientation: reports and thumbnails the image upright", async () => {
		// Stored 1000×500 (landscape) with orientation 6 (rotate 90° clockwise to display).
		const input = await solid(1000, 500).jpeg().withMetadata({ orientation: 6 }).toBuffer();
		expect((await sharp(input).metadata()).orientation).toBe(6);
		const info = await probeImage(input);
		expect([info.width, info.height]).toEqual([500, 1000]);
		const thumb = await sharp(info.thumbnail).metadata();
		expect([thumb.width, thumb.height]).toEqual([160, 320]);
		expect(thumb.orientation ?? 1).toBe(1);
	});

	it("refuses a PNG declaring 50 000 × 50 000 pixels from its header, without decoding it", async () => {
		const bomb = declaredPng(50_000, 50_000);
		expect(bomb.length).toBeLessThan(1000);
		expect(sniff(bomb)?.mimeType).toBe("image/png");
		const before = process.memoryUsage().rss;
		const err = await rejection(probeImage(bomb));
		const grown = process.memoryUsage().rss - before;
		expect(err.reason).toBe("too-many-pixels");
		expect(err.message).toMatch(/50000×50000/);
		// Decoding would need 7.5 GB; refusing from the header costs nothing worth measuring.
		expect(grown).toBeLessThan(64 * 1024 * 1024);
	});

	it("refuses past a custom limit and accepts exactly at it", async () => {
		const input = await make("png", 1000, 500);
		expect((await rejection(probeImage(input, { maxPixels: 499_999 }))).reason).toBe("too-many-pixels");
		await expect(probeImage(input, { maxPixels: 500_000 })).resolves.toMatchObject({ width: 1000, height: 500 });
	});

	it("refuses a declared size just past the default limit, accepts one just under (header check)", async () => {
		expect((await rejection(probeImage(declaredPng(8000, 5001)))).reason).toBe("too-many-pixels");
		// 8000×5000 passes the header check; its data is missing, so it is corrupt, not too big.
		expect((await rejection(probeImage(declaredPng(8000, 5000)))).reason).toBe("corrupt");
	});

	it("rejects a bad maxPixels option", async () => {
		const input = await make("png", 10, 10);
		await expect(probeImage(input, { maxPixels: 0 })).rejects.toThrow(RangeError);
		await expect(probeImage(input, { maxPixels: Number.NaN })).rejects.toThrow(RangeError);
	});

	it("refuses a truncated JPEG as corrupt", async () => {
		const whole = await noisyJpeg(1000, 500);
		const truncated = whole.subarray(0, Math.floor(whole.length / 2));
		expect(sniff(truncated)?.mimeType).toBe("image/jpeg");
		const err = await rejection(probeImage(truncated));
		expect(err.reason).toBe("corrupt");
		expect(err.cause).toBeInstanceOf(Error);
	});

	it("refuses a truncated PNG as corrupt", async () => {
		const whole = await sharp({ create: { width: 400, height: 400, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128, sigma: 60 } } })
			.png()
			.toBuffer();
		expect((await rejection(probeImage(whole.subarray(0, Math.floor(whole.length / 2))))).reason).toBe("corrupt");
	});

	it.each<[string, Buffer]>([
		["garbage behind a JPEG signature", Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(100, 0x5a)])],
		["a PNG signature alone", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
		["text", Buffer.from("not an image at all")],
		["an empty buffer", Buffer.alloc(0)],
		["an SVG (readable by sharp, not allowed)", Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')]
	])("refuses %s as corrupt", async (_name, input) => {
		expect((await rejection(probeImage(input))).reason).toBe("corrupt");
	});

	it("refuses a TIFF (readable by sharp, not allowed) as corrupt", async () => {
		const tiff = await make("png", 10, 10).then(png => sharp(png).tiff().toBuffer());
		const err = await rejection(probeImage(tiff));
		expect(err.reason).toBe("corrupt");
		expect(err.message).toMatch(/tiff/);
	});

	it("is an Error with a name, a reason and a message", async () => {
		const err = await rejection(probeImage(declaredPng(50_000, 50_000)));
		expect(err).toBeInstanceOf(Error);
		expect(err.name).toBe("ImageRejected");
		expect(err.message).toMatch(/more than the limit of 40000000 pixels/);
	});
});
