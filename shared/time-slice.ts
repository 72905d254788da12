/**
 * Cooperative time slicing for long CPU work on the event loop (a recomputation of thousands of
 * manifests, a month's timeline): the loop checks in after each unit of work and yields to other
 * requests once `sliceMs` of work has run since the last yield. Counting units instead (every 50
 * manifests) bounded nothing when a unit turned slow: a cold time-zone cache made 50 manifests
 * take 450 ms, all of it one stall.
 */
import { performance } from "node:perf_hooks";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";

/** Work runs this long at most before other requests get their turn. */
export const SLICE_MS = 10;

export class TimeSlice {
	private since: number;

	constructor(
		private readonly sliceMs = SLICE_MS,
		/** The clock (tests pass a controllable one). */
		private readonly now: () => number = () => performance.now()
	) {
		this.since = now();
	}

	/** Yields to the event loop when this slice has run its time; call it between units of work. */
	async checkIn(): Promise<void> {
		if (this.now() - this.since < this.sliceMs) return;
		await yieldToEventLoop();
		this.since = this.now();
	}
}
