/**
 * analytics: proof-of-play, uptime and health reports, the audit log and weekly report emails,
 * all answered by ClickHouse (a server, or chDB in-process in the embedded mode). It takes its
 * facts from durable channels: playback batches (`analytics.playback`), heartbeats
 * (`devices.heartbeat`), online/offline transitions (`devices.display.status`) and audit
 * records (`audit.record`).
 */
import { Type, type Static } from "@sinclair/typebox";
import { Id, Instant, JsonObject, Nullable, PageOf, type ExportParams, type PageParams } from "./views";

// ---- channel messages ----------------------------------------------------------------------------

/** One play as stored: names travel with it so reports outlive deletions. */
export interface PlaybackRecord {
	eventId: string;
	contentId: string;
	contentName: string;
	playlistId: string | null;
	scheduleId: string | null;
	/** Epoch milliseconds. */
	startedAt: number;
	durationMs: number;
	completed: boolean;
}

/** The durable channel `analytics.playback`: one accepted POST /device/playback. */
export interface PlaybackBatch {
	tenantId: string;
	displayId: string;
	displayName: string;
	/** The display's groups when the batch arrived. */
	groups: Array<{ id: string; name: string }>;
	receivedAt: number;
	events: PlaybackRecord[];
}

/** The durable channel `devices.display.status`: a display came online, went dark, or was deleted (`online: null`). */
export interface DisplayStatusChange {
	/** Unique per transition: a redelivered message is stored once. */
	id: string;
	tenantId: string;
	displayId: string;
	name: string;
	/** null: deleted — from then on it counts as neither online nor offline. */
	online: boolean | null;
	/** Dark inside a scheduled power-off: neither online nor offline until the next change. */
	scheduledOff?: boolean;
	at: string;
}

// ---- REST ----------------------------------------------------------------------------------------

/** POST /device/playback: how many events were new and how many this display had sent already. */
export const PlaybackAccepted = Type.Object({ accepted: Type.Integer({ minimum: 0 }), duplicates: Type.Integer({ minimum: 0 }) });
export type PlaybackAccepted = Static<typeof PlaybackAccepted>;

export const PlaybackEventInput = Type.Object({
	eventId: Type.String(),
	contentId: Type.String(),
	playlistId: Type.Optional(Type.String()),
	scheduleId: Type.Optional(Type.String()),
	startedAt: Type.String(),
	durationMs: Type.Integer(),
	completed: Type.Optional(Type.Boolean())
});
export type PlaybackEventInput = Static<typeof PlaybackEventInput>;

/** The range and filters every report takes (API.md: at most 366 days). */
export interface ReportRange {
	from: string;
	to: string;
	displayId?: string;
	contentId?: string;
	groupId?: string;
}

export const PLAYBACK_GROUP_BY = ["content", "display", "group", "hour", "day"] as const;
export type PlaybackGroupBy = (typeof PLAYBACK_GROUP_BY)[number];

export const PlaybackRow = Type.Object({
	/** The content, display or group id; the hour's start (ISO instant) or the local date. */
	key: Type.String(),
	/** Its name when it played (still there after a deletion); the key again for hours and days. */
	name: Type.String(),
	plays: Type.Integer({ minimum: 0 }),
	durationMs: Type.Integer({ minimum: 0 }),
	avgDurationMs: Type.Integer({ minimum: 0 }),
	/** Share of plays that ran to their end, 0..1. */
	completionRate: Type.Number({ minimum: 0, maximum: 1 })
});
export type PlaybackRow = Static<typeof PlaybackRow>;

export const PlaybackReport = Type.Object({
	rows: Type.Array(PlaybackRow),
	totals: Type.Object({ plays: Type.Integer({ minimum: 0 }), durationMs: Type.Integer({ minimum: 0 }) }),
	groupBy: Type.Union(PLAYBACK_GROUP_BY.map(g => Type.Literal(g))),
	from: Instant,
	to: Instant,
	/** Hours and days are counted in this timezone (the tenant's unless `timezone` was given). */
	timezone: Type.String()
});
export type PlaybackReport = Static<typeof PlaybackReport>;

export const Outage = Type.Object({ from: Instant, to: Instant });
export const UptimeRow = Type.Object({
	displayId: Id,
	name: Type.String(),
	/** null when nothing is known of the display in the range. */
	uptimePct: Nullable(Type.Number({ minimum: 0, maximum: 100 })),
	onlineSec: Type.Integer({ minimum: 0 }),
	offlineSec: Type.Integer({ minimum: 0 }),
	/** The offline stretches in the range, oldest first (the last 100). */
	outages: Type.Array(Outage)
});
export type UptimeRow = Static<typeof UptimeRow>;
export const UptimeReport = Type.Object({ rows: Type.Array(UptimeRow), from: Instant, to: Instant });
export type UptimeReport = Static<typeof UptimeReport>;

export const HEALTH_INTERVAL_NAMES = ["5m", "1h", "1d"] as const;
export type HealthIntervalName = (typeof HEALTH_INTERVAL_NAMES)[number];
export const HealthPoint = Type.Object({
	ts: Instant,
	cpu: Nullable(Type.Number()),
	memory: Nullable(Type.Number()),
	disk: Nullable(Type.Number()),
	temperature: Nullable(Type.Number()),
	/** Displays that reported in this interval. */
	displays: Type.Integer({ minimum: 0 })
});
export type HealthPoint = Static<typeof HealthPoint>;
export const HealthSeries = Type.Object({
	points: Type.Array(HealthPoint),
	interval: Type.Union(HEALTH_INTERVAL_NAMES.map(i => Type.Literal(i))),
	from: Instant,
	to: Instant
});
export type HealthSeries = Static<typeof HealthSeries>;

export const AuditEntry = Type.Object({
	id: Id,
	ts: Instant,
	actor: Type.Object({ kind: Type.String(), id: Nullable(Type.String()) }),
	action: Type.String(),
	target: Nullable(Type.String()),
	ip: Nullable(Type.String()),
	requestId: Nullable(Type.String()),
	data: JsonObject
});
export type AuditEntry = Static<typeof AuditEntry>;
export const AuditPage = PageOf(AuditEntry);
export type AuditPage = Static<typeof AuditPage>;

/** A weekly proof-of-play email. */
export const ReportScheduleView = Type.Object({
	id: Id,
	name: Type.String(),
	recipients: Type.Array(Type.String()),
	/** ISO weekday the report goes out: 1 = Monday … 7 = Sunday. */
	weekday: Type.Integer({ minimum: 1, maximum: 7 }),
	/** Local hour it goes out, 0–23. */
	hour: Type.Integer({ minimum: 0, maximum: 23 }),
	timezone: Type.String(),
	createdAt: Instant,
	lastSentAt: Nullable(Instant),
	/** The next time it goes out. */
	nextRunAt: Instant
});
export type ReportScheduleView = Static<typeof ReportScheduleView>;
export const ReportSchedulePage = PageOf(ReportScheduleView);
export type ReportSchedulePage = Static<typeof ReportSchedulePage>;
export interface ReportScheduleFields {
	name: string;
	recipients: string[];
	weekday: number;
	hour: number;
	timezone?: string;
}

/** POST /analytics/reports/:id/send: the report of the last whole week is on its way. */
export const ReportQueued = Type.Object({ queued: Type.Integer({ minimum: 0 }), periodStart: Instant, periodEnd: Instant });
export type ReportQueued = Static<typeof ReportQueued>;

/** analytics' part of the GDPR export: the tenant's audit log (newest first). */
export const AnalyticsExport = Type.Object({
	auditEvents: Type.Array(AuditEntry),
	/** True when the log was longer than the export's limit (the newest entries are included). */
	truncated: Type.Boolean(),
	reportSchedules: Type.Array(ReportScheduleView)
});
export type AnalyticsExport = Static<typeof AnalyticsExport>;

export interface AnalyticsActions {
	"analytics.recordPlayback": { params: { events: PlaybackEventInput[] }; result: PlaybackAccepted };
	"analytics.playback": { params: ReportRange & { groupBy: PlaybackGroupBy; timezone?: string; limit: number }; result: PlaybackReport };
	"analytics.exportPlayback": { params: ReportRange; result: NodeJS.ReadableStream };
	"analytics.uptime": { params: ReportRange & { limit: number }; result: UptimeReport };
	"analytics.health": { params: ReportRange & { interval: HealthIntervalName; timezone?: string }; result: HealthSeries };
	"analytics.auditLogs": { params: PageParams & { from?: string; to?: string; action?: string; actorId?: string }; result: AuditPage };
	"analytics.listReports": { params: PageParams; result: ReportSchedulePage };
	"analytics.createReport": { params: ReportScheduleFields; result: ReportScheduleView };
	"analytics.removeReport": { params: { id: string }; result: null };
	"analytics.sendReport": { params: { id: string }; result: ReportQueued };
	"analytics.exportTenantData": { params: ExportParams; result: AnalyticsExport };
}
