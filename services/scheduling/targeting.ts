/**
 * Schedules indexed by target, so a display's manifest looks only at the schedules that can
 * reach it, never at every schedule of the tenant.
 *
 * A schedule stores `targetKeys`: one key per display id, group id and tag it names. A display
 * has keys for its own id, its groups and its tags; the schedules that may target it are those
 * sharing a key (one `$in` query on an indexed array field, or the in-memory index below for
 * bulk recomputation). Exclusions are left to the engine, which reports them as "excluded".
 */
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
