// The Functions pages: the searchable table, a function's page, and Test function.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

let server;
let ui;

before(async () => {
  server = await startServer();
  const ev = await sendEvent(server.url, "test/noop");
  await waitForRun(server.url, "fixture-noop", "Completed", { eventId: ev });
  ui = await openConsole(server, { hash: "#/functions", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

/** The functions table's rows as objects keyed by the header texts. */
function readTable(page) {
  return page.$eval("#functions", (table) => {
    const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    return [...table.querySelectorAll("tbody tr")].map((tr) =>
      Object.fromEntries(headers.map((h, i) => [h, tr.cells[i].textContent.trim()])),
    );
  });
}

test("the functions table lists every function with its triggers, next fire, retries and handler", async () => {
  const { page } = ui;
  await page.locator("#functions").waitFor();
  const rows = await readTable(page);
  const registered = (await api(server.url, "/api/admin/functions")).map((f) => f.id).sort();
  assert.deepEqual(rows.map((r) => r.Id).sort(), registered);
  const byId = Object.fromEntries(rows.map((r) => [r.Id, r]));
  assert.equal(byId["fixture-noop"].Name, "Fixture: three no-op steps");
  assert.equal(byId["fixture-noop"].Triggers, "event: test/noop");
  assert.equal(byId["fixture-noop"]["Next fire"], "");
  assert.equal(byId["fixture-cron"].Triggers, "cron: * * * * *");
  assert.notEqual(byId["fixture-cron"]["Next fire"], "");
  assert.equal(byId["fixture-flaky"].Retries, "3");
  assert.match(byId["fixture-fail-failure"]["Failure handler"], /handles fixture-fail/);
  assert.equal(byId["fixture-fail"]["Failure handler"], "yes");
  // Built into Stepdesk (no SDK app), and which part of it.
  assert.equal(byId["fixture-noop"].Source, "built in (test fixtures)");
  // The token came in the URL (`#token=`): changes are unlocked, and the URL is clean.
  await page.getByRole("button", { name: "Lock changes" }).waitFor();
  assert.doesNotMatch(page.url(), /token/);
  await screenshot(page, "functions");
});

test("the search narrows the table and lives in the URL", async () => {
  const { page } = ui;
  await page.getByLabel("Search functions").fill("sleep");
  await page.waitForFunction(() => document.querySelectorAll("#functions tbody tr").length === 1);
  assert.deepEqual((await readTable(page)).map((r) => r.Id), ["fixture-sleep"]);
  assert.match(page.url(), /#\/functions\?q=sleep$/);
  await page.getByLabel("Search functions").fill("no such thing");
  await page.getByTestId("empty").waitFor();
  await page.getByLabel("Search functions").fill("");
});

test("a function's page shows its configuration and recent runs", async () => {
  const { page } = ui;
  await page.getByRole("link", { name: "Fixture: three no-op steps" }).click();
  await page.getByRole("heading", { name: "Fixture: three no-op steps" }).waitFor();
  assert.match(page.url(), /#\/functions\/fixture-noop$/);
  const config = await page.getByTestId("function-config").textContent();
  assert.match(config, /event: test\/noop/);
  assert.match(config, /Retries\s*\d/);
  await page.getByTestId("recent-runs").locator("tbody tr").first().waitFor();
  assert.match(await page.getByTestId("recent-runs").textContent(), /Completed/);
});

test("Test function: the payload is validated, the run opens live and completes with its steps", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-steps");
  const editor = page.locator("[data-testid=json-editor] .cm-content");
  await editor.waitFor();
  // Prefilled with an object.
  assert.match(await editor.textContent(), /^\{\s*\}$/);
  // Invalid JSON: said so, and the run cannot be started.
  await editor.fill('{"step_ms": ');
  await page.getByTestId("payload-status").filter({ hasText: /Not valid JSON/ }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Run with this payload" }).isDisabled(), true);
  await editor.fill("[1, 2]");
  await page.getByTestId("payload-status").filter({ hasText: /must be a JSON object/ }).waitFor();
  await editor.fill('{"step_ms": 300}');
  await page.getByTestId("payload-status").filter({ hasText: "Valid payload." }).waitFor();
  await page.getByRole("button", { name: "Run with this payload" }).click();
  await page.waitForURL(/#\/runs\/[0-9A-Z]{26}$/);
  const runId = page.url().split("/").pop();
  // The live run: steps appear as they complete, then the run completes.
  await page.locator(".page-head .status", { hasText: "Running" }).waitFor({ timeout: 5000 }).catch(() => {});
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });
  for (const step of ["step-1", "step-2", "step-3"]) {
    await page.locator(`[data-step-id="${step}"] .status`, { hasText: "Completed" }).waitFor();
  }
  const run = await api(server.url, `/api/admin/runs/${runId}`);
  assert.equal(run.function_id, "fixture-steps");
  assert.equal(run.event.data.step_ms, 300);
  assert.equal(run.steps.length, 3);
  await screenshot(page, "test-function-run");

  // The last payload is remembered for this function.
  await go(page, "#/functions/fixture-steps");
  await page.locator("[data-testid=json-editor] .cm-content").waitFor();
  assert.match(await page.locator("[data-testid=json-editor] .cm-content").textContent(), /"step_ms": 300/);
  await screenshot(page, "function-detail");
});

test("a cron function can be run now", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-cron");
  await page.getByRole("button", { name: "Run now" }).click();
  await page.waitForURL(/#\/runs\/[0-9A-Z]{26}$/);
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });
  const run = await api(server.url, `/api/admin/runs/${page.url().split("/").pop()}`);
  assert.equal(run.function_id, "fixture-cron");
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
