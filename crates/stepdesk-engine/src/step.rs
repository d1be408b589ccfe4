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
    pub step: Step,
}

impl Ctx {
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
    /// A `run` step that failed `attempts` times and will be tried again.
    Retrying,
    /// Sleeping, waiting or invoking, and not due yet.
    Pending,
}

/// What the body did that the executor must persist.
#[derive(Debug)]
pub(crate) enum Outcome {
    Ran {
        hash: String,
        step_id: String,
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
    pub(crate) memo: HashMap<String, Memo>,
    seen: HashMap<String, u32>,
    pub(crate) outcome: Option<Outcome>,
    trigger: Value,
    run_id: String,
    /// An edited input for one step (by hash), from "Rerun from step".
    input_override: Option<(String, Value)>,
    on_start: Option<StartHook>,
}

/// Told when a new `run` step's code starts executing (hash, step id, input, time), so
/// that the step shows as running and a restart under it is seen as what it is.
pub(crate) type StartHook = Arc<dyn Fn(&str, &str, Option<&Value>, i64) + Send + Sync>;

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
        Step::with_input_override(memo, trigger, run_id, None)
    }

    pub(crate) fn with_input_override(
        memo: HashMap<String, Memo>,
        trigger: Value,
        run_id: String,
        input_override: Option<(String, Value)>,
    ) -> Step {
        Step {
            replay: Arc::new(Mutex::new(Replay {
                memo,
                seen: HashMap::new(),
                outcome: None,
                trigger,
                run_id,
                input_override,
                on_start: None,
            })),
        }
    }

    pub(crate) fn on_start(self, hook: StartHook) -> Step {
        self.lock().on_start = Some(hook);
        self
    }

    pub(crate) fn take_outcome(&self) -> Option<Outcome> {
        self.lock().outcome.take()
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
            Some(Memo::Retrying) | None => {}
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
            Some(Memo::Retrying) | None => {}
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
}
