//! The HTTP driver: runs one SDK function's execution as one call request.
//!
//! An SDK function is an ordinary engine [`Function`](stepdesk_engine::Function) whose handler
//! does not run steps itself: each execution of its body is one `POST` to the app's serve
//! URL, carrying the run's event and every step recorded so far (the memo), and the app's
//! answer is reported to the engine as the step outcome a Rust body would have produced.
//! The engine keeps everything else (durability, retries and their backoff, sleeps, waits,
//! invokes, cancellation, the run's end), so an SDK run is stored and shown like a Rust one.
//!
//! Parallel steps (`Promise.all`, `group.parallel`): the SDK answers `StepPlanned` for each;
//! the driver runs the first planned step not yet recorded with a targeted request
//! (`stepId=<hash>`) and reports it; the next execution's discovery request finds the others
//! (the SDK plans the remaining ones again, or runs the only one left at once). Steps of a
//! parallel group therefore execute one after another, each at least once, with their results
//! in completion order: the SDK cannot tell the difference, only the wall time can.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use stepdesk_engine::step::{RecordedStep, StepState};
use stepdesk_engine::{Ctx, Error, ErrorBody, StepKind};
use stepdesk_inngest::response::{parse_call_response, CallOutcome};
use stepdesk_inngest::wire::{CallCtx, CallRequest, CallStack, Op, Opcode};
use stepdesk_inngest::{duration, sign};

use crate::time::now_ms;

/// Longest an app may take to answer one call request (Inngest allows 2 h per request; a
/// local app that has not answered in 15 minutes is treated as a failed attempt).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Everything the handler of one SDK function needs; shared by all its executions.
pub(crate) struct FunctionDriver {
    pub http: reqwest::Client,
    /// The function's composite id (`<appId>-<fnId>`), sent as `fnId`.
    pub function_id: String,
    /// The step URL the app registered (its serve URL with `fnId` and `stepId`).
    pub url: String,
    /// Signs call requests when set (cloud mode).
    pub signing_key: Option<Arc<str>>,
    /// The request version the SDK last reported (`X-Inngest-Req-Version`); -1 until then.
    pub version: AtomicI64,
}

/// How each kind of recorded step is given back to the SDK (inngest-protocol.md §7 point 3):
/// `run` and `invoke` results as `{"data": x}` or `{"error": e}`, a finished sleep as null,
/// a wait as the event it received (or null after its timeout). Steps not finished are not
/// sent: the SDK sees them as new, and the engine decides whether they run.
pub(crate) fn memo_value(step: &RecordedStep) -> Option<Value> {
    match (&step.state, step.kind) {
        (StepState::Completed(_), StepKind::Sleep) => Some(Value::Null),
        (StepState::Completed(v), StepKind::WaitForEvent) => Some(v.clone()),
        (StepState::Completed(v), _) => Some(json!({ "data": v })),
        (StepState::Failed(e), _) => Some(json!({ "error": e })),
        _ => None,
    }
}

/// The call request for one execution: discovery (`step_id` "step") or one planned step.
pub(crate) fn call_request(ctx: &Ctx, step_id: &str, version: i64) -> CallRequest {
    let mut steps = Map::new();
    let mut stack = Vec::new();
    for s in &ctx.step.memo() {
        if let Some(v) = memo_value(s) {
            steps.insert(s.hash.clone(), v);
            stack.push(s.hash.clone());
        }
    }
    // "Rerun from step" with an edited input: the SDK runs that step with it (the memo form
    // Inngest's UI uses for the same thing).
    if let Some((hash, input)) = ctx.step.edited_input() {
        if !steps.contains_key(&hash) {
            steps.insert(hash, json!({ "input": input }));
        }
    }
    // `ctx.attempt` is per queue item: the attempt of the step being retried when there is
    // one (the SDK reaches it first, as nothing after it is recorded), else the body's.
    let attempt = ctx.step.retrying_attempt().unwrap_or(ctx.attempt);
    let event = serde_json::to_value(&ctx.event).unwrap_or(Value::Null);
    CallRequest {
        events: vec![event.clone()],
        event,
        steps,
        ctx: CallCtx {
            // Without `fn_id`, JS v4 does not try to checkpoint (inngest-protocol.md §1.13):
            // it answers one step per request, which this driver handles.
            fn_id: None,
            run_id: ctx.run_id.clone(),
            env: String::new(),
            step_id: step_id.to_string(),
            attempt,
            max_attempts: Some(ctx.max_attempts),
            stack: CallStack::of(stack),
            qi_id: None,
            disable_immediate_execution: step_id != "step",
            use_api: false,
        },
        version,
        use_api: false,
    }
}

impl FunctionDriver {
    /// One execution of the function's body: a discovery request, and when the app plans
    /// steps instead of running one, a targeted request for the first of them.
    pub(crate) async fn execute(&self, ctx: Ctx) -> Result<Value, Error> {
        let outcome = self.call(&ctx, "step").await?;
        let (ops, retry_at) = match outcome {
            Answer::Complete(v) => return Ok(v),
            Answer::Ops(ops, retry_at) => (ops, retry_at),
        };
        let Some(op) = ops.into_iter().next() else {
            // `[]`: the SDK found nothing to do. Nothing was recorded; try again later.
            return Err(Error::retriable(
                "the app answered with no step and no result (206 [])",
            ));
        };
        if op.op == Opcode::StepPlanned {
            if self.recorded(&ctx, &op.id) {
                return Err(Error::retriable(format!(
                    "the app planned step `{}` again although it is recorded",
                    display(&op)
                )));
            }
            return match self.call(&ctx, &op.id).await? {
                Answer::Complete(v) => Ok(v),
                Answer::Ops(ops, retry_at) => match ops.into_iter().find(|o| o.id == op.id) {
                    Some(done) if done.op != Opcode::StepPlanned => {
                        self.report(&ctx, done, retry_at)
                    }
                    _ => Err(Error::retriable(format!(
                        "the app did not run planned step `{}` when asked for it",
                        display(&op)
                    ))),
                },
            };
        }
        self.report(&ctx, op, retry_at)
    }

    fn recorded(&self, ctx: &Ctx, hash: &str) -> bool {
        ctx.step
            .memo()
            .iter()
            .any(|s| s.hash == hash && memo_value(s).is_some())
    }

    /// Reports one op to the engine. Returns what the body returns after it.
    fn report(&self, ctx: &Ctx, op: Op, retry_at: Option<i64>) -> Result<Value, Error> {
        let now = now_ms();
        let name = display(&op);
        match op.op {
            Opcode::StepRun | Opcode::Step => {
                let (started, ended) = timing_ms(&op).unwrap_or((now, now));
                Err(ctx.step.record_run(
                    &op.id,
                    &name,
                    input(&op),
                    Ok(op.data.clone().unwrap_or(Value::Null)),
                    started,
                    ended,
                ))
            }
            Opcode::StepError | Opcode::StepFailed => {
                let (started, ended) = timing_ms(&op).unwrap_or((now, now));
                let body = error_body(op.error.as_ref());
                let err = match (op.op == Opcode::StepFailed, retry_at) {
                    (true, _) => Error::NonRetriable(body),
                    (false, Some(at)) => Error::RetryAfter(body, at),
                    (false, None) => Error::Retriable(body),
                };
                Err(ctx
                    .step
                    .record_run(&op.id, &name, input(&op), Err(err), started, ended))
            }
            Opcode::Sleep => {
                let until = duration::sleep_until(&op, now)
                    .map_err(|e| Error::non_retriable(format!("sleep `{name}`: {e}")))?;
                Err(ctx.step.record_sleep(&op.id, &name, until))
            }
            Opcode::WaitForEvent => {
                let wait = op
                    .wait_for_event()
                    .ok_or_else(|| Error::non_retriable(format!("wait `{name}`: no event name")))?;
                let expires = deadline(wait.timeout.as_deref(), now, now)
                    .map_err(|e| Error::non_retriable(format!("wait `{name}`: {e}")))?;
                Err(ctx
                    .step
                    .record_wait(&op.id, &name, &wait.event, wait.if_expr, expires))
            }
            Opcode::InvokeFunction => {
                let invoke = op.invoke().ok_or_else(|| {
                    Error::non_retriable(format!("invoke `{name}`: no function_id"))
                })?;
                let data = invoke
                    .payload
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                // No timeout: as long as a suspension may last.
                let longest = now + stepdesk_engine::step::MAX_SUSPEND.as_millis() as i64;
                let expires = deadline(invoke.timeout.as_deref(), now, longest)
                    .map_err(|e| Error::non_retriable(format!("invoke `{name}`: {e}")))?;
                Err(ctx
                    .step
                    .record_invoke(&op.id, &name, &invoke.function_id, data, expires))
            }
            Opcode::RunComplete => Ok(op.data.unwrap_or(Value::Null)),
            Opcode::StepPlanned => Err(Error::retriable("a planned step was not run")),
            other => Err(Error::non_retriable(format!(
                "the app asked for `{other:?}`, which Stepdesk does not support yet"
            ))),
        }
    }

    /// Sends one call request and reads the answer.
    async fn call(&self, ctx: &Ctx, step_id: &str) -> Result<Answer, Error> {
        let version = self.version.load(Ordering::Relaxed);
        let request = call_request(ctx, step_id, version);
        let body = request.to_body();
        let url = step_url(&self.url, &self.function_id, step_id);
        let mut req = self
            .http
            .post(&url)
            .timeout(CALL_TIMEOUT)
            .header("content-type", "application/json")
            .header("x-run-id", &ctx.run_id)
            .header("x-inngest-step-id", step_id)
            .header("x-inngest-req-version", version.to_string());
        if let Some(key) = &self.signing_key {
            let t = now_ms() / 1000;
            req = req.header("x-inngest-signature", sign::signature_header(&body, key, t));
        }
        let started = now_ms();
        let res = req.body(body).send().await.map_err(|e| {
            Error::retriable(format!(
                "cannot reach the app at {}: {}",
                self.url,
                crate::root_cause(&e)
            ))
        })?;
        let status = res.status().as_u16();
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let bytes = res.bytes().await.map_err(|e| {
            Error::retriable(format!(
                "the app's answer was cut short: {}",
                crate::root_cause(&e)
            ))
        })?;
        tracing::debug!(function = %self.function_id, step = step_id, status, took_ms = now_ms() - started, "call request");
        let parsed = parse_call_response(status, &headers, &bytes, now_ms());
        if let Some(v) = parsed.req_version {
            self.version.store(v, Ordering::Relaxed);
        }
        match parsed.outcome {
            CallOutcome::Complete(v) => Ok(Answer::Complete(v)),
            CallOutcome::Ops(ops) => Ok(Answer::Ops(ops, parsed.retry_at)),
            CallOutcome::Error {
                error,
                retriable,
                retry_at,
            } => {
                let body = error_body(Some(&error));
                Err(match (retriable, retry_at) {
                    (false, _) => Error::NonRetriable(body),
                    (true, Some(at)) => Error::RetryAfter(body, at),
                    (true, None) => Error::Retriable(body),
                })
            }
            CallOutcome::NotSdk { status, body } => Err(Error::retriable(format!(
                "{} did not answer as an Inngest SDK (HTTP {status} without an X-Inngest-SDK header): {}",
                self.url,
                body.chars().take(200).collect::<String>()
            ))),
        }
    }
}

/// The op's name for people: its display name, else its name, else its hash.
fn display(op: &Op) -> String {
    op.display_name
        .clone()
        .or_else(|| op.userland.as_ref().map(|u| u.id.clone()))
        .or_else(|| op.name.clone())
        .unwrap_or_else(|| op.id.clone())
}

/// The step's input (`opts.input`), as the SDK sent it.
fn input(op: &Op) -> Option<Value> {
    op.opts.as_ref()?.get("input").cloned()
}

/// When the step ran, from the op's `timing` (`a`: start in ns since the epoch, `b`: its
/// duration in ns), in ms since the epoch.
fn timing_ms(op: &Op) -> Option<(i64, i64)> {
    let t = op.timing.as_ref()?;
    let a = t.get("a")?.as_i64()? / 1_000_000;
    let b = t.get("b").and_then(Value::as_i64).unwrap_or(0) / 1_000_000;
    (a > 0).then_some((a, a + b))
}

/// A suspension's end: `now` plus the duration, `empty` when none is given.
fn deadline(timeout: Option<&str>, now: i64, empty: i64) -> Result<i64, duration::DurationError> {
    match timeout.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(empty),
        Some(t) => Ok(now.saturating_add(duration::parse_ms(t)?)),
    }
}

enum Answer {
    Complete(Value),
    /// The ops, and the `Retry-After` of the answer (for a `StepError`).
    Ops(Vec<Op>, Option<i64>),
}

/// The step URL with `fnId` and `stepId` set (the registered URL may carry others).
pub(crate) fn step_url(registered: &str, function_id: &str, step_id: &str) -> String {
    match reqwest::Url::parse(registered) {
        Ok(mut url) => {
            let keep: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "fnId" && k != "stepId")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(keep)
                .append_pair("fnId", function_id)
                .append_pair("stepId", step_id);
            url.to_string()
        }
        Err(_) => registered.to_string(),
    }
}

/// An SDK's serialized error as the engine's error body (name, message, stack; the rest in
/// `data`). Anything else becomes a readable message.
pub(crate) fn error_body(error: Option<&Value>) -> ErrorBody {
    let Some(error) = error else {
        return ErrorBody::new("Error", "the app reported an error without details");
    };
    match error {
        Value::Object(o) => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Error")
                .to_string();
            let message = o
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| o.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| error.to_string());
            let mut body = ErrorBody::new(name, message);
            body.stack = o.get("stack").and_then(Value::as_str).map(str::to_string);
            let rest: Map<String, Value> = o
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "name" | "message" | "stack"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !rest.is_empty() {
                body.data = Some(Value::Object(rest));
            }
            body
        }
        Value::String(s) => ErrorBody::new("Error", s.clone()),
        other => ErrorBody::new("Error", other.to_string()),
    }
}
