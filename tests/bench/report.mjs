// Shared by the benchmarks that write their own section of BENCHMARKS.md.

/**
 * Replaces the section named `name` of `existing` (between `<!-- name:start -->` and
 * `<!-- name:end -->`) with `section`, or appends it; the rest of the file is kept.
 */
export function spliceSection(existing, name, section) {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${section.trimEnd()}\n${end}`;
  const e = existing.indexOf(end);
  const s = e >= 0 ? existing.lastIndexOf(start, e) : -1;
  if (s >= 0) return existing.slice(0, s) + block + existing.slice(e + end.length);
  return existing.trimEnd() + (existing.trim() ? "\n\n" : "") + block + "\n";
}
