/**
 * What the gateway accepts as a request body, before any action sees it. Every refusal is an
 * AppError, so it answers in the API's error shape with its own 4xx: a body that cannot be
 * decoded (broken gzip, deflate or br, invalid JSON), one that is too large, one in a charset or
 * encoding we do not read, a JSON body that is not an object, and multipart that cannot be parsed.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import bodyParser from "body-parser";
import { AppError, Errors, toApiError } from "../../shared/errors";
import { isPlainJson, readPlainJson } from "../../shared/plain-json";

type Next = (err?: unknown) => void;
/** A connect-style step of the REST route (moleculer-web's `use`), run before the route's hooks. */
export type BodyMiddleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

/**
 * JSON bodies (strict: objects and arrays only), decompressed when the client says so, limited
 * to `limit` bytes after decompression. moleculer-web's own parser option would turn a decoding
 * failure into an untyped error (a 500); here body-parser's failure leaves as the AppError
 * `toApiError` maps it to (400, 413 or 415).
 */
export function jsonBody(limit: number, rawBody: (req: IncomingMessage) => boolean = () => false): BodyMiddleware {
	const parse = bodyParser.json({ limit, strict: true });
	return (req, res, next) => {
		// A raw-body route (the Stripe webhook: its signature covers the exact bytes) gets the stream untouched.
		if (rawBody(req)) return next();
		if (isPlainJson(req, limit)) return readPlainJson(req, next);
		parse(req, res, err => {
			if (!err) return next();
			const { type, message, data } = toApiError(err);
			next(new AppError(type, message, data));
		});
	};
}

/**
 * Whether a parsed JSON value holds a `__proto__` key at any depth. JSON.parse makes it an own
 * field, but moleculer-web merges the body into the params with Object.assign, which turns it
 * into the params' prototype: its fields would then pass validation as if they had been sent
 * (`{"__proto__": {"enabled": false}}` switched a webhook off). Iterative, so no nesting depth
 * can exhaust the stack.
 */
export function hasProtoKey(value: unknown): boolean {
	const pending: unknown[] = [value];
	while (pending.length) {
		const next = pending.pop();
		if (next === null || typeof next !== "object") continue;
		if (!Array.isArray(next) && Object.prototype.hasOwnProperty.call(next, "__proto__")) return true;
		for (const child of Object.values(next)) if (child !== null && typeof child === "object") pending.push(child);
	}
	return false;
}

/**
 * strict JSON parsing still lets arrays through, and moleculer-web would merge an array's
 * indexes into the params: a body must be a JSON object, and one without `__proto__` keys.
 */
export function requireObjectBody(req: IncomingMessage & { body?: unknown }, _res: ServerResponse, next: Next): void {
	const body = req.body;
	if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body))) {
		next(Errors.validation([{ field: "body", message: "must be a JSON object", type: "object" }]));
		return;
	}
	if (body !== undefined && hasProtoKey(body)) {
		next(Errors.validation([{ field: "__proto__", message: "The '__proto__' field is not allowed.", type: "forbidden" }]));
		return;
	}
	next();
}

/** RFC 2046: a boundary is 1–70 characters of this set (busboy throws on longer ones). */
const MULTIPART_TYPE = /^multipart\/form-data\s*;(?:.*;)?\s*boundary=(?:"([0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?])"|([0-9A-Za-z'()+_\-./:=?]{1,70}))\s*(?:;.*)?$/i;

/** Upload routes take multipart/form-data with a usable boundary, nothing else. */
export function assertMultipart(req: IncomingMessage): void {
	const type = String(req.headers["content-type"] ?? "");
	if (!/^multipart\/form-data\b/i.test(type)) {
		throw Errors.unsupportedMediaType("Send the file as multipart/form-data", { accepted: ["multipart/form-data"] });
	}
	if (!MULTIPART_TYPE.test(type)) throw Errors.badRequest("Malformed multipart body: missing or invalid boundary");
}

/** busboy's parse failures (truncated body, boundary not found, part ended early) are the client's. */
const MULTIPART_PARSE_ERROR = /multipart|boundary|part header|terminated early/i;

export function isMultipartParseError(err: unknown): boolean {
	if (err instanceof AppError || !(err instanceof Error)) return false;
	return MULTIPART_PARSE_ERROR.test(err.message);
}
