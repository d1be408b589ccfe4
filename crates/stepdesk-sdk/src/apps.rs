//! The app registry: SDK apps known by URL, synced the way `inngest dev` syncs them.
//!
//! Stepdesk asks an app to sync with a `PUT` to its serve URL; the app answers by posting
//! its configuration to `POST /fn/register` (out-of-band sync), which [`Apps::register`]
//! validates, turns into engine functions (one source per app: a new sync replaces the
//! app's functions, and those it no longer lists are archived with their history) and
//! stores, so the functions exist again at the next start before their runs resume.
//! Every app is polled (`--poll-interval`, 5 s by default; only apps in error with
//! `--no-poll`), and its last error is kept and shown rather than swallowed.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use stepdesk_engine::{Engine, SourceFunctions, Store, StoreError};
use stepdesk_inngest::wire::{RegisterReply, RegisterRequest};
use tokio::sync::Notify;
use ts_rs::TS;

use crate::functions::{self, Env};
use crate::schema::{self, AppRow, Registered};
use crate::time::now_ms;

/// How Stepdesk finds and drives SDK apps.
#[derive(Debug, Clone)]
pub struct SdkConfig {
    /// Apps given with `-u/--sdk-url` (or `STEPDESK_SDK_URLS`).
    pub urls: Vec<String>,
    /// Look for apps on the usual local ports and paths (`stepdesk dev` only).
    pub discovery: bool,
    /// Poll every app (`false`: only apps whose last sync failed).
    pub poll: bool,
    pub poll_interval: Duration,
    /// With a signing key Stepdesk is a "cloud" server: it signs call requests and requires
    /// the key from apps; without, a "dev" server, like `inngest dev`.
    pub signing_key: Option<String>,
    pub signing_key_fallback: Option<String>,
}

impl Default for SdkConfig {
    fn default() -> Self {
        SdkConfig {
            urls: Vec::new(),
            discovery: false,
            poll: true,
            poll_interval: Duration::from_secs(5),
            signing_key: None,
            signing_key_fallback: None,
        }
    }
}

impl SdkConfig {
    /// The `X-Inngest-Server-Kind` Stepdesk announces.
    pub fn server_kind(&self) -> &'static str {
        if self.signing_key.is_some() {
            "cloud"
        } else {
            "dev"
        }
    }
}

/// An app as the console and the admin API show it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SdkApp {
    pub url: String,
    /// Its `appName`, once it has registered.
    pub app_id: Option<String>,
    /// How it was added: `flag` (-u), `discovered`, `added` (admin/console) or `registered`
    /// (it synced itself).
    pub origin: String,
    pub sdk: Option<String>,
    pub framework: Option<String>,
    pub app_version: Option<String>,
    /// Its functions' ids, as last registered.
    pub functions: Vec<String>,
    /// The last sync's or poll's error, in plain words; None when it answered.
    pub error: Option<String>,
    #[ts(type = "number")]
    pub added_at: i64,
    #[ts(type = "number | null")]
    pub synced_at: Option<i64>,
    #[ts(type = "number | null")]
    pub checked_at: Option<i64>,
}

impl SdkApp {
    fn from_row(r: AppRow) -> SdkApp {
        let functions = r
            .config
            .as_deref()
            .and_then(|c| serde_json::from_str::<RegisterRequest>(c).ok())
            .map(|req| req.functions.into_iter().map(|f| f.id).collect())
            .unwrap_or_default();
        SdkApp {
            url: r.url,
            app_id: r.app_id,
            origin: r.origin,
            sdk: r.sdk,
            framework: r.framework,
            app_version: r.app_version,
            functions,
            error: r.error,
            added_at: r.added_at,
            synced_at: r.synced_at,
            checked_at: r.checked_at,
        }
    }
}

/// Why a registration or an admin action on apps was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: 400 with this message.
    #[error("{0}")]
    Invalid(String),
    #[error("no app with URL {0}")]
    NotFound(String),
    #[error("the engine is not running")]
    NotReady,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a planned step's answer may wait for an execution of its run before the
/// registry asks the engine whether the run has ended (see [`Apps::drop_unclaimed`]).
pub const UNCLAIMED_AGE: Duration = Duration::from_secs(60);

/// The registry of SDK apps. Cheap to clone.
#[derive(Clone)]
pub struct Apps(Arc<Inner>);

struct Inner {
    store: Store,
    config: SdkConfig,
    env: Env,
    engine: OnceLock<Engine>,
    /// Runs the drivers ask to wake (see `FunctionDriver::wake`), until `attach`.
    wakes: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// One registration at a time: a poll's and an app's own may arrive together.
    registering: tokio::sync::Mutex<()>,
    /// The last refusal logged, so that an app polled again with the same problem does not
    /// log it every few seconds.
    last_refusal: std::sync::Mutex<Option<String>>,
    /// Wakes the poller (the registry stops).
    poke: Notify,
    stopping: std::sync::atomic::AtomicBool,
}

impl Apps {
    /// Opens the registry on the engine's store (its table is migrated here) and returns
    /// the functions of the apps registered before, by app, for the engine builder's
    /// `functions_from_store`: they must exist before the engine resumes their runs.
    pub async fn open(
        store: Store,
        config: SdkConfig,
    ) -> Result<(Apps, SourceFunctions), StoreError> {
        let urls = config.urls.clone();
        let rows = store
            .write(move |c| {
                schema::migrate(c)?;
                let now = now_ms();
                for url in &urls {
                    schema::add(c, url, "flag", now)?;
                }
                schema::all(c)
            })
            .await?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Other(format!("cannot create the HTTP client: {e}")))?;
        let (wake, wakes) = tokio::sync::mpsc::unbounded_channel();
        let env = Env {
            http,
            signing_key: config.signing_key.as_deref().map(Arc::from),
            live: Default::default(),
            offloaded: Default::default(),
            inflight: Default::default(),
            wake,
        };
        let mut functions = Vec::new();
        for row in rows {
            let (Some(app_id), Some(config)) = (&row.app_id, &row.config) else {
                continue;
            };
            let built = serde_json::from_str::<RegisterRequest>(config)
                .map_err(|e| e.to_string())
                .and_then(|req| functions::build_all(app_id, &req, &env));
            match built {
                Ok(fs) => functions.push((app_id.clone(), fs)),
                Err(e) => {
                    // The stored registration no longer builds (e.g. a newer build refuses
                    // what an older one accepted): the app shows the error; its next sync
                    // replaces it.
                    tracing::warn!(app = %app_id, error = %e, "cannot register a stored app's functions");
                    let (url, msg) = (row.url.clone(), format!("stored configuration: {e}"));
                    store
                        .write(move |c| schema::record_check(c, &url, Some(&msg), now_ms()))
                        .await?;
                }
            }
        }
        let apps = Apps(Arc::new(Inner {
            store,
            config,
            env,
            engine: OnceLock::new(),
            wakes: std::sync::Mutex::new(Some(wakes)),
            registering: tokio::sync::Mutex::new(()),
            last_refusal: Default::default(),
            poke: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }));
        Ok((apps, functions))
    }

    /// Connects the started engine and starts polling.
    pub fn attach(&self, engine: Engine) {
        if self.0.engine.set(engine).is_err() {
            return;
        }
        let apps = self.clone();
        tokio::spawn(async move { apps.poll_loop().await });
        let apps = self.clone();
        tokio::spawn(async move { apps.sweep_loop().await });
        let wakes = self
            .0
            .wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(mut wakes), Some(engine)) = (wakes, self.0.engine.get().cloned()) {
            tokio::spawn(async move {
                while let Some(run_id) = wakes.recv().await {
                    engine.wake(&run_id);
                }
            });
        }
    }

    /// Drops the answers of planned steps that have waited `age` or more for an execution
    /// of a run that has ended (cancelled, failed, or finished without them). Returns how
    /// many runs' answers were dropped. The registry does this every [`UNCLAIMED_AGE`].
    pub async fn drop_unclaimed(&self, age: Duration) -> Result<usize, AppError> {
        let waiting = self.0.env.inflight.unclaimed(age);
        if waiting.is_empty() {
            return Ok(0);
        }
        let ended = self.engine()?.ended_runs(waiting).await?;
        for run_id in &ended {
            self.0.env.inflight.forget(run_id);
        }
        Ok(ended.len())
    }

    /// Runs with planned steps in flight or answers not yet reported (for tests and
    /// diagnostics).
    pub fn runs_with_planned_steps(&self) -> usize {
        self.0.env.inflight.len()
    }

    async fn sweep_loop(&self) {
        let mut tick = tokio::time::interval(UNCLAIMED_AGE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.0.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            match self.drop_unclaimed(UNCLAIMED_AGE).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(
                        runs = n,
                        "dropped planned steps' answers of runs that had ended"
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the runs with planned steps' answers")
                }
            }
        }
    }

    /// Stops polling (the engine is shutting down).
    pub fn stop(&self) {
        self.0
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.0.poke.notify_one();
    }

    pub fn config(&self) -> &SdkConfig {
        &self.0.config
    }

    fn engine(&self) -> Result<&Engine, AppError> {
        self.0.engine.get().ok_or(AppError::NotReady)
    }

    /// `POST /fn/register`: an app's configuration. `expected_kind` is the app's
    /// `X-Inngest-Expected-Server-Kind`, if it sent one.
    pub async fn register(
        &self,
        body: &[u8],
        expected_kind: Option<&str>,
    ) -> Result<RegisterReply, AppError> {
        let result = self.register_inner(body, expected_kind).await;
        if let Err(e) = &result {
            // The app may not show it (the JS SDK prints nothing): the log says why its
            // functions are missing, once per distinct problem.
            let message = e.to_string();
            let url = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("url")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let key = format!("{url} {message}");
            let mut last = self
                .0
                .last_refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.as_deref() != Some(key.as_str()) {
                tracing::warn!(url = %url, error = %message, "an app's registration was refused; none of its functions were synced");
                *last = Some(key);
            }
        }
        result
    }

    async fn register_inner(
        &self,
        body: &[u8],
        expected_kind: Option<&str>,
    ) -> Result<RegisterReply, AppError> {
        let kind = self.0.config.server_kind();
        if let Some(expected) = expected_kind.filter(|e| !e.is_empty()) {
            if !expected.eq_ignore_ascii_case(kind) {
                return Err(AppError::Invalid(format!(
                    "the app expects a `{expected}` server, and Stepdesk is running as `{kind}` \
                     ({}): start the app in {} mode or Stepdesk {}",
                    if kind == "cloud" {
                        "a signing key is set"
                    } else {
                        "no signing key"
                    },
                    kind,
                    if kind == "cloud" {
                        "without --signing-key"
                    } else {
                        "with --signing-key"
                    },
                )));
            }
        }
        let req = RegisterRequest::parse(body)
            .map_err(|e| AppError::Invalid(format!("the registration is not valid: {e}")))?;
        req.validate()
            .map_err(|errors| AppError::Invalid(errors.join("; ")))?;
        let app_id = req.app_name.clone();
        let checksum = hex::encode(Sha256::digest(body));
        let engine = self.engine()?.clone();
        let _one = self.0.registering.lock().await;
        let url = req.url.clone();
        // Read through the writer, which has every committed registration (a pooled reader
        // could still be on a snapshot from before the previous one).
        let current = {
            let url = url.clone();
            self.0.store.write(move |c| schema::by_url(c, &url)).await?
        };
        let unchanged = current.as_ref().is_some_and(|r| {
            r.checksum.as_deref() == Some(checksum.as_str()) && r.app_id.as_deref() == Some(&app_id)
        });
        let sync_id = ulid::Ulid::new().to_string();
        if !unchanged {
            let fns =
                functions::build_all(&app_id, &req, &self.0.env).map_err(AppError::Invalid)?;
            let report = engine
                .sync_functions(&app_id, fns)
                .await
                .map_err(|e| AppError::Invalid(e.to_string()))?;
            tracing::info!(app = %app_id, url = %url, added = ?report.added, updated = ?report.updated, archived = ?report.archived, "app synced");
            let unenforced: Vec<String> = req
                .functions
                .iter()
                .filter_map(|f| {
                    let options = f.unenforced();
                    (!options.is_empty()).then(|| format!("{} ({})", f.id, options.join(", ")))
                })
                .collect();
            if !unenforced.is_empty() {
                tracing::warn!(app = %app_id, functions = %unenforced.join("; "), "these options are accepted but not enforced by Stepdesk yet: the functions run as if they were not set");
            }
        }
        let config = String::from_utf8_lossy(body).into_owned();
        let sdk = req.sdk.clone();
        let framework = req.framework.clone();
        let app_version = req.app_version.clone();
        let id = app_id.clone();
        self.0
            .store
            .write(move |c| {
                schema::record_registration(
                    c,
                    &Registered {
                        url: &url,
                        app_id: &id,
                        sdk: sdk.as_deref(),
                        framework: framework.as_deref(),
                        app_version: app_version.as_deref(),
                        checksum: &checksum,
                        config: &config,
                    },
                    now_ms(),
                )
            })
            .await?;
        Ok(RegisterReply {
            ok: true,
            modified: !unchanged,
            app_id,
            sync_id,
        })
    }

    /// Every app, by URL.
    pub async fn list(&self) -> Result<Vec<SdkApp>, AppError> {
        let rows = self.0.store.read(schema::all).await?;
        Ok(rows.into_iter().map(SdkApp::from_row).collect())
    }

    async fn get(&self, url: &str) -> Result<SdkApp, AppError> {
        let u = url.to_string();
        self.0
            .store
            .read(move |c| schema::by_url(c, &u))
            .await?
            .map(SdkApp::from_row)
            .ok_or_else(|| AppError::NotFound(url.to_string()))
    }

    /// Adds an app by URL and asks it to sync; the app is kept (with its error) even when
    /// it cannot be reached yet, and is polled like the others.
    pub async fn add(&self, url: &str) -> Result<SdkApp, AppError> {
        let url = normalize_url(url)?;
        let u = url.clone();
        self.0
            .store
            .write(move |c| schema::add(c, &u, "added", now_ms()))
            .await?;
        self.sync(&url).await
    }

    /// Asks one app to sync now, and returns it as it is afterwards.
    pub async fn sync(&self, url: &str) -> Result<SdkApp, AppError> {
        self.get(url).await?;
        self.ping(url).await?;
        self.get(url).await
    }

    /// Removes an app; its functions are archived (their runs stay).
    pub async fn remove(&self, url: &str) -> Result<SdkApp, AppError> {
        let info = self.get(url).await?;
        let engine = self.engine()?.clone();
        let _one = self.0.registering.lock().await;
        let u = url.to_string();
        let row = self.0.store.write(move |c| schema::remove(c, &u)).await?;
        if let Some(app_id) = row.and_then(|r| r.app_id) {
            if let Err(e) = engine.remove_source(&app_id).await {
                tracing::warn!(app = %app_id, error = %e, "cannot archive a removed app's functions");
            }
            tracing::info!(app = %app_id, url, "app removed; its functions are archived");
        }
        Ok(info)
    }

    /// `PUT`s the app's URL, which makes it register; records what went wrong, if anything.
    async fn ping(&self, url: &str) -> Result<(), AppError> {
        let error = self.put(url).await.err();
        if let Some(e) = &error {
            tracing::debug!(url, error = %e, "app sync failed");
        }
        let u = url.to_string();
        self.0
            .store
            .write(move |c| schema::record_check(c, &u, error.as_deref(), now_ms()))
            .await?;
        Ok(())
    }

    async fn put(&self, url: &str) -> Result<(), String> {
        let res = self
            .0
            .env
            .http
            .put(url)
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .header("x-inngest-server-kind", self.0.config.server_kind())
            .body("{}")
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", crate::root_cause(&e)))?;
        let status = res.status();
        let is_sdk = res.headers().contains_key("x-inngest-sdk");
        let text = res.text().await.unwrap_or_default();
        if !is_sdk {
            return Err(format!(
                "not an Inngest SDK: the URL answered {status} without an X-Inngest-SDK header"
            ));
        }
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| text.chars().take(300).collect());
            return Err(format!("the app could not sync ({status}): {message}"));
        }
        Ok(())
    }

    async fn poll_loop(&self) {
        let mut tick = tokio::time::interval(self.0.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut discovered_once = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.0.poke.notified() => {}
            }
            if self.0.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let rows = match self.0.store.read(schema::all).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the apps");
                    continue;
                }
            };
            if self.0.config.discovery && rows.is_empty() && !discovered_once {
                discovered_once = crate::discovery::discover(self).await;
                continue;
            }
            let poll: Vec<String> = rows
                .into_iter()
                .filter(|r| self.0.config.poll || r.error.is_some() || r.synced_at.is_none())
                .map(|r| r.url)
                .collect();
            let mut seen = HashSet::new();
            for url in poll {
                if seen.insert(url.clone()) {
                    if let Err(e) = self.ping(&url).await {
                        tracing::warn!(url, error = %e, "cannot record an app's poll");
                    }
                }
            }
        }
    }

    /// An app found by discovery: added and synced like one given with `-u`.
    pub(crate) async fn add_discovered(&self, url: &str) -> Result<(), AppError> {
        let u = url.to_string();
        self.0
            .store
            .write(move |c| schema::add(c, &u, "discovered", now_ms()))
            .await?;
        self.ping(url).await
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.0.env.http
    }

    /// The executions whose call request is in flight (JS v4 checkpoints go there).
    pub fn live(&self) -> &crate::checkpoint::LiveRuns {
        &self.0.env.live
    }

    /// Run state served to SDKs whose call request left it out (`use_api`).
    pub fn offloaded(&self) -> &crate::offload::Offloaded {
        &self.0.env.offloaded
    }
}

/// An app URL as given by a person: `http(s)://` only; a bare `host:port` gets `http://`
/// and the usual `/api/inngest` path.
pub fn normalize_url(url: &str) -> Result<String, AppError> {
    let url = url.trim();
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let mut parsed = reqwest::Url::parse(&with_scheme)
        .map_err(|e| AppError::Invalid(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AppError::Invalid(format!(
            "`{url}`: an app URL is http:// or https://"
        )));
    }
    if parsed.host_str().is_none() {
        return Err(AppError::Invalid(format!("`{url}` has no host")));
    }
    if parsed.path() == "/" || parsed.path().is_empty() {
        parsed.set_path("/api/inngest");
    }
    Ok(parsed.to_string())
}
