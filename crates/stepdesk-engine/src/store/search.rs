//! SQL of the search index (`search`, `search_queue`; see [`crate::search`]).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::runs::RUN_COLUMNS;
use super::StoreResult;

/// Up to `n` queued run ids.
pub(crate) fn queued(conn: &Connection, n: usize) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT run_id FROM search_queue LIMIT ?1")?;
    let rows = stmt.query_map([n as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn dequeue(conn: &Connection, run_id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM search_queue WHERE run_id = ?1")?
        .execute([run_id])?;
    Ok(())
}

/// Runs waiting to be indexed.
pub(crate) fn pending(conn: &Connection) -> StoreResult<u64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM search_queue")?
        .query_row([], |r| r.get(0))?)
}

/// A run's rowid and the texts it is found by, in order: its event, output and error, then
/// each step's output and error. `None` if the run is gone.
pub(crate) fn texts(conn: &Connection, run_id: &str) -> StoreResult<Option<(i64, Vec<String>)>> {
    type RunTexts = (i64, Option<String>, Option<String>, Option<String>);
    let run: Option<RunTexts> = conn
        .prepare_cached(
            "SELECT r.rowid, e.payload, r.output, r.error
             FROM runs r LEFT JOIN events e ON e.internal_id = r.event_id WHERE r.id = ?1",
        )?
        .query_row([run_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((rowid, event, output, error)) = run else {
        return Ok(None);
    };
    let mut texts: Vec<String> = [event, output, error].into_iter().flatten().collect();
    let mut stmt =
        conn.prepare_cached("SELECT output, error FROM steps WHERE run_id = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([run_id])?;
    while let Some(r) = rows.next()? {
        texts.extend(r.get::<_, Option<String>>(0)?);
        texts.extend(r.get::<_, Option<String>>(1)?);
    }
    Ok(Some((rowid, texts)))
}

/// Replaces the indexed text of the run with this rowid.
pub(crate) fn replace(conn: &Connection, rowid: i64, doc: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM search WHERE rowid = ?1")?
        .execute([rowid])?;
    conn.prepare_cached("INSERT INTO search (rowid, body) VALUES (?1, ?2)")?
        .execute(params![rowid, doc])?;
    Ok(())
}

/// The newest `limit` runs matching an FTS5 query, newest first ([`RUN_COLUMNS`]).
pub(crate) fn matching<T>(
    conn: &Connection,
    query: &str,
    limit: u32,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.rowid IN
            (SELECT rowid FROM search WHERE search MATCH ?1 ORDER BY rowid DESC LIMIT ?2)
         ORDER BY r.id DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![query, limit], map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
