//! Users and their books in SQLite. Tokens are not here: they live in the keychain.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, ToSql};
use serde::{Deserialize, Serialize};
use stepdesk_engine::store::StoreResult;
use stepdesk_readwise::Book;

/// What Stepdesk knows of a user's Readwise token. Stored and serialized in lowercase
/// (`"unchecked"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// A token is in the keychain, but Readwise has not judged it yet (just added, or
    /// replaced). The daily sync includes these users; their sync's token check decides.
    Unchecked,
    /// Readwise accepted the token at the last check or sync.
    Connected,
    /// No token in the keychain.
    Missing,
    /// Readwise answered 401/403 for the stored token.
    Rejected,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Unchecked => "unchecked",
            TokenStatus::Connected => "connected",
            TokenStatus::Missing => "missing",
            TokenStatus::Rejected => "rejected",
        }
    }

    /// Whether a sync should try the token (the daily sync's selection).
    pub fn may_sync(self) -> bool {
        matches!(self, TokenStatus::Unchecked | TokenStatus::Connected)
    }
}

impl std::fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Compares with the serialized form (`status == "connected"`).
impl PartialEq<&str> for TokenStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for TokenStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "unchecked" => Ok(TokenStatus::Unchecked),
            "connected" => Ok(TokenStatus::Connected),
            "missing" => Ok(TokenStatus::Missing),
            "rejected" => Ok(TokenStatus::Rejected),
            other => Err(format!("unknown token status `{other}`")),
        }
    }
}

impl ToSql for TokenStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for TokenStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// The state of a user's last sync. Stored and serialized in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    Running,
    Ok,
    Failed,
    /// The run was cancelled (from the console, the API or `DELETE /v1/runs/{id}`).
    Cancelled,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Running => "running",
            SyncStatus::Ok => "ok",
            SyncStatus::Failed => "failed",
            SyncStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Compares with the serialized form (`status == "ok"`).
impl PartialEq<&str> for SyncStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromSql for SyncStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "running" => Ok(SyncStatus::Running),
            "ok" => Ok(SyncStatus::Ok),
            "failed" => Ok(SyncStatus::Failed),
            "cancelled" => Ok(SyncStatus::Cancelled),
            other => Err(FromSqlError::Other(
                format!("unknown sync status `{other}`").into(),
            )),
        }
    }
}

/// The outcome of a user's last sync: always that of the newest run that got this far (see
/// [`SYNC_RECORD_IS_OLDER`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct SyncRecord {
    pub at: Option<i64>,
    pub status: SyncStatus,
    pub book_count: Option<i64>,
    pub error: Option<String>,
    pub run_id: Option<String>,
    /// The daily sync that requested it, if any.
    pub daily_sync_run_id: Option<String>,
}

/// A user as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct User {
    pub id: String,
    pub display_name: String,
    pub token_status: TokenStatus,
    pub token_checked_at: Option<i64>,
    pub created_at: i64,
    pub last_sync: Option<SyncRecord>,
    pub last_full_sync_at: Option<i64>,
    /// Readwise's own book count at the last sync.
    pub readwise_total: Option<i64>,
    /// Books stored here for the user.
    pub stored_books: i64,
    /// Newest `updated` time seen (incremental syncs ask for books updated after it).
    pub watermark: Option<String>,
}

/// The condition under which a run (`?2`, its id) may write a user's sync record: the
/// record is empty or was written by a run no newer than it. Run ids are ULIDs made by the
/// engine's single writer thread, strictly increasing, so their order is the order in which
/// runs were queued: the failure handler of an old run, which runs after the old run has
/// failed and possibly after a newer sync has succeeded, leaves the newer record alone.
/// `last_sync_key` is the run id of the record's run (or, for a count reported through the
/// seed's route, a key after every run queued before the report).
pub const SYNC_RECORD_IS_OLDER: &str = "(last_sync_key IS NULL OR last_sync_key <= ?2)";

const USER_COLUMNS: &str = "u.id, u.display_name, u.token_status, u.token_checked_at, u.created_at,
    u.last_sync_at, u.last_sync_status, u.last_sync_book_count, u.last_sync_error, u.last_sync_run_id,
    u.last_sync_batch, u.last_full_sync_at, u.readwise_total, u.watermark,
    (SELECT count(*) FROM readwise_books b WHERE b.user_id = u.id)";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let status: Option<SyncStatus> = r.get(6)?;
    Ok(User {
        id: r.get(0)?,
        display_name: r.get(1)?,
        token_status: r.get(2)?,
        token_checked_at: r.get(3)?,
        created_at: r.get(4)?,
        last_sync: match status {
            Some(status) => Some(SyncRecord {
                at: r.get(5)?,
                status,
                book_count: r.get(7)?,
                error: r.get(8)?,
                run_id: r.get(9)?,
                daily_sync_run_id: r.get(10)?,
            }),
            None => None,
        },
        last_full_sync_at: r.get(11)?,
        readwise_total: r.get(12)?,
        watermark: r.get(13)?,
        stored_books: r.get(14)?,
    })
}

pub(crate) fn insert(
    conn: &Connection,
    id: &str,
    name: &str,
    status: TokenStatus,
    now: i64,
) -> StoreResult<bool> {
    let n = conn.execute(
        "INSERT INTO readwise_users (id, display_name, token_status, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO NOTHING",
        params![id, name, status, now],
    )?;
    Ok(n > 0)
}

pub(crate) fn rename(conn: &Connection, id: &str, name: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE readwise_users SET display_name = ?2 WHERE id = ?1",
        params![id, name],
    )?;
    Ok(())
}

pub(crate) fn get(conn: &Connection, id: &str) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM readwise_users u WHERE u.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], user_from_row)
        .optional()?)
}

pub(crate) fn exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM readwise_users WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn list(conn: &Connection) -> StoreResult<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM readwise_users u ORDER BY u.id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], user_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a user and their books. False if there was no such user.
pub(crate) fn delete(conn: &Connection, id: &str) -> StoreResult<bool> {
    conn.execute("DELETE FROM readwise_books WHERE user_id = ?1", [id])?;
    Ok(conn.execute("DELETE FROM readwise_users WHERE id = ?1", [id])? > 0)
}

pub(crate) fn set_token_status(
    conn: &Connection,
    id: &str,
    status: TokenStatus,
    checked_at: Option<i64>,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE readwise_users SET token_status = ?2, token_checked_at = coalesce(?3, token_checked_at) WHERE id = ?1",
    )?
    .execute(params![id, status, checked_at])?;
    Ok(())
}

/// A user recorded as `missing` has a token in the keychain after all: `unchecked`.
pub(crate) fn token_found(conn: &Connection, id: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE readwise_users SET token_status = 'unchecked' WHERE id = ?1 AND token_status = 'missing'",
        [id],
    )?;
    Ok(())
}

/// Ids of users whose token may be usable (connected or not yet checked), for the daily sync.
pub(crate) fn syncable_ids(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM readwise_users WHERE token_status IN ('connected', 'unchecked') ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that the run started syncing the user, unless a newer run already wrote the
/// record.
pub(crate) fn mark_sync_started(
    conn: &Connection,
    id: &str,
    run_id: &str,
    batch: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "UPDATE readwise_users SET last_sync_status = 'running', last_sync_at = ?3, last_sync_run_id = ?2,
                last_sync_key = ?2, last_sync_batch = ?4, last_sync_error = NULL
         WHERE id = ?1 AND {SYNC_RECORD_IS_OLDER}"
    ))?
    .execute(params![id, run_id, now, batch])?;
    Ok(())
}

/// Records a successful sync. The books and Readwise's total are always the latest known;
/// the record itself only if no newer run wrote it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_sync_ok(
    conn: &Connection,
    id: &str,
    run_id: &str,
    book_count: i64,
    readwise_total: i64,
    watermark: Option<&str>,
    full: bool,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE readwise_users SET readwise_total = ?3, watermark = coalesce(?4, watermark),
                last_full_sync_at = CASE WHEN ?5 THEN ?2 ELSE last_full_sync_at END
         WHERE id = ?1",
    )?
    .execute(params![id, now, readwise_total, watermark, full])?;
    conn.prepare_cached(&format!(
        "UPDATE readwise_users SET last_sync_status = 'ok', last_sync_at = ?3, last_sync_run_id = ?2,
                last_sync_key = ?2, last_sync_book_count = ?4, last_sync_error = NULL
         WHERE id = ?1 AND {SYNC_RECORD_IS_OLDER}"
    ))?
    .execute(params![id, run_id, now, book_count])?;
    Ok(())
}

/// Records a failed sync, unless a newer run already wrote the record. True if written.
pub(crate) fn record_sync_failed(
    conn: &Connection,
    id: &str,
    run_id: &str,
    error: &str,
    now: i64,
) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE readwise_users SET last_sync_status = 'failed', last_sync_at = ?3, last_sync_run_id = ?2,
                    last_sync_key = ?2, last_sync_error = ?4
             WHERE id = ?1 AND {SYNC_RECORD_IS_OLDER}"
        ))?
        .execute(params![id, run_id, now, error])?;
    Ok(n > 0)
}

/// Records a cancelled sync, unless a newer run already wrote the record. True if written.
pub(crate) fn record_sync_cancelled(
    conn: &Connection,
    id: &str,
    run_id: &str,
    at: i64,
) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE readwise_users SET last_sync_status = 'cancelled', last_sync_at = ?3, last_sync_run_id = ?2,
                    last_sync_key = ?2, last_sync_error = NULL
             WHERE id = ?1 AND {SYNC_RECORD_IS_OLDER}"
        ))?
        .execute(params![id, run_id, at])?;
    Ok(n > 0)
}

/// A run of `function_id` that ended with `status`: its user (from the triggering event's
/// `data.userId`) and when it ended. `None` for any other run (a handler invoked by hand with
/// made-up data records nothing).
pub(crate) fn ended_run_user(
    conn: &Connection,
    run_id: &str,
    function_id: &str,
    status: &str,
) -> StoreResult<Option<(String, i64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT json_extract(e.payload, '$.data.userId'), coalesce(r.ended_at, r.queued_at)
             FROM runs r JOIN events e ON e.internal_id = r.event_id
             WHERE r.id = ?1 AND r.function_id = ?2 AND r.status = ?3",
        )?
        .query_row(params![run_id, function_id, status], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()?
        .and_then(|(user, at)| Some((user?, at))))
}

/// The seed's `POST /api/readwise`: an external job reports a book count. It always applies
/// (as the seed's handler did), and counts as newer than every run queued before it.
pub(crate) fn record_reported_count(
    conn: &Connection,
    id: &str,
    book_count: i64,
    at: i64,
    now: i64,
) -> StoreResult<bool> {
    let key = report_key(now);
    let n = conn.execute(
        "UPDATE readwise_users SET last_sync_status = 'ok', last_sync_at = ?3, last_sync_book_count = ?2,
                last_sync_error = NULL, last_sync_run_id = NULL, last_sync_key = ?4
         WHERE id = ?1",
        params![id, book_count, at, key],
    )?;
    Ok(n > 0)
}

/// The largest ULID of millisecond `now`: after every run id made up to then.
fn report_key(now: i64) -> String {
    ulid::Ulid::from_parts(now.max(0) as u64, (1u128 << 80) - 1).to_string()
}

/// Fails unless the run is still running: a cancelled sync's last in-flight step must not
/// write books while the next sync of the same user (started by the cancellation) does.
pub(crate) fn ensure_running(conn: &Connection, run_id: &str) -> StoreResult<()> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    match status.as_deref() {
        Some("Running") => Ok(()),
        other => Err(stepdesk_engine::store::StoreError::Other(format!(
            "run {run_id} is {}, not running; its results are dropped",
            other.unwrap_or("gone")
        ))),
    }
}

/// Inserts or updates books; `seen_run` marks them as seen by this run.
pub(crate) fn upsert_books(
    conn: &Connection,
    user: &str,
    books: &[Book],
    seen_run: &str,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO readwise_books (user_id, book_id, title, author, category, source, num_highlights, updated, payload, seen_run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (user_id, book_id) DO UPDATE SET
            title = excluded.title, author = excluded.author, category = excluded.category,
            source = excluded.source, num_highlights = excluded.num_highlights,
            updated = excluded.updated, payload = excluded.payload, seen_run = excluded.seen_run",
    )?;
    for b in books {
        stmt.execute(params![
            user,
            b.id,
            b.title,
            b.author,
            b.category,
            b.source,
            b.num_highlights,
            b.updated,
            serde_json::to_string(b)?,
            seen_run
        ])?;
    }
    Ok(())
}

pub(crate) fn count_books(conn: &Connection, user: &str) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM readwise_books WHERE user_id = ?1")?
        .query_row([user], |r| r.get(0))?)
}

/// After a full listing: drops books this run did not see (deleted in Readwise).
pub(crate) fn prune_unseen(conn: &Connection, user: &str, run_id: &str) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM readwise_books WHERE user_id = ?1 AND seen_run <> ?2")?
        .execute(params![user, run_id])?)
}

/// Progress of a daily sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct DailySyncProgress {
    pub run_id: String,
    pub started_at: i64,
    pub total: i64,
    /// Users whose sync for this daily run finished, successfully or not.
    pub done: i64,
    pub ok: i64,
    pub failed: i64,
    /// The daily sync this one replays (for some or all of its users).
    pub replay_of: Option<String>,
}

/// One user's part in a daily sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct DailySyncUser {
    pub user_id: String,
    /// The fetch run that syncs them for this daily sync (none until it is started).
    pub fetch_run_id: Option<String>,
    /// That run's status: `Running`, `Completed`, `Failed` or `Cancelled`.
    pub status: Option<String>,
    /// Why it failed, in the run's own words.
    pub error: Option<serde_json::Value>,
}

/// A daily sync with its users.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ts_rs::TS)]
pub struct DailySyncDetail {
    #[serde(flatten)]
    pub progress: DailySyncProgress,
    pub users: Vec<DailySyncUser>,
}

/// Records a daily sync and the users it syncs. Safe to repeat (a replayed step).
pub(crate) fn start_daily_sync(
    conn: &Connection,
    run_id: &str,
    user_ids: &[String],
    now: i64,
    replay_of: Option<&str>,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO readwise_daily_syncs (run_id, started_at, total, replay_of) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run_id) DO UPDATE SET total = excluded.total",
        params![run_id, now, user_ids.len() as i64, replay_of],
    )?;
    conn.execute(
        "DELETE FROM readwise_daily_sync_users WHERE daily_run_id = ?1",
        [run_id],
    )?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO readwise_daily_sync_users (daily_run_id, user_id) VALUES (?1, ?2)",
    )?;
    for user in user_ids {
        stmt.execute(params![run_id, user])?;
    }
    Ok(())
}

/// Links a user's place in a daily sync to the fetch run that serves it.
pub(crate) fn attach_daily_run(
    conn: &Connection,
    daily_run_id: &str,
    user: &str,
    fetch_run_id: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE readwise_daily_sync_users SET fetch_run_id = ?3 WHERE daily_run_id = ?1 AND user_id = ?2",
    )?
    .execute(params![daily_run_id, user, fetch_run_id])?;
    Ok(())
}

/// Recent daily syncs. A user is done when the fetch run for them has ended: `ok` if it
/// completed, `failed` if it failed or was cancelled.
pub(crate) fn daily_syncs(conn: &Connection, limit: u32) -> StoreResult<Vec<DailySyncProgress>> {
    daily_syncs_where(conn, limit, None)
}

/// One daily sync with each of its users and their fetch run's status.
pub(crate) fn daily_sync(conn: &Connection, run_id: &str) -> StoreResult<Option<DailySyncDetail>> {
    let Some(progress) = daily_syncs_where(conn, 1, Some(run_id))?.into_iter().next() else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT u.user_id, u.fetch_run_id, r.status, r.error
         FROM readwise_daily_sync_users u LEFT JOIN runs r ON r.id = u.fetch_run_id
         WHERE u.daily_run_id = ?1 ORDER BY u.user_id",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        let error: Option<String> = r.get(3)?;
        Ok(DailySyncUser {
            user_id: r.get(0)?,
            fetch_run_id: r.get(1)?,
            status: r.get(2)?,
            error: error.and_then(|e| serde_json::from_str(&e).ok()),
        })
    })?;
    Ok(Some(DailySyncDetail {
        progress,
        users: rows.collect::<Result<_, _>>()?,
    }))
}

fn daily_syncs_where(
    conn: &Connection,
    limit: u32,
    only: Option<&str>,
) -> StoreResult<Vec<DailySyncProgress>> {
    let mut stmt = conn.prepare(
        "SELECT d.run_id, d.started_at, d.total,
                coalesce(sum(r.status = 'Completed'), 0),
                coalesce(sum(r.status IN ('Failed', 'Cancelled')), 0), d.replay_of
         FROM readwise_daily_syncs d
         LEFT JOIN readwise_daily_sync_users u ON u.daily_run_id = d.run_id
         LEFT JOIN runs r ON r.id = u.fetch_run_id
         WHERE ?2 IS NULL OR d.run_id = ?2
         GROUP BY d.run_id
         ORDER BY d.started_at DESC, d.run_id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(rusqlite::params![limit, only], |r| {
        let ok: i64 = r.get(3)?;
        let failed: i64 = r.get(4)?;
        Ok(DailySyncProgress {
            run_id: r.get(0)?,
            started_at: r.get(1)?,
            total: r.get(2)?,
            done: ok + failed,
            ok,
            failed,
            replay_of: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A user's sync runs, newest first: runs of `readwise-fetch-books` whose event names them.
/// Walks the function's runs newest first (its index) and stops at `limit` matches.
pub(crate) fn run_ids(conn: &Connection, user: &str, limit: u32) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id FROM runs r JOIN events e ON e.internal_id = r.event_id
         WHERE r.function_id = ?1 AND json_extract(e.payload, '$.data.userId') = ?2
         ORDER BY r.id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![crate::events::FETCH_BOOKS_FN, user, limit],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
