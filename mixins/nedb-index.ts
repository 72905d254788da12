/**
 * NeDB's index updates, in place when a document's key does not change.
 *
 * NeDB re-indexes a document on every update by removing it from each of the collection's indexes
 * and inserting it again, and removing one document from a key many documents share (a null
 * default, a provisioning key's whole fleet, a big group) rebuilds that key's whole list. So
 * 10 000 displays of one tenant going offline at once cost time in the square of their number:
 * 62 % of the offline sweep's time was that (`npm run bench -- scheduling`, the mass outage), and
 * a fleet's first heartbeats (each display's document turns online) paid the same.
 *
 * Here, for each pair whose key in an index is the same before and after (the usual case: a
 * status or a name changed, not the indexed field), the index's entry is swapped for the new
 * document where it stands (one native indexOf in the key's list); only the other pairs go through
 * NeDB's own remove-and-insert. What NeDB promises holds: a failing update changes no index (the
 * swaps are undone before the error goes on), and its rollback (revertUpdate) comes back through
 * here as an update the other way.
 *
 * The MongoDB path is not concerned: this only changes the NeDB library's Index class, loaded by
 * the data layer (mixins/db.mixin.ts).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS modules of NeDB without typings
const Index = require("@seald-io/nedb/lib/indexes") as IndexClass;
// eslint-disable-next-line @typescript-eslint/no-require-imports -- as above
const model = require("@seald-io/nedb/lib/model") as { getDotValue(doc: object, field: string): unknown };

type Doc = object;
interface Pair {
	oldDoc: Doc;
	newDoc: Doc;
}
interface NeDbIndex {
	fieldName: string;
	sparse: boolean;
	/** The key's list of documents: the tree node's own array (empty and new when the key is absent). */
	tree: { search(key: unknown): Doc[] };
}
interface IndexClass {
	prototype: NeDbIndex & { update(oldDoc: Doc | Pair[], newDoc?: Doc): void };
}

type Primitive = string | number | boolean | null | undefined;
// NaN is left to NeDB: its comparison files NaN under whichever number it meets first.
const isPrimitive = (v: unknown): v is Primitive => v === null || v === undefined || typeof v === "string" || (typeof v === "number" && !Number.isNaN(v)) || typeof v === "boolean";

/**
 * The distinct keys a document has in an index (a missing field is the key `undefined`, as NeDB
 * files it, unless the index is sparse); null when they are not all primitives (NeDB's own path then).
 */
function keysOf(index: NeDbIndex, doc: Doc): Primitive[] | null {
	const key = model.getDotValue(doc, index.fieldName);
	if (key === undefined && index.sparse) return [];
	if (Array.isArray(key)) return key.every(isPrimitive) ? [...new Set(key)] : null;
	return isPrimitive(key) ? [key] : null;
}

/** Puts `to` where `from` stands in each of its keys' lists, when both have the same keys; false (nothing changed) otherwise. */
function swapInPlace(index: NeDbIndex, from: Doc, to: Doc): boolean {
	const before = keysOf(index, from);
	const after = keysOf(index, to);
	if (!before || !after || before.length !== after.length) return false;
	const same = new Set<Primitive>(after);
	if (!before.every(key => same.has(key))) return false;
	const spots: Array<[Doc[], number]> = [];
	for (const key of before) {
		const list = index.tree.search(key);
		const at = list.indexOf(from);
		if (at === -1) return false;
		spots.push([list, at]);
	}
	for (const [list, at] of spots) list[at] = to;
	return true;
}

const nedbUpdate = Index.prototype.update;

Index.prototype.update = function (this: NeDbIndex, oldDoc: Doc | Pair[], newDoc?: Doc): void {
	const pairs: Pair[] = Array.isArray(oldDoc) ? oldDoc : [{ oldDoc, newDoc: newDoc as Doc }];
	// One document twice (a range query on an array field lists it once per matching element):
	// NeDB's own path, which refuses it.
	if (new Set(pairs.map(pair => pair.oldDoc)).size !== pairs.length) return nedbUpdate.call(this, pairs);
	const swapped: Pair[] = [];
	const rest: Pair[] = [];
	for (const pair of pairs) (swapInPlace(this, pair.oldDoc, pair.newDoc) ? swapped : rest).push(pair);
	if (!rest.length) return;
	try {
		nedbUpdate.call(this, rest);
	} catch (err) {
		for (const pair of swapped) swapInPlace(this, pair.newDoc, pair.oldDoc);
		throw err;
	}
};

export {};
