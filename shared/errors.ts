/**
 * The one error helper. Services throw `AppError`s built by `Errors.*`; the gateway turns any
 * error into the API's shape with `toApiError`. `AppErrorRegenerator` makes the typed errors
 * survive the transporter between processes.
 */
import { Errors as MoleculerErrors } from "moleculer";

export type ApiErrorType =
	| "BAD_REQUEST"
	| "UNAUTHORIZED"
	| "QUOTA_EXCEEDED"
	| "FORBIDDEN"
	| "NOT_FOUND"
	| "CONFLICT"
	| "PAYLOAD_TOO_LARGE"
	| "UNSUPPORTED_MEDIA_TYPE"
	| "VALIDATION_ERROR"
	| "RATE_LIMITED"
	| "SERVICE_UNAVAILABLE"
	| "INTERNAL_ERROR";

export const STATUS_OF: Record<ApiErrorType, number> = {
	BAD_REQUEST: 400,
	UNAUTHORIZED: 401,
	QUOTA_EXCEEDED: 402,
	FORBIDDEN: 403,
	NOT_FOUND: 404,
	CONFLICT: 409,
	PAYLOAD_TOO_LARGE: 413,
	UNSUPPORTED_MEDIA_TYPE: 415,
	VALIDATION_ERROR: 422,
	RATE_LIMITED: 429,
	SERVICE_UNAVAILABLE: 503,
	INTERNAL_ERROR: 500
};

const TYPE_OF_STATUS = new Map<number, ApiErrorType>(
	Object.entries(STATUS_OF).map(([type, status]) => [status, type as ApiErrorType])
);

export interface FieldError {
	field: string;
	message: string;
	type?: string;
}

/** A client-facing error. Its `type` is one of the API's error types. */
export class AppError extends MoleculerErrors.MoleculerError {
	constructor(type: ApiErrorType, message: string, data?: unknown) {
		super(message, STATUS_OF[type], type, data);
		this.name = "AppError";
		// A decision, not a transport hiccup: retrying on another node would answer the same.
		this.retryable = false;
	}
}

export const Errors = {
	badRequest: (message = "Malformed request", data?: unknown) => new AppError("BAD_REQUEST", message, data),
	unauthorized: (message = "Authentication required") => new AppError("UNAUTHORIZED", message),
	quotaExceeded: (message: string, data?: unknown) => new AppError("QUOTA_EXCEEDED", message, data),
	forbidden: (message = "Your role does not allow this", data?: unknown) => new AppError("FORBIDDEN", message, data),
	notFound: (what = "Resource", id?: string) =>
		new AppError("NOT_FOUND", `${what} not found`, id === undefined ? undefined : { id }),
	conflict: (message: string, data?: unknown) => new AppError("CONFLICT", message, data),
	payloadTooLarge: (message = "Request body too large", data?: unknown) =>
		new AppError("PAYLOAD_TOO_LARGE", message, data),
	unsupportedMediaType: (message: string, data?: unknown) => new AppError("UNSUPPORTED_MEDIA_TYPE", message, data),
	validation: (fields: FieldError[], message = "Validation failed") => new AppError("VALIDATION_ERROR", message, fields),
	rateLimited: (retryAfterSec: number) =>
		new AppError("RATE_LIMITED", "Too many requests, retry later", { retryAfter: Math.max(1, Math.ceil(retryAfterSec)) }),
	unavailable: (message = "Service unavailable", data?: unknown) => new AppError("SERVICE_UNAVAILABLE", message, data)
};

export interface ApiError {
	type: ApiErrorType;
	message: string;
	code: number;
	data?: unknown;
}

interface ErrorLike {
	name?: unknown;
	message?: unknown;
	code?: unknown;
	type?: unknown;
	data?: unknown;
	status?: unknown;
	statusCode?: unknown;
}

/** A 422 names at most this many fields (a 1 MiB array of nulls is 130 000 failures: a 10 MB answer). */
export const MAX_FIELD_ERRORS = 100;

/**
 * fastest-validator's failures → `[{field, message, type}]`, the first MAX_FIELD_ERRORS of them.
 * Some of its messages quote the rejected value; those are replaced, so a response never echoes
 * what the client sent.
 */
function fieldErrors(data: unknown): FieldError[] {
	if (!Array.isArray(data)) return [];
	return data.slice(0, MAX_FIELD_ERRORS).map(item => {
		const entry = (item ?? {}) as { field?: unknown; message?: unknown; type?: unknown; actual?: unknown };
		const field = typeof entry.field === "string" ? entry.field : "";
		const type = typeof entry.type === "string" ? entry.type : undefined;
		let message = typeof entry.message === "string" && entry.message ? entry.message : "is invalid";
		if (type === "objectStrict") {
			// Its message lists the unknown keys, which the client chose: say where they are instead.
			message = `${field ? `The '${field}' object` : "The request"} has fields this route does not take.`;
		} else if (echoedValues(entry.actual).some(value => message.includes(value))) message = `The '${field}' field is invalid.`;
		return { field, message, type };
	});
}

const SCALAR = ["string", "number", "boolean", "bigint"];

/**
 * How a rejected value may appear in a message: a scalar as text, an array as its scalar items
 * and their comma-joined list. Objects never are, and are never turned into text here (a
 * client's `{"toString": 1}` would throw).
 */
function echoedValues(actual: unknown): string[] {
	if (SCALAR.includes(typeof actual)) return [String(actual)].filter(Boolean);
	if (!Array.isArray(actual)) return [];
	const items = actual.filter(item => SCALAR.includes(typeof item)).map(item => String(item));
	return [...items, items.join(",")].filter(Boolean);
}

function isApiErrorType(type: unknown): type is ApiErrorType {
	return typeof type === "string" && Object.hasOwn(STATUS_OF, type);
}

/**
 * Any thrown value → the API's error body (without requestId, which the gateway adds).
 * Unknown and 5xx errors become a generic message: internals never leak into a response.
 * Total: whatever was thrown (a hostile object, a throwing getter), it answers.
 */
export function toApiError(err: unknown): ApiError {
	try {
		return mapError(err);
	} catch {
		return internal();
	}
}

function mapError(err: unknown): ApiError {
	const e = (err ?? {}) as ErrorLike;
	const name = typeof e.name === "string" ? e.name : "";
	const type = typeof e.type === "string" ? e.type : "";
	const message = typeof e.message === "string" ? e.message : "";

	if (err instanceof AppError || (name === "AppError" && isApiErrorType(type))) {
		const apiType = type as ApiErrorType;
		if (apiType === "INTERNAL_ERROR") return internal();
		return { type: apiType, message, code: STATUS_OF[apiType], data: e.data };
	}

	// Moleculer's parameter validation.
	if (name === "ValidationError" || type === "VALIDATION_ERROR") {
		return { type: "VALIDATION_ERROR", message: "Validation failed", code: 422, data: fieldErrors(e.data) };
	}

	// body-parser and raw-body failures carry `type` and `status`.
	const status = typeof e.status === "number" ? e.status : typeof e.statusCode === "number" ? e.statusCode : undefined;
	if (type === "entity.parse.failed") return { type: "BAD_REQUEST", message: "Malformed JSON body", code: 400 };
	if (type === "entity.too.large" || status === 413) {
		return { type: "PAYLOAD_TOO_LARGE", message: "Request body too large", code: 413 };
	}
	if (type === "encoding.unsupported" || type === "charset.unsupported" || status === 415) {
		return { type: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported body encoding or charset", code: 415, data: { accepted: ["identity", "gzip", "deflate", "br"] } };
	}
	if (type === "request.aborted") return { type: "BAD_REQUEST", message: "Request aborted", code: 400 };
	// raw-body types its own failures; a 400 without a type is the decompressor's (broken gzip,
	// deflate or br), passed on by body-parser.
	if (status === 400 && type === "") return { type: "BAD_REQUEST", message: "The request body could not be decoded", code: 400 };

	// Moleculer / moleculer-web built-ins.
	switch (name) {
		// A service the request needs is not running (yet), or the NATS client itself failed (a
		// JetStream publish timing out while NATS restarts, a closed connection): the client may
		// retry, nothing is missing and nothing was wrong with the request.
		case "ServiceNotFoundError":
		case "ServiceNotAvailableError":
		case "RequestTimeoutError":
		case "BrokerDisconnectedError":
		case "QueueIsFullError":
		case "BrokerOptionsError":
		case "NatsError":
			return { type: "SERVICE_UNAVAILABLE", message: "Service unavailable, retry later", code: 503 };
		case "RateLimitExceeded":
			return { type: "RATE_LIMITED", message: "Too many requests, retry later", code: 429 };
		// A sealed secret (shared/sealed.ts) that does not open: ENCRYPTION_KEY changed or data
		// tampered with. Nothing the client can fix; the operator restores the key.
		case "SealedSecretError":
			return { type: "SERVICE_UNAVAILABLE", message: "A stored secret cannot be read; the operator must restore ENCRYPTION_KEY", code: 503 };
	}

	const code = typeof e.code === "number" ? e.code : status;
	if (code !== undefined && code >= 400 && code < 500) {
		const apiType = TYPE_OF_STATUS.get(code) ?? "BAD_REQUEST";
		return { type: apiType, message: message || apiType, code: STATUS_OF[apiType] };
	}
	if (code === 503) return { type: "SERVICE_UNAVAILABLE", message: "Service unavailable, retry later", code: 503 };
	return internal();
}

/** The API's error body, `{error:{type, message, code, data, requestId}}` (`data` is `{}` when there is none). */
export function errorBody(error: ApiError, requestId: string): { error: ApiError & { data: unknown; requestId: string } } {
	return { error: { ...error, data: error.data === undefined ? {} : error.data, requestId } };
}

export function internal(): ApiError {
	return { type: "INTERNAL_ERROR", message: "Internal server error", code: 500 };
}

/** Restores `AppError`s that crossed the transporter so `instanceof AppError` holds on the caller. */
export class AppErrorRegenerator extends MoleculerErrors.Regenerator {
	// The base class keeps the sender's nodeID and stack; this only picks the class.
	// (Returning undefined means "not ours": the typings leave that out.)
	override restoreCustomError(plainError: MoleculerErrors.PlainMoleculerError): Error {
		if (plainError.name === "AppError" && isApiErrorType(plainError.type)) {
			return new AppError(plainError.type, plainError.message, plainError.data);
		}
		return undefined as unknown as Error;
	}
}
