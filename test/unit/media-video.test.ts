import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sniff } from "../../services/media/sniff";
import { DEFAULT_DURATION_MS, ffprobeAvailable, findExecutable, locateFfprobe, parseFfprobe, probeVideo } from "../../services/media/video";
import { describeIf } from "../helpers/servers";

let dir: string;
beforeAll(() => {
	dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-video-"));
});
afterAll(() => {
	fs.rmSync(dir, { recursive: true, force: true });
});

let stubs = 0;
/**
 * A fake ffprobe: a shell script that writes its arguments, one per line, to `<script>.args` and
 * prints `output` (or sleeps, or fails).
 */
function stubFfprobe(output: string, behaviour: { exitCode?: number; sleepSeconds?: number } = {}): { bin: string; args: () => string[] } {
	const bin = path.join(dir, `ffprobe-stub-${++stubs}`);
	const outFile = `${bin}.json`;
	const argsFile = `${bin}.args`;
	fs.writeFileSync(outFile, output);
	fs.writeFileSync(
		bin,
		[
			"#!/bin/sh",
			`for a in "$@"; do printf '%s\\n' "$a"; done > '${argsFile}'`,
			behaviour.sleepSeconds ? `exec sleep ${behaviour.sleepSeconds}` : "",
			`cat '${outFile}'`,
			`exit ${behaviour.exitCode ?? 0}`
		].join("\n"),
		{ mode: 0o755 }
	);
	return { bin, args: () => fs.readFileSync(argsFile, "utf8").split("\n").slice(0, -1) };
}

function ffprobeJson(streams: unknown[], format: Record<string, unknown> = { duration: "12.345000" }): string {
	return JSON.stringify({ streams, format });
}

const H264 = { index: 0, codec_type: "video", codec_name: "h264", width: 1920, height: 1080, duration: "12.300000", disposition: { attached_pic: 0 } };
const AAC = { index: 1, codec_type: "audio", codec_name: "aac", duration: "12.345000" };

/** The start of an MP4 (ftyp isom + the start of moov); enough for sniff(), not for a decoder. */
const MP4_HEAD = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from("ftypisom\0\0\x02\0isommp41", "latin1"), Buffer.from([0, 0, 0, 8]), Buffer.from("moov")]);
const WEBM_HEAD = Buffer.from("1a45df a3 9f 4286 8101 42f7 8101 42f2 8104 42f3 8108 4282 84 7765626d 4287 8102 4285 8102".replace(/ /g, ""), "hex");

function touch(name: string, content: string | Buffer = MP4_HEAD): string {
	const file = path.join(dir, name);
	fs.writeFileSync(file, content);
	return file;
}

describe("probeVideo without ffprobe", () => {
	it("uses the client's duration, no dimensions", async () => {
		await expect(probeVideo(touch("a.mp4"), 7_500, { ffprobePath: null })).resolves.toEqual({ durationMs: 7_500, width: null, height: null, source: "client" });
	});

	it("defaults to 10 s", async () => {
		expect(DEFAULT_DURATION_MS).toBe(10_000);
		await expect(probeVideo(touch("b.mp4"), undefined, { ffprobePath: null })).resolves.toEqual({ durationMs: 10_000, width: null, height: null, source: "client" });
	});

	it("rounds a fractional client duration and ignores a nonsensical one", async () => {
		const file = touch("c.mp4");
		expect((await probeVideo(file, 1234.6, { ffprobePath: null })).durationMs).toBe(1235);
		for (const bad of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) {
			expect((await probeVideo(file, bad, { ffprobePath: null })).durationMs).toBe(10_000);
		}
	});

	it("falls back to the client when the ffprobe binary does not exist", async () => {
		await expect(probeVideo(touch("d.mp4"), 3_000, { ffprobePath: path.join(dir, "no-such-ffprobe") })).resolves.toEqual({
			durationMs: 3_000,
			width: null,
			height: null,
			source: "client"
		});
	});
});

describe("findExecutable / ffprobeAvailable", () => {
	it("finds an executable file on a PATH and skips the rest", async () => {
		const a = fs.mkdtempSync(path.join(dir, "path-a-"));
		const b = fs.mkdtempSync(path.join(dir, "path-b-"));
		const c = fs.mkdtempSync(path.join(dir, "path-c-"));
		fs.writeFileSync(path.join(a, "ffprobe"), "not executable", { mode: 0o644 });
		fs.mkdirSync(path.join(b, "ffprobe")); // a directory
		fs.writeFileSync(path.join(c, "ffprobe"), "#!/bin/sh\n", { mode: 0o755 });
		const pathEnv = ["", "relative/bin", path.join(dir, "missing"), a, b, c].join(path.delimiter);
		await expect(findExecutable("ffprobe", pathEnv)).resolves.toBe(path.join(c, "ffprobe"));
		await expect(findExecutable("ffprobe", [a, b].join(path.delimiter))).resolves.toBeNull();
		await expect(findExecutable("ffprobe", "")).resolves.toBeNull();
	});

	it("agrees with PATH, and caches", async () => {
		const expected = await findExecutable("ffprobe", process.env.PATH ?? "");
		await expect(locateFfprobe()).resolves.toBe(expected);
		await expect(ffprobeAvailable()).resolves.toBe(expected !== null);
		expect(locateFfprobe()).toBe(locateFfprobe());
	});
});

describe("probeVideo with a stub ffprobe", () => {
	it("runs ffprobe without a shell, with the file as one argument", async () => {
		const stub = stubFfprobe(ffprobeJson([H264, AAC]));
		const file = touch("-x; touch PWNED $(touch PWNED2) 'q' \"dq\" | ok.mp4");
		const cwd = process.cwd();
		process.chdir(dir);
		let info;
		try {
			info = await probeVideo(path.basename(file), 5_000, { ffprobePath: stub.bin });
		} finally {
			process.chdir(cwd);
		}
		expect(info).toEqual({ durationMs: 12_345, width: 1920, height: 1080, source: "ffprobe" });
		const args = stub.args();
		expect(args).toEqual(["-v", "error", "-protocol_whitelist", "file", "-f", "mov", "-print_format", "json", "-show_format", "-show_streams", "-i", `file:${file}`]);
		expect(fs.existsSync(path.join(dir, "PWNED"))).toBe(false);
		expect(fs.existsSync(path.join(dir, "PWNED2"))).toBe(false);
	});

	it("uses the first video stream, skipping audio and cover art", async () => {
		const cover = { index: 0, codec_type: "video", codec_name: "mjpeg", width: 600, height: 600, disposition: { attached_pic: 1 } };
		const stub = stubFfprobe(ffprobeJson([AAC, cover, { ...H264, index: 2, width: 1280, height: 720 }], { duration: 2.5 }));
		await expect(probeVideo(touch("e.mp4"), 5_000, { ffprobePath: stub.bin })).resolves.toEqual({ durationMs: 2_500, width: 1280, height: 720, source: "ffprobe" });
	});

	it.each<[string, Record<string, unknown>]>([
		["a display matrix of -90°", { side_data_list: [{ side_data_type: "Display Matrix", rotation: -90 }] }],
		["a display matrix of 270°", { side_data_list: [{ side_data_type: "Display Matrix", rotation: 270 }] }],
		["a legacy rotate tag", { tags: { rotate: "90" } }]
	])("reports dimensions as displayed for %s", async (_name, extra) => {
		const stub = stubFfprobe(ffprobeJson([{ ...H264, ...extra }]));
		await expect(probeVideo(touch("f.mp4"), undefined, { ffprobePath: stub.bin })).resolves.toMatchObject({ width: 1080, height: 1920, source: "ffprobe" });
	});

	it("keeps dimensions for a half turn", async () => {
		const stub = stubFfprobe(ffprobeJson([{ ...H264, side_data_list: [{ rotation: 180 }] }]));
		await expect(probeVideo(touch("g.mp4"), undefined, { ffprobePath: stub.bin })).resolves.toMatchObject({ width: 1920, height: 1080 });
	});

	it("takes the stream's duration when the container has none", async () => {
		const stub = stubFfprobe(ffprobeJson([H264], { duration: "N/A" }));
		await expect(probeVideo(touch("h.mp4"), 5_000, { ffprobePath: stub.bin })).resolves.toEqual({ durationMs: 12_300, width: 1920, height: 1080, source: "ffprobe" });
	});

	it("keeps the dimensions but the client's duration when there is no duration at all", async () => {
		const stub = stubFfprobe(ffprobeJson([{ ...H264, duration: undefined }], {}));
		await expect(probeVideo(touch("i.webm"), 4_000, { ffprobePath: stub.bin })).resolves.toEqual({ durationMs: 4_000, width: 1920, height: 1080, source: "client" });
	});

	it("tells ffprobe the demuxer of the sniffed type", async () => {
		const stub = stubFfprobe(ffprobeJson([H264]));
		await probeVideo(touch("webm.bin", WEBM_HEAD), undefined, { ffprobePath: stub.bin });
		expect(stub.args().slice(4, 6)).toEqual(["-f", "matroska"]);
		await probeVideo(touch("mp4.bin", MP4_HEAD), undefined, { ffprobePath: stub.bin });
		expect(stub.args().slice(4, 6)).toEqual(["-f", "mov"]);
	});

	it.each<[string, string | Buffer]>([
		["text", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n"],
		["a QuickTime file", Buffer.concat([Buffer.from([0, 0, 0, 0x14]), Buffer.from("ftypqt  \0\0\0\0qt  ", "latin1")])],
		["a PNG", Buffer.from("89504e470d0a1a0a0000000d49484452", "hex")],
		["an empty file", ""]
	])("does not run ffprobe on %s", async (_name, content) => {
		const stub = stubFfprobe(ffprobeJson([H264]));
		await expect(probeVideo(touch("not-video.mp4", content), 2_000, { ffprobePath: stub.bin })).resolves.toEqual({ durationMs: 2_000, width: null, height: null, source: "client" });
		expect(fs.existsSync(`${stub.bin}.args`)).toBe(false);
	});

	it("falls back for a missing file", async () => {
		const stub = stubFfprobe(ffprobeJson([H264]));
		await expect(probeVideo(path.join(dir, "missing.mp4"), 2_000, { ffprobePath: stub.bin })).resolves.toMatchObject({ durationMs: 2_000, source: "client" });
	});

	it.each<[string, string, { exitCode?: number }]>([
		["only an audio stream", ffprobeJson([AAC]), {}],
		["no streams", ffprobeJson([]), {}],
		["a video stream without dimensions", ffprobeJson([{ ...H264, width: 0, height: undefined }]), {}],
		["output that is not JSON", "Invalid data found when processing input", {}],
		["JSON that is not an object", "[1,2,3]", {}],
		["an exit code of 1", ffprobeJson([H264]), { exitCode: 1 }]
	])("falls back to the client on %s", async (_name, output, behaviour) => {
		const stub = stubFfprobe(output, behaviour);
		await expect(probeVideo(touch("j.mp4"), 6_000, { ffprobePath: stub.bin })).resolves.toEqual({ durationMs: 6_000, width: null, height: null, source: "client" });
	});

	it("kills a hanging ffprobe after the timeout and falls back", async () => {
		const stub = stubFfprobe(ffprobeJson([H264]), { sleepSeconds: 30 });
		const started = Date.now();
		await expect(probeVideo(touch("k.mp4"), 6_000, { ffprobePath: stub.bin, timeoutMs: 300 })).resolves.toMatchObject({ durationMs: 6_000, source: "client" });
		expect(Date.now() - started).toBeLessThan(10_000);
	});

	it("parses ffprobe output defensively", () => {
		expect(parseFfprobe("")).toBeNull();
		expect(parseFfprobe("null")).toBeNull();
		expect(parseFfprobe('{"streams":"nope"}')).toBeNull();
		expect(parseFfprobe('{"streams":[null,1,"x",{"codec_type":"video","width":"640","height":480.5}]}')).toBeNull();
		expect(parseFfprobe('{"streams":[{"codec_type":"video","width":"640","height":"480"}],"format":{"duration":"0.04"}}')).toEqual({ durationMs: 40, width: 640, height: 480 });
		expect(parseFfprobe('{"streams":[{"codec_type":"video","width":640,"height":480}],"format":{"duration":"-3"}}')).toEqual({ durationMs: null, width: 640, height: 480 });
	});
});

const ffmpegInstalled = spawnSync("ffmpeg", ["-version"], { stdio: "ignore" }).status === 0;
const ffprobeInstalled = spawnSync("ffprobe", ["-version"], { stdio: "ignore" }).status === 0;

describeIf(ffmpegInstalled && ffprobeInstalled, "ffmpeg/ffprobe not installed (apt-get install ffmpeg)")("probeVideo with the real ffprobe", () => {
	function ffmpeg(name: string, ...args: string[]): string {
		const file = path.join(dir, name);
		execFileSync("ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1", ...args, file], { stdio: "pipe", timeout: 60_000 });
		return file;
	}

	it("is found on PATH", async () => {
		await expect(ffprobeAvailable()).resolves.toBe(true);
	});

	it("reads a 1-second 160×120 MP4", async () => {
		const file = ffmpeg("real.mp4", "-pix_fmt", "yuv420p");
		expect(sniff(fs.readFileSync(file))?.mimeType).toBe("video/mp4");
		const info = await probeVideo(file, 99_000);
		expect(info).toMatchObject({ width: 160, height: 120, source: "ffprobe" });
		expect(Math.abs(info.durationMs - 1000)).toBeLessThanOrEqual(100);
	});

	it("reads a 1-second 160×120 WebM", async () => {
		const file = ffmpeg("real.webm", "-c:v", "libvpx-vp9", "-deadline", "realtime");
		expect(sniff(fs.readFileSync(file))?.mimeType).toBe("video/webm");
		const info = await probeVideo(file, 99_000);
		expect(info).toMatchObject({ width: 160, height: 120, source: "ffprobe" });
		expect(Math.abs(info.durationMs - 1000)).toBeLessThanOrEqual(100);
	});

	it("reads a file whose name starts with '-' and contains ':' and spaces", async () => {
		const file = ffmpeg("real.mp4", "-pix_fmt", "yuv420p");
		const odd = path.join(dir, "-odd: name ; x.mp4");
		fs.copyFileSync(file, odd);
		await expect(probeVideo(odd, 99_000)).resolves.toMatchObject({ width: 160, height: 120, source: "ffprobe" });
	});

	it("reports a rotated phone video as displayed", async () => {
		const plain = ffmpeg("plain.mp4", "-pix_fmt", "yuv420p");
		const rotated = path.join(dir, "rotated.mp4");
		execFileSync("ffmpeg", ["-v", "error", "-y", "-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated], { stdio: "pipe", timeout: 60_000 });
		await expect(probeVideo(rotated, 99_000)).resolves.toMatchObject({ width: 120, height: 160, source: "ffprobe" });
	});

	it("falls back to the client for a file that is not a video", async () => {
		await expect(probeVideo(touch("text.mp4", "hello"), 8_000)).resolves.toEqual({ durationMs: 8_000, width: null, height: null, source: "client" });
	});

	it("does not read an HLS playlist behind an MP4 signature as a playlist", async () => {
		const real = ffmpeg("segment.mp4", "-pix_fmt", "yuv420p");
		const playlist = touch("playlist.mp4", `${MP4_HEAD.subarray(0, 0x18).toString("latin1")}#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile:${real}\n#EXTINF:1.0,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n`);
		await expect(probeVideo(playlist, 8_000)).resolves.toEqual({ durationMs: 8_000, width: null, height: null, source: "client" });
	});
});
