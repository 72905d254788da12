/**
 * The batcher behind analytics ingestion: a handler's promise settles only once the store took
 * its rows (the channel acknowledges then), with retries while the store is down. Jest's fake
 * timers are the clock: no test waits for real time.
 */
import { Batcher, BatcherStopped } from "../../services/analytics/batcher";

interface Row {
	id: string;
	v: number;
}

function harness(failures = 0) {
	const writes: Row[][] = [];
	let failing = failures;
	const batcher = new Batcher<Row>({
		name: "test",
		keyOf: r => r.id,
		maxRows: 3,
		maxDelayMs: 1000,
		backoffMs: 100,
		maxBackoffMs: 400,
		write: async rows => {
			if (failing > 0) {
				failing--;
				throw new Error("store down");
			}
			writes.push(rows);
		}
	});
	return { batcher, writes, setFailing: (n: number) => (failing = n) };
}

/** Lets resolved promises run between timer steps. */
const settle = async () => {
	for (let i = 0; i < 10; i++) await Promise.resolve();
};

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe("Batcher", () => {
	it("writes a batch after maxDelayMs, and only then settles its adders", async () => {
		const { batcher, writes } = harness();
		let done = false;
		void batcher.add([{ id: "a", v: 1 }]).then(() => (done = true));
		await jest.advanceTimersByTimeAsync(999);
		expect(writes).toEqual([]);
		expect(done).toBe(false);
		await jest.advanceTimersByTimeAsync(1);
		await settle();
		expect(writes).toEqual([[{ id: "a", v: 1 }]]);
		expect(done).toBe(true);
		expect(batcher.written).toBe(1);
	});

	it("writes at once when maxRows is reached, and rows arriving meanwhile go in the next batch", async () => {
		const { batcher, writes } = harness();
		const first = batcher.add([
			{ id: "a", v: 1 },
			{ id: "b", v: 1 },
			{ id: "c", v: 1 }
		]);
		const second = batcher.add([{ id: "d", v: 1 }]);
		await first;
		expect(writes).toEqual([[{ id: "a", v: 1 }, { id: "b", v: 1 }, { id: "c", v: 1 }]]);
		await jest.advanceTimersByTimeAsync(1000);
		await second;
		expect(writes[1]).toEqual([{ id: "d", v: 1 }]);
	});

	it("keeps one row per key: a redelivered message replaces its rows instead of adding to them", async () => {
		const { batcher, writes } = harness();
		const a = batcher.add([{ id: "x", v: 1 }]);
		const b = batcher.add([{ id: "x", v: 2 }]);
		expect(batcher.buffered).toBe(1);
		await jest.advanceTimersByTimeAsync(1000);
		await Promise.all([a, b]);
		expect(writes).toEqual([[{ id: "x", v: 2 }]]);
	});

	it("retries a failed write with doubling pauses and settles only once the store took it", async () => {
		const { batcher, writes } = harness(3);
		let done = false;
		void batcher.add([{ id: "a", v: 1 }]).then(() => (done = true));
		await jest.advanceTimersByTimeAsync(1000); // first attempt fails
		await jest.advanceTimersByTimeAsync(100); // second fails
		await jest.advanceTimersByTimeAsync(200); // third fails
		expect(done).toBe(false);
		expect(writes).toEqual([]);
		expect(batcher.failures).toBe(3);
		await jest.advanceTimersByTimeAsync(399);
		expect(writes).toEqual([]);
		await jest.advanceTimersByTimeAsync(1);
		await settle();
		expect(writes).toEqual([[{ id: "a", v: 1 }]]);
		expect(done).toBe(true);
	});

	it("on stop, writes what waits; refuses rows after", async () => {
		const { batcher, writes } = harness();
		const pending = batcher.add([{ id: "a", v: 1 }]);
		const stopped = batcher.stop(5000);
		await jest.advanceTimersByTimeAsync(0);
		await pending;
		await stopped;
		expect(writes).toEqual([[{ id: "a", v: 1 }]]);
		await expect(batcher.add([{ id: "b", v: 1 }])).rejects.toBeInstanceOf(BatcherStopped);
	});

	it("on stop while the store is down, gives up after the grace period and rejects the waiting adders (their messages stay unacknowledged)", async () => {
		const { batcher, writes } = harness(1_000_000);
		const pending = batcher.add([{ id: "a", v: 1 }]);
		const outcome = pending.then(
			() => "resolved",
			err => (err instanceof BatcherStopped ? "stopped" : String(err))
		);
		const stopped = batcher.stop(5000);
		await jest.advanceTimersByTimeAsync(5000);
		await stopped;
		expect(await outcome).toBe("stopped");
		expect(writes).toEqual([]);
	});
});
