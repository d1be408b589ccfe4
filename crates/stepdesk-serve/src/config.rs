//! The serve endpoint's configuration, from the variables every Inngest SDK reads
//! (protocol §1.2).
//!
//! - Mode: cloud unless `INNGEST_DEV` says dev, as the JS SDK v4 decides. `INNGEST_DEV` is a
//!   boolean (`1`, `true`, … / `0`, `false`, …) or the dev server's URL (dev mode, with that
//!   origin).
//! - Origins, most specific first: `INNGEST_API_BASE_URL` / `INNGEST_EVENT_API_BASE_URL`,
//!   then `INNGEST_BASE_URL` (both), then the `INNGEST_DEV` URL, then the mode's default
//!   (`https://api.inngest.com`, `https://inn.gs`; dev: `http://localhost:8288`).
//! - Keys: `INNGEST_SIGNING_KEY` (required in cloud mode: every call request is verified
//!   with it), `INNGEST_SIGNING_KEY_FALLBACK`, `INNGEST_EVENT_KEY` (for `send_event` steps),
//!   `INNGEST_ENV` (a branch environment).
//! - Where the Inngest server reaches Stepdesk: `INNGEST_SERVE_ORIGIN` and
//!   `INNGEST_SERVE_PATH`; without them, the `Host` of the request that asks for a sync and
//!   the path `/api/inngest`.
//! - The app id, which prefixes every function id (`<app>-<fn>`): `STEPDESK_INNGEST_APP_ID`,
//!   default `stepdesk` (SDK apps set theirs in code; Stepdesk has no code to set it in).
//!
//! An empty variable counts as unset. A bad value is an error naming the variable.

use stepdesk_inngest::serve::Mode;
use stepdesk_inngest::sign;

/// The app id when `STEPDESK_INNGEST_APP_ID` is not set.
pub const DEFAULT_APP_ID: &str = "stepdesk";
/// The path the endpoint is served at (the seed app's route).
pub const SERVE_PATH: &str = "/api/inngest";
pub const CLOUD_API_ORIGIN: &str = "https://api.inngest.com";
pub const CLOUD_EVENT_API_ORIGIN: &str = "https://inn.gs";
pub const DEV_ORIGIN: &str = "http://localhost:8288";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("INNGEST_DEV is `{0}`: expected 1/true or 0/false, or the dev server's URL (http://host:port)")]
    BadDev(String),
    #[error("{var} is `{value}`: {reason}")]
    BadUrl {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("INNGEST_SERVE_PATH is `{0}`: it must be a path starting with `/`")]
    BadServePath(String),
    #[error("STEPDESK_INNGEST_APP_ID is `{0}`: use letters, digits, `-`, `_` and `.`")]
    BadAppId(String),
    #[error("cloud mode needs INNGEST_SIGNING_KEY: without it, anyone who can reach /api/inngest could run Stepdesk's functions. Set the key the Inngest server signs with, or INNGEST_DEV=1 (or its URL) for a dev server, which signs nothing")]
    NoSigningKey,
    #[error(
        "{0} is not a signing key: expected hexadecimal after an optional `signkey-<env>-` prefix"
    )]
    BadSigningKey(&'static str),
}

/// What the serve endpoint needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    pub app_id: String,
    pub mode: Mode,
    pub signing_key: Option<String>,
    pub signing_key_fallback: Option<String>,
    pub event_key: Option<String>,
    /// `INNGEST_ENV`: sent as `X-Inngest-Env`.
    pub env: Option<String>,
    /// Where `/fn/register` and `/v0/runs/...` are (no trailing `/`).
    pub api_origin: String,
    /// Where `/e/{key}` is (no trailing `/`).
    pub event_api_origin: String,
    /// `INNGEST_SERVE_ORIGIN` (no trailing `/`).
    pub serve_origin: Option<String>,
    /// `INNGEST_SERVE_PATH`.
    pub serve_path: Option<String>,
}

/// Reads an origin: an http(s) URL with a host; a trailing `/` is dropped.
fn origin(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl {
        var,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(value).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an origin has no query or fragment"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn check_key(var: &'static str, key: &str) -> Result<(), ConfigError> {
    sign::bearer(key)
        .map(|_| ())
        .map_err(|_| ConfigError::BadSigningKey(var))
}

impl ServeConfig {
    /// From the process environment.
    pub fn from_env() -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// From `var`, which gives a variable's value (`std::env::var`, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ServeConfig, ConfigError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (mode, dev_origin) = match get("INNGEST_DEV") {
            None => (Mode::Cloud, None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => (Mode::Dev, None),
                "0" | "false" | "no" | "off" => (Mode::Cloud, None),
                _ if v.contains("://") => (
                    Mode::Dev,
                    Some(origin("INNGEST_DEV", &v).map_err(|_| ConfigError::BadDev(v.clone()))?),
                ),
                _ => return Err(ConfigError::BadDev(v)),
            },
        };
        let base = get("INNGEST_BASE_URL")
            .map(|v| origin("INNGEST_BASE_URL", &v))
            .transpose()?;
        let default = |cloud: &str| match mode {
            Mode::Cloud => cloud.to_string(),
            Mode::Dev => DEV_ORIGIN.to_string(),
        };
        let api_origin = match get("INNGEST_API_BASE_URL") {
            Some(v) => origin("INNGEST_API_BASE_URL", &v)?,
            None => base
                .clone()
                .or(dev_origin.clone())
                .unwrap_or_else(|| default(CLOUD_API_ORIGIN)),
        };
        let event_api_origin = match get("INNGEST_EVENT_API_BASE_URL") {
            Some(v) => origin("INNGEST_EVENT_API_BASE_URL", &v)?,
            None => base
                .or(dev_origin)
                .unwrap_or_else(|| default(CLOUD_EVENT_API_ORIGIN)),
        };
        let signing_key = get("INNGEST_SIGNING_KEY");
        if let Some(k) = &signing_key {
            check_key("INNGEST_SIGNING_KEY", k)?;
        }
        let signing_key_fallback = get("INNGEST_SIGNING_KEY_FALLBACK");
        if let Some(k) = &signing_key_fallback {
            check_key("INNGEST_SIGNING_KEY_FALLBACK", k)?;
        }
        if mode == Mode::Cloud && signing_key.is_none() {
            return Err(ConfigError::NoSigningKey);
        }
        let serve_origin = get("INNGEST_SERVE_ORIGIN")
            .map(|v| origin("INNGEST_SERVE_ORIGIN", &v))
            .transpose()?;
        let serve_path = get("INNGEST_SERVE_PATH");
        if let Some(p) = &serve_path {
            if !p.starts_with('/') || p.contains(['?', '#']) {
                return Err(ConfigError::BadServePath(p.clone()));
            }
        }
        let app_id = get("STEPDESK_INNGEST_APP_ID").unwrap_or_else(|| DEFAULT_APP_ID.into());
        let app_id_ok = app_id.len() <= 128
            && app_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !app_id_ok {
            return Err(ConfigError::BadAppId(app_id));
        }
        Ok(ServeConfig {
            app_id,
            mode,
            signing_key,
            signing_key_fallback,
            event_key: get("INNGEST_EVENT_KEY"),
            env: get("INNGEST_ENV"),
            api_origin,
            event_api_origin,
            serve_origin,
            serve_path,
        })
    }

    /// A dev-mode configuration against a server at `origin` (tests, and Stepdesk driving
    /// another Stepdesk).
    pub fn dev(origin: impl Into<String>) -> ServeConfig {
        let origin = origin.into().trim_end_matches('/').to_string();
        ServeConfig {
            app_id: DEFAULT_APP_ID.into(),
            mode: Mode::Dev,
            signing_key: None,
            signing_key_fallback: None,
            event_key: None,
            env: None,
            api_origin: origin.clone(),
            event_api_origin: origin,
            serve_origin: None,
            serve_path: None,
        }
    }

    /// The signing keys to verify with, in order (the key, then the fallback).
    pub(crate) fn keys(&self) -> Vec<&str> {
        [&self.signing_key, &self.signing_key_fallback]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The host of `INNGEST_SERVE_ORIGIN`, which the server must accept in `Host` headers.
    pub fn serve_host(&self) -> Option<String> {
        let url = reqwest::Url::parse(self.serve_origin.as_deref()?).ok()?;
        url.host_str().map(str::to_string)
    }

    /// One line for the log: the mode and where things go, never a key.
    pub fn describe(&self) -> String {
        format!(
            "app `{}`, {} mode, API {}, event API {}, signing key {}{}, event key {}",
            self.app_id,
            self.mode.as_str(),
            self.api_origin,
            self.event_api_origin,
            if self.signing_key.is_some() {
                "set"
            } else {
                "not set"
            },
            if self.signing_key_fallback.is_some() {
                " (and a fallback)"
            } else {
                ""
            },
            if self.event_key.is_some() {
                "set"
            } else {
                "not set"
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "signkey-test-12345678";

    fn config(vars: &[(&str, &str)]) -> Result<ServeConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServeConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn cloud_is_the_default_and_needs_a_signing_key() {
        assert_eq!(config(&[]), Err(ConfigError::NoSigningKey));
        assert_eq!(
            config(&[("INNGEST_DEV", "0")]),
            Err(ConfigError::NoSigningKey)
        );
        let c = config(&[("INNGEST_SIGNING_KEY", KEY)]).unwrap();
        assert_eq!(c.mode, Mode::Cloud);
        assert_eq!(c.api_origin, CLOUD_API_ORIGIN);
        assert_eq!(c.event_api_origin, CLOUD_EVENT_API_ORIGIN);
        assert_eq!(c.app_id, "stepdesk");
        assert_eq!(c.keys(), vec![KEY]);
        assert!(!c.describe().contains("12345678"), "{}", c.describe());
    }

    #[test]
    fn inngest_dev_is_a_flag_or_the_dev_servers_url() {
        let c = config(&[("INNGEST_DEV", "1")]).unwrap();
        assert_eq!((c.mode, c.api_origin.as_str()), (Mode::Dev, DEV_ORIGIN));
        let c = config(&[("INNGEST_DEV", "http://127.0.0.1:9000/")]).unwrap();
        assert_eq!(c.mode, Mode::Dev);
        assert_eq!(c.api_origin, "http://127.0.0.1:9000");
        assert_eq!(c.event_api_origin, "http://127.0.0.1:9000");
        assert_eq!(
            config(&[("INNGEST_DEV", "maybe")]),
            Err(ConfigError::BadDev("maybe".into()))
        );
        assert_eq!(
            config(&[("INNGEST_DEV", "ftp://x")]),
            Err(ConfigError::BadDev("ftp://x".into()))
        );
        // Empty is unset: cloud.
        assert_eq!(
            config(&[("INNGEST_DEV", " ")]),
            Err(ConfigError::NoSigningKey)
        );
    }

    #[test]
    fn the_most_specific_origin_wins() {
        let c = config(&[
            ("INNGEST_SIGNING_KEY", KEY),
            ("INNGEST_BASE_URL", "http://inngest:8288"),
        ])
        .unwrap();
        assert_eq!(c.api_origin, "http://inngest:8288");
        assert_eq!(c.event_api_origin, "http://inngest:8288");
        let c = config(&[
            ("INNGEST_DEV", "http://dev:1"),
            ("INNGEST_BASE_URL", "http://base:2"),
            ("INNGEST_EVENT_API_BASE_URL", "http://events:3/"),
        ])
        .unwrap();
        assert_eq!(c.api_origin, "http://base:2");
        assert_eq!(c.event_api_origin, "http://events:3");
        let c = config(&[
            ("INNGEST_DEV", "1"),
            ("INNGEST_API_BASE_URL", "https://api.example"),
        ])
        .unwrap();
        assert_eq!(c.api_origin, "https://api.example");
        assert_eq!(c.event_api_origin, DEV_ORIGIN);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = config(&[("INNGEST_DEV", "1"), ("INNGEST_BASE_URL", "inngest:8288")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("INNGEST_BASE_URL is `inngest:8288`"),
            "{e}"
        );
        let e = config(&[("INNGEST_DEV", "1"), ("INNGEST_SERVE_ORIGIN", "http://")]).unwrap_err();
        assert!(e.to_string().starts_with("INNGEST_SERVE_ORIGIN"), "{e}");
        assert_eq!(
            config(&[("INNGEST_SIGNING_KEY", "signkey-prod-nothex")]),
            Err(ConfigError::BadSigningKey("INNGEST_SIGNING_KEY"))
        );
        assert_eq!(
            config(&[
                ("INNGEST_SIGNING_KEY", KEY),
                ("INNGEST_SIGNING_KEY_FALLBACK", "zz")
            ]),
            Err(ConfigError::BadSigningKey("INNGEST_SIGNING_KEY_FALLBACK"))
        );
        assert_eq!(
            config(&[("INNGEST_DEV", "1"), ("INNGEST_SERVE_PATH", "api")]),
            Err(ConfigError::BadServePath("api".into()))
        );
        assert_eq!(
            config(&[("INNGEST_DEV", "1"), ("STEPDESK_INNGEST_APP_ID", "my app")]),
            Err(ConfigError::BadAppId("my app".into()))
        );
    }

    #[test]
    fn keys_serve_url_and_app_id_are_read() {
        let c = config(&[
            ("INNGEST_SIGNING_KEY", KEY),
            ("INNGEST_SIGNING_KEY_FALLBACK", "signkey-test-abcd"),
            ("INNGEST_EVENT_KEY", "evt"),
            ("INNGEST_ENV", "branch-1"),
            ("INNGEST_SERVE_ORIGIN", "https://box.lan:3000"),
            ("INNGEST_SERVE_PATH", "/stepdesk/api/inngest"),
            ("STEPDESK_INNGEST_APP_ID", "readwise-sync"),
        ])
        .unwrap();
        assert_eq!(c.keys(), vec![KEY, "signkey-test-abcd"]);
        assert_eq!(c.event_key.as_deref(), Some("evt"));
        assert_eq!(c.env.as_deref(), Some("branch-1"));
        assert_eq!(c.serve_origin.as_deref(), Some("https://box.lan:3000"));
        assert_eq!(c.serve_host().as_deref(), Some("box.lan"));
        assert_eq!(c.serve_path.as_deref(), Some("/stepdesk/api/inngest"));
        assert_eq!(c.app_id, "readwise-sync");
    }
}
