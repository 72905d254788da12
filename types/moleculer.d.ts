/**
 * Fields Marquee adds to Moleculer action schemas, declared once by module augmentation
 * (moleculer 0.15's typings have no index signatures). `rest` comes from moleculer-web's typings.
 */
import type { Context, Service, ServiceSettingSchema } from "moleculer";
import type { Permission } from "../shared/rbac";

/**
 * A durable channel subscription (@moleculer/channels). The middleware runs with `context: true`,
 * so a handler gets a Context whose `params` is the message (and whose meta and request id are
 * the sender's).
 */
interface ChannelSchema<TThis> {
	group?: string;
	maxInFlight?: number;
	maxRetries?: number;
	handler(this: TThis, ctx: Context<unknown>, raw?: unknown): Promise<void> | void;
}

declare module "moleculer" {
	// Same type parameters as moleculer's declaration, or the interfaces do not merge.
	interface ServiceSchema<
		TSettings = ServiceSettingSchema,
		TMethods = Record<string, unknown>,
		TVars = Record<string, unknown>,
		TThis = Service<TSettings> & TVars & TMethods
	> {
		/** Durable channels this service consumes, by channel name. */
		channels?: Record<string, ChannelSchema<TThis>>;
	}

	interface ActionSchema {
		/** Who may call it through the gateway: a key of the RBAC table in shared/rbac.ts. */
		permission?: Permission;
		/** One line for the OpenAPI document. */
		summary?: string;
		/** HTTP status of a successful answer when not 200 (for the OpenAPI document). */
		successStatus?: number;
		/** Call timeout in ms (0 = none); read by Moleculer's timeout middleware, missing from its typings. */
		timeout?: number;
	}
}
