/**
 * shared/group-send.ts: a group commit, and a group call. Each caller waits for its own message
 * to be published (or its own answer); messages arriving while a batch is in flight share the
 * next one, and at most `concurrency` batches are in flight.
 */
import { GroupSender } from "../../shared/group-send";

function deferred() {
	let resolve!: () => void;
	let reject!: (err: unknown) => void;
	const promise = new Promise<void>((res, rej) => {
		resolve = res;
		reject = rej;
	});
	return { promise, resolve, reject };
}

describe("GroupSender", () => {
	it("publishes what arrived in one turn of the event loop together, and what arrives meanwhile in the next publish", async () => {
		const publishes: number[][] = [];
		const gates: Array<ReturnType<typeof deferred>> = [];
		const sender = new GroupSender<number>(items => {
			publishes.push(items);
			const gate = deferred();
			gates.push(gate);
			return gate.promise;
		}, 3);
		const settled: number[] = [];
		const first = sender.send(1).then(() => settled.push(1));
		expect(publishes).toEqual([]);
		await new Promise(resolve => setImmediate(resolve));
		expect(publishes).toEqual([[1]]);
		const sends = [first, ...[2, 3, 4, 5, 6].map(n => sender.send(n).then(() => settled.push(n)))];
		expect(sender.waiting).toBe(5);
		gates[0].resolve();
		await Promise.resolve();
		await new Promise(resolve => setImmediate(resolve));
		expect(settled).toEqual([1]);
		expect(publishes).toEqual([[1], [2, 3, 4]]);
		gates[1].resolve();
		await new Promise(resolve => setImmediate(resolve));
		expect(publishes).toEqual([[1], [2, 3, 4], [5, 6]]);
		expect(settled).toEqual([1, 2, 3, 4]);
		gates[2].resolve();
		await Promise.all(sends);
		expect(settled).toEqual([1, 2, 3, 4, 5, 6]);
	});

	it("rejects every message of a failed publish, and only those; the next batch goes on", async () => {
		const publishes: string[][] = [];
		const sender = new GroupSender<string>(async items => {
			publishes.push(items);
			if (items.includes("b")) throw new Error(`lost ${items.join(",")}`);
		}, 10);
		await expect(sender.send("a")).resolves.toBeUndefined();
		const b = sender.send("b");
		const c = sender.send("c");
		await expect(b).rejects.toThrow("lost b,c");
		await expect(c).rejects.toThrow("lost b,c");
		await expect(sender.send("d")).resolves.toBeUndefined();
		expect(publishes).toEqual([["a"], ["b", "c"], ["d"]]);
	});
	it("answers each caller its own item's answer, in order; a batch answering the wrong number fails its callers", async () => {
		const sender = new GroupSender<number, string>(async items => items.map(n => `answer ${n}`), 10);
		await expect(Promise.all([1, 2, 3].map(n => sender.send(n)))).resolves.toEqual(["answer 1", "answer 2", "answer 3"]);
		const short = new GroupSender<number, string>(async items => items.slice(1).map(String), 10);
		await expect(Promise.all([short.send(1), short.send(2)])).rejects.toThrow("A group call answered 1 of 2 items");
	});

	it("keeps at most `concurrency` batches in flight, and starts the next as soon as one finishes", async () => {
		const batches: number[][] = [];
		const gates: Array<ReturnType<typeof deferred>> = [];
		const sender = new GroupSender<number, number>(
			async items => {
				batches.push(items);
				const gate = deferred();
				gates.push(gate);
				await gate.promise;
				return items.map(n => n * 10);
			},
			2,
			{ concurrency: 2 }
		);
		const answers = [1, 2, 3, 4, 5, 6, 7].map(n => sender.send(n));
		await new Promise(resolve => setImmediate(resolve));
		// Two batches of two in flight; the rest wait.
		expect(batches).toEqual([
			[1, 2],
			[3, 4]
		]);
		expect(sender.waiting).toBe(3);
		gates[1].resolve();
		await new Promise(resolve => setImmediate(resolve));
		expect(batches).toEqual([
			[1, 2],
			[3, 4],
			[5, 6]
		]);
		gates[0].resolve();
		gates[2].resolve();
		await new Promise(resolve => setImmediate(resolve));
		expect(batches).toHaveLength(4);
		gates[3].resolve();
		await expect(Promise.all(answers)).resolves.toEqual([10, 20, 30, 40, 50, 60, 70]);
	});

	it("fails a send at once while too many wait, and takes sends again once they have gone", async () => {
		const gate = deferred();
		const sender = new GroupSender<number>(() => gate.promise, 1, { maxWaiting: 2, overflow: () => new Error("busy") });
		const first = sender.send(1);
		await new Promise(resolve => setImmediate(resolve));
		// 1 is in flight; 2 and 3 wait; 4 finds the queue full.
		const waiting = [sender.send(2), sender.send(3)];
		await expect(sender.send(4)).rejects.toThrow("busy");
		gate.resolve();
		await Promise.all([first, ...waiting]);
		await expect(sender.send(5)).resolves.toBeUndefined();
	});
});
