//! Crash safety: the real server process is killed with SIGKILL while runs execute, sleep
//! and wait. After a restart no acknowledged event is missing, no completed step runs
//! again, every run finishes, and sleeping/waiting runs wake at the right time.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{eventually, Options, Server};
use serde_json::json;

fn fixture_log_counts(path: &Path) -> HashMap<(String, String), usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        if let Some((run, step)) = line.split_once(' ') {
            *counts
                .entry((run.to_string(), step.to_string()))
                .or_insert(0) += 1;
        }
    }
    counts
}

/// (run id, step id) of every step stored as completed, read straight from the file.
fn completed_steps(data_dir: &Path) -> HashSet<(String, String)> {
    let conn = rusqlite::Connection::open(data_dir.join("stepdesk.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT run_id, step_id FROM steps WHERE status = 'completed'")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

fn running_runs(data_dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open(data_dir.join("stepdesk.db")).unwrap();
    conn.query_row(
        "SELECT count(*) FROM runs WHERE status = 'Running'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn start(dir: &Path, log: &Path) -> Server {
    Server::start(Options {
        data_dir: dir,
        fixture_log: Some(log),
        extra_args: &[],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_event_and_repeats_no_completed_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("fixture.log");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut interrupted_runs = 0;

    // Several crash cycles, each killing the server at a different point mid-flight.
    for (cycle, kill_after_ms) in [130u64, 270, 40, 410, 190].into_iter().enumerate() {
        let mut server = start(&data, &log);
        // Runs take ~3 x 60 ms; events keep arriving while the process is killed.
        let sender = {
            let client = reqwest::Client::new();
            let url = format!("{}/e/key", server.url);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0.. {
                    let batch: Vec<_> = (0..5)
                        .map(|j| json!({"name": "test/steps", "data": {"step_ms": 60, "n": format!("{cycle}-{i}-{j}")}}))
                        .collect();
                    match client.post(&url).json(&batch).send().await {
                        Ok(res) if res.status() == 200 => {
                            let body: serde_json::Value = res.json().await.unwrap();
                            ids.extend(
                                body["ids"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|v| v.as_str().unwrap().to_string()),
                            );
                        }
                        _ => break, // the server is gone; unacknowledged events may be lost
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                ids
            })
        };
        tokio::time::sleep(Duration::from_millis(kill_after_ms + 100)).await;
        server.kill();
        acknowledged.extend(sender.await.unwrap());

        // What was durably done when the process died.
        let before = fixture_log_counts(&log);
        let completed = completed_steps(&data);
        interrupted_runs += running_runs(&data);
        let never_ran: Vec<_> = completed
            .iter()
            .filter(|k| !before.contains_key(*k))
            .collect();
        assert!(
            never_ran.is_empty(),
            "completed steps that never ran: {never_ran:?}"
        );

        // Restart: completed steps stay at the count they had.
        let server = start(&data, &log);
        server
            .wait_finished(&acknowledged, Duration::from_secs(60))
            .await;
        let after = fixture_log_counts(&log);
        for key in &completed {
            assert_eq!(
                after[key], before[key],
                "completed step {key:?} ran again after restart (cycle {cycle})"
            );
        }
        drop(server);
    }

    assert!(
        interrupted_runs > 0,
        "no kill landed while runs were executing"
    );

    // Every acknowledged event is stored and its run completed every step.
    let server = start(&data, &log);
    let runs = server
        .wait_finished(&acknowledged, Duration::from_secs(60))
        .await;
    assert!(
        acknowledged.len() >= 25,
        "the test sent too few events to mean anything: {}",
        acknowledged.len()
    );
    assert_eq!(
        runs.len(),
        acknowledged.len(),
        "one run per acknowledged event"
    );
    let counts = fixture_log_counts(&log);
    for run in &runs {
        assert_eq!(run["status"], "Completed", "{run}");
        assert_eq!(
            run["output"]["outputs"],
            json!(["done-1", "done-2", "done-3"])
        );
        let id = run["run_id"].as_str().unwrap();
        for step in ["step-1", "step-2", "step-3"] {
            let n = counts
                .get(&(id.to_string(), step.to_string()))
                .copied()
                .unwrap_or(0);
            // Once, or twice if the process died while that very step was executing.
            assert!((1..=2).contains(&n), "{id} {step} ran {n} times");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_and_waiting_runs_survive_a_kill_and_wake_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("fixture.log");
    let mut server = start(&data, &log);

    let sleep_event = server
        .send(&json!({"name": "test/sleep", "data": {"sleep_ms": 2500}}))
        .await;
    let wait_event = server
        .send(&json!({"name": "test/wait", "data": {"key": "k-1", "timeout_ms": 120000}}))
        .await;
    let timeout_event = server
        .send(&json!({"name": "test/wait", "data": {"key": "k-2", "timeout_ms": 1500}}))
        .await;
    // Wait until both waits are stored, then kill.
    eventually(Duration::from_secs(20), "the runs to suspend", || async {
        let conn = rusqlite::Connection::open(data.join("stepdesk.db")).ok()?;
        let suspended: i64 = conn
            .query_row(
                "SELECT count(*) FROM steps WHERE status IN ('sleeping', 'waiting')",
                [],
                |r| r.get(0),
            )
            .ok()?;
        (suspended == 3).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    server.kill();
    // Stay down past the short wait's timeout.
    tokio::time::sleep(Duration::from_millis(1800)).await;

    let server = start(&data, &log);
    // A matching event sent after the restart resumes the wait; a non-matching one does not.
    server
        .send(&json!({"name": "test/resume", "data": {"key": "other"}}))
        .await;
    let resume = server
        .send(&json!({"name": "test/resume", "data": {"key": "k-1"}}))
        .await;

    let waited = server
        .wait_finished(&wait_event, Duration::from_secs(20))
        .await;
    assert_eq!(waited[0]["status"], "Completed");
    let (_, resume_event) = server.get(&format!("/v1/events/{}", resume[0])).await;
    assert_eq!(
        waited[0]["output"]["resumed_by"],
        resume_event["data"]["id"]
    );

    let timed_out = server
        .wait_finished(&timeout_event, Duration::from_secs(20))
        .await;
    assert_eq!(timed_out[0]["status"], "Completed");
    assert!(
        timed_out[0]["output"]["resumed_by"].is_null(),
        "the short wait timed out while the server was down"
    );

    let slept = server
        .wait_finished(&sleep_event, Duration::from_secs(20))
        .await;
    assert_eq!(slept[0]["status"], "Completed");
    assert!(killed_at.elapsed() >= Duration::from_millis(1800));
    let run_id = slept[0]["run_id"].as_str().unwrap();
    let (_, detail) = server.get(&format!("/api/admin/runs/{run_id}")).await;
    let steps = detail["steps"].as_array().unwrap();
    let before = &steps[0];
    let nap = &steps[1];
    let after = &steps[2];
    assert_eq!(nap["kind"], "Sleep");
    let slept_ms = after["started_at"].as_i64().unwrap() - before["ended_at"].as_i64().unwrap();
    assert!(
        slept_ms >= 2500,
        "woke after {slept_ms} ms, before the sleep ended"
    );
    assert!(
        slept_ms < 2500 + 5000,
        "woke {slept_ms} ms later: far too late"
    );
    let counts = fixture_log_counts(&log);
    assert_eq!(counts[&(run_id.to_string(), "before".to_string())], 1);
    assert_eq!(counts[&(run_id.to_string(), "after".to_string())], 1);
}
