//! `readwise-fake`: runs the fake Readwise API on loopback until Ctrl-C, with generated
//! users `token-00000`, `token-00001`, ... Prints the base URL on stdout (one line, for
//! scripts); logs go to stderr.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use readwise_fake::{FakeConfig, FakeReadwise};

#[derive(Parser, Debug)]
#[command(about = "A fake Readwise API v2 server for tests and benchmarks")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of generated users (tokens `token-00000`, `token-00001`, ...).
    #[arg(long, default_value_t = 10)]
    users: usize,
    /// Books per generated user.
    #[arg(long, default_value_t = 250)]
    books: usize,
    /// Latency added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// `books/` requests per token per window.
    #[arg(long, default_value_t = 20)]
    list_limit: usize,
    /// Other requests (`auth/`) per token per window.
    #[arg(long, default_value_t = 240)]
    other_limit: usize,
    /// Rate-limit window in seconds.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// Largest `page_size` honoured on `books/` (Readwise's is 1000).
    #[arg(long, default_value_t = 1000)]
    max_page_size: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = FakeConfig {
        list_limit: args.list_limit,
        other_limit: args.other_limit,
        window: Duration::from_secs(args.window_secs),
        latency: Duration::from_millis(args.latency_ms),
        max_page_size: args.max_page_size,
        ..FakeConfig::default()
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port);
    let fake = FakeReadwise::start_on(addr, config).await?;
    for i in 0..args.users {
        fake.add_user(&format!("token-{i:05}"), args.books);
    }
    tracing::info!(
        base_url = %fake.base_url(),
        users = args.users,
        books = args.books,
        "fake Readwise API listening; tokens are token-00000, token-00001, ..."
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", fake.base_url())?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    let stats = fake.stats();
    tracing::info!(
        total_requests = stats.total_requests,
        throttled = stats.throttled,
        unauthorized = stats.unauthorized,
        max_concurrent = stats.max_concurrent,
        "shutting down"
    );
    fake.shutdown();
    Ok(())
}
