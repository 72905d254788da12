/** CSV cells of the exports and report emails (services/analytics/records.ts). */
import { csvCell, csvLine } from "../../services/analytics/records";

describe("CSV cells", () => {
	it("quotes every text cell, so neither a comma nor a semicolon splits it", () => {
		expect(csvCell("plain")).toBe('"plain"');
		expect(csvCell("a,b")).toBe('"a,b"');
		expect(csvCell("x;=3+4;")).toBe('"x;=3+4;"');
		expect(csvCell('say "hi"')).toBe('"say ""hi"""');
		expect(csvCell("line\nbreak")).toBe('"line\nbreak"');
		expect(csvCell("")).toBe('""');
	});

	it("defuses text a spreadsheet would run as a formula", () => {
		for (const formula of ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"]) expect(csvCell(formula)).toBe(`"'${formula}"`);
		expect(csvCell('=HYPERLINK("http://evil")')).toBe(`"'=HYPERLINK(""http://evil"")"`);
	});

	it("writes numbers and booleans bare, lines with CRLF", () => {
		expect(csvCell(-5)).toBe("-5");
		expect(csvCell(0.75)).toBe("0.75");
		expect(csvCell(false)).toBe("false");
		expect(csvLine(["id", 3, true])).toBe('"id",3,true\r\n');
	});
});
