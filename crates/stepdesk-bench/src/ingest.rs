//! Section 1: event ingest over HTTP against the raw rusqlite insert ceiling.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rusqlite::params;
use stepdesk_engine::time::now_ms;

use crate::common::{self, event_json, stored_payload, CpuMeter, CpuUse, Server, INSERT_EVENT};
use crate::stats::Dist;

/// The event name used for ingest: no function listens to it.
const NAME: &str = "bench/ingest";

#[derive(Debug, Clone)]
pub struct Measured {
    pub events: u64,
    pub requests: u64,
    pub elapsed: Duration,
    /// Per request (HTTP) or per transaction (raw).
    pub latency: Dist,
    pub cpu: CpuUse,
}

impl Measured {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct IngestResults {
    pub clients: usize,
    pub batch_clients: usize,
    pub batch_size: usize,
    pub http_single: Measured,
    pub raw_single: Measured,
    pub http_batch: Measured,
    pub raw_batch: Measured,
    pub stored_events: u64,
}

pub struct IngestConfig {
    pub clients: usize,
    pub single_events: usize,
    pub raw_single_events: usize,
    pub batch_clients: usize,
    pub batches: usize,
    pub batch_size: usize,
    /// Run the raw ceilings with a single transaction only (for profiling the engine).
    pub skip_raw: bool,
}

pub async fn run(cfg: &IngestConfig) -> Result<IngestResults> {
    // Raw ceilings first, on their own files, while nothing else runs.
    let skip_raw = cfg.skip_raw;
    let n = if skip_raw { 1 } else { cfg.raw_single_events };
    eprintln!("  raw rusqlite: {n} events, one transaction each");
    let raw_single = tokio::task::spawn_blocking(move || raw_insert(n, 1)).await??;
    let (n, b) = (if skip_raw { 1 } else { cfg.batches }, cfg.batch_size);
    eprintln!("  raw rusqlite: {n} transactions of {b} events");
    let raw_batch = tokio::task::spawn_blocking(move || raw_insert(n, b)).await??;

    let server = Server::start(Vec::new()).await?;
    let url = server.url("/e/bench-key");
    // Warm up: connections, the writer, the page cache.
    http_load(&url, cfg.clients, cfg.clients * 10, 1, 1_000_000_000).await?;

    eprintln!(
        "  HTTP: {} single-event requests from {} clients",
        cfg.single_events, cfg.clients
    );
    let http_single = http_load(&url, cfg.clients, cfg.single_events, 1, 0).await?;
    eprintln!(
        "  HTTP: {} requests of {} events from {} clients",
        cfg.batches, cfg.batch_size, cfg.batch_clients
    );
    let http_batch = http_load(
        &url,
        cfg.batch_clients,
        cfg.batches,
        cfg.batch_size,
        2_000_000_000,
    )
    .await?;

    let stored_events: u64 = server
        .engine
        .store()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?))
        .await?;
    server.stop().await?;
    let expected = (cfg.clients * 10 + cfg.single_events + cfg.batches * cfg.batch_size) as u64;
    if stored_events != expected {
        bail!("{stored_events} events stored, {expected} acknowledged");
    }
    Ok(IngestResults {
        clients: cfg.clients,
        batch_clients: cfg.batch_clients,
        batch_size: cfg.batch_size,
        http_single,
        raw_single,
        http_batch,
        raw_batch,
        stored_events,
    })
}

/// `requests` POSTs of `per_request` events each, from `clients` concurrent keep-alive
/// clients. Only `200` answers count; anything else fails the benchmark. The bodies are
/// made before the clock starts, so the load generator spends its share of the CPU on
/// sending rather than on formatting JSON.
async fn http_load(
    url: &str,
    clients: usize,
    requests: usize,
    per_request: usize,
    seq_base: u64,
) -> Result<Measured> {
    let mut bodies: Vec<Vec<String>> = vec![Vec::new(); clients];
    for r in 0..requests {
        let first = seq_base + (r * per_request) as u64;
        let body = if per_request == 1 {
            event_json(NAME, first)
        } else {
            let items: Vec<String> = (0..per_request as u64)
                .map(|k| event_json(NAME, first + k))
                .collect();
            format!("[{}]", items.join(","))
        };
        bodies[r % clients].push(body);
    }
    let meter = CpuMeter::start();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in bodies {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let client = common::client();
            let mut latencies = Vec::with_capacity(mine.len());
            for body in mine {
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.bytes().await?;
                if status != reqwest::StatusCode::OK {
                    bail!("POST answered {status}: {}", String::from_utf8_lossy(&text));
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let events = (requests * per_request) as u64;
    Ok(Measured {
        events,
        requests: requests as u64,
        elapsed,
        latency: Dist::of(&latencies),
        cpu: meter.stop(events),
    })
}

/// The ceiling: a plain rusqlite connection on a fresh file with Stepdesk's schema and
/// pragmas, inserting the same rows, `per_tx` rows per transaction, single-threaded.
pub fn raw_insert(transactions: usize, per_tx: usize) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let mut conn = common::raw_connection(&dir.path().join("raw.db"))?;
    let mut gen = ulid::Generator::new();
    let mut latencies = Vec::with_capacity(transactions);
    let meter = CpuMeter::start();
    let started = Instant::now();
    let mut i = 0u64;
    for _ in 0..transactions {
        let t = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT_EVENT)?;
            for _ in 0..per_tx {
                let id = gen.generate()?.to_string();
                let now = now_ms();
                let payload = stored_payload(NAME, i, &id, now);
                stmt.execute(params![id, id, NAME, now, now, payload])?;
                i += 1;
            }
        }
        tx.commit()?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    Ok(Measured {
        events: i,
        requests: transactions as u64,
        elapsed,
        latency: Dist::of(&latencies),
        cpu: meter.stop(i),
    })
}
