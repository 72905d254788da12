/**
 * Analytics: proof of play, uptime, screen health and the audit log, stored in and answered by
 * ClickHouse — a server over HTTP (`CLICKHOUSE_URL`, production and CI) or chDB in-process under
 * `DATA_DIR/analytics` (the embedded default; the optional dependency `chdb`). Without either,
 * every route answers 503 and says why, and nothing consumes the channels (their messages wait
 * in JetStream for a replica that can store them).
 *
 * Ingestion: the facts arrive on durable channels — playback batches (POST /device/playback,
 * accepted here and sent on `analytics.playback`), heartbeats (`devices.heartbeat`), online and
 * offline transitions (`devices.display.status`), audit records (`audit.record`). Each handler
 * hands its rows to a Batcher and waits; the message is acknowledged only once ClickHouse took
 * the batch (services/analytics/batcher.ts). Reports deduplicate by event id at query time, so
 * a redelivered message never counts twice (services/analytics/queries.ts). The batchers report
 * the rows they hold per table and each stored row's ingest lag (shared/ops-metrics.ts).
 *
 * Pure parts: sql.ts (the one escaping helper), store.ts (the two backends), migrations.ts,
 * batcher.ts, queries.ts, records.ts (rows ↔ views, CSV), schedules.ts (weekly report emails).
 */
import { Readable } from "node:stream";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ALL_TENANTS, DbMixin, systemScope, tenantCollection, tenantOf, type DbVars } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { AUDIT_CHANNEL, DISPLAY_STATUS_CHANNEL, EMAIL_CHANNEL, HEARTBEAT_CHANNEL, LEGACY_HEARTBEAT_CHANNEL, PLAYBACK_CHANNEL, TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	AuditPage,
	call,
	HEALTH_INTERVAL_NAMES,
	HealthSeries,
	PLAYBACK_GROUP_BY,
	PlaybackAccepted,
	PlaybackReport,
	ReportQueued,
	ReportSchedulePage,
	ReportScheduleView,
	sendToChannel,
	UptimeReport,
	type ActionCtx,
	type ChannelCtx,
	type PlaybackRecord,
	type ReportRange,
	type Result
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { sharedKeyValueStore, withLock, type KeyValueStore } from "../shared/kv";
import { opsGauge, opsHistogram, OPS_METRICS } from "../shared/ops-metrics";
import { takeAttempt, THROTTLES } from "../shared/throttle";
import { startPeriodicJob, type PeriodicJob } from "../shared/periodic";
import { deviceCallerOf, EMAIL_RULE, ISO_INSTANT_RULE, NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import { assertTimezone, canonicalTimezone } from "../shared/time";
import { Batcher } from "./analytics/batcher";
import { DATED_TABLES, migrate } from "./analytics/migrations";
import {
	auditCount,
	auditExport,
	auditPage,
	HEALTH_INTERVAL_MS,
	healthSeries,
	playbackExportChunk,
	playbackReport,
	playbackTotals,
	uptimeReport,
	type AuditFilter,
	type ExportCursor,
	type PlaybackFilter,
	type Window
} from "./analytics/queries";
import {
	auditEntry,
	auditKey,
	auditRow,
	csvLine,
	EXPORT_COLUMNS,
	exportLine,
	healthKey,
	healthRow,
	playbackKey,
	playbackRow,
	playbackRows,
	statusKey,
	statusRow,
	uptimeRow,
	type AuditResultRow,
	type AuditRow,
	type ExportResultRow,
	type HealthRow,
	type PlaybackEventRow,
	type PlaybackResultRow,
	type StatusRow,
	type UptimeResultRow
} from "./analytics/records";
import { lastDue, periodDue, periodLabel, periodStartDate, scheduleView, type Period, type ReportScheduleDoc } from "./analytics/schedules";
import { ident, sql, type Sql } from "./analytics/sql";
import { ChdbStore, ClickHouseHttpStore, loadChdb, QueryTooHeavy, StoreUnavailable, type AnalyticsStore } from "./analytics/store";

const COLLECTIONS = {
	report_schedules: tenantCollection<ReportScheduleDoc>()
};

/** At most this many days between `from` and `to` (API.md). */
const MAX_RANGE_DAYS = 366;
const MAX_PLAYBACK_EVENTS = 500;
/** A display's recently accepted event ids, for the `duplicates` count (reports dedupe over all time). */
const RECENT_EVENTS_KEPT = 1000;
const RECENT_EVENTS_TTL_MS = 15 * 60_000;
/** What a display and a content item are called, cached briefly so a busy fleet does not ask each time. */
const NAME_CACHE_MS = 60_000;
const EXPORT_CHUNK_ROWS = 10_000;
/** The export reads the range a day at a time. */
const EXPORT_SLICE_MS = 86_400_000;
/** Rows of a grouped report (a year of hours is 8 784). */
const MAX_REPORT_ROWS = 10_000;
/** The weekly email's CSV stays under the outbox's and NATS's message limits: the least played rows go first. */
const MAX_REPORT_CSV_BYTES = 900 * 1024;
const MAX_HEALTH_POINTS = 10_000;
const AUDIT_EXPORT_LIMIT = 100_000;
const MAX_REPORT_SCHEDULES = 20;
/** A play may start at most this far in the future (clock drift of a screen). */
const FUTURE_SLACK_MS = 24 * 3_600_000;
/** JetStream redelivers an unacknowledged message after this; the batcher may hold one while ClickHouse is down. */
const CHANNEL_ACK_WAIT_NS = 120 * 1e9;

const RANGE_PARAMS = {
	from: ISO_INSTANT_RULE,
	to: ISO_INSTANT_RULE,
	displayId: { ...ID_RULE, optional: true },
	contentId: { ...ID_RULE, optional: true },
	groupId: { ...ID_RULE, optional: true }
} as const;

/** The first instant retention keeps: the start (UTC) of the month `months` before `now`'s. */
function retentionStart(now: Date, months: number): number {
	return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, 1);
}

/** Durable consumption: many messages in flight (the batcher gathers them), no give-up while ClickHouse is away. */
function channelOptions(maxInFlight: number) {
	return { group: "analytics", maxInFlight, maxRetries: 1_000_000, nats: { consumerOptions: { config: { ack_wait: CHANNEL_ACK_WAIT_NS } } } };
}

interface CachedName<T> {
	value: T;
	until: number;
}

interface AnalyticsSettings extends ServiceSettingSchema {
	rest: string;
	retentionIntervalMs: number;
}

interface AnalyticsVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	kv: KeyValueStore;
	store: AnalyticsStore | null;
	/** Why there is no store, when there is none. */
	unavailable: string | null;
	migration: Promise<void> | null;
	migrated: boolean;
	playbackBatcher: Batcher<PlaybackEventRow>;
	healthBatcher: Batcher<HealthRow>;
	statusBatcher: Batcher<StatusRow>;
	auditBatcher: Batcher<AuditRow>;
	displayNames: Map<string, CachedName<{ name: string; groups: Array<{ id: string; name: string }> }>>;
	contentNames: Map<string, CachedName<string>>;
	retention: PeriodicJob | null;
	reports: PeriodicJob | null;
}

interface AnalyticsMethods {
	requireStore(): AnalyticsStore;
	ensureMigrated(): Promise<void>;
	rows<T extends object>(query: Sql): Promise<T[]>;
	writeRows(table: string, rows: readonly object[]): Promise<void>;
	window(ctx: Context<unknown, RequestMeta>, range: Pick<ReportRange, "from" | "to">): Window & { fromMs: number; toMs: number };
	displaysOf(ctx: Context<ReportRange, RequestMeta>): Promise<string[] | undefined>;
	timezoneOf(tenantId: string, override?: string): Promise<string>;
	describeDisplay(ctx: Context<unknown, RequestMeta>, tenantId: string, displayId: string): Promise<{ name: string; groups: Array<{ id: string; name: string }> }>;
	contentNamesOf(tenantId: string, ids: string[]): Promise<Map<string, string>>;
	dropExpiredPartitions(now?: Date): Promise<string[]>;
	flushChannelBuffers(): Promise<void>;
	purgeTenants(tenantIds: string[]): Promise<void>;
	purgeLeftovers(): Promise<string[]>;
	sendDueReports(now?: Date): Promise<number>;
	mailReport(ctx: Context | null, schedule: ReportScheduleDoc, period: Period): Promise<number>;
}

const AnalyticsService: ServiceSchema<AnalyticsSettings, AnalyticsMethods, AnalyticsVars> = {
	name: "analytics",
	settings: {
		rest: "/",
		retentionIntervalMs: 6 * 3_600_000
	},
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		// ---- the device API ------------------------------------------------------------------

		recordPlayback: {
			rest: "POST /device/playback",
			permission: "device",
			summary: "Proof of play: up to 500 plays; each eventId counts once however often it is sent",
			successStatus: 202,
			response: PlaybackAccepted,
			params: {
				$$strict: true,
				events: {
					type: "array",
					min: 1,
					max: MAX_PLAYBACK_EVENTS,
					items: {
						type: "object",
						strict: true,
						props: {
							eventId: { type: "string", min: 1, max: 128, pattern: /^[\x21-\x7e]+$/, messages: { stringPattern: "must be printable ASCII without spaces (a UUID, say)" } },
							contentId: ID_RULE,
							playlistId: { ...ID_RULE, optional: true },
							scheduleId: { ...ID_RULE, optional: true },
							startedAt: ISO_INSTANT_RULE,
							durationMs: { type: "number", integer: true, min: 0, max: 86_400_000 },
							completed: { type: "boolean", optional: true }
						}
					}
				}
			},
			async handler(ctx: ActionCtx<"analytics.recordPlayback", RequestMeta>): Promise<Result<"analytics.recordPlayback">> {
				this.requireStore();
				const { tenantId, displayId } = deviceCallerOf(ctx.meta);
				const now = Date.now();
				// Plays older than what retention keeps would be dropped at its next run: refused now instead.
				const oldest = retentionStart(new Date(now), this.config.analytics.retentionMonths);
				const fields = [];
				const seen = new Set<string>();
				const events: PlaybackRecord[] = [];
				for (const [i, e] of ctx.params.events.entries()) {
					const startedAt = Date.parse(e.startedAt);
					if (!(startedAt >= oldest && startedAt <= now + FUTURE_SLACK_MS)) {
						fields.push({ field: `events[${i}].startedAt`, message: "is outside the time analytics keeps (or in the future)", type: "range" });
						continue;
					}
					if (seen.has(e.eventId)) continue;
					seen.add(e.eventId);
					events.push({ eventId: e.eventId, contentId: e.contentId, contentName: "", playlistId: e.playlistId ?? null, scheduleId: e.scheduleId ?? null, startedAt, durationMs: e.durationMs, completed: e.completed ?? false });
				}
				if (fields.length) throw Errors.validation(fields);
				const [display, names] = await Promise.all([this.describeDisplay(ctx, tenantId, displayId), this.contentNamesOf(tenantId, [...new Set(events.map(e => e.contentId))])]);
				for (const e of events) e.contentName = names.get(e.contentId) ?? "";
				// On the channel first: once it has the batch nothing is lost. Then count what this display sent before.
				await sendToChannel(ctx.broker, PLAYBACK_CHANNEL, { tenantId, displayId, displayName: display.name, groups: display.groups, receivedAt: now, events });
				const fresh = await this.kv.addRecent(`analytics:recent:${displayId}`, events.map(e => e.eventId), RECENT_EVENTS_KEPT, RECENT_EVENTS_TTL_MS).catch(() => events.length);
				return { accepted: fresh, duplicates: ctx.params.events.length - fresh };
			}
		},

		// ---- reports ---------------------------------------------------------------------------

		playback: {
			rest: "GET /analytics/playback",
			permission: "tenant.read",
			summary: "Proof of play grouped by content, display, group, hour or day",
			response: PlaybackReport,
			params: {
				$$strict: "remove",
				...RANGE_PARAMS,
				groupBy: { type: "enum", values: [...PLAYBACK_GROUP_BY], default: "content" },
				timezone: { type: "string", max: 64, optional: true },
				limit: { type: "number", integer: true, min: 1, max: MAX_REPORT_ROWS, convert: true, default: MAX_REPORT_ROWS }
			},
			async handler(ctx: ActionCtx<"analytics.playback", RequestMeta>): Promise<Result<"analytics.playback">> {
				const w = this.window(ctx, ctx.params);
				const { groupBy, limit } = ctx.params;
				const timezone = await this.timezoneOf(w.tenantId as string, ctx.params.timezone);
				const filter: PlaybackFilter = { displayIds: ctx.params.displayId ? [ctx.params.displayId] : undefined, contentId: ctx.params.contentId, groupId: ctx.params.groupId };
				const rows = (await this.rows<PlaybackResultRow>(playbackReport(w, filter, groupBy, timezone, limit))).map(r => playbackRow(r, groupBy === "hour" || groupBy === "day" ? groupBy : null));
				// Every play is in exactly one row unless rows were cut or a play counts for each of its
				// groups: then the totals are their sum, without a second pass over the plays.
				const complete = rows.length < limit && groupBy !== "group";
				const totals = complete
					? { plays: rows.reduce((n, r) => n + r.plays, 0), durationMs: rows.reduce((n, r) => n + r.durationMs, 0) }
					: await this.rows<{ plays: number; durationMs: number }>(playbackTotals(w, filter)).then(([t]) => ({ plays: Number(t?.plays ?? 0), durationMs: Number(t?.durationMs ?? 0) }));
				return {
					rows,
					totals,
					groupBy,
					from: new Date(w.fromMs).toISOString(),
					to: new Date(w.toMs).toISOString(),
					timezone
				};
			}
		},

		exportPlayback: {
			rest: "GET /analytics/playback/export",
			permission: "tenant.read",
			summary: "The raw plays in range as CSV, streamed (one line per play, replays once)",
			response: null,
			extraResponses: { 200: { description: "CSV (RFC 4180) with a header line; cells a spreadsheet would run as formulas start with `'`.", content: { "text/csv": {} } } },
			params: { $$strict: "remove", ...RANGE_PARAMS },
			async handler(ctx: ActionCtx<"analytics.exportPlayback", RequestMeta>): Promise<Result<"analytics.exportPlayback">> {
				const w = this.window(ctx, ctx.params);
				const filter: PlaybackFilter = { displayIds: ctx.params.displayId ? [ctx.params.displayId] : undefined, contentId: ctx.params.contentId, groupId: ctx.params.groupId };
				// Day by day, and inside a day 10 000 rows at a time after the last one: each query reads
				// one slice of the sort key, however long the range (no regrouping of all that follows).
				const slices: Array<[number, number]> = [];
				for (let start = w.fromMs; start < w.toMs; start += EXPORT_SLICE_MS) slices.push([start, Math.min(start + EXPORT_SLICE_MS, w.toMs)]);
				const read = (slice: [number, number], cursor: ExportCursor | null) =>
					this.rows<ExportResultRow>(playbackExportChunk({ ...w, from: slice[0], to: slice[1] }, filter, cursor, EXPORT_CHUNK_ROWS));
				// The first chunk before the answer starts: an unreachable store is still a clean 503.
				const first = await read(slices[0], null);
				async function* lines(): AsyncGenerator<string> {
					yield csvLine([...EXPORT_COLUMNS]);
					for (const [i, slice] of slices.entries()) {
						let chunk = i === 0 ? first : await read(slice, null);
						while (chunk.length) {
							yield chunk.map(exportLine).join("");
							if (chunk.length < EXPORT_CHUNK_ROWS) break;
							const last = chunk[chunk.length - 1];
							chunk = await read(slice, { startedAt: Number(last.started_at), displayId: last.display_id, eventId: last.event_id });
						}
					}
				}
				const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
				ctx.meta.$responseType = "text/csv; charset=utf-8";
				ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="playback-${day(w.fromMs)}-${day(w.toMs)}.csv"` };
				return Readable.from(lines(), { objectMode: false });
			}
		},

		uptime: {
			rest: "GET /analytics/uptime",
			permission: "tenant.read",
			summary: "Uptime per display from its online/offline transitions, with its outages",
			response: UptimeReport,
			params: { $$strict: "remove", ...RANGE_PARAMS, limit: { type: "number", integer: true, min: 1, max: MAX_REPORT_ROWS, convert: true, default: MAX_REPORT_ROWS } },
			async handler(ctx: ActionCtx<"analytics.uptime", RequestMeta>): Promise<Result<"analytics.uptime">> {
				const w = this.window(ctx, ctx.params);
				const displayIds = await this.displaysOf(ctx);
				// Nothing is known of the future: the range ends now at the latest.
				const end = Math.min(w.toMs, Date.now());
				const rows = end > w.fromMs ? await this.rows<UptimeResultRow>(uptimeReport(w, end, displayIds, ctx.params.limit)) : [];
				return { rows: rows.map(uptimeRow), from: new Date(w.fromMs).toISOString(), to: new Date(w.toMs).toISOString() };
			}
		},

		health: {
			rest: "GET /analytics/health",
			permission: "tenant.read",
			summary: "Average CPU, memory, disk and temperature per 5 minutes, hour or day",
			response: HealthSeries,
			params: { $$strict: "remove", ...RANGE_PARAMS, interval: { type: "enum", values: [...HEALTH_INTERVAL_NAMES], default: "1h" }, timezone: { type: "string", max: 64, optional: true } },
			async handler(ctx: ActionCtx<"analytics.health", RequestMeta>): Promise<Result<"analytics.health">> {
				const w = this.window(ctx, ctx.params);
				const { interval } = ctx.params;
				if ((w.toMs - w.fromMs) / HEALTH_INTERVAL_MS[interval] > MAX_HEALTH_POINTS) {
					throw Errors.validation([{ field: "interval", message: `gives more than ${MAX_HEALTH_POINTS} points over this range; choose a longer interval`, type: "range" }]);
				}
				const [displayIds, timezone] = await Promise.all([this.displaysOf(ctx), this.timezoneOf(w.tenantId as string, ctx.params.timezone)]);
				const points = await this.rows<{ bucket: number; cpu: number | null; memory: number | null; disk: number | null; temperature: number | null; displays: number }>(
					healthSeries(w, displayIds, interval, timezone, MAX_HEALTH_POINTS)
				);
				return {
					points: points.map(p => ({ ts: new Date(Number(p.bucket)).toISOString(), cpu: p.cpu, memory: p.memory, disk: p.disk, temperature: p.temperature, displays: Number(p.displays) })),
					interval,
					from: new Date(w.fromMs).toISOString(),
					to: new Date(w.toMs).toISOString()
				};
			}
		},

		auditLogs: {
			rest: "GET /audit-logs",
			permission: "audit.read",
			summary: "The tenant's audit log, newest first (default: the last 30 days); `action` may end in `*`",
			response: AuditPage,
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				from: { ...ISO_INSTANT_RULE, optional: true },
				to: { ...ISO_INSTANT_RULE, optional: true },
				action: { type: "string", min: 1, max: 200, optional: true },
				actorId: { type: "string", min: 1, max: 200, optional: true }
			},
			async handler(ctx: ActionCtx<"analytics.auditLogs", RequestMeta>): Promise<Result<"analytics.auditLogs">> {
				const { page, pageSize, action, actorId } = ctx.params;
				const to = ctx.params.to ?? new Date(Date.now() + 1000).toISOString();
				const from = ctx.params.from ?? new Date(Date.parse(to) - 30 * 86_400_000).toISOString();
				const w = this.window(ctx, { from, to });
				const filter: AuditFilter = { actorId };
				if (action?.endsWith("*")) filter.actionPrefix = action.slice(0, -1);
				else filter.action = action;
				const [rows, [count]] = await Promise.all([
					this.rows<AuditResultRow>(auditPage(w, filter, (page - 1) * pageSize, pageSize)),
					this.rows<{ total: number }>(auditCount(w, filter))
				]);
				const total = Number(count?.total ?? 0);
				return { rows: rows.map(auditEntry), total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
			}
		},

		// ---- weekly report emails ------------------------------------------------------------

		listReports: {
			rest: "GET /analytics/reports",
			permission: "tenant.read",
			summary: "The weekly proof-of-play emails of this tenant",
			response: ReportSchedulePage,
			params: { $$strict: "remove", ...PAGE_PARAMS },
			async handler(ctx: ActionCtx<"analytics.listReports", RequestMeta>): Promise<Result<"analytics.listReports">> {
				const page = await this.db.report_schedules.pageDocs(ctx, {}, ctx.params.page, ctx.params.pageSize);
				const now = new Date();
				return { ...page, rows: page.rows.map(s => scheduleView(s, now)) };
			}
		},

		createReport: {
			rest: "POST /analytics/reports",
			permission: "reports.manage",
			summary: "Email last week's proof of play (by content, with a CSV) every week at a local weekday and hour",
			successStatus: 201,
			response: ReportScheduleView,
			params: {
				$$strict: true,
				name: NAME_RULE,
				recipients: { type: "array", min: 1, max: 20, unique: true, items: EMAIL_RULE },
				weekday: { type: "number", integer: true, min: 1, max: 7 },
				hour: { type: "number", integer: true, min: 0, max: 23 },
				timezone: { type: "string", max: 64, optional: true }
			},
			async handler(ctx: ActionCtx<"analytics.createReport", RequestMeta>): Promise<Result<"analytics.createReport">> {
				const tenantId = tenantOf(ctx);
				assertTimezone(ctx.params.timezone);
				const timezone = await this.timezoneOf(tenantId, ctx.params.timezone);
				const { name, weekday, hour } = ctx.params;
				// Addresses are compared as normalised (A@x and a@x are one recipient, mailed once).
				const recipients = [...new Set(ctx.params.recipients)];
				// Counted and created under one lock: parallel requests cannot pass the limit together.
				const doc = await withLock(this.kv, `lock:report-schedules:${tenantId}`, async () => {
					if ((await this.db.report_schedules.countDocs(ctx)) >= MAX_REPORT_SCHEDULES) {
						throw Errors.conflict(`A tenant has at most ${MAX_REPORT_SCHEDULES} report emails`, { limit: MAX_REPORT_SCHEDULES });
					}
					return this.db.report_schedules.insertDoc(ctx, { name, recipients, weekday, hour, timezone, lastSentAt: null, lastPeriodStart: 0 });
				});
				await audit(ctx, { action: "report.created", target: doc.id, data: { weekday, hour, timezone, recipients: recipients.length } });
				return scheduleView(doc);
			}
		},

		removeReport: {
			rest: "DELETE /analytics/reports/:id",
			permission: "reports.manage",
			summary: "Stop a weekly report email",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"analytics.removeReport", RequestMeta>): Promise<Result<"analytics.removeReport">> {
				await this.db.report_schedules.removeDoc(ctx, ctx.params.id, "Report");
				await audit(ctx, { action: "report.deleted", target: ctx.params.id });
				return null;
			}
		},

		sendReport: {
			rest: "POST /analytics/reports/:id/send",
			permission: "reports.manage",
			summary: "Email the report of the last whole week now (the weekly schedule is unchanged)",
			successStatus: 202,
			response: ReportQueued,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"analytics.sendReport", RequestMeta>): Promise<Result<"analytics.sendReport">> {
				const schedule = await this.db.report_schedules.getDoc(ctx, ctx.params.id, "Report");
				this.requireStore();
				// It mails addresses the tenant typed: bounded, so it is no mailer for strangers.
				await takeAttempt(this.kv, THROTTLES.reportSend(schedule.tenantId, schedule.id));
				const { period } = lastDue(schedule, new Date());
				const queued = await this.mailReport(ctx, schedule, period);
				await audit(ctx, { action: "report.sent", target: schedule.id, data: { periodStart: new Date(period.start).toISOString() } });
				return { queued, periodStart: new Date(period.start).toISOString(), periodEnd: new Date(period.end).toISOString() };
			}
		},

		// ---- for other services ----------------------------------------------------------------

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"analytics.exportTenantData">): Promise<Result<"analytics.exportTenantData">> {
				const { tenantId } = ctx.params;
				const [rows, schedules] = await Promise.all([
					this.rows<AuditResultRow>(auditExport(tenantId, AUDIT_EXPORT_LIMIT + 1)),
					this.db.report_schedules.findDocs(systemScope(tenantId))
				]);
				return { auditEvents: rows.slice(0, AUDIT_EXPORT_LIMIT).map(auditEntry), truncated: rows.length > AUDIT_EXPORT_LIMIT, reportSchedules: schedules.map(s => scheduleView(s)) };
			}
		}
	},

	channels: {
		[PLAYBACK_CHANNEL]: {
			...channelOptions(200),
			async handler(ctx: ChannelCtx<typeof PLAYBACK_CHANNEL>) {
				await this.playbackBatcher.add(playbackRows(ctx.params));
			}
		},
		[HEARTBEAT_CHANNEL]: {
			// A message holds up to HEARTBEAT_BATCH_MAX heartbeats (devices' group commit): 20 × 500 rows held at most.
			...channelOptions(20),
			async handler(ctx: ChannelCtx<typeof HEARTBEAT_CHANNEL>) {
				await this.healthBatcher.add(ctx.params.heartbeats.map(healthRow));
			}
		},
		// What versions before batching left in the stream (see shared/channels.ts).
		[LEGACY_HEARTBEAT_CHANNEL]: {
			...channelOptions(1000),
			async handler(ctx: ChannelCtx<typeof LEGACY_HEARTBEAT_CHANNEL>) {
				await this.healthBatcher.add([healthRow(ctx.params)]);
			}
		},
		[DISPLAY_STATUS_CHANNEL]: {
			...channelOptions(1000),
			async handler(ctx: ChannelCtx<typeof DISPLAY_STATUS_CHANNEL>) {
				await this.statusBatcher.add([statusRow(ctx.params)]);
			}
		},
		[AUDIT_CHANNEL]: {
			...channelOptions(1000),
			async handler(ctx: ChannelCtx<typeof AUDIT_CHANNEL>) {
				await this.auditBatcher.add([auditRow(ctx.params)]);
			}
		},
		[TENANT_DELETED_CHANNEL]: {
			group: "analytics",
			async handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
				const { tenantId } = ctx.params;
				// Rows still in a batch would land after the delete: write them first.
				await Promise.all([this.playbackBatcher.flush(), this.healthBatcher.flush(), this.statusBatcher.flush(), this.auditBatcher.flush()]);
				// Remembered first: what still arrives for it later is purged by the retention job.
				await this.writeRows("deleted_tenants", [{ tenant_id: tenantId, deleted_at: Date.now() }]);
				await this.purgeTenants([tenantId]);
				await this.db.report_schedules.removeDocs(systemScope(tenantId), {});
			}
		}
	},

	methods: {
		/** The store, or 503 saying why there is none. */
		requireStore(): AnalyticsStore {
			if (!this.store) throw Errors.unavailable(`Analytics is not available: ${this.unavailable}`, { reason: this.unavailable });
			return this.store;
		},

		/** Runs the migrations once per process, under a lock so one replica applies them at a time. */
		async ensureMigrated(): Promise<void> {
			if (this.migrated) return;
			const store = this.requireStore();
			this.migration ??= withLock(
				this.kv,
				"lock:analytics:migrations",
				async () => {
					if (store instanceof ClickHouseHttpStore) await store.ensureDatabase();
					const applied = await migrate(store);
					if (applied.length) this.logger.info(`Analytics migrations applied: ${applied.join(", ")}`);
				},
				{ ttlMs: 120_000, waitMs: 120_000 }
			)
				.then(() => {
					this.migrated = true;
				})
				.finally(() => {
					this.migration = null;
				});
			await this.migration;
		},

		/** A query's rows; 503 while the store cannot be reached. */
		async rows<T extends object>(query: Sql): Promise<T[]> {
			try {
				await this.ensureMigrated();
				return await this.requireStore().rows<T>(query);
			} catch (err) {
				if (err instanceof StoreUnavailable || (err as Error).name === "LockTimeout") throw Errors.unavailable("The analytics store cannot be reached; try again shortly");
				if (err instanceof QueryTooHeavy) throw Errors.unavailable("This report is too heavy for the analytics store right now: narrow the range or the filters, or try again later");
				// A zone Intl knows and this ClickHouse does not (its zone data is older).
				if (/Cannot load time zone|Unknown time zone/i.test(String((err as Error).message))) {
					throw Errors.validation([{ field: "timezone", message: "is not a time zone the analytics store knows; choose another", type: "timezone" }]);
				}
				throw err;
			}
		},

		async writeRows(table: string, rows: readonly object[]): Promise<void> {
			await this.ensureMigrated();
			await this.requireStore().insert(table, rows);
		},

		/** The caller's tenant and the checked `[from, to)` (at most 366 days). */
		window(ctx: Context<unknown, RequestMeta>, range: Pick<ReportRange, "from" | "to">): Window & { fromMs: number; toMs: number } {
			this.requireStore();
			const tenantId = tenantOf(ctx);
			const fromMs = Date.parse(range.from);
			const toMs = Date.parse(range.to);
			if (!(toMs > fromMs)) throw Errors.validation([{ field: "to", message: "must be after from", type: "range" }]);
			if (toMs - fromMs > MAX_RANGE_DAYS * 86_400_000) throw Errors.validation([{ field: "to", message: `must be at most ${MAX_RANGE_DAYS} days after from`, type: "range" }]);
			return { tenantId, from: fromMs, to: toMs, fromMs, toMs };
		},

		/**
		 * The displays a display or group filter names (uptime and health): a display by its id (a
		 * deleted one keeps its history), a group by its members now; both: the display if it is one.
		 */
		async displaysOf(ctx: Context<ReportRange, RequestMeta>): Promise<string[] | undefined> {
			const { displayId, groupId } = ctx.params;
			if (!groupId) return displayId ? [displayId] : undefined;
			const tenantId = tenantOf(ctx);
			const members: string[] = [];
			let afterId: string | undefined;
			do {
				const page = await call(ctx, "devices.displaysFor", { tenantId, groupIds: [groupId], afterId, limit: 2000 });
				members.push(...page.rows.map(d => d.id));
				afterId = page.next ?? undefined;
			} while (afterId && members.length < 100_000);
			return displayId ? members.filter(id => id === displayId) : members;
		},

		/** The zone hours and days are counted in, spelled as ClickHouse knows it ("europe/berlin" → "Europe/Berlin"). */
		async timezoneOf(tenantId: string, override?: string): Promise<string> {
			if (override !== undefined) {
				const zone = canonicalTimezone(override);
				if (!zone) throw Errors.validation([{ field: "timezone", message: "is not an IANA time zone", type: "timezone" }]);
				return zone;
			}
			const tenant = await call(this.broker, "tenants.find", { tenantId }).catch(() => null);
			return canonicalTimezone(tenant?.settings.timezone ?? "UTC") ?? "UTC";
		},

		async describeDisplay(ctx: Context<unknown, RequestMeta>, tenantId: string, displayId: string) {
			const cached = this.displayNames.get(displayId);
			if (cached && cached.until > Date.now()) return cached.value;
			const d = await call(ctx, "devices.describe", { id: displayId });
			const value = { name: d.name, groups: d.groups };
			if (this.displayNames.size > 100_000) this.displayNames.clear();
			this.displayNames.set(displayId, { value, until: Date.now() + NAME_CACHE_MS });
			return value;
		},

		async contentNamesOf(tenantId: string, ids: string[]): Promise<Map<string, string>> {
			const names = new Map<string, string>();
			const missing: string[] = [];
			const now = Date.now();
			for (const id of ids) {
				const cached = this.contentNames.get(`${tenantId}:${id}`);
				if (cached && cached.until > now) names.set(id, cached.value);
				else missing.push(id);
			}
			if (missing.length) {
				// Content deleted since it played has no name here; the report takes the name stored with earlier plays.
				const found = await call(this.broker, "media.byIds", { tenantId, ids: missing });
				if (this.contentNames.size > 100_000) this.contentNames.clear();
				for (const c of found) {
					names.set(c.id, c.name);
					this.contentNames.set(`${tenantId}:${c.id}`, { value: c.name, until: now + NAME_CACHE_MS });
				}
			}
			return names;
		},

		/**
		 * At stop, before the channel consumers go (shared/channels.ts calls it): writes every batch
		 * and takes no more rows, so the handlers waiting on them finish and their messages are
		 * acknowledged; later deliveries are refused and stay in JetStream for the next replica.
		 */
		async flushChannelBuffers(): Promise<void> {
			await Promise.all([this.playbackBatcher.stop(), this.healthBatcher.stop(), this.statusBatcher.stop(), this.auditBatcher.stop()]);
		},

		/** Deletes every row of these tenants from every table (a mutation per table). */
		async purgeTenants(tenantIds: string[]): Promise<void> {
			if (!tenantIds.length) return;
			await this.ensureMigrated();
			const store = this.requireStore();
			for (const table of Object.keys(DATED_TABLES)) await store.exec(sql`ALTER TABLE ${ident(table)} DELETE WHERE tenant_id IN ${tenantIds}`);
		},

		/** Rows of deleted tenants that arrived after their deletion (a record still on its channel then): deleted now. */
		async purgeLeftovers(): Promise<string[]> {
			await this.ensureMigrated();
			const store = this.requireStore();
			const found = new Set<string>();
			for (const table of Object.keys(DATED_TABLES)) {
				const rows = await store.rows<{ tenant_id: string }>(sql`SELECT DISTINCT tenant_id FROM ${ident(table)} WHERE tenant_id IN (SELECT tenant_id FROM deleted_tenants) LIMIT 1000`);
				for (const r of rows) found.add(r.tenant_id);
			}
			await this.purgeTenants([...found]);
			return [...found];
		},

		/** Retention: drops the month partitions older than `retentionMonths` (whole months, no TTL). */
		async dropExpiredPartitions(now = new Date()): Promise<string[]> {
			await this.ensureMigrated();
			const store = this.requireStore();
			const cutoff = new Date(retentionStart(now, this.config.analytics.retentionMonths));
			const keepFrom = cutoff.getUTCFullYear() * 100 + cutoff.getUTCMonth() + 1;
			const tables = Object.keys(DATED_TABLES);
			const parts = await store.rows<{ table: string; partition: string }>(
				sql`SELECT DISTINCT table, partition FROM system.parts WHERE active AND database = currentDatabase() AND table IN ${tables}`
			);
			const dropped: string[] = [];
			for (const p of parts) {
				if (!/^\d{6}$/.test(p.partition) || Number(p.partition) >= keepFrom || !tables.includes(p.table)) continue;
				await store.exec(sql`ALTER TABLE ${ident(p.table)} DROP PARTITION ${Number(p.partition)}`);
				dropped.push(`${p.table}/${p.partition}`);
			}
			if (dropped.length) this.logger.info(`Analytics retention dropped ${dropped.join(", ")}`);
			return dropped;
		},

		/** Mails every weekly report whose week is due and not mailed yet (each claimed once, whichever replica runs). */
		async sendDueReports(now = new Date()): Promise<number> {
			let sent = 0;
			for (const schedule of await this.db.report_schedules.findDocs(ALL_TENANTS)) {
				const period = periodDue(schedule, now);
				if (!period) continue;
				const claimed = await this.db.report_schedules.updateWhere(
					systemScope(schedule.tenantId),
					{ _id: schedule.id, lastPeriodStart: schedule.lastPeriodStart },
					{ lastPeriodStart: period.start, lastSentAt: now.toISOString() }
				);
				if (claimed !== 1) continue;
				try {
					sent += await this.mailReport(null, schedule, period);
				} catch (err) {
					// Give the week back so the next run tries again; the other schedules go on.
					await this.db.report_schedules.updateWhere(systemScope(schedule.tenantId), { _id: schedule.id, lastPeriodStart: period.start }, { lastPeriodStart: schedule.lastPeriodStart });
					this.logger.warn(`Report ${schedule.id} of tenant ${schedule.tenantId} not sent (tried again next run): ${(err as Error).message}`);
				}
			}
			return sent;
		},

		/** One email per recipient with the week's plays by content (top 20 in the mail, all in the CSV). */
		async mailReport(ctx: Context | null, schedule: ReportScheduleDoc, period: Period): Promise<number> {
			const w: Window = { tenantId: schedule.tenantId, from: period.start, to: period.end };
			const [rows, [totals], tenant] = await Promise.all([
				this.rows<PlaybackResultRow>(playbackReport(w, {}, "content", schedule.timezone, 10_000)),
				this.rows<{ plays: number; durationMs: number }>(playbackTotals(w, {})),
				call(this.broker, "tenants.find", { tenantId: schedule.tenantId })
			]);
			const views = rows.map(r => playbackRow(r, null));
			let csv = csvLine(["contentId", "contentName", "plays", "durationMs", "avgDurationMs", "completionRate"]);
			for (const r of views) {
				const line = csvLine([r.key, r.name, r.plays, r.durationMs, r.avgDurationMs, r.completionRate]);
				if (Buffer.byteLength(csv) + Buffer.byteLength(line) > MAX_REPORT_CSV_BYTES) break;
				csv += line;
			}
			const label = periodLabel(period, schedule.timezone);
			const base = { template: "playbackReport" as const, tenantId: schedule.tenantId };
			for (const to of schedule.recipients) {
				await sendToChannel(this.broker, EMAIL_CHANNEL, {
					...base,
					id: `report:${schedule.id}:${period.start}:${to}:${ctx ? newId() : "weekly"}`,
					to,
					data: {
						tenantName: tenant?.name ?? "",
						reportName: schedule.name,
						period: label,
						plays: Number(totals?.plays ?? 0),
						durationMs: Number(totals?.durationMs ?? 0),
						rows: views.slice(0, 20).map(r => ({ name: r.name || r.key, plays: r.plays, durationMs: r.durationMs })),
						url: `${this.config.appUrl.replace(/\/$/, "")}/analytics`
					},
					attachments: [{ filename: `proof-of-play-${periodStartDate(period, schedule.timezone)}.csv`, contentType: "text/csv", content: csv }]
				});
			}
			return schedule.recipients.length;
		}
	},

	created() {
		this.config = getConfig();
		this.kv = sharedKeyValueStore(this.config);
		this.store = null;
		this.unavailable = null;
		this.migration = null;
		this.migrated = false;
		this.displayNames = new Map();
		this.contentNames = new Map();
		this.retention = null;
		this.reports = null;
		if (this.config.clickhouseUrl) {
			this.store = new ClickHouseHttpStore({ url: this.config.clickhouseUrl });
		} else {
			const { module, reason } = loadChdb();
			if (module) {
				try {
					this.store = ChdbStore.open(module, `${this.config.dataDir}/analytics`);
				} catch (err) {
					this.unavailable = `the embedded store could not open: ${(err as Error).message}`;
				}
			} else this.unavailable = `CLICKHOUSE_URL is not set and ${reason}`;
		}
		if (!this.store) {
			// Nothing can store what the channels carry: leave their messages for a replica that can.
			this.schema.channels = {};
			this.logger.warn(`Analytics answers 503: ${this.unavailable}`);
		}
		const { batchRows: maxRows, batchMs: maxDelayMs } = this.config.analytics;
		const buffered = opsGauge(this.broker.metrics, OPS_METRICS.analyticsBufferRows);
		const lag = opsHistogram(this.broker.metrics, OPS_METRICS.analyticsIngestLag);
		const batcher = <Row>(table: string, keyOf: (row: Row) => string, acceptedAt?: (row: Row) => number) => {
			buffered.set(0, { table });
			return new Batcher<Row>({
				name: table,
				write: rows => this.writeRows(table, rows as object[]),
				keyOf,
				maxRows,
				maxDelayMs,
				onRetry: (err, attempt, delayMs) => {
					if (attempt === 1 || attempt % 20 === 0) this.logger.warn(`Analytics: ${table} batch not stored (${(err as Error).message}); retrying in ${delayMs} ms (attempt ${attempt})`);
				},
				acceptedAt,
				onBuffered: rows => buffered.set(rows, { table }),
				onWritten: lagsMs => {
					for (const ms of lagsMs) lag.observe(ms / 1000, { table });
				}
			});
		};
		// Lag from the server's own stamp where the row has one (the API's receipt of plays, the
		// heartbeat's time, the audited action's time), so time spent on the durable channel counts.
		// A status change carries the display's last-seen time instead: measured from its arrival.
		this.playbackBatcher = batcher<PlaybackEventRow>("playback_events", playbackKey, row => row.received_at);
		this.healthBatcher = batcher<HealthRow>("device_health", healthKey, row => row.ts);
		this.statusBatcher = batcher<StatusRow>("display_status", statusKey);
		this.auditBatcher = batcher<AuditRow>("audit_events", auditKey, row => row.ts);
	},

	async started() {
		if (!this.store) return;
		// A store that is down at start is not fatal: the first query or batch migrates once it answers.
		await this.ensureMigrated().catch(err => this.logger.warn(`Analytics store not ready yet: ${(err as Error).message}`));
		const owner = this.broker.nodeID;
		const onError = (err: unknown) => this.logger.warn(`Analytics job failed: ${(err as Error).message}`);
		const retain = async () => {
			await this.dropExpiredPartitions();
			await this.purgeLeftovers();
		};
		this.retention = startPeriodicJob({ name: "analytics-retention", intervalMs: this.settings.retentionIntervalMs, kv: this.kv, owner, run: retain, onError });
		this.reports = startPeriodicJob({ name: "analytics-reports", intervalMs: this.config.analytics.reportsPollMs, kv: this.kv, owner, run: async () => void (await this.sendDueReports()), onError });
	},

	async stopped() {
		await Promise.all([this.retention?.stop(), this.reports?.stop()]);
		// Flush what was accepted (done already when the channels middleware ran), then let go of the engine.
		await this.flushChannelBuffers();
		await this.store?.close();
	}
};

export default AnalyticsService;
