//! SQL of the `runs` table.

use rusqlite::{
    params, params_from_iter, types::Value as SqlValue, Connection, OptionalExtension, Row,
};

use super::{ulid_floor, StoreResult};
use crate::admin::{RunQuery, COUNT_EXACT_UP_TO};
use crate::ingest::Wake;
use crate::model::{RunStatus, TriggerKind};

/// The columns a [`RunSummary`](crate::admin::RunSummary) is read from, in order
/// (`r` is `runs`).
pub(crate) const RUN_COLUMNS: &str =
    "r.id, r.function_id, r.status, r.trigger_kind, r.event_id, r.event_name, r.queued_at,
     r.started_at, r.ended_at, r.cron_scheduled_at, r.late";

/// Where a new run comes from.
pub(crate) struct NewRun<'a> {
    pub function_id: &'a str,
    pub trigger_kind: TriggerKind,
    pub event_internal_id: &'a str,
    /// The triggering event's name (kept on the run for the runs list's filter).
    pub event_name: &'a str,
    pub now: i64,
    pub cron_scheduled_at: Option<i64>,
    pub late: bool,
    pub parent: Option<(&'a str, &'a str)>,
    pub rerun_of: Option<&'a str>,
    /// False for a run queued behind a singleton: it gets no wake time until its turn.
    pub runnable: bool,
    /// Not to start before this time (ms since the epoch): an event sent with a `ts` in the
    /// future schedules its runs then, as on Inngest.
    pub not_before: Option<i64>,
}

impl NewRun<'_> {
    /// When the run is first due, if it is runnable.
    pub(crate) fn due_at(&self) -> Option<i64> {
        self.runnable
            .then(|| self.not_before.map_or(self.now, |t| t.max(self.now)))
    }
}

pub(crate) fn insert(conn: &Connection, run: &NewRun<'_>, run_id: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO runs (id, function_id, status, trigger_kind, event_id, queued_at, wake_at,
                           cron_scheduled_at, late, parent_run_id, parent_step, rerun_of, event_name)
         VALUES (?1, ?2, ?12, ?3, ?4, ?5, ?11, ?6, ?7, ?8, ?9, ?10, ?13)",
    )?
    .execute(params![
        run_id,
        run.function_id,
        run.trigger_kind,
        run.event_internal_id,
        run.now,
        run.cron_scheduled_at,
        run.late,
        run.parent.map(|p| p.0),
        run.parent.map(|p| p.1),
        run.rerun_of,
        run.due_at(),
        RunStatus::Running,
        run.event_name,
    ])?;
    Ok(())
}

/// The status of a run, if it exists.
pub(crate) fn status(conn: &Connection, run_id: &str) -> StoreResult<Option<RunStatus>> {
    Ok(conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?)
}

/// Makes a running run due at `at`; false if it is not running.
pub(crate) fn wake_if_running(conn: &Connection, run_id: &str, at: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("UPDATE runs SET wake_at = ?2 WHERE id = ?1 AND status = ?3")?
        .execute(params![run_id, at, RunStatus::Running])?
        > 0)
}

/// Sets `wake_at` (`None`: not runnable until something wakes it).
pub(crate) fn set_wake(conn: &Connection, run_id: &str, at: Option<i64>) -> StoreResult<()> {
    conn.prepare_cached("UPDATE runs SET wake_at = ?2 WHERE id = ?1")?
        .execute(params![run_id, at])?;
    Ok(())
}

/// Sets `started_at` unless it is set.
pub(crate) fn set_started(conn: &Connection, run_id: &str, at: i64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE runs SET started_at = ?2 WHERE id = ?1 AND started_at IS NULL")?
        .execute(params![run_id, at])?;
    Ok(())
}

/// Sets the number of failed function-level attempts.
pub(crate) fn set_attempt(conn: &Connection, run_id: &str, attempts: u32) -> StoreResult<()> {
    conn.prepare_cached("UPDATE runs SET attempt = ?2 WHERE id = ?1")?
        .execute(params![run_id, attempts])?;
    Ok(())
}

/// Ends a run with a status, an output or an error.
pub(crate) fn finish(
    conn: &Connection,
    run_id: &str,
    status: RunStatus,
    output: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, output = ?3, error = ?4, ended_at = ?5, wake_at = NULL
         WHERE id = ?1",
    )?
    .execute(params![run_id, status, output, error, now])?;
    Ok(())
}

/// Where a run comes from, for what follows its end.
pub(crate) struct RunLinks {
    pub function_id: String,
    pub event_payload: Option<String>,
    pub parent: Option<(String, String)>,
}

pub(crate) fn links(conn: &Connection, run_id: &str) -> StoreResult<RunLinks> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.function_id, e.payload, r.parent_run_id, r.parent_step
         FROM runs r LEFT JOIN events e ON e.internal_id = r.event_id WHERE r.id = ?1",
    )?;
    Ok(stmt.query_row([run_id], |r| {
        let parent_run: Option<String> = r.get(2)?;
        let parent_step: Option<String> = r.get(3)?;
        Ok(RunLinks {
            function_id: r.get(0)?,
            event_payload: r.get(1)?,
            parent: parent_run.zip(parent_step),
        })
    })?)
}

/// What the executor reads of a run before executing it.
pub(crate) struct RunHead {
    pub function_id: String,
    pub status: RunStatus,
    pub wake_at: Option<i64>,
    pub attempt: u32,
    pub started_at: Option<i64>,
    pub event_payload: Option<String>,
    pub rerun_from_step: Option<String>,
    pub rerun_step_input: Option<String>,
}

pub(crate) fn head(conn: &Connection, run_id: &str) -> StoreResult<Option<RunHead>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.function_id, r.status, r.wake_at, r.attempt, r.started_at, e.payload,
                    r.rerun_from_step, r.rerun_step_input
             FROM runs r LEFT JOIN events e ON e.internal_id = r.event_id WHERE r.id = ?1",
        )?
        .query_row([run_id], |r| {
            Ok(RunHead {
                function_id: r.get(0)?,
                status: r.get(1)?,
                wake_at: r.get(2)?,
                attempt: r.get(3)?,
                started_at: r.get(4)?,
                event_payload: r.get(5)?,
                rerun_from_step: r.get(6)?,
                rerun_step_input: r.get(7)?,
            })
        })
        .optional()?)
}

/// Running runs with a wake time (at or before `due_by`, if given).
pub(crate) fn due(conn: &Connection, due_by: Option<i64>) -> StoreResult<Vec<Wake>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, wake_at FROM runs
         WHERE wake_at IS NOT NULL AND wake_at <= ?1 AND status = ?2",
    )?;
    let rows = stmt.query_map(
        params![due_by.unwrap_or(i64::MAX), RunStatus::Running],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A run's function and triggering event.
pub(crate) fn origin(
    conn: &Connection,
    run_id: &str,
) -> StoreResult<Option<(String, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT function_id, event_id FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Marks a "Rerun from step": the step it starts from, and its edited input.
pub(crate) fn mark_rerun_from(
    conn: &Connection,
    run_id: &str,
    hash: &str,
    input: Option<&str>,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE runs SET rerun_from_step = ?2, rerun_step_input = ?3 WHERE id = ?1",
    )?
    .execute(params![run_id, hash, input])?;
    Ok(())
}

/// A run's summary row ([`RUN_COLUMNS`]) and what its detail adds, by position after them:
/// event payload, output, error, parent run, rerun of, rerun from step, its edited input.
pub(crate) fn detail<T>(
    conn: &Connection,
    run_id: &str,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS}, e.payload, r.output, r.error, r.parent_run_id, r.rerun_of,
                r.rerun_from_step, r.rerun_step_input
         FROM runs r LEFT JOIN events e ON e.internal_id = r.event_id WHERE r.id = ?1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([run_id], map)
        .optional()?)
}

/// The runs an event started, oldest first ([`RUN_COLUMNS`]).
pub(crate) fn by_event<T>(
    conn: &Connection,
    event_id: &str,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.event_id = ?1 ORDER BY r.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([event_id], map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of runs newest first ([`RUN_COLUMNS`]): `rows` at most, before `cursor`.
pub(crate) fn list<T: RunId>(
    conn: &Connection,
    filter: &RunFilter,
    cursor: Option<&str>,
    rows: usize,
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    // One query per status, each walking its index newest first, merged here:
    // `status IN (...)` would make SQLite sort every matching run.
    let mut out = Vec::new();
    for status in filter.each_status() {
        let (clause, mut args) = filter.clause(status);
        let mut sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r{} WHERE {clause}",
            filter.index_hint(status)
        );
        if let Some(c) = cursor {
            sql.push_str(" AND r.id < ?");
            args.push(c.to_string().into());
        }
        sql.push_str(&format!(" ORDER BY r.id DESC LIMIT {rows}"));
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut found = stmt.query(params_from_iter(args))?;
        while let Some(r) = found.next()? {
            out.push(map(r)?);
        }
    }
    out.sort_by(|a, b| b.run_id().cmp(a.run_id()));
    out.truncate(rows);
    Ok(out)
}

/// What [`list`] sorts by.
pub(crate) trait RunId {
    fn run_id(&self) -> &str;
}

/// (ended at, status, duration) of a function's runs that ended between `from` and `to`,
/// from the covering index. The duration runs from the start (the queueing, for a run
/// cancelled before it started) to the end.
pub(crate) fn ended_between(
    conn: &Connection,
    function_id: &str,
    from: i64,
    to: i64,
) -> StoreResult<Vec<(i64, RunStatus, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ended_at, status, ended_at - coalesce(started_at, queued_at) FROM runs
         INDEXED BY runs_by_function_ended
         WHERE function_id = ?1 AND ended_at >= ?2 AND ended_at <= ?3",
    )?;
    let rows = stmt.query_map(params![function_id, from, to], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When each running run of a function queued since `from` was queued.
pub(crate) fn running_queued_since(
    conn: &Connection,
    function_id: &str,
    from: i64,
) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT queued_at FROM runs INDEXED BY runs_by_function_status
         WHERE function_id = ?1 AND status = ?2 AND id >= ?3",
    )?;
    let rows = stmt.query_map(
        params![function_id, RunStatus::Running, ulid_floor(from)],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A run's triggering event's internal id.
pub(crate) fn event_id(conn: &Connection, run_id: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT event_id FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// A runs list's filters, as SQL.
pub(crate) struct RunFilter {
    function_id: Option<String>,
    statuses: Vec<RunStatus>,
    trigger_kind: Option<TriggerKind>,
    event_name: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

impl RunFilter {
    pub(crate) fn new(q: RunQuery) -> RunFilter {
        let mut statuses = q.status;
        statuses.sort_by_key(|s| s.as_db());
        statuses.dedup();
        RunFilter {
            function_id: q.function_id.filter(|f| !f.is_empty()),
            statuses,
            trigger_kind: q.trigger_kind,
            event_name: q.event_name.filter(|n| !n.is_empty()),
            from: q.from,
            to: q.to,
        }
    }

    /// The statuses to query one by one (`None`: any status). Filtered by event name or
    /// trigger kind, every status is one query: their indexes are ordered by id within
    /// each status, so each walks newest first and counts from the index alone.
    pub(crate) fn each_status(&self) -> Vec<Option<RunStatus>> {
        if !self.statuses.is_empty() {
            self.statuses.iter().copied().map(Some).collect()
        } else if self.event_name.is_some() || self.trigger_kind.is_some() {
            RunStatus::ALL.iter().copied().map(Some).collect()
        } else {
            vec![None]
        }
    }

    /// With a function, a status and a time range, SQLite's planner (without statistics)
    /// picks `runs_by_status` and filters the function row by row: tens of milliseconds
    /// for a rare function among a million runs. Name the index that covers all three.
    pub(crate) fn index_hint(&self, status: Option<RunStatus>) -> &'static str {
        if self.function_id.is_some() && status.is_some() {
            " INDEXED BY runs_by_function_status"
        } else {
            ""
        }
    }

    /// The WHERE clause (without the cursor) for one status, and its arguments.
    pub(crate) fn clause(&self, status: Option<RunStatus>) -> (String, Vec<SqlValue>) {
        let mut sql = String::from("1=1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(f) = &self.function_id {
            sql.push_str(" AND r.function_id = ?");
            args.push(f.clone().into());
        }
        if let Some(s) = status {
            sql.push_str(" AND r.status = ?");
            args.push(s.as_db().to_string().into());
        }
        if let Some(k) = self.trigger_kind {
            sql.push_str(" AND r.trigger_kind = ?");
            args.push(k.as_db().to_string().into());
        }
        if let Some(n) = &self.event_name {
            sql.push_str(" AND r.event_name = ?");
            args.push(n.clone().into());
        }
        if let Some(from) = self.from {
            sql.push_str(" AND r.id >= ?");
            args.push(ulid_floor(from).into());
        }
        if let Some(to) = self.to {
            sql.push_str(" AND r.id < ?");
            args.push(ulid_floor(to).into());
        }
        (sql, args)
    }

    fn by_time_only(&self) -> bool {
        self.function_id.is_none()
            && self.statuses.is_empty()
            && self.trigger_kind.is_none()
            && self.event_name.is_none()
    }

    /// The number of matching runs, and whether it is exact (see [`RunPage::total`]).
    pub(crate) fn count(&self, c: &Connection) -> StoreResult<(u64, bool)> {
        let mut left = COUNT_EXACT_UP_TO + 1;
        let mut total = 0u64;
        for status in self.each_status() {
            let (clause, args) = self.clause(status);
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM runs r{} WHERE {clause} LIMIT {left})",
                self.index_hint(status)
            );
            let n: u64 = c
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args), |r| r.get(0))?;
            total += n;
            left -= n;
            if left == 0 {
                break;
            }
        }
        if total <= COUNT_EXACT_UP_TO {
            return Ok((total, true));
        }
        if !self.by_time_only() {
            return Ok((COUNT_EXACT_UP_TO, false));
        }
        // Row ids follow insertion order, which is id order (one writer, increasing ids):
        // the rows in an id range are the difference of its ends' row ids.
        let first: Option<i64> = c
            .prepare_cached("SELECT rowid FROM runs WHERE id >= ?1 ORDER BY id LIMIT 1")?
            .query_row([ulid_floor(self.from.unwrap_or(0))], |r| r.get(0))
            .optional()?;
        let last: Option<i64> = match self.to {
            Some(to) => c
                .prepare_cached("SELECT rowid FROM runs WHERE id < ?1 ORDER BY id DESC LIMIT 1")?
                .query_row([ulid_floor(to)], |r| r.get(0))
                .optional()?,
            None => c
                .prepare_cached("SELECT rowid FROM runs ORDER BY id DESC LIMIT 1")?
                .query_row([], |r| r.get(0))
                .optional()?,
        };
        let estimate = match (first, last) {
            (Some(f), Some(l)) if l >= f => (l - f + 1) as u64,
            _ => 0,
        };
        Ok((estimate.max(total), false))
    }
}
