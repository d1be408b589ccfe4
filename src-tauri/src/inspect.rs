//! `stepdesk inspect DIR`: open a copy of a data directory for reading only, for example one
//! a user sent with a support ticket, or this machine's own while it runs.
//!
//! The database is copied into a private temporary directory first, so the original is never
//! written (not even a WAL checkpoint or a schema migration). The copy is opened by an engine
//! in inspect mode: no run executes, no cron fires, no event is accepted, no boot is recorded;
//! the admin API refuses every write command; the keychain is not used at all. The console
//! works as usual for reading (runs, steps, events, users, daily syncs, search).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::cli::{EngineArgs, ServeArgs};

#[derive(Args)]
pub struct InspectArgs {
    /// The data directory to inspect (it holds `stepdesk.db`).
    pub dir: PathBuf,
    /// Port for the console in a browser (0: any free port, so it never clashes with a
    /// Stepdesk running on 8288).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Serve the console in a browser only, even with a display.
    #[arg(long)]
    pub no_window: bool,
}

/// Copies `source`'s database into `dest` (a directory) without writing to `source`.
///
/// With no Stepdesk running on `source`, the database and its WAL are copied as files; the
/// copy is then a database whose WAL is replayed on open (like after a crash). With one
/// running, SQLite itself writes a consistent copy (`VACUUM INTO`) through a read-only
/// connection, while the other process goes on writing.
pub fn copy_database(source: &Path, dest: &Path) -> anyhow::Result<()> {
    let db = stepdesk_engine::database_path(source);
    if !db.is_file() {
        bail!(
            "no Stepdesk database in {} (expected {})",
            source.display(),
            db.display()
        );
    }
    let target = stepdesk_engine::database_path(dest);
    if crate::datadir::is_locked(source) {
        let conn = rusqlite::Connection::open_with_flags(
            &db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {} read-only", db.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute("VACUUM INTO ?1", [target.to_string_lossy()])
            .with_context(|| format!("cannot copy {}", db.display()))?;
    } else {
        std::fs::copy(&db, &target).with_context(|| format!("cannot copy {}", db.display()))?;
        let wal = source.join("stepdesk.db-wal");
        if wal.is_file() {
            std::fs::copy(&wal, dest.join("stepdesk.db-wal"))
                .with_context(|| format!("cannot copy {}", wal.display()))?;
        }
    }
    Ok(())
}

pub fn run(args: InspectArgs, readwise: crate::readwise::ReadwiseArgs) -> anyhow::Result<()> {
    let source = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("no data directory at {}", args.dir.display()))?;
    // A private temporary directory (0700), removed when the inspection ends.
    let copy = tempfile::Builder::new()
        .prefix("stepdesk-inspect-")
        .tempdir()
        .context("cannot create a temporary directory for the copy")?;
    copy_database(&source, copy.path())?;
    eprintln!(
        "stepdesk: inspecting a copy of {} (read-only: nothing runs, nothing is changed)",
        source.display()
    );
    let serve = ServeArgs {
        host: "127.0.0.1".into(),
        port: args.port,
        allow_host: Vec::new(),
        event_key: None,
        retry_interval: None,
        serve_inngest: false,
        // Nothing runs in an inspection: no apps are polled or driven.
        sdk_url: Vec::new(),
        no_poll: true,
        poll_interval: 5,
        signing_key: None,
        signing_key_fallback: None,
        discovery: false,
        engine: EngineArgs::at(copy.path().to_path_buf()),
        readwise,
        inspect: Some(source),
    };
    let result = if crate::cli::has_display() && !args.no_window {
        crate::desktop::run(serve)
    } else {
        crate::server::run_headless(serve)
    };
    drop(copy);
    result
}
