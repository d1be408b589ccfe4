// The runs list over more runs than it has row elements, in a real browser against the real
// `stepdesk serve`: the list reuses a fixed pool of row elements as it scrolls (each row
// element shows another run once its own has left), so these check that every row shows the
// run at its place, that the keyboard focus stays with its run (not with the element) when
// the run's row scrolls out and back or moves down as new runs arrive, and that the arrow
// keys, Enter and Tab still work.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { startServer, sendEvent, waitFor, api, EVENT_KEY } from "../support/stepdesk.mjs";
import { openConsole, go } from "./lib.mjs";

const RUNS = 300;
const ROW = 36; // px, as the list lays its rows out

let server;
let ui;

before(async () => {
  server = await startServer();
  const { url } = server;
  for (let sent = 0; sent < RUNS; sent += 100) {
    const batch = Array.from({ length: 100 }, (_, i) => ({ name: "test/noop", data: { n: sent + i } }));
    await api(url, `/e/${EVENT_KEY}`, { method: "POST", body: batch });
  }
  await waitFor(`${RUNS} finished runs`, async () => {
    const running = await api(url, "/api/admin/runs?status=Running&limit=1");
    const all = await api(url, "/api/admin/runs?limit=1");
    return running.total === 0 && all.total >= RUNS;
  }, { timeoutMs: 60000, intervalMs: 250 });
  ui = await openConsole(server, { hash: "#/runs" });
  await ui.page.locator("[data-testid=runs-list] a.run-row").first().waitFor();
});

after(async () => {
  await ui?.close();
  await server?.stop();
});

/** Every run's id, newest first, as the API lists them (all pages). */
async function allIds() {
  const ids = [];
  let cursor = null;
  do {
    const q = `limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page = await api(server.url, `/api/admin/runs?${q}`);
    ids.push(...page.runs.map((r) => r.id));
    cursor = page.next_cursor;
  } while (cursor);
  return ids;
}

/** What the list shows: its rows (DOM order), where the focus is, and its scroll. */
function listState(page) {
  return page.evaluate(() => {
    const scroller = document.querySelector("[data-testid=runs-list] .scroller");
    const rows = [...scroller.querySelectorAll("a.run-row")].map((a) => ({
      index: Number(a.dataset.index),
      id: a.dataset.runId,
      idText: a.querySelector(".id").textContent.trim(),
      rowindex: Number(a.getAttribute("aria-rowindex")),
      tab: a.tabIndex,
      href: a.getAttribute("href"),
      top: a.getBoundingClientRect().top - scroller.getBoundingClientRect().top,
    }));
    const el = document.activeElement;
    return {
      rows,
      scrollTop: scroller.scrollTop,
      height: scroller.clientHeight,
      focus: el === scroller ? "list" : el?.matches("a.run-row") ? "row" : el?.tagName ?? null,
      focusedId: el?.dataset?.runId ?? null,
      focusedIndex: el?.dataset?.index !== undefined ? Number(el.dataset.index) : null,
    };
  });
}

/** Sets the list's scroll position and waits for the frame that renders it. */
async function scrollTo(page, top) {
  await page.evaluate(async (top) => {
    const scroller = document.querySelector("[data-testid=runs-list] .scroller");
    scroller.scrollTop = top;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  }, top);
}

/** Marks the row elements now in the list; `unmarked` counts those that are not (new). */
const markRows = (page) =>
  page.evaluate(() => document.querySelectorAll("[data-testid=runs-list] a.run-row").forEach((a) => (a.__seen = true)));
const unmarkedRows = (page) =>
  page.evaluate(() => [...document.querySelectorAll("[data-testid=runs-list] a.run-row")].filter((a) => !a.__seen).length);

/**
 * The rows show the runs the API lists, each at its place (index, position, aria-rowindex,
 * link), one of them in the Tab order, and they cover the rows in view. Retried: a fixture
 * cron run can arrive (at the top) between reading the API and the page.
 */
async function checkRows(page, what) {
  let last;
  await waitFor(what, async () => {
    const ids = await allIds();
    const s = await listState(page);
    last = { ...s, rows: `${s.rows.length} rows: ${JSON.stringify(s.rows.slice(0, 2))}…`, runs: ids.length };
    if (!s.rows.length) return false;
    for (const r of s.rows) {
      if (r.id !== ids[r.index] || r.idText !== r.id || r.rowindex !== r.index + 2) return false;
      if (!r.href.endsWith(`#/runs/${r.id}`) || Math.abs(r.top - (r.index * ROW - s.scrollTop)) > 1) return false;
    }
    const indexes = s.rows.map((r) => r.index).sort((a, b) => a - b);
    const first = Math.floor(s.scrollTop / ROW);
    const lastInView = Math.min(ids.length - 1, Math.floor((s.scrollTop + s.height - 1) / ROW));
    const contiguous = indexes.every((x, i) => i === 0 || x === indexes[i - 1] + 1);
    const inView = indexes[0] <= first && indexes[indexes.length - 1] >= lastInView;
    return contiguous && inView && s.rows.filter((r) => r.tab === 0).length === 1;
  }, { timeoutMs: 10000, intervalMs: 200 }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
}

test("scrolling reuses the row elements, and every row shows the run at its place", async () => {
  const { page } = ui;
  await scrollTo(page, 0);
  await checkRows(page, "the first rows");
  const before = (await listState(page)).rows.length;
  assert.ok(before >= 30 && before < 100, `a pool of row elements, not every run: ${before}`);
  await markRows(page);
  // Down through pages that load as the list gets near their end, and back.
  for (const row of [40, 120, 205, RUNS - 10, 75, 0]) {
    await scrollTo(page, row * ROW);
    await checkRows(page, `the rows around row ${row}`);
  }
  assert.equal(await unmarkedRows(page), 0, "no row element was created while scrolling");
  assert.equal((await listState(page)).rows.length, before, "nor removed");
  // The total is the API's (at least the runs sent: the fixtures' every-minute cron may add one).
  await waitFor("the total of the API's runs", async () => {
    const total = (await allIds()).length;
    const text = await page.getByTestId("runs-total").textContent();
    return total >= RUNS && text.startsWith(`${total} runs`);
  }, { timeoutMs: 10000, intervalMs: 200 });
});

test("the focused run keeps the focus when its row scrolls out and back, and Enter opens it", async () => {
  const { page } = ui;
  await scrollTo(page, 0);
  const row = page.locator('[data-testid=runs-list] a.run-row[data-index="2"]');
  const id = await row.getAttribute("data-run-id");
  await row.focus();

  // Far enough that its element shows other runs: the list itself keeps the focus, no
  // other run's row has it.
  await scrollTo(page, 150 * ROW);
  await waitFor("the focus on the list, not on another run", async () => {
    const s = await listState(page);
    return s.focus === "list" && !s.rows.some((r) => r.id === id);
  }, { timeoutMs: 3000, intervalMs: 50 });

  // Back: the same run's row has the focus again.
  await scrollTo(page, 0);
  await waitFor("the focus back on the run's row", async () => {
    const s = await listState(page);
    return s.focus === "row" && s.focusedId === id;
  }, { timeoutMs: 3000, intervalMs: 50 });
  const s = await listState(page);
  assert.equal(s.rows.find((r) => r.id === id).tab, 0, "its row is the one in the Tab order");

  // The arrow keys go on from it; Enter opens the run below it.
  const below = s.rows.find((r) => r.index === s.focusedIndex + 1).id;
  await page.keyboard.press("ArrowDown");
  await waitFor("the next run focused", async () => (await listState(page)).focusedId === below, { timeoutMs: 3000, intervalMs: 50 });
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`#/runs/${below}$`));
  await go(page, "#/runs");
  await page.locator("[data-testid=runs-list] a.run-row").first().waitFor();
});

test("arrow keys move from the list itself when the focused run's row is out of view", async () => {
  const { page } = ui;
  await scrollTo(page, 0);
  const row = page.locator('[data-testid=runs-list] a.run-row[data-index="1"]');
  const id = await row.getAttribute("data-run-id");
  const ids = await allIds();
  await row.focus();
  await scrollTo(page, 200 * ROW);
  await waitFor("the focus on the list", async () => (await listState(page)).focus === "list", { timeoutMs: 3000, intervalMs: 50 });
  // ArrowDown from the list: the run below the focused one, scrolled back into view.
  await page.keyboard.press("ArrowDown");
  const next = ids[ids.indexOf(id) + 1];
  await waitFor("the run below the focused one focused, in view", async () => {
    const s = await listState(page);
    const r = s.rows.find((x) => x.id === next);
    return s.focus === "row" && s.focusedId === next && r && r.top >= 0 && r.top + ROW <= s.height + 1;
  }, { timeoutMs: 3000, intervalMs: 50 });
});

test("arrow keys move through more runs than there are row elements, and back", async () => {
  const { page } = ui;
  await scrollTo(page, 0);
  const ids = await allIds();
  const first = page.locator('[data-testid=runs-list] a.run-row[data-index="0"]');
  const start = ids.indexOf(await first.getAttribute("data-run-id"));
  await first.focus();
  const steps = 70;
  for (let i = 0; i < steps; i++) await page.keyboard.press("ArrowDown");
  await waitFor(`the run ${steps} rows down focused, in view`, async () => {
    const s = await listState(page);
    const r = s.rows.find((x) => x.id === ids[start + steps]);
    return s.focusedId === ids[start + steps] && r && r.top >= 0 && r.top + ROW <= s.height + 1;
  }, { timeoutMs: 5000, intervalMs: 50 });
  for (let i = 0; i < steps; i++) await page.keyboard.press("ArrowUp");
  // At the top again: scrolled to 0, or one row further when a run arrived meanwhile (the
  // fixtures' every-minute cron; the list then keeps what is shown in place).
  await waitFor("the first run focused again, at the top", async () => {
    const s = await listState(page);
    const r = s.rows.find((x) => x.id === ids[start]);
    return s.focusedId === ids[start] && r && r.top >= 0 && r.top + ROW <= s.height + 1 && s.scrollTop <= ROW;
  }, { timeoutMs: 8000, intervalMs: 50 });
});

test("Tab into the list reaches the first row in view, and only that row", async () => {
  const { page } = ui;
  // A fresh page: no run has had the focus yet.
  await page.reload();
  await page.locator("[data-testid=runs-list] a.run-row").first().waitFor();
  await scrollTo(page, 50 * ROW);
  await checkRows(page, "the rows around row 50");
  // The last control before the list is the time range's select.
  await page.getByLabel("Queued").focus();
  await page.keyboard.press("Tab");
  const s = await listState(page);
  assert.equal(s.focus, "row");
  assert.equal(s.focusedIndex, 50);
  // The next Tab leaves the list (to the footer's links or the end of the page), not to the
  // next row.
  await page.keyboard.press("Tab");
  assert.notEqual((await listState(page)).focus, "row");
});

test("the focus stays with its run when a new run arrives at the top", async () => {
  const { page } = ui;
  await scrollTo(page, 0);
  const row = page.locator('[data-testid=runs-list] a.run-row[data-index="1"]');
  const id = await row.getAttribute("data-run-id");
  await row.focus();
  const before = (await listState(page)).rows.find((r) => r.id === id).index;
  await sendEvent(server.url, "test/noop", { late: true });
  await waitFor("the new run at the top, the focus still on the same run one row down", async () => {
    const s = await listState(page);
    const r = s.rows.find((x) => x.id === id);
    return r && r.index > before && s.focus === "row" && s.focusedId === id;
  }, { timeoutMs: 10000, intervalMs: 50 });
  await checkRows(page, "the rows after the new run");
});

test("at 1280 px, the status, trigger, queued time and duration of every row are shown whole", async () => {
  // Cells that hold a name or an id (function, run id) may end in an ellipsis; these may not.
  const cut = await ui.page.evaluate(() => {
    const out = [];
    for (const row of document.querySelectorAll("[data-testid=runs-list] a.run-row")) {
      const cells = row.querySelectorAll("[role=cell]");
      for (const i of [0, 2, 3, 4]) {
        const c = cells[i];
        if (c.scrollWidth > c.clientWidth) out.push(`${i}: ${c.textContent} (${c.scrollWidth} > ${c.clientWidth} px)`);
      }
    }
    return out;
  });
  assert.deepEqual(cut, []);
});

test("the page had no script errors", () => {
  assert.deepEqual(ui.errors, []);
});
