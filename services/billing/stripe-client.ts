/**
 * The Stripe SDK client, built only when STRIPE_SECRET_KEY is set; STRIPE_API_URL points it at
 * another host (tests run a local fake of the API) through the SDK's host/port/protocol.
 */
import type { Readable } from "node:stream";
import Stripe from "stripe";
import type { Config } from "../../shared/config";
import { Errors } from "../../shared/errors";

/** Stripe's signature tolerance: a signed body older than this is refused (replays). */
export const SIGNATURE_TOLERANCE_SEC = 300;
export function stripeClient(config: Pick<Config, "stripe" | "billing">): Stripe | null {
	const key = config.stripe.secretKey;
	if (!key) return null;
	const options: ConstructorParameters<typeof Stripe>[1] = { maxNetworkRetries: 2, timeout: 20_000, telemetry: false };
	if (config.billing.stripeApiUrl) {
		const url = new URL(config.billing.stripeApiUrl);
		const protocol = url.protocol === "http:" ? "http" : "https";
		options.host = url.hostname;
		options.port = url.port || (protocol === "http" ? 80 : 443);
		options.protocol = protocol;
	}
	return new Stripe(key, options);
}

/**
 * The raw bytes of a request body, refused with 413 past `max` (the gateway's MAX_BODY_BYTES, as
 * for every other body; the rest is discarded, not read into memory).
 */
export async function readRawBody(stream: Readable | null | undefined, max: number): Promise<Buffer> {
	if (!stream) throw Errors.badRequest("Missing request body");
	const chunks: Buffer[] = [];
	let size = 0;
	for await (const chunk of stream) {
		const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
		size += buffer.length;
		if (size > max) {
			stream.resume();
			throw Errors.payloadTooLarge(`A Stripe event is at most ${max} bytes`);
		}
		chunks.push(buffer);
	}
	return Buffer.concat(chunks);
}

/**
 * The event, verified by the SDK on the exact bytes received (a body re-serialised by a JSON
 * parser has other bytes and fails). Any failure — no header, bad or stale signature,
 * unparseable body — is one 400 that says nothing about which check failed.
 */
export function verifiedEvent(stripe: Stripe, raw: Buffer, header: string | undefined, secret: string, receivedAt?: number): Stripe.Event {
	if (!header) throw Errors.badRequest("Missing Stripe-Signature header");
	try {
		return stripe.webhooks.constructEvent(raw, header, secret, SIGNATURE_TOLERANCE_SEC, undefined, receivedAt);
	} catch {
		throw Errors.badRequest("Invalid Stripe signature");
	}
}

/** "USD 24.00" from Stripe's minor units (for the payment.failed email). */
export function formatAmount(minor: number | null | undefined, currency: string | null | undefined): string | null {
	if (typeof minor !== "number" || !currency) return null;
	const digits = ["jpy", "krw", "vnd", "clp", "isk", "ugx", "xof", "xaf"].includes(currency.toLowerCase()) ? 0 : 2;
	return `${currency.toUpperCase()} ${(minor / 10 ** digits).toFixed(digits)}`;
}
