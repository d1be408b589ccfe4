//! The `stepdesk` binary: command line, headless server and desktop window.

mod cli;
mod client;
mod datadir;
mod desktop;
mod fixtures;
mod inspect;
mod keys_api;
mod keys_cli;
mod logging;
mod readwise;
mod serve_inngest;
mod server;
mod settings_cli;
mod sync_cli;
mod users_cli;

use std::process::ExitCode;

use clap::Parser;

/// Entry point: parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    // Before any thread exists, and before anything is written (see `private_umask`).
    datadir::private_umask();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stepdesk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Functions beyond the Readwise ones: the end-to-end test fixtures, when enabled.
pub fn functions() -> anyhow::Result<Vec<stepdesk_engine::Function>> {
    let mut all = Vec::new();
    if std::env::var("STEPDESK_TEST_FIXTURES").is_ok_and(|v| v == "1") {
        all.extend(fixtures::functions()?);
    }
    Ok(all)
}
