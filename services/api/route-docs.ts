/**
 * What the OpenAPI document says about each route, collected from moleculer-web's alias table
 * and the registry's action definitions (local or on another node: the INFO packet carries every
 * schema field but the handler). shared/openapi.ts turns the list into the document.
 */
import type { ActionSchema } from "moleculer";
import type { RouteDoc } from "../../shared/openapi";
import { isPermission } from "../../shared/rbac";
import type { GatewayAlias } from "./moleculer-web";

/** The fields of an action definition the document publishes. */
export type PublishedAction = Pick<ActionSchema, "params" | "permission" | "summary" | "successStatus" | "response" | "extraResponses" | "groupedBy">;

/** The registry's action list (`registry.getActionList`) by name; entries without a definition are skipped. */
export function actionsByName(list: ReadonlyArray<{ name: string; action?: PublishedAction }>): Map<string, PublishedAction> {
	const actions = new Map<string, PublishedAction>();
	for (const item of list) if (item.action) actions.set(item.name, item.action);
	return actions;
}

/**
 * Every alias (REST and operations) with its action's params, permission, success status,
 * answer body (`response`: a TypeBox schema, null for none, undefined when not declared) and
 * other answers (`extraResponses`). A function alias declares the same fields itself.
 */
export function routeDocs(aliases: readonly GatewayAlias[], actions: ReadonlyMap<string, PublishedAction>): RouteDoc[] {
	return aliases.map(alias => (alias.action ? actionRouteDoc(alias, alias.action, actions.get(alias.action)) : functionRouteDoc(alias)));
}

/**
 * A function alias: an operations endpoint (no permission), or a REST one that declares its
 * permission itself. Either documents itself: summary, response, extraResponses (and tags).
 */
function functionRouteDoc(alias: GatewayAlias): RouteDoc {
	const declared = {
		summary: typeof alias.summary === "string" ? alias.summary : undefined,
		response: alias.response,
		extraResponses: alias.extraResponses
	};
	if (!isPermission(alias.permission)) return { method: alias.method, path: alias.fullPath, permission: null, tags: ["operations"], ...declared };
	return {
		method: alias.method,
		path: alias.fullPath,
		...declared,
		permission: alias.permission === "public" ? null : alias.permission,
		tags: Array.isArray(alias.tags) ? alias.tags.filter((t): t is string => typeof t === "string") : undefined
	};
}

function actionRouteDoc(alias: GatewayAlias, name: string, action: PublishedAction | undefined): RouteDoc {
	return {
		method: alias.method,
		path: alias.fullPath,
		action: name,
		summary: action?.summary,
		permission: isPermission(action?.permission) && action.permission !== "public" ? action.permission : null,
		params: action?.params,
		tags: [name.split(".")[0]],
		successStatus: action?.successStatus,
		response: action?.response,
		extraResponses: action?.extraResponses,
		aliasType: alias.type === "multipart" || alias.type === "stream" ? alias.type : "call"
	};
}
