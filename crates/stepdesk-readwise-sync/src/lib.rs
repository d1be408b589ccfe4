//! The seed app's Readwise sync, running on Stepdesk.
//!
//! - [`events`]: `readwise/fetch-books` and `readwise/daily-sync`, validated at the door.
//! - functions `readwise-fetch-books` (one user, one durable step per page) and
//!   `readwise-daily-sync` (cron `0 3 * * *` UTC and the event: one fetch per user).
//! - [`users`]: users and their books in SQLite; tokens only in the keychain.
//! - [`admin`]: the operations behind the CLI, the admin HTTP routes and the window.
//! - [`routes`]: the seed's HTTP routes and the admin routes for users.

pub mod admin;
pub mod events;
mod functions;
mod gate;
pub mod routes;
mod schema;
pub mod users;

use std::sync::{Arc, OnceLock};

use stepdesk_engine::store::{Store, StoreError};
use stepdesk_engine::{Engine, EventGate, Function};
use stepdesk_readwise::{ReadwiseClient, Token};
use stepdesk_secrets::{Secrets, SecretsError};

pub use admin::ReadwiseAdmin;

/// The keychain entry holding a user's Readwise token.
pub fn token_key(user_id: &str) -> String {
    format!("readwise-token:{user_id}")
}

/// Shared state of the Readwise sync. Cheap to clone.
#[derive(Clone)]
pub struct ReadwiseSync {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The keychain, or why there is none.
    secrets: Result<Secrets, String>,
    client: ReadwiseClient,
    engine: OnceLock<Engine>,
}

impl ReadwiseSync {
    /// Creates the Readwise tables if needed. `secrets` is the keychain, or the reason none
    /// is available (every operation needing a token then fails with that reason).
    pub async fn new(
        store: Store,
        secrets: Result<Secrets, SecretsError>,
        client: ReadwiseClient,
    ) -> Result<Self, StoreError> {
        store.write(schema::migrate).await?;
        Ok(ReadwiseSync {
            inner: Arc::new(Inner {
                store,
                secrets: secrets.map_err(|e| e.to_string()),
                client,
                engine: OnceLock::new(),
            }),
        })
    }

    /// The two Readwise functions, to register with the engine.
    pub fn functions(&self) -> Vec<Function> {
        functions::all(self.clone())
    }

    /// The gate that validates Readwise events and moves `apiKey` into the keychain.
    pub fn gate(&self) -> Arc<dyn EventGate> {
        Arc::new(gate::ReadwiseGate { sync: self.clone() })
    }

    /// Connects the running engine (for sending events from routes and the admin API).
    pub fn attach(&self, engine: Engine) {
        let _ = self.inner.engine.set(engine);
    }

    pub fn admin(&self) -> ReadwiseAdmin {
        ReadwiseAdmin::new(self.clone())
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn client(&self) -> &ReadwiseClient {
        &self.inner.client
    }

    pub(crate) fn engine(&self) -> Result<&Engine, String> {
        self.inner
            .engine
            .get()
            .ok_or_else(|| "the engine is not running".to_string())
    }

    pub(crate) fn secrets(&self) -> Result<&Secrets, String> {
        self.inner.secrets.as_ref().map_err(Clone::clone)
    }

    /// A user's token from the keychain.
    pub(crate) async fn token(&self, user_id: &str) -> Result<Option<Token>, String> {
        let secrets = self.secrets()?;
        let value = secrets
            .get(&token_key(user_id))
            .await
            .map_err(|e| e.to_string())?;
        Ok(value.map(Token::new))
    }

    pub(crate) async fn save_token(&self, user_id: &str, token: &str) -> Result<(), String> {
        self.secrets()?
            .set(&token_key(user_id), token)
            .await
            .map_err(|e| e.to_string())
    }
}
