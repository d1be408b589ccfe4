// The Events pages: the list (name filter, internal events), an event's payload and runs,
// Send event (JSON editor, arrays, curl) and Replay.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot } from "./lib.mjs";

let server;
let ui;
let noopEvent;

before(async () => {
  server = await startServer();
  noopEvent = await sendEvent(server.url, "test/noop");
  await sendEvent(server.url, "test/fail");
  await waitForRun(server.url, "fixture-noop", "Completed", { eventId: noopEvent });
  await waitForRun(server.url, "fixture-fail-failure", "Completed");
  ui = await openConsole(server, { hash: "#/events", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

const names = (page) =>
  page.$$eval("[data-testid=events-table] tbody tr td:first-child", (tds) => tds.map((td) => td.textContent.trim()));

test("the events list hides internal events unless asked, and filters by name", async () => {
  const { page } = ui;
  await page.getByTestId("events-table").waitFor();
  let shown = await names(page);
  assert.ok(shown.includes("test/noop") && shown.includes("test/fail"), `${shown}`);
  assert.ok(!shown.some((n) => n.startsWith("inngest/")), `no internal events: ${shown}`);
  await page.getByLabel("Show internal events").check();
  await waitFor("inngest/function.failed listed", async () => (await names(page)).includes("inngest/function.failed"));
  assert.match(page.url(), /internal=1/);
  await page.getByLabel("Event name").fill("test/noop");
  await page.getByLabel("Event name").press("Enter");
  await waitFor("only test/noop", async () => {
    const n = await names(page);
    return n.length === 1 && n[0] === "test/noop";
  });
  assert.match(page.url(), /name=test%2Fnoop/);
  await screenshot(page, "events");
  await page.getByLabel("Event name").fill("");
  await page.getByLabel("Event name").press("Enter");
});

test("an event's page shows its payload and the runs it started", async () => {
  const { page } = ui;
  await go(page, `#/events/${noopEvent}`);
  await page.getByRole("heading", { name: "test/noop" }).waitFor();
  assert.match(await page.getByTestId("event-payload").textContent(), /"name": "test\/noop"/);
  await page.getByTestId("event-runs").waitFor();
  assert.match(await page.getByTestId("event-runs").textContent(), /Fixture: three no-op steps.*Completed|Completed.*Fixture: three no-op steps/s);
  await screenshot(page, "event-detail");
});

test("Replay re-sends the event, which starts a new run", async () => {
  const { page } = ui;
  await go(page, `#/events/${noopEvent}`);
  await page.getByRole("button", { name: "Replay" }).click();
  await page.waitForURL((u) => /#\/events\/[0-9A-Z]{26}$/.test(u.hash) && !u.hash.endsWith(noopEvent));
  const replayed = page.url().split("/").pop();
  await page.getByRole("heading", { name: "test/noop" }).waitFor();
  await page.getByTestId("event-runs").locator(".status", { hasText: "Completed" }).waitFor({ timeout: 10000 });
  const ev = await api(server.url, `/api/admin/events/${replayed}`);
  assert.equal(ev.name, "test/noop");
});

test("Send event: validated JSON, the curl command, one event opens its page", async () => {
  const { page } = ui;
  await go(page, "#/events?send=1");
  const form = page.getByTestId("send-event");
  await form.waitFor();
  const editor = form.locator(".cm-content");
  await editor.fill('{"data": {}}');
  await form.getByTestId("send-status").filter({ hasText: 'needs a "name"' }).waitFor();
  assert.equal(await form.getByRole("button", { name: "Send event" }).isDisabled(), true);
  await editor.fill('{"name": "test/steps", "data": {"step_ms": 1}}');
  await form.getByTestId("send-status").filter({ hasText: "Valid." }).waitFor();
  const curl = await form.getByTestId("curl").textContent();
  assert.equal(
    curl,
    `curl -X POST ${server.url}/e/$STEPDESK_EVENT_KEY -H 'content-type: application/json' -d '{"name":"test/steps","data":{"step_ms":1}}'`,
  );
  await screenshot(page, "send-event");
  await form.getByRole("button", { name: "Send event" }).click();
  await page.waitForURL(/#\/events\/[0-9A-Z]{26}$/);
  await page.getByRole("heading", { name: "test/steps" }).waitFor();
  await page.getByTestId("event-runs").locator(".status", { hasText: "Completed" }).waitFor({ timeout: 10000 });
});

test("Send event accepts an array", async () => {
  const { page } = ui;
  await go(page, "#/events?send=1");
  const form = page.getByTestId("send-event");
  await form.locator(".cm-content").fill('[{"name": "test/noop"}, {"name": "test/noop", "data": {"n": 2}}]');
  await form.getByTestId("send-status").filter({ hasText: "Valid." }).waitFor();
  await form.getByRole("button", { name: "Send event" }).click();
  await form.getByText("Sent 2 events:").waitFor();
  const links = await form.locator("a.mono").allTextContents();
  assert.equal(links.length, 2);
  for (const id of links) assert.equal((await api(server.url, `/api/admin/events/${id}`)).name, "test/noop");
});

/** A time as the console's `datetime-local` filters write it (the browser runs in UTC). */
const local = (ms) => new Date(ms).toISOString().slice(0, 19);

test("the time filter: quick picks ask for the events since then, and live in the URL", async () => {
  const { page } = ui;
  await go(page, "#/events");
  await page.getByTestId("events-table").waitFor();
  for (const [pick, ms] of [["1h", 3_600_000], ["24h", 86_400_000], ["7d", 7 * 86_400_000]]) {
    const asked = page.waitForRequest((r) => r.url().endsWith("/api/rpc/events"));
    await page.getByLabel("Received").selectOption(pick);
    const params = (await asked).postDataJSON();
    assert.ok(Math.abs(params.from - (Date.now() - ms)) < 10_000, `${pick}: from ${params.from}`);
    assert.equal(params.to, undefined);
    assert.match(page.url(), new RegExp(`range=${pick}`));
    await page.locator(`[data-event-id="${noopEvent}"]`).waitFor();
  }
  // "Any time" asks for no bound.
  const asked = page.waitForRequest((r) => r.url().endsWith("/api/rpc/events"));
  await page.getByLabel("Received").selectOption("");
  assert.equal((await asked).postDataJSON().from, undefined);
  assert.doesNotMatch(page.url(), /range=/);
});

test("the time filter: absolute from and to, a range with no events, a backwards range", async () => {
  const { page } = ui;
  await go(page, "#/events");
  await page.getByTestId("events-table").waitFor();
  await page.getByLabel("Received").selectOption("custom");
  await page.getByLabel("From", { exact: true }).fill("2020-01-01T00:00");
  await page.getByLabel("To", { exact: true }).fill("2020-01-02T00:00");
  await page.getByTestId("empty").filter({ hasText: "No events in this time range." }).waitFor();
  assert.match(page.url(), /range=custom&from=2020-01-01T00%3A00&to=2020-01-02T00%3A00/);
  // From after To: said beside the fields, and nothing is asked.
  await page.getByLabel("From", { exact: true }).fill("2020-01-03T00:00");
  await page.getByRole("alert").filter({ hasText: "“From” is after “To”" }).waitFor();
  await page.getByTestId("empty").filter({ hasText: "Choose a “From” time before the “To” time." }).waitFor();
  assert.equal(await page.getByTestId("error").count(), 0);
  await page.getByRole("button", { name: "Clear filters" }).first().click();
  await page.locator(`[data-event-id="${noopEvent}"]`).waitFor();
  assert.match(page.url(), /#\/events$/);
});

test("the time filter: a deep link with from/to lists the events on each side of a time", async () => {
  const { page } = ui;
  const early = await sendEvent(server.url, "test/timed", { n: 1 });
  // A whole second strictly between the two events.
  await new Promise((r) => setTimeout(r, 1100));
  const boundary = Math.ceil(Date.now() / 1000) * 1000;
  await new Promise((r) => setTimeout(r, boundary - Date.now() + 100));
  const late = await sendEvent(server.url, "test/timed", { n: 2 });
  const listed = () => page.$$eval("[data-testid=events-table] tbody tr", (trs) => trs.map((tr) => tr.dataset.eventId));

  await go(page, `#/events?name=test%2Ftimed&range=custom&from=${local(boundary)}`);
  await waitFor("only the later event", async () => JSON.stringify(await listed()) === JSON.stringify([late]));
  // (The field may drop ":00" seconds: compare the times.)
  assert.equal(Date.parse((await page.getByLabel("From", { exact: true }).inputValue()) + "Z"), boundary);
  assert.equal(await page.getByLabel("Event name").inputValue(), "test/timed");

  await go(page, `#/events?name=test%2Ftimed&range=custom&to=${local(boundary)}`);
  await waitFor("only the earlier event", async () => JSON.stringify(await listed()) === JSON.stringify([early]));
  assert.equal(await page.getByLabel("From", { exact: true }).inputValue(), "");
  await screenshot(page, "events-time-filter");

  await go(page, `#/events?name=test%2Ftimed&range=1h`);
  await waitFor("both in the last hour", async () => JSON.stringify(await listed()) === JSON.stringify([late, early]));
  assert.equal(await page.getByLabel("Received").inputValue(), "1h");
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
