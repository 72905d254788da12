/**
 * Property-based fuzzing of every /api/v1 route of the OpenAPI document (fast-check), against the
 * platform as a separate process started the way a user starts it (`tsx server.ts`), so a crash
 * shows up as a dead child instead of taking jest down.
 *
 * Two fc.check runs per CI run: one with a fixed seed and one with a random seed (printed;
 * `FUZZ_SEED` sets it), `FUZZ_CASES` cases in total (default 20 480). Each case is one request:
 * a route, a caller (the one its permission asks for, or a wrong one), path params (valid ids,
 * foreign ids, garbage), a query (paging garbage, repeated keys, operator brackets), headers
 * (Authorization, If-None-Match, X-Pairing-Secret, ...) and a body: schema-valid values with
 * mutations (wrong types, null, operator objects, prototype-ish keys, unknown fields, huge and
 * unicode strings, deep nesting), non-object and malformed JSON, invalid UTF-8, bad
 * Content-Encoding, wrong Content-Type, and multipart variants on upload routes.
 *
 * The property: every answer is a success or a 4xx in the API's error shape, never a 5xx, and
 * comes within 15 s. When the child dies, the suite finds the request that killed it (replaying
 * the requests in flight one by one, then the unusual parts of that request one by one), records
 * it, restarts the platform and goes on, skipping further cases with the same culprit, so one
 * run reports every class of defect. At the end the process is alive and ready.
 *
 * `FUZZ_REPLAY=<seed>:<index>` sends one case of a run again and prints it with its answer.
 */
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import fc from "fast-check";
import { decide, PERMISSIONS } from "../../shared/rbac";
import { bearer, login, newAccount, pairDisplay, register, someClient, tokenFromMail, type Platform, type Session } from "../helpers/accounts";
import {
	buildRequest,
	describeRequest,
	fuzzCase,
	isolatedVariants,
	sendRaw,
	type FuzzCase,
	type FuzzRoute,
	type MarkerEnv,
	type Outcome,
	type RawRequest,
	type Schema
} from "../helpers/fuzz";
import { request, tempDir, type JsonResponse } from "../helpers/platform";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { addMember, answerProblems, API_V1, loadRoutes } from "../helpers/routes";

const FIXED_SEED = 424242;
const TOTAL_CASES = Math.max(2, Number(process.env.FUZZ_CASES ?? 20_480));
const RANDOM_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 16)) >>> 0;
const CONCURRENCY = Math.max(1, Number(process.env.FUZZ_CONCURRENCY ?? 12));
const REQUEST_TIMEOUT_MS = 15_000;
/** Small enough that the huge-string cases land on both sides of it. */
const MAX_BODY_BYTES = 65_536;
/** The same culprit may crash the platform this often before its cases are skipped. */
const CRASHES_PER_CULPRIT = 2;
const MAX_CRASHES = Number(process.env.FUZZ_MAX_CRASHES ?? 40);
const REPLAY = process.env.FUZZ_REPLAY;
/** Only the routes whose label ("PATCH /displays/{id}") matches this regular expression. */
const ONLY_ROUTES = process.env.FUZZ_ROUTES ? new RegExp(process.env.FUZZ_ROUTES) : null;
/** Print every request with its status. */
const VERBOSE = process.env.FUZZ_VERBOSE === "1";

jest.setTimeout(30 * 60_000);

const PNG_1X1 = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");

/** Collections of the API and the kind of id they hold. */
const COLLECTIONS: Record<string, string> = {
	displays: "display",
	"display-groups": "group",
	content: "content",
	playlists: "playlist",
	layouts: "layout",
	schedules: "schedule",
	overrides: "override",
	"power-schedules": "powerSchedule",
	"api-keys": "apiKey",
	invitations: "invitation",
	members: "member",
	sessions: "session",
	commands: "command",
	pairing: "pairing"
};

function kindOfTemplate(template: string): string | undefined {
	let kind: string | undefined;
	for (const segment of template.split("/")) if (COLLECTIONS[segment]) kind = COLLECTIONS[segment];
	return kind;
}

function kindOfParam(route: FuzzRoute, param: string): string {
	if (param === "userId") return "member";
	if (param === "contentId") return "content";
	if (param === "pairingId") return "pairing";
	return kindOfTemplate(route.template.slice(0, route.template.indexOf(`{${param}}`))) ?? "display";
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms).unref());

interface Failure {
	route: string;
	status: number | string;
	message: string;
	request: string;
	where: string;
	problems: string[];
	/** Of a 5xx: the request id, to find the server's own log of the error. */
	requestId?: string;
}

interface Crash {
	kind: "crash" | "hang";
	signature: string;
	request?: string;
	where?: string;
	culprit?: string;
	suspects: string[];
	output: string;
}

interface Stats {
	cases: number;
	sent: number;
	s2xx: number;
	s3xx: number;
	s4xx: number;
	s5xx: number;
	noAnswer: number;
	aborted: number;
	skipped: number;
	lost: number;
	clientRefused: number;
	resetOversize: number;
	retried: number;
}

interface InFlight {
	c: FuzzCase;
	where: string;
	req?: RawRequest;
	started: number;
	ended?: number;
	/** How the request ended: "answer", "error", "timeout", "aborted". */
	outcome?: string;
}

/** The platform as a child process, the callers, and the ids the suite has seen. */
class World implements MarkerEnv {
	proc!: PlatformProcess;
	generation = 0;
	readonly dataDir = tempDir("marquee-fuzz-");
	/** Payments configured against a local fake of Stripe's API, so billing routes run for real. */
	stripe: FakeStripe | null = null;
	agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
	owner!: { email: string; password: string; token: string; tenantId: string; tenantName: string; userId: string };
	device: { token: string; displayId: string } | null = null;
	apiKey: { key: string; id: string } | null = null;
	decoy: { email: string; password: string; token: string | null } | null = null;
	memberEmail = "";
	readonly pools = new Map<string, string[]>();
	readonly setupProblems: string[] = [];
	/** Output of the children that came before the current one (restarts). */
	pastOutput = "";
	private pending = new Map<string, Promise<void>>();
	/** Tenants registered (the first and every replacement) and sign-ins again of their owners. */
	tenants = 0;
	signIns = 0;
	private clients = 0;

	/** What the helpers of accounts.ts and routes.ts need of a platform (its address moves on restarts). */
	readonly platform: Platform = (() => {
		// eslint-disable-next-line @typescript-eslint/no-this-alias
		const world = this;
		return {
			get url() {
				return world.proc.url;
			},
			get dataDir() {
				return world.dataDir;
			},
			api: (p: string) => `${world.proc.url}${API_V1}${p}`
		} as unknown as Platform;
	})();

	get url(): string {
		return this.proc.url;
	}

	alive(): boolean {
		return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
	}

	async start(): Promise<void> {
		this.stripe ??= await startFakeStripe();
		this.proc = await spawnPlatform(path.join(ROOT, "node_modules/.bin/tsx"), ["server.ts"], {
			...this.stripe.env,
			NODE_ENV: "development",
			LOG_LEVEL: "warn",
			DATA_DIR: this.dataDir,
			RATE_LIMIT_PER_MINUTE: "1000000",
			TRUST_PROXY_HOPS: "1",
			MAX_BODY_BYTES: String(MAX_BODY_BYTES),
			BCRYPT_COST: "4",
			DEFAULT_PLAN_DISPLAYS: "100000",
			DEFAULT_PLAN_MEMBERS: "100000",
			MAX_IMAGE_MB: "5",
			MAX_VIDEO_MB: "5",
			// The pinned Node (node_modules/.bin/node) runs tsx, whatever node started jest.
			PATH: `${path.join(ROOT, "node_modules/.bin")}${path.delimiter}${process.env.PATH ?? ""}`
		});
		await waitFor200(`${this.proc.url}/health/ready`, 60_000, this.proc);
	}

	/** Ends the child (dead, hung or alive) and starts a new one on the same DATA_DIR. */
	async restart(): Promise<void> {
		killGroup(this.proc);
		await Promise.race([this.proc.exited, sleep(5_000)]);
		this.pastOutput = (this.pastOutput + this.proc.output()).slice(-8_000_000);
		this.agent.destroy();
		this.agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
		this.generation += 1;
		await this.start();
		// Sessions live in DATA_DIR and the JWT secret too: tokens normally survive a restart.
		await this.ensureOwner(this.owner.token, true).catch(err => this.setupProblems.push(`after restart: ${String(err)}`));
	}

	async stop(): Promise<void> {
		this.agent.destroy();
		await this.stripe?.close();
		if (!this.proc) return;
		killGroup(this.proc);
		await Promise.race([this.proc.exited, sleep(5_000)]);
		this.proc.child.stdout?.destroy();
		this.proc.child.stderr?.destroy();
		// FUZZ_KEEP_DATA=1 keeps DATA_DIR (NeDB files, mail, objects) for a look after a failure.
		if (process.env.FUZZ_KEEP_DATA !== "1") fs.rmSync(this.dataDir, { recursive: true, force: true });
		else console.log(`fuzz: DATA_DIR kept at ${this.dataDir}`);
	}

	/** A fresh client address (one trusted proxy hop), so per-address limits never pile up. */
	nextClient(): string {
		this.clients += 1;
		const n = this.clients;
		return `100.${64 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}`;
	}

	add(kind: string, id: unknown): void {
		if (typeof id !== "string" || id.length === 0 || id.length > 600) return;
		const list = this.pools.get(kind) ?? [];
		if (list.includes(id)) return;
		list.push(id);
		if (list.length > 40) list.shift();
		this.pools.set(kind, list);
	}

	pool(kind: string, pick: number): string | undefined {
		const list = this.pools.get(kind);
		return list?.length ? list[pick % list.length] : undefined;
	}

	secret(name: string): string | undefined {
		const [base, how] = name.split("~");
		const value = ((): string | undefined => {
			switch (base) {
				case "ownerToken":
					return this.owner?.token;
				case "deviceToken":
					return this.device?.token;
				case "apiKey":
					return this.apiKey?.key;
				case "decoyToken":
					return this.decoy?.token ?? undefined;
				case "ownerPassword":
					return this.owner?.password;
				case "tenantName":
					return this.owner?.tenantName;
				case "decoyEmail":
					return this.decoy?.email;
				case "memberEmail":
					return this.memberEmail || undefined;
				default:
					return undefined;
			}
		})();
		if (value && how === "mangled") return `${value.slice(0, -2)}${value.endsWith("A") ? "B" : "A"}${value.slice(-1)}`;
		return value;
	}

	private async api<T = unknown>(method: string, p: string, token: string | null, json?: unknown): Promise<JsonResponse<T>> {
		return request<T>(this.platform.api(p), { method, json, headers: { ...(token ? bearer(token) : {}), "X-Forwarded-For": this.nextClient() } });
	}

	/** Runs `work` once for `key` at a time; callers with the same key share it. */
	private once(key: string, work: () => Promise<void>): Promise<void> {
		const running = this.pending.get(key);
		if (running) return running;
		const p = work()
			.catch(err => {
				// While the child is down (a crash being handled) nothing can be set up: not worth a note.
				if (this.alive()) this.setupProblems.push(`${key}: ${String(err).slice(0, 300)}`);
			})
			.finally(() => this.pending.delete(key));
		this.pending.set(key, p);
		return p;
	}

	/** The owner of a fresh tenant, with a display, content, a playlist, a schedule... */
	async registerFreshTenant(): Promise<void> {
		// The old tenant's ids are another tenant's now (or gone): they serve as foreign ids.
		for (const [kind, ids] of this.pools) {
			if (kind === "foreign" || kind === "refreshToken") continue;
			for (const id of ids) this.add("foreign", id);
			this.pools.delete(kind);
		}
		this.tenants += 1;
		const account = newAccount("fuzzowner");
		const session = await register(this.platform, account);
		this.owner = { email: account.email, password: account.password, token: session.accessToken, tenantId: session.tenant.id, tenantName: session.tenant.name, userId: session.user.id };
		this.add("member", session.user.id);
		await this.seed();
	}

	private async seed(): Promise<void> {
		const token = this.owner.token;
		const step = async (what: string, work: () => Promise<void>) => {
			try {
				await work();
			} catch (err) {
				this.setupProblems.push(`seeding ${what}: ${String(err).slice(0, 300)}`);
			}
		};
		const created = async (what: string, kind: string, p: string, json: unknown): Promise<string | undefined> => {
			const res = await this.api<{ id?: string }>("POST", p, token, json);
			if (res.status >= 300) throw new Error(`${what} answered ${res.status}: ${res.text.slice(0, 200)}`);
			this.add(kind, res.body.id);
			return res.body.id;
		};
		let groupId: string | undefined;
		let contentId: string | undefined;
		let playlistId: string | undefined;
		await step("a display group", async () => void (groupId = await created("group", "group", "/display-groups", { name: "Fuzz group", description: "seeded" })));
		await step("a display", () => this.pairNewDisplay(groupId));
		await step("a pending pairing", async () => {
			const res = await this.api<{ pairingId: string; code: string; pollSecret: string }>("POST", "/device/pairing", null, { hardwareId: "fuzz-hw", model: "fuzz" });
			if (res.status !== 201) throw new Error(`pairing answered ${res.status}`);
			this.add("pairing", res.body.pairingId);
			this.add("pairingCode", res.body.code);
			this.add("pollSecret", res.body.pollSecret);
		});
		await step("web content", async () => void (contentId = await created("web content", "content", "/content/url", { name: "Fuzz page", url: "https://example.com/", durationMs: 10_000, tags: ["fuzz"] })));
		await step("an image", async () => {
			const form = new FormData();
			form.append("name", "Fuzz image");
			form.append("file", new Blob([PNG_1X1], { type: "image/png" }), "fuzz.png");
			const res = await fetch(this.platform.api("/content"), { method: "POST", body: form, headers: { ...bearer(token), "X-Forwarded-For": this.nextClient() } });
			const body = (await res.json().catch(() => ({}))) as { id?: string };
			if (res.status !== 201) throw new Error(`upload answered ${res.status}`);
			this.add("content", body.id);
		});
		await step("a playlist", async () => void (playlistId = await created("playlist", "playlist", "/playlists", { name: "Fuzz list", items: contentId ? [{ contentId }] : [] })));
		let layoutId: string | undefined;
		if (playlistId) {
			const zones = [
				{ name: "Main", x: 0, y: 0, width: 0.75, height: 1, playlistId },
				{ name: "Side", x: 0.75, y: 0, width: 0.25, height: 1, zIndex: 1, playlistId }
			];
			await step("a layout", async () => void (layoutId = await created("layout", "layout", "/layouts", { name: "Fuzz layout", width: 1920, height: 1080, backgroundColor: "#000000", zones })));
		}
		const displayId = this.device?.displayId;
		if (layoutId && displayId) {
			await step("a layout schedule", async () => void (await created("layout schedule", "schedule", "/schedules", { name: "Fuzz layout schedule", layoutId, targets: { displayIds: [displayId] }, priority: 2, startTime: "00:00", endTime: "12:00" })));
		}
		if (playlistId && displayId) {
			await step("a schedule", async () => void (await created("schedule", "schedule", "/schedules", { name: "Fuzz schedule", playlistId, targets: { displayIds: [displayId] }, priority: 1 })));
			await step("an override", async () => void (await created("override", "override", "/overrides", { name: "Fuzz override", playlistId, targets: { displayIds: [displayId] }, endsAt: new Date(Date.now() + 86_400_000).toISOString() })));
			await step("a command", async () => void (await created("command", "command", `/displays/${displayId}/commands`, { type: "reload" })));
		}
		if (displayId) {
			// Screen power: off overnight on the display, its group and its tag, and an "on" rule above it on weekends.
			const targets = { displayIds: [displayId], ...(groupId ? { groupIds: [groupId] } : {}), tags: ["fuzz"] };
			await step("a power schedule", async () => void (await created("power schedule", "powerSchedule", "/power-schedules", { name: "Fuzz nights off", state: "off", targets, startTime: "22:00", endTime: "06:00", priority: 1 })));
			await step("an \"on\" power schedule", async () => void (await created("on power schedule", "powerSchedule", "/power-schedules", { name: "Fuzz weekends on", state: "on", targets, daysOfWeek: [6, 7], priority: 2 })));
		}
		// Content approval: an editor-role key's new content and playlist wait for review, so the
		// approve and reject routes have something to decide. The setting goes off again afterwards.
		await step("changes waiting for approval", async () => {
			const on = await this.api("PATCH", "/tenant", token, { settings: { contentApproval: true } });
			if (on.status !== 200) throw new Error(`turning approval on answered ${on.status}: ${on.text.slice(0, 200)}`);
			const key = await this.api<{ id: string; key: string }>("POST", "/api-keys", token, { name: "Fuzz editor key", role: "editor" });
			if (key.status !== 201) throw new Error(`editor key answered ${key.status}: ${key.text.slice(0, 200)}`);
			// Two of each: one for an approval, one for a rejection to find still pending.
			for (const n of [1, 2]) {
				const page = await this.api<{ id: string }>("POST", "/content/url", key.body.key, { name: `Fuzz proposed page ${n}`, url: "https://example.com/proposed", durationMs: 5_000 });
				if (page.status !== 201) throw new Error(`pending content answered ${page.status}: ${page.text.slice(0, 200)}`);
				this.add("content", page.body.id);
				const list = await this.api<{ id: string }>("POST", "/playlists", key.body.key, { name: `Fuzz proposed list ${n}`, items: [{ contentId: page.body.id }] });
				if (list.status !== 201) throw new Error(`pending playlist answered ${list.status}: ${list.text.slice(0, 200)}`);
				this.add("playlist", list.body.id);
			}
			await this.api("DELETE", `/api-keys/${key.body.id}`, token);
			const off = await this.api("PATCH", "/tenant", token, { settings: { contentApproval: false } });
			if (off.status !== 200) throw new Error(`turning approval off answered ${off.status}: ${off.text.slice(0, 200)}`);
		});
		await step("an API key", async () => {
			const res = await this.api<{ id: string; key: string }>("POST", "/api-keys", token, { name: "Fuzz key", role: "admin" });
			if (res.status !== 201) throw new Error(`api key answered ${res.status}`);
			this.apiKey = { key: res.body.key, id: res.body.id };
			this.add("apiKey", res.body.id);
		});
		await step("a member", async () => {
			const member = await addMember(this.platform, token, "viewer", "fuzzmember");
			this.memberEmail = member.email;
			this.add("member", member.userId);
		});
		let invited: string | undefined;
		await step("an invitation", async () => {
			const email = newAccount("fuzzinvite").email;
			await created("invitation", "invitation", "/invitations", { email, role: "editor" });
			invited = email;
		});
		await step("mailed tokens", async () => {
			this.add("mailToken", await tokenFromMail(this.platform, this.owner.email, "verify-email"));
			if (invited) this.add("mailToken", await tokenFromMail(this.platform, invited, "accept-invitation"));
		});
		await step("sessions", async () => {
			const res = await this.api<{ rows: Array<{ id: string }> }>("GET", "/auth/sessions", token);
			for (const row of res.body.rows ?? []) this.add("session", row.id);
		});
	}

	/** `signInAgain`: never while seeding, which runs inside ensureOwner itself. */
	private async pairNewDisplay(groupId?: string, signInAgain = false): Promise<void> {
		const fields = { name: "Fuzz screen", ...(groupId ? { groupIds: [groupId] } : {}), tags: ["fuzz"] };
		// The owner's session may end in between (a concurrent logout-all): sign in again once.
		const paired = await pairDisplay(this.platform, { accessToken: this.owner.token }, fields).catch(async err => {
			if (!signInAgain) throw err;
			await this.ensureOwner(this.owner.token, true);
			return pairDisplay(this.platform, { accessToken: this.owner.token }, fields);
		});
		this.device = { token: paired.token, displayId: paired.display.id };
		this.add("display", paired.display.id);
	}

	/** Another tenant: its ids are the "foreign" pool, its owner the cross-tenant caller. */
	async setUpDecoy(): Promise<void> {
		const account = newAccount("fuzzdecoy");
		const session = await register(this.platform, account);
		this.decoy = { email: account.email, password: account.password, token: session.accessToken };
		this.add("refreshToken", session.refreshToken);
		const group = await this.api<{ id: string }>("POST", "/display-groups", session.accessToken, { name: "Decoy group" });
		this.add("foreign", group.body.id);
		const again = await login(this.platform, account.email, account.password, someClient());
		this.add("refreshToken", again.refreshToken);
		await this.api("POST", "/auth/forgot-password", null, { email: account.email });
		this.add("mailToken", await tokenFromMail(this.platform, account.email, "reset-password"));
	}

	/** After a 401 with the owner's token: sign in again, or start over with a new tenant. */
	ensureOwner(token: string, force = false): Promise<void> {
		if (!force && token !== this.owner.token) return Promise.resolve();
		return this.once("owner", async () => {
			const me = await this.api<{ role?: string }>("GET", "/auth/me", this.owner.token);
			if (me.status === 200 && me.body.role === "owner") return;
			const session: Session | null = await login(this.platform, this.owner.email, this.owner.password, { "X-Forwarded-For": this.nextClient() }).catch(() => null);
			if (session && session.role === "owner" && session.tenant.id === this.owner.tenantId) {
				this.signIns += 1;
				this.owner.token = session.accessToken;
				return;
			}
			await this.registerFreshTenant();
		});
	}

	ensureDevice(token: string): Promise<void> {
		if (token !== this.device?.token) return Promise.resolve();
		return this.once("device", async () => {
			const res = await this.api("GET", "/device/manifest", token);
			if (res.status !== 401) return;
			await this.ensureOwner(this.owner.token);
			await this.pairNewDisplay(undefined, true);
		});
	}

	ensureApiKey(token: string): Promise<void> {
		if (token !== this.apiKey?.key) return Promise.resolve();
		return this.once("apiKey", async () => {
			const res = await this.api("GET", "/tenant", token);
			if (res.status !== 401) return;
			await this.ensureOwner(this.owner.token);
			const created = await this.api<{ id: string; key: string }>("POST", "/api-keys", this.owner.token, { name: "Fuzz key", role: "admin" });
			if (created.status === 201) this.apiKey = { key: created.body.key, id: created.body.id };
		});
	}

	ensureDecoy(token: string): Promise<void> {
		if (!this.decoy || token !== this.decoy.token) return Promise.resolve();
		const decoy = this.decoy;
		return this.once("decoy", async () => {
			const res = await this.api("GET", "/auth/me", token);
			if (res.status !== 401) return;
			const session = await login(this.platform, decoy.email, decoy.password, { "X-Forwarded-For": this.nextClient() }).catch(() => null);
			decoy.token = session?.accessToken ?? null;
		});
	}
}

describe("fuzzing every /api/v1 route (fast-check, the platform as a child process)", () => {
	const world = new World();
	let routes: FuzzRoute[] = [];
	const failures: Failure[] = [];
	const crashes: Crash[] = [];
	const internalErrors: string[] = [];
	const stats: Stats = { cases: 0, sent: 0, s2xx: 0, s3xx: 0, s4xx: 0, s5xx: 0, noAnswer: 0, aborted: 0, skipped: 0, lost: 0, clientRefused: 0, resetOversize: 0, retried: 0 };
	/** Per route: answers below 400 (the cases that got past validation), for the coverage note. */
	const successes = new Map<string, number>();
	/**
	 * What crashed the platform: a tag isolated as the cause (its cases are skipped from then on),
	 * or, when no single part crashed alone, the unusual tags of the whole request (cases holding
	 * all of them are skipped).
	 */
	const culprits: Array<{ tags: string[]; crashes: number }> = [];
	/** Tags every case may carry: never a reason to skip one. */
	const GENERIC_TAGS = new Set(["caller:proper", "body:mutated", "body:valid"]);
	const inFlight = new Set<InFlight>();
	const recent: InFlight[] = [];
	let recovering: Promise<void> | null = null;

	beforeAll(async () => {
		await world.start();
		routes = (await loadRoutes(world.platform)).filter(r => !ONLY_ROUTES || ONLY_ROUTES.test(r.label));
		// Upload routes: their multipart schema (routes.ts keeps only JSON bodies).
		const doc = (await (await fetch(`${world.url}/api/openapi.json`)).json()) as {
			paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> } }>>;
		};
		for (const route of routes) {
			route.multipartBody = doc.paths[`${API_V1}${route.template}`]?.[route.method.toLowerCase()]?.requestBody?.content?.["multipart/form-data"]?.schema;
		}
		await world.registerFreshTenant();
		await world.setUpDecoy().catch(err => world.setupProblems.push(`decoy: ${String(err)}`));
	}, 120_000);

	afterAll(() => world.stop());

	/** The token a case's caller stands for, and which caller that is. */
	function callerOf(route: FuzzRoute, c: FuzzCase): { name: string; token: string | null } {
		const principals = PERMISSIONS[route.permission].principals as readonly string[];
		let choice: string = c.caller;
		if (choice === "proper") choice = principals.length === 0 ? "anonymous" : principals.includes("device") ? "device" : "owner";
		switch (choice) {
			case "owner":
				return { name: "owner", token: world.owner.token };
			case "device":
				return { name: "device", token: world.device?.token ?? null };
			case "apiKey":
				return { name: "apiKey", token: world.apiKey?.key ?? null };
			case "decoy":
				return { name: "decoy", token: world.decoy?.token ?? null };
			case "garbage":
				return { name: "garbage", token: null };
			default:
				return { name: "anonymous", token: null };
		}
	}

	function build(c: FuzzCase): { route: FuzzRoute; req: RawRequest; caller: { name: string; token: string | null } } {
		const route = routes[c.route];
		const caller = callerOf(route, c);
		const req = buildRequest(route, c, world, API_V1, () => caller.token, kindOfParam);
		if (!Object.keys(req.headers).some(h => h.toLowerCase() === "x-forwarded-for")) req.headers["X-Forwarded-For"] = world.nextClient();
		return { route, req, caller };
	}

	/** Ids, codes and secrets from successful answers, for later cases' path params and bodies. */
	function harvest(route: FuzzRoute, callerName: string, req: RawRequest, res: JsonResponse): void {
		const body = res.body as Record<string, unknown> | null;
		if (!body || typeof body !== "object") return;
		const kind = callerName === "decoy" ? "foreign" : kindOfTemplate(route.template);
		if (kind && typeof body.id === "string") world.add(kind, body.id);
		if (Array.isArray(body.rows)) {
			for (const row of body.rows as Array<Record<string, unknown>>) {
				if (kind && typeof row?.id === "string") world.add(kind, row.id);
				if (typeof row?.userId === "string") world.add(callerName === "decoy" ? "foreign" : "member", row.userId);
			}
		}
		if (typeof body.pairingId === "string") world.add("pairing", body.pairingId);
		if (typeof body.code === "string") world.add("pairingCode", body.code);
		if (typeof body.pollSecret === "string") world.add("pollSecret", body.pollSecret);
		if (typeof body.refreshToken === "string") world.add("refreshToken", body.refreshToken);
		// The owner changed their own password: remember the new one.
		if (route.template === "/auth/change-password" && callerName === "owner" && req.body) {
			try {
				const sent = JSON.parse(req.body.toString("utf8")) as { newPassword?: unknown };
				if (typeof sent.newPassword === "string") world.owner.password = sent.newPassword;
			} catch {
				/* not JSON */
			}
		}
	}

	/** Keeps the callers usable: a caller whose token stopped working signs in again (or is replaced). */
	async function afterAnswer(route: FuzzRoute, caller: { name: string; token: string | null }, res: JsonResponse): Promise<void> {
		if (!caller.token) return;
		if (res.status === 401) {
			if (caller.name === "owner") await world.ensureOwner(caller.token);
			else if (caller.name === "device") await world.ensureDevice(caller.token);
			else if (caller.name === "apiKey") await world.ensureApiKey(caller.token);
			else if (caller.name === "decoy") await world.ensureDecoy(caller.token);
		} else if (res.status === 403 && caller.name === "owner" && decide(route.permission, { kind: "user", tenantId: world.owner.tenantId, role: "owner" }) === "allow") {
			await world.ensureOwner(caller.token);
		}
	}

	function record(route: FuzzRoute, status: number | string, message: string, req: RawRequest, caller: string, where: string, problems: string[], requestId?: string): void {
		failures.push({ route: route.label, status, message, request: describeRequest(req, caller), where, problems, requestId });
	}

	/** What the server logged about a request id: the error and the first frame in the project's code. */
	function serverCause(requestId: string | undefined): string {
		if (!requestId) return "";
		const logs = world.pastOutput + world.proc.output();
		const at = logs.indexOf(`[${requestId}]`);
		if (at < 0) return "";
		const all = logs.slice(at, at + 6_000).split("\n");
		const error = all[0].replace(/^.*?\]:\s*/, "").replace(/^Request (error|failed)!?\s*/, "").trim();
		// The entry runs until the next log line (which starts with a time).
		const end = all.findIndex((l, i) => i > 0 && /^\d{2}:\d{2}:\d{2}|^\{"/.test(l));
		const lines = all.slice(0, end < 0 ? 40 : end);
		const frames = lines.slice(1).filter(l => /^\s+at /.test(l));
		const frame = frames.find(l => !/node_modules|\(node:|<anonymous>/.test(l)) ?? frames.find(l => !/\(node:|<anonymous>/.test(l)) ?? "";
		return `${error.slice(0, 200)} ${frame.trim().replace(ROOT + "/", "")}`.trim();
	}

	function errorMessage(res: JsonResponse): string {
		const error = (res.body as { error?: { message?: unknown } } | null)?.error;
		if (typeof error?.message === "string") return error.message;
		return res.text.slice(0, 120) || "(empty body)";
	}

	const blocked = (c: FuzzCase) => culprits.some(k => k.crashes >= CRASHES_PER_CULPRIT && k.tags.every(t => c.tags.includes(t)));

	function noteCulprit(tags: string[], isolated: boolean): void {
		const specific = tags.filter(t => !GENERIC_TAGS.has(t)).sort();
		if (specific.length === 0) return;
		const key = specific.join("|");
		const known = culprits.find(k => k.tags.join("|") === key);
		// An isolated cause is skipped at once; a combination after it crashed again.
		const add = isolated ? CRASHES_PER_CULPRIT : 1;
		if (known) known.crashes += add;
		else culprits.push({ tags: specific, crashes: add });
	}

	/** Sends one case and judges the answer; a dead child starts the crash recovery. */
	async function execute(c: FuzzCase, where: string): Promise<void> {
		stats.cases += 1;
		if (blocked(c)) {
			stats.skipped += 1;
			return;
		}
		const { route, req, caller } = build(c);
		const entry: InFlight = { c, where, req, started: Date.now() };
		const procAtSend = world.proc;
		inFlight.add(entry);
		stats.sent += 1;
		let outcome = await sendRaw(procAtSend.url, req, world.agent, REQUEST_TIMEOUT_MS);
		if (outcome.kind === "error" && procAtSend.child.exitCode === null && (req.body?.length ?? 0) <= MAX_BODY_BYTES && req.path.length < 16_384) {
			// A kept-alive socket the server closed just as the request went out: once more on a new connection.
			await Promise.race([procAtSend.exited, sleep(200)]);
			if (procAtSend.child.exitCode === null && procAtSend.child.signalCode === null) {
				stats.retried += 1;
				outcome = await sendRaw(procAtSend.url, req, false, REQUEST_TIMEOUT_MS);
			}
		}
		entry.ended = Date.now();
		entry.outcome = outcome.kind;
		inFlight.delete(entry);
		recent.push(entry);
		if (recent.length > CONCURRENCY * 4) recent.shift();

		const dead = () => procAtSend.child.exitCode !== null || procAtSend.child.signalCode !== null;
		if (outcome.kind === "error" || outcome.kind === "timeout" || outcome.kind === "aborted") {
			if (!dead()) await Promise.race([procAtSend.exited, sleep(outcome.kind === "aborted" ? 50 : 500)]);
		}
		if (dead() || procAtSend !== world.proc) {
			stats.lost += 1;
			if (procAtSend === world.proc) await recover("crash");
			else if (recovering) await recovering;
			return;
		}
		switch (outcome.kind) {
			case "aborted":
				stats.aborted += 1;
				return;
			case "error": {
				if (/client refused|ERR_INVALID|ERR_UNESCAPED|ERR_HTTP_INVALID/.test(`${outcome.code} ${outcome.message}`)) {
					stats.clientRefused += 1;
					return;
				}
				// A body past the limit may be refused (413) while it is still being written: the
				// server then closes, and the client sees the reset before the answer.
				// Likewise a request line past Node's 16 kB header limit (refused with 431) with a body behind it.
				const headerBytes = req.path.length + Object.entries(req.headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
				if (((req.body?.length ?? 0) > MAX_BODY_BYTES || headerBytes > 16_384) && /ECONNRESET|EPIPE/.test(outcome.code)) {
					stats.resetOversize += 1;
					return;
				}
				stats.noAnswer += 1;
				record(route, outcome.code, `connection error without an answer: ${outcome.message}`, req, caller.name, where, [outcome.message]);
				return;
			}
			case "timeout":
				stats.noAnswer += 1;
				record(route, "timeout", `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`, req, caller.name, where, []);
				await checkHung();
				return;
			case "answer":
				await judge(route, c, req, caller, outcome, where);
		}
	}

	async function judge(route: FuzzRoute, c: FuzzCase, req: RawRequest, caller: { name: string; token: string | null }, outcome: Extract<Outcome, { kind: "answer" }>, where: string): Promise<void> {
		const res = outcome.res;
		if (VERBOSE) console.log(`${res.status} ${describeRequest(req, caller.name).slice(0, 400)} → ${res.text.slice(0, 200)}`);
		if (res.status >= 500) stats.s5xx += 1;
		else if (res.status >= 400) stats.s4xx += 1;
		else if (res.status >= 300) stats.s3xx += 1;
		else stats.s2xx += 1;
		if (res.status < 400) successes.set(route.label, (successes.get(route.label) ?? 0) + 1);
		const problems = req.method === "HEAD" ? (res.status >= 500 ? [`answered ${res.status}`] : []) : answerProblems(res);
		if (problems.length) record(route, res.status, errorMessage(res), req, caller.name, where, problems, res.status >= 500 ? (res.headers.get("x-request-id") ?? undefined) : undefined);
		if (res.status < 300) harvest(route, caller.name, req, res);
		if (c.caller !== "garbage") await afterAnswer(route, caller, res);
	}

	/** After a timeout: a platform that no longer answers /health/live is hung: restart it. */
	async function checkHung(): Promise<void> {
		if (recovering) return recovering;
		const live = await sendRaw(world.url, { method: "GET", path: "/health/live", headers: {} }, world.agent, 5_000);
		if (live.kind === "answer" && live.res.status === 200) return;
		await recover("hang");
	}

	/** The output of the child since the crash: its last error and the frame it came from. */
	function crashSignature(output: string): string {
		const lines = output.split("\n");
		const errorAt = lines.map((l, i) => (/^\s*(\w*Error|Error)\b.*:|^\w+Error\b|^Error\b|FATAL|Unhandled|uncaught/i.test(l) ? i : -1)).filter(i => i >= 0);
		const i = errorAt.length ? errorAt[errorAt.length - 1] : -1;
		if (i < 0) return lines.filter(Boolean).slice(-2).join(" | ").slice(0, 300) || "(no output)";
		const frames = lines.slice(i + 1, i + 40).filter(l => /^\s+at /.test(l));
		const frame = frames.find(l => !/node_modules|\(node:|<anonymous>/.test(l)) ?? frames[0] ?? "";
		return `${lines[i].trim()} ${frame.trim().replace(ROOT + "/", "")}`.slice(0, 300);
	}

	/** Replays a case alone; true when it killed the platform (which is then restarted). */
	async function replayKills(c: FuzzCase): Promise<{ killed: boolean; req: RawRequest; caller: string; output: string }> {
		// An earlier replay may have handed the ownership away or ended the session.
		await world.ensureOwner(world.owner.token);
		const { req, caller } = build(c);
		const proc = world.proc;
		const before = proc.output().length;
		const outcome = await sendRaw(proc.url, req, world.agent, REQUEST_TIMEOUT_MS);
		// A crash may also come just after the answer (in logging, in a background task).
		await Promise.race([proc.exited, sleep(outcome.kind === "answer" ? 150 : 1_000)]);
		const killed = proc.child.exitCode !== null || proc.child.signalCode !== null || outcome.kind === "timeout";
		const output = proc.output().slice(before);
		if (killed) await world.restart();
		return { killed, req, caller: caller.name, output };
	}

	/**
	 * The child died (or hung): restart it, then find the request that did it by replaying the
	 * requests that were in flight one at a time, and the part of that request by replaying its
	 * unusual parts one at a time. The culprit's tags count towards skipping such cases.
	 */
	function recover(kind: "crash" | "hang"): Promise<void> {
		if (recovering) return recovering;
		const proc = world.proc;
		// Most likely first: requests that got no answer (newest first), those still in flight, then recent answers.
		const lately = recent.filter(e => (e.ended ?? 0) > Date.now() - 3_000).reverse();
		const suspects = [...lately.filter(e => e.outcome !== "answer"), ...inFlight, ...lately.filter(e => e.outcome === "answer")];
		recovering = (async () => {
			await Promise.race([proc.exited, sleep(2_000)]);
			const output = proc.output().slice(-6_000);
			const crash: Crash = {
				kind,
				signature: kind === "hang" ? "no answer on /health/live" : crashSignature(output),
				suspects: suspects.map(s => `${s.where} ${s.req ? describeRequest(s.req, s.c.caller) : ""}`.slice(0, 400)),
				output
			};
			crashes.push(crash);
			await world.restart();
			if (kind === "crash" && crashes.length <= MAX_CRASHES) {
				const seen = new Set<string>();
				for (const s of suspects.slice(0, 32)) {
					const key = JSON.stringify(s.c);
					if (seen.has(key)) continue;
					seen.add(key);
					const replay = await replayKills(s.c);
					if (!replay.killed) continue;
					crash.request = describeRequest(replay.req, replay.caller);
					crash.where = s.where;
					crash.signature = crashSignature(replay.output) || crash.signature;
					let isolated = false;
					for (const variant of isolatedVariants(s.c)) {
						const alone = await replayKills(variant.case);
						if (alone.killed) {
							crash.culprit = `${variant.part}: ${describeRequest(alone.req, alone.caller)}`;
							noteCulprit(variant.tags, true);
							isolated = true;
							break;
						}
					}
					if (!isolated) noteCulprit(s.c.tags, false);
					break;
				}
			}
		})()
			.catch(err => {
				internalErrors.push(`recovery: ${String(err)}`);
			})
			.finally(() => {
				recovering = null;
			});
		return recovering;
	}

	/** One fc.check run of `numRuns` cases with `seed`, CONCURRENCY requests at a time. */
	async function run(seed: number, numRuns: number, replayIndex?: number): Promise<void> {
		let index = replayIndex ?? 0;
		const running = new Set<Promise<void>>();
		const property = fc.asyncProperty(fuzzCase(routes), async c => {
			const where = `seed ${seed} case ${index} (replay: FUZZ_REPLAY=${seed}:${index})`;
			index += 1;
			try {
				while (recovering || running.size >= CONCURRENCY || crashes.length > MAX_CRASHES) {
					if (crashes.length > MAX_CRASHES) return;
					if (recovering) await recovering;
					else await Promise.race(running);
				}
				if (replayIndex !== undefined) {
					const { req, caller } = build(c);
					console.log(`${where}\ncase: ${JSON.stringify(c).slice(0, 4_000)}\nrequest: ${describeRequest(req, caller.name)}`);
				}
				const p: Promise<void> = execute(c, where)
					.catch(err => void internalErrors.push(`${where}: ${String((err as Error).stack ?? err).slice(0, 500)}`))
					.finally(() => running.delete(p));
				running.add(p);
				if (replayIndex !== undefined) await p;
			} catch (err) {
				internalErrors.push(`${where}: ${String(err)}`);
			}
		});
		const details = await fc.check(property, { seed, numRuns, ...(replayIndex !== undefined ? { path: String(replayIndex) } : {}) });
		await Promise.all([...running]);
		if (details.failed) internalErrors.push(`fc.check(seed ${seed}) failed: ${String(details.errorInstance ?? details.counterexample)}`);
		if (stats.cases > 0 && replayIndex === undefined) {
			process.stderr.write(`fuzz: seed ${seed} done, ${stats.cases} cases so far (${stats.s5xx} 5xx, ${crashes.length} crashes)\n`);
		}
	}

	function report(seeds: number[], seconds: number): string {
		const line =
			`fuzz: ${stats.cases} cases (seeds ${seeds.join(", ")}), 2xx ${stats.s2xx}, 3xx ${stats.s3xx}, 4xx ${stats.s4xx}, 5xx ${stats.s5xx}, crashes ${crashes.length}` +
			`, no answer ${stats.noAnswer}, shape failures ${failures.filter(f => typeof f.status === "number" && f.status < 500).length}` +
			`, skipped ${stats.skipped}, lost to crashes ${stats.lost}, aborted uploads ${stats.aborted}, oversize requests reset before the answer ${stats.resetOversize}` +
			`${stats.clientRefused ? `, refused by the client ${stats.clientRefused}` : ""}, ${seconds} s`;
		return line;
	}

	function details(): string {
		const out: string[] = [];
		for (const f of failures) {
			const cause = serverCause(f.requestId);
			if (cause && !f.message.includes(" — server: ")) f.message = `${f.message} — server: ${cause}`;
		}
		const distinct = new Map<string, { f: Failure; count: number }>();
		for (const f of failures) {
			const key = `${f.route}|${f.status}|${f.message.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<id>")}`;
			const seen = distinct.get(key);
			if (seen) seen.count += 1;
			else distinct.set(key, { f, count: 1 });
		}
		// Grouped by status and message across routes: usually one cause each.
		const causes = new Map<string, { routes: Set<string>; count: number; sample: Failure }>();
		for (const { f, count } of distinct.values()) {
			const key = `${f.status} ${f.message.slice(0, 240)}`;
			const cause = causes.get(key) ?? { routes: new Set<string>(), count: 0, sample: f };
			cause.routes.add(f.route);
			cause.count += count;
			causes.set(key, cause);
		}
		if (crashes.length) {
			out.push(`${crashes.length} crash(es) of the platform process:`);
			for (const c of crashes) {
				out.push(`- ${c.kind}: ${c.signature}`);
				if (c.request) out.push(`  request: ${c.request}\n  at: ${c.where}`);
				if (c.culprit) out.push(`  culprit alone: ${c.culprit}`);
				if (!c.request) out.push(`  not reproduced alone; in flight: ${c.suspects.slice(0, 3).join(" || ")}`);
			}
		}
		if (causes.size) {
			out.push(`${failures.length} failing answers, ${distinct.size} distinct (route+status+message), ${causes.size} distinct status+message:`);
			const causeRank = (status: number | string) => (typeof status === "number" ? (status >= 500 ? 0 : 2) : 1);
			for (const [key, cause] of [...causes].sort((a, b) => causeRank(a[1].sample.status) - causeRank(b[1].sample.status))) {
				out.push(`- ${key} ×${cause.count} on ${cause.routes.size} route(s): ${[...cause.routes].slice(0, 6).join(", ")}${cause.routes.size > 6 ? ", …" : ""}`);
				out.push(`  e.g. ${cause.sample.request.slice(0, 400)}\n  ${cause.sample.problems[0]?.slice(0, 200) ?? ""}\n  at: ${cause.sample.where}`);
			}
			// 5xx first, then answers that never came, then shapes; at most 3 routes per cause, so every cause shows.
			const rank = (f: Failure) => (typeof f.status === "number" ? (f.status >= 500 ? 0 : 2) : 1);
			const perCause = new Map<string, number>();
			const first = [...distinct.values()]
				.sort((a, b) => rank(a.f) - rank(b.f))
				.filter(({ f }) => {
					const key = `${f.status} ${f.message.slice(0, 240)}`;
					perCause.set(key, (perCause.get(key) ?? 0) + 1);
					return (perCause.get(key) ?? 0) <= 3;
				})
				.slice(0, 20);
			out.push("first 20 distinct failures (route + status + message):");
			for (const { f, count } of first) {
				out.push(`- ${f.route} → ${f.status} "${f.message.slice(0, 120)}" ×${count}\n  ${f.request.slice(0, 300)}\n  at: ${f.where}`);
			}
		}
		if (culprits.length) out.push(`skipped after crashes (${stats.skipped} cases): ${culprits.map(k => `[${k.tags.join(" & ")}]`).join(", ")}`);
		if (internalErrors.length) out.push(`suite errors: ${internalErrors.slice(0, 5).join("\n")}`);
		if (world.setupProblems.length) out.push(`setup notes: ${world.setupProblems.slice(0, 8).join("\n")}`);
		return out.join("\n");
	}

	it("answers every fuzzed request with a success or a 4xx in the error shape, never a 5xx, and stays alive and ready", async () => {
		expect(routes.length).toBeGreaterThan(0);
		if (REPLAY) {
			const [seed, index] = REPLAY.split(":").map(Number);
			await run(seed, 1, index);
			const text = details();
			console.log(text || "no failure");
			if (failures.length || crashes.length) throw new Error(text);
			return;
		}
		const started = Date.now();
		const fixedRuns = Math.ceil(TOTAL_CASES / 2);
		console.log(`fuzz: node ${process.version}, ${routes.length} routes, ${TOTAL_CASES} cases, seeds ${FIXED_SEED} (fixed) and ${RANDOM_SEED} (random; replay with FUZZ_SEED=${RANDOM_SEED}), ${CONCURRENCY} at a time`);
		await run(FIXED_SEED, fixedRuns);
		await run(RANDOM_SEED, TOTAL_CASES - fixedRuns);
		const seconds = Math.round((Date.now() - started) / 1000);

		// Afterwards the process is still the one running (or the last restarted one) and ready.
		const live = await sendRaw(world.url, { method: "GET", path: "/health/live", headers: {} }, world.agent, 10_000);
		const ready = await sendRaw(world.url, { method: "GET", path: "/health/ready", headers: {} }, world.agent, 10_000);
		const end: string[] = [];
		if (!world.alive()) end.push(`the platform process exited: ${world.proc.output().slice(-2_000)}`);
		if (live.kind !== "answer" || live.res.status !== 200) end.push(`/health/live: ${live.kind === "answer" ? live.res.status : live.kind}`);
		if (ready.kind !== "answer" || ready.res.status !== 200) end.push(`/health/ready: ${ready.kind === "answer" ? `${ready.res.status} ${ready.res.text.slice(0, 200)}` : ready.kind}`);

		const line = report([FIXED_SEED, RANDOM_SEED], seconds);
		console.log(line);
		if (process.env.MARQUEE_TEST_REPORT) fs.appendFileSync(process.env.MARQUEE_TEST_REPORT, `${line}\n`);
		const text = details();
		if (text) console.log(text);
		const neverOk = routes.filter(r => !successes.has(r.label)).map(r => r.label);
		console.log(`fuzz coverage: ${routes.length - neverOk.length}/${routes.length} routes answered a success at least once${neverOk.length ? `; never: ${neverOk.join(", ")}` : ""}; owner tenants ${world.tenants}, owner sign-ins again ${world.signIns}, connection retries ${stats.retried}`);

		expect(stats.cases).toBeGreaterThanOrEqual(TOTAL_CASES);
		const problems = [...end, ...(failures.length || crashes.length ? [`${line}\n${text}`] : []), ...internalErrors.slice(0, 5)];
		if (problems.length) throw new Error(problems.join("\n"));
	});
});
