// Opens a served page in headless Chromium (software WebGPU) and prints its status line as it changes, until
// the default example has run two DDIM steps; exits non-zero if the page fails or takes over 15 minutes.
//
//   node served.mjs URL
import fs from "node:fs";
import { chromium } from "playwright-core";

const url = process.argv[2];
const dir = fs.mkdtempSync("/tmp/traverse-served-");
const browser = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  args: ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"],
});
const page = browser.pages()[0] ?? (await browser.newPage());
const t0 = Date.now();
await page.goto(url);
let [last, ok] = ["", false];
while (Date.now() - t0 < 15 * 60 * 1000) {
  const text = (await page.textContent("#status")) ?? "";
  if (text !== last) console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${text}`);
  last = text;
  if (/step [2-9]\d* of /.test(text)) { ok = true; break; }
  if ((await page.getAttribute("#status", "data-state")) === "failed") break;
  await new Promise((r) => setTimeout(r, 2000));
}
await browser.close();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(ok ? 0 : 1);
