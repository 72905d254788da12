/**
 * The API docs page: Swagger UI from the local swagger-ui-dist package (no CDN), rendering the
 * OpenAPI document at `specUrl`. Pure functions; the gateway serves the page and the assets.
 *
 * The page holds one constant inline script that reads the spec URL from a data attribute, so a
 * strict Content-Security-Policy can allow it by hash: send DOCS_PAGE_CSP with the page.
 */
import { createHash } from "node:crypto";
import path from "node:path";

/** The only files of swagger-ui-dist the gateway may serve. */
const SWAGGER_UI_ASSETS: Record<string, string> = {
	"swagger-ui.css": "text/css; charset=utf-8",
	"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
	"swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
	"favicon-16x16.png": "image/png",
	"favicon-32x32.png": "image/png"
};

/**
 * Initialises Swagger UI. Constant (the spec URL comes from `data-spec-url`), so its CSP hash is too.
 * validatorUrl: null keeps the page from calling the public swagger.io validator.
 */
const INIT_SCRIPT =
	"window.ui = SwaggerUIBundle({ url: document.getElementById(\"swagger-ui\").dataset.specUrl, " +
	"dom_id: \"#swagger-ui\", deepLinking: true, validatorUrl: null, " +
	"presets: [SwaggerUIBundle.presets.apis], layout: \"BaseLayout\" });";

const INIT_SCRIPT_HASH = `sha256-${createHash("sha256").update(INIT_SCRIPT).digest("base64")}`;

/**
 * Content-Security-Policy for the docs page. Swagger UI sets inline styles and uses data: images;
 * "Try it out" calls the API on the same origin.
 */
export const DOCS_PAGE_CSP = [
	"default-src 'none'",
	`script-src 'self' '${INIT_SCRIPT_HASH}'`,
	"style-src 'self' 'unsafe-inline'",
	"img-src 'self' data:",
	"connect-src 'self'",
	"base-uri 'none'",
	"form-action 'none'",
	"frame-ancestors 'none'"
].join("; ");

function escapeHtml(text: string): string {
	const entities: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" };
	return text.replace(/[&<>"']/g, char => entities[char] ?? char);
}

/** HTML of the docs page; assets are loaded from `assetBase` (e.g. "/api/docs/assets"). */
export function docsPageHtml(specUrl: string, assetBase: string): string {
	const base = escapeHtml(assetBase.replace(/\/+$/, ""));
	return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Marquee API</title>
<link rel="stylesheet" href="${base}/swagger-ui.css">
<link rel="icon" type="image/png" href="${base}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="${base}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<noscript>The API documentation needs JavaScript. The OpenAPI document is at <a href="${escapeHtml(specUrl)}">${escapeHtml(specUrl)}</a>.</noscript>
<div id="swagger-ui" data-spec-url="${escapeHtml(specUrl)}"></div>
<script src="${base}/swagger-ui-bundle.js"></script>
<script>${INIT_SCRIPT}</script>
</body>
</html>
`;
}

let swaggerUiDir: string | undefined;

/**
 * swagger-ui-dist's directory; what its getAbsoluteFSPath() returns, without requiring the package
 * main, which would load the whole browser bundle into the server.
 */
function swaggerUiDistDir(): string {
	swaggerUiDir ??= path.dirname(require.resolve("swagger-ui-dist/package.json"));
	return swaggerUiDir;
}

/** Absolute path of an allow-listed swagger-ui-dist file; null for any other name. */
export function swaggerAssetPath(file: string): string | null {
	if (!Object.hasOwn(SWAGGER_UI_ASSETS, file)) return null;
	return path.join(swaggerUiDistDir(), file);
}

/** Content-Type of an allow-listed asset; null for any other name. */
export function swaggerAssetContentType(file: string): string | null {
	return Object.hasOwn(SWAGGER_UI_ASSETS, file) ? SWAGGER_UI_ASSETS[file] : null;
}
