/**
 * shared/contracts at run time: the typed call/emit/broadcast/sendToChannel reach the real
 * broker with the caller's context (meta travels), and publishing on a durable channel without
 * the channels middleware says so instead of failing on an undefined function. What they refuse
 * at compile time is in test/types/contracts.typetest.ts.
 */
import { ServiceBroker, type Context, type ServiceSchema } from "moleculer";
import { EMAIL_CHANNEL, TENANT_DELETED_CHANNEL } from "../../shared/channels";
import { broadcast, call, emit, sendToChannel, type ActionCtx, type ChannelCtx, type EventCtx, type TenantDeleted } from "../../shared/contracts";
import { Errors } from "../../shared/errors";
import { startBroker, type TestBroker } from "../helpers/platform";
import { until } from "../helpers/until";

describe("typed contracts over a real broker", () => {
	let tb: TestBroker;
	const seen: { events: string[]; deletions: TenantDeleted[]; metaTenant: unknown[]; emails: string[] } = { events: [], deletions: [], metaTenant: [], emails: [] };

	// A stand-in of the tenants service answering one contract action, and listeners of one event and one channel.
	const Tenants: ServiceSchema = {
		name: "tenants",
		actions: {
			find: {
				handler(ctx: ActionCtx<"tenants.find", { marker?: string }>) {
					seen.metaTenant.push(ctx.meta.marker);
					return { id: ctx.params.tenantId, name: "Café Ünïcode", slug: "cafe", plan: "free", createdAt: "2026-11-30T00:00:00.000Z", settings: { timezone: "UTC", offlineAlertMinutes: 10, offlineAfterSec: 90 } };
				}
			},
			// Answers a deliberate 503, as billing does while payments are not configured.
			notConfigured: {
				handler() {
					throw Errors.unavailable("Payments are not configured on this platform");
				}
			},
			// Calls the contract from inside an action: the caller's context goes along.
			relay: {
				handler(ctx: Context<{ tenantId: string }>) {
					return call(ctx, "tenants.find", { tenantId: ctx.params.tenantId });
				}
			}
		},
		events: {
			"devices.display.paired"(ctx: EventCtx<"devices.display.paired">) {
				seen.events.push(`paired ${ctx.params.displayId}`);
			},
			"media.content.deleted"(ctx: EventCtx<"media.content.deleted">) {
				seen.events.push(`deleted ${ctx.params.contentId}`);
			}
		},
		channels: {
			// A slow consumer: messages wait for it, one at a time.
			[EMAIL_CHANNEL]: {
				group: "contracts-test",
				async handler(ctx: ChannelCtx<typeof EMAIL_CHANNEL>) {
					await new Promise(resolve => setImmediate(resolve));
					seen.emails.push(ctx.params.id);
				}
			},
			[TENANT_DELETED_CHANNEL]: {
				group: "contracts-test",
				handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
					seen.deletions.push(ctx.params);
				}
			}
		}
	};

	beforeAll(async () => {
		tb = await startBroker([Tenants]);
	});
	afterAll(() => tb.stop());

	it("calls an action by its contract name and answers its result, from a context with its meta", async () => {
		const viaBroker = await call(tb.broker, "tenants.find", { tenantId: "t-1" });
		expect(viaBroker).toMatchObject({ id: "t-1", name: "Café Ünïcode" });
		await tb.broker.call("tenants.relay", { tenantId: "t-2" }, { meta: { marker: "from-ctx" } });
		expect(seen.metaTenant).toEqual([undefined, "from-ctx"]);
	});

	it("emits and broadcasts events by their contract names", async () => {
		await emit(tb.broker, "devices.display.paired", { tenantId: "t-1", displayId: "d-1" });
		await broadcast(tb.broker, "media.content.deleted", { tenantId: "t-1", contentId: "c-1" });
		await new Promise(resolve => setImmediate(resolve));
		expect(seen.events).toEqual(["paired d-1", "deleted c-1"]);
	});

	it("publishes on a durable channel", async () => {
		await sendToChannel(tb.broker, TENANT_DELETED_CHANNEL, { tenantId: "t-gone", soleMemberUserIds: ["u-1"] });
		await until("the channel message", () => seen.deletions.length > 0);
		expect(seen.deletions).toEqual([{ tenantId: "t-gone", soleMemberUserIds: ["u-1"] }]);
	});

	it("a burst on a durable channel in the embedded mode keeps every message for a slow consumer (none dropped as 'queue full')", async () => {
		const ids = Array.from({ length: 300 }, (_, i) => `burst-${i}`);
		await Promise.all(ids.map(id => sendToChannel(tb.broker, EMAIL_CHANNEL, { id, tenantId: null, to: "a@example.com", template: "verify", data: { name: "A", url: "https://example.com/v" } })));
		for (let i = 0; i < 500 && seen.emails.length < ids.length; i++) await new Promise(resolve => setTimeout(resolve, 10));
		expect(seen.emails.sort()).toEqual([...ids].sort());
	});

	it("deliberate 503 answers never open the circuit breaker: the 60th call still reaches the action", async () => {
		const answers = [];
		for (let i = 0; i < 60; i++) answers.push(await tb.broker.call("tenants.notConfigured").catch((err: Error & { type?: string }) => err.type ?? err.name));
		expect(new Set(answers)).toEqual(new Set(["SERVICE_UNAVAILABLE"]));
	});

	it("says plainly when a broker has no durable channels", async () => {
		const bare = new ServiceBroker({ logger: false });
		await expect(sendToChannel(bare, TENANT_DELETED_CHANNEL, { tenantId: "t", soleMemberUserIds: [] })).rejects.toThrow(/Durable channels are not set up/);
	});
});
