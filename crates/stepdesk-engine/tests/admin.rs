//! The admin API's listings: runs with cursor pagination and filters, and functions.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_engine::admin::{AdminError, EventQuery, RunQuery, RunSummary};
use stepdesk_engine::RunStatus;
use stepdesk_engine::{Engine, Error, Function};

use common::*;

fn fns() -> Vec<Function> {
    vec![
        Function::builder("ok-fn")
            .name("Succeeds")
            .on_event("app/ok")
            .handler(|_ctx| async { Ok(json!("ok")) })
            .unwrap(),
        Function::builder("bad-fn")
            .on_event("app/bad")
            .retries(0)
            .handler(|_ctx| async { Err::<(), _>(Error::non_retriable("bad")) })
            .unwrap(),
        Function::builder("slow-fn")
            .on_event("app/slow")
            .handler(|ctx| async move {
                ctx.step.sleep("forever", Duration::from_secs(3600)).await?;
                Ok(())
            })
            .unwrap(),
    ]
}

async fn page_all(engine: &Engine, q: RunQuery) -> (Vec<RunSummary>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut q = q;
    let mut total = None;
    loop {
        let page = engine.admin().runs(q.clone()).await.unwrap();
        pages += 1;
        // Every page carries the same total, exact at this size.
        assert!(page.total_exact);
        assert_eq!(*total.get_or_insert(page.total), page.total);
        assert!(page.runs.len() <= q.limit.unwrap_or(50) as usize);
        out.extend(page.runs);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => {
                assert_eq!(
                    total,
                    Some(out.len() as u64),
                    "the total counts the runs listed"
                );
                return (out, pages);
            }
        }
        assert!(pages < 1000, "pagination does not end");
    }
}

async fn settle(engine: &Engine) {
    // Every run has reached its resting state (sleeping runs stay Running).
    for r in all_runs(engine, None).await {
        if r.function_id == "slow-fn" {
            wait_step(engine, &r.id, "forever", StepStatus::Sleeping).await;
        } else if r.function_id == "bad-fn" {
            wait_status(engine, &r.id, "Failed").await;
        } else {
            wait_status(engine, &r.id, "Completed").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pagination_returns_every_run_once_newest_first() {
    let (engine, _dir) = start(fns()).await;
    let batch: Vec<Value> = (0..23)
        .map(|i| json!({"name": if i % 3 == 0 { "app/bad" } else { "app/ok" }, "data": {"i": i}}))
        .collect();
    send(&engine, Value::Array(batch)).await;
    for i in 0..5 {
        send(&engine, json!({"name": "app/ok", "data": {"i": 100 + i}})).await;
    }
    settle(&engine).await;
    let everything = all_runs(&engine, None).await;
    assert_eq!(everything.len(), 28);

    let (runs, pages) = page_all(
        &engine,
        RunQuery {
            limit: Some(5),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pages, 6);
    assert_eq!(runs.len(), 28);
    let ids: HashSet<_> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 28, "no run twice");
    for w in runs.windows(2) {
        assert!(w[0].id > w[1].id, "newest first");
        assert!(w[0].queued_at >= w[1].queued_at);
    }
    // The newest run is the last event sent.
    let newest = engine.admin().run(&runs[0].id).await.unwrap();
    assert_eq!(newest.event.unwrap()["data"]["i"], json!(104));

    // A page of exactly the remaining runs has no next cursor.
    let all_at_once = engine
        .admin()
        .runs(RunQuery {
            limit: Some(28),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all_at_once.runs.len(), 28);
    assert_eq!(all_at_once.next_cursor, None);
    assert_eq!(all_at_once.runs, runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filter_by_function_status_and_time() {
    let (engine, _dir) = start(fns()).await;
    send(
        &engine,
        json!([
            {"name": "app/ok"}, {"name": "app/ok"}, {"name": "app/bad"}, {"name": "app/slow"},
        ]),
    )
    .await;
    settle(&engine).await;
    // A clear gap in time between the two batches.
    let first_batch_done = now_ms();
    eventually("time to move on", || async {
        (now_ms() > first_batch_done + 5).then_some(())
    })
    .await;
    let boundary = now_ms();
    eventually("time to move on", || async {
        (now_ms() > boundary + 5).then_some(())
    })
    .await;
    send(
        &engine,
        json!([{"name": "app/ok"}, {"name": "app/bad"}, {"name": "app/bad"}]),
    )
    .await;
    settle(&engine).await;

    let q = |f: Option<&str>, s: Option<&str>, from: Option<i64>, to: Option<i64>| RunQuery {
        function_id: f.map(str::to_string),
        status: s
            .map(|s| s.parse().expect("a status"))
            .into_iter()
            .collect(),
        from,
        to,
        limit: Some(2),
        ..Default::default()
    };
    let count_of = |runs: &[RunSummary], pred: &dyn Fn(&RunSummary) -> bool| {
        runs.iter().filter(|r| pred(r)).count()
    };

    let (ok, _) = page_all(&engine, q(Some("ok-fn"), None, None, None)).await;
    assert_eq!(ok.len(), 3);
    assert!(ok
        .iter()
        .all(|r| r.function_id == "ok-fn" && r.function_name == "Succeeds"));

    let (failed, _) = page_all(&engine, q(None, Some("Failed"), None, None)).await;
    assert_eq!(failed.len(), 3);
    assert!(failed
        .iter()
        .all(|r| r.status == "Failed" && r.function_id == "bad-fn"));

    let (running, _) = page_all(&engine, q(None, Some("Running"), None, None)).await;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].function_id, "slow-fn");

    let (completed, _) = page_all(&engine, q(None, Some("Completed"), None, None)).await;
    assert_eq!(completed.len(), 3);
    assert!(page_all(&engine, q(None, Some("Cancelled"), None, None))
        .await
        .0
        .is_empty());

    let (both, _) = page_all(&engine, q(Some("bad-fn"), Some("Failed"), None, None)).await;
    assert_eq!(both.len(), 3);
    assert!(
        page_all(&engine, q(Some("ok-fn"), Some("Failed"), None, None))
            .await
            .0
            .is_empty()
    );

    let (early, _) = page_all(&engine, q(None, None, None, Some(boundary))).await;
    assert_eq!(early.len(), 4);
    assert!(early.iter().all(|r| r.queued_at < boundary));
    let (late, _) = page_all(&engine, q(None, None, Some(boundary), None)).await;
    assert_eq!(late.len(), 3);
    assert!(late.iter().all(|r| r.queued_at >= boundary));
    let (late_bad, _) = page_all(
        &engine,
        q(
            Some("bad-fn"),
            Some("Failed"),
            Some(boundary),
            Some(now_ms() + 1),
        ),
    )
    .await;
    assert_eq!(late_bad.len(), 2);
    assert_eq!(count_of(&late_bad, &|r| r.queued_at >= boundary), 2);
    assert!(
        page_all(&engine, q(None, None, Some(now_ms() + 60_000), None))
            .await
            .0
            .is_empty()
    );

    let all = all_runs(&engine, None).await;
    assert_eq!(all.len(), 7);

    // Bad queries: an unknown status (or another casing) does not deserialize.
    for bad in ["Done", "running"] {
        let err = serde_json::from_value::<RunQuery>(json!({ "status": bad })).unwrap_err();
        assert!(err.to_string().contains("Running"), "{bad}: {err}");
    }
    for bad in [RunQuery {
        from: Some(10),
        to: Some(5),
        ..Default::default()
    }] {
        match engine.admin().runs(bad.clone()).await {
            Err(AdminError::BadRequest(_)) => {}
            other => panic!("{bad:?}: expected a bad request, got {other:?}"),
        }
    }
    // An unknown function simply has no runs.
    assert!(page_all(&engine, q(Some("nope"), None, None, None))
        .await
        .0
        .is_empty());
    assert!(matches!(
        engine.admin().run("nope").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_listed_with_triggers_retries_and_failure_handlers() {
    let f = Function::builder("with-handler")
        .name("With handler")
        .on_event("app/a")
        .on_event("app/b.*")
        .on_cron("TZ=Europe/Paris 0 9 * * 1")
        .retries(7)
        .on_failure(|_ctx| async { Ok(()) })
        .handler(|_ctx| async { Ok(()) })
        .unwrap();
    let (engine, _dir) = start(vec![f]).await;
    let fns = engine.admin().functions();
    assert_eq!(fns.len(), 2);
    let main = fns.iter().find(|f| f.id == "with-handler").unwrap();
    assert_eq!(main.name, "With handler");
    assert_eq!(main.retries, 7);
    assert!(main.has_failure_handler);
    let kinds: Vec<_> = main
        .triggers
        .iter()
        .map(|t| (t.kind.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Event", "app/a"),
            ("Event", "app/b.*"),
            ("Cron", "TZ=Europe/Paris 0 9 * * 1")
        ]
    );
    let next = main.triggers[2].next_fire_at.unwrap();
    assert!(next > now_ms() && next <= now_ms() + 8 * 24 * 3600 * 1000);
    assert!(main.triggers[0].next_fire_at.is_none());

    let handler = fns.iter().find(|f| f.id == "with-handler-failure").unwrap();
    assert_eq!(handler.failure_handler_of.as_deref(), Some("with-handler"));
    assert_eq!(handler.triggers[0].value, "inngest/function.failed");
    assert!(handler.triggers[0]
        .condition
        .as_deref()
        .unwrap()
        .contains("with-handler"));

    // Wildcard triggers.
    send(
        &engine,
        json!([{"name": "app/b.created"}, {"name": "app/bx"}, {"name": "app/a"}]),
    )
    .await;
    let runs = wait_runs(&engine, "with-handler", 2).await;
    for r in &runs {
        wait_status(&engine, &r.id, "Completed").await;
    }
    let names: Vec<_> = runs.iter().map(|r| r.event_name.clone().unwrap()).collect();
    assert_eq!(names, ["app/b.created", "app/a"]);
}

/// The paging convention (see `stepdesk_engine::admin`): a `limit` outside 1..=max and a
/// cursor that is not one are refused with a 400-style error, for every list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_refuses_a_bad_limit_or_cursor_and_pages_the_same_way() {
    use stepdesk_engine::admin::{EventQuery, EVENTS_PAGE, RUNS_PAGE};

    let (engine, _dir) = start(fns()).await;
    let batch: Vec<Value> = (0..7)
        .map(|i| json!({"name": "app/ok", "data": {"i": i}}))
        .collect();
    send(&engine, Value::Array(batch)).await;
    settle(&engine).await;
    let admin = engine.admin();

    fn bad_request<T: std::fmt::Debug>(r: Result<T, AdminError>, expected: &str) {
        match r {
            Err(AdminError::BadRequest(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("expected a bad request ({expected}), got {other:?}"),
        }
    }
    let runs = |limit: Option<u32>, cursor: Option<&str>| RunQuery {
        limit,
        cursor: cursor.map(str::to_string),
        ..Default::default()
    };
    let events = |limit: Option<u32>, cursor: Option<&str>| EventQuery {
        name: Some("app/ok".into()),
        limit,
        cursor: cursor.map(str::to_string),
        ..Default::default()
    };

    // limit 0, and over the maximum: refused, naming the range.
    bad_request(admin.runs(runs(Some(0), None)).await, "between 1 and 500");
    bad_request(admin.runs(runs(Some(501), None)).await, "between 1 and 500");
    bad_request(
        admin.events(events(Some(0), None)).await,
        "between 1 and 500",
    );
    bad_request(
        admin.events(events(Some(u32::MAX), None)).await,
        "between 1 and 500",
    );
    // The bounds themselves are fine; no limit is the default.
    assert_eq!(admin.runs(runs(Some(1), None)).await.unwrap().runs.len(), 1);
    assert_eq!(
        admin.runs(runs(Some(500), None)).await.unwrap().runs.len(),
        7
    );
    assert_eq!(RUNS_PAGE.default, 50);
    assert_eq!(EVENTS_PAGE.default, 20);
    assert_eq!(admin.runs(runs(None, None)).await.unwrap().runs.len(), 7);

    // A garbage cursor is refused, not answered with the first page.
    for garbage in [
        "garbage",
        "' OR 1=1 --",
        "01J",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    ] {
        bad_request(admin.runs(runs(Some(3), Some(garbage))).await, "bad cursor");
        bad_request(
            admin.events(events(Some(3), Some(garbage))).await,
            "bad cursor",
        );
    }
    // An empty cursor is the first page.
    let first = admin.runs(runs(Some(3), Some(""))).await.unwrap();
    assert_eq!(first, admin.runs(runs(Some(3), None)).await.unwrap());

    // Paging end to end, both lists: every item once, newest first, `next_cursor` null at
    // the end; a cursor in lower case (ULIDs are case-insensitive) works the same.
    let mut run_ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = admin.runs(runs(Some(3), cursor.as_deref())).await.unwrap();
        assert!(page.runs.len() <= 3);
        run_ids.extend(page.runs.iter().map(|r| r.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c.to_lowercase()),
            None => break,
        }
    }
    let mut event_ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = admin
            .events(events(Some(3), cursor.as_deref()))
            .await
            .unwrap();
        assert!(page.events.len() <= 3);
        event_ids.extend(page.events.iter().map(|e| e.internal_id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for ids in [&run_ids, &event_ids] {
        assert_eq!(ids.len(), 7, "{ids:?}");
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.reverse();
        sorted.dedup();
        assert_eq!(&sorted, ids, "newest first, each once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filter_by_several_statuses_trigger_kind_and_event_name_with_totals() {
    let (engine, _dir) = start(fns()).await;
    send(
        &engine,
        json!([{"name": "app/ok"}, {"name": "app/bad"}, {"name": "app/bad"}, {"name": "app/slow"}]),
    )
    .await;
    settle(&engine).await;
    let invoked = engine
        .admin()
        .invoke("ok-fn", Default::default(), Default::default())
        .await
        .unwrap();
    wait_status(&engine, &invoked.run_id, "Completed").await;

    // Several statuses: merged newest first, and each run once.
    let (ended, _) = page_all(
        &engine,
        RunQuery {
            status: vec![RunStatus::Failed, RunStatus::Completed],
            limit: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ended.len(), 4);
    let mut ids: Vec<_> = ended.iter().map(|r| r.id.clone()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort_by(|a, b| b.cmp(a));
        s
    };
    assert_eq!(ids, sorted, "newest first across statuses");
    ids.dedup();
    assert_eq!(ids.len(), 4);
    // The same as the query string carries it.
    let q: RunQuery =
        serde_json::from_value(json!({"status": "Failed,Completed", "limit": 1})).unwrap();
    assert_eq!(page_all(&engine, q).await.0, ended);

    let by_kind = |k| RunQuery {
        trigger_kind: Some(k),
        ..Default::default()
    };
    let (invokes, _) = page_all(&engine, by_kind(TriggerKind::Invoke)).await;
    assert_eq!(invokes.len(), 1);
    assert_eq!(invokes[0].id, invoked.run_id);
    assert_eq!(
        invokes[0].event_name.as_deref(),
        Some("inngest/function.invoked")
    );
    assert_eq!(
        page_all(&engine, by_kind(TriggerKind::Event)).await.0.len(),
        4
    );
    assert!(page_all(&engine, by_kind(TriggerKind::Cron))
        .await
        .0
        .is_empty());

    let (bad, _) = page_all(
        &engine,
        RunQuery {
            event_name: Some("app/bad".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bad.len(), 2);
    assert!(bad
        .iter()
        .all(|r| r.event_name.as_deref() == Some("app/bad")));
    // Empty text is no filter (as an empty query-string field arrives).
    let page = engine
        .admin()
        .runs(RunQuery {
            function_id: Some(String::new()),
            event_name: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.total_exact), (5, true));
    // The total ignores the cursor and the page size.
    let first = engine
        .admin()
        .runs(RunQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = engine
        .admin()
        .runs(RunQuery {
            limit: Some(2),
            cursor: first.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((first.total, second.total), (5, 5));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_filter_by_name_and_time_and_hide_internal_ones_unless_asked() {
    let (engine, _dir) = start(fns()).await;
    send(&engine, json!([{"name": "app/ok"}, {"name": "app/bad"}])).await;
    settle(&engine).await;
    let boundary = now_ms();
    eventually("time to move on", || async {
        (now_ms() > boundary + 2).then_some(())
    })
    .await;
    send(&engine, json!({"name": "app/ok"})).await;
    settle(&engine).await;
    let list = |q: EventQuery| {
        let engine = engine.clone();
        async move {
            let page = engine.admin().events(q).await.unwrap();
            page.events.into_iter().map(|e| e.name).collect::<Vec<_>>()
        }
    };
    // The failed run sent `inngest/function.failed`: hidden by default.
    assert_eq!(
        list(EventQuery::default()).await,
        ["app/ok", "app/bad", "app/ok"]
    );
    let all = list(EventQuery {
        include_internal: true,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 4);
    assert!(all.contains(&"inngest/function.failed".to_string()));
    // Asking for an internal name shows it.
    assert_eq!(
        list(EventQuery {
            name: Some("inngest/function.failed".into()),
            ..Default::default()
        })
        .await,
        ["inngest/function.failed"]
    );
    assert_eq!(
        list(EventQuery {
            from: Some(boundary),
            ..Default::default()
        })
        .await,
        ["app/ok"]
    );
    assert_eq!(
        list(EventQuery {
            name: Some("app/ok".into()),
            to: Some(boundary),
            ..Default::default()
        })
        .await,
        ["app/ok"]
    );
    assert!(matches!(
        engine
            .admin()
            .events(EventQuery {
                from: Some(10),
                to: Some(5),
                ..Default::default()
            })
            .await,
        Err(AdminError::BadRequest(_))
    ));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_ten_thousand_matches_the_total_is_an_estimate_that_says_so() {
    let (engine, _dir) = start(fns()).await;
    let n = 10_050u64;
    let start_ms = now_ms() - 100_000;
    // Stored straight into the table: the count is what is under test, not ingestion.
    engine
        .store()
        .write(move |c| {
            let mut stmt = c.prepare(
                "INSERT INTO runs (id, function_id, status, trigger_kind, queued_at, event_name)
                 VALUES (?1, 'ok-fn', 'Completed', 'event', ?2, 'app/ok')",
            )?;
            for i in 0..n {
                let at = start_ms + i as i64 * 5;
                let id = ulid::Ulid::from_parts(at as u64, i as u128).to_string();
                stmt.execute((&id, at))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let page = engine.admin().runs(RunQuery::default()).await.unwrap();
    assert_eq!(
        (page.total, page.total_exact),
        (n, false),
        "all runs: from row ids"
    );
    // A time range: the runs stored in it.
    let page = engine
        .admin()
        .runs(RunQuery {
            from: Some(start_ms + 5 * 10),
            to: Some(start_ms + 5 * 10_040),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.total_exact), (10_030, false));
    // A narrower range is counted exactly.
    let page = engine
        .admin()
        .runs(RunQuery {
            from: Some(start_ms + 5 * 100),
            to: Some(start_ms + 5 * 200),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.total_exact), (100, true));
    // Other filters past the bound: a lower bound.
    let page = engine
        .admin()
        .runs(RunQuery {
            status: vec![RunStatus::Completed],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.total_exact), (10_000, false));
    assert_eq!(page.runs.len(), 50);
    stop(&engine).await;
}
