/**
 * The REST routes this gateway has served, kept when their service goes away. moleculer-web
 * rebuilds its alias table from the services it currently sees, so while a service is down
 * (crashed, restarting, deploying) its routes vanish and a request to one would answer 404, as
 * if the route never existed: a screen could take "the manifest does not exist" for an answer.
 * A request no alias matches is looked up here instead; a route seen before answers 503 (retry
 * later). Routes are remembered for the gateway process's lifetime: one started while a service
 * is down cannot know its routes and still answers 404 for them.
 */
import { pathOf } from "../../shared/request";

/** What an alias of moleculer-web offers for matching (its Alias class). */
export interface MatchableAlias {
	method: string;
	fullPath: string;
	/** The path parameters when `url` (a path without query) matches, else null/false. */
	match?(url: string): unknown;
}

export class RouteMemory {
	private readonly routes = new Map<string, MatchableAlias>();

	/** Remembers the aliases of the current table (call after every regeneration). */
	remember(aliases: readonly MatchableAlias[]): void {
		for (const alias of aliases) if (alias.match) this.routes.set(`${alias.method} ${alias.fullPath}`, alias);
	}

	/** Whether a request with this method and URL went to a route this gateway has served. */
	knows(method: string | undefined, url: string | undefined): boolean {
		const path = pathOf(url, "/");
		const verb = (method ?? "GET").toUpperCase();
		for (const alias of this.routes.values()) {
			if ((alias.method === "*" || alias.method === verb || (verb === "HEAD" && alias.method === "GET")) && alias.match?.(path)) return true;
		}
		return false;
	}

	get size(): number {
		return this.routes.size;
	}
}
