// The run page's trace and step details: a step that failed and was retried shows each
// attempt with its error and its retry time (on the timeline and in the step); a failed
// run shows its error with the stack (from an SDK app that sends one); a sleep says when
// it wakes; a wait_for_event says which event it waits for, its match and its timeout, and
// how it ended. (send_event's links: daily-replay.test.mjs. Invoke: not here.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

import { startServer, sendEvent, waitForRun, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot, fmtDuration, fmtTime, fmtClock } from "./lib.mjs";

const squash = (s) => s.replace(/\s+/g, " ").trim();

// ---- a fake SDK app whose one function throws a JS error with a stack ----

const SDK = "inngest-js:v4.24.0";
const STACK = "TypeError: Cannot read properties of undefined (reading 'sku')\n    at checkout (/srv/shop/checkout.js:42:17)\n    at handler (/srv/shop/index.js:7:3)";

async function startCrashingApp() {
  let setBase;
  const base = new Promise((resolve) => (setBase = resolve));
  const server = createServer(async (req, res) => {
    const headers = { "content-type": "application/json", "x-inngest-sdk": SDK, "x-inngest-framework": "express" };
    for await (const _ of req); // the request body is not needed
    if (req.method === "GET") {
      res.writeHead(200, headers).end(JSON.stringify({ has_event_key: false, has_signing_key: false, function_count: 1, mode: "dev", schema_version: "2024-05-24" }));
      return;
    }
    if (req.method === "PUT") {
      try {
        const r = await fetch(`${await base}/fn/register`, {
          method: "POST",
          headers: { ...headers, "x-inngest-sync-kind": "out_of_band" },
          body: JSON.stringify({
            url,
            deployType: "ping",
            appName: "crashy",
            sdk: "js:v4.24.0",
            framework: "express",
            functions: [
              {
                id: "crashy-checkout",
                name: "checkout",
                triggers: [{ event: "crashy/checkout" }],
                steps: { step: { id: "step", name: "step", runtime: { type: "http", url: `${url}?fnId=crashy-checkout&stepId=step` } } },
              },
            ],
          }),
        });
        if (!r.ok) throw new Error(`register: ${r.status} ${await r.text()}`);
        res.writeHead(200, { ...headers, "x-inngest-sync-kind": "out_of_band" }).end(JSON.stringify({ message: "Successfully registered", modified: true }));
      } catch (e) {
        res.writeHead(500, headers).end(JSON.stringify({ message: String(e.message ?? e) }));
      }
      return;
    }
    // A call: the function throws, as the JS SDK reports it (not retried).
    res
      .writeHead(500, { ...headers, "x-inngest-no-retry": "true" })
      .end(JSON.stringify({ name: "TypeError", message: "Cannot read properties of undefined (reading 'sku')", stack: STACK, __serialized: true }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/api/inngest`;
  return { url, setBase, stop: () => new Promise((resolve) => server.close(resolve)) };
}

let app;
let server;
let ui;
const runs = {};

before(async () => {
  app = await startCrashingApp();
  server = await startServer({ args: ["-u", app.url] });
  app.setBase(server.url);
  const { url } = server;
  // Started first: the retries take their backoff (about 15 s before the 2nd attempt).
  const flaky2 = await sendEvent(url, "test/flaky", { fail_times: 2 });
  const flaky1 = await sendEvent(url, "test/flaky", { fail_times: 1 });
  runs.flaky2 = await waitForRun(url, "fixture-flaky", "Running", { eventId: flaky2 });
  runs.flaky1 = await waitForRun(url, "fixture-flaky", "Running", { eventId: flaky1 });
  await waitFor("the SDK app's function", async () => (await api(url, "/api/admin/functions")).some((f) => f.id === "crashy-checkout"), { timeoutMs: 20000 });
  const crash = await sendEvent(url, "crashy/checkout", { order: 42 });
  runs.crash = await waitForRun(url, "crashy-checkout", "Failed", { eventId: crash });
  const fail = await sendEvent(url, "test/fail");
  runs.fail = await waitForRun(url, "fixture-fail", "Failed", { eventId: fail });
  ui = await openConsole(server, { token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
  await app?.stop();
});

/** The failed attempts listed in an opened step: their texts. */
function attemptsOf(step) {
  return step.locator("ul.attempts > li").evaluateAll((lis) => lis.map((li) => li.textContent.replace(/\s+/g, " ").trim()));
}

/** The bars of a timeline row: their classes and titles. */
function barsOf(page, stepId) {
  return page
    .locator(`[data-testid=timeline] [data-step="${stepId}"] .bar`)
    .evaluateAll((bars) => bars.map((b) => ({ cls: b.className, title: b.getAttribute("title") })));
}

test("a retried step: while it waits, its error and when it retries", async () => {
  const { page } = ui;
  await go(page, `#/runs/${runs.flaky2.id}`);
  await page.getByRole("heading", { name: "Fixture: a step that fails its first attempts" }).waitFor();
  const step = page.locator('[data-step-id="flaky"]');
  await step.locator(".status", { hasText: "Retrying" }).waitFor({ timeout: 10000 });
  await step.locator(".step-error", { hasText: /attempt \d fails on purpose/ }).waitFor();
  const retries = step.locator("p.muted", { hasText: /^Retries at / });
  await retries.waitFor();
  const s = (await api(server.url, `/api/admin/runs/${runs.flaky2.id}`)).steps.find((x) => x.id === "flaky");
  if (s.status === "Retrying" && s.failed_attempts.length === 1) {
    assert.match(squash(await retries.textContent()), new RegExp(`^Retries at ${escape(await fmtTime(page, s.wake_at))} \\(in \\d+ s\\)$`));
  }
});

test("a step that failed twice shows each attempt with its error and retry time", async () => {
  const { page } = ui;
  await go(page, `#/runs/${runs.flaky2.id}`);
  const step = page.locator('[data-step-id="flaky"]');
  await step.waitFor();
  // The second failure comes after the first retry's backoff.
  const s = await waitFor("two failed attempts", async () => {
    const run = await api(server.url, `/api/admin/runs/${runs.flaky2.id}`);
    const st = run.steps.find((x) => x.id === "flaky");
    return st && st.failed_attempts.length >= 2 && st;
  }, { timeoutMs: 45000, intervalMs: 250 });
  await step.getByRole("button", { name: "flaky" }).click();
  await waitFor("two attempts listed", async () => (await attemptsOf(step)).length >= 2, { timeoutMs: 10000 });
  const listed = await attemptsOf(step);
  s.failed_attempts.slice(0, 2).forEach((a, i) => {
    assert.equal(
      listed[i],
      `Attempt ${i + 1} at ${fmtClock(a.started_at)}, ${fmtDuration(a.duration_ms)}: attempt ${i + 1} fails on purpose · retried at ${fmtClock(a.retry_at)}`,
    );
    assert.ok(a.retry_at > a.ended_at, "a retry time after the attempt");
  });
  // The timeline: each failed attempt a red bar, each wait until its retry a dashed one.
  const bars = await barsOf(page, "flaky");
  for (const [i, a] of s.failed_attempts.slice(0, 2).entries()) {
    assert.ok(bars.some((b) => /st-failed attempt/.test(b.cls) && b.title === `Attempt ${i + 1} failed after ${fmtDuration(a.duration_ms)}`), JSON.stringify(bars));
    assert.ok(bars.some((b) => /retry-wait/.test(b.cls) && b.title === `Retry at ${fmtClock(a.retry_at)}`), JSON.stringify(bars));
  }
  assert.match(await page.locator('[data-testid=timeline] [data-step="flaky"] .kind').textContent(), /\d attempts/);
  await screenshot(page, "run-step-retrying");
});

test("a step that succeeded on its retry keeps its failed attempt, and no error", async () => {
  const { page } = ui;
  const run = await waitForRun(server.url, "fixture-flaky", "Completed", { eventId: runs.flaky1.event_id, timeoutMs: 45000 });
  await go(page, `#/runs/${run.id}`);
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 10000 });
  const s = (await api(server.url, `/api/admin/runs/${run.id}`)).steps.find((x) => x.id === "flaky");
  assert.equal(s.failed_attempts.length, 1);
  const step = page.locator('[data-step-id="flaky"]');
  await step.locator(".status", { hasText: "Completed" }).waitFor();
  assert.equal(await step.getByTestId("step-timing").textContent(), `2 attempts · ${fmtDuration(s.duration_ms)}`);
  assert.equal(await step.locator(".step-error").count(), 0, "the step succeeded: no error shown");
  await step.getByRole("button", { name: "flaky" }).click();
  const a = s.failed_attempts[0];
  await waitFor("the attempt listed", async () => (await attemptsOf(step)).length === 1, { timeoutMs: 5000 });
  assert.deepEqual(await attemptsOf(step), [
    `Attempt 1 at ${fmtClock(a.started_at)}, ${fmtDuration(a.duration_ms)}: attempt 1 fails on purpose · retried at ${fmtClock(a.retry_at)}`,
  ]);
  assert.match(await step.getByTestId("step-output").textContent(), /2/);
  const bars = await barsOf(page, "flaky");
  assert.ok(bars.some((b) => b.title === `Retry at ${fmtClock(a.retry_at)}`), JSON.stringify(bars));
  assert.ok(bars.some((b) => /st-completed/.test(b.cls)), "the last attempt, completed");
});

test("a failed run shows its error with the stack", async () => {
  const { page } = ui;
  await go(page, `#/runs/${runs.crash.id}`);
  await page.getByRole("heading", { name: "checkout" }).waitFor();
  const err = page.getByTestId("run-error");
  await err.waitFor();
  assert.match(squash(await err.textContent()), /^Error: TypeError: Cannot read properties of undefined \(reading 'sku'\)/);
  const stack = err.locator("details");
  assert.equal(await stack.getAttribute("open"), "", "the stack is shown open");
  assert.equal((await stack.locator("summary").textContent()).trim(), "Stack");
  assert.equal(await stack.locator("pre").textContent(), STACK);
  assert.ok(await stack.locator("pre").isVisible());
  // The function body's failed attempt, with the same error.
  const attempts = await page.locator("ul.attempts > li").allTextContents();
  assert.equal(attempts.length, 1);
  assert.match(squash(attempts[0]), /^Attempt 1 at \d\d:\d\d:\d\d\.\d{3}, \d+ ms: TypeError: Cannot read properties of undefined \(reading 'sku'\)$/);
  await screenshot(page, "run-error-stack");

  // An error without a stack has no Stack section.
  await go(page, `#/runs/${runs.fail.id}`);
  await page.getByTestId("run-error").filter({ hasText: "this function always fails" }).waitFor();
  assert.equal(await page.getByTestId("run-error").locator("details").count(), 0);
});

test("a sleep says when it wakes, on the step and on the timeline", async () => {
  const { page } = ui;
  const eventId = await sendEvent(server.url, "test/sleep", { sleep_ms: 600_000 });
  const run = await waitForRun(server.url, "fixture-sleep", "Running", { eventId });
  const nap = await waitFor("the sleep step", async () => {
    const d = await api(server.url, `/api/admin/runs/${run.id}`);
    return d.steps.find((s) => s.id === "nap" && s.status === "Sleeping");
  });
  await go(page, `#/runs/${run.id}`);
  const step = page.locator('[data-step-id="nap"]');
  await step.locator(".status", { hasText: "Sleeping" }).waitFor({ timeout: 10000 });
  assert.match(await step.locator(".step-head").textContent(), /Sleep/);
  const text = squash(await step.locator(".step-kind").textContent());
  assert.match(text, new RegExp(`^Wakes at ${escape(await fmtTime(page, nap.input.until))} \\(in (9|10) min\\)$`));
  const bars = await barsOf(page, "nap");
  assert.ok(bars.some((b) => /suspended/.test(b.cls) && b.title === `Sleeping until ${fmtClock(nap.wake_at)}`), JSON.stringify(bars));
  await api(server.url, `/api/admin/runs/${run.id}/cancel`, { method: "POST", token: server.token }).catch(() => {});
});

test("a wait_for_event shows its event, match and timeout, and ends matched", async () => {
  const { page } = ui;
  const key = `k-${Date.now()}`;
  const eventId = await sendEvent(server.url, "test/wait", { key, timeout_ms: 300_000 });
  const run = await waitForRun(server.url, "fixture-wait", "Running", { eventId });
  const wait = await waitFor("the wait step", async () => {
    const d = await api(server.url, `/api/admin/runs/${run.id}`);
    return d.steps.find((s) => s.id === "resume" && s.status === "Waiting");
  });
  await go(page, `#/runs/${run.id}`);
  const step = page.locator('[data-step-id="resume"]');
  await step.locator(".status", { hasText: "Waiting" }).waitFor({ timeout: 10000 });
  assert.match(await step.locator(".step-head").textContent(), /Wait for event/);
  const kind = step.locator(".step-kind");
  assert.equal(squash(await kind.textContent()), `Waits for test/resume, matching data.key, times out at ${await fmtTime(page, wait.input.timeout_at)}`);
  const bars = await barsOf(page, "resume");
  assert.ok(bars.some((b) => /suspended/.test(b.cls) && b.title === `Waiting until ${fmtClock(wait.wake_at)}`), JSON.stringify(bars));

  // An event with another key does not end the wait.
  await sendEvent(server.url, "test/resume", { key: `${key}-other` });
  await sleep(1500);
  assert.equal((await api(server.url, `/api/admin/runs/${run.id}`)).status, "Running");
  await step.locator(".status", { hasText: "Waiting" }).waitFor();

  const resume = await sendEvent(server.url, "test/resume", { key });
  await page.locator(".page-head .status", { hasText: "Completed" }).waitFor({ timeout: 15000 });
  await step.locator(".status", { hasText: "Completed" }).waitFor();
  await kind.filter({ hasText: /— matched\s*$/ }).waitFor();
  assert.match(squash(await kind.textContent()), /^Waits for test\/resume, matching data\.key, times out at .* — matched$/);
  assert.doesNotMatch(squash(await kind.textContent()), /, —/, "no stray comma before the outcome");
  const done = await api(server.url, `/api/admin/runs/${run.id}`);
  assert.equal(done.output.resumed_by, resume);
  await screenshot(page, "run-wait-matched");
});

test("a wait_for_event that times out says so", async () => {
  const { page } = ui;
  const eventId = await sendEvent(server.url, "test/wait", { key: `never-${Date.now()}`, timeout_ms: 1500 });
  const run = await waitForRun(server.url, "fixture-wait", "Completed", { eventId, timeoutMs: 20000 });
  await go(page, `#/runs/${run.id}`);
  const kind = page.locator('[data-step-id="resume"] .step-kind');
  await kind.waitFor({ timeout: 10000 });
  assert.match(squash(await kind.textContent()), /^Waits for test\/resume, matching data\.key, times out at .* — timed out$/);
  assert.doesNotMatch(squash(await kind.textContent()), /, —/, "no stray comma before the outcome");
  assert.equal((await api(server.url, `/api/admin/runs/${run.id}`)).output.resumed_by, null);
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
