/** Child processes of the platform for e2e tests: start, wait until healthy, signal, collect output. */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { freePort } from "./servers";

export const ROOT = path.resolve(__dirname, "../..");

export interface PlatformProcess {
	url: string;
	child: ChildProcess;
	output(): string;
	/** Resolves with the exit code (or the signal name) once the process has ended. */
	exited: Promise<number | string>;
	kill(signal?: NodeJS.Signals): void;
}

export async function spawnPlatform(command: string, args: string[], env: Record<string, string>): Promise<PlatformProcess> {
	const port = await freePort();
	let output = "";
	const child = spawn(command, args, {
		cwd: ROOT,
		env: { ...process.env, NODE_ENV: "development", LOG_LEVEL: "warn", HOST: "127.0.0.1", PORT: String(port), ...env },
		stdio: ["ignore", "pipe", "pipe"],
		detached: true
	});
	child.stdout?.on("data", chunk => (output += chunk));
	child.stderr?.on("data", chunk => (output += chunk));
	const exited = new Promise<number | string>(resolve => child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
	return {
		url: `http://127.0.0.1:${port}`,
		child,
		output: () => output,
		exited,
		kill(signal: NodeJS.Signals = "SIGTERM") {
			if (child.exitCode === null && child.pid) process.kill(child.pid, signal);
		}
	};
}

/** Polls `url` until it answers 200; resolves with the milliseconds it took. */
export async function waitFor200(url: string, timeoutMs: number, proc?: PlatformProcess): Promise<number> {
	const started = Date.now();
	while (Date.now() - started < timeoutMs) {
		if (proc && proc.child.exitCode !== null) throw new Error(`process exited early:\n${proc.output()}`);
		try {
			const res = await fetch(url);
			await res.arrayBuffer();
			if (res.status === 200) return Date.now() - started;
		} catch {
			/* not listening yet */
		}
		await new Promise(resolve => setTimeout(resolve, 100));
	}
	throw new Error(`${url} did not answer 200 within ${timeoutMs} ms:\n${proc?.output() ?? ""}`);
}

/** Ends a process group for good (cleanup after a test). */
export function killGroup(proc: PlatformProcess): void {
	if (proc.child.exitCode === null && proc.child.pid) {
		try {
			process.kill(-proc.child.pid, "SIGKILL");
		} catch {
			/* already gone */
		}
	}
}
