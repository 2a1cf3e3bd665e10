// Open the example page in headless Chromium, wait for its numbers, print them as JSON, save a screenshot.
// Usage: node screenshot.mjs URL SCREENSHOT.png   (CHROMIUM: the browser binary; default Debian's)
// Any request to a host other than the page's fails the run: every file must come from the local server.
import { existsSync } from "node:fs";
import puppeteer from "puppeteer-core";

const [url, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ||
  ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"].find((p) => existsSync(p));
if (!executablePath) {
  console.error("no Chromium: install Debian's chromium-headless-shell (scripts/setup-js.sh) or set CHROMIUM");
  process.exit(2);
}
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  // No sandbox as root in a container; no background traffic to Google's hosts on a closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 420 });
  const origin = new URL(url).origin;
  const outside = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(origin) && !request.url().startsWith("blob:") && !request.url().startsWith("data:")) {
      outside.push(request.url());
    }
  });
  const console_lines = [];
  page.on("console", (message) => console_lines.push(`${message.type()}: ${message.text()}`));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => window.jinaOnnx !== undefined, { timeout: 240_000, polling: 200 });
  const result = await page.evaluate(() => window.jinaOnnx);
  if (screenshot) await page.screenshot({ path: screenshot });
  const backend = await page.evaluate(() => typeof WebAssembly === "object");
  process.stdout.write(JSON.stringify({ ...result, outside, webassembly: backend, console: console_lines.slice(-20) }));
} finally {
  await browser.close();
}
