/**
 * services/scheduling/recompute-queue.ts: jobs of one tenant run one after another in the order
 * queued, tenants do not wait for each other, a failure is reported and does not stop the queue.
 * Jobs are released by hand (deferred promises), never by timers.
 */
import { RecomputeQueue } from "../../services/scheduling/recompute-queue";

function deferred() {
	let release!: () => void;
	let fail!: (err: unknown) => void;
	const promise = new Promise<void>((resolve, reject) => {
		release = resolve;
		fail = reject;
	});
	return { promise, release, fail };
}

/** Lets every settled promise run its callbacks. */
const flush = () => new Promise(resolve => setImmediate(resolve));

describe("recompute queue", () => {
	it("runs one tenant's jobs one after another, in order, while another tenant's run alongside", async () => {
		const errors: unknown[] = [];
		const queue = new RecomputeQueue((_key, err) => errors.push(err));
		const log: string[] = [];
		const first = deferred();
		const second = deferred();
		const other = deferred();
		queue.enqueue("t1", async () => {
			log.push("t1 first started");
			await first.promise;
			log.push("t1 first done");
		});
		queue.enqueue("t1", async () => {
			log.push("t1 second started");
			await second.promise;
			log.push("t1 second done");
		});
		queue.enqueue("t2", async () => {
			log.push("t2 started");
			await other.promise;
		});
		await flush();
		expect(log).toEqual(["t1 first started", "t2 started"]);
		expect(queue.pending).toBe(2);

		first.release();
		await flush();
		expect(log).toEqual(["t1 first started", "t2 started", "t1 first done", "t1 second started"]);

		second.release();
		other.release();
		await queue.idle();
		expect(log.at(-1)).toBe("t1 second done");
		expect(queue.pending).toBe(0);
		expect(errors).toEqual([]);
	});

	it("a failed job is reported with its key and the next one still runs", async () => {
		const errors: Array<[string, unknown]> = [];
		const queue = new RecomputeQueue((key, err) => errors.push([key, err]));
		const boom = new Error("boom");
		let ran = false;
		queue.enqueue("t1", async () => {
			throw boom;
		});
		queue.enqueue("t1", async () => {
			ran = true;
		});
		await queue.idle();
		expect(errors).toEqual([["t1", boom]]);
		expect(ran).toBe(true);
	});

	it("idle waits for jobs queued while it waits", async () => {
		const queue = new RecomputeQueue(() => undefined);
		const gate = deferred();
		let later = false;
		queue.enqueue("t1", async () => {
			await gate.promise;
			queue.enqueue("t2", async () => {
				later = true;
			});
		});
		const idle = queue.idle();
		gate.release();
		await idle;
		expect(later).toBe(true);
		expect(queue.pending).toBe(0);
	});

	it("idle with nothing queued resolves at once", async () => {
		await expect(new RecomputeQueue(() => undefined).idle()).resolves.toBeUndefined();
	});
});
