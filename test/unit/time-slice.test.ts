/**
 * shared/time-slice.ts: work checks in between units and yields to the event loop only once its
 * slice has run out, so other requests get their turn however slow one unit is (a controllable
 * clock stands for the work's duration).
 */
import { TimeSlice } from "../../shared/time-slice";

describe("TimeSlice", () => {
	it("yields once a slice has run its time, however few units that took", async () => {
		let now = 0;
		const slice = new TimeSlice(10, () => now);
		let waiting = 0;
		setImmediate(() => waiting++);
		now += 9;
		await slice.checkIn();
		expect(waiting).toBe(0);
		now += 1;
		await slice.checkIn();
		expect(waiting).toBe(1);
	});

	it("never yields within a slice, however many units run", async () => {
		const slice = new TimeSlice(10, () => 5);
		let ran = false;
		setImmediate(() => (ran = true));
		for (let i = 0; i < 10_000; i++) await slice.checkIn();
		expect(ran).toBe(false);
	});
});
