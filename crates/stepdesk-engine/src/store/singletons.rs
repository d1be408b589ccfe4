//! SQL of `run_keys` (one run per function and sender's event id) and of the singleton
//! tables (`singletons`, `singleton_queue`).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;

/// Claims (function, key) for a run unless a run claimed it after `expired_before`;
/// true if claimed.
pub(crate) fn claim_run_key(
    conn: &Connection,
    function_id: &str,
    key: &str,
    run_id: &str,
    now: i64,
    expired_before: i64,
) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO run_keys (function_id, key, run_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (function_id, key) DO UPDATE
                SET run_id = excluded.run_id, created_at = excluded.created_at
                WHERE run_keys.created_at <= ?5",
        )?
        .execute(params![function_id, key, run_id, now, expired_before])?
        > 0)
}

/// The run holding a singleton slot.
pub(crate) fn holder(
    conn: &Connection,
    function_id: &str,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT run_id FROM singletons WHERE function_id = ?1 AND key = ?2")?
        .query_row(params![function_id, key], |r| r.get(0))
        .optional()?)
}

/// Gives a slot to a run.
pub(crate) fn take(
    conn: &Connection,
    function_id: &str,
    key: &str,
    run_id: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO singletons (function_id, key, run_id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![function_id, key, run_id])?;
    Ok(())
}

/// Frees a slot.
pub(crate) fn free(conn: &Connection, function_id: &str, key: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM singletons WHERE function_id = ?1 AND key = ?2")?
        .execute(params![function_id, key])?;
    Ok(())
}

/// The slot a run holds: (function, key).
pub(crate) fn slot_of(conn: &Connection, run_id: &str) -> StoreResult<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT function_id, key FROM singletons WHERE run_id = ?1")?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Queues a run behind a slot's holder.
pub(crate) fn enqueue(
    conn: &Connection,
    function_id: &str,
    key: &str,
    run_id: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO singleton_queue (function_id, key, run_id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![function_id, key, run_id])?;
    Ok(())
}

/// Takes a run out of the queue it waits in, if any.
pub(crate) fn dequeue(conn: &Connection, run_id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM singleton_queue WHERE run_id = ?1")?
        .execute([run_id])?;
    Ok(())
}

/// The run queued first for a slot.
pub(crate) fn next_queued(
    conn: &Connection,
    function_id: &str,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT run_id FROM singleton_queue WHERE function_id = ?1 AND key = ?2 ORDER BY seq LIMIT 1",
        )?
        .query_row(params![function_id, key], |r| r.get(0))
        .optional()?)
}
