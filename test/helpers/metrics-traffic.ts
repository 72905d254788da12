/**
 * A started platform after the traffic that leaves every operator metric behind (shared/
 * ops-metrics.ts), for test/e2e/metrics.test.ts (values) and test/integration/grafana.test.ts
 * (the operations dashboard names only metrics a real scrape has). What it does, by hand, so the
 * tests can write the values they expect:
 *
 *   - one tenant on the free plan, one display paired, 3 heartbeats (ms apart);
 *   - one PNG upload (its size is `pngBytes`);
 *   - 2 plays posted by the screen;
 *   - the display's timezone changed once: one manifest recomputation;
 *   - two webhook endpoints sent a test event: one answers 500 then 200 (retrying, then
 *     succeeded), the other 410 (failed);
 *   - a failed sign-in and an unknown route (request errors);
 * then waits until the background work is done: the sweep published the display online, the
 * recomputation, both deliveries and the plays are counted, the outbox and the batches are empty.
 */
import type { ServiceSchema } from "moleculer";
import sharp from "sharp";
import DevicesService from "../../services/devices.service";
import { bearer, mailSettled, newAccount, pairDisplay, register, someClient, startTestPlatform, type Platform, type Session } from "./accounts";
import { request } from "./platform";
import { WebhookReceiver } from "./webhook-receiver";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/**
 * The presence sweep every second (the default is longer), so the online gauge is published soon;
 * not faster: a gauge its leader has not published for three intervals is withdrawn, and a stall
 * of a loaded machine must not withdraw it between the settle loop and the tests' scrape.
 */
const FastDevices = { ...DevicesService, settings: { ...DevicesService.settings, sweepIntervalMs: 1000 } } as ServiceSchema;

export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

/** The samples of a Prometheus text (label values unescaped enough for the values the tests compare). */
export function samplesOf(text: string): Sample[] {
	const out: Sample[] = [];
	for (const line of text.split("\n")) {
		const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		if (!match) continue;
		const labels: Record<string, string> = {};
		for (const [, key, raw] of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key] = raw.replace(/\\(.)/g, "$1");
		out.push({ name: match[1], labels, value: match[3] === "+Inf" ? Infinity : Number(match[3]) });
	}
	return out;
}

/** The value of the one sample named `name` whose labels include `labels` (undefined: none; throws: several). */
export function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
	const found = samplesOf(text).filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
	if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
	return found[0]?.value;
}

export interface Traffic {
	p: Platform;
	admin: Session;
	displayId: string;
	pngBytes: number;
	scrape(): Promise<string>;
	stop(): Promise<void>;
}

export async function platformAfterTraffic(): Promise<Traffic> {
	const p = await startTestPlatform(
		{ WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_RETRY_SCHEDULE: "50ms", NOTIFICATIONS_POLL_MS: "20", ANALYTICS_BATCH_MS: "50" },
		[FastDevices]
	);
	const receivers: WebhookReceiver[] = [];
	const scrape = async () => (await request(`${p.url}/metrics`)).text;
	try {
		const admin = await register(p, newAccount("metrics"));
		const as = bearer(admin.accessToken);
		const { display, token } = await pairDisplay(p, admin);

		for (let i = 0; i < 3; i++) {
			const beat = await request(p.api("/device/heartbeat"), { method: "POST", headers: bearer(token), json: { metrics: { cpu: 10 + i } } });
			if (beat.status !== 200) throw new Error(`heartbeat answered ${beat.status}: ${beat.text}`);
			// Health rows are keyed by display and time: distinct milliseconds, three rows.
			await sleep(5);
		}

		const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: "#c00" } }).png().toBuffer();
		const form = new FormData();
		form.append("file", new Blob([new Uint8Array(png)], { type: "image/png" }), "red.png");
		const uploaded = await request<{ id: string }>(p.api("/content"), { method: "POST", headers: as, body: form });
		if (uploaded.status !== 201) throw new Error(`upload answered ${uploaded.status}: ${uploaded.text}`);

		const startedAt = new Date(Date.now() - 60_000).toISOString();
		const plays = [0, 1].map(i => ({ eventId: `metrics-${i}`, contentId: uploaded.body.id, startedAt, durationMs: 10_000, completed: true }));
		const posted = await request(p.api("/device/playback"), { method: "POST", headers: bearer(token), json: { events: plays } });
		if (posted.status !== 202) throw new Error(`playback answered ${posted.status}: ${posted.text}`);

		const patched = await request(p.api(`/displays/${display.id}`), { method: "PATCH", headers: as, json: { timezone: "Europe/Paris" } });
		if (patched.status !== 200) throw new Error(`display update answered ${patched.status}: ${patched.text}`);

		const flaky = await WebhookReceiver.start();
		const gone = await WebhookReceiver.start();
		receivers.push(flaky, gone);
		flaky.reply({ status: 500 });
		gone.otherwise({ status: 410 });
		for (const receiver of receivers) {
			// An event type nothing in this traffic publishes: only the test event is delivered.
			const endpoint = await request<{ id: string }>(p.api("/webhooks"), { method: "POST", headers: as, json: { url: receiver.url, events: ["payment.failed"] } });
			if (endpoint.status !== 201) throw new Error(`webhook creation answered ${endpoint.status}: ${endpoint.text}`);
			const sent = await request(p.api(`/webhooks/${endpoint.body.id}/test`), { method: "POST", headers: as });
			if (sent.status >= 300) throw new Error(`webhook test answered ${sent.status}: ${sent.text}`);
		}

		const wrong = await request(p.api("/auth/login"), { method: "POST", json: { email: admin.user.email, password: "not-the-password-1A!" }, headers: someClient() });
		if (wrong.status !== 401) throw new Error(`wrong sign-in answered ${wrong.status}`);
		if ((await request(p.api("/no-such-route"))).status !== 404) throw new Error("an unknown route did not answer 404");

		await mailSettled(p);
		const settled = (text: string) =>
			valueOf(text, "marquee_displays_online", { plan: "free" }) === 1 &&
			valueOf(text, "marquee_manifest_recompute_lag_seconds_count") === 1 &&
			valueOf(text, "marquee_webhook_deliveries_total", { outcome: "succeeded" }) === 1 &&
			valueOf(text, "marquee_webhook_deliveries_total", { outcome: "failed" }) === 1 &&
			valueOf(text, "marquee_analytics_ingest_lag_seconds_count", { table: "playback_events" }) === 2 &&
			valueOf(text, "marquee_analytics_ingest_lag_seconds_count", { table: "device_health" }) === 3 &&
			valueOf(text, "marquee_email_outbox_depth") === 0 &&
			samplesOf(text).filter(s => s.name === "marquee_analytics_buffer_rows").every(s => s.value === 0);
		let text = "";
		for (let i = 0; i < 300 && !settled(text); i++) {
			await sleep(50);
			text = await scrape();
		}
		if (!settled(text)) throw new Error(`the traffic's metrics did not settle:\n${text.split("\n").filter(l => l.startsWith("marquee_")).join("\n")}`);

		return { p, admin, displayId: display.id, pngBytes: png.length, scrape, stop: () => p.stop() };
	} catch (err) {
		await p.stop();
		throw err;
	} finally {
		await Promise.all(receivers.map(r => r.close()));
	}
}
