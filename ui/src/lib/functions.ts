import type { FunctionView } from "./api/generated";

/**
 * The SDK app a function comes from (its app id), or null for the functions built into
 * Stepdesk (the engine leaves `source` out for those, as an engine older than SDK apps does
 * for every function).
 */
export function functionApp(f: FunctionView): string | null {
  return f.source ?? null;
}

/** Which part of Stepdesk a built-in function belongs to, from its id's family. */
export function builtInFamily(f: FunctionView): string | null {
  if (f.id.startsWith("fixture-")) return "test fixtures";
  if (f.id.startsWith("readwise-")) return "Readwise sync";
  return null;
}

/** Where a function comes from, in words: "app shop", "built in (Readwise sync)". */
export function functionSource(f: FunctionView): string {
  const app = functionApp(f);
  if (app) return `app ${app}`;
  const family = builtInFamily(f);
  return family ? `built in (${family})` : "built in";
}
