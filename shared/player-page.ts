/**
 * The reference web player's page, served by the gateway at /player/ (the player's own code is
 * in player/src, compiled into player/build by `npm run build:player`). Pure functions: the
 * gateway's routes (services/api/routes.ts) serve what these return.
 *
 * The page loads only its own files: one stylesheet and ES modules, no inline script, no third
 * party. Media play from blob: URLs of the player's cache; web-page items are sandboxed iframes
 * of whatever http(s) address the tenant gave them.
 */
import fs from "node:fs";
import path from "node:path";
import QRCode from "qrcode";

/** Where `npm run build:player` puts the compiled player (dist/player/build in the image). */
export const PLAYER_BUILD_DIR = path.resolve(__dirname, "../player/build");

const ASSET_NAME = /^[a-z][a-z0-9-]*\.(js|css|svg)$/;
const CONTENT_TYPES: Record<string, string> = { js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml" };
/** The service worker is served at /player/sw.js (its scope is /player/), not as an asset. */
export const SERVICE_WORKER_FILE = "sw.js";

/**
 * Content-Security-Policy of the player page. `connect-src` adds the public S3 address when
 * downloads are redirected there (S3_PUBLIC_ENDPOINT); `frame-src` admits any http(s) page, since
 * web-page items are addresses the tenant chose (each in a sandboxed iframe).
 */
export function playerPageCsp(publicStorageUrl: string | null): string {
	const storage = publicStorageUrl ? ` ${new URL(publicStorageUrl).origin}` : "";
	return [
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' blob:",
		"media-src 'self' blob:",
		"frame-src http: https:",
		`connect-src 'self'${storage}`,
		"worker-src 'self'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'"
	].join("; ");
}

/** HTML of the player page. Constant: everything the player learns comes from the device API. */
export function playerPageHtml(): string {
	return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<meta name="referrer" content="no-referrer">
<title>Marquee player</title>
<link rel="icon" href="/player/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/player/assets/player.css">
<script type="module" src="/player/assets/main.js"></script>
</head>
<body data-state="starting">
<main id="stage"></main>
<div id="idle" hidden>Nothing is scheduled on this screen.</div>
<section id="pairing" hidden>
<h1>Pair this screen</h1>
<p class="hint">In Marquee, open <b>Displays → Pair a display</b> and enter this code:</p>
<div id="code" aria-live="polite">······</div>
<img id="qr" alt="QR code of the pairing code" hidden>
<p id="pairing-message" role="status"></p>
</section>
<div id="badge" role="status" hidden>offline</div>
<noscript>The Marquee player needs JavaScript.</noscript>
</body>
</html>
`;
}

/** Whether the player has been built (the gateway answers 503 with the fix otherwise). */
export function playerBuilt(): boolean {
	return fs.existsSync(path.join(PLAYER_BUILD_DIR, "main.js"));
}

/** Absolute path and Content-Type of a servable player file; null for any other name. */
export function playerAsset(file: string): { path: string; type: string } | null {
	if (!ASSET_NAME.test(file) || file === SERVICE_WORKER_FILE) return null;
	const full = path.join(PLAYER_BUILD_DIR, file);
	if (!fs.existsSync(full)) return null;
	return { path: full, type: CONTENT_TYPES[file.slice(file.lastIndexOf(".") + 1)] };
}

/** The URLs the service worker keeps for offline use: every servable file of the build. */
export function playerShell(): string[] {
	let files: string[];
	try {
		files = fs.readdirSync(PLAYER_BUILD_DIR);
	} catch {
		return [];
	}
	return files.filter(f => playerAsset(f) !== null).map(f => `/player/assets/${f}`);
}

/** A pairing code is 6 characters of an unambiguous upper-case alphabet (devices/pairing.ts). */
const PAIRING_CODE = /^[A-Z0-9]{6}$/;

/** An SVG QR code carrying a pairing code; null for anything that is not one. */
export async function pairingQrSvg(code: string): Promise<string | null> {
	if (!PAIRING_CODE.test(code)) return null;
	return QRCode.toString(code, { type: "svg", errorCorrectionLevel: "M", margin: 2, color: { dark: "#000000", light: "#ffffff" } });
}
