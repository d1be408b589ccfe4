//! Turning events into stored events, new runs and resumed waits. Everything here runs
//! inside a writer transaction, so an event, the runs it starts and the waits it resolves
//! are committed together or not at all.

use std::cell::RefCell;

use rusqlite::Connection;
use serde_json::Value;

use crate::event::{lookup, Event, NewEvent};
use crate::expr::{self, loose_eq_json, Expr, Vars};
use crate::function::{CancelRule, Function, Registry};
use crate::model::{RunStatus, StepStatus, TriggerKind};
use crate::store::pauses::EventPause;
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
    add_cancel_rules(conn, &function.cancel, event, run_id, run.now)?;
    if let Some(at) = run.due_at() {
        wakes.push((run_id.to_string(), at));
    }
    Ok(())
}

/// Stores a new run's cancellation rules as pauses on their event names, so that ingest finds
/// them like waits. The `event` side of each rule's expression is resolved now, from the
/// run's triggering event (as Inngest does).
pub(crate) fn add_cancel_rules(
    conn: &Connection,
    rules: &[CancelRule],
    event: &Value,
    run_id: &str,
    now: i64,
) -> StoreResult<()> {
    for (i, rule) in rules.iter().enumerate() {
        let if_event = rule
            .expression
            .as_ref()
            .and_then(|e| e.event_part(event))
            .map(|v| v.to_string());
        pauses::insert_cancel(
            conn,
            run_id,
            &format!("cancel:{i}"),
            &rule.event,
            rule.expression.as_ref().map(Expr::source),
            if_event.as_deref(),
            now.saturating_add(rule.timeout.as_millis() as i64),
            now,
        )?;
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
    let internal_id = ev.internal_id.clone().unwrap_or_else(new_id);
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
        // A repeat of a request already stored (an SDK's retry whose first answer was lost):
        // the same event, stored and acted on once.
        let mut ev = ev;
        if let Some(seeded) = ev.internal_id.clone() {
            if let Some(stored) = events::payload(conn, &seeded)? {
                let stored: Value = serde_json::from_str(&stored)?;
                let same = stored.get("name").and_then(Value::as_str) == Some(ev.name.as_str())
                    && stored.get("data").and_then(Value::as_object) == Some(&ev.data);
                if same {
                    tracing::debug!(event_id = %seeded, "event already received (same X-Inngest-Event-Id-Seed)");
                    ids.push(seeded);
                    continue;
                }
                // The same seed with other content: not a retry (a sender that reuses one
                // header), so a new event with an id of its own.
                tracing::warn!(event = %ev.name, "an event came with an X-Inngest-Event-Id-Seed already used by another event: stored under a new id");
                ev.internal_id = None;
            }
        }
        let has_sender_id = ev.id.is_some();
        let (internal_id, event, json) = insert_event(conn, ev, now)?;
        // Before this event starts runs: only runs that existed before it can be cancelled
        // by it (a wait cannot be on a run that does not exist yet either).
        resolve_pauses(conn, registry, &event.name, &json, now, wakes)?;
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
                // A `ts` in the future schedules the run then (Inngest's delayed functions),
                // except for a singleton function: its run would hold the slot until then
                // (a sender could block every other run of that key for years), so it starts
                // now.
                not_before: (event.ts > now && function.singleton_key.is_none())
                    .then_some(event.ts),
            };
            if event.ts > now {
                if function.singleton_key.is_none() {
                    tracing::info!(run_id = %run_id, function = %function.id, event = %event.name, starts_at = event.ts, "run scheduled: the event's ts is in the future");
                } else {
                    tracing::info!(run_id = %run_id, function = %function.id, event = %event.name, "the event's ts is in the future, but the function is a singleton: its run starts now");
                }
            }
            start_run(conn, function, &json, run, &run_id, wakes)?;
        }
        ids.push(internal_id);
    }
    Ok(ids)
}

/// Cancels the runs whose cancellation rules this event satisfies, then completes every
/// `wait_for_event` step that it satisfies (of runs it did not cancel).
fn resolve_pauses(
    conn: &Connection,
    registry: &Registry,
    name: &str,
    event: &Value,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    let candidates = pauses::for_event(conn, name, now)?;
    if candidates.is_empty() {
        return Ok(());
    }
    let mut cancelled: Vec<&str> = Vec::new();
    for p in candidates.iter().filter(|p| p.cancel) {
        if cancelled.contains(&p.run_id.as_str()) || !pause_matches(p, event, "cancel_on")? {
            continue;
        }
        if crate::progress::cancel_run(conn, registry, &p.run_id, now, wakes)? {
            tracing::info!(run_id = %p.run_id, event = %name, "run cancelled by an event");
        }
        cancelled.push(&p.run_id);
    }
    for p in candidates.iter().filter(|p| !p.cancel) {
        if cancelled.contains(&p.run_id.as_str()) || !pause_matches(p, event, "wait_for_event")? {
            continue;
        }
        delete_pause(conn, &p.run_id, &p.hash)?;
        settle_step(
            conn,
            &p.run_id,
            &p.hash,
            StepStatus::Completed,
            Some(&event.to_string()),
            None,
            now,
        )?;
        wake_run(conn, &p.run_id, now, wakes)?;
    }
    Ok(())
}

/// Whether an incoming event satisfies a wait or a cancellation rule: its match field
/// (`async.<field> == event.<field>`, loosely equal as in an expression) and its `if`.
fn pause_matches(p: &EventPause, event: &Value, what: &str) -> StoreResult<bool> {
    if let Some(field) = &p.match_field {
        let want: Value = p
            .match_value
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or(Value::Null);
        let got = lookup(event, field).unwrap_or(&Value::Null);
        if *got != want && !loose_eq_json(got, &want) {
            return Ok(false);
        }
    }
    let Some(source) = &p.if_expr else {
        return Ok(true);
    };
    let expr = match expr::cached(source) {
        Ok(e) => e,
        Err(e) => {
            // Checked when the pause was made; only a database from another build gets here.
            tracing::warn!(run_id = %p.run_id, %what, error = %e, "a stored expression does not parse; no match");
            return Ok(false);
        }
    };
    let part: Option<Value> = p
        .if_event
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?;
    Ok(expr.matches(&Vars::matching(part.as_ref(), event), what))
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
