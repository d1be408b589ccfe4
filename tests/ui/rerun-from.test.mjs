// "Rerun from step" on the run page, in a real browser against the real `stepdesk serve`:
// the `fixture-input` fixture (its middle step `echo` is a `step.run_with` that echoes its
// input; its first step outputs the id of the run it executed in) is rerun from `echo` with
// an edited input, and the new run reuses `first` and runs `echo` with that input.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

let server;
let ui;
let original;

before(async () => {
  server = await startServer();
  const eventId = await sendEvent(server.url, "test/input", { text: "original words" });
  original = await waitForRun(server.url, "fixture-input", "Completed", { eventId });
  ui = await openConsole(server, { hash: `#/runs/${original.id}`, token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

const step = (page, id) => page.locator(`[data-testid=steps] [data-step-id="${id}"]`);
/** An element's text with its white space collapsed (as it reads). */
const text = async (locator) => (await locator.textContent()).replace(/\s+/g, " ").trim();
const runsOf = async (fn) => (await api(server.url, `/api/admin/runs?function_id=${fn}`)).runs;

/** Opens a step's panel on the run page and returns its output's text. */
async function stepOutput(page, id) {
  const s = step(page, id);
  const toggle = s.locator("button.toggle");
  if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
  const out = s.getByTestId("step-output");
  await out.waitFor();
  return (await out.locator("pre").textContent()).trim();
}

test("a finished run offers Rerun from this step on its run steps, a running one does not", async () => {
  const { page } = ui;
  await page.getByRole("heading", { name: "Fixture: a step that takes an input" }).waitFor();
  for (const id of ["first", "echo", "last"]) {
    await step(page, id).getByRole("button", { name: "Rerun from this step" }).waitFor();
  }
  // The button says which step it is for.
  const button = step(page, "echo").getByRole("button", { name: "Rerun from this step" });
  assert.equal(await button.evaluate((b) => document.getElementById(b.getAttribute("aria-describedby")).textContent), "echo");

  const sleepEvent = await sendEvent(server.url, "test/sleep", { sleep_ms: 600000 });
  const sleeping = await waitForRun(server.url, "fixture-sleep", "Running", { eventId: sleepEvent });
  await go(page, `#/runs/${sleeping.id}`);
  await page.locator("[data-step-id=nap]", { hasText: /Wakes at/ }).waitFor({ timeout: 10000 });
  assert.equal(await page.getByRole("button", { name: "Rerun from this step" }).count(), 0, "not while it runs");
  await api(server.url, `/api/admin/runs/${sleeping.id}/cancel`, { method: "POST", token: server.token });
  await page.locator(".page-head .status", { hasText: "Cancelled" }).waitFor({ timeout: 10000 });
  // Cancelled is finished: its run step `before` is offered, the sleep is not.
  await step(page, "before").getByRole("button", { name: "Rerun from this step" }).waitFor();
  assert.equal(await step(page, "nap").getByRole("button", { name: "Rerun from this step" }).count(), 0, "a sleep step");
});

test("the dialog shows the recorded input beside a validated editable copy; Keep this run changes nothing", async () => {
  const { page } = ui;
  await go(page, `#/runs/${original.id}`);
  await step(page, "echo").getByRole("button", { name: "Rerun from this step" }).click();
  const dialog = page.getByRole("dialog", { name: "Rerun from step echo" });
  await dialog.waitFor();
  assert.match(await text(dialog), /The step before echo reuses this run's results without executing again; echo and the steps after it execute/);
  assert.deepEqual(JSON.parse(await dialog.getByTestId("recorded-input").locator("pre").textContent()), { text: "original words" });
  const editor = dialog.locator("[data-testid=json-editor] .cm-content");
  await waitFor("the editor prefilled with the recorded input", async () =>
    /"text": "original words"/.test(await editor.textContent()), { timeoutMs: 5000 });
  const status = dialog.getByTestId("rerun-input-status");
  assert.match(await text(status), /Unchanged: the step gets its recorded input/);

  await editor.fill('{"text": "edited');
  await status.filter({ hasText: "Not valid JSON" }).waitFor();
  assert.equal(await dialog.getByRole("button", { name: /^Rerun/ }).isDisabled(), true, "invalid JSON cannot be sent");
  await dialog.getByRole("button", { name: "Reset to the recorded input" }).click();
  await status.filter({ hasText: "Unchanged" }).waitFor();

  const before = (await runsOf("fixture-input")).length;
  await dialog.getByRole("button", { name: "Keep this run" }).click();
  await dialog.waitFor({ state: "hidden" });
  assert.equal((await runsOf("fixture-input")).length, before, "nothing started");
  assert.match(page.url(), new RegExp(`#/runs/${original.id}$`));
});

test("rerun from the 2nd step with an edited input: the first step is reused, the edited input reaches the step", async () => {
  const { page } = ui;
  await go(page, `#/runs/${original.id}`);
  await step(page, "echo").getByRole("button", { name: "Rerun from this step" }).click();
  const dialog = page.getByRole("dialog", { name: "Rerun from step echo" });
  await dialog.waitFor();
  const editor = dialog.locator("[data-testid=json-editor] .cm-content");
  await waitFor("the editor prefilled", async () => /original words/.test(await editor.textContent()), { timeoutMs: 5000 });
  await editor.fill('{"text": "edited words"}');
  await dialog.getByTestId("rerun-input-status").filter({ hasText: "Valid. The step gets this edited input." }).waitFor();
  await screenshot(page, "rerun-from-dialog");
  await dialog.getByRole("button", { name: "Rerun with the edited input" }).click();

  // The new run opens, and completes.
  await page.waitForURL((u) => /#\/runs\/[0-9A-Z]{26}$/.test(u.hash) && !u.hash.endsWith(original.id));
  const newId = page.url().split("/").pop();
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });

  // It says what it is: a rerun of the original from `echo`, with the edited input.
  const note = page.getByTestId("rerun-from");
  assert.match(await text(note), new RegExp(`Rerun from step echo of run ${original.id}`));
  assert.match(await text(note), /the step before it reused that run's results/);
  assert.match(await text(note), /echo and the steps after it executed in this run, with an edited input/);
  assert.deepEqual(JSON.parse(await page.getByTestId("rerun-step-input").locator("pre").textContent()), { text: "edited words" });
  assert.match(await text(page.getByTestId("run-trigger")), new RegExp(`Rerun of ${original.id} from step echo`));

  // `first` is marked reused and did not execute again: its output still names the
  // original run (a new execution would output the new run's id), and it has no timing.
  const first = step(page, "first");
  assert.equal(await first.getByTestId("reused").textContent(), "Reused");
  assert.match(await text(first), new RegExp(`from ${original.id}`));
  assert.equal(await first.getByTestId("step-timing").textContent(), "not executed in this run");
  assert.equal(await stepOutput(page, "first"), original.id);
  assert.match(await text(page.locator('[data-testid=timeline] [data-step="first"]')),
    /reused, not executed in this run/,
  );
  // `echo` executed with the edited input; `last` ran after it on its output.
  assert.equal(await step(page, "echo").getByTestId("reused").count(), 0);
  assert.equal(await step(page, "last").getByTestId("reused").count(), 0);
  assert.deepEqual(JSON.parse(await stepOutput(page, "echo")), { echoed: { text: "edited words" } });
  assert.equal(await stepOutput(page, "last"), "EDITED WORDS");
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, "rerun-from-run");

  // The engine agrees.
  const d = await api(server.url, `/api/admin/runs/${newId}`);
  const byId = Object.fromEntries(d.steps.map((s) => [s.id, s]));
  assert.equal(d.rerun_of, original.id);
  assert.equal(d.rerun_from_step, byId.echo.hash);
  assert.deepEqual(d.rerun_step_input, { text: "edited words" });
  assert.equal(byId.first.reused_from, original.id);
  assert.equal(byId.first.output, original.id);
  assert.equal(byId.echo.reused_from, null);
  assert.deepEqual(byId.echo.input, { text: "edited words" });
  assert.deepEqual(d.output, { first_ran_in: original.id, echo: { echoed: { text: "edited words" } }, last: "EDITED WORDS" });
});

test("rerun from the last step without an edit: the steps before it are reused", async () => {
  const { page } = ui;
  await go(page, `#/runs/${original.id}`);
  await step(page, "last").getByRole("button", { name: "Rerun from this step" }).click();
  const dialog = page.getByRole("dialog", { name: "Rerun from step last" });
  await dialog.waitFor();
  assert.match(await text(dialog.getByTestId("rerun-no-input")), /takes no input/);
  assert.match(await text(dialog), /The 2 steps before last reuse this run's results/);
  await dialog.getByRole("button", { name: "Rerun from this step" }).click();
  await page.waitForURL((u) => /#\/runs\/[0-9A-Z]{26}$/.test(u.hash) && !u.hash.endsWith(original.id));
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });
  assert.equal(await step(page, "first").getByTestId("reused").count(), 1);
  assert.equal(await step(page, "echo").getByTestId("reused").count(), 1);
  assert.equal(await step(page, "last").getByTestId("reused").count(), 0);
  assert.equal(await page.getByTestId("rerun-step-input").count(), 0, "no edited input");
  assert.deepEqual(JSON.parse(await stepOutput(page, "echo")), { echoed: { text: "original words" } });
});

test("the page had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
