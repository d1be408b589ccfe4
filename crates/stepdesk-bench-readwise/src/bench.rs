//! The measurement: one daily sync of every user, from `sync_all()` until the daily
//! sync's progress says every user is done.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use stepdesk_engine::{Engine, EngineConfig};
use stepdesk_readwise::{BooksRequest, ClientConfig, ReadwiseClient, Token};
use stepdesk_readwise_sync::ReadwiseSync;
use stepdesk_secrets::Secrets;

use crate::fake_proc::{books_for, token, user_id, ChildStats, FakeArgs, FakeProcess};
use crate::sys;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub users: usize,
    pub cap: usize,
    pub latency_ms: u64,
    pub max_page_size: usize,
    pub books_min: usize,
    pub books_max: usize,
    pub max_concurrent_runs: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub fake_threads: usize,
    pub timeout: Duration,
    /// Requests of the client-only baseline run after the sync (0: none).
    pub baseline_requests: usize,
}

impl Plan {
    /// Requests a first (full) sync of user `i` makes: `auth/` once, then one `books/` per
    /// page.
    pub fn requests_for(&self, i: usize) -> u64 {
        1 + books_for(i, self.books_min, self.books_max).div_ceil(self.max_page_size) as u64
    }

    pub fn expected_requests(&self) -> u64 {
        (0..self.users).map(|i| self.requests_for(i)).sum()
    }

    pub fn expected_books(&self) -> u64 {
        (0..self.users)
            .map(|i| books_for(i, self.books_min, self.books_max) as u64)
            .sum()
    }

    /// `users x requests per user x latency / cap`.
    pub fn floor(&self) -> Duration {
        Duration::from_secs_f64(
            self.expected_requests() as f64 * self.latency_ms as f64 / 1000.0 / self.cap as f64,
        )
    }
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub engine_max_concurrent_runs: usize,
    pub data_fs: String,
    pub setup: Duration,
    pub wall: Duration,
    /// Time until the daily-sync run itself completed (it only fans the events out).
    pub fan_out: Duration,
    /// (share of users done, time) for 10%, 50%, 90%, 100%.
    pub milestones: Vec<(f64, Duration)>,
    pub rss_before: u64,
    pub peak_rss: u64,
    pub peak_reset: bool,
    pub rss_after: u64,
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    pub writer_cpu: Duration,
    pub fake: ChildStats,
    pub fake_cpu: Duration,
    pub fake_requests: u64,
    pub users_ok: usize,
    pub users_wrong: Vec<String>,
    pub progress: (i64, i64, i64, i64),
    pub fetch_runs: HashMap<String, i64>,
    pub steps: i64,
    pub failed_attempts: i64,
    pub db_bytes: u64,
    pub baseline: Option<Baseline>,
}

/// The same requests without the engine: `cap` tasks sending `auth/` and first `books/`
/// pages (1 to 3, the sync's mix) back to back through a fresh `ReadwiseClient` with the
/// same cap. Its rate is what the client and the fake can do at this cap on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub requests: usize,
    pub wall: Duration,
    pub cpu: Duration,
    pub throttled: u64,
}

impl Baseline {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
}

async fn baseline(plan: &Plan, base_url: &str) -> Result<Baseline> {
    let mut config = ClientConfig::default().with_base_url(base_url)?;
    config.max_concurrent_requests = plan.cap;
    let client = ReadwiseClient::new(config)?;
    // Warm the connection pool as the sync's first requests do, outside the timing.
    futures::stream::iter(0..plan.cap)
        .map(|i| {
            let client = client.clone();
            async move { client.check_token(&Token::new(token(i % plan.users))).await }
        })
        .buffer_unordered(plan.cap)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    // At most 4 per token: with the sync's 3 `books/` that stays far under the 20 a minute,
    // which this fresh client's limiter cannot know were already spent.
    let n = plan.baseline_requests.min(plan.users * 4);
    let (cpu0, wall0) = (sys::process_cpu_total(), Instant::now());
    futures::future::try_join_all((0..plan.cap).map(|_| {
        let (client, next) = (client.clone(), &next);
        async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                // Spread over the users' tokens: each gets a few requests more than its sync
                // made, far under its limits.
                let t = Token::new(token((k * 7919) % plan.users));
                if k % 4 == 0 {
                    client.check_token(&t).await?;
                } else {
                    client.books_page(&t, BooksRequest::first()).await?;
                }
            }
        }
    }))
    .await?;
    Ok(Baseline {
        requests: n,
        wall: wall0.elapsed(),
        cpu: sys::process_cpu_total().saturating_sub(cpu0),
        throttled: 0,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub async fn run(plan: &Plan) -> Result<Outcome> {
    let setup_started = Instant::now();
    eprintln!(
        "starting the fake Readwise (child process): {} users, {}-{} books, pages of {}, {} ms",
        plan.users, plan.books_min, plan.books_max, plan.max_page_size, plan.latency_ms
    );
    let mut fake = tokio::task::block_in_place(|| {
        FakeProcess::spawn(&FakeArgs {
            users: plan.users,
            books_min: plan.books_min,
            books_max: plan.books_max,
            max_page_size: plan.max_page_size,
            latency_ms: plan.latency_ms,
            threads: plan.fake_threads,
        })
    })?;
    eprintln!("fake Readwise pid {} at {}", fake.pid(), fake.base_url);

    let dir = match &plan.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let data_fs = sys::filesystem_of(dir.path());
    let mut engine_config = EngineConfig::new(dir.path());
    if let Some(n) = plan.max_concurrent_runs {
        engine_config.max_concurrent_runs = n;
    }
    let engine_max_concurrent_runs = engine_config.max_concurrent_runs;
    let store = engine_config.open_store().await?;
    let mut client_config = ClientConfig::default().with_base_url(&fake.base_url)?;
    client_config.max_concurrent_requests = plan.cap;
    let client = ReadwiseClient::new(client_config)?;
    let sync = ReadwiseSync::new(store.clone(), Ok(Secrets::in_memory()), client).await?;
    let engine = Engine::builder(engine_config)
        .store(store)
        .functions(sync.functions())
        .gate(sync.gate())
        .start()
        .await?;
    sync.attach(engine.clone());
    let admin = sync.admin();

    // Users, many at a time so the store's group commit folds them together.
    futures::stream::iter(0..plan.users)
        .map(|i| {
            let admin = admin.clone();
            async move {
                admin
                    .add_user(&user_id(i), None, Some(&token(i)))
                    .await
                    .map_err(|e| anyhow!("adding user {i}: {e}"))
            }
        })
        .buffer_unordered(256)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let setup = setup_started.elapsed();
    eprintln!("{} users added in {:.1} s", plan.users, setup.as_secs_f64());

    let before = tokio::task::block_in_place(|| fake.stats())?;
    let rss_before = sys::status_bytes("VmRSS").unwrap_or(0);
    let peak_reset = sys::reset_peak_rss();
    let (user0, sys0) = sys::process_cpu();
    let writer0 = sys::thread_cpu("stepdesk-writer");
    let started = Instant::now();

    let requested = admin
        .sync_all()
        .await
        .map_err(|e| anyhow!("sync_all: {e}"))?;
    let engine_admin = engine.admin();
    let mut daily_run: Option<String> = None;
    let mut fan_out = None;
    let mut milestones: Vec<(f64, Duration)> = Vec::new();
    let marks = [0.1, 0.5, 0.9, 1.0];
    let mut last_log = Instant::now();
    let progress = loop {
        // Each poll reads the progress (two counts over the users table): often enough that
        // the finish is seen within 100 ms, rarely enough to cost next to nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed();
        if elapsed > plan.timeout {
            bail!("the daily sync did not finish within {:?}", plan.timeout);
        }
        if daily_run.is_none() || fan_out.is_none() {
            let runs = engine_admin
                .event_runs(&requested.event_id)
                .await
                .map_err(|e| anyhow!("event runs: {e}"))?;
            if let Some(r) = runs.first() {
                daily_run = Some(r.id.clone());
                match r.status.as_str() {
                    "Running" => {}
                    "Completed" => fan_out = Some(elapsed),
                    other => bail!("the daily-sync run ended {other}"),
                }
            }
        }
        let Some(run_id) = &daily_run else { continue };
        let all = admin
            .daily_syncs(Some(10))
            .await
            .map_err(|e| anyhow!("daily syncs: {e}"))?;
        let Some(p) = all.into_iter().find(|p| &p.run_id == run_id) else {
            continue;
        };
        while let Some(&m) = marks.get(milestones.len()) {
            if p.total > 0 && p.done as f64 >= m * p.total as f64 {
                milestones.push((m, elapsed));
            } else {
                break;
            }
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            eprintln!(
                "  {:>5.1} s: {}/{} users done ({} failed)",
                elapsed.as_secs_f64(),
                p.done,
                p.total,
                p.failed
            );
        }
        if fan_out.is_some() && p.done >= p.total {
            break p;
        }
    };
    let wall = started.elapsed();
    let (user1, sys1) = sys::process_cpu();
    let writer1 = sys::thread_cpu("stepdesk-writer");
    let peak_rss = sys::status_bytes("VmHWM").unwrap_or(0);
    let rss_after = sys::status_bytes("VmRSS").unwrap_or(0);
    let after = tokio::task::block_in_place(|| fake.stats())?;
    eprintln!(
        "daily sync done in {:.2} s; peak RSS {:.0} MiB",
        wall.as_secs_f64(),
        mib(peak_rss)
    );

    // Every user synced, with the right counts, by this daily run.
    let run_id = daily_run.clone().expect("the daily run was found");
    let users = admin.users().await.map_err(|e| anyhow!("users: {e}"))?;
    let mut users_ok = 0;
    let mut users_wrong = Vec::new();
    let index: HashMap<String, usize> = (0..plan.users).map(|i| (user_id(i), i)).collect();
    for u in &users {
        let Some(&i) = index.get(&u.id) else {
            users_wrong.push(format!("{}: unexpected user", u.id));
            continue;
        };
        let want = books_for(i, plan.books_min, plan.books_max) as i64;
        let last = u.last_sync.as_ref();
        let ok = last.is_some_and(|l| {
            l.status == "ok"
                && l.book_count == Some(want)
                && l.daily_sync_run_id.as_deref() == Some(run_id.as_str())
        }) && u.stored_books == want
            && u.readwise_total == Some(want);
        if ok {
            users_ok += 1;
        } else if users_wrong.len() < 10 {
            users_wrong.push(format!(
                "{}: want {want} books, stored {}, last sync {:?}",
                u.id, u.stored_books, last
            ));
        }
    }
    if users.len() != plan.users {
        users_wrong.push(format!(
            "{} users listed, {} added",
            users.len(),
            plan.users
        ));
    }

    let (fetch_runs, steps, failed_attempts) = engine
        .store()
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT status, count(*) FROM runs WHERE function_id = 'readwise-fetch-books' GROUP BY status",
            )?;
            let runs = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<HashMap<_, _>, _>>()?;
            let steps: i64 = c.query_row("SELECT count(*) FROM steps", [], |r| r.get(0))?;
            let failed: i64 =
                c.query_row("SELECT count(*) FROM step_attempts", [], |r| r.get(0))?;
            Ok((runs, steps, failed))
        })
        .await?;

    let baseline = if plan.baseline_requests > 0 {
        let before = tokio::task::block_in_place(|| fake.stats())?;
        match baseline(plan, &fake.base_url).await {
            Ok(mut b) => {
                let after = tokio::task::block_in_place(|| fake.stats())?;
                b.throttled = after.throttled - before.throttled;
                eprintln!(
                    "client-only baseline: {} requests in {:.2} s",
                    b.requests,
                    b.wall.as_secs_f64()
                );
                Some(b)
            }
            Err(e) => {
                eprintln!("the client-only baseline failed (left out of the report): {e:#}");
                None
            }
        }
    } else {
        None
    };

    let db_path = engine.config().database_path();
    engine.shutdown(Duration::from_secs(10)).await;
    let db_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db_path.display())).ok())
        .map(|m| m.len())
        .sum();
    tokio::task::block_in_place(|| fake.stop()).context("stopping the fake")?;
    drop(dir);

    Ok(Outcome {
        engine_max_concurrent_runs,
        data_fs,
        setup,
        wall,
        fan_out: fan_out.unwrap_or(wall),
        milestones,
        rss_before,
        peak_rss,
        peak_reset,
        rss_after,
        cpu_user: user1.saturating_sub(user0),
        cpu_sys: sys1.saturating_sub(sys0),
        writer_cpu: writer1.saturating_sub(writer0),
        fake_cpu: after.cpu.saturating_sub(before.cpu),
        fake_requests: after.total_requests - before.total_requests,
        fake: ChildStats {
            throttled: after.throttled - before.throttled,
            unauthorized: after.unauthorized - before.unauthorized,
            ..after
        },
        users_ok,
        users_wrong,
        progress: (progress.total, progress.done, progress.ok, progress.failed),
        fetch_runs,
        steps,
        failed_attempts,
        db_bytes,
        baseline,
    })
}
