//! The client against the fake Readwise server (real HTTP on loopback).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use readwise_fake::{FakeConfig, FakeEndpoint, FakeReadwise, Fault};
use serde_json::json;
use stepdesk_readwise::{
    format_updated_gt, BooksRequest, ClientConfig, Endpoint, ReadwiseClient, ReadwiseError, Token,
};

const SECRET: &str = "rw-test-token-0123456789abcdefSECRET";

fn token() -> Token {
    Token::new(SECRET)
}

async fn start(fake: FakeConfig) -> FakeReadwise {
    let f = FakeReadwise::start(fake).await.expect("fake starts");
    f.add_user(SECRET, 0);
    f
}

fn client(fake: &FakeReadwise, tweak: impl FnOnce(&mut ClientConfig)) -> ReadwiseClient {
    let mut c = ClientConfig::default()
        .with_base_url(&fake.base_url())
        .expect("base url");
    tweak(&mut c);
    ReadwiseClient::new(c).expect("client")
}

/// Messages and debug dumps of an error never show the token or a URL.
fn assert_clean(e: &ReadwiseError) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(SECRET), "token leaked: {text}");
        assert!(!text.contains("SECRET"), "token leaked: {text}");
        assert!(!text.contains("http://"), "URL in error: {text}");
    }
}

#[tokio::test]
async fn check_token_accepts_known_and_rejects_unknown_tokens() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    c.check_token(&token()).await.expect("known token is valid");
    assert_eq!(fake.requests(SECRET, FakeEndpoint::Auth), 1);

    let other = Token::new("not-a-known-token-000000");
    let e = c.check_token(&other).await.unwrap_err();
    assert!(
        matches!(
            e,
            ReadwiseError::Rejected {
                status: 401,
                endpoint: Endpoint::Auth,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    assert_eq!(e.retry_after(), None);
    assert_eq!(
        e.to_string(),
        "Readwise rejected the token (401 on auth/: Invalid token.)"
    );
    assert!(!e.to_string().contains("not-a-known-token"));

    fake.remove_token(SECRET);
    let e = c.check_token(&token()).await.unwrap_err();
    assert!(e.is_rejected());
    assert_clean(&e);
}

#[tokio::test]
async fn an_empty_token_is_refused_without_a_request() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    let e = c.check_token(&Token::new(" \n")).await.unwrap_err();
    assert!(matches!(e, ReadwiseError::InvalidRequest(_)), "{e:?}");
    let e = c
        .check_token(&Token::new("bad\u{7f}token-with-control"))
        .await
        .unwrap_err();
    assert!(matches!(e, ReadwiseError::InvalidRequest(_)), "{e:?}");
    assert!(!e.to_string().contains("bad"));
    assert_eq!(fake.stats().total_requests, 0);
}

#[tokio::test]
async fn pagination_follows_next_to_the_last_page() {
    let fake = start(FakeConfig::default()).await;
    fake.add_user(SECRET, 2500);
    let c = client(&fake, |_| {});

    let mut request = Some(BooksRequest::first());
    let mut ids = Vec::new();
    let mut pages = 0;
    while let Some(r) = request {
        let page = c.books_page(&token(), r).await.expect("page");
        pages += 1;
        assert_eq!(page.count, 2500);
        if let Some(next) = &page.next {
            assert!(next.starts_with(&fake.base_url()), "{next}");
            assert!(
                next.contains("page_size=1000"),
                "next keeps page_size: {next}"
            );
            assert!(next.contains(&format!("page={}", pages + 1)), "{next}");
        }
        ids.extend(page.results.iter().map(|b| b.id));
        request = page.next_request();
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 2500);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "stable id order, no duplicates"
    );
    assert_eq!(fake.requests(SECRET, FakeEndpoint::Books), 3);
    assert_eq!(fake.stats().throttled, 0);
}

#[tokio::test]
async fn count_only_reads_the_total_in_one_request() {
    let fake = start(FakeConfig::default()).await;
    fake.add_user(SECRET, 1234);
    let c = client(&fake, |_| {});
    let page = c
        .books_page(&token(), BooksRequest::count_only())
        .await
        .unwrap();
    assert_eq!(page.count, 1234);
    assert_eq!(page.results.len(), 1);
    assert_eq!(
        fake.last_query(SECRET, FakeEndpoint::Books).as_deref(),
        Some("page_size=1")
    );
}

#[tokio::test]
async fn an_empty_library_is_one_empty_page() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    let page = c.books_page(&token(), BooksRequest::first()).await.unwrap();
    assert_eq!(page.count, 0);
    assert_eq!(page.next, None);
    assert!(page.results.is_empty());
}

#[tokio::test]
async fn incremental_sync_sends_updated_gt_and_keeps_it_in_next_links() {
    let fake = start(FakeConfig::default()).await;
    fake.add_user(SECRET, 300);
    let c = client(&fake, |_| {});
    let since = Utc::now() - chrono::Duration::seconds(5);
    let touched = fake.touch_books(SECRET, 7);
    assert_eq!(touched.len(), 7);

    let page = c
        .books_page(
            &token(),
            BooksRequest::First {
                page_size: 3,
                updated_after: Some(since),
            },
        )
        .await
        .unwrap();
    let query = fake.last_query(SECRET, FakeEndpoint::Books).unwrap();
    assert_eq!(
        query.replace("%3A", ":"),
        format!("page_size=3&updated__gt={}", format_updated_gt(since))
    );
    assert!(query.contains("Z"), "UTC with Z: {query}");
    assert_eq!(page.count, 7);
    let mut ids: Vec<i64> = page.results.iter().map(|b| b.id).collect();
    let mut next = page.next;
    while let Some(url) = next {
        assert!(url.contains("updated__gt="), "filter kept: {url}");
        let p = c
            .books_page(&token(), BooksRequest::next(url))
            .await
            .unwrap();
        assert_eq!(p.count, 7);
        ids.extend(p.results.iter().map(|b| b.id));
        next = p.next;
    }
    assert_eq!(ids, touched);
    assert_eq!(fake.requests(SECRET, FakeEndpoint::Books), 3);
}

#[tokio::test]
async fn books_with_nulls_and_unknown_fields_parse() {
    let fake = start(FakeConfig::default()).await;
    fake.set_books(
        SECRET,
        vec![
            json!({"id": 2, "title": "Quotes", "author": null, "category": "books", "source": "native",
                   "num_highlights": 3, "last_highlight_at": null, "updated": "2024-02-01T10:00:00.000001Z",
                   "cover_image_url": null, "highlights_url": "https://readwise.io/bookreview/2",
                   "source_url": null, "asin": null, "tags": [{"id": 9, "name": "fav"}],
                   "document_note": null, "a_field_from_the_future": [1, 2, 3]}),
            json!({"id": 1, "title": null, "tags": null, "num_highlights": null}),
        ],
    );
    let c = client(&fake, |_| {});
    let page = c.books_page(&token(), BooksRequest::first()).await.unwrap();
    assert_eq!(page.count, 2);
    assert_eq!(page.results[0].id, 1);
    assert_eq!(page.results[0].title, "");
    assert!(page.results[0].tags.is_empty());
    let q = &page.results[1];
    assert_eq!(q.author, None);
    assert_eq!(q.tags[0].name, "fav");
    assert_eq!(q.updated, "2024-02-01T10:00:00.000001Z");
    assert!(q.updated_at().is_some());
}

#[tokio::test]
async fn generated_books_have_the_documented_fields() {
    let fake = start(FakeConfig::default()).await;
    fake.add_user(SECRET, 50);
    let c = client(&fake, |_| {});
    let page = c.books_page(&token(), BooksRequest::first()).await.unwrap();
    assert_eq!(page.results.len(), 50);
    for b in &page.results {
        assert!(!b.title.is_empty() && !b.category.is_empty() && !b.source.is_empty());
        assert!(b.updated_at().is_some(), "{}", b.updated);
        assert_eq!(
            b.highlights_url.as_deref(),
            Some(&*format!("https://readwise.io/bookreview/{}", b.id))
        );
    }
    let raw = fake.books(SECRET);
    let keys: HashSet<&str> = raw[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 14, "{keys:?}");
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_without_a_request() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    for bad in [
        "https://evil.example/api/v2/books/?page=2",
        "http://127.0.0.1:1/api/v2/books/?page=2",
        "/api/v2/books/?page=2",
    ] {
        let e = c
            .books_page(&token(), BooksRequest::next(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ReadwiseError::InvalidRequest(_)),
            "{bad}: {e:?}"
        );
        assert!(!e.is_retriable());
        assert!(!e.to_string().contains("?page=2"), "{e}");
    }
    // The same origin is fine, even with other parameters.
    let next = format!("{}books/?page=1&page_size=5", fake.base_url());
    c.books_page(&token(), BooksRequest::next(next))
        .await
        .unwrap();
    assert_eq!(fake.stats().total_requests, 1);
}

#[tokio::test]
async fn page_size_out_of_range_is_refused() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    for page_size in [0, 1001] {
        let e = c
            .books_page(
                &token(),
                BooksRequest::First {
                    page_size,
                    updated_after: None,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ReadwiseError::InvalidRequest(_)), "{e:?}");
    }
    assert_eq!(fake.stats().total_requests, 0);
}

#[tokio::test]
async fn a_429_reports_the_retry_after_header() {
    let fake = start(FakeConfig::default()).await;
    fake.throttle_next(SECRET, 1, 7);
    let c = client(&fake, |_| {});
    let e = c
        .books_page(&token(), BooksRequest::first())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReadwiseError::RateLimited {
                endpoint: Endpoint::Books,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        e.to_string(),
        "Readwise rate limit reached on books/; retry in 7s"
    );
    assert_clean(&e);
}

#[tokio::test]
async fn a_429_without_the_header_uses_the_body() {
    let fake = start(FakeConfig {
        forced_retry_after_secs: 9,
        ..FakeConfig::default()
    })
    .await;
    fake.omit_retry_after_next(SECRET, 1);
    let c = client(&fake, |_| {});
    let e = c.check_token(&token()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
    assert!(matches!(
        e,
        ReadwiseError::RateLimited {
            endpoint: Endpoint::Auth,
            ..
        }
    ));
}

#[tokio::test]
async fn the_real_limit_of_the_fake_yields_its_retry_after() {
    // The client's own limiter is off, so the fake's 2-per-minute limit answers 429.
    let fake = start(FakeConfig {
        list_limit: 2,
        ..FakeConfig::default()
    })
    .await;
    let c = client(&fake, |c| c.list_requests_per_minute = 0);
    for _ in 0..2 {
        c.books_page(&token(), BooksRequest::count_only())
            .await
            .unwrap();
    }
    let e = c
        .books_page(&token(), BooksRequest::count_only())
        .await
        .unwrap_err();
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(fake.throttled_for(SECRET), 1);
}

#[tokio::test]
async fn after_a_429_the_token_waits_out_retry_after() {
    let fake = start(FakeConfig::default()).await;
    fake.throttle_next(SECRET, 1, 1);
    let c = client(&fake, |_| {});
    assert!(c.check_token(&token()).await.is_err());
    let started = Instant::now();
    c.check_token(&token()).await.expect("second try succeeds");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests(SECRET, FakeEndpoint::Auth), 2);
    // Other tokens are not held back.
    let other = "another-token-000000000";
    fake.throttle_next(SECRET, 1, 30);
    fake.add_user(other, 0);
    assert!(c.check_token(&token()).await.is_err());
    let started = Instant::now();
    c.check_token(&Token::new(other)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// Security 3: `Retry-After: 18446744073709551615` used to overflow `Instant + Duration` in the
/// limiter and panic. Absurd values now end up between 1 s and 24 h, over real HTTP.
#[tokio::test]
async fn absurd_retry_after_headers_are_clamped_without_panicking() {
    let fake = start(FakeConfig::default()).await;
    let day = Duration::from_secs(24 * 3600);
    for (value, want) in [
        ("18446744073709551615", day),
        ("184467440737095516150000", day),
        ("1e308", day),
        ("Fri, 31 Dec 9999 23:59:59 GMT", day),
        ("Friday, 31-Dec-99 23:59:59 GMT", Duration::from_secs(1)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", Duration::from_secs(1)),
        // Not a delay nor a date: the body's "Expected available in 5 seconds" is used.
        ("Sun, 06 Nov 99999 08:49:37 GMT", Duration::from_secs(5)),
        ("-1", Duration::from_secs(5)),
    ] {
        // A fresh client each time: the limiter starts empty.
        let c = client(&fake, |_| {});
        fake.inject(
            SECRET,
            Some(FakeEndpoint::Books),
            Fault::ThrottleRaw {
                retry_after: value.into(),
                body_secs: 5,
            },
            1,
        );
        let e = c
            .books_page(&token(), BooksRequest::count_only())
            .await
            .unwrap_err();
        assert!(
            matches!(e, ReadwiseError::RateLimited { .. }),
            "{value}: {e:?}"
        );
        assert_eq!(e.retry_after(), Some(want), "Retry-After: {value}");
        assert_eq!(
            e.to_string(),
            format!(
                "Readwise rate limit reached on books/; retry in {}s",
                want.as_secs()
            )
        );
        if want > Duration::from_secs(5) {
            // The token's list bucket is closed (no panic on the way), other endpoints not.
            let next = tokio::time::timeout(
                Duration::from_millis(300),
                c.books_page(&token(), BooksRequest::count_only()),
            )
            .await;
            assert!(next.is_err(), "{value}: the next request waits");
            c.check_token(&token()).await.expect("auth/ is not blocked");
        }
    }
    assert_eq!(fake.throttled_for(SECRET), 8);
}

#[tokio::test]
async fn server_errors_are_retriable() {
    let fake = start(FakeConfig::default()).await;
    fake.fail_next(SECRET, 2, 502);
    let c = client(&fake, |_| {});
    for _ in 0..2 {
        let e = c
            .books_page(&token(), BooksRequest::first())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ReadwiseError::Server {
                    status: 502,
                    endpoint: Endpoint::Books,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_retriable());
        assert_eq!(e.to_string(), "Readwise server error 502 on books/");
    }
    c.books_page(&token(), BooksRequest::first())
        .await
        .expect("recovers");
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retriable() {
    let fake = start(FakeConfig::default()).await;
    fake.slow_next(SECRET, 1, Duration::from_secs(3));
    let c = client(&fake, |c| c.request_timeout = Duration::from_millis(300));
    let started = Instant::now();
    let e = c
        .books_page(&token(), BooksRequest::first())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReadwiseError::Timeout {
                endpoint: Endpoint::Books,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        e.to_string()
            .starts_with("Readwise request to books/ timed out after"),
        "{e}"
    );
    assert_clean(&e);
}

#[tokio::test]
async fn connection_errors_are_retriable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = ClientConfig::default()
        .with_base_url(&format!("http://127.0.0.1:{port}/api/v2/"))
        .unwrap();
    let c = ReadwiseClient::new(config).unwrap();
    let e = c.check_token(&token()).await.unwrap_err();
    assert!(
        matches!(
            e,
            ReadwiseError::Connection {
                endpoint: Endpoint::Auth,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert!(
        e.to_string()
            .starts_with("could not reach Readwise for auth/: "),
        "{e}"
    );
    assert_clean(&e);
}

#[tokio::test]
async fn a_malformed_body_names_the_endpoint() {
    let fake = start(FakeConfig::default()).await;
    fake.malformed_next(SECRET, 1);
    let c = client(&fake, |_| {});
    let e = c
        .books_page(&token(), BooksRequest::first())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ReadwiseError::Malformed {
                endpoint: Endpoint::Books,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("Readwise returned a malformed response from books/: "),
        "{msg}"
    );
    assert!(msg.contains("text/html"), "{msg}");
    assert!(
        e.is_retriable(),
        "documented choice: malformed is retriable"
    );
    assert_clean(&e);
}

#[tokio::test]
async fn forbidden_and_other_client_errors_are_not_retriable() {
    let fake = start(FakeConfig::default()).await;
    let c = client(&fake, |_| {});
    fake.fail_next(SECRET, 1, 403);
    let e = c
        .books_page(&token(), BooksRequest::first())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ReadwiseError::Rejected { status: 403, .. }),
        "{e:?}"
    );
    assert!(!e.is_retriable());

    let past_the_end = format!("{}books/?page=99", fake.base_url());
    let e = c
        .books_page(&token(), BooksRequest::next(past_the_end))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ReadwiseError::Http { status: 404, .. }),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    assert_eq!(
        e.to_string(),
        "Readwise answered 404 on books/: Invalid page."
    );
    assert_clean(&e);
}

#[tokio::test]
async fn the_limiter_delays_the_fourth_request_instead_of_provoking_a_429() {
    let window = Duration::from_secs(1);
    let fake = start(FakeConfig {
        list_limit: 3,
        window,
        ..FakeConfig::default()
    })
    .await;
    let c = client(&fake, |c| {
        c.list_requests_per_minute = 3;
        c.rate_window = window;
    });
    let started = Instant::now();
    for _ in 0..3 {
        c.books_page(&token(), BooksRequest::count_only())
            .await
            .unwrap();
    }
    let third_done = started.elapsed();
    assert!(third_done < Duration::from_millis(500), "{third_done:?}");
    c.books_page(&token(), BooksRequest::count_only())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= window,
        "the fourth waited: {:?}",
        started.elapsed()
    );
    assert_eq!(fake.stats().throttled, 0);
}

#[tokio::test]
async fn concurrent_requests_of_one_token_stay_under_the_limit() {
    let window = Duration::from_secs(1);
    let fake = start(FakeConfig {
        list_limit: 3,
        window,
        latency: Duration::from_millis(20),
        ..FakeConfig::default()
    })
    .await;
    fake.add_user(SECRET, 10);
    let c = client(&fake, |c| {
        c.list_requests_per_minute = 3;
        c.rate_window = window;
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..9)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.books_page(&token(), BooksRequest::count_only()).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("no 429").count, 10);
    }
    assert!(started.elapsed() >= 2 * window, "{:?}", started.elapsed());
    assert_eq!(fake.stats().throttled, 0);
    assert_eq!(fake.requests(SECRET, FakeEndpoint::Books), 9);
}

#[tokio::test]
async fn tokens_have_independent_budgets() {
    let window = Duration::from_secs(2);
    let fake = start(FakeConfig {
        list_limit: 3,
        window,
        ..FakeConfig::default()
    })
    .await;
    let tokens: Vec<String> = (0..4)
        .map(|i| format!("independent-token-{i:08}"))
        .collect();
    for t in &tokens {
        fake.add_user(t, 1);
    }
    let c = client(&fake, |c| {
        c.list_requests_per_minute = 3;
        c.rate_window = window;
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in &tokens {
        for _ in 0..3 {
            let (c, t) = (c.clone(), Token::new(t.clone()));
            tasks.push(tokio::spawn(async move {
                c.books_page(&t, BooksRequest::first()).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(started.elapsed() < window, "{:?}", started.elapsed());
    assert_eq!(fake.stats().throttled, 0);
}

#[tokio::test]
async fn the_global_cap_bounds_requests_in_flight() {
    let fake = start(FakeConfig {
        latency: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await;
    let tokens: Vec<String> = (0..16).map(|i| format!("capped-token-{i:08}")).collect();
    for t in &tokens {
        fake.add_user(t, 0);
    }
    let c = client(&fake, |c| c.max_concurrent_requests = 4);
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (c, t) = (c.clone(), Token::new(t.clone()));
            tokio::spawn(async move { c.check_token(&t).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let max = fake.stats().max_concurrent;
    assert!((2..=4).contains(&max), "max in flight {max}");
    assert!(
        started.elapsed() >= Duration::from_millis(4 * 50),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn auth_has_its_own_larger_budget() {
    let window = Duration::from_secs(5);
    let fake = start(FakeConfig {
        list_limit: 1,
        other_limit: 10,
        window,
        ..FakeConfig::default()
    })
    .await;
    let c = client(&fake, |c| {
        c.list_requests_per_minute = 1;
        c.other_requests_per_minute = 10;
        c.rate_window = window;
    });
    let started = Instant::now();
    c.books_page(&token(), BooksRequest::count_only())
        .await
        .unwrap();
    for _ in 0..10 {
        c.check_token(&token()).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.stats().throttled, 0);
}

#[test]
fn token_debug_and_display_are_redacted() {
    let t = token();
    assert_eq!(format!("{t:?}"), "Token(****CRET)");
    assert_eq!(t.to_string(), "Token(****CRET)");
    let c = ReadwiseClient::new(ClientConfig::default()).unwrap();
    assert!(!format!("{c:?}").contains(SECRET));
}
