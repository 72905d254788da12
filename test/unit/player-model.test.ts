/**
 * The web player's pure parts (player/src/model.ts, player/src/sse.ts): what it accepts as a
 * manifest, which item plays next, when it fetches again, how web pages are sandboxed, what a
 * play record says, and how the live stream's bytes become events however they are split.
 */
import fc from "fast-check";
import { asManifest, isShowableUrl, mediaToKeep, nextPlayable, playRecord, refetchDelay, rejectedIndexes, uuidFromBytes, webSandbox, MAX_TIMER_MS, MEDIA_KEEP_MS, type ManifestItem } from "../../player/src/model";
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
	items: [item("a"), item("b")]
};

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
