//! Starting the engine and the HTTP server, shared by `serve` and the desktop app.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use stepdesk_engine::Engine;
use stepdesk_secrets::{Secrets, SecretsError};
use stepdesk_server::ServerConfig;

use crate::cli::{KeySource, ServeArgs};

/// A started engine and its bound listener.
pub struct Started {
    pub engine: Engine,
    /// The SDK apps' registry (none in an inspection).
    pub apps: Option<stepdesk_sdk::Apps>,
    /// The admin API (the window's `admin` command calls it; the server serves it).
    pub api: stepdesk_api::Api,
    /// The data directory lock; keep it for as long as the engine runs.
    pub _data_dir_lock: std::fs::File,
    pub listener: tokio::net::TcpListener,
    pub router: axum::Router,
    pub url: String,
}

/// The event key in effect at start-up, and where it comes from.
///
/// `--event-key` / `STEPDESK_EVENT_KEY` win. Otherwise the keychain's key, if any. When the
/// keychain cannot be read, "no key" would mean accepting events with any key, so:
///
/// - a keychain that answers but fails to read the key (a locked keyring): refuse to start;
/// - no keychain at all (no session bus, no Secret Service): refuse to start if this data
///   directory's marker says a key is stored there (see `datadir::EVENT_KEY_MARKER`);
///   otherwise no key was ever stored for it, and Stepdesk starts without one, with a
///   warning.
async fn event_key(
    args: &ServeArgs,
    keychain: &Result<Secrets, SecretsError>,
    data_dir: &Path,
) -> anyhow::Result<(Option<String>, KeySource)> {
    if let Some((key, source)) = args.pinned_event_key()? {
        return Ok((Some(key), source));
    }
    let name = crate::keys_cli::EngineKey::EventKey.keychain_name();
    match keychain {
        Ok(secrets) => {
            let key = secrets.get(name).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the event key from the keychain: {e}\n\
                     Stepdesk does not start without it, since it would then accept events sent with any key. \
                     Unlock your keyring and start again, or pass the key with --event-key (or STEPDESK_EVENT_KEY)."
                )
            })?;
            if let Err(e) = crate::datadir::set_event_key_marker(data_dir, key.is_some()) {
                tracing::warn!(error = %e, "cannot record in the data directory whether an event key is stored");
            }
            let source = if key.is_some() {
                KeySource::Keychain
            } else {
                KeySource::None
            };
            Ok((key, source))
        }
        Err(e) => {
            let marker = crate::datadir::event_key_marker(data_dir);
            if marker.exists() {
                anyhow::bail!(
                    "an event key for this data directory is stored in the OS keychain, but the keychain cannot be read: {e}\n\n\
                     Stepdesk does not start without the key, since it would then accept events sent with any key. Either:\n  \
                     - make the keychain readable (unlock your keyring; on a headless machine, run Stepdesk inside a session bus with an unlocked keyring, as above);\n  \
                     - pass the key with --event-key KEY (or STEPDESK_EVENT_KEY);\n  \
                     - or, to run without an event key, remove it with `stepdesk keys remove event-key` where the keychain is available, or delete {}.",
                    marker.display()
                );
            }
            tracing::warn!("no keychain, so no stored event key: any event key is accepted (set one with --event-key)");
            Ok((None, KeySource::None))
        }
    }
}

/// How SDK apps are found and driven: the flags, and the signing key from `--signing-key`,
/// `STEPDESK_SIGNING_KEY` or the keychain (`stepdesk keys set signing-key`), in that order.
async fn sdk_config(
    args: &ServeArgs,
    keychain: &Result<Secrets, SecretsError>,
) -> anyhow::Result<stepdesk_sdk::SdkConfig> {
    let mut urls = Vec::new();
    for url in &args.sdk_url {
        if url.trim().is_empty() {
            continue;
        }
        urls.push(
            stepdesk_sdk::apps::normalize_url(url)
                .map_err(|e| anyhow::anyhow!("--sdk-url / STEPDESK_SDK_URLS: {e}"))?,
        );
    }
    anyhow::ensure!(
        args.poll_interval >= 1,
        "--poll-interval must be at least 1 second"
    );
    let pinned = match (&args.signing_key, std::env::var("STEPDESK_SIGNING_KEY")) {
        (Some(k), _) => Some(("--signing-key", k.clone())),
        (None, Ok(k)) => Some(("STEPDESK_SIGNING_KEY", k)),
        (None, Err(_)) => None,
    };
    let signing_key = match pinned {
        Some((what, key)) => {
            anyhow::ensure!(!key.trim().is_empty(), "{what} is empty");
            Some(key)
        }
        None => match keychain {
            Ok(secrets) => secrets
                .get(crate::keys_cli::EngineKey::SigningKey.keychain_name())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the signing key from the keychain: {e}\n\
                         Unlock your keyring and start again, or pass the key with --signing-key \
                         (or STEPDESK_SIGNING_KEY)."
                    )
                })?,
            Err(_) => None,
        },
    };
    if signing_key.is_some() {
        tracing::info!("signing key set: call requests are signed and apps must present the key");
    }
    Ok(stepdesk_sdk::SdkConfig {
        urls,
        discovery: args.discovery,
        poll: !args.no_poll,
        poll_interval: std::time::Duration::from_secs(args.poll_interval),
        signing_key,
        signing_key_fallback: args.signing_key_fallback.clone(),
    })
}

/// Opens the engine and binds the HTTP listener (does not serve yet). `data_dir` is the
/// prepared one (see `datadir::prepare`).
pub async fn start(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<Started> {
    let mut config = args.engine_config()?;
    config.data_dir = data_dir.to_path_buf();
    // Bad settings fail before anything is opened.
    let (ip, host_name) = args.listen_ip()?;
    let mut extra_hosts = args.allowed_hosts()?;
    if let Some(name) = host_name {
        // `--host box.lan`: requests addressed to box.lan are for us.
        if !extra_hosts.contains(&name) {
            extra_hosts.push(name);
        }
    }
    args.pinned_event_key()?;
    let lock = crate::datadir::lock(data_dir)?;
    // Bind before anything runs, so a busy port fails fast and starts no engine.
    let addr = SocketAddr::new(ip, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (is another Stepdesk or `inngest dev` running? try --port)"
        )
    })?;
    let admin_token =
        stepdesk_engine::secrets::load_or_create_admin_token(data_dir).with_context(|| {
            format!(
                "cannot read or create the admin token in {}",
                data_dir.display()
            )
        })?;
    let inspecting = args.inspect.is_some();
    // An inspection never touches the keychain: no token is read, none could be written.
    let keychain = if inspecting {
        Err(stepdesk_secrets::SecretsError::Unavailable {
            detail: "a read-only inspection does not use the keychain".into(),
        })
    } else {
        crate::readwise::keychain().await
    };
    let (event_key, key_source) = if inspecting {
        (None, KeySource::None)
    } else {
        event_key(args, &keychain, data_dir).await?
    };
    let store = config
        .open_store()
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let keys_secrets = keychain.as_ref().ok().cloned();
    // SDK apps: their table is migrated and their stored functions registered before the
    // engine starts, so their runs resume with them. Not in an inspection (nothing runs).
    let sdk = if inspecting {
        None
    } else {
        let config = sdk_config(args, &keychain).await?;
        Some(
            stepdesk_sdk::Apps::open(store.clone(), config)
                .await
                .context("cannot open the SDK apps' registry")?,
        )
    };
    let readwise = crate::readwise::open_with(store.clone(), keychain, &args.readwise).await?;
    // With --serve-inngest, an Inngest server runs them (see `serve_inngest`).
    let (functions, served) = crate::serve_inngest::setup(
        args.serve_inngest && !inspecting,
        readwise
            .functions()
            .into_iter()
            .chain(crate::functions()?)
            .collect(),
    )?;
    if let Some(host) = served.as_ref().and_then(|s| s.config().serve_host()) {
        // The Inngest server calls the serve origin's host name.
        if !extra_hosts.contains(&host) {
            extra_hosts.push(host);
        }
    }
    let mut builder = Engine::builder(config)
        .store(store)
        .functions(functions)
        .gate(readwise.gate());
    let apps = match sdk {
        Some((apps, stored)) => {
            builder = builder.functions_from_store(move |_| async move { Ok(stored) });
            Some(apps)
        }
        None => None,
    };
    if inspecting {
        builder = builder.inspect();
    }
    let engine = builder
        .start()
        .await
        .with_context(|| format!("cannot start the engine in {}", data_dir.display()))?;
    readwise.attach(engine.clone());
    if let Some(apps) = &apps {
        apps.attach(engine.clone());
    }
    let local = listener.local_addr()?;
    let beyond_loopback = !ip.is_loopback();
    if beyond_loopback {
        tracing::warn!(host = %ip, "listening on a non-loopback address: anyone on your network can reach Stepdesk; reads need the admin token");
    }
    tracing::info!(source = ?key_source, "event key");
    let event_key = stepdesk_server::EventKey::new(event_key);
    let keys = crate::keys_api::Keys::new(
        event_key.clone(),
        key_source,
        keys_secrets,
        data_dir.to_path_buf(),
    );
    let host = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        other => other.to_string(),
    };
    let url = format!("http://{host}:{}", local.port());
    let mut api = stepdesk_api::Api::builder(engine.clone())
        .readwise(readwise.admin())
        .event_key(event_key.clone())
        .read_only(inspecting);
    if !inspecting {
        api = api.keys(std::sync::Arc::new(keys));
    }
    if let Some(apps) = &apps {
        api = api.apps(apps.clone());
    }
    let api = api
        .info(stepdesk_api::AppInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            // An inspection shows the directory it inspects, not the private copy.
            data_dir: args
                .inspect
                .as_deref()
                .unwrap_or(data_dir)
                .display()
                .to_string(),
            log_dir: Some(data_dir.join("logs").display().to_string()),
            url: Some(url.clone()),
        })
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the admin API: {e}"))?;
    let router = stepdesk_server::router(
        api.clone(),
        ServerConfig {
            // The seed's routes only change things: not in an inspection.
            extra_routes: (!inspecting).then(|| {
                let routes =
                    stepdesk_readwise_sync::routes::routes(readwise.admin(), admin_token.clone());
                let routes = match &apps {
                    Some(apps) => routes.merge(stepdesk_sdk::routes::router(
                        apps.clone(),
                        engine.clone(),
                        admin_token.clone(),
                    )),
                    None => routes,
                };
                match &served {
                    Some(served) => routes.merge(served.router()),
                    None => routes,
                }
            }),
            admin_token,
            extra_hosts,
            reads_need_token: beyond_loopback,
            server_kind: apps.as_ref().map(|a| a.config().server_kind()),
        },
    );
    if let Some(served) = &served {
        crate::serve_inngest::sync_at_start(served);
    }
    Ok(Started {
        engine,
        apps,
        api,
        _data_dir_lock: lock,
        listener,
        router,
        url,
    })
}

/// Prepares the data directory and starts logging there: the first thing `serve` and the
/// window do. Returns the data directory's absolute path and the log guard.
pub fn prepare(
    args: &ServeArgs,
) -> anyhow::Result<(PathBuf, tracing_appender::non_blocking::WorkerGuard)> {
    let (data_dir, prepared) = crate::datadir::prepare(&args.engine_config()?.data_dir)?;
    let log = crate::logging::init(&data_dir)?;
    prepared.log();
    Ok((data_dir, log))
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that comes right after the "listening" line (a
/// script that stops the server as soon as it is up) must stop it cleanly, not kill it.
/// Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => {},
                _ = term => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// `stepdesk serve`: runs until SIGINT/SIGTERM.
pub fn run_headless(args: ServeArgs) -> anyhow::Result<()> {
    // Settings errors first, before anything is created.
    args.listen_ip()?;
    args.allowed_hosts()?;
    args.pinned_event_key()?;
    let (data_dir, _log) = prepare(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = start(&args, &data_dir).await?;
        // Where the CLI finds this server (`stepdesk sync`, `settings`, `keys`); removed
        // when this function returns.
        let server_file = crate::datadir::write_server_file(&data_dir, &started.url)?;
        let stop = shutdown_signal();
        tracing::info!(url = %started.url, data_dir = %data_dir.display(), "Stepdesk is listening");
        // The URL on stdout, for people and for scripts that wait for it.
        println!("Stepdesk is listening on {}", started.url);
        stepdesk_server::serve(started.listener, started.router, stop).await?;
        drop(server_file);
        if let Some(apps) = &started.apps {
            apps.stop();
        }
        started
            .engine
            .shutdown(std::time::Duration::from_secs(10))
            .await;
        Ok(())
    })
}
