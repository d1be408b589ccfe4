//! The engine's keys for the admin API (`keys`, `set_key`, `remove_key`): the keychain, the
//! data directory's event-key marker, and the live event key the server enforces. The
//! commands are served like every other one (`/api/admin/keys...`, the window's `admin`),
//! so that `stepdesk keys set|remove` reach a running server and take effect at once.
//!
//! A key pinned by `--event-key` or `STEPDESK_EVENT_KEY` stays in effect when the keychain
//! entry changes; the answer says so. Values are never returned.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use stepdesk_api::keys::{KeyChange, KeyName, KeySource, KeyStatus, KeysStatus};
use stepdesk_api::{ApiError, ApiResult, EventKey, KeyStore};
use stepdesk_engine::function::BoxFuture;
use stepdesk_secrets::Secrets;

use crate::keys_cli::EngineKey;

/// The keys' side of the server. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    /// The server's live event key.
    event_key: EventKey,
    /// Where the key in effect comes from; `Flag` or `Env` never change while running.
    source: Mutex<KeySource>,
    /// The keychain, once connected (retried on each call until then: the session may get a
    /// keyring after start-up).
    secrets: Mutex<Option<Secrets>>,
    data_dir: PathBuf,
}

fn engine_key(name: KeyName) -> EngineKey {
    match name {
        KeyName::EventKey => EngineKey::EventKey,
        KeyName::SigningKey => EngineKey::SigningKey,
    }
}

impl Keys {
    pub fn new(
        event_key: EventKey,
        source: KeySource,
        secrets: Option<Secrets>,
        data_dir: PathBuf,
    ) -> Keys {
        Keys {
            inner: Arc::new(Inner {
                event_key,
                source: Mutex::new(source),
                secrets: Mutex::new(secrets),
                data_dir,
            }),
        }
    }

    fn source(&self) -> KeySource {
        *self.inner.source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keychain, connecting now if it was not available before.
    async fn secrets(&self) -> ApiResult<Secrets> {
        if let Some(s) = self
            .inner
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(s);
        }
        let connected = crate::readwise::keychain()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        *self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner()) = Some(connected.clone());
        Ok(connected)
    }

    /// The state of every key.
    async fn status_now(&self) -> KeysStatus {
        let (event_stored, signing_stored, error) = match self.secrets().await {
            Ok(s) => {
                let ev = s.get(EngineKey::EventKey.keychain_name()).await;
                let sg = s.get(EngineKey::SigningKey.keychain_name()).await;
                let error = ev
                    .as_ref()
                    .err()
                    .or(sg.as_ref().err())
                    .map(|e| e.to_string());
                (
                    ev.ok().map(|v| v.is_some()),
                    sg.ok().map(|v| v.is_some()),
                    error,
                )
            }
            Err(e) => (None, None, Some(e.to_string())),
        };
        KeysStatus {
            event_key: KeyStatus {
                stored: event_stored,
                in_effect: Some(self.inner.event_key.is_set()),
                source: Some(self.source()),
            },
            signing_key: KeyStatus {
                stored: signing_stored,
                in_effect: None,
                source: None,
            },
            keychain_error: error,
        }
    }

    /// After the keychain's event key changed: the marker, and the key in effect unless
    /// pinned. Returns a note when the change does not take effect.
    fn event_key_changed(&self, value: Option<String>) -> Option<String> {
        if let Err(e) = crate::datadir::set_event_key_marker(&self.inner.data_dir, value.is_some())
        {
            tracing::warn!(error = %e, "cannot update the event-key marker in the data directory");
        }
        let mut source = self.inner.source.lock().unwrap_or_else(|p| p.into_inner());
        match *source {
            KeySource::Flag | KeySource::Env => Some(format!(
                "the event key given with {} stays in effect while this server runs; the keychain's key is used when Stepdesk starts without it",
                if *source == KeySource::Flag { "--event-key" } else { "STEPDESK_EVENT_KEY" }
            )),
            _ => {
                *source = if value.is_some() {
                    KeySource::Keychain
                } else {
                    KeySource::None
                };
                let set = value.is_some();
                self.inner.event_key.set(value);
                tracing::info!(required = set, "event key changed through the admin API");
                None
            }
        }
    }

    async fn set_key(&self, name: KeyName, value: String) -> ApiResult<KeyChange> {
        let key = engine_key(name);
        self.secrets()
            .await?
            .set(key.keychain_name(), &value)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let note = match key {
            EngineKey::EventKey => self.event_key_changed(Some(value)),
            EngineKey::SigningKey => None,
        };
        tracing::info!(key = key.keychain_name(), "key stored in the keychain");
        Ok(KeyChange {
            status: self.status_now().await,
            note,
        })
    }

    async fn remove_key(&self, name: KeyName) -> ApiResult<KeyChange> {
        let key = engine_key(name);
        let removed = self
            .secrets()
            .await?
            .delete(key.keychain_name())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        if !removed {
            // Gone from the keychain by other means: the key in effect must not outlive it.
            if matches!(key, EngineKey::EventKey) && self.source() == KeySource::Keychain {
                self.event_key_changed(None);
            }
            return Err(ApiError::NotFound(format!(
                "{} is not set",
                key.keychain_name()
            )));
        }
        let note = match key {
            EngineKey::EventKey => self.event_key_changed(None),
            EngineKey::SigningKey => None,
        };
        tracing::info!(key = key.keychain_name(), "key removed from the keychain");
        Ok(KeyChange {
            status: self.status_now().await,
            note,
        })
    }
}

impl KeyStore for Keys {
    fn status(&self) -> BoxFuture<ApiResult<KeysStatus>> {
        let keys = self.clone();
        Box::pin(async move { Ok(keys.status_now().await) })
    }

    fn set(&self, name: KeyName, value: String) -> BoxFuture<ApiResult<KeyChange>> {
        let keys = self.clone();
        Box::pin(async move { keys.set_key(name, value).await })
    }

    fn remove(&self, name: KeyName) -> BoxFuture<ApiResult<KeyChange>> {
        let keys = self.clone();
        Box::pin(async move { keys.remove_key(name).await })
    }
}
