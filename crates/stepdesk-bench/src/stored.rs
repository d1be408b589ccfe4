//! Section 3: admin queries with a million runs stored.
//!
//! The database is generated straight into SQLite (Stepdesk's own schema, created by the
//! real store), with the rows the engine would have written: for each run its triggering
//! event, the run, its steps, failed attempts, and the `inngest/function.failed` /
//! `inngest/function.cancelled` events of failed and cancelled runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::json;
use stepdesk_engine::admin::RunQuery;
use stepdesk_engine::step::hash_step_id;
use stepdesk_engine::store::SCHEMA_VERSION;
use stepdesk_engine::time::now_ms;
use stepdesk_engine::{Durability, Engine, EngineConfig, Error, Function, RunStatus, Store};

use crate::common::{stored_payload, INSERT_EVENT};
use crate::stats::Dist;

/// Bump when the generated data changes, so cached databases are rebuilt.
const GENERATOR_VERSION: u32 = 2;

/// Functions and their share of runs (percent).
const FUNCTIONS: [(&str, u32); 10] = [
    ("process-order", 30),
    ("send-receipt", 20),
    ("sync-inventory", 12),
    ("charge-card", 10),
    ("ship-package", 8),
    ("nightly-report", 6),
    ("refund-order", 5),
    ("notify-slack", 4),
    ("cleanup-carts", 3),
    ("import-catalog", 2),
];

/// Statuses and their share of runs (percent).
const STATUSES: [(&str, u32); 4] = [
    ("Completed", 85),
    ("Failed", 7),
    ("Running", 5),
    ("Cancelled", 3),
];

const STEP_IDS: [&str; 3] = ["load-order", "call-api", "record-result"];
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The index of the entry that a percentile `r` (0..100) falls on.
fn pick<T>(table: &[(T, u32)], r: u32) -> usize {
    let mut acc = 0;
    for (i, (_, w)) in table.iter().enumerate() {
        acc += w;
        if r < acc {
            return i;
        }
    }
    table.len() - 1
}

/// The smallest ULID of a millisecond, as `admin.runs` turns a time into an id bound.
fn ulid_floor(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

fn event_name(function: &str) -> String {
    format!("app/{function}.requested")
}

#[derive(Debug, Clone)]
pub struct StoredResults {
    pub runs: u64,
    pub events: u64,
    pub steps: u64,
    pub build: Duration,
    pub cached: bool,
    pub db_bytes: u64,
    pub engine_start: Duration,
    pub reps: usize,
    pub first_page: Dist,
    pub second_page: Dist,
    pub filtered: Dist,
    pub filtered_rows: f64,
    pub status_only: Dist,
    pub multi_status: Dist,
    pub function_stats: Dist,
    pub function_stats_cold: Dist,
    pub detail: Dist,
    pub raw_point: Dist,
    pub raw_filtered: Dist,
    pub raw_filtered_unhinted: Dist,
}

pub struct StoredConfig {
    pub runs: usize,
    pub reps: usize,
    /// Where to keep the generated database between runs (None: a temp dir).
    pub cache_dir: Option<PathBuf>,
}

pub async fn run(cfg: &StoredConfig) -> Result<StoredResults> {
    let temp;
    let data_dir = match &cfg.cache_dir {
        Some(dir) => dir.join(format!(
            "runs-{}-schema{SCHEMA_VERSION}-gen{GENERATOR_VERSION}",
            cfg.runs
        )),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let db = stepdesk_engine::database_path(&data_dir);
    let marker = data_dir.join("complete");
    let (build, cached) = match std::fs::read_to_string(&marker) {
        Ok(secs) if db.exists() => (Duration::from_secs_f64(secs.trim().parse()?), true),
        _ => {
            if cfg.cache_dir.is_some() {
                prune_cache(&data_dir, &format!("runs-{}-", cfg.runs));
            }
            let _ = std::fs::remove_dir_all(&data_dir);
            std::fs::create_dir_all(&data_dir)?;
            eprintln!("  generating {} runs in {}", cfg.runs, db.display());
            let (db2, n) = (db.clone(), cfg.runs);
            let took = tokio::task::spawn_blocking(move || generate(&db2, n)).await??;
            std::fs::write(&marker, format!("{}", took.as_secs_f64()))?;
            (took, false)
        }
    };
    if cached {
        eprintln!("  using the cached {} ", db.display());
    }

    // Pick the runs to look at: random rows.
    let mut rng = StdRng::seed_from_u64(7);
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (runs, events, steps): (u64, u64, u64) = conn.query_row(
        "SELECT (SELECT max(rowid) FROM runs), (SELECT max(rowid) FROM events),
                (SELECT max(rowid) FROM steps)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut ids = Vec::with_capacity(cfg.reps);
    for _ in 0..cfg.reps {
        let rowid = rng.gen_range(1..=runs as i64);
        let id: Option<String> = conn
            .query_row("SELECT id FROM runs WHERE rowid = ?1", [rowid], |r| {
                r.get(0)
            })
            .optional()?;
        ids.extend(id);
    }
    let (first_ms, last_ms): (i64, i64) = conn.query_row(
        "SELECT (SELECT min(queued_at) FROM runs), (SELECT max(queued_at) FROM runs)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;

    // The filtered pages to ask for: a random function, status and 1-7 day window each.
    let filters: Vec<(&str, &str, i64, i64)> = (0..cfg.reps)
        .map(|_| {
            let function = FUNCTIONS[rng.gen_range(0..FUNCTIONS.len())].0;
            let status = STATUSES[rng.gen_range(0..STATUSES.len())].0;
            let days = rng.gen_range(1..=7);
            let from = rng.gen_range(first_ms..(last_ms - days * DAY_MS).max(first_ms + 1));
            (function, status, from, from + days * DAY_MS)
        })
        .collect();

    // Same cache size as the store's read connections.
    conn.pragma_update(None, "cache_size", -16_000)?;
    eprintln!("  baseline: raw point lookups by run id");
    let mut raw = Vec::with_capacity(ids.len());
    {
        let mut stmt = conn.prepare(
            "SELECT id, function_id, status, trigger_kind, event_id, queued_at, started_at, ended_at
             FROM runs WHERE id = ?1",
        )?;
        for id in &ids {
            let t = Instant::now();
            let row: (String, String, String) =
                stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            raw.push(t.elapsed());
            std::hint::black_box(row);
        }
    }
    eprintln!("  baseline: the filtered page's SQL on a plain connection");
    // The statement `admin.runs` builds for these filters, and the same without its index
    // hint (the plan SQLite picks on its own).
    let filtered_sql = |hint: &str| {
        format!(
            "SELECT r.id, r.function_id, r.status, r.trigger_kind, r.event_id, e.name, r.queued_at,
                    r.started_at, r.ended_at, r.cron_scheduled_at, r.late
             FROM runs r{hint} LEFT JOIN events e ON e.internal_id = r.event_id
             WHERE 1=1 AND r.function_id = ? AND r.status = ? AND r.id >= ? AND r.id < ?
             ORDER BY r.id DESC LIMIT 51"
        )
    };
    let mut raw_filtered = Vec::with_capacity(filters.len());
    let mut raw_filtered_unhinted = Vec::with_capacity(filters.len());
    for (hint, out) in [
        (" INDEXED BY runs_by_function_status", &mut raw_filtered),
        ("", &mut raw_filtered_unhinted),
    ] {
        let mut stmt = conn.prepare(&filtered_sql(hint))?;
        for (function, status, from, to) in &filters {
            let t = Instant::now();
            let rows: Vec<(String, Option<String>)> = stmt
                .query_map(
                    params![function, status, ulid_floor(*from), ulid_floor(*to)],
                    |r| Ok((r.get(0)?, r.get(5)?)),
                )?
                .collect::<Result<_, _>>()?;
            out.push(t.elapsed());
            std::hint::black_box(rows);
        }
    }
    drop(conn);

    let functions: Vec<Function> = FUNCTIONS
        .iter()
        .map(|(id, _)| {
            Function::builder(*id)
                .on_event(event_name(id))
                .handler(|_ctx| async { Ok::<_, Error>(json!(null)) })
                .expect("valid function")
        })
        .collect();
    let t = Instant::now();
    let engine = Engine::start(EngineConfig::new(&data_dir), functions).await?;
    let engine_start = t.elapsed();
    let admin = engine.admin();

    eprintln!("  admin.runs first page, {} times", cfg.reps);
    let mut first_page = Vec::with_capacity(cfg.reps);
    let mut cursor = None;
    for _ in 0..cfg.reps {
        let t = Instant::now();
        let page = admin
            .runs(RunQuery {
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        first_page.push(t.elapsed());
        if page.runs.len() != 50 {
            bail!("the first page has {} runs", page.runs.len());
        }
        cursor = page.next_cursor;
    }
    let mut second_page = Vec::with_capacity(cfg.reps);
    for _ in 0..cfg.reps {
        let t = Instant::now();
        let page = admin
            .runs(RunQuery {
                limit: Some(50),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?;
        second_page.push(t.elapsed());
        std::hint::black_box(page);
    }

    eprintln!(
        "  admin.runs filtered by function + status + time range, {} times",
        cfg.reps
    );
    let mut filtered = Vec::with_capacity(cfg.reps);
    let mut rows = 0usize;
    for &(function, status, from, to) in &filters {
        let q = RunQuery {
            function_id: Some(function.into()),
            status: vec![status.parse().map_err(anyhow::Error::msg)?],
            from: Some(from),
            to: Some(to),
            limit: Some(50),
            ..Default::default()
        };
        let t = Instant::now();
        let page = admin.runs(q).await?;
        filtered.push(t.elapsed());
        if page
            .runs
            .iter()
            .any(|r| r.function_id != function || r.status != status)
        {
            bail!("the filtered page holds other runs");
        }
        rows += page.runs.len();
    }

    let mut status_only = Vec::with_capacity(cfg.reps);
    for i in 0..cfg.reps {
        let status = STATUSES[i % STATUSES.len()].0;
        let t = Instant::now();
        let page = admin
            .runs(RunQuery {
                status: vec![status.parse().map_err(anyhow::Error::msg)?],
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        status_only.push(t.elapsed());
        std::hint::black_box(page);
    }

    eprintln!(
        "  admin.runs with two statuses and an event name, {} times",
        cfg.reps
    );
    let mut multi_status = Vec::with_capacity(cfg.reps);
    for i in 0..cfg.reps {
        let f = FUNCTIONS[i % FUNCTIONS.len()].0;
        let t = Instant::now();
        let page = admin
            .runs(RunQuery {
                status: vec![RunStatus::Failed, RunStatus::Cancelled],
                event_name: Some(event_name(f)),
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        multi_status.push(t.elapsed());
        if page.runs.iter().any(|r| r.function_id != f) {
            bail!("the event-name page holds other runs");
        }
    }

    eprintln!(
        "  admin.function_stats of each function, {} times",
        cfg.reps
    );
    let mut function_stats = Vec::with_capacity(cfg.reps);
    // The first call per function reads its whole week from the index; later ones read
    // only the hours not over yet (the engine keeps past hours).
    let mut function_stats_cold = Vec::with_capacity(FUNCTIONS.len());
    for i in 0..cfg.reps {
        let f = FUNCTIONS[i % FUNCTIONS.len()].0;
        let t = Instant::now();
        let stats = admin.function_stats(f).await?;
        if i < FUNCTIONS.len() {
            function_stats_cold.push(t.elapsed());
        } else {
            function_stats.push(t.elapsed());
        }
        std::hint::black_box(stats);
    }

    eprintln!("  admin.run (detail) of random runs, {} times", ids.len());
    let mut detail = Vec::with_capacity(ids.len());
    for id in &ids {
        let t = Instant::now();
        let d = admin.run(id).await?;
        detail.push(t.elapsed());
        if d.steps.is_empty() || d.event.is_none() {
            bail!("run {id} came back without steps or event");
        }
    }

    engine.shutdown(Duration::from_secs(10)).await;
    let db_bytes = std::fs::metadata(&db)
        .with_context(|| db.display().to_string())?
        .len();
    let wal = db.with_extension("db-wal");
    let db_bytes = db_bytes + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    Ok(StoredResults {
        runs,
        events,
        steps,
        build,
        cached,
        db_bytes,
        engine_start,
        reps: cfg.reps,
        first_page: Dist::of(&first_page),
        second_page: Dist::of(&second_page),
        filtered: Dist::of(&filtered),
        filtered_rows: rows as f64 / cfg.reps.max(1) as f64,
        status_only: Dist::of(&status_only),
        multi_status: Dist::of(&multi_status),
        function_stats: Dist::of(&function_stats),
        function_stats_cold: Dist::of(&function_stats_cold),
        detail: Dist::of(&detail),
        raw_point: Dist::of(&raw),
        raw_filtered: Dist::of(&raw_filtered),
        raw_filtered_unhinted: Dist::of(&raw_filtered_unhinted),
    })
}

/// Removes databases of the same size cached for older schema or generator versions
/// (a million runs are two gigabytes) before building a new one.
fn prune_cache(keep: &Path, prefix: &str) {
    let Some(dir) = keep.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let stale = path != keep
            && e.file_name().to_string_lossy().starts_with(prefix)
            && path.join("stepdesk.db").exists();
        if stale {
            eprintln!("  removing the stale cached database {}", path.display());
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Writes `n` runs spread over the last 30 days, oldest first, in big transactions.
fn generate(path: &Path, n: usize) -> Result<Duration> {
    let started = Instant::now();
    Store::open(path, Durability::Full)?.close();
    let mut conn = Connection::open(path)?;
    // A fixture: durability does not matter while building it.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -1_000_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;

    let mut rng = StdRng::seed_from_u64(42);
    let end = now_ms() - 60_000;
    let span = 30 * DAY_MS;
    let begin = end - span;
    let hashes: Vec<String> = STEP_IDS.iter().map(|s| hash_step_id(s)).collect();
    let names: Vec<String> = FUNCTIONS.iter().map(|(f, _)| event_name(f)).collect();

    const CHUNK: usize = 50_000;
    let mut i = 0usize;
    while i < n {
        let tx = conn.transaction()?;
        {
            let mut ev = tx.prepare_cached(INSERT_EVENT)?;
            let mut run = tx.prepare_cached(
                "INSERT INTO runs (id, function_id, status, trigger_kind, event_id, queued_at,
                                   started_at, ended_at, wake_at, attempt, output, error, event_name)
                 VALUES (?1, ?2, ?3, 'event', ?4, ?5, ?6, ?7, NULL, 0, ?8, ?9, ?10)",
            )?;
            let mut step = tx.prepare_cached(
                "INSERT INTO steps (run_id, hash, step_id, kind, status, seq, attempts,
                                    started_at, ended_at, wake_at, input, output, error)
                 VALUES (?1, ?2, ?3, 'run', ?4, ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?10)",
            )?;
            let mut attempt = tx.prepare_cached(
                "INSERT INTO step_attempts (run_id, hash, attempt, started_at, ended_at, error, retry_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let stop = (i + CHUNK).min(n);
            while i < stop {
                let ts = begin + (i as i128 * span as i128 / n as i128) as i64;
                let fi = pick(&FUNCTIONS, rng.gen_range(0..100));
                let f = FUNCTIONS[fi].0;
                let status = STATUSES[pick(&STATUSES, rng.gen_range(0..100))].0;
                let event_id = ulid::Ulid::from_parts(ts as u64, rng.gen()).to_string();
                let run_id = ulid::Ulid::from_parts(ts as u64, rng.gen()).to_string();
                let payload = stored_payload(&names[fi], i as u64, &event_id, ts);
                ev.execute(params![event_id, event_id, names[fi], ts, ts, payload])?;

                let run_started = ts + rng.gen_range(1..30);
                let completed_steps = match status {
                    "Completed" => 3,
                    "Failed" | "Running" => 2,
                    _ => 1,
                };
                let mut t = run_started;
                for (k, hash) in hashes.iter().enumerate().take(completed_steps) {
                    let d = rng.gen_range(5..400);
                    let output = match k {
                        0 => format!(
                            r#"{{"order_id":"ord_{i:010}","items":{},"total_cents":{}}}"#,
                            1 + i % 4,
                            499 + (i * 37) % 20_000
                        ),
                        1 => format!(r#"{{"request_id":"req_{run_id}","status":"succeeded"}}"#),
                        _ => format!(r#"{{"recorded":true,"rows":{}}}"#, i % 17),
                    };
                    step.execute(params![
                        run_id,
                        hash,
                        STEP_IDS[k],
                        "completed",
                        k as i64,
                        1,
                        t,
                        t + d,
                        output,
                        Option::<String>::None
                    ])?;
                    t += d + 2;
                }
                let (output, error, ended) = match status {
                    "Completed" => (
                        Some(format!(r#"{{"ok":true,"order_id":"ord_{i:010}"}}"#)),
                        None,
                        Some(t),
                    ),
                    "Failed" => {
                        let err = r#"{"name":"Error","message":"upstream answered 503 Service Unavailable","stack":"Error: upstream answered 503\n    at call_api (src/jobs.rs:88)"}"#;
                        for a in 0..5i64 {
                            attempt.execute(params![
                                run_id,
                                hashes[2],
                                a,
                                t,
                                t + 120,
                                err,
                                if a < 4 { Some(t + 1_000) } else { None }
                            ])?;
                            t += 1_200;
                        }
                        step.execute(params![
                            run_id,
                            hashes[2],
                            STEP_IDS[2],
                            "failed",
                            2,
                            5,
                            t - 1_200,
                            t - 1_080,
                            Option::<String>::None,
                            err
                        ])?;
                        let failed_id = ulid::Ulid::from_parts(t as u64, rng.gen()).to_string();
                        let data = json!({
                            "function_id": f, "run_id": run_id,
                            "error": serde_json::from_str::<serde_json::Value>(err)?,
                            "event": serde_json::from_str::<serde_json::Value>(&payload)?,
                        });
                        let failed = json!({"name": "inngest/function.failed", "data": data,
                            "user": {}, "id": failed_id, "ts": t});
                        ev.execute(params![
                            failed_id,
                            failed_id,
                            "inngest/function.failed",
                            t,
                            t,
                            failed.to_string()
                        ])?;
                        (None, Some(err.to_string()), Some(t))
                    }
                    "Running" => (None, None, None),
                    _ => {
                        let err = r#"{"name":"RunCancelled","message":"the run was cancelled"}"#;
                        let cancelled_id = ulid::Ulid::from_parts(t as u64, rng.gen()).to_string();
                        let cancelled = json!({"name": "inngest/function.cancelled",
                            "data": {"function_id": f, "run_id": run_id},
                            "user": {}, "id": cancelled_id, "ts": t});
                        ev.execute(params![
                            cancelled_id,
                            cancelled_id,
                            "inngest/function.cancelled",
                            t,
                            t,
                            cancelled.to_string()
                        ])?;
                        (None, Some(err.to_string()), Some(t))
                    }
                };
                run.execute(params![
                    run_id,
                    f,
                    status,
                    event_id,
                    ts,
                    run_started,
                    ended,
                    output,
                    error,
                    names[fi]
                ])?;
                i += 1;
            }
        }
        tx.commit()?;
        eprint!(
            "\r  generated {i} runs ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    // The rows went in through SQLite, so the search triggers queued every run for the
    // background indexer. These measurements are of the admin queries on their own: leave
    // the million runs unindexed rather than index them while measuring.
    conn.execute_batch("DELETE FROM search_queue")?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    drop(conn);
    // Flush it now, so the kernel's write-back does not compete with the measurements.
    std::fs::File::open(path)?.sync_all()?;
    Ok(started.elapsed())
}
