//! The Readwise event gate: who may hand Stepdesk a token in an event, and that a request
//! refused as a whole changes nothing (no token saved, no status changed).

use readwise_fake::FakeConfig;
use serde_json::{json, Value};
use stepdesk_engine::event::parse_events;
use stepdesk_engine::{Engine, SendError, Sender};
use stepdesk_readwise_sync::{token_key, ReadwiseSync};
use stepdesk_secrets::Secrets;

mod common;

/// The shared harness, with the in-memory keychain it was given at hand.
struct Harness {
    /// Keeps the fake Readwise and the data directory alive.
    _inner: common::Harness,
    engine: Engine,
    sync: ReadwiseSync,
    secrets: Secrets,
}

async fn harness() -> Harness {
    let secrets = Secrets::in_memory();
    let inner =
        common::harness_with_keychain(FakeConfig::default(), |_| {}, Ok(secrets.clone())).await;
    Harness {
        engine: inner.engine.clone(),
        sync: inner.sync.clone(),
        _inner: inner,
        secrets,
    }
}

impl Harness {
    async fn send(&self, body: Value, sender: Sender) -> Result<Vec<String>, SendError> {
        let events = parse_events(body.to_string().as_bytes()).unwrap();
        self.engine.send_events_from(events, sender).await
    }

    async fn token(&self, user: &str) -> Option<String> {
        self.secrets.get(&token_key(user)).await.unwrap()
    }

    /// The user as the admin API shows it, as JSON (independent of the Rust types).
    async fn user(&self, id: &str) -> Value {
        serde_json::to_value(self.sync.admin().user(id).await.unwrap()).unwrap()
    }

    async fn event_count(&self) -> usize {
        self.engine
            .store()
            .read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap() as usize
    }
}

#[tokio::test]
async fn an_anonymous_sender_cannot_replace_a_users_token() {
    let h = harness().await;
    h.sync
        .admin()
        .add_user("victim", None, Some("victims-token"))
        .await
        .unwrap();
    let before = h.user("victim").await;
    let attack = json!({"name": "readwise/fetch-books", "data": {"userId": "victim", "apiKey": "attackers-token"}});
    match h.send(attack.clone(), Sender::Anonymous).await {
        Err(SendError::Unauthorized(e)) => {
            assert!(e.contains("admin token"), "{e}");
            assert!(!e.contains("attackers-token"), "{e}");
        }
        other => panic!("expected a 401-style refusal: {other:?}"),
    }
    assert_eq!(h.token("victim").await.as_deref(), Some("victims-token"));
    assert_eq!(
        h.user("victim").await,
        before,
        "nothing about the user changed"
    );
    assert_eq!(h.event_count().await, 0, "nothing stored");

    // Without a token in it, the same event from the same sender is fine: a resync.
    h.send(
        json!({"name": "readwise/fetch-books", "data": {"userId": "victim"}}),
        Sender::Anonymous,
    )
    .await
    .unwrap();

    // From an authorized sender, the seed's payload saves the token.
    h.send(attack, Sender::Trusted).await.unwrap();
    assert_eq!(h.token("victim").await.as_deref(), Some("attackers-token"));
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_has_no_side_effect() {
    let h = harness().await;
    h.sync
        .admin()
        .add_user("u1", None, Some("old-token"))
        .await
        .unwrap();
    h.sync.admin().add_user("u2", None, None).await.unwrap();
    let (u1, u2) = (h.user("u1").await, h.user("u2").await);
    // The first events are fine and would save tokens; the last one names no known user.
    let batch = json!([
        {"name": "readwise/fetch-books", "data": {"userId": "u1", "apiKey": "new-token-1"}},
        {"name": "readwise/fetch-books", "data": {"userId": "u2", "apiKey": "new-token-2"}},
        {"name": "readwise/fetch-books", "data": {"userId": "nobody"}}
    ]);
    match h.send(batch, Sender::Trusted).await {
        Err(SendError::Invalid(e)) => assert!(e.to_string().contains("event 2"), "{e}"),
        other => panic!("expected the batch to be refused: {other:?}"),
    }
    assert_eq!(h.token("u1").await.as_deref(), Some("old-token"));
    assert_eq!(h.token("u2").await, None);
    assert_eq!(h.user("u1").await, u1);
    assert_eq!(h.user("u2").await, u2);
    assert_eq!(h.event_count().await, 0);
}
