//! A stand-in Inngest executor drives Rust functions served at `/api/inngest` over real
//! HTTP, step by step, as an Inngest server does (issue 8 §4, "the serve side"): it syncs
//! the app (the register goes to a stand-in API on another socket), reads the step URLs
//! from the registration, sends signed JCS call requests, reads the answers with the very
//! rules Stepdesk applies to SDK apps (`stepdesk_inngest::response`), keeps the memo and
//! the stack, retries failed steps with `attempt` + 1, ends sleeps, delivers the awaited
//! event, runs invoked functions and the failure handler. Unsigned, stale and tampered
//! requests get 401.

mod common;

use std::time::Duration;

use serde_json::{json, Map, Value};
use stepdesk_engine::time::now_ms;
use stepdesk_engine::{Error, ErrorBody, Function, Invoke, WaitForEvent};
use stepdesk_inngest::response::{parse_call_response, CallOutcome, CallResponse};
use stepdesk_inngest::wire::{CallCtx, CallRequest, CallStack, Op, Opcode, StepMemo};
use stepdesk_inngest::{duration, sign};
use stepdesk_serve::{Mode, ServeConfig, Served};

use common::{serve, stand_in, StandIn, KEY};

/// `onboard`: run, sleep, wait, a step that fails once with Retry-After, send, invoke.
/// `score`: what `onboard` invokes. `doomed`: a step that always fails, and a failure
/// handler that reports the function id it was told about.
fn functions() -> Vec<Function> {
    let onboard = Function::builder("onboard")
        .on_event("app/user.created")
        .retries(2)
        .handler(|ctx| async move {
            let user_id = ctx.event.data["userId"].as_str().unwrap_or("").to_string();
            let u = user_id.clone();
            let user: Value = ctx
                .step
                .run("load-user", || async move {
                    Ok(json!({"id": u, "plan": "pro"}))
                })
                .await?;
            ctx.step.sleep("cool-down", Duration::from_secs(2)).await?;
            let approval = ctx
                .step
                .wait_for_event(
                    "approval",
                    WaitForEvent::new("app/approved", Duration::from_secs(3600))
                        .matching("data.userId"),
                )
                .await?;
            let attempt = ctx.attempt;
            let charge: Value = ctx
                .step
                .run("charge", || async move {
                    if attempt == 0 {
                        return Err(Error::RetryAfter(
                            ErrorBody::new("RateLimited", "the card processor is busy"),
                            now_ms() + 30_000,
                        ));
                    }
                    Ok(json!({"charged": true, "attempt": attempt}))
                })
                .await?;
            let ids = ctx
                .step
                .send_event(
                    "notify",
                    vec![json!({"name": "app/notified", "data": {"userId": user_id}})],
                )
                .await?;
            let score: Value = ctx
                .step
                .invoke(
                    "score",
                    Invoke {
                        function_id: "score".into(),
                        data: json!({"userId": user_id}).as_object().unwrap().clone(),
                        timeout: Duration::from_secs(600),
                    },
                )
                .await?;
            Ok(json!({
                "user": user,
                "approved_by": approval.map(|e| e.data["by"].clone()),
                "charge": charge,
                "sent": ids,
                "score": score,
            }))
        })
        .unwrap();
    let score = Function::builder("score")
        .on_event("app/score")
        .handler(|ctx| async move {
            let id = ctx.event.data["userId"].as_str().unwrap_or("").to_string();
            let s: u32 = ctx.step.run("compute", || async { Ok(42) }).await?;
            Ok(json!({"userId": id, "score": s}))
        })
        .unwrap();
    let doomed = Function::builder("doomed")
        .on_event("app/doomed")
        .retries(1)
        .on_failure(|ctx| async move {
            Ok(json!({"handled": ctx.event.data["function_id"], "error": ctx.event.data["error"]["message"]}))
        })
        .handler(|ctx| async move {
            let v: Value = ctx
                .step
                .run("always-fails", || async {
                    Err::<Value, _>(Error::retriable("the service is down"))
                })
                .await?;
            Ok(v)
        })
        .unwrap();
    vec![onboard, score, doomed]
}

/// The stand-in executor: one run at a time, its state as an Inngest server keeps it.
struct Executor {
    http: reqwest::Client,
    key: Option<String>,
    /// Composite function id → step URL, from the registration.
    urls: Map<String, Value>,
    version: i64,
}

struct Run {
    function: String,
    run_id: String,
    events: Vec<Value>,
    steps: Map<String, Value>,
    stack: Vec<String>,
    max_attempts: u32,
    /// What the run did, for the assertions: (opcode, step user id).
    log: Vec<(String, String)>,
    /// The `Retry-After` of each `StepError`, as the driver reads it (ms since the epoch).
    retry_at: Vec<Option<i64>>,
}

impl Executor {
    async fn call(&mut self, run: &Run, step_id: &str, attempt: u32) -> CallResponse {
        let mut req = CallRequest::new(
            run.events.clone(),
            CallCtx {
                run_id: run.run_id.clone(),
                step_id: step_id.to_string(),
                attempt,
                max_attempts: Some(run.max_attempts),
                stack: CallStack::of(run.stack.clone()),
                ..CallCtx::default()
            },
        );
        req.steps = run.steps.clone();
        req.version = self.version;
        let body = req.to_body();
        let base = self.urls[&run.function].as_str().unwrap();
        let url = base.replace("stepId=step", &format!("stepId={step_id}"));
        let mut r = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-run-id", &run.run_id);
        if let Some(key) = &self.key {
            let t = now_ms() / 1000;
            r = r.header("x-inngest-signature", sign::signature_header(&body, key, t));
        }
        let res = r.body(body).send().await.unwrap();
        let status = res.status().as_u16();
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let bytes = res.bytes().await.unwrap();
        // A verified request gets a signed answer, over its raw bytes.
        if let Some(key) = &self.key {
            let sig = headers
                .iter()
                .find(|(k, _)| k == "x-inngest-signature")
                .map(|(_, v)| v.clone())
                .expect("the answer to a signed request is signed");
            let (t, s) = sign::parse_header(&sig).unwrap();
            assert_eq!(s, sign::signature(&bytes, key, t), "the answer's signature");
        }
        let parsed = parse_call_response(status, &headers, &bytes, now_ms());
        assert!(
            !matches!(parsed.outcome, CallOutcome::NotSdk { .. }),
            "every answer is an SDK's"
        );
        if let Some(v) = parsed.req_version {
            self.version = v;
        }
        parsed
    }

    fn memo(run: &mut Run, id: &str, memo: Value) {
        run.steps.insert(id.to_string(), memo);
        run.stack.push(id.to_string());
    }

    /// Drives a run to its end: the function's result, or its final error. `deliver`
    /// answers a wait (the event, or None for a timeout).
    async fn drive(
        &mut self,
        mut run: Run,
        deliver: &dyn Fn(&Op) -> Option<Value>,
    ) -> (Result<Value, Value>, Run) {
        let mut attempt = 0;
        let mut target = "step".to_string();
        for _ in 0..50 {
            let r = self.call(&run, &target, attempt).await;
            let ops = match r.outcome {
                CallOutcome::Complete(v) => return (Ok(v), run),
                CallOutcome::Error {
                    error, retriable, ..
                } => {
                    if retriable && attempt + 1 < run.max_attempts {
                        attempt += 1;
                        continue;
                    }
                    return (Err(error), run);
                }
                CallOutcome::Ops(ops) => ops,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(ops.len(), 1, "a Rust function reaches one step at a time");
            let op = &ops[0];
            let user_id = op.user_id().unwrap().to_string();
            run.log.push((op.op.name().to_string(), user_id.clone()));
            target = "step".into();
            match &op.op {
                Opcode::StepRun | Opcode::StepFailed => {
                    Self::memo(&mut run, &op.id, StepMemo::for_op(op).unwrap());
                    attempt = 0;
                }
                Opcode::StepError => {
                    assert_eq!(r.no_retry, Some(false));
                    run.retry_at.push(r.retry_at);
                    attempt += 1;
                    assert!(
                        attempt < run.max_attempts,
                        "the SDK reports the last attempt as StepFailed"
                    );
                }
                Opcode::StepPlanned => {
                    target = op.id.clone();
                }
                Opcode::Sleep => {
                    let wake = duration::sleep_until(op, now_ms()).unwrap();
                    assert!(wake > now_ms(), "a sleep in the future");
                    Self::memo(&mut run, &op.id, StepMemo::sleep());
                    attempt = 0;
                }
                Opcode::WaitForEvent => {
                    Self::memo(&mut run, &op.id, StepMemo::wait(deliver(op)));
                    attempt = 0;
                }
                Opcode::InvokeFunction => {
                    let spec = op.invoke().unwrap();
                    let child = Run {
                        function: spec.function_id.clone(),
                        run_id: format!("{}-child", run.run_id),
                        events: vec![
                            json!({"name": "inngest/function.invoked", "data": spec.payload["data"],
                                            "user": {}, "id": "01JINV", "ts": now_ms()}),
                        ],
                        steps: Map::new(),
                        stack: vec![],
                        max_attempts: 1,
                        log: vec![],
                        retry_at: vec![],
                    };
                    let (result, _) = Box::pin(self.drive(child, deliver)).await;
                    let memo = match result {
                        Ok(v) => StepMemo::data(v),
                        Err(e) => StepMemo::error(e),
                    };
                    Self::memo(&mut run, &op.id, memo);
                    attempt = 0;
                }
                other => panic!("unexpected op {other:?}"),
            }
        }
        panic!("the run did not end");
    }
}

fn new_run(function: &str, run_id: &str, event: Value, max_attempts: u32) -> Run {
    Run {
        function: function.into(),
        run_id: run_id.into(),
        events: vec![event],
        steps: Map::new(),
        stack: vec![],
        max_attempts,
        log: vec![],
        retry_at: vec![],
    }
}

/// Serves the functions on a real socket (cloud mode with the captures' key when
/// `signed`), syncs them to the stand-in API, and returns an executor that knows their URLs.
async fn setup(signed: bool) -> (Executor, StandIn, String) {
    let (api, stand_in) = stand_in().await;
    let mut config = ServeConfig::dev(&api);
    if signed {
        config.mode = Mode::Cloud;
        config.signing_key = Some(KEY.into());
        config.event_key = Some("evt-key".into());
    }
    let served = Served::new(config, functions()).unwrap();
    let addr = serve(served.router()).await;
    let http = reqwest::Client::new();
    // The server asks for a sync (unsigned PUT: allowed, as the SDKs allow it).
    let res = http
        .put(format!("http://{addr}/api/inngest"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-inngest-sync-kind"], "out_of_band");
    let register = stand_in.received().pop().unwrap();
    assert_eq!(register.path, "/fn/register");
    if signed {
        assert_eq!(
            register.header("authorization"),
            Some(format!("Bearer {}", sign::bearer(KEY).unwrap()).as_str())
        );
    }
    let mut urls = Map::new();
    for f in register.body["functions"].as_array().unwrap() {
        urls.insert(
            f["id"].as_str().unwrap().to_string(),
            f["steps"]["step"]["runtime"]["url"].clone(),
        );
    }
    let executor = Executor {
        http,
        key: signed.then(|| KEY.to_string()),
        urls,
        version: -1,
    };
    (executor, stand_in, format!("http://{addr}/api/inngest"))
}

fn created(user: &str) -> Value {
    json!({"name": "app/user.created", "data": {"userId": user}, "user": {}, "id": "01JEVT1", "ts": now_ms()})
}

async fn onboard_end_to_end(signed: bool) {
    let (mut executor, stand_in, _) = setup(signed).await;
    let mut ids: Vec<&str> = executor.urls.keys().map(String::as_str).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "stepdesk-doomed",
            "stepdesk-doomed-failure",
            "stepdesk-onboard",
            "stepdesk-score"
        ]
    );
    let deliver = |op: &Op| {
        let wait = op.wait_for_event().unwrap();
        assert_eq!(wait.event, "app/approved");
        assert_eq!(
            wait.if_expr.as_deref(),
            Some("event.data.userId == async.data.userId")
        );
        assert_eq!(wait.timeout.as_deref(), Some("1h"));
        Some(
            json!({"name": "app/approved", "data": {"userId": "u1", "by": "ops"},
                    "user": {}, "id": "01JEVT2", "ts": now_ms()}),
        )
    };
    let (result, run) = executor
        .drive(
            new_run("stepdesk-onboard", "01JRUN1", created("u1"), 3),
            &deliver,
        )
        .await;
    let result = result.unwrap();
    assert_eq!(result["user"], json!({"id": "u1", "plan": "pro"}));
    assert_eq!(result["approved_by"], "ops");
    assert_eq!(result["charge"], json!({"charged": true, "attempt": 1}));
    assert_eq!(result["score"], json!({"userId": "u1", "score": 42}));
    let log: Vec<(&str, &str)> = run
        .log
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        log,
        [
            ("StepRun", "load-user"),
            ("Sleep", "cool-down"),
            ("WaitForEvent", "approval"),
            ("StepError", "charge"),
            ("StepRun", "charge"),
            ("StepRun", "notify"),
            ("InvokeFunction", "score"),
        ]
    );
    // The charge's Retry-After (30 s) reached the executor; a plain retriable error has none.
    let at = run.retry_at[0].expect("a Retry-After");
    assert!(
        (now_ms() + 20_000..=now_ms() + 31_000).contains(&at),
        "{at}"
    );
    // The send went to the event API (with the event key in cloud mode), and the step's
    // value is the ids it returned.
    let sends: Vec<_> = stand_in
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/e/"))
        .collect();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        sends[0].path,
        if signed {
            "/e/evt-key"
        } else {
            "/e/NO_EVENT_KEY_SET"
        }
    );
    assert_eq!(sends[0].body[0]["name"], "app/notified");
    assert_eq!(sends[0].body[0]["data"], json!({"userId": "u1"}));
    assert_eq!(result["sent"], json!(["01JSENT0000000000000000000"]));
}

#[tokio::test]
async fn a_stand_in_executor_drives_a_rust_function_through_every_kind_of_step() {
    onboard_end_to_end(false).await;
}

#[tokio::test]
async fn the_same_run_signed_as_in_cloud_mode() {
    onboard_end_to_end(true).await;
}

#[tokio::test]
async fn a_step_failing_on_every_attempt_fails_the_run_and_its_handler_runs() {
    let (mut executor, _, _) = setup(true).await;
    let event =
        json!({"name": "app/doomed", "data": {}, "user": {}, "id": "01JEVT3", "ts": now_ms()});
    let (result, run) = executor
        .drive(
            new_run("stepdesk-doomed", "01JRUN2", event.clone(), 2),
            &|_| None,
        )
        .await;
    let error = result.unwrap_err();
    assert_eq!(error["message"], "the service is down");
    let log: Vec<&str> = run.log.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(log, ["StepError", "StepFailed"]);
    assert_eq!(run.retry_at, [None]);
    // Inngest then sends the failure event, naming the function by its composite id; the
    // handler sees Stepdesk's own id.
    let failed = json!({"name": "inngest/function.failed", "user": {}, "id": "01JEVT4", "ts": now_ms(),
                        "data": {"function_id": "stepdesk-doomed", "run_id": "01JRUN2", "error": error, "event": event}});
    let (handled, _) = executor
        .drive(
            new_run("stepdesk-doomed-failure", "01JRUN3", failed, 1),
            &|_| None,
        )
        .await;
    assert_eq!(
        handled.unwrap(),
        json!({"handled": "doomed", "error": "the service is down"})
    );
}

#[tokio::test]
async fn a_wait_that_times_out_reads_as_none() {
    let (mut executor, _, _) = setup(false).await;
    let (result, _) = executor
        .drive(
            new_run("stepdesk-onboard", "01JRUN4", created("u2"), 3),
            &|_| None,
        )
        .await;
    assert_eq!(result.unwrap()["approved_by"], Value::Null);
}

#[tokio::test]
async fn unsigned_stale_and_tampered_requests_get_401() {
    let (executor, _, _) = setup(true).await;
    let url = executor.urls["stepdesk-onboard"]
        .as_str()
        .unwrap()
        .to_string();
    let body = CallRequest::new(
        vec![created("u1")],
        CallCtx {
            run_id: "01JRUN5".into(),
            ..CallCtx::default()
        },
    )
    .to_body();
    let now = now_ms() / 1000;
    let tampered = String::from_utf8(body.clone()).unwrap().replace("u1", "u9");
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("unsigned", None, body.clone()),
        (
            "stale",
            Some(sign::signature_header(&body, KEY, now - 301)),
            body.clone(),
        ),
        (
            "from the future",
            Some(sign::signature_header(&body, KEY, now + 301)),
            body.clone(),
        ),
        (
            "tampered",
            Some(sign::signature_header(&body, KEY, now)),
            tampered.into_bytes(),
        ),
        (
            "another key",
            Some(sign::signature_header(&body, "signkey-prod-abcd", now)),
            body.clone(),
        ),
        ("garbage", Some("nonsense".into()), body.clone()),
    ];
    for (what, sig, sent) in cases {
        let mut r = executor.http.post(&url).body(sent);
        if let Some(s) = sig {
            r = r.header("x-inngest-signature", s);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        assert!(res.headers().get("x-inngest-sdk").is_none(), "{what}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v, json!({"message": "Unauthorized"}), "{what}");
    }
    // Signed properly, the same request runs.
    let res = executor
        .http
        .post(&url)
        .header(
            "x-inngest-signature",
            sign::signature_header(&body, KEY, now),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
}

#[tokio::test]
async fn served_functions_keep_only_their_handlers_locally() {
    let served = Served::new(ServeConfig::dev("http://127.0.0.1:1"), functions()).unwrap();
    let local = served.local_functions(functions());
    assert_eq!(local.len(), 3);
    for f in &local {
        assert!(f.triggers.is_empty(), "{}: no local trigger", f.id);
        let config = f.config.as_ref().unwrap();
        assert_eq!(
            config["served_to_inngest"]["id"],
            format!("stepdesk-{}", f.id)
        );
        assert!(!config["triggers"].as_array().unwrap().is_empty());
    }
    // A local engine with them starts no run for their events.
    let registry = stepdesk_engine::Registry::new(local).unwrap();
    let event: stepdesk_engine::Event = serde_json::from_value(json!({
        "name": "app/user.created", "data": {"userId": "u1"}, "user": {}, "id": "e", "ts": 0
    }))
    .unwrap();
    assert!(registry
        .matching(&event, &serde_json::to_value(&event).unwrap())
        .is_empty());
}
