/**
 * Tracing (TRACING_EXPORTER): what a span carries, and the exporter that sends it.
 *
 * A span names its action (a REST request's: its method and path, see services/api.service.ts)
 * and carries the nodes, the request id, the call's timeout and retries, and a failure's name,
 * code and type. Never what was sent or answered: Moleculer's default puts every action's params
 * on its span (passwords, tokens, provisioning and API keys), a failure's data (a validation
 * error's: each refused value), and its exporter a failure's message, which may quote input (an
 * identity provider's error, an organisation's name) or a dependency's own words that a 5xx
 * answer hides from the client. test/e2e/tracing.test.ts sends real traffic to a local Zipkin
 * collector and looks for each of them.
 */
import { createHash } from "node:crypto";
import { TracerExporters, type BrokerOptions } from "moleculer";
import type { Config } from "./config";

type Span = Parameters<InstanceType<typeof TracerExporters.Zipkin>["makePayload"]>[0];

/** The tracer's options, off unless TRACING_EXPORTER names an exporter. */
export function tracingOptions(config: Config): NonNullable<BrokerOptions["tracing"]> {
	const { exporter, endpoint } = config.tracing;
	if (exporter === "none") return { enabled: false };
	const spans = {
		tags: {
			action: { params: false, meta: false, response: false },
			event: { params: false, meta: false }
		},
		// Five, as many as moleculer's default: its options are merged with lodash's defaultsDeep,
		// which fills a shorter list from the default's (whose fifth is `data`). The message is
		// the exporter's plainFailure, not the error's own.
		errorFields: ["name", "message", "code", "type", "retryable"]
	};
	// The console exporter prints span names and timings only.
	if (exporter === "console") return { enabled: true, ...spans, exporter: { type: "Console", options: { width: 100 } } };
	// Jaeger accepts Zipkin's format on its Zipkin-compatible collector, so both use one exporter.
	// (An exporter instance, which moleculer's resolve() takes and its typings omit.)
	const zipkin = new ZipkinExporter({ baseURL: endpoint ?? undefined }) as unknown as { type: "Zipkin" };
	return { enabled: true, ...spans, exporter: zipkin };
}

/** What a failed span says of its failure: what it is, never what it says. */
function plainFailure(error: object): Error {
	const { name, code, type, retryable } = error as { name?: unknown; code?: unknown; type?: unknown; retryable?: unknown };
	const kind = typeof type === "string" && type ? type : typeof name === "string" && name ? name : "Error";
	return { name: typeof name === "string" ? name : "Error", message: kind, code, type, retryable } as Error;
}

/**
 * Moleculer's Zipkin exporter, except that a failure travels as plainFailure (the exporter puts
 * its message in the span's `error` tag whatever `errorFields` says), a trace id that is not hex
 * (a client's own X-Request-Id) travels hashed (Zipkin refuses a batch holding one), and what it
 * holds is sent when the broker stops, awaited (the exporter sends every 5 s and dropped the last ones).
 */
export class ZipkinExporter extends TracerExporters.Zipkin {
	override makePayload(span: Span): Record<string, unknown> {
		const error = span.error;
		if (!error || typeof error !== "object") return super.makePayload(span);
		span.error = plainFailure(error);
		try {
			return super.makePayload(span);
		} finally {
			span.error = error;
		}
	}

	override convertID(id: string): string {
		if (!id) return super.convertID(id);
		const hex = id.replace(/-/g, "");
		return /^[0-9a-f]{16,}$/i.test(hex) ? super.convertID(id) : createHash("sha256").update(id).digest("hex").slice(0, 16);
	}

	/**
	 * Sends what it holds and waits for the collector's answer, for at most STOP_SEND_MS: the
	 * process exits right after its broker stops (server.ts), which cut a send still in flight.
	 */
	override async stop(): Promise<void> {
		super.stop();
		if (this.queue.length === 0) return;
		const data = this.generateTracingData();
		this.queue.length = 0;
		try {
			const res = await fetch(`${this.opts.baseURL}/api/v2/spans`, { method: "POST", body: JSON.stringify(data), headers: this.opts.headers, signal: AbortSignal.timeout(STOP_SEND_MS) });
			await res.arrayBuffer();
			if (res.status >= 400) this.logger.warn(`The last ${data.length} tracing spans were refused by the collector (${res.status})`);
		} catch (err) {
			this.logger.warn(`The last ${data.length} tracing spans did not reach the collector: ${(err as Error).name}`);
		}
	}
}

/** How long a stopping broker waits for its last spans to reach the collector. */
const STOP_SEND_MS = 2000;
