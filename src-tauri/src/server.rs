//! Starting the engine and the HTTP server, shared by `serve` and the desktop app.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use stepdesk_engine::Engine;
use stepdesk_server::ServerConfig;

use crate::cli::ServeArgs;

/// A started engine and its bound listener.
pub struct Started {
    pub engine: Engine,
    /// The data directory lock; keep it for as long as the engine runs.
    pub _data_dir_lock: std::fs::File,
    pub listener: tokio::net::TcpListener,
    pub router: axum::Router,
    pub url: String,
}

/// Opens the engine and binds the HTTP listener (does not serve yet).
/// Holds the data directory's lock: one engine per data directory, or runs would execute
/// twice. Released when the process exits (however it exits).
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("stepdesk.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Stepdesk is already running on {} (one engine per data directory); stop it or use another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

pub async fn start(args: &ServeArgs) -> anyhow::Result<Started> {
    let config = args.engine_config()?;
    let data_dir = config.data_dir.clone();
    let lock = lock_data_dir(&data_dir)?;
    // Bind before anything runs, so a busy port fails fast and starts no engine.
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (is another Stepdesk or `inngest dev` running? try --port)"
        )
    })?;
    let admin_token = stepdesk_engine::secrets::load_or_create_admin_token(&data_dir)
        .with_context(|| {
            format!(
                "cannot read or create the admin token in {}",
                data_dir.display()
            )
        })?;
    let store = config
        .open_store()
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let keychain = crate::readwise::keychain().await;
    let event_key = match (&args.event_key, &keychain) {
        (Some(k), _) => Some(k.clone()),
        (None, Ok(secrets)) => secrets
            .get(crate::keys_cli::EngineKey::EventKey.keychain_name())
            .await
            .context("cannot read the event key from the keychain")?,
        (None, Err(_)) => None,
    };
    let readwise = crate::readwise::open_with(store.clone(), keychain, &args.readwise).await?;
    let engine = Engine::builder(config)
        .store(store)
        .functions(readwise.functions())
        .functions(crate::functions()?)
        .gate(readwise.gate())
        .start()
        .await
        .with_context(|| format!("cannot start the engine in {}", data_dir.display()))?;
    readwise.attach(engine.clone());
    let local = listener.local_addr()?;
    let beyond_loopback = !args.host.is_loopback();
    if beyond_loopback {
        tracing::warn!(host = %args.host, "listening on a non-loopback address: anyone on your network can reach Stepdesk; reads need the admin token");
    }
    let router = stepdesk_server::router(
        engine.clone(),
        ServerConfig {
            event_key: stepdesk_server::EventKey::new(event_key),
            extra_routes: Some(stepdesk_readwise_sync::routes::routes(
                readwise.admin(),
                admin_token.clone(),
            )),
            admin_token,
            extra_hosts: Vec::new(),
            reads_need_token: beyond_loopback,
        },
    );
    let host = match args.host {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        other => other.to_string(),
    };
    let url = format!("http://{host}:{}", local.port());
    Ok(Started {
        engine,
        _data_dir_lock: lock,
        listener,
        router,
        url,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// `stepdesk serve`: runs until SIGINT/SIGTERM.
pub fn run_headless(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args.engine_config()?.data_dir;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let _log = crate::logging::init(&data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = start(&args).await?;
        tracing::info!(url = %started.url, data_dir = %data_dir.display(), "Stepdesk is listening");
        // The URL on stdout, for people and for scripts that wait for it.
        println!("Stepdesk is listening on {}", started.url);
        stepdesk_server::serve(started.listener, started.router, shutdown_signal()).await?;
        started
            .engine
            .shutdown(std::time::Duration::from_secs(10))
            .await;
        Ok(())
    })
}
