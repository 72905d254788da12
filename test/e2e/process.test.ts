/**
 * The platform as a process, as a user runs it: `npm start` on the embedded default, SIGTERM
 * during a slow request, and embedded data surviving a restart.
 */
import { tempDir } from "../helpers/platform";
import { validateOpenApi } from "../helpers/openapi-validator";
import { killGroup, spawnPlatform, waitFor200, type PlatformProcess } from "../helpers/process";
import { describeWith, freePort, natsServer, requireServer, uniquePrefix } from "../helpers/servers";
import { until } from "../helpers/until";

const FIXTURE = "test/e2e/fixtures/platform-with-probes.ts";
const TSX = "node_modules/.bin/tsx";

/** How long a process may take to answer after its spawn; generous, for a loaded machine. */
const STARTUP_MS = 60_000;

jest.setTimeout(2 * STARTUP_MS);

describe("npm start on the embedded default", () => {
	let proc: PlatformProcess;

	beforeAll(async () => {
		// LOG_LEVEL blank: the default a user gets.
		proc = await spawnPlatform("npm", ["start"], { DATA_DIR: tempDir(), LOG_LEVEL: "" });
	});
	afterAll(() => killGroup(proc));

	// No time limit asserted (tests never time anything): a loaded machine may take a while to compile the player and start.
	it("answers /health/live and /health/ready with 200 once started", async () => {
		await waitFor200(`${proc.url}/health/live`, STARTUP_MS, proc);
		await waitFor200(`${proc.url}/health/ready`, STARTUP_MS, proc);
		const ready = await fetch(`${proc.url}/health/ready`);
		expect(await ready.json()).toMatchObject({ status: "ok" });
	});

	it("prints a short banner (address, mode, data, mail) and nothing else: no route table, no deprecation warnings", async () => {
		await waitFor200(`${proc.url}/health/ready`, STARTUP_MS, proc);
		for (let i = 0; i < 50 && !proc.output().includes("logs "); i++) await new Promise(resolve => setTimeout(resolve, 100));
		const lines = proc.output().split("\n").filter(line => line.trim() && !line.startsWith(">"));
		expect(lines[0]).toMatch(/^Marquee is running at http:\/\/127\.0\.0\.1:\d+ \(embedded: every service in this process\)$/);
		expect(lines.join("\n")).toMatch(/^ {2}mail {7}written to .+\/mail \(no SMTP_URL\)$/m);
		expect(lines.length).toBeLessThanOrEqual(6);
		expect(proc.output()).not.toMatch(/DeprecationWarning|not part of this build|=>|INFO/);
	});

	it("serves Moleculer metrics on /metrics", async () => {
		const text = await (await fetch(`${proc.url}/metrics`)).text();
		expect(text).toMatch(/^# TYPE moleculer_node_type gauge$/m);
		expect(text).toMatch(/^moleculer_broker_namespace\{/m);
	});

	it("serves a valid OpenAPI 3.1 document", async () => {
		const doc = (await (await fetch(`${proc.url}/api/openapi.json`)).json()) as { openapi: string };
		expect(doc.openapi).toBe("3.1.0");
		expect((await validateOpenApi(doc)).valid).toBe(true);
	});
});

describe("SIGTERM during a slow request", () => {
	it("lets the request complete, then exits 0", async () => {
		const proc = await spawnPlatform(TSX, [FIXTURE], { DATA_DIR: tempDir() });
		try {
			await waitFor200(`${proc.url}/health/ready`, STARTUP_MS, proc);
			const slow = fetch(`${proc.url}/api/v1/probe/slow?ms=1500`);
			// SIGTERM once the request is in the action (a fixed wait could signal before it arrived).
			await until("the slow request in its action", async () => /^moleculer_request_active\{[^}]*action="probe\.slow"[^}]*\} [1-9]/m.test(await (await fetch(`${proc.url}/metrics`)).text()));
			proc.kill("SIGTERM");
			const res = await slow;
			expect(res.status).toBe(200);
			expect(await res.json()).toEqual({ waited: 1500 });
			expect(await proc.exited).toBe(0);
			expect(proc.output()).not.toMatch(/\b(Unhandled|TypeError|ReferenceError)\b/);
		} finally {
			killGroup(proc);
		}
	});
});

describe("a failure no handler catches", () => {
	it("is logged and the process serves on", async () => {
		const proc = await spawnPlatform(TSX, [FIXTURE], { DATA_DIR: tempDir() });
		try {
			await waitFor200(`${proc.url}/health/ready`, STARTUP_MS, proc);
			expect((await fetch(`${proc.url}/api/v1/probe/stray`)).status).toBe(200);
			await until("both stray failures logged", () => /Unhandled promise rejection; serving on/.test(proc.output()) && /stray exception from a timer/.test(proc.output()));
			expect(proc.child.exitCode).toBeNull();
			expect((await fetch(`${proc.url}/health/live`)).status).toBe(200);
			expect(proc.output()).toMatch(/Uncaught exception; serving on/);
			expect(proc.output()).toMatch(/stray exception from a timer/);
			expect(proc.output()).toMatch(/Unhandled promise rejection; serving on/);
		} finally {
			killGroup(proc);
		}
	});
});

describe("embedded data", () => {
	it("survives a restart of the platform", async () => {
		const env = { DATA_DIR: tempDir() };
		const first = await spawnPlatform(TSX, [FIXTURE], env);
		let id: string;
		try {
			await waitFor200(`${first.url}/health/ready`, STARTUP_MS, first);
			const created = await fetch(`${first.url}/api/v1/notes`, {
				method: "POST",
				headers: { "Content-Type": "application/json" },
				body: JSON.stringify({ text: "still here after a restart" })
			});
			expect(created.status).toBe(200);
			id = ((await created.json()) as { id: string }).id;
			first.kill("SIGTERM");
			expect(await first.exited).toBe(0);
		} finally {
			killGroup(first);
		}

		const second = await spawnPlatform(TSX, [FIXTURE], env);
		try {
			await waitFor200(`${second.url}/health/ready`, STARTUP_MS, second);
			const read = await fetch(`${second.url}/api/v1/notes/${id}`);
			expect(read.status).toBe(200);
			expect(await read.json()).toMatchObject({ id, text: "still here after a restart" });
		} finally {
			second.kill("SIGTERM");
			await second.exited;
			killGroup(second);
		}
	});
});

describeWith("nats")("services in separate processes over NATS", () => {
	it("the gateway process routes to a service process; the service process serves ops on OPS_PORT", async () => {
		const nats = await requireServer(natsServer());
		const cluster = { TRANSPORTER: nats.url, NAMESPACE: uniquePrefix("cluster").replace(/\W/g, "") };
		const opsPort = await freePort();
		const gateway = await spawnPlatform(TSX, ["server.ts"], { ...cluster, SERVICES: "api", DATA_DIR: tempDir() });
		const worker = await spawnPlatform(TSX, [FIXTURE], { ...cluster, PROBES_ONLY: "1", OPS_PORT: String(opsPort), DATA_DIR: tempDir() });
		try {
			await waitFor200(`${worker.url.replace(/:\d+$/, `:${opsPort}`)}/health/live`, STARTUP_MS, worker);
			const ops = `http://127.0.0.1:${opsPort}`;
			const ready = await fetch(`${ops}/health/ready`);
			expect(ready.status).toBe(200);
			expect(await ready.json()).toMatchObject({ status: "ok", checks: { transporter: { status: "ok" } } });
			expect(await (await fetch(`${ops}/metrics`)).text()).toMatch(/^moleculer_broker_namespace\{/m);
			// The worker runs no gateway: nothing listens on its PORT.
			await expect(fetch(`${worker.url}/health/live`)).rejects.toThrow();

			// The gateway answers once it has discovered the worker's actions over NATS.
			await waitFor200(`${gateway.url}/api/v1/probe/perm/public`, STARTUP_MS, gateway);
			const conflict = await fetch(`${gateway.url}/api/v1/probe/conflict`);
			expect(conflict.status).toBe(409);
			expect(await conflict.json()).toMatchObject({ error: { type: "CONFLICT", data: { field: "name" } } });
			// A process announces each service as it starts (moleculer.config.ts): the notes service may
			// become known a moment after the probes.
			const postInvalid = () =>
				fetch(`${gateway.url}/api/v1/notes`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: 42 }) });
			let invalid = await postInvalid();
			for (let i = 0; i < 100 && invalid.status === 404; i++) {
				await new Promise(resolve => setTimeout(resolve, 100));
				invalid = await postInvalid();
			}
			expect(invalid.status).toBe(422);

			worker.kill("SIGTERM");
			expect(await worker.exited).toBe(0);
			gateway.kill("SIGTERM");
			expect(await gateway.exited).toBe(0);
		} finally {
			killGroup(worker);
			killGroup(gateway);
		}
	});
});
