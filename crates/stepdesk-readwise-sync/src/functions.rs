//! `readwise-fetch-books` and `readwise-daily-sync`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepdesk_engine::event::internal::FUNCTION_CANCELLED;
use stepdesk_engine::time::now_ms;
use stepdesk_engine::{Ctx, Error, ErrorBody, Function};
use stepdesk_readwise::{BooksRequest, ReadwiseError, Token};

use crate::events::{
    FetchBooks, DAILY_SYNC, DAILY_SYNC_FN, FETCH_BOOKS, FETCH_BOOKS_CANCELLED_FN, FETCH_BOOKS_FN,
};
use crate::users::{self, TokenStatus};
use crate::ReadwiseSync;

/// Users per `send_event` step of the daily sync.
const DAILY_BATCH: usize = 500;
/// A guard against a `next` link that never ends.
const MAX_PAGES: usize = 10_000;

pub(crate) fn all(sync: ReadwiseSync) -> Vec<Function> {
    let fetch = {
        let (run, fail) = (sync.clone(), sync.clone());
        Function::builder(FETCH_BOOKS_FN)
            .name("Readwise: fetch books")
            .on_event(FETCH_BOOKS)
            .singleton("data.userId")
            .on_failure(move |ctx| record_failure(fail.clone(), ctx))
            .handler(move |ctx| fetch_books(run.clone(), ctx))
            .expect("readwise-fetch-books is a valid function")
    };
    let cancelled = {
        let s = sync.clone();
        // Only cancellations of readwise-fetch-books, matched the way the engine matches a
        // failure handler to its function.
        Function::builder(FETCH_BOOKS_CANCELLED_FN)
            .name("Readwise: record a cancelled sync")
            .on_event_if(
                FUNCTION_CANCELLED,
                &format!("event.data.function_id == '{FETCH_BOOKS_FN}'"),
            )
            .handler(move |ctx| record_cancellation(s.clone(), ctx))
            .expect("readwise-fetch-books-cancelled is a valid function")
    };
    let daily = Function::builder(DAILY_SYNC_FN)
        .name("Readwise: daily sync")
        .on_cron("0 3 * * *")
        .on_event(DAILY_SYNC)
        .handler(move |ctx| daily_sync(sync.clone(), ctx))
        .expect("readwise-daily-sync is a valid function");
    vec![fetch, cancelled, daily]
}

fn store_error(e: impl std::fmt::Display) -> Error {
    Error::retriable(format!("database: {e}"))
}

/// Maps a Readwise failure to the engine's retry semantics.
fn readwise_error(e: ReadwiseError, user: &str) -> Error {
    if e.is_rejected() {
        return Error::NonRetriable(ErrorBody::new(
            "ReadwiseTokenRejected",
            format!("Readwise rejected the token for user {user}"),
        ));
    }
    let body = ErrorBody::new("ReadwiseError", e.to_string());
    match e.retry_after() {
        // The client clamps the wait to a day; the arithmetic saturates all the same.
        Some(after) => Error::RetryAfter(
            body,
            now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
        ),
        None if e.is_retriable() => Error::Retriable(body),
        None => Error::NonRetriable(body),
    }
}

async fn load_token(sync: &ReadwiseSync, user: &str) -> Result<Token, Error> {
    match sync.token(user).await {
        Ok(Some(token)) => Ok(token),
        Ok(None) => {
            let u = user.to_string();
            sync.store()
                .write(move |c| users::set_token_status(c, &u, TokenStatus::Missing, None))
                .await
                .map_err(store_error)?;
            Err(Error::NonRetriable(ErrorBody::new(
                "ReadwiseTokenMissing",
                format!("no Readwise token for user {user}; add one with `stepdesk users add {user} --token-stdin`"),
            )))
        }
        Err(e) => Err(Error::NonRetriable(ErrorBody::new(
            "KeychainUnavailable",
            e,
        ))),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// Incremental: ask only for books updated after this (the stored watermark).
    since: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Page {
    /// Books on the page (all stored).
    books: usize,
    /// Readwise's total for the request.
    count: u64,
    next: Option<String>,
    /// Newest `updated` on the page.
    newest: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    pages: usize,
    books: usize,
    count: u64,
    newest: Option<String>,
}

fn newer(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Lists books page by page, one durable step per page that fetches and stores it.
async fn list_books(
    sync: &ReadwiseSync,
    ctx: &Ctx,
    user: &str,
    step_prefix: &str,
    first: BooksRequest,
) -> Result<Listing, Error> {
    let mut listing = Listing {
        pages: 0,
        books: 0,
        count: 0,
        newest: None,
    };
    let mut request = Some(first);
    while let Some(req) = request.take() {
        if listing.pages >= MAX_PAGES {
            return Err(Error::non_retriable(format!(
                "more than {MAX_PAGES} pages of books for user {user}"
            )));
        }
        let step_id = format!("{step_prefix}-{}", listing.pages + 1);
        let page: Page = ctx
            .step
            .run(&step_id, || async {
                let token = load_token(sync, user).await?;
                let page = match sync.client().books_page(&token, req).await {
                    Ok(page) => page,
                    Err(e) => {
                        if e.is_rejected() {
                            record_rejected(sync, user).await?;
                        }
                        return Err(readwise_error(e, user));
                    }
                };
                let newest = page
                    .results
                    .iter()
                    .map(|b| b.updated.clone())
                    .filter(|u| !u.is_empty())
                    .max();
                let (u, run_id, books) = (user.to_string(), ctx.run_id.clone(), page.results);
                let stored = books.len();
                sync.store()
                    .write(move |c| {
                        users::ensure_running(c, &run_id)?;
                        users::upsert_books(c, &u, &books, &run_id)
                    })
                    .await
                    .map_err(store_error)?;
                Ok(Page {
                    books: stored,
                    count: page.count,
                    next: page.next,
                    newest,
                })
            })
            .await?;
        listing.pages += 1;
        listing.books += page.books;
        listing.count = page.count;
        listing.newest = newer(listing.newest, page.newest);
        request = page.next.map(BooksRequest::next);
    }
    Ok(listing)
}

/// Syncs one user's books: full the first time, incremental afterwards, and always ending
/// with as many stored books as Readwise reports.
async fn fetch_books(sync: ReadwiseSync, ctx: Ctx) -> Result<Value, Error> {
    let request: FetchBooks = ctx.data()?;
    let user = request.user_id.as_str();
    let run_id = ctx.run_id.clone();

    let plan: Plan = ctx
        .step
        .run("load-user", || async {
            let (u, r, batch) = (
                user.to_string(),
                run_id.clone(),
                request.daily_sync_run_id.clone(),
            );
            let found = sync
                .store()
                .write(move |c| {
                    if let Some(daily) = batch.as_deref() {
                        users::attach_daily_run(c, daily, &u, &r)?;
                    }
                    // Cancelled meanwhile: the cancellation (recorded by
                    // readwise-fetch-books-cancelled) must not be followed by "running".
                    users::ensure_running(c, &r)?;
                    let found = users::get(c, &u)?;
                    if found.is_some() {
                        users::mark_sync_started(c, &u, &r, batch.as_deref(), now_ms())?;
                    }
                    Ok(found)
                })
                .await
                .map_err(store_error)?;
            let Some(found) = found else {
                return Err(Error::non_retriable(format!("no user `{user}`")));
            };
            let incremental = found.last_full_sync_at.is_some() && found.watermark.is_some();
            Ok(Plan {
                since: if incremental { found.watermark } else { None },
            })
        })
        .await?;

    ctx.step
        .run("check-token", || async {
            let token = load_token(&sync, user).await?;
            let checked = sync.client().check_token(&token).await;
            // Only Readwise's verdict changes the status; an unreachable Readwise judged nothing.
            let status = match &checked {
                Err(e) if e.is_rejected() => Some(TokenStatus::Rejected),
                Ok(()) => Some(TokenStatus::Connected),
                Err(_) => None,
            };
            if let Some(status) = status {
                let u = user.to_string();
                sync.store()
                    .write(move |c| users::set_token_status(c, &u, status, Some(now_ms())))
                    .await
                    .map_err(store_error)?;
            }
            checked.map_err(|e| readwise_error(e, user))
        })
        .await?;

    let since = plan
        .since
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let mut full = since.is_none();
    let first = match since {
        Some(t) => BooksRequest::updated_after(t),
        None => BooksRequest::first(),
    };
    let mut listing = list_books(
        &sync,
        &ctx,
        user,
        if full {
            "fetch-page"
        } else {
            "fetch-updated-page"
        },
        first,
    )
    .await?;
    let mut newest = listing.newest.take();
    let mut total = listing.count;

    if !full {
        // An incremental listing cannot see deletions: compare with Readwise's total and
        // fall back to a full listing when they differ.
        #[derive(Serialize, Deserialize)]
        struct Counts {
            readwise: u64,
            stored: i64,
        }
        let counts: Counts = ctx
            .step
            .run("count-books", || async {
                let token = load_token(&sync, user).await?;
                let page = sync
                    .client()
                    .books_page(&token, BooksRequest::count_only())
                    .await
                    .map_err(|e| readwise_error(e, user))?;
                let u = user.to_string();
                let stored = sync
                    .store()
                    .read(move |c| users::count_books(c, &u))
                    .await
                    .map_err(store_error)?;
                Ok(Counts {
                    readwise: page.count,
                    stored,
                })
            })
            .await?;
        total = counts.readwise;
        if counts.stored != counts.readwise as i64 {
            tracing::info!(
                user,
                stored = counts.stored,
                readwise = counts.readwise,
                "counts differ; listing everything"
            );
            full = true;
            let listing =
                list_books(&sync, &ctx, user, "fetch-page", BooksRequest::first()).await?;
            total = listing.count;
            newest = newer(newest, listing.newest);
        }
    }

    let summary: Value = ctx
        .step
        .run("record-sync-result", || async {
            let (u, r, newest) = (user.to_string(), run_id.clone(), newest.clone());
            let (stored, pruned) = sync
                .store()
                .write(move |c| {
                    users::ensure_running(c, &r)?;
                    let pruned = if full {
                        users::prune_unseen(c, &u, &r)?
                    } else {
                        0
                    };
                    let stored = users::count_books(c, &u)?;
                    users::record_sync_ok(
                        c,
                        &u,
                        &r,
                        stored,
                        total as i64,
                        newest.as_deref(),
                        full,
                        now_ms(),
                    )?;
                    Ok((stored, pruned))
                })
                .await
                .map_err(store_error)?;
            Ok(json!({
                "userId": user,
                "bookCount": stored,
                "readwiseTotal": total,
                "mode": if full { "full" } else { "incremental" },
                "removed": pruned,
            }))
        })
        .await?;
    Ok(summary)
}

/// Readwise rejected the token mid-listing (revoked since the check).
async fn record_rejected(sync: &ReadwiseSync, user: &str) -> Result<(), Error> {
    let u = user.to_string();
    sync.store()
        .write(move |c| users::set_token_status(c, &u, TokenStatus::Rejected, Some(now_ms())))
        .await
        .map_err(store_error)
}

/// The failure handler of `readwise-fetch-books`: the user's sync record says what failed,
/// unless a newer sync has written it since (the record never goes back in time).
async fn record_failure(sync: ReadwiseSync, ctx: Ctx) -> Result<Value, Error> {
    let data = &ctx.event.data;
    let run_id = data
        .get("run_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let message = data
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the sync failed")
        .to_string();
    let (r, m) = (run_id.clone(), message.clone());
    let recorded: Option<(String, bool)> = ctx
        .step
        .run("record-failure", || async {
            sync.store()
                .write(move |c| {
                    // The user and time come from the failed run itself, so a hand-made event
                    // records nothing.
                    let Some((user, at)) = users::ended_run_user(c, &r, FETCH_BOOKS_FN, "Failed")?
                    else {
                        return Ok(None);
                    };
                    let written = users::record_sync_failed(c, &user, &r, &m, at)?;
                    Ok(Some((user, written)))
                })
                .await
                .map_err(store_error)
        })
        .await?;
    Ok(match recorded {
        Some((user, written)) => {
            json!({"userId": user, "failedRun": run_id, "error": message, "recorded": written})
        }
        None => json!({"failedRun": run_id, "recorded": false}),
    })
}

/// `readwise-fetch-books-cancelled`, on `inngest/function.cancelled` of
/// `readwise-fetch-books`: the user's sync record says `cancelled` (not `running` for ever),
/// unless a newer sync has written it since.
async fn record_cancellation(sync: ReadwiseSync, ctx: Ctx) -> Result<Value, Error> {
    let run_id = ctx
        .event
        .data
        .get("run_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let r = run_id.clone();
    let recorded: Option<(String, bool)> = ctx
        .step
        .run("record-cancellation", || async {
            sync.store()
                .write(move |c| {
                    let Some((user, at)) =
                        users::ended_run_user(c, &r, FETCH_BOOKS_FN, "Cancelled")?
                    else {
                        return Ok(None);
                    };
                    let written = users::record_sync_cancelled(c, &user, &r, at)?;
                    Ok(Some((user, written)))
                })
                .await
                .map_err(store_error)
        })
        .await?;
    Ok(match recorded {
        Some((user, written)) => {
            json!({"userId": user, "cancelledRun": run_id, "recorded": written})
        }
        None => json!({"cancelledRun": run_id, "recorded": false}),
    })
}

/// Sends one `readwise/fetch-books` per user whose token is connected or not yet checked, in
/// batches, each exactly once.
async fn daily_sync(sync: ReadwiseSync, ctx: Ctx) -> Result<Value, Error> {
    let run_id = ctx.run_id.clone();
    // A replay names its users (those of an earlier daily sync); the gate checked the shape.
    let request = crate::events::parse_daily_sync(&ctx.event.data).unwrap_or_default();
    let user_ids: Vec<String> = ctx
        .step
        .run("list-users", || async {
            let r = run_id.clone();
            let request = request.clone();
            sync.store()
                .write(move |c| {
                    let mut ids = users::syncable_ids(c)?;
                    if let Some(only) = &request.users {
                        let only: std::collections::HashSet<&String> = only.iter().collect();
                        ids.retain(|id| only.contains(id));
                    }
                    users::start_daily_sync(c, &r, &ids, now_ms(), request.replay_of.as_deref())?;
                    Ok(ids)
                })
                .await
                .map_err(store_error)
        })
        .await?;
    let mut batches = 0;
    for (i, chunk) in user_ids.chunks(DAILY_BATCH).enumerate() {
        let events: Vec<Value> = chunk
            .iter()
            .map(|user| {
                json!({
                    "name": FETCH_BOOKS,
                    "data": {"userId": user, "dailySyncRunId": run_id},
                    // One sync per user per daily run, even if this step is replayed.
                    "id": format!("daily-{run_id}-{user}"),
                })
            })
            .collect();
        ctx.step
            .send_event(&format!("send-batch-{}", i + 1), events)
            .await?;
        batches += 1;
    }
    Ok(
        json!({"users": user_ids.len(), "batches": batches, "scheduledAt": ctx.event.data.get("scheduledAt")}),
    )
}
