//! The benchmark of issue #3: a daily Readwise sync of 10,000 users, 3 pages each, against
//! the fake Readwise answering in 20 ms with the real per-token limits (20 list and 240 other
//! requests per minute), with a cap on concurrent Readwise requests (default 32).
//!
//! It reports the total time against the floor `users x requests per user x 20 ms / cap`
//! (target: within 1.5x), the peak memory, the engine's CPU time per user, and the `429`s
//! received (target: none).
//!
//! The fake runs in a child process (this binary with `__fake-child`), so the CPU and memory
//! measured here are Stepdesk's alone.
//!
//! `cargo run --release -p stepdesk-bench-readwise -- --write BENCHMARKS.md`
//! (`--quick` for a 500-user sanity run).

mod bench;
mod fake_proc;
mod report;
mod sys;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

/// Benchmark of the daily Readwise sync; prints a Markdown section.
#[derive(Debug, Parser)]
#[command(name = "stepdesk-bench-readwise")]
struct Args {
    /// Users to sync, each with its own token [default: 10000, or 500 with --quick].
    #[arg(long)]
    users: Option<usize>,
    /// A quick sanity run: 500 users unless --users says otherwise.
    #[arg(long)]
    quick: bool,
    /// Most Readwise requests in flight at once (the client's `max_concurrent_requests`).
    #[arg(long, default_value_t = 32)]
    cap: usize,
    /// Latency the fake adds to every response, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The fake's largest page. The sync asks for 1000 books per page (Readwise's maximum);
    /// a smaller cap gives several pages from a small library.
    #[arg(long, default_value_t = 10)]
    max_page_size: usize,
    /// Fewest books per user (users get books-min..=books-max, cycling).
    #[arg(long, default_value_t = 25)]
    books_min: usize,
    /// Most books per user.
    #[arg(long, default_value_t = 30)]
    books_max: usize,
    /// Override the engine's `max_concurrent_runs` (default: the engine's default).
    #[arg(long)]
    max_concurrent_runs: Option<usize>,
    /// Where to create the temporary data directory (default: the system temp directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Tokio worker threads of the fake's process (0: one per core).
    #[arg(long, default_value_t = 0)]
    fake_threads: usize,
    /// Requests of the client-only baseline run after the sync (the same client and cap, no
    /// engine), to tell the engine's share of the time from the client's and the fake's.
    /// 0 skips it.
    #[arg(long, default_value_t = 4_000)]
    baseline_requests: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Also write the section into this file, between `<!-- readwise-bench:start -->` and
    /// `<!-- readwise-bench:end -->` (appended when the markers are absent).
    #[arg(long)]
    write: Option<PathBuf>,
}

fn main() -> Result<()> {
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(fake_proc::CHILD_ARG) {
        return fake_proc::child_main(argv.split_off(2));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let plan = bench::Plan {
        users: args.users.unwrap_or(if args.quick { 500 } else { 10_000 }),
        cap: args.cap,
        latency_ms: args.latency_ms,
        max_page_size: args.max_page_size,
        books_min: args.books_min,
        books_max: args.books_max,
        max_concurrent_runs: args.max_concurrent_runs,
        data_dir: args.data_dir.clone(),
        fake_threads: args.fake_threads,
        timeout: Duration::from_secs(args.timeout_secs),
        baseline_requests: args.baseline_requests,
    };
    if plan.users == 0 || plan.cap == 0 || plan.max_page_size == 0 {
        bail!("--users, --cap and --max-page-size must be at least 1");
    }
    if plan.books_min > plan.books_max {
        bail!("--books-min must not exceed --books-max");
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench::run(&plan))?;
    let section = report::section(&plan, &outcome, &argv);
    print!("{section}");
    if let Some(path) = &args.write {
        report::write_between_markers(path, &section)?;
        eprintln!("wrote the section into {}", path.display());
    }
    if !report::correct(&plan, &outcome) {
        // A wrong result (a 429, the cap exceeded, a user not synced right) fails the run;
        // a slow one is only reported, since it depends on the machine.
        bail!("the sync was not correct (see the targets table)");
    }
    if !report::fast_enough(&plan, &outcome) {
        eprintln!("the time target was missed (see the targets table)");
    }
    Ok(())
}
