//! Search by content: which runs hold some text in their event, output or error, or in a
//! step's output or error.
//!
//! SQLite's FTS5 (built into the bundled SQLite) keeps a word index. It is fed by a
//! background indexer rather than inside the writes that change runs: tokenizing a run's
//! JSON in the writer's transaction would slow every event and step. Instead a trigger
//! notes the changed run in `search_queue` (one small row, in the same transaction, so
//! nothing is missed even across a crash), and the indexer takes the queue in batches once
//! those writes have committed, yielding to other writes while they queue up. A run is
//! searchable a moment after it changed (at most [`POLL`] when the writer is idle, longer
//! during a burst); [`SearchResult::pending`] says how many runs wait to be indexed.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::admin::{AdminApi, AdminError, AdminResult, RunSummary};
use crate::store::{search, StoreResult};
use crate::EngineInner;

/// How often the indexer looks at the queue when it is empty.
pub const POLL: Duration = Duration::from_millis(200);
/// Runs indexed per write transaction: small enough not to hold up other writes.
const BATCH: usize = 256;
/// Text indexed per run at most (a 3 MiB event is found by its first 256 KiB).
const MAX_DOC_BYTES: usize = 256 * 1024;
/// Most results [`AdminApi::search_runs`] returns.
pub const SEARCH_MAX: u32 = 200;

/// Runs that hold the searched words, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct SearchResult {
    pub runs: Vec<RunSummary>,
    /// Runs changed but not indexed yet (not searchable for a moment).
    pub pending: u64,
}

/// Appends `text` to `doc` within the size cap, at a character boundary.
fn push_capped(doc: &mut String, text: &str) {
    let room = MAX_DOC_BYTES.saturating_sub(doc.len());
    if room == 0 {
        return;
    }
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    doc.push_str(&text[..end]);
    doc.push('\n');
}

/// Indexes up to [`BATCH`] queued runs; returns how many it took from the queue.
pub(crate) fn index_batch(c: &Connection) -> StoreResult<usize> {
    let queued = search::queued(c, BATCH)?;
    for run_id in &queued {
        search::dequeue(c, run_id)?;
        let Some((rowid, texts)) = search::texts(c, run_id)? else {
            continue;
        };
        let mut doc = String::new();
        for text in &texts {
            push_capped(&mut doc, text);
        }
        search::replace(c, rowid, &doc)?;
    }
    Ok(queued.len())
}

/// The indexer: drains the queue batch by batch, then waits [`POLL`] for more.
pub(crate) async fn run(engine: Arc<EngineInner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let took = engine.store.write(index_batch).await;
        let wait = match took {
            // More to index: go on at once if the writer is idle, else yield to the writes
            // waiting (a burst of events or steps) and take one batch per POLL meanwhile.
            Ok(n) if n == BATCH && engine.store.backlog() == 0 => Duration::ZERO,
            Ok(n) if n == BATCH => POLL,
            Ok(_) => POLL,
            Err(e) => {
                tracing::warn!(error = %e, "search indexing failed; will retry");
                POLL * 5
            }
        };
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The FTS5 query for what a person typed: each word (letters and digits, as the index
/// splits them) must appear, the last one possibly as the start of a longer word. Words
/// are quoted, so nothing typed is read as FTS5 syntax.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let last = words.len().checked_sub(1)?;
    Some(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last {
                    format!("\"{w}\"*")
                } else {
                    format!("\"{w}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl AdminApi {
    /// Runs whose event payload, output or error, or any step's output or error, holds the
    /// words of `q` (case-insensitive, accents ignored; the last word may be a prefix),
    /// newest first. `limit`: 1 to [`SEARCH_MAX`].
    pub async fn search_runs(&self, q: &str, limit: u32) -> AdminResult<SearchResult> {
        if !(1..=SEARCH_MAX).contains(&limit) {
            return Err(AdminError::BadRequest(format!(
                "`limit` must be between 1 and {SEARCH_MAX}, not {limit}"
            )));
        }
        let Some(query) = fts_query(q) else {
            return Err(AdminError::BadRequest(
                "search for at least one word (letters or digits)".into(),
            ));
        };
        let this = self.clone();
        Ok(self
            .engine
            .inner
            .store
            .read(move |c| {
                let runs = search::matching(c, &query, limit, |r| this.summary(r))?;
                let pending = search::pending(c)?;
                Ok(SearchResult { runs, pending })
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_quoted_words_with_a_prefix_last() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("\"*"), None);
        assert_eq!(fts_query("ord_00123"), Some("\"ord\" \"00123\"*".into()));
        assert_eq!(
            fts_query("upstream 503 OR x"),
            Some("\"upstream\" \"503\" \"OR\" \"x\"*".into())
        );
    }

    #[test]
    fn documents_are_capped_at_a_character_boundary() {
        let mut doc = String::new();
        push_capped(&mut doc, &"é".repeat(MAX_DOC_BYTES));
        assert!(doc.len() <= MAX_DOC_BYTES + 1);
        push_capped(&mut doc, "more");
        assert!(!doc.contains("more"));
    }
}

#[cfg(test)]
mod store_tests {
    use crate::store::{Durability, Store};

    #[test]
    fn a_batch_indexes_queued_runs_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        let n = store
            .write_blocking(|c| {
                c.execute_batch(
                    "INSERT INTO runs (id, function_id, status, trigger_kind, queued_at, output)
                     VALUES ('r1', 'f', 'Completed', 'event', 1, '{\"word\":\"Zanzibar\"}');
                     UPDATE runs SET status = 'Completed' WHERE id = 'r1';",
                )?;
                let n = super::index_batch(c)?;
                // Again, after a change: replaced, not added.
                c.execute("UPDATE runs SET status = 'Failed' WHERE id = 'r1'", [])?;
                super::index_batch(c)?;
                Ok(n)
            })
            .unwrap();
        assert_eq!(n, 1);
        let hits: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM search WHERE search MATCH 'zanzibar'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(hits, 1);
        store.close();
    }
}

#[cfg(test)]
mod trigger_tests {
    use crate::store::{Durability, Store};

    /// The steps upsert carries its own conflict clause, which would override an
    /// `INSERT OR IGNORE` in the queue's trigger and fail the write.
    #[test]
    fn queueing_a_run_twice_never_fails_the_write_that_changed_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        store
            .write_blocking(|c| {
                c.execute_batch(
                    "INSERT INTO runs (id, function_id, status, trigger_kind, queued_at)
                     VALUES ('r1', 'f', 'Running', 'event', 1);",
                )?;
                for output in ["1", "2"] {
                    c.execute(
                        "INSERT INTO steps (run_id, hash, step_id, kind, status, seq, output)
                         VALUES ('r1', 'h', 's', 'run', 'completed', 0, ?1)
                         ON CONFLICT (run_id, hash) DO UPDATE SET output = excluded.output",
                        [output],
                    )?;
                }
                c.execute("UPDATE runs SET status = 'Completed' WHERE id = 'r1'", [])?;
                Ok(())
            })
            .unwrap();
        let queued: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row("SELECT count(*) FROM search_queue", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(queued, 1);
        store.close();
    }
}
