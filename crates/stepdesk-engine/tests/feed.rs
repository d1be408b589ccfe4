//! The live change feed: committed changes reach subscribers, rolled-back ones never do.

mod common;

use std::time::Duration;

use serde_json::json;
use stepdesk_engine::feed::Changes;
use stepdesk_engine::store::StoreError;
use stepdesk_engine::Function;
use tokio::sync::broadcast;

use common::*;

fn fns() -> Vec<Function> {
    vec![Function::builder("echo")
        .on_event("app/echo")
        .handler(|ctx| async move { Ok(ctx.event.data.clone()) })
        .unwrap()]
}

/// Reads notices until `pred` holds for one of them, or for one `seen` before (failing
/// after [`TIMEOUT`]). Every notice read is added to `seen`.
async fn until(
    rx: &mut broadcast::Receiver<Changes>,
    seen: &mut Vec<Changes>,
    pred: impl Fn(&Changes) -> bool,
) -> Changes {
    if let Some(c) = seen.iter().find(|c| pred(c)) {
        return c.clone();
    }
    within("a matching change notice", async {
        loop {
            match rx.recv().await {
                Ok(c) => {
                    seen.push(c.clone());
                    if pred(&c) {
                        return c;
                    }
                }
                Err(e) => panic!("feed: {e}"),
            }
        }
    })
    .await
}

fn has(c: &Changes, table: &str, id: &str) -> bool {
    c.table(table)
        .is_some_and(|t| t.ids.iter().any(|i| i == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_runs_and_steps_reach_a_subscriber_with_their_ids() {
    let (engine, _dir) = start(fns()).await;
    let mut rx = engine.subscribe();
    let mut seen = Vec::new();
    let sent = std::time::Instant::now();
    let ids = send(&engine, json!({"name": "app/echo", "data": {"x": 1}})).await;
    until(&mut rx, &mut seen, |c| has(c, "events", &ids[0])).await;
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "{:?}",
        sent.elapsed()
    );
    let run = wait_runs(&engine, "echo", 1).await.remove(0);
    let c = until(&mut rx, &mut seen, |c| has(c, "runs", &run.id)).await;
    assert!(c.at > 0);
    wait_status(&engine, &run.id, "Completed").await;
    // A second subscriber sees later changes.
    let mut rx2 = engine.subscribe();
    let ids = send(&engine, json!({"name": "app/other"})).await;
    until(&mut rx2, &mut Vec::new(), |c| has(c, "events", &ids[0])).await;
    until(&mut rx, &mut seen, |c| has(c, "events", &ids[0])).await;
    // The search index's own tables are not published.
    while let Ok(c) = rx.try_recv() {
        assert!(
            c.changes.iter().all(|t| !t.table.starts_with("search")),
            "{c:?}"
        );
    }
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_write_publishes_nothing_and_its_neighbours_still_publish() {
    let (engine, _dir) = start(fns()).await;
    let store = engine.store().clone();
    store
        .write(|c| {
            c.execute_batch("CREATE TABLE component_things (id TEXT PRIMARY KEY, n INTEGER)")?;
            Ok(())
        })
        .await
        .unwrap();
    store.name_changed_rows(
        "component_things",
        "SELECT id FROM component_things WHERE rowid = ?1",
    );
    let mut rx = engine.subscribe();
    // Queued together, so that they likely share a transaction: one fails, one commits.
    let failing = store.write(|c| {
        c.execute(
            "INSERT INTO component_things (id, n) VALUES ('ghost', 1)",
            [],
        )?;
        Err::<(), _>(StoreError::Other("refused".into()))
    });
    let committing = store.write(|c| {
        c.execute(
            "INSERT INTO component_things (id, n) VALUES ('real', 2)",
            [],
        )?;
        Ok(())
    });
    let (failed, committed) = tokio::join!(failing, committing);
    assert!(failed.is_err());
    committed.unwrap();
    let c = until(&mut rx, &mut Vec::new(), |c| {
        c.table("component_things").is_some()
    })
    .await;
    assert_eq!(c.table("component_things").unwrap().ids, ["real"]);
    // A later write that is rolled back on its own publishes nothing; the next commit's
    // notice carries only its own change.
    store
        .write(|c| {
            c.execute(
                "INSERT INTO component_things (id, n) VALUES ('ghost2', 3)",
                [],
            )?;
            Err::<(), _>(StoreError::Other("refused".into()))
        })
        .await
        .unwrap_err();
    tokio::time::sleep(Duration::from_millis(100)).await;
    store
        .write(|c| {
            c.execute("UPDATE component_things SET n = 5 WHERE id = 'real'", [])?;
            Ok(())
        })
        .await
        .unwrap();
    let c = until(&mut rx, &mut Vec::new(), |c| {
        c.table("component_things").is_some()
    })
    .await;
    assert_eq!(c.table("component_things").unwrap().ids, ["real"]);
    // Nothing ever named the rolled-back rows.
    while let Ok(c) = rx.try_recv() {
        let t = c.table("component_things");
        assert!(t.is_none_or(|t| t.ids == ["real"]), "{c:?}");
    }
    stop(&engine).await;
}
