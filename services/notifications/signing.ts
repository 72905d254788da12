/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): the secret is `whsec_` + base64
 * of random bytes, and each request carries
 *   webhook-id         the delivery's stable id (the same on every retry: receivers deduplicate by it)
 *   webhook-timestamp  seconds since the epoch of this attempt (receivers refuse old ones: replay protection)
 *   webhook-signature  `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the key being the
 *                      base64-decoded secret after `whsec_`; several signatures are space-separated
 *                      (the old secret keeps signing for a while after a rotation).
 */
import { createHmac, randomBytes } from "node:crypto";
import type { PlatformEvent } from "../../shared/contracts";

const PREFIX = "whsec_";
/** 32 random bytes: the spec asks for 24 to 64. */
const SECRET_BYTES = 32;

export function newSecret(): string {
	return `${PREFIX}${randomBytes(SECRET_BYTES).toString("base64")}`;
}

function keyOf(secret: string): Buffer {
	return Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, "base64");
}

/** One `v1,<signature>` of `body` sent as message `msgId` at `timestamp` (seconds). */
export function sign(secret: string, msgId: string, timestamp: number, body: string): string {
	return `v1,${createHmac("sha256", keyOf(secret)).update(`${msgId}.${timestamp}.${body}`).digest("base64")}`;
}

/** The three Standard Webhooks headers of one attempt, signed with every secret in force (newest first). */
export function signedHeaders(secrets: readonly string[], msgId: string, timestamp: number, body: string): Record<string, string> {
	return {
		"webhook-id": msgId,
		"webhook-timestamp": String(timestamp),
		"webhook-signature": secrets.map(secret => sign(secret, msgId, timestamp, body)).join(" ")
	};
}

/** The body of every delivery of an event: serialized once and stored, so each attempt sends (and signs) the same bytes. */
export function payloadOf(event: Pick<PlatformEvent, "type" | "timestamp" | "data">): string {
	return JSON.stringify({ type: event.type, timestamp: event.timestamp, data: event.data });
}

/** The `webhook-id` of a delivery. */
export function messageIdOf(deliveryId: string): string {
	return `msg_${deliveryId}`;
}
