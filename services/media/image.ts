/**
 * Image dimensions and a thumbnail, with sharp (libvips), safe against decompression bombs.
 *
 * `probeImage(source)` takes the upload as a Buffer or a file path, and:
 *   1. reads the header only (sharp `metadata()` decodes no pixels) and refuses with
 *      `ImageRejected("too-many-pixels")` when width × height > `maxPixels` — before anything is
 *      decoded, so a 74-byte PNG that declares 50 000 × 50 000 costs nothing;
 *   2. builds the thumbnail with `limitInputPixels: maxPixels` (so libvips itself refuses a larger
 *      image, should the header it decodes ever disagree with the one read in 1) and
 *      `failOn: "error"` (truncated or broken pixel data is an error; mere warnings, which many
 *      camera and phone JPEGs trigger, are not). libvips' other safety limits (PNG text chunks,
 *      at most 5 channels) stay on: `unlimited` is never set.
 *
 * The thumbnail is WebP, at most 320 px on the longer side, never upscaled; for an animated GIF or
 * WebP it is the first frame (a still WebP). EXIF orientation is applied first, so thumbnails are
 * upright, and `width`/`height` are the image as displayed (a portrait phone photo stored as
 * 4032×3024 with orientation 6 is reported as 3024×4032).
 *
 * Only JPEG, PNG, WebP and GIF are accepted (the types `sniff()` allows); anything else sharp could
 * read (SVG, TIFF, HEIF, …) is refused as "corrupt" — the bytes do not match an allowed image.
 * A missing or unreadable file path is not a rejection: that error is thrown as is.
 *
 * Process-wide sharp settings, made once when this module is loaded (it is the only user of sharp):
 *   - `sharp.cache(false)`: libvips' operation cache would keep decoded images of past uploads in
 *     memory; every upload is different, so it only costs memory.
 *   - `sharp.concurrency(1)`: one libvips thread per image. Images run in parallel on the libuv
 *     thread pool (UV_THREADPOOL_SIZE, default 4, shared with fs and dns.lookup), so at most that
 *     many cores go to thumbnails and the rest of the node stays responsive.
 */
import fs from "node:fs/promises";
import sharp, { type Metadata } from "sharp";

/**
 * Default pixel limit: 40 megapixels, e.g. 8000 × 5000 (8K is 7680 × 4320 = 33 MP), above any
 * phone or most camera photos. Decoding costs about 3–4 bytes per pixel (≈ 160 MB at the limit).
 */
export const MAX_INPUT_PIXELS = 40_000_000;

/** Long side of the thumbnail, in pixels. */
export const THUMBNAIL_SIZE = 320;

export type ImageRejectedReason = "too-many-pixels" | "corrupt";

/** The image is refused: "too-many-pixels" (answer 422) or "corrupt" (not a readable JPEG/PNG/WebP/GIF, also 422). */
export class ImageRejected extends Error {
	override name = "ImageRejected";
	constructor(
		readonly reason: ImageRejectedReason,
		message: string,
		options?: { cause?: unknown }
	) {
		super(message, options);
	}
}

export interface ImageInfo {
	/** Width as displayed (after EXIF orientation), in pixels. */
	width: number;
	/** Height as displayed (after EXIF orientation), in pixels. For an animated image, one frame. */
	height: number;
	/** WebP, at most 320 px on the longer side, never upscaled; the first frame of an animation. */
	thumbnail: Buffer;
}

export interface ProbeImageOptions {
	/** Refuse images with more pixels than this (width × height). Default MAX_INPUT_PIXELS. */
	maxPixels?: number;
}

const ALLOWED_FORMATS = new Set(["jpeg", "png", "webp", "gif"]);

sharp.cache(false);
sharp.concurrency(1);

export async function probeImage(source: Buffer | string, options: ProbeImageOptions = {}): Promise<ImageInfo> {
	const maxPixels = options.maxPixels ?? MAX_INPUT_PIXELS;
	if (!Number.isSafeInteger(maxPixels) || maxPixels <= 0) throw new RangeError(`maxPixels must be a positive integer, not ${maxPixels}`);
	// A path that is not there is the caller's problem, not a corrupt image.
	if (typeof source === "string") await fs.access(source);

	// 1. Header only. The pixel limit is checked here, by us, with the numbers in hand.
	let metadata: Metadata;
	try {
		metadata = await sharp(source, { limitInputPixels: false, failOn: "error" }).metadata();
	} catch (err) {
		throw new ImageRejected("corrupt", `not a readable image: ${errorMessage(err)}`, { cause: err });
	}
	if (!ALLOWED_FORMATS.has(metadata.format)) {
		throw new ImageRejected("corrupt", `not a JPEG, PNG, WebP or GIF image (${metadata.format})`);
	}
	const { width, height } = metadata.autoOrient ?? metadata;
	if (!(width > 0 && height > 0)) throw new ImageRejected("corrupt", "the image has no dimensions");
	if (width * height > maxPixels) {
		throw new ImageRejected("too-many-pixels", `the image is ${width}×${height} (${width * height} pixels), more than the limit of ${maxPixels} pixels`);
	}

	// 2. Decode (first frame only), orient, shrink, encode.
	let thumbnail: Buffer;
	try {
		thumbnail = await sharp(source, { limitInputPixels: maxPixels, failOn: "error", pages: 1, page: 0, autoOrient: true })
			.resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: "inside", withoutEnlargement: true })
			.webp({ quality: 80 })
			.toBuffer();
	} catch (err) {
		const message = errorMessage(err);
		if (/exceeds pixel limit/i.test(message)) throw new ImageRejected("too-many-pixels", `the image has more than ${maxPixels} pixels`, { cause: err });
		throw new ImageRejected("corrupt", `the image data is damaged: ${message}`, { cause: err });
	}
	return { width, height, thumbnail };
}

function errorMessage(err: unknown): string {
	return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
