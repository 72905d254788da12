/**
 * The pure parts around the engine: schedules indexed by target, and manifests built from a
 * resolution with an ETag that depends only on what plays.
 */
import { resolve, type DisplayTarget, type ScheduleRule } from "../../services/scheduling/engine";
import { buildManifest, effectiveItems, etagMatches, etagOf, mainZone, manifestContentIds, type ContentInfo, type LayoutData, type PlaylistData } from "../../services/scheduling/manifest";
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

describe("layout manifest", () => {
	const at = new Date("2026-06-01T12:00:00Z");
	const playlists = new Map<string, PlaylistData>([
		["main", { id: "main", name: "Main loop", items: [{ id: "m1", contentId: "video", durationMs: null }, { id: "m2", contentId: "poster", durationMs: 4000 }] }],
		["ticker", { id: "ticker", name: "Ticker", items: [{ id: "t1", contentId: "news", durationMs: null }] }],
		["logo", { id: "logo", name: "Logo", items: [{ id: "l1", contentId: "mark", durationMs: null }] }]
	]);
	const library = new Map([
		["video", content("video", { type: "video", mimeType: "video/mp4", durationMs: 30_000 })],
		["poster", content("poster")],
		["news", content("news", { type: "web", mimeType: "text/html", url: "https://example.com/news", sha256: null, size: 0, width: null, height: null })],
		["mark", content("mark")],
		["backdrop", content("backdrop")]
	]);
	const zoneOf = (id: string, playlistId: string, fields: Partial<LayoutData["zones"][number]> = {}): LayoutData["zones"][number] => ({
		id,
		name: `Zone ${id}`,
		x: 0,
		y: 0,
		width: 1,
		height: 1,
		zIndex: 0,
		playlistId,
		...fields
	});
	const screen: LayoutData = {
		id: "layout1",
		name: "Lobby",
		width: 1920,
		height: 1080,
		backgroundColor: "#101010",
		backgroundContentId: "backdrop",
		zones: [
			zoneOf("ticker", "ticker", { y: 0.85, height: 0.15, zIndex: 2 }),
			zoneOf("main", "main", { height: 0.85, zIndex: 1 }),
			zoneOf("logo", "logo", { x: 0.9, width: 0.1, height: 0.1, zIndex: 2 })
		]
	};
	const schedule = rule({ layoutId: "layout1", playlistId: null, targets: { displayIds: ["d1"] } });
	const resolution = resolve(display, [schedule], [], at);
	const build = (overrides: Partial<Parameters<typeof buildManifest>[0]> = {}) =>
		buildManifest({ displayId: "d1", resolution, playlist: null, layout: screen, playlists, scheduleName: "Rule", overrideName: null, content: library, at, ...overrides });
	const zoneEtags = (m: ReturnType<typeof build>) => Object.fromEntries((m.layout?.zones ?? []).map(z => [z.id, z.etag]));

	it("lists the zones in drawing order (lowest zIndex first, listed order among equals), each with its playlist and items", () => {
		expect(resolution).toMatchObject({ source: "schedule", playlistId: null, layoutId: "layout1" });
		const m = build();
		expect(m.layout).toMatchObject({ id: "layout1", name: "Lobby", width: 1920, height: 1080, backgroundColor: "#101010" });
		expect(m.layout?.zones.map(z => [z.id, z.zIndex])).toEqual([
			["main", 1],
			["ticker", 2],
			["logo", 2]
		]);
		expect(m.layout?.zones[0]).toEqual({
			id: "main",
			name: "Zone main",
			x: 0,
			y: 0,
			width: 1,
			height: 0.85,
			zIndex: 1,
			playlist: { id: "main", name: "Main loop" },
			etag: expect.stringMatching(/^"[A-Za-z0-9_-]{32}"$/),
			items: [
				expect.objectContaining({ contentId: "video", type: "video", url: "/api/v1/device/content/video", durationMs: 30_000 }),
				expect.objectContaining({ contentId: "poster", durationMs: 4000 })
			]
		});
		expect(m.layout?.zones[1].items).toEqual([expect.objectContaining({ contentId: "news", url: "https://example.com/news", durationMs: 10_000 })]);
		// A zone whose playlist is gone plays nothing, and says so.
		const gone = build({ playlists: new Map([...playlists].filter(([id]) => id !== "ticker")) });
		expect(gone.layout?.zones.find(z => z.id === "ticker")).toMatchObject({ playlist: null, items: [] });
	});

	it("gives a player that knows nothing of layouts the largest zone (the first listed among equals) as its playlist and items", () => {
		const m = build();
		expect(m.playlist).toEqual({ id: "main", name: "Main loop" });
		expect(m.items.map(i => i.contentId)).toEqual(["video", "poster"]);
		expect(m.items).toEqual(m.layout?.zones[0].items);
		expect(mainZone([{ id: "a", width: 0.5, height: 1 }, { id: "b", width: 1, height: 0.5 }, { id: "c", width: 0.4, height: 1 }])?.id).toBe("a");
		expect(mainZone([{ id: "a", width: 0.2, height: 0.2 }, { id: "b", width: 0.5, height: 0.5 }])?.id).toBe("b");
		expect(mainZone([])).toBeNull();
		// The main zone is chosen by area, not by drawing order: raising a small zone changes nothing.
		const raised = build({ layout: { ...screen, zones: screen.zones.map(z => (z.id === "logo" ? { ...z, zIndex: -5 } : z)) } });
		expect(raised.layout?.zones[0].id).toBe("logo");
		expect(raised.playlist?.id).toBe("main");
		// No zones: nothing for old players, and no crash.
		expect(build({ layout: { ...screen, zones: [] } })).toMatchObject({ playlist: null, items: [], layout: { zones: [] } });
		// A playlist rather than a layout: layout is null.
		expect(build({ layout: null, playlist: playlists.get("ticker") ?? null }).layout).toBeNull();
	});

	it("each zone's etag is stable over time and changes with its position or its items, leaving the other zones' alone", () => {
		const base = build();
		const etags = zoneEtags(base);
		expect(new Set(Object.values(etags)).size).toBe(3);
		const later = new Date(at.getTime() + 3600_000);
		expect(zoneEtags(build({ at: later, resolution: resolve(display, [schedule], [], later) }))).toEqual(etags);
		// The layout's name, colour and frame are not a zone's business.
		const reframed = build({ layout: { ...screen, name: "Renamed", backgroundColor: null, width: 16, height: 9 } });
		expect(zoneEtags(reframed)).toEqual(etags);
		expect(reframed.etag).not.toBe(base.etag);

		const moved = (id: string, fields: Partial<LayoutData["zones"][number]>) => zoneEtags(build({ layout: { ...screen, zones: screen.zones.map(z => (z.id === id ? { ...z, ...fields } : z)) } }));
		for (const fields of [{ x: 0.05 }, { y: 0.8 }, { width: 0.9 }, { height: 0.1 }, { zIndex: 3 }]) {
			const after = moved("ticker", fields);
			expect([fields, after.ticker === etags.ticker]).toEqual([fields, false]);
			expect([fields, after.main, after.logo]).toEqual([fields, etags.main, etags.logo]);
		}
		// An item removed from the ticker's playlist (its content deleted) moves the ticker only.
		const withoutNews = new Map(library);
		withoutNews.delete("news");
		const after = zoneEtags(build({ content: withoutNews }));
		expect(after.ticker).not.toBe(etags.ticker);
		expect([after.main, after.logo]).toEqual([etags.main, etags.logo]);
		// A content rename or duration change is an item change.
		const renamed = new Map(library);
		renamed.set("poster", content("poster", { name: "Poster v2" }));
		const afterRename = zoneEtags(build({ content: renamed }));
		expect(afterRename.main).not.toBe(etags.main);
		expect([afterRename.ticker, afterRename.logo]).toEqual([etags.ticker, etags.logo]);
		// The same playlist in two zones at the same place has the same items: only the place tells them apart.
		const twins = build({ layout: { ...screen, zones: [zoneOf("a", "main"), zoneOf("b", "main", { x: 0.5, width: 0.5 })] } });
		expect(twins.layout?.zones[0].items).toEqual(twins.layout?.zones[1].items);
		expect(twins.layout?.zones[0].etag).not.toBe(twins.layout?.zones[1].etag);
	});

	it("shows the background only when it is ready and inside its validity window, and its edges count", () => {
		expect(build().layout?.background).toMatchObject({ contentId: "backdrop", type: "image", url: "/api/v1/device/content/backdrop" });
		const processing = new Map(library);
		processing.set("backdrop", content("backdrop", { status: "processing" }));
		expect(build({ content: processing }).layout?.background).toBeNull();
		const missing = new Map(library);
		missing.delete("backdrop");
		expect(build({ content: missing }).layout?.background).toBeNull();
		expect(build({ layout: { ...screen, backgroundContentId: null } }).layout?.background).toBeNull();

		const future = new Map(library);
		future.set("backdrop", content("backdrop", { validFrom: "2026-06-01T18:00:00.000Z" }));
		const notYet = build({ content: future });
		expect(notYet.layout?.background).toBeNull();
		expect(notYet.validUntil).toBe("2026-06-01T18:00:00.000Z");
		const ending = new Map(library);
		ending.set("backdrop", content("backdrop", { validUntil: "2026-06-01T13:00:00.000Z" }));
		const shown = build({ content: ending });
		expect(shown.layout?.background?.contentId).toBe("backdrop");
		expect(shown.validUntil).toBe("2026-06-01T13:00:00.000Z");
		const ended = new Map(library);
		ended.set("backdrop", content("backdrop", { validUntil: "2026-06-01T11:00:00.000Z" }));
		expect(build({ content: ended })).toMatchObject({ validUntil: null, layout: { background: null } });
		// A not-ready background's window is no edge: it will not show at that instant either.
		const notReady = new Map(library);
		notReady.set("backdrop", content("backdrop", { status: "processing", validUntil: "2026-06-01T13:00:00.000Z" }));
		expect(build({ content: notReady }).validUntil).toBeNull();
	});

	it("validUntil is the earliest edge across the resolution, every zone's content and the background", () => {
		expect(build().validUntil).toBeNull();
		const edged = new Map(library);
		edged.set("poster", content("poster", { validUntil: "2026-06-01T16:00:00.000Z" }));
		edged.set("news", content("news", { type: "web", validFrom: "2026-06-01T15:00:00.000Z" }));
		edged.set("mark", content("mark", { validUntil: "2026-06-01T14:00:00.000Z" }));
		const m = build({ content: edged });
		expect(m.validUntil).toBe("2026-06-01T14:00:00.000Z");
		expect(m.layout?.zones.find(z => z.id === "ticker")?.items).toEqual([]);
		edged.set("backdrop", content("backdrop", { validUntil: "2026-06-01T13:30:00.000Z" }));
		expect(build({ content: edged }).validUntil).toBe("2026-06-01T13:30:00.000Z");
		// The schedule's own edge, when earlier, wins.
		const windowed = rule({ layoutId: "layout1", playlistId: null, targets: { displayIds: ["d1"] }, startTime: "09:00", endTime: "14:00" });
		const r = resolve(display, [windowed], [], at);
		expect(build({ content: edged, resolution: r }).validUntil).toBe("2026-06-01T13:00:00.000Z");
		// An edge in a zone that is not the main one moves the manifest's ETag too.
		expect(build({ content: edged }).etag).not.toBe(build().etag);
	});

	it("manifestContentIds names everything a display may download: items, every zone's items and the background", () => {
		expect([...manifestContentIds(build())].sort()).toEqual(["backdrop", "mark", "news", "poster", "video"]);
		const processing = new Map(library);
		processing.set("backdrop", content("backdrop", { status: "processing" }));
		processing.set("mark", content("mark", { validFrom: "2027-01-01T00:00:00.000Z" }));
		expect([...manifestContentIds(build({ content: processing }))].sort()).toEqual(["news", "poster", "video"]);
		const plain = buildManifest({ displayId: "d1", resolution, playlist: playlists.get("ticker") ?? null, scheduleName: null, overrideName: null, content: library, at });
		expect([...manifestContentIds(plain)]).toEqual(["news"]);
		expect([...manifestContentIds({ items: [], layout: null })]).toEqual([]);
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
