/**
 * Schema building blocks shared by the contracts: the list convention, nullable fields, the
 * API's timestamps. Each is a TypeBox schema, i.e. a JSON Schema value with a TypeScript type.
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { ROLES } from "../rbac";

/** An ISO-8601 UTC instant, e.g. "2026-11-22T10:00:00.000Z". */
export const Instant = Type.String({ format: "date-time" });
/** An opaque id. */
export const Id = Type.String({ minLength: 1 });
export const RoleSchema = Type.Union(ROLES.map(r => Type.Literal(r)));

/** `schema` or null: a field that may be cleared or not set yet. */
export function Nullable<T extends TSchema>(schema: T) {
	return Type.Union([schema, Type.Null()]);
}

/** The list convention: `{rows, total, page, pageSize, totalPages}`. */
export function PageOf<T extends TSchema>(row: T) {
	return Type.Object({
		rows: Type.Array(row),
		total: Type.Integer({ minimum: 0 }),
		page: Type.Integer({ minimum: 1 }),
		pageSize: Type.Integer({ minimum: 1 }),
		totalPages: Type.Integer({ minimum: 0 })
	});
}

export type PageView<T> = { rows: T[]; total: number; page: number; pageSize: number; totalPages: number };

/** A free-form JSON object (a tenant's export part, an event's extra data). */
export const JsonObject = Type.Record(Type.String(), Type.Unknown());
export type JsonObject = Static<typeof JsonObject>;

/** `?page&pageSize` after validation (PAGE_PARAMS in shared/request.ts fills the defaults). */
export interface PageParams {
	page: number;
	pageSize: number;
}

/** The params of actions that take none (the caller comes from `ctx.meta.auth`). */
export type NoParams = Record<string, never>;

// ---- content approval -------------------------------------------------------------------------

export const APPROVAL_STATUSES = ["approved", "pending", "rejected"] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];

/**
 * Where a content item or playlist stands in the tenant's approval workflow (settings
 * `contentApproval`): the latest change is `pending`, was `approved` or `rejected`; `live` says
 * whether an approved version exists and plays meanwhile (false: new, never approved).
 */
export const ApprovalView = Type.Object({
	status: Type.Union(APPROVAL_STATUSES.map(s => Type.Literal(s))),
	live: Type.Boolean(),
	/** The user or API key whose change waits (or waited) for review. */
	requestedBy: Nullable(Id),
	requestedAt: Nullable(Instant),
	reviewedBy: Nullable(Id),
	reviewedAt: Nullable(Instant),
	/** The reviewer's comment (a rejection always has one). */
	comment: Nullable(Type.String())
});
export type ApprovalView = Static<typeof ApprovalView>;

/** POST …/approve and …/reject. */
export interface ApprovalDecisionParams {
	id: string;
	comment?: string;
	/** The `approval.requestedAt` reviewed: 409 when another change replaced it. */
	requestedAt?: string;
}

/** A data service's part of a tenant export (`<service>.exportTenantData`). */
export interface ExportParams {
	tenantId: string;
}
