/**
 * Writes deploy/grafana — the ClickHouse data source, the dashboard provider and the dashboards —
 * from services/analytics/grafana.ts: `npm run grafana` after changing a report query or a
 * dashboard (test/integration/grafana.test.ts fails while the files are out of date). Dashboard
 * files the module no longer builds are removed.
 */
import fs from "node:fs";
import path from "node:path";
import { grafanaFiles } from "../services/analytics/grafana";

const ROOT = path.resolve(__dirname, "..");
export const GRAFANA_DIR = path.join(ROOT, "deploy", "grafana");

/** Writes every file; answers the paths written and removed (relative to deploy/grafana). */
export function writeGrafanaFiles(dir = GRAFANA_DIR): { written: string[]; removed: string[] } {
	const files = grafanaFiles();
	for (const [relative, content] of Object.entries(files)) {
		const file = path.join(dir, relative);
		fs.mkdirSync(path.dirname(file), { recursive: true });
		fs.writeFileSync(file, content);
	}
	const dashboards = path.join(dir, "dashboards");
	const removed = fs
		.readdirSync(dashboards)
		.filter(name => name.endsWith(".json") && !(`dashboards/${name}` in files))
		.map(name => {
			fs.rmSync(path.join(dashboards, name));
			return `dashboards/${name}`;
		});
	return { written: Object.keys(files), removed };
}

if (require.main === module) {
	const { written, removed } = writeGrafanaFiles();
	for (const file of written) console.log(`wrote deploy/grafana/${file}`);
	for (const file of removed) console.log(`removed deploy/grafana/${file}`);
}
