//! SQL of the `functions` table: the registered functions' configuration (as last started
//! or synced), where each comes from, and which a sync archived.

use rusqlite::{params, Connection};

use super::StoreResult;
use crate::function::ArchivedFunction;

/// A function as the table keeps it.
#[derive(Debug, Clone)]
pub(crate) struct FunctionRow {
    pub id: String,
    pub name: String,
    /// JSON.
    pub config: String,
    pub source: Option<String>,
}

/// Records each function as registered now (not archived).
pub(crate) fn upsert_all(
    conn: &Connection,
    functions: &[FunctionRow],
    now: i64,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO functions (id, name, config, updated_at, source, archived_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, config = excluded.config,
            updated_at = excluded.updated_at, source = excluded.source, archived_at = NULL",
    )?;
    for f in functions {
        stmt.execute(params![f.id, f.name, f.config, now, f.source])?;
    }
    Ok(())
}

/// Marks these functions of `source` archived.
pub(crate) fn archive(
    conn: &Connection,
    source: &str,
    ids: &[String],
    now: i64,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE functions SET archived_at = ?3, updated_at = ?3
         WHERE id = ?1 AND source = ?2 AND archived_at IS NULL",
    )?;
    for id in ids {
        stmt.execute(params![id, source, now])?;
    }
    Ok(())
}

/// Marks the functions of `source` that are not in `keep` archived.
pub(crate) fn archive_missing(
    conn: &Connection,
    source: &str,
    keep: &[&str],
    now: i64,
) -> StoreResult<()> {
    let gone: Vec<String> = {
        let mut stmt = conn
            .prepare_cached("SELECT id FROM functions WHERE source = ?1 AND archived_at IS NULL")?;
        let ids = stmt.query_map([source], |r| r.get::<_, String>(0))?;
        ids.filter(|id| !id.as_ref().is_ok_and(|id| keep.contains(&id.as_str())))
            .collect::<Result<_, _>>()?
    };
    archive(conn, source, &gone, now)
}

/// The archived functions.
pub(crate) fn archived(conn: &Connection) -> StoreResult<Vec<ArchivedFunction>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, name, source FROM functions WHERE archived_at IS NOT NULL")?;
    let rows = stmt.query_map([], |r| {
        Ok(ArchivedFunction {
            id: r.get(0)?,
            name: r.get(1)?,
            source: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
