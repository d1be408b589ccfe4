//! SQL of the cron tables: `cron_state` (what each cron owes), `cron_fires` (each
//! scheduled time fired at most once) and `cron_manual_fires` ("Run now", "Replay").

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;

/// A function's stored cron expression and the time before which nothing is owed.
pub(crate) fn state(conn: &Connection, function_id: &str) -> StoreResult<Option<(String, i64)>> {
    Ok(conn
        .prepare_cached("SELECT cron, anchor FROM cron_state WHERE function_id = ?1")?
        .query_row([function_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(crate) fn set_state(
    conn: &Connection,
    function_id: &str,
    cron: &str,
    anchor: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO cron_state (function_id, cron, anchor) VALUES (?1, ?2, ?3)
         ON CONFLICT (function_id) DO UPDATE SET cron = excluded.cron, anchor = excluded.anchor",
    )?
    .execute(params![function_id, cron, anchor])?;
    Ok(())
}

/// The latest scheduled time the scheduler fired.
pub(crate) fn last_fire(conn: &Connection, function_id: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT max(scheduled_at) FROM cron_fires WHERE function_id = ?1")?
        .query_row([function_id], |r| r.get(0))?)
}

/// Records the scheduler's fire of a scheduled time; false if it was fired before.
pub(crate) fn record_fire(
    conn: &Connection,
    function_id: &str,
    scheduled_at: i64,
    run_id: &str,
    now: i64,
    late: bool,
) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO cron_fires (function_id, scheduled_at, run_id, fired_at, late)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![function_id, scheduled_at, run_id, now, late])?
        > 0)
}

/// Records a fire asked for by hand (`kind`: `run_now` or `replay`).
pub(crate) fn record_manual(
    conn: &Connection,
    run_id: &str,
    function_id: &str,
    scheduled_at: i64,
    now: i64,
    kind: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO cron_manual_fires (run_id, function_id, scheduled_at, fired_at, kind)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![run_id, function_id, scheduled_at, now, kind])?;
    Ok(())
}

/// A fire: (scheduled at, fired at, late, run id, kind: `schedule`, `run_now` or `replay`).
pub(crate) type FireRow = (i64, i64, bool, String, String);

/// A function's latest fires, newest first.
pub(crate) fn latest(
    conn: &Connection,
    function_id: &str,
    limit: u32,
) -> StoreResult<Vec<FireRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT scheduled_at, fired_at, late, run_id, 'schedule' FROM
            (SELECT * FROM cron_fires WHERE function_id = ?1
             ORDER BY scheduled_at DESC LIMIT ?2)
         UNION ALL
         SELECT scheduled_at, fired_at, 0, run_id, kind FROM
            (SELECT * FROM cron_manual_fires WHERE function_id = ?1
             ORDER BY fired_at DESC LIMIT ?2)
         ORDER BY 2 DESC, 1 DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![function_id, limit], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
