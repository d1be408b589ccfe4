//! The live change feed's source: which rows each committed transaction changed.
//!
//! SQLite's update hook on the writer connection reports every row a statement inserts,
//! updates or deletes, with its table and rowid, as it happens, inside the transaction.
//! The tap collects them per transaction, forgets those of a write whose savepoint was
//! rolled back (and all of them when the whole transaction is), and hands what is left to
//! the engine's publisher only once COMMIT has succeeded. While nobody subscribes, the
//! hook returns at once on an atomic flag: no collection, no allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::hooks::Action;
use rusqlite::Connection;
use tokio::sync::mpsc;

/// Rows changed by one committed transaction: (table, rowid), in order, with repeats.
pub(crate) type Committed = Vec<(String, i64)>;

#[derive(Default)]
pub(crate) struct ChangeTap {
    /// Someone listens: collect.
    active: AtomicBool,
    /// Changes of the open transaction (written on the writer thread only).
    pending: Mutex<Vec<(String, i64)>>,
    out: Mutex<Option<mpsc::UnboundedSender<Committed>>>,
}

impl ChangeTap {
    /// Starts collecting and returns the receiver of committed changes. One receiver at a
    /// time (the engine's publisher); a second call replaces the first.
    pub(crate) fn listen(&self) -> mpsc::UnboundedReceiver<Committed> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.out.lock().expect("change tap lock") = Some(tx);
        self.active.store(true, Ordering::SeqCst);
        rx
    }

    /// Stops collecting (nobody listens any more).
    pub(crate) fn pause(&self) {
        self.active.store(false, Ordering::SeqCst);
    }

    pub(crate) fn resume(&self) {
        if self.out.lock().expect("change tap lock").is_some() {
            self.active.store(true, Ordering::SeqCst);
        }
    }

    /// Installs the hook on the writer connection.
    pub(crate) fn install(self: &Arc<Self>, conn: &Connection) {
        let tap = self.clone();
        conn.update_hook(Some(
            move |_action: Action, _db: &str, table: &str, rowid: i64| {
                if !tap.active.load(Ordering::Relaxed) || skipped(table) {
                    return;
                }
                tap.pending
                    .lock()
                    .expect("change tap lock")
                    .push((table.to_string(), rowid));
            },
        ));
    }

    /// Where the open transaction's changes stand now (before a job runs).
    pub(crate) fn mark(&self) -> usize {
        self.pending.lock().expect("change tap lock").len()
    }

    /// Forgets the changes made since `mark` (the job's savepoint was rolled back).
    pub(crate) fn rollback_to(&self, mark: usize) {
        self.pending.lock().expect("change tap lock").truncate(mark);
    }

    /// The transaction ended: publish its changes if it committed, else forget them.
    pub(crate) fn end(&self, committed: bool) {
        let changes = std::mem::take(&mut *self.pending.lock().expect("change tap lock"));
        if !committed || changes.is_empty() {
            return;
        }
        let out = self.out.lock().expect("change tap lock");
        if let Some(tx) = out.as_ref() {
            if tx.send(changes).is_err() {
                self.active.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Tables whose changes are of no interest to anyone watching: SQLite's own, and the
/// search index's (written by its indexer all the time).
fn skipped(table: &str) -> bool {
    table.starts_with("sqlite_") || table.starts_with("search")
}

/// How to name a changed row of a table: the SQL that reads its id from its rowid.
pub(crate) fn id_sql(table: &str, custom: &HashMap<String, String>) -> Option<String> {
    let sql = match table {
        "runs" => "SELECT id FROM runs WHERE rowid = ?1",
        "events" => "SELECT internal_id FROM events WHERE rowid = ?1",
        // A step, its attempts, its interruptions and a run's cron fire: the run's id.
        "steps" => "SELECT run_id FROM steps WHERE rowid = ?1",
        "step_attempts" => "SELECT run_id FROM step_attempts WHERE rowid = ?1",
        "interruptions" => "SELECT run_id FROM interruptions WHERE rowid = ?1",
        "cron_fires" => "SELECT run_id FROM cron_fires WHERE rowid = ?1",
        "cron_manual_fires" => "SELECT run_id FROM cron_manual_fires WHERE rowid = ?1",
        "functions" => "SELECT id FROM functions WHERE rowid = ?1",
        _ => return custom.get(table).cloned(),
    };
    Some(sql.to_string())
}
