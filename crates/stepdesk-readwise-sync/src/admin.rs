//! User administration: the one API behind the CLI, the admin HTTP routes and the window.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use stepdesk_engine::admin::AdminError;
use stepdesk_engine::time::{now_ms, to_rfc3339};
use stepdesk_engine::{NewEvent, SendError};
use stepdesk_readwise::Token;

use crate::events::{check_user_id, DAILY_SYNC, FETCH_BOOKS};
use crate::users::{self, DailySyncProgress, TokenStatus, User};
use crate::{token_key, ReadwiseSync};

pub type AdminResult<T> = Result<T, AdminError>;

/// The daily syncs list's page sizes (the newest first; the engine's paging rule for `limit`).
pub const DAILY_SYNCS_PAGE: stepdesk_engine::admin::PageSize = stepdesk_engine::admin::PageSize {
    default: 20,
    max: 100,
};

fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError::Internal(e.to_string())
}

/// "No such user": a 404 for a well-formed id, a 400 saying what ids look like otherwise.
fn not_found(id: &str) -> AdminError {
    match check_user_id(id) {
        Ok(()) => AdminError::NotFound(format!("no user `{id}`")),
        Err(e) => AdminError::BadRequest(e),
    }
}

/// What a live token check found. Serialized in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    /// Readwise accepted the token.
    Connected,
    /// Readwise answered 401/403.
    Rejected,
    /// No token in the keychain.
    Missing,
    /// Readwise could not be asked or did not answer the question (network error, timeout,
    /// 5xx, 429, an unexpected answer): the token was not judged and its status is unchanged.
    Unreachable,
}

impl CheckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Connected => "connected",
            CheckOutcome::Rejected => "rejected",
            CheckOutcome::Missing => "missing",
            CheckOutcome::Unreachable => "unreachable",
        }
    }
}

/// The result of a live token check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct TokenCheck {
    pub user_id: String,
    /// What the check found.
    pub status: CheckOutcome,
    /// The user's token status after the check (unchanged when `status` is `unreachable`).
    pub token_status: TokenStatus,
    pub detail: Option<String>,
    pub checked_at: i64,
}

/// A sync that was asked for: the event sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct SyncRequested {
    pub event_id: String,
    pub user_id: Option<String>,
}

#[derive(Clone)]
pub struct ReadwiseAdmin {
    sync: ReadwiseSync,
}

impl ReadwiseAdmin {
    pub(crate) fn new(sync: ReadwiseSync) -> ReadwiseAdmin {
        ReadwiseAdmin { sync }
    }

    /// The sync this admin API manages (settings live there).
    pub fn sync(&self) -> &ReadwiseSync {
        &self.sync
    }

    pub async fn users(&self) -> AdminResult<Vec<User>> {
        self.sync.store().read(users::list).await.map_err(internal)
    }

    /// One user. An id outside the allowed set is a 400, unless a user with that id was
    /// stored before the rule existed (it can still be shown and removed).
    pub async fn user(&self, id: &str) -> AdminResult<User> {
        let i = id.to_string();
        self.sync
            .store()
            .read(move |c| users::get(c, &i))
            .await
            .map_err(internal)?
            .ok_or_else(|| not_found(id))
    }

    /// Adds a user (or renames one), saving the token, if given, to the keychain.
    pub async fn add_user(
        &self,
        id: &str,
        name: Option<&str>,
        token: Option<&str>,
    ) -> AdminResult<User> {
        check_user_id(id).map_err(AdminError::BadRequest)?;
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = token {
            if t.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(AdminError::BadRequest(
                    "the token must not contain spaces or control characters".into(),
                ));
            }
            self.sync
                .save_token(id, t)
                .await
                .map_err(AdminError::Conflict)?;
        }
        let has_token = match token {
            Some(_) => true,
            None => matches!(self.sync.token(id).await, Ok(Some(_))),
        };
        // A token is `unchecked` until Readwise judges it (`users check`, or a sync).
        let status = if has_token {
            TokenStatus::Unchecked
        } else {
            TokenStatus::Missing
        };
        let (i, n) = (id.to_string(), name.unwrap_or(id).to_string());
        let rename = name.is_some();
        let token_given = token.is_some();
        self.sync
            .store()
            .write(move |c| {
                if !users::insert(c, &i, &n, status, now_ms())? {
                    if rename {
                        users::rename(c, &i, &n)?;
                    }
                    // A new token is unchecked; a token already there keeps its verdict.
                    if token_given {
                        users::set_token_status(c, &i, status, None)?;
                    } else if has_token {
                        users::token_found(c, &i)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(internal)?;
        tracing::info!(user = id, token = has_token, "user added");
        self.user(id).await
    }

    /// Removes a user, their books and their keychain entry. Works for any stored id, even one
    /// from before ids were restricted.
    pub async fn remove_user(&self, id: &str) -> AdminResult<()> {
        // The keychain entry goes first: a user must never disappear while their token stays.
        let secrets = self.sync.secrets().map_err(|e| {
            AdminError::Conflict(format!("cannot remove the token of user `{id}`: {e}"))
        })?;
        let had_token = secrets
            .delete(&token_key(id))
            .await
            .map_err(|e| AdminError::Conflict(e.to_string()))?;
        let i = id.to_string();
        let existed = self
            .sync
            .store()
            .write(move |c| users::delete(c, &i))
            .await
            .map_err(internal)?;
        if !existed && !had_token {
            return Err(not_found(id));
        }
        tracing::info!(user = id, "user removed");
        Ok(())
    }

    /// Checks the user's token with Readwise now (`GET auth/`) and records the answer. Only
    /// Readwise's verdict changes the status: `connected` on success, `rejected` on 401/403.
    /// When Readwise cannot be reached (network, timeout, 5xx, 429...) the token was not
    /// judged: the outcome is `unreachable` and the status stays as it was.
    pub async fn check_user(&self, id: &str) -> AdminResult<TokenCheck> {
        let before = self.user(id).await?.token_status;
        let token = self.sync.token(id).await.map_err(AdminError::Conflict)?;
        let (outcome, detail) = match token {
            None => (
                CheckOutcome::Missing,
                Some("no token in the keychain".to_string()),
            ),
            Some(t) => match self.sync.client().check_token(&t).await {
                Ok(()) => (CheckOutcome::Connected, None),
                Err(e) if e.is_rejected() => (
                    CheckOutcome::Rejected,
                    Some(format!("Readwise rejected the token for user {id}")),
                ),
                Err(e) => (
                    CheckOutcome::Unreachable,
                    Some(format!(
                        "Readwise could not be reached, so the token was not judged: {e}"
                    )),
                ),
            },
        };
        let now = now_ms();
        let status = match outcome {
            CheckOutcome::Connected => TokenStatus::Connected,
            CheckOutcome::Rejected => TokenStatus::Rejected,
            CheckOutcome::Missing => TokenStatus::Missing,
            CheckOutcome::Unreachable => before,
        };
        if outcome != CheckOutcome::Unreachable {
            let i = id.to_string();
            self.sync
                .store()
                .write(move |c| users::set_token_status(c, &i, status, Some(now)))
                .await
                .map_err(internal)?;
        }
        Ok(TokenCheck {
            user_id: id.to_string(),
            status: outcome,
            token_status: status,
            detail,
            checked_at: now,
        })
    }

    async fn send(&self, name: &str, data: Map<String, Value>) -> AdminResult<String> {
        let engine = self.sync.engine().map_err(AdminError::Internal)?;
        let mut event = NewEvent::internal(name, data);
        event.id = None;
        match engine.send_events(vec![event]).await {
            Ok(ids) => Ok(ids.into_iter().next().unwrap_or_default()),
            Err(SendError::Invalid(e)) => Err(AdminError::BadRequest(e.to_string())),
            // Never: the admin API sends as a trusted sender.
            Err(SendError::Unauthorized(e)) => Err(AdminError::BadRequest(e)),
            Err(e @ SendError::ReadOnly) => Err(AdminError::Conflict(e.to_string())),
            Err(SendError::Store(e)) => Err(internal(e)),
            Err(SendError::Unavailable(e)) => Err(AdminError::Internal(e)),
        }
    }

    /// Resyncs one user (sends `readwise/fetch-books`). An `api_key` is saved to the keychain.
    pub async fn sync_user(&self, id: &str, api_key: Option<&str>) -> AdminResult<SyncRequested> {
        check_user_id(id).map_err(|e| AdminError::BadRequest(format!("`userId`: {e}")))?;
        self.user(id).await?;
        let mut data = Map::new();
        data.insert("userId".into(), json!(id));
        if let Some(k) = api_key {
            data.insert("apiKey".into(), json!(k));
        }
        let event_id = self.send(FETCH_BOOKS, data).await?;
        Ok(SyncRequested {
            event_id,
            user_id: Some(id.to_string()),
        })
    }

    /// The ids of a user's sync runs (`readwise-fetch-books` runs for them), newest first.
    pub async fn user_run_ids(&self, id: &str, limit: u32) -> AdminResult<Vec<String>> {
        let id = id.to_string();
        self.sync
            .store()
            .read(move |c| users::run_ids(c, &id, limit))
            .await
            .map_err(internal)
    }

    /// Starts the daily sync now (sends `readwise/daily-sync`).
    pub async fn sync_all(&self) -> AdminResult<SyncRequested> {
        let mut data = Map::new();
        data.insert("timestamp".into(), json!(to_rfc3339(now_ms())));
        let event_id = self.send(DAILY_SYNC, data).await?;
        Ok(SyncRequested {
            event_id,
            user_id: None,
        })
    }

    /// A daily sync with each user's part in it.
    pub async fn daily_sync(&self, run_id: &str) -> AdminResult<users::DailySyncDetail> {
        let r = run_id.to_string();
        self.sync
            .store()
            .read(move |c| users::daily_sync(c, &r))
            .await
            .map_err(internal)?
            .ok_or_else(|| AdminError::NotFound(format!("no daily sync `{run_id}`")))
    }

    /// Runs an earlier daily sync again: for the users whose sync failed or was cancelled
    /// (`only_failed`), or for all its users. A new daily sync, linked to the old one.
    pub async fn replay_daily_sync(
        &self,
        run_id: &str,
        only_failed: bool,
    ) -> AdminResult<SyncRequested> {
        let detail = self.daily_sync(run_id).await?;
        let users: Vec<String> = detail
            .users
            .into_iter()
            .filter(|u| !only_failed || matches!(u.status.as_deref(), Some("Failed" | "Cancelled")))
            .map(|u| u.user_id)
            .collect();
        if users.is_empty() {
            return Err(AdminError::BadRequest(if only_failed {
                format!("no user's sync failed in daily sync `{run_id}`: nothing to replay")
            } else {
                format!("daily sync `{run_id}` had no users")
            }));
        }
        // A daily sync skips users whose token Readwise rejected or who have none: a replay
        // of only such users would sync nobody, and say nothing. Say it now.
        let syncable: std::collections::HashSet<String> = self
            .sync
            .store()
            .read(crate::users::syncable_ids)
            .await?
            .into_iter()
            .collect();
        if !users.iter().any(|u| syncable.contains(u)) {
            return Err(AdminError::BadRequest(format!(
                "none of these users can be synced: {} (their token was rejected by Readwise, or \
                 they have none); set a new token on their page, then replay",
                users.join(", ")
            )));
        }
        let mut data = Map::new();
        data.insert("timestamp".into(), json!(to_rfc3339(now_ms())));
        data.insert("users".into(), json!(users));
        data.insert("replayOf".into(), json!(run_id));
        let event_id = self.send(DAILY_SYNC, data).await?;
        Ok(SyncRequested {
            event_id,
            user_id: None,
        })
    }

    /// Recent daily syncs with their progress (users done / total).
    pub async fn daily_syncs(&self, limit: Option<u32>) -> AdminResult<Vec<DailySyncProgress>> {
        let limit = DAILY_SYNCS_PAGE.limit(limit)?;
        self.sync
            .store()
            .read(move |c| users::daily_syncs(c, limit))
            .await
            .map_err(internal)
    }

    /// The seed's update handler: an external job reports a user's book count.
    pub async fn report_count(
        &self,
        id: &str,
        book_count: i64,
        sync_time: i64,
    ) -> AdminResult<User> {
        if book_count < 0 {
            return Err(AdminError::BadRequest(
                "`bookCount` must not be negative".into(),
            ));
        }
        let i = id.to_string();
        let updated = self
            .sync
            .store()
            .write(move |c| users::record_reported_count(c, &i, book_count, sync_time, now_ms()))
            .await
            .map_err(internal)?;
        if !updated {
            return Err(not_found(id));
        }
        self.user(id).await
    }
}

/// Only for tests and the CLI: whether a value looks like it could be a token (never logged).
pub fn token_from_input(input: &str) -> Result<Token, String> {
    let t = input.trim();
    if t.is_empty() {
        return Err("no token given on standard input".into());
    }
    if t.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the token must be one line without spaces".into());
    }
    Ok(Token::new(t))
}
