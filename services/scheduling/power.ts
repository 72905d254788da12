/**
 * Screen power schedules as pure functions: when a display's screen should be off.
 *
 * A power schedule is a schedule rule (the same targets, dates, days of the week and daily window
 * in the display's timezone, DST-correct — see engine.ts) that says "off" or "on" instead of
 * naming a playlist. A screen is on unless the best matching power rule (highest priority, then
 * newest) says off; an "on" rule above an "off" one punches a hole in it (open late on New
 * Year's Eve in a shop that is dark every night). A display no power rule reaches has no power
 * schedule at all (null): it is simply always on.
 */
import type { ManifestPower, PowerState } from "../../shared/contracts";
import { resolveUntil, targets, type DisplayTarget, type Resolution, type ScheduleRule } from "./engine";
import { ruleAs, type PowerScheduleDoc } from "./views";

/** A stored power schedule as the engine takes it: its state stands where a playlist would. */
export function powerRuleOf(doc: PowerScheduleDoc): ScheduleRule {
	return ruleAs(doc, { playlistId: doc.state });
}

function stateOf(r: Resolution): PowerState {
	return r.source === "schedule" && r.playlistId === "off" ? "off" : "on";
}

/**
 * The display's screen power at `at` and the instant it next flips (null = never), or null when
 * none of `schedules` (those that can reach the display) targets it.
 */
export function powerAt(display: DisplayTarget, schedules: PowerScheduleDoc[], at: Date, toRule = powerRuleOf): ManifestPower | null {
	const rules = schedules.map(toRule);
	if (!rules.some(rule => targets(rule, display))) return null;
	// Defaults play no part: without a matching rule the screen is on.
	const bare = { ...display, defaultPlaylistId: null, defaultLayoutId: null };
	const { resolution, until } = resolveUntil(bare, rules, [], at, stateOf);
	return { state: stateOf(resolution), until };
}
