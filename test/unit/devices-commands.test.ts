/**
 * services/devices/commands.ts: what a heartbeat hands the screen, which commands it carries for
 * the first time, how a command looks in the CMS, and a display's pending list in the store.
 */
import {
	COMMAND_TTL_MS,
	commandView,
	dueCommands,
	markDelivered,
	pendingCommands,
	pendingOf,
	setPendingCommands,
	updatePendingCommands,
	withoutCommand,
	type CommandDoc,
	type PendingCommand
} from "../../services/devices/commands";
import { MemoryKeyValueStore } from "../../shared/kv";

const T0 = "2026-11-22T10:00:00.000Z";
const at = (ms: number) => new Date(Date.parse(T0) + ms).toISOString();

function doc(fields: Partial<CommandDoc> = {}): CommandDoc {
	return {
		id: "cmd-1",
		tenantId: "t-1",
		displayId: "d-1",
		type: "reboot",
		status: "pending",
		createdAt: T0,
		updatedAt: T0,
		expiresAt: at(COMMAND_TTL_MS),
		deliveredAt: null,
		acknowledgedAt: null,
		result: null,
		...fields
	};
}

const pending = (id: string, expiresAt: string, delivered?: boolean): PendingCommand => ({ id, type: "reload", createdAt: T0, expiresAt, ...(delivered && { delivered }) });

describe("commandView", () => {
	it("shows the document's status and fields, without tenant or display", () => {
		expect(commandView(doc(), new Date(T0))).toEqual({
			id: "cmd-1",
			type: "reboot",
			status: "pending",
			createdAt: T0,
			deliveredAt: null,
			acknowledgedAt: null,
			expiresAt: at(COMMAND_TTL_MS),
			result: null
		});
	});

	it("an unacknowledged command past its expiry shows as expired before the sweep gets to it; an acknowledged one never does", () => {
		const expiry = new Date(at(COMMAND_TTL_MS));
		expect(commandView(doc({ status: "delivered", deliveredAt: at(1000) }), expiry).status).toBe("expired");
		expect(commandView(doc({ status: "delivered" }), new Date(at(COMMAND_TTL_MS - 1))).status).toBe("delivered");
		expect(commandView(doc({ status: "acknowledged", acknowledgedAt: at(2000), result: "ok" }), expiry)).toMatchObject({ status: "acknowledged", result: "ok" });
	});
});

describe("dueCommands", () => {
	it("hands out the unexpired commands (id, type, createdAt) and names those carried for the first time", () => {
		const list = [pending("old", at(1000)), pending("seen", at(60_000), true), pending("new", at(60_000))];
		expect(dueCommands(list, at(1000))).toEqual({
			commands: [
				{ id: "seen", type: "reload", createdAt: T0 },
				{ id: "new", type: "reload", createdAt: T0 }
			],
			firstDelivered: ["new"]
		});
		expect(dueCommands([], T0)).toEqual({ commands: [], firstDelivered: [] });
	});

	it("once marked delivered, a command is still handed out but no longer first", () => {
		const list = markDelivered([pending("a", at(60_000)), pending("b", at(60_000))], ["a"]);
		expect(list.map(c => c.delivered ?? false)).toEqual([true, false]);
		expect(dueCommands(list, T0).firstDelivered).toEqual(["b"]);
		expect(withoutCommand(list, "a").map(c => c.id)).toEqual(["b"]);
	});

	it("a new document joins the list as pending and undelivered", () => {
		expect(pendingOf(doc())).toEqual({ id: "cmd-1", type: "reboot", createdAt: T0, expiresAt: at(COMMAND_TTL_MS) });
	});
});

describe("a display's pending list in the store", () => {
	it("round-trips, updates in place, and an empty list leaves no key", async () => {
		const kv = new MemoryKeyValueStore();
		expect(await pendingCommands(kv, "d-1")).toEqual([]);
		await setPendingCommands(kv, "d-1", [pending("a", at(1))]);
		await updatePendingCommands(kv, "d-1", list => [...list, pending("b", at(2))]);
		expect((await pendingCommands(kv, "d-1")).map(c => c.id)).toEqual(["a", "b"]);
		expect(await pendingCommands(kv, "d-2")).toEqual([]);
		await updatePendingCommands(kv, "d-1", () => []);
		expect(await kv.get("commands:d-1")).toBeNull();
	});

	it("the list lives as long as a command does", async () => {
		let now = Date.parse(T0);
		const kv = new MemoryKeyValueStore(() => now);
		await setPendingCommands(kv, "d-1", [pending("a", at(COMMAND_TTL_MS))]);
		now += COMMAND_TTL_MS - 1;
		expect(await pendingCommands(kv, "d-1")).toHaveLength(1);
		now += 1;
		expect(await pendingCommands(kv, "d-1")).toEqual([]);
	});
});
