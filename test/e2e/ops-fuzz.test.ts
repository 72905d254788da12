/**
 * Property-based fuzzing of the routes outside /api/v1 — health, metrics, the API docs and the web
 * player's pages, assets, service worker and QR codes — against the platform as a separate process
 * started as users start it (`tsx server.ts`). The main fuzz suite (fuzz.test.ts) covers /api/v1
 * from the OpenAPI document; these routes are not in it, and their handlers are plain functions
 * (files, streams, async QR rendering) with failure modes of their own.
 *
 * Each case: a method, a path (the routes' own shapes with hostile segments: traversal, encoded
 * NULs, broken percent-encoding, very long, unicode; and paths nobody serves), headers (Range,
 * conditional requests, encodings, origins) and a body. The property: every answer comes within
 * 10 s and is below 500 (a readiness probe's 503 excepted), a JSON error is in the API's error
 * shape, and nothing answers with a file from outside the served folders. The process is alive
 * and ready afterwards.
 */
import http from "node:http";
import fc from "fast-check";
import { tempDir } from "../helpers/platform";
import { killGroup, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { reportLine } from "../helpers/report";

jest.setTimeout(180_000);

const CASES = Number(process.env.OPS_FUZZ_CASES ?? 3000);
const SEED = process.env.OPS_FUZZ_SEED !== undefined ? Number(process.env.OPS_FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0;
const CONCURRENCY = 8;
const TIMEOUT_MS = 10_000;

interface Case {
	method: string;
	path: string;
	headers: Record<string, string>;
	body: Buffer | null;
}

interface Answer {
	status: number;
	type: string;
	body: Buffer;
}

/** Hostile path segments, already in the form they go on the wire. */
const hostileSegment = fc.oneof(
	fc.constantFrom("..", "%2e%2e", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2fpackage.json", "....//....//etc/passwd", "%00", "a%00.js", "%", "%zz", "%c0%ae%c0%ae", "%ff%fe", "player.css", "main.js", "icon.svg", "sw.js", ".", "~", "CON", "a".repeat(5000)),
	fc.string({ maxLength: 40 }).map(text => encodeURIComponent(text)),
	fc.string({ unit: "grapheme", maxLength: 20 }).map(text => encodeURIComponent(text))
);

const query = fc.oneof(
	fc.constant(""),
	hostileSegment.map(value => `?code=${value}`),
	fc.constantFrom("?code=", "?code=ABCDEF", "?code=ABCDEF&code=GHJKLM", "?code[]=x", "?code[$gt]=", `?code=${"Z".repeat(3000)}`, "?x=%", "?__proto__[a]=1", "?provisioningKey=mpk_x")
);

const path = fc.oneof(
	fc.constantFrom("/health/live", "/health/ready", "/metrics", "/api/openapi.json", "/api/docs", "/api/docs/", "/player", "/player/", "/player/shell.json", "/player/sw.js", "/player/qr.svg"),
	fc.tuple(fc.constantFrom("/player/assets/", "/api/docs/assets/", "/health/", "/player/", "/api/", "/"), hostileSegment).map(([base, segment]) => base + segment),
	fc.tuple(fc.constantFrom("/player/qr.svg", "/player/", "/metrics", "/api/docs"), query).map(([base, q]) => base + q),
	fc.constantFrom("//player", "/player//assets//main.js", "/player/assets/", "/player/assets", "/PLAYER/", "/health", "/api/v1", "/api/v2/x")
);

const headers = fc.record(
	{
		range: fc.constantFrom("bytes=0-0", "bytes=abc", "bytes=-1", "bytes=99999999-", "bytes=0-1,2-3,4-5", "items=0-1", ""),
		"if-none-match": fc.constantFrom('"x"', "*", "W/\"a\"", "", "\u00ff"),
		"if-modified-since": fc.constantFrom("Thu, 01 Jan 1970 00:00:00 GMT", "yesterday", "", "Sat, 01 Jan 10000 00:00:00 GMT"),
		"accept-encoding": fc.constantFrom("gzip", "br", "deflate", "identity;q=0", "*;q=0", "x".repeat(300)),
		origin: fc.constantFrom("https://evil.example", "null", "http://localhost:3000"),
		"content-type": fc.constantFrom("application/json", "text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"),
		authorization: fc.constantFrom("Bearer x", "Bearer " + "a".repeat(5000), "Basic Zm9vOmJhcg==", "")
	},
	{ requiredKeys: [] }
);

const fuzzCase: fc.Arbitrary<Case> = fc.record({
	method: fc.constantFrom("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"),
	path,
	headers,
	body: fc.option(fc.uint8Array({ maxLength: 2048 }).map(bytes => Buffer.from(bytes)), { nil: null })
});

function send(base: URL, c: Case): Promise<Answer> {
	return new Promise((resolve, reject) => {
		const headersOut: Record<string, string> = Object.fromEntries(Object.entries(c.headers).filter(([, v]) => v !== ""));
		const hasBody = c.body !== null && c.method !== "GET" && c.method !== "HEAD";
		if (hasBody) headersOut["content-length"] = String((c.body as Buffer).length);
		const req = http.request({ host: base.hostname, port: base.port, method: c.method, path: c.path, headers: headersOut, timeout: TIMEOUT_MS }, res => {
			const chunks: Buffer[] = [];
			res.on("data", (chunk: Buffer) => chunks.push(chunk));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks) }));
			res.on("error", reject);
		});
		req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
		req.on("error", reject);
		req.end(hasBody ? c.body : undefined);
	});
}

/** What is wrong with an answer, or null. */
function problem(c: Case, answer: Answer): string | null {
	const readiness = c.path.startsWith("/health/ready");
	if (answer.status >= 500 && !(readiness && answer.status === 503)) return `${answer.status}`;
	if (answer.status >= 400 && answer.type.startsWith("application/json") && answer.body.length > 0) {
		try {
			const parsed = JSON.parse(answer.body.toString("utf8")) as { error?: { type?: unknown; message?: unknown } };
			if (typeof parsed.error?.type !== "string" || typeof parsed.error?.message !== "string") return "an error outside the error shape";
		} catch {
			return "a JSON error that does not parse";
		}
	}
	// Nothing from outside the served folders: the project's package.json or the system's passwd.
	const text = answer.body.toString("utf8");
	if (answer.status < 300 && (/"name":\s*"marquee"/.test(text) || /root:x:0:0/.test(text))) return "a file from outside the served folders";
	return null;
}

describe("fuzzing the routes outside /api/v1 (health, metrics, docs, the web player)", () => {
	let platform: PlatformProcess;

	beforeAll(async () => {
		platform = await spawnPlatform("node_modules/.bin/tsx", ["server.ts"], { DATA_DIR: tempDir("marquee-ops-fuzz-"), RATE_LIMIT_PER_MINUTE: "1000000" });
		await waitFor200(`${platform.url}/health/ready`, 60_000, platform);
	}, 90_000);

	afterAll(() => killGroup(platform));

	it(`answers ${CASES} hostile requests below 500, in the error shape, and stays up`, async () => {
		const base = new URL(platform.url);
		const cases = fc.sample(fuzzCase, { numRuns: CASES, seed: SEED });
		const failures: string[] = [];
		const statuses = new Map<number, number>();
		let next = 0;
		const worker = async () => {
			while (next < cases.length) {
				const c = cases[next++];
				try {
					const answer = await send(base, c);
					statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
					const wrong = problem(c, answer);
					if (wrong) failures.push(`${c.method} ${c.path.slice(0, 120)} ${JSON.stringify(c.headers).slice(0, 120)}: ${wrong} ${answer.body.toString("utf8").slice(0, 160)}`);
				} catch (err) {
					failures.push(`${c.method} ${c.path.slice(0, 120)}: ${(err as Error).message}`);
				}
			}
		};
		await Promise.all(Array.from({ length: CONCURRENCY }, worker));
		expect([...new Set(failures)].slice(0, 20)).toEqual([]);
		// Alive and ready afterwards.
		const ready = await fetch(`${platform.url}/health/ready`);
		expect(ready.status).toBe(200);
		const counts = [...statuses.entries()].sort(([a], [b]) => a - b).map(([status, n]) => `${status}×${n}`).join(" ");
		reportLine(`ops-fuzz: ${CASES} requests to health, metrics, docs and player routes (seed ${SEED}): ${counts}; 0 5xx, process alive`);
	});
});
