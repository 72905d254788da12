/**
 * The engine's zone offsets (services/scheduling/engine.ts, Clock): known per UTC day, with a
 * day's single transition found to the millisecond. Checked against luxon's own answer — at every
 * transition of 2000–2040 (the instant before, at and after it) in zones with unusual rules, and
 * at 20 000 random instants.
 */
import fc from "fast-check";
import { IANAZone } from "luxon";
import { zoneOffsetMs } from "../../services/scheduling/engine";

const ZONES = [
	"Europe/Berlin",
	"America/New_York",
	"Australia/Lord_Howe", // 30-minute DST
	"Pacific/Chatham", // +12:45 / +13:45
	"Africa/Casablanca", // DST suspended for Ramadan: transitions weeks apart
	"America/Santiago",
	"Asia/Tehran",
	"Europe/Dublin", // negative DST in tzdata
	"Antarctica/Troll", // two-hour DST
	"Pacific/Apia", // skipped 30 December 2011
	"Europe/Moscow", // permanent changes in 2011 and 2014
	"Asia/Kolkata",
	"UTC"
];
const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const luxon = (zone: string, t: number) => IANAZone.create(zone).offset(t) * MIN;

describe("zone offsets", () => {
	it("agree with luxon around every transition of 2000–2040 in zones with unusual rules", () => {
		let transitions = 0;
		for (const zone of ZONES) {
			const start = Date.UTC(2000, 0, 1);
			const end = Date.UTC(2040, 0, 1);
			for (let t = start; t < end; t += DAY) {
				if (luxon(zone, t) === luxon(zone, t + DAY)) continue;
				// Find luxon's transition in this day, to the millisecond.
				let lo = t;
				let hi = t + DAY;
				while (hi - lo > 1) {
					const mid = Math.floor((lo + hi) / 2);
					if (luxon(zone, mid) === luxon(zone, t)) lo = mid;
					else hi = mid;
				}
				transitions++;
				for (const at of [hi - 1, hi, hi + 1, t, t + DAY - 1]) expect([zone, at, zoneOffsetMs(zone, at)]).toEqual([zone, at, luxon(zone, at)]);
			}
		}
		// Hundreds, or the loop above checked nothing.
		expect(transitions).toBeGreaterThan(400);
	});

	it("agree with luxon at 20 000 random instants of 1970–2100", () => {
		fc.assert(
			fc.property(fc.constantFrom(...ZONES), fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) }), (zone, t) => {
				expect(zoneOffsetMs(zone, t)).toBe(luxon(zone, t));
			}),
			{ numRuns: 20_000, seed: 2026 }
		);
	});
});
