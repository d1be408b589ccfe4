//! The apps' table, kept in Stepdesk's database and versioned on its own (the `sdk`
//! component, in `component_versions`) by the engine's migration runner.
//!
//! An app's last accepted registration is stored whole (`config`), so its functions are
//! registered again at start-up, before the engine resumes their runs: a sleeping run of an
//! SDK function survives a restart even when its app is not up yet.

use rusqlite::{params, Connection, OptionalExtension, Row};
use stepdesk_engine::store::{migrate_component, Migration, StoreResult};

const COMPONENT: &str = "sdk";

const MIGRATIONS: &[Migration] = &[Migration {
    name: "apps",
    sql: r#"
CREATE TABLE sdk_apps (
    url          TEXT PRIMARY KEY,   -- the app's serve URL, as given or as it registered
    app_id       TEXT,               -- its appName once it has registered
    origin       TEXT NOT NULL,      -- flag | discovered | added | registered
    sdk          TEXT,               -- e.g. js:v4.24.0
    framework    TEXT,
    app_version  TEXT,
    checksum     TEXT,               -- sha256 of the last accepted registration body
    config       TEXT,               -- that body (JSON)
    error        TEXT,               -- the last sync's error, in plain words
    added_at     INTEGER NOT NULL,
    synced_at    INTEGER,            -- last accepted registration
    checked_at   INTEGER             -- last poll, successful or not
);
CREATE UNIQUE INDEX sdk_apps_by_app_id ON sdk_apps(app_id) WHERE app_id IS NOT NULL;
"#,
}];

/// Creates or upgrades the apps' table.
pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    migrate_component(conn, COMPONENT, MIGRATIONS)
}

/// One row of `sdk_apps`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppRow {
    pub url: String,
    pub app_id: Option<String>,
    pub origin: String,
    pub sdk: Option<String>,
    pub framework: Option<String>,
    pub app_version: Option<String>,
    pub checksum: Option<String>,
    pub config: Option<String>,
    pub error: Option<String>,
    pub added_at: i64,
    pub synced_at: Option<i64>,
    pub checked_at: Option<i64>,
}

const COLUMNS: &str = "url, app_id, origin, sdk, framework, app_version, checksum, config, error, \
                       added_at, synced_at, checked_at";

fn row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        url: r.get(0)?,
        app_id: r.get(1)?,
        origin: r.get(2)?,
        sdk: r.get(3)?,
        framework: r.get(4)?,
        app_version: r.get(5)?,
        checksum: r.get(6)?,
        config: r.get(7)?,
        error: r.get(8)?,
        added_at: r.get(9)?,
        synced_at: r.get(10)?,
        checked_at: r.get(11)?,
    })
}

pub(crate) fn all(conn: &Connection) -> StoreResult<Vec<AppRow>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM sdk_apps ORDER BY url"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) fn by_url(conn: &Connection, url: &str) -> StoreResult<Option<AppRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM sdk_apps WHERE url = ?1"),
            [url],
            row,
        )
        .optional()?)
}

pub(crate) fn by_app_id(conn: &Connection, app_id: &str) -> StoreResult<Option<AppRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM sdk_apps WHERE app_id = ?1"),
            [app_id],
            row,
        )
        .optional()?)
}

/// Adds an app by URL (no registration yet); an existing one is left as it is.
pub(crate) fn add(conn: &Connection, url: &str, origin: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "INSERT INTO sdk_apps (url, origin, added_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (url) DO NOTHING",
        params![url, origin, now],
    )?;
    Ok(n == 1)
}

/// What an accepted registration records.
pub(crate) struct Registered<'a> {
    pub url: &'a str,
    pub app_id: &'a str,
    pub sdk: Option<&'a str>,
    pub framework: Option<&'a str>,
    pub app_version: Option<&'a str>,
    pub checksum: &'a str,
    pub config: &'a str,
}

/// Records an accepted registration. The app is found by its URL; an app that moved to a
/// new URL keeps its row (found by its app id) and takes the new URL.
pub(crate) fn record_registration(
    conn: &Connection,
    r: &Registered<'_>,
    now: i64,
) -> StoreResult<()> {
    // The same app id under another URL: the app moved. Drop the placeholder row of the new
    // URL (if it was added by URL before it registered) and move the old row.
    if let Some(old) = by_app_id(conn, r.app_id)? {
        if old.url != r.url {
            conn.execute("DELETE FROM sdk_apps WHERE url = ?1", [r.url])?;
            conn.execute(
                "UPDATE sdk_apps SET url = ?1 WHERE app_id = ?2",
                params![r.url, r.app_id],
            )?;
        }
    }
    conn.execute(
        "INSERT INTO sdk_apps (url, app_id, origin, sdk, framework, app_version, checksum, config,
                               error, added_at, synced_at, checked_at)
         VALUES (?1, ?2, 'registered', ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?8, ?8)
         ON CONFLICT (url) DO UPDATE SET
            app_id = excluded.app_id, sdk = excluded.sdk, framework = excluded.framework,
            app_version = excluded.app_version, checksum = excluded.checksum,
            config = excluded.config, error = NULL, synced_at = excluded.synced_at,
            checked_at = excluded.checked_at",
        params![
            r.url,
            r.app_id,
            r.sdk,
            r.framework,
            r.app_version,
            r.checksum,
            r.config,
            now
        ],
    )?;
    Ok(())
}

/// Records the outcome of a poll or a sync attempt: `error` None means it answered.
pub(crate) fn record_check(
    conn: &Connection,
    url: &str,
    error: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE sdk_apps SET error = ?2, checked_at = ?3 WHERE url = ?1",
        params![url, error, now],
    )?;
    Ok(())
}

/// Removes an app; returns its row (its app id archives its functions).
pub(crate) fn remove(conn: &Connection, url: &str) -> StoreResult<Option<AppRow>> {
    let old = by_url(conn, url)?;
    conn.execute("DELETE FROM sdk_apps WHERE url = ?1", [url])?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        migrate(&c).unwrap();
        c
    }

    fn reg<'a>(url: &'a str, app_id: &'a str, checksum: &'a str) -> Registered<'a> {
        Registered {
            url,
            app_id,
            sdk: Some("js:v4.24.0"),
            framework: Some("express"),
            app_version: None,
            checksum,
            config: "{}",
        }
    }

    #[test]
    fn an_app_added_by_url_takes_its_registration() {
        let c = db();
        assert!(add(&c, "http://127.0.0.1:3000/api/inngest", "flag", 1).unwrap());
        assert!(!add(&c, "http://127.0.0.1:3000/api/inngest", "added", 2).unwrap());
        record_check(
            &c,
            "http://127.0.0.1:3000/api/inngest",
            Some("unreachable"),
            3,
        )
        .unwrap();
        record_registration(
            &c,
            &reg("http://127.0.0.1:3000/api/inngest", "shop", "a"),
            4,
        )
        .unwrap();
        let r = by_url(&c, "http://127.0.0.1:3000/api/inngest")
            .unwrap()
            .unwrap();
        assert_eq!(r.app_id.as_deref(), Some("shop"));
        assert_eq!(r.origin, "flag", "the origin says how it was first added");
        assert_eq!(r.error, None, "an accepted registration clears the error");
        assert_eq!((r.added_at, r.synced_at), (1, Some(4)));
    }

    #[test]
    fn an_app_that_moves_keeps_one_row() {
        let c = db();
        record_registration(
            &c,
            &reg("http://127.0.0.1:3000/api/inngest", "shop", "a"),
            1,
        )
        .unwrap();
        add(&c, "http://127.0.0.1:4000/api/inngest", "added", 2).unwrap();
        record_registration(
            &c,
            &reg("http://127.0.0.1:4000/api/inngest", "shop", "b"),
            3,
        )
        .unwrap();
        let rows = all(&c).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].url, "http://127.0.0.1:4000/api/inngest");
        assert_eq!(rows[0].checksum.as_deref(), Some("b"));
        assert_eq!(rows[0].added_at, 1);
    }

    #[test]
    fn removing_returns_the_app() {
        let c = db();
        record_registration(&c, &reg("http://a/api/inngest", "a", "x"), 1).unwrap();
        let gone = remove(&c, "http://a/api/inngest").unwrap().unwrap();
        assert_eq!(gone.app_id.as_deref(), Some("a"));
        assert!(all(&c).unwrap().is_empty());
        assert!(remove(&c, "http://a/api/inngest").unwrap().is_none());
    }
}
