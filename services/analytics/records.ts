/**
 * Between the channels' messages, ClickHouse's rows and the REST views: pure mapping. Times are
 * epoch milliseconds in the tables and ISO instants outside.
 */
import type { AuditEntry, AuditRecord, DisplayStatusChange, HeartbeatMessage, PlaybackBatch, PlaybackRow, UptimeRow } from "../../shared/contracts";
import { cleanText } from "./sql";

export interface PlaybackEventRow {
	tenant_id: string;
	display_id: string;
	event_id: string;
	display_name: string;
	content_id: string;
	content_name: string;
	playlist_id: string;
	schedule_id: string;
	group_ids: string[];
	group_names: string[];
	started_at: number;
	duration_ms: number;
	completed: number;
	received_at: number;
}

export function playbackRows(batch: PlaybackBatch): PlaybackEventRow[] {
	return batch.events.map(e => ({
		tenant_id: batch.tenantId,
		display_id: batch.displayId,
		event_id: cleanText(e.eventId, 128),
		display_name: cleanText(batch.displayName),
		content_id: cleanText(e.contentId, 128),
		content_name: cleanText(e.contentName),
		playlist_id: cleanText(e.playlistId, 128),
		schedule_id: cleanText(e.scheduleId, 128),
		group_ids: batch.groups.map(g => cleanText(g.id, 128)),
		group_names: batch.groups.map(g => cleanText(g.name)),
		started_at: e.startedAt,
		duration_ms: e.durationMs,
		completed: e.completed ? 1 : 0,
		received_at: batch.receivedAt
	}));
}

export const playbackKey = (r: PlaybackEventRow) => `${r.tenant_id}\u0000${r.display_id}\u0000${r.event_id}`;

export interface HealthRow {
	tenant_id: string;
	display_id: string;
	ts: number;
	cpu: number | null;
	memory: number | null;
	disk: number | null;
	temperature: number | null;
	app_version: string;
	online: number;
}

export function healthRow(m: HeartbeatMessage): HealthRow {
	return {
		tenant_id: m.tenantId,
		display_id: m.displayId,
		ts: Date.parse(m.ts),
		cpu: m.metrics?.cpu ?? null,
		memory: m.metrics?.memory ?? null,
		disk: m.metrics?.disk ?? null,
		temperature: m.metrics?.temperature ?? null,
		app_version: cleanText(m.appVersion, 64),
		online: 1
	};
}

export const healthKey = (r: HealthRow) => `${r.tenant_id}\u0000${r.display_id}\u0000${r.ts}`;

/** `online`: 1 online, 0 offline, 2 neither (deleted, or dark in a scheduled power-off): the uptime query counts only 0 and 1. */
export interface StatusRow {
	tenant_id: string;
	display_id: string;
	display_name: string;
	ts: number;
	online: number;
	event_id: string;
}

export function statusRow(m: DisplayStatusChange): StatusRow {
	return { tenant_id: m.tenantId, display_id: m.displayId, display_name: cleanText(m.name), ts: Date.parse(m.at), online: m.online === null || m.scheduledOff ? 2 : m.online ? 1 : 0, event_id: m.id };
}

export const statusKey = (r: StatusRow) => r.event_id;

export interface AuditRow {
	tenant_id: string;
	id: string;
	ts: number;
	actor_kind: string;
	actor_id: string;
	action: string;
	target: string;
	ip: string;
	request_id: string;
	data: string;
}

export function auditRow(r: AuditRecord): AuditRow {
	return {
		tenant_id: r.tenantId,
		// Records sent before ids existed get one from their content (a redelivery keeps it).
		id: r.id ?? `${r.ts}|${r.requestId ?? ""}|${r.action}|${r.target ?? ""}`,
		ts: Date.parse(r.ts),
		actor_kind: r.actor.kind,
		actor_id: r.actor.id ?? "",
		action: cleanText(r.action, 200),
		target: cleanText(r.target, 500),
		ip: cleanText(r.ip, 100),
		request_id: cleanText(r.requestId, 200),
		data: JSON.stringify(r.data ?? {})
	};
}

export const auditKey = (r: AuditRow) => `${r.tenant_id}\u0000${r.id}`;

// ---- result rows → views ---------------------------------------------------------------------

const iso = (ms: number | string) => new Date(Number(ms)).toISOString();
const orNull = (s: string) => (s === "" ? null : s);

export type AuditResultRow = Omit<AuditRow, "tenant_id">;

export function auditEntry(r: AuditResultRow): AuditEntry {
	let data: Record<string, unknown> = {};
	try {
		const parsed: unknown = JSON.parse(r.data);
		if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) data = parsed as Record<string, unknown>;
	} catch {
		// stored by this service as JSON; an unreadable value shows as empty rather than failing the page
	}
	return {
		id: r.id,
		ts: iso(r.ts),
		actor: { kind: r.actor_kind, id: orNull(r.actor_id) },
		action: r.action,
		target: orNull(r.target),
		ip: orNull(r.ip),
		requestId: orNull(r.request_id),
		data
	};
}

export interface PlaybackResultRow {
	key: string;
	name: string;
	plays: number;
	durationMs: number;
	avgDurationMs: number;
	completionRate: number;
}

export function playbackRow(r: PlaybackResultRow, timeKey: "hour" | "day" | null): PlaybackRow {
	const key = timeKey === "hour" ? iso(r.key) : r.key;
	return {
		key,
		name: timeKey ? key : r.name,
		plays: Number(r.plays),
		durationMs: Number(r.durationMs),
		avgDurationMs: Number(r.avgDurationMs),
		completionRate: Number(r.completionRate)
	};
}

export interface UptimeResultRow {
	displayId: string;
	name: string;
	onlineMs: number;
	offlineMs: number;
	uptimePct: number | null;
	outages: Array<[number, number, number]>;
}

export function uptimeRow(r: UptimeResultRow): UptimeRow {
	return {
		displayId: r.displayId,
		name: r.name,
		uptimePct: r.uptimePct === null ? null : Number(r.uptimePct),
		onlineSec: Math.round(Number(r.onlineMs) / 1000),
		offlineSec: Math.round(Number(r.offlineMs) / 1000),
		outages: r.outages.map(([from, to]) => ({ from: iso(from), to: iso(to) }))
	};
}

/** CSV of raw events: a header, then one line per event; cells a spreadsheet would run as formulas are defused. */
export const EXPORT_COLUMNS = ["eventId", "displayId", "displayName", "contentId", "contentName", "playlistId", "scheduleId", "startedAt", "durationMs", "completed", "receivedAt"] as const;

export interface ExportResultRow {
	started_at: number;
	display_id: string;
	event_id: string;
	e_display_name: string;
	e_content_id: string;
	e_content_name: string;
	e_playlist_id: string;
	e_schedule_id: string;
	e_duration_ms: number;
	e_completed: number;
	e_received_at: number;
}

/**
 * One CSV cell. Text is always quoted, so no separator inside it splits the cell — a `;` as
 * much as a `,` (spreadsheets in many locales split on `;`) — and text a spreadsheet would run
 * as a formula (a leading =, +, -, @, tab or CR) gets a `'` first (OWASP CSV injection).
 * Numbers and booleans are written bare.
 */
export function csvCell(value: string | number | boolean): string {
	if (typeof value !== "string") return String(value);
	const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
	return `"${text.replace(/"/g, '""')}"`;
}

export function csvLine(cells: Array<string | number | boolean>): string {
	return cells.map(csvCell).join(",") + "\r\n";
}

export function exportLine(r: ExportResultRow): string {
	return csvLine([r.event_id, r.display_id, r.e_display_name, r.e_content_id, r.e_content_name, r.e_playlist_id, r.e_schedule_id, iso(r.started_at), Number(r.e_duration_ms), Number(r.e_completed) === 1, iso(r.e_received_at)]);
}
