//! `stepdesk users ...` and `stepdesk sync ...`.
//!
//! User management works on the database and the keychain directly (the server need not
//! run). `sync` asks the running server, because runs execute there.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;
use stepdesk_engine::EngineConfig;
use stepdesk_readwise_sync::admin::{token_from_input, CheckOutcome};
use stepdesk_readwise_sync::users::{TokenStatus, User};

use crate::readwise::ReadwiseArgs;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user (or rename one); the token is read from standard input.
    Add {
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Read the user's Readwise token from standard input and store it in the keychain.
        #[arg(long)]
        token_stdin: bool,
    },
    /// List users with their token status and last sync.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the user's token with Readwise now.
    Check { id: String },
    /// Remove a user, their stored books and their keychain entry.
    Remove { id: String },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["id", "all"])))]
pub struct SyncArgs {
    /// The user to sync.
    id: Option<String>,
    /// Sync every user with a token (starts the daily sync now).
    #[arg(long)]
    all: bool,
    /// The running Stepdesk.
    #[arg(long, env = "STEPDESK_URL", default_value = "http://127.0.0.1:8288")]
    url: String,
    /// Return once the sync is requested instead of waiting for it to finish.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn fmt_time(ms: Option<i64>) -> String {
    ms.map(|m| stepdesk_engine::time::to_rfc3339(m)[..19].replace('T', " "))
        .unwrap_or_else(|| "-".into())
}

fn print_table(users: &[User]) {
    println!(
        "{:<24} {:<24} {:<10} {:<20} {:<9} {:>7}",
        "ID", "NAME", "TOKEN", "LAST SYNC (UTC)", "STATUS", "BOOKS"
    );
    for u in users {
        let (at, status) = match &u.last_sync {
            Some(s) => (fmt_time(s.at), s.status.as_str()),
            None => ("-".to_string(), "-"),
        };
        let token = u.token_status.as_str();
        println!(
            "{:<24} {:<24} {:<10} {:<20} {:<9} {:>7}",
            u.id, u.display_name, token, at, status, u.stored_books
        );
        if let Some(err) = u.last_sync.as_ref().and_then(|s| s.error.as_deref()) {
            println!("    last error: {err}");
        }
    }
}

pub fn users(
    command: UsersCommand,
    data_dir: PathBuf,
    readwise: &ReadwiseArgs,
) -> anyhow::Result<()> {
    // Read the token before anything else, so a prompt-less pipe is drained promptly.
    let token = match &command {
        UsersCommand::Add {
            token_stdin: true, ..
        } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the token from standard input")?;
            Some(token_from_input(&input).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let store = EngineConfig::new(&data_dir)
            .open_store()
            .await
            .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
        let sync = crate::readwise::open(store.clone(), readwise).await?;
        let admin = sync.admin();
        let result = async {
            match command {
                UsersCommand::Add { id, name, .. } => {
                    let user = admin
                        .add_user(
                            &id,
                            name.as_deref(),
                            token.as_ref().map(|t| t.expose_secret()),
                        )
                        .await?;
                    println!(
                        "added {} ({}), token {}",
                        user.id, user.display_name, user.token_status
                    );
                    if user.token_status == TokenStatus::Unchecked {
                        println!(
                            "the token is checked with Readwise at the next sync, or now with `stepdesk users check {}`",
                            user.id
                        );
                    }
                }
                UsersCommand::List { json } => {
                    let users = admin.users().await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&users)?);
                    } else {
                        print_table(&users);
                    }
                }
                UsersCommand::Check { id } => {
                    let check = admin.check_user(&id).await?;
                    println!(
                        "{}: {}{}",
                        check.user_id,
                        check.status.as_str(),
                        check
                            .detail
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    );
                    match check.status {
                        CheckOutcome::Connected => {}
                        CheckOutcome::Rejected => bail!(
                            "Readwise rejected the token of user {id}; store a new one with `stepdesk users add {id} --token-stdin`"
                        ),
                        CheckOutcome::Missing => bail!(
                            "user {id} has no token in the keychain; add one with `stepdesk users add {id} --token-stdin`"
                        ),
                        CheckOutcome::Unreachable => bail!(
                            "Readwise could not be reached, so the token of user {id} was not judged; its status stays `{}`",
                            check.token_status
                        ),
                    }
                }
                UsersCommand::Remove { id } => {
                    admin.remove_user(&id).await?;
                    println!("removed {id}");
                }
            }
            Ok(())
        }
        .await;
        store.close();
        result
    })
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    anyhow::anyhow!("Stepdesk is not running at {} (start it with `stepdesk serve`, or pass --url)", self.url)
                } else {
                    anyhow::anyhow!("request to {} failed: {e}", self.url)
                }
            })?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}", body["error"].as_str().unwrap_or(status.as_str()));
        }
        Ok(body)
    }

    /// Waits for the runs an event started to end.
    async fn wait_runs(&self, event_id: &str, deadline: Instant) -> anyhow::Result<Vec<Value>> {
        loop {
            let body = self
                .call(reqwest::Method::GET, &format!("/v1/events/{event_id}/runs"))
                .await?;
            let runs = body["data"].as_array().cloned().unwrap_or_default();
            if !runs.is_empty() && runs.iter().all(|r| r["status"] != "Running") {
                return Ok(runs);
            }
            if Instant::now() > deadline {
                bail!("still running after the --timeout; see the console for event {event_id}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

pub fn sync(args: SyncArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let token = stepdesk_engine::secrets::load_or_create_admin_token(&data_dir)
        .with_context(|| format!("cannot read the admin token in {}", data_dir.display()))?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        url: args.url.trim_end_matches('/').to_string(),
        token,
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    runtime()?.block_on(async {
        let path = match &args.id {
            Some(id) => format!("/api/admin/users/{id}/sync"),
            None => "/api/admin/daily-syncs".to_string(),
        };
        let requested = client.call(reqwest::Method::POST, &path).await?;
        let event_id = requested["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!("sync requested (event {event_id})");
        if args.no_wait {
            return Ok(());
        }
        let runs = client.wait_runs(&event_id, deadline).await?;
        let run = &runs[0];
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
                    let syncs = client
                        .call(reqwest::Method::GET, "/api/admin/daily-syncs")
                        .await?;
                    let progress = syncs.as_array().and_then(|a| {
                        a.iter()
                            .find(|s| s["run_id"] == daily_run.as_str())
                            .cloned()
                    });
                    if let Some(p) = progress {
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

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// Show the settings in effect.
    Show,
    /// Use this Readwise API base URL (READWISE_API_URL and --readwise-url still win).
    SetReadwiseUrl { url: String },
    /// Go back to the default Readwise API base URL.
    ResetReadwiseUrl,
}

/// `stepdesk settings ...`, on the database directly. A running server picks a change up
/// when restarted; `PUT /api/admin/settings` changes it live.
pub fn settings(
    command: SettingsCommand,
    data_dir: PathBuf,
    readwise: &ReadwiseArgs,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let store = EngineConfig::new(&data_dir)
            .open_store()
            .await
            .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
        let sync = crate::readwise::open(store.clone(), readwise).await?;
        let result = match command {
            SettingsCommand::Show => sync.settings().await.map_err(anyhow::Error::msg),
            SettingsCommand::SetReadwiseUrl { url } => {
                sync.set_api_url(Some(&url)).await.map_err(Into::into)
            }
            SettingsCommand::ResetReadwiseUrl => sync.set_api_url(None).await.map_err(Into::into),
        };
        store.close();
        let settings = result?;
        println!(
            "readwise_api_url = {} ({})",
            settings.readwise_api_url, settings.source
        );
        Ok(())
    })
}
