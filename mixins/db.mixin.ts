/**
 * The data layer every service uses. A service declares its collections with `DbMixin` and
 * reaches them as `this.db.<name>`; each collection stores through a moleculer-db adapter:
 * MongoDB (mongoose) when MONGO_URI is set, NeDB files under DATA_DIR/db otherwise (in memory
 * under NODE_ENV=test).
 *
 * - String ids (UUID v7) on both backends; documents leave as `{id, ...}` without `_id`.
 * - Tenant scope: every method takes a scope — the Moleculer context, whose verified principal
 *   (`ctx.meta.auth`) names the tenant — and adds `tenantId` to every read and write; a foreign
 *   id is a 404 like a missing one.
 * - Only a small query subset reaches the adapter (equality, $in/$nin/$ne/$exists, ranges,
 *   $or of those, RegExp built by `textSearch`); anything else throws. There are no generic
 *   find/update actions: services publish explicit actions.
 */
import path from "node:path";
import fs from "node:fs";
import type { Context, Service, ServiceBroker, ServiceSchema } from "moleculer";
import MoleculerDb from "moleculer-db";
import MongooseAdapter from "moleculer-db-adapter-mongoose";
import mongoose from "mongoose";
import { getConfig } from "../shared/config";
// NeDB's index updates in place when a document's key does not change (a side effect on NeDB's Index class).
import "./nedb-index";
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

export interface CollectionOptions {
	/** false for collections that are not owned by one tenant (e.g. users). Default true. */
	tenantScoped?: boolean;
	/** Fields to index in MongoDB (with tenantId first on scoped collections). */
	indexes?: string[];
	/**
	 * Fields indexed on every backend, NeDB included. NeDB answers a query from one index only
	 * (the last equality field it has an index for, else the last `$in`, else the last range),
	 * so only fields that pick out few documents across all tenants belong here: ids and keys,
	 * never low-cardinality fields like a status.
	 */
	selectiveIndexes?: string[];
	/** Fields whose value is unique in the collection (e.g. a user's email); a duplicate is a 409. */
	uniqueIndexes?: string[];
}

type ResolvedOptions = Required<CollectionOptions> & { collection: string };

/** What the data layer uses of a moleculer-db adapter (NeDB's MemoryAdapter or mongoose's). */
interface Adapter {
	init(broker: ServiceBroker, service: unknown): void;
	connect(): Promise<void>;
	disconnect(): Promise<void>;
	find(filters: { query?: Query; sort?: string[]; limit?: number; offset?: number }): Promise<unknown[]>;
	findOne(query: Query): Promise<unknown>;
	count(filters: { query?: Query }): Promise<number>;
	insert(entity: Doc): Promise<unknown>;
	updateMany(query: Query, update: Query): Promise<unknown>;
	removeMany(query: Query): Promise<unknown>;
	entityToObject(entity: unknown): Record<string, unknown>;
	db?: unknown;
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

function mongooseModel({ collection, indexes, selectiveIndexes, uniqueIndexes, tenantScoped }: ResolvedOptions): mongoose.Model<Doc> {
	const existing = mongoose.models[collection] as mongoose.Model<Doc> | undefined;
	if (existing) return existing;
	const schema = new mongoose.Schema(
		{ _id: { type: String, required: true }, ...(tenantScoped ? { tenantId: { type: String, required: true } } : {}) },
		{ strict: false, versionKey: false, collection, minimize: false }
	);
	if (tenantScoped) schema.index({ tenantId: 1 });
	for (const field of [...indexes, ...selectiveIndexes]) schema.index(tenantScoped ? { tenantId: 1, [field]: 1 } : { [field]: 1 });
	for (const field of uniqueIndexes) schema.index({ [field]: 1 }, { unique: true });
	return mongoose.model<Doc>(collection, schema);
}

export function createAdapter(options: ResolvedOptions): { adapter: Adapter; model?: mongoose.Model<Doc> } {
	const config = getConfig();
	if (config.mongoUri) {
		const model = mongooseModel(options);
		return { adapter: new MongooseAdapter(config.mongoUri, { serverSelectionTimeoutMS: 5000 }) as unknown as Adapter, model };
	}
	// No NeDB index on tenantId: NeDB picks its candidates from the last indexed field of a query,
	// and scoped queries end with tenantId, so such an index would turn an id lookup into a scan
	// of the tenant (measured in bench/).
	if (config.nodeEnv === "test") return { adapter: new MoleculerDb.MemoryAdapter() as unknown as Adapter };
	const dir = path.join(config.dataDir, "db");
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${options.collection}.db`);
	return { adapter: new MoleculerDb.MemoryAdapter({ filename: file, autoload: false }) as unknown as Adapter };
}

// ---- scopes ---------------------------------------------------------------------------------

/**
 * A tenant the server itself names, for flows it vouches for (a refresh token's session, a tenant
 * being created, a job for one tenant): `systemScope(tenantId)`. Never built from client input.
 */
export interface SystemScope {
	readonly kind: "system";
	readonly tenantId: string;
}

export function systemScope(tenantId: string): SystemScope {
	if (typeof tenantId !== "string" || tenantId === "") throw new Error("systemScope needs a tenant id");
	return Object.freeze({ kind: "system", tenantId });
}

/**
 * Every tenant at once: only for questions about one user or the whole system, never a caller's
 * listing (e.g. "which tenants is this user a member of", "end this user's sessions everywhere").
 */
export const ALL_TENANTS = Object.freeze({ kind: "allTenants" as const });
export type AllTenants = typeof ALL_TENANTS;

/**
 * Whose documents a call on a tenant-scoped collection touches: the Moleculer context (the tenant
 * of its verified principal, `ctx.meta.auth`) or a named system scope. Reads and bulk writes may
 * also say ALL_TENANTS.
 */
export type Scope = Context | SystemScope;
export type WideScope = Scope | AllTenants;

function isContext(scope: WideScope): scope is Context {
	return "meta" in scope;
}

/** The tenant of a scope; 401 when a context carries no principal. */
export function tenantOf(scope: Scope): string {
	if (!isContext(scope)) return scope.tenantId;
	const auth = (scope.meta as { auth?: Principal | null }).auth;
	if (!auth?.tenantId) throw Errors.unauthorized();
	return auth.tenantId;
}

/** null = every tenant. */
function tenantFilter(scope: WideScope): string | null {
	return "kind" in scope && scope.kind === "allTenants" ? null : tenantOf(scope as Scope);
}

// ---- document types -------------------------------------------------------------------------

/** Fields every stored document has, as the data layer hands it out. */
export interface Stored {
	id: string;
	createdAt: string;
	updatedAt: string;
}

/** A document of a tenant-scoped collection. */
export interface TenantOwned extends Stored {
	tenantId: string;
}

/** What an insert gives: the document without what the data layer sets (createdAt may be given). */
export type NewDoc<T extends Stored> = Omit<T, "id" | "tenantId" | "createdAt" | "updatedAt"> & { createdAt?: string };

/** What an update sets: any field but ids, tenancy and timestamps; `undefined` unsets it. */
export type Changes<T extends Stored> = { [K in Exclude<keyof T, "id" | "tenantId" | "createdAt" | "updatedAt">]?: T[K] | undefined };

// ---- collections ----------------------------------------------------------------------------

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

/** NeDB answers a count, mongoose `{deletedCount}` or `{matchedCount}`. */
function countOf(result: unknown): number {
	if (typeof result === "number") return result;
	const r = (result ?? {}) as { deletedCount?: unknown; matchedCount?: unknown; n?: unknown };
	for (const value of [r.deletedCount, r.matchedCount, r.n]) if (typeof value === "number") return value;
	return 0;
}

interface NeDbLike {
	filename?: string;
	inMemoryOnly?: boolean;
	indexes?: Record<string, { unique?: boolean; sparse?: boolean }>;
	getAllData?: () => Record<string, unknown>[];
	ensureIndex(options: { fieldName: string; unique?: boolean }): Promise<void>;
	update(query: Query, update: Query, options: Record<string, unknown>): Promise<unknown[]>;
	updateAsync(query: Query, update: Query, options: Record<string, unknown>): Promise<{ numAffected: number; affectedDocuments: unknown }>;
	setAutocompactionInterval?: (ms: number) => void;
	stopAutocompaction?: () => void;
}

// ---- backup snapshots -----------------------------------------------------------------------

/** The NeDB serializer moleculer-db's NeDB ships (dates as `{$$date}`), so a snapshot file is one NeDB itself would write. */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS module of NeDB without typings
const nedbModel = require("@seald-io/nedb/lib/model") as { serialize(doc: unknown): string };

/** File-backed NeDB collections this process has open (connected, not yet disconnected), by collection name. */
const openNeDbFiles = new Map<string, NeDbLike>();

/** One collection as a NeDB file: its documents and its index definitions, one JSON line each. */
export interface NeDbSnapshot {
	collection: string;
	documents: number;
	text: string;
}

/**
 * Every file-backed NeDB collection of this process, serialized in one synchronous step (no
 * await, no callback): all collections as they are at the same instant, which is what makes a
 * backup of a running platform consistent across collections (and what the platform would load
 * after a clean stop). NeDB applies each write to its in-memory indexes synchronously (a
 * multi-document update all at once) and only then appends it to its file, so memory is the
 * truth and the file may lag. The lines are NeDB's own format (what its compaction writes), so
 * a restored file loads as it is. Used by shared/backup-snapshot.ts; nothing else should call it.
 */
export function snapshotNeDbCollections(): NeDbSnapshot[] {
	const out: NeDbSnapshot[] = [];
	for (const [collection, nedb] of openNeDbFiles) {
		const docs = nedb.getAllData?.() ?? [];
		const lines = docs.map(doc => nedbModel.serialize(doc));
		for (const [fieldName, index] of Object.entries(nedb.indexes ?? {})) {
			if (fieldName !== "_id") lines.push(nedbModel.serialize({ $$indexCreated: { fieldName, unique: index.unique ?? false, sparse: index.sparse ?? false } }));
		}
		out.push({ collection, documents: docs.length, text: lines.length ? `${lines.join("\n")}\n` : "" });
	}
	return out;
}

/**
 * The storage of one collection, for the two typed faces below. `tenant` is the tenant a call is
 * confined to (null = every tenant, or a global collection); the faces decide it from the scope.
 */
class Store {
	private readonly adapter: Adapter;

	constructor(
		readonly options: ResolvedOptions,
		broker: ServiceBroker,
		logger: Service["logger"]
	) {
		const { adapter, model } = createAdapter(options);
		this.adapter = adapter;
		// moleculer-db adapters expect the service that owns them; this is all they read of it.
		this.adapter.init(broker, { schema: { model }, settings: {}, logger });
	}

	async connect(): Promise<void> {
		await this.adapter.connect();
		const nedb = this.adapter.db as NeDbLike | undefined;
		if (nedb && typeof nedb.ensureIndex === "function") {
			// moleculer-db wraps NeDB's update in util.promisify around a function that already
			// returns a promise, and Node warns (DEP0174) on every update. NeDB has a promise API:
			// the same answer ([count, docs]) without the noise.
			nedb.update = (query, update, options) => nedb.updateAsync(query, update, options).then(r => [r.numAffected, r.affectedDocuments]);
			for (const fieldName of this.options.uniqueIndexes) await nedb.ensureIndex({ fieldName, unique: true });
			for (const fieldName of this.options.selectiveIndexes) await nedb.ensureIndex({ fieldName });
			// NeDB keeps an append-only file; compact it now and then so restarts stay fast.
			nedb.setAutocompactionInterval?.(10 * 60_000);
			if (!nedb.inMemoryOnly && nedb.filename && typeof nedb.getAllData === "function") openNeDbFiles.set(this.options.collection, nedb);
		}
	}

	async disconnect(): Promise<void> {
		const nedb = this.adapter.db as NeDbLike | undefined;
		if (nedb && openNeDbFiles.get(this.options.collection) === nedb) openNeDbFiles.delete(this.options.collection);
		nedb?.stopAutocompaction?.();
		await this.adapter.disconnect();
	}

	private scoped(tenant: string | null, query: Query = {}): Query {
		assertSafeQuery(query);
		const scoped: Query = tenant === null ? { ...query } : { ...query, tenantId: tenant };
		// An id lookup must stay one: NeDB takes the last indexed equality field, so _id goes last.
		if (typeof scoped._id === "string") {
			const { _id, ...rest } = scoped;
			return { ...rest, _id };
		}
		return scoped;
	}

	private publicOf<T>(entity: unknown): T {
		return toPublic(this.adapter.entityToObject(entity)) as unknown as T;
	}

	async find<T>(tenant: string | null, query: Query = {}, findOptions: FindOptions = {}): Promise<T[]> {
		const docs = await this.adapter.find({ query: this.scoped(tenant, query), ...findOptions });
		return docs.map(d => this.publicOf<T>(d));
	}

	count(tenant: string | null, query: Query = {}): Promise<number> {
		return this.adapter.count({ query: this.scoped(tenant, query) });
	}

	async page<T>(tenant: string | null, query: Query, page: number, pageSize: number, sort: string[]): Promise<Page<T>> {
		const scoped = this.scoped(tenant, query);
		const [docs, total] = await Promise.all([
			this.adapter.find({ query: scoped, sort, limit: pageSize, offset: (page - 1) * pageSize }),
			this.adapter.count({ query: scoped })
		]);
		return { rows: docs.map(d => this.publicOf<T>(d)), total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
	}

	async findOne<T>(tenant: string | null, query: Query): Promise<T | null> {
		const doc = await this.adapter.findOne(this.scoped(tenant, query));
		return doc ? this.publicOf<T>(doc) : null;
	}

	async get<T>(tenant: string | null, id: string, what: string): Promise<T> {
		const doc = typeof id === "string" ? await this.findOne<T>(tenant, { _id: id }) : null;
		if (!doc) throw Errors.notFound(what, id);
		return doc;
	}

	async insert<T>(tenant: string | null, fields: Record<string, unknown>): Promise<T> {
		assertSafeChanges(fields);
		const now = new Date().toISOString();
		const doc: Doc = { createdAt: now, updatedAt: now, ...fields, _id: newId() };
		if (tenant !== null) doc.tenantId = tenant;
		try {
			return this.publicOf<T>(await this.adapter.insert(doc));
		} catch (err) {
			if (isDuplicateKey(err)) throw Errors.conflict("Already exists");
			throw err;
		}
	}

	async update<T>(tenant: string | null, id: string, changes: Record<string, unknown>, what: string): Promise<T> {
		const update = setAndUnset(changes);
		await this.get(tenant, id, what);
		try {
			await this.adapter.updateMany(this.scoped(tenant, { _id: id }), update);
		} catch (err) {
			if (isDuplicateKey(err)) throw Errors.conflict("Already exists");
			throw err;
		}
		return this.get<T>(tenant, id, what);
	}

	async updateWhere(tenant: string | null, query: Query, changes: Record<string, unknown>): Promise<number> {
		return countOf(await this.adapter.updateMany(this.scoped(tenant, query), setAndUnset(changes)));
	}

	async remove<T>(tenant: string | null, id: string, what: string): Promise<T> {
		const doc = await this.get<T>(tenant, id, what);
		await this.adapter.removeMany(this.scoped(tenant, { _id: id }));
		return doc;
	}

	async removeWhere(tenant: string | null, query: Query): Promise<number> {
		return countOf(await this.adapter.removeMany(this.scoped(tenant, query)));
	}
}

/**
 * A collection owned tenant by tenant: every call names its scope (a context, `systemScope(id)`,
 * or for reads and bulk writes ALL_TENANTS) and touches only that tenant's documents; a foreign
 * id is a 404 like a missing one.
 */
export class TenantCollection<T extends TenantOwned> {
	constructor(private readonly store: Store) {}

	findDocs(scope: WideScope, query: Query = {}, findOptions: FindOptions = {}): Promise<T[]> {
		return this.store.find<T>(tenantFilter(scope), query, findOptions);
	}

	countDocs(scope: WideScope, query: Query = {}): Promise<number> {
		return this.store.count(tenantFilter(scope), query);
	}

	/** The API's list shape: rows, total, page, pageSize, totalPages. Newest first by default. */
	pageDocs(scope: WideScope, query: Query, page: number, pageSize: number, sort = ["-_id"]): Promise<Page<T>> {
		return this.store.page<T>(tenantFilter(scope), query, page, pageSize, sort);
	}

	findDoc(scope: WideScope, query: Query): Promise<T | null> {
		return this.store.findOne<T>(tenantFilter(scope), query);
	}

	/** 404 (NOT_FOUND with `what`) when missing or another tenant's. */
	getDoc(scope: Scope, id: string, what = "Resource"): Promise<T> {
		return this.store.get<T>(tenantOf(scope), id, what);
	}

	/** 409 when a unique index refuses it. */
	insertDoc(scope: Scope, fields: NewDoc<T>): Promise<T> {
		return this.store.insert<T>(tenantOf(scope), fields);
	}

	/** Sets exactly the given fields (no operators, no mass assignment of ids or tenancy); undefined unsets. */
	updateDoc(scope: Scope, id: string, changes: Changes<T>, what = "Resource"): Promise<T> {
		return this.store.update<T>(tenantOf(scope), id, changes, what);
	}

	/** Sets fields on every document matching `query`; resolves with how many matched (0 = none, e.g. a lost race). */
	updateWhere(scope: WideScope, query: Query, changes: Changes<T>): Promise<number> {
		return this.store.updateWhere(tenantFilter(scope), query, changes);
	}

	removeDoc(scope: Scope, id: string, what = "Resource"): Promise<T> {
		return this.store.remove<T>(tenantOf(scope), id, what);
	}

	removeDocs(scope: WideScope, query: Query): Promise<number> {
		return this.store.removeWhere(tenantFilter(scope), query);
	}
}

/** A collection no tenant owns (users, email tokens): calls take no scope. */
export class GlobalCollection<T extends Stored> {
	constructor(private readonly store: Store) {}

	findDocs(query: Query = {}, findOptions: FindOptions = {}): Promise<T[]> {
		return this.store.find<T>(null, query, findOptions);
	}

	countDocs(query: Query = {}): Promise<number> {
		return this.store.count(null, query);
	}

	pageDocs(query: Query, page: number, pageSize: number, sort = ["-_id"]): Promise<Page<T>> {
		return this.store.page<T>(null, query, page, pageSize, sort);
	}

	findDoc(query: Query): Promise<T | null> {
		return this.store.findOne<T>(null, query);
	}

	getDoc(id: string, what = "Resource"): Promise<T> {
		return this.store.get<T>(null, id, what);
	}

	insertDoc(fields: NewDoc<T>): Promise<T> {
		return this.store.insert<T>(null, fields);
	}

	updateDoc(id: string, changes: Changes<T>, what = "Resource"): Promise<T> {
		return this.store.update<T>(null, id, changes, what);
	}

	updateWhere(query: Query, changes: Changes<T>): Promise<number> {
		return this.store.updateWhere(null, query, changes);
	}

	removeDoc(id: string, what = "Resource"): Promise<T> {
		return this.store.remove<T>(null, id, what);
	}

	removeDocs(query: Query): Promise<number> {
		return this.store.removeWhere(null, query);
	}
}

// ---- declaring collections ------------------------------------------------------------------

/** A collection declaration: its options and, as a type only, its documents and scope kind. */
export interface CollectionSpec<T extends Stored, Kind extends "tenant" | "global"> {
	readonly kind: Kind;
	readonly options: CollectionOptions;
	/** Never set: carries the document type. */
	readonly doc?: T;
}

/** A tenant-scoped collection of `T` documents. */
export function tenantCollection<T extends TenantOwned>(options: Omit<CollectionOptions, "tenantScoped"> = {}): CollectionSpec<T, "tenant"> {
	return { kind: "tenant", options: { ...options, tenantScoped: true } };
}

/** A collection of `T` documents no tenant owns. */
export function globalCollection<T extends Stored>(options: Omit<CollectionOptions, "tenantScoped"> = {}): CollectionSpec<T, "global"> {
	return { kind: "global", options: { ...options, tenantScoped: false } };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any document type: the mapped type below recovers each one
type AnySpec = CollectionSpec<any, "tenant" | "global">;

/** `this.db` of a service that declared `Specs`. */
export type CollectionsOf<Specs extends Record<string, AnySpec>> = {
	[N in keyof Specs]: Specs[N] extends CollectionSpec<infer T extends TenantOwned, "tenant">
		? TenantCollection<T>
		: Specs[N] extends CollectionSpec<infer T, "global">
			? GlobalCollection<T>
			: never;
};

/** The service vars the mixin adds: `this.db.<name>`. */
export interface DbVars<Specs extends Record<string, AnySpec>> {
	db: CollectionsOf<Specs>;
}

const STORES = Symbol("stores");

/**
 * Declares a service's collections:
 * `DbMixin({ users: globalCollection<UserDoc>(), sessions: tenantCollection<SessionDoc>() })`
 * gives `this.db.users` and `this.db.sessions`, connected when the service starts. The stored
 * collection name is `<name>` (names are unique across services).
 */
export function DbMixin<Specs extends Record<string, AnySpec>>(specs: Specs): Partial<ServiceSchema> {
	const resolved = Object.entries(specs).map(([collection, spec]) => ({
		kind: spec.kind,
		options: { tenantScoped: true, indexes: [], uniqueIndexes: [], selectiveIndexes: [], ...spec.options, collection } as ResolvedOptions
	}));
	type WithStores = Service & { [STORES]: Store[]; db: Record<string, unknown> };
	return {
		// Chosen in created(), not at import, so the config in force when the broker starts decides.
		created() {
			const self = this as WithStores;
			const stores = resolved.map(r => ({ ...r, store: new Store(r.options, self.broker, self.logger) }));
			self[STORES] = stores.map(s => s.store);
			self.db = Object.fromEntries(
				stores.map(s => [s.options.collection, s.kind === "tenant" ? new TenantCollection(s.store) : new GlobalCollection(s.store)])
			);
		},
		async started() {
			await Promise.all((this as WithStores)[STORES].map(s => s.connect()));
		},
		async stopped() {
			await Promise.all((this as WithStores)[STORES].map(s => s.disconnect()));
		}
	};
}
