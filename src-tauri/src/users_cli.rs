//! `stepdesk users ...`.
//!
//! User management works on the database and the keychain directly (the server need not
//! run), and records each action in the audit trail with origin CLI. `sync` (in `sync_cli`) asks the running server, because runs execute there.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use stepdesk_api::audit::record_direct;
use stepdesk_api::Origin;
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
        // Each support action goes into the audit trail, as through the API, with origin CLI.
        let audit = |action: &'static str, user: String, error: Option<String>| {
            let store = store.clone();
            async move {
                if let Err(e) = record_direct(&store, Origin::Cli, action, &user, error).await {
                    tracing::error!(action, error = %e, "cannot record a support action in the audit trail");
                }
            }
        };
        let result = async {
            match command {
                UsersCommand::Add { id, name, .. } => {
                    let added = admin
                        .add_user(
                            &id,
                            name.as_deref(),
                            token.as_ref().map(|t| t.expose_secret()),
                        )
                        .await;
                    audit("add_user", id.clone(), added.as_ref().err().map(ToString::to_string)).await;
                    let user = added?;
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
                    let checked = admin.check_user(&id).await;
                    audit("check_user", id.clone(), checked.as_ref().err().map(ToString::to_string)).await;
                    let check = checked?;
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
                    let removed = admin.remove_user(&id).await;
                    audit("remove_user", id.clone(), removed.as_ref().err().map(ToString::to_string)).await;
                    removed?;
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
