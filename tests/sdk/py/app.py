"""A test app on the official Inngest Python SDK (PyPI `inngest` 0.5.x), served with FastAPI
on uvicorn at /api/inngest. Stepdesk drives it in tests/sdk the way `inngest dev -u URL`
would. Nothing here knows about Stepdesk: the app is configured only through the SDK's
standard variables, as a user's app would be:

  INNGEST_DEV=http://127.0.0.1:8288   dev mode, pointed at that server (no signing)
  INNGEST_DEV=0 INNGEST_BASE_URL=... INNGEST_SIGNING_KEY=... INNGEST_EVENT_KEY=...   cloud mode
  PORT=0                               the port to listen on (0: any free one)

It prints `sdk-py listening on http://127.0.0.1:PORT/api/inngest` once it listens.

Each function's output echoes its input and what happened (attempt numbers, timings, the
events it received) so that a test can assert on it. Event names start with `sdk-py/`;
function ids are composite (`sdk-py-<id>`) on the wire.
"""

import asyncio
import datetime
import logging
import os
import socket
import time

import fastapi
import inngest
import inngest.fast_api
import uvicorn

APP_ID = "sdk-py"
client = inngest.Inngest(app_id=APP_ID, logger=logging.getLogger("sdk-py"))

functions: list[inngest.Function] = []


def fn(**opts):
    def register(handler):
        f = client.create_function(**opts)(handler)
        functions.append(f)
        return f

    return register


def now_ms() -> int:
    return int(time.time() * 1000)


# Attempts seen per run and step, in this process: a retried step reports every attempt it
# made and when, so a test can check the delay the server honoured.
attempt_log: dict[str, list[dict]] = {}


def log_attempt(run_id: str, step_id: str, attempt: int) -> list[dict]:
    seen = attempt_log.setdefault(f"{run_id}/{step_id}", [])
    seen.append({"attempt": attempt, "at": now_ms()})
    return seen


def seconds(text: str | None, default: int) -> datetime.timedelta:
    """A duration from an event field: "2s", "1m", or a number of seconds."""
    if text is None:
        return datetime.timedelta(seconds=default)
    if isinstance(text, (int, float)):
        return datetime.timedelta(seconds=text)
    units = {"s": 1, "m": 60, "h": 3600}
    return datetime.timedelta(seconds=float(text[:-1]) * units[text[-1]])


# ---- A large state ----------------------------------------------------------------------


# A step whose result makes the run's state larger than 4 MiB: the next request goes without
# it (top-level `use_api`) and the SDK fetches it from /v0/runs/{id}/actions and /batch.
@fn(fn_id="large-state", trigger=inngest.TriggerEvent(event="sdk-py/large-state"))
async def large_state(ctx: inngest.Context):
    size = ctx.event.data.get("bytes", 5 * 1024 * 1024)

    async def big():
        return "x" * size

    blob = await ctx.step.run("big", big)

    async def measure():
        return len(blob)

    length = await ctx.step.run("measure", measure)
    return {"len": length, "event": ctx.events[0].name}


# ---- Steps in sequence -------------------------------------------------------------------


@fn(fn_id="sequential", trigger=inngest.TriggerEvent(event="sdk-py/sequential"))
async def sequential(ctx: inngest.Context):
    start = ctx.event.data.get("start", 1)

    async def a():
        return {"value": start}

    va = await ctx.step.run("a", a)

    async def b():
        return {"value": va["value"] * 2}

    vb = await ctx.step.run("b", b)

    async def c():
        return {"value": vb["value"] + 3}

    vc = await ctx.step.run("c", c)
    return {"input": dict(ctx.event.data), "a": va, "b": vb, "c": vc}


# ---- Parallel steps ----------------------------------------------------------------------


@fn(fn_id="parallel", trigger=inngest.TriggerEvent(event="sdk-py/parallel"))
async def parallel(ctx: inngest.Context):
    items = ctx.event.data.get("items", [1, 2, 3])

    def double(i: int, n: int):
        async def run():
            return n * 2

        return lambda: ctx.step.run(f"double-{i}", run)

    doubled = await ctx.group.parallel(tuple(double(i, n) for i, n in enumerate(items)))

    async def total():
        return sum(doubled)

    s = await ctx.step.run("sum", total)
    return {"input": dict(ctx.event.data), "doubled": list(doubled), "sum": s}


@fn(fn_id="parallel-race", trigger=inngest.TriggerEvent(event="sdk-py/parallel-race"))
async def parallel_race(ctx: inngest.Context):
    async def fast():
        return "fast"

    async def slow():
        await asyncio.sleep(ctx.event.data.get("slow_ms", 1500) / 1000)
        return "slow"

    results = await ctx.group.parallel(
        (lambda: ctx.step.run("fast", fast), lambda: ctx.step.run("slow", slow)),
        parallel_mode=inngest.ParallelMode.RACE,
    )
    return {"input": dict(ctx.event.data), "results": list(results)}


# ---- Errors and retries ------------------------------------------------------------------


@fn(
    fn_id="retry-after",
    retries=3,
    trigger=inngest.TriggerEvent(event="sdk-py/retry-after"),
)
async def retry_after(ctx: inngest.Context):
    async def flaky():
        # ctx.attempt is the attempt of the request that runs the step: zero-based and per
        # step, so 1 on the step's first retry.
        seen = log_attempt(ctx.run_id, "flaky", ctx.attempt)
        if ctx.attempt == 0:
            raise inngest.RetryAfterError(
                f"not yet (attempt {ctx.attempt})",
                seconds(ctx.event.data.get("retry_after"), 2),
            )
        return {"attempt": ctx.attempt, "attempts": seen}

    out = await ctx.step.run("flaky", flaky)
    return {"input": dict(ctx.event.data), "flaky": out}


@fn(
    fn_id="non-retriable",
    retries=3,
    trigger=inngest.TriggerEvent(event="sdk-py/non-retriable"),
)
async def non_retriable(ctx: inngest.Context):
    async def check():
        raise inngest.NonRetriableError(f"bad input: {ctx.event.data.get('tag')}")

    await ctx.step.run("check", check)
    return {"unreachable": True}


async def record_failure(ctx: inngest.Context):
    data = ctx.event.data

    async def record():
        return {
            "function_id": data.get("function_id"),
            "run_id": data.get("run_id"),
            "message": (data.get("error") or {}).get("message"),
            "original": ((data.get("event") or {}).get("data")),
        }

    return await ctx.step.run("record-failure", record)


@fn(
    fn_id="fails",
    retries=0,
    on_failure=record_failure,
    trigger=inngest.TriggerEvent(event="sdk-py/fails"),
)
async def fails(ctx: inngest.Context):
    async def before():
        return "ok"

    await ctx.step.run("before-failure", before)
    raise Exception(f"boom {ctx.event.data.get('tag')}")


# ---- Waits -------------------------------------------------------------------------------


@fn(fn_id="wait-if", trigger=inngest.TriggerEvent(event="sdk-py/wait-if"))
async def wait_if(ctx: inngest.Context):
    got = await ctx.step.wait_for_event(
        "approval",
        event="sdk-py/approval",
        if_exp="async.data.id == event.data.id && async.data.approved == true",
        timeout=seconds(ctx.event.data.get("timeout"), 60),
    )
    return {
        "input": dict(ctx.event.data),
        "got": None if got is None else {"name": got.name, "data": dict(got.data)},
    }


# ---- Events out: fan-out to a wildcard trigger -------------------------------------------


@fn(fn_id="fan-out", trigger=inngest.TriggerEvent(event="sdk-py/fan-out"))
async def fan_out(ctx: inngest.Context):
    n = ctx.event.data.get("count", 2)
    ids = await ctx.step.send_event(
        "fan",
        [
            inngest.Event(
                name=f"sdk-py-fanned/item.{i}",
                data={"batch": ctx.event.data.get("batch"), "index": i},
            )
            for i in range(n)
        ],
    )
    return {"input": dict(ctx.event.data), "sent": {"ids": ids}}


@fn(fn_id="fan-in", trigger=inngest.TriggerEvent(event="sdk-py-fanned/*"))
async def fan_in(ctx: inngest.Context):
    async def seen():
        return {"name": ctx.event.name, "data": dict(ctx.event.data)}

    return await ctx.step.run("seen", seen)


# ---- Invoke across apps ------------------------------------------------------------------


@fn(fn_id="add", trigger=inngest.TriggerEvent(event="sdk-py/add"))
async def add(ctx: inngest.Context):
    a, b = ctx.event.data["a"], ctx.event.data["b"]

    async def run():
        return a + b

    total = await ctx.step.run("add", run)
    return {"app": APP_ID, "a": a, "b": b, "sum": total}


@fn(fn_id="invoke-js", trigger=inngest.TriggerEvent(event="sdk-py/invoke-js"))
async def invoke_js(ctx: inngest.Context):
    result = await ctx.step.invoke_by_id(
        "call-js",
        app_id="sdk-js",
        function_id="multiply",
        data={"a": ctx.event.data["a"], "b": ctx.event.data["b"]},
        timeout=datetime.timedelta(minutes=1),
    )
    return {"input": dict(ctx.event.data), "from_js": result}


# ---- Cron, cancellation, trigger expressions, sleeps -------------------------------------


@fn(fn_id="cron-tz", trigger=inngest.TriggerCron(cron="TZ=America/New_York 30 8 * * 1-5"))
async def cron_tz(ctx: inngest.Context):
    async def tick():
        return {"name": ctx.event.name, "data": dict(ctx.event.data)}

    return await ctx.step.run("tick", tick)


@fn(
    fn_id="cancel-on",
    trigger=inngest.TriggerEvent(event="sdk-py/cancel-on"),
    cancel=[
        inngest.Cancel(
            event="sdk-py/cancel",
            if_exp="async.data.id == event.data.id",
            timeout=datetime.timedelta(hours=1),
        )
    ],
)
async def cancel_on(ctx: inngest.Context):
    async def started():
        return ctx.event.data.get("id")

    await ctx.step.run("started", started)
    await ctx.step.sleep("nap", datetime.timedelta(hours=1))

    async def after():
        return "not cancelled"

    await ctx.step.run("after-nap", after)
    return {"input": dict(ctx.event.data), "cancelled": False}


@fn(
    fn_id="expression",
    trigger=inngest.TriggerEvent(
        event="sdk-py/expression",
        expression="event.data.plan == 'pro' && event.data.amount > 10",
    ),
)
async def expression(ctx: inngest.Context):
    return {"input": dict(ctx.event.data), "matched": True}


@fn(fn_id="sleep", trigger=inngest.TriggerEvent(event="sdk-py/sleep"))
async def sleep(ctx: inngest.Context):
    async def stamp():
        return now_ms()

    before = await ctx.step.run("before", stamp)
    await ctx.step.sleep("nap", seconds(ctx.event.data.get("duration"), 2))
    after = await ctx.step.run("after", stamp)
    return {"input": dict(ctx.event.data), "before": before, "after": after}


# For the restart test: a long sleep and a long wait.
@fn(fn_id="long-sleep", trigger=inngest.TriggerEvent(event="sdk-py/long-sleep"))
async def long_sleep(ctx: inngest.Context):
    async def stamp():
        return now_ms()

    before = await ctx.step.run("before", stamp)
    await ctx.step.sleep("long-nap", seconds(ctx.event.data.get("duration"), 20))
    after = await ctx.step.run("after", stamp)
    return {"input": dict(ctx.event.data), "before": before, "after": after}


@fn(fn_id="long-wait", trigger=inngest.TriggerEvent(event="sdk-py/long-wait"))
async def long_wait(ctx: inngest.Context):
    got = await ctx.step.wait_for_event(
        "resume",
        event="sdk-py/resume",
        if_exp="async.data.id == event.data.id",
        timeout=datetime.timedelta(minutes=10),
    )
    return {"input": dict(ctx.event.data), "got": None if got is None else dict(got.data)}


# ---- Serving -----------------------------------------------------------------------------

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)


@app.get("/health")
async def health():
    return {"ok": True, "app": APP_ID}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # Bind the socket here, so that PORT=0 works and the real port can be printed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("PORT", "8000"))))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"{APP_ID} listening on http://127.0.0.1:{port}/api/inngest", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
