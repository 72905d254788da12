/**
 * Writes `.env.example` and the configuration table of README.md (between the
 * `<!-- config:start -->` and `<!-- config:end -->` markers) from shared/config.ts's VARIABLES.
 * `npm run docs:config` after adding a variable; a unit test fails when they are out of date.
 */
import fs from "node:fs";
import path from "node:path";
import { VARIABLES } from "../shared/config";

const ROOT = path.resolve(__dirname, "..");
export const START = "<!-- config:start -->";
export const END = "<!-- config:end -->";

export function envExample(): string {
	const lines = ["# Marquee configuration. Every variable is optional in the embedded mode; see README.md.", ""];
	for (const v of VARIABLES) {
		lines.push(`# ${v.description.replace(/`/g, "")}`);
		lines.push(`${v.example ? "" : "# "}${v.name}=${v.example}`);
	}
	return lines.join("\n") + "\n";
}

export function configTable(): string {
	const rows = VARIABLES.map(v => `| \`${v.name}\` | ${v.example ? `\`${v.example}\`` : "—"} | ${v.description} |`);
	return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}

export function withConfigTable(readme: string): string {
	const start = readme.indexOf(START);
	const end = readme.indexOf(END);
	if (start < 0 || end < start) throw new Error(`README.md has no ${START} … ${END} section`);
	return `${readme.slice(0, start + START.length)}\n${configTable()}\n${readme.slice(end)}`;
}

if (require.main === module) {
	fs.writeFileSync(path.join(ROOT, ".env.example"), envExample());
	const readmePath = path.join(ROOT, "README.md");
	fs.writeFileSync(readmePath, withConfigTable(fs.readFileSync(readmePath, "utf8")));
	console.log("wrote .env.example and the README configuration table");
}
