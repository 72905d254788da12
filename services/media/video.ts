/**
 * Video duration and dimensions: from ffprobe when it is installed, otherwise from the client.
 *
 *   probeVideo(file, clientDurationMs)
 *     ffprobe found and it reads a video stream with a duration
 *         → { durationMs, width, height, source: "ffprobe" }
 *     ffprobe found, reads a video stream but no usable duration
 *         → { durationMs: client, width, height, source: "client" }
 *     ffprobe missing, failing, timing out, no video stream, or the file is not MP4/WebM
 *         → { durationMs: client, width: null, height: null, source: "client" }
 *   where "client" is `clientDurationMs` when it is a positive finite number (rounded), else
 *   DEFAULT_DURATION_MS (10 s). `source` tells where `durationMs` came from. Width and height are
 *   as displayed: a stream with a 90°/270° rotation (phone videos) has them swapped.
 *
 * ffprobe is looked up on PATH once per process (`ffprobeAvailable()`; installing it later needs a
 * restart); no environment variable. Tests and callers may pass `ffprobePath` instead.
 *
 * ffprobe only sees files that `sniff()` calls MP4 or WebM (the first bytes are read again here),
 * and is told the demuxer (`-f mov` / `-f matroska`), so it never guesses a format: a file that is
 * in fact an HLS or concat playlist cannot make it open other files or URLs. It runs through
 * `execFile` with an argument list (never a shell), `-protocol_whitelist file`, a timeout (SIGKILL)
 * and an output limit; the file is given as `file:<absolute path>`, so a name starting with "-" is
 * no option and a name with ":" is no protocol.
 *
 * `probeVideo` never rejects: an unreadable or missing file, a file that is not MP4/WebM, an
 * ffprobe error — all give the client fallback.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SNIFF_BYTES, sniff } from "./sniff";

export const DEFAULT_DURATION_MS = 10_000;
export const FFPROBE_TIMEOUT_MS = 15_000;
/** ffprobe's JSON output is a few kB; a file with thousands of streams is not worth reading. */
const FFPROBE_MAX_BUFFER = 4 * 1024 * 1024;

export interface VideoInfo {
	durationMs: number;
	width: number | null;
	height: number | null;
	source: "ffprobe" | "client";
}

export interface ProbeVideoOptions {
	/**
	 * The ffprobe binary. Undefined (the default): the one on PATH, if any (`locateFfprobe()`).
	 * null: behave as if ffprobe were not installed.
	 */
	ffprobePath?: string | null;
	/** Kill ffprobe after this long. Default FFPROBE_TIMEOUT_MS. */
	timeoutMs?: number;
}

let located: Promise<string | null> | undefined;

/** Absolute path of `ffprobe` on PATH, or null; looked up once per process. */
export function locateFfprobe(): Promise<string | null> {
	located ??= findExecutable("ffprobe", process.env.PATH ?? "");
	return located;
}

/** Whether ffprobe is on PATH (cached). */
export async function ffprobeAvailable(): Promise<boolean> {
	return (await locateFfprobe()) !== null;
}

/** The first executable file called `name` in the directories of `pathEnv` (a PATH value), or null. */
export async function findExecutable(name: string, pathEnv: string): Promise<string | null> {
	for (const dir of pathEnv.split(path.delimiter)) {
		if (!dir || !path.isAbsolute(dir)) continue; // a relative PATH entry depends on the cwd: skip it
		const candidate = path.join(dir, name);
		try {
			await fs.promises.access(candidate, fs.constants.X_OK);
			if ((await fs.promises.stat(candidate)).isFile()) return candidate;
		} catch {
			// not here
		}
	}
	return null;
}

export async function probeVideo(file: string, clientDurationMs: number | undefined, options: ProbeVideoOptions = {}): Promise<VideoInfo> {
	const client = clientDuration(clientDurationMs);
	const fallback: VideoInfo = { durationMs: client, width: null, height: null, source: "client" };
	const ffprobe = options.ffprobePath === undefined ? await locateFfprobe() : options.ffprobePath;
	if (!ffprobe) return fallback;

	const absolute = path.resolve(file);
	let output: string;
	try {
		const demuxer = DEMUXER[(await readSniffed(absolute)) ?? ""];
		if (!demuxer) return fallback;
		output = await runFfprobe(ffprobe, absolute, demuxer, options.timeoutMs ?? FFPROBE_TIMEOUT_MS);
	} catch {
		return fallback;
	}
	const probed = parseFfprobe(output);
	if (!probed) return fallback;
	if (probed.durationMs === null) return { durationMs: client, width: probed.width, height: probed.height, source: "client" };
	return { durationMs: probed.durationMs, width: probed.width, height: probed.height, source: "ffprobe" };
}

function clientDuration(ms: number | undefined): number {
	return typeof ms === "number" && Number.isFinite(ms) && ms > 0 ? Math.max(1, Math.round(ms)) : DEFAULT_DURATION_MS;
}

/** ffmpeg demuxer for each sniffed video type. */
const DEMUXER: Record<string, string | undefined> = { "video/mp4": "mov", "video/webm": "matroska" };

async function readSniffed(file: string): Promise<string | undefined> {
	const handle = await fs.promises.open(file, "r");
	try {
		const head = Buffer.alloc(SNIFF_BYTES);
		const { bytesRead } = await handle.read(head, 0, SNIFF_BYTES, 0);
		return sniff(head.subarray(0, bytesRead))?.mimeType;
	} finally {
		await handle.close();
	}
}

function runFfprobe(ffprobe: string, absoluteFile: string, demuxer: string, timeoutMs: number): Promise<string> {
	const args = ["-v", "error", "-protocol_whitelist", "file", "-f", demuxer, "-print_format", "json", "-show_format", "-show_streams", "-i", `file:${absoluteFile}`];
	return new Promise((resolve, reject) => {
		execFile(ffprobe, args, { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: FFPROBE_MAX_BUFFER, windowsHide: true }, (err, stdout) => {
			if (err) reject(err);
			else resolve(stdout);
		});
	});
}

interface Probed {
	durationMs: number | null;
	width: number;
	height: number;
}

/** The first real video stream (not cover art) of ffprobe's JSON, or null. Exported for tests. */
export function parseFfprobe(output: string): Probed | null {
	let json: unknown;
	try {
		json = JSON.parse(output);
	} catch {
		return null;
	}
	if (!isObject(json) || !Array.isArray(json.streams)) return null;
	const stream = json.streams.find(
		(s: unknown): s is Record<string, unknown> =>
			isObject(s) && s.codec_type === "video" && !(isObject(s.disposition) && s.disposition.attached_pic === 1)
	);
	if (!stream) return null;
	const width = positiveInteger(stream.width);
	const height = positiveInteger(stream.height);
	if (width === null || height === null) return null;

	const format = isObject(json.format) ? json.format : {};
	const seconds = positiveNumber(format.duration) ?? positiveNumber(stream.duration);
	const durationMs = seconds === null ? null : Math.max(1, Math.round(seconds * 1000));

	const quarterTurn = Math.abs(rotation(stream)) % 180 === 90;
	return quarterTurn ? { durationMs, width: height, height: width } : { durationMs, width, height };
}

/** Rotation in degrees: the display matrix side data (ffmpeg ≥ 5) or the legacy "rotate" tag. */
function rotation(stream: Record<string, unknown>): number {
	if (Array.isArray(stream.side_data_list)) {
		for (const side of stream.side_data_list) {
			if (isObject(side) && typeof side.rotation === "number" && Number.isFinite(side.rotation)) return Math.round(side.rotation);
		}
	}
	if (isObject(stream.tags)) {
		const rotate = Number(stream.tags.rotate);
		if (Number.isFinite(rotate)) return Math.round(rotate);
	}
	return 0;
}

function isObject(x: unknown): x is Record<string, unknown> {
	return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** ffprobe prints numbers as numbers or strings ("1.000000", "N/A"). */
function positiveNumber(x: unknown): number | null {
	const n = typeof x === "number" ? x : typeof x === "string" && x.trim() !== "" ? Number(x) : NaN;
	return Number.isFinite(n) && n > 0 ? n : null;
}

function positiveInteger(x: unknown): number | null {
	const n = positiveNumber(x);
	return n !== null && Number.isInteger(n) ? n : null;
}
