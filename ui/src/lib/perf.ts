// Performance marks that the console benchmark (tests/bench/console.mjs) reads through
// WebDriver or Playwright: `performance.timeOrigin + mark.startTime` is when something was
// first on screen. A mark is set after the frame that shows the change has been produced,
// not when the data arrived, so that it includes Svelte's DOM update, style, layout and
// paint. Each name is marked once per document.

import { tick } from "svelte";

/** The first data any page rendered (whatever the page: the default one is Runs). */
export const FIRST_DATA = "stepdesk:first-data";
/** The runs list's first rows. */
export const RUNS_FIRST_ROWS = "stepdesk:runs-first-rows";

const marked = new Set<string>();

/**
 * Marks `name` after the next frame: Svelte's pending DOM updates are flushed (`tick`), the
 * next animation frame runs (style and layout are done right after it), and a task queued
 * from that frame runs once the frame has been rendered. A MessageChannel rather than
 * `setTimeout(0)`, which browsers may delay. `detail` is read when the mark is set (e.g. how
 * many rows were in the DOM then, so that the benchmark can check the mark came after them).
 */
export function markPainted(name: string, detail?: () => Record<string, unknown>): void {
  if (marked.has(name) || typeof performance === "undefined" || typeof performance.mark !== "function") {
    return;
  }
  marked.add(name);
  void tick().then(() =>
    requestAnimationFrame(() => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        try {
          performance.mark(name, { detail: detail?.() });
        } catch {
          performance.mark(name); // an engine without User Timing Level 3's `detail`
        }
      };
      ch.port2.postMessage(null);
    }),
  );
}
