//! The Readwise tables, kept in Stepdesk's database and versioned on their own
//! (`component_versions`), so the engine's migrations know nothing about Readwise.

use rusqlite::{params, Connection, OptionalExtension};
use stepdesk_engine::store::{StoreError, StoreResult};

const COMPONENT: &str = "readwise";

const MIGRATIONS: &[&str] = &[
    r#"
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
    r#"
CREATE TABLE readwise_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
-- Each daily sync's users, and the fetch run that synced each one: progress is read from
-- those runs' statuses, so failures, cancellations and later manual syncs all count right.
CREATE TABLE readwise_daily_sync_users (
    daily_run_id TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    fetch_run_id TEXT,
    PRIMARY KEY (daily_run_id, user_id)
) WITHOUT ROWID;
"#,
    r#"
-- The sync record is monotonic: only a run at least as new as the one that wrote it may
-- replace it (run ids are ULIDs in queue order). Token statuses gain `unchecked`, and sync
-- statuses `cancelled`; both columns stay TEXT.
ALTER TABLE readwise_users ADD COLUMN last_sync_key TEXT;
UPDATE readwise_users SET last_sync_key = last_sync_run_id;
"#,
    r#"
-- A daily sync may replay some users of an earlier one.
ALTER TABLE readwise_daily_syncs ADD COLUMN replay_of TEXT;
"#,
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
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS component_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )?;
    let current: i64 = conn
        .query_row(
            "SELECT version FROM component_versions WHERE component = ?1",
            [COMPONENT],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if current > MIGRATIONS.len() as i64 {
        return Err(StoreError::Other(format!(
            "the Readwise tables have version {current}, newer than this build understands"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        conn.execute_batch(sql)?;
        conn.execute(
            "INSERT INTO component_versions (component, version) VALUES (?1, ?2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            params![COMPONENT, i as i64 + 1],
        )?;
    }
    Ok(())
}
