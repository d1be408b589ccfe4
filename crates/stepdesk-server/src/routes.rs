//! Routes and their handlers.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use stepdesk_engine::admin::{EventQuery, PageSize, RunSummary, StoredEvent};
use stepdesk_engine::event::parse_events;
use stepdesk_engine::secrets::constant_time_eq;
use stepdesk_engine::time::to_rfc3339;
use stepdesk_engine::{SendError, Sender};

use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::guard::{
    check_content_length, check_request, has_admin_token, json_errors, panic_response,
    require_admin,
};
use crate::{ui, ApiError, AppState, MAX_BODY_BYTES};

pub(crate) fn router(state: AppState) -> Router {
    let extra = state.config.extra_routes.clone().unwrap_or_default();
    let v1_mutations = Router::new()
        .route("/v1/runs/{id}", axum::routing::delete(cancel_run))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));

    Router::new()
        .route("/health", get(health))
        .route("/e", post(missing_event_key))
        .route("/e/", post(missing_event_key))
        .route("/e/{key}", post(send_events))
        .route("/v1/events", get(v1_events))
        .route("/v1/events/{id}", get(v1_event))
        .route("/v1/events/{id}/runs", get(v1_event_runs))
        .route("/v1/runs/{id}", get(v1_run))
        .merge(v1_mutations)
        .merge(crate::admin::routes())
        .merge(ui::router())
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost last: the Host/Origin guards run before the body size is judged.
        .layer(middleware::from_fn(check_content_length))
        .layer(middleware::from_fn_with_state(state, check_request))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(json_errors))
}

/// The layers that depend on the serving limits: a deadline for each request (a `408`,
/// made JSON like every other error).
pub(crate) fn outer_layers(router: Router, limits: &crate::Limits) -> Router {
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(json_errors))
}

type ApiResult<T> = Result<T, ApiError>;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

pub(crate) fn body_bytes(b: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                status,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        // A body that stalls (see `Limits::body_timeout`) is a timeout, not a bad request.
        let text = e.body_text();
        if text.contains("timeout") {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving",
            );
        }
        ApiError::new(status, text)
    })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

async fn health() -> Json<Value> {
    Json(json!({"status": 200, "message": "OK"}))
}

// ---- Event API ------------------------------------------------------------------------

async fn missing_event_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Event key is required: POST /e/{eventKey}",
    )
}

/// `POST /e/{key}`. With an event key configured, only that key (or the admin token) is
/// accepted. Without one any key is (dev mode), but such an anonymous sender may not hand
/// Stepdesk secrets: see [`Sender`].
async fn send_events(
    State(s): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut res = accept_events(&s, &key, &headers, body).await;
    if let Some(kind) = s.config.server_kind {
        res.headers_mut().insert(
            "x-inngest-server-kind",
            axum::http::HeaderValue::from_static(kind),
        );
    }
    res
}

async fn accept_events(
    s: &AppState,
    key: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let admin = has_admin_token(headers, &s.config.admin_token);
    let key_matches = s
        .api
        .event_key()
        .get()
        .map(|expected| constant_time_eq(key, &expected));
    if key_matches == Some(false) && !admin {
        return event_error(StatusCode::UNAUTHORIZED, "Event key not found".into());
    }
    let sender = if admin || key_matches == Some(true) {
        Sender::Trusted
    } else {
        Sender::Anonymous
    };
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut events = match parse_events(&body) {
        Ok(events) => events,
        Err(e) => return event_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // The SDKs' seed for the events' ids: a retry of this request names the same events.
    let seeded = headers
        .get("x-inngest-event-id-seed")
        .and_then(|v| v.to_str().ok())
        .and_then(|seed| {
            stepdesk_engine::event::seeded_ids(seed, events.len(), stepdesk_engine::time::now_ms())
        });
    if let Some(ids) = seeded {
        for (event, id) in events.iter_mut().zip(ids) {
            event.internal_id = Some(id);
        }
    }
    match s.engine.send_events_from(events, sender).await {
        Ok(ids) => Json(json!({"ids": ids, "status": 200})).into_response(),
        Err(SendError::Invalid(e)) => event_error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(SendError::Unauthorized(e)) => event_error(StatusCode::UNAUTHORIZED, e),
        Err(SendError::Store(e)) => ApiError::from(e).into_response(),
        Err(SendError::Unavailable(e)) => event_error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ SendError::ReadOnly) => event_error(StatusCode::FORBIDDEN, e.to_string()),
    }
}

/// The event API's error shape: Inngest's `{ids, status, error}`.
fn event_error(status: StatusCode, error: String) -> Response {
    if status.is_server_error() {
        tracing::error!(%status, %error, "event request failed");
    }
    (
        status,
        Json(json!({"ids": [], "status": status.as_u16(), "error": error})),
    )
        .into_response()
}

// ---- Inngest-compatible read API (/v1) ------------------------------------------------

fn envelope(data: Value) -> Json<Value> {
    Json(
        json!({"data": data, "metadata": {"fetched_at": to_rfc3339(stepdesk_engine::time::now_ms()), "cached_until": null}}),
    )
}

fn v1_event_json(e: &StoredEvent) -> Value {
    json!({
        "internal_id": e.internal_id,
        "id": e.id,
        "name": e.name,
        "data": e.data,
        "user": e.user,
        "ts": e.ts,
        "v": e.v,
        "received_at": to_rfc3339(e.received_at),
    })
}

fn v1_run_json(r: &RunSummary, output: Option<&Value>, error: Option<&Value>) -> Value {
    let mut v = json!({
        "run_id": r.id,
        "function_id": r.function_id,
        "status": r.status,
        "run_started_at": to_rfc3339(r.started_at.unwrap_or(r.queued_at)),
        "ended_at": r.ended_at.map(to_rfc3339),
        "output": output,
        "event_id": r.event_id,
    });
    if let Some(err) = error {
        v["error"] = err.clone();
    }
    v
}

#[derive(Deserialize)]
struct V1EventsQuery {
    name: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `/v1/events`' page sizes: Inngest's (at most 100).
const V1_EVENTS_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};

async fn v1_events(
    State(s): State<AppState>,
    q: Result<Query<V1EventsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    // The admin API's paging convention (see `stepdesk_engine::admin`), with Inngest's sizes.
    let limit = V1_EVENTS_PAGE.limit(q.limit)?;
    let page = s
        .admin
        .events(EventQuery {
            name: q.name,
            cursor: q.cursor,
            limit: Some(limit),
            // Inngest's /v1 lists every event, its own included.
            include_internal: true,
            ..Default::default()
        })
        .await?;
    let mut body = envelope(Value::Array(
        page.events.iter().map(v1_event_json).collect(),
    ))
    .0;
    // `next_cursor`, as on every paged list; `cursor` too, for clients of the earlier shape.
    body["next_cursor"] = json!(page.next_cursor);
    body["cursor"] = json!(page.next_cursor);
    Ok(Json(body))
}

async fn v1_event(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(envelope(v1_event_json(&s.admin.event(&id).await?)))
}

async fn v1_event_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let runs = s.admin.event_runs(&id).await?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let detail = s.admin.run(&r.id).await?;
        out.push(v1_run_json(
            &r,
            detail.output.as_ref(),
            detail.error.as_ref(),
        ));
    }
    Ok(envelope(Value::Array(out)))
}

async fn v1_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let d = s.admin.run(&id).await?;
    Ok(envelope(v1_run_json(
        &d.summary,
        d.output.as_ref(),
        d.error.as_ref(),
    )))
}

async fn cancel_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.cancel(&id).await?)))
}
