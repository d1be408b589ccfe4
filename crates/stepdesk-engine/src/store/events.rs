//! SQL of the `events` table.

use rusqlite::{params, params_from_iter, types::Value as SqlValue, Connection, OptionalExtension};

use super::{ulid_floor, StoreResult};

/// A stored event as read back: (internal id, payload JSON, received at).
pub(crate) type EventRow = (String, String, i64);

/// Which events to list.
pub(crate) struct EventFilter {
    pub name: Option<String>,
    pub include_internal: bool,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub cursor: Option<String>,
    /// Rows to read (the page size plus one, to tell if there is a next page).
    pub rows: usize,
}

pub(crate) fn insert(
    conn: &Connection,
    internal_id: &str,
    event_id: &str,
    name: &str,
    ts: i64,
    received_at: i64,
    payload: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO events (internal_id, event_id, name, ts, received_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        internal_id,
        event_id,
        name,
        ts,
        received_at,
        payload
    ])?;
    Ok(())
}

/// An event's stored JSON.
pub(crate) fn payload(conn: &Connection, internal_id: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT payload FROM events WHERE internal_id = ?1")?
        .query_row([internal_id], |r| r.get(0))
        .optional()?)
}

pub(crate) fn get(conn: &Connection, internal_id: &str) -> StoreResult<Option<EventRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT internal_id, payload, received_at FROM events WHERE internal_id = ?1",
        )?
        .query_row([internal_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Events newest first.
pub(crate) fn list(conn: &Connection, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
    let mut sql = String::from("SELECT internal_id, payload, received_at FROM events WHERE 1=1");
    let mut args: Vec<SqlValue> = Vec::new();
    match f.name.as_ref().filter(|n| !n.is_empty()) {
        Some(n) => {
            sql.push_str(" AND name = ?");
            args.push(n.clone().into());
        }
        // Internal names are the ones between `inngest/` and `inngest0` (`0` follows `/`).
        None if !f.include_internal => {
            sql.push_str(" AND NOT (name >= 'inngest/' AND name < 'inngest0')")
        }
        None => {}
    }
    // Internal ids are ULIDs of the time an event was received.
    if let Some(from) = f.from {
        sql.push_str(" AND internal_id >= ?");
        args.push(ulid_floor(from).into());
    }
    if let Some(to) = f.to {
        sql.push_str(" AND internal_id < ?");
        args.push(ulid_floor(to).into());
    }
    if let Some(c) = &f.cursor {
        sql.push_str(" AND internal_id < ?");
        args.push(c.clone().into());
    }
    sql.push_str(&format!(" ORDER BY internal_id DESC LIMIT {}", f.rows));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
