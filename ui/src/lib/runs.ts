// The runs list's filters: read from and written to the URL, turned into the `runs` query.

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
}

export function filtersFromQuery(q: URLSearchParams): RunFilters {
  return {
    fn: q.get("fn") ?? "",
    status: q.get("status") ?? "",
    trigger: q.get("trigger") ?? "",
    event: q.get("event") ?? "",
    range: q.get("range") ?? (q.get("from") || q.get("to") ? "custom" : ""),
    from: q.get("from") ?? "",
    to: q.get("to") ?? "",
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
 * The `runs` params for these filters. The trigger kind and the event name are sent only
 * when chosen (an engine without those filters then says so, shown as an error).
 */
export function runQuery(f: RunFilters, now = Date.now()): RunQuery {
  const q: Record<string, unknown> = {};
  if (f.fn) q.function_id = f.fn;
  if (f.status) q.status = f.status;
  if (f.trigger) q.trigger_kind = f.trigger;
  if (f.event) q.event_name = f.event;
  const pick = RANGES.find((r) => r.id === f.range);
  if (pick) q.from = now - pick.ms;
  else if (f.range === "custom") {
    const from = localToMs(f.from);
    const to = localToMs(f.to);
    if (from !== undefined) q.from = from;
    if (to !== undefined) q.to = to;
  }
  return q as RunQuery;
}

/** Whether run `a` comes after `b` in the list's order (newest first: ULIDs descending). */
function after(a: RunSummary, b: RunSummary): boolean {
  return a.id < b.id;
}

/**
 * Merges a fresh first page into the loaded list: the fresh rows first, then the loaded
 * rows that come after the fresh page's last row (their cursor stays valid).
 */
export function mergeFirstPage(loaded: RunSummary[], fresh: RunSummary[]): RunSummary[] {
  if (!fresh.length) return [];
  const last = fresh[fresh.length - 1];
  const ids = new Set(fresh.map((r) => r.id));
  return fresh.concat(loaded.filter((r) => !ids.has(r.id) && after(r, last)));
}
