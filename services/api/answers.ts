/**
 * How the gateway writes what is not an action's answer: JSON of its own (operations endpoints),
 * the API's error body for any failure, and a 400 for requests Node's HTTP parser refused.
 * Every error answer carries the request id and never a stack trace.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "moleculer";
import { errorBody, Errors, internal, toApiError } from "../../shared/errors";
import { newId } from "../../shared/ids";
import { isMultipartParseError } from "./http-input";
import { gatewayRequest } from "./moleculer-web";

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
	const payload = JSON.stringify(body);
	res.writeHead(status, {
		"Content-Type": "application/json; charset=utf-8",
		"Content-Length": Buffer.byteLength(payload),
		...headers
	});
	res.end(payload);
}

/** The headers an error answer adds: when to retry (429), how to authenticate (401). */
export function errorHeaders(code: number, data: unknown): Record<string, string> {
	const headers: Record<string, string> = {};
	if (code === 429) {
		const retryAfter = typeof data === "object" && data !== null ? (data as { retryAfter?: unknown }).retryAfter : undefined;
		headers["Retry-After"] = String(typeof retryAfter === "number" ? retryAfter : 60);
	}
	if (code === 401) headers["WWW-Authenticate"] = 'Bearer realm="marquee"';
	return headers;
}

/**
 * The API's error body for any error, with the request id; never a stack trace. Total: it
 * answers whatever was thrown, and if even that fails, a bare 500 goes out and the process
 * serves on. busboy's parse failures on an upload route are the client's (400).
 */
export function writeError(logger: Pick<Logger, "error">, incoming: IncomingMessage, res: ServerResponse, err: unknown): void {
	const req = gatewayRequest(incoming);
	try {
		const multipart = req.$alias?.type === "multipart" && isMultipartParseError(err);
		const apiError = toApiError(multipart ? Errors.badRequest("Malformed multipart body") : err);
		const requestId = String(res.getHeader("X-Request-Id") ?? "");
		if (apiError.code >= 500) logger.error("Request failed", req.method, req.url, err);
		if (res.headersSent) {
			res.end();
			return;
		}
		sendJson(res, apiError.code, errorBody(apiError, requestId), errorHeaders(apiError.code, apiError.data));
	} catch (failure) {
		try {
			logger.error("Writing an error answer failed", failure);
			if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json; charset=utf-8" });
			res.end(JSON.stringify(errorBody(internal(), String(res.getHeader("X-Request-Id") ?? ""))));
		} catch {
			res.destroy();
		}
	}
}

/**
 * The answer to a request Node's HTTP parser refused: 400 in the error shape with a fresh request
 * id (a socket that is already gone, or timed out idle, is just closed).
 */
export function answerUnparsable(err: NodeJS.ErrnoException, socket: Duplex): void {
	if (err.code === "ECONNRESET" || err.code === "ERR_HTTP_REQUEST_TIMEOUT" || !socket.writable) {
		socket.destroy();
		return;
	}
	const requestId = newId();
	const message = err.code === "HPE_HEADER_OVERFLOW" ? "Request line or headers too large" : "Malformed HTTP request";
	const body = JSON.stringify(errorBody(toApiError(Errors.badRequest(message)), requestId));
	socket.end(
		`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`
	);
}
