//! Command-line interface.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
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
    /// Show or change settings (the Readwise API URL); through the running server when one
    /// serves this data directory.
    Settings {
        #[command(subcommand)]
        command: crate::settings_cli::SettingsCommand,
    },
    /// Manage the engine's event and signing keys in the OS keychain; through the running
    /// server when one serves this data directory, so that a change takes effect at once.
    Keys {
        #[command(subcommand)]
        command: crate::keys_cli::KeysCommand,
    },
    /// Sync one user's Readwise books now, or everyone's (--all), through the running server.
    Sync(crate::sync_cli::SyncArgs),
    /// Open a copy of a data directory (one a user sent, say) for reading only: nothing runs,
    /// nothing is changed, and the original is left untouched.
    Inspect(crate::inspect::InspectArgs),
    /// The Inngest dev server's command line: `serve` plus autodiscovery of apps built with
    /// the Inngest SDKs (replace `npx inngest-cli dev -u URL` with `stepdesk dev -u URL`).
    Dev(DevArgs),
}

/// `stepdesk dev`: `inngest dev`'s flags. Stepdesk always persists, so `--persist` and
/// `--tick` are accepted and ignored.
#[derive(Args, Clone)]
pub struct DevArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Do not look for apps on the usual local ports and paths.
    #[arg(long)]
    pub no_discovery: bool,
    /// Accepted for `inngest dev` compatibility; Stepdesk always persists to its data directory.
    #[arg(long, hide = true)]
    pub persist: bool,
    /// Accepted for `inngest dev` compatibility; Stepdesk's queue does not poll.
    #[arg(long, hide = true, value_name = "MS")]
    pub tick: Option<u64>,
}

#[derive(Args, Clone, Default)]
pub struct EngineArgs {
    /// Where the database, logs and admin token live.
    #[arg(long, global = true, env = "STEPDESK_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl EngineArgs {
    /// Settings for this data directory.
    pub fn at(data_dir: PathBuf) -> EngineArgs {
        EngineArgs {
            data_dir: Some(data_dir),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on: an IP address, `localhost` (127.0.0.1) or a host name (resolved
    /// once, at start-up). Non-loopback addresses expose the server to your network.
    #[arg(long, default_value = "127.0.0.1", env = "STEPDESK_HOST")]
    pub host: String,
    /// Port to listen on (8288 is the Inngest dev server's, so SDKs find Stepdesk). 0 picks a free one.
    #[arg(short = 'p', long, default_value_t = 8288, env = "STEPDESK_PORT")]
    pub port: u16,
    /// The serve URL of an app built with an Inngest SDK (e.g.
    /// http://localhost:3000/api/inngest): Stepdesk syncs it and runs its functions.
    /// Repeatable; the environment variable takes a comma-separated list.
    #[arg(
        short = 'u',
        long = "sdk-url",
        value_name = "URL",
        env = "STEPDESK_SDK_URLS",
        value_delimiter = ','
    )]
    pub sdk_url: Vec<String>,
    /// Poll only apps whose last sync failed, not every app.
    #[arg(long)]
    pub no_poll: bool,
    /// Seconds between polls of the apps.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub poll_interval: u64,
    /// Sign call requests to apps and require this key from them, as an Inngest server in
    /// cloud mode does [env: STEPDESK_SIGNING_KEY]. Default: the key stored with
    /// `stepdesk keys set signing-key`, else none (like `inngest dev`: nothing is signed).
    #[arg(long, value_name = "KEY")]
    pub signing_key: Option<String>,
    /// Also accept this signing key from apps (while rotating keys).
    #[arg(long, value_name = "KEY", env = "STEPDESK_SIGNING_KEY_FALLBACK")]
    pub signing_key_fallback: Option<String>,
    /// Set by `stepdesk dev` (autodiscovery of apps).
    #[arg(skip)]
    pub discovery: bool,
    /// Also accept requests addressed to this host name (the `Host` header), e.g. a name
    /// that resolves to this machine on your network. Repeatable; the environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "allow-host",
        value_name = "NAME",
        env = "STEPDESK_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,
    /// Accept only this event key on POST /e/{key} [env: STEPDESK_EVENT_KEY]. Default: the key
    /// stored with `stepdesk keys set event-key`, else any key (as the Inngest dev server
    /// does). An empty key is an error.
    #[arg(long)]
    pub event_key: Option<String>,
    /// Retry failed steps after this many seconds instead of the backoff table (development).
    #[arg(long, value_name = "SECONDS")]
    pub retry_interval: Option<f64>,
    /// Serve Stepdesk's own functions to an Inngest server at /api/inngest, configured by the
    /// INNGEST_* variables (INNGEST_DEV, INNGEST_SIGNING_KEY, INNGEST_BASE_URL, ...). While on,
    /// the local engine does not start them: the Inngest server does.
    #[arg(long, env = "STEPDESK_SERVE_INNGEST")]
    pub serve_inngest: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Set from the top-level (global) Readwise flags.
    #[arg(skip)]
    pub readwise: crate::readwise::ReadwiseArgs,
    /// Set by `stepdesk inspect`: the data directory being inspected (the engine opens a
    /// copy of it, in the data directory above, read-only).
    #[arg(skip)]
    pub inspect: Option<PathBuf>,
}

/// Where the event key in effect comes from (the admin API's type).
pub use stepdesk_api::keys::KeySource;

/// Checks an event key given on the command line or in the environment.
fn check_event_key(key: &str, what: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        bail!(
            "{what} is empty: an empty event key would refuse every event. Give a key, or leave {what} out to use the key stored with `stepdesk keys set event-key` (if any)"
        );
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} must not contain spaces or control characters");
    }
    Ok(())
}

/// The window's settings, read from the environment like `serve`'s flags.
#[derive(Parser)]
#[command(name = "stepdesk")]
struct WindowEnv {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    /// The window's settings: `serve`'s environment variables (a bad value is an error,
    /// as it is for `serve`), but always on 127.0.0.1.
    fn from_env(engine: EngineArgs) -> anyhow::Result<ServeArgs> {
        let mut args = WindowEnv::try_parse_from(["stepdesk"])
            .map_err(|e| {
                // clap names the flag; the value came from its environment variable.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                anyhow::anyhow!(
                    "{} (set in the environment: STEPDESK_PORT, STEPDESK_ALLOW_HOSTS, …)",
                    first.trim_start_matches("error: ")
                )
            })?
            .serve;
        args.host = "127.0.0.1".to_string();
        args.engine = engine;
        Ok(args)
    }

    /// The event key fixed by `--event-key` or `STEPDESK_EVENT_KEY`, which win over the
    /// keychain. An empty one is an error, not "no key".
    pub fn pinned_event_key(&self) -> anyhow::Result<Option<(String, KeySource)>> {
        if let Some(key) = &self.event_key {
            check_event_key(key, "--event-key")?;
            return Ok(Some((key.clone(), KeySource::Flag)));
        }
        match std::env::var("STEPDESK_EVENT_KEY") {
            Ok(key) => {
                check_event_key(&key, "STEPDESK_EVENT_KEY")?;
                Ok(Some((key, KeySource::Env)))
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("STEPDESK_EVENT_KEY is not valid UTF-8")
            }
        }
    }

    /// The address to listen on, and the name given for it if it was a name (other than
    /// `localhost`): requests addressed to that name are accepted too.
    pub fn listen_ip(&self) -> anyhow::Result<(IpAddr, Option<String>)> {
        resolve_host(&self.host)
    }

    /// `--allow-host` names as the Host guard compares them: lower case, without a port,
    /// IPv6 addresses in brackets.
    pub fn allowed_hosts(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for raw in &self.allow_host {
            let name = raw.trim();
            if name.is_empty() {
                continue;
            }
            out.push(
                normalize_host_name(name)
                    .with_context(|| format!("--allow-host / STEPDESK_ALLOW_HOSTS: `{name}`"))?,
            );
        }
        Ok(out)
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

/// A host name as the Host guard compares it (see [`ServeArgs::allowed_hosts`]).
fn normalize_host_name(name: &str) -> anyhow::Result<String> {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
    if let Ok(ip) = bare.unwrap_or(name).parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !valid || name.is_empty() || name.starts_with('.') || name.starts_with('-') {
        bail!("give a host name without a scheme, port or path, e.g. `stepdesk.lan`");
    }
    Ok(name.trim_end_matches('.').to_ascii_lowercase())
}

/// `--host`: an IP address (`[::1]` with or without brackets), `localhost`, or a name
/// resolved once now.
fn resolve_host(host: &str) -> anyhow::Result<(IpAddr, Option<String>)> {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    // `localhost` is loopback by definition (RFC 6761); no need to ask a resolver that
    // might answer ::1 first, or something else entirely.
    if host.eq_ignore_ascii_case("localhost") {
        return Ok((IpAddr::from([127, 0, 0, 1]), None));
    }
    let name = normalize_host_name(host).with_context(|| format!("--host `{host}`"))?;
    use std::net::ToSocketAddrs;
    let addrs: Vec<IpAddr> = (name.as_str(), 0)
        .to_socket_addrs()
        .with_context(|| {
            format!("--host `{host}` is not an IP address and cannot be resolved; give an IP address such as 127.0.0.1 or 0.0.0.0")
        })?
        .map(|a| a.ip())
        .collect();
    // Prefer IPv4, which more clients reach.
    let ip = addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("--host `{host}` resolves to no address"))?;
    Ok((ip, Some(name)))
}

pub(crate) fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.engine.data_dir();
    match cli.command {
        Some(Command::Inspect(args)) => crate::inspect::run(args, cli.readwise),
        Some(Command::Serve(mut args)) => {
            args.readwise = cli.readwise;
            crate::server::run_headless(args)
        }
        Some(Command::Dev(dev)) => {
            let mut args = dev.serve;
            args.readwise = cli.readwise;
            args.discovery = !dev.no_discovery;
            crate::server::run_headless(args)
        }
        Some(Command::Users { command }) => {
            crate::users_cli::users(command, data_dir, &cli.readwise)
        }
        Some(Command::Sync(args)) => crate::sync_cli::sync(args, data_dir),
        Some(Command::Keys { command }) => crate::keys_cli::keys(command, data_dir),
        Some(Command::Settings { command }) => {
            crate::settings_cli::settings(command, data_dir, &cli.readwise)
        }
        Some(Command::AdminToken { engine }) => {
            let dir = engine
                .data_dir
                .or(cli.engine.data_dir)
                .unwrap_or_else(default_data_dir);
            // Only read: a mistyped --data-dir must not become a new, empty data directory.
            let dir = crate::datadir::require_existing(&dir)?;
            let token =
                stepdesk_engine::secrets::load_or_create_admin_token(&dir).with_context(|| {
                    format!("cannot read or create the admin token in {}", dir.display())
                })?;
            println!("{token}");
            Ok(())
        }
        None => {
            let mut args = ServeArgs::from_env(cli.engine)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_resolve_or_say_why_not() {
        assert_eq!(
            resolve_host("localhost").unwrap(),
            (IpAddr::from([127, 0, 0, 1]), None)
        );
        assert_eq!(
            resolve_host("LOCALHOST").unwrap().0,
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            resolve_host("0.0.0.0").unwrap(),
            (IpAddr::from([0, 0, 0, 0]), None)
        );
        assert_eq!(
            resolve_host("[::1]").unwrap().0,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve_host("::1").unwrap().0,
            "::1".parse::<IpAddr>().unwrap()
        );
        let e = resolve_host("no-such-host.invalid").unwrap_err();
        assert!(format!("{e:#}").contains("cannot be resolved"), "{e:#}");
        let e = resolve_host("http://x").unwrap_err();
        assert!(format!("{e:#}").contains("without a scheme"), "{e:#}");
    }

    #[test]
    fn allowed_host_names_are_normalized() {
        assert_eq!(normalize_host_name("Box.LAN").unwrap(), "box.lan");
        assert_eq!(normalize_host_name("box.lan.").unwrap(), "box.lan");
        assert_eq!(normalize_host_name("fd00::5").unwrap(), "[fd00::5]");
        assert_eq!(normalize_host_name("[fd00::5]").unwrap(), "[fd00::5]");
        assert_eq!(normalize_host_name("10.0.0.1").unwrap(), "10.0.0.1");
        for bad in ["box.lan:8288", "http://box", "a/b", "", "-x", "a b"] {
            assert!(normalize_host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_event_keys_are_refused() {
        assert!(check_event_key("", "--event-key").is_err());
        assert!(check_event_key("a b", "--event-key").is_err());
        assert!(check_event_key("k-1", "--event-key").is_ok());
    }
}
