//! The step API that function bodies use, and the replay state behind it.
//!
//! A body is executed again from the top every time the run makes progress. Each step call
//! first looks for its memoized result (keyed by the SHA-1 of the step id, with a `:N`
//! suffix for the N-th repeat of the same id). The first step without one is the "new" step:
//! `run` executes its closure, the others record what they wait for, and all of them then
//! return [`Error::Interrupt`], which the body propagates with `?`. The executor persists
//! the outcome and replays the body. This is Inngest's execution model, so a run's steps
//! look the same whichever way the function is hosted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tracing::Instrument;

use crate::error::{Error, ErrorBody};
use crate::event::{lookup, Event, NewEvent};
use crate::model::StepKind;
use crate::time::now_ms;

/// Longest sleep, wait or invoke timeout: a year, as in Inngest.
pub const MAX_SUSPEND: Duration = Duration::from_secs(366 * 24 * 3600);

/// What a function body receives.
pub struct Ctx {
    /// The event that started the run (for cron runs, `inngest/scheduled.timer`).
    pub event: Event,
    pub run_id: String,
    pub function_id: String,
    /// Zero-based attempt of the function body (function-level retries).
    pub attempt: u32,
    /// Attempts the function allows each step and the body: its retries + 1.
    pub max_attempts: u32,
    pub step: Step,
}

impl Ctx {
    /// The run's events, as stored (`{name, data, user, id, ts, v}`): today always one, the
    /// event that started the run. For drivers that hand them to code running elsewhere.
    pub fn events(&self) -> Vec<Value> {
        vec![self.step.lock().trigger.clone()]
    }

    /// The event's `data`, decoded; a mismatch is a non-retriable error naming the problem.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.event.data.clone())).map_err(|e| {
            Error::non_retriable(format!(
                "event `{}` has unexpected data: {e}",
                self.event.name
            ))
        })
    }
}

/// Options for [`Step::wait_for_event`].
#[derive(Debug, Clone)]
pub struct WaitForEvent {
    /// The event name to wait for.
    pub event: String,
    /// Give up after this long; the step then returns `None`.
    pub timeout: Duration,
    /// A dotted field (`data.userId`) that must be equal in the awaited event and in the
    /// event that started this run: Inngest's `match`, sugar for the expression
    /// `async.data.userId == event.data.userId`.
    pub match_field: Option<String>,
    /// An expression the awaited event must satisfy (Inngest's `if`): `async` is the incoming
    /// event, `event` the one that started this run, whose values are taken when the wait
    /// begins. E.g. `async.data.userId == event.data.userId && async.data.ok`.
    pub if_expr: Option<String>,
}

impl WaitForEvent {
    /// Waits for `event` for at most `timeout`, any such event matching.
    pub fn new(event: impl Into<String>, timeout: Duration) -> WaitForEvent {
        WaitForEvent {
            event: event.into(),
            timeout,
            match_field: None,
            if_expr: None,
        }
    }

    /// Only an event whose `field` equals this run's event's (see [`WaitForEvent::match_field`]).
    pub fn matching(mut self, field: impl Into<String>) -> WaitForEvent {
        self.match_field = Some(field.into());
        self
    }

    /// Only an event for which `expression` is true (see [`WaitForEvent::if_expr`]).
    pub fn when(mut self, expression: impl Into<String>) -> WaitForEvent {
        self.if_expr = Some(expression.into());
        self
    }
}

/// Options for [`Step::invoke`].
#[derive(Debug, Clone)]
pub struct Invoke {
    /// The id of the function to run.
    pub function_id: String,
    /// The `data` of the `inngest/function.invoked` event it receives.
    pub data: serde_json::Map<String, Value>,
    pub timeout: Duration,
}

/// The stored state of one step, as the replay sees it.
#[derive(Debug, Clone)]
pub(crate) enum Memo {
    Completed(Value),
    Failed(ErrorBody),
    /// A `run` step that failed `attempts` times (or was interrupted) and will be tried again.
    Retrying {
        attempts: u32,
    },
    /// Sleeping, waiting or invoking, and not due yet.
    Pending,
}

impl Memo {
    /// The step has its final result.
    pub(crate) fn is_final(&self) -> bool {
        matches!(self, Memo::Completed(_) | Memo::Failed(_))
    }
}

/// What a recorded step is, besides its state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepMeta {
    pub hash: String,
    pub step_id: String,
    pub kind: StepKind,
}

/// A run's recorded steps as the replay sees them: each step's state by hash, and the order
/// drivers read them in ([`Step::memo`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Memos {
    by_hash: HashMap<String, Memo>,
    /// Finished steps in the order they finished, then the others in the order the run
    /// reached them. Shared with each execution's [`Step`] rather than copied: only
    /// drivers read it, and it changes only when a step finishes.
    order: Arc<Vec<StepMeta>>,
    /// How many of `order` are finished (they come first).
    finished: usize,
}

impl Memos {
    /// Adds a step as loaded from the store, which gives them in memo order.
    pub(crate) fn push_loaded(&mut self, meta: StepMeta, memo: Memo) {
        if memo.is_final() {
            self.finished += 1;
        }
        self.by_hash.insert(meta.hash.clone(), memo);
        Arc::make_mut(&mut self.order).push(meta);
    }

    /// Records a step's new state during the run's execution, keeping the memo order: a step
    /// that just finished goes after the steps that finished before it.
    pub(crate) fn set(&mut self, hash: &str, step_id: &str, kind: StepKind, memo: Memo) {
        let order = Arc::make_mut(&mut self.order);
        let at = order.iter().position(|m| m.hash == hash);
        let was_final = self.by_hash.get(hash).is_some_and(Memo::is_final);
        if memo.is_final() && !was_final {
            let meta = match at {
                Some(i) => order.remove(i),
                None => StepMeta {
                    hash: hash.to_string(),
                    step_id: step_id.to_string(),
                    kind,
                },
            };
            order.insert(self.finished, meta);
            self.finished += 1;
        } else if at.is_none() {
            order.push(StepMeta {
                hash: hash.to_string(),
                step_id: step_id.to_string(),
                kind,
            });
        }
        self.by_hash.insert(hash.to_string(), memo);
    }

    pub(crate) fn get(&self, hash: &str) -> Option<&Memo> {
        self.by_hash.get(hash)
    }

    #[cfg(test)]
    pub(crate) fn from_map(by_hash: HashMap<String, Memo>) -> Memos {
        let mut memos = Memos::default();
        for (hash, memo) in by_hash {
            let meta = StepMeta {
                hash: hash.clone(),
                step_id: hash,
                kind: StepKind::Run,
            };
            memos.push_loaded(meta, memo);
        }
        memos
    }

    /// Every recorded step with its state, in memo order.
    fn recorded(&self) -> Vec<RecordedStep> {
        self.order
            .iter()
            .filter_map(|m| {
                let state = match self.by_hash.get(&m.hash)? {
                    Memo::Completed(v) => StepState::Completed(v.clone()),
                    Memo::Failed(e) => StepState::Failed(e.clone()),
                    Memo::Retrying { attempts } => StepState::Retrying {
                        attempts: *attempts,
                    },
                    Memo::Pending => StepState::Pending,
                };
                Some(RecordedStep {
                    hash: m.hash.clone(),
                    step_id: m.step_id.clone(),
                    kind: m.kind,
                    state,
                })
            })
            .collect()
    }
}

/// A recorded step of a run, as [`Step::memo`] gives it to drivers.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStep {
    /// The step's hash: the SHA-1 of its id ([`hash_step_id`]), or the hash a driver gave.
    pub hash: String,
    /// The step's id (with `:N` for repeats), or the display name a driver gave.
    pub step_id: String,
    pub kind: StepKind,
    pub state: StepState,
}

/// Where a recorded step stands.
///
/// What a finished step holds depends on its kind: a `Run` step its value (or error); a
/// `Sleep` `null`; a `WaitForEvent` the event that matched (`{name, data, user, id, ts}`),
/// or `null` when it timed out; an `Invoke` the invoked run's output, or its error (an
/// `InngestInvokeTimeoutError` when it timed out); a `SendEvent` the sent events' ids.
#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    Completed(Value),
    Failed(ErrorBody),
    /// A `Run` step that failed `attempts` times (or was cut short by a restart, which is
    /// not counted) and will be tried again: its next attempt is number `attempts`
    /// (zero-based).
    Retrying {
        attempts: u32,
    },
    /// Sleeping, waiting or invoking, and not due yet.
    Pending,
}

/// What the body did that the executor must persist.
#[derive(Debug)]
pub(crate) enum Outcome {
    Ran {
        hash: String,
        step_id: String,
        /// `Run`, or `SendEvent` for an SDK's `step.sendEvent` (executed by the SDK).
        kind: StepKind,
        /// The input of a `run_with` step, as the closure received it.
        input: Option<Value>,
        result: Result<Value, Error>,
        started_at: i64,
        ended_at: i64,
    },
    Sleep {
        hash: String,
        step_id: String,
        until: i64,
    },
    Wait {
        hash: String,
        step_id: String,
        event: String,
        match_field: Option<String>,
        match_value: Option<Value>,
        /// The `if` expression, and the part of the run's event it reads.
        if_expr: Option<String>,
        if_event: Option<Value>,
        expires_at: i64,
    },
    Invoke {
        hash: String,
        step_id: String,
        function_id: String,
        data: serde_json::Map<String, Value>,
        expires_at: i64,
    },
    Send {
        hash: String,
        step_id: String,
        events: Vec<NewEvent>,
    },
    /// The body reached a step that is still suspended.
    Pending,
}

pub(crate) struct Replay {
    pub(crate) memo: Memos,
    seen: HashMap<String, u32>,
    /// Finished `run` steps a driver reported before `outcome` in this execution (parallel
    /// steps, checkpointed steps), in the order reported.
    pub(crate) done: Vec<Outcome>,
    pub(crate) outcome: Option<Outcome>,
    trigger: Value,
    run_id: String,
    /// An edited input for one step (by hash), from "Rerun from step".
    input_override: Option<(String, Value)>,
    on_start: Option<StartHook>,
    on_reported: Option<ReportHook>,
    /// Set for an execution driven from outside the engine ([`crate::external`]): which
    /// new `run` step may execute. `None` (the engine's own executions): any.
    pub(crate) gate: Option<RunGate>,
    /// The new `run` step the gate held back, unexecuted.
    pub(crate) held: Option<HeldStep>,
}

impl Replay {
    /// Whether this execution already reported the step with this hash.
    fn reported(&self, hash: &str) -> bool {
        self.done
            .iter()
            .chain(self.outcome.as_ref())
            .any(|o| o.hash() == Some(hash))
    }
}

impl Outcome {
    /// The hash of the step this outcome is about (none for [`Outcome::Pending`]).
    pub(crate) fn hash(&self) -> Option<&str> {
        match self {
            Outcome::Ran { hash, .. }
            | Outcome::Sleep { hash, .. }
            | Outcome::Wait { hash, .. }
            | Outcome::Invoke { hash, .. }
            | Outcome::Send { hash, .. } => Some(hash),
            Outcome::Pending => None,
        }
    }
}

/// Which new `run` step an execution driven from outside may execute (Inngest's targeted
/// requests and planned steps, protocol §1.12).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunGate {
    /// Only the step with this hash (`stepId=<hash>`).
    Only(String),
    /// None: a new step is reported as planned (`disable_immediate_execution`).
    Nothing,
}

/// A new `run` step reached but not executed (see [`RunGate`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeldStep {
    pub hash: String,
    pub step_id: String,
    pub input: Option<Value>,
}

/// Told when a new `run` step's code starts executing (hash, step id, input, time), so
/// that the step shows as running and a restart under it is seen as what it is.
pub(crate) type StartHook = Arc<dyn Fn(&str, &str, Option<&Value>, i64) + Send + Sync>;

/// Told of each outcome a driver reports and this execution accepts, as it is reported
/// (under the replay's lock: it must not block), so that a finished step can be written
/// before the execution ends (see `executor::report_hook`).
pub(crate) type ReportHook = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// The step tools. Cheap to clone; every clone shares the same replay.
#[derive(Clone)]
pub struct Step {
    replay: Arc<Mutex<Replay>>,
}

/// Hex SHA-1 of a step id, as Inngest's SDKs compute it.
pub fn hash_step_id(step_id: &str) -> String {
    hex::encode(Sha1::digest(step_id.as_bytes()))
}

impl Step {
    #[cfg(test)]
    pub(crate) fn new(memo: HashMap<String, Memo>, trigger: Value, run_id: String) -> Step {
        Step::with_input_override(Memos::from_map(memo), trigger, run_id, None)
    }

    pub(crate) fn with_input_override(
        memo: Memos,
        trigger: Value,
        run_id: String,
        input_override: Option<(String, Value)>,
    ) -> Step {
        Step {
            replay: Arc::new(Mutex::new(Replay {
                memo,
                seen: HashMap::new(),
                done: Vec::new(),
                outcome: None,
                trigger,
                run_id,
                input_override,
                on_start: None,
                on_reported: None,
                gate: None,
                held: None,
            })),
        }
    }

    pub(crate) fn on_start(self, hook: StartHook) -> Step {
        self.lock().on_start = Some(hook);
        self
    }

    pub(crate) fn on_reported(self, hook: ReportHook) -> Step {
        self.lock().on_reported = Some(hook);
        self
    }

    /// Restricts which new `run` step may execute (see [`RunGate`]).
    pub(crate) fn gated(self, gate: RunGate) -> Step {
        self.lock().gate = Some(gate);
        self
    }

    /// The new `run` step the gate held back, if any.
    pub(crate) fn take_held(&self) -> Option<HeldStep> {
        self.lock().held.take()
    }

    /// Holds back a new `run` step the gate does not let execute: it is recorded as held
    /// and the execution ends there (no outcome for the executor: [`Outcome::Pending`]).
    fn hold(&self, step_id: &str, hash: &str, input: Option<&Value>) -> Option<Error> {
        let mut r = self.lock();
        let allowed = match &r.gate {
            None => true,
            Some(RunGate::Only(target)) => target == hash,
            Some(RunGate::Nothing) => false,
        };
        if allowed {
            return None;
        }
        r.held = Some(HeldStep {
            hash: hash.to_string(),
            step_id: step_id.to_string(),
            input: input.cloned(),
        });
        if r.outcome.is_none() {
            r.outcome = Some(Outcome::Pending);
        }
        Some(Error::Interrupt)
    }

    pub(crate) fn take_outcome(&self) -> Option<Outcome> {
        self.lock().outcome.take()
    }

    /// Every outcome of the execution: the finished `run` steps a driver reported first (see
    /// [`Step::record_run`]), then the last outcome.
    pub(crate) fn take_outcomes(&self) -> (Vec<Outcome>, Option<Outcome>) {
        let mut r = self.lock();
        (std::mem::take(&mut r.done), r.outcome.take())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replay> {
        self.replay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a user id to (step id with `:N`, hash, memo). Returns `Interrupt` if this
    /// execution already has a new step.
    fn begin(&self, id: &str) -> Result<(String, String, Option<Memo>), Error> {
        if id.is_empty() {
            return Err(Error::non_retriable("a step id must not be empty"));
        }
        let mut r = self.lock();
        if r.outcome.is_some() {
            return Err(Error::Interrupt);
        }
        let n = r.seen.entry(id.to_string()).or_insert(0);
        let step_id = if *n == 0 {
            id.to_string()
        } else {
            format!("{id}:{n}")
        };
        *n += 1;
        let hash = hash_step_id(&step_id);
        let memo = r.memo.get(&hash).cloned();
        Ok((step_id, hash, memo))
    }

    fn suspend(&self, outcome: Outcome) -> Error {
        let mut r = self.lock();
        if r.outcome.is_none() {
            r.outcome = Some(outcome);
        }
        Error::Interrupt
    }

    /// Runs `f` once, memoizing its result. Replays return the stored value (or the stored
    /// failure, as [`Error::StepFailed`]).
    pub async fn run<T, F, Fut>(&self, id: &str, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(v)) => return decode(&step_id, v),
            Some(Memo::Failed(body)) => return Err(Error::StepFailed(body)),
            Some(Memo::Pending) => return Err(self.suspend(Outcome::Pending)),
            Some(Memo::Retrying { .. }) | None => {}
        }
        if let Some(e) = self.hold(&step_id, &hash, None) {
            return Err(e);
        }
        self.execute(step_id, hash, None, f()).await
    }

    /// [`Step::run`] for a step that takes an input: the input (JSON) is recorded on the
    /// step, shown in the console, and handed to `f`. A "Rerun from step" may replace it
    /// with an edited input, which `f` then receives instead.
    pub async fn run_with<I, T, F, Fut>(&self, id: &str, input: I, f: F) -> Result<T, Error>
    where
        I: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
        F: FnOnce(I) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(v)) => return decode(&step_id, v),
            Some(Memo::Failed(body)) => return Err(Error::StepFailed(body)),
            Some(Memo::Pending) => return Err(self.suspend(Outcome::Pending)),
            Some(Memo::Retrying { .. }) | None => {}
        }
        let edited = {
            let r = self.lock();
            r.input_override
                .as_ref()
                .filter(|(h, _)| *h == hash)
                .map(|(_, v)| v.clone())
        };
        let (input, value) = match edited {
            Some(v) => match serde_json::from_value::<I>(v.clone()) {
                Ok(i) => (i, v),
                Err(e) => {
                    let err = Error::non_retriable(format!(
                        "the edited input of step `{step_id}` does not fit it: {e}"
                    ));
                    return Err(self.suspend(Outcome::Ran {
                        hash,
                        step_id,
                        kind: StepKind::Run,
                        input: Some(v),
                        result: Err(err),
                        started_at: now_ms(),
                        ended_at: now_ms(),
                    }));
                }
            },
            None => match serde_json::to_value(&input) {
                Ok(v) => (input, v),
                Err(e) => {
                    return Err(Error::non_retriable(format!(
                        "the input of step `{step_id}` is not JSON: {e}"
                    )))
                }
            },
        };
        if let Some(e) = self.hold(&step_id, &hash, Some(&value)) {
            return Err(e);
        }
        self.execute(step_id, hash, Some(value), f(input)).await
    }

    /// Runs a new step's code and records its outcome.
    async fn execute<T: Serialize>(
        &self,
        step_id: String,
        hash: String,
        input: Option<Value>,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let (run_id, hook) = {
            let r = self.lock();
            (r.run_id.clone(), r.on_start.clone())
        };
        let span = tracing::info_span!("step", run_id = %run_id, step = %step_id);
        let started_at = now_ms();
        if let Some(hook) = hook {
            hook(&hash, &step_id, input.as_ref(), started_at);
        }
        let result = fut.instrument(span).await;
        let ended_at = now_ms();
        let result = match result {
            Ok(v) => serde_json::to_value(v).map_err(|e| {
                Error::non_retriable(format!(
                    "step `{step_id}` returned a value that is not JSON: {e}"
                ))
            }),
            Err(Error::Interrupt) => Err(Error::non_retriable(
                "step tools cannot be called inside another step",
            )),
            Err(e) => Err(e),
        };
        Err(self.suspend(Outcome::Ran {
            hash,
            step_id,
            kind: StepKind::Run,
            input,
            result,
            started_at,
            ended_at,
        }))
    }

    /// Pauses the run for `duration` (at most a year). No worker is held while it sleeps.
    pub async fn sleep(&self, id: &str, duration: Duration) -> Result<(), Error> {
        check_duration(duration, "sleep")?;
        self.sleep_until_ms(id, now_ms() + duration.as_millis() as i64)
    }

    /// Pauses the run until a point in time.
    pub async fn sleep_until(
        &self,
        id: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        self.sleep_until_ms(id, until.timestamp_millis())
    }

    fn sleep_until_ms(&self, id: &str, until: i64) -> Result<(), Error> {
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(_)) => Ok(()),
            Some(Memo::Failed(body)) => Err(Error::StepFailed(body)),
            Some(Memo::Pending) => Err(self.suspend(Outcome::Pending)),
            _ => Err(self.suspend(Outcome::Sleep {
                hash,
                step_id,
                until,
            })),
        }
    }

    /// Waits for an event received after this call, or `None` on timeout. A bad `if`
    /// expression fails the step (non-retriable), naming the problem.
    pub async fn wait_for_event(
        &self,
        id: &str,
        opts: WaitForEvent,
    ) -> Result<Option<Event>, Error> {
        check_duration(opts.timeout, "wait_for_event timeout")?;
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(Value::Null)) => Ok(None),
            Some(Memo::Completed(v)) => decode(&step_id, v).map(Some),
            Some(Memo::Failed(body)) => Err(Error::StepFailed(body)),
            Some(Memo::Pending) => Err(self.suspend(Outcome::Pending)),
            _ => {
                let expr = match opts.if_expr.as_deref().map(crate::expr::cached).transpose() {
                    Ok(e) => e,
                    Err(e) => {
                        return Err(Error::non_retriable(format!(
                            "wait_for_event `{step_id}`: {e}"
                        )))
                    }
                };
                let (match_value, if_event) = {
                    let r = self.lock();
                    let match_value = opts
                        .match_field
                        .as_ref()
                        .map(|field| lookup(&r.trigger, field).cloned().unwrap_or(Value::Null));
                    let if_event = expr.as_ref().and_then(|e| e.event_part(&r.trigger));
                    (match_value, if_event)
                };
                Err(self.suspend(Outcome::Wait {
                    hash,
                    step_id,
                    event: opts.event,
                    match_field: opts.match_field,
                    match_value,
                    if_expr: opts.if_expr,
                    if_event,
                    expires_at: now_ms() + opts.timeout.as_millis() as i64,
                }))
            }
        }
    }

    /// Runs another registered function and returns its output. Its failure (or a timeout)
    /// is returned as [`Error::StepFailed`].
    pub async fn invoke<T: DeserializeOwned>(&self, id: &str, opts: Invoke) -> Result<T, Error> {
        check_duration(opts.timeout, "invoke timeout")?;
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(v)) => decode(&step_id, v),
            Some(Memo::Failed(body)) => Err(Error::StepFailed(body)),
            Some(Memo::Pending) => Err(self.suspend(Outcome::Pending)),
            _ => Err(self.suspend(Outcome::Invoke {
                hash,
                step_id,
                function_id: opts.function_id,
                data: opts.data,
                expires_at: now_ms() + opts.timeout.as_millis() as i64,
            })),
        }
    }

    /// Sends events, once: the send is committed together with the step's result, and
    /// replays return the same internal ids.
    pub async fn send_event<E: Serialize>(
        &self,
        id: &str,
        events: Vec<E>,
    ) -> Result<Vec<String>, Error> {
        let (step_id, hash, memo) = self.begin(id)?;
        match memo {
            Some(Memo::Completed(v)) => return decode(&step_id, v),
            Some(Memo::Failed(body)) => return Err(Error::StepFailed(body)),
            Some(Memo::Pending) => return Err(self.suspend(Outcome::Pending)),
            _ => {}
        }
        let now = now_ms();
        let run_id = self.lock().run_id.clone();
        let mut parsed = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let value = serde_json::to_value(e).map_err(|e| {
                Error::non_retriable(format!("send_event `{step_id}`: event {i}: {e}"))
            })?;
            let mut event = crate::event::validate(value, now).map_err(|e| {
                Error::non_retriable(format!("send_event `{step_id}`: event {i}: {e}"))
            })?;
            // A deterministic id: if the run crashes before the step is stored and replays,
            // the resend triggers no second run. It names the run, so the same step in
            // another run is not taken for a duplicate.
            event
                .id
                .get_or_insert_with(|| format!("{run_id}-{hash}-{i}"));
            parsed.push(event);
        }
        if parsed.is_empty() {
            return Err(Error::non_retriable(format!(
                "send_event `{step_id}`: no events"
            )));
        }
        Err(self.suspend(Outcome::Send {
            hash,
            step_id,
            events: parsed,
        }))
    }
}

/// The driver API: for handlers whose steps execute elsewhere (an SDK app over HTTP).
///
/// Such a handler reads what the run has recorded ([`Step::memo`], [`Ctx::events`],
/// [`Ctx::attempt`], [`Step::retrying_attempt`], [`Ctx::max_attempts`]), has the body
/// executed elsewhere, and reports what that execution did as the one outcome a Rust step
/// would have produced, under the step's hash: `record_run`, `record_sleep`, `record_wait`
/// or `record_invoke`. Each returns the error the handler then returns (`Err(..)`), exactly
/// as a Rust step does: normally [`Error::Interrupt`], after which the engine persists the
/// outcome and calls the handler again. A handler that returns `Ok(value)` completes the
/// run; one that returns an error fails this attempt of the function (retried by the
/// engine's rules, see [`Error`]).
///
/// Retries stay the engine's: a failed `record_run` with [`Error::Retriable`] is retried
/// with the engine's backoff, [`Error::RetryAfter`] not before its time,
/// [`Error::NonRetriable`] (or [`Error::StepFailed`]) fails the step at once; after the
/// last attempt the step fails for good and the next execution sees it as
/// [`StepState::Failed`].
///
/// Several `run` steps may be reported in one execution (parallel steps that ran at once,
/// steps an SDK checkpointed while its request was in flight), then at most one other
/// report (a sleep, a wait, an invoke): they are all persisted together when the handler
/// returns, in the order reported; each `run` step that finished is also written as soon as
/// it is reported, so that a crash before the handler returns does not lose it (an SDK that
/// checkpoints may run all of a run's steps in one request). A handler that reports `run` steps and then returns
/// `Ok(value)` completes the run in the same write. Anything after a sleep, wait or invoke
/// (or a Rust step after any report) records nothing, logs a warning, and returns
/// [`Error::Interrupt`]; so does a second report of the same step in one execution (an SDK
/// retrying a checkpoint whose answer it missed).
///
/// A report for a step that is still pending (its sleep, wait or invoke not due) records
/// nothing new: the run waits for that step, as a Rust body reaching it would. A report for
/// a step that already has its result is refused with [`Error::NonRetriable`] (a step never
/// runs again once it finished). Bad arguments (a hash that is not a SHA-1 in lowercase
/// hex, an empty step id, a time more than a year ahead, a bad `if` expression) are refused
/// the same way, naming the problem, and record nothing.
impl Step {
    /// Every recorded step of the run: the finished ones in the order they finished (the
    /// SDK's `ctx.stack`), then the retrying and pending ones in the order the run reached
    /// them. A step reported earlier in this execution is not included.
    pub fn memo(&self) -> Vec<RecordedStep> {
        self.lock().memo.recorded()
    }

    /// The zero-based attempt of the step that is being retried, if one is: the attempts it
    /// used so far (the SDK's per-step `ctx.attempt`). If several are retrying (a body that
    /// took another path), the last one the run reached.
    pub fn retrying_attempt(&self) -> Option<u32> {
        let r = self.lock();
        r.memo
            .order
            .iter()
            .rev()
            .find_map(|m| match r.memo.get(&m.hash) {
                Some(Memo::Retrying { attempts }) => Some(*attempts),
                _ => None,
            })
    }

    /// For a "Rerun from step" with an edited input: the step's hash and the input it is to
    /// run with instead of its own.
    pub fn edited_input(&self) -> Option<(String, Value)> {
        self.lock().input_override.clone()
    }

    /// Reports a `run` step executed elsewhere: its result (or error), its input if it has
    /// one (shown in the console), and when it ran (ms since the epoch).
    pub fn record_run(
        &self,
        hash: &str,
        step_id: &str,
        input: Option<Value>,
        result: Result<Value, Error>,
        started_at: i64,
        ended_at: i64,
    ) -> Error {
        self.record_run_as(
            StepKind::Run,
            hash,
            step_id,
            input,
            result,
            started_at,
            ended_at,
        )
    }

    /// [`Step::record_run`] for a step of another kind that executed elsewhere like a `run`
    /// step: `SendEvent` (an SDK's `step.sendEvent`, whose events the SDK sent itself; its
    /// memo is its result, as for `run`). Any other kind is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn record_run_as(
        &self,
        kind: StepKind,
        hash: &str,
        step_id: &str,
        input: Option<Value>,
        result: Result<Value, Error>,
        started_at: i64,
        ended_at: i64,
    ) -> Error {
        if !matches!(kind, StepKind::Run | StepKind::SendEvent) {
            return Error::non_retriable(format!(
                "step `{step_id}`: a {kind:?} step is not reported as a finished run"
            ));
        }
        let result = match result {
            Err(Error::Interrupt) => Err(Error::non_retriable(format!(
                "step `{step_id}` reported an interrupt as its error"
            ))),
            other => other,
        };
        self.record(hash, step_id, || {
            Ok(Outcome::Ran {
                hash: hash.to_string(),
                step_id: step_id.to_string(),
                kind,
                input,
                result,
                started_at,
                ended_at: ended_at.max(started_at),
            })
        })
    }

    /// Reports a sleep until `until_ms` (ms since the epoch; at most a year ahead). Its
    /// memo, once over, is `null`.
    pub fn record_sleep(&self, hash: &str, step_id: &str, until_ms: i64) -> Error {
        self.record(hash, step_id, || {
            check_deadline(until_ms, &format!("sleep `{step_id}`"))?;
            Ok(Outcome::Sleep {
                hash: hash.to_string(),
                step_id: step_id.to_string(),
                until: until_ms,
            })
        })
    }

    /// Reports a wait for an event named `event`, received after now, until `expires_at`
    /// (ms since the epoch, at most a year ahead; a time already past times out at once).
    /// `if_expr` is the Inngest `if` the event must satisfy, as for
    /// [`WaitForEvent::if_expr`]: `async` is the incoming event, `event` the run's own, whose
    /// values are taken now. Its memo is the matching event, or `null` on timeout.
    pub fn record_wait(
        &self,
        hash: &str,
        step_id: &str,
        event: &str,
        if_expr: Option<String>,
        expires_at: i64,
    ) -> Error {
        self.record(hash, step_id, || {
            let what = format!("wait_for_event `{step_id}`");
            check_deadline(expires_at, &what)?;
            if event.is_empty() {
                return Err(Error::non_retriable(format!("{what}: no event name")));
            }
            let expr = if_expr
                .as_deref()
                .map(crate::expr::cached)
                .transpose()
                .map_err(|e| Error::non_retriable(format!("{what}: {e}")))?;
            let if_event = {
                let r = self.lock();
                expr.as_ref().and_then(|e| e.event_part(&r.trigger))
            };
            Ok(Outcome::Wait {
                hash: hash.to_string(),
                step_id: step_id.to_string(),
                event: event.to_string(),
                match_field: None,
                match_value: None,
                if_expr,
                if_event,
                expires_at,
            })
        })
    }

    /// Reports an invoke of the registered function `function_id` with `data` (the `data`
    /// of the `inngest/function.invoked` event it receives), waiting for its result until
    /// `expires_at` (ms since the epoch, at most a year ahead). Its memo is the invoked
    /// run's output or error; a function that does not exist fails the step at once
    /// (`FunctionNotFound`).
    pub fn record_invoke(
        &self,
        hash: &str,
        step_id: &str,
        function_id: &str,
        data: serde_json::Map<String, Value>,
        expires_at: i64,
    ) -> Error {
        self.record(hash, step_id, || {
            check_deadline(expires_at, &format!("invoke `{step_id}`"))?;
            if function_id.is_empty() {
                return Err(Error::non_retriable(format!(
                    "invoke `{step_id}`: no function id"
                )));
            }
            Ok(Outcome::Invoke {
                hash: hash.to_string(),
                step_id: step_id.to_string(),
                function_id: function_id.to_string(),
                data,
                expires_at,
            })
        })
    }

    /// The part every report shares: one outcome per execution, a memoized step is not
    /// reported again, a pending one keeps the run waiting.
    fn record(
        &self,
        hash: &str,
        step_id: &str,
        outcome: impl FnOnce() -> Result<Outcome, Error>,
    ) -> Error {
        {
            let r = self.lock();
            match &r.outcome {
                None | Some(Outcome::Ran { .. }) => {}
                Some(_) => {
                    tracing::warn!(run_id = %r.run_id, step = %step_id, "a report after a sleep, wait or invoke in one execution is ignored");
                    return Error::Interrupt;
                }
            }
            if r.reported(hash) {
                tracing::debug!(run_id = %r.run_id, step = %step_id, "step reported twice in one execution; the first report stands");
                return Error::Interrupt;
            }
        }
        if let Err(e) = check_hash(hash) {
            return Error::non_retriable(format!("step `{step_id}`: {e}"));
        }
        if step_id.is_empty() {
            return Error::non_retriable(format!("step {hash}: the step id must not be empty"));
        }
        let memo = self.lock().memo.get(hash).cloned();
        match memo {
            Some(Memo::Completed(_) | Memo::Failed(_)) => Error::non_retriable(format!(
                "step `{step_id}` ({hash}) was reported again, but it already has its result"
            )),
            Some(Memo::Pending) => self.suspend(Outcome::Pending),
            Some(Memo::Retrying { .. }) | None => match outcome() {
                Ok(o) => {
                    let mut r = self.lock();
                    if let Some(hook) = &r.on_reported {
                        hook(&o);
                    }
                    if let Some(ran @ Outcome::Ran { .. }) = r.outcome.take() {
                        r.done.push(ran);
                    }
                    r.outcome = Some(o);
                    Error::Interrupt
                }
                Err(e) => e,
            },
        }
    }
}

/// A step hash as drivers give it: the SHA-1 of the step id in lowercase hex, as
/// [`hash_step_id`] makes and Inngest's SDKs send. Anything else could collide with the
/// engine's own keys (`$function` for the body's attempts, `cancel:N` for cancel rules).
fn check_hash(hash: &str) -> Result<(), String> {
    let ok = hash.len() == 40 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the step hash {hash:?} is not a SHA-1 in lowercase hex (40 characters)"
        ))
    }
}

/// A deadline a driver gives must be at most a year ahead (Inngest's limit).
fn check_deadline(at_ms: i64, what: &str) -> Result<(), Error> {
    if at_ms.saturating_sub(now_ms()) > MAX_SUSPEND.as_millis() as i64 {
        return Err(Error::non_retriable(format!(
            "{what} is longer than a year"
        )));
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(step_id: &str, v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| {
        Error::non_retriable(format!(
            "the stored result of step `{step_id}` does not decode: {e}"
        ))
    })
}

fn check_duration(d: Duration, what: &str) -> Result<(), Error> {
    if d > MAX_SUSPEND {
        return Err(Error::non_retriable(format!(
            "{what} is longer than a year"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_match_the_sdks() {
        assert_eq!(
            hash_step_id("my-step-id"),
            "e7d8a2f140845095749d60246ff1110c9d01d76a"
        );
        assert_eq!(
            hash_step_id("my-step-id:1"),
            "f47c6228c581af870aa285200cf95ec3ac59bb6a"
        );
    }

    #[tokio::test]
    async fn repeats_of_an_id_get_suffixes_and_only_the_first_new_step_runs() {
        let mut memo = HashMap::new();
        memo.insert(hash_step_id("a"), Memo::Completed(json!(1)));
        let step = Step::new(memo, json!({}), "r".into());
        let first: i32 = step.run("a", || async { Ok(99) }).await.unwrap();
        assert_eq!(
            first, 1,
            "memoized value is returned, the closure is not run"
        );
        let second: Result<i32, _> = step.run("a", || async { Ok(2) }).await;
        assert!(matches!(second, Err(Error::Interrupt)));
        let mut ran_third = false;
        let third: Result<i32, _> = step
            .run("b", || async {
                ran_third = true;
                Ok(3)
            })
            .await;
        assert!(matches!(third, Err(Error::Interrupt)));
        assert!(!ran_third, "no second new step in one execution");
        match step.take_outcome() {
            Some(Outcome::Ran {
                step_id,
                hash,
                result,
                ..
            }) => {
                assert_eq!(step_id, "a:1");
                assert_eq!(hash, hash_step_id("a:1"));
                assert_eq!(result.unwrap(), json!(2));
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    #[tokio::test]
    async fn failed_memos_are_rethrown() {
        let mut memo = HashMap::new();
        memo.insert(
            hash_step_id("a"),
            Memo::Failed(ErrorBody::new("Error", "boom")),
        );
        let step = Step::new(memo, json!({}), "r".into());
        let r: Result<(), _> = step.run("a", || async { Ok(()) }).await;
        assert!(matches!(r, Err(Error::StepFailed(b)) if b.message == "boom"));
    }

    #[tokio::test]
    async fn a_bad_wait_expression_fails_the_step_clearly() {
        let step = Step::new(HashMap::new(), json!({}), "r".into());
        let opts = WaitForEvent::new("app/done", Duration::from_secs(60)).when("async.data.x ==");
        match step.wait_for_event("w", opts).await {
            Err(Error::NonRetriable(body)) => {
                assert!(
                    body.message.contains("wait_for_event `w`"),
                    "{}",
                    body.message
                );
                assert!(body.message.contains("syntax error"), "{}", body.message);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(step.take_outcome().is_none());
    }

    #[tokio::test]
    async fn wait_resolves_its_match_value_from_the_trigger() {
        let step = Step::new(
            HashMap::new(),
            json!({"data": {"userId": "u1", "plan": "pro", "other": "x"}}),
            "r".into(),
        );
        let opts = WaitForEvent::new("app/done", Duration::from_secs(60))
            .matching("data.userId")
            .when("async.data.ok == true && async.data.plan == event.data.plan");
        assert!(matches!(
            step.wait_for_event("w", opts).await,
            Err(Error::Interrupt)
        ));
        match step.take_outcome() {
            Some(Outcome::Wait {
                match_value,
                event,
                if_event,
                ..
            }) => {
                assert_eq!(match_value, Some(json!("u1")));
                assert_eq!(event, "app/done");
                // Only what the expression reads of the run's event is kept with the wait.
                assert_eq!(if_event, Some(json!({"data": {"plan": "pro"}})));
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_driver_reports_one_outcome_per_execution_the_first_wins() {
        let step = Step::new(HashMap::new(), json!({}), "r".into());
        let (a, b) = (hash_step_id("a"), hash_step_id("b"));
        assert!(matches!(
            step.record_sleep(&a, "a", now_ms() + 1_000),
            Error::Interrupt
        ));
        // A second report, and a Rust step after it, record nothing.
        assert!(matches!(
            step.record_run(&b, "b", None, Ok(json!(1)), 0, 0),
            Error::Interrupt
        ));
        let r: Result<i32, _> = step.run("c", || async { Ok(3) }).await;
        assert!(matches!(r, Err(Error::Interrupt)));
        match step.take_outcome() {
            Some(Outcome::Sleep { hash, step_id, .. }) => {
                assert_eq!((hash, step_id.as_str()), (a, "a"));
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_driver_report_of_a_pending_or_finished_step_records_nothing_new() {
        let (pending, done) = (hash_step_id("p"), hash_step_id("d"));
        let mut memo = HashMap::new();
        memo.insert(pending.clone(), Memo::Pending);
        memo.insert(done.clone(), Memo::Completed(json!(1)));
        let step = Step::new(memo.clone(), json!({}), "r".into());
        // A pending step reported again keeps the run waiting for it.
        assert!(matches!(
            step.record_sleep(&pending, "p", now_ms() + 1_000),
            Error::Interrupt
        ));
        assert!(matches!(step.take_outcome(), Some(Outcome::Pending)));
        // A finished one is refused: a step never runs again once it has its result.
        let step = Step::new(memo, json!({}), "r".into());
        match step.record_run(&done, "d", None, Ok(json!(2)), 0, 0) {
            Error::NonRetriable(b) => assert!(
                b.message.contains("already has its result"),
                "{}",
                b.message
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert!(step.take_outcome().is_none());
    }

    #[tokio::test]
    async fn bad_driver_reports_are_refused_naming_the_problem() {
        let step = Step::new(HashMap::new(), json!({}), "r".into());
        let h = hash_step_id("x");
        let cases = [
            (step.record_sleep("cancel:0", "x", 0), "not a SHA-1"),
            (step.record_sleep(&h.to_uppercase(), "x", 0), "not a SHA-1"),
            (step.record_sleep(&h, "", 0), "step id must not be empty"),
            (
                step.record_sleep(&h, "x", now_ms() + 400 * 24 * 3600 * 1000),
                "sleep `x` is longer than a year",
            ),
            (
                step.record_wait(&h, "x", "app/e", Some("async.data ==".into()), now_ms()),
                "wait_for_event `x`",
            ),
            (
                step.record_wait(&h, "x", "", None, now_ms()),
                "no event name",
            ),
            (
                step.record_invoke(&h, "x", "", Default::default(), now_ms()),
                "no function id",
            ),
        ];
        for (err, expected) in cases {
            match err {
                Error::NonRetriable(b) => assert!(b.message.contains(expected), "{}", b.message),
                other => panic!("unexpected {other:?} (expected {expected})"),
            }
        }
        assert!(step.take_outcome().is_none(), "nothing was recorded");
    }

    #[tokio::test]
    async fn a_driver_wait_keeps_what_its_if_reads_of_the_run_event() {
        let step = Step::new(
            HashMap::new(),
            json!({"data": {"userId": "u1", "other": "x"}}),
            "r".into(),
        );
        let h = hash_step_id("w");
        let if_expr = "async.data.userId == event.data.userId";
        assert!(matches!(
            step.record_wait(&h, "w", "app/done", Some(if_expr.into()), now_ms() + 1_000),
            Error::Interrupt
        ));
        match step.take_outcome() {
            Some(Outcome::Wait {
                if_expr: e,
                if_event,
                match_field,
                ..
            }) => {
                assert_eq!(e.as_deref(), Some(if_expr));
                assert_eq!(if_event, Some(json!({"data": {"userId": "u1"}})));
                assert_eq!(match_field, None);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    #[test]
    fn memos_keep_finished_steps_in_completion_order() {
        let mut m = Memos::default();
        let meta = |h: &str| StepMeta {
            hash: h.into(),
            step_id: h.into(),
            kind: StepKind::Run,
        };
        m.push_loaded(meta("a"), Memo::Completed(json!(1)));
        m.push_loaded(meta("r"), Memo::Retrying { attempts: 2 });
        m.set("b", "b", StepKind::Sleep, Memo::Completed(Value::Null));
        m.set("p", "p", StepKind::WaitForEvent, Memo::Pending);
        m.set(
            "r",
            "r",
            StepKind::Run,
            Memo::Failed(ErrorBody::new("E", "x")),
        );
        let order: Vec<(String, StepKind)> =
            m.recorded().into_iter().map(|s| (s.hash, s.kind)).collect();
        assert_eq!(
            order,
            [
                ("a".into(), StepKind::Run),
                ("b".into(), StepKind::Sleep),
                ("r".into(), StepKind::Run),
                ("p".into(), StepKind::WaitForEvent),
            ]
        );
    }
}
