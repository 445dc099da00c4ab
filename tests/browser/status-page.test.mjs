// Drives the status page at `/` in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core) against a real stack started with `target/debug/gloam up`.
// Run: ci/install-browser.sh && cargo build && (cd tests/browser && npm test)
// Writes a screenshot to docs/status-page.png (or $SCREENSHOT); $CHROMIUM overrides the browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const GLOAM = path.join(ROOT, "target/debug/gloam");
const HELLO = path.join(ROOT, "target/debug/hello-rust");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT || path.join(ROOT, "docs/status-page.png");

// Flags for a machine without network: no background connections, no first-run work.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking", "--disable-component-update",
  "--disable-sync"];

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` until it returns a truthy value, or fails with `what` after `ms`. */
async function until(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await sleep(100);
  }
}

let tmp, engine, engineExit, stderrLog, base, context;

function fn(name, handler, extra = "") {
  return `[functions.${name}]\ncommand = ${JSON.stringify(HELLO)}\n` +
    `env = { GLOAM_HANDLER = ${JSON.stringify(handler)} }\n${extra}\n`;
}

before(async () => {
  for (const p of [GLOAM, HELLO, CHROMIUM]) {
    assert.ok(fs.existsSync(p), `${p} is missing (cargo build --workspace; ci/install-browser.sh)`);
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gloam-browser-"));
  const config = path.join(tmp, "gloam.toml");
  fs.writeFileSync(config,
    `[engine]\nipc_root = ${JSON.stringify(path.join(tmp, "ipc"))}\nlisten = "127.0.0.1:0"\n` +
    `log_dir = ${JSON.stringify(path.join(tmp, "logs"))}\n\n` +
    fn("Echo", "Echo", "min_workers = 2") + fn("Foo", "Foo") + fn("Bar", "Bar") + fn("Fail", "Fail"));
  stderrLog = path.join(tmp, "engine.stderr");
  engine = spawn(GLOAM, ["up", config], {
    stdio: ["ignore", "pipe", fs.openSync(stderrLog, "w")],
  });
  engineExit = once(engine, "exit");
  const lines = readline.createInterface({ input: engine.stdout });
  const ready = new Promise((resolve, reject) => {
    const early = (code, sig) => reject(new Error(
      `gloam up exited (${code ?? sig}) before ready:\n${fs.readFileSync(stderrLog, "utf8")}`));
    engine.once("exit", early);
    lines.on("line", (line) => {
      const m = line.match(/^gloam: ready (http:\/\/\S+)/);
      if (m) {
        engine.off("exit", early);
        resolve(m[1]);
      }
    });
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("engine not ready in 30 s")), 30_000);
  });
  base = await Promise.race([ready, timeout]).finally(() => clearTimeout(timer));
  log(`engine ready at ${base}`);
  await until("GET /readyz to answer 200", async () => (await fetch(`${base}/readyz`)).ok, 30_000);

  context = await chromium.launchPersistentContext(path.join(tmp, "chromium-profile"), {
    executablePath: CHROMIUM,
    timeout: 30_000,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
  log("chromium started");
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (engine && engine.exitCode === null && engine.signalCode === null) engine.kill("SIGKILL");
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** POSTs to /function/Echo in `workers` concurrent loops until `stop()` is called. */
function load(workers = 4) {
  let running = true;
  let calls = 0;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; running; i++) {
      const body = `hello ${w}.${i}`;
      const r = await fetch(`${base}/function/Echo`, { method: "POST", body });
      assert.equal(r.status, 200, `Echo answered ${r.status}`);
      assert.equal(await r.text(), body);
      calls++;
    }
  });
  return { stop: async () => { running = false; await Promise.all(loops); return calls; } };
}

test("the status page shows the stack's functions and follows its load", async () => {
  const page = context.pages()[0] ?? await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });

  const resp = await page.goto(`${base}/`);
  assert.equal(resp.status(), 200);
  assert.match(resp.headers()["content-type"], /^text\/html/);
  assert.equal(await page.title(), "Gloam status");

  // The functions of the running stack, in the functions table and the legend.
  log("page loaded");
  await page.waitForSelector('#functions tr[data-function="Echo"]', { timeout: 10_000 });
  const names = await page.$$eval("#functions tbody tr", (rows) => rows.map((r) => r.dataset.function));
  assert.deepEqual(names.sort(), ["Bar", "Echo", "Fail", "Foo"]);
  assert.equal(await page.textContent("#tile-functions"), "4");
  assert.match(await page.textContent("#legend"), /Echo.*Foo.*Bar.*Fail|Echo/);
  // Workers: Echo has min_workers = 2; every worker row names a function of the stack.
  await until("the workers table to list Echo's two workers", async () =>
    (await page.$$eval("#workers tbody tr", (rows) =>
      rows.filter((r) => r.children[1]?.textContent === "Echo").length)) >= 2);
  assert.equal(await page.getAttribute("#conn", "data-state"), "ok");

  const completed = async () =>
    Number(await page.getAttribute('#functions tr[data-function="Echo"] td[data-field="completed"]', "data-value"));
  const before = await completed();

  // Load: Echo in a loop (plus one internal call chain and one failure for the other rows).
  assert.equal((await fetch(`${base}/function/Foo`, { method: "POST", body: "page" })).status, 200);
  assert.equal((await fetch(`${base}/function/Fail`, { method: "POST", body: "" })).status, 500);
  const l = load(2);
  log("load started");
  let rateSeen;
  try {
    // The page's numbers move: the completed count grows and a non-zero rate shows up.
    await until("Echo's completed count to grow in the page", async () => (await completed()) > before + 50);
    rateSeen = await until("a non-zero completed/s for Echo in the page", async () => {
      const t = await page.textContent('#functions tr[data-function="Echo"] td[data-field="completed_per_s"]');
      const v = Number(t.replace(/,/g, ""));
      return v > 0 ? t : false;
    });
    assert.notEqual(await page.textContent("#tile-rate"), "–");
    await until("a p99 latency for Echo", async () =>
      /\d/.test(await page.textContent('#functions tr[data-function="Echo"] td[data-field="p99_ms"]')));
    // More load for a few seconds: a few more points on the charts (and the screenshot).
    const more = load(4);
    await sleep(3_000);
    assert.ok((await more.stop()) > 0);
  } finally {
    assert.ok((await l.stop()) > 0);
  }
  assert.equal(await page.textContent('#functions tr[data-function="Fail"] td[data-field="failed"]'), "1");
  // No function failed to start: no restart, no problem listed.
  assert.equal(await page.textContent('#functions tr[data-function="Echo"] td[data-field="restarts"]'), "0");
  assert.equal(await page.isHidden("#problems"), true);
  // Each function's isolation, its limits on hover.
  assert.equal(await page.textContent('#functions tr[data-function="Echo"] td[data-field="isolation"]'), "process");
  assert.equal(await page.getAttribute('#functions tr[data-function="Echo"] td[data-field="isolation"]', "title"), "limits: none");
  // The charts drew something (a canvas with non-blank pixels).
  const inked = await page.$$eval("canvas", (cs) => cs.map((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }));
  assert.equal(inked.length, 3);
  for (const n of inked) assert.ok(n > 500, `a chart looks empty (${inked})`);

  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`Echo: ${await completed()} completed (was ${before}), ${rateSeen}/s seen; screenshot: ${SCREENSHOT}`);
  assert.deepEqual(problems, []);

  await context.close();
  context = null;
  engine.kill("SIGTERM");
  const t = setTimeout(() => engine.kill("SIGKILL"), 20_000);
  const [code, signal] = await engineExit;
  clearTimeout(t);
  log(`engine exited: ${code ?? signal}`);
  assert.equal(signal, null, `engine died of ${signal} (SIGKILL: no exit within 20 s of SIGTERM)`);
  assert.equal(code, 0, `engine exited ${code}:\n${fs.readFileSync(stderrLog, "utf8")}`);
});
