//! Events: the Inngest event shape, validation at the door, and internal (system) events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::now_ms;

/// Largest accepted event name, in characters.
pub const MAX_NAME_LEN: usize = 512;
/// Largest accepted event, serialized, in bytes.
pub const MAX_EVENT_BYTES: usize = 3 * 1024 * 1024;
/// Most events accepted in one request.
pub const MAX_BATCH: usize = 5_000;

/// Names of the events Stepdesk itself emits. Senders may not use the `inngest/` prefix.
pub mod internal {
    pub const FUNCTION_INVOKED: &str = "inngest/function.invoked";
    pub const FUNCTION_FAILED: &str = "inngest/function.failed";
    pub const FUNCTION_CANCELLED: &str = "inngest/function.cancelled";
    pub const SCHEDULED_TIMER: &str = "inngest/scheduled.timer";
}

/// An event as stored and as handed to functions: `{name, data, user, id, ts, v}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Map<String, Value>,
    pub user: Map<String, Value>,
    pub id: String,
    pub ts: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub v: Option<String>,
}

/// A validated event that still lacks its server-assigned internal id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub name: String,
    pub data: Map<String, Value>,
    pub user: Map<String, Value>,
    /// The sender's `id`, if it gave one. Repeats of it start no second run per function.
    pub id: Option<String>,
    pub ts: i64,
    pub v: Option<String>,
}

impl NewEvent {
    /// An internal event (may use the `inngest/` prefix).
    pub fn internal(name: &str, data: Map<String, Value>) -> NewEvent {
        NewEvent {
            name: name.to_string(),
            data,
            user: Map::new(),
            id: None,
            ts: now_ms(),
            v: None,
        }
    }

    /// Completes the event with its internal id; the event's `id` defaults to it.
    pub fn into_event(self, internal_id: &str) -> Event {
        Event {
            id: self.id.unwrap_or_else(|| internal_id.to_string()),
            name: self.name,
            data: self.data,
            user: self.user,
            ts: self.ts,
            v: self.v,
        }
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be an event object or an array of events")]
    NotAnEvent,
    #[error("no events: the array is empty")]
    Empty,
    #[error("too many events: {0} in one request, the limit is {MAX_BATCH}")]
    TooMany(usize),
    #[error("event {index}: {reason}")]
    Invalid { index: usize, reason: String },
}

/// Parses a request body holding one event or an array of events, and validates each.
pub fn parse_events(body: &[u8]) -> Result<Vec<NewEvent>, EventError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EventError::MalformedJson(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(EventError::NotAnEvent),
    };
    if items.is_empty() {
        return Err(EventError::Empty);
    }
    if items.len() > MAX_BATCH {
        return Err(EventError::TooMany(items.len()));
    }
    let received = now_ms();
    // An event cannot be larger than the body it came in: only measure events (which
    // means serializing them again) when the body itself is over the limit.
    let check_size = body.len() > MAX_EVENT_BYTES;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            validate_event(item, received, check_size)
                .map_err(|reason| EventError::Invalid { index, reason })
        })
        .collect()
}

/// Validates one event from a sender, filling defaults (`ts`, `user`, `data`).
pub fn validate(item: Value, received_ms: i64) -> Result<NewEvent, String> {
    validate_event(item, received_ms, true)
}

fn validate_event(item: Value, received_ms: i64, check_size: bool) -> Result<NewEvent, String> {
    let Value::Object(mut obj) = item else {
        return Err("an event must be a JSON object".into());
    };
    if check_size {
        let size = serde_json::to_vec(&obj)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_EVENT_BYTES {
            return Err(format!(
                "the event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes (3 MiB)"
            ));
        }
    }
    let name = match obj.remove("name") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("`name` must be a string".into()),
        None => return Err("`name` is required".into()),
    };
    if name.trim().is_empty() {
        return Err("`name` must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("`name` is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with("inngest/") {
        return Err(format!(
            "`{name}`: names starting with `inngest/` are reserved for internal events"
        ));
    }
    let mut data = match obj.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`data` must be a JSON object".into()),
    };
    data.remove("_inngest");
    let user = match obj.remove("user") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`user` must be a JSON object".into()),
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("`id` must be a string".into()),
    };
    let ts = match obj.remove("ts") {
        None | Some(Value::Null) => received_ms,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => received_ms,
            // Inngest accepts timestamps between 1980 and 2100.
            Some(ms) if (315_532_800_000..4_102_444_800_000).contains(&ms) => ms,
            _ => {
                return Err(
                    "`ts` must be milliseconds since the epoch, between 1980 and 2100".into(),
                )
            }
        },
        Some(_) => return Err("`ts` must be a number (milliseconds since the epoch)".into()),
    };
    let v = match obj.remove("v") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("`v` must be a string".into()),
    };
    Ok(NewEvent {
        name,
        data,
        user,
        id,
        ts,
        v,
    })
}

/// Looks up a dotted path (`data.userId`) in an event's JSON.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.strip_prefix("event.").unwrap_or(path);
    path.split('.').try_fold(value, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_defaults() {
        let evs = parse_events(br#"{"name":"app/x"}"#).unwrap();
        assert_eq!(evs.len(), 1);
        assert!(evs[0].data.is_empty());
        assert!(evs[0].user.is_empty());
        assert!(evs[0].id.is_none());
        assert!(evs[0].ts > 1_600_000_000_000);
    }

    #[test]
    fn keeps_sender_fields() {
        let evs = parse_events(
            br#"[{"name":"a","data":{"k":1},"user":{"u":2},"id":"x","ts":1700000000000,"v":"1"}]"#,
        )
        .unwrap();
        let e = evs.into_iter().next().unwrap().into_event("01INTERNAL");
        assert_eq!(e.id, "x");
        assert_eq!(e.ts, 1_700_000_000_000);
        assert_eq!(e.v.as_deref(), Some("1"));
        assert_eq!(e.data["k"], json!(1));
    }

    #[test]
    fn rejects_bad_events_naming_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "not valid JSON"),
            (b"42", "event object or an array"),
            (b"[]", "empty"),
            (br#"{"data":{}}"#, "`name` is required"),
            (br#"{"name":"inngest/function.failed"}"#, "reserved"),
            (
                br#"{"name":"a","data":[1]}"#,
                "`data` must be a JSON object",
            ),
            (
                br#"{"name":"a","data":"x"}"#,
                "`data` must be a JSON object",
            ),
            (br#"{"name":"a","ts":"yesterday"}"#, "`ts` must be a number"),
            (br#"[{"name":"a"},{"name":5}]"#, "event 1"),
        ];
        for (body, expected) in cases {
            let err = parse_events(body).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn rejects_long_names_and_big_events() {
        let long = "a".repeat(513);
        let err = parse_events(json!({"name": long}).to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("longer than 512"));
        let ok = "a".repeat(512);
        assert!(parse_events(json!({"name": ok}).to_string().as_bytes()).is_ok());
        let big = "x".repeat(MAX_EVENT_BYTES);
        let err =
            parse_events(json!({"name":"a","data":{"b":big}}).to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("3 MiB"));
    }

    #[test]
    fn rejects_oversized_batches() {
        let batch: Vec<Value> = (0..MAX_BATCH + 1).map(|_| json!({"name":"a"})).collect();
        let err = parse_events(serde_json::to_vec(&batch).unwrap().as_slice()).unwrap_err();
        assert_eq!(err, EventError::TooMany(MAX_BATCH + 1));
    }

    #[test]
    fn lookup_follows_dotted_paths() {
        let v = json!({"data":{"user":{"id":"u1"}}});
        assert_eq!(lookup(&v, "data.user.id"), Some(&json!("u1")));
        assert_eq!(lookup(&v, "event.data.user.id"), Some(&json!("u1")));
        assert_eq!(lookup(&v, "data.nope"), None);
    }
}
