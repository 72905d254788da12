/**
 * Uploads to a media service on another node, over a real NATS: the file crosses as Moleculer's
 * stream proxy, not as busboy's stream. The caller (the gateway's node) reads the action's
 * `timeout: 0` and disabled retries from the registry, so a slow upload is neither cut at
 * REQUEST_TIMEOUT_MS nor replayed; a client that goes away mid-file fails the stream on the
 * gateway, the error travels to the media node, and the temporary file is gone there.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import sharp from "sharp";
import MediaService from "../../services/media.service";
import type { UploadSettings } from "../../services/media/receive";
import type { AnyServiceSchema } from "../../server";
import { bearer, newAccount, PLATFORM_SERVICES, register, type Platform } from "../helpers/accounts";
import { request, startBroker, startGateway, tempDir, type TestBroker } from "../helpers/platform";
import { describeWith, natsServer, requireServer, uniquePrefix } from "../helpers/servers";

const BOUNDARY = "marquee-nats-upload-boundary";
const PNG_HEAD = Buffer.from("89504e470d0a1a0a0000000d49484452000000400000004008020000002512", "hex");
const delay = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
const head = (filename: string) =>
	Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
const TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

async function eventually(check: () => boolean | Promise<boolean>, attempts = 200): Promise<boolean> {
	for (let i = 0; i < attempts; i++) {
		if (await check()) return true;
		await delay(50);
	}
	return check();
}

describeWith("nats")("uploads to a media node over NATS", () => {
	let gateway: Platform;
	let media: TestBroker;
	let token: string;
	const uploadDir = tempDir("marquee-uploads-nats-");
	const tempFiles = () => fs.readdirSync(uploadDir).filter(name => name.startsWith("marquee-upload-"));

	beforeAll(async () => {
		const nats = await requireServer(natsServer());
		const namespace = uniquePrefix("uploads").replace(/:/g, "-");
		const env = { TRANSPORTER: nats.url, NAMESPACE: namespace, RATE_LIMIT_PER_MINUTE: "100000", REQUEST_TIMEOUT_MS: "1000" };
		// An idle limit far beyond this test: only the abort itself can clean up here.
		const settings: UploadSettings = { uploadDir, uploadIdleMs: 10 * 60_000 };
		const mediaSchema = { ...MediaService, settings: { ...MediaService.settings, ...settings } };
		media = await startBroker([mediaSchema as AnyServiceSchema], env, { nodeID: `${namespace}media` });
		const gw = await startGateway(
			PLATFORM_SERVICES.filter(s => s.name !== "media"),
			{ ...env, DATA_DIR: tempDir() },
			{ nodeID: `${namespace}gateway` }
		);
		gateway = { ...gw, dataDir: "", api: (path: string) => `${gw.url}/api/v1${path}` };
		await gateway.broker.waitForServices(["media"], 10_000);
		// moleculer-web regenerates its aliases (debounced) once it has seen the media node.
		expect(await eventually(async () => (await request(gateway.api("/content"))).status === 401)).toBe(true);
		token = (await register(gateway, newAccount("nats-upload"))).accessToken;
	}, 30_000);

	afterAll(async () => {
		await gateway?.stop();
		await media?.stop();
		fs.rmSync(uploadDir, { recursive: true, force: true });
	});

	it("a PNG sent over ~2.5 s, longer than REQUEST_TIMEOUT_MS (1 s), is stored once with its sha256", async () => {
		const png = await sharp({ create: { width: 120, height: 90, channels: 3, background: "black", noise: { type: "gaussian", mean: 128, sigma: 40 } } }).png().toBuffer();
		const req = http.request(gateway.api("/content"), {
			method: "POST",
			headers: { ...bearer(token), "Content-Type": `multipart/form-data; boundary=${BOUNDARY}`, "Content-Length": String(head("slow.png").length + png.length + TAIL.length) }
		});
		const answer = new Promise<{ status: number; body: { sha256?: string } }>((resolve, reject) => {
			req.on("error", reject);
			req.on("response", res => {
				let text = "";
				res.on("data", (chunk: Buffer) => (text += chunk.toString()));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { sha256?: string } }));
			});
		});
		req.write(head("slow.png"));
		for (let i = 0; i < 25; i++) {
			req.write(png.subarray(Math.floor((i * png.length) / 25), Math.floor(((i + 1) * png.length) / 25)));
			await delay(100);
		}
		req.end(TAIL);
		const res = await answer;
		expect(res.status).toBe(201);
		expect(res.body.sha256).toBe(createHash("sha256").update(png).digest("hex"));
		const list = await request<{ total: number }>(gateway.api("/content"), { headers: bearer(token) });
		expect(list.body.total).toBe(1);
	});

	it("40 uploads aborted mid-file (closed or reset) leave no temporary file on the media node", async () => {
		const url = new URL(gateway.api("/content"));
		for (let i = 0; i < 40; i++) {
			const earlier = new Set(tempFiles());
			const socket = net.connect(Number(url.port), url.hostname);
			socket.on("error", () => undefined);
			await new Promise(resolve => socket.once("connect", resolve));
			socket.write(
				`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\n` +
					`Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: 1000000\r\n\r\n`
			);
			socket.write(Buffer.concat([head("aborted.png"), PNG_HEAD, Buffer.alloc(30_000)]));
			// The media node has its temporary file open before the client goes away.
			expect(await eventually(() => tempFiles().some(name => !earlier.has(name)))).toBe(true);
			if (i % 2 === 0) socket.destroy();
			else socket.resetAndDestroy();
		}
		expect(await eventually(() => tempFiles().length === 0)).toBe(true);
		expect((await request(gateway.api("/content/usage"), { headers: bearer(token) })).status).toBe(200);
	}, 60_000);
});
