/**
 * One webhook attempt over HTTP: resolve the destination and refuse non-public addresses
 * (ssrf.ts), connect to exactly the addresses checked, POST the stored body with its signed
 * headers, and report the answer (status, the first 1 KiB of the body, Retry-After) or why there
 * was none. Redirects are not followed: a 3xx is an answer like any other non-2xx, and following
 * one would send the request to a destination nobody checked.
 */
import http from "node:http";
import https from "node:https";
import { DestinationError, parseDestination, pinnedLookup, resolveDestination, type Resolve } from "../../shared/ssrf";

/** How much of a receiver's answer is kept for the delivery log. */
export const RESPONSE_BODY_LIMIT = 1024;
/** A Retry-After longer than this is cut to it: a receiver cannot park a delivery for months. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
const USER_AGENT = "Marquee-Webhooks/1.0";

export interface AttemptRequest {
	url: string;
	body: string;
	/** The signed Standard Webhooks headers. */
	headers: Record<string, string>;
	/** The receiver must have answered (status and the part of the body kept) within this, counted from the name lookup. */
	timeoutMs: number;
	allowPrivate: boolean;
	resolve: Resolve;
	/** Aborts the attempt (the process is stopping). */
	signal?: AbortSignal;
	/** For Retry-After given as an HTTP date. */
	now: number;
}

export type AttemptOutcome =
	| { kind: "response"; status: number; body: string; retryAfterMs: number | null }
	/** No answer: refused destination, DNS, connection, TLS, timeout or abort. */
	| { kind: "error"; error: string; refused: boolean };

/** Retry-After as milliseconds from `now`: delay-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | null {
	if (!value) return null;
	const text = value.trim();
	let ms: number;
	if (/^\d+$/.test(text)) ms = Number(text) * 1000;
	else {
		// An HTTP date names its day and month ("Sun, 01 Mar 2026 12:00:30 GMT"); Date.parse would read "-5" as a year.
		const at = /[a-z]/i.test(text) ? Date.parse(text) : NaN;
		if (Number.isNaN(at)) return null;
		ms = at - now;
	}
	return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** The first `limit` bytes as text, without a character cut in half at the end. */
export function truncateBody(bytes: Buffer, limit = RESPONSE_BODY_LIMIT): string {
	return bytes.subarray(0, limit).toString("utf8").replace(/\uFFFD$/, "");
}

export async function attempt(request: AttemptRequest): Promise<AttemptOutcome> {
	// One deadline for the whole attempt, name resolution included.
	const deadline = Date.now() + request.timeoutMs;
	let url: URL;
	let addresses;
	try {
		url = parseDestination(request.url);
		addresses = await resolveDestination(url, { allowPrivate: request.allowPrivate, resolve: request.resolve, timeoutMs: request.timeoutMs });
	} catch (err) {
		if (err instanceof DestinationError) {
			return { kind: "error", error: err.kind === "refused" ? `Destination refused: the URL ${err.message}` : `Destination unusable: ${err.message}`, refused: err.kind === "refused" };
		}
		throw err;
	}
	const transport = url.protocol === "https:" ? https : http;

	return new Promise<AttemptOutcome>(resolve => {
		let settled = false;
		const finish = (outcome: AttemptOutcome) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			request.signal?.removeEventListener("abort", onAbort);
			req.destroy();
			resolve(outcome);
		};
		const fail = (error: string) => finish({ kind: "error", error, refused: false });
		const onAbort = () => fail("Aborted: the worker is stopping");
		const timer = setTimeout(() => fail(`No answer within ${request.timeoutMs} ms`), Math.max(0, deadline - Date.now()));

		const req = transport.request(url, {
			method: "POST",
			// A fresh connection per attempt: a pooled socket could be one opened to an address checked earlier.
			agent: false,
			lookup: pinnedLookup(addresses),
			headers: {
				"content-type": "application/json",
				"content-length": Buffer.byteLength(request.body),
				"user-agent": USER_AGENT,
				...request.headers
			}
		});
		req.on("response", res => {
			const chunks: Buffer[] = [];
			let size = 0;
			const done = () =>
				finish({
					kind: "response",
					status: res.statusCode ?? 0,
					body: truncateBody(Buffer.concat(chunks)),
					retryAfterMs: parseRetryAfter(res.headers["retry-after"], request.now)
				});
			res.on("data", (chunk: Buffer) => {
				chunks.push(chunk);
				size += chunk.length;
				// Enough for the log: the rest of the answer is not read.
				if (size >= RESPONSE_BODY_LIMIT) done();
			});
			res.on("end", done);
			// A connection cut mid-body still answered with a status.
			res.on("close", done);
		});
		req.on("error", err => fail(err.message || String(err)));
		if (request.signal?.aborted) return onAbort();
		request.signal?.addEventListener("abort", onAbort);
		req.end(request.body);
	});
}
