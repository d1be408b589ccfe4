// A read-only inspection (`stepdesk inspect DIR`) in the browser: the console says so, shows
// the copy's data, and refuses a resync with a message instead of changing anything.
// Needs a Secret Service to prepare the data (run under tests/with-session.sh).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, startFakeReadwise, startInspector, api, removeDir } from "../support/stepdesk.mjs";
import { openConsole, screenshot } from "./lib.mjs";

let fake;
let server;
let inspector;
let ui;

before(async () => {
  fake = await startFakeReadwise({ users: 1, books: 12 });
  server = await startServer({ readwiseUrl: fake.url });
  // A user with a finished sync, then the server stops: the directory to inspect.
  await api(server.url, "/api/admin/users", {
    method: "POST",
    body: { id: "ada", name: "Ada", token: "token-00000" },
    token: server.token,
  });
  const sync = await api(server.url, "/api/admin/users/ada/sync", { method: "POST", token: server.token });
  assert.ok(sync.event_id);
  for (let i = 0; i < 200; i++) {
    const u = await api(server.url, "/api/admin/users/ada");
    if (u.stored_books === 12) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await server.child.kill("SIGTERM");
  await new Promise((r) => server.child.once("exit", r));
  inspector = await startInspector(server.dataDir);
  ui = await openConsole(inspector, { hash: "#/users/ada", status: "Read-only" });
});

after(async () => {
  await ui?.close();
  await inspector?.stop();
  removeDir(server?.dataDir);
  await fake?.stop();
});

test("an inspection says it is read-only and shows the copy's data", async () => {
  const { page } = ui;
  await page.getByText("Read-only inspection: nothing runs and nothing can be changed.").waitFor();
  await page.getByTestId("book-count").filter({ hasText: "12" }).waitFor();
  await screenshot(page, "inspect-user");
});

test("a resync is refused with a message, and nothing changes", async () => {
  const { page, expected } = ui;
  expected.push(/\/api\/rpc\/sync_user$/);
  await page.getByRole("button", { name: "Resync" }).click();
  await page.getByRole("alert").filter({ hasText: /inspection/ }).first().waitFor({ timeout: 10000 });
  // No sync was requested: the user's runs are the one sync from before.
  const detail = await api(inspector.url, "/api/admin/users/ada/page");
  assert.equal(detail.runs.length, 1);
});
