//! Logging end to end: plain text in the log files and in a redirected stderr (colours only
//! on a terminal), and a log filter that does not parse is reported, not ignored.

mod common;

use std::time::Duration;

use common::{Options, Server};
use serde_json::json;

#[tokio::test]
async fn log_files_and_redirected_stderr_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.txt");
    let data = dir.path().join("data");
    let mut server = Server::start_with_stderr(
        Options {
            data_dir: &data,
            fixture_log: None,
            extra_args: &["--retry-interval", "0.05"],
        },
        &[("STEPDESK_LOG", "info"), ("NO_COLOR", "")],
        &stderr_path,
    );
    // A step that fails twice logs its retries inside the `run` and `step` spans, whose
    // fields are where the colour codes used to leak in.
    let ids = server.send(&json!({"name": "test/flaky"})).await;
    let runs = server.wait_finished(&ids, Duration::from_secs(30)).await;
    assert_eq!(runs[0]["status"], "Completed", "{runs:?}");
    assert!(server.terminate().success());

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let mut file = String::new();
    for entry in std::fs::read_dir(data.join("logs")).unwrap() {
        file.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for (what, text) in [("the log file", &file), ("stderr", &stderr)] {
        assert!(
            text.contains("step failed; retrying") && text.contains("run{run_id="),
            "{what} should have the retries with their span fields:\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "{what} has ANSI escape codes:\n{text:?}"
        );
    }
}

#[test]
fn an_invalid_log_filter_is_reported_and_info_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.txt");
    let mut server = Server::start_with_stderr(
        Options {
            data_dir: &dir.path().join("data"),
            fixture_log: None,
            extra_args: &[],
        },
        &[("STEPDESK_LOG", "info,stepdesk_engine=loud")],
        &stderr_path,
    );
    assert!(server.terminate().success());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains("STEPDESK_LOG=`info,stepdesk_engine=loud` is not a valid log filter")
            && stderr.contains("logging at `info` instead"),
        "{stderr}"
    );
    // `info` is in effect.
    assert!(
        stderr.contains("INFO") && stderr.contains("Stepdesk is listening"),
        "{stderr}"
    );
}
