// The console in a real browser (headless Debian Chromium, driven by playwright-core)
// against the real `stepdesk serve` with the test fixtures: what a person sees after
// sending a few events.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { chromium } from "playwright-core";

import {
  startServer,
  sendEvent,
  waitForRun,
  waitFor,
  api,
  tempDir,
  removeDir,
  artifactsDir,
  imageStats,
} from "../support/stepdesk.mjs";

const CHROMIUM = process.env.STEPDESK_CHROMIUM || "/usr/bin/chromium";
// The flags that work on these machines as root with no network (see the env notes).
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const FIXTURES = [
  "fixture-steps",
  "fixture-noop",
  "fixture-sleep",
  "fixture-wait",
  "fixture-flaky",
  "fixture-fail",
  "fixture-fail-failure",
  "fixture-invoke",
  "fixture-cron",
];

let server;
let context;
let page;
let profileDir;
const pageErrors = [];
const runs = {};

/** A table's body rows as objects keyed by the header texts. */
async function readTable(selector) {
  return page.$eval(selector, (table) => {
    const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    return [...table.querySelectorAll("tbody tr")]
      .filter((tr) => tr.cells.length === headers.length)
      .map((tr) =>
        Object.fromEntries(headers.map((h, i) => [h, tr.cells[i].textContent.trim()])),
      );
  });
}

before(async () => {
  server = await startServer();
  const { url } = server;

  // One run of each kind, all finished before the page opens.
  const noopEvent = await sendEvent(url, "test/noop");
  const failEvent = await sendEvent(url, "test/fail");
  const stepsEvent = await sendEvent(url, "test/steps", { step_ms: 1 });
  runs.noop = await waitForRun(url, "fixture-noop", "Completed", { eventId: noopEvent });
  runs.fail = await waitForRun(url, "fixture-fail", "Failed", { eventId: failEvent });
  runs.steps = await waitForRun(url, "fixture-steps", "Completed", { eventId: stepsEvent });
  runs.failureHandler = await waitForRun(url, "fixture-fail-failure", "Completed");

  profileDir = tempDir("stepdesk-chromium-profile-");
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    locale: "en-US",
    timezoneId: "UTC",
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // Failed loads are reported (with their URL) by the response handler below.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      pageErrors.push(`console.error: ${m.text()}`);
    }
  });
  page.on("response", (r) => {
    // The browser asks for /favicon.ico on its own; the console does not use one.
    if (r.status() >= 400 && new URL(r.url()).pathname !== "/favicon.ico") {
      pageErrors.push(`HTTP ${r.status()} for ${r.url()}`);
    }
  });
  page.on("requestfailed", (r) => pageErrors.push(`request failed: ${r.url()}`));
  await page.goto(url + "/");
  await page.waitForFunction(
    (id) => document.querySelector("#runs tbody")?.textContent.includes(id),
    runs.noop.id,
    { timeout: 15000 },
  );
});

after(async () => {
  await context?.close().catch(() => {});
  await server?.stop();
  removeDir(profileDir);
});

test("the page is the Stepdesk console and reaches the engine", async () => {
  assert.equal(await page.title(), "Stepdesk");
  const status = await page.textContent("#status");
  assert.match(status, /^Updated /, `status line says: ${status}`);
});

test("the functions table lists every registered function, fixtures included, with its trigger", async () => {
  const rows = await readTable("#functions");
  const ids = rows.map((r) => r.Id).sort();
  // Exactly the registered functions (the fixtures and the app's own), each once.
  const registered = (await api(server.url, "/api/admin/functions")).map((f) => f.id).sort();
  assert.deepEqual(ids, registered);
  for (const id of FIXTURES) assert.ok(ids.includes(id), `${id} is listed`);
  const byId = Object.fromEntries(rows.map((r) => [r.Id, r]));
  assert.equal(byId["fixture-noop"].Name, "Fixture: three no-op steps");
  assert.equal(byId["fixture-noop"].Triggers, "event: test/noop");
  assert.equal(byId["fixture-fail"].Triggers, "event: test/fail");
  assert.equal(byId["fixture-fail-failure"].Triggers, "event: inngest/function.failed");
  // Event-triggered functions have no next fire.
  assert.equal(byId["fixture-noop"]["Next fire"], "");
});

test("the cron fixture shows its schedule and its next fire time", async () => {
  const before = await api(server.url, "/api/admin/functions");
  const rows = await readTable("#functions");
  const after = await api(server.url, "/api/admin/functions");
  const cron = rows.find((r) => r.Id === "fixture-cron");
  assert.ok(cron, "fixture-cron is listed");
  assert.equal(cron.Triggers, "cron: * * * * *");

  // The engine's next fire, at most a minute away, shown in the page's locale (en-US, UTC).
  const nextFires = [before, after].map(
    (fns) => fns.find((f) => f.id === "fixture-cron").triggers[0].next_fire_at,
  );
  for (const ms of nextFires) {
    assert.ok(ms > Date.now() - 60_000 && ms <= Date.now() + 61_000, `next fire ${ms} is near`);
    assert.equal(new Date(ms).getUTCSeconds(), 0, "a `* * * * *` cron fires on the minute");
  }
  const shown = nextFires.map((ms) => new Date(ms).toLocaleString("en-US", { timeZone: "UTC" }));
  // The page may have refreshed across a minute boundary between the two reads.
  assert.ok(shown.includes(cron["Next fire"]), `"${cron["Next fire"]}" is one of ${shown}`);
});

test("the runs table shows each run with its status", async () => {
  const rows = await readTable("#runs");
  const byRun = Object.fromEntries(rows.map((r) => [r.Run, r]));

  const expect = [
    [runs.noop, "Fixture: three no-op steps", "Completed", "test/noop"],
    [runs.fail, "Fixture: always fails, with a failure handler", "Failed", "test/fail"],
    [runs.steps, "Fixture: three recorded steps", "Completed", "test/steps"],
    [
      runs.failureHandler,
      "Fixture: always fails, with a failure handler (failure handler)",
      "Completed",
      "inngest/function.failed",
    ],
  ];
  for (const [run, fnName, status, trigger] of expect) {
    const row = byRun[run.id];
    assert.ok(row, `run ${run.id} of ${run.function_id} is listed`);
    assert.equal(row.Function, fnName);
    assert.equal(row.Status, status);
    assert.equal(row.Trigger, trigger);
    assert.notEqual(row.Queued, "", "queued time shown");
    assert.match(row.Duration, /^\d+(\.\d+)? (ms|s)$/, "duration shown");
  }
  // Newest first.
  const queued = rows.map((r) => Date.parse(r.Queued + " UTC"));
  assert.ok(queued.every((t) => !Number.isNaN(t)), `queued times parse: ${rows.map((r) => r.Queued)}`);
  assert.ok(queued.every((t, i) => i === 0 || queued[i - 1] >= t), "newest run first");
});

test("a failed run looks different from a completed one", async () => {
  const color = (id) =>
    page.$eval(
      "#runs tbody",
      (tbody, id) => {
        const tr = [...tbody.rows].find((r) => r.textContent.includes(id));
        const cell = [...tr.cells].find((c) => /^(Completed|Failed)$/.test(c.textContent.trim()));
        return getComputedStyle(cell).color;
      },
      id,
    );
  assert.notEqual(await color(runs.fail.id), await color(runs.noop.id));
});

test("new runs appear without reloading the page", async () => {
  const eventId = await sendEvent(server.url, "test/noop");
  const run = await waitForRun(server.url, "fixture-noop", "Completed", { eventId });
  await page.waitForFunction(
    (id) => document.querySelector("#runs tbody")?.textContent.includes(id),
    run.id,
    { timeout: 10000 },
  );
  const row = (await readTable("#runs")).find((r) => r.Run === run.id);
  assert.equal(row.Status, "Completed");
});

test("the page renders (screenshot) without script errors", async () => {
  const shot = path.join(artifactsDir(), "ui-console.png");
  await page.screenshot({ path: shot, fullPage: true });
  const stats = imageStats(shot);
  assert.ok(stats.stddev > 0.02, `screenshot ${shot} is not blank: ${JSON.stringify(stats)}`);
  assert.ok(stats.colors > 50, `screenshot ${shot} has text and colour: ${JSON.stringify(stats)}`);
  assert.deepEqual(pageErrors, []);
});

test("the run list is wired to the same data as the API", async () => {
  // Sanity: what the page shows is what /api/admin/runs returns (no stale or invented rows).
  await waitFor("the page to refresh after the last run", async () => {
    const rows = await readTable("#runs");
    const page1 = await api(server.url, "/api/admin/runs?limit=20");
    return rows.length === page1.runs.length && rows.every((r, i) => r.Run === page1.runs[i].id);
  }, { timeoutMs: 10000, intervalMs: 250 });
});
