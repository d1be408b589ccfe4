//! The admin API's Readwise commands over HTTP, the whole stack in one process: a real
//! engine on a temporary SQLite file, the Readwise sync against the fake Readwise (real
//! HTTP), the in-memory keychain, the admin API and the HTTP router (driven in process).

use std::time::{Duration, Instant};

use readwise_fake::{FakeConfig, FakeReadwise};
use serde_json::{json, Value};
use stepdesk_engine::admin::RunDetail;
use stepdesk_engine::event::parse_events;
use stepdesk_engine::{Backoff, Engine, EngineConfig, SendError};
use stepdesk_readwise::{ClientConfig, ReadwiseClient};
use stepdesk_readwise_sync::ReadwiseSync;
use stepdesk_secrets::Secrets;

const ADMIN: &str = "admin-tok";

struct Harness {
    dir: tempfile::TempDir,
    fake: FakeReadwise,
    engine: Engine,
    sync: ReadwiseSync,
    router: axum::Router,
}

async fn harness(fake_config: FakeConfig, client: impl FnOnce(&mut ClientConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeReadwise::start(fake_config).await.unwrap();
    let mut config = ClientConfig::default()
        .with_base_url(&fake.base_url())
        .unwrap();
    config.request_timeout = Duration::from_secs(5);
    client(&mut config);
    let mut engine_config = EngineConfig::new(dir.path());
    engine_config.backoff = Backoff::Fixed(Duration::from_millis(50));
    let store = engine_config.open_store().await.unwrap();
    let sync = ReadwiseSync::new(
        store.clone(),
        Ok(Secrets::in_memory()),
        ReadwiseClient::new(config).unwrap(),
    )
    .await
    .unwrap();
    let engine = Engine::builder(engine_config)
        .store(store)
        .functions(sync.functions())
        .gate(sync.gate())
        .start()
        .await
        .unwrap();
    sync.attach(engine.clone());
    let api = stepdesk_api::Api::builder(engine.clone())
        .readwise(sync.admin())
        .build()
        .await
        .unwrap();
    let mut server = stepdesk_server::ServerConfig::local(ADMIN);
    server.extra_routes = Some(stepdesk_readwise_sync::routes::routes(
        sync.admin(),
        ADMIN.into(),
    ));
    let router = stepdesk_server::router(api, server);
    Harness {
        dir,
        fake,
        engine,
        sync,
        router,
    }
}

impl Harness {
    async fn send(&self, body: Value) -> Result<Vec<String>, SendError> {
        let events = parse_events(body.to_string().as_bytes()).unwrap();
        self.engine.send_events(events).await
    }

    async fn wait_event_run(&self, event_id: &str) -> RunDetail {
        let admin = self.engine.admin();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let runs = admin.event_runs(event_id).await.unwrap();
            if let Some(run) = runs.iter().find(|r| r.status != "Running") {
                return admin.run(&run.id).await.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the run of event {event_id} did not end: {runs:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One request to the HTTP router (in process), with the admin token.
    async fn route(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            ))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("stepdesk.db")).unwrap()
    }
}

/// Usability 7 and Reliability 6: ids are restricted to a safe set everywhere they enter, a
/// user called `sync-all` is reachable, and the daily sync starts at POST
/// /api/admin/daily-syncs.
#[tokio::test]
async fn user_ids_are_checked_and_sync_all_is_an_ordinary_id() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.fake.add_user("tok-sa", 3);
    let rule = "1-128 characters of letters, digits and";

    for bad in ["a/b", "fuzz/../x", "a%FFb", ".x", "-x", "", "a b"] {
        let (status, body) = h
            .route("POST", "/api/admin/users", Some(json!({"id": bad})))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains(rule), "{body}");
        let e = h.sync.admin().add_user(bad, None, None).await.unwrap_err();
        assert!(e.to_string().contains(rule), "{e}");
        match h
            .send(json!({"name": "readwise/fetch-books", "data": {"userId": bad}}))
            .await
        {
            Err(SendError::Invalid(e)) => {
                assert!(e.to_string().contains("`data.userId`"), "{e}")
            }
            other => panic!("{bad}: expected a refusal: {other:?}"),
        }
    }
    // A malformed id in a route is a 400 that says what ids look like, not a 404.
    for path in [
        "/api/admin/users/a%2Fb",
        "/api/admin/users/%2Ex",
        "/api/admin/users/a%20b",
    ] {
        let (status, body) = h.route("GET", path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(rule), "{body}");
        let (status, _) = h.route("DELETE", path, None).await;
        assert_eq!(status, 400, "{path}");
        let (status, _) = h.route("POST", &format!("{path}/check"), None).await;
        assert_eq!(status, 400, "{path}");
    }
    let (status, _) = h.route("GET", "/api/admin/users/nobody", None).await;
    assert_eq!(status, 404);
    assert!(h.sync.admin().users().await.unwrap().is_empty());

    // `sync-all` is a user like any other.
    let (status, body) = h
        .route(
            "POST",
            "/api/admin/users",
            Some(json!({"id": "sync-all", "token": "tok-sa"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = h.route("GET", "/api/admin/users/sync-all", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "sync-all");
    assert_eq!(body["token_status"], "unchecked");
    let (status, body) = h
        .route("POST", "/api/admin/users/sync-all/sync", None)
        .await;
    assert_eq!(status, 202, "{body}");
    let run = h.wait_event_run(body["event_id"].as_str().unwrap()).await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    // The old route is gone; the daily sync starts at POST /api/admin/daily-syncs.
    let (status, _) = h.route("POST", "/api/admin/users/sync-all", None).await;
    assert_eq!(status, 405);
    let (status, body) = h.route("POST", "/api/admin/daily-syncs", None).await;
    assert_eq!(status, 202, "{body}");
    let daily = h.wait_event_run(body["event_id"].as_str().unwrap()).await;
    assert_eq!(daily.summary.function_id, "readwise-daily-sync");
    assert_eq!(daily.output.unwrap()["users"], 1);
    let (status, body) = h.route("DELETE", "/api/admin/users/sync-all", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.route("GET", "/api/admin/users/sync-all", None).await;
    assert_eq!(status, 404);

    // A user stored before the rule, with an id outside it, can still be listed, shown and
    // removed.
    h.db()
        .execute(
            "INSERT INTO readwise_users (id, display_name, token_status, created_at) VALUES ('old/id', 'Old', 'missing', 0)",
            [],
        )
        .unwrap();
    let ids: Vec<String> = h
        .sync
        .admin()
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["old/id"]);
    let (status, body) = h.route("GET", "/api/admin/users/old%2Fid", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h.route("DELETE", "/api/admin/users/old%2Fid", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(h.sync.admin().users().await.unwrap().is_empty());
}

/// Security 4 and Usability 5: the Readwise URL must be https (plain http only to loopback),
/// wherever it comes from, and `PUT /api/admin/settings` needs the field.
#[tokio::test]
async fn the_readwise_url_must_be_https_unless_loopback_and_put_needs_the_field() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    let other = FakeReadwise::start(FakeConfig::unlimited()).await.unwrap();

    for bad in [
        "http://readwise.example/api/v2/",
        "http://10.0.0.7:8000/api/v2/",
    ] {
        match h.sync.set_api_url(Some(bad)).await {
            Err(stepdesk_readwise_sync::SettingsError::Invalid(e)) => {
                assert!(e.contains("must use https://"), "{e}")
            }
            other => panic!("{bad}: {other:?}"),
        }
        let (status, body) = h
            .route(
                "PUT",
                "/api/admin/settings",
                Some(json!({"readwise_api_url": bad})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("`readwise_api_url`"), "{error}");
        assert!(error.contains("unencrypted"), "{error}");
        assert!(error.contains("localhost"), "{error}");
    }
    assert_eq!(h.sync.settings().await.unwrap().source, "default");

    // `{}` changes nothing and says what to send; null resets.
    let (status, body) = h
        .route(
            "PUT",
            "/api/admin/settings",
            Some(json!({"readwise_api_url": other.base_url()})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "settings");
    let (status, body) = h.route("PUT", "/api/admin/settings", Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`readwise_api_url` is required"),
        "{body}"
    );
    let settings = h.sync.settings().await.unwrap();
    assert_eq!(settings.source, "settings");
    assert_eq!(settings.readwise_api_url, other.base_url());
    let (status, body) = h
        .route(
            "PUT",
            "/api/admin/settings",
            Some(json!({"readwise_api_url": null})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "default");
    assert_eq!(
        body["readwise_api_url"],
        stepdesk_readwise::DEFAULT_BASE_URL
    );

    // A plain-http URL stored by an older version is not used: the default is, with a
    // warning saying why and how to fix it.
    h.db()
        .execute(
            "INSERT INTO readwise_settings (key, value) VALUES ('readwise.api_url', 'http://readwise.example/api/v2/')",
            [],
        )
        .unwrap();
    h.sync.apply_stored_settings().await.unwrap();
    let settings = h.sync.settings().await.unwrap();
    assert_eq!(settings.source, "default");
    assert_eq!(
        settings.readwise_api_url,
        stepdesk_readwise::DEFAULT_BASE_URL
    );
    let warning = settings.warning.unwrap();
    assert!(
        warning.contains("must use https://") && warning.contains("reset-readwise-url"),
        "{warning}"
    );
}
