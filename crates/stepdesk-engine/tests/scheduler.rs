//! The cron scheduler: a fire missed while the engine was stopped runs once at start-up,
//! marked late, and never again; plus checks of cron parsing and next/previous times.

mod common;

use std::path::Path;

use chrono::{Timelike, Utc};
use serde_json::json;
use stepdesk_engine::cron::CronSpec;
use stepdesk_engine::{Durability, Engine, Function, Store};

use common::*;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A daily cron whose last scheduled time was about twelve hours ago, so it neither fires
/// during the test nor sits near "now".
fn daily_twelve_hours_off() -> String {
    let now = Utc::now();
    format!("{} {} * * *", now.minute(), (now.hour() + 12) % 24)
}

fn cron_fn(id: &str, expr: &str) -> Function {
    Function::builder(id)
        .on_cron(expr)
        .handler(|ctx| async move {
            let scheduled = ctx.event.data["scheduledAt"].clone();
            let seen: String = ctx
                .step
                .run("tick", || async { Ok("ticked".to_string()) })
                .await?;
            Ok(json!({"scheduledAt": scheduled, "tick": seen}))
        })
        .unwrap()
}

async fn cron_state(engine: &Engine, function_id: &str) -> Option<(String, i64)> {
    let f = function_id.to_string();
    engine
        .store()
        .read(move |c| {
            let mut stmt =
                c.prepare("SELECT cron, anchor FROM cron_state WHERE function_id = ?1")?;
            let mut rows = stmt.query([f])?;
            Ok(match rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            })
        })
        .await
        .unwrap()
}

/// Waits until the scheduler has looked at `sentinel`, which it does only after every
/// schedule registered before it (including any catch-up fire) is done.
async fn wait_scheduler_past(engine: &Engine, sentinel: &str) {
    let e = engine.clone();
    let s = sentinel.to_string();
    eventually(&format!("the scheduler to reach {sentinel}"), move || {
        let (e, s) = (e.clone(), s.clone());
        async move { cron_state(&e, &s).await.map(|_| ()) }
    })
    .await;
}

async fn move_anchor_back(dir: &Path, function_id: &str, by_ms: i64) {
    let store = Store::open(&stepdesk_engine::database_path(dir), Durability::Normal).unwrap();
    let f = function_id.to_string();
    let changed = store
        .write(move |c| {
            Ok(c.execute(
                "UPDATE cron_state SET anchor = anchor - ?2 WHERE function_id = ?1",
                rusqlite::params![f, by_ms],
            )?)
        })
        .await
        .unwrap();
    assert_eq!(changed, 1);
    tokio::task::spawn_blocking(move || store.close())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_missed_while_stopped_runs_once_late_and_never_again() {
    let expr = daily_twelve_hours_off();
    let spec = CronSpec::parse(&expr).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // First start: the cron becomes known; nothing before that is owed.
    let started = now_ms();
    let engine = start_in(
        dir.path(),
        vec![cron_fn("daily", &expr), cron_fn("sentinel-1", "0 0 1 1 *")],
    )
    .await;
    wait_scheduler_past(&engine, "sentinel-1").await;
    let (text, anchor) = cron_state(&engine, "daily").await.unwrap();
    assert_eq!(text, expr);
    assert!(anchor >= started && anchor <= now_ms());
    assert!(
        runs_of(&engine, "daily").await.is_empty(),
        "no backfill on first sight"
    );
    let listed = engine.admin().functions();
    let daily = listed.iter().find(|f| f.id == "daily").unwrap();
    assert_eq!(daily.triggers[0].kind, TriggerKind::Cron);
    assert_eq!(daily.triggers[0].value, expr);
    let next = daily.triggers[0].next_fire_at.unwrap();
    assert!(next > now_ms() && next <= now_ms() + DAY_MS);
    stop(&engine).await;
    drop(engine);

    // As if Stepdesk had been closed for two days.
    move_anchor_back(dir.path(), "daily", 2 * DAY_MS).await;

    let engine = start_in(
        dir.path(),
        vec![cron_fn("daily", &expr), cron_fn("sentinel-2", "0 0 1 1 *")],
    )
    .await;
    let runs = wait_runs(&engine, "daily", 1).await;
    wait_scheduler_past(&engine, "sentinel-2").await;
    let runs_after = runs_of(&engine, "daily").await;
    assert_eq!(
        runs_after.len(),
        1,
        "one catch-up fire, not one per missed day: {runs_after:#?}"
    );
    let expected = spec.last_at_or_before(now_ms()).unwrap();
    assert!(now_ms() - expected > 60_000 && now_ms() - expected <= DAY_MS);
    let run = &runs[0];
    assert_eq!(run.trigger_kind, TriggerKind::Cron);
    assert!(run.late, "a missed fire is marked late");
    assert_eq!(run.cron_scheduled_at, Some(expected));
    assert_eq!(run.event_name.as_deref(), Some("inngest/scheduled.timer"));
    let d = wait_status(&engine, &run.id, "Completed").await;
    let scheduled_text = stepdesk_engine::time::to_rfc3339(expected);
    assert_eq!(d.output.unwrap()["scheduledAt"], json!(scheduled_text));
    let ev = d.event.unwrap();
    assert_eq!(ev["data"]["cron"], json!(expr));
    assert_eq!(ev["data"]["late"], json!(true));
    stop(&engine).await;
    drop(engine);

    // Restarting again owes nothing: that fire already happened.
    let engine = start_in(
        dir.path(),
        vec![cron_fn("daily", &expr), cron_fn("sentinel-3", "0 0 1 1 *")],
    )
    .await;
    wait_scheduler_past(&engine, "sentinel-3").await;
    let runs = runs_of(&engine, "daily").await;
    assert_eq!(runs.len(), 1, "the missed fire ran exactly once: {runs:#?}");
    let fires: i64 = engine
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM cron_fires WHERE function_id = 'daily'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(fires, 1);
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_cron_expression_is_not_backfilled() {
    let expr = daily_twelve_hours_off();
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(
        dir.path(),
        vec![cron_fn("daily", &expr), cron_fn("sentinel-1", "0 0 1 1 *")],
    )
    .await;
    wait_scheduler_past(&engine, "sentinel-1").await;
    stop(&engine).await;
    drop(engine);
    move_anchor_back(dir.path(), "daily", 2 * DAY_MS).await;

    // Same function, new schedule: its history starts now.
    let now = Utc::now();
    let changed = format!(
        "{} {} * * *",
        (now.minute() + 30) % 60,
        (now.hour() + 12) % 24
    );
    let engine = start_in(
        dir.path(),
        vec![
            cron_fn("daily", &changed),
            cron_fn("sentinel-2", "0 0 1 1 *"),
        ],
    )
    .await;
    wait_scheduler_past(&engine, "sentinel-2").await;
    assert!(runs_of(&engine, "daily").await.is_empty());
    let (text, anchor) = cron_state(&engine, "daily").await.unwrap();
    assert_eq!(text, changed);
    assert!(now_ms() - anchor < 60_000, "the anchor was reset");
    stop(&engine).await;
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn every_minute_fires_on_each_minute_boundary() {
    let c = CronSpec::parse("* * * * *").unwrap();
    assert_eq!(
        c.next_after(ms("2026-03-01T10:00:00Z")),
        Some(ms("2026-03-01T10:01:00Z")),
        "strictly after"
    );
    assert_eq!(
        c.next_after(ms("2026-03-01T10:00:59.999Z")),
        Some(ms("2026-03-01T10:01:00Z"))
    );
    assert_eq!(
        c.last_at_or_before(ms("2026-03-01T10:00:00Z")),
        Some(ms("2026-03-01T10:00:00Z")),
        "inclusive"
    );
    assert_eq!(
        c.last_at_or_before(ms("2026-03-01T10:00:30Z")),
        Some(ms("2026-03-01T10:00:00Z"))
    );
}

#[test]
fn steps_lists_and_weekdays() {
    let c = CronSpec::parse("*/15 9-17 * * 1-5").unwrap();
    // Friday 2026-01-09 17:50 UTC: next is Monday 09:00.
    assert_eq!(
        c.next_after(ms("2026-01-09T17:50:00Z")),
        Some(ms("2026-01-12T09:00:00Z"))
    );
    assert_eq!(
        c.next_after(ms("2026-01-12T09:00:00Z")),
        Some(ms("2026-01-12T09:15:00Z"))
    );
    assert_eq!(
        c.last_at_or_before(ms("2026-01-11T12:00:00Z")),
        Some(ms("2026-01-09T17:45:00Z")),
        "no fires over the weekend"
    );
    let c = CronSpec::parse("0 0 1,15 * *").unwrap();
    assert_eq!(
        c.next_after(ms("2026-02-02T00:00:00Z")),
        Some(ms("2026-02-15T00:00:00Z"))
    );
}

#[test]
fn time_zones_shift_the_schedule() {
    let c = CronSpec::parse("TZ=Asia/Tokyo 0 9 * * *").unwrap();
    assert_eq!(c.text(), "TZ=Asia/Tokyo 0 9 * * *");
    assert_eq!(
        c.next_after(ms("2026-05-01T00:00:00Z")),
        Some(ms("2026-05-02T00:00:00Z"))
    );
    assert_eq!(
        c.last_at_or_before(ms("2026-05-01T23:59:59Z")),
        Some(ms("2026-05-01T00:00:00Z"))
    );
    let utc = CronSpec::parse("0 9 * * *").unwrap();
    assert_eq!(utc.time_zone(), chrono_tz::UTC);
    // Surrounding whitespace is not part of the expression.
    assert_eq!(
        CronSpec::parse("  0 9 * * *  ").unwrap().text(),
        "0 9 * * *"
    );
}

#[test]
fn bad_cron_expressions_are_rejected_when_defining_a_function() {
    for bad in [
        "* * * *",
        "0 0 0 * * *",
        "0 24 * * *",
        "TZ=Nowhere/Land 0 0 * * *",
        "a b c d e",
    ] {
        let err = Function::builder("c")
            .on_cron(bad)
            .handler(|_ctx| async { Ok(()) })
            .unwrap_err();
        assert!(err.reason.contains("cron"), "{bad}: {err}");
    }
}
