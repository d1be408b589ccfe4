// Smoke test of the real desktop window: the debug `stepdesk` binary opens its Tauri window
// (WebKitGTK) under Xvfb, driven through WebKitWebDriver's W3C WebDriver protocol. On Linux
// no tauri-driver is needed: Tauri enables automation when TAURI_WEBVIEW_AUTOMATION=true, and
// WebKitWebDriver starts the app given as `webkitgtk:browserOptions.binary`.
//
// Run it with a display, e.g. `make test-window` (which wraps it in xvfb-run).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
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
  startFakeReadwise,
  api,
} from "../support/stepdesk.mjs";

const DRIVER = process.env.STEPDESK_WEBKIT_DRIVER || "WebKitWebDriver";

let driver; // the WebKitWebDriver process (its own process group, which the app joins)
let driverLog = "";
let wd; // WebDriver base URL
let sessionId;
let appUrl;
let dataDir;
let fake; // the fake Readwise API the app syncs from

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
  fake = await startFakeReadwise({ users: 1, books: 7 });
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
      READWISE_API_URL: fake.url,
      STEPDESK_KEYCHAIN_SERVICE: `dev.stepdesk.test.window.${appPort}`,
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
  await fake?.stop();
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

test("the window's updates are pushed as Tauri events, not polled", async () => {
  // The window polls only until the first `stepdesk://changes` event arrives; the runs above
  // committed changes, so the feed is live now, and a new run shows without any polling.
  await execute(`location.hash = "#/runs"`);
  await waitFor("the feed to be live", async () =>
    (await execute(`return document.querySelector("[data-testid=feed-state]")?.dataset.feed`)) === "live",
  { timeoutMs: 15000, intervalMs: 100 });
  const eventId = await sendEvent(appUrl, "test/noop");
  const run = await waitForRun(appUrl, "fixture-noop", "Completed", { eventId });
  const t0 = Date.now();
  await waitFor("the new run in the window", async () => (await readRuns())?.some((r) => r.id === run.id && r.status === "Completed"),
    { timeoutMs: 10000, intervalMs: 20 });
  const took = Date.now() - t0;
  assert.equal(await execute(`return document.querySelector("[data-testid=feed-state]").dataset.feed`), "live");
  // Polling would take up to 2 s; a pushed change takes tens of milliseconds.
  assert.ok(took < 1500, `the run showed ${took} ms after it completed`);
});

/** The WebDriver id of the element matching an XPath, once there is one. */
async function element(xpath, what) {
  return waitFor(what, async () => {
    const found = await webdriver("POST", `/session/${sessionId}/elements`, { using: "xpath", value: xpath });
    const first = found[0];
    return first && first["element-6066-11e4-a52e-4f735466cecf"];
  }, { timeoutMs: 15000, intervalMs: 200 });
}

async function click(xpath, what) {
  const id = await element(xpath, what);
  await webdriver("POST", `/session/${sessionId}/element/${id}/click`, {});
}

const byTestId = (id) => `//*[@data-testid='${id}']`;

test("Test function in the window: the run starts, completes and shows its steps", async () => {
  await execute(`location.hash = "#/functions/fixture-noop"`);
  await click("//button[normalize-space()='Run with this payload']", "the Test function button");
  // The live run opens.
  const runId = await waitFor("the run page", async () => {
    const hash = await execute("return location.hash");
    const m = hash.match(/^#\/runs\/([0-9A-Z]+)$/);
    return m && m[1];
  }, { timeoutMs: 15000, intervalMs: 200 });
  await waitFor("the run to complete on screen", async () => {
    const status = await execute(`return document.querySelector(".page-head .status")?.textContent ?? ""`);
    return /Completed/.test(status);
  }, { timeoutMs: 20000, intervalMs: 200 });
  const steps = await execute(`return [...document.querySelectorAll("[data-testid=steps] [data-step-id]")].map((e) => e.dataset.stepId)`);
  assert.ok(steps.length > 0, `the run's steps are shown: ${JSON.stringify(steps)}`);
  const run = await api(appUrl, `/api/admin/runs/${runId}`);
  assert.equal(run.status, "Completed");
  assert.equal(run.trigger_kind, "Invoke");
});

test("Resync in the window: the user's book count updates", async () => {
  const token = readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
  await api(appUrl, "/api/admin/users", {
    method: "POST",
    body: { id: "ada", name: "Ada", token: "token-00000" },
    token,
  });
  await execute(`location.hash = "#/users/ada"`);
  await waitFor("the user's page", async () =>
    (await execute(`return document.querySelector("[data-testid=book-count]")?.textContent ?? null`)) === "0",
  { timeoutMs: 15000, intervalMs: 200 });
  await click("//button[normalize-space()='Resync']", "the Resync button");
  await waitFor("the book count to update", async () =>
    (await execute(`return document.querySelector("[data-testid=book-count]")?.textContent ?? null`)) === "7",
  { timeoutMs: 30000, intervalMs: 200 });
  const user = await api(appUrl, "/api/admin/users/ada");
  assert.equal(user.stored_books, 7);
});

test("the native menu's View shortcuts open the console's pages", async () => {
  // Real key presses (XTEST) on the focused window: GTK's menu accelerators, as a person's.
  await execute(`location.hash = "#/runs"`);
  // The mapped window (GTK also makes an unmapped leader window of the same name, which
  // cannot take the focus).
  const win = await waitFor("the mapped window", () =>
    execFileSync("xdotool", ["search", "--onlyvisible", "--name", "^Stepdesk$"], { encoding: "utf8" }).trim().split("\n")[0]);
  execFileSync("xdotool", ["windowfocus", "--sync", win]);
  for (const [key, hash] of [["ctrl+2", "#/functions"], ["ctrl+4", "#/users"], ["ctrl+7", "#/apps"], ["ctrl+1", "#/runs"]]) {
    execFileSync("xdotool", ["key", "--clearmodifiers", key]);
    await waitFor(`${key} to open ${hash}`, async () => (await execute("return location.hash")) === hash, { timeoutMs: 10000, intervalMs: 100 });
  }
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
