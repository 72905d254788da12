/**
 * The web player's pure parts (player/src/model.ts, player/src/sse.ts): what it accepts as a
 * manifest (layouts and power states included), which item plays next, when it fetches again,
 * where a layout's zones go, whether the screen is on, which media it keeps, how web pages are
 * sandboxed, what a play record says, and how the live stream's bytes become events however
 * they are split.
 */
import fc from "fast-check";
import {
	asManifest,
	asPower,
	delayUntil,
	hasContent,
	isShowableUrl,
	layoutColor,
	mainZoneId,
	manifestMedia,
	manifestProgramme,
	mediaToKeep,
	nextPlayable,
	playRecord,
	powerAt,
	refetchDelay,
	rejectedIndexes,
	uuidFromBytes,
	webSandbox,
	zoneProgramme,
	zoneStyle,
	MAX_TIMER_MS,
	MEDIA_KEEP_MS,
	type Manifest,
	type ManifestItem,
	type ManifestLayout,
	type ManifestZone
} from "../../player/src/model";
import { SseParser } from "../../player/src/sse";

function item(contentId: string, extra: Partial<ManifestItem> = {}): ManifestItem {
	return { contentId, name: contentId, type: "image", mimeType: "image/png", url: `/api/v1/device/content/${contentId}`, sha256: `sha-${contentId}`, size: 10, durationMs: 5000, ...extra };
}

const MANIFEST = {
	displayId: "d1",
	etag: '"abc"',
	generatedAt: "2026-11-30T10:00:00.000Z",
	validUntil: "2026-11-30T12:00:00.000Z",
	timezone: "Europe/Berlin",
	playlist: { id: "p1", name: "Lobby" },
	schedule: null,
	source: "schedule",
	items: [item("a"), item("b")],
	layout: null,
	power: null
};

function zone(id: string, extra: Partial<ManifestZone> = {}): ManifestZone {
	return { id, name: id, x: 0, y: 0, width: 1, height: 1, zIndex: 0, playlist: { id: `p-${id}`, name: id }, etag: `"${id}"`, items: [item(`${id}1`)], ...extra };
}

/** A two-zone layout as the server sends it: a main zone over the top 80 %, a ticker below. */
const LAYOUT: ManifestLayout = {
	id: "l1",
	name: "Lobby with ticker",
	width: 1920,
	height: 1080,
	backgroundColor: "#102030",
	background: item("bg", { name: "Backdrop" }),
	mainZoneId: "main",
	zones: [zone("main", { height: 0.8, items: [item("a"), item("b")], playlist: { id: "p1", name: "Lobby" } }), zone("ticker", { y: 0.8, height: 0.2, zIndex: 1, items: [item("t", { type: "web", mimeType: "text/html", url: "https://news.example.org/ticker", sha256: "", size: 0 })] })]
};
const WITH_LAYOUT = { ...MANIFEST, layout: LAYOUT, power: { state: "off" as const, until: "2026-11-30T18:00:00.000Z" } };

describe("asManifest", () => {
	it("accepts the server's manifest as it is", () => {
		expect(asManifest(MANIFEST)).toEqual(MANIFEST);
	});

	it("refuses what is not a manifest", () => {
		for (const value of [null, 1, "x", [], {}, { ...MANIFEST, etag: 1 }, { ...MANIFEST, items: "no" }, { ...MANIFEST, playlist: { id: 1 } }, { ...MANIFEST, validUntil: 5 }]) {
			expect(asManifest(value)).toBeNull();
		}
	});

	it("leaves out items it cannot show instead of failing the manifest", () => {
		const manifest = asManifest({ ...MANIFEST, items: [item("a"), { ...item("b"), type: "hologram" }, { ...item("c"), durationMs: 0 }, null, "x"] });
		expect(manifest?.items.map(i => i.contentId)).toEqual(["a"]);
	});

	it("never throws, whatever it is given", () => {
		fc.assert(fc.property(fc.anything(), value => void asManifest(value)));
		fc.assert(fc.property(fc.array(fc.anything()), items => void asManifest({ ...MANIFEST, items })));
		fc.assert(fc.property(fc.anything(), layout => void asManifest({ ...MANIFEST, layout })));
		fc.assert(fc.property(fc.anything(), power => void asManifest({ ...MANIFEST, power })));
		fc.assert(fc.property(fc.array(fc.anything()), fc.anything(), (zones, background) => void asManifest({ ...MANIFEST, layout: { ...LAYOUT, zones, background } })));
		fc.assert(fc.property(fc.dictionary(fc.constantFrom("x", "y", "width", "height", "zIndex", "etag", "items", "playlist"), fc.anything()), fields => void asManifest({ ...MANIFEST, layout: { ...LAYOUT, zones: [{ ...zone("z"), ...fields }] } })));
	});

	it("takes a manifest of a server that knows no layouts or power schedules as one without them", () => {
		const { layout: _layout, power: _power, ...old } = MANIFEST;
		expect(asManifest(old)).toEqual(MANIFEST);
	});

	it("accepts a layout and a power state as the server sends them", () => {
		expect(asManifest(WITH_LAYOUT)).toEqual(WITH_LAYOUT);
		expect(asManifest({ ...MANIFEST, power: { state: "on", until: null } })?.power).toEqual({ state: "on", until: null });
		// A ratio for a frame, and no background colour (black).
		const ratio = asManifest({ ...WITH_LAYOUT, layout: { ...LAYOUT, width: 16, height: 9, backgroundColor: null, background: null } });
		expect(ratio?.layout).toMatchObject({ width: 16, height: 9, backgroundColor: null, background: null });
	});

	it("refuses a manifest whose layout or power state is malformed (it would show the wrong screen, or light a dark one)", () => {
		const layouts = [
			"x",
			[],
			{ ...LAYOUT, id: 3 },
			{ ...LAYOUT, width: 0 },
			{ ...LAYOUT, height: -9 },
			{ ...LAYOUT, width: 16.5 },
			{ ...LAYOUT, width: "1920" },
			{ ...LAYOUT, height: Number.NaN },
			{ ...LAYOUT, backgroundColor: "red" },
			{ ...LAYOUT, backgroundColor: "#12345" },
			{ ...LAYOUT, backgroundColor: "#102030; background: url(x)" },
			{ ...LAYOUT, zones: "main" },
			{ ...LAYOUT, zones: undefined }
		];
		for (const layout of layouts) expect(asManifest({ ...MANIFEST, layout })).toBeNull();
		const powers = ["off", { state: "dim", until: null }, { state: "off", until: 5 }, { state: "off", until: "tomorrow-ish" }, { until: null }, []];
		for (const power of powers) expect(asManifest({ ...MANIFEST, power })).toBeNull();
	});

	it("leaves out zones it cannot place, items it cannot show, and a background that is not an image", () => {
		const bad = [
			zone("left", { x: -0.1 }),
			zone("wide", { width: 1.2 }),
			zone("flat", { height: 0 }),
			zone("nan", { y: Number.NaN }),
			zone("half", { zIndex: 1.5 }),
			{ ...zone("noetag"), etag: undefined },
			{ ...zone("noitems"), items: null },
			{ ...zone("badlist"), playlist: { id: 7 } },
			null,
			"zone"
		];
		const parsed = asManifest({
			...MANIFEST,
			layout: { ...LAYOUT, background: item("bg", { type: "video" }), zones: [...LAYOUT.zones.map(z => ({ ...z, items: [...z.items, { ...item("x"), type: "hologram" }] })), ...bad] }
		});
		expect(parsed?.layout?.zones.map(z => z.id)).toEqual(["main", "ticker"]);
		expect(parsed?.layout?.zones.map(z => z.items.map(i => i.contentId))).toEqual([["a", "b"], ["t"]]);
		expect(parsed?.layout?.background).toBeNull();
	});

	it("keeps zones in drawing order, lowest zIndex first and the server's order among equals", () => {
		const zones = [zone("top", { zIndex: 5 }), zone("a", { zIndex: 0 }), zone("under", { zIndex: -1 }), zone("b", { zIndex: 0 })];
		expect(asManifest({ ...MANIFEST, layout: { ...LAYOUT, zones } })?.layout?.zones.map(z => z.id)).toEqual(["under", "a", "b", "top"]);
	});
});

describe("layouts", () => {
	it("a zone's box is CSS percentages of the frame, with its z-index", () => {
		expect(zoneStyle({ x: 0, y: 0.8, width: 1, height: 0.2, zIndex: 2 })).toEqual({ left: "0%", top: "80%", width: "100%", height: "20%", zIndex: "2" });
		// No floating-point noise (0.1 × 100 = 10.000000000000002), thirds to four decimals.
		expect(zoneStyle({ x: 0.1, y: 0.7, width: 1 / 3, height: 0.29, zIndex: -1 })).toEqual({ left: "10%", top: "70%", width: "33.3333%", height: "29%", zIndex: "-1" });
	});

	it("the colour behind the zones is the layout's, black without one", () => {
		expect(layoutColor(LAYOUT)).toBe("#102030");
		expect(layoutColor({ backgroundColor: null })).toBe("#000000");
	});

	it("the main zone is the one whose items the manifest also lists for old players: the largest", () => {
		expect(mainZoneId({ ...MANIFEST, layout: LAYOUT })).toBe("main");
		expect(mainZoneId(MANIFEST)).toBeNull();
		expect(mainZoneId({ ...MANIFEST, layout: { ...LAYOUT, mainZoneId: null, zones: [] } })).toBeNull();
		// The server's word wins; a server before mainZoneId (null) leaves it to the rules below.
		expect(mainZoneId({ ...MANIFEST, layout: { ...LAYOUT, mainZoneId: "ticker" } })).toBe("ticker");
		// Equal sizes: the one playing the manifest's items, else its playlist, else the first.
		const twins = [zone("left", { width: 0.5 }), zone("right", { x: 0.5, width: 0.5 })];
		expect(mainZoneId({ playlist: twins[1].playlist, items: twins[1].items, layout: { ...LAYOUT, mainZoneId: null, zones: twins } })).toBe("right");
		expect(mainZoneId({ playlist: twins[1].playlist, items: [], layout: { ...LAYOUT, mainZoneId: null, zones: twins } })).toBe("right");
		expect(mainZoneId({ playlist: null, items: [], layout: { ...LAYOUT, mainZoneId: null, zones: twins } })).toBe("left");
	});

	it("each zone plays its own loop; its plays name its playlist and the manifest's schedule", () => {
		const manifest: Manifest = { ...WITH_LAYOUT, schedule: { id: "s1", name: "Weekdays" } };
		const ticker = zoneProgramme(manifest, LAYOUT.zones[1]);
		expect(ticker).toEqual({ etag: '"ticker"', items: LAYOUT.zones[1].items, playlist: { id: "p-ticker", name: "ticker" }, schedule: { id: "s1", name: "Weekdays" } });
		const at = Date.parse("2026-11-30T10:00:00.000Z");
		expect(playRecord("e1", ticker.items[0], ticker, at, at + 5000)).toMatchObject({ contentId: "t", playlistId: "p-ticker", scheduleId: "s1", completed: true });
		// Without a layout, the manifest itself is the one loop, changing with its etag.
		expect(manifestProgramme(MANIFEST)).toEqual({ etag: MANIFEST.etag, items: MANIFEST.items, playlist: MANIFEST.playlist, schedule: null });
	});

	it("a layout has something to show when any zone has items or it has a background", () => {
		expect(hasContent(MANIFEST)).toBe(true);
		expect(hasContent({ ...MANIFEST, items: [] })).toBe(false);
		expect(hasContent({ items: [], layout: LAYOUT })).toBe(true);
		expect(hasContent({ items: [], layout: { ...LAYOUT, background: null, zones: [zone("z", { items: [] })] } })).toBe(false);
		expect(hasContent({ items: [], layout: { ...LAYOUT, zones: [] } })).toBe(true);
	});
});

describe("manifestMedia", () => {
	it("lists every file of every zone and the background once, the manifest's own items first; web pages are not files", () => {
		const layout = { ...LAYOUT, zones: [...LAYOUT.zones, zone("side", { items: [item("a"), item("s")] })] };
		expect(manifestMedia({ items: MANIFEST.items, layout }).map(i => i.contentId)).toEqual(["a", "b", "bg", "s"]);
		expect(manifestMedia(MANIFEST).map(i => i.contentId)).toEqual(["a", "b"]);
	});

	it("with mediaToKeep, keeps what any zone or the background needs", () => {
		const now = Date.parse("2026-11-30T12:00:00.000Z");
		const layout = { ...LAYOUT, zones: [...LAYOUT.zones, zone("side", { items: [item("s")] })] };
		const keep = mediaToKeep({ "sha-gone": now - MEDIA_KEEP_MS - 1 }, manifestMedia({ items: [], layout }).map(i => i.sha256), now);
		expect([...keep].sort()).toEqual(["sha-a", "sha-b", "sha-bg", "sha-s"]);
	});
});

describe("power", () => {
	const until = "2026-11-30T18:00:00.000Z";
	const at = Date.parse(until);

	it("no power schedule: always on", () => {
		expect(powerAt(null, at)).toEqual({ state: "on", untilMs: null });
	});

	it("the given state until its `until`, the other one from then on (what comes after is the server's to say)", () => {
		expect(powerAt({ state: "off", until }, at - 1)).toEqual({ state: "off", untilMs: at });
		expect(powerAt({ state: "off", until }, at)).toEqual({ state: "on", untilMs: null });
		expect(powerAt({ state: "on", until }, at - 60_000)).toEqual({ state: "on", untilMs: at });
		expect(powerAt({ state: "on", until }, at + 3600_000)).toEqual({ state: "off", untilMs: null });
		expect(powerAt({ state: "off", until: null }, at)).toEqual({ state: "off", untilMs: null });
	});

	it("flips by the server's clock: a local clock 5 s behind waits 5 s less", () => {
		const power = powerAt({ state: "off", until }, at - 60_000);
		expect(delayUntil(power.untilMs!, at - 65_000, 5_000)).toBe(60_000);
		expect(delayUntil(at, at + 10, 0)).toBe(0);
		expect(delayUntil(at + 10 * MAX_TIMER_MS, at, 0)).toBe(MAX_TIMER_MS);
	});

	it("a heartbeat's power state is read like the manifest's: null or absent is none, malformed is undefined", () => {
		expect(asPower({ state: "off", until })).toEqual({ state: "off", until });
		expect(asPower({ state: "on" })).toEqual({ state: "on", until: null });
		expect(asPower(null)).toBeNull();
		expect(asPower(undefined)).toBeNull();
		for (const bad of ["off", 1, { state: "OFF", until: null }, { state: "off", until: "soon" }, { state: "off", until: 1 }]) expect(asPower(bad)).toBeUndefined();
		fc.assert(fc.property(fc.anything(), value => void asPower(value)));
	});
});

describe("nextPlayable", () => {
	const items = [item("a"), item("b"), item("c")];
	const all = () => true;

	it("goes on in order and loops", () => {
		expect([0, 1, 2, 3, 4].map(from => nextPlayable(items, from, all))).toEqual([0, 1, 2, 0, 1]);
	});

	it("skips items that are not ready, and answers -1 when none is", () => {
		const ready = (i: ManifestItem) => i.contentId !== "b";
		expect(nextPlayable(items, 1, ready)).toBe(2);
		expect(nextPlayable(items, 1, () => false)).toBe(-1);
		expect(nextPlayable([], 0, all)).toBe(-1);
	});
});

describe("refetchDelay", () => {
	const at = Date.parse("2026-11-30T12:00:00.000Z");

	it("waits until validUntil by the server's clock", () => {
		expect(refetchDelay("2026-11-30T12:00:00.000Z", at - 60_000, 0)).toBe(60_000);
		// The local clock is 5 s behind the server's: 5 s less to wait.
		expect(refetchDelay("2026-11-30T12:00:00.000Z", at - 60_000, 5_000)).toBe(55_000);
	});

	it("never waits a negative time or past setTimeout's ceiling; never for a manifest that does not expire", () => {
		expect(refetchDelay("2026-11-30T12:00:00.000Z", at + 1_000, 0)).toBe(0);
		expect(refetchDelay("2036-11-30T12:00:00.000Z", at, 0)).toBe(MAX_TIMER_MS);
		expect(refetchDelay(null, at, 0)).toBeNull();
		expect(refetchDelay("not a date", at, 0)).toBeNull();
	});
});

describe("web pages", () => {
	const player = "https://screens.example.com";

	it("keep their own origin only when it is not the player's (a same-origin page could lift its sandbox)", () => {
		expect(webSandbox("https://news.example.org/ticker", player)).toBe("allow-scripts allow-same-origin");
		expect(webSandbox("https://screens.example.com/api/v1/device/manifest", player)).toBe("allow-scripts");
		expect(webSandbox("/relative", player)).toBe("allow-scripts");
	});

	it("only http(s) addresses are shown", () => {
		expect(isShowableUrl("https://example.org", player)).toBe(true);
		expect(isShowableUrl("http://intranet/board", player)).toBe(true);
		for (const url of ["javascript:alert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd", "blob:https://x/1"]) expect(isShowableUrl(url, player)).toBe(false);
	});
});

describe("play records", () => {
	const start = Date.parse("2026-11-30T10:00:00.000Z");

	it("name the item, its playlist and schedule, and whether it played to the end", () => {
		expect(playRecord("e1", item("a"), { playlist: { id: "p1", name: "L" }, schedule: { id: "s1", name: "S" } }, start, start + 5_000)).toEqual({
			eventId: "e1",
			contentId: "a",
			playlistId: "p1",
			scheduleId: "s1",
			startedAt: "2026-11-30T10:00:00.000Z",
			durationMs: 5000,
			completed: true
		});
		const cut = playRecord("e2", item("a"), { playlist: null, schedule: null }, start, start + 1_200);
		expect(cut).toEqual({ eventId: "e2", contentId: "a", startedAt: "2026-11-30T10:00:00.000Z", durationMs: 1200, completed: false });
	});

	it("keep durations within what the API takes", () => {
		expect(playRecord("e", item("a"), { playlist: null, schedule: null }, start, start - 10).durationMs).toBe(0);
		expect(playRecord("e", item("a"), { playlist: null, schedule: null }, start, start + 2 * 86_400_000).durationMs).toBe(86_400_000);
	});

	it("event ids are version 4 UUIDs", () => {
		fc.assert(
			fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), bytes => {
				expect(uuidFromBytes(bytes)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
			})
		);
	});

	it("a 422 names the plays the server can never take", () => {
		const fields = [
			{ field: "events[3].startedAt", message: "outside", type: "range" },
			{ field: "events[0].durationMs", message: "x", type: "number" },
			{ field: "events", message: "x", type: "array" },
			"junk"
		];
		expect([...rejectedIndexes(fields)].sort()).toEqual([0, 3]);
		expect(rejectedIndexes(null).size).toBe(0);
	});
});

describe("SseParser", () => {
	const STREAM = 'retry: 5000\n: connected\n\nevent: manifest\ndata: {"etag":"\\"x\\""}\nid: 1\n\n: keep-alive\n\nevent: command\ndata: {"id":"c1"}\ndata: more\nid: 2\n\n';
	const EXPECTED = [
		{ event: "manifest", data: '{"etag":"\\"x\\""}', id: "1" },
		{ event: "command", data: '{"id":"c1"}\nmore', id: "2" }
	];

	it("reads events, comments and the retry delay", () => {
		const parser = new SseParser();
		expect(parser.feed(STREAM)).toEqual(EXPECTED);
		expect(parser.retryMs).toBe(5000);
	});

	it("gives the same events however the bytes are split, with any line ending", () => {
		fc.assert(
			fc.property(fc.array(fc.nat({ max: STREAM.length }), { maxLength: 12 }), fc.constantFrom("\n", "\r\n", "\r"), (cuts, eol) => {
				const text = STREAM.replace(/\n/g, eol);
				const points = [...new Set(cuts.map(c => Math.min(c, text.length)))].sort((a, b) => a - b);
				const parser = new SseParser();
				const events = [];
				let from = 0;
				for (const p of [...points, text.length]) {
					events.push(...parser.feed(text.slice(from, p)));
					from = p;
				}
				// A lone "\r" at the very end may still become "\r\n": the last event needs one more byte.
				events.push(...parser.feed(eol === "\r" ? "\n" : ""));
				expect(events).toEqual(EXPECTED);
			})
		);
	});
});

describe("mediaToKeep", () => {
	const now = Date.parse("2026-11-30T12:00:00.000Z");
	const HOUR = 3600_000;

	it("keeps what the manifest lists and what another listed within a day; evicts the rest", () => {
		const keep = mediaToKeep({ recent: now - 2 * HOUR, old: now - 25 * HOUR, current: now - 30 * HOUR }, ["current", "new"], now);
		expect([...keep].sort()).toEqual(["current", "new", "recent"]);
	});

	it("with nothing listed before, keeps only the current manifest's", () => {
		expect([...mediaToKeep({}, ["a"], now)]).toEqual(["a"]);
		expect([...mediaToKeep({ a: now - MEDIA_KEEP_MS }, [], now)]).toEqual([]);
	});
});
