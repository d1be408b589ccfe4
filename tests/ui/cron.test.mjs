// Cron functions on their page: Run now starts a run now; Replay of a past scheduled time
// starts a run whose trigger shows that scheduled time (not late: it was asked for), and
// both appear in the function's last fires with who fired them. A time in the future is
// refused with the engine's reason. (A late fire, missed while Stepdesk was closed, is in
// restart.test.mjs.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot, fmtTime } from "./lib.mjs";

let server;
let ui;

before(async () => {
  server = await startServer();
  ui = await openConsole(server, { hash: "#/functions/fixture-cron", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

/** A `datetime-local` value for `ms` in the page's time zone (UTC, see lib.mjs). */
function toLocalInput(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

const runIdOf = (page) => page.url().split("/").pop();
const squash = (s) => s.replace(/\s+/g, " ").trim();

/** The "Last fires" rows of the function's page as `{scheduled, fired, by, run}`. */
function readFires(page) {
  return page.$$eval("section[aria-labelledby=cron-h] table tbody tr", (trs) =>
    trs.map((tr) => {
      const c = [...tr.cells].map((td) => td.textContent.replace(/\s+/g, " ").trim());
      return { scheduled: c[0], fired: c[1], by: c[2], run: c[3], late: !!tr.querySelector(".status-late") };
    }),
  );
}

/**
 * The run page a cron action opened: the run completes; it is a cron run of the fixture, not
 * late (asked for, not missed), and its trigger shows its scheduled time. Returns it.
 */
async function cronRunOpened(page) {
  await page.waitForURL(/#\/runs\/[0-9A-Z]{26}$/);
  const runId = runIdOf(page);
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });
  const run = await api(server.url, `/api/admin/runs/${runId}`);
  assert.equal(run.function_id, "fixture-cron");
  assert.equal(run.trigger_kind, "Cron");
  assert.equal(run.late, false, "asked for, not a late fire");
  const trigger = squash(await page.getByTestId("run-trigger").textContent());
  assert.equal(trigger, `Cron, scheduled for ${await fmtTime(page, run.cron_scheduled_at)} · event inngest/scheduled.timer`);
  assert.equal(await page.getByTestId("run-trigger").locator(".status-late").count(), 0, "not shown late");
  return { runId, run };
}

test("Run now starts a run of the cron now, shown as a cron run scheduled for now", async () => {
  const { page } = ui;
  await page.getByRole("heading", { name: "Fixture: every minute" }).waitFor();
  const before = Date.now();
  await page.getByRole("button", { name: "Run now" }).click();
  const { runId, run } = await cronRunOpened(page);
  assert.ok(run.cron_scheduled_at >= before - 1000 && run.cron_scheduled_at <= Date.now(), `scheduled now: ${run.cron_scheduled_at}`);

  // The fire is listed on the function's page, by whom, linked to its run.
  await go(page, "#/functions/fixture-cron");
  await waitFor("the Run now fire in the list", async () => (await readFires(page)).some((f) => f.run === runId), { timeoutMs: 10000 });
  const fire = (await readFires(page)).find((f) => f.run === runId);
  assert.match(fire.by, /run.?now/i);
  assert.equal(fire.late, false);
  assert.equal(fire.scheduled, await fmtTime(page, run.cron_scheduled_at));
});

test("Replay of a past scheduled time starts a run whose trigger shows that time", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-cron");
  await page.getByRole("heading", { name: "Fixture: every minute" }).waitFor();
  const replay = page.getByRole("button", { name: "Replay that time" });
  // Nothing to replay until a time is chosen.
  assert.equal(await replay.isDisabled(), true);
  // A scheduled time of `* * * * *` a day and a bit ago, on a whole minute.
  const at = Math.floor((Date.now() - 26 * 3_600_000) / 60_000) * 60_000;
  await page.getByLabel("Scheduled time to replay").fill(toLocalInput(at));
  await replay.click();
  const { runId, run } = await cronRunOpened(page);
  assert.equal(run.cron_scheduled_at, at, "the run is for the chosen scheduled time");
  await screenshot(page, "cron-replay-run");

  await go(page, "#/functions/fixture-cron");
  await waitFor("the replay in the last fires", async () => (await readFires(page)).some((f) => f.run === runId), { timeoutMs: 10000 });
  const fire = (await readFires(page)).find((f) => f.run === runId);
  assert.equal(fire.scheduled, await fmtTime(page, at));
  assert.match(fire.by, /replay/i);
  // Fired now, not at the scheduled time.
  assert.notEqual(fire.fired, fire.scheduled);
  await screenshot(page, "cron-fires");
});

test("Replay of a time in the future is refused with the reason", async () => {
  const { page, expected } = ui;
  expected.push(/\/run-cron$|\/api\/rpc\/run_cron$/); // the refused write: 400
  await go(page, "#/functions/fixture-cron");
  await page.getByRole("heading", { name: "Fixture: every minute" }).waitFor();
  const runsBefore = (await api(server.url, "/api/admin/runs?function_id=fixture-cron")).runs.length;
  const at = Math.floor((Date.now() + 2 * 86_400_000) / 60_000) * 60_000;
  await page.getByLabel("Scheduled time to replay").fill(toLocalInput(at));
  await page.getByRole("button", { name: "Replay that time" }).click();
  const err = page.getByTestId("error").filter({ hasText: /future/ });
  await err.waitFor({ timeout: 10000 });
  assert.match(page.url(), /#\/functions\/fixture-cron$/, "stays on the function's page");
  const runsAfter = (await api(server.url, "/api/admin/runs?function_id=fixture-cron")).runs;
  // The every-minute schedule may have fired meanwhile; no run is for the future time.
  assert.ok(runsAfter.length <= runsBefore + 1);
  for (const r of runsAfter) {
    const d = await api(server.url, `/api/admin/runs/${r.id}`);
    assert.notEqual(d.cron_scheduled_at, at);
  }
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
