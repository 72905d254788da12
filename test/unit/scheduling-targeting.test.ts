/**
 * services/scheduling/targeting.ts, the invalidation side: targets as stored, and the selectors
 * naming the displays a change can reach.
 */
import { cleanTargets, hasTargets, mergeSelectors, namingGone, selectorOf, targetFields, usersSelector, withoutGone } from "../../services/scheduling/targeting";

describe("targets as stored", () => {
	it("every list present; none stays null", () => {
		expect(cleanTargets({ tags: ["a"] })).toEqual({ displayIds: [], groupIds: [], tags: ["a"] });
		expect(cleanTargets(null)).toBeNull();
		expect(cleanTargets(undefined)).toBeNull();
	});

	it("targets name something only with a display, group or tag", () => {
		expect(hasTargets({ displayIds: [], groupIds: [], tags: [] })).toBe(false);
		expect(hasTargets(null)).toBe(false);
		expect(hasTargets({ groupIds: ["g"] })).toBe(true);
	});

	it("a schedule stores its lists and their index keys", () => {
		expect(targetFields({ displayIds: ["d"], tags: ["t"] })).toEqual({ targets: { displayIds: ["d"], groupIds: [], tags: ["t"] }, targetKeys: ["d:d", "t:t"] });
	});
});

describe("selectors", () => {
	it("no targets (an override's) select every display", () => {
		expect(selectorOf(null)).toEqual({ all: true });
		expect(selectorOf({ tags: ["a"] })).toEqual({ displayIds: [], groupIds: [], tags: ["a"] });
	});

	it("merging: the union of each list, each id once; every display wins over any list", () => {
		expect(mergeSelectors({ displayIds: ["a", "b"] }, { displayIds: ["b"], tags: ["t"] }, { defaultPlaylistIds: ["p"] })).toEqual({
			displayIds: ["a", "b"],
			groupIds: [],
			tags: ["t"],
			defaultPlaylistIds: ["p"],
			defaultLayoutIds: []
		});
		expect(mergeSelectors({ displayIds: ["a"] }, { all: true })).toEqual({ all: true });
	});

	it("a playlist reaches the displays defaulting to it and those its schedules and overrides target", () => {
		const schedules = [{ targets: { displayIds: ["d1"], groupIds: [], tags: [] } }, { targets: { displayIds: [], groupIds: ["g1"], tags: [] } }];
		expect(usersSelector({ defaultPlaylistIds: ["p1"] }, schedules, [])).toEqual({ displayIds: ["d1"], groupIds: ["g1"], tags: [], defaultPlaylistIds: ["p1"], defaultLayoutIds: [] });
		expect(usersSelector({ defaultPlaylistIds: ["p1"] }, schedules, [{ targets: null }])).toEqual({ all: true });
	});
});

describe("a deleted display or group leaves the rules naming it", () => {
	const rule = { targets: { displayIds: ["d1", "d2"], groupIds: ["g1"], tags: ["lobby"] }, excludeDisplayIds: ["d2", "d3"] };

	it("a display goes from the targets, their keys and the exclusions", () => {
		expect(withoutGone(rule, { displayId: "d2" }, true)).toEqual({
			targets: { displayIds: ["d1"], groupIds: ["g1"], tags: ["lobby"] },
			excludeDisplayIds: ["d3"],
			targetKeys: ["d:d1", "g:g1", "t:lobby"]
		});
	});

	it("a group goes from the targets; an override's null targets (every display) stay null, without keys", () => {
		expect(withoutGone(rule, { groupId: "g1" }, false)).toEqual({ targets: { displayIds: ["d1", "d2"], groupIds: [], tags: ["lobby"] }, excludeDisplayIds: ["d2", "d3"] });
		expect(withoutGone({ targets: null, excludeDisplayIds: ["d2"] }, { displayId: "d2" }, false)).toEqual({ targets: null, excludeDisplayIds: [] });
	});

	it("the rules to rewrite are found by their keys (schedules) or their targets (overrides), and by exclusions", () => {
		expect(namingGone({ displayId: "d2" }, true)).toEqual({ $or: [{ targetKeys: "d:d2" }, { excludeDisplayIds: "d2" }] });
		expect(namingGone({ displayId: "d2" }, false)).toEqual({ $or: [{ "targets.displayIds": "d2" }, { excludeDisplayIds: "d2" }] });
		expect(namingGone({ groupId: "g1" }, true)).toEqual({ targetKeys: "g:g1" });
	});
});
