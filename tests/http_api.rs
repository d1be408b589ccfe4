//! The HTTP API of the real `stepdesk serve` binary: event API, Inngest v1 read API, admin
//! API, authentication and the DNS-rebinding guard.

mod common;

use std::time::Duration;

use common::{eventually, Options, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn event_api_accepts_single_events_and_batches_and_fills_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());

    let (status, body) = server
        .post(
            "/e/any-key",
            &json!({"name": "app/hello", "data": {"a": 1}}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], 200);
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 1);
    let id = ids[0].as_str().unwrap();
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let (status, ev) = server.get(&format!("/v1/events/{id}")).await;
    assert_eq!(status, 200);
    let ev = &ev["data"];
    assert_eq!(ev["name"], "app/hello");
    assert_eq!(ev["data"], json!({"a": 1}));
    assert_eq!(ev["user"], json!({}));
    assert_eq!(
        ev["id"], id,
        "without a sender id, the event id is the internal id"
    );
    assert!(ev["ts"].as_i64().unwrap() > 1_700_000_000_000);

    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"name": "app/batch", "data": {"i": i}}))
        .collect();
    let ids = server.send(&json!(batch)).await;
    assert_eq!(ids.len(), 100);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids are increasing, in event order");

    let (status, page) = server.get("/v1/events?name=app/batch&limit=30").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 30);
    let cursor = page["cursor"].as_str().unwrap().to_string();
    let (_, next) = server
        .get(&format!(
            "/v1/events?name=app/batch&limit=100&cursor={cursor}"
        ))
        .await;
    assert_eq!(next["data"].as_array().unwrap().len(), 70);
    assert!(next["cursor"].is_null());
}

#[tokio::test]
async fn event_api_rejects_bad_input_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    // A fresh connection per request: the server closes one whose body it refused (413).
    let raw = |body: Vec<u8>| {
        let client = reqwest::Client::new();
        let url = format!("{}/e/k", server.url);
        async move {
            let res = client.post(url).body(body).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "not valid JSON"),
        (
            br#"{"name":"inngest/function.failed"}"#.to_vec(),
            400,
            "reserved",
        ),
        (
            json!({"name": "a".repeat(513)}).to_string().into_bytes(),
            400,
            "longer than 512",
        ),
        (
            br#"{"name":"a","data":[1,2]}"#.to_vec(),
            400,
            "`data` must be a JSON object",
        ),
        (
            json!({"name": "a", "data": {"big": "x".repeat(3 * 1024 * 1024)}})
                .to_string()
                .into_bytes(),
            400,
            "3 MiB",
        ),
        (
            json!((0..5001).map(|_| json!({"name":"a"})).collect::<Vec<_>>())
                .to_string()
                .into_bytes(),
            400,
            "limit is 5000",
        ),
        (vec![b' '; 17 * 1024 * 1024], 413, "larger than"),
    ];
    for (body, want_status, want_text) in cases {
        let (status, err) = raw(body).await;
        assert_eq!(status, want_status, "{err}");
        assert!(err["error"].as_str().unwrap().contains(want_text), "{err}");
    }
    // Nothing was stored by the refused requests.
    let (_, page) = server.get("/v1/events").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 0);
    // No key at all.
    let (status, err) = server.post("/e/", &json!({"name": "a"}), None).await;
    assert_eq!(status, 401, "{err}");
}

#[tokio::test]
async fn event_key_is_enforced_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Options {
        data_dir: dir.path(),
        fixture_log: None,
        extra_args: &["--event-key", "secret-key"],
    });
    let (status, body) = server.post("/e/wrong", &json!({"name": "a"}), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = server
        .post("/e/secret-key", &json!({"name": "a"}), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn repeated_event_ids_start_one_run_per_function() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let first = server
        .send(&json!({"name": "test/noop", "id": "order-1"}))
        .await;
    let second = server
        .send(&json!({"name": "test/noop", "id": "order-1"}))
        .await;
    let other = server
        .send(&json!({"name": "test/noop", "id": "order-2"}))
        .await;
    let runs = server
        .wait_finished(
            &[first[0].clone(), other[0].clone()],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(runs.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.runs_of_event(&second[0]).await.is_empty(),
        "the repeat started no run"
    );
    let (_, stored) = server.get(&format!("/v1/events/{}", second[0])).await;
    assert_eq!(
        stored["data"]["id"], "order-1",
        "the repeated event is still stored"
    );
}

#[tokio::test]
async fn v1_runs_report_status_output_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let ok = server.send(&json!({"name": "test/noop"})).await;
    let bad = server.send(&json!({"name": "test/fail"})).await;
    let ok_runs = server.wait_finished(&ok, Duration::from_secs(20)).await;
    assert_eq!(ok_runs.len(), 1);
    assert_eq!(ok_runs[0]["status"], "Completed");
    assert_eq!(ok_runs[0]["output"], "ok");
    assert_eq!(ok_runs[0]["function_id"], "fixture-noop");

    let bad_runs = server.wait_finished(&bad, Duration::from_secs(20)).await;
    assert_eq!(bad_runs[0]["status"], "Failed");
    assert_eq!(
        bad_runs[0]["error"]["message"],
        "this function always fails"
    );
    let run_id = bad_runs[0]["run_id"].as_str().unwrap();
    let (status, run) = server.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["data"]["status"], "Failed");
    assert!(run["data"]["ended_at"].is_string());

    // The failure was recorded as an event and handled by the failure handler.
    let handled = eventually(
        Duration::from_secs(20),
        "the failure handler run",
        || async {
            let (_, page) = server.get("/v1/events?name=inngest/function.failed").await;
            let failed = page["data"].as_array()?.first()?.clone();
            assert_eq!(failed["data"]["run_id"], run_id);
            let runs = server.runs_of_event(failed["internal_id"].as_str()?).await;
            runs.into_iter().find(|r| r["status"] == "Completed")
        },
    )
    .await;
    assert_eq!(handled["function_id"], "fixture-fail-failure");
    assert_eq!(handled["output"]["handled_failure_of"], run_id);

    for path in [
        "/v1/runs/nope",
        "/v1/events/nope",
        "/api/admin/runs/nope",
        "/no/such/route",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test]
async fn admin_api_lists_invokes_cancels_and_reruns_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let token = server.admin_token();

    let (status, functions) = server.get("/api/admin/functions").await;
    assert_eq!(status, 200);
    let cron = functions
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "fixture-cron")
        .unwrap();
    assert_eq!(cron["triggers"][0]["kind"], "Cron");
    assert!(cron["triggers"][0]["next_fire_at"].as_i64().unwrap() > 0);

    // Mutations need the admin token.
    let (status, body) = server
        .post("/api/admin/functions/fixture-noop/invoke", &json!({}), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = server
        .post(
            "/api/admin/functions/fixture-noop/invoke",
            &json!({}),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post("/api/admin/functions/nope/invoke", &json!({}), Some(&token))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post(
            "/api/admin/functions/fixture-noop/invoke",
            &json!({"data": 5}),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // "Test function"
    let (status, started) = server
        .post(
            "/api/admin/functions/fixture-noop/invoke",
            &json!({"data": {"x": 1}}),
            Some(&token),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_string();
    let detail = eventually(Duration::from_secs(20), "the invoked run", || async {
        let (_, d) = server.get(&format!("/api/admin/runs/{run_id}")).await;
        (d["status"] == "Completed").then_some(d)
    })
    .await;
    assert_eq!(detail["trigger_kind"], "Invoke");
    assert_eq!(detail["event"]["name"], "inngest/function.invoked");
    assert_eq!(detail["event"]["data"]["x"], 1);
    let steps: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["a", "b", "c"]);

    // Cancel a sleeping run; cancelling it again conflicts.
    let ids = server
        .send(&json!({"name": "test/sleep", "data": {"sleep_ms": 60000}}))
        .await;
    let sleeping = eventually(Duration::from_secs(20), "the run to sleep", || async {
        let runs = server.runs_of_event(&ids[0]).await;
        let run_id = runs.first()?["run_id"].as_str()?.to_string();
        let (_, d) = server.get(&format!("/api/admin/runs/{run_id}")).await;
        d["steps"]
            .as_array()?
            .iter()
            .any(|s| s["status"] == "Sleeping")
            .then_some(run_id)
    })
    .await;
    let (status, cancelled) = server
        .post(
            &format!("/api/admin/runs/{sleeping}/cancel"),
            &json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "Cancelled");
    let (status, _) = server
        .post(
            &format!("/api/admin/runs/{sleeping}/cancel"),
            &json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(status, 409);

    // Rerun makes a new run of the same function and event.
    let (status, rerun) = server
        .post(
            &format!("/api/admin/runs/{run_id}/rerun"),
            &json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(status, 202, "{rerun}");
    let new_id = rerun["run_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, run_id);
    let again = eventually(Duration::from_secs(20), "the rerun", || async {
        let (_, d) = server.get(&format!("/api/admin/runs/{new_id}")).await;
        (d["status"] == "Completed").then_some(d)
    })
    .await;
    assert_eq!(again["rerun_of"], run_id);
    assert_eq!(again["event_id"], detail["event_id"]);

    // Filters and validation.
    let (status, page) = server
        .get("/api/admin/runs?function_id=fixture-noop&status=Completed")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["runs"].as_array().unwrap().len(), 2);
    let (status, err) = server.get("/api/admin/runs?status=Exploded").await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("unknown status"));
    let (status, _) = server.get("/api/admin/runs?limit=abc").await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/api/admin/runs?from=yesterday").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn requests_for_foreign_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let res = server
        .client
        .get(format!("{}/api/admin/functions", server.url))
        .header("Host", "attacker.example:8288")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("not allowed"));
    let res = server
        .client
        .get(format!("{}/health", server.url))
        .header("Host", "localhost:8288")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn stops_cleanly_on_sigterm_and_prints_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::simple(dir.path());
    server.send(&json!({"name": "test/noop"})).await;
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["admin-token", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        server.admin_token()
    );
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["serve", "--port", "not-a-port"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port"));
    // A port already in use is a clear error, not a panic.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["serve", "--port", &port, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[tokio::test]
async fn cross_site_posts_from_web_pages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let post = |origin: Option<String>| {
        let mut req = server
            .client
            .post(format!("{}/e/anything", server.url))
            .header("content-type", "text/plain")
            .body(r#"{"name":"app/x"}"#);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send()
    };
    let res = post(Some("https://evil.example".into())).await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("cross-site"));
    assert_eq!(
        post(Some("null".into())).await.unwrap().status().as_u16(),
        403
    );
    // Another port on this machine is another origin (a dev server on :3000, say).
    assert_eq!(
        post(Some("http://127.0.0.1:3000".into()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    // The console's own origin is this server's.
    assert_eq!(
        post(Some(server.url.clone()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        post(None).await.unwrap().status().as_u16(),
        200,
        "SDKs send no Origin"
    );
    let (_, page) = server.get("/v1/events").await;
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        2,
        "only the two allowed posts stored"
    );
}

#[test]
fn one_engine_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::simple(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another Stepdesk is already running"),
        "{stderr}"
    );
}
