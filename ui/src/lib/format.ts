// Formatting of times, durations and statuses, the same on every page.

// One formatter for every time shown. `Date.toLocaleString(locale, options)` builds a new
// Intl.DateTimeFormat (ICU's pattern generator, locale data) on each call: about 80 µs and
// a burst of native allocations per call in WebKitGTK, for each row of the runs list as it
// renders and scrolls. `format` of a kept formatter gives the same text.
let timeFormat: Intl.DateTimeFormat | undefined;

export function fmtTime(ms: number | null | undefined): string {
  if (ms == null) return "";
  timeFormat ??= new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const d = new Date(ms);
  // `format` throws on an invalid date, where toLocaleString said so.
  return Number.isNaN(d.getTime()) ? "Invalid Date" : timeFormat.format(d);
}

/** Time of day with milliseconds, for step timings. */
export function fmtClock(ms: number | null | undefined): string {
  if (ms == null) return "";
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms == null) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  const h = Math.floor(ms / 3_600_000);
  return `${h} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** "in 3 min", "5 s ago". */
export function fmtRelative(ms: number | null | undefined, now = Date.now()): string {
  if (ms == null) return "";
  const diff = ms - now;
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 1000) return "now";
  if (abs < 60_000) text = `${Math.round(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.round(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.round(abs / 3_600_000)} h`;
  else text = `${Math.round(abs / 86_400_000)} d`;
  return diff > 0 ? `in ${text}` : `${text} ago`;
}

/** A status in one casing for comparisons: "WaitForEvent" / "wait_for_event" → "waitforevent". */
export function norm(s: string | null | undefined): string {
  return (s ?? "").toLowerCase().replace(/[_\s-]/g, "");
}

/** The classes of a status pill (`Status`, and the runs list's rows, which inline it). */
export function statusClass(s: string | null | undefined): string {
  return `status status-${norm(s)}`;
}

/** A status or kind for display: "wait_for_event" → "Wait for event". */
export function label(s: string | null | undefined): string {
  if (!s) return "";
  const spaced = s.includes("_")
    ? s.replace(/_/g, " ")
    : s.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1).toLowerCase();
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}

/** A plain-words message from an error value (string, {message, stack, name}, ...). */
export function errorMessage(e: unknown): string {
  if (e == null) return "";
  if (typeof e === "string") return e;
  if (typeof e === "object") {
    const o = e as Record<string, unknown>;
    const name = typeof o.name === "string" ? o.name : "";
    const msg = typeof o.message === "string" ? o.message : typeof o.error === "string" ? o.error : "";
    if (msg) return name && name !== "Error" ? `${name}: ${msg}` : msg;
  }
  return JSON.stringify(e);
}

export function errorStack(e: unknown): string {
  if (e && typeof e === "object" && typeof (e as { stack?: unknown }).stack === "string") {
    return (e as { stack: string }).stack;
  }
  return "";
}
