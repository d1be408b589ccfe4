// Shared by the SDK tests: start the test apps (tests/sdk/js on the npm `inngest` package,
// tests/sdk/py on the PyPI one, installed by `make deps-sdk`), and a tiny stand-in for the
// Inngest API that records what the apps send it. Node built-ins only.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { stopChild, waitFor } from "../support/stepdesk.mjs";

export const SDK_DIR = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES_DIR = path.join(SDK_DIR, "fixtures");

const JS_DIR = path.join(SDK_DIR, "js");
const PY_DIR = path.join(SDK_DIR, "py");
const PYTHON = path.join(PY_DIR, ".venv", "bin", "python");

/** The SDK versions the lock files pin (what the apps must report). */
export function lockedVersions() {
  const lock = JSON.parse(readFileSync(path.join(JS_DIR, "package-lock.json"), "utf8"));
  const js = lock.packages["node_modules/inngest"].version;
  const pyLock = readFileSync(path.join(PY_DIR, "requirements.lock"), "utf8");
  const py = pyLock.match(/^inngest==(\S+)/m)[1];
  return { js, py };
}

/** Each app: its id, how to start it, and the event-name prefix of its functions. */
export const APPS = {
  js: {
    id: "sdk-js",
    sdk: "js",
    cmd: () => {
      if (!existsSync(path.join(JS_DIR, "node_modules", "inngest", "package.json"))) {
        throw new Error(`the JS test app is not installed (${JS_DIR}/node_modules): run \`make deps-sdk\``);
      }
      return [process.execPath, [path.join(JS_DIR, "app.mjs")], JS_DIR];
    },
  },
  py: {
    id: "sdk-py",
    sdk: "py",
    cmd: () => {
      if (!existsSync(PYTHON)) {
        throw new Error(`the Python test app is not installed (${PYTHON}): run \`make deps-sdk\``);
      }
      return [PYTHON, [path.join(PY_DIR, "app.py")], PY_DIR];
    },
  },
};

/**
 * The environment of an app: the caller's without any INNGEST_* or PORT setting (they would
 * change what the app talks to), plus `extra` (INNGEST_DEV, keys, ...).
 */
function appEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("INNGEST_") && k !== "PORT" && !k.startsWith("STEPDESK_")) env[k] = v;
  }
  return { ...env, PORT: "0", PYTHONUNBUFFERED: "1", ...extra };
}

/**
 * Starts a test app (`"js"` or `"py"`) on a free port with the given INNGEST_* variables;
 * resolves with `{url, id, child, stop, logs}` once it listens (`url` is its serve URL,
 * `http://127.0.0.1:PORT/api/inngest`). Pass `port` to choose the port (a restart).
 */
export async function startApp(kind, env = {}, { port } = {}) {
  const app = APPS[kind];
  const [bin, args, cwd] = app.cmd();
  const extra = { ...env };
  if (port !== undefined) extra.PORT = String(port);
  const child = spawn(bin, args, { cwd, env: appEnv(extra), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const stop = () => stopChild(child, { graceMs: 3000 });
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig)));
  try {
    const url = await Promise.race([
      waitFor(`${app.id} to listen`, () => {
        const m = stdout.match(new RegExp(`${app.id} listening on (http://\\S+)`));
        return m && m[1];
      }, { timeoutMs: 30000, intervalMs: 20 }),
      exited.then((code) => {
        throw new Error(`${app.id} exited (${code}) before listening:\n${stdout}\n${stderr}`);
      }),
    ]);
    return { url, id: app.id, kind, child, stop, logs: () => stdout + stderr };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * A stand-in for the Inngest API that records every request (`requests`: method, path,
 * headers, parsed body) and answers `POST /fn/register` with `{"ok":true,"modified":true}`,
 * anything else with a 404. Call `close()` when done.
 */
export async function startFakeInngest() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let body = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      const url = new URL(req.url, "http://fake");
      requests.push({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, body, raw });
      const json = (status, value) => {
        res.writeHead(status, { "content-type": "application/json", "x-inngest-server-kind": "dev" });
        res.end(JSON.stringify(value));
      };
      if (req.method === "POST" && url.pathname === "/fn/register") {
        return json(200, { ok: true, modified: true });
      }
      json(404, { error: `the fake Inngest API has no ${req.method} ${url.pathname}`, status: 404 });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () => new Promise((resolve) => server.close(resolve));
  return { url, requests, close };
}

/** Inngest's step id on the wire: the SHA-1 of the step's own id, in hex. */
export function stepHash(id) {
  return createHash("sha1").update(id).digest("hex");
}

/** A header's value in a fetch Response or a Node request's headers, case-insensitively. */
export function header(headers, name) {
  if (typeof headers.get === "function") return headers.get(name);
  return headers[name.toLowerCase()];
}
