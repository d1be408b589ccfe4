//! What an SDK's answer to a call request means (protocol §1.9, §7 point 8).
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx without `X-Inngest-SDK` | [`CallOutcome::NotSdk`]: not from an SDK, a failure |
//! | 200 (any 2xx but 201/206) | [`CallOutcome::Complete`] with the body (`null` if empty) |
//! | 206 | [`CallOutcome::Ops`]: an array of ops, or one op object; `[]` is a no-op |
//! | 201 | streaming: after keep-alive whitespace, `{status, body, headers, error?}`; the rules are applied again to the inner answer |
//! | anything else | [`CallOutcome::Error`] |
//!
//! Retries: `X-Inngest-No-Retry: true|false` decides when present (the header beats the
//! status: Python fails with `500` + `true`); without it an error is retried.
//! `Retry-After` is whole seconds when 7 characters or fewer, else an RFC 3339 or HTTP date;
//! it is clamped to 1 s..24 h from now. It may come with a 206 `StepError` too, so it is
//! reported on [`CallResponse`] as well as in the error.
//! Ops are put in the order they must be applied: `WaitForEvent` (and defers) first.
//! Captures: every `js/` and `py/` call exchange (`2x`–`6x`, `70`–`77`), and
//! `js/90_streaming_post` for 201.

use serde_json::{json, Map, Value};

use crate::wire::op::{priority_first, Op};

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER_MS: i64 = 24 * 3_600_000;
/// The shortest.
pub const MIN_RETRY_AFTER_MS: i64 = 1_000;

/// `X-Inngest-SDK: inngest-js:v4.24.0` → name `inngest-js`, version `4.24.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkVersion {
    pub name: String,
    pub version: String,
}

impl SdkVersion {
    pub fn parse(header: &str) -> Option<SdkVersion> {
        let header = header.trim();
        if header.is_empty() {
            return None;
        }
        let (name, version) = header.split_once(':').unwrap_or((header, ""));
        Some(SdkVersion {
            name: name.to_string(),
            version: version.strip_prefix('v').unwrap_or(version).to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// The function finished with this value.
    Complete(Value),
    /// Ops to apply, priority ops first. Empty: nothing to do for this request.
    Ops(Vec<Op>),
    /// The request failed. `error` is an object with at least `name` and `message`.
    Error {
        error: Value,
        retriable: bool,
        /// When to retry (ms since the epoch), from `Retry-After`.
        retry_at: Option<i64>,
    },
    /// A 2xx answer without `X-Inngest-SDK`: whatever answered is not an Inngest SDK (a
    /// proxy, a login page, a wrong URL). A failure; `body` is its start, for the message.
    NotSdk { status: u16, body: String },
}

/// A parsed answer: the outcome, and what the headers said.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResponse {
    pub outcome: CallOutcome,
    /// The status the outcome was decided on (a streamed answer's inner status).
    pub status: u16,
    /// `X-Inngest-Req-Version`: store it, and send it as the body's `version` from then on.
    pub req_version: Option<i64>,
    /// `X-Inngest-SDK`.
    pub sdk: Option<SdkVersion>,
    /// `X-Inngest-No-Retry`, when sent.
    pub no_retry: Option<bool>,
    /// `Retry-After`, clamped, when sent (also on a 206 carrying a `StepError`).
    pub retry_at: Option<i64>,
    /// Whether the answer was streamed (201).
    pub streamed: bool,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Some(true),
        "false" | "0" | "f" => Some(false),
        _ => None,
    }
}

/// Reads a `Retry-After` value into a time (ms since the epoch), clamped to 1 s..24 h from
/// `now_ms`; `None` when it is neither seconds nor a date.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<i64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let at = if v.len() <= 7 {
        now_ms.saturating_add(v.parse::<i64>().ok()?.saturating_mul(1000))
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        t.timestamp_millis()
    } else {
        let t = httpdate::parse_http_date(v).ok()?;
        let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        i64::try_from(ms).ok()?
    };
    Some(at.clamp(now_ms + MIN_RETRY_AFTER_MS, now_ms + MAX_RETRY_AFTER_MS))
}

/// The start of a body, as text, for messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 1024;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// An error body made into an error object with `name` and `message`: JS sends
/// `{name, message, stack, __serialized}`, Python `{code, message, name}`, the JS
/// step-not-found `{error: "…", requestedStep, …}`; a non-JSON body becomes the message.
pub fn error_value(status: u16, body: &[u8]) -> Value {
    let parsed = serde_json::from_slice::<Value>(body);
    let mut error = match parsed {
        Ok(Value::Object(o)) => o,
        Ok(Value::String(s)) => single("message", Value::String(s)),
        Ok(Value::Null) | Err(_) if body.iter().all(u8::is_ascii_whitespace) => single(
            "message",
            format!("HTTP {status} with an empty body").into(),
        ),
        Ok(other) => {
            let mut o = single("message", format!("HTTP {status}").into());
            o.insert("data".into(), other);
            o
        }
        Err(_) => single(
            "message",
            format!("HTTP {status}: {}", snippet(body)).into(),
        ),
    };
    if !error.get("message").is_some_and(Value::is_string) {
        let message = match error.get("error") {
            Some(Value::String(s)) => s.clone(),
            _ => format!("HTTP {status}"),
        };
        error.insert("message".into(), message.into());
    }
    if !error.get("name").is_some_and(Value::is_string) {
        error.insert("name".into(), "Error".into());
    }
    Value::Object(error)
}

fn single(key: &str, value: Value) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(key.to_string(), value);
    o
}

/// A malformed answer from an SDK: retried, as a network error would be.
fn malformed(message: String, retry_at: Option<i64>) -> CallOutcome {
    CallOutcome::Error {
        error: json!({"name": "InvalidResponse", "message": message}),
        retriable: true,
        retry_at,
    }
}

fn parse_ops(body: &[u8]) -> Result<Vec<Op>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("a 206 answer that is not JSON ({e}): {}", snippet(body)))?;
    let mut ops: Vec<Op> = match value {
        Value::Array(_) => serde_json::from_value(value),
        Value::Object(_) => serde_json::from_value(value).map(|op| vec![op]),
        other => return Err(format!("a 206 answer that is not ops: {other}")),
    }
    .map_err(|e| format!("a 206 answer with a malformed op: {e}"))?;
    priority_first(&mut ops);
    Ok(ops)
}

/// Applies §1.9 to an SDK's answer received at `now_ms`.
pub fn parse_call_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_ms: i64,
) -> CallResponse {
    if status == 201 {
        return parse_stream(headers, body, now_ms);
    }
    decide(status, headers, body, now_ms, false)
}

fn decide(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_ms: i64,
    streamed: bool,
) -> CallResponse {
    let sdk = header(headers, "x-inngest-sdk").and_then(SdkVersion::parse);
    let no_retry = header(headers, "x-inngest-no-retry").and_then(parse_bool);
    let retry_at = header(headers, "retry-after").and_then(|v| parse_retry_after(v, now_ms));
    let req_version = header(headers, "x-inngest-req-version").and_then(|v| v.trim().parse().ok());
    let outcome = if (200..300).contains(&status) && sdk.is_none() {
        CallOutcome::NotSdk {
            status,
            body: snippet(body),
        }
    } else if status == 206 {
        parse_ops(body).map_or_else(|e| malformed(e, retry_at), CallOutcome::Ops)
    } else if status == 201 {
        malformed(
            "a streamed answer inside a streamed answer".into(),
            retry_at,
        )
    } else if (200..300).contains(&status) {
        CallOutcome::Complete(if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        })
    } else {
        CallOutcome::Error {
            error: error_value(status, body),
            retriable: no_retry != Some(true),
            retry_at,
        }
    };
    CallResponse {
        outcome,
        status,
        req_version,
        sdk,
        no_retry,
        retry_at,
        streamed,
    }
}

/// A 201: the SDK answered at once and streams the real answer as
/// `{status, body, headers, error?}` after keep-alive whitespace.
fn parse_stream(headers: &[(String, String)], body: &[u8], now_ms: i64) -> CallResponse {
    let fail = |message: String| {
        let mut r = decide(500, headers, b"", now_ms, true);
        r.outcome = malformed(message, r.retry_at);
        r
    };
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let inner: Map<String, Value> = match serde_json::from_slice(&body[start..]) {
        Ok(Value::Object(o)) => o,
        Ok(_) | Err(_) => {
            return fail(format!(
                "a streamed (201) answer that is not {{status, body, headers}}: {}",
                snippet(body)
            ))
        }
    };
    let Some(status) = inner
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
    else {
        return fail("a streamed (201) answer without a status".into());
    };
    // The outer headers, then the streamed ones (which win: they are the real answer's).
    let mut merged = headers.to_vec();
    if let Some(Value::Object(h)) = inner.get("headers") {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                merged.push((k.clone(), v.to_string()));
            }
        }
    }
    let inner_body = match inner.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut r = decide(status, &merged, &inner_body, now_ms, true);
    if let Some(err) = inner.get("error").filter(|e| !e.is_null()) {
        if !matches!(r.outcome, CallOutcome::Error { .. }) {
            let error = match err {
                Value::String(s) => json!({"name": "Error", "message": s}),
                other => error_value(status, other.to_string().as_bytes()),
            };
            r.outcome = CallOutcome::Error {
                error,
                retriable: r.no_retry != Some(true),
                retry_at: r.retry_at,
            };
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Opcode;

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    fn answer(capture: &str) -> Answer {
        let c: Value = serde_json::from_str(capture).unwrap();
        let r = &c["response"];
        Answer {
            status: r["status"].as_u64().unwrap() as u16,
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                .collect(),
            body: r["body_raw"].as_str().unwrap().as_bytes().to_vec(),
        }
    }

    const NOW: i64 = 1_795_767_200_000;

    fn parse(capture: &str) -> CallResponse {
        let a = answer(capture);
        parse_call_response(a.status, &a.headers, &a.body, NOW)
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SDK: (&str, &str) = ("X-Inngest-SDK", "inngest-js:v4.24.0");

    #[test]
    fn completes_with_the_return_value() {
        let r = parse(include_str!(
            "../tests/fixtures/js/22_hello_call3_both_memoized.json"
        ));
        assert_eq!(
            r.outcome,
            CallOutcome::Complete(
                json!({"a": {"greeting": "hello world"}, "b": {"n": 2, "upper": "HELLO WORLD"}})
            )
        );
        assert_eq!(r.req_version, Some(2));
        assert_eq!(
            r.sdk,
            Some(SdkVersion {
                name: "inngest-js".into(),
                version: "4.24.0".into()
            })
        );
        let py = parse(include_str!(
            "../tests/fixtures/py/22_hello_call3_both_memoized.json"
        ));
        assert!(matches!(py.outcome, CallOutcome::Complete(ref v) if v["b"]["n"] == 2));
        assert_eq!(py.sdk.unwrap().name, "inngest-py");
        // `undefined` comes as an empty body: null. A non-JSON body is kept as text.
        let empty = parse_call_response(200, &h(&[SDK]), b"", NOW);
        assert_eq!(empty.outcome, CallOutcome::Complete(Value::Null));
        let text = parse_call_response(200, &h(&[SDK]), b"done", NOW);
        assert_eq!(text.outcome, CallOutcome::Complete(json!("done")));
    }

    #[test]
    fn a_2xx_without_the_sdk_header_is_not_success() {
        for status in [200u16, 206, 204] {
            let r = parse_call_response(
                status,
                &h(&[("Content-Type", "text/html")]),
                b"<html>login</html>",
                NOW,
            );
            assert_eq!(
                r.outcome,
                CallOutcome::NotSdk {
                    status,
                    body: "<html>login</html>".into()
                }
            );
        }
    }

    #[test]
    fn reads_ops_and_their_headers() {
        let r = parse(include_str!(
            "../tests/fixtures/js/20_hello_call1_no_steps.json"
        ));
        let CallOutcome::Ops(ops) = r.outcome else {
            panic!()
        };
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].op, Opcode::StepRun);
        // A retriable step error, and the final one.
        let r = parse(include_str!(
            "../tests/fixtures/js/50_flaky_attempt0_step_throws.json"
        ));
        assert_eq!(r.no_retry, Some(false));
        assert!(matches!(&r.outcome, CallOutcome::Ops(o) if o[0].op == Opcode::StepError));
        let r = parse(include_str!(
            "../tests/fixtures/js/51_flaky_attempt0_final_attempt.json"
        ));
        assert_eq!(r.no_retry, Some(true));
        assert!(matches!(&r.outcome, CallOutcome::Ops(o) if o[0].op == Opcode::StepFailed));
        // A single op object (legacy), `[]`, and WaitForEvent first.
        let one = parse_call_response(
            206,
            &h(&[SDK]),
            br#"{"id":"a","op":"Sleep","name":"1s"}"#,
            NOW,
        );
        assert!(
            matches!(&one.outcome, CallOutcome::Ops(o) if o.len() == 1 && o[0].op == Opcode::Sleep)
        );
        let none = parse_call_response(206, &h(&[SDK]), b"[]", NOW);
        assert_eq!(none.outcome, CallOutcome::Ops(vec![]));
        let mixed = parse_call_response(
            206,
            &h(&[SDK]),
            br#"[{"id":"s","op":"StepPlanned"},{"id":"w","op":"waitforevent","name":"e"}]"#,
            NOW,
        );
        let CallOutcome::Ops(ops) = mixed.outcome else {
            panic!()
        };
        assert_eq!(
            ops.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["w", "s"]
        );
        // A step error with a Retry-After.
        let later = parse_call_response(206, &h(&[SDK, ("Retry-After", "120")]), b"[]", NOW);
        assert_eq!(later.retry_at, Some(NOW + 120_000));
    }

    #[test]
    fn a_malformed_206_is_a_retriable_error() {
        for body in [&b""[..], b"{not json", b"42", br#"[{"id":"x"}]"#] {
            let r = parse_call_response(206, &h(&[SDK]), body, NOW);
            match r.outcome {
                CallOutcome::Error {
                    error, retriable, ..
                } => {
                    assert!(retriable);
                    assert_eq!(error["name"], "InvalidResponse");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn error_of(r: &CallResponse) -> (&Value, bool, Option<i64>) {
        match &r.outcome {
            CallOutcome::Error {
                error,
                retriable,
                retry_at,
            } => (error, *retriable, *retry_at),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_follow_the_no_retry_header() {
        // JS: 500 + false (retry), 400 + true (final).
        let r = parse(include_str!(
            "../tests/fixtures/js/55_flakybody_attempt0.json"
        ));
        let (e, retriable, _) = error_of(&r);
        assert!(retriable);
        assert_eq!(e["message"], "body boom on attempt 0");
        assert_eq!(e["name"], "Error");
        let r = parse(include_str!(
            "../tests/fixtures/js/56_flakybody_final_attempt.json"
        ));
        assert!(!error_of(&r).1);
        let r = parse(include_str!(
            "../tests/fixtures/js/54_flaky_step_error_memoized.json"
        ));
        assert!(!error_of(&r).1);
        // The header beats the status: Python's 500 + true is final, a 400 + false retried.
        let r = parse_call_response(
            500,
            &h(&[SDK, ("x-inngest-no-retry", "true")]),
            br#"{"message":"x","name":"ValueError"}"#,
            NOW,
        );
        assert!(!error_of(&r).1);
        let r = parse_call_response(400, &h(&[SDK, ("X-Inngest-No-Retry", "false")]), b"{}", NOW);
        assert!(error_of(&r).1);
        // No header: retried, whatever the status.
        for status in [400u16, 401, 404, 500, 502, 302] {
            assert!(
                error_of(&parse_call_response(status, &[], b"", NOW)).1,
                "{status}"
            );
        }
    }

    #[test]
    fn error_bodies_become_name_and_message() {
        // JS step not found: `{error: …}`.
        let r = parse(include_str!(
            "../tests/fixtures/js/26_hello_unknown_stepId.json"
        ));
        let (e, retriable, _) = error_of(&r);
        assert!(retriable);
        assert!(e["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not find step"));
        assert_eq!(
            e["requestedStep"],
            "dc53df2ac9e5739abf5dd1cfb2bc6d07ddc4b525"
        );
        // Python's validation error keeps its name.
        let r = parse(include_str!(
            "../tests/fixtures/py/23_hello_without_top_level_use_api.json"
        ));
        assert_eq!(error_of(&r).0["name"], "ValidationError");
        // The JS 401 of a bad signature: `{"message":"Unauthorized"}`, no SDK header.
        let r = parse(include_str!(
            "../tests/fixtures/js/75_cloud_post_bad_signature.json"
        ));
        assert_eq!(error_of(&r).0["message"], "Unauthorized");
        assert_eq!(r.sdk, None);
        assert_eq!(
            error_value(502, b"Bad Gateway"),
            json!({"name": "Error", "message": "HTTP 502: Bad Gateway"})
        );
        assert_eq!(
            error_value(500, b""),
            json!({"name": "Error", "message": "HTTP 500 with an empty body"})
        );
        assert_eq!(
            error_value(500, b"\"oops\""),
            json!({"name": "Error", "message": "oops"})
        );
        assert_eq!(
            error_value(500, b"[1]"),
            json!({"name": "Error", "message": "HTTP 500", "data": [1]})
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_clamped() {
        assert_eq!(parse_retry_after("30", NOW), Some(NOW + 30_000));
        assert_eq!(parse_retry_after("0", NOW), Some(NOW + 1_000));
        assert_eq!(
            parse_retry_after("9999999", NOW),
            Some(NOW + MAX_RETRY_AFTER_MS)
        );
        assert_eq!(parse_retry_after("abc", NOW), None);
        assert_eq!(parse_retry_after("", NOW), None);
        // NOW = 2026-11-27T08:13:20Z.
        assert_eq!(
            parse_retry_after("2026-11-27T08:15:00Z", NOW),
            Some(1_795_767_300_000)
        );
        assert_eq!(
            parse_retry_after("2026-11-27T08:15:00.000Z", NOW),
            Some(1_795_767_300_000)
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 08:15:00 GMT", NOW),
            Some(1_795_767_300_000)
        );
        assert_eq!(
            parse_retry_after("2020-01-01T00:00:00Z", NOW),
            Some(NOW + 1_000)
        );
        assert_eq!(
            parse_retry_after("2030-01-01T00:00:00Z", NOW),
            Some(NOW + MAX_RETRY_AFTER_MS)
        );
        assert_eq!(parse_retry_after("tomorrow morning", NOW), None);
        let r = parse_call_response(500, &h(&[SDK, ("Retry-After", "60")]), b"{}", NOW);
        assert_eq!(error_of(&r).2, Some(NOW + 60_000));
    }

    #[test]
    fn a_streamed_answer_is_read_again() {
        let r = parse(include_str!("../tests/fixtures/js/90_streaming_post.json"));
        assert!(r.streamed);
        assert_eq!(r.status, 206);
        // The outer 201 has no X-Inngest-Req-Version; the streamed headers do.
        assert_eq!(r.req_version, Some(2));
        let CallOutcome::Ops(ops) = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(ops[0].op, Opcode::StepRun);
        assert_eq!(ops[0].data, Some(json!({"greeting": "hello world"})));
        // Keep-alive whitespace first, a JSON (not string) body, an error.
        let done = parse_call_response(
            201,
            &h(&[SDK]),
            b"  \n \n{\"status\":200,\"body\":{\"x\":1},\"headers\":{}}",
            NOW,
        );
        assert_eq!(done.outcome, CallOutcome::Complete(json!({"x": 1})));
        let failed = parse_call_response(
            201,
            &h(&[SDK]),
            br#"{"status":500,"body":"{\"name\":\"Error\",\"message\":\"boom\"}","headers":{"x-inngest-no-retry":"true"}}"#,
            NOW,
        );
        let (e, retriable, _) = error_of(&failed);
        assert_eq!(e["message"], "boom");
        assert!(!retriable);
        let errored = parse_call_response(
            201,
            &h(&[SDK]),
            br#"{"status":200,"body":null,"error":"stream broke"}"#,
            NOW,
        );
        assert_eq!(error_of(&errored).0["message"], "stream broke");
        // A stream cut short.
        let cut = parse_call_response(201, &h(&[SDK]), b"   {\"status\":20", NOW);
        assert!(error_of(&cut).1);
        assert!(cut.streamed);
    }

    /// Every captured call exchange is classified as the SDK meant it.
    #[test]
    fn classifies_every_captured_exchange() {
        let all: &[(&str, &str)] = &[
            (
                "js/20",
                include_str!("../tests/fixtures/js/20_hello_call1_no_steps.json"),
            ),
            (
                "js/21",
                include_str!("../tests/fixtures/js/21_hello_call2_step1_memoized.json"),
            ),
            (
                "js/23",
                include_str!("../tests/fixtures/js/23_hello_steps_bare_values.json"),
            ),
            (
                "js/24",
                include_str!("../tests/fixtures/js/24_hello_disable_immediate_execution.json"),
            ),
            (
                "js/25",
                include_str!("../tests/fixtures/js/25_hello_run_planned_step_by_stepId.json"),
            ),
            (
                "js/27",
                include_str!("../tests/fixtures/js/27_hello_unknown_fnId.json"),
            ),
            (
                "js/28",
                include_str!("../tests/fixtures/js/28_hello_missing_ctx.json"),
            ),
            (
                "js/29",
                include_str!("../tests/fixtures/js/29_hello_version_0.json"),
            ),
            (
                "js/30",
                include_str!("../tests/fixtures/js/30_sleep_call1.json"),
            ),
            (
                "js/32",
                include_str!("../tests/fixtures/js/32_sleep_call3_done.json"),
            ),
            (
                "js/40",
                include_str!("../tests/fixtures/js/40_wait_call1.json"),
            ),
            (
                "js/41",
                include_str!("../tests/fixtures/js/41_wait_call2_event_arrived.json"),
            ),
            (
                "js/42",
                include_str!("../tests/fixtures/js/42_wait_call2_timeout.json"),
            ),
            (
                "js/45",
                include_str!("../tests/fixtures/js/45_cron_call1.json"),
            ),
            (
                "js/52",
                include_str!("../tests/fixtures/js/52_flaky_no_max_attempts.json"),
            ),
            (
                "js/53",
                include_str!("../tests/fixtures/js/53_flaky_attempt1_ok.json"),
            ),
            (
                "js/57",
                include_str!("../tests/fixtures/js/57_flakybody_attempt1_ok.json"),
            ),
            (
                "js/60",
                include_str!(
                    "../tests/fixtures/js/60_hello_with_fn_id_and_qi_id_checkpointing.json"
                ),
            ),
            (
                "js/61",
                include_str!("../tests/fixtures/js/61_hello_with_fn_id_without_qi_id.json"),
            ),
            (
                "js/62",
                include_str!("../tests/fixtures/js/62_hello_checkpoint_endpoint_500.json"),
            ),
            (
                "js/63",
                include_str!("../tests/fixtures/js/63_hello_use_api.json"),
            ),
            (
                "js/72",
                include_str!("../tests/fixtures/js/72_cloud_post_signed_canonical.json"),
            ),
            (
                "js/76",
                include_str!("../tests/fixtures/js/76_cloud_post_expired_signature.json"),
            ),
            (
                "js/77",
                include_str!("../tests/fixtures/js/77_cloud_post_no_signature.json"),
            ),
            (
                "py/20",
                include_str!("../tests/fixtures/py/20_hello_call1_no_steps.json"),
            ),
            (
                "py/21",
                include_str!("../tests/fixtures/py/21_hello_call2_step1_memoized.json"),
            ),
            (
                "py/24",
                include_str!("../tests/fixtures/py/24_hello_disable_immediate_execution.json"),
            ),
            (
                "py/30",
                include_str!("../tests/fixtures/py/30_sleep_call1.json"),
            ),
            (
                "py/31",
                include_str!("../tests/fixtures/py/31_sleep_call2.json"),
            ),
            (
                "py/50",
                include_str!("../tests/fixtures/py/50_flaky_attempt0.json"),
            ),
            (
                "py/51",
                include_str!("../tests/fixtures/py/51_flaky_final_attempt.json"),
            ),
            (
                "py/70",
                include_str!("../tests/fixtures/py/70_cloud_post_signed.json"),
            ),
        ];
        for (name, capture) in all {
            let a = answer(capture);
            let r = parse_call_response(a.status, &a.headers, &a.body, NOW);
            match (a.status, &r.outcome) {
                (200, CallOutcome::Complete(_)) => {}
                (206, CallOutcome::Ops(ops)) => assert!(!ops.is_empty(), "{name}"),
                (400..=599, CallOutcome::Error { .. }) => {}
                (status, outcome) => panic!("{name}: {status} read as {outcome:?}"),
            }
            if r.sdk.is_some() {
                assert_eq!(r.req_version, Some(2), "{name}");
            }
        }
    }
}
