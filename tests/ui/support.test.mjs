// The support pages, against the real `stepdesk serve` and the fake Readwise API: Users
// (add, check, resync with progress, set token, remove, audit trail), Test function with
// the user picker, Daily sync (Run now → done) and Settings (URL, keys, diagnostics).
// Needs a Secret Service (tokens and keys live in the keychain): run under
// tests/with-session.sh, as `make test` does.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, startFakeReadwise, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

const BOOKS = 30;
let fake;
let server;
let ui;

before(async () => {
  fake = await startFakeReadwise({ users: 4, books: BOOKS });
  server = await startServer({ readwiseUrl: fake.url });
  ui = await openConsole(server, { hash: "#/users", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
  await fake?.stop();
});

const userRow = (page, id) => page.locator(`[data-testid=users-table] tr[data-user-id="${id}"]`);

test("Add user is a form; the new user's page opens", async () => {
  const { page } = ui;
  await page.getByTestId("empty").filter({ hasText: "No users yet" }).waitFor();
  await page.getByRole("button", { name: "Add user" }).first().click();
  const form = page.getByTestId("add-user");
  await form.getByLabel("User id").fill("ada");
  await form.getByLabel("Name (optional)").fill("Ada Lovelace");
  await form.getByLabel(/Readwise token/).fill("token-00000");
  await form.getByRole("button", { name: "Add user" }).click();
  await page.waitForURL(/#\/users\/ada$/);
  await page.getByRole("heading", { name: "Ada Lovelace" }).waitFor();
  assert.equal(await page.getByTestId("book-count").textContent(), "0");
  // The token is never shown back, anywhere on the page.
  assert.doesNotMatch(await page.content(), /token-00000/);
});

test("Check token says what Readwise answered", async () => {
  const { page } = ui;
  await page.getByRole("button", { name: "Check token" }).click();
  await page.getByTestId("check-result").filter({ hasText: "Readwise accepts the token." }).waitFor();
  await page.getByTestId("user-summary").locator(".status", { hasText: "Connected" }).waitFor();
});

test("Resync shows progress and the book count updates", async () => {
  const { page } = ui;
  await page.getByRole("button", { name: "Resync" }).click();
  await page.getByTestId("sync-progress").waitFor();
  await page.getByTestId("book-count").filter({ hasText: String(BOOKS) }).waitFor({ timeout: 20000 });
  await page.getByTestId("sync-history").locator(".status", { hasText: "Completed" }).first().waitFor({ timeout: 10000 });
  const u = await api(server.url, "/api/admin/users/ada");
  assert.equal(u.stored_books, BOOKS);
  await screenshot(page, "user-detail");
});

test("Set token is write-only", async () => {
  const { page } = ui;
  const field = page.getByLabel("New Readwise token");
  assert.equal(await field.getAttribute("type"), "password");
  await field.fill("token-00001");
  await page.getByRole("button", { name: "Save token" }).click();
  await page.getByText("Token saved to the keychain.").waitFor();
  assert.equal(await field.inputValue(), "", "the field is cleared");
  assert.doesNotMatch(await page.content(), /token-00001/);
});

test("the audit trail records each support action with its origin", async () => {
  const { page } = ui;
  const audit = page.getByTestId("audit");
  await waitFor("four audit entries", async () => (await audit.locator("tbody tr").count()) >= 4, { timeoutMs: 10000 });
  const text = await audit.textContent();
  for (const action of ["Add user", "Check user", "Sync user", "Set token"]) assert.match(text, new RegExp(action));
  assert.match(text, /browser/);
});

test("a failed sync shows its error in plain words", async () => {
  const { page } = ui;
  await api(server.url, "/api/admin/users", { method: "POST", token: server.token, body: { id: "bob", token: "not-a-readwise-token" } });
  await go(page, "#/users/bob");
  await page.getByRole("button", { name: "Resync" }).click();
  const err = page.getByTestId("sync-error");
  await err.waitFor({ timeout: 20000 });
  assert.match(await err.textContent(), /The last sync failed:.*(rejected|401|token)/is);
  await screenshot(page, "user-failed-sync");
});

test("the users table shows token status, last sync, books and the next scheduled sync; search", async () => {
  const { page } = ui;
  await go(page, "#/users");
  await userRow(page, "ada").waitFor();
  const cells = await userRow(page, "ada").locator("td").allTextContents();
  assert.equal(cells[0], "Ada Lovelace");
  // A new token (Set token, above) is unchecked until a check or a sync judges it.
  assert.equal(cells[2], "Unchecked");
  assert.notEqual(cells[3], "never");
  assert.equal(cells[4], "Ok");
  assert.equal(cells[5], String(BOOKS));
  assert.match(cells[6], /\(in /);
  const bob = await userRow(page, "bob").locator("td").allTextContents();
  assert.equal(bob[2], "Rejected");
  assert.equal(bob[4], "Failed");
  assert.equal(bob[6], "not scheduled");
  await page.getByLabel("Search users").fill("lovelace");
  await waitFor("one row", async () => (await page.locator("[data-testid=users-table] tbody tr").count()) === 1);
  await screenshot(page, "users");
  await page.getByLabel("Search users").fill("");
});

test("Test function on readwise/fetch-books picks a user instead of typing an id", async () => {
  const { page } = ui;
  await go(page, "#/functions/readwise-fetch-books");
  const picker = page.getByTestId("user-picker");
  await picker.waitFor();
  await waitFor("the users in the picker", async () => (await picker.locator("option").count()) >= 3);
  await picker.selectOption("ada");
  await waitFor("the payload names ada", async () =>
    /"userId": "ada"/.test(await page.locator("[data-testid=json-editor] .cm-content").textContent()));
  await page.getByTestId("payload-status").filter({ hasText: "Valid payload." }).waitFor();
  await page.getByRole("button", { name: "Run with this payload" }).click();
  await page.waitForURL(/#\/runs\/[0-9A-Z]{26}$/);
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 20000 });
  await page.locator("[data-step-id=fetch-updated-page-1], [data-step-id=fetch-page-1]").first().waitFor();
});

test("Daily sync: Run now, and the progress reaches done", async () => {
  const { page } = ui;
  await api(server.url, "/api/admin/users", { method: "POST", token: server.token, body: { id: "cy", token: "token-00002" } });
  await go(page, "#/daily-sync");
  await page.getByTestId("schedule").getByText("0 3 * * *").waitFor();
  await page.getByRole("button", { name: "Run now" }).first().click();
  const first = page.getByTestId("daily-syncs").locator("li").first();
  await first.waitFor({ timeout: 10000 });
  // ada and cy have usable tokens (bob's was rejected): 2 of 2 done.
  await first.getByTestId("daily-sync-counts").filter({ hasText: /2 of 2 users done · 2 ok · 0 failed\s*done/ }).waitFor({ timeout: 30000 });
  // The per-user breakdown.
  await first.getByRole("button", { name: "Show users" }).click();
  const users = first.getByTestId("daily-sync-users");
  await users.waitFor();
  const text = await users.textContent();
  assert.match(text, /ada.*Completed/s);
  assert.match(text, /cy.*Completed/s);
  await screenshot(page, "daily-sync");
});

test("Daily sync: Replay all users of a past daily sync reaches done", async () => {
  const { page } = ui;
  const before = (await api(server.url, "/api/admin/daily-syncs")).length;
  const original = page.getByTestId("daily-syncs").locator("li").first();
  const originalId = await original.getAttribute("data-run-id");
  await original.getByRole("button", { name: "Replay all users" }).click();
  await waitFor("a new daily sync", async () => (await page.getByTestId("daily-syncs").locator("li").count()) > before, { timeoutMs: 10000 });
  const replay = page.getByTestId("daily-syncs").locator("li").first();
  await replay.getByText(`replay of ${originalId}`).waitFor({ timeout: 10000 });
  await replay.getByTestId("daily-sync-counts").filter({ hasText: /2 of 2 users done · 2 ok · 0 failed/ }).waitFor({ timeout: 30000 });
});

test("Settings: the Readwise URL and its source; set and remove a key; diagnostics", async () => {
  const { page } = ui;
  await go(page, "#/settings");
  await page.getByTestId("url-source").waitFor();
  assert.match(await page.getByTestId("url-source").textContent(), /from\s+the environment/);
  assert.equal(await page.getByLabel("Readwise API URL").inputValue(), fake.url);

  const status = page.getByTestId("key-status-signing-key");
  assert.equal(await status.textContent(), "not stored");
  await page.getByLabel("New signing key").fill("signkey-secret-value");
  await page.getByRole("button", { name: "Set signing key" }).click();
  await status.filter({ hasText: "stored in the keychain" }).waitFor();
  assert.equal(await page.getByLabel("New signing key").inputValue(), "");
  assert.doesNotMatch(await page.content(), /signkey-secret-value/);
  assert.equal((await api(server.url, "/api/admin/keys")).signing_key.stored, true);

  await page.getByRole("button", { name: "Remove signing key" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Remove key" }).click();
  await status.filter({ hasText: "not stored" }).waitFor();
  assert.equal((await api(server.url, "/api/admin/keys")).signing_key.stored, false);

  await page.getByRole("button", { name: "Copy diagnostics" }).click();
  await page.getByRole("button", { name: "Copied" }).waitFor();
  const diag = JSON.parse(await page.evaluate(() => navigator.clipboard.readText()));
  assert.equal(diag.info.data_dir, (await api(server.url, "/api/admin/info")).data_dir);
  assert.ok(diag.info.version);
  assert.doesNotMatch(JSON.stringify(diag), /token-0000|signkey/);
  await screenshot(page, "settings");
});

test("Remove a user, after confirming", async () => {
  const { page } = ui;
  await go(page, "#/users/bob");
  await page.getByRole("button", { name: "Remove" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Remove user" }).click();
  await page.waitForURL(/#\/users$/);
  await userRow(page, "ada").waitFor();
  assert.equal(await userRow(page, "bob").count(), 0);
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
