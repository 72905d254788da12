/**
 * Content type from the bytes, not from the declared type or the file name.
 *
 * Pure, no I/O: give `sniff()` the first `SNIFF_BYTES` bytes of the upload (or the whole file when
 * it is shorter) and it answers one of the six allowed types, or null for anything else — the
 * caller answers 415 and stores nothing.
 *
 *   JPEG  FF D8 FF
 *   PNG   89 50 4E 47 0D 0A 1A 0A, then the IHDR chunk
 *   GIF   "GIF87a" / "GIF89a"
 *   WebP  "RIFF" <size> "WEBP", then a "VP8 " / "VP8L" / "VP8X" chunk
 *   MP4   ISO-BMFF: bytes 4..8 "ftyp" with an MP4 brand (see MP4_BRANDS); QuickTime ("qt  "),
 *         HEIF/HEIC/AVIF images, M4A audio and 3GP are refused
 *   WebM  EBML header 1A 45 DF A3 whose DocType is "webm" (Matroska "matroska" is refused)
 *
 * Text, PDF, SVG, HTML, ZIP, ELF, empty input, … → null. So are look-alikes: "GIF8" without the
 * version, RIFF WAVE/AVI, "ftypqt  ".
 */

export type MediaKind = "image" | "video";
export type SniffedMimeType = "image/jpeg" | "image/png" | "image/webp" | "image/gif" | "video/mp4" | "video/webm";

export interface Sniffed {
	mimeType: SniffedMimeType;
	type: MediaKind;
	/** Usual file extension, without the dot: "jpg", "png", "webp", "gif", "mp4", "webm". */
	extension: string;
}

/**
 * How many leading bytes `sniff()` looks at. Every signature above fits in the first 64 bytes
 * (an MP4 `ftyp` box with its first compatible brands; a WebM EBML header is about 30–40 bytes).
 * Bytes past this are ignored; fewer are fine when the file itself is shorter.
 */
export const SNIFF_BYTES = 64;

const JPEG: Sniffed = { mimeType: "image/jpeg", type: "image", extension: "jpg" };
const PNG: Sniffed = { mimeType: "image/png", type: "image", extension: "png" };
const GIF: Sniffed = { mimeType: "image/gif", type: "image", extension: "gif" };
const WEBP: Sniffed = { mimeType: "image/webp", type: "image", extension: "webp" };
const MP4: Sniffed = { mimeType: "video/mp4", type: "video", extension: "mp4" };
const WEBM: Sniffed = { mimeType: "video/webm", type: "video", extension: "webm" };

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const WEBP_CHUNKS = new Set(["VP8 ", "VP8L", "VP8X"]);

/** ISO-BMFF brands that mean an MP4 video. */
const MP4_BRANDS = new Set(["isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1", "M4V ", "MSNV", "dash", "mmp4"]);

/**
 * Major brands that are not MP4 video even when an MP4 brand is among the compatible ones:
 * QuickTime, HEIF/HEIC/AVIF still images and sequences, iTunes audio/audiobooks, Canon raw.
 * 3GPP/3GPP2 ("3gp…", "3g2…") are refused by prefix.
 */
const REFUSED_MAJOR_BRANDS = new Set([
	"qt  ",
	"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "msf1", "avif", "avis",
	"M4A ", "M4B ", "M4P ", "crx "
]);

export function sniff(head: Buffer): Sniffed | null {
	const b = head.length > SNIFF_BYTES ? head.subarray(0, SNIFF_BYTES) : head;
	if (b.length < 3) return null;

	if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return JPEG;

	if (b.length >= 16 && b.subarray(0, 8).equals(PNG_SIGNATURE) && ascii(b, 12, 4) === "IHDR") return PNG;

	if (b.length >= 6) {
		const gif = ascii(b, 0, 6);
		if (gif === "GIF87a" || gif === "GIF89a") return GIF;
	}

	if (b.length >= 16 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP" && WEBP_CHUNKS.has(ascii(b, 12, 4))) return WEBP;

	if (b.length >= 12 && ascii(b, 4, 4) === "ftyp") return isMp4(b) ? MP4 : null;

	if (b.length >= 4 && b.readUInt32BE(0) === 0x1a45dfa3) return ebmlDocType(b) === "webm" ? WEBM : null;

	return null;
}

function ascii(b: Buffer, start: number, length: number): string {
	return b.toString("latin1", start, start + length);
}

/** `b` starts with an `ftyp` box: size(4) "ftyp" major(4) minor(4) compatible(4)*. */
function isMp4(b: Buffer): boolean {
	const size = b.readUInt32BE(0);
	// 0 ("to the end of file") and 1 (64-bit size) make no sense for ftyp; it has at least the
	// header, the major brand and the minor version.
	if (size < 16) return false;
	const major = ascii(b, 8, 4);
	if (REFUSED_MAJOR_BRANDS.has(major) || major.startsWith("3g")) return false;
	if (MP4_BRANDS.has(major)) return true;
	// An unknown major brand (e.g. Sony "XAVC") that declares compatibility with an MP4 brand.
	const end = Math.min(size, b.length);
	for (let at = 16; at + 4 <= end; at += 4) {
		if (MP4_BRANDS.has(ascii(b, at, 4))) return true;
	}
	return false;
}

const EBML_DOCTYPE_ID = 0x4282;

/**
 * The DocType string of the EBML header at the start of `b`, or null when it is not there (within
 * `b`) or the header is malformed.
 */
function ebmlDocType(b: Buffer): string | null {
	let at = 4;
	const headerSize = readVint(b, at, true);
	if (!headerSize || headerSize.value === null) return null;
	at += headerSize.length;
	const end = Math.min(b.length, at + headerSize.value);
	while (at < end) {
		const id = readVint(b, at, false);
		if (!id) return null;
		at += id.length;
		const size = readVint(b, at, true);
		if (!size || size.value === null) return null;
		at += size.length;
		if (id.value === EBML_DOCTYPE_ID) {
			if (at + size.value > b.length) return null;
			return ascii(b, at, size.value).replace(/\0+$/, "");
		}
		at += size.value;
	}
	return null;
}

/**
 * An EBML variable-length integer at `b[at]`: its byte length and value. An element ID keeps its
 * length marker (`stripMarker` false, at most 4 bytes); a size drops it (at most 8 bytes) and is
 * null when it is "unknown" (all value bits set). Undefined when the bytes are not there or invalid.
 */
function readVint(b: Buffer, at: number, stripMarker: boolean): { length: number; value: number | null } | undefined {
	if (at >= b.length) return undefined;
	const first = b[at];
	if (first === 0) return undefined;
	const length = Math.clz32(first) - 23; // leading zeros within the byte, plus one
	if (length > (stripMarker ? 8 : 4) || at + length > b.length) return undefined;
	let value = stripMarker ? first & (0xff >> length) : first;
	let allOnes = value === 0xff >> length;
	for (let i = 1; i < length; i++) {
		value = value * 256 + b[at + i];
		if (b[at + i] !== 0xff) allOnes = false;
	}
	if (stripMarker && allOnes) return { length, value: null };
	return { length, value };
}
