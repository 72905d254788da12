/**
 * The one place SQL text is built from values. ClickHouse 18.16 (CI) has no server-side query
 * parameters, so every value is written into the statement here — as a quoted string literal,
 * a checked number, or an identifier from a fixed alphabet — and nowhere else. Statements are
 * `Sql` values made by the `sql` template tag; a plain string never becomes SQL by accident
 * (interpolating one quotes it). test/unit/analytics-sql.test.ts feeds this hostile strings.
 */

/** A piece of SQL text whose values have been escaped. */
export class Sql {
	constructor(readonly text: string) {}
	toString(): string {
		return this.text;
	}
}

/** What may be interpolated: values are escaped, `Sql` pieces are embedded as they are. */
export type SqlValue = string | number | boolean | null | Sql | readonly (string | number)[];

const ESCAPES: Record<string, string> = { "\\": "\\\\", "'": "\\'", "\0": "\\0", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The string with each lone UTF-16 surrogate (no UTF-8 form) replaced by U+FFFD. */
export function wellFormed(value: string): string {
	return value.replace(LONE_SURROGATE, "\uFFFD");
}

/**
 * A ClickHouse string literal. Backslash and quote are escaped (ClickHouse reads C-style escapes
 * in single-quoted strings), control characters too so a literal is always one line; a lone
 * UTF-16 surrogate becomes U+FFFD (it has no UTF-8 form).
 */
export function quote(value: string): string {
	return `'${wellFormed(value).replace(/[\\'\0\n\r\t\b\f]/g, (c: string) => ESCAPES[c])}'`;
}

/** A number literal; anything but a finite number is a programming error, never SQL. */
export function numberLiteral(value: number): string {
	if (!Number.isFinite(value)) throw new TypeError(`Not a finite number: ${value}`);
	return Number.isInteger(value) ? value.toFixed(0) : String(value);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A table or column name from the code (never from a request): letters, digits, underscore. */
export function ident(name: string): Sql {
	if (!IDENTIFIER.test(name)) throw new TypeError(`Not an identifier: ${JSON.stringify(name)}`);
	return new Sql(name);
}

function literal(value: SqlValue): string {
	if (value instanceof Sql) return value.text;
	if (value === null) return "NULL";
	if (typeof value === "string") return quote(value);
	if (typeof value === "number") return numberLiteral(value);
	if (typeof value === "boolean") return value ? "1" : "0";
	if (Array.isArray(value)) {
		// An empty list would be a syntax error; a list nothing matches keeps `x IN (...)` false.
		if (value.length === 0) return "(NULL)";
		return `(${value.map(v => literal(v)).join(", ")})`;
	}
	throw new TypeError(`Cannot write ${typeof value} into SQL`);
}

/** sql`SELECT … WHERE tenant_id = ${tenantId}`: a statement with every value escaped. */
export function sql(strings: TemplateStringsArray, ...values: SqlValue[]): Sql {
	let text = strings[0];
	for (let i = 0; i < values.length; i++) text += literal(values[i]) + strings[i + 1];
	return new Sql(text);
}

/** Joins pieces with a separator (`AND`, `, `); an empty list gives `empty`. */
export function join(pieces: readonly Sql[], separator: string, empty = ""): Sql {
	return new Sql(pieces.length ? pieces.map(p => p.text).join(separator) : empty);
}

/** A string column may hold any text; control characters never reach the JSON we insert as raw. */
export function cleanText(value: string | null | undefined, max = 1000): string {
	return wellFormed(value ?? "").slice(0, max);
}
