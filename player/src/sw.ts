/**
 * The web player's service worker: keeps the player page and its scripts available when the
 * server is not, so a screen that reloads (or restarts) during an outage comes back and plays
 * its cached manifest. Media bytes are not its business: the page keeps them in Cache Storage
 * itself (content-cache.ts), and the API (/api/v1/…) is outside this worker's scope.
 *
 * Network first, cache as the fallback: an updated player reaches screens on their next load,
 * an outage never shows the browser's error page. What to keep comes from /player/shell.json,
 * the list of files the gateway serves for the player.
 */
// A module (registered with type: "module"), so these names stay local.
export {};
const sw = self as unknown as ServiceWorkerGlobalScope;

const SHELL_CACHE = "marquee-shell-v1";

async function precache(): Promise<void> {
	const cache = await caches.open(SHELL_CACHE);
	const res = await fetch("/player/shell.json", { cache: "no-store" });
	const files: unknown = await res.json();
	const urls = Array.isArray(files) ? files.filter((f): f is string => typeof f === "string" && f.startsWith("/player/")) : [];
	await cache.addAll(["/player/", ...urls]);
}

sw.addEventListener("install", event => {
	event.waitUntil(precache().then(() => sw.skipWaiting()));
});

sw.addEventListener("activate", event => {
	event.waitUntil(
		(async () => {
			for (const name of await caches.keys()) if (name.startsWith("marquee-shell-") && name !== SHELL_CACHE) await caches.delete(name);
			await sw.clients.claim();
		})()
	);
});

sw.addEventListener("fetch", event => {
	const { request } = event;
	const url = new URL(request.url);
	if (request.method !== "GET" || url.origin !== sw.location.origin || !url.pathname.startsWith("/player/")) return;
	if (url.pathname.startsWith("/player/content/")) return; // the page's own cache
	event.respondWith(networkFirst(request, url));
});

async function networkFirst(request: Request, url: URL): Promise<Response> {
	const cache = await caches.open(SHELL_CACHE);
	// The page is cached without its query string (?provisioningKey=… must not be kept).
	const key = request.mode === "navigate" ? "/player/" : url.pathname;
	try {
		const res = await fetch(request);
		if (res.ok && (request.mode === "navigate" || (await cache.match(key)))) await cache.put(key, res.clone());
		return res;
	} catch {
		const cached = await cache.match(key);
		if (cached) return cached;
		return new Response("Offline", { status: 503, headers: { "Content-Type": "text/plain" } });
	}
}
