/**
 * Durable channels: facts that must not be lost (JetStream under NATS, in-process otherwise).
 *
 * A JetStream publish fails when no stream holds its subject, and the adapter only creates a
 * stream when a consumer subscribes. A publisher whose consumer is not deployed yet (audit
 * records and heartbeat metrics before analytics runs) would then fail every request. So every
 * broker creates the streams of these channels when it starts: messages wait there for their
 * consumer.
 */
import type { Middleware, Service, ServiceBroker } from "moleculer";

export const AUDIT_CHANNEL = "audit.record";
/** Heartbeat metrics, batched by devices' group commit: `{heartbeats: [...]}`. */
export const HEARTBEAT_CHANNEL = "devices.heartbeats";
/**
 * The single-heartbeat channel of versions before batching. Nothing publishes to it any more;
 * analytics still drains it, so what an earlier version left in the stream is stored, and an
 * analytics replica of that version never receives a batch it cannot read during a rolling update.
 */
export const LEGACY_HEARTBEAT_CHANNEL = "devices.heartbeat";
export const TENANT_DELETED_CHANNEL = "tenants.tenant.deleted";
/** Emails to send: the notifications service's outbox takes them (even while it or SMTP is down). */
export const EMAIL_CHANNEL = "notifications.email";
/** Facts integrators subscribe to (webhooks) and alerts react to, from the service where they happened. */
export const EVENT_CHANNEL = "notifications.event";
/** Accepted proof-of-play batches (POST /device/playback), for analytics to store. */
export const PLAYBACK_CHANNEL = "analytics.playback";
/** A display came online or went dark (devices), for analytics' uptime. */
export const DISPLAY_STATUS_CHANNEL = "devices.display.status";

export const DURABLE_CHANNELS = [AUDIT_CHANNEL, HEARTBEAT_CHANNEL, LEGACY_HEARTBEAT_CHANNEL, TENANT_DELETED_CHANNEL, EMAIL_CHANNEL, EVENT_CHANNEL, PLAYBACK_CHANNEL, DISPLAY_STATUS_CHANNEL] as const;

/** What this uses of @moleculer/channels' NATS adapter (`broker.channelAdapter`). */
interface StreamingAdapter {
	addPrefixTopic(name: string): string;
	createStream(streamName: string, subjects: string[], options: Record<string, unknown>): Promise<unknown>;
}

/** The stream name the adapter itself gives a channel's stream when a consumer subscribes. */
export function streamNameOf(subject: string): string {
	return subject.split(".").join("_");
}

/** A service that holds channel messages in a buffer (acknowledging them once written) can flush it at stop. */
interface BufferingService {
	flushChannelBuffers?: () => Promise<void>;
}

export const DurableStreamsMiddleware: Middleware = {
	name: "DurableStreams",
	/**
	 * Before the channels middleware unsubscribes a stopping service (which waits for the handlers
	 * still running): a service whose handlers wait for a buffered write writes it now, so those
	 * handlers finish and their messages are acknowledged instead of timing out. Middlewares'
	 * stopping hooks run last-registered first; this one is registered after the channels'.
	 */
	async serviceStopping(svc: Service) {
		const buffering = svc as Service & BufferingService;
		if (typeof buffering.flushChannelBuffers === "function") await buffering.flushChannelBuffers();
	},
	async started(broker: ServiceBroker) {
		const adapter = (broker as unknown as { channelAdapter?: Partial<StreamingAdapter> }).channelAdapter;
		if (!adapter?.createStream || !adapter.addPrefixTopic) return;
		for (const channel of DURABLE_CHANNELS) {
			const subject = adapter.addPrefixTopic(channel);
			await adapter.createStream(streamNameOf(subject), [subject], {});
		}
	}
};
