//! Serving Stepdesk's own functions to an Inngest server (issue 8 §2): the bodies and
//! headers of `GET`, `PUT` and the out-of-band `POST /fn/register` (protocol §1.5, §1.6).
//!
//! Stepdesk presents itself as SDK `stepdesk` in `X-Inngest-SDK` (`stepdesk:v0.1.0`), and
//! as `rust:v0.1.0` in the register body's `sdk` (the `<language>:v<version>` form the JS
//! and Python SDKs use there: `js:v4.24.0`, `py:v0.5.19`), language `rust`, framework
//! `axum`. It advertises `in_band_sync` and `trust_probe`: the serve route must answer an
//! in-band `PUT` and `POST ?probe=trust` (200, empty body, signed when verified).
//! Shapes follow the captures: `js/01`/`py/01` (unauthenticated introspection), `js/71`
//! (authenticated), `js/02`/`py/02` (register body), `js/79`/`py/74` (in-band reply).
//! Key hashes in introspection are cut to 12 hex characters, as JS does: the full hash of
//! the signing key is the Bearer credential itself.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::headers;
use crate::sign::{self, SignError};
use crate::wire::{FunctionConfig, RegisterRequest, StepConfig, StepRetries, StepRuntime, Trigger};

/// The SDK name in `X-Inngest-SDK`.
pub const SDK_NAME: &str = "stepdesk";
/// The language in the register body's `sdk` and in introspection.
pub const SDK_LANGUAGE: &str = "rust";
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Who wrote the SDK (`sdk_author`; Inngest's own SDKs say `inngest`).
pub const SDK_AUTHOR: &str = "stepdesk";
pub const FRAMEWORK: &str = "axum";
/// The execution version Stepdesk speaks (`X-Inngest-Req-Version`).
pub const REQ_VERSION: i64 = 2;
pub const INTROSPECTION_SCHEMA: &str = "2024-05-24";
/// The register schema version (`v`).
pub const REGISTER_SCHEMA: &str = "0.1";

/// `stepdesk:v0.1.0`, for `X-Inngest-SDK` and `User-Agent`.
pub fn sdk_header() -> String {
    format!("{SDK_NAME}:v{SDK_VERSION}")
}

/// `rust:v0.1.0`, for the register body's `sdk`.
pub fn register_sdk() -> String {
    format!("{SDK_LANGUAGE}:v{SDK_VERSION}")
}

/// What Stepdesk's serve route can do.
pub fn capabilities() -> Value {
    json!({"in_band_sync": "v1", "trust_probe": "v1"})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Cloud,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Cloud => "cloud",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    InBand,
    OutOfBand,
}

impl SyncKind {
    /// `in_band` / `out_of_band` (underscores, as the SDKs send).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::InBand => "in_band",
            SyncKind::OutOfBand => "out_of_band",
        }
    }
}

/// How a request to the serve route was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No signature presented.
    Unsigned,
    /// A signature that did not verify.
    Failed,
    /// A verified signature: introspection shows the app's details.
    Succeeded,
}

/// Stepdesk's served app, as the serve route knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeApp {
    /// The app id (`appName`); function ids are `<app_id>-<fn id>`.
    pub app_id: String,
    pub app_version: Option<String>,
    /// The serve route's full URL as the Inngest server must call it
    /// (`http://host:port/api/inngest`).
    pub serve_url: String,
    pub mode: Mode,
    pub env: Option<String>,
    pub api_origin: String,
    pub event_api_origin: String,
    /// `INNGEST_SERVE_ORIGIN` / `INNGEST_SERVE_PATH` when set.
    pub serve_origin: Option<String>,
    pub serve_path: Option<String>,
    pub signing_key: Option<String>,
    pub signing_key_fallback: Option<String>,
    pub event_key: Option<String>,
    pub functions: Vec<FunctionConfig>,
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The config of one served function: id `<app_id>-<fn_id>`, one `"step"` whose URL is
/// `<serve_url>?fnId=<id>&stepId=step`, and `retries` as the retry count.
pub fn function_config(
    app_id: &str,
    serve_url: &str,
    fn_id: &str,
    name: &str,
    triggers: Vec<Trigger>,
    retries: Option<u32>,
) -> FunctionConfig {
    let id = format!("{app_id}-{fn_id}");
    let sep = if serve_url.contains('?') { '&' } else { '?' };
    let url = format!("{serve_url}{sep}fnId={}&stepId=step", query_escape(&id));
    let step = StepConfig {
        id: Some("step".into()),
        name: Some("step".into()),
        runtime: Some(StepRuntime {
            kind: Some("http".into()),
            url: Some(url),
        }),
        retries: retries.map(|n| StepRetries {
            attempts: Some(n as i64),
        }),
    };
    FunctionConfig {
        id,
        name: Some(name.to_string()),
        triggers,
        steps: [("step".to_string(), step)].into_iter().collect(),
        ..FunctionConfig::default()
    }
}

/// The first 12 hex characters of a hash (see the module comment).
fn short(hash: String) -> String {
    hash.chars().take(12).collect()
}

fn signing_key_hash(key: Option<&str>) -> Value {
    match key.map(|k| sign::bearer(k).map(|b| sign::strip_prefix(&b).to_string())) {
        Some(Ok(h)) => Value::String(short(h)),
        _ => Value::Null,
    }
}

/// The `GET` body. Unsigned: counts and flags only (`authentication_succeeded` omitted, as
/// JS ≥ 3.49 does). A failed signature: the same with `authentication_succeeded: false`.
/// Verified: the app's details too.
pub fn introspection(app: &ServeApp, auth: Auth) -> Value {
    let mut v = json!({
        "schema_version": INTROSPECTION_SCHEMA,
        "function_count": app.functions.len(),
        "has_event_key": app.event_key.is_some(),
        "has_signing_key": app.signing_key.is_some(),
        "has_signing_key_fallback": app.signing_key_fallback.is_some(),
        "mode": app.mode.as_str(),
    });
    let o = v.as_object_mut().expect("an object");
    match auth {
        Auth::Unsigned => {}
        Auth::Failed => {
            o.insert("authentication_succeeded".into(), false.into());
        }
        Auth::Succeeded => {
            let event_key_hash = app
                .event_key
                .as_deref()
                .map(|k| Value::String(short(hex::encode(Sha256::digest(k.as_bytes())))))
                .unwrap_or(Value::Null);
            let details = json!({
                "authentication_succeeded": true,
                "api_origin": app.api_origin,
                "app_id": app.app_id,
                "capabilities": capabilities(),
                "env": app.env,
                "event_api_origin": app.event_api_origin,
                "event_key_hash": event_key_hash,
                "framework": FRAMEWORK,
                "sdk_language": SDK_LANGUAGE,
                "sdk_version": SDK_VERSION,
                "serve_origin": app.serve_origin,
                "serve_path": app.serve_path,
                "signing_key_hash": signing_key_hash(app.signing_key.as_deref()),
                "signing_key_fallback_hash": signing_key_hash(app.signing_key_fallback.as_deref()),
            });
            o.extend(details.as_object().expect("an object").clone());
        }
    }
    v
}

/// The body Stepdesk POSTs to `{api_origin}/fn/register` for an out-of-band sync.
pub fn register_request(app: &ServeApp) -> RegisterRequest {
    RegisterRequest {
        url: app.serve_url.clone(),
        deploy_type: Some("ping".into()),
        framework: Some(FRAMEWORK.into()),
        app_name: app.app_id.clone(),
        app_version: app.app_version.clone(),
        sdk: Some(register_sdk()),
        v: Some(REGISTER_SCHEMA.into()),
        capabilities: Some(capabilities()),
        functions: app.functions.clone(),
    }
}

/// The headers of that POST: the SDK headers, `X-Inngest-Sync-Kind: out_of_band`, the
/// hashed-key `Authorization` when there is a signing key, and
/// `X-Inngest-Expected-Server-Kind` echoing the `X-Inngest-Server-Kind` of the PUT that
/// asked for the sync, if any. Fails only on a signing key that is not hex.
pub fn register_headers(
    app: &ServeApp,
    expected_server_kind: Option<&str>,
) -> Result<Vec<(String, String)>, SignError> {
    let mut h = response_headers(app, Some(SyncKind::OutOfBand));
    if let Some(key) = app.signing_key.as_deref() {
        h.push((
            "Authorization".into(),
            format!("Bearer {}", sign::bearer(key)?),
        ));
    }
    if let Some(kind) = expected_server_kind {
        h.retain(|(k, _)| !k.eq_ignore_ascii_case(headers::EXPECTED_SERVER_KIND));
        h.push((headers::EXPECTED_SERVER_KIND.into(), kind.into()));
    }
    Ok(h)
}

/// The body answering an in-band `PUT` (`X-Inngest-Sync-Kind: in_band`): the app and its
/// functions, with the introspection for `auth` under `inspection`.
pub fn in_band_reply(app: &ServeApp, auth: Auth) -> Value {
    let mut v = json!({
        "app_id": app.app_id,
        "capabilities": capabilities(),
        "env": app.env,
        "framework": FRAMEWORK,
        "functions": app.functions,
        "inspection": introspection(app, auth),
        "sdk": register_sdk(),
        "sdk_author": SDK_AUTHOR,
        "sdk_language": SDK_LANGUAGE,
        "sdk_version": SDK_VERSION,
        "url": app.serve_url,
    });
    if let Some(version) = &app.app_version {
        v["appVersion"] = Value::String(version.clone());
    }
    v
}

/// The answer to an out-of-band `PUT` once the register POST is done: `200
/// {"message":"Successfully registered","modified":…}`, or `500 {"message":…,
/// "modified":false}` with what went wrong.
pub fn put_reply(result: Result<bool, String>) -> (u16, Value) {
    match result {
        Ok(modified) => (
            200,
            json!({"message": "Successfully registered", "modified": modified}),
        ),
        Err(message) => (500, json!({"message": message, "modified": false})),
    }
}

/// The headers on every serve-route answer: `Content-Type`, `X-Inngest-SDK`, `User-Agent`,
/// `X-Inngest-Req-Version: 2`, `X-Inngest-Framework`, `X-Inngest-Expected-Server-Kind`
/// (the mode, as Python sends), `X-Inngest-Env` when set, `X-Inngest-Sync-Kind` when given.
/// Add `X-Inngest-Signature` ([`crate::sign::signature_header`] over the raw body) when the
/// request was verified, and `X-Inngest-No-Retry` / `Retry-After` on errors.
pub fn response_headers(app: &ServeApp, sync_kind: Option<SyncKind>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        (headers::SDK.into(), sdk_header()),
        ("User-Agent".into(), sdk_header()),
        (headers::REQ_VERSION.into(), REQ_VERSION.to_string()),
        (headers::FRAMEWORK.into(), FRAMEWORK.into()),
        (
            headers::EXPECTED_SERVER_KIND.into(),
            app.mode.as_str().into(),
        ),
    ];
    if let Some(env) = app.env.as_deref().filter(|e| !e.is_empty()) {
        h.push((headers::ENV.into(), env.into()));
    }
    if let Some(kind) = sync_kind {
        h.push((headers::SYNC_KIND.into(), kind.as_str().into()));
    }
    h
}

/// The status of a function-level error answer: 400 when it must not be retried (with
/// `X-Inngest-No-Retry: true`), else 500 (with `false`), as the JS SDK answers.
pub fn error_status(no_retry: bool) -> u16 {
    if no_retry {
        400
    } else {
        500
    }
}

/// The 401 for a request whose signature failed: `{"message":"Unauthorized"}`, without the
/// SDK headers (JS strips them so a prober learns nothing).
pub fn unauthorized() -> (u16, Vec<(String, String)>, Value) {
    (
        401,
        vec![
            ("Content-Type".into(), "application/json".into()),
            (headers::SDK_HANDLED.into(), "true".into()),
        ],
        json!({"message": "Unauthorized"}),
    )
}

/// Object keys, for the tests' shape comparisons.
#[cfg(test)]
fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .map(serde_json::Map::keys)
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{parse_call_response, CallOutcome, SdkVersion};

    const KEY: &str =
        "signkey-test-1234567812345678123456781234567812345678123456781234567812345678";

    fn app(mode: Mode) -> ServeApp {
        let url = "http://127.0.0.1:8290/api/inngest".to_string();
        ServeApp {
            app_id: "stepdesk".into(),
            app_version: None,
            serve_url: url.clone(),
            mode,
            env: None,
            api_origin: "http://127.0.0.1:8288".into(),
            event_api_origin: "http://127.0.0.1:8288".into(),
            serve_origin: None,
            serve_path: None,
            signing_key: (mode == Mode::Cloud).then(|| KEY.to_string()),
            signing_key_fallback: None,
            event_key: None,
            functions: vec![
                function_config(
                    "stepdesk",
                    &url,
                    "daily-sync",
                    "Daily sync",
                    vec![Trigger::cron("0 3 * * *")],
                    Some(2),
                ),
                function_config(
                    "stepdesk",
                    &url,
                    "on-user",
                    "On user",
                    vec![Trigger::event("app/user.created")],
                    None,
                ),
            ],
        }
    }

    fn body_of(capture: &str) -> Value {
        let c: Value = serde_json::from_str(capture).unwrap();
        serde_json::from_str(c["response"]["body_raw"].as_str().unwrap()).unwrap()
    }

    fn assert_has_keys_of(ours: &Value, theirs: &Value, except: &[&str], what: &str) {
        let missing: Vec<String> = keys(theirs)
            .difference(&keys(ours))
            .filter(|k| !except.contains(&k.as_str()))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "{what}: missing {missing:?}");
    }

    #[test]
    fn identifies_as_stepdesk() {
        assert_eq!(sdk_header(), format!("stepdesk:v{SDK_VERSION}"));
        assert_eq!(register_sdk(), format!("rust:v{SDK_VERSION}"));
        assert_eq!(
            SdkVersion::parse(&sdk_header()),
            Some(SdkVersion {
                name: "stepdesk".into(),
                version: SDK_VERSION.into()
            })
        );
    }

    #[test]
    fn served_function_configs_are_valid_and_addressable() {
        let a = app(Mode::Dev);
        let f = &a.functions[0];
        assert_eq!(f.id, "stepdesk-daily-sync");
        assert_eq!(
            f.step_url(),
            Some("http://127.0.0.1:8290/api/inngest?fnId=stepdesk-daily-sync&stepId=step")
        );
        assert_eq!(f.retries(), 2);
        assert_eq!(a.functions[1].retries(), 4);
        let odd = function_config(
            "a",
            &a.serve_url,
            "sync/all",
            "S",
            vec![Trigger::event("e")],
            None,
        );
        assert_eq!(
            odd.step_url(),
            Some("http://127.0.0.1:8290/api/inngest?fnId=a-sync%2Fall&stepId=step")
        );
        let with_query = function_config(
            "a",
            "http://h/api/inngest?x=1",
            "f",
            "F",
            vec![Trigger::event("e")],
            None,
        );
        assert_eq!(
            with_query.step_url(),
            Some("http://h/api/inngest?x=1&fnId=a-f&stepId=step")
        );
    }

    #[test]
    fn unauthenticated_introspection_has_what_the_sdks_show() {
        let ours = introspection(&app(Mode::Dev), Auth::Unsigned);
        for theirs in [
            body_of(include_str!(
                "../tests/fixtures/js/01_get_introspection_dev.json"
            )),
            body_of(include_str!(
                "../tests/fixtures/py/01_get_introspection_dev.json"
            )),
        ] {
            assert_has_keys_of(&ours, &theirs, &["extra"], "unauthenticated");
            assert_eq!(ours["schema_version"], theirs["schema_version"]);
            assert_eq!(ours["mode"], theirs["mode"]);
        }
        assert_eq!(ours["function_count"], 2);
        assert_eq!(ours["has_signing_key"], false);
        assert!(ours.get("authentication_succeeded").is_none());
        assert!(ours.get("app_id").is_none());
        let failed = introspection(&app(Mode::Cloud), Auth::Failed);
        assert_eq!(failed["authentication_succeeded"], false);
        assert!(failed.get("signing_key_hash").is_none());
    }

    #[test]
    fn authenticated_introspection_has_what_the_sdks_show() {
        let ours = introspection(&app(Mode::Cloud), Auth::Succeeded);
        let js = body_of(include_str!(
            "../tests/fixtures/js/71_cloud_get_signed.json"
        ));
        assert_has_keys_of(&ours, &js, &["extra"], "authenticated (js)");
        let py = body_of(include_str!(
            "../tests/fixtures/py/74_cloud_put_in_band_signed.json"
        ))["inspection"]
            .clone();
        assert_has_keys_of(&ours, &py, &[], "authenticated (py)");
        // The same key as the captures: the same (JS-length) hash.
        assert_eq!(ours["signing_key_hash"], js["signing_key_hash"]);
        assert_eq!(ours["authentication_succeeded"], true);
        assert_eq!(ours["mode"], "cloud");
        assert_eq!(ours["sdk_language"], "rust");
        assert_eq!(ours["signing_key_fallback_hash"], Value::Null);
        let mut with_event_key = app(Mode::Cloud);
        with_event_key.event_key = Some("key".into());
        let v = introspection(&with_event_key, Auth::Succeeded);
        assert_eq!(v["event_key_hash"].as_str().unwrap().len(), 12);
        assert_eq!(v["has_event_key"], true);
    }

    #[test]
    fn the_register_body_reads_back_and_validates() {
        let a = app(Mode::Dev);
        let req = register_request(&a);
        let body = serde_json::to_vec(&req).unwrap();
        let back = RegisterRequest::parse(&body).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.validate(), Ok(()));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let js = {
            let c: Value = serde_json::from_str(include_str!(
                "../tests/fixtures/js/02_put_sync_out_of_band_dev.json"
            ))
            .unwrap();
            serde_json::from_str::<Value>(c["dev_server_requests"][0]["body_raw"].as_str().unwrap())
                .unwrap()
        };
        assert_has_keys_of(&v, &js, &["featureObservations"], "register body");
        assert_eq!(v["sdk"], register_sdk());
        assert_eq!(v["deployType"], "ping");
        assert_eq!(v["v"], "0.1");
    }

    #[test]
    fn register_headers_carry_the_hashed_key() {
        let h = register_headers(&app(Mode::Cloud), Some("cloud")).unwrap();
        let get = |name: &str| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("authorization"),
            Some(format!("Bearer {}", sign::bearer(KEY).unwrap()).as_str())
        );
        assert_eq!(get("x-inngest-sync-kind"), Some("out_of_band"));
        assert_eq!(get("x-inngest-expected-server-kind"), Some("cloud"));
        assert_eq!(
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-inngest-expected-server-kind"))
                .count(),
            1
        );
        let dev = register_headers(&app(Mode::Dev), None).unwrap();
        assert!(!dev.iter().any(|(k, _)| k == "Authorization"));
        let mut bad = app(Mode::Cloud);
        bad.signing_key = Some("signkey-test-nothex".into());
        assert_eq!(register_headers(&bad, None), Err(SignError::KeyNotHex));
    }

    #[test]
    fn the_in_band_reply_has_what_the_sdks_send() {
        let ours = in_band_reply(&app(Mode::Cloud), Auth::Succeeded);
        for theirs in [
            body_of(include_str!(
                "../tests/fixtures/js/79_cloud_put_in_band_signed.json"
            )),
            body_of(include_str!(
                "../tests/fixtures/py/74_cloud_put_in_band_signed.json"
            )),
        ] {
            assert_has_keys_of(&ours, &theirs, &["featureObservations"], "in-band reply");
        }
        assert_eq!(ours["inspection"]["authentication_succeeded"], true);
        // Dev mode, unsigned (js/03): the inspection is the unauthenticated one.
        let dev = in_band_reply(&app(Mode::Dev), Auth::Unsigned);
        let js_dev = body_of(include_str!(
            "../tests/fixtures/js/03_put_sync_in_band_dev.json"
        ));
        assert_has_keys_of(
            &dev,
            &js_dev,
            &["featureObservations"],
            "in-band reply (dev)",
        );
        assert_has_keys_of(
            &dev["inspection"],
            &js_dev["inspection"],
            &["extra"],
            "in-band inspection (dev)",
        );
        assert!(dev["inspection"].get("app_id").is_none());
        assert_eq!(ours["functions"].as_array().unwrap().len(), 2);
        assert_eq!(ours["url"], "http://127.0.0.1:8290/api/inngest");
        assert!(ours.get("appVersion").is_none());
        let mut versioned = app(Mode::Dev);
        versioned.app_version = Some("1.2".into());
        assert_eq!(
            in_band_reply(&versioned, Auth::Unsigned)["appVersion"],
            "1.2"
        );
    }

    #[test]
    fn our_answers_pass_the_drivers_rules() {
        // What the serve route answers must read as an SDK answer (X-Inngest-SDK present,
        // version 2) with the very rules Stepdesk applies to SDKs.
        let h = response_headers(&app(Mode::Dev), None);
        let r = parse_call_response(206, &h, br#"[{"id":"x","op":"StepRun","data":1}]"#, 0);
        assert!(matches!(r.outcome, CallOutcome::Ops(ref o) if o.len() == 1));
        assert_eq!(r.req_version, Some(REQ_VERSION));
        assert_eq!(r.sdk.unwrap().name, SDK_NAME);
        let mut h = h;
        h.push((headers::NO_RETRY.into(), "true".into()));
        let r = parse_call_response(
            error_status(true),
            &h,
            br#"{"name":"Error","message":"no"}"#,
            0,
        );
        assert!(matches!(
            r.outcome,
            CallOutcome::Error {
                retriable: false,
                ..
            }
        ));
        let in_band = response_headers(&app(Mode::Dev), Some(SyncKind::InBand));
        assert!(in_band.contains(&("X-Inngest-Sync-Kind".into(), "in_band".into())));
    }

    #[test]
    fn put_and_unauthorized_answers() {
        assert_eq!(
            put_reply(Ok(true)),
            (
                200,
                json!({"message": "Successfully registered", "modified": true})
            )
        );
        assert_eq!(
            put_reply(Err("x".into())),
            (500, json!({"message": "x", "modified": false}))
        );
        let (status, h, body) = unauthorized();
        assert_eq!(status, 401);
        assert_eq!(
            body,
            body_of(include_str!(
                "../tests/fixtures/js/70_cloud_get_unsigned.json"
            ))
        );
        assert!(!h.iter().any(|(k, _)| k == headers::SDK));
        assert_eq!(error_status(false), 500);
    }
}
