//! The driver and the app registry against a scripted app over real HTTP: the engine on a
//! real SQLite file, Stepdesk's SDK routes on a loopback port, and an app that answers the
//! call requests the way the SDKs do (the shapes of the captures in
//! shared/reference/sdk-captures). The official SDKs themselves are exercised by
//! tests/sdk/ against the real binary; this file pins the protocol rules one by one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use serde_json::{json, Value};
use stepdesk_engine::{Backoff, Engine, EngineConfig};
use stepdesk_inngest::stepid;
use stepdesk_sdk::{Apps, SdkConfig};

const ADMIN: &str = "the-admin-token";

/// What the scripted app answers to one call request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    /// Checkpoints to post before answering, as JS v4 does: each a `steps` list, with the
    /// request's `fn_id` and `qi_id` unless the body given has its own.
    checkpoints: Vec<Value>,
    /// How long the app takes to answer.
    delay: Duration,
}

impl Reply {
    /// A 206 with these ops, as an SDK sends it.
    fn ops(ops: Value) -> Reply {
        Reply::answer(206, vec![], ops)
    }

    fn done(value: Value) -> Reply {
        Reply::answer(200, vec![], value)
    }

    /// Any other answer: this status, these headers, this body.
    fn answer(status: u16, headers: Vec<(&'static str, String)>, body: Value) -> Reply {
        Reply {
            status,
            headers,
            body,
            checkpoints: vec![],
            delay: Duration::ZERO,
        }
    }

    fn checkpoint(mut self, steps: Value) -> Reply {
        self.checkpoints.push(steps);
        self
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// The call requests the app received: (step id, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;
type Script = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

#[derive(Clone)]
struct AppState {
    stepdesk: String,
    url: String,
    functions: Arc<Mutex<Value>>,
    script: Script,
    seen: Seen,
    /// Leave out `X-Inngest-SDK` (not an SDK).
    anonymous: bool,
    /// The status of every checkpoint the app posted.
    checkpointed: Arc<Mutex<Vec<u16>>>,
}

async fn app_put(State(s): State<AppState>) -> Response {
    let body = json!({
        "url": s.url,
        "deployType": "ping",
        "framework": "test",
        "appName": "fake",
        "sdk": "js:v4.24.0",
        "v": "0.1",
        "functions": s.functions.lock().unwrap().clone(),
    });
    let res = reqwest::Client::new()
        .post(format!("{}/fn/register", s.stepdesk))
        .json(&body)
        .send()
        .await
        .unwrap();
    let ok = res.status().is_success();
    let reply: Value = res.json().await.unwrap_or_default();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        status,
        [("x-inngest-sdk", "inngest-js:v4.24.0")],
        axum::Json(json!({"message": if ok {"Successfully registered".to_string()} else {reply.to_string()}, "modified": reply["modified"]})),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct CallQuery {
    #[serde(rename = "fnId")]
    _fn_id: String,
    #[serde(rename = "stepId")]
    step_id: String,
}

async fn app_post(State(s): State<AppState>, Query(q): Query<CallQuery>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    s.seen
        .lock()
        .unwrap()
        .push((q.step_id.clone(), request.clone()));
    // As the SDKs do: a request sent without the run's state (`use_api`) fetches it.
    let mut request = request;
    if request["ctx"]["use_api"] == json!(true) {
        let run_id = request["ctx"]["run_id"].as_str().unwrap().to_string();
        let get = |what: &str| {
            reqwest::Client::new()
                .get(format!("{}/v0/runs/{run_id}/{what}", s.stepdesk))
                .send()
        };
        let (events, steps) = (get("batch").await.unwrap(), get("actions").await.unwrap());
        assert_eq!(
            (events.status().as_u16(), steps.status().as_u16()),
            (200, 200)
        );
        request["events"] = events.json().await.unwrap();
        request["steps"] = steps.json().await.unwrap();
    }
    let reply = (s.script)(&q.step_id, &request);
    for steps in &reply.checkpoints {
        let run_id = request["ctx"]["run_id"].as_str().unwrap();
        let body = if steps.is_object() {
            steps.clone()
        } else {
            json!({"run_id": run_id, "fn_id": request["ctx"]["fn_id"], "qi_id": request["ctx"]["qi_id"],
                   "request_id": "r", "generation_id": 0, "request_started_at": 0, "steps": steps, "ts": 0})
        };
        let res = reqwest::Client::new()
            .post(format!("{}/v1/checkpoint/{run_id}/async", s.stepdesk))
            .json(&body)
            .send()
            .await
            .unwrap();
        s.checkpointed.lock().unwrap().push(res.status().as_u16());
    }
    tokio::time::sleep(reply.delay).await;
    let mut headers = HeaderMap::new();
    if !s.anonymous {
        headers.insert("x-inngest-sdk", "inngest-js:v4.24.0".parse().unwrap());
        headers.insert("x-inngest-req-version", "2".parse().unwrap());
    }
    for (k, v) in reply.headers {
        headers.insert(k, v.parse().unwrap());
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        headers,
        axum::Json(reply.body),
    )
        .into_response()
}

struct Harness {
    engine: Engine,
    apps: Apps,
    app_url: String,
    stepdesk: String,
    functions: Arc<Mutex<Value>>,
    seen: Seen,
    checkpointed: Arc<Mutex<Vec<u16>>>,
    dir: tempfile::TempDir,
}

fn engine_config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.backoff = Backoff::Fixed(Duration::from_millis(100));
    config
}

fn sdk_config() -> SdkConfig {
    SdkConfig {
        poll: false,
        poll_interval: Duration::from_secs(3600),
        ..SdkConfig::default()
    }
}

/// The engine and registry on `dir`, with the apps' stored functions.
async fn open(dir: &std::path::Path) -> (Engine, Apps, Vec<String>) {
    let config = engine_config(dir);
    let store = config.open_store().await.unwrap();
    let (apps, stored) = Apps::open(store.clone(), sdk_config()).await.unwrap();
    let ids = stored
        .iter()
        .flat_map(|(_, fs)| fs.iter().map(|f| f.id.clone()))
        .collect();
    let engine = Engine::builder(config)
        .store(store)
        .functions_from_store(move |_| async move { Ok(stored) })
        .start()
        .await
        .unwrap();
    apps.attach(engine.clone());
    (engine, apps, ids)
}

fn function(id: &str, event: &str, app_url: &str) -> Value {
    json!({
        "id": format!("fake-{id}"),
        "name": id,
        "triggers": [{"event": event}],
        "steps": {"step": {"id": "step", "name": "step", "runtime": {
            "type": "http", "url": format!("{app_url}?fnId=fake-{id}&stepId=step")}}},
    })
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

async fn harness_with(script: Script, anonymous: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (engine, apps, _) = open(dir.path()).await;
    let (sd_listener, stepdesk) = listen().await;
    let routes = stepdesk_sdk::routes::router(apps.clone(), engine.clone(), ADMIN.into());
    tokio::spawn(async move { axum::serve(sd_listener, routes).await.unwrap() });

    let (app_listener, app_base) = listen().await;
    let app_url = format!("{app_base}/api/inngest");
    let functions = Arc::new(Mutex::new(json!([function(
        "hello",
        "demo/hello",
        &app_url
    )])));
    let seen: Seen = Arc::default();
    let checkpointed: Arc<Mutex<Vec<u16>>> = Arc::default();
    let state = AppState {
        checkpointed: checkpointed.clone(),
        stepdesk: stepdesk.clone(),
        url: app_url.clone(),
        functions: functions.clone(),
        script,
        seen: seen.clone(),
        anonymous,
    };
    let app = Router::new()
        .route("/api/inngest", put(app_put).post(app_post))
        .with_state(state);
    tokio::spawn(async move { axum::serve(app_listener, app).await.unwrap() });
    let added = apps.add(&app_url).await.unwrap();
    assert_eq!(added.error, None, "{added:?}");
    assert_eq!(added.app_id.as_deref(), Some("fake"));
    Harness {
        engine,
        apps,
        app_url,
        stepdesk,
        functions,
        seen,
        checkpointed,
        dir,
    }
}

async fn harness(script: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> Harness {
    harness_with(Arc::new(script), false).await
}

async fn send(engine: &Engine, name: &str, data: Value) {
    let body = json!({"name": name, "data": data}).to_string();
    let events = stepdesk_engine::event::parse_events(body.as_bytes()).unwrap();
    engine.send_events(events).await.unwrap();
}

/// Waits for the function's only run to reach `status`; returns its detail.
async fn wait_run(engine: &Engine, status: &str) -> stepdesk_engine::admin::RunDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = engine
            .admin()
            .runs(serde_json::from_value(json!({"function_id": "fake-hello"})).unwrap())
            .await
            .unwrap();
        if let Some(r) = page.runs.first() {
            let d = engine.admin().run(&r.id).await.unwrap();
            if d.summary.status == status {
                return d;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("run still {:?}, not {status}: {d:#?}", d.summary.status);
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("no run");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn step_run(id: &str, data: Value) -> Value {
    json!({"id": stepid::hash(id), "op": "StepRun", "name": id, "displayName": id, "opts": {}, "data": data})
}

fn memo_has(req: &Value, id: &str) -> bool {
    req["steps"].get(stepid::hash(id)).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_steps_are_memoized_in_completion_order() {
    let h = harness(|_, req| {
        if !memo_has(req, "a") {
            Reply::ops(json!([step_run("a", json!({"n": 1}))]))
        } else if !memo_has(req, "b") {
            Reply::ops(json!([step_run("b", json!(2))]))
        } else {
            Reply::done(json!({"a": req["steps"][stepid::hash("a")]["data"], "b": req["steps"][stepid::hash("b")]["data"]}))
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({"who": "ada"})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!({"a": {"n": 1}, "b": 2})));
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "one request per step, then the end: {seen:#?}"
    );
    let last = &seen[2].1;
    assert_eq!(seen[2].0, "step");
    assert_eq!(
        last["ctx"]["stack"]["stack"],
        json!([stepid::hash("a"), stepid::hash("b")])
    );
    assert_eq!(last["event"]["data"], json!({"who": "ada"}));
    assert_eq!(last["events"][0]["name"], json!("demo/hello"));
    assert_eq!(
        seen[0].1["version"],
        json!(-1),
        "-1 until the SDK has said its version"
    );
    assert_eq!(
        last["version"],
        json!(2),
        "then the version the SDK reported"
    );
    // Discovery requests carry `fn_id` and a fresh `qi_id` per execution (JS v4 then
    // checkpoints, see the checkpoint tests).
    assert_eq!(last["ctx"]["fn_id"], json!("fake-hello"));
    let qi = |i: usize| seen[i].1["ctx"]["qi_id"].as_str().unwrap().to_string();
    assert_ne!(qi(0), qi(2), "one qi_id per execution");
    let hashes: Vec<&str> = d.steps.iter().map(|s| s.hash.as_str()).collect();
    assert_eq!(hashes, [stepid::hash("a"), stepid::hash("b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_error_is_retried_with_the_attempt_counted_per_step() {
    let h = harness(|_, req| {
        let attempt = req["ctx"]["attempt"].as_u64().unwrap();
        if !memo_has(req, "flaky") {
            if attempt == 0 {
                Reply::ops(
                    json!([{"id": stepid::hash("flaky"), "op": "StepError", "name": "flaky",
                    "error": {"name": "Error", "message": "boom", "stack": "at flaky"}}]),
                )
            } else {
                Reply::ops(json!([step_run("flaky", json!({"attempt": attempt}))]))
            }
        } else {
            Reply::done(req["steps"][stepid::hash("flaky")]["data"].clone())
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!({"attempt": 1})));
    let seen = h.seen.lock().unwrap().clone();
    let attempts: Vec<u64> = seen
        .iter()
        .map(|(_, r)| r["ctx"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts,
        [0, 1, 0],
        "per step: the retry is attempt 1, the next item 0 again"
    );
    assert_eq!(
        seen[0].1["ctx"]["max_attempts"],
        json!(5),
        "default: 4 retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retriable_function_error_fails_the_run_at_once() {
    let h = harness(|_, _| {
        Reply::answer(
            400,
            vec![("x-inngest-no-retry", "true".into())],
            json!({"name": "NonRetriableError", "message": "bad input", "stack": "at fn"}),
        )
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Failed").await;
    let err = d.error.expect("the run's error");
    assert_eq!(err["name"], json!("NonRetriableError"));
    assert_eq!(err["message"], json!("bad input"));
    assert_eq!(h.seen.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_for_a_function_error() {
    let h = harness(|_, req| {
        if req["ctx"]["attempt"] == json!(0) {
            Reply::answer(
                500,
                vec![
                    ("retry-after", "1".into()),
                    ("x-inngest-no-retry", "false".into()),
                ],
                json!({"name": "RetryAfterError", "message": "later"}),
            )
        } else {
            Reply::done(json!("ok"))
        }
    })
    .await;
    let t0 = std::time::Instant::now();
    send(&h.engine, "demo/hello", json!({})).await;
    wait_run(&h.engine, "Completed").await;
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 waits a second, not the 100 ms backoff: {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_parallel_steps_run_by_targeted_requests() {
    let h = harness(|step_id, req| {
        let (a, b) = (memo_has(req, "a"), memo_has(req, "b"));
        if step_id == stepid::hash("a") {
            return Reply::ops(json!([step_run("a", json!("A"))]));
        }
        if step_id == stepid::hash("b") {
            return Reply::ops(json!([step_run("b", json!("B"))]));
        }
        match (a, b) {
            (false, false) => Reply::ops(json!([
                {"id": stepid::hash("a"), "op": "StepPlanned", "name": "a", "displayName": "a", "opts": {"type": "step.run"}},
                {"id": stepid::hash("b"), "op": "StepPlanned", "name": "b", "displayName": "b", "opts": {"type": "step.run"}},
            ])),
            // One step of the group finished (either may be first: both run at once), the
            // other not: the SDK plans it again.
            (true, false) => Reply::ops(json!([
                {"id": stepid::hash("b"), "op": "StepPlanned", "name": "b", "displayName": "b", "opts": {"type": "step.run"}},
            ])),
            (false, true) => Reply::ops(json!([
                {"id": stepid::hash("a"), "op": "StepPlanned", "name": "a", "displayName": "a", "opts": {"type": "step.run"}},
            ])),
            (true, true) => Reply::done(json!([req["steps"][stepid::hash("a")]["data"], req["steps"][stepid::hash("b")]["data"]])),
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!(["A", "B"])));
    let seen = h.seen.lock().unwrap().clone();
    for id in ["a", "b"] {
        let targeted: Vec<_> = seen
            .iter()
            .filter(|(s, _)| *s == stepid::hash(id))
            .collect();
        assert_eq!(
            targeted.len(),
            1,
            "one targeted request for {id}: {seen:#?}"
        );
        let ctx = &targeted[0].1["ctx"];
        assert_eq!(ctx["step_id"], json!(stepid::hash(id)));
        assert_eq!(ctx["disable_immediate_execution"], json!(true));
        assert!(
            ctx.get("fn_id").is_none(),
            "no checkpointing in a targeted request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_suspends_the_run_and_resumes_with_a_null_memo() {
    let h = harness(|_, req| {
        if !memo_has(req, "nap") {
            Reply::ops(json!([{"id": stepid::hash("nap"), "op": "Sleep", "name": "1s", "displayName": "nap"}]))
        } else {
            Reply::done(json!({"memo": req["steps"][stepid::hash("nap")]}))
        }
    })
    .await;
    let t0 = std::time::Instant::now();
    send(&h.engine, "demo/hello", json!({})).await;
    let running = wait_run(&h.engine, "Running").await;
    let _ = running;
    let d = wait_run(&h.engine, "Completed").await;
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(d.output, Some(json!({"memo": null})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_with_if_resumes_with_the_matching_event() {
    let h = harness(|_, req| {
        if !memo_has(req, "approval") {
            Reply::ops(json!([{"id": stepid::hash("approval"), "op": "WaitForEvent", "name": "demo/approved",
                "displayName": "approval", "opts": {"timeout": "1h", "if": "async.data.order == event.data.order && async.data.ok"}}]))
        } else {
            Reply::done(req["steps"][stepid::hash("approval")].clone())
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({"order": 7})).await;
    // The wait must exist before the events are sent (only later events match).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.seen.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&h.engine, "demo/approved", json!({"order": 8, "ok": true})).await;
    send(&h.engine, "demo/approved", json!({"order": 7, "ok": false})).await;
    send(
        &h.engine,
        "demo/approved",
        json!({"order": 7, "ok": true, "by": "grace"}),
    )
    .await;
    let d = wait_run(&h.engine, "Completed").await;
    let out = d.output.unwrap();
    assert_eq!(out["name"], json!("demo/approved"), "the bare event: {out}");
    assert_eq!(out["data"]["by"], json!("grace"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_the_sdk_header_is_a_failed_attempt() {
    let h = harness_with(Arc::new(|_, _| Reply::done(json!("hi"))), true).await;
    send(&h.engine, "demo/hello", json!({})).await;
    // Retried (100 ms backoff) until the attempts are used up, then failed.
    let d = wait_run(&h.engine, "Failed").await;
    let err = d.error.unwrap();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("did not answer as an Inngest SDK"),
        "{err}"
    );
    assert_eq!(h.seen.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_rules() {
    let h = harness(|_, _| Reply::done(json!(null))).await;
    let http = reqwest::Client::new();
    let body = json!({"url": h.app_url, "appName": "fake", "functions": h.functions.lock().unwrap().clone()});
    // The same configuration again: not modified.
    let first: Value = http
        .post(format!("{}/fn/register", h.stepdesk))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = http
        .post(format!("{}/fn/register", h.stepdesk))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["x-inngest-server-kind"], "dev");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["ok"], json!(true));
    assert_eq!(again["modified"], json!(false), "{first} then {again}");
    // Python's spellings and unknown fields.
    let py = json!({"url": h.app_url, "appname": "fake", "deploy_type": "ping", "whatever": 1,
        "functions": h.functions.lock().unwrap().clone()});
    let res = http
        .post(format!("{}/fn/register", h.stepdesk))
        .json(&py)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A cloud app talking to a dev server.
    let res = http
        .post(format!("{}/fn/register", h.stepdesk))
        .header("x-inngest-expected-server-kind", "cloud")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err["status"],
        json!(400),
        "JS reads the status from the body"
    );
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("expects a `cloud` server"),
        "{err}"
    );
    // Not a registration.
    let res = http
        .post(format!("{}/fn/register", h.stepdesk))
        .body("{\"url\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A function dropped from the app is archived: its event starts nothing any more.
    *h.functions.lock().unwrap() = json!([function("other", "demo/other", &h.app_url)]);
    let synced = h.apps.sync(&h.app_url).await.unwrap();
    assert_eq!(synced.functions, ["fake-other"]);
    send(&h.engine, "demo/hello", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = h
        .engine
        .admin()
        .runs(serde_json::from_value(json!({"function_id": "fake-hello"})).unwrap())
        .await
        .unwrap();
    assert!(page.runs.is_empty(), "{:?}", page.runs);
    // Removed: the app is gone and so are its functions.
    h.apps.remove(&h.app_url).await.unwrap();
    assert!(h.apps.list().await.unwrap().is_empty());
    assert!(h.engine.registry().get("fake-other").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_app_is_kept_with_its_error() {
    let h = harness(|_, _| Reply::done(json!(null))).await;
    let (l, dead) = listen().await;
    drop(l);
    let app = h.apps.add(&format!("{dead}/api/inngest")).await.unwrap();
    let err = app.error.expect("an error");
    assert!(err.starts_with("unreachable"), "{err}");
    assert_eq!(h.apps.list().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_resumes_after_a_restart_without_a_new_sync() {
    let h = harness(|_, req| {
        if !memo_has(req, "nap") {
            Reply::ops(json!([{"id": stepid::hash("nap"), "op": "Sleep", "name": "2s", "displayName": "nap"}]))
        } else {
            Reply::done(json!("rested"))
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Running").await;
    while h.seen.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.apps.stop();
    h.engine.shutdown(Duration::from_secs(5)).await;
    // Started again, the app's functions come from the stored registration (the app is not
    // asked to sync: polling is off), so the run finishes instead of failing as unknown.
    let (engine, _apps, ids) = open(h.dir.path()).await;
    assert_eq!(ids, ["fake-hello"]);
    let done = wait_run(&engine, "Completed").await;
    assert_eq!(done.summary.id, d.summary.id);
    assert_eq!(done.output, Some(json!("rested")));
    assert_eq!(
        h.seen.lock().unwrap().len(),
        2,
        "the sleep was not asked for again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoking_and_removing_need_the_admin_token() {
    let h = harness(|_, _| Reply::done(json!("invoked"))).await;
    let http = reqwest::Client::new();
    // An invocation is trusted by the engine's gates: no credential, no run.
    let res = http
        .post(format!("{}/invoke/fake-hello", h.stepdesk))
        .json(&json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("admin token"),
        "{err}"
    );
    let res = http
        .delete(format!("{}/fn/remove?url={}", h.stepdesk, h.app_url))
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(h.apps.list().await.unwrap().len(), 1, "not removed");
    let page = h
        .engine
        .admin()
        .runs(serde_json::from_value(json!({"function_id": "fake-hello"})).unwrap())
        .await
        .unwrap();
    assert!(page.runs.is_empty());
    // With it: the function runs.
    let res = http
        .post(format!("{}/invoke/fake-hello", h.stepdesk))
        .header("authorization", format!("Bearer {ADMIN}"))
        .json(&json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!("invoked")));
}

/// The run's steps as (id, status, started_at, ended_at).
fn timeline(d: &stepdesk_engine::admin::RunDetail) -> Vec<(String, String, i64, i64)> {
    d.steps
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                format!("{:?}", s.status),
                s.started_at.unwrap_or(0),
                s.ended_at.unwrap_or(0),
            )
        })
        .collect()
}

/// JS v4 checkpointing: the app runs every step inside the discovery request, posting each
/// to `/v1/checkpoint/{runId}/async`, then answers `RunComplete`: one request for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointed_steps_make_a_run_one_request() {
    let h = harness(|step, req| {
        assert_eq!(step, "step");
        Reply::ops(json!([{"id": stepid::hash("complete"), "op": "RunComplete", "data": {"sum": 3}}]))
            .checkpoint(json!([step_run("a", json!(1))]))
            .checkpoint(json!([step_run("b", json!(2))]))
            .checkpoint(json!([step_run("b", json!(2))]))
            .checkpoint(json!({"run_id": req["ctx"]["run_id"], "fn_id": "fake-hello", "qi_id": "not-this-execution", "steps": [step_run("c", json!(3))]}))
            .checkpoint(json!([{"id": stepid::hash("nap"), "op": "Sleep", "name": "1s"}]))
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!({"sum": 3})));
    assert_eq!(h.seen.lock().unwrap().len(), 1, "one call request");
    assert_eq!(
        *h.checkpointed.lock().unwrap(),
        [200, 200, 200, 409, 400],
        "a repeat is accepted, a stale execution gets 409, a sleep is not a checkpoint"
    );
    let ids: Vec<String> = timeline(&d).into_iter().map(|t| t.0).collect();
    assert_eq!(ids, ["a", "b"], "not `c` (stale), not the sleep");
    let b = d.steps.iter().find(|s| s.id == "b").unwrap();
    assert_eq!(b.output, Some(json!(2)));
}

/// A checkpoint for a run with no execution in flight is a stale dispatch; bad bodies are
/// 400s naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_outside_an_execution_is_stale() {
    let h = harness(|_, _| Reply::done(json!(null))).await;
    let post = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/v1/checkpoint/run-1/async", h.stepdesk))
            .json(&body)
            .send()
    };
    let res = post(json!({"run_id": "run-1", "fn_id": "fake-hello", "qi_id": "x", "steps": [step_run("a", json!(1))]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert!(res.headers().contains_key("x-inngest-server-kind"));
    let res = post(json!({"run_id": "run-2", "steps": []})).await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("run_id"),
        "{body}"
    );
    let res = reqwest::Client::new()
        .post(format!("{}/v1/checkpoint/run-1/async", h.stepdesk))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// Parallel steps run at once: both targeted requests are in flight together, the run goes
/// on with the first to finish (race mode: `after` runs while `slow` is still running), a
/// step is never requested twice while in flight, and the run ends once `slow` is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_steps_run_at_once_and_the_run_goes_on_with_the_first() {
    let slow = Duration::from_millis(1200);
    let h = harness(move |step, req| {
        let (fast, slow_id, after) = (stepid::hash("fast"), stepid::hash("slow"), stepid::hash("after"));
        let planned = |id: &str| json!({"id": stepid::hash(id), "op": "StepPlanned", "name": id, "displayName": id});
        if step == fast {
            return Reply::ops(json!([step_run("fast", json!("fast"))]));
        }
        if step == slow_id {
            return Reply::ops(json!([step_run("slow", json!("slow"))])).after(slow);
        }
        if step == after {
            return Reply::ops(json!([step_run("after", json!("after"))]));
        }
        match (memo_has(req, "fast") || memo_has(req, "slow"), memo_has(req, "after"), memo_has(req, "slow")) {
            (false, _, _) => Reply::ops(json!([planned("fast"), planned("slow")])),
            // The race is won: the function goes on; `slow` is still unfulfilled.
            (true, false, false) => Reply::ops(json!([planned("slow"), planned("after")])),
            (true, true, false) => Reply::ops(json!([planned("slow")])),
            (true, _, true) if !memo_has(req, "after") => Reply::ops(json!([planned("after")])),
            _ => Reply::done(json!("ok")),
        }
    })
    .await;
    let started = std::time::Instant::now();
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    let took = started.elapsed();
    let seen = h.seen.lock().unwrap().clone();
    let requests_for = |id: &str| seen.iter().filter(|(s, _)| *s == stepid::hash(id)).count();
    assert_eq!(requests_for("slow"), 1, "never started twice: {seen:#?}");
    assert_eq!(requests_for("fast"), 1);
    assert_eq!(requests_for("after"), 1);
    let t: std::collections::HashMap<String, (i64, i64)> = timeline(&d)
        .into_iter()
        .map(|(id, _, s, e)| (id, (s, e)))
        .collect();
    assert!(
        t["after"].1 < t["slow"].1,
        "`after` finished while `slow` was still running: {t:?}"
    );
    assert!(
        took < slow * 2,
        "the steps ran at once, not one after another: {took:?}"
    );
    assert_eq!(d.output, Some(json!("ok")));
}

/// A run whose state is over 4 MiB: the request goes without it (`use_api` in `ctx` and at
/// the top level), the SDK fetches it from `/v0/runs/{id}/batch` and `/actions` while the
/// request is in flight; afterwards those routes answer 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_is_fetched_by_the_sdk() {
    let big = "x".repeat(5 * 1024 * 1024);
    let data = big.clone();
    let h = harness(move |_, req| {
        if !memo_has(req, "big") {
            Reply::ops(json!([step_run("big", json!(data))]))
        } else {
            let got = req["steps"][stepid::hash("big")]["data"]
                .as_str()
                .unwrap_or("");
            Reply::done(json!({"len": got.len(), "event": req["events"][0]["name"]}))
        }
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(
        d.output,
        Some(json!({"len": big.len(), "event": "demo/hello"}))
    );
    let seen = h.seen.lock().unwrap().clone();
    let raw = &seen.last().unwrap().1;
    assert_eq!(raw["ctx"]["use_api"], json!(true));
    assert_eq!(raw["use_api"], json!(true));
    assert_eq!(raw["steps"], json!({}));
    assert_eq!(raw["events"], json!([]));
    assert_eq!(
        seen[0].1["use_api"],
        json!(false),
        "a small state goes in the request"
    );
    let res = reqwest::get(format!("{}/v0/runs/{}/actions", h.stepdesk, d.summary.id))
        .await
        .unwrap();
    assert_eq!(res.status(), 410, "nothing in flight: nothing served");
}

/// `Promise.race([step.waitForEvent(…, 1h), step.run("quick")])`: the SDK answers with the
/// wait and the planned step together; the run suspends on the wait, and when `quick`
/// answers, no execution is under way to record it. The run is woken for it and goes on with
/// `quick` at once, instead of after the wait's hour (found by a probe with the real JS SDK,
/// `group.parallel({mode: "race"})`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_step_answering_while_its_run_waits_wins_the_race_at_once() {
    let h = harness(|step, req| {
        if step == stepid::hash("quick") {
            return Reply::ops(json!([step_run("quick", json!("quick"))])).after(Duration::from_millis(300));
        }
        if memo_has(req, "quick") {
            return Reply::done(json!({"winner": "quick"}));
        }
        if memo_has(req, "wfe") {
            return Reply::done(json!({"winner": "wait"}));
        }
        Reply::ops(json!([
            {"id": stepid::hash("wfe"), "op": "WaitForEvent", "name": "demo/never", "displayName": "wfe", "opts": {"timeout": "1h"}},
            {"id": stepid::hash("quick"), "op": "StepPlanned", "name": "quick", "displayName": "quick"},
        ]))
    })
    .await;
    let t0 = std::time::Instant::now();
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    assert_eq!(d.output, Some(json!({"winner": "quick"})));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let quick = d.steps.iter().find(|s| s.id == "quick").unwrap();
    assert_eq!(quick.status, stepdesk_engine::model::StepStatus::Completed);
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .filter(|(s, _)| *s == stepid::hash("quick"))
            .count(),
        1,
        "run once"
    );
    assert_eq!(h.apps.runs_with_planned_steps(), 0, "nothing left behind");
}

/// A planned step answers after its run was cancelled (the run had gone on to a sleep in
/// another branch of a race, so no execution is under way): nobody will claim the answer;
/// the registry drops it once it has waited, asking the engine whether the run has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_steps_answer_is_dropped_once_its_run_has_ended() {
    // Long enough for the run to suspend and be cancelled before it answers, on a busy
    // machine too (an answer before the cancellation would be recorded, not left over).
    let slow = Duration::from_millis(2500);
    let h = harness(move |step, _| {
        if step == stepid::hash("slow") {
            return Reply::ops(json!([step_run("slow", json!("slow"))])).after(slow);
        }
        Reply::ops(json!([
            {"id": stepid::hash("nap"), "op": "Sleep", "name": "1h", "displayName": "nap"},
            {"id": stepid::hash("slow"), "op": "StepPlanned", "name": "slow", "displayName": "slow"},
        ]))
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let run_id = loop {
        let d = wait_run(&h.engine, "Running").await;
        if d.steps.iter().any(|s| s.hash == stepid::hash("nap")) {
            break d.summary.id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no sleep: {d:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        h.apps.drop_unclaimed(Duration::ZERO).await.unwrap(),
        0,
        "nothing answered yet"
    );
    h.engine.admin().cancel(&run_id).await.unwrap();
    // `slow` answers after the cancellation: nobody claims its answer.
    tokio::time::sleep(slow + Duration::from_millis(400)).await;
    assert_eq!(h.apps.runs_with_planned_steps(), 1);
    assert_eq!(
        h.apps
            .drop_unclaimed(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "not waited long enough"
    );
    assert_eq!(h.apps.drop_unclaimed(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(h.apps.runs_with_planned_steps(), 0);
}

/// A small HTTP server for `step.fetch` to call: `/ok` answers JSON with a header and echoes
/// the request's `authorization` and body; `/broken` answers 500. Returns its base URL and
/// what it received (path, authorization).
async fn fetch_target() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = got.clone();
    let app = Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let method = req.method().to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            seen.lock().unwrap().push((path.clone(), auth.clone()));
            if path == "/broken" {
                return (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response();
            }
            (
                [("x-test", "yes")],
                axum::Json(
                    json!({"method": method, "auth": auth, "body": String::from_utf8_lossy(&body)}),
                ),
            )
                .into_response()
        }
    });
    let (l, url) = listen().await;
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

/// `step.fetch` (the `Gateway` op): Stepdesk makes the request, whatever its status the
/// response is the step's result, `{status_code, headers, body}`; the recorded input leaves
/// the credentials out; an unreachable URL is a failed step after its retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_fetch_is_made_by_stepdesk_and_its_response_memoized() {
    let (target, got) = fetch_target().await;
    let urls = [
        format!("{target}/ok?page=2&access_token=s3cret"),
        format!("{target}/broken"),
        "http://127.0.0.1:9/unreachable".to_string(),
    ];
    let script_urls = urls.clone();
    let h = harness(move |_, req| {
        let gateway = |id: &str, url: &str| {
            json!([{"id": stepid::hash(id), "op": "Gateway", "name": id, "displayName": id,
                    "opts": {"url": url, "method": "POST", "headers": {"Authorization": "Bearer t0ken", "content-type": "text/plain"}, "body": "hi"}}])
        };
        for (i, url) in script_urls.iter().enumerate() {
            let id = format!("fetch-{i}");
            if !memo_has(req, &id) {
                return Reply::ops(gateway(&id, url));
            }
        }
        let memo = |i: usize| req["steps"][stepid::hash(&format!("fetch-{i}"))].clone();
        Reply::done(json!([memo(0), memo(1), memo(2)]))
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let d = wait_run(&h.engine, "Completed").await;
    let out = d.output.clone().unwrap();

    let ok = &out[0]["data"];
    assert_eq!(ok["status_code"], 200, "{out:#}");
    assert_eq!(ok["headers"]["x-test"], "yes");
    let echoed: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        json!({"method": "POST", "auth": "Bearer t0ken", "body": "hi"})
    );
    let broken = &out[1]["data"];
    assert_eq!(
        (broken["status_code"].clone(), broken["body"].clone()),
        (json!(500), json!("down for maintenance"))
    );
    let unreachable = out[2]["error"]["message"].as_str().unwrap_or_default();
    assert!(unreachable.contains("127.0.0.1:9/unreachable"), "{out:#}");

    let step = |id: &str| d.steps.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        step("fetch-0").status,
        stepdesk_engine::model::StepStatus::Completed
    );
    assert_eq!(
        step("fetch-1").status,
        stepdesk_engine::model::StepStatus::Completed
    );
    let failed = step("fetch-2");
    assert_eq!(failed.status, stepdesk_engine::model::StepStatus::Failed);
    assert!(failed.attempts > 1, "retried: {failed:#?}");
    let input = step("fetch-0").input.clone().unwrap();
    assert_eq!(input["headers"]["Authorization"], "[redacted]");
    assert_eq!(input["method"], "POST");
    assert!(
        !input.to_string().contains("t0ken") && !input.to_string().contains("s3cret"),
        "{input}"
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.iter().filter(|(p, _)| p == "/ok").count(),
        1,
        "fetched once: {got:?}"
    );
    assert!(got.iter().all(|(_, a)| a == "Bearer t0ken"));
}

/// Inngest features Stepdesk does not have yet answer 501 with a message that names them
/// (the SDKs put it in the error they raise), not "no such route".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_inngest_features_say_so() {
    let h = harness(|_, _| Reply::done(json!(null))).await;
    let client = reqwest::Client::new();
    for (path, says) in [
        ("/v1/checkpoint", "durable endpoints"),
        ("/v1/checkpoint/01ABC/steps", "durable endpoints"),
        ("/v1/realtime/publish?channel=c&topic=t", "realtime"),
        ("/v1/realtime/token", "realtime"),
    ] {
        let res = client
            .post(format!("{}{path}", h.stepdesk))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 501, "{path}");
        let body: Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(says) && error.contains("not supported by Stepdesk"),
            "{path}: {error}"
        );
    }
}

/// `Promise.all([A, B])`: A fails and must wait a minute (`Retry-After`); B answers while
/// the run waits for A's retry. B's answer must not run A before its retry is due (it is
/// recorded by the execution at A's retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_steps_answer_does_not_run_a_failed_step_before_its_retry() {
    let h = harness(|step, req| {
        let planned = |id: &str| json!({"id": stepid::hash(id), "op": "StepPlanned", "name": id, "displayName": id});
        if step == stepid::hash("a") {
            return Reply::answer(
                206,
                vec![("retry-after", "60".into())],
                json!([{"id": stepid::hash("a"), "op": "StepError", "name": "a",
                        "error": {"name": "Error", "message": "rate limited"}}]),
            );
        }
        if step == stepid::hash("b") {
            return Reply::ops(json!([step_run("b", json!("b"))])).after(Duration::from_millis(500));
        }
        let todo: Vec<Value> = ["a", "b"]
            .into_iter()
            .filter(|id| !memo_has(req, id))
            .map(planned)
            .collect();
        Reply::ops(Value::Array(todo))
    })
    .await;
    send(&h.engine, "demo/hello", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !h
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(s, _)| *s == stepid::hash("b"))
    {
        assert!(tokio::time::Instant::now() < deadline, "b never requested");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B answers after 500 ms; then give a wake-up time to (wrongly) run A again.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let seen = h.seen.lock().unwrap().clone();
    let requests_for_a = seen.iter().filter(|(s, _)| *s == stepid::hash("a")).count();
    assert_eq!(
        requests_for_a, 1,
        "a is not run again before its retry: {seen:#?}"
    );
}
