//! The Readwise events: their payloads, validated at the door, in one place (the admin API
//! serves [`event_types`] to the UI).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub const FETCH_BOOKS: &str = "readwise/fetch-books";
pub const DAILY_SYNC: &str = "readwise/daily-sync";

pub const FETCH_BOOKS_FN: &str = "readwise-fetch-books";
pub const DAILY_SYNC_FN: &str = "readwise-daily-sync";
/// Records a cancelled `readwise-fetch-books` run on its user.
pub const FETCH_BOOKS_CANCELLED_FN: &str = "readwise-fetch-books-cancelled";

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

/// The longest user id.
pub const MAX_USER_ID_CHARS: usize = 128;

/// What a user id may be: 1-128 characters of ASCII letters, digits and `.`, `_`, `@`, `+`,
/// `-`, not starting with `.` or `-`. That covers the seed's ids (`user-123`), UUIDs, e-mail
/// addresses and most identity providers' ids, and keeps every id usable as one URL path
/// segment (`/api/admin/users/{id}`, no `/`, `%` or `..`), as a command-line argument (no
/// leading `-`) and in a keychain entry name.
pub fn check_user_id(id: &str) -> Result<(), String> {
    const RULE: &str = "a user id must be 1-128 characters of letters, digits and `.` `_` `@` `+` `-`, not starting with `.` or `-`";
    let len = id.chars().count();
    if len == 0 {
        return Err(format!("{RULE}; this one is empty"));
    }
    if len > MAX_USER_ID_CHARS {
        return Err(format!("{RULE}; this one has {len} characters"));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-')))
    {
        return Err(format!(
            "{RULE}; this one contains `{}`",
            bad.escape_default()
        ));
    }
    if id.starts_with(['.', '-']) {
        return Err(format!("{RULE}; this one starts with `{}`", &id[..1]));
    }
    Ok(())
}

/// Field names that would carry a Readwise token under a spelling other than the seed's
/// `apiKey`, compared after [`normalize_key`]. Besides these, any name that contains
/// `apikey`, `token`, `secret` or `password` once normalized is refused too.
const TOKEN_LIKE_KEYS: &[&str] = &[
    "key",
    "auth",
    "authorization",
    "bearer",
    "credential",
    "credentials",
];
const TOKEN_LIKE_PARTS: &[&str] = &["apikey", "token", "secret", "password"];

/// A field name as compared for token-like spellings: ASCII letters and digits only, lower
/// case (`API_KEY`, `api-key`, `Api Key` and `apiKey` are all `apikey`).
fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether a `data` field other than `apiKey` itself looks like it carries a token: such an
/// event is refused rather than stored, since only `apiKey` is moved to the keychain.
pub fn is_token_like_key(key: &str) -> bool {
    if key == "apiKey" {
        return false;
    }
    let k = normalize_key(key);
    TOKEN_LIKE_KEYS.contains(&k.as_str()) || TOKEN_LIKE_PARTS.iter().any(|p| k.contains(p))
}

/// Validates `readwise/fetch-books` data (never echoing the token).
///
/// The token may come only as `apiKey`, the seed's spelling. A field whose name looks like
/// another spelling of it ([`is_token_like_key`]: `apikey`, `api_key`, `API_KEY`, `api-key`,
/// `ApiKey`, `apiToken`, `token`, `accessToken`, `readwise_token`, `secret`, `password`,
/// `authorization`, `key`...) refuses the whole event: the gate strips only `apiKey`, so such a
/// value would otherwise be stored in the event, the run and the logs.
pub fn parse_fetch_books(data: &Map<String, Value>) -> Result<FetchBooksRequest, String> {
    if let Some(key) = data.keys().find(|k| is_token_like_key(k)) {
        let shown: String = key
            .chars()
            .take(40)
            .flat_map(char::escape_default)
            .collect();
        return Err(format!(
            "`data.{shown}` looks like a Readwise token under another name; send the token as \
             `data.apiKey` (exactly that spelling), which is moved to the keychain, or leave it \
             out. Nothing was stored"
        ));
    }
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

/// `readwise/daily-sync` as a sender may send it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DailySyncRequest {
    /// Only these users (a replay of some users of an earlier daily sync); all users with a
    /// usable token otherwise.
    pub users: Option<Vec<String>>,
    /// The daily sync this one replays.
    pub replay_of: Option<String>,
}

/// Validates `readwise/daily-sync` data: `timestamp` is an RFC 3339 time; `users` (optional)
/// a list of user ids; `replayOf` (optional) the run id of the daily sync it replays.
pub fn parse_daily_sync(data: &Map<String, Value>) -> Result<DailySyncRequest, String> {
    let ts = string_field(data, "timestamp", true)?.unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(ts).map_err(|_| {
        format!(
            "`data.timestamp` must be an RFC 3339 time such as 2026-01-31T03:00:00Z, not `{ts}`"
        )
    })?;
    let users = match data.get("users") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut ids = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(id) = item.as_str() else {
                    return Err(format!("`data.users[{i}]` must be a string"));
                };
                check_user_id(id).map_err(|e| format!("`data.users[{i}]`: {e}"))?;
                ids.push(id.to_string());
            }
            Some(ids)
        }
        Some(_) => return Err("`data.users` must be an array of user ids".into()),
    };
    let replay_of = string_field(data, "replayOf", false)?.map(str::to_string);
    Ok(DailySyncRequest { users, replay_of })
}

/// The events' shapes, for forms and examples in the UI.
pub fn event_types() -> Value {
    json!([
        {
            "name": FETCH_BOOKS,
            "description": "Sync one user's Readwise books. `apiKey` (optional) is saved to the keychain for the user and removed from the event; any other spelling of it (`api_key`, `token`, ...) is refused.",
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
    fn other_spellings_of_the_api_key_are_refused_without_echoing_them() {
        for key in [
            "apikey",
            "api_key",
            "API_KEY",
            "api-key",
            "ApiKey",
            "APIKEY",
            "Api Key",
            "apiKey ",
            "apiToken",
            "api_token",
            "token",
            "Token",
            "accessToken",
            "access_token",
            "readwise_token",
            "readwiseApiKey",
            "authToken",
            "Authorization",
            "auth",
            "key",
            "secret",
            "client_secret",
            "password",
            "bearer",
        ] {
            let mut d = Map::new();
            d.insert("userId".into(), json!("u1"));
            d.insert(key.into(), json!("tok-SECRET-value"));
            let err = parse_fetch_books(&d).unwrap_err();
            assert!(err.contains("`data.apiKey`"), "{key}: {err}");
            assert!(err.contains("another name"), "{key}: {err}");
            assert!(!err.contains("tok-SECRET-value"), "{key}: {err}");
            // Also with the right spelling next to it, and whatever the value's type.
            d.insert("apiKey".into(), json!("tok-SECRET-value"));
            d.insert(key.into(), json!({"nested": "tok-SECRET-value"}));
            let err = parse_fetch_books(&d).unwrap_err();
            assert!(!err.contains("tok-SECRET-value"), "{key}: {err}");
        }
        // The seed's spelling and the other known fields pass; so do unrelated names.
        assert!(!is_token_like_key("apiKey"));
        for fine in ["userId", "dailySyncRunId", "reason", "source", "monkey"] {
            assert!(!is_token_like_key(fine), "{fine}");
        }
        // A long or odd field name is shortened and escaped in the message.
        let mut d = Map::new();
        d.insert(format!("token\n{}", "x".repeat(500)), json!("v"));
        let err = parse_fetch_books(&d).unwrap_err();
        assert!(err.len() < 400 && !err.contains('\n'), "{err}");
    }

    #[test]
    fn user_ids_are_restricted_to_a_safe_set() {
        for ok in [
            "u1",
            "user-123",
            "ada@example.com",
            "ada+books@example.com",
            "user_2aBc",
            "550e8400-e29b-41d4-a716-446655440000",
            "sync-all",
            "a.b",
            &"x".repeat(128),
        ] {
            assert!(check_user_id(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(129) as &str, "129 characters"),
            ("a/b", "contains `/`"),
            ("fuzz/../x", "contains `/`"),
            ("a%FFb", "contains `%`"),
            ("a b", "contains ` `"),
            ("ä", "contains `\\u{e4}`"),
            ("a\nb", "contains `\\n`"),
            ("..", "starts with `.`"),
            (".hidden", "starts with `.`"),
            ("-rf", "starts with `-`"),
            ("a?b", "contains `?`"),
            ("a#b", "contains `#`"),
        ] {
            let err = check_user_id(bad).unwrap_err();
            assert!(err.contains("1-128 characters"), "{bad}: {err}");
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let err = parse_fetch_books(&data(json!({"userId": "a/b"}))).unwrap_err();
        assert!(err.starts_with("`data.userId`: a user id must be"), "{err}");
    }

    #[test]
    fn daily_sync_needs_a_timestamp() {
        assert_eq!(
            parse_daily_sync(&data(json!({"timestamp": "2026-01-31T03:00:00Z"}))).unwrap(),
            DailySyncRequest::default()
        );
        let replay = parse_daily_sync(&data(
            json!({"timestamp": "2026-01-31T03:00:00Z", "users": ["a", "b"], "replayOf": "01RUN"}),
        ))
        .unwrap();
        assert_eq!(replay.users, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(replay.replay_of.as_deref(), Some("01RUN"));
        for (bad, needle) in [
            (
                json!({"timestamp": "2026-01-31T03:00:00Z", "users": "a"}),
                "array",
            ),
            (
                json!({"timestamp": "2026-01-31T03:00:00Z", "users": [1]}),
                "users[0]",
            ),
            (
                json!({"timestamp": "2026-01-31T03:00:00Z", "users": ["a/b"]}),
                "users[0]",
            ),
        ] {
            assert!(parse_daily_sync(&data(bad)).unwrap_err().contains(needle));
        }
        assert!(parse_daily_sync(&data(json!({})))
            .unwrap_err()
            .contains("`data.timestamp` is required"));
        assert!(parse_daily_sync(&data(json!({"timestamp": "tuesday"})))
            .unwrap_err()
            .contains("RFC 3339"));
    }
}
