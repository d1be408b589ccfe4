// A Readwise sync run's progress, from its steps: one `fetch-page-N` (or
// `fetch-updated-page-N`) step per page, whose output says how many books it stored and
// how many Readwise has in all.

import type { Run } from "./model";
import { norm } from "./format";

export interface SyncProgress {
  pages: number;
  books: number;
  total: number | null;
  retrying: boolean;
}

export function syncProgress(run: Run): SyncProgress {
  let pages = 0;
  let books = 0;
  let total: number | null = null;
  let retrying = false;
  for (const s of run.steps) {
    if (!/^fetch-(updated-)?page-\d+/.test(s.id)) continue;
    if (norm(s.status) === "retrying") retrying = true;
    if (norm(s.status) !== "completed") continue;
    pages += 1;
    const out = (s.output ?? {}) as { books?: unknown; count?: unknown };
    if (typeof out.books === "number") books += out.books;
    if (typeof out.count === "number") total = out.count;
  }
  return { pages, books, total, retrying };
}

/** A sync error in plain words (the engine's message, without its error class). */
export function plainSyncError(e: string | null | undefined): string {
  if (!e) return "";
  return e.replace(/^[A-Za-z]+Error:\s*/, "");
}
