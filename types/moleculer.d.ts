/**
 * Fields Marquee adds to Moleculer action schemas, declared once by module augmentation
 * (moleculer 0.15's typings have no index signatures). `rest` comes from moleculer-web's typings.
 */
import type { Service, ServiceSettingSchema } from "moleculer";
import type { Permission } from "../shared/rbac";

/** A durable channel subscription (@moleculer/channels). */
interface ChannelSchema<TThis> {
	group?: string;
	maxInFlight?: number;
	maxRetries?: number;
	handler(this: TThis, payload: unknown, raw?: unknown): Promise<void> | void;
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
		channels?: Record<string, ChannelSchema<TThis> | ((this: TThis, payload: unknown) => Promise<void> | void)>;
	}

	interface ActionSchema {
		/** Who may call it through the gateway: a key of the RBAC table in shared/rbac.ts. */
		permission?: Permission;
		/** One line for the OpenAPI document. */
		summary?: string;
		/** HTTP status of a successful answer when not 200 (for the OpenAPI document). */
		successStatus?: number;
	}
}
