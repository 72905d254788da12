/**
 * Every report as one SQL statement, answered by ClickHouse's aggregates (Node receives the
 * result rows, never the events). Each takes a `Window`: the tenant and the time bounds as SQL
 * values — escaped literals when the service runs them, Grafana variables when the dashboards
 * do (grafana.ts builds the provisioned dashboards from these same functions).
 *
 * Replays never double count: the events of a display are deduplicated by `event_id` at query
 * time (the inner GROUP BY), so a batch posted twice, or one event in two batches, counts once
 * whatever the merges have or have not done.
 */
import { join, Sql, sql, type SqlValue } from "./sql";

/** A tenant's slice of time, `[from, to)` in epoch milliseconds. */
export interface Window {
	tenantId: SqlValue;
	from: SqlValue;
	to: SqlValue;
}

export interface PlaybackFilter {
	displayIds?: readonly string[];
	contentId?: string;
	groupId?: string;
}

export const PLAYBACK_GROUPINGS = ["content", "display", "group", "hour", "day"] as const;
export type PlaybackGrouping = (typeof PLAYBACK_GROUPINGS)[number];

/** ClickHouse's DateTime of an epoch-millisecond column, in a timezone. */
function dateTime(column: string, timezone: SqlValue): Sql {
	return sql`toDateTime(intDiv(${new Sql(column)}, 1000), ${timezone})`;
}

function playbackWhere(w: Window, f: PlaybackFilter): Sql {
	const conditions = [sql`tenant_id = ${w.tenantId}`, sql`started_at >= ${w.from}`, sql`started_at < ${w.to}`];
	if (f.displayIds) conditions.push(sql`display_id IN ${f.displayIds}`);
	if (f.contentId !== undefined) conditions.push(sql`content_id = ${f.contentId}`);
	if (f.groupId !== undefined) conditions.push(sql`has(group_ids, ${f.groupId})`);
	return join(conditions, " AND ");
}

/** One row per event: replays of an `event_id` by the same display collapse into one. */
function distinctPlays(w: Window, f: PlaybackFilter): Sql {
	// `e_` names: an alias equal to a column would replace that column in WHERE.
	return sql`SELECT display_id, event_id,
			any(display_name) AS e_display_name, any(content_id) AS e_content_id, any(content_name) AS e_content_name,
			any(group_ids) AS e_group_ids, any(group_names) AS e_group_names,
			any(started_at) AS e_started_at, any(duration_ms) AS e_duration_ms, any(completed) AS e_completed
		FROM playback_events WHERE ${playbackWhere(w, f)}
		GROUP BY display_id, event_id`;
}

interface Grouping {
	key: Sql;
	name: Sql;
	arrayJoin?: Sql;
	order: Sql;
}

function grouping(by: PlaybackGrouping, timezone: SqlValue): Grouping {
	const byPlays = sql`plays DESC, key`;
	switch (by) {
		case "content":
			return { key: sql`e_content_id`, name: sql`argMaxIf(e_content_name, e_started_at, e_content_name != '')`, order: byPlays };
		case "display":
			return { key: sql`display_id`, name: sql`argMaxIf(e_display_name, e_started_at, e_display_name != '')`, order: byPlays };
		case "group":
			// A play counts for every group its display was in when it played.
			return { key: sql`group_id`, name: sql`argMax(group_name, e_started_at)`, arrayJoin: sql`ARRAY JOIN e_group_ids AS group_id, e_group_names AS group_name`, order: byPlays };
		case "hour":
			return { key: sql`toString(toUInt64(toStartOfHour(${dateTime("e_started_at", timezone)})) * 1000)`, name: sql`''`, order: sql`key` };
		case "day":
			return { key: sql`toString(toDate(${dateTime("e_started_at", timezone)}, ${timezone}))`, name: sql`''`, order: sql`key` };
	}
}

/**
 * Plays grouped by content, display, group, hour or day (hours and days in `timezone`): plays,
 * total and average duration, share of plays that ran to their end.
 */
export function playbackReport(w: Window, f: PlaybackFilter, by: PlaybackGrouping, timezone: SqlValue, limit: SqlValue): Sql {
	const g = grouping(by, timezone);
	return sql`SELECT ${g.key} AS key, ${g.name} AS name,
			count() AS plays, sum(e_duration_ms) AS durationMs,
			toUInt64(round(avg(e_duration_ms))) AS avgDurationMs, round(avg(e_completed), 4) AS completionRate
		FROM (${distinctPlays(w, f)}) ${g.arrayJoin ?? sql``}
		GROUP BY key ORDER BY ${g.order} LIMIT ${limit}`;
}

/** Totals of the same range (the report's footer, and the dashboards' single stats). */
export function playbackTotals(w: Window, f: PlaybackFilter): Sql {
	return sql`SELECT count() AS plays, sum(e_duration_ms) AS durationMs, uniqExact(display_id) AS displays, uniqExact(e_content_id) AS contents
		FROM (${distinctPlays(w, f)})`;
}

/** The key of the row after which an export chunk continues. */
export interface ExportCursor {
	startedAt: number;
	displayId: string;
	eventId: string;
}

/** One chunk of the raw events, in (started_at, display_id, event_id) order after `cursor`. */
export function playbackExportChunk(w: Window, f: PlaybackFilter, cursor: ExportCursor | null, limit: number): Sql {
	const after = cursor
		? sql`AND (started_at > ${cursor.startedAt} OR (started_at = ${cursor.startedAt} AND (display_id > ${cursor.displayId} OR (display_id = ${cursor.displayId} AND event_id > ${cursor.eventId}))))`
		: sql``;
	return sql`SELECT started_at, display_id, event_id,
			any(display_name) AS e_display_name, any(content_id) AS e_content_id, any(content_name) AS e_content_name,
			any(playlist_id) AS e_playlist_id, any(schedule_id) AS e_schedule_id,
			any(duration_ms) AS e_duration_ms, any(completed) AS e_completed, any(received_at) AS e_received_at
		FROM playback_events WHERE ${playbackWhere(w, f)} ${after}
		GROUP BY started_at, display_id, event_id
		ORDER BY started_at, display_id, event_id LIMIT ${limit}`;
}

/**
 * Uptime per display over `[from, end)` from its online/offline transitions: the state at
 * `from` is the last transition before it (unknown when there is none: that time counts as
 * neither), each transition holds until the next one or `end`. Answers online and offline
 * milliseconds and the offline stretches (the newest `maxOutages`).
 */
export function uptimeReport(w: Window, end: SqlValue, displayIds: readonly string[] | undefined, limit: SqlValue, maxOutages = 100): Sql {
	const only = displayIds ? sql`AND display_id IN ${displayIds}` : sql``;
	return sql`SELECT displayId, name, onlineMs, offlineMs,
			if(onlineMs + offlineMs = 0, NULL, round(onlineMs * 100 / (onlineMs + offlineMs), 2)) AS uptimePct,
			arraySlice(arrayFilter(o -> o.3 = 0 AND o.2 > o.1, arrayMap((t, e, s) -> (t, e, s), times, ends, states)), -${maxOutages}) AS outages
		FROM (
			SELECT displayId, name, times, states, ends,
				arraySum(arrayMap((t, e, s) -> if(s = 1, e - t, 0), times, ends, states)) AS onlineMs,
				arraySum(arrayMap((t, e, s) -> if(s = 0, e - t, 0), times, ends, states)) AS offlineMs
			FROM (
				SELECT displayId, name,
					arrayConcat([toUInt64(${w.from})], arrayMap(c -> c.1, changes)) AS times,
					arrayConcat([initial], arrayMap(c -> c.2, changes)) AS states,
					arrayConcat(arrayMap(c -> c.1, changes), [toUInt64(${end})]) AS ends
				FROM (
					SELECT display_id AS displayId,
						argMaxIf(e_display_name, ts, e_display_name != '') AS name,
						if(countIf(ts < ${w.from}) > 0, toUInt8(argMaxIf(online, ts, ts < ${w.from})), toUInt8(2)) AS initial,
						arraySort(c -> c.1, groupArrayIf((ts, online), ts >= ${w.from})) AS changes
					FROM (
						SELECT display_id, ts, online, any(display_name) AS e_display_name
						FROM display_status WHERE tenant_id = ${w.tenantId} AND ts < ${end} ${only}
						GROUP BY display_id, ts, online
					)
					GROUP BY display_id
				)
			)
		)
		ORDER BY isNull(uptimePct), uptimePct, displayId LIMIT ${limit}`;
}

export const HEALTH_INTERVALS = { "5m": "toStartOfFiveMinute", "1h": "toStartOfHour", "1d": "toStartOfDay" } as const;
export type HealthInterval = keyof typeof HEALTH_INTERVALS;
export const HEALTH_INTERVAL_MS: Record<HealthInterval, number> = { "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000 };

/** Averages of the displays' metrics per 5 minutes, hour or day (days in `timezone`). */
export function healthSeries(w: Window, displayIds: readonly string[] | undefined, interval: HealthInterval, timezone: SqlValue, limit: SqlValue): Sql {
	const only = displayIds ? sql`AND display_id IN ${displayIds}` : sql``;
	const bucket = new Sql(HEALTH_INTERVALS[interval]);
	return sql`SELECT toUInt64(${bucket}(${dateTime("ts", timezone)})) * 1000 AS bucket,
			round(avg(e_cpu), 2) AS cpu, round(avg(e_memory), 2) AS memory, round(avg(e_disk), 2) AS disk, round(avg(e_temperature), 2) AS temperature,
			uniqExact(display_id) AS displays
		FROM (
			SELECT display_id, ts, any(cpu) AS e_cpu, any(memory) AS e_memory, any(disk) AS e_disk, any(temperature) AS e_temperature
			FROM device_health WHERE tenant_id = ${w.tenantId} AND ts >= ${w.from} AND ts < ${w.to} ${only}
			GROUP BY display_id, ts
		)
		GROUP BY bucket ORDER BY bucket LIMIT ${limit}`;
}

export interface AuditFilter {
	action?: string;
	/** `display.` matches every action starting with it (the filter ended in `*`). */
	actionPrefix?: string;
	actorId?: string;
}

function auditWhere(w: Window, f: AuditFilter): Sql {
	const conditions = [sql`tenant_id = ${w.tenantId}`, sql`ts >= ${w.from}`, sql`ts < ${w.to}`];
	if (f.action !== undefined) conditions.push(sql`action = ${f.action}`);
	if (f.actionPrefix !== undefined) conditions.push(sql`substring(action, 1, ${Buffer.byteLength(f.actionPrefix)}) = ${f.actionPrefix}`);
	if (f.actorId !== undefined) conditions.push(sql`actor_id = ${f.actorId}`);
	return join(conditions, " AND ");
}

/** One page of audit records, newest first; a record delivered twice is listed once. */
export function auditPage(w: Window, f: AuditFilter, offset: number, limit: number): Sql {
	return sql`SELECT id, ts, actor_kind, actor_id, action, target, ip, request_id, data
		FROM audit_events WHERE ${auditWhere(w, f)}
		ORDER BY ts DESC, id LIMIT 1 BY id LIMIT ${offset}, ${limit}`;
}

export function auditCount(w: Window, f: AuditFilter): Sql {
	return sql`SELECT uniqExact(id) AS total FROM audit_events WHERE ${auditWhere(w, f)}`;
}

/** Every audit record of a tenant, for its GDPR export (newest first, at most `limit`). */
export function auditExport(tenantId: string, limit: number): Sql {
	return sql`SELECT id, ts, actor_kind, actor_id, action, target, ip, request_id, data
		FROM audit_events WHERE tenant_id = ${tenantId}
		ORDER BY ts DESC, id LIMIT 1 BY id LIMIT ${limit}`;
}
