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

/** Follows `keys` from `value`, failing with the path walked so far when one is missing. */
export function dig(value: unknown, keys: string[], where: string): unknown {
	let current = value;
	let walked = where;
	for (const key of keys) {
		current = mapping(current, walked)[key];
		walked = `${walked}.${key}`;
		if (current === undefined) throw new Error(`${walked} is missing`);
	}
	return current;
}

export function digMapping(value: unknown, keys: string[], where: string): Mapping {
	return mapping(dig(value, keys, where), [where, ...keys].join("."));
}

export function digList(value: unknown, keys: string[], where: string): unknown[] {
	return list(dig(value, keys, where), [where, ...keys].join("."));
}

const QUANTITY_SUFFIX: Record<string, number> = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** A Kubernetes resource quantity ("250m", "512Mi", 2) as a number. */
export function quantity(value: unknown, where: string): number {
	if (typeof value === "number") return value;
	const match = typeof value === "string" ? /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi|Ti)?$/.exec(value) : null;
	if (!match) throw new Error(`${where}: not a Kubernetes quantity: ${JSON.stringify(value)}`);
	return Number(match[1]) * QUANTITY_SUFFIX[match[2] ?? ""];
}
