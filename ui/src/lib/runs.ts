// The runs list's filters: read from and written to the URL, turned into the `runs` query.
// The time range (quick picks or absolute) is shared with the events list.

import type { RunQuery, RunSummary } from "./api/generated";

export const RUN_STATUSES = ["Running", "Completed", "Failed", "Cancelled"] as const;
export const TRIGGER_KINDS = ["event", "cron", "invoke", "rerun"] as const;

/** Quick picks of the time range, in ms back from now. */
export const RANGES: { id: string; label: string; ms: number }[] = [
  { id: "15m", label: "Last 15 minutes", ms: 15 * 60_000 },
  { id: "1h", label: "Last hour", ms: 3_600_000 },
  { id: "24h", label: "Last 24 hours", ms: 86_400_000 },
  { id: "7d", label: "Last 7 days", ms: 7 * 86_400_000 },
  { id: "30d", label: "Last 30 days", ms: 30 * 86_400_000 },
];

export interface RunFilters {
  fn: string;
  status: string;
  trigger: string;
  event: string;
  /** A quick pick id, "custom" (from/to below), or "" (any time). */
  range: string;
  from: string;
  to: string;
  /** A search of the runs' contents (`search_runs`); "" lists the runs. */
  q: string;
}

/** No filter and no search. */
export const NO_FILTERS: RunFilters = { fn: "", status: "", trigger: "", event: "", range: "", from: "", to: "", q: "" };

export function filtersFromQuery(q: URLSearchParams): RunFilters {
  return {
    fn: q.get("fn") ?? "",
    status: q.get("status") ?? "",
    trigger: q.get("trigger") ?? "",
    event: q.get("event") ?? "",
    range: q.get("range") ?? (q.get("from") || q.get("to") ? "custom" : ""),
    from: q.get("from") ?? "",
    to: q.get("to") ?? "",
    q: q.get("q") ?? "",
  };
}

export function filtersToQuery(f: RunFilters): Record<string, string> {
  return {
    fn: f.fn,
    status: f.status,
    trigger: f.trigger,
    event: f.event,
    range: f.range,
    from: f.range === "custom" ? f.from : "",
    to: f.range === "custom" ? f.to : "",
    q: f.q,
  };
}

/** A `datetime-local` value (local time) as ms since the epoch, or undefined. */
export function localToMs(v: string): number | undefined {
  if (!v) return undefined;
  const ms = new Date(v).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** ms since the epoch as a `datetime-local` value. */
export function msToLocal(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

/**
 * The time range's bounds in ms: a quick pick back from `now`, or the absolute from/to of
 * "custom" (either may be left empty), or none. `error` when from is after to.
 */
export function rangeBounds(
  range: string,
  from: string,
  to: string,
  now = Date.now(),
): { from?: number; to?: number; error?: string } {
  const pick = RANGES.find((r) => r.id === range);
  if (pick) return { from: now - pick.ms };
  if (range !== "custom") return {};
  const out: { from?: number; to?: number; error?: string } = {};
  const f = localToMs(from);
  const t = localToMs(to);
  if (f !== undefined) out.from = f;
  if (t !== undefined) out.to = t;
  if (f !== undefined && t !== undefined && f > t) out.error = "“From” is after “To”";
  return out;
}

/**
 * The `runs` params for these filters. The trigger kind and the event name are sent only
 * when chosen (an engine without those filters then says so, shown as an error).
 */
export function runQuery(f: RunFilters, now = Date.now()): RunQuery {
  const q: Record<string, unknown> = {};
  if (f.fn) q.function_id = f.fn;
  if (f.status) q.status = f.status;
  if (f.trigger) q.trigger_kind = f.trigger;
  if (f.event) q.event_name = f.event;
  const { from, to } = rangeBounds(f.range, f.from, f.to, now);
  if (from !== undefined) q.from = from;
  if (to !== undefined) q.to = to;
  return q as RunQuery;
}

/**
 * Whether a run passes these filters (for search results, which `search_runs` finds by
 * content alone): the same meaning as the `runs` query's.
 */
export function matchesFilters(r: RunSummary, f: RunFilters, now = Date.now()): boolean {
  if (f.fn && r.function_id !== f.fn) return false;
  if (f.status && r.status !== f.status) return false;
  if (f.trigger && r.trigger_kind.toLowerCase() !== f.trigger.toLowerCase()) return false;
  if (f.event && r.event_name !== f.event) return false;
  const { from, to } = rangeBounds(f.range, f.from, f.to, now);
  if (from !== undefined && r.queued_at < from) return false;
  if (to !== undefined && r.queued_at >= to) return false;
  return true;
}

/** Whether a search query has a word to look for (letters or digits, as the index splits). */
export function hasSearchWord(q: string): boolean {
  return /[\p{L}\p{N}]/u.test(q);
}

/** Whether run `a` comes after `b` in the list's order (newest first: ULIDs descending). */
function after(a: { id: string }, b: { id: string }): boolean {
  return a.id < b.id;
}

/**
 * Merges a fresh first page into the loaded list: the fresh rows first, then the loaded
 * rows that come after the fresh page's last row (their cursor stays valid). Runs, or
 * anything with a run's id (the runs list's rows).
 */
export function mergeFirstPage<T extends { id: string }>(loaded: T[], fresh: T[]): T[] {
  if (!fresh.length) return [];
  const last = fresh[fresh.length - 1];
  const ids = new Set(fresh.map((r) => r.id));
  return fresh.concat(loaded.filter((r) => !ids.has(r.id) && after(r, last)));
}
