//! JS v4 checkpointing (inngest-protocol.md §1.13): while Stepdesk's call request is in
//! flight, the SDK runs the function's steps one after another in that same request and
//! reports each finished step to `POST /v1/checkpoint/{runId}/async`; the request's answer
//! is then the rest (`RunComplete`, a sleep, an error...). A run of N steps takes one request
//! instead of N + 1.
//!
//! The SDK checkpoints only when the call request's `ctx` has `fn_id` and `qi_id`. The
//! driver sends them on discovery requests and registers the execution here ([`LiveRuns`])
//! for as long as its request is in flight; `qi_id` is random per execution, so a checkpoint
//! must name the very execution it belongs to. Anything else (no such execution, an earlier
//! one, another function) is a stale dispatch, answered `409`: the SDK stops executing.
//!
//! Checkpointed steps are reported to the engine as steps of that execution
//! ([`stepdesk_engine::Step::record_run`]), which writes each at once, without holding up
//! the answer to the checkpoint: a crash of Stepdesk during the request runs again at most
//! the steps checkpointed in the last few milliseconds before it (at-least-once, as
//! Inngest's steps are), not every step of the request. The request's answer is written
//! with the same steps again, in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use stepdesk_engine::Step;
use stepdesk_inngest::wire::{Op, Opcode};

/// The executions whose call request is in flight, by run id.
#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Live>>,
}

struct Live {
    qi_id: String,
    fn_id: String,
    step: Step,
    /// Steps checkpointed so far.
    recorded: usize,
}

/// The body of `POST /v1/checkpoint/{runId}/async` (JS `api.checkpointStepsAsync`); the
/// other fields (`request_id`, `generation_id`, `request_started_at`, `ts`) are not needed.
#[derive(Debug, Deserialize)]
pub struct CheckpointBody {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub fn_id: Option<String>,
    #[serde(default)]
    pub qi_id: Option<String>,
    #[serde(default)]
    pub steps: Vec<Op>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckpointError {
    /// No execution of this run is in flight with this `qi_id` and `fn_id`.
    #[error("stale dispatch: run {0} has no execution in flight with this qi_id and fn_id")]
    Stale(String),
    #[error("{0}")]
    Invalid(String),
}

/// While alive, checkpoints for its execution are accepted. Dropping it ends that.
pub(crate) struct LiveGuard<'a> {
    live: &'a LiveRuns,
    run_id: String,
    qi_id: String,
}

impl LiveGuard<'_> {
    /// Ends the execution's checkpoints; returns how many steps were checkpointed.
    pub(crate) fn finish(self) -> usize {
        self.live.remove(&self.run_id, &self.qi_id).unwrap_or(0)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.live.remove(&self.run_id, &self.qi_id);
    }
}

impl LiveRuns {
    /// Registers an execution about to send its discovery request; `step` is its step tools.
    pub(crate) fn enter(&self, run_id: &str, fn_id: &str, step: Step) -> (String, LiveGuard<'_>) {
        let qi_id = ulid::Ulid::new().to_string();
        let live = Live {
            qi_id: qi_id.clone(),
            fn_id: fn_id.to_string(),
            step,
            recorded: 0,
        };
        // One execution per run at a time: a newer one replaces an abandoned one.
        self.lock().insert(run_id.to_string(), live);
        let guard = LiveGuard {
            live: self,
            run_id: run_id.to_string(),
            qi_id: qi_id.clone(),
        };
        (qi_id, guard)
    }

    fn remove(&self, run_id: &str, qi_id: &str) -> Option<usize> {
        let mut runs = self.lock();
        match runs.get(run_id) {
            Some(l) if l.qi_id == qi_id => runs.remove(run_id).map(|l| l.recorded),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the finished steps of a checkpoint in its execution. Returns how many were new.
    pub fn checkpoint(&self, run_id: &str, body: CheckpointBody) -> Result<usize, CheckpointError> {
        if body.run_id.as_deref().is_some_and(|r| r != run_id) {
            return Err(CheckpointError::Invalid(format!(
                "the body's run_id {:?} is not the run of the URL ({run_id})",
                body.run_id.unwrap_or_default()
            )));
        }
        // Checked before anything is recorded: a checkpoint is taken whole or not at all.
        for op in &body.steps {
            if !matches!(op.op, Opcode::StepRun | Opcode::Step) {
                return Err(CheckpointError::Invalid(format!(
                    "step {}: only finished `run` steps (StepRun) can be checkpointed, not {:?}; \
                     send the others in the call request's answer",
                    op.id, op.op
                )));
            }
        }
        let mut runs = self.lock();
        let live = match runs.get_mut(run_id) {
            Some(l)
                if Some(l.qi_id.as_str()) == body.qi_id.as_deref()
                    && Some(l.fn_id.as_str()) == body.fn_id.as_deref() =>
            {
                l
            }
            _ => return Err(CheckpointError::Stale(run_id.to_string())),
        };
        let mut new = 0;
        for op in body.steps {
            let (started, ended) = crate::driver::timing_ms(&op).unwrap_or_else(|| (now(), now()));
            let name = crate::driver::display(&op);
            let input = crate::driver::input(&op);
            let data = op.data.clone().unwrap_or(Value::Null);
            let kind = crate::driver::step_kind(&op);
            match live
                .step
                .record_run_as(kind, &op.id, &name, input, Ok(data), started, ended)
            {
                stepdesk_engine::Error::Interrupt => new += 1,
                other => {
                    return Err(CheckpointError::Invalid(format!("step `{name}`: {other}")));
                }
            }
        }
        live.recorded += new;
        Ok(new)
    }
}

fn now() -> i64 {
    crate::time::now_ms()
}

/// Shared by every function driver of the process.
pub(crate) type SharedLive = Arc<LiveRuns>;
