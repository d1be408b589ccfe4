//! SQL of the `pauses` table: runs suspended on an event (`wait_for_event`) or on a child
//! run (`invoke`), and runs' cancellation rules (`cancel`), which are matched against
//! incoming events the same way as waits.

use rusqlite::{params, Connection};

use super::StoreResult;
use crate::progress::PauseWrite;

/// A run waiting for an event.
pub(crate) fn insert_wait(
    conn: &Connection,
    run_id: &str,
    p: &PauseWrite,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pauses (run_id, hash, kind, event_name, match_field, match_value, if_expr, if_event, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run_id,
        p.hash,
        p.kind,
        p.event_name,
        p.match_field,
        p.match_value,
        p.if_expr,
        p.if_event,
        p.expires_at,
        now
    ])?;
    Ok(())
}

/// A run's cancellation rule: an event named `event_name` (satisfying `if_expr`, if any)
/// cancels it until `expires_at`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_cancel(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    event_name: &str,
    if_expr: Option<&str>,
    if_event: Option<&str>,
    expires_at: i64,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pauses (run_id, hash, kind, event_name, if_expr, if_event, expires_at, created_at)
         VALUES (?1, ?2, 'cancel', ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![run_id, hash, event_name, if_expr, if_event, expires_at, now])?;
    Ok(())
}

/// A run waiting for a child run.
pub(crate) fn insert_invoke(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    child_run_id: &str,
    expires_at: i64,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pauses (run_id, hash, kind, child_run_id, expires_at, created_at)
         VALUES (?1, ?2, 'invoke', ?3, ?4, ?5)",
    )?
    .execute(params![run_id, hash, child_run_id, expires_at, now])?;
    Ok(())
}

pub(crate) fn delete(conn: &Connection, run_id: &str, hash: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM pauses WHERE run_id = ?1 AND hash = ?2")?
        .execute(params![run_id, hash])?;
    Ok(())
}

/// Every pause of a run (it ended).
pub(crate) fn delete_all(conn: &Connection, run_id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM pauses WHERE run_id = ?1")?
        .execute([run_id])?;
    Ok(())
}

/// The parent's pause for this child run, if it still waits for it; true if it did.
pub(crate) fn delete_invoke(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    child_run_id: &str,
) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM pauses WHERE run_id = ?1 AND hash = ?2 AND child_run_id = ?3")?
        .execute(params![run_id, hash, child_run_id])?
        > 0)
}

/// A wait or a cancellation rule that an event of its name may satisfy.
#[derive(Debug)]
pub(crate) struct EventPause {
    pub run_id: String,
    pub hash: String,
    /// True for a cancellation rule, false for a wait.
    pub cancel: bool,
    pub match_field: Option<String>,
    /// JSON.
    pub match_value: Option<String>,
    pub if_expr: Option<String>,
    /// JSON.
    pub if_event: Option<String>,
}

/// Unexpired waits and cancellation rules for an event name (one indexed query per event).
pub(crate) fn for_event(
    conn: &Connection,
    event_name: &str,
    now: i64,
) -> StoreResult<Vec<EventPause>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run_id, hash, kind, match_field, match_value, if_expr, if_event FROM pauses
         WHERE event_name = ?1 AND kind IN ('wait', 'cancel') AND expires_at > ?2",
    )?;
    let rows = stmt.query_map(params![event_name, now], |r| {
        Ok(EventPause {
            run_id: r.get(0)?,
            hash: r.get(1)?,
            cancel: r.get::<_, String>(2)? == "cancel",
            match_field: r.get(3)?,
            match_value: r.get(4)?,
            if_expr: r.get(5)?,
            if_event: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
