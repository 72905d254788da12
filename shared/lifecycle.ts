/** Process-wide lifecycle state: set when SIGTERM starts draining, read by readiness checks. */
export const lifecycle = { draining: false };
