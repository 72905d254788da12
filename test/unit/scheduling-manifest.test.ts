/**
 * The pure parts around the engine: schedules indexed by target, and manifests built from a
 * resolution with an ETag that depends only on what plays.
 */
import { resolve, type DisplayTarget, type ScheduleRule } from "../../services/scheduling/engine";
import { buildManifest, effectiveItems, etagMatches, etagOf, type ContentInfo, type PlaylistData } from "../../services/scheduling/manifest";
import { displayKeys, ScheduleIndex, targetKeys } from "../../services/scheduling/targeting";

const display: DisplayTarget = { id: "d1", timezone: "Europe/London", tenantTimezone: "UTC", groupIds: ["g1"], tags: ["lobby", "ground"], defaultPlaylistId: null };

function content(id: string, fields: Partial<ContentInfo> = {}): ContentInfo {
	return {
		id,
		name: `Content ${id}`,
		type: "image",
		mimeType: "image/png",
		size: 1000,
		sha256: `sha-${id}`,
		width: 1920,
		height: 1080,
		durationMs: 10_000,
		url: `/api/v1/content/${id}/download`,
		status: "ready",
		validFrom: null,
		validUntil: null,
		...fields
	};
}

const rule = (fields: Partial<ScheduleRule>): ScheduleRule => ({ id: "s1", name: "Rule", playlistId: "p1", priority: 0, createdAt: "2026-01-01T00:00:00.000Z", targets: {}, ...fields });

describe("targeting index", () => {
	it("keys a schedule by every display, group and tag it names, and a display by its own", () => {
		expect(targetKeys({ displayIds: ["d1"], groupIds: ["g1"], tags: ["lobby"] })).toEqual(["d:d1", "g:g1", "t:lobby"]);
		expect(targetKeys(undefined)).toEqual([]);
		expect(displayKeys(display)).toEqual(["d:d1", "g:g1", "t:lobby", "t:ground"]);
	});

	it("finds each schedule reaching a display once, and none that does not", () => {
		const byId = rule({ id: "a", targets: { displayIds: ["d1"], tags: ["lobby"] } });
		const byGroup = rule({ id: "b", targets: { groupIds: ["g1"] } });
		const elsewhere = rule({ id: "c", targets: { tags: ["kitchen"], displayIds: ["d2"] } });
		const excluded = rule({ id: "e", targets: { tags: ["ground"] }, excludeDisplayIds: ["d1"] });
		const index = new ScheduleIndex([byId, byGroup, elsewhere, excluded]);
		expect(index.forDisplay(display).map(s => s.id).sort()).toEqual(["a", "b", "e"]);
		expect(index.forDisplay({ id: "d2", groupIds: [], tags: [] }).map(s => s.id)).toEqual(["c"]);
		// Exclusions are the engine's to judge (and report): the index only narrows.
		const r = resolve(display, index.forDisplay(display), [], new Date("2026-06-01T12:00:00Z"));
		expect(r.candidates.find(c => c.scheduleId === "e")).toMatchObject({ matched: false, reason: "excluded" });
	});
});

describe("manifest", () => {
	const at = new Date("2026-06-01T12:00:00Z");
	const playlist: PlaylistData = {
		id: "p1",
		name: "Main",
		items: [
			{ id: "i1", contentId: "c1", durationMs: null },
			{ id: "i2", contentId: "c2", durationMs: 5000 },
			{ id: "i3", contentId: "gone", durationMs: null },
			{ id: "i4", contentId: "web", durationMs: null }
		]
	};
	const library = new Map([
		["c1", content("c1")],
		["c2", content("c2", { width: null, height: null })],
		["web", content("web", { type: "web", mimeType: "text/html", url: "https://example.com/board", sha256: null, size: 0, width: null, height: null })]
	]);
	const schedule = rule({ targets: { displayIds: ["d1"] } });
	const resolution = resolve(display, [schedule], [], at);
	const build = (overrides: Partial<Parameters<typeof buildManifest>[0]> = {}) =>
		buildManifest({ displayId: "d1", resolution, playlist, scheduleName: "Rule", overrideName: null, content: library, at, ...overrides });

	it("lists the playlist's content in order with effective durations, device URLs for files and the page address for web items", () => {
		const m = build();
		expect(m).toMatchObject({ displayId: "d1", source: "schedule", timezone: "Europe/London", playlist: { id: "p1", name: "Main" }, schedule: { id: "s1", name: "Rule" }, override: null, validUntil: null });
		expect(m.items).toEqual([
			{ contentId: "c1", name: "Content c1", type: "image", mimeType: "image/png", url: "/api/v1/device/content/c1", sha256: "sha-c1", size: 1000, durationMs: 10_000, width: 1920, height: 1080 },
			{ contentId: "c2", name: "Content c2", type: "image", mimeType: "image/png", url: "/api/v1/device/content/c2", sha256: "sha-c2", size: 1000, durationMs: 5000 },
			{ contentId: "web", name: "Content web", type: "web", mimeType: "text/html", url: "https://example.com/board", sha256: null, size: 0, durationMs: 10_000 }
		]);
		expect(effectiveItems(playlist, library).map(i => i.id)).toEqual(["i1", "i2", "i4"]);
	});

	it("has an ETag that ignores generatedAt but follows every change to what plays or until when", () => {
		const m = build();
		expect(m.etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
		const { etag, generatedAt, ...body } = m;
		expect(etagOf(body)).toBe(etag);
		expect(generatedAt).toBe(at.toISOString());
		const later = new Date(at.getTime() + 60_000);
		expect(build({ at: later, resolution: resolve(display, [schedule], [], later) }).etag).toBe(etag);

		const renamed = new Map(library);
		renamed.set("c1", content("c1", { name: "Renamed" }));
		const changes = [
			build({ content: renamed }),
			build({ playlist: { ...playlist, items: [...playlist.items].reverse() } }),
			build({ playlist: { ...playlist, name: "Other" } }),
			build({ playlist: null }),
			build({ resolution: { ...resolution, validUntil: "2026-06-02T00:00:00.000Z" } }),
			build({ displayId: "d2" })
		];
		for (const changed of changes) expect(changed.etag).not.toBe(etag);
	});

	it("leaves out content that is not ready or outside its validity window, and ends at the next validity edge", () => {
		const library2 = new Map(library);
		library2.set("c1", content("c1", { validFrom: "2026-06-01T15:00:00.000Z" }));
		library2.set("c2", content("c2", { validUntil: "2026-06-01T13:00:00.000Z" }));
		library2.set("web", content("web", { status: "processing" }));
		const m = build({ content: library2 });
		expect(m.items.map(i => i.contentId)).toEqual(["c2"]);
		expect(m.validUntil).toBe("2026-06-01T13:00:00.000Z");
		const afterwards = new Date("2026-06-01T16:00:00Z");
		expect(build({ content: library2, at: afterwards, resolution: resolve(display, [schedule], [], afterwards) }).items.map(i => i.contentId)).toEqual(["c1"]);
	});

	it("keeps the earlier of the schedule edge and the content edge", () => {
		const windowed = rule({ targets: { displayIds: ["d1"] }, startTime: "09:00", endTime: "14:00" });
		const r = resolve(display, [windowed], [], at);
		// 14:00 in London in June is 13:00Z; a content edge at 13:30Z comes after it.
		const library2 = new Map(library);
		library2.set("c1", content("c1", { validUntil: "2026-06-01T13:30:00.000Z" }));
		expect(build({ resolution: r, content: library2 }).validUntil).toBe("2026-06-01T13:00:00.000Z");
	});
});

describe("If-None-Match", () => {
	const etag = '"abc"';

	it("matches the tag itself, its weak form, one of a list, or *", () => {
		for (const header of ['"abc"', 'W/"abc"', '"x", "abc"', '"x",W/"abc"', "*"]) expect([header, etagMatches(header, etag)]).toEqual([header, true]);
	});

	it("does not match another tag, an unquoted one, or no header", () => {
		for (const header of ['"abd"', "abc", '"abc', "", undefined]) expect([header, etagMatches(header, etag)]).toEqual([header, false]);
	});
});
