//! The fake Readwise in a child process (this same binary, `__fake-child`), so the CPU time
//! and memory measured in the benchmark process are Stepdesk's alone: the engine, the
//! Readwise client and SQLite, not the server answering them.
//!
//! Protocol: the child prints `READY <base url>` once every user is added, then answers
//! each `stats` line on its standard input with one JSON line; it exits when its standard
//! input closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use readwise_fake::{FakeConfig, FakeReadwise};
use serde_json::{json, Value};

/// The argument that turns this binary into the fake.
pub const CHILD_ARG: &str = "__fake-child";

/// Readwise's real per-token limits: 20 list requests and 240 others per minute.
pub const LIST_LIMIT: usize = 20;
pub const OTHER_LIMIT: usize = 240;
pub const WINDOW: Duration = Duration::from_secs(60);

/// The token of user `i` (each user has its own, so each has its own rate windows).
pub fn token(i: usize) -> String {
    format!("rwbench-{i:06}-0123456789abcdef")
}

pub fn user_id(i: usize) -> String {
    format!("user-{i:06}")
}

/// Books in user `i`'s library: `min..=max`, cycling.
pub fn books_for(i: usize, min: usize, max: usize) -> usize {
    min + i % (max - min + 1)
}

/// What the child is told.
#[derive(Debug, Clone, Parser)]
pub struct FakeArgs {
    #[arg(long)]
    pub users: usize,
    #[arg(long)]
    pub books_min: usize,
    #[arg(long)]
    pub books_max: usize,
    #[arg(long)]
    pub max_page_size: usize,
    #[arg(long)]
    pub latency_ms: u64,
    /// Tokio worker threads of the fake (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl FakeArgs {
    fn to_args(&self) -> Vec<String> {
        vec![
            CHILD_ARG.into(),
            format!("--users={}", self.users),
            format!("--books-min={}", self.books_min),
            format!("--books-max={}", self.books_max),
            format!("--max-page-size={}", self.max_page_size),
            format!("--latency-ms={}", self.latency_ms),
            format!("--threads={}", self.threads),
        ]
    }
}

/// The fake's counters plus the child process's own CPU and memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildStats {
    pub total_requests: u64,
    pub throttled: u64,
    pub unauthorized: u64,
    pub max_concurrent: u64,
    pub cpu: Duration,
    pub peak_rss: u64,
}

/// The child's side: serves until standard input closes.
pub fn child_main(args: Vec<String>) -> Result<()> {
    let args = FakeArgs::try_parse_from(std::iter::once("fake".to_string()).chain(args))?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().thread_name("readwise-fake");
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    rt.build()?.block_on(async move {
        let fake = FakeReadwise::start(FakeConfig {
            list_limit: LIST_LIMIT,
            other_limit: OTHER_LIMIT,
            window: WINDOW,
            latency: Duration::from_millis(args.latency_ms),
            max_page_size: args.max_page_size,
            ..FakeConfig::default()
        })
        .await?;
        for i in 0..args.users {
            fake.add_user(&token(i), books_for(i, args.books_min, args.books_max));
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY {}", fake.base_url())?;
            out.flush()?;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = rx.recv().await {
            if line.trim() == "stats" {
                let s = fake.stats();
                let reply = json!({
                    "total_requests": s.total_requests,
                    "throttled": s.throttled,
                    "unauthorized": s.unauthorized,
                    "max_concurrent": s.max_concurrent,
                    "cpu_us": crate::sys::process_cpu_total().as_micros() as u64,
                    "peak_rss": crate::sys::status_bytes("VmHWM").unwrap_or(0),
                });
                let mut out = std::io::stdout().lock();
                writeln!(out, "{reply}")?;
                out.flush()?;
            }
        }
        fake.shutdown();
        Ok(())
    })
}

/// The parent's handle on the child. Dropping it kills the child.
pub struct FakeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub base_url: String,
}

impl FakeProcess {
    pub fn spawn(args: &FakeArgs) -> Result<FakeProcess> {
        let exe = std::env::current_exe().context("cannot find this binary to start the fake")?;
        let mut child = Command::new(exe)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the fake Readwise process")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(base_url) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the fake Readwise did not start (it said {line:?})");
        };
        Ok(FakeProcess {
            base_url: base_url.to_string(),
            child,
            stdin,
            stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&mut self) -> Result<ChildStats> {
        let stdin = self.stdin.as_mut().context("the fake was stopped")?;
        stdin.write_all(b"stats\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("the fake's stats line is not JSON: {line:?}"))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(ChildStats {
            total_requests: n("total_requests"),
            throttled: n("throttled"),
            unauthorized: n("unauthorized"),
            max_concurrent: n("max_concurrent"),
            cpu: Duration::from_micros(n("cpu_us")),
            peak_rss: n("peak_rss"),
        })
    }

    /// Closes the child's standard input and waits for it to exit.
    pub fn stop(mut self) -> Result<()> {
        self.stdin.take();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
