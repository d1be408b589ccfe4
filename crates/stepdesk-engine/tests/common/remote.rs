//! A stand-in for an SDK app: a function whose steps "execute elsewhere". Its handler uses
//! only the driver API of `Step` (no Rust step closures): it reads the memo, replays a
//! program against it as an SDK would, and reports the first step without a result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use stepdesk_engine::step::{hash_step_id, RecordedStep, StepState};
use stepdesk_engine::{Error, Function};

/// What one step of a remote program does.
#[derive(Clone)]
pub enum RemoteOp {
    /// A `run` step: its result for a zero-based attempt.
    Run(Arc<dyn Fn(u32) -> Result<Value, Error> + Send + Sync>),
    Sleep(Duration),
    Wait {
        event: &'static str,
        if_expr: Option<&'static str>,
        timeout: Duration,
    },
    Invoke {
        function: &'static str,
        data: Value,
        timeout: Duration,
    },
}

/// A `run` step whose result depends only on its attempt.
pub fn run(f: impl Fn(u32) -> Result<Value, Error> + Send + Sync + 'static) -> RemoteOp {
    RemoteOp::Run(Arc::new(f))
}

/// What the handler read through the driver API in one execution.
#[derive(Debug, Clone)]
pub struct Observation {
    pub memo: Vec<RecordedStep>,
    pub attempt: u32,
    pub retrying_attempt: Option<u32>,
    pub max_attempts: u32,
    pub events: Vec<Value>,
}

impl Observation {
    /// What `ctx` shows this execution, with its memo, noted in `seen`.
    pub fn note(seen: &Observations, ctx: &stepdesk_engine::Ctx, memo: &[RecordedStep]) {
        seen.lock().unwrap().push(Observation {
            memo: memo.to_vec(),
            attempt: ctx.attempt,
            retrying_attempt: ctx.step.retrying_attempt(),
            max_attempts: ctx.max_attempts,
            events: ctx.events(),
        });
    }
}

pub type Observations = Arc<Mutex<Vec<Observation>>>;

pub fn observations() -> Observations {
    Arc::new(Mutex::new(Vec::new()))
}

/// A function triggered by `event` that runs `program` the way an SDK would: each
/// execution replays the program against the memo and reports the first step that has no
/// result. Finished steps' values (a failed step as `{"error": message}`) are its output.
pub fn remote_function(
    id: &str,
    event: &str,
    retries: u32,
    program: Vec<(&'static str, RemoteOp)>,
    seen: Observations,
) -> Function {
    let program = Arc::new(program);
    Function::builder(id)
        .on_event(event)
        .retries(retries)
        .handler(move |ctx| {
            let (program, seen) = (program.clone(), seen.clone());
            async move {
                let memo = ctx.step.memo();
                Observation::note(&seen, &ctx, &memo);
                let states: HashMap<String, StepState> =
                    memo.into_iter().map(|s| (s.hash, s.state)).collect();
                let mut results = Map::new();
                for (step_id, op) in program.iter() {
                    let hash = hash_step_id(step_id);
                    let attempt = match states.get(&hash) {
                        Some(StepState::Completed(v)) => {
                            results.insert(step_id.to_string(), v.clone());
                            continue;
                        }
                        Some(StepState::Failed(e)) => {
                            results.insert(step_id.to_string(), json!({"error": e.message}));
                            continue;
                        }
                        Some(StepState::Retrying { attempts }) => *attempts,
                        // A pending step is reported again, as an SDK does: the engine
                        // keeps the run waiting for it.
                        Some(StepState::Pending) | None => 0,
                    };
                    let now = stepdesk_engine::time::now_ms();
                    let step = &ctx.step;
                    return Err(match op {
                        RemoteOp::Run(f) => {
                            let result = f(attempt);
                            step.record_run(
                                &hash,
                                step_id,
                                None,
                                result,
                                now,
                                stepdesk_engine::time::now_ms(),
                            )
                        }
                        RemoteOp::Sleep(d) => {
                            step.record_sleep(&hash, step_id, now + d.as_millis() as i64)
                        }
                        RemoteOp::Wait {
                            event,
                            if_expr,
                            timeout,
                        } => step.record_wait(
                            &hash,
                            step_id,
                            event,
                            if_expr.map(str::to_string),
                            now + timeout.as_millis() as i64,
                        ),
                        RemoteOp::Invoke {
                            function,
                            data,
                            timeout,
                        } => step.record_invoke(
                            &hash,
                            step_id,
                            function,
                            data.as_object().cloned().unwrap_or_default(),
                            now + timeout.as_millis() as i64,
                        ),
                    });
                }
                Ok(Value::Object(results))
            }
        })
        .expect("a valid remote function")
}
