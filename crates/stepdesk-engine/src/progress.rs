//! Writing a run's progress: step results, retries, suspensions, completion, cancellation.
//! Each function here runs inside one writer transaction and first checks that the run is
//! still `Running`, so a run cancelled meanwhile is left alone.

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::error::ErrorBody;
use crate::event::{internal, NewEvent};
use crate::function::Registry;
use crate::ingest::{
    self, delete_pause, insert_event, new_id, release_singleton, settle_step, start_run, wake_run,
    NewRun, Wake,
};
use crate::model::{RunStatus, StepKind, StepStatus, TriggerKind};
use crate::store::{boots, pauses, runs, steps, StoreResult};

/// A step row to insert or replace.
#[derive(Debug, Clone)]
pub(crate) struct StepWrite {
    pub hash: String,
    pub step_id: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub wake_at: Option<i64>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// A failed attempt of a step, or of the function body (`hash = "$function"`).
#[derive(Debug, Clone)]
pub(crate) struct AttemptWrite {
    pub hash: String,
    pub attempt: u32,
    pub started_at: i64,
    pub ended_at: i64,
    pub error: String,
    pub retry_at: Option<i64>,
}

pub(crate) const FUNCTION_ATTEMPT_HASH: &str = "$function";

/// A pause for `wait_for_event` or `invoke`.
#[derive(Debug, Clone)]
pub(crate) struct PauseWrite {
    pub hash: String,
    pub kind: &'static str,
    pub event_name: Option<String>,
    pub match_field: Option<String>,
    pub match_value: Option<String>,
    /// An `if` expression, and the JSON of the part of the run's event it reads.
    pub if_expr: Option<String>,
    pub if_event: Option<String>,
    pub expires_at: i64,
}

/// A child run for `invoke`.
#[derive(Debug, Clone)]
pub(crate) struct ChildRun {
    pub function_id: String,
    pub data: Map<String, Value>,
}

/// How a run ends.
#[derive(Debug, Clone)]
pub(crate) enum Finish {
    Completed(Value),
    Failed(ErrorBody),
}

/// Everything one executor step wants written, in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub run_id: String,
    /// Sets `runs.started_at` when not yet set.
    pub started_at: Option<i64>,
    pub step: Option<StepWrite>,
    pub attempt: Option<AttemptWrite>,
    pub pause: Option<PauseWrite>,
    pub child: Option<ChildRun>,
    pub send: Option<Vec<NewEvent>>,
    /// `Some(x)`: set `runs.wake_at = x`.
    pub wake_at: Option<Option<i64>>,
    pub function_attempts: Option<u32>,
    pub finish: Option<Finish>,
}

/// What applying progress did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// False if the run was no longer running (cancelled): nothing was written.
    pub applied: bool,
    pub wakes: Vec<Wake>,
    /// Internal ids of events sent by a `send_event` step.
    pub sent_ids: Vec<String>,
}

pub(crate) fn apply(
    conn: &Connection,
    registry: &Registry,
    p: Progress,
    now: i64,
) -> StoreResult<Applied> {
    let mut out = Applied::default();
    if runs::status(conn, &p.run_id)? != Some(RunStatus::Running) {
        return Ok(out);
    }
    out.applied = true;
    if let Some(started) = p.started_at {
        runs::set_started(conn, &p.run_id, started)?;
    }
    let mut step = p.step;
    if let Some(events) = p.send {
        out.sent_ids = ingest::ingest(conn, registry, events, now, &mut out.wakes)?;
        if let Some(s) = step.as_mut() {
            s.output = Some(serde_json::to_string(&out.sent_ids)?);
        }
    }
    if let Some(child) = p.child {
        let child_run_id = new_id();
        let step = step.as_mut().expect("an invoke always writes its step");
        // The invoked run's id, in the step's input, so that the step links to it.
        step.input = Some(with_child_run(step.input.as_deref(), &child_run_id));
        let step = &*step;
        let mut data = child.data;
        data.insert(
            "_inngest".into(),
            json!({"fn_id": child.function_id, "source_run_id": p.run_id, "correlation_id": format!("{}.{}", p.run_id, step.hash)}),
        );
        let (event_internal_id, _, event_json) = insert_event(
            conn,
            NewEvent::internal(internal::FUNCTION_INVOKED, data),
            now,
        )?;
        // Checked by the executor first; kept as a guard against a stale registry.
        let Some(function) = registry.get(&child.function_id) else {
            return Err(crate::store::StoreError::Other(format!(
                "no function `{}`",
                child.function_id
            )));
        };
        let run = NewRun {
            function_id: &child.function_id,
            trigger_kind: TriggerKind::Invoke,
            event_internal_id: &event_internal_id,
            event_name: internal::FUNCTION_INVOKED,
            now,
            cron_scheduled_at: None,
            late: false,
            parent: Some((&p.run_id, &step.hash)),
            rerun_of: None,
            runnable: true,
            not_before: None,
        };
        start_run(
            conn,
            function,
            &event_json,
            run,
            &child_run_id,
            &mut out.wakes,
        )?;
        let pause = p.pause.as_ref().expect("an invoke always writes its pause");
        pauses::insert_invoke(
            conn,
            &p.run_id,
            &pause.hash,
            &child_run_id,
            pause.expires_at,
            now,
        )?;
    } else if let Some(pause) = &p.pause {
        pauses::insert_wait(conn, &p.run_id, pause, now)?;
    }
    if let Some(s) = &step {
        steps::upsert(conn, &p.run_id, s)?;
    }
    if let Some(a) = &p.attempt {
        steps::insert_attempt(conn, &p.run_id, a)?;
    }
    if let Some(n) = p.function_attempts {
        runs::set_attempt(conn, &p.run_id, n)?;
    }
    if let Some(wake) = p.wake_at {
        runs::set_wake(conn, &p.run_id, wake)?;
        if let Some(at) = wake {
            out.wakes.push((p.run_id.clone(), at));
        }
    }
    if let Some(finish) = p.finish {
        finish_run(conn, registry, &p.run_id, finish, now, &mut out.wakes)?;
    }
    Ok(out)
}

/// An invoke step's input with `run_id`, the run it started, added.
fn with_child_run(input: Option<&str>, child_run_id: &str) -> String {
    let mut input = input
        .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
        .unwrap_or_default();
    input.insert("run_id".into(), Value::String(child_run_id.to_string()));
    Value::Object(input).to_string()
}

/// Ends a run: status, output or error, parent invoke resolution, and on failure the
/// `inngest/function.failed` event (which starts the failure handler, if any).
fn finish_run(
    conn: &Connection,
    registry: &Registry,
    run_id: &str,
    finish: Finish,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    let (status, output, error) = match &finish {
        Finish::Completed(v) => (RunStatus::Completed, Some(v.to_string()), None),
        Finish::Failed(e) => (RunStatus::Failed, None, Some(serde_json::to_string(e)?)),
    };
    runs::finish(
        conn,
        run_id,
        status,
        output.as_deref(),
        error.as_deref(),
        now,
    )?;
    pauses::delete_all(conn, run_id)?;
    release_singleton(conn, run_id, now, wakes)?;
    let links = runs::links(conn, run_id)?;
    if let Some((parent_run, parent_hash)) = &links.parent {
        resolve_invoke(conn, parent_run, parent_hash, run_id, &finish, now, wakes)?;
    }
    if let Finish::Failed(err) = &finish {
        let event: Value = links
            .event_payload
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or(Value::Null);
        let mut data = Map::new();
        data.insert("function_id".into(), Value::String(links.function_id));
        data.insert("run_id".into(), Value::String(run_id.to_string()));
        data.insert("error".into(), serde_json::to_value(err)?);
        data.insert("event".into(), event);
        ingest::ingest(
            conn,
            registry,
            vec![NewEvent::internal(internal::FUNCTION_FAILED, data)],
            now,
            wakes,
        )?;
    }
    Ok(())
}

/// Hands a finished child run's result to the parent's `invoke` step.
fn resolve_invoke(
    conn: &Connection,
    parent_run: &str,
    parent_hash: &str,
    child_run: &str,
    finish: &Finish,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<()> {
    let removed = pauses::delete_invoke(conn, parent_run, parent_hash, child_run)?;
    if !removed {
        return Ok(()); // timed out already, or the parent was cancelled
    }
    match finish {
        Finish::Completed(v) => settle_step(
            conn,
            parent_run,
            parent_hash,
            StepStatus::Completed,
            Some(&v.to_string()),
            None,
            now,
        )?,
        Finish::Failed(e) => settle_step(
            conn,
            parent_run,
            parent_hash,
            StepStatus::Failed,
            None,
            Some(&serde_json::to_string(e)?),
            now,
        )?,
    }
    wake_run(conn, parent_run, now, wakes)
}

/// This start of the engine, and what the previous one left executing.
pub(crate) struct Boot {
    pub id: i64,
    pub previous: Option<i64>,
    /// Step attempts found executing, now marked interrupted.
    pub interrupted: usize,
}

/// Records an engine start, and marks the `run` steps that were executing when the previous
/// one stopped as interrupted (with both boots): they run again when their runs resume.
pub(crate) fn record_boot(conn: &Connection, now: i64) -> StoreResult<Boot> {
    let previous = boots::last(conn)?;
    let id = boots::start(conn, now)?;
    let interrupted = boots::record_interruptions(conn, previous, id, now)?;
    steps::interrupt_running(conn)?;
    Ok(Boot {
        id,
        previous: previous.map(|p| p.0),
        interrupted,
    })
}

/// Records a clean shutdown of this boot.
pub(crate) fn record_shutdown(conn: &Connection, boot_id: i64, now: i64) -> StoreResult<()> {
    boots::end(conn, boot_id, now)
}

/// Records that a `run` step's code started executing (unless the run ended meanwhile).
/// Keeps the step's attempts and first start; a retry's wake time no longer applies.
pub(crate) fn step_started(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    step_id: &str,
    input: Option<&str>,
    at: i64,
) -> StoreResult<()> {
    if runs::status(conn, run_id)? != Some(RunStatus::Running) {
        return Ok(());
    }
    steps::started(conn, run_id, hash, step_id, input, at)
}

/// Writes a finished step that a driver reported before its execution ended (unless the run
/// ended meanwhile); the execution's commit writes the same row again.
pub(crate) fn step_reported(conn: &Connection, run_id: &str, step: &StepWrite) -> StoreResult<()> {
    if runs::status(conn, run_id)? != Some(RunStatus::Running) {
        return Ok(());
    }
    steps::upsert(conn, run_id, step)
}

/// Settles steps whose sleep has ended or whose wait or invoke has timed out.
pub(crate) fn resolve_due(conn: &Connection, run_id: &str, now: i64) -> StoreResult<()> {
    steps::complete_sleeps(conn, run_id, now)?;
    let expired = steps::expired(conn, run_id, now)?;
    for (hash, status) in expired {
        delete_pause(conn, run_id, &hash)?;
        if status == StepStatus::Waiting {
            settle_step(
                conn,
                run_id,
                &hash,
                StepStatus::Completed,
                Some("null"),
                None,
                now,
            )?;
        } else {
            let err = ErrorBody::new(
                "InngestInvokeTimeoutError",
                "Timed out waiting for invoked function to complete",
            );
            settle_step(
                conn,
                run_id,
                &hash,
                StepStatus::Failed,
                None,
                Some(&serde_json::to_string(&err)?),
                now,
            )?;
        }
    }
    Ok(())
}

/// Cancels a running run. Returns false if it was not running.
pub(crate) fn cancel_run(
    conn: &Connection,
    registry: &Registry,
    run_id: &str,
    now: i64,
    wakes: &mut Vec<Wake>,
) -> StoreResult<bool> {
    if runs::status(conn, run_id)? != Some(RunStatus::Running) {
        return Ok(false);
    }
    let err = ErrorBody::new("RunCancelled", "the run was cancelled");
    runs::finish(
        conn,
        run_id,
        RunStatus::Cancelled,
        None,
        Some(&serde_json::to_string(&err)?),
        now,
    )?;
    pauses::delete_all(conn, run_id)?;
    release_singleton(conn, run_id, now, wakes)?;
    let links = runs::links(conn, run_id)?;
    if let Some((parent_run, parent_hash)) = &links.parent {
        resolve_invoke(
            conn,
            parent_run,
            parent_hash,
            run_id,
            &Finish::Failed(err),
            now,
            wakes,
        )?;
    }
    let mut data = Map::new();
    data.insert("function_id".into(), Value::String(links.function_id));
    data.insert("run_id".into(), Value::String(run_id.to_string()));
    ingest::ingest(
        conn,
        registry,
        vec![NewEvent::internal(internal::FUNCTION_CANCELLED, data)],
        now,
        wakes,
    )?;
    Ok(true)
}
