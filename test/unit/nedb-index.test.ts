/**
 * mixins/nedb-index.ts: NeDB's index updates in place when a document's key does not change. The
 * indexes must answer exactly as NeDB's own remove-and-insert would (queries by the indexed field
 * see the updated documents, a key that changes moves, a failed update changes nothing), and
 * updating many documents that share a key must not remove them from that key's list one by one
 * (that was quadratic: 10 000 displays going offline at once).
 */
import "../../mixins/nedb-index";
import Datastore from "@seald-io/nedb";

// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS module of NeDB without typings
const Index = require("@seald-io/nedb/lib/indexes") as { prototype: { remove(doc: unknown): void } };

interface Row {
	_id?: string;
	n: number;
	status: string;
	shared: string | null;
	groups: string[];
	unique?: number;
}

async function store(rows: Row[]): Promise<Datastore<Row>> {
	const db = new Datastore<Row>({ inMemoryOnly: true });
	await db.ensureIndexAsync({ fieldName: "shared" });
	await db.ensureIndexAsync({ fieldName: "groups" });
	await db.ensureIndexAsync({ fieldName: "unique", unique: true, sparse: true });
	await db.insertAsync(rows);
	return db;
}

const rows = (count: number): Row[] => Array.from({ length: count }, (_, n) => ({ n, status: "online", shared: null, groups: n % 2 ? ["a", "b"] : ["a"] }));

describe("NeDB index updates in place", () => {
	it("updates 2 000 documents sharing a null key without removing any from that key's list; queries by every index see the new documents", async () => {
		const db = await store(rows(2000));
		const removals = jest.spyOn(Index.prototype, "remove");
		try {
			expect(await db.updateAsync({}, { $set: { status: "offline" } }, { multi: true })).toMatchObject({ numAffected: 2000 });
			for (let n = 0; n < 50; n++) await db.updateAsync({ n }, { $set: { status: `renamed ${n}` } });
			expect(removals).not.toHaveBeenCalled();
		} finally {
			removals.mockRestore();
		}
		const byShared = await db.findAsync({ shared: null });
		expect(byShared).toHaveLength(2000);
		expect(byShared.filter(r => r.status === "offline")).toHaveLength(1950);
		expect((await db.findAsync({ groups: "b" })).every(r => r.status !== "online")).toBe(true);
		expect(await db.countAsync({ groups: "a", status: "online" })).toBe(0);
		expect((await db.findOneAsync({ n: 7 }))?.status).toBe("renamed 7");
		expect((await db.findAsync({ shared: null, status: "renamed 7" })).map(r => r.n)).toEqual([7]);
	});

	it("updates documents that lack an indexed field in place too (NeDB files them under undefined)", async () => {
		const db = new Datastore<Partial<Row>>({ inMemoryOnly: true });
		await db.ensureIndexAsync({ fieldName: "absent" });
		await db.insertAsync(Array.from({ length: 300 }, (_, n) => ({ n, status: "online" })));
		const removals = jest.spyOn(Index.prototype, "remove");
		try {
			await db.updateAsync({}, { $set: { status: "offline" } }, { multi: true });
			expect(removals).not.toHaveBeenCalled();
		} finally {
			removals.mockRestore();
		}
		expect(await db.countAsync({ status: "offline" })).toBe(300);
		await db.updateAsync({ n: 5 }, { $set: { absent: "here" } });
		expect((await db.findAsync({ absent: "here" })).map(r => r.n)).toEqual([5]);
	});

	it("moves a document whose key changes, arrays included, as NeDB does", async () => {
		const db = await store(rows(10));
		await db.updateAsync({ n: 1 }, { $set: { shared: "fleet", groups: ["b", "c"] } });
		await db.updateAsync({ n: 2 }, { $set: { groups: ["a", "a"] } });
		await db.updateAsync({ n: 3 }, { $set: { groups: ["b", "a"] } }); // the same keys in another order
		expect((await db.findAsync({ shared: "fleet" })).map(r => r.n)).toEqual([1]);
		expect(await db.countAsync({ shared: null })).toBe(9);
		expect((await db.findAsync({ groups: "c" })).map(r => r.n)).toEqual([1]);
		expect((await db.findAsync({ groups: "a" })).map(r => r.n).sort((x, y) => x - y)).toEqual([0, 2, 3, 4, 5, 6, 7, 8, 9]);
		expect((await db.findAsync({ groups: "b" })).map(r => r.n).sort((x, y) => x - y)).toEqual([1, 3, 5, 7, 9]);
	});

	it("undoes its own swaps in the index that fails: a pair keeping its unique key and another taking it", async () => {
		const db = await store(rows(4));
		await db.updateAsync({ n: 0 }, { $set: { unique: 1 } });
		const holder = await db.findOneAsync({ unique: 1 });
		// n 0 keeps unique 1 (swapped in place), n 2 takes it too: refused, and n 0's entry is the stored document again.
		await expect(db.updateAsync({ n: { $in: [0, 2] } }, { $set: { unique: 1, status: "taken" } }, { multi: true })).rejects.toMatchObject({ errorType: "uniqueViolated" });
		expect(await db.findAsync({ unique: 1 })).toEqual([holder]);
		expect(await db.countAsync({ status: "taken" })).toBe(0);
		await db.updateAsync({ n: 0 }, { $set: { status: "kept" } });
		expect((await db.findAsync({ unique: 1 })).map(r => r.status)).toEqual(["kept"]);
	});

	it("leaves a document matched twice by one update to NeDB, which refuses it as before", async () => {
		const db = await store(rows(4));
		// A range over an array field lists n 1 (groups a and b) once per element in range.
		await expect(db.updateAsync({ groups: { $gte: "a" } }, { $set: { status: "twice" } }, { multi: true })).rejects.toMatchObject({ errorType: "uniqueViolated" });
		expect(await db.countAsync({ status: "twice" })).toBe(0);
		expect(await db.countAsync({ groups: "b", status: "online" })).toBe(2);
	});

	it("leaves every index as it was when an update breaks a unique index, the in-place swaps included", async () => {
		const db = await store(rows(4));
		await db.updateAsync({ n: 0 }, { $set: { unique: 1 } });
		await db.updateAsync({ n: 1 }, { $set: { unique: 2 } });
		await expect(db.updateAsync({}, { $set: { unique: 3, status: "gone" } }, { multi: true })).rejects.toMatchObject({ errorType: "uniqueViolated" });
		expect(await db.countAsync({ status: "gone" })).toBe(0);
		expect((await db.findAsync({ shared: null })).map(r => r.status)).toEqual(["online", "online", "online", "online"]);
		expect((await db.findOneAsync({ unique: 2 }))?.n).toBe(1);
		expect(await db.countAsync({ groups: "a", status: "online" })).toBe(4);
		// The documents the indexes hold are the stored ones, not the failed update's.
		const held = await db.findAsync({ shared: null });
		await db.updateAsync({ n: 2 }, { $set: { status: "later" } });
		expect((await db.findAsync({ shared: null, status: "later" })).map(r => r.n)).toEqual([2]);
		expect(held).toHaveLength(4);
	});
});
