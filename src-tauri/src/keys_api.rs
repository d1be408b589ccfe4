//! The admin routes for the engine's keys, so that `stepdesk keys set|remove` reach a
//! running server (the event key takes effect at once) and the server can say which key is
//! in effect:
//!
//! - `GET /api/admin/keys`: which keys the keychain holds, and for the event key whether
//!   one is in effect and where it comes from (`flag`, `env`, `keychain`, `none`). Never a
//!   value.
//! - `PUT /api/admin/keys/{event-key|signing-key}` with `{"value": "..."}`: stores a key.
//! - `DELETE /api/admin/keys/{event-key|signing-key}`: removes one (`404` if none is stored).
//!
//! Mutations need the admin token. A key pinned by `--event-key` or `STEPDESK_EVENT_KEY`
//! stays in effect when the keychain entry changes; the answer says so.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stepdesk_engine::secrets::constant_time_eq;
use stepdesk_secrets::Secrets;
use stepdesk_server::{ApiError, EventKey};

use crate::cli::KeySource;
use crate::keys_cli::EngineKey;

type ApiResult<T> = Result<T, ApiError>;

/// What the keys routes share with the server.
#[derive(Clone)]
pub struct KeysState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The server's live event key.
    event_key: EventKey,
    /// Where the key in effect comes from; `Flag` or `Env` never change while running.
    source: Mutex<KeySource>,
    /// The keychain, once connected (retried on each request until then: the session may
    /// get a keyring after start-up).
    secrets: Mutex<Option<Secrets>>,
    data_dir: PathBuf,
    admin_token: String,
}

impl KeysState {
    pub fn new(
        event_key: EventKey,
        source: KeySource,
        secrets: Option<Secrets>,
        data_dir: PathBuf,
        admin_token: String,
    ) -> KeysState {
        KeysState {
            inner: Arc::new(Inner {
                event_key,
                source: Mutex::new(source),
                secrets: Mutex::new(secrets),
                data_dir,
                admin_token,
            }),
        }
    }

    fn source(&self) -> KeySource {
        *self.inner.source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keychain, connecting now if it was not available before.
    async fn secrets(&self) -> Result<Secrets, ApiError> {
        if let Some(s) = self
            .inner
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(s);
        }
        let connected = crate::readwise::keychain()
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        *self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner()) = Some(connected.clone());
        Ok(connected)
    }

    /// The state of every key, as `GET /api/admin/keys` answers it.
    async fn status(&self) -> Value {
        let (event_stored, signing_stored, error) = match self.secrets().await {
            Ok(s) => {
                let ev = s.get(EngineKey::EventKey.keychain_name()).await;
                let sg = s.get(EngineKey::SigningKey.keychain_name()).await;
                let error = ev
                    .as_ref()
                    .err()
                    .or(sg.as_ref().err())
                    .map(|e| e.to_string());
                (
                    ev.ok().map(|v| v.is_some()),
                    sg.ok().map(|v| v.is_some()),
                    error,
                )
            }
            Err(e) => (None, None, Some(e.message)),
        };
        let mut out = json!({
            "event_key": {
                "stored": event_stored,
                "in_effect": self.inner.event_key.is_set(),
                "source": self.source(),
            },
            "signing_key": {"stored": signing_stored},
        });
        if let Some(e) = error {
            out["keychain_error"] = json!(e);
        }
        out
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        match given {
            Some(t) if constant_time_eq(t, &self.inner.admin_token) => Ok(()),
            Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "the admin token is wrong")),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this route needs `Authorization: Bearer <admin token>`; `stepdesk admin-token` prints it",
            )),
        }
    }

    /// After the keychain's event key changed: the marker, and the key in effect unless
    /// pinned. Returns a note when the change does not take effect.
    fn event_key_changed(&self, value: Option<String>) -> Option<String> {
        if let Err(e) = crate::datadir::set_event_key_marker(&self.inner.data_dir, value.is_some())
        {
            tracing::warn!(error = %e, "cannot update the event-key marker in the data directory");
        }
        let mut source = self.inner.source.lock().unwrap_or_else(|p| p.into_inner());
        match *source {
            KeySource::Flag | KeySource::Env => Some(format!(
                "the event key given with {} stays in effect while this server runs; the keychain's key is used when Stepdesk starts without it",
                if *source == KeySource::Flag { "--event-key" } else { "STEPDESK_EVENT_KEY" }
            )),
            _ => {
                *source = if value.is_some() {
                    KeySource::Keychain
                } else {
                    KeySource::None
                };
                let set = value.is_some();
                self.inner.event_key.set(value);
                tracing::info!(
                    required = set,
                    "event key changed through the admin API"
                );
                None
            }
        }
    }
}

/// The keys routes, to merge into the server's extra routes.
pub fn routes(state: KeysState) -> Router {
    Router::new()
        .route("/api/admin/keys", get(list))
        .route("/api/admin/keys/{name}", get(one).put(put).delete(remove))
        .with_state(state)
}

fn key_named(name: &str) -> ApiResult<EngineKey> {
    match name {
        "event-key" => Ok(EngineKey::EventKey),
        "signing-key" => Ok(EngineKey::SigningKey),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such key; the keys are `event-key` and `signing-key`",
        )),
    }
}

async fn list(State(s): State<KeysState>) -> Json<Value> {
    Json(s.status().await)
}

async fn one(State(s): State<KeysState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let key = key_named(&name)?;
    let status = s.status().await;
    let field = match key {
        EngineKey::EventKey => "event_key",
        EngineKey::SigningKey => "signing_key",
    };
    let mut out = status[field].clone();
    if let Some(e) = status.get("keychain_error") {
        out["keychain_error"] = e.clone();
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutKey {
    value: String,
}

/// Checks a key's value; the same rule as `stepdesk keys set`.
pub fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the key must be one word: not empty, no spaces or control characters");
    }
    Ok(())
}

async fn put(
    State(s): State<KeysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    s.authorize(&headers)?;
    let key = key_named(&name)?;
    let raw = raw.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    // Never echo the body: it holds a secret.
    let body: PutKey = serde_json::from_slice(&raw).map_err(|_| {
        ApiError::bad_request("the body must be a JSON object `{\"value\": \"...\"}`")
    })?;
    check_value(&body.value).map_err(ApiError::bad_request)?;
    let secrets = s.secrets().await?;
    secrets
        .set(key.keychain_name(), &body.value)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let note = match key {
        EngineKey::EventKey => s.event_key_changed(Some(body.value)),
        EngineKey::SigningKey => None,
    };
    tracing::info!(key = key.keychain_name(), "key stored in the keychain");
    let mut out = s.status().await;
    if let Some(n) = note {
        out["note"] = json!(n);
    }
    Ok(Json(out))
}

async fn remove(
    State(s): State<KeysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    s.authorize(&headers)?;
    let key = key_named(&name)?;
    let secrets = s.secrets().await?;
    let removed = secrets
        .delete(key.keychain_name())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !removed {
        // Gone from the keychain by other means: the key in effect must not outlive it.
        if matches!(key, EngineKey::EventKey) && s.source() == KeySource::Keychain {
            s.event_key_changed(None);
        }
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{} is not set", key.keychain_name()),
        ));
    }
    let note = match key {
        EngineKey::EventKey => s.event_key_changed(None),
        EngineKey::SigningKey => None,
    };
    tracing::info!(key = key.keychain_name(), "key removed from the keychain");
    let mut out = s.status().await;
    if let Some(n) = note {
        out["note"] = json!(n);
    }
    Ok(Json(out))
}
