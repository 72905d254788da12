/**
 * The analytics schema as numbered migrations, applied in order and recorded in
 * `schema_migrations`. Every statement is idempotent (IF NOT EXISTS), so a migration that was
 * cut off half way, or two replicas racing past the leader lock, only repeat harmless work.
 *
 * One dialect for ClickHouse 18.16 (CI), 24.x+ (production) and chDB 26.x: times are epoch
 * milliseconds in UInt64 (no DateTime64), months are partitions (retention drops them; no TTL),
 * "no value" is '' for strings (Nullable only for optional metrics). Tenant first in every
 * sort key: each report reads one tenant's slice. Names travel with each row (content, display,
 * groups) so a report outlives the deletion of what it names.
 */
import { Sql, sql } from "./sql";
import type { AnalyticsStore } from "./store";

export interface Migration {
	version: number;
	name: string;
	statements: Sql[];
}

/** The month partition of an epoch-millisecond column. */
const MONTH_OF = (column: string) => new Sql(`toYYYYMM(toDateTime(intDiv(${column}, 1000), 'UTC'))`);

/** The tables whose month partitions retention drops, with the column that dates a row. */
export const DATED_TABLES = {
	playback_events: "started_at",
	device_health: "ts",
	display_status: "ts",
	audit_events: "ts"
} as const;
export type AnalyticsTable = keyof typeof DATED_TABLES;

export const MIGRATIONS: Migration[] = [
	{
		version: 1,
		name: "playback, health, status and audit tables",
		statements: [
			sql`CREATE TABLE IF NOT EXISTS playback_events (
				tenant_id String, display_id String, event_id String,
				display_name String, content_id String, content_name String,
				playlist_id String, schedule_id String,
				group_ids Array(String), group_names Array(String),
				started_at UInt64, duration_ms UInt32, completed UInt8, received_at UInt64
			) ENGINE = MergeTree PARTITION BY ${MONTH_OF("started_at")} ORDER BY (tenant_id, started_at, display_id, event_id)`,
			sql`CREATE TABLE IF NOT EXISTS device_health (
				tenant_id String, display_id String, ts UInt64,
				cpu Nullable(Float32), memory Nullable(Float32), disk Nullable(Float32), temperature Nullable(Float32),
				app_version String, online UInt8
			) ENGINE = MergeTree PARTITION BY ${MONTH_OF("ts")} ORDER BY (tenant_id, display_id, ts)`,
			sql`CREATE TABLE IF NOT EXISTS display_status (
				tenant_id String, display_id String, display_name String, ts UInt64, online UInt8, event_id String
			) ENGINE = MergeTree PARTITION BY ${MONTH_OF("ts")} ORDER BY (tenant_id, display_id, ts)`,
			sql`CREATE TABLE IF NOT EXISTS audit_events (
				tenant_id String, id String, ts UInt64, actor_kind String, actor_id String,
				action String, target String, ip String, request_id String, data String
			) ENGINE = MergeTree PARTITION BY ${MONTH_OF("ts")} ORDER BY (tenant_id, ts, id)`
		]
	},
	{
		version: 2,
		name: "deleted tenants",
		statements: [
			// Rows of a deleted tenant that were still on their way when its rows were deleted are purged later.
			sql`CREATE TABLE IF NOT EXISTS deleted_tenants (tenant_id String, deleted_at UInt64) ENGINE = MergeTree ORDER BY tenant_id`
		]
	}
];

const LEDGER = sql`CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at UInt64) ENGINE = MergeTree ORDER BY version`;

/** Applies the migrations `store` has not recorded yet; answers the versions it applied. */
export async function migrate(store: AnalyticsStore, migrations: readonly Migration[] = MIGRATIONS, now = () => Date.now()): Promise<number[]> {
	await store.exec(LEDGER);
	const done = new Set((await store.rows<{ version: number }>(sql`SELECT DISTINCT version FROM schema_migrations`)).map(r => Number(r.version)));
	const applied: number[] = [];
	for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
		if (done.has(migration.version)) continue;
		for (const statement of migration.statements) await store.exec(statement);
		await store.insert("schema_migrations", [{ version: migration.version, name: migration.name, applied_at: now() }]);
		applied.push(migration.version);
	}
	return applied;
}

/** The versions recorded as applied (tests, and the readiness check's detail). */
export async function appliedVersions(store: AnalyticsStore): Promise<number[]> {
	const rows = await store.rows<{ version: number }>(sql`SELECT DISTINCT version FROM schema_migrations ORDER BY version`);
	return rows.map(r => Number(r.version));
}
