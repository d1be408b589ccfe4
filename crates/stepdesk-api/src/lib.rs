//! Stepdesk's admin API: every admin command declared once, with its name, kind (read or
//! write), request type, response type and REST route, in [`commands`]. Transports are thin
//! adapters over [`Api::call`]:
//!
//! - the HTTP server (`stepdesk-server`) mounts one REST route per command from
//!   [`COMMANDS`], and `POST /api/rpc/{command}` for the console in a browser;
//! - the desktop window's single Tauri command, `admin(method, params)`, calls [`Api::call`].
//!
//! Nothing here knows HTTP or Tauri. The console's TypeScript types are generated from the
//! same declarations ([`typescript`]); a test fails when the checked-in file drifts.
//!
//! Support actions (resync a user, set a token, replay the daily sync, ...) are recorded in
//! an audit trail ([`audit`]) with their time and origin (window, browser or CLI). Secrets
//! never reach it.
//!
//! A read-only API ([`ApiBuilder::read_only`], `stepdesk inspect DIR`) refuses every write
//! command with [`ApiError::ReadOnly`].

pub mod audit;
mod commands;
pub mod keys;
pub mod types;

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepdesk_engine::admin::AdminError;
use stepdesk_engine::{AdminApi, Engine};
use stepdesk_readwise_sync::ReadwiseAdmin;

pub use commands::{query_params, typescript, COMMANDS};
pub use keys::{EventKey, KeyStore};

/// Who made a call: recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The desktop window.
    Window,
    /// The console in a browser.
    Browser,
    /// The `stepdesk` command line (through the running server).
    Cli,
    /// Another HTTP client (curl, a script).
    Http,
}

/// What a transport knows about a call.
#[derive(Debug, Clone, Copy)]
pub struct CallCtx {
    pub origin: Origin,
}

/// Whether a command only reads, or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Read,
    Write,
}

/// One admin command, as transports see it.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The name the window's `admin` command and the console use (`snake_case`).
    pub name: &'static str,
    pub kind: Kind,
    /// Whether each call is recorded in the audit trail (support actions).
    pub audited: bool,
    /// The REST route: HTTP method and path, with `{param}` segments taken from the params.
    pub method: &'static str,
    pub path: &'static str,
    /// The HTTP status of a success (202 for what starts work in the background).
    pub status: u16,
    /// What it does, for documentation.
    pub doc: &'static str,
}

impl CommandSpec {
    pub fn find(name: &str) -> Option<&'static CommandSpec> {
        COMMANDS.iter().find(|c| c.name == name)
    }

    /// The `{param}` names in the path.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

/// Why a call failed. Every transport shows it as `{error, status}`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("read-only inspection: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error stands for (the window reports it too).
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::ReadOnly(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The error as the console receives it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": self.to_string(), "status": self.status()})
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => ApiError::NotFound(m),
            AdminError::BadRequest(m) => ApiError::BadRequest(m),
            AdminError::Conflict(m) => ApiError::Conflict(m),
            AdminError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<stepdesk_sdk::AppError> for ApiError {
    fn from(e: stepdesk_sdk::AppError) -> Self {
        use stepdesk_sdk::AppError as E;
        match e {
            E::Invalid(m) => ApiError::BadRequest(m),
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::NotReady => ApiError::Unavailable(e.to_string()),
            E::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<stepdesk_engine::StoreError> for ApiError {
    fn from(e: stepdesk_engine::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What the running program tells the API about itself (for `info` and `diagnostics`).
#[derive(Debug, Clone, Default)]
pub struct AppInfo {
    pub version: String,
    pub data_dir: String,
    pub log_dir: Option<String>,
    /// Where the HTTP server listens, if it does.
    pub url: Option<String>,
}

/// The admin API. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    pub admin: AdminApi,
    pub readwise: Option<ReadwiseAdmin>,
    pub apps: Option<stepdesk_sdk::Apps>,
    pub keys: Option<Arc<dyn KeyStore>>,
    pub event_key: EventKey,
    pub info: AppInfo,
    pub read_only: bool,
    pub started_at: i64,
    /// The desktop window, once it exists (none when serving headless).
    pub window: OnceLock<Arc<dyn WindowControl>>,
}

/// What the admin API may ask of the desktop window.
pub trait WindowControl: Send + Sync {
    /// Shows the window, unminimized, in front (a second launch of Stepdesk asks this).
    fn focus(&self);
}

/// Assembles an [`Api`].
pub struct ApiBuilder {
    engine: Engine,
    readwise: Option<ReadwiseAdmin>,
    apps: Option<stepdesk_sdk::Apps>,
    keys: Option<Arc<dyn KeyStore>>,
    event_key: EventKey,
    info: AppInfo,
    read_only: bool,
}

impl ApiBuilder {
    pub fn readwise(mut self, readwise: ReadwiseAdmin) -> Self {
        self.readwise = Some(readwise);
        self
    }

    /// The SDK apps' registry (`apps`, `add_app`, `sync_app`, `remove_app`).
    pub fn apps(mut self, apps: stepdesk_sdk::Apps) -> Self {
        self.apps = Some(apps);
        self
    }

    pub fn keys(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The event key the HTTP server enforces (reported by `info`).
    pub fn event_key(mut self, key: EventKey) -> Self {
        self.event_key = key;
        self
    }

    pub fn info(mut self, info: AppInfo) -> Self {
        self.info = info;
        self
    }

    /// Refuse every write command (inspecting a copy of someone's data directory).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Creates the audit table if needed and returns the API.
    pub async fn build(self) -> ApiResult<Api> {
        if !self.read_only {
            self.engine.store().write(audit::migrate).await?;
        }
        Ok(Api {
            inner: Arc::new(Inner {
                admin: self.engine.admin(),
                engine: self.engine,
                readwise: self.readwise,
                apps: self.apps,
                keys: self.keys,
                event_key: self.event_key,
                info: self.info,
                read_only: self.read_only,
                started_at: stepdesk_engine::time::now_ms(),
                window: OnceLock::new(),
            }),
        })
    }
}

impl Api {
    pub fn builder(engine: Engine) -> ApiBuilder {
        ApiBuilder {
            engine,
            readwise: None,
            apps: None,
            keys: None,
            event_key: EventKey::default(),
            info: AppInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..AppInfo::default()
            },
            read_only: false,
        }
    }

    /// Calls a command by name with JSON params (`null` for none), as the window does.
    pub async fn call(&self, name: &str, params: Value, ctx: CallCtx) -> ApiResult<Value> {
        self.dispatch(name, params, &ctx).await
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Connects the desktop window (once it is built).
    pub fn attach_window(&self, window: Arc<dyn WindowControl>) {
        let _ = self.inner.window.set(window);
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    pub fn event_key(&self) -> &EventKey {
        &self.inner.event_key
    }

    pub(crate) fn readwise(&self) -> ApiResult<&ReadwiseAdmin> {
        self.inner
            .readwise
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("the Readwise sync is not running here".into()))
    }

    pub(crate) fn apps(&self) -> ApiResult<&stepdesk_sdk::Apps> {
        self.inner
            .apps
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("SDK apps are not served here".into()))
    }

    pub(crate) fn keystore(&self) -> ApiResult<&Arc<dyn KeyStore>> {
        self.inner
            .keys
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("keys cannot be managed here".into()))
    }

    fn check_kind(&self, name: &str, kind: Kind) -> ApiResult<()> {
        if kind == Kind::Write && self.inner.read_only {
            return Err(ApiError::ReadOnly(format!(
                "`{name}` would change data; this copy is opened for inspection only"
            )));
        }
        Ok(())
    }
}

/// Parses a command's params from JSON (`null` counts as `{}`). Errors name the field
/// (`` `limit`: invalid type ``) and never quote the value given: it may be a token.
pub(crate) fn params_from<T: DeserializeOwned>(name: &str, params: Value) -> ApiResult<T> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        let field = e.path().to_string();
        let detail = redact_serde(&e.inner().to_string());
        ApiError::BadRequest(if field.is_empty() || field == "." {
            format!("`{name}`: bad parameters: {detail}")
        } else {
            format!("`{name}`: `{field}`: {detail}")
        })
    })
}

/// serde's messages can quote the offending value (`invalid type: string "…"`): keep only
/// the kind of mistake and what was expected.
pub(crate) fn redact_serde(msg: &str) -> String {
    // "missing field `x`" reads better as what to do.
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return format!("`{field}` is required");
    }
    let quoted = msg.find(['"', '`']);
    match quoted {
        Some(i) if msg.starts_with("invalid type") || msg.starts_with("invalid value") => {
            let expected = msg.find("expected").map(|j| &msg[j..]).unwrap_or("");
            format!(
                "{} {expected}",
                msg[..i].trim().trim_end_matches(':').trim()
            )
        }
        _ => msg.to_string(),
    }
}

/// Parses a command's params from a URL query string (REST reads).
pub(crate) fn params_from_query<T: DeserializeOwned + Serialize>(
    name: &str,
    query: &str,
) -> ApiResult<Value> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    let parsed: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let detail = redact_serde(&e.inner().to_string());
        ApiError::BadRequest(if field.is_empty() || field == "." {
            format!("`{name}`: bad query string: {detail}")
        } else {
            format!("`{name}`: `{field}`: {detail}")
        })
    })?;
    serde_json::to_value(parsed).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A notice of the live change feed, as the transports send it (Server-Sent Events over
/// HTTP, Tauri events in the window): what committed transactions changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct ChangeNotice {
    /// When it was published (ms since the epoch).
    pub at: i64,
    /// The tables that changed (`runs`, `steps`, `events`, `readwise_users`, ...).
    pub tables: Vec<String>,
    /// Per table, the ids of the changed rows where known.
    pub changes: Vec<stepdesk_engine::feed::Change>,
}

impl From<&stepdesk_engine::feed::Changes> for ChangeNotice {
    fn from(c: &stepdesk_engine::feed::Changes) -> Self {
        ChangeNotice {
            at: c.at,
            tables: c.changes.iter().map(|c| c.table.clone()).collect(),
            changes: c.changes.clone(),
        }
    }
}

/// Params of commands that take none.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Params naming an SDK app by its serve URL.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct ByUrl {
    pub url: String,
}

/// Params naming one thing by id (a run, an event, a user, a daily sync).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct ById {
    pub id: String,
}
