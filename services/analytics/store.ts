/**
 * The analytics store: one interface over two real ClickHouse engines, so the service, its
 * migrations and its queries never know which one runs.
 *
 * - `ClickHouseHttpStore`: a ClickHouse server over its HTTP interface (`CLICKHOUSE_URL`), the
 *   production and CI backend. Values are written into the SQL by sql.ts, never sent as
 *   server-side parameters (18.16 has none).
 * - `ChdbStore`: chDB, ClickHouse in-process (the optional npm package `chdb`), with its data
 *   under `DATA_DIR/analytics`: the embedded default.
 *
 * Both answer rows as JSONEachRow with 64-bit integers unquoted, so both give identical values
 * to the same query. A store that cannot be reached throws `StoreUnavailable` (503 to clients).
 */
import fs from "node:fs";
import path from "node:path";
import type { Sql } from "./sql";

export type StoreKind = "clickhouse" | "chdb";

export interface AnalyticsStore {
	readonly kind: StoreKind;
	/** A statement with no answer (DDL, ALTER, INSERT … SELECT). */
	exec(statement: Sql): Promise<void>;
	/** A query's rows, one object per row. */
	rows<T extends object>(query: Sql): Promise<T[]>;
	/** Inserts rows (JSONEachRow) into a table; resolves once ClickHouse accepted all of them. */
	insert(table: string, rows: readonly object[]): Promise<void>;
	/** Whether the engine answers now. */
	ping(): Promise<boolean>;
	close(): Promise<void>;
}

/** The engine cannot be reached (down, restarting, or not configured): retry later. */
export class StoreUnavailable extends Error {
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = "StoreUnavailable";
	}
}

/** A query ClickHouse stopped for its cost: over the memory limit (241) or the time limit (159). */
export class QueryTooHeavy extends Error {
	constructor(message: string) {
		super(message);
		this.name = "QueryTooHeavy";
	}
}

const TOO_HEAVY = /Code: (241|159)\b/;

/** A ClickHouse error as the store's: too heavy, or an error of ours as it is. */
function classified(err: unknown): unknown {
	const message = String((err as Error)?.message ?? err);
	return TOO_HEAVY.test(message) ? new QueryTooHeavy(message.slice(0, 300)) : err;
}

/** Settings every query runs with, on both backends. */
const QUERY_SETTINGS: Record<string, string> = {
	output_format_json_quote_64bit_integers: "0",
	// A group of many thousand displays is a long `display_id IN (…)` list (the default is 256 KiB).
	max_query_size: "16777216",
	// A report is bounded by its params; this bounds it by work too.
	max_execution_time: "60",
	// A deduplicating GROUP BY over many millions of plays spills to disk instead of failing.
	max_bytes_before_external_group_by: "1000000000"
};

function jsonLines<T>(text: string): T[] {
	const rows: T[] = [];
	for (const line of text.split("\n")) if (line) rows.push(JSON.parse(line) as T);
	return rows;
}

function jsonEachRow(rows: readonly object[]): string {
	return rows.map(row => JSON.stringify(row)).join("\n");
}

// ---- ClickHouse server over HTTP -------------------------------------------------------------

export interface HttpStoreOptions {
	/** `http(s)://user:pass@host:8123/database` */
	url: string;
	timeoutMs?: number;
}

export class ClickHouseHttpStore implements AnalyticsStore {
	readonly kind = "clickhouse" as const;
	readonly database: string;
	private readonly origin: string;
	private readonly headers: Record<string, string>;
	private readonly timeoutMs: number;

	constructor(options: HttpStoreOptions) {
		const url = new URL(options.url);
		this.origin = url.origin;
		this.database = decodeURIComponent(url.pathname.replace(/^\/+|\/+$/g, "")) || "default";
		// Credentials travel as headers (never in a URL a proxy or log might keep).
		this.headers = { "X-ClickHouse-User": decodeURIComponent(url.username) || "default" };
		if (url.password) this.headers["X-ClickHouse-Key"] = decodeURIComponent(url.password);
		this.timeoutMs = options.timeoutMs ?? 60_000;
	}

	/** Creates the database the URL names (the migrations run inside it). */
	async ensureDatabase(): Promise<void> {
		if (this.database === "default") return;
		await this.request(`CREATE DATABASE IF NOT EXISTS ${this.database.replace(/[^A-Za-z0-9_]/g, "")}`, null, false);
	}

	async exec(statement: Sql): Promise<void> {
		await this.request(statement.text, null);
	}

	async rows<T extends object>(query: Sql): Promise<T[]> {
		return jsonLines<T>(await this.request(`${query.text}\nFORMAT JSONEachRow`, null));
	}

	async insert(table: string, rows: readonly object[]): Promise<void> {
		if (!rows.length) return;
		await this.request(`INSERT INTO ${table} FORMAT JSONEachRow`, jsonEachRow(rows));
	}

	async ping(): Promise<boolean> {
		try {
			const res = await fetch(`${this.origin}/ping`, { signal: AbortSignal.timeout(2000) });
			await res.text();
			return res.ok;
		} catch {
			return false;
		}
	}

	async close(): Promise<void> {}

	/** One statement: the query in the URL when a body carries data, else the query as the body. */
	private async request(query: string, data: string | null, inDatabase = true): Promise<string> {
		const params = new URLSearchParams(QUERY_SETTINGS);
		if (inDatabase) params.set("database", this.database);
		if (data !== null) params.set("query", query);
		let res: Response;
		try {
			res = await fetch(`${this.origin}/?${params}`, {
				method: "POST",
				headers: this.headers,
				body: data ?? query,
				signal: AbortSignal.timeout(this.timeoutMs)
			});
		} catch (err) {
			throw new StoreUnavailable(`ClickHouse at ${this.origin} cannot be reached`, { cause: err });
		}
		const text = await res.text().catch(err => {
			throw new StoreUnavailable(`ClickHouse at ${this.origin} broke off its answer`, { cause: err });
		});
		if (!res.ok) {
			// 5xx that says the server is going away or overloaded is an outage; anything else is our bug.
			if (res.status === 503 || /TOO_MANY_SIMULTANEOUS_QUERIES|shutdown/i.test(text)) throw new StoreUnavailable(`ClickHouse is unavailable: ${text.slice(0, 200)}`);
			throw classified(new Error(`ClickHouse answered ${res.status}: ${text.slice(0, 500)}`));
		}
		return text;
	}
}

// ---- chDB, in-process ------------------------------------------------------------------------

/** The part of the `chdb` package this uses (it is an optional dependency: no type import). */
interface ChdbSession {
	queryAsync(query: string, opts?: { format?: string }): Promise<{ text(): string }>;
	insert(params: { table: string; values: Buffer; format: "JSONEachRow" }): Promise<unknown>;
	close(): void;
}
interface ChdbModule {
	Session: new (path: string, opts?: { connectionArgs?: readonly string[] }) => ChdbSession;
}

/** chDB's module when the optional dependency is installed, else null (and why). */
export function loadChdb(): { module: ChdbModule | null; reason: string | null } {
	try {
		// eslint-disable-next-line @typescript-eslint/no-require-imports -- an optional dependency, loaded only when present
		return { module: require("chdb") as ChdbModule, reason: null };
	} catch (err) {
		return { module: null, reason: `the optional dependency chdb is not installed (${(err as Error).message.split("\n")[0]})` };
	}
}

/** What a chDB query carries in its SETTINGS clause (the parser's own setting is set for the session). */
const CHDB_QUERY_SETTINGS = Object.entries(QUERY_SETTINGS)
	.filter(([name]) => name !== "max_query_size")
	.map(([name, value]) => `${name} = ${value}`)
	.join(", ");

/**
 * chDB serves one data directory per process: every store of the process on that directory
 * shares one session (closed when the last lets go); another directory is refused.
 */
let shared: { dir: string; session: ChdbSession; users: number } | null = null;

export class ChdbStore implements AnalyticsStore {
	readonly kind = "chdb" as const;
	private session: ChdbSession | null;

	private constructor(
		session: ChdbSession,
		readonly dir: string
	) {
		this.session = session;
	}

	/** A store on `dir` (created when missing); throws when this process has another directory open. */
	static open(chdb: ChdbModule, dir: string): ChdbStore {
		const resolved = path.resolve(dir);
		if (shared && shared.dir !== resolved) throw new Error(`chDB serves one data directory per process and ${shared.dir} is open`);
		if (!shared) {
			fs.mkdirSync(resolved, { recursive: true });
			shared = { dir: resolved, session: new chdb.Session(resolved), users: 0 };
			// The query size is read while parsing, before a query's own SETTINGS: set for the session.
			void shared.session.queryAsync(`SET max_query_size = ${QUERY_SETTINGS.max_query_size}`).catch(() => undefined);
		}
		shared.users++;
		return new ChdbStore(shared.session, resolved);
	}

	/**
	 * Another handle on the chDB session this process has open (the analytics service's), or null
	 * when there is none. The backup snapshot exports through it (chDB's data directory belongs
	 * to this process); the session stays open until this handle is closed too.
	 */
	static current(): ChdbStore | null {
		if (!shared) return null;
		shared.users++;
		return new ChdbStore(shared.session, shared.dir);
	}

	private live(): ChdbSession {
		if (!this.session) throw new StoreUnavailable("The embedded analytics store is closed");
		return this.session;
	}

	async exec(statement: Sql): Promise<void> {
		await this.live().queryAsync(statement.text);
	}

	async rows<T extends object>(query: Sql): Promise<T[]> {
		// Settings ride along with each query (a chDB session keeps no per-query settings).
		const text = `${query.text}\nSETTINGS ${CHDB_QUERY_SETTINGS}`;
		try {
			return jsonLines<T>((await this.live().queryAsync(text, { format: "JSONEachRow" })).text());
		} catch (err) {
			throw classified(err);
		}
	}

	async insert(table: string, rows: readonly object[]): Promise<void> {
		if (!rows.length) return;
		await this.live().insert({ table, values: Buffer.from(jsonEachRow(rows)), format: "JSONEachRow" });
	}

	async ping(): Promise<boolean> {
		return this.session !== null;
	}

	async close(): Promise<void> {
		if (!this.session) return;
		this.session = null;
		if (shared && --shared.users === 0) {
			shared.session.close();
			shared = null;
		}
	}
}
