//! SQL of the `functions` table: the registered functions' configuration, as last started.

use rusqlite::{params, Connection};

use super::StoreResult;

/// Records each (id, name, config JSON).
pub(crate) fn upsert_all(
    conn: &Connection,
    functions: &[(String, String, String)],
    now: i64,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO functions (id, name, config, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, config = excluded.config,
            updated_at = excluded.updated_at",
    )?;
    for (id, name, config) in functions {
        stmt.execute(params![id, name, config, now])?;
    }
    Ok(())
}
