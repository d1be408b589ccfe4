//! The replaying executor: step memoization, retries, final failure and sleeps, observed
//! through a real engine and its admin API.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stepdesk_engine::step::hash_step_id;
use stepdesk_engine::{Error, Event, Function};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_runs_once_per_run_although_the_body_is_replayed() {
    let (body, a, b, a1) = (counter(), counter(), counter(), counter());
    let f = {
        let (body, a, b, a1) = (body.clone(), a.clone(), b.clone(), a1.clone());
        Function::builder("memo")
            .on_event("app/memo")
            .handler(move |ctx| {
                let (body, a, b, a1) = (body.clone(), a.clone(), b.clone(), a1.clone());
                async move {
                    bump(&body);
                    // A value that differs on every execution: replays must see the first.
                    let first: u64 = ctx
                        .step
                        .run("a", || async move {
                            Ok(bump(&a) as u64 * 1000 + now_ms() as u64 % 1000)
                        })
                        .await?;
                    let second: u64 = ctx
                        .step
                        .run("b", || async move {
                            bump(&b);
                            Ok(first + 1)
                        })
                        .await?;
                    let again: String = ctx
                        .step
                        .run("a", || async move {
                            bump(&a1);
                            Ok("repeat".to_string())
                        })
                        .await?;
                    Ok(json!({"first": first, "second": second, "again": again}))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    let ids = send(&engine, json!({"name": "app/memo", "data": {"n": 7}})).await;
    let d = single_run(&engine, "memo", "Completed").await;

    assert_eq!(
        (count(&a), count(&b), count(&a1)),
        (1, 1, 1),
        "each step body ran once"
    );
    assert!(
        count(&body) >= 4,
        "the body is replayed after each new step (ran {} times)",
        count(&body)
    );
    let out = d.output.clone().expect("the run's output is stored");
    let first = out["first"].as_u64().unwrap();
    assert_eq!(
        out["second"],
        json!(first + 1),
        "replays return the memoized output"
    );
    assert_eq!(out["again"], json!("repeat"));

    // Steps in the order reached, with `:1` for the repeated id and its own memo.
    let ids_in_order: Vec<_> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids_in_order, ["a", "b", "a:1"]);
    for (s, want) in d
        .steps
        .iter()
        .zip([json!(first), json!(first + 1), json!("repeat")])
    {
        assert_eq!(s.kind, StepKind::Run);
        assert_eq!(s.status, StepStatus::Completed);
        assert_eq!(s.hash, hash_step_id(&s.id));
        assert_eq!(s.attempts, 1);
        assert_eq!(s.output, Some(want), "step {}", s.id);
        assert!(s.error.is_none() && s.failed_attempts.is_empty());
        let (started, ended) = (s.started_at.unwrap(), s.ended_at.unwrap());
        assert!(started <= ended && s.duration_ms == Some(ended - started));
    }
    assert_ne!(d.steps[0].hash, d.steps[2].hash);
    assert!(d.steps[0].ended_at <= d.steps[1].started_at);
    assert!(d.steps[1].ended_at <= d.steps[2].started_at);

    // The run itself.
    let s = &d.summary;
    assert_eq!(s.trigger_kind, TriggerKind::Event);
    assert_eq!(s.event_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(s.event_name.as_deref(), Some("app/memo"));
    let (started, ended) = (s.started_at.unwrap(), s.ended_at.unwrap());
    assert!(s.queued_at <= started && started <= ended);
    assert_eq!(s.duration_ms, Some(ended - started));
    assert_eq!(d.event.as_ref().unwrap()["data"], json!({"n": 7}));
    assert!(d.error.is_none() && d.function_attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_twice_then_succeeding_records_its_attempts() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("flaky")
            .on_event("app/flaky")
            .retries(5)
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    let n: usize = ctx
                        .step
                        .run("flaky", || async move {
                            let n = bump(&calls);
                            if n <= 2 {
                                return Err(Error::retriable(format!("failure {n}")));
                            }
                            Ok(n)
                        })
                        .await?;
                    Ok(json!({"succeeded_on": n}))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/flaky"})).await;
    let d = single_run(&engine, "flaky", "Completed").await;

    assert_eq!(count(&calls), 3);
    assert_eq!(d.output, Some(json!({"succeeded_on": 3})));
    let s = step(&d, "flaky");
    assert_eq!((s.status.as_str(), s.attempts), ("Completed", 3));
    assert_eq!(s.output, Some(json!(3)));
    assert_eq!(s.failed_attempts.len(), 2);
    for (i, a) in s.failed_attempts.iter().enumerate() {
        assert_eq!(a.attempt, i as u32);
        assert_eq!(a.error["message"], json!(format!("failure {}", i + 1)));
        assert_eq!(a.error["name"], json!("Error"));
        let retry_at = a.retry_at.expect("a retried attempt has its retry time");
        assert!(retry_at >= a.ended_at + RETRY.as_millis() as i64);
        assert!(a.started_at <= a.ended_at);
    }
    assert!(s.failed_attempts[0].ended_at <= s.failed_attempts[1].started_at);
    assert!(
        d.function_attempts.is_empty(),
        "step retries are not function attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_retries_fails_the_step_and_then_the_run() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("doomed")
            .on_event("app/doomed")
            .retries(2)
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    ctx.step
                        .run("always-fails", || async move {
                            let n = bump(&calls);
                            Err::<(), _>(Error::retriable(format!("nope {n}")))
                        })
                        .await?;
                    Ok(json!("unreachable"))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/doomed"})).await;
    let d = single_run(&engine, "doomed", "Failed").await;

    assert_eq!(count(&calls), 3, "retries(2) means 3 attempts");
    let s = step(&d, "always-fails");
    assert_eq!((s.status.as_str(), s.attempts), ("Failed", 3));
    assert_eq!(s.failed_attempts.len(), 3);
    assert!(s.failed_attempts[..2].iter().all(|a| a.retry_at.is_some()));
    assert_eq!(
        s.failed_attempts[2].retry_at, None,
        "no retry after the last"
    );
    assert_eq!(s.error.as_ref().unwrap()["message"], json!("nope 3"));
    let err = d.error.expect("a failed run has its error");
    assert_eq!(err["message"], json!("nope 3"));
    assert!(d.output.is_none());
    assert!(
        d.function_attempts.len() <= 1,
        "a propagated step failure is not retried at the function level: {:?}",
        d.function_attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_that_the_body_handles_does_not_fail_the_run() {
    let f = Function::builder("handles")
        .on_event("app/handles")
        .retries(1)
        .handler(|ctx| async move {
            let r: Result<(), Error> = ctx
                .step
                .run("bad", || async { Err(Error::retriable("bad step")) })
                .await;
            let message = match r {
                Err(Error::StepFailed(body)) => body.message,
                Err(Error::Interrupt) => return Err(Error::Interrupt),
                other => panic!("unexpected {other:?}"),
            };
            let after: String = ctx
                .step
                .run("after", || async { Ok("recovered".to_string()) })
                .await?;
            Ok(json!({"caught": message, "after": after}))
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/handles"})).await;
    let d = single_run(&engine, "handles", "Completed").await;
    assert_eq!(
        d.output,
        Some(json!({"caught": "bad step", "after": "recovered"}))
    );
    assert_eq!(step(&d, "bad").status, StepStatus::Failed);
    assert_eq!(step(&d, "bad").attempts, 2);
    assert_eq!(step(&d, "after").status, StepStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_four_retries_five_attempts() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("default-retries")
            .on_event("app/default")
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    ctx.step
                        .run("fails", || async move {
                            bump(&calls);
                            Err::<(), _>(Error::retriable("always"))
                        })
                        .await?;
                    Ok(())
                }
            })
            .unwrap()
    };
    assert_eq!(f.retries, 4);
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/default"})).await;
    let d = single_run(&engine, "default-retries", "Failed").await;
    assert_eq!(count(&calls), 5);
    let s = step(&d, "fails");
    assert_eq!(s.attempts, 5);
    let attempts: Vec<u32> = s.failed_attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(attempts, [0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retriable_step_error_fails_after_one_attempt() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("fatal")
            .on_event("app/fatal")
            .retries(5)
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    ctx.step
                        .run("fatal", || async move {
                            bump(&calls);
                            Err::<(), _>(Error::non_retriable("bad input"))
                        })
                        .await?;
                    Ok(())
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/fatal"})).await;
    let d = single_run(&engine, "fatal", "Failed").await;
    assert_eq!(count(&calls), 1);
    let s = step(&d, "fatal");
    assert_eq!((s.status.as_str(), s.attempts), ("Failed", 1));
    assert_eq!(s.failed_attempts.len(), 1);
    assert_eq!(s.failed_attempts[0].retry_at, None);
    let err = d.error.unwrap();
    assert_eq!(err["name"], json!("NonRetriableError"));
    assert_eq!(err["message"], json!("bad input"));
    assert!(d.function_attempts.len() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_waits_at_least_the_requested_time() {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let f = {
        let calls = calls.clone();
        Function::builder("retry-after")
            .on_event("app/retry-after")
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    ctx.step
                        .run("rate-limited", || async move {
                            let n = {
                                let mut c = calls.lock().unwrap();
                                c.push(Instant::now());
                                c.len()
                            };
                            if n == 1 {
                                return Err(Error::retry_after(
                                    "slow down",
                                    Duration::from_millis(1200),
                                ));
                            }
                            Ok(n)
                        })
                        .await?;
                    Ok(())
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/retry-after"})).await;
    let d = single_run(&engine, "retry-after", "Completed").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let gap = calls[1] - calls[0];
    assert!(
        gap >= Duration::from_millis(1150),
        "the retry came after {gap:?}, not after the requested 1.2 s (the engine's interval is {RETRY:?})"
    );
    let a = &step(&d, "rate-limited").failed_attempts[0];
    assert_eq!(a.error["name"], json!("RetryAfterError"));
    assert!(a.retry_at.unwrap() >= a.ended_at + 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_outside_steps_retries_the_function_without_rerunning_done_steps() {
    let (setup, attempts_seen) = (counter(), Arc::new(Mutex::new(Vec::new())));
    let f = {
        let (setup, attempts_seen) = (setup.clone(), attempts_seen.clone());
        Function::builder("fn-retry")
            .on_event("app/fn-retry")
            .retries(3)
            .handler(move |ctx| {
                let (setup, attempts_seen) = (setup.clone(), attempts_seen.clone());
                async move {
                    let v: i64 = ctx
                        .step
                        .run("setup", || async move {
                            bump(&setup);
                            Ok(41)
                        })
                        .await?;
                    attempts_seen.lock().unwrap().push(ctx.attempt);
                    if ctx.attempt < 2 {
                        return Err(Error::retriable(format!(
                            "outside, attempt {}",
                            ctx.attempt
                        )));
                    }
                    Ok(json!(v + 1))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/fn-retry"})).await;
    let d = single_run(&engine, "fn-retry", "Completed").await;
    assert_eq!(d.output, Some(json!(42)));
    assert_eq!(count(&setup), 1, "the completed step is not run again");
    assert_eq!(*attempts_seen.lock().unwrap(), [0, 1, 2]);
    assert_eq!(d.function_attempts.len(), 2);
    assert_eq!(d.function_attempts[0].attempt, 0);
    assert_eq!(
        d.function_attempts[1].error["message"],
        json!("outside, attempt 1")
    );
    assert!(d.function_attempts.iter().all(|a| a.retry_at.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_exhausts_its_retries_and_fails_the_run() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("fn-fails")
            .on_event("app/fn-fails")
            .retries(1)
            .handler(move |_ctx| {
                let calls = calls.clone();
                async move {
                    bump(&calls);
                    Err::<(), _>(Error::retriable("broken"))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/fn-fails"})).await;
    let d = single_run(&engine, "fn-fails", "Failed").await;
    assert_eq!(count(&calls), 2);
    assert_eq!(d.function_attempts.len(), 2);
    assert_eq!(d.function_attempts[1].retry_at, None);
    assert_eq!(d.error.unwrap()["message"], json!("broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retriable_function_error_is_not_retried() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("fn-fatal")
            .on_event("app/fn-fatal")
            .handler(move |_ctx| {
                let calls = calls.clone();
                async move {
                    bump(&calls);
                    Err::<(), _>(Error::non_retriable("no"))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/fn-fatal"})).await;
    let d = single_run(&engine, "fn-fatal", "Failed").await;
    assert_eq!(count(&calls), 1);
    assert_eq!(d.function_attempts.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_body_is_retried_and_then_fails() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("panics")
            .on_event("app/panics")
            .retries(2)
            .handler(move |_ctx| {
                let calls = calls.clone();
                async move {
                    let n = bump(&calls);
                    if n < 100 {
                        panic!("kaboom {n}");
                    }
                    Ok(())
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/panics"})).await;
    let d = single_run(&engine, "panics", "Failed").await;
    assert_eq!(count(&calls), 3);
    assert_eq!(d.function_attempts.len(), 3);
    let err = d.error.unwrap();
    assert_eq!(err["name"], json!("Panic"));
    assert!(
        err["message"].as_str().unwrap().contains("kaboom 3"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_that_stops_lets_the_run_complete() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("panics-once")
            .on_event("app/panics-once")
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    let v: i64 = ctx.step.run("before", || async { Ok(5) }).await?;
                    if bump(&calls) == 1 {
                        panic!("first time only");
                    }
                    Ok(v)
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/panics-once"})).await;
    let d = single_run(&engine, "panics-once", "Completed").await;
    assert_eq!(d.output, Some(json!(5)));
    assert_eq!(d.function_attempts.len(), 1);
    assert_eq!(d.function_attempts[0].error["name"], json!("Panic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_failure_records_the_failed_event_and_runs_the_failure_handler() {
    let handled: Arc<Mutex<Vec<(Event, String)>>> = Arc::default();
    let f = {
        let handled = handled.clone();
        Function::builder("billing")
            .on_event("app/charge")
            .retries(1)
            .on_failure(move |ctx| {
                let handled = handled.clone();
                async move {
                    handled
                        .lock()
                        .unwrap()
                        .push((ctx.event.clone(), ctx.function_id.clone()));
                    Ok(json!({"handled": ctx.event.data["run_id"]}))
                }
            })
            .handler(|_ctx| async move { Err::<(), _>(Error::retriable("card declined")) })
            .unwrap()
    };
    let other = Function::builder("other")
        .on_event("app/other")
        .handler(|_ctx| async { Err::<(), _>(Error::non_retriable("not handled")) })
        .unwrap();
    let (engine, _dir) = start(vec![f, other]).await;
    let ids = send(
        &engine,
        json!({"name": "app/charge", "data": {"amount": 12}}),
    )
    .await;
    let failed = single_run(&engine, "billing", "Failed").await;
    assert_eq!(
        failed.error.as_ref().unwrap()["message"],
        json!("card declined")
    );

    // The failure handler runs as `<id>-failure`, triggered by the failed event.
    let handler_run = single_run(&engine, "billing-failure", "Completed").await;
    assert_eq!(
        handler_run.output,
        Some(json!({"handled": failed.summary.id}))
    );
    assert_eq!(
        handler_run.summary.event_name.as_deref(),
        Some("inngest/function.failed")
    );

    let events = events_named(&engine, "inngest/function.failed").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let ev = &events[0];
    assert_eq!(ev.data["function_id"], json!("billing"));
    assert_eq!(ev.data["run_id"], json!(failed.summary.id));
    assert_eq!(ev.data["error"]["message"], json!("card declined"));
    assert_eq!(ev.data["event"]["data"], json!({"amount": 12}));
    assert_eq!(ev.data["event"]["id"], json!(ids[0]));
    assert_eq!(
        handler_run.summary.event_id.as_deref(),
        Some(ev.internal_id.as_str())
    );
    let started = engine.admin().event_runs(&ev.internal_id).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].function_id, "billing-failure");

    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0].0.name, "inngest/function.failed");
    assert_eq!(handled[0].0.data["function_id"], json!("billing"));
    assert_eq!(handled[0].1, "billing-failure");

    // Another function's failure records its event but starts no handler of `billing`.
    send(&engine, json!({"name": "app/other"})).await;
    single_run(&engine, "other", "Failed").await;
    let e = engine.clone();
    let events = eventually("a second function.failed event", move || {
        let e = e.clone();
        async move {
            let evs = events_named(&e, "inngest/function.failed").await;
            (evs.len() == 2).then_some(evs)
        }
    })
    .await;
    assert_eq!(events[0].data["function_id"], json!("other"));
    assert!(engine
        .admin()
        .event_runs(&events[0].internal_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(runs_of(&engine, "billing-failure").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_records_no_failed_event() {
    let f = Function::builder("fine")
        .on_event("app/fine")
        .on_failure(|_ctx| async { Ok(()) })
        .handler(|_ctx| async { Ok(json!("ok")) })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/fine"})).await;
    single_run(&engine, "fine", "Completed").await;
    assert!(events_named(&engine, "inngest/function.failed")
        .await
        .is_empty());
    assert!(runs_of(&engine, "fine-failure").await.is_empty());
}

fn sleeper(id: &str, nap: Duration, before: Counter, after: Counter) -> Function {
    Function::builder(id)
        .on_event(format!("app/{id}"))
        .handler(move |ctx| {
            let (before, after) = (before.clone(), after.clone());
            async move {
                let t0: i64 = ctx
                    .step
                    .run("before", || async move {
                        bump(&before);
                        Ok(now_ms())
                    })
                    .await?;
                ctx.step.sleep("nap", nap).await?;
                let t1: i64 = ctx
                    .step
                    .run("after", || async move {
                        bump(&after);
                        Ok(now_ms())
                    })
                    .await?;
                Ok(json!({"slept_ms": t1 - t0}))
            }
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_suspends_the_run_and_resumes_it_after_the_duration() {
    let (before, after) = (counter(), counter());
    let nap = Duration::from_millis(700);
    let (engine, _dir) = start(vec![sleeper("sleepy", nap, before.clone(), after.clone())]).await;
    let sent = Instant::now();
    send(&engine, json!({"name": "app/sleepy"})).await;
    let run = wait_runs(&engine, "sleepy", 1).await.remove(0);

    let d = wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    assert_eq!(d.summary.status, "Running");
    let nap_step = step(&d, "nap");
    assert_eq!(nap_step.kind, StepKind::Sleep);
    let wake_at = nap_step
        .wake_at
        .expect("a sleeping step knows when it wakes");
    assert!(wake_at >= nap_step.started_at.unwrap() + 700);
    assert_eq!(count(&after), 0, "nothing after the sleep has run yet");

    let d = wait_status(&engine, &run.id, "Completed").await;
    assert!(sent.elapsed() >= nap);
    assert_eq!((count(&before), count(&after)), (1, 1));
    let slept = d.output.clone().unwrap()["slept_ms"].as_i64().unwrap();
    assert!(slept >= 700, "slept {slept} ms");
    let ids: Vec<_> = d
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(ids, [("before", "Run"), ("nap", "Sleep"), ("after", "Run")]);
    let nap_step = step(&d, "nap");
    assert_eq!(nap_step.status, StepStatus::Completed);
    assert_eq!(nap_step.ended_at, Some(wake_at));
    assert!(step(&d, "after").started_at.unwrap() >= wake_at);
    assert!(d.summary.duration_ms.unwrap() >= 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_until_wakes_at_the_given_time() {
    let f = Function::builder("until")
        .on_event("app/until")
        .handler(|ctx| async move {
            let at = ctx.event.data["at"].as_i64().unwrap();
            let until = chrono::DateTime::from_timestamp_millis(at).unwrap();
            ctx.step.sleep_until("until", until).await?;
            let woke: i64 = ctx.step.run("woke", || async { Ok(now_ms()) }).await?;
            Ok(json!({"woke": woke}))
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let at = now_ms() + 600;
    send(&engine, json!({"name": "app/until", "data": {"at": at}})).await;
    let run = wait_runs(&engine, "until", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "until", StepStatus::Sleeping).await;
    assert_eq!(step(&d, "until").wake_at, Some(at));
    let d = wait_status(&engine, &run.id, "Completed").await;
    let woke = d.output.unwrap()["woke"].as_i64().unwrap();
    assert!(woke >= at, "woke at {woke}, {} ms early", at - woke);

    // A time already past does not suspend for long.
    let past = now_ms() - 60_000;
    send(&engine, json!({"name": "app/until", "data": {"at": past}})).await;
    let runs = wait_runs(&engine, "until", 2).await;
    wait_status(&engine, &runs[1].id, "Completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_execute_concurrently_without_mixing_state() {
    let f = Function::builder("many")
        .on_event("app/many")
        .handler(|ctx| async move {
            let n = ctx.event.data["n"].as_i64().unwrap();
            let a: i64 = ctx.step.run("double", || async move { Ok(n * 2) }).await?;
            ctx.step.sleep("tiny", Duration::from_millis(20)).await?;
            let b: i64 = ctx.step.run("inc", || async move { Ok(a + 1) }).await?;
            Ok(json!(b))
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let events: Vec<Value> = (0..40)
        .map(|n| json!({"name": "app/many", "data": {"n": n}}))
        .collect();
    send(&engine, Value::Array(events)).await;
    let runs = wait_runs(&engine, "many", 40).await;
    for r in &runs {
        let d = wait_status(&engine, &r.id, "Completed").await;
        let n = d.event.unwrap()["data"]["n"].as_i64().unwrap();
        assert_eq!(d.output, Some(json!(n * 2 + 1)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrent_runs_execute_and_suspended_runs_hold_no_slot() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now_running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let busy = {
        let (now_running, peak) = (now_running.clone(), peak.clone());
        Function::builder("busy")
            .on_event("app/busy")
            .handler(move |ctx| {
                let (now_running, peak) = (now_running.clone(), peak.clone());
                async move {
                    ctx.step
                        .run("work", || async move {
                            let n = now_running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(60)).await;
                            now_running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await?;
                    Ok(())
                }
            })
            .unwrap()
    };
    let sleeper = Function::builder("long-sleeper")
        .on_event("app/long-sleep")
        .handler(|ctx| async move {
            ctx.step.sleep("long", Duration::from_secs(3600)).await?;
            Ok(())
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_concurrent_runs = 2;
    let engine = within(
        "start",
        stepdesk_engine::Engine::start(config, vec![busy, sleeper]),
    )
    .await
    .unwrap();
    // Three runs asleep first: they must not hold the two slots.
    send(
        &engine,
        json!([{"name": "app/long-sleep"}, {"name": "app/long-sleep"}, {"name": "app/long-sleep"}]),
    )
    .await;
    for r in wait_runs(&engine, "long-sleeper", 3).await {
        wait_step(&engine, &r.id, "long", StepStatus::Sleeping).await;
    }
    let events: Vec<Value> = (0..6).map(|_| json!({"name": "app/busy"})).collect();
    send(&engine, Value::Array(events)).await;
    for r in wait_runs(&engine, "busy", 6).await {
        wait_status(&engine, &r.id, "Completed").await;
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} runs executed at once");
    assert!(peak >= 1);
}
