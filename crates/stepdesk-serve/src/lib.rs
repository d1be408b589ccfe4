//! Stepdesk's own Rust functions served to an Inngest server (Inngest Cloud, a self-hosted
//! `inngest start`, or another Stepdesk acting as the server), exactly as an app built with
//! an Inngest SDK serves its functions: `GET/PUT/POST /api/inngest` (issue 8 §2, protocol §1).
//!
//! - `GET`: introspection (the unauthenticated form; in cloud mode, a signed request gets
//!   the authenticated one).
//! - `PUT`: a sync. Out of band (the default), Stepdesk POSTs its functions to
//!   `{api}/fn/register` with the hashed signing key as Bearer token and answers the PUT
//!   with the outcome; in band (`X-Inngest-Sync-Kind: in_band`, signed in cloud mode), the
//!   answer is the registration itself.
//! - `POST ?fnId=<app>-<fn>&stepId=…`: a call request. The function's body is replayed once
//!   against the memo the request carries ([`stepdesk_engine::Function::execute_once`]) and
//!   the answer is `206` with the one op it reached (`StepRun`, `StepError`/`StepFailed`,
//!   `StepPlanned`, `Sleep`, `WaitForEvent`, `InvokeFunction`; a `send_event` step sends
//!   its events to the event API and answers `StepRun` with their ids), or `200` with the
//!   function's result, or `500`/`400` with its error and `X-Inngest-No-Retry`.
//! - `POST ?probe=trust`: `200`, empty and signed.
//!
//! In cloud mode every call request must carry a valid `X-Inngest-Signature` (JCS body, ±5
//! minutes, the signing key or its fallback), or it gets `401`; answers to verified
//! requests are signed. In dev mode nothing is verified or signed, as the SDKs do. Every
//! other answer carries `X-Inngest-SDK: stepdesk:v<version>`.
//!
//! Function ids are composite, `<app id>-<function id>` (see how ids in
//! internal events and trigger expressions are translated, in `functions.rs`).
//!
//! The endpoint is off unless the user turns it on (`stepdesk serve --serve-inngest`), and
//! while it is on, the served functions are registered with the local engine without their
//! triggers ([`Served::local_functions`]): the Inngest server is then the only one that
//! starts their runs, so no event or cron runs a function twice. Runs the local engine
//! already had finish locally.

pub mod config;
mod functions;
mod outbound;
mod route;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use stepdesk_engine::{Function, Registry};
use stepdesk_inngest::serve::ServeApp;
use stepdesk_inngest::wire::FunctionConfig;

pub use config::{ConfigError, ServeConfig, SERVE_PATH};
pub use stepdesk_inngest::serve::Mode;

use crate::functions::Ids;

/// Why the served functions cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Function(#[from] stepdesk_engine::ConfigError),
    #[error("function `{0}`: its composite id `{1}` is not a valid Inngest function id: {2}")]
    BadId(String, String, String),
}

/// Stepdesk's functions, served. Cheap to clone.
#[derive(Clone)]
pub struct Served {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServeConfig,
    ids: Ids,
    /// By local id, failure handlers (`<id>-failure`) included.
    functions: BTreeMap<String, Arc<Function>>,
    http: reqwest::Client,
}

impl Served {
    /// Serves `functions` (each function with a failure handler also serves that handler
    /// as `<id>-failure`, as the SDKs register `onFailure`).
    pub fn new(config: ServeConfig, functions: Vec<Function>) -> Result<Served, ServeError> {
        let registry = Registry::new(functions)?;
        let functions: BTreeMap<String, Arc<Function>> = registry
            .all()
            .iter()
            .map(|f| (f.id.clone(), f.clone()))
            .collect();
        let ids = Ids {
            app_id: config.app_id.clone(),
            local: functions.keys().cloned().collect(),
        };
        let served = Served {
            inner: Arc::new(Inner {
                config,
                ids,
                functions,
                http: outbound::client(),
            }),
        };
        for f in served.function_configs("http://127.0.0.1/api/inngest") {
            if let Some(problem) = f.problems().into_iter().next() {
                let local = served
                    .inner
                    .ids
                    .local_of(&f.id)
                    .unwrap_or(&f.id)
                    .to_string();
                return Err(ServeError::BadId(local, f.id, problem));
            }
        }
        Ok(served)
    }

    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The served functions' composite ids (`<app>-<fn>`), sorted.
    pub fn function_ids(&self) -> Vec<String> {
        let ids = &self.inner.ids;
        self.inner
            .functions
            .keys()
            .map(|id| ids.composite(id))
            .collect()
    }

    /// The URL the Inngest server is to call: `INNGEST_SERVE_ORIGIN` (else `http://<host>`,
    /// the `Host` a request came with) and `INNGEST_SERVE_PATH` (else `/api/inngest`).
    pub fn serve_url(&self, host: &str) -> String {
        let c = &self.inner.config;
        let origin = c
            .serve_origin
            .clone()
            .unwrap_or_else(|| format!("http://{host}"));
        format!("{origin}{}", c.serve_path.as_deref().unwrap_or(SERVE_PATH))
    }

    /// The configs the Inngest server gets, for a serve URL.
    pub fn function_configs(&self, serve_url: &str) -> Vec<FunctionConfig> {
        self.inner
            .functions
            .values()
            .map(|f| functions::config_of(f, &self.inner.ids, serve_url))
            .collect()
    }

    /// The app as the protocol crate describes it, for a serve URL.
    fn app(&self, serve_url: &str) -> ServeApp {
        let mut app = self.shell();
        app.serve_url = serve_url.to_string();
        app.functions = self.function_configs(serve_url);
        app
    }

    /// The app without its functions: what the response headers need.
    fn shell(&self) -> ServeApp {
        let c = &self.inner.config;
        ServeApp {
            app_id: c.app_id.clone(),
            app_version: None,
            serve_url: String::new(),
            mode: c.mode,
            env: c.env.clone(),
            api_origin: c.api_origin.clone(),
            event_api_origin: c.event_api_origin.clone(),
            serve_origin: c.serve_origin.clone(),
            serve_path: c.serve_path.clone(),
            signing_key: c.signing_key.clone(),
            signing_key_fallback: c.signing_key_fallback.clone(),
            event_key: c.event_key.clone(),
            functions: Vec::new(),
        }
    }

    /// Registers the app with the Inngest server now (an out-of-band sync, as a `PUT` asks
    /// for): `Ok(modified)`, or what went wrong.
    pub async fn sync(&self, serve_url: &str) -> Result<bool, String> {
        let app = self.app(serve_url);
        outbound::register(&self.inner.http, &self.inner.config, &app, None, None).await
    }

    /// `functions` as the local engine is to register them while they are served: the served
    /// ones without triggers and cancel rules (the Inngest server starts and cancels their
    /// runs), their Inngest configuration kept for the console. Runs the engine already has
    /// finish with these same handlers; an explicit local invoke still runs locally.
    pub fn local_functions(&self, functions: Vec<Function>) -> Vec<Function> {
        let ids = &self.inner.ids;
        functions
            .into_iter()
            .map(|mut f| {
                if let Some(served) = self.inner.functions.get(&f.id) {
                    let config = functions::config_of(served, ids, "");
                    f.config = Some(json!({
                        "served_to_inngest": {
                            "id": ids.composite(&f.id),
                            "app_id": ids.app_id,
                            "api_origin": self.inner.config.api_origin,
                            "mode": self.inner.config.mode.as_str(),
                        },
                        "triggers": config.triggers,
                        "cancel": config.cancel,
                    }));
                    f.triggers.clear();
                    f.cancel.clear();
                }
                f
            })
            .collect()
    }

    /// The `/api/inngest` route, to merge into the server's router (behind its guards).
    pub fn router(&self) -> axum::Router {
        route::router(self.clone())
    }
}
