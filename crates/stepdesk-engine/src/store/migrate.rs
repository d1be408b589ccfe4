//! Schema migrations: one runner for the engine's tables and for the tables components
//! (the Readwise sync) keep in the same database.
//!
//! Each schema is a list of named migrations; migration `i` brings it to version `i + 1`.
//! The engine's version is kept in `PRAGMA user_version` (as it always was), a component's
//! in `component_versions`; every migration applied is also logged, with its name and
//! time, in `applied_migrations`. A database whose version is newer than a build knows is
//! refused, never migrated backwards or half understood.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{StoreError, StoreResult};
use crate::time::now_ms;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// A short name, kept in `applied_migrations` (e.g. `init`, `singletons`).
    pub name: &'static str,
    pub sql: &'static str,
}

/// The engine's migrations, in order.
const ENGINE: &[Migration] = &[
    Migration {
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        name: "singletons",
        sql: include_str!("migrations/0002_singletons.sql"),
    },
    Migration {
        name: "console",
        sql: include_str!("migrations/0003_console.sql"),
    },
    Migration {
        name: "expressions",
        sql: include_str!("migrations/0004_expressions.sql"),
    },
    Migration {
        name: "sdk-functions",
        sql: include_str!("migrations/0005_sdk_functions.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = ENGINE.len() as i64;

/// Where a schema's version is kept.
#[derive(Clone, Copy)]
enum Schema<'a> {
    Engine,
    Component(&'a str),
}

impl Schema<'_> {
    fn name(&self) -> &str {
        match self {
            Schema::Engine => "engine",
            Schema::Component(c) => c,
        }
    }

    fn version(&self, conn: &Connection) -> StoreResult<i64> {
        Ok(match self {
            Schema::Engine => conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            Schema::Component(c) => conn
                .query_row(
                    "SELECT version FROM component_versions WHERE component = ?1",
                    [c],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0),
        })
    }

    fn set_version(&self, conn: &Connection, version: i64) -> StoreResult<()> {
        match self {
            Schema::Engine => conn.pragma_update(None, "user_version", version)?,
            Schema::Component(c) => {
                conn.execute(
                    "INSERT INTO component_versions (component, version) VALUES (?1, ?2)
                     ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    params![c, version],
                )?;
            }
        }
        Ok(())
    }
}

/// Applies the next migration `schema` lacks, in the caller's transaction. Returns false
/// when it is up to date.
fn apply_next(
    conn: &Connection,
    schema: Schema<'_>,
    migrations: &[Migration],
) -> StoreResult<bool> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS component_versions (
             component TEXT PRIMARY KEY, version INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS applied_migrations (
             component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
             applied_at INTEGER NOT NULL, PRIMARY KEY (component, version));",
    )?;
    let current = schema.version(conn)?;
    let known = migrations.len() as i64;
    if current > known {
        return Err(StoreError::Other(match schema {
            Schema::Engine => format!(
                "the database has schema version {current}, newer than this build of Stepdesk \
                 understands ({known}); use a newer Stepdesk"
            ),
            Schema::Component(c) => format!(
                "the `{c}` tables have version {current}, newer than this build understands \
                 ({known}); use a newer Stepdesk"
            ),
        }));
    }
    if current == known {
        return Ok(false);
    }
    let migration = migrations[current as usize];
    conn.execute_batch(migration.sql)?;
    let version = current + 1;
    schema.set_version(conn, version)?;
    conn.execute(
        "INSERT OR REPLACE INTO applied_migrations (component, version, name, applied_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![schema.name(), version, migration.name, now_ms()],
    )?;
    tracing::info!(
        schema = schema.name(),
        version,
        name = migration.name,
        "applied schema migration"
    );
    Ok(true)
}

/// Creates or upgrades a component's tables: applies, in the caller's transaction (a
/// [`Store::write`](super::Store::write)), the migrations its database lacks, recording
/// its version under `component`.
pub fn migrate_component(
    conn: &Connection,
    component: &str,
    migrations: &[Migration],
) -> StoreResult<()> {
    if component == "engine" || component.is_empty() {
        return Err(StoreError::Other(format!(
            "`{component}` cannot name a component's schema"
        )));
    }
    while apply_next(conn, Schema::Component(component), migrations)? {}
    Ok(())
}

/// Brings the engine's tables up to [`SCHEMA_VERSION`].
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    // One migration per IMMEDIATE transaction that reads the version it starts from, so two
    // processes opening a new database at once (the CLI and the server) take turns instead
    // of both applying the same migration.
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !apply_next(&tx, Schema::Engine, ENGINE)? {
            return Ok(());
        }
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THINGS: &[Migration] = &[
        Migration {
            name: "things",
            sql: "CREATE TABLE things (id TEXT PRIMARY KEY);",
        },
        Migration {
            name: "things-size",
            sql: "ALTER TABLE things ADD COLUMN size INTEGER;",
        },
    ];

    fn log(c: &Connection) -> Vec<(String, i64, String)> {
        let mut stmt = c
            .prepare("SELECT component, version, name FROM applied_migrations ORDER BY component, version")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_engine_and_a_component_migrate_through_one_runner_once() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // First the component's first migration only (as an older build had it)...
        migrate_component(&c, "things", &THINGS[..1]).unwrap();
        c.execute("INSERT INTO things (id) VALUES ('a')", [])
            .unwrap();
        // ...then the current list: only the second one runs, the data stays.
        migrate_component(&c, "things", THINGS).unwrap();
        migrate_component(&c, "things", THINGS).unwrap();
        let size: Option<i64> = c
            .query_row("SELECT size FROM things WHERE id = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, None);
        let v: i64 = c
            .query_row(
                "SELECT version FROM component_versions WHERE component = 'things'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, 2);
        let log = log(&c);
        assert_eq!(
            log,
            [
                ("engine".to_string(), 1, "init".to_string()),
                ("engine".to_string(), 2, "singletons".to_string()),
                ("engine".to_string(), 3, "console".to_string()),
                ("engine".to_string(), 4, "expressions".to_string()),
                ("engine".to_string(), 5, "sdk-functions".to_string()),
                ("things".to_string(), 1, "things".to_string()),
                ("things".to_string(), 2, "things-size".to_string()),
            ]
        );
    }

    #[test]
    fn a_newer_schema_is_refused_not_migrated() {
        let c = Connection::open_in_memory().unwrap();
        migrate_component(&c, "things", THINGS).unwrap();
        let err = migrate_component(&c, "things", &THINGS[..1]).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut c).unwrap_err();
        assert!(err.to_string().contains("use a newer Stepdesk"), "{err}");
        assert!(migrate_component(&c, "engine", THINGS).is_err());
    }

    /// A database of schema 2 (before the console) with a run: version 3 names the run's
    /// event on the run and queues it for the search index.
    #[test]
    fn version_three_fills_in_what_older_runs_lack() {
        let mut c = Connection::open_in_memory().unwrap();
        for m in &ENGINE[..2] {
            c.execute_batch(m.sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute_batch(
            "INSERT INTO events (internal_id, event_id, name, ts, received_at, payload)
             VALUES ('e1', 'e1', 'app/old', 1, 1, '{}');
             INSERT INTO runs (id, function_id, status, trigger_kind, event_id, queued_at)
             VALUES ('r1', 'f', 'Completed', 'event', 'e1', 1);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let (name, queued): (String, i64) = c
            .query_row(
                "SELECT event_name, (SELECT count(*) FROM search_queue) FROM runs WHERE id = 'r1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((name.as_str(), queued), ("app/old", 1));
    }
}
