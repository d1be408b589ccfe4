// The SDK benchmark's Restate app (tests/bench/sdk/bench.mjs): the same 3-step workflow as
// inngest-app.mjs on the Restate TypeScript SDK (npm `@restatedev/restate-sdk`), one
// `ctx.run` per step, served over HTTP/2 (h2c, bidirectional streaming: what
// `restate.serve` does) at PORT. The bench registers it with the Restate server's admin API
// and calls `Bench/run` through the server's ingress.
//
// Logging: the SDK's console logger, at the level in RESTATE_LOGGING (the bench sets WARN, as
// it runs Stepdesk with STEPDESK_LOG=warn: two INFO lines per invocation otherwise).
//
// Prints `restate-app listening on http://127.0.0.1:PORT` once it listens.

import http2 from "node:http2";

// The SDK calls Promise.withResolvers (ES2024), which Node 20 lacks (Node 22 has it).
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

// Imported after the polyfill (a static import would be evaluated first).
const restate = await import("@restatedev/restate-sdk");

const bench = restate.service({
  name: "Bench",
  handlers: {
    run: async (ctx, input) => {
      const a = await ctx.run("a", () => ({ value: input.start ?? 1 }));
      const b = await ctx.run("b", () => ({ value: a.value * 2 }));
      const c = await ctx.run("c", () => ({ value: b.value + 3 }));
      return { tag: input.tag, a, b, c };
    },
  },
});

const server = http2.createServer(restate.createEndpointHandler({ services: [bench] }));
process.on("disconnect", () => process.exit(0));
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`restate-app listening on http://127.0.0.1:${server.address().port}`);
});
