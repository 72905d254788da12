/**
 * One summary line per abuse, race, restart or fuzz suite: printed, and appended to the file
 * named by MARQUEE_TEST_REPORT when set, so `.ci/run` can show the counts after jest's output.
 */
import fs from "node:fs";

export function reportLine(line: string): void {
	console.log(line);
	const file = process.env.MARQUEE_TEST_REPORT;
	if (file) fs.appendFileSync(file, `${line}\n`);
}
