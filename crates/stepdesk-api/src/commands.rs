//! Every admin command, declared once: name, params type, result type, kind, REST route,
//! and (for support actions) the user it concerns, for the audit trail. The `commands!`
//! macro turns the list into the registry ([`COMMANDS`]), the dispatcher ([`Api::call`]),
//! the REST query parser, and the TypeScript declarations ([`typescript`]), so no transport
//! can miss a command and nothing is written twice.

use serde_json::{json, Map, Value};
use stepdesk_engine::admin::{
    Boot, EventPage, EventQuery, FunctionView, RunDetail, RunPage, RunQuery, RunSummary, Started,
    StoredEvent,
};
use stepdesk_engine::console::{CronFire, FunctionStats};
use stepdesk_engine::event::parse_events;
use stepdesk_engine::search::SearchResult;
use stepdesk_engine::SendError;
use stepdesk_readwise_sync::admin::{SyncRequested, TokenCheck};
use stepdesk_readwise_sync::users::{DailySyncDetail, DailySyncProgress, User};
use stepdesk_readwise_sync::ReadwiseSettings;
use stepdesk_sdk::SdkApp;

use crate::audit::{self, AuditEntry};
use crate::keys::{KeyChange, KeysStatus};
use crate::types::*;
use crate::{
    params_from, params_from_query, Api, ApiError, ApiResult, ById, ByUrl, CallCtx, CommandSpec,
    Kind, NoParams,
};

macro_rules! commands {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident($params:ty) -> $result:ty,
        $kind:ident $method:literal $path:literal $(status $status:literal)?
        $(, audit user = |$ap:ident| $target:expr)?
        => |$api:ident, $p:ident| $body:expr;
    )*) => {
        /// The registry: every command, in declaration order.
        pub const COMMANDS: &[CommandSpec] = &[$(CommandSpec {
            name: stringify!($name),
            kind: Kind::$kind,
            audited: commands!(@audited $($target)?),
            method: $method,
            path: $path,
            status: commands!(@status $($status)?),
            doc: concat!($($doc, "\n",)* ""),
        },)*];

        impl Api {
            pub(crate) async fn dispatch(
                &self,
                name: &str,
                params: serde_json::Value,
                ctx: &CallCtx,
            ) -> ApiResult<serde_json::Value> {
                match name {
                    $(stringify!($name) => {
                        self.check_kind(stringify!($name), Kind::$kind)?;
                        let $p: $params = params_from(stringify!($name), params)?;
                        $(let audit_user: Option<String> = { let $ap = &$p; $target };)?
                        let $api = self;
                        // The body runs in a block of its own, so that a `?` in it still
                        // reaches the audit trail below.
                        let result: ApiResult<$result> = async move { $body }.await;
                        $(
                            let _ = stringify!($ap);
                            self.record_audit(ctx, stringify!($name), audit_user, &result).await;
                        )?
                        let value = serde_json::to_value(result?)
                            .map_err(|e| ApiError::Internal(e.to_string()))?;
                        Ok(value)
                    })*
                    other => Err(ApiError::NotFound(format!("unknown admin method `{other}`"))),
                }
            }
        }

        /// A command's params from a URL query string (the REST routes' reads), as JSON.
        pub fn query_params(name: &str, query: &str) -> ApiResult<serde_json::Value> {
            match name {
                $(stringify!($name) => params_from_query::<$params>(stringify!($name), query),)*
                other => Err(ApiError::NotFound(format!("unknown admin method `{other}`"))),
            }
        }

        /// The TypeScript declarations of every params and result type, and the `Commands`
        /// map (`name → {params, result, kind, method, path}`) the console's client is typed
        /// with. `i64` timestamps are plain numbers (milliseconds fit a double exactly).
        pub fn typescript() -> String {
            let cfg = ts_rs::Config::new().with_large_int("number");
            let mut collect = crate::commands::Collect::new(&cfg);
            // Not a command's: what the change feed sends.
            ts_rs::TypeVisitor::visit::<crate::ChangeNotice>(&mut collect);
            $(
                ts_rs::TypeVisitor::visit::<$params>(&mut collect);
                ts_rs::TypeVisitor::visit::<$result>(&mut collect);
            )*
            let mut out = String::from(crate::commands::TS_HEADER);
            for decl in collect.declarations() {
                out.push_str("export ");
                out.push_str(&decl);
                out.push_str("\n\n");
            }
            out.push_str("/** Every admin command: its params and result types, kind and REST route. */\n");
            out.push_str("export interface Commands {\n");
            $(
                out.push_str(&format!(
                    "  {}: {{ params: {}; result: {}; kind: \"{}\"; method: \"{}\"; path: \"{}\" }};\n",
                    stringify!($name),
                    <$params as ts_rs::TS>::name(&cfg),
                    <$result as ts_rs::TS>::name(&cfg),
                    commands!(@kind $kind),
                    $method,
                    $path,
                ));
            )*
            out.push_str("}\n\n");
            out.push_str("/** The registry at run time: kind and REST route of each command. */\n");
            out.push_str("export const COMMANDS = {\n");
            $(
                out.push_str(&format!(
                    "  {}: {{ kind: \"{}\", method: \"{}\", path: \"{}\" }},\n",
                    stringify!($name),
                    commands!(@kind $kind),
                    $method,
                    $path,
                ));
            )*
            out.push_str("} as const;\n\nexport type CommandName = keyof Commands;\n");
            out
        }
    };
    (@audited) => { false };
    (@audited $t:expr) => { true };
    (@status) => { 200 };
    (@status $s:literal) => { $s };
    (@kind Read) => { "read" };
    (@kind Write) => { "write" };
}

pub(crate) const TS_HEADER: &str = "// Generated from the Rust types by `stepdesk-api` (crates/stepdesk-api/src/commands.rs).\n// Do not edit: run `UPDATE_TS=1 cargo test -p stepdesk-api --test typescript` to regenerate.\n\n";

/// Collects the declarations of the named types a type depends on, once each, sorted.
pub(crate) struct Collect<'a> {
    cfg: &'a ts_rs::Config,
    seen: std::collections::HashSet<std::any::TypeId>,
    decls: std::collections::BTreeMap<String, String>,
}

impl<'a> Collect<'a> {
    pub(crate) fn new(cfg: &'a ts_rs::Config) -> Self {
        Collect {
            cfg,
            seen: Default::default(),
            decls: Default::default(),
        }
    }

    pub(crate) fn declarations(self) -> impl Iterator<Item = String> {
        self.decls.into_values()
    }
}

impl ts_rs::TypeVisitor for Collect<'_> {
    fn visit<T: ts_rs::TS + 'static + ?Sized>(&mut self) {
        if !self.seen.insert(std::any::TypeId::of::<T>()) {
            return;
        }
        // Only named types (structs, enums) are declared; `Vec<T>`, `Option<T>` and the
        // like are written inline, and their contents visited.
        if T::output_path().is_some() {
            self.decls.insert(T::ident(self.cfg), T::decl(self.cfg));
        }
        T::visit_dependencies(self);
        T::visit_generics(self);
    }
}

commands! {
    // ---- Engine --------------------------------------------------------------------------

    /// Name, version, data directory, listening URL, whether an event key is required and
    /// whether this is a read-only inspection.
    info(NoParams) -> Info, Read "GET" "/api/admin/info"
        => |api, _p| Ok(api.info());

    /// Every function with its triggers, retries, failure handler and next cron fire.
    functions(NoParams) -> Vec<FunctionView>, Read "GET" "/api/admin/functions"
        => |api, _p| Ok(api.inner.admin.functions());

    /// Runs, newest first, filtered and paged (see the paging rule).
    runs(RunQuery) -> RunPage, Read "GET" "/api/admin/runs"
        => |api, p| Ok(api.inner.admin.runs(p).await?);

    /// A run with its steps, attempts, input, output and error.
    run(ById) -> RunDetail, Read "GET" "/api/admin/runs/{id}"
        => |api, p| Ok(api.inner.admin.run(&p.id).await?);

    /// "Test function": starts a run now with this payload.
    invoke(InvokeParams) -> Started, Write "POST" "/api/admin/functions/{id}/invoke" status 202
        => |api, p| Ok(api
            .inner
            .admin
            .invoke(&p.id, p.data.unwrap_or_default(), p.user.unwrap_or_default())
            .await?);

    /// Cancels a running run.
    cancel(ById) -> RunSummary, Write "POST" "/api/admin/runs/{id}/cancel"
        => |api, p| Ok(api.inner.admin.cancel(&p.id).await?);

    /// Starts a new run of the same function with the same event.
    rerun(ById) -> Started, Write "POST" "/api/admin/runs/{id}/rerun" status 202
        => |api, p| Ok(api.inner.admin.rerun(&p.id).await?);

    /// Starts a new run of the same function and event that reuses the results of the steps
    /// before `step` (its hash) and executes from there, optionally with an edited input for
    /// that step (one declared with `step.run_with`).
    rerun_from(RerunFromParams) -> Started, Write "POST" "/api/admin/runs/{id}/rerun-from" status 202
        => |api, p| Ok(api.inner.admin.rerun_from(&p.id, &p.step, p.input).await?);

    /// Runs whose event, output, error or step outputs and errors contain the words.
    search_runs(SearchParams) -> SearchResult, Read "GET" "/api/admin/search"
        => |api, p| Ok(api.inner.admin.search_runs(&p.q, p.limit.unwrap_or(50)).await?);

    /// A function's counts by status and p50/p95 durations over 24 h and 7 days, with a
    /// series for a chart.
    function_stats(ById) -> FunctionStats, Read "GET" "/api/admin/functions/{id}/stats"
        => |api, p| Ok(api.inner.admin.function_stats(&p.id).await?);

    /// A cron function's last fires: scheduled and fired times, late flag, run, source.
    cron_fires(CronFiresParams) -> Vec<CronFire>, Read "GET" "/api/admin/functions/{id}/cron-fires"
        => |api, p| Ok(api.inner.admin.cron_fires(&p.id, p.limit.unwrap_or(20)).await?);

    /// A cron function now ("Run now"), or again for a past scheduled time ("Replay").
    run_cron(RunCronParams) -> Started, Write "POST" "/api/admin/functions/{id}/run-cron" status 202,
        audit user = |_p| None
        => |api, p| Ok(api.inner.admin.run_cron(&p.id, p.scheduled_at).await?);

    /// The engine's starts and clean stops, newest first (restarts explain interrupted steps).
    boots(LimitParams) -> Vec<Boot>, Read "GET" "/api/admin/boots"
        => |api, p| Ok(api.inner.admin.boots(p.limit.unwrap_or(20)).await?);

    // ---- SDK apps ----------------------------------------------------------------------

    /// Apps built with the Inngest SDKs: URL, SDK, framework, functions, last sync and error.
    apps(NoParams) -> Vec<SdkApp>, Read "GET" "/api/admin/apps"
        => |api, _p| Ok(api.apps()?.list().await?);

    /// Adds an app by its serve URL and asks it to sync (kept, with its error, if it cannot
    /// be reached yet).
    add_app(ByUrl) -> SdkApp, Write "POST" "/api/admin/apps"
        => |api, p| Ok(api.apps()?.add(&p.url).await?);

    /// Asks an app to sync now.
    sync_app(ByUrl) -> SdkApp, Write "POST" "/api/admin/apps/sync"
        => |api, p| Ok(api.apps()?.sync(&p.url).await?);

    /// Removes an app; its functions are archived, their runs kept.
    remove_app(ByUrl) -> SdkApp, Write "POST" "/api/admin/apps/remove"
        => |api, p| Ok(api.apps()?.remove(&p.url).await?);

    /// Events, newest first, filtered and paged.
    events(EventQuery) -> EventPage, Read "GET" "/api/admin/events"
        => |api, p| Ok(api.inner.admin.events(p).await?);

    /// One event.
    event(ById) -> StoredEvent, Read "GET" "/api/admin/events/{id}"
        => |api, p| Ok(api.inner.admin.event(&p.id).await?);

    /// The runs an event started.
    event_runs(ById) -> Vec<RunSummary>, Read "GET" "/api/admin/events/{id}/runs"
        => |api, p| Ok(api.inner.admin.event_runs(&p.id).await?);

    /// Sends one event or an array of events ("Send event"), as an authorized sender.
    send_events(SendEventsParams) -> SentEvents, Write "POST" "/api/admin/events"
        => |api, p| api.send_events(p.events).await;

    /// Sends a stored event again, as a new event with the same name, data and user.
    replay_event(ById) -> SentEvents, Write "POST" "/api/admin/events/{id}/replay"
        => |api, p| api.replay_event(&p.id).await;

    // ---- Readwise users (support) --------------------------------------------------------

    /// Users with their token status, last sync and stored books.
    users(NoParams) -> Vec<User>, Read "GET" "/api/admin/users"
        => |api, _p| Ok(api.readwise()?.users().await?);

    /// One user.
    user(ById) -> User, Read "GET" "/api/admin/users/{id}"
        => |api, p| Ok(api.readwise()?.user(&p.id).await?);

    /// A user's page: the user, their sync runs and the support actions on them.
    user_page(ById) -> UserDetail, Read "GET" "/api/admin/users/{id}/page"
        => |api, p| api.user_detail(&p.id).await;

    /// Adds a user (or renames one); a token goes to the keychain and is never shown back.
    add_user(AddUserParams) -> User, Write "POST" "/api/admin/users" status 201,
        audit user = |p| Some(p.id.clone())
        => |api, p| Ok(api
            .readwise()?
            .add_user(&p.id, p.name.as_deref(), p.token.as_deref())
            .await?);

    /// Replaces a user's token (write-only: saved to the keychain, never shown back).
    set_token(SetTokenParams) -> User, Write "PUT" "/api/admin/users/{id}/token",
        audit user = |p| Some(p.id.clone())
        => |api, p| api.set_token(&p.id, &p.token).await;

    /// Removes a user, their books and their keychain entry.
    remove_user(ById) -> Removed, Write "DELETE" "/api/admin/users/{id}",
        audit user = |p| Some(p.id.clone())
        => |api, p| {
            api.readwise()?.remove_user(&p.id).await?;
            Ok(Removed { removed: p.id })
        };

    /// Checks a user's token with Readwise now.
    check_user(ById) -> TokenCheck, Write "POST" "/api/admin/users/{id}/check",
        audit user = |p| Some(p.id.clone())
        => |api, p| Ok(api.readwise()?.check_user(&p.id).await?);

    /// Resyncs one user now.
    sync_user(ById) -> SyncRequested, Write "POST" "/api/admin/users/{id}/sync" status 202,
        audit user = |p| Some(p.id.clone())
        => |api, p| Ok(api.readwise()?.sync_user(&p.id, None).await?);

    /// Daily syncs, newest first, with their progress.
    daily_syncs(LimitParams) -> Vec<DailySyncProgress>, Read "GET" "/api/admin/daily-syncs"
        => |api, p| Ok(api.readwise()?.daily_syncs(p.limit).await?);

    /// A daily sync with each user's part in it (their fetch run and its status).
    daily_sync(ById) -> DailySyncDetail, Read "GET" "/api/admin/daily-syncs/{id}"
        => |api, p| Ok(api.readwise()?.daily_sync(&p.id).await?);

    /// Runs an earlier daily sync again, for its failed users only or for all of them.
    replay_daily_sync(ReplayDailySyncParams) -> SyncRequested, Write "POST" "/api/admin/daily-syncs/{id}/replay" status 202,
        audit user = |_p| None
        => |api, p| Ok(api.readwise()?.replay_daily_sync(&p.id, p.only_failed.unwrap_or(true)).await?);

    /// Starts the daily sync now.
    start_daily_sync(NoParams) -> SyncRequested, Write "POST" "/api/admin/daily-syncs" status 202,
        audit user = |_p| None
        => |api, _p| Ok(api.readwise()?.sync_all().await?);

    /// The Readwise events' fields and examples, for forms.
    event_types(NoParams) -> serde_json::Value, Read "GET" "/api/admin/event-types"
        => |_api, _p| Ok(stepdesk_readwise_sync::events::event_types());

    /// The Readwise API URL in effect and where it comes from.
    settings(NoParams) -> ReadwiseSettings, Read "GET" "/api/admin/settings"
        => |api, _p| api.readwise()?.sync().settings().await.map_err(ApiError::Internal);

    /// Changes the Readwise API URL (`null`: back to the default).
    set_settings(SettingsParams) -> ReadwiseSettings, Write "PUT" "/api/admin/settings",
        audit user = |_p| None
        => |api, p| api.set_settings(p.readwise_api_url.as_deref()).await;

    /// Support actions, newest first (for one user, or all).
    audit(AuditParams) -> Vec<AuditEntry>, Read "GET" "/api/admin/audit"
        => |api, p| api.audit_entries(p.user_id, p.limit).await;

    // ---- Keys and diagnostics ------------------------------------------------------------

    /// Whether the event and signing keys are stored, and which event key is in effect.
    keys(NoParams) -> KeysStatus, Read "GET" "/api/admin/keys"
        => |api, _p| api.keystore()?.status().await;

    /// Stores a key in the keychain (write-only).
    set_key(SetKeyParams) -> KeyChange, Write "PUT" "/api/admin/keys/{name}",
        audit user = |_p| None
        => |api, p| {
            crate::keys::check_value(&p.value).map_err(|e| ApiError::BadRequest(e.into()))?;
            api.keystore()?.set(p.name, p.value).await
        };

    /// Removes a key from the keychain.
    remove_key(KeyParams) -> KeyChange, Write "DELETE" "/api/admin/keys/{name}",
        audit user = |_p| None
        => |api, p| api.keystore()?.remove(p.name).await;

    /// Brings the desktop window to the front; false when there is none (headless). A second
    /// launch of Stepdesk on the same data directory calls this and exits.
    focus_window(NoParams) -> bool, Write "POST" "/api/admin/window/focus"
        => |api, _p| Ok(match api.inner.window.get() {
            Some(w) => {
                w.focus();
                true
            }
            None => false,
        });

    /// Everything a support ticket needs (version, paths, counts, settings), without secrets.
    diagnostics(NoParams) -> Diagnostics, Read "GET" "/api/admin/diagnostics"
        => |api, _p| api.diagnostics().await;
}

impl Api {
    pub(crate) fn info(&self) -> Info {
        let i = &self.inner;
        Info {
            name: "Stepdesk".into(),
            version: i.info.version.clone(),
            data_dir: i.info.data_dir.clone(),
            url: i.info.url.clone(),
            functions: i.engine.registry().all().len() as u32,
            event_key_required: i.event_key.is_set(),
            read_only: i.read_only,
            started_at: i.started_at,
            readwise: i.readwise.is_some(),
        }
    }

    async fn send_events(&self, events: Value) -> ApiResult<SentEvents> {
        let body = serde_json::to_vec(&events).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let events = parse_events(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let ids = self
            .inner
            .engine
            .send_events(events)
            .await
            .map_err(send_error)?;
        Ok(SentEvents { ids })
    }

    async fn replay_event(&self, id: &str) -> ApiResult<SentEvents> {
        let stored = self.inner.admin.event(id).await?;
        if stored.name.starts_with("inngest/") {
            return Err(ApiError::BadRequest(format!(
                "`{}` is an internal event; replay the run instead",
                stored.name
            )));
        }
        // A new event (no sender id: the original id would be deduplicated and start nothing).
        self.send_events(json!({"name": stored.name, "data": stored.data, "user": stored.user}))
            .await
    }

    async fn user_detail(&self, id: &str) -> ApiResult<UserDetail> {
        let user = self.readwise()?.user(id).await?;
        let mut runs = Vec::new();
        for run_id in self.readwise()?.user_run_ids(id, 50).await? {
            match self.inner.admin.run(&run_id).await {
                Ok(detail) => runs.push(detail.summary),
                // Gone between the two reads: skip it.
                Err(stepdesk_engine::admin::AdminError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let audit = self.audit_entries(Some(id.to_string()), Some(50)).await?;
        Ok(UserDetail { user, runs, audit })
    }

    async fn set_token(&self, id: &str, token: &str) -> ApiResult<User> {
        let readwise = self.readwise()?;
        // Only an existing user's token can be set here (add_user creates users).
        readwise.user(id).await?;
        Ok(readwise.add_user(id, None, Some(token)).await?)
    }

    async fn set_settings(&self, url: Option<&str>) -> ApiResult<ReadwiseSettings> {
        use stepdesk_readwise_sync::SettingsError;
        self.readwise()?
            .sync()
            .set_api_url(url)
            .await
            .map_err(|e| match e {
                SettingsError::Pinned => ApiError::Conflict(e.to_string()),
                SettingsError::Invalid(m) => {
                    ApiError::BadRequest(format!("`readwise_api_url`: {m}"))
                }
            })
    }

    async fn audit_entries(
        &self,
        user_id: Option<String>,
        limit: Option<u32>,
    ) -> ApiResult<Vec<AuditEntry>> {
        let limit = stepdesk_engine::admin::PageSize {
            default: 50,
            max: 500,
        }
        .limit(limit)?;
        Ok(self
            .inner
            .engine
            .store()
            .read(move |c| audit::list(c, user_id.as_deref(), limit))
            .await?)
    }

    /// Records a support action and its outcome. A failure to record is logged, not
    /// returned: the action itself already happened (or failed) and says so.
    async fn record_audit<T>(
        &self,
        ctx: &CallCtx,
        action: &'static str,
        user: Option<String>,
        result: &ApiResult<T>,
    ) {
        let error = result.as_ref().err().map(ToString::to_string);
        let origin = ctx.origin;
        let at = stepdesk_engine::time::now_ms();
        let outcome = self
            .inner
            .engine
            .store()
            .write(move |c| audit::record(c, at, origin, action, user.as_deref(), error.as_deref()))
            .await;
        if let Err(e) = outcome {
            tracing::error!(action, error = %e, "cannot record a support action in the audit trail");
        }
    }

    async fn diagnostics(&self) -> ApiResult<Diagnostics> {
        let (runs_by_status, events) = self
            .inner
            .engine
            .store()
            .read(|c| {
                let mut stmt = c.prepare("SELECT status, count(*) FROM runs GROUP BY status")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut by = Map::new();
                for row in rows {
                    let (status, n) = row?;
                    by.insert(status, json!(n));
                }
                let events: i64 = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
                Ok((by, events))
            })
            .await?;
        let users = match &self.inner.readwise {
            Some(r) => Some(r.users().await?.len() as u32),
            None => None,
        };
        let keys = match &self.inner.keys {
            Some(k) => match k.status().await {
                Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                Err(e) => json!({"error": e.to_string()}),
            },
            None => Value::Null,
        };
        let readwise_settings = match &self.inner.readwise {
            Some(r) => r
                .sync()
                .settings()
                .await
                .ok()
                .and_then(|s| serde_json::to_value(s).ok()),
            None => None,
        };
        Ok(Diagnostics {
            info: self.info(),
            log_dir: self.inner.info.log_dir.clone(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            runs_by_status,
            events,
            users,
            keys,
            readwise_settings,
        })
    }
}

fn send_error(e: SendError) -> ApiError {
    match e {
        SendError::Invalid(e) => ApiError::BadRequest(e.to_string()),
        SendError::Unauthorized(e) => ApiError::Unauthorized(e),
        SendError::Store(e) => ApiError::Internal(e.to_string()),
        SendError::Unavailable(e) => ApiError::Unavailable(e),
        SendError::ReadOnly => ApiError::ReadOnly("events are not accepted".into()),
    }
}
