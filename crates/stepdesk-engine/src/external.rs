//! Executing a Rust function for a scheduler outside the engine: an Inngest server driving
//! Stepdesk's serve endpoint (`/api/inngest`), as it drives an app built with an Inngest SDK.
//!
//! The engine normally owns a run: it stores the memo, replays the body and persists each
//! step. Here the other side owns the run and sends its memo with every request; the body is
//! replayed once against that memo ([`Function::execute_once`]) and what it did is handed
//! back, to be answered as an SDK would (one new step, or the body's end). The replay is the
//! engine's own ([`Step`]), so a function behaves the same whichever side schedules it.
//!
//! The memo arrives in the SDK forms (protocol §7 point 3), read by the caller into
//! [`ExternalMemo`]: what a step holds depends on its kind, and the Rust step tools read
//! them exactly as the engine stores them (`run` and `invoke`: the value, or the error;
//! `sleep`: `null`; `wait_for_event`: the event, or `null` on timeout). Retries are the other
//! side's: it says which attempt this is (`attempt`, counted per step) and how many there
//! are, and a failed step is reported as retriable or not the way the JS SDK decides it
//! (the last attempt, or a non-retriable error, fails it for good).

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::error::{Error, ErrorBody};
use crate::event::Event;
use crate::function::Function;
use crate::model::StepKind;
use crate::step::{Ctx, HeldStep, Memo, Memos, Outcome, RunGate, Step, StepMeta};

/// One request to execute a function, with the run's state as the scheduler keeps it.
#[derive(Debug, Clone, Default)]
pub struct ExternalCall {
    /// The run's events (`events[0]` started the run; several for a batch).
    pub events: Vec<Value>,
    /// The memoized steps, by hashed step id, in the order they finished (`ctx.stack`).
    pub memo: Vec<(String, ExternalMemo)>,
    pub run_id: String,
    /// Zero-based attempt of this request; the scheduler counts it per step.
    pub attempt: u32,
    /// Attempts allowed (`ctx.max_attempts`); `None`: the function's own (retries + 1).
    pub max_attempts: Option<u32>,
    /// The step asked for (`stepId=<hash>`): only it may execute. `None`: discovery
    /// (`stepId=step`).
    pub target: Option<String>,
    /// Report a new step as planned instead of executing it
    /// (`ctx.disable_immediate_execution`).
    pub plan_only: bool,
}

/// A memoized step, as the scheduler sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalMemo {
    /// The step's value: a `run` or `invoke` result (`{"data": v}`), the matched event of a
    /// wait (or `null` on timeout), `null` for a sleep that ended, the ids of sent events.
    Completed(Value),
    /// The step failed for good (`{"error": e}`); the step tools rethrow it as
    /// [`Error::StepFailed`].
    Failed(ErrorBody),
    /// A rerun of the step with edited input (`{"input": [args]}`): the step executes again
    /// with these arguments (the first one, for a `run_with` step).
    Input(Value),
}

/// Whether and when a failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// With the scheduler's backoff.
    Yes,
    /// Not before this time (ms since the epoch).
    At(i64),
    /// Never: the failure is final.
    No,
}

/// What an execution did.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalOutcome {
    /// The body returned this value: the run is complete.
    Completed(Value),
    /// The body failed.
    Failed { error: ErrorBody, retry: Retry },
    /// The body reached a new step (exactly one per execution).
    Step(NewStep),
    /// A targeted request (`target`) did not reach that step: the body reached another new
    /// step first (`found`), or ended.
    StepNotFound {
        target: String,
        found: Option<NewStep>,
    },
}

/// The new step an execution reached.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    /// The SHA-1 of `step_id` (the hashed id Inngest keys memos by).
    pub hash: String,
    /// The step id, with `:N` for the N-th repeat of an id.
    pub step_id: String,
    pub kind: NewStepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NewStepKind {
    /// A `run` step executed: its value, or its error and whether it may be retried.
    Ran {
        /// The input of a `run_with` step.
        input: Option<Value>,
        result: Result<Value, (ErrorBody, Retry)>,
        started_at: i64,
        ended_at: i64,
    },
    /// A `run` (or `send_event`) step found but not executed (see [`ExternalCall::plan_only`]).
    Planned {
        input: Option<Value>,
        /// `true` for a `send_event` step.
        send: bool,
    },
    /// Sleep until this time (ms since the epoch).
    Sleep { until: i64 },
    /// Wait for an event named `event` (received after now) for which `if_expr` holds
    /// (`async` the incoming event, `event` the run's), until `expires_at`.
    Wait {
        event: String,
        if_expr: Option<String>,
        expires_at: i64,
    },
    /// Run the function `function_id` (its id as registered here) with `data`, waiting for
    /// its result until `expires_at`.
    Invoke {
        function_id: String,
        data: Map<String, Value>,
        expires_at: i64,
    },
    /// Send these events (`{name, data, user, id, ts, v?}`, ids set deterministically); the
    /// step's value is then their ids.
    Send { events: Vec<Value> },
}

/// A request that cannot be executed at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExternalError {
    #[error("the run has no event")]
    NoEvent,
    #[error("the run's event is not an event: {0}")]
    BadEvent(String),
}

/// Reads the run's event leniently: the scheduler fills `user`, `id` and `ts`, but a missing
/// one is no reason to refuse the run.
fn event_of(v: &Value) -> Result<Event, ExternalError> {
    let o = v
        .as_object()
        .ok_or_else(|| ExternalError::BadEvent(format!("expected an object, got {v}")))?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ExternalError::BadEvent("it has no `name`".into()))?;
    let object = |key: &str| match o.get(key) {
        Some(Value::Object(m)) => Ok(m.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(other) => Err(ExternalError::BadEvent(format!(
            "`{key}` must be an object, got {other}"
        ))),
    };
    Ok(Event {
        name: name.to_string(),
        data: object("data")?,
        user: object("user")?,
        id: o
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ts: o.get("ts").and_then(Value::as_i64).unwrap_or_default(),
        v: o.get("v").and_then(Value::as_str).map(str::to_string),
    })
}

/// How a failure of this attempt is retried, as the JS SDK decides: never after the last
/// attempt or for a non-retriable error, else as the error asks.
fn retry_of(err: &Error, last_attempt: bool) -> (ErrorBody, Retry) {
    match err {
        Error::NonRetriable(b) | Error::StepFailed(b) => (b.clone(), Retry::No),
        Error::Retriable(b) if !last_attempt => (b.clone(), Retry::Yes),
        Error::RetryAfter(b, at) if !last_attempt => (b.clone(), Retry::At(*at)),
        Error::Retriable(b) | Error::RetryAfter(b, _) => (b.clone(), Retry::No),
        Error::Interrupt => (
            ErrorBody::new("Error", "an interrupt was returned as an error"),
            Retry::No,
        ),
    }
}

/// The edited input of a rerun: JS sends the step's arguments as an array; a Rust step has
/// one.
fn edited_input(args: Value) -> Value {
    match args {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    }
}

/// Inngest's `match` as the `if` it is sugar for (`event.data.x == async.data.x`), joined to
/// the step's own `if`.
fn wait_expression(match_field: Option<&str>, if_expr: Option<String>) -> Option<String> {
    let matched = match_field.map(|f| {
        let f = f.strip_prefix("event.").unwrap_or(f);
        format!("event.{f} == async.{f}")
    });
    match (matched, if_expr) {
        (Some(m), Some(i)) => Some(format!("({m}) && ({i})")),
        (m, i) => m.or(i),
    }
}

impl Function {
    /// Executes this function's body once against a memo kept outside the engine (see the
    /// module comment): at most one new step executes. Nothing is stored.
    pub async fn execute_once(&self, call: ExternalCall) -> Result<ExternalOutcome, ExternalError> {
        let trigger = call.events.first().cloned().ok_or(ExternalError::NoEvent)?;
        let event = event_of(&trigger)?;
        let mut memos = Memos::default();
        let mut input_override = None;
        for (hash, memo) in call.memo {
            let memo = match memo {
                ExternalMemo::Completed(v) => Memo::Completed(v),
                ExternalMemo::Failed(e) => Memo::Failed(e),
                ExternalMemo::Input(args) => {
                    input_override = Some((hash, edited_input(args)));
                    continue;
                }
            };
            // The kind and id are only known to the steps themselves: drivers read them
            // (`Step::memo`), Rust bodies do not.
            let meta = StepMeta {
                hash: hash.clone(),
                step_id: hash,
                kind: StepKind::Run,
            };
            memos.push_loaded(meta, memo);
        }
        let mut step =
            Step::with_input_override(memos, trigger, call.run_id.clone(), input_override);
        if let Some(target) = &call.target {
            step = step.gated(RunGate::Only(target.clone()));
        } else if call.plan_only {
            step = step.gated(RunGate::Nothing);
        }
        let max_attempts = call.max_attempts.unwrap_or(self.max_attempts()).max(1);
        let last_attempt = call.attempt + 1 >= max_attempts;
        let ctx = Ctx {
            event,
            run_id: call.run_id.clone(),
            function_id: self.id.clone(),
            attempt: call.attempt,
            max_attempts,
            step: step.clone(),
        };
        let handler = self.handler.clone();
        let span = tracing::info_span!("external", run_id = %call.run_id, function = %self.id);
        let body = AssertUnwindSafe(async move { handler(ctx).await }.instrument(span))
            .catch_unwind()
            .await;
        let held = step.take_held();
        let outcome = step.take_outcome();
        let found = match (held, outcome) {
            (
                Some(HeldStep {
                    hash,
                    step_id,
                    input,
                }),
                _,
            ) => Some(NewStep {
                hash,
                step_id,
                kind: NewStepKind::Planned { input, send: false },
            }),
            (None, Some(o)) => new_step(o, last_attempt),
            (None, None) => None,
        };
        if let Some(found) = found {
            // A step the body reached wins over what the body then returned (it can only
            // have returned the interrupt, or swallowed it).
            return Ok(match &call.target {
                Some(target) if *target != found.hash => ExternalOutcome::StepNotFound {
                    target: target.clone(),
                    found: Some(found),
                },
                // A planned send step executes when it is asked for.
                None if call.plan_only => match found.kind {
                    NewStepKind::Send { .. } => ExternalOutcome::Step(NewStep {
                        kind: NewStepKind::Planned {
                            input: None,
                            send: true,
                        },
                        ..found
                    }),
                    _ => ExternalOutcome::Step(found),
                },
                _ => ExternalOutcome::Step(found),
            });
        }
        if let Some(target) = call.target {
            return Ok(ExternalOutcome::StepNotFound {
                target,
                found: None,
            });
        }
        Ok(match body {
            Ok(Ok(value)) => ExternalOutcome::Completed(value),
            Ok(Err(Error::Interrupt)) => {
                tracing::warn!("the body returned an interrupt without reaching a step");
                ExternalOutcome::Failed {
                    error: ErrorBody::new(
                        "Error",
                        "the function returned an interrupt without reaching a new step",
                    ),
                    retry: if last_attempt { Retry::No } else { Retry::Yes },
                }
            }
            Ok(Err(e)) => {
                let (error, retry) = retry_of(&e, last_attempt);
                ExternalOutcome::Failed { error, retry }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(%message, "the function panicked");
                ExternalOutcome::Failed {
                    error: ErrorBody::new("Panic", format!("the function panicked: {message}")),
                    retry: if last_attempt { Retry::No } else { Retry::Yes },
                }
            }
        })
    }
}

/// The new step an engine outcome describes (`None` for a step still pending, which an
/// external memo never has).
fn new_step(outcome: Outcome, last_attempt: bool) -> Option<NewStep> {
    let (hash, step_id, kind) = match outcome {
        Outcome::Ran {
            hash,
            step_id,
            input,
            result,
            started_at,
            ended_at,
            ..
        } => (
            hash,
            step_id,
            NewStepKind::Ran {
                input,
                result: result.map_err(|e| retry_of(&e, last_attempt)),
                started_at,
                ended_at,
            },
        ),
        Outcome::Sleep {
            hash,
            step_id,
            until,
        } => (hash, step_id, NewStepKind::Sleep { until }),
        Outcome::Wait {
            hash,
            step_id,
            event,
            match_field,
            if_expr,
            expires_at,
            ..
        } => (
            hash,
            step_id,
            NewStepKind::Wait {
                event,
                if_expr: wait_expression(match_field.as_deref(), if_expr),
                expires_at,
            },
        ),
        Outcome::Invoke {
            hash,
            step_id,
            function_id,
            data,
            expires_at,
        } => (
            hash,
            step_id,
            NewStepKind::Invoke {
                function_id,
                data,
                expires_at,
            },
        ),
        Outcome::Send {
            hash,
            step_id,
            events,
        } => {
            let events = events
                .into_iter()
                .map(|e| {
                    let mut v = serde_json::json!({
                        "name": e.name,
                        "data": e.data,
                        "user": e.user,
                        "ts": e.ts,
                    });
                    if let Some(id) = e.id {
                        v["id"] = Value::String(id);
                    }
                    if let Some(version) = e.v {
                        v["v"] = Value::String(version);
                    }
                    v
                })
                .collect();
            (hash, step_id, NewStepKind::Send { events })
        }
        Outcome::Pending => return None,
    };
    Some(NewStep {
        hash,
        step_id,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::step::{hash_step_id, Invoke, WaitForEvent};
    use crate::time::now_ms;

    fn event() -> Value {
        json!({"name": "demo/hello", "data": {"name": "world", "userId": "u1"}, "user": {},
               "id": "01JEVT", "ts": 1767225600000_i64, "v": null})
    }

    fn call(memo: Vec<(&str, ExternalMemo)>) -> ExternalCall {
        ExternalCall {
            events: vec![event()],
            memo: memo
                .into_iter()
                .map(|(id, m)| (hash_step_id(id), m))
                .collect(),
            run_id: "01JRUN".into(),
            attempt: 0,
            max_attempts: Some(3),
            target: None,
            plan_only: false,
        }
    }

    /// Two `run` steps, counting how often each closure runs.
    fn hello(runs: Arc<AtomicU32>) -> Function {
        Function::builder("hello")
            .on_event("demo/hello")
            .handler(move |ctx| {
                let runs = runs.clone();
                async move {
                    let name: String = ctx.data::<Value>()?["name"].as_str().unwrap().into();
                    let a: Value = ctx
                        .step
                        .run("first-step", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok(json!({"greeting": format!("hello {name}")}))
                        })
                        .await?;
                    let b: Value = ctx
                        .step
                        .run_with("second-step", json!({"n": 2}), |input| async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok(json!({"n": input["n"], "upper": "HELLO WORLD"}))
                        })
                        .await?;
                    Ok(json!({"a": a, "b": b}))
                }
            })
            .unwrap()
    }

    fn ran(
        outcome: ExternalOutcome,
    ) -> (NewStep, Option<Value>, Result<Value, (ErrorBody, Retry)>) {
        match outcome {
            ExternalOutcome::Step(
                s @ NewStep {
                    kind: NewStepKind::Ran { .. },
                    ..
                },
            ) => {
                let NewStepKind::Ran { input, result, .. } = s.kind.clone() else {
                    unreachable!()
                };
                (s, input, result)
            }
            other => panic!("expected a step that ran, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_call_runs_one_new_step_until_the_body_completes() {
        let runs = Arc::new(AtomicU32::new(0));
        let f = hello(runs.clone());
        let (s, input, result) = ran(f.execute_once(call(vec![])).await.unwrap());
        assert_eq!(s.step_id, "first-step");
        assert_eq!(s.hash, "efec2b2037910199abcc3c58998255afa3066709");
        assert_eq!(input, None);
        assert_eq!(result, Ok(json!({"greeting": "hello world"})));
        let first = ExternalMemo::Completed(json!({"greeting": "hello world"}));
        let (s, input, result) = ran(f
            .execute_once(call(vec![("first-step", first.clone())]))
            .await
            .unwrap());
        assert_eq!(s.hash, "b84c4a1656207bc4c25076438eb7ab7d696322c7");
        assert_eq!(input, Some(json!({"n": 2})));
        assert_eq!(result, Ok(json!({"n": 2, "upper": "HELLO WORLD"})));
        let second = ExternalMemo::Completed(json!({"n": 2, "upper": "HELLO WORLD"}));
        let done = f
            .execute_once(call(vec![("first-step", first), ("second-step", second)]))
            .await
            .unwrap();
        assert_eq!(
            done,
            ExternalOutcome::Completed(json!({
                "a": {"greeting": "hello world"},
                "b": {"n": 2, "upper": "HELLO WORLD"}
            }))
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "memoized steps never run again"
        );
    }

    #[tokio::test]
    async fn a_targeted_call_runs_only_its_step() {
        let runs = Arc::new(AtomicU32::new(0));
        let f = hello(runs.clone());
        let mut c = call(vec![]);
        c.target = Some(hash_step_id("first-step"));
        let (s, _, result) = ran(f.execute_once(c).await.unwrap());
        assert_eq!(s.step_id, "first-step");
        assert!(result.is_ok());
        // Another step is asked for: the first one is found but not run.
        let mut c = call(vec![]);
        c.target = Some(hash_step_id("nope"));
        match f.execute_once(c).await.unwrap() {
            ExternalOutcome::StepNotFound { target, found } => {
                assert_eq!(target, hash_step_id("nope"));
                let found = found.unwrap();
                assert_eq!(found.step_id, "first-step");
                assert!(matches!(
                    found.kind,
                    NewStepKind::Planned { send: false, .. }
                ));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The body ends without reaching it.
        let mut c = call(vec![
            ("first-step", ExternalMemo::Completed(json!({}))),
            ("second-step", ExternalMemo::Completed(json!({}))),
        ]);
        c.target = Some(hash_step_id("nope"));
        assert!(matches!(
            f.execute_once(c).await.unwrap(),
            ExternalOutcome::StepNotFound { found: None, .. }
        ));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn plan_only_reports_the_new_step_without_running_it() {
        let runs = Arc::new(AtomicU32::new(0));
        let f = hello(runs.clone());
        let mut c = call(vec![("first-step", ExternalMemo::Completed(json!({})))]);
        c.plan_only = true;
        match f.execute_once(c).await.unwrap() {
            ExternalOutcome::Step(NewStep {
                step_id,
                kind: NewStepKind::Planned { input, send },
                ..
            }) => {
                assert_eq!(step_id, "second-step");
                assert_eq!(input, Some(json!({"n": 2})));
                assert!(!send);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_edited_input_replaces_the_steps_own() {
        let f = hello(Arc::new(AtomicU32::new(0)));
        let c = call(vec![
            ("first-step", ExternalMemo::Completed(json!({}))),
            ("second-step", ExternalMemo::Input(json!([{"n": 7}]))),
        ]);
        let (_, input, result) = ran(f.execute_once(c).await.unwrap());
        assert_eq!(input, Some(json!({"n": 7})));
        assert_eq!(result.unwrap()["n"], 7);
    }

    fn flaky() -> Function {
        Function::builder("flaky")
            .on_event("demo/hello")
            .retries(2)
            .handler(|ctx| async move {
                let kind = ctx
                    .event
                    .data
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("retriable")
                    .to_string();
                let attempt = ctx.attempt;
                let v: Value = ctx
                    .step
                    .run("flaky-step", || async move {
                        match kind.as_str() {
                            "ok" => Ok(json!({"attempt": attempt})),
                            "fatal" => Err(Error::non_retriable("fatal")),
                            "later" => Err(Error::RetryAfter(ErrorBody::new("E", "later"), 42)),
                            _ => Err(Error::retriable(format!("boom on attempt {attempt}"))),
                        }
                    })
                    .await?;
                Ok(v)
            })
            .unwrap()
    }

    async fn flaky_step(kind: &str, attempt: u32, max: Option<u32>) -> (ErrorBody, Retry) {
        let mut c = call(vec![]);
        c.events = vec![json!({"name": "demo/hello", "data": {"kind": kind}})];
        c.attempt = attempt;
        c.max_attempts = max;
        ran(flaky().execute_once(c).await.unwrap()).2.unwrap_err()
    }

    #[tokio::test]
    async fn a_failed_step_is_retried_until_its_last_attempt() {
        let (e, retry) = flaky_step("retriable", 0, Some(3)).await;
        assert_eq!(
            (e.message.as_str(), retry),
            ("boom on attempt 0", Retry::Yes)
        );
        assert_eq!(flaky_step("retriable", 2, Some(3)).await.1, Retry::No);
        assert_eq!(flaky_step("retriable", 0, Some(1)).await.1, Retry::No);
        // Without max_attempts, the function's own (retries 2: three attempts).
        assert_eq!(flaky_step("retriable", 1, None).await.1, Retry::Yes);
        assert_eq!(flaky_step("retriable", 2, None).await.1, Retry::No);
        assert_eq!(flaky_step("fatal", 0, Some(3)).await.1, Retry::No);
        assert_eq!(flaky_step("later", 0, Some(3)).await.1, Retry::At(42));
        assert_eq!(flaky_step("later", 2, Some(3)).await.1, Retry::No);
    }

    #[tokio::test]
    async fn a_step_failed_for_good_fails_the_body_for_good() {
        let mut c = call(vec![(
            "flaky-step",
            ExternalMemo::Failed(ErrorBody::new("Error", "boom on attempt 0")),
        )]);
        c.events = vec![json!({"name": "demo/hello", "data": {}})];
        match flaky().execute_once(c).await.unwrap() {
            ExternalOutcome::Failed { error, retry } => {
                assert_eq!(error.message, "boom on attempt 0");
                assert_eq!(retry, Retry::No);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn body_fails(panics: bool) -> Function {
        Function::builder("body")
            .on_event("demo/hello")
            .handler(move |ctx| async move {
                if panics {
                    panic!("oops");
                }
                Err::<Value, _>(Error::retriable(format!("body boom {}", ctx.attempt)))
            })
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_error_is_retriable_until_the_last_attempt_and_a_panic_is_an_error() {
        let f = body_fails(false);
        let mut c = call(vec![]);
        assert_eq!(
            f.execute_once(c.clone()).await.unwrap(),
            ExternalOutcome::Failed {
                error: ErrorBody::new("Error", "body boom 0"),
                retry: Retry::Yes
            }
        );
        c.attempt = 2;
        assert!(matches!(
            f.execute_once(c.clone()).await.unwrap(),
            ExternalOutcome::Failed {
                retry: Retry::No,
                ..
            }
        ));
        c.attempt = 0;
        match body_fails(true).execute_once(c).await.unwrap() {
            ExternalOutcome::Failed { error, retry } => {
                assert!(error.message.contains("oops"), "{}", error.message);
                assert_eq!(retry, Retry::Yes);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Sleep, wait, invoke and send, each reported in turn, then the memo kinds read back.
    fn suspender() -> Function {
        Function::builder("suspender")
            .on_event("demo/hello")
            .handler(|ctx| async move {
                ctx.step.sleep("nap", Duration::from_secs(60)).await?;
                let approved = ctx
                    .step
                    .wait_for_event(
                        "wait-approval",
                        WaitForEvent::new("demo/approved", Duration::from_secs(3600))
                            .matching("data.userId")
                            .when("async.data.ok == true"),
                    )
                    .await?;
                let child: Value = ctx
                    .step
                    .invoke(
                        "call-child",
                        Invoke {
                            function_id: "child".into(),
                            data: json!({"x": 1}).as_object().unwrap().clone(),
                            timeout: Duration::from_secs(600),
                        },
                    )
                    .await?;
                let ids = ctx
                    .step
                    .send_event(
                        "fan-out",
                        vec![json!({"name": "demo/next", "data": {"i": 1}})],
                    )
                    .await?;
                Ok(json!({"approved": approved.map(|e| e.data), "child": child, "ids": ids}))
            })
            .unwrap()
    }

    async fn next(memo: Vec<(&str, ExternalMemo)>) -> NewStep {
        match suspender().execute_once(call(memo)).await.unwrap() {
            ExternalOutcome::Step(s) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn suspending_steps_are_reported_and_their_memos_read_back_by_kind() {
        let before = now_ms();
        let s = next(vec![]).await;
        assert_eq!(s.hash, hash_step_id("nap"));
        match s.kind {
            NewStepKind::Sleep { until } => {
                assert!((before + 60_000..=now_ms() + 60_000).contains(&until))
            }
            other => panic!("unexpected {other:?}"),
        }
        let slept = ("nap", ExternalMemo::Completed(Value::Null));
        match next(vec![slept.clone()]).await.kind {
            NewStepKind::Wait {
                event,
                if_expr,
                expires_at,
            } => {
                assert_eq!(event, "demo/approved");
                assert_eq!(
                    if_expr.as_deref(),
                    Some("(event.data.userId == async.data.userId) && (async.data.ok == true)")
                );
                assert!(expires_at > before + 3_599_000);
            }
            other => panic!("unexpected {other:?}"),
        }
        let approved = json!({"name": "demo/approved", "data": {"userId": "u1", "ok": true},
                              "user": {}, "id": "01JEVB", "ts": 1, "v": null});
        let waited = ("wait-approval", ExternalMemo::Completed(approved));
        match next(vec![slept.clone(), waited.clone()]).await.kind {
            NewStepKind::Invoke {
                function_id, data, ..
            } => {
                assert_eq!(function_id, "child");
                assert_eq!(Value::Object(data), json!({"x": 1}));
            }
            other => panic!("unexpected {other:?}"),
        }
        let invoked = (
            "call-child",
            ExternalMemo::Completed(json!({"child": "out"})),
        );
        let s = next(vec![slept.clone(), waited.clone(), invoked.clone()]).await;
        match &s.kind {
            NewStepKind::Send { events } => {
                assert_eq!(events.len(), 1);
                assert_eq!(events[0]["name"], "demo/next");
                // The same id on every replay: a resend starts no second run.
                assert_eq!(events[0]["id"], format!("01JRUN-{}-0", s.hash));
            }
            other => panic!("unexpected {other:?}"),
        }
        let sent = ("fan-out", ExternalMemo::Completed(json!(["id-1"])));
        let done = suspender()
            .execute_once(call(vec![
                slept.clone(),
                waited,
                invoked.clone(),
                sent.clone(),
            ]))
            .await
            .unwrap();
        assert_eq!(
            done,
            ExternalOutcome::Completed(json!({
                "approved": {"userId": "u1", "ok": true},
                "child": {"child": "out"},
                "ids": ["id-1"]
            }))
        );
        // A wait that timed out reads as None.
        let timed_out = ("wait-approval", ExternalMemo::Completed(Value::Null));
        let done = suspender()
            .execute_once(call(vec![slept, timed_out, invoked, sent]))
            .await
            .unwrap();
        assert!(
            matches!(done, ExternalOutcome::Completed(ref v) if v["approved"].is_null()),
            "{done:?}"
        );
    }

    #[tokio::test]
    async fn a_planned_send_is_executed_when_targeted() {
        let memo = vec![
            ("nap", ExternalMemo::Completed(Value::Null)),
            ("wait-approval", ExternalMemo::Completed(Value::Null)),
            ("call-child", ExternalMemo::Completed(json!(1))),
        ];
        let mut c = call(memo.clone());
        c.plan_only = true;
        assert!(matches!(
            suspender().execute_once(c).await.unwrap(),
            ExternalOutcome::Step(NewStep {
                kind: NewStepKind::Planned { send: true, .. },
                ..
            })
        ));
        let mut c = call(memo);
        c.target = Some(hash_step_id("fan-out"));
        assert!(matches!(
            suspender().execute_once(c).await.unwrap(),
            ExternalOutcome::Step(NewStep {
                kind: NewStepKind::Send { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_failed_invoke_is_a_step_failure_the_body_sees() {
        let memo = vec![
            ("nap", ExternalMemo::Completed(Value::Null)),
            ("wait-approval", ExternalMemo::Completed(Value::Null)),
            (
                "call-child",
                ExternalMemo::Failed(ErrorBody::new("InngestInvokeTimeoutError", "timed out")),
            ),
        ];
        match suspender().execute_once(call(memo)).await.unwrap() {
            ExternalOutcome::Failed { error, retry } => {
                assert_eq!(error.name, "InngestInvokeTimeoutError");
                assert_eq!(retry, Retry::No);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_without_a_usable_event_is_refused() {
        let f = hello(Arc::new(AtomicU32::new(0)));
        let mut c = call(vec![]);
        c.events = vec![];
        assert_eq!(f.execute_once(c.clone()).await, Err(ExternalError::NoEvent));
        c.events = vec![json!({"data": {}})];
        assert!(matches!(
            f.execute_once(c.clone()).await,
            Err(ExternalError::BadEvent(m)) if m.contains("name")
        ));
        c.events = vec![json!({"name": "x", "data": [1]})];
        assert!(matches!(
            f.execute_once(c).await,
            Err(ExternalError::BadEvent(m)) if m.contains("data")
        ));
    }
}
