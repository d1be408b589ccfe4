//! Stepdesk's HTTP server: the Inngest event API (`POST /e/{key}`), the Inngest-compatible
//! read API (`/v1/...`), Stepdesk's admin API (`/api/admin/...`) and the web UI.
//!
//! Handlers are thin: the admin routes are generated from the admin API's registry
//! ([`stepdesk_api::COMMANDS`]); the event API calls [`Engine::send_events_from`]. Every error is a JSON body
//! `{"error": "...", "status": N}`, including the ones axum and hyper produce themselves
//! (405, a malformed path, a timeout, a panic): see [`guard::json_errors`].
//!
//! [`serve`] is the accept loop. It is written out here rather than using `axum::serve`
//! because a server that anyone on the machine can reach needs limits that `axum::serve`
//! does not set: a deadline for request headers (which also closes idle keep-alive
//! connections), a deadline between body chunks and for a whole request, a cap on open
//! connections, and a graceful shutdown that does not wait forever.

mod admin;
mod api_error;
pub mod guard;
mod routes;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use stepdesk_api::Api;
use stepdesk_engine::{AdminApi, Engine};
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub use api_error::ApiError;
pub use guard::ConnInfo;
/// The event key in effect (shared with the admin API, which can change it).
pub use stepdesk_api::EventKey;

/// Largest request body accepted (larger bodies get `413`, at once when the declared
/// `Content-Length` is larger).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How the server authenticates and what it lets in. The event key `POST /e/{key}` enforces
/// is the admin API's ([`Api::event_key`]): when one is set, only that key is accepted
/// (otherwise any key: dev mode, and then events may not carry secrets such as a Readwise
/// `apiKey` without the admin token).
#[derive(Clone)]
pub struct ServerConfig {
    /// Bearer token required by mutating admin routes (and by every read when
    /// `reads_need_token`).
    pub admin_token: String,
    /// Host names accepted in the `Host` header besides the ones the listening address
    /// serves (loopback names on a loopback connection, the address itself): `--allow-host`.
    pub extra_hosts: Vec<String>,
    /// Whether reads (`GET /api/...`, `/v1/...`) need the admin token too. Set when
    /// Stepdesk listens beyond loopback: run data and user ids are then not public.
    pub reads_need_token: bool,
    /// More routes served behind the same guards (the Readwise routes, for instance).
    pub extra_routes: Option<Router>,
    /// `dev` or `cloud` when SDK apps are served: the event API's answers then carry
    /// `X-Inngest-Server-Kind`, as Inngest's do (the SDKs check it).
    pub server_kind: Option<&'static str>,
}

impl ServerConfig {
    /// A configuration for a loopback server: no event key, no extra hosts.
    pub fn local(admin_token: impl Into<String>) -> ServerConfig {
        ServerConfig {
            admin_token: admin_token.into(),
            extra_hosts: Vec::new(),
            reads_need_token: false,
            extra_routes: None,
            server_kind: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub admin: AdminApi,
    pub api: Api,
    pub config: Arc<ServerConfig>,
}

/// The whole HTTP surface as an axum router: the event API and `/v1` over the API's engine,
/// and the admin API's commands.
pub fn router(api: Api, config: ServerConfig) -> Router {
    let engine = api.engine().clone();
    let state = AppState {
        admin: engine.admin(),
        engine,
        api,
        config: Arc::new(config),
    };
    routes::router(state)
}

/// Limits on connections and requests (see the module comment for why each exists).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to send a request's start line and headers; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    pub body_timeout: Duration,
    /// Longest time from a request's headers to its response's headers.
    pub request_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a shutdown waits for open connections before closing them.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Set in every request's extensions by [`serve`]: flips to `true` when the server starts
/// shutting down, so that long-lived answers (the change feed's event stream) end.
#[derive(Clone)]
pub struct ShuttingDown(pub tokio::sync::watch::Receiver<bool>);

/// Serves until `shutdown` resolves, then lets in-flight requests finish (up to
/// [`Limits::shutdown_grace`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Limits::default(), shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes::outer_layers(router, &limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // A client may shut down its sending side once the request is out (`nc -N`, some
        // scripts) and still expects its answer.
        .half_close(true)
        .max_buf_size(256 * 1024);
    let mut connections = tokio::task::JoinSet::new();
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot before accepting: at the cap, new clients wait in
        // the kernel's backlog instead of holding a task each.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let local = match stream.local_addr() {
            Ok(l) => l,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo { peer, local };
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let stopping_rx = stopping_rx.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
                });
                req.extensions_mut().insert(info);
                req.extensions_mut()
                    .insert(ShuttingDown(stopping_rx.clone()));
                router.clone().oneshot(req)
            });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
        // Forget finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Streams (the change feed) end; requests in flight finish.
    let _ = stopping.send(true);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}
