//! Embedded, versioned schema migrations, tracked with `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, StoreResult};

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_singletons.sql"),
    include_str!("migrations/0003_console.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    // One migration per IMMEDIATE transaction that reads the version it starts from, so two
    // processes opening a new database at once (the CLI and the server) take turns instead
    // of both applying the same migration.
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Other(format!(
                "the database has schema version {current}, newer than this build of Stepdesk \
                 understands ({SCHEMA_VERSION}); use a newer Stepdesk"
            )));
        }
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let version = current + 1;
        tx.execute_batch(MIGRATIONS[current as usize])?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
}
