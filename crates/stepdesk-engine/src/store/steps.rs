//! SQL of the `steps` and `step_attempts` tables.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;
use crate::model::{StepKind, StepStatus};
use crate::progress::{AttemptWrite, StepWrite};

/// The next place in a run's completion order (`done_seq`): SQL for a step that finishes
/// now, with the run's id as `?1`.
const NEXT_DONE: &str = "(SELECT coalesce(max(done_seq), 0) + 1 FROM steps WHERE run_id = ?1)";

/// Inserts or updates a step (keeping its place in the run, its first start and its input
/// when none is given); it is no longer executing. A step that reaches its final status
/// takes the next place in the run's completion order.
pub(crate) fn upsert(conn: &Connection, run_id: &str, s: &StepWrite) -> StoreResult<()> {
    let done = matches!(s.status, StepStatus::Completed | StepStatus::Failed);
    conn.prepare_cached(&format!(
        "INSERT INTO steps (run_id, hash, step_id, kind, status, seq, attempts, started_at, ended_at, wake_at, input, output, error, done_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT count(*) FROM steps WHERE run_id = ?1), ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                 CASE WHEN ?13 THEN {NEXT_DONE} END)
         ON CONFLICT (run_id, hash) DO UPDATE SET
            status = excluded.status, attempts = excluded.attempts,
            started_at = coalesce(steps.started_at, excluded.started_at),
            ended_at = excluded.ended_at, wake_at = excluded.wake_at,
            input = coalesce(excluded.input, steps.input),
            output = excluded.output, error = excluded.error, running_since = NULL,
            done_seq = CASE WHEN ?13 THEN coalesce(steps.done_seq, {NEXT_DONE}) END"
    ))?
    .execute(params![
        run_id, s.hash, s.step_id, s.kind, s.status, s.attempts, s.started_at, s.ended_at, s.wake_at, s.input,
        s.output, s.error, done
    ])?;
    Ok(())
}

/// Marks a `run` step as executing since `at` (keeping its attempts and first start).
pub(crate) fn started(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    step_id: &str,
    input: Option<&str>,
    at: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO steps (run_id, hash, step_id, kind, status, seq, attempts, started_at, input, running_since)
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT count(*) FROM steps WHERE run_id = ?1), 0, ?6, ?7, ?6)
         ON CONFLICT (run_id, hash) DO UPDATE SET
            status = excluded.status, wake_at = NULL, running_since = excluded.running_since,
            input = coalesce(excluded.input, steps.input)",
    )?
    .execute(params![
        run_id,
        hash,
        step_id,
        StepKind::Run,
        StepStatus::Running,
        at,
        input
    ])?;
    Ok(())
}

/// Gives a suspended step its final state (and the next place in the completion order).
pub(crate) fn settle(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    status: StepStatus,
    output: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "UPDATE steps SET status = ?3, output = ?4, error = ?5, ended_at = ?6,
            done_seq = coalesce(done_seq, {NEXT_DONE})
         WHERE run_id = ?1 AND hash = ?2"
    ))?
    .execute(params![run_id, hash, status, output, error, now])?;
    Ok(())
}

/// Completes the sleeps of a run that are over.
pub(crate) fn complete_sleeps(conn: &Connection, run_id: &str, now: i64) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "UPDATE steps SET status = ?3, ended_at = wake_at, done_seq = {NEXT_DONE}
         WHERE run_id = ?1 AND status = ?4 AND wake_at <= ?2"
    ))?
    .execute(params![
        run_id,
        now,
        StepStatus::Completed,
        StepStatus::Sleeping
    ])?;
    Ok(())
}

/// Waits and invokes of a run whose time is up: (hash, status).
pub(crate) fn expired(
    conn: &Connection,
    run_id: &str,
    now: i64,
) -> StoreResult<Vec<(String, StepStatus)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, status FROM steps WHERE run_id = ?1 AND status IN (?3, ?4) AND wake_at <= ?2",
    )?;
    let rows = stmt.query_map(
        params![run_id, now, StepStatus::Waiting, StepStatus::Invoking],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A step as the replay needs it.
pub(crate) struct MemoRow {
    pub hash: String,
    pub step_id: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: u32,
    pub wake_at: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// A run's steps in memo order: the finished ones in the order they finished (those
/// finished before the completion order was kept come first, in the order the run reached
/// them), then the others in the order the run reached them.
pub(crate) fn memo_rows(conn: &Connection, run_id: &str) -> StoreResult<Vec<MemoRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, step_id, kind, status, attempts, wake_at, output, error FROM steps
         WHERE run_id = ?1
         ORDER BY status NOT IN (?2, ?3), coalesce(done_seq, 0), seq",
    )?;
    let rows = stmt.query_map(
        params![run_id, StepStatus::Completed, StepStatus::Failed],
        |r| {
            Ok(MemoRow {
                hash: r.get(0)?,
                step_id: r.get(1)?,
                kind: r.get(2)?,
                status: r.get(3)?,
                attempts: r.get(4)?,
                wake_at: r.get(5)?,
                output: r.get(6)?,
                error: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A step as the console shows it, in the order the run reached them.
pub(crate) struct StepRow {
    pub step_id: String,
    pub hash: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub wake_at: Option<i64>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub reused_from: Option<String>,
}

pub(crate) fn of_run(conn: &Connection, run_id: &str) -> StoreResult<Vec<StepRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, hash, kind, status, attempts, started_at, ended_at, wake_at, input, output, error,
                reused_from
         FROM steps WHERE run_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok(StepRow {
            step_id: r.get(0)?,
            hash: r.get(1)?,
            kind: r.get(2)?,
            status: r.get(3)?,
            attempts: r.get(4)?,
            started_at: r.get(5)?,
            ended_at: r.get(6)?,
            wake_at: r.get(7)?,
            input: r.get(8)?,
            output: r.get(9)?,
            error: r.get(10)?,
            reused_from: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A step's place in its run (`seq`), id, kind and input.
pub(crate) type StepPlace = (i64, String, StepKind, Option<String>);

pub(crate) fn find(conn: &Connection, run_id: &str, hash: &str) -> StoreResult<Option<StepPlace>> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, step_id, kind, input FROM steps WHERE run_id = ?1 AND hash = ?2",
        )?
        .query_row(params![run_id, hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?)
}

/// Copies the finished steps of `from` before place `seq` into `to`, marked as reused.
pub(crate) fn copy_finished_before(
    conn: &Connection,
    from: &str,
    to: &str,
    seq: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO steps (run_id, hash, step_id, kind, status, seq, attempts,
                            started_at, ended_at, wake_at, input, output, error, reused_from,
                            done_seq)
         SELECT ?1, hash, step_id, kind, status, seq, attempts, started_at, ended_at,
                NULL, input, output, error, ?2, done_seq
         FROM steps WHERE run_id = ?2 AND seq < ?3 AND status IN (?4, ?5)",
    )?
    .execute(params![
        to,
        from,
        seq,
        StepStatus::Completed,
        StepStatus::Failed
    ])?;
    Ok(())
}

/// Marks every step that is executing as interrupted (at start-up: the process that ran
/// them is gone).
pub(crate) fn interrupt_running(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached("UPDATE steps SET status = ?1, running_since = NULL WHERE status = ?2")?
        .execute(params![StepStatus::Interrupted, StepStatus::Running])?;
    Ok(())
}

pub(crate) fn insert_attempt(conn: &Connection, run_id: &str, a: &AttemptWrite) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO step_attempts (run_id, hash, attempt, started_at, ended_at, error, retry_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![run_id, a.hash, a.attempt, a.started_at, a.ended_at, a.error, a.retry_at])?;
    Ok(())
}

/// A failed attempt: (hash, attempt, started at, ended at, error, retry at).
pub(crate) type AttemptRow = (String, u32, i64, i64, Option<String>, Option<i64>);

/// A run's failed attempts, by step hash and attempt.
pub(crate) fn attempts(conn: &Connection, run_id: &str) -> StoreResult<Vec<AttemptRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, attempt, started_at, ended_at, error, retry_at FROM step_attempts
         WHERE run_id = ?1 ORDER BY hash, attempt",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
