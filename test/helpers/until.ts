/**
 * Waiting for what happens asynchronously (a channel, a sweep, another process): polled until it
 * holds. Tests never time anything: the deadline, generous for a loaded machine, only stops a
 * test that would otherwise wait forever, and says what it was waiting for.
 */
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Resolves once `condition` holds; throws `<what>: not within <ms> ms` past the deadline. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
	await untilValue(what, async () => await condition(), held => held, ms);
}

/** The first value of `probe` that `done` accepts; past the deadline, throws with the last one seen. */
export async function untilValue<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, ms = 20_000): Promise<T> {
	const deadline = Date.now() + ms;
	for (;;) {
		const value = await probe();
		if (done(value)) return value;
		if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms (last: ${String(JSON.stringify(value)).slice(0, 500)})`);
		await sleep(25);
	}
}
