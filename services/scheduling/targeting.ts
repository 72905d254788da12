/**
 * Schedules indexed by target, so a display's manifest looks only at the schedules that can
 * reach it, never at every schedule of the tenant.
 *
 * A schedule stores `targetKeys`: one key per display id, group id and tag it names. A display
 * has keys for its own id, its groups and its tags; the schedules that may target it are those
 * sharing a key (one `$in` query on an indexed array field, or the in-memory index below for
 * bulk recomputation). Exclusions are left to the engine, which reports them as "excluded".
 *
 * Selectors go the other way, for invalidation: which displays a stored change can reach (its old
 * and new targets, the displays defaulting to a playlist, or every display), as
 * `devices.displaysFor` takes them.
 */
import type { DisplaySelector, TargetsView } from "../../shared/contracts";
import type { DisplayTarget, TargetSet } from "./engine";

export function targetKeys(targets: TargetSet | undefined): string[] {
	if (!targets) return [];
	return [
		...(targets.displayIds ?? []).map(id => `d:${id}`),
		...(targets.groupIds ?? []).map(id => `g:${id}`),
		...(targets.tags ?? []).map(tag => `t:${tag}`)
	];
}

export function displayKeys(display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): string[] {
	return targetKeys({ displayIds: [display.id], groupIds: display.groupIds, tags: display.tags });
}

/** In-memory: key → schedules. Built once per bulk recomputation. */
export class ScheduleIndex<T extends { id: string; targets: TargetSet }> {
	private readonly byKey = new Map<string, T[]>();

	constructor(schedules: T[]) {
		for (const schedule of schedules) {
			for (const key of new Set(targetKeys(schedule.targets))) {
				const list = this.byKey.get(key);
				if (list) list.push(schedule);
				else this.byKey.set(key, [schedule]);
			}
		}
	}

	/** The schedules naming the display, its groups or its tags; each once. */
	forDisplay(display: Pick<DisplayTarget, "id" | "groupIds" | "tags">): T[] {
		const found = new Map<string, T>();
		for (const key of displayKeys(display)) {
			for (const schedule of this.byKey.get(key) ?? []) found.set(schedule.id, schedule);
		}
		return [...found.values()];
	}
}

// ---- targets as stored ------------------------------------------------------------------------

/** Targets as stored and answered: every list present. None (an override's) stays null. */
export function cleanTargets(targets: TargetSet): TargetsView;
export function cleanTargets(targets: TargetSet | null | undefined): TargetsView | null;
export function cleanTargets(targets: TargetSet | null | undefined): TargetsView | null {
	if (!targets) return null;
	return { displayIds: targets.displayIds ?? [], groupIds: targets.groupIds ?? [], tags: targets.tags ?? [] };
}

export function hasTargets(targets: TargetSet | null | undefined): boolean {
	return targetKeys(targets ?? undefined).length > 0;
}

/** What a schedule stores of its targets: the lists, and their keys for the target index. */
export function targetFields(targets: TargetSet): { targets: TargetsView; targetKeys: string[] } {
	return { targets: cleanTargets(targets), targetKeys: targetKeys(targets) };
}

/** A deleted display or group, as rules name it: in their targets, and (a display) among their exclusions. */
export type Gone = { displayId: string } | { groupId: string };

/**
 * What a rule stores once a deleted display or group has left it: its targets without it (and
 * their keys, for rules that keep them), its exclusions without it. An empty list targets nothing
 * more; null targets (every display) stay null.
 */
export function withoutGone<T extends { targets: TargetsView | null; excludeDisplayIds: string[] }>(doc: T, gone: Gone, withKeys: boolean) {
	const targets = doc.targets && {
		displayIds: "displayId" in gone ? doc.targets.displayIds.filter(id => id !== gone.displayId) : doc.targets.displayIds,
		groupIds: "groupId" in gone ? doc.targets.groupIds.filter(id => id !== gone.groupId) : doc.targets.groupIds,
		tags: doc.targets.tags
	};
	const excludeDisplayIds = "displayId" in gone ? doc.excludeDisplayIds.filter(id => id !== gone.displayId) : doc.excludeDisplayIds;
	// Null only when it was null: the type of the rule's targets is kept.
	return { targets: targets as T["targets"], excludeDisplayIds, ...(withKeys ? { targetKeys: targetKeys(targets ?? undefined) } : {}) };
}

/** The stored condition of the rules naming a deleted display or group (targets or exclusions). */
export function namingGone(gone: Gone, withKeys: boolean): Record<string, unknown> {
	if ("groupId" in gone) return withKeys ? { targetKeys: `g:${gone.groupId}` } : { "targets.groupIds": gone.groupId };
	const named = withKeys ? { targetKeys: `d:${gone.displayId}` } : { "targets.displayIds": gone.displayId };
	return { $or: [named, { excludeDisplayIds: gone.displayId }] };
}

// ---- selectors --------------------------------------------------------------------------------

/** The displays a schedule's or override's targets reach; none (an override) = every display. */
export function selectorOf(targets: TargetSet | null | undefined): DisplaySelector {
	return cleanTargets(targets) ?? { all: true };
}

/** The union of selectors: every display as soon as one selects every display. */
export function mergeSelectors(...selectors: DisplaySelector[]): DisplaySelector {
	if (selectors.some(s => s.all)) return { all: true };
	const union = (pick: (s: DisplaySelector) => string[] | undefined) => [...new Set(selectors.flatMap(s => pick(s) ?? []))];
	return {
		displayIds: union(s => s.displayIds),
		groupIds: union(s => s.groupIds),
		tags: union(s => s.tags),
		defaultPlaylistIds: union(s => s.defaultPlaylistIds),
		defaultLayoutIds: union(s => s.defaultLayoutIds)
	};
}

/** The displays that playlists or layouts reach: as defaults (`defaults`), and through the schedules and overrides playing them. */
export function usersSelector(
	defaults: Pick<DisplaySelector, "defaultPlaylistIds" | "defaultLayoutIds">,
	schedules: Array<{ targets: TargetSet }>,
	overrides: Array<{ targets: TargetSet | null }>
): DisplaySelector {
	return mergeSelectors(defaults, ...schedules.map(s => selectorOf(s.targets)), ...overrides.map(o => selectorOf(o.targets)));
}
