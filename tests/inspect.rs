//! `stepdesk inspect DIR`: a copy of a data directory opened read-only. Nothing runs, every
//! write is refused, and the original directory is left exactly as it was, whether a
//! Stepdesk runs on it or not.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Options, Server};
use serde_json::{json, Value};

/// A running `stepdesk inspect DIR --no-window`, killed when dropped.
struct Inspector {
    child: Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for Inspector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn inspect(dir: &Path) -> Inspector {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepdesk"));
    cmd.args(["inspect", "--no-window"])
        .arg(dir)
        .env("STEPDESK_TEST_FIXTURES", "1")
        .env_remove("STEPDESK_DATA_DIR")
        .env_remove("STEPDESK_EVENT_KEY")
        .stderr(Stdio::null());
    let (child, url) = common::spawn_listening(cmd);
    Inspector {
        child,
        url,
        client: reqwest::Client::new(),
    }
}

impl Inspector {
    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

/// Every file of a directory (recursively) with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A data directory with a completed run and a sleeping one, its server stopped.
async fn data_dir_with_runs() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(Options {
        data_dir: dir.path(),
        fixture_log: None,
        extra_args: &[],
    });
    let done = server.send(&json!({"name": "test/noop"})).await;
    let sleeping = server
        .send(&json!({"name": "test/sleep", "data": {"sleep_ms": 600000}}))
        .await;
    let runs = server.wait_finished(&done, Duration::from_secs(20)).await;
    let done_run = runs[0]["run_id"].as_str().unwrap().to_string();
    // The sleeping run exists and waits.
    let sleeping_run = common::eventually(Duration::from_secs(20), "the sleeping run", || async {
        let (_, runs) = server
            .get(&format!("/v1/events/{}/runs", sleeping[0]))
            .await;
        runs["data"][0]["run_id"].as_str().map(str::to_string)
    })
    .await;
    assert!(server.terminate().success());
    (dir, done_run, sleeping_run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspection_reads_everything_changes_nothing_and_runs_nothing() {
    let (dir, done_run, sleeping_run) = data_dir_with_runs().await;
    let before = snapshot(dir.path());
    let inspector = inspect(dir.path());

    let (status, info) = inspector.get("/api/admin/info").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["read_only"], true);
    let shown = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(info["data_dir"], shown.display().to_string(), "{info}");

    // Reads work: both runs are there, the sleeping one still sleeping (nothing resumes it,
    // nothing fails it for want of executing).
    let (status, run) = inspector.get(&format!("/api/admin/runs/{done_run}")).await;
    assert_eq!(
        (status, run["status"].clone()),
        (200, json!("Completed")),
        "{run}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, run) = inspector
        .get(&format!("/api/admin/runs/{sleeping_run}"))
        .await;
    assert_eq!(run["status"], "Running", "{run}");

    // Every write is refused with a 403 that says why, before any token is asked for.
    for (path, body) in [
        (format!("/api/admin/runs/{done_run}/rerun"), json!({})),
        (format!("/api/admin/runs/{sleeping_run}/cancel"), json!({})),
        (
            "/api/admin/functions/fixture-noop/invoke".to_string(),
            json!({}),
        ),
        ("/api/rpc/start_daily_sync".to_string(), json!({})),
        ("/api/rpc/add_user".to_string(), json!({"id": "x"})),
    ] {
        let (status, body) = inspector.post(&path, body, None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("inspection"),
            "{body}"
        );
    }
    let (status, body) = inspector
        .post("/e/key", json!({"name": "test/noop"}), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    // The seed's routes are not served at all.
    let (status, _) = inspector
        .post("/api/inngest/trigger-schedule", json!({}), Some("any"))
        .await;
    assert_eq!(status, 404);

    drop(inspector);
    assert!(
        snapshot(dir.path()) == before,
        "the inspected directory changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_data_directory_can_be_inspected_while_its_stepdesk_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::simple(dir.path());
    let ids = server.send(&json!({"name": "test/noop"})).await;
    server.wait_finished(&ids, Duration::from_secs(20)).await;
    let inspector = inspect(dir.path());
    let (status, page) = inspector.get("/api/admin/runs").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["runs"].as_array().unwrap().len(), 1, "{page}");
    // The live one goes on taking events; the inspection is a snapshot.
    server.send(&json!({"name": "test/noop"})).await;
    let (_, page) = inspector.get("/api/admin/runs").await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn inspecting_a_directory_without_a_database_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_cli(&["inspect", "--no-window"], &[], "");
    assert!(!out.status.success());
    let out = common::run_cli(
        &["inspect", "--no-window", dir.path().to_str().unwrap()],
        &[],
        "",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Stepdesk database in"), "{stderr}");
}
