//! What the serve endpoint asks of the Inngest server: registering the app
//! (`POST {api}/fn/register`), sending the events of a `send_event` step
//! (`POST {event api}/e/{key}`), and fetching a run's state when it was too large for the
//! call request (`GET {api}/v0/runs/{id}/batch` and `/actions`, `use_api`).
//!
//! Authenticated calls carry the hashed signing key as a Bearer token; on a `401`/`403`
//! they are tried again with the fallback key, as the SDKs do while keys rotate.

use std::time::Duration;

use serde_json::{Map, Value};
use stepdesk_inngest::headers;
use stepdesk_inngest::serve::{self, ServeApp};
use stepdesk_inngest::sign;

use crate::config::ServeConfig;

/// The event key the JS SDK sends when none is set (a dev server accepts any).
const NO_EVENT_KEY: &str = "NO_EVENT_KEY_SET";
/// Attempts at sending a step's events before the step fails this attempt. The events'
/// ids are deterministic, so a resend starts no second run.
const SEND_ATTEMPTS: u32 = 3;

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(serve::sdk_header())
        .build()
        .expect("a reqwest client with rustls builds")
}

/// The innermost cause of a reqwest error ("Connection refused"), which says more than
/// "error sending request".
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// A short excerpt of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The Bearer tokens to try, in order: the hashed signing key, then the fallback's.
/// Sends `req` with this Bearer key (if any); the answer's status and body, or why none.
async fn send(
    mut req: reqwest::RequestBuilder,
    bearer: Option<&str>,
    url: &str,
) -> Result<(u16, Vec<u8>), String> {
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", cause(&e)))?;
    let status = res.status().as_u16();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| format!("reading the answer of {url}: {}", cause(&e)))?;
    Ok((status, bytes.to_vec()))
}

fn bearers(config: &ServeConfig) -> Vec<Option<String>> {
    let keys = config.keys();
    if keys.is_empty() {
        return vec![None];
    }
    // The configuration checked that the keys are hex.
    keys.into_iter()
        .filter_map(|k| sign::bearer(k).ok())
        .map(Some)
        .collect()
}

/// Registers the app out of band. `Ok(modified)` when the server accepted it.
pub(crate) async fn register(
    http: &reqwest::Client,
    config: &ServeConfig,
    app: &ServeApp,
    expected_server_kind: Option<&str>,
    deploy_id: Option<&str>,
) -> Result<bool, String> {
    let body = serde_json::to_vec(&serve::register_request(app))
        .map_err(|e| format!("the register body does not serialize: {e}"))?;
    let mut url = reqwest::Url::parse(&format!("{}/fn/register", config.api_origin))
        .map_err(|e| format!("bad API origin {}: {e}", config.api_origin))?;
    if let Some(id) = deploy_id {
        url.query_pairs_mut().append_pair("deployId", id);
    }
    let mut headers = serve::register_headers(app, expected_server_kind)
        .map_err(|e| format!("cannot sign the register request: {e}"))?;
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    let bearers = bearers(config);
    let mut last = String::new();
    for (i, bearer) in bearers.iter().enumerate() {
        let mut req = http.post(url.clone()).body(body.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let (status, bytes) = send(req, bearer.as_deref(), url.as_str()).await?;
        let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // The JS SDK takes the outcome from the body's `status` (default 200), not the HTTP
        // status; a non-2xx HTTP status is a failure all the same.
        let body_status = reply.get("status").and_then(Value::as_u64).unwrap_or(200);
        if (200..300).contains(&status) && (200..300).contains(&body_status) {
            return Ok(reply
                .get("modified")
                .and_then(Value::as_bool)
                .unwrap_or(false));
        }
        let message = reply
            .get("error")
            .or_else(|| reply.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| excerpt(&bytes));
        last = format!("{url} answered {status}: {message}");
        let auth_failed = matches!(status, 401 | 403);
        if !(auth_failed && i + 1 < bearers.len()) {
            break;
        }
        tracing::info!("the signing key was refused; registering with the fallback key");
    }
    Err(last)
}

/// Sends a step's events to the event API; their ids, as the server assigned them.
pub(crate) async fn send_events(
    http: &reqwest::Client,
    config: &ServeConfig,
    events: &[Value],
) -> Result<Vec<String>, String> {
    let key =
        match (&config.event_key, config.mode) {
            (Some(k), _) => k.as_str(),
            (None, serve::Mode::Dev) => NO_EVENT_KEY,
            (None, serve::Mode::Cloud) => return Err(
                "INNGEST_EVENT_KEY is not set: a served function cannot send events in cloud mode"
                    .into(),
            ),
        };
    let url = format!("{}/e/{key}", config.event_api_origin);
    // The key is a secret: errors name the event API, not the URL with the key.
    let shown = format!("{}/e/…", config.event_api_origin);
    let mut last = String::new();
    for attempt in 0..SEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let mut req = http
            .post(&url)
            .header("Content-Type", "application/json")
            .header(headers::SDK, serve::sdk_header())
            .json(events);
        if let Some(env) = &config.env {
            req = req.header(headers::ENV, env);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("cannot reach the event API {shown}: {}", cause(&e));
                continue;
            }
        };
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap_or_default();
        let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let ids: Option<Vec<String>> = reply
            .get("ids")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let body_status = reply.get("status").and_then(Value::as_u64);
        match ids {
            Some(ids) if status == 200 && body_status.is_none_or(|s| s == 200) => {
                if ids.len() != events.len() {
                    tracing::warn!(
                        sent = events.len(),
                        ids = ids.len(),
                        "the event API returned another number of ids than events sent"
                    );
                }
                return Ok(ids);
            }
            _ => {
                let message = reply
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| excerpt(&bytes));
                last = format!("the event API {shown} answered {status}: {message}");
                // A refused key or a refused event will not be accepted on a retry.
                if (400..500).contains(&status) && status != 429 {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// A run's events and memo, when the call request said `use_api` (its state was larger
/// than a request body).
pub(crate) async fn fetch_state(
    http: &reqwest::Client,
    config: &ServeConfig,
    run_id: &str,
) -> Result<(Vec<Value>, Map<String, Value>), String> {
    let events: Vec<Value> = get_json(http, config, &format!("/v0/runs/{run_id}/batch")).await?;
    let steps: Map<String, Value> =
        get_json(http, config, &format!("/v0/runs/{run_id}/actions")).await?;
    Ok((events, steps))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    config: &ServeConfig,
    path: &str,
) -> Result<T, String> {
    let url = format!("{}{path}", config.api_origin);
    let bearers = bearers(config);
    let mut last = String::new();
    for (i, bearer) in bearers.iter().enumerate() {
        let req = http.get(&url).header(headers::SDK, serve::sdk_header());
        let (status, bytes) = send(req, bearer.as_deref(), &url).await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| format!("{url} answered with unexpected JSON: {e}"));
        }
        last = format!("{url} answered {status}: {}", excerpt(&bytes));
        if !(matches!(status, 401 | 403) && i + 1 < bearers.len()) {
            break;
        }
    }
    Err(last)
}
