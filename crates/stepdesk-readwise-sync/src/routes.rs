//! HTTP routes: the seed's (`/api/inngest/trigger-readwise`, `/api/inngest/trigger-schedule`,
//! `/api/readwise`) and the admin routes for users, daily syncs and settings. Mutations need
//! the admin token.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use stepdesk_engine::secrets::constant_time_eq;
use stepdesk_server::ApiError;

use crate::events::event_types;
use crate::ReadwiseAdmin;

#[derive(Clone)]
struct RouteState {
    admin: ReadwiseAdmin,
    admin_token: String,
}

type ApiResult<T> = Result<T, ApiError>;

/// The Readwise routes, to merge into Stepdesk's server.
pub fn routes(admin: ReadwiseAdmin, admin_token: String) -> Router {
    Router::new()
        .route("/api/inngest/trigger-readwise", post(trigger_readwise))
        .route("/api/inngest/trigger-schedule", post(trigger_schedule))
        .route("/api/readwise", post(report_count))
        .route("/api/admin/users", get(list_users).post(add_user))
        // Nothing else lives under /api/admin/users/: every id there is a user's, including
        // one called `sync-all` (the daily sync is started with POST /api/admin/daily-syncs).
        .route("/api/admin/users/{id}", get(get_user).delete(remove_user))
        .route("/api/admin/users/{id}/check", post(check_user))
        .route("/api/admin/users/{id}/sync", post(sync_user))
        .route(
            "/api/admin/daily-syncs",
            get(daily_syncs).post(start_daily_sync),
        )
        .route("/api/admin/settings", get(get_settings).put(put_settings))
        .route(
            "/api/admin/event-types",
            get(|| async { Json(event_types()) }),
        )
        .with_state(RouteState { admin, admin_token })
}

fn authorize(s: &RouteState, headers: &HeaderMap) -> ApiResult<()> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t, &s.admin_token) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "the admin token is wrong")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it",
        )),
    }
}

/// Parses a JSON body, with errors that name the field and never echo values.
fn body<T: DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    allow_empty: bool,
) -> ApiResult<T> {
    let raw = raw.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let raw: &[u8] = if allow_empty && raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &raw
    };
    // Strict: a repeated key is refused, not silently resolved to its last value.
    let value: Value = stepdesk_engine::event::parse_json_strict(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // The path names the field (`userId: invalid type ...`); serde alone does not.
        let field = e.path().to_string();
        let detail = redact_serde(e.inner());
        ApiError::bad_request(if field.is_empty() || field == "." {
            format!("invalid body: {detail}")
        } else {
            format!("invalid body: `{field}`: {detail}")
        })
    })
}

/// serde's messages can quote the offending value (`invalid type: string "…"`): keep only
/// the kind of mistake and the field.
fn redact_serde(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find('"') {
        Some(i) if msg.starts_with("invalid type") || msg.starts_with("invalid value") => {
            let expected = msg.find("expected").map(|j| &msg[j..]).unwrap_or("");
            format!("{} {expected}", msg[..i].trim())
        }
        _ => msg,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerReadwise {
    #[serde(rename = "userId")]
    user_id: String,
    #[serde(rename = "apiKey", default)]
    api_key: Option<String>,
}

async fn trigger_readwise(
    State(s): State<RouteState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&s, &headers)?;
    let req: TriggerReadwise = body(raw, false)?;
    let sent = s
        .admin
        .sync_user(&req.user_id, req.api_key.as_deref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"eventId": sent.event_id, "ids": [sent.event_id], "status": 202})),
    ))
}

async fn trigger_schedule(
    State(s): State<RouteState>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&s, &headers)?;
    let sent = s.admin.sync_all().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"eventId": sent.event_id, "ids": [sent.event_id], "status": 202})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportCount {
    #[serde(rename = "userId")]
    user_id: String,
    #[serde(rename = "bookCount")]
    book_count: i64,
    #[serde(rename = "syncTime")]
    sync_time: String,
}

async fn report_count(
    State(s): State<RouteState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers)?;
    let req: ReportCount = body(raw, false)?;
    let at = chrono::DateTime::parse_from_rfc3339(&req.sync_time)
        .map_err(|_| {
            ApiError::bad_request(
                "`syncTime` must be an RFC 3339 time such as 2026-01-31T03:00:00Z",
            )
        })?
        .timestamp_millis();
    let user = s
        .admin
        .report_count(&req.user_id, req.book_count, at)
        .await?;
    Ok(Json(json!({"success": true, "user": user})))
}

async fn list_users(State(s): State<RouteState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.users().await?)))
}

async fn get_user(State(s): State<RouteState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.admin.user(&id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUser {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

async fn add_user(
    State(s): State<RouteState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&s, &headers)?;
    let req: AddUser = body(raw, false)?;
    let user = s
        .admin
        .add_user(&req.id, req.name.as_deref(), req.token.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!(user))))
}

async fn remove_user(
    State(s): State<RouteState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers)?;
    s.admin.remove_user(&id).await?;
    Ok(Json(json!({"removed": id})))
}

async fn check_user(
    State(s): State<RouteState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers)?;
    Ok(Json(json!(s.admin.check_user(&id).await?)))
}

async fn sync_user(
    State(s): State<RouteState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&s, &headers)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!(s.admin.sync_user(&id, None).await?)),
    ))
}

/// `POST /api/admin/daily-syncs`: starts the daily sync now.
async fn start_daily_sync(
    State(s): State<RouteState>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&s, &headers)?;
    Ok((StatusCode::ACCEPTED, Json(json!(s.admin.sync_all().await?))))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn daily_syncs(
    State(s): State<RouteState>,
    q: Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))?;
    Ok(Json(json!(s.admin.daily_syncs(q.limit).await?)))
}

async fn get_settings(State(s): State<RouteState>) -> ApiResult<Json<Value>> {
    let settings = s
        .admin
        .sync()
        .settings()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(json!(settings)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSettings {
    /// A URL, or null to go back to the default. Required: `{}` must not reset the URL by
    /// accident (outer `None` = missing, `Some(None)` = null).
    #[serde(default, deserialize_with = "present")]
    readwise_api_url: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`, via `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn put_settings(
    State(s): State<RouteState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    authorize(&s, &headers)?;
    let req: PutSettings = body(raw, false)?;
    let Some(url) = req.readwise_api_url else {
        return Err(ApiError::bad_request(
            "`readwise_api_url` is required: a URL to use, or null to go back to the default",
        ));
    };
    match s.admin.sync().set_api_url(url.as_deref()).await {
        Ok(settings) => Ok(Json(json!(settings))),
        Err(crate::SettingsError::Pinned) => Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::SettingsError::Pinned.to_string(),
        )),
        Err(crate::SettingsError::Invalid(e)) => {
            Err(ApiError::bad_request(format!("`readwise_api_url`: {e}")))
        }
    }
}
