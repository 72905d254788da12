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

/** A data service's part of a tenant export (`<service>.exportTenantData`). */
export interface ExportParams {
	tenantId: string;
}
