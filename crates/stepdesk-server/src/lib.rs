//! Stepdesk's HTTP server: the Inngest event API (`POST /e/{key}`), the Inngest-compatible
//! read API (`/v1/...`), Stepdesk's admin API (`/api/admin/...`) and the web UI.
//!
//! Handlers are thin: they parse the request, call the engine's [`AdminApi`] (or
//! [`Engine::send_events`]) and map the result to JSON. Every error is a JSON body
//! `{"error": "...", "status": N}`.

mod api_error;
mod guard;
mod routes;
pub mod rpc;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use stepdesk_engine::{AdminApi, Engine};

pub use api_error::ApiError;

/// Largest request body accepted (larger bodies get `413`).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How the server authenticates and what it lets in.
#[derive(Clone)]
pub struct ServerConfig {
    /// When set, `POST /e/{key}` accepts only this key (otherwise any key: dev mode).
    pub event_key: Option<String>,
    /// Bearer token required by mutating admin routes.
    pub admin_token: String,
    /// Extra host names accepted in the `Host` header besides loopback names (for a
    /// deliberate non-loopback `--host`).
    pub extra_hosts: Vec<String>,
    /// More routes served behind the same guards (the Readwise routes, for instance).
    pub extra_routes: Option<Router>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub admin: AdminApi,
    pub config: Arc<ServerConfig>,
}

/// The whole HTTP surface as an axum router.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let state = AppState {
        admin: engine.admin(),
        engine,
        config: Arc::new(config),
    };
    routes::router(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
