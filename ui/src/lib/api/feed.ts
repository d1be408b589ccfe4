// The live change feed: which tables changed after each committed transaction.
//
// - Browser: Server-Sent Events from `/api/admin/changes` (event `changes`; event `lagged`
//   means some notices were missed: refetch everything).
// - Window: the Tauri event `stepdesk://changes`, same payload.
// - When the feed cannot be opened (an older server without it, or reads that need a token
//   an EventSource cannot send), the console polls instead: a "refetch everything" every
//   2 s, and the top bar says "polling".

import { listen } from "@tauri-apps/api/event";
import { inWindow } from "./client";

/** The tables a notice names, or "all" (lagged, reconnected, or a poll). */
export type ChangeSet = Set<string> | "all";
export type FeedState = "connecting" | "live" | "polling" | "reconnecting";

export const POLL_MS = 2000;

/**
 * The tables a notice names. Accepts `{tables: [...]}` and the engine's
 * `{changes: [{table, ids, truncated}]}`.
 */
export function tablesOf(payload: unknown): ChangeSet {
  const p = payload as { tables?: unknown; changes?: unknown } | null;
  const out = new Set<string>();
  if (p && Array.isArray(p.tables)) for (const t of p.tables) out.add(String(t));
  if (p && Array.isArray(p.changes)) {
    for (const c of p.changes) if (c && typeof c === "object" && "table" in c) out.add(String(c.table));
  }
  return out.size ? out : "all";
}

export interface Subscription {
  close(): void;
}

/**
 * Calls `onChange` with what changed, and `onState` whenever the feed's state changes.
 */
export function subscribe(
  onChange: (tables: ChangeSet) => void,
  onState: (state: FeedState) => void,
): Subscription {
  let closed = false;
  let pollTimer: ReturnType<typeof setInterval> | undefined;
  const startPolling = () => {
    if (closed || pollTimer) return;
    onState("polling");
    pollTimer = setInterval(() => onChange("all"), POLL_MS);
  };

  if (inWindow) {
    // A listener cannot tell an idle engine from one that emits nothing (an older build):
    // poll until the first notice arrives, then trust the feed.
    startPolling();
    let unlisten: (() => void) | undefined;
    listen("stepdesk://changes", (e) => {
      if (pollTimer) {
        clearInterval(pollTimer);
        pollTimer = undefined;
        onState("live");
      }
      onChange(tablesOf(e.payload));
    })
      .then((u) => {
        if (closed) u();
        else unlisten = u;
      })
      .catch(() => startPolling());
    return {
      close() {
        closed = true;
        unlisten?.();
        if (pollTimer) clearInterval(pollTimer);
      },
    };
  }

  onState("connecting");
  let source: EventSource | undefined;
  let opened = false;
  try {
    source = new EventSource("api/admin/changes");
  } catch {
    startPolling();
  }
  if (source) {
    const es = source;
    es.addEventListener("open", () => {
      if (opened) onChange("all"); // back after a drop: catch up on what was missed
      opened = true;
      onState("live");
    });
    es.addEventListener("changes", (e) => {
      let data: unknown = null;
      try {
        data = JSON.parse((e as MessageEvent).data);
      } catch {
        // a malformed notice: refetch everything rather than miss it
      }
      onChange(tablesOf(data));
    });
    es.addEventListener("lagged", () => onChange("all"));
    es.addEventListener("error", () => {
      if (closed) return;
      if (!opened || es.readyState === EventSource.CLOSED) {
        // Never opened (no feed on this server, 401/404) or given up: poll instead.
        es.close();
        startPolling();
      } else {
        onState("reconnecting");
      }
    });
  }
  return {
    close() {
      closed = true;
      source?.close();
      if (pollTimer) clearInterval(pollTimer);
    },
  };
}
