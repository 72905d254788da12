import { SNIFF_BYTES, sniff } from "../../services/media/sniff";

const bytes = (...parts: (string | number[] | Buffer)[]): Buffer =>
	Buffer.concat(parts.map(p => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))));
const u32 = (n: number): Buffer => {
	const b = Buffer.alloc(4);
	b.writeUInt32BE(n);
	return b;
};
const pad = (b: Buffer, length = SNIFF_BYTES): Buffer => Buffer.concat([b, Buffer.alloc(Math.max(0, length - b.length), 0x20)]);

/** An ISO-BMFF ftyp box followed by the start of a moov box. */
const ftyp = (major: string, ...compatible: string[]): Buffer =>
	bytes(u32(16 + 4 * compatible.length), "ftyp", major, [0, 0, 2, 0], ...compatible, u32(0x100), "moov");

/** An EBML header like ffmpeg writes it, with the given DocType. */
const ebml = (docType: string): Buffer => {
	const body = bytes([0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42, 0xf3, 0x81, 0x08],
		[0x42, 0x82, 0x80 | docType.length], docType, [0x42, 0x87, 0x81, 0x02, 0x42, 0x85, 0x81, 0x02]);
	return bytes([0x1a, 0x45, 0xdf, 0xa3, 0x80 | body.length], body, [0x18, 0x53, 0x80, 0x67, 0x01, 0, 0, 0, 0, 0, 0x16, 0x1a]);
};

const JPEG = bytes([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10], "JFIF", [0]);
const PNG = bytes([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], u32(13), "IHDR", u32(100), u32(50), [8, 2, 0, 0, 0]);
const WEBP = (chunk: string): Buffer => bytes("RIFF", [0x24, 0, 0, 0], "WEBP", chunk, [0x18, 0, 0, 0]);

describe("sniff", () => {
	it("needs a small, fixed head", () => {
		expect(SNIFF_BYTES).toBeGreaterThanOrEqual(32);
		expect(SNIFF_BYTES).toBeLessThanOrEqual(4096);
	});

	it.each<[string, Buffer, string, string, string]>([
		["JPEG (JFIF)", JPEG, "image/jpeg", "image", "jpg"],
		["JPEG (Exif)", bytes([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x10], "Exif"), "image/jpeg", "image", "jpg"],
		["PNG", PNG, "image/png", "image", "png"],
		["GIF87a", bytes("GIF87a", [0x0a, 0, 0x0a, 0]), "image/gif", "image", "gif"],
		["GIF89a", bytes("GIF89a", [0x0a, 0, 0x0a, 0]), "image/gif", "image", "gif"],
		["WebP lossy", WEBP("VP8 "), "image/webp", "image", "webp"],
		["WebP lossless", WEBP("VP8L"), "image/webp", "image", "webp"],
		["WebP extended", WEBP("VP8X"), "image/webp", "image", "webp"],
		["MP4 isom", ftyp("isom", "isom", "iso2", "avc1", "mp41"), "video/mp4", "video", "mp4"],
		["MP4 mp42", ftyp("mp42", "mp42", "isom"), "video/mp4", "video", "mp4"],
		["MP4 M4V", ftyp("M4V ", "M4V ", "M4A ", "mp42", "isom"), "video/mp4", "video", "mp4"],
		["MP4 dash", ftyp("dash", "iso6", "mp41"), "video/mp4", "video", "mp4"],
		["MP4 iso5, no compatible brands", ftyp("iso5"), "video/mp4", "video", "mp4"],
		["MP4 with an unknown major brand, MP4-compatible (Sony XAVC)", ftyp("XAVC", "XAVC", "mp42", "iso2"), "video/mp4", "video", "mp4"],
		["WebM", ebml("webm"), "video/webm", "video", "webm"]
	])("recognises %s", (_name, head, mimeType, type, extension) => {
		expect(sniff(pad(head))).toEqual({ mimeType, type, extension });
		// Longer heads (a whole file) are fine; so are heads no longer than the signature.
		expect(sniff(pad(head, 10_000))).toEqual({ mimeType, type, extension });
		expect(sniff(head)).toEqual({ mimeType, type, extension });
	});

	it.each<[string, Buffer]>([
		["empty", Buffer.alloc(0)],
		["plain text", Buffer.from("Hello, this is a text file\n")],
		["text starting with GIF8", Buffer.from("GIF8 is not a version, this is text\n")],
		["GIF8 + 7b", Buffer.from("GIF87b\x0a\x00\x0a\x00", "latin1")],
		["JSON", Buffer.from('{"type":"image/png"}')],
		["PDF", Buffer.from("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "latin1")],
		["SVG", Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')],
		["SVG without prolog", Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')],
		["HTML", Buffer.from("<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>")],
		["ZIP", bytes("PK", [3, 4, 20, 0, 0, 0, 8, 0])],
		["ELF", bytes([0x7f], "ELF", [2, 1, 1, 0])],
		["gzip", bytes([0x1f, 0x8b, 0x08, 0])],
		["BMP", bytes("BM", [0x36, 0, 0, 0])],
		["TIFF", bytes("II*", [0])],
		["two bytes of JPEG", bytes([0xff, 0xd8])],
		["PNG signature alone", PNG.subarray(0, 8)],
		["PNG signature with a different first chunk", bytes(PNG.subarray(0, 8), u32(4), "tEXt")],
		["RIFF WAVE", bytes("RIFF", [0x24, 0, 0, 0], "WAVE", "fmt ", [0x10, 0, 0, 0])],
		["RIFF AVI", bytes("RIFF", [0x24, 0, 0, 0], "AVI ", "LIST")],
		["RIFF WEBP with an unknown chunk", WEBP("ABCD")],
		["QuickTime ftypqt", ftyp("qt  ", "qt  ")],
		["QuickTime major brand with MP4 compatibility", ftyp("qt  ", "qt  ", "isom")],
		["HEIC", ftyp("heic", "mif1", "heic")],
		["HEIC heix", ftyp("heix", "mif1", "heix")],
		["HEIF mif1", ftyp("mif1", "mif1", "heic")],
		["AVIF", ftyp("avif", "avif", "mif1", "miaf", "MA1B")],
		["M4A audio", ftyp("M4A ", "M4A ", "mp42", "isom")],
		["3GP", ftyp("3gp4", "isom", "3gp4")],
		["unknown ftyp brand", ftyp("abcd", "abcd", "wxyz")],
		["ftyp box too short", bytes(u32(8), "ftyp", "isom")],
		["Matroska", ebml("matroska")],
		["EBML with no DocType", bytes([0x1a, 0x45, 0xdf, 0xa3, 0x84, 0x42, 0x86, 0x81, 0x01])],
		["EBML header cut before its DocType", ebml("webm").subarray(0, 22)],
		["EBML with an unknown-size header", bytes([0x1a, 0x45, 0xdf, 0xa3, 0xff, 0x42, 0x82, 0x84], "webm")],
		["EBML with a DocType length past the end", bytes([0x1a, 0x45, 0xdf, 0xa3, 0x88, 0x42, 0x82, 0x88], "webm")],
		["EBML with a zero byte where an ID should be", bytes([0x1a, 0x45, 0xdf, 0xa3, 0x84, 0x00, 0x82, 0x84], "webm")]
	])("refuses %s", (_name, head) => {
		expect(sniff(head)).toBeNull();
		expect(sniff(pad(head))).toBeNull();
	});

	it("finds the WebM DocType after other header elements within SNIFF_BYTES", () => {
		const head = ebml("webm");
		expect(head.indexOf("webm")).toBeLessThan(SNIFF_BYTES);
		expect(sniff(head)).not.toBeNull();
	});

	it("looks only at the first SNIFF_BYTES bytes", () => {
		// A WebM DocType placed after SNIFF_BYTES (behind a big Void element) is not found.
		const voidSize = SNIFF_BYTES;
		const body = bytes([0xec, 0x80 | voidSize], Buffer.alloc(voidSize), [0x42, 0x82, 0x84], "webm");
		const head = bytes([0x1a, 0x45, 0xdf, 0xa3, 0x80 | body.length], body);
		expect(sniff(head)).toBeNull();
		// The same element order, with a short Void, is fine.
		const shortBody = bytes([0xec, 0x82, 0, 0], [0x42, 0x82, 0x84], "webm");
		expect(sniff(bytes([0x1a, 0x45, 0xdf, 0xa3, 0x80 | shortBody.length], shortBody))?.mimeType).toBe("video/webm");
	});

	it("does not depend on anything after the signature", () => {
		const random = Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 37 + 11) & 0xff));
		expect(sniff(Buffer.concat([JPEG, random]))?.mimeType).toBe("image/jpeg");
		expect(sniff(Buffer.concat([Buffer.from("GIF89a"), random]))?.mimeType).toBe("image/gif");
	});
});
