//! The HTTP server against hostile and broken clients, over real TCP: stalled and idle
//! connections, the connection cap, oversized declarations, ambiguous requests, cross-site
//! requests, panics, and which senders may hand the engine a secret.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use serde_json::{json, Value};
use stepdesk_engine::function::BoxFuture;
use stepdesk_engine::{
    Admission, Admitted, Durability, Engine, EngineConfig, EventGate, GateError, NewEvent, Sender,
};
use stepdesk_server::{EventKey, Limits, ServerConfig};

const ADMIN: &str = "admin-token-for-tests";

/// Refuses events carrying `data.secret` unless the sender is trusted (as the Readwise gate
/// does with `apiKey`).
struct SecretGate;

impl EventGate for SecretGate {
    fn admit(
        self: Arc<Self>,
        event: NewEvent,
        admission: Admission,
    ) -> BoxFuture<Result<Admitted, GateError>> {
        Box::pin(async move {
            if event.data.contains_key("secret") && admission.sender != Sender::Trusted {
                return Err(GateError::Unauthorized(
                    "`data.secret` needs authorization".into(),
                ));
            }
            Ok(Admitted::new(event))
        })
    }
}

struct TestServer {
    addr: SocketAddr,
    engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(limits: Limits, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_full(limits, EventKey::default(), tweak).await
    }

    /// A server whose event key can be changed while it runs through `key`.
    async fn start_with_key(limits: Limits, key: EventKey) -> TestServer {
        TestServer::start_full(limits, key, |_| {}).await
    }

    async fn start_full(
        limits: Limits,
        event_key: EventKey,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut engine_config = EngineConfig::new(dir.path());
        engine_config.durability = Durability::Normal;
        let engine = Engine::builder(engine_config)
            .gate(Arc::new(SecretGate))
            .start()
            .await
            .unwrap();
        let mut config = ServerConfig::local(ADMIN);
        config.extra_routes = Some(
            axum::Router::new()
                .route(
                    "/test/panic",
                    get(|| async {
                        if true {
                            panic!("a handler bug");
                        }
                        "unreachable"
                    }),
                )
                .route(
                    "/test/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "too late"
                    }),
                ),
        );
        tweak(&mut config);
        let router = stepdesk_server::router(
            stepdesk_api::Api::builder(engine.clone())
                .event_key(event_key)
                .build()
                .await
                .expect("the admin API"),
            config,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(stepdesk_server::serve_with(
            listener,
            router,
            limits,
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            engine,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        self.engine.shutdown(Duration::from_secs(5)).await;
    }
}

fn short_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(700),
        body_timeout: Duration::from_millis(700),
        request_timeout: Duration::from_secs(5),
        max_connections: 64,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// Sends raw bytes on a fresh connection and reads the answer, until it is complete, the
/// server closes, or `wait` passes. Returns it and how long that took.
async fn raw(addr: SocketAddr, bytes: Vec<u8>, wait: Duration) -> (String, Duration) {
    exchange(addr, bytes, wait, false).await
}

/// Like [`raw`], but reads until the server closes the connection (or `wait` passes).
async fn raw_until_close(addr: SocketAddr, bytes: Vec<u8>, wait: Duration) -> (String, Duration) {
    exchange(addr, bytes, wait, true).await
}

async fn exchange(
    addr: SocketAddr,
    bytes: Vec<u8>,
    wait: Duration,
    until_close: bool,
) -> (String, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s.write_all(&bytes).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
            if !until_close && response_complete(&out) {
                break;
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap()
}

/// Whether `bytes` hold a whole response (headers, and a body of its Content-Length).
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

fn json_body(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response:?}"))
}

#[tokio::test]
async fn stalled_headers_and_idle_connections_are_closed() {
    let server = TestServer::start(short_limits(), |_| {}).await;
    let addr = server.addr;
    // Half a request line, half the headers, nothing at all: each is closed by the server
    // soon after the header deadline (the 5 s read timeout would be the test's own).
    for partial in [
        &b"GET /hea"[..],
        &b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "[..],
        &b""[..],
    ] {
        let (_, took) = raw_until_close(addr, partial.to_vec(), Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(3),
            "{:?} stayed open {took:?}",
            String::from_utf8_lossy(partial)
        );
    }
    // A keep-alive connection that goes idle after a request is closed too.
    let (res, took) = raw_until_close(
        addr,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&res), 200);
    assert!(
        took < Duration::from_secs(3),
        "idle keep-alive stayed open {took:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_body_times_out_with_a_json_error() {
    let server = TestServer::start(short_limits(), |_| {}).await;
    let (res, took) = raw(
        server.addr,
        b"POST /e/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"name\":".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(status_of(&res), 408, "{res}");
    assert_eq!(json_body(&res)["status"], 408);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_declared_length_is_refused_at_once() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let (res, took) = raw(
        server.addr,
        b"POST /e/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&res), 413, "{res}");
    assert_eq!(json_body(&res)["status"], 413);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        max_connections: 4,
        ..Limits::default()
    };
    let server = TestServer::start(limits, |_| {}).await;
    let addr = server.addr;
    // Four idle connections take every slot.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    assert!(
        client.get(server.url("/health")).send().await.is_err(),
        "a fifth connection is not served while four are open"
    );
    drop(held);
    let ok = reqwest::Client::new()
        .get(server.url("/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_a_json_500_and_the_server_goes_on() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let res = reqwest::get(server.url("/test/panic")).await.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 500);
    assert!(
        !body["error"].as_str().unwrap().contains("a handler bug"),
        "{body}"
    );
    let ok = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn ambiguous_requests_are_refused() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let addr = server.addr;
    // (what, request line and headers, body, expected status)
    let cases: Vec<(&str, String, &str, u16)> = vec![
        (
            "a loopback Host followed by another",
            format!("GET /api/admin/runs HTTP/1.1\r\nHost: {addr}\r\nHost: evil.com"),
            "",
            400,
        ),
        (
            "two Origins",
            format!("POST /e/k HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nOrigin: http://evil.com"),
            r#"{"name":"a/b"}"#,
            400,
        ),
        (
            "an absolute-form target naming another host",
            format!("GET http://evil.com/api/admin/runs HTTP/1.1\r\nHost: {addr}"),
            "",
            400,
        ),
        (
            "a Host of 0.0.0.0",
            "GET /api/admin/runs HTTP/1.1\r\nHost: 0.0.0.0:8288".to_string(),
            "",
            403,
        ),
        (
            "a POST from another local origin (another port)",
            format!("POST /e/k HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://127.0.0.1:3000"),
            r#"{"name":"a/b"}"#,
            403,
        ),
    ];
    for (what, head, body, expected) in cases {
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("\r\nContent-Length: {}", body.len())
        };
        let request = format!("{head}{length}\r\nConnection: close\r\n\r\n{body}");
        let (res, _) = raw(addr, request.into_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&res), expected, "{what}: {res}");
        assert_eq!(json_body(&res)["status"], expected, "{what}");
    }
    // The same absolute-form target naming this server is fine.
    let (res, _) = raw(
        addr,
        format!("GET http://{addr}/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&res), 200, "{res}");
    server.stop().await;
}

#[tokio::test]
async fn every_error_is_json() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let client = reqwest::Client::new();
    let cases = [
        (client.put(server.url("/health")), 405),
        (client.get(server.url("/api/admin/runs/%FF")), 400),
        (client.get(server.url("/no/such/route")), 404),
        (client.post(server.url("/api/admin/runs/x/cancel")), 401),
    ];
    for (req, expected) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), expected);
        assert!(
            res.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{expected}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], expected, "{body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn reads_need_the_admin_token_when_listening_beyond_loopback() {
    let server = TestServer::start(Limits::default(), |c| c.reads_need_token = true).await;
    let client = reqwest::Client::new();
    for path in [
        "/api/admin/runs",
        "/api/admin/events",
        "/v1/events",
        "/api/admin/functions",
    ] {
        let res = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let res = client
            .get(server.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path} with the token");
    }
    // The serve endpoint an Inngest server introspects is not behind the admin token (it
    // is not mounted here: the guard lets it through to a 404).
    let res = client.get(server.url("/api/inngest")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = client
        .get(server.url("/api/inngest/trigger-readwise"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "only that exact path");
    assert_eq!(
        client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn only_an_authorized_sender_may_send_a_secret() {
    let key = EventKey::default();
    let live = key.clone();
    let server = TestServer::start_with_key(Limits::default(), live).await;
    let client = reqwest::Client::new();
    let secret = json!({"name": "app/login", "data": {"secret": "s3cr3t"}});
    let plain = json!({"name": "app/login", "data": {}});

    // No event key configured: any key is accepted, but a secret needs the admin token.
    let res = client
        .post(server.url("/e/any"))
        .json(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ids"], json!([]));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("needs authorization"),
        "{body}"
    );
    let res = client
        .post(server.url("/e/any"))
        .json(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(server.url("/e/any"))
        .bearer_auth(ADMIN)
        .json(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // An event key set while the server runs takes effect at once; the right key is an
    // authorized sender, a wrong one is refused outright.
    key.set(Some("the-key".into()));
    let res = client
        .post(server.url("/e/the-key"))
        .json(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(server.url("/e/wrong"))
        .json(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let info: Value = client
        .get(server.url("/api/admin/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["event_key_required"], true);
    key.set(None);
    let res = client
        .post(server.url("/e/wrong"))
        .json(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn an_invoke_body_with_a_repeated_key_is_refused() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let res = reqwest::Client::new()
        .post(server.url("/api/admin/functions/nope/invoke"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        // A repeated key inside `data` (serde's derive already refuses a repeated top-level
        // field; only the strict parser sees this one).
        .body(r#"{"data":{"userId":"a","userId":"b"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("duplicate key"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_handler_slower_than_the_request_deadline_gets_a_json_408() {
    let limits = Limits {
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::start(limits, |_| {}).await;
    let started = Instant::now();
    let res = reqwest::get(server.url("/test/slow")).await.unwrap();
    assert_eq!(res.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 408, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_half_closes_after_sending_still_gets_its_answer() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let addr = server.addr;
    let body = r#"{"name":"app/half-closed"}"#;
    let request = format!(
        "POST /e/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (res, _) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        (out, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&res), 200, "{res}");
    server.stop().await;
}

#[tokio::test]
async fn an_allowed_host_given_with_a_port_still_matches() {
    let server = TestServer::start(Limits::default(), |c| {
        c.extra_hosts = vec!["box.lan:8288".into()]
    })
    .await;
    let (res, _) = raw(
        server.addr,
        b"GET /health HTTP/1.1\r\nHost: box.lan:9999\r\nConnection: close\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&res), 200, "{res}");
    server.stop().await;
}

#[tokio::test]
async fn a_foreign_host_is_refused_before_its_body_size_is_judged() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let (res, _) = raw(
        server.addr,
        b"POST /e/k HTTP/1.1\r\nHost: evil.com\r\nContent-Length: 10000000000\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&res), 403, "{res}");
    server.stop().await;
}

/// The SDKs send `X-Inngest-Event-Id-Seed` with each request and keep it when they retry
/// one whose answer was lost: the retry names the same events, stored (and run) once. A
/// malformed seed is ignored: fresh ids.
#[tokio::test]
async fn a_retried_send_with_the_same_event_id_seed_is_stored_once() {
    let server = TestServer::start(Limits::default(), |_| {}).await;
    let client = reqwest::Client::new();
    let body =
        json!([{"name": "app/seeded", "data": {"n": 1}}, {"name": "app/seeded", "data": {"n": 2}}]);
    let send = |seed: String, body: Value| {
        client
            .post(server.url("/e/any"))
            .header("x-inngest-event-id-seed", seed)
            .json(&body)
            .send()
    };
    let ids = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        v["ids"].as_array().unwrap().clone()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let seed = format!("{now},AAECAwQFBgcICQ==");
    let first = ids(send(seed.clone(), body.clone()).await.unwrap()).await;
    let again = ids(send(seed.clone(), body.clone()).await.unwrap()).await;
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1], "one id per event");
    assert_eq!(first, again, "the retry names the same events");
    let other = ids(send(format!("{now},CQgHBgUEAwIBAA=="), body.clone())
        .await
        .unwrap())
    .await;
    assert!(
        other.iter().all(|id| !first.contains(id)),
        "another request: other ids"
    );
    // The same seed with other content is not a retry: stored, under new ids.
    let changed =
        json!([{"name": "app/seeded", "data": {"n": 3}}, {"name": "app/seeded", "data": {"n": 2}}]);
    let reused = ids(send(seed.clone(), changed).await.unwrap()).await;
    assert_ne!(reused[0], first[0], "other content: a new event");
    assert_eq!(reused[1], first[1], "the same second event: the retry's");
    for bad in ["not a seed".to_string(), "0,AAECAwQFBgcICQ==".to_string()] {
        let bad1 = ids(send(bad.clone(), body.clone()).await.unwrap()).await;
        let bad2 = ids(send(bad.clone(), body.clone()).await.unwrap()).await;
        assert_ne!(
            bad1, bad2,
            "a malformed or out-of-date seed is ignored: {bad}"
        );
    }
    let stored = server
        .engine
        .admin()
        .events(serde_json::from_value(json!({"name": "app/seeded"})).unwrap())
        .await
        .unwrap();
    // The seeded request 2 (its retry none), the other seed 2, the reused seed 1, the four
    // ignored seeds 2 each.
    assert_eq!(
        stored.events.len(),
        2 + 2 + 1 + 8,
        "the retry stored nothing"
    );
    server.stop().await;
}
