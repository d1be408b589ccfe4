//! Functions for the end-to-end tests, registered only when `STEPDESK_TEST_FIXTURES=1`.
//!
//! Step side effects are appended to the file named by `STEPDESK_FIXTURE_LOG` (one line per
//! execution, fsynced), so a test can prove that a completed step never runs twice, even
//! across a SIGKILL.

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

fn millis(ctx_data: &serde_json::Map<String, Value>, key: &str) -> u64 {
    ctx_data.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub fn functions() -> anyhow::Result<Vec<Function>> {
    Ok(vec![
        Function::builder("fixture-steps")
            .name("Fixture: three recorded steps")
            .on_event("test/steps")
            .handler(|ctx| async move {
                let pause = Duration::from_millis(millis(&ctx.event.data, "step_ms"));
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
                let ms = millis(&ctx.event.data, "sleep_ms").max(1);
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
                let timeout = Duration::from_millis(millis(&ctx.event.data, "timeout_ms").max(1));
                let got = ctx
                    .step
                    .wait_for_event(
                        "resume",
                        WaitForEvent {
                            event: "test/resume".into(),
                            timeout,
                            match_field: Some("data.key".into()),
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
                let fail_times = millis(&ctx.event.data, "fail_times");
                let run_id = ctx.run_id.clone();
                let attempt: u64 = ctx
                    .step
                    .run("flaky", || async move {
                        record(&run_id, "flaky")?;
                        let path = std::env::var_os("STEPDESK_FIXTURE_LOG");
                        let tries = path
                            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                            .map(|s| {
                                s.lines()
                                    .filter(|l| l.starts_with(&run_id) && l.ends_with(" flaky"))
                                    .count()
                            })
                            .unwrap_or(1) as u64;
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
