//! Request guards.
//!
//! - [`check_request`]: one unambiguous `Host` naming an address this connection serves
//!   (the DNS-rebinding defence), a same-origin `Origin` on anything that changes state (the
//!   cross-site request defence), and the admin token on reads when Stepdesk listens beyond
//!   loopback.
//! - [`require_admin`]: the admin bearer token.
//! - [`json_errors`]: every error answer is JSON, even the ones axum and hyper write
//!   themselves (405, a path that does not decode, a timeout).
//!
//! What the `Host` check does and does not do: it stops a web page that rebinds its own
//! domain to this machine (the browser then sends that domain as the Host). It is not
//! authentication: any non-browser client can send any Host. So nothing is granted for
//! *saying* `localhost`: loopback names are accepted only on connections that really arrived
//! on a loopback address, and what a request may do depends on the admin token.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use stepdesk_engine::secrets::constant_time_eq;

use crate::{ApiError, AppState};

/// Where a connection came in. [`crate::serve`] puts it in every request's extensions.
/// A request without it (a router driven in-process, in tests) counts as a loopback one.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl ConnInfo {
    fn of(req: &Request) -> ConnInfo {
        req.extensions()
            .get::<ConnInfo>()
            .copied()
            .unwrap_or(ConnInfo {
                peer: SocketAddr::from(([127, 0, 0, 1], 0)),
                local: SocketAddr::from(([127, 0, 0, 1], 0)),
            })
    }

    /// The address the client connected to, with IPv4-mapped IPv6 as plain IPv4.
    fn local_ip(&self) -> IpAddr {
        self.local.ip().to_canonical()
    }
}

/// Host names that reach the server on a loopback connection.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Splits a `Host` value (or an Origin's authority) into its lower-cased name and port.
/// `None` when it is not a plausible `host[:port]`.
pub(crate) fn split_host(host: &str) -> Option<(String, Option<u16>)> {
    let host = host.trim();
    if host.is_empty() || host.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            "" => (name, None),
            r => (name, Some(r.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    if name.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

/// The Host name of an IP address as clients write it (`[...]` around IPv6).
fn ip_host_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Whether `host` names what this connection serves: loopback names on a loopback
/// connection, the address the client connected to, or an `--allow-host` name.
pub(crate) fn host_allowed(host: &str, conn: &ConnInfo, extra: &[String]) -> bool {
    let Some((name, _port)) = split_host(host) else {
        return false;
    };
    // An allowed name may be given with a port (`box.lan:8288`); only the name counts, as a
    // proxy or tunnel may expose another port.
    if extra
        .iter()
        .filter_map(|h| split_host(h))
        .any(|(allowed, _)| allowed == name)
    {
        return true;
    }
    let local = conn.local_ip();
    if local.is_loopback()
        && (LOOPBACK_NAMES.contains(&name.as_str()) || name.ends_with(".localhost"))
    {
        return true;
    }
    name == ip_host_name(local)
}

/// Whether an `Origin` is this server itself: its scheme is http(s) and its authority is
/// exactly the request's `Host` (so another port on the same machine, such as a dev
/// server on localhost:3000, is another origin). The desktop window's own origins pass.
pub(crate) fn origin_allowed(origin: &str, host: &str) -> bool {
    if matches!(origin, "tauri://localhost" | "http://tauri.localhost") {
        return true;
    }
    let (scheme, authority) = match origin.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest.strip_suffix('/').unwrap_or(rest)),
        _ => return false,
    };
    let (Some((oname, oport)), Some((hname, hport))) = (split_host(authority), split_host(host))
    else {
        return false;
    };
    let default = if scheme == "https" { 443 } else { 80 };
    oname == hname && oport.unwrap_or(default) == hport.unwrap_or(default)
}

/// The one value of a header that must not repeat; `Err` if it repeats or is not text.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, String> {
    let mut values = headers.get_all(&name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("the {name} header must appear once"));
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| format!("the {name} header is not valid text"))
        })
        .transpose()
}

/// Paths whose reads reveal run data or user ids. `/api/inngest` (Stepdesk's functions
/// served to an Inngest server, `stepdesk-serve`) is not one: an Inngest server reads its
/// introspection without Stepdesk's admin token, and the route checks its own signatures.
fn is_data_path(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/inngest")
        || path.starts_with("/v1/")
        || path == "/v1"
}

/// The bearer token of a request, if it sent one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the request carries the admin token.
pub(crate) fn has_admin_token(headers: &HeaderMap, admin_token: &str) -> bool {
    bearer(headers).is_some_and(|t| constant_time_eq(t, admin_token))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// The guards every request passes first (see the module comment).
pub(crate) async fn check_request(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let conn = ConnInfo::of(&req);
    let host = match single(req.headers(), header::HOST) {
        Ok(Some(h)) => h.to_string(),
        Ok(None) => return refuse(StatusCode::BAD_REQUEST, "the Host header is missing"),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    // An absolute-form target (`GET http://other/...`) names its own host: it must be the
    // same as the Host header, or the two could be checked and used inconsistently.
    if let Some(authority) = req.uri().authority() {
        if !authority.as_str().eq_ignore_ascii_case(&host) {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the request target names `{authority}` but the Host header is `{host}`"),
            );
        }
    }
    if !host_allowed(&host, &conn, &state.config.extra_hosts) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "host `{host}` is not allowed: Stepdesk answers only requests addressed to the address it listens on (loopback names on loopback); start it with --allow-host NAME to accept another name"
            ),
        );
    }
    // A web page can send a simple cross-site POST (no preflight) to a local server:
    // refuse state-changing requests whose Origin is not this very server. SDKs and curl
    // send no Origin; the console's own requests carry this server's origin.
    let origin = match single(req.headers(), header::ORIGIN) {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && origin.is_some_and(|o| !origin_allowed(o, &host)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-site request refused: the Origin is not this server",
        );
    }
    if state.config.reads_need_token
        && is_data_path(req.uri().path())
        && !has_admin_token(req.headers(), &state.config.admin_token)
        && safe
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Stepdesk listens beyond loopback, so reading run data and users needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it",
        );
    }
    next.run(req).await
}

/// Requires `Authorization: Bearer <admin token>`.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match bearer(req.headers()) {
        Some(t) if constant_time_eq(t, &state.config.admin_token) => next.run(req).await,
        Some(_) => refuse(StatusCode::UNAUTHORIZED, "the admin token is wrong"),
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "this route needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it",
        ),
    }
}

/// Most bytes of a refused body read and thrown away after the `413` (see below).
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// Longest time spent doing so.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a body whose declared length is over the limit before reading any of it: a
/// client that announces 10 GB and sends nothing gets `413` at once instead of a hang.
///
/// The answer goes out at once, but the connection keeps reading (and discarding) the body
/// for a while in the background, up to [`DRAIN_BYTES`] or [`DRAIN_TIME`]: closing a socket
/// with unread data makes the kernel reset it, and a client still writing its body (most
/// HTTP clients write it all before reading) would then get a broken pipe instead of the 413.
pub(crate) async fn check_content_length(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        let body = req.into_body();
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            let mut body = body;
            let mut read = 0usize;
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > DRAIN_BYTES {
                        break;
                    }
                }
            })
            .await;
        });
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes",
                crate::MAX_BODY_BYTES
            ),
        );
    }
    next.run(req).await
}

/// Turns every error answer that is not JSON (axum's 405 and path rejections, a timeout's
/// 408, a 404 from a nested router) into `{"error": ..., "status": N}`.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("method {method} is not allowed on this route (allowed: {allowed})")
        }
        StatusCode::REQUEST_TIMEOUT => "the request took too long to arrive".to_string(),
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut out = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::CONNECTION, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The answer to a panic in a handler: a JSON 500 (the panic itself is logged).
pub(crate) fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: the request handler failed (see Stepdesk's log)",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(local: &str) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: local.parse().unwrap(),
        }
    }

    #[test]
    fn loopback_names_pass_only_on_loopback_connections() {
        let lo = conn("127.0.0.1:8288");
        for ok in [
            "localhost",
            "localhost:8288",
            "LOCALHOST:8288",
            "127.0.0.1:8288",
            "[::1]:8288",
            "[::1]",
            "app.localhost:1",
        ] {
            assert!(host_allowed(ok, &lo, &[]), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8288",
            "127.0.0.1.evil.com",
            "192.168.1.2:8288",
            "localhost.evil.com",
            "0.0.0.0:8288",
            "localhost:99999",
            "localhost:80:80",
            "user@localhost",
            "",
        ] {
            assert!(!host_allowed(bad, &lo, &[]), "{bad}");
        }
        assert!(host_allowed("box.lan:8288", &lo, &["box.lan".into()]));
    }

    #[test]
    fn a_lan_connection_accepts_only_its_own_address() {
        // `--host 0.0.0.0`: a LAN client connected to 192.168.1.5.
        let lan = conn("192.168.1.5:8288");
        assert!(host_allowed("192.168.1.5:8288", &lan, &[]));
        for bad in ["localhost:8288", "127.0.0.1:8288", "0.0.0.0:8288", "[::1]"] {
            assert!(!host_allowed(bad, &lan, &[]), "{bad}");
        }
        assert!(host_allowed("box.lan", &lan, &["box.lan".into()]));
        // IPv6 binds compare with brackets, and a v4-mapped address as IPv4.
        let v6 = conn("[fd00::5]:8288");
        assert!(host_allowed("[fd00::5]:8288", &v6, &[]));
        assert!(!host_allowed("fd00::5", &v6, &[]));
        let mapped = conn("[::ffff:192.168.1.5]:8288");
        assert!(host_allowed("192.168.1.5:8288", &mapped, &[]));
    }

    #[test]
    fn only_this_servers_origin_passes() {
        for (origin, host) in [
            ("http://127.0.0.1:8288", "127.0.0.1:8288"),
            ("http://localhost:8288", "localhost:8288"),
            ("http://LOCALHOST:8288/", "localhost:8288"),
            ("tauri://localhost", "127.0.0.1:8288"),
            ("http://[::1]:8288", "[::1]:8288"),
            ("http://localhost", "localhost:80"),
            ("https://box.lan", "box.lan"),
        ] {
            assert!(origin_allowed(origin, host), "{origin} on {host}");
        }
        for (origin, host) in [
            ("https://evil.com", "127.0.0.1:8288"),
            ("http://127.0.0.1.evil.com", "127.0.0.1:8288"),
            ("null", "127.0.0.1:8288"),
            ("file://", "127.0.0.1:8288"),
            // Same host, another port: another origin (a dev server on :3000).
            ("http://localhost:3000", "localhost:8288"),
            ("http://127.0.0.1:3000", "127.0.0.1:8288"),
            ("http://localhost", "localhost:8288"),
            ("http://127.0.0.1:8288", "localhost:8288"),
        ] {
            assert!(!origin_allowed(origin, host), "{origin} on {host}");
        }
    }

    #[test]
    fn bearer_tokens_parse_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
