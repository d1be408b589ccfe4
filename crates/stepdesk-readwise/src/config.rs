//! Client configuration.

use std::time::Duration;

use reqwest::Url;

use crate::error::ReadwiseError;

/// Readwise's public API base URL.
pub const DEFAULT_BASE_URL: &str = "https://readwise.io/api/v2/";

/// The environment variable overriding the base URL.
pub const BASE_URL_ENV: &str = "READWISE_API_URL";

/// How a [`crate::ReadwiseClient`] talks to Readwise.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API root, always ending with `/` (default `https://readwise.io/api/v2/`).
    pub base_url: Url,
    /// Whole-request timeout, connect to last body byte (default 30 s).
    pub request_timeout: Duration,
    /// Connect timeout (default 10 s, never more than `request_timeout`).
    pub connect_timeout: Duration,
    /// List requests (`books/`) allowed per token per `rate_window` (default 20, Readwise's
    /// documented limit). `0` disables the client-side list limiter.
    pub list_requests_per_minute: u32,
    /// Other requests (`auth/`) allowed per token per `rate_window` (default 240). `0`
    /// disables it.
    pub other_requests_per_minute: u32,
    /// The limiter's sliding window (default 60 s; tests shorten it).
    pub rate_window: Duration,
    /// Requests in flight at once across all tokens (default 32).
    pub max_concurrent_requests: usize,
    /// Wait reported for a `429` carrying neither a `Retry-After` header nor a number in its
    /// body (default 60 s, one full window).
    pub default_retry_after: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse(DEFAULT_BASE_URL).expect("default base URL"),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            list_requests_per_minute: 20,
            other_requests_per_minute: 240,
            rate_window: Duration::from_secs(60),
            max_concurrent_requests: 32,
            default_retry_after: Duration::from_secs(60),
            user_agent: concat!("stepdesk-readwise/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl ClientConfig {
    /// The defaults, with the base URL taken from `READWISE_API_URL` when it is set and not
    /// empty. Fails when that value is not an `http`/`https` URL.
    pub fn from_env() -> Result<Self, ReadwiseError> {
        Self::from_env_value(std::env::var(BASE_URL_ENV).ok().as_deref())
    }

    /// [`ClientConfig::from_env`] with the variable's value given (testable without touching
    /// the process environment).
    pub fn from_env_value(value: Option<&str>) -> Result<Self, ReadwiseError> {
        let config = Self::default();
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => config.with_base_url(v),
            None => Ok(config),
        }
    }

    /// Sets the base URL (from settings, or a fake server's). A missing trailing slash is
    /// added, so `http://host/api/v2` and `http://host/api/v2/` are the same root.
    pub fn with_base_url(mut self, url: &str) -> Result<Self, ReadwiseError> {
        self.base_url = parse_base_url(url)?;
        Ok(self)
    }
}

pub(crate) fn parse_base_url(raw: &str) -> Result<Url, ReadwiseError> {
    let mut url = Url::parse(raw.trim())
        .map_err(|e| ReadwiseError::Config(format!("invalid Readwise base URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ReadwiseError::Config(
            "the Readwise base URL must be an http:// or https:// URL with a host".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ReadwiseError::Config(
            "the Readwise base URL must not carry credentials".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_and_default() {
        let c = ClientConfig::from_env_value(None).unwrap();
        assert_eq!(c.base_url.as_str(), "https://readwise.io/api/v2/");
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.list_requests_per_minute, 20);
        assert_eq!(c.max_concurrent_requests, 32);
        let c = ClientConfig::from_env_value(Some("  ")).unwrap();
        assert_eq!(c.base_url.as_str(), DEFAULT_BASE_URL);
        let c = ClientConfig::from_env_value(Some("http://127.0.0.1:9000/api/v2")).unwrap();
        assert_eq!(c.base_url.as_str(), "http://127.0.0.1:9000/api/v2/");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in [
            "readwise.io/api/v2/",
            "ftp://readwise.io/",
            "http://u:p@h/api/v2/",
        ] {
            let e = ClientConfig::from_env_value(Some(bad)).unwrap_err();
            assert!(matches!(e, ReadwiseError::Config(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("u:p"), "{e}");
        }
    }
}
