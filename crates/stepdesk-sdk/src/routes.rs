//! The routes SDK apps call on Stepdesk, as on `inngest dev`: `POST /fn/register` (sync),
//! `DELETE /fn/remove`, `POST /invoke/{slug}`, and JS v4's checkpoints
//! (`POST /v1/checkpoint/{runId}/async`, see [`crate::checkpoint`]), and the state of a run
//! whose call request left it out (`GET /v0/runs/{runId}/batch` and `/actions`, see
//! [`crate::offload`]). Every answer carries
//! `X-Inngest-Server-Kind`; with a signing key they require it as a Bearer token, plain or
//! hashed, as Inngest's servers do. Error bodies always hold `status`: the JS SDK takes the
//! sync's outcome from that field, not from the HTTP status.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stepdesk_engine::Engine;
use stepdesk_inngest::sign;

use crate::apps::{AppError, Apps};

#[derive(Clone)]
struct SdkState {
    apps: Apps,
    engine: Engine,
    admin_token: String,
}

/// The SDK-facing routes, to merge into the server's router. `/fn/register` is open in dev
/// mode (SDKs sync there with no credential, as on `inngest dev`); removing an app and
/// starting a function by `/invoke` need the signing key (cloud mode) or the admin token: an
/// invocation is trusted by the engine's gates (it may carry a Readwise `apiKey`), so it
/// must not be open to any local process.
pub fn router(apps: Apps, engine: Engine, admin_token: String) -> Router {
    Router::new()
        .route("/fn/register", post(register))
        .route("/fn/remove", delete(remove))
        .route("/invoke/{slug}", post(invoke))
        .route("/v1/checkpoint/{run_id}/async", post(checkpoint))
        .route("/v0/runs/{run_id}/batch", get(run_batch))
        .route("/v0/runs/{run_id}/actions", get(run_actions))
        // Inngest features Stepdesk does not have yet: a clear 501 rather than "no such
        // route", and a warning in Stepdesk's log (see `not_supported`).
        .route("/v1/checkpoint", post(not_supported_durable_endpoint))
        .route(
            "/v1/checkpoint/{run_id}/steps",
            post(not_supported_durable_endpoint),
        )
        .route("/v1/realtime/{*rest}", any(not_supported_realtime))
        .with_state(SdkState {
            apps,
            engine,
            admin_token,
        })
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// For the routes that change things on Stepdesk's side: the admin token always, or the
/// signing key (plain or hashed) when one is set.
fn refusal_unless_admin(s: &SdkState, headers: &HeaderMap) -> Option<Response> {
    let presented = bearer(headers);
    if stepdesk_engine::secrets::constant_time_eq(presented, &s.admin_token) {
        return None;
    }
    let config = s.apps.config();
    if config.signing_key.is_some() {
        return refusal(&s.apps, headers);
    }
    Some(error(
        config.server_kind(),
        StatusCode::UNAUTHORIZED,
        "this route needs the admin token: send `Authorization: Bearer <token>` \
         (`stepdesk admin-token` prints it)",
    ))
}

fn answer(kind: &'static str, status: StatusCode, body: Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut()
        .insert("x-inngest-server-kind", HeaderValue::from_static(kind));
    res
}

fn error(kind: &'static str, status: StatusCode, message: impl Into<String>) -> Response {
    answer(
        kind,
        status,
        json!({ "error": message.into(), "status": status.as_u16() }),
    )
}

/// An Inngest feature Stepdesk does not have yet: `501` with a JSON body that says so (the
/// SDKs put it in the error they raise), and a warning in the log, once per feature.
fn not_supported(kind: &'static str, feature: &'static str) -> Response {
    static WARNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.contains(&feature) {
        warned.push(feature);
        tracing::warn!("an app used {feature}, which Stepdesk does not support yet (answered 501)");
    }
    error(
        kind,
        StatusCode::NOT_IMPLEMENTED,
        format!("{feature}: not supported by Stepdesk yet"),
    )
}

/// `POST /v1/checkpoint` and `/v1/checkpoint/{runId}/steps`: JS v4 durable endpoints
/// (`inngest.endpoint`), runs that an HTTP request starts in the app itself.
async fn not_supported_durable_endpoint(State(s): State<SdkState>) -> Response {
    not_supported(
        s.apps.config().server_kind(),
        "durable endpoints (`inngest.endpoint`, `POST /v1/checkpoint`)",
    )
}

/// `/v1/realtime/*`: JS v4 realtime (`step.realtime.publish`, `getSubscriptionToken`).
async fn not_supported_realtime(State(s): State<SdkState>) -> Response {
    not_supported(
        s.apps.config().server_kind(),
        "realtime (`step.realtime.publish`, subscription tokens, `/v1/realtime`)",
    )
}

fn app_error(kind: &'static str, e: AppError) -> Response {
    let status = match &e {
        AppError::Invalid(_) => StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(kind, status, e.to_string())
}

/// With a signing key, the request must carry it (or its hash) as a Bearer token: the
/// refusal to send when it does not.
fn refusal(apps: &Apps, headers: &HeaderMap) -> Option<Response> {
    let config = apps.config();
    let Some(key) = config.signing_key.as_deref() else {
        // A dev server: SDKs send `Bearer undefined` or nothing at all.
        return None;
    };
    let presented = bearer(headers);
    let keys = std::iter::once(key).chain(config.signing_key_fallback.as_deref());
    for k in keys {
        if sign::matches_bearer(presented, k) {
            return None;
        }
    }
    Some(error(
        config.server_kind(),
        StatusCode::UNAUTHORIZED,
        "a signing key is required: send `Authorization: Bearer <signing key or its hash>` \
         (the SDKs do when INNGEST_SIGNING_KEY is set)",
    ))
}

async fn register(State(s): State<SdkState>, headers: HeaderMap, body: Bytes) -> Response {
    let kind = s.apps.config().server_kind();
    if let Some(res) = refusal(&s.apps, &headers) {
        return res;
    }
    let expected = headers
        .get("x-inngest-expected-server-kind")
        .and_then(|v| v.to_str().ok());
    match s.apps.register(&body, expected).await {
        Ok(reply) => answer(
            kind,
            StatusCode::OK,
            serde_json::to_value(reply).unwrap_or_default(),
        ),
        Err(e) => app_error(kind, e),
    }
}

#[derive(Deserialize)]
struct RemoveQuery {
    url: Option<String>,
}

async fn remove(
    State(s): State<SdkState>,
    headers: HeaderMap,
    Query(q): Query<RemoveQuery>,
) -> Response {
    let kind = s.apps.config().server_kind();
    if let Some(res) = refusal_unless_admin(&s, &headers) {
        return res;
    }
    let Some(url) = q.url.filter(|u| !u.is_empty()) else {
        return error(
            kind,
            StatusCode::BAD_REQUEST,
            "give the app's URL: ?url=...",
        );
    };
    match s.apps.remove(&url).await {
        Ok(app) => answer(kind, StatusCode::OK, json!({ "ok": true, "app": app })),
        Err(e) => app_error(kind, e),
    }
}

/// `POST /invoke/{slug}`: starts a function with this event's `data` (and `user`), as the
/// dev server's invoke API does; answers the invocation event's id and the run's.
async fn invoke(
    State(s): State<SdkState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let kind = s.apps.config().server_kind();
    if let Some(res) = refusal_unless_admin(&s, &headers) {
        return res;
    }
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    kind,
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                )
            }
        }
    };
    let field = |name: &str| -> Result<Map<String, Value>, String> {
        match payload.get(name) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(_) => Err(format!("`{name}` must be an object")),
        }
    };
    let (data, user) = match (field("data"), field("user")) {
        (Ok(d), Ok(u)) => (d, u),
        (Err(m), _) | (_, Err(m)) => return error(kind, StatusCode::BAD_REQUEST, m),
    };
    match s.engine.admin().invoke(&slug, data, user).await {
        Ok(started) => answer(
            kind,
            StatusCode::OK,
            json!({ "id": started.event_id, "run_id": started.run_id, "status": 200 }),
        ),
        Err(e) => {
            let status = match e {
                stepdesk_engine::admin::AdminError::NotFound(_) => StatusCode::NOT_FOUND,
                stepdesk_engine::admin::AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(kind, status, e.to_string())
        }
    }
}

/// `POST /v1/checkpoint/{runId}/async`: steps a JS v4 SDK ran inside the execution's call
/// request. `409` when no such execution is in flight (the SDK then stops executing).
/// Anyone who can reach the route must also know the execution's random `qi_id`, which only
/// the app it was sent to has; with a signing key the Bearer key is required too.
async fn checkpoint(
    State(s): State<SdkState>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    body: Bytes,
) -> Response {
    let kind = s.apps.config().server_kind();
    if let Some(res) = refusal(&s.apps, &headers) {
        return res;
    }
    let body: crate::checkpoint::CheckpointBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                kind,
                StatusCode::BAD_REQUEST,
                format!("the body is not a checkpoint: {e}"),
            )
        }
    };
    match s.apps.live().checkpoint(&run_id, body) {
        Ok(n) => answer(kind, StatusCode::OK, json!({ "ok": true, "steps": n })),
        Err(e @ crate::checkpoint::CheckpointError::Stale(_)) => {
            error(kind, StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => error(kind, StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /v0/runs/{runId}/batch`: the events of a run whose call request is in flight
/// without them (`use_api`); `410` otherwise.
async fn run_batch(
    State(s): State<SdkState>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Response {
    offloaded(&s, &headers, &run_id, s.apps.offloaded().events(&run_id))
}

/// `GET /v0/runs/{runId}/actions`: the step results of such a run (the `steps` map).
async fn run_actions(
    State(s): State<SdkState>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Response {
    offloaded(&s, &headers, &run_id, s.apps.offloaded().steps(&run_id))
}

fn offloaded(s: &SdkState, headers: &HeaderMap, run_id: &str, state: Option<Value>) -> Response {
    let kind = s.apps.config().server_kind();
    if let Some(res) = refusal(&s.apps, headers) {
        return res;
    }
    match state {
        Some(v) => answer(kind, StatusCode::OK, v),
        None => error(
            kind,
            StatusCode::GONE,
            format!("run {run_id} has no call request in flight whose state was left out"),
        ),
    }
}
