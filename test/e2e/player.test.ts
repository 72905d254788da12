/**
 * The reference web player (/player/) in a real browser against the platform as users start it
 * (`tsx server.ts` on the embedded default, in its own process): pairing, playback in order
 * with preloading, live changes without a reload, offline playing across a reload and a server
 * restart with every play delivered exactly once, commands, sign-out when the display is
 * deleted, zero-touch registration, a multi-zone layout, a power schedule that blanks the screen
 * and lights it again, and a page that stays inside its Content-Security-Policy.
 *
 * What is on screen is read from the DOM (`body[data-content-id]`, `[data-zone-id]`,
 * `body[data-power]`, set by the player) and checked on screenshots by colour: each test image
 * is one plain colour.
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { spawnSync } from "node:child_process";
import os from "node:os";
import sharp from "sharp";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { describeIf } from "../helpers/servers";
import { tempDir } from "../helpers/platform";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";

/**
 * The browser globals the page functions below use: they run in Chromium, but this file is
 * compiled with Node's types only (no DOM library), so they are declared here, for this file.
 */
interface PageElement {
	textContent: string | null;
	naturalWidth?: number;
}
interface IdbRequest<T> {
	result: T;
	error: unknown;
	onsuccess: (() => void) | null;
	onerror: (() => void) | null;
}
interface IdbDatabase {
	transaction(store: string): { objectStore(name: string): { count(): IdbRequest<number> } };
	close(): void;
}
interface PageNode {
	muted: boolean;
	paused: boolean;
	getAttribute(name: string): string | null;
}
interface PageBox {
	className: string;
	dataset: Record<string, string | undefined>;
	getBoundingClientRect(): { left: number; top: number; width: number; height: number };
}
declare const document: {
	body: { dataset: Record<string, string | undefined> };
	getElementById(id: string): PageElement | null;
	querySelector(selector: string): PageNode | null;
	querySelectorAll(selector: string): ArrayLike<PageBox>;
};
declare const window: { marker?: number };
declare const localStorage: { getItem(key: string): string | null };
declare const navigator: { serviceWorker: { ready: Promise<{ active: unknown }> } };
declare const indexedDB: { open(name: string): IdbRequest<IdbDatabase> };
declare const caches: { open(name: string): Promise<{ keys(): Promise<{ url: string }[]> }> };

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const FFMPEG = spawnSync("ffmpeg", ["-version"], { stdio: "ignore" }).status === 0;
const TSX = "node_modules/.bin/tsx";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
/** Generous bounds for what the browser must do by itself; they fail a test, they measure nothing. */
const SCREEN_TIMEOUT_MS = 20_000;
const PLAYBACK_PATH = "/api/v1/device/playback";

type Rgb = [number, number, number];
interface Box {
	left: number;
	top: number;
	width: number;
	height: number;
}
const RED: Rgb = [220, 30, 30];
const BLUE: Rgb = [30, 60, 220];
const GREEN: Rgb = [30, 200, 60];

interface Content {
	id: string;
	sha256: string;
}

/**
 * An HTTP proxy in front of the platform: the browser's origin stays the same while the platform
 * behind it stops and starts, a stopped platform looks to the browser like an unreachable server
 * (connection reset), and `dropAnswers` lets requests to a path reach the platform while their
 * answers are lost on the way back, as on a flaky network.
 */
interface LossyProxy {
	url: string;
	target: string;
	/** The bodies of every request to `path`, in order. */
	bodies(path: string): string[];
	/** The bodies of the requests whose answers were lost. */
	dropped: string[];
	/** The next `times` requests to `path` reach the platform; their answers are lost. */
	dropAnswers(method: string, path: string, times: number): void;
	close(): Promise<void>;
}

async function lossyProxy(target: string): Promise<LossyProxy> {
	const seen = new Map<string, string[]>();
	const drops = new Map<string, number>();
	const sockets = new Set<import("node:net").Socket>();
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", chunk => chunks.push(chunk));
		req.on("end", () => {
			const body = Buffer.concat(chunks);
			const pathname = (req.url ?? "/").split("?")[0];
			seen.set(pathname, [...(seen.get(pathname) ?? []), body.toString("utf8")]);
			const key = `${req.method} ${pathname}`;
			const upstream = http.request(`${proxy.target}${req.url}`, { method: req.method, headers: req.headers }, answer => {
				// Only an answer that exists can be lost: a request that never got through does not count.
				const left = drops.get(key) ?? 0;
				if (left > 0) {
					drops.set(key, left - 1);
					proxy.dropped.push(body.toString("utf8"));
					answer.resume();
					answer.on("end", () => res.socket?.destroy());
					return;
				}
				res.writeHead(answer.statusCode ?? 502, answer.headers);
				answer.pipe(res);
			});
			upstream.on("error", () => res.socket?.destroy());
			upstream.end(body);
		});
	});
	server.on("connection", socket => {
		sockets.add(socket);
		socket.on("close", () => sockets.delete(socket));
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const { port } = server.address() as import("node:net").AddressInfo;
	const proxy: LossyProxy = {
		url: `http://127.0.0.1:${port}`,
		target,
		bodies: path => seen.get(path) ?? [],
		dropped: [],
		dropAnswers: (method, path, times) => void drops.set(`${method} ${path}`, times),
		close: () =>
			new Promise<void>(resolve => {
				for (const socket of sockets) socket.destroy();
				server.close(() => resolve());
			})
	};
	return proxy;
}

function ensurePlayerBuilt(): void {
	if (fs.existsSync(path.join(ROOT, "player/build/main.js"))) return;
	const build = spawnSync("npm", ["run", "build:player", "--silent"], { cwd: ROOT, encoding: "utf8" });
	if (build.status !== 0) throw new Error(`npm run build:player failed:\n${build.stdout}${build.stderr}`);
}

describeIf(fs.existsSync(CHROMIUM), `${CHROMIUM} not installed (apt-get install chromium)`)("web player in Chromium", () => {
	const dataDir = tempDir("marquee-player-");
	const env = { DATA_DIR: dataDir, RATE_LIMIT_PER_MINUTE: "100000", ANALYTICS_BATCH_MS: "200" };
	let proc: PlatformProcess;
	/** The platform (the test's API calls go straight to it). */
	let url: string;
	/** What the browser opens: the proxy in front of the platform. */
	let proxy: LossyProxy;
	let browser: Browser;
	let context: BrowserContext;
	let page: Page;
	let owner: string;
	let displayId: string;
	const problems: string[] = [];
	/** While the platform is stopped or the display deleted on purpose, failed requests are expected. */
	let failuresExpected = false;

	async function call<T = unknown>(route: string, init: { method?: string; json?: unknown; form?: FormData; token?: string } = {}): Promise<{ status: number; body: T }> {
		const headers: Record<string, string> = {};
		const token = init.token ?? owner;
		if (token) headers.Authorization = `Bearer ${token}`;
		let body: string | FormData | undefined = init.form;
		if (init.json !== undefined) {
			headers["Content-Type"] = "application/json";
			body = JSON.stringify(init.json);
		}
		const res = await fetch(`${url}/api/v1${route}`, { method: init.method ?? "GET", headers, body });
		const text = await res.text();
		let parsed: unknown = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			/* CSV, say */
		}
		return { status: res.status, body: parsed as T };
	}

	async function expectStatus<T>(expected: number, route: string, init: Parameters<typeof call>[1] = {}): Promise<T> {
		const res = await call<T>(route, init);
		if (res.status !== expected) throw new Error(`${init.method ?? "GET"} ${route} answered ${res.status}, expected ${expected}: ${JSON.stringify(res.body)}`);
		return res.body;
	}

	async function upload(name: string, colour: Rgb): Promise<Content> {
		// A wide image on a 16:9 screen: letterboxed, black above and below.
		const png = await sharp({ create: { width: 640, height: 200, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } })
			.png()
			.toBuffer();
		return uploadFile(name, png, "image/png", { durationMs: "1500" });
	}

	async function uploadFile(name: string, bytes: Buffer, type: string, fields: Record<string, string> = {}): Promise<Content> {
		const form = new FormData();
		form.set("name", name);
		for (const [key, value] of Object.entries(fields)) form.set(key, value);
		form.set("file", new Blob([new Uint8Array(bytes)], { type }), `${name}.${type.split("/")[1]}`);
		return expectStatus<Content>(201, "/content", { method: "POST", form });
	}

	/** The sha256 of every media file in the player's cache. */
	async function cachedMedia(p: Page = page): Promise<string[]> {
		const urls = await p.evaluate(async () => (await (await caches.open("marquee-content-v1")).keys()).map(r => r.url));
		return urls.map(u => u.split("/").pop() ?? "").sort();
	}

	async function start(): Promise<void> {
		proc = await spawnPlatform(TSX, ["server.ts"], env);
		url = proc.url;
		await waitFor200(`${url}/health/ready`, 60_000, proc);
		if (proxy) proxy.target = url;
	}

	async function stop(): Promise<void> {
		proc.kill("SIGTERM");
		await proc.exited;
	}

	/** Waits until the screen shows `contentId` (null: nothing). */
	async function onScreen(contentId: string | null, timeout = SCREEN_TIMEOUT_MS): Promise<void> {
		await page.waitForFunction(id => (document.body.dataset.contentId ?? null) === id, contentId, { timeout });
	}

	async function shownContent(): Promise<string | null> {
		return page.evaluate(() => document.body.dataset.contentId ?? null);
	}

	/** The colour of the screenshot's pixel at (x, y) as fractions of the viewport. */
	async function pixel(fx: number, fy: number, p: Page = page): Promise<Rgb> {
		const shot = await p.screenshot();
		const { data, info } = await sharp(shot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
		const x = Math.floor(info.width * fx);
		const y = Math.floor(info.height * fy);
		const i = (y * info.width + x) * info.channels;
		return [data[i], data[i + 1], data[i + 2]];
	}

	function near(actual: Rgb, expected: Rgb): boolean {
		return actual.every((v, i) => Math.abs(v - expected[i]) <= 24);
	}

	/**
	 * Whether the pixel at (x, y) shows one of `colours`, screenshot after screenshot for up to
	 * 20 s: paint lags the DOM by a frame or more on a loaded machine. With `item`, only a
	 * screenshot taken while that item was on screen throughout counts (a playlist moves on by
	 * itself; the loop brings the item back). For what must hold on every screenshot (a dark
	 * screen), use `pixel` once instead.
	 */
	async function paints(fx: number, fy: number, colours: Rgb | Rgb[], { item, p = page }: { item?: string; p?: Page } = {}): Promise<boolean> {
		const wanted = (Array.isArray(colours[0]) ? colours : [colours]) as Rgb[];
		const showing = () => p.evaluate(id => id === undefined || document.body.dataset.contentId === id, item);
		for (const deadline = Date.now() + 20_000; Date.now() < deadline; await p.waitForTimeout(50)) {
			if (!(await showing())) continue;
			const colour = await pixel(fx, fy, p);
			if ((await showing()) && wanted.some(w => near(colour, w))) return true;
		}
		return false;
	}

	/** Waits until the item on screen changed `times` times (the playlist goes on by itself). */
	async function advances(times: number): Promise<string[]> {
		const seen: string[] = [];
		let last = await shownContent();
		for (let i = 0; i < times; i++) {
			await page.waitForFunction(prev => (document.body.dataset.contentId ?? null) !== prev && document.body.dataset.contentId !== undefined, last, { timeout: SCREEN_TIMEOUT_MS });
			last = await shownContent();
			seen.push(last ?? "");
		}
		return seen;
	}

	/** Plays the page holds that the server has not accepted yet (the player's IndexedDB outbox). */
	function outboxSize(p: Page = page): Promise<number> {
		return p.evaluate(
			() =>
				new Promise<number>((resolve, reject) => {
					const open = indexedDB.open("marquee-player");
					open.onsuccess = () => {
						const req = open.result.transaction("plays").objectStore("plays").count();
						req.onsuccess = () => {
							open.result.close();
							resolve(req.result);
						};
						req.onerror = () => reject(req.error);
					};
					open.onerror = () => reject(open.error);
				})
		);
	}

	function watch(p: Page): void {
		p.on("pageerror", err => problems.push(`pageerror: ${err.message}`));
		p.on("console", msg => {
			if (msg.type() === "error" && !failuresExpected) problems.push(`console: ${msg.text()} ${msg.location().url}`);
			if (/Content.Security.Policy/i.test(msg.text())) problems.push(`csp: ${msg.text()}`);
		});
	}

	let red: Content;
	let blue: Content;
	let loop: { id: string };

	beforeAll(async () => {
		ensurePlayerBuilt();
		await start();
		proxy = await lossyProxy(url);
		browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
		context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
		page = await context.newPage();
		watch(page);
		const account = { email: `player-${process.pid}@example.com`, password: "Screens all over the lobby 42", name: "Pia Player", organizationName: "Player Org" };
		owner = (await expectStatus<{ accessToken: string }>(201, "/auth/register", { method: "POST", json: account, token: "" })).accessToken;
		red = await upload("Red", RED);
		blue = await upload("Blue", BLUE);
		loop = await expectStatus<{ id: string }>(201, "/playlists", { method: "POST", json: { name: "Loop", items: [{ contentId: red.id }, { contentId: blue.id }] } });
	}, 120_000);

	afterAll(async () => {
		await browser?.close();
		await proxy?.close();
		if (proc) killGroup(proc);
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	it("a fresh page shows a pairing code and its QR code; paired by an admin, it plays the scheduled images in order", async () => {
		await page.goto(`${proxy.url}/player`);
		expect(new URL(page.url()).pathname).toBe("/player/");
		await page.waitForFunction(() => /^[A-Z0-9]{3} [A-Z0-9]{3}$/.test(document.getElementById("code")?.textContent ?? ""), undefined, { timeout: SCREEN_TIMEOUT_MS });
		expect(await page.evaluate(() => document.body.dataset.state)).toBe("pairing");
		const code = (await page.textContent("#code"))!.replace(" ", "");
		await page.waitForFunction(() => (document.getElementById("qr")?.naturalWidth ?? 0) > 0);
		// The code is big: at least a tenth of the screen's height.
		const box = await page.locator("#code").boundingBox();
		expect(box!.height).toBeGreaterThan(72);

		const display = await expectStatus<{ id: string }>(201, "/displays/pair", { method: "POST", json: { code, name: "Lobby" } });
		displayId = display.id;
		await expectStatus(201, "/schedules", { method: "POST", json: { name: "All day", playlistId: loop.id, targets: { displayIds: [displayId] } } });

		await onScreen(red.id);
		expect(await page.evaluate(() => document.body.dataset.state)).toBe("playing");
		// Centre red, letterboxed: the top edge is black.
		expect(await paints(0.5, 0.5, RED, { item: red.id })).toBe(true);
		expect(await paints(0.5, 0.05, [0, 0, 0], { item: red.id })).toBe(true);
		await onScreen(blue.id);
		expect(await paints(0.5, 0.5, BLUE, { item: blue.id })).toBe(true);
		await onScreen(red.id);

		const heartbeat = await expectStatus<{ status: string; appVersion: string | null }>(200, `/displays/${displayId}`);
		expect(heartbeat.status).toBe("online");
	}, 90_000);

	it("a schedule change and a content deletion reach the screen through the live stream, without a reload", async () => {
		await page.evaluate(() => (window.marker = 42));
		const green = await upload("Green", GREEN);
		const urgent = await expectStatus<{ id: string }>(201, "/playlists", { method: "POST", json: { name: "Urgent", items: [{ contentId: green.id }] } });
		const schedule = await expectStatus<{ id: string }>(201, "/schedules", {
			method: "POST",
			json: { name: "Urgent", playlistId: urgent.id, targets: { displayIds: [displayId] }, priority: 10 }
		});
		await onScreen(green.id);
		expect(await paints(0.5, 0.5, GREEN, { item: green.id })).toBe(true);

		await expectStatus(204, `/content/${green.id}`, { method: "DELETE" });
		await onScreen(null);
		expect(await page.isVisible("#idle")).toBe(true);

		await expectStatus(204, `/schedules/${schedule.id}`, { method: "DELETE" });
		await page.waitForFunction(ids => ids.includes(document.body.dataset.contentId ?? ""), [red.id, blue.id], { timeout: SCREEN_TIMEOUT_MS });
		expect(await page.evaluate(() => window.marker)).toBe(42);
		// The deleted item's file stays cached for a day (a schedule that comes back needs no download).
		expect(await cachedMedia()).toEqual([red.sha256, blue.sha256, green.sha256].sort());
	}, 90_000);

	(FFMPEG ? it : it.skip)("plays videos muted to their end and web pages in sandboxed frames", async () => {
		// A 2 s yellow WebM, and a magenta page on another origin.
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-video-"));
		const file = path.join(dir, "yellow.webm");
		const made = spawnSync("ffmpeg", ["-loglevel", "error", "-f", "lavfi", "-i", "color=c=0xF0E020:s=320x180:d=2:r=10", "-c:v", "libvpx", "-b:v", "200k", file]);
		expect(made.status).toBe(0);
		const video = await uploadFile("Yellow", fs.readFileSync(file), "video/webm");
		fs.rmSync(dir, { recursive: true, force: true });
		const site = http.createServer((_req, res) => {
			res.writeHead(200, { "Content-Type": "text/html" });
			res.end('<!DOCTYPE html><html><body style="margin:0;background:#f010f0;height:100vh"></body></html>');
		});
		await new Promise<void>(resolve => site.listen(0, "127.0.0.1", resolve));
		const siteUrl = `http://127.0.0.1:${(site.address() as import("node:net").AddressInfo).port}/board`;
		try {
			const web = await expectStatus<Content>(201, "/content/url", { method: "POST", json: { name: "Board", url: siteUrl, durationMs: 2000 } });
			const mixed = await expectStatus<{ id: string }>(201, "/playlists", { method: "POST", json: { name: "Mixed", items: [{ contentId: video.id }, { contentId: web.id }] } });
			const schedule = await expectStatus<{ id: string }>(201, "/schedules", {
				method: "POST",
				json: { name: "Mixed", playlistId: mixed.id, targets: { displayIds: [displayId] }, priority: 20 }
			});
			await onScreen(video.id);
			const state = await page.evaluate(() => {
				const el = document.querySelector(".layer.visible video");
				return el ? { muted: el.muted, paused: el.paused } : null;
			});
			expect(state).toEqual({ muted: true, paused: false });
			expect(await paints(0.5, 0.5, [240, 224, 32], { item: video.id })).toBe(true);
			await onScreen(web.id);
			const frame = await page.evaluate(() => document.querySelector(".layer.visible iframe")?.getAttribute("sandbox") ?? null);
			expect(frame).toBe("allow-scripts allow-same-origin"); // another origin than the player's
			expect(await paints(0.5, 0.5, [240, 16, 240], { item: web.id })).toBe(true);
			await onScreen(video.id);
			await expectStatus(204, `/schedules/${schedule.id}`, { method: "DELETE" });
			await page.waitForFunction(ids => ids.includes(document.body.dataset.contentId ?? ""), [red.id, blue.id], { timeout: SCREEN_TIMEOUT_MS });
		} finally {
			await new Promise(resolve => site.close(resolve));
		}
	}, 90_000);

	it("commands: reload reloads the page once, clear-cache downloads again only what plays, screenshot is acknowledged as unsupported", async () => {
		const navigations: string[] = [];
		page.on("framenavigated", frame => {
			if (frame === page.mainFrame()) navigations.push(frame.url());
		});
		// Slow removals from the cache in this page (the reload ends it): a clear-cache it began would
		// still be clearing when the reload, sent just before, takes the page away.
		await page.evaluate(`(() => {
			const remove = Cache.prototype.delete;
			Cache.prototype.delete = async function (...args) {
				await new Promise(resolve => setTimeout(resolve, 400));
				return remove.apply(this, args);
			};
		})()`);
		const reload = await expectStatus<{ id: string }>(202, `/displays/${displayId}/commands`, { method: "POST", json: { type: "reload" } });
		const screenshot = await expectStatus<{ id: string }>(202, `/displays/${displayId}/commands`, { method: "POST", json: { type: "screenshot" } });
		const clear = await expectStatus<{ id: string }>(202, `/displays/${displayId}/commands`, { method: "POST", json: { type: "clear-cache" } });
		const sent = [reload.id, screenshot.id, clear.id];
		for (let i = 0; i < 100; i++) {
			const { rows } = await expectStatus<{ rows: { id: string; status: string }[] }>(200, `/displays/${displayId}/commands`);
			if (sent.every(id => rows.find(r => r.id === id)?.status === "acknowledged")) break;
			await page.waitForTimeout(200);
		}
		const { rows } = await expectStatus<{ rows: { id: string; status: string; result: string | null }[] }>(200, `/displays/${displayId}/commands`);
		for (const id of sent) expect(rows.find(r => r.id === id)?.status).toBe("acknowledged");
		// Carried out, not merely acknowledged (a clear-cache the reload cut short is done again after it).
		expect(rows.find(r => r.id === clear.id)?.result).toBe("content cache cleared");
		// The cache held the deleted green image (and the video): now only what plays is back.
		for (let i = 0; i < 50 && (await cachedMedia()).join() !== [red.sha256, blue.sha256].sort().join(); i++) await page.waitForTimeout(200);
		expect(await cachedMedia()).toEqual([red.sha256, blue.sha256].sort());
		await page.waitForFunction(ids => ids.includes(document.body.dataset.contentId ?? ""), [red.id, blue.id], { timeout: SCREEN_TIMEOUT_MS });
		// The heartbeat after the reload still lists nothing new to do: one reload, not a loop.
		await page.waitForTimeout(1500);
		expect(navigations.length).toBe(1);
	}, 60_000);

	it("with the platform stopped it keeps playing its cached manifest across a reload; once back, every play arrives exactly once", async () => {
		// The first batch after the restart reaches the platform, but its answer is lost; twice,
		// since Chromium itself resends a POST once when a reused connection fails without an answer.
		proxy.dropAnswers("POST", PLAYBACK_PATH, 2);
		expect(await page.evaluate(async () => Boolean((await navigator.serviceWorker.ready).active))).toBe(true);
		const from = new Date(Date.now() - 60_000).toISOString();

		failuresExpected = true;
		await stop();
		const stoppedAt = Date.now();
		await page.waitForFunction(() => document.body.dataset.online === "false", undefined, { timeout: 60_000 });
		expect(await page.isVisible("#badge")).toBe(true);
		expect(new Set(await advances(2))).toEqual(new Set([red.id, blue.id]));

		await page.reload();
		await page.waitForFunction(ids => ids.includes(document.body.dataset.contentId ?? ""), [red.id, blue.id], { timeout: SCREEN_TIMEOUT_MS });
		expect(await page.evaluate(() => document.body.dataset.state)).toBe("playing");
		await advances(2);
		expect(await paints(0.5, 0.5, [RED, BLUE])).toBe(true);
		const offlinePlays = await outboxSize();
		expect(offlinePlays).toBeGreaterThanOrEqual(4);

		await start();
		const restartedAt = Date.now();
		// Empty outbox = every play was answered 202.
		for (let i = 0; i < 120 && (await outboxSize()) > 0; i++) await page.waitForTimeout(500);
		expect(await outboxSize()).toBe(0);
		failuresExpected = false;
		await page.waitForFunction(() => document.body.dataset.online === "true", undefined, { timeout: 60_000 });
		expect(await page.isVisible("#badge")).toBe(false);
		// Every play the page sent, retries included.
		const posted = proxy.bodies(PLAYBACK_PATH).flatMap(body => (JSON.parse(body) as { events: { eventId: string }[] }).events.map(e => e.eventId));

		// Proof of play once analytics has the batches (it inserts every 200 ms here).
		const to = new Date(Date.now() + 60_000).toISOString();
		// The export's fields are always quoted; the names in this test hold no commas or quotes.
		let rows: Record<string, string>[] = [];
		let exported: string[] = [];
		for (let i = 0; i < 50; i++) {
			const csv = await expectStatus<string>(200, `/analytics/playback/export?from=${from}&to=${to}&displayId=${displayId}`);
			const [header, ...lines] = csv.trim().split("\n").map(line => line.split(",").map(field => JSON.parse(field) as string));
			rows = lines.map(fields => Object.fromEntries(header.map((name, k) => [name, fields[k]])));
			exported = rows.map(r => r.eventId);
			if (new Set(posted).size > 0 && [...new Set(posted)].every(id => exported.includes(id))) break;
			await new Promise(resolve => setTimeout(resolve, 200));
		}
		const unique = new Set(posted);
		// The batch whose answers were lost went again…
		expect(proxy.dropped).toHaveLength(2);
		// (by Chromium once on a reused connection, by the player otherwise): each lost play went out
		// again after its answers were lost (and maybe during the outage, when nothing got through).
		const lost = proxy.dropped.flatMap(body => (JSON.parse(body) as { events: { eventId: string }[] }).events.map(e => e.eventId));
		expect(lost.length).toBeGreaterThanOrEqual(4);
		for (const id of new Set(lost)) {
			expect(posted.filter(x => x === id).length).toBeGreaterThan(lost.filter(x => x === id).length);
		}
		expect(exported.length).toBe(new Set(exported).size); // …and is stored once, like every play
		expect([...unique].every(id => exported.includes(id))).toBe(true);
		// Plays made while the server was down are among them (at least the four seen on screen).
		const duringOutage = rows.filter(r => Date.parse(r.startedAt) > stoppedAt && Date.parse(r.startedAt) < restartedAt);
		expect(duringOutage.length).toBeGreaterThanOrEqual(4);
		// The report counts what the export lists.
		const report = await expectStatus<{ rows: { key: string; plays: number }[] }>(200, `/analytics/playback?from=${from}&to=${to}&displayId=${displayId}&groupBy=content`);
		expect(report.rows.reduce((n, r) => n + r.plays, 0)).toBe(exported.length);
	}, 240_000);

	it("a deleted display's page goes back to the pairing screen by itself", async () => {
		failuresExpected = true; // its token is refused (401) before it pairs again
		await expectStatus(204, `/displays/${displayId}`, { method: "DELETE" });
		await page.waitForFunction(() => document.body.dataset.state === "pairing", undefined, { timeout: SCREEN_TIMEOUT_MS });
		await page.waitForFunction(() => /^[A-Z0-9]{3} [A-Z0-9]{3}$/.test(document.getElementById("code")?.textContent ?? ""), undefined, { timeout: SCREEN_TIMEOUT_MS });
		expect(await page.evaluate(() => localStorage.getItem("marquee.deviceToken"))).toBeNull();
		expect(await shownContent()).toBeNull();
		failuresExpected = false;
	}, 60_000);

	it("zero-touch: /player/?provisioningKey= registers the screen into the key's group and plays", async () => {
		const group = await expectStatus<{ id: string }>(201, "/display-groups", { method: "POST", json: { name: "Lobby screens" } });
		await expectStatus(201, "/schedules", { method: "POST", json: { name: "Lobbies", playlistId: loop.id, targets: { groupIds: [group.id] } } });
		const key = await expectStatus<{ key: string }>(201, "/provisioning-keys", { method: "POST", json: { name: "Lobby rollout", groupIds: [group.id] } });
		const fresh = await browser.newContext({ viewport: { width: 1280, height: 720 } });
		const screen = await fresh.newPage();
		watch(screen);
		try {
			await screen.goto(`${proxy.url}/player/?provisioningKey=${encodeURIComponent(key.key)}`);
			await screen.waitForFunction(ids => ids.includes(document.body.dataset.contentId ?? ""), [red.id, blue.id], { timeout: SCREEN_TIMEOUT_MS });
			const displays = await expectStatus<{ rows: { id: string; groupIds: string[] }[] }>(200, `/displays?groupId=${group.id}`);
			expect(displays.rows).toHaveLength(1);
		} finally {
			await fresh.close();
		}
	}, 60_000);

	/** A screen of its own for layouts and power (nothing scheduled on it: its default layout plays). */
	let zoned: { context: BrowserContext; page: Page; displayId: string } | null = null;
	let mainList: { id: string };
	let tickerList: { id: string };
	const OLIVE: Rgb = [200, 160, 0];

	/** What a layout page shows: the frame's box and each zone's, with what each plays. */
	function zonesOnScreen(p: Page): Promise<{ frame: Box | null; zones: (Box & { zoneId?: string; contentId?: string })[]; body?: string; power?: string }> {
		return p.evaluate(() => {
			const box = (el: PageBox) => {
				const r = el.getBoundingClientRect();
				return { left: r.left, top: r.top, width: r.width, height: r.height };
			};
			const frames = Array.from(document.querySelectorAll(".frame"));
			return {
				frame: frames.length === 1 ? box(frames[0]) : null,
				zones: Array.from(document.querySelectorAll("[data-zone-id]")).map(el => ({ ...box(el), zoneId: el.dataset.zoneId, contentId: el.dataset.contentId })),
				body: document.body.dataset.contentId,
				power: document.body.dataset.power
			};
		});
	}

	it("a layout: its frame letterboxed at its ratio on its background colour, each zone at its place playing its own playlist", async () => {
		const key = await expectStatus<{ key: string }>(201, "/provisioning-keys", { method: "POST", json: { name: "Zoned screen" } });
		const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
		const screen = await context.newPage();
		watch(screen);
		await screen.goto(`${proxy.url}/player/?provisioningKey=${encodeURIComponent(key.key)}`);
		await screen.waitForFunction(() => document.body.dataset.state === "playing", undefined, { timeout: SCREEN_TIMEOUT_MS });
		const id = await screen.evaluate(() => localStorage.getItem("marquee.displayId"));
		expect(id).toEqual(expect.any(String));
		zoned = { context, page: screen, displayId: id! };
		expect(await screen.evaluate(() => document.body.dataset.power)).toBe("on");

		mainList = await expectStatus<{ id: string }>(201, "/playlists", { method: "POST", json: { name: "Main zone", items: [{ contentId: red.id }] } });
		// The ticker's image stays 8 s: long enough to see that a change elsewhere does not restart it.
		tickerList = await expectStatus<{ id: string }>(201, "/playlists", { method: "POST", json: { name: "Ticker", items: [{ contentId: blue.id, durationMs: 8000 }] } });
		// A 4:3 frame on a 16:9 window: pillarboxed. The main zone over the top three quarters, a
		// ticker inset at the bottom; between them, and around the letterboxed images, the olive background.
		const layout = await expectStatus<{ id: string; zones: { id: string; name: string }[] }>(201, "/layouts", {
			method: "POST",
			json: {
				name: "Lobby with ticker",
				width: 4,
				height: 3,
				backgroundColor: "#c8a000",
				zones: [
					{ name: "Main", x: 0, y: 0, width: 1, height: 0.75, playlistId: mainList.id },
					{ name: "Ticker", x: 0.05, y: 0.8, width: 0.9, height: 0.15, zIndex: 1, playlistId: tickerList.id }
				]
			}
		});
		const mainZone = layout.zones.find(z => z.name === "Main")!.id;
		const tickerZone = layout.zones.find(z => z.name === "Ticker")!.id;
		await expectStatus(200, `/displays/${zoned.displayId}`, { method: "PATCH", json: { defaultLayoutId: layout.id } });

		await screen.waitForFunction(
			([m, t, r, b]) => {
				const zones = Array.from(document.querySelectorAll("[data-zone-id]"));
				const of = (zone: string) => zones.find(z => z.dataset.zoneId === zone)?.dataset.contentId;
				return zones.length === 2 && of(m) === r && of(t) === b && document.body.dataset.contentId === r;
			},
			[mainZone, tickerZone, red.id, blue.id],
			{ timeout: SCREEN_TIMEOUT_MS }
		);
		const shown = await zonesOnScreen(screen);
		// Drawing order, lowest zIndex first.
		expect(shown.zones.map(z => z.zoneId)).toEqual([mainZone, tickerZone]);
		// The frame: 720 px high at 4:3, centred.
		const frame = shown.frame!;
		expect(frame.height).toBeCloseTo(720, 0);
		expect(frame.width / frame.height).toBeCloseTo(4 / 3, 2);
		expect(frame.left).toBeCloseTo((1280 - 960) / 2, 0);
		expect(frame.top).toBeCloseTo(0, 0);
		// Each zone at its fractions of the frame.
		const relative = (z: Box) => [(z.left - frame.left) / frame.width, (z.top - frame.top) / frame.height, z.width / frame.width, z.height / frame.height];
		const expected = [
			[0, 0, 1, 0.75],
			[0.05, 0.8, 0.9, 0.15]
		];
		shown.zones.forEach((z, i) => relative(z).forEach((v, k) => expect(v).toBeCloseTo(expected[i][k], 2)));
		expect(await screen.isVisible("#idle")).toBe(false);

		expect(await paints(0.5, 0.375, RED, { p: screen })).toBe(true); // the main zone's image
		expect(await paints(0.5, 0.875, BLUE, { p: screen })).toBe(true); // the ticker's
		expect(await paints(0.5, 0.05, OLIVE, { p: screen })).toBe(true); // above the letterboxed red image
		expect(await paints(0.5, 0.775, OLIVE, { p: screen })).toBe(true); // between the zones
		expect(await paints(0.05, 0.5, [0, 0, 0], { p: screen })).toBe(true); // the pillarbox

		// A background image added to the layout: downloaded, cached, shown behind the zones; the
		// zones, whose own etags did not change, go on undisturbed (the ticker's image stays the same element).
		const tickerImage = `[data-zone-id="${tickerZone}"] .layer.visible > img`;
		const mark = (selector: string) =>
			screen.evaluate(sel => {
				const el = Array.from(document.querySelectorAll(sel))[0];
				if (el) el.dataset.marker = "1";
				return Boolean(el);
			}, selector);
		const marked = (selector: string) => screen.evaluate(sel => Array.from(document.querySelectorAll(sel))[0]?.dataset.marker === "1", selector);
		expect(await mark(tickerImage)).toBe(true);
		// From the start of its next 8 s play on.
		await screen.waitForFunction(sel => Array.from(document.querySelectorAll(sel)).some(el => el.dataset.marker === undefined), tickerImage, { timeout: SCREEN_TIMEOUT_MS });
		expect(await mark(tickerImage)).toBe(true);
		const backdrop = await uploadFile(
			"Backdrop",
			await sharp({ create: { width: 400, height: 300, channels: 3, background: { r: GREEN[0], g: GREEN[1], b: GREEN[2] } } })
				.png()
				.toBuffer(),
			"image/png"
		);
		await expectStatus(200, `/layouts/${layout.id}`, { method: "PATCH", json: { backgroundContentId: backdrop.id } });
		await screen.waitForFunction(id => Array.from(document.querySelectorAll(".frame"))[0]?.dataset.backgroundId === id, backdrop.id, { timeout: SCREEN_TIMEOUT_MS });
		expect(await marked(tickerImage)).toBe(true);
		expect(await paints(0.5, 0.775, GREEN, { p: screen })).toBe(true); // between the zones
		expect(await paints(0.05, 0.5, [0, 0, 0], { p: screen })).toBe(true);
		expect(await paints(0.5, 0.875, BLUE, { p: screen })).toBe(true);
		for (let i = 0; i < 50 && !(await cachedMedia(screen)).includes(backdrop.sha256); i++) await screen.waitForTimeout(200);
		expect(await cachedMedia(screen)).toEqual([red.sha256, blue.sha256, backdrop.sha256].sort());

		// Each zone's plays name its own playlist.
		const plays = () =>
			proxy
				.bodies(PLAYBACK_PATH)
				.flatMap(body => (JSON.parse(body) as { events: { contentId: string; playlistId?: string }[] }).events)
				.filter(e => e.playlistId === mainList.id || e.playlistId === tickerList.id);
		for (let i = 0; i < 60 && new Set(plays().map(e => e.playlistId)).size < 2; i++) await screen.waitForTimeout(500);
		const byPlaylist = new Map(plays().map(e => [e.playlistId, e.contentId]));
		expect(byPlaylist.get(mainList.id)).toBe(red.id);
		expect(byPlaylist.get(tickerList.id)).toBe(blue.id);
	}, 90_000);

	it("a power schedule blanks the screen (nothing plays, nothing is recorded) and it lights again by itself, offline, at the end of the window", async () => {
		expect(zoned).not.toBeNull();
		const { context, page: screen, displayId: id } = zoned!;
		const timezone = await screen.evaluate(() => (JSON.parse(localStorage.getItem("marquee.manifest") ?? "{}") as { timezone?: string }).timezone ?? "UTC");
		// An off window from this minute to the next (or the one after, to leave at least 30 s of it).
		const now = Date.now();
		const minute = 60_000;
		const end = Math.floor(now / minute) * minute + (now % minute < 30_000 ? 1 : 2) * minute;
		const hhmm = (ms: number) => new Intl.DateTimeFormat("en-GB", { timeZone: timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(ms));
		await expectStatus(201, "/power-schedules", {
			method: "POST",
			json: { name: "Dark for a minute", targets: { displayIds: [id] }, state: "off", startTime: hhmm(now), endTime: hhmm(end) }
		});

		await screen.waitForFunction(() => document.body.dataset.power === "off", undefined, { timeout: SCREEN_TIMEOUT_MS });
		const offSeen = Date.now();
		expect(await screen.isVisible("#blank")).toBe(true);
		const power = await screen.evaluate(() => (JSON.parse(localStorage.getItem("marquee.manifest") ?? "{}") as { power?: unknown }).power);
		expect(power).toEqual({ state: "off", until: new Date(end).toISOString() });
		// Nothing plays while dark, and it stays so.
		for (let i = 0; i < 3; i++) {
			const dark = await zonesOnScreen(screen);
			expect(dark).toEqual({ frame: null, zones: [], body: undefined, power: "off" });
			expect(near(await pixel(0.5, 0.375, screen), [0, 0, 0])).toBe(true);
			expect(near(await pixel(0.5, 0.875, screen), [0, 0, 0])).toBe(true);
			await screen.waitForTimeout(1_000);
		}
		// It still heartbeats: not counted as offline.
		expect((await expectStatus<{ status: string }>(200, `/displays/${id}`)).status).toBe("online");

		// At the window's end it lights again by itself, without the network, every zone from the
		// start of its playlist (from its cache).
		failuresExpected = true;
		await context.setOffline(true);
		await screen.waitForFunction(() => document.body.dataset.power === "on", undefined, { timeout: Math.max(0, end - Date.now()) + SCREEN_TIMEOUT_MS });
		const onSeen = Date.now();
		expect(onSeen).toBeGreaterThanOrEqual(end - 1_000);
		// Lit by its own timer at the window's end, not by a later manifest refresh (minutes away); the slack is for a loaded machine.
		expect(onSeen).toBeLessThan(end + 15_000);
		await screen.waitForFunction(
			([r, b]) => {
				const zones = Array.from(document.querySelectorAll("[data-zone-id]"));
				return zones.length === 2 && zones[0].dataset.contentId === r && zones[1].dataset.contentId === b && document.body.dataset.contentId === r;
			},
			[red.id, blue.id],
			{ timeout: SCREEN_TIMEOUT_MS }
		);
		expect(await screen.isVisible("#blank")).toBe(false);
		expect(await paints(0.5, 0.375, RED, { p: screen })).toBe(true);
		await context.setOffline(false);
		await screen.waitForFunction(() => document.body.dataset.online === "true", undefined, { timeout: 60_000 });
		failuresExpected = false;

		// No play started while it was dark (the one cut short by the blanking started before).
		for (let i = 0; i < 60 && (await outboxSize(screen)) > 0; i++) await screen.waitForTimeout(500);
		expect(await outboxSize(screen)).toBe(0);
		const csv = await expectStatus<string>(200, `/analytics/playback/export?from=${new Date(offSeen).toISOString()}&to=${new Date(end - 1).toISOString()}&displayId=${id}`);
		expect(csv.trim().split("\n")).toHaveLength(1); // the header only
	}, 240_000);

	it("stays inside its Content-Security-Policy: no violations, no page errors", () => {
		expect(problems).toEqual([]);
	});
});
