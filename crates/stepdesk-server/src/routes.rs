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
use serde_json::{json, Map, Value};

use stepdesk_engine::admin::{EventQuery, PageSize, RunQuery, RunSummary, StoredEvent};
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
    let admin_mutations = Router::new()
        .route("/api/admin/functions/{id}/invoke", post(invoke_function))
        .route("/api/admin/runs/{id}/cancel", post(cancel_run))
        .route("/api/admin/runs/{id}/rerun", post(rerun))
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
        .route("/api/admin/info", get(info))
        .route("/api/admin/functions", get(functions))
        .route("/api/admin/runs", get(runs))
        .route("/api/admin/runs/{id}", get(run))
        .route("/api/admin/events", get(events))
        .route("/api/admin/events/{id}", get(event))
        .route("/api/admin/events/{id}/runs", get(event_runs))
        .merge(admin_mutations)
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

async fn info(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "name": "Stepdesk",
        "version": env!("CARGO_PKG_VERSION"),
        "functions": s.engine.registry().all().len(),
        "event_key_required": s.config.event_key.is_set(),
    }))
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
    let admin = has_admin_token(&headers, &s.config.admin_token);
    let key_matches = s
        .config
        .event_key
        .get()
        .map(|expected| constant_time_eq(&key, &expected));
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
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(e) => return event_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.engine.send_events_from(events, sender).await {
        Ok(ids) => Json(json!({"ids": ids, "status": 200})).into_response(),
        Err(SendError::Invalid(e)) => event_error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(SendError::Unauthorized(e)) => event_error(StatusCode::UNAUTHORIZED, e),
        Err(SendError::Store(e)) => ApiError::from(e).into_response(),
        Err(SendError::Unavailable(e)) => event_error(StatusCode::SERVICE_UNAVAILABLE, e),
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
            // As before the console's filters: every event.
            include_internal: true,
            from: None,
            to: None,
            name: q.name,
            cursor: q.cursor,
            limit: Some(limit),
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

// ---- Admin API ------------------------------------------------------------------------

async fn functions(State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.admin.functions()))
}

#[derive(Deserialize)]
struct RunsParams {
    function_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A time as milliseconds since the epoch or RFC 3339.
fn parse_time(field: &str, value: Option<String>) -> ApiResult<Option<i64>> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(&v)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{field}` must be milliseconds since the epoch or an RFC 3339 time, not `{v}`"
            ))
        })
}

async fn runs(
    State(s): State<AppState>,
    q: Result<Query<RunsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let page = s
        .admin
        .runs(RunQuery {
            function_id: q.function_id.filter(|f| !f.is_empty()),
            status: q
                .status
                .filter(|f| !f.is_empty())
                .map(|s| s.parse())
                .transpose()
                .map_err(ApiError::bad_request)?
                .into_iter()
                .collect(),
            trigger_kind: None,
            event_name: None,
            from: parse_time("from", q.from)?,
            to: parse_time("to", q.to)?,
            cursor: q.cursor.filter(|f| !f.is_empty()),
            limit: q.limit,
        })
        .await?;
    Ok(Json(json!(page)))
}

async fn run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.run(&id).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InvokeBody {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
}

fn object(field: &str, v: Option<Value>) -> ApiResult<Map<String, Value>> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad_request(format!(
            "`{field}` must be a JSON object"
        ))),
    }
}

async fn invoke_function(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = body_bytes(body)?;
    let parsed: InvokeBody = if body.iter().all(u8::is_ascii_whitespace) {
        InvokeBody::default()
    } else {
        // Strict: a repeated key is refused, not silently resolved to its last value.
        let value = stepdesk_engine::event::parse_json_strict(&body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?;
        serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?
    };
    let started = s
        .admin
        .invoke(
            &id,
            object("data", parsed.data)?,
            object("user", parsed.user)?,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(started))))
}

async fn cancel_run(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.cancel(&id).await?)))
}

async fn rerun(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::ACCEPTED, Json(json!(s.admin.rerun(&id).await?))))
}

#[derive(Deserialize)]
struct EventsParams {
    name: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn events(
    State(s): State<AppState>,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let page = s
        .admin
        .events(EventQuery {
            // As before the console's filters: every event.
            include_internal: true,
            from: None,
            to: None,
            name: q.name.filter(|n| !n.is_empty()),
            cursor: q.cursor,
            limit: q.limit,
        })
        .await?;
    Ok(Json(json!(page)))
}

async fn event(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.event(&id).await?)))
}

async fn event_runs(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.event_runs(&id).await?)))
}
