// Daily sync replays against the fake Readwise API: a daily sync where two of four users
// fail (tokens the fake Readwise does not know: 401), their tokens fixed, then "Replay
// failed users" syncs those two only (the others get no new run), and "Replay all users"
// syncs everyone again. Also the daily sync run's send_event step, which links to the
// events it sent. Needs a Secret Service: run under tests/with-session.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, startFakeReadwise, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

const BOOKS = 7;
const GOOD = { ok1: "token-00000", ok2: "token-00001" };
const BAD = { bad1: "not-a-readwise-token-1", bad2: "not-a-readwise-token-2" };
const FIXED = { bad1: "token-00002", bad2: "token-00003" };
const ALL = ["bad1", "bad2", "ok1", "ok2"];

let fake;
let server;
let ui;
let original; // the first daily sync's run id

before(async () => {
  fake = await startFakeReadwise({ users: 4, books: BOOKS });
  server = await startServer({ readwiseUrl: fake.url });
  for (const [id, token] of Object.entries({ ...GOOD, ...BAD })) {
    await api(server.url, "/api/admin/users", { method: "POST", token: server.token, body: { id, token } });
  }
  ui = await openConsole(server, { hash: "#/daily-sync", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
  await fake?.stop();
});

const syncItem = (page, runId) => page.locator(`[data-testid=daily-syncs] > li[data-run-id="${runId}"]`);

/** The fetch runs of each user, from the engine (ids, newest first). */
async function fetchRunsByUser() {
  const out = {};
  for (const id of ALL) {
    const p = await api(server.url, `/api/admin/users/${id}/page`);
    out[id] = p.runs.map((r) => r.id);
  }
  return out;
}

/** The opened per-user table of a daily sync: {user: {status, error, run}}. */
async function readUsers(item) {
  const table = item.getByTestId("daily-sync-users");
  await table.waitFor({ timeout: 10000 });
  return table.evaluate((t) =>
    Object.fromEntries(
      [...t.querySelectorAll("tbody tr")].map((tr) => {
        const c = [...tr.cells].map((td) => td.textContent.replace(/\s+/g, " ").trim());
        return [c[0], { status: c[1], error: c[2], run: c[3] }];
      }),
    ),
  );
}

/** Waits for a daily sync newer than `known` to be listed; returns its run id. */
async function newDailySync(page, known) {
  return waitFor("a new daily sync on the page", async () => {
    const ids = await page.$$eval("[data-testid=daily-syncs] > li", (lis) => lis.map((li) => li.dataset.runId));
    return ids.find((id) => !known.includes(id));
  }, { timeoutMs: 15000 });
}

test("a daily sync where some users fail shows who failed and why", async () => {
  const { page } = ui;
  await page.getByRole("heading", { name: "Daily sync", exact: true }).waitFor();
  await page.getByRole("button", { name: "Run now" }).first().click();
  await page.getByRole("status").filter({ hasText: "Daily sync requested" }).waitFor();
  original = await newDailySync(page, []);
  const item = syncItem(page, original);
  await item.getByTestId("daily-sync-counts").filter({ hasText: /4 of 4 users done · 2 ok · 2 failed\s*done/ }).waitFor({ timeout: 30000 });
  await item.getByRole("button", { name: "Show users" }).click();
  const users = await readUsers(item);
  assert.deepEqual(Object.keys(users).sort(), ALL);
  for (const id of Object.keys(GOOD)) {
    assert.equal(users[id].status, "Completed", id);
    assert.equal(users[id].error, "", id);
  }
  for (const id of Object.keys(BAD)) {
    assert.equal(users[id].status, "Failed", id);
    assert.match(users[id].error, new RegExp(`Readwise rejected the token for user ${id}`), id);
    assert.match(users[id].run, /^[0-9A-Z]{26}$/);
  }
  // Replaying the failed users is offered, as is replaying everyone.
  assert.equal(await item.getByRole("button", { name: "Replay failed users" }).isEnabled(), true);
  assert.equal(await item.getByRole("button", { name: "Replay all users" }).isEnabled(), true);
  await screenshot(page, "daily-sync-failed-users");
});

test("Replay failed users syncs only the users that failed, linked to the original", async () => {
  const { page } = ui;
  assert.ok(original, "the first test made a daily sync");
  // Support fixes the two tokens (a new token is unchecked, so the sync will try it).
  for (const [id, token] of Object.entries(FIXED)) {
    await api(server.url, `/api/admin/users/${id}/token`, { method: "PUT", token: server.token, body: { token } });
  }
  const runsBefore = await fetchRunsByUser();
  const known = await page.$$eval("[data-testid=daily-syncs] > li", (lis) => lis.map((li) => li.dataset.runId));

  await syncItem(page, original).getByRole("button", { name: "Replay failed users" }).click();
  await page.getByRole("status").filter({ hasText: "Replay of the daily sync requested (failed users only)." }).waitFor();
  const replay = await newDailySync(page, known);
  const item = syncItem(page, replay);
  await item.getByText(`replay of ${original}`).waitFor({ timeout: 10000 });
  assert.equal(await item.getByRole("link", { name: original }).first().getAttribute("href"), `#/runs/${original}`);
  await item.getByTestId("daily-sync-counts").filter({ hasText: /2 of 2 users done · 2 ok · 0 failed\s*done/ }).waitFor({ timeout: 30000 });
  await item.getByRole("button", { name: "Show users" }).click();
  const users = await readUsers(item);
  assert.deepEqual(Object.keys(users).sort(), ["bad1", "bad2"], "only the users that failed");
  for (const id of ["bad1", "bad2"]) assert.equal(users[id].status, "Completed", id);
  // Nothing failed in the replay: nothing to replay "failed only" there.
  assert.equal(await item.getByRole("button", { name: "Replay failed users" }).isDisabled(), true);

  // Each failed user got one new run (the one listed); the others none.
  const runsAfter = await waitFor("the new runs recorded", async () => {
    const r = await fetchRunsByUser();
    return r.bad1.length === runsBefore.bad1.length + 1 && r.bad2.length === runsBefore.bad2.length + 1 && r;
  }, { timeoutMs: 10000 });
  for (const id of ["bad1", "bad2"]) {
    const fresh = runsAfter[id].filter((r) => !runsBefore[id].includes(r));
    assert.deepEqual(fresh, [users[id].run], `${id}'s new run is the replay's`);
  }
  for (const id of Object.keys(GOOD)) assert.deepEqual(runsAfter[id], runsBefore[id], `${id} was not synced again`);
  for (const id of ["bad1", "bad2"]) {
    assert.equal((await api(server.url, `/api/admin/users/${id}`)).stored_books, BOOKS, `${id}'s books are stored`);
  }
  await screenshot(page, "daily-sync-replay-failed");
});

test("Replay all users syncs every user of the original again", async () => {
  const { page } = ui;
  assert.ok(original, "the first test made a daily sync");
  const runsBefore = await fetchRunsByUser();
  const known = await page.$$eval("[data-testid=daily-syncs] > li", (lis) => lis.map((li) => li.dataset.runId));
  await syncItem(page, original).getByRole("button", { name: "Replay all users" }).click();
  await page.getByRole("status").filter({ hasText: "Replay of the daily sync requested (all users)." }).waitFor();
  const replay = await newDailySync(page, known);
  const item = syncItem(page, replay);
  await item.getByText(`replay of ${original}`).waitFor({ timeout: 10000 });
  await item.getByTestId("daily-sync-counts").filter({ hasText: /4 of 4 users done · 4 ok · 0 failed\s*done/ }).waitFor({ timeout: 30000 });
  await item.getByRole("button", { name: "Show users" }).click();
  const users = await readUsers(item);
  assert.deepEqual(Object.keys(users).sort(), ALL);
  const runsAfter = await fetchRunsByUser();
  for (const id of ALL) {
    assert.equal(users[id].status, "Completed", id);
    assert.equal(runsAfter[id].length, runsBefore[id].length + 1, `${id} got one new run`);
    assert.ok(runsAfter[id].includes(users[id].run));
  }
});

test("the daily sync's send_event step links to the events it sent", async () => {
  const { page } = ui;
  assert.ok(original, "the first test made a daily sync");
  await go(page, `#/runs/${original}`);
  await page.getByRole("heading", { name: "Readwise: daily sync" }).waitFor();
  const step = page.locator('[data-step-id="send-batch-1"]');
  await step.waitFor();
  assert.match(await step.locator(".step-head").textContent(), /Send event/);
  const kind = step.locator(".step-kind");
  assert.match(await kind.textContent(), /Sent 4 event\(s\)/);
  const run = await api(server.url, `/api/admin/runs/${original}`);
  const sent = run.steps.find((s) => s.id === "send-batch-1").output;
  assert.equal(sent.length, 4);
  const links = await kind.getByRole("link").evaluateAll((as) => as.map((a) => [a.textContent.trim(), a.getAttribute("href")]));
  assert.deepEqual(links, sent.map((id) => [`Event ${id}`, `#/events/${id}`]));
  // A link opens the event: a readwise/fetch-books for one of the users.
  await kind.getByRole("link", { name: `Event ${sent[0]}` }).click();
  await page.waitForURL(new RegExp(`#/events/${sent[0]}$`));
  await page.getByRole("heading", { name: "readwise/fetch-books" }).waitFor();
  assert.match(await page.getByTestId("event-header").textContent(), new RegExp(sent[0]));
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
