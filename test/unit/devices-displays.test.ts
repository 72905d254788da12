/**
 * services/devices/displays.ts: the display view (the document with its live presence), the
 * targeting view scheduling gets, and the queries behind GET /displays, displaysFor and PATCH.
 */
import { assertSafeQuery } from "../../mixins/db.mixin";
import { displayChanges, displayView, groupView, listQuery, selectorQuery, targetingView, type DisplayDoc } from "../../services/devices/displays";
import { DisplayView } from "../../shared/contracts";
import type { Presence } from "../../shared/contracts";

const T0 = "2026-11-22T10:00:00.000Z";

const display: DisplayDoc = {
	id: "d-1",
	tenantId: "t-1",
	name: "Lobby",
	status: "pending",
	timezone: "Europe/Paris",
	tags: ["menu"],
	groupIds: ["g-1"],
	defaultPlaylistId: null,
	hardwareId: "hw-1",
	model: "TV",
	resolution: "1920x1080",
	createdAt: T0,
	updatedAt: T0
};

describe("displayView", () => {
	it("a document without presence: its own status, nothing live, no tenant or hardware id", () => {
		const view = displayView(display);
		expect(view).toEqual({
			id: "d-1",
			name: "Lobby",
			status: "pending",
			timezone: "Europe/Paris",
			tags: ["menu"],
			groupIds: ["g-1"],
			defaultPlaylistId: null,
			defaultLayoutId: null,
			scheduledOff: false,
			lastSeenAt: null,
			metrics: null,
			appVersion: null,
			currentContentId: null,
			model: "TV",
			resolution: "1920x1080",
			createdAt: T0,
			updatedAt: T0
		});
		// Exactly the fields the contract publishes.
		expect(Object.keys(view).sort()).toEqual(Object.keys(DisplayView.properties).sort());
	});

	it("live presence and the status flag win over the document", () => {
		const presence: Presence = { lastSeenAt: "2026-11-22T11:00:00.000Z", metrics: { cpu: 5 }, appVersion: "2.0.0", currentContentId: "c-9", uptimeSec: 10 };
		expect(displayView({ ...display, status: "online", lastSeenAt: "2026-11-22T10:30:00.000Z" }, presence, "offline")).toMatchObject({
			status: "offline",
			lastSeenAt: presence.lastSeenAt,
			metrics: { cpu: 5 },
			appVersion: "2.0.0",
			currentContentId: "c-9"
		});
		// Presence gone (e.g. expired): the document's last-seen time remains.
		expect(displayView({ ...display, lastSeenAt: "2026-11-22T10:30:00.000Z" }).lastSeenAt).toBe("2026-11-22T10:30:00.000Z");
	});

	it("groups and targeting show what they need", () => {
		expect(groupView({ id: "g-1", tenantId: "t-1", name: "Hall", description: null, createdAt: T0, updatedAt: T0 })).toEqual({ id: "g-1", name: "Hall", description: null, createdAt: T0, updatedAt: T0 });
		expect(targetingView(display)).toEqual({ id: "d-1", timezone: "Europe/Paris", tags: ["menu"], groupIds: ["g-1"], defaultPlaylistId: null, defaultLayoutId: null });
	});
});

describe("queries", () => {
	it("GET /displays filters by status, tag, group and escaped free text", () => {
		expect(listQuery({})).toEqual({});
		const query = listQuery({ status: "online", tag: "menu", groupId: "g-1", q: "caf.*" });
		expect(query).toMatchObject({ status: "online", tags: "menu", groupIds: "g-1" });
		expect(query.$or).toEqual([{ name: /caf\.\*/i }, { tags: /caf\.\*/i }]);
		expect(() => assertSafeQuery(query)).not.toThrow();
	});

	it("a selector is the union of its parts, everything with `all`, nothing when empty", () => {
		expect(selectorQuery({})).toBeNull();
		expect(selectorQuery({ displayIds: [], tags: [] })).toBeNull();
		expect(selectorQuery({ all: true, tags: ["x"] })).toEqual({});
		const query = selectorQuery({ displayIds: ["d-1"], groupIds: ["g-1"], tags: ["menu"], defaultPlaylistIds: ["p-1"] });
		expect(query).toEqual({
			$or: [{ _id: { $in: ["d-1"] } }, { groupIds: { $in: ["g-1"] } }, { tags: { $in: ["menu"] } }, { defaultPlaylistId: { $in: ["p-1"] } }]
		});
		expect(() => assertSafeQuery(query ?? {})).not.toThrow();
	});

	it("a PATCH sets only what it names (null clears), tags and groups without repeats", () => {
		expect(displayChanges({})).toEqual({});
		expect(displayChanges({ name: "New", tags: ["a", "b", "a"], groupIds: ["g", "g"], timezone: null, defaultPlaylistId: null })).toEqual({
			name: "New",
			timezone: null,
			tags: ["a", "b"],
			groupIds: ["g"],
			defaultPlaylistId: null
		});
		// A display defaults to a playlist or a layout: naming one clears the other.
		expect(displayChanges({ defaultPlaylistId: "p-1" })).toEqual({ defaultPlaylistId: "p-1", defaultLayoutId: null });
		expect(displayChanges({ defaultLayoutId: "l-1" })).toEqual({ defaultLayoutId: "l-1", defaultPlaylistId: null });
		expect(displayChanges({ defaultLayoutId: null })).toEqual({ defaultLayoutId: null });
	});
});
