import type { FunctionView } from "./api/generated";

/** Where a function comes from: the engine's `source` when it says, else its id's family. */
export function functionSource(f: FunctionView): string {
  const s = (f as FunctionView & { source?: string }).source;
  if (s) return s;
  if (f.id.startsWith("fixture-")) return "test fixtures";
  if (f.id.startsWith("readwise-")) return "Readwise sync";
  return "built-in";
}
