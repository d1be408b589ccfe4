//! The `/api/inngest` handler: one route, the method decides (protocol §1.1).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use serde_json::{json, Map, Value};
use stepdesk_engine::time::now_ms;
use stepdesk_engine::{
    ErrorBody, ExternalCall, ExternalMemo, ExternalOutcome, NewStep, NewStepKind, Retry,
};
use stepdesk_inngest::serve::{self, Auth, Mode, SyncKind};
use stepdesk_inngest::sign::{self, SignError};
use stepdesk_inngest::wire::{CallRequest, Op, Opcode, StepMemo, Userland};
use stepdesk_inngest::{duration, headers, stepid};

use crate::{outbound, Served, SERVE_PATH};

/// Largest request body: Inngest sends at most 4 MiB of state before switching to
/// `use_api`; the server's own limit is the same as this.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn router(served: Served) -> Router {
    Router::new()
        .route(SERVE_PATH, any(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(served)
}

/// How a request was authenticated.
#[derive(Debug)]
enum Verified {
    /// Dev mode: nothing is verified (as the SDKs do).
    Dev,
    /// Cloud mode, no signature.
    Unsigned,
    /// Cloud mode, a signature that does not verify.
    Failed(SignError),
    /// Verified with the key at this index (the signing key, or the fallback): the answer
    /// is signed with it.
    Key(usize),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// Whole seconds from now until `at_ms`, rounded up (a deadline is never shortened).
fn secs_until(at_ms: i64) -> u64 {
    let ms = at_ms.saturating_sub(now_ms()).max(0) as u64;
    ms.div_ceil(1000)
}

fn error_json(body: &ErrorBody) -> Value {
    serde_json::to_value(body)
        .unwrap_or_else(|_| json!({"name": body.name, "message": body.message}))
}

/// An error as the scheduler sent it in a memo (`{name, message, stack}`; anything else is
/// kept as the message).
fn error_body(v: &Value) -> ErrorBody {
    serde_json::from_value(v.clone()).unwrap_or_else(|_| {
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let name = v.get("name").and_then(Value::as_str).unwrap_or("Error");
        ErrorBody::new(name, message)
    })
}

/// A `Retry-After` value (whole seconds, at least 1), as the JS SDK sends it.
fn retry_after(at_ms: i64) -> String {
    secs_until(at_ms).max(1).to_string()
}

impl Served {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Verified {
        let c = &self.inner.config;
        if c.mode == Mode::Dev {
            return Verified::Dev;
        }
        let Some(signature) = header(headers, headers::SIGNATURE) else {
            return Verified::Unsigned;
        };
        match sign::verify(signature, body, &c.keys(), now_secs()) {
            Ok(i) => Verified::Key(i),
            Err(e) => Verified::Failed(e),
        }
    }

    /// An answer with the SDK headers (and `extra`), signed when the request was verified.
    fn answer(
        &self,
        status: u16,
        body: Vec<u8>,
        extra: Vec<(String, String)>,
        verified: &Verified,
        sync: Option<SyncKind>,
    ) -> Response {
        let mut h = serve::response_headers(&self.shell(), sync);
        h.extend(extra);
        if let Verified::Key(i) = verified {
            if let Some(key) = self.inner.config.keys().get(*i) {
                h.push((
                    headers::SIGNATURE.into(),
                    sign::signature_header(&body, key, now_secs()),
                ));
            }
        }
        let mut res = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        for (k, v) in h {
            res = res.header(k, v);
        }
        res.body(Body::from(body)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build an answer");
            Response::new(Body::empty())
        })
    }

    fn json(
        &self,
        status: u16,
        value: &Value,
        extra: Vec<(String, String)>,
        v: &Verified,
    ) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        self.answer(status, body, extra, v, None)
    }

    fn no_retry(no_retry: bool) -> (String, String) {
        (headers::NO_RETRY.into(), no_retry.to_string())
    }

    fn unauthorized(&self, why: &str) -> Response {
        tracing::warn!(reason = why, "a request to /api/inngest was refused");
        let (status, h, body) = serve::unauthorized();
        let mut res = Response::builder().status(status);
        for (k, v) in h {
            res = res.header(k, v);
        }
        res.body(Body::from(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }

    /// A malformed request: `400`, not to be retried (the same request would fail again).
    fn bad_request(&self, message: String, v: &Verified) -> Response {
        tracing::warn!(%message, "a bad request to /api/inngest");
        self.json(
            400,
            &json!({"name": "Error", "message": message}),
            vec![Self::no_retry(true)],
            v,
        )
    }

    fn introspect(&self, headers: &HeaderMap) -> Response {
        let verified = self.verify(headers, &[]);
        let auth = match &verified {
            Verified::Dev | Verified::Unsigned => Auth::Unsigned,
            Verified::Failed(_) => Auth::Failed,
            Verified::Key(_) => Auth::Succeeded,
        };
        let body = serve::introspection(&self.app(&self.serve_url(host(headers))), auth);
        self.json(200, &body, vec![], &verified)
    }

    async fn put(&self, q: &HashMap<String, String>, headers: &HeaderMap, body: &[u8]) -> Response {
        let verified = self.verify(headers, body);
        if let Verified::Failed(e) = &verified {
            return self.unauthorized(&e.to_string());
        }
        let in_band = header(headers, headers::SYNC_KIND)
            .is_some_and(|k| k.eq_ignore_ascii_case(SyncKind::InBand.as_str()));
        if in_band {
            if matches!(verified, Verified::Unsigned) {
                return self.unauthorized("an in-band sync must be signed in cloud mode");
            }
            // The body names the URL the server reaches us at (`{"url": …}`); a configured
            // serve origin wins over it.
            let asked = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("url").and_then(Value::as_str).map(str::to_string));
            let url = match (&self.inner.config.serve_origin, asked) {
                (None, Some(url)) => url,
                _ => self.serve_url(host(headers)),
            };
            let auth = match verified {
                Verified::Key(_) => Auth::Succeeded,
                _ => Auth::Unsigned,
            };
            tracing::info!(%url, "in-band sync");
            let reply = serve::in_band_reply(&self.app(&url), auth);
            let bytes = serde_json::to_vec(&reply).unwrap_or_default();
            return self.answer(200, bytes, vec![], &verified, Some(SyncKind::InBand));
        }
        // A server of the other kind (a cloud-mode Stepdesk asked by a dev server, say) is
        // refused, as the Python SDK does: the registration would carry this mode's key.
        let server_kind = header(headers, headers::SERVER_KIND).map(str::to_string);
        if let Some(kind) = &server_kind {
            if !kind.eq_ignore_ascii_case(self.inner.config.mode.as_str()) {
                let message = format!(
                    "this app is in {} mode but the server asking for a sync says it is `{kind}`",
                    self.inner.config.mode.as_str()
                );
                tracing::warn!(%message, "sync refused");
                return self.answer(
                    400,
                    serde_json::to_vec(&json!({"message": message, "modified": false, "code": "server_kind_mismatch"}))
                        .unwrap_or_default(),
                    vec![],
                    &verified,
                    Some(SyncKind::OutOfBand),
                );
            }
        }
        let url = self.serve_url(host(headers));
        let app = self.app(&url);
        let result = outbound::register(
            &self.inner.http,
            &self.inner.config,
            &app,
            server_kind.as_deref(),
            q.get("deployId").map(String::as_str),
        )
        .await;
        match &result {
            Ok(modified) => {
                tracing::info!(%url, modified, functions = app.functions.len(), "synced with the Inngest server")
            }
            Err(e) => tracing::warn!(%url, error = %e, "the sync failed"),
        }
        let (status, reply) = serve::put_reply(result);
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        self.answer(status, bytes, vec![], &verified, Some(SyncKind::OutOfBand))
    }

    async fn post(
        &self,
        q: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let verified = self.verify(headers, body);
        match &verified {
            Verified::Unsigned => return self.unauthorized("the request is not signed"),
            Verified::Failed(e) => return self.unauthorized(&e.to_string()),
            Verified::Dev | Verified::Key(_) => {}
        }
        if let Some(probe) = q.get("probe") {
            return if probe == "trust" {
                self.answer(200, Vec::new(), vec![], &verified, None)
            } else {
                self.bad_request(format!("unknown probe `{probe}`"), &verified)
            };
        }
        let Some(fn_id) = q.get("fnId").filter(|f| !f.is_empty()) else {
            return self.bad_request("the call request has no fnId".into(), &verified);
        };
        let function = self
            .inner
            .ids
            .local_of(fn_id)
            .and_then(|id| self.inner.functions.get(id))
            .cloned();
        let Some(function) = function else {
            // Retriable, as the JS SDK answers: the app may be mid-deploy.
            let message = format!(
                "Function \"{fn_id}\" was not found in this app; is the app synced correctly?"
            );
            tracing::warn!(%message);
            return self.json(
                500,
                &json!({"name": "Error", "message": message}),
                vec![Self::no_retry(false)],
                &verified,
            );
        };
        let req = match CallRequest::parse(body) {
            Ok(r) => r,
            Err(e) => {
                return self.bad_request(format!("the call request does not parse: {e}"), &verified)
            }
        };
        let (mut events, steps) = if req.use_api || req.ctx.use_api {
            match outbound::fetch_state(&self.inner.http, &self.inner.config, &req.ctx.run_id).await
            {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch the run's state");
                    return self.json(
                        500,
                        &json!({"name": "Error", "message": format!("cannot fetch the run's state: {e}")}),
                        vec![Self::no_retry(false)],
                        &verified,
                    );
                }
            }
        } else if req.events.is_empty() {
            (vec![req.event.clone()], req.steps.clone())
        } else {
            (req.events.clone(), req.steps.clone())
        };
        for e in &mut events {
            self.inner.ids.localize_event(e);
        }
        let target = q
            .get("stepId")
            .filter(|s| !s.is_empty() && s.as_str() != stepid::DISCOVERY)
            .cloned();
        let call = ExternalCall {
            events,
            memo: memo_in_order(steps, &req.ctx.stack.stack),
            run_id: req.ctx.run_id.clone(),
            attempt: req.ctx.attempt,
            max_attempts: req.ctx.max_attempts,
            target,
            plan_only: req.ctx.disable_immediate_execution,
        };
        let max_attempts = call.max_attempts.unwrap_or(function.max_attempts()).max(1);
        let last_attempt = call.attempt + 1 >= max_attempts;
        let outcome = match function.execute_once(call).await {
            Ok(o) => o,
            Err(e) => return self.bad_request(e.to_string(), &verified),
        };
        self.outcome(outcome, last_attempt, &verified).await
    }

    async fn outcome(
        &self,
        outcome: ExternalOutcome,
        last_attempt: bool,
        v: &Verified,
    ) -> Response {
        match outcome {
            ExternalOutcome::Completed(value) => self.json(200, &value, vec![], v),
            ExternalOutcome::Failed { error, retry } => {
                let no_retry = retry == Retry::No;
                let mut extra = vec![Self::no_retry(no_retry)];
                if let Retry::At(at) = retry {
                    extra.push((headers::RETRY_AFTER.into(), retry_after(at)));
                }
                self.json(serve::error_status(no_retry), &error_json(&error), extra, v)
            }
            ExternalOutcome::StepNotFound { target, found } => {
                let found: Vec<Value> = found
                    .iter()
                    .map(|s| json!({"id": s.hash, "name": s.step_id, "displayName": s.step_id}))
                    .collect();
                let message = format!("Could not find step \"{target}\" to run");
                tracing::warn!(%message);
                self.json(
                    500,
                    &json!({"error": message, "requestedStep": target, "foundSteps": found,
                            "totalFoundSteps": found.len()}),
                    vec![Self::no_retry(false)],
                    v,
                )
            }
            ExternalOutcome::Step(step) => {
                let (op, extra) = self.op(step, last_attempt).await;
                let body = serde_json::to_vec(&[op]).unwrap_or_default();
                self.answer(206, body, extra, v, None)
            }
        }
    }

    /// The op a new step is answered with, and the headers that go with it.
    async fn op(&self, step: NewStep, last_attempt: bool) -> (Op, Vec<(String, String)>) {
        let NewStep {
            hash,
            step_id,
            kind,
        } = step;
        let base = |code: Opcode| {
            let mut op = Op::new(code, hash.clone());
            op.name = Some(step_id.clone());
            op.display_name = Some(step_id.clone());
            op.userland = Some(Userland {
                id: step_id.clone(),
                index: None,
            });
            op
        };
        let run_opts = |input: Option<Value>, kind: &str| match input {
            Some(i) => json!({"type": kind, "input": [i]}),
            None => json!({"type": kind}),
        };
        let mut extra = Vec::new();
        let op = match kind {
            NewStepKind::Ran {
                input,
                result,
                started_at,
                ended_at,
            } => {
                let timing = json!({"a": started_at.saturating_mul(1_000_000),
                                    "b": (ended_at - started_at).max(0).saturating_mul(1_000_000)});
                match result {
                    Ok(value) => {
                        let mut op = base(Opcode::StepRun);
                        op.opts = Some(run_opts(input, "step.run"));
                        op.data = Some(value);
                        op.timing = Some(timing);
                        op
                    }
                    Err((error, retry)) => {
                        let mut op = base(if retry == Retry::No {
                            Opcode::StepFailed
                        } else {
                            Opcode::StepError
                        });
                        op.opts = Some(run_opts(input, "step.run"));
                        op.error = Some(error_json(&error));
                        op.timing = Some(timing);
                        extra.push(Self::no_retry(retry == Retry::No));
                        if let Retry::At(at) = retry {
                            extra.push((headers::RETRY_AFTER.into(), retry_after(at)));
                        }
                        op
                    }
                }
            }
            NewStepKind::Planned { input, send } => {
                let mut op = base(Opcode::StepPlanned);
                op.opts = Some(run_opts(
                    input,
                    if send { "step.sendEvent" } else { "step.run" },
                ));
                op
            }
            NewStepKind::Sleep { until } => {
                // The wake time itself (as the Python SDK sends it): exact for a
                // `sleep_until`, and as good as a duration for a `sleep`.
                let mut op = base(Opcode::Sleep);
                op.name = chrono::DateTime::from_timestamp_millis(until)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                op
            }
            NewStepKind::Wait {
                event,
                if_expr,
                expires_at,
            } => {
                let mut op = base(Opcode::WaitForEvent);
                op.name = Some(event.clone());
                let mut opts = json!({
                    "event": event,
                    "timeout": duration::format(Duration::from_secs(secs_until(expires_at))),
                });
                if let Some(e) = if_expr {
                    opts["if"] = Value::String(e);
                }
                op.opts = Some(opts);
                op
            }
            NewStepKind::Invoke {
                function_id,
                data,
                expires_at,
            } => {
                let mut op = base(Opcode::InvokeFunction);
                op.opts = Some(json!({
                    "function_id": self.inner.ids.outbound(&function_id),
                    "payload": {"data": data},
                    "timeout": duration::format(Duration::from_secs(secs_until(expires_at))),
                }));
                op
            }
            NewStepKind::Send { events } => {
                let started = now_ms();
                let sent =
                    outbound::send_events(&self.inner.http, &self.inner.config, &events).await;
                let timing = json!({"a": started.saturating_mul(1_000_000),
                                    "b": (now_ms() - started).max(0).saturating_mul(1_000_000)});
                let opts = json!({"type": "step.sendEvent"});
                match sent {
                    Ok(ids) => {
                        let mut op = base(Opcode::StepRun);
                        op.opts = Some(opts);
                        op.data = Some(json!(ids));
                        op.timing = Some(timing);
                        op
                    }
                    Err(message) => {
                        tracing::warn!(step = %step_id, error = %message, "sending a step's events failed");
                        let mut op = base(if last_attempt {
                            Opcode::StepFailed
                        } else {
                            Opcode::StepError
                        });
                        op.opts = Some(opts);
                        op.error = Some(error_json(&ErrorBody::new("SendEventError", message)));
                        op.timing = Some(timing);
                        extra.push(Self::no_retry(last_attempt));
                        op
                    }
                }
            }
        };
        (op, extra)
    }
}

/// The memo in completion order (`ctx.stack.stack`), then any step the stack does not
/// list, each read the way the JS SDK reads it.
fn memo_in_order(mut steps: Map<String, Value>, stack: &[String]) -> Vec<(String, ExternalMemo)> {
    let mut out = Vec::with_capacity(steps.len());
    let mut take = |hash: String, value: Value| {
        let memo = match StepMemo::parse(&value) {
            StepMemo::Data(v) => ExternalMemo::Completed(v),
            StepMemo::Error(e) => ExternalMemo::Failed(error_body(&e)),
            StepMemo::Input(i) => ExternalMemo::Input(i),
        };
        out.push((hash, memo));
    };
    for hash in stack {
        if let Some(v) = steps.remove(hash) {
            take(hash.clone(), v);
        }
    }
    for (hash, v) in steps {
        take(hash, v);
    }
    out
}

fn host(headers: &HeaderMap) -> &str {
    header(headers, "host").unwrap_or("127.0.0.1")
}

async fn handle(
    State(served): State<Served>,
    method: Method,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return served.bad_request(
                format!("bad query string: {}", e.body_text()),
                &Verified::Dev,
            )
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status().as_u16();
            return served.json(
                status,
                &json!({"name": "Error", "message": e.body_text()}),
                vec![],
                &Verified::Dev,
            );
        }
    };
    match method {
        Method::GET => served.introspect(&headers),
        Method::PUT => served.put(&q, &headers, &body).await,
        Method::POST => served.post(&q, &headers, &body).await,
        other => served.json(
            405,
            &json!({"name": "Error", "message": format!("method {other} is not allowed on /api/inngest (allowed: GET, PUT, POST)")}),
            vec![("Allow".into(), "GET, PUT, POST".into())],
            &Verified::Dev,
        ),
    }
}
