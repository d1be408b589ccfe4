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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use stepdesk_engine::store::{Store, StoreError};
use stepdesk_engine::{Engine, EventGate, Function};
use stepdesk_readwise::{ReadwiseClient, Token};
use stepdesk_secrets::{Secrets, SecretsError};

pub use admin::ReadwiseAdmin;

/// Why a setting was not changed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("READWISE_API_URL (or --readwise-url) is set and takes precedence over settings")]
    Pinned,
    #[error("{0}")]
    Invalid(String),
}

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
    client: RwLock<ReadwiseClient>,
    /// The base URL was fixed by the environment or a flag: the stored setting is ignored.
    url_pinned: AtomicBool,
    /// Where the client's base URL comes from (a [`ReadwiseSettings::source`]), recorded
    /// whenever the client changes: what is in effect, whatever the database says now.
    url_source: RwLock<&'static str>,
    engine: OnceLock<Engine>,
}

/// Where the Readwise API base URL in use comes from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, ts_rs::TS)]
pub struct ReadwiseSettings {
    pub readwise_api_url: String,
    /// `default`, `settings` (stored with the admin API or `stepdesk settings`), or
    /// `environment` (READWISE_API_URL or --readwise-url, which win over settings).
    pub source: String,
    /// Set when a stored URL is ignored, saying why (one stored by an older version that
    /// allowed plain `http://` to any host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

const API_URL_SETTING: &str = "readwise.api_url";

/// Why a stored Readwise API URL is not used, if it is not.
fn refused_stored_url(url: &str) -> Option<String> {
    let e = stepdesk_readwise::ClientConfig::default()
        .with_base_url(url)
        .err()?;
    Some(format!(
        "the stored Readwise API URL is ignored and the default is used: {e}; store another with \
         `stepdesk settings set-readwise-url URL` (or `PUT /api/admin/settings`), or drop it with \
         `stepdesk settings reset-readwise-url`"
    ))
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
        // The change feed names changed users by id (the console refreshes their rows).
        store.name_changed_rows(
            "readwise_users",
            "SELECT id FROM readwise_users WHERE rowid = ?1",
        );
        Ok(ReadwiseSync {
            inner: Arc::new(Inner {
                store,
                secrets: secrets.map_err(|e| e.to_string()),
                client: RwLock::new(client),
                url_pinned: AtomicBool::new(false),
                url_source: RwLock::new("default"),
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

    /// The Readwise client in use (clones share connections and limits).
    pub(crate) fn client(&self) -> ReadwiseClient {
        self.inner
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Declares the client's base URL fixed by the environment or a flag.
    pub fn pin_api_url(&self) {
        self.inner.url_pinned.store(true, Ordering::SeqCst);
        self.set_url_source("environment");
    }

    fn set_url_source(&self, source: &'static str) {
        *self
            .inner
            .url_source
            .write()
            .unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Uses the base URL stored in settings, unless pinned. Call once at start-up.
    ///
    /// A stored URL that is no longer acceptable (plain `http://` to a host that is not
    /// loopback, stored by an older version) is ignored with a warning, and the default URL
    /// is used: failing here would also stop `stepdesk settings` from fixing it.
    pub async fn apply_stored_settings(&self) -> Result<(), String> {
        if self.inner.url_pinned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let stored = self
            .store()
            .read(|c| schema::get_setting(c, API_URL_SETTING))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(url) = stored {
            if let Some(warning) = refused_stored_url(&url) {
                tracing::warn!("{warning}");
                return Ok(());
            }
            self.swap_client(&url, "settings")?;
        }
        Ok(())
    }

    fn swap_client(&self, url: &str, source: &'static str) -> Result<(), String> {
        let config = self
            .client()
            .config()
            .clone()
            .with_base_url(url)
            .map_err(|e| e.to_string())?;
        let client = ReadwiseClient::new(config).map_err(|e| e.to_string())?;
        let mut current = self.inner.client.write().unwrap_or_else(|p| p.into_inner());
        *current = client;
        // Under the client's lock, so that `settings` sees the URL and its source together.
        self.set_url_source(source);
        Ok(())
    }

    /// The Readwise settings in effect in this process: the client's URL and where it came
    /// from when it was applied. Not the database's setting, which another process
    /// (`stepdesk settings` while a server runs) may have changed since.
    pub async fn settings(&self) -> Result<ReadwiseSettings, String> {
        // A stored URL that is refused is not in effect: say so (only while the default is).
        let stored = self
            .store()
            .read(|c| schema::get_setting(c, API_URL_SETTING))
            .await
            .map_err(|e| e.to_string())?;
        // Under the client's lock, so that a concurrent change is seen whole.
        let client = self.inner.client.read().unwrap_or_else(|p| p.into_inner());
        let source = *self
            .inner
            .url_source
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let warning = stored
            .as_deref()
            .filter(|_| source == "default")
            .and_then(refused_stored_url);
        Ok(ReadwiseSettings {
            readwise_api_url: client.config().base_url.to_string(),
            source: source.into(),
            warning,
        })
    }

    /// Stores (or with `None`, forgets) the Readwise API base URL and uses it from now on.
    pub async fn set_api_url(&self, url: Option<&str>) -> Result<ReadwiseSettings, SettingsError> {
        if self.inner.url_pinned.load(Ordering::SeqCst) {
            return Err(SettingsError::Pinned);
        }
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let effective = url.unwrap_or(stepdesk_readwise::DEFAULT_BASE_URL);
        let source = if url.is_some() { "settings" } else { "default" };
        self.swap_client(effective, source)
            .map_err(SettingsError::Invalid)?;
        let value = url.map(str::to_string);
        self.store()
            .write(move |c| schema::set_setting(c, API_URL_SETTING, value.as_deref()))
            .await
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        tracing::info!(url = effective, "Readwise API URL changed");
        self.settings().await.map_err(SettingsError::Invalid)
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

    /// Removes a user's token from the keychain; false if there was none.
    pub(crate) async fn delete_token(&self, user_id: &str) -> Result<bool, String> {
        self.secrets()?
            .delete(&token_key(user_id))
            .await
            .map_err(|e| e.to_string())
    }
}
