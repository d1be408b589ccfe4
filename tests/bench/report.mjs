// Shared by the benchmarks that write their own section of BENCHMARKS.md.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { tempDir } from "../support/stepdesk.mjs";

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

/**
 * The release binary to measure (`bin`, else STEPDESK_BIN, else the default target
 * directory's), copied into a private directory named after `prefix`, so that a
 * concurrent build cannot change it under the bench: `{src, bin, dir, sha, version}`.
 */
export function copyBinary(bin, prefix) {
  const src =
    bin ||
    process.env.STEPDESK_BIN ||
    path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache", "stepdesk-target"), "release", "stepdesk");
  if (!existsSync(src)) throw new Error(`no stepdesk binary at ${src}: run \`make build\` or pass --bin`);
  const dir = tempDir(prefix);
  const copy = path.join(dir, "stepdesk");
  copyFileSync(src, copy);
  chmodSync(copy, 0o755);
  const sha = createHash("sha256").update(readFileSync(copy)).digest("hex");
  const version = execFileSync(copy, ["--version"], { encoding: "utf8" }).trim();
  return { src, bin: copy, dir, sha, version };
}
