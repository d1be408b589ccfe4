//! The SQLite store.
//!
//! One file, WAL mode. All writes go through a single writer thread that batches whatever
//! is queued into one transaction (group commit): a burst of a thousand events costs one
//! fsync, not a thousand. A write is acknowledged to its caller only after the transaction
//! that holds it has committed. Reads use their own connections from a small pool and never
//! wait for the writer.

mod migrate;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use migrate::SCHEMA_VERSION;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the commit failed: {0}")]
    Commit(String),
    #[error("the store is closed")]
    Closed,
    #[error("{0}")]
    Other(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Other(format!("json: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How the writer makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL on every commit (`synchronous=FULL`): survives power loss. Default.
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power loss.
    Normal,
}

type Reply = Box<dyn FnOnce(Result<(), Arc<String>>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
}

/// Largest number of queued writes folded into one transaction.
const MAX_GROUP: usize = 4096;

impl Store {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            },
        )?;
        conn.pragma_update(None, "cache_size", -32_000)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        migrate::migrate(&mut conn)?;
        conn.set_prepared_statement_cache_capacity(64);

        let (tx, rx) = mpsc::channel::<WriteJob>();
        let handle = thread::Builder::new()
            .name("stepdesk-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;

        Ok(Store {
            inner: Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn enqueue<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<oneshot::Receiver<StoreResult<R>>> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), Arc<String>>| {
                let outcome = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e.to_string())),
                };
                let _ = tx.send(outcome);
            })
        });
        let guard = self.inner.writer.lock().expect("writer lock poisoned");
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Runs `f` inside the writer's next transaction and waits until that transaction has
    /// committed. If `f` fails, its changes are rolled back and nothing else is affected.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let rx = self.enqueue(f)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Blocking form of [`Store::write`], for callers outside the async runtime.
    pub fn write_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let rx = self.enqueue(f)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a pooled read-only connection, off the async runtime.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Other(format!("read task failed: {e}")))?
    }

    /// Blocking form of [`Store::read`].
    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let conn = self
            .inner
            .readers
            .lock()
            .expect("reader pool poisoned")
            .pop();
        let conn = match conn {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool poisoned");
        if pool.len() < 16 {
            pool.push(conn);
        }
        result
    }

    fn open_reader(&self) -> StoreResult<Connection> {
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "cache_size", -16_000)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Stops the writer after it has committed everything queued so far.
    pub fn close(&self) {
        self.inner
            .writer
            .lock()
            .expect("writer lock poisoned")
            .take();
        if let Some(handle) = self
            .inner
            .writer_thread
            .lock()
            .expect("writer lock poisoned")
            .take()
        {
            let _ = handle.join();
        }
        self.inner
            .readers
            .lock()
            .expect("reader pool poisoned")
            .clear();
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(r) => {
            conn.execute_batch("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<WriteJob>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "cannot begin a write transaction");
            let err = Arc::new(e.to_string());
            first(&conn)(Err(err));
            continue;
        }
        replies.push(first(&conn));
        while replies.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => replies.push(job(&conn)),
                Err(_) => break,
            }
        }
        let committed = match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, jobs = replies.len(), "commit failed; rolling back");
                let _ = conn.execute_batch("ROLLBACK");
                Err(Arc::new(e.to_string()))
            }
        };
        for reply in replies.drain(..) {
            reply(committed.clone());
        }
    }
    // Leave a tidy file behind: fold the WAL back into the database.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_visible_to_reads_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Full).unwrap();
        store
            .write(|c| {
                c.execute(
                    "INSERT INTO functions (id, name, config, updated_at) VALUES ('f', 'F', '{}', 1)",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM functions", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_failing_write_does_not_undo_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Full).unwrap();
        let mut handles = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO functions (id, name, config, updated_at) VALUES (?1, 'F', '{}', 1)",
                        [format!("f{i}")],
                    )?;
                    if i % 2 == 0 {
                        return Err(StoreError::Other("refused".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 25);
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM functions", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 25, "only the successful writes are stored");
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path, Durability::Full).unwrap();
            store
                .write_blocking(|c| {
                    c.execute(
                        "INSERT INTO functions (id, name, config, updated_at) VALUES ('f', 'F', '{}', 1)",
                        [],
                    )?;
                    Ok(())
                })
                .unwrap();
            store.close();
        }
        let store = Store::open(&path, Durability::Full).unwrap();
        let (n, v): (i64, i64) = store
            .read_blocking(|c| {
                let n = c.query_row("SELECT count(*) FROM functions", [], |r| r.get(0))?;
                let v = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                Ok((n, v))
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(v, SCHEMA_VERSION);
    }
}
