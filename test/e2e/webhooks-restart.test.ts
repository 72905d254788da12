/**
 * Webhook delivery across the death of the platform process, as a user runs it (`tsx server.ts`,
 * the embedded default: NeDB files under DATA_DIR). A display is paired (a real `display.paired`
 * event), the receiver takes the request and does not answer, and the process is killed with
 * SIGKILL mid-request; started again on the same data, it delivers the same event again with the
 * same `webhook-id` once the dead worker's lease has run out, and a receiver deduplicating by
 * `webhook-id` processes it exactly once. A graceful stop (SIGTERM) mid-request hands the
 * delivery back at once instead: the restarted process sends it without waiting for a lease.
 */
import { tempDir } from "../helpers/platform";
import { killGroup, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { reportLine } from "../helpers/report";
import { WebhookReceiver } from "../helpers/webhook-receiver";

jest.setTimeout(180_000);

const TSX = "node_modules/.bin/tsx";

interface Delivery {
	id: string;
	eventId: string;
	status: string;
	attempts: number;
	lastStatusCode: number | null;
}

describe("webhook delivery across a crash of the platform process (embedded default)", () => {
	const dataDir = tempDir();
	// The lease outlives two timeouts (as the worker asks) and is short enough to wait out.
	const env = {
		DATA_DIR: dataDir,
		RATE_LIMIT_PER_MINUTE: "100000",
		DEFAULT_PLAN_DISPLAYS: "10",
		WEBHOOK_ALLOW_PRIVATE: "true",
		WEBHOOK_TIMEOUT_MS: "4000",
		NOTIFICATIONS_LEASE_MS: "9000",
		NOTIFICATIONS_POLL_MS: "100"
	};
	let proc: PlatformProcess;
	let receiver: WebhookReceiver;
	let token: string;
	let endpointId: string;

	async function call<T = unknown>(route: string, init: { method?: string; json?: unknown; headers?: Record<string, string> } = {}) {
		const headers: Record<string, string> = { ...init.headers };
		if (token) headers.Authorization = `Bearer ${token}`;
		if (init.json !== undefined) headers["Content-Type"] = "application/json";
		const res = await fetch(`${proc.url}/api/v1${route}`, { method: init.method ?? "GET", headers, body: init.json === undefined ? undefined : JSON.stringify(init.json) });
		const text = await res.text();
		return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
	}

	async function start(): Promise<PlatformProcess> {
		const started = await spawnPlatform(TSX, ["server.ts"], env);
		await waitFor200(`${started.url}/health/ready`, 60_000, started);
		return started;
	}

	/** Pairs a display: its `display.paired` event is what the endpoint receives. */
	async function pairDisplay(name: string): Promise<string> {
		const pairing = await call<{ code: string }>("/device/pairing", { method: "POST", json: {} });
		const paired = await call<{ id: string }>("/displays/pair", { method: "POST", json: { code: pairing.body.code, name } });
		if (paired.status !== 201) throw new Error(`pair answered ${paired.status}`);
		return paired.body.id;
	}

	/** The endpoint's delivery log once `done` holds (polled; the test timeout bounds it). */
	async function deliveriesWhen(done: (rows: Delivery[]) => boolean): Promise<Delivery[]> {
		for (;;) {
			const res = await call<{ rows: Delivery[] }>(`/webhooks/${endpointId}/deliveries`);
			if (res.status === 200 && done(res.body.rows)) return res.body.rows;
			await new Promise(resolve => setTimeout(resolve, 100));
		}
	}

	beforeAll(async () => {
		receiver = await WebhookReceiver.start();
		proc = await start();
		const registered = await call<{ accessToken: string }>("/auth/register", {
			method: "POST",
			json: { email: `hooks-${process.pid}@example.com`, password: "Crash-proof webhooks horse 42", name: "Hook Owner", organizationName: "Crash test org" }
		});
		expect(registered.status).toBe(201);
		token = registered.body.accessToken;
		const endpoint = await call<{ id: string; secret: string }>("/webhooks", { method: "POST", json: { url: receiver.url, events: ["display.paired"] } });
		expect(endpoint.status).toBe(201);
		endpointId = endpoint.body.id;
		receiver.secret = endpoint.body.secret;
	});

	afterAll(async () => {
		if (proc) killGroup(proc);
		await receiver?.close();
	});

	it("killed mid-request (SIGKILL): after a restart the same webhook-id arrives again and is processed exactly once", async () => {
		receiver.reply({ hang: true });
		const displayId = await pairDisplay("Crash lobby");
		await receiver.waitForRequests(1);
		const first = receiver.received[0];
		expect(first.verdict).toBe("ok");
		expect(JSON.parse(first.body)).toMatchObject({ type: "display.paired", data: { displayId, name: "Crash lobby" } });

		killGroup(proc);
		await proc.exited;
		proc = await start();

		await receiver.waitForRequests(2);
		const second = receiver.received[1];
		expect(second.verdict).toBe("ok");
		expect(second.headers["webhook-id"]).toBe(first.headers["webhook-id"]);
		expect(second.body).toBe(first.body);
		expect(receiver.processed).toEqual([first.headers["webhook-id"]]);

		const rows = await deliveriesWhen(rows => rows[0]?.status === "succeeded");
		expect(rows).toHaveLength(1);
		// The killed attempt never finished: it is not counted.
		expect(rows[0]).toMatchObject({ status: "succeeded", attempts: 1, lastStatusCode: 200 });
		expect(first.headers["webhook-id"]).toBe(`msg_${rows[0].id}`);
	});

	it("stopped gracefully mid-request (SIGTERM): the delivery is handed back and sent again by the next process, still processed once", async () => {
		const before = receiver.received.length;
		receiver.reply({ hang: true });
		await pairDisplay("Drain lobby");
		await receiver.waitForRequests(before + 1);
		const first = receiver.received[before];

		proc.kill("SIGTERM");
		expect(await proc.exited).toBe(0);
		proc = await start();

		await receiver.waitForRequests(before + 2);
		const again = receiver.received[before + 1];
		expect(again.headers["webhook-id"]).toBe(first.headers["webhook-id"]);
		expect(again.verdict).toBe("ok");
		expect(receiver.processed).toHaveLength(2);
		expect(new Set(receiver.processed).size).toBe(2);

		const rows = await deliveriesWhen(rows => rows.length === 2 && rows.every(r => r.status === "succeeded"));
		expect(rows.map(r => r.attempts)).toEqual([1, 1]);
		expect(receiver.received).toHaveLength(before + 2);
		reportLine(`webhooks-restart: a delivery cut by SIGKILL and one cut by SIGTERM each arrived again under the same webhook-id and were processed once (${receiver.received.length} requests, ${receiver.processed.length} processed)`);
	});
});
