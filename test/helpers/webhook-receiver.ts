/**
 * A real webhook receiver for tests: an HTTP server on 127.0.0.1 that records every request and
 * answers from a script (status, headers, body, or hanging until closed). It checks each request
 * with the official Standard Webhooks library (`standardwebhooks` from npm) the way an integrator
 * would, and "processes" each `webhook-id` once, as a receiver that deduplicates by it does.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedRequest {
	method: string;
	path: string;
	headers: http.IncomingHttpHeaders;
	body: string;
	/** What the Standard Webhooks library said with the receiver's secret at arrival: "ok" or its error message. */
	verdict: string;
	/** When it arrived (Date.now()). */
	receivedAt: number;
}

export interface Reply {
	status?: number;
	headers?: Record<string, string>;
	body?: string;
	/** Never answer (until the receiver closes or `release()`). */
	hang?: boolean;
	/** Answer after this long (a slow receiver). */
	delayMs?: number;
}

/** The Standard Webhooks library's verdict on a received request with `secret`: "ok" or its error message. */
export function verify(secret: string, request: Pick<ReceivedRequest, "headers" | "body">): string {
	try {
		new Webhook(secret).verify(request.body, {
			"webhook-id": String(request.headers["webhook-id"] ?? ""),
			"webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
			"webhook-signature": String(request.headers["webhook-signature"] ?? "")
		});
		return "ok";
	} catch (err) {
		return err instanceof Error ? err.message : String(err);
	}
}

export class WebhookReceiver {
	readonly received: ReceivedRequest[] = [];
	/** Each webhook-id handled once: what a deduplicating receiver acted on, in order. */
	readonly processed: string[] = [];
	/** Checked at arrival; null = not checked. */
	secret: string | null = null;
	/** Called with each request as it arrives (before the answer). */
	onRequest: ((request: ReceivedRequest) => void) | null = null;
	private readonly script: Reply[] = [];
	private readonly hung: http.ServerResponse[] = [];
	private fallback: Reply = { status: 200, body: "ok" };

	private constructor(
		private readonly server: http.Server,
		readonly url: string,
		readonly port: number
	) {}

	static async start(): Promise<WebhookReceiver> {
		let receiver: WebhookReceiver | null = null;
		const server = http.createServer((req, res) => receiver?.handle(req, res));
		await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		const port = (server.address() as AddressInfo).port;
		receiver = new WebhookReceiver(server, `http://127.0.0.1:${port}/hooks`, port);
		return receiver;
	}

	/** The next requests get these answers, in order; after them, `otherwise` (200 "ok" by default). */
	reply(...replies: Reply[]): this {
		this.script.push(...replies);
		return this;
	}

	otherwise(reply: Reply): this {
		this.fallback = reply;
		return this;
	}

	/** Requests carrying `webhookId`. */
	withId(webhookId: string): ReceivedRequest[] {
		return this.received.filter(r => r.headers["webhook-id"] === webhookId);
	}

	/** Resolves once `count` requests have arrived (polling; the caller's test timeout bounds it). */
	async waitForRequests(count: number): Promise<void> {
		while (this.received.length < count) await new Promise(resolve => setTimeout(resolve, 10));
	}

	/** Answers the requests left hanging so far. */
	release(status = 200): void {
		for (const res of this.hung.splice(0)) res.writeHead(status).end("late");
	}

	async close(): Promise<void> {
		this.server.closeAllConnections();
		await new Promise<void>(resolve => this.server.close(() => resolve()));
	}

	private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
		const chunks: Buffer[] = [];
		req.on("data", (chunk: Buffer) => chunks.push(chunk));
		req.on("end", () => {
			const request: ReceivedRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), verdict: "", receivedAt: Date.now() };
			request.verdict = this.secret ? verify(this.secret, request) : "not checked";
			this.received.push(request);
			const id = String(req.headers["webhook-id"] ?? "");
			if (request.verdict !== "not checked" && request.verdict !== "ok") {
				res.writeHead(400).end("bad signature");
				return;
			}
			if (id && !this.processed.includes(id)) this.processed.push(id);
			this.onRequest?.(request);
			const reply = this.script.shift() ?? this.fallback;
			if (reply.hang) {
				this.hung.push(res);
				return;
			}
			const answer = () => res.writeHead(reply.status ?? 200, reply.headers ?? {}).end(reply.body ?? "");
			if (reply.delayMs) setTimeout(answer, reply.delayMs);
			else answer();
		});
	}
}
