//! The cron scheduler. Each (function, scheduled time) fires at most once, ever: the fire
//! is recorded in `cron_fires` in the same transaction that creates its run. A fire missed
//! while Stepdesk was closed runs once at start-up, marked late with its scheduled time.

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::cron::CronSpec;
use crate::event::{internal, NewEvent};
use crate::ingest::{create_run, insert_event, new_id, NewRun, Wake};
use crate::store::StoreResult;
use crate::time::{now_ms, to_rfc3339};
use crate::EngineInner;

/// A fire that is this much past its time counts as late.
const LATE_AFTER_MS: i64 = 60_000;

struct Schedule {
    function_id: String,
    spec: CronSpec,
    next: Option<i64>,
}

/// The last fire owed before now, if any, given the stored state. Creates the state on
/// first sight (no backfill before a cron was first known).
fn startup_state(
    conn: &Connection,
    function_id: &str,
    spec: &CronSpec,
    now: i64,
) -> StoreResult<i64> {
    let stored: Option<(String, i64)> = conn
        .query_row(
            "SELECT cron, anchor FROM cron_state WHERE function_id = ?1",
            [function_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let anchor = match stored {
        Some((cron, anchor)) if cron == spec.text() => anchor,
        _ => {
            conn.execute(
                "INSERT INTO cron_state (function_id, cron, anchor) VALUES (?1, ?2, ?3)
                 ON CONFLICT (function_id) DO UPDATE SET cron = excluded.cron, anchor = excluded.anchor",
                params![function_id, spec.text(), now],
            )?;
            now
        }
    };
    let last_fire: Option<i64> = conn.query_row(
        "SELECT max(scheduled_at) FROM cron_fires WHERE function_id = ?1",
        [function_id],
        |r| r.get(0),
    )?;
    Ok(last_fire.map_or(anchor, |f| f.max(anchor)))
}

/// Records a fire and creates its run, unless that fire already happened.
pub(crate) fn fire(
    conn: &Connection,
    function_id: &str,
    spec: &CronSpec,
    scheduled_at: i64,
    now: i64,
    late: bool,
    wakes: &mut Vec<Wake>,
) -> StoreResult<Option<String>> {
    let run_id = new_id();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO cron_fires (function_id, scheduled_at, run_id, fired_at, late)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![function_id, scheduled_at, run_id, now, late])?;
    if inserted == 0 {
        return Ok(None);
    }
    let mut data = Map::new();
    data.insert("cron".into(), Value::String(spec.text().to_string()));
    data.insert(
        "scheduledAt".into(),
        Value::String(to_rfc3339(scheduled_at)),
    );
    data.insert("fireAt".into(), Value::String(to_rfc3339(now)));
    data.insert("late".into(), Value::Bool(late));
    let mut event = NewEvent::internal(internal::SCHEDULED_TIMER, data);
    event.id = Some(format!("{function_id}@{}", to_rfc3339(scheduled_at)));
    let (event_internal_id, _, _) = insert_event(conn, event, now)?;
    let run = NewRun {
        function_id,
        trigger_kind: "cron",
        event_internal_id: &event_internal_id,
        now,
        cron_scheduled_at: Some(scheduled_at),
        late,
        parent: None,
        rerun_of: None,
        runnable: true,
    };
    create_run(conn, &run, &run_id)?;
    wakes.push((run_id.clone(), now));
    Ok(Some(run_id))
}

async fn fire_and_wake(
    engine: &Arc<EngineInner>,
    function_id: &str,
    spec: &CronSpec,
    scheduled_at: i64,
    late: bool,
) {
    let (f, s) = (function_id.to_string(), spec.clone());
    let result = engine
        .store
        .write(move |c| {
            let mut wakes = Vec::new();
            let run = fire(c, &f, &s, scheduled_at, now_ms(), late, &mut wakes)?;
            Ok((run, wakes))
        })
        .await;
    match result {
        Ok((Some(run_id), wakes)) => {
            tracing::info!(function = %function_id, scheduled_at = %to_rfc3339(scheduled_at), late, run_id = %run_id, "cron fired");
            engine.dispatcher.wake_all(wakes);
        }
        Ok((None, _)) => tracing::debug!(function = %function_id, "cron fire already recorded"),
        Err(e) => tracing::error!(function = %function_id, error = %e, "cron fire failed"),
    }
}

/// Runs the cron schedules until shutdown.
pub(crate) async fn run(engine: Arc<EngineInner>, mut shutdown: watch::Receiver<bool>) {
    let mut schedules: Vec<Schedule> = Vec::new();
    for f in engine.registry.all() {
        for spec in f.crons() {
            schedules.push(Schedule {
                function_id: f.id.clone(),
                spec: spec.clone(),
                next: None,
            });
        }
    }
    if schedules.is_empty() {
        return;
    }
    // Catch up: at most one late fire per schedule for what was missed while closed.
    for s in &mut schedules {
        let now = now_ms();
        let (f, spec) = (s.function_id.clone(), s.spec.clone());
        let last = match engine
            .store
            .write(move |c| startup_state(c, &f, &spec, now))
            .await
        {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(function = %s.function_id, error = %e, "cannot read the cron state");
                now
            }
        };
        if let Some(missed) = s.spec.last_at_or_before(now).filter(|&t| t > last) {
            fire_and_wake(
                &engine,
                &s.function_id,
                &s.spec,
                missed,
                // Missed while Stepdesk was closed: late by definition.
                true,
            )
            .await;
        }
        s.next = s.spec.next_after(now);
    }
    loop {
        let Some(due) = schedules.iter().filter_map(|s| s.next).min() else {
            return;
        };
        let wait = (due - now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => return,
        }
        let now = now_ms();
        for s in &mut schedules {
            if let Some(at) = s.next.filter(|&at| at <= now) {
                fire_and_wake(
                    &engine,
                    &s.function_id,
                    &s.spec,
                    at,
                    now - at > LATE_AFTER_MS,
                )
                .await;
                s.next = s.spec.next_after(at.max(now));
            }
        }
    }
}

/// The next time each cron of a function fires (for the functions list).
pub fn next_fire(spec: &CronSpec) -> Option<i64> {
    spec.next_after(now_ms())
}
