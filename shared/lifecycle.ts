/**
 * Process-wide lifecycle state: `draining` is set when SIGTERM starts draining and read by
 * readiness checks. Work that never finishes on its own (the device SSE streams) registers a
 * drain hook, run once when draining starts, before the broker waits for in-flight requests.
 */
export const lifecycle = { draining: false };

type DrainHook = () => void;

const hooks = new Set<DrainHook>();

/** Runs `hook` when draining starts (at once if it already has). Returns the unsubscribe function. */
export function onDrain(hook: DrainHook): () => void {
	if (lifecycle.draining) {
		runHook(hook);
		return () => undefined;
	}
	hooks.add(hook);
	return () => {
		hooks.delete(hook);
	};
}

/** Marks the process as draining and runs every drain hook once; later calls do nothing more. */
export function startDraining(): void {
	if (lifecycle.draining) return;
	lifecycle.draining = true;
	const pending = [...hooks];
	hooks.clear();
	for (const hook of pending) runHook(hook);
}

/** A hook that throws must not keep the others (or the shutdown) from running. */
function runHook(hook: DrainHook): void {
	try {
		hook();
	} catch (err) {
		console.error("marquee: a drain hook failed:", err instanceof Error ? err.message : err);
	}
}
