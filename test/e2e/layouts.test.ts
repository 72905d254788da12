/**
 * Multi-zone layouts over HTTP on the real platform, as a customer and as an attacker: composing
 * a screen of zones (each playing a playlist) over a background, the checks on every field
 * (geometry inside the frame, colours, a background that is the tenant's image, playlists that
 * are the tenant's), schedules, overrides and display defaults that play a layout, the device
 * manifest's `layout` with per-zone items and ETags, deleting content or a playlist out from
 * under a zone, 409/force deletes, preview and timeline, tenant isolation, the export and the
 * tenant's deletion, and concurrent edits.
 *
 * Every answer of the suite is checked for the API's error shape (and never a 5xx) after each test.
 */
import sharp from "sharp";
import type { Service } from "moleculer";
import { FormatRegistry, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { systemScope, type TenantCollection, type TenantOwned } from "../../mixins/db.mixin";
import { LayoutPage, LayoutView, Manifest as ManifestSchema, OverrideView, PreviewView, ScheduleView, SchedulingExport, TimelineView } from "../../shared/contracts";
import { bearer, newAccount, pairDisplay, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { request, type ErrorBody, type JsonResponse } from "../helpers/platform";
import { addMember, answerProblems, type Member } from "../helpers/routes";
import { connect, isEvent, open } from "../helpers/sse";

interface Zone {
	id: string;
	name: string;
	x: number;
	y: number;
	width: number;
	height: number;
	zIndex: number;
	playlistId: string;
}

interface Layout {
	id: string;
	name: string;
	width: number;
	height: number;
	backgroundColor: string | null;
	backgroundContentId: string | null;
	zones: Zone[];
	createdAt: string;
	updatedAt: string;
}

interface Item {
	contentId: string;
	name: string;
	type: string;
	url: string;
	durationMs: number;
}

interface ManifestZone {
	id: string;
	name: string;
	x: number;
	y: number;
	width: number;
	height: number;
	zIndex: number;
	playlist: { id: string; name: string } | null;
	etag: string;
	items: Item[];
}

interface ManifestLayout {
	id: string;
	name: string;
	width: number;
	height: number;
	backgroundColor: string | null;
	background: Item | null;
	zones: ManifestZone[];
}

interface Manifest {
	displayId: string;
	etag: string;
	validUntil: string | null;
	source: string;
	playlist: { id: string; name: string } | null;
	schedule: { id: string; name: string } | null;
	override: { id: string; name: string } | null;
	items: Item[];
	layout: ManifestLayout | null;
}

type Page<T> = { rows: T[]; total: number; page: number; pageSize: number; totalPages: number };
/** A zone as sent: the fields of a zone, any of them possibly of the wrong type (refusal cases). */
type ZoneInput = { [K in keyof Zone]?: Zone[K] | string | number | boolean | null | object } & Record<string, unknown>;

afterEach(() => {
	for (const stream of open.splice(0)) stream.close();
});

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", value => !Number.isNaN(Date.parse(value)) && /T.*(Z|[+-]\d{2}:\d{2})$/.test(value));

/** The body is exactly what the published schema says: every field typed as declared, and none more. */
function expectShape(schema: TSchema, body: unknown): void {
	expect([...Value.Errors(schema, body)].map(e => `${e.path}: ${e.message}`)).toEqual([]);
	expect(Value.Clean(schema, structuredClone(body))).toEqual(body);
}

const fieldsOf = (res: JsonResponse<unknown>): string[] => ((res.body as ErrorBody).error?.data as Array<{ field: string }> | undefined)?.map(d => d.field) ?? [];

describe("multi-zone layouts", () => {
	let p: Platform;
	let owner: Session & { password: string };
	let other: Session & { password: string };
	let viewer: Member;
	let editor: Member;
	/** Problems of any answer of the current test (a 5xx, an error outside the API's shape). */
	const problems: string[] = [];

	beforeAll(async () => {
		// NeDB files, as npm start keeps them (like races.test.ts): writes take long enough for concurrent requests to interleave.
		p = await startTestPlatform({ NODE_ENV: "development", BCRYPT_COST: "4", DEFAULT_PLAN_DISPLAYS: "100", DEFAULT_PLAN_MEMBERS: "100" });
		owner = await register(p, newAccount("layouts"));
		other = await register(p, newAccount("layouts-other"));
		viewer = await addMember(p, owner.accessToken, "viewer", "layouts-viewer");
		editor = await addMember(p, owner.accessToken, "editor", "layouts-editor");
	}, 60_000);
	afterAll(() => p.stop());

	afterEach(() => {
		const seen = problems.splice(0);
		expect(seen).toEqual([]);
	});

	/** Background recomputations finished (their events sent). */
	const settled = () => (p.broker.getLocalService("scheduling") as unknown as Service & { idle(): Promise<void> }).idle();

	/** One request as `who`; its answer is checked for the error shape and 5xx. */
	async function api<T = unknown>(method: string, path: string, who: { accessToken: string } | string | null, json?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse<T>> {
		const token = typeof who === "string" ? who : who?.accessToken;
		const res = await request<T>(p.api(path), { method, headers: { ...(token ? bearer(token) : {}), ...headers }, ...(json !== undefined ? { json } : {}) });
		problems.push(...answerProblems(res).map(problem => `${method} ${path}: ${problem}`));
		return res;
	}

	/** A body sent as raw JSON text (keys JSON.stringify cannot write, numbers it cannot spell). */
	async function raw<T = unknown>(method: string, path: string, who: { accessToken: string }, text: string): Promise<JsonResponse<T>> {
		const res = await request<T>(p.api(path), { method, headers: { ...bearer(who.accessToken), "Content-Type": "application/json" }, body: text });
		problems.push(...answerProblems(res).map(problem => `${method} ${path} ${text.slice(0, 80)}: ${problem}`));
		return res;
	}

	async function webContent(s: Session, name: string, durationMs = 8000): Promise<string> {
		const res = await api<{ id: string }>("POST", "/content/url", s, { name, url: `https://example.com/${encodeURIComponent(name)}`, durationMs });
		expect(res.status).toBe(201);
		return res.body.id;
	}

	async function imageContent(s: Session, name: string): Promise<string> {
		const png = await sharp({ create: { width: 64, height: 32, channels: 3, background: { r: 200, g: 20, b: 30 } } }).png().toBuffer();
		const form = new FormData();
		form.append("name", name);
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "a.png");
		const res = await request<{ id: string }>(p.api("/content"), { method: "POST", headers: bearer(s.accessToken), body: form });
		expect(res.status).toBe(201);
		return res.body.id;
	}

	async function playlist(s: Session, name: string, contentIds: string[]): Promise<string> {
		const res = await api<{ id: string }>("POST", "/playlists", s, { name, items: contentIds.map(contentId => ({ contentId })) });
		expect(res.status).toBe(201);
		return res.body.id;
	}

	const zone = (playlistId: string, fields: ZoneInput = {}): ZoneInput => ({ name: "Zone", x: 0, y: 0, width: 1, height: 1, playlistId, ...fields });

	async function layout(s: Session, body: Record<string, unknown>): Promise<Layout> {
		const res = await api<Layout>("POST", "/layouts", s, { name: "Layout", width: 1920, height: 1080, ...body });
		if (res.status !== 201) throw new Error(`layout answered ${res.status}: ${res.text}`);
		return res.body;
	}

	async function schedule(s: Session, body: Record<string, unknown>): Promise<{ id: string; playlistId: string | null; layoutId: string | null }> {
		const res = await api<{ id: string; playlistId: string | null; layoutId: string | null }>("POST", "/schedules", s, body);
		if (res.status !== 201) throw new Error(`schedule answered ${res.status}: ${res.text}`);
		return res.body;
	}

	const manifest = (token: string, etag?: string) =>
		api<Manifest>("GET", "/device/manifest", token, undefined, etag ? { "If-None-Match": etag } : {});

	/** `read()` until `done` holds (events are delivered after the request that caused them answered). */
	async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
		const until = Date.now() + timeoutMs;
		let value = await read();
		while (!done(value) && Date.now() < until) {
			await new Promise(resolve => setTimeout(resolve, 25));
			value = await read();
		}
		return value;
	}

	const layoutCount = async (s: Session) => (await api<Page<Layout>>("GET", "/layouts", s)).body.total;

	describe("composing", () => {
		it("an editor composes a layout; zIndex defaults to the zone's place; GET, list, ?q and ?playlistId find it", async () => {
			const c = await webContent(owner, "Compose page");
			const main = await playlist(owner, "Compose main", [c]);
			const side = await playlist(owner, "Compose side", [c]);
			const created = await api<Layout>("POST", "/layouts", editor.session, {
				name: "Lobby split",
				width: 16,
				height: 9,
				backgroundColor: "#1a2B3c",
				zones: [
					{ name: "Main", x: 0, y: 0, width: 0.75, height: 1, playlistId: main },
					{ name: "Side", x: 0.75, y: 0, width: 0.25, height: 1, zIndex: 5, playlistId: side }
				]
			});
			expect(created.status).toBe(201);
			expect(created.headers.get("location")).toBe(`/api/v1/layouts/${created.body.id}`);
			expect(created.body).toMatchObject({
				name: "Lobby split",
				width: 16,
				height: 9,
				backgroundColor: "#1a2B3c",
				backgroundContentId: null,
				zones: [
					{ id: expect.any(String), name: "Main", x: 0, y: 0, width: 0.75, height: 1, zIndex: 0, playlistId: main },
					{ id: expect.any(String), name: "Side", x: 0.75, y: 0, width: 0.25, height: 1, zIndex: 5, playlistId: side }
				]
			});
			expect(created.body.zones[0].id).not.toBe(created.body.zones[1].id);
			expectShape(LayoutView, created.body);

			const read = await api<Layout>("GET", `/layouts/${created.body.id}`, viewer.session);
			expect(read.status).toBe(200);
			expect(read.body).toEqual(created.body);
			const byText = await api<Page<Layout>>("GET", `/layouts?q=${encodeURIComponent("lobby SPL")}`, viewer.session);
			expect(byText.status).toBe(200);
			expect(byText.body.rows.map(r => r.id)).toEqual([created.body.id]);
			expectShape(LayoutPage, byText.body);
			// A regular expression in ?q is text, not a pattern.
			expect((await api<Page<Layout>>("GET", `/layouts?q=${encodeURIComponent(".*")}`, owner)).body.total).toBe(0);
			const byPlaylist = await api<Page<Layout>>("GET", `/layouts?playlistId=${side}`, owner);
			expect(byPlaylist.body.rows.map(r => r.id)).toEqual([created.body.id]);
			const paged = await api<Page<Layout>>("GET", "/layouts?page=1&pageSize=1", owner);
			expect(paged.body).toMatchObject({ page: 1, pageSize: 1 });
			expect(paged.body.rows).toHaveLength(1);
			// The audit log says who composed it.
			const audited = await eventually(
				() => api<{ rows: Array<{ action: string; target: string | null; actor: { id: string | null } }> }>("GET", "/audit-logs?action=layout.*", owner),
				res => res.body.rows.some(r => r.target === created.body.id)
			);
			expect(audited.body.rows.find(r => r.target === created.body.id)).toMatchObject({ action: "layout.created", actor: { id: editor.userId } });
		});

		it("a PATCH replaces the zones; a zone sent with its current id keeps it (once), any other id gets a new one", async () => {
			const c = await webContent(owner, "Patch page");
			const a = await playlist(owner, "Patch A", [c]);
			const b = await playlist(owner, "Patch B", [c]);
			const first = await layout(owner, { name: "Patchable", zones: [zone(a, { name: "Left", width: 0.5 }), zone(b, { name: "Right", x: 0.5, width: 0.5 })] });
			const elsewhere = await layout(owner, { name: "Elsewhere", zones: [zone(a)] });
			const [left, right] = first.zones;

			const patched = await api<Layout>("PATCH", `/layouts/${first.id}`, owner, {
				zones: [
					{ id: right.id, name: "Right, wider", x: 0.4, y: 0, width: 0.6, height: 1, playlistId: b },
					{ id: right.id, name: "Copy of right", x: 0, y: 0, width: 0.4, height: 0.5, playlistId: a },
					{ id: elsewhere.zones[0].id, name: "Stolen id", x: 0, y: 0.5, width: 0.4, height: 0.5, playlistId: a }
				]
			});
			expect(patched.status).toBe(200);
			expect(patched.body.name).toBe("Patchable");
			expect(patched.body.zones.map(z => z.name)).toEqual(["Right, wider", "Copy of right", "Stolen id"]);
			expect(patched.body.zones[0].id).toBe(right.id);
			const ids = patched.body.zones.map(z => z.id);
			expect(new Set(ids).size).toBe(3);
			expect(ids).not.toContain(left.id);
			expect(ids).not.toContain(elsewhere.zones[0].id);
			expect(patched.body.zones.map(z => z.zIndex)).toEqual([0, 1, 2]);
			expect(Date.parse(patched.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(first.updatedAt));

			// Fields not sent stay; an empty PATCH changes nothing.
			const renamed = await api<Layout>("PATCH", `/layouts/${first.id}`, owner, { name: "Patchable 2", backgroundColor: "#000000" });
			expect(renamed.body).toMatchObject({ name: "Patchable 2", backgroundColor: "#000000", width: 1920, height: 1080, zones: patched.body.zones });
			const nothing = await api<Layout>("PATCH", `/layouts/${first.id}`, owner, {});
			expect(nothing.status).toBe(200);
			expect(nothing.body.zones).toEqual(patched.body.zones);
			const cleared = await api<Layout>("PATCH", `/layouts/${first.id}`, owner, { backgroundColor: null });
			expect(cleared.body.backgroundColor).toBeNull();
			// The playlist index follows the zones: A's list no longer names a layout that dropped it.
			const dropped = await api<Layout>("PATCH", `/layouts/${first.id}`, owner, { zones: [zone(b)] });
			expect(dropped.status).toBe(200);
			expect((await api<Page<Layout>>("GET", `/layouts?playlistId=${a}&pageSize=100`, owner)).body.rows.map(r => r.id)).not.toContain(first.id);
			expect((await api<Page<Layout>>("GET", `/layouts?playlistId=${b}&pageSize=100`, owner)).body.rows.map(r => r.id)).toContain(first.id);
		});

		it("zone edges that add up to 1 through floating point (1/3 + 2/3, 0.1 + 0.2 + 0.7, 9/28 + 18/28 + 1/28) are inside the frame", async () => {
			const list = await playlist(owner, "Thirds", [await webContent(owner, "Thirds page")]);
			const thirds = await api<Layout>("POST", "/layouts", owner, {
				name: "Thirds",
				width: 3,
				height: 1,
				zones: [
					zone(list, { name: "A", x: 0, width: 1 / 3 }),
					zone(list, { name: "B", x: 1 / 3, width: 1 / 3 }),
					zone(list, { name: "C", x: 2 / 3, width: 1 / 3 }),
					zone(list, { name: "D", x: 1 / 3, width: 2 / 3, y: 0.7, height: 0.3 }),
					zone(list, { name: "E", x: 0.1 + 0.2, width: 0.7, y: 0.1 + 0.2, height: 0.7 }),
					// 9/28 + 18/28 + 1/28 adds up to 1.0000000000000002.
					zone(list, { name: "F", x: 9 / 28 + 18 / 28, width: 1 / 28, y: 9 / 28 + 18 / 28, height: 1 / 28 })
				]
			});
			expect(thirds.status).toBe(201);
			expect(thirds.body.zones.map(z => z.width)).toEqual([1 / 3, 1 / 3, 1 / 3, 2 / 3, 0.7, 1 / 28]);
			// A zone touching the far edges exactly is fine; 20 zones are allowed.
			const twenty = Array.from({ length: 20 }, (_, i) => zone(list, { name: `Z${i}`, x: i / 20, width: 1 / 20 }));
			expect((await api("POST", "/layouts", owner, { name: "Twenty", width: 1920, height: 1080, zones: twenty })).status).toBe(201);
			expect((await api("POST", "/layouts", owner, { name: "Corner", width: 1, height: 1, zones: [zone(list, { x: 1 - 1e-3, y: 1 - 1e-3, width: 1e-3, height: 1e-3 })] })).status).toBe(201);
			// Smaller than 0.001 of the frame a zone is invisible (its area may even round to 0): refused.
			const specks = await api("POST", "/layouts", owner, { name: "Speck", width: 1, height: 1, zones: [zone(list, { x: 1 - 1e-6, y: 0, width: 1e-6, height: 5e-324 })] });
			expect(specks.status).toBe(422);
			expect(fieldsOf(specks).sort()).toEqual(["zones[0].height", "zones[0].width"]);
		});

		it("names in any script survive the round trip and are searchable", async () => {
			const list = await playlist(owner, "Unicode", [await webContent(owner, "Unicode page")]);
			const name = "Écran d’accueil — 大堂 📺 مرحبا";
			const zoneNames = ["Бегущая строка", "👩‍👩‍👧 family", "ℌ𝔢𝔩𝔩𝔬 \u200d zero-width"];
			const created = await layout(owner, {
				name,
				zones: zoneNames.map((n, i) => zone(list, { name: n, y: i / 3, height: 1 / 3 }))
			});
			expect(created.name).toBe(name);
			expect(created.zones.map(z => z.name)).toEqual(zoneNames);
			const found = await api<Page<Layout>>("GET", `/layouts?q=${encodeURIComponent("大堂 📺")}`, owner);
			expect(found.body.rows.map(r => r.id)).toEqual([created.id]);
			// Names are trimmed; a name of blanks is no name.
			const trimmed = await layout(owner, { name: "  Padded  ", zones: [zone(list, { name: "  Z  " })] });
			expect([trimmed.name, trimmed.zones[0].name]).toEqual(["Padded", "Z"]);
			const blank = await api("POST", "/layouts", owner, { name: "   ", width: 1, height: 1, zones: [zone(list)] });
			expect([blank.status, fieldsOf(blank)]).toEqual([422, ["name"]]);
		});
	});

	describe("refusing what cannot be a layout", () => {
		let list: string;
		const base = () => ({ name: "Bad", width: 1920, height: 1080, zones: [zone(list)] });

		beforeAll(async () => {
			list = await playlist(owner, "Refusals", [await webContent(owner, "Refusals page")]);
		});

		it("zone geometry outside the frame, without area, or not a number in 0–1 answers 422 naming the zone's field, and nothing is stored", async () => {
			const before = await layoutCount(owner);
			const cases: Array<[string, ZoneInput[] | unknown, string[]]> = [
				["past the right edge", [zone(list, { x: 0.5, width: 0.6 })], ["zones[0].width"]],
				["past the bottom edge", [zone(list, { y: 0.25, height: 0.8 })], ["zones[0].height"]],
				["past both edges, second zone", [zone(list, { width: 0.5 }), zone(list, { x: 0.6, y: 0.6, width: 0.5, height: 0.5 })], ["zones[1].width", "zones[1].height"]],
				["zero width", [zone(list, { width: 0 })], ["zones[0].width"]],
				["zero height", [zone(list, { height: 0 })], ["zones[0].height"]],
				["negative width", [zone(list, { width: -0.5 })], ["zones[0].width"]],
				["negative x", [zone(list, { x: -0.1, width: 0.5 })], ["zones[0].x"]],
				["x past 1", [zone(list, { x: 1.5, width: 0.1 })], ["zones[0].x"]],
				["width past 1", [zone(list, { width: 1.0001 })], ["zones[0].width"]],
				["a numeric string", [zone(list, { width: "0.5" })], ["zones[0].width"]],
				["NaN as a string", [zone(list, { width: "NaN" })], ["zones[0].width"]],
				["Infinity as a string", [zone(list, { height: "Infinity" })], ["zones[0].height"]],
				["a fraction as a string", [zone(list, { x: "1/3", width: 0.5 })], ["zones[0].x"]],
				["null", [zone(list, { y: null })], ["zones[0].y"]],
				["a boolean", [zone(list, { width: true })], ["zones[0].width"]],
				["an array", [zone(list, { width: [0.5] })], ["zones[0].width"]],
				["an operator object", [zone(list, { width: { $gt: "" } })], ["zones[0].width"]],
				["an operator object for the playlist", [zone(list, { playlistId: { $gt: "" } as unknown as string })], ["zones[0].playlistId"]],
				["an operator object for the zone id", [zone(list, { id: { $ne: null } as unknown as string })], ["zones[0].id"]],
				["a missing coordinate", [{ name: "Z", y: 0, width: 1, height: 1, playlistId: list }], ["zones[0].x"]],
				["a fractional zIndex", [zone(list, { zIndex: 1.5 })], ["zones[0].zIndex"]],
				["a zIndex past 1000", [zone(list, { zIndex: 1001 })], ["zones[0].zIndex"]],
				["no zone name", [zone(list, { name: "" })], ["zones[0].name"]],
				["a zone name of 201 characters", [zone(list, { name: "z".repeat(201) })], ["zones[0].name"]],
				["a malformed zone id", [zone(list, { id: "not-an-id" })], ["zones[0].id"]],
				["a malformed playlist id", [zone(list, { playlistId: "../../etc" })], ["zones[0].playlistId"]],
				["no zones", [], ["zones"]],
				["21 zones", Array.from({ length: 21 }, (_, i) => zone(list, { x: i / 21, width: 1 / 21 })), ["zones"]],
				["zones null", null, ["zones"]],
				["zones an object", { 0: zone(list) }, ["zones"]],
				["zones an operator object", { $gt: "" }, ["zones"]],
				["a zone that is a string", ["zone"], ["zones[0]"]]
			];
			for (const [what, zones, fields] of cases) {
				const res = await api("POST", "/layouts", owner, { ...base(), zones });
				expect([what, res.status, (res.body as ErrorBody).error?.type]).toEqual([what, 422, "VALIDATION_ERROR"]);
				expect([what, fieldsOf(res).sort()]).toEqual([what, [...fields].sort()]);
			}
			expect(await layoutCount(owner)).toBe(before);
		});

		it("the frame, the name and the colour are checked, and a background colour is #rrggbb or null", async () => {
			const before = await layoutCount(owner);
			const cases: Array<[Record<string, unknown>, string]> = [
				[{ width: 0 }, "width"],
				[{ height: -1 }, "height"],
				[{ width: 16385 }, "width"],
				[{ width: 1920.5 }, "width"],
				[{ width: "1920" }, "width"],
				[{ height: null }, "height"],
				[{ width: { $gt: 0 } }, "width"],
				[{ name: "" }, "name"],
				[{ name: "n".repeat(201) }, "name"],
				[{ name: { $ne: null } }, "name"],
				[{ name: null }, "name"],
				[{ backgroundColor: "red" }, "backgroundColor"],
				[{ backgroundColor: "#fff" }, "backgroundColor"],
				[{ backgroundColor: "#12345g" }, "backgroundColor"],
				[{ backgroundColor: "#1234567" }, "backgroundColor"],
				[{ backgroundColor: "#123456\n" }, "backgroundColor"],
				[{ backgroundColor: " #123456" }, "backgroundColor"],
				[{ backgroundColor: "rgb(1,2,3)" }, "backgroundColor"],
				[{ backgroundColor: 0x123456 }, "backgroundColor"],
				[{ backgroundColor: { $regex: "." } }, "backgroundColor"],
				[{ backgroundContentId: "not-an-id" }, "backgroundContentId"],
				[{ backgroundContentId: { $ne: null } }, "backgroundContentId"]
			];
			for (const [change, field] of cases) {
				const res = await api("POST", "/layouts", owner, { ...base(), ...change });
				expect([change, res.status]).toEqual([change, 422]);
				expect([change, fieldsOf(res)]).toEqual([change, [field]]);
			}
			for (const body of ["[]", '"layout"', "null", "42", "{", '{"name":"x",}']) {
				const res = await raw("POST", "/layouts", owner, body);
				expect([body, res.status >= 400 && res.status < 500]).toEqual([body, true]);
			}
			expect(await layoutCount(owner)).toBe(before);
			const ok = await layout(owner, { name: "Colour", backgroundColor: "#A0b1C2", zones: [zone(list)] });
			expect(ok.backgroundColor).toBe("#A0b1C2");
			expect((await layout(owner, { name: "No colour", backgroundColor: null, zones: [zone(list)] })).backgroundColor).toBeNull();
		});

		it("the same checks hold on a PATCH, which changes nothing when refused", async () => {
			const target = await layout(owner, { name: "Patch target", zones: [zone(list, { width: 0.5 })] });
			const cases: Array<[Record<string, unknown>, string]> = [
				[{ zones: [zone(list, { x: 0.75, width: 0.5 })] }, "zones[0].width"],
				[{ zones: [] }, "zones"],
				[{ zones: null }, "zones"],
				[{ width: 0 }, "width"],
				[{ name: null }, "name"],
				[{ backgroundColor: "#abc" }, "backgroundColor"],
				[{ zones: [zone("0190a8e2-7b1c-7c3d-8e4f-123456789abc")] }, "zones[0].playlistId"]
			];
			for (const [change, field] of cases) {
				const res = await api("PATCH", `/layouts/${target.id}`, owner, change);
				expect([change, res.status, fieldsOf(res)]).toEqual([change, 422, [field]]);
			}
			expect((await api<Layout>("GET", `/layouts/${target.id}`, owner)).body).toEqual(target);
			// Malformed ids in the path or the list filter are 422 too, never a lookup.
			expect((await api("GET", "/layouts/not-an-id", owner)).status).toBe(422);
			expect((await api("GET", "/layouts?playlistId=not-an-id", owner)).status).toBe(422);
			expect((await api("GET", `/layouts?q[$regex]=.`, owner)).status).toBe(422);
			expect((await api("GET", "/layouts?page=0", owner)).status).toBe(422);
			expect((await api("GET", "/layouts?pageSize=101", owner)).status).toBe(422);
		});

		it("prototype keys are refused wherever they are (422 naming __proto__), pollute nothing, and other unknown fields are dropped", async () => {
			const before = await layoutCount(owner);
			const protoBodies = [
				// A zone whose width would come only through its prototype.
				`{"name":"Proto","width":10,"height":10,"zones":[{"name":"Z","x":0,"y":0,"height":1,"playlistId":"${list}","__proto__":{"width":0.5}}]}`,
				// The whole zones list through the body's prototype.
				`{"name":"Proto","width":10,"height":10,"__proto__":{"zones":[{"name":"Z","x":0,"y":0,"width":1,"height":1,"playlistId":"${list}"}]}}`,
				// A valid layout carrying a polluting key.
				`{"name":"Proto","width":10,"height":10,"__proto__":{"polluted":"yes","isAdmin":true},"zones":[{"name":"Z","x":0,"y":0,"width":1,"height":1,"playlistId":"${list}"}]}`
			];
			for (const body of protoBodies) {
				const res = await raw("POST", "/layouts", owner, body);
				expect([body, res.status, fieldsOf(res)]).toEqual([body, 422, ["__proto__"]]);
			}
			const target = await layout(owner, { name: "Proto target", zones: [zone(list)] });
			const patched = await raw("PATCH", `/layouts/${target.id}`, owner, `{"zones":[{"name":"Z","x":0,"y":0,"width":1,"height":1,"playlistId":"${list}","__proto__":{"zIndex":99}}]}`);
			expect([patched.status, fieldsOf(patched)]).toEqual([422, ["__proto__"]]);
			expect(await layoutCount(owner)).toBe(before + 1);

			const smuggling = await raw(
				"POST",
				"/layouts",
				owner,
				`{"name":"Proto ok","width":10,"height":10,"constructor":{"prototype":{"polluted":"yes"}},"tenantId":"${other.tenant.id}","id":"mine","_id":"mine","createdAt":"2000-01-01T00:00:00Z","playlistIds":["${list}"],"zones":[{"name":"Z","x":0,"y":0,"width":1,"height":1,"playlistId":"${list}","constructor":{"prototype":{"polluted":"yes"}},"tenantId":"${other.tenant.id}","extra":1}]}`
			);
			expect(smuggling.status).toBe(201);
			const created = smuggling.body as Layout;
			expect(Object.keys(created).sort()).toEqual(["backgroundColor", "backgroundContentId", "createdAt", "height", "id", "name", "updatedAt", "width", "zones"]);
			expect(Object.keys(created.zones[0]).sort()).toEqual(["height", "id", "name", "playlistId", "width", "x", "y", "zIndex"]);
			expect(created.id).not.toBe("mine");
			expect(created.createdAt).not.toBe("2000-01-01T00:00:00Z");
			// The platform runs in this process: nothing reached Object.prototype.
			expect(({} as Record<string, unknown>).polluted).toBeUndefined();
			expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
			// It is the caller's, not the tenant's named in the body.
			expect((await api("GET", `/layouts/${created.id}`, owner)).status).toBe(200);
			expect((await api("GET", `/layouts/${created.id}`, other)).status).toBe(404);
		});

		it("a zone's playlist and the background must be the tenant's, and the background an image", async () => {
			const theirList = await playlist(other, "Theirs", [await webContent(other, "Their page")]);
			const theirImage = await imageContent(other, "Their image");
			const myPage = await webContent(owner, "Not an image");
			const before = await layoutCount(owner);
			const unknown = "0190a8e2-7b1c-7c3d-8e4f-123456789abc";
			const zoneCases: Array<[ZoneInput[], string[]]> = [
				[[zone(list, { width: 0.5 }), zone(theirList, { x: 0.5, width: 0.5 })], ["zones[1].playlistId"]],
				[[zone(unknown)], ["zones[0].playlistId"]],
				[[zone(theirList, { width: 0.5 }), zone(unknown, { x: 0.5, width: 0.5 })], ["zones[0].playlistId", "zones[1].playlistId"]]
			];
			for (const [zones, fields] of zoneCases) {
				const res = await api("POST", "/layouts", owner, { ...base(), zones });
				expect([res.status, fieldsOf(res)]).toEqual([422, fields]);
			}
			for (const background of [theirImage, unknown, myPage]) {
				const res = await api("POST", "/layouts", owner, { ...base(), backgroundContentId: background });
				expect([background, res.status, fieldsOf(res)]).toEqual([background, 422, ["backgroundContentId"]]);
			}
			expect(await layoutCount(owner)).toBe(before);
			// On a PATCH alike.
			const mine = await layout(owner, { name: "Mine", zones: [zone(list)] });
			const stolen = await api("PATCH", `/layouts/${mine.id}`, owner, { zones: [zone(theirList)] });
			expect([stolen.status, fieldsOf(stolen)]).toEqual([422, ["zones[0].playlistId"]]);
			const theirBackground = await api("PATCH", `/layouts/${mine.id}`, owner, { backgroundContentId: theirImage });
			expect([theirBackground.status, fieldsOf(theirBackground)]).toEqual([422, ["backgroundContentId"]]);
			expect((await api<Layout>("GET", `/layouts/${mine.id}`, owner)).body).toEqual(mine);
			// The other tenant sees nothing of the owner's layouts through its playlist filter either.
			expect((await api<Page<Layout>>("GET", `/layouts?playlistId=${list}`, other)).body.total).toBe(0);
		});
	});

	describe("permissions and tenants", () => {
		it("a viewer reads layouts but cannot create, change or delete one (403); an editor and an editor API key can", async () => {
			const list = await playlist(owner, "Perm", [await webContent(owner, "Perm page")]);
			const target = await layout(owner, { name: "Perm", zones: [zone(list)] });
			const denied = [
				await api<ErrorBody>("POST", "/layouts", viewer.session, { name: "V", width: 1, height: 1, zones: [zone(list)] }),
				await api<ErrorBody>("PATCH", `/layouts/${target.id}`, viewer.session, { name: "V" }),
				await api<ErrorBody>("DELETE", `/layouts/${target.id}`, viewer.session)
			];
			expect(denied.map(r => [r.status, r.body.error.type])).toEqual([
				[403, "FORBIDDEN"],
				[403, "FORBIDDEN"],
				[403, "FORBIDDEN"]
			]);
			expect((await api<Layout>("GET", `/layouts/${target.id}`, viewer.session)).body.name).toBe("Perm");
			expect((await api("GET", "/layouts", viewer.session)).status).toBe(200);
			// Anonymous callers and device tokens get 401.
			expect((await api("GET", "/layouts", null)).status).toBe(401);
			const { token } = await pairDisplay(p, owner);
			expect((await api("GET", `/layouts/${target.id}`, token)).status).toBe(401);
			// An editor and an editor-role API key write.
			expect((await api("PATCH", `/layouts/${target.id}`, editor.session, { name: "By editor" })).status).toBe(200);
			const key = await api<{ key: string }>("POST", "/api-keys", owner, { name: "Layout editor key", role: "editor" });
			expect(key.status).toBe(201);
			const viaKey = await api<Layout>("POST", "/layouts", key.body.key, { name: "By key", width: 1, height: 1, zones: [zone(list)] });
			expect(viaKey.status).toBe(201);
			const viewerKey = await api<{ key: string }>("POST", "/api-keys", owner, { name: "Layout viewer key", role: "viewer" });
			expect((await api("POST", "/layouts", viewerKey.body.key, { name: "By viewer key", width: 1, height: 1, zones: [zone(list)] })).status).toBe(403);
			expect((await api("DELETE", `/layouts/${viaKey.body.id}`, key.body.key)).status).toBe(204);
		});

		it("another tenant's layout answers 404 on GET/PATCH/DELETE exactly like an unknown id, 422 as a schedule's, override's or display's layoutId, and stays as it was", async () => {
			const theirList = await playlist(other, "Their zone list", [await webContent(other, "Their zone page")]);
			const theirs = await layout(other, { name: "Their layout", zones: [zone(theirList)] });
			const unknown = "0190a8e2-7b1c-7c3d-8e4f-123456789abc";
			for (const id of [theirs.id, unknown]) {
				const answers = [
					await api<ErrorBody>("GET", `/layouts/${id}`, owner),
					await api<ErrorBody>("PATCH", `/layouts/${id}`, owner, { name: "Mine now" }),
					await api<ErrorBody>("DELETE", `/layouts/${id}`, owner),
					await api<ErrorBody>("DELETE", `/layouts/${id}?force=true`, owner)
				];
				expect([id, answers.map(r => [r.status, r.body.error.type, r.body.error.message])]).toEqual([id, Array(4).fill([404, "NOT_FOUND", expect.any(String)])]);
			}
			const { display } = await pairDisplay(p, owner);
			const endsAt = new Date(Date.now() + 3600_000).toISOString();
			const asSchedule = await api("POST", "/schedules", owner, { name: "Theirs", layoutId: theirs.id, targets: { displayIds: [display.id] } });
			expect([asSchedule.status, fieldsOf(asSchedule)]).toEqual([422, ["layoutId"]]);
			const asOverride = await api("POST", "/overrides", owner, { name: "Theirs", layoutId: theirs.id, endsAt });
			expect([asOverride.status, fieldsOf(asOverride)]).toEqual([422, ["layoutId"]]);
			const asDefault = await api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: theirs.id });
			expect([asDefault.status, fieldsOf(asDefault)]).toEqual([422, ["defaultLayoutId"]]);
			// Switching an existing schedule or override to it is refused alike.
			const mine = await playlist(owner, "Mine", [await webContent(owner, "My page")]);
			const sched = await schedule(owner, { name: "Mine", playlistId: mine, targets: { displayIds: [display.id] } });
			const switched = await api("PATCH", `/schedules/${sched.id}`, owner, { layoutId: theirs.id });
			expect([switched.status, fieldsOf(switched)]).toEqual([422, ["layoutId"]]);
			expect((await api<{ playlistId: string; layoutId: string | null }>("GET", `/schedules/${sched.id}`, owner)).body).toMatchObject({ playlistId: mine, layoutId: null });
			const override = await api<{ id: string }>("POST", "/overrides", owner, { name: "Mine", playlistId: mine, targets: { displayIds: [display.id] }, endsAt });
			const overrideSwitch = await api("PATCH", `/overrides/${override.body.id}`, owner, { layoutId: theirs.id });
			expect([overrideSwitch.status, fieldsOf(overrideSwitch)]).toEqual([422, ["layoutId"]]);
			await api("DELETE", `/overrides/${override.body.id}`, owner);

			// An id in the body never redirects a write to another layout, the caller's or not.
			const mineToo = await layout(owner, { name: "Path layout", zones: [zone(mine)] });
			const sideways = await layout(owner, { name: "Body layout", zones: [zone(mine)] });
			for (const bodyId of [theirs.id, sideways.id]) {
				const res = await api<Layout>("PATCH", `/layouts/${mineToo.id}`, owner, { id: bodyId, name: `Renamed via ${bodyId}` });
				expect([bodyId, res.status, res.body.id]).toEqual([bodyId, 200, mineToo.id]);
			}
			expect((await api<Layout>("GET", `/layouts/${sideways.id}`, owner)).body.name).toBe("Body layout");
			expect((await api("DELETE", `/layouts/${mineToo.id}`, owner, { id: theirs.id })).status).toBe(204);

			const list = await api<Page<Layout>>("GET", "/layouts?pageSize=100", owner);
			expect(list.text).not.toContain(theirs.id);
			expect((await api<Layout>("GET", `/layouts/${theirs.id}`, other)).body).toEqual(theirs);
		});
	});

	describe("on screen", () => {
		it("a two-zone layout (an image main zone and a ticker) plays on a display: both zones and their items; deleting the ticker's content updates that zone at once", async () => {
			const poster = await imageContent(owner, "Poster");
			const tickerImage = await imageContent(owner, "Ticker strip");
			const tickerPage = await webContent(owner, "Ticker news", 12_000);
			const background = await imageContent(owner, "Backdrop");
			const mainList = await playlist(owner, "Main loop", [poster]);
			const tickerList = await playlist(owner, "Ticker", [tickerImage, tickerPage]);
			const screen = await layout(owner, {
				name: "Lobby with ticker",
				backgroundColor: "#101010",
				backgroundContentId: background,
				zones: [
					{ name: "Ticker", x: 0, y: 0.85, width: 1, height: 0.15, zIndex: 2, playlistId: tickerList },
					{ name: "Main", x: 0, y: 0, width: 1, height: 0.85, zIndex: 1, playlistId: mainList }
				]
			});
			const [tickerZone, mainZone] = screen.zones;
			const { display, token } = await pairDisplay(p, owner, { tags: ["two-zone"] });
			const sched = await schedule(owner, { name: "Lobby layout", layoutId: screen.id, targets: { tags: ["two-zone"] } });
			expect(sched).toMatchObject({ playlistId: null, layoutId: screen.id });
			await settled();

			const first = await manifest(token);
			expect(first.status).toBe(200);
			expectShape(ManifestSchema, first.body);
			const etag = first.headers.get("etag") ?? "";
			expect(first.body.etag).toBe(etag);
			expect(first.body).toMatchObject({ displayId: display.id, source: "schedule", schedule: { id: sched.id, name: "Lobby layout" }, validUntil: null });
			const shown = first.body.layout as ManifestLayout;
			expect(shown).toMatchObject({ id: screen.id, name: "Lobby with ticker", width: 1920, height: 1080, backgroundColor: "#101010" });
			expect(shown.background).toMatchObject({ contentId: background, type: "image", url: `/api/v1/device/content/${background}` });
			// Drawing order: the main zone (zIndex 1) below the ticker (zIndex 2).
			expect(shown.zones.map(z => [z.id, z.name, z.zIndex])).toEqual([
				[mainZone.id, "Main", 1],
				[tickerZone.id, "Ticker", 2]
			]);
			expect(shown.zones[0]).toMatchObject({ x: 0, y: 0, width: 1, height: 0.85, playlist: { id: mainList, name: "Main loop" } });
			expect(shown.zones[0].items.map(i => i.contentId)).toEqual([poster]);
			expect(shown.zones[1].items.map(i => [i.contentId, i.durationMs])).toEqual([
				[tickerImage, 10_000],
				[tickerPage, 12_000]
			]);
			expect(shown.zones[1].items[1].url).toBe("https://example.com/Ticker%20news");
			// A player that knows nothing of layouts plays the largest zone.
			expect(first.body.playlist).toEqual({ id: mainList, name: "Main loop" });
			expect(first.body.items.map(i => i.contentId)).toEqual([poster]);
			// It may download what any zone or the background shows.
			for (const id of [poster, tickerImage, background]) expect([id, (await fetch(p.api(`/device/content/${id}`), { headers: bearer(token) })).status]).toEqual([id, 200]);
			expect((await manifest(token, etag)).status).toBe(304);

			const stream = await connect(p.url, token);
			expect((await api("DELETE", `/content/${tickerImage}`, owner)).status).toBe(204);
			// At once: the very next fetch no longer has it.
			const next = await manifest(token, etag);
			expect(next.status).toBe(200);
			expect(next.body.etag).not.toBe(etag);
			const after = next.body.layout as ManifestLayout;
			expect(after.zones[1].items.map(i => i.contentId)).toEqual([tickerPage]);
			expect(after.zones[1].etag).not.toBe(shown.zones[1].etag);
			expect(after.zones[0].etag).toBe(shown.zones[0].etag);
			expect(after.zones[0].items).toEqual(shown.zones[0].items);
			const event = await stream.waitFor(isEvent("manifest"));
			expect(JSON.parse(event.data ?? "")).toEqual({ etag: next.body.etag });
			expect((await fetch(p.api(`/device/content/${tickerImage}`), { headers: bearer(token) })).status).toBe(404);

			// Deleting the background: it goes from the layout and the manifest at once.
			expect((await api("DELETE", `/content/${background}`, owner)).status).toBe(204);
			expect((await api<Layout>("GET", `/layouts/${screen.id}`, owner)).body.backgroundContentId).toBeNull();
			const noBackground = await manifest(token);
			expect(noBackground.body.layout?.background).toBeNull();
			expect(noBackground.body.etag).not.toBe(next.body.etag);
			expect(noBackground.body.layout?.zones.map(z => z.etag)).toEqual(after.zones.map(z => z.etag));
			expect((await fetch(p.api(`/device/content/${background}`), { headers: bearer(token) })).status).toBe(404);
			await settled();
		});

		it("a zone's etag changes exactly when its position or items change; a layout rename moves only the manifest's ETag", async () => {
			const c1 = await webContent(owner, "Etag one");
			const c2 = await webContent(owner, "Etag two");
			const l1 = await playlist(owner, "Etag left", [c1]);
			const l2 = await playlist(owner, "Etag right", [c2]);
			const screen = await layout(owner, { name: "Etags", zones: [zone(l1, { name: "L", width: 0.5 }), zone(l2, { name: "R", x: 0.5, width: 0.5 })] });
			const { token, display } = await pairDisplay(p, owner);
			await schedule(owner, { name: "Etags", layoutId: screen.id, targets: { displayIds: [display.id] } });
			const zoneEtags = async () => {
				const m = await manifest(token);
				return { etag: m.body.etag, zones: Object.fromEntries((m.body.layout?.zones ?? []).map(z => [z.name, z.etag])) };
			};
			const start = await zoneEtags();
			expect(Object.keys(start.zones).sort()).toEqual(["L", "R"]);

			const renamed = await api("PATCH", `/layouts/${screen.id}`, owner, { name: "Etags renamed" });
			expect(renamed.status).toBe(200);
			const afterRename = await zoneEtags();
			expect(afterRename.etag).not.toBe(start.etag);
			expect(afterRename.zones).toEqual(start.zones);

			// Moving the left zone (keeping its id): only its etag moves.
			const [left, right] = screen.zones;
			await api("PATCH", `/layouts/${screen.id}`, owner, { zones: [{ ...left, width: 0.4 }, right].map(({ zIndex: _z, ...z }) => z) });
			const moved = await zoneEtags();
			expect(moved.zones.L).not.toBe(start.zones.L);
			expect(moved.zones.R).toBe(start.zones.R);

			// An item change in the right zone's playlist: only its etag moves, and the live stream says so.
			const stream = await connect(p.url, token);
			await api("PATCH", `/playlists/${l2}`, owner, { items: [{ contentId: c2 }, { contentId: c1 }] });
			const edited = await zoneEtags();
			expect(edited.zones.L).toBe(moved.zones.L);
			expect(edited.zones.R).not.toBe(moved.zones.R);
			const event = await stream.waitFor(isEvent("manifest"));
			expect(JSON.parse(event.data ?? "")).toEqual({ etag: edited.etag });
			await settled();
		});

		it("renaming a zone's playlist changes what play records name, not what the zone plays: the zone's etag stays", async () => {
			const c = await webContent(owner, "Rename page");
			const named = await playlist(owner, "Before rename", [c]);
			const other = await playlist(owner, "Untouched", [c]);
			const screen = await layout(owner, { name: "Rename", zones: [zone(named, { name: "A", width: 0.5 }), zone(other, { name: "B", x: 0.5, width: 0.5 })] });
			const { token, display } = await pairDisplay(p, owner);
			await schedule(owner, { name: "Rename", layoutId: screen.id, targets: { displayIds: [display.id] } });
			const before = await manifest(token);
			expect((await api("PATCH", `/playlists/${named}`, owner, { name: "After rename" })).status).toBe(200);
			const after = await manifest(token);
			// The manifest as a whole changes (its playlist names do)...
			expect(after.body.etag).not.toBe(before.body.etag);
			expect(after.body.layout?.zones[0].playlist).toEqual({ id: named, name: "After rename" });
			expect(after.body.layout?.zones[0].items).toEqual(before.body.layout?.zones[0].items);
			// ...but the zone's position and items did not: its etag must not (the player restarts a zone's loop on a new etag).
			expect(after.body.layout?.zones.map(z => z.etag)).toEqual(before.body.layout?.zones.map(z => z.etag));
			await settled();
		});

		it("validUntil is the earliest edge of any zone's content, and of the background", async () => {
			const a = await webContent(owner, "Valid A");
			const b = await webContent(owner, "Valid B");
			const backdrop = await imageContent(owner, "Valid backdrop");
			const la = await playlist(owner, "Valid A", [a]);
			const lb = await playlist(owner, "Valid B", [b]);
			const screen = await layout(owner, { name: "Validity", backgroundContentId: backdrop, zones: [zone(la, { width: 0.5 }), zone(lb, { x: 0.5, width: 0.5 })] });
			const { token, display } = await pairDisplay(p, owner);
			await schedule(owner, { name: "Validity", layoutId: screen.id, targets: { displayIds: [display.id] } });
			expect((await manifest(token)).body.validUntil).toBeNull();

			const hour = 3600_000;
			const now = Date.now();
			const inThree = new Date(now + 3 * hour).toISOString();
			const inTwo = new Date(now + 2 * hour).toISOString();
			const inOne = new Date(now + hour).toISOString();
			// A ends in three hours (zone 1), B starts in two (zone 2): the earlier edge is B's start.
			expect((await api("PATCH", `/content/${a}`, owner, { validUntil: inThree })).status).toBe(200);
			const onlyA = await eventually(() => manifest(token), m => m.body.validUntil === inThree);
			expect(onlyA.body.validUntil).toBe(inThree);
			expect((await api("PATCH", `/content/${b}`, owner, { validFrom: inTwo })).status).toBe(200);
			const both = await eventually(() => manifest(token), m => m.body.validUntil === inTwo);
			expect(both.body.validUntil).toBe(inTwo);
			expect(both.body.layout?.zones[1].items).toEqual([]);
			expect(both.body.layout?.zones[0].items.map(i => i.contentId)).toEqual([a]);
			// The background ending in an hour comes first.
			expect((await api("PATCH", `/content/${backdrop}`, owner, { validUntil: inOne })).status).toBe(200);
			const withBackground = await eventually(() => manifest(token), m => m.body.validUntil === inOne);
			expect(withBackground.body.validUntil).toBe(inOne);
			expect(withBackground.body.layout?.background?.contentId).toBe(backdrop);
			// A background outside its window is not shown, and its start is an edge.
			expect((await api("PATCH", `/content/${backdrop}`, owner, { validFrom: inTwo, validUntil: null })).status).toBe(200);
			const later = await eventually(() => manifest(token), m => m.body.layout?.background === null);
			expect(later.body.layout?.background).toBeNull();
			expect(later.body.validUntil).toBe(inTwo);
			// The preview of the same instant says the same.
			const preview = await api<{ validUntil: string | null; layout: ManifestLayout | null }>("GET", `/displays/${display.id}/preview`, owner);
			expect(preview.body.validUntil).toBe(inTwo);
			await settled();
		});

		it("a display's default layout plays when nothing is scheduled (source default); naming a default playlist clears it, and both at once is a 422", async () => {
			const c = await webContent(owner, "Default page");
			const fallback = await playlist(owner, "Default playlist", [c]);
			const screen = await layout(owner, { name: "Default layout", zones: [zone(fallback)] });
			const { display, token } = await pairDisplay(p, owner);
			const set = await api<{ defaultLayoutId: string | null; defaultPlaylistId: string | null }>("PATCH", `/displays/${display.id}`, owner, { defaultPlaylistId: fallback });
			expect(set.body).toMatchObject({ defaultPlaylistId: fallback, defaultLayoutId: null });
			const toLayout = await api<{ defaultLayoutId: string | null; defaultPlaylistId: string | null }>("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: screen.id });
			expect(toLayout.status).toBe(200);
			expect(toLayout.body).toMatchObject({ defaultLayoutId: screen.id, defaultPlaylistId: null });
			const m = await manifest(token);
			expect(m.body).toMatchObject({ source: "default", schedule: null, layout: { id: screen.id }, playlist: { id: fallback } });

			// Edits of the layout, and of what its zones play, reach the display through its default too.
			const stream = await connect(p.url, token);
			await settled();
			expect((await api("PATCH", `/layouts/${screen.id}`, owner, { zones: [zone(fallback, { width: 0.5 })] })).status).toBe(200);
			const moved = await stream.waitFor(isEvent("manifest"));
			const afterMove = await manifest(token);
			expect(JSON.parse(moved.data ?? "")).toEqual({ etag: afterMove.body.etag });
			expect(afterMove.body.layout?.zones[0].width).toBe(0.5);
			expect((await api("DELETE", `/content/${c}`, owner)).status).toBe(204);
			const emptied = await stream.waitFor(isEvent("manifest"), 3000, stream.blocks.indexOf(moved) + 1);
			const afterDelete = await manifest(token);
			expect(JSON.parse(emptied.data ?? "")).toEqual({ etag: afterDelete.body.etag });
			expect(afterDelete.body.layout?.zones[0].items).toEqual([]);

			const both = await api("PATCH", `/displays/${display.id}`, owner, { defaultPlaylistId: fallback, defaultLayoutId: screen.id });
			expect([both.status, fieldsOf(both)]).toEqual([422, ["defaultLayoutId"]]);
			expect((await api<{ defaultLayoutId: string | null }>("GET", `/displays/${display.id}`, owner)).body.defaultLayoutId).toBe(screen.id);
			// Only admins set defaults.
			expect((await api("PATCH", `/displays/${display.id}`, editor.session, { defaultLayoutId: null })).status).toBe(403);
			expect((await api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: "not-an-id" })).status).toBe(422);
			expect((await api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: { $ne: null } })).status).toBe(422);

			const back = await api<{ defaultLayoutId: string | null; defaultPlaylistId: string | null }>("PATCH", `/displays/${display.id}`, owner, { defaultPlaylistId: fallback });
			expect(back.body).toMatchObject({ defaultPlaylistId: fallback, defaultLayoutId: null });
			expect((await manifest(token)).body).toMatchObject({ source: "default", layout: null, playlist: { id: fallback } });
			const cleared = await api<{ defaultLayoutId: string | null; defaultPlaylistId: string | null }>("PATCH", `/displays/${display.id}`, owner, { defaultPlaylistId: null, defaultLayoutId: null });
			expect(cleared.body).toMatchObject({ defaultPlaylistId: null, defaultLayoutId: null });
			expect((await manifest(token)).body).toMatchObject({ source: "none", layout: null, playlist: null, items: [] });
			await settled();
		});

		it("an override playing a layout beats every schedule until it ends", async () => {
			const normal = await playlist(owner, "Normal", [await webContent(owner, "Normal page")]);
			const alert = await playlist(owner, "Alert", [await webContent(owner, "Alert page")]);
			const info = await playlist(owner, "Info", [await webContent(owner, "Info page")]);
			const emergency = await layout(owner, { name: "Emergency", zones: [zone(alert, { height: 0.8 }), zone(info, { y: 0.8, height: 0.2 })] });
			const screen = await pairDisplay(p, owner, { tags: ["override-layout"] });
			await schedule(owner, { name: "High", playlistId: normal, targets: { tags: ["override-layout"] }, priority: 1000 });
			await settled();
			const stream = await connect(p.url, screen.token);

			const endsAt = new Date(Date.now() + 3600_000).toISOString();
			const created = await api<{ id: string; playlistId: string | null; layoutId: string | null; status: string }>("POST", "/overrides", owner, { name: "Evacuate", layoutId: emergency.id, targets: { tags: ["override-layout"] }, endsAt });
			expect(created.status).toBe(201);
			expect(created.body).toMatchObject({ playlistId: null, layoutId: emergency.id, status: "active" });
			expectShape(OverrideView, created.body);
			await stream.waitFor(isEvent("manifest"));
			const during = await manifest(screen.token);
			expect(during.body).toMatchObject({ source: "override", override: { id: created.body.id, name: "Evacuate" }, layout: { id: emergency.id }, playlist: { id: alert }, validUntil: endsAt });
			expect(during.body.layout?.zones.map(z => z.playlist?.id)).toEqual([alert, info]);

			expect((await api("DELETE", `/overrides/${created.body.id}`, owner)).status).toBe(204);
			expect((await manifest(screen.token)).body).toMatchObject({ source: "schedule", layout: null, playlist: { id: normal } });
			await settled();
		});

		it("preview and timeline name the layout that plays", async () => {
			const list = await playlist(owner, "Timeline", [await webContent(owner, "Timeline page")]);
			const screen = await layout(owner, { name: "Office hours", zones: [zone(list)] });
			const { display } = await pairDisplay(p, owner, { timezone: "UTC" });
			const sched = await schedule(owner, { name: "Nine to five", layoutId: screen.id, targets: { displayIds: [display.id] }, startTime: "09:00", endTime: "17:00" });

			const during = await api<{ source: string; layout: ManifestLayout | null; playlist: { id: string } | null; schedule: { id: string } | null; validUntil: string }>(
				"GET",
				`/displays/${display.id}/preview?at=${encodeURIComponent("2026-12-01T10:00:00Z")}`,
				owner
			);
			expect(during.status).toBe(200);
			expectShape(PreviewView, during.body);
			expect(during.body).toMatchObject({ source: "schedule", schedule: { id: sched.id }, playlist: { id: list }, validUntil: "2026-12-01T17:00:00.000Z" });
			expect(during.body.layout).toMatchObject({ id: screen.id, name: "Office hours", zones: [{ id: screen.zones[0].id, playlist: { id: list, name: "Timeline" } }] });
			const outside = await api<{ source: string; layout: unknown }>("GET", `/displays/${display.id}/preview?at=${encodeURIComponent("2026-12-01T18:00:00Z")}`, owner);
			expect(outside.body).toMatchObject({ source: "none", layout: null });

			const timeline = await api<{ segments: Array<{ start: string; end: string; source: string; playlistId: string | null; layoutId: string | null; scheduleId: string | null }> }>(
				"GET",
				`/displays/${display.id}/timeline?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z`,
				owner
			);
			expect(timeline.status).toBe(200);
			expectShape(TimelineView, timeline.body);
			expect(timeline.body.segments.map(s => [s.start, s.end, s.source, s.playlistId, s.layoutId, s.scheduleId])).toEqual([
				["2026-12-01T00:00:00.000Z", "2026-12-01T09:00:00.000Z", "none", null, null, null],
				["2026-12-01T09:00:00.000Z", "2026-12-01T17:00:00.000Z", "schedule", null, screen.id, sched.id],
				["2026-12-01T17:00:00.000Z", "2026-12-02T00:00:00.000Z", "none", null, null, null]
			]);
			// Switching the same schedule to a playlist splits nothing but changes what the segment names.
			await api("PATCH", `/schedules/${sched.id}`, owner, { playlistId: list });
			const switched = await api<{ segments: Array<{ source: string; playlistId: string | null; layoutId: string | null }> }>(
				"GET",
				`/displays/${display.id}/timeline?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z`,
				owner
			);
			expect(switched.body.segments[1]).toMatchObject({ source: "schedule", playlistId: list, layoutId: null });
			await settled();
		});
	});

	describe("schedules and overrides play a playlist or a layout", () => {
		it("exactly one of playlistId and layoutId: both is a 422 on layoutId, neither on playlistId, and naming one on a PATCH clears the other", async () => {
			const list = await playlist(owner, "Program", [await webContent(owner, "Program page")]);
			const screen = await layout(owner, { name: "Program", zones: [zone(list)] });
			const { display, token } = await pairDisplay(p, owner);
			const targets = { displayIds: [display.id] };
			const unknown = "0190a8e2-7b1c-7c3d-8e4f-123456789abc";
			const refusals: Array<[Record<string, unknown>, string]> = [
				[{ playlistId: list, layoutId: screen.id }, "layoutId"],
				[{}, "playlistId"],
				[{ layoutId: unknown }, "layoutId"],
				[{ layoutId: null }, "layoutId"],
				[{ layoutId: "not-an-id" }, "layoutId"],
				[{ layoutId: { $ne: null } }, "layoutId"],
				[{ playlistId: null }, "playlistId"]
			];
			for (const [program, field] of refusals) {
				const res = await api("POST", "/schedules", owner, { name: "Program", targets, ...program });
				expect([program, res.status, fieldsOf(res)]).toEqual([program, 422, [field]]);
			}

			const sched = await schedule(owner, { name: "Program", layoutId: screen.id, targets });
			expect(sched).toMatchObject({ playlistId: null, layoutId: screen.id });
			expectShape(ScheduleView, sched);
			expect((await manifest(token)).body).toMatchObject({ source: "schedule", layout: { id: screen.id } });

			const toPlaylist = await api<{ playlistId: string | null; layoutId: string | null; name: string }>("PATCH", `/schedules/${sched.id}`, owner, { playlistId: list });
			expect(toPlaylist.body).toMatchObject({ playlistId: list, layoutId: null });
			expect((await manifest(token)).body).toMatchObject({ source: "schedule", layout: null, playlist: { id: list } });
			const renamed = await api<{ playlistId: string | null; layoutId: string | null; name: string }>("PATCH", `/schedules/${sched.id}`, owner, { name: "Renamed" });
			expect(renamed.body).toMatchObject({ name: "Renamed", playlistId: list, layoutId: null });
			const toLayout = await api<{ playlistId: string | null; layoutId: string | null }>("PATCH", `/schedules/${sched.id}`, owner, { layoutId: screen.id });
			expect(toLayout.body).toMatchObject({ playlistId: null, layoutId: screen.id });
			const bothAgain = await api("PATCH", `/schedules/${sched.id}`, owner, { playlistId: list, layoutId: screen.id });
			expect([bothAgain.status, fieldsOf(bothAgain)]).toEqual([422, ["layoutId"]]);
			const nulled = await api("PATCH", `/schedules/${sched.id}`, owner, { layoutId: null });
			expect([nulled.status, fieldsOf(nulled)]).toEqual([422, ["layoutId"]]);
			expect((await api("GET", `/schedules/${sched.id}`, owner)).body).toMatchObject({ playlistId: null, layoutId: screen.id });

			// Overrides alike.
			const endsAt = new Date(Date.now() + 3600_000).toISOString();
			for (const [program, field] of refusals.slice(0, 3)) {
				const res = await api("POST", "/overrides", owner, { name: "Program", targets, endsAt, ...program });
				expect([program, res.status, fieldsOf(res)]).toEqual([program, 422, [field]]);
			}
			const override = await api<{ id: string; playlistId: string | null; layoutId: string | null }>("POST", "/overrides", owner, { name: "Program", targets, endsAt, playlistId: list });
			expect(override.body).toMatchObject({ playlistId: list, layoutId: null });
			const overrideToLayout = await api<{ playlistId: string | null; layoutId: string | null }>("PATCH", `/overrides/${override.body.id}`, owner, { layoutId: screen.id });
			expect(overrideToLayout.body).toMatchObject({ playlistId: null, layoutId: screen.id });
			expect((await manifest(token)).body).toMatchObject({ source: "override", layout: { id: screen.id } });
			const overrideBoth = await api("PATCH", `/overrides/${override.body.id}`, owner, { playlistId: list, layoutId: screen.id });
			expect([overrideBoth.status, fieldsOf(overrideBoth)]).toEqual([422, ["layoutId"]]);
			expect((await api("PATCH", `/overrides/${override.body.id}`, owner, { playlistId: list })).body).toMatchObject({ playlistId: list, layoutId: null });
			await api("DELETE", `/overrides/${override.body.id}`, owner);
			await settled();
		});
	});

	describe("deleting", () => {
		it("a layout in use by a schedule, a running override and a display default answers 409 naming them; ?force=true removes them and clears the default", async () => {
			const list = await playlist(owner, "In use", [await webContent(owner, "In use page")]);
			const screen = await layout(owner, { name: "In use", zones: [zone(list)] });
			const { display, token } = await pairDisplay(p, owner, { tags: ["in-use-layout"] });
			const { display: bystander } = await pairDisplay(p, owner);
			await api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: screen.id });
			await api("PATCH", `/displays/${bystander.id}`, owner, { defaultPlaylistId: list });
			const sched = await schedule(owner, { name: "Uses the layout", layoutId: screen.id, targets: { tags: ["in-use-layout"] }, startTime: "00:00", endTime: "00:01" });
			const endsAt = new Date(Date.now() + 3600_000).toISOString();
			const startsAt = new Date(Date.now() + 1800_000).toISOString();
			const override = await api<{ id: string }>("POST", "/overrides", owner, { name: "Later takeover", layoutId: screen.id, targets: { displayIds: [display.id] }, startsAt, endsAt });
			expect(override.status).toBe(201);

			const refused = await api<ErrorBody>("DELETE", `/layouts/${screen.id}`, owner);
			expect(refused.status).toBe(409);
			expect(refused.body.error).toMatchObject({
				type: "CONFLICT",
				code: 409,
				data: { schedules: [{ id: sched.id, name: "Uses the layout" }], overrides: [{ id: override.body.id, name: "Later takeover" }], displayIds: [display.id] }
			});
			expect((await api("GET", `/layouts/${screen.id}`, owner)).status).toBe(200);
			// ?force=false is no force.
			expect((await api("DELETE", `/layouts/${screen.id}?force=false`, owner)).status).toBe(409);

			const stream = await connect(p.url, token);
			const forced = await api("DELETE", `/layouts/${screen.id}?force=true`, owner);
			expect([forced.status, forced.text]).toEqual([204, ""]);
			expect((await api("GET", `/layouts/${screen.id}`, owner)).status).toBe(404);
			expect((await api("GET", `/schedules/${sched.id}`, owner)).status).toBe(404);
			expect((await api("GET", `/overrides/${override.body.id}`, owner)).status).toBe(404);
			expect((await api<{ defaultLayoutId: string | null }>("GET", `/displays/${display.id}`, owner)).body.defaultLayoutId).toBeNull();
			expect((await api<{ defaultPlaylistId: string | null }>("GET", `/displays/${bystander.id}`, owner)).body.defaultPlaylistId).toBe(list);
			expect((await manifest(token)).body).toMatchObject({ source: "none", layout: null });
			await stream.waitFor(isEvent("manifest"));
			// Deleting it again is a 404; the playlist it used is free to go.
			expect((await api("DELETE", `/layouts/${screen.id}?force=true`, owner)).status).toBe(404);
			const playlistDelete = await api<ErrorBody>("DELETE", `/playlists/${list}`, owner);
			expect(playlistDelete.status).toBe(409);
			expect(playlistDelete.body.error.data).toMatchObject({ layouts: [], schedules: [], overrides: [], displayIds: [bystander.id] });
			await settled();
		});

		it("an unused layout, or one whose override ended, deletes without force", async () => {
			const list = await playlist(owner, "Unused", [await webContent(owner, "Unused page")]);
			const unused = await layout(owner, { name: "Unused", zones: [zone(list)] });
			expect((await api("DELETE", `/layouts/${unused.id}`, owner)).status).toBe(204);
			const ended = await layout(owner, { name: "Ended", zones: [zone(list)] });
			const override = await api<{ id: string }>("POST", "/overrides", owner, { name: "Ended", layoutId: ended.id, endsAt: new Date(Date.now() + 3600_000).toISOString(), targets: { tags: ["nobody"] } });
			expect((await api("DELETE", `/layouts/${ended.id}`, owner)).status).toBe(409);
			expect((await api("DELETE", `/overrides/${override.body.id}`, owner)).status).toBe(204);
			expect((await api("DELETE", `/layouts/${ended.id}`, owner)).status).toBe(204);
			await settled();
		});

		it("a playlist used by a layout answers 409 naming the layout; ?force=true takes its zones out of the layout and the screen follows", async () => {
			const keep = await playlist(owner, "Keep", [await webContent(owner, "Keep page")]);
			const doomed = await playlist(owner, "Doomed", [await webContent(owner, "Doomed page")]);
			const screen = await layout(owner, { name: "Loses a zone", zones: [zone(keep, { name: "Keep", width: 0.5 }), zone(doomed, { name: "Doomed", x: 0.5, width: 0.5 })] });
			const only = await layout(owner, { name: "Only doomed", zones: [zone(doomed, { name: "Doomed" })] });
			const { display, token } = await pairDisplay(p, owner);
			await schedule(owner, { name: "Loses a zone", layoutId: screen.id, targets: { displayIds: [display.id] } });
			const before = await manifest(token);
			expect(before.body.layout?.zones.map(z => z.name)).toEqual(["Keep", "Doomed"]);

			const refused = await api<ErrorBody>("DELETE", `/playlists/${doomed}`, owner);
			expect(refused.status).toBe(409);
			expect(refused.body.error.data).toMatchObject({ layouts: expect.arrayContaining([{ id: screen.id, name: "Loses a zone" }, { id: only.id, name: "Only doomed" }]) });

			const stream = await connect(p.url, token);
			expect((await api("DELETE", `/playlists/${doomed}?force=true`, owner)).status).toBe(204);
			const kept = await api<Layout>("GET", `/layouts/${screen.id}`, owner);
			expect(kept.body.zones.map(z => [z.name, z.playlistId])).toEqual([["Keep", keep]]);
			expect((await api<Page<Layout>>("GET", `/layouts?playlistId=${doomed}`, owner)).body.total).toBe(0);
			const after = await manifest(token, before.body.etag);
			expect(after.status).toBe(200);
			expect(after.body.layout?.zones.map(z => z.name)).toEqual(["Keep"]);
			expect(after.body.layout?.zones[0].etag).toBe(before.body.layout?.zones[0].etag);
			await stream.waitFor(isEvent("manifest"));
			// The layout that had only that playlist is left with no zone (documented: its zones leave).
			const emptied = await api<Layout>("GET", `/layouts/${only.id}`, owner);
			expect(emptied.status).toBe(200);
			expect(emptied.body.zones).toEqual([]);
			await settled();
		});

		it("the tenant's export holds its layouts, and deleting the tenant removes them", async () => {
			const doomedOwner = await register(p, newAccount("layouts-doomed"));
			const list = await playlist(doomedOwner, "Doomed list", [await webContent(doomedOwner, "Doomed page")]);
			const screen = await layout(doomedOwner, { name: "Doomed layout", backgroundColor: "#ffffff", zones: [zone(list)] });
			const sched = await schedule(doomedOwner, { name: "Doomed", layoutId: screen.id, targets: { tags: ["all"] } });

			const exported = await api<{ services: { scheduling: { layouts: Layout[]; schedules: Array<{ id: string; layoutId: string | null }> } } }>("GET", "/tenant/export", doomedOwner);
			expect(exported.status).toBe(200);
			expectShape(SchedulingExport, exported.body.services.scheduling);
			expect(exported.body.services.scheduling.layouts).toEqual([screen]);
			expect(exported.body.services.scheduling.schedules).toEqual([expect.objectContaining({ id: sched.id, layoutId: screen.id })]);
			// Nobody else's layouts are in it.
			expect(exported.text).not.toContain(owner.tenant.id);

			expect((await api("DELETE", "/tenant", doomedOwner, { confirm: doomedOwner.tenant.name })).status).toBe(204);
			const scheduling = p.broker.getLocalService("scheduling") as unknown as { db: { layouts: TenantCollection<TenantOwned> } };
			const left = await eventually(
				() => scheduling.db.layouts.findDocs(systemScope(doomedOwner.tenant.id)),
				docs => docs.length === 0
			);
			expect(left).toEqual([]);
			// The other tenants' layouts stay.
			expect(await layoutCount(owner)).toBeGreaterThan(0);
		});
	});

	describe("concurrency", () => {
		it("10 parallel PATCHes of one layout's zones leave the zones of exactly one of them, and the screen agrees", async () => {
			const c = await webContent(owner, "Race page");
			const lists = [await playlist(owner, "Race 0", [c]), await playlist(owner, "Race 1", [c]), await playlist(owner, "Race 2", [c])];
			const screen = await layout(owner, { name: "Race", zones: [zone(lists[0])] });
			const { display, token } = await pairDisplay(p, owner);
			await schedule(owner, { name: "Race", layoutId: screen.id, targets: { displayIds: [display.id] } });

			const bodies = Array.from({ length: 10 }, (_, r) => {
				const count = (r % 4) + 1;
				return {
					zones: Array.from({ length: count }, (_, k) => ({
						...(k === 0 ? { id: screen.zones[0].id } : {}),
						name: `r${r}-z${k}`,
						x: k / count,
						y: 0,
						width: 1 / count,
						height: 1,
						playlistId: lists[(r + k) % 3]
					}))
				};
			});
			const answers = await Promise.all(bodies.map(body => api<Layout>("PATCH", `/layouts/${screen.id}`, owner, body)));
			expect(answers.map(a => a.status)).toEqual(Array(10).fill(200));
			await settled();

			const final = (await api<Layout>("GET", `/layouts/${screen.id}`, owner)).body;
			const rounds = new Set(final.zones.map(z => z.name.split("-")[0]));
			expect(rounds.size).toBe(1);
			const r = Number([...rounds][0].slice(1));
			expect(final.zones.map(({ name, x, width, playlistId }) => ({ name, x, width, playlistId }))).toEqual(
				bodies[r].zones.map(({ name, x, width, playlistId }) => ({ name, x, width, playlistId }))
			);
			// The zone sent with its id kept it; the others are distinct.
			expect(final.zones[0].id).toBe(screen.zones[0].id);
			expect(new Set(final.zones.map(z => z.id)).size).toBe(final.zones.length);
			// The playlist index agrees with the zones.
			for (const list of lists) {
				const listed = (await api<Page<Layout>>("GET", `/layouts?playlistId=${list}&pageSize=100`, owner)).body.rows.some(row => row.id === screen.id);
				expect([list, listed]).toEqual([list, final.zones.some(z => z.playlistId === list)]);
			}
			// The screen shows the layout as stored.
			const m = await manifest(token);
			expect(m.body.layout?.zones.map(z => [z.id, z.name, z.playlist?.id])).toEqual(final.zones.map(z => [z.id, z.name, z.playlistId]));
			// And the device's cached manifest is the same one (no stale recomputation won).
			const heartbeat = await api<{ manifestEtag: string | null }>("POST", "/device/heartbeat", token, {});
			expect(heartbeat.body.manifestEtag).toBe(m.body.etag);
		});

		it("a layout deleted while a schedule, an override or a display default is set to it leaves nothing pointing at it", async () => {
			const list = await playlist(owner, "Dangling", [await webContent(owner, "Dangling page")]);
			const { display } = await pairDisplay(p, owner);
			const dangling: string[] = [];
			for (let round = 0; round < 20; round++) {
				const screen = await layout(owner, { name: `Dangling ${round}`, zones: [zone(list)] });
				const endsAt = new Date(Date.now() + 3600_000).toISOString();
				// Odd rounds send the delete first, even rounds the writes naming the layout first; rounds 2, 3, 6, 7, ... force it.
				const deleteIt = () => api("DELETE", `/layouts/${screen.id}${round % 4 < 2 ? "" : "?force=true"}`, owner);
				const writes = () =>
					Promise.all([
						api<{ id: string }>("POST", "/schedules", owner, { name: `Dangling ${round}`, layoutId: screen.id, targets: { displayIds: [display.id] } }),
						api<{ id: string }>("POST", "/overrides", owner, { name: `Dangling ${round}`, layoutId: screen.id, targets: { tags: ["nobody"] }, endsAt }),
						api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: screen.id })
					]);
				const [removed, [sched, override, asDefault]] = round % 2 ? await Promise.all([deleteIt(), writes()]) : await Promise.all([writes(), deleteIt()]).then(([w, d]) => [d, w] as const);
				if (removed.status !== 204) {
					await api("DELETE", `/layouts/${screen.id}?force=true`, owner);
				}
				expect((await api("GET", `/layouts/${screen.id}`, owner)).status).toBe(404);
				if (sched.status === 201 && (await api("GET", `/schedules/${sched.body.id}`, owner)).status === 200) dangling.push(`round ${round}: schedule ${sched.body.id} plays the deleted layout`);
				if (override.status === 201 && (await api("GET", `/overrides/${override.body.id}`, owner)).status === 200) {
					const o = await api<{ status: string }>("GET", `/overrides/${override.body.id}`, owner);
					if (o.body.status !== "ended") dangling.push(`round ${round}: override ${override.body.id} plays the deleted layout`);
				}
				const shown = await api<{ defaultLayoutId: string | null }>("GET", `/displays/${display.id}`, owner);
				if (shown.body.defaultLayoutId === screen.id) dangling.push(`round ${round}: display ${display.id} defaults to the deleted layout (PATCH ${asDefault.status})`);
				await api("PATCH", `/displays/${display.id}`, owner, { defaultLayoutId: null });
			}
			expect(dangling).toEqual([]);
			await settled();
		});

		it("a playlist force-deleted while a layout PATCH puts it in a zone leaves no zone playing a deleted playlist", async () => {
			const c = await webContent(owner, "Zone race page");
			const keep = await playlist(owner, "Zone race keep", [c]);
			const screen = await layout(owner, { name: "Zone race", zones: [zone(keep)] });
			const dangling: string[] = [];
			for (let round = 0; round < 20; round++) {
				const doomed = await playlist(owner, `Zone race ${round}`, [c]);
				const patchIt = () => api<Layout>("PATCH", `/layouts/${screen.id}`, owner, { zones: [zone(keep, { width: 0.5 }), zone(doomed, { x: 0.5, width: 0.5 })] });
				const deleteIt = () => api("DELETE", `/playlists/${doomed}?force=true`, owner);
				const [patched, removed] = round % 2 ? await Promise.all([patchIt(), deleteIt()]) : await Promise.all([deleteIt(), patchIt()]).then(([d, pt]) => [pt, d] as const);
				const now = (await api<Layout>("GET", `/layouts/${screen.id}`, owner)).body;
				const exists = (await api("GET", `/playlists/${doomed}`, owner)).status === 200;
				if (!exists && now.zones.some(z => z.playlistId === doomed)) dangling.push(`round ${round}: PATCH ${patched.status}, DELETE ${removed.status}, zone plays deleted playlist ${doomed}`);
				await api("PATCH", `/layouts/${screen.id}`, owner, { zones: [zone(keep)] });
			}
			expect(dangling).toEqual([]);
			await settled();
		});

		it("parallel creates, renames and deletes never answer a 5xx and leave a consistent list", async () => {
			const list = await playlist(owner, "Churn", [await webContent(owner, "Churn page")]);
			const before = await layoutCount(owner);
			const created = await Promise.all(Array.from({ length: 8 }, (_, i) => api<Layout>("POST", "/layouts", owner, { name: `Churn ${i}`, width: 1, height: 1, zones: [zone(list)] })));
			expect(created.map(r => r.status)).toEqual(Array(8).fill(201));
			const ids = created.map(r => r.body.id);
			const churn = await Promise.all(ids.flatMap(id => [api("PATCH", `/layouts/${id}`, owner, { name: "Churned" }), api("DELETE", `/layouts/${id}`, owner)]));
			for (const res of churn) expect([200, 204, 404]).toContain(res.status);
			for (const id of ids) expect((await api("GET", `/layouts/${id}`, owner)).status).toBe(404);
			expect(await layoutCount(owner)).toBe(before);
		});
	});
});
