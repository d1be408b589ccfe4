//! Apps built with the official Inngest SDKs (JS, Python), run by Stepdesk as by
//! `inngest dev`: the app registry ([`Apps`]: `/fn/register`, polling, discovery), the HTTP
//! driver that executes their functions ([`driver`]), and the routes SDKs call
//! ([`routes`]). The wire formats live in `stepdesk-inngest`; the engine knows nothing of
//! them (an SDK function is an engine function whose body is one call request).

pub mod apps;
pub mod checkpoint;
mod discovery;
pub mod driver;
mod functions;
pub mod gateway;
pub mod offload;
pub mod routes;
mod schema;

pub use apps::{AppError, Apps, SdkApp, SdkConfig};

pub(crate) mod time {
    pub use stepdesk_engine::time::now_ms;
}

/// The innermost cause of a reqwest error (e.g. "Connection refused"), which says more than
/// "error sending request".
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    if e.is_timeout() {
        format!("timed out ({source})")
    } else {
        source.to_string()
    }
}
