// After a crash: `stepdesk serve` is killed (SIGKILL) while a step executes, and started
// again on the same data directory once a minute boundary has passed. The run page says
// the step was interrupted by the restart and ran again (and the timeline marks it); the
// every-minute cron's fire missed while Stepdesk was down runs late, and says so on the
// function's page and on its run.
//
// tests/support/stepdesk.mjs has no restart, so this file starts the binary itself.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { stepdeskBin, cleanEnv, tempDir, removeDir, waitFor, stopChild, api, sendEvent, waitForRun, EVENT_KEY } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

/** `stepdesk serve` with the fixtures on `dataDir`; resolves once it listens. */
async function serveOn(dataDir) {
  const env = cleanEnv({
    STEPDESK_TEST_FIXTURES: "1",
    STEPDESK_KEYCHAIN_SERVICE: `dev.stepdesk.test.${path.basename(dataDir)}`,
  });
  const child = spawn(stepdeskBin(), ["serve", "--port", "0", "--data-dir", dataDir, "--event-key", EVENT_KEY], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  let exitCode = null;
  child.once("exit", (code, signal) => (exitCode = code ?? signal));
  try {
    const url = await waitFor("the server's URL on stdout", () => {
      if (exitCode !== null) throw new Error(`stepdesk serve exited (${exitCode}):\n${stderr}`);
      const m = stdout.match(/Stepdesk is listening on (http:\/\/\S+)/);
      return m && m[1];
    }, { timeoutMs: 30000, intervalMs: 20 });
    const token = execFileSync(stepdeskBin(), ["admin-token", "--data-dir", dataDir], { env, encoding: "utf8" }).trim();
    return { url, token, dataDir, child, logs: () => stderr };
  } catch (e) {
    await stopChild(child);
    throw e;
  }
}

async function kill9(child) {
  const gone = new Promise((resolve) => child.once("exit", resolve));
  if (child.exitCode === null && child.signalCode === null) {
    process.kill(child.pid, "SIGKILL");
    await gone;
  }
}

let dataDir;
let first;
let server;
let ui;
let stepsRun;
let killedAt;
let restartedAt;

before(async () => {
  dataDir = tempDir("stepdesk-test-restart-");
  first = await serveOn(dataDir);
  // Three steps of 2 s each: killed while step-1 executes.
  const eventId = await sendEvent(first.url, "test/steps", { step_ms: 2000 });
  stepsRun = await waitFor("step-1 executing", async () => {
    const page = await api(first.url, "/api/admin/runs?function_id=fixture-steps");
    const run = page.runs.find((r) => r.event_id === eventId);
    if (!run) return null;
    const detail = await api(first.url, `/api/admin/runs/${run.id}`);
    return detail.steps.some((s) => s.id === "step-1" && s.status === "Running") && detail;
  }, { timeoutMs: 10000, intervalMs: 20 });
  await kill9(first.child);
  killedAt = Date.now();
  // Down across a minute boundary, so the every-minute cron misses a fire.
  const boundary = Math.floor(killedAt / 60_000) * 60_000 + 60_000;
  await sleep(boundary - Date.now() + 1500);
  restartedAt = Date.now();
  server = await serveOn(dataDir);
  ui = await openConsole(server, { hash: `#/runs/${stepsRun.id}`, token: true });
});

after(async () => {
  await ui?.close();
  if (first) await stopChild(first.child);
  if (server) await stopChild(server.child);
  removeDir(dataDir);
});

test("a run in flight when Stepdesk was killed says which step the restart interrupted", async () => {
  const { page } = ui;
  await page.getByRole("heading", { name: "Fixture: three recorded steps" }).waitFor();
  const notice = page.getByTestId("restarts");
  await notice.waitFor({ timeout: 15000 });
  const text = (await notice.textContent()).replace(/\s+/g, " ");
  assert.match(text, /Interrupted by a restart:/);
  assert.match(text, /step step-1 was executing when Stepdesk stopped without a clean shutdown/);
  assert.match(text, /it ran again after the restart at /);
  const run = await api(server.url, `/api/admin/runs/${stepsRun.id}`);
  assert.equal(run.interruptions.length, 1, JSON.stringify(run.interruptions));
  const it = run.interruptions[0];
  assert.equal(it.step_id, "step-1");
  assert.ok(it.resumed_at >= restartedAt, `resumed after the restart: ${it.resumed_at} >= ${restartedAt}`);
  const resumed = await page.evaluate(
    (t) =>
      new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(t)),
    it.resumed_at,
  );
  assert.ok(text.includes(`restart at ${resumed}`), `the restart time ${resumed} in: ${text}`);
  // The timeline marks the restart on the run's row and on step-1's, not on the others.
  const marks = (sel) => page.locator(`[data-testid=timeline] ${sel} .restart`).count();
  assert.equal(await marks('[data-step="step-1"]'), 1);
  assert.equal(await marks('[data-step="step-2"]'), 0);
  assert.ok((await page.locator("[data-testid=timeline] .restart").count()) >= 2, "and on the run's row");
  await page.getByText("restart", { exact: true }).waitFor(); // the legend's key
});

test("after the restart the interrupted run finishes, and the notice stays", async () => {
  const { page } = ui;
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 30000 });
  for (const step of ["step-1", "step-2", "step-3"]) {
    await page.locator(`[data-step-id="${step}"] .status`, { hasText: "Completed" }).waitFor();
  }
  await page.getByTestId("restarts").waitFor();
  await screenshot(page, "run-restarted");
});

test("a run that was not interrupted has no restart notice", async () => {
  const { page } = ui;
  const eventId = await sendEvent(server.url, "test/noop");
  const run = await waitForRun(server.url, "fixture-noop", "Completed", { eventId });
  await go(page, `#/runs/${run.id}`);
  await page.getByRole("heading", { name: "Fixture: three no-op steps" }).waitFor();
  await page.locator('[data-step-id="c"]').waitFor();
  assert.equal(await page.getByTestId("restarts").count(), 0);
  assert.equal(await page.locator("[data-testid=timeline] .restart").count(), 0);
});

test("the cron fire missed while Stepdesk was down runs at start-up, marked late", async () => {
  const { page } = ui;
  const fire = await waitFor("a late fire of fixture-cron", async () => {
    const fires = await api(server.url, "/api/admin/functions/fixture-cron/cron-fires");
    return fires.find((f) => f.late);
  }, { timeoutMs: 20000 });
  assert.ok(fire.scheduled_at > killedAt && fire.scheduled_at < restartedAt, `missed while down: ${JSON.stringify(fire)}`);
  assert.ok(fire.fired_at >= restartedAt);

  await go(page, "#/functions/fixture-cron");
  await page.getByRole("heading", { name: "Fixture: every minute" }).waitFor();
  const row = page.locator("section[aria-labelledby=cron-h] table tbody tr", { has: page.locator(`a[href$="${fire.run_id}"]`) });
  await row.waitFor({ timeout: 10000 });
  await row.locator(".status-late", { hasText: "late" }).waitFor();
  // The other fires (if any) are not late.
  const lateRows = await page.locator("section[aria-labelledby=cron-h] table tbody tr:has(.status-late)").count();
  const fires = await api(server.url, "/api/admin/functions/fixture-cron/cron-fires");
  assert.equal(lateRows, fires.filter((f) => f.late).length);

  await row.getByRole("link", { name: fire.run_id }).click();
  await page.waitForURL(new RegExp(`#/runs/${fire.run_id}$`));
  const trigger = page.getByTestId("run-trigger");
  await trigger.waitFor();
  const late = trigger.locator(".status-late");
  await late.waitFor();
  assert.equal((await late.textContent()).trim(), "late");
  assert.match(await late.getAttribute("title"), /missed while Stepdesk was closed/);
  assert.match((await trigger.textContent()).replace(/\s+/g, " "), /^\s*Cron, scheduled for /);
  await screenshot(page, "cron-late-run");
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
