// The one client of the admin API, for the window and the browser alike.
//
// - In the window (`window.__TAURI_INTERNALS__` exists) every command goes through Tauri's
//   `admin` command; no token is needed (the window is the app itself).
// - In a browser, `POST /api/rpc/{name}` with the params as JSON. Reads work without a token
//   on loopback; writes need the admin token, which the person pastes once ("Unlock
//   changes") and which is kept in sessionStorage only. A 401 opens that dialog; the call
//   waits for it and is retried with the token, or fails if the dialog is dismissed.
//
// Errors are always `ApiError` (message + HTTP-like status; 0 = engine unreachable), so a
// page can show an error as an error, never as an empty list.

import { invoke } from "@tauri-apps/api/core";
import type { Commands, CommandName } from "./generated";

export type Params<K extends CommandName> = Commands[K]["params"];
export type Result<K extends CommandName> = Commands[K]["result"];

export class ApiError extends Error {
  status: number;
  command: string;
  constructor(message: string, status: number, command: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.command = command;
  }
  /** The engine could not be reached at all (network error, server stopped). */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

export const inWindow: boolean =
  typeof window !== "undefined" && "__TAURI_INTERNALS__" in window;

// ---- The admin token (browser only) ---------------------------------------------------

const TOKEN_KEY = "stepdesk.adminToken";

/** A `#token=...` in the URL is taken once, kept for this tab, and removed from the URL. */
export function takeTokenFromUrl(): void {
  const m = /^#token=([^&]+)(?:&(.*))?$/.exec(location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]));
  const rest = m[2] ? "#" + decodeURIComponent(m[2]) : "#/";
  history.replaceState(null, "", location.pathname + location.search + rest);
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives only as long as this call
  }
  for (const l of tokenListeners) l(!!token);
}

const tokenListeners: ((has: boolean) => void)[] = [];
/** Tells `listener` whenever the token is set or cleared. */
export function onTokenChange(listener: (has: boolean) => void): void {
  tokenListeners.push(listener);
}

/**
 * Asks the person for the admin token (the shell's "Unlock changes" dialog); resolves true
 * once one was entered, false when dismissed. Registered by the shell.
 */
type UnlockHandler = (reason: string) => Promise<boolean>;
let unlockHandler: UnlockHandler = async () => false;
export function onUnlockNeeded(handler: UnlockHandler): void {
  unlockHandler = handler;
}

// ---- Calls -----------------------------------------------------------------------------

function toApiError(e: unknown, command: string): ApiError {
  if (e instanceof ApiError) return e;
  if (e && typeof e === "object" && "error" in e) {
    const o = e as { error: unknown; status?: unknown };
    return new ApiError(String(o.error), typeof o.status === "number" ? o.status : 500, command);
  }
  return new ApiError(e instanceof Error ? e.message : String(e), 500, command);
}

async function httpCall(name: string, params: unknown, token: string | null): Promise<unknown> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-stepdesk-client": "console",
  };
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(`api/rpc/${encodeURIComponent(name)}`, {
      method: "POST",
      headers,
      body: JSON.stringify(params ?? {}),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(
      `cannot reach the Stepdesk engine (${e instanceof Error ? e.message : String(e)})`,
      0,
      name,
    );
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: a proxy or a stopped server's error page
  }
  if (!res.ok) {
    const message =
      body && typeof body === "object" && "error" in body
        ? String((body as { error: unknown }).error)
        : `HTTP ${res.status} ${res.statusText}`.trim();
    throw new ApiError(message, res.status, name);
  }
  return body;
}

/** Calls one admin command by name with typed params and result. */
export async function call<K extends CommandName>(name: K, params: Params<K>): Promise<Result<K>> {
  if (inWindow) {
    try {
      return (await invoke("admin", { method: name, params: params ?? null })) as Result<K>;
    } catch (e) {
      throw toApiError(e, name);
    }
  }
  try {
    return (await httpCall(name, params, getToken())) as Result<K>;
  } catch (e) {
    const err = toApiError(e, name);
    if (err.status !== 401) throw err;
    // A wrong or missing admin token: ask for it, then try once more.
    if (getToken()) setToken(null);
    const ok = await unlockHandler(err.message);
    if (!ok) throw new ApiError(`${err.message} (changes are locked)`, 401, name);
    try {
      return (await httpCall(name, params, getToken())) as Result<K>;
    } catch (e2) {
      throw toApiError(e2, name);
    }
  }
}
