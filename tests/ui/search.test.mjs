// Finding a run by its content: the search box on the Runs page (`search_runs`), in a real
// browser against the real `stepdesk serve`, over runs with distinctive event data, step
// outputs and errors.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot, runRows } from "./lib.mjs";

let server;
let ui;
const runs = {};

/** An element's text with its white space collapsed (as it reads). */
const text = async (locator) => (await locator.textContent()).replace(/\s+/g, " ").trim();

before(async () => {
  server = await startServer();
  const { url } = server;
  const quokka = await sendEvent(url, "test/noop", { note: "quokka parcel 4711" });
  const kumquat = await sendEvent(url, "test/noop", { note: "kumquat crate" });
  const steps = await sendEvent(url, "test/steps", {});
  const fail = await sendEvent(url, "test/fail", {});
  runs.quokka = await waitForRun(url, "fixture-noop", "Completed", { eventId: quokka });
  runs.kumquat = await waitForRun(url, "fixture-noop", "Completed", { eventId: kumquat });
  runs.steps = await waitForRun(url, "fixture-steps", "Completed", { eventId: steps });
  runs.fail = await waitForRun(url, "fixture-fail", "Failed", { eventId: fail });
  await waitForRun(url, "fixture-fail-failure", "Completed");
  // The index is fed in the background: wait until it has caught up.
  await waitFor("the search index to catch up", async () => {
    const r = await api(url, "/api/admin/search?q=quokka");
    return r.pending === 0 && r.runs.length === 1;
  });
  ui = await openConsole(server, { hash: "#/runs" });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

const search = (page) => page.getByLabel("Search run contents");

async function listed(page, ids, what) {
  await waitFor(what, async () => {
    const rows = await runRows(page);
    return rows.length === ids.length && ids.every((id) => rows.some((r) => r.id === id));
  }, { timeoutMs: 10000 });
}

test("typing a word lists the runs that hold it, in the runs list's rows; the query lives in the URL", async () => {
  const { page } = ui;
  await page.locator(`[data-run-id="${runs.quokka.id}"]`).waitFor();
  await search(page).fill("quokka");
  await listed(page, [runs.quokka.id], "only the quokka run");
  assert.match(page.url(), /#\/runs\?q=quokka$/);
  const [row] = await runRows(page);
  assert.equal(row.fn, "Fixture: three no-op steps");
  assert.equal(row.status, "Completed");
  assert.equal(row.trigger, "test/noop");
  assert.equal(await text(page.getByTestId("runs-total")), "1 run found");
  assert.equal(await page.getByTestId("search-pending").count(), 0, "nothing waits to be indexed");
  await screenshot(page, "runs-search");
  // A result is a link to its run.
  await page.locator(`a.run-row[data-run-id="${runs.quokka.id}"]`).click();
  await page.waitForURL(new RegExp(`#/runs/${runs.quokka.id}$`));
  await page.goBack();
  await listed(page, [runs.quokka.id], "the search again after Back");
  assert.equal(await search(page).inputValue(), "quokka");
});

test("the last word may be the start of a word; Enter searches at once", async () => {
  const { page } = ui;
  await search(page).fill("kumq");
  await search(page).press("Enter");
  await listed(page, [runs.kumquat.id], "the kumquat run by a prefix");
  // Several words: each must be there.
  await search(page).fill("quokka 4711");
  await search(page).press("Enter");
  await listed(page, [runs.quokka.id], "both words");
  await search(page).fill("quokka crate");
  await search(page).press("Enter");
  await page.getByTestId("empty").filter({ hasText: "No runs contain" }).waitFor();
});

test("step outputs and errors are searched too", async () => {
  const { page } = ui;
  await search(page).fill("done");
  await search(page).press("Enter");
  await listed(page, [runs.steps.id], "the run whose steps output done-1..3");
  await search(page).fill("always fails");
  await search(page).press("Enter");
  await waitFor("the failed run", async () => (await runRows(page)).some((r) => r.id === runs.fail.id), { timeoutMs: 10000 });
  const rows = await runRows(page);
  assert.ok(!rows.some((r) => [runs.quokka.id, runs.kumquat.id, runs.steps.id].includes(r.id)), JSON.stringify(rows));
});

test("a deep link searches; the filters apply to the results", async () => {
  const { page } = ui;
  await go(page, "#/runs?q=parcel&status=Failed");
  await page.getByTestId("empty").filter({ hasText: "No runs contain parcel and match these filters" }).waitFor();
  assert.equal(await search(page).inputValue(), "parcel");
  assert.equal(await page.getByLabel("Status").inputValue(), "Failed");
  await page.getByTestId("empty").getByRole("button", { name: "Clear filters" }).click();
  await listed(page, [runs.quokka.id], "the parcel run once the filter is cleared");
  assert.match(page.url(), /#\/runs\?q=parcel$/);
});

test("no match is an empty state, not an error; Clear search lists every run again", async () => {
  const { page } = ui;
  await search(page).fill("zyzzyva");
  await search(page).press("Enter");
  await page.getByTestId("empty").filter({ hasText: "No runs contain zyzzyva" }).waitFor();
  assert.equal(await page.getByTestId("error").count(), 0);
  await page.getByRole("button", { name: "Clear search" }).first().click();
  await page.locator(`[data-run-id="${runs.steps.id}"]`).waitFor();
  assert.ok((await runRows(page)).length >= 5);
  assert.match(page.url(), /#\/runs$/);
  assert.equal(await search(page).inputValue(), "");
});

test("a search without a word asks for one", async () => {
  const { page } = ui;
  await search(page).fill("*** --");
  await search(page).press("Enter");
  await page.getByTestId("empty").filter({ hasText: "Search for at least one word (letters or digits)." }).waitFor();
  await page.getByRole("button", { name: "Clear search" }).first().click();
  await page.locator(`[data-run-id="${runs.steps.id}"]`).waitFor();
});

test("runs still waiting to be indexed are counted, and the results refresh until none wait", async () => {
  const { page } = ui;
  // The engine's own answer, with `pending` raised: the index caught up long ago here, and
  // a real backlog cannot be held still for a test.
  await page.route("**/api/rpc/search_runs", async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    await route.fulfill({ response: res, json: { ...body, pending: 3 } });
  });
  await search(page).fill("quokka");
  await search(page).press("Enter");
  const note = page.getByTestId("search-pending");
  await note.filter({ hasText: "3 runs are still being indexed" }).waitFor();
  await listed(page, [runs.quokka.id], "the results beside the note");
  await page.unroute("**/api/rpc/search_runs");
  await note.waitFor({ state: "detached", timeout: 5000 });
  await listed(page, [runs.quokka.id], "the results after the refresh");
});

test("the search works by keyboard", async () => {
  const { page } = ui;
  await go(page, "#/runs");
  await page.locator(`[data-run-id="${runs.steps.id}"]`).waitFor();
  await search(page).focus();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("kumquat");
  await page.keyboard.press("Enter");
  await listed(page, [runs.kumquat.id], "the kumquat run");
  // The first result is a Tab away from the box and its buttons; Enter opens it.
  const first = page.locator("a.run-row").first();
  for (let i = 0; i < 12 && !(await first.evaluate((a) => a === document.activeElement)); i++) {
    await page.keyboard.press("Tab");
  }
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`#/runs/${runs.kumquat.id}$`));
});

test("the page had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
