/**
 * One webhook attempt over real HTTP to local receivers: what the receiver gets, what is kept of
 * its answer, Retry-After, the timeout, redirects not followed, the SSRF refusal before any
 * connection, and the connection made to the checked address even for a name the system cannot
 * resolve (the lookup is pinned).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { attempt, parseRetryAfter, truncateBody, type AttemptRequest } from "../../services/notifications/deliver";
import type { Resolve } from "../../shared/ssrf";
import { WebhookReceiver } from "../helpers/webhook-receiver";

const NOW = Date.parse("2026-03-01T12:00:00.000Z");
const BODY = '{"type":"content.ready","timestamp":"2026-03-01T12:00:00.000Z","data":{"contentId":"c-1"}}';
const HEADERS = { "webhook-id": "msg_1", "webhook-timestamp": "1772366400", "webhook-signature": "v1,c2lnbmF0dXJl" };

const noDns: Resolve = () => Promise.reject(new Error("no DNS in this test"));

function request(url: string, changes: Partial<AttemptRequest> = {}): AttemptRequest {
	return { url, body: BODY, headers: HEADERS, timeoutMs: 5000, allowPrivate: true, resolve: noDns, now: NOW, ...changes };
}

describe("a webhook attempt", () => {
	let receiver: WebhookReceiver;
	beforeEach(async () => {
		receiver = await WebhookReceiver.start();
	});
	afterEach(() => receiver.close());

	it("POSTs the body with the signed headers and answers the receiver's status and body", async () => {
		receiver.reply({ status: 202, body: "queued" });
		expect(await attempt(request(`${receiver.url}?tenant=1`))).toEqual({ kind: "response", status: 202, body: "queued", retryAfterMs: null });
		expect(receiver.received).toHaveLength(1);
		const got = receiver.received[0];
		expect(got.method).toBe("POST");
		expect(got.path).toBe("/hooks?tenant=1");
		expect(got.body).toBe(BODY);
		expect(got.headers).toMatchObject({ ...HEADERS, "content-type": "application/json", "content-length": String(BODY.length), "user-agent": "Marquee-Webhooks/1.0" });
	});

	it("keeps the first 1 KiB of a long answer, never half a character", async () => {
		receiver.reply({ status: 500, body: "é".repeat(5000) });
		const outcome = await attempt(request(receiver.url));
		expect(outcome).toEqual({ kind: "response", status: 500, body: "é".repeat(512), retryAfterMs: null });
		expect(truncateBody(Buffer.from(`x${"é".repeat(600)}`))).toBe(`x${"é".repeat(511)}`);
	});

	it("reads Retry-After in seconds or as an HTTP date", async () => {
		receiver.reply({ status: 503, headers: { "Retry-After": "120" } }, { status: 429, headers: { "Retry-After": "Sun, 01 Mar 2026 12:00:30 GMT" } });
		expect(await attempt(request(receiver.url))).toEqual({ kind: "response", status: 503, body: "", retryAfterMs: 120_000 });
		expect(await attempt(request(receiver.url))).toEqual({ kind: "response", status: 429, body: "", retryAfterMs: 30_000 });
		expect(parseRetryAfter(undefined, NOW)).toBeNull();
		expect(parseRetryAfter("soon", NOW)).toBeNull();
		expect(parseRetryAfter("-5", NOW)).toBeNull();
		expect(parseRetryAfter("0", NOW)).toBe(0);
		expect(parseRetryAfter("Sun, 01 Mar 2026 11:00:00 GMT", NOW)).toBe(0);
		expect(parseRetryAfter("31536000", NOW)).toBe(24 * 3_600_000);
	});

	it("gives up on a receiver that does not answer within the timeout", async () => {
		receiver.reply({ hang: true });
		expect(await attempt(request(receiver.url, { timeoutMs: 150 }))).toEqual({ kind: "error", error: "No answer within 150 ms", refused: false });
		expect(receiver.received).toHaveLength(1);
	});

	it("reports a connection that is refused", async () => {
		const closed = http.createServer();
		await new Promise<void>(resolve => closed.listen(0, "127.0.0.1", resolve));
		const port = (closed.address() as AddressInfo).port;
		await new Promise(resolve => closed.close(resolve));
		expect(await attempt(request(`http://127.0.0.1:${port}/`))).toEqual({ kind: "error", error: `connect ECONNREFUSED 127.0.0.1:${port}`, refused: false });
	});

	it("does not follow a redirect: a 3xx is the answer", async () => {
		const elsewhere = await WebhookReceiver.start();
		try {
			receiver.reply({ status: 307, headers: { Location: elsewhere.url } });
			expect(await attempt(request(receiver.url))).toEqual({ kind: "response", status: 307, body: "", retryAfterMs: null });
			expect(elsewhere.received).toHaveLength(0);
		} finally {
			await elsewhere.close();
		}
	});

	it("refuses a private destination before connecting unless private destinations are allowed", async () => {
		expect(await attempt(request(receiver.url, { allowPrivate: false }))).toEqual({ kind: "error", error: "Destination refused: the URL must not be a loopback address", refused: true });
		const rebound: Resolve = async () => [{ address: "127.0.0.1", family: 4 }];
		expect(await attempt(request(`http://hooks.rebind.test:${receiver.port}/hooks`, { allowPrivate: false, resolve: rebound }))).toEqual({
			kind: "error",
			error: "Destination refused: the URL must not resolve to a loopback address",
			refused: true
		});
		expect(receiver.received).toHaveLength(0);
	});

	it("connects to the address it checked: a name only the injected resolver knows still arrives", async () => {
		let lookups = 0;
		const resolve: Resolve = async hostname => {
			lookups += 1;
			expect(hostname).toBe("receiver.pinned.test");
			return [{ address: "127.0.0.1", family: 4 }];
		};
		const outcome = await attempt(request(`http://receiver.pinned.test:${receiver.port}/hooks`, { resolve }));
		expect(outcome).toEqual({ kind: "response", status: 200, body: "ok", retryAfterMs: null });
		expect(lookups).toBe(1);
		expect(receiver.received[0].headers.host).toBe(`receiver.pinned.test:${receiver.port}`);
	});

	it("a name that does not resolve is an error, not a refusal", async () => {
		expect(await attempt(request("http://nowhere.test/hook"))).toEqual({ kind: "error", error: "Destination unusable: nowhere.test does not resolve (no DNS in this test)", refused: false });
	});

	it("stops at once when aborted", async () => {
		receiver.reply({ hang: true });
		const controller = new AbortController();
		const pending = attempt(request(receiver.url, { signal: controller.signal }));
		await receiver.waitForRequests(1);
		controller.abort();
		expect(await pending).toEqual({ kind: "error", error: "Aborted: the worker is stopping", refused: false });
	});
});
