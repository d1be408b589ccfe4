//! The SQLite store.
//!
//! One file, WAL mode. All writes go through a single writer thread that batches whatever
//! is queued into one transaction (group commit): a burst of a thousand events costs one
//! fsync, not a thousand. A write is acknowledged to its caller only after the transaction
//! that holds it has committed. Reads use their own connections from a small pool and never
//! wait for the writer.

//! Each table's SQL is in its own module: [`runs`], [`steps`] (with `step_attempts`),
//! [`events`], [`pauses`], [`singletons`] (with `run_keys`), [`crons`], [`boots`] (with
//! `interruptions`), [`functions`], [`search`] (the search index).
pub(crate) mod boots;
pub(crate) mod changes;
pub(crate) mod crons;
pub(crate) mod events;
pub(crate) mod functions;
mod migrate;
pub(crate) mod pauses;
pub(crate) mod runs;
pub(crate) mod search;
pub(crate) mod singletons;
pub(crate) mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use migrate::{migrate_component, Migration, SCHEMA_VERSION};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the commit failed: {0}")]
    Commit(String),
    /// The write's transaction could not begin (e.g. the database stayed locked): the write
    /// did not run and nothing of it was stored.
    #[error("cannot begin a write transaction, nothing was written: {0}")]
    Begin(String),
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

/// The smallest ULID of a millisecond: ids are ULIDs of their creation time, so a time
/// bound on a table keyed by ULID is a bound on its key.
pub(crate) fn ulid_floor(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

/// How the writer makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL on every commit (`synchronous=FULL`): survives power loss. Default.
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power loss.
    Normal,
}

/// Tells a job's caller how its write ended: `Ok` once the group's transaction committed.
type Reply = Box<dyn FnOnce(Result<(), Arc<String>>) + Send>;

/// A queued write. The writer calls it with the connection, inside the group's open
/// transaction, or with `None` when that transaction could not begin: the job then does not
/// run and only hands back its reply (which will be told it failed).
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> JobDone + Send>;

/// What a job hands back to the writer.
struct JobDone {
    reply: Reply,
    /// The job's savepoint could not be released or rolled back, so the transaction holds
    /// changes that can be neither kept nor reported as failed on their own: the writer
    /// must roll back the whole group.
    poisoned: bool,
    /// The job failed and its savepoint was rolled back: its changes are not to be published.
    failed: bool,
}

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
    changes: Arc<changes::ChangeTap>,
    /// For the change feed: SQL that reads the id of a changed row of a component's table
    /// from its rowid (see [`Store::name_changed_rows`]).
    change_ids: Mutex<std::collections::HashMap<String, String>>,
    /// Writes queued and not yet taken by the writer.
    backlog: Arc<AtomicUsize>,
}

/// Largest number of queued writes folded into one transaction.
const MAX_GROUP: usize = 4096;

/// How long a connection waits for another process's lock (the CLI writing the same file)
/// before its statement fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the database's directory (0700) and file (0600) if they are missing, and narrows
/// the mode of an existing database file (and its `-wal`/`-shm`) that others can read,
/// left by an older Stepdesk. An existing directory is left as it is: it may be one the
/// user chose and shares; the files in it are what must stay private.
#[cfg(unix)]
fn create_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Recursive: every directory it creates gets 0700; existing ones are untouched.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // Never truncate: the file may be an existing database.
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", path.display())))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::info!(file = %file.display(), old_mode = format!("{mode:o}"), "made the database file private (0600)")
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot make the database file private (0600)")
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> StoreResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// A directory it creates for the file gets mode 0700 and a file it creates mode 0600
    /// (before SQLite opens it, so that SQLite gives `-wal` and `-shm` the same mode): the
    /// database holds events, run outputs and user ids that other OS accounts must not read.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Store> {
        Store::open_with(path, durability, BUSY_TIMEOUT)
    }

    /// [`Store::open`] with a short busy timeout for the writer, so that tests can make a
    /// locked database fail a write quickly.
    #[cfg(test)]
    pub(crate) fn open_with_busy_timeout(
        path: &Path,
        durability: Durability,
        busy_timeout: Duration,
    ) -> StoreResult<Store> {
        Store::open_with(path, durability, busy_timeout)
    }

    fn open_with(
        path: &Path,
        durability: Durability,
        busy_timeout: Duration,
    ) -> StoreResult<Store> {
        create_private(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
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

        let tap = Arc::new(changes::ChangeTap::default());
        tap.install(&conn);
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let writer_tap = tap.clone();
        let backlog = Arc::new(AtomicUsize::new(0));
        let writer_backlog = backlog.clone();
        let handle = thread::Builder::new()
            .name("stepdesk-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_tap, &writer_backlog))
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;

        Ok(Store {
            inner: Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                readers: Mutex::new(Vec::new()),
                changes: tap,
                change_ids: Mutex::new(Default::default()),
                backlog,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes waiting for the writer: background work (the search indexer) yields to them.
    pub(crate) fn backlog(&self) -> usize {
        self.inner.backlog.load(Ordering::SeqCst)
    }

    pub(crate) fn change_tap(&self) -> &Arc<changes::ChangeTap> {
        &self.inner.changes
    }

    /// Names the changed rows of a component's table in the change feed: `sql` reads a
    /// row's id from its rowid (`?1`), e.g.
    /// `SELECT id FROM readwise_users WHERE rowid = ?1`. Without it, a change to the table
    /// is published with no ids.
    pub fn name_changed_rows(&self, table: &str, sql: &str) {
        self.inner
            .change_ids
            .lock()
            .expect("change ids lock")
            .insert(table.to_string(), sql.to_string());
    }

    pub(crate) fn change_id_sql(&self, table: &str) -> Option<String> {
        changes::id_sql(
            table,
            &self.inner.change_ids.lock().expect("change ids lock"),
        )
    }

    fn enqueue<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<oneshot::Receiver<StoreResult<R>>> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn: Option<&Connection>| {
            let (ran, poisoned) = match conn {
                Some(conn) => {
                    let (result, poisoned) = in_savepoint(conn, f);
                    (Some(result), poisoned)
                }
                None => (None, false),
            };
            let failed = matches!(ran, Some(Err(_)));
            let reply: Reply = Box::new(move |outcome: Result<(), Arc<String>>| {
                let result = match (outcome, ran) {
                    (Ok(()), Some(result)) => result,
                    // The job's own failure says more than the group's.
                    (Err(_), Some(Err(own))) => Err(own),
                    (Err(e), None) => Err(StoreError::Begin(e.to_string())),
                    (Err(e), Some(Ok(_))) => Err(StoreError::Commit(e.to_string())),
                    (Ok(()), None) => Err(StoreError::Begin("the write did not run".into())),
                };
                let _ = tx.send(result);
            });
            JobDone {
                reply,
                poisoned,
                failed,
            }
        });
        let guard = self.inner.writer.lock().expect("writer lock poisoned");
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        self.inner.backlog.fetch_add(1, Ordering::SeqCst);
        if sender.send(job).is_err() {
            self.inner.backlog.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Closed);
        }
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

    /// Queues `f` for the writer's next transaction without waiting for it: for records
    /// whose loss in a crash is harmless (a step marked as executing). Writes are applied in
    /// the order they are queued, so a later [`Store::write`] lands after it.
    pub(crate) fn write_detached(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
    ) {
        if let Err(e) = self.enqueue(f) {
            tracing::debug!(error = %e, "a detached write was not queued");
        }
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
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

/// Runs `f` in a savepoint of the open transaction, so that its failure undoes only its own
/// changes. Also says whether the savepoint could not be closed (released after success,
/// rolled back after failure): the transaction is then in a state no reply can describe.
fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> (StoreResult<R>, bool) {
    if let Err(e) = conn.execute_batch("SAVEPOINT job") {
        // Nothing of the job ran; the group is fine unless the transaction itself is gone
        // (the writer checks that after every job).
        return (Err(e.into()), false);
    }
    // A panicking job (a bug in a function's write) must not take the writer thread down
    // with it: every later write would fail. It becomes that job's error, rolled back below.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).unwrap_or_else(
        |panic| {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            tracing::error!(panic = detail, "a write panicked; it is rolled back");
            Err(StoreError::Other(format!("the write failed: {detail}")))
        },
    );
    match result {
        Ok(r) => match conn.execute_batch("RELEASE job") {
            Ok(()) => (Ok(r), false),
            Err(e) => {
                tracing::error!(error = %e, "cannot release a write's savepoint");
                (
                    Err(StoreError::Commit(format!(
                        "cannot release the write's savepoint: {e}"
                    ))),
                    true,
                )
            }
        },
        Err(e) => match conn.execute_batch("ROLLBACK TO job; RELEASE job") {
            Ok(()) => (Err(e), false),
            Err(rollback) => {
                tracing::error!(error = %rollback, "cannot roll back a failed write's savepoint");
                (Err(e), true)
            }
        },
    }
}

/// Rolls back the open transaction, if any.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rollback failed");
        }
    }
}

/// The writer: one transaction per group of queued jobs, committed before any job of the
/// group is acknowledged. "Acknowledged ⇔ committed" holds both ways:
/// - a job whose transaction did not begin does not run (run outside a transaction, each of
///   its statements would commit on its own while the caller is told it failed);
/// - a job whose savepoint cannot be closed, or after which the transaction has ended
///   (SQLite rolls back by itself on some errors, e.g. a full disk), rolls back the whole
///   group, and every job in it is told it failed; jobs not yet run go to the next group.
fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<WriteJob>,
    tap: &changes::ChangeTap,
    backlog: &AtomicUsize,
) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        backlog.fetch_sub(1, Ordering::SeqCst);
        // A failed COMMIT whose ROLLBACK failed too may have left a transaction open: a
        // BEGIN inside it would fail forever.
        rollback(&conn);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Refuse this job, unrun. Jobs queued behind it each get a BEGIN of their own:
            // the lock may be free by then, and each BEGIN waits only while it is held.
            tracing::error!(error = %e, "cannot begin a write transaction; the write was refused");
            (first(None).reply)(Err(Arc::new(e.to_string())));
            continue;
        }
        let mut poisoned = false;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let mark = tap.mark();
            let done = job(Some(&conn));
            if done.failed {
                tap.rollback_to(mark);
            }
            replies.push(done.reply);
            if done.poisoned || conn.is_autocommit() {
                poisoned = true;
                break;
            }
            if replies.len() < MAX_GROUP {
                next = rx.try_recv().ok();
                if next.is_some() {
                    backlog.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let committed = if poisoned {
            tracing::error!(
                jobs = replies.len(),
                "a write left its transaction in an unknown state; rolling back the whole group"
            );
            rollback(&conn);
            Err(Arc::new(
                "a write in the same transaction left it in an unknown state; all of it was \
                 rolled back"
                    .to_string(),
            ))
        } else {
            match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, jobs = replies.len(), "commit failed; rolling back");
                    rollback(&conn);
                    Err(Arc::new(e.to_string()))
                }
            }
        };
        tap.end(committed.is_ok());
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    fn insert(c: &Connection, id: &str) -> StoreResult<()> {
        c.execute(
            "INSERT INTO functions (id, name, config, updated_at) VALUES (?1, 'F', '{}', 1)",
            [id],
        )?;
        Ok(())
    }

    fn stored_ids(store: &Store) -> Vec<String> {
        store
            .read_blocking(|c| {
                let mut stmt = c.prepare("SELECT id FROM functions ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .unwrap()
    }

    /// Waits (up to ten seconds, never forever) until `flag` is set.
    fn wait_for(flag: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }

    type TestJob = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

    /// Runs `jobs` in one group, after a first job that inserts `gate`: the gate job holds
    /// the writer until every other job is queued, so that they share its transaction.
    fn run_group(store: &Store, jobs: Vec<TestJob>) -> (StoreResult<()>, Vec<StoreResult<()>>) {
        let started = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let gate = store
            .enqueue({
                let (started, go) = (started.clone(), go.clone());
                move |c| {
                    started.store(true, Ordering::SeqCst);
                    wait_for(&go);
                    insert(c, "gate")
                }
            })
            .unwrap();
        wait_for(&started);
        let receivers: Vec<_> = jobs
            .into_iter()
            .map(|job| store.enqueue(job).unwrap())
            .collect();
        go.store(true, Ordering::SeqCst);
        let gate = gate.blocking_recv().unwrap();
        let results = receivers
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap())
            .collect();
        (gate, results)
    }

    #[test]
    fn a_write_whose_transaction_cannot_begin_does_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store =
            Store::open_with_busy_timeout(&path, Durability::Normal, Duration::from_millis(50))
                .unwrap();
        // Another process (the CLI, say) holds the write lock for longer than the writer
        // waits, so the writer's BEGIN fails.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let ran = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let mut rx = store
            .enqueue({
                let (ran, released) = (ran.clone(), released.clone());
                move |c| {
                    ran.store(true, Ordering::SeqCst);
                    // Were it run without its transaction, it would write once the lock is
                    // free, and that write would commit on its own.
                    wait_for(&released);
                    insert(c, "f")
                }
            })
            .unwrap();
        // Until the write is answered, or (the fault) its job runs anyway.
        let deadline = Instant::now() + Duration::from_secs(10);
        let answered = loop {
            match rx.try_recv() {
                Ok(result) => break Some(result),
                Err(_) if ran.load(Ordering::SeqCst) || Instant::now() > deadline => break None,
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        };
        other.execute_batch("ROLLBACK").unwrap();
        released.store(true, Ordering::SeqCst);
        let result = match answered {
            Some(result) => result,
            None => rx.blocking_recv().unwrap(),
        };

        assert!(stored_ids(&store).is_empty(), "nothing was written");
        assert!(
            !ran.load(Ordering::SeqCst),
            "the job ran without a transaction"
        );
        assert!(
            matches!(&result, Err(StoreError::Begin(m)) if m.contains("locked")),
            "the caller is told: {result:?}"
        );

        // Once the lock is free, writes go through again.
        store.write_blocking(|c| insert(c, "g")).unwrap();
        assert_eq!(stored_ids(&store), ["g"]);
    }

    #[test]
    fn a_savepoint_that_cannot_be_released_rolls_back_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        let (gate, results) = run_group(
            &store,
            vec![
                // Releases its savepoint itself: the writer's RELEASE then fails, with the
                // write folded into the transaction where it cannot be undone alone.
                Box::new(|c| {
                    insert(c, "released")?;
                    c.execute_batch("RELEASE job")?;
                    Ok(())
                }),
                Box::new(|c| insert(c, "after")),
            ],
        );
        assert_eq!(
            stored_ids(&store),
            ["after"],
            "the group was rolled back; the next job ran in a group of its own"
        );
        assert!(
            gate.is_err(),
            "the gate's write was rolled back with the group"
        );
        assert!(results[0].is_err(), "{:?}", results[0]);
        results[1].as_ref().unwrap();
    }

    #[test]
    fn a_failed_write_whose_savepoint_cannot_be_rolled_back_rolls_back_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        let (gate, results) = run_group(
            &store,
            vec![
                // Fails after closing its savepoint itself: ROLLBACK TO then fails, and its
                // insert would be committed with the group.
                Box::new(|c| {
                    insert(c, "failed")?;
                    c.execute_batch("RELEASE job")?;
                    Err(StoreError::Other("refused".into()))
                }),
                Box::new(|c| insert(c, "after")),
            ],
        );
        assert_eq!(stored_ids(&store), ["after"], "the group was rolled back");
        assert!(gate.is_err());
        assert!(
            matches!(&results[0], Err(StoreError::Other(m)) if m == "refused"),
            "a failed write keeps its own error: {:?}",
            results[0]
        );
        results[1].as_ref().unwrap();
    }

    #[test]
    fn a_transaction_that_ends_under_a_write_fails_the_group_and_no_later_write_runs_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        let (gate, results) = run_group(
            &store,
            vec![
                // As SQLite does by itself on some errors (a full disk, an I/O error): the
                // whole transaction is rolled back under the writer.
                Box::new(|c| {
                    c.execute_batch("ROLLBACK")?;
                    Ok(())
                }),
                // Run next in the same "group", it would autocommit and then be told the
                // group's COMMIT failed.
                Box::new(|c| insert(c, "after")),
            ],
        );
        assert!(gate.is_err(), "the gate's write was rolled back");
        assert!(results[0].is_err());
        assert!(
            results[1].is_ok(),
            "the next write ran in a transaction of its own and committed: {:?}",
            results[1]
        );
        assert_eq!(stored_ids(&store), ["after"]);
        store.write_blocking(|c| insert(c, "later")).unwrap();
        assert_eq!(stored_ids(&store), ["after", "later"]);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn creates_a_private_directory_and_private_database_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/data/s.db");
        let store = Store::open(&path, Durability::Normal).unwrap();
        store.write_blocking(|c| insert(c, "f")).unwrap();
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        assert_eq!(mode(&dir.path().join("new/data")), 0o700);
        for file in ["s.db", "s.db-wal", "s.db-shm"] {
            assert_eq!(
                mode(&dir.path().join("new/data").join(file)),
                0o600,
                "{file}"
            );
        }
        store.close();
    }

    #[cfg(unix)]
    #[test]
    fn narrows_a_database_file_others_could_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path, Durability::Normal).unwrap();
            store.write_blocking(|c| insert(c, "f")).unwrap();
            store.close();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path, Durability::Normal).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(stored_ids(&store), ["f"]);
        store.close();
    }

    #[test]
    fn the_backlog_counts_writes_the_writer_has_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Normal).unwrap();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        // The first write holds the writer until the test lets it go.
        let first = store
            .enqueue(move |_c| {
                held.recv().ok();
                Ok(())
            })
            .unwrap();
        let started = Instant::now();
        while store.backlog() != 0 && started.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        let queued: Vec<_> = (0..3)
            .map(|i| store.enqueue(move |c| insert(c, &format!("f{i}"))).unwrap())
            .collect();
        assert_eq!(store.backlog(), 3);
        hold.send(()).unwrap();
        first.blocking_recv().unwrap().unwrap();
        for q in queued {
            q.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(store.backlog(), 0);
        store.close();
    }

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
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Durability::Full).unwrap();
        let err = store
            .write(|c| -> StoreResult<()> {
                c.execute(
                    "INSERT INTO functions (id, name, config, updated_at) VALUES ('p', 'F', '{}', 1)",
                    [],
                )?;
                panic!("a bug in a write");
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("a bug in a write"), "{err}");
        store
            .write(|c| {
                c.execute(
                    "INSERT INTO functions (id, name, config, updated_at) VALUES ('ok', 'F', '{}', 1)",
                    [],
                )?;
                Ok(())
            })
            .await
            .expect("the writer still works");
        let ids: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT id FROM functions ORDER BY id")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(
            ids,
            vec!["ok".to_string()],
            "the panicking write left nothing"
        );
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
