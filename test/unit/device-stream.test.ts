/**
 * The device stream registry and SSE writer (services/api/device-stream.ts) with fake responses:
 * headers and preamble, event formatting, one stream per display, tenant checks, keep-alive and
 * credential rechecks on timers, slow readers, closing everything.
 */
import { EventEmitter } from "node:events";
import {
	DEFAULT_STREAM_SETTINGS,
	DeviceStreamRegistry,
	formatComment,
	formatEvent,
	isSameDevice,
	manifestEventData,
	parseCommandCreated,
	parseDisplayDeleted,
	parseManifestChanged,
	SSE_HEADERS,
	type DeviceStreamOptions,
	type StreamResponse
} from "../../services/api/device-stream";

/** Enough of http.ServerResponse for the registry; records what was written. */
class FakeResponse extends EventEmitter implements StreamResponse {
	status = 0;
	headers: Record<string, string> = {};
	chunks: string[] = [];
	writableEnded = false;
	destroyed = false;
	writableLength = 0;

	writeHead(status: number, headers: Record<string, string>): this {
		this.status = status;
		this.headers = headers;
		return this;
	}

	write(chunk: string): boolean {
		if (this.writableEnded) throw new Error("write after end");
		this.chunks.push(chunk);
		return true;
	}

	end(): this {
		this.writableEnded = true;
		this.emit("close");
		return this;
	}

	destroy(): this {
		this.destroyed = true;
		this.emit("close");
		return this;
	}

	/** The client went away. */
	disconnect(): void {
		this.destroyed = true;
		this.emit("close");
	}

	get text(): string {
		return this.chunks.join("");
	}
}

const T1 = "tenant-1";
const T2 = "tenant-2";

function registry(options: DeviceStreamOptions = {}): { streams: DeviceStreamRegistry; counts: number[] } {
	const counts: number[] = [];
	let n = 0;
	const streams = new DeviceStreamRegistry({ newId: () => `id-${++n}`, onCountChange: open => counts.push(open), ...options });
	return { streams, counts };
}

afterEach(() => jest.useRealTimers());

describe("SSE format", () => {
	it("writes an event as event, data (one line of JSON) and id, then a blank line", () => {
		expect(formatEvent("command", { id: "c1", type: "reboot" }, "e1")).toBe('event: command\ndata: {"id":"c1","type":"reboot"}\nid: e1\n\n');
	});

	it("keeps line breaks inside values on the data line", () => {
		const text = formatEvent("manifest", { note: "a\nb\r\nc" }, "e1");
		expect(text.split("\n")).toEqual(["event: manifest", 'data: {"note":"a\\nb\\r\\nc"}', "id: e1", "", ""]);
	});

	it("refuses event names and ids that would break the framing", () => {
		expect(() => formatEvent("bad\nname", {}, "e1")).toThrow();
		expect(() => formatEvent("", {}, "e1")).toThrow();
		expect(() => formatEvent("ok", {}, "e\n1")).toThrow();
	});

	it("writes comments on one line", () => {
		expect(formatComment("keep-alive")).toBe(": keep-alive\n\n");
		expect(formatComment("a\nb")).toBe(": a b\n\n");
	});

	it("defaults to a UUID event id", () => {
		expect(formatEvent("x", null)).toMatch(/^event: x\ndata: null\nid: [0-9a-f-]{36}\n\n$/);
	});
});

describe("DeviceStreamRegistry", () => {
	it("opens with status 200, the SSE headers, retry and a connected comment", () => {
		const { streams, counts } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res, { "RateLimit-Limit": "600" });
		expect(res.status).toBe(200);
		expect(res.headers).toEqual({ ...SSE_HEADERS, "RateLimit-Limit": "600" });
		expect(res.headers).toMatchObject({
			"Content-Type": "text/event-stream; charset=utf-8",
			"Cache-Control": "no-cache, no-transform",
			Connection: "keep-alive",
			"X-Accel-Buffering": "no"
		});
		expect(res.text).toBe("retry: 5000\n: connected\n\n");
		expect(streams.size).toBe(1);
		expect(counts).toEqual([1]);
		streams.closeAll();
	});

	it("does not let extra headers override the SSE ones", () => {
		const { streams } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res, { "Content-Type": "application/json" });
		expect(res.headers["Content-Type"]).toBe("text/event-stream; charset=utf-8");
		streams.closeAll();
	});

	it("sends events to the display of the right tenant only", () => {
		const { streams } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		res.chunks = [];
		expect(streams.send(T1, "d1", "command", { id: "c1", type: "reboot", createdAt: "2026-01-01T00:00:00.000Z" })).toBe(true);
		expect(res.text).toBe('event: command\ndata: {"id":"c1","type":"reboot","createdAt":"2026-01-01T00:00:00.000Z"}\nid: id-1\n\n');
		// Same display id, another tenant: nothing is written.
		expect(streams.send(T2, "d1", "command", { id: "c2", type: "reboot" })).toBe(false);
		expect(streams.send(T1, "d2", "command", { id: "c3", type: "reboot" })).toBe(false);
		expect(streams.end(T2, "d1")).toBe(false);
		expect(res.chunks).toHaveLength(1);
		expect(res.writableEnded).toBe(false);
		streams.closeAll();
	});

	it("a second connection of the same display replaces the first (event: replaced, then end)", () => {
		const { streams, counts } = registry();
		const first = new FakeResponse();
		const second = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, first);
		streams.open({ tenantId: T1, displayId: "d1" }, second);
		expect(first.text).toMatch(/event: replaced\ndata: \{"reason":"[^"]+"\}\nid: id-1\n\n$/);
		expect(first.writableEnded).toBe(true);
		expect(second.writableEnded).toBe(false);
		expect(streams.size).toBe(1);
		expect(counts[counts.length - 1]).toBe(1);

		streams.send(T1, "d1", "manifest", { etag: "e" });
		expect(first.text).not.toContain("manifest");
		expect(second.text).toContain("event: manifest");

		// The replaced one closing late does not take its successor out.
		first.emit("close");
		expect(streams.size).toBe(1);
		expect(streams.get(T1, "d1")?.open).toBe(true);
		streams.closeAll();
	});

	it("the same display id in two tenants are two streams", () => {
		const { streams } = registry();
		const a = new FakeResponse();
		const b = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, a);
		streams.open({ tenantId: T2, displayId: "d1" }, b);
		expect(streams.size).toBe(2);
		expect(a.writableEnded).toBe(false);
		streams.send(T2, "d1", "command", { id: "c", type: "reload" });
		expect(a.text).not.toContain("command");
		expect(b.text).toContain("event: command");
		streams.closeAll();
	});

	it("end() writes the reason and ends the stream", () => {
		const { streams, counts } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		expect(streams.end(T1, "d1")).toBe(true);
		expect(res.text).toMatch(/event: revoked\ndata: \{"reason":"[^"]+"\}\nid: id-1\n\n$/);
		expect(res.writableEnded).toBe(true);
		expect(streams.size).toBe(0);
		expect(counts).toEqual([1, 0]);
		expect(streams.send(T1, "d1", "command", {})).toBe(false);
	});

	it("forgets a stream whose client went away", () => {
		const { streams, counts } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		res.disconnect();
		expect(streams.size).toBe(0);
		expect(counts).toEqual([1, 0]);
		expect(streams.send(T1, "d1", "command", {})).toBe(false);
	});

	it("writes keep-alive comments every keepAliveMs until the stream ends", () => {
		jest.useFakeTimers();
		const { streams } = registry({ settings: () => ({ keepAliveMs: 100 }) });
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		res.chunks = [];
		jest.advanceTimersByTime(99);
		expect(res.chunks).toEqual([]);
		jest.advanceTimersByTime(1);
		expect(res.chunks).toEqual([": keep-alive\n\n"]);
		jest.advanceTimersByTime(300);
		expect(res.chunks).toHaveLength(4);
		res.disconnect();
		jest.advanceTimersByTime(1000);
		expect(res.chunks).toHaveLength(4);
		expect(jest.getTimerCount()).toBe(0);
	});

	it("uses the default timings when none are set", () => {
		jest.useFakeTimers();
		const { streams } = registry({ settings: () => ({ keepAliveMs: undefined }) });
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		expect(res.text).toContain(`retry: ${DEFAULT_STREAM_SETTINGS.retryMs}\n`);
		res.chunks = [];
		jest.advanceTimersByTime(DEFAULT_STREAM_SETTINGS.keepAliveMs);
		expect(res.chunks).toEqual([": keep-alive\n\n"]);
		streams.closeAll();
	});

	it("a setting changed later applies to the next stream", () => {
		const settings = { retryMs: 1000 };
		const { streams } = registry({ settings: () => settings });
		const a = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, a);
		settings.retryMs = 2000;
		const b = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d2" }, b);
		expect(a.text).toMatch(/^retry: 1000\n/);
		expect(b.text).toMatch(/^retry: 2000\n/);
		streams.closeAll();
	});

	it("rechecks the credential and ends a stream whose token is no longer valid", async () => {
		jest.useFakeTimers();
		let valid = true;
		const checked: Array<string | undefined> = [];
		const { streams } = registry({
			settings: () => ({ recheckMs: 1000, keepAliveMs: 0 }),
			verify: async connection => {
				checked.push(connection.credential);
				return valid;
			}
		});
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1", credential: "tok" }, res);
		await jest.advanceTimersByTimeAsync(1000);
		expect(checked).toEqual(["tok"]);
		expect(res.writableEnded).toBe(false);
		valid = false;
		await jest.advanceTimersByTimeAsync(1000);
		expect(res.text).toContain("event: revoked");
		expect(res.writableEnded).toBe(true);
		expect(streams.size).toBe(0);
		expect(jest.getTimerCount()).toBe(0);
	});

	it("keeps a stream when the recheck itself fails", async () => {
		jest.useFakeTimers();
		const { streams } = registry({
			settings: () => ({ recheckMs: 1000, keepAliveMs: 0 }),
			verify: () => Promise.reject(new Error("auth unavailable"))
		});
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		await jest.advanceTimersByTimeAsync(3000);
		expect(res.writableEnded).toBe(false);
		expect(streams.size).toBe(1);
		streams.closeAll();
	});

	it("drops a client that stops reading", () => {
		const { streams } = registry({ settings: () => ({ maxBufferedBytes: 100 }) });
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		res.writableLength = 500;
		expect(streams.send(T1, "d1", "command", { id: "c", type: "reboot" })).toBe(false);
		expect(res.destroyed).toBe(true);
		expect(streams.size).toBe(0);
	});

	it("treats a response that ended elsewhere as gone", () => {
		const { streams } = registry();
		const res = new FakeResponse();
		streams.open({ tenantId: T1, displayId: "d1" }, res);
		res.writableEnded = true;
		expect(streams.send(T1, "d1", "command", {})).toBe(false);
		expect(streams.size).toBe(0);
	});

	it("closeAll ends every stream without an event; shutdown also refuses new ones", () => {
		jest.useFakeTimers();
		const { streams, counts } = registry({ settings: () => ({ keepAliveMs: 100 }) });
		const responses = [new FakeResponse(), new FakeResponse(), new FakeResponse()];
		responses.forEach((res, i) => streams.open({ tenantId: T1, displayId: `d${i}` }, res));
		expect(streams.closeAll()).toBe(3);
		for (const res of responses) {
			expect(res.writableEnded).toBe(true);
			expect(res.text).not.toContain("event:");
		}
		expect(streams.size).toBe(0);
		expect(counts[counts.length - 1]).toBe(0);
		expect(jest.getTimerCount()).toBe(0);
		expect(streams.closed).toBe(false);

		streams.open({ tenantId: T1, displayId: "d9" }, new FakeResponse());
		expect(streams.shutdown()).toBe(1);
		expect(streams.closed).toBe(true);
		// A stream opened after shutdown ends right after its preamble; the client reconnects elsewhere.
		const late = new FakeResponse();
		expect(streams.open({ tenantId: T1, displayId: "d1" }, late)).toBeNull();
		expect(late.status).toBe(200);
		expect(late.text).toBe("retry: 5000\n: connected\n\n");
		expect(late.writableEnded).toBe(true);
		expect(streams.size).toBe(0);
		expect(jest.getTimerCount()).toBe(0);
	});
});

describe("broadcast event payloads", () => {
	it("devices.command.created", () => {
		const command = { id: "c1", type: "reboot", createdAt: "2026-01-01T00:00:00.000Z" };
		expect(parseCommandCreated({ tenantId: T1, displayId: "d1", command })).toEqual({ tenantId: T1, displayId: "d1", command });
		expect(parseCommandCreated({ tenantId: T1, displayId: "d1" })).toBeNull();
		expect(parseCommandCreated({ tenantId: T1, displayId: "d1", command: { type: "reboot" } })).toBeNull();
		expect(parseCommandCreated({ displayId: "d1", command })).toBeNull();
		expect(parseCommandCreated(null)).toBeNull();
		expect(parseCommandCreated("x")).toBeNull();
		// The contract's CommandSummary: a known command type and its creation time.
		expect(parseCommandCreated({ tenantId: T1, displayId: "d1", command: { ...command, type: "self-destruct" } })).toBeNull();
		expect(parseCommandCreated({ tenantId: T1, displayId: "d1", command: { id: "c1", type: "reboot" } })).toBeNull();
	});

	it("scheduling.manifest.changed", () => {
		const change = parseManifestChanged({ tenantId: T1, displayIds: ["d1", "d2", "d1", 7], etags: { d1: "\"e1\"", d2: 5 } });
		expect(change).toEqual({ tenantId: T1, displayIds: ["d1", "d2"], etags: { d1: "\"e1\"" } });
		expect(manifestEventData(change!, "d1")).toEqual({ etag: "\"e1\"" });
		expect(manifestEventData(change!, "d2")).toEqual({ etag: null });
		expect(manifestEventData(change!, "toString")).toEqual({ etag: null });
		expect(parseManifestChanged({ tenantId: T1, displayIds: ["d1"] })).toEqual({ tenantId: T1, displayIds: ["d1"], etags: {} });
		expect(parseManifestChanged({ tenantId: T1 })).toBeNull();
		expect(parseManifestChanged({ displayIds: ["d1"] })).toBeNull();
	});

	it("devices.display.deleted", () => {
		expect(parseDisplayDeleted({ tenantId: T1, displayId: "d1", extra: 1 })).toEqual({ tenantId: T1, displayId: "d1" });
		expect(parseDisplayDeleted({ tenantId: T1 })).toBeNull();
		expect(parseDisplayDeleted({ tenantId: "", displayId: "d1" })).toBeNull();
	});

	it("a rechecked token still names the stream's device", () => {
		const identity = { tenantId: T1, displayId: "d1" };
		expect(isSameDevice({ kind: "device", tenantId: T1, displayId: "d1" }, identity)).toBe(true);
		expect(isSameDevice({ kind: "device", tenantId: T1, displayId: "d2" }, identity)).toBe(false);
		expect(isSameDevice({ kind: "device", tenantId: "other", displayId: "d1" }, identity)).toBe(false);
		expect(isSameDevice({ kind: "user", tenantId: T1, userId: "u1", role: "owner" }, identity)).toBe(false);
		expect(isSameDevice(null, identity)).toBe(false);
	});
});
