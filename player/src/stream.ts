/**
 * The live stream (GET /api/v1/device/events) read with fetch, since EventSource cannot send the
 * device token. Reconnects after the server's `retry` delay (or when the connection drops);
 * stops for good on `replaced` (another tab or device took over this display) and reports
 * `revoked` (the display or its token is gone) as a sign-out.
 */
import { api, Unauthorized } from "./api.js";
import { SseParser, type SseEvent } from "./sse.js";

export interface StreamHandlers {
	onEvent(event: SseEvent): void;
	/** The stream is up (true) or down (false). */
	onConnected(up: boolean): void;
	onRevoked(): void;
}

const DEFAULT_RETRY_MS = 5_000;

export class LiveStream {
	private abort: AbortController | null = null;
	private stopped = false;

	constructor(
		private readonly token: string,
		private readonly handlers: StreamHandlers
	) {}

	start(): void {
		void this.run();
	}

	stop(): void {
		this.stopped = true;
		this.abort?.abort();
	}

	private async run(): Promise<void> {
		let retryMs = DEFAULT_RETRY_MS;
		while (!this.stopped) {
			this.abort = new AbortController();
			const parser = new SseParser();
			try {
				const res = await api.events(this.token, this.abort.signal);
				if (!res.body) throw new Error("no stream body");
				this.handlers.onConnected(true);
				const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
				for (;;) {
					const { value, done } = await reader.read();
					if (done) break;
					for (const event of parser.feed(value)) {
						if (event.event === "replaced") return this.stop();
						if (event.event === "revoked") {
							this.stop();
							return this.handlers.onRevoked();
						}
						this.handlers.onEvent(event);
					}
				}
			} catch (err) {
				if (err instanceof Unauthorized) {
					this.stop();
					return this.handlers.onRevoked();
				}
			}
			retryMs = parser.retryMs ?? retryMs;
			if (this.stopped) return;
			this.handlers.onConnected(false);
			// A little jitter so a fleet does not reconnect in one burst after a restart.
			await new Promise(resolve => setTimeout(resolve, retryMs * (0.75 + Math.random() * 0.5)));
		}
	}
}
