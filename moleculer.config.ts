/**
 * Broker options, built from the validated config. `server.ts` uses them for `npm start` and
 * `npm run dev`; tests build brokers with the same function (test/helpers/platform.ts).
 */
import type { BrokerOptions, Errors as MoleculerErrors } from "moleculer";
import type { MetricsReporter } from "moleculer/src/metrics/registry";
import ChannelsMiddleware from "@moleculer/channels";
import { DurableStreamsMiddleware } from "./shared/channels";
import type { Config } from "./shared/config";
import { AppError, AppErrorRegenerator } from "./shared/errors";
import { SafeValidator } from "./shared/validation";
import { logFormatter, RequestScopeMiddleware } from "./shared/logging";
import { InProcessPrometheusReporter } from "./shared/metrics";
import { tracingOptions } from "./shared/tracing";

/** The channels typings want every option; the middleware fills its own defaults. */
type ChannelOptions = Parameters<typeof ChannelsMiddleware.Middleware>[0];

/** Errors worth retrying on another node; client errors never are. */
function retryable(err: Error): boolean {
	return Boolean((err as MoleculerErrors.MoleculerRetryableError).retryable);
}

/** moleculer reads `serviceChangedDebounceTime` (service-broker.js) but its typings omit it: a typed value, not a literal. */
const IMMEDIATE_INFO: NonNullable<BrokerOptions["transit"]> = Object.assign({ disableReconnect: false }, { serviceChangedDebounceTime: 0 });

export function brokerOptions(config: Config, overrides: Partial<BrokerOptions> = {}): BrokerOptions {
	return {
		namespace: config.namespace,
		nodeID: null,
		logger: {
			type: "Console",
			options: { colors: config.logFormat === "pretty", formatter: logFormatter(config.logFormat) }
		},
		logLevel: config.logLevel,

		transporter: config.transporter ? { type: "NATS", options: { url: config.transporter } } : null,
		cacher: config.redisUrl
			? // ioredis takes the URL as is; the typings only describe its object form.
				{ type: "Redis", options: { prefix: `marquee-cache-${config.namespace || "default"}`, ttl: 3600, redis: config.redisUrl as unknown as Record<string, string> } }
			: { type: "Memory", options: { ttl: 3600, clone: true } },
		serializer: "JSON",
		errorRegenerator: new AppErrorRegenerator(),

		requestTimeout: config.requestTimeoutMs,
		retryPolicy: { enabled: true, retries: 3, delay: 100, maxDelay: 1000, factor: 2, check: retryable },
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 60,
			halfOpenTime: 10_000,
			// An answer the code chose (an AppError: 503 "payments are not configured", 404, 422) is
			// not a failing node: counting it would open the breaker on a burst of such requests and
			// make the action unavailable for everyone.
			check: (err: Error) => retryable(err) || (!(err instanceof AppError) && (err as MoleculerErrors.MoleculerError).code >= 500)
		},
		// Bulkheads are off, except where a handler asks for one: the in-process (Fake) channel
		// adapter of the embedded mode runs each channel through one, and moleculer's default
		// queue of 100 would drop the 101st waiting message ("Queue is full"). No bound: a
		// durable message is kept in memory rather than lost.
		bulkhead: { enabled: false, concurrency: 10, maxQueueSize: 0 },
		// In-flight requests finish before the broker stops (SIGTERM drains).
		tracking: { enabled: true, shutdownTimeout: config.shutdownTimeoutMs },
		registry: { strategy: "RoundRobin", preferLocal: true },
		// A node tells the others about itself (INFO) as each of its services starts, not 1 s after
		// the last one (moleculer's default debounce): otherwise a gateway that just turned ready is
		// unknown to the services for a moment, and the pushes they broadcast (a command, a manifest
		// change) never reach the screens that connected to it meanwhile.
		transit: IMMEDIATE_INFO,

		// fastest-validator, with null refused where not declared nullable and no throwing on hostile values.
		validator: new SafeValidator(),
		metrics: {
			enabled: true,
			// A reporter instance is accepted at run time; the typings list only config objects.
			reporter: new InProcessPrometheusReporter({
				defaultLabels: () => ({ namespace: config.namespace || "marquee" })
			}) as unknown as MetricsReporter
		},
		tracing: tracingOptions(config),

		middlewares: [
			RequestScopeMiddleware,
			ChannelsMiddleware.Middleware({
				// No async stack traces: with them every JetStream publish (a batch of heartbeats)
				// captures two stacks more (its request's and its timeout's), ~2 % of the devices
				// process under heartbeat load by --cpu-prof. (nats.js still makes a "Cancelled"
				// error, stack and all, as each request completes; that one it makes regardless.)
				adapter: config.transporter ? { type: "NATS", options: { nats: { url: config.transporter, connectionOptions: { noAsyncTraces: true } } } } : "Fake",
				context: true
			} as ChannelOptions),
			DurableStreamsMiddleware
		],
		...overrides
	};
}
