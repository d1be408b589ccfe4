// App-wide state: the engine's info and reachability, the change feed, and the data each
// page shows (`Query`), refetched when a relevant table changes.

import { call, ApiError, inWindow, onUnlockNeeded, onTokenChange, getToken } from "./api/client";
import { subscribe, type ChangeSet, type FeedState } from "./api/feed";
import type { Info } from "./api/generated";
import { markPainted, FIRST_DATA } from "./perf";

// ---- The change bus --------------------------------------------------------------------

type Listener = (tables: ChangeSet) => void;
const listeners = new Set<Listener>();

function publish(tables: ChangeSet): void {
  for (const l of listeners) l(tables);
}

/** Whether a change to `tables` concerns a page that shows `prefixes`. */
export function concerns(tables: ChangeSet, prefixes: readonly string[]): boolean {
  if (tables === "all") return true;
  for (const t of tables) if (prefixes.some((p) => t === p || t.startsWith(p))) return true;
  return false;
}

/**
 * Refetches on notices are throttled, not debounced: the first notice refetches at once (a
 * change shows without waiting; a 30 ms debounce was a third of the 100 ms budget for a
 * committed change to reach the page), and the notices that come within this time after it
 * make one more refetch at its end, so a burst of notices is still a couple of refetches and
 * the last state is always fetched.
 */
export const REFETCH_THROTTLE_MS = 30;

/** `fn` throttled as above; `cancel` drops a pending call (the page went away). */
function throttled(fn: () => void): { notify(): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending = false;
  const wait = () => {
    timer = setTimeout(() => {
      timer = undefined;
      if (pending) {
        pending = false;
        fn();
        wait();
      }
    }, REFETCH_THROTTLE_MS);
  };
  return {
    notify() {
      if (timer === undefined) {
        fn();
        wait();
      } else {
        pending = true;
      }
    },
    cancel() {
      clearTimeout(timer);
      timer = undefined;
      pending = false;
    },
  };
}

// ---- Engine status ----------------------------------------------------------------------

export type EngineStatus = "connecting" | "connected" | "unreachable" | "read-only";

class Shell {
  info = $state<Info | null>(null);
  status = $state<EngineStatus>("connecting");
  statusDetail = $state("");
  feed = $state<FeedState>("connecting");
  hasToken = $state(!!getToken());
  unlockOpen = $state(false);
  unlockReason = $state("");
  private unlockWaiters: ((ok: boolean) => void)[] = [];

  readonly inWindow = inWindow;

  requestUnlock(reason: string): Promise<boolean> {
    this.unlockReason = reason;
    this.unlockOpen = true;
    return new Promise((resolve) => this.unlockWaiters.push(resolve));
  }

  finishUnlock(ok: boolean): void {
    this.unlockOpen = false;
    const w = this.unlockWaiters;
    this.unlockWaiters = [];
    for (const f of w) f(ok);
  }

  async refreshInfo(): Promise<void> {
    try {
      const info = await call("info", {});
      this.info = info;
      this.status = info.read_only ? "read-only" : "connected";
      this.statusDetail = "";
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(String(e), 500, "info");
      this.status = "unreachable";
      this.statusDetail = err.message;
    }
  }

  /** Notes the outcome of any call: a failure to reach the engine marks it unreachable. */
  noteError(e: unknown): void {
    if (e instanceof ApiError && e.unreachable) {
      this.status = "unreachable";
      this.statusDetail = e.message;
    }
  }

  noteOk(): void {
    if (this.status === "unreachable") void this.refreshInfo();
  }
}

export const shell = new Shell();

let started = false;

/** Starts the feed and the engine status checks (once, from the shell). */
export function startShell(): void {
  if (started) return;
  started = true;
  onUnlockNeeded((reason) => shell.requestUnlock(reason));
  onTokenChange((has) => (shell.hasToken = has));
  shell.hasToken = !!getToken(); // a `#token=` may have been taken since this module loaded
  void shell.refreshInfo();
  subscribe(
    (tables) => {
      publish(tables);
      if (tables === "all" && shell.status === "unreachable") void shell.refreshInfo();
    },
    (state) => (shell.feed = state),
  );
  // Reachability is also checked on its own, so that a stopped engine shows in the top bar
  // even on a page with nothing to refetch.
  setInterval(() => void shell.refreshInfo(), 5000);
}

// ---- Queries ---------------------------------------------------------------------------

/**
 * Data a page shows: loaded when created and whenever what `load` reads changes, refetched
 * when one of `tables` changes (throttled), with explicit loading and error states.
 * Create it during a component's initialisation (it uses `$effect`).
 */
export class Query<T> {
  data = $state<T | undefined>(undefined);
  error = $state<ApiError | null>(null);
  loading = $state(true);
  /** When the data was last loaded (ms). */
  loadedAt = $state(0);
  private seq = 0;
  private load: () => Promise<T>;

  constructor(load: () => Promise<T>, tables: readonly string[] = []) {
    this.load = load;
    $effect(() => {
      // Reads inside `load` before its first await are tracked: a change of params reloads.
      const promise = this.run(true);
      void promise;
    });
    $effect(() => {
      if (!tables.length) return;
      const refetch = throttled(() => void this.refetch());
      const l: Listener = (changed) => {
        if (concerns(changed, tables)) refetch.notify();
      };
      listeners.add(l);
      return () => {
        listeners.delete(l);
        refetch.cancel();
      };
    });
  }

  private run(reset: boolean): Promise<void> {
    const seq = ++this.seq;
    if (reset) this.loading = true;
    let p: Promise<T>;
    try {
      p = this.load();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.then(
      (data) => {
        if (seq !== this.seq) return;
        this.data = data;
        this.error = null;
        this.loading = false;
        this.loadedAt = Date.now();
        shell.noteOk();
        markPainted(FIRST_DATA, () => ({ page: location.hash.split("?")[0] }));
      },
      (e) => {
        if (seq !== this.seq) return;
        this.error = e instanceof ApiError ? e : new ApiError(String(e?.message ?? e), 500, "");
        this.loading = false;
        shell.noteError(e);
      },
    );
  }

  /** Loads again, keeping what is shown until the answer comes. */
  refetch(): Promise<void> {
    return this.run(false);
  }

  /** Loads again from scratch (the Retry button). */
  retry(): Promise<void> {
    return this.run(true);
  }
}

/** Runs `fn` when one of `tables` changes (throttled); for pages that load by hand. */
export function onChanges(tables: readonly string[], fn: () => void): () => void {
  const call = throttled(fn);
  const l: Listener = (changed) => {
    if (concerns(changed, tables)) call.notify();
  };
  listeners.add(l);
  return () => {
    listeners.delete(l);
    call.cancel();
  };
}
