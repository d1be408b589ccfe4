// Shared by the browser tests of the console: a headless Debian Chromium (playwright-core)
// on a running `stepdesk serve`, the page's errors collected, and screenshots kept in
// $STEPDESK_TEST_ARTIFACTS and checked not to be blank.

import assert from "node:assert/strict";
import path from "node:path";
import { chromium } from "playwright-core";

import { tempDir, removeDir, artifactsDir, imageStats } from "../support/stepdesk.mjs";

export const CHROMIUM = process.env.STEPDESK_CHROMIUM || "/usr/bin/chromium";
// The flags that work on these machines as root with no network (see the env notes).
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Requests that may fail without it being the console's fault: the live change feed on a
 * server that does not have it yet (the console then polls, and says so).
 */
const TOLERATED = [/\/api\/admin\/changes$/];

/** Opens a browser on the console of `server`; `errors` collects what went wrong in the page. */
export async function openConsole(server, { hash = "#/runs", token = false, status = "Connected" } = {}) {
  const profileDir = tempDir("stepdesk-chromium-profile-");
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    locale: "en-US",
    timezoneId: "UTC",
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  // Errors the test provokes on purpose (a stopped server, a refused write) are expected.
  const expected = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    const text = m.text();
    if (m.type() === "error" && !text.startsWith("Failed to load resource")) {
      errors.push(`console.error: ${text}`);
    }
  });
  page.on("response", (r) => {
    const url = new URL(r.url());
    if (r.status() >= 400 && !TOLERATED.some((re) => re.test(url.pathname)) && !expected.some((re) => re.test(url.pathname))) {
      errors.push(`HTTP ${r.status()} for ${r.url()}`);
    }
  });
  page.on("requestfailed", (r) => {
    const url = new URL(r.url());
    if (!TOLERATED.some((re) => re.test(url.pathname)) && !expected.some((re) => re.test(url.pathname))) {
      errors.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`);
    }
  });
  const target = server.url + "/" + (token ? `#token=${encodeURIComponent(server.token)}&${hash.replace(/^#/, "")}` : hash);
  await page.goto(target);
  await page.getByTestId("engine-status").filter({ hasText: status }).waitFor({ timeout: 15000 });
  const close = async () => {
    await context.close().catch(() => {});
    removeDir(profileDir);
  };
  return { context, page, errors, expected, close };
}

/** Goes to a console route (`#/runs/ID`) in the same page. */
export async function go(page, hash) {
  await page.evaluate((h) => (location.hash = h), hash);
}

/** A full-page screenshot in the artifacts directory; fails when the page looks blank. */
export async function screenshot(page, name) {
  const shot = path.join(artifactsDir(), `ui-${name}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  const stats = imageStats(shot);
  assert.ok(stats.stddev > 0.02, `screenshot ${shot} is not blank: ${JSON.stringify(stats)}`);
  assert.ok(stats.colors > 50, `screenshot ${shot} has text and colour: ${JSON.stringify(stats)}`);
  return shot;
}

/** The runs list's rows as `{status, fn, trigger, queued, duration, id}`. */
export async function runRows(page) {
  return page.$$eval("[data-testid=runs-list] a.run-row", (rows) =>
    rows
      .map((a) => {
        const c = [...a.querySelectorAll("[role=cell]")].map((x) => x.textContent.trim());
        return { status: c[0], fn: c[1], trigger: c[2], queued: c[3], duration: c[4], id: c[5], index: Number(a.dataset.index) };
      })
      .sort((x, y) => x.index - y.index),
  );
}

// ---- The console's formatting (ui/src/lib/format.ts), for the texts a test expects ----
// (Node runs these files as plain JavaScript and cannot import the console's TypeScript.)

/** `fmtDuration`. */
export function fmtDuration(ms) {
  if (ms == null) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  const h = Math.floor(ms / 3_600_000);
  return `${h} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** `fmtTime`, formatted in the page (its locale and time zone). */
export function fmtTime(page, ms) {
  return page.evaluate(
    (t) =>
      new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(t)),
    ms,
  );
}

/** `fmtClock` for a page in UTC (`openConsole` opens it so). */
export function fmtClock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
}
