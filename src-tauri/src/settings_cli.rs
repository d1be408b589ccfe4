//! `stepdesk settings ...`: through the running server when one serves this data directory
//! (a change then takes effect at once, and `show` prints what the server really uses), else
//! on the database directly.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use stepdesk_engine::EngineConfig;

use crate::client::Client;
use crate::readwise::ReadwiseArgs;

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// Show the settings in effect.
    Show,
    /// Use this Readwise API base URL (READWISE_API_URL and --readwise-url still win).
    SetReadwiseUrl { url: String },
    /// Go back to the default Readwise API base URL.
    ResetReadwiseUrl,
}

fn print(settings: &Value) {
    println!(
        "readwise_api_url = {} ({})",
        settings["readwise_api_url"].as_str().unwrap_or("?"),
        settings["source"].as_str().unwrap_or("?")
    );
    if let Some(w) = settings["warning"].as_str() {
        eprintln!("stepdesk: {w}");
    }
}

pub fn settings(
    command: SettingsCommand,
    data_dir: PathBuf,
    readwise: &ReadwiseArgs,
) -> anyhow::Result<()> {
    let data_dir = match command {
        // Only reads: a mistyped --data-dir must not become a new data directory.
        SettingsCommand::Show => crate::datadir::require_existing(&data_dir)?,
        _ => data_dir,
    };
    crate::client::runtime()?.block_on(async {
        if data_dir.is_dir() {
            if let Some(server) = Client::running(&data_dir).await {
                let path = ["api", "admin", "settings"];
                let settings = match command {
                    SettingsCommand::Show => server.get(&path).await?,
                    SettingsCommand::SetReadwiseUrl { url } => {
                        let body = json!({ "readwise_api_url": url });
                        server
                            .call(reqwest::Method::PUT, &path, Some(&body))
                            .await?
                    }
                    SettingsCommand::ResetReadwiseUrl => {
                        let body = json!({ "readwise_api_url": null });
                        server
                            .call(reqwest::Method::PUT, &path, Some(&body))
                            .await?
                    }
                };
                print(&settings);
                eprintln!(
                    "stepdesk: as in effect in the running server at {}",
                    server.url()
                );
                return Ok(());
            }
        }
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
        print(&serde_json::to_value(result?)?);
        Ok(())
    })
}
