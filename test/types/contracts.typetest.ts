/**
 * Compile-time tests of shared/contracts: `npm run typecheck` (tsc) fails when a line marked
 * `@ts-expect-error` compiles, i.e. when the contracts stop catching a misspelt action, event or
 * channel name or a wrong payload field. Nothing here runs; jest does not load this file.
 */
import type { Context, ServiceBroker } from "moleculer";
import { AUDIT_CHANNEL, TENANT_DELETED_CHANNEL } from "../../shared/channels";
import { broadcast, call, emit, sendToChannel, type Result } from "../../shared/contracts";

export async function contractsCatchMistakes(ctx: Context, broker: ServiceBroker): Promise<void> {
	// The right names and payloads compile, and answers are typed.
	const tenant = await call(ctx, "tenants.find", { tenantId: "t1" });
	const name: string | undefined = tenant?.name;
	const exists: boolean = await call(broker, "scheduling.playlistExists", { id: "p1" });
	const answer: Result<"auth.mintDeviceToken"> = await call(ctx, "auth.mintDeviceToken", { tenantId: "t1", displayId: "d1" });
	await emit(ctx, "devices.display.paired", { tenantId: "t1", displayId: "d1" });
	await broadcast(ctx, "media.content.deleted", { tenantId: "t1", contentId: "c1" });
	await sendToChannel(broker, TENANT_DELETED_CHANNEL, { tenantId: "t1", soleMemberUserIds: [] });
	void [name, exists, answer];

	// A misspelt action name.
	// @ts-expect-error "tenants.fnd" is no action of the contracts
	await call(ctx, "tenants.fnd", { tenantId: "t1" });
	// A wrong params field.
	// @ts-expect-error tenants.find takes tenantId, not id
	await call(ctx, "tenants.find", { id: "t1" });
	// A missing params field.
	// @ts-expect-error auth.mintDeviceToken needs displayId
	await call(ctx, "auth.mintDeviceToken", { tenantId: "t1" });
	// A wrongly typed params field.
	// @ts-expect-error auth.usersByIds takes a list of ids
	await call(ctx, "auth.usersByIds", { ids: "u1" });
	// Using the answer as something it is not.
	// @ts-expect-error scheduling.playlistExists answers a boolean
	const notAString: string = await call(ctx, "scheduling.playlistExists", { id: "p1" });
	void notAString;

	// @ts-expect-error "devices.display.pared" is no event of the contracts
	await emit(ctx, "devices.display.pared", { tenantId: "t1", displayId: "d1" });
	// @ts-expect-error media.content.deleted carries contentId, not id
	await broadcast(ctx, "media.content.deleted", { tenantId: "t1", id: "c1" });

	// @ts-expect-error "audit.recorded" is no channel
	await sendToChannel(broker, "audit.recorded", {});
	// @ts-expect-error an audit record needs its actor, action, ...
	await sendToChannel(broker, AUDIT_CHANNEL, { tenantId: "t1" });
}
