/**
 * Where a V8 CPU profile's time went, as text: `npx tsx bench/profile-summary.ts FILE.cpuprofile
 * [--top=N] [--from=S] [--to=S]`. Self time by package (node_modules/<name>, the project's own folders,
 * node's internals, garbage collection, idle) and by function, and the total time under each of
 * the project's own functions (inclusive), which is how bench/README.md attributes the hot path.
 * It prints how busy each second was; `--from`/`--to` keep the seconds of the load, not start-up.
 */
import fs from "node:fs";

interface ProfileNode {
	id: number;
	callFrame: { functionName: string; url: string; lineNumber: number };
	children?: number[];
}

interface CpuProfile {
	nodes: ProfileNode[];
	samples: number[];
	timeDeltas: number[];
}

/** Seconds since the profile began, per sample. */
function sampleTimes(profile: CpuProfile): number[] {
	let t = 0;
	return profile.samples.map((_, i) => (t += profile.timeDeltas[i] ?? 0) / 1e6);
}

/** How busy (not idle) each second of the profile was: where start-up ends and the load runs. */
export function timeline(profile: CpuProfile, idleIds: ReadonlySet<number>): string {
	const seconds: Array<[number, number]> = [];
	sampleTimes(profile).forEach((t, i) => {
		const slot = (seconds[Math.floor(t)] ??= [0, 0]);
		slot[idleIds.has(profile.samples[i]) ? 1 : 0] += profile.timeDeltas[i] ?? 0;
	});
	return seconds.map(([busy, idle], s) => `${s}s ${Math.round((100 * busy) / (busy + idle || 1))}%`).join(", ");
}

/** Which part of the program a script URL belongs to. */
export function packageOf(url: string, functionName: string): string {
	if (!url) return functionName.startsWith("(") ? functionName : "(native)";
	const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
	if (modules) return modules[1];
	if (url.startsWith("node:")) return "node internals";
	const own = /\/(services|shared|mixins|server\.ts|moleculer\.config\.ts)(\/[^/]+)?/.exec(url);
	if (own) return own[1] + (own[2] && !own[2].endsWith(".ts") ? own[2] : "");
	return "other";
}

function summarise(profile: CpuProfile, top: number, window: { from: number; to: number }): string[] {
	const byId = new Map(profile.nodes.map(n => [n.id, n]));
	const parent = new Map<number, number>();
	for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
	const idle = new Set(profile.nodes.filter(n => n.callFrame.functionName === "(idle)").map(n => n.id));
	const times = sampleTimes(profile);
	const self = new Map<number, number>();
	let total = 0;
	for (let i = 0; i < profile.samples.length; i++) {
		if (times[i] < window.from || times[i] > window.to) continue;
		const id = profile.samples[i];
		const dt = profile.timeDeltas[i] ?? 0;
		self.set(id, (self.get(id) ?? 0) + dt);
		total += dt;
	}
	const label = (n: ProfileNode) => `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*?(node_modules|services|shared|mixins)\//, "$1/")}:${n.callFrame.lineNumber + 1}`;
	const packages = new Map<string, number>();
	const functions = new Map<string, number>();
	const inclusive = new Map<string, number>();
	for (const [id, us] of self) {
		const node = byId.get(id);
		if (!node) continue;
		const pkg = packageOf(node.callFrame.url, node.callFrame.functionName);
		packages.set(pkg, (packages.get(pkg) ?? 0) + us);
		functions.set(label(node), (functions.get(label(node)) ?? 0) + us);
		// Inclusive time of the project's own functions: each counted once per sample.
		const seen = new Set<string>();
		for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
			const n = byId.get(at);
			if (!n || !/\/(services|shared|mixins)\//.test(n.callFrame.url)) continue;
			const key = label(n);
			if (seen.has(key)) continue;
			seen.add(key);
			inclusive.set(key, (inclusive.get(key) ?? 0) + us);
		}
	}
	const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
	const rows = (m: Map<string, number>) =>
		[...m]
			.sort((a, b) => b[1] - a[1])
			.slice(0, top)
			.map(([k, us]) => `  ${pct(us)}  ${k}`);
	return [
		`busy per second: ${timeline(profile, idle)}`,
		`${(total / 1e6).toFixed(1)} s sampled (from ${window.from} s to ${Number.isFinite(window.to) ? `${window.to} s` : "the end"})`,
		"self time by package:",
		...rows(packages),
		"self time by function:",
		...rows(functions),
		"total time under the project's own functions:",
		...rows(inclusive)
	];
}

function main(): void {
	const args = process.argv.slice(2);
	const option = (name: string, fallback: number) => Number(new RegExp(`^--${name}=(\\d+)$`).exec(args.find(a => a.startsWith(`--${name}=`)) ?? "")?.[1] ?? fallback);
	const top = option("top", 25);
	const window = { from: option("from", 0), to: option("to", Number.POSITIVE_INFINITY) };
	const files = args.filter(a => !a.startsWith("--"));
	if (!files.length) {
		console.error("usage: npx tsx bench/profile-summary.ts FILE.cpuprofile ... [--top=N] [--from=S] [--to=S]");
		process.exit(2);
	}
	for (const file of files) {
		console.log(`\n${file}`);
		for (const line of summarise(JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile, top, window)) console.log(line);
	}
}

if (require.main === module) main();
