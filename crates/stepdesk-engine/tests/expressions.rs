//! Expressions (CEL, Inngest's rules) in real runs: trigger `if`s, `wait_for_event` `if`s,
//! cancellation rules, and bad expressions refused when a function is built.

mod common;

use std::time::Duration;

use rusqlite::Connection;
use serde_json::{json, Value};
use stepdesk_engine::{Function, WaitForEvent};

use common::*;

fn noop(id: &str) -> stepdesk_engine::function::FunctionBuilder {
    Function::builder(id)
}

/// A function that sleeps an hour: a run that stays `Running` until something cancels it.
fn sleeper(id: &str, cancel_on: &[(&str, Option<&str>, Option<Duration>)]) -> Function {
    let mut b = Function::builder(id).on_event(format!("app/{id}"));
    for (event, expr, timeout) in cancel_on {
        b = b.cancel_on(*event, *expr, *timeout);
    }
    b.handler(|ctx| async move {
        ctx.step.sleep("nap", Duration::from_secs(3600)).await?;
        Ok(())
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_expression_starts_runs_only_for_matching_events() {
    let pro = noop("pro-only")
        .on_event_if("app/signup", "event.data.plan == 'pro'")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let big = noop("big-teams")
        .on_event_if("app/*", "event.data.seats >= 10 && has(event.data.team)")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let all = noop("every-signup")
        .on_event("app/signup")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let (engine, _dir) = start(vec![pro, big, all]).await;
    send(
        &engine,
        json!([
            {"name": "app/signup", "data": {"plan": "pro", "seats": 10.0, "team": "t"}},
            {"name": "app/signup", "data": {"plan": "free", "seats": 3}},
            {"name": "app/signup", "data": {}},
            // A mistyped field compares, it does not fail: no run, no error.
            {"name": "app/signup", "data": {"plan": 1, "seats": "many", "team": "t"}},
            {"name": "app/other", "data": {"seats": 12, "team": "t"}},
        ]),
    )
    .await;
    let every = wait_runs(&engine, "every-signup", 4).await;
    assert_eq!(every.len(), 4);
    let pro_runs = runs_of(&engine, "pro-only").await;
    assert_eq!(pro_runs.len(), 1, "{pro_runs:#?}");
    let d = wait_status(&engine, &pro_runs[0].id, "Completed").await;
    assert_eq!(d.event.unwrap()["data"]["plan"], json!("pro"));
    let big_runs = runs_of(&engine, "big-teams").await;
    assert_eq!(big_runs.len(), 2, "{big_runs:#?}");

    // The console shows the expression as the trigger's condition.
    let fns = engine.admin().functions();
    let f = fns.iter().find(|f| f.id == "pro-only").unwrap();
    assert_eq!(
        f.triggers[0].condition.as_deref(),
        Some("event.data.plan == 'pro'")
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_handlers_still_match_only_their_function() {
    let failing = |id: &str| {
        noop(id)
            .on_event(format!("app/{id}"))
            .retries(0)
            .on_failure(|_ctx| async { Ok(()) })
            .handler(|_ctx| async { Err::<(), _>(stepdesk_engine::Error::non_retriable("no")) })
            .unwrap()
    };
    let (engine, _dir) = start(vec![failing("fails-a"), failing("fails-b")]).await;
    send(&engine, json!({"name": "app/fails-a"})).await;
    single_run(&engine, "fails-a", "Failed").await;
    let handled = single_run(&engine, "fails-a-failure", "Completed").await;
    assert_eq!(
        handled.event.unwrap()["data"]["function_id"],
        json!("fails-a")
    );
    assert!(runs_of(&engine, "fails-b-failure").await.is_empty());
    stop(&engine).await;
}

fn approver() -> Function {
    Function::builder("approve")
        .on_event("app/request")
        .handler(|ctx| async move {
            let got = ctx
                .step
                .wait_for_event(
                    "approval",
                    WaitForEvent::new("app/approved", Duration::from_secs(60)).when(
                        "async.data.userId == event.data.userId && async.data.amount >= event.data.min",
                    ),
                )
                .await?;
            Ok(json!({ "got": got.map(|e| e.id) }))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_event_if_matches_only_the_right_event_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![approver()]).await;
    send(
        &engine,
        json!({"name": "app/request", "data": {"userId": "u1", "min": 100, "note": "x".repeat(1000)}}),
    )
    .await;
    let run = wait_runs(&engine, "approve", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "approval", StepStatus::Waiting).await;
    assert_eq!(
        step(&d, "approval").input.as_ref().unwrap()["if"],
        json!("async.data.userId == event.data.userId && async.data.amount >= event.data.min")
    );

    // The pause holds the expression and only the part of the run's event it reads.
    {
        let db = Connection::open(dir.path().join("stepdesk.db")).unwrap();
        let (expr, part): (String, String) = db
            .query_row(
                "SELECT if_expr, if_event FROM pauses WHERE run_id = ?1 AND kind = 'wait'",
                [&run.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(expr.starts_with("async.data.userId == event.data.userId"));
        let part: Value = serde_json::from_str(&part).unwrap();
        assert_eq!(part, json!({"data": {"userId": "u1", "min": 100}}));
    }

    // Another user, too small an amount, no amount: the wait stays (resolution is in the
    // event's own transaction, so the state right after `send` is final).
    send(
        &engine,
        json!([
            {"name": "app/approved", "data": {"userId": "u2", "amount": 500}},
            {"name": "app/approved", "data": {"userId": "u1", "amount": 99.5}},
            {"name": "app/approved", "data": {"userId": "u1"}},
        ]),
    )
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(step(&d, "approval").status, StepStatus::Waiting);

    // The wait, its expression included, survives a restart.
    stop(&engine).await;
    let engine = start_in(dir.path(), vec![approver()]).await;
    send(
        &engine,
        json!({"name": "app/approved", "id": "ok-1", "data": {"userId": "u1", "amount": 100.0}}),
    )
    .await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"got": "ok-1"})));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_field_compares_numbers_loosely_like_its_expression() {
    let f = Function::builder("match-num")
        .on_event("app/match-num")
        .handler(|ctx| async move {
            let got = ctx
                .step
                .wait_for_event(
                    "w",
                    WaitForEvent::new("app/done", Duration::from_secs(60)).matching("data.n"),
                )
                .await?;
            Ok(json!({ "got": got.map(|e| e.id) }))
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/match-num", "data": {"n": 7}})).await;
    let run = wait_runs(&engine, "match-num", 1).await.remove(0);
    wait_step(&engine, &run.id, "w", StepStatus::Waiting).await;
    send(&engine, json!({"name": "app/done", "data": {"n": "7"}})).await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(step(&d, "w").status, StepStatus::Waiting);
    send(
        &engine,
        json!({"name": "app/done", "id": "d1", "data": {"n": 7.0}}),
    )
    .await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(d.output, Some(json!({"got": "d1"})));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_wait_expression_fails_the_run_with_a_clear_error() {
    let f = Function::builder("bad-wait")
        .on_event("app/bad-wait")
        .handler(|ctx| async move {
            ctx.step
                .wait_for_event(
                    "w",
                    WaitForEvent::new("app/done", Duration::from_secs(60))
                        .when("async.data.id == evnt.data.id"),
                )
                .await?;
            Ok(())
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/bad-wait"})).await;
    let d = single_run(&engine, "bad-wait", "Failed").await;
    let message = d.error.unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("wait_for_event `w`"), "{message}");
    assert!(message.contains("unknown name `evnt`"), "{message}");
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_cancels_only_the_matching_runs_started_before_the_event() {
    let rule = "event.data.userId == async.data.userId";
    let (engine, _dir) = start(vec![sleeper(
        "per-user",
        &[("app/user.deleted", Some(rule), None)],
    )])
    .await;
    send(
        &engine,
        json!([
            {"name": "app/per-user", "data": {"userId": "u1"}},
            {"name": "app/per-user", "data": {"userId": "u2"}},
        ]),
    )
    .await;
    let runs = wait_runs(&engine, "per-user", 2).await;
    for r in &runs {
        wait_step(&engine, &r.id, "nap", StepStatus::Sleeping).await;
    }
    let (u1, u2) = (&runs[0].id, &runs[1].id);

    send(
        &engine,
        json!({"name": "app/user.deleted", "data": {"userId": "u1"}}),
    )
    .await;
    let d = wait_status(&engine, u1, "Cancelled").await;
    assert!(d.summary.ended_at.is_some());
    assert_eq!(
        engine.admin().run(u2).await.unwrap().summary.status,
        "Running"
    );
    let cancelled = events_named(&engine, "inngest/function.cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].data["run_id"], json!(u1));

    // An event before a run started does not cancel it, and a cancelled run's rule is gone.
    send(
        &engine,
        json!({"name": "app/user.deleted", "data": {"userId": "u3"}}),
    )
    .await;
    send(
        &engine,
        json!({"name": "app/per-user", "data": {"userId": "u3"}}),
    )
    .await;
    let u3 = wait_runs(&engine, "per-user", 3).await.remove(2).id;
    wait_step(&engine, &u3, "nap", StepStatus::Sleeping).await;
    assert_eq!(
        engine.admin().run(&u3).await.unwrap().summary.status,
        "Running"
    );
    send(
        &engine,
        json!({"name": "app/user.deleted", "data": {"userId": "u1"}}),
    )
    .await;
    assert_eq!(
        events_named(&engine, "inngest/function.cancelled")
            .await
            .len(),
        1
    );

    // A later matching event cancels u3 too; u2 keeps running throughout.
    send(
        &engine,
        json!({"name": "app/user.deleted", "data": {"userId": "u3"}}),
    )
    .await;
    wait_status(&engine, &u3, "Cancelled").await;
    assert_eq!(
        engine.admin().run(u2).await.unwrap().summary.status,
        "Running"
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_that_starts_a_run_does_not_cancel_it() {
    // Cancelled by a newer event for the same id: the new event starts a new run, which it
    // does not cancel.
    let (engine, _dir) = start(vec![sleeper(
        "latest-only",
        &[(
            "app/latest-only",
            Some("async.data.id == event.data.id"),
            None,
        )],
    )])
    .await;
    send(
        &engine,
        json!({"name": "app/latest-only", "data": {"id": 1}}),
    )
    .await;
    let first = wait_runs(&engine, "latest-only", 1).await.remove(0).id;
    wait_step(&engine, &first, "nap", StepStatus::Sleeping).await;
    assert_eq!(
        engine.admin().run(&first).await.unwrap().summary.status,
        "Running"
    );
    send(
        &engine,
        json!({"name": "app/latest-only", "data": {"id": 1.0}}),
    )
    .await;
    wait_status(&engine, &first, "Cancelled").await;
    let second = wait_runs(&engine, "latest-only", 2).await.remove(1).id;
    wait_step(&engine, &second, "nap", StepStatus::Sleeping).await;
    assert_eq!(
        engine.admin().run(&second).await.unwrap().summary.status,
        "Running"
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_rule_without_if_cancels_every_run_until_its_timeout() {
    let (engine, _dir) = start(vec![
        sleeper("stop-all", &[("app/stop", None, None)]),
        sleeper(
            "stop-soon",
            &[("app/stop", None, Some(Duration::from_millis(1)))],
        ),
    ])
    .await;
    send(
        &engine,
        json!([{"name": "app/stop-all"}, {"name": "app/stop-all"}, {"name": "app/stop-soon"}]),
    )
    .await;
    let all = wait_runs(&engine, "stop-all", 2).await;
    let soon = wait_runs(&engine, "stop-soon", 1).await.remove(0).id;
    wait_step(&engine, &soon, "nap", StepStatus::Sleeping).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    send(&engine, json!({"name": "app/stop"})).await;
    for r in &all {
        wait_status(&engine, &r.id, "Cancelled").await;
    }
    // Its rule had expired: it runs on.
    assert_eq!(
        engine.admin().run(&soon).await.unwrap().summary.status,
        "Running"
    );
    stop(&engine).await;
}

#[test]
fn a_bad_expression_is_a_clear_build_error() {
    let err = noop("typo")
        .on_event_if("app/x", "event.data.plan = 'pro'")
        .handler(|_ctx| async { Ok(()) })
        .unwrap_err();
    assert_eq!(err.function, "typo");
    assert!(
        err.reason.starts_with(
            "trigger `app/x`: expression `event.data.plan = 'pro'`: syntax error at column"
        ),
        "{err}"
    );
    let err = noop("typo")
        .on_event("app/x")
        .cancel_on("app/y", Some("event.data.id == asynk.data.id"), None)
        .handler(|_ctx| async { Ok(()) })
        .unwrap_err();
    assert!(
        err.reason.contains("unknown name `asynk`") && err.reason.contains("column 18"),
        "{err}"
    );
    let err = noop("typo")
        .on_event_if("app/x", "event.data.plan.lower() == 'pro'")
        .handler(|_ctx| async { Ok(()) })
        .unwrap_err();
    assert!(err.reason.contains("unknown function `lower`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_run_has_its_cancel_rules_too() {
    let f = Function::builder("nightly")
        .on_cron("0 3 * * *")
        .cancel_on("app/maintenance", Some("async.data.stop == true"), None)
        .handler(|ctx| async move {
            ctx.step.sleep("nap", Duration::from_secs(3600)).await?;
            Ok(())
        })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let started = engine.admin().run_cron("nightly", None).await.unwrap();
    wait_step(&engine, &started.run_id, "nap", StepStatus::Sleeping).await;
    send(
        &engine,
        json!({"name": "app/maintenance", "data": {"stop": false}}),
    )
    .await;
    assert_eq!(
        engine
            .admin()
            .run(&started.run_id)
            .await
            .unwrap()
            .summary
            .status,
        "Running"
    );
    send(
        &engine,
        json!({"name": "app/maintenance", "data": {"stop": true}}),
    )
    .await;
    wait_status(&engine, &started.run_id, "Cancelled").await;
    stop(&engine).await;
}
