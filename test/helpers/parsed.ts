/**
 * Narrowing for parsed YAML and JSON, which is `unknown` until checked: each helper answers the
 * value as the type it names or throws, naming where in the document it looked.
 */
export type Mapping = Record<string, unknown>;

export function isMapping(value: unknown): value is Mapping {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function mapping(value: unknown, where: string): Mapping {
	if (!isMapping(value)) throw new Error(`${where}: expected a mapping, got ${JSON.stringify(value)}`);
	return value;
}

export function list(value: unknown, where: string): unknown[] {
	if (!Array.isArray(value)) throw new Error(`${where}: expected a list, got ${JSON.stringify(value)}`);
	return value;
}

export function text(value: unknown, where: string): string {
	if (typeof value !== "string") throw new Error(`${where}: expected a string, got ${JSON.stringify(value)}`);
	return value;
}
