//! Shared by the serve tests: Rust twins of the captured SDK test app's functions, the
//! captures themselves, and a stand-in Inngest API (register and event endpoints) on a
//! real socket that records what it receives.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use stepdesk_engine::{Error, Function, WaitForEvent};

/// The captures' signing key (made up; every cloud-mode capture is signed with it).
pub const KEY: &str =
    "signkey-test-1234567812345678123456781234567812345678123456781234567812345678";

/// A capture from `stepdesk-inngest/tests/fixtures` (`js/20_hello_call1_no_steps`).
pub fn capture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../stepdesk-inngest/tests/fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The functions of the SDK test app the captures were taken from (`hello`, `sleeper`,
/// `waiter`, `nightly`, `flaky`, `flaky-body`), written with Stepdesk's step tools: the
/// same step ids, the same values, the same failures.
pub fn peers_demo() -> Vec<Function> {
    let hello = Function::builder("hello")
        .on_event("demo/hello")
        .handler(|ctx| async move {
            let name = ctx.event.data["name"].as_str().unwrap_or("").to_string();
            let a: Value = ctx
                .step
                .run("first-step", || async move {
                    Ok(json!({"greeting": format!("hello {name}")}))
                })
                .await?;
            let greeting = a["greeting"].as_str().unwrap_or("").to_uppercase();
            let b: Value = ctx
                .step
                .run("second-step", || async move {
                    Ok(json!({"upper": greeting, "n": 2}))
                })
                .await?;
            Ok(json!({"a": a, "b": b}))
        })
        .unwrap();
    let sleeper = Function::builder("sleeper")
        .on_event("demo/sleep")
        .handler(|ctx| async move {
            ctx.step.sleep("wait", Duration::from_secs(1)).await?;
            let r: String = ctx
                .step
                .run("after-sleep", || async { Ok("woke".to_string()) })
                .await?;
            Ok(json!({"r": r}))
        })
        .unwrap();
    let waiter = Function::builder("waiter")
        .on_event("demo/wait")
        .handler(|ctx| async move {
            let ev = ctx
                .step
                .wait_for_event(
                    "wait-approval",
                    WaitForEvent::new("demo/approved", Duration::from_secs(3600))
                        .when("event.data.id == async.data.id"),
                )
                .await?;
            let r: String = ctx
                .step
                .run("after-wait", || async move {
                    Ok(match ev {
                        Some(e) => format!("approved:{}", e.data["id"].as_str().unwrap_or("")),
                        None => "timeout".to_string(),
                    })
                })
                .await?;
            Ok(json!({"r": r}))
        })
        .unwrap();
    let nightly = Function::builder("nightly")
        .on_cron("0 3 * * *")
        .handler(|ctx| async move {
            let r: String = ctx
                .step
                .run("nightly-work", || async { Ok("done".to_string()) })
                .await?;
            Ok(r)
        })
        .unwrap();
    let flaky = Function::builder("flaky")
        .on_event("demo/flaky")
        .retries(2)
        .handler(|ctx| async move {
            let attempt = ctx.attempt;
            let v: Value = ctx
                .step
                .run("flaky-step", || async move {
                    if attempt == 0 {
                        return Err(Error::retriable(format!("boom on attempt {attempt}")));
                    }
                    Ok(json!({"ok": true, "attempt": attempt}))
                })
                .await?;
            Ok(v)
        })
        .unwrap();
    let flaky_body = Function::builder("flaky-body")
        .on_event("demo/flaky-body")
        .retries(2)
        .handler(|ctx| async move {
            if ctx.attempt == 0 {
                return Err(Error::retriable(format!(
                    "body boom on attempt {}",
                    ctx.attempt
                )));
            }
            Ok(json!({"ok": true, "attempt": ctx.attempt}))
        })
        .unwrap();
    vec![hello, sleeper, waiter, nightly, flaky, flaky_body]
}

/// What the stand-in API received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
pub struct StandIn {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// `/v0/runs/{id}/batch` and `/actions` answers.
    pub batch: Arc<Mutex<Value>>,
    pub actions: Arc<Mutex<Value>>,
    /// The status `/fn/register` answers with, and its body.
    pub register_reply: Arc<Mutex<(u16, Value)>>,
    /// Bearer tokens `/fn/register` refuses with a 401.
    pub refused_bearers: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with("/e/"))
            .flat_map(|r| match r.body {
                Value::Array(a) => a,
                other => vec![other],
            })
            .collect()
    }

    fn record(
        &self,
        method: &str,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        body: &[u8],
    ) {
        self.received.lock().unwrap().push(Received {
            method: method.into(),
            path,
            query,
            headers,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        });
    }
}

async fn register(
    State(s): State<StandIn>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.record(
        "POST",
        "/fn/register".into(),
        uri.query().map(str::to_string),
        headers,
        &body,
    );
    if s.refused_bearers
        .lock()
        .unwrap()
        .iter()
        .any(|b| auth.ends_with(b.as_str()))
    {
        return (
            StatusCode::UNAUTHORIZED,
            [("x-inngest-server-kind", "cloud")],
            Json(json!({"error": "bad key", "status": 401})),
        );
    }
    let (status, body) = s.register_reply.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [("x-inngest-server-kind", "cloud")],
        Json(body),
    )
}

async fn events(
    State(s): State<StandIn>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    s.record("POST", format!("/e/{key}"), None, headers, &body);
    let n = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let start = s.events().len() - n;
    let ids: Vec<String> = (start..start + n)
        .map(|i| format!("01JSENT{i:019}"))
        .collect();
    Json(json!({"ids": ids, "status": 200}))
}

async fn batch(
    State(s): State<StandIn>,
    Path(run): Path<String>,
    headers: HeaderMap,
) -> Json<Value> {
    s.record("GET", format!("/v0/runs/{run}/batch"), None, headers, b"");
    Json(s.batch.lock().unwrap().clone())
}

async fn actions(
    State(s): State<StandIn>,
    Path(run): Path<String>,
    headers: HeaderMap,
) -> Json<Value> {
    s.record("GET", format!("/v0/runs/{run}/actions"), None, headers, b"");
    Json(s.actions.lock().unwrap().clone())
}

/// Starts the stand-in API on a free loopback port: its origin and its state.
pub async fn stand_in() -> (String, StandIn) {
    let state = StandIn::default();
    *state.register_reply.lock().unwrap() = (200, json!({"ok": true, "modified": true}));
    let app = Router::new()
        .route("/fn/register", post(register))
        .route("/e/{key}", post(events))
        .route("/v0/runs/{run}/batch", get(batch))
        .route("/v0/runs/{run}/actions", get(actions))
        .with_state(state.clone());
    let addr = serve(app).await;
    (format!("http://{addr}"), state)
}

/// Serves `app` on a free loopback port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}
