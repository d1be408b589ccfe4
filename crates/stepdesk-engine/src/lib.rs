//! Stepdesk's engine: a local, durable, Inngest-compatible function runner.
//!
//! - [`store`]: the SQLite file, with a group-committing writer and pooled readers.
//! - [`event`]: the event shape and its validation; [`ingest`](crate) turns events into runs.
//! - [`function`]: functions written in Rust and the registry that matches triggers. Sources
//!   (SDK apps) add, replace and archive their functions while the engine runs
//!   ([`Engine::sync_functions`]).
//! - [`step`]: the step API (`run`, `sleep`, `wait_for_event`, `invoke`, `send_event`), and
//!   the driver API for handlers whose steps execute elsewhere (`Step::memo`,
//!   `Step::record_run`, ...).
//! - [`external`]: a function's body executed once against a memo kept elsewhere (an Inngest
//!   server driving Stepdesk's serve endpoint): [`Function::execute_once`].
//! - the executor replays function bodies and persists each step before moving on;
//!   the scheduler fires crons exactly once per scheduled time.
//! - [`admin`]: the admin API used by the HTTP routes and the desktop window alike.

pub mod admin;
pub mod backoff;
pub mod console;
pub mod cron;
pub mod error;
pub mod event;
mod executor;
pub mod expr;
pub mod external;
pub mod feed;
pub mod function;
mod ingest;
pub mod model;
mod progress;
mod scheduler;
pub mod search;
pub mod secrets;
pub mod step;
pub mod store;
pub mod time;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::AdminApi;
pub use backoff::Backoff;
pub use error::{Error, ErrorBody};
pub use event::{Event, EventError, NewEvent};
pub use expr::{Expr, ExprError, Var, Vars};
pub use external::{
    ExternalCall, ExternalError, ExternalMemo, ExternalOutcome, NewStep, NewStepKind, Retry,
};
pub use function::{ArchivedFunction, ConfigError, Function, Registry, SyncReport, Trigger};
pub use model::{RunStatus, StepKind, StepStatus, TriggerKind};
pub use step::{Ctx, Invoke, RecordedStep, Step, StepState, WaitForEvent};
pub use store::{Durability, Store, StoreError};

/// How to run an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub backoff: Backoff,
    pub durability: Durability,
    /// Most runs executing at once (suspended runs hold nothing).
    pub max_concurrent_runs: usize,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            backoff: Backoff::Table,
            durability: Durability::Full,
            max_concurrent_runs: 256,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        database_path(&self.data_dir)
    }
}

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("stepdesk.db")
}

/// The data directory: `$STEPDESK_DATA_DIR`, else `$XDG_DATA_HOME/stepdesk`, else
/// `~/.local/share/stepdesk`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STEPDESK_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("stepdesk");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/stepdesk")
}

/// Who sent an event, as far as Stepdesk can tell. Gates use it to decide what an event may
/// carry: an event that hands Stepdesk a secret (a Readwise `apiKey`) must come from a sender
/// who proved it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Proved its right: the admin token, the configured event key, or Stepdesk's own code
    /// (admin API, functions, the CLI through the admin routes).
    Trusted,
    /// Anyone who can reach the event API while no event key is configured (dev mode, as
    /// `inngest dev` accepts any key): other local processes, other OS accounts, web pages.
    Anonymous,
}

/// What a gate knows about an event besides the event itself.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Set for an admin invoke of that function (the event is then
    /// `inngest/function.invoked`, carrying the payload in `data`).
    pub invoked_function: Option<String>,
    pub sender: Sender,
}

/// A side effect outside the database that a gate wants once the whole request is admitted
/// (saving a token to the keychain, say). Effects run in order, after every event of the
/// request passed every gate and before anything is stored, so a request refused as a whole
/// has no side effect. An effect returns how to undo it, which runs if a later effect or the
/// commit fails: a request that is not stored leaves nothing behind.
pub type GateEffect = function::BoxFuture<Result<Option<GateUndo>, GateError>>;

/// Undoes a [`GateEffect`] (puts back the previous token, say).
pub type GateUndo = function::BoxFuture<()>;

/// A database change a gate wants together with the event (a user's token status): it runs
/// in the same transaction as the event, so both are stored or neither is.
pub type GateWrite = Box<dyn FnOnce(&rusqlite::Connection) -> Result<(), StoreError> + Send>;

/// An event a gate let through, as it will be stored, and what else to do with it.
pub struct Admitted {
    pub event: NewEvent,
    pub effect: Option<GateEffect>,
    pub write: Option<GateWrite>,
}

impl Admitted {
    pub fn new(event: NewEvent) -> Admitted {
        Admitted {
            event,
            effect: None,
            write: None,
        }
    }

    pub fn with_effect(mut self, effect: GateEffect) -> Admitted {
        self.effect = Some(effect);
        self
    }

    pub fn with_write(mut self, write: GateWrite) -> Admitted {
        self.write = Some(write);
        self
    }
}

/// What the gates asked for besides the events, gathered over a whole request.
#[derive(Default)]
pub(crate) struct GateWork {
    effects: Vec<GateEffect>,
    writes: Vec<GateWrite>,
}

/// Why admitted events were not committed.
pub(crate) enum CommitError {
    Gate(GateError),
    Store(StoreError),
}

/// Checks and rewrites events before they are stored: typed payloads are validated at
/// the door, and secrets a sender put in an event are taken out (and kept elsewhere).
///
/// Gates see events sent to the event API and the payload of admin invokes ("Test
/// function"); events that functions send with `step.send_event` are trusted.
///
/// `admit` must have no side effect: it only decides, and returns any side effect as
/// [`Admitted::effect`] or [`Admitted::write`], which the engine runs once the whole request
/// has been admitted.
pub trait EventGate: Send + Sync {
    /// Returns the event to store (and an effect to run before storing it), or the reason
    /// it is refused.
    fn admit(
        self: Arc<Self>,
        event: NewEvent,
        admission: Admission,
    ) -> function::BoxFuture<Result<Admitted, GateError>>;
}

/// Why a gate did not admit an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GateError {
    /// The event is wrong (a `400` for the sender).
    #[error("{0}")]
    Refused(String),
    /// The event needs a sender who proved its right (a `401`): the message says how.
    #[error("{0}")]
    Unauthorized(String),
    /// The gate could not decide now (keychain or database unavailable): try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// Why events were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// An event was refused (bad payload): nothing was stored.
    #[error(transparent)]
    Invalid(#[from] EventError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine was opened for inspection only: it stores no event.
    #[error("read-only inspection: events are not accepted")]
    ReadOnly,
    /// An event needs an authorized sender (see [`Sender`]); nothing was stored.
    #[error("{0}")]
    Unauthorized(String),
    /// A gate could not check an event now; nothing was stored. Try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// An [`EngineBuilder::functions_from_store`] hook failed.
    #[error("cannot re-create the synced functions: {0}")]
    Hook(StoreError),
}

/// Why [`Engine::sync_functions`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A function is wrong, or its id belongs to another source.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot store the functions: {0}")]
    Store(#[from] StoreError),
    /// The engine was opened for inspection only.
    #[error("read-only inspection: functions cannot be synced")]
    ReadOnly,
}

/// Functions of sources (an SDK app's id and its functions) that an
/// [`EngineBuilder::functions_from_store`] hook re-creates at start.
pub type SourceFunctions = Vec<(String, Vec<Function>)>;

/// A hook that re-creates sources' functions from the store at start.
type FunctionsHook =
    Box<dyn FnOnce(Store) -> function::BoxFuture<Result<SourceFunctions, StoreError>> + Send>;

pub(crate) struct EngineInner {
    pub(crate) store: Store,
    /// The registry in force. A sync swaps in a new one whole; readers take a snapshot per
    /// use ([`EngineInner::registry`]). A lock rather than a lock-free swap: it is held only
    /// to clone an `Arc` (and, by a sync, to replace it), syncs are rare, and it needs no
    /// dependency.
    registry: RwLock<Arc<Registry>>,
    /// Bumped on each sync, so the cron scheduler reschedules.
    pub(crate) registry_changed: watch::Sender<u64>,
    /// One sync at a time, so each starts from the registry the previous one left.
    sync_lock: tokio::sync::Mutex<()>,
    pub(crate) dispatcher: Arc<executor::Dispatcher>,
    pub(crate) config: EngineConfig,
    pub(crate) gates: Vec<Arc<dyn EventGate>>,
    /// This start's row in `boots`.
    pub(crate) boot_id: i64,
    /// Opened with [`EngineBuilder::inspect`]: nothing runs, events are refused.
    pub(crate) inspecting: bool,
    pub(crate) feed: feed::Feed,
    pub(crate) stats: console::StatsCache,
    shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl EngineInner {
    pub(crate) fn new(
        store: Store,
        registry: Arc<Registry>,
        dispatcher: Arc<executor::Dispatcher>,
        config: EngineConfig,
        gates: Vec<Arc<dyn EventGate>>,
        boot_id: i64,
        inspecting: bool,
    ) -> EngineInner {
        let (shutdown, _) = watch::channel(false);
        EngineInner {
            store,
            registry: RwLock::new(registry),
            registry_changed: watch::channel(0).0,
            sync_lock: tokio::sync::Mutex::new(()),
            dispatcher,
            config,
            gates,
            boot_id,
            inspecting,
            feed: Default::default(),
            stats: Default::default(),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The registry in force now.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_registry(&self, registry: Arc<Registry>) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = registry;
        self.registry_changed.send_modify(|v| *v += 1);
    }
}

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl EngineConfig {
    /// Opens (creating if needed) this configuration's database.
    pub async fn open_store(&self) -> Result<Store, StoreError> {
        let path = self.database_path();
        let durability = self.durability;
        tokio::task::spawn_blocking(move || Store::open(&path, durability))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?
    }
}

/// Assembles an engine: functions, event gates, and optionally a store opened beforehand
/// (for functions that keep their own tables in the same database).
pub struct EngineBuilder {
    config: EngineConfig,
    functions: Vec<Function>,
    gates: Vec<Arc<dyn EventGate>>,
    store: Option<Store>,
    inspect: bool,
    hooks: Vec<FunctionsHook>,
}

impl EngineBuilder {
    pub fn functions(mut self, functions: impl IntoIterator<Item = Function>) -> Self {
        self.functions.extend(functions);
        self
    }

    /// Re-creates functions of sources (SDK apps) at start, before any run resumes (a run
    /// whose function is missing would fail): `hook` is called with the opened store, after
    /// the engine's migrations and before the dispatcher and the scheduler start, and
    /// returns functions grouped by source, registered as [`Engine::sync_functions`] would
    /// (a source's stored functions it does not return are archived). It may first create
    /// or upgrade its own tables, in a [`Store::write`] with
    /// [`store::migrate_component`]. An error stops the start. Hooks run in the order given.
    pub fn functions_from_store<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = Result<SourceFunctions, StoreError>> + Send + 'static,
    {
        self.hooks
            .push(Box::new(move |store| Box::pin(hook(store))));
        self
    }

    pub fn gate(mut self, gate: Arc<dyn EventGate>) -> Self {
        self.gates.push(gate);
        self
    }

    /// Opens the database for inspection only (`stepdesk inspect`, on a copy of someone's
    /// data directory): nothing executes (no dispatcher, no crons, no sweep, unfinished runs
    /// stay as they are), no boot is recorded, and events are refused
    /// ([`SendError::ReadOnly`]). The admin API's reads work as usual; the search index keeps
    /// catching up, so content search covers the whole copy.
    pub fn inspect(mut self) -> Self {
        self.inspect = true;
        self
    }

    /// Uses this store (opened with [`EngineConfig::open_store`]) instead of opening one.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Registers the functions, resumes every unfinished run and starts the dispatcher and
    /// the cron scheduler.
    pub async fn start(self) -> Result<Engine, StartError> {
        let EngineBuilder {
            config,
            functions,
            gates,
            store,
            inspect,
            hooks,
        } = self;
        // Stepdesk's own functions are checked before anything is opened.
        let mut registry = Registry::new(functions)?;
        let store = match store {
            Some(s) => s,
            None => config.open_store().await?,
        };
        let mut sources = Vec::new();
        for hook in hooks {
            for (source, functions) in hook(store.clone()).await.map_err(StartError::Hook)? {
                registry = registry.with_source(&source, functions)?.0;
                sources.push(source);
            }
        }
        let rows = function_rows(registry.all());
        if inspect {
            let archived = store.read(store::functions::archived).await?;
            let registry = Arc::new(registry.with_archived(archived));
            return Ok(Engine::inspecting(config, registry, store, gates));
        }
        let (boot, archived) = store
            .write(move |c| {
                let now = time::now_ms();
                store::functions::upsert_all(c, &rows, now)?;
                // A source's functions that its hook no longer re-creates are archived, as
                // a sync without them would.
                for source in &sources {
                    let keep: Vec<&str> = rows
                        .iter()
                        .filter(|r| r.source.as_deref() == Some(source.as_str()))
                        .map(|r| r.id.as_str())
                        .collect();
                    store::functions::archive_missing(c, source, &keep, now)?;
                }
                let archived = store::functions::archived(c)?;
                Ok((progress::record_boot(c, now)?, archived))
            })
            .await?;
        let registry = Arc::new(registry.with_archived(archived));
        if boot.interrupted > 0 {
            tracing::warn!(
                steps = boot.interrupted,
                previous_boot = ?boot.previous,
                "steps were executing when Stepdesk last stopped; they run again"
            );
        }
        let runnable = store.read(executor::runnable_runs).await?;
        tracing::info!(
            database = %store.path().display(),
            functions = registry.all().len(),
            resuming = runnable.len(),
            "engine started"
        );

        let dispatcher = Arc::new(executor::Dispatcher::default());
        dispatcher.wake_all(runnable);
        let inner = Arc::new(EngineInner::new(
            store,
            registry,
            dispatcher.clone(),
            config.clone(),
            gates,
            boot.id,
            false,
        ));
        let shutdown_rx = inner.shutdown.subscribe();
        let dispatch_task =
            tokio::spawn(dispatcher.run(inner.clone(), config.max_concurrent_runs.max(1)));
        let cron_task = tokio::spawn(scheduler::run(inner.clone(), shutdown_rx.clone()));
        let sweep_task = tokio::spawn(executor::sweep(inner.clone(), shutdown_rx.clone()));
        let search_task = tokio::spawn(search::run(inner.clone(), shutdown_rx));
        inner.tasks.lock().expect("tasks lock").extend([
            dispatch_task,
            cron_task,
            sweep_task,
            search_task,
        ]);
        Ok(Engine { inner })
    }
}

/// The `functions` rows of these functions.
fn function_rows<'a>(
    functions: impl IntoIterator<Item = &'a Arc<Function>>,
) -> Vec<store::functions::FunctionRow> {
    functions
        .into_iter()
        .map(|f| store::functions::FunctionRow {
            id: f.id.clone(),
            name: f.name.clone(),
            config: f.config_json().to_string(),
            source: f.source.clone(),
        })
        .collect()
}

/// Undoes gate effects, newest first.
async fn undo_all(undos: Vec<GateUndo>) {
    for undo in undos.into_iter().rev() {
        undo.await;
    }
}

/// The error for event `index` that a gate did not admit.
fn gate_refusal(index: usize, e: GateError) -> SendError {
    match e {
        GateError::Refused(reason) => EventError::Invalid { index, reason }.into(),
        GateError::Unauthorized(reason) => {
            SendError::Unauthorized(format!("event {index}: {reason}"))
        }
        GateError::Unavailable(reason) => {
            SendError::Unavailable(format!("event {index}: {reason}"))
        }
    }
}

impl Engine {
    /// An engine that only reads (see [`EngineBuilder::inspect`]).
    fn inspecting(
        config: EngineConfig,
        registry: Arc<Registry>,
        store: Store,
        gates: Vec<Arc<dyn EventGate>>,
    ) -> Engine {
        tracing::info!(
            database = %store.path().display(),
            "engine opened for inspection: nothing runs"
        );
        let inner = Arc::new(EngineInner::new(
            store,
            registry,
            Arc::new(executor::Dispatcher::default()),
            config,
            gates,
            0,
            true,
        ));
        let shutdown_rx = inner.shutdown.subscribe();
        let search_task = tokio::spawn(search::run(inner.clone(), shutdown_rx));
        inner.tasks.lock().expect("tasks lock").push(search_task);
        Engine { inner }
    }

    /// Whether the engine was opened for inspection only.
    pub fn is_inspecting(&self) -> bool {
        self.inner.inspecting
    }

    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            functions: Vec::new(),
            gates: Vec::new(),
            store: None,
            inspect: false,
            hooks: Vec::new(),
        }
    }

    /// Opens the store, registers the functions, resumes every unfinished run and starts
    /// the dispatcher and the cron scheduler.
    pub async fn start(
        config: EngineConfig,
        functions: Vec<Function>,
    ) -> Result<Engine, StartError> {
        Engine::builder(config).functions(functions).start().await
    }

    /// Passes an event through the gates; what else they ask for is added to `work`.
    pub(crate) async fn admit(
        &self,
        mut event: NewEvent,
        admission: &Admission,
        work: &mut GateWork,
    ) -> Result<NewEvent, GateError> {
        for gate in &self.inner.gates {
            let admitted = gate.clone().admit(event, admission.clone()).await?;
            event = admitted.event;
            work.effects.extend(admitted.effect);
            work.writes.extend(admitted.write);
        }
        Ok(event)
    }

    /// Runs the gates' effects, then commits the gates' writes and `f` in one transaction and
    /// hands the runs it made due to the dispatcher. If an effect or the commit fails, the
    /// effects already done are undone, newest first. All of it runs in a task of its own, so
    /// a caller that goes away (a dropped HTTP request) cannot stop it half-way.
    pub(crate) async fn commit_admitted<R: Send + 'static>(
        &self,
        work: GateWork,
        f: impl FnOnce(&rusqlite::Connection) -> Result<(R, Vec<ingest::Wake>), StoreError>
            + Send
            + 'static,
    ) -> Result<R, CommitError> {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut undos = Vec::new();
            for effect in work.effects {
                match effect.await {
                    Ok(undo) => undos.extend(undo),
                    Err(e) => {
                        undo_all(undos).await;
                        return Err(CommitError::Gate(e));
                    }
                }
            }
            let writes = work.writes;
            let committed = inner
                .store
                .write(move |c| {
                    for write in writes {
                        write(c)?;
                    }
                    f(c)
                })
                .await;
            match committed {
                Ok((result, wakes)) => {
                    inner.dispatcher.wake_all(wakes);
                    Ok(result)
                }
                Err(e) => {
                    undo_all(undos).await;
                    Err(CommitError::Store(e))
                }
            }
        });
        task.await
            .map_err(|e| CommitError::Store(StoreError::Other(format!("write task failed: {e}"))))?
    }

    /// Stores events sent by Stepdesk's own code, a [`Sender::Trusted`] sender: see
    /// [`Engine::send_events_from`].
    pub async fn send_events(&self, events: Vec<NewEvent>) -> Result<Vec<String>, SendError> {
        self.send_events_from(events, Sender::Trusted).await
    }

    /// Stores events (parsed with [`event::parse_events`]) once the gates admit them,
    /// starts the runs they trigger and resumes matching waits. Returns once everything is
    /// committed, with the events' internal ids.
    ///
    /// All or nothing: every event passes every gate before any gate's side effect runs, so
    /// a request with one refused event stores nothing and changes nothing else.
    pub async fn send_events_from(
        &self,
        events: Vec<NewEvent>,
        sender: Sender,
    ) -> Result<Vec<String>, SendError> {
        if self.inner.inspecting {
            return Err(SendError::ReadOnly);
        }
        let mut admitted = Vec::with_capacity(events.len());
        let mut work = GateWork::default();
        let admission = Admission {
            invoked_function: None,
            sender,
        };
        for (index, event) in events.into_iter().enumerate() {
            if self.inner.gates.is_empty() {
                admitted.push(event);
                continue;
            }
            match self.admit(event, &admission, &mut work).await {
                Ok(event) => admitted.push(event),
                Err(e) => return Err(gate_refusal(index, e)),
            }
        }
        let inner = self.inner.clone();
        self.commit_admitted(work, move |c| {
            let mut wakes = Vec::new();
            // The registry as of the commit, so that no run starts for a function that a
            // sync committed before has archived.
            let registry = inner.registry();
            let ids = ingest::ingest(c, &registry, admitted, time::now_ms(), &mut wakes)?;
            Ok((ids, wakes))
        })
        .await
        .map_err(|e| match e {
            // An effect that fails (the keychain went away) stops the request: nothing is
            // stored, and the effects before it are undone.
            CommitError::Gate(GateError::Refused(r)) => SendError::Invalid(EventError::Invalid {
                index: 0,
                reason: r,
            }),
            CommitError::Gate(GateError::Unauthorized(r)) => SendError::Unauthorized(r),
            CommitError::Gate(GateError::Unavailable(r)) => SendError::Unavailable(r),
            CommitError::Store(e) => SendError::Store(e),
        })
    }

    /// Commits `f` and hands the runs it made due to the dispatcher, in a task of its own:
    /// if the caller goes away (a dropped HTTP request), the committed runs still start.
    pub(crate) async fn write_and_wake<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<(R, Vec<ingest::Wake>), StoreError>
            + Send
            + 'static,
    ) -> Result<R, StoreError> {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let (result, wakes) = inner.store.write(f).await?;
            inner.dispatcher.wake_all(wakes);
            Ok::<_, StoreError>(result)
        });
        task.await
            .map_err(|e| StoreError::Other(format!("write task failed: {e}")))?
    }

    pub fn admin(&self) -> AdminApi {
        AdminApi::new(self.clone())
    }

    /// The registered functions now (a later sync does not change the snapshot returned).
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry()
    }

    /// Registers the functions of a source (an SDK app, by its id): they replace that
    /// source's previous functions at once (a reader sees all of the old set or all of the
    /// new one). Functions the source had and no longer has are archived: they match no
    /// event and no cron, their runs stay, and an unfinished run of one fails when it next
    /// executes (`FunctionNotFound`, saying it is archived). The crons of the new set are
    /// scheduled and those of archived functions stop; an unchanged cron keeps its schedule.
    ///
    /// Each function's `source` is set to `source`. A function id that another source (or
    /// Stepdesk's own functions) has is refused, and then nothing changes.
    pub async fn sync_functions(
        &self,
        source: &str,
        functions: Vec<Function>,
    ) -> Result<SyncReport, SyncError> {
        if self.inner.inspecting {
            return Err(SyncError::ReadOnly);
        }
        let _one_at_a_time = self.inner.sync_lock.lock().await;
        let (registry, report) = self.inner.registry().with_source(source, functions)?;
        let rows = function_rows(
            registry
                .all()
                .iter()
                .filter(|f| report.added.contains(&f.id) || report.updated.contains(&f.id)),
        );
        if report.changed {
            let (source, archived) = (source.to_string(), report.archived.clone());
            self.inner
                .store
                .write(move |c| {
                    let now = time::now_ms();
                    store::functions::upsert_all(c, &rows, now)?;
                    store::functions::archive(c, &source, &archived, now)
                })
                .await?;
        }
        self.inner.set_registry(Arc::new(registry));
        tracing::info!(
            source,
            added = ?report.added,
            updated = ?report.updated,
            archived = ?report.archived,
            "functions synced"
        );
        Ok(report)
    }

    /// Archives every function of a source (see [`Engine::sync_functions`]).
    pub async fn remove_source(&self, source: &str) -> Result<SyncReport, SyncError> {
        self.sync_functions(source, Vec::new()).await
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Executes a running run as soon as it can, even if it is not due yet: for drivers
    /// that learn of a step's result outside any execution of the run (a planned step that
    /// answered while the run waits on another branch of a race). The next execution
    /// records it, and the run goes on from it. Nothing is written (the result is only in
    /// the driver's memory anyway), and a failed step's retry is never run early.
    pub fn wake(&self, run_id: &str) {
        self.inner.dispatcher.force(run_id);
    }

    /// Which of `run_ids` have ended, or are unknown: runs for which no execution will come
    /// again. (A rerun is a new run, with its own id.) For drivers that keep state per run
    /// outside the store.
    pub async fn ended_runs(&self, run_ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.store()
            .read(move |c| {
                let mut ended = Vec::new();
                for id in run_ids {
                    if store::runs::status(c, &id)?.is_none_or(|s| s.is_finished()) {
                        ended.push(id);
                    }
                }
                Ok(ended)
            })
            .await
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Stops taking new work, lets executing runs finish their current step (up to
    /// `grace`), and closes the store. Unfinished runs resume on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.shutdown.send(true);
        self.inner.dispatcher.stop(grace).await;
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .expect("tasks lock")
            .drain(..)
            .collect();
        for t in tasks {
            t.abort();
        }
        // A clean end: the next start tells a restart from a crash by it.
        let boot_id = self.inner.boot_id;
        if self.inner.inspecting {
            let store = self.inner.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
            tracing::info!("inspection closed");
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .write(move |c| progress::record_shutdown(c, boot_id, time::now_ms()))
            .await
        {
            tracing::warn!(error = %e, "cannot record the shutdown");
        }
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("engine stopped");
    }
}
