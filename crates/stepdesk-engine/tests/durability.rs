//! Restarting the engine in-process on the same data directory: unfinished runs resume,
//! completed steps never run again, and suspended runs wake or resolve as before.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stepdesk_engine::{Error, Function, WaitForEvent};

use common::*;

struct Counters {
    before: Counter,
    after: Counter,
}

fn functions(c: &Counters, nap: Duration) -> Vec<Function> {
    let (before, after) = (c.before.clone(), c.after.clone());
    let sleeper = Function::builder("sleeper")
        .on_event("app/sleep")
        .handler(move |ctx| {
            let (before, after) = (before.clone(), after.clone());
            async move {
                let b: usize = ctx
                    .step
                    .run("before", || async move { Ok(bump(&before)) })
                    .await?;
                ctx.step.sleep("nap", nap).await?;
                let a: usize = ctx
                    .step
                    .run("after", || async move { Ok(bump(&after)) })
                    .await?;
                Ok(json!({"before": b, "after": a}))
            }
        })
        .unwrap();
    let before = c.before.clone();
    let waiter = Function::builder("waiter")
        .on_event("app/wait")
        .handler(move |ctx| {
            let before = before.clone();
            async move {
                ctx.step
                    .run("before", || async move { Ok(bump(&before)) })
                    .await?;
                let got = ctx
                    .step
                    .wait_for_event(
                        "resume",
                        WaitForEvent {
                            event: "app/resume".into(),
                            timeout: Duration::from_secs(60),
                            match_field: Some("data.key".into()),
                            if_expr: None,
                        },
                    )
                    .await?;
                Ok(json!({"resumed_by": got.map(|e| e.id)}))
            }
        })
        .unwrap();
    vec![sleeper, waiter]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_resumes_after_a_restart_without_repeating_steps() {
    let c = Counters {
        before: counter(),
        after: counter(),
    };
    let nap = Duration::from_millis(800);
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), functions(&c, nap)).await;
    let ids = send(&engine, json!({"name": "app/sleep"})).await;
    let run = wait_runs(&engine, "sleeper", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    let wake_at = step(&d, "nap").wake_at.unwrap();
    stop(&engine).await;
    drop(engine);
    assert_eq!((count(&c.before), count(&c.after)), (1, 0));

    let engine = start_in(dir.path(), functions(&c, nap)).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"before": 1, "after": 1})));
    assert_eq!(
        (count(&c.before), count(&c.after)),
        (1, 1),
        "no step ran twice"
    );
    assert!(
        step(&d, "after").started_at.unwrap() >= wake_at,
        "the run did not wake early"
    );
    // The event and the run's history survived too.
    assert_eq!(
        engine.admin().event(&ids[0]).await.unwrap().name,
        "app/sleep"
    );
    assert_eq!(d.steps.len(), 3);
    assert_eq!(
        runs_of(&engine, "sleeper").await.len(),
        1,
        "no new run was made"
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_that_ended_while_stopped_resumes_at_start_up() {
    let c = Counters {
        before: counter(),
        after: counter(),
    };
    let nap = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), functions(&c, nap)).await;
    send(&engine, json!({"name": "app/sleep"})).await;
    let run = wait_runs(&engine, "sleeper", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    let wake_at = step(&d, "nap").wake_at.unwrap();
    stop(&engine).await;
    drop(engine);
    // Stay stopped until the sleep is over.
    eventually("the wake time to pass while stopped", || async {
        (now_ms() > wake_at + 50).then_some(())
    })
    .await;
    assert_eq!(count(&c.after), 0);

    let engine = start_in(dir.path(), functions(&c, nap)).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"before": 1, "after": 1})));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_a_restart_and_is_resolved_by_the_new_engine() {
    let c = Counters {
        before: counter(),
        after: counter(),
    };
    let nap = Duration::from_millis(100);
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), functions(&c, nap)).await;
    send(&engine, json!({"name": "app/wait", "data": {"key": "k9"}})).await;
    let run = wait_runs(&engine, "waiter", 1).await.remove(0);
    wait_step(&engine, &run.id, "resume", StepStatus::Waiting).await;
    stop(&engine).await;
    drop(engine);

    let engine = start_in(dir.path(), functions(&c, nap)).await;
    // Still waiting after the restart (the restart did not time it out or resolve it).
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d.summary.status, "Running");
    send(
        &engine,
        json!({"name": "app/resume", "id": "other", "data": {"key": "nope"}}),
    )
    .await;
    send(
        &engine,
        json!({"name": "app/resume", "id": "mine", "data": {"key": "k9"}}),
    )
    .await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"resumed_by": "mine"})));
    assert_eq!(count(&c.before), 1);
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_step_keeps_its_attempt_count_across_a_restart() {
    let calls = counter();
    let make = |calls: Counter| {
        Function::builder("retry-restart")
            .on_event("app/retry-restart")
            .retries(3)
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    let n: usize = ctx
                        .step
                        .run("flaky", || async move {
                            let n = bump(&calls);
                            if n == 1 {
                                // Long enough to restart the engine before the retry.
                                return Err(Error::retry_after("later", Duration::from_secs(1)));
                            }
                            Ok(n)
                        })
                        .await?;
                    Ok(json!(n))
                }
            })
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![make(calls.clone())]).await;
    send(&engine, json!({"name": "app/retry-restart"})).await;
    let run = wait_runs(&engine, "retry-restart", 1).await.remove(0);
    wait_step(&engine, &run.id, "flaky", StepStatus::Retrying).await;
    stop(&engine).await;
    drop(engine);

    let engine = start_in(dir.path(), vec![make(calls.clone())]).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!(2)));
    assert_eq!(count(&calls), 2);
    let s = step(&d, "flaky");
    assert_eq!(s.attempts, 2);
    assert_eq!(s.failed_attempts.len(), 1);
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_a_function_no_longer_registered_fails_on_restart() {
    let c = Counters {
        before: counter(),
        after: counter(),
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), functions(&c, Duration::from_millis(300))).await;
    send(&engine, json!({"name": "app/sleep"})).await;
    let run = wait_runs(&engine, "sleeper", 1).await.remove(0);
    wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    stop(&engine).await;
    drop(engine);

    let only_waiter: Vec<Function> = functions(&c, Duration::from_millis(300))
        .into_iter()
        .filter(|f| f.id == "waiter")
        .collect();
    let engine = start_in(dir.path(), only_waiter).await;
    let d = wait_status(&engine, &run.id, "Failed").await;
    assert_eq!(d.error.unwrap()["name"], json!("FunctionNotFound"));
    assert_eq!(count(&c.after), 0);
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_timed_out_while_stopped_resumes_with_none() {
    let f = || {
        Function::builder("short-wait")
            .on_event("app/short-wait")
            .handler(|ctx| async move {
                let got = ctx
                    .step
                    .wait_for_event(
                        "w",
                        WaitForEvent {
                            event: "app/never".into(),
                            timeout: Duration::from_millis(300),
                            match_field: None,
                            if_expr: None,
                        },
                    )
                    .await?;
                Ok(json!({"got": got.map(|e| e.id)}))
            })
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![f()]).await;
    send(&engine, json!({"name": "app/short-wait"})).await;
    let run = wait_runs(&engine, "short-wait", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "w", StepStatus::Waiting).await;
    let expires = step(&d, "w").wake_at.unwrap();
    stop(&engine).await;
    drop(engine);
    eventually("the wait to expire while stopped", || async {
        (now_ms() > expires + 50).then_some(())
    })
    .await;

    let engine = start_in(dir.path(), vec![f()]).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"got": null})));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_interrupted_by_shutdown_runs_again_after_the_restart() {
    let (calls, done) = (counter(), counter());
    let release = Arc::new(tokio::sync::Notify::new());
    let make = |calls: Counter, done: Counter, release: Arc<tokio::sync::Notify>| {
        Function::builder("interrupted")
            .on_event("app/interrupted")
            .handler(move |ctx| {
                let (calls, done, release) = (calls.clone(), done.clone(), release.clone());
                async move {
                    ctx.step.run("first", || async { Ok(1) }).await?;
                    let n: usize = ctx
                        .step
                        .run("slow", || async move {
                            let n = bump(&calls);
                            if n == 1 {
                                // The first attempt is still running when the engine stops.
                                release.notified().await;
                            }
                            Ok(n)
                        })
                        .await?;
                    bump(&done);
                    Ok(json!(n))
                }
            })
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(
        dir.path(),
        vec![make(calls.clone(), done.clone(), release.clone())],
    )
    .await;
    send(&engine, json!({"name": "app/interrupted"})).await;
    let run = wait_runs(&engine, "interrupted", 1).await.remove(0);
    let c = calls.clone();
    eventually("the slow step to start", move || {
        let c = c.clone();
        async move { (count(&c) == 1).then_some(()) }
    })
    .await;
    // While it executes, the step shows as running.
    let d = wait_step(&engine, &run.id, "slow", StepStatus::Running).await;
    let running_since = step(&d, "slow").started_at.unwrap();
    assert!(d.interruptions.is_empty());
    let first_boot = engine.admin().boots(10).await.unwrap();
    assert_eq!(first_boot.len(), 1);
    assert!(first_boot[0].current && first_boot[0].ended_at.is_none());
    within(
        "shutdown with a step in flight",
        engine.shutdown(Duration::from_millis(100)),
    )
    .await;
    drop(engine);

    let engine = start_in(
        dir.path(),
        vec![make(calls.clone(), done.clone(), release.clone())],
    )
    .await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(
        d.output,
        Some(json!(2)),
        "the unacknowledged step ran again"
    );
    assert_eq!(step(&d, "first").attempts, 1);
    assert_eq!(step(&d, "slow").attempts, 1);
    // The cut-short attempt is recorded, with both boots; the old one ended cleanly.
    let boots = engine.admin().boots(10).await.unwrap();
    assert_eq!(boots.len(), 2);
    assert!(boots[0].current && !boots[1].current);
    assert!(boots[1].ended_at.is_some());
    assert_eq!(d.interruptions.len(), 1, "{:?}", d.interruptions);
    let i = &d.interruptions[0];
    assert_eq!(i.step_id, "slow");
    assert_eq!(i.started_at, Some(running_since));
    assert_eq!(i.boot_id, Some(boots[1].id));
    assert_eq!(i.stopped_at, boots[1].ended_at);
    assert_eq!(
        (i.resumed_boot_id, i.resumed_at),
        (boots[0].id, boots[0].started_at)
    );
    assert_eq!(step(&d, "first").status, StepStatus::Completed);
    // Let the orphaned first attempt finish: the old engine's store is closed, so it
    // cannot record anything.
    release.notify_one();
    let d2 = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d2.output, Some(json!(2)));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cut_short_by_a_crash_shows_as_interrupted_until_it_runs_again() {
    let calls = counter();
    let release = Arc::new(tokio::sync::Notify::new());
    let make = |calls: Counter, release: Arc<tokio::sync::Notify>| {
        Function::builder("crashy")
            .on_event("app/crashy")
            .handler(move |ctx| {
                let (calls, release) = (calls.clone(), release.clone());
                async move {
                    let n: usize = ctx
                        .step
                        .run("work", || async move {
                            let n = bump(&calls);
                            // Every attempt waits for the test.
                            release.notified().await;
                            Ok(n)
                        })
                        .await?;
                    Ok(json!(n))
                }
            })
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![make(calls.clone(), release.clone())]).await;
    send(&engine, json!({"name": "app/crashy"})).await;
    let run = wait_runs(&engine, "crashy", 1).await.remove(0);
    wait_step(&engine, &run.id, "work", StepStatus::Running).await;
    within("shutdown", engine.shutdown(Duration::from_millis(50))).await;
    drop(engine);
    // As after a kill: the boot has no clean end.
    let store = stepdesk_engine::Store::open(
        &stepdesk_engine::database_path(dir.path()),
        stepdesk_engine::Durability::Normal,
    )
    .unwrap();
    store
        .write(|c| {
            c.execute("UPDATE boots SET ended_at = NULL", [])?;
            Ok(())
        })
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || store.close())
        .await
        .unwrap();

    let engine = start_in(dir.path(), vec![make(calls.clone(), release.clone())]).await;
    // The step runs again (the second attempt is waiting for the release); the first one
    // is on record as cut short by a crash.
    let c = calls.clone();
    eventually("the step to run again", move || {
        let c = c.clone();
        async move { (count(&c) == 2).then_some(()) }
    })
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d.interruptions.len(), 1);
    assert_eq!(d.interruptions[0].stopped_at, None, "no clean end: a crash");
    release.notify_waiters();
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!(2)));
    assert_eq!(step(&d, "work").status, StepStatus::Completed);
    stop(&engine).await;
}
