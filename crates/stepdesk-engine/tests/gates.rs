//! Event gates: a request is stored whole or not at all, and when it is not, the side effects
//! gates asked for are undone (newest first) and their database writes rolled back.

mod common;

use std::sync::{Arc, Mutex};

use serde_json::json;
use stepdesk_engine::function::BoxFuture;
use stepdesk_engine::store::StoreError;
use stepdesk_engine::{
    Admission, Admitted, Engine, EventGate, GateError, GateUndo, NewEvent, SendError, Sender,
};

/// Records what its effects and undos do. An event's `data.effect` says what its effect does
/// (`ok` or `fail`); `data.write` = `fail` makes its database write fail.
struct RecordingGate {
    log: Arc<Mutex<Vec<String>>>,
}

impl EventGate for RecordingGate {
    fn admit(
        self: Arc<Self>,
        event: NewEvent,
        _admission: Admission,
    ) -> BoxFuture<Result<Admitted, GateError>> {
        Box::pin(async move {
            let name = event.data["n"].as_str().unwrap_or("?").to_string();
            let effect = event
                .data
                .get("effect")
                .and_then(|v| v.as_str())
                .map(String::from);
            let write = event
                .data
                .get("write")
                .and_then(|v| v.as_str())
                .map(String::from);
            let mut admitted = Admitted::new(event);
            if let Some(effect) = effect {
                let log = self.log.clone();
                let n = name.clone();
                admitted = admitted.with_effect(Box::pin(async move {
                    if effect == "fail" {
                        log.lock().unwrap().push(format!("fail {n}"));
                        return Err(GateError::Unavailable(format!("{n} failed")));
                    }
                    log.lock().unwrap().push(format!("do {n}"));
                    let undo_log = log.clone();
                    let undo: GateUndo = Box::pin(async move {
                        undo_log.lock().unwrap().push(format!("undo {n}"));
                    });
                    Ok(Some(undo))
                }));
            }
            if let Some(write) = write {
                admitted = admitted.with_write(Box::new(move |c| {
                    c.execute(
                        "INSERT INTO functions (id, name, config, updated_at) VALUES (?1, 'gate', '{}', 0)",
                        [format!("gate-write-{name}")],
                    )?;
                    if write == "fail" {
                        return Err(StoreError::Other("the gate's write failed".into()));
                    }
                    Ok(())
                }));
            }
            Ok(admitted)
        })
    }
}

async fn engine_with_gate() -> (Engine, tempfile::TempDir, Arc<Mutex<Vec<String>>>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder(common::config(dir.path()))
        .gate(Arc::new(RecordingGate { log: log.clone() }))
        .start()
        .await
        .unwrap();
    (engine, dir, log)
}

async fn count(engine: &Engine, sql: &'static str) -> i64 {
    engine
        .store()
        .read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .await
        .unwrap()
}

fn events(body: serde_json::Value) -> Vec<NewEvent> {
    stepdesk_engine::event::parse_events(body.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn a_failing_effect_undoes_the_effects_before_it_and_stores_nothing() {
    let (engine, _dir, log) = engine_with_gate().await;
    let batch = json!([
        {"name": "app/a", "data": {"n": "a", "effect": "ok", "write": "ok"}},
        {"name": "app/b", "data": {"n": "b", "effect": "ok"}},
        {"name": "app/c", "data": {"n": "c", "effect": "fail"}},
        {"name": "app/d", "data": {"n": "d", "effect": "ok"}}
    ]);
    let err = engine
        .send_events_from(events(batch), Sender::Trusted)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Unavailable(_)), "{err:?}");
    assert_eq!(
        *log.lock().unwrap(),
        ["do a", "do b", "fail c", "undo b", "undo a"],
        "effects run in order, stop at the failure, and are undone newest first"
    );
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 0);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM functions WHERE name = 'gate'"
        )
        .await,
        0,
        "no gate write ran"
    );
}

#[tokio::test]
async fn a_failing_commit_undoes_every_effect_and_rolls_back_the_gates_writes() {
    let (engine, _dir, log) = engine_with_gate().await;
    let batch = json!([
        {"name": "app/a", "data": {"n": "a", "effect": "ok", "write": "ok"}},
        {"name": "app/b", "data": {"n": "b", "effect": "ok", "write": "fail"}}
    ]);
    let err = engine
        .send_events_from(events(batch), Sender::Trusted)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Store(_)), "{err:?}");
    assert_eq!(*log.lock().unwrap(), ["do a", "do b", "undo b", "undo a"]);
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 0);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM functions WHERE name = 'gate'"
        )
        .await,
        0,
        "the first gate write was rolled back with the rest"
    );
}

#[tokio::test]
async fn a_committed_request_keeps_its_effects_and_writes() {
    let (engine, _dir, log) = engine_with_gate().await;
    let batch = json!([
        {"name": "app/a", "data": {"n": "a", "effect": "ok", "write": "ok"}},
        {"name": "app/b", "data": {"n": "b"}}
    ]);
    let ids = engine
        .send_events_from(events(batch), Sender::Trusted)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(*log.lock().unwrap(), ["do a"]);
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 2);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM functions WHERE name = 'gate'"
        )
        .await,
        1
    );
}
