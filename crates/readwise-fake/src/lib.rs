//! A fake Readwise API v2 server for Stepdesk's tests and benchmarks.
//!
//! It speaks real HTTP on loopback (`127.0.0.1:0`), so clients exercise their whole stack:
//!
//! - `GET /api/v2/auth/`: `204` for a known token, `401 {"detail":"Invalid token."}` otherwise
//!   (and `401 {"detail":"Authentication credentials were not provided."}` when the header
//!   is missing or is not `Authorization: Token <token>`, e.g. `Bearer`).
//! - `GET /api/v2/books/`: Django REST Framework `PageNumberPagination` (`page`, `page_size`
//!   default 100 max 1000, or [`FakeConfig::max_page_size`]; `updated__gt` / `updated__lt`
//!   filters), answering `{count, next, previous, results}` with absolute `next`/`previous` links that keep the
//!   other query parameters; books are ordered by id; `count` is the filtered total.
//! - Per-token rate limits like the real service, counted the way DRF's throttles count
//!   (a sliding window of admitted requests): 20 per window for `books/`, 240 per window for
//!   everything else; the window is 60 s unless configured otherwise. An excess request gets
//!   `429` with `Retry-After: <seconds>` and `{"detail":"Request was throttled. Expected
//!   available in N seconds."}`.
//! - Fault injection per token ([`FakeReadwise::fail_next`], [`FakeReadwise::slow_next`],
//!   [`FakeReadwise::malformed_next`], [`FakeReadwise::omit_retry_after_next`],
//!   [`FakeReadwise::throttle_next`], or [`FakeReadwise::inject`] for one endpoint only, e.g.
//!   [`Fault::ThrottleRaw`] for a `Retry-After` of any text) and a global latency.
//! - Counters: requests per token and endpoint, `429`s sent, most concurrent requests seen.
//!
//! Order of checks for each request, as in DRF: authentication (`401`), then the rate limit
//! (`429`, not counted in the window), then injected faults (which count in the window like
//! any admitted request), then the real answer.

mod books;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use books::Books;

/// The fake's endpoints, for counters and endpoint-scoped faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeEndpoint {
    /// `GET /api/v2/auth/` (240 per window).
    Auth,
    /// `GET /api/v2/books/` (20 per window).
    Books,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Requests per token per window admitted on list endpoints (`books/`). Default 20.
    pub list_limit: usize,
    /// Requests per token per window admitted on other endpoints (`auth/`). Default 240.
    pub other_limit: usize,
    /// The rate-limit window. Default 60 s (Readwise's "per minute"); tests shorten it.
    pub window: Duration,
    /// Added to every response. Default zero; the benchmark uses 20 ms.
    pub latency: Duration,
    /// `N` of the body of a forced `429` ([`FakeReadwise::omit_retry_after_next`]). Default 1.
    pub forced_retry_after_secs: u64,
    /// The largest `page_size` honoured on `books/`: a larger one is clamped to it, as
    /// Readwise clamps to 1000. Default 1000. The benchmark lowers it so that a client asking
    /// for 1000 books per page gets several pages from a small library (e.g. 10: 25–30 books
    /// make 3 pages) without storing thousands of books per user.
    pub max_page_size: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            list_limit: 20,
            other_limit: 240,
            window: Duration::from_secs(60),
            latency: Duration::ZERO,
            forced_retry_after_secs: 1,
            max_page_size: 1000,
        }
    }
}

impl FakeConfig {
    /// No rate limits at all (for tests about something else).
    pub fn unlimited() -> Self {
        Self {
            list_limit: usize::MAX,
            other_limit: usize::MAX,
            ..Self::default()
        }
    }
}

/// A fault answered instead of (or before) the real response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status: a 5xx gets an HTML-ish server error page like Django's,
    /// anything else `{"detail": "..."}`.
    Status(u16),
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Answer `200` with an HTML body (what a misbehaving proxy returns).
    Malformed,
    /// Answer `429` with `Expected available in {retry_after_secs} seconds.` in the body, and
    /// the `Retry-After` header only when `header` is true.
    Throttle { retry_after_secs: u64, header: bool },
    /// Answer `429` with this exact `Retry-After` header value, however absurd (a huge
    /// number, a date in the year 9999, text), and `Expected available in {body_secs}
    /// seconds.` in the body. A value that cannot be a header value at all is left out.
    ThrottleRaw { retry_after: String, body_secs: u64 },
}

#[derive(Debug)]
struct PendingFault {
    endpoint: Option<FakeEndpoint>,
    fault: Fault,
    remaining: usize,
}

/// Counters over the fake's lifetime (or since [`FakeReadwise::reset_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Every request received, including rejected ones.
    pub total_requests: u64,
    /// `429`s sent by the rate limiter or forced by a fault.
    pub throttled: u64,
    /// `401`s sent.
    pub unauthorized: u64,
    /// Most requests in flight at the same time.
    pub max_concurrent: u64,
}

#[derive(Debug)]
struct User {
    books: Books,
    list_history: VecDeque<Instant>,
    other_history: VecDeque<Instant>,
}

#[derive(Default)]
struct Counters {
    requests: HashMap<(String, FakeEndpoint), u64>,
    throttled_by_token: HashMap<String, u64>,
    last_query: HashMap<(String, FakeEndpoint), String>,
}

struct Shared {
    config: FakeConfig,
    base_url: String,
    users: Mutex<HashMap<String, Arc<Mutex<User>>>>,
    faults: Mutex<HashMap<String, VecDeque<PendingFault>>>,
    counters: Mutex<Counters>,
    latency_us: AtomicU64,
    next_book_id: AtomicI64,
    total: AtomicU64,
    throttled: AtomicU64,
    unauthorized: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
    }
}

/// A running fake Readwise server. Cheap to clone; the server stops (gracefully: it stops
/// accepting and finishes in-flight requests) when the last clone is dropped or on
/// [`FakeReadwise::shutdown`].
#[derive(Clone)]
pub struct FakeReadwise {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeReadwise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeReadwise")
            .field("base_url", &self.inner.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl FakeReadwise {
    /// Binds `127.0.0.1:0` and serves in a background task of the current tokio runtime.
    pub async fn start(config: FakeConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("loopback address"), config).await
    }

    /// Like [`FakeReadwise::start`] on a chosen address (the binary's `--port`).
    pub async fn start_on(addr: SocketAddr, config: FakeConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}/api/v2/");
        let shared = Arc::new(Shared {
            latency_us: AtomicU64::new(config.latency.as_micros() as u64),
            config,
            base_url,
            users: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters::default()),
            next_book_id: AtomicI64::new(1_000),
            total: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/api/v2/auth/", get(auth_handler))
            .route("/api/v2/books/", get(books_handler))
            .fallback(not_found)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "fake Readwise server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake Readwise server listening");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                shutdown: Mutex::new(Some(tx)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT/api/v2/`, with the trailing slash.
    pub fn base_url(&self) -> String {
        self.inner.shared.base_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops accepting connections (in-flight requests finish). Later requests fail to
    /// connect.
    pub fn shutdown(&self) {
        if let Some(tx) = lock(&self.inner.shutdown).take() {
            let _ = tx.send(());
        }
    }

    /// Adds (or replaces) a user whose library holds `books` generated books. Book ids are
    /// unique across users, ordered, and the `updated` times lie in 2023–2024.
    pub fn add_user(&self, token: &str, books: usize) {
        let s = &self.inner.shared;
        let first_id = s.next_book_id.fetch_add(books as i64, Ordering::Relaxed);
        self.put_user(
            token,
            Books::Generated {
                n: books,
                seed: books::seed_for(token),
                first_id,
                touched: HashMap::new(),
            },
        );
    }

    /// Adds (or replaces) a user with these book objects. Each should be a JSON object; a
    /// missing `id` is assigned, a missing or unparsable `updated` becomes now. They are
    /// served ordered by id, with every other field as given.
    pub fn set_books(&self, token: &str, books: Vec<Value>) {
        let s = &self.inner.shared;
        let books = books::explicit_books(
            books,
            || s.next_book_id.fetch_add(1, Ordering::Relaxed),
            Utc::now(),
        );
        self.put_user(token, books);
    }

    fn put_user(&self, token: &str, books: Books) {
        let mut users = lock(&self.inner.shared.users);
        match users.get(token) {
            Some(u) => lock(u).books = books,
            None => {
                users.insert(
                    token.to_string(),
                    Arc::new(Mutex::new(User {
                        books,
                        list_history: VecDeque::new(),
                        other_history: VecDeque::new(),
                    })),
                );
            }
        }
    }

    /// Marks the `n` least recently updated books of the user as updated now (what a new
    /// highlight does), for incremental syncs. Returns their ids; empty for unknown tokens.
    pub fn touch_books(&self, token: &str, n: usize) -> Vec<i64> {
        match self.user(token) {
            Some(u) => lock(&u).books.touch(n, Utc::now()),
            None => Vec::new(),
        }
    }

    /// Forgets the token: requests with it get `401` afterwards.
    pub fn remove_token(&self, token: &str) {
        lock(&self.inner.shared.users).remove(token);
    }

    /// Whether the token is known.
    pub fn has_token(&self, token: &str) -> bool {
        lock(&self.inner.shared.users).contains_key(token)
    }

    /// How many books the user has (unfiltered), `None` for unknown tokens.
    pub fn book_count(&self, token: &str) -> Option<usize> {
        self.user(token).map(|u| lock(&u).books.len())
    }

    /// The user's books as the API would serve them, ordered by id.
    pub fn books(&self, token: &str) -> Vec<Value> {
        self.user(token)
            .map(|u| lock(&u).books.to_json())
            .unwrap_or_default()
    }

    fn user(&self, token: &str) -> Option<Arc<Mutex<User>>> {
        lock(&self.inner.shared.users).get(token).cloned()
    }

    /// Changes the latency added to every response.
    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .shared
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Queues `fault` for the next `n` requests with `token` to `endpoint` (any endpoint when
    /// `None`). Faults are used in the order they were queued.
    pub fn inject(&self, token: &str, endpoint: Option<FakeEndpoint>, fault: Fault, n: usize) {
        if n == 0 {
            return;
        }
        lock(&self.inner.shared.faults)
            .entry(token.to_string())
            .or_default()
            .push_back(PendingFault {
                endpoint,
                fault,
                remaining: n,
            });
    }

    /// The next `n` requests with `token` (any endpoint) get `status` (meant for 5xx, but any
    /// status works, e.g. `403`).
    pub fn fail_next(&self, token: &str, n: usize, status: u16) {
        self.inject(token, None, Fault::Status(status), n);
    }

    /// The next `n` requests with `token` are answered normally after `delay`.
    pub fn slow_next(&self, token: &str, n: usize, delay: Duration) {
        self.inject(token, None, Fault::Slow(delay), n);
    }

    /// The next `n` requests with `token` get `200` with an HTML body.
    pub fn malformed_next(&self, token: &str, n: usize) {
        self.inject(token, None, Fault::Malformed, n);
    }

    /// The next `n` requests with `token` get `429` without a `Retry-After` header, only the
    /// body `Expected available in N seconds.` (N = `FakeConfig::forced_retry_after_secs`).
    pub fn omit_retry_after_next(&self, token: &str, n: usize) {
        let secs = self.inner.shared.config.forced_retry_after_secs;
        self.inject(
            token,
            None,
            Fault::Throttle {
                retry_after_secs: secs,
                header: false,
            },
            n,
        );
    }

    /// The next `n` requests with `token` get `429` with `Retry-After: <retry_after_secs>`.
    pub fn throttle_next(&self, token: &str, n: usize, retry_after_secs: u64) {
        self.inject(
            token,
            None,
            Fault::Throttle {
                retry_after_secs,
                header: true,
            },
            n,
        );
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.inner.shared.faults).clear();
    }

    /// Global counters.
    pub fn stats(&self) -> FakeStats {
        let s = &self.inner.shared;
        FakeStats {
            total_requests: s.total.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
            unauthorized: s.unauthorized.load(Ordering::Relaxed),
            max_concurrent: s.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Requests received with `token` (known or not) on `endpoint`.
    pub fn requests(&self, token: &str, endpoint: FakeEndpoint) -> u64 {
        lock(&self.inner.shared.counters)
            .requests
            .get(&(token.to_string(), endpoint))
            .copied()
            .unwrap_or(0)
    }

    /// `429`s sent for `token`.
    pub fn throttled_for(&self, token: &str) -> u64 {
        lock(&self.inner.shared.counters)
            .throttled_by_token
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    /// The raw query string of the last request with `token` on `endpoint` (`""` when it had
    /// none).
    pub fn last_query(&self, token: &str, endpoint: FakeEndpoint) -> Option<String> {
        lock(&self.inner.shared.counters)
            .last_query
            .get(&(token.to_string(), endpoint))
            .cloned()
    }

    /// Zeroes every counter (not the rate-limit windows).
    pub fn reset_stats(&self) {
        let s = &self.inner.shared;
        *lock(&s.counters) = Counters::default();
        for c in [
            &s.total,
            &s.throttled,
            &s.unauthorized,
            &s.in_flight,
            &s.max_in_flight,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------

struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(s: &Arc<Shared>) -> Self {
        s.total.fetch_add(1, Ordering::Relaxed);
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // `reset_stats` may have zeroed the gauge while this request was in flight.
        let _ = self
            .0
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
    }
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "detail": text }))).into_response()
}

fn unauthorized(s: &Shared, text: &str) -> Response {
    s.unauthorized.fetch_add(1, Ordering::Relaxed);
    let mut r = detail(StatusCode::UNAUTHORIZED, text);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
    r
}

fn throttled(s: &Shared, token: &str, wait_secs: u64, with_header: bool) -> Response {
    let header = with_header.then(|| HeaderValue::from(wait_secs));
    throttled_with(s, token, wait_secs, header)
}

fn throttled_with(
    s: &Shared,
    token: &str,
    wait_secs: u64,
    retry_after: Option<HeaderValue>,
) -> Response {
    s.throttled.fetch_add(1, Ordering::Relaxed);
    *lock(&s.counters)
        .throttled_by_token
        .entry(token.to_string())
        .or_default() += 1;
    // DRF's wording, including its singular form.
    let unit = if wait_secs == 1 { "second" } else { "seconds" };
    let mut r = detail(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Request was throttled. Expected available in {wait_secs} {unit}."),
    );
    if let Some(v) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn not_found_detail() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn not_found() -> Response {
    not_found_detail()
}

/// Everything before the endpoint's own answer: counting, latency, authentication, the rate
/// limit and injected faults. `Ok` carries the user to answer for.
async fn admit(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    query: Option<&str>,
    endpoint: FakeEndpoint,
) -> Result<Arc<Mutex<User>>, Response> {
    let latency = Duration::from_micros(s.latency_us.load(Ordering::Relaxed));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("token").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized(
            s,
            "Authentication credentials were not provided.",
        ));
    };
    {
        let mut c = lock(&s.counters);
        *c.requests.entry((token.to_string(), endpoint)).or_default() += 1;
        c.last_query.insert(
            (token.to_string(), endpoint),
            query.unwrap_or_default().to_string(),
        );
    }
    let Some(user) = lock(&s.users).get(token).cloned() else {
        return Err(unauthorized(s, "Invalid token."));
    };

    // The rate limit, counted like DRF's SimpleRateThrottle.
    {
        let now = Instant::now();
        let window = s.config.window;
        let mut u = lock(&user);
        let (history, limit) = match endpoint {
            FakeEndpoint::Books => (&mut u.list_history, s.config.list_limit),
            FakeEndpoint::Auth => (&mut u.other_history, s.config.other_limit),
        };
        while history
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            history.pop_front();
        }
        if history.len() >= limit {
            let oldest = *history.front().expect("a full window has entries");
            let remaining = window.saturating_sub(now.duration_since(oldest));
            let secs = remaining.as_secs_f64().ceil().max(1.0) as u64;
            drop(u);
            tracing::debug!(?endpoint, secs, "fake Readwise throttled a request");
            return Err(throttled(s, token, secs, true));
        }
        history.push_back(now);
    }

    let fault = {
        let mut faults = lock(&s.faults);
        let mut taken = None;
        if let Some(queue) = faults.get_mut(token) {
            if let Some(pos) = queue
                .iter()
                .position(|f| f.endpoint.is_none_or(|e| e == endpoint))
            {
                let f = &mut queue[pos];
                f.remaining -= 1;
                taken = Some(f.fault.clone());
                if f.remaining == 0 {
                    queue.remove(pos);
                }
            }
            if queue.is_empty() {
                faults.remove(token);
            }
        }
        taken
    };
    match fault {
        None => Ok(user),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(user)
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(if status.is_server_error() {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    format!("<h1>Server Error ({code})</h1>"),
                )
                    .into_response()
            } else {
                detail(
                    status,
                    status.canonical_reason().unwrap_or("Injected fault."),
                )
            })
        }
        Some(Fault::Malformed) => Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
             <body><h1>Bad Gateway</h1><p>The proxy received an invalid response.</p></body></html>",
        )
            .into_response()),
        Some(Fault::Throttle {
            retry_after_secs,
            header,
        }) => Err(throttled(s, token, retry_after_secs, header)),
        Some(Fault::ThrottleRaw {
            retry_after,
            body_secs,
        }) => Err(throttled_with(
            s,
            token,
            body_secs,
            HeaderValue::from_str(&retry_after).ok(),
        )),
    }
}

async fn auth_handler(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let _in_flight = InFlight::enter(&s);
    match admit(&s, &headers, query.as_deref(), FakeEndpoint::Auth).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn books_handler(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let _in_flight = InFlight::enter(&s);
    let user = match admit(&s, &headers, query.as_deref(), FakeEndpoint::Books).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let params = parse_query(query.as_deref().unwrap_or(""));
    let get = |k: &str| params.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v);

    let mut filters = [None, None];
    for (slot, name) in filters.iter_mut().zip(["updated__gt", "updated__lt"]) {
        if let Some(raw) = get(name) {
            match parse_datetime(raw) {
                Some(t) => *slot = Some(t),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({ name: ["Enter a valid date/time."] })),
                    )
                        .into_response()
                }
            }
        }
    }
    // DRF: an invalid page_size falls back to the default (100); a large one is clamped to
    // the maximum (1000 unless configured lower).
    let page_size = get("page_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
        .min(s.config.max_page_size.max(1));
    let page = match get("page") {
        None => 1,
        Some(v) if v == "last" => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return detail(StatusCode::NOT_FOUND, "Invalid page."),
        },
    };

    let mut body = Vec::with_capacity(256 + page_size * 600);
    {
        let u = lock(&user);
        let matching = u.books.filter(filters[0], filters[1]);
        let count = matching.len();
        let pages = count.div_ceil(page_size).max(1);
        let page = if page == 0 { pages } else { page };
        if page > pages {
            return detail(StatusCode::NOT_FOUND, "Invalid page.");
        }
        let next = (page < pages).then(|| page_link(&s.base_url, &params, Some(page + 1)));
        let previous =
            (page > 1).then(|| page_link(&s.base_url, &params, (page > 2).then_some(page - 1)));
        body.extend_from_slice(format!("{{\"count\":{count},\"next\":").as_bytes());
        serde_json::to_writer(&mut body, &next).expect("JSON string");
        body.extend_from_slice(b",\"previous\":");
        serde_json::to_writer(&mut body, &previous).expect("JSON string");
        body.extend_from_slice(b",\"results\":[");
        let start = (page - 1) * page_size;
        for (k, &i) in matching.iter().skip(start).take(page_size).enumerate() {
            if k > 0 {
                body.push(b',');
            }
            u.books.write_json(i, &mut body);
        }
        body.extend_from_slice(b"]}");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// DRF's `replace_query_param` / `remove_query_param`: the other parameters kept, sorted by
/// name, `page` set (or removed for the first page).
fn page_link(base_url: &str, params: &[(String, String)], page: Option<usize>) -> String {
    let mut kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "page")
        .cloned()
        .collect();
    if let Some(p) = page {
        kept.push(("page".into(), p.to_string()));
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut url = format!("{base_url}books/");
    for (i, (k, v)) in kept.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(v));
    }
    url
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// What django-filter's `DateTimeFilter` accepts, roughly: ISO-8601 with an offset or `Z`,
/// a naive date-time (taken as UTC, Readwise's time zone) or a date.
fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let q = parse_query("page=2&updated__gt=2024-05-06T07%3A08%3A09Z&x=a+b");
        assert_eq!(q[1].1, "2024-05-06T07:08:09Z");
        assert_eq!(q[2].1, "a b");
        let link = page_link("http://h/api/v2/", &q, Some(3));
        assert_eq!(
            link,
            "http://h/api/v2/books/?page=3&updated__gt=2024-05-06T07%3A08%3A09Z&x=a+b"
        );
        assert_eq!(
            page_link("http://h/api/v2/", &q, None),
            "http://h/api/v2/books/?updated__gt=2024-05-06T07%3A08%3A09Z&x=a+b"
        );
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn datetimes() {
        let t = parse_datetime("2024-05-06T07:08:09Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-06T07:08:09+00:00");
        assert_eq!(
            parse_datetime("2024-05-06T07:08:09.5")
                .unwrap()
                .timestamp_subsec_millis(),
            500
        );
        assert!(parse_datetime("2024-05-06").is_some());
        assert!(parse_datetime("yesterday").is_none());
    }
}
