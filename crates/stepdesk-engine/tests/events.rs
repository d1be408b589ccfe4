//! Events and the steps that talk to other runs: wait_for_event, invoke, send_event,
//! run dedupe by event id, cancel and rerun.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::admin::AdminError;
use stepdesk_engine::model::RunStatus;
use stepdesk_engine::{Error, Function, Invoke, WaitForEvent};
use tokio::sync::Notify;

use common::*;

fn waiter(id: &str, timeout: Duration) -> Function {
    Function::builder(id)
        .on_event(format!("app/{id}"))
        .handler(move |ctx| async move {
            let got = ctx
                .step
                .wait_for_event(
                    "approval",
                    WaitForEvent {
                        event: "app/approved".into(),
                        timeout,
                        match_field: Some("data.key".into()),
                        if_expr: None,
                    },
                )
                .await?;
            Ok(json!({ "got": got.map(|e| json!({"id": e.id, "name": e.name, "data": e.data})) }))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_event_is_resolved_only_by_a_matching_event() {
    let (engine, _dir) = start(vec![waiter("waits", Duration::from_secs(30))]).await;
    send(&engine, json!({"name": "app/waits", "data": {"key": "k1"}})).await;
    let run = wait_runs(&engine, "waits", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "approval", StepStatus::Waiting).await;
    let s = step(&d, "approval");
    assert_eq!(s.kind, StepKind::WaitForEvent);
    assert_eq!(s.input.as_ref().unwrap()["event"], json!("app/approved"));
    assert_eq!(s.input.as_ref().unwrap()["match"], json!("data.key"));

    // Wrong key, wrong name, no key: the wait stays. Resolution happens in the same
    // transaction as the event's ingest, so the state right after `send` is final.
    send(
        &engine,
        json!([
            {"name": "app/approved", "data": {"key": "k2"}},
            {"name": "app/approved", "data": {}},
            {"name": "app/other", "data": {"key": "k1"}},
        ]),
    )
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d.summary.status, "Running");
    assert_eq!(step(&d, "approval").status, StepStatus::Waiting);

    let ids = send(
        &engine,
        json!({"name": "app/approved", "id": "approval-1", "data": {"key": "k1", "ok": true}}),
    )
    .await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(
        d.output,
        Some(
            json!({"got": {"id": "approval-1", "name": "app/approved", "data": {"key": "k1", "ok": true}}})
        )
    );
    let s = step(&d, "approval");
    assert_eq!(s.status, StepStatus::Completed);
    assert_eq!(s.output.as_ref().unwrap()["id"], json!("approval-1"));
    let stored = engine.admin().event(&ids[0]).await.unwrap();
    assert_eq!(stored.id, "approval-1");

    // A second matching event finds no wait and changes nothing.
    send(
        &engine,
        json!({"name": "app/approved", "data": {"key": "k1"}}),
    )
    .await;
    let again = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(again.output, d.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_resolves_every_matching_wait_and_only_those() {
    let (engine, _dir) = start(vec![waiter("many-waits", Duration::from_secs(30))]).await;
    send(
        &engine,
        json!([
            {"name": "app/many-waits", "data": {"key": "a"}},
            {"name": "app/many-waits", "data": {"key": "a"}},
            {"name": "app/many-waits", "data": {"key": "b"}},
        ]),
    )
    .await;
    let runs = wait_runs(&engine, "many-waits", 3).await;
    for r in &runs {
        wait_step(&engine, &r.id, "approval", StepStatus::Waiting).await;
    }
    send(
        &engine,
        json!({"name": "app/approved", "data": {"key": "a"}}),
    )
    .await;
    wait_status(&engine, &runs[0].id, "Completed").await;
    wait_status(&engine, &runs[1].id, "Completed").await;
    let b = engine.admin().run(&runs[2].id).await.unwrap();
    assert_eq!(b.summary.status, "Running");
    assert_eq!(step(&b, "approval").status, StepStatus::Waiting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_event_times_out_with_none() {
    let (engine, _dir) = start(vec![waiter("impatient", Duration::from_millis(300))]).await;
    send(
        &engine,
        json!({"name": "app/impatient", "data": {"key": "k"}}),
    )
    .await;
    let d = single_run(&engine, "impatient", "Completed").await;
    assert_eq!(d.output, Some(json!({"got": null})));
    let s = step(&d, "approval");
    assert_eq!(s.status, StepStatus::Completed);
    assert_eq!(s.output, Some(Value::Null));
    assert!(s.ended_at.unwrap() - s.started_at.unwrap() >= 300);

    // An event arriving after the timeout resolves nothing.
    send(
        &engine,
        json!({"name": "app/approved", "data": {"key": "k"}}),
    )
    .await;
    let d2 = engine.admin().run(&d.summary.id).await.unwrap();
    assert_eq!(d2.output, Some(json!({"got": null})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_before_the_wait_began_does_not_resolve_it() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let f = {
        let (entered, release) = (entered.clone(), release.clone());
        Function::builder("late-waiter")
            .on_event("app/late-waiter")
            .handler(move |ctx| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    ctx.step
                        .run("gate", || async move {
                            entered.notify_one();
                            release.notified().await;
                            Ok(())
                        })
                        .await?;
                    let got = ctx
                        .step
                        .wait_for_event(
                            "wait",
                            WaitForEvent {
                                event: "app/approved".into(),
                                timeout: Duration::from_millis(400),
                                match_field: Some("data.key".into()),
                                if_expr: None,
                            },
                        )
                        .await?;
                    Ok(json!({"got": got.map(|e| e.id)}))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(
        &engine,
        json!({"name": "app/late-waiter", "data": {"key": "k"}}),
    )
    .await;
    within("the gate step to start", entered.notified()).await;
    // The run is executing its first step; this matching event comes before the wait.
    send(
        &engine,
        json!({"name": "app/approved", "id": "too-early", "data": {"key": "k"}}),
    )
    .await;
    release.notify_one();
    let d = single_run(&engine, "late-waiter", "Completed").await;
    assert_eq!(
        d.output,
        Some(json!({"got": null})),
        "the early event must not count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_returns_the_child_output() {
    let child = Function::builder("child")
        .on_event("app/child-direct")
        .handler(|ctx| async move {
            let n = ctx.event.data["n"].as_i64().unwrap_or(0);
            let v: i64 = ctx
                .step
                .run("times-ten", || async move { Ok(n * 10) })
                .await?;
            Ok(json!({"value": v}))
        })
        .unwrap();
    let parent = Function::builder("parent")
        .on_event("app/parent")
        .handler(|ctx| async move {
            let mut data = serde_json::Map::new();
            data.insert("n".into(), ctx.event.data["n"].clone());
            let out: Value = ctx
                .step
                .invoke(
                    "call-child",
                    Invoke {
                        function_id: "child".into(),
                        data,
                        timeout: Duration::from_secs(30),
                    },
                )
                .await?;
            Ok(json!({"child": out}))
        })
        .unwrap();
    let (engine, _dir) = start(vec![child, parent]).await;
    send(&engine, json!({"name": "app/parent", "data": {"n": 2}})).await;
    let p = single_run(&engine, "parent", "Completed").await;
    assert_eq!(p.output, Some(json!({"child": {"value": 20}})));
    let s = step(&p, "call-child");
    assert_eq!(
        (s.kind.as_str(), s.status.as_str()),
        ("Invoke", "Completed")
    );
    assert_eq!(s.output, Some(json!({"value": 20})));
    assert_eq!(s.input.as_ref().unwrap()["function_id"], json!("child"));

    let c = single_run(&engine, "child", "Completed").await;
    assert_eq!(c.summary.trigger_kind, TriggerKind::Invoke);
    assert_eq!(c.parent_run_id.as_deref(), Some(p.summary.id.as_str()));
    assert_eq!(
        c.summary.event_name.as_deref(),
        Some("inngest/function.invoked")
    );
    assert_eq!(c.event.unwrap()["data"]["n"], json!(2));
    // The parent's step names the run it started (the console links to it).
    assert_eq!(
        s.input.as_ref().unwrap()["run_id"],
        json!(c.summary.id),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_surfaces_as_step_failed_in_the_parent() {
    let child = Function::builder("bad-child")
        .on_event("app/never")
        .handler(|_ctx| async { Err::<(), _>(Error::non_retriable("child broke")) })
        .unwrap();
    let parent = Function::builder("careful-parent")
        .on_event("app/careful")
        .handler(|ctx| async move {
            let r: Result<Value, Error> = ctx
                .step
                .invoke(
                    "call",
                    Invoke {
                        function_id: "bad-child".into(),
                        data: Default::default(),
                        timeout: Duration::from_secs(30),
                    },
                )
                .await;
            match r {
                Err(Error::StepFailed(body)) => Ok(json!({"failed": body.message})),
                Err(e) => Err(e),
                Ok(v) => Ok(json!({"unexpected": v})),
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![child, parent]).await;
    send(&engine, json!({"name": "app/careful"})).await;
    let p = single_run(&engine, "careful-parent", "Completed").await;
    assert_eq!(p.output, Some(json!({"failed": "child broke"})));
    assert_eq!(step(&p, "call").status, StepStatus::Failed);
    single_run(&engine, "bad-child", "Failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propagated_child_failure_fails_the_parent() {
    let child = Function::builder("bad-child")
        .on_event("app/never")
        .handler(|_ctx| async { Err::<(), _>(Error::non_retriable("child broke")) })
        .unwrap();
    let parent = Function::builder("parent")
        .on_event("app/parent")
        .handler(|ctx| async move {
            let _: Value = ctx
                .step
                .invoke(
                    "call",
                    Invoke {
                        function_id: "bad-child".into(),
                        data: Default::default(),
                        timeout: Duration::from_secs(30),
                    },
                )
                .await?;
            Ok(())
        })
        .unwrap();
    let (engine, _dir) = start(vec![child, parent]).await;
    send(&engine, json!({"name": "app/parent"})).await;
    let p = single_run(&engine, "parent", "Failed").await;
    assert_eq!(p.error.unwrap()["message"], json!("child broke"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoking_an_unknown_function_fails_the_step() {
    let parent = Function::builder("lost-parent")
        .on_event("app/lost")
        .handler(|ctx| async move {
            let r: Result<Value, Error> = ctx
                .step
                .invoke(
                    "call-ghost",
                    Invoke {
                        function_id: "ghost".into(),
                        data: Default::default(),
                        timeout: Duration::from_secs(30),
                    },
                )
                .await;
            match r {
                Err(Error::StepFailed(body)) => {
                    Ok(json!({"name": body.name, "message": body.message}))
                }
                Err(e) => Err(e),
                Ok(v) => Ok(json!({"unexpected": v})),
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![parent]).await;
    send(&engine, json!({"name": "app/lost"})).await;
    let p = single_run(&engine, "lost-parent", "Completed").await;
    let out = p.output.clone().unwrap();
    assert_eq!(out["name"], json!("FunctionNotFound"));
    assert!(out["message"].as_str().unwrap().contains("ghost"), "{out}");
    let s = step(&p, "call-ghost");
    assert_eq!((s.kind.as_str(), s.status.as_str()), ("Invoke", "Failed"));
    assert_eq!(
        all_runs(&engine, None).await.len(),
        1,
        "no child run was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_times_out_when_the_child_takes_too_long() {
    let child = Function::builder("slow-child")
        .on_event("app/never")
        .handler(|ctx| async move {
            ctx.step.sleep("long", Duration::from_secs(60)).await?;
            Ok(())
        })
        .unwrap();
    let parent = Function::builder("hasty-parent")
        .on_event("app/hasty")
        .handler(|ctx| async move {
            let r: Result<Value, Error> = ctx
                .step
                .invoke(
                    "call",
                    Invoke {
                        function_id: "slow-child".into(),
                        data: Default::default(),
                        timeout: Duration::from_millis(300),
                    },
                )
                .await;
            match r {
                Err(Error::StepFailed(body)) => Ok(json!(body.name)),
                Err(e) => Err(e),
                Ok(v) => Ok(v),
            }
        })
        .unwrap();
    let (engine, _dir) = start(vec![child, parent]).await;
    send(&engine, json!({"name": "app/hasty"})).await;
    let p = single_run(&engine, "hasty-parent", "Completed").await;
    assert_eq!(p.output, Some(json!("InngestInvokeTimeoutError")));
}

fn notifier(target_runs: Counter, flaky: Counter) -> Vec<Function> {
    let sender = Function::builder("sender")
        .on_event("app/order")
        .handler(move |ctx| {
            let flaky = flaky.clone();
            async move {
                let order = ctx.event.data["order"].clone();
                let ids = ctx
                    .step
                    .send_event(
                        "notify",
                        vec![json!({"name": "app/notified", "data": {"order": order}})],
                    )
                    .await?;
                // Fails once after the send, so the body is replayed past the send.
                ctx.step
                    .run("flaky-after", || async move {
                        if bump(&flaky) == 1 {
                            return Err(Error::retriable("once"));
                        }
                        Ok(())
                    })
                    .await?;
                Ok(json!({"sent": ids}))
            }
        })
        .unwrap();
    let target = Function::builder("target")
        .on_event("app/notified")
        .handler(move |ctx| {
            let target_runs = target_runs.clone();
            async move {
                bump(&target_runs);
                Ok(ctx.event.data["order"].clone())
            }
        })
        .unwrap();
    vec![sender, target]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_event_triggers_other_functions_once_despite_replays() {
    let (target_runs, flaky) = (counter(), counter());
    let (engine, _dir) = start(notifier(target_runs.clone(), flaky.clone())).await;
    send(&engine, json!({"name": "app/order", "data": {"order": 1}})).await;
    let s = single_run(&engine, "sender", "Completed").await;
    assert_eq!(count(&flaky), 2, "the step after the send was retried");
    let sent = s.output.clone().unwrap()["sent"].clone();
    let sent: Vec<String> = serde_json::from_value(sent).unwrap();
    assert_eq!(sent.len(), 1);
    let notify = step(&s, "notify");
    assert_eq!(
        (notify.kind.as_str(), notify.status.as_str()),
        ("SendEvent", "Completed")
    );
    assert_eq!(notify.output, Some(json!(sent)));

    let t = single_run(&engine, "target", "Completed").await;
    assert_eq!(t.output, Some(json!(1)));
    assert_eq!(t.summary.event_id.as_deref(), Some(sent[0].as_str()));
    let ev = engine.admin().event(&sent[0]).await.unwrap();
    assert_eq!(ev.name, "app/notified");
    assert_eq!(events_named(&engine, "app/notified").await.len(), 1);
    assert_eq!(count(&target_runs), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_event_from_two_runs_triggers_two_runs() {
    let (target_runs, flaky) = (counter(), counter());
    let (engine, _dir) = start(notifier(target_runs.clone(), flaky.clone())).await;
    send(
        &engine,
        json!([
            {"name": "app/order", "data": {"order": 1}},
            {"name": "app/order", "data": {"order": 2}},
        ]),
    )
    .await;
    let senders = wait_runs(&engine, "sender", 2).await;
    for r in &senders {
        wait_status(&engine, &r.id, "Completed").await;
    }
    let targets = wait_runs(&engine, "target", 2).await;
    let mut orders = Vec::new();
    for r in &targets {
        orders.push(
            wait_status(&engine, &r.id, "Completed")
                .await
                .output
                .unwrap(),
        );
    }
    orders.sort_by_key(|v| v.as_i64());
    assert_eq!(orders, [json!(1), json!(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_starts_one_run_per_function() {
    let one = Function::builder("one")
        .on_event("app/dup")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let two = Function::builder("two")
        .on_event("app/*")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let (engine, _dir) = start(vec![one, two]).await;

    let first = send(&engine, json!({"name": "app/dup", "id": "same"})).await;
    let second = send(&engine, json!({"name": "app/dup", "id": "same"})).await;
    // And within one batch.
    let batch = send(
        &engine,
        json!([{"name": "app/dup", "id": "batch"}, {"name": "app/dup", "id": "batch"}]),
    )
    .await;
    assert_ne!(first[0], second[0], "each event gets its own internal id");
    assert_ne!(batch[0], batch[1]);
    for f in ["one", "two"] {
        let runs = runs_of(&engine, f).await;
        assert_eq!(runs.len(), 2, "{f}: one run per id: {runs:#?}");
        assert_eq!(runs[0].event_id.as_deref(), Some(first[0].as_str()));
        assert_eq!(runs[1].event_id.as_deref(), Some(batch[0].as_str()));
    }
    assert!(engine
        .admin()
        .event_runs(&second[0])
        .await
        .unwrap()
        .is_empty());
    assert!(engine
        .admin()
        .event_runs(&batch[1])
        .await
        .unwrap()
        .is_empty());
    // Every event is stored, duplicates included.
    assert_eq!(events_named(&engine, "app/dup").await.len(), 4);
    assert_eq!(engine.admin().event(&second[0]).await.unwrap().id, "same");

    // Different ids start separate runs.
    send(
        &engine,
        json!([{"name": "app/dup", "id": "x1"}, {"name": "app/dup", "id": "x2"}]),
    )
    .await;
    assert_eq!(runs_of(&engine, "one").await.len(), 4);
    // Events without an id always start runs.
    let anon = send(&engine, json!([{"name": "app/dup"}, {"name": "app/dup"}])).await;
    assert_eq!(runs_of(&engine, "one").await.len(), 6);
    assert_eq!(runs_of(&engine, "two").await.len(), 6);
    // Their id defaults to the internal id.
    assert_eq!(engine.admin().event(&anon[0]).await.unwrap().id, anon[0]);
    for r in all_runs(&engine, None).await {
        wait_status(&engine, &r.id, "Completed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_used_by_one_function_does_not_block_another_function() {
    let one = Function::builder("one")
        .on_event("app/a")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let two = Function::builder("two")
        .on_event("app/b")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let (engine, _dir) = start(vec![one, two]).await;
    send(&engine, json!({"name": "app/a", "id": "shared"})).await;
    send(&engine, json!({"name": "app/b", "id": "shared"})).await;
    assert_eq!(runs_of(&engine, "one").await.len(), 1);
    assert_eq!(runs_of(&engine, "two").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_sleeping_run_stops_it_for_good() {
    let after = counter();
    let f = {
        let after = after.clone();
        Function::builder("cancel-me")
            .on_event("app/cancel-me")
            .handler(move |ctx| {
                let after = after.clone();
                async move {
                    ctx.step.sleep("nap", Duration::from_millis(500)).await?;
                    ctx.step
                        .run("after", || async move {
                            bump(&after);
                            Ok(())
                        })
                        .await?;
                    Ok(())
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/cancel-me"})).await;
    let run = wait_runs(&engine, "cancel-me", 1).await.remove(0);
    let d = wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    let wake_at = step(&d, "nap").wake_at.unwrap();

    let summary = engine.admin().cancel(&run.id).await.unwrap();
    assert_eq!(summary.status, "Cancelled");
    assert!(summary.ended_at.is_some());

    let events = events_named(&engine, "inngest/function.cancelled").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["run_id"], json!(run.id));
    assert_eq!(events[0].data["function_id"], json!("cancel-me"));

    // Past the wake time, it still has not resumed.
    eventually("the sleep's wake time to pass", || async {
        (now_ms() > wake_at + 300).then_some(())
    })
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d.summary.status, "Cancelled");
    assert_eq!(count(&after), 0);
    assert!(d.steps.iter().all(|s| s.id != "after"));

    // Cancelling again, or an unknown run.
    match engine.admin().cancel(&run.id).await {
        Err(AdminError::Conflict(m)) => assert!(m.contains("Cancelled"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        engine.admin().cancel("01HZZZZZZZZZZZZZZZZZZZZZZZ").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_run_removes_its_wait() {
    let (engine, _dir) = start(vec![waiter("cancel-wait", Duration::from_secs(30))]).await;
    send(
        &engine,
        json!({"name": "app/cancel-wait", "data": {"key": "k"}}),
    )
    .await;
    let run = wait_runs(&engine, "cancel-wait", 1).await.remove(0);
    wait_step(&engine, &run.id, "approval", StepStatus::Waiting).await;
    engine.admin().cancel(&run.id).await.unwrap();
    send(
        &engine,
        json!({"name": "app/approved", "data": {"key": "k"}}),
    )
    .await;
    let d = engine.admin().run(&run.id).await.unwrap();
    assert_eq!(d.summary.status, "Cancelled");
    assert_eq!(step(&d, "approval").status, StepStatus::Waiting);
    assert!(d.output.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_finished_run_is_a_conflict() {
    let f = Function::builder("quick")
        .on_event("app/quick")
        .handler(|_ctx| async { Ok(json!("done")) })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    send(&engine, json!({"name": "app/quick"})).await;
    let d = single_run(&engine, "quick", "Completed").await;
    match engine.admin().cancel(&d.summary.id).await {
        Err(AdminError::Conflict(m)) => assert!(m.contains("Completed"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let after = engine.admin().run(&d.summary.id).await.unwrap();
    assert_eq!(after.summary.status, "Completed");
    assert!(events_named(&engine, "inngest/function.cancelled")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_starts_a_new_run_with_the_same_event() {
    let calls = counter();
    let f = {
        let calls = calls.clone();
        Function::builder("again")
            .on_event("app/again")
            .handler(move |ctx| {
                let calls = calls.clone();
                async move {
                    let n: usize = ctx
                        .step
                        .run("count", || async move { Ok(bump(&calls)) })
                        .await?;
                    Ok(json!({"n": n, "x": ctx.event.data["x"]}))
                }
            })
            .unwrap()
    };
    let (engine, _dir) = start(vec![f]).await;
    let ids = send(&engine, json!({"name": "app/again", "data": {"x": "y"}})).await;
    let first = single_run(&engine, "again", "Completed").await;
    assert_eq!(first.output, Some(json!({"n": 1, "x": "y"})));

    let started = engine.admin().rerun(&first.summary.id).await.unwrap();
    assert_ne!(started.run_id, first.summary.id);
    assert_eq!(started.event_id, ids[0]);
    let second = wait_status(&engine, &started.run_id, "Completed").await;
    assert_eq!(second.summary.trigger_kind, TriggerKind::Rerun);
    assert_eq!(second.rerun_of.as_deref(), Some(first.summary.id.as_str()));
    assert_eq!(second.summary.event_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(
        second.output,
        Some(json!({"n": 2, "x": "y"})),
        "a fresh run: steps run again"
    );
    assert_eq!(runs_of(&engine, "again").await.len(), 2);
    let by_event = engine.admin().event_runs(&ids[0]).await.unwrap();
    assert_eq!(by_event.len(), 2);

    assert!(matches!(
        engine.admin().rerun("01HZZZZZZZZZZZZZZZZZZZZZZZ").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_invoke_starts_a_run_with_the_payload() {
    let f = Function::builder("manual")
        .on_event("app/manual")
        .handler(
            |ctx| async move { Ok(json!({"data": ctx.event.data["a"], "user": ctx.event.user})) },
        )
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let mut data = serde_json::Map::new();
    data.insert("a".into(), json!(1));
    let mut user = serde_json::Map::new();
    user.insert("email".into(), json!("a@b.c"));
    let started = engine.admin().invoke("manual", data, user).await.unwrap();
    let d = wait_status(&engine, &started.run_id, "Completed").await;
    assert_eq!(d.summary.trigger_kind, TriggerKind::Invoke);
    assert_eq!(
        d.output,
        Some(json!({"data": 1, "user": {"email": "a@b.c"}}))
    );
    assert!(matches!(
        engine
            .admin()
            .invoke("nope", Default::default(), Default::default())
            .await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_with_defaults_and_listed_newest_first() {
    let f = Function::builder("listener")
        .on_event("app/listed")
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let before = now_ms();
    let ids = send(
        &engine,
        json!([
            {"name": "app/listed", "data": {"i": 0}, "user": {"u": 1}, "v": "2024-01-01.1"},
            {"name": "app/listed", "data": {"i": 1, "_inngest": {"x": 1}}, "ts": 1_700_000_000_000i64},
            {"name": "app/unlistened"},
        ]),
    )
    .await;
    assert_eq!(ids.len(), 3);
    let e0 = engine.admin().event(&ids[0]).await.unwrap();
    assert_eq!(
        (e0.name.as_str(), e0.id.as_str()),
        ("app/listed", ids[0].as_str())
    );
    assert_eq!(e0.user, json!({"u": 1}));
    assert_eq!(e0.v.as_deref(), Some("2024-01-01.1"));
    assert!(e0.ts >= before && e0.received_at >= before);
    let e1 = engine.admin().event(&ids[1]).await.unwrap();
    assert_eq!(e1.ts, 1_700_000_000_000);
    assert_eq!(e1.data, json!({"i": 1}), "data._inngest is stripped");
    assert_eq!(engine.admin().event_runs(&ids[0]).await.unwrap().len(), 1);
    assert!(engine.admin().event_runs(&ids[2]).await.unwrap().is_empty());
    assert!(matches!(
        engine.admin().event("nope").await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        engine.admin().event_runs("nope").await,
        Err(AdminError::NotFound(_))
    ));

    // Paging through all events, newest first, each exactly once.
    let more: Vec<Value> = (0..9)
        .map(|i| json!({"name": "app/more", "data": {"i": i}}))
        .collect();
    send(&engine, Value::Array(more)).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .admin()
            .events(stepdesk_engine::admin::EventQuery {
                cursor,
                limit: Some(4),
                include_internal: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.events.len() <= 4);
        seen.extend(page.events.into_iter().map(|e| e.internal_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no event twice");
    assert_eq!(seen.len(), 12);
    assert_eq!(events_named(&engine, "app/more").await.len(), 9);
}

/// The size limit is checked on what is stored: `event::stored_len` is the length of the
/// stored payload, also for numbers serde_json writes back longer than they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_measured_size_is_the_stored_size() {
    let (engine, _dir) = start(vec![]).await;
    let bodies = [
        json!({"name": "app/size", "data": {"n": [1e15, -0.0, 1.5, 12345678901234567890u64]}}),
        json!({"name": "app/size", "data": {"s": "caf\u{e9} \"q\"\n"}, "user": {"u": 1}, "id": "sender-id", "v": "2", "ts": 1_700_000_000_000i64}),
    ];
    for body in bodies {
        let text = body.to_string().replace("1000000000000000.0", "1e15");
        let parsed = stepdesk_engine::event::parse_events(text.as_bytes()).unwrap();
        let measured = stepdesk_engine::event::stored_len(&parsed[0]);
        let ids = within("send_events", engine.send_events(parsed))
            .await
            .unwrap();
        let id = ids[0].clone();
        let stored: i64 = engine
            .store()
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT length(CAST(payload AS BLOB)) FROM events WHERE internal_id = ?1",
                    [&id],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(measured as i64, stored, "{text}");
    }

    // The issue's body: 2.86 MiB of `1e15` would be stored as 10.87 MiB. Refused, and
    // nothing stored.
    let mut body = String::from(r#"{"name":"app/big","data":{"n":["#);
    body.push_str(&vec!["1e15"; 600_000].join(","));
    body.push_str("]}}");
    assert!(body.len() < stepdesk_engine::event::MAX_EVENT_BYTES);
    let err = stepdesk_engine::event::parse_events(body.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("as stored") && err.contains("3 MiB"), "{err}");
}

/// An event sent with a `ts` in the future starts its runs then (Inngest's delayed
/// functions); one with a past `ts` at once. A restart in between keeps the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_future_ts_starts_its_runs_then() {
    let dir = tempfile::tempdir().unwrap();
    let later = || {
        Function::builder("later")
            .on_event("app/later")
            .handler(|ctx| async move {
                let at: i64 = ctx
                    .step
                    .run("at", || async { Ok::<_, Error>(now_ms()) })
                    .await?;
                Ok(json!({"at": at}))
            })
            .unwrap()
    };
    let engine = start_in(dir.path(), vec![later()]).await;
    // Far enough ahead that the checks and the restart below fit before it on a busy machine.
    let ts = now_ms() + 6_000;
    send(&engine, json!({"name": "app/later", "data": {}, "ts": ts})).await;
    send(
        &engine,
        json!({"name": "app/later", "data": {"past": true}, "ts": now_ms() - 60_000}),
    )
    .await;
    wait_runs(&engine, "later", 2).await;
    // The past ts: at once.
    eventually(
        "the run of the event with a past ts to complete",
        || async {
            runs_of(&engine, "later")
                .await
                .into_iter()
                .find(|r| r.status == RunStatus::Completed)
        },
    )
    .await;
    // The scheduled run: queued, not started; across a restart too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&engine).await;
    let engine = start_in(dir.path(), vec![later()]).await;
    let scheduled: Vec<_> = runs_of(&engine, "later")
        .await
        .into_iter()
        .filter(|r| r.started_at.is_none())
        .collect();
    assert_eq!(scheduled.len(), 1, "{scheduled:#?}");
    assert_eq!(scheduled[0].status, RunStatus::Running);
    let d = wait_status(&engine, &scheduled[0].id, "Completed").await;
    let at = d.output.unwrap()["at"].as_i64().unwrap();
    assert!(at >= ts, "started {} ms early", ts - at);
    assert!(d.summary.started_at.unwrap() >= ts);
}

/// A singleton function's run does not wait for a future `ts`: it would hold the key's slot
/// until then, and every other run of that key would queue behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_runs_at_once_whatever_the_events_ts() {
    let single = Function::builder("single")
        .on_event("app/single")
        .singleton("data.key")
        .handler(|_ctx| async move { Ok(json!("done")) })
        .unwrap();
    let (engine, _dir) = start(vec![single]).await;
    let far = now_ms() + 3_600_000;
    send(
        &engine,
        json!({"name": "app/single", "data": {"key": "k"}, "ts": far}),
    )
    .await;
    let d = single_run(&engine, "single", "Completed").await;
    assert!(d.summary.started_at.unwrap() < far);
    send(&engine, json!({"name": "app/single", "data": {"key": "k"}})).await;
    wait_runs(&engine, "single", 2).await;
    eventually("the key's next run, not held up", || async {
        let runs = runs_of(&engine, "single").await;
        (runs
            .iter()
            .filter(|r| r.status == RunStatus::Completed)
            .count()
            == 2)
            .then_some(())
    })
    .await;
}
