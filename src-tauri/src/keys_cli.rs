//! `stepdesk keys ...`: the engine's own keys (event key, signing key) in the OS keychain.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};

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
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Store a key, read from standard input.
    Set { key: EngineKey },
    /// Remove a key from the keychain.
    Remove { key: EngineKey },
    /// Show which keys are set (never their values).
    Status,
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let secrets = stepdesk_secrets::Secrets::secret_service()?;
    match command {
        KeysCommand::Set { key } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the key from standard input")?;
            let value = input.trim();
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("give the key on standard input, one line without spaces");
            }
            secrets.set_blocking(key.keychain_name(), value)?;
            println!("{} saved in the keychain", key.keychain_name());
        }
        KeysCommand::Remove { key } => {
            if !secrets.delete_blocking(key.keychain_name())? {
                bail!("{} is not set", key.keychain_name());
            }
            println!("{} removed", key.keychain_name());
        }
        KeysCommand::Status => {
            for key in [EngineKey::EventKey, EngineKey::SigningKey] {
                let set = secrets.get_blocking(key.keychain_name())?.is_some();
                println!(
                    "{:<20} {}",
                    key.keychain_name(),
                    if set { "set" } else { "not set" }
                );
            }
        }
    }
    Ok(())
}
