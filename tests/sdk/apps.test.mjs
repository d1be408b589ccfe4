// The SDK test apps themselves, without Stepdesk: each app (the real npm / PyPI `inngest`
// package, installed from the lock files by `make deps-sdk`) answers introspection, syncs
// out-of-band to a stand-in Inngest API when it gets a PUT, and runs a function through the
// call protocol. This proves the installation and the apps that tests/sdk/driver.test.mjs
// drives with the real binary.
//
// The register bodies the apps send are kept in tests/sdk/fixtures/register-{js,py}.json
// (with the app's origin normalized) for the Rust tests of the sync endpoint; this test fails
// when they no longer match what the SDKs send. STEPDESK_UPDATE_FIXTURES=1 rewrites them.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { FIXTURES_DIR, header, lockedVersions, startApp, startFakeInngest, stepHash } from "./lib.mjs";

const VERSIONS = lockedVersions();
/** The origin the fixtures use in place of the app's real (random) one. */
const FIXTURE_ORIGIN = "http://127.0.0.1:3939";

/**
 * What each app must register: per function (its own id), the triggers and the optional
 * retries and cancel rules. A function not listed here must not be registered.
 */
function expectedFunctions(appId, kind) {
  const ev = (name) => [{ event: `${appId}/${name}` }];
  const common = {
    sequential: { triggers: ev("sequential") },
    parallel: { triggers: ev("parallel") },
    "retry-after": { triggers: ev("retry-after"), retries: 3 },
    "non-retriable": { triggers: ev("non-retriable"), retries: 3 },
    fails: { triggers: ev("fails"), retries: 0 },
    "fails-failure": {
      triggers: [{ event: "inngest/function.failed", expression: `event.data.function_id == '${appId}-fails'` }],
      // JS registers its failure handlers with one retry, Python with none.
      retries: kind === "js" ? 1 : 0,
    },
    "wait-if": { triggers: ev("wait-if") },
    "fan-out": { triggers: ev("fan-out") },
    "fan-in": { triggers: [{ event: `${appId}-fanned/*` }] },
    "cancel-on": {
      triggers: ev("cancel-on"),
      cancel: [{ event: `${appId}/cancel`, if: "async.data.id == event.data.id", timeout: "1h" }],
    },
    expression: {
      triggers: [{ event: `${appId}/expression`, expression: "event.data.plan == 'pro' && event.data.amount > 10" }],
    },
    sleep: { triggers: ev("sleep") },
    "long-sleep": { triggers: ev("long-sleep") },
    "long-wait": { triggers: ev("long-wait") },
    "large-state": { triggers: ev("large-state") },
  };
  if (kind === "js") {
    return {
      ...common,
      "sequential-classic": { triggers: ev("sequential-classic") },
      race: { triggers: ev("race") },
      "catch-step-error": { triggers: ev("catch-step-error"), retries: 0 },
      "wait-match": { triggers: ev("wait-match") },
      multiply: { triggers: ev("multiply") },
      "invoke-py": { triggers: ev("invoke-py") },
      "cron-tz": { triggers: [{ cron: "TZ=Europe/Paris 0 9 * * *" }] },
      "checkpoint-crash": { triggers: ev("checkpoint-crash") },
      "Send welcome email ✉": { triggers: ev("welcome") },
      "empty-step-id": { triggers: ev("empty-step-id") },
      fetch: { triggers: ev("fetch"), retries: 0 },
      "race-wait": { triggers: ev("race-wait") },
    };
  }
  return {
    ...common,
    "parallel-race": { triggers: ev("parallel-race") },
    add: { triggers: ev("add") },
    "invoke-js": { triggers: ev("invoke-js") },
    "cron-tz": { triggers: [{ cron: "TZ=America/New_York 30 8 * * 1-5" }] },
  };
}

/** A call request body like an executor's, for `fnId` with the given memoized steps. */
function callBody({ runId, event, steps = {}, stack = [] }) {
  return {
    ctx: {
      attempt: 0,
      disable_immediate_execution: false,
      env: "",
      run_id: runId,
      stack: { current: stack.length, stack },
      step_id: "step",
      use_api: false,
    },
    event,
    events: [event],
    steps,
    use_api: false,
    version: -1,
  };
}

for (const kind of ["js", "py"]) {
  describe(`the ${kind} test app`, () => {
    let fake;
    let app;
    const version = VERSIONS[kind];

    before(async () => {
      fake = await startFakeInngest();
      app = await startApp(kind, { INNGEST_DEV: fake.url });
    });

    after(async () => {
      await app?.stop();
      await fake?.close();
    });

    test("answers introspection as the locked SDK version, in dev mode", async () => {
      const res = await fetch(app.url);
      assert.equal(res.status, 200, app.logs());
      assert.equal(header(res.headers, "x-inngest-sdk"), `inngest-${kind}:v${version}`);
      const body = await res.json();
      assert.equal(body.mode, "dev");
      assert.equal(body.schema_version, "2024-05-24");
      assert.equal(body.has_signing_key, false);
      // JS counts the failure handler as a function, Python does not.
      const count = Object.keys(expectedFunctions(app.id, kind)).length - (kind === "py" ? 1 : 0);
      assert.equal(body.function_count, count);
    });

    test("syncs out of band on PUT: POST /fn/register with every function, trigger and step URL", async () => {
      const before = fake.requests.length;
      const res = await fetch(app.url, {
        method: "PUT",
        headers: { "content-type": "application/json", "x-inngest-server-kind": "dev" },
        body: JSON.stringify({ url: app.url }),
      });
      const answer = await res.json();
      assert.equal(res.status, 200, JSON.stringify(answer) + app.logs());
      assert.equal(answer.modified, true);
      assert.equal(header(res.headers, "x-inngest-sync-kind"), "out_of_band");

      const registers = fake.requests.slice(before).filter((r) => r.path === "/fn/register");
      assert.equal(registers.length, 1, "exactly one POST /fn/register");
      const reg = registers[0];
      assert.equal(reg.method, "POST");
      assert.equal(header(reg.headers, "x-inngest-sdk"), `inngest-${kind}:v${version}`);
      assert.equal(header(reg.headers, "x-inngest-expected-server-kind"), "dev");
      const body = reg.body;

      // The spellings differ between the SDKs (issue 8: accept both).
      if (kind === "js") {
        assert.equal(body.appName, app.id);
        assert.equal(body.deployType, "ping");
        assert.equal(body.framework, "nodejs");
      } else {
        assert.equal(body.appname, app.id);
        assert.equal(body.deploy_type, "ping");
        assert.equal(body.framework, "fast_api");
      }
      assert.equal(body.url, app.url);
      assert.equal(body.sdk, `${kind}:v${version}`);
      assert.equal(body.v, "0.1");

      const expected = expectedFunctions(app.id, kind);
      const ids = body.functions.map((f) => f.id).sort();
      assert.deepEqual(ids, Object.keys(expected).map((id) => `${app.id}-${id}`).sort());
      for (const f of body.functions) {
        const own = f.id.slice(app.id.length + 1);
        const want = expected[own];
        assert.deepEqual(f.triggers, want.triggers, `${f.id}: triggers`);
        const step = f.steps.step;
        assert.equal(step.id, "step");
        assert.equal(step.runtime.type, "http");
        // The query is URL-encoded (an id may have spaces): compare it decoded.
        const stepUrl = new URL(step.runtime.url);
        assert.equal(`${stepUrl.origin}${stepUrl.pathname}`, app.url, `${f.id}: step URL`);
        assert.deepEqual(Object.fromEntries(stepUrl.searchParams), { fnId: f.id, stepId: "step" }, `${f.id}: step URL query`);
        assert.deepEqual(step.retries?.attempts, want.retries, `${f.id}: retries`);
        assert.deepEqual(f.cancel?.length ? f.cancel : undefined, want.cancel, `${f.id}: cancel`);
      }

      // The fixture the Rust tests parse: this body, the app's origin normalized.
      const origin = new URL(app.url).origin;
      const normalized = JSON.parse(JSON.stringify(body).replaceAll(origin, FIXTURE_ORIGIN));
      const file = path.join(FIXTURES_DIR, `register-${kind}.json`);
      if (process.env.STEPDESK_UPDATE_FIXTURES === "1" || !existsSync(file)) {
        mkdirSync(FIXTURES_DIR, { recursive: true });
        writeFileSync(file, JSON.stringify(normalized, null, 2) + "\n");
      }
      assert.deepEqual(
        normalized,
        JSON.parse(readFileSync(file, "utf8")),
        `${file} is not what the SDK sends now (STEPDESK_UPDATE_FIXTURES=1 rewrites it)`,
      );
    });

    test("runs a function through the call protocol: one step per request, then its output", async () => {
      const fnId = `${app.id}-sequential`;
      const url = `${app.url}?fnId=${fnId}&stepId=step`;
      const event = {
        data: { start: 5 },
        id: "01JSDKAPPTEST0000000000001",
        name: `${app.id}/sequential`,
        ts: Date.now(),
        user: {},
      };
      const runId = `01JSDKAPPRUN${kind.toUpperCase()}00000000000001`.slice(0, 26);
      const call = async (steps, stack) => {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(callBody({ runId, event, steps, stack })),
        });
        assert.equal(header(res.headers, "x-inngest-sdk"), `inngest-${kind}:v${version}`);
        assert.equal(header(res.headers, "x-inngest-req-version"), "2");
        return { status: res.status, body: await res.json() };
      };

      // Each new step runs at once and comes back as one StepRun op under its SHA-1 id.
      const steps = {};
      const stack = [];
      const want = { a: { value: 5 }, b: { value: 10 }, c: { value: 13 } };
      for (const [id, data] of Object.entries(want)) {
        const { status, body } = await call(steps, stack);
        assert.equal(status, 206, JSON.stringify(body) + app.logs());
        const ops = Array.isArray(body) ? body : [body];
        assert.equal(ops.length, 1, JSON.stringify(ops));
        assert.equal(ops[0].op, "StepRun");
        assert.equal(ops[0].id, stepHash(id));
        assert.equal(ops[0].name, id);
        assert.deepEqual(ops[0].data, data);
        steps[stepHash(id)] = { data };
        stack.push(stepHash(id));
      }
      // Every step memoized: the function returns.
      const { status, body } = await call(steps, stack);
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(body, { input: { start: 5 }, ...want });
    });
  });
}
