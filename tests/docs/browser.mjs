// Opens the docs page in headless Chromium and reports what a reader sees.
// Usage: node tests/docs/browser.mjs <docs URL> <screenshot.png>
// Prints one JSON object; tests/docs/main.rs makes the assertions.
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node browser.mjs <docs URL> <screenshot.png>");
  process.exit(2);
}
const origin = new URL(url).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // This machine's network is closed: keep Chromium from phoning home.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const report = {
  consoleErrors: [], pageErrors: [], failedRequests: [], errorResponses: [], foreignRequests: [],
};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  page.on("requestfailed", (r) => report.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) report.foreignRequests.push(r.url());
  });
  page.on("response", (r) => { if (r.status() >= 400) report.errorResponses.push(`${r.status()} ${r.url()}`); });

  const response = await page.goto(url, { waitUntil: "networkidle" });
  report.status = response.status();
  report.csp = response.headers()["content-security-policy"] || null;
  await page.waitForSelector(".opblock-summary-path", { timeout: 30000 });
  report.title = await page.title();
  report.heading = await page.locator(".info .title").first().innerText();
  report.routes = await page.$$eval(".opblock", (blocks) => blocks.map((b) => {
    const method = b.querySelector(".opblock-summary-method")?.textContent.trim();
    const path = b.querySelector(".opblock-summary-path")?.getAttribute("data-path");
    return `${method} ${path}`;
  }));
  report.codesTable = await page.locator(".info table").innerText().catch(() => "");

  await page.screenshot({ path: screenshot });
  report.screenshot = screenshot;

  // Open one route and read its request example and its error examples.
  const adjust = page.locator(".opblock-post", { has: page.locator('[data-path="/v1/items/{sku}/adjustments"]') });
  await adjust.locator(".opblock-summary").click();
  await adjust.locator(".responses-table").waitFor({ timeout: 10000 });
  report.adjustRequestExample = await adjust.locator(".opblock-section-request-body .highlight-code").first().innerText();
  const conflict = adjust.locator("tr.response[data-code='409']");
  report.adjustConflictExamples = await conflict.locator(".examples-select select option")
    .evaluateAll((options) => options.map((o) => o.value));

  await adjust.scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-adjustments.png") });
} catch (e) {
  report.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
