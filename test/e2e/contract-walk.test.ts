/**
 * Contract walk: the published OpenAPI document against what the platform really answers.
 *
 * One scripted flow, written by hand, walks the API the way its users do — an owner signs up,
 * verifies the address, resets and changes the password, invites people, pairs a screen through
 * the device API, uploads content, builds playlists, layouts, schedules and power schedules, the
 * screen fetches its manifest and files, an editor's changes wait for approval and an admin
 * approves and rejects them, everything is deleted again, the tenant exported, handed over and
 * deleted — so that every route under /api/v1 answers its success at least once. Every answer is
 * recorded by the route template it was sent to, and then checked against the document:
 *
 *   (a) every route of the document answered a 2xx at least once (a route the flow misses fails
 *       the suite by name: a new route needs a step here);
 *   (b) every answer below 400 has a status the document declares for that operation: its
 *       success status, or a conditional one it declares (304, 302);
 *   (c) every 2xx JSON body validates against the declared response schema, objects closed:
 *       a field the document does not declare is an error too, so it cannot fall behind;
 *   (d) every 2xx answer with a body has a declared schema for its media type, and an answer
 *       declared without a body has none.
 *
 * Until every action declares its `response`, (d) lists the routes that still lack one.
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { EVENT_CHANNEL } from "../../shared/channels";
import { sendToChannel } from "../../shared/contracts";
import { bearer, mailbox, newAccount, someClient, startTestPlatform, tokenFromMail, waitForMail, type Platform, type Session } from "../helpers/accounts";
import { signedBody, startFakeStripe, stripeEvent, type FakeStripe } from "../helpers/fake-stripe";
import { closedSchema, jsonSchemaValidator } from "../helpers/openapi-validator";
import { startTestDns, type TestDns } from "../helpers/dns-server";
import { followAuthorization, startIdp } from "../helpers/oidc-idp";
import { API_V1 } from "../helpers/routes";
import { codeFor, stepOf } from "../helpers/totp";

interface Operation {
	responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

interface OpenApiDocument {
	paths: Record<string, Record<string, Operation>>;
}

interface Answer<T = unknown> {
	/** "GET /displays/{id}": the method and the document's template below /api/v1. */
	label: string;
	status: number;
	headers: Headers;
	/** Media type without parameters, "" when none. */
	mediaType: string;
	/** Bytes of the body (an event stream counts as a body and is not read). */
	size: number;
	text: string;
	body: T;
}

interface CallOptions {
	token?: string;
	/** Path parameters by name. */
	values?: Record<string, string>;
	query?: Record<string, string>;
	json?: unknown;
	form?: FormData;
	/** Bytes sent as they are (a signed webhook), with the Content-Type of `headers`. */
	raw?: string;
	headers?: Record<string, string>;
}

const HTTP_METHODS = ["get", "put", "post", "delete", "patch"];
const REQUEST_TIMEOUT_MS = 10_000;

const baseType = (contentType: string | null) => (contentType ?? "").split(";")[0].trim().toLowerCase();
const isJson = (mediaType: string) => mediaType === "application/json" || mediaType.endsWith("+json");

/** Whether a declared media type (or range, "*\/*", "image/*") covers the answer's. */
function covers(declared: string, actual: string): boolean {
	if (declared === "*/*" || declared === actual) return true;
	return declared.endsWith("/*") && actual.startsWith(declared.slice(0, -1));
}

describe("contract walk: every /api/v1 route answers as the OpenAPI document says", () => {
	let p: Platform;
	let stripe: FakeStripe | undefined;
	const fake = (): FakeStripe => {
		if (!stripe) throw new Error("the fake Stripe did not start");
		return stripe;
	};
	let doc: OpenApiDocument;
	/** Answers single sign-on's domain verification (DNS TXT). */
	let dnsServer: TestDns;
	const answers: Answer[] = [];

	beforeAll(async () => {
		dnsServer = await startTestDns();
		stripe = await startFakeStripe();
		p = await startTestPlatform({ ...stripe.env, BCRYPT_COST: "4", DEFAULT_PLAN_MEMBERS: "100", DEFAULT_PLAN_DISPLAYS: "100", WEBHOOK_ALLOW_PRIVATE: "true", SSO_ALLOW_PRIVATE: "true", DNS_SERVERS: dnsServer.server, NOTIFICATIONS_POLL_MS: "50" });
		const res = await fetch(`${p.url}/api/openapi.json`);
		expect(res.status).toBe(200);
		doc = (await res.json()) as OpenApiDocument;
	}, 30_000);

	afterAll(async () => {
		await p?.stop();
		await stripe?.close();
		await dnsServer?.close();
	});

	/** The document's operations under /api/v1 by label ("GET /displays/{id}"). */
	function documentedRoutes(): Map<string, Operation> {
		const routes = new Map<string, Operation>();
		for (const [path, item] of Object.entries(doc.paths)) {
			if (!path.startsWith(`${API_V1}/`)) continue;
			for (const [method, op] of Object.entries(item)) {
				if (HTTP_METHODS.includes(method)) routes.set(`${method.toUpperCase()} ${path.slice(API_V1.length)}`, op);
			}
		}
		return routes;
	}

	/** Sends one request to the route `label` and records the answer. */
	async function call<T = unknown>(label: string, options: CallOptions = {}): Promise<Answer<T>> {
		const [method, template] = label.split(" ");
		const path = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
			const value = options.values?.[name];
			if (value === undefined) throw new Error(`${label}: no value for {${name}}`);
			return encodeURIComponent(value);
		});
		const query = options.query ? `?${new URLSearchParams(options.query).toString()}` : "";
		const headers = new Headers({ ...(options.token ? bearer(options.token) : {}), ...options.headers });
		let body: string | FormData | undefined = options.form ?? options.raw;
		if (options.json !== undefined) {
			headers.set("Content-Type", "application/json");
			body = JSON.stringify(options.json);
		}
		// Redirects are answers too (single sign-on's 302s): never followed.
		const res = await fetch(p.api(`${path}${query}`), { method, headers, body, redirect: "manual", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
		const mediaType = baseType(res.headers.get("content-type"));
		let text = "";
		let size = 0;
		if (mediaType === "text/event-stream") {
			// A live stream never ends: its status and headers are the answer.
			await res.body?.cancel();
			size = 1;
		} else {
			const bytes = Buffer.from(await res.arrayBuffer());
			size = bytes.length;
			if (isJson(mediaType) || mediaType.startsWith("text/")) text = bytes.toString("utf8");
		}
		let parsed: unknown = null;
		if (isJson(mediaType) && text !== "") parsed = JSON.parse(text);
		const answer: Answer<T> = { label, status: res.status, headers: res.headers, mediaType, size, text, body: parsed as T };
		answers.push(answer);
		return answer;
	}

	/** A step of the flow that must succeed (any 2xx: which one is the document's business, see (b)). */
	async function ok<T = unknown>(label: string, options: CallOptions = {}): Promise<Answer<T>> {
		const answer = await call<T>(label, options);
		if (answer.status < 200 || answer.status > 299) throw new Error(`${label} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
		return answer;
	}

	const signIn = async (email: string, password: string) => (await ok<Session>("POST /auth/login", { json: { email, password } })).body;

	/** Invites `email` as `role` (as `token`) and accepts from the mailed link. */
	async function join(token: string, account: ReturnType<typeof newAccount>, role: string): Promise<Session> {
		await ok("POST /invitations", { token, json: { email: account.email, role } });
		const invitation = await tokenFromMail(p, account.email, "accept-invitation");
		return (await ok<Session>("POST /invitations/accept", { json: { token: invitation, name: account.name, password: account.password } })).body;
	}

	it("a scripted flow through the whole API runs through", async () => {
		// ---- account: sign-up, sign-in, tokens, sessions, email, password -------------------
		const account = newAccount("walk");
		await ok<Session>("POST /auth/register", { json: account, headers: someClient() });
		const first = await signIn(account.email, account.password);
		const refreshed = await ok<{ accessToken: string }>("POST /auth/refresh", { json: { refreshToken: first.refreshToken } });
		let token = refreshed.body.accessToken;
		await ok("GET /auth/me", { token });
		const sessions = await ok<{ rows: Array<{ id: string; current: boolean }> }>("GET /auth/sessions", { token });
		const registration = sessions.body.rows.find(row => !row.current);
		if (!registration) throw new Error(`no second session to end: ${sessions.text}`);
		await ok("DELETE /auth/sessions/{id}", { token, values: { id: registration.id } });

		// The sign-up's verification mail is there (or on its way): wait for the resent one, whose token replaces it.
		await waitForMail(p, account.email, 1);
		const mailed = mailbox(p, account.email).length;
		await ok("POST /auth/resend-verification", { token });
		await waitForMail(p, account.email, mailed + 1);
		await ok("POST /auth/verify-email", { json: { token: await tokenFromMail(p, account.email, "verify-email") } });

		await ok("POST /auth/forgot-password", { json: { email: account.email } });
		const resetPassword = `${account.password}-reset`;
		await ok("POST /auth/reset-password", { json: { token: await tokenFromMail(p, account.email, "reset-password"), password: resetPassword } });
		token = (await signIn(account.email, resetPassword)).accessToken;
		const password = `${account.password}-changed`;
		await ok("POST /auth/change-password", { token, json: { currentPassword: resetPassword, newPassword: password } });
		token = (await signIn(account.email, password)).accessToken;

		// ---- API keys and the tenant ------------------------------------------------------------
		const apiKey = await ok<{ id: string; key: string }>("POST /api-keys", { token, json: { name: "Walk integration", role: "admin" } });
		await ok("GET /api-keys", { token });
		await ok("GET /tenant", { token: apiKey.body.key });
		await ok("PATCH /tenant", { token, json: { name: "Walk signage" } });

		// ---- members and invitations -------------------------------------------------------------
		const heirAccount = newAccount("walk-heir");
		const heir = await join(token, heirAccount, "admin");
		await ok("GET /invitations", { token });
		await ok("GET /members", { token });
		await ok("PATCH /members/{userId}", { token, values: { userId: heir.user.id }, json: { role: "editor" } });
		const leaver = await join(token, newAccount("walk-leaver"), "viewer");
		await ok("DELETE /members/me", { token: leaver.accessToken });
		const removed = await join(token, newAccount("walk-removed"), "viewer");
		await ok("DELETE /members/{userId}", { token, values: { userId: removed.user.id } });
		const revoked = await ok<{ id: string }>("POST /invitations", { token, json: { email: newAccount("walk-revoked").email, role: "viewer" } });
		await ok("DELETE /invitations/{id}", { token, values: { id: revoked.body.id } });

		// ---- a screen pairs through the device API ---------------------------------------------
		const pairing = await ok<{ pairingId: string; code: string; pollSecret: string }>("POST /device/pairing", { json: {}, headers: someClient() });
		const poll = { values: { pairingId: pairing.body.pairingId }, headers: { "X-Pairing-Secret": pairing.body.pollSecret } };
		await ok("GET /device/pairing/{pairingId}", poll);
		const display = (await ok<{ id: string }>("POST /displays/pair", { token, json: { code: pairing.body.code, name: "Lobby" } })).body;
		const paired = await ok<{ deviceToken?: string }>("GET /device/pairing/{pairingId}", poll);
		const device = paired.body.deviceToken;
		if (!device) throw new Error(`pairing handed out no device token: ${paired.text}`);
		const displayIds = { values: { id: display.id } };

		// ---- zero-touch: a provisioning key, a screen registering with it ----------------------
		const provisioning = (await ok<{ id: string; key: string }>("POST /provisioning-keys", { token, json: { name: "Rollout", tags: ["walk"], maxDisplays: 5 } })).body;
		await ok("GET /provisioning-keys", { token });
		await ok("GET /provisioning-keys/{id}", { token, values: { id: provisioning.id } });
		await ok("POST /device/register", { json: { provisioningKey: provisioning.key, hardwareId: "walk-serial-1", name: "Registered" }, headers: someClient() });
		await ok("DELETE /provisioning-keys/{id}", { token, values: { id: provisioning.id } });

		await ok("GET /displays", { token });
		await ok("GET /displays/{id}", { token, ...displayIds });
		const group = (await ok<{ id: string }>("POST /display-groups", { token, json: { name: "Ground floor" } })).body;
		await ok("GET /display-groups", { token });
		await ok("GET /display-groups/{id}", { token, values: { id: group.id } });
		await ok("PATCH /display-groups/{id}", { token, values: { id: group.id }, json: { name: "Ground floor east" } });
		await ok("PATCH /displays/{id}", { token, ...displayIds, json: { name: "Lobby screen", groupIds: [group.id] } });

		const command = (await ok<{ id: string }>("POST /displays/{id}/commands", { token, ...displayIds, json: { type: "reload" } })).body;
		await ok("GET /displays/{id}/commands", { token, ...displayIds });
		await ok("POST /device/heartbeat", { token: device, json: { appVersion: "1.0.0", uptimeSec: 60 } });
		await ok("POST /device/commands/{id}/ack", { token: device, values: { id: command.id }, json: { result: "reloaded" } });
		await ok("GET /device/events", { token: device });

		// ---- content -----------------------------------------------------------------------------
		const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 20, g: 90, b: 160 } } }).png().toBuffer();
		const form = new FormData();
		form.append("name", "Logo");
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "logo.png");
		const image = (await ok<{ id: string }>("POST /content", { token, form })).body;
		const page = (await ok<{ id: string }>("POST /content/url", { token, json: { name: "Menu", url: "https://example.com/menu", durationMs: 8000 } })).body;
		await ok("GET /content", { token });
		await ok("GET /content/usage", { token });
		await ok("GET /content/{id}", { token, values: { id: image.id } });
		await ok("PATCH /content/{id}", { token, values: { id: image.id }, json: { name: "Logo, blue", tags: ["brand"] } });
		await ok("GET /content/{id}/download", { token, values: { id: image.id } });
		await ok("GET /content/{id}/thumbnail", { token, values: { id: image.id } });

		// ---- what plays: playlists, schedules, overrides (layouts follow, once the screen plays) ----
		const items = [{ contentId: image.id }, { contentId: page.id, durationMs: 5000 }];
		const playlist = (await ok<{ id: string }>("POST /playlists", { token, json: { name: "Lobby loop", items } })).body;
		await ok("GET /playlists", { token });
		await ok("GET /playlists/{id}", { token, values: { id: playlist.id } });
		await ok("PATCH /playlists/{id}", { token, values: { id: playlist.id }, json: { name: "Lobby loop v2" } });
		const schedule = (await ok<{ id: string }>("POST /schedules", { token, json: { name: "Always", playlistId: playlist.id, targets: { displayIds: [display.id] } } })).body;
		await ok("GET /schedules", { token });
		await ok("GET /schedules/{id}", { token, values: { id: schedule.id } });
		await ok("PATCH /schedules/{id}", { token, values: { id: schedule.id }, json: { name: "Always on", priority: 5 } });
		const endsAt = new Date(Date.now() + 3600_000).toISOString();
		const override = (await ok<{ id: string }>("POST /overrides", { token, json: { name: "Drill", playlistId: playlist.id, targets: { groupIds: [group.id] }, endsAt } })).body;
		await ok("GET /overrides", { token });
		await ok("GET /overrides/{id}", { token, values: { id: override.id } });
		await ok("PATCH /overrides/{id}", { token, values: { id: override.id }, json: { name: "Fire drill" } });
		await ok("GET /displays/{id}/preview", { token, ...displayIds });
		await ok("GET /displays/{id}/timeline", { token, ...displayIds });

		// ---- the screen plays it: manifest (and its conditional 304), files ----------------------
		const manifest = await ok<{ items: Array<{ contentId: string }> }>("GET /device/manifest", { token: device });
		expect(manifest.body.items.map(item => item.contentId)).toContain(image.id);
		const etag = manifest.headers.get("etag");
		if (!etag) throw new Error("the manifest came without an ETag");
		const unchanged = await call("GET /device/manifest", { token: device, headers: { "If-None-Match": etag } });
		expect(unchanged.status).toBe(304);
		await ok("GET /device/content/{contentId}", { token: device, values: { contentId: image.id } });

		// ---- layouts: zones over a background; the screen plays one through the override ---------
		const layout = (
			await ok<{ id: string; zones: Array<{ id: string }> }>("POST /layouts", {
				token,
				json: {
					name: "Lobby split",
					width: 1920,
					height: 1080,
					backgroundColor: "#102030",
					backgroundContentId: image.id,
					zones: [
						{ name: "Main", x: 0, y: 0, width: 0.75, height: 1, playlistId: playlist.id },
						{ name: "Side", x: 0.75, y: 0, width: 0.25, height: 1, zIndex: 1, playlistId: playlist.id }
					]
				}
			})
		).body;
		const layoutIds = { values: { id: layout.id } };
		await ok("GET /layouts", { token, query: { playlistId: playlist.id } });
		await ok("GET /layouts/{id}", { token, ...layoutIds });
		await ok("PATCH /layouts/{id}", { token, ...layoutIds, json: { name: "Lobby split v2", zones: [{ id: layout.zones[0].id, name: "Main", x: 0, y: 0, width: 0.8, height: 1, playlistId: playlist.id }] } });
		const layoutSchedule = (await ok<{ id: string }>("POST /schedules", { token, json: { name: "Split", layoutId: layout.id, targets: { displayIds: [display.id] }, priority: 10 } })).body;
		await ok("GET /schedules/{id}", { token, values: { id: layoutSchedule.id } });
		await ok("PATCH /overrides/{id}", { token, values: { id: override.id }, json: { layoutId: layout.id } });
		await ok("GET /overrides/{id}", { token, values: { id: override.id } });
		const onScreen = await ok<{ layout: { id: string } | null }>("GET /device/manifest", { token: device });
		expect(onScreen.body.layout?.id).toBe(layout.id);
		await ok("GET /displays/{id}/preview", { token, ...displayIds });
		await ok("GET /displays/{id}/timeline", { token, ...displayIds });
		await ok("PATCH /displays/{id}", { token, ...displayIds, json: { defaultLayoutId: layout.id } });
		await ok("GET /displays/{id}", { token, ...displayIds });
		const byLayout = await ok<{ rows: Array<{ id: string }> }>("GET /schedules", { token, query: { layoutId: layout.id } });
		expect(byLayout.body.rows.map(row => row.id)).toEqual([layoutSchedule.id]);

		// ---- screen power: weeknights off from next year on (the rest of the walk keeps its screen on) ----
		const nextYear = new Date().getUTCFullYear() + 1;
		const power = (
			await ok<{ id: string }>("POST /power-schedules", {
				token,
				json: {
					name: "Weeknights off",
					state: "off",
					targets: { displayIds: [display.id], groupIds: [group.id], tags: ["walk"] },
					startDate: `${nextYear}-01-01`,
					daysOfWeek: [1, 2, 3, 4, 5],
					startTime: "22:00",
					endTime: "06:00",
					priority: 5
				}
			})
		).body;
		const powerIds = { values: { id: power.id } };
		await ok("GET /power-schedules", { token });
		const reaching = await ok<{ rows: Array<{ id: string }> }>("GET /power-schedules", { token, query: { displayId: display.id } });
		expect(reaching.body.rows.map(row => row.id)).toEqual([power.id]);
		await ok("GET /power-schedules/{id}", { token, ...powerIds });
		await ok("PATCH /power-schedules/{id}", { token, ...powerIds, json: { name: "Nights off", daysOfWeek: null, endDate: `${nextYear}-12-31`, excludeDisplayIds: [] } });
		const poweredNow = await ok<{ power: { state: string } | null }>("GET /device/manifest", { token: device });
		expect(poweredNow.body.power?.state).toBe("on");
		const atNight = await ok<{ power: { state: string } | null }>("GET /displays/{id}/preview", { token, ...displayIds, query: { at: `${nextYear}-03-03T23:30:00.000Z` } });
		expect(atNight.body.power?.state).toBe("off");

		// ---- content approval: an editor-role key's changes wait; an admin approves and rejects -----
		await ok("PATCH /tenant", { token, json: { settings: { contentApproval: true } } });
		const editorKey = (await ok<{ id: string; key: string }>("POST /api-keys", { token, json: { name: "Walk editor", role: "editor" } })).body;
		const proposed = (await ok<{ id: string; approval: { status: string } }>("POST /content/url", { token: editorKey.key, json: { name: "Specials", url: "https://example.com/specials", durationMs: 6000 } })).body;
		expect(proposed.approval.status).toBe("pending");
		const waiting = await ok<{ rows: Array<{ id: string }> }>("GET /content", { token, query: { approval: "pending" } });
		expect(waiting.body.rows.map(row => row.id)).toEqual([proposed.id]);
		const proposedIds = { values: { id: proposed.id } };
		await ok("POST /content/{id}/approve", { token, ...proposedIds, json: { comment: "Looks good" } });
		expect((await call("POST /content/{id}/approve", { token, ...proposedIds, json: {} })).status).toBe(409);
		const retimed = await ok<{ durationMs: number; proposal: { durationMs?: number } | null }>("PATCH /content/{id}", { token: editorKey.key, ...proposedIds, json: { durationMs: 9000 } });
		expect([retimed.body.durationMs, retimed.body.proposal?.durationMs]).toEqual([6000, 9000]);
		await ok("POST /content/{id}/reject", { token, ...proposedIds, json: { comment: "Keep it at six seconds" } });
		const turnedDown = await ok<{ rows: Array<{ id: string }> }>("GET /content", { token, query: { approval: "rejected" } });
		expect(turnedDown.body.rows.map(row => row.id)).toEqual([proposed.id]);
		const proposedList = (await ok<{ id: string; approval: { status: string } }>("POST /playlists", { token: editorKey.key, json: { name: "Specials loop", items: [{ contentId: proposed.id }] } })).body;
		expect(proposedList.approval.status).toBe("pending");
		const listIds = { values: { id: proposedList.id } };
		const waitingLists = await ok<{ rows: Array<{ id: string }> }>("GET /playlists", { token, query: { approval: "pending" } });
		expect(waitingLists.body.rows.map(row => row.id)).toEqual([proposedList.id]);
		await ok("POST /playlists/{id}/approve", { token, ...listIds, json: {} });
		const drafted = await ok<{ draft: { items: unknown[] } | null }>("PATCH /playlists/{id}", { token: editorKey.key, ...listIds, json: { items: [{ contentId: proposed.id }, { contentId: page.id }] } });
		expect(drafted.body.draft?.items).toHaveLength(2);
		await ok("POST /playlists/{id}/reject", { token, ...listIds, json: { comment: "One item is enough" } });
		const turnedDownLists = await ok<{ rows: Array<{ id: string }> }>("GET /playlists", { token, query: { approval: "rejected" } });
		expect(turnedDownLists.body.rows.map(row => row.id)).toEqual([proposedList.id]);
		// Off again: the rest of the walk's changes apply at once.
		await ok("PATCH /tenant", { token, json: { settings: { contentApproval: false } } });

		// ---- notifications and webhooks -----------------------------------------------------------
		// A local receiver that takes every delivery (private destinations are allowed in this run).
		const receiver = http.createServer((req, res) => {
			req.resume();
			req.on("end", () => res.writeHead(204).end());
		});
		await new Promise<void>(resolve => receiver.listen(0, "127.0.0.1", resolve));
		try {
			const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
			const walkStarted = new Date(Date.now() - 60_000).toISOString();
			const hook = (await ok<{ id: string }>("POST /webhooks", { token, json: { url: receiverUrl, events: ["display.paired", "quota.warning"], description: "Walk receiver" } })).body;
			const hookIds = { values: { id: hook.id } };
			await ok("GET /webhooks", { token });
			await ok("GET /webhooks/{id}", { token, ...hookIds });
			await ok("PATCH /webhooks/{id}", { token, ...hookIds, json: { events: ["display.paired", "quota.warning", "content.deleted"] } });
			await ok("POST /webhooks/{id}/rotate-secret", { token, ...hookIds });
			const test = (await ok<{ id: string }>("POST /webhooks/{id}/test", { token, ...hookIds })).body;
			await ok("GET /webhooks/{id}/deliveries", { token, ...hookIds });
			await ok("POST /webhook-deliveries/{id}/retry", { token, values: { id: test.id } });
			await ok("POST /webhooks/{id}/replay", { token, ...hookIds, json: { since: walkStarted } });

			// A quota warning, as the devices or media service would publish it, becomes an in-app notification.
			await sendToChannel(p.broker, EVENT_CHANNEL, {
				id: `evt_walk_${Date.now()}`,
				tenantId: first.tenant.id,
				type: "quota.warning",
				timestamp: new Date().toISOString(),
				data: { resource: "displays", used: 80, limit: 100 }
			});
			let notificationId: string | undefined;
			for (let i = 0; i < 100 && !notificationId; i++) {
				const list = await ok<{ rows: Array<{ id: string }> }>("GET /notifications", { token, query: { unread: "true" } });
				notificationId = list.body.rows[0]?.id;
				if (!notificationId) await new Promise(resolve => setTimeout(resolve, 50));
			}
			if (!notificationId) throw new Error("the quota warning never became a notification");
			await ok("POST /notifications/{id}/read", { token, values: { id: notificationId } });
			await ok("POST /notifications/read-all", { token });
			await ok("GET /notifications/preferences", { token });
			await ok("PATCH /notifications/preferences", { token, json: { email: { "display.online": false } } });
			await ok("GET /notifications/emails", { token });
			await ok("DELETE /webhooks/{id}", { token, ...hookIds });
		} finally {
			await new Promise(resolve => receiver.close(resolve));
		}

		// ---- billing (payments against the local fake of Stripe's API) ------------------------------
		await ok("GET /billing/plans", { token });
		await ok("GET /billing/subscription", { token });
		await ok("POST /billing/checkout", { token, json: { planId: "pro", quantity: 2 } });
		await ok("POST /billing/portal", { token });
		const customer = [...fake().customers.values()].find(c => c.metadata.tenantId === first.tenant.id);
		if (!customer) throw new Error("checkout created no Stripe customer");
		const subscription = fake().createSubscription({ customer: customer.id, tenantId: first.tenant.id, quantity: 2 });
		const signed = signedBody(stripeEvent("customer.subscription.updated", subscription));
		await ok("POST /billing/stripe/webhook", { raw: signed.body, headers: { "Content-Type": "application/json", "Stripe-Signature": signed.signature } });

		// ---- analytics: proof of play, reports, the audit log, weekly report emails ---------------
		const range = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date(Date.now() + 3_600_000).toISOString() };
		const played = { eventId: "walk-1", contentId: image.id, playlistId: playlist.id, startedAt: new Date().toISOString(), durationMs: 8000, completed: true };
		await ok("POST /device/playback", { token: device, json: { events: [played] } });
		await ok("GET /analytics/playback", { token, query: { ...range, groupBy: "display" } });
		await ok("GET /analytics/playback/export", { token, query: range });
		await ok("GET /analytics/uptime", { token, query: range });
		await ok("GET /analytics/health", { token, query: { ...range, interval: "1h" } });
		await ok("GET /audit-logs", { token, query: { action: "display.*" } });
		const weekly = (await ok<{ id: string }>("POST /analytics/reports", { token, json: { name: "Weekly proof of play", recipients: [account.email], weekday: 1, hour: 8, timezone: "Europe/Berlin" } })).body;
		await ok("GET /analytics/reports", { token });
		await ok("POST /analytics/reports/{id}/send", { token, values: { id: weekly.id } });
		await ok("DELETE /analytics/reports/{id}", { token, values: { id: weekly.id } });

		// ---- everything goes again ---------------------------------------------------------------
		await ok("DELETE /power-schedules/{id}", { token, ...powerIds });
		await ok("DELETE /overrides/{id}", { token, values: { id: override.id } });
		await ok("DELETE /schedules/{id}", { token, values: { id: schedule.id } });
		await ok("DELETE /layouts/{id}", { token, values: { id: layout.id }, query: { force: "true" } });
		await ok("DELETE /playlists/{id}", { token, values: { id: playlist.id } });
		await ok("DELETE /playlists/{id}", { token, ...listIds });
		await ok("DELETE /content/{id}", { token, ...proposedIds });
		await ok("DELETE /content/{id}", { token, values: { id: page.id } });
		await ok("DELETE /content/{id}", { token, values: { id: image.id } });
		await ok("DELETE /display-groups/{id}", { token, values: { id: group.id } });
		await ok("DELETE /displays/{id}", { token, ...displayIds });
		await ok("DELETE /api-keys/{id}", { token, values: { id: apiKey.body.id } });
		await ok("DELETE /api-keys/{id}", { token, values: { id: editorKey.id } });

		// ---- export, sign out, hand over, delete the tenant ---------------------------------------
		await ok("GET /tenant/export", { token });
		const spare = await signIn(account.email, password);
		await ok("POST /auth/logout", { json: { refreshToken: spare.refreshToken } });
		await ok("POST /auth/logout-all", { token });
		token = (await signIn(account.email, password)).accessToken;
		await ok("POST /tenant/transfer-ownership", { token, json: { userId: heir.user.id } });
		const newOwner = await signIn(heirAccount.email, heirAccount.password);
		expect(newOwner.role).toBe("owner");
		await ok("DELETE /tenant", { token: newOwner.accessToken, query: { confirm: newOwner.tenant.name } });
	}, 120_000);

	it("a person's organisations, two-factor sign-in and single sign-on run through", async () => {
		// ---- organisations --------------------------------------------------------------------
		const account = newAccount("walk-agency");
		const person = (await ok<Session>("POST /auth/register", { json: account, headers: someClient() })).body;
		let token = person.accessToken;
		const created = (await ok<{ tenant: { id: string } }>("POST /tenants", { token, json: { name: "Walk client" } })).body;
		await ok("GET /auth/tenants", { token });
		const switched = (await ok<Session>("POST /auth/switch-tenant", { token, json: { tenantId: created.tenant.id } })).body;
		expect(switched.tenant.id).toBe(created.tenant.id);

		// ---- two-factor -------------------------------------------------------------------------
		await ok("GET /auth/2fa", { token });
		const enrolment = (await ok<{ secret: string }>("POST /auth/2fa/enrol", { token, json: { password: account.password } })).body;
		const step = stepOf();
		const firstCodes = (await ok<{ recoveryCodes: string[] }>("POST /auth/2fa/confirm", { token, json: { code: codeFor(enrolment.secret, step) } })).body.recoveryCodes;
		const challenge = (await ok<{ challengeToken: string }>("POST /auth/login", { json: { email: account.email, password: account.password } })).body;
		const signedIn = (await ok<Session>("POST /auth/login/2fa", { json: { challengeToken: challenge.challengeToken, code: codeFor(enrolment.secret, step + 1) } })).body;
		// The sign-in landed where the switch went.
		expect(signedIn.tenant.id).toBe(created.tenant.id);
		token = signedIn.accessToken;
		await ok("PUT /tenant/two-factor", { token, json: { required: true } });
		// A member who has no second factor yet enrols while signing in.
		const memberAccount = newAccount("walk-member");
		await join(token, memberAccount, "viewer");
		const enrol = (await ok<{ challengeToken: string }>("POST /auth/login", { json: { email: memberAccount.email, password: memberAccount.password } })).body;
		const memberSecret = (await ok<{ secret: string }>("POST /auth/login/2fa/enrol", { json: { challengeToken: enrol.challengeToken } })).body.secret;
		await ok("POST /auth/login/2fa", { json: { challengeToken: enrol.challengeToken, code: codeFor(memberSecret) } });
		await ok("PUT /tenant/two-factor", { token, json: { required: false } });
		const codes = (await ok<{ recoveryCodes: string[] }>("POST /auth/2fa/recovery-codes", { token, json: { code: firstCodes[0] } })).body.recoveryCodes;
		await ok("POST /auth/2fa/disable", { token, json: { code: codes[0] } });

		// ---- single sign-on against a real identity provider -------------------------------------
		const view = (await ok<{ redirectUri: string }>("GET /tenant/sso", { token })).body;
		const idp = await startIdp({ clients: [{ client_id: "walk", client_secret: "walk-secret-0123456789", redirect_uris: [view.redirectUri] }] });
		try {
			const domain = `walk-${process.pid}.test`;
			const configured = (await ok<{ domains: Array<{ record: { name: string; value: string } }> }>("PUT /tenant/sso", { token, json: { issuer: idp.issuer, clientId: "walk", clientSecret: "walk-secret-0123456789", allowedDomains: [domain] } })).body;
			dnsServer.setTxt(configured.domains[0].record.name, [configured.domains[0].record.value]);
			await ok("POST /tenant/sso/verify-domains", { token });
			await idp.setAccount({ sub: "walker", email: `walker@${domain}` });
			const slug = signedIn.tenant.slug;
			const verifier = randomBytes(32).toString("base64url");
			const started = await call("GET /auth/sso/{tenantSlug}", { values: { tenantSlug: slug }, query: { codeChallenge: createHash("sha256").update(verifier).digest("base64url") } });
			expect(started.status).toBe(302);
			const cookie = (started.headers.get("set-cookie") ?? "").split(";")[0];
			const back = new URL((await followAuthorization(started.headers.get("location") ?? "", view.redirectUri)).url);
			const returned = await call("GET /auth/sso/{tenantSlug}/callback", { values: { tenantSlug: slug }, query: Object.fromEntries(back.searchParams), headers: { Cookie: cookie } });
			expect(returned.status).toBe(302);
			const code = new URL(returned.headers.get("location") ?? "").searchParams.get("code");
			await ok("POST /auth/sso/exchange", { json: { code, codeVerifier: verifier } });
			await ok("DELETE /tenant/sso", { token });
		} finally {
			await idp.stop();
		}
	}, 60_000);

	it("(a) every route of the document answered a success at least once", () => {
		// A redirect is the success of a route that declares one (single sign-on).
		const succeeded = new Set(answers.filter(a => a.status >= 200 && a.status < 400).map(a => a.label));
		const missing = [...documentedRoutes().keys()].filter(label => !succeeded.has(label));
		expect(missing).toEqual([]);
	});

	it("(b) every answer below 400 has a status the document declares for its route", () => {
		const routes = documentedRoutes();
		const problems: string[] = [];
		for (const answer of answers.filter(a => a.status < 400)) {
			const op = routes.get(answer.label);
			if (op === undefined) {
				problems.push(`${answer.label}: not in the document`);
				continue;
			}
			const declared = Object.keys(op.responses).filter(status => Number(status) < 400);
			if (!declared.includes(String(answer.status))) problems.push(`${answer.label}: answered ${answer.status}, the document declares ${declared.join("/")}`);
		}
		expect([...new Set(problems)]).toEqual([]);
	});

	it("(c) every JSON success body validates against its declared schema, with no undeclared field", () => {
		const routes = documentedRoutes();
		const validate = jsonSchemaValidator();
		const problems: string[] = [];
		for (const answer of answers.filter(a => a.status >= 200 && a.status < 300)) {
			const declared = routes.get(answer.label)?.responses[String(answer.status)]?.content;
			if (declared === undefined) continue; // (b) or (d)
			if (answer.size === 0) {
				problems.push(`${answer.label} ${answer.status}: the document declares a body (${Object.keys(declared).join(", ")}), the answer has none`);
				continue;
			}
			const schema = isJson(answer.mediaType) ? declared[answer.mediaType]?.schema : undefined;
			if (schema === undefined) continue; // (d)
			for (const error of validate(closedSchema(schema), answer.body)) problems.push(`${answer.label} ${answer.status}: ${error}`);
		}
		expect([...new Set(problems)]).toEqual([]);
	});

	it("(d) every success answer with a body has a declared schema for its media type", () => {
		const routes = documentedRoutes();
		const lacking = new Set<string>();
		for (const answer of answers.filter(a => a.status >= 200 && a.status < 300 && a.size > 0)) {
			const declared = routes.get(answer.label)?.responses[String(answer.status)]?.content ?? {};
			const schema = Object.entries(declared).find(([type]) => covers(type, answer.mediaType))?.[1].schema;
			if (schema === undefined) lacking.add(`${answer.label} ${answer.status} (${answer.mediaType || "no Content-Type"})`);
		}
		expect([...lacking].sort()).toEqual([]);
	});

	it("HEAD on a GET route answers the status the document declares for the GET, with its headers and no body", async () => {
		const account = newAccount("walk-head");
		const register = await fetch(p.api("/auth/register"), {
			method: "POST",
			headers: { "Content-Type": "application/json", ...someClient() },
			body: JSON.stringify(account)
		});
		const session = (await register.json()) as Session;
		const declared = Object.keys(documentedRoutes().get("GET /tenant")?.responses ?? {}).filter(status => status.startsWith("2"));
		const get = await fetch(p.api("/tenant"), { headers: bearer(session.accessToken) });
		const head = await fetch(p.api("/tenant"), { method: "HEAD", headers: bearer(session.accessToken) });
		expect(declared).toEqual([String(get.status)]);
		expect(head.status).toBe(get.status);
		expect(head.headers.get("content-type")).toBe(get.headers.get("content-type"));
		expect(head.headers.get("x-request-id")).toBeTruthy();
		expect(await head.text()).toBe("");
	});
});
