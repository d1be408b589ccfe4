//! Request guards: the DNS-rebinding `Host` check and the admin bearer token.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use stepdesk_engine::secrets::constant_time_eq;

use crate::{ApiError, AppState};

/// Host names that always reach the server.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The host part of a `Host` header (without the port).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

pub(crate) fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    LOOPBACK_NAMES.contains(&name.as_str())
        || name.ends_with(".localhost")
        || extra.iter().any(|h| h.eq_ignore_ascii_case(&name))
}

/// An `Origin` header (`scheme://host[:port]`) naming this machine; the window's own
/// `tauri://localhost` too.
pub(crate) fn origin_allowed(origin: &str, extra: &[String]) -> bool {
    match origin.split_once("://") {
        Some(("http" | "https" | "tauri", rest)) => host_allowed(rest.trim_end_matches('/'), extra),
        _ => false,
    }
}

/// Rejects requests whose `Host` is not a loopback name: a web page that rebinds its own
/// domain to 127.0.0.1 still sends its domain as the Host, and is refused here.
pub(crate) async fn check_host(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    // A web page can send a simple cross-site POST (no preflight) to a loopback server:
    // refuse state-changing requests whose Origin is not this machine. SDKs and curl send
    // no Origin; the console's own requests carry a loopback one.
    let cross_site = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|origin| !origin_allowed(origin, &state.config.extra_hosts));
    if cross_site {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: the Origin is not this machine",
        )
        .into_response();
    }
    match host {
        Some(h) if host_allowed(&h, &state.config.extra_hosts) => next.run(req).await,
        Some(h) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!("host `{h}` is not allowed: Stepdesk answers only requests addressed to a loopback name"),
        )
        .into_response(),
        None => ApiError::bad_request("the Host header is missing").into_response(),
    }
}

/// Requires `Authorization: Bearer <admin token>`.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t, &state.config.admin_token) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "the admin token is wrong").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        for ok in [
            "localhost",
            "localhost:8288",
            "127.0.0.1:8288",
            "[::1]:8288",
            "[::1]",
            "app.localhost:1",
        ] {
            assert!(host_allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8288",
            "127.0.0.1.evil.com",
            "192.168.1.2:8288",
            "localhost.evil.com",
        ] {
            assert!(!host_allowed(bad, &[]), "{bad}");
        }
        assert!(host_allowed("box.lan:8288", &["box.lan".into()]));
    }

    #[test]
    fn only_local_origins_pass() {
        for ok in [
            "http://127.0.0.1:8288",
            "http://localhost:8288",
            "tauri://localhost",
            "http://[::1]:8288",
        ] {
            assert!(origin_allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "https://evil.com",
            "http://127.0.0.1.evil.com",
            "null",
            "file://",
            "http://192.168.1.5:8288",
        ] {
            assert!(!origin_allowed(bad, &[]), "{bad}");
        }
    }
}
