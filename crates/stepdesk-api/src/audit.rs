//! The audit trail of support actions: who (which origin) did what to whom, when, and
//! whether it worked. Kept in SQLite next to the runs; it never holds a secret: an entry
//! records the command, the user it concerned and the outcome, not the command's params.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use stepdesk_engine::store::StoreResult;

use crate::Origin;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    origin   TEXT NOT NULL,
    action   TEXT NOT NULL,
    user_id  TEXT,
    ok       INTEGER NOT NULL,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_user ON audit_log(user_id, id);
";

pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AuditEntry {
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub origin: Origin,
    /// The command (`sync_user`, `set_token`, ...).
    pub action: String,
    /// The user it concerned, if any.
    pub user_id: Option<String>,
    pub ok: bool,
    /// Why it failed, in plain words.
    pub error: Option<String>,
}

pub(crate) fn record(
    conn: &Connection,
    at: i64,
    origin: Origin,
    action: &str,
    user_id: Option<&str>,
    error: Option<&str>,
) -> StoreResult<()> {
    let origin = serde_json::to_value(origin)?;
    conn.prepare_cached(
        "INSERT INTO audit_log (at, origin, action, user_id, ok, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        origin.as_str().unwrap_or("http"),
        action,
        user_id,
        error.is_none(),
        error
    ])?;
    Ok(())
}

/// The newest entries first, for one user or for all.
pub(crate) fn list(
    conn: &Connection,
    user_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<AuditEntry>> {
    // A database opened for inspection may predate the audit trail.
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, origin, action, user_id, ok, error FROM audit_log
         WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![user_id, limit], |r| {
        let origin: String = r.get(2)?;
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            origin: serde_json::from_value(serde_json::Value::String(origin))
                .unwrap_or(Origin::Http),
            action: r.get(3)?,
            user_id: r.get(4)?,
            ok: r.get(5)?,
            error: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
