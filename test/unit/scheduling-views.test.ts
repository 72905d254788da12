/**
 * services/scheduling/views.ts: stored documents → API views and engine input, API input →
 * stored fields. Every answer that depends on the current instant is asked at a fixed one.
 */
import { Value } from "@sinclair/typebox/value";
import { FormatRegistry } from "@sinclair/typebox";
import { OverrideView, PlaylistView, PreviewView, ScheduleView, TimelineView } from "../../shared/contracts";
import { AppError } from "../../shared/errors";
import { resolve } from "../../services/scheduling/engine";
import { buildManifest, type ContentInfo } from "../../services/scheduling/manifest";
import {
	checkedItems,
	itemFields,
	newScheduleFields,
	overrideOf,
	overridesWithStatus,
	overrideStatus,
	overrideView,
	playlistView,
	previewView,
	ruleOf,
	scheduleChanges,
	scheduleView,
	timelineView,
	weekdays,
	type OverrideDoc,
	type PlaylistDoc,
	type ScheduleDoc
} from "../../services/scheduling/views";

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

/** Exactly the schema: typed as declared and nothing more. */
function expectShape(schema: Parameters<typeof Value.Check>[0], body: unknown): void {
	expect([...Value.Errors(schema, body)].map(e => `${e.path}: ${e.message}`)).toEqual([]);
	expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
}

const stamps = { tenantId: "t1", createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-02T00:00:00.000Z" };

const schedule: ScheduleDoc = {
	id: "s1",
	...stamps,
	name: "Mornings",
	playlistId: "p1",
	targets: { displayIds: ["d1"], groupIds: [], tags: ["lobby"] },
	targetKeys: ["d:d1", "t:lobby"],
	excludeDisplayIds: ["d9"],
	startDate: "2026-01-01",
	endDate: null,
	daysOfWeek: [1, 2],
	startTime: "06:00",
	endTime: null,
	priority: 3
};

function override(fields: Partial<OverrideDoc> = {}): OverrideDoc {
	return {
		id: "o1",
		...stamps,
		name: "Drill",
		playlistId: "p1",
		targets: null,
		excludeDisplayIds: [],
		startsAt: "2026-06-01T10:00:00.000Z",
		endsAt: "2026-06-01T12:00:00.000Z",
		endedAt: null,
		...fields
	};
}

function content(id: string, fields: Partial<ContentInfo> = {}): ContentInfo {
	return { id, name: `Content ${id}`, type: "image", mimeType: "image/png", size: 10, sha256: "abc", width: 64, height: 32, durationMs: 8000, url: null, status: "ready", validFrom: null, validUntil: null, ...fields };
}

describe("documents as the engine takes them", () => {
	it("a schedule: nulls become absent rules", () => {
		expect(ruleOf(schedule)).toEqual({
			id: "s1",
			name: "Mornings",
			playlistId: "p1",
			// A document from before layouts has none.
			layoutId: null,
			priority: 3,
			createdAt: stamps.createdAt,
			targets: schedule.targets,
			excludeDisplayIds: ["d9"],
			startDate: "2026-01-01",
			endDate: undefined,
			daysOfWeek: [1, 2],
			startTime: "06:00",
			endTime: undefined
		});
	});

	it("an override without targets covers every display", () => {
		expect(overrideOf(override()).targets).toBeUndefined();
		expect(overrideOf(override({ targets: { displayIds: [], groupIds: [], tags: ["a"] } })).targets).toEqual({ displayIds: [], groupIds: [], tags: ["a"] });
	});
});

describe("views", () => {
	it("a schedule view leaves the target keys and the tenant out", () => {
		const view = scheduleView(schedule);
		expectShape(ScheduleView, view);
		expect(view).not.toHaveProperty("targetKeys");
		expect(view).not.toHaveProperty("tenantId");
	});

	it("an override's status at an instant: scheduled, active, then ended (at endsAt, or once ended early)", () => {
		const o = override();
		expect(overrideStatus(o, Date.parse("2026-06-01T09:59:59Z"))).toBe("scheduled");
		expect(overrideStatus(o, Date.parse("2026-06-01T10:00:00Z"))).toBe("active");
		expect(overrideStatus(o, Date.parse("2026-06-01T12:00:00Z"))).toBe("ended");
		expect(overrideStatus(override({ endedAt: "2026-06-01T09:00:00.000Z" }), Date.parse("2026-06-01T09:30:00Z"))).toBe("ended");
		const view = overrideView(o, Date.parse("2026-06-01T11:00:00Z"));
		expectShape(OverrideView, view);
		expect(view).toMatchObject({ status: "active", targets: null, endedAt: null });
	});

	it("each status as a query on the stored fields (endedAt, startsAt, endsAt)", () => {
		const now = "2026-06-01T11:00:00.000Z";
		expect(overridesWithStatus("active", now)).toEqual({ endsAt: { $gt: now }, startsAt: { $lte: now }, endedAt: null });
		expect(overridesWithStatus("scheduled", now)).toEqual({ startsAt: { $gt: now }, endedAt: null });
		expect(overridesWithStatus("ended", now)).toEqual({ $or: [{ endsAt: { $lte: now } }, { endedAt: { $ne: null } }] });
	});

	it("a playlist view: effective durations, which are the item's own, the total, and items whose content is gone left out", () => {
		const doc: PlaylistDoc = {
			id: "p1",
			...stamps,
			name: "Main",
			items: [
				{ id: "i1", contentId: "c1", durationMs: null },
				{ id: "i2", contentId: "c2", durationMs: 5000 },
				{ id: "i3", contentId: "gone", durationMs: 1000 }
			],
			contentIds: ["c1", "c2", "gone"]
		};
		const view = playlistView(doc, new Map([["c1", content("c1")], ["c2", content("c2", { type: "web" })]]));
		expectShape(PlaylistView, view);
		expect(view.items.map(i => [i.id, i.durationMs, i.customDuration, i.type])).toEqual([
			["i1", 8000, false, "image"],
			["i2", 5000, true, "web"]
		]);
		expect(view.totalDurationMs).toBe(13_000);
	});

	it("a preview and a timeline are exactly their schemas", () => {
		const display = { id: "d1", timezone: "America/New_York", tenantTimezone: "UTC", groupIds: [], tags: ["lobby"], defaultPlaylistId: null };
		const at = new Date("2026-06-01T12:00:00Z");
		const resolution = resolve(display, [ruleOf(schedule)], [], at, { candidates: true });
		const manifest = buildManifest({ displayId: "d1", resolution, playlist: { id: "p1", name: "Main", items: [{ id: "i1", contentId: "c1", durationMs: null }] }, scheduleName: "Mornings", overrideName: null, content: new Map([["c1", content("c1")]]), at });
		const preview = previewView(resolution, manifest);
		expectShape(PreviewView, preview);
		expect(preview).toMatchObject({ source: "schedule", schedule: { id: "s1", name: "Mornings" }, timezone: "America/New_York" });

		const segments = [{ start: "2026-03-08T06:00:00.000Z", end: "2026-03-08T08:00:00.000Z", source: "none" as const, playlistId: null, layoutId: null, scheduleId: null }];
		const view = timelineView("America/New_York", new Date(segments[0].start), new Date(segments[0].end), segments);
		expectShape(TimelineView, view);
		// Across the spring-forward jump: 01:00 EST to 04:00 EDT.
		expect(view.segments[0]).toMatchObject({ localStart: "2026-03-08T01:00:00-05:00", localEnd: "2026-03-08T04:00:00-04:00" });
	});
});

describe("input → stored fields", () => {
	it("playlist items: unknown content is a 422 naming each item; a current item's id is kept once, others are fresh", () => {
		const known = new Map([["c1", true]]);
		let n = 0;
		const fresh = () => `new-${++n}`;
		try {
			checkedItems([{ contentId: "c1" }, { contentId: "x" }, { contentId: "y" }], known, [], fresh);
			throw new Error("expected a 422");
		} catch (err) {
			expect(err).toBeInstanceOf(AppError);
			expect((err as AppError).data).toEqual([expect.objectContaining({ field: "items[1].contentId" }), expect.objectContaining({ field: "items[2].contentId" })]);
		}
		const previous = [{ id: "keep", contentId: "c1", durationMs: null }];
		const items = checkedItems([{ id: "keep", contentId: "c1" }, { id: "keep", contentId: "c1", durationMs: 2000 }, { id: "stranger", contentId: "c1" }], known, previous, fresh);
		expect(items).toEqual([
			{ id: "keep", contentId: "c1", durationMs: null },
			{ id: "new-1", contentId: "c1", durationMs: 2000 },
			{ id: "new-2", contentId: "c1", durationMs: null }
		]);
		expect(itemFields(items).contentIds).toEqual(["c1"]);
	});

	it("weekdays are sorted; none means every day", () => {
		expect(weekdays([5, 1, 3])).toEqual([1, 3, 5]);
		expect(weekdays([])).toBeNull();
		expect(weekdays(null)).toBeNull();
	});

	it("a new schedule stores every field: lists filled in, absent rules null, priority 0", () => {
		expect(newScheduleFields({ name: "R", playlistId: "p1", targets: { tags: ["a"] }, daysOfWeek: [3, 1] }, { playlistId: "p1", layoutId: null })).toEqual({
			name: "R",
			playlistId: "p1",
			layoutId: null,
			targets: { displayIds: [], groupIds: [], tags: ["a"] },
			targetKeys: ["t:a"],
			excludeDisplayIds: [],
			startDate: null,
			endDate: null,
			daysOfWeek: [1, 3],
			startTime: null,
			endTime: null,
			priority: 0
		});
	});

	it("a schedule PATCH sets what was sent, in its order: null clears, targets bring their keys, absent fields stay", () => {
		const set = scheduleChanges({ startTime: null, targets: { groupIds: ["g1"] }, daysOfWeek: [7, 6], name: "N" }, null);
		expect(set).toEqual({ startTime: null, targets: { displayIds: [], groupIds: ["g1"], tags: [] }, daysOfWeek: [6, 7], name: "N", targetKeys: ["g:g1"] });
		expect(Object.keys(set)).toEqual(["startTime", "targets", "daysOfWeek", "name", "targetKeys"]);
		expect(scheduleChanges({ priority: 2 }, null)).toEqual({ priority: 2 });
		expect(scheduleChanges({ daysOfWeek: null }, null)).toEqual({ daysOfWeek: null });
		// Naming what it plays clears the other: a layout replaces the playlist.
		expect(scheduleChanges({ layoutId: "l1" }, { playlistId: null, layoutId: "l1" })).toEqual({ playlistId: null, layoutId: "l1" });
	});
});
