/**
 * A local fake of the few Stripe API endpoints billing calls, reached by the real SDK through its
 * host/port/protocol options (STRIPE_API_URL): customers, checkout sessions, billing portal
 * sessions, subscriptions retrieve and update. Plus signed webhook bodies, made with the SDK's
 * own `generateTestHeaderString`, so the service verifies them exactly as it would Stripe's.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

export const FAKE_STRIPE_KEY = "sk_test_fake_marquee";
export const FAKE_WEBHOOK_SECRET = "whsec_fake_marquee_webhook_secret";
export const FAKE_PRICE_PRO = "price_fake_pro";

export interface FakeSubscription {
	id: string;
	object: "subscription";
	customer: string;
	status: Stripe.Subscription.Status;
	cancel_at_period_end: boolean;
	trial_end: number | null;
	created: number;
	metadata: Record<string, string>;
	items: { object: "list"; data: Array<{ id: string; object: "subscription_item"; quantity: number; current_period_end: number; price: { id: string; object: "price" } }> };
}

export interface FakeRequest {
	method: string;
	path: string;
	form: Record<string, string>;
}

export interface FakeStripe {
	url: string;
	/** Env for the platform: the SDK pointed at this fake, webhooks signed with FAKE_WEBHOOK_SECRET. */
	env: Record<string, string>;
	requests: FakeRequest[];
	customers: Map<string, { id: string; name: string; metadata: Record<string, string> }>;
	subscriptions: Map<string, FakeSubscription>;
	/** A subscription as Stripe would hold it after a completed checkout. */
	createSubscription(fields: { customer: string; tenantId: string; quantity: number; planId?: string; status?: Stripe.Subscription.Status }): FakeSubscription;
	/** Makes every request answer this status (Stripe down) until reset with null. */
	failWith(status: number | null): void;
	close(): Promise<void>;
}

let ids = 0;
const nextId = (prefix: string) => `${prefix}_fake${process.pid}x${++ids}`;
const nowSec = () => Math.floor(Date.now() / 1000);

/** `a[b][c]=v` form fields as a flat map (the SDK's encoding), enough to read what billing sends. */
function readForm(body: string): Record<string, string> {
	const form: Record<string, string> = {};
	for (const [key, value] of new URLSearchParams(body)) form[key] = value;
	return form;
}

export async function startFakeStripe(): Promise<FakeStripe> {
	const requests: FakeRequest[] = [];
	const customers: FakeStripe["customers"] = new Map();
	const subscriptions: FakeStripe["subscriptions"] = new Map();
	let failing: number | null = null;

	const send = (res: http.ServerResponse, status: number, body: unknown) => {
		res.writeHead(status, { "Content-Type": "application/json", "Request-Id": nextId("req") });
		res.end(JSON.stringify(body));
	};
	const missing = (res: http.ServerResponse, what: string) =>
		send(res, 404, { error: { type: "invalid_request_error", code: "resource_missing", message: `No such ${what}` } });

	const server = http.createServer((req, res) => {
		let raw = "";
		req.setEncoding("utf8");
		req.on("data", chunk => (raw += chunk));
		req.on("end", () => {
			const path = (req.url ?? "").split("?")[0];
			const form = readForm(raw);
			requests.push({ method: req.method ?? "", path, form });
			if (failing) return send(res, failing, { error: { type: "api_error", message: "The fake is failing on purpose" } });
			if (req.headers.authorization !== `Bearer ${FAKE_STRIPE_KEY}`) return send(res, 401, { error: { type: "invalid_request_error", message: "Invalid API key" } });

			if (req.method === "POST" && path === "/v1/customers") {
				const metadata: Record<string, string> = {};
				for (const [key, value] of Object.entries(form)) {
					const m = /^metadata\[(.+)\]$/.exec(key);
					if (m) metadata[m[1]] = value;
				}
				const customer = { id: nextId("cus"), object: "customer", name: form.name ?? "", metadata };
				customers.set(customer.id, customer);
				return send(res, 200, customer);
			}
			if (req.method === "POST" && path === "/v1/checkout/sessions") {
				if (!form.customer || !customers.has(form.customer)) return missing(res, "customer");
				if (form.mode !== "subscription" || !form["line_items[0][price]"]) return send(res, 400, { error: { type: "invalid_request_error", message: "Bad session" } });
				const id = nextId("cs");
				return send(res, 200, { id, object: "checkout.session", mode: "subscription", customer: form.customer, url: `https://checkout.stripe.test/c/pay/${id}` });
			}
			if (req.method === "POST" && path === "/v1/billing_portal/sessions") {
				if (!form.customer || !customers.has(form.customer)) return missing(res, "customer");
				const id = nextId("bps");
				return send(res, 200, { id, object: "billing_portal.session", customer: form.customer, url: `https://billing.stripe.test/p/session/${id}` });
			}
			const sub = /^\/v1\/subscriptions\/([^/]+)$/.exec(path);
			if (sub) {
				const found = subscriptions.get(decodeURIComponent(sub[1]));
				if (!found) return missing(res, "subscription");
				if (req.method === "GET") return send(res, 200, found);
				if (req.method === "POST") {
					if (form["items[0][quantity]"] !== undefined) {
						const item = found.items.data.find(i => i.id === form["items[0][id]"]);
						if (!item) return missing(res, "subscription item");
						item.quantity = Number(form["items[0][quantity]"]);
					}
					if (form.cancel_at_period_end !== undefined) found.cancel_at_period_end = form.cancel_at_period_end === "true";
					return send(res, 200, found);
				}
			}
			send(res, 404, { error: { type: "invalid_request_error", message: `The fake has no ${req.method} ${path}` } });
		});
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

	return {
		url,
		env: { STRIPE_SECRET_KEY: FAKE_STRIPE_KEY, STRIPE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET, STRIPE_PRICE_PRO: FAKE_PRICE_PRO, STRIPE_API_URL: url },
		requests,
		customers,
		subscriptions,
		createSubscription({ customer, tenantId, quantity, planId = "pro", status = "active" }) {
			const created = nowSec();
			const subscription: FakeSubscription = {
				id: nextId("sub"),
				object: "subscription",
				customer,
				status,
				cancel_at_period_end: false,
				trial_end: null,
				created,
				metadata: { tenantId, planId },
				items: {
					object: "list",
					data: [{ id: nextId("si"), object: "subscription_item", quantity, current_period_end: created + 30 * 86400, price: { id: FAKE_PRICE_PRO, object: "price" } }]
				}
			};
			subscriptions.set(subscription.id, subscription);
			return subscription;
		},
		failWith(status) {
			failing = status;
		},
		close: () => new Promise<void>(resolve => server.close(() => resolve()))
	};
}

/** A Stripe event envelope around `object`, `created` in seconds (default now). */
export function stripeEvent(type: string, object: unknown, created = nowSec()): { id: string; object: "event"; type: string; created: number; api_version: string; livemode: false; data: { object: unknown } } {
	return { id: nextId("evt"), object: "event", type, created, api_version: "2026-10-28.endive", livemode: false, data: { object: structuredClone(object) } };
}

const signer = new Stripe(FAKE_STRIPE_KEY);

/** The exact bytes to POST and their Stripe-Signature header (timestamp in seconds, default now). */
export function signedBody(event: unknown, options: { secret?: string; timestamp?: number } = {}): { body: string; signature: string } {
	const body = JSON.stringify(event, null, 2);
	const signature = signer.webhooks.generateTestHeaderString({ payload: body, secret: options.secret ?? FAKE_WEBHOOK_SECRET, timestamp: options.timestamp });
	return { body, signature };
}
