//! SQL of `boots` (engine starts) and `interruptions` (step attempts a stop cut short).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;
use crate::admin::{Boot, Interruption};
use crate::model::StepStatus;

/// The latest boot: (id, clean end).
pub(crate) fn last(conn: &Connection) -> StoreResult<Option<(i64, Option<i64>)>> {
    Ok(conn
        .prepare_cached("SELECT id, ended_at FROM boots ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Records a start; returns its id.
pub(crate) fn start(conn: &Connection, now: i64) -> StoreResult<i64> {
    conn.prepare_cached("INSERT INTO boots (started_at) VALUES (?1)")?
        .execute([now])?;
    Ok(conn.last_insert_rowid())
}

/// Records a clean end.
pub(crate) fn end(conn: &Connection, boot_id: i64, now: i64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE boots SET ended_at = ?2 WHERE id = ?1")?
        .execute(params![boot_id, now])?;
    Ok(())
}

/// The latest `limit` boots, newest first.
pub(crate) fn latest(conn: &Connection, limit: u32, current: i64) -> StoreResult<Vec<Boot>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, started_at, ended_at FROM boots ORDER BY id DESC LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| {
        let id: i64 = r.get(0)?;
        Ok(Boot {
            id,
            started_at: r.get(1)?,
            ended_at: r.get(2)?,
            current: id == current,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records every step executing now as interrupted (from `steps`); returns how many.
pub(crate) fn record_interruptions(
    conn: &Connection,
    previous: Option<(i64, Option<i64>)>,
    resumed_boot_id: i64,
    now: i64,
) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO interruptions (run_id, hash, step_id, started_at, boot_id, stopped_at,
                                        resumed_boot_id, resumed_at)
             SELECT run_id, hash, step_id, running_since, ?1, ?2, ?3, ?4 FROM steps
             WHERE status = ?5",
        )?
        .execute(params![
            previous.map(|p| p.0),
            previous.and_then(|p| p.1),
            resumed_boot_id,
            now,
            StepStatus::Running
        ])?)
}

/// A run's interruptions, oldest first.
pub(crate) fn interruptions(conn: &Connection, run_id: &str) -> StoreResult<Vec<Interruption>> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, hash, started_at, boot_id, stopped_at, resumed_boot_id, resumed_at
         FROM interruptions WHERE run_id = ?1 ORDER BY resumed_at, rowid",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok(Interruption {
            step_id: r.get(0)?,
            hash: r.get(1)?,
            started_at: r.get(2)?,
            boot_id: r.get(3)?,
            stopped_at: r.get(4)?,
            resumed_boot_id: r.get(5)?,
            resumed_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
