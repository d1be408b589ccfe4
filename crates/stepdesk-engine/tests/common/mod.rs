//! Shared helpers for the engine's integration tests: start a real engine in a temporary
//! data directory, send events, and poll the admin API with a deadline (no test may hang).

#![allow(dead_code, unused_imports)]

pub mod remote;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stepdesk_engine::admin::{
    AdminError, EventQuery, RunDetail, RunQuery, RunSummary, StepView, StoredEvent,
};
use stepdesk_engine::{Backoff, Durability, Engine, EngineConfig, Function};
pub use stepdesk_engine::{StepKind, StepStatus, TriggerKind};
use tempfile::TempDir;

/// Longest any single wait in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Retry interval used by every test engine.
pub const RETRY: Duration = Duration::from_millis(50);

pub fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.backoff = Backoff::Fixed(RETRY);
    config.durability = Durability::Normal;
    config
}

/// Starts an engine with `functions` in a fresh temporary data directory.
pub async fn start(functions: Vec<Function>) -> (Engine, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = start_in(dir.path(), functions).await;
    (engine, dir)
}

/// Starts an engine on an existing data directory.
pub async fn start_in(dir: &Path, functions: Vec<Function>) -> Engine {
    within("engine start", Engine::start(config(dir), functions))
        .await
        .expect("the engine starts")
}

pub async fn stop(engine: &Engine) {
    within("engine shutdown", engine.shutdown(Duration::from_secs(5))).await;
}

/// Awaits `fut`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

/// Parses `body` (one event or an array) like the HTTP API does and sends it.
pub async fn send(engine: &Engine, body: Value) -> Vec<String> {
    let events = stepdesk_engine::event::parse_events(body.to_string().as_bytes())
        .expect("the test sends valid events");
    within("send_events", engine.send_events(events))
        .await
        .expect("events are stored")
}

/// Polls `check` every 10 ms until it returns `Some`, failing after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls a run's detail until `pred` holds.
pub async fn wait_run(
    engine: &Engine,
    run_id: &str,
    what: &str,
    pred: impl Fn(&RunDetail) -> bool,
) -> RunDetail {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    loop {
        match engine.admin().run(run_id).await {
            Ok(d) if pred(&d) => return d,
            Ok(d) => last = Some(d),
            Err(AdminError::NotFound(_)) => {}
            Err(e) => panic!("reading run {run_id}: {e}"),
        }
        if Instant::now() >= deadline {
            panic!("timed out after {TIMEOUT:?} waiting for run {run_id}: {what}; last seen: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the run has `status`; fails at once if it ends with another status.
pub async fn wait_status(engine: &Engine, run_id: &str, status: &str) -> RunDetail {
    let detail = wait_run(engine, run_id, &format!("status {status}"), |d| {
        d.summary.status == status || d.summary.status != "Running"
    })
    .await;
    assert_eq!(
        detail.summary.status, status,
        "run {run_id} ended otherwise: {detail:#?}"
    );
    detail
}

/// Waits until a step of the run exists with `status`.
pub async fn wait_step(
    engine: &Engine,
    run_id: &str,
    step_id: &str,
    status: StepStatus,
) -> RunDetail {
    wait_run(engine, run_id, &format!("step {step_id} {status}"), |d| {
        d.steps
            .iter()
            .any(|s| s.id == step_id && s.status == status)
    })
    .await
}

/// Every run (any function), oldest first, read through cursor pagination.
pub async fn all_runs(engine: &Engine, function_id: Option<&str>) -> Vec<RunSummary> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .admin()
            .runs(RunQuery {
                function_id: function_id.map(str::to_string),
                cursor,
                limit: Some(500),
                ..Default::default()
            })
            .await
            .expect("runs list");
        out.extend(page.runs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.reverse();
    out
}

/// Runs of a function, oldest first.
pub async fn runs_of(engine: &Engine, function_id: &str) -> Vec<RunSummary> {
    all_runs(engine, Some(function_id)).await
}

/// Waits until the function has at least `n` runs; returns them, oldest first.
pub async fn wait_runs(engine: &Engine, function_id: &str, n: usize) -> Vec<RunSummary> {
    let e = engine.clone();
    let f = function_id.to_string();
    eventually(&format!("{n} run(s) of {function_id}"), move || {
        let (e, f) = (e.clone(), f.clone());
        async move {
            let runs = runs_of(&e, &f).await;
            (runs.len() >= n).then_some(runs)
        }
    })
    .await
}

/// Waits for the first run of a function and for it to reach `status`.
pub async fn single_run(engine: &Engine, function_id: &str, status: &str) -> RunDetail {
    let runs = wait_runs(engine, function_id, 1).await;
    assert_eq!(runs.len(), 1, "exactly one run of {function_id}: {runs:#?}");
    wait_status(engine, &runs[0].id, status).await
}

/// Stored events with this name, newest first.
pub async fn events_named(engine: &Engine, name: &str) -> Vec<StoredEvent> {
    engine
        .admin()
        .events(EventQuery {
            name: Some(name.to_string()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .expect("events list")
        .events
}

pub fn step<'a>(detail: &'a RunDetail, step_id: &str) -> &'a StepView {
    detail
        .steps
        .iter()
        .find(|s| s.id == step_id)
        .unwrap_or_else(|| panic!("no step {step_id} in {detail:#?}"))
}

pub type Counter = Arc<AtomicUsize>;

pub fn counter() -> Counter {
    Arc::new(AtomicUsize::new(0))
}

pub fn count(c: &Counter) -> usize {
    c.load(Ordering::SeqCst)
}

/// Increments and returns the new value.
pub fn bump(c: &Counter) -> usize {
    c.fetch_add(1, Ordering::SeqCst) + 1
}

pub fn now_ms() -> i64 {
    stepdesk_engine::time::now_ms()
}

/// Makes the last boot of a stopped engine's data directory look like it was killed (no
/// clean end), as after a SIGKILL.
pub async fn crash_marks(dir: &Path) {
    let store = stepdesk_engine::Store::open(
        &stepdesk_engine::database_path(dir),
        stepdesk_engine::Durability::Normal,
    )
    .unwrap();
    store
        .write(|c| {
            c.execute("UPDATE boots SET ended_at = NULL", [])?;
            Ok(())
        })
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || store.close())
        .await
        .unwrap();
}
