//! `--serve-inngest`: Stepdesk's own functions served to an Inngest server (Inngest Cloud,
//! a self-hosted `inngest start`) at `/api/inngest`, configured by the standard `INNGEST_*`
//! variables (see `stepdesk_serve::config`).
//!
//! Off unless asked for, by the flag or `STEPDESK_SERVE_INNGEST`, not by the `INNGEST_*`
//! variables alone: those are commonly set in a shell for an SDK app of one's own
//! (`INNGEST_DEV=1` to point it at a dev server, possibly this very Stepdesk), and keying the
//! endpoint on them would quietly hand Stepdesk's functions, and the Readwise tokens they
//! use, to whatever server the variables name, and stop running them here.
//!
//! While it is on, the Inngest server is the only scheduler of the served functions: the
//! local engine keeps their handlers (runs it already had finish here) but not their
//! triggers, so an event or a cron never runs one twice.

use stepdesk_engine::Function;
use stepdesk_serve::{ServeConfig, Served};

/// The functions for the local engine, and the served endpoint when `enabled`.
pub fn setup(
    enabled: bool,
    functions: Vec<Function>,
) -> anyhow::Result<(Vec<Function>, Option<Served>)> {
    if !enabled {
        return Ok((functions, None));
    }
    let config = ServeConfig::from_env().map_err(|e| anyhow::anyhow!("--serve-inngest: {e}"))?;
    let served = Served::new(config, functions.clone())
        .map_err(|e| anyhow::anyhow!("--serve-inngest: {e}"))?;
    tracing::info!(
        config = %served.config().describe(),
        functions = ?served.function_ids(),
        "serving Stepdesk's functions to an Inngest server at /api/inngest; the local engine does not start them"
    );
    Ok((served.local_functions(functions), Some(served)))
}

/// With `INNGEST_SERVE_ORIGIN` set, Stepdesk knows where the Inngest server reaches it and
/// registers at start (otherwise the server asks with a `PUT`, e.g. `inngest start -u URL`).
pub fn sync_at_start(served: &Served) {
    if served.config().serve_origin.is_none() {
        return;
    }
    let served = served.clone();
    tokio::spawn(async move {
        let url = served.serve_url("");
        match served.sync(&url).await {
            Ok(modified) => tracing::info!(%url, modified, "registered with the Inngest server"),
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot register with the Inngest server (it can still sync with a PUT to /api/inngest)")
            }
        }
    });
}
