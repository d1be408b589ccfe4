//! An SDK app's function configurations as engine functions driven over HTTP.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use stepdesk_engine::Function;
use stepdesk_inngest::duration;
use stepdesk_inngest::wire::{FunctionConfig, RegisterRequest};

use crate::driver::FunctionDriver;

/// What building functions needs from the app registry.
#[derive(Clone)]
pub(crate) struct Env {
    pub http: reqwest::Client,
    pub signing_key: Option<Arc<str>>,
    /// Executions in flight, for checkpoints.
    pub live: crate::checkpoint::SharedLive,
    /// Run state served to SDKs (`use_api`).
    pub offloaded: Arc<crate::offload::Offloaded>,
    /// Planned steps in flight and their answers, per run.
    pub inflight: Arc<crate::driver::InFlight>,
    /// Runs to wake (see `FunctionDriver::wake`).
    pub wake: tokio::sync::mpsc::UnboundedSender<String>,
}

/// The engine functions of one registration, each tagged with its app, or the first
/// function that cannot be built and why.
pub(crate) fn build_all(
    app_id: &str,
    req: &RegisterRequest,
    env: &Env,
) -> Result<Vec<Function>, String> {
    req.functions
        .iter()
        .map(|cfg| {
            build(app_id, cfg, &req.url, env).map_err(|e| format!("function `{}`: {e}", cfg.id))
        })
        .collect()
}

fn build(app_id: &str, cfg: &FunctionConfig, app_url: &str, env: &Env) -> Result<Function, String> {
    let mut b = Function::builder(cfg.id.clone())
        .name(cfg.display_name())
        .retries(cfg.retries());
    for t in &cfg.triggers {
        b = match (&t.event, &t.cron, &t.expression) {
            (Some(event), _, Some(expr)) => b.on_event_if(event.clone(), expr),
            (Some(event), _, None) => b.on_event(event.clone()),
            (None, Some(cron), _) => b.on_cron(cron),
            (None, None, _) => return Err("a trigger has neither an event nor a cron".into()),
        };
    }
    for c in &cfg.cancel {
        let timeout = c
            .timeout
            .as_deref()
            .map(duration::parse)
            .transpose()
            .map_err(|e| format!("cancel on `{}`: {e}", c.event))?;
        b = b.cancel_on(c.event.clone(), c.if_expr.as_deref(), timeout);
    }
    let url = cfg
        .step_url()
        .map(str::to_string)
        .unwrap_or_else(|| app_url.to_string());
    let driver = Arc::new(FunctionDriver {
        http: env.http.clone(),
        function_id: cfg.id.clone(),
        url,
        signing_key: env.signing_key.clone(),
        version: AtomicI64::new(-1),
        live: env.live.clone(),
        inflight: env.inflight.clone(),
        wake: env.wake.clone(),
        offloaded: env.offloaded.clone(),
    });
    let mut f = b
        .source(app_id)
        .config(serde_json::to_value(cfg).unwrap_or_default())
        .handler(move |ctx| {
            let driver = driver.clone();
            async move { driver.execute(ctx).await }
        })
        .map_err(|e| e.reason)?;
    f.failure_handler_of = cfg.failure_of();
    Ok(f)
}
