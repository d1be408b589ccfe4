//! Params and results of the commands that the API itself defines (the engine's and the
//! Readwise sync's own types are used as they are).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stepdesk_engine::admin::RunSummary;
use stepdesk_readwise_sync::users::User;

use crate::audit::AuditEntry;

/// `info`: what the top bar shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub data_dir: String,
    /// Where the HTTP server listens, if it does.
    pub url: Option<String>,
    pub functions: u32,
    pub event_key_required: bool,
    /// Opened with `stepdesk inspect`: nothing can be changed, nothing runs.
    pub read_only: bool,
    /// When this process started serving (milliseconds since the epoch).
    pub started_at: i64,
    pub readwise: bool,
}

/// `diagnostics`: what a support ticket needs, and no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Diagnostics {
    pub info: Info,
    pub log_dir: Option<String>,
    pub os: String,
    pub arch: String,
    /// Runs by status, over all time.
    pub runs_by_status: Map<String, Value>,
    pub events: i64,
    pub users: Option<u32>,
    /// The keys' status (never their values), or why it is unknown.
    pub keys: Value,
    pub readwise_settings: Option<Value>,
}

/// `invoke`: "Test function".
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct InvokeParams {
    /// The function's id.
    pub id: String,
    #[serde(default)]
    #[ts(optional)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    #[ts(optional)]
    pub user: Option<Map<String, Value>>,
}

/// `send_events`: one event or an array, as `POST /e/{key}` takes them.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SendEventsParams {
    pub events: Value,
}

/// The ids of stored events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct SentEvents {
    pub ids: Vec<String>,
}

/// `user`: a user's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct UserDetail {
    pub user: User,
    /// Their sync runs, newest first.
    pub runs: Vec<RunSummary>,
    /// Support actions on them, newest first.
    pub audit: Vec<AuditEntry>,
}

/// `add_user`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct AddUserParams {
    pub id: String,
    #[serde(default)]
    #[ts(optional)]
    pub name: Option<String>,
    /// Saved to the keychain, never shown back.
    #[serde(default)]
    #[ts(optional)]
    pub token: Option<String>,
}

/// `set_token`: write-only.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SetTokenParams {
    pub id: String,
    pub token: String,
}

/// `remove_user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Removed {
    pub removed: String,
}

/// A list's size (`daily_syncs`, `audit`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct LimitParams {
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// `audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    #[ts(optional)]
    pub user_id: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub limit: Option<u32>,
}

/// `set_settings`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SettingsParams {
    /// A URL, or `null` to go back to the default. Required (`{}` is refused): an explicit
    /// `deserialize_with` keeps serde from treating the missing field as `null`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub readwise_api_url: Option<String>,
}

/// `set_key`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SetKeyParams {
    pub name: crate::keys::KeyName,
    /// Write-only.
    pub value: String,
}

/// `remove_key`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct KeyParams {
    pub name: crate::keys::KeyName,
}

/// `replay_daily_sync`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct ReplayDailySyncParams {
    /// The daily sync's run id.
    pub id: String,
    /// Only the users whose sync failed or was cancelled (the default), or all of them.
    #[serde(default)]
    #[ts(optional)]
    pub only_failed: Option<bool>,
}
