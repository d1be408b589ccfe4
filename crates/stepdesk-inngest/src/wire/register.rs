//! `POST /fn/register`: the body an SDK syncs its app with, the reply, and the error body.
//!
//! Protocol §1.6 and §7 point 7. JS sends `appName`/`deployType`
//! (capture `js/02_put_sync_out_of_band_dev`), Python `appname`/`deploy_type`
//! (`py/02_put_sync_out_of_band_dev`); both are accepted, unknown keys (JS's
//! `featureObservations`) ignored. Errors are answered as `{"error": …, "status": 400}`:
//! JS takes the outcome from the body's `status`, not the HTTP code.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::function::FunctionConfig;
use super::null_default;

/// The body of `POST /fn/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The app's serve URL (`http://host:3000/api/inngest`).
    #[serde(default, deserialize_with = "null_default")]
    pub url: String,
    /// `"ping"` for a serve app, `"connect"` for a Connect worker.
    #[serde(
        rename = "deployType",
        alias = "deploy_type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deploy_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    #[serde(
        rename = "appName",
        alias = "appname",
        default,
        deserialize_with = "null_default"
    )]
    pub app_name: String,
    #[serde(
        rename = "appVersion",
        alias = "app_version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub app_version: Option<String>,
    /// `js:v4.24.0`, `py:v0.5.19` (not the header's `inngest-js:v…` form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// The register schema version, `"0.1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<String>,
    /// `{"trust_probe": "v1", "connect": "v1", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub functions: Vec<FunctionConfig>,
}

/// A register body that is not a register request at all.
#[derive(Debug, thiserror::Error)]
#[error("invalid register request: {0}")]
pub struct RegisterError(#[from] pub serde_json::Error);

impl RegisterRequest {
    /// Reads a register body.
    pub fn parse(body: &[u8]) -> Result<RegisterRequest, RegisterError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// Whether the app is a Connect worker (no serve URL to call).
    pub fn is_connect(&self) -> bool {
        self.deploy_type.as_deref() == Some("connect")
    }

    /// Every problem with the app and its functions, one clear sentence each (a function's
    /// start with ``function `id`: ``); `Ok` when there is none.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.app_name.trim().is_empty() {
            errors.push("the app has no name (appName)".to_string());
        }
        if !self.is_connect() && !is_http_url(&self.url) {
            errors.push(format!("the app URL `{}` is not an http(s) URL", self.url));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in self.functions.iter().enumerate() {
            if !f.id.is_empty() && !seen.insert(f.id.as_str()) {
                errors.push(format!("function `{}`: the id is used twice", f.id));
            }
            let label = if f.id.is_empty() {
                format!("function {}", i + 1)
            } else {
                format!("function `{}`", f.id)
            };
            for e in f.problems() {
                errors.push(format!("{label}: {e}"));
            }
            if !self.is_connect() {
                match f.step_url() {
                    None => errors.push(format!("{label}: no step URL (steps.step.runtime.url)")),
                    Some(u) if !is_http_url(u) => {
                        errors.push(format!("{label}: the step URL `{u}` is not an http(s) URL"))
                    }
                    Some(_) => {}
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// The success reply to `POST /fn/register`: `{"ok":true,"modified":…,"app_id":…,"sync_id":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub ok: bool,
    /// False when the body is identical to the last sync's.
    #[serde(default)]
    pub modified: bool,
    pub app_id: String,
    pub sync_id: String,
}

/// An error body as Inngest's APIs answer it: `{"error": …, "status": 400}` (+ `data`,
/// `code`). `status` is always present: the JS SDK reads the outcome from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            error: error.into(),
            status,
            data: None,
            code: None,
        }
    }

    /// The 400 for a register request that failed [`RegisterRequest::validate`]: the
    /// problems joined in `error`, and listed one by one in `data.errors`.
    pub fn invalid_sync(problems: &[String]) -> ApiError {
        ApiError {
            error: format!("invalid app: {}", problems.join("; ")),
            status: 400,
            data: Some(serde_json::json!({ "errors": problems })),
            code: Some("invalid_sync".to_string()),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an ApiError serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn register_body(capture: &str) -> Vec<u8> {
        let c: Value = serde_json::from_str(capture).unwrap();
        let req = c["dev_server_requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == "/fn/register")
            .unwrap();
        req["body_raw"].as_str().unwrap().as_bytes().to_vec()
    }

    #[test]
    fn reads_the_js_register_body() {
        let body = register_body(include_str!(
            "../../tests/fixtures/js/02_put_sync_out_of_band_dev.json"
        ));
        let r = RegisterRequest::parse(&body).unwrap();
        assert_eq!(r.app_name, "peers-demo");
        assert_eq!(r.deploy_type.as_deref(), Some("ping"));
        assert_eq!(r.framework.as_deref(), Some("nodejs"));
        assert_eq!(r.sdk.as_deref(), Some("js:v4.24.0"));
        assert_eq!(r.v.as_deref(), Some("0.1"));
        assert_eq!(
            r.capabilities,
            Some(json!({"trust_probe": "v1", "connect": "v1"}))
        );
        assert_eq!(r.functions.len(), 6);
        assert!(!r.is_connect());
        assert_eq!(r.validate(), Ok(()));
        let flaky = r
            .functions
            .iter()
            .find(|f| f.id == "peers-demo-flaky")
            .unwrap();
        assert_eq!(flaky.retries(), 2);
        assert_eq!(
            flaky.step_url(),
            Some("http://127.0.0.1:3939/api/inngest?fnId=peers-demo-flaky&stepId=step")
        );
        let nightly = r
            .functions
            .iter()
            .find(|f| f.id == "peers-demo-nightly")
            .unwrap();
        assert_eq!(nightly.triggers[0].cron.as_deref(), Some("0 3 * * *"));
        assert_eq!(nightly.retries(), 4);
    }

    #[test]
    fn reads_the_python_register_body() {
        let body = register_body(include_str!(
            "../../tests/fixtures/py/02_put_sync_out_of_band_dev.json"
        ));
        let r = RegisterRequest::parse(&body).unwrap();
        assert_eq!(r.app_name, "peers-demo-py");
        assert_eq!(r.deploy_type.as_deref(), Some("ping"));
        assert_eq!(r.sdk.as_deref(), Some("py:v0.5.19"));
        assert_eq!(r.functions.len(), 4);
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.functions[2].id, "peers-demo-py-flaky");
        assert_eq!(r.functions[2].retries(), 2);
    }

    #[test]
    fn accepts_nulls_and_unknown_keys() {
        let r = RegisterRequest::parse(
            br#"{"url":"http://x/api/inngest","appName":"a","framework":null,"sdk":null,
                 "functions":null,"somethingNew":{"x":1}}"#,
        )
        .unwrap();
        assert!(r.functions.is_empty());
        assert_eq!(r.framework, None);
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_clear_error() {
        let e = RegisterRequest::parse(b"not json").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid register request:"),
            "{e}"
        );
        let e = RegisterRequest::parse(br#"{"functions": 3}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn validation_names_the_app_problems() {
        let r = RegisterRequest::parse(
            br#"{"url":"ftp://x","appName":" ","functions":[
                {"id":"a","triggers":[{"event":"e"}],"steps":{"step":{"runtime":{"url":"http://x/?fnId=a"}}}},
                {"id":"a","triggers":[{"event":"e"}]}]}"#,
        )
        .unwrap();
        let errors = r.validate().unwrap_err();
        assert_eq!(
            errors,
            vec![
                "the app has no name (appName)".to_string(),
                "the app URL `ftp://x` is not an http(s) URL".to_string(),
                "function `a`: the id is used twice".to_string(),
                "function `a`: no step URL (steps.step.runtime.url)".to_string(),
            ]
        );
        // A Connect app has no URLs to check.
        let c = RegisterRequest::parse(
            br#"{"appname":"c","deploy_type":"connect","functions":[{"id":"f","triggers":[{"event":"e"}]}]}"#,
        )
        .unwrap();
        assert!(c.is_connect());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn serializes_with_the_js_spelling() {
        let r = RegisterRequest::parse(
            br#"{"url":"http://x/","appname":"a","deploy_type":"ping","functions":[]}"#,
        )
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"url":"http://x/","appName":"a","deployType":"ping","functions":[]})
        );
    }

    #[test]
    fn reply_and_error_bodies() {
        let reply = RegisterReply {
            ok: true,
            modified: false,
            app_id: "a".into(),
            sync_id: "s".into(),
        };
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"ok": true, "modified": false, "app_id": "a", "sync_id": "s"})
        );
        assert_eq!(
            ApiError::new(401, "Unauthorized").to_json(),
            json!({"error":"Unauthorized","status":401})
        );
        let e = ApiError::invalid_sync(&["x".into(), "y".into()]).to_json();
        assert_eq!(e["status"], 400);
        assert_eq!(e["error"], "invalid app: x; y");
        assert_eq!(e["data"]["errors"], json!(["x", "y"]));
    }
}
