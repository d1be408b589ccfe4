//! The live change feed: after each committed transaction, which tables changed, with the
//! ids of the changed rows where the engine knows how to name them (runs, events; a step,
//! its attempts and a cron fire by their run's id; a component's table once it called
//! [`Store::name_changed_rows`](crate::Store::name_changed_rows)).
//!
//! Collection starts with the first [`Engine::subscribe`]: until then the writer's update
//! hook returns on a flag. Changes of transactions committed within [`COALESCE`] of each
//! other go out as one notice, so a burst of a thousand commits is a handful of notices.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::store::changes::Committed;
use crate::store::Store;
use crate::time::now_ms;
use crate::Engine;

/// Changes committed within this time of the first are published together.
pub const COALESCE: Duration = Duration::from_millis(10);
/// Most ids listed per table in one notice; past it `truncated` is set.
pub const MAX_IDS: usize = 1_000;
/// Notices a slow subscriber may fall behind before it misses some (and is told so by
/// `broadcast`'s `Lagged`: it should then refetch what it shows).
const BACKLOG: usize = 256;

/// What changed in one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Change {
    /// The SQLite table: `runs`, `steps`, `events`, `cron_fires`, a component's
    /// (`readwise_users` ...).
    pub table: String,
    /// The changed rows' ids (for `steps`, `step_attempts`, `interruptions` and cron
    /// fires: their runs' ids), sorted, without repeats; empty when the table's rows have
    /// no known name or were deleted.
    pub ids: Vec<String>,
    /// More than [`MAX_IDS`] rows changed: `ids` lists some of them.
    pub truncated: bool,
}

/// One notice of the feed: what committed transactions changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Changes {
    /// When it was published (ms since the epoch).
    pub at: i64,
    pub changes: Vec<Change>,
}

impl Changes {
    /// The change to `table`, if any.
    pub fn table(&self, table: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.table == table)
    }
}

pub(crate) struct Feed {
    tx: broadcast::Sender<Changes>,
    started: Mutex<bool>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            tx: broadcast::channel(BACKLOG).0,
            started: Mutex::new(false),
        }
    }
}

/// Reads the ids of changed rows, grouped by table.
fn name_rows(store: &Store, rows: Vec<Committed>) -> Result<Vec<Change>, crate::StoreError> {
    let mut by_table: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (table, rowid) in rows.into_iter().flatten() {
        by_table.entry(table).or_default().insert(rowid);
    }
    let sql: Vec<(String, Option<String>)> = by_table
        .keys()
        .map(|t| (t.clone(), store.change_id_sql(t)))
        .collect();
    store.read_blocking(move |c| {
        let mut out = Vec::new();
        for (table, sql) in sql {
            let rowids = &by_table[&table];
            let mut ids = BTreeSet::new();
            if let Some(sql) = sql {
                let mut stmt = c.prepare_cached(&sql)?;
                for rowid in rowids.iter().take(MAX_IDS * 4) {
                    let mut rows = stmt.query([rowid])?;
                    if let Some(r) = rows.next()? {
                        ids.insert(r.get::<_, String>(0)?);
                    }
                    if ids.len() > MAX_IDS {
                        break;
                    }
                }
            }
            let truncated = ids.len() > MAX_IDS || rowids.len() > MAX_IDS * 4;
            out.push(Change {
                table,
                ids: ids.into_iter().take(MAX_IDS).collect(),
                truncated,
            });
        }
        Ok(out)
    })
}

/// Publishes what the writer reports, coalesced, until the engine stops.
async fn publish(
    store: Store,
    mut raw: tokio::sync::mpsc::UnboundedReceiver<Committed>,
    tx: broadcast::Sender<Changes>,
) {
    let tap = store.change_tap().clone();
    while let Some(first) = raw.recv().await {
        let mut batch = vec![first];
        tokio::time::sleep(COALESCE).await;
        while let Ok(more) = raw.try_recv() {
            batch.push(more);
        }
        if tx.receiver_count() == 0 {
            // Nobody listens any more: stop collecting until someone subscribes.
            tap.pause();
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || name_rows(&s, batch)).await {
            Ok(Ok(changes)) => {
                let _ = tx.send(Changes {
                    at: now_ms(),
                    changes,
                });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot name the changed rows"),
            Err(e) => tracing::warn!(error = %e, "the change feed's reader failed"),
        }
    }
}

impl Engine {
    /// The live change feed: a notice after each committed transaction (coalesced over
    /// [`COALESCE`]) naming what changed. Nothing is published for work that was rolled
    /// back. A receiver that falls more than a few hundred notices behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Changes> {
        let feed = &self.inner.feed;
        let rx = feed.tx.subscribe();
        let mut started = feed.started.lock().expect("feed lock");
        if !*started {
            *started = true;
            // Listening starts now, before this returns: a write committed right after
            // `subscribe` is seen.
            let raw = self.inner.store.change_tap().listen();
            let task = tokio::spawn(publish(self.inner.store.clone(), raw, feed.tx.clone()));
            self.inner.tasks.lock().expect("tasks lock").push(task);
        } else {
            self.inner.store.change_tap().resume();
        }
        rx
    }
}
