// Shared by the benchmarks that write their own section of BENCHMARKS.md.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

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

/** A number for a report: `d` decimals, thousands separated; "–" when there is none. */
export const fmt = (n, d = 0) =>
  n === undefined || n === null || Number.isNaN(n)
    ? "–"
    : n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

/** Milliseconds for a report, with the decimals that matter at that size. */
export const ms = (n) => `${fmt(n, n < 10 ? 2 : n < 100 ? 1 : 0)} ms`;

/** The machine in one line: cores, CPU model, memory, kernel. */
export function machine() {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  return `${os.cpus().length} cores (nproc), ${cpu}, ${fmt(os.totalmem() / 2 ** 30, 1)} GiB RAM, Linux ${os.release()}`;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** `git ARGS` in the repository, its output trimmed; "" when git fails. */
export function git(args) {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

/** Writes `section` as the section `name` of the Markdown file `file` (see spliceSection). */
export function writeSection(file, name, section) {
  const existing = existsSync(file) ? readFileSync(file, "utf8") : "";
  writeFileSync(file, spliceSection(existing, name, section));
}
