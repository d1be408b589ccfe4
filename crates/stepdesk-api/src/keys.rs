//! The engine's own keys (the event key senders must use, the signing key): their status,
//! and setting or removing them in the OS keychain. The keychain and the data directory's
//! bookkeeping belong to the program (the `stepdesk` binary implements [`KeyStore`]); the
//! live event key the HTTP server enforces is an [`EventKey`].
//!
//! Values are write-only: nothing here returns a key.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use stepdesk_engine::function::BoxFuture;

use crate::ApiResult;

/// The event key in effect, shared by the HTTP server (which enforces it) and whatever may
/// change it while the server runs. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventKey(Arc<RwLock<Option<String>>>);

impl EventKey {
    pub fn new(key: Option<String>) -> EventKey {
        EventKey(Arc::new(RwLock::new(key)))
    }

    /// The key senders must use, if one is set.
    pub fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, key: Option<String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }

    pub fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// The engine's keys, by the names routes and the console use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "kebab-case")]
pub enum KeyName {
    /// The key senders put in `POST /e/{key}`.
    EventKey,
    /// The key that signs requests to and from Inngest SDKs.
    SigningKey,
}

/// Where the event key in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// `--event-key`.
    Flag,
    /// `STEPDESK_EVENT_KEY`.
    Env,
    /// The OS keychain (`stepdesk keys set event-key`).
    Keychain,
    /// No key: any key is accepted.
    None,
}

/// One key's status. Never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct KeyStatus {
    /// Whether the keychain holds it; `null` when the keychain cannot be read.
    pub stored: Option<bool>,
    /// For the event key: whether one is required now, and where it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub in_effect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub source: Option<KeySource>,
}

/// The keys' status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct KeysStatus {
    pub event_key: KeyStatus,
    pub signing_key: KeyStatus,
    /// Why the keychain could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub keychain_error: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct KeyChange {
    #[serde(flatten)]
    pub status: KeysStatus,
    /// A note for the user (e.g. a key pinned by `--event-key` stays in effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub note: Option<String>,
}

/// The keychain side of the keys, implemented by the program that owns the keychain and the
/// data directory.
pub trait KeyStore: Send + Sync {
    fn status(&self) -> BoxFuture<ApiResult<KeysStatus>>;
    fn set(&self, name: KeyName, value: String) -> BoxFuture<ApiResult<KeyChange>>;
    fn remove(&self, name: KeyName) -> BoxFuture<ApiResult<KeyChange>>;
}

/// Checks a key value: one word of printable characters.
pub fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("the key is empty");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the key must be one word, without spaces or control characters");
    }
    Ok(())
}
