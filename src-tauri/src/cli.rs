//! Command-line interface.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use stepdesk_engine::{default_data_dir, Backoff, EngineConfig};

#[derive(Parser)]
#[command(
    name = "stepdesk",
    version,
    about = "A local, durable, Inngest-compatible engine with a desktop console"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    readwise: crate::readwise::ReadwiseArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine and HTTP server without a window (stops on Ctrl-C or SIGTERM).
    Serve(ServeArgs),
    /// Print the local admin token that mutating admin routes require.
    AdminToken {
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Manage Readwise users; their tokens go to the OS keychain, never to disk.
    Users {
        #[command(subcommand)]
        command: crate::users_cli::UsersCommand,
    },
    /// Show or change settings (the Readwise API URL).
    Settings {
        #[command(subcommand)]
        command: crate::users_cli::SettingsCommand,
    },
    /// Manage the engine's event and signing keys in the OS keychain.
    Keys {
        #[command(subcommand)]
        command: crate::keys_cli::KeysCommand,
    },
    /// Sync one user's Readwise books now, or everyone's (--all), through the running server.
    Sync(crate::users_cli::SyncArgs),
}

#[derive(Args, Clone, Default)]
pub struct EngineArgs {
    /// Where the database, logs and admin token live.
    #[arg(long, global = true, env = "STEPDESK_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl EngineArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on. Non-loopback addresses expose the server to your network.
    #[arg(long, default_value = "127.0.0.1", env = "STEPDESK_HOST")]
    pub host: IpAddr,
    /// Port to listen on (8288 is the Inngest dev server's, so SDKs find Stepdesk). 0 picks a free one.
    #[arg(long, default_value_t = 8288, env = "STEPDESK_PORT")]
    pub port: u16,
    /// Accept only this event key on POST /e/{key}. Default: the key stored with `stepdesk keys
    /// set event-key`, else any key (as the Inngest dev server does).
    #[arg(long, env = "STEPDESK_EVENT_KEY")]
    pub event_key: Option<String>,
    /// Retry failed steps after this many seconds instead of the backoff table (development).
    #[arg(long, value_name = "SECONDS")]
    pub retry_interval: Option<f64>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Set from the top-level (global) Readwise flags.
    #[arg(skip)]
    pub readwise: crate::readwise::ReadwiseArgs,
}

impl ServeArgs {
    fn defaults(engine: EngineArgs) -> ServeArgs {
        ServeArgs {
            host: IpAddr::from([127, 0, 0, 1]),
            port: std::env::var("STEPDESK_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8288),
            event_key: std::env::var("STEPDESK_EVENT_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            retry_interval: None,
            engine,
            readwise: crate::readwise::ReadwiseArgs::default(),
        }
    }

    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let mut config = EngineConfig::new(self.engine.data_dir());
        if let Some(secs) = self.retry_interval {
            anyhow::ensure!(
                secs.is_finite() && secs >= 0.0,
                "--retry-interval must be a number of seconds >= 0"
            );
            let interval = Duration::try_from_secs_f64(secs)
                .map_err(|_| anyhow::anyhow!("--retry-interval {secs} is out of range"))?;
            config.backoff = Backoff::Fixed(interval);
        }
        Ok(config)
    }
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.engine.data_dir();
    match cli.command {
        Some(Command::Serve(mut args)) => {
            args.readwise = cli.readwise;
            crate::server::run_headless(args)
        }
        Some(Command::Users { command }) => {
            crate::users_cli::users(command, data_dir, &cli.readwise)
        }
        Some(Command::Sync(args)) => crate::users_cli::sync(args, data_dir),
        Some(Command::Keys { command }) => crate::keys_cli::keys(command),
        Some(Command::Settings { command }) => {
            crate::users_cli::settings(command, data_dir, &cli.readwise)
        }
        Some(Command::AdminToken { engine }) => {
            let dir = engine
                .data_dir
                .or(cli.engine.data_dir)
                .unwrap_or_else(default_data_dir);
            let token =
                stepdesk_engine::secrets::load_or_create_admin_token(&dir).with_context(|| {
                    format!("cannot read or create the admin token in {}", dir.display())
                })?;
            println!("{token}");
            Ok(())
        }
        None => {
            let mut args = ServeArgs::defaults(cli.engine);
            args.readwise = cli.readwise;
            if has_display() {
                crate::desktop::run(args)
            } else {
                eprintln!("stepdesk: no display found (DISPLAY and WAYLAND_DISPLAY are unset); starting the headless server instead");
                crate::server::run_headless(args)
            }
        }
    }
}
