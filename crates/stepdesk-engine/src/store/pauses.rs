//! SQL of the `pauses` table: runs suspended on an event (`wait_for_event`) or on a child
//! run (`invoke`).

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
        "INSERT OR REPLACE INTO pauses (run_id, hash, kind, event_name, match_field, match_value, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        run_id,
        p.hash,
        p.kind,
        p.event_name,
        p.match_field,
        p.match_value,
        p.expires_at,
        now
    ])?;
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

/// A wait: (run id, hash, match field, match value JSON).
pub(crate) type WaitRow = (String, String, Option<String>, Option<String>);

/// Unexpired waits for an event name.
pub(crate) fn waits_for(
    conn: &Connection,
    event_name: &str,
    now: i64,
) -> StoreResult<Vec<WaitRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run_id, hash, match_field, match_value FROM pauses
         WHERE event_name = ?1 AND kind = 'wait' AND expires_at > ?2",
    )?;
    let rows = stmt.query_map(params![event_name, now], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
