//! The seed app's HTTP routes (`/api/inngest/trigger-readwise`, `/api/inngest/trigger-schedule`,
//! `/api/readwise`). They all need the admin token. The admin routes for users, daily syncs
//! and settings are commands of the admin API (`stepdesk-api`), served with all the others.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use stepdesk_engine::secrets::constant_time_eq;

use crate::ReadwiseAdmin;
use stepdesk_engine::admin::AdminError;

#[derive(Clone)]
struct RouteState {
    admin: ReadwiseAdmin,
    admin_token: String,
}

/// An error answer: `{"error": ..., "status": N}`, like every other route's.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match &e {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The Readwise routes, to merge into Stepdesk's server.
pub fn routes(admin: ReadwiseAdmin, admin_token: String) -> Router {
    Router::new()
        .route("/api/inngest/trigger-readwise", post(trigger_readwise))
        .route("/api/inngest/trigger-schedule", post(trigger_schedule))
        .route("/api/readwise", post(report_count))
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
