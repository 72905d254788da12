/**
 * Fields Marquee adds to Moleculer action schemas, declared once by module augmentation
 * (moleculer 0.15's typings have no index signatures). `rest` comes from moleculer-web's typings.
 */
import type { Permission } from "../shared/rbac";

declare module "moleculer" {
	interface ActionSchema {
		/** Who may call it through the gateway: a key of the RBAC table in shared/rbac.ts. */
		permission?: Permission;
		/** One line for the OpenAPI document. */
		summary?: string;
		/** HTTP status of a successful answer when not 200 (for the OpenAPI document). */
		successStatus?: number;
	}
}
