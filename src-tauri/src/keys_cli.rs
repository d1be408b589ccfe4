//! `stepdesk keys ...`: the engine's own keys (event key, signing key) in the OS keychain.
//!
//! When a server runs on the data directory, the commands go through it
//! (`/api/admin/keys`, see `keys_api`), so that a new or removed event key takes effect at
//! once and `status` shows the key in effect. Otherwise they use the keychain directly.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::client::Client;

/// The engine's keys, as named in the keychain.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EngineKey {
    /// The key senders put in `POST /e/{key}` (when set, other keys get 401).
    EventKey,
    /// The key that signs requests to and from Inngest SDKs.
    SigningKey,
}

impl EngineKey {
    pub fn keychain_name(self) -> &'static str {
        match self {
            EngineKey::EventKey => "engine:event-key",
            EngineKey::SigningKey => "engine:signing-key",
        }
    }

    /// The name in `/api/admin/keys/{name}` and on the command line.
    fn route_name(self) -> &'static str {
        match self {
            EngineKey::EventKey => "event-key",
            EngineKey::SigningKey => "signing-key",
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Store a key, read from standard input.
    Set { key: EngineKey },
    /// Remove a key from the keychain.
    Remove { key: EngineKey },
    /// Show which keys are set (never their values), and the event key in effect.
    Status,
}

fn print_status(event_stored: Option<bool>, signing_stored: Option<bool>) {
    for (key, stored) in [
        (EngineKey::EventKey, event_stored),
        (EngineKey::SigningKey, signing_stored),
    ] {
        let text = match stored {
            Some(true) => "set",
            Some(false) => "not set",
            None => "unknown (the keychain cannot be read)",
        };
        println!("{:<20} {text}", key.keychain_name());
    }
}

/// The server's answer to `GET/PUT/DELETE /api/admin/keys...`, for people.
fn print_server_status(status: &Value, server: &Client) {
    print_status(
        status["event_key"]["stored"].as_bool(),
        status["signing_key"]["stored"].as_bool(),
    );
    let ev = &status["event_key"];
    let source = ev["source"].as_str().unwrap_or("?");
    if ev["in_effect"] == true {
        let from = match source {
            "flag" => "--event-key",
            "env" => "STEPDESK_EVENT_KEY",
            "keychain" => "the keychain",
            other => other,
        };
        println!(
            "the server at {} requires the event key from {from}",
            server.url()
        );
    } else {
        println!(
            "the server at {} accepts any event key (none is set)",
            server.url()
        );
    }
    if let Some(e) = status["keychain_error"].as_str() {
        eprintln!("stepdesk: the server cannot read the keychain: {e}");
    }
    if let Some(n) = status["note"].as_str() {
        eprintln!("stepdesk: note: {n}");
    }
}

fn read_key_from_stdin() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the key from standard input")?;
    let value = input.trim();
    if stepdesk_api::keys::check_value(value).is_err() {
        bail!("give the key on standard input, one line without spaces");
    }
    Ok(value.to_string())
}

pub fn keys(command: KeysCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    // Read the key first, so a pipe is drained before anything slow happens.
    let value = match &command {
        KeysCommand::Set { .. } => Some(read_key_from_stdin()?),
        _ => None,
    };
    let server = if data_dir.is_dir() {
        crate::client::runtime()?.block_on(async {
            let server = Client::running(&data_dir).await?;
            Some((server.get(&["api", "admin", "keys"]).await.ok()?, server))
        })
    } else {
        None
    };
    match server {
        Some((_, server)) => through_server(command, value, &server),
        None => directly(command, value, &data_dir),
    }
}

fn through_server(
    command: KeysCommand,
    value: Option<String>,
    server: &Client,
) -> anyhow::Result<()> {
    crate::client::runtime()?.block_on(async {
        let status = match command {
            KeysCommand::Set { key } => {
                let body = json!({ "value": value.unwrap_or_default() });
                let status = server
                    .call(
                        reqwest::Method::PUT,
                        &["api", "admin", "keys", key.route_name()],
                        Some(&body),
                    )
                    .await?;
                println!(
                    "{} saved in the keychain (through the server at {})",
                    key.keychain_name(),
                    server.url()
                );
                status
            }
            KeysCommand::Remove { key } => {
                let status = server
                    .call(
                        reqwest::Method::DELETE,
                        &["api", "admin", "keys", key.route_name()],
                        None,
                    )
                    .await?;
                println!(
                    "{} removed (through the server at {})",
                    key.keychain_name(),
                    server.url()
                );
                status
            }
            KeysCommand::Status => server.get(&["api", "admin", "keys"]).await?,
        };
        print_server_status(&status, server);
        Ok(())
    })
}

fn directly(command: KeysCommand, value: Option<String>, data_dir: &Path) -> anyhow::Result<()> {
    let secrets = stepdesk_secrets::Secrets::secret_service()?;
    // Keeps the data directory's marker in step with the keychain (see
    // `datadir::EVENT_KEY_MARKER`); a data directory that does not exist yet gets one.
    let mark = |stored: bool| -> anyhow::Result<()> {
        if stored {
            crate::datadir::prepare(data_dir)?;
        } else if !data_dir.is_dir() {
            return Ok(());
        }
        crate::datadir::set_event_key_marker(data_dir, stored).with_context(|| {
            format!(
                "cannot record the event key's presence in {}",
                data_dir.display()
            )
        })
    };
    match command {
        KeysCommand::Set { key } => {
            secrets.set_blocking(key.keychain_name(), &value.unwrap_or_default())?;
            if let EngineKey::EventKey = key {
                mark(true)?;
            }
            println!("{} saved in the keychain", key.keychain_name());
        }
        KeysCommand::Remove { key } => {
            let removed = secrets.delete_blocking(key.keychain_name())?;
            if let EngineKey::EventKey = key {
                mark(false)?;
            }
            if !removed {
                bail!("{} is not set", key.keychain_name());
            }
            println!("{} removed", key.keychain_name());
        }
        KeysCommand::Status => {
            let ev = secrets.get_blocking(EngineKey::EventKey.keychain_name())?;
            let sg = secrets.get_blocking(EngineKey::SigningKey.keychain_name())?;
            print_status(Some(ev.is_some()), Some(sg.is_some()));
        }
    }
    Ok(())
}
