// A small hash router: `#/runs?status=Failed`, `#/runs/ID`, `#/functions/ID`, ... Deep
// links work in the window and in a browser, and the filters of a list live in its URL.

function parse(hash: string): { path: string; query: URLSearchParams } {
  const h = hash.replace(/^#/, "") || "/";
  const i = h.indexOf("?");
  const path = (i < 0 ? h : h.slice(0, i)) || "/";
  const query = new URLSearchParams(i < 0 ? "" : h.slice(i + 1));
  return { path: path.startsWith("/") ? path : "/" + path, query };
}

class Router {
  path = $state("/");
  query = $state(new URLSearchParams());

  constructor() {
    if (typeof window === "undefined") return;
    this.sync();
    window.addEventListener("hashchange", () => this.sync());
  }

  /** Reads the URL again (after it was changed without a hashchange event). */
  sync(): void {
    const { path, query } = parse(location.hash);
    this.path = path;
    this.query = query;
  }

  /** The path's segments: `/runs/ID` → ["runs", "ID"]. */
  get parts(): string[] {
    return this.path.split("/").filter(Boolean).map(decodeURIComponent);
  }

  /** Goes to `href` (`#/runs/ID` or `/runs/ID`), adding a history entry. */
  go(href: string): void {
    location.hash = href.replace(/^#/, "");
  }

  /** Replaces the query of the current page (filters), without a new history entry. */
  setQuery(params: Record<string, string | null | undefined>): void {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, v);
    const s = q.toString();
    const hash = "#" + this.path + (s ? "?" + s : "");
    history.replaceState(null, "", location.pathname + location.search + hash);
    this.sync();
  }
}

export const router = new Router();

/** A link to a page: `href("runs", id)` → `#/runs/ID`. */
export function href(...parts: string[]): string {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

/** A link with a query: `hrefQ("runs", {fn: "x"})`. */
export function hrefQ(page: string, params: Record<string, string | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, v);
  const s = q.toString();
  return "#/" + page + (s ? "?" + s : "");
}
