//! The Readwise tables, kept in Stepdesk's database and versioned on their own (as the
//! `readwise` component, in `component_versions`) by the engine's migration runner, so the
//! engine's migrations know nothing about Readwise.

use rusqlite::{params, Connection, OptionalExtension};
use stepdesk_engine::store::{migrate_component, Migration, StoreResult};

const COMPONENT: &str = "readwise";

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "users-books-daily-syncs",
        sql: r#"
CREATE TABLE readwise_users (
    id                   TEXT PRIMARY KEY,
    display_name         TEXT NOT NULL,
    token_status         TEXT NOT NULL,      -- connected | missing | rejected
    token_checked_at     INTEGER,
    created_at           INTEGER NOT NULL,
    last_sync_at         INTEGER,
    last_sync_status     TEXT,               -- running | ok | failed
    last_sync_book_count INTEGER,
    last_sync_error      TEXT,
    last_sync_run_id     TEXT,
    last_sync_batch      TEXT,               -- the daily sync run that asked for it
    last_full_sync_at    INTEGER,
    readwise_total       INTEGER,            -- Readwise's own count at the last sync
    watermark            TEXT                -- newest `updated` seen: incremental syncs start there
);
CREATE INDEX readwise_users_by_batch ON readwise_users(last_sync_batch, last_sync_status);

CREATE TABLE readwise_books (
    user_id        TEXT NOT NULL,
    book_id        INTEGER NOT NULL,
    title          TEXT NOT NULL,
    author         TEXT,
    category       TEXT,
    source         TEXT,
    num_highlights INTEGER,
    updated        TEXT,
    payload        TEXT NOT NULL,            -- the book as Readwise returned it
    seen_run       TEXT NOT NULL,            -- the last run that saw it (full syncs prune the rest)
    PRIMARY KEY (user_id, book_id)
);

CREATE TABLE readwise_daily_syncs (
    run_id     TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    total      INTEGER NOT NULL
);
"#,
    },
    Migration {
        name: "settings",
        sql: r#"
CREATE TABLE readwise_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    },
    Migration {
        name: "daily-sync-users",
        sql: r#"
-- Each daily sync's users, and the fetch run that synced each one: progress is read from
-- those runs' statuses, so failures, cancellations and later manual syncs all count right.
CREATE TABLE readwise_daily_sync_users (
    daily_run_id TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    fetch_run_id TEXT,
    PRIMARY KEY (daily_run_id, user_id)
) WITHOUT ROWID;
"#,
    },
    Migration {
        name: "monotonic-sync-record",
        sql: r#"
-- The sync record is monotonic: only a run at least as new as the one that wrote it may
-- replace it (run ids are ULIDs in queue order). Token statuses gain `unchecked`, and sync
-- statuses `cancelled`; both columns stay TEXT.
ALTER TABLE readwise_users ADD COLUMN last_sync_key TEXT;
UPDATE readwise_users SET last_sync_key = last_sync_run_id;
"#,
    },
    Migration {
        name: "daily-sync-replays",
        sql: r#"
-- A daily sync may replay some users of an earlier one.
ALTER TABLE readwise_daily_syncs ADD COLUMN replay_of TEXT;
"#,
    },
];

pub(crate) fn get_setting(conn: &Connection, key: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM readwise_settings WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn set_setting(conn: &Connection, key: &str, value: Option<&str>) -> StoreResult<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO readwise_settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        )?,
        None => conn.execute("DELETE FROM readwise_settings WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// Creates or upgrades the Readwise tables.
pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    migrate_component(conn, COMPONENT, MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that an older build migrated to version 2 (its own runner, the same
    /// `component_versions` row) is taken up where it stopped.
    #[test]
    fn a_database_an_older_build_migrated_goes_on_from_its_version() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE component_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
             INSERT INTO component_versions VALUES ('readwise', 2);",
        )
        .unwrap();
        c.execute_batch(MIGRATIONS[0].sql).unwrap();
        c.execute_batch(MIGRATIONS[1].sql).unwrap();
        c.execute(
            "INSERT INTO readwise_users (id, display_name, token_status, created_at, last_sync_run_id)
             VALUES ('ada', 'Ada', 'connected', 1, '01RUN')",
            [],
        )
        .unwrap();
        migrate(&c).unwrap();
        migrate(&c).unwrap();
        let (version, key): (i64, String) = c
            .query_row(
                "SELECT (SELECT version FROM component_versions WHERE component = 'readwise'),
                        last_sync_key FROM readwise_users WHERE id = 'ada'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, key.as_str()), (MIGRATIONS.len() as i64, "01RUN"));
        c.execute(
            "INSERT INTO readwise_daily_sync_users (daily_run_id, user_id) VALUES ('d', 'ada')",
            [],
        )
        .unwrap();
    }
}
