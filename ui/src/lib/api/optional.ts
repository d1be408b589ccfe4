// Commands that newer engines have and older ones may not (function stats, cron fires,
// rerun from step, ...). A page asks `has(name)` before showing what needs one.

import { COMMANDS } from "./generated";
import { call } from "./client";

export function has(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(COMMANDS, name);
}

/** Calls a command by a name that may not be in this build's generated types. */
export function callAny<T = unknown>(name: string, params: Record<string, unknown>): Promise<T> {
  return (call as unknown as (n: string, p: unknown) => Promise<T>)(name, params);
}
