//! The HTTP client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use crate::config::{parse_base_url, ClientConfig};
use crate::error::{Endpoint, ReadwiseError, MAX_RETRY_AFTER, MIN_RETRY_AFTER};
use crate::limiter::Limiter;
use crate::model::{format_updated_gt, BooksPage, BooksRequest, MAX_PAGE_SIZE};
use crate::token::Token;

/// Longest `detail` text copied from a Readwise error body into an error.
const MAX_DETAIL_CHARS: usize = 200;

/// A Readwise API v2 client. Cheap to clone (clones share the connection pool, the
/// per-token rate limiter and the concurrency cap).
///
/// Every call makes exactly one HTTP request (no retries inside: the caller, a durable step,
/// retries from [`ReadwiseError::is_retriable`] and [`ReadwiseError::retry_after`]). Before
/// sending, a call waits for (1) a place under `max_concurrent_requests` and (2) a slot in
/// the token's rate window; it never holds the first while waiting for the second.
#[derive(Clone)]
pub struct ReadwiseClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    http: reqwest::Client,
    limiter: Limiter,
    in_flight: Semaphore,
}

impl std::fmt::Debug for ReadwiseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadwiseClient")
            .field("base_url", &self.inner.config.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl ReadwiseClient {
    /// Builds a client. Fails only on a bad base URL or when the TLS backend cannot start.
    pub fn new(mut config: ClientConfig) -> Result<Self, ReadwiseError> {
        config.base_url = parse_base_url(config.base_url.as_str())?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout.min(config.request_timeout))
            // A redirect could carry the token elsewhere; Readwise's documented paths need none.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| ReadwiseError::Config(format!("could not build the HTTP client: {e}")))?;
        let limiter = Limiter::new(
            config.list_requests_per_minute,
            config.other_requests_per_minute,
            config.rate_window,
        );
        let in_flight = Semaphore::new(config.max_concurrent_requests.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
                in_flight,
            }),
        })
    }

    /// [`ReadwiseClient::new`] with [`ClientConfig::from_env`].
    pub fn from_env() -> Result<Self, ReadwiseError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `GET auth/`: `Ok(())` when Readwise accepts the token (`204`; any `2xx` is taken as
    /// valid), [`ReadwiseError::Rejected`] on `401`/`403`.
    pub async fn check_token(&self, token: &Token) -> Result<(), ReadwiseError> {
        let url = self.endpoint_url(Endpoint::Auth)?;
        let response = self.send(token, Endpoint::Auth, url).await?;
        if response.status.is_success() {
            if response.status != StatusCode::NO_CONTENT {
                tracing::debug!(
                    status = response.status.as_u16(),
                    "auth/ answered a 2xx other than 204"
                );
            }
            Ok(())
        } else {
            Err(self.failure(token, Endpoint::Auth, &response))
        }
    }

    /// `GET books/`: one page, in exactly one HTTP request.
    pub async fn books_page(
        &self,
        token: &Token,
        request: BooksRequest,
    ) -> Result<BooksPage, ReadwiseError> {
        let url = match &request {
            BooksRequest::First {
                page_size,
                updated_after,
            } => {
                if !(1..=MAX_PAGE_SIZE).contains(page_size) {
                    return Err(ReadwiseError::InvalidRequest(format!(
                        "page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"
                    )));
                }
                let mut url = self.endpoint_url(Endpoint::Books)?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("page_size", &page_size.to_string());
                    if let Some(t) = updated_after {
                        q.append_pair("updated__gt", &format_updated_gt(*t));
                    }
                }
                url
            }
            BooksRequest::Next { url } => self.next_url(url)?,
        };
        let response = self.send(token, Endpoint::Books, url).await?;
        if !response.status.is_success() {
            return Err(self.failure(token, Endpoint::Books, &response));
        }
        serde_json::from_slice::<BooksPage>(&response.body).map_err(|e| {
            let content_type = response
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type");
            ReadwiseError::Malformed {
                endpoint: Endpoint::Books,
                detail: format!(
                    "expected a JSON page {{count, next, results}}, got {} bytes of {content_type} ({e})",
                    response.body.len()
                ),
            }
        })
    }

    fn endpoint_url(&self, endpoint: Endpoint) -> Result<Url, ReadwiseError> {
        self.inner
            .config
            .base_url
            .join(endpoint.path())
            .map_err(|e| ReadwiseError::Config(format!("invalid Readwise base URL: {e}")))
    }

    /// A `next` link is followed verbatim, but only on the base URL's origin (the token goes
    /// with it).
    fn next_url(&self, raw: &str) -> Result<Url, ReadwiseError> {
        let url = Url::parse(raw).map_err(|_| {
            ReadwiseError::InvalidRequest("the books/ next link is not an absolute URL".into())
        })?;
        let base = &self.inner.config.base_url;
        if url.origin() != base.origin() {
            return Err(ReadwiseError::InvalidRequest(format!(
                "the books/ next link points to {} instead of the Readwise API at {}",
                url.origin().ascii_serialization(),
                base.origin().ascii_serialization()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ReadwiseError::InvalidRequest(
                "the books/ next link carries credentials".into(),
            ));
        }
        Ok(url)
    }

    /// Waits for the concurrency cap and the token's rate window, sends, reads the whole body.
    async fn send(
        &self,
        token: &Token,
        endpoint: Endpoint,
        url: Url,
    ) -> Result<RawResponse, ReadwiseError> {
        if token.is_empty() {
            return Err(ReadwiseError::InvalidRequest("the token is empty".into()));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Token {}", token.expose_secret())).map_err(|_| {
                ReadwiseError::InvalidRequest(
                    "the token contains characters that cannot be sent in an HTTP header".into(),
                )
            })?;
        auth.set_sensitive(true);

        let inner = &self.inner;
        let key = inner.limiter.key(token);
        let queued = Instant::now();
        let (_permit, _slot) = loop {
            let hint = inner.limiter.wait_hint(key, endpoint);
            if !hint.is_zero() {
                tokio::time::sleep(hint).await;
            }
            let permit = inner
                .in_flight
                .acquire()
                .await
                .expect("the semaphore is never closed");
            match inner.limiter.try_acquire(key, endpoint) {
                Ok(slot) => break (permit, slot),
                Err(wait) => {
                    drop(permit);
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let waited = queued.elapsed();
        if waited >= Duration::from_millis(100) {
            tracing::debug!(%token, %endpoint, waited_ms = waited.as_millis() as u64, "waited for a Readwise request slot");
        }

        let started = Instant::now();
        let transport = |e: reqwest::Error| transport_error(endpoint, started.elapsed(), e);
        let response = inner
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(
            %token,
            %endpoint,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            bytes = body.len(),
            "Readwise request"
        );
        Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    /// The error for a non-2xx response; a `429` also closes the token's bucket for the
    /// announced time.
    fn failure(&self, token: &Token, endpoint: Endpoint, r: &RawResponse) -> ReadwiseError {
        let e = classify(
            endpoint,
            r.status.as_u16(),
            &r.headers,
            &r.body,
            self.inner.config.default_retry_after,
            token,
        );
        if let ReadwiseError::RateLimited { retry_after, .. } = &e {
            tracing::warn!(%token, %endpoint, retry_after_s = retry_after.as_secs(), "Readwise answered 429");
            self.inner
                .limiter
                .block_for(self.inner.limiter.key(token), endpoint, *retry_after);
        } else {
            tracing::debug!(%token, %endpoint, error = %e, "Readwise request failed");
        }
        e
    }
}

struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn transport_error(endpoint: Endpoint, after: Duration, e: reqwest::Error) -> ReadwiseError {
    if e.is_timeout() {
        return ReadwiseError::Timeout { endpoint, after };
    }
    // Without the URL; then the chain of causes ("client error (Connect): tcp connect
    // error: Connection refused").
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    ReadwiseError::Connection {
        endpoint,
        detail: parts.join(": "),
    }
}

/// Maps a non-2xx response to its error.
pub(crate) fn classify(
    endpoint: Endpoint,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    default_retry_after: Duration,
    token: &Token,
) -> ReadwiseError {
    match status {
        429 => {
            let retry_after = clamp_retry_after(
                header_retry_after(headers)
                    .or_else(|| body_retry_after(body))
                    .unwrap_or(default_retry_after),
            );
            ReadwiseError::RateLimited {
                endpoint,
                retry_after,
            }
        }
        401 | 403 => ReadwiseError::Rejected {
            endpoint,
            status,
            detail: body_detail(body, token),
        },
        500..=599 => ReadwiseError::Server {
            endpoint,
            status,
            retry_after: header_retry_after(headers).map(clamp_retry_after),
        },
        _ => ReadwiseError::Http {
            endpoint,
            status,
            detail: body_detail(body, token),
        },
    }
}

/// A server's wait, kept within [`MIN_RETRY_AFTER`, `MAX_RETRY_AFTER`] as Inngest does: zero
/// would spin, and an absurd value (`Retry-After: 18446744073709551615`, a date in the year
/// 9999) must neither overflow a deadline nor park a sync for ever.
pub(crate) fn clamp_retry_after(d: Duration) -> Duration {
    d.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// `Retry-After` as delay-seconds (an integer, or leniently a decimal) or an HTTP-date (any of
/// RFC 9110's three formats). Not clamped; any value parses without overflow (seconds beyond
/// `u64` saturate, dates in the past are zero).
fn header_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many for a u64 is still "very long".
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            // `as` saturates at u64::MAX.
            return Some(Duration::from_secs(secs.ceil() as u64));
        }
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The N of DRF's "Expected available in N seconds." (or "1 second.").
fn body_retry_after(body: &[u8]) -> Option<Duration> {
    let text = String::from_utf8_lossy(body);
    let rest = &text[text.find("available in")? + "available in".len()..];
    let rest = rest.trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let secs: f64 = number.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs(secs.ceil() as u64))
}

/// Readwise's `{"detail": "..."}` text, shortened, with the token (should Readwise ever echo
/// it) masked.
fn body_detail(body: &[u8], token: &Token) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = v.get("detail")?.as_str()?.trim();
    if detail.is_empty() {
        return None;
    }
    let mut d: String = detail.chars().take(MAX_DETAIL_CHARS).collect();
    if detail.chars().count() > MAX_DETAIL_CHARS {
        d.push('…');
    }
    let secret = token.expose_secret();
    if !secret.is_empty() && d.contains(secret) {
        d = d.replace(secret, "****");
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const DEFAULT: Duration = Duration::from_secs(60);

    fn tok() -> Token {
        Token::new("secret-token-0123456789abcdef")
    }

    #[test]
    fn rate_limited_prefers_the_header() {
        let e = classify(
            Endpoint::Books,
            429,
            &headers(&[("retry-after", "7")]),
            br#"{"detail":"Request was throttled. Expected available in 39 seconds."}"#,
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retriable());
        assert_eq!(e.status(), Some(429));
    }

    #[test]
    fn rate_limited_falls_back_to_the_body_then_the_default() {
        let body = br#"{"detail":"Request was throttled. Expected available in 39 seconds."}"#;
        let e = classify(
            Endpoint::Books,
            429,
            &HeaderMap::new(),
            body,
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(39)));
        let e = classify(
            Endpoint::Books,
            429,
            &headers(&[("retry-after", "soon")]),
            b"Request was throttled. Expected available in 1 second.",
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        let e = classify(
            Endpoint::Books,
            429,
            &HeaderMap::new(),
            b"<html>slow down</html>",
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(DEFAULT));
        // Zero would spin; one second is the floor.
        let e = classify(
            Endpoint::Auth,
            429,
            &headers(&[("retry-after", "0")]),
            b"",
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn retry_after_as_http_date() {
        let at = std::time::SystemTime::now() + Duration::from_secs(30);
        let h = headers(&[("retry-after", &httpdate::fmt_http_date(at))]);
        let d = header_retry_after(&h).unwrap();
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        // RFC 850 and asctime, the two obsolete forms RFC 9110 still asks to accept.
        for old in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(
                header_retry_after(&headers(&[("retry-after", old)])),
                Some(Duration::ZERO),
                "{old}"
            );
        }
        assert_eq!(
            header_retry_after(&headers(&[("retry-after", "2.5")])),
            Some(Duration::from_secs(3))
        );
    }

    /// Absurd values never overflow and end up between one second and a day.
    #[test]
    fn absurd_retry_after_values_are_clamped() {
        let day = Duration::from_secs(24 * 3600);
        for (value, want) in [
            ("18446744073709551615", day),
            ("99999999999999999999999999", day),
            ("1e300", day),
            ("Fri, 31 Dec 9999 23:59:59 GMT", day),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Duration::from_secs(1)),
            ("0", Duration::from_secs(1)),
            ("0.0001", Duration::from_secs(1)),
            ("86401", day),
            ("86399", Duration::from_secs(86_399)),
            // Unreadable: the body's "available in 39 seconds" is used.
            ("-5", Duration::from_secs(39)),
            ("NaN", Duration::from_secs(39)),
            ("inf", Duration::from_secs(39)),
            ("Sun, 06 Nov 99999 08:49:37 GMT", Duration::from_secs(39)),
            ("Sun, 32 Nov 1994 08:49:37 GMT", Duration::from_secs(39)),
        ] {
            let e = classify(
                Endpoint::Books,
                429,
                &headers(&[("retry-after", value)]),
                br#"{"detail":"Request was throttled. Expected available in 39 seconds."}"#,
                DEFAULT,
                &tok(),
            );
            assert_eq!(e.retry_after(), Some(want), "Retry-After: {value}");
            let e = classify(
                Endpoint::Books,
                503,
                &headers(&[("retry-after", value)]),
                b"",
                DEFAULT,
                &tok(),
            );
            assert!(
                e.retry_after()
                    .is_none_or(|d| (MIN_RETRY_AFTER..=MAX_RETRY_AFTER).contains(&d)),
                "503 with Retry-After: {value}: {e:?}"
            );
        }
        let body = b"Request was throttled. Expected available in 99999999999999999999999 seconds.";
        let e = classify(
            Endpoint::Books,
            429,
            &HeaderMap::new(),
            body,
            DEFAULT,
            &tok(),
        );
        assert_eq!(e.retry_after(), Some(day));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let t = tok();
        let rejected = classify(
            Endpoint::Auth,
            401,
            &HeaderMap::new(),
            br#"{"detail":"Invalid token."}"#,
            DEFAULT,
            &t,
        );
        assert!(matches!(
            rejected,
            ReadwiseError::Rejected { status: 401, .. }
        ));
        assert!(!rejected.is_retriable());
        assert!(rejected.is_rejected());
        assert_eq!(
            rejected.to_string(),
            "Readwise rejected the token (401 on auth/: Invalid token.)"
        );
        let forbidden = classify(Endpoint::Books, 403, &HeaderMap::new(), b"", DEFAULT, &t);
        assert_eq!(
            forbidden.to_string(),
            "Readwise rejected the token (403 on books/)"
        );

        let server = classify(
            Endpoint::Books,
            503,
            &headers(&[("retry-after", "12")]),
            b"<h1>oops</h1>",
            DEFAULT,
            &t,
        );
        assert!(matches!(server, ReadwiseError::Server { status: 503, .. }));
        assert!(server.is_retriable());
        assert_eq!(server.retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(server.to_string(), "Readwise server error 503 on books/");

        let not_found = classify(
            Endpoint::Books,
            404,
            &HeaderMap::new(),
            br#"{"detail":"Invalid page."}"#,
            DEFAULT,
            &t,
        );
        assert!(!not_found.is_retriable());
        assert_eq!(
            not_found.to_string(),
            "Readwise answered 404 on books/: Invalid page."
        );
        let timeout = classify(Endpoint::Books, 408, &HeaderMap::new(), b"", DEFAULT, &t);
        assert!(timeout.is_retriable());
        let redirect = classify(Endpoint::Auth, 301, &HeaderMap::new(), b"", DEFAULT, &t);
        assert!(!redirect.is_retriable());
    }

    #[test]
    fn an_echoed_token_is_masked() {
        let t = tok();
        let body = format!(
            r#"{{"detail":"Token {} is not valid."}}"#,
            t.expose_secret()
        );
        let e = classify(
            Endpoint::Auth,
            401,
            &HeaderMap::new(),
            body.as_bytes(),
            DEFAULT,
            &t,
        );
        let msg = e.to_string();
        assert!(!msg.contains(t.expose_secret()), "{msg}");
        assert!(msg.contains("Token **** is not valid."), "{msg}");
        assert!(!format!("{e:?}").contains(t.expose_secret()));
    }

    #[test]
    fn long_details_are_cut() {
        let body = format!(r#"{{"detail":"{}"}}"#, "x".repeat(5000));
        let d = body_detail(body.as_bytes(), &tok()).unwrap();
        assert_eq!(d.chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
