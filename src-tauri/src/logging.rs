//! Logs to stderr and to a daily-rotated file in the data directory (`logs/`, 7 files kept).
//!
//! The file gets plain text. Stderr gets colours only when it is a terminal (and `NO_COLOR`
//! is unset), so a redirected stderr is plain text too.

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The file layer's field formatter: the default one under a type of its own.
///
/// Why a type of its own: a fmt layer formats a span's fields once and caches the text in
/// the span's extensions, keyed by the field formatter's *type*. With two layers using
/// `DefaultFields`, the first one to see a span (stderr, with colours) fills the cache and
/// the file layer reuses its text, escape codes included (`run{\x1b[3mrun_id…`). Distinct
/// types give each layer its own cache entry, formatted with its own ANSI setting.
#[derive(Default)]
struct FileFields(DefaultFields);

impl<'writer> FormatFields<'writer> for FileFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// The log filter from `STEPDESK_LOG`, else `RUST_LOG`, else `info`; a filter that does not
/// parse falls back to `info`, with the reason as a warning (returned, to log once logging
/// runs).
fn filter() -> (EnvFilter, Option<String>) {
    for var in ["STEPDESK_LOG", "RUST_LOG"] {
        let Some(value) = std::env::var_os(var) else {
            continue;
        };
        let Some(value) = value.to_str().map(str::to_string) else {
            return (
                EnvFilter::new("info"),
                Some(format!(
                    "{var} is not valid UTF-8; logging at `info` instead"
                )),
            );
        };
        if value.trim().is_empty() {
            continue;
        }
        return match EnvFilter::builder().parse(&value) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!(
                    "{var}=`{value}` is not a valid log filter ({e}); logging at `info` instead. Use a level (error, warn, info, debug, trace) or `target=level` pairs separated by commas, e.g. `info,stepdesk_engine=debug`"
                )),
            ),
        };
    }
    (EnvFilter::new("info"), None)
}

/// Starts logging; keep the guard alive until exit so the file gets flushed.
pub fn init(data_dir: &Path) -> anyhow::Result<WorkerGuard> {
    let (filter, warning) = filter();
    // The appender prunes old files when it starts and complains if the directory is missing.
    let dir = data_dir.join("logs");
    std::fs::create_dir_all(&dir)?;
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix("stepdesk")
        .filename_suffix("log")
        .max_log_files(7)
        .build(dir)?;
    let (file, guard) = tracing_appender::non_blocking(appender);
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_ansi(colour).with_writer(std::io::stderr))
        .with(
            fmt::layer()
                .with_ansi(false)
                .fmt_fields(FileFields::default())
                .with_writer(file),
        )
        .try_init()
        .ok();
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(guard)
}
