/** shared/ids.ts: UUID v7 ids (RFC 9562), their ordering, `isId` and the params rule. */
import { randomUUID } from "node:crypto";
import { Errors as MoleculerErrors, ServiceBroker } from "moleculer";
import { ID_RULE, isId, newId } from "../../shared/ids";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function bytesOf(id: string): Buffer {
	return Buffer.from(id.replace(/-/g, ""), "hex");
}

const timestampOf = (id: string): number => bytesOf(id).readUIntBE(0, 6);
/** The 12 bits after the version nibble: the per-millisecond counter. */
const counterOf = (id: string): number => bytesOf(id).readUInt16BE(6) & 0xfff;

type IdsModule = typeof import("../../shared/ids");

/** A fresh copy of shared/ids.ts (its per-process clock and counter start from scratch). */
async function freshIds(): Promise<IdsModule> {
	jest.resetModules();
	return import("../../shared/ids");
}

describe("newId", () => {
	it("is a lower-case UUID string of version 7 and the RFC 9562 variant", () => {
		for (let i = 0; i < 500; i++) {
			const id = newId();
			expect(id).toMatch(UUID);
			const bytes = bytesOf(id);
			expect(bytes[6] >> 4).toBe(0x7);
			expect(bytes[8] >> 6).toBe(0b10);
		}
	});

	it("starts with the 48-bit millisecond timestamp of its creation", async () => {
		const ids = await freshIds();
		const before = Date.now();
		const id = ids.newId();
		expect(timestampOf(id)).toBeGreaterThanOrEqual(before);
		expect(timestampOf(id)).toBeLessThanOrEqual(Date.now());
		const later = Date.UTC(2100, 0, 2, 3, 4, 5, 678);
		expect(timestampOf(ids.newId(later))).toBe(later);
		expect(timestampOf(ids.newId(later + 1))).toBe(later + 1);
	});

	it("sorts by creation time across milliseconds", async () => {
		const ids = await freshIds();
		const base = Date.UTC(2025, 5, 1);
		const times = [0, 1, 2, 255, 256, 65_535, 65_536, 86_400_000, 10 * 365 * 86_400_000].map(d => base + d);
		const made = times.map(t => ids.newId(t));
		expect(made.map(timestampOf)).toEqual(times);
		expect([...made].reverse().sort()).toEqual(made);
	});

	it("sorts in creation order within one millisecond (counter), borrowing the next one when the counter runs out", async () => {
		const ids = await freshIds();
		const t = Date.UTC(2031, 0, 1);
		const made = Array.from({ length: 5000 }, () => ids.newId(t));
		expect(new Set(made).size).toBe(made.length);
		expect([...made].sort()).toEqual(made);
		expect(counterOf(made[0])).toBeLessThan(0x400);
		expect(timestampOf(made[0])).toBe(t);
		// the counter counts up by one inside a millisecond…
		const sameMs = made.filter(id => timestampOf(id) === t);
		expect(sameMs.length).toBeGreaterThanOrEqual(0x1000 - 0x400);
		sameMs.forEach((id, i) => expect(counterOf(id)).toBe(counterOf(made[0]) + i));
		expect(counterOf(sameMs[sameMs.length - 1])).toBe(0xfff);
		// …and then continues in the next one, never going back
		const next = made[sameMs.length];
		expect(timestampOf(next)).toBe(t + 1);
		expect(counterOf(next)).toBe(0);
		expect(Math.max(...made.map(timestampOf))).toBe(t + 1);
	});

	it("keeps sorting in creation order when the clock goes back", async () => {
		const ids = await freshIds();
		const t = Date.UTC(2032, 0, 1);
		const first = ids.newId(t);
		const afterJump = ids.newId(t - 60_000);
		expect(afterJump > first).toBe(true);
		expect(timestampOf(afterJump)).toBe(t);
	});

	it("sorts in creation order when made one after another in real time", () => {
		const made = Array.from({ length: 20_000 }, () => newId());
		expect(new Set(made).size).toBe(made.length);
		expect([...made].sort()).toEqual(made);
	});
});

describe("isId", () => {
	it("accepts ids from newId", () => {
		expect(isId(newId())).toBe(true);
		expect(isId(newId(0))).toBe(true);
	});

	it.each([
		["a UUID v4", randomUUID()],
		["upper case", newId().toUpperCase()],
		["no dashes", newId().replace(/-/g, "")],
		["wrong variant", newId().replace(/^(.{19})./, "$1c")],
		["surrounding spaces", ` ${newId()} `],
		["trailing text", `${newId()}x`],
		["an operator-looking string", "{\"$gt\":\"\"}"],
		["empty", ""]
	])("rejects %s", (_name, value) => {
		expect(isId(value)).toBe(false);
	});

	it.each([[undefined], [null], [42], [{ $gt: "" }], [[newId()]]])("rejects the non-string %p", value => {
		expect(isId(value)).toBe(false);
	});
});

describe("ID_RULE in action params", () => {
	let broker: ServiceBroker;
	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, validator: true });
		broker.createService({
			name: "ids",
			actions: { get: { params: { id: ID_RULE }, handler: ctx => ({ id: (ctx.params as { id: string }).id }) } }
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	it("accepts an id", async () => {
		const id = newId();
		await expect(broker.call("ids.get", { id })).resolves.toEqual({ id });
	});

	it.each([["not-an-id"], [randomUUID()], [{ $gt: "" }], [12]])("rejects %p with a ValidationError on the id field", async value => {
		const err: unknown = await broker.call("ids.get", { id: value }).then(
			() => null,
			(e: unknown) => e
		);
		expect(err).toBeInstanceOf(MoleculerErrors.ValidationError);
		const data = (err as MoleculerErrors.ValidationError).data as Array<{ field: string; message: string }>;
		expect(data.map(d => d.field)).toEqual(["id"]);
	});

	it("says 'is not a valid id' for a string of the wrong shape", async () => {
		const err = await broker.call("ids.get", { id: "nope" }).catch((e: MoleculerErrors.ValidationError) => e);
		const data = (err as MoleculerErrors.ValidationError).data as Array<{ message: string }>;
		expect(data[0].message).toBe("is not a valid id");
	});
});
