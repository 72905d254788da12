/**
 * Property-based fuzzing of the REST API (test/e2e/fuzz.test.ts): fast-check arbitraries that
 * describe one request to one route of the OpenAPI document as plain data (a `FuzzCase`), and
 * the pieces that turn a case into bytes on the wire and judge the answer.
 *
 * A case is pure data so a seed (and a run index) replays it exactly. What depends on the state
 * of the running platform (a valid id of a display, the owner's password, "now") is a marker
 * string (`@@fz:pool:display@@`, ...) resolved when the request is sent. Large values (huge
 * strings, deep nesting) are markers too, so generating twenty thousand cases stays cheap.
 */
import http from "node:http";
import zlib from "node:zlib";
import fc from "fast-check";
import type { JsonResponse } from "./platform";
import type { JsonSchema, Route } from "./routes";

// ---- the data of a case -----------------------------------------------------------------------

/** Who calls: the caller the route's permission asks for, or a wrong one. */
export type CallerChoice = "proper" | "anonymous" | "owner" | "device" | "apiKey" | "decoy" | "garbage";

/** A value at one path of a JSON body changed, removed, or an unknown field added. */
export interface Mutation {
	op: "set" | "delete" | "add";
	/** Picks the path (or the object, for "add") among those of the body, modulo their count. */
	pick: number;
	key?: string;
	value?: unknown;
	tag: string;
}

export type PathChoice =
	| { mode: "pool"; pick: number }
	| { mode: "uuid"; value: string }
	| { mode: "other"; kind: string; pick: number }
	| { mode: "garbage"; value: string; raw: boolean; tag: string };

export interface QueryPart {
	key: string;
	value: string;
	/** Written without percent-encoding (as far as the HTTP client allows). */
	raw?: boolean;
}

export type MultipartVariant =
	| "valid"
	| "not-an-image"
	| "no-file"
	| "truncated"
	| "boundary-mismatch"
	| "overlong-boundary"
	| "no-boundary"
	| "quoted-boundary"
	| "garbage-parts"
	| "empty"
	| "two-files"
	| "many-parts"
	| "huge-field"
	| "huge-declared-image"
	| "gzip"
	| "aborted";

export type BodySpec =
	| { kind: "none" }
	| { kind: "json"; base: unknown; mutations: Mutation[]; contentType?: string; chunked?: boolean; tag: string }
	| { kind: "text"; text: string; contentType?: string; tag: string }
	| { kind: "bytes"; prefix: string; bytes: number[]; suffix: string; contentType?: string; tag: string }
	| { kind: "encoded"; encoding: string; mode: EncodedMode; garbage: number[]; base: unknown; mutations: Mutation[]; cut: number; tag: string }
	| {
			kind: "multipart";
			variant: MultipartVariant;
			fields: Array<[string, string]>;
			file: FileKind;
			filename: string;
			fileType: string;
			cut: number;
			boundaryLength: number;
			garbage: string;
			tag: string;
	  };

export type EncodedMode = "garbage" | "valid" | "truncated" | "double" | "mismatch" | "bomb";
export type FileKind = "png" | "text" | "empty" | "random" | "png-truncated" | "png-huge-header";

export interface FuzzCase {
	/** Index into the sorted route list. */
	route: number;
	caller: CallerChoice;
	/** The Authorization header value for the "garbage" caller (may hold markers). */
	auth?: string;
	/** Another HTTP method than the route's (rare). */
	method?: string;
	path: PathChoice[];
	query: QueryPart[];
	/** Appended to the query string as is (percent garbage, separators). */
	rawQuery?: string;
	headers: Array<[string, string]>;
	body: BodySpec;
	/** What is unusual about the case, for grouping and for skipping a known crash. */
	tags: string[];
}

// ---- markers ----------------------------------------------------------------------------------

const MARK = "@@fz:";
export const marker = (type: string, arg: string | number): string => `${MARK}${type}:${arg}@@`;
const MARKER = /^@@fz:([a-z]+):(.*)@@$/s;
const RAW_MARKER = /"@@fz:(raw|deep):([^"@]*)@@"/g;

/** What the platform holds right now, for the markers of a case. */
export interface MarkerEnv {
	/** A known id (or secret) of `kind`; `pick` chooses among several. */
	pool(kind: string, pick: number): string | undefined;
	secret(name: string): string | undefined;
}

/** Repeated units of huge strings: plain, 2-, 4-byte, NUL, lone surrogates, JSON escapes. */
const HUGE_UNITS = ["a", "é", "😀", "\u0000", "\ud800", "\\", '"', " ", "%00", "\u202e"];

export function hugeString(length: number, unit: number): string {
	const u = HUGE_UNITS[unit % HUGE_UNITS.length];
	return u.repeat(Math.ceil(length / u.length)).slice(0, length);
}

/** A nesting `depth` deep of objects ("o"), arrays ("a") or both ("m"), as JSON text. */
export function deepJson(depth: number, shape: string): string {
	const open = shape === "a" ? "[" : shape === "o" ? '{"a":' : '{"a":[';
	const close = shape === "a" ? "]" : shape === "o" ? "}" : "]}";
	return `${open.repeat(depth)}1${close.repeat(depth)}`;
}

function resolveString(value: string, env: MarkerEnv): unknown {
	const m = MARKER.exec(value);
	if (!m) return value;
	const [, type, arg] = m;
	switch (type) {
		case "pool": {
			const [kind, pick] = arg.split(":");
			return env.pool(kind, Number(pick) || 0) ?? randomUuidV7(Number(pick) || 0);
		}
		case "secret":
			return env.secret(arg) ?? "";
		case "now":
			return new Date(Date.now() + Number(arg) * 1000).toISOString();
		case "huge": {
			const [length, unit] = arg.split(":").map(Number);
			return hugeString(length, unit);
		}
		default:
			// raw and deep are spliced into the JSON text after serialising.
			return value;
	}
}

/** Own-key-preserving copy of a JSON-ish value with its string markers resolved (`__proto__` stays an own key). */
export function resolveMarkers(value: unknown, env: MarkerEnv): unknown {
	if (typeof value === "string") return resolveString(value, env);
	if (Array.isArray(value)) return value.map(v => resolveMarkers(v, env));
	if (value && typeof value === "object") {
		const out: Record<string, unknown> = {};
		for (const key of Object.keys(value)) {
			Object.defineProperty(out, key, { value: resolveMarkers((value as Record<string, unknown>)[key], env), enumerable: true, writable: true, configurable: true });
		}
		return out;
	}
	return value;
}

/** The text of a raw or deep marker, wherever it ends up (JSON, a form field, a query). */
function rawText(type: string, arg: string): string {
	if (type === "deep") {
		const [depth, shape] = arg.split(":");
		return deepJson(Number(depth), shape);
	}
	return arg;
}

/** JSON text of a resolved value, with raw tokens (1e400, -0, deep nesting) spliced in. */
export function toJsonText(value: unknown): string {
	const text = JSON.stringify(value) ?? "";
	return text.replace(RAW_MARKER, (_, type: string, arg: string) => rawText(type, arg));
}

/** A marker-resolved string for a form field, a query value or a header (markers may sit inside it). */
export function resolveText(value: string, env: MarkerEnv): string {
	if (!value.includes(MARK)) return value;
	return value.replace(/@@fz:([a-z]+):([^@]*)@@/g, (whole, type: string, arg: string) => {
		if (type === "raw" || type === "deep") return rawText(type, arg);
		const resolved = resolveString(whole, env);
		return typeof resolved === "string" ? resolved : String(resolved);
	});
}

/** A v7-shaped uuid from a number (the pool is empty, or a random id is wanted). */
export function randomUuidV7(n: number): string {
	const hex = (Math.abs(Math.trunc(n)) * 2654435761).toString(16).padStart(12, "0").slice(-12);
	return `01a20000-0000-7000-8000-${hex}`;
}

// ---- bad values -------------------------------------------------------------------------------

export interface Tagged {
	value: unknown;
	tag: string;
}

/** An object with an own key (also for `__proto__`, which an object literal would not create). */
export function ownKeys(entries: Array<[string, unknown]>): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	for (const [key, value] of entries) Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
	return out;
}

const OPERATORS: Tagged[] = [
	{ value: { $gt: "" }, tag: "operator:$gt" },
	{ value: { $ne: null }, tag: "operator:$ne" },
	{ value: { $where: "sleep(1000) || true" }, tag: "operator:$where" },
	{ value: { $where: "function () { return true; }" }, tag: "operator:$where" },
	{ value: { $regex: ".*", $options: "i" }, tag: "operator:$regex" },
	{ value: { $in: ["a", { $gt: "" }] }, tag: "operator:$in" },
	{ value: { $exists: true }, tag: "operator:$exists" },
	{ value: { $or: [{}, { a: 1 }] }, tag: "operator:$or" },
	{ value: { $gt: { $gt: "" } }, tag: "operator:nested" },
	{ value: { $expr: { $eq: [1, 1] } }, tag: "operator:$expr" }
];

const PROTO_VALUES: Tagged[] = [
	{ value: { toString: 1 }, tag: "proto:toString=number" },
	{ value: { toString: {} }, tag: "proto:toString=object" },
	{ value: { toString: "x" }, tag: "proto:toString=string" },
	{ value: { valueOf: {} }, tag: "proto:valueOf=object" },
	{ value: { valueOf: 1 }, tag: "proto:valueOf=number" },
	{ value: { toString: 1, valueOf: 1 }, tag: "proto:toString+valueOf" },
	{ value: { toJSON: 1 }, tag: "proto:toJSON" },
	{ value: { hasOwnProperty: 1 }, tag: "proto:hasOwnProperty" },
	{ value: { constructor: { prototype: { polluted: 1 } } }, tag: "proto:constructor" },
	{ value: { constructor: 1 }, tag: "proto:constructor=number" },
	{ value: ownKeys([["__proto__", { polluted: 1, role: "owner" }]]), tag: "proto:__proto__" },
	{ value: ownKeys([["__proto__", null]]), tag: "proto:__proto__=null" },
	{ value: { length: 1e9 }, tag: "proto:length" },
	{ value: { 0: "a", length: 1 }, tag: "proto:array-like" },
	{ value: { then: 1 }, tag: "proto:then" }
];

/** Property names that trip naive object handling (prototype pollution, coercion). */
const PROTOTYPE_KEYS = ["__proto__", "constructor", "prototype", "toString", "valueOf", "hasOwnProperty"];

/** Strings that break naive code: unicode edge cases, separators, injections. */
export const NASTY_STRINGS: string[] = [
	"",
	" ",
	"\t\n\r",
	"\u0000",
	"a\u0000b",
	"\ud800",
	"\udfff",
	"a\ud800b",
	"\udc00\ud800",
	"😀",
	"👩‍👩‍👧‍👦",
	"\u202eevil\u202c",
	"שלום עולם",
	"مرحبا",
	"\u200b\u200c\u200d",
	"\ufeff",
	"\uffff\ufffe",
	"e\u0301\u0301\u0301\u0301",
	"Ｆｕｌｌｗｉｄｔｈ",
	"İıſK",
	"<script>alert(1)</script>",
	"'; DROP TABLE users; --",
	'"\\',
	"${7*7}{{7*7}}",
	"../../../etc/passwd",
	"..%2F..%2F",
	"%00",
	"%ED%A0%80",
	"null",
	"undefined",
	"NaN",
	"Infinity",
	"-0",
	"1e400",
	"0x1F",
	"true",
	"[object Object]",
	...PROTOTYPE_KEYS,
	"$gt",
	"$where",
	"mk_",
	"mpk_xxxx",
	"whsec_",
	"a".repeat(300),
	"2026-02-30T25:61:61Z",
	"9999-12-31T23:59:59.999Z",
	"0000-01-01T00:00:00Z",
	"+275760-09-13T00:00:00.000Z",
	"2026-03-29T02:30:00+01:00",
	"24:00",
	"23:60",
	"2026-02-29",
	"Europe/Nowhere",
	"Etc/GMT+14",
	"javascript:alert(1)",
	"file:///etc/passwd",
	"http://127.0.0.1:1/",
	"http://user:pass@example.com/",
	"http://[::1]/",
	"ftp://example.com/"
];

const HUGE_LENGTHS = [1_000, 10_000, 40_000, 60_000, 64_000, 66_000, 80_000, 100_000, 200_000];
const RAW_NUMBERS = ["1e400", "-1e400", "-0", "123456789012345678901234567890", "1e-400", "0.1e1", "1.0", "9007199254740993", "-9007199254740993"];

/** `arb` in about `percent` % of cases, otherwise undefined. */
export function sometimes<T>(arb: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | undefined> {
	return fc.oneof({ arbitrary: fc.constant(undefined), weight: 100 - percent }, { arbitrary: arb, weight: percent });
}

const anyString = (maxLength = 40): fc.Arbitrary<string> =>
	fc.oneof({ arbitrary: fc.string({ maxLength }), weight: 3 }, { arbitrary: fc.string({ unit: "binary", maxLength }), weight: 2 }, { arbitrary: fc.string({ unit: "grapheme", maxLength }), weight: 1 });

const hugeMarker: fc.Arbitrary<Tagged> = fc
	.tuple(fc.constantFrom(...HUGE_LENGTHS), fc.nat(HUGE_UNITS.length - 1))
	.map(([length, unit]) => ({ value: marker("huge", `${length}:${unit}`), tag: `huge:${length >= 60_000 ? "near-limit" : "large"}` }));

const deepMarker: fc.Arbitrary<Tagged> = fc
	.tuple(fc.constantFrom(20, 100, 500, 2_000, 5_000), fc.constantFrom("o", "a", "m"))
	.map(([depth, shape]) => ({ value: marker("deep", `${depth}:${shape}`), tag: "deep" }));

/** A value that should not pass validation (or might, by accident): every kind of wrong. */
export const badValue: fc.Arbitrary<Tagged> = fc.oneof(
	{ arbitrary: fc.constant<Tagged>({ value: null, tag: "null" }), weight: 6 },
	{ arbitrary: fc.constantFrom(...PROTO_VALUES), weight: 6 },
	{ arbitrary: fc.constantFrom(...OPERATORS), weight: 5 },
	{ arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 1.5, 2 ** 53, -(2 ** 31))).map(value => ({ value, tag: "wrong-type:number" })), weight: 3 },
	{ arbitrary: fc.boolean().map(value => ({ value, tag: "wrong-type:boolean" })), weight: 2 },
	{ arbitrary: fc.constantFrom(...RAW_NUMBERS).map(n => ({ value: marker("raw", n), tag: "raw-number" })), weight: 3 },
	{ arbitrary: fc.constantFrom(...NASTY_STRINGS).map(value => ({ value, tag: "nasty-string" })), weight: 6 },
	{ arbitrary: anyString(60).map(value => ({ value, tag: "random-string" })), weight: 3 },
	{ arbitrary: hugeMarker, weight: 2 },
	{ arbitrary: deepMarker, weight: 1 },
	{ arbitrary: fc.constantFrom<Tagged>({ value: {}, tag: "empty-object" }, { value: [], tag: "empty-array" }, { value: [[]], tag: "nested-array" }, { value: [null], tag: "array-of:null" }), weight: 3 },
	{ arbitrary: fc.constantFrom(...PROTO_VALUES, ...OPERATORS).map(t => ({ value: [t.value], tag: `array-of:${t.tag}` })), weight: 2 },
	{ arbitrary: fc.jsonValue({ maxDepth: 4 }).map(value => ({ value, tag: "random-json" })), weight: 3 },
	{ arbitrary: fc.dictionary(anyString(10), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map(value => ({ value, tag: "random-object" })), weight: 2 }
);

/** Keys a client should never be able to set, or that trip naive object handling. */
export const UNKNOWN_KEYS = [
	"tenantId",
	"role",
	"_id",
	"id",
	"plan",
	"userId",
	"emailVerified",
	"createdAt",
	"key",
	"secret",
	"status",
	...PROTOTYPE_KEYS,
	"$where",
	"$set",
	"",
	"a.b",
	"items[0]",
	"\u0000",
	"😀"
];

// ---- valid values from a JSON schema ------------------------------------------------------------

/** A route with its multipart/form-data body schema (upload routes), read from the OpenAPI document. */
export type FuzzRoute = Route & { multipartBody?: Schema };

/** The schema keywords of the OpenAPI document that routes.ts does not type. */
export type Schema = JsonSchema & { maxItems?: number; uniqueItems?: boolean; additionalProperties?: boolean; contentMediaType?: string };

const UUID_PATTERN = /^\^\[0-9a-f\]\{8\}-/;
const DATETIME_PATTERN = /T\\d\{2\}:\\d\{2\}/;
const DATE_PATTERN = /^\^\\d\{4\}-\\d\{2\}-\\d\{2\}\$$/;
const TIME_PATTERN = /\[01\]\\d\|2\[0-3\]/;

/** The kind of id a field name refers to ("playlistId" → playlist, "displayIds" → display, "defaultLayoutId" → layout). */
export function kindOfField(name: string): string | undefined {
	const n = name.replace(/Ids?$/, "").toLowerCase();
	if (n.endsWith("display")) return "display";
	if (n.endsWith("playlist")) return "playlist";
	if (n.endsWith("layout")) return "layout";
	if (n.endsWith("content")) return "content";
	if (n.endsWith("group")) return "group";
	if (n.endsWith("schedule")) return "schedule";
	if (n === "user") return "member";
	return undefined;
}

const TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "Etc/GMT-14", "Europe/London"];

function typesOf(schema: Schema): string[] {
	if (Array.isArray(schema.type)) return schema.type;
	return schema.type === undefined ? [] : [schema.type];
}

function stringFor(schema: Schema, name: string): fc.Arbitrary<string> {
	const max = Math.min(schema.maxLength ?? 40, 40);
	const min = Math.min(schema.minLength ?? 0, max);
	const pattern = schema.pattern ?? "";
	const kind = kindOfField(name);
	if (UUID_PATTERN.test(pattern) || kind) {
		const k = kind ?? "display";
		return fc.oneof(
			{ arbitrary: fc.nat(1000).map(pick => marker("pool", `${k}:${pick}`)), weight: 4 },
			{ arbitrary: fc.uuid({ version: 7 }), weight: 1 }
		);
	}
	if (DATETIME_PATTERN.test(pattern)) {
		const day = 86_400;
		return fc.oneof(
			{ arbitrary: fc.integer({ min: -2 * day, max: 30 * day }).map(s => marker("now", s)), weight: 4 },
			{ arbitrary: fc.integer({ min: -400 * day, max: 400 * day }).map(s => marker("now", s)), weight: 1 },
			{ arbitrary: fc.date({ noInvalidDate: true, min: new Date("1970-01-01"), max: new Date("2100-01-01") }).map(d => d.toISOString()), weight: 1 }
		);
	}
	if (DATE_PATTERN.test(pattern)) {
		return fc.date({ noInvalidDate: true, min: new Date("2020-01-01"), max: new Date("2030-12-31") }).map(d => d.toISOString().slice(0, 10));
	}
	if (TIME_PATTERN.test(pattern)) {
		return fc.tuple(fc.nat(23), fc.nat(59)).map(([h, m]) => `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);
	}
	if (pattern === "^\\d{2,5}x\\d{2,5}$") return fc.tuple(fc.integer({ min: 10, max: 99999 }), fc.integer({ min: 10, max: 99999 })).map(([w, h]) => `${w}x${h}`);
	if (schema.format === "email") {
		return fc.oneof(
			{ arbitrary: fc.emailAddress().filter(e => e.length <= 254), weight: 3 },
			{ arbitrary: fc.constant(marker("secret", "decoyEmail")), weight: 2 },
			{ arbitrary: fc.constant(marker("secret", "memberEmail")), weight: 1 }
		);
	}
	if (pattern) {
		try {
			return fc.stringMatching(new RegExp(pattern), { size: "small" });
		} catch {
			/* a pattern fast-check cannot generate from: fall back to text */
		}
	}
	switch (name) {
		case "timezone":
			return fc.constantFrom(...TIMEZONES);
		case "url":
			return fc.oneof(fc.constant("https://example.com/page"), fc.webUrl({ validSchemes: ["http", "https"] }).filter(u => u.length <= (schema.maxLength ?? 2048)));
		case "password":
		case "newPassword":
			return fc.oneof(fc.string({ minLength: 12, maxLength: 40 }), fc.constant("correct horse battery staple 42"));
		case "currentPassword":
			return fc.oneof(fc.constant(marker("secret", "ownerPassword")), fc.string({ minLength: 1, maxLength: 40 }));
		case "refreshToken":
			return fc.oneof(fc.nat(50).map(pick => marker("pool", `refreshToken:${pick}`)), fc.string({ minLength: 16, maxLength: 80 }));
		case "code":
			return fc.oneof(fc.nat(50).map(pick => marker("pool", `pairingCode:${pick}`)), fc.stringMatching(/^[A-HJKMNP-Y3-79]{6}$/));
		case "confirm":
			// The right name deletes the tenant (the suite then starts over with a new one): now and then.
			return fc.oneof({ arbitrary: fc.constant(marker("secret", "tenantName")), weight: 1 }, { arbitrary: fc.string({ maxLength: 20 }), weight: 5 });
		case "token":
			// Tokens mailed to the suite's accounts (verify, reset, invitation), or made up.
			return fc.oneof(fc.nat(50).map(pick => marker("pool", `mailToken:${pick}`)), fc.string({ minLength: 16, maxLength: 80 }));
		case "provisioningKey":
			return fc.constant("mpk_" + "x".repeat(40));
		default:
			return fc.oneof(
				{ arbitrary: fc.string({ minLength: Math.max(min, 1), maxLength: Math.max(max, 1) }), weight: 4 },
				{ arbitrary: fc.string({ unit: "grapheme", minLength: Math.max(min, 1), maxLength: Math.max(max, 1) }), weight: 1 }
			);
	}
}

/** Values `schema` accepts (best effort), with ids, times and secrets as markers. */
export function validValue(schema: Schema, name = "", depth = 0): fc.Arbitrary<unknown> {
	if (schema.const !== undefined) return fc.constant(schema.const);
	if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum);
	if (schema.anyOf?.length) return fc.oneof(...schema.anyOf.map(s => validValue(s as Schema, name, depth)));
	const types = typesOf(schema);
	const nonNull = types.filter(t => t !== "null");
	const main = types.includes("object") || schema.properties ? "object" : (nonNull[0] ?? "any");
	let arb: fc.Arbitrary<unknown>;
	switch (main) {
		case "object": {
			const props = schema.properties ?? {};
			const model: Record<string, fc.Arbitrary<unknown>> = {};
			for (const [key, sub] of Object.entries(props)) model[key] = validValue(sub as Schema, key, depth + 1);
			const required = (schema.required ?? []).filter(k => k in model);
			arb = fc.record(model, { requiredKeys: required, noNullPrototype: true });
			break;
		}
		case "string":
			arb = stringFor(schema, name);
			break;
		case "integer": {
			const INT32 = 2_147_483_647;
			const min = Math.max(-INT32, Math.ceil(schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : -1_000_000)));
			const max = Math.min(INT32, Math.floor(schema.maximum ?? 1_000_000));
			arb = fc.integer({ min: Math.min(min, max), max });
			break;
		}
		case "number":
			arb = fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true, noDefaultInfinity: true });
			break;
		case "boolean":
			arb = fc.boolean();
			break;
		case "array": {
			const itemSchema = (schema.items || {}) as Schema;
			const items = schema.items && depth < 4 ? validValue(itemSchema, name, depth + 1) : fc.string({ maxLength: 10 });
			// Lists of ids hold one: the pool may have a single id of a kind, and lists must be unique.
			const ids = kindOfField(name) !== undefined || UUID_PATTERN.test(itemSchema.pattern ?? "");
			const maxLength = Math.min(schema.maxItems ?? 4, ids ? 1 : 4);
			const minLength = Math.min(schema.minItems ?? 0, maxLength);
			arb = schema.uniqueItems ? fc.uniqueArray(items, { minLength, maxLength, selector: v => JSON.stringify(v) }) : fc.array(items, { minLength, maxLength });
			break;
		}
		default:
			arb = fc.jsonValue({ maxDepth: 2 });
	}
	return types.includes("null") ? fc.oneof({ arbitrary: arb, weight: 5 }, { arbitrary: fc.constant(null), weight: 1 }) : arb;
}

// ---- applying mutations to a body ---------------------------------------------------------------

type Path = Array<string | number>;

/** Every path of a JSON value (object keys and array indexes, nested), shortest first. */
function pathsOf(value: unknown, prefix: Path = [], out: Path[] = []): Path[] {
	if (Array.isArray(value)) {
		value.forEach((item, i) => {
			out.push([...prefix, i]);
			pathsOf(item, [...prefix, i], out);
		});
	} else if (value && typeof value === "object") {
		for (const key of Object.keys(value)) {
			out.push([...prefix, key]);
			pathsOf((value as Record<string, unknown>)[key], [...prefix, key], out);
		}
	}
	return out;
}

function objectsOf(value: unknown, prefix: Path = [], out: Path[] = []): Path[] {
	if (value && typeof value === "object" && !Array.isArray(value)) out.push(prefix);
	if (value && typeof value === "object") {
		for (const key of Object.keys(value)) objectsOf((value as Record<string, unknown>)[key], [...prefix, Array.isArray(value) ? Number(key) : key], out);
	}
	return out;
}

function clone(value: unknown): unknown {
	if (Array.isArray(value)) return value.map(clone);
	if (value && typeof value === "object") return ownKeys(Object.keys(value).map(k => [k, clone((value as Record<string, unknown>)[k])]));
	return value;
}

function setAt(root: unknown, path: Path, value: unknown, remove: boolean): unknown {
	if (path.length === 0) return remove ? undefined : value;
	let target = root as Record<string | number, unknown>;
	for (const part of path.slice(0, -1)) target = target[part] as Record<string | number, unknown>;
	const last = path[path.length - 1];
	if (Array.isArray(target) && typeof last === "number") {
		if (remove) target.splice(last, 1);
		else target[last] = value;
	} else if (remove) {
		delete target[last];
	} else {
		Object.defineProperty(target, String(last), { value, enumerable: true, writable: true, configurable: true });
	}
	return root;
}

/** `base` with `mutations` applied in order (paths are chosen among those present at that point). */
export function applyMutations(base: unknown, mutations: Mutation[]): unknown {
	let body = clone(base);
	for (const m of mutations) {
		if (m.op === "add") {
			const objects = body && typeof body === "object" ? objectsOf(body) : [];
			if (objects.length === 0) continue;
			const path = objects[m.pick % objects.length];
			body = setAt(body, [...path, m.key ?? "x"], clone(m.value), false);
			continue;
		}
		const paths = pathsOf(body);
		if (paths.length === 0) {
			if (m.op === "set" && body && typeof body === "object" && !Array.isArray(body)) body = setAt(body, [m.key ?? "name"], clone(m.value), false);
			continue;
		}
		body = setAt(body, paths[m.pick % paths.length], clone(m.value), m.op === "delete");
	}
	return body;
}

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
	{ arbitrary: fc.tuple(fc.nat(), badValue).map(([pick, t]): Mutation => ({ op: "set", pick, value: t.value, tag: t.tag })), weight: 10 },
	{ arbitrary: fc.nat().map((pick): Mutation => ({ op: "delete", pick, tag: "missing-field" })), weight: 2 },
	{
		arbitrary: fc
			.tuple(fc.nat(), fc.constantFrom(...UNKNOWN_KEYS), fc.oneof(badValue, fc.constantFrom<Tagged>({ value: "owner", tag: "v" }, { value: "enterprise", tag: "v" }, { value: marker("pool", "foreign:0"), tag: "v" }, { value: true, tag: "v" })))
			.map(([pick, key, t]): Mutation => ({ op: "add", pick, key, value: t.value, tag: `unknown-key:${key}${t.tag === "v" ? "" : `=${t.tag}`}` })),
		weight: 4
	}
);

// ---- whole cases --------------------------------------------------------------------------------

const NON_OBJECT_BODIES = ["[]", '["x"]', "[{}]", '"text"', "42", "-1", "0", "null", "true", "false", '""', "[[[[[]]]]]", "1e400"];
const MALFORMED_BODIES = [
	'{"name": "x",',
	"{name: 'x'}",
	"{'a':1}",
	'{"a":1,}',
	'{"a":1}}',
	"{",
	"}",
	"[1,2",
	"\u0000",
	'{"a":"\\uZZZZ"}',
	'{"a":"\\ud800"}',
	'{"a":"\\x41"}',
	"NaN",
	"Infinity",
	"undefined",
	'{"__proto__":1,"__proto__":{"a":1}}',
	'{"name":"a","name":{"$gt":""}}',
	'{"constructor":{"prototype":{"polluted":true}}}',
	'{"__proto__":{"polluted":true}}',
	"\ufeff{}",
	"{}garbage",
	"{} {}",
	'{"a":1e99999}',
	'{"a":' + "1".repeat(5000) + "}",
	"/* comment */ {}",
	'{"a":1 // comment\n}',
	"   ",
	"",
	"\r\n{}\r\n",
	'{"a":"\u0001\u001f"}',
	'{"a":"line\nbreak"}',
	'{"\u0000":1}'
];

/** Bytes that are not UTF-8: stray continuation, overlong, surrogates, past U+10FFFF, cut sequences. */
const INVALID_UTF8: Array<[number[], string]> = [
	[[0xff], "ff"],
	[[0xfe, 0xff], "bom-utf16"],
	[[0xc0, 0x80], "overlong-nul"],
	[[0xc1, 0xbf], "overlong"],
	[[0xed, 0xa0, 0x80], "surrogate"],
	[[0xed, 0xbf, 0xbf], "surrogate"],
	[[0xf4, 0x90, 0x80, 0x80], "above-10ffff"],
	[[0xf8, 0x88, 0x80, 0x80, 0x80], "5-byte"],
	[[0xe2, 0x82], "cut-sequence"],
	[[0x80], "continuation"],
	[[0xe9], "latin1"],
	[[0xc3, 0x28], "bad-continuation"],
	[[0x00, 0x00, 0xfe, 0xff], "utf32"]
];

const WRONG_CONTENT_TYPES = [
	"text/plain",
	"application/x-www-form-urlencoded",
	"application/xml",
	"multipart/form-data",
	"multipart/form-data; boundary=xyz",
	"application/json; charset=utf-16",
	"application/json; charset=latin1",
	"application/json; charset=bogus",
	"application/json;;;",
	"APPLICATION/JSON",
	"application/json-patch+json",
	"application/merge-patch+json",
	"application/vnd.api+json",
	"text/json",
	"*/*",
	"",
	"application/octet-stream",
	"image/png",
	"application/json\u00e9",
	"application/json; boundary=--",
	"text/event-stream"
];

const ENCODINGS = ["gzip", "deflate", "br", "x-gzip", "GZIP", "identity", "compress", "zstd", "gzip, gzip", "gzip, br", "bogus", "deflate-raw", "*"];

const garbageBytes = fc.uint8Array({ minLength: 0, maxLength: 300 }).map(a => Array.from(a));

function jsonBody(route: Route): fc.Arbitrary<BodySpec> {
	const schema = (route.jsonBody ?? { type: "object" }) as Schema;
	const base = validValue(schema);
	const mutated = fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 3 }));
	return fc.oneof(
		{ arbitrary: base.map((b): BodySpec => ({ kind: "json", base: b, mutations: [], tag: "valid" })), weight: 12 },
		{ arbitrary: mutated.map(([b, mutations]): BodySpec => ({ kind: "json", base: b, mutations, tag: "mutated" })), weight: 40 },
		{
			arbitrary: fc.tuple(base, fc.constantFrom(...NON_OBJECT_BODIES, "wrap")).map(([b, text]): BodySpec => ({
				kind: "text",
				text: text === "wrap" ? `[${JSON.stringify(b)}]` : text,
				tag: "non-object"
			})),
			weight: 4
		},
		{ arbitrary: fc.constantFrom(...MALFORMED_BODIES).map((text): BodySpec => ({ kind: "text", text, tag: "malformed" })), weight: 5 },
		{ arbitrary: deepMarker.map((t): BodySpec => ({ kind: "text", text: String(t.value), tag: "deep-body" })), weight: 2 },
		{
			arbitrary: fc.tuple(base, hugeMarker, fc.constantFrom(...UNKNOWN_KEYS.slice(0, 4), "name", "pad")).map(([b, t, key]): BodySpec => ({
				kind: "json",
				base: b,
				mutations: [{ op: "add", pick: 0, key, value: t.value, tag: t.tag }],
				tag: t.tag
			})),
			weight: 5
		},
		{
			arbitrary: fc.tuple(fc.constantFrom(...INVALID_UTF8), fc.constantFrom("name", "email", "password", "token", "x"), fc.constantFrom("", "application/json; charset=utf-8", "application/json; charset=utf-16le")).map(
				([[bytes, what], field, contentType]): BodySpec => ({
					kind: "bytes",
					prefix: `{"${field}":"a`,
					bytes,
					suffix: 'b"}',
					contentType: contentType || undefined,
					tag: `invalid-utf8:${what}`
				})
			),
			weight: 5
		},
		{
			arbitrary: fc
				.tuple(fc.constantFrom(...ENCODINGS), fc.constantFrom<EncodedMode>("garbage", "garbage", "valid", "truncated", "double", "mismatch", "bomb"), garbageBytes, base, fc.array(mutation, { maxLength: 2 }), fc.double({ min: 0.05, max: 0.95, noNaN: true }))
				.map(([encoding, mode, garbage, b, mutations, cut]): BodySpec => ({ kind: "encoded", encoding, mode, garbage, base: b, mutations, cut, tag: `encoding:${encoding}:${mode}` })),
			weight: 9
		},
		{
			arbitrary: fc.tuple(base, fc.constantFrom(...WRONG_CONTENT_TYPES)).map(([b, contentType]): BodySpec => ({ kind: "json", base: b, mutations: [], contentType, tag: `content-type:${contentType}` })),
			weight: 6
		},
		{ arbitrary: base.map((b): BodySpec => ({ kind: "json", base: b, mutations: [], chunked: true, tag: "chunked" })), weight: 2 },
		{ arbitrary: fc.constant<BodySpec>({ kind: "none" }), weight: 3 },
		{ arbitrary: multipartBody(route), weight: 3 }
	);
}

/** The multipart variants of an upload route: valid, truncated, boundary trouble, garbage parts. */
function multipartBody(route: Route): fc.Arbitrary<BodySpec> {
	const schema = (route as FuzzRoute).multipartBody ?? {
		type: "object",
		properties: { name: { type: "string", minLength: 1, maxLength: 200 }, tags: { type: "string" }, durationMs: { type: "integer", minimum: 1000, maximum: 86_400_000 } }
	};
	const fieldValue = (key: string, sub: Schema) =>
		fc.oneof(
			{ arbitrary: validValue(sub, key).map(v => (typeof v === "string" ? v : JSON.stringify(v))), weight: 3 },
			{ arbitrary: badValue.map(t => (typeof t.value === "string" ? t.value : (JSON.stringify(t.value) ?? "null"))), weight: 2 }
		);
	const props = Object.entries(schema.properties ?? {}).filter(([key]) => key !== "file");
	const fields = fc
		.tuple(
			...props.map(([key, sub]) => fc.option(fieldValue(key, sub as Schema).map(v => [key, v] as [string, string]), { nil: undefined, freq: 2 })),
			sometimes(fc.tuple(fc.constantFrom(...UNKNOWN_KEYS, "file[]", "$filename", "$mimetype", "$params"), fc.constantFrom("x", "owner", '{"$gt":""}', "[object Object]")), 25)
		)
		.map(list => list.filter((x): x is [string, string] => x !== undefined));
	return fc
		.record({
			variant: fc.constantFrom<MultipartVariant>(
				"valid",
				"valid",
				"valid",
				"not-an-image",
				"no-file",
				"truncated",
				"truncated",
				"boundary-mismatch",
				"overlong-boundary",
				"no-boundary",
				"quoted-boundary",
				"garbage-parts",
				"garbage-parts",
				"empty",
				"two-files",
				"many-parts",
				"huge-field",
				"huge-declared-image",
				"gzip",
				"aborted"
			),
			fields,
			file: fc.constantFrom<FileKind>("png", "png", "text", "empty", "random", "png-truncated"),
			filename: fc.oneof(fc.constantFrom("a.png", "../../etc/passwd", "", "x\u0000.png", "😀.png", "a\".png", "a\r\nX-Evil: 1.png", "C:\\boot.ini", "a".repeat(2000) + ".png"), fc.string({ maxLength: 30 })),
			fileType: fc.constantFrom("image/png", "image/jpeg", "text/plain", "application/octet-stream", "", "image/png; charset=utf-8", "video/mp4", "invalid"),
			cut: fc.double({ min: 0.01, max: 0.99, noNaN: true }),
			boundaryLength: fc.constantFrom(71, 200, 1_000, 5_000),
			garbage: fc.string({ unit: "binary", maxLength: 200 })
		})
		.map(r => ({ kind: "multipart" as const, ...r, tag: `multipart:${r.variant}` }));
}

/** Bodies of routes that take none (GET, DELETE, POST without a requestBody): mostly none, sometimes junk. */
function noBody(route: Route): fc.Arbitrary<BodySpec> {
	const schema: Schema = { type: "object", properties: { confirm: { type: "string" }, force: { type: "boolean" } } };
	return fc.oneof(
		{ arbitrary: fc.constant<BodySpec>({ kind: "none" }), weight: 12 },
		{ arbitrary: jsonBody({ ...route, jsonBody: schema }), weight: 4 },
		{ arbitrary: multipartBody(route), weight: 1 }
	);
}

const AUTH_GARBAGE = [
	"",
	"Bearer",
	"Bearer ",
	"bearer x",
	"Basic Zm9vOmJhcg==",
	"Bearer mk_",
	"Bearer mk_" + "A".repeat(43),
	"Bearer mpk_" + "A".repeat(43),
	"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwidGVuYW50SWQiOiJ4In0.",
	"Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
	"Bearer a.b.c",
	"Bearer ....",
	"Bearer " + "x".repeat(9000),
	"Bearer  two  spaces",
	"Bearer a, Bearer b",
	"Bearer \u00e9\u00ff",
	"Bearer null",
	"Bearer undefined",
	"Bearer [object Object]",
	"Bearer __proto__",
	"Token abc",
	"Bearer\tabc"
];

const authArb: fc.Arbitrary<string> = fc.oneof(
	{ arbitrary: fc.constantFrom(...AUTH_GARBAGE), weight: 6 },
	{ arbitrary: fc.constantFrom("ownerToken", "deviceToken", "apiKey", "decoyToken").chain(name => fc.constantFrom(`Bearer ${marker("secret", name)}`, `Bearer ${marker("secret", `${name}~mangled`)}`, marker("secret", name))), weight: 3 },
	{ arbitrary: fc.string({ unit: "binary-ascii", maxLength: 80 }).map(s => `Bearer ${s}`), weight: 2 }
);

const headerText = fc.oneof(fc.constantFrom("", "*", 'W/"x"', '"x"', "W/", '"', "null", "a".repeat(8000), '"a", "b", W/"c"', "\u00ff\u00fe", "<script>"), fc.string({ unit: "binary-ascii", maxLength: 60 }));

const extraHeaders: fc.Arbitrary<Array<[string, string]>> = fc.array(
	fc.oneof(
		fc.tuple(fc.constant("If-None-Match"), headerText),
		fc.tuple(fc.constant("X-Pairing-Secret"), fc.oneof(headerText, fc.nat(50).map(pick => marker("pool", `pollSecret:${pick}`)))),
		fc.tuple(fc.constant("X-Request-Id"), fc.oneof(headerText, fc.constantFrom("ok-id.1:2", "a".repeat(129), "../x", "a b"))),
		fc.tuple(fc.constant("X-Forwarded-For"), fc.oneof(headerText, fc.constantFrom("not-an-ip", "::ffff:1.2.3.4", "1.2.3.4, 5.6.7.8", ",,,,", "999.999.999.999", "[::1]:80", "unknown"))),
		fc.tuple(fc.constantFrom("Accept", "Accept-Encoding", "Accept-Language", "Origin", "Cookie", "Range", "If-Modified-Since", "Stripe-Signature", "Content-Language"), headerText)
	),
	{ maxLength: 2 }
);

function garbageSegment(): fc.Arbitrary<{ value: string; raw: boolean; tag: string }> {
	return fc.oneof(
		{ arbitrary: fc.constantFrom(...NASTY_STRINGS).map(value => ({ value, raw: false, tag: "path:nasty" })), weight: 4 },
		{
			arbitrary: fc.constantFrom("..%2F..%2Fetc%2Fpasswd", "%00", "%", "%zz", "%ED%A0%80", "%C0%AE%C0%AE", "..", ".", "%2e%2e", "a/b", "a%2Fb", "%252e", ";x=1", "\u00ff\u00e9", "%FF%FE", "me", "%20", "%E2%80%AE").map(value => ({ value, raw: true, tag: "path:raw" })),
			weight: 4
		},
		{ arbitrary: anyString(40).map(value => ({ value, raw: false, tag: "path:random" })), weight: 2 },
		{ arbitrary: fc.constantFrom(300, 3_000, 8_000, 8_000, 20_000).map(n => ({ value: "a".repeat(n), raw: false, tag: n > 15_000 ? "path:too-long" : "path:long" })), weight: 1 }
	);
}

function pathChoice(): fc.Arbitrary<PathChoice> {
	return fc.oneof(
		{ arbitrary: fc.nat(1000).map((pick): PathChoice => ({ mode: "pool", pick })), weight: 9 },
		{ arbitrary: fc.uuid({ version: 7 }).map((value): PathChoice => ({ mode: "uuid", value })), weight: 3 },
		{ arbitrary: fc.tuple(fc.constantFrom(...POOL_KINDS), fc.nat(1000)).map(([kind, pick]): PathChoice => ({ mode: "other", kind, pick })), weight: 2 },
		{ arbitrary: garbageSegment().map((g): PathChoice => ({ mode: "garbage", ...g })), weight: 6 }
	);
}

/** Kinds of ids the suite keeps (valid in the owner's tenant, or another tenant's: "foreign"). */
export const POOL_KINDS = ["display", "group", "content", "playlist", "layout", "schedule", "override", "powerSchedule", "apiKey", "invitation", "member", "session", "command", "pairing", "foreign"];

function queryParts(route: Route): fc.Arbitrary<{ parts: QueryPart[]; raw?: string; tags: string[] }> {
	const declared = route.queryParams.map(param =>
		fc.option(
			fc.oneof(
				{ arbitrary: validValue((param.schema ?? { type: "string" }) as Schema, param.name).map(v => ({ parts: [{ key: param.name, value: typeof v === "string" ? v : String(v) }], tag: "" })), weight: 4 },
				{
					// Huge values would only measure Node's 16 kB header limit (see the path's "too long" case).
					arbitrary: badValue
						.filter(t => !t.tag.startsWith("huge") && t.tag !== "deep")
						.map(t => ({ parts: [{ key: param.name, value: typeof t.value === "string" ? t.value : (JSON.stringify(t.value) ?? "") }], tag: `query:${t.tag}` })),
					weight: 2
				},
				{
					arbitrary: fc.constantFrom("[$gt]", "[$ne]", "[]", "[0]", "[a][b]", "[__proto__]", "[toString]", "[$where]").map(suffix => ({ parts: [{ key: `${param.name}${suffix}`, value: "1", raw: true }], tag: "query:brackets" })),
					weight: 2
				},
				{ arbitrary: fc.tuple(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })).map(([a, b]) => ({ parts: [{ key: param.name, value: a }, { key: param.name, value: b }], tag: "query:repeated" })), weight: 1 }
			),
			{ nil: undefined, freq: 2 }
		)
	);
	const extra = sometimes(
		fc.oneof(
			fc.constantFrom(...UNKNOWN_KEYS).map(key => ({ parts: [{ key, value: "x" }], tag: "query:unknown-key" })),
			fc.constantFrom("__proto__[polluted]", "constructor[prototype][polluted]", "q[$gt]", "a[b][c][d][e][f][g][h][i][j][k]", "a[999999999]", "toString", "valueOf", "hasOwnProperty").map(key => ({ parts: [{ key, value: "1", raw: true }], tag: "query:proto-key" })),
			fc.constantFrom(200, 1_500).map(n => ({ parts: Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: "1" })), tag: "query:many-params" }))
		),
		15
	);
	const raw = sometimes(fc.constantFrom("%", "%zz", "%ED%A0%80", "&&&", "=", "a==b", ";", "%FF", "\u00e9", "page=1&page=2", "pageSize=1&pageSize=1000", "q[$gt]=", "page[$gt]=0", "&page", "page"), 10);
	return fc.tuple(fc.tuple(...declared), extra, raw).map(([d, e, r]) => {
		const picked = [...d, e].filter((x): x is { parts: QueryPart[]; tag: string } => x !== undefined);
		return {
			parts: picked.flatMap(x => x.parts),
			raw: r,
			tags: [...picked.map(x => x.tag).filter(Boolean), ...(r !== undefined ? ["query:raw"] : [])]
		};
	});
}

const BODY_METHODS = ["POST", "PUT", "PATCH", "DELETE"];

/** One case for one route. */
export function caseFor(route: Route, index: number): fc.Arbitrary<FuzzCase> {
	const takesJson = route.jsonBody !== null && BODY_METHODS.includes(route.method);
	const upload = route.bodyTypes.includes("multipart/form-data");
	const body = upload
		? fc.oneof({ arbitrary: multipartBody(route), weight: 8 }, { arbitrary: jsonBody(route), weight: 2 })
		: takesJson
			? jsonBody(route)
			: noBody(route);
	return fc
		.record({
			caller: fc.constantFrom<CallerChoice>(...Array<CallerChoice>(16).fill("proper"), "anonymous", "garbage", "garbage", "owner", "device", "apiKey", "decoy"),
			auth: authArb,
			method: sometimes(fc.constantFrom("OPTIONS", "HEAD", "PUT", "GET", "DELETE", "POST", "PATCH", "TRACE"), 3),
			path: fc.tuple(...route.pathParams.map(() => pathChoice())),
			query: queryParts(route),
			headers: sometimes(extraHeaders, 25).map(h => h ?? []),
			body
		})
		.map(r => {
			const tags = [`caller:${r.caller}`];
			for (const p of r.path) if (p.mode === "garbage") tags.push(p.tag);
			tags.push(...r.query.tags);
			for (const [name] of r.headers) tags.push(`header:${name.toLowerCase()}`);
			if (r.body.kind !== "none") tags.push(`body:${r.body.tag}`);
			if (r.body.kind === "json" || r.body.kind === "encoded") tags.push(...r.body.mutations.map(m => `value:${m.tag}`));
			if (r.method && r.method !== route.method) tags.push(`method:${r.method}`);
			return {
				route: index,
				caller: r.caller,
				auth: r.caller === "garbage" ? r.auth : undefined,
				method: r.method && r.method !== route.method ? r.method : undefined,
				path: r.path,
				query: r.query.parts,
				rawQuery: r.query.raw,
				headers: r.headers,
				body: r.body,
				tags
			};
		});
}

/** A case for any of `routes` (uniform over routes). */
export function fuzzCase(routes: Route[]): fc.Arbitrary<FuzzCase> {
	const perRoute = routes.map((route, i) => caseFor(route, i));
	return fc.nat(routes.length - 1).chain(i => perRoute[i]);
}

// ---- reduction (which part of a crashing case is the cause) ---------------------------------------

/**
 * Variants of a case that keep one unusual part and make the rest ordinary, each with the tags
 * that part stands for: replaying them finds the part that crashes.
 */
export function isolatedVariants(c: FuzzCase): Array<{ part: string; tags: string[]; case: FuzzCase }> {
	const plain: FuzzCase = {
		...c,
		caller: "proper",
		auth: undefined,
		method: undefined,
		path: c.path.map(() => ({ mode: "pool", pick: 0 })),
		query: [],
		rawQuery: undefined,
		headers: [],
		body: c.body.kind === "json" || c.body.kind === "encoded" ? { kind: "json", base: c.body.base, mutations: [], tag: "valid" } : { kind: "none" },
		tags: []
	};
	const variants: Array<{ part: string; tags: string[]; case: FuzzCase }> = [];
	const bodyTags = c.body.kind === "none" ? [] : [`body:${c.body.tag}`];
	if (c.body.kind === "json" && c.body.mutations.length > 0) {
		for (const m of c.body.mutations) {
			variants.push({ part: `body mutation ${m.op} ${m.tag}`, tags: [`value:${m.tag}`], case: { ...plain, body: { ...c.body, mutations: [m] } } });
		}
	} else if (c.body.kind === "encoded" && c.body.mutations.length > 0) {
		// What the encoded body decodes to, as plain JSON, mutation by mutation; then the encoding alone.
		for (const m of c.body.mutations) {
			variants.push({ part: `body mutation ${m.op} ${m.tag}`, tags: [`value:${m.tag}`], case: { ...plain, body: { kind: "json", base: c.body.base, mutations: [m], tag: "mutated" } } });
		}
		variants.push({ part: `body ${c.body.tag}`, tags: bodyTags, case: { ...plain, body: { ...c.body, mutations: [] } } });
	} else if (c.body.kind !== "none") {
		variants.push({ part: `body ${c.body.tag}`, tags: bodyTags, case: { ...plain, body: c.body } });
	}
	if (c.caller !== "proper") variants.push({ part: `caller ${c.caller}`, tags: [`caller:${c.caller}`], case: { ...plain, caller: c.caller, auth: c.auth } });
	if (c.path.some(p => p.mode !== "pool")) variants.push({ part: "path", tags: c.tags.filter(t => t.startsWith("path:")), case: { ...plain, path: c.path } });
	if (c.query.length || c.rawQuery !== undefined) variants.push({ part: "query", tags: c.tags.filter(t => t.startsWith("query:")), case: { ...plain, query: c.query, rawQuery: c.rawQuery } });
	if (c.headers.length) variants.push({ part: "headers", tags: c.tags.filter(t => t.startsWith("header:")), case: { ...plain, headers: c.headers } });
	if (c.method) variants.push({ part: `method ${c.method}`, tags: [`method:${c.method}`], case: { ...plain, method: c.method } });
	return variants;
}

// ---- bytes on the wire ----------------------------------------------------------------------------

export interface RawRequest {
	method: string;
	path: string;
	headers: Record<string, string>;
	body?: Buffer;
	chunked?: boolean;
	/** Send this many bytes of the body, then drop the connection (no answer expected). */
	abortAfter?: number;
}

/** Percent-encoding that also survives lone surrogates (as their WTF-8 bytes). */
export function percentEncode(value: string, keep = /[A-Za-z0-9\-._~]/): string {
	let out = "";
	for (let i = 0; i < value.length; i++) {
		const ch = value[i];
		if (keep.test(ch)) {
			out += ch;
			continue;
		}
		const code = value.charCodeAt(i);
		let bytes: number[];
		if (code >= 0xd800 && code <= 0xdbff && i + 1 < value.length && value.charCodeAt(i + 1) >= 0xdc00 && value.charCodeAt(i + 1) <= 0xdfff) {
			bytes = Array.from(Buffer.from(value.slice(i, i + 2), "utf8"));
			i += 1;
		} else if (code >= 0xd800 && code <= 0xdfff) {
			bytes = [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)];
		} else {
			bytes = Array.from(Buffer.from(ch, "utf8"));
		}
		out += bytes.map(b => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
	}
	return out;
}

/** Text the HTTP client accepts verbatim in a path or query (0x21–0xFF), the rest percent-encoded. */
function rawSafe(value: string): string {
	return percentEncode(value, /[\u0021-\u00ff]/);
}

/** A header value the client accepts: UTF-8 bytes as latin1, control characters dropped. */
export function headerSafe(value: string): string {
	// eslint-disable-next-line no-control-regex
	return Buffer.from(value, "utf8").toString("latin1").replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, "").trim();
}

const PNG_1X1 = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");

let crcTable: number[] | null = null;
function crc32(buf: Buffer): number {
	if (!crcTable) {
		crcTable = Array.from({ length: 256 }, (_, n) => {
			let c = n;
			for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
			return c >>> 0;
		});
	}
	let crc = 0xffffffff;
	for (const b of buf) crc = crcTable[(crc ^ b) & 0xff] ^ (crc >>> 8);
	return (crc ^ 0xffffffff) >>> 0;
}

/** A PNG whose header declares `w` × `h` pixels (a decompression-bomb shape), CRC correct. */
function pngDeclaring(w: number, h: number): Buffer {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(w, 0);
	ihdr.writeUInt32BE(h, 4);
	ihdr.set([8, 6, 0, 0, 0], 8);
	const chunk = (type: string, data: Buffer) => {
		const len = Buffer.alloc(4);
		len.writeUInt32BE(data.length);
		const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
		const crc = Buffer.alloc(4);
		crc.writeUInt32BE(crc32(body));
		return Buffer.concat([len, body, crc]);
	};
	return Buffer.concat([PNG_1X1.subarray(0, 8), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(Buffer.alloc(64))), chunk("IEND", Buffer.alloc(0))]);
}

function fileBytes(kind: FileKind, seed: string): Buffer {
	switch (kind) {
		case "png":
			return PNG_1X1;
		case "png-truncated":
			return PNG_1X1.subarray(0, 30);
		case "png-huge-header":
			return pngDeclaring(50_000, 50_000);
		case "text":
			return Buffer.from("hello, not an image\n");
		case "empty":
			return Buffer.alloc(0);
		case "random":
			return Buffer.from(seed, "latin1");
	}
}

function multipart(spec: Extract<BodySpec, { kind: "multipart" }>, env: MarkerEnv): { headers: Record<string, string>; body: Buffer; abortAfter?: number } {
	let boundary = "fuzzBoundary7MA4YWxkTrZu0gW";
	let headerBoundary = boundary;
	if (spec.variant === "overlong-boundary") boundary = headerBoundary = "b".repeat(spec.boundaryLength);
	if (spec.variant === "boundary-mismatch") headerBoundary = "somethingElseEntirely";
	const fields = spec.fields.map(([name, value]) => [name, resolveText(value, env)] as [string, string]);
	const part = (name: string, value: Buffer | string, filename?: string, type?: string) =>
		Buffer.concat([
			Buffer.from(
				`--${boundary}\r\nContent-Disposition: form-data; name="${name}"${filename !== undefined ? `; filename="${filename}"` : ""}\r\n${type !== undefined ? `Content-Type: ${type}\r\n` : ""}\r\n`,
				"utf8"
			),
			typeof value === "string" ? Buffer.from(value, "utf8") : value,
			Buffer.from("\r\n")
		]);
	const end = Buffer.from(`--${boundary}--\r\n`);
	const file = spec.variant === "not-an-image" ? fileBytes("text", spec.garbage) : spec.variant === "huge-declared-image" ? fileBytes("png-huge-header", spec.garbage) : fileBytes(spec.file, spec.garbage);
	const parts: Buffer[] = fields.map(([n, v]) => part(n, v));
	switch (spec.variant) {
		case "no-file":
			break;
		case "two-files":
			parts.push(part("file", file, spec.filename, spec.fileType), part("file", PNG_1X1, "b.png", "image/png"));
			break;
		case "many-parts":
			for (let i = 0; i < 2_000; i++) parts.push(part(`f${i}`, "x"));
			parts.push(part("file", file, spec.filename, spec.fileType));
			break;
		case "huge-field":
			parts.push(part("name", hugeString(200_000, spec.boundaryLength)), part("file", file, spec.filename, spec.fileType));
			break;
		case "garbage-parts":
			parts.push(
				Buffer.from(`--${boundary}\r\n\r\nno headers at all\r\n`),
				Buffer.from(`--${boundary}\r\nContent-Disposition: form-data\r\n\r\nno name\r\n`),
				Buffer.from(`--${boundary}\r\nContent-Disposition: attachment; name=file; filename=\r\nContent-Type: \r\n\r\n`),
				Buffer.from(spec.garbage, "latin1"),
				Buffer.from(`\r\n--${boundary}\r\nX-Header-Without-Colon\r\n\r\nx\r\n`),
				part("file", file, spec.filename, spec.fileType)
			);
			break;
		default:
			parts.push(part("file", file, spec.filename, spec.fileType));
	}
	let body = Buffer.concat([...parts, end]);
	let contentType = `multipart/form-data; boundary=${headerBoundary}`;
	const headers: Record<string, string> = {};
	let abortAfter: number | undefined;
	switch (spec.variant) {
		case "truncated":
			body = body.subarray(0, Math.floor(body.length * spec.cut));
			break;
		case "no-boundary":
			contentType = "multipart/form-data";
			break;
		case "quoted-boundary":
			contentType = `multipart/form-data; boundary="${headerBoundary}"; charset=utf-8`;
			break;
		case "empty":
			body = Buffer.alloc(0);
			break;
		case "gzip":
			headers["Content-Encoding"] = "gzip";
			body = spec.cut < 0.5 ? zlib.gzipSync(body) : Buffer.from(spec.garbage, "latin1");
			break;
		case "aborted":
			abortAfter = Math.max(1, Math.floor(body.length * spec.cut));
			break;
	}
	headers["Content-Type"] = contentType;
	return { headers, body, abortAfter };
}

function encodedBody(spec: Extract<BodySpec, { kind: "encoded" }>, env: MarkerEnv): Buffer {
	const json = Buffer.from(toJsonText(resolveMarkers(applyMutations(spec.base, spec.mutations), env)), "utf8");
	const compress = (buf: Buffer, encoding: string): Buffer => {
		const e = encoding.toLowerCase();
		if (e.includes("br")) return zlib.brotliCompressSync(buf);
		if (e.includes("deflate")) return zlib.deflateSync(buf);
		return zlib.gzipSync(buf);
	};
	switch (spec.mode) {
		case "garbage":
			return Buffer.from(spec.garbage);
		case "valid":
			return compress(json, spec.encoding);
		case "truncated": {
			const full = compress(json, spec.encoding);
			return full.subarray(0, Math.max(1, Math.floor(full.length * spec.cut)));
		}
		case "double":
			return compress(compress(json, spec.encoding), spec.encoding);
		case "mismatch":
			return compress(json, spec.encoding.includes("br") ? "gzip" : "br");
		case "bomb":
			// Tens of MB once inflated, a few kB on the wire.
			return compress(Buffer.concat([Buffer.from('{"name":"'), Buffer.alloc(20 * 1024 * 1024, 0x61), Buffer.from('"}')]), spec.encoding);
	}
}

/** The bytes of a case against `route`, with markers resolved from `env`. */
export function buildRequest(route: Route, c: FuzzCase, env: MarkerEnv, apiBase: string, tokenFor: (c: FuzzCase) => string | null, kindOf: (route: Route, param: string) => string): RawRequest {
	let i = 0;
	const path = route.template.replace(/\{([^}]+)\}/g, (_, name: string) => {
		const choice = c.path[i++] ?? { mode: "pool", pick: 0 };
		switch (choice.mode) {
			case "pool":
				return percentEncode(env.pool(kindOf(route, name), choice.pick) ?? randomUuidV7(choice.pick));
			case "uuid":
				return choice.value;
			case "other":
				return percentEncode(env.pool(choice.kind, choice.pick) ?? randomUuidV7(choice.pick));
			case "garbage":
				return choice.raw ? rawSafe(choice.value) : percentEncode(choice.value);
		}
	});
	const query = c.query.map(q => `${q.raw ? rawSafe(q.key) : percentEncode(q.key)}=${q.raw ? rawSafe(resolveText(q.value, env)) : percentEncode(resolveText(q.value, env))}`);
	if (c.rawQuery !== undefined) query.push(rawSafe(c.rawQuery));
	const headers: Record<string, string> = {};
	const token = tokenFor(c);
	if (c.caller === "garbage") headers.Authorization = headerSafe(resolveText(c.auth ?? "", env));
	else if (token) headers.Authorization = `Bearer ${token}`;
	for (const [name, value] of c.headers) headers[name] = headerSafe(resolveText(value, env));
	let body: Buffer | undefined;
	let chunked = false;
	let abortAfter: number | undefined;
	const b = c.body;
	switch (b.kind) {
		case "none":
			break;
		case "json":
			body = Buffer.from(toJsonText(resolveMarkers(applyMutations(b.base, b.mutations), env)), "utf8");
			headers["Content-Type"] = b.contentType ?? "application/json";
			chunked = b.chunked ?? false;
			break;
		case "text":
			body = Buffer.from(resolveText(b.text, env), "utf8");
			headers["Content-Type"] = b.contentType ?? "application/json";
			break;
		case "bytes":
			body = Buffer.concat([Buffer.from(b.prefix, "utf8"), Buffer.from(b.bytes), Buffer.from(b.suffix, "utf8")]);
			headers["Content-Type"] = b.contentType ?? "application/json";
			break;
		case "encoded":
			body = encodedBody(b, env);
			headers["Content-Type"] = "application/json";
			headers["Content-Encoding"] = b.encoding;
			break;
		case "multipart": {
			const built = multipart(b, env);
			Object.assign(headers, built.headers);
			body = built.body;
			abortAfter = built.abortAfter;
			break;
		}
	}
	if (headers["Content-Type"] !== undefined) headers["Content-Type"] = headerSafe(headers["Content-Type"]);
	return { method: c.method ?? route.method, path: `${apiBase}${path}${query.length ? `?${query.join("&")}` : ""}`, headers, body, chunked, abortAfter };
}

// ---- sending --------------------------------------------------------------------------------------

export type Outcome =
	| { kind: "answer"; res: JsonResponse; ms: number }
	| { kind: "timeout"; ms: number }
	| { kind: "error"; code: string; message: string; ms: number }
	| { kind: "aborted" };

const MAX_ANSWER_BYTES = 2 * 1024 * 1024;

/** One request over `agent`; an event stream's status and headers are its answer. */
export function sendRaw(baseUrl: string, req: RawRequest, agent: http.Agent | false, timeoutMs: number): Promise<Outcome> {
	const url = new URL(baseUrl);
	const started = Date.now();
	return new Promise<Outcome>(resolve => {
		let done = false;
		let r: http.ClientRequest | undefined;
		const timer = setTimeout(() => {
			r?.destroy();
			finish({ kind: "timeout", ms: Date.now() - started });
		}, timeoutMs);
		const finish = (o: Outcome) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			resolve(o);
		};
		const headers: Record<string, string> = { ...req.headers };
		if (req.body && !req.chunked) headers["Content-Length"] = String(req.body.length);
		try {
			r = http.request({ host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent: req.abortAfter !== undefined ? false : agent });
		} catch (err) {
			finish({ kind: "error", code: (err as NodeJS.ErrnoException).code ?? "CLIENT", message: `client refused to send: ${(err as Error).message}`, ms: 0 });
			return;
		}
		const client = r;
		client.on("response", res => {
			const type = String(res.headers["content-type"] ?? "");
			const chunks: Buffer[] = [];
			let size = 0;
			const complete = () => {
				const text = Buffer.concat(chunks).toString("utf8");
				let body: unknown = text;
				try {
					body = text ? JSON.parse(text) : null;
				} catch {
					/* not JSON */
				}
				const h = new Headers();
				for (const [k, v] of Object.entries(res.headers)) {
					try {
						if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(", ") : v);
					} catch {
						/* a header value Headers refuses */
					}
				}
				finish({ kind: "answer", res: { status: res.statusCode ?? 0, headers: h, body, text }, ms: Date.now() - started });
			};
			if (type.startsWith("text/event-stream") || req.method === "HEAD") {
				res.destroy();
				complete();
				return;
			}
			res.on("data", (chunk: Buffer) => {
				size += chunk.length;
				if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
				else res.destroy();
			});
			res.on("end", complete);
			res.on("close", complete);
			res.on("error", complete);
		});
		client.on("error", (err: NodeJS.ErrnoException) => {
			if (req.abortAfter !== undefined) finish({ kind: "aborted" });
			else finish({ kind: "error", code: err.code ?? "ERROR", message: err.message, ms: Date.now() - started });
		});
		if (req.abortAfter !== undefined && req.body) {
			client.write(req.body.subarray(0, req.abortAfter));
			setTimeout(() => {
				client.destroy();
				finish({ kind: "aborted" });
			}, 30);
			return;
		}
		if (req.body && req.chunked) {
			const mid = Math.floor(req.body.length / 2);
			client.write(req.body.subarray(0, mid));
			client.end(req.body.subarray(mid));
		} else {
			client.end(req.body);
		}
	});
}

/** A short, printable account of a request for reports. */
export function describeRequest(req: RawRequest, caller: string): string {
	const body = req.body ? req.body.subarray(0, 240).toString("latin1").replace(/[^\x20-\x7e]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`) : "";
	const extra = Object.entries(req.headers)
		.filter(([k]) => k !== "Authorization" || caller === "garbage")
		.map(([k, v]) => `${k}: ${v.slice(0, 60)}${v.length > 60 ? "…" : ""}`)
		.join("; ");
	const path = req.path.length > 200 ? `${req.path.slice(0, 200)}…(${req.path.length} chars)` : req.path;
	const size = req.body ? ` (${req.body.length} bytes${req.abortAfter !== undefined ? `, aborted after ${req.abortAfter}` : ""})` : "";
	return `${req.method} ${path} as ${caller}${extra ? ` [${extra}]` : ""}${body ? ` body${size}: ${body}${req.body && req.body.length > 240 ? "…" : ""}` : ""}`;
}
