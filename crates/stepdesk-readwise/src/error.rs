//! Typed faults of the Readwise API.

use std::fmt;
use std::time::Duration;

/// The shortest wait reported for a `429` or a `5xx` with `Retry-After` (a zero would spin).
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest: whatever the server says (`Retry-After: 18446744073709551615`, a date in the
/// year 9999), a sync waits at most a day before trying again, as Inngest clamps it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The Readwise endpoint a request went to; errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET auth/`, the token check.
    Auth,
    /// `GET books/`, the Books LIST endpoint.
    Books,
}

impl Endpoint {
    /// The path relative to the base URL, as printed in errors (`"books/"`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Auth => "auth/",
            Endpoint::Books => "books/",
        }
    }

    /// Whether Readwise counts it against the 20/min LIST budget (otherwise 240/min).
    pub fn is_list(self) -> bool {
        matches!(self, Endpoint::Books)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A failed Readwise request. Messages never contain the token, and never a URL (only the
/// endpoint name, or an origin for a refused `next` link).
///
/// Retriable: [`RateLimited`](Self::RateLimited) (after [`retry_after`](Self::retry_after)),
/// [`Server`](Self::Server), [`Timeout`](Self::Timeout), [`Connection`](Self::Connection),
/// [`Malformed`](Self::Malformed) (a `200` that is not the expected JSON is almost always a
/// proxy or CDN answering in Readwise's place, e.g. an HTML error page, and passes; a
/// persistent one still ends when the caller's bounded retries run out), and `408` under
/// [`Http`](Self::Http). Everything else is not retriable: a rejected token, other `4xx`,
/// bad requests and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadwiseError {
    /// `429`: wait `retry_after` (from `Retry-After`, else the body's "Expected available in
    /// N seconds", else the configured default), always between [`MIN_RETRY_AFTER`] and
    /// [`MAX_RETRY_AFTER`].
    #[error("Readwise rate limit reached on {endpoint}; retry in {}s", retry_after.as_secs())]
    RateLimited {
        endpoint: Endpoint,
        retry_after: Duration,
    },
    /// `5xx`. `retry_after` is set when the response carried a readable `Retry-After` header
    /// (clamped like a `429`'s).
    #[error("Readwise server error {status} on {endpoint}")]
    Server {
        endpoint: Endpoint,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout.
    #[error("Readwise request to {endpoint} timed out after {}s", after.as_secs_f64())]
    Timeout { endpoint: Endpoint, after: Duration },
    /// Connecting failed, or the connection broke before the response was complete.
    #[error("could not reach Readwise for {endpoint}: {detail}")]
    Connection { endpoint: Endpoint, detail: String },
    /// `401`/`403`: the token is invalid or revoked. Not retriable; the caller reports
    /// "Readwise rejected the token for user <id>".
    #[error("Readwise rejected the token ({status} on {endpoint}{})", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Rejected {
        endpoint: Endpoint,
        status: u16,
        detail: Option<String>,
    },
    /// A success status whose body is not what the endpoint returns.
    #[error("Readwise returned a malformed response from {endpoint}: {detail}")]
    Malformed { endpoint: Endpoint, detail: String },
    /// Any other unexpected status (other `4xx`, `3xx`: redirects are not followed, so the
    /// token is never sent elsewhere). `detail` is Readwise's `detail` text when there is one.
    #[error("Readwise answered {status} on {endpoint}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Http {
        endpoint: Endpoint,
        status: u16,
        detail: Option<String>,
    },
    /// A request this client refuses to send (e.g. `page_size` out of range, a `next` link
    /// to another origin, a token that cannot be put in a header).
    #[error("invalid Readwise request: {0}")]
    InvalidRequest(String),
    /// Bad client configuration (base URL).
    #[error("{0}")]
    Config(String),
}

impl ReadwiseError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ReadwiseError::RateLimited { .. }
            | ReadwiseError::Server { .. }
            | ReadwiseError::Timeout { .. }
            | ReadwiseError::Connection { .. }
            | ReadwiseError::Malformed { .. } => true,
            ReadwiseError::Http { status, .. } => *status == 408,
            ReadwiseError::Rejected { .. }
            | ReadwiseError::InvalidRequest(_)
            | ReadwiseError::Config(_) => false,
        }
    }

    /// How long Readwise asked to wait: always set for [`RateLimited`](Self::RateLimited),
    /// and for a `5xx` that carried `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReadwiseError::RateLimited { retry_after, .. } => Some(*retry_after),
            ReadwiseError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether Readwise refused the token (`401`/`403`).
    pub fn is_rejected(&self) -> bool {
        matches!(self, ReadwiseError::Rejected { .. })
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadwiseError::RateLimited { .. } => Some(429),
            ReadwiseError::Server { status, .. }
            | ReadwiseError::Rejected { status, .. }
            | ReadwiseError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The endpoint, when the error came from a request.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            ReadwiseError::RateLimited { endpoint, .. }
            | ReadwiseError::Server { endpoint, .. }
            | ReadwiseError::Timeout { endpoint, .. }
            | ReadwiseError::Connection { endpoint, .. }
            | ReadwiseError::Rejected { endpoint, .. }
            | ReadwiseError::Malformed { endpoint, .. }
            | ReadwiseError::Http { endpoint, .. } => Some(*endpoint),
            ReadwiseError::InvalidRequest(_) | ReadwiseError::Config(_) => None,
        }
    }
}
