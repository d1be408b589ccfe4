//! Errors a function or step returns, and how the executor treats each.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A serialized error, as stored on failed steps and runs (Inngest's `{name, message, stack}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub name: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The error's cause (JS `error.cause`), as the SDK serialized it: kept at the top level,
    /// where the SDKs restore it from when they rethrow the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Value>>,
}

impl ErrorBody {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            name: name.into(),
            message: message.into(),
            stack: None,
            data: None,
            cause: None,
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// What a function body or a step returns on failure.
///
/// Any `std::error::Error` converts into a retriable error with `?`.
#[derive(Debug)]
pub enum Error {
    /// Try again later, with the backoff schedule. The default.
    Retriable(ErrorBody),
    /// Do not retry: the run (or step) fails now.
    NonRetriable(ErrorBody),
    /// Try again, but not before this time (ms since the epoch). Counts as an attempt.
    RetryAfter(ErrorBody, i64),
    /// A step failed for good (all attempts used, or non-retriable); rethrown from its memo.
    /// Propagated out of the body, it fails the run without further retries.
    StepFailed(ErrorBody),
    /// Flow control, not an error: the step tools raise it to end this execution after a
    /// new step. Always propagate it with `?`.
    Interrupt,
}

impl Error {
    pub fn retriable(message: impl std::fmt::Display) -> Error {
        Error::Retriable(ErrorBody::new("Error", message.to_string()))
    }

    pub fn non_retriable(message: impl std::fmt::Display) -> Error {
        Error::NonRetriable(ErrorBody::new("NonRetriableError", message.to_string()))
    }

    /// Retry no sooner than `after` from now.
    pub fn retry_after(message: impl std::fmt::Display, after: std::time::Duration) -> Error {
        let at = crate::time::now_ms() + after.as_millis() as i64;
        Error::RetryAfter(ErrorBody::new("RetryAfterError", message.to_string()), at)
    }

    /// The error's body, if it is an error at all.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Error::Retriable(b) | Error::NonRetriable(b) | Error::StepFailed(b) => Some(b),
            Error::RetryAfter(b, _) => Some(b),
            Error::Interrupt => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.body() {
            Some(b) => b.fmt(f),
            None => f.write_str("interrupted: a new step was reached (propagate this with `?`)"),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Retriable(ErrorBody::new("Error", message))
    }
}
