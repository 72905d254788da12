/**
 * The plain JSON body — JSON in UTF-8, neither compressed nor chunked, within the limit: what
 * every screen sends with every heartbeat — read without body-parser's machinery, and exactly as
 * body-parser reads it (the gateway's jsonBody, services/api/http-input.ts, sends every other
 * body, and every refusal but a malformed one, to body-parser).
 */
import type { IncomingMessage } from "node:http";
import { Errors } from "./errors";

/** `application/json`, bare or with charset UTF-8: the only types the plain path reads itself. */
const PLAIN_JSON_TYPE = /^application\/json(?:;[ \t]*charset=utf-8)?$/i;

/**
 * Whether the plain path reads this body: JSON in UTF-8, neither compressed nor chunked, with a
 * Content-Length within the limit — what every screen sends, every 30 s — and not read yet (a
 * body already read or a request already gone would never end again: body-parser passes it on).
 * Everything else goes to body-parser, every refusal included (413, 415, a broken compressed body).
 */
export function isPlainJson(req: IncomingMessage, limit: number): boolean {
	const { headers } = req;
	const type = headers["content-type"];
	const length = headers["content-length"];
	if (!req.readable || req.readableEnded || req.destroyed) return false;
	if (headers["content-encoding"] !== undefined || headers["transfer-encoding"] !== undefined) return false;
	return type !== undefined && length !== undefined && PLAIN_JSON_TYPE.test(type) && /^\d{1,10}$/.test(length) && Number(length) <= limit;
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);

/** A plain body being read: its chunks so far and who waits for it. */
interface PlainRead {
	chunks: Buffer[];
	received: number;
	next: (err?: Error) => void;
}

type PlainRequest = IncomingMessage & { body?: unknown; _body?: boolean; [PLAIN_READ]?: PlainRead };
const PLAIN_READ = Symbol("plainRead");

/**
 * Reads and parses a plain JSON body exactly as body-parser's strict JSON parser does (the same
 * value, the same refusals: test/unit/http-input.test.ts compares the two on random bodies),
 * without its streams, decoder and type parsing, which were a twentieth of a heartbeat's cost.
 * Node's HTTP parser ends the body at its Content-Length, so it can be neither longer nor shorter.
 * The listeners are module functions (the request is `this`), so a request allocates no closures.
 */
export function readPlainJson(req: IncomingMessage, next: (err?: Error) => void): void {
	const plain = req as PlainRequest;
	// Connect's mark of a body being read (nothing here reads it; the tests see which path read a body by it).
	plain._body = true;
	plain[PLAIN_READ] = { chunks: [], received: 0, next };
	plain.on("data", onPlainData);
	plain.on("end", onPlainEnd);
	plain.on("aborted", onPlainAborted);
	plain.on("error", onPlainAborted);
}

function onPlainData(this: PlainRequest, chunk: Buffer): void {
	const read = this[PLAIN_READ];
	if (!read) return;
	read.received += chunk.length;
	read.chunks.push(chunk);
}

function onPlainAborted(this: PlainRequest): void {
	finishPlain(this, Errors.badRequest("Request aborted"));
}

function onPlainEnd(this: PlainRequest): void {
	const read = this[PLAIN_READ];
	if (!read) return;
	let text = (read.chunks.length === 1 ? read.chunks[0] : Buffer.concat(read.chunks, read.received)).toString("utf8");
	// body-parser's decoder drops a byte order mark.
	if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
	if (text.length === 0) return finishPlain(this, undefined, {});
	let i = 0;
	while (i < text.length && WHITESPACE.has(text[i])) i++;
	if (text[i] !== "{" && text[i] !== "[") return finishPlain(this, malformed());
	let body: unknown;
	try {
		body = JSON.parse(text);
	} catch {
		return finishPlain(this, malformed());
	}
	finishPlain(this, undefined, body);
}

function finishPlain(req: PlainRequest, err: Error | undefined, body?: unknown): void {
	const read = req[PLAIN_READ];
	if (!read) return;
	req[PLAIN_READ] = undefined;
	req.off("data", onPlainData);
	req.off("end", onPlainEnd);
	req.off("aborted", onPlainAborted);
	req.off("error", onPlainAborted);
	if (err) return read.next(err);
	req.body = body;
	read.next();
}

const malformed = () => Errors.badRequest("Malformed JSON body");
