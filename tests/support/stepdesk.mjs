// Helpers shared by the browser UI tests and the real-window test: find the binary, start
// and stop `stepdesk serve`, talk to its HTTP API, wait for conditions, check screenshots.
// Node built-ins only.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, homedir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The `stepdesk` binary under test: $STEPDESK_BIN, else the debug build. */
export function stepdeskBin() {
  const bin =
    process.env.STEPDESK_BIN ||
    path.join(
      process.env.CARGO_TARGET_DIR || path.join(homedir(), ".cache", "stepdesk-target"),
      "debug",
      "stepdesk",
    );
  if (!existsSync(bin)) {
    throw new Error(`no stepdesk binary at ${bin}: run \`make build-debug\` or set STEPDESK_BIN`);
  }
  return path.resolve(bin);
}

/** The fake Readwise API's binary: $READWISE_FAKE_BIN, else the debug build beside stepdesk. */
export function readwiseFakeBin() {
  const bin =
    process.env.READWISE_FAKE_BIN || path.join(path.dirname(stepdeskBin()), "readwise-fake");
  if (!existsSync(bin)) {
    throw new Error(`no readwise-fake binary at ${bin}: run \`cargo build -p readwise-fake\` or set READWISE_FAKE_BIN`);
  }
  return path.resolve(bin);
}

/**
 * A running fake Readwise API (`readwise-fake`) with `users` generated tokens
 * (`token-00000`, ...) of `books` books each; `maxPageSize` caps its pages (more pages to
 * watch a sync go through). Call `stop()` when done.
 */
export async function startFakeReadwise({ users = 5, books = 30, latencyMs = 0, maxPageSize } = {}) {
  const args = ["--port", "0", "--users", String(users), "--books", String(books), "--latency-ms", String(latencyMs)];
  if (maxPageSize !== undefined) args.push("--max-page-size", String(maxPageSize));
  const child = spawn(
    readwiseFakeBin(),
    args,
    { env: cleanEnv({ RUST_LOG: "warn" }), stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const stop = () => stopChild(child, { graceMs: 3000 });
  try {
    const url = await Promise.race([
      waitFor("the fake Readwise URL", () => stdout.split("\n").find((l) => l.startsWith("http")), {
        timeoutMs: 15000,
        intervalMs: 20,
      }),
      exited(child).then((code) => {
        throw new Error(`readwise-fake exited (${code}):\n${stderr}`);
      }),
    ]);
    return { url: url.trim(), child, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Where tests leave screenshots for people to look at: `test-artifacts/` in the checkout
 * (ignored by git), so that they stay with the run that made them (CI keeps its workspace),
 * or $STEPDESK_TEST_ARTIFACTS.
 */
export function artifactsDir() {
  const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
  const dir = process.env.STEPDESK_TEST_ARTIFACTS || path.join(repo, "test-artifacts");
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The environment for a Stepdesk child process: the caller's, without any STEPDESK_*
 * setting that could change the test (an event key, a port, a data directory), plus `extra`.
 */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("STEPDESK_")) env[k] = v;
  }
  return { ...env, STEPDESK_LOG: "warn", ...extra };
}

/** Polls `check` until it returns a truthy value (returned) or `timeoutMs` passes (throws). */
export async function waitFor(what, check, { timeoutMs = 20000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}` +
          (lastError ? ` (last error: ${lastError.message})` : ""),
      );
    }
    await sleep(intervalMs);
  }
}

/** Waits for a child process to exit; resolves with its exit code or signal. */
function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode);
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
}

/**
 * Stops a child we started: SIGTERM, then SIGKILL after `graceMs`. With `group`, signals
 * the child's whole process group (the child must have been spawned with `detached: true`).
 */
export async function stopChild(child, { graceMs = 10000, group = false } = {}) {
  if (!child || child.pid === undefined) return;
  const signal = (sig) => {
    try {
      process.kill(group ? -child.pid : child.pid, sig);
    } catch {
      // already gone
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    signal("SIGTERM");
    const timer = setTimeout(() => signal("SIGKILL"), graceMs);
    await exited(child);
    clearTimeout(timer);
  }
  // Anything the group leader left behind.
  if (group) signal("SIGKILL");
}

/**
 * The event key the tests' servers require. Set explicitly so that a key stored in the
 * user's keychain (`stepdesk keys set event-key`) cannot change what the tests see.
 */
export const EVENT_KEY = "stepdesk-test-key";

/**
 * A running `stepdesk serve --port 0` with the test fixtures registered, in a fresh data
 * directory. Call `stop()` when done.
 */
export async function startServer({ fixtures = true, args = [], readwiseUrl, env = {} } = {}) {
  const dataDir = tempDir("stepdesk-test-data-");
  const extra = { ...env };
  if (fixtures) extra.STEPDESK_TEST_FIXTURES = "1";
  if (readwiseUrl) extra.READWISE_API_URL = readwiseUrl;
  // Each server its own keychain entries, so that tests running side by side do not meet.
  extra.STEPDESK_KEYCHAIN_SERVICE ??= `dev.stepdesk.test.${path.basename(dataDir)}`;
  const child = spawn(
    stepdeskBin(),
    ["serve", "--port", "0", "--data-dir", dataDir, "--event-key", EVENT_KEY, ...args],
    {
      env: cleanEnv(extra),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const stop = async () => {
    await stopChild(child);
    removeDir(dataDir);
  };
  try {
    const url = await Promise.race([
      waitFor("the server's URL on stdout", () => {
        const m = stdout.match(/Stepdesk is listening on (http:\/\/\S+)/);
        return m && m[1];
      }, { timeoutMs: 30000, intervalMs: 20 }),
      exited(child).then((code) => {
        throw new Error(`stepdesk serve exited (${code}) before listening:\n${stderr}`);
      }),
    ]);
    const token = execFileSync(stepdeskBin(), ["admin-token", "--data-dir", dataDir], {
      env: cleanEnv(extra),
      encoding: "utf8",
    }).trim();
    return { url, dataDir, token, child, stop, logs: () => stderr, env: extra };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** JSON over HTTP; throws on a non-2xx answer. */
export async function api(base, route, { method = "GET", body, token } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + route, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return json;
}

/** Sends one event through the Inngest event API; returns its id. */
export async function sendEvent(base, name, data = {}) {
  const route = `/e/${EVENT_KEY}`;
  const out = await api(base, route, { method: "POST", body: { name, data } });
  if (!Array.isArray(out.ids) || out.ids.length !== 1) {
    throw new Error(`POST ${route} answered ${JSON.stringify(out)}`);
  }
  return out.ids[0];
}

/** Waits until the run of `functionId` triggered by `eventId` has `status`; returns it. */
export async function waitForRun(base, functionId, status, { eventId, timeoutMs = 20000 } = {}) {
  return waitFor(`a ${status} run of ${functionId}`, async () => {
    const page = await api(base, `/api/admin/runs?function_id=${encodeURIComponent(functionId)}`);
    return page.runs.find((r) => r.status === status && (!eventId || r.event_id === eventId));
  }, { timeoutMs });
}

/**
 * Pixel statistics of a PNG, via ImageMagick: the standard deviation of its gray levels
 * (0..1) and its number of distinct colours. A blank window has almost none of either.
 */
export function imageStats(pngPath) {
  const out = execFileSync(
    "convert",
    [pngPath, "-format", "%[fx:standard_deviation] %k %w %h", "info:"],
    { encoding: "utf8" },
  ).trim();
  const [stddev, colors, width, height] = out.split(/\s+/).map(Number);
  return { stddev, colors, width, height };
}

/**
 * Starts `stepdesk inspect DIR --no-window` (a read-only copy of a data directory); resolves
 * with `{url, stop}` once it listens.
 */
export async function startInspector(dataDir) {
  const child = spawn(stepdeskBin(), ["inspect", "--no-window", dataDir], {
    env: cleanEnv({ STEPDESK_TEST_FIXTURES: "1" }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const stop = () => stopChild(child);
  try {
    const url = await Promise.race([
      waitFor("the inspector's URL on stdout", () => {
        const m = stdout.match(/Stepdesk is listening on (http:\/\/\S+)/);
        return m && m[1];
      }, { timeoutMs: 30000, intervalMs: 20 }),
      exited(child).then((code) => {
        throw new Error(`stepdesk inspect exited (${code}) before listening:\n${stderr}`);
      }),
    ]);
    return { url, child, stop, logs: () => stderr };
  } catch (e) {
    await stop();
    throw e;
  }
}
