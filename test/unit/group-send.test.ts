/**
 * shared/group-send.ts: a group commit. Each caller waits for its own message to be published;
 * messages arriving while a publish is in flight share the next one.
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
	it("publishes a lone message at once, and what arrives meanwhile together in the next publish", async () => {
		const publishes: number[][] = [];
		const gates: Array<ReturnType<typeof deferred>> = [];
		const sender = new GroupSender<number>(items => {
			publishes.push(items);
			const gate = deferred();
			gates.push(gate);
			return gate.promise;
		}, 3);
		const settled: number[] = [];
		const sends = [1, 2, 3, 4, 5, 6].map(n => sender.send(n).then(() => settled.push(n)));
		expect(publishes).toEqual([[1]]);
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
		let call = 0;
		const sender = new GroupSender<string>(async items => {
			call++;
			if (call === 2) throw new Error(`lost ${items.join(",")}`);
		}, 10);
		const a = sender.send("a");
		const b = sender.send("b");
		const c = sender.send("c");
		await expect(a).resolves.toBeUndefined();
		await expect(b).rejects.toThrow("lost b,c");
		await expect(c).rejects.toThrow("lost b,c");
		await expect(sender.send("d")).resolves.toBeUndefined();
	});
});
