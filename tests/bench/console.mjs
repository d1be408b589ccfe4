// The console's benchmarks (issue 7, section 6), run by `make bench` with the release binary:
//
//   1. the window's cold start, from launching the app to the console's first data painted
//      (WebKitGTK under Xvfb, driven through WebKitWebDriver);
//   2. the window's idle memory: PSS and RSS of the app and its WebKit processes;
//   3. the Runs page over 1,000,000 runs in Chromium: first paint of the list, and frame
//      times while scrolling through it (the engine bench's database, opened read-only by
//      `stepdesk inspect` on a copy);
//   4. a committed change reaching the DOM: an event sent over HTTP until its run's row is in
//      the runs list (Chromium over Server-Sent Events, and the window over Tauri events).
//
// Every figure comes from this run; the report (Markdown) goes to stdout and, with
// `--write BENCHMARKS.md`, between `<!-- console-bench:start -->` and `<!-- console-bench:end -->`.
// Needs a display (xvfb-run) and a session bus with a Secret Service (tests/with-session.sh):
//
//   tests/with-session.sh xvfb-run -a -s "-screen 0 1280x800x24" \
//     node tests/bench/console.mjs --bin PATH/TO/release/stepdesk --write BENCHMARKS.md
//
// Node built-ins and the browser tests' playwright-core (tests/ui) only.

import { spawn, execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { copyBinary, fmt, git, machine, ms, writeSection } from "./report.mjs";
import { setTimeout as sleep } from "node:timers/promises";

import {
  cleanEnv,
  freePort,
  tempDir,
  removeDir,
  waitFor,
  stopChild,
  api,
  imageStats,
  EVENT_KEY,
} from "../support/stepdesk.mjs";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
// playwright-core as the browser tests install it (tests/ui/package.json, `make deps-npm`).
const { chromium } = createRequire(path.join(ROOT, "tests/ui/package.json"))("playwright-core");

const SECTIONS = ["cold", "memory", "million", "live"];

const { values: opts } = parseArgs({
  options: {
    bin: { type: "string" },
    write: { type: "string" },
    only: { type: "string", default: SECTIONS.join(",") },
    launches: { type: "string", default: "9" },
    "memory-launches": { type: "string", default: "3" },
    "idle-seconds": { type: "string", default: "10" },
    "history-runs": { type: "string", default: "2000" },
    "live-samples": { type: "string", default: "50" },
    "window-live-samples": { type: "string", default: "30" },
    "paint-loads": { type: "string", default: "7" },
    "scroll-frames": { type: "string", default: "900" },
    // How long after the first rows are shown the scroll starts (section 3), in ms.
    "scroll-delay": { type: "string", default: "1000" },
    "million-dir": { type: "string" },
    // A Chromium trace of the scroll (section 3), for DevTools' Performance panel.
    trace: { type: "string" },
    // Comma-separated trace categories instead of Playwright's (which include V8's sampling
    // profiler, which slows the page), e.g. "toplevel,devtools.timeline".
    "trace-categories": { type: "string" },
    // Every scroll frame's record (section 3) as JSON, to look at more than the slowest.
    "scroll-json": { type: "string" },
    // Serve the console from this directory (a `ui/dist`) instead of the one embedded in the
    // binary, in Chromium (sections 3 and 4): to compare console changes without building
    // the binary again. The API still comes from the binary, through Playwright's routing,
    // which makes each request a few ms slower: compare like with like.
    "ui-dist": { type: "string" },
    chromium: { type: "string", default: process.env.STEPDESK_CHROMIUM || "/usr/bin/chromium" },
    driver: { type: "string", default: process.env.STEPDESK_WEBKIT_DRIVER || "WebKitWebDriver" },
  },
});
const only = new Set(opts.only.split(",").map((s) => s.trim()).filter(Boolean));
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section ${s} (${SECTIONS.join(", ")})`);
const int = (k) => {
  const n = Number(opts[k]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${k}: a positive integer, not ${opts[k]}`);
  return n;
};

const log = (...a) => console.error(...a);
const mib = (kib) => `${fmt(kib / 1024, 1)} MiB`;

// ---- Statistics --------------------------------------------------------------------------

/** Nearest-rank percentile of `xs` (p in 0..100). */
function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const median = (xs) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const max = (xs) => (xs.length ? Math.max(...xs) : NaN);
const min = (xs) => (xs.length ? Math.min(...xs) : NaN);

// ---- The binary, copied so that a concurrent build cannot change it under the bench -------

function prepareBinary() {
  const b = copyBinary(opts.bin, "stepdesk-console-bench-bin-");
  const help = execFileSync(b.bin, ["--help"], { encoding: "utf8" });
  return { ...b, hasInspect: /^\s+inspect\s/m.test(help) };
}

const BIN = prepareBinary();
// The shared helpers (startServer, stepdeskBin) read STEPDESK_BIN.
process.env.STEPDESK_BIN = BIN.bin;

// ---- Processes -----------------------------------------------------------------------------

/** Every process of the tree rooted at `pid` (itself included), from /proc. */
function processTree(pid) {
  const children = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${d}/stat`, "utf8");
    } catch {
      continue; // gone
    }
    // The command may contain spaces and parentheses: the fields follow the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(d));
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** `/proc/PID/smaps_rollup` in KiB, with the process's name. */
function memoryOf(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (k) => Number(text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
  // The executable's name (comm is cut at 15 characters: "WebKitNetworkPr").
  const exe = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
  const name = exe ? path.basename(exe) : readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  return {
    pid,
    name,
    rss: field("Rss"),
    pss: field("Pss"),
    pssAnon: field("Pss_Anon"),
    pssFile: field("Pss_File"),
    pssShmem: field("Pss_Shmem"),
  };
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** User + system CPU time of a process tree, in clock ticks (processes that ended are not counted). */
function treeCpuTicks(pid) {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    } catch {
      // gone
    }
  }
  return ticks;
}

/** The pid of `name` among the descendants of `root` (e.g. the app under WebKitWebDriver). */
function findDescendant(root, predicate) {
  for (const pid of processTree(root)) {
    if (pid === root) continue;
    try {
      const exe = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
      if (predicate(exe, pid)) return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

async function appAnswers(url) {
  try {
    return (await fetch(url + "/health")).ok;
  } catch {
    return false;
  }
}

// ---- A data directory with a history of runs ------------------------------------------------

/** A `stepdesk serve` of the copied binary on `dataDir`; resolves once it listens. */
async function serve(dataDir, { fixtures = true, args } = {}) {
  const extra = {
    STEPDESK_KEYCHAIN_SERVICE: `dev.stepdesk.bench.${path.basename(dataDir)}`,
  };
  if (fixtures) extra.STEPDESK_TEST_FIXTURES = "1";
  args ??= ["serve", "--port", "0", "--data-dir", dataDir, "--event-key", EVENT_KEY];
  const child = spawn(BIN.bin, args, {
    env: cleanEnv(extra),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  const url = await waitFor("the server's URL", () => {
    if (child.exitCode !== null) throw new Error(`stepdesk exited (${child.exitCode}):\n${out}`);
    return out.match(/listening on (http:\/\/\S+)/)?.[1];
  }, { timeoutMs: 60000, intervalMs: 20 });
  return { child, url, output: () => out, stop: () => stopChild(child) };
}

/**
 * A data directory with `runs` runs of the test fixtures (mostly `fixture-noop`, a few
 * failing ones), sent over HTTP in batches of 100 and run to completion by the engine.
 */
async function makeHistory(runs) {
  const dir = tempDir("stepdesk-console-bench-history-");
  const s = await serve(dir);
  try {
    const failing = Math.floor(runs / 20);
    let sent = 0;
    while (sent < runs) {
      const batch = [];
      for (let i = 0; i < 100 && sent < runs; i++, sent++) {
        batch.push({ name: sent < failing ? "test/fail" : "test/noop", data: { n: sent } });
      }
      await api(s.url, `/e/${EVENT_KEY}`, { method: "POST", body: batch });
    }
    await waitFor(`${runs} finished runs`, async () => {
      const page = await api(s.url, "/api/admin/runs?status=Running&limit=1");
      const all = await api(s.url, "/api/admin/runs?limit=1");
      return page.total === 0 && all.total >= runs;
    }, { timeoutMs: 300000, intervalMs: 250 });
  } finally {
    await s.stop();
  }
  return dir;
}

/** A fresh copy of a data directory (small: the history above). */
function copyDir(src, prefix) {
  const dst = tempDir(prefix);
  cpSync(src, dst, { recursive: true });
  for (const f of ["server.json", "stepdesk.lock"]) removeDir(path.join(dst, f));
  return dst;
}

// ---- WebKitWebDriver (the real window) --------------------------------------------------------

class WebDriver {
  static async start(env) {
    const port = await freePort();
    const child = spawn(opts.driver, [`--port=${port}`, "--host=127.0.0.1"], {
      env: cleanEnv({ TAURI_WEBVIEW_AUTOMATION: "true", ...env }),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const wd = new WebDriver(child, `http://127.0.0.1:${port}`);
    await waitFor("WebKitWebDriver", async () => {
      if (child.exitCode !== null) throw new Error(`WebKitWebDriver exited:\n${wd.log}`);
      return (await wd.req("GET", "/status")).ready;
    }, { timeoutMs: 15000 });
    return wd;
  }

  constructor(child, base) {
    this.child = child;
    this.base = base;
    this.log = "";
    this.session = undefined;
    child.stdout.setEncoding("utf8").on("data", (d) => (this.log += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (this.log += d));
  }

  async req(method, route, body) {
    const res = await fetch(this.base + route, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`WebDriver ${method} ${route}: ${res.status} ${JSON.stringify(json.value)}`);
    return json.value;
  }

  /** Launches the app (a new session): WebKitWebDriver starts `bin` with its environment. */
  async open(bin) {
    const s = await this.req("POST", "/session", {
      capabilities: { alwaysMatch: { "webkitgtk:browserOptions": { binary: bin, args: [] } } },
    });
    this.session = s.sessionId;
  }

  execute(script, args = []) {
    return this.req("POST", `/session/${this.session}/execute/sync`, { script, args });
  }

  executeAsync(script, args = []) {
    return this.req("POST", `/session/${this.session}/execute/async`, { script, args });
  }

  async close() {
    if (!this.session) return;
    const s = this.session;
    this.session = undefined;
    await this.req("DELETE", `/session/${s}`).catch(() => {});
  }

  stop() {
    return stopChild(this.child, { group: true, graceMs: 5000 });
  }
}

/** The window's environment: the data directory and port; no fixtures unless asked. */
function windowEnv(dataDir, port, { fixtures = false } = {}) {
  const env = {
    STEPDESK_DATA_DIR: dataDir,
    STEPDESK_PORT: String(port),
    STEPDESK_EVENT_KEY: EVENT_KEY,
    STEPDESK_KEYCHAIN_SERVICE: `dev.stepdesk.bench.${path.basename(dataDir)}`,
  };
  if (fixtures) env.STEPDESK_TEST_FIXTURES = "1";
  return env;
}

/** A mark's absolute time (ms since the epoch) and detail, read in the page; null if not yet. */
const READ_MARK = `
  const m = performance.getEntriesByName(arguments[0], "mark")[0];
  return m ? { at: performance.timeOrigin + m.startTime, sinceOrigin: m.startTime,
               origin: performance.timeOrigin, detail: m.detail ?? null } : null;`;

// ---- 1. Cold start -----------------------------------------------------------------------------

async function coldStart(history) {
  const n = int("launches");
  const dataDir = copyDir(history, "stepdesk-console-bench-cold-");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const wd = await WebDriver.start(windowEnv(dataDir, port));
  const launches = [];
  try {
    for (let i = 0; i < n; i++) {
      await waitFor("the previous app to stop", async () => !(await appAnswers(url)), { timeoutMs: 20000 });
      const t0 = Date.now();
      await wd.open(BIN.bin);
      const tSession = Date.now();
      const mark = await waitFor("stepdesk:first-data in the window", () =>
        wd.execute(READ_MARK, ["stepdesk:first-data"]), { timeoutMs: 30000, intervalMs: 20 });
      const rows = await wd.execute(READ_MARK, ["stepdesk:runs-first-rows"]);
      const domRows = await wd.execute(`return document.querySelectorAll("[data-testid=runs-list] a.run-row").length`);
      const appPid = findDescendant(wd.child.pid, (exe) => exe === BIN.bin);
      const launch = {
        total: mark.at - t0,
        toOrigin: mark.origin - t0,
        originToData: mark.sinceOrigin,
        session: tSession - t0,
        page: mark.detail?.page,
        markRows: mark.detail?.rows,
        domRows,
        rowsMark: rows ? rows.at - t0 : null,
        appPid,
      };
      if (!(launch.markRows > 0)) throw new Error(`launch ${i + 1}: first data without rows: ${JSON.stringify(launch)}`);
      launches.push(launch);
      log(`  cold start ${i + 1}/${n}: ${ms(launch.total)} (to navigation start ${ms(launch.toOrigin)}, then ${ms(launch.originToData)}; ${launch.markRows} rows painted)`);
      await wd.close();
    }
  } finally {
    await wd.close();
    await wd.stop();
    removeDir(dataDir);
  }
  return { launches };
}

// ---- 2. Idle memory ------------------------------------------------------------------------------

/** One launch of the app as a person starts it (no WebDriver): its memory after `idle` s. */
async function idleMemoryOnce(history, idleSeconds) {
  const dataDir = copyDir(history, "stepdesk-console-bench-mem-");
  const home = tempDir("stepdesk-console-bench-home-");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(BIN.bin, [], {
    env: cleanEnv({
      ...windowEnv(dataDir, port),
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, ".config"),
      XDG_CACHE_HOME: path.join(home, ".cache"),
      XDG_DATA_HOME: path.join(home, ".local/share"),
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  try {
    await waitFor("the app to listen", () => {
      if (child.exitCode !== null) throw new Error(`the app exited:\n${out}`);
      return out.includes("Stepdesk is listening on");
    }, { timeoutMs: 60000 });
    // The window is up once its WebKit web process runs; then the page loads its data.
    await waitFor("the window's web process", () =>
      findDescendant(child.pid, (exe) => exe.endsWith("WebKitWebProcess")), { timeoutMs: 30000 });
    // The page loads its data within a few hundred ms (section 1); the idle time and its CPU
    // (clock ticks of user + system time of the tree, from /proc) are counted from 2 s on.
    await sleep(2000);
    const cpu0 = treeCpuTicks(child.pid);
    await sleep(idleSeconds * 1000);
    const idleCpuMs = ((treeCpuTicks(child.pid) - cpu0) * 1000) / CLK_TCK;
    const pids = processTree(child.pid);
    const procs = pids.map((p) => {
      try {
        return memoryOf(p);
      } catch {
        return null;
      }
    }).filter(Boolean);
    // What is on the (virtual) screen: the console with its data, not a blank window.
    const shot = path.join(tempDir("stepdesk-console-bench-shot-"), "idle.png");
    execFileSync("import", ["-window", "root", shot]);
    const stats = imageStats(shot);
    removeDir(path.dirname(shot));
    if (!(stats.stddev > 0.02 && stats.colors > 50)) throw new Error(`the idle window looks blank: ${JSON.stringify(stats)}`);
    // And the engine behind it has the history (the page shows the first 100 of them).
    const page = await api(url, "/api/admin/runs?limit=1");
    return {
      procs,
      pss: procs.reduce((a, p) => a + p.pss, 0),
      rss: procs.reduce((a, p) => a + p.rss, 0),
      runs: page.total,
      idleCpuMs,
    };
  } finally {
    await stopChild(child, { graceMs: 10000 });
    removeDir(dataDir);
    removeDir(home);
  }
}

/** The engine alone (`stepdesk serve`, same binary and data), as a baseline. */
async function serveMemory(history, idleSeconds) {
  const dataDir = copyDir(history, "stepdesk-console-bench-serve-");
  const s = await serve(dataDir, { fixtures: false });
  try {
    await api(s.url, "/api/admin/runs?limit=100");
    await sleep(idleSeconds * 1000);
    const procs = processTree(s.child.pid).map(memoryOf);
    return { pss: procs.reduce((a, p) => a + p.pss, 0), rss: procs.reduce((a, p) => a + p.rss, 0) };
  } finally {
    await s.stop();
    removeDir(dataDir);
  }
}

async function idleMemory(history) {
  const idle = int("idle-seconds");
  const runs = [];
  for (let i = 0; i < int("memory-launches"); i++) {
    const r = await idleMemoryOnce(history, idle);
    log(`  idle memory ${i + 1}: PSS ${mib(r.pss)}, RSS ${mib(r.rss)} (${r.procs.map((p) => `${p.name} ${mib(p.pss)}`).join(", ")})`);
    runs.push(r);
  }
  const engine = await serveMemory(history, idle);
  log(`  engine alone (serve): PSS ${mib(engine.pss)}, RSS ${mib(engine.rss)}`);
  return { idle, runs, engine };
}

// ---- Chromium ------------------------------------------------------------------------------

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // performance.memory to the byte, not rounded: the scroll notes garbage collections.
  "--enable-precise-memory-info",
];

async function launchChromium() {
  return chromium.launch({ executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS });
}

const MIME = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2", ".json": "application/json" };

/** The console's files from `dir` (see --ui-dist); the API (`/api/...`) from the binary. */
async function serveUiDist(context, dir) {
  await context.route("**/*", async (route) => {
    const { pathname } = new URL(route.request().url());
    if (pathname.startsWith("/api/")) return route.continue();
    const root = path.resolve(dir);
    const file = path.join(root, pathname === "/" ? "index.html" : path.normalize(pathname));
    if (!file.startsWith(root + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
      return route.fulfill({ status: 404, body: "not in --ui-dist" });
    }
    return route.fulfill({
      status: 200,
      contentType: MIME[path.extname(file)] ?? "application/octet-stream",
      body: readFileSync(file),
    });
  });
}

async function newPage(browser) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale: "en-US",
    timezoneId: "UTC",
  });
  if (opts["ui-dist"]) await serveUiDist(context, opts["ui-dist"]);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { context, page, errors };
}

// ---- 3. A million runs -------------------------------------------------------------------------

function dirBytes(dir) {
  let n = 0;
  for (const f of readdirSync(dir)) {
    const st = statSync(path.join(dir, f));
    if (st.isFile()) n += st.size;
  }
  return n;
}

/** The engine bench's cached database directory (see crates/stepdesk-bench/src/stored.rs). */
function findMillionDir() {
  if (opts["million-dir"]) return opts["million-dir"];
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache", "stepdesk-target");
  const cache = path.join(target, "bench-cache");
  if (!existsSync(cache)) return null;
  const dirs = readdirSync(cache)
    .filter((d) => d.startsWith("runs-1000000-") && existsSync(path.join(cache, d, "complete")))
    .map((d) => path.join(cache, d))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return dirs[0] ?? null;
}

/** The files of a directory with their size and modification time, to check nothing wrote. */
function fingerprint(dir) {
  return readdirSync(dir)
    .sort()
    .map((f) => {
      const st = statSync(path.join(dir, f), { bigint: true });
      return `${f}:${st.size}:${st.mtimeNs}`;
    })
    .join("\n");
}

/** The Runs page over a million runs: first paint of the list, then frame times while scrolling. */
async function million() {
  if (!BIN.hasInspect) {
    return { skipped: "this binary has no `stepdesk inspect` command yet (read-only inspection of a copy)" };
  }
  const src = findMillionDir();
  if (!src) {
    return { skipped: "no cached 1,000,000-run database: run `cargo run --release -p stepdesk-bench -- --only stored` first (make bench does)" };
  }
  // `stepdesk inspect` copies the database into a private temporary directory and opens
  // that read-only: the cache is never written (checked below all the same).
  const before = fingerprint(src);
  const bytes = dirBytes(src);
  log(`  1M runs: stepdesk inspect ${src} (${fmt(bytes / 2 ** 20)} MiB)`);
  let s;
  const browser = await launchChromium();
  try {
    const started = Date.now();
    s = await serve(src, { fixtures: false, args: ["inspect", src, "--port", "0", "--no-window"] });
    const startMs = Date.now() - started;
    const info = await api(s.url, "/api/rpc/info", { method: "POST", body: {} });
    if (!info.read_only) throw new Error("`stepdesk inspect` did not open the copy read-only");

    // Baseline: the first page (100 runs, with its total) over HTTP, as the page asks for it.
    const apiTimes = [];
    for (let i = 0; i < 30; i++) {
      const t = performance.now();
      const page = await api(s.url, "/api/rpc/runs", { method: "POST", body: { limit: 100 } });
      apiTimes.push(performance.now() - t);
      if (page.runs.length !== 100) throw new Error(`the first page has ${page.runs.length} runs`);
    }
    const first = await api(s.url, "/api/rpc/runs", { method: "POST", body: { limit: 1 } });

    // First paint: a new browser context each time (empty cache: the page's scripts load too).
    const loads = [];
    for (let i = 0; i < int("paint-loads"); i++) {
      const { context, page, errors } = await newPage(browser);
      try {
        await page.goto(`${s.url}/#/runs`);
        const mark = await waitFor("stepdesk:runs-first-rows", () =>
          page.evaluate((name) => {
            const m = performance.getEntriesByName(name, "mark")[0];
            if (!m) return null;
            const fcp = performance.getEntriesByName("first-contentful-paint")[0];
            const runs = performance.getEntriesByType("resource").find((r) => r.name.endsWith("/api/rpc/runs"));
            return {
              at: m.startTime,
              rows: m.detail?.rows,
              fcp: fcp?.startTime,
              runsStart: runs?.startTime,
              runsEnd: runs?.responseEnd,
            };
          }, "stepdesk:runs-first-rows"), { timeoutMs: 30000, intervalMs: 20 });
        if (!(mark.rows > 0)) throw new Error(`first paint without rows: ${JSON.stringify(mark)}`);
        if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
        loads.push(mark);
        log(`  1M first paint ${i + 1}: ${ms(mark.at)} (${mark.rows} rows; runs request ${ms(mark.runsStart)}–${ms(mark.runsEnd)}, FCP ${ms(mark.fcp)})`);
      } finally {
        await context.close();
      }
    }

    const scroll = await scrollFrames(browser, s.url);
    // The generator names its directory by the runs it holds (runs-1000000-schemaN-genN).
    const stored = Number(path.basename(src).match(/^runs-(\d+)-/)?.[1]) || first.total;
    return { src, stored, bytes, startMs, apiTimes, total: first.total, totalExact: first.total_exact, loads, scroll };
  } finally {
    await browser.close();
    if (s) await s.stop();
    if (fingerprint(src) !== before) {
      // Make the engine bench build it again rather than trust it.
      removeDir(path.join(src, "complete"));
      throw new Error(`the cached database in ${src} changed during the inspection; its cache marker was removed`);
    }
  }
}

/**
 * Scrolls the runs list by one screenful per frame for `frames` frames (the virtual list
 * loads the next page of 100 runs as the end comes near), recording each frame: the time
 * between frames (requestAnimationFrame timestamps) and the main thread's work in it (from
 * the frame's start, its scroll event or else its requestAnimationFrame, until a task queued
 * in its requestAnimationFrame runs, after style, layout and paint), plus long animation
 * frames as Chromium reports them.
 *
 * And what happened in each frame, to explain the slow ones: rows added to and removed from
 * the DOM, whether a page of runs was appended (the list's height, read from the sizer's
 * inline style, which needs no layout) and how long the page took to handle, `runs` requests
 * that started or ended in it (Resource Timing), and the JS heap (precise with
 * --enable-precise-memory-info: a drop is a garbage collection).
 */
async function scrollFrames(browser, url) {
  const { context, page, errors } = await newPage(browser);
  try {
    await page.goto(`${url}/#/runs`);
    await page.locator("[data-testid=runs-list] a.run-row").first().waitFor({ timeout: 30000 });
    // A person scrolls once the list is there, not within the same frame: the page's load
    // (its other requests, Chromium's own work after it) is over by then, and is measured
    // as the first paint above, not here.
    await page.waitForTimeout(Number(opts["scroll-delay"]));
    const frames = int("scroll-frames");
    if (opts.trace) {
      const categories = opts["trace-categories"]?.split(",");
      await browser.startTracing(page, { path: opts.trace, screenshots: false, categories });
    }
    const result = await page.evaluate(async (frames) => {
      const scroller = document.querySelector("[data-testid=runs-list] .scroller");
      const sizer = scroller.querySelector(".sizer");
      const loaf = [];
      let po;
      try {
        po = new PerformanceObserver((l) => loaf.push(...l.getEntries().map((e) => e.duration)));
        po.observe({ type: "long-animation-frame", buffered: false });
      } catch {
        po = undefined;
      }
      // Rows in and out of the DOM, counted per frame, and rows kept in the DOM that show
      // another run (a list that reuses its row elements changes their `data-run-id`).
      let added = 0;
      let removed = 0;
      let reused = 0;
      const mo = new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === "attributes") reused++;
          added += r.addedNodes.length;
          removed += r.removedNodes.length;
        }
      });
      mo.observe(sizer, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-run-id"] });
      // The page's own handling of each page of runs: the console reads a response's text,
      // then parses it, appends the runs and lets Svelte update the list, all in the
      // microtasks that follow; a task queued when the text is read runs after them.
      const handled = [];
      const text = Response.prototype.text;
      Response.prototype.text = async function () {
        const body = await text.call(this);
        if (this.url.endsWith("/api/rpc/runs")) {
          const at = performance.now();
          const ch = new MessageChannel();
          ch.port1.onmessage = () => {
            handled.push({ at, ms: performance.now() - at });
            ch.port1.close();
          };
          ch.port2.postMessage(null);
        }
        return body;
      };
      const heap = () => performance.memory?.usedJSHeapSize ?? NaN;
      const height = () => parseFloat(sizer.style.height) || 0;
      // The scroll set in one frame is handled in the next, before its animation frame
      // callbacks: the list's scroll listener renders the rows then. A capturing listener on
      // the window runs before it, and starts the frame's clock.
      let scrollAt;
      const onScroll = () => (scrollAt ??= performance.now());
      addEventListener("scroll", onScroll, { capture: true, passive: true });
      const intervals = [];
      const work = [];
      // Per frame, from the end of the one before to its own end: { start, raf, end,
      // prevEnd, loadedPrev, loadedRaf, loadedAfter, heapPrev, heapAfter, added, removed,
      // reused, stall }.
      const info = [];
      let stalls = 0; // frames where the list was at its loaded end, waiting for a page
      const step = scroller.clientHeight;
      const t0 = performance.now();
      let prev = { end: t0, loaded: height(), heap: heap() };
      let last;
      await new Promise((done) => {
        let n = 0;
        const frame = (ts) => {
          if (last !== undefined) intervals.push(ts - last);
          last = ts;
          const raf = performance.now();
          const start = scrollAt ?? raf;
          scrollAt = undefined;
          const rec = { start, raf, prevEnd: prev.end, loadedPrev: prev.loaded, loadedRaf: height(), heapPrev: prev.heap };
          const ch = new MessageChannel();
          ch.port1.onmessage = () => {
            const end = performance.now();
            work.push(end - start);
            // The mutation records of the frame's DOM changes were delivered (microtasks)
            // before this task.
            Object.assign(rec, { end, added, removed, reused, heapAfter: heap(), loadedAfter: height() });
            added = removed = reused = 0;
            prev = { end, loaded: rec.loadedAfter, heap: rec.heapAfter };
            ch.port1.close();
          };
          ch.port2.postMessage(null);
          if (n++ >= frames) return done();
          info.push(rec);
          const before = scroller.scrollTop;
          scroller.scrollTop = before + step;
          rec.stall = scroller.scrollTop === before;
          if (rec.stall) stalls++;
          requestAnimationFrame(frame);
        };
        requestAnimationFrame(frame);
      });
      await new Promise((r) => setTimeout(r, 100));
      po?.disconnect();
      mo.disconnect();
      removeEventListener("scroll", onScroll, { capture: true });
      Response.prototype.text = text;
      const requests = performance
        .getEntriesByType("resource")
        .filter((e) => e.name.endsWith("/api/rpc/runs") && e.startTime >= t0)
        .map((e) => ({ start: e.startTime, end: e.responseEnd }));
      const rows = document.querySelectorAll("[data-testid=runs-list] a.run-row");
      const lastRow = Math.max(...[...rows].map((a) => Number(a.dataset.index)));
      return { intervals, work: work.slice(0, frames), info, requests, handled, loaf, loafSupported: !!po, stalls, step, lastRow };
    }, frames);
    if (opts.trace) await browser.stopTracing();
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    result.slowest = slowestFrames(result, 10);
    if (opts["scroll-json"]) writeFileSync(opts["scroll-json"], JSON.stringify(result));
    log(`  scroll: ${result.intervals.length} frames, last row ${result.lastRow}, work p99 ${ms(pct(result.work, 99))}, max ${ms(max(result.work))}, ${result.work.filter((w) => w > 16).length} over 16 ms, interval p99 ${ms(pct(result.intervals, 99))}, ${result.intervals.filter((w) => w > 25).length} over 25 ms, ${result.stalls} stalls`);
    for (const f of result.slowest) log(`    frame ${f.index}: ${ms(f.work)} ${f.what}`);
    return result;
  } finally {
    await context.close();
  }
}

/**
 * The `n` frames with the most main-thread work, each with what happened since the frame
 * before ended: the rows it added to and removed from the DOM, a page of runs appended (and
 * so the rows loaded; "between frames" when a task of its own did it before this frame
 * began, which the frame's work does not count but its interval shows), the `runs` requests
 * that started or whose response arrived, a garbage collection (the heap shrank), a stall at
 * the loaded end, and the interval to the next frame.
 */
function slowestFrames(sc, n) {
  return sc.work
    .map((work, index) => ({ work, index }))
    .sort((a, b) => b.work - a.work)
    .slice(0, n)
    .map(({ work, index }) => ({ index, work, what: frameWhat(sc, index) }));
}

function frameWhat(sc, index) {
  const f = sc.info[index];
  const what = [`${f.added} rows in, ${f.removed} out${f.reused ? `, ${f.reused} reused for other runs` : ""}`];
  const rows = (px) => Math.round(px / 36);
  if (rows(f.loadedAfter) !== rows(f.loadedPrev)) {
    const between = rows(f.loadedRaf) !== rows(f.loadedPrev);
    what.push(`page appended${between ? " between frames" : ""} (${fmt(rows(f.loadedPrev))} → ${fmt(rows(f.loadedAfter))} rows loaded)`);
  }
  const started = sc.requests.filter((q) => q.start >= f.prevEnd && q.start < f.end).length;
  const ended = sc.requests.filter((q) => q.end >= f.prevEnd && q.end < f.end).length;
  if (started) what.push(`${started} runs request${started > 1 ? "s" : ""} sent`);
  if (ended) what.push(`${ended} runs response${ended > 1 ? "s" : ""} in`);
  for (const h of sc.handled.filter((h) => h.at >= f.prevEnd && h.at < f.end)) {
    what.push(`page handled in ${ms(h.ms)}${h.at < f.start ? " between frames" : ""}`);
  }
  const heapMiB = (f.heapAfter - f.heapPrev) / 2 ** 20;
  if (heapMiB < -0.5) what.push(`GC (heap ${fmt(heapMiB, 1)} MiB)`);
  if (f.stall) what.push("stalled at the loaded end");
  const next = sc.intervals[index];
  if (next !== undefined) what.push(`next frame after ${ms(next)}`);
  return what.join("; ");
}

// ---- 4. A change reaching the DOM ----------------------------------------------------------

/** Installed in the page: the time each run row first appears, and each change notice. */
const OBSERVE = `
  (() => {
    const seen = new Map(); // run id -> {dom, painted}
    const notices = []; // Date.now() of each change notice naming runs, on our own feed
    const waiters = [];
    const list = document.querySelector("[data-testid=runs-list]") || document.body;
    for (const a of list.querySelectorAll("a.run-row")) seen.set(a.dataset.runId, { dom: 0, painted: 0 });
    // A run's row appears as a new element, or as an element of the list that now shows
    // another run (a list that reuses its row elements changes their data-run-id).
    new MutationObserver((records) => {
      const now = Date.now();
      for (const r of records) for (const n of r.type === "attributes" ? [r.target] : r.addedNodes) {
        if (!(n instanceof HTMLElement)) continue;
        const rows = n.matches("a.run-row") ? [n] : [...n.querySelectorAll("a.run-row")];
        for (const a of rows) {
          const id = a.dataset.runId;
          if (!id || seen.has(id)) continue;
          const entry = { dom: now, painted: 0 };
          seen.set(id, entry);
          requestAnimationFrame(() => {
            const ch = new MessageChannel();
            ch.port1.onmessage = () => { entry.painted = Date.now(); ch.port1.close(); };
            ch.port2.postMessage(null);
          });
          for (const w of waiters.splice(0)) w(id);
        }
      }
    }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-run-id"] });
    window.__bench = { seen, notices, waiters };
  })();`;

/** Chromium only: our own EventSource on the change feed, for the notice's arrival time. */
const OBSERVE_FEED = `
  (() => {
    const es = new EventSource("api/admin/changes");
    es.addEventListener("changes", (e) => {
      const now = Date.now();
      if (e.data.includes('"runs"')) window.__bench.notices.push(now);
    });
    window.__bench.es = es;
    return new Promise((resolve) => es.addEventListener("open", () => resolve(true)));
  })()`;

// Functions run in the page (as source: the same code in Chromium and in the window).
const ARM = `() => {
  window.__bench.next = new Promise((resolve) => window.__bench.waiters.push((id) => resolve({ id, at: Date.now() })));
  return true;
}`;
const NEXT = `() => window.__bench.next`;
const ENTRY = `(id) => { const e = window.__bench.seen.get(id); return e && e.painted ? e : null; }`;
const NOTICE = `(t0) => window.__bench.notices.find((t) => t >= t0) ?? null`;

/** Calls a function given as source in a Chromium page (Playwright awaits a promise). */
const chromiumCall = (page) => (src, ...args) => page.evaluate(`(${src})(...${JSON.stringify(args)})`);

/** The same through WebDriver (an async script, so that a promise is awaited too). */
const windowCall = (wd) => (src, ...args) =>
  wd.executeAsync(
    `const done = arguments[arguments.length - 1];
     Promise.resolve((${src}).apply(null, [].slice.call(arguments, 0, -1))).then(done, (e) => done({ error: String(e) }));`,
    args,
  );

/**
 * `samples` events sent one at a time; for each: t0 just before the HTTP request, the ack,
 * and when the run's row was added to the DOM (and painted), as the page saw it. Before t0
 * the page is armed to report the next new row, so that nothing polls the page while the
 * change travels; the run's id is asked of the API only after the row was seen.
 */
async function liveSamples({ base, samples, call, feed }) {
  const out = [];
  // One unmeasured event first: the window's feed is live from its first notice on.
  for (let i = -1; i < samples; i++) {
    await call(ARM);
    const t0 = Date.now();
    const res = await fetch(`${base}/e/${EVENT_KEY}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "test/noop", data: { sample: i } }),
    });
    const tAck = Date.now();
    const { ids } = await res.json();
    if (!res.ok || !ids?.length) throw new Error(`POST /e answered ${res.status}`);
    await call(NEXT);
    // The run of this event (a cron run could have come first: wait for ours).
    const runId = await waitFor("the sample's run", async () => {
      const runs = await api(base, `/api/admin/events/${ids[0]}/runs`);
      return runs[0]?.id;
    }, { timeoutMs: 10000, intervalMs: 20 });
    const entry = await waitFor("the sample's row in the DOM", () => call(ENTRY, runId), { timeoutMs: 10000, intervalMs: 20 });
    const notice = feed ? await call(NOTICE, t0) : null;
    if (i >= 0) {
      out.push({ dom: entry.dom - t0, painted: entry.painted - t0, ack: tAck - t0, notice: notice ? notice - t0 : null });
    }
    // Let the list settle (the run completes: more notices and refetches) before the next.
    await sleep(150 + Math.random() * 100);
  }
  return out;
}

async function liveChromium(history) {
  const dataDir = copyDir(history, "stepdesk-console-bench-live-");
  const s = await serve(dataDir);
  const browser = await launchChromium();
  try {
    const { page, errors } = await newPage(browser);
    await page.goto(`${s.url}/#/runs`);
    await page.locator("[data-testid=runs-list] a.run-row").first().waitFor({ timeout: 30000 });
    await page.locator("[data-testid=feed-state][data-feed=live]").waitFor({ timeout: 15000 });
    await page.evaluate(OBSERVE);
    await page.evaluate(OBSERVE_FEED);
    const samples = await liveSamples({ base: s.url, samples: int("live-samples"), call: chromiumCall(page), feed: true });
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    return { samples };
  } finally {
    await browser.close();
    await s.stop();
    removeDir(dataDir);
  }
}

async function liveWindow(history) {
  const dataDir = copyDir(history, "stepdesk-console-bench-wlive-");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const wd = await WebDriver.start(windowEnv(dataDir, port, { fixtures: true }));
  try {
    await wd.open(BIN.bin);
    await waitFor("the runs list in the window", () =>
      wd.execute(`return document.querySelectorAll("[data-testid=runs-list] a.run-row").length > 0`), { timeoutMs: 30000 });
    await wd.execute(OBSERVE);
    const samples = await liveSamples({ base, samples: int("window-live-samples"), call: windowCall(wd), feed: false });
    const feed = await wd.execute(`return document.querySelector("[data-testid=feed-state]")?.dataset.feed`);
    return { samples, feed };
  } finally {
    await wd.close();
    await wd.stop();
    removeDir(dataDir);
  }
}

// ---- The report -----------------------------------------------------------------------------


function versions() {
  const chromiumVersion = (() => {
    try {
      return execFileSync(opts.chromium, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "unknown";
    }
  })();
  const webkit = (() => {
    try {
      return execFileSync("dpkg-query", ["-W", "-f=${Version}", "libwebkit2gtk-4.1-0"], { encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  })();
  return { chromiumVersion, webkit };
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(" / ");

function statRow(label, xs, unit = ms) {
  return `| ${label} | ${xs.length} | ${unit(median(xs))} | ${unit(pct(xs, 95))} | ${unit(max(xs))} |`;
}

function report(r) {
  const L = [];
  const targets = [];
  const target = (what, measured, met) => targets.push(`| ${what} | ${measured} | ${met === null ? "not measured" : met ? "met" : "**not met**"} |`);

  if (r.cold) {
    const t = r.cold.launches.map((l) => l.total);
    target("Window cold start to first data painted: under 1 s (release)", `median ${ms(median(t))}, max ${ms(max(t))} over ${t.length} launches`, max(t) < 1000);
  } else target("Window cold start to first data painted: under 1 s (release)", "–", null);
  if (r.memory) {
    const p = r.memory.runs.map((x) => x.pss);
    const rs = r.memory.runs.map((x) => x.rss);
    target("Idle memory of the app and its WebKit processes: at most 250 MiB PSS", `${mib(median(p))} PSS (max ${mib(max(p))}), ${mib(median(rs))} RSS`, max(p) <= 250 * 1024);
  } else target("Idle memory of the app and its WebKit processes: at most 250 MiB PSS", "–", null);
  if (r.million && !r.million.skipped) {
    const a = r.million.loads.map((l) => l.at);
    target("Runs page with 1,000,000 runs: first paint under 300 ms", `median ${ms(median(a))}, max ${ms(max(a))} over ${a.length} loads`, max(a) < 300);
    const w = r.million.scroll.work;
    const over = w.filter((x) => x > 16).length;
    target("Scrolling 1,000,000 runs: frames under 16 ms", `main-thread work per frame p99 ${ms(pct(w, 99))}, max ${ms(max(w))}; ${fmt((100 * over) / w.length, 1)}% of ${w.length} frames over 16 ms`, over === 0);
  } else {
    target("Runs page with 1,000,000 runs: first paint under 300 ms", r.million?.skipped ?? "–", null);
    target("Scrolling 1,000,000 runs: frames under 16 ms", "–", null);
  }
  if (r.live) {
    const d = r.live.samples.map((x) => x.dom);
    target("A committed change reaches the DOM in under 100 ms (browser, SSE)", `p50 ${ms(median(d))}, p95 ${ms(pct(d, 95))}, max ${ms(max(d))} over ${d.length} events`, max(d) < 100);
  } else target("A committed change reaches the DOM in under 100 ms (browser, SSE)", "–", null);
  if (r.wlive) {
    const d = r.wlive.samples.map((x) => x.dom);
    target("The same in the window (Tauri events)", `p50 ${ms(median(d))}, p95 ${ms(pct(d, 95))}, max ${ms(max(d))} over ${d.length} events`, max(d) < 100);
  }

  L.push("## Console: window start, memory, a million runs, live updates (issue 7, section 6)", "");
  L.push(
    "Generated by `tests/bench/console.mjs` in one run; do not edit by hand. Every figure in this section comes from the run described here; rerun the command to reproduce it.",
    "",
  );
  L.push("| | |", "|---|---|");
  L.push(`| Command | \`${r.command}\` |`);
  L.push(`| Date | ${r.date} |`);
  L.push(`| Machine | ${machine()} |`);
  L.push(`| Commit | \`${r.commit}\`${r.dirty ? " (with uncommitted changes)" : ""} |`);
  L.push(`| Binary | ${BIN.version}, release build \`${r.binSrc}\`, copied before the run (sha256 \`${BIN.sha.slice(0, 16)}…\`) |`);
  L.push(`| Browsers | WebKitGTK ${r.versions.webkit} (the window, under Xvfb 1280×800×24, WebKitWebDriver); ${r.versions.chromiumVersion}, headless, \`--disable-gpu\`, through playwright-core |`);
  L.push(`| Load average at start (1/5/15 min) | ${r.loadStart} |`);
  L.push(`| Load average at end (1/5/15 min) | ${r.loadEnd} |`);
  L.push(`| Total bench time | ${fmt(r.seconds)} s |`);
  if (r.historyRuns) L.push(`| History | A data directory with ${fmt(r.historyRuns)} runs of the test fixtures (5% failing), made over HTTP by the engine itself before the measurements (${fmt(r.historySeconds, 1)} s, not timed); each measurement uses a fresh copy |`);
  L.push("");
  L.push("### Targets", "", "| Target (issue 7) | Measured | |", "|---|---|---|", ...targets, "");

  if (r.cold) {
    const ls = r.cold.launches;
    L.push("### 1. Window cold start to first data painted", "");
    L.push(
      `The release binary launched ${ls.length} times on the same data directory (a new process each time; the OS file cache is warm after the first) by WebKitWebDriver, which starts the app as \`webkitgtk:browserOptions.binary\` with \`TAURI_WEBVIEW_AUTOMATION=true\`. No fixtures: the app's own functions only. t0 is \`Date.now()\` in the bench just before \`POST /session\`; the end is the console's \`stepdesk:first-data\` mark (ui/src/lib/perf.ts), set after the frame that shows the Runs page's first rows has been rendered (the first page of 100 runs is loaded; the virtual list puts the rows in view and a few more in the DOM: the last column), read in the window as \`performance.timeOrigin + mark.startTime\` (same clock). "Navigation start" is the page's \`performance.timeOrigin\`: before it, the process starts, the engine opens its database, the HTTP server listens and GTK/WebKit create the window and the web process; after it, the console loads from the binary, asks for \`info\`, \`functions\` and the first page of runs through the \`admin\` command, and renders.`,
      "",
    );
    L.push("| Launch | Total | Launch → navigation start | Navigation start → first data painted | Run rows in the DOM at the mark |", "|---:|---:|---:|---:|---:|");
    ls.forEach((l, i) => L.push(`| ${i + 1} | **${ms(l.total)}** | ${ms(l.toOrigin)} | ${ms(l.originToData)} | ${l.markRows} |`));
    const t = ls.map((l) => l.total);
    L.push("");
    L.push(`Median **${ms(median(t))}**, max ${ms(max(t))}, min ${ms(min(t))}; launch → navigation start median ${ms(median(ls.map((l) => l.toOrigin)))}, navigation start → first data median ${ms(median(ls.map((l) => l.originToData)))}.`, "");
  }

  if (r.memory) {
    const m = r.memory;
    L.push("### 2. Idle memory of the window", "");
    L.push(
      `The release binary started as a person starts it (no WebDriver, no fixtures, a fresh HOME), on a copy of the history, under Xvfb; once its WebKit web process runs and 2 s more have passed (the page has loaded its data), the window is left idle on the Runs page for ${m.idle} s (its CPU time over those seconds is the last column), then every process of the app's tree (the app and the WebKit processes it spawned) is read from \`/proc/PID/smaps_rollup\`. PSS counts each shared page once across all processes that map it; RSS counts it in each. A root-window screenshot checks that the window shows the console (not blank). ${m.runs.length} launches; the baseline is \`stepdesk serve\` (the engine and HTTP server, no window) on the same data, idle as long after answering the first page of runs.`,
      "",
    );
    L.push("| Launch | PSS (sum) | RSS (sum) | Per process: PSS / RSS | CPU while idle |", "|---:|---:|---:|---|---:|");
    m.runs.forEach((x, i) =>
      L.push(`| ${i + 1} | **${mib(x.pss)}** | ${mib(x.rss)} | ${x.procs.map((p) => `${p.name} ${mib(p.pss)} / ${mib(p.rss)}`).join("; ")} | ${fmt(x.idleCpuMs)} ms in ${m.idle} s |`),
    );
    L.push(`| Baseline: \`stepdesk serve\` | ${mib(m.engine.pss)} | ${mib(m.engine.rss)} | | |`);
    const last = m.runs[m.runs.length - 1];
    L.push("");
    L.push(
      `Of the last launch's PSS: anonymous ${mib(last.procs.reduce((a, p) => a + p.pssAnon, 0))}, file-backed ${mib(last.procs.reduce((a, p) => a + p.pssFile, 0))}, shared memory ${mib(last.procs.reduce((a, p) => a + p.pssShmem, 0))}. The issue's figure for the old two-table page was 220 MiB PSS (382 MiB RSS), measured earlier under Xvfb, not in this run.`,
      "",
    );
  }

  if (r.million) {
    L.push("### 3. The Runs page over 1,000,000 runs (Chromium)", "");
    if (r.million.skipped) {
      L.push(`Not measured in this run: ${r.million.skipped}.`, "");
    } else {
      const x = r.million;
      L.push(
        `The engine bench's generated database (\`${path.basename(x.src)}\`: ${fmt(x.stored)} runs over 10 functions and 30 days, with their events and steps; see the engine section; ${fmt(x.bytes / 2 ** 20)} MiB) opened with \`stepdesk inspect DIR --no-window\`, which copies the database into a private temporary directory and serves that copy read-only (nothing runs, nothing is written; the cached files' sizes and modification times were checked unchanged afterwards). It listened ${ms(x.startMs)} after it was started, copy included. Total runs as the list shows it: ${fmt(x.total)}${x.totalExact ? "" : " (an estimate)"}.`,
        "",
      );
      const a = x.loads.map((l) => l.at);
      L.push("#### First paint of the list", "");
      L.push(
        `Each load in a new browser context (empty cache: the console's scripts are fetched too), \`page.goto(URL/#/runs)\`; the figure is the \`stepdesk:runs-first-rows\` mark's \`startTime\` (ms from navigation start), set after the frame that shows the first rows. For comparison, Chromium's own first contentful paint (the page's frame, before any data), and when the \`runs\` request (first page, 100 runs, with its total) started and ended, from Resource Timing.`,
        "",
      );
      L.push("| | Loads | Median | p95 | Max |", "|---|---:|---:|---:|---:|");
      L.push(statRow("Navigation start → first rows painted", a));
      L.push(statRow("Navigation start → first contentful paint", x.loads.map((l) => l.fcp)));
      L.push(statRow("`runs` request started", x.loads.map((l) => l.runsStart)));
      L.push(statRow("`runs` request ended", x.loads.map((l) => l.runsEnd)));
      L.push(statRow("Baseline: the same first page over HTTP from the bench (`POST /api/rpc/runs`, limit 100)", x.apiTimes));
      L.push("");
      const sc = x.scroll;
      const over = (xs, t) => `${fmt((100 * xs.filter((v) => v > t).length) / xs.length, 1)}%`;
      L.push("#### Scrolling", "");
      L.push(
        `Starting ${fmt(Number(opts["scroll-delay"]))} ms after the first rows are shown (as a person would: frames scrolled while the page still loads belong to its load, measured above), one screenful (${sc.step} px, about ${Math.round(sc.step / 36)} rows) further each frame for ${sc.work.length} frames, set as \`scrollTop\` from \`requestAnimationFrame\`; the virtual list renders the rows in view and fetches the next page of 100 runs (by cursor) when the end of what is loaded comes near. It got to row ${fmt(sc.lastRow)}; in ${sc.stalls} frame${sc.stalls === 1 ? "" : "s"} it was at the end of what was loaded, waiting for the next page. *Work per frame* is the main thread's time from the frame's start until a task queued in its \`requestAnimationFrame\` runs (after the frame's style, layout and paint); the frame starts with the scroll event of the \`scrollTop\` set in the frame before (dispatched before the animation frame callbacks: the list renders the rows it brings into view then), noted by a capturing listener on the window, which runs before the list's; *frame interval* is the time between consecutive \`requestAnimationFrame\` timestamps (16.7 ms at 60 Hz when no frame is dropped). ${sc.loafSupported ? `Chromium's Long Animation Frames API reported ${sc.loaf.length} frames over 50 ms${sc.loaf.length ? ` (longest ${ms(max(sc.loaf))})` : ""}.` : ""}`,
        "",
      );
      L.push("| | Frames | p50 | p95 | p99 | Max | Over budget |", "|---|---:|---:|---:|---:|---:|---:|");
      L.push(`| Work per frame (budget 16 ms) | ${sc.work.length} | ${ms(pct(sc.work, 50))} | ${ms(pct(sc.work, 95))} | ${ms(pct(sc.work, 99))} | ${ms(max(sc.work))} | ${over(sc.work, 16)} |`);
      L.push(`| Frame interval (budget 25 ms: longer means a frame was dropped) | ${sc.intervals.length} | ${ms(pct(sc.intervals, 50))} | ${ms(pct(sc.intervals, 95))} | ${ms(pct(sc.intervals, 99))} | ${ms(max(sc.intervals))} | ${over(sc.intervals, 25)} |`);
      L.push("");
      const handled = sc.handled.map((h) => h.ms);
      const took = sc.requests.map((q) => q.end - q.start);
      L.push(
        `Pages of runs fetched while scrolling: ${sc.requests.length}, each request ${ms(pct(took, 50))} (median, Resource Timing, from sending to the response's end; max ${ms(max(took))}). The page's handling of each (from reading the response's text until a task queued then runs: parsing, appending the runs, Svelte's update of the list, and a frame if one comes first; the style and layout of the longer list come in the next frame): median ${ms(pct(handled, 50))}, p95 ${ms(pct(handled, 95))}, max ${ms(max(handled))}.`,
        "",
        `The ${sc.slowest.length} frames with the most work, with what happened since the frame before ended: rows in and out of the DOM and rows whose element now shows another run (a MutationObserver on the list), a page appended (the list's height grew; *between frames* when its handling ran as a task of its own before the frame began, which that frame's work does not count, though its interval would show it), the \`runs\` requests sent and responses in, a garbage collection (the JS heap shrank, \`performance.memory\` with \`--enable-precise-memory-info\`), a stall at the loaded end, and the interval to the next frame.`,
        "",
        "| Frame | Work | What happened |",
        "|---:|---:|---|",
        ...sc.slowest.map((f) => `| ${f.index} | ${ms(f.work)} | ${f.what} |`),
        "",
      );
    }
  }

  if (r.live || r.wlive) {
    L.push("### 4. A committed change reaching the DOM", "");
    L.push(
      "One `test/noop` event at a time over HTTP (`POST /e/{key}`) to a server with the test fixtures and the history above; t0 is `Date.now()` in the bench just before the request. In the page, a MutationObserver notes `Date.now()` when the new run's row is in the runs list (*in the DOM*: a row element added for it, or one of the list's row elements now showing it), and again after the next frame (*painted*). Both clocks are this machine's. The path: ingest and the durable commit, the engine's change feed, the notice to the page (the engine gathers the changes committed within 10 ms into one notice), the console's refetch of the `runs` first page (at once on a notice; notices within the next 30 ms make one more), and Svelte's update of the list. Samples are 150–250 ms apart, so each starts with the list settled; one unmeasured event first.",
      "",
    );
    L.push("| | Samples | p50 | p95 | Max |", "|---|---:|---:|---:|---:|");
    if (r.live) {
      const s = r.live.samples;
      L.push(statRow("Browser (Chromium, Server-Sent Events): t0 → row in the DOM", s.map((x) => x.dom)));
      L.push(statRow("Browser: t0 → row painted", s.map((x) => x.painted)));
      L.push(statRow("Browser: t0 → the change notice on a second EventSource in the page", s.map((x) => x.notice).filter((x) => x !== null)));
      L.push(statRow("Baseline: t0 → the event acknowledged (HTTP answer: committed)", s.map((x) => x.ack)));
    }
    if (r.wlive) {
      const s = r.wlive.samples;
      L.push(statRow("Window (WebKitGTK, Tauri events): t0 → row in the DOM", s.map((x) => x.dom)));
      L.push(statRow("Window: t0 → row painted", s.map((x) => x.painted)));
      L.push(statRow("Window baseline: t0 → the event acknowledged", s.map((x) => x.ack)));
    }
    L.push("");
  }
  return L.join("\n");
}

// ---- Main ---------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const r = {
    command: ["node tests/bench/console.mjs", ...process.argv.slice(2)].join(" "),
    date: new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"),
    commit: git(["rev-parse", "HEAD"]),
    dirty: git(["status", "--porcelain", "--", "ui", "src-tauri", "crates", "tests/bench"]) !== "",
    binSrc: BIN.src,
    versions: versions(),
    loadStart: loadavg(),
  };
  if (process.env.STEPDESK_BENCH_COMMAND) r.command = process.env.STEPDESK_BENCH_COMMAND;
  const needsWindow = only.has("cold") || only.has("memory") || only.has("live");
  if (needsWindow && !process.env.DISPLAY) throw new Error("the window's benchmarks need a display: run under xvfb-run (make bench does)");
  try {
    let history;
    if (only.has("cold") || only.has("memory") || only.has("live")) {
      const t = Date.now();
      log(`history: ${opts["history-runs"]} runs`);
      history = await makeHistory(int("history-runs"));
      r.historyRuns = int("history-runs");
      r.historySeconds = (Date.now() - t) / 1000;
    }
    try {
      if (only.has("cold")) {
        log("1. window cold start");
        r.cold = await coldStart(history);
      }
      if (only.has("memory")) {
        log("2. idle memory");
        r.memory = await idleMemory(history);
      }
      if (only.has("million")) {
        log("3. a million runs in Chromium");
        r.million = await million();
      }
      if (only.has("live")) {
        log("4. live: browser");
        r.live = await liveChromium(history);
        log(`  p50 ${ms(median(r.live.samples.map((x) => x.dom)))}, max ${ms(max(r.live.samples.map((x) => x.dom)))}`);
        log("4. live: window");
        r.wlive = await liveWindow(history);
        log(`  p50 ${ms(median(r.wlive.samples.map((x) => x.dom)))}, max ${ms(max(r.wlive.samples.map((x) => x.dom)))} (feed ${r.wlive.feed})`);
      }
    } finally {
      removeDir(history);
    }
  } finally {
    removeDir(BIN.dir);
  }
  r.loadEnd = loadavg();
  r.seconds = (Date.now() - started) / 1000;
  const text = report(r);
  console.log(text);
  if (opts.write) {
    writeSection(opts.write, "console-bench", text);
    log(`wrote the console section of ${opts.write}`);
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
