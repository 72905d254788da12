/**
 * The data layer every service uses: moleculer-db with MongoDB (mongoose) when MONGO_URI is
 * set, NeDB files under DATA_DIR/db otherwise (in memory under NODE_ENV=test).
 *
 * - String ids (UUID v7) on both backends; documents leave as `{id, ...}` without `_id`.
 * - Tenant scope: every method takes the Moleculer context and adds `tenantId` from the verified
 *   principal (`ctx.meta.auth`) to every read and write; a foreign id is a 404 like a missing one.
 * - Only a small query subset reaches the adapter (equality, $in/$nin/$ne/$exists, ranges,
 *   $or of those, RegExp built by `textSearch`); anything else throws. moleculer-db's generic
 *   actions are switched off: services publish explicit actions instead.
 */
import path from "node:path";
import fs from "node:fs";
import type { Context, ServiceSchema, Service } from "moleculer";
import MoleculerDb from "moleculer-db";
import MongooseAdapter from "moleculer-db-adapter-mongoose";
import mongoose from "mongoose";
import { getConfig } from "../shared/config";
import { Errors } from "../shared/errors";
import { newId } from "../shared/ids";
import type { Principal } from "../shared/rbac";

export type Doc = Record<string, unknown> & { _id: string };
export type PublicDoc = Record<string, unknown> & { id: string };
export type Query = Record<string, unknown>;

export interface FindOptions {
	sort?: string[];
	limit?: number;
	offset?: number;
}

export interface Page<T> {
	rows: T[];
	total: number;
	page: number;
	pageSize: number;
	totalPages: number;
}

export interface DbMixinOptions {
	collection: string;
	/** false for collections that are not owned by one tenant (e.g. users). Default true. */
	tenantScoped?: boolean;
	/** Fields to index (tenantId is always indexed on scoped collections in MongoDB). */
	indexes?: string[];
	/** Fields whose value is unique in the collection (e.g. a user's email); a duplicate is a 409. */
	uniqueIndexes?: string[];
}

interface Adapter {
	find(filters: { query?: Query; sort?: string[]; limit?: number; offset?: number }): Promise<unknown[]>;
	findOne(query: Query): Promise<unknown>;
	count(filters: { query?: Query }): Promise<number>;
	insert(entity: Doc): Promise<unknown>;
	updateMany(query: Query, update: Query): Promise<unknown>;
	removeMany(query: Query): Promise<unknown>;
	entityToObject(entity: unknown): Record<string, unknown>;
	init(broker: unknown, service: unknown): void;
}

// ---- query subset ---------------------------------------------------------------------------

const FIELD = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const OPERATORS = new Set(["$in", "$nin", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists"]);

function isScalar(value: unknown): boolean {
	return (
		value === null ||
		["string", "number", "boolean"].includes(typeof value) ||
		value instanceof Date ||
		value instanceof RegExp
	);
}

function assertSafeCondition(field: string, value: unknown): void {
	if (isScalar(value)) return;
	if (Array.isArray(value)) throw new Error(`Unsafe query: array value for "${field}"`);
	if (typeof value !== "object") throw new Error(`Unsafe query: "${field}"`);
	for (const [op, operand] of Object.entries(value as Record<string, unknown>)) {
		if (!OPERATORS.has(op)) throw new Error(`Unsafe query: operator "${op}" on "${field}"`);
		const operands = Array.isArray(operand) ? operand : [operand];
		if (Array.isArray(operand) !== (op === "$in" || op === "$nin")) {
			throw new Error(`Unsafe query: bad operand of "${op}" on "${field}"`);
		}
		for (const o of operands) {
			if (!isScalar(o) || o instanceof RegExp) throw new Error(`Unsafe query: operand of "${op}" on "${field}"`);
		}
	}
}

/** Throws unless `query` stays inside the subset both NeDB and MongoDB treat alike. */
export function assertSafeQuery(query: Query): void {
	for (const [key, value] of Object.entries(query)) {
		if (key === "$or") {
			if (!Array.isArray(value) || value.length === 0) throw new Error("Unsafe query: $or needs a list");
			for (const branch of value) {
				if (!branch || typeof branch !== "object" || Array.isArray(branch)) throw new Error("Unsafe query: $or branch");
				for (const [field, cond] of Object.entries(branch as Query)) {
					if (!FIELD.test(field)) throw new Error(`Unsafe query: field "${field}"`);
					assertSafeCondition(field, cond);
				}
			}
			continue;
		}
		if (!FIELD.test(key)) throw new Error(`Unsafe query: field "${key}"`);
		assertSafeCondition(key, value);
	}
}

/** A case-insensitive "contains" condition over `fields`, with the user's text escaped. */
export function textSearch(text: string, fields: string[]): Query {
	const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	const pattern = new RegExp(escaped, "i");
	return { $or: fields.map(field => ({ [field]: pattern })) };
}

// ---- documents ------------------------------------------------------------------------------

function clean(value: unknown): unknown {
	if (Array.isArray(value)) return value.map(clean);
	if (value instanceof Date) return value;
	if (value && typeof value === "object") {
		const out: Record<string, unknown> = {};
		for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
			if (k === "__v") continue;
			out[k] = clean(v);
		}
		return out;
	}
	return value;
}

/** Storage document → API object: `_id` becomes `id`; dates become ISO strings. */
export function toPublic(doc: Record<string, unknown>): PublicDoc {
	const { _id, ...rest } = clean(doc) as Record<string, unknown>;
	const out: Record<string, unknown> = { id: String(_id) };
	for (const [k, v] of Object.entries(rest)) out[k] = v instanceof Date ? v.toISOString() : v;
	return out as PublicDoc;
}

/** Refuses field names that would act as operators or reach into ids and tenancy. */
function assertSafeChanges(changes: Record<string, unknown>): void {
	for (const key of Object.keys(changes)) {
		if (key.startsWith("$") || key === "_id" || key === "tenantId" || !FIELD.test(key)) {
			throw new Error(`Unsafe update of field "${key}"`);
		}
	}
}

// ---- adapters -------------------------------------------------------------------------------

function mongooseModel({ collection, indexes, uniqueIndexes, tenantScoped }: Required<DbMixinOptions>): mongoose.Model<Doc> {
	const existing = mongoose.models[collection] as mongoose.Model<Doc> | undefined;
	if (existing) return existing;
	const schema = new mongoose.Schema(
		{ _id: { type: String, required: true }, ...(tenantScoped ? { tenantId: { type: String, required: true } } : {}) },
		{ strict: false, versionKey: false, collection, minimize: false }
	);
	if (tenantScoped) schema.index({ tenantId: 1 });
	for (const field of indexes) schema.index(tenantScoped ? { tenantId: 1, [field]: 1 } : { [field]: 1 });
	for (const field of uniqueIndexes) schema.index({ [field]: 1 }, { unique: true });
	return mongoose.model<Doc>(collection, schema);
}

export function createAdapter(options: Required<DbMixinOptions>): { adapter: unknown; model?: mongoose.Model<Doc> } {
	const config = getConfig();
	if (config.mongoUri) {
		const model = mongooseModel(options);
		return { adapter: new MongooseAdapter(config.mongoUri, { serverSelectionTimeoutMS: 5000 }), model };
	}
	// No NeDB index on tenantId: NeDB picks its candidates from the last indexed field of a query,
	// and scoped queries end with tenantId, so such an index would turn an id lookup into a scan
	// of the tenant (measured in bench/).
	if (config.nodeEnv === "test") return { adapter: new MoleculerDb.MemoryAdapter() };
	const dir = path.join(config.dataDir, "db");
	fs.mkdirSync(dir, { recursive: true });
	return { adapter: new MoleculerDb.MemoryAdapter({ filename: path.join(dir, `${options.collection}.db`), autoload: false }) };
}

// ---- the mixin ------------------------------------------------------------------------------

/**
 * Whose documents a call may touch. Normally the Moleculer context: the tenant of its verified
 * principal. A `{ tenantId }` names the tenant explicitly, for flows the server itself vouches for
 * (a refresh token's session, a tenant being created); services never build it from client input.
 */
export type Scope = Context | { tenantId: string };

export interface DbMethods {
	/** The tenant of a scope; 401 when a context carries no principal. */
	tenantOf(scope: Scope): string;
	findDocs(scope: Scope, query?: Query, options?: FindOptions): Promise<PublicDoc[]>;
	countDocs(scope: Scope, query?: Query): Promise<number>;
	/** The API's list shape: rows, total, page, pageSize, totalPages. */
	pageDocs(scope: Scope, query: Query, page: number, pageSize: number, sort?: string[]): Promise<Page<PublicDoc>>;
	findDoc(scope: Scope, query: Query): Promise<PublicDoc | null>;
	/** 404 (NOT_FOUND with `what`) when missing or another tenant's. */
	getDoc(scope: Scope, id: string, what?: string): Promise<PublicDoc>;
	/** 409 when a unique index refuses it. */
	insertDoc(scope: Scope, fields: Record<string, unknown>): Promise<PublicDoc>;
	/** Sets exactly the given fields (no operators, no mass assignment of ids or tenancy). */
	updateDoc(scope: Scope, id: string, changes: Record<string, unknown>, what?: string): Promise<PublicDoc>;
	/** Sets fields on every document matching `query`; resolves with how many matched (0 = none, e.g. a lost race). */
	updateWhere(scope: Scope, query: Query, changes: Record<string, unknown>): Promise<number>;
	removeDoc(scope: Scope, id: string, what?: string): Promise<PublicDoc>;
	removeDocs(scope: Scope, query: Query): Promise<number>;
	/** Unscoped, for work a tenant's caller does not drive (tenant deletion, system jobs). */
	removeTenantDocs(tenantId: string): Promise<number>;
}

type DbService = Service &
	DbMethods & { adapter: Adapter; dbOptions: Required<DbMixinOptions>; scoped(scope: Scope, query?: Query): Query };

function isContext(scope: Scope): scope is Context {
	return "meta" in scope;
}

/** NeDB and MongoDB report a unique-index refusal differently. */
function isDuplicateKey(err: unknown): boolean {
	const e = err as { errorType?: unknown; code?: unknown } | null;
	return e?.errorType === "uniqueViolated" || e?.code === 11000;
}

function setAndUnset(changes: Record<string, unknown>): Query {
	assertSafeChanges(changes);
	const entries = Object.entries({ ...changes, updatedAt: new Date().toISOString() });
	const update: Query = { $set: Object.fromEntries(entries.filter(([, v]) => v !== undefined)) };
	const unset = entries.filter(([, v]) => v === undefined).map(([k]) => k);
	if (unset.length) update.$unset = Object.fromEntries(unset.map(k => [k, true]));
	return update;
}

export function DbMixin(opts: DbMixinOptions): Partial<ServiceSchema> {
	const options: Required<DbMixinOptions> = { tenantScoped: true, indexes: [], uniqueIndexes: [], ...opts };

	const generic = ["find", "count", "list", "create", "insert", "get", "update", "remove"];
	const schema = {
		mixins: [MoleculerDb],
		settings: { idField: "_id" },
		// moleculer-db's generic actions would accept raw queries and mass updates: never publish them.
		actions: Object.fromEntries(generic.map(name => [name, false])),

		methods: {
			tenantOf(this: DbService, scope: Scope): string {
				if (!isContext(scope)) return scope.tenantId;
				const auth = (scope.meta as { auth?: Principal | null }).auth;
				if (!auth?.tenantId) throw Errors.unauthorized();
				return auth.tenantId;
			},

			scoped(this: DbService, scope: Scope, query: Query = {}): Query {
				assertSafeQuery(query);
				return this.dbOptions.tenantScoped ? { ...query, tenantId: this.tenantOf(scope) } : { ...query };
			},

			async findDocs(this: DbService, scope: Scope, query: Query = {}, findOptions: FindOptions = {}) {
				const docs = await this.adapter.find({ query: this.scoped(scope, query), ...findOptions });
				return docs.map(d => toPublic(this.adapter.entityToObject(d)));
			},

			async countDocs(this: DbService, scope: Scope, query: Query = {}) {
				return this.adapter.count({ query: this.scoped(scope, query) });
			},

			async pageDocs(this: DbService, scope: Scope, query: Query, page: number, pageSize: number, sort = ["-_id"]) {
				const [rows, total] = await Promise.all([
					this.findDocs(scope, query, { sort, limit: pageSize, offset: (page - 1) * pageSize }),
					this.countDocs(scope, query)
				]);
				return { rows, total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
			},

			async findDoc(this: DbService, scope: Scope, query: Query) {
				const doc = await this.adapter.findOne(this.scoped(scope, query));
				return doc ? toPublic(this.adapter.entityToObject(doc)) : null;
			},

			async getDoc(this: DbService, scope: Scope, id: string, what = "Resource") {
				const doc = typeof id === "string" ? await this.findDoc(scope, { _id: id }) : null;
				if (!doc) throw Errors.notFound(what, id);
				return doc;
			},

			async insertDoc(this: DbService, scope: Scope, fields: Record<string, unknown>) {
				assertSafeChanges(fields);
				const now = new Date().toISOString();
				const doc: Doc = { createdAt: now, updatedAt: now, ...fields, _id: newId() };
				if (this.dbOptions.tenantScoped) doc.tenantId = this.tenantOf(scope);
				try {
					return toPublic(this.adapter.entityToObject(await this.adapter.insert(doc)));
				} catch (err) {
					if (isDuplicateKey(err)) throw Errors.conflict("Already exists");
					throw err;
				}
			},

			async updateDoc(this: DbService, scope: Scope, id: string, changes: Record<string, unknown>, what = "Resource") {
				const update = setAndUnset(changes);
				await this.getDoc(scope, id, what);
				try {
					await this.adapter.updateMany(this.scoped(scope, { _id: id }), update);
				} catch (err) {
					if (isDuplicateKey(err)) throw Errors.conflict("Already exists");
					throw err;
				}
				return this.getDoc(scope, id, what);
			},

			async updateWhere(this: DbService, scope: Scope, query: Query, changes: Record<string, unknown>) {
				return countOf(await this.adapter.updateMany(this.scoped(scope, query), setAndUnset(changes)));
			},

			async removeDoc(this: DbService, scope: Scope, id: string, what = "Resource") {
				const doc = await this.getDoc(scope, id, what);
				await this.adapter.removeMany(this.scoped(scope, { _id: id }));
				return doc;
			},

			async removeDocs(this: DbService, scope: Scope, query: Query) {
				return countOf(await this.adapter.removeMany(this.scoped(scope, query)));
			},

			async removeTenantDocs(this: DbService, tenantId: string) {
				if (!this.dbOptions.tenantScoped) throw new Error(`${options.collection} is not tenant-scoped`);
				return countOf(await this.adapter.removeMany({ tenantId }));
			}
		},

		created(this: DbService) {
			this.dbOptions = options;
			// Chosen here, not at import, so the config in force when the broker starts decides.
			// moleculer-db's own created() ran first and made a placeholder adapter: replace it.
			const { adapter, model } = createAdapter(options);
			(this.schema as { model?: unknown }).model = model;
			this.adapter = adapter as Adapter;
			this.adapter.init(this.broker, this);
		},

		async started(this: DbService) {
			const nedb = (this.adapter as unknown as { db?: NeDbLike }).db;
			if (!nedb) return;
			for (const fieldName of options.uniqueIndexes) await nedb.ensureIndex({ fieldName, unique: true });
			// NeDB keeps an append-only file; compact it now and then so restarts stay fast.
			nedb.setAutocompactionInterval?.(10 * 60_000);
		},

		async stopped(this: DbService) {
			const nedb = (this.adapter as unknown as { db?: NeDbLike | null }).db;
			nedb?.stopAutocompaction?.();
		}
	};
	// moleculer-db's mixin does not type-check as a ServiceSchema: this is the one cast.
	return schema as unknown as Partial<ServiceSchema>;
}

interface NeDbLike {
	ensureIndex(options: { fieldName: string; unique?: boolean }): Promise<void>;
	setAutocompactionInterval?: (ms: number) => void;
	stopAutocompaction?: () => void;
}

/** NeDB answers a count, mongoose `{deletedCount}` or `{matchedCount}`. */
function countOf(result: unknown): number {
	if (typeof result === "number") return result;
	const r = (result ?? {}) as { deletedCount?: unknown; matchedCount?: unknown; n?: unknown };
	for (const value of [r.deletedCount, r.matchedCount, r.n]) if (typeof value === "number") return value;
	return 0;
}
