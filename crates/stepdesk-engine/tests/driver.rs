//! The driver API: a function whose steps execute elsewhere (as an SDK app's do) and whose
//! handler only reads the memo and reports outcomes, driven through retries, a final
//! failure, a sleep, waits with `if`, an invoke and completion by a real engine.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::step::{hash_step_id, StepState};
use stepdesk_engine::{Error, Function, StepKind};

use common::remote::*;
use common::*;

fn child() -> Function {
    Function::builder("child")
        .on_event("app/child")
        .handler(|ctx| async move {
            let n = ctx.event.data["n"].as_i64().unwrap_or(0);
            Ok(json!({"doubled": n * 2}))
        })
        .unwrap()
}

/// The kinds and states (without values) of a memo, in order.
fn shape(memo: &[stepdesk_engine::RecordedStep]) -> Vec<(String, StepKind, String)> {
    memo.iter()
        .map(|s| {
            let state = match &s.state {
                StepState::Completed(_) => "completed".to_string(),
                StepState::Failed(_) => "failed".to_string(),
                StepState::Retrying { attempts } => format!("retrying {attempts}"),
                StepState::Pending => "pending".to_string(),
            };
            (s.step_id.clone(), s.kind, state)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_using_only_the_driver_api_runs_every_kind_of_step() {
    let seen = observations();
    let program = vec![
        // Fails once, asking not to be retried before 300 ms; then succeeds.
        (
            "flaky",
            run(|attempt| match attempt {
                0 => Err(Error::retry_after("busy", Duration::from_millis(300))),
                n => Ok(json!({"ok_at_attempt": n})),
            }),
        ),
        // Fails every attempt: retried with the engine's backoff, then failed for good.
        (
            "doomed",
            run(|attempt| Err(Error::retriable(format!("boom {attempt}")))),
        ),
        ("nap", RemoteOp::Sleep(Duration::from_millis(150))),
        (
            "approval",
            RemoteOp::Wait {
                event: "app/approve",
                if_expr: Some("async.data.id == event.data.id && async.data.ok"),
                timeout: Duration::from_secs(30),
            },
        ),
        (
            "never",
            RemoteOp::Wait {
                event: "app/never",
                if_expr: None,
                timeout: Duration::from_millis(100),
            },
        ),
        (
            "call-child",
            RemoteOp::Invoke {
                function: "child",
                data: json!({"n": 21}),
                timeout: Duration::from_secs(30),
            },
        ),
    ];
    let remote = remote_function("remote", "app/start", 2, program, seen.clone());
    let (engine, _dir) = start(vec![remote, child()]).await;
    send(&engine, json!({"name": "app/start", "data": {"id": "r-1"}})).await;
    let run = wait_runs(&engine, "remote", 1).await.remove(0);

    // The wait: an event that does not satisfy the `if` leaves it waiting; one that does
    // resumes the run. (Ingest resolves waits in the event's own commit.)
    wait_step(&engine, &run.id, "approval", StepStatus::Waiting).await;
    send(
        &engine,
        json!({"name": "app/approve", "data": {"id": "someone-else", "ok": true}}),
    )
    .await;
    send(
        &engine,
        json!({"name": "app/approve", "data": {"id": "r-1", "ok": false}}),
    )
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(step(&d, "approval").status, StepStatus::Waiting, "{d:#?}");
    let matching = send(
        &engine,
        json!({"name": "app/approve", "data": {"id": "r-1", "ok": true}}),
    )
    .await;

    let d = wait_status(&engine, &run.id, "Completed").await;
    let out = d.output.clone().unwrap();
    assert_eq!(out["flaky"], json!({"ok_at_attempt": 1}));
    assert_eq!(out["doomed"], json!({"error": "boom 2"}));
    assert_eq!(out["nap"], Value::Null);
    assert_eq!(out["approval"]["data"], json!({"id": "r-1", "ok": true}));
    assert_eq!(out["never"], Value::Null, "the second wait timed out");
    assert_eq!(out["call-child"], json!({"doubled": 42}));

    // The engine's records of it look like a Rust run's.
    let flaky = step(&d, "flaky");
    assert_eq!((flaky.status, flaky.attempts), (StepStatus::Completed, 2));
    let retry_at = flaky.failed_attempts[0].retry_at.unwrap();
    assert!(
        retry_at - flaky.failed_attempts[0].ended_at >= 250,
        "Retry-After was honoured: {flaky:#?}"
    );
    let doomed = step(&d, "doomed");
    assert_eq!((doomed.status, doomed.attempts), (StepStatus::Failed, 3));
    assert_eq!(doomed.failed_attempts.len(), 3);
    assert_eq!(step(&d, "nap").kind, StepKind::Sleep);
    assert_eq!(step(&d, "call-child").kind, StepKind::Invoke);
    let child_run = single_run(&engine, "child", "Completed").await;
    assert_eq!(child_run.parent_run_id.as_deref(), Some(run.id.as_str()));

    let seen = seen.lock().unwrap().clone();
    // Every execution saw the function's attempts and the run's one event.
    for o in &seen {
        assert_eq!(o.max_attempts, 3);
        assert_eq!(o.attempt, 0);
        assert_eq!(o.events.len(), 1);
        assert_eq!(o.events[0]["data"], json!({"id": "r-1"}));
        assert_eq!(o.events[0]["name"], json!("app/start"));
    }
    // The retrying step's attempt, as the memo and `retrying_attempt` say it.
    let retrying: Vec<(String, Option<u32>)> = seen
        .iter()
        .filter_map(|o| {
            o.memo.iter().find_map(|s| match s.state {
                StepState::Retrying { attempts } => Some((
                    s.step_id.clone(),
                    o.retrying_attempt.filter(|a| *a == attempts),
                )),
                _ => None,
            })
        })
        .collect();
    assert_eq!(
        retrying,
        [
            ("flaky".to_string(), Some(1)),
            ("doomed".to_string(), Some(1)),
            ("doomed".to_string(), Some(2)),
        ]
    );
    assert!(seen.iter().all(|o| o.retrying_attempt.is_some()
        == o.memo
            .iter()
            .any(|s| matches!(s.state, StepState::Retrying { .. }))));

    // The memo the last execution read: every step, in the order they finished, each with
    // its kind and the value a driver shapes the SDK's memo from.
    let last = seen.last().unwrap();
    assert_eq!(
        shape(&last.memo),
        [
            ("flaky".into(), StepKind::Run, "completed".into()),
            ("doomed".into(), StepKind::Run, "failed".into()),
            ("nap".into(), StepKind::Sleep, "completed".into()),
            (
                "approval".into(),
                StepKind::WaitForEvent,
                "completed".into()
            ),
            ("never".into(), StepKind::WaitForEvent, "completed".into()),
            ("call-child".into(), StepKind::Invoke, "completed".into()),
        ]
    );
    let by_id = |id: &str| last.memo.iter().find(|s| s.step_id == id).unwrap();
    assert_eq!(by_id("flaky").hash, hash_step_id("flaky"));
    assert!(matches!(&by_id("doomed").state, StepState::Failed(e) if e.message == "boom 2"));
    assert_eq!(by_id("nap").state, StepState::Completed(Value::Null));
    match &by_id("approval").state {
        StepState::Completed(event) => {
            assert_eq!(event["name"], json!("app/approve"));
            assert_eq!(
                event["id"],
                json!(matching[0]),
                "the bare event that matched"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(by_id("never").state, StepState::Completed(Value::Null));
    assert_eq!(
        by_id("call-child").state,
        StepState::Completed(json!({"doubled": 42}))
    );
    stop(&engine).await;
}

/// The memo is in the order steps finished, not the order they were first reported: a
/// body that retries `a`, meanwhile takes another path and finishes `b`, then finishes `a`
/// reads `[b, a]` (the SDK's `ctx.stack`), read back from memory between executions and
/// from the database after the retry's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memo_is_in_completion_order() {
    let seen = observations();
    let f = {
        let seen = seen.clone();
        Function::builder("zigzag")
            .on_event("app/zigzag")
            .handler(move |ctx| {
                let seen = seen.clone();
                async move {
                    let memo = ctx.step.memo();
                    seen.lock().unwrap().push(Observation {
                        memo: memo.clone(),
                        attempt: ctx.attempt,
                        retrying_attempt: ctx.step.retrying_attempt(),
                        max_attempts: ctx.max_attempts,
                        events: ctx.events(),
                    });
                    let (a, b) = (hash_step_id("a"), hash_step_id("b"));
                    let state =
                        |h: &str| memo.iter().find(|s| s.hash == h).map(|s| s.state.clone());
                    let now = now_ms();
                    match (state(&a), state(&b)) {
                        (None, _) => Err(ctx.step.record_run(
                            &a,
                            "a",
                            Some(json!({"x": 1})),
                            Err(Error::retriable("not yet")),
                            now,
                            now,
                        )),
                        (Some(StepState::Retrying { .. }), None) => {
                            Err(ctx.step.record_run(&b, "b", None, Ok(json!("b")), now, now))
                        }
                        (Some(StepState::Retrying { .. }), Some(_)) => {
                            Err(ctx.step.record_run(&a, "a", None, Ok(json!("a")), now, now))
                        }
                        _ => Ok(json!("done")),
                    }
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/zigzag"})).await;
    let d = single_run(&engine, "zigzag", "Completed").await;
    // The console keeps the order the run reached them, and the input first reported.
    let ids: Vec<&str> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(step(&d, "a").input, Some(json!({"x": 1})));
    assert_eq!(step(&d, "a").attempts, 2);
    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|o| (shape(&o.memo), o.retrying_attempt))
        .collect();
    let a = |state: &str| ("a".to_string(), StepKind::Run, state.to_string());
    let b = |state: &str| ("b".to_string(), StepKind::Run, state.to_string());
    assert_eq!(
        seen,
        [
            (vec![], None),
            (vec![a("retrying 1")], Some(1)),
            (vec![b("completed"), a("retrying 1")], Some(1)),
            (vec![b("completed"), a("completed")], None),
        ]
    );

    // Read back from the database (a new engine on the same data directory would): the
    // same order.
    let order = engine
        .store()
        .read({
            let run_id = d.summary.id.clone();
            move |c| {
                let mut stmt =
                    c.prepare("SELECT step_id FROM steps WHERE run_id = ?1 ORDER BY done_seq")?;
                let rows = stmt.query_map([run_id], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            }
        })
        .await
        .unwrap();
    assert_eq!(order, ["b", "a"]);
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_that_fails_an_invoke_and_a_step_for_good_sees_the_errors() {
    let seen = observations();
    let program = vec![
        ("fatal", run(|_| Err(Error::non_retriable("no way")))),
        (
            "call-missing",
            RemoteOp::Invoke {
                function: "no-such-function",
                data: json!({}),
                timeout: Duration::from_secs(5),
            },
        ),
    ];
    let remote = remote_function("remote", "app/start", 4, program, seen.clone());
    let (engine, _dir) = start(vec![remote]).await;
    send(&engine, json!({"name": "app/start"})).await;
    let d = single_run(&engine, "remote", "Completed").await;
    let fatal = step(&d, "fatal");
    assert_eq!(
        (fatal.status, fatal.attempts),
        (StepStatus::Failed, 1),
        "a non-retriable error is not retried"
    );
    let out = d.output.unwrap();
    assert_eq!(out["fatal"], json!({"error": "no way"}));
    assert!(
        out["call-missing"]["error"]
            .as_str()
            .unwrap()
            .contains("no such function"),
        "{out}"
    );
    let last = seen.lock().unwrap().last().unwrap().memo.clone();
    assert_eq!(
        shape(&last),
        [
            ("fatal".into(), StepKind::Run, "failed".into()),
            ("call-missing".into(), StepKind::Invoke, "failed".into()),
        ]
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_fail_the_run_naming_the_problem() {
    let f = Function::builder("bad-hash")
        .on_event("app/bad")
        .retries(0)
        .handler(|ctx| async move { Err::<Value, _>(ctx.step.record_sleep("$function", "nap", 0)) })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/bad"})).await;
    let d = single_run(&engine, "bad-hash", "Failed").await;
    let message = d.error.unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("not a SHA-1"), "{message}");
    assert!(d.steps.is_empty(), "nothing was recorded");
    stop(&engine).await;
}

/// As tests/durability.rs: the engine stops mid-sleep without a clean end (as after a
/// kill), starts again on the same directory, and the run resumes where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_driver_run_resumes_after_a_crash() {
    let before = counter();
    let after = counter();
    let program = |before: Counter, after: Counter| {
        vec![
            ("before", run(move |_| Ok(json!(bump(&before))))),
            ("nap", RemoteOp::Sleep(Duration::from_millis(600))),
            ("after", run(move |_| Ok(json!(bump(&after))))),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let seen = observations();
    let f = remote_function(
        "remote",
        "app/start",
        4,
        program(before.clone(), after.clone()),
        seen.clone(),
    );
    let engine = start_in(dir.path(), vec![f]).await;
    send(&engine, json!({"name": "app/start"})).await;
    let run = wait_runs(&engine, "remote", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    let wake_at = step(&d, "nap").wake_at.unwrap();
    within("shutdown", engine.shutdown(Duration::from_millis(50))).await;
    drop(engine);
    crash_marks(dir.path()).await;
    assert_eq!((count(&before), count(&after)), (1, 0));

    let seen = observations();
    let f = remote_function(
        "remote",
        "app/start",
        4,
        program(before.clone(), after.clone()),
        seen.clone(),
    );
    let engine = start_in(dir.path(), vec![f]).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(
        d.output,
        Some(json!({"before": 1, "nap": null, "after": 1}))
    );
    assert_eq!((count(&before), count(&after)), (1, 1), "no step ran twice");
    assert!(step(&d, "after").started_at.unwrap() >= wake_at);
    let last = seen.lock().unwrap().last().unwrap().memo.clone();
    assert_eq!(
        shape(&last),
        [
            ("before".into(), StepKind::Run, "completed".into()),
            ("nap".into(), StepKind::Sleep, "completed".into()),
            ("after".into(), StepKind::Run, "completed".into()),
        ]
    );
    stop(&engine).await;
}

/// Several `run` steps reported in one execution (parallel steps, checkpointed steps), then
/// the function's value: one execution, every step written in order, the run completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_steps_reported_in_one_execution_are_written_together() {
    let executions = counter();
    let seen = executions.clone();
    let f = Function::builder("batch")
        .on_event("app/batch")
        .handler(move |ctx| {
            let seen = seen.clone();
            async move {
                bump(&seen);
                let t = now_ms();
                for (i, id) in ["a", "b", "c"].iter().enumerate() {
                    let e =
                        ctx.step
                            .record_run(&hash_step_id(id), id, None, Ok(json!(i)), t, t + 1);
                    assert!(matches!(e, Error::Interrupt), "{e:?}");
                }
                // The same step again in this execution: the first report stands.
                let again =
                    ctx.step
                        .record_run(&hash_step_id("a"), "a", None, Ok(json!("late")), t, t);
                assert!(matches!(again, Error::Interrupt));
                Ok(json!({"done": true}))
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/batch"})).await;
    let d = single_run(&engine, "batch", "Completed").await;
    assert_eq!(
        count(&executions),
        1,
        "one execution wrote the steps and the end"
    );
    assert_eq!(d.output, Some(json!({"done": true})));
    let ids: Vec<_> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(step(&d, "a").output, Some(json!(0)));
    assert_eq!(step(&d, "c").output, Some(json!(2)));
    stop(&engine).await;
}

/// A checkpointing SDK runs a run's steps in one call request and reports each as it
/// finishes, while that request is still in flight. Each reported step is written at once:
/// a crash of Stepdesk during the request runs none of them again. (Before, they were
/// written with the request's answer, and a crash ran every one of them again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_reported_during_an_execution_are_written_before_it_ends_and_survive_a_crash() {
    // The handler: the steps not yet memoized are "executed" (counted) and reported one by
    // one; then, the first time, the request stays in flight for good (until the crash);
    // after the crash, the function returns what the memo held.
    fn handler(executed: Counter, hang: bool) -> Function {
        Function::builder("checkpointing")
            .on_event("app/checkpointing")
            .handler(move |ctx| {
                let executed = executed.clone();
                async move {
                    let memo = ctx.step.memo();
                    for id in ["a", "b"] {
                        if memo.iter().any(|s| s.step_id == id) {
                            continue;
                        }
                        bump(&executed);
                        let t = now_ms();
                        let e =
                            ctx.step
                                .record_run(&hash_step_id(id), id, None, Ok(json!(id)), t, t);
                        assert!(matches!(e, Error::Interrupt), "{e:?}");
                    }
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    let memoized: Vec<_> = memo.iter().map(|s| s.step_id.clone()).collect();
                    Ok(json!({ "memoized": memoized }))
                }
            })
            .unwrap()
    }
    let executed = counter();
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![handler(executed.clone(), true)]).await;
    send(&engine, json!({"name": "app/checkpointing"})).await;
    let run = wait_runs(&engine, "checkpointing", 1).await.remove(0);
    // Both steps are stored while their execution is still in flight.
    let d = wait_step(&engine, &run.id, "b", StepStatus::Completed).await;
    assert_eq!(step(&d, "a").status, StepStatus::Completed);
    assert_eq!(step(&d, "a").output, Some(json!("a")));
    assert_eq!(d.summary.status, stepdesk_engine::RunStatus::Running);
    within("shutdown", engine.shutdown(Duration::from_millis(50))).await;
    drop(engine);
    crash_marks(dir.path()).await;
    assert_eq!(count(&executed), 2);

    let engine = start_in(dir.path(), vec![handler(executed.clone(), false)]).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(count(&executed), 2, "no step ran again after the crash");
    assert_eq!(d.output, Some(json!({"memoized": ["a", "b"]})));
    stop(&engine).await;
}

/// Two parallel steps answer in one execution, the first failed (to be retried), the second
/// finished: the run waits for the retry, and the finished step is kept (written as it was
/// reported), not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_finished_after_a_failed_one_is_kept_while_the_run_waits_for_the_retry() {
    let seen = observations();
    let log = seen.clone();
    let f = Function::builder("pair")
        .on_event("app/pair")
        .retries(2)
        .handler(move |ctx| {
            let log = log.clone();
            async move {
                let memo = ctx.step.memo();
                Observation::note(&log, &ctx, &memo);
                let t = now_ms();
                let has = |id: &str| memo.iter().any(|s| s.step_id == id);
                if memo.is_empty() {
                    let _ = ctx.step.record_run(
                        &hash_step_id("flaky"),
                        "flaky",
                        None,
                        Err(Error::retry_after("busy", Duration::from_millis(200))),
                        t,
                        t,
                    );
                    return Err(ctx.step.record_run(
                        &hash_step_id("b"),
                        "b",
                        None,
                        Ok(json!("b")),
                        t,
                        t,
                    ));
                }
                if !has("b") {
                    return Err(ctx.step.record_run(
                        &hash_step_id("b"),
                        "b",
                        None,
                        Ok(json!("again")),
                        t,
                        t,
                    ));
                }
                if !memo
                    .iter()
                    .any(|s| s.step_id == "flaky" && matches!(s.state, StepState::Completed(_)))
                {
                    return Err(ctx.step.record_run(
                        &hash_step_id("flaky"),
                        "flaky",
                        None,
                        Ok(json!(2)),
                        t,
                        t,
                    ));
                }
                Ok(json!("end"))
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/pair"})).await;
    let d = single_run(&engine, "pair", "Completed").await;
    assert_eq!(step(&d, "b").output, Some(json!("b")), "b ran once");
    assert_eq!(step(&d, "flaky").attempts, 2);
    let obs = seen.lock().unwrap().clone();
    let mut second = shape(&obs[1].memo);
    second.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        second,
        vec![
            ("b".into(), StepKind::Run, "completed".into()),
            ("flaky".into(), StepKind::Run, "retrying 1".into()),
        ],
        "the execution after the retry's wait sees b finished"
    );
    stop(&engine).await;
}

/// A step that failed among several reported ones stops the run until its retry: the
/// finished steps are kept, the sleep reported after them is not (the replay finds it
/// again), and a report after a sleep in the same execution is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_among_several_waits_for_its_retry() {
    let seen = observations();
    let log = seen.clone();
    let f = Function::builder("mixed")
        .on_event("app/mixed")
        .retries(2)
        .handler(move |ctx| {
            let log = log.clone();
            async move {
                let memo = ctx.step.memo();
                Observation::note(&log, &ctx, &memo);
                let t = now_ms();
                let done = |id: &str| {
                    memo.iter()
                        .any(|s| s.step_id == id && matches!(s.state, StepState::Completed(_)))
                };
                if memo.is_empty() {
                    let _ =
                        ctx.step
                            .record_run(&hash_step_id("ok"), "ok", None, Ok(json!(1)), t, t);
                    let _ = ctx.step.record_run(
                        &hash_step_id("flaky"),
                        "flaky",
                        None,
                        Err(Error::retry_after("busy", Duration::from_millis(200))),
                        t,
                        t,
                    );
                    return Err(ctx
                        .step
                        .record_sleep(&hash_step_id("nap"), "nap", t + 60_000));
                }
                if !done("flaky") {
                    return Err(ctx.step.record_run(
                        &hash_step_id("flaky"),
                        "flaky",
                        None,
                        Ok(json!(2)),
                        t,
                        t,
                    ));
                }
                if done("short") {
                    return Ok(json!("end"));
                }
                // A sleep, then a run report: the run report is ignored.
                let _ = ctx
                    .step
                    .record_sleep(&hash_step_id("short"), "short", t + 50);
                let ignored =
                    ctx.step
                        .record_run(&hash_step_id("after"), "after", None, Ok(json!(3)), t, t);
                assert!(matches!(ignored, Error::Interrupt));
                Err(Error::Interrupt)
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/mixed"})).await;
    let d = single_run(&engine, "mixed", "Completed").await;
    assert_eq!(d.output, Some(json!("end")));
    let ids: Vec<_> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ok", "flaky", "short"], "no `nap`, no `after`");
    assert_eq!(step(&d, "flaky").attempts, 2);
    assert_eq!(step(&d, "flaky").failed_attempts.len(), 1);
    let obs = seen.lock().unwrap().clone();
    assert_eq!(
        shape(&obs[1].memo),
        vec![
            ("ok".into(), StepKind::Run, "completed".into()),
            ("flaky".into(), StepKind::Run, "retrying 1".into()),
        ],
        "the second execution sees the finished step and the retrying one"
    );
    stop(&engine).await;
}
