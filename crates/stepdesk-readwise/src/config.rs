//! Client configuration.

use std::time::Duration;

use reqwest::Url;
use url::Host;

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
    /// empty. Fails when that value is not an acceptable base URL (see
    /// [`ClientConfig::with_base_url`]).
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
    ///
    /// Every token is sent to this URL, so it must be `https://`; plain `http://` is allowed
    /// only to a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`, `*.localhost`), where
    /// nothing crosses the network (a local fake or proxy). Credentials in the URL are
    /// refused too.
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
            "the Readwise base URL must be an https:// URL with a host".into(),
        ));
    }
    if url.scheme() == "http" && !is_loopback_host(&url) {
        return Err(ReadwiseError::Config(format!(
            "the Readwise base URL must use https://: plain http:// would send every user's \
             Readwise token unencrypted to {}; http:// is allowed only for a loopback host \
             (127.0.0.0/8, [::1], localhost or *.localhost), e.g. a local fake Readwise",
            url.host_str().unwrap_or_default()
        )));
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

/// Whether the URL's host is this machine: `127.0.0.0/8`, `::1`, `localhost` or a name under
/// `.localhost` (which resolvers must answer with loopback, RFC 6761). `Url` has already
/// lower-cased the name, decoded IP literals and dropped a trailing dot's ambiguity for us.
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    }
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
            "http://u:p@localhost/api/v2/",
            "https://u:p@readwise.io/api/v2/",
        ] {
            let e = ClientConfig::from_env_value(Some(bad)).unwrap_err();
            assert!(matches!(e, ReadwiseError::Config(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("u:p"), "{e}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:9000/api/v2/",
            "http://127.8.9.10/api/v2/",
            "http://[::1]:9000/api/v2/",
            "http://localhost:9000/api/v2/",
            "http://LOCALHOST/api/v2/",
            "http://localhost./api/v2/",
            "http://fake.localhost:9000/api/v2/",
            "https://readwise.io/api/v2/",
            "https://192.168.1.20/api/v2/",
        ] {
            let c = ClientConfig::default().with_base_url(ok);
            assert!(c.is_ok(), "{ok}: {:?}", c.err());
        }
        for bad in [
            "http://readwise.io/api/v2/",
            "http://192.168.1.20:8000/api/v2/",
            "http://0.0.0.0:8000/api/v2/",
            "http://[::]:8000/api/v2/",
            "http://[::ffff:8.8.8.8]/api/v2/",
            "http://localhost.evil.com/api/v2/",
            "http://evillocalhost/api/v2/",
            "http://128.0.0.1/api/v2/",
        ] {
            let e = ClientConfig::default().with_base_url(bad).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ReadwiseError::Config(_)), "{bad}: {msg}");
            assert!(msg.contains("must use https://"), "{bad}: {msg}");
            assert!(msg.contains("unencrypted"), "says why: {msg}");
            assert!(
                msg.contains("127.0.0.0/8, [::1], localhost or *.localhost"),
                "says what is allowed: {msg}"
            );
            // The environment variable goes through the same check.
            assert!(ClientConfig::from_env_value(Some(bad)).is_err(), "{bad}");
        }
        // A client built from a config whose URL was set directly is checked too.
        let c = ClientConfig {
            base_url: Url::parse("http://readwise.io/api/v2/").unwrap(),
            ..Default::default()
        };
        assert!(crate::ReadwiseClient::new(c).is_err());
    }
}
