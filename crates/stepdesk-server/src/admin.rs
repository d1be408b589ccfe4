//! The admin API over HTTP: a thin adapter over [`stepdesk_api::Api`].
//!
//! - One REST route per command of the registry ([`stepdesk_api::COMMANDS`]): its method and
//!   path, params from the path and the query string (reads) or the JSON body (writes).
//! - `POST /api/rpc/{command}` with the params as a JSON body: the console's transport in a
//!   browser (the same shape as the window's `admin` command).
//! - `GET /api/admin/changes`: the live change feed, as Server-Sent Events.
//!
//! Writes need the admin token. Reads need it too when Stepdesk listens beyond loopback
//! (the request guard enforces that for every `/api/` read).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, post, MethodFilter};
use axum::{Json, Router};
use serde_json::{Map, Value};
use stepdesk_api::{ApiError as CallError, CallCtx, CommandSpec, Kind, Origin, COMMANDS};

use crate::guard::has_admin_token;
use crate::routes::body_bytes;
use crate::{ApiError, AppState};

/// The admin routes, generated from the registry.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/api/rpc/{command}", post(rpc))
        .route("/api/admin/changes", axum::routing::get(changes));
    for spec in COMMANDS {
        let filter = match spec.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "DELETE" => MethodFilter::DELETE,
            other => unreachable!("command {} has method {other}", spec.name),
        };
        router = router.route(
            spec.path,
            on(
                filter,
                move |state: State<AppState>,
                      path: Option<Path<HashMap<String, String>>>,
                      query: RawQuery,
                      headers: HeaderMap,
                      body: Result<Bytes, BytesRejection>| {
                    rest(spec, state, path, query, headers, body)
                },
            ),
        );
    }
    router
}

/// Who is calling, for the audit trail: the CLI and the console say so in
/// `X-Stepdesk-Client`; anything else is an HTTP client.
fn origin(headers: &HeaderMap) -> Origin {
    match headers
        .get("x-stepdesk-client")
        .and_then(|v| v.to_str().ok())
    {
        Some("cli") => Origin::Cli,
        Some("console") => Origin::Browser,
        _ => Origin::Http,
    }
}

fn call_error(e: CallError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, e.to_string())
}

/// Writes need the admin token. In a read-only inspection they are refused first, token or
/// not: nobody has the inspection's token, and no token could make a write possible.
fn authorize(s: &AppState, spec: &CommandSpec, headers: &HeaderMap) -> Result<(), ApiError> {
    if spec.kind == Kind::Write && s.api.is_read_only() {
        return Err(call_error(stepdesk_api::ApiError::ReadOnly(format!(
            "`{}` would change data; this copy is opened for inspection only",
            spec.name
        ))));
    }
    if spec.kind == Kind::Write && !has_admin_token(headers, &s.config.admin_token) {
        let message = if headers.contains_key(axum::http::header::AUTHORIZATION) {
            "the admin token is wrong"
        } else {
            "this route needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it"
        };
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, message));
    }
    Ok(())
}

/// A JSON object from a request body: empty means `{}`; repeated keys are refused.
fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match stepdesk_engine::event::parse_json_strict(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

async fn rest(
    spec: &'static CommandSpec,
    State(s): State<AppState>,
    path: Option<Path<HashMap<String, String>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match rest_call(spec, &s, path, query, &headers, body).await {
        Ok(value) => (
            StatusCode::from_u16(spec.status).unwrap_or(StatusCode::OK),
            Json(value),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rest_call(
    spec: &'static CommandSpec,
    s: &AppState,
    path: Option<Path<HashMap<String, String>>>,
    query: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    authorize(s, spec, headers)?;
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let params = if matches!(spec.method, "GET" | "DELETE") {
        // The query string, with the path's params, parsed into the command's params type.
        // An empty value (`?function_id=`) means "not given", as a form would send it.
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?
                .into_iter()
                .filter(|(k, v)| !v.is_empty() && !path.contains_key(k))
                .collect();
        pairs.extend(path);
        let qs = serde_urlencoded::to_string(&pairs)
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
        stepdesk_api::query_params(spec.name, &qs).map_err(call_error)?
    } else {
        let body = body_bytes(body)?;
        let mut object = body_object(&body)?;
        for (k, v) in path {
            match object.get(&k) {
                Some(Value::String(given)) if *given != v => {
                    return Err(ApiError::bad_request(format!(
                        "`{k}` is `{v}` in the path but `{given}` in the body"
                    )))
                }
                _ => {
                    object.insert(k, Value::String(v));
                }
            }
        }
        Value::Object(object)
    };
    s.api
        .call(
            spec.name,
            params,
            CallCtx {
                origin: origin(headers),
            },
        )
        .await
        .map_err(call_error)
}

/// `POST /api/rpc/{command}`: the params as a JSON body, the result as JSON.
async fn rpc(
    State(s): State<AppState>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let spec = CommandSpec::find(&command).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown admin method `{command}`"),
        )
    })?;
    authorize(&s, spec, &headers)?;
    let body = body_bytes(body)?;
    let params = Value::Object(body_object(&body)?);
    let origin = match origin(&headers) {
        Origin::Http => Origin::Browser,
        o => o,
    };
    s.api
        .call(spec.name, params, CallCtx { origin })
        .await
        .map(Json)
        .map_err(call_error)
}

/// `GET /api/admin/changes`: the live change feed as Server-Sent Events: `event: changes`
/// with a JSON [`stepdesk_api::ChangeNotice`] after each committed transaction (coalesced),
/// `event: lagged` when this client fell behind (refetch everything shown), and a keep-alive
/// comment every 15 s. The stream ends when the server shuts down.
async fn changes(
    State(s): State<AppState>,
    shutting_down: Option<axum::Extension<crate::ShuttingDown>>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    let rx = s.engine.subscribe();
    let stop = shutting_down.map(|axum::Extension(s)| s.0);
    let stream = futures::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        let next = match &mut stop {
            Some(stop) if *stop.borrow() => return None,
            Some(stop) => tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return None,
            },
            None => rx.recv().await,
        };
        let event = match next {
            Ok(changes) => {
                let notice = stepdesk_api::ChangeNotice::from(&changes);
                let data = serde_json::to_string(&notice).unwrap_or_default();
                Event::default().event("changes").data(data)
            }
            Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), (rx, stop)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}
