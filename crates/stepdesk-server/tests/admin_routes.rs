//! The admin API over HTTP: every command of the registry is reachable through its REST
//! route and through `POST /api/rpc/{command}`, with the same answers as `Api::call`.

use std::time::Duration;

use reqwest::{Client, Method};
use serde_json::{json, Value};
use stepdesk_api::{Api, Kind, COMMANDS};
use stepdesk_engine::{Durability, Engine, EngineConfig, Function};
use stepdesk_server::ServerConfig;

const ADMIN: &str = "routes-admin-token";

struct Server {
    base: String,
    engine: Engine,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::Normal;
    let noop = Function::builder("noop")
        .on_event("test/noop")
        .handler(|_ctx| async { Ok(json!("done")) })
        .unwrap();
    let engine = Engine::start(config, vec![noop]).await.unwrap();
    let api = Api::builder(engine.clone()).build().await.unwrap();
    let router = stepdesk_server::router(api, ServerConfig::local(ADMIN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stepdesk_server::serve(listener, router, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        engine,
        _stop: stop,
        _dir: dir,
    }
}

async fn send(
    s: &Server,
    method: Method,
    path: &str,
    body: Option<&str>,
    token: bool,
) -> (u16, Value) {
    let mut req = Client::new().request(method, format!("{}{path}", s.base));
    if token {
        req = req.bearer_auth(ADMIN);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_command_has_a_rest_route_and_an_rpc_route() {
    let s = start().await;
    for spec in COMMANDS {
        let path = spec
            .path
            .replace("{id}", "x")
            .replace("{name}", "event-key");
        let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
        let body = (spec.method != "GET" && spec.method != "DELETE").then_some("{}");
        let (status, answer) = send(&s, method, &path, body, true).await;
        // A route exists for it: whatever the command says, it is not the router's 404/405.
        assert!(
            !(status == 404 && answer["error"] == "no such route") && status != 405,
            "{} {}: {status} {answer}",
            spec.method,
            path
        );
        assert!(
            answer.get("error").is_none() || answer["status"] == status,
            "{answer}"
        );
        let (status, answer) = send(
            &s,
            Method::POST,
            &format!("/api/rpc/{}", spec.name),
            Some("{}"),
            true,
        )
        .await;
        assert!(
            !answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("unknown admin method"),
            "rpc {}: {status} {answer}",
            spec.name
        );
    }
    s.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn writes_need_the_admin_token_on_both_routes() {
    let s = start().await;
    for spec in COMMANDS.iter().filter(|c| c.kind == Kind::Write) {
        let path = spec
            .path
            .replace("{id}", "x")
            .replace("{name}", "event-key");
        let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
        let (status, answer) = send(&s, method, &path, Some("{}"), false).await;
        assert_eq!(status, 401, "{} {path}: {answer}", spec.method);
        let (status, _) = send(
            &s,
            Method::POST,
            &format!("/api/rpc/{}", spec.name),
            Some("{}"),
            false,
        )
        .await;
        assert_eq!(status, 401, "rpc {}", spec.name);
    }
    // Reads need none on loopback.
    let (status, _) = send(&s, Method::POST, "/api/rpc/functions", None, false).await;
    assert_eq!(status, 200);
    s.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn params_come_from_the_path_the_query_and_the_body() {
    let s = start().await;
    // A write: path + body, with a 202 for work started in the background.
    let (status, started) = send(
        &s,
        Method::POST,
        "/api/admin/functions/noop/invoke",
        Some(r#"{"data": {"n": 1}}"#),
        true,
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap();
    // A read: path + query; an empty query value means "not given".
    let (status, run) = send(
        &s,
        Method::GET,
        &format!("/api/admin/runs/{run_id}"),
        None,
        false,
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["id"], run_id);
    let (status, page) = send(
        &s,
        Method::GET,
        "/api/admin/runs?function_id=noop&status=&limit=5&from=2020-01-01T00:00:00Z",
        None,
        false,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["runs"][0]["id"], run_id);
    // The same through the console's RPC route.
    let (status, page) = send(
        &s,
        Method::POST,
        "/api/rpc/runs",
        Some(r#"{"function_id": "noop", "limit": 5}"#),
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["runs"][0]["id"], run_id);
    // Mistakes are 400s that say what is wrong.
    for (method, path, body, needle) in [
        (Method::GET, "/api/admin/runs?limit=abc", None, "limit"),
        (Method::GET, "/api/admin/runs?nope=1", None, "nope"),
        (
            Method::POST,
            "/api/admin/functions/noop/invoke",
            Some(r#"{"data": {"a": 1, "a": 2}}"#),
            "duplicate key",
        ),
        (
            Method::POST,
            "/api/admin/functions/noop/invoke",
            Some(r#"{"id": "other"}"#),
            "in the path",
        ),
        (
            Method::POST,
            "/api/admin/functions/noop/invoke",
            Some("[1]"),
            "JSON object",
        ),
        (
            Method::POST,
            "/api/rpc/runs",
            Some(r#"{"limit": 0}"#),
            "limit",
        ),
    ] {
        let (status, answer) = send(&s, method, path, body, true).await;
        assert_eq!(status, 400, "{path} {body:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let (status, answer) = send(&s, Method::POST, "/api/rpc/nope", Some("{}"), true).await;
    assert_eq!(status, 404, "{answer}");
    s.engine.shutdown(Duration::from_secs(5)).await;
}

/// Reads Server-Sent Events from a response until `pick` returns `Some` or 10 s pass.
async fn next_event(
    res: &mut reqwest::Response,
    buffer: &mut String,
    pick: impl Fn(&str, &str) -> bool,
) -> Option<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if pick(&event, &data) {
                return Some((event, data));
            }
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .ok()?
            .ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_change_feed_streams_committed_changes_and_ends_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::Normal;
    let noop = Function::builder("noop")
        .on_event("test/noop")
        .handler(|_ctx| async { Ok(json!("done")) })
        .unwrap();
    let engine = Engine::start(config, vec![noop]).await.unwrap();
    let api = Api::builder(engine.clone()).build().await.unwrap();
    let router = stepdesk_server::router(api, ServerConfig::local(ADMIN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stepdesk_server::serve(listener, router, async {
        let _ = stopped.await;
    }));

    let mut feed = Client::new()
        .get(format!("{base}/api/admin/changes"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert!(feed.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buffer = String::new();
    let sent = std::time::Instant::now();
    let ids: Value = Client::new()
        .post(format!("{base}/e/key"))
        .json(&json!({"name": "test/noop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = ids["ids"][0].as_str().unwrap().to_string();
    // The new event and the run it started are announced (together or apart), with ids.
    let (mut saw_event, mut saw_run) = (false, false);
    while !(saw_event && saw_run) {
        let (_, data) = next_event(&mut feed, &mut buffer, |event, _| event == "changes")
            .await
            .unwrap_or_else(|| {
                panic!("the feed stopped before announcing both (event {saw_event}, run {saw_run})")
            });
        let notice: Value = serde_json::from_str(&data).unwrap();
        for change in notice["changes"].as_array().unwrap() {
            let ids = change["ids"].as_array().unwrap();
            match change["table"].as_str().unwrap() {
                "events" if ids.contains(&json!(event_id)) => saw_event = true,
                "runs" if !ids.is_empty() => saw_run = true,
                _ => {}
            }
        }
        assert!(
            notice["tables"].as_array().unwrap().len()
                == notice["changes"].as_array().unwrap().len()
        );
    }
    assert!(sent.elapsed() < Duration::from_secs(2));

    // Shutting down ends the stream at once rather than after the shutdown grace period.
    let stopping = std::time::Instant::now();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the server waited {:?} for the stream",
        stopping.elapsed()
    );
    assert!(
        next_event(&mut feed, &mut buffer, |_, _| true)
            .await
            .is_none(),
        "the stream ended"
    );
    engine.shutdown(Duration::from_secs(5)).await;
}
