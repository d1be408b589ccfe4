//! The in-process harness the Readwise tests share: a real engine on a temporary SQLite file,
//! the Readwise sync with the real HTTP client against the fake Readwise (real HTTP on
//! loopback), and a keychain (in memory unless a test gives another).
#![allow(dead_code)]

use std::time::Duration;

use readwise_fake::{FakeConfig, FakeReadwise};
use stepdesk_engine::{Backoff, Engine, EngineConfig};
use stepdesk_readwise::{ClientConfig, ReadwiseClient};
use stepdesk_readwise_sync::ReadwiseSync;
use stepdesk_secrets::Secrets;

pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub fake: FakeReadwise,
    pub engine: Engine,
    pub sync: ReadwiseSync,
}

pub async fn harness(fake_config: FakeConfig, client: impl FnOnce(&mut ClientConfig)) -> Harness {
    harness_with_keychain(fake_config, client, Ok(Secrets::in_memory())).await
}

pub async fn harness_with_keychain(
    fake_config: FakeConfig,
    client: impl FnOnce(&mut ClientConfig),
    secrets: Result<Secrets, stepdesk_secrets::SecretsError>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeReadwise::start(fake_config).await.unwrap();
    let mut config = ClientConfig::default()
        .with_base_url(&fake.base_url())
        .unwrap();
    config.request_timeout = Duration::from_secs(5);
    client(&mut config);
    let mut engine_config = EngineConfig::new(dir.path());
    engine_config.backoff = Backoff::Fixed(Duration::from_millis(50));
    let store = engine_config.open_store().await.unwrap();
    let sync = ReadwiseSync::new(store.clone(), secrets, ReadwiseClient::new(config).unwrap())
        .await
        .unwrap();
    let engine = Engine::builder(engine_config)
        .store(store)
        .functions(sync.functions())
        .gate(sync.gate())
        .start()
        .await
        .unwrap();
    sync.attach(engine.clone());
    Harness {
        _dir: dir,
        fake,
        engine,
        sync,
    }
}
