/**
 * The one escaping helper (services/analytics/sql.ts). Its round trip through real engines is in
 * test/integration/analytics-store.test.ts; these are the exact texts it writes.
 */
import { ident, join, numberLiteral, quote, sql, wellFormed } from "../../services/analytics/sql";

describe("quote", () => {
	it("escapes backslash, quote and control characters, so a literal is one line that ends where it should", () => {
		expect(quote("plain")).toBe("'plain'");
		expect(quote("it's")).toBe("'it\\'s'");
		expect(quote("a\\")).toBe("'a\\\\'");
		expect(quote("\\'")).toBe("'\\\\\\''");
		expect(quote("x' OR '1'='1")).toBe("'x\\' OR \\'1\\'=\\'1'");
		expect(quote("line\nbreak\r\ttab\0nul\bback\fform")).toBe("'line\\nbreak\\r\\ttab\\0nul\\bback\\fform'");
		expect(quote("日本語 😀")).toBe("'日本語 😀'");
	});

	it("replaces lone surrogates (no UTF-8 form) and keeps pairs", () => {
		expect(wellFormed("a\uD800b")).toBe("a\uFFFDb");
		expect(wellFormed("\uDC00")).toBe("\uFFFD");
		expect(wellFormed("😀")).toBe("😀");
		expect(quote("\uD83D")).toBe("'\uFFFD'");
	});
});

describe("sql`…`", () => {
	it("quotes strings, writes numbers and booleans, lists and NULL, and embeds Sql pieces as they are", () => {
		const q = sql`SELECT * FROM t WHERE a = ${"x'y"} AND b = ${42} AND c = ${1.5} AND d = ${true} AND e IN ${["p", "q"]} AND f = ${null} ${sql`AND g = ${"z"}`}`;
		expect(q.text).toBe("SELECT * FROM t WHERE a = 'x\\'y' AND b = 42 AND c = 1.5 AND d = 1 AND e IN ('p', 'q') AND f = NULL AND g = 'z'");
	});

	it("writes an empty list as one nothing matches, never as a syntax error", () => {
		expect(sql`x IN ${[]}`.text).toBe("x IN (NULL)");
	});

	it("refuses values that are not finite numbers or plain values", () => {
		expect(() => sql`${Number.NaN}`).toThrow(TypeError);
		expect(() => sql`${Infinity}`).toThrow(TypeError);
		expect(() => numberLiteral(-Infinity)).toThrow(TypeError);
		expect(() => sql`${{ toString: () => "1; DROP TABLE t" } as unknown as string}`).toThrow(TypeError);
	});

	it("joins pieces, with a fallback for none", () => {
		expect(join([sql`a = ${1}`, sql`b = ${"2"}`], " AND ").text).toBe("a = 1 AND b = '2'");
		expect(join([], " AND ", "1").text).toBe("1");
	});
});

describe("ident", () => {
	it("takes code-made names and refuses anything else", () => {
		expect(ident("playback_events").text).toBe("playback_events");
		for (const bad of ["", "1table", "a-b", "a b", "t; DROP", "t`", "t'", "x".repeat(65), "naïve"]) expect(() => ident(bad)).toThrow(TypeError);
	});
});
