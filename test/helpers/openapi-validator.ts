import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";

const ROOT = path.resolve(__dirname, "../..");

/**
 * Validates a document against the OpenAPI 3.1 schema. @seriousme/openapi-schema-validator is
 * ESM-only and Jest cannot import ESM without --experimental-vm-modules, so the validator runs
 * in a child Node process.
 */
export async function validateOpenApi(doc: unknown): Promise<{ valid: boolean; errors?: unknown }> {
	const script = [
		'import { Validator } from "@seriousme/openapi-schema-validator";',
		'import { readFileSync } from "node:fs";',
		'const result = await new Validator().validate(JSON.parse(readFileSync(0, "utf8")));',
		"process.stdout.write(JSON.stringify(result));"
	].join("\n");
	const run = promisify(execFile);
	const child = run(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT });
	child.child.stdin?.end(JSON.stringify(doc));
	const { stdout } = await child;
	return JSON.parse(stdout) as { valid: boolean; errors?: unknown };
}

export interface LintProblem {
	ruleId: string;
	severity: "error" | "warn";
	message: string;
	/** JSON pointer into the document, e.g. "#/paths/~1api~1v1~1tenant/get". */
	pointer: string;
}

export interface LintResult {
	errors: number;
	warnings: number;
	problems: LintProblem[];
}

/**
 * Lints a document with Redocly CLI under the repository's redocly.yaml (the recommended rules),
 * as `npm run lint:openapi` does with the published one.
 */
export async function lintOpenApi(doc: unknown): Promise<LintResult> {
	const dir = await mkdtemp(path.join(os.tmpdir(), "marquee-openapi-lint-"));
	const file = path.join(dir, "openapi.json");
	try {
		await writeFile(file, JSON.stringify(doc, null, 2));
		const cli = path.join(ROOT, "node_modules", "@redocly", "cli", "bin", "cli.js");
		const args = [cli, "lint", "--config", path.join(ROOT, "redocly.yaml"), "--format=json", file];
		// The CLI exits 1 when it finds errors; its report is on stdout either way.
		const stdout = await promisify(execFile)(process.execPath, args, { cwd: ROOT, maxBuffer: 32 * 1024 * 1024 }).then(
			result => result.stdout,
			(err: { stdout?: string }) => err.stdout ?? ""
		);
		const report = JSON.parse(stdout) as {
			totals: { errors: number; warnings: number };
			problems: Array<{ ruleId: string; severity: "error" | "warn"; message: string; location?: Array<{ pointer?: string }> }>;
		};
		return {
			errors: report.totals.errors,
			warnings: report.totals.warnings,
			problems: report.problems.map(p => ({ ruleId: p.ruleId, severity: p.severity, message: p.message, pointer: p.location?.[0]?.pointer ?? "" }))
		};
	} finally {
		await rm(dir, { recursive: true, force: true });
	}
}

/**
 * `schema` with every object that lists its `properties` and says nothing of others closed
 * (`additionalProperties: false`): a body field the document does not declare is then a
 * validation error, so the document cannot silently fall behind what a handler answers. Members
 * of an `allOf` stay open, since each describes only part of the object.
 */
export function closedSchema(schema: unknown, closeSelf = true): unknown {
	if (Array.isArray(schema)) return schema.map(item => closedSchema(item));
	if (typeof schema !== "object" || schema === null) return schema;
	const result: Record<string, unknown> = {};
	for (const [key, value] of Object.entries(schema)) {
		if (VALUE_KEYWORDS.has(key)) result[key] = value;
		else if (key === "allOf" && Array.isArray(value)) result[key] = value.map(member => closedSchema(member, false));
		else if (key === "properties" && typeof value === "object" && value !== null) {
			result[key] = Object.fromEntries(Object.entries(value).map(([name, prop]) => [name, closedSchema(prop)]));
		} else result[key] = closedSchema(value);
	}
	const open = "additionalProperties" in result || "patternProperties" in result || "unevaluatedProperties" in result;
	if (closeSelf && "properties" in result && !open) result.additionalProperties = false;
	return result;
}

/** Keywords whose value is data, not a schema. */
const VALUE_KEYWORDS = new Set(["const", "enum", "default", "examples", "example", "required"]);

/** Compiles JSON Schema 2020-12 (the dialect of OpenAPI 3.1) with the standard formats (date-time, email, uri, uuid). */
export function jsonSchemaValidator(): (schema: unknown, value: unknown) => string[] {
	const ajv = new Ajv2020({ allErrors: true, strict: false });
	addFormats(ajv);
	const compiled = new Map<string, ValidateFunction>();
	return (schema, value) => {
		const key = JSON.stringify(schema);
		let validate = compiled.get(key);
		if (validate === undefined) {
			validate = ajv.compile(schema as object);
			compiled.set(key, validate);
		}
		if (validate(value)) return [];
		return (validate.errors ?? []).map(e => `${e.instancePath || "(body)"} ${e.message ?? "is invalid"}${e.params && "additionalProperty" in e.params ? `: ${String(e.params.additionalProperty)}` : ""}`);
	};
}
