//! `stepdesk sync`: asks the running server to sync one user (or everyone) and follows the
//! runs, with a line on stderr whenever their progress changes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::client::Client;

/// Starts the daily sync now. (One place to change if the route moves.)
const SYNC_ALL: &[&str] = &["api", "admin", "daily-syncs"];

#[derive(Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["id", "all"])))]
pub struct SyncArgs {
    /// The user to sync.
    id: Option<String>,
    /// Sync every user with a token (starts the daily sync now).
    #[arg(long)]
    all: bool,
    /// The running Stepdesk. Default: the URL its server recorded in the data directory
    /// (`server.json`), else http://127.0.0.1:8288.
    #[arg(long, env = "STEPDESK_URL")]
    url: Option<String>,
    /// Return once the sync is requested instead of waiting for it to finish.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
}

/// Prints a progress line on stderr when it differs from the previous one.
#[derive(Default)]
struct Progress {
    last: String,
}

impl Progress {
    fn show(&mut self, line: String) {
        if line != self.last {
            eprintln!("{line}");
            self.last = line;
        }
    }
}

/// One user's sync run, in a line: its state, the pages and books fetched so far, a retry.
fn describe_run(user: &str, run: &Value) -> String {
    let status = run["status"].as_str().unwrap_or("?");
    if status == "Running" && run["started_at"].is_null() {
        return format!("{user}: queued (another sync of {user} runs first)");
    }
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let pages: Vec<&Value> = steps
        .iter()
        .filter(|s| {
            s["status"] == "Completed" && s["id"].as_str().is_some_and(|id| id.contains("page"))
        })
        .collect();
    let mut line = format!("{user}: {}", status.to_lowercase());
    if !pages.is_empty() {
        let books: u64 = pages
            .iter()
            .filter_map(|s| s["output"]["books"].as_u64())
            .sum();
        let total = pages
            .last()
            .and_then(|s| s["output"]["count"].as_u64())
            .map(|c| format!(" of {c}"))
            .unwrap_or_default();
        line.push_str(&format!(
            ", {} page{} fetched, {books}{total} books",
            pages.len(),
            if pages.len() == 1 { "" } else { "s" }
        ));
    }
    if let Some(retrying) = steps.iter().find(|s| s["status"] == "Retrying") {
        line.push_str(&format!(
            ", retrying {} after attempt {}: {}",
            retrying["id"].as_str().unwrap_or("a step"),
            retrying["attempts"],
            retrying["error"]["message"].as_str().unwrap_or("failed")
        ));
    }
    line
}

/// Waits for the runs an event started to end, reporting progress; returns the first run.
async fn wait_run(
    client: &Client,
    event_id: &str,
    label: &str,
    deadline: Instant,
    progress: &mut Progress,
) -> anyhow::Result<Value> {
    loop {
        let body = client.get(&["v1", "events", event_id, "runs"]).await?;
        let runs = body["data"].as_array().cloned().unwrap_or_default();
        match runs.first() {
            None => progress.show(format!("{label}: waiting for the run to start")),
            Some(first) => {
                let id = first["run_id"].as_str().unwrap_or_default();
                let detail = client.get(&["api", "admin", "runs", id]).await?;
                progress.show(describe_run(label, &detail));
                if runs.iter().all(|r| r["status"] != "Running") {
                    return Ok(first.clone());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("still running after the --timeout; see the console for event {event_id}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn sync(args: SyncArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    // Only reads the data directory (for its admin token and server.json): never creates it.
    let data_dir = crate::datadir::require_existing(&data_dir)?;
    let client = Client::resolve(args.url.as_deref(), &data_dir)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    crate::client::runtime()?.block_on(async {
        let requested = match &args.id {
            Some(id) => {
                client
                    .call(
                        reqwest::Method::POST,
                        &["api", "admin", "users", id, "sync"],
                        None,
                    )
                    .await?
            }
            None => client.call(reqwest::Method::POST, SYNC_ALL, None).await?,
        };
        let event_id = requested["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!("sync requested (event {event_id}) at {}", client.url());
        if args.no_wait {
            return Ok(());
        }
        let mut progress = Progress::default();
        let label = args.id.as_deref().unwrap_or("daily sync");
        let run = wait_run(&client, &event_id, label, deadline, &mut progress).await?;
        if run["status"] != "Completed" {
            bail!(
                "the sync {}: {}",
                run["status"].as_str().unwrap_or("failed").to_lowercase(),
                run["error"]["message"].as_str().unwrap_or("unknown error")
            );
        }
        match &args.id {
            Some(id) => println!(
                "{id}: {} books ({} sync, run {})",
                run["output"]["bookCount"],
                run["output"]["mode"].as_str().unwrap_or("?"),
                run["run_id"].as_str().unwrap_or("?")
            ),
            None => {
                let daily_run = run["run_id"].as_str().unwrap_or_default().to_string();
                loop {
                    let syncs = client.get(&["api", "admin", "daily-syncs"]).await?;
                    let found = syncs.as_array().and_then(|a| {
                        a.iter()
                            .find(|s| s["run_id"] == daily_run.as_str())
                            .cloned()
                    });
                    if let Some(p) = found {
                        progress.show(format!(
                            "daily sync: {} of {} users done ({} ok, {} failed)",
                            p["done"], p["total"], p["ok"], p["failed"]
                        ));
                        if p["done"].as_i64() >= p["total"].as_i64() {
                            println!(
                                "daily sync {daily_run}: {} of {} users synced, {} failed",
                                p["ok"], p["total"], p["failed"]
                            );
                            if p["failed"].as_i64().unwrap_or(0) > 0 {
                                bail!("some users failed to sync; `stepdesk users list` shows why");
                            }
                            break;
                        }
                    }
                    if Instant::now() > deadline {
                        bail!("the daily sync is still running after the --timeout");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_reads_as_one_line() {
        let queued = json!({"status": "Running", "started_at": null, "steps": []});
        assert_eq!(
            describe_run("u1", &queued),
            "u1: queued (another sync of u1 runs first)"
        );
        let running = json!({"status": "Running", "started_at": 1, "steps": [
            {"id": "load-user", "status": "Completed", "output": {}},
            {"id": "fetch-page-1", "status": "Completed", "output": {"books": 1000, "count": 1500}},
            {"id": "fetch-page-2", "status": "Retrying", "attempts": 1, "error": {"message": "HTTP 503"}},
        ]});
        assert_eq!(
            describe_run("u1", &running),
            "u1: running, 1 page fetched, 1000 of 1500 books, retrying fetch-page-2 after attempt 1: HTTP 503"
        );
    }
}
