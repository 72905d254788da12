/**
 * Runs one suite on every analytics backend: chDB in-process (always; it is a dependency of the
 * tests) and a ClickHouse server (whenever one is reachable: Debian's 18.16 in CI), each in a
 * fresh place (a temp data directory, a new database) that is removed after.
 *
 *   describeOnEveryStore("playback reports", open => { let store; beforeAll(async () => { store = await open(); }); ... });
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ident, sql } from "../../services/analytics/sql";
import { ChdbStore, ClickHouseHttpStore, loadChdb, type AnalyticsStore } from "../../services/analytics/store";
import { clickhouseServer, describeWith, requireServer } from "./servers";

/** Opens the suite's store; the helper closes and removes it after the suite. */
export type OpenStore = () => Promise<AnalyticsStore>;

export function describeOnEveryStore(name: string, suite: (open: OpenStore, backend: string) => void): void {
	describe(`${name} on chDB (in-process)`, () => {
		let dir: string | null = null;
		let store: AnalyticsStore | null = null;
		afterAll(async () => {
			await store?.close();
			if (dir) fs.rmSync(dir, { recursive: true, force: true });
		});
		suite(async () => {
			const chdb = loadChdb();
			if (!chdb.module) throw new Error(`chdb is a dependency of the tests: ${chdb.reason}`);
			dir = fs.mkdtempSync(path.join(os.tmpdir(), "marquee-chdb-"));
			store = ChdbStore.open(chdb.module, dir);
			return store;
		}, "chDB");
	});

	describeWith("clickhouse")(`${name} on a ClickHouse server (HTTP)`, () => {
		const database = `marquee_test_${process.pid}_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
		let store: ClickHouseHttpStore | null = null;
		afterAll(async () => {
			await store?.exec(sql`DROP DATABASE IF EXISTS ${ident(database)}`);
			await store?.close();
		});
		suite(async () => {
			const server = await requireServer(clickhouseServer());
			store = new ClickHouseHttpStore({ url: `${server.url}/${database}` });
			await store.ensureDatabase();
			return store;
		}, "ClickHouse server");
	});
}
