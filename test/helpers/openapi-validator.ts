import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";

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
