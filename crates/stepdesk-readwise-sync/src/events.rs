//! The Readwise events: their payloads, validated at the door, in one place (the admin API
//! serves [`event_types`] to the UI).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub const FETCH_BOOKS: &str = "readwise/fetch-books";
pub const DAILY_SYNC: &str = "readwise/daily-sync";

pub const FETCH_BOOKS_FN: &str = "readwise-fetch-books";
pub const DAILY_SYNC_FN: &str = "readwise-daily-sync";

/// `readwise/fetch-books` as functions see it (`apiKey` never reaches a stored event).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FetchBooks {
    #[serde(rename = "userId")]
    pub user_id: String,
    /// Set when the daily sync asked for this sync.
    #[serde(
        rename = "dailySyncRunId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub daily_sync_run_id: Option<String>,
}

/// `readwise/fetch-books` as a sender may send it: the seed's `{userId, apiKey}`.
#[derive(Debug)]
pub struct FetchBooksRequest {
    pub user_id: String,
    /// A token to save in the keychain for the user; stripped from the event.
    pub api_key: Option<String>,
}

fn string_field<'a>(
    data: &'a Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Option<&'a str>, String> {
    match data.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("`data.{field}` is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(format!("`data.{field}` must not be empty"))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`data.{field}` must be a string")),
    }
}

/// A user id: 1-200 printable characters.
pub fn check_user_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 200 || id.chars().any(char::is_control) {
        return Err("a user id must be 1-200 printable characters".into());
    }
    Ok(())
}

/// Validates `readwise/fetch-books` data (never echoing the token).
pub fn parse_fetch_books(data: &Map<String, Value>) -> Result<FetchBooksRequest, String> {
    let user_id = string_field(data, "userId", true)?
        .unwrap_or_default()
        .to_string();
    check_user_id(&user_id).map_err(|e| format!("`data.userId`: {e}"))?;
    let api_key = match data.get("apiKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::String(_)) => return Err("`data.apiKey` must not be empty".into()),
        Some(_) => return Err("`data.apiKey` must be a string".into()),
    };
    string_field(data, "dailySyncRunId", false)?;
    Ok(FetchBooksRequest { user_id, api_key })
}

/// Validates `readwise/daily-sync` data: `timestamp` is an RFC 3339 time.
pub fn parse_daily_sync(data: &Map<String, Value>) -> Result<(), String> {
    let ts = string_field(data, "timestamp", true)?.unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|_| ())
        .map_err(|_| format!("`data.timestamp` must be an RFC 3339 time such as 2026-01-31T03:00:00Z, not `{ts}`"))
}

/// The events' shapes, for forms and examples in the UI.
pub fn event_types() -> Value {
    json!([
        {
            "name": FETCH_BOOKS,
            "description": "Sync one user's Readwise books. `apiKey` (optional) is saved to the keychain for the user and removed from the event.",
            "fields": [
                {"name": "userId", "type": "string", "required": true},
                {"name": "apiKey", "type": "string", "required": false, "secret": true}
            ],
            "example": {"userId": "user-123"}
        },
        {
            "name": DAILY_SYNC,
            "description": "Sync every user with a token now (the daily sync also runs on cron 0 3 * * * UTC).",
            "fields": [{"name": "timestamp", "type": "string (RFC 3339)", "required": true}],
            "example": {"timestamp": "2026-01-31T03:00:00Z"}
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fetch_books_needs_a_user_id() {
        let ok =
            parse_fetch_books(&data(json!({"userId": "u1", "apiKey": "secret-token"}))).unwrap();
        assert_eq!(ok.user_id, "u1");
        assert_eq!(ok.api_key.as_deref(), Some("secret-token"));
        for (bad, field) in [
            (json!({}), "`data.userId` is required"),
            (json!({"userId": 5}), "`data.userId` must be a string"),
            (json!({"userId": " "}), "must not be empty"),
            (
                json!({"userId": "u", "apiKey": 7}),
                "`data.apiKey` must be a string",
            ),
        ] {
            let err = parse_fetch_books(&data(bad)).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
        let err = parse_fetch_books(&data(json!({"userId": "u", "apiKey": ["secret-token"]})))
            .unwrap_err();
        assert!(!err.contains("secret-token"), "errors never echo the token");
    }

    #[test]
    fn daily_sync_needs_a_timestamp() {
        assert!(parse_daily_sync(&data(json!({"timestamp": "2026-01-31T03:00:00Z"}))).is_ok());
        assert!(parse_daily_sync(&data(json!({})))
            .unwrap_err()
            .contains("`data.timestamp` is required"));
        assert!(parse_daily_sync(&data(json!({"timestamp": "tuesday"})))
            .unwrap_err()
            .contains("RFC 3339"));
    }
}
