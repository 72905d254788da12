/**
 * Media over HTTP against the embedded S3 server: uploads decided by their bytes, limits that
 * leave nothing behind, thumbnails, downloads, web pages, validity windows, tenancy and deletion.
 */
import { createHash } from "node:crypto";
import { deflateSync } from "node:zlib";
import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import sharp from "sharp";
import { systemScope, type TenantCollection } from "../../mixins/db.mixin";
import MediaService from "../../services/media.service";
import type { ContentDoc } from "../../services/media/content";
import { ContentPage, ContentUsage, ContentView } from "../../shared/contracts";
import type { Storage } from "../../shared/storage";
import { request, type ErrorBody } from "../helpers/platform";
import { bearer, newAccount, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";

type Content = ContentView;

// TypeBox checks formats only once they are registered (Instant is a date-time).
FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)));

/** An answer is exactly the published ContentView: its fields, no more, with their types. */
function expectContentView(body: unknown): void {
	expect([...Value.Errors(ContentView, body)]).toEqual([]);
	expect(Object.keys(body as object).sort()).toEqual(Object.keys(ContentView.properties).sort());
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** A PNG whose header declares `width` × `height` but carries almost no pixel data. */
function pngDeclaring(width: number, height: number): Buffer {
	const chunk = (type: string, data: Buffer) => {
		const len = Buffer.alloc(4);
		len.writeUInt32BE(data.length);
		const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
		const crc = Buffer.alloc(4);
		crc.writeUInt32BE(crc32(body) >>> 0);
		return Buffer.concat([len, body, crc]);
	};
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(width, 0);
	ihdr.writeUInt32BE(height, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // truecolour
	return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(64))), chunk("IEND", Buffer.alloc(0))]);
}

function crc32(data: Buffer): number {
	let crc = 0xffffffff;
	for (const byte of data) {
		crc ^= byte;
		for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
	}
	return crc ^ 0xffffffff;
}

describe("media", () => {
	let p: Platform;
	let owner: Session & { password: string };
	let storage: Storage;

	beforeAll(async () => {
		p = await startTestPlatform({ MAX_IMAGE_MB: "1", DEFAULT_PLAN_STORAGE_MB: "3" }, [MediaService]);
		owner = await register(p, newAccount("media"));
		storage = (p.broker.getLocalService("media") as unknown as { storage: Storage }).storage;
	});
	afterAll(() => p.stop());

	const as = (s: { accessToken: string }) => bearer(s.accessToken);

	function upload(session: { accessToken: string }, bytes: Buffer, declared: string, fields: Record<string, string> = {}, filename = "upload.bin") {
		const form = new FormData();
		for (const [k, v] of Object.entries(fields)) form.append(k, v);
		form.append("file", new Blob([new Uint8Array(bytes)], { type: declared }), filename);
		return request<Content>(p.api("/content"), { method: "POST", headers: as(session), body: form });
	}

	const objectsOf = (tenantId: string) => storage.list(`tenants/${tenantId}/`);
	const usage = async (s: { accessToken: string }) => (await request<{ storageBytes: number }>(p.api("/content/usage"), { headers: as(s) })).body.storageBytes;

	it("a PNG declared as application/octet-stream is stored as image/png with its sha256, size and a thumbnail", async () => {
		const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer();
		const res = await upload(owner, png, "application/octet-stream", { name: "Red square", tags: "promo, red" }, "../../etc/passwd");
		expect(res.status).toBe(201);
		expect(res.headers.get("location")).toBe(`/api/v1/content/${res.body.id}`);
		expect(res.body).toMatchObject({
			name: "Red square",
			type: "image",
			mimeType: "image/png",
			size: png.length,
			sha256: sha256(png),
			width: 640,
			height: 480,
			durationMs: 10_000,
			tags: ["promo", "red"],
			status: "ready",
			thumbnailUrl: `/api/v1/content/${res.body.id}/thumbnail`
		});
		expectContentView(res.body);
		expect(res.body).toMatchObject({ metadataSource: "file", url: `/api/v1/content/${res.body.id}/download`, validFrom: null, validUntil: null });
		const keys = await objectsOf(owner.tenant.id);
		expect(keys.sort()).toEqual([`tenants/${owner.tenant.id}/content/${res.body.id}/original.png`, `tenants/${owner.tenant.id}/content/${res.body.id}/thumbnail.webp`]);
		expect(keys.join()).not.toContain("passwd");

		const download = await fetch(p.api(`/content/${res.body.id}/download`), { headers: as(owner) });
		expect(download.status).toBe(200);
		expect(download.headers.get("content-type")).toBe("image/png");
		expect(sha256(Buffer.from(await download.arrayBuffer()))).toBe(sha256(png));
		const thumb = await fetch(p.api(`/content/${res.body.id}/thumbnail`), { headers: as(owner) });
		expect(thumb.status).toBe(200);
		const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
		expect(meta).toMatchObject({ format: "webp", width: 320, height: 240 });

		// HEAD answers like GET, headers only (it was a 404).
		for (const suffix of ["/download", "/thumbnail"]) {
			const head = await fetch(p.api(`/content/${res.body.id}${suffix}`), { method: "HEAD", headers: as(owner) });
			const get = await fetch(p.api(`/content/${res.body.id}${suffix}`), { headers: as(owner) });
			const body = Buffer.from(await get.arrayBuffer());
			expect(head.status).toBe(200);
			expect(head.headers.get("content-type")).toBe(get.headers.get("content-type"));
			expect(head.headers.get("content-length")).toBe(String(body.length));
			expect(await head.text()).toBe("");
		}
	});

	it("a text file declared as image/png answers 415; nothing is stored and usage is unchanged", async () => {
		const before = { objects: await objectsOf(owner.tenant.id), usage: await usage(owner) };
		const res = await upload(owner, Buffer.from("just some text, honestly not an image\n".repeat(10)), "image/png", {}, "fake.png");
		expect(res.status).toBe(415);
		expect((res.body as unknown as ErrorBody).error.type).toBe("UNSUPPORTED_MEDIA_TYPE");
		expect(await objectsOf(owner.tenant.id)).toEqual(before.objects);
		expect(await usage(owner)).toBe(before.usage);
	});

	it("an oversized image answers 413; nothing is stored and usage is unchanged", async () => {
		const before = { objects: await objectsOf(owner.tenant.id), usage: await usage(owner) };
		const big = await sharp({ create: { width: 1200, height: 1200, channels: 3, background: "#000000", noise: { type: "gaussian", mean: 128, sigma: 60 } } }).png({ compressionLevel: 0 }).toBuffer();
		expect(big.length).toBeGreaterThan(1024 * 1024);
		const res = await upload(owner, big, "image/png");
		expect(res.status).toBe(413);
		expect((res.body as unknown as ErrorBody).error.type).toBe("PAYLOAD_TOO_LARGE");
		expect(await objectsOf(owner.tenant.id)).toEqual(before.objects);
		expect(await usage(owner)).toBe(before.usage);
	});

	it("a small PNG declaring 50 000 × 50 000 pixels is refused with 422, not decoded", async () => {
		const bomb = pngDeclaring(50_000, 50_000);
		expect(bomb.length).toBeLessThan(1000);
		const before = await objectsOf(owner.tenant.id);
		const res = await upload(owner, bomb, "image/png");
		expect(res.status).toBe(422);
		expect((res.body as unknown as ErrorBody).error.data).toEqual([expect.objectContaining({ field: "file" })]);
		expect(await objectsOf(owner.tenant.id)).toEqual(before);
	});

	it("past the plan's storage answers 402 and stores nothing", async () => {
		const tenant = await register(p, newAccount("full"));
		const noise = async (seed: number) =>
			sharp({ create: { width: 500, height: 500, channels: 3, background: "#000000", noise: { type: "gaussian", mean: 100 + seed, sigma: 50 } } }).png({ compressionLevel: 0 }).toBuffer();
		let accepted = 0;
		let refused: { status: number; body: unknown } | null = null;
		for (let i = 0; i < 6 && !refused; i++) {
			const res = await upload(tenant, await noise(i), "image/png");
			if (res.status === 201) accepted++;
			else refused = res;
		}
		expect(accepted).toBeGreaterThan(0);
		expect(refused?.status).toBe(402);
		expect((refused?.body as ErrorBody).error).toMatchObject({ type: "QUOTA_EXCEEDED", data: { resource: "storageBytes" } });
		const stored = await objectsOf(tenant.tenant.id);
		expect(stored.filter(k => k.endsWith("original.png"))).toHaveLength(accepted);
		expect(await usage(tenant)).toBeLessThanOrEqual(3 * 1024 * 1024);
		const report = await request<ContentUsage>(p.api("/content/usage"), { headers: as(tenant) });
		expect([...Value.Errors(ContentUsage, report.body)]).toEqual([]);
		expect(report.body.limitBytes).toBe(3 * 1024 * 1024);
	});

	it("refuses a request without a file, or with a JSON body", async () => {
		const form = new FormData();
		form.append("name", "no file");
		const noFile = await request<ErrorBody>(p.api("/content"), { method: "POST", headers: as(owner), body: form });
		expect(noFile.status).toBe(400);
		expect(noFile.body.error.type).toBe("BAD_REQUEST");
		const json = await request<ErrorBody>(p.api("/content"), { method: "POST", headers: as(owner), json: { name: "x" } });
		expect(json.status).toBe(415);
		expect(json.body.error.type).toBe("UNSUPPORTED_MEDIA_TYPE");
	});

	it("web pages: http(s) only; listed, filtered, searched; validity windows checked", async () => {
		const page = await request<Content>(p.api("/content/url"), { method: "POST", headers: as(owner), json: { name: "Weather", url: "https://weather.example.com/board", durationMs: 30_000, tags: ["live"] } });
		expect(page.status).toBe(201);
		expect(page.body).toMatchObject({ type: "web", url: "https://weather.example.com/board", durationMs: 30_000, status: "ready", tags: ["live"] });
		expectContentView(page.body);
		expect(page.body).toMatchObject({ mimeType: "text/html", size: 0, sha256: null, width: null, height: null, metadataSource: null, thumbnailUrl: null });
		for (const url of ["javascript:alert(1)", "file:///etc/passwd", "ftp://x.example.com", "https://user:pw@x.example.com", "not a url"]) {
			expect((await request(p.api("/content/url"), { method: "POST", headers: as(owner), json: { name: "Bad", url, durationMs: 5000 } })).status).toBe(422);
		}
		const byType = await request<{ rows: Content[] }>(p.api("/content?type=web"), { headers: as(owner) });
		expect(byType.body.rows.map(c => c.id)).toContain(page.body.id);
		expect(byType.body.rows.every(c => c.type === "web")).toBe(true);
		expect([...Value.Errors(ContentPage, byType.body)]).toEqual([]);
		byType.body.rows.forEach(expectContentView);
		const byTag = await request<{ rows: Content[] }>(p.api("/content?tag=live"), { headers: as(owner) });
		expect(byTag.body.rows.map(c => c.id)).toEqual([page.body.id]);
		const byText = await request<{ rows: Content[] }>(p.api("/content?q=weath"), { headers: as(owner) });
		expect(byText.body.rows.map(c => c.id)).toEqual([page.body.id]);

		const windowed = await request<Content>(p.api(`/content/${page.body.id}`), {
			method: "PATCH",
			headers: as(owner),
			json: { name: "Weather board", validFrom: "2026-12-01T00:00:00.000Z", validUntil: "2026-12-24T00:00:00.000Z" }
		});
		expect(windowed.status).toBe(200);
		expectContentView(windowed.body);
		expect(windowed.body).toMatchObject({ name: "Weather board", validFrom: "2026-12-01T00:00:00.000Z", validUntil: "2026-12-24T00:00:00.000Z" });
		const inverted = await request(p.api(`/content/${page.body.id}`), { method: "PATCH", headers: as(owner), json: { validUntil: "2026-11-01T00:00:00.000Z" } });
		expect(inverted.status).toBe(422);
		const cleared = await request<Content>(p.api(`/content/${page.body.id}`), { method: "PATCH", headers: as(owner), json: { validFrom: null } });
		expect(cleared.body.validFrom).toBeNull();
	});

	it("another tenant gets 404 for the content, its download and its thumbnail", async () => {
		const png = await sharp({ create: { width: 50, height: 50, channels: 3, background: "blue" } }).png().toBuffer();
		const mine = (await upload(owner, png, "image/png")).body;
		const stranger = await register(p, newAccount("stranger"));
		for (const suffix of ["", "/download", "/thumbnail"]) {
			const res = await request<ErrorBody>(p.api(`/content/${mine.id}${suffix}`), { headers: as(stranger) });
			expect(res.status).toBe(404);
			expect(res.body.error.type).toBe("NOT_FOUND");
		}
		expect((await request(p.api(`/content/${mine.id}`), { method: "PATCH", headers: as(stranger), json: { name: "mine now" } })).status).toBe(404);
		expect((await request(p.api(`/content/${mine.id}`), { method: "DELETE", headers: as(stranger) })).status).toBe(404);
		expect((await request<Content>(p.api(`/content/${mine.id}`), { headers: as(owner) })).body.name).not.toBe("mine now");
	});

	it("after delete the objects are gone and the download answers 404", async () => {
		const png = await sharp({ create: { width: 60, height: 40, channels: 3, background: "green" } }).png().toBuffer();
		const item = (await upload(owner, png, "image/png")).body;
		const prefix = `tenants/${owner.tenant.id}/content/${item.id}/`;
		expect((await storage.list(prefix)).length).toBe(2);
		expect((await request(p.api(`/content/${item.id}`), { method: "DELETE", headers: as(owner) })).status).toBe(204);
		expect(await storage.list(prefix)).toEqual([]);
		expect((await request(p.api(`/content/${item.id}/download`), { headers: as(owner) })).status).toBe(404);
		expect((await request(p.api(`/content/${item.id}`), { headers: as(owner) })).status).toBe(404);
	});

	it("viewers read content but cannot upload or change it", async () => {
		const key = await request<{ key: string }>(p.api("/api-keys"), { method: "POST", headers: as(owner), json: { name: "reader", role: "viewer" } });
		const viewer = { accessToken: key.body.key };
		expect((await request(p.api("/content"), { headers: as(viewer) })).status).toBe(200);
		const png = await sharp({ create: { width: 10, height: 10, channels: 3, background: "white" } }).png().toBuffer();
		expect((await upload(viewer, png, "image/png")).status).toBe(403);
		expect((await request(p.api("/content/url"), { method: "POST", headers: as(viewer), json: { name: "x", url: "https://x.example.com", durationMs: 5000 } })).status).toBe(403);
	});

	it("deleting the tenant removes every object and document of it", async () => {
		const doomed = await register(p, newAccount("doomed-media"));
		const png = await sharp({ create: { width: 30, height: 30, channels: 3, background: "black" } }).png().toBuffer();
		await upload(doomed, png, "image/png");
		await request(p.api("/content/url"), { method: "POST", headers: as(doomed), json: { name: "W", url: "https://w.example.com", durationMs: 5000 } });
		expect((await objectsOf(doomed.tenant.id)).length).toBe(2);
		expect((await request(p.api("/tenant"), { method: "DELETE", headers: as(doomed), json: { confirm: doomed.tenant.name } })).status).toBe(204);
		const media = p.broker.getLocalService("media") as unknown as { db: { content: TenantCollection<ContentDoc> } };
		const scope = systemScope(doomed.tenant.id);
		for (let i = 0; i < 50 && ((await objectsOf(doomed.tenant.id)).length || (await media.db.content.findDocs(scope)).length); i++) {
			await new Promise(resolve => setTimeout(resolve, 20));
		}
		expect(await objectsOf(doomed.tenant.id)).toEqual([]);
		expect(await media.db.content.findDocs(scope)).toEqual([]);
	});
});
