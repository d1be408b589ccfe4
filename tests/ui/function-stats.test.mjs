// A function's statistics on its page: completed/failed counts, p50/p95 durations for the
// last 24 hours and the last 7 days, and the uPlot chart of each window, once runs exist.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitForRun, waitFor, api } from "../support/stepdesk.mjs";
import { openConsole, go, screenshot, fmtDuration } from "./lib.mjs";

let server;
let ui;

before(async () => {
  server = await startServer();
  const { url } = server;
  // Three completed runs of fixture-steps of clearly different lengths (3 steps × step_ms),
  // and two failed runs of fixture-fail.
  const steps = await Promise.all([0, 100, 300].map((step_ms) => sendEvent(url, "test/steps", { step_ms })));
  const fails = await Promise.all([1, 2].map(() => sendEvent(url, "test/fail")));
  for (const eventId of steps) await waitForRun(url, "fixture-steps", "Completed", { eventId });
  for (const eventId of fails) await waitForRun(url, "fixture-fail", "Failed", { eventId });
  ui = await openConsole(server, { hash: "#/functions", token: true });
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

/** Each statistics window on the page: its title, counts text and percentile line. */
function readStats(page) {
  return page.$$eval("[data-testid=function-stats] > .panel", (panels) =>
    panels.map((p) => ({
      title: p.querySelector("h3")?.textContent.trim(),
      counts: p.querySelector("p")?.textContent.replace(/\s+/g, " ").trim(),
      percentiles: p.querySelectorAll("p")[1]?.textContent.replace(/\s+/g, " ").trim(),
    })),
  );
}

/** The charts' canvases: size and how many pixels are drawn (not transparent). */
function readCharts(page) {
  return page.$$eval("[data-testid=function-stats] .chart", (charts) =>
    charts.map((c) => {
      const canvas = c.querySelector("canvas");
      if (!canvas) return { label: c.getAttribute("aria-label"), canvas: false };
      let drawn = 0;
      try {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) drawn += 1;
      } catch {
        drawn = -1;
      }
      const box = canvas.getBoundingClientRect();
      return { label: c.getAttribute("aria-label"), canvas: true, width: canvas.width, height: canvas.height, boxW: box.width, boxH: box.height, drawn };
    }),
  );
}

test("a function's page shows completed/failed counts and p50/p95 for 24 hours and 7 days", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-steps");
  await page.getByRole("heading", { name: "Fixture: three recorded steps" }).waitFor();
  await page.getByTestId("function-stats").waitFor({ timeout: 15000 });
  const stats = await api(server.url, "/api/admin/functions/fixture-steps/stats");
  // What the engine computed is right for the runs above: 3 completed, none failed; the
  // slowest took about 900 ms (3 × 300), the median about 300 ms (3 × 100).
  for (const w of [stats.day, stats.week]) {
    assert.equal(w.counts.completed, 3);
    assert.equal(w.counts.failed, 0);
    assert.ok(w.p95_ms >= 900 && w.p95_ms < 5000, `p95 ${w.p95_ms}`);
    assert.ok(w.p50_ms >= 300 && w.p50_ms < 900, `p50 ${w.p50_ms}`);
  }
  await waitFor("both windows with 3 completed", async () => {
    const s = await readStats(page);
    return s.length === 2 && s.every((w) => /3 completed/.test(w.counts));
  }, { timeoutMs: 10000 });
  const shown = await readStats(page);
  assert.deepEqual(shown.map((w) => w.title), ["Last 24 hours", "Last 7 days"]);
  for (const [w, api] of [[shown[0], stats.day], [shown[1], stats.week]]) {
    assert.match(w.counts, /^3 completed 0 failed$/, w.title);
    assert.equal(w.percentiles, `p50 ${fmtDuration(api.p50_ms)} · p95 ${fmtDuration(api.p95_ms)}`, w.title);
  }
});

test("failed runs are counted as failed", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-fail");
  await page.getByRole("heading", { name: "Fixture: always fails, with a failure handler" }).waitFor();
  await waitFor("both windows with 2 failed", async () => {
    const s = await readStats(page);
    return s.length === 2 && s.every((w) => /^0 completed 2 failed$/.test(w.counts));
  }, { timeoutMs: 15000 });
  const stats = await api(server.url, "/api/admin/functions/fixture-fail/stats");
  const shown = await readStats(page);
  assert.equal(shown[0].percentiles, `p50 ${fmtDuration(stats.day.p50_ms) || "—"} · p95 ${fmtDuration(stats.day.p95_ms) || "—"}`);
});

test("a function with no runs says so: no percentiles", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-wait");
  await page.getByRole("heading", { name: "Fixture: wait for test/resume with the same key" }).waitFor();
  await page.getByTestId("function-stats").waitFor({ timeout: 15000 });
  const shown = await readStats(page);
  assert.equal(shown.length, 2);
  for (const w of shown) {
    assert.equal(w.counts, "0 completed 0 failed");
    assert.equal(w.percentiles, "p50 — · p95 —");
  }
});

test("each window draws its uPlot chart", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-steps");
  await page.getByTestId("function-stats").waitFor({ timeout: 15000 });
  await page.locator("[data-testid=function-stats] .chart canvas").nth(1).waitFor({ timeout: 15000 });
  const charts = await readCharts(page);
  assert.equal(charts.length, 2);
  assert.deepEqual(charts.map((c) => c.label), ["Last 24 hours: runs and p95", "Last 7 days: runs and p95"]);
  for (const c of charts) {
    assert.ok(c.canvas, `${c.label}: a canvas`);
    assert.ok(c.width > 100 && c.height > 100, `${c.label}: a canvas of a real size ${JSON.stringify(c)}`);
    assert.ok(c.boxW > 100 && c.boxH > 100, `${c.label}: laid out on the page ${JSON.stringify(c)}`);
    assert.ok(c.drawn > 500, `${c.label}: something is drawn on it ${JSON.stringify(c)}`);
  }
  // The legend names the series; nothing says the chart could not be drawn.
  const legend = await page.locator("[data-testid=function-stats] .u-legend").first().textContent();
  assert.match(legend, /Completed/);
  assert.match(legend, /Failed/);
  assert.match(legend, /p95/);
  assert.equal(await page.getByText("The chart cannot be drawn").count(), 0);
  await page.getByTestId("function-stats").scrollIntoViewIfNeeded();
  await screenshot(page, "function-stats");
});

test("the counts follow new runs without reloading", async () => {
  const { page } = ui;
  await go(page, "#/functions/fixture-steps");
  await page.getByTestId("function-stats").waitFor({ timeout: 15000 });
  const eventId = await sendEvent(server.url, "test/steps", { step_ms: 0 });
  await waitForRun(server.url, "fixture-steps", "Completed", { eventId });
  await waitFor("4 completed in both windows", async () => {
    const s = await readStats(page);
    return s.length === 2 && s.every((w) => /^4 completed 0 failed$/.test(w.counts));
  }, { timeoutMs: 15000 });
});

test("the pages had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
