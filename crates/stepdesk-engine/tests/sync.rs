//! The dynamic registry: sources (SDK apps) sync, replace and remove their functions while
//! the engine runs; archived functions keep their history; a start-up hook re-creates
//! synced functions before runs resume.

mod common;

use std::time::Duration;

use serde_json::json;
use stepdesk_engine::store::{migrate_component, Migration};
use stepdesk_engine::{Engine, Function, SourceFunctions, StepKind, SyncError, WaitForEvent};

use common::remote::*;
use common::*;

/// A function on `event` whose body optionally sleeps (`data.nap` ms) between two steps.
fn napper(id: &str, event: &str) -> Function {
    Function::builder(id)
        .name(format!("Napper {id}"))
        .on_event(event)
        .handler(|ctx| async move {
            let nap = ctx
                .event
                .data
                .get("nap")
                .and_then(|n| n.as_u64())
                .unwrap_or(0);
            ctx.step.run("before", || async { Ok(1) }).await?;
            if nap > 0 {
                ctx.step.sleep("nap", Duration::from_millis(nap)).await?;
            }
            ctx.step.run("after", || async { Ok(2) }).await?;
            Ok(json!("done"))
        })
        .unwrap()
}

fn rust_fn(id: &str) -> Function {
    Function::builder(id)
        .on_event("app/rust")
        .handler(|_ctx| async { Ok(json!("rust")) })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_functions_trigger_on_events_and_show_their_source() {
    let (engine, _dir) = start(vec![rust_fn("own")]).await;
    let hello = Function::builder("app-a-hello")
        .on_event("app/hello")
        .config(json!({"id": "hello", "triggers": [{"event": "app/hello"}]}))
        .handler(|ctx| async move { Ok(json!({"hi": ctx.event.data["who"]})) })
        .unwrap();
    let report = engine.sync_functions("app-a", vec![hello]).await.unwrap();
    assert_eq!(report.added, ["app-a-hello"]);
    assert!(report.updated.is_empty() && report.archived.is_empty());
    assert!(report.changed);

    send(
        &engine,
        json!({"name": "app/hello", "data": {"who": "ada"}}),
    )
    .await;
    let d = single_run(&engine, "app-a-hello", "Completed").await;
    assert_eq!(d.output, Some(json!({"hi": "ada"})));

    let functions = engine.admin().functions();
    let source = |id: &str| {
        functions
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("{id} in {functions:#?}"))
            .source
            .clone()
    };
    assert_eq!(source("app-a-hello").as_deref(), Some("app-a"));
    assert_eq!(source("own"), None);
    let stats = engine.admin().function_stats("app-a-hello").await.unwrap();
    assert_eq!(stats.source.as_deref(), Some("app-a"));
    // The stored configuration keeps the app's own, for the console.
    let config: String = engine
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT config FROM functions WHERE id = 'app-a-hello' AND source = 'app-a'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["id"], json!("hello"));
    assert_eq!(config["source"], json!("app-a"));
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_archives_what_the_source_no_longer_has() {
    let (engine, _dir) = start(vec![]).await;
    let set = |change_retries: u32| {
        vec![
            napper("keep", "app/keep"),
            napper("gone", "app/gone"),
            Function::builder("change")
                .on_event("app/change")
                .retries(change_retries)
                .handler(|_ctx| async { Ok(json!(null)) })
                .unwrap(),
        ]
    };
    let report = engine.sync_functions("app-a", set(1)).await.unwrap();
    assert_eq!(report.added, ["change", "gone", "keep"]);

    // One run of `gone` finishes; another sleeps through the resync.
    send(&engine, json!({"name": "app/gone"})).await;
    let done = single_run(&engine, "gone", "Completed").await;
    send(&engine, json!({"name": "app/gone", "data": {"nap": 400}})).await;
    let sleeping = wait_runs(&engine, "gone", 2).await.remove(1);
    wait_step(&engine, &sleeping.id, "nap", StepStatus::Sleeping).await;

    let mut without_gone = set(3);
    without_gone.retain(|f| f.id != "gone");
    let report = engine.sync_functions("app-a", without_gone).await.unwrap();
    assert_eq!(report.added, Vec::<String>::new());
    assert_eq!(report.updated, ["change"]);
    assert_eq!(report.archived, ["gone"]);
    assert!(report.changed);

    // No new runs; the history stays, under its function's id and name.
    send(&engine, json!({"name": "app/gone"})).await;
    let runs = runs_of(&engine, "gone").await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0].id, done.summary.id);
    assert_eq!(runs[0].function_name, "Napper gone");
    assert!(engine.admin().functions().iter().all(|f| f.id != "gone"));
    // Its statistics stay readable too.
    let stats = engine.admin().function_stats("gone").await.unwrap();
    assert_eq!(stats.source.as_deref(), Some("app-a"));

    // The run that was sleeping fails when it wakes, saying why.
    let d = wait_status(&engine, &sleeping.id, "Failed").await;
    let error = d.error.clone().unwrap();
    assert_eq!(error["name"], json!("FunctionNotFound"));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("`gone` is archived"), "{message}");
    assert!(message.contains("`app-a`"), "{message}");
    assert_eq!(step(&d, "nap").kind, StepKind::Sleep);

    // A Test-function invoke of it is refused the same way.
    let err = engine
        .admin()
        .invoke("gone", Default::default(), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("archived"), "{err}");

    // The same set again changes nothing.
    let mut again = set(3);
    again.retain(|f| f.id != "gone");
    let report = engine.sync_functions("app-a", again).await.unwrap();
    assert!(!report.changed, "{report:?}");

    // Removing the source archives the rest.
    let report = engine.remove_source("app-a").await.unwrap();
    assert_eq!(report.archived, ["change", "keep"]);
    assert!(engine.admin().functions().is_empty());
    send(&engine, json!({"name": "app/keep"})).await;
    assert!(runs_of(&engine, "keep").await.is_empty());

    // And it can come back: the function is registered again.
    let report = engine
        .sync_functions("app-a", vec![napper("gone", "app/gone")])
        .await
        .unwrap();
    assert_eq!(report.added, ["gone"]);
    send(&engine, json!({"name": "app/gone"})).await;
    wait_runs(&engine, "gone", 3).await;
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_another_source_has_is_refused_and_nothing_changes() {
    let (engine, _dir) = start(vec![rust_fn("taken")]).await;
    let err = engine
        .sync_functions("app-a", vec![napper("taken", "app/x")])
        .await
        .unwrap_err();
    match &err {
        SyncError::Config(e) => {
            assert_eq!(e.function, "taken");
            assert!(e.reason.contains("Stepdesk's own functions"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    engine
        .sync_functions("app-a", vec![napper("mine", "app/mine")])
        .await
        .unwrap();
    let err = engine
        .sync_functions(
            "app-b",
            vec![napper("fresh", "app/fresh"), napper("mine", "app/y")],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`mine`"), "{err}");
    assert!(err.contains("source `app-a`"), "{err}");
    // Nothing of the refused sync was registered.
    let registry = engine.registry();
    assert!(registry.get("fresh").is_none());
    assert_eq!(
        registry.get("mine").unwrap().source.as_deref(),
        Some("app-a")
    );
    // Two functions with one id in one sync, and a source without a name, are refused.
    let err = engine
        .sync_functions(
            "app-b",
            vec![napper("twice", "a/b"), napper("twice", "a/c")],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("same id"), "{err}");
    assert!(engine.sync_functions("", vec![]).await.is_err());
    stop(&engine).await;
}

const APPS: &[Migration] = &[Migration {
    name: "test-apps",
    sql: "CREATE TABLE test_app_functions (source TEXT NOT NULL, id TEXT NOT NULL, event TEXT NOT NULL, PRIMARY KEY (source, id));",
}];

/// Re-creates the functions recorded in the test's own table, as the SDK crate re-creates
/// its apps' functions: runs its migration first.
async fn from_table(
    store: stepdesk_engine::Store,
    seen: Observations,
) -> Result<SourceFunctions, stepdesk_engine::StoreError> {
    let rows: Vec<(String, String, String)> = store
        .write(|c| {
            migrate_component(c, "test-apps", APPS)?;
            let mut stmt =
                c.prepare("SELECT source, id, event FROM test_app_functions ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    let mut out: SourceFunctions = Vec::new();
    for (source, id, event) in rows {
        let f = remote(&id, &event, seen.clone());
        match out.iter_mut().find(|(s, _)| *s == source) {
            Some((_, fs)) => fs.push(f),
            None => out.push((source, vec![f])),
        }
    }
    Ok(out)
}

fn remote(id: &str, event: &str, seen: Observations) -> Function {
    remote_function(
        id,
        event,
        2,
        vec![
            ("first", run(|_| Ok(json!(1)))),
            ("nap", RemoteOp::Sleep(Duration::from_millis(500))),
            ("second", run(|_| Ok(json!(2)))),
        ],
        seen,
    )
}

async fn start_with_hook(dir: &std::path::Path, seen: Observations) -> Engine {
    let hook = move |store| from_table(store, seen);
    within(
        "engine start",
        Engine::builder(config(dir))
            .functions(vec![rust_fn("own")])
            .functions_from_store(hook)
            .start(),
    )
    .await
    .expect("the engine starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_up_hook_re_creates_synced_functions_before_runs_resume() {
    let dir = tempfile::tempdir().unwrap();
    let seen = observations();
    let engine = start_with_hook(dir.path(), seen.clone()).await;
    assert_eq!(engine.registry().all().len(), 1, "the table is empty");
    // An app syncs two functions; the test records them where the hook finds them.
    let synced = vec![
        remote("app-a-remote", "app/remote", seen.clone()),
        remote("app-a-extra", "app/extra", seen.clone()),
    ];
    engine.sync_functions("app-a", synced).await.unwrap();
    engine
        .store()
        .write(|c| {
            c.execute(
                "INSERT INTO test_app_functions (source, id, event) VALUES ('app-a', 'app-a-remote', 'app/remote')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    send(&engine, json!({"name": "app/remote"})).await;
    let run = wait_runs(&engine, "app-a-remote", 1).await.remove(0);
    wait_step(&engine, &run.id, "nap", StepStatus::Sleeping).await;
    within("shutdown", engine.shutdown(Duration::from_millis(50))).await;
    drop(engine);
    crash_marks(dir.path()).await;

    let seen_after = observations();
    let engine = start_with_hook(dir.path(), seen_after.clone()).await;
    let d = wait_status(&engine, &run.id, "Completed").await;
    assert_eq!(
        d.output,
        Some(json!({"first": 1, "nap": null, "second": 2}))
    );
    assert!(
        !seen_after.lock().unwrap().is_empty(),
        "the re-created function ran the rest"
    );
    let registry = engine.registry();
    assert_eq!(
        registry.get("app-a-remote").unwrap().source.as_deref(),
        Some("app-a")
    );
    // The function the hook no longer re-creates is archived, with its source.
    assert!(registry.get("app-a-extra").is_none());
    assert_eq!(
        registry.archived("app-a-extra").unwrap().source.as_deref(),
        Some("app-a")
    );
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_function_stays_archived_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start_in(dir.path(), vec![]).await;
    let waiter = Function::builder("app-a-waiter")
        .on_event("app/wait")
        .handler(|ctx| async move {
            ctx.step
                .wait_for_event("w", WaitForEvent::new("app/go", Duration::from_secs(60)))
                .await?;
            Ok(json!(null))
        })
        .unwrap();
    engine.sync_functions("app-a", vec![waiter]).await.unwrap();
    send(&engine, json!({"name": "app/wait"})).await;
    let run = wait_runs(&engine, "app-a-waiter", 1).await.remove(0);
    wait_step(&engine, &run.id, "w", StepStatus::Waiting).await;
    engine.remove_source("app-a").await.unwrap();
    stop(&engine).await;
    drop(engine);

    let engine = start_in(dir.path(), vec![]).await;
    // The wait still resolves; the run then fails, saying its function is archived.
    send(&engine, json!({"name": "app/go"})).await;
    let d = wait_status(&engine, &run.id, "Failed").await;
    let message = d.error.unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("archived"), "{message}");
    assert_eq!(d.summary.function_id, "app-a-waiter");
    stop(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_conflicting_hook_stops_the_start_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let err = Engine::builder(config(dir.path()))
        .functions_from_store(|_store| async {
            Err(stepdesk_engine::StoreError::Other(
                "the apps table is unreadable".into(),
            ))
        })
        .start()
        .await
        .err()
        .expect("the start fails");
    assert!(
        matches!(err, stepdesk_engine::StartError::Hook(_)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the apps table is unreadable"),
        "{err}"
    );

    let err = Engine::builder(config(dir.path()))
        .functions(vec![rust_fn("own")])
        .functions_from_store(|_store| async {
            Ok(vec![("app-a".to_string(), vec![rust_fn("own")])])
        })
        .start()
        .await
        .err()
        .expect("the start fails");
    assert!(
        err.to_string().contains("Stepdesk's own functions"),
        "{err}"
    );
}
