//! The fake's HTTP surface, with a plain HTTP client.

use std::time::Duration;

use readwise_fake::{FakeConfig, FakeEndpoint, FakeReadwise, Fault};
use serde_json::Value;

const TOKEN: &str = "fake-test-token-0000";

async fn get(url: &str, auth: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn auth() -> Option<&'static str> {
    Some("Token fake-test-token-0000")
}

#[tokio::test]
async fn auth_endpoint_accepts_only_token_scheme_and_known_tokens() {
    let fake = FakeReadwise::start(FakeConfig::default()).await.unwrap();
    fake.add_user(TOKEN, 1);
    let url = format!("{}auth/", fake.base_url());
    let (s, _, body) = get(&url, auth()).await;
    assert_eq!((s, body.as_str()), (204, ""));
    let (s, h, body) = get(&url, Some("Bearer fake-test-token-0000")).await;
    assert_eq!(s, 401);
    assert_eq!(h["www-authenticate"], "Token");
    assert_eq!(
        body,
        r#"{"detail":"Authentication credentials were not provided."}"#
    );
    let (s, _, body) = get(&url, Some("Token nope")).await;
    assert_eq!((s, body.as_str()), (401, r#"{"detail":"Invalid token."}"#));
    assert_eq!(fake.stats().unauthorized, 2);
}

#[tokio::test]
async fn books_paginate_like_drf() {
    let fake = FakeReadwise::start(FakeConfig::default()).await.unwrap();
    fake.add_user(TOKEN, 250);
    let base = fake.base_url();
    let (s, _, body) = get(&format!("{base}books/"), auth()).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 250);
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        100,
        "default page size"
    );
    assert_eq!(v["next"], format!("{base}books/?page=2"));
    assert_eq!(v["previous"], Value::Null);

    let (_, _, body) = get(&format!("{base}books/?page=3&page_size=100"), auth()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 50);
    assert_eq!(v["next"], Value::Null);
    assert_eq!(v["previous"], format!("{base}books/?page=2&page_size=100"));

    let (_, _, body) = get(&format!("{base}books/?page_size=5000"), auth()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        250,
        "clamped to 1000"
    );

    let (s, _, body) = get(&format!("{base}books/?page=4"), auth()).await;
    assert_eq!((s, body.as_str()), (404, r#"{"detail":"Invalid page."}"#));
    let (s, _, body) = get(&format!("{base}books/?updated__gt=yesterday"), auth()).await;
    assert_eq!(
        (s, body.as_str()),
        (400, r#"{"updated__gt":["Enter a valid date/time."]}"#)
    );
    let (_, _, body) = get(
        &format!("{base}books/?updated__gt=2100-01-01T00:00:00Z"),
        auth(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["count"].as_u64(), v["next"].is_null()), (Some(0), true));
}

#[tokio::test]
async fn max_page_size_clamps_larger_requests() {
    let fake = FakeReadwise::start(FakeConfig {
        max_page_size: 10,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_user(TOKEN, 27);
    let base = fake.base_url();
    // A client asking for 1000 per page (what the sync does) gets pages of 10: 10, 10, 7.
    let mut url = format!("{base}books/?page_size=1000");
    let mut sizes = Vec::new();
    loop {
        let (s, _, body) = get(&url, auth()).await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["count"], 27);
        sizes.push(v["results"].as_array().unwrap().len());
        match v["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 7]);
    // Smaller requests are honoured; the default (100) is clamped too.
    let (_, _, body) = get(&format!("{base}books/?page_size=4"), auth()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    let (_, _, body) = get(&format!("{base}books/"), auth()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn throttling_matches_readwise() {
    let fake = FakeReadwise::start(FakeConfig {
        list_limit: 2,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_user(TOKEN, 1);
    let url = format!("{}books/", fake.base_url());
    for _ in 0..2 {
        assert_eq!(get(&url, auth()).await.0, 200);
    }
    let (s, h, body) = get(&url, auth()).await;
    assert_eq!(s, 429);
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&secs), "{secs}");
    assert_eq!(
        body,
        format!(r#"{{"detail":"Request was throttled. Expected available in {secs} seconds."}}"#)
    );
    // auth/ has its own budget.
    assert_eq!(
        get(&format!("{}auth/", fake.base_url()), auth()).await.0,
        204
    );
    assert_eq!(fake.stats().throttled, 1);
    assert_eq!(fake.throttled_for(TOKEN), 1);
    assert_eq!(fake.requests(TOKEN, FakeEndpoint::Books), 3);
}

#[tokio::test]
async fn faults_apply_in_order_and_by_endpoint() {
    let fake = FakeReadwise::start(FakeConfig::default()).await.unwrap();
    fake.add_user(TOKEN, 1);
    let books = format!("{}books/", fake.base_url());
    let auth_url = format!("{}auth/", fake.base_url());
    fake.inject(TOKEN, Some(FakeEndpoint::Books), Fault::Status(503), 1);
    fake.omit_retry_after_next(TOKEN, 1);
    // auth/ skips the books-only fault and takes the forced 429.
    let (s, h, body) = get(&auth_url, auth()).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_none());
    assert!(body.contains("Expected available in 1 second."), "{body}");
    assert_eq!(get(&books, auth()).await.0, 503);
    assert_eq!(get(&books, auth()).await.0, 200);

    fake.malformed_next(TOKEN, 1);
    let (s, h, body) = get(&books, auth()).await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(serde_json::from_str::<Value>(&body).is_err());

    fake.slow_next(TOKEN, 1, Duration::from_millis(200));
    let t = std::time::Instant::now();
    assert_eq!(get(&books, auth()).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_raw_retry_after_is_sent_as_given() {
    let fake = FakeReadwise::start(FakeConfig::default()).await.unwrap();
    fake.add_user(TOKEN, 1);
    let books = format!("{}books/", fake.base_url());
    for value in [
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "soon",
    ] {
        fake.inject(
            TOKEN,
            None,
            Fault::ThrottleRaw {
                retry_after: value.into(),
                body_secs: 7,
            },
            1,
        );
        let (s, h, body) = get(&books, auth()).await;
        assert_eq!(s, 429);
        assert_eq!(h["retry-after"], value);
        assert!(body.contains("Expected available in 7 seconds."), "{body}");
    }
    // Not a header value at all: left out, the body still says when.
    fake.inject(
        TOKEN,
        None,
        Fault::ThrottleRaw {
            retry_after: "a\nb".into(),
            body_secs: 7,
        },
        1,
    );
    let (s, h, _) = get(&books, auth()).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_none());
    assert_eq!(fake.throttled_for(TOKEN), 4);
}

#[tokio::test]
async fn touch_books_moves_the_oldest_to_now() {
    let fake = FakeReadwise::start(FakeConfig::default()).await.unwrap();
    fake.add_user(TOKEN, 20);
    let first = fake.touch_books(TOKEN, 3);
    let second = fake.touch_books(TOKEN, 3);
    assert_eq!(first.len(), 3);
    assert!(
        first.iter().all(|id| !second.contains(id)),
        "{first:?} {second:?}"
    );
    assert_eq!(fake.book_count(TOKEN), Some(20));
    assert!(fake.touch_books("unknown", 3).is_empty());
}
