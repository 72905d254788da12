/**
 * The device live stream `GET /api/v1/device/events` over HTTP, read as a player reads it (a
 * long-lived response parsed into SSE blocks): who may open it, the events that reach it from
 * broadcasts (and the ones that must not), one stream per display, keep-alives, revocation,
 * the open-streams gauge, the OpenAPI entry, and streams ending when the platform stops.
 */
import type { AddressInfo } from "node:net";
import type { Service } from "moleculer";
import { DEVICE_STREAMS_METRIC } from "../../services/api/device-stream";
import { newId } from "../../shared/ids";
import { lifecycle } from "../../shared/lifecycle";
import { decide } from "../../shared/rbac";
import { startPlatform, type Platform as RunningPlatform } from "../../server";
import { bearer, register, startTestPlatform, type Platform, type Session } from "../helpers/accounts";
import { validateOpenApi } from "../helpers/openapi-validator";
import { connect, EVENTS, isEvent, open, type Stream } from "../helpers/sse";
import { request, testConfig, type ErrorBody } from "../helpers/platform";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** The api service's settings, to shorten the stream's timers in tests. */
function gatewaySettings(broker: { getLocalService(name: string): unknown }): Record<string, unknown> {
	return (broker.getLocalService("api") as Service).settings as Record<string, unknown>;
}

function gaugeValue(metrics: string): number | null {
	const line = metrics.split("\n").find(l => l.startsWith(`${DEVICE_STREAMS_METRIC}{`) || l.startsWith(`${DEVICE_STREAMS_METRIC} `));
	return line ? Number(line.trim().split(/\s+/).pop()) : null;
}

afterEach(() => {
	for (const stream of open.splice(0)) stream.close();
});

describe("device live stream (GET /api/v1/device/events)", () => {
	let p: Platform;
	let a: Session & { password: string };
	let b: Session & { password: string };

	beforeAll(async () => {
		p = await startTestPlatform();
		const settings = gatewaySettings(p.broker);
		settings.deviceStreamKeepAliveMs = 150;
		settings.deviceStreamRecheckMs = 0;
		a = await register(p);
		b = await register(p);
	}, 30_000);

	afterAll(() => p?.stop());

	async function deviceToken(tenantId: string, displayId: string): Promise<string> {
		const { deviceToken } = (await p.broker.call("auth.mintDeviceToken", { tenantId, displayId })) as { deviceToken: string };
		return deviceToken;
	}

	/** A newly minted display of tenant A with its open stream, past the preamble. */
	async function connectedDisplay(tenantId = a.tenant.id): Promise<{ displayId: string; token: string; stream: Stream }> {
		const displayId = newId();
		const token = await deviceToken(tenantId, displayId);
		const stream = await connect(p.url, token);
		expect(stream.status).toBe(200);
		await stream.waitFor(block => block.comments.includes("connected"));
		return { displayId, token, stream };
	}

	async function expectRefused(token: string | null, status: number, type: string): Promise<void> {
		const stream = await connect(p.url, token);
		const text = await stream.body();
		expect({ status: stream.status, type: (JSON.parse(text) as ErrorBody).error.type }).toEqual({ status, type });
		expect(stream.headers["content-type"]).toContain("application/json");
		expect((JSON.parse(text) as ErrorBody).error.requestId).toBe(stream.headers["x-request-id"]);
	}

	it("a device token connects: SSE headers, then retry and a connected comment", async () => {
		const token = await deviceToken(a.tenant.id, newId());
		const stream = await connect(p.url, token, { "X-Request-Id": "sse-test-1" });
		expect(stream.status).toBe(200);
		expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
		expect(stream.headers["cache-control"]).toBe("no-cache, no-transform");
		expect(stream.headers["connection"]).toBe("keep-alive");
		expect(stream.headers["x-accel-buffering"]).toBe("no");
		expect(stream.headers["x-request-id"]).toBe("sse-test-1");
		expect(stream.headers["ratelimit-limit"]).toBeDefined();
		const first = await stream.waitFor(() => true);
		expect(first.raw).toBe("retry: 5000\n: connected");
		expect(first.retry).toBe("5000");
		expect(first.event).toBeUndefined();
	});

	it("HEAD answers the stream's headers at once and takes no connection slot", async () => {
		const { displayId, token, stream } = await connectedDisplay();
		const head = await fetch(`${p.url}/api/v1/device/events`, { method: "HEAD", headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
		expect(head.status).toBe(200);
		expect(head.headers.get("content-type")).toContain("text/event-stream");
		expect(await head.text()).toBe("");
		// The open stream is still this display's: it was not replaced.
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId, command: { id: "after-head", type: "reload", createdAt: new Date().toISOString() } });
		await stream.waitFor(block => block.event === "command");
		stream.close();
	});

	it("a user token → 401, no token → 401, a malformed header → 401", async () => {
		expect(decide("device", { kind: "user", tenantId: a.tenant.id, userId: a.user.id, role: "owner" })).toBe("unauthenticated");
		await expectRefused(a.accessToken, 401, "UNAUTHORIZED");
		await expectRefused(null, 401, "UNAUTHORIZED");
		await expectRefused("not-a-token", 401, "UNAUTHORIZED");
	});

	it("an API key is refused as the RBAC table decides (401: another token family)", async () => {
		const created = await request<{ key: string }>(p.api("/api-keys"), {
			method: "POST",
			json: { name: "sse key", role: "admin" },
			headers: bearer(a.accessToken)
		});
		expect(created.status).toBe(201);
		const decision = decide("device", { kind: "apiKey", tenantId: a.tenant.id, apiKeyId: "k", role: "admin" });
		expect(decision).toBe("unauthenticated");
		await expectRefused(created.body.key, 401, "UNAUTHORIZED");
	});

	it("a revoked device token → 401", async () => {
		const displayId = newId();
		const token = await deviceToken(a.tenant.id, displayId);
		await p.broker.call("auth.revokeDeviceToken", { tenantId: a.tenant.id, displayId });
		await expectRefused(token, 401, "UNAUTHORIZED");
	});

	it("devices.command.created for its display arrives as event: command", async () => {
		const { displayId, stream } = await connectedDisplay();
		const command = { id: newId(), type: "reboot", createdAt: new Date().toISOString() };
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId, command });
		const block = await stream.waitFor(isEvent("command"));
		expect(JSON.parse(block.data ?? "")).toEqual(command);
		expect(block.id).toMatch(/^[0-9a-f-]{36}$/);
	});

	it("events for another tenant (or another display) never reach the stream", async () => {
		const { displayId, stream } = await connectedDisplay();
		const foreign = { id: newId(), type: "reboot", createdAt: new Date().toISOString() };
		// The same display id under tenant B: a forged or mistaken event must not cross tenants.
		p.broker.broadcast("devices.command.created", { tenantId: b.tenant.id, displayId, command: foreign });
		p.broker.broadcast("scheduling.manifest.changed", { tenantId: b.tenant.id, displayIds: [displayId], etags: { [displayId]: "\"x\"" } });
		p.broker.broadcast("devices.display.deleted", { tenantId: b.tenant.id, displayId });
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId: newId(), command: foreign });
		// A malformed event is ignored, not a crash.
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId });
		const mine = { id: newId(), type: "reload", createdAt: new Date().toISOString() };
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId, command: mine });
		const block = await stream.waitFor(isEvent("command"));
		expect(JSON.parse(block.data ?? "")).toEqual(mine);
		expect(stream.blocks.filter(bl => bl.event !== undefined).map(bl => bl.event)).toEqual(["command"]);
		expect(stream.isEnded()).toBe(false);
	});

	it("scheduling.manifest.changed arrives as event: manifest with the display's etag", async () => {
		const one = await connectedDisplay();
		const two = await connectedDisplay();
		p.broker.broadcast("scheduling.manifest.changed", {
			tenantId: a.tenant.id,
			displayIds: [one.displayId, two.displayId],
			etags: { [one.displayId]: "\"etag-1\"" }
		});
		expect(JSON.parse((await one.stream.waitFor(isEvent("manifest"))).data ?? "")).toEqual({ etag: "\"etag-1\"" });
		expect(JSON.parse((await two.stream.waitFor(isEvent("manifest"))).data ?? "")).toEqual({ etag: null });
	});

	it("a second connection of the same display replaces the first", async () => {
		const { displayId, token, stream: first } = await connectedDisplay();
		const second = await connect(p.url, token);
		expect(second.status).toBe(200);
		const replaced = await first.waitFor(isEvent("replaced"));
		expect(JSON.parse(replaced.data ?? "")).toMatchObject({ reason: expect.any(String) });
		await first.ended;

		const command = { id: newId(), type: "screenshot", createdAt: new Date().toISOString() };
		p.broker.broadcast("devices.command.created", { tenantId: a.tenant.id, displayId, command });
		expect(JSON.parse((await second.waitFor(isEvent("command"))).data ?? "")).toEqual(command);
		expect(first.blocks.some(isEvent("command"))).toBe(false);
	});

	it("keep-alive comments arrive on an idle stream", async () => {
		const { stream } = await connectedDisplay();
		const from = stream.blocks.length;
		await stream.waitFor(block => block.comments.includes("keep-alive"), 3000, from);
		const next = stream.blocks.length;
		await stream.waitFor(block => block.comments.includes("keep-alive"), 3000, next);
	});

	it("revoking the token and deleting the display ends the stream (event: revoked); reconnecting → 401", async () => {
		const { displayId, token, stream } = await connectedDisplay();
		await p.broker.call("auth.revokeDeviceToken", { tenantId: a.tenant.id, displayId });
		p.broker.broadcast("devices.display.deleted", { tenantId: a.tenant.id, displayId });
		const revoked = await stream.waitFor(isEvent("revoked"));
		expect(JSON.parse(revoked.data ?? "")).toMatchObject({ reason: expect.any(String) });
		await stream.ended;
		await expectRefused(token, 401, "UNAUTHORIZED");
	});

	it("a stream whose token stops working ends at the next recheck, even without an event", async () => {
		const settings = gatewaySettings(p.broker);
		settings.deviceStreamRecheckMs = 100;
		try {
			const { displayId, stream } = await connectedDisplay();
			// Minting again (re-pairing) revokes the previous token.
			await deviceToken(a.tenant.id, displayId);
			await stream.waitFor(isEvent("revoked"));
			await stream.ended;
		} finally {
			settings.deviceStreamRecheckMs = 0;
		}
	});

	it("/metrics counts the open streams", async () => {
		/** The gauge once it reads `expected` (a client leaving reaches the server a moment later). */
		const gauge = async (expected: number): Promise<number | null> => {
			let value: number | null = null;
			for (let i = 0; i < 50 && value !== expected; i++) {
				if (i > 0) await sleep(20);
				value = gaugeValue((await request(`${p.url}/metrics`)).text);
			}
			return value;
		};
		for (const stream of open.splice(0)) stream.close();
		expect(await gauge(0)).toBe(0);
		const one = await connectedDisplay();
		await connectedDisplay();
		expect(await gauge(2)).toBe(2);
		one.stream.close();
		expect(await gauge(1)).toBe(1);
	});

	it("the OpenAPI document lists the stream with its permission and stays valid", async () => {
		const res = await request<{ paths: Record<string, Record<string, { "x-permission"?: string; security?: unknown }>> }>(`${p.url}/api/openapi.json`);
		expect(res.status).toBe(200);
		const op = res.body.paths[EVENTS]?.get;
		expect(op).toBeDefined();
		expect(op["x-permission"]).toBe("device");
		expect(op.security).toEqual([{ bearerAuth: [] }]);
		const validation = await validateOpenApi(res.body);
		expect(validation.errors).toBeUndefined();
		expect(validation.valid).toBe(true);
	});
});

describe("stopping ends open streams", () => {
	it("a gateway broker stopping ends its streams instead of waiting for them", async () => {
		const p = await startTestPlatform({ SHUTDOWN_TIMEOUT_MS: "60000" });
		let stopped = false;
		try {
			const { tenant } = await register(p);
			const { deviceToken } = (await p.broker.call("auth.mintDeviceToken", { tenantId: tenant.id, displayId: newId() })) as { deviceToken: string };
			const stream = await connect(p.url, deviceToken);
			await stream.waitFor(block => block.comments.includes("connected"));
			// The stream's request is not tracked: stop() neither waits the 60 s shutdown timeout nor fails.
			await p.stop();
			stopped = true;
			await stream.ended;
			expect(stream.blocks.some(block => block.event !== undefined)).toBe(false);
		} finally {
			if (!stopped) await p.stop();
		}
	}, 20_000);

	it("platform.stop() (SIGTERM) ends the streams as soon as draining starts, then exits cleanly", async () => {
		const config = testConfig({ SHUTDOWN_TIMEOUT_MS: "60000", LOG_LEVEL: "error" });
		let platform: RunningPlatform | null = await startPlatform(config);
		try {
			const api = platform.broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
			const url = `http://127.0.0.1:${api.server.address().port}`;
			const tenantId = newId();
			const streams = await Promise.all(
				[newId(), newId()].map(async displayId => {
					const { deviceToken } = (await platform!.broker.call("auth.mintDeviceToken", { tenantId, displayId })) as { deviceToken: string };
					const stream = await connect(url, deviceToken);
					expect(stream.status).toBe(200);
					await stream.waitFor(block => block.comments.includes("connected"));
					return stream;
				})
			);
			const ready = await request(`${url}/health/ready`);
			expect(ready.status).toBe(200);

			const stopping = platform.stop();
			// Ended synchronously by the drain hook, before the broker waits for anything.
			const registry = (platform.broker.getLocalService("api") as unknown as { deviceStreams: { size: number } }).deviceStreams;
			expect(registry.size).toBe(0);
			await Promise.all(streams.map(s => s.ended));
			await stopping;
			platform = null;
		} finally {
			await platform?.stop();
			lifecycle.draining = false;
		}
	}, 20_000);
});
