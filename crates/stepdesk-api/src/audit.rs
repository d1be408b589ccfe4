//! The audit trail of support actions: who (which origin) did what to whom, when, and
//! whether it worked. Kept in SQLite next to the runs; it never holds a secret: an entry
//! records the command, the user it concerned and the outcome, not the command's params.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use stepdesk_engine::store::{migrate_component, Migration, Store, StoreResult};

use crate::Origin;

const COMPONENT: &str = "audit";

/// Versioned by the engine's migration runner (the `audit` component). `IF NOT EXISTS`:
/// databases from before the runner kept this table already have it.
const MIGRATIONS: &[Migration] = &[Migration {
    name: "audit-log",
    sql: "
CREATE TABLE IF NOT EXISTS audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    origin   TEXT NOT NULL,
    action   TEXT NOT NULL,
    user_id  TEXT,
    ok       INTEGER NOT NULL,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_user ON audit_log(user_id, id);
",
}];

/// Creates or upgrades the audit table.
pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    migrate_component(conn, COMPONENT, MIGRATIONS)
}

/// Records a support action taken outside the API, by the `stepdesk users` commands, which
/// work on the database and the keychain directly (the server need not run): the same
/// trail, under the same action names as the API's commands (`add_user`, `check_user`,
/// `remove_user`), with its origin. `error`: why it failed, in plain words.
pub async fn record_direct(
    store: &Store,
    origin: Origin,
    action: &'static str,
    user_id: &str,
    error: Option<String>,
) -> StoreResult<()> {
    let at = stepdesk_engine::time::now_ms();
    let user_id = user_id.to_string();
    store
        .write(move |c| {
            migrate(c)?;
            record(c, at, origin, action, Some(&user_id), error.as_deref())
        })
        .await
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AuditEntry {
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub origin: Origin,
    /// The command (`sync_user`, `set_token`, ...).
    pub action: String,
    /// The user it concerned, if any.
    pub user_id: Option<String>,
    pub ok: bool,
    /// Why it failed, in plain words.
    pub error: Option<String>,
}

pub(crate) fn record(
    conn: &Connection,
    at: i64,
    origin: Origin,
    action: &str,
    user_id: Option<&str>,
    error: Option<&str>,
) -> StoreResult<()> {
    let origin = serde_json::to_value(origin)?;
    conn.prepare_cached(
        "INSERT INTO audit_log (at, origin, action, user_id, ok, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        origin.as_str().unwrap_or("http"),
        action,
        user_id,
        error.is_none(),
        error
    ])?;
    Ok(())
}

/// The newest entries first, for one user or for all.
pub(crate) fn list(
    conn: &Connection,
    user_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<AuditEntry>> {
    // A database opened for inspection may predate the audit trail.
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, origin, action, user_id, ok, error FROM audit_log
         WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![user_id, limit], |r| {
        let origin: String = r.get(2)?;
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            origin: serde_json::from_value(serde_json::Value::String(origin))
                .unwrap_or(Origin::Http),
            action: r.get(3)?,
            user_id: r.get(4)?,
            ok: r.get(5)?,
            error: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_made_before_the_migration_runner_is_adopted_with_its_entries() {
        let c = Connection::open_in_memory().unwrap();
        // As the old code created it, outside the runner, with one entry.
        c.execute_batch(
            "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, origin TEXT NOT NULL,
                 action TEXT NOT NULL, user_id TEXT, ok INTEGER NOT NULL, error TEXT);
             INSERT INTO audit_log (at, origin, action, user_id, ok) VALUES (1, 'cli', 'add_user', 'u1', 1);",
        )
        .unwrap();
        migrate(&c).unwrap();
        migrate(&c).unwrap(); // again: nothing to do
        let version: i64 = c
            .query_row(
                "SELECT version FROM component_versions WHERE component = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, 1);
        record(&c, 2, Origin::Window, "sync_user", Some("u1"), None).unwrap();
        let actions: Vec<String> = c
            .prepare("SELECT action FROM audit_log WHERE user_id = 'u1' ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(actions, ["add_user", "sync_user"]);
    }
}
