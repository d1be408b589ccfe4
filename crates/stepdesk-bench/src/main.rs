//! Stepdesk's benchmarks, side by side with their baselines, in one process run.
//!
//! 1. Event ingest over HTTP (single events and batches) against the raw rusqlite insert
//!    ceiling for the same rows.
//! 2. A 3-step no-op function: runs/s and steps/s, and event-to-first-step latency, against
//!    an HTTP round trip and a raw fsync'd SQLite commit.
//! 3. With a million runs stored: the runs list, a filtered page and a run's detail, against
//!    a raw point lookup; and the database size per run.
//!
//! `cargo run --release -p stepdesk-bench -- --write BENCHMARKS.md`

mod common;
mod ingest;
mod report;
mod runs;
mod stats;
mod stored;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Ingest,
    Runs,
    Stored,
}

/// Stepdesk benchmarks: prints a Markdown report.
#[derive(Debug, Parser)]
#[command(name = "stepdesk-bench")]
pub struct Args {
    /// Also write the report into this file (e.g. BENCHMARKS.md), between
    /// `<!-- engine-bench:start -->` and `<!-- engine-bench:end -->`, keeping the rest.
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Sections to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,runs,stored"
    )]
    pub only: Vec<Section>,

    /// Concurrent HTTP clients sending single events.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Single-event requests over HTTP.
    #[arg(long, default_value_t = 50_000)]
    pub single_events: usize,
    /// Single-event transactions for the raw ceiling (each is an fsync).
    #[arg(long, default_value_t = 5_000)]
    pub raw_single_events: usize,
    /// Concurrent HTTP clients sending batches.
    #[arg(long, default_value_t = 4)]
    pub batch_clients: usize,
    /// Batched requests over HTTP (and transactions for the raw ceiling).
    #[arg(long, default_value_t = 5_000)]
    pub batches: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,

    /// Skip the raw rusqlite ceilings (run one transaction each), e.g. to profile the
    /// engine alone.
    #[arg(long)]
    pub skip_raw: bool,

    /// Runs of the 3-step no-op function for the throughput test.
    #[arg(long, default_value_t = 50_000)]
    pub runs: usize,
    /// Events per `engine.send_events` call in the throughput test.
    #[arg(long, default_value_t = 500)]
    pub send_batch: usize,
    /// Samples of event-to-first-step latency (per variant).
    #[arg(long, default_value_t = 3_000)]
    pub latency_samples: usize,
    /// Concurrent clients in the concurrent latency variant.
    #[arg(long, default_value_t = 8)]
    pub latency_concurrency: usize,

    /// Runs stored for the admin queries.
    #[arg(long, default_value_t = 1_000_000)]
    pub stored_runs: usize,
    /// Repetitions of each admin query.
    #[arg(long, default_value_t = 2_000)]
    pub admin_reps: usize,
    /// Where to keep the generated database between runs (default: `bench-cache` in the
    /// cargo target directory).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Generate the stored-runs database afresh in a temp dir, without caching it.
    #[arg(long)]
    pub no_cache: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let mut report = report::Report::new(&args);

    if args.only.contains(&Section::Ingest) {
        eprintln!("1. event ingest");
        let r = ingest::run(&ingest::IngestConfig {
            clients: args.clients,
            single_events: args.single_events,
            raw_single_events: args.raw_single_events,
            batch_clients: args.batch_clients,
            batches: args.batches,
            batch_size: args.batch_size,
            skip_raw: args.skip_raw,
        })
        .await?;
        report.ingest(&r);
    }
    if args.only.contains(&Section::Runs) {
        eprintln!("2. 3-step no-op function");
        let (t, l) = runs::run(&runs::RunsConfig {
            runs: args.runs,
            send_batch: args.send_batch,
            latency_samples: args.latency_samples,
            latency_concurrency: args.latency_concurrency,
        })
        .await?;
        report.runs(&t, &l);
    }
    if args.only.contains(&Section::Stored) {
        eprintln!("3. {} stored runs", args.stored_runs);
        let cache_dir = if args.no_cache {
            None
        } else {
            Some(args.cache_dir.clone().unwrap_or_else(default_cache_dir))
        };
        let r = stored::run(&stored::StoredConfig {
            runs: args.stored_runs,
            reps: args.admin_reps,
            cache_dir,
        })
        .await?;
        report.stored(&r);
    }

    let text = report.finish(started.elapsed());
    println!("{text}");
    if let Some(path) = &args.write {
        let existing = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        std::fs::write(path, report::splice(&existing, &text))?;
        eprintln!("wrote the engine section of {}", path.display());
    }
    Ok(())
}

/// `<cargo target dir>/bench-cache`, found from this executable's path.
fn default_cache_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench-cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("stepdesk-bench-cache"))
}
