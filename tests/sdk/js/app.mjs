// A test app on the official Inngest JS SDK (npm `inngest` v4), served on Node's own `http`
// with the SDK's `inngest/node` adapter at /api/inngest. Stepdesk drives it in tests/sdk the
// way `inngest dev -u URL` would. Nothing here knows about Stepdesk: the app is configured only
// through the SDK's standard variables, as a user's app would be:
//
//   INNGEST_DEV=http://127.0.0.1:8288   dev mode, pointed at that server (no signing)
//   INNGEST_DEV=0 INNGEST_BASE_URL=... INNGEST_SIGNING_KEY=... INNGEST_EVENT_KEY=...   cloud mode
//   PORT=0                               the port to listen on (0: any free one)
//
// It prints `sdk-js listening on http://127.0.0.1:PORT/api/inngest` once it listens.
//
// Each function's output echoes its input and what happened (attempt numbers, timings, the
// events it received) so that a test can assert on it. Event names start with `sdk-js/`;
// function ids are composite (`sdk-js-<id>`) on the wire.

import http from "node:http";
import { Inngest, NonRetriableError, RetryAfterError, referenceFunction } from "inngest";
import { serve } from "inngest/node";

export const APP_ID = "sdk-js";
export const inngest = new Inngest({ id: APP_ID });

// Attempts seen per run and step, in this process: a retried step reports every attempt it
// made and when, so a test can check the delay the server honoured.
const attemptLog = new Map();
function logAttempt(runId, stepId, attempt) {
  const key = `${runId}/${stepId}`;
  const seen = attemptLog.get(key) ?? [];
  seen.push({ attempt, at: Date.now() });
  attemptLog.set(key, seen);
  return seen;
}

const fns = [];
const fn = (opts, handler) => {
  const f = inngest.createFunction(opts, handler);
  fns.push(f);
  return f;
};

// ---- Steps in sequence -------------------------------------------------------------------

// Three steps, each using the previous one's output (checkpointing on: the v4 default).
fn({ id: "sequential", triggers: [{ event: "sdk-js/sequential" }] }, async ({ event, step }) => {
  const a = await step.run("a", () => ({ value: event.data.start ?? 1 }));
  const b = await step.run("b", () => ({ value: a.value * 2 }));
  const c = await step.run("c", () => ({ value: b.value + 3 }));
  return { input: event.data, a, b, c };
});

// The same with checkpointing off: one request per step, the classic protocol.
fn(
  { id: "sequential-classic", checkpointing: false, triggers: [{ event: "sdk-js/sequential-classic" }] },
  async ({ event, step }) => {
    const a = await step.run("a", () => ({ value: event.data.start ?? 1 }));
    const b = await step.run("b", () => ({ value: a.value * 2 }));
    const c = await step.run("c", () => ({ value: b.value + 3 }));
    return { input: event.data, a, b, c };
  },
);

// ---- A large state ----------------------------------------------------------------------

// A step whose result makes the run's state larger than 4 MiB: the next request goes without
// it (`ctx.use_api`) and the SDK fetches it from /v0/runs/{id}/actions and /batch.
fn({ id: "large-state", triggers: [{ event: "sdk-js/large-state" }] }, async ({ event, events, step }) => {
  const size = event.data.bytes ?? 5 * 1024 * 1024;
  const blob = await step.run("big", () => "x".repeat(size));
  const length = await step.run("measure", () => blob.length);
  return { len: length, event: events[0].name };
});

// ---- Parallel steps ----------------------------------------------------------------------

// Promise.all: three planned steps (StepPlanned), then one that needs all three.
fn({ id: "parallel", triggers: [{ event: "sdk-js/parallel" }] }, async ({ event, step }) => {
  const items = event.data.items ?? [1, 2, 3];
  const doubled = await Promise.all(items.map((n, i) => step.run(`double-${i}`, () => n * 2)));
  const sum = await step.run("sum", () => doubled.reduce((s, n) => s + n, 0));
  return { input: event.data, doubled, sum };
});

// group.parallel in race mode: the first step to finish wins; the slow one still ends later.
fn({ id: "race", triggers: [{ event: "sdk-js/race" }] }, async ({ event, step, group }) => {
  const slowMs = event.data.slow_ms ?? 1500;
  const winner = await group.parallel({ mode: "race" }, () =>
    Promise.race([
      step.run("fast", () => "fast"),
      step.run("slow", async () => {
        await new Promise((r) => setTimeout(r, slowMs));
        return "slow";
      }),
    ]),
  );
  const after = await step.run("after-race", () => `winner was ${winner}`);
  return { input: event.data, winner, after };
});

// ---- Errors and retries ------------------------------------------------------------------

// Fails on its first attempt with RetryAfterError (Retry-After: event.data.retry_after, "2s" by
// default), succeeds on the next; its output lists every attempt and when it started.
fn(
  { id: "retry-after", retries: 3, triggers: [{ event: "sdk-js/retry-after" }] },
  async ({ event, step, runId, attempt }) => {
    // The context's `attempt` is the attempt of the request that runs the step: zero-based
    // and per step, so 1 on the step's first retry.
    const flaky = await step.run("flaky", () => {
      const seen = logAttempt(runId, "flaky", attempt);
      if (attempt === 0) {
        throw new RetryAfterError(`not yet (attempt ${attempt})`, event.data.retry_after ?? "2s");
      }
      return { attempt, attempts: seen };
    });
    return { input: event.data, flaky };
  },
);

// A step that always fails with NonRetriableError: no retry despite `retries: 3`.
fn(
  { id: "non-retriable", retries: 3, triggers: [{ event: "sdk-js/non-retriable" }] },
  async ({ event, step }) => {
    await step.run("check", () => {
      throw new NonRetriableError(`bad input: ${JSON.stringify(event.data)}`);
    });
    return { unreachable: true };
  },
);

// A step that fails for good (no retries), caught by the function: the StepFailed memo comes
// back as an error the function handles.
fn(
  { id: "catch-step-error", retries: 0, triggers: [{ event: "sdk-js/catch-step-error" }] },
  async ({ event, step }) => {
    try {
      await step.run("explode", () => {
        throw new Error(`exploded for ${event.data.tag}`, { cause: new TypeError("the fuse was lit") });
      });
      return { caught: null };
    } catch (e) {
      const recovered = await step.run("recover", () => `recovered from: ${e.message}`);
      return { caught: e.message, name: e.name, cause: e.cause ? `${e.cause.name}: ${e.cause.message}` : null, recovered };
    }
  },
);

// The function body throws (no retries): the run fails and its onFailure handler
// (`sdk-js-fails-failure`, on `inngest/function.failed`) records what failed.
fn(
  {
    id: "fails",
    retries: 0,
    triggers: [{ event: "sdk-js/fails" }],
    onFailure: async ({ event, error, step }) => {
      return step.run("record-failure", () => ({
        function_id: event.data.function_id,
        run_id: event.data.run_id,
        message: error.message,
        cause: error.cause?.message ?? null,
        original: event.data.event?.data ?? null,
      }));
    },
  },
  async ({ event, step }) => {
    await step.run("before-failure", () => "ok");
    throw new Error(`boom ${event.data.tag}`, { cause: new Error("the root cause") });
  },
);

// ---- Waits -------------------------------------------------------------------------------

// waitForEvent with an `if` expression; the timeout comes from the event ("1m" by default).
fn({ id: "wait-if", triggers: [{ event: "sdk-js/wait-if" }] }, async ({ event, step }) => {
  const got = await step.waitForEvent("approval", {
    event: "sdk-js/approval",
    timeout: event.data.timeout ?? "1m",
    if: "async.data.id == event.data.id && async.data.approved == true",
  });
  return { input: event.data, got: got ? { name: got.name, data: got.data } : null };
});

// waitForEvent with `match` (sugar for `async.data.id == event.data.id`).
fn({ id: "wait-match", triggers: [{ event: "sdk-js/wait-match" }] }, async ({ event, step }) => {
  const got = await step.waitForEvent("matched", {
    event: "sdk-js/matched",
    timeout: event.data.timeout ?? "1m",
    match: "data.id",
  });
  return { input: event.data, got: got ? { name: got.name, data: got.data } : null };
});

// ---- Events out: fan-out to a wildcard trigger -------------------------------------------

fn({ id: "fan-out", triggers: [{ event: "sdk-js/fan-out" }] }, async ({ event, step }) => {
  const n = event.data.count ?? 2;
  const sent = await step.sendEvent(
    "fan",
    Array.from({ length: n }, (_, i) => ({
      name: `sdk-js-fanned/item.${i}`,
      data: { batch: event.data.batch, index: i },
    })),
  );
  return { input: event.data, sent };
});

fn({ id: "fan-in", triggers: [{ event: "sdk-js-fanned/*" }] }, async ({ event, step }) => {
  const seen = await step.run("seen", () => ({ name: event.name, data: event.data }));
  return seen;
});

// ---- Invoke across apps ------------------------------------------------------------------

// Invoked by the Python app (`sdk-py-invoke-js`); also triggerable by an event.
fn({ id: "multiply", triggers: [{ event: "sdk-js/multiply" }] }, async ({ event, step }) => {
  const product = await step.run("multiply", () => event.data.a * event.data.b);
  return { app: APP_ID, a: event.data.a, b: event.data.b, product };
});

// Invokes the Python app's `add` by its composite id `sdk-py-add`.
fn({ id: "invoke-py", triggers: [{ event: "sdk-js/invoke-py" }] }, async ({ event, step }) => {
  const result = await step.invoke("call-py", {
    function: referenceFunction({ appId: "sdk-py", functionId: "add" }),
    data: { a: event.data.a, b: event.data.b },
    timeout: "1m",
  });
  return { input: event.data, from_py: result };
});

// ---- Cron, cancellation, trigger expressions, sleeps -------------------------------------

// Every day at 09:00 in Paris (and never while a test runs, unless run by hand).
fn({ id: "cron-tz", triggers: [{ cron: "TZ=Europe/Paris 0 9 * * *" }] }, async ({ event, step }) => {
  const at = await step.run("tick", () => ({ name: event.name, data: event.data }));
  return at;
});

// Sleeps for an hour unless cancelled by `sdk-js/cancel` for the same id.
fn(
  {
    id: "cancel-on",
    triggers: [{ event: "sdk-js/cancel-on" }],
    cancelOn: [{ event: "sdk-js/cancel", if: "async.data.id == event.data.id", timeout: "1h" }],
  },
  async ({ event, step }) => {
    await step.run("started", () => event.data.id);
    await step.sleep("nap", "1h");
    await step.run("after-nap", () => "not cancelled");
    return { input: event.data, cancelled: false };
  },
);

// Runs only for pro plans with an amount over 10 (a trigger `if`).
fn(
  {
    id: "expression",
    triggers: [{ event: "sdk-js/expression", if: "event.data.plan == 'pro' && event.data.amount > 10" }],
  },
  async ({ event }) => ({ input: event.data, matched: true }),
);

// A short sleep between two steps that record the time.
fn({ id: "sleep", triggers: [{ event: "sdk-js/sleep" }] }, async ({ event, step }) => {
  const before = await step.run("before", () => Date.now());
  await step.sleep("nap", event.data.duration ?? "2s");
  const after = await step.run("after", () => Date.now());
  return { input: event.data, before, after };
});

// For the restart test: a long sleep and a long wait.
fn({ id: "long-sleep", triggers: [{ event: "sdk-js/long-sleep" }] }, async ({ event, step }) => {
  const before = await step.run("before", () => Date.now());
  await step.sleep("long-nap", event.data.duration ?? "20s");
  const after = await step.run("after", () => Date.now());
  return { input: event.data, before, after };
});

fn({ id: "long-wait", triggers: [{ event: "sdk-js/long-wait" }] }, async ({ event, step }) => {
  const got = await step.waitForEvent("resume", {
    event: "sdk-js/resume",
    timeout: "10m",
    if: "async.data.id == event.data.id",
  });
  return { input: event.data, got: got ? got.data : null };
});

// Checkpointed steps across a crash of the server: "one" and "two" run and are checkpointed
// in the first call request, then "three" holds that request open until the test calls
// GET /release?run=ID. A server killed meanwhile and started again sends the request again:
// "one" and "two" must come from the memo then, not run again. Each step counts its
// executions (GET /executions?run=ID), and the run returns the counts.
const executions = new Map();
const gates = new Map();
function executed(runId, stepId) {
  const counts = executions.get(runId) ?? {};
  counts[stepId] = (counts[stepId] ?? 0) + 1;
  executions.set(runId, counts);
}
function gate(runId) {
  let g = gates.get(runId);
  if (!g) {
    let open;
    g = { promise: new Promise((r) => (open = r)), open };
    gates.set(runId, g);
  }
  return g;
}
fn({ id: "checkpoint-crash", triggers: [{ event: "sdk-js/checkpoint-crash" }] }, async ({ event, step, runId }) => {
  await step.run("one", () => executed(runId, "one"));
  await step.run("two", () => executed(runId, "two"));
  await step.run("three", async () => {
    executed(runId, "three");
    await gate(runId).promise;
  });
  return { input: event.data, executions: executions.get(runId) };
});

// An id as a user may write it: words, spaces, a non-ASCII letter (Inngest takes any id);
// and an option Stepdesk accepts without enforcing it yet (its sync warns).
fn({ id: "Send welcome email ✉", idempotency: "event.data.name", triggers: [{ event: "sdk-js/welcome" }] }, async ({ event, step }) => {
  const greeting = await step.run("greet", () => `Welcome, ${event.data.name}!`);
  return { greeting };
});

// A step with an empty id (Inngest runs it; the console names it by its hash).
fn({ id: "empty-step-id", triggers: [{ event: "sdk-js/empty-step-id" }] }, async ({ step }) => {
  const value = await step.run("", () => 42);
  return { value };
});

// A race between a wait and a step (group.parallel in race mode): the step wins at once, while
// the wait (an hour) is still pending; the function goes on with it.
fn({ id: "race-wait", triggers: [{ event: "sdk-js/race-wait" }] }, async ({ step, group }) => {
  const winner = await group.parallel({ mode: "race" }, () =>
    Promise.race([
      step.waitForEvent("approval", { event: "sdk-js/never", timeout: "1h" }).then(() => "wait"),
      step.run("quick", () => "quick"),
    ]),
  );
  const after = await step.run("after", () => "after");
  return { winner, after };
});

// ---- step.fetch --------------------------------------------------------------------------

// step.fetch (the Gateway op): the server makes the request and the function gets a Response.
// Two at once (Promise.all: planned steps), one with a credential in a header and the query.
fn({ id: "fetch", retries: 0, triggers: [{ event: "sdk-js/fetch" }] }, async ({ event, step }) => {
  const base = event.data.base;
  const [a, b] = await Promise.all([
    step.fetch(`${base}/echo?page=2&api_key=k3y`, {
      method: "POST",
      headers: { authorization: "Bearer t0ken", "content-type": "application/json" },
      body: JSON.stringify({ n: 1 }),
    }),
    step.fetch(`${base}/broken`),
  ]);
  const after = await step.fetch(`${base}/echo?then=1`);
  const empty = await step.fetch(`${base}/empty`, { method: "DELETE" });
  return {
    a: { status: a.status, header: a.headers.get("x-test"), name: a.headers.get("x-name"), json: await a.json() },
    b: { status: b.status, text: await b.text() },
    after: (await after.json()).path,
    empty: { status: empty.status, body: await empty.text() },
  };
});

export const functions = fns;

// ---- Serving -----------------------------------------------------------------------------

const handler = serve({ client: inngest, functions: fns });

// Call requests received per run (the `X-Run-Id` header the server sends): a test checks
// that checkpointing makes a run of several steps one request. GET /requests?run=ID.
const requestsPerRun = new Map();

const server = http.createServer((req, res) => {
  const [path, query] = (req.url ?? "/").split("?");
  if (path === "/api/inngest") {
    const runId = req.headers["x-run-id"];
    if (req.method === "POST" && runId) requestsPerRun.set(runId, (requestsPerRun.get(runId) ?? 0) + 1);
    return handler(req, res);
  }
  if (path === "/requests") {
    const runId = new URLSearchParams(query ?? "").get("run") ?? "";
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ run: runId, requests: requestsPerRun.get(runId) ?? 0 }));
  }
  if (path === "/executions" || path === "/release") {
    const runId = new URLSearchParams(query ?? "").get("run") ?? "";
    if (path === "/release") gate(runId).open();
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ run: runId, executions: executions.get(runId) ?? {} }));
  }
  if (path === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ ok: true, app: APP_ID }));
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

const port = Number(process.env.PORT ?? 3000);
server.listen(port, "127.0.0.1", () => {
  console.log(`${APP_ID} listening on http://127.0.0.1:${server.address().port}/api/inngest`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
