//! Wiring the Readwise sync into the app: the keychain, the Readwise client, the tables.

use anyhow::Context;
use stepdesk_engine::store::Store;
use stepdesk_readwise::{ClientConfig, ReadwiseClient};
use stepdesk_readwise_sync::ReadwiseSync;
use stepdesk_secrets::{Secrets, SecretsError};

/// Readwise settings from the command line and environment.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReadwiseArgs {
    /// Readwise API base URL (default https://readwise.io/api/v2/).
    #[arg(long, env = "READWISE_API_URL", global = true)]
    pub readwise_url: Option<String>,
    /// Most Readwise requests in flight at once, across all users (default 32).
    #[arg(long, env = "STEPDESK_READWISE_CONCURRENCY", global = true)]
    pub readwise_concurrency: Option<usize>,
}

impl ReadwiseArgs {
    pub fn client(&self) -> anyhow::Result<ReadwiseClient> {
        let mut config = ClientConfig::default();
        if let Some(url) = self.readwise_url.as_deref().filter(|u| !u.is_empty()) {
            config = config
                .with_base_url(url)
                .context("--readwise-url / READWISE_API_URL")?;
        }
        if let Some(n) = self.readwise_concurrency {
            anyhow::ensure!(n > 0, "--readwise-concurrency must be at least 1");
            config.max_concurrent_requests = n;
        }
        Ok(ReadwiseClient::new(config)?)
    }
}

/// Connects to the keychain off the async runtime.
pub async fn keychain() -> Result<Secrets, SecretsError> {
    tokio::task::spawn_blocking(Secrets::secret_service)
        .await
        .unwrap_or_else(|e| {
            Err(SecretsError::Unavailable {
                detail: e.to_string(),
            })
        })
}

/// Opens the Readwise sync on a store. Without a keychain it still starts, and everything
/// that needs a token says why it cannot work.
pub async fn open(store: Store, args: &ReadwiseArgs) -> anyhow::Result<ReadwiseSync> {
    open_with(store, keychain().await, args).await
}

/// [`open`] with a keychain connection made beforehand.
pub async fn open_with(
    store: Store,
    secrets: Result<Secrets, SecretsError>,
    args: &ReadwiseArgs,
) -> anyhow::Result<ReadwiseSync> {
    if let Err(e) = &secrets {
        tracing::warn!("{e}");
    }
    let sync = ReadwiseSync::new(store, secrets, args.client()?).await?;
    if args.readwise_url.as_deref().is_some_and(|u| !u.is_empty()) {
        sync.pin_api_url();
    } else {
        sync.apply_stored_settings()
            .await
            .map_err(anyhow::Error::msg)
            .context("the stored Readwise API URL")?;
    }
    Ok(sync)
}
