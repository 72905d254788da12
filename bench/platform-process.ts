/**
 * The platform as users start it (npm start's command (`tsx [flags] server.ts`), a process of its own) and what it uses (Linux
 * /proc), shared by the benchmarks that drive it over HTTP (analytics, fleet).
 */
import fs from "node:fs";
import path from "node:path";
import type { Platform as TestPlatform } from "../test/helpers/accounts";
import { killGroup, ROOT, spawnPlatform, waitFor200, type PlatformProcess } from "../test/helpers/process";

export const TSX = path.join(ROOT, "node_modules/.bin/tsx");

/**
 * What `npm start` hands tsx (Node's flags, then the entry), read from package.json's start
 * script: the benchmarks start the platform exactly as users do, flags included.
 */
export const START_ARGS = startArgs(JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts?: Record<string, string> });

/** Node's flags of `npm start` (the bare baselines run with them too: the same runtime on both sides of a ratio). */
export const NODE_FLAGS = START_ARGS.slice(0, -1);

export function startArgs(pkg: { scripts?: Record<string, string> }): string[] {
	const words = (pkg.scripts?.start ?? "").trim().split(/\s+/);
	if (words[0] !== "tsx" || !words[words.length - 1].endsWith(".ts")) throw new Error(`package.json's start script is not "tsx [node flags] <entry>.ts": ${pkg.scripts?.start ?? "(none)"}`);
	return words.slice(1);
}

export interface RunningPlatform {
	proc: PlatformProcess;
	url: string;
	/** What the accounts helpers need of a platform. */
	accounts: TestPlatform;
	api(p: string): string;
}

/** `npm start`'s command (tsx with its flags) with `env` on a free port, once /health/ready answers 200. */
export async function startPlatformProcess(env: Record<string, string>): Promise<RunningPlatform> {
	const proc = await spawnPlatform(TSX, START_ARGS, { LOG_LEVEL: "warn", TRUST_PROXY_HOPS: "1", ...env });
	try {
		await waitFor200(`${proc.url}/health/ready`, 120_000, proc);
	} catch (err) {
		killGroup(proc);
		throw err;
	}
	const api = (p: string) => `${proc.url}/api/v1${p}`;
	return { proc, url: proc.url, api, accounts: { api } as unknown as TestPlatform };
}

/** SIGTERM (the platform drains and lets go of its store), SIGKILL after 60 s. */
export async function stopPlatformProcess(p: RunningPlatform): Promise<void> {
	p.proc.kill("SIGTERM");
	const timeout = new Promise<"timeout">(resolve => setTimeout(() => resolve("timeout"), 60_000).unref());
	const how = await Promise.race([p.proc.exited, timeout]);
	if (how === "timeout") {
		console.log("  (the platform did not exit within 60 s of SIGTERM; killed)");
		killGroup(p.proc);
		await p.proc.exited;
	} else if (how !== 0) console.log(`  (the platform exited with ${how} after SIGTERM)`);
	// Whatever the wrapper left behind (tsx relays the signal to its node child).
	killGroup(p.proc);
}

// ---- a process tree's memory and CPU (Linux /proc) -----------------------------------------

export const CLOCK_TICKS = 100;

export function readProc(pid: number, file: string): string | null {
	try {
		return fs.readFileSync(`/proc/${pid}/${file}`, "utf8");
	} catch {
		return null;
	}
}

/** `pid` and its descendants. */
export function treeOf(root: number): number[] {
	const children = new Map<number, number[]>();
	for (const entry of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		const stat = readProc(Number(entry), "stat");
		if (!stat) continue;
		const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
		const list = children.get(ppid) ?? [];
		list.push(Number(entry));
		children.set(ppid, list);
	}
	const out: number[] = [];
	const walk = (pid: number) => {
		out.push(pid);
		for (const c of children.get(pid) ?? []) walk(c);
	};
	walk(root);
	return out;
}

/** The processes whose command name is `comm` (e.g. "redis-server"). */
export function pidsNamed(comm: string): number[] {
	return fs.readdirSync("/proc").filter(entry => /^\d+$/.test(entry) && readProc(Number(entry), "comm")?.trim() === comm).map(Number);
}

/** Resident memory (MB) and CPU seconds used so far by a process tree. */
export function sampleTree(root: number): { rssMb: number; cpuSec: number } {
	let rssKb = 0;
	let ticks = 0;
	for (const pid of treeOf(root)) {
		const status = readProc(pid, "status");
		const stat = readProc(pid, "stat");
		if (status) rssKb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
		if (stat) {
			const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
			ticks += Number(fields[11]) + Number(fields[12]);
		}
	}
	return { rssMb: rssKb / 1024, cpuSec: ticks / CLOCK_TICKS };
}
