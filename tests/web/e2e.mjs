// End-to-end tests of the page in headless Chromium with software WebGPU (SwiftShader).
//
//   node tests/web/e2e.mjs DIST CLI_OUT
//
// DIST is `trunk build --release`'s output; CLI_OUT is a `traverse generate` run with the same settings as
// LINK below (scripts/test-web.sh makes both). The page's images must match the CLI's (CPU) images: the same
// link gives the same images on CPU and GPU. A sharded copy of the model (served at /sharded/) must load. The
// page's download of that run is saved as CLI_OUT/page-run.zip, and of a run from CLI_OUT/neutral.png
// uploaded as the visitor's image as CLI_OUT/page-invert.zip, for scripts/check_download.py.
// Error paths: a bad link, a missing model, no WebGPU. Missing files get index.html (status 200) as from a
// single-page-app server, except in the sharded copy, which gets 404s.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [dist, cliOut] = process.argv.slice(2);
// SCREENSHOTS=DIR saves the page in each state it passes through (docs/ holds the README's).
const shots = process.env.SCREENSHOTS;
async function shot(page, name) {
  if (shots) await page.screenshot({ path: path.join(shots, `page-${name}.png`), fullPage: true });
}
if (!dist || !cliOut) {
  console.error("usage: node e2e.mjs DIST CLI_OUT");
  process.exit(2);
}
// Must match scripts/test-web.sh's `traverse generate` arguments.
export const LINK = "?example=chest&seed=42&steps=3&t=1,3&samples=3&frame=1";
const TIMEOUT_MS = 25 * 60 * 1000;

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
  ".json": "application/json", ".png": "image/png", ".md": "text/markdown" };
// diffusers' sharded layout of one safetensors file: `{base}.safetensors.index.json` naming two shards
// `{base}-0000N-of-00002.safetensors`, each a valid safetensors file. An int8 tensor stays in the shard of
// its `.qscale` (the format needs both in one file).
function shard(bytes, base) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const data = bytes.subarray(8 + n);
  const names = Object.keys(header).filter((k) => k !== "__metadata__").sort();
  const groups = [[], []];
  for (const name of names) {
    const owner = name.replace(/\.qscale$/, "");
    groups[names.indexOf(owner) < names.length / 2 ? 0 : 1].push(name);
  }
  const files = {};
  const weight_map = {};
  groups.forEach((group, i) => {
    const file = `${base}-0000${i + 1}-of-00002.safetensors`;
    const head = header.__metadata__ ? { __metadata__: header.__metadata__ } : {};
    const parts = [];
    let offset = 0;
    for (const name of group) {
      const { dtype, shape, data_offsets: [a, b] } = header[name];
      head[name] = { dtype, shape, data_offsets: [offset, offset + b - a] };
      parts.push(data.subarray(a, b));
      offset += b - a;
      weight_map[name] = file;
    }
    let json = Buffer.from(JSON.stringify(head));
    json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    files[file] = Buffer.concat([len, json, ...parts]);
  });
  files[`${base}.safetensors.index.json`] = Buffer.from(JSON.stringify({ metadata: {}, weight_map }));
  return files;
}
const sharded = {};
for (const [dir, base] of [["text_encoder", "model"], ["unet", "diffusion_pytorch_model"], ["vae", "diffusion_pytorch_model"]]) {
  const files = shard(fs.readFileSync(path.join(dist, "model", dir, `${base}.safetensors`)), base);
  for (const [name, bytes] of Object.entries(files)) sharded[`${dir}/${name}`] = bytes;
}
const served = new Set();
// Every request: [method, path].
const requests = [];

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  requests.push([req.method, url.pathname]);
  const viaSharded = url.pathname.startsWith("/sharded/");
  if (viaSharded) {
    const rel = url.pathname.slice("/sharded/".length);
    if (sharded[rel]) {
      served.add(rel);
      res.writeHead(200, { "content-type": types[path.extname(rel)] ?? "application/octet-stream" }).end(sharded[rel]);
      return;
    }
    // The single files are absent from the sharded copy; everything else is the model's.
    url.pathname = rel.endsWith(".safetensors") ? "/missing" : `/model/${rel}`;
  }
  const root = url.pathname.startsWith("/cli/") ? cliOut : dist;
  const rel = decodeURIComponent(url.pathname.replace(/^\/cli\//, "/")).replace(/^\/+/, "") || "index.html";
  const file = path.resolve(root, rel);
  if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    if (viaSharded) {
      res.writeHead(404).end("not found");
    } else {
      // Like many static hosts and single-page-app servers: index.html, status 200, for a missing file. The
      // page must take that as missing (the sharded copy keeps plain 404s, so both answers are covered).
      res.writeHead(200, { "content-type": "text/html" }).end(fs.readFileSync(path.join(dist, "index.html")));
    }
    return;
  }
  // As static hosts do: the file's length and modification time, which tell the page's cache its version.
  const stat = fs.statSync(file);
  res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream",
    "content-length": stat.size, "last-modified": stat.mtime.toUTCString() });
  if (req.method === "HEAD") res.end();
  else fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const common = ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-quic"];
const webgpu = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"];
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

async function withPage(flags, fn) {
  const dir = fs.mkdtempSync("/tmp/traverse-chromium-");
  const browser = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: [...common, ...flags], headless: true,
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on("console", (m) => m.type() === "error" && console.log(`  [console] ${m.text()}`));
  try {
    await fn(page);
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const state = (page) => page.getAttribute("#status", "data-state");
async function settle(page, ms = TIMEOUT_MS) {
  await page.waitForFunction(() => {
    const s = document.querySelector("#status")?.dataset.state;
    return document.querySelector("#fatal")?.textContent || s === "failed" ||
      (s === "ready" && document.querySelector("#frame-image"));
  }, null, { timeout: ms, polling: 500 });
}

// Pixels of same-origin image URLs, read through a canvas in the page.
async function pixels(page, urls) {
  return page.evaluate(async (urls) => Promise.all(urls.map(async (u) => {
    const img = new Image();
    img.src = u;
    await img.decode();
    const c = document.createElement("canvas");
    [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    return Array.from(g.getImageData(0, 0, c.width, c.height).data);
  })), urls);
}
function psnr(a, b) {
  if (a.length !== b.length) return -1;
  let se = 0;
  for (let i = 0; i < a.length; i++) if (i % 4 !== 3) se += (a[i] - b[i]) ** 2;
  const mse = se / (a.length * 0.75);
  return mse === 0 ? Infinity : 10 * Math.log10(255 ** 2 / mse);
}

try {
  // 1. The shared link runs on the GPU and reproduces the CLI's images.
  await withPage(webgpu, async (page) => {
    const t0 = Date.now();
    await page.goto(base + LINK);
    // Images form on the page while it denoises: previews appear before the run ends.
    const early = await page.waitForFunction(() => {
      const s = document.querySelector("#status")?.dataset.state;
      const shown = document.querySelectorAll("#live figure img").length;
      return shown > 0 ? { state: s, shown, status: document.querySelector("#status").textContent }
        : (s === "failed" || s === "ready" && document.querySelector("#trajectories")) ? { state: s, shown } : null;
    }, null, { timeout: TIMEOUT_MS, polling: 100 }).then((h) => h.jsonValue());
    await shot(page, "forming");
    check(early.state === "running" && early.shown === 6,
      `previews of all 6 images appear while the run is under way, ${((Date.now() - t0) / 1000).toFixed(0)} s after opening the link (${early.shown} shown: ${early.status})`);
    await settle(page);
    const fatal = await page.textContent("#fatal");
    check(!fatal && (await state(page)) === "ready", `the page runs the link (${((Date.now() - t0) / 1000).toFixed(0)} s): ${fatal || await page.textContent("#status")}`);
    // The shipped model's int8 weights stay int8 on the GPU: well under its 56.9 MB as f32.
    const status = await page.textContent("#status");
    const weights = Number((status.match(/([\d.]+) MB of weights on the GPU/) || [])[1]);
    check(weights > 0 && weights < 28, `int8 weights stay int8 on the GPU (${status})`);
    const rows = await page.$$eval("#trajectories .trajectory", (rs) => rs.map((r) => Array.from(r.querySelectorAll("img")).map((i) => i.src)));
    check(rows.length === 2 && rows.every((r) => r.length === 3), `two trajectories of neutral + 2 swap images (${rows.map((r) => r.length)})`);
    const names = ["neutral", "style0_t1", "style0_t3", "neutral", "style1_t1", "style1_t3"];
    const page_px = await pixels(page, rows.flat());
    const cli_px = await pixels(page, names.map((n) => `${base}cli/${n}.png`));
    const scores = page_px.map((p, i) => psnr(p, cli_px[i]));
    check(scores.length === 6 && scores.every((s) => s >= 30), `GPU images match the CLI's CPU images: PSNR ${scores.map((s) => s.toFixed(1)).join(", ")} dB (≥ 30)`);
    const timeline = await page.$$eval("#trajectories #timeline .row[data-t]", (rs) => rs.map((r) => [r.dataset.t, r.dataset.swapStep]));
    check(JSON.stringify(timeline) === JSON.stringify([["1", "2"], ["3", "0"]]),
      `the timeline has a row per swap point, swapping after steps 2 and 0 of 3 (${JSON.stringify(timeline)})`);
    await page.click("#trajectories .trajectory[data-style='0'] img.zoomable >> nth=2");
    await page.waitForSelector("#closer #difference", { timeout: 60000 });
    await shot(page, "closer");
    const closer = await page.textContent("#closer");
    const readout = await page.$$eval("#closer .readout tr", (rs) => rs.length);
    check(/t = 3/.test(closer) && /mean absolute change/.test(closer) && readout > 1,
      `a swap image opens large beside the neutral image, with a difference map and ${readout - 1} readouts`);
    await page.click("#close-closer");
    await shot(page, "results");
    const walk = await page.$$eval("#walkthrough li", (ls) => ls.length);
    check(walk >= 3, `the example has a guided walk-through (${walk} steps)`);
    const probs = await page.$$eval("#trajectories .trajectory .prob", (ps) => ps.map((p) => p.textContent));
    check(probs.length === 4 && probs.every((p) => /\d+%/.test(p)), `classifier readouts under each swap image (${probs.join(" | ")})`);
    // LPIPS from the neutral image (the shipped AlexNet weights) under each swap image.
    const lpips = await page.$$eval("#trajectories .trajectory .lpips", (ps) => ps.map((p) => p.textContent));
    const distances = lpips.map((t) => Number((t.match(/LPIPS (\d\.\d{3})/) || [])[1]));
    // Per trajectory (t = 1, then t = 3): the later swap changes more, so it lies farther from the neutral image.
    check(lpips.length === 4 && distances.every((d) => d >= 0 && d < 1) && distances[1] > distances[0] && distances[3] > distances[2],
      `LPIPS under each swap image, growing along each trajectory (${lpips.join(" | ")})`);
    const summary = await page.$$eval(".summary", (s) => s.map((x) => x.textContent));
    check(summary.length === 2 && summary.every((s) => /CFRT \d\.\d\d/.test(s)), `CFRT per trajectory (${summary.join(" | ")})`);
    const dots = await page.$$eval(".latent-map circle", (cs) => cs.map((c) => [Number(c.getAttribute("cx")), Number(c.getAttribute("cy"))]));
    check(dots.length === 5 && dots.every(([x, y]) => x >= 0 && x <= 300 && y >= 0 && y <= 300) && new Set(dots.map(String)).size === 5,
      `t-SNE map: a dot per latent, neutral + 2 styles × 2 swap points (${dots.length})`);
    check(page.url().includes("seed=42") && page.url().includes("frame=1"), `the address keeps the settings (${page.url()})`);
    // The run downloads as a zip in the CLI's layout; scripts/test-web.sh reads it back with the CLI.
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 600000 }), page.click("#download")]);
    const zip = path.join(cliOut, "page-run.zip");
    await download.saveAs(zip);
    const saved = await page.textContent("#saved");
    check(fs.statSync(zip).size > 1000 && /Saved traverse-chest-seed42\.zip/.test(saved), `the run downloads as a zip (${saved})`);

    // Your own image: the CLI's neutral image, inverted on the GPU and traversed; its download is compared
    // with `traverse invert` on the same file by scripts/check_download.py.
    await page.setInputFiles("#upload", path.join(cliOut, "neutral.png"));
    await page.waitForSelector("#uploaded", { timeout: 60000 });
    await page.click("#run");
    await page.waitForFunction(() => document.querySelector("#source") || document.querySelector("#fatal")?.textContent
      || document.querySelector("#status")?.dataset.state === "failed", null, { timeout: TIMEOUT_MS, polling: 500 });
    const source = (await page.textContent("#source").catch(() => null)) ?? (await page.textContent("#status"));
    check(/From your image neutral\.png: inverted and regenerated at [\d.]+ dB PSNR/.test(source), `an uploaded image is inverted and traversed (${source})`);
    await shot(page, "own-image");
    const [invDownload] = await Promise.all([page.waitForEvent("download", { timeout: 600000 }), page.click("#download")]);
    await invDownload.saveAs(path.join(cliOut, "page-invert.zip"));
    const first = await page.getAttribute("#frame-image", "src");
    await page.fill("#frame", "0").catch(() => {});
    await page.$eval("#frame", (el) => { el.value = "0"; el.dispatchEvent(new Event("input", { bubbles: true })); });
    await page.waitForFunction((f) => document.querySelector("#frame-image")?.getAttribute("src") !== f, first, { timeout: 300000 });
    const zero = await pixels(page, [await page.getAttribute("#frame-image", "src")]);
    // The run shown now is the uploaded image's: its own neutral image starts the traversal.
    const ownNeutral = await page.$eval("#trajectories .trajectory img", (i) => i.src);
    const neutral = await pixels(page, [ownNeutral]);
    check(psnr(zero[0], neutral[0]) >= 40, `frame 0 of the traversal is the neutral image (PSNR ${psnr(zero[0], neutral[0]).toFixed(1)} dB)`);
    check(page.url().includes("frame=0") === true, "moving the slider updates the link");

    // A second visit takes the weights from the browser's cache: HEAD requests check their versions, and no
    // weights file is downloaded again.
    const before = requests.length;
    await page.goto(base + "?example=chest&steps=1&t=1");
    await page.waitForFunction(() => ["running", "ready", "failed"].includes(document.querySelector("#status")?.dataset.state),
      null, { timeout: 600000, polling: 200 });
    const again = requests.slice(before).filter(([, p]) => p.endsWith(".safetensors"));
    const gets = again.filter(([m]) => m === "GET").length;
    const heads = again.filter(([m]) => m === "HEAD").length;
    check(["running", "ready"].includes(await state(page)) && gets === 0 && heads >= 5,
      `a second visit loads the weights from the browser's cache (${heads} HEAD, ${gets} GET requests for weights)`);
  });

  // Stop keeps what formed; the form checks what is typed and takes a prompt edit.
  await withPage(webgpu, async (page) => {
    await page.goto(base + "?example=chest&seed=7&steps=30&t=10,20");
    await page.waitForFunction(() => /step ([2-9]|\d\d) of 30/.test(document.querySelector("#status")?.textContent ?? "")
      || document.querySelector("#status")?.dataset.state === "failed", null, { timeout: TIMEOUT_MS, polling: 200 });
    await page.click("#stop");
    await page.waitForFunction(() => document.querySelector("#status")?.dataset.state !== "running", null,
      { timeout: TIMEOUT_MS, polling: 200 });
    await shot(page, "stopped");
    const status = await page.textContent("#status");
    const kept = await page.$$eval("#live figure img", (is) => is.length);
    const marker = await page.$$eval("#live #timeline line.now", (ls) => ls.length);
    check(/Stopped after step \d+ of 30/.test(status) && kept === 6 && marker === 1 && !(await page.$("#trajectories")),
      `Stop ends the run and keeps its ${kept} previews and the timeline's marker (${status})`);
    await page.fill("#swap-points", "5,x");
    const error = await page.textContent("#swap-points-error");
    check(/not a whole number/.test(error), `a bad swap point is flagged as it is typed (${error})`);
    await page.fill("#size", "100");
    const sizeError = await page.textContent("#size-error");
    check(/not a multiple of 8/.test(sizeError), `a bad image size is flagged as it is typed (${sizeError})`);
    await page.fill("#size", "");
    await page.fill("#swap-points", "10,20");
    await page.fill("#edit", "Chest X-ray [with no significant findings:of a subject with pleural effusion:0.6]");
    await page.$eval("#edit", (el) => el.dispatchEvent(new Event("change", { bubbles: true })));
    const neutral = await page.inputValue("#neutral");
    const link = decodeURIComponent((await page.getAttribute("#share", "href")).replace(/\+/g, " "));
    check(neutral === "Chest X-ray with no significant findings" && link.includes("t=10,12,20")
      && link.includes("style=Chest X-ray of a subject with pleural effusion"),
      `a prompt edit sets the prompts and adds its swap point (after 18 of 30 steps: t = 12): ${link}`);
  });

  // 2. A sharded model loads: every shard and index is fetched and the run starts (the loader fails on any
  // missing or unused tensor, so a started run has every weight). The link asks for f16, which SwiftShader
  // lacks: the page computes in f32 and says why.
  await withPage(webgpu, async (page) => {
    await page.goto(base + "?example=chest&steps=1&t=1&model=sharded&precision=f16");
    await page.waitForFunction(() => {
      const s = document.querySelector("#status")?.dataset.state;
      return document.querySelector("#fatal")?.textContent || s === "failed" || s === "running" || s === "ready";
    }, null, { timeout: 600000, polling: 200 });
    const status = await page.textContent("#status");
    const fetched = Object.keys(sharded).filter((f) => served.has(f)).length;
    check(["running", "ready"].includes(await state(page)) && fetched === Object.keys(sharded).length,
      `a sharded model loads (${fetched}/${Object.keys(sharded).length} shard files fetched): ${status}`);
    const adapter = await page.textContent("#status .adapter");
    check(/weights on the GPU, f32\) · f16 was asked for, but this GPU has no shader-f16/.test(adapter ?? ""),
      `an f16 link on a GPU without shader-f16 runs in f32 and says why (${adapter})`);
  });

  // The benchmark mode (`?bench=1`) on the shipped model: its table, with the int8 weights loaded as planned.
  await withPage(webgpu, async (page) => {
    await page.goto(base + "?bench=1&size=64&calls=1");
    await page.waitForFunction(() => ["ready", "failed"].includes(document.querySelector("#status")?.dataset.state) ||
      document.querySelector("#fatal")?.textContent, null, { timeout: TIMEOUT_MS, polling: 500 });
    const table = (await page.textContent("#bench")) || (await page.textContent("#status"));
    const [, planned, loaded] = table.match(/planned \/ loaded \| ([\d.]+) MB \/ ([\d.]+) MB/) ?? [];
    check(/guided U-Net call, median of 1 \| [\d.]+ s \([\d.]+ GFLOP, [\d.]+ GFLOP\/s\)/.test(table) && /wasm memory \(peak\) \| [\d.]+ MB/.test(table)
      && planned && planned === loaded, `?bench=1 times a U-Net call and a decode: ${table.replace(/\n/g, " ")}`);
    // The default 10-step trajectory at swap points 1..9: 10 trunk steps + 1 + 2 + … + 9 branch steps.
    check(/prompt-swap trajectory, 10 steps, swap at t = 1, 2, 3, 4, 5, 6, 7, 8, 9 \| [\d.]+ s \(55 guided evaluations in \d+ U-Net calls, [\d.]+ GFLOP\/s\)/.test(table)
      && /its 10 images decoded \| [\d.]+ s/.test(table), "?bench=1 times a prompt-swap trajectory and its decoding");
  });

  // 3. Bad links and a missing model are clear messages, not a blank page.
  await withPage(webgpu, async (page) => {
    await page.goto(base + "?example=chest&steps=abc&model=nowhere");
    const notice = await page.textContent("#notice");
    check(/URL parameter `steps`/.test(notice ?? ""), `a bad parameter is named (${notice})`);
    await page.goto(base + "?model=nowhere");
    await settle(page, 120000);
    const status = await page.textContent("#status");
    check((await state(page)) === "failed" && /nowhere\/text_encoder\/config\.json.*404/.test(status), `a missing model says which file (${status})`);
  });

  // 4. Without WebGPU the page says so.
  await withPage([], async (page) => {
    await page.goto(base);
    await settle(page, 120000);
    const status = await page.textContent("#status");
    check((await state(page)) === "failed" && /WebGPU/.test(status), `no WebGPU is a clear message (${status})`);
  });
} finally {
  server.close();
}
console.log(failures ? `${failures} web check(s) failed` : "all web checks passed");
process.exit(failures ? 1 : 0);
