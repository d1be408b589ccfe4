//! `stepdesk serve --serve-inngest`, the real binary: Stepdesk's functions (the Readwise ones
//! and the test fixtures) served at `/api/inngest` to a stand-in Inngest API, and no longer
//! started by the local engine. The protocol itself is tested in `crates/stepdesk-serve`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::{Options, Server};
use serde_json::{json, Value};

/// A stand-in Inngest API: records the registrations it gets.
async fn stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    async fn register(State(got): State<Arc<Mutex<Vec<Value>>>>, body: Bytes) -> Json<Value> {
        got.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        Json(json!({"ok": true, "modified": true}))
    }
    let app = Router::new()
        .route("/fn/register", post(register))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

fn call(event: Value, steps: Value) -> Value {
    json!({"event": event, "events": [event], "steps": steps,
           "ctx": {"run_id": "01JRUNSERVE", "attempt": 0, "max_attempts": 1,
                   "stack": {"stack": [], "current": 0}},
           "version": -1, "use_api": false})
}

#[tokio::test]
async fn serve_inngest_serves_the_functions_and_the_local_engine_leaves_them_alone() {
    let (api, registrations) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        Options {
            data_dir: dir.path(),
            fixture_log: None,
            extra_args: &["--serve-inngest"],
        },
        &[("INNGEST_DEV", api.as_str())],
    );
    let client = &server.client;
    let endpoint = format!("{}/api/inngest", server.url);

    let res = client.get(&endpoint).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["x-inngest-sdk"]
        .to_str()
        .unwrap()
        .starts_with("stepdesk:v"));
    let intro: Value = res.json().await.unwrap();
    assert_eq!(intro["mode"], "dev");

    // A sync registers every function under its composite id, with this server's URL.
    let res = client.put(&endpoint).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let registration = registrations.lock().unwrap().pop().expect("a registration");
    assert_eq!(registration["appName"], "stepdesk");
    assert_eq!(registration["url"], endpoint);
    let functions = registration["functions"].as_array().unwrap();
    assert_eq!(intro["function_count"], functions.len());
    let by_id = |id: &str| {
        functions
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not registered: {registration}"))
    };
    assert_eq!(
        by_id("stepdesk-readwise-daily-sync")["triggers"],
        json!([{"cron": "0 3 * * *"}, {"event": "readwise/daily-sync"}])
    );
    assert_eq!(
        by_id("stepdesk-readwise-fetch-books")["concurrency"],
        json!([{"limit": 1, "key": "event.data.userId"}])
    );
    // The handlers of internal events name the functions by their Inngest ids.
    assert_eq!(
        by_id("stepdesk-readwise-fetch-books-failure")["triggers"][0]["expression"],
        "event.data.function_id == 'stepdesk-readwise-fetch-books'"
    );
    assert_eq!(
        by_id("stepdesk-readwise-fetch-books-cancelled")["triggers"][0]["expression"],
        "event.data.function_id == 'stepdesk-readwise-fetch-books'"
    );
    let noop = by_id("stepdesk-fixture-noop");
    assert_eq!(
        noop["steps"]["step"]["runtime"]["url"],
        format!("{endpoint}?fnId=stepdesk-fixture-noop&stepId=step")
    );

    // An event sent to Stepdesk starts no local run of a served function.
    let ids = server.send(&json!({"name": "test/noop", "data": {}})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(server.runs_of_event(&ids[0]).await.is_empty());

    // The Inngest server drives it instead, one step per request.
    let event = json!({"name": "test/noop", "data": {}, "user": {}, "id": "01JEVT", "ts": 1});
    let url = noop["steps"]["step"]["runtime"]["url"].as_str().unwrap();
    let mut steps = serde_json::Map::new();
    for id in ["a", "b", "c"] {
        let res = client
            .post(url)
            .json(&call(event.clone(), Value::Object(steps.clone())))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
        let ops: Value = res.json().await.unwrap();
        assert_eq!(ops[0]["op"], "StepRun");
        assert_eq!(ops[0]["displayName"], id);
        steps.insert(ops[0]["id"].as_str().unwrap().into(), json!({"data": null}));
    }
    let res = client
        .post(url)
        .json(&call(event, Value::Object(steps)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!("ok"));

    // An invoke names the target by its Inngest id.
    let res = client
        .post(format!(
            "{endpoint}?fnId=stepdesk-fixture-invoke&stepId=step"
        ))
        .json(&call(
            json!({"name": "test/invoke", "data": {}, "user": {}, "id": "01JEVT2", "ts": 1}),
            json!({}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    let ops: Value = res.json().await.unwrap();
    assert_eq!(ops[0]["op"], "InvokeFunction");
    assert_eq!(ops[0]["opts"]["function_id"], "stepdesk-fixture-noop");
}

#[tokio::test]
async fn without_the_flag_there_is_no_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        Options {
            data_dir: dir.path(),
            fixture_log: None,
            extra_args: &[],
        },
        &[("INNGEST_DEV", "1")],
    );
    let (status, _) = server.get("/api/inngest").await;
    assert_eq!(status, 404);
    // And the fixtures run locally as always.
    let ids = server.send(&json!({"name": "test/noop", "data": {}})).await;
    let runs = server.wait_finished(&ids, Duration::from_secs(20)).await;
    assert_eq!(runs[0]["status"], "Completed");
}

#[test]
fn a_bad_configuration_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepdesk"))
        .args(["serve", "--port", "0", "--serve-inngest", "--data-dir"])
        .arg(dir.path())
        .env_remove("INNGEST_DEV")
        .env_remove("INNGEST_SIGNING_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--serve-inngest"), "{stderr}");
    assert!(stderr.contains("INNGEST_SIGNING_KEY"), "{stderr}");
}
