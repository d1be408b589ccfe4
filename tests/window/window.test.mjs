// Smoke test of the real desktop window: the debug `stepdesk` binary opens its Tauri window
// (WebKitGTK) under Xvfb, driven through WebKitWebDriver's W3C WebDriver protocol. On Linux
// no tauri-driver is needed: Tauri enables automation when TAURI_WEBVIEW_AUTOMATION=true, and
// WebKitWebDriver starts the app given as `webkitgtk:browserOptions.binary`.
//
// Run it with a display, e.g. `make test-window` (which wraps it in xvfb-run).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";

import {
  stepdeskBin,
  cleanEnv,
  freePort,
  tempDir,
  removeDir,
  waitFor,
  stopChild,
  sendEvent,
  waitForRun,
  artifactsDir,
  imageStats,
  EVENT_KEY,
} from "../support/stepdesk.mjs";

const DRIVER = process.env.STEPDESK_WEBKIT_DRIVER || "WebKitWebDriver";

let driver; // the WebKitWebDriver process (its own process group, which the app joins)
let driverLog = "";
let wd; // WebDriver base URL
let sessionId;
let appUrl;
let dataDir;

async function webdriver(method, route, body) {
  const res = await fetch(wd + route, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) {
    throw new Error(`WebDriver ${method} ${route}: ${res.status} ${JSON.stringify(json.value)}`);
  }
  return json.value;
}

/** Runs `script` (a function body) in the window and returns its result. */
function execute(script, args = []) {
  return webdriver("POST", `/session/${sessionId}/execute/sync`, { script, args });
}

/** Runs `script` in the window; it must call `done(result)` (the last argument). */
function executeAsync(script, args = []) {
  return webdriver("POST", `/session/${sessionId}/execute/async`, { script, args });
}

/** The runs list's rows (`{id, status}`), read in the window. */
function readRuns() {
  return execute(
    `return [...document.querySelectorAll("[data-testid=runs-list] a.run-row")].map((a) => ({
       id: a.dataset.runId,
       status: a.querySelector(".status")?.textContent.trim(),
     }));`,
  );
}

/** A table's body rows as objects keyed by the header texts, read in the window. */
function readTable(selector) {
  return execute(
    `const table = document.querySelector(arguments[0]);
     if (!table) return null;
     const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
     return [...table.querySelectorAll("tbody tr")]
       .filter((tr) => tr.cells.length === headers.length)
       .map((tr) => Object.fromEntries(headers.map((h, i) => [h, tr.cells[i].textContent.trim()])));`,
    [selector],
  );
}

async function appAnswers() {
  try {
    const res = await fetch(appUrl + "/health");
    return res.ok;
  } catch {
    return false;
  }
}

before(async () => {
  assert.ok(
    process.env.DISPLAY || process.env.WAYLAND_DISPLAY,
    "the window test needs a display: run it under xvfb-run (make test-window)",
  );
  const bin = stepdeskBin();
  dataDir = tempDir("stepdesk-window-data-");
  const appPort = await freePort();
  const driverPort = await freePort();
  appUrl = `http://127.0.0.1:${appPort}`;
  wd = `http://127.0.0.1:${driverPort}`;

  // The app inherits WebKitWebDriver's environment.
  driver = spawn(DRIVER, [`--port=${driverPort}`, "--host=127.0.0.1"], {
    env: cleanEnv({
      TAURI_WEBVIEW_AUTOMATION: "true",
      STEPDESK_DATA_DIR: dataDir,
      STEPDESK_PORT: String(appPort),
      STEPDESK_TEST_FIXTURES: "1",
      STEPDESK_EVENT_KEY: EVENT_KEY,
    }),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  driver.stdout.setEncoding("utf8").on("data", (d) => (driverLog += d));
  driver.stderr.setEncoding("utf8").on("data", (d) => (driverLog += d));
  await waitFor("WebKitWebDriver to be ready", async () => {
    if (driver.exitCode !== null) throw new Error(`WebKitWebDriver exited:\n${driverLog}`);
    const status = await webdriver("GET", "/status");
    return status.ready;
  }, { timeoutMs: 15000 });

  // No browserName: WebKitWebDriver rejects "wry". No webSocketUrl: classic WebDriver only.
  const session = await webdriver("POST", "/session", {
    capabilities: {
      alwaysMatch: { "webkitgtk:browserOptions": { binary: bin, args: [] } },
    },
  });
  sessionId = session.sessionId;
  assert.ok(sessionId, "a WebDriver session was created");
  await waitFor("the app's HTTP server", appAnswers, { timeoutMs: 20000 });
});

after(async () => {
  if (sessionId) {
    await webdriver("DELETE", `/session/${sessionId}`).catch(() => {});
  }
  await stopChild(driver, { group: true, graceMs: 5000 });
  removeDir(dataDir);
  if (process.exitCode) console.error(`--- WebKitWebDriver and app output ---\n${driverLog}`);
});

test("the window shows the embedded console, with Tauri's API", async () => {
  const url = await webdriver("GET", `/session/${sessionId}/url`);
  assert.match(url, /^tauri:\/\/localhost/, "the console is served from the binary, not over HTTP");
  assert.match(await webdriver("GET", `/session/${sessionId}/title`), /Stepdesk$/);
  // The console imports @tauri-apps/api (no global `window.__TAURI__`).
  assert.equal(await execute("return typeof window.__TAURI_INTERNALS__?.invoke"), "function");
});

test("the functions table fills from the `admin` command", async () => {
  await execute(`location.hash = "#/functions"`);
  const rows = await waitFor("fixture-noop in the functions table", async () => {
    const rows = await readTable("#functions");
    return rows?.some((r) => r.Id === "fixture-noop") && rows;
  }, { timeoutMs: 20000, intervalMs: 250 });
  const cron = rows.find((r) => r.Id === "fixture-cron");
  assert.equal(cron?.Triggers, "cron: * * * * *");
  assert.notEqual(cron?.["Next fire"], "", "the cron fixture shows its next fire");
  const status = await execute(
    `return document.querySelector("[data-testid=engine-status]").textContent`,
  );
  assert.equal(status, "Connected");
});

test("the `admin` command answers directly", async () => {
  const result = await executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke("admin", { method: "functions", params: null })
       .then((fns) => done({ ok: fns.map((f) => f.id) }), (e) => done({ err: String(e) }));`,
  );
  assert.equal(result.err, undefined);
  assert.ok(result.ok.includes("fixture-noop"), `functions: ${result.ok}`);

  const bad = await executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke("admin", { method: "no-such-method", params: null })
       .then((v) => done({ ok: v }), (e) => done({ err: e }));`,
  );
  // Errors are `{error, status}`, as over HTTP.
  assert.match(bad.err?.error ?? "", /unknown admin method/);
  assert.equal(bad.err?.status, 404);
});

test("the window may call only the admin command, under a strict CSP", async () => {
  // The capability grants `allow-admin` alone: Tauri's own commands are refused.
  const core = await executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke("plugin:app|version")
       .then((v) => done({ ok: v }), (e) => done({ err: String(e) }));`,
  );
  assert.equal(core.ok, undefined, "plugin:app|version must not be callable");
  assert.match(core.err ?? "", /not allowed|denied|permission/i);
  // The Content-Security-Policy forbids eval and inline code in the page.
  const evalBlocked = await executeAsync(
    `const done = arguments[arguments.length - 1];
     try { window.eval("1 + 1"); done("allowed"); } catch (e) { done(String(e.name || e)); }`,
  );
  assert.notEqual(evalBlocked, "allowed", "eval must be blocked by the CSP");
});

test("runs started over HTTP show up in the window with their status", async () => {
  const noopEvent = await sendEvent(appUrl, "test/noop");
  const failEvent = await sendEvent(appUrl, "test/fail");
  const noop = await waitForRun(appUrl, "fixture-noop", "Completed", { eventId: noopEvent });
  const fail = await waitForRun(appUrl, "fixture-fail", "Failed", { eventId: failEvent });
  await execute(`location.hash = "#/runs"`);
  const rows = await waitFor("both runs in the runs list", async () => {
    const rows = await readRuns();
    const ids = new Set(rows?.map((r) => r.id));
    return ids.has(noop.id) && ids.has(fail.id) && rows;
  }, { timeoutMs: 15000, intervalMs: 250 });
  assert.equal(rows.find((r) => r.id === noop.id).status, "Completed");
  assert.equal(rows.find((r) => r.id === fail.id).status, "Failed");

  const detail = await executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke("admin", { method: "run", params: { id: arguments[0] } })
       .then((r) => done({ ok: r }), (e) => done({ err: String(e) }));`,
    [noop.id],
  );
  assert.equal(detail.err, undefined);
  assert.equal(JSON.stringify(detail.ok).includes(noop.id), true);
});

test("the window is not blank", async () => {
  const dir = artifactsDir();
  const shot = path.join(dir, "window-webdriver.png");
  writeFileSync(shot, Buffer.from(await webdriver("GET", `/session/${sessionId}/screenshot`), "base64"));
  const stats = imageStats(shot);
  assert.ok(stats.stddev > 0.02 && stats.colors > 50, `${shot}: ${JSON.stringify(stats)}`);

  // What is really on the (virtual) screen, not just what WebKit rendered for WebDriver.
  const root = path.join(dir, "window-xvfb-root.png");
  execFileSync("import", ["-window", "root", root]);
  const rootStats = imageStats(root);
  assert.ok(rootStats.stddev > 0.02 && rootStats.colors > 50, `${root}: ${JSON.stringify(rootStats)}`);
});

test("closing the window stops the app and its server", async () => {
  await webdriver("DELETE", `/session/${sessionId}`);
  sessionId = undefined;
  await waitFor("the app's HTTP server to stop", async () => !(await appAnswers()), {
    timeoutMs: 20000,
    intervalMs: 200,
  });
});

test("Ctrl-C or SIGTERM closes the window and stops the engine cleanly", async () => {
  const dir = tempDir("stepdesk-window-signal-");
  const port = await freePort();
  const app = spawn(stepdeskBin(), [], {
    env: cleanEnv({
      STEPDESK_DATA_DIR: dir,
      STEPDESK_PORT: String(port),
      STEPDESK_TEST_FIXTURES: "1",
      STEPDESK_EVENT_KEY: EVENT_KEY,
      STEPDESK_LOG: "info",
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  app.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  app.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  const exit = new Promise((resolve) => app.once("exit", (code, signal) => resolve({ code, signal })));
  try {
    await waitFor("the window app to listen", () => out.includes("Stepdesk is listening on"), {
      timeoutMs: 30000,
    });
    assert.ok(!out.includes("no display found"), "the app opened its window, not the headless server");
    app.kill("SIGTERM");
    const { code, signal } = await Promise.race([
      exit,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("no exit within 20 s")), 20000).unref(),
      ),
    ]);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, out);
    assert.match(out, /engine stopped/, "the engine shut down before the process ended");
  } finally {
    await stopChild(app);
    removeDir(dir);
  }
});
