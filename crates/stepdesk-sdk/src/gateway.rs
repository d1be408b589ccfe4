//! `step.fetch` (the JS SDK's `Gateway` op): the function asks the executor to make an HTTP
//! request for it, and the SDK gets the response as the step's result, as on Inngest:
//! `{status_code, headers, body}`, the body as text (the SDK builds a `Response` from it).
//!
//! Any response is a result, whatever its status: the function reads `res.status` as it
//! would after `fetch`. A request that gets no response (the host unreachable, a timeout, a
//! body over [`MAX_BODY`]) is a failed attempt of the step, retried like a failed
//! `step.run` and given to the function as the step's error once its attempts are used.
//! Options the request cannot be made with (a method or header that is not HTTP, a URL that
//! is not `http(s)`) fail the step at once.
//!
//! The request's headers are not stored: the SDK sends them again with each attempt. The
//! step's input, which the console shows, names the method, the URL and the headers with the
//! values of credentials (`Authorization`, cookies, API keys, tokens...) and of such query
//! parameters replaced by `[redacted]`.

use std::time::Duration;

use serde_json::{json, Map, Value};
use stepdesk_engine::Error;
use stepdesk_inngest::wire::Op;

use crate::time::now_ms;

/// Largest response body a step may return (Inngest's limit on a step's output).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Longest a request may take, from sending it to the end of its body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The request a `Gateway` op asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fetch {
    url: reqwest::Url,
    method: reqwest::Method,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// The request of a `Gateway` op (`opts: {url, method, headers, body}`), or why it cannot be
/// made.
pub(crate) fn parse(op: &Op) -> Result<Fetch, String> {
    let opts = op.opts.as_ref().and_then(Value::as_object);
    let get = |k: &str| opts.and_then(|o| o.get(k)).filter(|v| !v.is_null());
    let url = get("url")
        .and_then(Value::as_str)
        .ok_or("step.fetch: no `url`")?;
    // The URL is not repeated in the error: it may hold a credential, and cannot be parsed
    // to leave it out.
    let url =
        reqwest::Url::parse(url).map_err(|e| format!("step.fetch: the URL is not valid: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "step.fetch: only http and https URLs can be fetched, not `{}:`",
            url.scheme()
        ));
    }
    let method = match get("method") {
        None => reqwest::Method::GET,
        Some(Value::String(m)) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("step.fetch: `{m}` is not an HTTP method"))?,
        Some(other) => return Err(format!("step.fetch: `method` is not a string: {other}")),
    };
    let mut headers = Vec::new();
    match get("headers") {
        None => {}
        Some(Value::Object(h)) => {
            for (name, value) in h {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("step.fetch: `{name}` is not an HTTP header name"))?;
                reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    format!("step.fetch: the value of header `{name}` is not valid in HTTP")
                })?;
                headers.push((name.clone(), value));
            }
        }
        Some(other) => return Err(format!("step.fetch: `headers` is not an object: {other}")),
    }
    // The SDK passes `init.body` as given: a string for JSON or text bodies.
    let body = match get("body") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(Fetch {
        url,
        method,
        headers,
        body,
    })
}

/// Names whose values are credentials, in headers, query strings and request bodies:
/// `Authorization`, cookies, and names with a token, secret, password or key in them
/// (`X-Api-Key`, `access_token`, `apiKey`, `privateKey`, `X-Auth-Token`, `client_secret`,
/// `sig`, `sessionId`, `PHPSESSID`...). `author`, `keyword` or `monkey` are not.
fn is_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let anywhere = ["token", "secret", "passw", "apikey", "credential", "sessid"];
    if anywhere.iter().any(|s| lower.contains(s)) {
        return true;
    }
    // Words: split on punctuation and on camelCase humps (`privateKey` → private, key).
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    words.extend((!word.is_empty()).then_some(word));
    let secret_words = [
        "auth",
        "authorization",
        "key",
        "sig",
        "signature",
        "session",
        "cookie",
        "jwt",
        "pass",
        "pwd",
        "bearer",
    ];
    words.iter().any(|w| secret_words.contains(&w.as_str()))
}

/// A request body as stored: the values of credential-named fields of a JSON or
/// form-encoded body replaced; another body as given.
fn redacted_body(body: &str) -> String {
    fn redact_json(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    if is_secret(k) {
                        *v = Value::String(REDACTED.into());
                    } else {
                        redact_json(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(redact_json),
            _ => {}
        }
    }
    if let Ok(mut v) = serde_json::from_str::<Value>(body) {
        if v.is_object() || v.is_array() {
            redact_json(&mut v);
            return v.to_string();
        }
    }
    let looks_like_form = body.contains('=') && !body.contains(char::is_whitespace);
    if looks_like_form {
        return form_urlencoded::Serializer::new(String::new())
            .extend_pairs(redacted_pairs(form_urlencoded::parse(body.as_bytes())))
            .finish();
    }
    body.to_string()
}

const REDACTED: &str = "[redacted]";

/// Name–value pairs (a query string, a form body) with the values of credentials replaced.
fn redacted_pairs(pairs: form_urlencoded::Parse<'_>) -> Vec<(String, String)> {
    pairs
        .map(|(k, v)| {
            let v = if is_secret(&k) {
                REDACTED.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect()
}

impl Fetch {
    /// The step's input as stored and shown: credentials left out (see the module's comment).
    pub(crate) fn recorded_input(&self) -> Value {
        let mut url = self.url.clone();
        if url.query().is_some() {
            let pairs = redacted_pairs(url.query_pairs());
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        if !url.username().is_empty() {
            let _ = url.set_username(REDACTED);
        }
        if url.password().is_some() {
            let _ = url.set_password(Some(REDACTED));
        }
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if is_secret(k) { REDACTED } else { v.as_str() };
                (k.clone(), Value::String(v.to_string()))
            })
            .collect();
        let mut input = json!({ "method": self.method.as_str(), "url": url.as_str() });
        if !headers.is_empty() {
            input["headers"] = Value::Object(headers);
        }
        if let Some(body) = &self.body {
            input["body"] = Value::String(redacted_body(body));
        }
        input
    }

    /// Makes the request. The step's result, its start and end (ms since the epoch).
    pub(crate) async fn perform(&self, http: &reqwest::Client) -> (Result<Value, Error>, i64, i64) {
        let started = now_ms();
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.send(http))
            .await
            .unwrap_or_else(|_| {
                Err(Error::retriable(format!(
                    "step.fetch: {} {} took over {} s",
                    self.method,
                    self.recorded_input()["url"].as_str().unwrap_or_default(),
                    FETCH_TIMEOUT.as_secs()
                )))
            });
        (result, started, now_ms())
    }

    async fn send(&self, http: &reqwest::Client) -> Result<Value, Error> {
        let shown = || {
            format!(
                "{} {}",
                self.method,
                self.recorded_input()["url"].as_str().unwrap_or_default()
            )
        };
        let mut req = http.request(self.method.clone(), self.url.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(body) = &self.body {
            req = req.body(body.clone());
        }
        let mut res = req.send().await.map_err(|e| {
            Error::retriable(format!(
                "step.fetch: {}: {}",
                shown(),
                crate::root_cause(&e)
            ))
        })?;
        let status = res.status().as_u16();
        let mut headers = Map::new();
        for (k, v) in res.headers() {
            // As fetch reads them: each byte one character (Latin-1), which the SDK's
            // `Headers` accepts whatever the bytes (it refuses characters above U+00FF).
            let v: String = v.as_bytes().iter().map(|&b| char::from(b)).collect();
            match headers.get_mut(k.as_str()) {
                // Repeated headers, joined as the Fetch API's `Headers` does.
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&v);
                }
                _ => {
                    headers.insert(k.as_str().to_string(), Value::String(v));
                }
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| {
            Error::retriable(format!(
                "step.fetch: {}: the response was cut short: {}",
                shown(),
                crate::root_cause(&e)
            ))
        })? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Error::non_retriable(format!(
                    "step.fetch: {}: the response body is over {} MiB, the most a step may return",
                    shown(),
                    MAX_BODY / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // A null-body status (204, 205, 304) must have no body: the SDK builds a `Response`
        // from this, which refuses one (even empty) for them.
        let body = if matches!(status, 204 | 205 | 304) {
            Value::Null
        } else {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        };
        Ok(json!({
            "status_code": status,
            "headers": headers,
            "body": body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepdesk_inngest::wire::Opcode;

    fn op(opts: Value) -> Op {
        let mut op = Op::new(Opcode::Gateway, "h");
        op.opts = Some(opts);
        op
    }

    #[test]
    fn the_request_is_read_from_the_ops_options() {
        let f = parse(&op(json!({
            "url": "https://api.example.com/v2/books?page=2",
            "method": "post",
            "headers": {"content-type": "application/json", "Authorization": "Token abc"},
            "body": "{\"a\":1}"
        })))
        .unwrap();
        assert_eq!(f.method, reqwest::Method::POST);
        assert_eq!(f.url.as_str(), "https://api.example.com/v2/books?page=2");
        assert_eq!(f.headers.len(), 2);
        assert_eq!(f.body.as_deref(), Some("{\"a\":1}"));
        let get = parse(&op(json!({"url": "http://localhost:1/x", "headers": {}}))).unwrap();
        assert_eq!((get.method, get.body), (reqwest::Method::GET, None));
    }

    #[test]
    fn a_request_that_cannot_be_made_says_why() {
        for (opts, says) in [
            (json!({}), "no `url`"),
            (json!({"url": "not a url"}), "the URL is not valid"),
            (json!({"url": "file:///etc/passwd"}), "only http and https"),
            (
                json!({"url": "http://x/", "method": "GE T"}),
                "not an HTTP method",
            ),
            (
                json!({"url": "http://x/", "headers": {"bad name": "v"}}),
                "not an HTTP header name",
            ),
            (
                json!({"url": "http://x/", "headers": {"x": "a\nb"}}),
                "not valid in HTTP",
            ),
            (json!({"url": "http://x/", "headers": []}), "not an object"),
        ] {
            let e = parse(&op(opts.clone())).unwrap_err();
            assert!(e.contains(says), "{opts}: {e}");
        }
    }

    #[test]
    fn credentials_are_left_out_of_the_recorded_input() {
        let f = parse(&op(json!({
            "url": "https://user:pw@api.example.com/books?page=2&api_key=s3cret&access_token=t0k",
            "headers": {"Authorization": "Token abc", "X-Api-Key": "k", "Cookie": "c=1", "Accept": "application/json"},
            "body": "hello"
        })))
        .unwrap();
        let input = f.recorded_input();
        let text = input.to_string();
        for secret in ["abc", "s3cret", "t0k", "pw@", "user:", "c=1", "\"k\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(input["headers"]["Accept"], "application/json");
        assert_eq!(input["headers"]["Authorization"], REDACTED);
        assert!(input["url"].as_str().unwrap().contains("page=2"));
        assert_eq!(input["method"], "GET");
        assert_eq!(input["body"], "hello");
    }

    #[test]
    fn credentials_in_json_and_form_bodies_are_left_out() {
        let json_body = redacted_body(
            r#"{"user":"ann","password":"hunter2","nested":{"clientSecret":"cs","n":[{"apiKey":"k1"}]}}"#,
        );
        assert!(
            !json_body.contains("hunter2")
                && !json_body.contains("cs\"")
                && !json_body.contains("k1"),
            "{json_body}"
        );
        assert!(json_body.contains("ann"));
        let form = redacted_body(
            "grant_type=authorization_code&code=abc&client_secret=s3c&redirect_uri=https%3A%2F%2Fx",
        );
        assert!(
            !form.contains("s3c") && form.contains("grant_type=authorization_code"),
            "{form}"
        );
        assert_eq!(redacted_body("just some text"), "just some text");
    }

    #[test]
    fn secret_names_are_told_from_ordinary_ones() {
        for name in [
            "Authorization",
            "x-api-key",
            "access_token",
            "apiKey",
            "X-Auth-Token",
            "sig",
            "Cookie",
            "client_secret",
            "session-id",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "author",
            "keyword",
            "page",
            "Accept",
            "content-type",
            "updated__gt",
            "category",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
