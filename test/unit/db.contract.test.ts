/**
 * The data layer's contract: the same cases on every backend the db mixin can choose — NeDB in
 * memory (tests), NeDB files (embedded mode, including a restart), and MongoDB whenever
 * MONGO_URI is set. A service written against the mixin behaves alike on all of them.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import mongoose from "mongoose";
import {
	ALL_TENANTS,
	assertSafeQuery,
	createAdapter,
	DbMixin,
	globalCollection,
	systemScope,
	tenantCollection,
	textSearch,
	type GlobalCollection,
	type NewDoc,
	type Query,
	type Stored,
	type TenantCollection,
	type TenantOwned
} from "../../mixins/db.mixin";
import { setConfig } from "../../shared/config";
import { AppError } from "../../shared/errors";
import { isId } from "../../shared/ids";
import type { Principal } from "../../shared/rbac";
import { describeIf } from "../helpers/servers";
import { startBroker, tempDir, testConfig, type TestBroker } from "../helpers/platform";

const TENANT_A: Principal = { kind: "user", tenantId: "tenant-a", userId: "u-a", role: "owner" };
const TENANT_B: Principal = { kind: "user", tenantId: "tenant-b", userId: "u-b", role: "owner" };

type Meta = { auth: Principal };

/** Test documents take any field: the cases below probe what the data layer accepts. */
interface NoteDoc extends TenantOwned {
	[field: string]: unknown;
}

interface AccountDoc extends Stored {
	email: string;
}

/** A small service written the way real services use the mixin: explicit actions only. */
function notesService(collection: string): ServiceSchema<ServiceSettingSchema, object, { db: Record<string, TenantCollection<NoteDoc>> }> {
	return {
		name: "notes",
		// tags is indexed on NeDB too, so array and $in queries below also run through an index.
		mixins: [DbMixin({ [collection]: tenantCollection<NoteDoc>({ indexes: ["name"], selectiveIndexes: ["tags"] }) })],
		actions: {
			create: {
				params: { name: "string", tags: { type: "array", items: "string", optional: true }, size: "number|optional" },
				handler(ctx: Context<Record<string, unknown>, Meta>) {
					return this.db[collection].insertDoc(ctx, { tags: [], ...ctx.params });
				}
			},
			raw: {
				params: { fields: "object" },
				handler(ctx: Context<{ fields: Record<string, unknown> }, Meta>) {
					return this.db[collection].insertDoc(ctx, ctx.params.fields as NewDoc<NoteDoc>);
				}
			},
			get: { handler(ctx: Context<{ id: string }, Meta>) { return this.db[collection].getDoc(ctx, ctx.params.id, "Note"); } },
			list: {
				handler(ctx: Context<{ query?: Query; page?: number; pageSize?: number; sort?: string[] }, Meta>) {
					const { query = {}, page = 1, pageSize = 20, sort } = ctx.params;
					return this.db[collection].pageDocs(ctx, query, page, pageSize, sort);
				}
			},
			find: { handler(ctx: Context<{ query: Query; sort?: string[] }, Meta>) { return this.db[collection].findDocs(ctx, ctx.params.query, { sort: ctx.params.sort }); } },
			count: { handler(ctx: Context<{ query: Query }, Meta>) { return this.db[collection].countDocs(ctx, ctx.params.query); } },
			update: {
				handler(ctx: Context<{ id: string; changes: Record<string, unknown> }, Meta>) {
					return this.db[collection].updateDoc(ctx, ctx.params.id, ctx.params.changes, "Note");
				}
			},
			remove: { handler(ctx: Context<{ id: string }, Meta>) { return this.db[collection].removeDoc(ctx, ctx.params.id, "Note"); } },
			removeMany: { handler(ctx: Context<{ query: Query }, Meta>) { return this.db[collection].removeDocs(ctx, ctx.params.query); } },
			// Every tenant: only for system questions ("all of one user's documents").
			findEverywhere: { handler(ctx: Context<{ ref: string }>) { return this.db[collection].findDocs(ALL_TENANTS, { ref: ctx.params.ref }, { sort: ["tenantId"] }); } },
			purgeTenant: { handler(ctx: Context<{ tenantId: string }>) { return this.db[collection].removeDocs(systemScope(ctx.params.tenantId), {}); } },
			// Server-vouched scope: the tenant named by trusted server state, not by a principal.
			insertFor: {
				handler(ctx: Context<{ tenantId: string; name: string }>) {
					return this.db[collection].insertDoc(systemScope(ctx.params.tenantId), { name: ctx.params.name, tags: [] });
				}
			},
			claim: {
				handler(ctx: Context<{ id: string; tenantId: string }>) {
					return this.db[collection].updateWhere(systemScope(ctx.params.tenantId), { _id: ctx.params.id, claimedAt: { $exists: false } }, { claimedAt: new Date().toISOString() });
				}
			}
		}
	};
}

/** A global collection with a unique field, like users by email. */
function accountsService(collection: string): ServiceSchema<ServiceSettingSchema, object, { db: Record<string, GlobalCollection<AccountDoc>> }> {
	return {
		name: "accounts",
		mixins: [DbMixin({ [collection]: globalCollection<AccountDoc>({ uniqueIndexes: ["email"] }) })],
		actions: {
			create: { handler(ctx: Context<{ email: string }>) { return this.db[collection].insertDoc({ email: ctx.params.email }); } },
			rename: {
				handler(ctx: Context<{ id: string; email: string }>) {
					return this.db[collection].updateDoc(ctx.params.id, { email: ctx.params.email });
				}
			},
			count: { handler() { return this.db[collection].countDocs({}); } }
		}
	};
}

interface Note {
	id: string;
	name: string;
	tags: string[];
	size?: number;
	tenantId: string;
	createdAt: string;
	updatedAt: string;
}

async function expectAppError(promise: Promise<unknown>, type: string): Promise<void> {
	await expect(promise).rejects.toBeInstanceOf(AppError);
	await expect(promise).rejects.toMatchObject({ type });
}

let collections = 0;
const uniqueCollection = () => `notes_${process.pid}_${++collections}`;

function contract(backend: string, env: () => Record<string, string>) {
	describe(`db mixin contract on ${backend}`, () => {
		let tb: TestBroker;
		const as = (auth: Principal) => ({ meta: { auth } });
		const call = <T>(action: string, params: object, auth: Principal = TENANT_A) =>
			tb.broker.call(`notes.${action}`, params, as(auth)) as Promise<T>;

		beforeAll(async () => {
			tb = await startBroker([notesService(uniqueCollection())], env());
		});
		afterAll(() => tb.stop());

		it("inserts with a string UUID v7 id, timestamps and the caller's tenant", async () => {
			const note = await call<Note>("create", { name: "first", size: 3 });
			expect(isId(note.id)).toBe(true);
			expect(note).toMatchObject({ name: "first", size: 3, tags: [], tenantId: "tenant-a" });
			expect(new Date(note.createdAt).toISOString()).toBe(note.createdAt);
			expect(note).not.toHaveProperty("_id");
			expect(await call<Note>("get", { id: note.id })).toEqual(note);
		});

		it("refuses ids, tenancy and operators in written fields", async () => {
			for (const fields of [{ tenantId: "tenant-b" }, { _id: "mine" }, { $set: { a: 1 } }, { "a.$b": 1 }]) {
				await expect(call("raw", { fields })).rejects.toThrow(/Unsafe/);
			}
		});

		it("answers 404 for another tenant's id exactly as for a missing one", async () => {
			const note = await call<Note>("create", { name: "private" });
			await expectAppError(call("get", { id: note.id }, TENANT_B), "NOT_FOUND");
			await expectAppError(call("get", { id: "0190a000-0000-7000-8000-000000000000" }), "NOT_FOUND");
			await expectAppError(call("update", { id: note.id, changes: { name: "stolen" } }, TENANT_B), "NOT_FOUND");
			await expectAppError(call("remove", { id: note.id }, TENANT_B), "NOT_FOUND");
			expect((await call<Note>("get", { id: note.id })).name).toBe("private");
		});

		it("pages newest first with the API's list shape, scoped to the tenant", async () => {
			const names = Array.from({ length: 25 }, (_, i) => `page-${String(i).padStart(2, "0")}`);
			for (const name of names) await call("create", { name }, TENANT_B);
			const page2 = await call<{ rows: Note[]; total: number; page: number; pageSize: number; totalPages: number }>(
				"list",
				{ page: 2, pageSize: 10 },
				TENANT_B
			);
			expect(page2).toMatchObject({ total: 25, page: 2, pageSize: 10, totalPages: 3 });
			expect(page2.rows.map(r => r.name)).toEqual(names.slice().reverse().slice(10, 20));
			expect(page2.rows.every(r => r.tenantId === "tenant-b")).toBe(true);
			const ownList = await call<{ rows: Note[] }>("list", { pageSize: 100 });
			expect(ownList.rows.some(r => r.tenantId !== "tenant-a")).toBe(false);
		});

		it("supports the shared query subset alike", async () => {
			const tenant: Principal = { ...TENANT_A, tenantId: "tenant-query" };
			await call("create", { name: "alpha", tags: ["lobby", "red"], size: 1 }, tenant);
			await call("create", { name: "beta", tags: ["lobby"], size: 5 }, tenant);
			await call("create", { name: "a.c", tags: [], size: 10 }, tenant);
			const names = async (query: Query) =>
				(await call<Note[]>("find", { query, sort: ["name"] }, tenant)).map(n => n.name);

			expect(await names({ name: "beta" })).toEqual(["beta"]);
			expect(await names({ name: { $in: ["alpha", "beta", "zeta"] } })).toEqual(["alpha", "beta"]);
			expect(await names({ name: { $nin: ["alpha"] } })).toEqual(["a.c", "beta"]);
			expect(await names({ name: { $ne: "alpha" } })).toEqual(["a.c", "beta"]);
			expect(await names({ size: { $gte: 5 } })).toEqual(["a.c", "beta"]);
			expect(await names({ size: { $gt: 1, $lt: 10 } })).toEqual(["beta"]);
			expect(await names({ size: { $lte: 1 } })).toEqual(["alpha"]);
			// Array fields match on any element.
			expect(await names({ tags: "lobby" })).toEqual(["alpha", "beta"]);
			expect(await names({ tags: { $in: ["red"] } })).toEqual(["alpha"]);
			expect(await names({ size: { $exists: true } })).toEqual(["a.c", "alpha", "beta"]);
			// Text search escapes the user's text: "a.c" is literal, not a pattern.
			expect(await names(textSearch("A.C", ["name"]))).toEqual(["a.c"]);
			expect(await names(textSearch("ET", ["name", "tags"]))).toEqual(["beta"]);
			expect(await names({ $or: [{ name: "alpha" }, { size: 10 }] })).toEqual(["a.c", "alpha"]);
			expect(await call<number>("count", { query: { tags: "lobby" } }, tenant)).toBe(2);
			expect(await call<number>("count", { query: {} }, { ...tenant, tenantId: "tenant-none" })).toBe(0);
		});

		it("refuses anything outside the query subset before it reaches the adapter", async () => {
			const unsafe: Query[] = [
				{ $where: "1" },
				{ name: { $regex: "x" } },
				{ name: { $where: "sleep(1000)" } },
				{ name: { $gt: { $gt: "" } } },
				{ name: ["a", "b"] },
				{ name: { nested: "object" } },
				{ "bad field": 1 },
				{ $or: "nope" }
			];
			for (const query of unsafe) {
				expect(() => assertSafeQuery(query)).toThrow(/Unsafe query/);
				await expect(call("find", { query })).rejects.toThrow(/Unsafe query/);
			}
		});

		it("updates exactly the given fields, unsets undefined ones, keeps id and tenant", async () => {
			const note = await call<Note>("create", { name: "before", size: 7, tags: ["x"] });
			await new Promise(resolve => setTimeout(resolve, 5));
			const updated = await call<Note>("update", { id: note.id, changes: { name: "after", size: undefined } });
			expect(updated).toMatchObject({ id: note.id, name: "after", tags: ["x"], tenantId: "tenant-a" });
			expect(updated).not.toHaveProperty("size");
			expect(updated.updatedAt > note.updatedAt).toBe(true);
			expect(updated.createdAt).toBe(note.createdAt);
			await expect(call("update", { id: note.id, changes: { tenantId: "tenant-b" } })).rejects.toThrow(/Unsafe/);
			await expect(call("update", { id: note.id, changes: { $inc: { size: 1 } } })).rejects.toThrow(/Unsafe/);
		});

		it("removes one, many (scoped) and a whole tenant", async () => {
			const one = await call<Note>("create", { name: "gone" });
			expect((await call<Note>("remove", { id: one.id })).id).toBe(one.id);
			await expectAppError(call("get", { id: one.id }), "NOT_FOUND");

			const victim: Principal = { ...TENANT_A, tenantId: "tenant-victim" };
			const bystander: Principal = { ...TENANT_A, tenantId: "tenant-bystander" };
			for (const name of ["v1", "v2", "keep"]) await call("create", { name }, victim);
			await call("create", { name: "v1" }, bystander);
			expect(await call<number>("removeMany", { query: { name: { $in: ["v1", "v2"] } } }, victim)).toBe(2);
			expect(await call<number>("count", { query: {} }, bystander)).toBe(1);
			expect(await call<number>("purgeTenant", { tenantId: "tenant-victim" })).toBe(1);
			expect(await call<number>("count", { query: {} }, victim)).toBe(0);
			expect(await call<number>("count", { query: {} }, bystander)).toBe(1);
		});

		it("needs a principal: no tenant, no data", async () => {
			await expectAppError(tb.broker.call("notes.find", { query: {} }), "UNAUTHORIZED");
		});

		it("writes with an explicit, server-vouched tenant scope", async () => {
			const note = await tb.broker.call("notes.insertFor", { tenantId: "tenant-explicit", name: "system" }) as Note;
			expect(note.tenantId).toBe("tenant-explicit");
			await expectAppError(call("get", { id: note.id }), "NOT_FOUND");
			expect(await call<Note>("get", { id: note.id }, { ...TENANT_A, tenantId: "tenant-explicit" })).toMatchObject({ name: "system" });
		});

		it("reads across tenants only when ALL_TENANTS says so, and a system scope needs a tenant", async () => {
			const ref = `shared-${Date.now()}`;
			await call("create", { name: "a", ref }, TENANT_A);
			await call("create", { name: "b", ref }, TENANT_B);
			expect(await call<Note[]>("find", { query: { ref } }, TENANT_A)).toHaveLength(1);
			const everywhere = (await tb.broker.call("notes.findEverywhere", { ref })) as Note[];
			expect(everywhere.map(n => n.tenantId)).toEqual(["tenant-a", "tenant-b"]);
			expect(() => systemScope("")).toThrow(/tenant id/);
		});

		it("updateWhere reports how many matched, so one of two racing claims wins", async () => {
			const note = await tb.broker.call("notes.insertFor", { tenantId: "tenant-race", name: "once" }) as Note;
			const results = await Promise.all([1, 2, 3].map(() => tb.broker.call("notes.claim", { id: note.id, tenantId: "tenant-race" })));
			expect((results as number[]).sort()).toEqual([0, 0, 1]);
			expect(await tb.broker.call("notes.claim", { id: note.id, tenantId: "tenant-other" })).toBe(0);
		});

		it("unique fields refuse duplicates with 409 on insert and update, across the collection", async () => {
			const accounts = await startBroker([accountsService(uniqueCollection())], env());
			try {
				const first = (await accounts.broker.call("accounts.create", { email: "a@example.com" })) as Note;
				await expectAppError(accounts.broker.call("accounts.create", { email: "a@example.com" }), "CONFLICT");
				const second = (await accounts.broker.call("accounts.create", { email: "b@example.com" })) as Note;
				await expectAppError(accounts.broker.call("accounts.rename", { id: second.id, email: "a@example.com" }), "CONFLICT");
				expect(first.id).not.toBe(second.id);
				expect(await accounts.broker.call("accounts.count")).toBe(2);
			} finally {
				await accounts.stop();
			}
		});
	});
}

contract("NeDB in memory", () => ({}));
contract("NeDB files", () => ({ NODE_ENV: "development", LOG_LEVEL: "error" }));
describeIf(Boolean(process.env.MONGO_URI), "MONGO_URI not set")("MongoDB", () => {
	contract("MongoDB", () => ({ MONGO_URI: process.env.MONGO_URI ?? "" }));
});

describe("embedded NeDB files", () => {
	it("keep data across a restart of the broker", async () => {
		const env = { NODE_ENV: "development", DATA_DIR: tempDir(), LOG_LEVEL: "error" };
		const collection = uniqueCollection();
		const first = await startBroker([notesService(collection)], env);
		const written = (await first.broker.call("notes.create", { name: "durable" }, { meta: { auth: TENANT_A } })) as Note;
		await first.stop();

		const second = await startBroker([notesService(collection)], env);
		try {
			const read = await second.broker.call("notes.get", { id: written.id }, { meta: { auth: TENANT_A } });
			expect(read).toEqual(written);
		} finally {
			await second.stop();
		}
	});
});

describe("the MongoDB path, by construction (no server needed)", () => {
	it("builds one mongoose model per collection with string ids and a tenant index", () => {
		setConfig(testConfig({ MONGO_URI: "mongodb://127.0.0.1:1/marquee" }));
		const options = { collection: uniqueCollection(), tenantScoped: true, indexes: ["name"], selectiveIndexes: ["ref"], uniqueIndexes: ["code"] };
		const first = createAdapter(options);
		const again = createAdapter(options);
		expect(again.model).toBe(first.model);
		const schema = first.model?.schema as mongoose.Schema;
		expect(schema.path("_id").instance).toBe("String");
		expect(schema.path("tenantId").instance).toBe("String");
		expect(schema.indexes().map(([fields]) => fields)).toEqual([{ tenantId: 1 }, { tenantId: 1, name: 1 }, { tenantId: 1, ref: 1 }, { code: 1 }]);
		expect(schema.indexes()[3][1]).toMatchObject({ unique: true });
		expect(schema.get("strict")).toBe(false);
		expect(schema.get("versionKey")).toBe(false);
	});
});
