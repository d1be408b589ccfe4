//! Turning events into stored events, new runs and resumed waits. Everything here runs
//! inside a writer transaction, so an event, the runs it starts and the waits it resolves
//! are committed together or not at all.

use std::cell::RefCell;

use rusqlite::Connection;
use serde_json::Value;

use crate::event::{lookup, Event, NewEvent};
use crate::function::{Function, Registry};
use crate::model::{RunStatus, StepStatus, TriggerKind};
use crate::store::{events, pauses, runs, singletons, steps, StoreResult};

/// A run to (re)consider at a time (ms): handed to the dispatcher after commit.
pub(crate) type Wake = (String, i64);

/// How long a sender's event id keeps a function from running again for the same id.
pub const DEDUPE_WINDOW_MS: i64 = 24 * 3600 * 1000;

thread_local! {
    static IDS: RefCell<ulid::Generator> = const { RefCell::new(ulid::Generator::new()) };
}

/// A new ULID. Ids made on the same thread (the writer) are strictly increasing, so
/// ordering by id is ordering by creation.
pub(crate) fn new_id() -> String {
    IDS.with(|g| {
        g.borrow_mut()
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    })
}

pub(crate) use crate::store::runs::NewRun;

/// Creates a run of `function` for the stored event `event`, taking its singleton slot or
/// queueing it behind the run that holds the slot. Runnable runs are added to `wakes`.
pub(crate) fn start_run(
    conn: &Connection,
    function: &Function,
    event: &Value,
    mut run: NewRun<'_>,
    run_id: &str,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    run.runnable = claim_singleton(conn, function, event, run_id)?;
    runs::insert(conn, &run, run_id)?;
    if run.runnable {
        wakes.push((run_id.to_string(), run.now));
    }
    Ok(())
}

/// Stores one event; returns its internal id, the completed event and its JSON.
///
/// The event's `data` and `user` are moved into the JSON rather than copied (this runs on
/// the writer thread, once per event): in the returned [`Event`] they are empty, so read
/// them from the JSON.
pub(crate) fn insert_event(
    conn: &Connection,
    ev: NewEvent,
    now: i64,
) -> StoreResult<(String, Event, Value)> {
    let internal_id = new_id();
    let mut event = ev.into_event(&internal_id);
    let data = std::mem::take(&mut event.data);
    let user = std::mem::take(&mut event.user);
    let mut json = serde_json::to_value(&event)?;
    json["data"] = Value::Object(data);
    json["user"] = Value::Object(user);
    events::insert(
        conn,
        &internal_id,
        &event.id,
        &event.name,
        event.ts,
        now,
        &json.to_string(),
    )?;
    Ok((internal_id, event, json))
}

/// Claims (function, sender's event id) for a run; false if a run already has it within
/// the dedupe window.
fn claim_run_key(
    conn: &Connection,
    function_id: &str,
    key: &str,
    run_id: &str,
    now: i64,
) -> StoreResult<bool> {
    singletons::claim_run_key(conn, function_id, key, run_id, now, now - DEDUPE_WINDOW_MS)
}

/// Takes a singleton function's slot for `run_id`, or queues the run behind the run that
/// holds it. Returns whether the run may start now.
pub(crate) fn claim_singleton(
    conn: &Connection,
    function: &Function,
    event: &Value,
    run_id: &str,
) -> StoreResult<bool> {
    let Some(path) = &function.singleton_key else {
        return Ok(true);
    };
    let key = lookup(event, path).map_or_else(|| "null".to_string(), Value::to_string);
    let holder = singletons::holder(conn, &function.id, &key)?;
    if let Some(holder) = holder {
        if runs::status(conn, &holder)? == Some(RunStatus::Running) {
            singletons::enqueue(conn, &function.id, &key, run_id)?;
            tracing::debug!(function = %function.id, %key, running = %holder, "singleton busy; run queued");
            return Ok(false);
        }
    }
    singletons::take(conn, &function.id, &key, run_id)?;
    Ok(true)
}

/// Frees the singleton slot an ending run holds (starting the next queued run for that
/// key), or takes the run out of a queue it waits in.
pub(crate) fn release_singleton(
    conn: &Connection,
    run_id: &str,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    singletons::dequeue(conn, run_id)?;
    let Some((function_id, key)) = singletons::slot_of(conn, run_id)? else {
        return Ok(());
    };
    match singletons::next_queued(conn, &function_id, &key)? {
        Some(next) => {
            singletons::dequeue(conn, &next)?;
            singletons::take(conn, &function_id, &key, &next)?;
            wake_run(conn, &next, now, wakes)?;
        }
        None => singletons::free(conn, &function_id, &key)?,
    }
    Ok(())
}

/// Stores events, starts the runs they trigger and resumes the waits they satisfy.
/// Returns the internal ids, in order.
pub(crate) fn ingest(
    conn: &Connection,
    registry: &Registry,
    events: Vec<NewEvent>,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<Vec<String>> {
    let mut ids = Vec::with_capacity(events.len());
    for ev in events {
        let has_sender_id = ev.id.is_some();
        let (internal_id, event, json) = insert_event(conn, ev, now)?;
        for function in registry.matching(&event, &json) {
            let run_id = new_id();
            if has_sender_id && !claim_run_key(conn, &function.id, &event.id, &run_id, now)? {
                tracing::debug!(function = %function.id, event_id = %event.id, "duplicate event id; no new run");
                continue;
            }
            let run = NewRun {
                function_id: &function.id,
                trigger_kind: TriggerKind::Event,
                event_internal_id: &internal_id,
                event_name: &event.name,
                now,
                cron_scheduled_at: None,
                late: false,
                parent: None,
                rerun_of: None,
                runnable: true,
            };
            start_run(conn, function, &json, run, &run_id, wakes)?;
        }
        resolve_waits(conn, &event.name, &json, now, wakes)?;
        ids.push(internal_id);
    }
    Ok(ids)
}

/// Completes every `wait_for_event` step that this event satisfies.
fn resolve_waits(
    conn: &Connection,
    name: &str,
    event: &Value,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    let candidates = pauses::waits_for(conn, name, now)?;
    for (run_id, hash, field, want) in candidates {
        if let Some(field) = field {
            let want: Value = want
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?
                .unwrap_or(Value::Null);
            let got = lookup(event, &field).unwrap_or(&Value::Null);
            if *got != want {
                continue;
            }
        }
        delete_pause(conn, &run_id, &hash)?;
        settle_step(
            conn,
            &run_id,
            &hash,
            StepStatus::Completed,
            Some(&event.to_string()),
            None,
            now,
        )?;
        wake_run(conn, &run_id, now, wakes)?;
    }
    Ok(())
}

pub(crate) fn delete_pause(conn: &Connection, run_id: &str, hash: &str) -> StoreResult<()> {
    pauses::delete(conn, run_id, hash)
}

/// Gives a suspended step its final state.
pub(crate) fn settle_step(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    status: StepStatus,
    output: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    steps::settle(conn, run_id, hash, status, output, error, now)
}

/// Makes a running run due at `at`.
pub(crate) fn wake_run(
    conn: &Connection,
    run_id: &str,
    at: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    if runs::wake_if_running(conn, run_id, at)? {
        wakes.push((run_id.to_string(), at));
    }
    Ok(())
}
