// The SDK benchmark (issue 8, section 5), run by `make bench` with the release binary: a
// 3-step workflow written with the official Inngest JS SDK (inngest-app.mjs), in a Node app on
// loopback, driven side by side in one run by
//
//   1. the bare SDK floor: a stand-in executor in this script that does nothing but send the
//      call requests the SDK needs (the memo kept in memory; with checkpointing, it also
//      answers the SDK's checkpoint posts with 200), so what it measures is the SDK's own cost;
//   2. Stepdesk (`stepdesk dev -u APP --no-discovery --no-poll`): each run started through the
//      event API (`POST /e/{key}`), its end seen in Stepdesk (`GET /v1/runs/{id}`);
//   3. Restate (the npm `@restatedev/restate-server` binary) running the same three steps with
//      the Restate TypeScript SDK (restate-app.mjs, one `ctx.run` per step), registered through
//      its admin API and called through its ingress (`POST /Bench/run`, which answers when the
//      invocation has ended).
//
// Each Inngest mode runs twice, with the SDK's v4 checkpointing on (its default) and off. Each
// system: a warm-up, N runs one after another (latency per run, runs/s), then M runs with 16
// in flight (runs/s); the CPU time of each process (/proc/PID/stat utime+stime) over each phase,
// divided by the runs. Every figure comes from this run; the report (Markdown) goes to stdout
// and, with `--write BENCHMARKS.md`, between `<!-- sdk-bench:start -->` and `<!-- sdk-bench:end -->`.
//
//   node tests/bench/sdk/bench.mjs --bin PATH/TO/release/stepdesk --write BENCHMARKS.md
//
// Everything runs in a private network namespace with only a loopback interface when this
// process may make one (`unshare --net`: root, or an unprivileged user namespace): the Restate
// server asks GitHub for its latest release at start-up whatever its configuration says, and
// nothing in a benchmark should leave the machine. `--netns off` runs without it.
//
// Needs `make deps-bench` (this directory's node_modules, from package-lock.json) and a
// release build (`make build`).

import { spawn, spawnSync, execFileSync } from "node:child_process";
import { randomUUID, createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { copyBinary, fmt, git, machine, ms, writeSection } from "../report.mjs";
import { setTimeout as sleep } from "node:timers/promises";

import { cleanEnv, freePort, removeDir, stopChild, tempDir, waitFor } from "../../support/stepdesk.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../../..");
const SCRIPT = fileURLToPath(import.meta.url);
const SYSTEMS = ["floor", "stepdesk", "restate"];
const MODES = ["checkpoint", "classic"];

const { values: opts } = parseArgs({
  options: {
    bin: { type: "string" },
    write: { type: "string" },
    only: { type: "string", default: SYSTEMS.join(",") },
    modes: { type: "string", default: MODES.join(",") },
    // Runs one after another (latency per run) and with `concurrency` in flight (throughput).
    sequential: { type: "string", default: "100" },
    concurrent: { type: "string", default: "500" },
    // Each system's phases are run this many times, the systems taking turns.
    rounds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "16" },
    warmup: { type: "string", default: "200" },
    // Status polls measured on their own, to say how much of Stepdesk's CPU per run they are.
    "poll-calibration": { type: "string", default: "1000" },
    netns: { type: "string", default: "auto" },
  },
});
const int = (k) => {
  const n = Number(opts[k]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${k}: a positive integer, not ${opts[k]}`);
  return n;
};
const only = opts.only.split(",").map((s) => s.trim()).filter(Boolean);
for (const s of only) if (!SYSTEMS.includes(s)) throw new Error(`--only: unknown system ${s} (${SYSTEMS.join(", ")})`);
const modes = opts.modes.split(",").map((s) => s.trim()).filter(Boolean);
for (const m of modes) if (!MODES.includes(m)) throw new Error(`--modes: unknown mode ${m} (${MODES.join(", ")})`);
if (!["auto", "on", "off"].includes(opts.netns)) throw new Error(`--netns: auto, on or off, not ${opts.netns}`);
const N_SEQ = int("sequential");
const N_CONC = int("concurrent");
const CONCURRENCY = int("concurrency");
const N_WARM = int("warmup");
const ROUNDS = int("rounds");
const N_POLL_CAL = int("poll-calibration");

const log = (...a) => console.error(...a);
const pctf = (x) => `${fmt(100 * x, x < 0.1 ? 1 : 0)}%`;

// ---- The network namespace ------------------------------------------------------------

const COMMAND = process.env.SDKBENCH_COMMAND || ["node tests/bench/sdk/bench.mjs", ...process.argv.slice(2)].join(" ");

if (opts.netns !== "off" && process.env.SDKBENCH_IN_NETNS !== "1") {
  const userns = process.getuid?.() === 0 ? [] : ["--map-root-user"];
  const probe = spawnSync("unshare", [...userns, "--net", "--", "ip", "link", "set", "lo", "up"], { stdio: "ignore" });
  if (probe.status === 0) {
    const r = spawnSync(
      "unshare",
      [...userns, "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", process.execPath, SCRIPT, ...process.argv.slice(2)],
      { stdio: "inherit", env: { ...process.env, SDKBENCH_IN_NETNS: "1", SDKBENCH_COMMAND: COMMAND } },
    );
    process.exit(r.status ?? 1);
  }
  if (opts.netns === "on") throw new Error("--netns on: cannot make a network namespace (`unshare --net` and `ip` are needed)");
  log("no private network namespace (unshare --net failed): running on the machine's network");
}
const IN_NETNS = process.env.SDKBENCH_IN_NETNS === "1";

// ---- Statistics and CPU ----------------------------------------------------------------

/** Nearest-rank percentile of `xs` (p in 0..100). */
function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system, ms) a process has used so far, threads that ended included. */
function cpuMs(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** System (kernel) CPU time (ms) a process has used so far: its part of cpuMs. */
function sysMs(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[12]) * 1000) / CLK_TCK;
}

/** CPU time (ms) every core of the machine spent busy so far (/proc/stat), all processes. */
function machineBusyMs() {
  const [, ...v] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = v.map(Number);
  return ((user + nice + system + irq + softirq + steal) * 1000) / CLK_TCK;
}

/** CPU time (ms) of a process's live threads, summed by thread name. */
function threadCpuMs(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let s;
    try {
      s = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    const name = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    out[name] = (out[name] ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  }
  return out;
}

function snapshot(pids, threadsOf) {
  const cpu = {};
  for (const [name, pid] of Object.entries(pids)) cpu[name] = cpuMs(pid);
  const threads = threadsOf ? threadCpuMs(pids[threadsOf]) : null;
  const sys = threadsOf ? sysMs(pids[threadsOf]) : null;
  return { cpu, threads, sys, machine: machineBusyMs(), self: process.cpuUsage(), t: performance.now() };
}

// ---- Processes -------------------------------------------------------------------------

const children = [];

/** Starts a child with stdout/stderr captured; resolves once `ready` matches its stdout. */
async function startChild(what, bin, args, { env, cwd, ready, ipc = false, timeoutMs = 30000 }) {
  const child = spawn(bin, args, { cwd, env, stdio: ["ignore", "pipe", "pipe", ...(ipc ? ["ipc"] : [])] });
  children.push(child);
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out = (out + d).slice(-20000)));
  child.stderr.setEncoding("utf8").on("data", (d) => (out = (out + d).slice(-20000)));
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig)));
  const logs = () => out.slice(-4000);
  const value = await Promise.race([
    waitFor(what, () => (ready ? out.match(ready)?.[1] : true), { timeoutMs, intervalMs: 20 }),
    exited.then((code) => {
      throw new Error(`${what}: exited (${code}) before it was ready:\n${logs()}`);
    }),
  ]);
  return { child, pid: child.pid, value, logs, stop: () => stopChild(child, { graceMs: 5000 }) };
}

/** The environment of a Node app: ours without INNGEST_*, STEPDESK_* or PORT, plus `extra`. */
function appEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("INNGEST_") && !k.startsWith("STEPDESK_") && !k.startsWith("RESTATE_") && k !== "PORT") env[k] = v;
  }
  return { ...env, PORT: "0", ...extra };
}

function requireInstalled() {
  if (!existsSync(path.join(HERE, "node_modules", "inngest", "package.json"))) {
    throw new Error(`the benchmark's packages are not installed (${HERE}/node_modules): run \`make deps-bench\``);
  }
}

/**
 * Starts the Inngest app against the executor at `devUrl`; `notify` makes it tell us, over
 * IPC, when a run's body has finished. Resolves with `{url, pid, stats(), onDone, ...}`.
 */
async function startInngestApp(devUrl, { notify = false } = {}) {
  const app = await startChild("the Inngest app", process.execPath, [path.join(HERE, "inngest-app.mjs")], {
    cwd: HERE,
    env: appEnv({ INNGEST_DEV: devUrl, SDKBENCH_NOTIFY: notify ? "1" : "0" }),
    ready: /sdkbench listening on (http:\/\/\S+)/,
    ipc: true,
  });
  const waiters = new Map();
  const statWaiters = new Map();
  let statSeq = 0;
  const started = new Map();
  app.child.on("message", (m) => {
    if (m.started !== undefined) {
      started.set(m.started, performance.now());
    } else if (m.done !== undefined) {
      const w = waiters.get(m.done);
      if (w) {
        waiters.delete(m.done);
        w(m.runId);
      }
    } else if (m.stats) {
      statWaiters.get(m.id)?.(m.stats);
      statWaiters.delete(m.id);
    }
  });
  return {
    ...app,
    url: app.value,
    /** Resolves with the run id when the body of the run tagged `tag` has finished. */
    done(tag) {
      return new Promise((resolve) => waiters.set(tag, resolve));
    },
    forget(tag) {
      waiters.delete(tag);
      started.delete(tag);
    },
    /** When (performance.now()) the first step of the run tagged `tag` ran; forgets it. */
    startedAt(tag) {
      const t = started.get(tag);
      started.delete(tag);
      return t;
    },
    stats() {
      const id = ++statSeq;
      return new Promise((resolve) => {
        statWaiters.set(id, resolve);
        app.child.send({ stats: id });
      });
    },
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// The drivers' HTTP client: node:http over kept-alive connections, lighter than fetch (undici)
// on this process's CPU, which shares the cores with the systems measured.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One request; resolves with `{status, body}` (the body parsed as JSON when it is JSON). */
function request(method, url, json) {
  return new Promise((resolve, reject) => {
    const data = json === undefined ? null : Buffer.from(JSON.stringify(json));
    const req = http.request(
      url,
      { method, agent, headers: data ? { "content-type": "application/json", "content-length": data.length } : {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            // not JSON: kept as text for the error message
          }
          resolve({ status: res.statusCode, body });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** What every run of the workflow returns, in all three systems. */
function checkOutput(out, tag, where) {
  const ok = out && out.tag === tag && out.a?.value === 5 && out.b?.value === 10 && out.c?.value === 13;
  if (!ok) throw new Error(`${where}: run ${tag} returned ${JSON.stringify(out)}`);
}

// ---- The floor: a stand-in executor that does no work -----------------------------------

/**
 * The stand-in's API side: the SDK posts its checkpoints here (`POST /v1/checkpoint/{runId}/async`),
 * answered `200 {}` after parsing; anything else is counted and answered 404.
 */
async function startStandInApi() {
  const counts = {};
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const key = `${req.method} ${req.url.replace(/\/v1\/checkpoint\/[^/]+\//, "/v1/checkpoint/{runId}/").replace(/\?.*/, "")}`;
      counts[key] = (counts[key] ?? 0) + 1;
      if (req.method === "POST" && /^\/v1\/checkpoint\/[^/]+\/async$/.test(req.url)) {
        JSON.parse(Buffer.concat(chunks).toString("utf8"));
        res.writeHead(200, { "content-type": "application/json" });
        return res.end("{}");
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `no ${req.method} ${req.url} here` }));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, counts, close: () => new Promise((r) => server.close(r)) };
}

const FN_UUIDS = { checkpoint: randomUUID(), classic: randomUUID() };
const fnSlug = (mode) => (mode === "checkpoint" ? "three-steps" : "three-steps-classic");

/**
 * One run through the call protocol, as an executor would: a call request; each `206` answer's
 * `StepRun` ops go into the memo (in memory) and the next request carries them; `200` (or a
 * `RunComplete` op) ends the run. With `checkpoint`, the ctx carries `fn_id` and `qi_id`, which
 * turns the SDK's checkpointing on.
 */
/** The end of a floor run: its output checked; what the app told us of it (it tells any
 * executor's runs alike, see startInngestApp) forgotten. */
function floorDone(app, out, tag) {
  checkOutput(out, tag, "floor");
  app.forget(tag);
}

async function floorRun(app, mode, tag) {
  const runId = `01SDKBENCH${createHash("sha1").update(tag).digest("hex").slice(0, 16).toUpperCase()}`;
  const event = { name: `sdkbench/${fnSlug(mode)}`, data: { tag, start: 5 }, id: runId, ts: Date.now(), user: {} };
  const steps = {};
  const stack = [];
  const url = `${app.url}?fnId=sdkbench-${fnSlug(mode)}&stepId=step`;
  for (let i = 0; i < 10; i++) {
    const ctx = {
      attempt: 0,
      disable_immediate_execution: false,
      env: "",
      max_attempts: 4,
      run_id: runId,
      stack: { current: stack.length, stack: [...stack] },
      step_id: "step",
      use_api: false,
    };
    if (mode === "checkpoint") Object.assign(ctx, { fn_id: FN_UUIDS[mode], qi_id: `${runId}-${i}`, request_id: `${runId}-${i}`, generation_id: 0 });
    const body = { ctx, event, events: [event], steps, use_api: false, version: -1 };
    const res = await request("POST", url, body);
    const out = res.body;
    if (res.status === 200) return floorDone(app, out, tag);
    if (res.status !== 206) throw new Error(`floor: call request answered ${res.status}: ${JSON.stringify(out)}`);
    for (const op of Array.isArray(out) ? out : [out]) {
      if (op.op === "RunComplete") return floorDone(app, op.data, tag);
      if (op.op !== "StepRun") throw new Error(`floor: unexpected op ${JSON.stringify(op)}`);
      steps[op.id] = { data: op.data };
      stack.push(op.id);
    }
  }
  throw new Error(`floor: run ${tag} did not end in 10 call requests`);
}

// ---- Stepdesk ----------------------------------------------------------------------------

/** The release binary, copied so that a concurrent build cannot change it under the bench. */
function prepareBinary() {
  return copyBinary(opts.bin, "stepdesk-sdk-bench-bin-");
}

async function startStepdesk(bin) {
  const port = await freePort();
  const dataDir = tempDir("stepdesk-sdk-bench-data-");
  const app = await startInngestApp(`http://127.0.0.1:${port}`, { notify: true });
  const env = cleanEnv({ STEPDESK_LOG: "warn", STEPDESK_KEYCHAIN_SERVICE: `dev.stepdesk.sdkbench.${path.basename(dataDir)}` });
  const sd = await startChild(
    "`stepdesk dev`",
    bin,
    ["dev", "--no-discovery", "--no-poll", "--port", String(port), "--data-dir", dataDir, "-u", app.url],
    { env, ready: /Stepdesk is listening on (http:\/\/\S+)/ },
  );
  const url = sd.value;
  await waitFor("the app's functions in Stepdesk", async () => {
    const res = await fetch(`${url}/api/admin/functions`);
    const fns = await res.json();
    const ids = new Set((Array.isArray(fns) ? fns : fns.functions ?? []).map((f) => f.id));
    return ids.has("sdkbench-three-steps") && ids.has("sdkbench-three-steps-classic");
  }, { timeoutMs: 30000, intervalMs: 50 });
  return {
    url,
    app,
    pid: sd.pid,
    logs: () => `stepdesk:\n${sd.logs()}\napp:\n${app.logs()}`,
    stop: async () => {
      await sd.stop();
      await app.stop();
      removeDir(dataDir);
    },
  };
}

/**
 * One run in Stepdesk: the trigger event through the event API; the app says when the body has
 * finished (with the run id); then, one at a time, the run's status is read, at once and then
 * every millisecond, until Stepdesk has recorded the end (the app's answer is still on its way
 * when it tells us).
 *
 * With `settle` (the phases with several runs in flight), the run's slot is freed as soon as
 * the app says the body has finished, and the run goes to `settle.pending` instead: the phase
 * ends only once Stepdesk has recorded every such run's end ([`settleRuns`], one read per run),
 * and a run's latency is taken from the `ended_at` Stepdesk recorded. Polling 16 runs every
 * millisecond would cost Stepdesk more CPU in reads than in runs, and fight the runs for the
 * 2 cores.
 */
async function stepdeskRun(sd, mode, tag, counters, settle = null) {
  const t0 = performance.now();
  const done = sd.app.done(tag);
  const res = await request("POST", `${sd.url}/e/sdkbench`, { name: `sdkbench/${fnSlug(mode)}`, data: { tag, start: 5 } });
  const sent = res.body;
  if (res.status !== 200) {
    sd.app.forget(tag);
    throw new Error(`POST /e: ${res.status} ${JSON.stringify(sent)}`);
  }
  const runId = await withTimeout(done, 30000, `run ${tag} (event ${sent.ids?.[0]}) in the app\n${sd.logs()}`);
  const tDone = performance.now();
  const tStart = sd.app.startedAt(tag);
  if (settle) {
    settle.pending.push({ runId, tag, t0, tStart, tDone });
    return;
  }
  for (let i = 0; ; i++) {
    counters.polls += 1;
    const run = (await request("GET", `${sd.url}/v1/runs/${runId}`)).body?.data;
    if (run?.status === "Completed") {
      checkOutput(run.output, tag, "stepdesk");
      const tEnd = performance.now();
      counters.start.push(tStart - t0);
      counters.body.push(tDone - tStart);
      counters.finish.push(tEnd - tDone);
      return tEnd - t0;
    }
    if (run && run.status !== "Running" && run.status !== "Scheduled") throw new Error(`stepdesk: run ${runId}: ${JSON.stringify(run)}`);
    if (i > 30000) throw new Error(`stepdesk: run ${runId} still ${run?.status}\n${sd.logs()}`);
    // Every millisecond (Node's timer resolution): reading back to back would cost Stepdesk
    // more CPU in reads than in runs while the app's answer is on its way.
    await sleep(1);
  }
}

/**
 * The end of a phase run with `settle`: reads each pending run once (again after a
 * millisecond while Stepdesk has not yet recorded its end), checks its output, and returns
 * the runs' latencies, from before the event's request to the `ended_at` Stepdesk recorded
 * (milliseconds, as Stepdesk keeps it).
 */
async function settleRuns(sd, settle, counters) {
  const lat = [];
  for (const p of settle.pending.splice(0)) {
    for (let i = 0; ; i++) {
      counters.polls += 1;
      const run = (await request("GET", `${sd.url}/v1/runs/${p.runId}`)).body?.data;
      if (run?.status === "Completed") {
        checkOutput(run.output, p.tag, "stepdesk");
        const ended = Date.parse(run.ended_at) - performance.timeOrigin;
        if (!Number.isFinite(ended)) throw new Error(`stepdesk: run ${p.runId}: no ended_at: ${JSON.stringify(run)}`);
        counters.start.push(p.tStart - p.t0);
        counters.body.push(p.tDone - p.tStart);
        // Stepdesk's clock has millisecond steps: an end within the same millisecond as the
        // app's message reads as 0, not as a negative time.
        counters.finish.push(Math.max(0, ended - p.tDone));
        lat.push(Math.max(ended, p.tDone) - p.t0);
        break;
      }
      if (run && run.status !== "Running" && run.status !== "Scheduled") throw new Error(`stepdesk: run ${p.runId}: ${JSON.stringify(run)}`);
      if (i > 30000) throw new Error(`stepdesk: run ${p.runId} still ${run?.status}\n${sd.logs()}`);
      await sleep(1);
    }
  }
  return lat;
}

// ---- Restate -------------------------------------------------------------------------------

function restateBinary() {
  const req = createRequire(path.join(HERE, "package.json"));
  const pkg = `@restatedev/restate-server-${os.platform()}-${os.arch()}`;
  try {
    return req.resolve(`${pkg}/bin/restate-server`);
  } catch {
    throw new Error(`no Restate server binary for ${os.platform()}-${os.arch()} (${pkg}) in ${HERE}/node_modules: run \`make deps-bench\``);
  }
}

async function startRestate() {
  const dir = tempDir("stepdesk-sdk-bench-restate-");
  const [fabric, admin, ingress] = [await freePort(), await freePort(), await freePort()];
  const env = {
    ...appEnv({}),
    RESTATE_DISABLE_TELEMETRY: "true",
    RESTATE_LISTEN_MODE: "tcp",
    RESTATE_BIND_ADDRESS: `127.0.0.1:${fabric}`,
    RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${admin}`,
    RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingress}`,
    RESTATE_ADMIN__DISABLE_WEB_UI: "true",
    RESTATE_LOG_DISABLE_ANSI_CODES: "true",
  };
  const server = await startChild("the Restate server", restateBinary(), ["--no-logo", "--base-dir", dir, "--node-name", "sdkbench"], { env, cwd: dir });
  const adminUrl = `http://127.0.0.1:${admin}`;
  const ingressUrl = `http://127.0.0.1:${ingress}`;
  await waitFor("the Restate server to be healthy", async () => {
    const [a, i] = await Promise.all([fetch(`${adminUrl}/health`), fetch(`${ingressUrl}/restate/health`)]);
    return a.ok && i.ok;
  }, { timeoutMs: 60000, intervalMs: 100 });
  const app = await startChild("the Restate app", process.execPath, [path.join(HERE, "restate-app.mjs")], {
    cwd: HERE,
    env: appEnv({ RESTATE_LOGGING: "WARN" }),
    ready: /restate-app listening on (http:\/\/\S+)/,
    ipc: true,
  });
  const reg = await fetch(`${adminUrl}/deployments`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ uri: app.value }),
  });
  if (!reg.ok) throw new Error(`Restate: registering ${app.value}: ${reg.status} ${await reg.text()}`);
  const version = (await (await fetch(`${adminUrl}/version`)).json().catch(() => ({}))).version;
  return {
    ingressUrl,
    version,
    pid: server.pid,
    appPid: app.pid,
    logs: () => `restate-server:\n${server.logs()}\nrestate-app:\n${app.logs()}`,
    stop: async () => {
      await app.stop();
      await server.stop();
      removeDir(dir);
    },
  };
}

/** One run in Restate: the ingress answers once the invocation has ended, with its output. */
async function restateRun(rs, tag) {
  const res = await request("POST", `${rs.ingressUrl}/Bench/run`, { tag, start: 5 });
  if (res.status !== 200) throw new Error(`Restate: /Bench/run answered ${res.status}: ${JSON.stringify(res.body)}`);
  checkOutput(res.body, tag, "restate");
}

// ---- Phases --------------------------------------------------------------------------------

let tagSeq = 0;
const newTag = (what) => `${what}-${++tagSeq}`;

/**
 * Runs `n` runs with `concurrency` in flight (each worker starts its next run when its last
 * one has ended), timing each run and the whole, and reading the CPU of `pids` before and after.
 */
async function phase(label, { n, concurrency, runOne, settle, pids, threadsOf }) {
  const before = snapshot(pids, threadsOf);
  let lat = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      const t = performance.now();
      const took = await runOne(concurrency);
      lat.push(typeof took === "number" ? took : performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  // A target that frees a run's slot before the run has ended (see stepdeskRun) waits for
  // them here, inside the phase's time and CPU, and says what their latencies were.
  const settled = settle ? await settle(concurrency) : null;
  if (settled) lat = settled;
  const after = snapshot(pids, threadsOf);
  const wallMs = after.t - before.t;
  const cpu = {};
  for (const name of Object.keys(pids)) cpu[name] = after.cpu[name] - before.cpu[name];
  const selfMs = (after.self.user + after.self.system - before.self.user - before.self.system) / 1000;
  const r = {
    label,
    n,
    concurrency,
    wallMs,
    runsPerSec: (n * 1000) / wallMs,
    p50: pct(lat, 50),
    p95: pct(lat, 95),
    cpu,
    cpuPerRun: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / n])),
    benchCpuMs: selfMs,
    // Threads that ended during the phase are missing from `after`: their time is left out.
    lat,
    threads: !!after.threads,
    sysMs: after.sys === null ? null : after.sys - before.sys,
    threadsMs: after.threads
      ? Object.fromEntries(Object.entries(after.threads).map(([k, v]) => [k, Math.max(0, v - (before.threads[k] ?? 0))]))
      : null,
    machineCores: (after.machine - before.machine) / wallMs,
    oursCores: (Object.values(cpu).reduce((a, b) => a + b, 0) + selfMs) / wallMs,
  };
  log(
    `  ${label}: ${fmt(r.runsPerSec, 1)} runs/s, p50 ${ms(r.p50)}, p95 ${ms(r.p95)}; CPU/run ${Object.entries(r.cpuPerRun)
      .map(([k, v]) => `${k} ${ms(v)}`)
      .join(", ")}; machine ${fmt(r.machineCores, 2)} cores busy (ours ${fmt(r.oursCores, 2)})`,
  );
  return r;
}

/**
 * Sums the rounds of one phase: runs/s over the rounds' total time (and each round's, for the
 * spread), latencies pooled, CPU and counters added up.
 */
function merge(parts) {
  const n = parts.reduce((a, p) => a + p.n, 0);
  const wallMs = parts.reduce((a, p) => a + p.wallMs, 0);
  const sum = (f) => parts.reduce((a, p) => a + f(p), 0);
  const addUp = (objs) => {
    const out = {};
    for (const o of objs) {
      for (const [k, v] of Object.entries(o ?? {})) {
        if (typeof v === "number") out[k] = (out[k] ?? 0) + v;
        else if (Array.isArray(v)) out[k] = [...(out[k] ?? []), ...v];
        else out[k] = addUp([out[k], v]);
      }
    }
    return out;
  };
  const cpu = addUp(parts.map((p) => p.cpu));
  const lat = parts.flatMap((p) => p.lat);
  return {
    n,
    concurrency: parts[0].concurrency,
    wallMs,
    runsPerSec: (n * 1000) / wallMs,
    roundsRunsPerSec: parts.map((p) => p.runsPerSec),
    p50: pct(lat, 50),
    p95: pct(lat, 95),
    cpu,
    cpuPerRun: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / n])),
    benchCpuMs: sum((p) => p.benchCpuMs),
    sysPerRun: parts[0].sysMs === null ? null : sum((p) => p.sysMs) / n,
    threads: parts[0].threads ? Object.fromEntries(Object.entries(addUp(parts.map((p) => p.threadsMs))).map(([k, v]) => [k, v / n])) : null,
    machineCores: sum((p) => p.machineCores * p.wallMs) / wallMs,
    oursCores: sum((p) => p.oursCores * p.wallMs) / wallMs,
    extra: parts[0].extra ? addUp(parts.map((p) => p.extra)) : null,
  };
}

/**
 * Measures every target (a system in one mode) in `rounds` rounds, the targets taking turns in
 * each round, so that a burst of other work on the machine falls on all of them alike rather
 * than on one: a warm-up each first, then per round a sequential and a concurrent phase each.
 */
async function measureAll(targets, rounds) {
  for (const t of targets) {
    log(`${t.label}: warm-up (${N_WARM} runs)`);
    await phase(`${t.label} warm-up`, { n: N_WARM, concurrency: Math.min(CONCURRENCY, N_WARM), runOne: t.runOne, settle: t.settle, pids: t.pids });
  }
  const parts = new Map(targets.map((t) => [t, { seq: [], conc: [] }]));
  for (let round = 1; round <= rounds; round++) {
    log(`round ${round} of ${rounds}`);
    // Each round starts with another target, so that no system or mode always goes first
    // (right after the warm-ups) or always follows the same one.
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]);
    for (const t of order) {
      for (const [key, n, c] of [["seq", N_SEQ, 1], ["conc", N_CONC, CONCURRENCY]]) {
        const extra = t.before ? await t.before() : null;
        const p = await phase(`${t.label} ${key === "seq" ? "sequential" : `${c} in flight`}`, {
          n,
          concurrency: c,
          runOne: t.runOne,
          settle: t.settle,
          pids: t.pids,
          threadsOf: t.threadsOf,
        });
        if (t.after) p.extra = await t.after(extra);
        parts.get(t)[key].push(p);
      }
    }
  }
  for (const t of targets) t.store({ seq: merge(parts.get(t).seq), conc: merge(parts.get(t).conc) });
}

/** What the Inngest app saw between two `stats()` readings. */
function statsDiff(a, b) {
  const diff = (x = {}, y = {}) => {
    const out = {};
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
      const d = (y[k] ?? 0) - (x[k] ?? 0);
      if (d) out[k] = d;
    }
    return out;
  };
  return {
    calls: b.calls - a.calls,
    callBytes: b.callBytes - a.callBytes,
    connections: b.connections - a.connections,
    byStatus: diff(a.callsByStatus, b.callsByStatus),
    otherRequests: diff(a.otherRequests, b.otherRequests),
    outbound: diff(a.outbound, b.outbound),
  };
}

// ---- The systems ---------------------------------------------------------------------------

/** The bare SDK's targets: the stand-in executor and its app, one target per mode. */
async function floorTargets(results, cleanup) {
  const api = await startStandInApi();
  cleanup.push(() => api.close());
  // Told of each run over IPC like Stepdesk's, so that the app does the same work under both.
  const app = await startInngestApp(api.url, { notify: true });
  cleanup.push(() => app.stop());
  return modes.map((mode) => {
    let apiBefore;
    return {
      label: `bare SDK, checkpointing ${mode === "checkpoint" ? "on" : "off"}`,
      runOne: () => floorRun(app, mode, newTag(`floor-${mode}`)),
      pids: { app: app.pid },
      before: async () => {
        apiBefore = { ...api.counts };
        return app.stats();
      },
      after: async (statsBefore) => ({
        app: statsDiff(statsBefore, await app.stats()),
        standIn: statsDiff({ outbound: apiBefore }, { outbound: { ...api.counts } }).outbound,
      }),
      store: (x) => (results.floor[mode] = x),
    };
  });
}

async function stepdeskTargets(results, cleanup, BIN) {
  const sd = await startStepdesk(BIN.bin);
  cleanup.push(() => sd.stop());
  results.sdServer = sd;
  return modes.map((mode) => {
    const counters = { polls: 0, start: [], body: [], finish: [] };
    // Runs whose slot was freed before their end was read (phases with several in flight).
    const pending = { pending: [] };
    let pollsBefore = 0;
    return {
      label: `Stepdesk, checkpointing ${mode === "checkpoint" ? "on" : "off"}`,
      runOne: (concurrency = 1) => stepdeskRun(sd, mode, newTag(`sd-${mode}`), counters, concurrency > 1 ? pending : null),
      settle: (concurrency) => (concurrency > 1 ? settleRuns(sd, pending, counters) : null),
      pids: { stepdesk: sd.pid, app: sd.app.pid },
      threadsOf: "stepdesk",
      before: async () => {
        pollsBefore = counters.polls;
        for (const k of ["start", "body", "finish"]) counters[k].length = 0;
        return sd.app.stats();
      },
      after: async (statsBefore) => ({
        app: statsDiff(statsBefore, await sd.app.stats()),
        polls: counters.polls - pollsBefore,
        start: [...counters.start],
        body: [...counters.body],
        finish: [...counters.finish],
      }),
      store: (x) => (results.stepdesk[mode] = x),
    };
  });
}

/** What one status read costs Stepdesk, to tell the bench's own reads apart from the runs. */
async function pollCost(results, sd) {
  // Any run of the bench's functions (only one mode may have run: `--modes`).
  let runId;
  for (const fn of ["sdkbench-three-steps-classic", "sdkbench-three-steps"]) {
    const runs = await (await fetch(`${sd.url}/api/admin/runs?function_id=${fn}&limit=1`)).json();
    runId ??= runs.runs?.[0]?.id;
  }
  if (!runId) throw new Error("pollCost: no run of the bench's functions to read");
  const c0 = cpuMs(sd.pid);
  const t0 = performance.now();
  for (let i = 0; i < N_POLL_CAL; i++) await request("GET", `${sd.url}/v1/runs/${runId}`);
  results.pollCost = { n: N_POLL_CAL, cpuMs: (cpuMs(sd.pid) - c0) / N_POLL_CAL, wallMs: (performance.now() - t0) / N_POLL_CAL };
  log(`a status read: ${ms(results.pollCost.cpuMs)} of Stepdesk's CPU, ${ms(results.pollCost.wallMs)} round trip`);
}

async function restateTargets(results, cleanup) {
  const rs = await startRestate();
  cleanup.push(() => rs.stop());
  results.restateVersion = rs.version;
  // The new deployment reaches the ingress shortly after it is registered.
  await waitFor("Restate's ingress to know Bench/run", async () => {
    await restateRun(rs, newTag("rs-probe"));
    return true;
  }, { timeoutMs: 30000, intervalMs: 100 });
  return [
    {
      label: "Restate",
      runOne: () => restateRun(rs, newTag("rs")),
      pids: { server: rs.pid, app: rs.appPid },
      store: (x) => (results.restate = x),
    },
  ];
}

// ---- The report ------------------------------------------------------------------------------


const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(" / ");

function installedVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(HERE, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "unknown";
  }
}

const modeName = (m) => (m === "checkpoint" ? "checkpointing on (v4 default)" : "checkpointing off");

function report(r) {
  const L = [];
  const targets = [];
  const target = (what, measured, met) => targets.push(`| ${what} | ${measured} | ${met === null ? "not measured" : met ? "met" : "**not met**"} |`);
  const sdModes = modes.filter((m) => r.stepdesk[m]);
  const rs = r.restate;
  const pollCpu = r.pollCost?.cpuMs ?? 0;
  const sdOwn = (x) => x.cpuPerRun.stepdesk - (x.extra.polls / x.n) * pollCpu;

  for (const m of sdModes) {
    const sd = r.stepdesk[m];
    if (rs) {
      const ratio = sd.conc.runsPerSec / rs.conc.runsPerSec;
      target(
        `Throughput, ${CONCURRENCY} runs in flight, ${modeName(m)}: at least 1.0× Restate's`,
        `${fmt(sd.conc.runsPerSec, 1)} / ${fmt(rs.conc.runsPerSec, 1)} runs/s = **${fmt(ratio, 2)}×**`,
        ratio >= 1,
      );
    } else target(`Throughput ${modeName(m)}: at least 1.0× Restate's`, "–", null);
    const share = sdOwn(sd.conc) / sd.conc.cpuPerRun.app;
    target(
      `Stepdesk's own CPU per run at most 10% of the SDK app's, ${modeName(m)} (${CONCURRENCY} in flight)`,
      `${ms(sdOwn(sd.conc))} / ${ms(sd.conc.cpuPerRun.app)} = **${pctf(share)}**; ${pctf(sd.conc.cpuPerRun.stepdesk / sd.conc.cpuPerRun.app)} with the bench's status reads` +
        (sd.conc.sysPerRun === null ? "" : `; its time in the kernel alone is ${ms(sd.conc.sysPerRun)} = ${pctf(sd.conc.sysPerRun / sd.conc.cpuPerRun.app)}`),
      share <= 0.1,
    );
  }

  L.push("## SDK apps: Stepdesk, Restate and the bare SDK on a 3-step workflow (issue 8, section 5)", "");
  L.push(
    "Generated by `tests/bench/sdk/bench.mjs` in one run; do not edit by hand. Every figure in this section comes from the run described here; rerun the command to reproduce it. The ratios compare processes measured in this one run on this machine, the systems taking turns: they are in-process comparisons, not absolute figures, and other work on the machine moves them (the last column of the results says how much ran beside the benchmark).",
    "",
  );
  L.push("| | |", "|---|---|");
  L.push(`| Command | \`${COMMAND}\` (\`make bench\` runs it) |`);
  L.push(`| Date | ${r.date} |`);
  L.push(`| Machine | ${machine()} |`);
  L.push(`| Commit | \`${r.commit}\`${r.dirty ? " (with uncommitted changes)" : ""} |`);
  if (r.bin) L.push(`| Stepdesk | ${r.bin.version}, release build \`${r.bin.src}\`, copied before the run (sha256 \`${r.bin.sha.slice(0, 16)}…\`) |`);
  L.push(
    `| Packages | Node ${process.version} (\`${process.execPath}\`); npm \`inngest\` ${installedVersion("inngest")}${r.sdkTestLock && r.sdkTestLock !== installedVersion("inngest") ? ` (**tests/sdk/js pins ${r.sdkTestLock}**)` : " (as tests/sdk/js pins)"}; \`@restatedev/restate-sdk\` ${installedVersion("@restatedev/restate-sdk")} (with a \`Promise.withResolvers\` polyfill on Node 20); \`@restatedev/restate-server\` ${installedVersion("@restatedev/restate-server")} (server ${r.restateVersion ?? "not run"}); all from tests/bench/sdk/package-lock.json |`,
  );
  L.push(`| Network | ${IN_NETNS ? "a private network namespace with only loopback (`unshare --net`): nothing could leave the machine" : "the machine's own (no private namespace could be made); every request went to 127.0.0.1"} |`);
  L.push(`| Load average at start (1/5/15 min) | ${r.loadStart} |`);
  L.push(`| Load average at end (1/5/15 min) | ${r.loadEnd} |`);
  L.push(`| Total bench time | ${fmt(r.seconds)} s |`);
  L.push(
    `| Runs | per system and mode: a warm-up of ${N_WARM} (not reported), then ${ROUNDS} rounds of ${N_SEQ} one at a time and ${N_CONC} with ${CONCURRENCY} in flight; all systems up throughout, taking turns within each round, each round starting with the next one |`,
  );
  L.push("");
  // How busy the rest of the machine was during the measured phases (time-weighted).
  const measured = [...Object.values(r.floor), ...Object.values(r.stepdesk), ...(rs ? [rs] : [])].flatMap((x) => [x.seq, x.conc]);
  const totalMs = measured.reduce((a, p) => a + p.wallMs, 0);
  const others = measured.reduce((a, p) => a + Math.max(0, p.machineCores - p.oursCores) * p.wallMs, 0) / totalMs;
  L.push(
    others > 0.1
      ? `**A noisy run:** other processes kept ${fmt(others, 2)} of the ${os.cpus().length} cores busy on average while the phases were measured, so every figure here is lower and more spread than on a quiet machine, and the ratios are rough. Rerun on a quiet machine for figures to compare with.`
      : `A quiet run: other processes kept ${fmt(others, 2)} of the ${os.cpus().length} cores busy on average while the phases were measured.`,
    "",
  );
  L.push("### Targets", "", "| Target (issue 8) | Measured | |", "|---|---|---|", ...targets, "");

  L.push("### The workflow and how each system runs it", "");
  L.push(
    "Three steps, each using the previous one's output (`{value: start}`, `×2`, `+3`), returning them with the run's tag; every run's output is checked. The Inngest app (tests/bench/sdk/inngest-app.mjs, `inngest/node` on `node:http`) serves it twice: `three-steps` with the SDK's defaults and `three-steps-classic` with `checkpointing: false`. The Restate app (restate-app.mjs) has the same body with `ctx.run` per step, served over HTTP/2.",
    "",
    `- **Bare SDK (floor).** A stand-in executor in the bench process sends the call requests (\`POST /api/inngest?fnId=…&stepId=step\`) with the memo built in memory, and nothing else: no storage, no queue. With checkpointing on, its call requests carry \`ctx.fn_id\` and \`qi_id\` and it answers the SDK's \`POST /v1/checkpoint/{runId}/async\` with \`200 {}\`. Its CPU is the bench process's, not counted here; the app's CPU per run is the SDK's own cost.`,
    `- **Stepdesk.** \`stepdesk dev --no-discovery --no-poll --port P --data-dir TMP -u APP\` (\`STEPDESK_LOG=warn\`), the release binary, SQLite on the machine's disk with \`synchronous=FULL\`. A run: \`POST /e/sdkbench\` with the trigger event; the app tells the bench over IPC when step \`a\` runs and when the body has finished (two small messages per run, counted in the app's CPU; the second one carries the run id); one at a time, the bench then reads \`GET /v1/runs/{id}\`, at once and then every millisecond, until Stepdesk says \`Completed\` (and checks the output), and latency is from before the event's request to that read. With ${CONCURRENCY} in flight, reading every run every millisecond would cost Stepdesk more CPU in reads than in runs: there a run's slot goes to the next run when the app says the body has finished, the phase ends only when Stepdesk has recorded every run's end (one read per run, output checked, inside the phase's time and CPU), and latency is from before the event's request to the \`ended_at\` Stepdesk recorded (1 ms steps).`,
    `- **Restate.** The \`restate-server\` binary from npm, default configuration except addresses (127.0.0.1, TCP only), telemetry and the web UI off; its data in a temporary directory on the same disk. The app is registered with \`POST /deployments\`; a run is \`POST /Bench/run\` on the ingress, which answers when the invocation has ended.`,
    "",
    "CPU is `utime + stime` from `/proc/PID/stat` of each process before and after a phase, divided by the runs (resolution 1/CLK_TCK = " +
      `${fmt(1000 / CLK_TCK)} ms per process per phase). *Machine* is every core's busy time from \`/proc/stat\` over the phase, in cores; *ours* adds this benchmark's processes (the systems, the apps and the bench itself): the difference is what else ran on the machine meanwhile.`,
    "",
  );

  const sysRows = [];
  const row = (name, mode, x, server, serverCpu, appCpu, calls, checkpoints) => {
    for (const [key, what] of [["seq", "one at a time"], ["conc", `${CONCURRENCY} in flight`]]) {
      const p = x[key];
      sysRows.push(
        `| ${name} | ${mode} | ${what} | ${fmt(p.n)} | **${fmt(p.runsPerSec, 1)}** (${p.roundsRunsPerSec.map((x) => fmt(x, 0)).join(", ")}) | ${ms(p.p50)} | ${ms(p.p95)} | ${serverCpu ? ms(serverCpu(p)) : "–"} | ${ms(appCpu(p))} | ${ms(p.benchCpuMs / p.n)} | ${calls ? calls(p) : "–"} | ${checkpoints ? checkpoints(p) : "–"} | ${fmt(p.machineCores, 2)} / ${fmt(p.oursCores, 2)} |`,
      );
    }
  };
  const perRun = (n, runs) => fmt(n / runs, 2);
  const cpCount = (o = {}) => Object.entries(o).filter(([k]) => k.includes("/v1/checkpoint/")).reduce((a, [, v]) => a + v, 0);
  for (const m of modes) {
    if (r.floor[m]) {
      row("Bare SDK (stand-in)", modeName(m), r.floor[m], null, null, (p) => p.cpuPerRun.app, (p) => perRun(p.extra.app.calls, p.n), (p) => perRun(cpCount(p.extra.standIn), p.n));
    }
  }
  for (const m of modes) {
    if (r.stepdesk[m]) {
      row(
        "Stepdesk",
        modeName(m),
        r.stepdesk[m],
        "stepdesk",
        (p) => p.cpuPerRun.stepdesk,
        (p) => p.cpuPerRun.app,
        (p) => perRun(p.extra.app.calls, p.n),
        (p) => perRun(cpCount(p.extra.app.outbound), p.n),
      );
    }
  }
  if (rs) row("Restate", "–", rs, "server", (p) => p.cpuPerRun.server, (p) => p.cpuPerRun.app, null, null);

  L.push("### Results", "");
  L.push(
    "| System | SDK mode | Runs | Count | Runs/s (each round) | Latency p50 | p95 | Server CPU per run | App CPU per run | Bench CPU per run | Call requests per run (seen by the app) | Checkpoint posts per run | Machine / ours (cores busy) |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...sysRows,
    "",
    "*Bench CPU* is this script's (the driver: sending the triggers and reading the results; for the bare SDK also the stand-in executor). With 16 in flight every process shares the 2 cores, so runs/s × (server + app + bench CPU per run) stays under the cores left by the rest of the machine: a system whose app needs more CPU per run gets fewer runs per second whatever its server does.",
    "",
  );
  const sdThreads = sdModes.filter((m) => r.stepdesk[m].conc.threads);
  if (sdThreads.length) {
    const names = [...new Set(sdThreads.flatMap((m) => Object.keys(r.stepdesk[m].conc.threads)))]
      .filter((k) => sdThreads.some((m) => r.stepdesk[m].conc.threads[k] >= 0.005))
      .sort((a, b) => r.stepdesk[sdThreads[0]].conc.threads[b] - r.stepdesk[sdThreads[0]].conc.threads[a]);
    L.push("Where Stepdesk's CPU per run went, by thread name (16 in flight; `/proc/PID/task/*/stat`, threads alive at the phase's end):", "");
    L.push("| Thread | " + sdThreads.map(modeName).join(" | ") + " |", "|---|" + sdThreads.map(() => "---:|").join(""));
    for (const k of names) L.push(`| \`${k}\` | ${sdThreads.map((m) => ms(r.stepdesk[m].conc.threads[k] ?? 0)).join(" | ")} |`);
    L.push(
      `| The whole process: in the kernel (\`stime\`: system calls, the network, fsync, waking threads) | ${sdThreads.map((m) => `${ms(r.stepdesk[m].conc.sysPerRun)} (${pctf(r.stepdesk[m].conc.sysPerRun / r.stepdesk[m].conc.cpuPerRun.stepdesk)})`).join(" | ")} |`,
    );
    L.push("");
  }

  if (sdModes.length) {
    if (sdModes.length && r.stepdesk[sdModes[0]].seq.extra?.start?.length) {
    L.push(
      "Where a Stepdesk run's time goes (the app tells the bench over IPC when step `a` runs and when the body has finished; p50 / p95):",
      "",
      "| | " + sdModes.flatMap((m) => [`${modeName(m)}, one at a time`, `${modeName(m)}, ${CONCURRENCY} in flight`]).join(" | ") + " |",
      "|---|" + sdModes.flatMap(() => ["---:|", "---:|"]).join(""),
    );
    const cell = (xs) => `${ms(pct(xs, 50))} / ${ms(pct(xs, 95))}`;
    const brk = (label, k) => L.push(`| ${label} | ${sdModes.flatMap((m) => [cell(r.stepdesk[m].seq.extra[k]), cell(r.stepdesk[m].conc.extra[k])]).join(" | ")} |`);
    brk("`POST /e` sent → step `a` runs in the app (ingest, the run's creation, dispatch, the first call request)", "start");
    brk("step `a` runs → the body has finished (the rest of call request 1, then requests 2–4: steps `b`, `c`, the end)", "body");
    brk("the body has finished → Stepdesk has recorded the end (the last answer reaches Stepdesk, the run's end is written; one at a time: `GET /v1/runs/{id}` says `Completed`, read every ms; in flight: the run's `ended_at`)", "finish");
    L.push("");
  }

  L.push("### Ratios", "");
    L.push("| | " + sdModes.map(modeName).join(" | ") + " |", "|---|" + sdModes.map(() => "---:|").join(""));
    const line = (label, f) => L.push(`| ${label} | ${sdModes.map((m) => f(r.stepdesk[m], r.floor[m], m)).join(" | ")} |`);
    if (rs) {
      line("Stepdesk ÷ Restate throughput, one at a time", (sd) => `${fmt(sd.seq.runsPerSec / rs.seq.runsPerSec, 2)}×`);
      line(`Stepdesk ÷ Restate throughput, ${CONCURRENCY} in flight (target ≥ 1.0)`, (sd) => `**${fmt(sd.conc.runsPerSec / rs.conc.runsPerSec, 2)}×**`);
      line("Stepdesk ÷ Restate latency p50, one at a time", (sd) => `${fmt(sd.seq.p50 / rs.seq.p50, 2)}×`);
      line(`Stepdesk ÷ Restate server CPU per run, ${CONCURRENCY} in flight`, (sd) => `${fmt(sd.conc.cpuPerRun.stepdesk / rs.conc.cpuPerRun.server, 2)}×`);
    }
    if (rs) line(`For comparison: bare SDK ÷ Restate throughput, ${CONCURRENCY} in flight (what the Inngest SDK alone allows)`, (sd, fl) => (fl ? `${fmt(fl.conc.runsPerSec / rs.conc.runsPerSec, 2)}×` : "–"));
    line(`Stepdesk's CPU per run ÷ the SDK app's, ${CONCURRENCY} in flight (target ≤ 10%)`, (sd) => `**${pctf(sdOwn(sd.conc) / sd.conc.cpuPerRun.app)}** (${pctf(sd.conc.cpuPerRun.stepdesk / sd.conc.cpuPerRun.app)} with the bench's status reads)`);
    line("The same, one at a time", (sd) => `${pctf(sdOwn(sd.seq) / sd.seq.cpuPerRun.app)} (${pctf(sd.seq.cpuPerRun.stepdesk / sd.seq.cpuPerRun.app)})`);
    line(`Stepdesk ÷ bare SDK throughput, ${CONCURRENCY} in flight`, (sd, fl) => (fl ? pctf(sd.conc.runsPerSec / fl.conc.runsPerSec) : "–"));
    line("Stepdesk ÷ bare SDK latency p50, one at a time", (sd, fl) => (fl ? `${fmt(sd.seq.p50 / fl.seq.p50, 2)}×` : "–"));
    line("Stepdesk's latency p50 over the bare SDK's, one at a time: per run / per call request", (sd, fl, m) => {
      if (!fl) return "–";
      const added = sd.seq.p50 - fl.seq.p50;
      return `${ms(added)} / ${ms(added / (sd.seq.extra.app.calls / sd.seq.n))}`;
    });
    line(`The app's CPU per run under Stepdesk ÷ under the stand-in, ${CONCURRENCY} in flight`, (sd, fl) => (fl ? `${fmt(sd.conc.cpuPerRun.app / fl.conc.cpuPerRun.app, 2)}×` : "–"));
    L.push("");
    if (r.pollCost) {
      const polls = sdModes.map((m) => `${modeName(m)}: ${fmt(r.stepdesk[m].seq.extra.polls / r.stepdesk[m].seq.n, 2)} one at a time, ${fmt(r.stepdesk[m].conc.extra.polls / r.stepdesk[m].conc.n, 2)} with ${CONCURRENCY} in flight`).join("; ");
      L.push(
        `*Stepdesk's own CPU* leaves out the bench's status reads (\`GET /v1/runs/{id}\` after the app said the body had finished): reads per run ${polls}; one read costs Stepdesk ${ms(r.pollCost.cpuMs)} of CPU (${fmt(r.pollCost.n)} reads of a finished run, one after another once the phases are over, ${ms(r.pollCost.wallMs)} per round trip; under load a read may cost more, so the figure without the reads is a lower bound and the one with them an upper bound). The trigger's \`POST /e\` is counted as Stepdesk's work, as Restate's ingress call is counted as Restate's.`,
        "",
      );
    }
  }

  const notes = [];
  // Any other request the app got or the SDK sent during the phase (syncs, ...), in all.
  const otherTraffic = (app) => {
    const inbound = Object.entries(app.otherRequests ?? {}).map(([k, v]) => `${v} ${k}`);
    const outbound = Object.entries(app.outbound ?? {}).filter(([k]) => !k.includes("/v1/checkpoint/")).map(([k, v]) => `${v} to ${k}`);
    return inbound.length || outbound.length ? ` Other requests during the phase: ${[...inbound, ...outbound].join(", ")}.` : "";
  };
  for (const m of sdModes) {
    const sd = r.stepdesk[m];
    const calls = sd.conc.extra.app.calls / sd.conc.n;
    const cps = cpCount(sd.conc.extra.app.outbound) / sd.conc.n;
    const conns = (sd.seq.extra.app.connections + sd.conc.extra.app.connections) / (sd.seq.n + sd.conc.n);
    const statuses = Object.entries(sd.conc.extra.app.byStatus).map(([k, v]) => `${k}: ${fmt(v / sd.conc.n, 2)}`).join(", ");
    notes.push(
      `Stepdesk, ${modeName(m)}: the app got ${fmt(calls, 2)} call requests per run (${fmt(sd.conc.extra.app.callBytes / sd.conc.extra.app.calls)} bytes each on average; answered ${statuses} per run) over ${fmt(conns, 3)} new connections per run, and posted ${fmt(cps, 2)} checkpoints per run` +
        (m === "checkpoint" && cps === 0 ? " — Stepdesk did not offer checkpointing (no `ctx.fn_id` in its call requests), so the SDK ran one step per request as with checkpointing off." : ".") +
        otherTraffic(sd.conc.extra.app),
    );
  }
  for (const m of modes.filter((x) => r.floor[x])) {
    const fl = r.floor[m];
    const statuses = Object.entries(fl.conc.extra.app.byStatus).map(([k, v]) => `${k}: ${fmt(v / fl.conc.n, 2)}`).join(", ");
    notes.push(`Bare SDK, ${modeName(m)}: ${fmt(fl.conc.extra.app.calls / fl.conc.n, 2)} call requests (${fmt(fl.conc.extra.app.callBytes / fl.conc.extra.app.calls)} bytes each on average; answered ${statuses} per run) and ${fmt(cpCount(fl.conc.extra.standIn) / fl.conc.n, 2)} checkpoint posts per run.`);
  }
  if (notes.length) L.push("What the executors actually did (counted by the app, and by the stand-in):", "", ...notes.map((n) => `- ${n}`), "");
  return L.join("\n");
}

// ---- Main ------------------------------------------------------------------------------------

async function main() {
  requireInstalled();
  const started = Date.now();
  const r = {
    date: new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"),
    commit: git(["rev-parse", "HEAD"]),
    dirty: git(["status", "--porcelain", "--", "crates", "src", "tests/bench/sdk"]) !== "",
    loadStart: loadavg(),
    floor: {},
    stepdesk: {},
  };
  try {
    const lock = JSON.parse(readFileSync(path.join(ROOT, "tests/sdk/js/package-lock.json"), "utf8"));
    r.sdkTestLock = lock.packages["node_modules/inngest"].version;
  } catch {
    // tests/sdk absent: nothing to compare with
  }
  const BIN = only.includes("stepdesk") ? prepareBinary() : null;
  r.bin = BIN;
  const cleanup = [];
  try {
    // Every system is started first and stays up (idle while the others are measured).
    const targets = [];
    if (only.includes("floor")) targets.push(...(await floorTargets(r, cleanup)));
    if (only.includes("stepdesk")) targets.push(...(await stepdeskTargets(r, cleanup, BIN)));
    if (only.includes("restate")) targets.push(...(await restateTargets(r, cleanup)));
    await measureAll(targets, ROUNDS);
    if (r.sdServer) await pollCost(r, r.sdServer);
  } finally {
    for (const f of cleanup.reverse()) await f().catch((e) => log(`cleanup: ${e.message}`));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    if (BIN) removeDir(BIN.dir);
  }
  r.loadEnd = loadavg();
  r.seconds = (Date.now() - started) / 1000;
  const text = report(r);
  console.log(text);
  if (opts.write) {
    writeSection(opts.write, "sdk-bench", text);
    log(`wrote the SDK section of ${opts.write}`);
  }
}

main().catch(async (e) => {
  console.error(e.stack || String(e));
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await sleep(100);
  process.exit(1);
});
