// The SDK benchmark's Inngest app (tests/bench/sdk/bench.mjs): one 3-step workflow on the
// official JS SDK (npm `inngest` v4), served with `inngest/node` on node:http at /api/inngest,
// twice: `three-steps` with the SDK's default (v4 checkpointing on: it runs consecutive steps
// in one request when the call request's ctx has `fn_id`, posting each step to
// `/v1/checkpoint/{runId}/async`), and `three-steps-classic` with `checkpointing: false` (one
// call request per step).
//
// Configured like any app, by the SDK's own INNGEST_DEV (the executor's URL) and PORT. The
// bench starts it with an IPC channel and, with SDKBENCH_NOTIFY=1, is told of each run the
// body finishes (`{done: tag, runId}`, sent once the three steps are memoized), so that it can
// check the run's status right then instead of polling all along (and of when its first step
// runs, `{started: tag}`, to tell the run's start from its steps). It also answers
// `{stats}` messages with what this process saw: call requests received, and requests the
// SDK sent to the executor's API by path (checkpoints), which is how the bench reports what
// the executor actually did.
//
// Prints `sdkbench listening on http://127.0.0.1:PORT/api/inngest` once it listens.

import http from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const stats = { calls: 0, callBytes: 0, connections: 0, callsByStatus: {}, otherRequests: {}, outbound: {} };

// The SDK's requests to the executor's API (sync, checkpoints), counted by path without ids.
const countingFetch = (input, init) => {
  const url = new URL(input instanceof URL || typeof input === "string" ? input : input.url);
  const key = url.pathname.replace(/\/v1\/checkpoint\/[^/]+\//, "/v1/checkpoint/{runId}/");
  stats.outbound[key] = (stats.outbound[key] ?? 0) + 1;
  return fetch(input, init);
};

const inngest = new Inngest({ id: "sdkbench", fetch: countingFetch });
const notify = process.env.SDKBENCH_NOTIFY === "1" && typeof process.send === "function";

// The workflow: three steps, each using the previous one's output (as tests/sdk's `sequential`).
const workflow = async ({ event, step, runId }) => {
  const a = await step.run("a", () => {
    if (notify) process.send({ started: event.data.tag });
    return { value: event.data.start ?? 1 };
  });
  const b = await step.run("b", () => ({ value: a.value * 2 }));
  const c = await step.run("c", () => ({ value: b.value + 3 }));
  if (notify) process.send({ done: event.data.tag, runId });
  return { tag: event.data.tag, a, b, c };
};

const fns = [
  inngest.createFunction({ id: "three-steps", triggers: [{ event: "sdkbench/three-steps" }] }, workflow),
  inngest.createFunction(
    { id: "three-steps-classic", checkpointing: false, triggers: [{ event: "sdkbench/three-steps-classic" }] },
    workflow,
  ),
];

const handler = serve({ client: inngest, functions: fns });
const server = http.createServer((req, res) => {
  if (req.method !== "POST") stats.otherRequests[req.method] = (stats.otherRequests[req.method] ?? 0) + 1;
  if (req.method === "POST") {
    stats.calls += 1;
    stats.callBytes += Number(req.headers["content-length"] ?? 0);
    res.once("finish", () => {
      stats.callsByStatus[res.statusCode] = (stats.callsByStatus[res.statusCode] ?? 0) + 1;
    });
  }
  return handler(req, res);
});

process.on("message", (m) => {
  if (m && m.stats) process.send({ stats: structuredClone(stats), id: m.stats });
});
// The bench gone (its IPC channel closed): nothing left to serve.
process.on("disconnect", () => process.exit(0));

// Connections opened to the app (an executor that keeps them alive opens a handful in all).
server.on("connection", () => {
  stats.connections += 1;
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`sdkbench listening on http://127.0.0.1:${server.address().port}/api/inngest`);
});
