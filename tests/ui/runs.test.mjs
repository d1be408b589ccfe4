// The console's shell, the runs list and the run page, in a real browser against the real
// `stepdesk serve` with the test fixtures.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, waitFor, api, EVENT_KEY } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot, runRows, fmtTime } from "./lib.mjs";

let server;
let ui;
const runs = {};

before(async () => {
  server = await startServer();
  const { url } = server;
  const noopEvent = await sendEvent(url, "test/noop");
  const failEvent = await sendEvent(url, "test/fail");
  const stepsEvent = await sendEvent(url, "test/steps", { step_ms: 5 });
  runs.noop = await waitForRun(url, "fixture-noop", "Completed", { eventId: noopEvent });
  runs.fail = await waitForRun(url, "fixture-fail", "Failed", { eventId: failEvent });
  runs.steps = await waitForRun(url, "fixture-steps", "Completed", { eventId: stepsEvent });
  runs.failureHandler = await waitForRun(url, "fixture-fail-failure", "Completed");
  ui = await openConsole(server);
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

test("the top bar says this is the local console, connected, with version and data directory", async () => {
  const { page } = ui;
  assert.match(await page.title(), /Stepdesk/);
  assert.equal(await page.locator(".topbar .local").textContent(), "LOCAL");
  assert.equal(await page.getByTestId("engine-status").textContent(), "Connected");
  const info = await api(server.url, "/api/admin/info");
  assert.equal(await page.getByTestId("engine-version").textContent(), info.version);
  assert.equal(await page.getByTestId("data-dir").textContent(), info.data_dir);
  // Pushed over server-sent events: "live", not the polling fallback.
  await page.locator("[data-testid=feed-state][data-feed=live]").waitFor({ timeout: 10000 });
  assert.equal(await page.getByTestId("feed-state").textContent(), "live");
  // Every page is one click away, by a link with a visible name.
  for (const name of ["Runs", "Functions", "Events", "Users", "Daily sync", "Settings"]) {
    assert.equal(await page.getByRole("link", { name, exact: true }).count(), 1, name);
  }
});

test("the runs list shows each run with its status, newest first, and the total", async () => {
  const { page } = ui;
  await page.locator(`[data-run-id="${runs.steps.id}"]`).waitFor();
  const rows = await runRows(page);
  const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
  const expect = [
    [runs.noop, "Fixture: three no-op steps", "Completed", "test/noop"],
    [runs.fail, "Fixture: always fails, with a failure handler", "Failed", "test/fail"],
    [runs.steps, "Fixture: three recorded steps", "Completed", "test/steps"],
    [runs.failureHandler, "Fixture: always fails, with a failure handler (failure handler)", "Completed", "inngest/function.failed"],
  ];
  for (const [run, fn, status, trigger] of expect) {
    const row = byId[run.id];
    assert.ok(row, `run ${run.id} of ${run.function_id} is listed`);
    assert.equal(row.fn, fn);
    assert.equal(row.status, status);
    assert.equal(row.trigger, trigger);
    assert.notEqual(row.queued, "");
    assert.match(row.duration, /^\d+(\.\d+)? (ms|s)$/);
  }
  const ids = rows.map((r) => r.id);
  assert.deepEqual(ids, [...ids].sort().reverse(), "newest first");
  const page1 = await api(server.url, "/api/admin/runs?limit=100");
  assert.deepEqual(ids, page1.runs.map((r) => r.id), "what the API returns, nothing more");
  assert.match(await page.getByTestId("runs-total").textContent(), new RegExp(`^${rows.length}( runs| loaded)`));
  // A failed run looks different from a completed one.
  const color = (id) => page.$eval(`[data-run-id="${id}"] .status`, (el) => getComputedStyle(el).color);
  assert.notEqual(await color(runs.fail.id), await color(runs.noop.id));
  await screenshot(page, "runs");
});

test("filters live in the URL, and a deep link applies them", async () => {
  const { page } = ui;
  await page.getByLabel("Status").selectOption("Failed");
  await waitFor("only failed runs", async () => {
    const rows = await runRows(page);
    return rows.length === 1 && rows[0].id === runs.fail.id;
  }, { timeoutMs: 5000 });
  assert.match(page.url(), /#\/runs\?status=Failed$/);

  await go(page, `#/runs?fn=fixture-steps`);
  await waitFor("only fixture-steps runs", async () => {
    const rows = await runRows(page);
    return rows.length === 1 && rows[0].id === runs.steps.id;
  }, { timeoutMs: 5000 });
  assert.equal(await page.getByLabel("Function").inputValue(), "fixture-steps");
  assert.equal(await page.getByLabel("Status").inputValue(), "");

  // No match is "no runs match", not an error, with a way out.
  await page.getByLabel("Status").selectOption("Cancelled");
  await page.getByTestId("empty").filter({ hasText: "No runs match these filters" }).waitFor();
  await page.getByRole("button", { name: "Clear filters" }).first().click();
  await page.locator(`[data-run-id="${runs.noop.id}"]`).waitFor();
  assert.match(page.url(), /#\/runs$/);
});

test("the time range has quick picks and absolute times", async () => {
  const { page } = ui;
  await page.getByLabel("Queued").selectOption("1h");
  await page.locator(`[data-run-id="${runs.noop.id}"]`).waitFor();
  assert.match(page.url(), /range=1h/);
  await page.getByLabel("Queued").selectOption("custom");
  // An absolute range that ends before every run: none match.
  await page.getByLabel("From", { exact: true }).fill("2020-01-01T00:00");
  await page.getByLabel("To", { exact: true }).fill("2020-01-02T00:00");
  await page.getByTestId("empty").waitFor();
  assert.match(page.url(), /range=custom&from=2020-01-01T00%3A00&to=2020-01-02T00%3A00/);
  await page.getByRole("button", { name: "Clear filters" }).first().click();
  await page.locator(`[data-run-id="${runs.noop.id}"]`).waitFor();
});

test("new runs appear without reloading the page", async () => {
  const { page } = ui;
  // While the feed is live the console does not poll: a run that shows came by the push.
  assert.equal(await page.getByTestId("feed-state").getAttribute("data-feed"), "live");
  const eventId = await sendEvent(server.url, "test/noop");
  const run = await waitForRun(server.url, "fixture-noop", "Completed", { eventId });
  await page.locator(`[data-run-id="${run.id}"] .status`, { hasText: "Completed" }).waitFor({ timeout: 10000 });
  // At the top, but for runs queued after it (the fixtures' every-minute cron may start one
  // meanwhile): every row above it is newer (run ids are ULIDs, in time order).
  const rows = await runRows(page);
  const at = rows.findIndex((r) => r.id === run.id);
  assert.ok(at >= 0 && rows.slice(0, at).every((r) => r.id > run.id), `at the top: ${JSON.stringify(rows.slice(0, at + 1))}`);
  assert.ok(at <= 1, `at most one newer run above it (the cron's): ${at}`);
});

test("a run page shows its header, trace timeline, steps and their output", async () => {
  const { page } = ui;
  await page.locator(`[data-run-id="${runs.steps.id}"]`).click();
  assert.match(page.url(), new RegExp(`#/runs/${runs.steps.id}$`));
  await page.getByRole("heading", { name: "Fixture: three recorded steps" }).waitFor();
  const header = await page.getByTestId("run-header").textContent();
  assert.match(header, new RegExp(runs.steps.id));
  assert.match(header, /Queued.*Started.*Ended.*Duration/s);
  assert.match(await page.getByTestId("run-trigger").textContent(), /test\/steps/);
  // One timeline row per step, each with a bar.
  for (const step of ["step-1", "step-2", "step-3"]) {
    const row = page.locator(`[data-testid=timeline] [data-step="${step}"]`);
    assert.ok((await row.locator(".bar").count()) >= 1, `${step} has a bar`);
  }
  // A step opens with its output and a copy button.
  await page.getByRole("button", { name: "step-2" }).first().click();
  const output = page.getByTestId("step-output");
  await output.waitFor();
  assert.match(await output.locator("pre").textContent(), /done-2/);
  await output.getByRole("button", { name: "Copy output" }).click();
  await output.getByRole("button", { name: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "done-2");
  assert.match(await page.getByTestId("run-event").textContent(), /"name": "test\/steps"/);
  await screenshot(page, "run-detail");
});

test("an invoke step links to the run it started, and that run back to it", async () => {
  const { page } = ui;
  const eventId = await sendEvent(server.url, "test/invoke");
  const parent = await waitForRun(server.url, "fixture-invoke", "Completed", { eventId });
  const detail = await api(server.url, `/api/admin/runs/${parent.id}`);
  const child = detail.steps.find((s) => s.kind === "Invoke").input.run_id;
  assert.ok(child, "the invoke step names its run");
  await go(page, `#/runs/${parent.id}`);
  const step = page.locator("[data-testid=steps] li.step", { has: page.locator(".muted", { hasText: /^Invoke$/ }) });
  assert.match(await step.locator(".step-kind").textContent(), /Invokes fixture-noop/);
  await step.getByRole("link", { name: "Child run" }).click();
  await page.waitForURL(new RegExp(`#/runs/${child}$`));
  const trigger = page.getByTestId("run-trigger");
  await trigger.getByRole("link", { name: parent.id }).waitFor();
  assert.match(await trigger.textContent(), /Invoked by/);
  await trigger.getByRole("link", { name: parent.id }).click();
  await page.waitForURL(new RegExp(`#/runs/${parent.id}$`));
});

test("a failed run shows its error", async () => {
  const { page } = ui;
  await go(page, `#/runs/${runs.fail.id}`);
  const err = page.getByTestId("run-error");
  await err.waitFor();
  assert.match(await err.textContent(), /this function always fails/);
  await screenshot(page, "run-failed");
});

test("rerun asks for the admin token in a browser, then opens the new run", async () => {
  const { page } = ui;
  ui.expected.push(/\/api\/rpc\/rerun$/); // the first try, without the token: 401
  await go(page, `#/runs/${runs.noop.id}`);
  await page.getByRole("button", { name: "Rerun", exact: true }).click();
  // A write without the token: the unlock dialog, not a silent failure.
  const dialog = page.getByTestId("unlock-dialog");
  await dialog.waitFor();
  await dialog.getByLabel("Admin token").fill(server.token);
  await dialog.getByRole("button", { name: "Unlock changes" }).click();
  await page.waitForURL((u) => /#\/runs\/[0-9A-Z]{26}$/.test(u.hash) && !u.hash.endsWith(runs.noop.id));
  const newId = page.url().split("/").pop();
  await page.getByTestId("run-trigger").filter({ hasText: `Rerun of ${runs.noop.id}` }).waitFor();
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 10000 });
  const detail = await api(server.url, `/api/admin/runs/${newId}`);
  assert.equal(detail.rerun_of, runs.noop.id);
  // The top bar now offers to lock again.
  await page.getByRole("button", { name: "Lock changes" }).waitFor();
});

test("cancel a sleeping run, after confirming", async () => {
  const { page } = ui;
  const eventId = await sendEvent(server.url, "test/sleep", { sleep_ms: 600000 });
  const run = await waitForRun(server.url, "fixture-sleep", "Running", { eventId });
  await go(page, `#/runs/${run.id}`);
  // The sleep step says when it wakes.
  await page.locator("[data-step-id=nap]", { hasText: /Wakes at/ }).waitFor({ timeout: 10000 });
  await page.getByRole("button", { name: "Cancel run" }).click();
  const confirm = page.getByRole("dialog", { name: "Cancel this run?" });
  await confirm.waitFor();
  // "Keep it" changes nothing.
  await confirm.getByRole("button", { name: "Keep it" }).click();
  assert.equal((await api(server.url, `/api/admin/runs/${run.id}`)).status, "Running");
  await page.getByRole("button", { name: "Cancel run" }).click();
  await confirm.getByRole("button", { name: "Cancel run" }).click();
  await page.locator(".page-head .status", { hasText: "Cancelled" }).waitFor({ timeout: 10000 });
  assert.equal((await api(server.url, `/api/admin/runs/${run.id}`)).status, "Cancelled");
});

test("a run whose event has a future ts says when it is scheduled, and starts no step before", async () => {
  const { page } = ui;
  const ts = Date.now() + 10 * 60 * 1000;
  const out = await api(server.url, `/e/${EVENT_KEY}`, { method: "POST", body: { name: "test/noop", data: {}, ts } });
  const run = await waitForRun(server.url, "fixture-noop", "Running", { eventId: out.ids[0] });
  await go(page, `#/runs/${run.id}`);
  const started = page.getByTestId("run-started");
  await started.filter({ hasText: "scheduled for" }).waitFor({ timeout: 10000 });
  assert.equal((await started.textContent()).trim(), `not yet: scheduled for ${await fmtTime(page, ts)} (the event's ts)`);
  await page.getByText(/^Scheduled: it starts at/).waitFor();
  const detail = await api(server.url, `/api/admin/runs/${run.id}`);
  assert.equal(detail.started_at, null);
  assert.equal(detail.steps.length, 0);
  // Cancelled, so that it does not start during the other tests.
  await page.getByRole("button", { name: "Cancel run" }).click();
  await page.getByRole("dialog", { name: "Cancel this run?" }).getByRole("button", { name: "Cancel run" }).click();
  await page.locator(".page-head .status", { hasText: "Cancelled" }).waitFor({ timeout: 10000 });
});

test("keyboard: the rows are links that arrow keys move between", async () => {
  const { page } = ui;
  await go(page, "#/runs");
  const first = page.locator("a.run-row").first();
  await first.waitFor();
  await first.focus();
  await page.keyboard.press("ArrowDown");
  await waitFor("the second row to have the focus", () =>
    page.evaluate(() => document.activeElement?.dataset.index === "1"), { timeoutMs: 3000 });
  await page.keyboard.press("Enter");
  await page.waitForURL(/#\/runs\/[0-9A-Z]{26}$/);
});

test("the page had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});

test("a stopped engine shows as an error, not as an empty list", async () => {
  // No fixtures: their every-minute cron would put a run in the list this test wants empty.
  const other = await startServer({ fixtures: false });
  const view = await openConsole(other);
  try {
    await view.page.getByTestId("empty").waitFor();
    await other.stop();
    await view.page.getByRole("button", { name: "Runs", exact: false }).count();
    // Reloading the list (Retry-like: change a filter) against the stopped engine.
    await view.page.getByLabel("Status").selectOption("Failed");
    const err = view.page.getByTestId("error");
    await err.waitFor({ timeout: 10000 });
    assert.match(await err.textContent(), /unreachable|cannot reach/i);
    assert.equal(await view.page.getByTestId("empty").count(), 0, "no 'No runs' beside the error");
    await view.page.getByTestId("engine-status").filter({ hasText: "Unreachable" }).waitFor({ timeout: 10000 });
    await view.page.getByRole("button", { name: "Retry" }).first().waitFor();
    await screenshot(view.page, "engine-unreachable");
  } finally {
    await view.close();
    await other.stop();
  }
});
