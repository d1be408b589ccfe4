//! A deterministic storm of malformed and hostile requests over raw TCP (mutated request
//! lines, headers, lengths, chunked encodings and event JSON) against a real server. The
//! server must never answer 5xx, never stop answering, and store every event it
//! acknowledged with a 200. (A review once sent ~11,000 such requests by hand; this keeps
//! that result true.)

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use stepdesk_engine::{Durability, Engine, EngineConfig};
use stepdesk_server::{Limits, ServerConfig};

const REQUESTS: usize = 6000;
const CLIENTS: usize = 12;

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// One request: a third are valid event sends (so acknowledged events exist to check),
/// the rest plausible with one or more things wrong.
fn request(rng: &mut StdRng, addr: SocketAddr) -> Vec<u8> {
    if rng.gen_bool(0.33) {
        let body = format!(
            r#"[{{"name":"fuzz/ok","data":{{"n":{}}}}},{{"name":"fuzz/ok"}}]"#,
            rng.gen::<u32>()
        );
        return format!(
            "POST /e/key HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
    }
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "G\0T", "POST ",
    ];
    let paths = [
        "/e/key".to_string(),
        "/e/".to_string(),
        "/e/%FF%FE".to_string(),
        "/e/k/../../etc/passwd".to_string(),
        "/v1/events?limit=0".to_string(),
        "/v1/events?limit=-1&cursor=%%%".to_string(),
        "/v1/events?cursor=not-a-cursor".to_string(),
        "/v1/events/%FF".to_string(),
        "/v1/runs/../../x".to_string(),
        "/api/admin/runs?status=%00&from=yesterday".to_string(),
        "/api/admin/runs?limit=99999999999999999999".to_string(),
        "/api/admin/runs/%FF".to_string(),
        "/api/admin/events?name=".to_string() + &"a".repeat(5000),
        "/api/admin/functions/x/invoke".to_string(),
        "/".to_string(),
        "*".to_string(),
        "http://evil.com/e/key".to_string(),
        format!("http://{addr}/e/key"),
        "/\u{202e}".to_string(),
    ];
    let bodies = [
        r#"{"name":"fuzz/ok","data":{"n":1}}"#.to_string(),
        r#"[{"name":"fuzz/ok"},{"name":"fuzz/ok","data":{"a":[1,2,3]}}]"#.to_string(),
        r#"{"name":"inngest/x","name":"fuzz/dup"}"#.to_string(),
        r#"{"name":"fuzz/x","data":{"a":1,"a":2}}"#.to_string(),
        "{\"name\":\"fuzz/\\u0000nul\"}".to_string(),
        "{\"name\":\"fuzz/\u{202e}bidi\"}".to_string(),
        r#"{"name":"fuzz/ts","ts":1e300}"#.to_string(),
        r#"{"name":"fuzz/ts","ts":-1}"#.to_string(),
        r#"{"name":"fuzz/n","data":{"big":1e15,"neg":-0,"f":1.5e-300}}"#.to_string(),
        "[".repeat(3000) + &"]".repeat(3000),
        format!(
            "{{\"name\":\"fuzz/deep\",\"data\":{}{}}}",
            "{\"a\":".repeat(500),
            "1".to_string() + &"}".repeat(500)
        ),
        "\u{feff}{\"name\":\"fuzz/bom\"}".to_string(),
        "[]".to_string(),
        "null".to_string(),
        "\"string\"".to_string(),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x7b]).into_owned(),
        r#"{"data":{}}"#.to_string(),
        r#"{"name":""}"#.to_string(),
        format!("{{\"name\":\"{}\"}}", "n".repeat(600)),
    ];
    let method = *pick(rng, &methods);
    let path = pick(rng, &paths).clone();
    let mut body = pick(rng, &bodies).clone().into_bytes();
    // Mutate the body: truncate, flip bytes, or splice.
    match rng.gen_range(0..6) {
        0 if !body.is_empty() => {
            let n = rng.gen_range(0..body.len());
            body.truncate(n);
        }
        1 if !body.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..body.len());
                body[i] = rng.gen();
            }
        }
        _ => {}
    }
    let hosts = [
        addr.to_string(),
        addr.to_string(),
        "localhost".to_string(),
        "evil.com".to_string(),
        "0.0.0.0:8288".to_string(),
        format!("{addr}\r\nHost: evil.com"),
        "".to_string(),
        "[::1".to_string(),
    ];
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if rng.gen_bool(0.95) {
        head += &format!("Host: {}\r\n", pick(rng, &hosts));
    }
    if rng.gen_bool(0.1) {
        head += &format!(
            "Origin: {}\r\n",
            pick(rng, &["null", "http://evil.com", "http://127.0.0.1:1"])
        );
    }
    if rng.gen_bool(0.2) {
        head += "Authorization: Bearer wrong\r\n";
    }
    head += "Content-Type: application/json\r\nConnection: close\r\n";
    let mut tail = Vec::new();
    match rng.gen_range(0..8) {
        // A wrong Content-Length: shorter or longer than the body, or nonsense.
        0 => head += &format!("Content-Length: {}\r\n", body.len() / 2),
        1 => head += &format!("Content-Length: {}\r\n", body.len() + 10),
        2 => {
            head += &format!(
                "Content-Length: {}\r\n",
                pick(rng, &["-1", "abc", "99999999999999999999", "1, 2"])
            )
        }
        // Chunked, sometimes malformed.
        3 => {
            head += "Transfer-Encoding: chunked\r\n";
            tail.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            tail.extend_from_slice(&body);
            let ends: [&[u8]; 3] = [b"\r\n0\r\n\r\n", b"\r\nzz\r\n", b""];
            let end: &[u8] = ends[rng.gen_range(0..ends.len())];
            tail.extend_from_slice(end);
            body.clear();
        }
        // Both, which is ambiguous.
        4 => {
            head += &format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                body.len()
            )
        }
        _ => head += &format!("Content-Length: {}\r\n", body.len()),
    }
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&tail);
    bytes
}

/// Sends a request; returns the status line's code, if an answer came.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (None, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok());
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_never_crash_never_5xx_and_lose_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::Normal;
    let engine = Engine::builder(config).start().await.unwrap();
    let router = stepdesk_server::router(
        stepdesk_api::Api::builder(engine.clone())
            .build()
            .await
            .expect("the admin API"),
        ServerConfig::local("fuzz-admin"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stepdesk_server::serve_with(
        listener,
        router,
        limits,
        async {
            let _ = stopped.await;
        },
    ));

    let results = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..CLIENTS)
                .map(|w| {
                    scope.spawn(move || {
                        let mut rng = StdRng::seed_from_u64(0x57e9_de5c + w as u64);
                        let mut out = Vec::new();
                        for _ in 0..REQUESTS / CLIENTS {
                            let req = request(&mut rng, addr);
                            let (status, text) = exchange(addr, &req);
                            out.push((req, status, text));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();

    let mut acked: HashSet<String> = HashSet::new();
    let mut answered = 0;
    for (req, status, text) in &results {
        let Some(status) = status else { continue };
        answered += 1;
        assert!(
            *status < 500,
            "a 5xx for {:?}:\n{text}",
            String::from_utf8_lossy(req)
        );
        if *status == 200 && text.contains("\"ids\"") {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            if let Ok(v) = serde_json::from_str::<Value>(body) {
                for id in v["ids"].as_array().into_iter().flatten() {
                    acked.insert(id.as_str().unwrap().to_string());
                }
            }
        }
    }
    let mut histogram = std::collections::BTreeMap::new();
    for (_, status, _) in &results {
        *histogram.entry(*status).or_insert(0) += 1;
    }
    eprintln!("statuses (None = closed without an answer): {histogram:?}");
    // Every request gets an answer: a refusal is an answer, silence is not.
    assert_eq!(answered, results.len(), "requests closed without an answer");
    assert!(!acked.is_empty(), "some events were valid and acknowledged");

    // The server still answers, and every acknowledged event is stored.
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let stored: HashSet<String> = engine
        .store()
        .read(|c| {
            let mut stmt = c.prepare("SELECT internal_id FROM events")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
        .unwrap();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    engine.shutdown(Duration::from_secs(5)).await;
}
