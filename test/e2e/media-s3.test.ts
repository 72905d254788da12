/**
 * Media with an external S3 endpoint (the embedded server standing in for MinIO over HTTP):
 * downloads answer 302 to a presigned URL on S3_PUBLIC_ENDPOINT, and videos are probed by
 * ffprobe when it is installed.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import sharp from "sharp";
import MediaService from "../../services/media.service";
import { ffprobeAvailable } from "../../services/media/video";
import { describeIf, s3Server } from "../helpers/servers";
import { request, tempDir } from "../helpers/platform";
import { bearer, newAccount, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";

const hasFfmpeg = (() => {
	try {
		execFileSync("ffmpeg", ["-version"], { stdio: "ignore" });
		return true;
	} catch {
		return false;
	}
})();

describe("media on an S3 endpoint", () => {
	let p: Platform;
	let owner: Session & { password: string };
	let stopS3: () => Promise<void>;

	beforeAll(async () => {
		const s3 = await s3Server();
		stopS3 = () => s3.stop();
		p = await startTestPlatform(
			{ S3_ENDPOINT: s3.url, S3_PUBLIC_ENDPOINT: s3.url, S3_ACCESS_KEY: s3.accessKey, S3_SECRET_KEY: s3.secretKey, S3_BUCKET: "media-e2e" },
			[MediaService]
		);
		owner = await register(p, newAccount("s3"));
	});
	afterAll(async () => {
		await p.stop();
		await stopS3();
	});

	function upload(bytes: Buffer, fields: Record<string, string> = {}) {
		const form = new FormData();
		for (const [k, v] of Object.entries(fields)) form.append(k, v);
		form.append("file", new Blob([new Uint8Array(bytes)]), "upload.bin");
		return request<{ id: string; size: number; durationMs: number; width: number | null; height: number | null; metadataSource: string }>(p.api("/content"), {
			method: "POST",
			headers: bearer(owner.accessToken),
			body: form
		});
	}

	it("downloads answer 302 to a presigned URL valid at most 5 minutes that serves the bytes", async () => {
		const png = await sharp({ create: { width: 80, height: 60, channels: 3, background: "orange" } }).png().toBuffer();
		const item = await upload(png);
		expect(item.status).toBe(201);
		for (const [suffix, type] of [["download", "image/png"], ["thumbnail", "image/webp"]] as const) {
			const res = await fetch(p.api(`/content/${item.body.id}/${suffix}`), { headers: bearer(owner.accessToken), redirect: "manual" });
			expect(res.status).toBe(302);
			const location = new URL(String(res.headers.get("location")));
			expect(Number(location.searchParams.get("X-Amz-Expires"))).toBeLessThanOrEqual(300);
			expect(location.pathname).toContain(`/tenants/${owner.tenant.id}/content/${item.body.id}/`);
			const object = await fetch(location);
			expect(object.status).toBe(200);
			expect(object.headers.get("content-type")).toBe(type);
			if (suffix === "download") expect(Buffer.from(await object.arrayBuffer()).equals(png)).toBe(true);
		}
	});

	describeIf(hasFfmpeg, "ffmpeg not installed (apt-get install ffmpeg)")("videos", () => {
		it("an MP4 gets its duration and dimensions from ffprobe, not the client", async () => {
			expect(await ffprobeAvailable()).toBe(true);
			const file = path.join(tempDir(), "clip.mp4");
			execFileSync("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "2", "-pix_fmt", "yuv420p", "-y", file]);
			const res = await upload(fs.readFileSync(file), { durationMs: "60000" });
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ width: 320, height: 240, metadataSource: "ffprobe" });
			expect(Math.abs(res.body.durationMs - 2000)).toBeLessThan(200);
		});
	});
});
