//! The HTTP driver: runs one SDK function's execution as one call request.
//!
//! An SDK function is an ordinary engine [`Function`](stepdesk_engine::Function) whose handler
//! does not run steps itself: each execution of its body is one `POST` to the app's serve
//! URL, carrying the run's event and every step recorded so far (the memo), and the app's
//! answer is reported to the engine as the step outcome a Rust body would have produced.
//! The engine keeps everything else (durability, retries and their backoff, sleeps, waits,
//! invokes, cancellation, the run's end), so an SDK run is stored and shown like a Rust one.
//!
//! Parallel steps (`Promise.all`, `group.parallel`, Python's `ctx.group.parallel`): the
//! SDK answers `StepPlanned` for each. The driver starts a targeted request (`stepId=<hash>`)
//! for every planned step at once, as tasks that outlive the execution ([`InFlight`]), and
//! reports each answer as its step finishes: the execution that started them waits for the
//! first, reports every answer that is in, and ends; the run replays, the SDK plans the
//! steps still running again, and the next execution waits for the next one. So a group of
//! steps takes as long as its slowest step, and in race mode the function goes on as soon
//! as the winner is recorded. A step is never started twice while its request is in flight.
//!
//! Checkpointing (JS v4): see [`crate::checkpoint`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use stepdesk_engine::step::{RecordedStep, StepState};
use stepdesk_engine::{Ctx, Error, ErrorBody, StepKind};
use stepdesk_inngest::response::{parse_call_response, CallOutcome};
use stepdesk_inngest::wire::{CallCtx, CallRequest, CallStack, Op, Opcode};
use stepdesk_inngest::{duration, sign};

use crate::checkpoint::SharedLive;
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
    /// Executions whose request is in flight, for checkpoints (shared by every function).
    pub live: SharedLive,
    /// Planned steps whose targeted request is in flight, per run (shared by every function).
    pub inflight: Arc<InFlight>,
    /// Runs to wake: a planned step answered while no execution of its run was under way
    /// (the registry wakes them through the engine).
    pub wake: tokio::sync::mpsc::UnboundedSender<String>,
    /// State served to SDKs whose request was too large to send whole (shared).
    pub offloaded: Arc<crate::offload::Offloaded>,
}

/// Planned steps running at once, per run (see the module's comment). One for all the
/// apps' functions (run ids are unique), owned by the registry, which drops what no
/// execution will claim: answers that came in for runs that ended meanwhile.
#[derive(Default)]
pub(crate) struct InFlight {
    runs: Mutex<HashMap<String, Flights>>,
}

#[derive(Default)]
struct Flights {
    /// Hashes of the steps whose request is in flight.
    running: HashSet<String>,
    /// Answers in, not yet reported.
    finished: Vec<Finished>,
    /// When the oldest answer in `finished` came in.
    unclaimed_since: Option<std::time::Instant>,
    /// The run ended while steps were still running (race mode: the function went on
    /// without them): their answers are dropped as they come in.
    ended: bool,
    /// Executions of the run under way. An answer that comes in while there is none (the run
    /// waits on another branch of a race: a sleep, a wait) has the run woken to record it.
    executing: usize,
    /// Told when an answer comes in.
    notify: Arc<tokio::sync::Notify>,
}

/// A planned step's answer, as it will be reported.
struct Finished {
    kind: StepKind,
    hash: String,
    name: String,
    input: Option<Value>,
    result: Result<Value, Error>,
    started: i64,
    ended: i64,
}

impl Flights {
    /// Nothing running, nothing to report, no execution: the entry can go.
    fn idle(&self) -> bool {
        self.running.is_empty() && self.finished.is_empty() && self.executing == 0
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flights>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_running_any(&self, run_id: &str) -> bool {
        self.lock()
            .get(run_id)
            .is_some_and(|f| !f.running.is_empty())
    }

    /// Marks a step as running; false if it already is, or if its answer is in and not yet
    /// reported (it finished after the SDK was asked what to do next: it must not run again).
    fn start(&self, run_id: &str, hash: &str) -> bool {
        let mut runs = self.lock();
        let flights = runs.entry(run_id.to_string()).or_default();
        // A run executes again (it was not over after all): nothing of it is dropped.
        flights.ended = false;
        if flights.finished.iter().any(|f| f.hash == hash) {
            return false;
        }
        flights.running.insert(hash.to_string())
    }

    /// Records a planned step's answer. True when no execution of the run is under way to
    /// report it: the run must be woken (see [`FunctionDriver::spawn_planned`]).
    fn finish(&self, run_id: &str, done: Finished) -> bool {
        let mut runs = self.lock();
        let flights = runs.entry(run_id.to_string()).or_default();
        flights.running.remove(&done.hash);
        if flights.ended {
            if flights.idle() {
                runs.remove(run_id);
            }
            return false;
        }
        flights
            .unclaimed_since
            .get_or_insert_with(std::time::Instant::now);
        flights.finished.push(done);
        flights.notify.notify_one();
        flights.executing == 0
    }

    /// An execution of the run begins.
    fn enter(&self, run_id: &str) {
        self.lock().entry(run_id.to_string()).or_default().executing += 1;
    }

    /// An execution of the run ends. True when answers came in that it did not report and
    /// no other execution is under way: the run must be woken to record them.
    fn leave(&self, run_id: &str) -> bool {
        let mut runs = self.lock();
        let Some(flights) = runs.get_mut(run_id) else {
            return false;
        };
        flights.executing = flights.executing.saturating_sub(1);
        let wake = flights.executing == 0 && !flights.finished.is_empty() && !flights.ended;
        if flights.idle() {
            runs.remove(run_id);
        }
        wake
    }

    /// The answers in, and whether steps are still running; forgets a run with neither.
    fn take(&self, run_id: &str) -> (Vec<Finished>, bool) {
        let mut runs = self.lock();
        let Some(flights) = runs.get_mut(run_id) else {
            return (Vec::new(), false);
        };
        let done = std::mem::take(&mut flights.finished);
        flights.unclaimed_since = None;
        let running = !flights.running.is_empty();
        if flights.idle() {
            runs.remove(run_id);
        }
        (done, running)
    }

    fn notifier(&self, run_id: &str) -> Arc<tokio::sync::Notify> {
        self.lock()
            .entry(run_id.to_string())
            .or_default()
            .notify
            .clone()
    }

    /// A run that ended: its answers, in or still to come, are dropped.
    pub(crate) fn forget(&self, run_id: &str) {
        let mut runs = self.lock();
        if let Some(f) = runs.get_mut(run_id) {
            f.finished.clear();
            f.unclaimed_since = None;
            if f.idle() {
                runs.remove(run_id);
            } else {
                f.ended = true;
            }
        }
    }

    /// Runs whose answers have waited for an execution for at least `age`: either the run
    /// ended some other way (cancelled, failed) and none will come, or it is merely waiting
    /// (a sleep in the other branch of a race); the registry asks the engine which.
    pub(crate) fn unclaimed(&self, age: Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, f)| f.unclaimed_since.is_some_and(|t| t.elapsed() >= age))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// How many runs have answers in or steps running (for tests and the sweep's log).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
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
/// `checkpoint`: the execution's `fn_id` and `qi_id`, with which a JS v4 SDK checkpoints.
pub(crate) fn call_request(
    ctx: &Ctx,
    step_id: &str,
    version: i64,
    checkpoint: Option<(&str, &str)>,
) -> CallRequest {
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
    // `ctx.attempt` is per queue item: for a targeted request, the attempt of its step;
    // otherwise the attempt of the step being retried when there is one (the SDK reaches it
    // first, as nothing after it is recorded), else the body's.
    let targeted = ctx.step.memo().into_iter().find_map(|s| match s.state {
        StepState::Retrying { attempts } if s.hash == step_id => Some(attempts),
        _ => None,
    });
    let attempt = targeted
        .or_else(|| ctx.step.retrying_attempt())
        .unwrap_or(ctx.attempt);
    let event = serde_json::to_value(&ctx.event).unwrap_or(Value::Null);
    CallRequest {
        events: vec![event.clone()],
        event,
        steps,
        ctx: CallCtx {
            // With `fn_id` and `qi_id`, JS v4 checkpoints (see crate::checkpoint).
            fn_id: checkpoint.map(|(f, _)| f.to_string()),
            run_id: ctx.run_id.clone(),
            env: String::new(),
            step_id: step_id.to_string(),
            attempt,
            max_attempts: Some(ctx.max_attempts),
            stack: CallStack::of(stack),
            qi_id: checkpoint.map(|(_, q)| q.to_string()),
            disable_immediate_execution: step_id != "step",
            use_api: false,
        },
        version,
        use_api: false,
    }
}

impl FunctionDriver {
    /// One execution of the function's body: a discovery request (during which a JS v4 SDK
    /// may checkpoint steps), then what its answer asks for: the result, one step to
    /// record, or planned steps to run at once.
    pub(crate) async fn execute(self: &Arc<Self>, ctx: Ctx) -> Result<Value, Error> {
        // While it lasts, planned steps' answers wait for this execution to report them;
        // those it leaves (they came in after it looked) wake the run when it ends, however
        // it ends (a future dropped included).
        struct Executing<'a>(&'a FunctionDriver, String);
        impl Drop for Executing<'_> {
            fn drop(&mut self) {
                if self.0.inflight.leave(&self.1) {
                    let _ = self.0.wake.send(self.1.clone());
                }
            }
        }
        self.inflight.enter(&ctx.run_id);
        let _executing = Executing(self, ctx.run_id.clone());
        self.execute_inner(ctx).await
    }

    async fn execute_inner(self: &Arc<Self>, ctx: Ctx) -> Result<Value, Error> {
        let answer = {
            let (qi_id, live) = self
                .live
                .enter(&ctx.run_id, &self.function_id, ctx.step.clone());
            let answer = self
                .call(&ctx, "step", Some((&self.function_id, &qi_id)))
                .await;
            let checkpointed = live.finish();
            (answer, checkpointed)
        };
        let (ops, retry_at, checkpointed) = match answer {
            (Ok(Answer::Complete(v)), _) => {
                self.inflight.forget(&ctx.run_id);
                return Ok(v);
            }
            (Ok(Answer::Ops(ops, retry_at)), n) => (ops, retry_at, n),
            // Steps checkpointed before the request failed are kept: the run goes on from
            // them (the failure is the SDK's next attempt to make).
            (Err(_), n) if n > 0 => return Err(Error::Interrupt),
            (Err(e), _) => return Err(e),
        };
        let (planned, others): (Vec<Op>, Vec<Op>) =
            ops.into_iter().partition(|op| op.op == Opcode::StepPlanned);
        if !planned.is_empty() {
            if checkpointed > 0 {
                // Targeted requests need the checkpointed steps in their memo: write them
                // first; the replay plans these steps again.
                return Err(Error::Interrupt);
            }
            for op in &planned {
                if self.recorded(&ctx, &op.id) {
                    return Err(Error::retriable(format!(
                        "the app planned step `{}` again although it is recorded",
                        display(op)
                    )));
                }
                if self.inflight.start(&ctx.run_id, &op.id) {
                    self.spawn_planned(&ctx, op);
                }
            }
        }
        // Answers of planned steps that are in: report them first.
        let mut reported = self.report_finished(&ctx);
        // Then the first other op (a sleep, a wait, an invoke, a step the SDK ran at once,
        // the function's end): the others are found again by the replay.
        if let Some(op) = others.into_iter().next() {
            if op.op == Opcode::Gateway {
                return Err(self.fetch(&ctx, &op).await);
            }
            return self.report(&ctx, op, retry_at);
        }
        if !planned.is_empty() && reported == 0 {
            reported = self.wait_for_planned(&ctx).await?;
        }
        if reported > 0 || checkpointed > 0 {
            return Err(Error::Interrupt);
        }
        // `[]`: the SDK found nothing to do. Nothing was recorded; try again later.
        Err(Error::retriable(
            "the app answered with no step and no result (206 [])",
        ))
    }

    /// Starts the targeted request of a planned step, as a task: its answer is reported by
    /// whichever execution of the run finds it (see [`InFlight`]).
    fn spawn_planned(self: &Arc<Self>, ctx: &Ctx, op: &Op) {
        let request = self.prepare(ctx, &op.id, None);
        let this = self.clone();
        let run_id = ctx.run_id.clone();
        let (kind, hash, name, mut input) = (step_kind(op), op.id.clone(), display(op), input(op));
        tokio::spawn(async move {
            let started = now_ms();
            let answer = this.send(request).await;
            let now = now_ms();
            let (result, started, ended) = match answer {
                Ok(Answer::Ops(ops, retry_at)) => match ops.into_iter().find(|o| o.id == hash) {
                    // `step.fetch` in a `Promise.all`: the request it asks for is this step.
                    Some(op) if op.op == Opcode::Gateway => match crate::gateway::parse(&op) {
                        Ok(fetch) => {
                            input = Some(fetch.recorded_input());
                            fetch.perform(&this.http).await
                        }
                        Err(e) => (Err(Error::non_retriable(e)), started, now),
                    },
                    Some(op) if op.op != Opcode::StepPlanned => {
                        let (s, e) = timing_ms(&op).unwrap_or((started, now));
                        (run_result(&op, retry_at), s, e)
                    }
                    _ => (
                        Err(Error::retriable(format!(
                            "the app did not run planned step `{name}` when asked for it"
                        ))),
                        started,
                        now,
                    ),
                },
                Ok(Answer::Complete(_)) => (
                    Err(Error::retriable(format!(
                        "the app answered the request for planned step `{name}` with the function's result"
                    ))),
                    started,
                    now,
                ),
                Err(e) => (Err(e), started, now),
            };
            let unclaimed = this.inflight.finish(
                &run_id,
                Finished {
                    kind,
                    hash,
                    name,
                    input,
                    result,
                    started,
                    ended,
                },
            );
            // No execution is under way to report it (the run went on to a sleep or a wait
            // in another branch of a race): wake the run, whose next execution records it,
            // so that the race goes on with this step now, in the order the steps finished.
            if unclaimed {
                let _ = this.wake.send(run_id);
            }
        });
    }

    /// `step.fetch`: makes the request the op asks for and records the response as the
    /// step's result (see [`crate::gateway`]). Returns what recording it returns.
    async fn fetch(&self, ctx: &Ctx, op: &Op) -> Error {
        let name = display(op);
        let (input, (result, started, ended)) = match crate::gateway::parse(op) {
            Ok(fetch) => (
                Some(fetch.recorded_input()),
                fetch.perform(&self.http).await,
            ),
            Err(e) => {
                let now = now_ms();
                (None, (Err(Error::non_retriable(e)), now, now))
            }
        };
        ctx.step
            .record_run_as(StepKind::Run, &op.id, &name, input, result, started, ended)
    }

    /// Reports every planned step's answer that is in. Returns how many.
    fn report_finished(&self, ctx: &Ctx) -> usize {
        let (done, _) = self.inflight.take(&ctx.run_id);
        let n = done.len();
        for f in done {
            // `Interrupt` is the expected answer; a refusal (a step that already has its
            // result) is logged: the first result stands.
            let (s, e) = (f.started, f.ended);
            match ctx
                .step
                .record_run_as(f.kind, &f.hash, &f.name, f.input, f.result, s, e)
            {
                Error::Interrupt => {}
                other => {
                    tracing::warn!(run_id = %ctx.run_id, step = %f.name, error = %other, "a planned step's answer was not recorded")
                }
            }
        }
        n
    }

    /// Waits for the first planned step of the run to finish, then reports what is in.
    async fn wait_for_planned(&self, ctx: &Ctx) -> Result<usize, Error> {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT + Duration::from_secs(30);
        let notify = self.inflight.notifier(&ctx.run_id);
        loop {
            let notified = notify.notified();
            let reported = self.report_finished(ctx);
            if reported > 0 {
                return Ok(reported);
            }
            if !self.inflight.is_running_any(&ctx.run_id) {
                return Ok(0);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::retriable(
                    "no planned step answered within the call timeout",
                ));
            }
        }
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
            Opcode::StepRun | Opcode::Step | Opcode::StepError | Opcode::StepFailed => {
                let (started, ended) = timing_ms(&op).unwrap_or((now, now));
                let result = run_result(&op, retry_at);
                Err(ctx.step.record_run_as(
                    step_kind(&op),
                    &op.id,
                    &name,
                    input(&op),
                    result,
                    started,
                    ended,
                ))
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
    async fn call(
        &self,
        ctx: &Ctx,
        step_id: &str,
        checkpoint: Option<(&str, &str)>,
    ) -> Result<Answer, Error> {
        let request = self.prepare(ctx, step_id, checkpoint);
        self.send(request).await
    }

    /// The call request for `step_id`, from the run's state now; over
    /// [`crate::offload::MAX_REQUEST_BYTES`], without the state, which the SDK fetches.
    fn prepare(&self, ctx: &Ctx, step_id: &str, checkpoint: Option<(&str, &str)>) -> Prepared {
        let version = self.version.load(Ordering::Relaxed);
        let mut request = call_request(ctx, step_id, version, checkpoint);
        let mut body = request.to_body();
        let mut held = None;
        if body.len() > crate::offload::MAX_REQUEST_BYTES {
            let events = std::mem::take(&mut request.events);
            let steps = std::mem::take(&mut request.steps);
            request.ctx.use_api = true;
            request.use_api = true;
            tracing::debug!(run_id = %ctx.run_id, bytes = body.len(), "call request over 4 MiB: the SDK fetches the run's state");
            held = Some((events, steps));
            body = request.to_body();
        }
        Prepared {
            body,
            run_id: ctx.run_id.clone(),
            step_id: step_id.to_string(),
            version,
            offload: held,
        }
    }

    async fn send(&self, p: Prepared) -> Result<Answer, Error> {
        let Prepared {
            body,
            run_id,
            step_id,
            version,
            offload,
        } = p;
        // Served to the SDK for as long as this request is in flight.
        let _held = offload.map(|(events, steps)| self.offloaded.hold(&run_id, events, steps));
        let step_id = step_id.as_str();
        let url = step_url(&self.url, &self.function_id, step_id);
        let mut req = self
            .http
            .post(&url)
            .timeout(CALL_TIMEOUT)
            .header("content-type", "application/json")
            .header("x-run-id", &run_id)
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

/// A call request ready to send (built from the run's state when it was prepared).
struct Prepared {
    body: Vec<u8>,
    run_id: String,
    step_id: String,
    version: i64,
    /// The events and steps left out of the body (`use_api`), to serve while it is sent.
    offload: Option<(Vec<Value>, Map<String, Value>)>,
}

/// What a `run` step's op says of it: its value, or its error as the engine retries it
/// (`StepFailed` never; `StepError` after `Retry-After` when the answer had one).
fn run_result(op: &Op, retry_at: Option<i64>) -> Result<Value, Error> {
    match op.op {
        Opcode::StepError | Opcode::StepFailed => {
            let body = error_body(op.error.as_ref());
            Err(match (op.op == Opcode::StepFailed, retry_at) {
                (true, _) => Error::NonRetriable(body),
                (false, Some(at)) => Error::RetryAfter(body, at),
                (false, None) => Error::Retriable(body),
            })
        }
        _ => Ok(op.data.clone().unwrap_or(Value::Null)),
    }
}

/// The kind of step an executed op was: `SendEvent` for the JS SDK's `step.sendEvent`
/// (`opts.type`), else `Run`.
pub(crate) fn step_kind(op: &Op) -> StepKind {
    let kind = op
        .opts
        .as_ref()
        .and_then(|o| o.get("type"))
        .and_then(Value::as_str);
    match kind {
        Some("step.sendEvent") => StepKind::SendEvent,
        _ => StepKind::Run,
    }
}

/// The op's name for people: its display name, else its name, else its hash.
/// A step's name as the user wrote it; its hash when the SDK sent none or an empty one
/// (`step.run("", ...)`, which Inngest runs).
pub(crate) fn display(op: &Op) -> String {
    let given = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    given(&op.display_name)
        .or_else(|| {
            op.userland
                .as_ref()
                .and_then(|u| given(&Some(u.id.clone())))
        })
        .or_else(|| given(&op.name))
        .unwrap_or_else(|| op.id.clone())
}

/// The step's input (`opts.input`), as the SDK sent it.
pub(crate) fn input(op: &Op) -> Option<Value> {
    op.opts.as_ref()?.get("input").cloned()
}

/// When the step ran, from the op's `timing` (`a`: start in ns since the epoch, `b`: its
/// duration in ns), in ms since the epoch.
pub(crate) fn timing_ms(op: &Op) -> Option<(i64, i64)> {
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
            body.cause = o
                .get("cause")
                .filter(|c| !c.is_null())
                .cloned()
                .map(Box::new);
            // `__serialized` marks the JS SDK's serialized errors; it is not the error's.
            let rest: Map<String, Value> = o
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "name" | "message" | "stack" | "cause" | "__serialized"
                    )
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(hash: &str) -> Finished {
        Finished {
            kind: StepKind::Run,
            hash: hash.into(),
            name: hash.into(),
            input: None,
            result: Ok(json!(1)),
            started: 0,
            ended: 1,
        }
    }

    #[test]
    fn a_step_with_an_empty_id_is_named_by_its_hash() {
        let op: Op = serde_json::from_value(json!({
            "op": "StepRun", "id": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "name": "", "displayName": "", "userland": {"id": ""}
        }))
        .unwrap();
        assert_eq!(display(&op), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let named: Op = serde_json::from_value(json!({
            "op": "StepRun", "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
            "name": "a", "displayName": "Step A"
        }))
        .unwrap();
        assert_eq!(display(&named), "Step A");
    }

    #[test]
    fn an_errors_cause_stays_at_the_top_level_and_the_sdk_marker_goes() {
        let e = error_body(Some(&json!({
            "__serialized": true, "name": "Error", "message": "outer", "stack": "at x",
            "cause": {"__serialized": true, "name": "TypeError", "message": "inner", "stack": "at y"},
            "code": "E42"
        })));
        assert_eq!((e.name.as_str(), e.message.as_str()), ("Error", "outer"));
        assert_eq!(e.cause.as_ref().unwrap()["message"], "inner");
        assert_eq!(e.data, Some(json!({"code": "E42"})));
        let memo = serde_json::to_value(&e).unwrap();
        assert_eq!(memo["cause"]["name"], "TypeError", "{memo}");
        assert!(memo.get("__serialized").is_none() && memo["data"].get("__serialized").is_none());
        let plain = error_body(Some(
            &json!({"__serialized": true, "name": "Error", "message": "m", "stack": ""}),
        ));
        assert_eq!((plain.data, plain.cause), (None, None));
    }

    #[test]
    fn a_loser_answering_after_its_run_ended_is_dropped() {
        let f = InFlight::default();
        assert!(f.start("r", "slow"));
        // The race is won and the function returns: the run ends with `slow` running.
        f.forget("r");
        assert_eq!(f.len(), 1, "kept while its step runs");
        f.finish("r", finished("slow"));
        assert_eq!(f.len(), 0, "its answer is dropped, and the run forgotten");
        assert!(f.unclaimed(Duration::ZERO).is_empty());
    }

    #[test]
    fn unclaimed_answers_are_listed_by_age_until_taken() {
        let f = InFlight::default();
        assert!(f.start("r", "a"));
        assert!(f.start("q", "b"));
        assert!(
            f.unclaimed(Duration::ZERO).is_empty(),
            "nothing answered yet"
        );
        f.finish("r", finished("a"));
        assert_eq!(f.unclaimed(Duration::ZERO), vec!["r".to_string()]);
        assert!(f.unclaimed(Duration::from_secs(60)).is_empty(), "too young");
        let (done, running) = f.take("r");
        assert_eq!((done.len(), running), (1, false));
        assert!(f.unclaimed(Duration::ZERO).is_empty());
        // A run that executes again after `forget` is not over: its answers are kept.
        f.forget("q");
        assert!(f.start("q", "c"));
        f.finish("q", finished("b"));
        assert_eq!(f.unclaimed(Duration::ZERO), vec!["q".to_string()]);
    }

    #[test]
    fn a_planned_step_starts_once_even_when_its_answer_is_waiting() {
        let f = InFlight::default();
        assert!(f.start("r", "a"));
        assert!(!f.start("r", "a"), "already running");
        f.finish("r", finished("a"));
        assert!(
            !f.start("r", "a"),
            "its answer is in, not yet reported: not again"
        );
        let (done, running) = f.take("r");
        assert_eq!(done.len(), 1);
        assert!(!running);
        assert!(f.start("r", "b"), "another step");
        assert!(f.is_running_any("r"));
        f.forget("r");
        assert!(
            f.is_running_any("r"),
            "a running step is kept until it ends"
        );
    }
}
