/** .env.example and the README's configuration table are generated from shared/config.ts. */
import fs from "node:fs";
import path from "node:path";
import { envExample, withConfigTable } from "../../scripts/config-docs";

const ROOT = path.resolve(__dirname, "../..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");

describe("generated documentation", () => {
	it(".env.example is up to date (npm run docs:config)", () => {
		expect(read(".env.example")).toBe(envExample());
	});

	it("the README's configuration table is up to date (npm run docs:config)", () => {
		const readme = read("README.md");
		expect(withConfigTable(readme)).toBe(readme);
	});

	it("the README shows the two commands of a fresh clone", () => {
		const readme = read("README.md");
		expect(readme).toContain("npm ci && npm start");
		expect(readme).toContain("npm ci && npm test");
	});
});
