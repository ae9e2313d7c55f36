// The page's benchmark mode (`?bench=1`) on any model folder, in headless Chromium with software WebGPU
// (SwiftShader) unless CHROMIUM_FLAGS says otherwise: prints the status line as it changes, then the page's
// table. Exits non-zero if the page fails or takes over an hour.
//
//   node tests/web/bench.mjs DIST MODEL_DIR [SIZE] [CALLS] [REFERENCE]
//
// DIST is `trunk build --release`'s output; MODEL_DIR a diffusers folder, served at /bench-model/. REFERENCE, a
// JSON list of the same prediction computed elsewhere (`examples/sd15_gpu.rs` writes the CPU's), is compared
// with the page's first prediction: the largest difference is printed, and over 1e-3 fails. TRAJECTORY=STEPS
// (a multiple of 10) also times a prompt-swap trajectory of that many steps and its decoding; none by default,
// as a full-size model's trajectory takes hours on SwiftShader.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [dist, model, size = "256", calls = "1", reference] = process.argv.slice(2);
if (!dist || !model) {
  console.error("usage: node bench.mjs DIST MODEL_DIR [SIZE] [CALLS]");
  process.exit(2);
}
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const [root, rel] = url.pathname.startsWith("/bench-model/")
    ? [model, url.pathname.slice("/bench-model/".length)]
    : [dist, url.pathname.replace(/^\/+/, "") || "index.html"];
  const file = path.resolve(root, decodeURIComponent(rel));
  if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end("not found");
    return;
  }
  const stat = fs.statSync(file);
  res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream",
    "content-length": stat.size, "last-modified": stat.mtime.toUTCString() });
  if (req.method === "HEAD") res.end();
  else fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/?bench=1&model=bench-model&size=${size}&calls=${calls}&trajectory=${process.env.TRAJECTORY ?? 0}`;

const dir = fs.mkdtempSync("/tmp/traverse-bench-");
const flags = (process.env.CHROMIUM_FLAGS ?? "--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader").split(" ");
const browser = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  args: ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", ...flags],
});
const page = browser.pages()[0] ?? (await browser.newPage());
page.on("console", (m) => m.type() === "error" && console.log(`  [console] ${m.text()}`));
const t0 = Date.now();
await page.goto(url);
let [last, state] = ["", ""];
while (Date.now() - t0 < 60 * 60 * 1000) {
  const text = (await page.textContent("#status")) ?? "";
  if (text !== last) console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${text}`);
  last = text;
  state = (await page.getAttribute("#status", "data-state")) ?? "";
  if (state === "ready" || state === "failed" || (await page.textContent("#fatal"))) break;
  await new Promise((r) => setTimeout(r, 2000));
}
console.log((await page.textContent("#bench")) || (await page.textContent("#fatal")) || "");
let failed = state !== "ready";
if (reference && !failed) {
  const want = JSON.parse(fs.readFileSync(reference, "utf8"));
  const got = JSON.parse((await page.textContent("#bench-output")) || "[]");
  if (got.length !== want.length) {
    console.log(`prediction: ${got.length} values, the reference has ${want.length}`);
    failed = true;
  } else {
    const diff = Math.max(...got.map((v, i) => Math.abs(v - want[i])));
    const largest = Math.max(...want.map(Math.abs));
    console.log(`prediction vs ${reference}: max abs difference ${diff.toExponential(2)} (largest |value| ${largest.toFixed(2)})`);
    failed = !(diff <= 1e-3);
  }
}
await browser.close();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
