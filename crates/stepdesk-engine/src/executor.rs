//! The executor: a dispatcher that hands due runs to workers, and the loop that executes
//! one run (replaying its body, persisting each new step, until it finishes or suspends).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

use crate::backoff::clamp_retry_at;
use crate::error::{Error, ErrorBody};
use crate::event::Event;
use crate::ingest::Wake;
use crate::model::{RunStatus, StepKind, StepStatus};
use crate::progress::{
    self, AttemptWrite, ChildRun, Finish, PauseWrite, Progress, StepWrite, FUNCTION_ATTEMPT_HASH,
};
use crate::step::{Ctx, Memo, Memos, Outcome, Step, StepMeta};
use crate::store::{runs, steps, StoreError, StoreResult};
use crate::time::now_ms;
use crate::EngineInner;

/// Runs waiting for their time, and which are executing now.
#[derive(Default)]
pub(crate) struct Dispatcher {
    state: Mutex<DispatchState>,
    notify: Notify,
    idle: Notify,
}

#[derive(Default)]
struct DispatchState {
    due: BinaryHeap<Reverse<(i64, String)>>,
    in_flight: HashSet<String>,
    /// Runs woken while executing: look at them again when they finish.
    rewake: HashSet<String>,
    /// Runs to execute as soon as they can even if they are not due (see [`Dispatcher::force`]).
    forced: HashSet<String>,
    stopping: bool,
}

impl Dispatcher {
    pub(crate) fn wake_all(&self, wakes: impl IntoIterator<Item = Wake>) {
        let mut any = false;
        {
            let mut s = self.state.lock().expect("dispatcher lock");
            for (run_id, at) in wakes {
                s.due.push(Reverse((at, run_id)));
                any = true;
            }
        }
        if any {
            self.notify.notify_one();
        }
    }

    /// Executes a running run as soon as it can even though it is not due yet (its `wake_at`
    /// is later: it sleeps or waits on one branch of a race): a driver holds a step's result
    /// that only an execution records (see [`crate::Engine::wake`]). A run executing now
    /// executes again when it ends. Nothing is written: the result is in memory anyway.
    pub(crate) fn force(&self, run_id: &str) {
        {
            let mut s = self.state.lock().expect("dispatcher lock");
            s.forced.insert(run_id.to_string());
            s.due.push(Reverse((now_ms(), run_id.to_string())));
        }
        self.notify.notify_one();
    }

    /// Whether the run's next execution was forced; forgets it.
    fn take_forced(&self, run_id: &str) -> bool {
        self.state
            .lock()
            .expect("dispatcher lock")
            .forced
            .remove(run_id)
    }

    fn finish(&self, run_id: &str, next: Option<i64>) {
        let mut s = self.state.lock().expect("dispatcher lock");
        s.in_flight.remove(run_id);
        if s.rewake.remove(run_id) {
            s.due.push(Reverse((now_ms(), run_id.to_string())));
        }
        if let Some(at) = next {
            s.due.push(Reverse((at, run_id.to_string())));
        }
        let idle = s.in_flight.is_empty();
        drop(s);
        self.notify.notify_one();
        if idle {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.state.lock().expect("dispatcher lock").in_flight.len()
    }

    /// Stops handing out runs and waits (up to `grace`) for executing ones to finish.
    pub(crate) async fn stop(&self, grace: std::time::Duration) {
        self.state.lock().expect("dispatcher lock").stopping = true;
        self.notify.notify_one();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "stopping with runs still executing; they resume on the next start"
                );
                return;
            }
        }
    }

    /// The dispatch loop: starts each due run on a worker, at most `max_concurrent` at once.
    pub(crate) async fn run(self: Arc<Self>, engine: Arc<EngineInner>, max_concurrent: usize) {
        let permits = Arc::new(Semaphore::new(max_concurrent));
        loop {
            let notified = self.notify.notified();
            let (ready, next) = {
                let mut s = self.state.lock().expect("dispatcher lock");
                if s.stopping {
                    return;
                }
                let now = now_ms();
                let mut ready = Vec::new();
                while let Some(Reverse((at, _))) = s.due.peek() {
                    if *at > now || ready.len() >= max_concurrent {
                        break;
                    }
                    let Reverse((_, run_id)) = s.due.pop().expect("peeked");
                    if s.in_flight.contains(&run_id) {
                        s.rewake.insert(run_id);
                    } else {
                        s.in_flight.insert(run_id.clone());
                        ready.push(run_id);
                    }
                }
                (ready, s.due.peek().map(|Reverse((at, _))| *at))
            };
            for run_id in ready {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore closed");
                let engine = engine.clone();
                let dispatcher = self.clone();
                tokio::spawn(async move {
                    let span = tracing::info_span!("run", run_id = %run_id);
                    let next = execute_run(&engine, &run_id).instrument(span).await;
                    drop(permit);
                    dispatcher.finish(&run_id, next);
                });
            }
            match next {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(wait), notified)
                        .await;
                }
                None => notified.await,
            }
        }
    }
}

/// What the executor knows about a run when it picks it up.
struct LoadedRun {
    function_id: String,
    status: RunStatus,
    wake_at: Option<i64>,
    attempt: u32,
    started_at: Option<i64>,
    event: Value,
    memo: Memos,
    /// Attempts used so far by retrying steps.
    step_attempts: HashMap<String, u32>,
    /// Some suspended step is due (sleep over, wait or invoke timed out).
    has_due: bool,
    /// A failed step waits for its retry, not due yet.
    retry_not_due: bool,
    /// Earliest time a pending step is due.
    pending_wake: Option<i64>,
    /// "Rerun from step" with an edited input: (step hash, input).
    input_override: Option<(String, Value)>,
}

fn load_run(conn: &rusqlite::Connection, run_id: &str, now: i64) -> StoreResult<Option<LoadedRun>> {
    let Some(head) = runs::head(conn, run_id)? else {
        return Ok(None);
    };
    let runs::RunHead {
        function_id,
        status,
        wake_at,
        attempt,
        started_at,
        event_payload: payload,
        rerun_from_step: from_step,
        rerun_step_input: input,
    } = head;
    let input_override = match (from_step, input) {
        (Some(hash), Some(input)) => Some((hash, serde_json::from_str(&input)?)),
        _ => None,
    };
    let event = match payload {
        Some(p) => serde_json::from_str(&p)?,
        None => Value::Null,
    };
    let mut loaded = LoadedRun {
        function_id,
        status,
        wake_at,
        attempt,
        started_at,
        event,
        memo: Memos::default(),
        step_attempts: HashMap::new(),
        has_due: false,
        retry_not_due: false,
        pending_wake: None,
        input_override,
    };
    for row in steps::memo_rows(conn, run_id)? {
        let steps::MemoRow {
            hash,
            step_id,
            kind,
            status,
            attempts,
            wake_at: step_wake,
            output,
            error,
        } = row;
        let memo = match status {
            StepStatus::Completed => Memo::Completed(
                output
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()?
                    .unwrap_or(Value::Null),
            ),
            StepStatus::Failed => Memo::Failed(
                error
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()?
                    .unwrap_or_else(|| ErrorBody::new("Error", "unknown error")),
            ),
            // Executes again when the body reaches it (an interrupted attempt is not
            // counted: it did not fail, the process stopped under it).
            StepStatus::Retrying | StepStatus::Running | StepStatus::Interrupted => {
                if status == StepStatus::Retrying && step_wake.is_some_and(|at| at > now) {
                    loaded.retry_not_due = true;
                }
                loaded.step_attempts.insert(hash.clone(), attempts);
                Memo::Retrying { attempts }
            }
            StepStatus::Sleeping | StepStatus::Waiting | StepStatus::Invoking => {
                let at = step_wake.unwrap_or(i64::MAX);
                if at <= now {
                    loaded.has_due = true;
                }
                loaded.pending_wake = Some(loaded.pending_wake.map_or(at, |w: i64| w.min(at)));
                Memo::Pending
            }
        };
        loaded.memo.push_loaded(
            StepMeta {
                hash,
                step_id,
                kind,
            },
            memo,
        );
    }
    Ok(Some(loaded))
}

/// After the `attempts`-th failed attempt: the error to record, and when to try again
/// (`None`: not retriable, or no attempts left).
fn retry_decision(
    err: &Error,
    attempts: u32,
    max_attempts: u32,
    now: i64,
    backoff: &crate::backoff::Backoff,
) -> (ErrorBody, Option<i64>) {
    let body = err
        .body()
        .cloned()
        .unwrap_or_else(|| ErrorBody::new("Error", "interrupted"));
    let retry_at = match err {
        Error::Retriable(_) if attempts < max_attempts => Some(now + backoff.delay_ms(attempts)),
        Error::RetryAfter(_, at) if attempts < max_attempts => Some(clamp_retry_at(*at, now)),
        _ => None,
    };
    (body, retry_at)
}

fn error_json(e: &ErrorBody) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
}

/// Executes one run as far as it can go now. Returns when it should be looked at again.
async fn execute_run(engine: &Arc<EngineInner>, run_id: &str) -> Option<i64> {
    match execute_run_inner(engine, run_id).await {
        Ok(next) => next,
        Err(e) => {
            // A store failure (disk full, I/O error): nothing was acknowledged, so try again.
            tracing::error!(error = %e, "could not execute the run; retrying in 1 s");
            Some(now_ms() + 1_000)
        }
    }
}

/// What executing a run's body once left to do after its progress is written.
#[derive(Debug, PartialEq)]
enum After {
    /// Write the progress, then replay the body (a step finished: the next one may run).
    Continue,
    /// Write the progress and stop; look at the run again at this time.
    Stop(Option<i64>),
    /// Write the progress (a `send_event` step, whose events are stored with it), memoize
    /// the sent ids as the step's result, and replay.
    Send { hash: String, step_id: String },
    /// The body reached a step still suspended: write only a first start, and look again
    /// when the earliest pending step is due.
    Pending(Option<i64>),
}

/// The progress one execution of the body makes, and what follows it.
#[derive(Debug)]
struct Planned {
    progress: Progress,
    after: After,
}

/// What the planning of a body's outcome needs besides the outcome.
struct PlanEnv<'a> {
    run_id: &'a str,
    registry: &'a crate::Registry,
    max_attempts: u32,
    backoff: crate::backoff::Backoff,
    /// When the body started executing, and when it returned.
    body_started: i64,
    now: i64,
    /// Set `runs.started_at` (the run's first execution).
    first_start: Option<i64>,
}

/// How the body returned: its value, its error, or a panic's message.
type BodyResult = Result<Result<Value, Error>, String>;

/// What one execution of the body did: the finished `run` steps a driver reported (see
/// [`Step::record_run`]), then the last outcome, and how the body returned.
struct Executed {
    done: Vec<Outcome>,
    outcome: Option<Outcome>,
    body: BodyResult,
}

/// Runs a function's body once: at most one new Rust step executes (a driver may report
/// several finished `run` steps), and a panic in the body is caught and returned as its
/// message.
async fn run_body(
    function: &crate::Function,
    event: &Event,
    run: &LoadedRun,
    run_id: &str,
    hook: crate::step::StartHook,
    reported: crate::step::ReportHook,
) -> Executed {
    let step = Step::with_input_override(
        run.memo.clone(),
        run.event.clone(),
        run_id.to_string(),
        run.input_override.clone(),
    )
    .on_start(hook)
    .on_reported(reported);
    let ctx = Ctx {
        event: event.clone(),
        run_id: run_id.to_string(),
        function_id: function.id.clone(),
        attempt: run.attempt,
        max_attempts: function.max_attempts(),
        step: step.clone(),
    };
    // The handler is called inside the future, so a panic in its synchronous part is
    // caught like one in its body.
    let handler = function.handler.clone();
    let result = AssertUnwindSafe(async move { handler(ctx).await })
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        });
    let (mut done, mut outcome) = step.take_outcomes();
    // Steps reported, then the function's value (an SDK that checkpointed its steps and
    // then answered `RunComplete`): the steps are written and the run completes, at once.
    if matches!(result, Ok(Ok(_))) && matches!(outcome, Some(Outcome::Ran { .. })) {
        done.extend(outcome.take());
    }
    Executed {
        done,
        outcome,
        body: result,
    }
}

/// Plans an execution with several outcomes: each reported `run` step, then the last
/// outcome. A step that failed and will be retried stops the run until its retry (the rest
/// of the execution is not written: the replay after the retry finds it again, except for a
/// `run` step that finished, which [`report_hook`] wrote when it was reported); otherwise
/// the last outcome decides what follows, except that a run that made progress is replayed
/// rather than left waiting for a step that is still pending.
fn plan_all(executed: Executed, run: &mut LoadedRun, env: &PlanEnv<'_>) -> (Vec<Progress>, After) {
    let Executed {
        done,
        outcome,
        body,
    } = executed;
    let progressed = !done.is_empty();
    let mut progresses = Vec::with_capacity(done.len() + 1);
    let mut retry_at: Option<i64> = None;
    for ran in done {
        let Planned { progress, after } = plan(Some(ran), Ok(Err(Error::Interrupt)), run, env);
        if let After::Stop(Some(at)) = after {
            retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
        }
        progresses.push(progress);
    }
    let after = match retry_at {
        Some(at) => {
            // The earliest retry wakes the run (each retrying step set its own time).
            for p in &mut progresses {
                if let Some(Some(_)) = p.wake_at {
                    p.wake_at = Some(Some(at));
                }
            }
            After::Stop(Some(at))
        }
        None => {
            let Planned { progress, after } = plan(outcome, body, run, env);
            progresses.push(progress);
            match after {
                After::Pending(_) if progressed => After::Continue,
                other => other,
            }
        }
    };
    (progresses, after)
}

/// Decides what an execution of the body amounts to: the rows to write and what follows.
/// Updates the in-memory state of the run (memo, step attempts) as the replay will see it.
/// No I/O: every decision of the executor about steps, retries and the run's end is here.
fn plan(
    outcome: Option<Outcome>,
    body: BodyResult,
    run: &mut LoadedRun,
    env: &PlanEnv<'_>,
) -> Planned {
    let now = env.now;
    let mut p = Progress {
        run_id: env.run_id.to_string(),
        started_at: env.first_start,
        ..Default::default()
    };
    let after = match outcome {
        Some(Outcome::Ran {
            hash,
            step_id,
            kind,
            input,
            result,
            started_at: s,
            ended_at: e,
        }) => {
            let attempts = run.step_attempts.get(&hash).copied().unwrap_or(0) + 1;
            let mut write = ran_write(&hash, step_id, kind, input.as_ref(), s, e, attempts);
            let after = match result {
                Ok(v) => {
                    write.output = Some(v.to_string());
                    run.memo
                        .set(&hash, &write.step_id, kind, Memo::Completed(v));
                    After::Continue
                }
                Err(err) => {
                    let (body, retry_at) =
                        retry_decision(&err, attempts, env.max_attempts, now, &env.backoff);
                    p.attempt = Some(AttemptWrite {
                        hash: hash.clone(),
                        attempt: attempts - 1,
                        started_at: s,
                        ended_at: e,
                        error: error_json(&body),
                        retry_at,
                    });
                    write.error = Some(error_json(&body));
                    match retry_at {
                        Some(at) => {
                            tracing::info!(step = %write.step_id, attempt = attempts, error = %body, "step failed; retrying");
                            write.status = StepStatus::Retrying;
                            write.wake_at = Some(at);
                            run.step_attempts.insert(hash.clone(), attempts);
                            p.wake_at = Some(Some(at));
                            After::Stop(Some(at))
                        }
                        None => {
                            tracing::warn!(step = %write.step_id, attempt = attempts, error = %body, "step failed for good");
                            write.status = StepStatus::Failed;
                            run.memo
                                .set(&hash, &write.step_id, kind, Memo::Failed(body));
                            After::Continue
                        }
                    }
                }
            };
            p.step = Some(write);
            after
        }
        Some(Outcome::Sleep {
            hash,
            step_id,
            until,
        }) => {
            p.step = Some(suspended(
                hash,
                step_id,
                StepKind::Sleep,
                StepStatus::Sleeping,
                now,
                until,
                Some(format!("{{\"until\":{until}}}")),
            ));
            p.wake_at = Some(Some(until));
            After::Stop(Some(until))
        }
        Some(Outcome::Wait {
            hash,
            step_id,
            event,
            match_field,
            match_value,
            if_expr,
            if_event,
            expires_at,
        }) => {
            let input = match &if_expr {
                Some(e) => {
                    serde_json::json!({"event": event, "match": match_field, "if": e, "timeout_at": expires_at})
                }
                None => {
                    serde_json::json!({"event": event, "match": match_field, "timeout_at": expires_at})
                }
            };
            p.step = Some(suspended(
                hash.clone(),
                step_id,
                StepKind::WaitForEvent,
                StepStatus::Waiting,
                now,
                expires_at,
                Some(input.to_string()),
            ));
            p.pause = Some(PauseWrite {
                hash,
                kind: "wait",
                event_name: Some(event),
                match_field,
                match_value: match_value.map(|v| v.to_string()),
                if_expr,
                if_event: if_event.map(|v| v.to_string()),
                expires_at,
            });
            p.wake_at = Some(Some(expires_at));
            After::Stop(Some(expires_at))
        }
        Some(Outcome::Invoke {
            hash,
            step_id,
            function_id,
            data,
            expires_at,
        }) => {
            if env.registry.get(&function_id).is_none() {
                let why = match env.registry.archived(&function_id) {
                    Some(_) => "it is archived",
                    None => "no such function",
                };
                let err = ErrorBody::new(
                    "FunctionNotFound",
                    format!("cannot invoke `{function_id}`: {why}"),
                );
                run.memo
                    .set(&hash, &step_id, StepKind::Invoke, Memo::Failed(err.clone()));
                p.step = Some(StepWrite {
                    hash: hash.clone(),
                    step_id,
                    kind: StepKind::Invoke,
                    status: StepStatus::Failed,
                    attempts: 1,
                    started_at: Some(now),
                    ended_at: Some(now),
                    wake_at: None,
                    input: Some(serde_json::json!({"function_id": function_id}).to_string()),
                    output: None,
                    error: Some(error_json(&err)),
                });
                After::Continue
            } else {
                let input = serde_json::json!({"function_id": function_id, "data": data, "timeout_at": expires_at});
                p.step = Some(suspended(
                    hash.clone(),
                    step_id,
                    StepKind::Invoke,
                    StepStatus::Invoking,
                    now,
                    expires_at,
                    Some(input.to_string()),
                ));
                p.pause = Some(PauseWrite {
                    hash,
                    kind: "invoke",
                    event_name: None,
                    match_field: None,
                    match_value: None,
                    if_expr: None,
                    if_event: None,
                    expires_at,
                });
                p.child = Some(ChildRun { function_id, data });
                p.wake_at = Some(Some(expires_at));
                After::Stop(Some(expires_at))
            }
        }
        Some(Outcome::Send {
            hash,
            step_id,
            events,
        }) => {
            let input = serde_json::json!({"events": events.len()});
            p.step = Some(StepWrite {
                hash: hash.clone(),
                step_id: step_id.clone(),
                kind: StepKind::SendEvent,
                status: StepStatus::Completed,
                attempts: 1,
                started_at: Some(now),
                ended_at: Some(now),
                wake_at: None,
                input: Some(input.to_string()),
                output: None,
                error: None,
            });
            p.send = Some(events);
            After::Send { hash, step_id }
        }
        Some(Outcome::Pending) => After::Pending(run.pending_wake),
        None => {
            let attempts = run.attempt + 1;
            let failure = match body {
                Ok(Ok(output)) => {
                    p.finish = Some(Finish::Completed(output));
                    None
                }
                Ok(Err(Error::Interrupt)) => Some(Error::non_retriable(
                    "the function swallowed a step interrupt: propagate step results with `?`",
                )),
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(Error::Retriable(ErrorBody::new(
                    "Panic",
                    format!("the function panicked: {panic}"),
                ))),
            };
            match failure {
                None => After::Stop(None),
                Some(err) => {
                    let (body, retry_at) =
                        retry_decision(&err, attempts, env.max_attempts, now, &env.backoff);
                    p.attempt = Some(AttemptWrite {
                        hash: FUNCTION_ATTEMPT_HASH.into(),
                        attempt: run.attempt,
                        started_at: env.body_started,
                        ended_at: now,
                        error: error_json(&body),
                        retry_at,
                    });
                    p.function_attempts = Some(attempts);
                    match retry_at {
                        Some(at) => {
                            tracing::info!(attempt = attempts, error = %body, "function failed; retrying");
                            p.wake_at = Some(Some(at));
                            After::Stop(Some(at))
                        }
                        None => {
                            tracing::warn!(attempt = attempts, error = %body, "run failed");
                            p.finish = Some(Finish::Failed(body));
                            After::Stop(None)
                        }
                    }
                }
            }
        }
    };
    Planned { progress: p, after }
}

/// A run ready to execute: its state, function and event.
struct Ready {
    run: LoadedRun,
    function: Arc<crate::Function>,
    event: Event,
}

/// Loads a run and decides whether it executes now: `Err(next)` if not (not running, not
/// due yet, or failed for good because its function or event is gone: that is written).
/// Settles suspended steps that came due first.
async fn prepare(
    engine: &Arc<EngineInner>,
    run_id: &str,
    now: i64,
    forced: bool,
) -> StoreResult<Result<Ready, Option<i64>>> {
    let store = &engine.store;
    let id = run_id.to_string();
    let Some(mut run) = store.read(move |c| load_run(c, &id, now)).await? else {
        return Ok(Err(None));
    };
    if run.status != RunStatus::Running {
        return Ok(Err(None));
    }
    // A forced execution (a driver holds a result) runs before the run's time, but never
    // before a failed step's retry is due: that would skip its backoff.
    let early = forced && !run.retry_not_due;
    match run.wake_at {
        None => return Ok(Err(None)),
        Some(at) if at > now && !early => return Ok(Err(Some(at))),
        _ => {}
    }
    if run.has_due {
        let id = run_id.to_string();
        store
            .write(move |c| progress::resolve_due(c, &id, now))
            .await?;
        let id = run_id.to_string();
        let now = now_ms();
        match store.read(move |c| load_run(c, &id, now)).await? {
            Some(r) => run = r,
            None => return Ok(Err(None)),
        }
    }
    let fail = |err: ErrorBody| Progress {
        run_id: run_id.into(),
        finish: Some(Finish::Failed(err)),
        ..Default::default()
    };
    let registry = engine.registry();
    let Some(function) = registry.get(&run.function_id).cloned() else {
        let err = ErrorBody::new("FunctionNotFound", registry.missing(&run.function_id));
        commit(engine, vec![fail(err)]).await?;
        return Ok(Err(None));
    };
    let event: Event = match serde_json::from_value(run.event.clone()) {
        Ok(e) => e,
        Err(e) => {
            let err = ErrorBody::new(
                "InvalidEvent",
                format!("the run's event cannot be read: {e}"),
            );
            commit(engine, vec![fail(err)]).await?;
            return Ok(Err(None));
        }
    };
    Ok(Ok(Ready {
        run,
        function,
        event,
    }))
}

/// Executes a run: replays its body, writing each step's progress, until it finishes or
/// suspends. Returns when to look at it again.
async fn execute_run_inner(engine: &Arc<EngineInner>, run_id: &str) -> StoreResult<Option<i64>> {
    let now = now_ms();
    let Ready {
        mut run,
        function,
        event,
    } = match prepare(engine, run_id, now, engine.dispatcher.take_forced(run_id)).await? {
        Ok(ready) => ready,
        Err(next) => return Ok(next),
    };
    let mut first_start = Some(run.started_at.unwrap_or(now));
    loop {
        let body_started = now_ms();
        let hook = start_hook(engine, run_id);
        let reported = report_hook(engine, run_id, run.step_attempts.clone());
        let executed = run_body(&function, &event, &run, run_id, hook, reported).await;
        let registry = engine.registry();
        let env = PlanEnv {
            run_id,
            registry: &registry,
            max_attempts: function.max_attempts(),
            backoff: engine.config.backoff,
            body_started,
            now: now_ms(),
            first_start: first_start.take(),
        };
        let (progress, after) = plan_all(executed, &mut run, &env);
        match after {
            After::Continue => {
                if !commit(engine, progress).await?.applied {
                    return Ok(None);
                }
            }
            After::Stop(next) => {
                commit(engine, progress).await?;
                return Ok(next);
            }
            After::Send { hash, step_id } => {
                let applied = commit(engine, progress).await?;
                if !applied.applied {
                    return Ok(None);
                }
                run.memo.set(
                    &hash,
                    &step_id,
                    StepKind::SendEvent,
                    Memo::Completed(serde_json::to_value(&applied.sent_ids).unwrap_or_default()),
                );
            }
            After::Pending(next) => {
                // Only the last progress can be there (a run with reported steps continues).
                if progress.iter().any(|p| p.started_at.is_some()) {
                    commit(engine, progress).await?;
                }
                return Ok(next);
            }
        }
    }
}

/// Marks a `run` step as executing, without waiting for the write: if the process dies
/// before it commits, nothing claimed the step was running, and the step runs again on
/// resume as it always did. Once committed, a restart finds it and records the interruption.
fn start_hook(engine: &Arc<EngineInner>, run_id: &str) -> crate::step::StartHook {
    let store = engine.store.clone();
    let run_id = run_id.to_string();
    Arc::new(move |hash, step_id, input, at| {
        let (run_id, hash, step_id) = (run_id.clone(), hash.to_string(), step_id.to_string());
        let input = input.map(Value::to_string);
        store.write_detached(move |c| {
            progress::step_started(c, &run_id, &hash, &step_id, input.as_deref(), at)
        });
    })
}

/// The row of a `run` step that ended (completed until its result says otherwise).
fn ran_write(
    hash: &str,
    step_id: String,
    kind: StepKind,
    input: Option<&Value>,
    started_at: i64,
    ended_at: i64,
    attempts: u32,
) -> StepWrite {
    StepWrite {
        hash: hash.to_string(),
        step_id,
        kind,
        status: StepStatus::Completed,
        attempts,
        started_at: Some(started_at),
        ended_at: Some(ended_at),
        wake_at: None,
        input: input.map(Value::to_string),
        output: None,
        error: None,
    }
}

/// Writes each finished `run` step that a driver reports with its result as soon as it is
/// reported, without waiting for the write or for the execution's end: a JS SDK that
/// checkpoints runs all of a run's steps in one call request, and a crash of Stepdesk
/// during that request would otherwise run every one of them again. The execution's own
/// commit writes the same rows again (an upsert: the same values). A step that failed is
/// left to that commit, which decides its retry. `attempts` are the run's failed attempts
/// per step as this execution began.
fn report_hook(
    engine: &Arc<EngineInner>,
    run_id: &str,
    attempts: HashMap<String, u32>,
) -> crate::step::ReportHook {
    let store = engine.store.clone();
    let run_id = run_id.to_string();
    Arc::new(move |outcome| {
        let Outcome::Ran {
            hash,
            step_id,
            kind,
            input,
            result: Ok(value),
            started_at,
            ended_at,
        } = outcome
        else {
            return;
        };
        let tries = attempts.get(hash).copied().unwrap_or(0) + 1;
        let mut write = ran_write(
            hash,
            step_id.clone(),
            *kind,
            input.as_ref(),
            *started_at,
            *ended_at,
            tries,
        );
        write.output = Some(value.to_string());
        let run_id = run_id.clone();
        store.write_detached(move |c| progress::step_reported(c, &run_id, &write));
    })
}

fn suspended(
    hash: String,
    step_id: String,
    kind: StepKind,
    status: StepStatus,
    now: i64,
    wake: i64,
    input: Option<String>,
) -> StepWrite {
    StepWrite {
        hash,
        step_id,
        kind,
        status,
        attempts: 1,
        started_at: Some(now),
        ended_at: None,
        wake_at: Some(wake),
        input,
        output: None,
        error: None,
    }
}

/// Writes an execution's progress (one transaction) and hands the runs it woke to the
/// dispatcher. Nothing is written if the run is no longer running; `sent_ids` are the last
/// progress's.
async fn commit(
    engine: &Arc<EngineInner>,
    ps: Vec<Progress>,
) -> Result<progress::Applied, StoreError> {
    let inner = engine.clone();
    let applied = engine
        .store
        // The registry as of the commit (see `Engine::send_events_from`).
        .write(move |c| {
            let registry = inner.registry();
            let now = now_ms();
            let mut all = progress::Applied::default();
            for p in ps {
                let applied = progress::apply(c, &registry, p, now)?;
                if !applied.applied {
                    // Cancelled meanwhile: the first progress wrote nothing, nor will the rest.
                    return Ok(applied);
                }
                all.applied = true;
                all.wakes.extend(applied.wakes);
                all.sent_ids = applied.sent_ids;
            }
            Ok(all)
        })
        .await?;
    engine.dispatcher.wake_all(applied.wakes.iter().cloned());
    Ok(applied)
}

/// How often the dispatcher double-checks the database for due runs it was not told about.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A safety net: every few seconds, hands the dispatcher every run that has been due for a
/// while. Normally every commit that makes a run due wakes it directly; this covers a
/// caller that went away between the commit and the wake (a dropped HTTP request).
pub(crate) async fn sweep(
    engine: Arc<EngineInner>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let overdue = now_ms() - SWEEP_EVERY.as_millis() as i64;
        let due = engine
            .store
            .read(move |c| runs::due(c, Some(overdue)))
            .await;
        match due {
            Ok(due) => engine.dispatcher.wake_all(due),
            Err(e) => tracing::warn!(error = %e, "cannot look for overdue runs"),
        }
    }
}

/// Runs that should be executing or are due, as stored: loaded at start-up.
pub(crate) fn runnable_runs(conn: &rusqlite::Connection) -> StoreResult<Vec<Wake>> {
    runs::due(conn, None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::backoff::Backoff;
    use crate::Registry;

    fn run() -> LoadedRun {
        LoadedRun {
            function_id: "f".into(),
            status: RunStatus::Running,
            wake_at: Some(0),
            attempt: 0,
            started_at: None,
            event: json!({}),
            memo: Memos::default(),
            step_attempts: HashMap::new(),
            has_due: false,
            retry_not_due: false,
            pending_wake: None,
            input_override: None,
        }
    }

    fn env(registry: &Registry) -> PlanEnv<'_> {
        PlanEnv {
            run_id: "r",
            registry,
            max_attempts: 3,
            backoff: Backoff::Fixed(Duration::from_millis(100)),
            body_started: 900,
            now: 1_000,
            first_start: Some(900),
        }
    }

    fn ran(result: Result<Value, Error>) -> Option<Outcome> {
        Some(Outcome::Ran {
            hash: "h".into(),
            step_id: "s".into(),
            kind: StepKind::Run,
            input: Some(json!({"n": 1})),
            result,
            started_at: 950,
            ended_at: 990,
        })
    }

    #[test]
    fn a_step_that_succeeds_is_memoized_and_the_body_replays() {
        let registry = Registry::new(vec![]).unwrap();
        let mut r = run();
        let p = plan(
            ran(Ok(json!(7))),
            Err("unused".into()),
            &mut r,
            &env(&registry),
        );
        assert_eq!(p.after, After::Continue);
        let step = p.progress.step.unwrap();
        assert_eq!((step.status, step.attempts), (StepStatus::Completed, 1));
        assert_eq!(step.output.as_deref(), Some("7"));
        assert_eq!(step.input.as_deref(), Some(r#"{"n":1}"#));
        assert!(matches!(r.memo.get("h"), Some(Memo::Completed(v)) if *v == json!(7)));
        assert_eq!(p.progress.started_at, Some(900));
    }

    #[test]
    fn a_failing_step_retries_until_its_attempts_are_used_then_fails_for_good() {
        let registry = Registry::new(vec![]).unwrap();
        let mut r = run();
        let p = plan(
            ran(Err(Error::retriable("boom"))),
            Ok(Ok(json!(null))),
            &mut r,
            &env(&registry),
        );
        assert_eq!(p.after, After::Stop(Some(1_100)));
        let step = p.progress.step.unwrap();
        assert_eq!(
            (step.status, step.wake_at),
            (StepStatus::Retrying, Some(1_100))
        );
        assert_eq!(p.progress.attempt.unwrap().attempt, 0);
        assert_eq!(r.step_attempts["h"], 1);
        // The third failure is the last attempt.
        r.step_attempts.insert("h".into(), 2);
        let p = plan(
            ran(Err(Error::retriable("boom"))),
            Ok(Ok(json!(null))),
            &mut r,
            &env(&registry),
        );
        assert_eq!(p.after, After::Continue);
        assert_eq!(p.progress.step.unwrap().status, StepStatus::Failed);
        assert!(matches!(r.memo.get("h"), Some(Memo::Failed(b)) if b.message == "boom"));
        // A non-retriable error fails at once.
        let mut r = run();
        let p = plan(
            ran(Err(Error::non_retriable("no"))),
            Ok(Ok(json!(null))),
            &mut r,
            &env(&registry),
        );
        assert_eq!(p.after, After::Continue);
        assert_eq!(p.progress.step.unwrap().attempts, 1);
    }

    #[test]
    fn the_body_finishing_completes_or_fails_the_run() {
        let registry = Registry::new(vec![]).unwrap();
        let p = plan(None, Ok(Ok(json!("done"))), &mut run(), &env(&registry));
        assert_eq!(p.after, After::Stop(None));
        assert!(matches!(p.progress.finish, Some(Finish::Completed(v)) if v == json!("done")));
        // A panic is retried as a function-level attempt.
        let p = plan(None, Err("oops".into()), &mut run(), &env(&registry));
        assert_eq!(p.after, After::Stop(Some(1_100)));
        let a = p.progress.attempt.unwrap();
        assert_eq!(
            (a.hash.as_str(), a.started_at),
            (FUNCTION_ATTEMPT_HASH, 900)
        );
        assert!(
            a.error.contains("the function panicked: oops"),
            "{}",
            a.error
        );
        assert_eq!(p.progress.function_attempts, Some(1));
        // A swallowed interrupt is a bug in the function: it fails without retries.
        let p = plan(None, Ok(Err(Error::Interrupt)), &mut run(), &env(&registry));
        assert_eq!(p.after, After::Stop(None));
        assert!(
            matches!(p.progress.finish, Some(Finish::Failed(b)) if b.message.contains("swallowed"))
        );
    }

    #[test]
    fn suspensions_stop_until_their_time_and_a_missing_invoke_target_fails_the_step() {
        let registry = Registry::new(vec![]).unwrap();
        let mut r = run();
        let sleep = Some(Outcome::Sleep {
            hash: "z".into(),
            step_id: "nap".into(),
            until: 5_000,
        });
        let p = plan(sleep, Ok(Ok(json!(null))), &mut r, &env(&registry));
        assert_eq!(p.after, After::Stop(Some(5_000)));
        assert_eq!(p.progress.step.unwrap().status, StepStatus::Sleeping);
        let invoke = Some(Outcome::Invoke {
            hash: "i".into(),
            step_id: "call".into(),
            function_id: "nope".into(),
            data: Default::default(),
            expires_at: 9_000,
        });
        let p = plan(invoke, Ok(Ok(json!(null))), &mut r, &env(&registry));
        assert_eq!(p.after, After::Continue);
        assert!(p.progress.child.is_none());
        assert!(matches!(r.memo.get("i"), Some(Memo::Failed(b)) if b.name == "FunctionNotFound"));
        r.pending_wake = Some(7_000);
        let p = plan(
            Some(Outcome::Pending),
            Ok(Ok(json!(null))),
            &mut r,
            &env(&registry),
        );
        assert_eq!(p.after, After::Pending(Some(7_000)));
    }
}
