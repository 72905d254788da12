/**
 * The operator metrics' building blocks, without a platform: shared/ops-metrics.ts (registering
 * once, counters starting at 0 for their known labels, the leader-published gauge that withdraws
 * itself, bounded label values), and the hooks the services feed them from — the analytics
 * batcher's buffered rows and per-row lag, the recompute queue's outcome and lag, the email
 * outbox's depth after a round of its worker. Clocks are injected; nothing waits on real time
 * except the outbox's one NeDB round.
 */
import { ServiceBroker, type Service, type ServiceSchema } from "moleculer";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { Batcher } from "../../services/analytics/batcher";
import type { Mailer, OutgoingMail, SentMail } from "../../services/notifications/mailer";
import { COLLECTIONS } from "../../services/notifications/documents";
import { EmailOutbox } from "../../services/notifications/outbox";
import { RecomputeQueue, type Settled } from "../../services/scheduling/recompute-queue";
import { prometheusText } from "../../shared/metrics";
import { boundedLabel, LeaderGauge, opsCounter, opsGauge, opsHistogram, OPS_METRICS } from "../../shared/ops-metrics";
import { startBroker, type TestBroker } from "../helpers/platform";

/** The sample lines of `name` (exactly that family name, or its _bucket/_sum/_count), without the namespace label. */
function lines(b: TestBroker, name: string): string[] {
	const text = prometheusText(b.broker.metrics) ?? "";
	return text
		.split("\n")
		.filter(l => new RegExp(`^${name}(_bucket|_sum|_count)?[{ ]`).test(l))
		.map(l => l.replace(/namespace="[^"]*",?/, "").replace("{}", ""));
}

describe("ops metrics on a broker's registry", () => {
	let b: TestBroker;

	beforeAll(async () => {
		b = await startBroker([]);
	});
	afterAll(() => b.stop());

	it("starts a counter's known label values at 0, and one without labels at 0", () => {
		const deliveries = opsCounter(b.broker.metrics, OPS_METRICS.webhookDeliveries);
		opsCounter(b.broker.metrics, OPS_METRICS.heartbeats);
		expect(lines(b, "marquee_webhook_deliveries_total")).toEqual([
			'marquee_webhook_deliveries_total{outcome="succeeded"} 0',
			'marquee_webhook_deliveries_total{outcome="retrying"} 0',
			'marquee_webhook_deliveries_total{outcome="failed"} 0'
		]);
		expect(lines(b, "marquee_heartbeats_total")).toEqual(["marquee_heartbeats_total 0"]);
		deliveries.increment({ outcome: "failed" });
		deliveries.increment({ outcome: "failed" }, 2);
		expect(lines(b, "marquee_webhook_deliveries_total")[2]).toBe('marquee_webhook_deliveries_total{outcome="failed"} 3');
	});

	it("shares a metric registered twice in one process instead of starting it over", () => {
		const first = opsCounter(b.broker.metrics, OPS_METRICS.uploadBytes);
		first.increment({ type: "image" }, 100);
		const second = opsCounter(b.broker.metrics, OPS_METRICS.uploadBytes);
		second.increment({ type: "image" }, 20);
		expect(lines(b, "marquee_upload_bytes_total")).toEqual(['marquee_upload_bytes_total{type="image"} 120', 'marquee_upload_bytes_total{type="video"} 0']);
	});

	it("gives a histogram its buckets (in order) and no sliding-window families", () => {
		const lag = opsHistogram(b.broker.metrics, OPS_METRICS.manifestRecomputeLag);
		lag.observe(0.2);
		lag.observe(3);
		const got = lines(b, "marquee_manifest_recompute_lag_seconds");
		expect(got.slice(0, 4)).toEqual([
			'marquee_manifest_recompute_lag_seconds_bucket{le="0.05"} 0',
			'marquee_manifest_recompute_lag_seconds_bucket{le="0.1"} 0',
			'marquee_manifest_recompute_lag_seconds_bucket{le="0.25"} 1',
			'marquee_manifest_recompute_lag_seconds_bucket{le="0.5"} 1'
		]);
		expect(got.slice(-3)).toEqual(['marquee_manifest_recompute_lag_seconds_bucket{le="+Inf"} 2', "marquee_manifest_recompute_lag_seconds_sum 3.2", "marquee_manifest_recompute_lag_seconds_count 2"]);
		expect(prometheusText(b.broker.metrics)).not.toMatch(/^marquee_manifest_recompute_lag_seconds_(quantiles|max|mean)/m);
	});

	it("does nothing (and does not throw) on a broker without metrics", async () => {
		const bare = new ServiceBroker({ logger: false });
		await bare.start();
		try {
			opsCounter(bare.metrics, OPS_METRICS.heartbeats).increment();
			opsGauge(bare.metrics, OPS_METRICS.emailOutboxDepth).set(3);
			opsHistogram(bare.metrics, OPS_METRICS.manifestRecomputeLag).observe(1);
			expect(bare.metrics.hasMetric(OPS_METRICS.heartbeats.name)).toBe(false);
		} finally {
			await bare.stop();
		}
	});
});

describe("LeaderGauge", () => {
	let b: TestBroker;

	beforeAll(async () => {
		b = await startBroker([]);
	});
	afterAll(() => b.stop());
	afterEach(() => jest.useRealTimers());

	it("publishes every plan it has seen, a plan gone dark at 0, and withdraws itself once it stops publishing", () => {
		jest.useFakeTimers();
		const online = new LeaderGauge(opsGauge(b.broker.metrics, OPS_METRICS.displaysOnline), "plan", 30_000);
		online.publish(new Map([["free", 3], ["pro", 2]]));
		expect(lines(b, "marquee_displays_online")).toEqual(['marquee_displays_online{plan="free"} 3', 'marquee_displays_online{plan="pro"} 2']);
		jest.advanceTimersByTime(10_000);
		online.publish(new Map([["free", 4]]));
		expect(lines(b, "marquee_displays_online")).toEqual(['marquee_displays_online{plan="free"} 4', 'marquee_displays_online{plan="pro"} 0']);
		// Each publish restarts the clock: 29 s after the last one it is still this node's to say.
		jest.advanceTimersByTime(29_000);
		expect(lines(b, "marquee_displays_online")).toHaveLength(2);
		// Then no sweep for 30 s (the lock went elsewhere): no frozen count next to the new leader's.
		jest.advanceTimersByTime(1_000);
		expect(lines(b, "marquee_displays_online")).toEqual([]);
		online.publish(new Map([["pro", 1]]));
		expect(lines(b, "marquee_displays_online")).toEqual(['marquee_displays_online{plan="pro"} 1']);
		online.withdraw();
		expect(lines(b, "marquee_displays_online")).toEqual([]);
	});

	it("adds label values past its limit up under other", () => {
		const gauge = new LeaderGauge(opsGauge(b.broker.metrics, OPS_METRICS.displaysOnline), "plan", 30_000, 2);
		gauge.publish(new Map([["free", 1], ["pro", 2], ["gold", 3], ["platinum", 4]]));
		expect(lines(b, "marquee_displays_online")).toEqual(['marquee_displays_online{plan="free"} 1', 'marquee_displays_online{plan="pro"} 2', 'marquee_displays_online{plan="other"} 7']);
		gauge.withdraw();
	});

	it.each([
		["free", "free"],
		["pro-2025", "pro-2025"],
		["", "other"],
		[null, "other"],
		["a plan with spaces", "other"],
		["x".repeat(33), "other"],
		['quote"d', "other"]
	])("bounds label value %p to %p", (value, expected) => {
		expect(boundedLabel(value)).toBe(expected);
	});
});

describe("the services' hooks", () => {
	it("analytics batcher: reports the rows it holds and each stored row's lag, from its own stamp or its arrival", async () => {
		let clock = 1_000_000;
		const buffered: number[] = [];
		const lags: number[][] = [];
		let release!: () => void;
		const gate = new Promise<void>(resolve => (release = resolve));
		const batcher = new Batcher<{ id: string; at?: number }>({
			name: "t",
			write: () => gate,
			keyOf: r => r.id,
			maxRows: 100,
			maxDelayMs: 10_000,
			now: () => clock,
			onBuffered: rows => buffered.push(rows),
			onWritten: l => lags.push([...l])
		});
		const stamped = new Batcher<{ id: string; at: number }>({
			name: "s",
			write: async () => undefined,
			keyOf: r => r.id,
			acceptedAt: r => r.at,
			maxRows: 100,
			maxDelayMs: 10_000,
			now: () => clock,
			onWritten: l => lags.push([...l])
		});

		const first = batcher.add([{ id: "a" }, { id: "b" }]);
		clock += 300;
		const second = batcher.add([{ id: "c" }, { id: "a" }]);
		expect(buffered).toEqual([2, 3]);
		const flushed = batcher.flush();
		clock += 200;
		release();
		await Promise.all([first, second, flushed]);
		expect(buffered).toEqual([2, 3, 0]);
		// a arrived again at +300 (the redelivery replaced it), b at 0, c at +300; stored at +500.
		expect(lags).toEqual([[200, 500, 200]]);

		// A stamp in the future (another node's clock ahead) counts as no lag.
		await Promise.all([stamped.add([{ id: "x", at: clock - 4_000 }, { id: "y", at: clock + 50 }]), stamped.flush()]);
		expect(lags[1]).toEqual([4_000, 0]);
		await Promise.all([batcher.stop(), stamped.stop()]);
	});

	it("recompute queue: tells each job's outcome and the time since it was queued, the wait behind earlier jobs included", async () => {
		let clock = 0;
		const settled: Settled[] = [];
		const queue = new RecomputeQueue(() => undefined, s => settled.push(s), () => clock);
		let release!: () => void;
		const gate = new Promise<void>(resolve => (release = resolve));
		queue.enqueue("t1", () => gate);
		clock = 100;
		queue.enqueue("t1", async () => {
			throw new Error("boom");
		});
		clock = 250;
		release();
		await queue.idle();
		expect(settled).toEqual([
			{ key: "t1", ok: true, lagMs: 250 },
			{ key: "t1", ok: false, lagMs: 150 }
		]);
	});

	it("recompute queue: a throwing listener does not stop the tenant's queue", async () => {
		const ran: string[] = [];
		const queue = new RecomputeQueue(
			() => undefined,
			() => {
				throw new Error("metrics down");
			}
		);
		queue.enqueue("t1", async () => void ran.push("first"));
		queue.enqueue("t1", async () => void ran.push("second"));
		await queue.idle();
		expect(ran).toEqual(["first", "second"]);
	});

	describe("email outbox depth", () => {
		const OUTBOX = { email_outbox: COLLECTIONS.email_outbox };
		const Holder: ServiceSchema = { name: "outbox-holder", mixins: [DbMixin(OUTBOX)] };
		let b: TestBroker;

		beforeAll(async () => {
			b = await startBroker([Holder], { NOTIFICATIONS_POLL_MS: "1000" });
		});
		afterAll(() => b.stop());

		it("counts the emails not sent yet after each round: queued ones, then none once they left", async () => {
			const db = (b.broker.getLocalService("outbox-holder") as Service & DbVars<typeof OUTBOX>).db;
			let up = false;
			const sent: OutgoingMail[] = [];
			const mailer: Mailer = {
				kind: "smtp",
				description: "test",
				send: async (mail: OutgoingMail): Promise<SentMail> => {
					if (!up) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNECTION" });
					sent.push(mail);
					return { messageId: `<${sent.length}@test>` };
				},
				close: () => undefined
			};
			const depths: number[] = [];
			const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
			const outbox = new EmailOutbox({ emails: db.email_outbox, config: b.config, owner: "w1", mailer: () => mailer, logger: quiet, onDepth: n => depths.push(n) });
			for (const id of ["m1", "m2"]) await outbox.enqueue({ id, tenantId: "t-1", to: "ada@example.com", template: "verify", data: { name: "Ada", url: "https://cms.example.com/verify-email?token=x" } });
			// The server is down: both stay queued for a retry.
			await outbox.tick();
			expect(depths.at(-1)).toBe(2);
			up = true;
			await db.email_outbox.updateWhere({}, { nextAttemptAt: new Date(0).toISOString() });
			await outbox.tick();
			expect(sent).toHaveLength(2);
			expect(depths.at(-1)).toBe(0);
		});
	});
});
