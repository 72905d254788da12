/**
 * /api/docs in a real browser: Swagger UI loads from the gateway's own assets under the page's
 * Content-Security-Policy and renders the generated document's operations.
 */
import fs from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { describeIf } from "../helpers/servers";
import { startGateway, type TestGateway } from "../helpers/platform";
import { ProbeService, StubAuthService } from "../helpers/stub-services";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

describeIf(fs.existsSync(CHROMIUM), `${CHROMIUM} not installed (apt-get install chromium)`)("API docs page in Chromium", () => {
	let gw: TestGateway;
	let browser: Browser;

	beforeAll(async () => {
		gw = await startGateway([StubAuthService, ProbeService]);
		browser = await chromium.launch({
			executablePath: CHROMIUM,
			args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
		});
	}, 30_000);
	afterAll(async () => {
		await browser?.close();
		await gw?.stop();
	});

	it("renders the operations of the generated document without CSP violations or page errors", async () => {
		const page = await browser.newPage();
		const problems: string[] = [];
		page.on("pageerror", err => problems.push(`pageerror: ${err.message}`));
		page.on("console", msg => {
			if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
		});
		page.on("requestfailed", req => problems.push(`requestfailed: ${req.url()}`));

		await page.goto(`${gw.url}/api/docs`);
		await page.waitForSelector(".opblock", { timeout: 20_000 });
		const paths = await page.$$eval(".opblock-summary-path", nodes => nodes.map(n => n.getAttribute("data-path") ?? n.textContent ?? ""));
		expect(paths).toEqual(expect.arrayContaining(["/api/v1/probe/echo", "/health/ready"]));
		expect(await page.title()).toContain("Marquee");
		expect(problems).toEqual([]);
		await page.close();
	}, 40_000);
});
