// A user's page, Resync: the live progress counts the pages and books fetched as the sync
// goes (a slow fake Readwise with small pages, so there is something to watch), against
// Readwise's total, and once done the page shows the books stored and the sync in the
// history. Needs a Secret Service: run under tests/with-session.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, startFakeReadwise, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, screenshot } from "./lib.mjs";

const BOOKS = 60;
const PAGE = 10; // the fake's largest page: 6 pages of books
const LATENCY_MS = 600;

let fake;
let server;
let ui;

before(async () => {
  fake = await startFakeReadwise({ users: 2, books: BOOKS, latencyMs: LATENCY_MS, maxPageSize: PAGE });
  server = await startServer({ readwiseUrl: fake.url });
  await api(server.url, "/api/admin/users", { method: "POST", token: server.token, body: { id: "reader", name: "Avid Reader", token: "token-00000" } });
  ui = await openConsole(server, { hash: "#/users/reader", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
  await fake?.stop();
});

test("Resync shows the pages and books fetched as they come, then the books stored", async () => {
  const { page } = ui;
  await page.getByTestId("user-summary").waitFor();
  assert.equal(await page.getByTestId("book-count").textContent(), "0");
  await page.getByRole("button", { name: "Resync" }).click();
  const progress = page.getByTestId("sync-progress");
  await progress.waitFor();

  // Watch the progress until the sync is over, noting each state it showed.
  const seen = [];
  await waitFor("the sync to finish on the page", async () => {
    const state = await progress.evaluate((el) => {
      const bar = el.querySelector("progress");
      return {
        text: el.textContent.replace(/\s+/g, " ").trim(),
        value: bar ? Number(bar.getAttribute("value") ?? bar.value) : null,
        max: bar ? Number(bar.getAttribute("max") ?? bar.max) : null,
      };
    }).catch(() => null);
    if (state && seen.at(-1)?.text !== state.text) seen.push(state);
    return state && /^Last sync/.test(state.text);
  }, { timeoutMs: 60000, intervalMs: 50 });

  const counted = seen
    .map((s) => ({ ...s, m: s.text.match(/^Syncing \(run\): (\d+) pages?, (\d+) books? fetched of (\d+)/) }))
    .filter((s) => s.m)
    .map((s) => ({ pages: Number(s.m[1]), books: Number(s.m[2]), total: Number(s.m[3]), value: s.value, max: s.max }));
  const trail = JSON.stringify(seen.map((s) => s.text));
  // Some progress was shown before the end, with real numbers (not just "starting…").
  const partial = counted.filter((c) => c.pages >= 1 && c.books < BOOKS);
  assert.ok(partial.length >= 1, `at least one partial progress: ${trail}`);
  for (const c of counted) {
    assert.equal(c.total, BOOKS, `of Readwise's total: ${trail}`);
    assert.equal(c.books, c.pages * PAGE, `${PAGE} books a page: ${trail}`);
    assert.equal(c.value, c.books, `the progress bar's value is the books fetched: ${trail}`);
    assert.equal(c.max, BOOKS, `the progress bar's max is the total: ${trail}`);
  }
  // It only goes forward.
  for (let i = 1; i < counted.length; i++) assert.ok(counted[i].books >= counted[i - 1].books, trail);
  // Counted more than once as it went (a few pages at 600 ms each).
  assert.ok(new Set(counted.map((c) => c.pages)).size >= 2, `the count moved while syncing: ${trail}`);

  // Done: the page says so, the book count is updated, the history has the sync.
  const last = seen.at(-1).text;
  assert.match(last, new RegExp(`^Last sync Completed .+; ${BOOKS} books stored\\.$`));
  await page.getByTestId("book-count").filter({ hasText: String(BOOKS) }).waitFor({ timeout: 10000 });
  await page.getByTestId("sync-history").locator("tbody tr").first().locator(".status", { hasText: "Completed" }).waitFor({ timeout: 10000 });
  assert.equal((await api(server.url, "/api/admin/users/reader")).stored_books, BOOKS);
  assert.equal(await page.getByRole("button", { name: "Resync" }).isEnabled(), true, "Resync is offered again");
  await screenshot(page, "user-resync-done");
});

test("the page had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
