/**
 * Backups and restore of the embedded default, as a user runs them: the platform started with
 * `tsx server.ts` on a temporary DATA_DIR, the backup taken with `npm run backup` WHILE the
 * platform serves requests, then the data changed, the platform
 * stopped, the archive restored (into a fresh DATA_DIR, and with --force over the changed one)
 * and the platform started on it: exactly the state at the backup is back — the same API
 * answers, the same media bytes, the same play count, a device token that still works (the JWT
 * secret came back too) — and nothing of the later changes. A running platform, a corrupt and a
 * truncated archive are refused with one clear line.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { tempDir } from "../helpers/platform";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { reportLine } from "../helpers/report";
import { untilValue } from "../helpers/until";

jest.setTimeout(300_000);

const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
const sha256 = (data: Buffer | Uint8Array) => createHash("sha256").update(data).digest("hex");
const ENV = { RATE_LIMIT_PER_MINUTE: "1000000", ANALYTICS_BATCH_MS: "200" };
const HOUR = 3_600_000;
const FROM = new Date(Date.now() - 48 * HOUR).toISOString();
const TO = new Date(Date.now() + 2 * HOUR).toISOString();

interface Answer<T = unknown> {
	status: number;
	body: T;
}

async function call<T = unknown>(url: string, route: string, init: { method?: string; token?: string; json?: unknown; body?: FormData } = {}): Promise<Answer<T>> {
	const headers: Record<string, string> = {};
	if (init.token) headers.Authorization = `Bearer ${init.token}`;
	if (init.json !== undefined) headers["Content-Type"] = "application/json";
	const res = await fetch(`${url}/api/v1${route}`, { method: init.method ?? "GET", headers, body: init.json === undefined ? init.body : JSON.stringify(init.json) });
	const text = await res.text();
	return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

async function bytesOf(url: string, route: string, token: string): Promise<{ status: number; bytes: Buffer }> {
	const res = await fetch(`${url}/api/v1${route}`, { headers: { Authorization: `Bearer ${token}` } });
	return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** `npm run <script> -- args`, as a user runs it: its exit code and what it printed. */
function run(script: "backup" | "restore", args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
	return new Promise(resolve => {
		const child = spawn("npm", ["run", "--silent", script, "--", ...args], { cwd: ROOT, env: { ...process.env, NODE_ENV: "development", ...env }, stdio: ["ignore", "pipe", "pipe"] });
		let stdout = "";
		let stderr = "";
		child.stdout.on("data", chunk => (stdout += chunk));
		child.stderr.on("data", chunk => (stderr += chunk));
		child.on("exit", code => resolve({ code, stdout, stderr }));
	});
}

interface PlaybackReport {
	totals: { plays: number };
	rows: Array<{ key: string; plays: number }>;
}

describe("backup while running, restore, start again (embedded default)", () => {
	const dataDir = tempDir("marquee-backup-");
	const freshDir = path.join(tempDir("marquee-restore-"), "data");
	const archiveDir = tempDir("marquee-archives-");
	const archive = path.join(archiveDir, "backup.tar.gz");
	let proc: PlatformProcess | null = null;

	// What the API answered just before the backup.
	let owner: { accessToken: string; tenant: { id: string } };
	let device: { id: string; token: string };
	let png: Buffer;
	const before: Record<string, Answer> = {};
	let playsAtBackup = 0;
	let noiseToken = "";

	async function start(dir: string): Promise<PlatformProcess> {
		const started = await spawnPlatform(TSX, ["server.ts"], { ...ENV, DATA_DIR: dir });
		await waitFor200(`${started.url}/health/ready`, 60_000, started);
		return started;
	}

	async function stop(): Promise<void> {
		if (!proc) return;
		proc.kill("SIGTERM");
		expect(await proc.exited).toBe(0);
		proc = null;
	}

	const report = (url: string) => call<PlaybackReport>(url, `/analytics/playback?from=${FROM}&to=${TO}&groupBy=content`, { token: owner.accessToken });

	const plays = (prefix: string, contentId: string, n: number) =>
		Array.from({ length: n }, (_, i) => ({ eventId: `${prefix}-${i}`, contentId, startedAt: new Date(Date.now() - HOUR + i * 1000).toISOString(), durationMs: 10_000, completed: true }));

	/** The answers that make up the backed-up state, as the API gives them now. */
	async function stateOf(url: string): Promise<Record<string, Answer>> {
		const contentId = (before.content.body as { id: string }).id;
		const playlistId = (before.playlist.body as { id: string }).id;
		const scheduleId = (before.schedule.body as { id: string }).id;
		return {
			tenant: await call(url, "/tenant", { token: owner.accessToken }),
			content: await call(url, `/content/${contentId}`, { token: owner.accessToken }),
			contentList: await call(url, "/content", { token: owner.accessToken }),
			playlist: await call(url, `/playlists/${playlistId}`, { token: owner.accessToken }),
			playlists: await call(url, "/playlists", { token: owner.accessToken }),
			schedule: await call(url, `/schedules/${scheduleId}`, { token: owner.accessToken }),
			display: await call(url, `/displays/${device.id}`, { token: owner.accessToken }),
			manifestItems: await call<{ items: unknown[] }>(url, "/device/manifest", { token: device.token }).then(r => ({ status: r.status, body: r.body.items }))
		};
	}

	/** Exactly the state captured before the backup: every answer, the bytes, the play count. */
	async function expectBackedUpState(url: string): Promise<void> {
		const now = await stateOf(url);
		expect(now).toEqual(before);
		const contentId = (before.content.body as { id: string }).id;
		const download = await bytesOf(url, `/content/${contentId}/download`, owner.accessToken);
		expect(download.status).toBe(200);
		expect(sha256(download.bytes)).toBe(sha256(png));
		expect(download.bytes.equals(png)).toBe(true);
		const deviceDownload = await bytesOf(url, `/device/content/${contentId}`, device.token);
		expect(deviceDownload.status).toBe(200);
		expect(deviceDownload.bytes.equals(png)).toBe(true);
		// Analytics: the plays of the backup, none of the later ones (and the later content's rows are absent).
		const counted = await untilValue("the analytics store to answer", () => report(url), r => r.status === 200);
		expect(counted.body.totals.plays).toBe(playsAtBackup);
		expect(counted.body.rows).toEqual([expect.objectContaining({ key: contentId, plays: playsAtBackup })]);
	}

	beforeAll(async () => {
		proc = await start(dataDir);
		const url = proc.url;
		const registered = await call<{ accessToken: string; tenant: { id: string } }>(url, "/auth/register", {
			method: "POST",
			json: { email: `backup-${process.pid}@example.com`, password: "Backup proof horse battery 1", name: "Bea", organizationName: "Acme Backup" }
		});
		expect(registered.status).toBe(201);
		owner = registered.body;

		png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
		const form = new FormData();
		form.append("name", "Blue poster");
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "poster.png");
		const uploaded = await call<{ id: string; sha256: string; status: string }>(url, "/content", { method: "POST", token: owner.accessToken, body: form });
		expect(uploaded.status).toBe(201);
		expect(uploaded.body).toMatchObject({ sha256: sha256(png), status: "ready" });
		const contentId = uploaded.body.id;

		const playlist = await call<{ id: string }>(url, "/playlists", { method: "POST", token: owner.accessToken, json: { name: "Lobby loop", items: [{ contentId }] } });
		expect(playlist.status).toBe(201);

		const pairing = await call<{ pairingId: string; code: string; pollSecret: string }>(url, "/device/pairing", { method: "POST", json: {} });
		const paired = await call<{ id: string }>(url, "/displays/pair", { method: "POST", token: owner.accessToken, json: { code: pairing.body.code, name: "Lobby screen" } });
		expect(paired.status).toBe(201);
		const polled = await fetch(`${url}/api/v1/device/pairing/${pairing.body.pairingId}`, { headers: { "X-Pairing-Secret": pairing.body.pollSecret } });
		device = { id: paired.body.id, token: ((await polled.json()) as { deviceToken: string }).deviceToken };

		const schedule = await call<{ id: string }>(url, "/schedules", { method: "POST", token: owner.accessToken, json: { name: "Always", playlistId: playlist.body.id, targets: { displayIds: [device.id] } } });
		expect(schedule.status).toBe(201);

		const posted = await call<{ accepted: number }>(url, "/device/playback", { method: "POST", token: device.token, json: { events: plays("before", contentId, 5) } });
		expect(posted).toEqual({ status: 202, body: { accepted: 5, duplicates: 0 } });
		playsAtBackup = (await untilValue("5 plays in the report", () => report(url), r => r.body?.totals?.plays === 5)).body.totals.plays;

		before.content = uploaded;
		before.playlist = playlist;
		before.schedule = schedule;
		Object.assign(before, await stateOf(url));
		// Sanity of what is compared: the real objects, not errors.
		expect(before.tenant).toMatchObject({ status: 200, body: { name: "Acme Backup" } });
		expect(before.manifestItems).toMatchObject({ status: 200, body: [{ contentId, sha256: sha256(png) }] });
		expect(before.display).toMatchObject({ status: 200, body: { id: device.id, name: "Lobby screen" } });

		const noise = await call<{ accessToken: string }>(url, "/auth/register", {
			method: "POST",
			json: { email: `noise-${process.pid}@example.com`, password: "Noise maker horse battery 2", name: "Nia", organizationName: "Busy Org" }
		});
		noiseToken = noise.body.accessToken;
	}, 180_000);

	afterAll(() => {
		if (proc) killGroup(proc);
		for (const dir of [dataDir, path.dirname(freshDir), archiveDir]) fs.rmSync(dir, { recursive: true, force: true });
	});

	it("takes a backup while the platform serves reads and writes", async () => {
		const url = (proc as PlatformProcess).url;
		// Requests go on during the whole backup: reads of the backed-up tenant, and in another
		// tenant pairs of writes across two services (web content, then a playlist using it).
		let busy = true;
		const failures: string[] = [];
		let requests = 0;
		const load = (async () => {
			for (let i = 0; busy; i++) {
				const reads = await Promise.all([call(url, "/tenant", { token: owner.accessToken }), call(url, "/content", { token: owner.accessToken }), call(url, "/device/manifest", { token: device.token })]);
				const item = await call<{ id: string }>(url, "/content/url", { method: "POST", token: noiseToken, json: { name: `Page ${i}`, url: `https://example.com/${i}`, durationMs: 5000 } });
				const list = await call(url, "/playlists", { method: "POST", token: noiseToken, json: { name: `Noise ${i}`, items: [{ contentId: item.body.id }] } });
				for (const r of [...reads, item, list]) if (r.status >= 300) failures.push(`${r.status} ${JSON.stringify(r.body)}`);
				requests += 5;
			}
		})();
		const result = await run("backup", ["--out", archive], { DATA_DIR: dataDir });
		busy = false;
		await load;
		expect(result.stderr).toBe("");
		expect(result.code).toBe(0);
		expect(result.stdout).toContain(`Backup written to ${archive}`);
		expect(result.stdout).toMatch(/by the running platform, pid \d+/);
		// The poster and its thumbnail; the other tenant's web pages have no objects.
		expect(result.stdout).toContain("media     2 objects");
		expect(failures).toEqual([]);
		expect(requests).toBeGreaterThan(0);
		expect(fs.existsSync(path.join(dataDir, "backups"))).toBe(false);
		reportLine(`backup: archive of a running platform taken while ${requests} requests were served`);
	});

	it("the later changes: content deleted, organisation renamed, more plays, a new playlist", async () => {
		const url = (proc as PlatformProcess).url;
		const contentId = (before.content.body as { id: string }).id;
		expect((await call(url, "/tenant", { method: "PATCH", token: owner.accessToken, json: { name: "Renamed Inc" } })).status).toBe(200);
		const later = await call<{ id: string }>(url, "/content/url", { method: "POST", token: owner.accessToken, json: { name: "Later page", url: "https://example.com/later", durationMs: 5000 } });
		expect(later.status).toBe(201);
		const posted = await call(url, "/device/playback", { method: "POST", token: device.token, json: { events: plays("after", later.body.id, 3) } });
		expect(posted.status).toBe(202);
		expect((await call(url, "/playlists", { method: "POST", token: owner.accessToken, json: { name: "Later loop", items: [{ contentId: later.body.id }] } })).status).toBe(201);
		expect((await call(url, `/content/${contentId}`, { method: "DELETE", token: owner.accessToken })).status).toBe(204);
		await untilValue("8 plays in the report", () => report(url), r => r.body?.totals?.plays === 8);
		expect((await call(url, `/content/${contentId}`, { token: owner.accessToken })).status).toBe(404);
	});

	it("restore refuses while the platform runs, with one line and no stack", async () => {
		const result = await run("restore", [archive, "--data-dir", dataDir, "--force"]);
		expect(result.code).toBe(1);
		expect(result.stdout).toBe("");
		expect(result.stderr).toMatch(/^marquee restore: the platform is running on .* \(pid \d+\): stop it first, restore replaces its data\n$/);
		await stop();
	});

	it("refuses a corrupted, a truncated and a missing archive, leaving the target alone", async () => {
		const bytes = fs.readFileSync(archive);
		const corrupt = path.join(archiveDir, "corrupt.tar.gz");
		const flipped = Buffer.from(bytes);
		for (let i = 0; i < 16; i++) flipped[Math.floor(bytes.length / 2) + i] ^= 0xff;
		fs.writeFileSync(corrupt, flipped);
		const truncated = path.join(archiveDir, "truncated.tar.gz");
		fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
		const target = path.join(archiveDir, "never");
		const cases: Array<[string, RegExp]> = [
			[corrupt, /^marquee restore: (the archive is corrupt|.* does not match its sha256 in the manifest: the archive is corrupt)/],
			[truncated, /^marquee restore: the archive is truncated/],
			[path.join(archiveDir, "missing.tar.gz"), /^marquee restore: there is no file .*missing\.tar\.gz\n$/]
		];
		for (const [file, message] of cases) {
			const result = await run("restore", [file, "--data-dir", target]);
			expect({ file: path.basename(file), code: result.code }).toEqual({ file: path.basename(file), code: 1 });
			expect(result.stderr).toMatch(message);
			expect(result.stderr.split("\n").filter(Boolean)).toHaveLength(1);
			expect(fs.existsSync(target)).toBe(false);
		}
		expect(fs.readdirSync(archiveDir).filter(name => name.startsWith(".never"))).toEqual([]);
	});

	it("restores into a fresh DATA_DIR: exactly the backed-up state is back", async () => {
		const result = await run("restore", [archive, "--data-dir", freshDir]);
		expect(result.stderr).toBe("");
		expect(result.code).toBe(0);
		expect(result.stdout).toContain(`Restored ${archive} into ${freshDir}`);
		expect(result.stdout).toContain("every file matched its sha256");
		proc = await start(freshDir);
		await expectBackedUpState(proc.url);
		// The other tenant's writes during the backup: every playlist restored names content that exists
		// (documents of two services from one instant).
		const noisePlaylists = await call<{ rows: Array<{ items: Array<{ contentId: string }> }> }>(proc.url, "/playlists?pageSize=100", { token: noiseToken });
		expect(noisePlaylists.status).toBe(200);
		for (const playlist of noisePlaylists.body.rows) {
			for (const item of playlist.items) expect((await call(proc.url, `/content/${item.contentId}`, { token: noiseToken })).status).toBe(200);
		}
		await stop();
	});

	it("restores over the changed DATA_DIR with --force, moving the old one aside", async () => {
		const refused = await run("restore", [archive, "--data-dir", dataDir]);
		expect(refused.code).toBe(1);
		expect(refused.stderr).toMatch(/^marquee restore: .* is not empty: pass --force/);

		const result = await run("restore", [archive, "--data-dir", dataDir, "--force"]);
		expect(result.stderr).toBe("");
		expect(result.code).toBe(0);
		const aside = /the previous data is in (.+)\n/.exec(result.stdout)?.[1] ?? "";
		expect(aside.startsWith(`${dataDir}.pre-restore-`)).toBe(true);
		// The changed data is still there, aside: the renamed organisation is in its tenants file.
		expect(fs.readFileSync(path.join(aside, "db", "tenants.db"), "utf8")).toContain("Renamed Inc");

		proc = await start(dataDir);
		await expectBackedUpState(proc.url);
		const names = (await call<{ rows: Array<{ name: string }> }>(proc.url, "/playlists", { token: owner.accessToken })).body.rows.map(p => p.name);
		expect(names).toEqual(["Lobby loop"]);
		await stop();
		fs.rmSync(aside, { recursive: true, force: true });
		reportLine("backup: restored twice (fresh and --force over changed data): documents, media bytes, device token and play count as at the backup");
	});
});
