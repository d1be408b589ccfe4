//! Functions for the end-to-end tests and for trying the console, registered only when
//! `STEPDESK_TEST_FIXTURES=1`. Each runs on its event; the event's `data` fields below are
//! all optional.
//!
//! | Function | Event | `data` | What it does |
//! |---|---|---|---|
//! | `fixture-steps` | `test/steps` | `step_ms` (default 0) | Three steps, each pausing `step_ms`; outputs `done-1..3`. |
//! | `fixture-noop` | `test/noop` | — | Three empty steps. |
//! | `fixture-input` | `test/input` | `text` (default "hello") | Three steps: `first` outputs the id of the run it executed in; `echo`, a `step.run_with` whose input is `{"text": text}`, outputs `{"echoed": input}`; `last` outputs the echoed text in capitals. For "Rerun from step" with an edited input. |
//! | `fixture-sleep` | `test/sleep` | `sleep_ms` (default 5000) | A step, a durable sleep, a step. |
//! | `fixture-wait` | `test/wait` | `key`, `timeout_ms` (default 600000) | Waits for a `test/resume` event with the same `data.key`; outputs its id, or null on timeout. |
//! | `fixture-flaky` | `test/flaky` | `fail_times` (default 2) | A step that fails its first `fail_times` attempts (3 retries allowed), so by default it succeeds on its 3rd. |
//! | `fixture-fail` | `test/fail` | — | Always fails (not retried); its failure handler runs. |
//! | `fixture-invoke` | `test/invoke` | — | Invokes `fixture-noop` and returns its output. |
//! | `fixture-cron` | cron `* * * * *` | — | Every minute: one step. |
//!
//! With `STEPDESK_FIXTURE_LOG=FILE`, each step side effect appends a line `RUN_ID STEP` to
//! FILE (fsynced), so a test can prove that a completed step never runs twice, even across
//! a SIGKILL. `fixture-flaky` then counts its attempts in that file, across restarts too;
//! without it, it counts them in memory.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::{Error, Function, Invoke, WaitForEvent};

fn record(run_id: &str, what: &str) -> Result<(), Error> {
    let Some(path) = std::env::var_os("STEPDESK_FIXTURE_LOG") else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write call per line, so concurrent appends never interleave.
    f.write_all(format!("{run_id} {what}\n").as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A number from the event's data, or `default` when it is absent or not a number.
fn number(ctx_data: &serde_json::Map<String, Value>, key: &str, default: u64) -> u64 {
    ctx_data.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// Counts `fixture-flaky`'s attempts per run. A step's retries are not visible to it
/// (`Ctx::attempt` counts the function body's attempts, which a failing step does not
/// change), so it counts them itself: in the fixture log when there is one (survives a
/// restart), else in memory.
fn flaky_attempt(run_id: &str) -> u64 {
    if let Some(path) = std::env::var_os("STEPDESK_FIXTURE_LOG") {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        return log
            .lines()
            .filter(|l| l.starts_with(run_id) && l.ends_with(" flaky"))
            .count() as u64;
    }
    static ATTEMPTS: std::sync::Mutex<Option<std::collections::HashMap<String, u64>>> =
        std::sync::Mutex::new(None);
    let mut attempts = ATTEMPTS.lock().unwrap_or_else(|p| p.into_inner());
    let n = attempts
        .get_or_insert_with(Default::default)
        .entry(run_id.to_string())
        .or_default();
    *n += 1;
    *n
}

pub fn functions() -> anyhow::Result<Vec<Function>> {
    Ok(vec![
        Function::builder("fixture-steps")
            .name("Fixture: three recorded steps")
            .on_event("test/steps")
            .handler(|ctx| async move {
                let pause = Duration::from_millis(number(&ctx.event.data, "step_ms", 0));
                let mut outputs = Vec::new();
                for i in 1..=3 {
                    let run_id = ctx.run_id.clone();
                    let out: String = ctx
                        .step
                        .run(&format!("step-{i}"), || async move {
                            tokio::time::sleep(pause).await;
                            record(&run_id, &format!("step-{i}"))?;
                            Ok(format!("done-{i}"))
                        })
                        .await?;
                    outputs.push(out);
                }
                Ok(json!({ "outputs": outputs }))
            })?,
        Function::builder("fixture-input")
            .name("Fixture: a step that takes an input")
            .on_event("test/input")
            .handler(|ctx| async move {
                let text = ctx
                    .event
                    .data
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("hello")
                    .to_string();
                // Its output names the run it executed in: a step reused by a "Rerun from
                // step" keeps the original run's id.
                let run_id = ctx.run_id.clone();
                let first: String = ctx
                    .step
                    .run("first", || async move {
                        record(&run_id, "first")?;
                        Ok(run_id)
                    })
                    .await?;
                let run_id = ctx.run_id.clone();
                let echoed: Value = ctx
                    .step
                    .run_with("echo", json!({ "text": text }), |input: Value| async move {
                        record(&run_id, "echo")?;
                        Ok(json!({ "echoed": input }))
                    })
                    .await?;
                let run_id = ctx.run_id.clone();
                let shout = echoed["echoed"]["text"].as_str().map(str::to_uppercase);
                let last: Value = ctx
                    .step
                    .run("last", || async move {
                        record(&run_id, "last")?;
                        Ok(json!(shout))
                    })
                    .await?;
                Ok(json!({ "first_ran_in": first, "echo": echoed, "last": last }))
            })?,
        Function::builder("fixture-noop")
            .name("Fixture: three no-op steps")
            .on_event("test/noop")
            .handler(|ctx| async move {
                for id in ["a", "b", "c"] {
                    ctx.step.run(id, || async { Ok(()) }).await?;
                }
                Ok(json!("ok"))
            })?,
        Function::builder("fixture-sleep")
            .name("Fixture: sleep between two steps")
            .on_event("test/sleep")
            .handler(|ctx| async move {
                let run_id = ctx.run_id.clone();
                ctx.step
                    .run("before", || async { record(&run_id, "before") })
                    .await?;
                let ms = number(&ctx.event.data, "sleep_ms", 5_000).max(1);
                ctx.step.sleep("nap", Duration::from_millis(ms)).await?;
                let run_id = ctx.run_id.clone();
                ctx.step
                    .run("after", || async { record(&run_id, "after") })
                    .await?;
                Ok(json!({ "slept_ms": ms }))
            })?,
        Function::builder("fixture-wait")
            .name("Fixture: wait for test/resume with the same key")
            .on_event("test/wait")
            .handler(|ctx| async move {
                let timeout =
                    Duration::from_millis(number(&ctx.event.data, "timeout_ms", 600_000).max(1));
                let got = ctx
                    .step
                    .wait_for_event(
                        "resume",
                        WaitForEvent {
                            event: "test/resume".into(),
                            timeout,
                            match_field: Some("data.key".into()),
                            if_expr: None,
                        },
                    )
                    .await?;
                Ok(json!({ "resumed_by": got.map(|e| e.id) }))
            })?,
        Function::builder("fixture-flaky")
            .name("Fixture: a step that fails its first attempts")
            .on_event("test/flaky")
            .retries(3)
            .handler(|ctx| async move {
                let fail_times = number(&ctx.event.data, "fail_times", 2);
                let run_id = ctx.run_id.clone();
                let attempt: u64 = ctx
                    .step
                    .run("flaky", || async move {
                        record(&run_id, "flaky")?;
                        let tries = flaky_attempt(&run_id);
                        if tries <= fail_times {
                            return Err(Error::retriable(format!(
                                "attempt {tries} fails on purpose"
                            )));
                        }
                        Ok(tries)
                    })
                    .await?;
                Ok(json!({ "succeeded_on_attempt": attempt }))
            })?,
        Function::builder("fixture-fail")
            .name("Fixture: always fails, with a failure handler")
            .on_event("test/fail")
            .on_failure(|ctx| async move {
                let failed_run = ctx.event.data.get("run_id").cloned().unwrap_or(Value::Null);
                Ok(json!({ "handled_failure_of": failed_run }))
            })
            .handler(|_ctx| async move {
                Err::<Value, _>(Error::non_retriable("this function always fails"))
            })?,
        Function::builder("fixture-invoke")
            .name("Fixture: invokes fixture-noop")
            .on_event("test/invoke")
            .handler(|ctx| async move {
                let out: Value = ctx
                    .step
                    .invoke(
                        "call-noop",
                        Invoke {
                            function_id: "fixture-noop".into(),
                            data: Default::default(),
                            timeout: Duration::from_secs(60),
                        },
                    )
                    .await?;
                Ok(json!({ "child_output": out }))
            })?,
        Function::builder("fixture-cron")
            .name("Fixture: every minute")
            .on_cron("* * * * *")
            .handler(|ctx| async move {
                let run_id = ctx.run_id.clone();
                ctx.step
                    .run("tick", || async { record(&run_id, "tick") })
                    .await?;
                Ok(json!(ctx.event.data))
            })?,
    ])
}
