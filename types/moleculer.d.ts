/**
 * Fields Marquee adds to Moleculer action schemas, declared once by module augmentation
 * (moleculer 0.15's typings have no index signatures). `rest` comes from moleculer-web's typings.
 */
import type { Context, Service, ServiceSettingSchema } from "moleculer";
import type { TSchema } from "@sinclair/typebox";
import type { ResponseDoc } from "../shared/openapi";
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
		/**
		 * HTTP status of a successful answer when not 200. The gateway answers with it and the
		 * OpenAPI document publishes it; a handler sets `ctx.meta.$statusCode` only for a
		 * conditional answer (304, 302).
		 */
		successStatus?: number;
		/**
		 * The body of a successful answer: a TypeBox schema from shared/contracts (the same value
		 * types the handler's result), or null when there is none (204). Published in the OpenAPI
		 * document.
		 */
		response?: TSchema | null;
		/**
		 * Answers the OpenAPI document publishes besides the success body and the shared errors,
		 * by status: conditional ones the handler chooses with `ctx.meta.$statusCode` (304 with
		 * an ETag, 302 with a Location) and errors the route is known for (409, 402, 415). An
		 * entry for the success status adds headers (an ETag) or replaces the JSON body by
		 * another media type (a file's bytes). Documentation only: the gateway does not read it.
		 */
		extraResponses?: Record<number, ResponseDoc>;
		/**
		 * The action that takes many calls of this one at once (shared/group-call.ts): the
		 * gateway's device lane sends this action's calls there, in groups.
		 */
		groupedBy?: string;
		/** Call timeout in ms (0 = none); read by Moleculer's timeout middleware, missing from its typings. */
		timeout?: number;
	}
}
