//! Section 2: a 3-step no-op function: runs/s and steps/s, and event-to-first-step latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use stepdesk_engine::time::now_ms;
use stepdesk_engine::{Error, Function, NewEvent};

use crate::common::{self, order_data, CpuMeter, CpuUse, Server};
use crate::ingest;
use crate::stats::Dist;

const EVENT: &str = "bench/noop";

/// Latency probes waiting for their run's first step: probe id -> who to tell.
static PROBES: LazyLock<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Instant>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn probe_reached(id: &str) {
    let now = Instant::now();
    if let Some(tx) = PROBES.lock().expect("probes").remove(id) {
        let _ = tx.send(now);
    }
}

/// `bench-noop`: three no-op steps. The first tells a waiting probe, if the event has one.
pub fn noop_function() -> Function {
    Function::builder("bench-noop")
        .name("Bench no-op")
        .on_event(EVENT)
        .handler(|ctx| async move {
            let probe = ctx
                .event
                .data
                .get("probe")
                .and_then(Value::as_str)
                .map(str::to_string);
            ctx.step
                .run("one", || async move {
                    if let Some(p) = probe {
                        probe_reached(&p);
                    }
                    Ok::<_, Error>(1)
                })
                .await?;
            ctx.step.run("two", || async { Ok::<_, Error>(2) }).await?;
            ctx.step
                .run("three", || async { Ok::<_, Error>(3) })
                .await?;
            Ok(json!({"ok": true}))
        })
        .expect("valid function")
}

#[derive(Debug, Clone)]
pub struct Throughput {
    pub runs: u64,
    pub steps: u64,
    pub send_elapsed: Duration,
    pub elapsed: Duration,
    pub db_bytes: u64,
    pub db_runs: u64,
    /// CPU per step.
    pub cpu: CpuUse,
}

impl Throughput {
    pub fn runs_per_s(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64()
    }
    pub fn steps_per_s(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub sequential: Dist,
    pub concurrent: Dist,
    pub concurrency: usize,
    /// Baselines: the parts the path is made of.
    pub health_rtt: Dist,
    pub raw_commit: Dist,
}

pub struct RunsConfig {
    pub runs: usize,
    pub send_batch: usize,
    pub latency_samples: usize,
    pub latency_concurrency: usize,
}

pub async fn run(cfg: &RunsConfig) -> Result<(Throughput, Latency)> {
    let server = Server::start(vec![noop_function()]).await?;
    let throughput = throughput(&server, cfg).await?;

    eprintln!(
        "  event-to-first-step latency: {} sequential samples over HTTP",
        cfg.latency_samples
    );
    let client = common::client();
    // Warm up.
    latency_samples(&server, &client, 50, 900_000_000).await?;
    let sequential = latency_samples(&server, &client, cfg.latency_samples, 0).await?;
    eprintln!(
        "  event-to-first-step latency: {} samples from {} concurrent clients",
        cfg.latency_samples, cfg.latency_concurrency
    );
    let concurrent = {
        let per = cfg.latency_samples.div_ceil(cfg.latency_concurrency.max(1));
        let mut tasks = Vec::new();
        for k in 0..cfg.latency_concurrency.max(1) {
            let engine_url = server.url("/e/bench-key");
            tasks.push(tokio::spawn(async move {
                let client = common::client();
                let mut out = Vec::with_capacity(per);
                for i in 0..per {
                    let probe = format!("c{k}-{i}");
                    out.push(one_probe(&client, &engine_url, &probe).await?);
                }
                Ok::<_, anyhow::Error>(out)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Dist::of(&all)
    };

    eprintln!("  baselines: GET /health round trips, raw fsync'd commits");
    let health_url = server.url("/health");
    let mut health = Vec::with_capacity(cfg.latency_samples);
    for _ in 0..cfg.latency_samples {
        let t = Instant::now();
        let resp = client.get(&health_url).send().await?;
        let ok = resp.status() == reqwest::StatusCode::OK;
        resp.bytes().await?;
        health.push(t.elapsed());
        if !ok {
            bail!("GET /health failed");
        }
    }
    let samples = cfg.latency_samples;
    let raw = tokio::task::spawn_blocking(move || ingest::raw_insert(samples, 1)).await??;
    server.stop().await?;
    Ok((
        throughput,
        Latency {
            sequential,
            concurrent,
            concurrency: cfg.latency_concurrency,
            health_rtt: Dist::of(&health),
            raw_commit: raw.latency,
        },
    ))
}

async fn throughput(server: &Server, cfg: &RunsConfig) -> Result<Throughput> {
    eprintln!(
        "  {} runs of a 3-step no-op function (events sent with engine.send_events, {} per call)",
        cfg.runs, cfg.send_batch
    );
    let engine = server.engine.clone();
    let meter = CpuMeter::start();
    let started = Instant::now();
    let mut sent = 0usize;
    let mut sends = Vec::new();
    while sent < cfg.runs {
        let n = cfg.send_batch.min(cfg.runs - sent);
        let events: Vec<NewEvent> = (sent..sent + n).map(|i| new_event(i as u64)).collect();
        sent += n;
        let engine = engine.clone();
        // A few calls in flight at once, as several producers would.
        sends.push(tokio::spawn(
            async move { engine.send_events(events).await },
        ));
        if sends.len() >= 4 {
            sends.remove(0).await??;
        }
    }
    for s in sends {
        s.await??;
    }
    let send_elapsed = started.elapsed();
    let deadline = started + Duration::from_secs(300);
    let want = cfg.runs as u64;
    loop {
        let done: u64 = engine
            .store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM runs WHERE status = 'Completed'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        if done >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {want} runs completed within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu = meter.stop(cfg.runs as u64 * 3);
    let (runs, steps, failed): (u64, u64, u64) = engine
        .store()
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM runs WHERE status = 'Completed'),
                        (SELECT count(*) FROM steps WHERE status = 'completed'),
                        (SELECT count(*) FROM runs WHERE status <> 'Completed')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await?;
    if failed > 0 || steps != runs * 3 {
        bail!("{runs} runs completed, {failed} not, with {steps} steps");
    }
    // Size per run of a database the engine wrote itself (events + runs + steps), measured
    // before the latency runs are added.
    let db_path = engine.store().path().to_path_buf();
    let (db_bytes, db_runs) = engine
        .store()
        .write(move |c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .ok();
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let runs: i64 = c.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))?;
            Ok(((pages * size) as u64, runs as u64))
        })
        .await
        .with_context(|| format!("sizing {}", db_path.display()))?;
    Ok(Throughput {
        runs,
        steps,
        send_elapsed,
        elapsed,
        db_bytes,
        db_runs,
        cpu,
    })
}

fn new_event(i: u64) -> NewEvent {
    let data: Map<String, Value> = serde_json::from_str(&order_data(i)).expect("json");
    let mut user = Map::new();
    user.insert("ip".into(), json!(format!("203.0.113.{}", i % 250)));
    NewEvent {
        name: EVENT.into(),
        data,
        user,
        id: None,
        ts: now_ms(),
        v: None,
        internal_id: None,
    }
}

async fn latency_samples(
    server: &Server,
    client: &reqwest::Client,
    n: usize,
    base: u64,
) -> Result<Dist> {
    let url = server.url("/e/bench-key");
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        out.push(one_probe(client, &url, &format!("s{}", base + i)).await?);
    }
    Ok(Dist::of(&out))
}

static PROBE_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Time from just before the POST to the start of the run's first step.
async fn one_probe(client: &reqwest::Client, url: &str, probe: &str) -> Result<Duration> {
    let seq = PROBE_SEQ.fetch_add(1, Ordering::Relaxed) as u64;
    let mut data: Map<String, Value> = serde_json::from_str(&order_data(seq))?;
    data.insert("probe".into(), json!(probe));
    let body = json!({"name": EVENT, "data": data}).to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    PROBES.lock().expect("probes").insert(probe.to_string(), tx);
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    resp.bytes().await?;
    if status != reqwest::StatusCode::OK {
        bail!("POST answered {status}");
    }
    let reached = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .context("the first step never started")??;
    Ok(reached.saturating_duration_since(started))
}
