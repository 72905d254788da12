/**
 * Services talk through shared/contracts, never by importing each other: a service file
 * (services/<name>.service.ts) and its folder (services/<name>/) import only packages, shared/,
 * mixins/, types/ and their own folder. Read from the source itself, so a new import across the
 * line fails here before it couples two deployables.
 */
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../..");
const SERVICES = path.join(ROOT, "services");
const ALLOWED_ROOTS = ["shared", "mixins", "types"].map(dir => path.join(ROOT, dir));

/** Every module specifier of `import … from "x"`, `export … from "x"`, `import("x")` and `require("x")`. */
function specifiers(source: string): string[] {
	const found: string[] = [];
	const patterns = [/\bfrom\s+["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g, /^\s*import\s+["']([^"']+)["']/gm];
	for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1]);
	return found;
}

function serviceFiles(): Array<{ file: string; service: string }> {
	const files: Array<{ file: string; service: string }> = [];
	for (const entry of fs.readdirSync(SERVICES, { withFileTypes: true })) {
		if (entry.isFile() && entry.name.endsWith(".service.ts")) files.push({ file: path.join(SERVICES, entry.name), service: entry.name.replace(/\.service\.ts$/, "") });
		if (entry.isDirectory()) {
			const walk = (dir: string): void => {
				for (const inner of fs.readdirSync(dir, { withFileTypes: true })) {
					const full = path.join(dir, inner.name);
					if (inner.isDirectory()) walk(full);
					else if (inner.name.endsWith(".ts")) files.push({ file: full, service: entry.name });
				}
			};
			walk(path.join(SERVICES, entry.name));
		}
	}
	return files;
}

/** The imports of a file that leave its service: another service's file or folder, or anything outside the allowed roots. */
export function crossings(file: string, service: string, source: string): string[] {
	const own = path.join(SERVICES, service);
	return specifiers(source).filter(spec => {
		if (!spec.startsWith(".")) return false; // a package
		const target = path.resolve(path.dirname(file), spec);
		if (target === own || target.startsWith(own + path.sep)) return false;
		return !ALLOWED_ROOTS.some(root => target === root || target.startsWith(root + path.sep));
	});
}

describe("service boundaries", () => {
	const files = serviceFiles();

	it("finds the services and their folders", () => {
		const names = new Set(files.map(f => f.service));
		for (const name of ["api", "auth", "devices", "media", "notifications", "scheduling", "tenants"]) expect(names).toContain(name);
	});

	it("no service file or folder imports another service", () => {
		const offending = files.flatMap(({ file, service }) =>
			crossings(file, service, fs.readFileSync(file, "utf8")).map(spec => `${path.relative(ROOT, file)} imports ${spec}`)
		);
		expect(offending).toEqual([]);
	});

	it("would catch the imports it forbids", () => {
		const file = path.join(SERVICES, "auth.service.ts");
		const source = [
			'import { tenantSummary } from "./tenants.service";',
			'import type { Presence } from "./devices/presence";',
			'export { x } from "../services/media.service";',
			'const lazy = () => import("./scheduling/views");',
			'import { call } from "../shared/contracts";',
			'import { hashToken } from "../shared/secrets";',
			'import { sessions } from "./auth/sessions";',
			'import { ServiceBroker } from "moleculer";'
		].join("\n");
		expect(crossings(file, "auth", source)).toEqual(["./tenants.service", "./devices/presence", "../services/media.service", "./scheduling/views"]);
	});
});
