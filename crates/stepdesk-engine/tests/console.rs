//! The console's engine features: function statistics, cron fires by hand.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use stepdesk_engine::admin::AdminError;
use stepdesk_engine::console::CronFireSource;
use stepdesk_engine::{Error, Function};

use common::*;

fn fns() -> Vec<Function> {
    vec![
        Function::builder("flaky")
            .on_event("app/flaky")
            .retries(0)
            .handler(|ctx| async move {
                let fail = ctx.event.data.get("fail").is_some();
                ctx.step
                    .run("work", || async move {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok(())
                    })
                    .await?;
                if fail {
                    return Err(Error::non_retriable("asked to fail"));
                }
                Ok(json!("ok"))
            })
            .unwrap(),
        Function::builder("minutely")
            .on_cron("* * * * *")
            .handler(|ctx| async move { Ok(ctx.event.data.clone()) })
            .unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_stats_count_by_status_with_durations_and_a_series() {
    let (engine, _dir) = start(fns()).await;
    send(
        &engine,
        json!([{"name": "app/flaky"}, {"name": "app/flaky"}, {"name": "app/flaky", "data": {"fail": true}}]),
    )
    .await;
    for r in wait_runs(&engine, "flaky", 3).await {
        wait_run(&engine, &r.id, "finished", |d| {
            d.summary.status != "Running"
        })
        .await;
    }
    let stats = engine.admin().function_stats("flaky").await.unwrap();
    for w in [&stats.day, &stats.week] {
        assert_eq!((w.counts.completed, w.counts.failed), (2, 1), "{w:?}");
        assert_eq!(w.counts.running + w.counts.cancelled, 0);
        let p50 = w.p50_ms.unwrap();
        assert!((20..5_000).contains(&p50), "{p50}");
        assert!(w.p95_ms.unwrap() >= p50);
        // Whole buckets, the last one holding now.
        let n = w.series.len() as i64;
        assert!(w.from + w.bucket_ms * (n - 1) <= w.to && w.to < w.from + w.bucket_ms * n);
        assert_eq!(w.from % w.bucket_ms, 0);
        let in_series: u64 = w
            .series
            .iter()
            .map(|b| b.counts.completed + b.counts.failed)
            .sum();
        assert_eq!(in_series, 3);
        // Everything happened just now: in the last bucket.
        let last = w.series.last().unwrap();
        assert_eq!(last.counts.completed, 2);
        assert!(last.p95_ms.is_some());
    }
    assert_eq!((stats.day.series.len(), stats.week.series.len()), (24, 28));

    // Runs that ended in past hours (stored straight into the table, for a function not
    // asked about yet: asking caches the hours that are over): in their buckets, and the
    // same on a second call, which reads those hours from its cache.
    let hour = 3_600_000;
    let now = now_ms();
    let three_hours_ago = now - 3 * hour;
    let two_days_ago = now - 48 * hour;
    engine
        .store()
        .write(move |c| {
            let mut stmt = c.prepare(
                "INSERT INTO runs (id, function_id, status, trigger_kind, queued_at, started_at, ended_at)
                 VALUES (?1, 'minutely', ?2, 'cron', ?3, ?3, ?4)",
            )?;
            for (i, (status, ended, took)) in [
                ("Completed", three_hours_ago, 1_000),
                ("Failed", three_hours_ago, 3_000),
                ("Cancelled", two_days_ago, 500),
            ]
            .into_iter()
            .enumerate()
            {
                stmt.execute((format!("old{i}"), status, ended - took, ended))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let first = engine.admin().function_stats("minutely").await.unwrap();
    let bucket_of = |w: &stepdesk_engine::console::StatsWindow, at: i64| {
        w.series
            .iter()
            .find(|b| b.start <= at && at < b.start + w.bucket_ms)
            .unwrap()
            .clone()
    };
    let b = bucket_of(&first.day, three_hours_ago);
    assert_eq!((b.counts.completed, b.counts.failed), (1, 1));
    assert_eq!(b.p95_ms, Some(3_000));
    assert_eq!(
        first.day.counts.cancelled, 0,
        "two days ago is outside the day"
    );
    assert_eq!(first.week.counts.cancelled, 1);
    assert_eq!(bucket_of(&first.week, two_days_ago).counts.cancelled, 1);
    assert_eq!(
        (first.week.counts.completed, first.week.counts.failed),
        (1, 1)
    );
    let again = engine.admin().function_stats("minutely").await.unwrap();
    assert_eq!(again.week.counts, first.week.counts);
    assert_eq!(bucket_of(&again.day, three_hours_ago), b);
    assert!(matches!(
        engine.admin().function_stats("nope").await,
        Err(AdminError::NotFound(_))
    ));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_runs_now_and_replays_a_past_time_more_than_once() {
    let (engine, _dir) = start(fns()).await;
    let admin = engine.admin();
    let now = admin.run_cron("minutely", None).await.unwrap();
    let d = wait_status(&engine, &now.run_id, "Completed").await;
    assert_eq!(d.summary.trigger_kind, TriggerKind::Cron);
    assert!(!d.summary.late);
    assert_eq!(d.output.as_ref().unwrap()["manual"], "run_now");

    let minute = 60_000;
    let past = (now_ms() / minute - 5) * minute;
    let r1 = admin.run_cron("minutely", Some(past)).await.unwrap();
    let r2 = admin.run_cron("minutely", Some(past)).await.unwrap();
    assert_ne!(r1.run_id, r2.run_id, "a replay is a new run each time");
    for r in [&r1, &r2] {
        let d = wait_status(&engine, &r.run_id, "Completed").await;
        assert_eq!(d.summary.cron_scheduled_at, Some(past));
        assert_eq!(d.output.as_ref().unwrap()["manual"], "replay");
    }
    let fires = admin.cron_fires("minutely", 10).await.unwrap();
    let manual: Vec<_> = fires
        .iter()
        .filter(|f| f.source != CronFireSource::Schedule)
        .map(|f| (f.run_id.clone(), f.source))
        .collect();
    assert_eq!(
        manual,
        [
            (r2.run_id.clone(), CronFireSource::Replay),
            (r1.run_id.clone(), CronFireSource::Replay),
            (now.run_id.clone(), CronFireSource::RunNow),
        ]
    );
    // The scheduler's record of that time is untouched: replays do not take it.
    let scheduled_past: i64 = engine
        .store()
        .read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM cron_fires WHERE scheduled_at = ?1",
                [past],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(scheduled_past, 0);

    // Bad requests.
    for (f, at, expected) in [
        ("minutely", Some(past + 1), "not a scheduled time"),
        ("minutely", Some(now_ms() + 10 * minute), "future"),
        ("flaky", None, "no cron trigger"),
    ] {
        match admin.run_cron(f, at).await {
            Err(AdminError::BadRequest(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("{f} {at:?}: {other:?}"),
        }
    }
    assert!(matches!(
        admin.run_cron("nope", None).await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        admin.cron_fires("minutely", 0).await,
        Err(AdminError::BadRequest(_))
    ));
    stop(&engine).await;
}

fn three_steps(a: Counter, b: Counter, c: Counter, seen: Arc<Mutex<Vec<Value>>>) -> Function {
    Function::builder("three")
        .on_event("app/three")
        .handler(move |ctx| {
            let (a, b, c, seen) = (a.clone(), b.clone(), c.clone(), seen.clone());
            async move {
                let x: usize = ctx.step.run("a", || async move { Ok(bump(&a)) }).await?;
                let y: Value = ctx
                    .step
                    .run_with("b", json!({"n": x}), |input: Value| async move {
                        bump(&b);
                        seen.lock().unwrap().push(input.clone());
                        Ok(input)
                    })
                    .await?;
                let z: usize = ctx.step.run("c", || async move { Ok(bump(&c)) }).await?;
                Ok(json!({"x": x, "y": y, "z": z}))
            }
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_from_a_step_reuses_the_earlier_steps_and_runs_the_rest_with_an_edited_input() {
    let (a, b, c) = (counter(), counter(), counter());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (engine, _dir) = start(vec![three_steps(
        a.clone(),
        b.clone(),
        c.clone(),
        seen.clone(),
    )])
    .await;
    send(&engine, json!({"name": "app/three"})).await;
    let first = single_run(&engine, "three", "Completed").await;
    assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 1));
    assert_eq!(step(&first, "b").input, Some(json!({"n": 1})));
    let b_hash = step(&first, "b").hash.clone();
    let admin = engine.admin();

    let edited = admin
        .rerun_from(&first.summary.id, &b_hash, Some(json!({"n": 41})))
        .await
        .unwrap();
    let d = wait_status(&engine, &edited.run_id, "Completed").await;
    assert_eq!(
        (count(&a), count(&b), count(&c)),
        (1, 2, 2),
        "the step before b did not run again; b and c did"
    );
    assert_eq!(seen.lock().unwrap().last(), Some(&json!({"n": 41})));
    assert_eq!(d.output, Some(json!({"x": 1, "y": {"n": 41}, "z": 2})));
    assert_eq!(d.summary.trigger_kind, TriggerKind::Rerun);
    assert_eq!(d.rerun_of.as_deref(), Some(first.summary.id.as_str()));
    assert_eq!(d.rerun_from_step.as_deref(), Some(b_hash.as_str()));
    assert_eq!(d.rerun_step_input, Some(json!({"n": 41})));
    assert_eq!(
        step(&d, "a").reused_from.as_deref(),
        Some(first.summary.id.as_str())
    );
    assert_eq!(step(&d, "b").reused_from, None);
    assert_eq!(step(&d, "b").input, Some(json!({"n": 41})));
    let order: Vec<_> = d.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);

    // From the last step, without an edit: a and b are reused.
    let c_hash = step(&first, "c").hash.clone();
    let plain = admin
        .rerun_from(&first.summary.id, &c_hash, None)
        .await
        .unwrap();
    let d = wait_status(&engine, &plain.run_id, "Completed").await;
    assert_eq!((count(&a), count(&b), count(&c)), (1, 2, 3));
    assert_eq!(d.output, Some(json!({"x": 1, "y": {"n": 1}, "z": 3})));

    // Refused: an unknown step, an input for a step that takes none, an unknown run.
    let a_hash = step(&first, "a").hash.clone();
    for (hash, input, expected) in [
        ("nope", None, "no step"),
        (a_hash.as_str(), Some(json!(1)), "takes no input"),
    ] {
        match admin.rerun_from(&first.summary.id, hash, input).await {
            Err(AdminError::BadRequest(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("{hash}: {other:?}"),
        }
    }
    assert!(matches!(
        admin
            .rerun_from("01J00000000000000000000000", &b_hash, None)
            .await,
        Err(AdminError::NotFound(_))
    ));
    assert_eq!(
        runs_of(&engine, "three").await.len(),
        3,
        "refusals started nothing"
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_runs_by_event_output_and_step_errors() {
    let shipper = Function::builder("shipper")
        .on_event("app/ship")
        .retries(0)
        .handler(|ctx| async move {
            let parcel: String = ctx
                .step
                .run("label", || async move { Ok("Parcel-Zebra-42".to_string()) })
                .await?;
            if ctx.event.data.get("break").is_some() {
                ctx.step
                    .run("carrier", || async move {
                        Err::<(), _>(Error::non_retriable("Carrier Überlastet: try later"))
                    })
                    .await?;
            }
            Ok(json!({"parcel": parcel, "note": "delivered quickly"}))
        })
        .unwrap();
    let (engine, _dir) = start(vec![shipper]).await;
    send(
        &engine,
        json!([
            {"name": "app/ship", "data": {"customer": "Ada Lovelace"}},
            {"name": "app/ship", "data": {"customer": "Grace Hopper", "break": true}},
        ]),
    )
    .await;
    let runs = wait_runs(&engine, "shipper", 2).await;
    let ada = wait_status(&engine, &runs[0].id, "Completed")
        .await
        .summary
        .id;
    let grace = wait_status(&engine, &runs[1].id, "Failed").await.summary.id;
    let admin = engine.admin();
    let search = |q: &'static str| {
        let admin = admin.clone();
        async move {
            let deadline = std::time::Instant::now() + TIMEOUT;
            loop {
                let r = admin.search_runs(q, 50).await.unwrap();
                if r.pending == 0 || std::time::Instant::now() > deadline {
                    return r.runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    // The event's payload, case-insensitively.
    assert_eq!(search("ada LOVELACE").await, std::slice::from_ref(&ada));
    // A step's output, found by both runs, newest first.
    assert_eq!(
        search("parcel-zebra-42").await,
        [grace.clone(), ada.clone()]
    );
    // The run's output, and a word prefix.
    assert_eq!(search("deliv").await, std::slice::from_ref(&ada));
    // A failed step's error, accents ignored.
    assert_eq!(search("uberlastet").await, std::slice::from_ref(&grace));
    assert!(search("nothing-like-this").await.is_empty());
    // FTS5 syntax is taken as words.
    assert!(search("ada OR grace").await.is_empty());
    for (q, limit) in [("  ", 10), ("***", 10), ("ada", 0), ("ada", 201)] {
        assert!(
            matches!(
                admin.search_runs(q, limit).await,
                Err(AdminError::BadRequest(_))
            ),
            "{q:?} {limit}"
        );
    }
    stop(&engine).await;
}
