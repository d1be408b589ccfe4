//! The Readwise functions end to end inside one process: a real engine on a temp SQLite
//! file, the real HTTP client against the fake Readwise (real HTTP on loopback), and the
//! in-memory keychain (the real one is exercised by the root `tests/readwise.rs`).

use std::time::{Duration, Instant};

use readwise_fake::{FakeConfig, FakeEndpoint, FakeReadwise, Fault};
use serde_json::{json, Value};
use stepdesk_engine::admin::{RunDetail, RunQuery};
use stepdesk_engine::event::parse_events;
use stepdesk_engine::SendError;
use stepdesk_readwise_sync::admin::CheckOutcome;
use stepdesk_readwise_sync::users::{SyncStatus, TokenStatus};

mod common;

use common::{harness, harness_with_keychain, Harness};

impl Harness {
    async fn add(&self, user: &str, token: &str, books: usize) {
        self.fake.add_user(token, books);
        self.sync
            .admin()
            .add_user(user, None, Some(token))
            .await
            .unwrap();
    }

    async fn send(&self, body: Value) -> Result<Vec<String>, SendError> {
        let events = parse_events(body.to_string().as_bytes()).unwrap();
        self.engine.send_events(events).await
    }

    /// Syncs a user through the event and waits for the run to end.
    async fn sync_user(&self, user: &str) -> RunDetail {
        let ids = self
            .send(json!({"name": "readwise/fetch-books", "data": {"userId": user}}))
            .await
            .unwrap();
        self.wait_event_run(&ids[0]).await
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

    async fn user(&self, id: &str) -> stepdesk_readwise_sync::users::User {
        self.sync.admin().user(id).await.unwrap()
    }

    /// Waits until the user satisfies `done`.
    async fn wait_user(
        &self,
        id: &str,
        done: impl Fn(&stepdesk_readwise_sync::users::User) -> bool,
    ) -> stepdesk_readwise_sync::users::User {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let user = self.user(id).await;
            if done(&user) {
                return user;
            }
            assert!(Instant::now() < deadline, "user never got there: {user:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a run to end.
    async fn wait_run(&self, run_id: &str) -> RunDetail {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.engine.admin().run(run_id).await.unwrap();
            if run.summary.status != "Running" {
                return run;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The runs of a function, newest first.
    async fn runs_of(&self, function_id: &str) -> Vec<stepdesk_engine::admin::RunSummary> {
        self.engine
            .admin()
            .runs(RunQuery {
                function_id: Some(function_id.into()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap()
            .runs
    }
}

fn step_ids(run: &RunDetail) -> Vec<String> {
    run.steps.iter().map(|s| s.id.clone()).collect()
}

#[tokio::test]
async fn first_sync_is_full_later_ones_incremental_and_counts_always_match() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("ada", "tok-ada", 2_500).await;

    let run = h.sync_user("ada").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    assert_eq!(
        step_ids(&run),
        [
            "load-user",
            "check-token",
            "fetch-page-1",
            "fetch-page-2",
            "fetch-page-3",
            "record-sync-result"
        ]
    );
    let out = run.output.clone().unwrap();
    assert_eq!(out["bookCount"], 2_500);
    assert_eq!(out["mode"], "full");
    let user = h.user("ada").await;
    assert_eq!(user.stored_books, 2_500);
    assert_eq!(user.last_sync.as_ref().unwrap().status, SyncStatus::Ok);
    assert_eq!(user.last_sync.as_ref().unwrap().book_count, Some(2_500));
    assert!(user.watermark.is_some());

    // Five books change: the next sync asks only for books updated after the watermark.
    h.fake.touch_books("tok-ada", 5);
    let run = h.sync_user("ada").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    let out = run.output.clone().unwrap();
    assert_eq!(out["mode"], "incremental");
    assert_eq!(out["bookCount"], 2_500);
    assert!(step_ids(&run).contains(&"count-books".to_string()));
    let query = h
        .fake
        .last_query("tok-ada", FakeEndpoint::Books)
        .unwrap_or_default();
    assert!(
        query.contains("page_size=1"),
        "the last request is the cheap count: {query}"
    );

    // Books deleted in Readwise: the incremental listing cannot see it, the count check
    // does, and a full listing prunes them.
    let remaining: Vec<Value> = h.fake.books("tok-ada").into_iter().take(2_000).collect();
    h.fake.set_books("tok-ada", remaining);
    let run = h.sync_user("ada").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    let out = run.output.clone().unwrap();
    assert_eq!(out["bookCount"], 2_000);
    assert_eq!(out["mode"], "full");
    assert_eq!(out["removed"], 500);
    assert_eq!(h.user("ada").await.stored_books, 2_000);
}

#[tokio::test]
async fn a_rejected_token_fails_the_run_without_retrying_and_marks_the_user() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("bob", "tok-bob", 10).await;
    h.fake.remove_token("tok-bob");
    let run = h.sync_user("bob").await;
    assert_eq!(run.summary.status, "Failed");
    assert_eq!(
        run.error.as_ref().unwrap()["message"],
        "Readwise rejected the token for user bob"
    );
    let check = run.steps.iter().find(|s| s.id == "check-token").unwrap();
    assert_eq!(check.status, "Failed");
    assert_eq!(check.attempts, 1, "a rejected token is not retried");
    // The failure handler records the failure on the user.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let user = h.user("bob").await;
        if user
            .last_sync
            .as_ref()
            .is_some_and(|s| s.status == SyncStatus::Failed)
        {
            assert_eq!(user.token_status, TokenStatus::Rejected);
            assert_eq!(
                user.last_sync.unwrap().error.as_deref(),
                Some("Readwise rejected the token for user bob")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failure was not recorded: {user:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn server_errors_timeouts_and_malformed_pages_are_retried() {
    let h = harness(FakeConfig::unlimited(), |c| {
        c.request_timeout = Duration::from_millis(400)
    })
    .await;
    h.add("cy", "tok-cy", 1_500).await;
    h.fake
        .inject("tok-cy", Some(FakeEndpoint::Books), Fault::Status(503), 1);
    h.fake.inject(
        "tok-cy",
        Some(FakeEndpoint::Books),
        Fault::Slow(Duration::from_millis(1_500)),
        1,
    );
    h.fake
        .inject("tok-cy", Some(FakeEndpoint::Books), Fault::Malformed, 1);
    let run = h.sync_user("cy").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    assert_eq!(run.output.unwrap()["bookCount"], 1_500);
    let page = run.steps.iter().find(|s| s.id == "fetch-page-1").unwrap();
    assert_eq!(page.failed_attempts.len(), 3, "{page:?}");
    let errors: Vec<String> = page
        .failed_attempts
        .iter()
        .map(|a| a.error["message"].to_string())
        .collect();
    assert!(errors[0].contains("503"), "{errors:?}");
    assert!(errors[1].contains("timed out"), "{errors:?}");
    assert!(
        errors[2].contains("malformed") && errors[2].contains("books/"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("dee", "tok-dee", 20).await;
    h.fake.inject(
        "tok-dee",
        Some(FakeEndpoint::Books),
        Fault::Throttle {
            retry_after_secs: 2,
            header: true,
        },
        1,
    );
    let started = Instant::now();
    let run = h.sync_user("dee").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    let page = run.steps.iter().find(|s| s.id == "fetch-page-1").unwrap();
    assert_eq!(page.failed_attempts.len(), 1);
    let attempt = &page.failed_attempts[0];
    assert!(
        attempt.retry_at.unwrap() - attempt.ended_at >= 1_900,
        "{attempt:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1_900));
}

#[tokio::test]
async fn the_client_limiter_keeps_a_long_sync_under_the_rate_limit() {
    // Readwise allows 3 list requests per second here; a 7-page sync must not be throttled.
    let fake = FakeConfig {
        list_limit: 3,
        window: Duration::from_secs(1),
        ..FakeConfig::unlimited()
    };
    let h = harness(fake, |c| {
        c.list_requests_per_minute = 3;
        c.rate_window = Duration::from_secs(1);
    })
    .await;
    h.add("eve", "tok-eve", 6_500).await;
    let run = h.sync_user("eve").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    assert_eq!(run.output.unwrap()["bookCount"], 6_500);
    assert_eq!(h.fake.stats().throttled, 0, "no 429 was provoked");
}

#[tokio::test]
async fn events_are_validated_and_api_keys_move_to_the_keychain() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.sync
        .admin()
        .add_user("fay", Some("Fay"), None)
        .await
        .unwrap();
    assert_eq!(h.user("fay").await.token_status, TokenStatus::Missing);
    h.fake.add_user("tok-fay-secret", 3);

    // Unknown user, missing userId, bad apiKey, bad daily-sync timestamp: refused, naming the field.
    for (body, expected) in [
        (
            json!({"name": "readwise/fetch-books", "data": {"userId": "nobody"}}),
            "`data.userId`: no user `nobody`",
        ),
        (
            json!({"name": "readwise/fetch-books", "data": {}}),
            "`data.userId` is required",
        ),
        (
            json!({"name": "readwise/fetch-books", "data": {"userId": "fay", "apiKey": 12}}),
            "`data.apiKey` must be a string",
        ),
        (
            json!({"name": "readwise/daily-sync", "data": {"timestamp": "soon"}}),
            "`data.timestamp`",
        ),
    ] {
        match h.send(body).await {
            Err(SendError::Invalid(e)) => assert!(e.to_string().contains(expected), "{e}"),
            other => panic!("expected a refusal naming {expected}: {other:?}"),
        }
    }

    // The seed's payload: the key is saved for the user and is not in the stored event.
    let ids = h
        .send(json!({"name": "readwise/fetch-books", "data": {"userId": "fay", "apiKey": "tok-fay-secret"}}))
        .await
        .unwrap();
    let stored = h.engine.admin().event(&ids[0]).await.unwrap();
    assert_eq!(stored.data, json!({"userId": "fay"}));
    let run = h.wait_event_run(&ids[0]).await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    assert_eq!(h.user("fay").await.token_status, TokenStatus::Connected);
    assert!(!serde_json::to_string(&run)
        .unwrap()
        .contains("tok-fay-secret"));

    // "Test function" with the seed payload goes through the same gate.
    let started = h
        .engine
        .admin()
        .invoke(
            "readwise-fetch-books",
            json!({"userId": "fay", "apiKey": "tok-fay-secret"})
                .as_object()
                .unwrap()
                .clone(),
            Default::default(),
        )
        .await
        .unwrap();
    let event = h.engine.admin().event(&started.event_id).await.unwrap();
    assert!(event.data.get("apiKey").is_none(), "{:?}", event.data);
}

#[tokio::test]
async fn the_daily_sync_fans_out_once_per_connected_user_and_reports_progress() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    for i in 0..12 {
        h.add(&format!("user-{i:02}"), &format!("tok-{i:02}"), 50 + i)
            .await;
    }
    h.sync
        .admin()
        .add_user("no-token", None, None)
        .await
        .unwrap();
    // Never checked: the daily sync includes them all the same, and their sync decides.
    assert_eq!(h.user("user-00").await.token_status, TokenStatus::Unchecked);
    let requested = h.sync.admin().sync_all().await.unwrap();
    let daily = h.wait_event_run(&requested.event_id).await;
    assert_eq!(daily.summary.status, "Completed", "{:?}", daily.error);
    assert_eq!(daily.output.as_ref().unwrap()["users"], 12);

    let deadline = Instant::now() + Duration::from_secs(30);
    let progress = loop {
        let syncs = h.sync.admin().daily_syncs(Some(5)).await.unwrap();
        let p = syncs
            .into_iter()
            .find(|s| s.run_id == daily.summary.id)
            .expect("progress recorded");
        if p.done == p.total {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "daily sync did not finish: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((progress.total, progress.ok, progress.failed), (12, 12, 0));
    for i in 0..12 {
        let user = h.user(&format!("user-{i:02}")).await;
        assert_eq!(user.stored_books, 50 + i as i64);
        assert_eq!(
            user.token_status,
            TokenStatus::Connected,
            "the sync checked it"
        );
        assert_eq!(
            user.last_sync.unwrap().daily_sync_run_id.as_deref(),
            Some(daily.summary.id.as_str())
        );
    }
    let runs = h
        .engine
        .admin()
        .runs(RunQuery {
            function_id: Some("readwise-fetch-books".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 12, "one sync per connected user");

    // A rerun of the daily sync's fan-out step sends nothing twice (event ids are per run).
    assert!(h.user("no-token").await.last_sync.is_none());
}

#[tokio::test]
async fn syncs_of_one_user_never_overlap() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("gus", "tok-gus", 10).await;
    h.fake.set_latency(Duration::from_millis(150));
    let a = h
        .send(json!({"name": "readwise/fetch-books", "data": {"userId": "gus"}}))
        .await
        .unwrap();
    let b = h
        .send(json!({"name": "readwise/fetch-books", "data": {"userId": "gus"}}))
        .await
        .unwrap();
    let first = h.wait_event_run(&a[0]).await;
    let second = h.wait_event_run(&b[0]).await;
    assert_eq!(first.summary.status, "Completed");
    assert_eq!(second.summary.status, "Completed");
    assert!(
        second.summary.started_at.unwrap() >= first.summary.ended_at.unwrap(),
        "the second sync started before the first ended"
    );
    assert_eq!(h.fake.stats().max_concurrent, 1);
}

#[tokio::test]
async fn the_readwise_url_can_be_changed_in_settings() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    let other = FakeReadwise::start(FakeConfig::unlimited()).await.unwrap();
    other.add_user("tok-hal", 7);
    h.sync
        .admin()
        .add_user("hal", None, Some("tok-hal"))
        .await
        .unwrap();
    assert_eq!(h.sync.settings().await.unwrap().source, "default");

    // The first fake does not know the token.
    let run = h.sync_user("hal").await;
    assert_eq!(run.summary.status, "Failed");

    let settings = h.sync.set_api_url(Some(&other.base_url())).await.unwrap();
    assert_eq!(settings.source, "settings");
    assert_eq!(settings.readwise_api_url, other.base_url());
    h.sync
        .admin()
        .add_user("hal", None, Some("tok-hal"))
        .await
        .unwrap();
    let run = h.sync_user("hal").await;
    assert_eq!(run.summary.status, "Completed", "{:?}", run.error);
    assert_eq!(run.output.unwrap()["bookCount"], 7);

    assert!(matches!(
        h.sync.set_api_url(Some("ftp://nope")).await,
        Err(stepdesk_readwise_sync::SettingsError::Invalid(_))
    ));
    let reset = h.sync.set_api_url(None).await.unwrap();
    assert_eq!(reset.source, "default");
    assert_eq!(reset.readwise_api_url, stepdesk_readwise::DEFAULT_BASE_URL);
    h.sync.pin_api_url();
    assert!(matches!(
        h.sync.set_api_url(Some(&other.base_url())).await,
        Err(stepdesk_readwise_sync::SettingsError::Pinned)
    ));
}

#[tokio::test]
async fn an_unavailable_keychain_is_a_retryable_failure_not_a_bad_event() {
    let no_keychain = Err(stepdesk_secrets::SecretsError::Unavailable {
        detail: "no bus".into(),
    });
    let h = harness_with_keychain(FakeConfig::unlimited(), |_| {}, no_keychain).await;
    let (sync, engine) = (&h.sync, &h.engine);
    sync.admin().add_user("ivy", None, None).await.unwrap();
    let body =
        json!({"name": "readwise/fetch-books", "data": {"userId": "ivy", "apiKey": "tok-ivy"}});
    match engine
        .send_events(parse_events(body.to_string().as_bytes()).unwrap())
        .await
    {
        Err(SendError::Unavailable(e)) => {
            assert!(e.contains("no Secret Service"), "{e}");
            assert!(!e.contains("tok-ivy"));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let events = engine.admin().events(Default::default()).await.unwrap();
    assert!(events.events.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_cancelled_sync_counts_as_done_in_the_daily_progress() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("jo", "tok-jo", 5).await;
    h.add("kim", "tok-kim", 5).await;
    h.fake.slow_next("tok-kim", 1, Duration::from_secs(30));
    let requested = h.sync.admin().sync_all().await.unwrap();
    let daily = h.wait_event_run(&requested.event_id).await;
    let admin = h.engine.admin();
    // Find kim's fetch run (stuck on the slow answer) and cancel it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let kim_run = loop {
        let runs = admin
            .runs(RunQuery {
                function_id: Some("readwise-fetch-books".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut found = None;
        for r in runs.runs.iter().filter(|r| r.status == "Running") {
            let detail = admin.run(&r.id).await.unwrap();
            if detail.event.as_ref().unwrap()["data"]["userId"] == "kim" && !detail.steps.is_empty()
            {
                found = Some(r.id.clone());
            }
        }
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "kim's sync did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    admin.cancel(&kim_run).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = h
            .sync
            .admin()
            .daily_syncs(Some(5))
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.run_id == daily.summary.id)
            .unwrap();
        if p.done == p.total {
            assert_eq!((p.total, p.ok, p.failed), (2, 1, 1));
            break;
        }
        assert!(Instant::now() < deadline, "progress never completed: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reliability 4: the failure handler of an old run, running late, used to overwrite the
/// record of a newer successful sync.
#[tokio::test]
async fn an_old_failure_never_overwrites_a_newer_sync_record() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("lee", "tok-lee", 5).await;
    h.fake.remove_token("tok-lee");
    let failed = h.sync_user("lee").await;
    assert_eq!(failed.summary.status, "Failed");
    let u = h
        .wait_user("lee", |u| {
            u.last_sync
                .as_ref()
                .is_some_and(|s| s.status == SyncStatus::Failed)
        })
        .await;
    assert_eq!(
        u.last_sync.unwrap().run_id.as_deref(),
        Some(failed.summary.id.as_str())
    );
    let handlers = h.runs_of("readwise-fetch-books-failure").await;
    assert_eq!(handlers.len(), 1, "{handlers:?}");
    let handler = h.wait_run(&handlers[0].id).await;
    assert_eq!(handler.output.unwrap()["recorded"], true);

    // A newer sync succeeds.
    h.fake.add_user("tok-lee", 5);
    let ok = h.sync_user("lee").await;
    assert_eq!(ok.summary.status, "Completed", "{:?}", ok.error);
    let record = h.user("lee").await.last_sync.unwrap();
    assert_eq!(record.status, SyncStatus::Ok);
    assert_eq!(record.run_id.as_deref(), Some(ok.summary.id.as_str()));

    // The old run's failure handler runs again now, as it does when it runs late: it must
    // leave the newer record alone.
    let again = h.engine.admin().rerun(&handlers[0].id).await.unwrap();
    let again = h.wait_run(&again.run_id).await;
    assert_eq!(again.summary.status, "Completed", "{:?}", again.error);
    assert_eq!(again.output.unwrap()["recorded"], false);
    let u = h.user("lee").await;
    let after = u.last_sync.unwrap();
    assert_eq!(after, record, "the newer success is kept");
    assert_eq!(after.error, None);
    assert_eq!(u.token_status, TokenStatus::Connected);
}

/// Reliability 4: a cancelled sync left the user shown as "running" for ever. Also Security 3
/// through the functions: `Retry-After: 18446744073709551615` from Readwise makes the page
/// step wait a day (clamped), with no overflow on the way.
#[tokio::test]
async fn a_cancelled_sync_is_recorded_as_cancelled_not_running() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("max", "tok-max", 5).await;
    h.fake.inject(
        "tok-max",
        Some(FakeEndpoint::Books),
        Fault::ThrottleRaw {
            retry_after: u64::MAX.to_string(),
            body_secs: 1,
        },
        1,
    );
    let ids = h
        .send(json!({"name": "readwise/fetch-books", "data": {"userId": "max"}}))
        .await
        .unwrap();
    let admin = h.engine.admin();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (run_id, attempt) = loop {
        let runs = admin.event_runs(&ids[0]).await.unwrap();
        if let Some(r) = runs.first() {
            let detail = admin.run(&r.id).await.unwrap();
            assert_eq!(detail.summary.status, "Running", "{detail:?}");
            if let Some(a) = detail
                .steps
                .iter()
                .find(|s| s.id == "fetch-page-1")
                .and_then(|s| s.failed_attempts.first())
            {
                break (r.id.clone(), a.clone());
            }
        }
        assert!(Instant::now() < deadline, "no throttled attempt: {runs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let day_ms = 24 * 3600 * 1000;
    let wait = attempt.retry_at.unwrap() - attempt.ended_at;
    assert!(
        (day_ms - 1_000..=day_ms + 1_000).contains(&wait),
        "the retry waits a day: {attempt:?}"
    );
    let before = h.user("max").await.last_sync.unwrap();
    assert_eq!(before.status, SyncStatus::Running);

    let cancelled = admin.cancel(&run_id).await.unwrap();
    let u = h
        .wait_user("max", |u| {
            u.last_sync
                .as_ref()
                .is_some_and(|s| s.status != SyncStatus::Running)
        })
        .await;
    let record = u.last_sync.unwrap();
    assert_eq!(record.status, SyncStatus::Cancelled, "{record:?}");
    assert_eq!(record.run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(
        record.at, cancelled.ended_at,
        "the time of the cancellation"
    );
    assert_eq!(record.error, None);
    let handlers = h.runs_of("readwise-fetch-books-cancelled").await;
    assert_eq!(handlers.len(), 1, "{handlers:?}");

    // A newer sync (with a new token: the old one's bucket is closed for the day) succeeds,
    // and the cancellation, recorded again late, does not undo it.
    h.add("max", "tok-max-2", 5).await;
    let ok = h.sync_user("max").await;
    assert_eq!(ok.summary.status, "Completed", "{:?}", ok.error);
    let again = admin.rerun(&handlers[0].id).await.unwrap();
    let again = h.wait_run(&again.run_id).await;
    assert_eq!(again.output.unwrap()["recorded"], false);
    let record = h.user("max").await.last_sync.unwrap();
    assert_eq!(record.status, SyncStatus::Ok);
    assert_eq!(record.run_id.as_deref(), Some(ok.summary.id.as_str()));
}

/// Usability 3: a new token is `unchecked`, not `connected`; a check that cannot reach
/// Readwise judges nothing; only 401/403 rejects.
#[tokio::test]
async fn token_checks_tell_an_unreachable_readwise_from_a_rejected_token() {
    let h = harness(FakeConfig::unlimited(), |c| {
        c.request_timeout = Duration::from_millis(500)
    })
    .await;
    let admin = h.sync.admin();
    h.add("nia", "tok-nia", 1).await;
    let u = h.user("nia").await;
    assert_eq!(u.token_status, TokenStatus::Unchecked);
    assert_eq!(u.token_checked_at, None);
    assert_eq!(
        serde_json::to_value(&u).unwrap()["token_status"],
        "unchecked"
    );

    // 5xx and a timeout: unreachable, the status stays as it was.
    h.fake.fail_next("tok-nia", 1, 503);
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(c.status, CheckOutcome::Unreachable);
    assert_eq!(c.token_status, TokenStatus::Unchecked);
    let detail = c.detail.unwrap();
    assert!(
        detail.contains("could not be reached") && detail.contains("not judged"),
        "{detail}"
    );
    assert!(detail.contains("503"), "{detail}");
    h.fake.slow_next("tok-nia", 1, Duration::from_secs(2));
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(c.status, CheckOutcome::Unreachable);
    assert!(c.detail.unwrap().contains("timed out"));
    let u = h.user("nia").await;
    assert_eq!(u.token_status, TokenStatus::Unchecked);
    assert_eq!(u.token_checked_at, None);

    // Accepted: connected. Then Readwise fails again: still connected.
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(
        (c.status, c.token_status),
        (CheckOutcome::Connected, TokenStatus::Connected)
    );
    h.fake.fail_next("tok-nia", 1, 502);
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(
        (c.status, c.token_status),
        (CheckOutcome::Unreachable, TokenStatus::Connected)
    );
    assert_eq!(h.user("nia").await.token_status, TokenStatus::Connected);

    // 401: rejected. A replaced token is unchecked again.
    h.fake.remove_token("tok-nia");
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(
        (c.status, c.token_status),
        (CheckOutcome::Rejected, TokenStatus::Rejected)
    );
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["status"], "rejected");
    assert_eq!(json["token_status"], "rejected");
    h.add("nia", "tok-nia-2", 1).await;
    assert_eq!(h.user("nia").await.token_status, TokenStatus::Unchecked);
    h.fake.fail_next("tok-nia-2", 1, 403);
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(c.status, CheckOutcome::Rejected);

    // Readwise gone altogether (connection refused): unreachable, still rejected.
    h.fake.shutdown();
    let c = admin.check_user("nia").await.unwrap();
    assert_eq!(
        (c.status, c.token_status),
        (CheckOutcome::Unreachable, TokenStatus::Rejected)
    );
    assert_eq!(serde_json::to_value(&c).unwrap()["status"], "unreachable");

    // No token at all: missing.
    admin.add_user("zed", None, None).await.unwrap();
    let c = admin.check_user("zed").await.unwrap();
    assert_eq!(
        (c.status, c.token_status),
        (CheckOutcome::Missing, TokenStatus::Missing)
    );
}

/// Waits until the daily sync `run_id` has all its users done; its progress.
async fn wait_daily_done(
    h: &Harness,
    run_id: &str,
) -> stepdesk_readwise_sync::users::DailySyncDetail {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detail = h.sync.admin().daily_sync(run_id).await.unwrap();
        if detail.progress.done == detail.progress.total {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "daily sync did not finish: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_daily_sync_is_replayed_for_its_failed_users_only() {
    let h = harness(FakeConfig::unlimited(), |_| {}).await;
    h.add("ann", "tok-ann", 3).await;
    h.add("bob", "tok-bob", 4).await;
    h.add("cy", "tok-cy", 5).await;
    // Readwise no longer knows bob's token: his sync fails (rejected).
    h.fake.remove_token("tok-bob");
    let requested = h.sync.admin().sync_all().await.unwrap();
    let daily = h.wait_event_run(&requested.event_id).await;
    let detail = wait_daily_done(&h, &daily.summary.id).await;
    assert_eq!(
        (
            detail.progress.total,
            detail.progress.ok,
            detail.progress.failed
        ),
        (3, 2, 1)
    );
    let statuses: Vec<(String, Option<String>)> = detail
        .users
        .iter()
        .map(|u| (u.user_id.clone(), u.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("ann".to_string(), Some("Completed".to_string())),
            ("bob".to_string(), Some("Failed".to_string())),
            ("cy".to_string(), Some("Completed".to_string())),
        ]
    );
    assert!(detail.users[1].error.is_some(), "the failure says why");

    // Replayed before his token is fixed, bob would be skipped: the replay is refused, saying why.
    let err = h
        .sync
        .admin()
        .replay_daily_sync(&daily.summary.id, true)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("none of these users can be synced: bob"),
        "{err}"
    );

    // Support fixes bob's token, then replays the failed users only.
    h.fake.add_user("tok-bob-2", 4);
    h.sync
        .admin()
        .add_user("bob", None, Some("tok-bob-2"))
        .await
        .unwrap();
    let replay = h
        .sync
        .admin()
        .replay_daily_sync(&daily.summary.id, true)
        .await
        .unwrap();
    let replay_run = h.wait_event_run(&replay.event_id).await;
    let replayed = wait_daily_done(&h, &replay_run.summary.id).await;
    assert_eq!(
        replayed.progress.replay_of.as_deref(),
        Some(daily.summary.id.as_str())
    );
    assert_eq!(
        (
            replayed.progress.total,
            replayed.progress.ok,
            replayed.progress.failed
        ),
        (1, 1, 0)
    );
    assert_eq!(replayed.users[0].user_id, "bob");
    assert_eq!(h.user("bob").await.stored_books, 4);

    // Replaying a daily sync with no failure has nothing to do; "all" replays everyone.
    let err = h
        .sync
        .admin()
        .replay_daily_sync(&replay_run.summary.id, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to replay"), "{err}");
    let all = h
        .sync
        .admin()
        .replay_daily_sync(&daily.summary.id, false)
        .await
        .unwrap();
    let all_run = h.wait_event_run(&all.event_id).await;
    assert_eq!(
        wait_daily_done(&h, &all_run.summary.id)
            .await
            .progress
            .total,
        3
    );
}
