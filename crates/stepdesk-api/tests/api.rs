//! The admin API through its one entry point, [`Api::call`], as the window and the HTTP
//! routes use it: the registry, errors, the audit trail, read-only inspection, and the
//! commands the API defines itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stepdesk_api::{Api, ApiError, CallCtx, Origin, COMMANDS};
use stepdesk_engine::{Backoff, Engine, EngineConfig, Function};
use stepdesk_readwise::{ClientConfig, ReadwiseClient};
use stepdesk_readwise_sync::ReadwiseSync;
use stepdesk_secrets::Secrets;

struct World {
    _dir: tempfile::TempDir,
    engine: Engine,
    api: Api,
    secrets: Secrets,
}

fn noop() -> Function {
    Function::builder("noop")
        .on_event("test/noop")
        .handler(|_ctx| async { Ok(json!({"ok": true})) })
        .unwrap()
}

async fn world(read_only: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.backoff = Backoff::Fixed(Duration::from_millis(20));
    let store = config.open_store().await.unwrap();
    let secrets = Secrets::in_memory();
    // A Readwise that is never reached (no test here syncs).
    let client = ReadwiseClient::new(
        ClientConfig::default()
            .with_base_url("http://127.0.0.1:9/api/v2/")
            .unwrap(),
    )
    .unwrap();
    let sync = ReadwiseSync::new(store.clone(), Ok(secrets.clone()), client)
        .await
        .unwrap();
    let engine = Engine::builder(config)
        .store(store)
        .functions(sync.functions())
        .functions([noop()])
        .gate(sync.gate())
        .start()
        .await
        .unwrap();
    sync.attach(engine.clone());
    let api = Api::builder(engine.clone())
        .readwise(sync.admin())
        .read_only(read_only)
        .build()
        .await
        .unwrap();
    World {
        _dir: dir,
        engine,
        api,
        secrets,
    }
}

const WINDOW: CallCtx = CallCtx {
    origin: Origin::Window,
};

impl World {
    async fn call(&self, name: &str, params: Value) -> Result<Value, ApiError> {
        self.api.call(name, params, WINDOW).await
    }

    async fn ok(&self, name: &str, params: Value) -> Value {
        self.call(name, params.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}({params}): {e}"))
    }
}

#[tokio::test]
async fn every_registered_command_answers_through_the_one_entry_point() {
    let w = world(false).await;
    let mut names = std::collections::HashSet::new();
    for spec in COMMANDS {
        assert!(names.insert(spec.name), "{} is declared twice", spec.name);
        assert!(spec.path.starts_with("/api/admin/"), "{}", spec.path);
        // Calling with no params reaches the command: the answer is a result or an error
        // about the command's own params or data, never "unknown method".
        if let Err(e) = w.call(spec.name, Value::Null).await {
            assert!(
                !e.to_string().contains("unknown admin method"),
                "{}: {e}",
                spec.name
            );
        }
    }
    let err = w.call("no_such_command", Value::Null).await.unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(err.to_json()["status"], 404);
    w.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_params_name_the_field_and_never_echo_the_value() {
    let w = world(false).await;
    let err = w
        .call("add_user", json!({"id": "u1", "token": ["s3cr3t-value"]}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    let text = err.to_string();
    assert!(text.contains("`token`"), "{text}");
    assert!(!text.contains("s3cr3t-value"), "{text}");
    let err = w.call("runs", json!({"limit": 0})).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    let err = w
        .call("daily_syncs", json!({"limit": 101}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("between 1 and 100"), "{err}");
    let err = w.call("runs", json!({"nope": 1})).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    // Times as RFC 3339 or milliseconds.
    w.ok(
        "runs",
        json!({"from": "2026-01-01T00:00:00Z", "to": 1900000000000u64}),
    )
    .await;
    w.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn support_actions_are_audited_with_their_origin_and_no_secret() {
    let w = world(false).await;
    w.ok(
        "add_user",
        json!({"id": "ada", "name": "Ada", "token": "tok-ada-123456"}),
    )
    .await;
    // The token went to the keychain, write-only.
    let user = w.ok("user", json!({"id": "ada"})).await;
    assert_eq!(user["token_status"], "unchecked");
    assert!(!user.to_string().contains("tok-ada-123456"));
    w.ok("set_token", json!({"id": "ada", "token": "tok-ada-second"}))
        .await;
    assert_eq!(
        w.secrets
            .get(&stepdesk_readwise_sync::token_key("ada"))
            .await
            .unwrap()
            .as_deref(),
        Some("tok-ada-second")
    );
    // Setting the token of a user who does not exist creates nobody.
    let err = w
        .call(
            "set_token",
            json!({"id": "ghost", "token": "x-token-value"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404);
    w.api
        .call(
            "sync_user",
            json!({"id": "ada"}),
            CallCtx {
                origin: Origin::Cli,
            },
        )
        .await
        .unwrap();
    let page = w.ok("user_page", json!({"id": "ada"})).await;
    let audit: Vec<(String, String, bool)> = page["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["origin"].as_str().unwrap().to_string(),
                e["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        [
            ("sync_user".to_string(), "cli".to_string(), true),
            ("set_token".to_string(), "window".to_string(), true),
            ("add_user".to_string(), "window".to_string(), true),
        ]
    );
    // The failed attempt on a ghost is recorded too, with its reason.
    let all = w.ok("audit", json!({"user_id": "ghost"})).await;
    assert_eq!(all[0]["ok"], false);
    assert!(all[0]["error"].as_str().unwrap().contains("ghost"));
    // No token anywhere in the audit table.
    let dump: String = w
        .engine
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT group_concat(coalesce(action,'') || coalesce(user_id,'') || coalesce(error,''), '|') FROM audit_log",
                [],
                |r| r.get::<_, Option<String>>(0),
            )?
            .unwrap_or_default())
        })
        .await
        .unwrap();
    assert!(!dump.contains("tok-ada"), "{dump}");
    // Reads are not audited.
    assert_eq!(w.ok("audit", json!({})).await.as_array().unwrap().len(), 4);
    w.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn send_and_replay_events_start_runs() {
    let w = world(false).await;
    let sent = w
        .ok(
            "send_events",
            json!({"events": [{"name": "test/noop", "data": {"n": 1}, "id": "dedupe-me"}]}),
        )
        .await;
    let id = sent["ids"][0].as_str().unwrap().to_string();
    let replayed = w.ok("replay_event", json!({"id": id})).await;
    let replay_id = replayed["ids"][0].as_str().unwrap().to_string();
    assert_ne!(replay_id, id);
    let replay = w.ok("event", json!({"id": replay_id})).await;
    assert_eq!(replay["name"], "test/noop");
    assert_eq!(replay["data"], json!({"n": 1}));
    // The replay started its own run, although the original carried an id.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let runs = w.ok("event_runs", json!({"id": replay_id})).await;
        if runs
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["status"] == "Completed")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = w
        .call("send_events", json!({"events": {"name": "inngest/x"}}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
    w.engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_read_only_inspection_refuses_every_write_and_serves_reads() {
    let w = world(true).await;
    for spec in COMMANDS {
        let result = w.call(spec.name, Value::Null).await;
        match spec.kind {
            stepdesk_api::Kind::Write => {
                let err = result.unwrap_err();
                assert_eq!(err.status(), 403, "{}: {err}", spec.name);
                assert!(err.to_string().contains("read-only"), "{err}");
            }
            stepdesk_api::Kind::Read => {
                if let Err(e) = result {
                    assert_ne!(e.status(), 403, "{}: {e}", spec.name);
                }
            }
        }
    }
    assert_eq!(w.ok("info", json!({})).await["read_only"], true);
    assert!(w
        .ok("audit", json!({}))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    let _ = Arc::new(());
    w.engine.shutdown(Duration::from_secs(5)).await;
}
