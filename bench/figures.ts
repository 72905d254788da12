/**
 * What every benchmark prints: figures (throughput and latency quantiles) in a table, each with
 * its ratio to the bare baseline measured in the same run.
 */

export interface Figure {
	name: string;
	opsPerSec: number;
	p50Ms: number;
	p99Ms: number;
	/** Printed instead of p99 by tables asked for p95 (`report(..., { tail: "p95" })`). */
	p95Ms?: number;
	/** Its ratio to the baseline when measured against baseline runs of its own (else ops/s over the baseline's). */
	ratio?: number;
}

/** The value at quantile `q` of sorted `values` (NaN when there are none). */
export function quantile(sorted: readonly number[], q: number): number {
	if (!sorted.length) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** The middle value (of an even count, the mean of the middle two), NaN when there are none. */
export function median(values: readonly number[]): number {
	if (!values.length) return NaN;
	const sorted = [...values].sort((a, b) => a - b);
	const mid = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Runs `op` with `concurrency` workers for `durationMs` after a short warm-up. */
export async function measure(name: string, op: () => Promise<void>, durationMs = 3000, concurrency = 16): Promise<Figure> {
	const warmUntil = Date.now() + 500;
	while (Date.now() < warmUntil) await op();
	const latencies: number[] = [];
	const until = Date.now() + durationMs;
	const started = process.hrtime.bigint();
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (Date.now() < until) {
				const t = process.hrtime.bigint();
				await op();
				latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
			}
		})
	);
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	latencies.sort((a, b) => a - b);
	return { name, opsPerSec: latencies.length / seconds, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99) };
}

const cell = (value: number, digits: number, width: number) => (Number.isFinite(value) ? value.toFixed(digits) : "-").padStart(width);

/** Every table printed so far, for the run's JSON (bench/results/). */
export interface ReportedTable {
	title: string;
	baseline: Figure;
	figures: Array<Figure & { ratio: number }>;
}
export const reported: ReportedTable[] = [];

/** A table of figures; the ratio column is each figure's `ratio`, else its ops/s over the baseline's. */
export function report(title: string, baseline: Figure, others: Figure[], options: { tail?: "p99" | "p95" } = {}): void {
	const tail = options.tail ?? "p99";
	const ratioOf = (f: Figure) => f.ratio ?? f.opsPerSec / baseline.opsPerSec;
	reported.push({ title, baseline, figures: others.map(f => ({ ...f, ratio: ratioOf(f) })) });
	console.log(`\n${title}`);
	console.log("  " + ["case".padEnd(58), "ops/s".padStart(10), "p50 ms".padStart(10), `${tail} ms`.padStart(10), "vs baseline".padStart(12)].join(""));
	for (const f of [baseline, ...others]) {
		const ratio = f === baseline ? "1.00x" : Number.isFinite(ratioOf(f)) ? `${ratioOf(f).toFixed(2)}x` : "-";
		const tailMs = tail === "p95" ? (f.p95Ms ?? NaN) : f.p99Ms;
		console.log("  " + [f.name.padEnd(58), cell(f.opsPerSec, f.opsPerSec < 10 ? 2 : 0, 10), cell(f.p50Ms, 2, 10), cell(tailMs, 2, 10), ratio.padStart(12)].join(""));
	}
}

/** A worker process's entry: runs `main`, and a failure ends the process with its stack on stderr. */
export function workerMain(main: () => Promise<void>): void {
	main().catch(err => {
		process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
		process.exit(1);
	});
}
