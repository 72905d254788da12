/**
 * Content items as pure functions: the view (checked against the published ContentView schema,
 * field by field), tag lists, names from file names, web addresses and edits.
 */
import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { contentChanges, contentView, isHttpUrl, MAX_TAGS, nameFromFile, occupiedBytes, tagList, type ContentDoc } from "../../services/media/content";
import { ContentView } from "../../shared/contracts";
import { AppError } from "../../shared/errors";

// TypeBox checks formats only once they are registered.
FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

const NOW = "2026-11-22T10:00:00.000Z";
const LATER = "2026-11-22T10:00:01.000Z";

const image: ContentDoc = {
	id: "c1",
	tenantId: "t1",
	name: "Red square",
	type: "image",
	mimeType: "image/png",
	size: 1000,
	sha256: "ab".repeat(32),
	width: 640,
	height: 480,
	durationMs: 10_000,
	metadataSource: "file",
	tags: ["promo"],
	validFrom: null,
	validUntil: null,
	status: "ready",
	objectKey: "tenants/t1/content/c1/original.png",
	thumbnailKey: "tenants/t1/content/c1/thumbnail.webp",
	thumbnailSize: 200,
	createdAt: NOW,
	updatedAt: LATER
};

const web: ContentDoc = {
	id: "c2",
	tenantId: "t1",
	name: "Weather",
	type: "web",
	mimeType: "text/html",
	url: "https://weather.example.com/board",
	size: 0,
	sha256: null,
	width: null,
	height: null,
	durationMs: 30_000,
	tags: [],
	validFrom: NOW,
	validUntil: null,
	status: "ready",
	createdAt: NOW,
	updatedAt: NOW
};

function validationFields(run: () => unknown): string[] {
	try {
		run();
	} catch (err) {
		expect(err).toBeInstanceOf(AppError);
		expect((err as AppError).type).toBe("VALIDATION_ERROR");
		return ((err as AppError).data as Array<{ field: string }>).map(d => d.field);
	}
	throw new Error("expected a validation error");
}

describe("contentView", () => {
	it("gives an upload's fields, its download and thumbnail paths, and nothing stored-only", () => {
		const view = contentView(image);
		expect(view).toEqual({
			id: "c1",
			name: "Red square",
			type: "image",
			mimeType: "image/png",
			size: 1000,
			sha256: "ab".repeat(32),
			width: 640,
			height: 480,
			durationMs: 10_000,
			metadataSource: "file",
			url: "/api/v1/content/c1/download",
			thumbnailUrl: "/api/v1/content/c1/thumbnail",
			tags: ["promo"],
			validFrom: null,
			validUntil: null,
			status: "ready",
			// No approval state stored: approved and live, nothing waiting.
			approval: { status: "approved", live: true, requestedBy: null, requestedAt: null, reviewedBy: null, reviewedAt: null, comment: null },
			proposal: null,
			createdAt: NOW,
			updatedAt: LATER
		});
		expect([...Value.Errors(ContentView, view)]).toEqual([]);
	});

	it("gives a web page its address and nulls where it has no file", () => {
		const view = contentView(web);
		expect(view).toMatchObject({ url: "https://weather.example.com/board", thumbnailUrl: null, metadataSource: null, sha256: null, width: null, height: null, validFrom: NOW });
		expect([...Value.Errors(ContentView, view)]).toEqual([]);
	});

	it("gives an upload still being stored no url, and a video without thumbnail none", () => {
		const { objectKey: _o, thumbnailKey: _t, thumbnailSize: _s, ...processing } = image;
		expect(contentView({ ...processing, status: "processing" })).toMatchObject({ url: null, thumbnailUrl: null, status: "processing" });
		const video = contentView({ ...image, type: "video", mimeType: "video/mp4", metadataSource: "ffprobe", thumbnailKey: null, thumbnailSize: null });
		expect(video).toMatchObject({ url: "/api/v1/content/c1/download", thumbnailUrl: null, metadataSource: "ffprobe" });
		expect([...Value.Errors(ContentView, video)]).toEqual([]);
	});

	it("has exactly the schema's fields", () => {
		expect(Object.keys(contentView(image)).sort()).toEqual(Object.keys(ContentView.properties).sort());
		expect(Object.keys(contentView(web)).sort()).toEqual(Object.keys(ContentView.properties).sort());
	});
});

describe("occupiedBytes", () => {
	it("counts the original and the thumbnail", () => {
		expect(occupiedBytes(image)).toBe(1200);
		expect(occupiedBytes(web)).toBe(0);
		expect(occupiedBytes({ size: 10, thumbnailSize: null })).toBe(10);
	});
});

describe("tagList", () => {
	it("splits, trims and drops blanks and duplicates", () => {
		expect(tagList(" promo, red ,,promo ")).toEqual(["promo", "red"]);
		expect(tagList(["a", " a", "b", ""])).toEqual(["a", "b"]);
		expect(tagList(undefined)).toEqual([]);
		expect(tagList("")).toEqual([]);
	});

	it("refuses too many tags or too long ones", () => {
		expect(tagList(Array.from({ length: MAX_TAGS }, (_, i) => `t${i}`))).toHaveLength(MAX_TAGS);
		expect(validationFields(() => tagList(Array.from({ length: MAX_TAGS + 1 }, (_, i) => `t${i}`)))).toEqual(["tags"]);
		expect(validationFields(() => tagList("x".repeat(65)))).toEqual(["tags"]);
		expect(tagList("x".repeat(64))).toEqual(["x".repeat(64)]);
	});
});

describe("nameFromFile", () => {
	it("keeps the base name without control characters", () => {
		expect(nameFromFile("../../etc/passwd")).toBe("passwd");
		expect(nameFromFile("holiday\u0000\u001f\u007f.png")).toBe("holiday.png");
		expect(nameFromFile("  photo.jpg  ")).toBe("photo.jpg");
	});

	it("names a missing or empty file Untitled and cuts long names at 200 characters", () => {
		expect(nameFromFile(undefined)).toBe("Untitled");
		expect(nameFromFile("")).toBe("Untitled");
		expect(nameFromFile("\u0001\u0002")).toBe("Untitled");
		expect(nameFromFile("a".repeat(300))).toHaveLength(200);
	});
});

describe("isHttpUrl", () => {
	it.each(["https://weather.example.com/board", "http://10.0.0.5:8080/x?y=1"])("accepts %s", url => {
		expect(isHttpUrl(url)).toBe(true);
	});

	it.each(["javascript:alert(1)", "file:///etc/passwd", "ftp://x.example.com", "https://user:pw@x.example.com", "https://user@x.example.com", "not a url", ""])("refuses %s", url => {
		expect(isHttpUrl(url)).toBe(false);
	});
});

describe("contentChanges", () => {
	const open = { validFrom: null, validUntil: null };

	it("sets only what the edit sends, in a stable order, tags cleaned", () => {
		const set = contentChanges(open, { durationMs: 5000, name: "New", tags: ["a", "a ", "b"] });
		expect(set).toEqual({ name: "New", tags: ["a", "b"], durationMs: 5000 });
		expect(Object.keys(set)).toEqual(["name", "tags", "durationMs"]);
		expect(contentChanges(open, {})).toEqual({});
	});

	it("normalises instants to UTC and clears them with null", () => {
		expect(contentChanges(open, { validFrom: "2026-12-01T01:00:00+01:00" })).toEqual({ validFrom: "2026-12-01T00:00:00.000Z" });
		expect(contentChanges({ validFrom: NOW, validUntil: null }, { validFrom: null })).toEqual({ validFrom: null });
	});

	it("refuses an instant that is not a real one", () => {
		expect(validationFields(() => contentChanges(open, { validUntil: "2026-02-31T25:00:00Z" }))).toEqual(["validUntil"]);
	});

	it("checks the resulting window against what is stored", () => {
		const stored = { validFrom: "2026-12-01T00:00:00.000Z", validUntil: "2026-12-24T00:00:00.000Z" };
		expect(validationFields(() => contentChanges(stored, { validUntil: "2026-11-01T00:00:00.000Z" }))).toEqual(["validUntil"]);
		expect(validationFields(() => contentChanges(stored, { validFrom: "2026-12-24T00:00:00.000Z" }))).toEqual(["validUntil"]);
		expect(contentChanges(stored, { validFrom: null, validUntil: "2026-11-01T00:00:00.000Z" })).toEqual({ validFrom: null, validUntil: "2026-11-01T00:00:00.000Z" });
	});
});
